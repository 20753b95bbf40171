//! Mul by a constant: the per-channel scale of `transform_input` (one
//! channel at a time, as torch exports it, or as one `[1, C, 1, 1]`
//! constant, as incept exports [`incept_ir::Op::ChannelAffine`]).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Mul.html>. Versions 7
//! (broadcasting), 13, 14; covers opsets 7 to 28. Two inputs, one constant.

use super::add::scalar;
use super::{OpSpec, per_channel};
use crate::error::OnnxError;
use crate::import::ctx::{Affine, Ctx, Sym};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Mul",
    opsets: (7, 28),
    inputs: (2, 2),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &[])?;
    let (a, b) = (ctx.sym(node, 0)?, ctx.sym(node, 1)?);
    let (sym, c) = match (a, b) {
        (Sym::Const(c), s) | (s, Sym::Const(c)) => (s, c),
        _ => {
            return Err(ctx.err(
                node,
                "multiplying two activations is not supported; one input must be a constant",
            ));
        }
    };
    match sym {
        Sym::Channel(mut ch) => {
            let k = scalar(ctx, node, &c)?;
            ch.scale *= k;
            ch.shift *= k;
            ctx.define_output(node, Sym::Channel(ch))
        }
        Sym::Affine(mut af) => {
            let k = per_channel(ctx, node, &c, af.scale.len(), ctx.ty(af.src).shape.len())?;
            for ((s, t), k) in af.scale.iter_mut().zip(af.shift.iter_mut()).zip(k) {
                *s *= k;
                *t *= k;
            }
            af.origin = Ctx::origin(node);
            ctx.define_output(node, Sym::Affine(af))
        }
        Sym::Value(v) => {
            let ty = ctx.ty(v).clone();
            let channels = super::fixed_dim(&ty, 1).ok_or_else(|| {
                ctx.err(
                    node,
                    "only a per-channel scale of an NCHW activation is supported",
                )
            })?;
            let scale = per_channel(ctx, node, &c, channels, ty.shape.len())?;
            let af = Affine {
                src: v,
                scale,
                shift: vec![0.0; channels],
                origin: Ctx::origin(node),
            };
            ctx.define_output(node, Sym::Affine(af))
        }
        Sym::MatMul(_) => Err(ctx.err(node, "scaling a MatMul output is not supported")),
        Sym::Const(_) => Err(ctx.err(node, "multiplying two constants is not supported")),
    }
}
