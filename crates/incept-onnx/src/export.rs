//! IR → ONNX: whatever the graph holds, at a chosen opset, with torchvision
//! names for nodes and initializers, a symbolic batch (`N`), and the graph's
//! metadata in `metadata_props`. Only the inference outputs are written
//! (training-only heads and the nodes and weights only they need are left out).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use incept_ir::op::PoolKind;
use incept_ir::{Dim, Graph, Op, Tensor, TensorData, ValueId, ValueType};
use prost::Message;

use crate::error::{OnnxError, memory_path};
use crate::limits::MAX_PROTO_BYTES;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_shape_proto::{Dimension, dimension};
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};
use crate::tensor::code_of;

/// Oldest opset the exporter writes.
pub const MIN_EXPORT_OPSET: i64 = 13;
/// Newest opset the exporter writes.
pub const MAX_EXPORT_OPSET: i64 = 21;

/// How to write a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// The default-domain opset, [`MIN_EXPORT_OPSET`]..=[`MAX_EXPORT_OPSET`] (default 17).
    pub opset: i64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { opset: 17 }
    }
}

/// The IR version that goes with an opset (onnx's VERSION_TABLE).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Writes `graph` to `path` as ONNX: to a temporary file in the same folder,
/// then renamed, so a failed export leaves no partial file.
pub fn export(graph: &Graph, path: &Path, opts: &ExportOptions) -> Result<(), OnnxError> {
    let bytes = build(graph, opts, path)?;
    let io = |action: &'static str| {
        move |source| OnnxError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| OnnxError::Export {
        path: path.to_path_buf(),
        rule: "the output path names no file".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.incept-tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("writing a temporary file")(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("renaming the temporary file into place")(e)
    })
}

/// The ONNX bytes of `graph`.
pub fn export_bytes(graph: &Graph, opts: &ExportOptions) -> Result<Vec<u8>, OnnxError> {
    build(graph, opts, &memory_path())
}

fn build(graph: &Graph, opts: &ExportOptions, path: &Path) -> Result<Vec<u8>, OnnxError> {
    let err = |rule: String| OnnxError::Export {
        path: path.to_path_buf(),
        rule,
    };
    if !(MIN_EXPORT_OPSET..=MAX_EXPORT_OPSET).contains(&opts.opset) {
        return Err(err(format!(
            "opset {} is not supported for export ({MIN_EXPORT_OPSET} to {MAX_EXPORT_OPSET})",
            opts.opset
        )));
    }
    graph
        .validate()
        .map_err(|e| err(format!("the graph is inconsistent: {e}")))?;
    let mut w = Writer {
        graph,
        path,
        names: HashMap::new(),
        nodes: vec![],
        inits: vec![],
        init_names: HashSet::new(),
    };
    let outputs: Vec<_> = graph.outputs.iter().filter(|o| !o.training_only).collect();
    if outputs.is_empty() {
        return Err(err("the graph has no inference outputs".into()));
    }
    for o in &outputs {
        w.names.entry(o.value).or_insert_with(|| o.name.clone());
    }
    let needed = graph.ancestors(outputs.iter().map(|o| o.value));
    for (i, node) in graph.nodes.iter().enumerate() {
        if needed[i] {
            w.node(node)?;
        }
    }
    let value_info = |v: ValueId, name: String| ValueInfoProto {
        name: Some(name),
        r#type: Some(tensor_type(&graph.values[v].ty)),
        ..Default::default()
    };
    let inputs = graph
        .inputs
        .iter()
        .map(|&v| value_info(v, w.name(v)))
        .collect();
    let outs = outputs
        .iter()
        .map(|o| value_info(o.value, o.name.clone()))
        .collect();
    let g = GraphProto {
        name: Some(if graph.name.is_empty() {
            "incept".into()
        } else {
            graph.name.clone()
        }),
        node: w.nodes,
        initializer: w.inits,
        input: inputs,
        output: outs,
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(ir_version(opts.opset)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opts.opset),
        }],
        producer_name: Some(crate::PRODUCER.into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(g),
        metadata_props: graph
            .metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect(),
        ..Default::default()
    };
    let len = model.encoded_len() as u64;
    if len > MAX_PROTO_BYTES {
        return Err(err(format!(
            "the model would be {len} bytes, over the 2 GiB protobuf limit; writing external data is not implemented"
        )));
    }
    Ok(model.encode_to_vec())
}

