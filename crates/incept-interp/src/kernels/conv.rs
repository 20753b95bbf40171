//! 2-D convolution as GEMM: `out[O, OH·OW] = W[O, C·kh·kw] × cols[C·kh·kw, OH·OW]`,
//! with 1x1 stride-1 convolutions reading the input directly (no im2col).

use rayon::prelude::*;

use crate::float::Float;
use crate::kernels::direct::{self, DirectWeights};
use crate::kernels::eltwise::Epilogue;
use crate::kernels::gemm::{MatRef, matmul};
use crate::kernels::sgemm::{self, Dense, PackedWeights, Tail};
use crate::kernels::winograd;

/// A convolution's weights as the kernels take them.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a, T> {
    /// `[O, C/groups·kh·kw]` row-major, for the `gemm` crate.
    Plain(&'a [T]),
    /// Packed for the AVX-512 kernel (float32, one group).
    Packed(&'a PackedWeights),
    /// Packed for the direct kernel (float32, few output channels; see
    /// [`super::direct::fits`]).
    Direct(&'a DirectWeights),
}

/// Geometry of a convolution, fixed at plan time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels, height, width.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
}

impl ConvGeom {
    /// A single-image geometry from its input, with the output size that
    /// PyTorch's definition gives (tests).
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_input(
        (c, h, w): (usize, usize, usize),
        o: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
        groups: usize,
    ) -> ConvGeom {
        let oh = (h + pads[0] + pads[2] - dilation[0] * (kernel[0] - 1) - 1) / stride[0] + 1;
        let ow = (w + pads[1] + pads[3] - dilation[1] * (kernel[1] - 1) - 1) / stride[1] + 1;
        ConvGeom {
            c,
            h,
            w,
            o,
            oh,
            ow,
            kernel,
            stride,
            pads,
            dilation,
            groups,
        }
    }

    /// True when the input itself is the im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pads == [0; 4]
    }

    /// Rows of the im2col matrix per group.
    pub fn k(&self) -> usize {
        self.c / self.groups * self.kernel[0] * self.kernel[1]
    }
}

/// Rows of the im2col matrix per GEMM call. Each call's products are summed
/// in registers, then added to the output, so no float32 sum runs longer than
/// this: against the float64 oracle, the full model's logits error drops from
/// about 3.2e-5 (PyTorch's own level) to 2.3e-5, for about 1% of the time
/// (`cargo run --release -p incept-interp --example accuracy`).
const K_BLOCK: usize = 128;

/// Elements of im2col scratch to aim for per band of output rows.
const SCRATCH_ELEMS: usize = 1 << 20;

/// `dst[og, tn] (rows n apart) = w[og, k] × cols[k, tn]`, in K blocks of [`K_BLOCK`].
#[allow(clippy::too_many_arguments)]
fn gemm_k_blocked<T: Float>(
    dst: &mut [T],
    dst_row_stride: usize,
    w: &[T],
    og: usize,
    k: usize,
    cols: &[T],
    tn: usize,
    threads: usize,
) {
    let mut k0 = 0;
    while k0 < k {
        let k1 = (k0 + K_BLOCK).min(k);
        let wk = MatRef {
            data: &w[k0..],
            rows: og,
            cols: k1 - k0,
            row_stride: k,
            col_stride: 1,
        };
        let ck = MatRef::row_major(&cols[k0 * tn..k1 * tn], k1 - k0, tn);
        matmul(dst, dst_row_stride, wk, ck, k0 > 0, threads);
        k0 = k1;
    }
}

