//! incept's typed intermediate representation: tensors, the graph of typed
//! values, the closed [`Op`] enum, shape inference and the Inception V3
//! template.
//!
//! This crate does no I/O: readers and writers of file formats live in their
//! own crates and speak to each other only through these types.

pub mod bind;
pub mod cost;
pub mod dtype;
pub mod dump;
pub mod error;
pub mod tensor;

pub use dtype::DType;
pub use error::TensorError;
pub use tensor::{ByteOrder, Tensor, TensorData, checked_numel};
pub mod graph;
pub mod infer;
pub mod op;
pub mod shape;
pub mod template;

pub use bind::{BindError, Mismatch};
pub use error::GraphError;
pub use graph::{Graph, GraphBuilder, GraphOutput, Node, NodeId, Param, ParamId, Value, ValueId};
pub use op::{Op, ParamKind};
pub use shape::{Dim, Shape, ValueType};
