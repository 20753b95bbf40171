//! The typed graph: named values, parameters named by their state-dict keys,
//! and nodes in topological order.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::dtype::DType;
use crate::error::GraphError;
use crate::infer::infer_output;
use crate::op::{Op, ParamKind};
use crate::shape::ValueType;
use crate::tensor::Tensor;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;
/// Index of a parameter in [`Graph::params`].
pub type ParamId = usize;
/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// An activation: a graph input or the output of exactly one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Unique name. For the output of a torchvision module, the module's
    /// name (`Mixed_5b.branch5x5_2`), so it lines up with forward hooks.
    pub name: String,
    /// Element type and shape.
    pub ty: ValueType,
}

/// A weight or buffer, named by its torchvision state-dict key.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The state-dict key (`Mixed_5b.branch1x1.conv.weight`).
    pub name: String,
    /// Trainable parameter or buffer.
    pub kind: ParamKind,
    /// Element type.
    pub dtype: DType,
    /// Shape (never symbolic).
    pub shape: Vec<usize>,
    /// The data, once bound. A template graph has none.
    pub data: Option<Tensor>,
}

impl Param {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One operation applied to activations and parameters, producing one value.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique name; a torchvision module path where the node is a module.
    pub name: String,
    /// The operation and its attributes.
    pub op: Op,
    /// Activation inputs.
    pub inputs: Vec<ValueId>,
    /// Parameters, in [`Op::param_roles`] order.
    pub params: Vec<ParamId>,
    /// The value this node defines.
    pub output: ValueId,
}

/// A named graph output.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphOutput {
    /// The output's name (`logits`, `aux_logits`).
    pub name: String,
    /// The value.
    pub value: ValueId,
    /// Computed only in training mode (Inception's aux head); inference
    /// never needs it and reports count it separately.
    pub training_only: bool,
}

/// A typed computation graph.
///
/// Invariants (checked by [`Graph::validate`]): names of values, nodes and
/// parameters are unique; nodes are in topological order; every value is a
/// graph input or the output of exactly one node; every value's type is the
/// one shape inference gives.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    /// The graph's name (`inception_v3`).
    pub name: String,
    /// All activations.
    pub values: Vec<Value>,
    /// All parameters and buffers, including ones no node reads
    /// (`num_batches_tracked`), so a state dict round-trips.
    pub params: Vec<Param>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Graph inputs.
    pub inputs: Vec<ValueId>,
    /// Graph outputs.
    pub outputs: Vec<GraphOutput>,
    /// Free-form settings that travel with the model (`transform_input`, passes applied).
    pub metadata: BTreeMap<String, String>,
}

impl Graph {
    /// A copy of the graph without parameter data (types, nodes and names only).
    pub fn clone_structure(&self) -> Graph {
        Graph {
            name: self.name.clone(),
            values: self.values.clone(),
            params: self
                .params
                .iter()
                .map(|p| Param {
                    name: p.name.clone(),
                    kind: p.kind,
                    dtype: p.dtype,
                    shape: p.shape.clone(),
                    data: None,
                })
                .collect(),
            nodes: self.nodes.clone(),
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// The value named `name`.
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }

    /// The parameter named `name`.
    pub fn param_by_name(&self, name: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.name == name)
    }

