//! The classifier, `y = x·Wᵀ + b`, with every dot product summed in double
//! precision whatever the compute type: cheap next to the convolutions, and
//! it keeps float32 logits at least as accurate as PyTorch's.

use rayon::prelude::*;

use crate::float::Float;

/// A Linear layer's weight `[out, in]`, stored as float32 when every value is
/// one (a float32 checkpoint: the layer is bound by memory at batch 1, and
/// half the bytes is half the time) and as float64 otherwise.
#[derive(Debug)]
pub enum LinearWeight {
    /// The weights are float32 values.
    F32(Vec<f32>),
    /// Some weight needs float64.
    F64(Vec<f64>),
}

impl LinearWeight {
    /// Chooses the narrowest exact storage for `w`.
    pub fn new(w: Vec<f64>) -> Self {
        #[allow(clippy::cast_possible_truncation)]
        let narrow: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        if narrow
            .iter()
            .zip(&w)
            .all(|(&n, &v)| f64::from(n) == v || (v.is_nan() && n.is_nan()))
        {
            LinearWeight::F32(narrow)
        } else {
            LinearWeight::F64(w)
        }
    }
}

/// `y[rows, out] = x[rows, in] · Wᵀ + bias`, output features split across
/// `threads`, [`AT_ONCE`] of them summed side by side ([`dots`]).
#[allow(clippy::too_many_arguments)]
pub fn linear<T: Float>(
    weight: &LinearWeight,
    bias: Option<&[f64]>,
    in_features: usize,
    out_features: usize,
    x: &[T],
    y: &mut [T],
    rows: usize,
    threads: usize,
) {
    let threads = super::balance::threads(threads);
    let xs: Vec<f64> = x[..rows * in_features].iter().map(|v| v.to_f64()).collect();
    let mut acc = vec![0f64; out_features * rows];
    let per = out_features
        .div_ceil(threads.max(1) * 4)
        .max(1)
        .next_multiple_of(AT_ONCE);
    let run = |(i, chunk): (usize, &mut [f64])| {
        let count = chunk.len() / rows;
        for j in (0..count).step_by(AT_ONCE) {
            let o = i * per + j;
            let q = (count - j).min(AT_ONCE);
            for n in 0..rows {
                let xr = &xs[n * in_features..(n + 1) * in_features];
                let sums = dots(weight, o..o + q, xr);
                for (t, s) in sums.iter().take(q).enumerate() {
                    chunk[(j + t) * rows + n] = s + bias.map_or(0.0, |b| b[o + t]);
                }
            }
        }
    };
    // `acc` is `[out, rows]`: a thread's output features are contiguous.
    if threads > 1 && out_features >= 64 {
        acc.par_chunks_mut(per * rows).enumerate().for_each(run);
    } else {
        acc.chunks_mut(per * rows).enumerate().for_each(run);
    }
    for (o, outs) in acc.chunks(rows).enumerate() {
        for (n, &a) in outs.iter().enumerate() {
            y[n * out_features + o] = T::from_f64(a);
        }
    }
}

/// Output features summed side by side by [`dots`]: the classifier streams
/// its 8 MB of weights from memory at every run, and one row at a time
/// left it at 15 GB/s (`fc` 0.60 → 0.40 ms at 1 thread, 0.34 → 0.27 at 2,
/// in-process alternations; four at once 0.48 and 0.31).
const AT_ONCE: usize = 8;

