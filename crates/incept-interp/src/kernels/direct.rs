//! Direct float32 convolution on AVX-512 for layers with wide output rows
//! (the stem and the 35x35 blocks) and for the 17x17 1x1 and 7x1 layers,
//! whose planes run as one row (see [`fits`]): output channels in the
//! vector, output pixels broadcast straight from the input (no im2col, no
//! gather), each tile transposed in registers into the NCHW output. On the
//! wide layers the GEMM path spent up to a fifth of its time unfolding the
//! input; at 17x17 it wastes 15 of every 304 lanes.
//!
//! Layers with few products per output (Conv2d_1a) run their rows with
//! pixels in the vector instead ([`super::narrow`]).
//!
//! The sums are the GEMM path's bit for bit: K in the im2col order
//! (channel, kernel row, kernel column), each output summed in registers
//! over blocks of [`KC`] products, the first block stored and each later
//! one added into the output, then the tail (`y · scale + shift`, ReLU).

use super::conv::{ConvGeom, pad_into, padded_size, zero_few};
use super::narrow;
use super::pool::PoolGeom;
use super::sgemm::{KC, Tail};
use super::winograd::WinogradWeights;
use incept_ir::op::PoolKind;
use std::borrow::Cow;

/// Output channels per panel: two 16-lane vectors, so a tile is 14 pixels
/// by 32 channels and each K index loads 128 bytes of weights for its 28
/// products (with 64-channel panels, 6 pixels and 256 bytes, the 35x35
/// layers ran 1-2% slower: the weights stream from L2 for every tile).
const PANEL: usize = 32;

/// Convolution weights `[o, k]` packed for [`conv`]: per panel of 32 output
/// channels, `[k, width]` (output channels last), `width` the panel's
/// channels rounded up to 16 (zero past `o`).
#[derive(Debug)]
pub struct DirectWeights {
    data: Vec<f32>,
    o: usize,
    k: usize,
    /// Every weight is finite, so a product with a padding zero is a zero
    /// ([`EdgeTaps`] may skip it).
    finite: bool,
    /// The taps of the geometry these weights first ran with, kept (built
    /// at every call, a 17x17 7x1's took 2-4% of it).
    taps: std::sync::OnceLock<(ConvGeom, EdgeTaps)>,
    /// The same weights transformed for the Winograd path, which then runs
    /// the layer instead ([`Self::with_winograd`]).
    winograd: Option<WinogradWeights>,
}

impl DirectWeights {
    /// Packs `w` (`[o, k]`), or `None` when this CPU has no AVX-512F.
    pub fn new(w: &[f32], o: usize, k: usize) -> Option<Self> {
        if !super::sgemm::available() || o == 0 || k == 0 || w.len() != o * k {
            return None;
        }
        let mut data = vec![0f32; k * o.div_ceil(16) * 16];
        for (oc, row) in w.chunks_exact(k).enumerate() {
            let (p, j) = (oc / PANEL, oc % PANEL);
            let width = panel_width(o, p);
            for (kk, &v) in row.iter().enumerate() {
                data[p * PANEL * k + kk * width + j] = v;
            }
        }
        let finite = w.iter().all(|v| v.is_finite());
        Some(DirectWeights {
            data,
            o,
            k,
            finite,
            taps: std::sync::OnceLock::new(),
            winograd: None,
        })
    }

    /// These weights (`w`, `[o, k]` as given to [`Self::new`]) transformed
    /// for [`super::winograd::conv`] instead, where it takes `g`: the
    /// packed copy is then dropped (one copy of the weights), and only the
    /// Winograd path may run them.
    pub fn with_winograd(mut self, w: &[f32], g: &ConvGeom) -> Self {
        if super::winograd::takes(g) {
            self.winograd = WinogradWeights::new(w, g.o, g.c);
            if self.winograd.is_some() {
                self.data = Vec::new();
            }
        }
        self
    }

    /// The Winograd weights, when that path runs the layer.
    pub fn winograd(&self) -> Option<&WinogradWeights> {
        self.winograd.as_ref()
    }

    /// Panel `p`'s packed weights and their row length. Panics on weights
    /// the Winograd path runs (a bug check: they keep no packed copy).
    fn panel(&self, p: usize) -> (&[f32], usize) {
        assert!(
            self.winograd.is_none(),
            "direct: weights of the Winograd path"
        );
        let width = panel_width(self.o, p);
        (&self.data[p * PANEL * self.k..][..self.k * width], width)
    }
}

/// Channels of panel `p` of `o`, rounded up to 16.
fn panel_width(o: usize, p: usize) -> usize {
    (o - p * PANEL).min(PANEL).div_ceil(16) * 16
}

/// True when [`conv`] takes this geometry and beats the GEMM path on it,
/// as measured on Inception V3 with `examples/conv_profile` and `incept
/// bench`:
/// - a window wider than one pixel and output rows of 17 pixels or more,
///   row by row: the stem's Conv2d_1a, 2a, 2b and 4a (0.57 → 0.42 ms, 2.18
///   → 1.73, 3.90 → 3.75, 5.95 → 5.65), the 35x35 blocks' 5x5 and 3x3
///   convolutions (0.95 → 0.76, 0.96 → 0.83, 0.63 → 0.56), and at 17x17 the
///   stride-2 reductions into it and the 1x7s (a tile of 9 pixels and one
///   of 8 per row: Mixed_6a.branch3x3 2.78 → 2.57 ms with 12 + 6, 2.52 →
///   2.48 with 12 + 5, 2.48 → 2.34 with 9 + 8; branch3x3dbl_3 0.30 → 0.21,
///   a 192-channel 1x7 0.71 → 0.66; with a tile of 8 after a tile of 12
///   this path had been 20-35% slower there);
/// - a plane that runs as one row ([`flat`]) and on which the GEMM path,
///   16 pixels to a vector, would waste more than 3% of its lanes: the
///   17x17 blocks' 1x1 and 7x1 convolutions (289 pixels, 19 vectors:
///   0.377 → 0.353 ms for a 768 → 192 1x1, 0.678 → 0.620 for a 192-channel
///   7x1);
/// - a stride-2 window over rows of 8 pixels or more, row by row, each row
///   one tile: the reductions into 8x8, whose input the GEMM path unfolds
///   first (Mixed_7a.branch3x3_2 0.38 → 0.34 ms, branch7x7x3_4 0.26 →
///   0.21; at 2 threads 0.24 → 0.19 and 0.17 → 0.12).
///
/// - the 35x35 blocks' 1x1s as one row too (1225 pixels), where the GEMM's
///   6-row tiles leave 4 and 2 rows over on 64- and 32-channel layers: the
///   13 of them 2.13 → 2.07 ms at 1 thread (3 x 8 in-process alternations,
///   -0.02..-0.09), 1.115 → 1.06 at 2.
///
/// At 8x8 with stride 1 (64 pixels, no waste in the GEMM) the GEMM stays
/// faster (the 8x8 blocks' 1x1s: 2.35 → 2.75 ms on this path), and at
/// 73x73 (Conv2d_3b, 0.27 → 0.28).
pub fn fits(g: &ConvGeom) -> bool {
    let taps = g.kernel[0] * g.kernel[1];
    let plane = g.oh * g.ow;
    // Lanes the GEMM path computes in vain: its pixels run 16 to a vector.
    let ragged = plane.next_multiple_of(16) - plane;
    let rows = g.ow >= 17 || (g.stride[1] == 2 && g.ow >= 8);
    let whole = ragged * 32 > plane || (1024..=2048).contains(&plane);
    supports(g) && ((taps > 1 && rows) || (flat(g) && whole))
}

/// True when [`conv`] can run this geometry at all: one group, stride 1 or
/// 2 along the width, and rows (or a [`flat`] plane) that the tiles cover
/// without starting before them.
fn supports(g: &ConvGeom) -> bool {
    // Offsets into the (padded) input are 32-bit.
    let small = u32::try_from(scratch_len(g).max(g.c * g.h * g.w)).is_ok();
    g.groups == 1
        && matches!(g.stride[1], 1 | 2)
        && (covers(g, g.ow) || (flat(g) && covers(g, g.oh * g.ow)))
        && small
}

/// True when the tiles of every panel cover a span of `n` pixels without
/// starting before it.
fn covers(g: &ConvGeom, n: usize) -> bool {
    (0..g.o.div_ceil(PANEL)).all(|p| {
        let width = panel_width(g.o, p);
        n >= tile_pixels(width) || rest_tile(n, width) <= n
    })
}

/// Pixels per tile for a panel `width` (16 or 32) channels wide: 16 or 28
/// sums in registers (28, two weight vectors and a broadcast: 31 of the 32
/// vector registers, no spills). 14 pixels rather than 12: bench median
/// -0.5 ms at 1 thread, unchanged at 2 (in-process alternations, 30 pairs;
/// the stem's and the flat 17x17 layers' tiles gain, with fewer per-tile
/// transposes and K-block stores per product).
fn tile_pixels(width: usize) -> usize {
    if width > 16 { 14 } else { 16 }
}

/// Pixels of the tile that ends a span whose last `rest` pixels no whole
/// tile covers: `rest` itself where its sums are enough to hide the FMA's
/// latency (10 or more), else the next even count, which may overlap the
/// tile before by a pixel.
fn rest_tile(rest: usize, width: usize) -> usize {
    let sums = rest * width / 16;
    if sums >= 10 {
        rest
    } else {
        rest.next_multiple_of(2)
    }
}

/// Where a direct convolution's input and output lie: plain `[C, H, W]`
/// planes, or planes that hold a zero border around the values, so that a
/// padded layer reads its producer's output in place instead of copying it
/// with a border first (Conv2d_2b's 2.8 MB copy took 0.17 ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The input planes are `[H + pads, W + pads]` with the layer's own
    /// padding, borders zero (written so by the producer).
    pub padded_input: bool,
    /// Borders `[top, left, bottom, right]` to write the output inside
    /// (the consumer's padding); they are zeroed here.
    pub out_pads: [usize; 4],
}

