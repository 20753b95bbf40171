//! From a graph to an execution plan: prepared weights, fused steps, and a
//! buffer plan that lets concatenations be written in place and reuses
//! activation memory once a value's last reader has run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use incept_ir::op::{Op, PoolKind};
use incept_ir::{Graph, NodeId, ValueId};

use crate::error::InterpError;
use crate::float::Float;
use crate::fork::{self, Fork};
use crate::kernels::conv::ConvGeom;
use crate::kernels::direct::{self, DirectWeights};
use crate::kernels::eltwise::{Epilogue, batchnorm_scale_shift};
use crate::kernels::linear::LinearWeight;
use crate::kernels::pool::PoolGeom;
use crate::kernels::sgemm::PackedWeights;

/// Where a value lives: a range of each image's part of a physical buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Physical buffer.
    pub buf: usize,
    /// Offset inside one image's part of the buffer.
    pub offset: usize,
    /// Elements per image.
    pub len: usize,
    /// Size of one image's part of the buffer.
    pub stride: usize,
}

#[cfg(test)]
impl Slot {
    /// A slot of buffer `buf` in a test, in parts of 100 per image.
    pub(crate) fn at(buf: usize, offset: usize, len: usize) -> Self {
        Slot {
            buf,
            offset,
            len,
            stride: 100,
        }
    }
}

/// Weights of one node, converted to the compute type once.
#[derive(Debug)]
pub enum NodeWeights<T> {
    /// No weights.
    None,
    /// Convolution weight `[O, C/g·kh·kw]` and optional bias.
    Conv {
        /// Weight; empty when `packed` or `direct` holds it (one copy of the
        /// weights).
        weight: Arc<Vec<T>>,
        /// The weight packed for the AVX-512 float32 kernel, when it runs here.
        packed: Option<Arc<PackedWeights>>,
        /// The weight packed for the direct kernel, for layers it takes
        /// (or transformed for its Winograd path, see `DirectWeights`).
        direct: Option<Arc<DirectWeights>>,
        /// Bias.
        bias: Option<Vec<T>>,
    },
    /// BatchNorm folded to scale and shift (computed in f64, rounded once).
    Scale {
        /// Per-channel scale.
        scale: Vec<T>,
        /// Per-channel shift.
        shift: Vec<T>,
    },
    /// Linear weight `[out, in]` and optional bias, exact (see
    /// [`LinearWeight`]): the classifier's dot products are summed in double
    /// precision whatever the compute type.
    Linear {
        /// Weight.
        weight: Arc<LinearWeight>,
        /// Bias.
        bias: Option<Vec<f64>>,
    },
}