/// The dot products of `x` with the weight rows `outs` (at most
/// [`AT_ONCE`]), each with the bits of [`dot`]: eight float32 rows at once
/// on AVX-512, the rest one by one.
fn dots(weight: &LinearWeight, outs: std::ops::Range<usize>, x: &[f64]) -> [f64; AT_ONCE] {
    let n = x.len();
    let mut sums = [0f64; AT_ONCE];
    if let LinearWeight::F32(w) = weight
        && outs.len() == AT_ONCE
    {
        let rows: [&[f32]; AT_ONCE] =
            std::array::from_fn(|t| &w[(outs.start + t) * n..(outs.start + t + 1) * n]);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was just detected; every row is `x`'s length.
            #[allow(unsafe_code)]
            return unsafe { dots_avx512(&rows, x) };
        }
        for (s, row) in sums.iter_mut().zip(rows) {
            *s = dot(row, x);
        }
        return sums;
    }
    for (s, o) in sums.iter_mut().zip(outs) {
        *s = match weight {
            LinearWeight::F32(w) => dot(&w[o * n..(o + 1) * n], x),
            LinearWeight::F64(w) => dot(&w[o * n..(o + 1) * n], x),
        };
    }
    sums
}

/// [`dot_plain`] on eight rows at once: per row the same sixteen partial
/// sums (lanes `0..8` and `8..16` of two vectors), each `w·x` rounded and
/// then added (no FMA, as the plain loop), summed in order at the end.
///
/// # Safety
/// AVX-512F is available, and every row of `w` is as long as `x`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
unsafe fn dots_avx512(w: &[&[f32]; AT_ONCE], x: &[f64]) -> [f64; AT_ONCE] {
    use std::arch::x86_64::*;
    assert!(
        w.iter().all(|r| r.len() == x.len()),
        "linear: rows of another length"
    );
    let full = x.len() / 16 * 16;
    let mut parts = [[0f64; 16]; AT_ONCE];
    // SAFETY: every load reads 16 values below `full`, inside `x` and each
    // row (asserted); the stores fill `parts`; a prefetch cannot fault.
    unsafe {
        let mut acc = [[_mm512_setzero_pd(); 2]; AT_ONCE];
        for i in (0..full).step_by(16) {
            let x0 = _mm512_loadu_pd(x.as_ptr().add(i));
            let x1 = _mm512_loadu_pd(x.as_ptr().add(i + 8));
            for (a, row) in acc.iter_mut().zip(w) {
                let p = row.as_ptr().add(i);
                _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().wrapping_add(PREFETCH_BYTES));
                let w0 = _mm512_cvtps_pd(_mm256_loadu_ps(p));
                let w1 = _mm512_cvtps_pd(_mm256_loadu_ps(p.add(8)));
                a[0] = _mm512_add_pd(a[0], _mm512_mul_pd(w0, x0));
                a[1] = _mm512_add_pd(a[1], _mm512_mul_pd(w1, x1));
            }
        }
        for (p, a) in parts.iter_mut().zip(&acc) {
            _mm512_storeu_pd(p.as_mut_ptr(), a[0]);
            _mm512_storeu_pd(p.as_mut_ptr().add(8), a[1]);
        }
    }
    let mut sums = [0f64; AT_ONCE];
    for ((s, p), row) in sums.iter_mut().zip(&mut parts).zip(w) {
        for (l, (&a, &b)) in row[full..].iter().zip(&x[full..]).enumerate() {
            p[l] += f64::from(a) * b;
        }
        *s = p.iter().sum();
    }
    sums
}

