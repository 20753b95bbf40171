//! The direct path's kernel for layers with few products per output (K =
//! C·KH·KW at most [`MAX_K`]: the stem's Conv2d_1a, 27): output pixels in
//! the vector lanes, each output row stored straight from the sums. The
//! direct kernel's tiles hold channels in the lanes and transpose them into
//! the rows; over 27 products per output, the transposes and the 32 short
//! row stores per tile took as long as the products.
//!
//! The bits are the direct kernel's (and the GEMM path's): K fits one K
//! block, so each output is summed from zero in K's order (channel, kernel
//! row, kernel column) by FMAs, then gets the tail (`y · scale + shift`,
//! ReLU), with the same operations in the same order.

use super::conv::{ConvGeom, padded_size};
use super::sgemm::{KC, Tail};

/// The most products per output this kernel takes: a tile's sums stay in
/// registers over all of K, one K block ([`KC`]), and beyond a few dozen
/// products the direct kernel's transposes cost little.
pub const MAX_K: usize = 32;

/// Output channels per tile: 8 broadcast weights per K index, so a tile of
/// three pixel vectors holds 24 sums (with the inputs and a weight, 28 of
/// the 32 vector registers).
const CHANNELS: usize = 8;

/// True when [`rows`] runs this geometry: few products per output, one
/// group, stride 1 or 2 along the width (stride 2 reads an input split into
/// its even and odd columns, so every load is contiguous).
pub fn takes(g: &ConvGeom) -> bool {
    let k = g.c * g.kernel[0] * g.kernel[1];
    k <= MAX_K.min(KC) && g.groups == 1 && matches!(g.stride[1], 1 | 2)
}

/// The input as [`rows`] reads it: output pixel `ox` of output row `oy`
/// reads K index `k`'s tap at `x[oy·row + offs[k] + ox]`, or at stride 2
/// at `offs[k] + ox` in the row's taps split into even and odd columns.
#[derive(Debug)]
pub struct Input<'a> {
    x: &'a [f32],
    offs: Vec<u32>,
    row: usize,
    /// At stride 2, `(HP, WP)`: the input's rows are split per output row
    /// ([`split_rows`]).
    split: Option<(usize, usize)>,
}

impl<'a> Input<'a> {
    /// `xp` is the layer's input with its zero border (`[C, HP, WP]`).
    /// Panics if it is shorter than the geometry needs (a bug check).
    pub fn new(g: &ConvGeom, xp: &'a [f32]) -> Self {
        let (hp, wp) = padded_size(g);
        let [dy, dx] = g.dilation;
        let x = &xp[..g.c * hp * wp];
        let mut offs = Vec::with_capacity(g.c * g.kernel[0] * g.kernel[1]);
        let half = wp.div_ceil(2);
        for c in 0..g.c {
            for ky in 0..g.kernel[0] {
                for kx in 0..g.kernel[1] {
                    let (t, off) = (kx * dx, c * hp * wp + ky * dy * wp);
                    offs.push(if g.stride[1] == 1 {
                        (off + t) as u32
                    } else {
                        // Tap `(c, ky)`'s row, even columns then odd ones.
                        (((c * g.kernel[0] + ky) * 2 + t % 2) * half + t / 2) as u32
                    });
                }
            }
        }
        Input {
            x,
            offs,
            row: g.stride[0] * wp,
            split: (g.stride[1] == 2).then_some((hp, wp)),
        }
    }
}

