//! Slice of one channel (`x[:, c:c+1]`): the form some exporters give the
//! channel selection of `transform_input`. Other slices are refused.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Slice.html>. Versions 1
//! (attributes), 10 (inputs), 11, 13; covers opsets 7 to 28.

use super::{OpSpec, fixed_dim, int_values};
use crate::error::OnnxError;
use crate::import::ctx::{Channel, Ctx, Sym};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Slice",
    opsets: (1, 28),
    inputs: (1, 5),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["starts", "ends", "axes"])?;
    let x = ctx.value(node, 0)?;
    let list = |ctx: &Ctx<'_>, i: usize, attr: &str| -> Result<Option<Vec<i64>>, OnnxError> {
        if Ctx::has_input(node, i) {
            let t = ctx.constant(node, i)?;
            Ok(Some(int_values(&t).ok_or_else(|| {
                ctx.err(node, format!("{attr} must be int64"))
            })?))
        } else {
            ctx.attr_ints(node, attr)
        }
    };
    let starts = list(ctx, 1, "starts")?.unwrap_or_default();
    let ends = list(ctx, 2, "ends")?.unwrap_or_default();
    let axes = list(ctx, 3, "axes")?;
    let steps = if Ctx::has_input(node, 4) {
        list(ctx, 4, "steps")?
    } else {
        None
    };
    let channels = fixed_dim(ctx.ty(x), 1).unwrap_or(0) as i64;
    let one_channel = starts.len() == 1
        && ends.len() == 1
        && axes.as_deref() == Some(&[1][..])
        && steps.as_deref().is_none_or(|s| s == [1])
        && (0..channels).contains(&starts[0])
        && ends[0] == starts[0] + 1;
    if !one_channel {
        return Err(ctx.err(node, "only slicing one channel (axes [1], end = start + 1) is supported, as part of transform_input"));
    }
    let ch = Channel {
        src: x,
        channel: starts[0] as usize,
        kept_dim: true,
        scale: 1.0,
        shift: 0.0,
    };
    ctx.define_output(node, Sym::Channel(ch))
}