/// Converts every node's parameters to `T`.
///
/// Convolution weights (the bulk of the model) are taken out of the graph and
/// reused in place when they already have type `T`, so preparing a model
/// does not hold two copies of its weights.
pub fn prepare_weights<T: Float>(
    graph: &mut Graph,
    needed: &[bool],
) -> Result<Vec<NodeWeights<T>>, InterpError> {
    // Check every parameter first, so an error leaves the graph untouched.
    for (node, _) in graph.nodes.iter().zip(needed).filter(|(_, n)| **n) {
        for &p in &node.params {
            let p = &graph.params[p];
            match &p.data {
                None => {
                    return Err(InterpError::Unbound {
                        node: node.name.clone(),
                        param: p.name.clone(),
                    });
                }
                Some(t) if !t.dtype().is_float() => {
                    return Err(InterpError::ParamDtype {
                        param: p.name.clone(),
                        dtype: t.dtype(),
                    });
                }
                Some(_) => {}
            }
        }
    }
    let conv_weights: Vec<Option<Vec<T>>> = graph
        .nodes
        .iter()
        .zip(needed)
        .map(|(node, &need)| match (&node.op, need) {
            (Op::Conv2d(_), true) => {
                let id = node.params[0];
                graph.params[id].data.take().map(T::take_tensor)
            }
            _ => None,
        })
        .collect();
    let graph: &Graph = graph;
    let tensor = |node: &incept_ir::Node, i: usize| -> Result<&incept_ir::Tensor, InterpError> {
        let p = &graph.params[node.params[i]];
        let t = p.data.as_ref().ok_or_else(|| InterpError::Unbound {
            node: node.name.clone(),
            param: p.name.clone(),
        })?;
        if !t.dtype().is_float() {
            return Err(InterpError::ParamDtype {
                param: p.name.clone(),
                dtype: t.dtype(),
            });
        }
        Ok(t)
    };
    let param =
        |node: &incept_ir::Node, i: usize| tensor(node, i).map(incept_ir::Tensor::to_f64_vec);
    // Convolution weights go straight to T (no f64 detour for the bulk of the model).
    let typed =
        |node: &incept_ir::Node, i: usize| tensor(node, i).map(|t| T::from_tensor(t).into_owned());
    let cast = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect::<Vec<T>>();
    let mut out = Vec::with_capacity(graph.nodes.len());
    for ((node, &need), conv_weight) in graph.nodes.iter().zip(needed).zip(conv_weights) {
        if !need {
            out.push(NodeWeights::None);
            continue;
        }
        let w = match &node.op {
            Op::Conv2d(c) => {
                let weight = match conv_weight {
                    Some(w) => w,
                    None => typed(node, 0)?,
                };
                let rows = c.out_channels;
                let k = weight.len().checked_div(rows).unwrap_or(0);
                // One packed copy: for the direct kernel where it runs the
                // layer (transformed instead for its Winograd path, on the
                // 3x3s that path takes), else for the GEMM.
                let direct = conv_geom(graph, node)
                    .filter(direct::fits)
                    .and_then(|g| {
                        let w = T::as_f32(&weight)?;
                        Some(DirectWeights::new(w, rows, k)?.with_winograd(w, &g))
                    })
                    .map(Arc::new);
                let packed = if c.groups == 1 && direct.is_none() {
                    T::as_f32(&weight)
                        .and_then(|w| PackedWeights::new(w, rows, k))
                        .map(Arc::new)
                } else {
                    None
                };
                NodeWeights::Conv {
                    weight: Arc::new(if packed.is_some() || direct.is_some() {
                        Vec::new()
                    } else {
                        weight
                    }),
                    packed,
                    direct,
                    bias: if c.bias {
                        Some(cast(param(node, 1)?))
                    } else {
                        None
                    },
                }
            }
            Op::Linear(l) => NodeWeights::Linear {
                weight: Arc::new(LinearWeight::new(param(node, 0)?)),
                bias: if l.bias { Some(param(node, 1)?) } else { None },
            },
            Op::BatchNorm(b) => {
                let (scale, shift) = batchnorm_scale_shift(
                    &param(node, 0)?,
                    &param(node, 1)?,
                    &param(node, 2)?,
                    &param(node, 3)?,
                    b.eps,
                );
                NodeWeights::Scale {
                    scale: cast(scale),
                    shift: cast(shift),
                }
            }
            Op::ChannelAffine(a) => NodeWeights::Scale {
                scale: cast(a.scale.clone()),
                shift: cast(a.shift.clone()),
            },
            Op::Relu
            | Op::Pool2d(_)
            | Op::AdaptiveAvgPool2d(_)
            | Op::Concat(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Dropout(_) => NodeWeights::None,
        };
        out.push(w);
    }
    Ok(out)
}

/// The first four dimensions of a value (NCHW), 0 where not fixed.
fn dims4(graph: &Graph, v: ValueId) -> [usize; 4] {
    let shape = &graph.values[v].ty.shape;
    std::array::from_fn(|i| shape.get(i).and_then(|d| d.fixed()).unwrap_or(0))
}

/// The geometry of a convolution node, from its input and output shapes
/// (`None` for another op; dimensions that are not fixed read as 0, which
/// no kernel takes).
fn conv_geom(graph: &Graph, node: &incept_ir::Node) -> Option<ConvGeom> {
    let Op::Conv2d(c) = &node.op else {
        return None;
    };
    let (i, o) = (
        dims4(graph, *node.inputs.first()?),
        dims4(graph, node.output),
    );
    Some(ConvGeom {
        c: i[1],
        h: i[2],
        w: i[3],
        o: o[1],
        oh: o[2],
        ow: o[3],
        kernel: c.kernel,
        stride: c.stride,
        pads: c.pads,
        dilation: c.dilation,
        groups: c.groups,
    })
}

/// True when the average pooling `pool`, read only by `conv`, can run on
/// `conv`'s output instead (`Step::Conv::avg_pool`): a float32 convolution
/// on the fast kernels, 1x1, stride 1, unpadded, one group, with fewer
/// output than input channels, and a pooling that keeps the plane's size.
fn pools_after<T>(
    graph: &Graph,
    pool: &incept_ir::Node,
    conv: &incept_ir::Node,
    weights: &NodeWeights<T>,
) -> bool {
    let fast = matches!(
        weights,
        NodeWeights::Conv {
            packed: Some(_),
            ..
        } | NodeWeights::Conv {
            direct: Some(_),
            ..
        }
    );
    let (Some(p), Some(g)) = (pool_geom(graph, pool), conv_geom(graph, conv)) else {
        return false;
    };
    fast && p.kind == PoolKind::Avg
        && (p.oh, p.ow) == (p.h, p.w)
        && g.kernel == [1, 1]
        && g.stride == [1, 1]
        && g.pads == [0; 4]
        && g.groups == 1
        && g.o < g.c
}

/// The geometry of a pooling node, from its input and output shapes
/// (`None` for another op; dimensions that are not fixed read as 0).
fn pool_geom(graph: &Graph, node: &incept_ir::Node) -> Option<PoolGeom> {
    let Op::Pool2d(p) = &node.op else {
        return None;
    };
    let (i, o) = (
        dims4(graph, *node.inputs.first()?),
        dims4(graph, node.output),
    );
    Some(PoolGeom {
        kind: p.kind,
        c: i[1],
        h: i[2],
        w: i[3],
        oh: o[2],
        ow: o[3],
        kernel: p.kernel,
        stride: p.stride,
        pads: p.pads,
        count_include_pad: p.count_include_pad || p.kind == PoolKind::Max,
    })
}

/// One unit of work.
#[derive(Clone, Debug)]
pub enum Step<T> {
    /// Convolution with a fused per-channel epilogue (bias, BatchNorm, ReLU).
    Conv {
        /// Geometry.
        geom: ConvGeom,
        /// Weight (empty when packed).
        weight: Arc<Vec<T>>,
        /// The weight packed for the AVX-512 float32 kernel.
        packed: Option<Arc<PackedWeights>>,
        /// The weight packed for the direct kernel, which runs it when set.
        direct: Option<Arc<DirectWeights>>,
        /// Epilogue.
        epilogue: Epilogue<T>,
        /// A max pooling of the output, done by the direct kernel as its rows
        /// complete (`direct::conv_pool`); `output` then holds the pooled
        /// values, and the convolution's own output is never stored.
        pool: Option<Box<PoolGeom>>,
        /// An average pooling of the input (`c`: the output's channels)
        /// that runs on the convolution's output instead, before the
        /// epilogue: for a 1x1 convolution the two commute (both are linear
        /// per pixel and per channel), and pooling its fewer output
        /// channels costs a quarter to a tenth of pooling its input, with
        /// no pooled copy of the input written and read back. Float32
        /// only: the sums run in another order, so the bits differ from
        /// pooling first (the float64 oracle keeps the graph's order).
        avg_pool: Option<Box<PoolGeom>>,
        /// Whether the input holds this layer's zero border, and the border
        /// (its consumer's padding) the output is written inside: set
        /// between two direct convolutions, so the second one does not copy
        /// its input with a border first (`direct::Layout`).
        layout: direct::Layout,
        /// Input.
        input: Slot,
        /// Output.
        output: Slot,
    },
    /// A standalone per-channel op (BatchNorm, ReLU, ChannelAffine).
    Channel {
        /// The transform.
        epilogue: Epilogue<T>,
        /// Elements per channel.
        plane: usize,
        /// Input.
        input: Slot,
        /// Output.
        output: Slot,
    },
    /// Max or average pooling.
    Pool {
        /// Geometry.
        geom: PoolGeom,
        /// Input.
        input: Slot,
        /// Output.
        output: Slot,
    },
    /// Adaptive average pooling.
    Adaptive {
        /// Channels.
        c: usize,
        /// Input height and width.
        hw: (usize, usize),
        /// Output height and width.
        ohw: (usize, usize),
        /// Input.
        input: Slot,
        /// Output.
        output: Slot,
    },
    /// Fully connected layer over the last axis (rank-2 values).
    Linear {
        /// Weight `[out, in]`.
        weight: Arc<LinearWeight>,
        /// Bias.
        bias: Option<Vec<f64>>,
        /// Input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Input.
        input: Slot,
        /// Output.
        output: Slot,
    },
    /// Copies of concatenation parts that could not be written in place.
    Copy {
        /// (from, to) pairs.
        parts: Vec<(Slot, Slot)>,
    },
}

/// A graph ready to run for one set of taps.
#[derive(Debug)]
pub struct Plan<T> {
    /// Steps in order.
    pub steps: Vec<Step<T>>,
    /// For each step, the nodes it computes (`Mixed_5b.branch1x1.conv+bn+relu`) and its op.
    pub step_names: Vec<(String, &'static str)>,
    /// Per-image sizes of the physical buffers.
    pub buffers: Vec<usize>,
    /// Where the graph input goes.
    pub input: Slot,
    /// Inference outputs and taps to copy out at the end: (name, value, slot).
    pub results: Vec<(String, ValueId, Slot)>,
    /// How many of `results` are graph outputs (the rest are taps).
    pub n_outputs: usize,
    /// The steps a batch runs all images at once (see [`BatchTail`]).
    pub tail: BatchTail<T>,
    /// Blocks whose branches one image runs on two threads at once (empty
    /// for a plan for one thread).
    pub forks: Vec<Fork>,
}

/// The last steps of a plan, which a batch of several images runs step by
/// step over all its images at once, after each image has run the steps
/// before them on its own: the classifier, whose 8 MB of weights a batch
/// then reads once, not once per image. Convolutions stay image by image:
/// the 8x8 blocks once gained from running step by step (their weights then
/// stayed in L3 across the batch), but since the kernels prefetch their
/// weights, a batch of 8 on one thread runs 5.3 ms faster with the
/// classifier alone in the tail than with Mixed_7b and 7c in it too, and
/// 2.7 ms on two (in-process alternations, 12 pairs); the 17x17 blocks and
/// the stem never gained (their activations then spill from L2).
#[derive(Debug)]
pub struct BatchTail<T> {
    /// The plan's index of the tail's first step (the plan's step count
    /// when there is no tail).
    pub start: usize,
    /// The plan's steps from `start` on, their slots laid out in the tail's
    /// own buffers: image `n` of buffer `b` at `n · strides[b]`, where
    /// `strides[b]` covers what the tail uses of the buffer, not what the
    /// whole plan does (the plan's buffers are sized by the stem's 2.8 MB
    /// values, eight times that for a batch of 8).
    pub steps: Vec<Step<T>>,
    /// Per buffer, floats per image of the tail's copy (0: unused there).
    pub strides: Vec<usize>,
    /// Slots (in the plan's layout) whose data the tail needs from the
    /// steps before it, copied per image from the buffers those ran in:
    /// what a tail step reads, or a result holds, that the tail has not
    /// wholly written before.
    pub live_in: Vec<Slot>,
    /// Per result of the plan: whether it is read from the tail's buffers
    /// (the tail writes some of it) or from the steps before.
    pub from_tail: Vec<bool>,
}

impl<T: Clone> BatchTail<T> {
    /// The tail of `steps`: its final run of classifier (`Linear`) steps;
    /// `results` are the plan's result slots.
    pub fn of(steps: &[Step<T>], buffers: usize, results: &[Slot]) -> Self {
        let start = steps
            .iter()
            .rposition(|s| !matches!(s, Step::Linear { .. }))
            .map_or(0, |i| i + 1);
        Self::from_start(steps, start, buffers, results)
    }

    /// The tail of `steps` from step `start` on: what it needs from the
    /// steps before, and its own layout.
    pub fn from_start(steps: &[Step<T>], start: usize, buffers: usize, results: &[Slot]) -> Self {
        let mut live_in: Vec<Slot> = Vec::new();
        let mut from_tail = Vec::with_capacity(results.len());
        let mut writes: Vec<Slot> = Vec::new();
        let mut touched: Vec<Slot> = Vec::new();
        let mut need = |s: Slot, writes: &[Slot]| {
            if !covered(writes, s) && !live_in.contains(&s) {
                live_in.push(s);
            }
        };
        for step in &steps[start..] {
            for (input, output) in step.slots() {
                need(input, &writes);
                writes.push(output);
                touched.extend([input, output]);
            }
        }
        for &r in results {
            let written = writes.iter().any(|w| overlaps(w, &r));
            if written {
                need(r, &writes);
                touched.push(r);
            }
            from_tail.push(written);
        }
        let mut strides = vec![0; buffers];
        for s in &touched {
            strides[s.buf] = strides[s.buf].max(s.offset + s.len);
        }
        let steps = steps[start..]
            .iter()
            .map(|step| {
                let mut step = step.clone();
                step.restride(&strides);
                step
            })
            .collect();
        BatchTail {
            start,
            steps,
            strides,
            live_in,
            from_tail,
        }
    }

    /// True when there is a tail.
    pub fn exists(&self) -> bool {
        !self.steps.is_empty()
    }

    /// Where the plan's slot `s` lies in the tail's buffers.
    pub fn slot(&self, s: Slot) -> Slot {
        restrided(s, &self.strides)
    }
}

/// `s` in buffers of `strides[b]` floats per image.
fn restrided(s: Slot, strides: &[usize]) -> Slot {
    Slot {
        stride: strides[s.buf],
        ..s
    }
}

impl<T> Step<T> {
    /// Every `(read, written)` pair of slots of the step.
    pub fn slots(&self) -> Vec<(Slot, Slot)> {
        match self {
            Step::Linear { input, output, .. } => vec![(*input, *output)],
            Step::Copy { parts } => parts.clone(),
            _ => self.io().into_iter().collect(),
        }
    }

    /// Lays the step's slots out in buffers of `strides[b]` floats per image.
    fn restride(&mut self, strides: &[usize]) {
        let fix = |s: &mut Slot| *s = restrided(*s, strides);
        match self {
            Step::Conv { input, output, .. }
            | Step::Channel { input, output, .. }
            | Step::Pool { input, output, .. }
            | Step::Adaptive { input, output, .. }
            | Step::Linear { input, output, .. } => {
                fix(input);
                fix(output);
            }
            Step::Copy { parts } => {
                for (a, b) in parts {
                    fix(a);
                    fix(b);
                }
            }
        }
    }
}

/// Whether two slots share an element.
fn overlaps(a: &Slot, b: &Slot) -> bool {
    a.buf == b.buf && a.offset < b.offset + b.len && b.offset < a.offset + a.len
}

/// Whether the slots in `writes` together cover every element of `s`.
fn covered(writes: &[Slot], s: Slot) -> bool {
    let mut parts: Vec<(usize, usize)> = writes
        .iter()
        .filter(|w| overlaps(w, &s))
        .map(|w| (w.offset, w.offset + w.len))
        .collect();
    parts.sort_unstable();
    let mut reached = s.offset;
    for (a, b) in parts {
        if a > reached {
            break;
        }
        reached = reached.max(b);
    }
    reached >= s.offset + s.len
}

impl<T> Step<T> {
    /// `(input, output)` of a step that reads and writes one slot per image.
    pub fn io(&self) -> Option<(Slot, Slot)> {
        match self {
            Step::Conv { input, output, .. }
            | Step::Channel { input, output, .. }
            | Step::Pool { input, output, .. }
            | Step::Adaptive { input, output, .. } => Some((*input, *output)),
            Step::Linear { .. } | Step::Copy { .. } => None,
        }
    }
}

/// Nodes grouped into steps: a head node and the nodes fused into it.
struct Group {
    nodes: Vec<NodeId>,
}

/// A fork over groups: `start..mid` on one thread, `mid..end` on the
/// other, with each side's multiply-accumulates.
struct GroupFork {
    start: usize,
    mid: usize,
    end: usize,
    work: [usize; 2],
}

/// Chooses the forks ([`fork::choose`]) over `groups`, whose order it
/// changes to put each fork's sides first.
fn fork_groups(
    graph: &Graph,
    groups: &mut Vec<Group>,
    producers: &[Option<NodeId>],
) -> Vec<GroupFork> {
    let mut group_of_node = vec![usize::MAX; graph.nodes.len()];
    for (i, g) in groups.iter().enumerate() {
        for &n in &g.nodes {
            group_of_node[n] = i;
        }
    }
    let deps: Vec<Vec<Option<usize>>> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut deps: Vec<Option<usize>> = g
                .nodes
                .iter()
                .flat_map(|&n| &graph.nodes[n].inputs)
                .map(|&v| {
                    producers[v]
                        .map(|p| group_of_node[p])
                        .filter(|&g| g != usize::MAX)
                })
                .filter(|d| *d != Some(i))
                .collect();
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect();
    let work: Vec<u64> = groups
        .iter()
        .map(|g| {
            g.nodes
                .iter()
                .map(|&n| incept_ir::cost::node_macs(graph, &graph.nodes[n]))
                .sum()
        })
        .collect();
    let chosen = fork::choose(&deps, &work, fork::STEP_COST);
    let mut order: Vec<usize> = (0..groups.len()).collect();
    let mut forks = Vec::with_capacity(chosen.len());
    for c in chosen {
        order[c.start..c.start + c.order.len()].copy_from_slice(&c.order);
        let side = |r: std::ops::Range<usize>| {
            let w: u64 = order[r].iter().map(|&g| work[g]).sum();
            usize::try_from(w).unwrap_or(usize::MAX)
        };
        forks.push(GroupFork {
            start: c.start,
            mid: c.mid,
            end: c.end,
            work: [side(c.start..c.mid), side(c.mid..c.end)],
        });
    }
    let mut old: Vec<Group> = std::mem::take(groups);
    *groups = order
        .iter()
        .map(|&i| Group {
            nodes: std::mem::take(&mut old[i].nodes),
        })
        .collect();
    forks
}

/// Builds the plan for `taps` (value ids to keep).
pub fn build_plan<T: Float>(
    graph: &Graph,
    weights: &[NodeWeights<T>],
    needed: &[bool],
    taps: &[ValueId],
    two_threads: bool,
) -> Result<Plan<T>, InterpError> {
    let nv = graph.values.len();
    let producers = graph.producers();
    let outputs: Vec<(String, ValueId)> = graph
        .outputs
        .iter()
        .filter(|o| !o.training_only)
        .map(|o| (o.name.clone(), o.value))
        .collect();
    let mut pinned = vec![false; nv]; // values that must be materialized and kept to the end
    for &(_, v) in &outputs {
        pinned[v] = true;
    }
    for &v in taps {
        pinned[v] = true;
    }
    let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); nv];
    for (i, n) in graph.nodes.iter().enumerate().filter(|(i, _)| needed[*i]) {
        for &v in &n.inputs {
            consumers[v].push(i);
        }
    }
    let sole_consumer = |v: ValueId| -> Option<NodeId> {
        match consumers[v].as_slice() {
            [c] if !pinned[v] => Some(*c),
            _ => None,
        }
    };

    // 1. Group nodes: Conv [+ BatchNorm] [+ Relu] [+ MaxPool2d, on the direct
    // kernel], everything else alone.
    let mut groups: Vec<Group> = Vec::new();
    let mut taken = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        if !needed[i] || taken[i] {
            continue;
        }
        taken[i] = true;
        let mut nodes = vec![i];
        // An average pooling read only by a 1x1 convolution with fewer
        // output channels is done after the convolution, in its group
        // (`Step::Conv::avg_pool`). Tapped, it is also stored by a step of
        // its own: the convolution's result must not depend on the taps.
        let mut conv = i;
        if let [c] = consumers[node.output].as_slice()
            && let c = *c
            && pools_after(graph, node, &graph.nodes[c], &weights[c])
        {
            if pinned[node.output] {
                groups.push(Group { nodes: vec![i] });
            }
            nodes.push(c);
            taken[c] = true;
            conv = c;
        }
        let (i, node) = (conv, &graph.nodes[conv]);
        if matches!(node.op, Op::Conv2d(_)) {
            let mut last = i;
            if let Some(c) = sole_consumer(graph.nodes[last].output)
                && matches!(graph.nodes[c].op, Op::BatchNorm(_))
            {
                nodes.push(c);
                taken[c] = true;
                last = c;
            }
            if let Some(c) = sole_consumer(graph.nodes[last].output)
                && matches!(graph.nodes[c].op, Op::Relu)
            {
                nodes.push(c);
                taken[c] = true;
                last = c;
            }
            // A max pooling that the direct kernel does on the rows it
            // produces (the stem's): the output in between is never stored.
            if let (
                Some(c),
                NodeWeights::Conv {
                    direct: Some(_), ..
                },
            ) = (sole_consumer(graph.nodes[last].output), &weights[i])
                && let (Some(g), Some(p)) =
                    (conv_geom(graph, node), pool_geom(graph, &graph.nodes[c]))
                && direct::pools(&g, &p)
            {
                nodes.push(c);
                taken[c] = true;
            }
        }
        groups.push(Group { nodes });
    }
    let group_output = |g: &Group| graph.nodes[g.nodes[g.nodes.len() - 1]].output;

    // 1b. Blocks whose branches run on two threads at once: their groups
    // reordered as the first thread's, the second's, then those after.
    let forked = if two_threads {
        fork_groups(graph, &mut groups, &producers)
    } else {
        Vec::new()
    };

    // 2. Storage: which values are materialized, and which share another's storage.
    let mut materialized = vec![false; nv];
    for &i in &graph.inputs {
        materialized[i] = true;
    }
    for g in &groups {
        materialized[group_output(g)] = true;
    }
    // parent[v] = (value whose storage v lives in, offset per image).
    let mut parent: Vec<Option<(ValueId, usize)>> = vec![None; nv];
    let is_alias = |op: &Op| matches!(op, Op::Flatten(_) | Op::Reshape(_) | Op::Dropout(_));
    let mut concat_parts_used: HashSet<ValueId> = HashSet::new();
    let mut in_place: HashSet<(NodeId, usize)> = HashSet::new();
    for g in groups.iter().rev() {
        let head = g.nodes[0];
        let node = &graph.nodes[head];
        if let Op::Concat(c) = &node.op {
            // Only axis 1 of NCHW-like values is contiguous per image.
            if c.axis != 1 {
                continue;
            }
            let plane: usize = graph.values[node.output].ty.shape[2..]
                .iter()
                .filter_map(|d| d.fixed())
                .product();
            let mut offset = 0;
            for (k, &part) in node.inputs.iter().enumerate() {
                let channels = graph.values[part].ty.shape[1].fixed().unwrap_or(0);
                let eligible = producers[part].is_some_and(|p| !is_alias(&graph.nodes[p].op))
                    && !graph.inputs.contains(&part)
                    && parent[part].is_none()
                    && !concat_parts_used.contains(&part);
                if eligible {
                    parent[part] = Some((node.output, offset));
                    concat_parts_used.insert(part);
                    in_place.insert((head, k));
                }
                offset += channels * plane;
            }
        }
    }
    for g in &groups {
        let node = &graph.nodes[g.nodes[0]];
        if is_alias(&node.op) {
            parent[node.output] = Some((node.inputs[0], 0));
        }
    }
    let root = |mut v: ValueId| -> (ValueId, usize) {
        let mut off = 0;
        while let Some((p, o)) = parent[v] {
            off += o;
            v = p;
        }
        (v, off)
    };

    // Values stored inside their consumer's zero border: the output of a
    // direct convolution read only by a padded direct convolution, which
    // then reads it in place (no padded copy, `direct::Layout`). Not for a
    // value that is kept (tapped), shared (a concat part) or pooled.
    let mut border: Vec<Option<[usize; 4]>> = vec![None; nv];
    let direct_conv = |n: NodeId| {
        matches!(graph.nodes[n].op, Op::Conv2d(_))
            && matches!(
                &weights[n],
                NodeWeights::Conv {
                    direct: Some(_),
                    ..
                }
            )
    };
    let group_of_output: HashMap<ValueId, &Group> =
        groups.iter().map(|g| (group_output(g), g)).collect();
    for g in &groups {
        let head = g.nodes[0];
        let (Some(&v), Some(gc)) = (
            graph.nodes[head].inputs.first(),
            conv_geom(graph, &graph.nodes[head]),
        ) else {
            continue;
        };
        let Some(producer) = group_of_output.get(&v) else {
            continue;
        };
        let p_head = producer.nodes[0];
        let pooled = producer
            .nodes
            .iter()
            .any(|&n| matches!(graph.nodes[n].op, Op::Pool2d(_)));
        if direct_conv(head)
            && direct_conv(p_head)
            && !pooled
            && gc.pads != [0; 4]
            && sole_consumer(v) == Some(head)
            && parent[v].is_none()
            && !graph.inputs.contains(&v)
            && conv_geom(graph, &graph.nodes[p_head])
                .is_some_and(|gp| direct::writes_padded(&gp, gc.pads))
        {
            border[v] = Some(gc.pads);
        }
    }

    // 3. Live ranges of each root's storage, in step indices.
    let n_steps = groups.len();
    let mut first = vec![usize::MAX; nv];
    let mut last = vec![0usize; nv];
    let touch = |v: ValueId, s: usize, first: &mut Vec<usize>, last: &mut Vec<usize>| {
        let (r, _) = root(v);
        first[r] = first[r].min(s);
        last[r] = last[r].max(s);
    };
    for (s, g) in groups.iter().enumerate() {
        let out = group_output(g);
        touch(out, s, &mut first, &mut last);
        for &n in &g.nodes {
            for &v in &graph.nodes[n].inputs {
                touch(v, s, &mut first, &mut last);
            }
        }
    }
    for &i in &graph.inputs {
        touch(i, 0, &mut first, &mut last);
    }
    for (v, _) in pinned.iter().enumerate().filter(|(_, p)| **p) {
        touch(v, n_steps, &mut first, &mut last);
    }
    // What a fork's steps touch lives through the whole fork: its two
    // sides run at once, so none of it can share storage.
    for f in &forked {
        for g in &groups[f.start..f.end] {
            for &n in &g.nodes {
                let node = &graph.nodes[n];
                for &v in node.inputs.iter().chain([&node.output]) {
                    if materialized[v] || parent[v].is_some() {
                        touch(v, f.start, &mut first, &mut last);
                        touch(v, f.end - 1, &mut first, &mut last);
                    }
                }
            }
        }
    }
    // 4. Physical buffers: greedy reuse of freed buffers, the one freed last
    // among those large enough (else the one freed last, grown). A buffer
    // just read is still in L2 or L3, where one freed early in the run has
    // been pushed out by the weights since, and writing a value to memory
    // that is not in cache costs a read of every line first: bench median
    // -0.03..-0.23 ms at 1 and 2 threads (4 x 30 in-process alternations)
    // against the best fit by size.
    let per_image = |v: ValueId| match border[v] {
        Some([t, l, b, r]) => {
            let [_, c, h, w] = dims4(graph, v);
            c * (h + t + b) * (w + l + r)
        }
        None => graph.values[v].ty.numel_per_item(),
    };
    let mut roots: Vec<ValueId> = (0..nv)
        .filter(|&v| materialized[v] && parent[v].is_none() && first[v] != usize::MAX)
        .collect();
    roots.sort_by_key(|&v| (first[v], v));
    let mut buffers: Vec<usize> = Vec::new();
    let mut free_at: Vec<usize> = Vec::new(); // step after which the buffer is free
    let mut buf_of_root: HashMap<ValueId, usize> = HashMap::new();
    for &r in &roots {
        let need = per_image(r);
        let candidate = (0..buffers.len())
            .filter(|&b| free_at[b] < first[r])
            .min_by_key(|&b| (buffers[b] < need, std::cmp::Reverse(free_at[b])));
        let b = match candidate {
            Some(b) => {
                buffers[b] = buffers[b].max(need);
                b
            }
            None => {
                buffers.push(need);
                free_at.push(0);
                buffers.len() - 1
            }
        };
        free_at[b] = last[r];
        buf_of_root.insert(r, b);
    }
    let slot = |v: ValueId| -> Slot {
        let (r, offset) = root(v);
        let buf = buf_of_root.get(&r).copied().unwrap_or(usize::MAX);
        Slot {
            buf,
            offset,
            len: per_image(v),
            stride: 0,
        }
    };
    // Strides are the final buffer sizes, known only now.
    let fix = |s: Slot, buffers: &[usize]| Slot {
        stride: buffers.get(s.buf).copied().unwrap_or(0),
        ..s
    };

    // 5. Steps.
    let mut steps = Vec::with_capacity(groups.len());
    let mut step_names = Vec::with_capacity(groups.len());
    // The index of each group's step (of the next step for a group without one).
    let mut step_of_group = Vec::with_capacity(groups.len() + 1);
    for g in &groups {
        step_of_group.push(steps.len());
        let head = &graph.nodes[g.nodes[0]];
        let out_v = group_output(g);
        let output = fix(slot(out_v), &buffers);
        let in_ty = head.inputs.first().map(|&v| &graph.values[v].ty);
        let input = head.inputs.first().map(|&v| fix(slot(v), &buffers));
        let dims = |v: ValueId| {
            graph.values[v]
                .ty
                .shape
                .iter()
                .map(|d| d.fixed().unwrap_or(0))
                .collect::<Vec<_>>()
        };
        let (Some(input), Some(_)) = (input, in_ty) else {
            continue;
        };
        // A pooling moved after its convolution: the step is the convolution's.
        let moved = matches!(head.op, Op::Pool2d(_)) && g.nodes.len() > 1;
        let (conv_at, avg_pool) = if moved {
            (1, pool_geom(graph, head))
        } else {
            (0, None)
        };
        let head = &graph.nodes[g.nodes[conv_at]];
        let step = match (&head.op, &weights[g.nodes[conv_at]]) {
            (
                Op::Conv2d(_),
                NodeWeights::Conv {
                    weight,
                    packed,
                    direct,
                    bias,
                },
            ) => {
                let Some(geom) = conv_geom(graph, head) else {
                    continue;
                };
                let mut epilogue = Epilogue {
                    scale: None,
                    shift: bias.clone(),
                    relu: false,
                };
                let mut pool = None;
                for &n in &g.nodes[conv_at + 1..] {
                    match (&graph.nodes[n].op, &weights[n]) {
                        (Op::BatchNorm(_), NodeWeights::Scale { scale, shift }) => {
                            // bn(conv + bias) = conv·s + (bias·s + shift)
                            let shift2 = match &epilogue.shift {
                                Some(b) => b
                                    .iter()
                                    .zip(scale)
                                    .zip(shift)
                                    .map(|((b, s), t)| *b * *s + *t)
                                    .collect(),
                                None => shift.clone(),
                            };
                            epilogue.scale = Some(scale.clone());
                            epilogue.shift = Some(shift2);
                        }
                        (Op::Relu, _) => epilogue.relu = true,
                        (Op::Pool2d(_), _) => {
                            pool = pool_geom(graph, &graph.nodes[n]).map(Box::new)
                        }
                        _ => {}
                    }
                }
                let layout = direct::Layout {
                    padded_input: graph.nodes[g.nodes[0]]
                        .inputs
                        .first()
                        .is_some_and(|&v| border[v].is_some()),
                    out_pads: border[out_v].unwrap_or([0; 4]),
                };
                let avg_pool = avg_pool.map(|p| Box::new(PoolGeom { c: geom.o, ..p }));
                Step::Conv {
                    geom,
                    weight: Arc::clone(weight),
                    packed: packed.clone(),
                    direct: direct.clone(),
                    epilogue,
                    pool,
                    avg_pool,
                    layout,
                    input,
                    output,
                }
            }
            (Op::BatchNorm(_) | Op::ChannelAffine(_), NodeWeights::Scale { scale, shift }) => {
                let i = dims(head.inputs[0]);
                Step::Channel {
                    epilogue: Epilogue {
                        scale: Some(scale.clone()),
                        shift: Some(shift.clone()),
                        relu: false,
                    },
                    plane: i[2..].iter().product(),
                    input,
                    output,
                }
            }
            (Op::Relu, _) => {
                let i = dims(head.inputs[0]);
                Step::Channel {
                    epilogue: Epilogue {
                        scale: None,
                        shift: None,
                        relu: true,
                    },
                    plane: i.get(2..).map_or(1, |r| r.iter().product()),
                    input,
                    output,
                }
            }
            (Op::Pool2d(_), _) => {
                let Some(geom) = pool_geom(graph, head) else {
                    continue;
                };
                Step::Pool {
                    geom,
                    input,
                    output,
                }
            }
            (Op::AdaptiveAvgPool2d(_), _) => {
                let i = dims(head.inputs[0]);
                let o = dims(head.output);
                Step::Adaptive {
                    c: i[1],
                    hw: (i[2], i[3]),
                    ohw: (o[2], o[3]),
                    input,
                    output,
                }
            }
            (Op::Linear(l), NodeWeights::Linear { weight, bias }) => Step::Linear {
                weight: Arc::clone(weight),
                bias: bias.clone(),
                in_features: l.in_features,
                out_features: l.out_features,
                input,
                output,
            },
            (Op::Concat(_), _) => {
                let parts = head
                    .inputs
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| !in_place.contains(&(g.nodes[0], *k)))
                    .map(|(k, &v)| {
                        let from = fix(slot(v), &buffers);
                        let offset: usize = head.inputs[..k].iter().map(|&p| per_image(p)).sum();
                        (
                            from,
                            Slot {
                                offset: output.offset + offset,
                                len: from.len,
                                ..output
                            },
                        )
                    })
                    .collect::<Vec<_>>();
                if parts.is_empty() {
                    continue;
                }
                Step::Copy { parts }
            }
            (Op::Flatten(_) | Op::Reshape(_) | Op::Dropout(_), _) => continue,
            // Weights were prepared for every op above; a mismatch cannot happen.
            (Op::Conv2d(_) | Op::BatchNorm(_) | Op::ChannelAffine(_) | Op::Linear(_), _) => {
                continue;
            }
        };
        let mut label = head.name.clone();
        for (_, &n) in g.nodes.iter().enumerate().filter(|(k, _)| *k != conv_at) {
            label.push('+');
            label.push_str(graph.nodes[n].op.name());
        }
        step_names.push((label, head.op.name()));
        steps.push(step);
    }

    let input = graph
        .inputs
        .first()
        .map(|&v| fix(slot(v), &buffers))
        .ok_or(InterpError::InputCount(0))?;
    let mut results: Vec<(String, ValueId, Slot)> = outputs
        .iter()
        .map(|(n, v)| (n.clone(), *v, fix(slot(*v), &buffers)))
        .collect();
    let n_outputs = results.len();
    for &v in taps {
        results.push((graph.values[v].name.clone(), v, fix(slot(v), &buffers)));
    }
    let result_slots: Vec<Slot> = results.iter().map(|r| r.2).collect();
    let tail = BatchTail::of(&steps, buffers.len(), &result_slots);
    step_of_group.push(steps.len());
    let forks = forked
        .iter()
        .filter_map(|f| {
            let [start, mid, end] = [f.start, f.mid, f.end].map(|g| step_of_group[g]);
            let slots = |r: std::ops::Range<usize>| -> Vec<(Slot, Slot)> {
                steps[r].iter().flat_map(Step::slots).collect()
            };
            let pieces = fork::carve([&slots(start..mid), &slots(mid..end)])?;
            (start < mid && mid < end && end <= tail.start).then_some(Fork {
                start,
                mid,
                end,
                work: f.work,
                pieces,
            })
        })
        .collect();
    Ok(Plan {
        steps,
        step_names,
        buffers,
        input,
        results,
        n_outputs,
        tail,
        forks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A concatenation whose first half the steps before the tail wrote
    /// and whose second half the tail writes: read whole by the tail, or
    /// kept as a result, it must be copied in from the image's own run
    /// first; a value the tail wrote whole before reading it, not.
    #[test]
    fn the_tail_takes_in_what_it_has_not_written_whole() {
        let (a, b, cat, half) = (
            Slot::at(0, 0, 10),
            Slot::at(1, 0, 20),
            Slot::at(2, 0, 20),
            Slot::at(2, 10, 10),
        );
        let steps: Vec<Step<f32>> = vec![
            Step::Copy {
                parts: vec![(a, half)],
            },
            Step::Copy {
                parts: vec![(cat, b)],
            },
            Step::Copy {
                parts: vec![(b, Slot::at(3, 0, 20))],
            },
        ];
        let tail = BatchTail::from_start(&steps, 0, 4, &[cat, b, a]);
        assert_eq!(tail.start, 0);
        assert_eq!(tail.live_in, vec![a, cat]);
        assert_eq!(tail.from_tail, vec![true, true, false]);
        // What the tail uses of each buffer, not the buffers' whole 100.
        assert_eq!(tail.strides, vec![10, 20, 20, 20]);
        let Step::Copy { parts } = &tail.steps[0] else {
            panic!("a copy stays a copy");
        };
        assert_eq!(parts[0].1, Slot { stride: 20, ..half });
        assert!(covered(&[Slot::at(2, 0, 12), Slot::at(2, 12, 8)], cat));
        assert!(!covered(&[Slot::at(2, 0, 12), Slot::at(2, 13, 7)], cat));
    }

    /// The template's graph for `config`, with weights of ones (the plan
    /// depends on shapes only).
    fn template(config: &incept_ir::template::InceptionV3Config) -> Graph {
        let mut g = incept_ir::template::inception_v3(config)
            .expect("the template builds")
            .graph;
        let weights = g
            .params
            .iter()
            .map(|p| {
                let data = match p.dtype {
                    incept_ir::DType::I64 => incept_ir::TensorData::I64(vec![0]),
                    _ => incept_ir::TensorData::F32(vec![1.0; p.numel()]),
                };
                let t = incept_ir::Tensor::new(p.shape.clone(), data).expect("a tensor");
                (p.name.clone(), t)
            })
            .collect();
        g.bind(weights).expect("weights bind");
        g
    }

    /// The full-size model forks the blocks whose branches halve evenly,
    /// and a plan for one thread forks nothing.
    #[test]
    fn the_full_model_forks_nine_blocks_on_two_threads() {
        let g = template(&incept_ir::template::InceptionV3Config {
            aux_logits: false,
            ..Default::default()
        });
        let needed = g.inference_nodes();
        let w = prepare_weights::<f32>(&mut g.clone(), &needed).expect("weights prepare");
        let plan = build_plan(&g, &w, &needed, &[], true).expect("a plan");
        let blocks: Vec<&str> = plan
            .forks
            .iter()
            .map(|f| {
                let name = &plan.step_names[f.start].0;
                name.split('.').next().unwrap_or(name)
            })
            .collect();
        assert_eq!(
            blocks,
            [
                "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                "Mixed_7b", "Mixed_7c"
            ]
        );
        for f in &plan.forks {
            // Each side's steps belong to its block and run on one thread.
            let block = plan.step_names[f.start].0.split('.').next();
            for (name, _) in &plan.step_names[f.start..f.end] {
                assert_eq!(
                    name.split('.').next(),
                    block,
                    "{name} in a fork of {block:?}"
                );
            }
            assert!(f.start < f.mid && f.mid < f.end);
            let (a, b) = (f.work[0] as f64, f.work[1] as f64);
            assert!(a.max(b) / a.min(b) < 1.2, "sides of {a} and {b} MACs");
        }
        let one = build_plan(&g, &w, &needed, &[], false).expect("a plan");
        assert!(one.forks.is_empty());
        assert_eq!(one.steps.len(), plan.steps.len());
    }

    /// The narrow model of `tests/properties.rs` (1/16 of the widths) forks
    /// too, every value tapped or not, so the tests there that a run's bits
    /// do not depend on the threads or the batch cover forked runs.
    #[test]
    fn the_narrow_model_of_the_property_tests_forks() {
        use incept_ir::template::{InceptionV3Config, Widths};
        let full = template(&InceptionV3Config::default());
        let mut widths = Widths::full();
        for n in &full.nodes {
            if let (Op::Conv2d(c), Some(m)) = (&n.op, n.name.strip_suffix(".conv")) {
                widths.set(m, c.out_channels / 16);
            }
        }
        let g = template(&InceptionV3Config {
            num_classes: 10,
            widths,
            ..Default::default()
        });
        let needed = g.inference_nodes();
        let w = prepare_weights::<f32>(&mut g.clone(), &needed).expect("weights prepare");
        let all: Vec<ValueId> = (0..g.values.len())
            .filter(|&v| needed_value(&g, &needed, v))
            .collect();
        for taps in [&[][..], &all[..]] {
            let plan = build_plan(&g, &w, &needed, taps, true).expect("a plan");
            assert!(
                plan.forks.len() >= 5,
                "{} forks {:?}",
                plan.forks.len(),
                plan.forks
                    .iter()
                    .map(|f| &plan.step_names[f.start].0)
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Whether an inference node computes `v` (the graph's input counts).
    fn needed_value(g: &Graph, needed: &[bool], v: ValueId) -> bool {
        g.inputs.contains(&v)
            || g.nodes
                .iter()
                .enumerate()
                .any(|(i, n)| needed[i] && n.output == v)
    }
}
