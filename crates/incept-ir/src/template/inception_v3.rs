//! torchvision's `Inception3` as an IR graph, with torchvision's module names.
//!
//! Mirrors `torchvision/models/inception.py` (torchvision 0.29): every
//! `BasicConv2d` becomes `<name>.conv` (Conv2d, no bias), `<name>.bn`
//! (BatchNorm, eps 0.001) and `<name>` (the ReLU, whose output is the
//! module's output); every Mixed block ends in a Concat named after the
//! block. Functional calls that have no module in torchvision get names of
//! the form `<block>.<function>` (`Mixed_5b.avg_pool2d`).

use std::collections::BTreeMap;

use thiserror::Error;

use crate::bind::BindError;
use crate::dtype::DType;
use crate::error::GraphError;
use crate::graph::{Graph, GraphBuilder, ValueId};
use crate::op::{
    AdaptiveAvgPool2d, BatchNorm, ChannelAffine, Concat, Conv2d, Dropout, Flatten, Linear, Op,
    ParamKind, Pool2d, PoolKind, sym_pads,
};
use crate::shape::{Dim, ValueType};
use crate::tensor::Tensor;

/// BatchNorm epsilon of every `BasicConv2d` in torchvision's Inception3.
pub const BN_EPS: f64 = 0.001;

/// ImageNet channel means and standard deviations, as `transform_input` uses them.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Output channels per `BasicConv2d`, keyed by module name
/// (`Mixed_5b.branch1x1`). Modules not listed keep torchvision's width.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Widths(BTreeMap<String, usize>);

impl Widths {
    /// torchvision's widths.
    pub fn full() -> Self {
        Widths::default()
    }

    /// Widths read off a state dict: the output channels of every
    /// `<module>.conv.weight` (shape `[out, in, kh, kw]`).
    pub fn from_param_shapes<'a>(shapes: impl IntoIterator<Item = (&'a str, &'a [usize])>) -> Self {
        let map = shapes
            .into_iter()
            .filter_map(|(key, shape)| {
                let module = key.strip_suffix(".conv.weight")?;
                Some((module.to_string(), *shape.first()?))
            })
            .collect();
        Widths(map)
    }

    /// Overrides one module's width.
    pub fn set(&mut self, module: &str, out_channels: usize) {
        self.0.insert(module.to_string(), out_channels);
    }

    fn get(&self, module: &str, default: usize) -> usize {
        self.0.get(module).copied().unwrap_or(default)
    }
}

/// The settings of torchvision's `Inception3` constructor that shape the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct InceptionV3Config {
    /// Classes of the final `fc` (and of `AuxLogits.fc`).
    pub num_classes: usize,
    /// Whether the model has the `AuxLogits` head.
    pub aux_logits: bool,
    /// Whether the input is rescaled from ImageNet normalisation to [-1, 1] first.
    pub transform_input: bool,
    /// Input `[height, width]`.
    pub input_size: [usize; 2],
    /// Dropout probability before `fc`.
    pub dropout: f64,
    /// Channel widths.
    pub widths: Widths,
}

impl Default for InceptionV3Config {
    /// torchvision's defaults at the standard 299x299 input.
    fn default() -> Self {
        InceptionV3Config {
            num_classes: 1000,
            aux_logits: true,
            transform_input: false,
            input_size: [299, 299],
            dropout: 0.5,
            widths: Widths::full(),
        }
    }
}

/// A built Inception V3 graph and what the builder had to say about it.
#[derive(Clone, Debug)]
pub struct InceptionV3 {
    /// The graph; outputs `logits` and, with the aux head, `aux_logits`
    /// (training only).
    pub graph: Graph,
    /// Things the user should know (an aux head that cannot run at this size).
    pub warnings: Vec<String>,
}

