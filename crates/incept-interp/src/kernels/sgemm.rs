//! A float32 GEMM for convolutions on AVX-512: the weights are packed once,
//! when the interpreter is built (they are constant, and the `gemm` crate
//! repacks them on every call), and each output tile is summed in registers
//! over K blocks of at most [`KC`] terms before being added into the output,
//! exactly the accumulation of the `gemm` crate path it replaces (see
//! `K_BLOCK` in `conv.rs`). Ragged edges use masked loads and stores instead
//! of padding, so the im2col matrix or the input is read in place.

use rayon::prelude::*;

/// Output rows (channels) per micro-tile: each is broadcast from the packed weights.
pub const MR: usize = 6;
/// Output columns (pixels) per micro-tile: four 16-lane vectors.
pub const NR: usize = 64;
/// Longest float32 sum kept in registers before it is added into the output.
pub const KC: usize = 128;

/// Bytes ahead of the packed weights being read that the kernel prefetches
/// at every K index. A product over few columns (the 8x8 layers: 64 pixels)
/// reads its weights once, in order, from memory (up to 6.9 MB a layer),
/// and the hardware prefetcher alone left the FMAs waiting: the 8x8 layers
/// -0.01..-0.065 ms each, the bench median -0.45 ms at 1 thread (in-process
/// alternations, 30 pairs); 2 KB ahead gained half as much, 16 KB nothing.
const A_PREFETCH_BYTES: usize = 8 << 10;

/// A `[rows, k]` row-major weight matrix packed for [`gemm`]: for each K
/// block (`KC` rows of K, the last one shorter) and each tile of `MR` rows,
/// `kc × MR` values, `MR` consecutive per K index, rows past `rows` zero.
#[derive(Debug)]
pub struct PackedWeights {
    data: Vec<f32>,
    rows: usize,
    k: usize,
    tiles: usize,
}

impl PackedWeights {
    /// Packs `w` (`[rows, k]` row-major), or `None` when this CPU cannot run
    /// the kernel (no AVX-512F): callers then keep the `gemm` crate path.
    pub fn new(w: &[f32], rows: usize, k: usize) -> Option<Self> {
        if !available() || rows == 0 || k == 0 || w.len() != rows * k {
            return None;
        }
        let tiles = rows.div_ceil(MR);
        let mut data = vec![0.0; tiles * MR * k];
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            for t in 0..tiles {
                let base = k0 * tiles * MR + t * kc * MR;
                for r in 0..MR.min(rows - t * MR) {
                    let src = &w[(t * MR + r) * k + k0..][..kc];
                    for (kk, v) in src.iter().enumerate() {
                        data[base + kk * MR + r] = *v;
                    }
                }
            }
            k0 += kc;
        }
        Some(PackedWeights {
            data,
            rows,
            k,
            tiles,
        })
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The `kc × MR` block of row tile `t` for the K block starting at `k0`.
    fn block(&self, k0: usize, t: usize) -> &[f32] {
        let kc = KC.min(self.k - k0);
        let base = k0 * self.tiles * MR + t * kc * MR;
        &self.data[base..base + kc * MR]
    }
}

/// True when this CPU runs the AVX-512 kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The right-hand matrix `[k, n]` of a product, handed to the kernel one
/// `kc × ncols` block at a time.
pub trait Rhs: Sync {
    /// True when [`Rhs::block`] returns data in place (the kernel then
    /// prefetches the next panel, `NR` columns on); false when it packs the
    /// block into `buf`.
    const IN_PLACE: bool;

    /// Rows `k0..k0 + kc`, columns `j0..j0 + ncols` (`ncols ≤ NR`, `kc ≤ KC`)
    /// as `(data, ldb)`: element `(kk, j)` at `data[kk·ldb + j]`. `buf` holds
    /// `KC·NR` floats for implementations that pack the block.
    fn block<'s>(
        &'s self,
        k0: usize,
        kc: usize,
        j0: usize,
        ncols: usize,
        buf: &'s mut [f32],
    ) -> (&'s [f32], usize);
}

