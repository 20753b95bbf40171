//! Winograd F(2x2, 3x3) float32 convolution on AVX-512 for the 3x3
//! stride-1 layers with wide planes (the stem's Conv2d_2a, 2b and 4a, the
//! 35x35 blocks' 3x3s): each 2x2 output tile costs 16 products per input
//! channel instead of 36 (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016).
//!
//! Per block of tiles: the input tiles are transformed (`Bᵀ d B`, adds
//! only) into 16 matrices `V[ξ] = [C, tiles]`; 16 GEMMs through
//! [`super::sgemm`] give `M[ξ] = U[ξ] × V[ξ]`, `U[ξ] = [O, C]` the weights
//! transformed once at plan time (`G g Gᵀ` in float64, rounded once); the
//! output transform (`Aᵀ m A`, adds only) then writes each tile's 2x2
//! outputs with the epilogue applied. The transforms' coefficients are 0,
//! ±1 and ±½, so the rounding they add is of the order of the direct sum's;
//! each GEMM sums over at most [`KC`](super::sgemm::KC) channels in
//! registers, as the direct path does over its K blocks.

use std::cell::RefCell;

use super::conv::ConvGeom;
use super::pool::PoolGeom;
use super::sgemm::{self, Dense, PackedWeights, Tail};
use incept_ir::op::PoolKind;

/// Bytes of transformed input (`16 × C × tiles` floats) a block aims for,
/// so that with the GEMM output of one chunk of channels ([`M_BYTES`]) it
/// stays mostly in the 1 MiB L2 between the transforms and the GEMMs.
const V_BYTES: usize = 384 << 10;

/// Bytes of GEMM output (`16 × rows × tiles` floats) per chunk of output
/// channels, before the chunks are evened out and rounded up to whole
/// register tiles (Conv2d_2b's two chunks of 36 rows: 442 KiB).
const M_BYTES: usize = 384 << 10;

/// Fewest input and output channels for which the transforms pay: per
/// tile, they cost about 5 vector operations per input channel and 4 per
/// output channel, and save 20 of 36 products per pair of channels, 1.25
/// vector FMAs; below about 8 channels each way the transforms cost more
/// than they save, and the GEMM's sums over a few channels run far from
/// its peak. On the test models (channels divided by 16), Conv2d_2a
/// (2 → 2 channels) took 0.102 ms this way against 0.088 direct, 4a (5 →
/// 12) 0.131 against 0.108 (`examples/conv_profile`). 16, twice the
/// estimate, is a margin: nothing between 12 and 32 channels was measured
/// (Inception V3's smallest layer here has 32).
const MIN_CHANNELS: usize = 16;

/// Convolution weights `[O, C, 3, 3]` transformed for [`conv`]: for each
/// chunk of output channels, the 16 matrices `U[ξ] = [rows, C]` packed for
/// the GEMM.
#[derive(Debug)]
pub struct WinogradWeights {
    /// `chunks[q][ξ]`, chunk `q` holding output channels `q·chunk..`.
    chunks: Vec<Vec<PackedWeights>>,
    o: usize,
    c: usize,
    chunk: usize,
    /// Tiles per block.
    tiles: usize,
}

impl WinogradWeights {
    /// Transforms `w` (`[o, c·9]`, a 3x3 kernel per input channel), or
    /// `None` when this CPU has no AVX-512F or a weight is infinite or NaN
    /// (the transforms' differences could turn the definition's ±inf into
    /// NaN; the direct path keeps such a layer).
    pub fn new(w: &[f32], o: usize, c: usize) -> Option<Self> {
        if !sgemm::available()
            || o == 0
            || c == 0
            || w.len() != o * c * 9
            || !w.iter().all(|v| v.is_finite())
        {
            return None;
        }
        let tiles = block_tiles(c);
        // Chunks of equal size, in whole register tiles, each within M_BYTES.
        let most = (M_BYTES / (64 * tiles)).max(sgemm::MR);
        let chunk = o
            .div_ceil(o.div_ceil(most))
            .next_multiple_of(sgemm::MR)
            .min(o);
        // U[ξ][oc][ci] for all channels, then cut into chunks.
        let mut u = vec![vec![0f32; o * c]; 16];
        for (oc, per_o) in w.chunks_exact(c * 9).enumerate() {
            for (ci, g) in per_o.chunks_exact(9).enumerate() {
                for (xi, v) in transform_kernel(g).into_iter().enumerate() {
                    u[xi][oc * c + ci] = v as f32;
                }
            }
        }
        let mut chunks = Vec::new();
        let mut o0 = 0;
        while o0 < o {
            let rows = chunk.min(o - o0);
            let per_xi: Option<Vec<PackedWeights>> = u
                .iter()
                .map(|m| PackedWeights::new(&m[o0 * c..(o0 + rows) * c], rows, c))
                .collect();
            chunks.push(per_xi?);
            o0 += rows;
        }
        Some(WinogradWeights {
            chunks,
            o,
            c,
            chunk,
            tiles,
        })
    }
}