/// Why the template could not be built.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TemplateError {
    /// A setting is out of range.
    #[error("invalid Inception V3 setting: {0}")]
    Config(String),
    /// The input is too small for the main path.
    #[error(
        "an input of {h}x{w} is too small for Inception V3: {cause}; \
         the smallest input that works is {min}x{min}"
    )]
    InputTooSmall {
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
        /// The first layer whose output would be empty.
        cause: GraphError,
        /// The smallest square input size that builds.
        min: usize,
    },
    /// The widths do not fit together (a checkpoint of another topology).
    #[error("the channel widths do not form an Inception V3: {0}")]
    Graph(#[from] GraphError),
    /// The state dict lacks a key every Inception V3 has.
    #[error("not an Inception V3 state dict: it has no `{0}`")]
    NotInception(&'static str),
    /// The weights do not fit the template built from them.
    #[error(transparent)]
    Bind(#[from] BindError),
}

impl InceptionV3Config {
    /// The configuration a state dict implies: `num_classes` from
    /// `fc.weight`, the aux head from any `AuxLogits.` key, and every
    /// `BasicConv2d`'s width from its weight. `transform_input` is not
    /// stored in state dicts, so it is the caller's; the input size too.
    pub fn from_state_dict<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [usize])> + Clone,
        transform_input: bool,
        input_size: [usize; 2],
    ) -> Result<Self, TemplateError> {
        let fc = entries
            .clone()
            .into_iter()
            .find(|(k, _)| *k == "fc.weight")
            .ok_or(TemplateError::NotInception("fc.weight"))?;
        let num_classes = *fc.1.first().ok_or(TemplateError::NotInception("fc.weight"))?;
        let aux_logits = entries.clone().into_iter().any(|(k, _)| k.starts_with("AuxLogits."));
        Ok(InceptionV3Config {
            num_classes,
            aux_logits,
            transform_input,
            input_size,
            widths: Widths::from_param_shapes(entries),
            ..InceptionV3Config::default()
        })
    }
}

/// Builds the Inception V3 a state dict describes and binds its weights,
/// reporting every missing, unexpected or mis-shaped key at once.
pub fn bind_state_dict(
    tensors: Vec<(String, Tensor)>,
    transform_input: bool,
    input_size: [usize; 2],
) -> Result<InceptionV3, TemplateError> {
    let shapes: Vec<(&str, &[usize])> = tensors.iter().map(|(k, t)| (k.as_str(), t.shape())).collect();
    let cfg = InceptionV3Config::from_state_dict(shapes.iter().copied(), transform_input, input_size)?;
    let mut model = inception_v3(&cfg)?;
    model.graph.bind(tensors)?;
    Ok(model)
}

/// Builds torchvision's `Inception3` for `cfg`.
///
/// The aux head runs only in training mode; when the input is too small for
/// it, it is left out of the graph (its parameters are still declared, so a
/// checkpoint binds) and a warning says so.
pub fn inception_v3(cfg: &InceptionV3Config) -> Result<InceptionV3, TemplateError> {
    if cfg.num_classes == 0 {
        return Err(TemplateError::Config(
            "num_classes must be at least 1".into(),
        ));
    }
    if !(0.0..=1.0).contains(&cfg.dropout) {
        return Err(TemplateError::Config(format!(
            "dropout must be in [0, 1], got {}",
            cfg.dropout
        )));
    }
    let [h, w] = cfg.input_size;
    match build(cfg) {
        Ok(m) => Ok(m),
        Err(cause @ GraphError::EmptyOutput { .. }) => Err(TemplateError::InputTooSmall {
            h,
            w,
            min: min_input_size(cfg),
            cause,
        }),
        Err(e) => Err(e.into()),
    }
}

/// The smallest square input the main path accepts with `cfg`'s widths
/// (75 for torchvision's Inception3).
pub fn min_input_size(cfg: &InceptionV3Config) -> usize {
    // Every window op's output size grows with its input size, so the first
    // size that builds is the minimum.
    (1..=4096)
        .find(|&s| {
            let c = InceptionV3Config {
                input_size: [s, s],
                aux_logits: false,
                ..cfg.clone()
            };
            build(&c).is_ok()
        })
        .unwrap_or(0)
}

