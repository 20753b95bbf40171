//! The closed set of operations a graph can hold, one attribute struct each.
//!
//! Every pass, kernel and writer matches on [`Op`] exhaustively, so adding a
//! variant is a compile error everywhere it must be handled.

use std::fmt;

/// Padding of a 2-D window op, in ONNX order: `[top, left, bottom, right]`.
pub type Pads = [usize; 4];

/// Symmetric padding `[h, w]` as [`Pads`].
pub const fn sym_pads(h: usize, w: usize) -> Pads {
    [h, w, h, w]
}

/// 2-D convolution over NCHW. Parameters: `weight` `[out, in/groups, kh, kw]`,
/// then `bias` `[out]` when [`Conv2d::bias`] is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Zero padding.
    pub pads: Pads,
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Groups (1 for every convolution in Inception V3).
    pub groups: usize,
    /// Whether a bias parameter follows the weight.
    pub bias: bool,
}

/// Inference-mode batch normalisation over channel axis 1:
/// `y = (x − mean) / sqrt(var + eps) · weight + bias`.
/// Parameters: `weight`, `bias`, `running_mean`, `running_var`, each `[channels]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Channels.
    pub channels: usize,
    /// The model's own epsilon (0.001 in Inception V3, not PyTorch's 1e-5 default).
    pub eps: f64,
}

/// Which reduction a [`Pool2d`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window; padding never wins.
    Max,
    /// Mean over the window.
    Avg,
}

/// 2-D max or average pooling with PyTorch's output-size rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool2d {
    /// Max or average.
    pub kind: PoolKind,
    /// Window `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Implicit padding (−∞ for max, zeros for average).
    pub pads: Pads,
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
    /// Average pooling divides by the full window including padding
    /// (PyTorch's default, used by Inception's branch pools).
    pub count_include_pad: bool,
}

/// Adaptive average pooling to a fixed output size (global pooling when `[1, 1]`).
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveAvgPool2d {
    /// Output `[h, w]`.
    pub output: [usize; 2],
}

/// Concatenation of all inputs along one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Concat {
    /// The axis (1 = channels).
    pub axis: usize,
}

/// Flattens all dimensions from `start_dim` on into one (`torch.flatten(x, 1)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Flatten {
    /// First flattened dimension.
    pub start_dim: usize,
}

/// Reshape with ONNX semantics: `0` copies the input dimension, `-1` is inferred.
#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    /// The target shape.
    pub shape: Vec<i64>,
}

/// Fully connected layer `y = x Wᵀ + b` over the last axis.
/// Parameters: `weight` `[out, in]`, then `bias` `[out]` when set.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether a bias parameter follows the weight.
    pub bias: bool,
}

/// Dropout: the identity at inference; kept so graphs mirror their source.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    /// Drop probability during training.
    pub p: f64,
}

/// Per-channel affine `y_c = x_c · scale_c + shift_c` over axis 1, with the
/// constants stored in the op (the form of Inception's `transform_input`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelAffine {
    /// One scale per channel.
    pub scale: Vec<f64>,
    /// One shift per channel.
    pub shift: Vec<f64>,
}

/// The operations of the IR.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// 2-D convolution.
    Conv2d(Conv2d),
    /// Inference-mode batch normalisation.
    BatchNorm(BatchNorm),
    /// `max(x, 0)`.
    Relu,
    /// Max or average pooling.
    Pool2d(Pool2d),
    /// Adaptive average pooling.
    AdaptiveAvgPool2d(AdaptiveAvgPool2d),
    /// Concatenation.
    Concat(Concat),
    /// Flatten trailing dimensions.
    Flatten(Flatten),
    /// Reshape.
    Reshape(Reshape),
    /// Fully connected layer.
    Linear(Linear),
    /// Dropout (identity at inference).
    Dropout(Dropout),
    /// Per-channel affine with constant coefficients.
    ChannelAffine(ChannelAffine),
}

/// Whether a parameter is learned or a buffer (PyTorch's distinction, kept for
/// parameter counts: torchvision's published counts exclude buffers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// A trainable parameter (`nn.Parameter`).
    Trainable,
    /// A buffer (running statistics, `num_batches_tracked`).
    Buffer,
}

