//! The command line, declared with clap.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Convert and verify Inception V3 models.
///
/// incept reads torchvision Inception V3 models into one typed graph, reports
/// their shapes, parameters and multiply-accumulates layer by layer, and
/// checks conversions between formats.
#[derive(Debug, Parser)]
#[command(name = "incept", version, about, long_about, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 success, 1 a check failed, 2 an error.")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a layer-by-layer report: output shapes, parameters, MACs and totals.
    #[command(after_help = "Examples:\n  \
        incept report --arch inception_v3\n  \
        incept report --arch inception_v3 --no-aux --num-classes 10 --format yaml\n  \
        incept report --arch inception_v3 --input-size 512 --batch 8 --format json")]
    Report(ReportArgs),
    /// Print the typed IR graph as text: every node, its attributes, parameters and types.
    Dump(ModelArgs),
}

/// Which model to load and with which settings.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A model file: a safetensors state dict. Its format is recognised from
    /// its contents; the number of classes, the aux head and the channel
    /// widths come from its weights.
    #[arg(value_name = "MODEL", required_unless_present = "arch", conflicts_with = "arch")]
    pub model: Option<std::path::PathBuf>,
    /// Build a model from a built-in architecture template instead of a file.
    #[arg(long, value_enum, value_name = "ARCH")]
    pub arch: Option<Arch>,
    /// Input height and width (square).
    #[arg(long, default_value_t = 299, value_name = "PIXELS",
          value_parser = clap::value_parser!(u32).range(1..=16384))]
    pub input_size: u32,
    /// Number of classes of the final classifier (with --arch).
    #[arg(long, default_value_t = 1000, value_name = "K", requires = "arch",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub num_classes: u32,
    /// Leave out the auxiliary classifier, AuxLogits (with --arch).
    #[arg(long, requires = "arch")]
    pub no_aux: bool,
    /// Rescale the input from ImageNet normalisation to [-1, 1] first, as
    /// torchvision does for its published weights. State dicts do not record
    /// this setting, so it is yours to give.
    #[arg(long)]
    pub transform_input: bool,
}

/// Arguments of `incept report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Batch size for shapes and MACs.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub batch: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

/// Built-in architectures.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Arch {
    /// torchvision's Inception3 (`torchvision.models.inception_v3`).
    #[value(name = "inception_v3")]
    InceptionV3,
}

/// Formats of `incept report`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns.
    Table,
    /// YAML, with a schema version.
    Yaml,
    /// JSON, with a schema version.
    Json,
}
