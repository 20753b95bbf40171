//! `incept run`: one forward pass on random, tensor-file or image inputs;
//! prints the top-k classes and optionally saves the outputs and taps.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::{Context, Result, bail};
use incept_interp::{Interpreter, Options, Taps};
use incept_ir::Tensor;
use serde::Serialize;

use crate::cli::{OutputFormat, RunArgs};
use crate::input::{self, preprocess};
use crate::{Outcome, model, output};

/// ImageNet class names in torchvision's order (made by `data/make_imagenet_classes.py`).
const IMAGENET_CLASSES: &str = include_str!("../../data/imagenet_classes.txt");

#[derive(Serialize)]
struct Prediction {
    class: usize,
    name: Option<String>,
    logit: f64,
    probability: f64,
}

#[derive(Serialize)]
struct Row {
    input: String,
    top: Vec<Prediction>,
}

#[derive(Serialize)]
struct RunReport {
    schema_version: u32,
    model: String,
    precision: String,
    threads: usize,
    input_shape: Vec<usize>,
    results: Vec<Row>,
}

/// Runs `incept run`.
pub fn run(args: &RunArgs) -> Result<Outcome> {
    let loaded = model::load(&args.model)?;
    loaded.warnings.iter().for_each(|w| output::warning(w));
    let graph = &loaded.graph;
    let input_ty = graph.values[*graph.inputs.first().context("the model has no input")?]
        .ty
        .clone();
    let size = [
        input_ty.shape[2].fixed().unwrap_or(0),
        input_ty.shape[3].fixed().unwrap_or(0),
    ];
    let (x, labels): (Tensor, Vec<String>) = if !args.image.is_empty() {
        if size[0] != size[1] {
            bail!(
                "image preprocessing needs a square model input, this one is {}x{}",
                size[0],
                size[1]
            );
        }
        // torchvision's ratio: resize 342 for a 299 crop.
        let resize = (size[0] as f64 * 342.0 / 299.0).round() as usize;
        let x = preprocess::batch(&args.image, resize, size[0], args.normalize)?;
        (
            x,
            args.image.iter().map(|p| p.display().to_string()).collect(),
        )
    } else if args.input == "random" {
        let x = input::random(args.batch as usize, size, args.seed)?;
        (
            x,
            (0..args.batch)
                .map(|i| format!("random (seed {}) #{i}", args.seed))
                .collect(),
        )
    } else {
        let path = std::path::Path::new(&args.input);
        let x = input::from_file(path)?;
        let n = x.shape().first().copied().unwrap_or(0);
        (
            x,
            (0..n).map(|i| format!("{} #{i}", path.display())).collect(),
        )
    };
    let source = loaded.source.clone();
    let interp = Interpreter::from_graph(
        loaded.graph,
        &Options {
            precision: args.precision.into(),
            threads: args.threads,
        },
    )?;
    let taps = if args.save_taps {
        Taps::All
    } else {
        Taps::None
    };
    let result = interp
        .run(&x, &taps)
        .with_context(|| format!("running {source}"))?;
    let (_, logits) = result
        .outputs
        .first()
        .context("the model has no inference output")?;
    let classes = *logits.shape().last().unwrap_or(&0);
    let names: Vec<&str> = if classes == 1000 {
        IMAGENET_CLASSES.lines().collect()
    } else {
        Vec::new()
    };
    let values = logits.to_f64_vec();
    let rows: Vec<Row> = labels
        .into_iter()
        .zip(values.chunks(classes.max(1)))
        .map(|(input, row)| Row {
            input,
            top: top_k(row, args.top, &names),
        })
        .collect();
    let report = RunReport {
        schema_version: 1,
        model: source.clone(),
        precision: format!("{:?}", args.precision).to_lowercase(),
        threads: interp.threads(),
        input_shape: x.shape().to_vec(),
        results: rows,
    };
    if let Some(path) = &args.save {
        let mut tensors = vec![("logits".to_string(), logits.clone())];
        tensors.extend(result.taps.iter().cloned());
        let meta = BTreeMap::from([
            ("model".to_string(), source.clone()),
            ("precision".to_string(), report.precision.clone()),
        ]);
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        incept_safetensors::write(path, &refs, &meta)?;
    }
    let text = match args.format {
        OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        OutputFormat::Table => table(&report),
    };
    output::stdout(&text)?;
    Ok(Outcome::Success)
}

fn top_k(row: &[f64], k: usize, names: &[&str]) -> Vec<Prediction> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = row.iter().map(|v| (v - max).exp()).sum();
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.into_iter()
        .take(k)
        .map(|i| Prediction {
            class: i,
            name: names.get(i).map(|s| s.to_string()),
            logit: row[i],
            probability: (row[i] - max).exp() / total,
        })
        .collect()
}

fn table(r: &RunReport) -> String {
    let mut s = String::new();
    let shape: Vec<String> = r.input_shape.iter().map(usize::to_string).collect();
    let _ = writeln!(
        s,
        "model: {} ({}, {} threads)",
        r.model, r.precision, r.threads
    );
    let _ = writeln!(s, "input: {}", shape.join("x"));
    for row in &r.results {
        let _ = writeln!(s, "\n{}", row.input);
        let _ = writeln!(
            s,
            "  rank  class  {:<28}  {:>10}  {:>7}",
            "name", "logit", "prob"
        );
        for (i, p) in row.top.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {:>4}  {:>5}  {:<28}  {:>10.4}  {:>6.2}%",
                i + 1,
                p.class,
                p.name.as_deref().unwrap_or("-"),
                p.logit,
                p.probability * 100.0
            );
        }
    }
    s
}
