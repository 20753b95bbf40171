//! Dense, contiguous, row-major tensors and conversions between float dtypes.

use half::{bf16, f16};

use crate::dtype::DType;
use crate::error::TensorError;

/// Typed element storage of a [`Tensor`]. Always contiguous, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// binary32 elements.
    F32(Vec<f32>),
    /// binary16 elements.
    F16(Vec<f16>),
    /// bfloat16 elements.
    BF16(Vec<bf16>),
    /// binary64 elements.
    F64(Vec<f64>),
    /// 64-bit integer elements.
    I64(Vec<i64>),
}

impl TensorData {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::F64(_) => DType::F64,
            TensorData::I64(_) => DType::I64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::BF16(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The number of elements of `shape`, or `None` if the product overflows `usize`.
///
/// Readers call this before allocating anything, so that a hostile shape is an
/// error rather than an allocation failure.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A dense tensor: a shape and contiguous row-major data of one dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// A tensor of `shape` over `data`; fails when the element counts disagree.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self, TensorError> {
        let numel = checked_numel(&shape).ok_or_else(|| TensorError::ShapeOverflow {
            shape: shape.clone(),
        })?;
        if numel != data.len() {
            return Err(TensorError::DataLength {
                shape,
                expected: numel,
                found: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A float32 tensor; see [`Tensor::new`].
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, TensorError> {
        Self::new(shape, TensorData::F32(data))
    }

    /// A tensor of `dtype` and `shape` filled with zeros.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Result<Self, TensorError> {
        let n = checked_numel(&shape).ok_or_else(|| TensorError::ShapeOverflow {
            shape: shape.clone(),
        })?;
        let data = match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::F16 => TensorData::F16(vec![f16::ZERO; n]),
            DType::BF16 => TensorData::BF16(vec![bf16::ZERO; n]),
            DType::F64 => TensorData::F64(vec![0.0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
        };
        Ok(Tensor { shape, data })
    }

    /// Decodes `bytes` holding `∏shape` elements of `dtype` in the given byte order.
    ///
    /// The length is checked against the shape before any allocation.
    pub fn from_bytes(
        dtype: DType,
        shape: Vec<usize>,
        bytes: &[u8],
        order: ByteOrder,
    ) -> Result<Self, TensorError> {
        let numel = checked_numel(&shape).ok_or_else(|| TensorError::ShapeOverflow {
            shape: shape.clone(),
        })?;
        let need = numel
            .checked_mul(dtype.size())
            .ok_or_else(|| TensorError::ShapeOverflow {
                shape: shape.clone(),
            })?;
        if need != bytes.len() {
            return Err(TensorError::ByteLength {
                dtype,
                shape,
                expected: need,
                found: bytes.len(),
            });
        }
        let data = decode(dtype, bytes, order);
        Ok(Tensor { shape, data })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype().size()
    }

    /// The typed storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Consumes the tensor, returning shape and storage.
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    /// The elements as `f32`, if that is the dtype.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as `f64`, if that is the dtype.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match &self.data {
            TensorData::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The same tensor with another shape of equal element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Self, TensorError> {
        Self::new(shape, self.data)
    }

    /// Converts to another dtype.
    ///
    /// Float-to-float conversions round to nearest even; integer ↔ float
    /// conversions are refused, because no Inception V3 tensor needs them and a
    /// silent truncation would hide a bug.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor, TensorError> {
        if self.dtype() == dtype {
            return Ok(self.clone());
        }
        if !self.dtype().is_float() || !dtype.is_float() {
            return Err(TensorError::Conversion {
                from: self.dtype(),
                to: dtype,
            });
        }
        let wide = self.to_f64_vec();
        let data = match dtype {
            DType::F32 => TensorData::F32(wide.iter().map(|&x| x as f32).collect()),
            DType::F16 => TensorData::F16(wide.iter().map(|&x| f16::from_f64(x)).collect()),
            DType::BF16 => TensorData::BF16(wide.iter().map(|&x| bf16::from_f64(x)).collect()),
            DType::F64 => TensorData::F64(wide),
            DType::I64 => unreachable!("integer targets are refused above"),
        };
        Ok(Tensor {
            shape: self.shape.clone(),
            data,
        })
    }

    /// Every element widened to `f64` (integers converted as values).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The data as little-endian bytes, borrowed without a copy on
    /// little-endian machines (the layout safetensors, ONNX and torch use).
    pub fn le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            std::borrow::Cow::Borrowed(match &self.data {
                TensorData::F32(v) => bytemuck::cast_slice(v),
                TensorData::F16(v) => bytemuck::cast_slice(v),
                TensorData::BF16(v) => bytemuck::cast_slice(v),
                TensorData::F64(v) => bytemuck::cast_slice(v),
                TensorData::I64(v) => bytemuck::cast_slice(v),
            })
        } else {
            std::borrow::Cow::Owned(self.to_le_bytes())
        }
    }

    /// The data as mutable little-endian bytes, so a reader can fill a tensor
    /// straight from a file; `None` on big-endian machines.
    pub fn le_bytes_mut(&mut self) -> Option<&mut [u8]> {
        if !cfg!(target_endian = "little") {
            return None;
        }
        Some(match &mut self.data {
            TensorData::F32(v) => bytemuck::cast_slice_mut(v),
            TensorData::F16(v) => bytemuck::cast_slice_mut(v),
            TensorData::BF16(v) => bytemuck::cast_slice_mut(v),
            TensorData::F64(v) => bytemuck::cast_slice_mut(v),
            TensorData::I64(v) => bytemuck::cast_slice_mut(v),
        })
    }

    /// The data as little-endian bytes (the layout safetensors, ONNX and torch use).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.nbytes());
        match &self.data {
            TensorData::F32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::F16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::BF16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::F64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::I64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
        }
        out
    }
}

