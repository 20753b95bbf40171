//! incept's ONNX reader and writer.

pub mod proto;