/// Convolves one image: `input` is `[C, H, W]`, `out` is `[O, OH, OW]`,
/// `weight` is `[O, C/groups·kh·kw]` row-major.
///
/// With several threads, the im2col matrix is built in parallel and the GEMM
/// is threaded.
pub fn conv2d<T: Float>(
    g: &ConvGeom,
    input: &[T],
    weight: Weights<'_, T>,
    epilogue: &Epilogue<T>,
    out: &mut [T],
    scratch: &mut Vec<T>,
    threads: usize,
) {
    let threads = super::balance::threads(threads);
    let n = g.oh * g.ow;
    let k = g.k();
    let og = g.o / g.groups;
    let cg = g.c / g.groups;
    let weight = match weight {
        Weights::Plain(w) => w,
        Weights::Direct(d) => {
            let plain = direct::Layout::default();
            conv2d_direct(g, None, input, d, epilogue, out, scratch, threads, plain);
            return;
        }
        Weights::Packed(p) => {
            assert!(
                g.groups == 1 && p.rows() == g.o && p.k() == k,
                "conv: packed weights of another shape"
            );
            // The epilogue runs on each tile in registers: no pass over `out`.
            let tail = tail_of(epilogue);
            if g.is_pointwise() {
                let (Some(x), Some(y)) = (T::as_f32(input), T::as_f32_mut(out)) else {
                    unreachable!("weights are packed only for float32");
                };
                sgemm::gemm(y, n, p, &Dense { b: x, ldb: n }, n, &tail, threads);
            } else if g.pads == [0; 4] || padded_copy_fits(g, threads) {
                // Unpadded (the stride-2 reductions run in `direct.rs`, into
                // 8x8 as into 17x17, and so do the stem's): each block is gathered
                // from the input, or from its stride phases, straight into
                // the kernel's buffer. Padded, stride 1, with a padded copy
                // that fits in L2 (the 8x8 blocks' 1x3, 3x1 and 3x3
                // convolutions): gathered from that copy (one run per row
                // where there is no padding at the sides), 0.02-0.03 ms
                // faster per layer than im2col. Conv2d_2b's copy (2.8 MB)
                // costs more than im2col saves there (`examples/conv_profile`).
                let Some(x) = T::as_f32(input) else {
                    unreachable!("weights are packed only for float32");
                };
                let (src, offs, pitch) = if g.pads != [0; 4] {
                    let (hp, wp) = padded_size(g);
                    let Some(buf) = T::as_f32_mut(scratch_of(scratch, g.c * hp * wp)) else {
                        unreachable!("weights are packed only for float32");
                    };
                    pad_into(g, x, buf);
                    (&*buf, unfold_offsets(g, hp, wp), wp)
                } else if g.stride == [1, 1] {
                    (x, unfold_offsets(g, g.h, g.w), g.w)
                } else {
                    let (layout, offs) = phase_layout(g);
                    let Some(buf) = T::as_f32_mut(scratch_of(scratch, layout.len)) else {
                        unreachable!("weights are packed only for float32");
                    };
                    layout.fill(g, x, buf, threads);
                    (&*buf, offs, layout.wq)
                };
                let Some(y) = T::as_f32_mut(out) else {
                    unreachable!("weights are packed only for float32");
                };
                let rhs = Unfold {
                    src,
                    offs: &offs,
                    ow: g.ow,
                    pitch,
                };
                sgemm::gemm(y, n, p, &rhs, n, &tail, threads);
            } else if threads >= 2 && g.oh >= 2 && n >= SPLIT_MIN_PIXELS {
                let Some(y) = T::as_f32_mut(out) else {
                    unreachable!("weights are packed only for float32");
                };
                im2col_split(g, input, p, &tail, y, scratch);
            } else {
                im2col_bands(
                    g,
                    cg,
                    input,
                    scratch,
                    (0, g.oh),
                    threads,
                    |cols, oh0, tn| {
                        let (Some(b), Some(y)) =
                            (T::as_f32(cols), T::as_f32_mut(&mut out[oh0 * g.ow..]))
                        else {
                            unreachable!("weights are packed only for float32");
                        };
                        sgemm::gemm(y, n, p, &Dense { b, ldb: tn }, tn, &tail, threads);
                    },
                );
            }
            return;
        }
    };
    for grp in 0..g.groups {
        let w = &weight[grp * og * k..(grp + 1) * og * k];
        let x = &input[grp * cg * g.h * g.w..(grp + 1) * cg * g.h * g.w];
        let dst = &mut out[grp * og * n..(grp + 1) * og * n];
        if g.is_pointwise() {
            gemm_k_blocked(dst, n, w, og, k, x, n, threads);
        } else {
            im2col_bands(g, cg, x, scratch, (0, g.oh), threads, |cols, oh0, tn| {
                gemm_k_blocked(&mut dst[oh0 * g.ow..], n, w, og, k, cols, tn, threads);
            });
        }
        epilogue.apply_from(dst, n, grp * og, threads);
    }
}

/// The input's height and width with its padding.
pub(crate) fn padded_size(g: &ConvGeom) -> (usize, usize) {
    (g.h + g.pads[0] + g.pads[2], g.w + g.pads[1] + g.pads[3])
}

