//! Constant: defines a constant tensor; no node is made. Converters that
//! need constants (weights, axes, shapes) read it like an initializer.
//!
//! Spec: <https://onnx.ai/onnx/operators/onnx__Constant.html>. Versions 1,
//! 9, 11 (sparse_value), 12 (value_* scalars/lists), 13, 19, 21, 23–25 (element types only); covers
//! opsets 7 to 28. Supported: `value`, `value_float(s)`, `value_int(s)`.

use std::rc::Rc;

use incept_ir::{Tensor, TensorData};

use super::OpSpec;
use crate::error::OnnxError;
use crate::import::ctx::{Ctx, Sym};
use crate::proto::NodeProto;
use crate::tensor::{Source, decode_tensor};

pub(crate) const SPEC: OpSpec = OpSpec {
    op_type: "Constant",
    opsets: (1, 28),
    inputs: (0, 0),
    outputs: 1,
    convert,
};

fn convert(ctx: &mut Ctx<'_>, node: &NodeProto) -> Result<(), OnnxError> {
    let [a] = node.attribute.as_slice() else {
        return Err(ctx.err(node, "needs exactly one value attribute"));
    };
    let name = a.name.as_deref().unwrap_or("");
    let t = match name {
        "value" => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| ctx.err(node, "`value` holds no tensor"))?;
            // Constants are inline: external data is for initializers.
            Ok(decode_tensor(
                &Source {
                    path: ctx.path,
                    base: None,
                },
                t,
            )?)
        }
        "value_float" => Tensor::new(vec![], TensorData::F32(vec![a.f.unwrap_or(0.0)])),
        "value_floats" => Tensor::new(vec![a.floats.len()], TensorData::F32(a.floats.clone())),
        "value_int" => Tensor::new(vec![], TensorData::I64(vec![a.i.unwrap_or(0)])),
        "value_ints" => Tensor::new(vec![a.ints.len()], TensorData::I64(a.ints.clone())),
        other => return Err(ctx.err(node, format!("attribute `{other}` is not supported"))),
    }
    .map_err(|e| ctx.err(node, e.to_string()))?;
    ctx.define_output(node, Sym::Const(Rc::new(t)))
}
