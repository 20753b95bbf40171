//! Properties the interpreter must have whatever the weights: float32 close
//! to the float64 oracle, taps that do not change results, thread counts and
//! batch sizes that do not change rows.
//!
//! Agreement with PyTorch itself is tested against golden data in `golden.rs`.

#![allow(clippy::unwrap_used, clippy::panic)]

use incept_interp::{Interpreter, Options, Precision, Taps};
use incept_ir::op::Op;
use incept_ir::template::{InceptionV3Config, Widths, inception_v3};
use incept_ir::{Graph, ParamKind, Tensor};

/// A deterministic generator (SplitMix64) so the test needs no RNG crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Inception V3 at 1/16 width, 10 classes, with He-initialised weights and
/// BatchNorm statistics that keep activations near unit scale.
fn tiny_model(input: usize) -> Graph {
    let full = inception_v3(&InceptionV3Config::default()).unwrap().graph;
    let mut widths = Widths::full();
    for n in &full.nodes {
        if let (Op::Conv2d(c), Some(m)) = (&n.op, n.name.strip_suffix(".conv")) {
            widths.set(m, c.out_channels / 16);
        }
    }
    let cfg = InceptionV3Config {
        num_classes: 10,
        input_size: [input, input],
        widths,
        ..Default::default()
    };
    let mut g = inception_v3(&cfg).unwrap().graph;
    let mut rng = Rng(7);
    let weights = g
        .params
        .iter()
        .map(|p| {
            let n = p.numel();
            let fan_in = p.shape.iter().skip(1).product::<usize>().max(1) as f64;
            let data: Vec<f64> = match (p.kind, p.name.rsplit('.').next().unwrap()) {
                (_, "num_batches_tracked") => {
                    return (
                        p.name.clone(),
                        Tensor::new(vec![], incept_ir::TensorData::I64(vec![5])).unwrap(),
                    );
                }
                (ParamKind::Trainable, "weight") if p.shape.len() > 1 => (0..n)
                    .map(|_| rng.normal() * (2.0 / fan_in).sqrt())
                    .collect(),
                (ParamKind::Trainable, "weight") => (0..n).map(|_| 0.5 + rng.next()).collect(),
                (ParamKind::Trainable, _) => (0..n).map(|_| 0.2 * rng.normal()).collect(),
                (_, "running_mean") => (0..n).map(|_| 0.3 * rng.normal()).collect(),
                _ => (0..n).map(|_| 0.5 + rng.next()).collect(),
            };
            let t = Tensor::new(p.shape.clone(), incept_ir::TensorData::F64(data)).unwrap();
            (p.name.clone(), t.to_dtype(incept_ir::DType::F32).unwrap())
        })
        .collect();
    g.bind(weights).unwrap();
    g
}

fn input(batch: usize, size: usize, seed: u64) -> Tensor {
    let mut rng = Rng(seed);
    let data = (0..batch * 3 * size * size)
        .map(|_| rng.normal() as f32)
        .collect();
    Tensor::from_f32(vec![batch, 3, size, size], data).unwrap()
}

fn interpreter(g: &Graph, precision: Precision, threads: usize) -> Interpreter {
    Interpreter::new(g, &Options { precision, threads }).unwrap()
}

