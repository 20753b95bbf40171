//! Full-size torchvision Inception V3 checkpoints, too big to commit: run with
//! `INCEPT_TORCH_BIG_DIR=<dir> cargo test -p incept-torch --release --test inception -- --ignored`
//! after writing `<dir>` with torch (see the report in the commit that added
//! this file): `inception.pth`, `inception_legacy.pth`, `inception_train.pth`
//! (DataParallel + SGD), `inception_ts.pt` and `inception_keys.json`
//! (`[[name, shape, sum], …]` from `state_dict()`).

#![allow(clippy::unwrap_used)] // fails loudly on a missing or bad big file

use std::path::PathBuf;
use std::time::Instant;

fn dir() -> Option<PathBuf> {
    std::env::var_os("INCEPT_TORCH_BIG_DIR").map(PathBuf::from)
}

#[test]
#[ignore = "needs INCEPT_TORCH_BIG_DIR with full-size checkpoints"]
fn full_size_inception_in_every_container() {
    let Some(dir) = dir() else { return };
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inception_keys.json")).unwrap())
            .unwrap();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 580);
    for file in [
        "inception.pth",
        "inception_legacy.pth",
        "inception_train.pth",
        "inception_ts.pt",
    ] {
        let start = Instant::now();
        let c = incept_torch::load(&dir.join(file)).unwrap();
        let took = start.elapsed();
        eprintln!("{file}: {:?} in {took:?}", c.container);
        assert_eq!(c.tensors.len(), 580, "{file}");
        for ((name, t), k) in c.tensors.iter().zip(keys) {
            assert_eq!(name, k[0].as_str().unwrap(), "{file}");
            let shape: Vec<usize> = k[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), &shape[..], "{file}: {name}");
            let sum: f64 = t.to_f64_vec().iter().sum();
            let want = k[2].as_f64().unwrap();
            assert!(
                (sum - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{file}: {name} {sum} vs {want}"
            );
        }
    }
}
