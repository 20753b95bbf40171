//! The interpreter against PyTorch's own outputs (committed golden data made
//! by `fixtures/make_fixtures.py`): float32 logits no further from PyTorch's
//! float64 than PyTorch's own float32 is, every tapped module output within
//! the same bound, and the float64 oracle within 1e-9.

#![allow(clippy::unwrap_used, clippy::panic, clippy::print_stderr)]

use incept_fixtures::{Fixture, TINY, take};
use incept_interp::{Interpreter, Options, Precision, Taps};
use incept_ir::template::bind_state_dict;
use incept_ir::{Graph, Tensor};
use incept_verify::error_stats;

fn model(f: &Fixture, size: usize) -> Graph {
    let ckpt = incept_torch::load(&f.path("model.pth")).unwrap();
    bind_state_dict(ckpt.tensors, f.transform_input(), [size, size])
        .unwrap()
        .graph
}

fn run(g: &Graph, x: &Tensor, precision: Precision, taps: &Taps) -> incept_interp::RunOutput {
    Interpreter::new(
        g,
        &Options {
            precision,
            threads: 2,
        },
    )
    .unwrap()
    .run(x, taps)
    .unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    error_stats(a, b)
        .unwrap_or_else(|| panic!("shapes {:?} vs {:?}", a.shape(), b.shape()))
        .max_rel
}

/// PyTorch's own float32 error on the logits: the bound our float32 must meet.
fn torch_f32_error(golden: &incept_safetensors::SafetensorsFile, prefix: &str) -> f64 {
    max_rel(
        golden.get(&format!("{prefix}logits_f32")).unwrap(),
        golden.get(&format!("{prefix}logits_f64")).unwrap(),
    )
}

#[test]
fn logits_match_pytorch() {
    for name in TINY {
        let f = Fixture::open(name);
        let g = model(&f, 299);
        let golden = f.golden();
        let reference = golden.get("logits_f64").unwrap();
        let x = f.input("input");
        let bound = torch_f32_error(&golden, "");
        let ours = &run(&g, &x, Precision::F32, &Taps::None).outputs[0].1;
        let err = max_rel(ours, reference);
        eprintln!(
            "{name}: float32 logits vs PyTorch float64: {err:.2e} (PyTorch's own float32: {bound:.2e})"
        );
        assert!(
            err <= bound,
            "{name}: {err:e} > PyTorch's own float32 error {bound:e}"
        );
        let oracle = &run(&g, &x, Precision::F64, &Taps::None).outputs[0].1;
        let err64 = max_rel(oracle, reference);
        eprintln!("{name}: float64 oracle vs PyTorch float64: {err64:.2e}");
        assert!(err64 <= 1e-9, "{name}: float64 oracle off by {err64:e}");
    }
}

#[test]
fn every_module_output_matches_pytorch() {
    let f = Fixture::open("tiny_aux");
    let x = f.input("modules_input");
    let g = model(&f, x.shape()[2]);
    let golden = f.golden();
    // The logits' bound: PyTorch's own float32 error on the golden batch.
    let bound = torch_f32_error(&golden, "");
    let f32_run = run(&g, &x, Precision::F32, &Taps::All);
    let f64_run = run(&g, &x, Precision::F64, &Taps::All);
    let mut compared = 0;
    let mut worst = (0.0f64, String::new());
    for (key, reference) in golden
        .tensors
        .iter()
        .filter_map(|(k, t)| Some((k.strip_prefix("modules/f64/")?, t)))
    {
        let ours = f32_run.taps.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        let ours = ours.unwrap_or_else(|| panic!("no tap for torchvision module {key}"));
        let err = max_rel(ours, reference);
        assert!(
            err <= bound,
            "{key}: float32 {err:e} > PyTorch's float32 logits error {bound:e}"
        );
        if err > worst.0 {
            worst = (err, key.to_string());
        }
        let oracle = &f64_run.taps.iter().find(|(n, _)| n == key).unwrap().1;
        let err64 = max_rel(oracle, reference);
        assert!(err64 <= 1e-9, "{key}: float64 oracle off by {err64:e}");
        compared += 1;
    }
    eprintln!(
        "compared {compared} module outputs within {bound:.2e}, the largest error {:.2e} ({})",
        worst.0, worst.1
    );
    let recorded = f.meta["golden"]["module_output_keys"].as_u64().unwrap();
    assert_eq!(
        compared, recorded as usize,
        "every module output PyTorch recorded is compared"
    );
}

#[test]
fn full_size_logits_match_pytorch() {
    let Some(f) = Fixture::full() else { return };
    let g = model(&f, 299);
    let golden = f.golden();
    let x = take(
        incept_safetensors::read(&f.path("input.safetensors")).unwrap(),
        "input",
        &f.path("input.safetensors"),
    );
    let bound = torch_f32_error(&golden, "");
    let ours = &run(&g, &x, Precision::F32, &Taps::None).outputs[0].1;
    let err = max_rel(ours, golden.get("logits_f64").unwrap());
    eprintln!("full: float32 logits vs PyTorch float64: {err:.2e} (PyTorch's own: {bound:.2e})");
    assert!(err <= bound);
    let oracle = &run(&g, &x, Precision::F64, &Taps::None).outputs[0].1;
    assert!(max_rel(oracle, golden.get("logits_f64").unwrap()) <= 1e-9);
}

#[test]
fn onnx_fixtures_match_onnxruntime() {
    // Each committed ONNX export, imported and run by incept. An export with
    // BatchNorm folded is a slightly different float32 model from the
    // checkpoint, which PyTorch never ran, so the reference is that graph's
    // own float64 result (the oracle, which matches PyTorch to 1e-14 where
    // PyTorch can run the graph). Our float32 must agree with onnxruntime's
    // outputs within the two float32 errors added, and stay within twice
    // PyTorch's own float32 error on the checkpoint: a max over 20 logits is
    // one noisy sample, and on these narrow models no float32 sum is long
    // enough for K-blocking to help (the strict bound is tested on the
    // checkpoints above, where PyTorch's own float32 run exists).
    for name in TINY {
        let f = Fixture::open(name);
        let golden = f.golden();
        let ort = f.ort();
        let bound = torch_f32_error(&golden, "");
        let x = f.input("input");
        for file in ["ts_folded", "ts_bn", "dynamo"] {
            let g = incept_onnx::import(&f.path(&format!("{file}.onnx")))
                .unwrap()
                .graph;
            let ours = &run(&g, &x, Precision::F32, &Taps::None).outputs[0].1;
            let oracle = &run(&g, &x, Precision::F64, &Taps::None).outputs[0].1;
            let theirs = ort.get(&format!("{file}/logits")).unwrap();
            let err = max_rel(ours, oracle);
            let ort_err = max_rel(theirs, oracle);
            let gap = max_rel(ours, theirs);
            let drift = max_rel(oracle, golden.get("logits_f64").unwrap());
            eprintln!(
                "{name}/{file}: vs its float64 result: incept {err:.2e}, onnxruntime {ort_err:.2e}; \
                 incept vs onnxruntime {gap:.2e}; the export vs the checkpoint (float64) {drift:.2e}"
            );
            assert!(err <= 2.0 * bound, "{name}/{file}: {err:e} > 2 x {bound:e}");
            assert!(
                gap <= bound + ort_err,
                "{name}/{file}: {gap:e} from onnxruntime"
            );
            // BatchNorm kept: the same model as the checkpoint, to float64 precision.
            if file == "ts_bn" {
                assert!(
                    drift <= 1e-9,
                    "{name}/ts_bn differs from the checkpoint by {drift:e}"
                );
            }
        }
    }
}
