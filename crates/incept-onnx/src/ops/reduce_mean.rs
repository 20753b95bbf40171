//! ReduceMean over both spatial axes with keepdims → [`Op::AdaptiveAvgPool2d`] `[1, 1]`
//! (how the dynamo exporter writes `AdaptiveAvgPool2d((1, 1))`).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__ReduceMean.html>. Versions
//! 1, 11, 13 (axes attribute) and 18 (axes input); covers opsets 7 to 28.
//! Other reductions are refused.

use incept_ir::Op;
use incept_ir::op::AdaptiveAvgPool2d;

use super::{OpSpec, int_values};
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "ReduceMean",
    opsets: (1, 28),
    inputs: (1, 2),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["axes", "keepdims", "noop_with_empty_axes"])?;
    let x = ctx.value(node, 0)?;
    let axes = if Ctx::has_input(node, 1) {
        let t = ctx.constant(node, 1)?;
        int_values(&t).ok_or_else(|| ctx.err(node, "axes must be int64"))?
    } else {
        ctx.attr_ints(node, "axes")?.unwrap_or_default()
    };
    let rank = ctx.ty(x).shape.len() as i64;
    let mut axes: Vec<i64> = axes
        .iter()
        .map(|&a| if a < 0 { a + rank } else { a })
        .collect();
    axes.sort_unstable();
    let keepdims = ctx.attr_int(node, "keepdims")?.unwrap_or(1);
    if rank != 4 || axes != [2, 3] || keepdims != 1 {
        return Err(ctx.err(
            node,
            format!("only the mean over the spatial axes [2, 3] of a rank-4 input with keepdims=1 is supported (axes {axes:?}, keepdims {keepdims})"),
        ));
    }
    let op = Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] });
    ctx.add(node, op, vec![x], vec![])
}
