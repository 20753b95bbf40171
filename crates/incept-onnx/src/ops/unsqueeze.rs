//! Unsqueeze of a selected channel back at axis 1 (`x[:, c].unsqueeze(1)`),
//! part of the `transform_input` pattern. Other unsqueezes are refused.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Unsqueeze.html>. Versions 1,
//! 11, 13 (axes input), 21, 23–25 (element types only); covers opsets 7 to 28.

use super::{OpSpec, int_values};
use crate::error::OnnxError;
use crate::import::ctx::{Ctx, Sym};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Unsqueeze",
    opsets: (1, 28),
    inputs: (1, 2),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["axes"])?;
    let axes = if Ctx::has_input(node, 1) {
        let t = ctx.constant(node, 1)?;
        int_values(&t).ok_or_else(|| ctx.err(node, "axes must be int64"))?
    } else {
        ctx.attr_ints(node, "axes")?.unwrap_or_default()
    };
    match ctx.sym(node, 0)? {
        Sym::Channel(mut ch) if !ch.kept_dim && axes == [1] => {
            ch.kept_dim = true;
            ctx.define_output(node, Sym::Channel(ch))
        }
        _ => Err(ctx.err(node, "only restoring a selected channel's axis (axes [1]) is supported, as part of transform_input")),
    }
}
