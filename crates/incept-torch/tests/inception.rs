//! The full-size torchvision Inception V3 checkpoint from `cargo xtask
//! fixtures --full` (git-ignored, about 104 MB): it loads and binds to the
//! template with torchvision's published parameter count. Skipped, with a
//! message, when the full-size set is absent.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Instant;

use incept_fixtures::Fixture;
use incept_ir::template::bind_state_dict;

#[test]
fn full_size_checkpoint_loads_and_binds() {
    let Some(f) = Fixture::full() else { return };
    let start = Instant::now();
    let ckpt = incept_torch::load(&f.path("model.pth")).unwrap();
    eprintln!(
        "full-size model.pth: {:?}, {} tensors, loaded in {:?} (debug build)",
        ckpt.container,
        ckpt.tensors.len(),
        start.elapsed()
    );
    assert_eq!(ckpt.tensors.len(), 580);
    let model = bind_state_dict(ckpt.tensors, false, [299, 299]).unwrap();
    // torchvision's published figure for inception_v3 with the aux head.
    assert_eq!(model.graph.trainable_params(), 27_161_264);
}
