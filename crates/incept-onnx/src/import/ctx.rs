//! The state of node conversion: what each ONNX value name stands for so
//! far, and the IR graph under construction.
//!
//! A name can stand for an IR value, a constant, or a *pending* pattern that
//! only becomes an IR node once it is complete: MatMul waiting for its bias
//! Add (→ Linear), and the per-channel Gather/Unsqueeze/Mul/Add/Concat
//! pattern of `transform_input` (→ ChannelAffine). Pending values are
//! materialised when an op that needs a real value reads them.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use incept_ir::infer::infer_output;
use incept_ir::op::{ChannelAffine, Linear};
use incept_ir::{Graph, Node, Op, Param, Tensor, Value, ValueId, ValueType};

use crate::error::OnnxError;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::{AttributeProto, NodeProto};

/// Where an IR node came from, for the naming phase.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origin {
    /// The ONNX node's name (its first output when unnamed).
    pub onnx_name: String,
    /// The dynamo exporter's `pkg.torch.onnx.name_scopes`, when present.
    pub dynamo_scopes: Option<Vec<String>>,
}

/// One channel of an activation, as `x[:, c]` (or `x[:, c:c+1]`) scaled and shifted.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub src: ValueId,
    pub channel: usize,
    /// Whether the channel axis is still there (after Unsqueeze or Slice).
    pub kept_dim: bool,
    pub scale: f64,
    pub shift: f64,
}

/// A per-channel affine of a whole activation, not yet a node.
#[derive(Clone, Debug)]
pub(crate) struct Affine {
    pub src: ValueId,
    pub scale: Vec<f64>,
    pub shift: Vec<f64>,
    pub origin: Origin,
}

/// `x @ W` waiting for a bias.
#[derive(Clone, Debug)]
pub(crate) struct PendingMatMul {
    pub src: ValueId,
    /// Already transposed to `[out, in]`.
    pub weight: Tensor,
    pub weight_name: String,
    pub origin: Origin,
}

/// What an ONNX value name stands for.
#[derive(Clone, Debug)]
pub(crate) enum Sym {
    /// An IR activation.
    Value(ValueId),
    /// A constant (initializer or `Constant` output), with its ONNX name.
    Const(Rc<Tensor>),
    /// One channel of an activation.
    Channel(Channel),
    /// A pending per-channel affine.
    Affine(Affine),
    /// A pending MatMul.
    MatMul(PendingMatMul),
}

/// A parameter to attach to a node: its source name and data.
pub(crate) struct ParamSrc {
    pub name: String,
    pub tensor: Tensor,
}

