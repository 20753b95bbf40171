//! ONNX → IR, in phases that each get their own function:
//!
//! 1. [`crate::limits`]: size check and protobuf decoding;
//! 2. [`initializers`]: every initializer decoded (raw, typed or external data);
//! 3. [`convert_nodes`]: supported-op check (all unsupported ops at once),
//!    then one converter per node from [`crate::ops::OPS`];
//! 4. [`finish`]: graph outputs, then `Graph::validate` re-derives every type;
//! 5. [`crate::naming`]: torchvision names from exporter scopes or the template.

pub(crate) mod ctx;

use std::path::Path;
use std::rc::Rc;

use incept_ir::{Dim, GraphOutput, ValueType};

use crate::error::{OnnxError, UnsupportedOp};
use crate::naming;
use crate::ops::{self, MAX_OPSET, MIN_OPSET};
use crate::proto::type_proto;
use crate::proto::{ModelProto, NodeProto, TensorProto, ValueInfoProto};
use crate::tensor::{Source, decode_tensor, dtype_of};
use crate::{Imported, limits};
use ctx::{Ctx, Sym, node_label};

/// Imports a model from its bytes. `base` is the folder external data is read from.
pub(crate) fn import_bytes(
    path: &Path,
    base: Option<&Path>,
    bytes: &[u8],
) -> Result<Imported, OnnxError> {
    let model = limits::decode(path, bytes)?;
    let opset = default_opset(path, &model)?;
    let src = Source { path, base };
    let mut ctx = Ctx::new(path, opset);
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::NotAModel {
        path: path.to_path_buf(),
        reason: "it has no graph".into(),
    })?;
    initializers(&mut ctx, &src, &graph.initializer)?;
    inputs(&mut ctx, &graph.input)?;
    convert_nodes(&mut ctx, &graph.node)?;
    finish(&mut ctx, &graph.output)?;
    ctx.graph.name = graph.name.clone().unwrap_or_default();
    for p in &model.metadata_props {
        if let (Some(k), Some(v)) = (&p.key, &p.value) {
            ctx.graph.metadata.insert(k.clone(), v.clone());
        }
    }
    let producer = format!(
        "{} {}",
        model.producer_name.as_deref().unwrap_or(""),
        model.producer_version.as_deref().unwrap_or("")
    )
    .trim()
    .to_string();
    let naming = naming::apply(
        &mut ctx,
        model.producer_name.as_deref() == Some(crate::PRODUCER),
    )?;
    ctx.graph.validate().map_err(|source| OnnxError::Graph {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Imported {
        graph: ctx.graph,
        warnings: ctx.warnings,
        opset,
        producer,
        naming,
    })
}

/// The default-domain opset, checked against the importer's range; other
/// domains are allowed only if no node uses them (checked with the ops).
fn default_opset(path: &Path, model: &ModelProto) -> Result<i64, OnnxError> {
    let v = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| OnnxError::NotAModel {
            path: path.to_path_buf(),
            reason: "it imports no default-domain opset".into(),
        })?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
        return Err(OnnxError::UnsupportedOpset {
            path: path.to_path_buf(),
            domain: String::new(),
            version: v,
            supported: format!("{MIN_OPSET} to {MAX_OPSET}"),
        });
    }
    Ok(v)
}

/// Phase 2: decode every initializer into a constant.
fn initializers(
    ctx: &mut Ctx<'_>,
    src: &Source<'_>,
    list: &[TensorProto],
) -> Result<(), OnnxError> {
    for t in list {
        let name = t.name.clone().unwrap_or_default();
        if name.is_empty() {
            return Err(OnnxError::Tensor {
                path: ctx.path.to_path_buf(),
                tensor: String::new(),
                rule: "an initializer has no name".into(),
            });
        }
        let tensor = decode_tensor(src, t)?;
        ctx.define(&name, Sym::Const(Rc::new(tensor)), "an initializer")?;
    }
    Ok(())
}

/// Graph inputs that are not initializers become IR inputs.
fn inputs(ctx: &mut Ctx<'_>, list: &[ValueInfoProto]) -> Result<(), OnnxError> {
    for vi in list {
        let name = vi.name.clone().unwrap_or_default();
        // Before IR 4, initializers were also listed as inputs.
        if ctx.syms.contains_key(&name) {
            continue;
        }
        let err = |rule: String| OnnxError::NotAModel {
            path: ctx.path.to_path_buf(),
            reason: format!("input `{name}`: {rule}"),
        };
        let Some(type_proto::Value::TensorType(tt)) =
            vi.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(err("is not a tensor".into()));
        };
        let dtype = dtype_of(tt.elem_type.unwrap_or(0)).ok_or_else(|| {
            err(format!(
                "element type {} is not supported",
                tt.elem_type.unwrap_or(0)
            ))
        })?;
        let shape = tt
            .shape
            .as_ref()
            .ok_or_else(|| err("has no shape".into()))?;
        let mut dims = Vec::with_capacity(shape.dim.len());
        for (axis, d) in shape.dim.iter().enumerate() {
            use crate::proto::tensor_shape_proto::dimension::Value as D;
            dims.push(match (&d.value, axis) {
                (Some(D::DimValue(v)), _) if *v > 0 => Dim::Fixed(*v as usize),
                (Some(D::DimValue(v)), _) => return Err(err(format!("dimension {axis} is {v}"))),
                (_, 0) => Dim::Batch,
                _ => {
                    return Err(err(format!(
                        "dimension {axis} is symbolic; only the batch (axis 0) may be"
                    )));
                }
            });
        }
        let id = ctx.graph.values.len();
        ctx.graph.values.push(incept_ir::Value {
            name: name.clone(),
            ty: ValueType::new(dtype, dims),
        });
        ctx.graph.inputs.push(id);
        ctx.define(&name, Sym::Value(id), "a graph input")?;
    }
    Ok(())
}

