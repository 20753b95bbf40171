//! Reshape with a constant target shape → [`Op::Reshape`].
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Reshape.html>. Versions 5
//! (shape input), 13, 14 (allowzero), 19, 21, 23–25 (element types only); covers opsets 7 to 28. Inputs:
//! data, shape (constant int64). `allowzero = 1` with a 0 in the shape is refused.

use incept_ir::Op;
use incept_ir::op::Reshape;

use super::{OpSpec, int_values};
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Reshape",
    opsets: (5, 28),
    inputs: (2, 2),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["allowzero"])?;
    let x = ctx.value(node, 0)?;
    let t = ctx.constant(node, 1)?;
    let shape = int_values(&t).ok_or_else(|| ctx.err(node, "the shape must be int64"))?;
    if ctx.attr_int(node, "allowzero")?.unwrap_or(0) != 0 && shape.contains(&0) {
        return Err(ctx.err(node, "allowzero = 1 with a 0 in the shape is not supported"));
    }
    ctx.add(node, Op::Reshape(Reshape { shape }), vec![x], vec![])
}
