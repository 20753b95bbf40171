//! incept's typed intermediate representation: tensors, the graph of typed
//! values, the closed [`Op`] enum, shape inference and the Inception V3
//! template.
//!
//! This crate does no I/O: readers and writers of file formats live in their
//! own crates and speak to each other only through these types.

pub mod dtype;
pub mod error;
pub mod tensor;

pub use dtype::DType;
pub use error::TensorError;
pub use tensor::{ByteOrder, Tensor, TensorData, checked_numel};