fn build(cfg: &InceptionV3Config) -> Result<InceptionV3, GraphError> {
    let mut warnings = Vec::new();
    let mut t = Builder {
        b: GraphBuilder::new("inception_v3"),
        widths: &cfg.widths,
    };
    t.b.metadata("arch", "inception_v3");
    t.b.metadata("transform_input", cfg.transform_input.to_string());
    let input_ty = ValueType::new(
        DType::F32,
        vec![
            Dim::Batch,
            Dim::Fixed(3),
            Dim::Fixed(cfg.input_size[0]),
            Dim::Fixed(cfg.input_size[1]),
        ],
    );
    let mut x = t.b.input("x", input_ty)?;
    if cfg.transform_input {
        let scale = IMAGENET_STD.map(|s| s / 0.5).to_vec();
        let shift = IMAGENET_MEAN.map(|m| (m - 0.5) / 0.5).to_vec();
        x = t.op(
            "transform_input",
            Op::ChannelAffine(ChannelAffine { scale, shift }),
            &[x],
        )?;
    }
    x = t.basic("Conv2d_1a_3x3", x, 32, [3, 3], 2, [0, 0])?;
    x = t.basic("Conv2d_2a_3x3", x, 32, [3, 3], 1, [0, 0])?;
    x = t.basic("Conv2d_2b_3x3", x, 64, [3, 3], 1, [1, 1])?;
    x = t.op("maxpool1", max_pool(3, 2), &[x])?;
    x = t.basic("Conv2d_3b_1x1", x, 80, [1, 1], 1, [0, 0])?;
    x = t.basic("Conv2d_4a_3x3", x, 192, [3, 3], 1, [0, 0])?;
    x = t.op("maxpool2", max_pool(3, 2), &[x])?;
    x = t.inception_a("Mixed_5b", x, 32)?;
    x = t.inception_a("Mixed_5c", x, 64)?;
    x = t.inception_a("Mixed_5d", x, 64)?;
    x = t.inception_b("Mixed_6a", x)?;
    x = t.inception_c("Mixed_6b", x, 128)?;
    x = t.inception_c("Mixed_6c", x, 160)?;
    x = t.inception_c("Mixed_6d", x, 160)?;
    x = t.inception_c("Mixed_6e", x, 192)?;
    let mut aux = None;
    if cfg.aux_logits {
        // Try the head on a copy, so a head that does not fit leaves no half-built nodes.
        let mut trial = Builder {
            b: t.b.clone(),
            widths: t.widths,
        };
        match trial.aux_head(x, cfg.num_classes) {
            Ok(v) => {
                t = trial;
                aux = Some(v);
            }
            Err(GraphError::EmptyOutput { node, detail, .. }) => {
                warnings.push(format!(
                    "the aux head (AuxLogits, training only) cannot run at {}x{}: {node}: {detail}; \
                     it is left out of the graph, its weights are kept",
                    cfg.input_size[0], cfg.input_size[1]
                ));
                t.declare_aux_params(x, cfg.num_classes)?;
            }
            Err(e) => return Err(e),
        }
    }
    x = t.inception_d("Mixed_7a", x)?;
    x = t.inception_e("Mixed_7b", x)?;
    x = t.inception_e("Mixed_7c", x)?;
    x = t.op(
        "avgpool",
        Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] }),
        &[x],
    )?;
    x = t.op("dropout", Op::Dropout(Dropout { p: cfg.dropout }), &[x])?;
    x = t.op("flatten", Op::Flatten(Flatten { start_dim: 1 }), &[x])?;
    x = t.linear("fc", x, cfg.num_classes)?;
    t.b.output("logits", x, false);
    if let Some(a) = aux {
        t.b.output("aux_logits", a, true);
    }
    Ok(InceptionV3 {
        graph: t.b.finish(),
        warnings,
    })
}

fn max_pool(k: usize, s: usize) -> Op {
    Op::Pool2d(Pool2d {
        kind: PoolKind::Max,
        kernel: [k, k],
        stride: [s, s],
        pads: [0; 4],
        ceil_mode: false,
        count_include_pad: true,
    })
}

fn avg_pool(k: usize, s: usize, p: usize) -> Op {
    Op::Pool2d(Pool2d {
        kind: PoolKind::Avg,
        kernel: [k, k],
        stride: [s, s],
        pads: sym_pads(p, p),
        ceil_mode: false,
        count_include_pad: true,
    })
}

struct Builder<'w> {
    b: GraphBuilder,
    widths: &'w Widths,
}

