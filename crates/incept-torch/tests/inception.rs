//! The full-size torchvision Inception V3 checkpoint from `cargo xtask
//! fixtures --full` (git-ignored, about 104 MB): it loads and binds to the
//! template with torchvision's published parameter count, and loading it from
//! its path takes little more memory than the tensors themselves. Skipped, with
//! a message, when the full-size set is absent.
//!
//! The only test in this binary, so the process's memory is its own.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Instant;

use incept_fixtures::Fixture;
use incept_ir::template::bind_state_dict;

/// A `kB` line of `/proc/self/status` (Linux), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn full_size_checkpoint_loads_and_binds() {
    let Some(f) = Fixture::full() else { return };
    let path = f.path("model.pth");
    let file_len = std::fs::metadata(&path).unwrap().len();
    let rss_before = status_bytes("VmRSS:");
    let start = Instant::now();
    let ckpt = incept_torch::load(&path).unwrap();
    let elapsed = start.elapsed();
    let peak = status_bytes("VmHWM:");
    let tensor_bytes: u64 = ckpt.tensors.iter().map(|(_, t)| t.nbytes() as u64).sum();
    eprintln!(
        "full-size model.pth: {:?}, {} tensors, loaded in {elapsed:?} (debug build)",
        ckpt.container,
        ckpt.tensors.len(),
    );
    assert_eq!(ckpt.tensors.len(), 580);
    if let (Some(before), Some(peak)) = (rss_before, peak) {
        // Reading the whole file first would add the file's size on top of the
        // tensors; one storage at a time adds the largest one (fc, 8 MB).
        let grew = peak.saturating_sub(before);
        eprintln!(
            "peak memory grew by {} MiB while loading (file {} MiB, tensors {} MiB)",
            grew >> 20,
            file_len >> 20,
            tensor_bytes >> 20
        );
        assert!(
            grew < tensor_bytes + file_len / 3,
            "loading took {grew} bytes for {tensor_bytes} bytes of tensors from a {file_len}-byte file"
        );
    }
    let model = bind_state_dict(ckpt.tensors, false, [299, 299]).unwrap();
    // torchvision's published figure for inception_v3 with the aux head.
    assert_eq!(model.graph.trainable_params(), 27_161_264);
}
