//! A measurement for the next step of issue 5, not used by the interpreter:
//! a direct convolution with output channels in the vector and input pixels
//! broadcast (onnxruntime's NCHWc scheme), reading the NCHW input in place and
//! writing NCHW through a small transposed store, on Conv2d_2a's shape
//! (32→32, 3x3, 149x149), checked against the definition
//! (`cargo run --release -p incept-interp --example direct_probe`).

#![allow(clippy::unwrap_used, clippy::print_stdout, unsafe_code)]

use std::time::Instant;

const C: usize = 32;
const H: usize = 149;
const O: usize = 32;
const OH: usize = H - 2;
/// Pixels per tile (broadcast) and 16-channel vectors per tile: 24 sums.
const P: usize = 12;
const V: usize = O / 16;
/// Channels per K block: 14 × 9 = 126 products per register sum.
const CB: usize = 14;

/// # Safety
/// AVX-512F is available; `x` is `[C, H, H]`, `w` `[C·9, O]`, `out` `[O, OH, OH]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn conv(x: &[f32], w: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut tile = [0f32; P * O];
    for oh in 0..OH {
        let mut ow0 = 0;
        while ow0 < OH {
            let np = P.min(OH - ow0);
            tile.fill(0.0);
            let mut c0 = 0;
            while c0 < C {
                let c1 = (c0 + CB).min(C);
                // SAFETY: rows oh..oh+3 and columns ow0..ow0+np+2 ≤ H of `x`,
                // rows kk < C·9 of `w`, and `tile` are all in bounds.
                unsafe {
                    let mut acc = [[_mm512_setzero_ps(); V]; P];
                    for c in c0..c1 {
                        for i in 0..3 {
                            let row = x.as_ptr().add((c * H + oh + i) * H + ow0);
                            for j in 0..3 {
                                let kk = (c * 3 + i) * 3 + j;
                                let wp = w.as_ptr().add(kk * O);
                                let mut wv = [_mm512_setzero_ps(); V];
                                for (v, r) in wv.iter_mut().enumerate() {
                                    *r = _mm512_loadu_ps(wp.add(16 * v));
                                }
                                for (p, a) in acc.iter_mut().enumerate() {
                                    // Past `np`: the row's last pixel again (computed, never stored).
                                    let b = _mm512_set1_ps(*row.add(j + p.min(np - 1)));
                                    for (v, s) in a.iter_mut().enumerate() {
                                        *s = _mm512_fmadd_ps(b, wv[v], *s);
                                    }
                                }
                            }
                        }
                    }
                    for (p, a) in acc.iter().enumerate() {
                        for (v, s) in a.iter().enumerate() {
                            let t = tile.as_mut_ptr().add(p * O + 16 * v);
                            _mm512_storeu_ps(t, _mm512_add_ps(_mm512_loadu_ps(t), *s));
                        }
                    }
                }
                c0 = c1;
            }
            // Transposed store: channel o gets its `np` consecutive pixels.
            for o in 0..O {
                let dst = &mut out[(o * OH + oh) * OH + ow0..][..np];
                for (p, d) in dst.iter_mut().enumerate() {
                    *d = tile[p * O + o];
                }
            }
            ow0 += np;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("skipped: x86_64 only");
}

#[cfg(target_arch = "x86_64")]
fn main() {
    if !std::arch::is_x86_feature_detected!("avx512f") {
        println!("skipped: no AVX-512");
        return;
    }
    let x: Vec<f32> = (0..C * H * H)
        .map(|i| ((i * 7919) % 23) as f32 - 11.0)
        .collect();
    let wt: Vec<f32> = (0..O * C * 9)
        .map(|i| ((i * 104_729) % 17) as f32 - 8.0)
        .collect();
    // Packed [K][O]: row kk = (c, i, j) holds the O output channels' weights.
    let mut w = vec![0f32; C * 9 * O];
    for o in 0..O {
        for kk in 0..C * 9 {
            w[kk * O + o] = wt[o * C * 9 + kk];
        }
    }
    let mut out = vec![0f32; O * OH * OH];
    // SAFETY: AVX-512F was just detected; the sizes are the ones `conv` takes.
    unsafe { conv(&x, &w, &mut out) };
    // Integers: exact, so the definition must match bit for bit.
    for o in [0, 13, 31] {
        for oh in [0, 70, OH - 1] {
            for ow in [0, 11, 12, 100, OH - 1] {
                let mut s = 0f32;
                for c in 0..C {
                    for i in 0..3 {
                        for j in 0..3 {
                            s += x[(c * H + oh + i) * H + ow + j]
                                * wt[((o * C + c) * 3 + i) * 3 + j];
                        }
                    }
                }
                assert_eq!(out[(o * OH + oh) * OH + ow], s, "({o}, {oh}, {ow})");
            }
        }
    }
    let flop = 2.0 * (O * C * 9 * OH * OH) as f64;
    let mut best = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        // SAFETY: as above.
        unsafe { conv(&x, &w, &mut out) };
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "direct conv 32->32 3x3 149x149: {:.3} ms, {:.1} GFLOP/s (set beside Conv2d_2a in \
         `examples/conv_profile`, and onnxruntime's 1.54 ms in `xtask/bench/ort_profile.py`)",
        best * 1e3,
        flop / best / 1e9
    );
}
