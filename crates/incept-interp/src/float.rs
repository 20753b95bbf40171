//! The element types the interpreter computes in: `f32` (speed) and `f64` (the oracle).

use std::borrow::Cow;

use incept_ir::{Tensor, TensorData};

/// A float type kernels are generic over.
pub trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Default
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
    + 'static
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Negative infinity (the identity of max pooling).
    const NEG_INFINITY: Self;
    /// Rounds an `f64` to this type.
    fn from_f64(x: f64) -> Self;
    /// Widens to `f64`.
    fn to_f64(self) -> f64;
    /// True for NaN.
    fn is_nan(self) -> bool;
    /// Wraps a buffer as a tensor.
    fn tensor(shape: Vec<usize>, data: Vec<Self>) -> Option<Tensor>;
    /// The tensor's elements converted to this type, rounding to nearest;
    /// borrowed when the tensor already holds this type (a run's input is
    /// then not copied twice: a fresh megabyte each run cost its page
    /// faults too).
    fn from_tensor(t: &Tensor) -> Cow<'_, [Self]>;
    /// Like [`Float::from_tensor`], reusing the tensor's storage when it
    /// already holds this type (no copy of the weights).
    fn take_tensor(t: Tensor) -> Vec<Self>;
    /// This slice as `f32` when `Self` is `f32`: the hand-written kernels
    /// are float32 only, and the float64 oracle keeps the generic path.
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    /// Mutable [`Float::as_f32`].
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    fn tensor(shape: Vec<usize>, data: Vec<Self>) -> Option<Tensor> {
        Tensor::new(shape, TensorData::F32(data)).ok()
    }
    fn from_tensor(t: &Tensor) -> Cow<'_, [Self]> {
        match t.data() {
            TensorData::F32(v) => Cow::Borrowed(v),
            _ => Cow::Owned(t.to_f64_vec().into_iter().map(|x| x as f32).collect()),
        }
    }
    fn take_tensor(t: Tensor) -> Vec<Self> {
        match t.into_parts() {
            (_, TensorData::F32(v)) => v,
            (_, other) => widen(other).into_iter().map(|x| x as f32).collect(),
        }
    }
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    fn tensor(shape: Vec<usize>, data: Vec<Self>) -> Option<Tensor> {
        Tensor::new(shape, TensorData::F64(data)).ok()
    }
    fn from_tensor(t: &Tensor) -> Cow<'_, [Self]> {
        match t.data() {
            TensorData::F64(v) => Cow::Borrowed(v),
            _ => Cow::Owned(t.to_f64_vec()),
        }
    }
    fn take_tensor(t: Tensor) -> Vec<Self> {
        widen(t.into_parts().1)
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

/// Every element as `f64` (the storage itself when it already is).
fn widen(data: TensorData) -> Vec<f64> {
    match data {
        TensorData::F64(v) => v,
        TensorData::F32(v) => v.into_iter().map(f64::from).collect(),
        TensorData::F16(v) => v.into_iter().map(|x| x.to_f64()).collect(),
        TensorData::BF16(v) => v.into_iter().map(|x| x.to_f64()).collect(),
        TensorData::I64(v) => v.into_iter().map(|x| x as f64).collect(),
    }
}