/// Node conversion state.
pub(crate) struct Ctx<'a> {
    pub path: &'a Path,
    pub opset: i64,
    pub graph: Graph,
    pub origins: Vec<Origin>,
    pub syms: HashMap<String, Sym>,
    param_ids: HashMap<String, usize>,
    node_names: HashMap<String, usize>,
    pub warnings: Vec<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(path: &'a Path, opset: i64) -> Self {
        Ctx {
            path,
            opset,
            graph: Graph::default(),
            origins: Vec::new(),
            syms: HashMap::new(),
            param_ids: HashMap::new(),
            node_names: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    /// An error about `node`.
    pub fn err(&self, node: &NodeProto, rule: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            path: self.path.to_path_buf(),
            node: node_label(node),
            op_type: node.op_type.clone().unwrap_or_default(),
            rule: rule.into(),
        }
    }

    /// Defines ONNX value `name`.
    pub fn define(&mut self, name: &str, sym: Sym, by: &str) -> Result<(), OnnxError> {
        if name.is_empty() {
            return Ok(());
        }
        if self.syms.insert(name.to_string(), sym).is_some() {
            return Err(OnnxError::DefinedTwice {
                path: self.path.to_path_buf(),
                name: name.to_string(),
                by: by.to_string(),
            });
        }
        Ok(())
    }

    /// Defines the node's first output.
    pub fn define_output(&mut self, node: &NodeProto, sym: Sym) -> Result<(), OnnxError> {
        let out = node.output.first().cloned().unwrap_or_default();
        self.define(&out, sym, &format!("node `{}`", node_label(node)))
    }

    /// What input `i` of `node` stands for.
    pub fn sym(&self, node: &NodeProto, i: usize) -> Result<Sym, OnnxError> {
        let name = node.input.get(i).map(String::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(self.err(node, format!("input {i} is missing")));
        }
        self.syms
            .get(name)
            .cloned()
            .ok_or_else(|| OnnxError::UsedBeforeDefined {
                path: self.path.to_path_buf(),
                node: node_label(node),
                input: name.to_string(),
            })
    }

    /// Whether input `i` is present (optional inputs may be absent or `""`).
    pub fn has_input(node: &NodeProto, i: usize) -> bool {
        node.input.get(i).is_some_and(|s| !s.is_empty())
    }

    /// Input `i` as an IR value, materialising a pending pattern.
    pub fn value(&mut self, node: &NodeProto, i: usize) -> Result<ValueId, OnnxError> {
        let sym = self.sym(node, i)?;
        self.materialise(node, sym)
    }

    /// A pending value as an IR value.
    pub fn materialise(&mut self, node: &NodeProto, sym: Sym) -> Result<ValueId, OnnxError> {
        match sym {
            Sym::Value(v) => Ok(v),
            Sym::Const(_) => Err(self.err(
                node,
                "an activation input is a constant (constant folding is not supported)",
            )),
            Sym::Channel(_) => Err(self.err(
                node,
                "reads a single channel of an activation: only the full per-channel \
                 rescaling pattern of transform_input is supported",
            )),
            Sym::Affine(a) => {
                let op = Op::ChannelAffine(ChannelAffine {
                    scale: a.scale,
                    shift: a.shift,
                });
                self.push_node(node, a.origin, op, vec![a.src], vec![])
            }
            Sym::MatMul(m) => {
                let op = Op::Linear(Linear {
                    in_features: m.weight.shape().get(1).copied().unwrap_or(0),
                    out_features: m.weight.shape().first().copied().unwrap_or(0),
                    bias: false,
                });
                let params = vec![ParamSrc {
                    name: m.weight_name,
                    tensor: m.weight,
                }];
                self.push_node(node, m.origin, op, vec![m.src], params)
            }
        }
    }

    /// Input `i` as a constant tensor.
    pub fn constant(&self, node: &NodeProto, i: usize) -> Result<Rc<Tensor>, OnnxError> {
        match self.sym(node, i)? {
            Sym::Const(t) => Ok(t),
            _ => Err(self.err(
                node,
                format!(
                    "input {i} (`{}`) must be an initializer or a Constant",
                    node.input[i]
                ),
            )),
        }
    }

    /// The type of an IR value.
    pub fn ty(&self, v: ValueId) -> &ValueType {
        &self.graph.values[v].ty
    }

    /// The origin of `node`.
    pub fn origin(node: &NodeProto) -> Origin {
        let dynamo_scopes = node
            .metadata_props
            .iter()
            .find(|p| p.key.as_deref() == Some("pkg.torch.onnx.name_scopes"))
            .and_then(|p| parse_py_str_list(p.value.as_deref().unwrap_or("")));
        Origin {
            onnx_name: node_label(node),
            dynamo_scopes,
        }
    }

    /// Adds an IR node converted from `node` and defines the node's first output.
    pub fn add(
        &mut self,
        node: &NodeProto,
        op: Op,
        inputs: Vec<ValueId>,
        params: Vec<ParamSrc>,
    ) -> Result<(), OnnxError> {
        let v = self.push_node(node, Self::origin(node), op, inputs, params)?;
        self.define_output(node, Sym::Value(v))
    }

    /// Adds an IR node with an explicit origin, returning its value.
    pub fn push_node(
        &mut self,
        node: &NodeProto,
        origin: Origin,
        op: Op,
        inputs: Vec<ValueId>,
        params: Vec<ParamSrc>,
    ) -> Result<ValueId, OnnxError> {
        let name = self.unique_name(&origin.onnx_name);
        let roles = op.param_roles();
        if roles.len() != params.len() {
            return Err(self.err(
                node,
                format!("takes {} weight(s), got {}", roles.len(), params.len()),
            ));
        }
        let input_types: Vec<&ValueType> = inputs.iter().map(|&v| self.ty(v)).collect();
        let shapes: Vec<(String, Vec<usize>)> = params
            .iter()
            .map(|p| (p.name.clone(), p.tensor.shape().to_vec()))
            .collect();
        let shape_refs: Vec<(&str, &[usize])> = shapes
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_slice()))
            .collect();
        let ty = infer_output(&name, &op, &input_types, &shape_refs)
            .map_err(|e| self.err(node, format!("does not fit its inputs: {e}")))?;
        let mut ids = Vec::with_capacity(params.len());
        for (p, (_, kind)) in params.into_iter().zip(roles) {
            ids.push(self.param(p, kind));
        }
        let output = self.graph.values.len();
        self.graph.values.push(Value {
            name: name.clone(),
            ty,
        });
        self.graph.nodes.push(Node {
            name,
            op,
            inputs,
            params: ids,
            output,
        });
        self.origins.push(origin);
        Ok(output)
    }

    /// A parameter for `p`, reusing one of the same name and data.
    fn param(&mut self, p: ParamSrc, kind: incept_ir::ParamKind) -> usize {
        let mut name = p.name;
        if let Some(&id) = self.param_ids.get(&name) {
            if self.graph.params[id].data.as_ref() == Some(&p.tensor) {
                return id;
            }
            // Same source tensor used in another form (e.g. transposed).
            let mut k = 1;
            while self.param_ids.contains_key(&format!("{name}_{k}")) {
                k += 1;
            }
            name = format!("{name}_{k}");
        }
        let id = self.graph.params.len();
        self.graph.params.push(Param {
            name: name.clone(),
            kind,
            dtype: p.tensor.dtype(),
            shape: p.tensor.shape().to_vec(),
            data: Some(p.tensor),
        });
        self.param_ids.insert(name, id);
        id
    }

    /// A node name not used yet (names become value names, which must be unique).
    pub fn unique_name(&mut self, base: &str) -> String {
        let base = if base.is_empty() { "node" } else { base };
        let taken = |s: &Self, n: &str| {
            s.node_names.contains_key(n) || s.graph.values.iter().any(|v| v.name == n)
        };
        let mut name = base.to_string();
        let mut k = 1;
        while taken(self, &name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.node_names.insert(name.clone(), self.graph.nodes.len());
        name
    }

    /// Attribute `name` of `node`.
    pub fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
        node.attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    /// An integer attribute.
    pub fn attr_int(&self, node: &NodeProto, name: &str) -> Result<Option<i64>, OnnxError> {
        match Self::attr(node, name) {
            None => Ok(None),
            Some(a) if a.r#type == Some(AttributeType::Int as i32) || a.i.is_some() => {
                Ok(a.i.or(Some(0)))
            }
            Some(_) => Err(self.err(node, format!("attribute `{name}` must be an integer"))),
        }
    }

    /// A float attribute.
    pub fn attr_float(&self, node: &NodeProto, name: &str) -> Result<Option<f32>, OnnxError> {
        match Self::attr(node, name) {
            None => Ok(None),
            Some(a) if a.r#type == Some(AttributeType::Float as i32) || a.f.is_some() => {
                Ok(a.f.or(Some(0.0)))
            }
            Some(_) => Err(self.err(node, format!("attribute `{name}` must be a float"))),
        }
    }

    /// An integer-list attribute.
    pub fn attr_ints(&self, node: &NodeProto, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        match Self::attr(node, name) {
            None => Ok(None),
            Some(a)
                if a.r#type == Some(AttributeType::Ints as i32)
                    || a.r#type.is_none()
                    || !a.ints.is_empty() =>
            {
                Ok(Some(a.ints.clone()))
            }
            Some(_) => Err(self.err(
                node,
                format!("attribute `{name}` must be a list of integers"),
            )),
        }
    }

    /// A string attribute.
    pub fn attr_string(&self, node: &NodeProto, name: &str) -> Result<Option<String>, OnnxError> {
        match Self::attr(node, name) {
            None => Ok(None),
            Some(a) => {
                let s = a.s.as_deref().unwrap_or_default();
                String::from_utf8(s.to_vec())
                    .map(Some)
                    .map_err(|_| self.err(node, format!("attribute `{name}` is not UTF-8")))
            }
        }
    }

    /// Refuses attributes the converter does not know, so nothing is silently ignored.
    pub fn known_attrs(&self, node: &NodeProto, known: &[&str]) -> Result<(), OnnxError> {
        for a in &node.attribute {
            let n = a.name.as_deref().unwrap_or("");
            if !known.contains(&n) {
                return Err(self.err(node, format!("attribute `{n}` is not supported")));
            }
        }
        Ok(())
    }
}

/// A node's label in errors: its name, or its first output when unnamed.
pub(crate) fn node_label(node: &NodeProto) -> String {
    match node.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => node.output.first().cloned().unwrap_or_default(),
    }
}

/// Parses a Python list of strings as the dynamo exporter writes it:
/// `['', 'Mixed_5b', 'relu_5']`.
pub(crate) fn parse_py_str_list(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(q) = chars.next() else { break };
        if q != '\'' && q != '"' {
            return None;
        }
        let mut item = String::new();
        loop {
            match chars.next()? {
                c if c == q => break,
                '\\' => item.push(chars.next()?),
                c => item.push(c),
            }
        }
        out.push(item);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse_py_str_list;

    #[test]
    fn parses_dynamo_scope_lists() {
        assert_eq!(
            parse_py_str_list("['', 'Mixed_5b', 'Mixed_5b.branch1x1', 'relu_5']"),
            Some(vec![
                String::new(),
                "Mixed_5b".into(),
                "Mixed_5b.branch1x1".into(),
                "relu_5".into()
            ])
        );
        assert_eq!(parse_py_str_list("[]"), Some(vec![]));
        assert_eq!(parse_py_str_list("['unterminated"), None);
    }
}
