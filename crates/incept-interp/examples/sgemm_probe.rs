//! GFLOP/s of the packed float32 GEMM alone, one thread, on the shapes of
//! Inception's convolutions (`[rows, k] × [k, n]`): with warm caches, then
//! cycling through more weights and inputs than the caches hold, as a model
//! does (`cargo run --release -p incept-interp --example sgemm_probe`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]
use incept_interp::kernels::sgemm::{Dense, PackedWeights, Tail, gemm};
use std::time::Instant;

fn main() {
    let shapes: &[(usize, usize, usize)] = &[
        (192, 128, 64),
        (192, 128, 1280),
        (64, 192, 1225),
        (96, 864, 1225),
        (192, 768, 289),
        (192, 1344, 289),
        (448, 2048, 64),
        (384, 1280, 64),
        (192, 720, 5041),
        (32, 288, 21609),
        (64, 288, 21609),
    ];
    for &(m, k, n) in shapes {
        let w: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let p = PackedWeights::new(&w, m, k).unwrap();
        let mut c = vec![0f32; m * n];
        let flop = 2.0 * (m * k * n) as f64;
        let reps = ((2e9 / flop) as usize).max(3);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                gemm(
                    &mut c,
                    n,
                    &p,
                    &Dense { b: &b, ldb: n },
                    n,
                    &Tail::default(),
                    1,
                );
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!("{m:5} {k:5} {n:6}  {:7.1} GFLOP/s", flop / best / 1e9);
    }
    for &(m, k, n) in &[
        (192usize, 768usize, 289usize),
        (64, 192, 1225),
        (320, 1280, 64),
    ] {
        let sets = 24;
        let ws: Vec<PackedWeights> = (0..sets)
            .map(|s| {
                let w: Vec<f32> = (0..m * k).map(|i| ((i + s) % 7) as f32 * 0.1).collect();
                PackedWeights::new(&w, m, k).unwrap()
            })
            .collect();
        let bs: Vec<Vec<f32>> = (0..sets)
            .map(|s| (0..k * n).map(|i| ((i + s) % 5) as f32 * 0.1).collect())
            .collect();
        let mut c = vec![0f32; m * n];
        let flop = 2.0 * (m * k * n) as f64;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for (w, b) in ws.iter().zip(&bs) {
                gemm(&mut c, n, w, &Dense { b, ldb: n }, n, &Tail::default(), 1);
            }
            best = best.min(t.elapsed().as_secs_f64() / sets as f64);
        }
        println!(
            "{m:5} {k:5} {n:6}  {:7.1} GFLOP/s  (cold caches)",
            flop / best / 1e9
        );
    }
}
