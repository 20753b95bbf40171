//! Symbolic shapes of graph values: fixed dimensions and the batch dimension `N`.

use std::fmt;

use serde::Serialize;

use crate::dtype::DType;

/// One dimension of a value's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// The batch dimension, unknown until run time (written `N`).
    Batch,
    /// A dimension known when the graph is built.
    Fixed(usize),
}

impl Dim {
    /// The size, if fixed.
    pub fn fixed(self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(n),
            Dim::Batch => None,
        }
    }

    /// The size with the batch dimension replaced by `batch`.
    pub fn resolve(self, batch: usize) -> usize {
        match self {
            Dim::Fixed(n) => n,
            Dim::Batch => batch,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("N"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Batch => s.serialize_str("N"),
            Dim::Fixed(n) => s.serialize_u64(*n as u64),
        }
    }
}

/// A shape over [`Dim`]s.
pub type Shape = Vec<Dim>;

/// Formats a shape as `[N,3,299,299]`.
pub fn fmt_shape(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(","))
}

/// A shape with every dimension fixed, as `Dim`s.
pub fn fixed_shape(dims: &[usize]) -> Shape {
    dims.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// The type of a graph value: element type and (possibly symbolic) shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ValueType {
    /// Element type.
    pub dtype: DType,
    /// Shape; at most the batch dimension is symbolic.
    pub shape: Shape,
}

impl ValueType {
    /// A value type.
    pub fn new(dtype: DType, shape: Shape) -> Self {
        ValueType { dtype, shape }
    }

    /// The concrete shape for a given batch size.
    pub fn concrete(&self, batch: usize) -> Vec<usize> {
        self.shape.iter().map(|d| d.resolve(batch)).collect()
    }

    /// Elements per batch item (the product of the fixed dimensions).
    pub fn numel_per_item(&self) -> usize {
        self.shape.iter().filter_map(|d| d.fixed()).product()
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, fmt_shape(&self.shape))
    }
}
