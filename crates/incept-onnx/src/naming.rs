//! Phase 5 of import: torchvision module names for the imported nodes and
//! their weights.
//!
//! Sources, tried in order:
//! - the dynamo exporter's `pkg.torch.onnx.name_scopes` in each node's
//!   `metadata_props` (`['', 'Mixed_5b', 'Mixed_5b.branch1x1', 'relu_5']`:
//!   the module path is the second-to-last entry);
//! - the TorchScript exporter's node names (`/Mixed_5b/branch1x1/conv/Conv`:
//!   the module path is everything between the first and the last `/`);
//! - matching the graph against the Inception V3 template (`template.rs`).
//!
//! A module path becomes a node name by the table in docs/ARCHITECTURE.md:
//! a leaf module's op takes its path (`fc`, `Mixed_5b.branch1x1.conv`); the
//! ReLU inside a `BasicConv2d` takes the `BasicConv2d`'s path; functional
//! calls inside a block become `<block>.<function>` (`Mixed_5b.avg_pool2d`);
//! a block's final Concat takes the block's path, and InceptionE's inner
//! Concats the stem of their inputs (`Mixed_7b.branch3x3`). Both exporters
//! fold BatchNorm into the convolution in eval mode; the dynamo exporter
//! then reports the Conv under the `.bn` module, which becomes `.conv`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use incept_ir::op::PoolKind;
use incept_ir::{Graph, Op};

use crate::error::OnnxError;
use crate::import::ctx::{Ctx, Origin};
use crate::template;

/// Where an imported graph's names came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamingSource {
    /// TorchScript-exporter node names (`/Mixed_5b/branch1x1/conv/Conv`).
    TorchScriptScopes,
    /// The dynamo exporter's `pkg.torch.onnx.name_scopes` node metadata.
    DynamoMetadata,
    /// Structure and shapes matched against the Inception V3 template.
    TemplateMatch,
    /// The file's own node and initializer names (an incept export, or a
    /// graph that is not a recognisable Inception V3).
    Original,
}

impl fmt::Display for NamingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NamingSource::TorchScriptScopes => "torchscript-scopes",
            NamingSource::DynamoMetadata => "dynamo-metadata",
            NamingSource::TemplateMatch => "template-match",
            NamingSource::Original => "original",
        })
    }
}

/// The module path an exporter recorded for a node (`""` = the root module).
fn scope(origin: &Origin) -> Option<String> {
    if let Some(s) = &origin.dynamo_scopes {
        return Some(if s.len() >= 2 {
            s[s.len() - 2].clone()
        } else {
            String::new()
        });
    }
    let rest = origin.onnx_name.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    Some(parts[..parts.len() - 1].join("."))
}

fn join(path: &str, f: &str) -> String {
    if path.is_empty() {
        f.to_string()
    } else {
        format!("{path}.{f}")
    }
}

/// The function name torchvision's forward uses for an op that is not a module.
fn function_name(op: &Op) -> &'static str {
    match op {
        Op::Pool2d(p) if p.kind == PoolKind::Max => "max_pool2d",
        Op::Pool2d(_) => "avg_pool2d",
        Op::AdaptiveAvgPool2d(_) => "adaptive_avg_pool2d",
        Op::Flatten(_) | Op::Reshape(_) => "flatten",
        Op::Relu => "relu",
        Op::Concat(_) => "cat",
        Op::Conv2d(_) => "conv2d",
        Op::BatchNorm(_) => "batch_norm",
        Op::Linear(_) => "linear",
        Op::Dropout(_) => "dropout",
        Op::ChannelAffine(_) => "transform_input",
    }
}