/// True when [`conv`] can write `g`'s output inside borders `pads`: rows run
/// one by one, or the plane as one row with no side borders.
pub fn writes_padded(g: &ConvGeom, pads: [usize; 4]) -> bool {
    fits(g) && (!flat(g) || (pads[1] == 0 && pads[3] == 0))
}

/// Floats of scratch [`conv`] needs: the input with its zero border, when
/// the layer is padded.
pub fn scratch_len(g: &ConvGeom) -> usize {
    if g.pads == [0; 4] {
        0
    } else {
        let (hp, wp) = padded_size(g);
        g.c * hp * wp
    }
}

/// True when [`conv`] runs this geometry's rows with [`narrow::rows`].
fn narrow(g: &ConvGeom) -> bool {
    narrow::takes(g) && !flat(g)
}

/// `out = tail(conv(x, w))`, `out` `[O, OH, OW]` (inside `layout`'s
/// borders). Padded inputs are copied once into `scratch` ([`scratch_len`]
/// floats) with their zero border, unless `layout` says they hold it. Two
/// threads split the output rows (a [`flat`] plane's tiles), or the channel
/// panels where those halve more evenly ([`split_channels`]), in proportion
/// to their speeds.
/// Panics if a slice is too short for the geometry, or if `layout` asks
/// for side borders on a flat plane (bug checks).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    g: &ConvGeom,
    x: &[f32],
    w: &DirectWeights,
    tail: &Tail<'_>,
    out: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
    layout: Layout,
) {
    let [top, left, bottom, right] = layout.out_pads;
    assert!(
        !flat(g) || left + right == 0,
        "direct: a flat plane written with side borders"
    );
    let pitch = g.ow + left + right;
    let padded_plane = (g.oh + top + bottom) * pitch;
    assert!(out.len() >= g.o * padded_plane, "direct: output too small");
    let threads = super::balance::threads(threads);
    let (xp, offs, taps) = prepare(g, x, w, tail, scratch, threads, layout.padded_input);
    let narrow = narrow(g).then(|| narrow::Input::new(g, xp));
    let plane = g.oh * g.ow;
    let args = RowArgs {
        narrow: narrow.as_ref(),
        g,
        xp,
        wp: padded_size(g).1,
        offs: &offs,
        taps: &taps,
        w,
        tail,
        pitch,
        ahead: if flat(g) { 0 } else { AHEAD_ROWS * pitch },
    };
    let widest = tile_pixels(w.panel(0).1);
    let panels = g.o.div_ceil(PANEL);
    // What two threads may split: rows, or a flat plane's tiles.
    let (unit, units) = if flat(g) {
        (widest, plane / widest)
    } else {
        (g.ow, g.oh)
    };
    let mut planes: Vec<&mut [f32]> = out[..g.o * padded_plane].chunks_mut(padded_plane).collect();
    if layout.out_pads != [0; 4] {
        for p in &mut planes {
            zero_border(p, (g.oh, g.ow), layout.out_pads);
        }
    }
    // Where output pixel 0 lies in a channel's plane.
    let origin = top * pitch + left;
    let cut = Cut {
        flat: flat(g),
        origin,
        top,
        left,
        ow: g.ow,
        pitch,
        plane,
    };
    if super::balance::is_elastic() && args.taps.interior(g.ow).is_some() && panels >= 2 {
        // A fork side's last step with column tiles, which run down all the
        // rows: in chunks of channel panels, 5-6 on the 1x7s (chunks of
        // rows would cut the columns' tiles short: two chunks of 8-9 rows
        // measured the same, 0.996-1.001 in alternating runs), which the
        // other thread takes from the back when its side is done.
        let chunks: Vec<(usize, &mut [&mut [f32]])> =
            planes.chunks_mut(PANEL).enumerate().collect();
        super::balance::both_ends(chunks, |(p, c)| pixels_of(c, &args, p, (0, plane), origin));
    } else if super::balance::is_elastic() && units >= 2 {
        // A fork side's last step: in chunks of rows (tiles), which the
        // other thread takes from the back when its side is done.
        let n = units.min(8);
        let bounds: Vec<usize> = (0..n).map(|i| (i * units / n) * unit).collect();
        super::balance::both_ends(cut.parts(planes, &bounds), |(lo, hi, at, mut c)| {
            pixels_of(&mut c, &args, 0, (lo, hi), at)
        });
    } else if threads >= 2 && split_channels(units, panels) {
        let split = super::balance::first_share(panels);
        let (a, b) = planes.split_at_mut(split * PANEL);
        super::balance::join(
            (split, || pixels_of(a, &args, 0, (0, plane), origin)),
            (panels - split, || {
                pixels_of(b, &args, split, (0, plane), origin)
            }),
        );
    } else if threads >= 2 && units >= 2 {
        let split = super::balance::first_share(units) * unit;
        let mut two = cut.parts(planes, &[0, split]).into_iter();
        if let (Some((_, _, at_a, mut a)), Some((_, _, at_b, mut b))) = (two.next(), two.next()) {
            super::balance::join(
                (split, || pixels_of(&mut a, &args, 0, (0, split), at_a)),
                (plane - split, || {
                    pixels_of(&mut b, &args, 0, (split, plane), at_b)
                }),
            );
        }
    } else {
        pixels_of(&mut planes, &args, 0, (0, plane), origin);
    }
}

/// Where [`conv`]'s output planes are cut between parts of its pixels.
struct Cut {
    flat: bool,
    /// Where pixel 0 lies in a plane.
    origin: usize,
    top: usize,
    left: usize,
    ow: usize,
    pitch: usize,
    /// Pixels per plane.
    plane: usize,
}

impl Cut {
    /// Where pixel `px` (a part's first) starts its part of a plane: the
    /// pixel itself on a flat plane, its row's left border for rows.
    fn at(&self, px: usize) -> usize {
        if self.flat {
            self.origin + px
        } else {
            (self.top + px / self.ow) * self.pitch
        }
    }

    /// The planes cut at pixels `bounds` (ascending, the first 0): per part,
    /// its first and end pixel, where its first pixel lies in its slices,
    /// and its slice of each plane (the last part to the plane's end).
    fn parts<'o>(
        &self,
        planes: Vec<&'o mut [f32]>,
        bounds: &[usize],
    ) -> Vec<(usize, usize, usize, Vec<&'o mut [f32]>)> {
        let n = bounds.len();
        let mut parts: Vec<(usize, usize, usize, Vec<&'o mut [f32]>)> = (0..n)
            .map(|i| {
                let hi = bounds.get(i + 1).copied().unwrap_or(self.plane);
                let first = match i {
                    0 => self.origin,
                    _ if self.flat => 0,
                    _ => self.left,
                };
                (bounds[i], hi, first, Vec::with_capacity(planes.len()))
            })
            .collect();
        for p in planes {
            let mut rest = p;
            let mut at = 0;
            for (i, part) in parts.iter_mut().enumerate() {
                match bounds.get(i + 1) {
                    Some(&next) => {
                        let (mine, tail) =
                            std::mem::take(&mut rest).split_at_mut(self.at(next) - at);
                        part.3.push(mine);
                        rest = tail;
                        at = self.at(next);
                    }
                    None => part.3.push(std::mem::take(&mut rest)),
                }
            }
        }
        parts
    }
}

/// Zeroes the borders `[top, left, bottom, right]` of an `(h, w)` plane
/// held inside them.
pub(crate) fn zero_border(
    p: &mut [f32],
    (h, w): (usize, usize),
    [top, left, bottom, right]: [usize; 4],
) {
    let pitch = w + left + right;
    let (head, rest) = p.split_at_mut(top * pitch);
    head.fill(0.0);
    let (rows, tail) = rest.split_at_mut(h * pitch);
    tail[..bottom * pitch].fill(0.0);
    if left + right > 0 {
        for row in rows.chunks_exact_mut(pitch) {
            // Stores, not a `memset` call per side per row.
            zero_few(&mut row[..left]);
            zero_few(&mut row[left + w..]);
        }
    }
}

/// What [`conv`] and [`conv_pool`] share before their rows: checks of the
/// slices, the input with its zero border (copied, or the input itself
/// when `padded_input` or unpadded), the offsets of K's taps, in K's order
/// (channel, kernel row, kernel column), with the assertion that every
/// window lies inside that input, and the taps of the tiles at the plane's
/// edges ([`EdgeTaps`]).
fn prepare<'a>(
    g: &ConvGeom,
    x: &'a [f32],
    w: &'a DirectWeights,
    tail: &Tail<'_>,
    scratch: &'a mut [f32],
    threads: usize,
    padded_input: bool,
) -> (&'a [f32], Vec<u32>, Cow<'a, EdgeTaps>) {
    let [kh, kw] = g.kernel;
    let (hp, wp) = padded_size(g);
    let (ih, iw) = if padded_input { (hp, wp) } else { (g.h, g.w) };
    assert!(
        w.o == g.o && w.k == g.c * kh * kw && x.len() >= g.c * ih * iw,
        "direct: weights or input of another shape"
    );
    for v in [tail.scale, tail.shift].into_iter().flatten() {
        assert!(v.len() >= g.o, "direct: tail shorter than the channels");
    }
    let xp: &[f32] = if g.pads == [0; 4] || padded_input {
        &x[..g.c * ih * iw]
    } else {
        let scratch = &mut scratch[..g.c * hp * wp];
        if threads >= 2 && g.c >= 2 && scratch.len() >= PARALLEL_COPY {
            // Halves of the channels on the two threads: alone, the caller
            // copied Conv2d_2b's 2.8 MB while the other thread waited.
            let half = g.c / 2;
            let (sa, sb) = scratch.split_at_mut(half * hp * wp);
            let (xa, xb) = x[..g.c * g.h * g.w].split_at(half * g.h * g.w);
            super::balance::join_spinning(|| pad_into(g, xa, sa), || pad_into(g, xb, sb));
        } else {
            pad_into(g, x, scratch);
        }
        scratch
    };
    // Nested loops rather than divisions per index: this runs at every call.
    let mut offs: Vec<u32> = Vec::with_capacity(w.k);
    for c in 0..g.c {
        for ky in 0..kh {
            for kx in 0..kw {
                // Below `c·hp·wp`, which `supports` keeps within u32.
                offs.push((c * hp * wp + ky * g.dilation[0] * wp + kx * g.dilation[1]) as u32);
            }
        }
    }
    // The farthest element any window reads: no tile reaches past its
    // row's end, so this is the last pixel's window.
    let last = ((g.oh - 1) * g.stride[0]) * wp
        + (g.ow - 1) * g.stride[1]
        + offs.iter().max().map_or(0, |&o| o as usize);
    assert!(last < xp.len(), "direct: a window reads outside the input");
    let (first, taps) = w
        .taps
        .get_or_init(|| (g.clone(), EdgeTaps::new(g, w.finite)));
    let taps = if first == g {
        Cow::Borrowed(taps)
    } else {
        Cow::Owned(EdgeTaps::new(g, w.finite))
    };
    (xp, offs, taps)
}

