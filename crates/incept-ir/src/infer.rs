//! Shape inference: the output type of each op from its input and parameter shapes.

use crate::error::GraphError;
use crate::op::{Op, Pads, Pool2d};
use crate::shape::{Dim, Shape, ValueType, fmt_shape};

/// The output type of `op` at node `node`, given its inputs' types and its
/// parameters' (name, shape) in [`Op::param_roles`] order.
///
/// Checks arity, ranks, channel counts and parameter shapes; every error
/// names the node and the shapes involved.
pub fn infer_output(
    node: &str,
    op: &Op,
    inputs: &[&ValueType],
    params: &[(&str, &[usize])],
) -> Result<ValueType, GraphError> {
    let name = op.name();
    match op.arity() {
        Some(n) if inputs.len() != n => {
            return Err(GraphError::Arity {
                node: node.into(),
                op: name,
                expected: n,
                found: inputs.len(),
            });
        }
        None if inputs.is_empty() => {
            return Err(GraphError::Arity {
                node: node.into(),
                op: name,
                expected: 1,
                found: 0,
            });
        }
        _ => {}
    }
    check_params(node, op, params)?;
    let x = inputs[0];
    let ctx = Ctx { node, op: name, x };
    let shape: Shape = match op {
        Op::Conv2d(c) => {
            ctx.rank(4)?;
            ctx.channels(c.in_channels)?;
            if c.groups == 0 || c.in_channels % c.groups != 0 || c.out_channels % c.groups != 0 {
                return Err(ctx.attr(format!(
                    "groups={} must divide {} input and {} output channels",
                    c.groups, c.in_channels, c.out_channels
                )));
            }
            let (h, w) = ctx.spatial()?;
            let oh = ctx.window(
                h,
                c.kernel[0],
                c.stride[0],
                c.pads[0],
                c.pads[2],
                c.dilation[0],
                false,
                "height",
            )?;
            let ow = ctx.window(
                w,
                c.kernel[1],
                c.stride[1],
                c.pads[1],
                c.pads[3],
                c.dilation[1],
                false,
                "width",
            )?;
            vec![
                x.shape[0],
                Dim::Fixed(c.out_channels),
                Dim::Fixed(oh),
                Dim::Fixed(ow),
            ]
        }
        Op::BatchNorm(b) => {
            ctx.min_rank(2)?;
            ctx.channels(b.channels)?;
            if !(b.eps.is_finite() && b.eps >= 0.0) {
                return Err(ctx.attr(format!("eps={} must be finite and non-negative", b.eps)));
            }
            x.shape.clone()
        }
        Op::Relu | Op::Dropout(_) => x.shape.clone(),
        Op::ChannelAffine(a) => {
            ctx.min_rank(2)?;
            if a.scale.len() != a.shift.len() {
                return Err(ctx.attr(format!(
                    "{} scales but {} shifts",
                    a.scale.len(),
                    a.shift.len()
                )));
            }
            ctx.channels(a.scale.len())?;
            x.shape.clone()
        }
        Op::Pool2d(p) => {
            ctx.rank(4)?;
            let (h, w) = ctx.spatial()?;
            check_pool_pads(&ctx, p)?;
            let oh = ctx.window(
                h,
                p.kernel[0],
                p.stride[0],
                p.pads[0],
                p.pads[2],
                1,
                p.ceil_mode,
                "height",
            )?;
            let ow = ctx.window(
                w,
                p.kernel[1],
                p.stride[1],
                p.pads[1],
                p.pads[3],
                1,
                p.ceil_mode,
                "width",
            )?;
            vec![x.shape[0], x.shape[1], Dim::Fixed(oh), Dim::Fixed(ow)]
        }
        Op::AdaptiveAvgPool2d(a) => {
            ctx.rank(4)?;
            let (h, w) = ctx.spatial()?;
            if a.output[0] == 0 || a.output[1] == 0 || h == 0 || w == 0 {
                return Err(GraphError::EmptyOutput {
                    node: node.into(),
                    op: name,
                    detail: format!("input {h}x{w} to output {}x{}", a.output[0], a.output[1]),
                });
            }
            vec![
                x.shape[0],
                x.shape[1],
                Dim::Fixed(a.output[0]),
                Dim::Fixed(a.output[1]),
            ]
        }
        Op::Concat(c) => concat(node, c.axis, inputs)?,
        Op::Flatten(f) => {
            if f.start_dim >= x.shape.len() {
                return Err(ctx.attr(format!(
                    "start_dim={} is past the last axis of {}",
                    f.start_dim,
                    fmt_shape(&x.shape)
                )));
            }
            let mut out: Shape = x.shape[..f.start_dim].to_vec();
            let mut n = 1usize;
            for (axis, d) in x.shape.iter().enumerate().skip(f.start_dim) {
                n = n
                    .checked_mul(ctx.fixed(axis, *d)?)
                    .ok_or_else(|| ctx.attr("element count overflows".into()))?;
            }
            out.push(Dim::Fixed(n));
            out
        }
        Op::Reshape(r) => reshape(&ctx, &r.shape)?,
        Op::Linear(l) => {
            ctx.min_rank(2)?;
            let last = x.shape.len() - 1;
            let f = ctx.fixed(last, x.shape[last])?;
            if f != l.in_features {
                return Err(GraphError::Channels {
                    node: node.into(),
                    op: name,
                    expected: l.in_features,
                    found: f,
                    shape: fmt_shape(&x.shape),
                });
            }
            let mut out = x.shape.clone();
            out[last] = Dim::Fixed(l.out_features);
            out
        }
    };
    Ok(ValueType::new(x.dtype, shape))
}