/// Tiles per block for `c` input channels: as many as keep the block's
/// transformed input within [`V_BYTES`], in whole 16-lane vectors, at
/// least 32 and at most 256.
fn block_tiles(c: usize) -> usize {
    (V_BYTES / (64 * c) / 16 * 16).clamp(32, 256)
}

/// `G g Gᵀ` for one 3x3 kernel `g` (row-major), in float64: the 4x4
/// transformed kernel, row-major (`ξ = 4i + j`).
fn transform_kernel(g: &[f32]) -> [f64; 16] {
    let g: Vec<f64> = g.iter().map(|&v| f64::from(v)).collect();
    // G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
    let gm = |r: [f64; 3]| {
        [
            r[0],
            0.5 * (r[0] + r[1] + r[2]),
            0.5 * (r[0] - r[1] + r[2]),
            r[2],
        ]
    };
    // Rows of G g (4 x 3), column by column of g.
    let cols: [[f64; 4]; 3] = std::array::from_fn(|j| gm([g[j], g[3 + j], g[6 + j]]));
    let mut u = [0f64; 16];
    for i in 0..4 {
        let row = gm([cols[0][i], cols[1][i], cols[2][i]]);
        u[4 * i..4 * i + 4].copy_from_slice(&row);
    }
    u
}

/// True when [`conv`] takes this geometry: a 3x3 stride-1 undilated
/// convolution of one group whose planes are wide enough to fill the
/// transforms' 16-tile vectors (17 pixels or more a row), with
/// [`MIN_CHANNELS`] input and output channels or more.
pub fn takes(g: &ConvGeom) -> bool {
    g.c >= MIN_CHANNELS
        && g.o >= MIN_CHANNELS
        && g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.groups == 1
        && g.ow >= 17
        && g.oh >= 2
}

thread_local! {
    /// Each thread's transformed input and GEMM output: kept between calls
    /// (a few hundred KiB each), so no layer allocates them.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// What [`conv`] and [`conv_pool`] share: checks, and the input with its
/// zero border (`x` itself, or copied into `scratch`).
fn prepare<'a>(
    g: &ConvGeom,
    x: &'a [f32],
    padded_input: bool,
    w: &WinogradWeights,
    tail: &Tail<'_>,
    scratch: &'a mut [f32],
) -> &'a [f32] {
    assert!(takes(g), "winograd: a geometry this path does not take");
    assert!(
        w.o == g.o && w.c == g.c,
        "winograd: weights of another shape"
    );
    for v in [tail.scale, tail.shift].into_iter().flatten() {
        assert!(v.len() >= g.o, "winograd: tail shorter than the channels");
    }
    let (hp, wp) = super::conv::padded_size(g);
    if g.pads == [0; 4] || padded_input {
        &x[..g.c * hp * wp]
    } else {
        let buf = &mut scratch[..g.c * hp * wp];
        super::conv::pad_into(g, &x[..g.c * g.h * g.w], buf);
        buf
    }
}

/// `out = tail(conv(x, w))`, `out` `[O, OH, OW]` written inside borders
/// `out_pads` (zeroed here). `x` is `[C, H, W]`, or with `padded_input`
/// `[C, H + pads, W + pads]` holding the layer's zero border; a padded
/// layer's plain input is copied into `scratch` with its border first
/// ([`super::direct::scratch_len`] floats).
/// Panics if a slice is too short for the geometry (a bug check).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    g: &ConvGeom,
    x: &[f32],
    padded_input: bool,
    w: &WinogradWeights,
    tail: &Tail<'_>,
    out: &mut [f32],
    out_pads: [usize; 4],
    scratch: &mut [f32],
    threads: usize,
) {
    let xp = prepare(g, x, padded_input, w, tail, scratch);
    let [top, left, bottom, right] = out_pads;
    let pitch = g.ow + left + right;
    let plane = (g.oh + top + bottom) * pitch;
    let out = &mut out[..g.o * plane];
    if out_pads != [0; 4] {
        for p in out.chunks_mut(plane) {
            super::direct::zero_border(p, (g.oh, g.ow), out_pads);
        }
    }
    let geo = Tiling::new(g, (pitch, plane), top * pitch + left, 0);
    let n_tiles = g.oh.div_ceil(2) * geo.tx;
    let blocks = n_tiles.div_ceil(w.tiles);
    let dst = OutPtr(out.as_mut_ptr(), out.len());
    let run = |b: usize| {
        let t0 = b * w.tiles;
        block(&geo, xp, w, tail, dst, t0, w.tiles.min(n_tiles - t0));
    };
    let threads = super::balance::threads(threads);
    if super::balance::is_elastic() && blocks >= 2 {
        super::balance::both_ends((0..blocks).collect(), run);
    } else if threads >= 2 && blocks >= 2 {
        let split = super::balance::first_share(blocks);
        super::balance::join(
            (split, || (0..split).for_each(run)),
            (blocks - split, || (split..blocks).for_each(run)),
        );
    } else {
        (0..blocks).for_each(run);
    }
}

