//! `incept report`: one row per layer with its output shape, parameters and
//! multiply-accumulates, then totals for the inference path and the
//! training-only heads separately.

use std::collections::BTreeMap;
use std::fmt::Write;

use incept_ir::cost::{node_macs, node_params};
use incept_ir::{Graph, ParamKind};
use serde::Serialize;
use thiserror::Error;

/// Version of the YAML/JSON layout. Bumped on any change that could break a
/// consumer (a renamed or removed field); added fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// Which part of the model a layer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// Needed for the inference outputs.
    Main,
    /// Only needed for training-only outputs (Inception's aux head).
    Aux,
}

/// One layer (IR node) of the report.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    /// The node's name: the torchvision module path where there is one.
    pub name: String,
    /// The op.
    pub op: String,
    /// The op's attributes in compact form (`3->32 k=3 s=2 p=0`).
    pub attrs: String,
    /// Output shape at the report's batch size.
    pub output_shape: Vec<usize>,
    /// Trainable parameters the layer owns.
    pub params: u64,
    /// Multiply-accumulates at the report's batch size (convolutions and linear layers).
    pub macs: u64,
    /// Main path or aux head.
    pub section: Section,
}

/// Parameters and MACs of a part of the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sum {
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-accumulates at the report's batch size.
    pub macs: u64,
}

/// Totals of a report.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    /// The inference path.
    pub main: Sum,
    /// The training-only heads. Parameters of a head the input size leaves
    /// out of the graph are still counted here.
    pub aux: Sum,
    /// Both.
    pub all: Sum,
    /// Elements of buffers (BatchNorm running statistics, `num_batches_tracked`):
    /// stored in checkpoints, not counted as parameters.
    pub buffers: u64,
}

/// A model's report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Layout version of the YAML/JSON form.
    pub schema_version: u32,
    /// Where the model came from (`template inception_v3`, a file path).
    pub source: String,
    /// The graph's settings (architecture, `transform_input`, passes applied).
    pub settings: BTreeMap<String, String>,
    /// The input shape at the report's batch size.
    pub input_shape: Vec<usize>,
    /// One row per layer, main path first, then the aux head.
    pub layers: Vec<LayerRow>,
    /// Totals.
    pub totals: Totals,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

/// Output formats of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// YAML.
    Yaml,
    /// JSON (pretty-printed).
    Json,
}

/// A report could not be made or rendered.
#[derive(Debug, Error)]
pub enum ReportError {
    /// The batch size is zero.
    #[error("the batch size must be at least 1")]
    ZeroBatch,
    /// The graph has no input.
    #[error("the graph has no input")]
    NoInput,
    /// Serialisation failed.
    #[error("cannot render the report as {format}: {message}")]
    Render {
        /// "YAML" or "JSON".
        format: &'static str,
        /// The serializer's message.
        message: String,
    },
}

impl Report {
    /// The report of `graph` at batch size `batch`.
    pub fn new(
        graph: &Graph,
        source: &str,
        batch: usize,
        warnings: Vec<String>,
    ) -> Result<Report, ReportError> {
        if batch == 0 {
            return Err(ReportError::ZeroBatch);
        }
        let input = graph.inputs.first().ok_or(ReportError::NoInput)?;
        let main = graph.inference_nodes();
        let b = batch as u64;
        let mut rows = Vec::with_capacity(graph.nodes.len());
        for (node, &is_main) in graph.nodes.iter().zip(&main) {
            let shape = graph.values[node.output].ty.concrete(batch);
            rows.push(LayerRow {
                name: node.name.clone(),
                op: node.op.name().to_string(),
                attrs: node.op.to_string(),
                output_shape: shape,
                params: node_params(graph, node, ParamKind::Trainable),
                macs: node_macs(graph, node) * b,
                section: if is_main { Section::Main } else { Section::Aux },
            });
        }
        // Stable: main path first, aux head after, each in graph order.
        rows.sort_by_key(|r| r.section == Section::Aux);
        let sum = |s: Section| {
            rows.iter()
                .filter(|r| r.section == s)
                .fold(Sum::default(), |a, r| Sum {
                    params: a.params + r.params,
                    macs: a.macs + r.macs,
                })
        };
        let main_sum = sum(Section::Main);
        let all_params = graph.trainable_params() as u64;
        let all_macs = rows.iter().map(|r| r.macs).sum();
        let aux = Sum {
            params: all_params - main_sum.params,
            macs: all_macs - main_sum.macs,
        };
        let buffers = graph
            .params
            .iter()
            .filter(|p| p.kind == ParamKind::Buffer)
            .map(|p| p.numel() as u64)
            .sum();
        Ok(Report {
            schema_version: SCHEMA_VERSION,
            source: source.to_string(),
            settings: graph.metadata.clone(),
            input_shape: graph.values[*input].ty.concrete(batch),
            layers: rows,
            totals: Totals {
                main: main_sum,
                aux,
                all: Sum {
                    params: all_params,
                    macs: all_macs,
                },
                buffers,
            },
            warnings,
        })
    }

