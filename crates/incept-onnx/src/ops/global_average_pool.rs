//! GlobalAveragePool → [`Op::AdaptiveAvgPool2d`] with output `[1, 1]`.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__GlobalAveragePool.html>.
//! Version 1 (and 22); covers opsets 7 to 28. One input, rank 4.

use incept_ir::Op;
use incept_ir::op::AdaptiveAvgPool2d;

use super::OpSpec;
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "GlobalAveragePool",
    opsets: (1, 28),
    inputs: (1, 1),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &[])?;
    let x = ctx.value(node, 0)?;
    let op = Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] });
    ctx.add(node, op, vec![x], vec![])
}