/// K indices per K block ([`KC`] of them), each from its block's start.
type PerBlock = Vec<Vec<u32>>;

/// The kernel rows and columns that a tile needs, where the layer pads its
/// input. A tile whose output rows all read a kernel row in the zero border
/// skips that row's K indices, as onnxruntime's NCHWc kernels skip the
/// padding (per pixel: 10% of a 17x17 7x1's products, where the GEMM path
/// and this one computed them). A tile of 14 pixels on a flat 17x17 plane
/// spans two rows, so the 7x1s skip 8%; the 35x35 3x3s and 5x5s 2-3%. Side
/// padding is skipped by column tiles ([`column_into`]), whose pixels share
/// their column and so their kernel columns: the 1x7s skip 10%.
/// The bits stay the GEMM path's: a float sum never holds -0 (it starts
/// at +0, and +0 + -0 and x + -x are +0), so adding a zero product changes
/// nothing, and a product with a padding zero is a zero when the weight is
/// finite (only layers whose weights all are skip).
#[derive(Clone, Debug)]
struct EdgeTaps {
    /// Kernel rows and kernel columns.
    y: Axis,
    x: Axis,
    /// Input channels.
    c: usize,
    /// Per pair of ranges of kernel rows and columns that some tile may
    /// need, other than all of both: per K block ([`KC`] indices), its
    /// indices in both ranges, from the block's start (built when first
    /// asked for).
    classes: Vec<(Ranges, std::sync::OnceLock<PerBlock>)>,
}

/// Kernel rows `lo..hi` and kernel columns `lo..hi`.
type Ranges = ([usize; 2], [usize; 2]);

/// One axis of a layer's window, for [`EdgeTaps`].
#[derive(Clone, Copy, Debug)]
struct Axis {
    /// Whether tiles skip along it.
    on: bool,
    /// The kernel's extent, the input's, the padding before, the stride and
    /// the dilation.
    k: usize,
    n: usize,
    pad: usize,
    s: usize,
    d: usize,
}

impl Axis {
    /// Kernel taps `lo..hi` that output row (column) `o` reads inside the
    /// input; all of them when this axis does not skip.
    fn range(&self, o: usize) -> [usize; 2] {
        if !self.on {
            return [0, self.k];
        }
        let y0 = o * self.s;
        let lo = self.pad.saturating_sub(y0).div_ceil(self.d);
        let hi = (self.n + self.pad).saturating_sub(y0).div_ceil(self.d);
        [lo.min(self.k), hi.min(self.k)]
    }

    /// Taps of a tile over outputs `a..=b`: `range(b).0..range(a).1` (both
    /// ends fall as `o` grows; a superset of the union when the ranges of
    /// `a..=b` leave gaps).
    fn span(&self, a: usize, b: usize) -> [usize; 2] {
        [self.range(b)[0], self.range(a)[1]]
    }

    /// Every span a tile over outputs `0..out` can have.
    fn spans(&self, out: usize) -> Vec<[usize; 2]> {
        let mut los: Vec<usize> = (0..out).map(|o| self.range(o)[0]).collect();
        let mut his: Vec<usize> = (0..out).map(|o| self.range(o)[1]).collect();
        los.dedup();
        his.dedup();
        los.iter()
            .flat_map(|&lo| his.iter().map(move |&hi| [lo, hi]))
            .collect()
    }
}

impl EdgeTaps {
    fn new(g: &ConvGeom, finite: bool) -> Self {
        let [kh, kw] = g.kernel;
        let axis = |i: usize, on: bool| Axis {
            on,
            k: g.kernel[i],
            n: [g.h, g.w][i],
            pad: g.pads[i],
            s: g.stride[i],
            d: g.dilation[i],
        };
        let y = axis(0, finite && kh > 1 && g.pads[0] + g.pads[2] > 0);
        let x = axis(1, finite && columns(g));
        let mut ys = y.spans(g.oh);
        let mut xs = x.spans(g.ow);
        ys.push([0, kh]);
        xs.push([0, kw]);
        ys.dedup();
        xs.dedup();
        let classes = ys
            .iter()
            .flat_map(|&yr| xs.iter().map(move |&xr| (yr, xr)))
            .filter(|&r| r != ([0, kh], [0, kw]))
            .map(|r| (r, std::sync::OnceLock::new()))
            .collect();
        EdgeTaps {
            y,
            x,
            c: g.c,
            classes,
        }
    }

    /// The K indices of a tile over output rows `rows` and columns `cols`
    /// (first and last each), per K block, or `None` for all of them.
    fn some(&self, rows: [usize; 2], cols: [usize; 2]) -> Option<&[Vec<u32>]> {
        // Most layers have nothing to skip: no work per tile for them.
        if self.classes.is_empty() {
            return None;
        }
        let key = (self.y.span(rows[0], rows[1]), self.x.span(cols[0], cols[1]));
        let (_, blocks) = self.classes.iter().find(|(k, _)| *k == key)?;
        Some(blocks.get_or_init(|| self.indices(key)))
    }

    /// The K indices in kernel rows `y0..y1` and columns `x0..x1`, per K
    /// block.
    fn indices(&self, ([y0, y1], [x0, x1]): Ranges) -> PerBlock {
        let (kh, kw) = (self.y.k, self.x.k);
        let mut blocks: PerBlock = vec![Vec::new(); (self.c * kh * kw).div_ceil(KC)];
        for c in 0..self.c {
            for ky in y0..y1 {
                for i in (c * kh + ky) * kw + x0..(c * kh + ky) * kw + x1 {
                    // Below `k`, within u32 (`supports`).
                    blocks[i / KC].push((i % KC) as u32);
                }
            }
        }
        blocks
    }

    /// With column tiles, the output columns `c0..c1` whose pixels read no
    /// side padding (row tiles run there, column tiles elsewhere).
    fn interior(&self, ow: usize) -> Option<(usize, usize)> {
        if !self.x.on {
            return None;
        }
        let c0 = (0..ow).find(|&o| self.x.range(o)[0] == 0).unwrap_or(ow);
        let c1 = (c0..ow)
            .rev()
            .find(|&o| self.x.range(o)[1] == self.x.k)
            .map_or(c0, |o| o + 1);
        Some((c0, c1))
    }
}

/// True when a layer skips its side padding with column tiles: one kernel
/// row (the 1x7s: 8-9% faster), side padding, rows one by one at stride 1.
/// Not the 35x35 3x3s and 5x5s: with two or four of 35 columns to skip in,
/// they ran 1-3% slower (their interior rows in narrower tiles, and each
/// column tile's pixels stored one by one; in-process alternation).
fn columns(g: &ConvGeom) -> bool {
    g.kernel[0] == 1 && g.kernel[1] > 1 && g.pads[1] + g.pads[3] > 0 && g.stride[1] == 1 && !flat(g)
}

/// True when [`conv_pool`] can pool a layer's output with `p`: a 3x3
/// stride-2 max pooling without padding (the stem's two), on a layer that
/// runs row by row.
pub fn pools(g: &ConvGeom, p: &PoolGeom) -> bool {
    p.kind == PoolKind::Max
        && super::pool::is_valid_3x3_s2(p)
        && (p.c, p.h, p.w) == (g.o, g.oh, g.ow)
        && fits(g)
        && !flat(g)
}

/// `out = maxpool(tail(conv(x, w)))` for a pooling `p` that [`pools`]
/// takes, `out` `[O, POH, POW]`: the convolution's rows go through a ring
/// of three rows per channel and are pooled as they complete, so the
/// convolution's whole output (Conv2d_2b's 5.5 MB) is never written out
/// and read back. The same bits as [`conv`] and then the pooling. With
/// `padded_input`, `x` holds the layer's zero border already
/// ([`Layout::padded_input`]).
/// Panics if a slice is too short for the geometry (a bug check).
#[allow(clippy::too_many_arguments)]
pub fn conv_pool(
    g: &ConvGeom,
    x: &[f32],
    w: &DirectWeights,
    tail: &Tail<'_>,
    p: &PoolGeom,
    out: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
    padded_input: bool,
) {
    assert!(pools(g, p), "direct: a pooling this path does not take");
    let plane = p.oh * p.ow;
    assert!(out.len() >= g.o * plane, "direct: output too small");
    let threads = super::balance::threads(threads);
    let (xp, offs, taps) = prepare(g, x, w, tail, scratch, threads, padded_input);
    let args = RowArgs {
        g,
        xp,
        wp: padded_size(g).1,
        offs: &offs,
        taps: &taps,
        w,
        tail,
        pitch: g.ow,
        // The ring's rows stay in L1 and L2.
        ahead: 0,
        narrow: None,
    };
    let mut planes: Vec<&mut [f32]> = out[..g.o * plane].chunks_mut(plane).collect();
    let panels = g.o.div_ceil(PANEL);
    // Two threads split an even number of channel panels, four or more
    // (Conv2d_4a's six: 2.94 → 2.81 ms), else the pooled rows, with the
    // convolution row the two parts share computed by both (Conv2d_2b's two
    // panels: 1.84 ms by rows, 1.88 by panels, each thread then reading the
    // whole input). With rows, 4a's 35 split 17 + 18, and each part also
    // computed a shared row.
    if threads >= 2 && panels >= 4 && panels.is_multiple_of(2) {
        let split = super::balance::first_share(panels);
        let (a, b) = planes.split_at_mut(split * PANEL);
        super::balance::join(
            (split, || pooled_rows(a, &args, p, (0, p.oh), 0)),
            (panels - split, || {
                pooled_rows(b, &args, p, (0, p.oh), split)
            }),
        );
    } else if threads >= 2 && p.oh >= 2 {
        let split = super::balance::first_share(p.oh);
        let (mut a, mut b): (Vec<&mut [f32]>, Vec<&mut [f32]>) = planes
            .into_iter()
            .map(|q| q.split_at_mut(split * p.ow))
            .unzip();
        super::balance::join(
            (split, || pooled_rows(&mut a, &args, p, (0, split), 0)),
            (p.oh - split, || {
                pooled_rows(&mut b, &args, p, (split, p.oh), 0)
            }),
        );
    } else {
        pooled_rows(&mut planes, &args, p, (0, p.oh), 0);
    }
}

