//! Max, average and adaptive average pooling over one image, with PyTorch's
//! window and divisor rules.

use incept_ir::op::PoolKind;

use rayon::prelude::*;

use crate::float::Float;

/// Geometry of a pooling op, fixed at plan time.
#[derive(Clone, Debug)]
pub struct PoolGeom {
    /// Max or average.
    pub kind: PoolKind,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Window.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Divide by the whole window, padding included.
    pub count_include_pad: bool,
}

/// A window along one axis: the clipped input range `[lo, hi)` and the
/// window's extent clipped to the padded input (PyTorch's divisor).
#[derive(Clone, Copy, Debug)]
struct Span {
    lo: usize,
    hi: usize,
    padded: usize,
}

/// PyTorch's windows along an axis of `size` inputs.
fn spans(
    size: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
) -> Vec<Span> {
    (0..out)
        .map(|o| {
            let start = (o * stride) as isize - pad_begin as isize;
            let end_padded = (start + kernel as isize).min((size + pad_end) as isize);
            let lo = start.max(0) as usize;
            let hi = (end_padded.min(size as isize)).max(lo as isize) as usize;
            Span {
                lo,
                hi,
                padded: (end_padded - start).max(0) as usize,
            }
        })
        .collect()
}

/// Pools one image `[C, H, W]` into `[C, OH, OW]`.
///
/// Max and sum are separable: a pass down the columns (over whole contiguous
/// rows, which vectorises), then one along each output row, so a k×k window
/// costs about 2k operations per output, not k². Sums are kept in f64 and
/// rounded once, so pooling adds no error of its own. A channel holding a NaN
/// is pooled again window by window, so NaN propagates as in PyTorch.
pub fn pool2d<T: Float>(g: &PoolGeom, input: &[T], out: &mut [T], threads: usize) {
    let xs = spans(g.w, g.ow, g.kernel[1], g.stride[1], g.pads[1], g.pads[3]);
    let ys = spans(g.h, g.oh, g.kernel[0], g.stride[0], g.pads[0], g.pads[2]);
    let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
    if threads > 1 && g.c >= 2 * threads && plane_in * g.c >= 1 << 14 {
        // Channels are independent: split them across threads.
        let per = g.c.div_ceil(threads * 4);
        input
            .par_chunks(per * plane_in)
            .zip(out.par_chunks_mut(per * plane_out))
            .for_each(|(i, o)| pool_channels(g, &xs, &ys, i.len() / plane_in, i, o));
    } else {
        pool_channels(g, &xs, &ys, g.c, input, out);
    }
}

