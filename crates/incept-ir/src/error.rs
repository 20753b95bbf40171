//! Error types of the IR: tensor construction, shape inference and graph validation.

use thiserror::Error;

use crate::dtype::DType;

/// A tensor could not be built from the data given.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TensorError {
    /// The product of the dimensions does not fit in `usize`.
    #[error("shape {shape:?} has more elements than can be addressed")]
    ShapeOverflow {
        /// The offending shape.
        shape: Vec<usize>,
    },
    /// Element count of the data differs from the shape's.
    #[error("shape {shape:?} needs {expected} elements, the data has {found}")]
    DataLength {
        /// The shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements present.
        found: usize,
    },
    /// Byte count of serialized data differs from what dtype and shape need.
    #[error("a {dtype} tensor of shape {shape:?} needs {expected} bytes, {found} are present")]
    ByteLength {
        /// The dtype.
        dtype: DType,
        /// The shape.
        shape: Vec<usize>,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// A dtype conversion that is not defined (integer ↔ float).
    #[error("cannot convert a {from} tensor to {to}")]
    Conversion {
        /// Source dtype.
        from: DType,
        /// Target dtype.
        to: DType,
    },
}
