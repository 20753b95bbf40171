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

#[cfg(test)]
impl PoolGeom {
    /// A 3x3 stride-2 max pooling without padding of `c` planes `h` by `w`
    /// (the stem's, in tests).
    pub(crate) fn max_3x3_s2(c: usize, h: usize, w: usize) -> PoolGeom {
        PoolGeom {
            kind: PoolKind::Max,
            c,
            h,
            w,
            oh: (h - 3) / 2 + 1,
            ow: (w - 3) / 2 + 1,
            kernel: [3, 3],
            stride: [2, 2],
            pads: [0; 4],
            count_include_pad: true,
        }
    }
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
/// costs about 2k operations per output, not k². A channel holding a NaN
/// is pooled again window by window, so NaN propagates as in PyTorch.
pub fn pool2d<T: Float>(g: &PoolGeom, input: &[T], out: &mut [T], threads: usize) {
    let xs = spans(g.w, g.ow, g.kernel[1], g.stride[1], g.pads[1], g.pads[3]);
    let ys = spans(g.h, g.oh, g.kernel[0], g.stride[0], g.pads[0], g.pads[2]);
    let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
    let threads = super::balance::threads(threads);
    if threads == 2 && g.c >= 2 && plane_in * g.c >= 1 << 14 {
        // Channels are independent: one part per thread, in proportion to
        // their speeds.
        let first = super::balance::first_share(g.c);
        let (ia, ib) = input[..g.c * plane_in].split_at(first * plane_in);
        let (oa, ob) = out[..g.c * plane_out].split_at_mut(first * plane_out);
        super::balance::join(
            (first, || pool_channels(g, &xs, &ys, first, ia, oa)),
            (g.c - first, || {
                pool_channels(g, &xs, &ys, g.c - first, ib, ob)
            }),
        );
    } else if threads > 1 && g.c >= 2 * threads && plane_in * g.c >= 1 << 14 {
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
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just detected.
        #[allow(unsafe_code)]
        unsafe {
            pool_channels_avx512(g, xs, ys, channels, input, out);
        }
        return;
    }
    pool_channels_any(g, xs, ys, channels, input, out);
}

/// [`pool_channels_any`] compiled for AVX-512: the loops over rows and
/// planes run 16 lanes wide instead of the baseline target's 4 (pools
/// 1.2 → 0.7 ms of the full model's 55, `examples/conv_profile`). The same
/// operations in the same order: the results do not change.
///
/// # Safety
/// AVX-512F is available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
unsafe fn pool_channels_avx512<T: Float>(
    g: &PoolGeom,
    xs: &[Span],
    ys: &[Span],
    channels: usize,
    input: &[T],
    out: &mut [T],
) {
    pool_channels_any(g, xs, ys, channels, input, out);
}

#[inline(always)]
fn pool_channels_any<T: Float>(
    g: &PoolGeom,
    xs: &[Span],
    ys: &[Span],
    channels: usize,
    input: &[T],
    out: &mut [T],
) {
    match g.kind {
        PoolKind::Max if is_valid_3x3_s2(g) => max_valid_3x3_s2(g, xs, ys, channels, input, out),
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
                    max_windows_nan(g.w, xs, ys, plane, dst);
                }
            }
        }
        PoolKind::Avg if is_same_3x3(g) => avg_same_3x3(g, channels, input, out),
        PoolKind::Avg => {
            let mut cols = vec![T::ZERO; g.w];
            // 1/count per output: one multiply instead of a divide (within
            // one rounding of PyTorch's division).
            let recip: Vec<T> = ys
                .iter()
                .flat_map(|sy| {
                    xs.iter().map(move |sx| {
                        let count = if g.count_include_pad {
                            sy.padded * sx.padded
                        } else {
                            (sy.hi - sy.lo) * (sx.hi - sx.lo)
                        };
                        T::from_f64(1.0 / count.max(1) as f64)
                    })
                })
                .collect();
            // The interior of a stride-1 pooling: summed vectorised below.
            let interior = if g.stride[1] == 1 {
                interior(g, xs)
            } else {
                (g.ow, g.ow)
            };
            let window_sum = |w: &[T]| w.iter().fold(T::ZERO, |a, &v| a + v);
            for c in 0..channels {
                let plane = &input[c * g.h * g.w..(c + 1) * g.h * g.w];
                let dst = &mut out[c * g.oh * g.ow..(c + 1) * g.oh * g.ow];
                for ((line, sy), r) in dst.chunks_mut(g.ow).zip(ys).zip(recip.chunks(g.ow)) {
                    // Sums in the element type, as PyTorch's float32 kernel
                    // accumulates (and the float64 oracle in float64).
                    cols.fill(T::ZERO);
                    for y in sy.lo..sy.hi {
                        for (a, &v) in cols.iter_mut().zip(&plane[y * g.w..(y + 1) * g.w]) {
                            *a += v;
                        }
                    }
                    let (a, b) = interior;
                    for ((d, sx), &r) in line.iter_mut().zip(xs).zip(r).take(a) {
                        *d = window_sum(&cols[sx.lo..sx.hi]) * r;
                    }
                    if b > a {
                        // Three shifted slices instead of a window per output: vectorises.
                        let lo = xs[a].lo;
                        let (c0, c1, c2) = (&cols[lo..], &cols[lo + 1..], &cols[lo + 2..]);
                        for ((((d, &x0), &x1), &x2), &r) in
                            line[a..b].iter_mut().zip(c0).zip(c1).zip(c2).zip(&r[a..b])
                        {
                            *d = (x0 + x1 + x2) * r;
                        }
                    }
                    for ((d, sx), &r) in line.iter_mut().zip(xs).zip(r).skip(b.max(a)) {
                        *d = window_sum(&cols[sx.lo..sx.hi]) * r;
                    }
                }
            }
        }
    }
}