/// Prefetches output row `oy`'s input rows at stride 2, a row ahead of
/// [`split_rows`]: the network's input is cold at every run (Conv2d_1a
/// 0.685 → 0.665 ms, in-process alternations). A prefetch reads nothing and
/// cannot fault.
fn prefetch_rows(g: &ConvGeom, x: &[f32], (hp, wp): (usize, usize), oy: usize) {
    #[cfg(target_arch = "x86_64")]
    for c in 0..g.c {
        for ky in 0..g.kernel[0] {
            let y = oy * g.stride[0] + ky * g.dilation[0];
            let p = x.as_ptr().wrapping_add((c * hp + y) * wp);
            for l in (0..wp).step_by(16) {
                // SAFETY: a prefetch reads nothing and cannot fault; SSE is
                // part of x86_64.
                #[allow(unsafe_code)]
                unsafe {
                    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(l).cast::<i8>());
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (g, x, hp, wp, oy);
}

/// Output row `oy`'s input rows (per channel, per kernel row) into `buf`,
/// each as its even columns, then its odd ones, `half` each (an odd width
/// leaves the last odd slot unused, zeroed): the loads of a stride-2 row's
/// pixels are then contiguous. Split row by row, not all at once, the
/// input's reads overlap the products (a pass of its own over Conv2d_1a's
/// 1 MB took 0.13 ms).
fn split_rows(g: &ConvGeom, x: &[f32], (hp, wp): (usize, usize), oy: usize, buf: &mut [f32]) {
    let half = wp.div_ceil(2);
    let mut dst = buf.chunks_exact_mut(2 * half);
    for c in 0..g.c {
        for ky in 0..g.kernel[0] {
            let y = oy * g.stride[0] + ky * g.dilation[0];
            let src = &x[(c * hp + y) * wp..][..wp];
            let Some(d) = dst.next() else {
                unreachable!("narrow: a split buffer for every tap row");
            };
            let (even, odd) = d.split_at_mut(half);
            for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(src.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
            if wp % 2 == 1 {
                even[half - 1] = src[wp - 1];
                odd[half - 1] = 0.0;
            }
        }
    }
}

/// Output rows `r0..r1` of the channels `c0..c0 + planes.len()` (`planes[i]`
/// holds channel `c0 + i`'s rows from `r0` on, row `r0` at `origin`, rows
/// `pitch` apart). `weights(p)` gives panel `p`'s weights, `[k, ldw]` for
/// `panel` channels (`super::direct`'s packing); with
/// `ahead`, each stored vector's line `ahead` floats on is claimed for
/// writing.
/// Panics if a slice is too short for the geometry (a bug check).
#[allow(clippy::too_many_arguments)]
pub fn rows<'w>(
    input: &Input<'_>,
    g: &ConvGeom,
    panel: usize,
    weights: impl Fn(usize) -> (&'w [f32], usize),
    tail: &Tail<'_>,
    planes: &mut [&mut [f32]],
    c0: usize,
    (r0, r1): (usize, usize),
    (origin, pitch, ahead): (usize, usize, usize),
) {
    let k = input.offs.len();
    let last = input.offs.iter().max().map_or(0, |&o| o as usize);
    // At stride 2, each row's taps split into this buffer.
    let mut split = vec![
        0f32;
        input
            .split
            .map_or(0, |(_, wp)| k / g.kernel[1] * 2 * wp.div_ceil(2))
    ];
    let reach = if input.split.is_some() {
        split.len()
    } else {
        input.x.len().saturating_sub((r1.max(1) - 1) * input.row)
    };
    assert!(
        last + g.ow <= reach,
        "narrow: a window reads outside the input"
    );
    assert!(
        r1 == r0
            || planes
                .iter()
                .all(|p| p.len() >= origin + (r1 - r0 - 1) * pitch + g.ow),
        "narrow: output rows past their planes"
    );
    assert!(
        c0.is_multiple_of(CHANNELS) && panel.is_multiple_of(CHANNELS),
        "narrow: channel groups cross panels"
    );
    // Pixel vectors per row, cut into tiles of three; a last tile of one
    // vector (8 sums, too few to hide the FMA latency) takes one of the
    // tile before it.
    let vectors = g.ow.div_ceil(16);
    let mut tiles: Vec<(usize, usize)> = (0..vectors)
        .step_by(3)
        .map(|v| (v, 3.min(vectors - v)))
        .collect();
    if let [.., a, b] = tiles.as_mut_slice()
        && b.1 == 1
    {
        a.1 = 2;
        *b = (b.0 - 1, 2);
    }
    let lanes = g.ow - (vectors - 1) * 16;
    for oy in r0..r1 {
        let x = match input.split {
            Some(size) => {
                if oy + 1 < r1 {
                    prefetch_rows(g, input.x, size, oy + 1);
                }
                split_rows(g, input.x, size, oy, &mut split);
                &split[..]
            }
            None => &input.x[oy * input.row..],
        };
        let at = origin + (oy - r0) * pitch;
        for (i, group) in planes.chunks_mut(CHANNELS).enumerate() {
            let c = c0 + i * CHANNELS;
            let (w, ldw) = weights(c / panel);
            let w = &w[c % panel..];
            assert!(
                ldw >= c % panel + CHANNELS && w.len() >= (k - 1) * ldw + CHANNELS,
                "narrow: weights of another shape"
            );
            for &(v, n) in &tiles {
                let full = if v + n == vectors { lanes } else { 16 };
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the weights exist only where AVX-512F was detected;
                // every read of `x` lies below `last + ow` (asserted: in the
                // row's split taps, or from row `r1 - 1` on), every store
                // inside its plane's row (asserted); `w` holds `k` rows of
                // `ldw`, the group's 8 channels inside each (asserted).
                #[allow(unsafe_code)]
                unsafe {
                    let kernel = match n {
                        1 => avx512::tile::<1>,
                        2 => avx512::tile::<2>,
                        _ => avx512::tile::<3>,
                    };
                    kernel(
                        x.as_ptr(),
                        &input.offs,
                        w.as_ptr(),
                        ldw,
                        16 * v,
                        full,
                        group,
                        at,
                        tail,
                        c,
                        ahead,
                    );
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (x, w, ldw, v, full, group, at, tail, c, ahead);
                    unreachable!("narrow: weights exist only on x86_64 with AVX-512F");
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::direct::avx512::tail_of;
    use super::{CHANNELS, Tail};

    /// One tile: `NV` pixel vectors from pixel `ox` (the last with `full`
    /// lanes) of the channels in `dst` (at most [`CHANNELS`], the layer's
    /// channels `c..`), each summed over all of `offs` from zero, then the
    /// tail, stored into `dst[j][at + ox..]`.
    ///
    /// # Safety
    /// AVX-512F is available; `x + offs[k] + ox + p` is readable for every
    /// pixel `p` stored; `w + k·ldw + j` for `j <` [`CHANNELS`]; `dst[j]`
    /// holds `at + ox + 16·(NV - 1) + full` floats; `tail`'s parts hold
    /// channel `c + j`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile<const NV: usize>(
        x: *const f32,
        offs: &[u32],
        w: *const f32,
        ldw: usize,
        ox: usize,
        full: usize,
        dst: &mut [&mut [f32]],
        at: usize,
        tail: &Tail<'_>,
        c: usize,
        ahead: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            let last: __mmask16 = ((1u32 << full) - 1) as __mmask16;
            let mask = |v: usize| if v + 1 == NV { last } else { 0xffff };
            let mut acc = [[_mm512_setzero_ps(); NV]; CHANNELS];
            let mut wp = w;
            for &off in offs {
                let px = x.add(off as usize + ox);
                let mut xv = [_mm512_setzero_ps(); NV];
                for (v, r) in xv.iter_mut().enumerate() {
                    *r = _mm512_maskz_loadu_ps(mask(v), px.add(16 * v));
                }
                for (j, row) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*wp.add(j));
                    for (s, a) in row.iter_mut().zip(&xv) {
                        // fma(x, w, s): the direct kernel's fma(w, x, s).
                        *s = _mm512_fmadd_ps(*a, b, *s);
                    }
                }
                wp = wp.add(ldw);
            }
            for (j, (row, out)) in acc.iter().zip(dst.iter_mut()).enumerate() {
                let scale = tail.scale.map(|s| _mm512_set1_ps(s[c + j]));
                let shift = tail.shift.map(|s| _mm512_set1_ps(s[c + j]));
                for (v, s) in row.iter().enumerate() {
                    let y = tail_of(*s, scale, shift, tail.relu);
                    let p = out.as_mut_ptr().add(at + ox + 16 * v);
                    _mm512_mask_storeu_ps(p, mask(v), y);
                    if ahead > 0 {
                        // A prefetch never faults, wherever it points.
                        _mm_prefetch::<_MM_HINT_ET0>(p.wrapping_add(ahead).cast::<i8>());
                    }
                }
            }
        }
    }
}