/// A row-major matrix already in memory, read in place.
#[derive(Clone, Copy, Debug)]
pub struct Dense<'a> {
    /// Elements.
    pub b: &'a [f32],
    /// Distance between rows.
    pub ldb: usize,
}

impl Rhs for Dense<'_> {
    const IN_PLACE: bool = true;

    fn block<'s>(
        &'s self,
        k0: usize,
        _: usize,
        j0: usize,
        _: usize,
        _: &'s mut [f32],
    ) -> (&'s [f32], usize) {
        (&self.b[k0 * self.ldb + j0..], self.ldb)
    }
}

/// A per-row transform applied to each output tile while it is still in
/// registers, after its last K block: `y = x · scale[r] + shift[r]`, then
/// `max(y, 0)` (NaN kept). The same float32 operations, in the same order,
/// as a separate pass over the output (`Epilogue`), without that pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tail<'a> {
    /// Per-row multiplier (`rows` long).
    pub scale: Option<&'a [f32]>,
    /// Per-row addend (`rows` long).
    pub shift: Option<&'a [f32]>,
    /// Clamp at zero afterwards.
    pub relu: bool,
}

/// One tile's rows of a [`Tail`].
#[derive(Clone, Copy, Debug)]
struct TileTail {
    scale: Option<[f32; MR]>,
    shift: Option<[f32; MR]>,
    relu: bool,
}

impl Tail<'_> {
    /// Panics unless every per-row part covers `rows` rows (a bug check).
    fn check(&self, rows: usize) {
        for v in [self.scale, self.shift].into_iter().flatten() {
            assert!(v.len() >= rows, "sgemm: tail shorter than the rows");
        }
    }

    fn tile(&self, r0: usize, rows: usize) -> Option<TileTail> {
        let pick = |v: Option<&[f32]>, fill: f32| {
            v.map(|v| {
                let mut t = [fill; MR];
                t[..rows].copy_from_slice(&v[r0..r0 + rows]);
                t
            })
        };
        let t = TileTail {
            scale: pick(self.scale, 1.0),
            shift: pick(self.shift, 0.0),
            relu: self.relu,
        };
        (t.scale.is_some() || t.shift.is_some() || t.relu).then_some(t)
    }
}