/// A 3x3 window, stride 2, no padding, every window whole (all of
/// Inception's max pools).
pub(crate) fn is_valid_3x3_s2(g: &PoolGeom) -> bool {
    g.kernel == [3, 3]
        && g.stride == [2, 2]
        && g.pads == [0; 4]
        && g.h >= 3
        && g.w >= 3
        && (g.oh, g.ow) == ((g.h - 3) / 2 + 1, (g.w - 3) / 2 + 1)
}

/// [`is_valid_3x3_s2`] max pooling. Per output row, the vertical maximum of
/// the three input rows is stored split into even and odd columns, so the
/// horizontal stride-2 window becomes `max(even[x], odd[x], even[x + 1])`
/// over contiguous slices: both passes vectorise.
#[inline(always)]
fn max_valid_3x3_s2<T: Float>(
    g: &PoolGeom,
    xs: &[Span],
    ys: &[Span],
    channels: usize,
    input: &[T],
    out: &mut [T],
) {
    let (h, w, ow) = (g.h, g.w, g.ow);
    let half = w / 2;
    let mut even = vec![T::NEG_INFINITY; half + 1];
    let mut odd = vec![T::NEG_INFINITY; half];
    let max = |a: T, b: T| if b > a { b } else { a };
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    for c in 0..channels {
        let plane = &input[c * h * w..(c + 1) * h * w];
        let dst = &mut out[c * g.oh * ow..(c + 1) * g.oh * ow];
        // Float32 on AVX-512: the row kernel, one pass per row (NaN handled
        // row by row).
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(p), Some(d)) = (avx512 && ow > 0, T::as_f32(plane), T::as_f32_mut(dst)) {
            for (oy, line) in d.chunks_mut(ow).enumerate() {
                let rows = (
                    &p[2 * oy * w..][..w],
                    &p[(2 * oy + 1) * w..][..w],
                    &p[(2 * oy + 2) * w..][..w],
                );
                max_row_3x3_s2(rows, line);
            }
            continue;
        }
        if plane.iter().fold(false, |a, v| a | v.is_nan()) {
            max_windows_nan(w, xs, ys, plane, dst);
            continue;
        }
        for (oy, line) in dst.chunks_mut(ow).enumerate() {
            let r0 = &plane[2 * oy * w..][..w];
            let r1 = &plane[(2 * oy + 1) * w..][..w];
            let r2 = &plane[(2 * oy + 2) * w..][..w];
            for ((((e, o), a), b), d) in even
                .iter_mut()
                .zip(odd.iter_mut())
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
                .zip(r2.chunks_exact(2))
            {
                *e = max(max(a[0], b[0]), d[0]);
                *o = max(max(a[1], b[1]), d[1]);
            }
            if w % 2 == 1 {
                even[half] = max(max(r0[w - 1], r1[w - 1]), r2[w - 1]);
            }
            for (((d, &e0), &o0), &e1) in line.iter_mut().zip(&even).zip(&odd).zip(&even[1..]) {
                *d = max(max(e0, o0), e1);
            }
        }
    }
}

