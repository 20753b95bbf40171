//! Identity: the output stands for the input; no node is made.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Identity.html>. Versions 1,
//! 13, 14, 16, 19, 21, 23–25 (element types only); covers opsets 7 to 28 (tensors only). One input.

use super::OpSpec;
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Identity",
    opsets: (1, 28),
    inputs: (1, 1),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &[])?;
    let s = ctx.sym(node, 0)?;
    ctx.define_output(node, s)
}
