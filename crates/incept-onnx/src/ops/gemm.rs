//! Gemm `Y = alpha·A·B' + beta·C` with constant B and C → [`Op::Linear`].
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Gemm.html>. Versions 7, 9,
//! 11 (optional C), 13; covers opsets 7 to 28. Inputs: A, B, optional C.
//! `transA` must be 0; `transB = 0` transposes the weight; `alpha`/`beta`
//! other than 1 are folded into the weights only when every product is
//! exact in the weights' dtype, and refused otherwise.

use incept_ir::op::Linear;
use incept_ir::{Op, Tensor, TensorData};

use super::OpSpec;
use crate::error::OnnxError;
use crate::import::ctx::{Ctx, ParamSrc};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Gemm",
    opsets: (7, 28),
    inputs: (2, 3),
    outputs: 1,
    convert,
};

/// The transpose of a 2-D tensor.
pub(crate) fn transpose(t: &Tensor) -> Option<Tensor> {
    let [r, c] = t.shape() else { return None };
    let (r, c) = (*r, *c);
    fn tr<T: Copy>(v: &[T], r: usize, c: usize) -> Vec<T> {
        (0..c)
            .flat_map(|j| (0..r).map(move |i| v[i * c + j]))
            .collect()
    }
    let data = match t.data() {
        TensorData::F32(v) => TensorData::F32(tr(v, r, c)),
        TensorData::F16(v) => TensorData::F16(tr(v, r, c)),
        TensorData::BF16(v) => TensorData::BF16(tr(v, r, c)),
        TensorData::F64(v) => TensorData::F64(tr(v, r, c)),
        TensorData::I64(v) => TensorData::I64(tr(v, r, c)),
    };
    Tensor::new(vec![c, r], data).ok()
}

/// `t · k`, if every product is exactly representable in `t`'s dtype.
fn scale_exact(t: &Tensor, k: f32) -> Option<Tensor> {
    let k = f64::from(k);
    let data = match t.data() {
        // An f32 × f32 product is exact in f64; it is exact in f32 iff it survives the round trip.
        TensorData::F32(v) => TensorData::F32(
            v.iter()
                .map(|&x| {
                    let p = f64::from(x) * k;
                    let q = p as f32;
                    (f64::from(q) == p).then_some(q)
                })
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    };
    Tensor::new(t.shape().to_vec(), data).ok()
}

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["alpha", "beta", "transA", "transB"])?;
    if ctx.attr_int(node, "transA")?.unwrap_or(0) != 0 {
        return Err(ctx.err(node, "transA = 1 is not supported"));
    }
    let x = ctx.value(node, 0)?;
    if ctx.ty(x).shape.len() != 2 {
        return Err(ctx.err(
            node,
            format!("input A has shape {}, Gemm needs rank 2", ctx.ty(x)),
        ));
    }
    let b = ctx.constant(node, 1)?;
    let mut w = if ctx.attr_int(node, "transB")?.unwrap_or(0) != 0 {
        (*b).clone()
    } else {
        transpose(&b)
            .ok_or_else(|| ctx.err(node, format!("B has shape {:?}, need rank 2", b.shape())))?
    };
    let alpha = ctx.attr_float(node, "alpha")?.unwrap_or(1.0);
    let beta = ctx.attr_float(node, "beta")?.unwrap_or(1.0);
    if alpha != 1.0 {
        w = scale_exact(&w, alpha).ok_or_else(|| {
            ctx.err(node, format!("alpha = {alpha} cannot be folded into the weight exactly; refusing to change the model's numbers"))
        })?;
    }
    let [out_features, in_features] = w.shape() else {
        return Err(ctx.err(node, format!("B has shape {:?}, need rank 2", b.shape())));
    };
    let (out_features, in_features) = (*out_features, *in_features);
    let mut params = vec![ParamSrc {
        name: node.input[1].clone(),
        tensor: w,
    }];
    if Ctx::has_input(node, 2) {
        let c = ctx.constant(node, 2)?;
        let mut c = match c.shape() {
            [n] | [1, n] if *n == out_features => (*c).clone().reshape(vec![out_features]).map_err(|e| ctx.err(node, e.to_string()))?,
            s => return Err(ctx.err(node, format!("C has shape {s:?}; only a bias of [{out_features}] or [1, {out_features}] is supported"))),
        };
        if beta != 1.0 {
            c = scale_exact(&c, beta).ok_or_else(|| {
                ctx.err(node, format!("beta = {beta} cannot be folded into the bias exactly; refusing to change the model's numbers"))
            })?;
        }
        params.push(ParamSrc {
            name: node.input[2].clone(),
            tensor: c,
        });
    }
    let op = Op::Linear(Linear {
        in_features,
        out_features,
        bias: params.len() == 2,
    });
    ctx.add(node, op, vec![x], params)
}
