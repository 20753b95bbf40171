//! Conv → [`Op::Conv2d`].
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Conv.html>. Versions 1, 11
//! (and 22, same semantics); covers opsets 7 to 28. Inputs: X, W, optional B.
//! 2-D only; `auto_pad` NOTSET, SAME_UPPER, SAME_LOWER and VALID.

use incept_ir::Op;
use incept_ir::op::Conv2d;

use super::{OpSpec, fixed_dim, window};
use crate::error::OnnxError;
use crate::import::ctx::{Ctx, ParamSrc};
use crate::proto::NodeProto;

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Conv",
    opsets: (1, 28),
    inputs: (2, 3),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    ctx.known_attrs(
        node,
        &[
            "kernel_shape",
            "strides",
            "pads",
            "dilations",
            "group",
            "auto_pad",
        ],
    )?;
    let x = ctx.value(node, 0)?;
    let w = ctx.constant(node, 1)?;
    let ws = w.shape().to_vec();
    if ws.len() != 4 {
        return Err(ctx.err(
            node,
            format!("weight has shape {ws:?}: only 2-D convolutions are supported"),
        ));
    }
    let groups = ctx.attr_int(node, "group")?.unwrap_or(1);
    if groups < 1 {
        return Err(ctx.err(node, format!("group = {groups} must be positive")));
    }
    let groups = groups as usize;
    let in_channels =
        fixed_dim(ctx.ty(x), 1).ok_or_else(|| ctx.err(node, "input channels must be fixed"))?;
    let win = window(ctx, node, ctx.ty(x), Some([ws[2], ws[3]]))?;
    let mut params = vec![ParamSrc {
        name: node.input[1].clone(),
        tensor: (*w).clone(),
    }];
    if Ctx::has_input(node, 2) {
        let b = ctx.constant(node, 2)?;
        params.push(ParamSrc {
            name: node.input[2].clone(),
            tensor: (*b).clone(),
        });
    }
    let op = Op::Conv2d(Conv2d {
        in_channels,
        out_channels: ws[0],
        kernel: win.kernel,
        stride: win.stride,
        pads: win.pads,
        dilation: win.dilation,
        groups,
        bias: params.len() == 2,
    });
    ctx.add(node, op, vec![x], params)
}