/// InceptionE's inner concatenations: inputs `B.branch3x3_2a`, `B.branch3x3_2b` → `B.branch3x3`.
fn concat_stem(inputs: &[&str]) -> Option<String> {
    let stem = |n: &str| -> Option<String> {
        let (head, tail) = n.rsplit_once('_')?;
        let digits = tail.trim_end_matches(|c: char| c.is_ascii_lowercase());
        (tail.len() == digits.len() + 1
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| head.to_string())
    };
    let first = stem(inputs.first()?)?;
    (inputs.len() > 1
        && inputs
            .iter()
            .all(|n| stem(n).as_deref() == Some(first.as_str())))
    .then_some(first)
}

/// The torchvision name of one node, from its module path.
fn torchvision_name(op: &Op, path: &str, is_container: bool, input_names: &[&str]) -> String {
    if path.is_empty() || is_container {
        return match op {
            Op::Relu if !path.is_empty() => path.to_string(),
            Op::Concat(_) => match concat_stem(input_names) {
                Some(stem) if stem.starts_with(&format!("{path}.")) => stem,
                _ if !path.is_empty() => path.to_string(),
                _ => "cat".into(),
            },
            _ => join(path, function_name(op)),
        };
    }
    match op {
        // The dynamo exporter reports a Conv with BatchNorm folded in under the BatchNorm module.
        Op::Conv2d(_) => match path.strip_suffix(".bn") {
            Some(m) => format!("{m}.conv"),
            None => path.to_string(),
        },
        _ => path.to_string(),
    }
}

/// Renames the graph's nodes, values and parameters, and records metadata.
pub(crate) fn apply(ctx: &mut Ctx<'_>, ours: bool) -> Result<NamingSource, OnnxError> {
    if ours {
        return Ok(NamingSource::Original);
    }
    let scopes: Vec<Option<String>> = ctx.origins.iter().map(scope).collect();
    let source = if ctx.origins.iter().any(|o| o.dynamo_scopes.is_some()) {
        NamingSource::DynamoMetadata
    } else if scopes.iter().flatten().any(|s| !s.is_empty()) {
        NamingSource::TorchScriptScopes
    } else {
        match template::match_names(&ctx.graph) {
            Some(names) => {
                rename(&mut ctx.graph, &names);
                mark_folded(&mut ctx.graph);
                mark_transform_input(&mut ctx.graph);
                return Ok(NamingSource::TemplateMatch);
            }
            None => return Ok(NamingSource::Original),
        }
    };
    let mut paths: HashSet<&str> = HashSet::new();
    for s in scopes.iter().flatten() {
        paths.insert(s);
    }
    let containers: HashSet<String> = paths
        .iter()
        .flat_map(|p| {
            let parts: Vec<&str> = p.split('.').collect();
            (1..parts.len()).map(move |i| parts[..i].join("."))
        })
        .collect();
    let mut names: Vec<Option<String>> = Vec::with_capacity(ctx.graph.nodes.len());
    let mut taken: HashSet<String> = ctx
        .graph
        .inputs
        .iter()
        .map(|&i| ctx.graph.values[i].name.clone())
        .collect();
    for (i, node) in ctx.graph.nodes.iter().enumerate() {
        let Some(path) = &scopes[i] else {
            names.push(None);
            continue;
        };
        let input_names: Vec<&str> = node
            .inputs
            .iter()
            .map(|&v| {
                let producer = ctx.graph.nodes.iter().position(|n| n.output == v);
                match producer.and_then(|p| names[p].as_deref()) {
                    Some(n) => n,
                    None => ctx.graph.values[v].name.as_str(),
                }
            })
            .collect();
        let base = torchvision_name(&node.op, path, containers.contains(path), &input_names);
        let mut name = base.clone();
        let mut k = 1;
        while taken.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        taken.insert(name.clone());
        names.push(Some(name));
    }
    let map: HashMap<usize, String> = names
        .into_iter()
        .enumerate()
        .filter_map(|(i, n)| Some((i, n?)))
        .collect();
    rename(&mut ctx.graph, &map);
    mark_folded(&mut ctx.graph);
    mark_transform_input(&mut ctx.graph);
    Ok(source)
}