/// A padded stride-1 convolution whose padded input fits in L2 (see the
/// `Unfold` path of [`conv2d`]), and, on several threads, wide enough for
/// the GEMM to split its columns (split by rows, each thread would gather
/// every block: the 8x8 layers on two threads were slower so).
fn padded_copy_fits(g: &ConvGeom, threads: usize) -> bool {
    let (hp, wp) = padded_size(g);
    g.stride == [1, 1]
        && g.groups == 1
        && g.c * hp * wp * 4 <= super::L2_BYTES
        && (threads <= 1 || g.oh * g.ow >= 2 * sgemm::NR * threads)
}

/// `out = epilogue(conv(input))` through the direct kernel, then max
/// pooled with `pool` when given: the kernel pools the convolution's rows
/// as they complete (`direct::conv_pool`; the plan fuses a pooling only
/// where [`direct::pools`] takes it). `layout` says whether the input holds
/// the layer's zero border already, and which border to write the output
/// inside (none with a pooling).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_direct<T: Float>(
    g: &ConvGeom,
    pool: Option<&super::pool::PoolGeom>,
    input: &[T],
    weight: &DirectWeights,
    epilogue: &Epilogue<T>,
    out: &mut [T],
    scratch: &mut Vec<T>,
    threads: usize,
    layout: direct::Layout,
) {
    let (Some(x), Some(y)) = (T::as_f32(input), T::as_f32_mut(out)) else {
        unreachable!("weights are packed only for float32");
    };
    let tail = tail_of(epilogue);
    let need = if layout.padded_input {
        0
    } else {
        direct::scratch_len(g)
    };
    let Some(padded) = T::as_f32_mut(scratch_of(scratch, need)) else {
        unreachable!("weights are packed only for float32");
    };
    assert!(
        pool.is_none() || layout.out_pads == [0; 4],
        "conv: a pooled output written inside borders"
    );
    if let Some(wg) = weight.winograd() {
        let padded_input = layout.padded_input;
        match pool {
            Some(p) => {
                winograd::conv_pool(g, x, padded_input, wg, &tail, p, y, padded, threads);
            }
            None => {
                let out_pads = layout.out_pads;
                winograd::conv(g, x, padded_input, wg, &tail, y, out_pads, padded, threads);
            }
        }
        return;
    }
    match pool {
        Some(p) => {
            let padded_input = layout.padded_input;
            direct::conv_pool(g, x, weight, &tail, p, y, padded, threads, padded_input);
        }
        None => direct::conv(g, x, weight, &tail, y, padded, threads, layout),
    }
}

/// The float32 kernels' view of an epilogue (float32 runs only).
fn tail_of<T: Float>(e: &Epilogue<T>) -> Tail<'_> {
    Tail {
        scale: e.scale.as_deref().and_then(T::as_f32),
        shift: e.shift.as_deref().and_then(T::as_f32),
        relu: e.relu,
    }
}

/// The first `n` floats of `scratch`, which grows (zeroed) when shorter but
/// never shrinks: layers with different needs take turns, and a resize to
/// each one's length zeroed megabytes at every call (1% of a run, in
/// `memset`). Every user writes all `n` floats before reading them.
pub(crate) fn scratch_of<T: Float>(scratch: &mut Vec<T>, n: usize) -> &mut [T] {
    if scratch.len() < n {
        scratch.resize(n, T::ZERO);
    }
    &mut scratch[..n]
}

/// `x` (`[C, H, W]`) into `buf` (`[C, H + pads, W + pads]`) with a zero border.
pub(crate) fn pad_into(g: &ConvGeom, x: &[f32], buf: &mut [f32]) {
    let (hp, wp) = padded_size(g);
    for (plane, src) in buf.chunks_mut(hp * wp).zip(x.chunks(g.h * g.w)) {
        let (top, rest) = plane.split_at_mut(g.pads[0] * wp);
        let (mid, bottom) = rest.split_at_mut(g.h * wp);
        top.fill(0.0);
        bottom.fill(0.0);
        for (row, s) in mid.chunks_mut(wp).zip(src.chunks(g.w)) {
            let (left, rest) = row.split_at_mut(g.pads[1]);
            let (body, right) = rest.split_at_mut(g.w);
            zero_few(left);
            body.copy_from_slice(s);
            zero_few(right);
        }
    }
}

