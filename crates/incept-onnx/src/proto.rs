//! The ONNX protobuf schema as prost types, generated from the checked-in
//! `proto/onnx.proto` by `cargo xtask codegen` (see `codegen/generate.rs`);
//! `tests/codegen.rs` fails when the checked-in code and the proto drift apart.

// Generated code: its docs are the proto's comments, which do not cover every item.
#[allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
mod onnx;

pub use onnx::*;
