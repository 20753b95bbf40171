//! Flatten with axis 1 → [`Op::Flatten`] `start_dim = 1` (`torch.flatten(x, 1)`).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Flatten.html>. Versions 1, 9,
//! 11 (negative axis), 13, 21, 23–25 (element types only); covers opsets 7 to 28. One input. ONNX
//! always makes a 2-D output, which equals `torch.flatten(x, 1)` only for
//! axis 1, so other axes are refused.

use incept_ir::Op;
use incept_ir::op::Flatten;

use super::OpSpec;
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Flatten",
    opsets: (1, 28),
    inputs: (1, 1),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["axis"])?;
    let x = ctx.value(node, 0)?;
    let rank = ctx.ty(x).shape.len() as i64;
    let axis = ctx.attr_int(node, "axis")?.unwrap_or(1);
    let axis = if axis < 0 { axis + rank } else { axis };
    if axis != 1 {
        return Err(ctx.err(node, format!("axis {axis} is not supported (only 1)")));
    }
    ctx.add(node, Op::Flatten(Flatten { start_dim: 1 }), vec![x], vec![])
}
