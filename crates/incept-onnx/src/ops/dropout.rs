//! Dropout → [`Op::Dropout`] (the identity at inference, kept so the graph
//! mirrors its source).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Dropout.html>. Versions 7,
//! 10, 12 (ratio and training_mode as inputs), 13, 22 (element types only); covers opsets 7 to 28.
//! The mask output must be unused and training_mode false.

use incept_ir::Op;
use incept_ir::op::Dropout;

use super::{OpSpec, f32_to_f64, float_values};
use crate::error::OnnxError;
use crate::import::ctx::Ctx;
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Dropout",
    opsets: (7, 28),
    inputs: (1, 3),
    outputs: 2,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["ratio", "seed", "is_test"])?;
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(ctx.err(node, "the mask output is not supported"));
    }
    if Ctx::has_input(node, 2) {
        let t = ctx.constant(node, 2)?;
        if t.to_f64_vec().iter().any(|&v| v != 0.0) {
            return Err(ctx.err(node, "training_mode = true is not supported"));
        }
    }
    let x = ctx.value(node, 0)?;
    let p = if Ctx::has_input(node, 1) {
        let t = ctx.constant(node, 1)?;
        match float_values(&t).as_deref() {
            Some([p]) => *p,
            _ => return Err(ctx.err(node, "ratio must be a float scalar")),
        }
    } else {
        ctx.attr_float(node, "ratio")?.map_or(0.5, f32_to_f64)
    };
    ctx.add(node, Op::Dropout(Dropout { p }), vec![x], vec![])
}