impl Op {
    /// The op's name as reports and dumps show it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "Conv2d",
            Op::BatchNorm(_) => "BatchNorm",
            Op::Relu => "Relu",
            Op::Pool2d(p) => match p.kind {
                PoolKind::Max => "MaxPool2d",
                PoolKind::Avg => "AvgPool2d",
            },
            Op::AdaptiveAvgPool2d(_) => "AdaptiveAvgPool2d",
            Op::Concat(_) => "Concat",
            Op::Flatten(_) => "Flatten",
            Op::Reshape(_) => "Reshape",
            Op::Linear(_) => "Linear",
            Op::Dropout(_) => "Dropout",
            Op::ChannelAffine(_) => "ChannelAffine",
        }
    }

    /// The parameters the op takes, in order: their role (the state-dict
    /// suffix) and kind.
    pub fn param_roles(&self) -> Vec<(&'static str, ParamKind)> {
        use ParamKind::{Buffer, Trainable};
        match self {
            Op::Conv2d(c) if c.bias => vec![("weight", Trainable), ("bias", Trainable)],
            Op::Linear(l) if l.bias => vec![("weight", Trainable), ("bias", Trainable)],
            Op::Conv2d(_) | Op::Linear(_) => vec![("weight", Trainable)],
            Op::BatchNorm(_) => vec![
                ("weight", Trainable),
                ("bias", Trainable),
                ("running_mean", Buffer),
                ("running_var", Buffer),
            ],
            Op::Relu
            | Op::Pool2d(_)
            | Op::AdaptiveAvgPool2d(_)
            | Op::Concat(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Dropout(_)
            | Op::ChannelAffine(_) => vec![],
        }
    }

    /// The shapes the op's parameters must have, in [`Op::param_roles`] order.
    pub fn param_shapes(&self) -> Vec<Vec<usize>> {
        match self {
            Op::Conv2d(c) => {
                let mut v = vec![vec![
                    c.out_channels,
                    c.in_channels / c.groups.max(1),
                    c.kernel[0],
                    c.kernel[1],
                ]];
                if c.bias {
                    v.push(vec![c.out_channels]);
                }
                v
            }
            Op::Linear(l) => {
                let mut v = vec![vec![l.out_features, l.in_features]];
                if l.bias {
                    v.push(vec![l.out_features]);
                }
                v
            }
            Op::BatchNorm(b) => vec![vec![b.channels]; 4],
            Op::Relu
            | Op::Pool2d(_)
            | Op::AdaptiveAvgPool2d(_)
            | Op::Concat(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Dropout(_)
            | Op::ChannelAffine(_) => vec![],
        }
    }

    /// How many activation inputs the op takes (`None`: one or more).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Concat(_) => None,
            _ => Some(1),
        }
    }
}

fn pair(v: [usize; 2]) -> String {
    if v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("{}x{}", v[0], v[1])
    }
}

fn pads(p: Pads) -> String {
    if p[0] == p[2] && p[1] == p[3] {
        pair([p[0], p[1]])
    } else {
        format!("{},{},{},{}", p[0], p[1], p[2], p[3])
    }
}

/// Attributes in a compact, stable form for dumps and reports (`k=3 s=2 p=0`).
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Conv2d(c) => {
                write!(
                    f,
                    "{}->{} k={} s={} p={}",
                    c.in_channels,
                    c.out_channels,
                    pair(c.kernel),
                    pair(c.stride),
                    pads(c.pads)
                )?;
                if c.dilation != [1, 1] {
                    write!(f, " d={}", pair(c.dilation))?;
                }
                if c.groups != 1 {
                    write!(f, " g={}", c.groups)?;
                }
                if c.bias {
                    f.write_str(" bias")?;
                }
                Ok(())
            }
            Op::BatchNorm(b) => write!(f, "{} eps={}", b.channels, b.eps),
            Op::Relu => Ok(()),
            Op::Pool2d(p) => {
                write!(
                    f,
                    "k={} s={} p={}",
                    pair(p.kernel),
                    pair(p.stride),
                    pads(p.pads)
                )?;
                if p.ceil_mode {
                    f.write_str(" ceil")?;
                }
                if p.kind == PoolKind::Avg && !p.count_include_pad {
                    f.write_str(" exclude_pad")?;
                }
                Ok(())
            }
            Op::AdaptiveAvgPool2d(a) => write!(f, "out={}", pair(a.output)),
            Op::Concat(c) => write!(f, "axis={}", c.axis),
            Op::Flatten(x) => write!(f, "start_dim={}", x.start_dim),
            Op::Reshape(r) => write!(f, "shape={:?}", r.shape),
            Op::Linear(l) => {
                write!(f, "{}->{}", l.in_features, l.out_features)?;
                if l.bias {
                    f.write_str(" bias")?;
                }
                Ok(())
            }
            Op::Dropout(d) => write!(f, "p={}", d.p),
            Op::ChannelAffine(a) => write!(f, "scale={:?} shift={:?}", a.scale, a.shift),
        }
    }
}