/// A 3x3 window, stride 1, padding 1 on every side (Inception's branch
/// pools): the output has the input's shape.
fn is_same_3x3(g: &PoolGeom) -> bool {
    g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.pads == [1; 4]
        && (g.oh, g.ow) == (g.h, g.w)
        && g.h >= 2
        && g.w >= 2
}

/// [`is_same_3x3`] average pooling, a whole plane per pass: the planes of
/// Inception's 35x35, 17x17 and 8x8 blocks are too narrow for row-by-row
/// loops to vectorise, so the vertical sums run over the plane as one flat
/// slice, the horizontal sums too, and the two border columns (whose flat
/// neighbours belong to the next or previous row) are then redone.
#[inline(always)]
fn avg_same_3x3<T: Float>(g: &PoolGeom, channels: usize, input: &[T], out: &mut [T]) {
    let (h, w) = (g.h, g.w);
    let hw = h * w;
    let mut v = vec![T::ZERO; hw];
    // Divisors: 9 inside; at the border the padded window (count_include_pad)
    // or only the valid inputs.
    let count = |y: usize, x: usize| -> usize {
        if g.count_include_pad {
            9
        } else {
            let ny = 3 - usize::from(y == 0) - usize::from(y + 1 == h);
            let nx = 3 - usize::from(x == 0) - usize::from(x + 1 == w);
            ny * nx
        }
    };
    let recip: Vec<T> = (0..hw)
        .map(|i| T::from_f64(1.0 / count(i / w, i % w) as f64))
        .collect();
    for c in 0..channels {
        let p = &input[c * hw..(c + 1) * hw];
        let o = &mut out[c * hw..(c + 1) * hw];
        // Vertical: v[y] = p[y−1] + p[y] + p[y+1], missing rows left out.
        for (((d, &a), &b), &e) in v[w..hw - w]
            .iter_mut()
            .zip(&p[..hw - 2 * w])
            .zip(&p[w..hw - w])
            .zip(&p[2 * w..])
        {
            *d = a + b + e;
        }
        for ((d, &b), &e) in v[..w].iter_mut().zip(&p[..w]).zip(&p[w..2 * w]) {
            *d = b + e;
        }
        for ((d, &a), &b) in v[hw - w..]
            .iter_mut()
            .zip(&p[hw - 2 * w..hw - w])
            .zip(&p[hw - w..])
        {
            *d = a + b;
        }
        // Horizontal, flat: right for every column but the first and last.
        for ((((d, &a), &b), &e), &r) in o[1..hw - 1]
            .iter_mut()
            .zip(&v[..hw - 2])
            .zip(&v[1..hw - 1])
            .zip(&v[2..])
            .zip(&recip[1..hw - 1])
        {
            *d = (a + b + e) * r;
        }
        for y in 0..h {
            let (i, j) = (y * w, y * w + w - 1);
            o[i] = (v[i] + v[i + 1]) * recip[i];
            o[j] = (v[j - 1] + v[j]) * recip[j];
        }
    }
}

/// Outputs `a..b` whose windows are three whole input columns, `stride`
/// apart (the interior of a 3-wide pooling); `(ow, ow)` for other windows.
#[inline(always)]
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

/// One output row of a float32 [`is_valid_3x3_s2`] max pooling from its
/// three input rows through the AVX-512 row kernel, a row holding a NaN
/// pooled again window by window as [`max_windows_nan`] does: the one path
/// of [`pool2d`] and of the convolutions that pool their own rows
/// (`direct.rs`). Returns false, `out` untouched, without AVX-512F.
#[inline]
pub(crate) fn max_row_3x3_s2(rows: (&[f32], &[f32], &[f32]), out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just detected.
        #[allow(unsafe_code)]
        let nan = unsafe { avx512::max_row_3x3_s2(rows, out) };
        if nan {
            max_row_nan(rows, out);
        }
        return true;
    }
    let _ = (rows, out);
    false
}