/// `dst[rows, n] = tail(a × rhs[k, n])`, `dst` rows `ldc` apart.
///
/// With several threads, wide products are split by column panels (each
/// thread packs only its own part of `rhs`), narrow ones by row tiles; with
/// two, in the proportion of the threads' measured speeds (`balance.rs`).
/// Panics if `dst` is too small (a bug check: callers size every buffer
/// from the validated graph).
pub fn gemm<R: Rhs>(
    dst: &mut [f32],
    ldc: usize,
    a: &PackedWeights,
    rhs: &R,
    n: usize,
    tail: &Tail<'_>,
    threads: usize,
) {
    if n == 0 {
        return;
    }
    assert!(ldc >= n, "sgemm: row stride shorter than a row");
    tail.check(a.rows);
    let c_len = (a.rows - 1) * ldc + n;
    assert!(dst.len() >= c_len, "sgemm: destination too small");
    let threads = super::balance::threads(threads);
    let panels = n.div_ceil(NR);
    // Split by columns when there are enough panels, or when the right-hand
    // side is gathered (a split by rows would have each thread gather all of
    // it: the stride-2 reductions on two threads); else by row tiles. Column
    // parts are whole 16-column vectors.
    let by_columns =
        threads > 1 && (panels >= 4 * threads || (!R::IN_PLACE && n >= 2 * NR * threads));
    let units = if by_columns { n.div_ceil(16) } else { a.tiles };
    let bounds: Vec<usize> = if threads == 2 && units >= 2 {
        let first = super::balance::first_share(units);
        vec![0, first, units]
    } else {
        let parts = threads.min(units);
        (0..=parts).map(|i| i * units / parts).collect()
    };
    // Parts: (first row tile, first column, rows of the part as slices of its columns).
    let mut parts: Vec<(usize, usize, Vec<&mut [f32]>)> = Vec::new();
    let rows = dst[..c_len].chunks_mut(ldc).map(|r| &mut r[..n]);
    if by_columns {
        let cols: Vec<(usize, usize)> = bounds
            .windows(2)
            .map(|w| (w[0] * 16, (w[1] * 16).min(n)))
            .filter(|(j0, j1)| j1 > j0)
            .collect();
        parts = cols
            .iter()
            .map(|&(j0, _)| (0, j0, Vec::with_capacity(a.rows)))
            .collect();
        for mut row in rows {
            for (part, &(j0, j1)) in parts.iter_mut().zip(&cols) {
                let (mine, rest) = row.split_at_mut(j1 - j0);
                part.2.push(mine);
                row = rest;
            }
        }
    } else {
        let mut rows = rows.enumerate().peekable();
        for w in bounds.windows(2).filter(|w| w[1] > w[0]) {
            let end = (w[1] * MR).min(a.rows);
            let mut mine = Vec::with_capacity(end - w[0] * MR);
            while let Some((_, row)) = rows.next_if(|(i, _)| *i < end) {
                mine.push(row);
            }
            parts.push((w[0], 0, mine));
        }
    }
    if parts.len() == 2 && threads == 2 {
        // Two threads: the caller runs the first part, the other worker the
        // second, and their finishing times set the next split.
        let second = parts.pop();
        let first = parts.pop();
        if let (Some((t0a, j0a, mut ca)), Some((t0b, j0b, mut cb))) = (first, second) {
            let size = |c: &[&mut [f32]]| c.len() * c.first().map_or(0, |r| r.len());
            let (wa, wb) = (size(&ca), size(&cb));
            super::balance::join(
                (wa, || part(a, rhs, t0a, j0a, &mut ca, tail)),
                (wb, || part(a, rhs, t0b, j0b, &mut cb, tail)),
            );
        }
    } else if parts.len() > 1 {
        parts
            .into_par_iter()
            .for_each(|(t0, j0, mut c)| part(a, rhs, t0, j0, &mut c, tail));
    } else if let Some((t0, j0, mut c)) = parts.pop() {
        part(a, rhs, t0, j0, &mut c, tail);
    }
}

/// `c[r] = tail(a × rhs)[r]` on the calling thread, for the rows `c` of the
/// whole product (`a.rows()` slices of equal length: the columns).
pub fn gemm_rows<R: Rhs>(c: &mut [&mut [f32]], a: &PackedWeights, rhs: &R, tail: &Tail<'_>) {
    assert!(c.len() == a.rows, "sgemm: one slice per row");
    let n = c.first().map_or(0, |r| r.len());
    assert!(c.iter().all(|r| r.len() == n), "sgemm: rows of one length");
    tail.check(a.rows);
    if n > 0 {
        part(a, rhs, 0, 0, c, tail);
    }
}

/// One part of the product: rows `t0·MR..` (as many as `c` holds), columns
/// `j0..j0 + c[0].len()`. Per column panel, per K block, per row tile, so the
/// panel's `kc × NR` block of `rhs` stays in L1 while the weights stream.
fn part<R: Rhs>(
    a: &PackedWeights,
    rhs: &R,
    t0: usize,
    j0: usize,
    c: &mut [&mut [f32]],
    tail: &Tail<'_>,
) {
    let width = c.first().map_or(0, |r| r.len());
    let mut buf = if R::IN_PLACE {
        Vec::new()
    } else {
        vec![0f32; KC * NR]
    };
    let mut p0 = 0;
    while p0 < width {
        let ncols = NR.min(width - p0);
        let mut k0 = 0;
        while k0 < a.k {
            let kc = KC.min(a.k - k0);
            let (b, ldb) = rhs.block(k0, kc, j0 + p0, ncols, &mut buf);
            // The first row tile also prefetches the next panel's block: its
            // `kc` rows lie `ldb` apart, too many streams for the hardware
            // prefetcher, and without this a wide product (the stem's
            // 147x147 layers) waits on memory at every panel.
            let pf = R::IN_PLACE && p0 + ncols < width;
            let last = k0 + kc == a.k;
            for (i, tile) in c.chunks_mut(MR).enumerate() {
                let tt = if last {
                    tail.tile((t0 + i) * MR, tile.len())
                } else {
                    None
                };
                micro(
                    a.block(k0, t0 + i),
                    b,
                    kc,
                    ldb,
                    tile,
                    p0,
                    ncols,
                    k0 > 0,
                    pf && i == 0,
                    tt.as_ref(),
                );
            }
            k0 += kc;
        }
        p0 += ncols;
    }
}

