//! Turning the model arguments into a graph.

use anyhow::Result;
use incept_ir::Graph;
use incept_ir::template::{InceptionV3Config, inception_v3};

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

/// Builds the model the arguments name.
pub fn load(args: &ModelArgs) -> Result<Loaded> {
    match args.arch {
        Arch::InceptionV3 => {
            let size = args.input_size as usize;
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
    }
}