    /// Renders the report.
    pub fn render(&self, format: Format) -> Result<String, ReportError> {
        match format {
            Format::Table => Ok(self.table()),
            Format::Yaml => serde_yaml_ng::to_string(self).map_err(|e| ReportError::Render {
                format: "YAML",
                message: e.to_string(),
            }),
            Format::Json => serde_json::to_string_pretty(self)
                .map(|s| s + "\n")
                .map_err(|e| ReportError::Render {
                    format: "JSON",
                    message: e.to_string(),
                }),
        }
    }

    fn table(&self) -> String {
        let mut s = String::new();
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "model: {}", self.source);
        let _ = writeln!(s, "settings: {}", settings.join(", "));
        let _ = writeln!(s, "input: {}", shape(&self.input_shape));
        s.push('\n');
        let header = ["layer", "op", "output", "params", "MACs"];
        let cells = |r: &LayerRow| {
            [
                r.name.clone(),
                r.op.clone(),
                shape(&r.output_shape),
                dash_or(r.params),
                dash_or(r.macs),
            ]
        };
        let all: Vec<[String; 5]> = self.layers.iter().map(cells).collect();
        let mut w = header.map(str::len);
        for row in &all {
            for (wi, c) in w.iter_mut().zip(row) {
                *wi = (*wi).max(c.len());
            }
        }
        let line = |s: &mut String, row: &[String; 5]| {
            let _ = writeln!(
                s,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4]
            );
        };
        line(&mut s, &header.map(String::from));
        let mut in_aux = false;
        for (r, cells) in self.layers.iter().zip(&all) {
            if r.section == Section::Aux && !in_aux {
                in_aux = true;
                let _ = writeln!(s, "\naux head (training only; not run at inference):");
            }
            line(&mut s, cells);
        }
        s.push('\n');
        let t = &self.totals;
        let rows = [
            ("main path", t.main),
            ("aux head (training only)", t.aux),
            ("total", t.all),
        ];
        let label_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let pw = rows
            .iter()
            .map(|r| thousands(r.1.params).len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mw = rows
            .iter()
            .map(|r| thousands(r.1.macs).len())
            .max()
            .unwrap_or(0)
            .max(4);
        let _ = writeln!(s, "{:<label_w$}  {:>pw$}  {:>mw$}", "", "params", "MACs");
        for (label, sum) in rows {
            let _ = writeln!(
                s,
                "{label:<label_w$}  {:>pw$}  {:>mw$}",
                thousands(sum.params),
                thousands(sum.macs)
            );
        }
        let _ = writeln!(
            s,
            "buffers (BatchNorm statistics, not parameters): {}",
            thousands(t.buffers)
        );
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}

fn shape(dims: &[usize]) -> String {
    dims.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

fn dash_or(n: u64) -> String {
    if n == 0 { "-".into() } else { thousands(n) }
}

/// `27161264` → `27,161,264`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(27_161_264), "27,161,264");
    }
}
