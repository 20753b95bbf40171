//! Cost figures of nodes: parameters and multiply-accumulates.

use crate::graph::{Graph, Node};
use crate::op::{Op, ParamKind};

/// Multiply-accumulates of one node for one batch item.
///
/// Counts convolutions (`out_elements · in_channels/groups · kh · kw`) and
/// linear layers (`in · out` per row), as torchvision's published figures do;
/// every other op counts zero.
pub fn node_macs(graph: &Graph, node: &Node) -> u64 {
    let out = match graph.values.get(node.output) {
        Some(v) => v.ty.numel_per_item() as u64,
        None => return 0,
    };
    match &node.op {
        Op::Conv2d(c) => {
            out * (c.in_channels / c.groups.max(1)) as u64 * (c.kernel[0] * c.kernel[1]) as u64
        }
        Op::Linear(l) => out * l.in_features as u64,
        Op::BatchNorm(_)
        | Op::Relu
        | Op::Pool2d(_)
        | Op::AdaptiveAvgPool2d(_)
        | Op::Concat(_)
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Dropout(_)
        | Op::ChannelAffine(_) => 0,
    }
}

/// Elements of the node's parameters of the given kind.
pub fn node_params(graph: &Graph, node: &Node, kind: ParamKind) -> u64 {
    node.params
        .iter()
        .filter_map(|&p| graph.params.get(p))
        .filter(|p| p.kind == kind)
        .map(|p| p.numel() as u64)
        .sum()
}
