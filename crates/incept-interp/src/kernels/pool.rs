//! Max, average and adaptive average pooling over one image, with PyTorch's
//! window and divisor rules.

use incept_ir::op::PoolKind;

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

/// Pools one image `[C, H, W]` into `[C, OH, OW]`.
pub fn pool2d<T: Float>(g: &PoolGeom, input: &[T], out: &mut [T]) {
    let (h, w) = (g.h as isize, g.w as isize);
    let (pt, pl) = (g.pads[0] as isize, g.pads[1] as isize);
    let (pb, pr) = (g.pads[2] as isize, g.pads[3] as isize);
    for c in 0..g.c {
        let plane = &input[c * g.h * g.w..(c + 1) * g.h * g.w];
        let dst = &mut out[c * g.oh * g.ow..(c + 1) * g.oh * g.ow];
        for oy in 0..g.oh {
            // PyTorch: the window is clipped to the padded input for the
            // divisor, then to the input itself for the sum.
            let y0 = (oy * g.stride[0]) as isize - pt;
            let y1p = (y0 + g.kernel[0] as isize).min(h + pb);
            let (y0c, y1c) = (y0.max(0), y1p.min(h));
            for ox in 0..g.ow {
                let x0 = (ox * g.stride[1]) as isize - pl;
                let x1p = (x0 + g.kernel[1] as isize).min(w + pr);
                let (x0c, x1c) = (x0.max(0), x1p.min(w));
                let v = match g.kind {
                    PoolKind::Max => {
                        let mut m = T::NEG_INFINITY;
                        for y in y0c..y1c {
                            let row = &plane[y as usize * g.w..];
                            for x in x0c..x1c {
                                let e = row[x as usize];
                                // NaN wins, as in PyTorch.
                                if e > m || e.is_nan() {
                                    m = e;
                                }
                            }
                        }
                        m
                    }
                    PoolKind::Avg => {
                        let mut s = T::ZERO;
                        for y in y0c..y1c {
                            let row = &plane[y as usize * g.w..];
                            for x in x0c..x1c {
                                s += row[x as usize];
                            }
                        }
                        let count = if g.count_include_pad {
                            (y1p - y0) * (x1p - x0)
                        } else {
                            (y1c - y0c) * (x1c - x0c)
                        };
                        s / T::from_f64(count.max(1) as f64)
                    }
                };
                dst[oy * g.ow + ox] = v;
            }
        }
    }
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
                let mut s = T::ZERO;
                for y in y0..y1 {
                    for x in x0..x1 {
                        s += plane[y * w + x];
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)).max(1);
                out[(ch * oh + oy) * ow + ox] = s / T::from_f64(n as f64);
            }
        }
    }
}