    /// The node that defines each value (`None` for graph inputs).
    pub fn producers(&self) -> Vec<Option<NodeId>> {
        let mut p = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(slot) = p.get_mut(n.output) {
                *slot = Some(i);
            }
        }
        p
    }

    /// Nodes needed to compute the given values, as a mask over [`Graph::nodes`].
    pub fn ancestors(&self, values: impl IntoIterator<Item = ValueId>) -> Vec<bool> {
        let producers = self.producers();
        let mut needed = vec![false; self.nodes.len()];
        let mut stack: Vec<ValueId> = values.into_iter().collect();
        while let Some(v) = stack.pop() {
            if let Some(Some(n)) = producers.get(v)
                && !needed[*n]
            {
                needed[*n] = true;
                stack.extend(self.nodes[*n].inputs.iter().copied());
            }
        }
        needed
    }

    /// Nodes needed for the inference outputs (everything but the training-only heads).
    pub fn inference_nodes(&self) -> Vec<bool> {
        self.ancestors(
            self.outputs
                .iter()
                .filter(|o| !o.training_only)
                .map(|o| o.value),
        )
    }

    /// Number of trainable parameters' elements.
    pub fn trainable_params(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.kind == ParamKind::Trainable)
            .map(Param::numel)
            .sum()
    }

    /// Checks every invariant listed on [`Graph`], re-running shape inference.
    pub fn validate(&self) -> Result<(), GraphError> {
        let mut names = HashSet::new();
        for v in &self.values {
            if !names.insert(v.name.as_str()) {
                return Err(GraphError::DuplicateName {
                    what: "value",
                    name: v.name.clone(),
                });
            }
        }
        let mut pnames = HashSet::new();
        for p in &self.params {
            if !pnames.insert(p.name.as_str()) {
                return Err(GraphError::DuplicateName {
                    what: "parameter",
                    name: p.name.clone(),
                });
            }
            if let Some(t) = &p.data
                && (t.shape() != p.shape.as_slice() || t.dtype() != p.dtype)
            {
                return Err(GraphError::ParamData {
                    param: p.name.clone(),
                    expected: format!("{}{:?}", p.dtype, p.shape),
                    found: format!("{}{:?}", t.dtype(), t.shape()),
                });
            }
        }
        let mut defined = vec![false; self.values.len()];
        for &i in &self.inputs {
            let slot = defined.get_mut(i).ok_or(GraphError::DanglingValue {
                node: "graph inputs".into(),
                index: i,
            })?;
            *slot = true;
        }
        let mut nnames = HashSet::new();
        for n in &self.nodes {
            if !nnames.insert(n.name.as_str()) {
                return Err(GraphError::DuplicateName {
                    what: "node",
                    name: n.name.clone(),
                });
            }
            let mut input_types = Vec::with_capacity(n.inputs.len());
            for &i in &n.inputs {
                match defined.get(i) {
                    Some(true) => input_types.push(&self.values[i].ty),
                    Some(false) => {
                        return Err(GraphError::UsedBeforeDefined {
                            node: n.name.clone(),
                            value: self.values[i].name.clone(),
                        });
                    }
                    None => {
                        return Err(GraphError::DanglingValue {
                            node: n.name.clone(),
                            index: i,
                        });
                    }
                }
            }
            let mut param_shapes = Vec::with_capacity(n.params.len());
            for &p in &n.params {
                let param = self.params.get(p).ok_or(GraphError::DanglingParam {
                    node: n.name.clone(),
                    index: p,
                })?;
                param_shapes.push((param.name.as_str(), param.shape.as_slice()));
            }
            let ty = infer_output(&n.name, &n.op, &input_types, &param_shapes)?;
            match defined.get_mut(n.output) {
                None => {
                    return Err(GraphError::DanglingValue {
                        node: n.name.clone(),
                        index: n.output,
                    });
                }
                Some(true) => {
                    return Err(GraphError::DefinedTwice {
                        value: self.values[n.output].name.clone(),
                        node: n.name.clone(),
                    });
                }
                Some(slot) => *slot = true,
            }
            let declared = &self.values[n.output].ty;
            if declared.shape != ty.shape {
                return Err(GraphError::TypeMismatch {
                    node: n.name.clone(),
                    declared: declared.to_string(),
                    inferred: ty.to_string(),
                });
            }
        }
        if let Some(i) = defined.iter().position(|d| !d) {
            return Err(GraphError::NeverDefined {
                value: self.values[i].name.clone(),
            });
        }
        for o in &self.outputs {
            if o.value >= self.values.len() {
                return Err(GraphError::DanglingValue {
                    node: format!("output {}", o.name),
                    index: o.value,
                });
            }
        }
        Ok(())
    }
}

