//! Add of a constant: the bias of a pending MatMul (→ [`Op::Linear`] with
//! bias), or a per-channel shift (the `+ shift` of `transform_input`, or of
//! an exported [`Op::ChannelAffine`]).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Add.html>. Versions 7
//! (broadcasting), 13, 14; covers opsets 7 to 28. Two inputs, one constant.
//! Adding two activations is refused (Inception V3 has no residuals).

use super::{OpSpec, per_channel};
use crate::error::OnnxError;
use crate::import::ctx::{Affine, Ctx, ParamSrc, Sym};
use crate::proto::NodeProto;
use incept_ir::Op;
use incept_ir::op::Linear;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Add",
    opsets: (7, 28),
    inputs: (2, 2),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &[])?;
    let (a, b) = (ctx.sym(node, 0)?, ctx.sym(node, 1)?);
    let (sym, c, c_index) = match (a, b) {
        (Sym::Const(c), s) => (s, c, 0),
        (s, Sym::Const(c)) => (s, c, 1),
        _ => {
            return Err(ctx.err(
                node,
                "adding two activations is not supported; one input must be a constant",
            ));
        }
    };
    match sym {
        Sym::MatMul(m) => {
            let out = m.weight.shape()[0];
            let bias = match c.shape() {
                [n] | [1, n] if *n == out => (*c)
                    .clone()
                    .reshape(vec![out])
                    .map_err(|e| ctx.err(node, e.to_string()))?,
                s => {
                    return Err(ctx.err(
                        node,
                        format!("bias has shape {s:?}, the MatMul needs [{out}]"),
                    ));
                }
            };
            let op = Op::Linear(Linear {
                in_features: m.weight.shape()[1],
                out_features: out,
                bias: true,
            });
            let params = vec![
                ParamSrc {
                    name: m.weight_name,
                    tensor: m.weight,
                },
                ParamSrc {
                    name: node.input[c_index].clone(),
                    tensor: bias,
                },
            ];
            ctx.add(node, op, vec![m.src], params)
        }
        Sym::Channel(mut ch) => {
            let k = scalar(ctx, node, &c)?;
            ch.shift += k;
            ctx.define_output(node, Sym::Channel(ch))
        }
        Sym::Affine(mut af) => {
            let shift = per_channel(ctx, node, &c, af.scale.len(), ctx.ty(af.src).shape.len())?;
            af.shift.iter_mut().zip(shift).for_each(|(s, k)| *s += k);
            af.origin = Ctx::origin(node);
            ctx.define_output(node, Sym::Affine(af))
        }
        Sym::Value(v) => {
            let ty = ctx.ty(v).clone();
            let channels = super::fixed_dim(&ty, 1).ok_or_else(|| {
                ctx.err(
                    node,
                    "only a per-channel shift of an NCHW activation is supported",
                )
            })?;
            let shift = per_channel(ctx, node, &c, channels, ty.shape.len())?;
            let af = Affine {
                src: v,
                scale: vec![1.0; channels],
                shift,
                origin: Ctx::origin(node),
            };
            ctx.define_output(node, Sym::Affine(af))
        }
        Sym::Const(_) => Err(ctx.err(node, "adding two constants is not supported")),
    }
}

/// A one-element float constant.
pub(crate) fn scalar(
    ctx: &Ctx<'_>,
    node: &NodeProto,
    c: &incept_ir::Tensor,
) -> Result<f64, OnnxError> {
    match super::float_values(c).as_deref() {
        Some([k]) => Ok(*k),
        _ => Err(ctx.err(
            node,
            format!(
                "a single channel can only be scaled or shifted by a scalar, got shape {:?}",
                c.shape()
            ),
        )),
    }
}