/// One micro-tile: `c[r][p0..p0 + ncols] (+)= a[kc × MR packed] × b[kc, ncols]`
/// for each row `r` of `c` (at most `MR`).
#[allow(clippy::too_many_arguments)]
fn micro(
    a: &[f32],
    b: &[f32],
    kc: usize,
    ldb: usize,
    c: &mut [&mut [f32]],
    p0: usize,
    ncols: usize,
    accumulate: bool,
    prefetch: bool,
    tail: Option<&TileTail>,
) {
    let rows = c.len();
    assert!(kc > 0 && rows > 0 && rows <= MR && ncols > 0 && ncols <= NR);
    assert!(a.len() >= kc * MR, "sgemm: packed block too short");
    // Checked arithmetic: a wrapped bound would let the kernel read outside `b`.
    let b_needed = (kc - 1).checked_mul(ldb).and_then(|x| x.checked_add(ncols));
    assert!(
        (kc == 1 || ldb >= ncols) && b_needed.is_some_and(|need| b.len() >= need),
        "sgemm: rhs block out of bounds"
    );
    let mut cp = [std::ptr::null_mut::<f32>(); MR];
    for (p, row) in cp.iter_mut().zip(c.iter_mut()) {
        *p = row[p0..p0 + ncols].as_mut_ptr();
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `PackedWeights` exists only when AVX-512F was detected (the
    // only way to reach here); the asserts and slicing above prove that every
    // element the kernel reads (a[kk·MR + r], b[kk·ldb + j] for kk < kc,
    // r < MR, j < ncols) and writes (cp[r][j], r < rows, j < ncols) lies
    // inside its slice; lanes at or past `ncols` are masked off, so they are
    // never touched; the rows of `c` are distinct mutable borrows, so they
    // alias neither each other nor `a` and `b`.
    #[allow(unsafe_code)]
    unsafe {
        // As few 16-lane vectors as the columns need (the ragged last panel
        // of a 17x17 layer, 289 = 4·64 + 33, costs 3 vectors, not 4), and as
        // few rows as the tile has (the last tile of a 32-channel layer has
        // 2 rows: computing 6 would waste a tenth of the layer).
        macro_rules! pick {
            ($($r:literal)*) => {
                match (rows, ncols.div_ceil(16)) {
                    $(
                        ($r, 1) => avx512::kernel::<$r, 1>,
                        ($r, 2) => avx512::kernel::<$r, 2>,
                        ($r, 3) => avx512::kernel::<$r, 3>,
                        ($r, _) => avx512::kernel::<$r, 4>,
                    )*
                    // rows ≤ MR, asserted above.
                    _ => avx512::kernel::<MR, 4>,
                }
            };
        }
        let kernel = pick!(1 2 3 4 5 6);
        kernel(
            a.as_ptr(),
            b.as_ptr(),
            kc,
            ldb,
            &cp,
            rows,
            ncols,
            accumulate,
            prefetch,
        );
    }
    // The tail on the tile just written, still in L1 (inside the kernel
    // it cost register spills).
    #[cfg(target_arch = "x86_64")]
    if let Some(t) = tail {
        // SAFETY: AVX-512F was detected (see above); the function is safe
        // code compiled for that feature.
        #[allow(unsafe_code)]
        unsafe {
            avx512::apply_tail(c, p0, ncols, t);
        }
    }
    // `PackedWeights` is only built where AVX-512F was detected, so this
    // function is unreachable elsewhere.
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a, b, ldb, cp, accumulate, prefetch, tail);
        unreachable!("sgemm: packed weights exist only on x86_64 with AVX-512F");
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{A_PREFETCH_BYTES, MR, TileTail};

    /// `y = x · scale + shift`, then `max(y, 0)`, on columns
    /// `p0..p0 + ncols` of each row: safe code, vectorised for AVX-512.
    #[target_feature(enable = "avx512f")]
    pub fn apply_tail(c: &mut [&mut [f32]], p0: usize, ncols: usize, t: &TileTail) {
        for (r, row) in c.iter_mut().enumerate() {
            let (s, b) = (t.scale.map(|s| s[r]), t.shift.map(|b| b[r]));
            for v in &mut row[p0..p0 + ncols] {
                let mut y = *v;
                if let Some(s) = s {
                    y *= s;
                }
                if let Some(b) = b {
                    y += b;
                }
                // `y < 0` rather than `!(y > 0)`: NaN stays, as in `Epilogue`.
                *v = if t.relu && y < 0.0 { 0.0 } else { y };
            }
        }
    }

    /// Lane masks of the `NV` 16-lane vectors covering `ncols` columns.
    fn masks<const NV: usize>(ncols: usize) -> [__mmask16; NV] {
        let mut m = [0; NV];
        for (v, mv) in m.iter_mut().enumerate() {
            let left = ncols.saturating_sub(16 * v).min(16);
            *mv = ((1u32 << left) - 1) as __mmask16;
        }
        m
    }

    /// The `R`×(16·NV) register tile (`R ≤ MR`): up to 24 accumulators, one
    /// broadcast weight and `NV` vectors of `b` per K index.
    ///
    /// # Safety
    /// AVX-512F is available; `a` holds `kc·MR` floats; `b[kk·ldb + j]` is
    /// readable and `c[r][j]` writable for `kk < kc`, `r < rows`,
    /// `j < ncols`, with `1 ≤ ncols ≤ 16·NV`, `1 ≤ rows ≤ MR`; the tile's
    /// result is written for rows `r < min(R, rows)` (callers pass `R = rows`). With
    /// `prefetch`, addresses `NR` columns on are only prefetched, never read.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn kernel<const R: usize, const NV: usize>(
        a: *const f32,
        b: *const f32,
        kc: usize,
        ldb: usize,
        c: &[*mut f32; MR],
        rows: usize,
        ncols: usize,
        accumulate: bool,
        prefetch: bool,
    ) {
        // SAFETY: the contract above: every pointer offset stays inside the
        // caller's slices for unmasked lanes, and the target feature is present.
        unsafe {
            let m = masks::<NV>(ncols);
            let mut acc = [[_mm512_setzero_ps(); NV]; R];
            for kk in 0..kc {
                // The packed weights `A_PREFETCH_BYTES` on (only
                // prefetched: past the weights' end the address is harmless).
                let ahead = a.wrapping_add(kk * MR).cast::<i8>();
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(A_PREFETCH_BYTES));
                // wrapping_add: lanes past `ncols` are masked, and their
                // addresses may lie past the slice (never dereferenced).
                let bp = b.wrapping_add(kk * ldb);
                let mut bv = [_mm512_setzero_ps(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm512_maskz_loadu_ps(m[v], bp.wrapping_add(16 * v));
                }
                if prefetch {
                    // The same row of the next panel, `NR` columns on; a
                    // prefetch never faults, so an address past `b` is harmless.
                    for v in 0..super::NR / 16 {
                        let next = bp.wrapping_add(super::NR + 16 * v);
                        _mm_prefetch::<_MM_HINT_T0>(next.cast::<i8>());
                    }
                }
                let ap = a.add(kk * MR);
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(r));
                    for (x, bb) in row.iter_mut().zip(&bv) {
                        *x = _mm512_fmadd_ps(av, *bb, *x);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                if r >= rows {
                    break;
                }
                let cp = c[r];
                for (v, x) in row.iter().enumerate() {
                    let p = cp.wrapping_add(16 * v);
                    let y = if accumulate {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], p), *x)
                    } else {
                        *x
                    };
                    _mm512_mask_storeu_ps(p, m[v], y);
                }
                if !accumulate {
                    // The first K block claims the row's next panel for
                    // writing: a wide product's output (Conv2d_3b's 1.7 MB)
                    // is cold, and its rows are too many streams for the
                    // hardware prefetcher (3b: 0.34 → 0.29 ms in the model).
                    for v in 0..super::NR / 16 {
                        _mm_prefetch::<_MM_HINT_ET0>(
                            cp.wrapping_add(super::NR + 16 * v).cast::<i8>(),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wrapping_rhs_bound_is_refused() {
        let Some(a) = PackedWeights::new(&[1.0, 1.0], 1, 2) else {
            eprintln!("skipped: no AVX-512 on this machine, the kernel cannot be reached");
            return;
        };
        // (kc − 1)·ldb + ncols wraps to 0 with ldb = usize::MAX: it must panic, not read.
        let result = std::panic::catch_unwind(|| {
            let mut dst = [0f32];
            gemm(
                &mut dst,
                1,
                &a,
                &Dense {
                    b: &[],
                    ldb: usize::MAX,
                },
                1,
                &Tail::default(),
                1,
            );
        });
        let message = result.expect_err("the call must be refused");
        let text = message
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| message.downcast_ref::<&str>().copied());
        assert!(
            text.is_some_and(|t| t.contains("rhs block out of bounds")),
            "{text:?}"
        );
    }

    use super::*;

    /// Integer-valued data: every product and sum is exact in f32, so the
    /// kernel must match the definition bit for bit, edges included.
    #[test]
    fn matches_the_definition_on_ragged_shapes() {
        if !available() {
            return;
        }
        for &(rows, k, n, ldc, ldb, threads) in &[
            (1, 1, 1, 1, 1, 1),
            (6, 128, 64, 64, 64, 1),
            (7, 129, 65, 70, 66, 1),
            (32, 300, 150, 150, 150, 2),
            (13, 27, 17, 20, 17, 2),
            (8, 130, 45, 45, 50, 1),
            (12, 300, 289, 289, 289, 2),
            (6, 50, 600, 600, 600, 2),
            (7, 129, 700, 710, 705, 2),
            (5, 257, 200, 200, 201, 3),
        ] {
            let w: Vec<f32> = (0..rows * k).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..k * ldb).map(|i| ((i * 11) % 7) as f32 - 3.0).collect();
            let p = PackedWeights::new(&w, rows, k).expect("avx512");
            // Without a tail, then with each part of one (small integers:
            // still exact), as the separate `Epilogue` pass would compute it.
            let scale: Vec<f32> = (0..rows).map(|r| (r % 3) as f32 - 1.0).collect();
            let shift: Vec<f32> = (0..rows).map(|r| (r % 4) as f32 * 5.0).collect();
            for (sc, sh, relu) in [
                (false, false, false),
                (true, true, true),
                (true, false, false),
                (false, true, true),
                (false, false, true),
            ] {
                let tail = Tail {
                    scale: sc.then_some(&scale[..]),
                    shift: sh.then_some(&shift[..]),
                    relu,
                };
                let mut c = vec![-7.0f32; rows * ldc];
                gemm(&mut c, ldc, &p, &Dense { b: &b, ldb }, n, &tail, threads);
                for r in 0..rows {
                    for j in 0..ldc {
                        let want = if j < n {
                            let mut y = (0..k)
                                .map(|kk| w[r * k + kk] * b[kk * ldb + j])
                                .sum::<f32>();
                            if sc {
                                y *= scale[r];
                            }
                            if sh {
                                y += shift[r];
                            }
                            if relu { y.max(0.0) } else { y }
                        } else {
                            -7.0
                        };
                        assert_eq!(
                            c[r * ldc + j],
                            want,
                            "{rows}x{k}x{n} {tail:?} at ({r}, {j})"
                        );
                    }
                }
            }
        }
    }
}
