//! MaxPool → [`Op::Pool2d`] (max).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__MaxPool.html>. Versions 1, 8,
//! 10 (ceil_mode), 11, 12 (and 22); covers opsets 7 to 28. One input; the
//! optional Indices output must be unused. 2-D, dilation 1, row-major storage.

use incept_ir::Op;
use incept_ir::op::{Pool2d, PoolKind};

use super::{OpSpec, window};
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "MaxPool",
    opsets: (1, 28),
    inputs: (1, 1),
    outputs: 2,
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
            "storage_order",
        ],
    )?;
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(ctx.err(node, "the Indices output is not supported"));
    }
    if ctx.attr_int(node, "storage_order")?.unwrap_or(0) != 0 {
        return Err(ctx.err(node, "storage_order = 1 is not supported"));
    }
    let x = ctx.value(node, 0)?;
    let w = window(ctx, node, ctx.ty(x), None)?;
    if w.dilation != [1, 1] {
        return Err(ctx.err(
            node,
            format!("dilations {:?} are not supported", w.dilation),
        ));
    }
    let op = Op::Pool2d(Pool2d {
        kind: PoolKind::Max,
        kernel: w.kernel,
        stride: w.stride,
        pads: w.pads,
        ceil_mode: ctx.attr_int(node, "ceil_mode")?.unwrap_or(0) != 0,
        count_include_pad: true,
    });
    ctx.add(node, op, vec![x], vec![])
}
