//! Per-step times of a float32 run with their GFLOP/s, to see which
//! convolutions sit far from the machine's peak
//! (`cargo run --release -p incept-interp --example conv_profile -- MODEL.pth [threads] [batch]`).
//! A batch is profiled step by step over all its images (a real run takes
//! the steps before its tail image by image); times are per image. GFLOP/s
//! count every product of the layer's definition, the padding's too, which
//! the direct kernel skips where it can (the 7x1s and 1x7s show 8-10% more
//! than the rate their FMAs run at). Each step's time is its median over
//! 20 runs (6 for a batch), as `xtask/bench/ort_profile.py` takes
//! onnxruntime's; the last line also sums the steps' minimums.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use incept_interp::{Interpreter, Options, Precision};
use incept_ir::Tensor;
use incept_ir::op::Op;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads: usize = args.get(1).map_or(1, |s| s.parse().unwrap());
    let batch: usize = args.get(2).map_or(1, |s| s.parse().unwrap());
    let ckpt = incept_torch::load(std::path::Path::new(&args[0])).unwrap();
    let g = incept_ir::template::bind_state_dict(ckpt.tensors, false, [299, 299])
        .unwrap()
        .graph;
    let it = Interpreter::new(
        &g,
        &Options {
            precision: Precision::F32,
            threads,
        },
    )
    .unwrap();
    let x = Tensor::from_f32(vec![batch, 3, 299, 299], vec![0.5; batch * 3 * 299 * 299]).unwrap();
    let runs: Vec<_> = (0..if batch == 1 { 20 } else { 6 })
        .map(|_| it.profile(&x).unwrap())
        .collect();
    let (mut total, mut total_min) = (0.0, 0.0);
    for (i, (name, op, _)) in runs[0].iter().enumerate() {
        let mut times: Vec<f64> = runs.iter().map(|r| r[i].2 / batch as f64).collect();
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        total += ms;
        total_min += times[0];
        let head = name.split('+').next().unwrap();
        let macs = g
            .nodes
            .iter()
            .find(|n| n.name == head && matches!(n.op, Op::Conv2d(_)))
            .map_or(0, |n| incept_ir::cost::node_macs(&g, n));
        let gflops = if macs > 0 {
            format!("{:7.1}", 2.0 * macs as f64 / ms / 1e6)
        } else {
            String::new()
        };
        println!("{name:55} {op:18} {ms:7.3} ms {gflops}");
    }
    println!("total {total:.2} ms (sum of the steps' minimums {total_min:.2} ms)");
}
