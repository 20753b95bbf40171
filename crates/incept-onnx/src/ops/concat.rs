//! Concat → [`Op::Concat`], or, when its inputs are every channel of one
//! activation in order (each scaled and shifted), a pending
//! [`Op::ChannelAffine`]: the tail of the `transform_input` pattern.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Concat.html>. Versions 4,
//! 11 (negative axis), 13; covers opsets 7 to 28. One or more inputs.

use incept_ir::Op;
use incept_ir::op::Concat;

use super::{OpSpec, fixed_dim};
use crate::error::OnnxError;
use crate::import::ctx::{Affine, Ctx, Sym};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Concat",
    opsets: (4, 28),
    inputs: (1, usize::MAX),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["axis"])?;
    let axis = ctx
        .attr_int(node, "axis")?
        .ok_or_else(|| ctx.err(node, "attribute `axis` is required"))?;
    let syms: Vec<Sym> = (0..node.input.len())
        .map(|i| ctx.sym(node, i))
        .collect::<Result<_, _>>()?;
    if let Some(affine) = channel_affine(ctx, &syms, axis) {
        return ctx.define_output(
            node,
            Sym::Affine(Affine {
                origin: Ctx::origin(node),
                ..affine
            }),
        );
    }
    let mut inputs = Vec::with_capacity(syms.len());
    for s in syms {
        inputs.push(ctx.materialise(node, s)?);
    }
    let rank = ctx.ty(inputs[0]).shape.len() as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&a) {
        return Err(ctx.err(node, format!("axis {axis} is out of range for rank {rank}")));
    }
    ctx.add(
        node,
        Op::Concat(Concat { axis: a as usize }),
        inputs,
        vec![],
    )
}

/// The affine when `syms` are channels 0..C of one activation, axis kept, in order.
fn channel_affine(ctx: &Ctx<'_>, syms: &[Sym], axis: i64) -> Option<Affine> {
    let (mut scale, mut shift) = (Vec::new(), Vec::new());
    let mut src = None;
    for (i, s) in syms.iter().enumerate() {
        let Sym::Channel(c) = s else { return None };
        if !c.kept_dim || c.channel != i || src.is_some_and(|v| v != c.src) {
            return None;
        }
        src = Some(c.src);
        scale.push(c.scale);
        shift.push(c.shift);
    }
    let src = src?;
    let rank = ctx.ty(src).shape.len() as i64;
    if (axis != 1 && axis != 1 - rank) || fixed_dim(ctx.ty(src), 1) != Some(syms.len()) {
        return None;
    }
    Some(Affine {
        src,
        scale,
        shift,
        origin: Default::default(),
    })
}