/// Pooled rows `lo..hi` of [`conv_pool`] for the channels of panels `p0..`
/// (one slice each in `planes`, starting at row `lo`).
fn pooled_rows(
    planes: &mut [&mut [f32]],
    a: &RowArgs<'_>,
    p: &PoolGeom,
    (lo, hi): (usize, usize),
    p0: usize,
) {
    let (o, ow) = (planes.len(), a.g.ow);
    // Convolution row `r` of channel `c` at `((r % 3)·o + c)·ow`.
    let mut ring = vec![0f32; 3 * o * ow];
    let mut done: Option<usize> = None;
    for py in lo..hi {
        for r in 2 * py..2 * py + 3 {
            if done.is_some_and(|d| r <= d) {
                continue;
            }
            let slot = &mut ring[(r % 3) * o * ow..][..o * ow];
            let mut dst: Vec<&mut [f32]> = slot.chunks_mut(ow).collect();
            span_into(a, r * a.g.stride[0] * a.wp, (0, ow), &mut dst, p0, Some(r));
            done = Some(r);
        }
        let row = |r: usize, c: usize| &ring[((r % 3) * o + c) * ow..][..ow];
        for (c, plane) in planes.iter_mut().enumerate() {
            let rows = (row(2 * py, c), row(2 * py + 1, c), row(2 * py + 2, c));
            let dst = &mut plane[(py - lo) * p.ow..][..p.ow];
            let pooled = super::pool::max_row_3x3_s2(rows, dst);
            assert!(pooled, "direct: pooling needs AVX-512F, as the weights do");
            // The pooled output is as cold as a whole convolution's (see
            // `AHEAD_ROWS`): claim this channel's next row now.
            prefetch_for_write(dst.as_ptr().wrapping_add(p.ow), p.ow);
        }
    }
}

/// Floats of padded copy from which two threads share the copying.
const PARALLEL_COPY: usize = 1 << 17;

/// True when two threads should split the channel panels rather than the
/// rows (or the tiles of a [`flat`] plane): there are few rows (17, or 24
/// tiles; locality favours rows on larger planes) and the panels halve at
/// least as evenly. Measured at 17x17 (`conv_profile`, 2 threads): 12
/// panels (Mixed_6a.branch3x3) 1.34 → 1.26 ms, 6 panels (a 192-channel
/// 1x7) 0.355 → 0.33; with 5 or 3 panels (160, 96 channels) the uneven
/// halves made it 10-20% slower than 9 and 8 rows. On the flat 1x1s and
/// 7x1s (24 tiles, an even number of panels: a tie) panels won by 0.22 ms
/// over the four blocks (a 192-channel 7x1 0.40 → 0.36).
fn split_channels(rows: usize, panels: usize) -> bool {
    rows < 32 && panels >= 2 && panels.div_ceil(2) * rows <= rows.div_ceil(2) * panels
}

/// True when the output plane can run as one row of `oh·ow` pixels: a
/// window one column wide, stride 1, no padding at the sides, so output
/// pixel `p` reads the (vertically padded) input at `p` plus its tap's
/// offset, across row ends too. Narrow planes (17x17) then tile without
/// ragged row ends.
fn flat(g: &ConvGeom) -> bool {
    g.kernel[1] == 1 && g.stride == [1, 1] && g.pads[1] == 0 && g.pads[3] == 0
}

/// What every output row of a layer shares.
struct RowArgs<'a> {
    g: &'a ConvGeom,
    xp: &'a [f32],
    wp: usize,
    offs: &'a [u32],
    /// The K indices of tiles at the plane's edges.
    taps: &'a EdgeTaps,
    w: &'a DirectWeights,
    tail: &'a Tail<'a>,
    /// Floats from one output row to the next (the row and its borders).
    pitch: usize,
    /// Floats past a tile's pixels in each channel's output at which the
    /// tile claims the cache lines for writing ([`AHEAD_ROWS`]), or 0.
    ahead: usize,
    /// The input as [`narrow::rows`] reads it, for a layer it runs.
    narrow: Option<&'a narrow::Input<'a>>,
}

/// K indices ahead at which a tile prefetches its panel's weights, when
/// they are too large for L1: every tile reads all of them again, from L2,
/// 128 bytes per K index, and the hardware prefetcher left the FMAs waiting
/// (the 17x17 layers, 6a.branch3x3, Conv2d_4a). Bench median -0.7 ms at 1
/// thread and -0.3 at 2 (in-process alternations, 30 pairs; 8 to 96 ahead
/// all gained, 24 to 48 the most); no gain and a cost (Conv2d_2b +0.04 ms)
/// on panels that fit in L1.
const PREFETCH_K: usize = 32;

/// Output rows ahead at which a row-by-row layer claims its output lines
/// for writing. A run streams 95 MB of weights through a 32 MB L3, so the
/// stem's outputs are cold at every run, and a tile writes 14 pixels into
/// each of 32 or 64 channel planes at once: too many streams for the
/// hardware prefetcher, and each tile's stores waited on memory. Measured
/// in the model (`conv_profile`, 1 thread): Conv2d_1a 0.43 → 0.30 ms,
/// Conv2d_2a 1.75 → 1.71; alone with a warm output, 1a takes 0.23.
const AHEAD_ROWS: usize = 2;

/// Claims the `n` floats from `p` for writing, a prefetch per cache line
/// (a prefetch never faults: `p` may lie past its buffer).
fn prefetch_for_write(p: *const f32, n: usize) {
    #[cfg(target_arch = "x86_64")]
    for l in (0..n).step_by(16) {
        // SAFETY: a prefetch reads nothing and cannot fault; SSE is part of
        // x86_64.
        #[allow(unsafe_code)]
        unsafe {
            use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_ET0>(p.wrapping_add(l).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, n);
}

/// Output pixels `lo..hi` of the plane (whole rows, unless the plane is
/// [`flat`]) for the channels of panels `p0..`, into per-channel slices in
/// which pixel `lo` lies at `origin`, rows [`RowArgs::pitch`] apart.
fn pixels_of(
    planes: &mut [&mut [f32]],
    a: &RowArgs<'_>,
    p0: usize,
    (lo, hi): (usize, usize),
    origin: usize,
) {
    let g = a.g;
    if flat(g) {
        // No side borders (asserted by `conv`): the pixels are contiguous.
        let mut dst: Vec<&mut [f32]> = planes
            .iter_mut()
            .map(|p| &mut p[origin..origin + (hi - lo)])
            .collect();
        span_into(a, 0, (lo, hi), &mut dst, p0, None);
        return;
    }
    // Panel by panel, each over all the rows: a panel's weights then stay
    // in L2 while its rows run, where rows outer streamed every panel's
    // weights (Mixed_6a.branch3x3: 12 × 331 KB) from L3 at every row.
    // Mixed_6a.branch3x3 2.56 → 2.42 ms, the 17x17 1x7s 0.02 each (1 thread).
    // With column tiles, rows run only over the columns that read no side
    // padding, and each other column runs down the rows.
    let (r0, r1) = (lo / g.ow, hi / g.ow);
    if let Some(input) = a.narrow {
        let weights = |p: usize| a.w.panel(p);
        let at = (origin, a.pitch, a.ahead);
        narrow::rows(
            input,
            g,
            PANEL,
            weights,
            a.tail,
            planes,
            p0 * PANEL,
            (r0, r1),
            at,
        );
        return;
    }
    let (c0, c1) = a
        .taps
        .interior(g.ow)
        .filter(|_| covers(g, r1 - r0))
        .unwrap_or((0, g.ow));
    for (i, panel) in planes.chunks_mut(PANEL).enumerate() {
        if c1 > c0 {
            for oy in r0..r1 {
                let at = origin + (oy - r0) * a.pitch;
                let mut dst: Vec<&mut [f32]> =
                    panel.iter_mut().map(|p| &mut p[at + c0..at + c1]).collect();
                span_into(
                    a,
                    oy * g.stride[0] * a.wp,
                    (c0, c1),
                    &mut dst,
                    p0 + i,
                    Some(oy),
                );
            }
        }
        for ox in (0..c0).chain(c1..g.ow) {
            let mut dst: Vec<&mut [f32]> =
                panel.iter_mut().map(|p| &mut p[origin + ox..]).collect();
            column_into(a, ox, (r0, r1), &mut dst, p0 + i);
        }
    }
}

/// The tiles `(first pixel, pixels)` that cover a span of `n` pixels for
/// a panel `ldw` channels wide.
fn tiles(n: usize, ldw: usize) -> impl Iterator<Item = (usize, usize)> {
    let px = tile_pixels(ldw);
    let mut full = n / px;
    // A two-vector panel's rest of 1-6 pixels and the last whole tile run
    // as two tiles of 7-10 pixels: a tile of 4 pixels or fewer has too few
    // sums (8) to hide the FMA latency, and one of 5 or 6 spends as many
    // loop instructions per K index as a whole tile on half the FMAs.
    // Measured with 12-pixel tiles: 147 = 11 · 12 + 8 + 7 (not 12 · 12 +
    // 4): Conv2d_2a -0.02..-0.045 ms, 2b -0.03..-0.07 at 1 and 2
    // threads. 17 = 9 + 8 (not 12 + 5):
    // Mixed_6a.branch3x3 2.48 → 2.34 ms, the 1x7s -0.003..-0.02 each;
    // bench median -0.3 ms at 1 thread, -0.13 at 2 (in-process
    // alternations).
    let mut ends: [usize; 2] = [0, 0];
    if ldw > 16 && full >= 1 && (1..7).contains(&(n - full * px)) {
        full -= 1;
        let both = n - full * px;
        ends = [both.div_ceil(2), both / 2];
    }
    // Else the rest of the span in a tile of its own width ([`rest_tile`]),
    // ending at the span's end: a narrow one overlaps the tile before by
    // at most one pixel, computed again to the same value (a whole tile
    // there cost 6% of the 147-pixel stem layers, and made this path lose
    // on 17-pixel rows). Odd widths from 10 sums on took 0.7 ms off the
    // 35x35 and 17x17 layers (12 + 12 + 11 for 35 pixels, then 12 + 5 for
    // 17; `conv_profile`; bench median -0.5 ms at 1 thread, -0.16 at 2).
    let rest = if ends[0] > 0 { 0 } else { n - full * px };
    let q = if rest > 0 { rest_tile(rest, ldw) } else { 0 };
    let at = full * px;
    (0..full)
        .map(move |t| (t * px, px))
        .chain((ends[0] > 0).then_some((at, ends[0])))
        .chain((ends[1] > 0).then_some((at + ends[0], ends[1])))
        .chain((q > 0).then_some((n - q, q)))
}

/// A panel's tail: the layer's, from the panel's first channel.
fn panel_tail<'t>(t: &Tail<'t>, p: usize) -> Tail<'t> {
    Tail {
        scale: t.scale.map(|t| &t[p * PANEL..]),
        shift: t.shift.map(|t| &t[p * PANEL..]),
        relu: t.relu,
    }
}

