//! The checked-in `src/proto/onnx.rs` is exactly what `cargo xtask codegen`
//! makes from the checked-in `proto/onnx.proto`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

#[path = "../codegen/generate.rs"]
#[allow(dead_code)]
mod generate;

#[test]
fn checked_in_code_matches_the_proto() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    let fresh = generate::generate(crate_dir, scratch.path()).unwrap();
    let checked_in = std::fs::read_to_string(crate_dir.join("src/proto/onnx.rs")).unwrap();
    assert!(
        fresh == checked_in,
        "src/proto/onnx.rs is out of date with proto/onnx.proto: run `cargo xtask codegen` and commit"
    );
}

#[test]
fn proto_copy_names_its_origin() {
    let proto =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/onnx.proto"))
            .unwrap();
    assert!(proto.starts_with("// Copied verbatim below this header from the `onnx` "));
    assert!(proto.contains("package onnx;"));
}