/// Gives node `i` the name `names[i]` (and its value the same), and its
/// parameters `<name>.<role>` where that name is free.
pub(crate) fn rename(graph: &mut Graph, names: &HashMap<usize, String>) {
    let mut taken: HashSet<String> = graph.values.iter().map(|v| v.name.clone()).collect();
    // First free every name that is about to change, so swaps work.
    for (&i, _) in names.iter() {
        taken.remove(&graph.nodes[i].name);
    }
    let mut renamed_params = HashSet::new();
    let mut param_names: HashSet<String> = graph.params.iter().map(|p| p.name.clone()).collect();
    for i in 0..graph.nodes.len() {
        let Some(new) = names.get(&i) else { continue };
        if taken.contains(new) {
            continue;
        }
        taken.insert(new.clone());
        let node = &mut graph.nodes[i];
        node.name = new.clone();
        graph.values[node.output].name = new.clone();
        let roles = node.op.param_roles();
        for (&pid, (role, _)) in node.params.iter().zip(roles) {
            let key = format!("{new}.{role}");
            if !renamed_params.insert(pid) || param_names.contains(&key) {
                continue;
            }
            param_names.remove(&graph.params[pid].name);
            param_names.insert(key.clone());
            graph.params[pid].name = key;
        }
    }
}

/// Records `folded_batchnorm=true` when torchvision's `<m>.conv` convolutions
/// carry a bias and no `<m>.bn` follows: the exporter folded BatchNorm in.
fn mark_folded(graph: &mut Graph) {
    let names: HashSet<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
    let folded = graph
        .nodes
        .iter()
        .any(|n| match (&n.op, n.name.strip_suffix(".conv")) {
            (Op::Conv2d(c), Some(m)) => c.bias && !names.contains(format!("{m}.bn").as_str()),
            _ => false,
        });
    if folded {
        graph
            .metadata
            .insert("folded_batchnorm".into(), "true".into());
    }
}

/// Records `transform_input` as the template does, from the node of that name.
fn mark_transform_input(graph: &mut Graph) {
    let present = graph
        .nodes
        .iter()
        .any(|n| n.name == "transform_input" && matches!(n.op, Op::ChannelAffine(_)));
    graph
        .metadata
        .entry("transform_input".into())
        .or_insert_with(|| present.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_concats_take_their_inputs_stem() {
        assert_eq!(
            concat_stem(&["Mixed_7b.branch3x3_2a", "Mixed_7b.branch3x3_2b"]).as_deref(),
            Some("Mixed_7b.branch3x3")
        );
        assert_eq!(
            concat_stem(&["Mixed_7b.branch3x3dbl_3a", "Mixed_7b.branch3x3dbl_3b"]).as_deref(),
            Some("Mixed_7b.branch3x3dbl")
        );
        assert_eq!(
            concat_stem(&["Mixed_5b.branch1x1", "Mixed_5b.branch5x5_2"]),
            None
        );
    }

    #[test]
    fn scopes_from_both_exporters() {
        let ts = Origin {
            onnx_name: "/Mixed_5b/branch1x1/conv/Conv".into(),
            dynamo_scopes: None,
        };
        assert_eq!(scope(&ts).as_deref(), Some("Mixed_5b.branch1x1.conv"));
        let root = Origin {
            onnx_name: "/Flatten".into(),
            dynamo_scopes: None,
        };
        assert_eq!(scope(&root).as_deref(), Some(""));
        let dy = Origin {
            onnx_name: "node_relu_5".into(),
            dynamo_scopes: Some(vec![
                "".into(),
                "Mixed_5b".into(),
                "Mixed_5b.branch1x1".into(),
                "relu_5".into(),
            ]),
        };
        assert_eq!(scope(&dy).as_deref(), Some("Mixed_5b.branch1x1"));
        assert_eq!(
            scope(&Origin {
                onnx_name: "fc".into(),
                dynamo_scopes: None
            }),
            None
        );
    }
}