/// Builds a graph node by node, inferring each output's type as it goes, so
/// an inconsistent graph fails at the first node that breaks it.
#[derive(Clone, Debug, Default)]
pub struct GraphBuilder {
    graph: Graph,
    value_names: HashMap<String, ValueId>,
    node_names: HashSet<String>,
}

impl GraphBuilder {
    /// An empty graph named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder {
            graph: Graph {
                name: name.into(),
                ..Graph::default()
            },
            ..GraphBuilder::default()
        }
    }

    fn add_value(&mut self, name: String, ty: ValueType) -> Result<ValueId, GraphError> {
        if self.value_names.contains_key(&name) {
            return Err(GraphError::DuplicateName {
                what: "value",
                name,
            });
        }
        let id = self.graph.values.len();
        self.value_names.insert(name.clone(), id);
        self.graph.values.push(Value { name, ty });
        Ok(id)
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, ty: ValueType) -> Result<ValueId, GraphError> {
        let id = self.add_value(name.to_string(), ty)?;
        self.graph.inputs.push(id);
        Ok(id)
    }

    /// Declares a parameter or buffer that no node reads (kept for round trips).
    pub fn extra_param(
        &mut self,
        name: &str,
        kind: ParamKind,
        dtype: DType,
        shape: Vec<usize>,
    ) -> Result<ParamId, GraphError> {
        if self.graph.param_by_name(name).is_some() {
            return Err(GraphError::DuplicateName {
                what: "parameter",
                name: name.to_string(),
            });
        }
        self.graph.params.push(Param {
            name: name.to_string(),
            kind,
            dtype,
            shape,
            data: None,
        });
        Ok(self.graph.params.len() - 1)
    }

    /// Adds a node named `name` whose output value has the same name.
    ///
    /// Its parameters are created as `<param_prefix>.<role>` for each of
    /// [`Op::param_roles`], with the shapes the op requires; pass the module
    /// path (usually `name`).
    pub fn node(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        param_prefix: &str,
    ) -> Result<ValueId, GraphError> {
        if !self.node_names.insert(name.to_string()) {
            return Err(GraphError::DuplicateName {
                what: "node",
                name: name.to_string(),
            });
        }
        let input_types: Vec<&ValueType> = inputs
            .iter()
            .map(|&i| {
                self.graph
                    .values
                    .get(i)
                    .map(|v| &v.ty)
                    .ok_or(GraphError::DanglingValue {
                        node: name.to_string(),
                        index: i,
                    })
            })
            .collect::<Result<_, _>>()?;
        let dtype = input_types.first().map_or(DType::F32, |t| t.dtype);
        let roles = op.param_roles();
        let shapes = op.param_shapes();
        let keys: Vec<String> = roles
            .iter()
            .map(|(role, _)| format!("{param_prefix}.{role}"))
            .collect();
        let param_shapes: Vec<(&str, &[usize])> = keys
            .iter()
            .zip(&shapes)
            .map(|(k, s)| (k.as_str(), s.as_slice()))
            .collect();
        let ty = infer_output(name, &op, &input_types, &param_shapes)?;
        let mut params = Vec::with_capacity(roles.len());
        for ((key, (_, kind)), shape) in keys.into_iter().zip(roles).zip(shapes) {
            params.push(self.extra_param(&key, kind, dtype, shape)?);
        }
        let output = self.add_value(name.to_string(), ty)?;
        self.graph.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            params,
            output,
        });
        Ok(output)
    }

    /// Declares `value` a graph output named `name`.
    pub fn output(&mut self, name: &str, value: ValueId, training_only: bool) {
        self.graph.outputs.push(GraphOutput {
            name: name.to_string(),
            value,
            training_only,
        });
    }

    /// Sets a metadata entry.
    pub fn metadata(&mut self, key: &str, value: impl Into<String>) {
        self.graph.metadata.insert(key.to_string(), value.into());
    }

    /// The type of a value built so far.
    pub fn value_type(&self, id: ValueId) -> Option<&ValueType> {
        self.graph.values.get(id).map(|v| &v.ty)
    }

    /// The finished graph.
    pub fn finish(self) -> Graph {
        self.graph
    }
}