fn tensor_type(ty: &ValueType) -> TypeProto {
    let dim = ty
        .shape
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Batch => dimension::Value::DimParam("N".into()),
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
            }),
            ..Default::default()
        })
        .collect();
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(code_of(ty.dtype)),
            shape: Some(TensorShapeProto { dim }),
        })),
        ..Default::default()
    }
}

/// An initializer holding `t` as little-endian `raw_data`.
fn tensor_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(code_of(t.dtype())),
        raw_data: Some(t.to_le_bytes()),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn float(name: &str, v: f64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v as f32),
        ..Default::default()
    }
}

struct Writer<'a> {
    graph: &'a Graph,
    path: &'a Path,
    names: HashMap<ValueId, String>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    init_names: HashSet<String>,
}

impl Writer<'_> {
    fn err(&self, node: &str, rule: String) -> OnnxError {
        OnnxError::Export {
            path: self.path.to_path_buf(),
            rule: format!("node `{node}`: {rule}"),
        }
    }

    /// The ONNX tensor name of a value: its graph-output name, else its own.
    fn name(&self, v: ValueId) -> String {
        self.names
            .get(&v)
            .cloned()
            .unwrap_or_else(|| self.graph.values[v].name.clone())
    }

    fn init(&mut self, name: &str, t: &Tensor) {
        if self.init_names.insert(name.to_string()) {
            self.inits.push(tensor_proto(name, t));
        }
    }

    /// Initializer names for the node's parameters.
    fn params(&mut self, node: &incept_ir::Node) -> Result<Vec<String>, OnnxError> {
        let mut out = Vec::new();
        for &p in &node.params {
            let param = &self.graph.params[p];
            let data = param.data.as_ref().ok_or_else(|| {
                self.err(
                    &node.name,
                    format!(
                        "parameter `{}` has no data (bind weights first)",
                        param.name
                    ),
                )
            })?;
            self.init(&param.name, data);
            out.push(param.name.clone());
        }
        Ok(out)
    }

    fn push(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: Vec<String>,
        output: String,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            name: Some(name.to_string()),
            op_type: Some(op_type.into()),
            input: inputs,
            output: vec![output],
            attribute,
            ..Default::default()
        });
    }

    fn node(&mut self, node: &incept_ir::Node) -> Result<(), OnnxError> {
        let mut inputs: Vec<String> = node.inputs.iter().map(|&v| self.name(v)).collect();
        let out = self.name(node.output);
        let name = node.name.as_str();
        let params = self.params(node)?;
        match &node.op {
            Op::Conv2d(c) => {
                inputs.extend(params);
                let attrs = vec![
                    ints("kernel_shape", &c.kernel),
                    ints("strides", &c.stride),
                    ints("pads", &c.pads),
                    ints("dilations", &c.dilation),
                    int("group", c.groups as i64),
                ];
                self.push(name, "Conv", inputs, out, attrs);
            }
            Op::BatchNorm(b) => {
                inputs.extend(params);
                self.push(
                    name,
                    "BatchNormalization",
                    inputs,
                    out,
                    vec![float("epsilon", b.eps)],
                );
            }
            Op::Relu => self.push(name, "Relu", inputs, out, vec![]),
            Op::Pool2d(p) => {
                let mut attrs = vec![
                    ints("kernel_shape", &p.kernel),
                    ints("strides", &p.stride),
                    ints("pads", &p.pads),
                    int("ceil_mode", i64::from(p.ceil_mode)),
                ];
                let op_type = match p.kind {
                    PoolKind::Max => "MaxPool",
                    PoolKind::Avg => {
                        attrs.push(int("count_include_pad", i64::from(p.count_include_pad)));
                        "AveragePool"
                    }
                };
                self.push(name, op_type, inputs, out, attrs);
            }
            Op::AdaptiveAvgPool2d(a) if a.output == [1, 1] => {
                self.push(name, "GlobalAveragePool", inputs, out, vec![]);
            }
            Op::AdaptiveAvgPool2d(a) => {
                return Err(self.err(
                    name,
                    format!(
                        "adaptive pooling to {:?} has no ONNX equivalent (only [1, 1])",
                        a.output
                    ),
                ));
            }
            Op::Concat(c) => self.push(
                name,
                "Concat",
                inputs,
                out,
                vec![int("axis", c.axis as i64)],
            ),
            Op::Flatten(f) if f.start_dim == 1 => {
                self.push(name, "Flatten", inputs, out, vec![int("axis", 1)])
            }
            Op::Flatten(f) => {
                let mut shape = vec![0i64; f.start_dim];
                shape.push(-1);
                self.reshape(name, inputs, out, shape);
            }
            Op::Reshape(r) => self.reshape(name, inputs, out, r.shape.clone()),
            Op::Linear(l) => {
                let rank = self.graph.values[node.inputs[0]].ty.shape.len();
                if rank == 2 {
                    inputs.extend(params);
                    self.push(name, "Gemm", inputs, out, vec![int("transB", 1)]);
                } else {
                    // Gemm is 2-D only: MatMul by the transposed weight, then the bias.
                    let w = node
                        .params
                        .first()
                        .and_then(|&p| self.graph.params[p].data.as_ref());
                    let wt = w
                        .and_then(crate::ops::transpose)
                        .ok_or_else(|| self.err(name, "weight is not 2-D".into()))?;
                    let wt_name = format!("{}.transposed", params[0]);
                    self.init(&wt_name, &wt);
                    let mm = if l.bias {
                        format!("{name}.matmul")
                    } else {
                        out.clone()
                    };
                    self.push(
                        &mm.clone(),
                        "MatMul",
                        vec![inputs[0].clone(), wt_name],
                        mm.clone(),
                        vec![],
                    );
                    if l.bias {
                        self.push(name, "Add", vec![mm, params[1].clone()], out, vec![]);
                    }
                }
            }
            Op::Dropout(d) => {
                let ratio = format!("{name}.ratio");
                let t = Tensor::new(vec![], TensorData::F32(vec![d.p as f32]))
                    .map_err(|e| self.err(name, e.to_string()))?;
                self.init(&ratio, &t);
                inputs.push(ratio);
                self.push(name, "Dropout", inputs, out, vec![]);
            }
            Op::ChannelAffine(a) => {
                let dtype = self.graph.values[node.inputs[0]].ty.dtype;
                let c = a.scale.len();
                let rank = self.graph.values[node.inputs[0]].ty.shape.len();
                let mut shape = vec![1usize; rank];
                shape[1] = c;
                let constant = |v: &[f64]| -> Result<Tensor, OnnxError> {
                    let t = Tensor::new(shape.clone(), TensorData::F64(v.to_vec()))
                        .map_err(|e| self.err(name, e.to_string()))?;
                    t.to_dtype(dtype).map_err(|e| self.err(name, e.to_string()))
                };
                let (scale, shift) = (constant(&a.scale)?, constant(&a.shift)?);
                let (sn, tn, mul) = (
                    format!("{name}.scale"),
                    format!("{name}.shift"),
                    format!("{name}.mul"),
                );
                self.init(&sn, &scale);
                self.init(&tn, &shift);
                self.push(
                    &mul,
                    "Mul",
                    vec![inputs[0].clone(), sn],
                    mul.clone(),
                    vec![],
                );
                self.push(name, "Add", vec![mul, tn], out, vec![]);
            }
        }
        Ok(())
    }

    fn reshape(&mut self, name: &str, mut inputs: Vec<String>, out: String, shape: Vec<i64>) {
        let sn = format!("{name}.shape");
        let n = shape.len();
        if let Ok(t) = Tensor::new(vec![n], TensorData::I64(shape)) {
            self.init(&sn, &t);
        }
        inputs.push(sn);
        self.push(name, "Reshape", inputs, out, vec![]);
    }
}