/// `Σ w[i]·x[i]` in float64, with the AVX-512 build of the same code where
/// the CPU has it.
fn dot<W: Copy + Into<f64>>(w: &[W], x: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just detected; `dot_avx512` is safe code.
        #[allow(unsafe_code)]
        return unsafe { dot_avx512(w, x) };
    }
    dot_plain(w, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dot_avx512<W: Copy + Into<f64>>(w: &[W], x: &[f64]) -> f64 {
    dot_plain(w, x)
}

/// Bytes ahead of the weights being summed that [`dot_plain`] prefetches:
/// about one 2048-input row of float32. The classifier streams its 8 MB from
/// memory once per run, and the hardware prefetcher alone left it at 30
/// GB/s: `fc` 0.268 → 0.211 ms at 1 thread, 0.192 → 0.170 at 2 (in-process
/// alternations, per-step minimums; 1 KB ahead gained 0.016, 16 KB 0.048).
const PREFETCH_BYTES: usize = 8 << 10;

/// Sixteen partial sums, so the loop vectorises without reassociating.
#[inline(always)]
fn dot_plain<W: Copy + Into<f64>>(w: &[W], x: &[f64]) -> f64 {
    let mut acc = [0f64; 16];
    let (wc, xc) = (w.chunks_exact(16), x.chunks_exact(16));
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (a, b) in wc.zip(xc) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE is part of x86_64's baseline; a prefetch reads nothing
        // and cannot fault, so an address past the weights is harmless.
        #[allow(unsafe_code)]
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let ahead = a.as_ptr().cast::<i8>().wrapping_add(PREFETCH_BYTES);
            // One line of float32 weights, two of float64.
            for line in (0..size_of_val(a)).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line));
            }
        }
        for i in 0..16 {
            acc[i] += a[i].into() * b[i];
        }
    }
    for (i, (&a, &b)) in wr.iter().zip(xr).enumerate() {
        acc[i] += a.into() * b;
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight rows at once give each row the bits it has alone, remainder
    /// and all (random data: the order of every sum shows).
    #[test]
    fn eight_rows_at_once_keep_each_rows_bits() {
        let n = 16 * 9 + 5;
        let mut seed = 99u64;
        let mut rand = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // 53 bits: products of float32 weights with these round.
            ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let w: Vec<f64> = (0..AT_ONCE * n).map(|_| f64::from(rand() as f32)).collect();
        let x: Vec<f64> = (0..n).map(|_| rand()).collect();
        let weight = LinearWeight::new(w.clone());
        assert!(matches!(weight, LinearWeight::F32(_)));
        let sums = dots(&weight, 0..AT_ONCE, &x);
        for (o, s) in sums.iter().enumerate() {
            let alone = dot(&w[o * n..(o + 1) * n], &x);
            assert_eq!(s.to_bits(), alone.to_bits(), "row {o}");
        }
    }

    #[test]
    fn matches_the_definition_in_both_storages() {
        let (inf, outf, rows) = (37, 70, 3);
        let w: Vec<f64> = (0..inf * outf)
            .map(|i| ((i * 13) % 11) as f64 - 5.0)
            .collect();
        let x: Vec<f32> = (0..inf * rows)
            .map(|i| ((i * 7) % 9) as f32 - 4.0)
            .collect();
        let b: Vec<f64> = (0..outf).map(|o| o as f64).collect();
        // The definition, summed in f64 in index order, rounded once.
        let want = |w: &[f64]| -> Vec<f32> {
            (0..rows * outf)
                .map(|k| {
                    let (n, o) = (k / outf, k % outf);
                    let s: f64 = (0..inf)
                        .map(|i| w[o * inf + i] * f64::from(x[n * inf + i]))
                        .sum();
                    (s + b[o]) as f32
                })
                .collect()
        };
        let narrow = LinearWeight::new(w.clone());
        assert!(matches!(narrow, LinearWeight::F32(_)));
        let mut wide_w = w.clone();
        wide_w[0] += 0.25 + 1e-9;
        let wide = LinearWeight::new(wide_w.clone());
        assert!(matches!(wide, LinearWeight::F64(_)));
        for threads in [1, 2] {
            // Integer data: every sum is exact, whatever its order.
            let mut y = vec![0f32; rows * outf];
            linear(&narrow, Some(&b), inf, outf, &x, &mut y, rows, threads);
            assert_eq!(y, want(&w), "{threads} threads");
            // Not integers any more, but sums of at most 37 terms in f64,
            // rounded to f32: the order cannot show.
            let mut y = vec![0f32; rows * outf];
            linear(&wide, Some(&b), inf, outf, &x, &mut y, rows, threads);
            assert_eq!(y, want(&wide_w), "float64 weights, {threads} threads");
        }
    }
}
