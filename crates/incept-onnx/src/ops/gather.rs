//! Gather of one channel (`x[:, c]`, axis 1, a constant scalar index): the
//! head of the `transform_input` pattern, as the TorchScript and dynamo
//! exporters write it. Other gathers are refused.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Gather.html>. Versions 1, 11,
//! 13; covers opsets 7 to 28. Inputs: data, indices (constant int64).

use super::{OpSpec, fixed_dim, int_values};
use crate::error::OnnxError;
use crate::import::ctx::{Channel, Ctx, Sym};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Gather",
    opsets: (1, 28),
    inputs: (2, 2),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["axis"])?;
    let x = ctx.value(node, 0)?;
    let idx = ctx.constant(node, 1)?;
    let axis = ctx.attr_int(node, "axis")?.unwrap_or(0);
    let rank = ctx.ty(x).shape.len() as i64;
    let channels = fixed_dim(ctx.ty(x), 1).unwrap_or(0) as i64;
    let index = int_values(&idx).filter(|v| v.len() == 1).map(|v| v[0]);
    let (Some(i), true) = (index, axis == 1 || axis == 1 - rank) else {
        return Err(ctx.err(node, "only selecting one channel (axis 1, constant index) is supported, as part of transform_input"));
    };
    let i = if i < 0 { i + channels } else { i };
    if !(0..channels).contains(&i) {
        return Err(ctx.err(
            node,
            format!("index {i} is out of range for {channels} channels"),
        ));
    }
    let ch = Channel {
        src: x,
        channel: i as usize,
        // A rank-1 index keeps the axis; a scalar index removes it.
        kept_dim: !idx.shape().is_empty(),
        scale: 1.0,
        shift: 0.0,
    };
    ctx.define_output(node, Sym::Channel(ch))
}
