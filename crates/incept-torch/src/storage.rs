//! Storages and tensor views: the storage classes torch names in persistent
//! ids, the view a `_rebuild_tensor*` call describes, and the checked copy of
//! a view's elements out of its storage's bytes.

use std::rc::Rc;

use incept_ir::{ByteOrder, DType, Tensor};

use crate::error::ViewError;
use crate::value::ObjId;

/// A storage class named in a persistent id (`torch.FloatStorage`, …).
///
/// Every class torch writes for a dense CPU tensor is recognised so that a
/// checkpoint whose *ignored* entries hold, say, an int32 tensor still loads;
/// only the five dtypes of [`DType`] can become output tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StorageType {
    Float,
    Half,
    BFloat16,
    Double,
    Long,
    Int,
    Short,
    Char,
    Byte,
    Bool,
    /// `torch.UntypedStorage`: bytes.
    Untyped,
}

impl StorageType {
    /// The storage class of a global, if it is one.
    pub(crate) fn from_global(module: &str, name: &str) -> Option<Self> {
        Some(match (module, name) {
            ("torch", "FloatStorage") => StorageType::Float,
            ("torch", "HalfStorage") => StorageType::Half,
            ("torch", "BFloat16Storage") => StorageType::BFloat16,
            ("torch", "DoubleStorage") => StorageType::Double,
            ("torch", "LongStorage") => StorageType::Long,
            ("torch", "IntStorage") => StorageType::Int,
            ("torch", "ShortStorage") => StorageType::Short,
            ("torch", "CharStorage") => StorageType::Char,
            ("torch", "ByteStorage") => StorageType::Byte,
            ("torch", "BoolStorage") => StorageType::Bool,
            ("torch", "UntypedStorage") | ("torch.storage", "UntypedStorage") => {
                StorageType::Untyped
            }
            _ => return None,
        })
    }

    /// Bytes per element.
    pub(crate) fn elem_size(self) -> u64 {
        match self {
            StorageType::Char | StorageType::Byte | StorageType::Bool | StorageType::Untyped => 1,
            StorageType::Half | StorageType::BFloat16 | StorageType::Short => 2,
            StorageType::Float | StorageType::Int => 4,
            StorageType::Double | StorageType::Long => 8,
        }
    }

    /// The IR dtype, for the classes incept reads into tensors.
    pub(crate) fn dtype(self) -> Option<DType> {
        match self {
            StorageType::Float => Some(DType::F32),
            StorageType::Half => Some(DType::F16),
            StorageType::BFloat16 => Some(DType::BF16),
            StorageType::Double => Some(DType::F64),
            StorageType::Long => Some(DType::I64),
            _ => None,
        }
    }

    /// The class as torch names it.
    pub(crate) fn class_name(self) -> &'static str {
        match self {
            StorageType::Float => "torch.FloatStorage",
            StorageType::Half => "torch.HalfStorage",
            StorageType::BFloat16 => "torch.BFloat16Storage",
            StorageType::Double => "torch.DoubleStorage",
            StorageType::Long => "torch.LongStorage",
            StorageType::Int => "torch.IntStorage",
            StorageType::Short => "torch.ShortStorage",
            StorageType::Char => "torch.CharStorage",
            StorageType::Byte => "torch.ByteStorage",
            StorageType::Bool => "torch.BoolStorage",
            StorageType::Untyped => "torch.UntypedStorage",
        }
    }

    /// The element type's name, for messages.
    pub(crate) fn dtype_name(self) -> &'static str {
        match self {
            StorageType::Float => "float32",
            StorageType::Half => "float16",
            StorageType::BFloat16 => "bfloat16",
            StorageType::Double => "float64",
            StorageType::Long => "int64",
            StorageType::Int => "int32",
            StorageType::Short => "int16",
            StorageType::Char => "int8",
            StorageType::Byte | StorageType::Untyped => "uint8",
            StorageType::Bool => "bool",
        }
    }
}

/// A storage a persistent id names: `('storage', type, key, location, numel)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// The key: `[0-9A-Za-z_]+`, checked when the id is read.
    pub key: Rc<str>,
    /// The storage class.
    pub ty: StorageType,
    /// Elements of `ty` the storage holds.
    pub numel: u64,
}

