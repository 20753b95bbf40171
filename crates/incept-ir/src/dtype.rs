//! Element types a tensor or a graph value can hold.

use std::fmt;

use serde::Serialize;

/// The element type of a tensor or value.
///
/// The set is closed on purpose: these are the dtypes PyTorch checkpoints and
/// ONNX exports of Inception V3 use. Anything else is refused at import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16: the upper half of a binary32.
    BF16,
    /// IEEE 754 binary64.
    F64,
    /// Signed 64-bit integer (BatchNorm's `num_batches_tracked`, shape tensors).
    I64,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// True for the floating-point dtypes.
    pub const fn is_float(self) -> bool {
        !matches!(self, DType::I64)
    }

    /// The short lowercase name used in dumps and reports (`f32`, `bf16`, …).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F64 => "f64",
            DType::I64 => "i64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
