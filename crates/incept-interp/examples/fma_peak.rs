//! The machine's float32 FMA peak: what the interpreter's GFLOP/s are
//! measured against (`cargo run --release -p incept-interp --example
//! fma_peak -- [threads]`). Each thread runs independent chains of fused
//! multiply-adds on registers alone (no memory), with the widest vectors the
//! kernels use (AVX-512 where present, else AVX2 with FMA), so the figure is
//! the most any kernel could reach. `xtask/bench/bench.py` prints it beside
//! every configuration: onnxruntime's MatMul, the GEMM rate the issue asks
//! for, runs well below it (85-90 GFLOP/s on one thread where this gives
//! 114-116), and a layer's rate means more against this.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

/// Multiply-adds per chain per call; each call takes about 0.2 s at 100
/// GFLOP/s.
const ITERS: usize = 25_000_000;

/// Independent accumulators: more than the FMA latency (4 cycles) times the
/// FMAs issued per cycle (2), so no chain waits on itself.
const CHAINS: usize = 24;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CHAINS, ITERS};
    use std::arch::x86_64::*;

    /// Floating-point operations done: two per lane per FMA.
    #[target_feature(enable = "avx512f")]
    pub fn avx512() -> f64 {
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        // Close to 1, so the sums grow slowly and stay finite.
        let (a, b) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(1e-7));
        for _ in 0..ITERS {
            for r in &mut acc {
                *r = _mm512_fmadd_ps(a, *r, b);
            }
        }
        std::hint::black_box(acc);
        (ITERS * CHAINS * 16 * 2) as f64
    }

    /// As [`avx512`], on 8-lane vectors.
    #[target_feature(enable = "avx2,fma")]
    pub fn avx2() -> f64 {
        let mut acc = [_mm256_setzero_ps(); CHAINS];
        let (a, b) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(1e-7));
        for _ in 0..ITERS {
            for r in &mut acc {
                *r = _mm256_fmadd_ps(a, *r, b);
            }
        }
        std::hint::black_box(acc);
        (ITERS * CHAINS * 8 * 2) as f64
    }
}

/// One thread's FMA run: (floating-point operations, the ISA used), or
/// `None` where there are no vector FMAs to measure.
fn one_thread() -> Option<(f64, &'static str)> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected just above.
            #[allow(unsafe_code)]
            return Some((unsafe { x86::avx512() }, "AVX-512"));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected just above.
            #[allow(unsafe_code)]
            return Some((unsafe { x86::avx2() }, "AVX2"));
        }
    }
    None
}

fn main() {
    let threads: usize = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 1,
        Some(Ok(t)) if t >= 1 => t,
        Some(_) => {
            eprintln!("usage: fma_peak [threads ≥ 1]");
            std::process::exit(2);
        }
    };
    for _ in 0..3 {
        let start = Instant::now();
        let runs: Vec<Option<(f64, &str)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(one_thread)).collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
        let seconds = start.elapsed().as_secs_f64();
        let Some(isa) = runs.first().and_then(|r| r.map(|(_, isa)| isa)) else {
            println!("no vector FMA on this machine");
            return;
        };
        let flops: f64 = runs.iter().flatten().map(|(f, _)| f).sum();
        println!(
            "peak {:.1} GFLOP/s on {threads} thread(s), {isa} FMA",
            flops / seconds / 1e9
        );
    }
}