/// Output pixels `lo..hi` of a row whose pixel `ox` reads the input from
/// `base + ox·stride`: `dst[o]` holds channel `o`'s pixels `lo..hi`. The
/// span is output row `row`, or with `None` a [`flat`] plane's pixels.
fn span_into(
    a: &RowArgs<'_>,
    base: usize,
    (lo, hi): (usize, usize),
    dst: &mut [&mut [f32]],
    p0: usize,
    row: Option<usize>,
) {
    let sx = a.g.stride[1];
    for (p, dst) in dst.chunks_mut(PANEL).enumerate() {
        let p = p0 + p;
        let (w, ldw) = a.w.panel(p);
        let tail = panel_tail(a.tail, p);
        for (ox, q) in tiles(hi - lo, ldw) {
            let x = &a.xp[base + (lo + ox) * sx..];
            let rows = row.map_or([lo + ox, lo + ox + q - 1].map(|p| p / a.g.ow), |r| [r, r]);
            // The tile's columns (on a flat plane, whose window is one
            // column wide, nothing to skip there).
            let some = a.taps.some(rows, [lo + ox, lo + ox + q - 1]);
            tile(a, x, (w, ldw), q, ox, dst, &tail, some, None);
        }
    }
}

/// Output column `ox` over rows `r0..r1` for panel `p`, in column tiles:
/// pixels a row apart, which share their kernel columns, so that a column
/// in the side padding's reach skips the kernel columns that read only
/// the zero border ([`EdgeTaps`]). `dst[o]` holds channel `o`'s rows from
/// `r0` on, [`RowArgs::pitch`] apart, from this column.
fn column_into(
    a: &RowArgs<'_>,
    ox: usize,
    (r0, r1): (usize, usize),
    dst: &mut [&mut [f32]],
    p: usize,
) {
    let g = a.g;
    let (w, ldw) = a.w.panel(p);
    let tail = panel_tail(a.tail, p);
    // Input pixels of one column lie a (strided) row apart.
    let step = g.stride[0] * a.wp;
    for (t, q) in tiles(r1 - r0, ldw) {
        let some = a.taps.some([r0 + t, r0 + t + q - 1], [ox, ox]);
        let x = &a.xp[(r0 + t) * step + ox * g.stride[1]..];
        tile(
            a,
            x,
            (w, ldw),
            q,
            t * a.pitch,
            dst,
            &tail,
            some,
            Some((step, a.pitch)),
        );
    }
}

