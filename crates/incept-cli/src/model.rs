//! Turning the model arguments into a graph: a built-in template, or a file
//! whose format is recognised by its first bytes (never by its name alone).

use std::path::Path;

use anyhow::{Context, Result, bail};
use incept_ir::Graph;
use incept_ir::template::{InceptionV3Config, bind_state_dict, inception_v3};

use crate::cli::{Arch, ModelArgs};

/// A loaded model and what loading it had to say.
pub struct Loaded {
    /// The graph.
    pub graph: Graph,
    /// Where it came from, for reports.
    pub source: String,
    /// Warnings to show the user.
    pub warnings: Vec<String>,
}

/// The file formats incept recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A safetensors file (an 8-byte header length, then a JSON header).
    Safetensors,
    /// A zip archive (`torch.save` since 1.6, or a TorchScript archive).
    Zip,
    /// A pickle stream (the legacy `torch.save` format).
    Pickle,
    /// A protobuf starting with ModelProto's `ir_version` (field 1, varint): ONNX.
    Onnx,
    /// Anything else.
    Unknown,
}

/// Recognises a file's format from its first bytes.
pub fn sniff(path: &Path) -> Result<FileKind> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = f
        .read(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let head = &head[..n];
    Ok(if head.starts_with(b"PK\x03\x04") {
        FileKind::Zip
    } else if head.first() == Some(&0x80) && head.get(1).is_some_and(|p| (2..=5).contains(p)) {
        FileKind::Pickle
    } else if n >= 9 && head[8] == b'{' {
        FileKind::Safetensors
    } else if head.first() == Some(&0x08) {
        FileKind::Onnx
    } else {
        FileKind::Unknown
    })
}

/// Builds or reads the model the arguments name.
pub fn load(args: &ModelArgs) -> Result<Loaded> {
    let size = args.input_size as usize;
    match (&args.model, args.arch) {
        (Some(path), _) => load_file(path, args.transform_input, [size, size]),
        (None, Some(Arch::InceptionV3)) => {
            let cfg = InceptionV3Config {
                num_classes: args.num_classes as usize,
                aux_logits: !args.no_aux,
                transform_input: args.transform_input,
                input_size: [size, size],
                ..InceptionV3Config::default()
            };
            let built = inception_v3(&cfg)?;
            Ok(Loaded {
                graph: built.graph,
                source: "template inception_v3".into(),
                warnings: built.warnings,
            })
        }
        (None, None) => bail!("name a model file or a built-in architecture with --arch"),
    }
}

fn load_file(path: &Path, transform_input: bool, input_size: [usize; 2]) -> Result<Loaded> {
    let (tensors, mut warnings) = match sniff(path)? {
        FileKind::Onnx => {
            // An ONNX file carries its own graph: settings come from the file, not the flags.
            let imported = incept_onnx::import(path)?;
            let mut warnings = imported.warnings;
            if transform_input {
                warnings.push(
                    "--transform-input is ignored for ONNX files: the graph says whether it transforms its input".into(),
                );
            }
            return Ok(Loaded {
                graph: imported.graph,
                source: path.display().to_string(),
                warnings,
            });
        }
        FileKind::Safetensors => {
            let f = incept_safetensors::read(path)?;
            (f.tensors, Vec::new())
        }
        FileKind::Zip | FileKind::Pickle => {
            let ckpt = incept_torch::load(path)?;
            let mut notes = ckpt.warnings;
            if let Some(key) = &ckpt.source_key {
                notes.push(format!("weights taken from the checkpoint's `{key}` entry"));
            }
            if let Some(prefix) = &ckpt.stripped_prefix {
                notes.push(format!("stripped the `{prefix}` prefix from every key"));
            }
            (ckpt.tensors, notes)
        }
        FileKind::Unknown => bail!(
            "{}: not a format incept reads (PyTorch .pth/.pt checkpoints and TorchScript archives, ONNX, safetensors)",
            path.display()
        ),
    };
    let built = bind_state_dict(tensors, transform_input, input_size).with_context(|| {
        format!(
            "{}: cannot bind the weights to Inception V3",
            path.display()
        )
    })?;
    warnings.extend(built.warnings);
    Ok(Loaded {
        graph: built.graph,
        source: path.display().to_string(),
        warnings,
    })
}
