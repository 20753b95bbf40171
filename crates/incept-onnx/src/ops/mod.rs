//! Phase 3 of import: one converter per ONNX op, registered in one table, `OPS`.
//!
//! Each file opens with its spec link and the opset versions it covers, and
//! declares its arity in its `OpSpec`. The model's default-domain opset
//! must lie in [`MIN_OPSET`]..=[`MAX_OPSET`].

use incept_ir::{Tensor, ValueType};

use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

mod add;
mod average_pool;
mod batch_normalization;
mod concat;
mod constant;
mod conv;
mod dropout;
mod flatten;
mod gather;
mod gemm;
mod global_average_pool;
mod identity;
mod matmul;
mod max_pool;
mod mul;
mod reduce_mean;
mod relu;
mod reshape;
mod slice;
mod unsqueeze;

pub(crate) use gemm::transpose;

/// Oldest default-domain opset the importer reads.
pub const MIN_OPSET: i64 = 7;
/// Newest default-domain opset the importer reads: the newest onnxruntime
/// 1.32 runs (ONNX 1.23's). Versions 22 to 25 of the supported ops only add
/// element types (bfloat16, float8, float4, int2…; attributes and inputs
/// unchanged, checked against onnx 1.23's schemas), and the importer refuses
/// element types it does not read, so every op imports the same way up to 28.
pub const MAX_OPSET: i64 = 28;

/// Converts one ONNX node, defining its output(s) in the context.
pub(crate) type ConvertFn = fn(&mut Ctx<'_>, &NodeProto) -> Result<(), OnnxError>;

/// One supported op: its name, the opsets its converter covers, its arity.
pub(crate) struct OpSpec {
    /// `op_type` in the default domain.
    pub op_type: &'static str,
    /// First and last opset covered.
    pub opsets: (i64, i64),
    /// Fewest and most inputs (trailing empty names not counted).
    pub inputs: (usize, usize),
    /// Most outputs the converter can define (only the first may be read).
    pub outputs: usize,
    /// The converter.
    pub convert: ConvertFn,
}

/// Every supported op, one row each: the only place ops are registered.
pub(crate) static OPS: &[OpSpec] = &[
    add::SPEC,
    average_pool::SPEC,
    batch_normalization::SPEC,
    concat::SPEC,
    constant::SPEC,
    conv::SPEC,
    dropout::SPEC,
    flatten::SPEC,
    gather::SPEC,
    gemm::SPEC,
    global_average_pool::SPEC,
    identity::SPEC,
    matmul::SPEC,
    max_pool::SPEC,
    mul::SPEC,
    reduce_mean::SPEC,
    relu::SPEC,
    reshape::SPEC,
    slice::SPEC,
    unsqueeze::SPEC,
];

/// The converter for `op_type`.
pub(crate) fn lookup(op_type: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|s| s.op_type == op_type)
}

/// The supported ops as `(op_type, first opset, last opset)`, for docs and `incept inspect`.
pub fn supported_ops() -> Vec<(&'static str, i64, i64)> {
    OPS.iter()
        .map(|s| (s.op_type, s.opsets.0, s.opsets.1))
        .collect()
}

/// A float32 attribute or constant as the decimal it was written from:
/// `0.001f32` becomes `0.001`, not `0.0010000000474974513`, so imported
/// values equal the ones in PyTorch's source and in the template.
pub(crate) fn f32_to_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// The elements of a float constant as f64 (f32 via [`f32_to_f64`]).
pub(crate) fn float_values(t: &Tensor) -> Option<Vec<f64>> {
    match t.data() {
        incept_ir::TensorData::F32(v) => Some(v.iter().map(|&x| f32_to_f64(x)).collect()),
        incept_ir::TensorData::I64(_) => None,
        _ => Some(t.to_f64_vec()),
    }
}

/// The elements of an integer constant.
pub(crate) fn int_values(t: &Tensor) -> Option<Vec<i64>> {
    match t.data() {
        incept_ir::TensorData::I64(v) => Some(v.clone()),
        _ => None,
    }
}

/// A fixed dimension of a value.
pub(crate) fn fixed_dim(ty: &ValueType, axis: usize) -> Option<usize> {
    ty.shape.get(axis).and_then(|d| d.fixed())
}