/// Zeroes a side border, a few floats: stores, where `fill` called
/// `memset` twice per row (125 000 calls a run, about 1% of it).
#[inline(always)]
pub(crate) fn zero_few(s: &mut [f32]) {
    match s {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => (*a, *b) = (0.0, 0.0),
        [a, b, c] => (*a, *b, *c) = (0.0, 0.0, 0.0),
        _ => s.fill(0.0),
    }
}

/// The im2col matrix of an unpadded float32 convolution, never built whole:
/// each `kc × NR` block the GEMM asks for is gathered into the kernel's
/// buffer, so the unfolded data lives in L1 only. Row `r` of the matrix is
/// `src` read from `offs[r]`, output position `(oh, ow)` at `oh·pitch + ow`
/// from there.
struct Unfold<'a> {
    src: &'a [f32],
    offs: &'a [usize],
    ow: usize,
    pitch: usize,
}

impl sgemm::Rhs for Unfold<'_> {
    const IN_PLACE: bool = false;

    fn block<'s>(
        &'s self,
        k0: usize,
        kc: usize,
        j0: usize,
        ncols: usize,
        buf: &'s mut [f32],
    ) -> (&'s [f32], usize) {
        // The block's columns as runs along output rows: (column in the
        // block, offset from a row's start, length).
        let mut runs = [(0usize, 0usize, 0usize); sgemm::NR];
        let mut count = 0;
        let mut j = j0;
        if self.pitch == self.ow {
            // Output rows follow each other in the source too: one run.
            runs[0] = (0, j0, ncols);
            count = 1;
            j = j0 + ncols;
        }
        while j < j0 + ncols {
            let (oh, ow) = (j / self.ow, j % self.ow);
            let len = (self.ow - ow).min(j0 + ncols - j);
            runs[count] = (j - j0, oh * self.pitch + ow, len);
            count += 1;
            j += len;
        }
        // Where the next panel starts, to prefetch its rows while packing
        // this one (a layer's input arrives from L3).
        let next = j0 + ncols;
        let next_at = (next / self.ow) * self.pitch + next % self.ow;
        for (kk, dst) in buf.chunks_mut(sgemm::NR).take(kc).enumerate() {
            let base = self.offs[k0 + kk];
            for &(d, s, len) in &runs[..count] {
                dst[d..d + len].copy_from_slice(&self.src[base + s..base + s + len]);
            }
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                let p = self.src.as_ptr().wrapping_add(base + next_at);
                for v in 0..sgemm::NR / 16 {
                    // SAFETY: SSE is part of x86_64's baseline, and a
                    // prefetch never faults, whatever the address.
                    #[allow(unsafe_code)]
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(16 * v).cast::<i8>());
                    }
                }
            }
        }
        (buf, sgemm::NR)
    }
}

/// Where each im2col row `(c, i, j)` starts in the input split into stride
/// phase planes of `hq × wq` (see [`PhaseLayout`]); with stride 1 there is
/// one plane per channel, the input itself (`hq × wq = H × W`).
fn unfold_offsets(g: &ConvGeom, hq: usize, wq: usize) -> Vec<usize> {
    let [sh, sw] = g.stride;
    let [kh, kw] = g.kernel;
    let [dh, dw] = g.dilation;
    // Nested loops in the row order (c, i, j), not a division per row: this
    // runs at every call, and divisions for the 2,592 rows of a 3x3 over
    // 288 channels cost more than the gather of a block.
    let mut offs = Vec::with_capacity(g.c * kh * kw);
    for c in 0..g.c {
        for i in 0..kh {
            for j in 0..kw {
                let (ii, jj) = (i * dh, j * dw);
                let q = (c * sh + ii % sh) * sw + jj % sw;
                offs.push(q * hq * wq + (ii / sh) * wq + jj / sw);
            }
        }
    }
    offs
}

/// An unpadded strided input split into its stride phases: plane
/// `(c, py, px)` holds `x[c][a·sh + py][b·sw + px]`, so the strided windows
/// of the convolution become shifted runs.
struct PhaseLayout {
    /// Rows and columns per phase plane.
    hq: usize,
    wq: usize,
    /// Floats in all.
    len: usize,
}