fn pool_channels<T: Float>(
    g: &PoolGeom,
    xs: &[Span],
    ys: &[Span],
    channels: usize,
    input: &[T],
    out: &mut [T],
) {
    match g.kind {
        PoolKind::Max => {
            let (a, b) = interior(g, xs);
            let sw = g.stride[1];
            let mut cols = vec![T::NEG_INFINITY; g.w];
            for c in 0..channels {
                let plane = &input[c * g.h * g.w..(c + 1) * g.h * g.w];
                let dst = &mut out[c * g.oh * g.ow..(c + 1) * g.oh * g.ow];
                let has_nan = plane.iter().fold(false, |a, v| a | v.is_nan());
                for (line, sy) in dst.chunks_mut(g.ow).zip(ys) {
                    cols.fill(T::NEG_INFINITY);
                    for y in sy.lo..sy.hi {
                        for (m, &v) in cols.iter_mut().zip(&plane[y * g.w..(y + 1) * g.w]) {
                            *m = if v > *m { v } else { *m };
                        }
                    }
                    for (d, sx) in line.iter_mut().zip(xs).take(a) {
                        *d = max_of(&cols[sx.lo..sx.hi]);
                    }
                    if b > a {
                        // Whole 3-wide windows: `max_of`'s comparisons, unrolled.
                        let c = &cols[xs[a].lo..xs[b - 1].lo + 3];
                        for (t, d) in line[a..b].iter_mut().enumerate() {
                            let w = &c[t * sw..t * sw + 3];
                            let m = w[0];
                            let m = if w[1] > m { w[1] } else { m };
                            *d = if w[2] > m { w[2] } else { m };
                        }
                    }
                    for (d, sx) in line.iter_mut().zip(xs).skip(b.max(a)) {
                        *d = max_of(&cols[sx.lo..sx.hi]);
                    }
                }
                if has_nan {
                    for (oy, sy) in ys.iter().enumerate() {
                        for (ox, sx) in xs.iter().enumerate() {
                            let mut m = T::NEG_INFINITY;
                            for y in sy.lo..sy.hi {
                                let row = &plane[y * g.w..(y + 1) * g.w];
                                m = max_nan(m, max_of_nan(&row[sx.lo..sx.hi]));
                            }
                            dst[oy * g.ow + ox] = m;
                        }
                    }
                }
            }
        }
        PoolKind::Avg => {
            let mut cols = vec![0f64; g.w];
            // 1/count per output, in f64: one multiply instead of a divide, and
            // the f64 rounding is far below what the f32 result keeps.
            let recip: Vec<f64> = ys
                .iter()
                .flat_map(|sy| {
                    xs.iter().map(move |sx| {
                        let count = if g.count_include_pad {
                            sy.padded * sx.padded
                        } else {
                            (sy.hi - sy.lo) * (sx.hi - sx.lo)
                        };
                        1.0 / count.max(1) as f64
                    })
                })
                .collect();
            // The interior of a stride-1 pooling: summed vectorised below.
            let interior = if g.stride[1] == 1 {
                interior(g, xs)
            } else {
                (g.ow, g.ow)
            };
            for c in 0..channels {
                let plane = &input[c * g.h * g.w..(c + 1) * g.h * g.w];
                let dst = &mut out[c * g.oh * g.ow..(c + 1) * g.oh * g.ow];
                for ((line, sy), r) in dst.chunks_mut(g.ow).zip(ys).zip(recip.chunks(g.ow)) {
                    cols.fill(0.0);
                    for y in sy.lo..sy.hi {
                        for (a, v) in cols.iter_mut().zip(&plane[y * g.w..(y + 1) * g.w]) {
                            *a += v.to_f64();
                        }
                    }
                    let (a, b) = interior;
                    for ((d, sx), r) in line.iter_mut().zip(xs).zip(r).take(a) {
                        let sum: f64 = cols[sx.lo..sx.hi].iter().sum();
                        *d = T::from_f64(sum * r);
                    }
                    if b > a {
                        // Three shifted slices instead of a window per output: vectorises.
                        let lo = xs[a].lo;
                        let (c0, c1, c2) = (&cols[lo..], &cols[lo + 1..], &cols[lo + 2..]);
                        for ((((d, x0), x1), x2), r) in
                            line[a..b].iter_mut().zip(c0).zip(c1).zip(c2).zip(&r[a..b])
                        {
                            *d = T::from_f64((x0 + x1 + x2) * r);
                        }
                    }
                    for ((d, sx), r) in line.iter_mut().zip(xs).zip(r).skip(b.max(a)) {
                        let sum: f64 = cols[sx.lo..sx.hi].iter().sum();
                        *d = T::from_f64(sum * r);
                    }
                }
            }
        }
    }
}

/// Outputs `a..b` whose windows are three whole input columns, `stride`
/// apart (the interior of a 3-wide pooling); `(ow, ow)` for other windows.
fn interior(g: &PoolGeom, xs: &[Span]) -> (usize, usize) {
    if g.kernel[1] != 3 {
        return (g.ow, g.ow);
    }
    let a = (0..g.ow)
        .find(|&ox| xs[ox].hi - xs[ox].lo == 3)
        .unwrap_or(g.ow);
    let b = (a..g.ow)
        .find(|&ox| xs[ox].hi - xs[ox].lo != 3 || xs[ox].lo != xs[a].lo + (ox - a) * g.stride[1])
        .unwrap_or(g.ow);
    (a, b)
}

fn max_nan<T: Float>(a: T, b: T) -> T {
    if b > a || b.is_nan() { b } else { a }
}

fn max_of_nan<T: Float>(v: &[T]) -> T {
    v.iter().fold(T::NEG_INFINITY, |m, &e| max_nan(m, e))
}

