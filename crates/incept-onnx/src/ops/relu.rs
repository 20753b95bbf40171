//! Relu → [`Op::Relu`].
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Relu.html>. Versions 6, 13,
//! 14; covers opsets 7 to 28. One input, one output.

use incept_ir::Op;

use super::OpSpec;
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Relu",
    opsets: (1, 28),
    inputs: (1, 1),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &[])?;
    let x = ctx.value(node, 0)?;
    ctx.add(node, Op::Relu, vec![x], vec![])
}