/// True when [`conv_pool`] can pool a layer's output with `p`: a 3x3
/// stride-2 max pooling without padding (the stem's two) of the whole
/// output.
pub fn pools(g: &ConvGeom, p: &PoolGeom) -> bool {
    p.kind == PoolKind::Max
        && super::pool::is_valid_3x3_s2(p)
        && (p.c, p.h, p.w) == (g.o, g.oh, g.ow)
}

thread_local! {
    /// Each thread's ring of convolution rows in [`conv_pool`].
    static RING: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out = maxpool(tail(conv(x, w)))` for a pooling `p` that [`pools`]
/// takes, `out` `[O, POH, POW]`: the convolution's rows go through a ring
/// per thread and are pooled as each block of tiles completes them, so its
/// whole output (Conv2d_2b's 5.5 MB) is never written out and read back,
/// as on the direct path (`direct::conv_pool`). Two threads split the
/// pooled rows, each computing the one tile row their parts share. Other
/// arguments as [`conv`]'s.
/// Panics if a slice is too short for the geometry (a bug check).
#[allow(clippy::too_many_arguments)]
pub fn conv_pool(
    g: &ConvGeom,
    x: &[f32],
    padded_input: bool,
    w: &WinogradWeights,
    tail: &Tail<'_>,
    p: &PoolGeom,
    out: &mut [f32],
    scratch: &mut [f32],
    threads: usize,
) {
    assert!(pools(g, p), "winograd: a pooling this path does not take");
    let xp = prepare(g, x, padded_input, w, tail, scratch);
    let plane = p.oh * p.ow;
    let out = &mut out[..g.o * plane];
    // Rows live at once: the two of a tile row waiting for the next one's
    // first, a partly done tile row, and a block's (see `pooled_rows`).
    let ring = 2 * w.tiles.div_ceil(g.ow.div_ceil(2)) + 4;
    let geo = Tiling::new(g, (g.ow, ring * g.ow), 0, ring);
    let threads = super::balance::threads(threads);
    if threads >= 2 && p.oh >= 2 {
        let split = super::balance::first_share(p.oh);
        let (mut a, mut b): (Vec<&mut [f32]>, Vec<&mut [f32]>) = out
            .chunks_mut(plane)
            .map(|q| q.split_at_mut(split * p.ow))
            .unzip();
        super::balance::join(
            (split, || {
                pooled_rows(&geo, xp, w, tail, p, &mut a, (0, split))
            }),
            (p.oh - split, || {
                pooled_rows(&geo, xp, w, tail, p, &mut b, (split, p.oh))
            }),
        );
    } else {
        let mut planes: Vec<&mut [f32]> = out.chunks_mut(plane).collect();
        pooled_rows(&geo, xp, w, tail, p, &mut planes, (0, p.oh));
    }
}

/// Pooled rows `lo..hi` of [`conv_pool`] into `planes` (one slice per
/// channel, from row `lo`): tile rows `lo..=hi` (convolution rows `2lo` to
/// `2hi + 1`), block by block into the thread's ring, each pooled row
/// taken as soon as its three rows are done.
fn pooled_rows(
    geo: &Tiling,
    xp: &[f32],
    w: &WinogradWeights,
    tail: &Tail<'_>,
    p: &PoolGeom,
    planes: &mut [&mut [f32]],
    (lo, hi): (usize, usize),
) {
    let ty_end = (hi + 1).min(geo.oh.div_ceil(2));
    let (t_start, t_end) = (lo * geo.tx, ty_end * geo.tx);
    RING.with(|r| {
        let Ok(mut ring) = r.try_borrow_mut() else {
            unreachable!("winograd: a pooled block inside another on one thread");
        };
        let ring = super::conv::scratch_of(&mut ring, w.o * geo.plane);
        let (mut py, mut t) = (lo, t_start);
        while t < t_end {
            // The ring's rows between the oldest one still to pool, `2·py`
            // (at least two rows before the block's first tile row), and
            // the block's last: at most `geo.ring`.
            let n = w.tiles.min(t_end - t);
            block(
                geo,
                xp,
                w,
                tail,
                OutPtr(ring.as_mut_ptr(), ring.len()),
                t,
                n,
            );
            t += n;
            let done = if t == t_end {
                geo.oh.min(2 * ty_end)
            } else {
                2 * (t / geo.tx)
            };
            while py < hi && 2 * py + 3 <= done {
                let row =
                    |y: usize, c: usize| &ring[c * geo.plane + geo.row_at(y) * geo.ow..][..geo.ow];
                for (c, plane) in planes.iter_mut().enumerate() {
                    let rows = (row(2 * py, c), row(2 * py + 1, c), row(2 * py + 2, c));
                    let dst = &mut plane[(py - lo) * p.ow..][..p.ow];
                    let pooled = super::pool::max_row_3x3_s2(rows, dst);
                    assert!(
                        pooled,
                        "winograd: pooling needs AVX-512F, as the weights do"
                    );
                }
                py += 1;
            }
        }
        assert!(py == hi, "winograd: pooled rows {py}..{hi} left");
    });
}

/// Where a layer's tiles lie.
#[derive(Clone, Copy, Debug)]
struct Tiling {
    c: usize,
    /// The padded input's height and width.
    hp: usize,
    wp: usize,
    oh: usize,
    ow: usize,
    /// Tiles per row.
    tx: usize,
    /// The output's row pitch and plane size (with its borders).
    pitch: usize,
    plane: usize,
    /// Where output pixel (0, 0) lies in a plane.
    origin: usize,
    /// Rows of a ring that holds output row `y` at row `y % ring` (0: the
    /// whole plane, row `y` at row `y`).
    ring: usize,
}

impl Tiling {
    /// `g`'s tiles, written to planes of `(pitch, plane)` with output pixel
    /// (0, 0) at `origin`, in a ring of `ring` rows (0: none).
    fn new(g: &ConvGeom, (pitch, plane): (usize, usize), origin: usize, ring: usize) -> Tiling {
        let (hp, wp) = super::conv::padded_size(g);
        Tiling {
            c: g.c,
            hp,
            wp,
            oh: g.oh,
            ow: g.ow,
            tx: g.ow.div_ceil(2),
            pitch,
            plane,
            origin,
            ring,
        }
    }

    /// The row of a plane that holds output row `y`.
    fn row_at(&self, y: usize) -> usize {
        if self.ring > 0 { y % self.ring } else { y }
    }

    /// The tiles `t0..t0 + n` (row-major over the tile grid) as runs along
    /// one tile row: `(tile row, first tile column, tiles, position in the
    /// block)`.
    fn runs(&self, t0: usize, n: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        let tx = self.tx;
        let mut t = t0;
        std::iter::from_fn(move || {
            (t < t0 + n).then(|| {
                let (ty, x0) = (t / tx, t % tx);
                let len = (tx - x0).min(t0 + n - t);
                let run = (ty, x0, len, t - t0);
                t += len;
                run
            })
        })
    }
}

/// The output planes, written by several threads at once: each writes only
/// the pixels of its own tiles.
#[derive(Clone, Copy, Debug)]
struct OutPtr(*mut f32, usize);

// SAFETY: the pointer is only written through in `block`, at the pixels of
// the block's own tiles, and blocks are disjoint: no two threads write one
// element, and nothing reads the output while they run.
#[allow(unsafe_code)]
unsafe impl Send for OutPtr {}
#[allow(unsafe_code)]
unsafe impl Sync for OutPtr {}

/// Floats from one element ξ's matrix (`rows × t`) to the next's in the
/// buffers: one cache line more than the matrix, so that the transforms'
/// 16 streams, one per ξ, fall in 16 different L1 sets (at `rows × t`
/// alone, 24 KiB on every layer, all 16 fell in one 8-way set).
fn stride(rows: usize, t: usize) -> usize {
    rows * t + 16
}

/// One block of `n` tiles from tile `t0`: the input transform, the GEMMs,
/// the output transform, chunk by chunk of output channels.
fn block(
    geo: &Tiling,
    xp: &[f32],
    w: &WinogradWeights,
    tail: &Tail<'_>,
    dst: OutPtr,
    t0: usize,
    n: usize,
) {
    let t = w.tiles;
    BUFFERS.with(|b| {
        let Ok(mut b) = b.try_borrow_mut() else {
            unreachable!("winograd: a block inside a block on one thread");
        };
        let (v, m) = &mut *b;
        let v = super::conv::scratch_of(v, 16 * stride(geo.c, t));
        let m = super::conv::scratch_of(m, 16 * stride(w.chunk, t));
        for (ty, x0, len, pos) in geo.runs(t0, n) {
            input_run(geo, xp, ty, x0, len, v, t, pos);
        }
        for (q, per_xi) in w.chunks.iter().enumerate() {
            let rows = per_xi[0].rows();
            for (xi, a) in per_xi.iter().enumerate() {
                let rhs = Dense {
                    b: &v[xi * stride(geo.c, t)..][..geo.c * t],
                    ldb: t,
                };
                let mq = &mut m[xi * stride(rows, t)..][..rows * t];
                sgemm::gemm(mq, t, a, &rhs, n, &Tail::default(), 1);
            }
            for (ty, x0, len, pos) in geo.runs(t0, n) {
                output_run(geo, m, rows, t, q * w.chunk, tail, dst, (ty, x0, len, pos));
            }
        }
    });
}

/// The input transform of `len` tiles of tile row `ty` from tile column
/// `x0`, into `v[ξ][c][pos..pos + len]` (`t` tiles per row of `v`).
#[allow(clippy::too_many_arguments)]
fn input_run(
    geo: &Tiling,
    xp: &[f32],
    ty: usize,
    x0: usize,
    len: usize,
    v: &mut [f32],
    t: usize,
    pos: usize,
) {
    assert!(v.len() >= 16 * stride(geo.c, t) && pos + len <= t);
    let plane = geo.hp * geo.wp;
    for c in 0..geo.c {
        // Rows 2ty..2ty + 4 of the padded plane: on an odd-sized plane the
        // last tile row's fourth row and the last tile's fourth column lie
        // past it, and feed only the outputs past its edge, never written.
        let src = &xp[c * plane + 2 * ty * geo.wp..];
        // The next channel's window, whose rows come from L3 (the stem's
        // inputs, 2.8 MB): Conv2d_2a and 2b 4-5% faster (in-process A/B;
        // two channels ahead the same, four less), the rest even.
        let ahead = xp
            .as_ptr()
            .wrapping_add((c + 1) * plane + 2 * ty * geo.wp + 2 * x0);
        for i in 0..4 {
            prefetch(ahead.wrapping_add(i * geo.wp), 2 * len + 2);
        }
        let mut x = 0;
        while x < len {
            let k = (len - x).min(16);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F was detected (`WinogradWeights` exists only
            // then); `tiles_in` reads `src` only through masked loads inside
            // its bounds and writes lanes `< k` of `v` at
            // `(ξ·C + c)·t + pos + x`, inside `v` (asserted above).
            #[allow(unsafe_code)]
            unsafe {
                avx512::tiles_in(
                    src,
                    geo.wp,
                    2 * (x0 + x),
                    v,
                    (stride(geo.c, t), c * t + pos + x),
                    k,
                );
            }
            x += k;
        }
    }
}

/// Prefetches `n` floats from `p` into L1 (a prefetch never faults: `p`
/// may lie past the input).
fn prefetch(p: *const f32, n: usize) {
    #[cfg(target_arch = "x86_64")]
    for l in (0..n + 15).step_by(16) {
        // SAFETY: a prefetch reads nothing and cannot fault; SSE is part of
        // x86_64.
        #[allow(unsafe_code)]
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(l).cast::<i8>());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, n);
}

/// The output transform of one run of tiles `(ty, x0, len, pos)` for the
/// `rows` channels of chunk from channel `o0`, with the tail, into the
/// output planes.
#[allow(clippy::too_many_arguments)]
fn output_run(
    geo: &Tiling,
    m: &[f32],
    rows: usize,
    t: usize,
    o0: usize,
    tail: &Tail<'_>,
    dst: OutPtr,
    (ty, x0, len, pos): (usize, usize, usize, usize),
) {
    assert!(m.len() >= 16 * stride(rows, t) && pos + len <= t);
    let y0 = 2 * ty;
    let two_rows = y0 + 1 < geo.oh;
    for r in 0..rows {
        let o = o0 + r;
        let scale = tail.scale.map_or(1.0, |s| s[o]);
        let shift = tail.shift.map_or(0.0, |s| s[o]);
        let row0 = o * geo.plane + geo.origin + geo.row_at(y0) * geo.pitch;
        assert!(row0 + usize::from(two_rows) * geo.pitch + geo.ow <= dst.1);
        let mut x = 0;
        while x < len {
            let k = (len - x).min(16);
            let px = 2 * (x0 + x);
            let cols = (2 * k).min(geo.ow - px);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F was detected; lanes `< k` of `m` at
            // `(ξ·rows + r)·t + pos + x` lie inside `m` (asserted above);
            // the `cols` outputs of each of the tile row's one or two rows
            // lie inside the output (the row's end is asserted above, and
            // `px + cols ≤ ow` by the definition of `cols`), and
            // belong to this block's tiles alone (see `OutPtr`).
            #[allow(unsafe_code)]
            unsafe {
                avx512::tiles_out(
                    m,
                    (stride(rows, t), r * t + pos + x),
                    k,
                    (
                        scale,
                        shift,
                        tail.scale.is_some() || tail.shift.is_some(),
                        tail.relu,
                    ),
                    dst.0.add(row0 + px),
                    if two_rows { geo.pitch } else { 0 },
                    two_rows,
                    cols,
                );
            }
            x += k;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    /// Lanes `0..n` (at most 16) set.
    fn mask(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    /// `s[off..off + 16]`, lanes past the slice's end zero.
    #[target_feature(enable = "avx512f")]
    fn load(s: &[f32], off: usize) -> __m512 {
        let m = mask(s.len().saturating_sub(off));
        // SAFETY: only lanes inside `s` are read (the mask); a masked-off
        // lane's address is never dereferenced.
        unsafe { _mm512_maskz_loadu_ps(m, s.as_ptr().wrapping_add(off)) }
    }

    /// The even and odd elements of `s[off..off + 32]`.
    #[target_feature(enable = "avx512f")]
    fn deinterleave(s: &[f32], off: usize) -> (__m512, __m512) {
        let (a, b) = (load(s, off), load(s, off + 16));
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        (
            _mm512_permutex2var_ps(a, even, b),
            _mm512_permutex2var_ps(a, odd, b),
        )
    }

    /// `Bᵀ x` for one column of four vectors, `Bᵀ` = [[1, 0, -1, 0],
    /// [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
    #[target_feature(enable = "avx512f")]
    fn bt(d: [__m512; 4]) -> [__m512; 4] {
        [
            _mm512_sub_ps(d[0], d[2]),
            _mm512_add_ps(d[1], d[2]),
            _mm512_sub_ps(d[2], d[1]),
            _mm512_sub_ps(d[1], d[3]),
        ]
    }

    /// The input transform of `k` tiles (one per lane) whose 4x4 windows
    /// start at column `x` of the rows `src[0..]`, `src[wp..]`, ...: lane
    /// `l` of `Bᵀ d B`'s element ξ goes to `v[ξ·stride + at + l]`.
    ///
    /// # Safety
    /// AVX-512F is available; `v[ξ·stride + at + l]` is inside `v` for
    /// ξ < 16, l < k ≤ 16.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tiles_in(
        src: &[f32],
        wp: usize,
        x: usize,
        v: &mut [f32],
        (stride, at): (usize, usize),
        k: usize,
    ) {
        // d[i][j]: rows i of the windows, column j, one window per lane.
        let mut t = [[_mm512_setzero_ps(); 4]; 4];
        for (i, ti) in t.iter_mut().enumerate() {
            let row = src.get(i * wp..).unwrap_or(&[]);
            let (d0, d1) = deinterleave(row, x);
            let (d2, d3) = deinterleave(row, x + 2);
            *ti = bt([d0, d1, d2, d3]);
        }
        let m = mask(k);
        // Column j of every row: a transpose's indexing, clearer by index.
        #[allow(clippy::needless_range_loop)]
        for j in 0..4 {
            let col = bt([t[0][j], t[1][j], t[2][j], t[3][j]]);
            for (i, c) in col.iter().enumerate() {
                let xi = 4 * i + j;
                // SAFETY: the caller's contract: lanes < k of this store lie inside `v`.
                unsafe {
                    _mm512_mask_storeu_ps(v.as_mut_ptr().add(xi * stride + at), m, *c);
                }
            }
        }
    }

    /// `Aᵀ x` for four vectors, `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
    #[target_feature(enable = "avx512f")]
    fn at(m: [__m512; 4]) -> [__m512; 2] {
        [
            _mm512_add_ps(_mm512_add_ps(m[0], m[1]), m[2]),
            _mm512_sub_ps(_mm512_sub_ps(m[1], m[2]), m[3]),
        ]
    }

    /// The output transform of `k` tiles, lane `l` of element ξ at
    /// `m[ξ·stride + at + l]`, then `y · scale + shift` (when `affine`) and
    /// the ReLU: the tiles' two output rows at `out` and `out + pitch`
    /// (the second only when `two`), `cols` columns each.
    ///
    /// # Safety
    /// AVX-512F is available; `m` holds the lanes read; `out[..cols]` and,
    /// when `two`, `out[pitch..pitch + cols]` are writable, `cols ≤ 2k`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tiles_out(
        m: &[f32],
        (stride, at_): (usize, usize),
        k: usize,
        (scale, shift, affine, relu): (f32, f32, bool, bool),
        out: *mut f32,
        pitch: usize,
        two: bool,
        cols: usize,
    ) {
        let lanes = mask(k);
        let mut e = [_mm512_setzero_ps(); 16];
        for (xi, ev) in e.iter_mut().enumerate() {
            // SAFETY: the caller's contract: lanes < k lie inside `m`.
            *ev = unsafe { _mm512_maskz_loadu_ps(lanes, m.as_ptr().add(xi * stride + at_)) };
        }
        // Aᵀ down each column j, then along each of the two rows.
        let mut s = [[_mm512_setzero_ps(); 2]; 4];
        for (j, sj) in s.iter_mut().enumerate() {
            *sj = at([e[j], e[4 + j], e[8 + j], e[12 + j]]);
        }
        let lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        let hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        let (sv, bv, zero) = (
            _mm512_set1_ps(scale),
            _mm512_set1_ps(shift),
            _mm512_setzero_ps(),
        );
        // Row a of the tile's output, from element a of each column's pair.
        #[allow(clippy::needless_range_loop)]
        for a in 0..if two { 2 } else { 1 } {
            let mut y = at([s[0][a], s[1][a], s[2][a], s[3][a]]);
            for v in &mut y {
                if affine {
                    *v = _mm512_add_ps(_mm512_mul_ps(*v, sv), bv);
                }
                if relu {
                    // max(0, v): a NaN in `v` is kept, as `Epilogue` keeps it.
                    *v = _mm512_max_ps(zero, *v);
                }
            }
            let row = out.wrapping_add(a * pitch);
            // SAFETY: the caller's contract: `cols` outputs of the row are writable.
            unsafe {
                _mm512_mask_storeu_ps(row, mask(cols), _mm512_permutex2var_ps(y[0], lo, y[1]));
                _mm512_mask_storeu_ps(
                    row.wrapping_add(16),
                    mask(cols.saturating_sub(16)),
                    _mm512_permutex2var_ps(y[0], hi, y[1]),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::{Weights, conv2d, conv2d_direct};
    use crate::kernels::direct::{DirectWeights, Layout};
    use crate::kernels::eltwise::Epilogue;

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Against the `gemm` crate path (the plain weights), on odd and even
    /// planes, padded or not, with and without output borders, in one block
    /// of tiles or several, on one thread and two (the same bits).
    #[test]
    fn matches_the_direct_definition() {
        if !sgemm::available() {
            return;
        }
        for (c, hw, o, pad) in [
            (16, 19, 17, 0),
            (16, 36, 23, 1),
            (20, 25, 40, 1),
            (17, 40, 50, 0),
            (16, 70, 24, 1),
        ] {
            let g = ConvGeom::from_input((c, hw, hw), o, [3, 3], [1, 1], [pad; 4], [1, 1], 1);
            let x = data(c * hw * hw, 1);
            let w = data(o * c * 9, 2);
            let scale = data(o, 3);
            let shift = data(o, 4);
            let epi = Epilogue {
                scale: Some(scale.clone()),
                shift: Some(shift.clone()),
                relu: true,
            };
            let mut want = vec![0f32; o * g.oh * g.ow];
            conv2d(
                &g,
                &x,
                Weights::Plain(&w),
                &epi,
                &mut want,
                &mut Vec::new(),
                1,
            );
            let ww = WinogradWeights::new(&w, o, c).unwrap();
            let tail = Tail {
                scale: Some(&scale),
                shift: Some(&shift),
                relu: true,
            };
            let mut one_thread: Vec<Vec<f32>> = Vec::new();
            for threads in [1, 2] {
                for (b, border) in [[0; 4], [1, 2, 1, 2]].into_iter().enumerate() {
                    let pitch = g.ow + border[1] + border[3];
                    let plane = (g.oh + border[0] + border[2]) * pitch;
                    let mut got = vec![f32::NAN; o * plane];
                    conv(
                        &g,
                        &x,
                        false,
                        &ww,
                        &tail,
                        &mut got,
                        border,
                        &mut vec![0.0; c * (hw + 2) * (hw + 2)],
                        threads,
                    );
                    for oc in 0..o {
                        for y in 0..g.oh + border[0] + border[2] {
                            for xx in 0..pitch {
                                let v = got[oc * plane + y * pitch + xx];
                                let (iy, ix) =
                                    (y.wrapping_sub(border[0]), xx.wrapping_sub(border[1]));
                                if iy < g.oh && ix < g.ow {
                                    let e = want[oc * g.oh * g.ow + iy * g.ow + ix];
                                    assert!(
                                        (v - e).abs() <= 1e-5 * (1.0 + e.abs()),
                                        "{c}x{hw} -> {o}, pad {pad}, border {border:?}, \
                                         channel {oc} ({iy}, {ix}): {v} vs {e}"
                                    );
                                } else {
                                    assert_eq!(v, 0.0, "border not zeroed at {oc} ({y}, {xx})");
                                }
                            }
                        }
                    }
                    // Blocks are summed alike whichever thread runs them.
                    match one_thread.get(b) {
                        None => one_thread.push(got),
                        Some(first) => assert!(
                            same_bits(first, &got),
                            "{c}x{hw} -> {o}: two threads changed the bits"
                        ),
                    }
                }
            }
        }
    }

    /// The fused pooling gives the bits of the convolution then the
    /// pooling, on odd and even planes, on one thread and two.
    #[test]
    fn pooled_rows_match_pooling_after() {
        if !sgemm::available() {
            return;
        }
        // The last: blocks of 32 tiles (200 channels), shorter than a tile row
        // of 34, the ring at its tightest.
        for (c, hw, o, pad) in [
            (16, 41, 20, 0),
            (17, 30, 33, 1),
            (16, 70, 16, 0),
            (200, 69, 16, 0),
        ] {
            let g = ConvGeom::from_input((c, hw, hw), o, [3, 3], [1, 1], [pad; 4], [1, 1], 1);
            let x = data(c * hw * hw, 7);
            let w = data(o * c * 9, 8);
            let shift = data(o, 9);
            let tail = Tail {
                scale: None,
                shift: Some(&shift),
                relu: true,
            };
            let ww = WinogradWeights::new(&w, o, c).unwrap();
            let mut padded = vec![0.0; c * (hw + 2) * (hw + 2)];
            let mut full = vec![0f32; o * g.oh * g.ow];
            conv(&g, &x, false, &ww, &tail, &mut full, [0; 4], &mut padded, 1);
            let p = PoolGeom::max_3x3_s2(o, g.oh, g.ow);
            let mut want = vec![0f32; o * p.oh * p.ow];
            crate::kernels::pool::pool2d(&p, &full, &mut want, 1);
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; want.len()];
                conv_pool(
                    &g,
                    &x,
                    false,
                    &ww,
                    &tail,
                    &p,
                    &mut got,
                    &mut padded,
                    threads,
                );
                assert!(
                    same_bits(&got, &want),
                    "{c}x{hw} -> {o}, pad {pad}, {threads} threads"
                );
            }
        }
    }

    /// The transforms add no more rounding than the direct path's longer
    /// sums: the largest error against float64, on the layers this path
    /// takes in Inception V3 (planes cut to keep the test short), within
    /// 1.5 times the direct kernel's (measured 0.72-1.31 times on the
    /// full-size planes).
    #[test]
    fn as_accurate_as_the_direct_path() {
        if !sgemm::available() {
            return;
        }
        for (c, hw, o, pad) in [(32, 40, 64, 1), (80, 33, 192, 0), (96, 35, 96, 1)] {
            let g = ConvGeom::from_input((c, hw, hw), o, [3, 3], [1, 1], [pad; 4], [1, 1], 1);
            // Post-ReLU activations (non-negative), weights of both signs.
            let x: Vec<f32> = data(c * hw * hw, 5).iter().map(|v| v + 0.5).collect();
            let w = data(o * c * 9, 6);
            let wide = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
            let mut want = vec![0f64; o * g.oh * g.ow];
            let (x64, w64) = (wide(&x), wide(&w));
            conv2d(
                &g,
                &x64,
                Weights::Plain(&w64),
                &Epilogue::none(),
                &mut want,
                &mut Vec::new(),
                1,
            );
            let dw = DirectWeights::new(&w, o, c * 9).unwrap();
            let mut direct = vec![0f32; want.len()];
            let none = Epilogue::none();
            conv2d_direct(
                &g,
                None,
                &x,
                &dw,
                &none,
                &mut direct,
                &mut Vec::new(),
                1,
                Layout::default(),
            );
            let ww = WinogradWeights::new(&w, o, c).unwrap();
            let mut ours = vec![0f32; want.len()];
            let mut padded = vec![0.0; c * (hw + 2) * (hw + 2)];
            conv(
                &g,
                &x,
                false,
                &ww,
                &Tail::default(),
                &mut ours,
                [0; 4],
                &mut padded,
                1,
            );
            let err = |v: &[f32]| {
                v.iter()
                    .zip(&want)
                    .map(|(a, b)| (f64::from(*a) - b).abs())
                    .fold(0.0, f64::max)
            };
            let (e_ours, e_direct) = (err(&ours), err(&direct));
            eprintln!("{c} -> {o}, {hw}x{hw}: Winograd {e_ours:.2e}, direct {e_direct:.2e}");
            assert!(
                e_ours <= 1.5 * e_direct,
                "{c} -> {o} channels, {hw}x{hw}: Winograd {e_ours:e}, direct {e_direct:e}"
            );
        }
    }
}