impl StorageRef {
    /// Bytes the storage must have, or `None` on overflow.
    pub(crate) fn nbytes(&self) -> Option<u64> {
        self.numel.checked_mul(self.ty.elem_size())
    }
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorSpec {
    /// The heap object holding the [`StorageRef`].
    pub storage: ObjId,
    /// Offset of the first element, in elements.
    pub offset: i64,
    /// Sizes.
    pub size: Vec<i64>,
    /// Strides, in elements.
    pub stride: Vec<i64>,
}

/// A validated view: every index it touches lies inside the storage.
#[derive(Debug)]
struct Geometry {
    shape: Vec<usize>,
    stride: Vec<usize>,
    offset: usize,
    numel: usize,
}

fn check_view(spec: &TensorSpec, storage: &StorageRef) -> Result<Geometry, ViewError> {
    let overflow = || ViewError::Overflow {
        size: spec.size.clone(),
        stride: spec.stride.clone(),
    };
    if spec.size.len() != spec.stride.len() {
        return Err(ViewError::Rank {
            size: spec.size.clone(),
            stride: spec.stride.clone(),
        });
    }
    let negative = |what| ViewError::Negative {
        what,
        size: spec.size.clone(),
        stride: spec.stride.clone(),
        offset: spec.offset,
    };
    if spec.size.iter().any(|&s| s < 0) {
        return Err(negative("size"));
    }
    if spec.stride.iter().any(|&s| s < 0) {
        return Err(negative("stride"));
    }
    if spec.offset < 0 {
        return Err(negative("offset"));
    }
    let to_usize = |x: i64| usize::try_from(x).map_err(|_| overflow());
    let shape = spec
        .size
        .iter()
        .map(|&s| to_usize(s))
        .collect::<Result<Vec<_>, _>>()?;
    let stride = spec
        .stride
        .iter()
        .map(|&s| to_usize(s))
        .collect::<Result<Vec<_>, _>>()?;
    let offset = to_usize(spec.offset)?;
    let numel = incept_ir::checked_numel(&shape).ok_or_else(overflow)?;
    if numel > 0 {
        let mut last = offset;
        for (&n, &s) in shape.iter().zip(&stride) {
            let reach = (n - 1).checked_mul(s).ok_or_else(overflow)?;
            last = last.checked_add(reach).ok_or_else(overflow)?;
        }
        if last as u64 >= storage.numel {
            return Err(ViewError::OutOfBounds {
                size: spec.size.clone(),
                stride: spec.stride.clone(),
                offset: spec.offset,
                last: last as u64,
                key: storage.key.to_string(),
                numel: storage.numel,
            });
        }
        if numel as u64 > storage.numel {
            return Err(ViewError::Expanded {
                size: spec.size.clone(),
                view_numel: numel as u64,
                key: storage.key.to_string(),
                numel: storage.numel,
            });
        }
    }
    Ok(Geometry {
        shape,
        stride,
        offset,
        numel,
    })
}

/// The number of bytes a view will take once copied out, after checking it.
pub(crate) fn view_nbytes(spec: &TensorSpec, storage: &StorageRef) -> Result<u64, ViewError> {
    let g = check_view(spec, storage)?;
    Ok((g.numel as u64).saturating_mul(storage.ty.elem_size()))
}

/// Copies the elements a view selects out of its storage's bytes into a
/// contiguous tensor.
///
/// `bytes` must be the whole storage (its length was checked against the
/// persistent id's element count before). Nothing is allocated before the view
/// is known to lie inside the storage.
/// The shape of a view that is its whole storage, contiguous from element 0
/// (the common case: one parameter per storage), after checking it. Such a
/// tensor can be read from the file straight into its own buffer.
pub(crate) fn whole_storage_shape(
    spec: &TensorSpec,
    storage: &StorageRef,
) -> Result<Option<Vec<usize>>, ViewError> {
    let g = check_view(spec, storage)?;
    Ok((g.offset == 0 && g.numel as u64 == storage.numel && is_contiguous(&g)).then_some(g.shape))
}

pub(crate) fn materialize(
    spec: &TensorSpec,
    storage: &StorageRef,
    dtype: DType,
    bytes: &[u8],
    order: ByteOrder,
) -> Result<Tensor, ViewError> {
    let g = check_view(spec, storage)?;
    let es = dtype.size();
    let out_of_bounds = || ViewError::OutOfBounds {
        size: spec.size.clone(),
        stride: spec.stride.clone(),
        offset: spec.offset,
        last: storage.numel,
        key: storage.key.to_string(),
        numel: (bytes.len() / es) as u64,
    };
    // check_view bounded every index by the storage's numel, and the storage's
    // byte length was checked against numel × es, so these products cannot
    // overflow; `get` still guards every slice.
    if g.numel == 0 || is_contiguous(&g) {
        let start = g.offset * es;
        let end = start + g.numel * es;
        let slice = bytes.get(start..end).ok_or_else(out_of_bounds)?;
        return Tensor::from_bytes(dtype, g.shape, slice, order).map_err(ViewError::Tensor);
    }
    let mut out = Vec::with_capacity(g.numel * es);
    let rank = g.shape.len();
    let mut index = vec![0usize; rank];
    let (inner_n, inner_s) = match (g.shape.last(), g.stride.last()) {
        (Some(&n), Some(&s)) => (n, s),
        _ => (1, 0),
    };
    'outer: loop {
        let base = g.offset
            + index
                .iter()
                .zip(&g.stride)
                .take(rank.saturating_sub(1))
                .map(|(i, s)| i * s)
                .sum::<usize>();
        for j in 0..inner_n {
            let at = (base + j * inner_s) * es;
            let elem = bytes.get(at..at + es).ok_or_else(out_of_bounds)?;
            out.extend_from_slice(elem);
        }
        // Advance the multi-index over every dimension but the last.
        let mut d = rank.saturating_sub(1);
        loop {
            if d == 0 {
                break 'outer;
            }
            d -= 1;
            let (Some(i), Some(&n)) = (index.get_mut(d), g.shape.get(d)) else {
                break 'outer;
            };
            *i += 1;
            if *i < n {
                break;
            }
            *i = 0;
        }
    }
    Tensor::from_bytes(dtype, g.shape, &out, order).map_err(ViewError::Tensor)
}