impl PhaseLayout {
    /// Copies `x` (`[C, H, W]`) into `buf` (`len` floats), the planes split
    /// between `threads` (serial, this copy cost the stride-2 reductions a
    /// tenth of their time on two threads).
    fn fill(&self, g: &ConvGeom, x: &[f32], buf: &mut [f32], threads: usize) {
        let [sh, sw] = g.stride;
        let plane_len = self.hq * self.wq;
        let one = |(q, dst): (usize, &mut [f32])| {
            let (c, py, px) = (q / (sh * sw), (q / sw) % sh, q % sw);
            let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
            // Columns b with b·sw + px < w; the rest of a row is padding.
            let valid = g.w.saturating_sub(px).div_ceil(sw).min(self.wq);
            for (a, row) in dst.chunks_mut(self.wq).enumerate() {
                let y = a * sh + py;
                if y >= g.h {
                    row.fill(0.0);
                    continue;
                }
                let line = &plane[y * g.w + px..(y + 1) * g.w];
                let (head, tail) = row.split_at_mut(valid);
                if sw == 1 {
                    head.copy_from_slice(&line[..valid]);
                } else {
                    for (v, &s) in head.iter_mut().zip(line.iter().step_by(sw)) {
                        *v = s;
                    }
                }
                tail.fill(0.0);
            }
        };
        if threads > 1 {
            buf[..self.len]
                .par_chunks_mut(plane_len)
                .enumerate()
                .for_each(one);
        } else {
            buf[..self.len]
                .chunks_mut(plane_len)
                .enumerate()
                .for_each(one);
        }
    }
}

/// The phase layout of an unpadded strided convolution and its im2col row
/// offsets into it.
fn phase_layout(g: &ConvGeom) -> (PhaseLayout, Vec<usize>) {
    let [sh, sw] = g.stride;
    let (hq, wq) = (g.h.div_ceil(sh), g.w.div_ceil(sw));
    let offs = unfold_offsets(g, hq, wq);
    let layout = PhaseLayout {
        hq,
        wq,
        len: g.c * sh * sw * hq * wq,
    };
    (layout, offs)
}

/// Unfolds `x` (`[cg, H, W]`) into `cols` (`[cg·kh·kw, OH·OW]`), zeros for padding.
/// Builds the im2col matrix one band of output rows at a time, so the
/// scratch matrix stays small (a few MiB) even for the 147x147 layers, and
/// hands each band to `gemm(cols, first_output_row, columns)`.
#[allow(clippy::too_many_arguments)]
fn im2col_bands<T: Float>(
    g: &ConvGeom,
    cg: usize,
    x: &[T],
    scratch: &mut Vec<T>,
    rows: (usize, usize),
    threads: usize,
    gemm: impl FnMut(&[T], usize, usize),
) {
    let band = band_rows(g, cg, SCRATCH_ELEMS);
    let scratch = scratch_of(scratch, band_elems(g, cg, band));
    im2col_bands_in(g, cg, x, scratch, (rows, band), threads, gemm);
}

/// Output rows per band of about `elems` floats of im2col scratch.
fn band_rows(g: &ConvGeom, cg: usize, elems: usize) -> usize {
    let k = cg * g.kernel[0] * g.kernel[1];
    (elems / (k * g.ow).max(1)).clamp(1, g.oh)
}

/// Scratch for a band of `rows` output rows.
fn band_elems(g: &ConvGeom, cg: usize, rows: usize) -> usize {
    cg * g.kernel[0] * g.kernel[1] * rows * g.ow
}

/// [`im2col_bands`] over output rows `lo..hi`, `band` rows at a time, in
/// `scratch` of at least [`band_elems`] elements.
fn im2col_bands_in<T: Float>(
    g: &ConvGeom,
    cg: usize,
    x: &[T],
    scratch: &mut [T],
    ((lo, hi), band): ((usize, usize), usize),
    threads: usize,
    mut gemm: impl FnMut(&[T], usize, usize),
) {
    let k = cg * g.kernel[0] * g.kernel[1];
    let mut oh0 = lo;
    while oh0 < hi {
        let oh1 = (oh0 + band).min(hi);
        let tn = (oh1 - oh0) * g.ow;
        im2col(g, cg, x, &mut scratch[..k * tn], (oh0, oh1), threads);
        gemm(&scratch[..k * tn], oh0, tn);
        oh0 = oh1;
    }
}

/// Output pixels from which [`im2col_split`] pays: below (17x17, 8x8), each
/// thread would stream all of the layer's weights for a few rows, and the
/// product's own split (by output channels) does better.
const SPLIT_MIN_PIXELS: usize = 1024;