/// [`max_row_3x3_s2`]'s row again, window by window as [`max_windows_nan`]
/// does: input row by input row, NaN winning.
#[cold]
fn max_row_nan((r0, r1, r2): (&[f32], &[f32], &[f32]), out: &mut [f32]) {
    for (x, o) in out.iter_mut().enumerate() {
        let mut m = f32::NEG_INFINITY;
        for row in [r0, r1, r2] {
            m = max_nan(m, max_of_nan(&row[2 * x..2 * x + 3]));
        }
        *o = m;
    }
}

/// Max pooling of one plane `w` wide, window by window, NaN winning as in
/// PyTorch (the slow path, for planes that hold a NaN).
fn max_windows_nan<T: Float>(w: usize, xs: &[Span], ys: &[Span], plane: &[T], dst: &mut [T]) {
    for (oy, sy) in ys.iter().enumerate() {
        for (ox, sx) in xs.iter().enumerate() {
            let mut m = T::NEG_INFINITY;
            for y in sy.lo..sy.hi {
                let row = &plane[y * w..(y + 1) * w];
                m = max_nan(m, max_of_nan(&row[sx.lo..sx.hi]));
            }
            dst[oy * xs.len() + ox] = m;
        }
    }
}

fn max_nan<T: Float>(a: T, b: T) -> T {
    if b > a || b.is_nan() { b } else { a }
}

fn max_of_nan<T: Float>(v: &[T]) -> T {
    v.iter().fold(T::NEG_INFINITY, |m, &e| max_nan(m, e))
}

/// The maximum of a window known to hold no NaN.
#[inline(always)]
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
    // The bins, computed once rather than per channel.
    let ys: Vec<(usize, usize)> = (0..oh)
        .map(|oy| (oy * h / oh, ((oy + 1) * h).div_ceil(oh)))
        .collect();
    let xs: Vec<(usize, usize)> = (0..ow)
        .map(|ox| (ox * w / ow, ((ox + 1) * w).div_ceil(ow)))
        .collect();
    for ch in 0..c {
        let plane = &input[ch * h * w..(ch + 1) * h * w];
        for (oy, &(y0, y1)) in ys.iter().enumerate() {
            for (ox, &(x0, x1)) in xs.iter().enumerate() {
                let mut s = [0f64; 8];
                for y in y0..y1 {
                    add_into(&mut s, &plane[y * w + x0..y * w + x1]);
                }
                let s = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
                let n = ((y1 - y0) * (x1 - x0)).max(1);
                out[(ch * oh + oy) * ow + ox] = T::from_f64(s / n as f64);
            }
        }
    }
}