/// Phase 3: check every op is supported (listing all that are not), then convert.
fn convert_nodes(ctx: &mut Ctx<'_>, nodes: &[NodeProto]) -> Result<(), OnnxError> {
    let mut unsupported = Vec::new();
    for n in nodes {
        let op_type = n.op_type.clone().unwrap_or_default();
        let domain = n.domain.clone().unwrap_or_default();
        let mut report = |reason: String| {
            // One entry per distinct problem, counting the nodes that share it.
            if let Some(u) = unsupported.iter_mut().find(|u: &&mut UnsupportedOp| {
                u.op_type == op_type && u.domain == domain && u.reason == reason
            }) {
                u.count += 1;
            } else {
                unsupported.push(UnsupportedOp {
                    node: node_label(n),
                    op_type: op_type.clone(),
                    domain: domain.clone(),
                    reason,
                    count: 1,
                });
            }
        };
        if !(domain.is_empty() || domain == "ai.onnx") {
            report(format!(
                "domain `{domain}` is not supported (only the default ONNX domain)"
            ));
            continue;
        }
        match ops::lookup(&op_type) {
            None => report("no converter for this op".into()),
            Some(spec) if !(spec.opsets.0..=spec.opsets.1).contains(&ctx.opset) => report(format!(
                "covered for opsets {} to {}, the model uses {}",
                spec.opsets.0, spec.opsets.1, ctx.opset
            )),
            Some(_) => {}
        }
    }
    if !unsupported.is_empty() {
        return Err(OnnxError::UnsupportedOps {
            path: ctx.path.to_path_buf(),
            ops: unsupported,
        });
    }
    for n in nodes {
        let Some(spec) = ops::lookup(n.op_type.as_deref().unwrap_or("")) else {
            continue;
        };
        let n_inputs = n
            .input
            .iter()
            .rposition(|s| !s.is_empty())
            .map_or(0, |i| i + 1);
        if n_inputs < spec.inputs.0 || n_inputs > spec.inputs.1 {
            let want = match spec.inputs {
                (a, b) if a == b => a.to_string(),
                (a, usize::MAX) => format!("at least {a}"),
                (a, b) => format!("{a} to {b}"),
            };
            return Err(ctx.err(n, format!("takes {want} input(s), has {n_inputs}")));
        }
        if n.output.is_empty() || n.output.len() > spec.outputs || n.output[0].is_empty() {
            return Err(ctx.err(
                n,
                format!(
                    "must have 1 to {} output(s), the first named; has {}",
                    spec.outputs,
                    n.output.len()
                ),
            ));
        }
        if n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            return Err(ctx.err(n, "subgraph attributes are not supported"));
        }
        (spec.convert)(ctx, n)?;
    }
    Ok(())
}

/// Phase 4: graph outputs (materialising pending patterns), then validation.
fn finish(ctx: &mut Ctx<'_>, outputs: &[ValueInfoProto]) -> Result<(), OnnxError> {
    for o in outputs {
        let name = o.name.clone().unwrap_or_default();
        let sym = ctx
            .syms
            .get(&name)
            .cloned()
            .ok_or_else(|| OnnxError::UsedBeforeDefined {
                path: ctx.path.to_path_buf(),
                node: format!("graph output `{name}`"),
                input: name.clone(),
            })?;
        let fake = NodeProto {
            name: Some(name.clone()),
            output: vec![name.clone()],
            ..NodeProto::default()
        };
        let value = ctx.materialise(&fake, sym)?;
        if let Some(declared) = declared_dims(o) {
            let inferred = &ctx.graph.values[value].ty.shape;
            let agrees = declared.len() == inferred.len()
                && declared
                    .iter()
                    .zip(inferred)
                    .all(|(d, i)| d.is_none() || *d == i.fixed());
            if !agrees {
                ctx.warnings.push(format!(
                    "output `{name}` is declared with dims {declared:?} but computes {}",
                    incept_ir::shape::fmt_shape(inferred)
                ));
            }
        }
        ctx.graph.outputs.push(GraphOutput {
            name,
            value,
            training_only: false,
        });
    }
    ctx.graph.validate().map_err(|source| OnnxError::Graph {
        path: ctx.path.to_path_buf(),
        source,
    })
}

/// The fixed dims an output declares (`None` for symbolic ones), if it declares a shape.
fn declared_dims(vi: &ValueInfoProto) -> Option<Vec<Option<usize>>> {
    use crate::proto::tensor_shape_proto::dimension::Value as D;
    let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let shape = tt.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(D::DimValue(v)) => usize::try_from(v).ok(),
                _ => None,
            })
            .collect(),
    )
}
