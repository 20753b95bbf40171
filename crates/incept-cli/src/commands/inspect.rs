//! `incept inspect FILE`: what a model file holds — its container, every
//! stored tensor, totals, the architecture it binds to, and the warnings.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use incept_ir::Tensor;
use incept_ir::template::bind_state_dict;
use serde::Serialize;

use crate::cli::{InspectArgs, OutputFormat};
use crate::model::{FileKind, sniff};
use crate::{Outcome, output};

#[derive(Serialize)]
struct TensorRow {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    bytes: usize,
}

#[derive(Serialize)]
struct Inspection {
    schema_version: u32,
    file: String,
    container: String,
    details: Vec<(String, String)>,
    tensors: Vec<TensorRow>,
    total_elements: usize,
    total_bytes: usize,
    architecture: String,
    warnings: Vec<String>,
}

fn rows<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Vec<TensorRow> {
    tensors
        .into_iter()
        .map(|(n, t)| TensorRow {
            name: n.to_string(),
            dtype: t.dtype().to_string(),
            shape: t.shape().to_vec(),
            bytes: t.nbytes(),
        })
        .collect()
}

/// What binding a state dict to the Inception V3 template says.
fn architecture(
    tensors: Vec<(String, Tensor)>,
    transform_input: bool,
    warnings: &mut Vec<String>,
) -> String {
    match bind_state_dict(tensors, transform_input, [299, 299]) {
        Ok(m) => {
            let g = &m.graph;
            let classes = g
                .params
                .iter()
                .find(|p| p.name == "fc.weight")
                .and_then(|p| p.shape.first())
                .copied()
                .unwrap_or(0);
            let aux = g.params.iter().any(|p| p.name.starts_with("AuxLogits."));
            let full = incept_ir::template::inception_v3(&incept_ir::template::InceptionV3Config {
                num_classes: classes,
                aux_logits: aux,
                ..Default::default()
            })
            .map(|f| {
                f.graph
                    .params
                    .iter()
                    .zip(&g.params)
                    .all(|(a, b)| a.shape == b.shape)
            })
            .unwrap_or(false);
            format!(
                "inception_v3 (num_classes={classes}, aux_logits={aux}, transform_input={transform_input} [not stored in state dicts; set with --transform-input], widths={})",
                if full { "torchvision's" } else { "reduced" }
            )
        }
        Err(e) => {
            warnings.push(e.to_string());
            "not recognised".into()
        }
    }
}

/// Runs `incept inspect`.
pub fn run(args: &InspectArgs) -> Result<Outcome> {
    let path: &Path = &args.file;
    let mut warnings = Vec::new();
    let mut details = Vec::new();
    let (container, tensors, arch) = match sniff(path)? {
        FileKind::Zip | FileKind::Pickle => {
            let ckpt = incept_torch::load(path)?;
            warnings.extend(ckpt.warnings.iter().cloned());
            details.push((
                "byte order".into(),
                format!("{:?}", ckpt.byte_order).to_lowercase(),
            ));
            if let Some(k) = &ckpt.source_key {
                details.push(("weights under".into(), k.clone()));
            }
            if let Some(p) = &ckpt.stripped_prefix {
                details.push(("stripped prefix".into(), p.clone()));
            }
            let container = match ckpt.container {
                incept_torch::Container::Zip => "PyTorch zip checkpoint (torch.save)",
                incept_torch::Container::Legacy => {
                    "PyTorch legacy checkpoint (torch.save, _use_new_zipfile_serialization=False)"
                }
                incept_torch::Container::TorchScript => {
                    "TorchScript archive (torch.jit.save; weights read, code not)"
                }
            };
            let rows = rows(ckpt.tensors.iter().map(|(n, t)| (n.as_str(), t)));
            (
                container.to_string(),
                rows,
                architecture(ckpt.tensors, args.transform_input, &mut warnings),
            )
        }
        FileKind::Safetensors => {
            let f = incept_safetensors::read(path)?;
            for (k, v) in &f.metadata {
                details.push((format!("metadata {k}"), v.clone()));
            }
            let rows = rows(f.tensors.iter().map(|(n, t)| (n.as_str(), t)));
            (
                "safetensors".to_string(),
                rows,
                architecture(f.tensors, args.transform_input, &mut warnings),
            )
        }
        FileKind::Onnx => {
            let m = incept_onnx::import(path)?;
            warnings.extend(m.warnings.iter().cloned());
            details.push(("opset".into(), m.opset.to_string()));
            details.push(("producer".into(), m.producer.clone()));
            details.push(("layer names from".into(), m.naming.to_string()));
            for (k, v) in &m.graph.metadata {
                details.push((format!("setting {k}"), v.clone()));
            }
            let rows = rows(
                m.graph
                    .params
                    .iter()
                    .filter_map(|p| Some((p.name.as_str(), p.data.as_ref()?))),
            );
            let arch = match m.naming {
                incept_onnx::NamingSource::Original => {
                    "not recognised as Inception V3 (the graph keeps its own names)".to_string()
                }
                naming => format!("inception_v3 (torchvision names recovered from {naming})"),
            };
            ("ONNX".to_string(), rows, arch)
        }
        FileKind::Unknown => anyhow::bail!(
            "{}: not a format incept reads (PyTorch .pth/.pt checkpoints and TorchScript archives, ONNX, safetensors)",
            path.display()
        ),
    };
    let report = Inspection {
        schema_version: 1,
        file: path.display().to_string(),
        container,
        details,
        total_elements: tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum(),
        total_bytes: tensors.iter().map(|t| t.bytes).sum(),
        tensors,
        architecture: arch,
        warnings,
    };
    let text = match args.format {
        OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        OutputFormat::Table => table(&report),
    };
    output::stdout(&text)?;
    Ok(Outcome::Success)
}

fn table(r: &Inspection) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "file: {}", r.file);
    let _ = writeln!(s, "container: {}", r.container);
    for (k, v) in &r.details {
        let _ = writeln!(s, "{k}: {v}");
    }
    let _ = writeln!(s, "architecture: {}", r.architecture);
    let w = r
        .tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(6);
    let _ = writeln!(
        s,
        "\n{:<w$}  {:<5}  {:<20}  {:>12}",
        "tensor", "dtype", "shape", "bytes"
    );
    for t in &r.tensors {
        let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
        let _ = writeln!(
            s,
            "{:<w$}  {:<5}  {:<20}  {:>12}",
            t.name,
            t.dtype,
            format!("[{}]", shape.join(",")),
            incept_verify::report::thousands(t.bytes as u64)
        );
    }
    let _ = writeln!(
        s,
        "\n{} tensors, {} elements, {} bytes",
        r.tensors.len(),
        incept_verify::report::thousands(r.total_elements as u64),
        incept_verify::report::thousands(r.total_bytes as u64)
    );
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}
