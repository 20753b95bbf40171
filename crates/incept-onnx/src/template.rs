//! Naming by structure: pairs an imported graph's nodes with the Inception
//! V3 template's, walking back from the output, and accepts the pairing only
//! if every node is paired and every paired value has the template's shape.
//!
//! Exporters drop or fuse some template nodes, which the walk allows for: a
//! template BatchNorm may be missing (folded into the Conv), a template
//! Dropout may be missing (eval export), and the template's Flatten may be a
//! Reshape.

use std::collections::HashMap;

use incept_ir::template::{InceptionV3Config, Widths, inception_v3};
use incept_ir::{Graph, Op, ValueId};

use crate::ops::fixed_dim;

fn same_kind(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (Op::Pool2d(x), Op::Pool2d(y)) => x.kind == y.kind,
        (Op::Flatten(_), Op::Reshape(_)) => true,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

struct Walk<'a> {
    t: &'a Graph,
    g: &'a Graph,
    tp: Vec<Option<usize>>,
    gp: Vec<Option<usize>>,
    /// Imported node → template node.
    pairs: HashMap<usize, usize>,
}

impl Walk<'_> {
    /// The inputs of template Concat `tn`, with inputs made by Concats on the same axis inlined.
    fn flat_concat_inputs(&self, tn: usize) -> Vec<ValueId> {
        let Op::Concat(outer) = &self.t.nodes[tn].op else {
            return self.t.nodes[tn].inputs.clone();
        };
        let mut out = Vec::new();
        for &v in &self.t.nodes[tn].inputs {
            match self.tp[v] {
                Some(p) if matches!(&self.t.nodes[p].op, Op::Concat(c) if c.axis == outer.axis) => {
                    out.extend(self.flat_concat_inputs(p));
                }
                _ => out.push(v),
            }
        }
        out
    }

    fn pair(&mut self, tv: ValueId, gv: ValueId) -> bool {
        let (Some(&tn), Some(&gn)) = (self.tp.get(tv), self.gp.get(gv)) else {
            return false;
        };
        match (tn, gn) {
            (None, None) => true,
            (Some(tn), gn) => {
                let top = &self.t.nodes[tn].op;
                let gop = gn.map(|g| &self.g.nodes[g].op);
                let skippable = matches!(top, Op::BatchNorm(_) | Op::Dropout(_));
                if skippable && !gop.is_some_and(|o| same_kind(top, o)) {
                    return self.pair(self.t.nodes[tn].inputs[0], gv);
                }
                let Some(gn) = gn else { return false };
                if let Some(&prev) = self.pairs.get(&gn) {
                    return prev == tn;
                }
                let (tnode, gnode) = (&self.t.nodes[tn], &self.g.nodes[gn]);
                if !same_kind(&tnode.op, &gnode.op) {
                    return false;
                }
                let mut tins = tnode.inputs.clone();
                if tins.len() != gnode.inputs.len() && matches!(tnode.op, Op::Concat(_)) {
                    // The TorchScript exporter merges InceptionE's inner
                    // concatenations into the block's: inline them here too.
                    tins = self.flat_concat_inputs(tn);
                }
                if tins.len() != gnode.inputs.len() {
                    return false;
                }
                self.pairs.insert(gn, tn);
                let ins: Vec<(ValueId, ValueId)> =
                    tins.into_iter().zip(gnode.inputs.iter().copied()).collect();
                ins.into_iter().all(|(a, b)| self.pair(a, b))
            }
            (None, Some(_)) => false,
        }
    }
}

fn template_for(g: &Graph, widths: Widths) -> Option<Graph> {
    let input = &g.values[*g.inputs.first()?].ty;
    let out = g.outputs.first()?;
    let ty = &g.values[out.value].ty;
    let cfg = InceptionV3Config {
        num_classes: ty.shape.last()?.fixed()?,
        aux_logits: false,
        transform_input: g.nodes.iter().any(|n| matches!(n.op, Op::ChannelAffine(_))),
        input_size: [fixed_dim(input, 2)?, fixed_dim(input, 3)?],
        dropout: 0.5,
        widths,
    };
    inception_v3(&cfg).ok().map(|m| m.graph)
}

fn walk(t: &Graph, g: &Graph) -> Option<HashMap<usize, usize>> {
    if g.outputs.len() != 1 || g.inputs.len() != 1 {
        return None;
    }
    let mut w = Walk {
        t,
        g,
        tp: t.producers(),
        gp: g.producers(),
        pairs: HashMap::new(),
    };
    let tout = t.outputs.iter().find(|o| !o.training_only)?.value;
    (w.pair(tout, g.outputs[0].value) && w.pairs.len() == g.nodes.len()).then_some(w.pairs)
}

/// Template names for `g`'s nodes (by index), if `g` is an Inception V3.
pub(crate) fn match_names(g: &Graph) -> Option<HashMap<usize, String>> {
    // Structure first, with torchvision's widths; then the widths read off the
    // paired convolutions, and a second walk that must also agree on shapes.
    let t = template_for(g, Widths::full())?;
    let pairs = walk(&t, g)?;
    let mut widths = Widths::full();
    for (&gn, &tn) in &pairs {
        if let (Op::Conv2d(c), Some(m)) = (&g.nodes[gn].op, t.nodes[tn].name.strip_suffix(".conv"))
        {
            widths.set(m, c.out_channels);
        }
    }
    let t = template_for(g, widths)?;
    let pairs = walk(&t, g)?;
    for (&gn, &tn) in &pairs {
        let (a, b) = (
            &g.values[g.nodes[gn].output].ty,
            &t.values[t.nodes[tn].output].ty,
        );
        if a.shape != b.shape {
            return None;
        }
    }
    Some(
        pairs
            .into_iter()
            .map(|(gn, tn)| (gn, t.nodes[tn].name.clone()))
            .collect(),
    )
}