/// Byte order of serialized tensor data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// Least significant byte first (every format's default).
    Little,
    /// Most significant byte first (legacy checkpoints from big-endian hosts).
    Big,
}

fn decode(dtype: DType, bytes: &[u8], order: ByteOrder) -> TensorData {
    fn chunks<const W: usize, T>(
        bytes: &[u8],
        order: ByteOrder,
        le: fn([u8; W]) -> T,
        be: fn([u8; W]) -> T,
    ) -> Vec<T> {
        bytes
            .chunks_exact(W)
            .map(|c| {
                let mut a = [0u8; W];
                a.copy_from_slice(c);
                match order {
                    ByteOrder::Little => le(a),
                    ByteOrder::Big => be(a),
                }
            })
            .collect()
    }
    match dtype {
        DType::F32 => TensorData::F32(chunks(bytes, order, f32::from_le_bytes, f32::from_be_bytes)),
        DType::F16 => TensorData::F16(chunks(bytes, order, f16::from_le_bytes, f16::from_be_bytes)),
        DType::BF16 => TensorData::BF16(chunks(
            bytes,
            order,
            bf16::from_le_bytes,
            bf16::from_be_bytes,
        )),
        DType::F64 => TensorData::F64(chunks(bytes, order, f64::from_le_bytes, f64::from_be_bytes)),
        DType::I64 => TensorData::I64(chunks(bytes, order, i64::from_le_bytes, i64::from_be_bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_both_byte_orders() {
        let le = 1.5f32.to_le_bytes();
        let be = 1.5f32.to_be_bytes();
        let a = Tensor::from_bytes(DType::F32, vec![1], &le, ByteOrder::Little).unwrap();
        let b = Tensor::from_bytes(DType::F32, vec![1], &be, ByteOrder::Big).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_f32(), Some(&[1.5f32][..]));
    }

    #[test]
    fn refuses_wrong_byte_length_before_allocating() {
        let err =
            Tensor::from_bytes(DType::F32, vec![1 << 40], &[0; 16], ByteOrder::Little).unwrap_err();
        assert!(matches!(err, TensorError::ByteLength { .. }), "{err}");
        let err = Tensor::from_bytes(DType::F32, vec![usize::MAX, 3], &[], ByteOrder::Little)
            .unwrap_err();
        assert!(matches!(err, TensorError::ShapeOverflow { .. }), "{err}");
    }

    #[test]
    fn float_conversions_round_trip_exactly_representable_values() {
        let t = Tensor::from_f32(vec![2, 2], vec![0.5, -2.0, 1024.0, 0.0]).unwrap();
        for dt in [DType::F16, DType::BF16, DType::F64] {
            let back = t.to_dtype(dt).unwrap().to_dtype(DType::F32).unwrap();
            assert_eq!(back, t, "via {dt}");
        }
        // 1/3 is not exact in f16: the conversion must round, not truncate.
        let third = Tensor::from_f32(vec![1], vec![1.0 / 3.0]).unwrap();
        let h = third.to_dtype(DType::F16).unwrap();
        assert_eq!(h.to_f64_vec()[0], f16::from_f32(1.0 / 3.0).to_f64());
    }

    #[test]
    fn borrowed_bytes_are_little_endian() {
        let t = Tensor::from_f32(vec![2], vec![1.5, -2.0]).unwrap();
        assert_eq!(&*t.le_bytes(), t.to_le_bytes().as_slice());
    }

    #[test]
    fn integer_float_conversion_is_refused() {
        let t = Tensor::new(vec![1], TensorData::I64(vec![3])).unwrap();
        assert!(t.to_dtype(DType::F32).is_err());
    }
}
