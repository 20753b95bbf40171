//! BatchNormalization → [`Op::BatchNorm`] (inference mode only).
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__BatchNormalization.html>.
//! Versions 7, 9, 14, 15; covers opsets 7 to 28. Inputs: X, scale, B,
//! input_mean, input_var (all but X constant). `training_mode` must be 0 and
//! the training outputs (running mean/var) unused.

use incept_ir::Op;
use incept_ir::op::BatchNorm;

use super::{OpSpec, f32_to_f64, fixed_dim};
use crate::error::OnnxError;
use crate::import::ctx::{Ctx, ParamSrc};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "BatchNormalization",
    opsets: (7, 28),
    inputs: (5, 5),
    outputs: 3,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(node, &["epsilon", "momentum", "training_mode", "spatial"])?;
    if ctx.attr_int(node, "training_mode")?.unwrap_or(0) != 0 {
        return Err(ctx.err(node, "training_mode = 1 is not supported (inference only)"));
    }
    if ctx.attr_int(node, "spatial")?.unwrap_or(1) != 1 {
        return Err(ctx.err(node, "spatial = 0 is not supported"));
    }
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(ctx.err(
            node,
            "training outputs (running mean/var) are not supported",
        ));
    }
    let x = ctx.value(node, 0)?;
    let channels =
        fixed_dim(ctx.ty(x), 1).ok_or_else(|| ctx.err(node, "channels must be fixed"))?;
    let eps = ctx.attr_float(node, "epsilon")?.map_or(1e-5, f32_to_f64);
    let mut params = Vec::with_capacity(4);
    for i in 1..5 {
        let t = ctx.constant(node, i)?;
        params.push(ParamSrc {
            name: node.input[i].clone(),
            tensor: (*t).clone(),
        });
    }
    ctx.add(
        node,
        Op::BatchNorm(BatchNorm { channels, eps }),
        vec![x],
        params,
    )
}