impl Builder<'_> {
    fn op(&mut self, name: &str, op: Op, inputs: &[ValueId]) -> Result<ValueId, GraphError> {
        self.b.node(name, op, inputs, name)
    }

    fn channels(&self, v: ValueId) -> usize {
        self.b
            .value_type(v)
            .and_then(|t| t.shape.get(1))
            .and_then(|d| d.fixed())
            .unwrap_or(0)
    }

    /// torchvision's `BasicConv2d`: Conv2d(bias=False) → BatchNorm2d(eps=0.001) → ReLU.
    fn basic(
        &mut self,
        name: &str,
        x: ValueId,
        out: usize,
        kernel: [usize; 2],
        stride: usize,
        pad: [usize; 2],
    ) -> Result<ValueId, GraphError> {
        let out = self.widths.get(name, out);
        let conv = Op::Conv2d(Conv2d {
            in_channels: self.channels(x),
            out_channels: out,
            kernel,
            stride: [stride, stride],
            pads: sym_pads(pad[0], pad[1]),
            dilation: [1, 1],
            groups: 1,
            bias: false,
        });
        let c = self.op(&format!("{name}.conv"), conv, &[x])?;
        let bn_name = format!("{name}.bn");
        let bn = Op::BatchNorm(BatchNorm {
            channels: out,
            eps: BN_EPS,
        });
        let y = self.op(&bn_name, bn, &[c])?;
        self.b.extra_param(
            &format!("{bn_name}.num_batches_tracked"),
            ParamKind::Buffer,
            DType::I64,
            vec![],
        )?;
        self.op(name, Op::Relu, &[y])
    }

    fn linear(&mut self, name: &str, x: ValueId, out: usize) -> Result<ValueId, GraphError> {
        let in_features = self
            .b
            .value_type(x)
            .and_then(|t| t.shape.last())
            .and_then(|d| d.fixed())
            .unwrap_or(0);
        let op = Op::Linear(Linear {
            in_features,
            out_features: out,
            bias: true,
        });
        self.op(name, op, &[x])
    }

    fn concat(&mut self, name: &str, parts: &[ValueId]) -> Result<ValueId, GraphError> {
        self.op(name, Op::Concat(Concat { axis: 1 }), parts)
    }

    fn inception_a(
        &mut self,
        n: &str,
        x: ValueId,
        pool_features: usize,
    ) -> Result<ValueId, GraphError> {
        let b1 = self.basic(&format!("{n}.branch1x1"), x, 64, [1, 1], 1, [0, 0])?;
        let b5 = self.basic(&format!("{n}.branch5x5_1"), x, 48, [1, 1], 1, [0, 0])?;
        let b5 = self.basic(&format!("{n}.branch5x5_2"), b5, 64, [5, 5], 1, [2, 2])?;
        let b3 = self.basic(&format!("{n}.branch3x3dbl_1"), x, 64, [1, 1], 1, [0, 0])?;
        let b3 = self.basic(&format!("{n}.branch3x3dbl_2"), b3, 96, [3, 3], 1, [1, 1])?;
        let b3 = self.basic(&format!("{n}.branch3x3dbl_3"), b3, 96, [3, 3], 1, [1, 1])?;
        let bp = self.op(&format!("{n}.avg_pool2d"), avg_pool(3, 1, 1), &[x])?;
        let bp = self.basic(
            &format!("{n}.branch_pool"),
            bp,
            pool_features,
            [1, 1],
            1,
            [0, 0],
        )?;
        self.concat(n, &[b1, b5, b3, bp])
    }

    fn inception_b(&mut self, n: &str, x: ValueId) -> Result<ValueId, GraphError> {
        let b3 = self.basic(&format!("{n}.branch3x3"), x, 384, [3, 3], 2, [0, 0])?;
        let bd = self.basic(&format!("{n}.branch3x3dbl_1"), x, 64, [1, 1], 1, [0, 0])?;
        let bd = self.basic(&format!("{n}.branch3x3dbl_2"), bd, 96, [3, 3], 1, [1, 1])?;
        let bd = self.basic(&format!("{n}.branch3x3dbl_3"), bd, 96, [3, 3], 2, [0, 0])?;
        let bp = self.op(&format!("{n}.max_pool2d"), max_pool(3, 2), &[x])?;
        self.concat(n, &[b3, bd, bp])
    }

    fn inception_c(&mut self, n: &str, x: ValueId, c7: usize) -> Result<ValueId, GraphError> {
        let b1 = self.basic(&format!("{n}.branch1x1"), x, 192, [1, 1], 1, [0, 0])?;
        let b7 = self.basic(&format!("{n}.branch7x7_1"), x, c7, [1, 1], 1, [0, 0])?;
        let b7 = self.basic(&format!("{n}.branch7x7_2"), b7, c7, [1, 7], 1, [0, 3])?;
        let b7 = self.basic(&format!("{n}.branch7x7_3"), b7, 192, [7, 1], 1, [3, 0])?;
        let bd = self.basic(&format!("{n}.branch7x7dbl_1"), x, c7, [1, 1], 1, [0, 0])?;
        let bd = self.basic(&format!("{n}.branch7x7dbl_2"), bd, c7, [7, 1], 1, [3, 0])?;
        let bd = self.basic(&format!("{n}.branch7x7dbl_3"), bd, c7, [1, 7], 1, [0, 3])?;
        let bd = self.basic(&format!("{n}.branch7x7dbl_4"), bd, c7, [7, 1], 1, [3, 0])?;
        let bd = self.basic(&format!("{n}.branch7x7dbl_5"), bd, 192, [1, 7], 1, [0, 3])?;
        let bp = self.op(&format!("{n}.avg_pool2d"), avg_pool(3, 1, 1), &[x])?;
        let bp = self.basic(&format!("{n}.branch_pool"), bp, 192, [1, 1], 1, [0, 0])?;
        self.concat(n, &[b1, b7, bd, bp])
    }

    fn inception_d(&mut self, n: &str, x: ValueId) -> Result<ValueId, GraphError> {
        let b3 = self.basic(&format!("{n}.branch3x3_1"), x, 192, [1, 1], 1, [0, 0])?;
        let b3 = self.basic(&format!("{n}.branch3x3_2"), b3, 320, [3, 3], 2, [0, 0])?;
        let b7 = self.basic(&format!("{n}.branch7x7x3_1"), x, 192, [1, 1], 1, [0, 0])?;
        let b7 = self.basic(&format!("{n}.branch7x7x3_2"), b7, 192, [1, 7], 1, [0, 3])?;
        let b7 = self.basic(&format!("{n}.branch7x7x3_3"), b7, 192, [7, 1], 1, [3, 0])?;
        let b7 = self.basic(&format!("{n}.branch7x7x3_4"), b7, 192, [3, 3], 2, [0, 0])?;
        let bp = self.op(&format!("{n}.max_pool2d"), max_pool(3, 2), &[x])?;
        self.concat(n, &[b3, b7, bp])
    }

    fn inception_e(&mut self, n: &str, x: ValueId) -> Result<ValueId, GraphError> {
        let b1 = self.basic(&format!("{n}.branch1x1"), x, 320, [1, 1], 1, [0, 0])?;
        let b3 = self.basic(&format!("{n}.branch3x3_1"), x, 384, [1, 1], 1, [0, 0])?;
        let b3a = self.basic(&format!("{n}.branch3x3_2a"), b3, 384, [1, 3], 1, [0, 1])?;
        let b3b = self.basic(&format!("{n}.branch3x3_2b"), b3, 384, [3, 1], 1, [1, 0])?;
        let b3 = self.concat(&format!("{n}.branch3x3"), &[b3a, b3b])?;
        let bd = self.basic(&format!("{n}.branch3x3dbl_1"), x, 448, [1, 1], 1, [0, 0])?;
        let bd = self.basic(&format!("{n}.branch3x3dbl_2"), bd, 384, [3, 3], 1, [1, 1])?;
        let bda = self.basic(&format!("{n}.branch3x3dbl_3a"), bd, 384, [1, 3], 1, [0, 1])?;
        let bdb = self.basic(&format!("{n}.branch3x3dbl_3b"), bd, 384, [3, 1], 1, [1, 0])?;
        let bd = self.concat(&format!("{n}.branch3x3dbl"), &[bda, bdb])?;
        let bp = self.op(&format!("{n}.avg_pool2d"), avg_pool(3, 1, 1), &[x])?;
        let bp = self.basic(&format!("{n}.branch_pool"), bp, 192, [1, 1], 1, [0, 0])?;
        self.concat(n, &[b1, b3, bd, bp])
    }

    /// torchvision's `InceptionAux`, applied to Mixed_6e's output.
    fn aux_head(&mut self, x: ValueId, num_classes: usize) -> Result<ValueId, GraphError> {
        let n = "AuxLogits";
        let y = self.op(&format!("{n}.avg_pool2d"), avg_pool(5, 3, 0), &[x])?;
        let y = self.basic(&format!("{n}.conv0"), y, 128, [1, 1], 1, [0, 0])?;
        let y = self.basic(&format!("{n}.conv1"), y, 768, [5, 5], 1, [0, 0])?;
        let pool = Op::AdaptiveAvgPool2d(AdaptiveAvgPool2d { output: [1, 1] });
        let y = self.op(&format!("{n}.adaptive_avg_pool2d"), pool, &[y])?;
        let y = self.op(
            &format!("{n}.flatten"),
            Op::Flatten(Flatten { start_dim: 1 }),
            &[y],
        )?;
        self.linear(&format!("{n}.fc"), y, num_classes)
    }

    /// Declares the aux head's parameters without its nodes, by building the
    /// head on a scratch graph at the size torchvision designed it for.
    fn declare_aux_params(&mut self, x: ValueId, num_classes: usize) -> Result<(), GraphError> {
        let channels = self.channels(x);
        let mut scratch = Builder {
            b: GraphBuilder::new("aux_scratch"),
            widths: self.widths,
        };
        let ty = ValueType::new(
            DType::F32,
            vec![
                Dim::Batch,
                Dim::Fixed(channels),
                Dim::Fixed(17),
                Dim::Fixed(17),
            ],
        );
        let input = scratch.b.input("Mixed_6e", ty)?;
        scratch.aux_head(input, num_classes)?;
        for p in scratch.b.finish().params {
            self.b.extra_param(&p.name, p.kind, p.dtype, p.shape)?;
        }
        Ok(())
    }
}