/// `s[i % 8] += v[i]` in float64: eight running sums, not one, so the adds
/// do not wait on each other (with one, the global pool's 2048 sums of 64
/// took 0.06 ms). Up to 64 float32 values of one sign (as after a ReLU)
/// whose magnitudes lie within a factor 2^23 of each other sum exactly in
/// float64 in any order, so float32 results keep their bits; float64 sums
/// change in their last bits only.
#[inline]
fn add_into<T: Float>(s: &mut [f64; 8], v: &[T]) {
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in s.iter_mut().zip(c) {
            *a += x.to_f64();
        }
    }
    for (a, &x) in s.iter_mut().zip(chunks.remainder()) {
        *a += x.to_f64();
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    /// One output row of a 3x3 stride-2 max pooling without padding:
    /// `out[x] = max over rows r0..r2, columns 2x..2x + 2`. The vertical
    /// maximum of each 16 columns is taken once (masked at the row's end);
    /// sixteen outputs then come from 34 of its columns by permutes (the
    /// even ones, the odd ones, the even ones two on), the last block's
    /// stores masked. The comparisons are the scalar path's, in its order
    /// (`max(a, b)` is `b` if `b > a`, else `a`), so the bits are its bits
    /// when no input is NaN. Returns whether one was (the caller then pools
    /// the row again, NaN winning as in PyTorch). Each column is loaded
    /// once, where blocks loaded their rows at two offsets, and no output
    /// is left to a scalar loop (Mixed_7a's pool, 17-wide rows: 0.056 →
    /// 0.049 ms; 6a's, 35-wide: 0.056, unchanged).
    #[target_feature(enable = "avx512f")]
    pub fn max_row_3x3_s2((r0, r1, r2): (&[f32], &[f32], &[f32]), out: &mut [f32]) -> bool {
        let w = r0.len().min(r1.len()).min(r2.len());
        let ow = out.len();
        assert!(ow == 0 || 2 * ow < w, "pool: rows too short for the output");
        let even_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd_idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let mut nan: __mmask16 = 0;
        // The vertical maximum of columns 16k .. 16k + 16; lanes past the
        // row's end are zero, and no output picks them.
        let mut column = |k: usize| -> __m512 {
            let at = 16 * k;
            let n = w.saturating_sub(at).min(16);
            let m = ((1u32 << n) - 1) as __mmask16;
            let load = |row: &[f32]| {
                // SAFETY: only the `n` lanes inside the row are read;
                // `wrapping_add` keeps the address arithmetic defined past it.
                unsafe { _mm512_maskz_loadu_ps(m, row.as_ptr().wrapping_add(at)) }
            };
            let (a, b, d) = (load(r0), load(r1), load(r2));
            nan |=
                _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, b) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(d, d);
            // `_mm512_max_ps(b, a)`: b where b > a, else a.
            _mm512_max_ps(d, _mm512_max_ps(b, a))
        };
        let mut lo = column(0);
        let mut x = 0;
        while x < ow {
            // Outputs x .. x + 16 read columns 2x .. 2x + 34: the vectors of
            // columns 2x (`lo`), 2x + 16 and 2x + 32 (`next`, the next
            // block's `lo`).
            let k = x / 8;
            let hi = column(k + 1);
            let next = column(k + 2);
            let even = _mm512_permutex2var_ps(lo, even_idx, hi);
            let odd = _mm512_permutex2var_ps(lo, odd_idx, hi);
            let shift = |a: __m512, b: __m512| {
                // Lanes 2.. of `a`, then lanes ..2 of `b`.
                _mm512_castsi512_ps(_mm512_alignr_epi32::<2>(
                    _mm512_castps_si512(b),
                    _mm512_castps_si512(a),
                ))
            };
            let on = _mm512_permutex2var_ps(shift(lo, hi), even_idx, shift(hi, next));
            let y = _mm512_max_ps(on, _mm512_max_ps(odd, even));
            let lanes = (ow - x).min(16);
            let dst = &mut out[x..x + lanes];
            let m = ((1u32 << lanes) - 1) as __mmask16;
            // SAFETY: `dst` holds the `lanes` floats stored.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), m, y) };
            lo = next;
            x += 16;
        }
        nan != 0
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
            (PoolKind::Max, [7, 9], [3, 3], [2, 2], [0; 4], true, [3, 4]),
            (
                PoolKind::Avg,
                [2, 5],
                [3, 3],
                [1, 1],
                [1, 1, 1, 1],
                false,
                [2, 5],
            ),
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
            // A NaN reaches exactly the windows that cover it, in both kinds.
            let mut xn = x.clone();
            xn[h * w + w + 1] = f64::NAN;
            let mut out = vec![0.0; 2 * oh * ow];
            pool2d(&g, &xn, &mut out, 1);
            let want = naive(&g, &xn);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!(
                    a.is_nan() == b.is_nan()
                        && (b.is_nan() || a == b || (a - b).abs() <= 1e-12 * b.abs().max(1.0)),
                    "{g:?} with a NaN, output {i}: {a} vs {b}"
                );
            }
        }
    }

    /// A 3x3 pooling of three `(h, w)` planes: stride 1 with a border of
    /// one (the output the input's size), or stride 2 without.
    fn three_by_three(
        kind: PoolKind,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        stride: usize,
        count_include_pad: bool,
    ) -> PoolGeom {
        PoolGeom {
            kind,
            c: 3,
            h,
            w,
            oh,
            ow,
            kernel: [3, 3],
            stride: [stride; 2],
            pads: [usize::from(stride == 1); 4],
            count_include_pad,
        }
    }

    /// `n` floats with a zero of each sign at the start of every `period`,
    /// the rest spread over `-offset..` in steps of `1 / scale`.
    fn signed_data(n: usize, period: usize, (scale, offset): (f32, f32)) -> Vec<f32> {
        (0..n)
            .map(|i| match i % period {
                0 => 0.0,
                1 => -0.0,
                _ => ((i * 7919) % 101) as f32 / scale - offset,
            })
            .collect()
    }

    /// The 3x3 same average pooling in float32 gives the bits of the scalar
    /// sums (rows in order, then columns in order, then the reciprocal),
    /// signed zeros and NaN included, for widths under, at and over a
    /// vector, with and without the padding counted.
    #[test]
    fn avg_same_3x3_float32_keeps_the_scalar_bits() {
        for (h, w) in [(2, 2), (3, 5), (8, 16), (17, 17), (4, 33), (5, 35)] {
            for count_include_pad in [false, true] {
                let g = three_by_three(PoolKind::Avg, (h, w), (h, w), 1, count_include_pad);
                let mut x = signed_data(3 * h * w, 11, (7.0, 7.0));
                x[h * w + w / 2] = f32::NAN;
                let mut out = vec![7f32; 3 * h * w];
                pool2d(&g, &x, &mut out, 1);
                for (i, &got) in out.iter().enumerate() {
                    let (c, y, xx) = (i / (h * w), i / w % h, i % w);
                    let p = |r: usize, col: usize| x[(c * h + r) * w + col];
                    let v = |col: usize| match (y > 0, y + 1 < h) {
                        (true, true) => p(y - 1, col) + p(y, col) + p(y + 1, col),
                        (false, _) => p(y, col) + p(y + 1, col),
                        (true, false) => p(y - 1, col) + p(y, col),
                    };
                    let sum = match (xx > 0, xx + 1 < w) {
                        (true, true) => v(xx - 1) + v(xx) + v(xx + 1),
                        (false, _) => v(xx) + v(xx + 1),
                        (true, false) => v(xx - 1) + v(xx),
                    };
                    let n = if count_include_pad {
                        9
                    } else {
                        (3 - usize::from(y == 0) - usize::from(y + 1 == h))
                            * (3 - usize::from(xx == 0) - usize::from(xx + 1 == w))
                    };
                    let want = sum * (1.0 / n as f64) as f32;
                    assert!(
                        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                        "{h}x{w} at {c},{y},{xx}: {got} against {want}"
                    );
                }
            }
        }
    }

    /// The float32 3x3 stride-2 max pooling (vectorised on AVX-512) gives
    /// the bits of the window-by-window definition on rows long enough for
    /// its sixteen-wide steps and their remainders, with zeros of both signs
    /// in the data; a NaN still wins its windows.
    #[test]
    fn max_3x3_s2_float32_matches_the_definition_bit_for_bit() {
        for (h, w) in [
            (7, 35),
            (9, 36),
            (5, 71),
            (3, 147),
            (11, 17),
            (5, 9),
            (3, 41),
        ] {
            let (oh, ow) = ((h - 3) / 2 + 1, (w - 3) / 2 + 1);
            let g = three_by_three(PoolKind::Max, (h, w), (oh, ow), 2, true);
            let mut x = signed_data(3 * h * w, 7, (10.0, 5.0));
            // No NaN, then one in an early window, then one more in the
            // row's last window (read by the last, masked block).
            for nan in [None, Some(3), Some(2 * ow)] {
                if let Some(col) = nan {
                    x[2 * h * w + w + col] = f32::NAN;
                }
                let mut out = vec![7f32; 3 * oh * ow];
                pool2d(&g, &x, &mut out, 1);
                let want: Vec<f32> = (0..3 * oh * ow)
                    .map(|i| {
                        let (c, oy, ox) = (i / (oh * ow), i / ow % oh, i % ow);
                        let mut m = f32::NEG_INFINITY;
                        for y in 0..3 {
                            for xx in 0..3 {
                                let v = x[(c * h + 2 * oy + y) * w + 2 * ox + xx];
                                // PyTorch's rule: greater, or NaN, wins.
                                if v > m || v.is_nan() {
                                    m = v;
                                }
                            }
                        }
                        m
                    })
                    .collect();
                for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                        "{h}x{w} nan={nan:?} at {i}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