fn check_params(node: &str, op: &Op, params: &[(&str, &[usize])]) -> Result<(), GraphError> {
    let expected = op.param_shapes();
    if expected.len() != params.len() {
        return Err(GraphError::ParamCount {
            node: node.into(),
            op: op.name(),
            expected: expected.len(),
            found: params.len(),
        });
    }
    for (want, (pname, have)) in expected.iter().zip(params) {
        if want.as_slice() != *have {
            return Err(GraphError::ParamShape {
                node: node.into(),
                param: (*pname).to_string(),
                expected: want.clone(),
                found: have.to_vec(),
            });
        }
    }
    Ok(())
}

fn check_pool_pads(ctx: &Ctx<'_>, p: &Pool2d) -> Result<(), GraphError> {
    // PyTorch requires pad <= kernel/2; beyond that a window could lie wholly in padding.
    let bad = |pads: Pads, k: [usize; 2]| {
        pads[0] > k[0] / 2 || pads[2] > k[0] / 2 || pads[1] > k[1] / 2 || pads[3] > k[1] / 2
    };
    if bad(p.pads, p.kernel) {
        return Err(ctx.attr(format!(
            "padding {:?} must be at most half the {}x{} window",
            p.pads, p.kernel[0], p.kernel[1]
        )));
    }
    Ok(())
}

fn concat(node: &str, axis: usize, inputs: &[&ValueType]) -> Result<Shape, GraphError> {
    let shapes = || {
        inputs
            .iter()
            .map(|t| fmt_shape(&t.shape))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let first = &inputs[0].shape;
    if axis >= first.len() {
        return Err(GraphError::Attribute {
            node: node.into(),
            op: "Concat",
            detail: format!("axis {axis} is past the last axis of {}", fmt_shape(first)),
        });
    }
    let mut total = 0usize;
    for t in inputs {
        let same_rest = t.shape.len() == first.len()
            && t.shape
                .iter()
                .zip(first)
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        let along = t.shape.get(axis).and_then(|d| d.fixed());
        match (same_rest, along) {
            (true, Some(n)) => total += n,
            _ => {
                return Err(GraphError::ConcatMismatch {
                    node: node.into(),
                    axis,
                    shapes: shapes(),
                });
            }
        }
    }
    let mut out = first.clone();
    out[axis] = Dim::Fixed(total);
    Ok(out)
}

fn reshape(ctx: &Ctx<'_>, target: &[i64]) -> Result<Shape, GraphError> {
    let x = &ctx.x.shape;
    let mut out: Shape = Vec::with_capacity(target.len());
    let mut infer_at = None;
    let mut copied_batch = false;
    for (i, &t) in target.iter().enumerate() {
        match t {
            0 => {
                let d = *x.get(i).ok_or_else(|| {
                    ctx.attr(format!("0 at axis {i} copies a dimension the input lacks"))
                })?;
                copied_batch |= d == Dim::Batch;
                out.push(d);
            }
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(Dim::Fixed(1));
            }
            t if t > 0 => out.push(Dim::Fixed(t as usize)),
            _ => return Err(ctx.attr(format!("invalid target shape {target:?}"))),
        }
    }
    let has_batch = x.contains(&Dim::Batch);
    let in_fixed: usize = x.iter().filter_map(|d| d.fixed()).product();
    let out_fixed: usize = out.iter().filter_map(|d| d.fixed()).product();
    let mismatch = || ctx.attr(format!("cannot reshape {} to {target:?}", fmt_shape(x)));
    match infer_at {
        Some(i) if has_batch && !copied_batch => {
            if in_fixed != out_fixed {
                return Err(mismatch());
            }
            out[i] = Dim::Batch;
        }
        Some(i) => {
            if out_fixed == 0 || !in_fixed.is_multiple_of(out_fixed) {
                return Err(mismatch());
            }
            out[i] = Dim::Fixed(in_fixed / out_fixed);
        }
        None => {
            if in_fixed != out_fixed || has_batch != copied_batch {
                return Err(mismatch());
            }
        }
    }
    Ok(out)
}

