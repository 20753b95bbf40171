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

/// `dst[rows, n] = a × b[k, n]`, `dst` rows `ldc` apart and `b` rows `ldb`
/// apart. With several threads, row tiles are split between them.
///
/// Panics if a view reaches past its slice (a bug check: callers size every
/// buffer from the validated graph).
pub fn gemm(
    dst: &mut [f32],
    ldc: usize,
    a: &PackedWeights,
    b: &[f32],
    ldb: usize,
    n: usize,
    threads: usize,
) {
    let (rows, k) = (a.rows, a.k);
    if n == 0 {
        return;
    }
    assert!(
        ldc >= n && ldb >= n,
        "sgemm: row strides shorter than a row"
    );
    let c_len = (rows - 1) * ldc + n;
    let b_len = (k - 1) * ldb + n;
    assert!(dst.len() >= c_len, "sgemm: destination too small");
    assert!(b.len() >= b_len, "sgemm: rhs out of bounds");
    let dst = &mut dst[..c_len];
    let b = &b[..b_len];
    // Row tiles per thread: contiguous runs, so each thread's rows are one slice.
    let per = a.tiles.div_ceil(threads.max(1));
    if threads > 1 && a.tiles > 1 {
        dst.par_chunks_mut(per * MR * ldc)
            .enumerate()
            .for_each(|(i, c)| tiles(c, ldc, a, i * per, b, ldb, n));
    } else {
        tiles(dst, ldc, a, 0, b, ldb, n);
    }
}

/// Row tiles `t0..` of `a` that fit in `c` (whose first row is row `t0·MR`),
/// over all columns: per column panel, per K block, per row tile, so the
/// panel's `kc × NR` part of `b` stays in L1 while the weights stream.
fn tiles(c: &mut [f32], ldc: usize, a: &PackedWeights, t0: usize, b: &[f32], ldb: usize, n: usize) {
    // Rows of `c` present: whole rows `ldc` apart plus a last row of `n`.
    let c_rows = (c.len() - n) / ldc + 1;
    let t_end = a.tiles.min(t0 + c_rows.div_ceil(MR));
    let mut j0 = 0;
    while j0 < n {
        let ncols = NR.min(n - j0);
        let mut k0 = 0;
        while k0 < a.k {
            let kc = KC.min(a.k - k0);
            for t in t0..t_end {
                let r0 = (t - t0) * MR;
                let rows = MR.min(c_rows - r0).min(a.rows - t * MR);
                micro(
                    a.block(k0, t),
                    &b[k0 * ldb + j0..],
                    kc,
                    ldb,
                    &mut c[r0 * ldc + j0..],
                    ldc,
                    rows,
                    ncols,
                    k0 > 0,
                );
            }
            k0 += kc;
        }
        j0 += ncols;
    }
}

/// One micro-tile: `c[rows, ncols] (+)= a[kc × MR packed] × b[kc, ncols]`.
#[allow(clippy::too_many_arguments)]
fn micro(
    a: &[f32],
    b: &[f32],
    kc: usize,
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    ncols: usize,
    accumulate: bool,
) {
    assert!(kc > 0 && rows > 0 && rows <= MR && ncols > 0 && ncols <= NR);
    assert!(a.len() >= kc * MR, "sgemm: packed block too short");
    assert!(
        b.len() >= (kc - 1) * ldb + ncols,
        "sgemm: rhs block out of bounds"
    );
    assert!(
        c.len() >= (rows - 1) * ldc + ncols,
        "sgemm: tile out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `PackedWeights` exists only when AVX-512F was detected (the
    // only way to reach here); the asserts above prove that every element
    // the kernel reads (a[kk·MR + r], b[kk·ldb + j] for kk < kc, r < MR,
    // j < ncols) and writes (c[r·ldc + j], r < rows, j < ncols) lies inside
    // its slice; lanes at or past `ncols` are masked off, so they are never
    // touched; `c` is borrowed mutably, so it aliases neither `a` nor `b`.
    #[allow(unsafe_code)]
    unsafe {
        avx512::kernel(
            a.as_ptr(),
            b.as_ptr(),
            kc,
            ldb,
            c.as_mut_ptr(),
            ldc,
            rows,
            ncols,
            accumulate,
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use std::arch::x86_64::*;

    use super::MR;

    /// Lane masks of the four 16-lane vectors covering `ncols` columns.
    fn masks(ncols: usize) -> [__mmask16; 4] {
        let mut m = [0; 4];
        for (v, mv) in m.iter_mut().enumerate() {
            let left = ncols.saturating_sub(16 * v).min(16);
            *mv = ((1u32 << left) - 1) as __mmask16;
        }
        m
    }

    /// The 6×64 register tile: 24 accumulators, one broadcast weight and
    /// four vectors of `b` per K index.
    ///
    /// # Safety
    /// AVX-512F is available; `a` holds `kc·MR` floats; `b[kk·ldb + j]` is
    /// readable and `c[r·ldc + j]` writable for `kk < kc`, `r < rows`,
    /// `j < ncols`, with `1 ≤ ncols ≤ 64`, `1 ≤ rows ≤ MR`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn kernel(
        a: *const f32,
        b: *const f32,
        kc: usize,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        rows: usize,
        ncols: usize,
        accumulate: bool,
    ) {
        // SAFETY: the contract above: every pointer offset stays inside the
        // caller's slices for unmasked lanes, and the target feature is present.
        unsafe {
            let m = masks(ncols);
            let mut acc = [[_mm512_setzero_ps(); 4]; MR];
            for kk in 0..kc {
                // wrapping_add: lanes past `ncols` are masked, and their
                // addresses may lie past the slice (never dereferenced).
                let bp = b.wrapping_add(kk * ldb);
                let bv = [
                    _mm512_maskz_loadu_ps(m[0], bp),
                    _mm512_maskz_loadu_ps(m[1], bp.wrapping_add(16)),
                    _mm512_maskz_loadu_ps(m[2], bp.wrapping_add(32)),
                    _mm512_maskz_loadu_ps(m[3], bp.wrapping_add(48)),
                ];
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
                let cp = c.wrapping_add(r * ldc);
                for (v, x) in row.iter().enumerate() {
                    let p = cp.wrapping_add(16 * v);
                    let y = if accumulate {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], p), *x)
                    } else {
                        *x
                    };
                    _mm512_mask_storeu_ps(p, m[v], y);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
            (5, 257, 200, 200, 201, 3),
        ] {
            let w: Vec<f32> = (0..rows * k).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..k * ldb).map(|i| ((i * 11) % 7) as f32 - 3.0).collect();
            let p = PackedWeights::new(&w, rows, k).expect("avx512");
            let mut c = vec![-7.0f32; rows * ldc];
            gemm(&mut c, ldc, &p, &b, ldb, n, threads);
            for r in 0..rows {
                for j in 0..ldc {
                    let want = if j < n {
                        (0..k)
                            .map(|kk| w[r * k + kk] * b[kk * ldb + j])
                            .sum::<f32>()
                    } else {
                        -7.0
                    };
                    assert_eq!(c[r * ldc + j], want, "{rows}x{k}x{n} at ({r}, {j})");
                }
            }
        }
    }
}
