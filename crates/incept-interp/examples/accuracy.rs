//! float32 vs the float64 oracle on a model file over several random inputs
//! (`cargo run --release -p incept-interp --example accuracy -- MODEL.pth [n]`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use incept_interp::{Interpreter, Options, Precision, Taps};
use incept_ir::Tensor;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.get(1).map_or(6, |s| s.parse().unwrap());
    let ckpt = incept_torch::load(std::path::Path::new(&args[0])).unwrap();
    let g = incept_ir::template::bind_state_dict(ckpt.tensors, false, [299, 299])
        .unwrap()
        .graph;
    let f32_it = Interpreter::new(
        &g,
        &Options {
            precision: Precision::F32,
            threads: 2,
        },
    )
    .unwrap();
    let f64_it = Interpreter::new(
        &g,
        &Options {
            precision: Precision::F64,
            threads: 2,
        },
    )
    .unwrap();
    let mut errs = Vec::new();
    for seed in 0..n {
        let mut s = seed * 7919 + 1;
        let data: Vec<f32> = (0..3 * 299 * 299)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.4
            })
            .collect();
        let x = Tensor::from_f32(vec![1, 3, 299, 299], data).unwrap();
        let a = f32_it.run(&x, &Taps::None).unwrap().outputs[0].1.clone();
        let b = f64_it.run(&x, &Taps::None).unwrap().outputs[0].1.clone();
        errs.push(incept_verify::error_stats(&a, &b).unwrap().max_rel);
    }
    let mean = errs.iter().sum::<f64>() / errs.len() as f64;
    println!(
        "max_rel per input: {:?}\nmean {mean:.3e}",
        errs.iter().map(|e| format!("{e:.2e}")).collect::<Vec<_>>()
    );
}