struct Ctx<'a> {
    node: &'a str,
    op: &'static str,
    x: &'a ValueType,
}

impl Ctx<'_> {
    fn attr(&self, detail: String) -> GraphError {
        GraphError::Attribute {
            node: self.node.into(),
            op: self.op,
            detail,
        }
    }

    fn rank(&self, r: usize) -> Result<(), GraphError> {
        if self.x.shape.len() != r {
            return Err(GraphError::Rank {
                node: self.node.into(),
                op: self.op,
                expected: r,
                found: fmt_shape(&self.x.shape),
            });
        }
        Ok(())
    }

    fn min_rank(&self, r: usize) -> Result<(), GraphError> {
        if self.x.shape.len() < r {
            return self.rank(r);
        }
        Ok(())
    }

    fn fixed(&self, axis: usize, d: Dim) -> Result<usize, GraphError> {
        d.fixed().ok_or_else(|| GraphError::SymbolicDim {
            node: self.node.into(),
            op: self.op,
            axis,
            shape: fmt_shape(&self.x.shape),
        })
    }

    fn channels(&self, expected: usize) -> Result<(), GraphError> {
        let c = self.fixed(1, self.x.shape[1])?;
        if c != expected {
            return Err(GraphError::Channels {
                node: self.node.into(),
                op: self.op,
                expected,
                found: c,
                shape: fmt_shape(&self.x.shape),
            });
        }
        Ok(())
    }

    fn spatial(&self) -> Result<(usize, usize), GraphError> {
        Ok((
            self.fixed(2, self.x.shape[2])?,
            self.fixed(3, self.x.shape[3])?,
        ))
    }

    /// PyTorch's output size for a sliding window along one axis.
    #[allow(clippy::too_many_arguments)]
    fn window(
        &self,
        size: usize,
        kernel: usize,
        stride: usize,
        pad_begin: usize,
        pad_end: usize,
        dilation: usize,
        ceil: bool,
        axis: &str,
    ) -> Result<usize, GraphError> {
        if kernel == 0 || stride == 0 || dilation == 0 {
            return Err(self.attr(format!(
                "kernel {kernel}, stride {stride} and dilation {dilation} along the {axis} must be positive"
            )));
        }
        let padded = size + pad_begin + pad_end;
        let span = dilation * (kernel - 1) + 1;
        if padded < span {
            return Err(GraphError::EmptyOutput {
                node: self.node.into(),
                op: self.op,
                detail: format!(
                    "input {} is {size} along the {axis}{}, smaller than the window of {span}",
                    fmt_shape(&self.x.shape),
                    if pad_begin + pad_end > 0 {
                        format!(" ({padded} with padding)")
                    } else {
                        String::new()
                    }
                ),
            });
        }
        let room = padded - span;
        let mut out = if ceil {
            room.div_ceil(stride)
        } else {
            room / stride
        } + 1;
        // PyTorch: with ceil_mode the last window must start inside the input or left padding.
        if ceil && (out - 1) * stride >= size + pad_begin {
            out -= 1;
        }
        Ok(out)
    }
}
