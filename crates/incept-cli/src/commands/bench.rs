//! `incept bench`: times the forward pass alone, after warm-up, with the
//! model loaded once; prints median and minimum latency and GFLOP/s.

use std::fmt::Write;
use std::time::Instant;

use anyhow::Result;
use incept_interp::{Interpreter, Options, Taps};
use serde::Serialize;

use crate::cli::{BenchArgs, OutputFormat};
use crate::{Outcome, input, model, output};

#[derive(Serialize)]
struct BenchReport {
    schema_version: u32,
    model: String,
    precision: String,
    batch: usize,
    threads: usize,
    iterations: usize,
    median_ms: f64,
    min_ms: f64,
    mean_ms: f64,
    gflop_per_image: f64,
    gflops_at_median: f64,
    load_ms: f64,
    /// Peak resident memory while reading the model file and preparing it.
    load_peak_rss_mib: Option<f64>,
    /// Peak resident memory from the end of loading on: weights, activations, scratch.
    peak_rss_mib: Option<f64>,
    /// With --profile: milliseconds per op kind (best of 3 runs per step).
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_by_op: Option<Vec<(String, f64)>>,
    /// With --profile: the slowest steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile_top_steps: Option<Vec<(String, f64)>>,
}

/// Runs `incept bench`.
pub fn run(args: &BenchArgs) -> Result<Outcome> {
    let t0 = Instant::now();
    let loaded = model::load(&args.model)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    loaded.warnings.iter().for_each(|w| output::warning(w));
    let options = Options {
        precision: args.precision.into(),
        threads: args.threads,
    };
    let source = loaded.source.clone();
    let load_peak_rss_mib = peak_rss_mib();
    // The interpreter takes the weights over (no second copy); from here on the
    // peak memory covers inference, not file parsing.
    let interp = Interpreter::from_graph(loaded.graph, &options)?;
    let reset = reset_peak_rss();
    let g = interp.graph();
    let ty = &g.values[g.inputs[0]].ty;
    let size = [
        ty.shape[2].fixed().unwrap_or(0),
        ty.shape[3].fixed().unwrap_or(0),
    ];
    let x = input::random(args.batch as usize, size, 0)?;
    for _ in 0..args.warmup {
        interp.run(&x, &Taps::None)?;
    }
    let mut times = Vec::with_capacity(args.iters as usize);
    for _ in 0..args.iters.max(1) {
        let t = Instant::now();
        interp.run(&x, &Taps::None)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let main = g.inference_nodes();
    let macs: u64 = g
        .nodes
        .iter()
        .zip(main)
        .filter(|(_, m)| *m)
        .map(|(n, _)| incept_ir::cost::node_macs(g, n))
        .sum();
    let gflop = 2.0 * macs as f64 / 1e9;
    let median = times[times.len() / 2];
    let (profile_by_op, profile_top_steps) = if args.profile {
        let mut best: Vec<(String, &'static str, f64)> = interp.profile(&x)?;
        for _ in 0..2 {
            for (b, (_, _, ms)) in best.iter_mut().zip(interp.profile(&x)?) {
                b.2 = b.2.min(ms);
            }
        }
        let mut by_op: Vec<(String, f64)> = Vec::new();
        for (_, op, ms) in &best {
            match by_op.iter_mut().find(|(o, _)| o == op) {
                Some(e) => e.1 += ms,
                None => by_op.push(((*op).to_string(), *ms)),
            }
        }
        by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
        best.sort_by(|a, b| b.2.total_cmp(&a.2));
        let top = best
            .into_iter()
            .take(10)
            .map(|(n, _, ms)| (n, ms))
            .collect();
        (Some(by_op), Some(top))
    } else {
        (None, None)
    };
    let report = BenchReport {
        profile_by_op,
        profile_top_steps,
        schema_version: 1,
        model: source,
        precision: format!("{:?}", args.precision).to_lowercase(),
        batch: args.batch as usize,
        threads: interp.threads(),
        iterations: times.len(),
        median_ms: median,
        min_ms: times[0],
        mean_ms: times.iter().sum::<f64>() / times.len() as f64,
        gflop_per_image: gflop,
        gflops_at_median: gflop * args.batch as f64 / (median / 1e3),
        load_ms,
        load_peak_rss_mib,
        peak_rss_mib: if reset { peak_rss_mib() } else { None },
    };
    let text = match args.format {
        OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        OutputFormat::Table => {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "model: {} (loaded in {:.0} ms)",
                report.model, report.load_ms
            );
            let _ = writeln!(
                s,
                "batch {}, {} threads, {}, {} iterations after {} warm-up",
                report.batch, report.threads, report.precision, report.iterations, args.warmup
            );
            let _ = writeln!(
                s,
                "median {:.2} ms   min {:.2} ms   mean {:.2} ms",
                report.median_ms, report.min_ms, report.mean_ms
            );
            let _ = writeln!(
                s,
                "{:.2} GFLOP per image, {:.1} GFLOP/s at the median",
                report.gflop_per_image, report.gflops_at_median
            );
            if let Some(m) = report.peak_rss_mib {
                let _ = writeln!(s, "peak memory (RSS) while running {m:.0} MiB");
            }
            if let Some(m) = report.load_peak_rss_mib {
                let _ = writeln!(s, "peak memory (RSS) while loading {m:.0} MiB");
            }
            if let (Some(ops), Some(top)) = (&report.profile_by_op, &report.profile_top_steps) {
                let total: f64 = ops.iter().map(|(_, ms)| ms).sum();
                let _ = writeln!(
                    s,
                    "\nprofile (best of 3 runs per step, {total:.1} ms in all):"
                );
                for (op, ms) in ops {
                    let _ = writeln!(s, "  {op:<18} {ms:>8.2} ms  {:>5.1}%", 100.0 * ms / total);
                }
                let _ = writeln!(s, "slowest steps:");
                for (name, ms) in top {
                    let _ = writeln!(s, "  {name:<48} {ms:>8.2} ms");
                }
            }
            s
        }
    };
    output::stdout(&text)?;
    Ok(Outcome::Success)
}

/// Resets the kernel's peak-RSS mark to the current RSS (Linux `clear_refs` 5).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's peak resident set size, from `/proc/self/status` (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
