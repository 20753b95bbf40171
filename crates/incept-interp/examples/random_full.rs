//! Times the full-size Inception V3 with random weights: a quick profile
//! target (`cargo run --release -p incept-interp --example random_full -- [threads] [batch] [iters]`).
//! The benchmark proper, side by side with onnxruntime, is `cargo xtask bench`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use incept_interp::{Interpreter, Options, Taps};
use incept_ir::template::{InceptionV3Config, inception_v3};
use incept_ir::{Tensor, TensorData};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let threads = args.first().copied().unwrap_or(0);
    let batch = args.get(1).copied().unwrap_or(1);
    let iters = args.get(2).copied().unwrap_or(10);
    let mut g = inception_v3(&InceptionV3Config {
        aux_logits: false,
        ..Default::default()
    })
    .unwrap()
    .graph;
    let mut seed = 1u32;
    let mut next = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let weights = g
        .params
        .iter()
        .map(|p| {
            let data = if p.dtype == incept_ir::DType::I64 {
                TensorData::I64(vec![0])
            } else if p.name.ends_with("running_var") {
                TensorData::F32(vec![1.0; p.numel()])
            } else {
                TensorData::F32((0..p.numel()).map(|_| next() * 0.1).collect())
            };
            (p.name.clone(), Tensor::new(p.shape.clone(), data).unwrap())
        })
        .collect();
    g.bind(weights).unwrap();
    let it = Interpreter::new(
        &g,
        &Options {
            threads,
            ..Default::default()
        },
    )
    .unwrap();
    let x = Tensor::from_f32(
        vec![batch, 3, 299, 299],
        (0..batch * 3 * 299 * 299).map(|_| next()).collect(),
    )
    .unwrap();
    it.run(&x, &Taps::None).unwrap();
    let mut times = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        it.run(&x, &Taps::None).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let gflop = 2.0 * 5_713_216_096.0 * batch as f64 / 1e9;
    println!(
        "threads {} batch {batch}: median {:.1} ms, min {:.1} ms, {:.0} GFLOP/s",
        it.threads(),
        times[times.len() / 2],
        times[0],
        gflop / (times[0] / 1e3)
    );
}