/// The im2col path on two threads, each unfolding and multiplying its own
/// output rows, so no thread reads scratch the other wrote. With the matrix
/// built by both and read by both, half of each thread's reads come from
/// the other core's caches; at times these machines make that slow (the
/// two vCPUs placed far apart, we suppose): the padded 5x5 convolutions then
/// ran slower on two threads than on one, and the whole model took 41 ms on
/// two threads instead of 31 (38 with this split; 31 either way otherwise).
/// Rows are split in proportion to the threads' speeds (`balance.rs`).
fn im2col_split<T: Float>(
    g: &ConvGeom,
    x: &[T],
    p: &PackedWeights,
    tail: &Tail<'_>,
    out: &mut [f32],
    scratch: &mut Vec<T>,
) {
    let n = g.oh * g.ow;
    let split = super::balance::first_share(g.oh);
    // Bands a quarter the one-thread size: each thread's fits its own L2,
    // where two 4 MiB bands made the threads contend for L3 (Conv2d_2b on
    // two threads: 2.3 → 2.1 ms; on one, the larger band is as fast).
    let band = band_rows(g, g.c, SCRATCH_ELEMS / 4);
    let each = band_elems(g, g.c, band);
    let (s1, s2) = scratch_of(scratch, 2 * each).split_at_mut(each);
    // Each output channel's plane, cut at the split: rows 0..split, then the rest.
    let (mut first, mut second): (Vec<&mut [f32]>, Vec<&mut [f32]>) = out[..g.o * n]
        .chunks_mut(n)
        .map(|plane| plane.split_at_mut(split * g.ow))
        .unzip();
    let run = |rows: &mut [&mut [f32]], (lo, hi): (usize, usize), s: &mut [T]| {
        im2col_bands_in(g, g.c, x, s, ((lo, hi), band), 1, |cols, oh0, tn| {
            let Some(b) = T::as_f32(cols) else {
                unreachable!("weights are packed only for float32");
            };
            let c0 = (oh0 - lo) * g.ow;
            let mut band: Vec<&mut [f32]> = rows.iter_mut().map(|r| &mut r[c0..c0 + tn]).collect();
            sgemm::gemm_rows(&mut band, p, &Dense { b, ldb: tn }, tail);
        });
    };
    super::balance::join(
        (split, || run(&mut first, (0, split), s1)),
        (g.oh - split, || run(&mut second, (split, g.oh), s2)),
    );
}

