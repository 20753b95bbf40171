//! AveragePool → [`Op::Pool2d`] (average).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__AveragePool.html>. Versions
//! 7 (count_include_pad), 10 (ceil_mode), 11, 19 (dilations; and 22); covers
//! opsets 7 to 28. One input. 2-D, dilation 1.

use incept_ir::Op;
use incept_ir::op::{Pool2d, PoolKind};

use super::{OpSpec, window};
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "AveragePool",
    opsets: (7, 28),
    inputs: (1, 1),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(
        node,
        &[
            "kernel_shape",
            "strides",
            "pads",
            "dilations",
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
        ],
    )?;
    let x = ctx.value(node, 0)?;
    let w = window(ctx, node, ctx.ty(x), None)?;
    if w.dilation != [1, 1] {
        return Err(ctx.err(
            node,
            format!("dilations {:?} are not supported", w.dilation),
        ));
    }
    let op = Op::Pool2d(Pool2d {
        kind: PoolKind::Avg,
        kernel: w.kernel,
        stride: w.stride,
        pads: w.pads,
        ceil_mode: ctx.attr_int(node, "ceil_mode")?.unwrap_or(0) != 0,
        // ONNX's default excludes padding; PyTorch's includes it.
        count_include_pad: ctx.attr_int(node, "count_include_pad")?.unwrap_or(0) != 0,
    });
    ctx.add(node, op, vec![x], vec![])
}
