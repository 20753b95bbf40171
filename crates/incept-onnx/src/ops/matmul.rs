//! MatMul by a constant 2-D weight → a pending [`Op::Linear`] (without bias
//! unless an Add of a constant bias follows; see `add.rs`).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__MatMul.html>. Versions 9, 13;
//! covers opsets 7 to 28. Inputs: A (activation), B (constant `[in, out]`).

use super::OpSpec;
use super::gemm::transpose;
use crate::error::OnnxError;
use crate::import::ctx::{Ctx, PendingMatMul, Sym};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "MatMul",
    opsets: (1, 28),
    inputs: (2, 2),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &[])?;
    let x = ctx.value(node, 0)?;
    let b = ctx.constant(node, 1)?;
    let weight = transpose(&b).ok_or_else(|| {
        ctx.err(
            node,
            format!(
                "B has shape {:?}; only a constant 2-D weight is supported",
                b.shape()
            ),
        )
    })?;
    let pending = PendingMatMul {
        src: x,
        weight,
        weight_name: node.input[1].clone(),
        origin: Ctx::origin(node),
    };
    ctx.define_output(node, Sym::MatMul(pending))
}