/// Window attributes shared by Conv, MaxPool and AveragePool.
pub(crate) struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
}

fn pair(
    ctx: &Ctx<'_>,
    node: &NodeProto,
    name: &str,
    v: Option<Vec<i64>>,
    default: usize,
) -> Result<[usize; 2], OnnxError> {
    match v {
        None => Ok([default, default]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(ctx.err(
            node,
            format!("`{name}` = {v:?}: only 2-D windows with positive values are supported"),
        )),
    }
}

/// Reads kernel_shape/strides/pads/dilations/auto_pad for a 2-D window over `input`.
/// `kernel` is the kernel when the op does not state it (Conv: from the weight).
pub(crate) fn window(
    ctx: &Ctx<'_>,
    node: &NodeProto,
    input: &ValueType,
    kernel: Option<[usize; 2]>,
) -> Result<Window, OnnxError> {
    let k = match (ctx.attr_ints(node, "kernel_shape")?, kernel) {
        (Some(v), _) => pair(ctx, node, "kernel_shape", Some(v), 1)?,
        (None, Some(k)) => k,
        (None, None) => return Err(ctx.err(node, "attribute `kernel_shape` is required")),
    };
    if let Some(kk) = kernel
        && kk != k
    {
        return Err(ctx.err(
            node,
            format!("kernel_shape {k:?} differs from the weight's {kk:?}"),
        ));
    }
    let stride = pair(ctx, node, "strides", ctx.attr_ints(node, "strides")?, 1)?;
    let dilation = pair(ctx, node, "dilations", ctx.attr_ints(node, "dilations")?, 1)?;
    let auto_pad = ctx
        .attr_string(node, "auto_pad")?
        .unwrap_or_else(|| "NOTSET".into());
    let explicit = ctx.attr_ints(node, "pads")?;
    let pads = match auto_pad.as_str() {
        "NOTSET" | "" => match explicit {
            None => [0; 4],
            Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
            }
            Some(p) => {
                return Err(ctx.err(node, format!("`pads` = {p:?}: need 4 non-negative values")));
            }
        },
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = [0; 4];
            for axis in 0..2 {
                let size = fixed_dim(input, axis + 2)
                    .ok_or_else(|| ctx.err(node, "auto_pad SAME needs a fixed spatial size"))?;
                let out = size.div_ceil(stride[axis]);
                let span = dilation[axis] * (k[axis] - 1) + 1;
                let total = ((out - 1) * stride[axis] + span).saturating_sub(size);
                // SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the beginning.
                let (begin, end) = if auto_pad == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                pads[axis] = begin;
                pads[axis + 2] = end;
            }
            pads
        }
        other => {
            return Err(ctx.err(
                node,
                format!("auto_pad `{other}` is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"),
            ));
        }
    };
    Ok(Window {
        kernel: k,
        stride,
        pads,
        dilation,
    })
}

/// A constant that broadcasts one value per channel over an NCHW-like
/// activation of `rank`: a scalar, or `[1, C, 1, …]` / `[C, 1, …]`.
pub(crate) fn per_channel(
    ctx: &Ctx<'_>,
    node: &NodeProto,
    c: &Tensor,
    channels: usize,
    rank: usize,
) -> Result<Vec<f64>, OnnxError> {
    let values =
        float_values(c).ok_or_else(|| ctx.err(node, "the constant must be a float tensor"))?;
    let s = c.shape();
    if values.len() == 1 && s.iter().all(|&d| d == 1) && s.len() <= rank {
        return Ok(vec![values[0]; channels]);
    }
    // Right-aligned broadcasting: the channel axis of the activation is axis
    // `rank - 1 - k` of the constant counted from the right.
    let axis_in_c = s.len() as i64 - (rank as i64 - 1);
    let ok = s.len() <= rank
        && axis_in_c >= 0
        && s.iter().enumerate().all(|(i, &d)| {
            if i as i64 == axis_in_c {
                d == channels
            } else {
                d == 1
            }
        });
    if !ok {
        return Err(ctx.err(node, format!("constant of shape {s:?} is not one value per channel of {channels} (need [1, {channels}, 1, 1] or a scalar)")));
    }
    Ok(values)
}