fn logits(g: &Graph, x: &Tensor, precision: Precision, threads: usize) -> Vec<f64> {
    let it = interpreter(g, precision, threads);
    it.run(x, &Taps::None).unwrap().outputs[0].1.to_f64_vec()
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn float32_is_close_to_the_float64_oracle() {
    let g = tiny_model(299);
    let x = input(2, 299, 1);
    let f64_out = logits(&g, &x, Precision::F64, 1);
    let f32_out = logits(&g, &x, Precision::F32, 1);
    assert_eq!(f64_out.len(), 20);
    let err = max_rel(&f32_out, &f64_out);
    assert!(err < 1e-4, "float32 vs float64 max relative error {err:e}");
    assert!(f64_out.iter().all(|v| v.is_finite()));
}

#[test]
fn taps_do_not_change_the_result() {
    let g = tiny_model(299);
    let x = input(1, 299, 2);
    let it = interpreter(&g, Precision::F32, 1);
    let plain = it.run(&x, &Taps::None).unwrap();
    let all = it.run(&x, &Taps::All).unwrap();
    assert_eq!(
        plain.outputs[0].1, all.outputs[0].1,
        "taps changed the logits"
    );
    let names: Vec<&str> = all.taps.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "x",
        "Conv2d_1a_3x3.conv",
        "Conv2d_1a_3x3.bn",
        "Conv2d_1a_3x3",
        // Stored when tapped, though an untapped run pools it in the
        // convolution's step and never stores it.
        "Conv2d_2b_3x3",
        "maxpool1",
        "Mixed_5b",
        "Mixed_7c",
        "avgpool",
        "fc",
    ] {
        assert!(names.contains(&want), "no tap {want}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("AuxLogits")),
        "the aux head does not run at inference"
    );
    let some = it.run(&x, &Taps::Names(vec!["Mixed_6e".into()])).unwrap();
    let mixed_6e = &all.taps.iter().find(|(n, _)| n == "Mixed_6e").unwrap().1;
    assert_eq!(&some.taps[0].1, mixed_6e);
    assert_eq!(some.outputs[0].1, plain.outputs[0].1);
    assert!(
        it.run(&x, &Taps::Names(vec!["AuxLogits.fc".into()]))
            .is_err()
    );
}

#[test]
fn threads_and_batch_do_not_change_rows() {
    let g = tiny_model(299);
    let x = input(3, 299, 3);
    let one = logits(&g, &x, Precision::F32, 1);
    let two = logits(&g, &x, Precision::F32, 2);
    assert!(
        max_rel(&two, &one) < 1e-6,
        "thread count changed logits by {:e}",
        max_rel(&two, &one)
    );
    let per_image = 3 * 299 * 299;
    let xs = x.as_f32().unwrap();
    for n in 0..3 {
        let xi = Tensor::from_f32(
            vec![1, 3, 299, 299],
            xs[n * per_image..(n + 1) * per_image].to_vec(),
        )
        .unwrap();
        let row = logits(&g, &xi, Precision::F32, 2);
        let err = max_rel(&row, &one[n * 10..(n + 1) * 10]);
        assert!(
            err < 1e-6,
            "image {n} alone differs from its batch row by {err:e}"
        );
    }
}

#[test]
fn wrong_input_shape_is_refused() {
    let g = tiny_model(299);
    let it = Interpreter::new(&g, &Options::default()).unwrap();
    let err = it.run(&input(1, 224, 0), &Taps::None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input `x` must have shape f32[N,3,299,299] (any batch), got [1, 3, 224, 224]"
    );
}

#[test]
fn unbound_template_is_refused() {
    let g = inception_v3(&InceptionV3Config::default()).unwrap().graph;
    let err = Interpreter::new(&g, &Options::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter `Conv2d_1a_3x3.conv.weight` of Conv2d_1a_3x3.conv has no weights bound"
    );
}

/// A batch runs its last steps (the classifier) over all its images at
/// once, the steps before image by image: every output and every tap of
/// each image must still have the bits of that image run alone.
#[test]
fn a_batch_gives_each_image_the_bits_it_has_alone() {
    let g = tiny_model(299);
    let x = input(3, 299, 4);
    let per_image = 3 * 299 * 299;
    let xs = x.as_f32().unwrap();
    let bits =
        |t: &Tensor| -> Vec<u32> { t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect() };
    for threads in [1, 2] {
        let it = interpreter(&g, Precision::F32, threads);
        let batch = it.run(&x, &Taps::All).unwrap();
        for n in 0..3 {
            let xi = Tensor::from_f32(
                vec![1, 3, 299, 299],
                xs[n * per_image..(n + 1) * per_image].to_vec(),
            )
            .unwrap();
            let alone = it.run(&xi, &Taps::All).unwrap();
            let pairs = batch.outputs.iter().chain(&batch.taps);
            let singles = alone.outputs.iter().chain(&alone.taps);
            let mut compared = 0;
            for ((name, b), (_, a)) in pairs.zip(singles) {
                let (b, a) = (bits(b), bits(a));
                assert_eq!(b.len(), 3 * a.len(), "{name}");
                assert!(
                    b[n * a.len()..(n + 1) * a.len()] == a[..],
                    "{threads} threads: image {n} of the batch differs from its own run at {name}"
                );
                compared += 1;
            }
            assert!(compared > 100, "only {compared} values compared");
        }
    }
}
