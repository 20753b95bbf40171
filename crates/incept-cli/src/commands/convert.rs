//! `incept convert SRC -o DST`: writes any model incept reads as ONNX or a
//! safetensors state dict; the target format comes from DST's extension.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use incept_onnx::ExportOptions;

use crate::cli::ConvertArgs;
use crate::{Outcome, model, output};

/// Runs `incept convert`.
pub fn run(args: &ConvertArgs) -> Result<Outcome> {
    let loaded = model::load(&args.model)?;
    loaded.warnings.iter().for_each(|w| output::warning(w));
    let ext = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "onnx" => incept_onnx::export(
            &loaded.graph,
            &args.output,
            &ExportOptions { opset: args.opset },
        )?,
        "safetensors" => {
            let mut tensors = Vec::with_capacity(loaded.graph.params.len());
            for p in &loaded.graph.params {
                match &p.data {
                    Some(t) => tensors.push((p.name.as_str(), t)),
                    None => bail!(
                        "{}: parameter `{}` has no weights; a template cannot be saved as a state dict",
                        loaded.source,
                        p.name
                    ),
                }
            }
            let mut meta: BTreeMap<String, String> = loaded.graph.metadata.clone();
            meta.insert("format".into(), "pt".into());
            meta.insert(
                "producer".into(),
                format!("incept {}", env!("CARGO_PKG_VERSION")),
            );
            incept_safetensors::write(&args.output, &tensors, &meta)?;
        }
        other => bail!(
            "{}: cannot tell the output format from the extension `{other}`; use .onnx or .safetensors",
            args.output.display()
        ),
    }
    output::stdout(&format!("wrote {}\n", args.output.display()))?;
    Ok(Outcome::Success)
}