/// Output rows `oh0..oh1` only: `cols` is `[cg·kh·kw, (oh1−oh0)·OW]`.
fn im2col<T: Float>(
    g: &ConvGeom,
    cg: usize,
    x: &[T],
    cols: &mut [T],
    (oh0, oh1): (usize, usize),
    threads: usize,
) {
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let (pt, pl) = (g.pads[0], g.pads[1]);
    let n = (oh1 - oh0) * g.ow;
    // Output columns whose input column lies inside [0, W) for kernel column j.
    let valid_cols = |j: usize| {
        let off = j * dw;
        // iw = ow*sw + off - pl >= 0  <=>  ow >= ceil((pl - off) / sw)
        let lo = if off >= pl {
            0
        } else {
            (pl - off).div_ceil(sw)
        };
        // iw < W  <=>  ow*sw < W + pl - off
        let hi = if g.w + pl > off {
            (g.w + pl - off).div_ceil(sw)
        } else {
            0
        };
        (lo.min(g.ow), hi.min(g.ow))
    };
    // Each row (c, i, j) of the matrix is independent: fill rows in parallel.
    let contiguous = [sh, sw, dh, dw] == [1; 4] && g.w == g.ow;
    let fill = |(row, dst): (usize, &mut [T])| {
        let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        let (lo, hi) = valid_cols(j);
        if contiguous {
            // Stride 1 and W = OW: the rows oa..ob whose input row exists
            // read one contiguous run of the plane, shifted by j − pl, so
            // one copy per band replaces a short copy per output row. The
            // elements it gets wrong (past the plane, or wrapped from the
            // neighbouring row) are exactly the padded columns, zeroed after.
            let oa = (pt.saturating_sub(i)).clamp(oh0, oh1);
            let ob = (g.h + pt).saturating_sub(i).clamp(oa, oh1);
            dst[..(oa - oh0) * g.ow].fill(T::ZERO);
            dst[(ob - oh0) * g.ow..].fill(T::ZERO);
            let block = &mut dst[(oa - oh0) * g.ow..(ob - oh0) * g.ow];
            if block.is_empty() {
                return;
            }
            // Element (oh, x) of the block is plane[(oh + i − pt)·W + x + j − pl].
            let start = ((oa + i - pt) * g.w + j) as isize - pl as isize;
            let s0 = start.max(0);
            let s1 = (start + block.len() as isize).min(plane.len() as isize);
            let d0 = (s0 - start) as usize;
            if s1 > s0 {
                block[d0..d0 + (s1 - s0) as usize]
                    .copy_from_slice(&plane[s0 as usize..s1 as usize]);
            }
            if lo > 0 || hi < g.ow {
                for line in block.chunks_mut(g.ow) {
                    line[..lo.min(g.ow)].fill(T::ZERO);
                    line[hi.min(g.ow)..].fill(T::ZERO);
                }
            }
            return;
        }
        for oh in oh0..oh1 {
            let line = &mut dst[(oh - oh0) * g.ow..(oh - oh0 + 1) * g.ow];
            let ih = (oh * sh + i * dh) as isize - pt as isize;
            if ih < 0 || ih as usize >= g.h || lo >= hi {
                line.fill(T::ZERO);
                continue;
            }
            let src = &plane[ih as usize * g.w..(ih as usize + 1) * g.w];
            line[..lo].fill(T::ZERO);
            line[hi..].fill(T::ZERO);
            let iw0 = lo * sw + j * dw - pl;
            if sw == 1 {
                line[lo..hi].copy_from_slice(&src[iw0..iw0 + (hi - lo)]);
            } else {
                for (d, s) in line[lo..hi].iter_mut().zip(src[iw0..].iter().step_by(sw)) {
                    *d = *s;
                }
            }
        }
    };
    let cols = &mut cols[..cg * kh * kw * n];
    if threads > 1 && cols.len() >= 1 << 15 {
        cols.par_chunks_mut(n).enumerate().for_each(fill);
    } else {
        cols.chunks_mut(n).enumerate().for_each(fill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The padded copy holds each input element at its shifted place and
    /// zero elsewhere, for side borders of 0-3, rows narrower and wider
    /// than a vector, and garbage left in the buffer before.
    #[test]
    fn pad_into_places_the_input_inside_a_zero_border() {
        for (c, h, w, pads) in [
            (3, 5, 5, [1, 1, 1, 1]),
            (2, 17, 17, [0, 3, 0, 3]),
            (2, 17, 17, [3, 0, 3, 0]),
            (2, 6, 35, [2, 2, 2, 2]),
            (1, 4, 40, [1, 0, 2, 3]),
            (1, 3, 14, [0, 2, 1, 0]),
        ] {
            let g = ConvGeom::from_input((c, h, w), 1, [1, 1], [1, 1], pads, [1, 1], 1);
            let x: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
            let (hp, wp) = padded_size(&g);
            let mut buf = vec![f32::NAN; c * hp * wp];
            pad_into(&g, &x, &mut buf);
            for ch in 0..c {
                for y in 0..hp {
                    for xx in 0..wp {
                        let inside = (pads[0]..pads[0] + h).contains(&y)
                            && (pads[1]..pads[1] + w).contains(&xx);
                        let want = if inside {
                            x[(ch * h + y - pads[0]) * w + xx - pads[1]]
                        } else {
                            0.0
                        };
                        let got = buf[(ch * hp + y) * wp + xx];
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{pads:?} w {w} at {ch},{y},{xx}"
                        );
                    }
                }
            }
        }
    }

    /// Direct definition of the convolution, for checking the GEMM path.
    fn naive(g: &ConvGeom, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; g.o * g.oh * g.ow];
        let (og, cg) = (g.o / g.groups, g.c / g.groups);
        for o in 0..g.o {
            let grp = o / og;
            for oh in 0..g.oh {
                for ow in 0..g.ow {
                    let mut acc = 0.0;
                    for c in 0..cg {
                        for i in 0..g.kernel[0] {
                            for j in 0..g.kernel[1] {
                                let ih = (oh * g.stride[0] + i * g.dilation[0]) as isize
                                    - g.pads[0] as isize;
                                let iw = (ow * g.stride[1] + j * g.dilation[1]) as isize
                                    - g.pads[1] as isize;
                                if ih < 0 || iw < 0 || ih as usize >= g.h || iw as usize >= g.w {
                                    continue;
                                }
                                let xi = ((grp * cg + c) * g.h + ih as usize) * g.w + iw as usize;
                                let wi = ((o * cg + c) * g.kernel[0] + i) * g.kernel[1] + j;
                                acc += x[xi] * w[wi];
                            }
                        }
                    }
                    out[(o * g.oh + oh) * g.ow + ow] = acc;
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        c: usize,
        h: usize,
        w: usize,
        o: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        pads: [usize; 4],
        dilation: [usize; 2],
        groups: usize,
    ) {
        let g = ConvGeom::from_input((c, h, w), o, kernel, stride, pads, dilation, groups);
        let (oh, ow) = (g.oh, g.ow);
        let x: Vec<f64> = (0..c * h * w)
            .map(|i| ((i * 7919) % 23) as f64 - 11.0)
            .collect();
        let wt: Vec<f64> = (0..o * g.k())
            .map(|i| ((i * 104_729) % 17) as f64 - 8.0)
            .collect();
        let mut out = vec![0.0; o * oh * ow];
        let mut scratch = Vec::new();
        conv2d(
            &g,
            &x,
            Weights::Plain(&wt),
            &Epilogue::none(),
            &mut out,
            &mut scratch,
            1,
        );
        // Integer-valued data: every product and sum is exact in f64.
        let want = naive(&g, &x, &wt);
        assert_eq!(out, want, "{g:?}");
        // The packed float32 path (exact too: sums stay below 2^24).
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let w32: Vec<f32> = wt.iter().map(|&v| v as f32).collect();
        if let (1, Some(p)) = (groups, PackedWeights::new(&w32, o, g.k())) {
            for threads in [1, 2] {
                let mut out32 = vec![f32::NAN; o * oh * ow];
                let mut scratch = Vec::new();
                conv2d(
                    &g,
                    &x32,
                    Weights::Packed(&p),
                    &Epilogue::none(),
                    &mut out32,
                    &mut scratch,
                    threads,
                );
                let got: Vec<f64> = out32.iter().map(|&v| f64::from(v)).collect();
                assert_eq!(got, want, "packed, {threads} threads, {g:?}");
            }
        }
    }

    #[test]
    fn gemm_path_matches_the_definition() {
        check(3, 9, 9, 4, [3, 3], [2, 2], [0; 4], [1, 1], 1);
        check(4, 7, 7, 5, [1, 1], [1, 1], [0; 4], [1, 1], 1);
        check(4, 7, 6, 3, [1, 7], [1, 1], [0, 3, 0, 3], [1, 1], 1);
        check(4, 6, 7, 3, [7, 1], [1, 1], [3, 0, 3, 0], [1, 1], 1);
        check(2, 8, 8, 2, [5, 5], [1, 1], [2, 2, 2, 2], [1, 1], 1);
        check(4, 9, 9, 4, [3, 3], [2, 1], [1, 0, 2, 1], [2, 1], 2);
        check(2, 5, 5, 3, [3, 3], [3, 3], [1, 1, 1, 1], [1, 1], 1);
        // Wide enough that im2col runs in bands of one output row.
        check(64, 3, 2000, 4, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1);
        // Column panels that straddle output rows, K past one block, stride 2.
        check(20, 23, 21, 13, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 1);
        check(16, 31, 29, 7, [5, 5], [2, 2], [2, 1, 2, 1], [1, 1], 1);
        check(40, 17, 17, 9, [1, 7], [1, 1], [0, 3, 0, 3], [1, 1], 1);
        // Padded above and below only: gathered from a copy with zero rows.
        check(40, 17, 17, 9, [7, 1], [1, 1], [3, 0, 3, 0], [1, 1], 1);
        check(6, 13, 9, 5, [3, 1], [1, 1], [2, 0, 1, 0], [2, 1], 1);
        // Unpadded, gathered block by block: panels straddling output rows,
        // stride phases with odd sizes, dilation across phases.
        check(3, 12, 70, 8, [3, 3], [1, 1], [0; 4], [1, 1], 1);
        check(5, 11, 10, 7, [3, 3], [2, 2], [0; 4], [2, 1], 1);
        check(6, 35, 35, 13, [3, 3], [2, 2], [0; 4], [1, 1], 1);
        check(2, 9, 8, 3, [2, 3], [3, 2], [0; 4], [1, 2], 1);
    }
}