/// The maximum of a window known to hold no NaN.
fn max_of<T: Float>(v: &[T]) -> T {
    v.iter()
        .fold(T::NEG_INFINITY, |m, &e| if e > m { e } else { m })
}

/// Adaptive average pooling of one image `[C, H, W]` to `[C, OH, OW]`:
/// bin `i` covers `floor(i·H/OH) .. ceil((i+1)·H/OH)`.
pub fn adaptive_avg_pool2d<T: Float>(
    c: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    input: &[T],
    out: &mut [T],
) {
    for ch in 0..c {
        let plane = &input[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            let (y0, y1) = (oy * h / oh, ((oy + 1) * h).div_ceil(oh));
            for ox in 0..ow {
                let (x0, x1) = (ox * w / ow, ((ox + 1) * w).div_ceil(ow));
                let mut s = 0f64;
                for y in y0..y1 {
                    for x in x0..x1 {
                        s += plane[y * w + x].to_f64();
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)).max(1);
                out[(ch * oh + oy) * ow + ox] = T::from_f64(s / n as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's definition, window by window.
    fn naive(g: &PoolGeom, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; g.c * g.oh * g.ow];
        for c in 0..g.c {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let y0 = (oy * g.stride[0]) as isize - g.pads[0] as isize;
                    let x0 = (ox * g.stride[1]) as isize - g.pads[1] as isize;
                    let y1p = (y0 + g.kernel[0] as isize).min((g.h + g.pads[2]) as isize);
                    let x1p = (x0 + g.kernel[1] as isize).min((g.w + g.pads[3]) as isize);
                    let (mut s, mut m, mut n) = (0.0, f64::NEG_INFINITY, 0);
                    for y in y0.max(0)..y1p.min(g.h as isize) {
                        for xx in x0.max(0)..x1p.min(g.w as isize) {
                            let v = x[(c * g.h + y as usize) * g.w + xx as usize];
                            s += v;
                            m = if v > m || v.is_nan() { v } else { m };
                            n += 1;
                        }
                    }
                    let div = if g.count_include_pad {
                        (y1p - y0) * (x1p - x0)
                    } else {
                        n
                    };
                    out[(c * g.oh + oy) * g.ow + ox] = match g.kind {
                        PoolKind::Max => m,
                        PoolKind::Avg => s / div as f64,
                    };
                }
            }
        }
        out
    }

    #[test]
    fn separable_pooling_matches_the_definition() {
        let cases = [
            (
                PoolKind::Avg,
                [7, 7],
                [3, 3],
                [1, 1],
                [1, 1, 1, 1],
                true,
                [7, 7],
            ),
            (
                PoolKind::Avg,
                [7, 7],
                [3, 3],
                [1, 1],
                [1, 1, 1, 1],
                false,
                [7, 7],
            ),
            (PoolKind::Max, [9, 8], [3, 3], [2, 2], [0; 4], true, [4, 3]),
            (
                PoolKind::Avg,
                [17, 17],
                [5, 5],
                [3, 3],
                [0; 4],
                true,
                [5, 5],
            ),
            // ceil_mode-like window running past the padded input.
            (
                PoolKind::Avg,
                [6, 6],
                [3, 3],
                [2, 2],
                [1, 1, 1, 1],
                true,
                [3, 3],
            ),
            (
                PoolKind::Max,
                [6, 6],
                [3, 3],
                [2, 2],
                [1, 1, 1, 1],
                true,
                [4, 4],
            ),
        ];
        for (kind, [h, w], kernel, stride, pads, count_include_pad, [oh, ow]) in cases {
            let g = PoolGeom {
                kind,
                c: 2,
                h,
                w,
                oh,
                ow,
                kernel,
                stride,
                pads,
                count_include_pad,
            };
            let x: Vec<f64> = (0..2 * h * w)
                .map(|i| ((i * 37) % 19) as f64 - 9.0)
                .collect();
            let mut out = vec![0.0; 2 * oh * ow];
            pool2d(&g, &x, &mut out, 1);
            let want = naive(&g, &x);
            for (a, b) in out.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "{g:?}: {a} vs {b}"
                );
            }
        }
    }
}