fn is_contiguous(g: &Geometry) -> bool {
    let mut expected = 1usize;
    for (&n, &s) in g.shape.iter().zip(&g.stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(n);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(numel: u64) -> StorageRef {
        StorageRef {
            key: Rc::from("0"),
            ty: StorageType::Float,
            numel,
        }
    }

    fn spec(offset: i64, size: &[i64], stride: &[i64]) -> TensorSpec {
        TensorSpec {
            storage: 0,
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    #[test]
    fn strided_view_copies_the_selected_elements() {
        // A 3x4 storage, view t[1:, ::2] → [[4, 6], [8, 10]].
        let t = materialize(
            &spec(4, &[2, 2], &[4, 2]),
            &storage(12),
            DType::F32,
            &bytes(12),
            ByteOrder::Little,
        )
        .unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(t.as_f32().unwrap(), &[4.0, 6.0, 8.0, 10.0]);
    }

    #[test]
    fn transposed_view_and_scalar() {
        let t = materialize(
            &spec(0, &[2, 3], &[1, 2]),
            &storage(6),
            DType::F32,
            &bytes(6),
            ByteOrder::Little,
        )
        .unwrap();
        assert_eq!(t.as_f32().unwrap(), &[0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        let s = materialize(
            &spec(5, &[], &[]),
            &storage(6),
            DType::F32,
            &bytes(6),
            ByteOrder::Little,
        )
        .unwrap();
        assert_eq!(s.as_f32().unwrap(), &[5.0]);
    }

    #[test]
    fn views_outside_the_storage_are_refused() {
        let cases = [
            spec(0, &[4], &[1]),
            spec(1, &[3], &[1]),
            spec(0, &[2, 2], &[2]),
            spec(0, &[-1], &[1]),
            spec(0, &[1], &[-1]),
            spec(-1, &[1], &[1]),
            spec(0, &[1 << 40], &[0]),
            spec(0, &[i64::MAX, i64::MAX], &[1, 1]),
            spec(0, &[3, 2], &[i64::MAX, 1]),
        ];
        for c in cases {
            let r = materialize(&c, &storage(3), DType::F32, &bytes(3), ByteOrder::Little);
            assert!(r.is_err(), "{c:?} accepted");
        }
    }

    #[test]
    fn empty_views_are_fine() {
        let t = materialize(
            &spec(0, &[0, 5], &[5, 1]),
            &storage(0),
            DType::F32,
            &[],
            ByteOrder::Little,
        )
        .unwrap();
        assert_eq!(t.shape(), &[0, 5]);
    }
}