/// One tile: pixels `ox..ox + px` of the row (`px` a [`rest_tile`] width,
/// at most [`tile_pixels`]), a panel's channels (`dst`, weights `w` with rows
/// `ldw` long), over all of K, or over the indices of each K block in
/// `some` ([`EdgeTaps`]).
#[allow(clippy::too_many_arguments)]
fn tile(
    a: &RowArgs<'_>,
    x: &[f32],
    (w, ldw): (&[f32], usize),
    px: usize,
    ox: usize,
    dst: &mut [&mut [f32]],
    tail: &Tail<'_>,
    some: Option<&[Vec<u32>]>,
    column: Option<(usize, usize)>,
) {
    let g = a.g;
    let nv = ldw / 16;
    let sx = g.stride[1];
    assert!(w.len() >= a.offs.len() * ldw && dst.len() <= ldw && matches!(nv, 1 | 2));
    assert!(px == rest_tile(px, ldw) && px <= tile_pixels(ldw));
    // Pixels `xs` apart in the input, `os` in `dst`.
    let (xs, os) = column.unwrap_or((sx, 1));
    let last = a.offs.last().map_or(0, |&o| o as usize);
    assert!(
        (px - 1) * xs + last < x.len(),
        "direct: tile past the input"
    );
    assert!(
        dst.iter().all(|d| d.len() > ox + (px - 1) * os),
        "direct: tile past the span"
    );
    assert!(
        some.is_none_or(|s| s.len() == a.offs.len().div_ceil(KC)),
        "direct: indices for another K"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `DirectWeights` exists only where AVX-512F was detected; the
    // offsets ascend (channel, kernel row, kernel column), so the farthest
    // broadcast address, `x + offs[k] + r·xs` for `r < px`, lies inside `x`
    // (asserted); each `dst[o]` holds the tile's pixels (asserted); the
    // weights hold `k × 16·nv` floats.
    #[allow(unsafe_code)]
    unsafe {
        // One or two vectors and the widths `rest_tile` gives, up to 16 or 14
        // pixels (asserted), stride 1 or 2 (`supports`).
        macro_rules! pick {
            ($(($nv:literal, $px:literal)),*) => {
                match (nv, px, sx) {
                    $(
                        ($nv, $px, _) if column.is_some() => avx512::tile::<$px, $nv, 0>,
                        ($nv, $px, 1) => avx512::tile::<$px, $nv, 1>,
                        ($nv, $px, _) => avx512::tile::<$px, $nv, 2>,
                    )*
                    _ => unreachable!("direct: no {px}-pixel tile of {nv} vectors"),
                }
            };
        }
        let kernel = pick!(
            (1, 2),
            (1, 4),
            (1, 6),
            (1, 8),
            (1, 10),
            (1, 11),
            (1, 12),
            (1, 13),
            (1, 14),
            (1, 15),
            (1, 16),
            (2, 2),
            (2, 4),
            (2, 5),
            (2, 6),
            (2, 7),
            (2, 8),
            (2, 9),
            (2, 10),
            (2, 11),
            (2, 12),
            (2, 13),
            (2, 14)
        );
        // A panel's weights larger than L1 stream from L2 at every tile:
        // they are prefetched ([`PREFETCH_K`]).
        let stream = a.offs.len() * ldw * 4 > super::L1_BYTES;
        kernel(
            x.as_ptr(),
            a.offs,
            some,
            w.as_ptr(),
            ldw,
            dst,
            ox,
            tail,
            if column.is_some() { 0 } else { a.ahead },
            stream,
            (xs, os),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a, x, w, ldw, px, ox, dst, nv, sx, tail, some, xs, os);
        unreachable!("direct: weights exist only on x86_64 with AVX-512F");
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    use super::{KC, PREFETCH_K, Tail};

    /// One K block's sums (pixel `r` of the tile, channels `16v..16v + 16`)
    /// over all its indices, or those in `some` (ascending), written
    /// into `sum` when `first`, else added to it; with `PF`, each K index
    /// prefetches the weights [`PREFETCH_K`] indices on. A function of its
    /// own so LLVM keeps the block's sums in registers.
    ///
    /// # Safety
    /// AVX-512F is available; `x + offs[k] + r·s` is readable for `r < P`
    /// (`s` is `SX`, or `xs` when `SX` is 0), and `w` holds `offs.len() ×
    /// ldw` floats; `sum` is writable, and initialised unless `first`. (An
    /// index in `some` past `offs` panics.)
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn sums<const P: usize, const NV: usize, const SX: usize, const PF: bool>(
        x: *const f32,
        xs: usize,
        offs: &[u32],
        some: Option<&[u32]>,
        w: *const f32,
        ldw: usize,
        sum: *mut [[__m512; NV]; P],
        first: bool,
    ) {
        // SAFETY: the caller's contract; each of `some` indexes `offs`
        // (checked), so its weights lie in `w`.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; P];
            // One K index: its tap's input `off`, its weights at `wp`.
            macro_rules! step {
                ($off:expr, $wp:expr) => {{
                    let wp: *const f32 = $wp;
                    if PF {
                        // Past the panel's end (the last indices of a tile) the
                        // addresses are only prefetched, never read: a prefetch
                        // cannot fault.
                        let ahead = wp.wrapping_add(PREFETCH_K * ldw);
                        for v in 0..NV {
                            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16 * v).cast::<i8>());
                        }
                    }
                    let mut wv = [_mm512_setzero_ps(); NV];
                    for (v, r) in wv.iter_mut().enumerate() {
                        *r = _mm512_loadu_ps(wp.add(16 * v));
                    }
                    let px = x.add($off as usize);
                    // The tile after next reads here: a layer reads one
                    // stream per K index (hundreds), too many for the
                    // hardware prefetcher, and where the input is not in L2
                    // (the first reader of a block's input, a stem layer's)
                    // each tile waited on it. Conv2d_2a 4.21 → 3.80 ms, the
                    // 35x35 and 17x17 blocks' branch1x1s 0.03-0.10 each; the
                    // model -1.4% at 1 thread (in-process alternation, 15
                    // pairs); 4 tiles ahead no better. Never read: past the
                    // input, harmless.
                    if SX > 0 {
                        _mm_prefetch::<_MM_HINT_T0>(px.wrapping_add(2 * P * SX).cast::<i8>());
                    }
                    // Pixels `SX` apart, or for a column tile (`SX` 0) `xs`.
                    let sx = if SX == 0 { xs } else { SX };
                    for (r, row) in acc.iter_mut().enumerate() {
                        let a = _mm512_set1_ps(*px.add(r * sx));
                        for (s, wr) in row.iter_mut().zip(&wv) {
                            *s = _mm512_fmadd_ps(a, *wr, *s);
                        }
                    }
                }};
            }
            match some {
                None => {
                    let mut wp = w;
                    for &off in offs {
                        step!(off, wp);
                        wp = wp.add(ldw);
                    }
                }
                // One loop over the indices, not one per run of them: a
                // run's end (every 4-6 indices on a 7x1) was a mispredicted
                // branch, and took half of what the skipped products saved.
                Some(some) => {
                    for &k in some {
                        let k = k as usize;
                        step!(offs[k], w.add(k * ldw));
                    }
                }
            }
            if first {
                sum.write(acc);
            } else {
                for (s, a) in (*sum).iter_mut().zip(&acc) {
                    for (s, a) in s.iter_mut().zip(a) {
                        *s = _mm512_add_ps(*s, *a);
                    }
                }
            }
        }
    }

    /// A [`Tail`] on one vector of sums: `y · scale` then `+ shift` (a
    /// multiply and an add, as `Epilogue`, not an FMA), then ReLU.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn tail_of(
        mut y: __m512,
        scale: Option<__m512>,
        shift: Option<__m512>,
        relu: bool,
    ) -> __m512 {
        if let Some(sv) = scale {
            y = _mm512_mul_ps(y, sv);
        }
        if let Some(bv) = shift {
            y = _mm512_add_ps(y, bv);
        }
        if relu {
            // max(0, y) returns y when y is NaN, as `Epilogue`.
            y = _mm512_max_ps(_mm512_setzero_ps(), y);
        }
        y
    }

    /// Transposes a 16x16 block held as 16 rows.
    #[target_feature(enable = "avx512f")]
    pub fn transpose16(r: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        for i in 0..4 {
            let (a, b) = (_mm512_castps_pd(t[4 * i]), _mm512_castps_pd(t[4 * i + 2]));
            let (c, d) = (
                _mm512_castps_pd(t[4 * i + 1]),
                _mm512_castps_pd(t[4 * i + 3]),
            );
            r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
            r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
            r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
        }
        for i in 0..2 {
            for j in 0..4 {
                t[8 * i + j] = _mm512_shuffle_f32x4::<0x88>(r[8 * i + j], r[8 * i + j + 4]);
                t[8 * i + j + 4] = _mm512_shuffle_f32x4::<0xdd>(r[8 * i + j], r[8 * i + j + 4]);
            }
        }
        for j in 0..8 {
            r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[j + 8]);
            r[j + 8] = _mm512_shuffle_f32x4::<0xdd>(t[j], t[j + 8]);
        }
    }

    /// A tile over all of K (see `super::tile`): the K blocks' sums added
    /// up pixel by pixel (the first stored, each later one added, as the
    /// GEMM path adds them into its output), the tail applied per channel
    /// lane, then one transpose per 16 channels into the output rows. With
    /// `ahead`, each row's line `ahead` floats past the tile's pixels is
    /// prefetched for writing (never accessed); with `stream`, the weights
    /// as they are read (`sums`). A column tile (`SX` 0) has its pixels
    /// `xs` floats apart in the input and `os` in `dst`, where each is
    /// stored on its own (checked).
    ///
    /// # Safety
    /// As for `sums`, over all of `offs`; `dst[o]` (`o < channels`) holds
    /// at least `ox + P` floats (or a column tile's); `tail`'s parts hold
    /// one value per channel; `some`, if any, holds one list per K block.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile<const P: usize, const NV: usize, const SX: usize>(
        x: *const f32,
        offs: &[u32],
        some: Option<&[Vec<u32>]>,
        w: *const f32,
        ldw: usize,
        dst: &mut [&mut [f32]],
        ox: usize,
        tail: &Tail<'_>,
        ahead: usize,
        stream: bool,
        (xs, os): (usize, usize),
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            let zero = _mm512_setzero_ps();
            // Uninitialised, not zeroed: the first block writes it (zeroing
            // it called `memset` at every tile, 1% of a run).
            let mut sum = std::mem::MaybeUninit::<[[__m512; NV]; P]>::uninit();
            for (i, block) in offs.chunks(KC).enumerate() {
                let w = w.add(i * KC * ldw);
                let sum = sum.as_mut_ptr();
                let some = some.map(|s| s[i].as_slice());
                if stream {
                    sums::<P, NV, SX, true>(x, xs, block, some, w, ldw, sum, i == 0);
                } else {
                    sums::<P, NV, SX, false>(x, xs, block, some, w, ldw, sum, i == 0);
                }
            }
            // `offs` is not empty (`DirectWeights` refuses k = 0): the first
            // block wrote every sum.
            let sum = sum.assume_init_ref();
            let channels = dst.len();
            let m: __mmask16 = ((1u32 << P) - 1) as __mmask16;
            for v in 0..NV {
                let left = channels.saturating_sub(16 * v).min(16);
                let lanes: __mmask16 = ((1u32 << left) - 1) as __mmask16;
                let scale = tail
                    .scale
                    .map(|s| _mm512_maskz_loadu_ps(lanes, s.as_ptr().add(16 * v)));
                let shift = tail
                    .shift
                    .map(|s| _mm512_maskz_loadu_ps(lanes, s.as_ptr().add(16 * v)));
                // Rows: pixels (past P, zero); after the transpose, channels.
                let mut r = [zero; 16];
                for (p, s) in sum.iter().enumerate() {
                    r[p] = tail_of(s[v], scale, shift, tail.relu);
                }
                if SX == 0 {
                    // A column tile: its pixels lie rows apart in `dst`.
                    let mut lane = [0f32; 16];
                    for (p, y) in r.iter().enumerate().take(P) {
                        _mm512_storeu_ps(lane.as_mut_ptr(), *y);
                        for (j, lane_v) in lane.iter().enumerate().take(left) {
                            dst[16 * v + j][ox + p * os] = *lane_v;
                        }
                    }
                    continue;
                }
                transpose16(&mut r);
                for (j, y) in r.iter().enumerate().take(left) {
                    let row = &mut dst[16 * v + j];
                    _mm512_mask_storeu_ps(row[ox..ox + P].as_mut_ptr(), m, *y);
                    if ahead > 0 {
                        // The same pixels `ahead` floats on (a prefetch
                        // never faults, whatever lies there).
                        let next = row.as_ptr().wrapping_add(ox + ahead);
                        _mm_prefetch::<_MM_HINT_ET0>(next.cast::<i8>());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{Weights, conv2d};
    use crate::kernels::eltwise::Epilogue;
    use crate::kernels::sgemm::PackedWeights;

    /// `(c, h, w, o, kernel, stride, pads, dilation)`.
    type Case = (
        usize,
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        [usize; 2],
    );

    /// The direct path and the GEMM path give the same bits on float data
    /// (the same products, summed in the same order and blocks), with the
    /// tail, several K blocks, padding, stride 2, dilation, ragged channel
    /// counts and rows, on one and two threads.
    #[test]
    fn matches_the_gemm_path_bit_for_bit() {
        if !super::super::sgemm::available() {
            return;
        }
        let cases: &[Case] = &[
            (3, 23, 29, 32, [3, 3], [2, 2], [0; 4], [1, 1]),
            (32, 19, 27, 32, [3, 3], [1, 1], [0; 4], [1, 1]),
            (48, 13, 17, 64, [5, 5], [1, 1], [2; 4], [1, 1]),
            (7, 12, 30, 20, [3, 3], [1, 1], [1, 0, 2, 1], [2, 1]),
            (40, 9, 26, 50, [4, 4], [1, 2], [1; 4], [1, 1]),
            // Several panels, the last one narrow: 3 × 32 + 4, 4 × 32 + 2 channels.
            (24, 8, 20, 100, [3, 3], [1, 1], [1; 4], [1, 1]),
            (9, 7, 40, 130, [1, 7], [1, 1], [0, 3, 0, 3], [1, 1]),
            // One-vector panels (16-pixel tiles), rows of 2 × 16 + 5.
            (5, 9, 37, 16, [3, 3], [1, 1], [1; 4], [1, 1]),
            // Stride-2 reductions into rows narrower than a tile (8 pixels,
            // the 8x8 blocks' input; a two-vector and a one-vector panel;
            // 10 pixels, one vector).
            (24, 17, 17, 40, [3, 3], [2, 2], [0; 4], [1, 1]),
            (7, 21, 21, 16, [3, 3], [2, 2], [0; 4], [1, 1]),
            // Odd rests in a tile of their own: 35 = 14 + 14 + 7 pixels
            // (two vectors), 27 = 16 + 11 (one vector), 27 = 14 + 13 (two
            // vectors, then one).
            (8, 9, 35, 32, [3, 3], [1, 1], [1; 4], [1, 1]),
            (4, 6, 27, 16, [3, 3], [1, 1], [1; 4], [1, 1]),
            (4, 6, 27, 40, [3, 3], [1, 1], [1; 4], [1, 1]),
            // The 17x17 shapes: a 1x7 and a stride-2 reduction into 17-pixel
            // rows (9 + 8).
            (20, 17, 17, 40, [1, 7], [1, 1], [0, 3, 0, 3], [1, 1]),
            (10, 35, 35, 36, [3, 3], [2, 2], [0; 4], [1, 1]),
            // Planes run as one row (`flat`): 7x1 padded top and bottom,
            // 1x1 over several K blocks, one-vector panel.
            (24, 17, 17, 40, [7, 1], [1, 1], [3, 0, 3, 0], [1, 1]),
            (300, 9, 11, 48, [1, 1], [1, 1], [0; 4], [1, 1]),
            (6, 5, 7, 16, [3, 1], [1, 1], [1, 0, 1, 0], [2, 1]),
        ];
        // A row of 9 no tile covers (9 sums are too few for an odd tile of
        // one vector, and one of 10 would start before the row).
        let nine = ConvGeom::from_input((7, 19, 19), 16, [3, 3], [2, 2], [0; 4], [1, 1], 1);
        assert!(!supports(&nine));
        for (i, &(c, h, w, o, kernel, stride, pads, dilation)) in cases.iter().enumerate() {
            let g = ConvGeom::from_input((c, h, w), o, kernel, stride, pads, dilation, 1);
            assert!(supports(&g), "{g:?}");
            let (x, wt, e) = random_layer(&g, 12345 + i as u64);
            for threads in [1, 2] {
                let diff = first_difference(&g, &x, &wt, &e, threads);
                assert_eq!(diff, None, "{g:?}, {threads} threads");
            }
        }
    }

    /// Layers with few products per output run with pixels in the lanes
    /// ([`narrow`]) and give the GEMM path's bits: stride 1 and 2, even and
    /// odd padded widths, uneven padding, dilation, channel groups cut
    /// short, rows of 1 to 10 vectors (149 pixels, Conv2d_1a's), and an
    /// infinite weight against the zero border.
    #[test]
    fn narrow_rows_match_the_gemm_path_bit_for_bit() {
        if !super::super::sgemm::available() {
            return;
        }
        let cases: &[Case] = &[
            (3, 13, 299, 32, [3, 3], [2, 2], [0; 4], [1, 1]),
            (3, 9, 70, 13, [3, 3], [1, 1], [1; 4], [1, 1]),
            (2, 11, 41, 40, [3, 3], [2, 2], [1, 0, 2, 1], [2, 1]),
            (1, 10, 36, 50, [5, 5], [2, 2], [2; 4], [1, 2]),
            (8, 7, 66, 24, [1, 3], [1, 1], [0, 1, 0, 1], [1, 1]),
            (4, 9, 33, 16, [2, 2], [2, 2], [0; 4], [1, 1]),
            (3, 8, 53, 8, [3, 3], [2, 2], [1; 4], [1, 1]),
            (3, 6, 120, 16, [3, 3], [2, 2], [0; 4], [1, 1]),
        ];
        for (i, &(c, h, w, o, kernel, stride, pads, dilation)) in cases.iter().enumerate() {
            let g = ConvGeom::from_input((c, h, w), o, kernel, stride, pads, dilation, 1);
            assert!(narrow(&g) && fits(&g), "{g:?}");
            let (x, mut wt, e) = random_layer(&g, 777 + i as u64);
            for threads in [1, 2] {
                let diff = first_difference(&g, &x, &wt, &e, threads);
                assert_eq!(diff, None, "{g:?}, {threads} threads");
            }
            if pads != [0; 4] {
                // Channel 0's first tap meets the border: NaN there in both.
                wt[0] = f32::INFINITY;
                let diff = first_difference(&g, &x, &wt, &e, 1);
                assert_eq!(diff, None, "{g:?} with an infinite weight");
            }
        }
    }

    /// Random input, weights and tail (scale, shift, ReLU) for `g`, in
    /// [-1, 1), from `seed`.
    fn random_layer(g: &ConvGeom, seed: u64) -> (Vec<f32>, Vec<f32>, Epilogue<f32>) {
        let mut seed = seed;
        let mut rand = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let x = (0..g.c * g.h * g.w).map(|_| rand()).collect();
        let wt = (0..g.o * g.k()).map(|_| rand()).collect();
        let e = Epilogue {
            scale: Some((0..g.o).map(|_| rand()).collect()),
            shift: Some((0..g.o).map(|_| rand()).collect()),
            relu: true,
        };
        (x, wt, e)
    }

    /// Where the GEMM path and the direct path first differ in bits on
    /// `g`, if anywhere.
    fn first_difference(
        g: &ConvGeom,
        x: &[f32],
        wt: &[f32],
        e: &Epilogue<f32>,
        threads: usize,
    ) -> Option<usize> {
        let o = g.o;
        let packed = PackedWeights::new(wt, o, g.k()).expect("avx512");
        let direct = DirectWeights::new(wt, o, g.k()).expect("avx512");
        let mut want = vec![f32::NAN; o * g.oh * g.ow];
        let mut got = vec![f32::NAN; o * g.oh * g.ow];
        let mut scratch = Vec::new();
        conv2d(
            g,
            x,
            Weights::Packed(&packed),
            e,
            &mut want,
            &mut scratch,
            threads,
        );
        conv2d(
            g,
            x,
            Weights::Direct(&direct),
            e,
            &mut got,
            &mut scratch,
            threads,
        );
        want.iter()
            .zip(&got)
            .position(|(a, b)| a.to_bits() != b.to_bits())
    }

    /// Pooling the rows as they complete gives the bits of the whole
    /// convolution followed by the pooling, NaN included, on one and two
    /// threads.
    #[test]
    fn conv_pool_matches_conv_then_pool() {
        use crate::kernels::pool::pool2d;
        if !super::super::sgemm::available() {
            return;
        }
        // 120 channels: four panels, the last one narrow, which two
        // threads split by panels.
        let cases: &[(usize, usize, usize, usize, [usize; 4])] = &[
            (8, 23, 37, 40, [1; 4]),
            (5, 21, 33, 20, [0; 4]),
            (6, 19, 29, 120, [0; 4]),
        ];
        for &(c, h, w, o, pads) in cases {
            let g = ConvGeom::from_input((c, h, w), o, [3, 3], [1, 1], pads, [1, 1], 1);
            let p = PoolGeom::max_3x3_s2(o, g.oh, g.ow);
            assert!(pools(&g, &p), "{g:?}");
            let mut x: Vec<f32> = (0..c * h * w)
                .map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0)
                .collect();
            let wt: Vec<f32> = (0..o * g.k())
                .map(|i| ((i * 104_729) % 97) as f32 / 200.0 - 0.24)
                .collect();
            let scale: Vec<f32> = (0..o).map(|i| 0.5 + i as f32 / 64.0).collect();
            let shift: Vec<f32> = (0..o).map(|i| i as f32 / 32.0 - 0.5).collect();
            let tail = Tail {
                scale: Some(&scale),
                shift: Some(&shift),
                relu: true,
            };
            let dw = DirectWeights::new(&wt, o, g.k()).expect("avx512");
            for nan in [false, true] {
                if nan {
                    x[2 * w + 5] = f32::NAN;
                }
                for threads in [1, 2] {
                    let mut scratch = vec![0f32; scratch_len(&g)];
                    let mut y = vec![0f32; o * g.oh * g.ow];
                    conv(
                        &g,
                        &x,
                        &dw,
                        &tail,
                        &mut y,
                        &mut scratch,
                        threads,
                        Layout::default(),
                    );
                    let mut want = vec![0f32; o * p.oh * p.ow];
                    pool2d(&p, &y, &mut want, 1);
                    let mut got = vec![7f32; o * p.oh * p.ow];
                    conv_pool(
                        &g,
                        &x,
                        &dw,
                        &tail,
                        &p,
                        &mut got,
                        &mut scratch,
                        threads,
                        false,
                    );
                    let diff = want.iter().zip(&got).position(|(a, b)| {
                        a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan())
                    });
                    assert_eq!(diff, None, "{g:?}, nan {nan}, {threads} threads");
                    // The input given with its border already (Conv2d_2b's).
                    let (hp, wp) = padded_size(&g);
                    let mut xp = vec![0f32; c * hp * wp];
                    pad_into(&g, &x, &mut xp);
                    let mut again = vec![7f32; o * p.oh * p.ow];
                    conv_pool(&g, &xp, &dw, &tail, &p, &mut again, &mut [], threads, true);
                    let same = got
                        .iter()
                        .zip(&again)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{g:?} from a padded input, {threads} threads");
                    assert_eq!(
                        want.iter().filter(|v| v.is_nan()).count(),
                        got.iter().filter(|v| v.is_nan()).count()
                    );
                }
            }
        }
    }

    /// A layer that writes its output inside the next layer's zero border,
    /// into a buffer full of garbage, and the next layer reading it in
    /// place, pooled or not, give the bits of the plain chain (a padded
    /// copy in between), on one and two threads: row-by-row producers with
    /// ragged panels and any border, a flat producer with a vertical one.
    #[test]
    fn a_padded_output_feeds_the_next_layer_in_place() {
        if !super::super::sgemm::available() {
            return;
        }
        // (producer: c, h, w, o, kernel, pads; consumer: o, kernel, pads)
        type Chain = (
            usize,
            usize,
            usize,
            usize,
            [usize; 2],
            [usize; 4],
            usize,
            [usize; 2],
            [usize; 4],
        );
        let chains: &[Chain] = &[
            (5, 20, 26, 40, [3, 3], [0; 4], 20, [3, 3], [1; 4]),
            (6, 9, 30, 36, [1, 3], [0, 1, 0, 1], 48, [1, 7], [0, 3, 0, 3]),
            (4, 12, 28, 16, [3, 3], [1; 4], 40, [3, 3], [1, 0, 2, 3]),
            (24, 17, 17, 40, [1, 1], [0; 4], 36, [7, 1], [3, 0, 3, 0]),
            // A first layer that runs with pixels in the lanes (`narrow`).
            (3, 13, 40, 16, [3, 3], [0; 4], 24, [3, 3], [1; 4]),
        ];
        let data = |n: usize, k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * k) % 211) as f32 / 50.0 - 2.0)
                .collect()
        };
        for &(c, h, w, o1, k1, pads1, o2, k2, pads2) in chains {
            let g1 = ConvGeom::from_input((c, h, w), o1, k1, [1, 1], pads1, [1, 1], 1);
            let g2 = ConvGeom::from_input((o1, g1.oh, g1.ow), o2, k2, [1, 1], pads2, [1, 1], 1);
            assert!(writes_padded(&g1, pads2) && fits(&g2), "{g1:?} {g2:?}");
            let x = data(c * h * w, 7919);
            let (w1, w2) = (data(o1 * g1.k(), 104_729), data(o2 * g2.k(), 7907));
            let (d1, d2) = (
                DirectWeights::new(&w1, o1, g1.k()).expect("avx512"),
                DirectWeights::new(&w2, o2, g2.k()).expect("avx512"),
            );
            let shift = data(o1.max(o2), 31);
            let tail = Tail {
                scale: None,
                shift: Some(&shift),
                relu: true,
            };
            let (hp, wp) = padded_size(&g2);
            for threads in [1, 2] {
                let mut scratch = vec![0f32; scratch_len(&g1).max(scratch_len(&g2))];
                let mut y = vec![0f32; o1 * g1.oh * g1.ow];
                conv(
                    &g1,
                    &x,
                    &d1,
                    &tail,
                    &mut y,
                    &mut scratch,
                    threads,
                    Layout::default(),
                );
                let mut want = vec![0f32; o2 * g2.oh * g2.ow];
                conv(
                    &g2,
                    &y,
                    &d2,
                    &tail,
                    &mut want,
                    &mut scratch,
                    threads,
                    Layout::default(),
                );

                let mut yp = vec![f32::NAN; o1 * hp * wp];
                let out = Layout {
                    padded_input: false,
                    out_pads: pads2,
                };
                conv(&g1, &x, &d1, &tail, &mut yp, &mut scratch, threads, out);
                let mut copy = vec![0f32; o1 * hp * wp];
                pad_into(&g2, &y, &mut copy);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&yp),
                    bits(&copy),
                    "{g1:?} into {pads2:?}, {threads} threads"
                );
                let mut got = vec![7f32; o2 * g2.oh * g2.ow];
                let read = Layout {
                    padded_input: true,
                    out_pads: [0; 4],
                };
                conv(&g2, &yp, &d2, &tail, &mut got, &mut [], threads, read);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{g2:?} in place, {threads} threads"
                );
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    fn transpose16_transposes() {
        use std::arch::x86_64::*;
        if !super::super::sgemm::available() {
            return;
        }
        let m: Vec<f32> = (0..256).map(|i| i as f32).collect();
        // SAFETY: AVX-512F was just detected; every load and store is 16 floats in bounds.
        unsafe {
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(m[16 * i..].as_ptr());
            }
            avx512::transpose16(&mut r);
            let mut t = vec![0f32; 256];
            for (i, v) in r.iter().enumerate() {
                _mm512_storeu_ps(t[16 * i..].as_mut_ptr(), *v);
            }
            for i in 0..16 {
                for j in 0..16 {
                    assert_eq!(t[16 * i + j], m[16 * j + i], "({i}, {j})");
                }
            }
        }
    }

    /// The taps a tile keeps are exactly the K indices whose kernel row
    /// and column some pixel of its reads inside the input (the rest read
    /// the zero border): row tiles and column tiles, strides, dilations and
    /// uneven padding.
    #[test]
    fn edge_tiles_keep_exactly_the_taps_inside_the_input() {
        let cases = [
            // (c, h, w, kernel, stride, pads, dilation)
            (3, 17, 17, [7, 1], [1, 1], [3, 0, 3, 0], [1, 1]),
            (3, 17, 17, [1, 7], [1, 1], [0, 3, 0, 3], [1, 1]),
            (2, 9, 11, [3, 3], [1, 1], [1; 4], [1, 1]),
            (2, 12, 9, [3, 3], [1, 1], [1, 0, 2, 1], [2, 2]),
            (1, 13, 13, [5, 5], [1, 1], [2; 4], [1, 1]),
            (2, 11, 11, [3, 3], [2, 2], [1; 4], [1, 1]),
            // Padding wider than the kernel reaches: whole rows of zeros.
            (1, 4, 5, [3, 1], [1, 1], [4, 0, 4, 0], [1, 1]),
        ];
        for (c, h, w, kernel, stride, pads, dilation) in cases {
            let g = ConvGeom::from_input((c, h, w), 4, kernel, stride, pads, dilation, 1);
            let taps = EdgeTaps::new(&g, true);
            assert!(!taps.classes.is_empty(), "{g:?}");
            let [kh, kw] = kernel;
            let inside = |o: usize, t: usize, i: usize| {
                let v = (o * stride[i] + t * dilation[i]) as isize - pads[i] as isize;
                (0..[h, w][i] as isize).contains(&v)
            };
            // Column tiles only for one kernel row ([`columns`]).
            let cols = kh == 1 && kw > 1 && pads[1] + pads[3] > 0 && stride[1] == 1;
            for (rows, across) in [(1, g.ow), (3, 1), (2, 2)] {
                for a in 0..g.oh {
                    for c0 in 0..g.ow {
                        let (b, c1) = (
                            (a + rows - 1).min(g.oh - 1),
                            (c0 + across - 1).min(g.ow - 1),
                        );
                        let keep = |i: usize| {
                            let (ky, kx) = (i / kw % kh, i % kw);
                            // A kernel column is skipped only by tiles
                            // that can skip columns.
                            (a..=b).any(|oy| inside(oy, ky, 0))
                                && (!cols || (c0..=c1).any(|ox| inside(ox, kx, 1)))
                        };
                        let want: Vec<usize> = (0..c * kh * kw).filter(|&i| keep(i)).collect();
                        let got: Vec<usize> = match taps.some([a, b], [c0, c1]) {
                            None => (0..c * kh * kw).collect(),
                            Some(blocks) => blocks
                                .iter()
                                .enumerate()
                                .flat_map(|(bi, ks)| ks.iter().map(move |&k| bi * KC + k as usize))
                                .collect(),
                        };
                        assert_eq!(got, want, "{g:?}, rows {a}..={b}, columns {c0}..={c1}");
                    }
                }
            }
            if cols {
                // Row tiles run on exactly the columns that skip nothing.
                let (c0, c1) = taps.interior(g.ow).expect("column tiles");
                for ox in 0..g.ow {
                    let all = (0..kw).all(|kx| inside(ox, kx, 1));
                    assert_eq!((c0..c1).contains(&ox), all, "{g:?}, column {ox}");
                }
            }
        }
        // A non-finite weight keeps every tap: 0 · inf is NaN, as the GEMM
        // path computes it.
        let g = ConvGeom::from_input((2, 9, 5), 4, [3, 3], [1, 1], [1; 4], [1, 1], 1);
        assert!(EdgeTaps::new(&g, false).some([0, 0], [0, 0]).is_none());
        assert!(EdgeTaps::new(&g, true).some([0, 0], [0, 0]).is_some());
        // No padding, nothing to skip.
        let g = ConvGeom::from_input((2, 9, 9), 4, [1, 7], [1, 1], [0; 4], [1, 1], 1);
        assert!(EdgeTaps::new(&g, true).classes.is_empty());
    }

    /// A padded layer with an infinite weight gives the GEMM path's NaNs
    /// where that weight meets the zero border, bit for bit.
    #[test]
    fn an_infinite_weight_meets_the_border_as_in_the_gemm_path() {
        if !super::super::sgemm::available() {
            return;
        }
        for (kernel, pads, h, w) in [
            ([3, 3], [1; 4], 9, 35),
            ([7, 1], [3, 0, 3, 0], 17, 17),
            ([1, 7], [0, 3, 0, 3], 17, 17),
        ] {
            let (c, o) = (5, 32);
            let g = ConvGeom::from_input((c, h, w), o, kernel, [1, 1], pads, [1, 1], 1);
            let x: Vec<f32> = (0..c * h * w).map(|i| (i % 7) as f32 - 3.0).collect();
            let mut wt: Vec<f32> = (0..o * g.k()).map(|i| (i % 5) as f32 * 0.25).collect();
            // Output channel 3, input channel 1, kernel row 0.
            wt[3 * g.k() + kernel[0] * kernel[1]] = f32::INFINITY;
            let e = Epilogue {
                scale: None,
                shift: None,
                relu: false,
            };
            let mut want = vec![0f32; o * g.oh * g.ow];
            let packed = PackedWeights::new(&wt, o, g.k()).expect("avx512");
            conv2d(
                &g,
                &x,
                Weights::Packed(&packed),
                &e,
                &mut want,
                &mut Vec::new(),
                1,
            );
            assert!(want.iter().any(|v| v.is_nan()), "{kernel:?}");
            let diff = first_difference(&g, &x, &wt, &e, 1);
            assert_eq!(diff, None, "{kernel:?}");
        }
    }

    /// A fork side's last step, in chunks two threads take from both ends
    /// (channel panels where column tiles run, else rows), gives the bits
    /// of the plain run.
    #[test]
    fn elastic_chunks_give_the_plain_bits() {
        if !super::super::sgemm::available() {
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        for (c, h, o, kernel, pads) in [
            (12, 17, 100, [1, 7], [0, 3, 0, 3]),
            (6, 35, 40, [3, 3], [1; 4]),
        ] {
            let g = ConvGeom::from_input((c, h, h), o, kernel, [1, 1], pads, [1, 1], 1);
            let x: Vec<f32> = (0..c * h * h)
                .map(|i| ((i * 7) % 13) as f32 - 6.0)
                .collect();
            let wt: Vec<f32> = (0..o * g.k())
                .map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5)
                .collect();
            let w = DirectWeights::new(&wt, o, g.k()).expect("avx512");
            let tail = Tail::default();
            let run = |elastic: bool| {
                let mut out = vec![f32::NAN; o * g.oh * g.ow];
                let mut scratch = vec![0f32; scratch_len(&g)];
                let mut go = || {
                    conv(
                        &g,
                        &x,
                        &w,
                        &tail,
                        &mut out,
                        &mut scratch,
                        2,
                        Layout::default(),
                    )
                };
                if elastic {
                    pool.install(|| super::super::balance::elastic(go));
                } else {
                    go();
                }
                out
            };
            let (plain, chunked) = (run(false), run(true));
            let diff = plain
                .iter()
                .zip(&chunked)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(diff, None, "{g:?}");
        }
    }
}
