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
    /// Run the model on inputs and print the top classes.
    #[command(after_help = "Examples:\n  \
        incept run model.pth --image cat.jpg dog.png\n  \
        incept run model.pth --input random --seed 3 --batch 4 --format json\n  \
        incept run model.pth --input x.safetensors --precision f64 --save out.safetensors --save-taps")]
    Run(RunArgs),
    /// Time the forward pass alone (after warm-up, model loaded once).
    Bench(BenchArgs),
    /// Show what a model file holds: container, tensors, totals, architecture, warnings.
    Inspect(InspectArgs),
    /// Write a model as ONNX or as a safetensors state dict (format from the extension).
    #[command(after_help = "Examples:\n  \
        incept convert model.pth -o model.onnx\n  \
        incept convert model.pth --transform-input -o model.onnx --opset 13\n  \
        incept convert model.onnx -o weights.safetensors")]
    Convert(ConvertArgs),
}

/// Arguments of `incept inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The model file.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
    /// Report the architecture with `transform_input` set (state dicts do not store it).
    #[arg(long)]
    pub transform_input: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Arguments of `incept convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output file: `.onnx` or `.safetensors`. Written to a temporary file and
    /// renamed into place, so a failure never leaves a partial file.
    #[arg(short, long, value_name = "FILE")]
    pub output: std::path::PathBuf,
    /// ONNX opset of the output.
    #[arg(long, default_value_t = 17, value_parser = clap::value_parser!(i64).range(13..=21))]
    pub opset: i64,
}

/// Arithmetic of the interpreter.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PrecisionArg {
    /// float32, as PyTorch and onnxruntime compute.
    F32,
    /// float64: the oracle float32 results are measured against.
    F64,
}

impl From<PrecisionArg> for incept_interp::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => incept_interp::Precision::F32,
            PrecisionArg::F64 => incept_interp::Precision::F64,
        }
    }
}

/// Formats of `run` and `bench`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Table,
    /// For scripts.
    Json,
}

/// Arguments of `incept run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// `random`, or a `.safetensors` / `.npy` file holding an NCHW batch.
    #[arg(long, default_value = "random", value_name = "SOURCE")]
    pub input: String,
    /// Seed of the random input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Batch size of the random input.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch: u32,
    /// Image files (JPEG, PNG), preprocessed as torchvision does for Inception V3:
    /// resize the short side to 342 (bilinear, antialiased), center-crop 299, normalise.
    #[arg(long, num_args = 1.., value_name = "IMAGE", conflicts_with = "input")]
    pub image: Vec<std::path::PathBuf>,
    /// Normalisation of image inputs.
    #[arg(long, value_enum, default_value_t = crate::input::preprocess::Normalize::Imagenet)]
    pub normalize: crate::input::preprocess::Normalize,
    /// Classes to print per input.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Arithmetic.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Save the outputs to a safetensors file (the logits under `logits`).
    #[arg(long, value_name = "FILE")]
    pub save: Option<std::path::PathBuf>,
    /// With --save: also save every layer's output, keyed by its torchvision name.
    #[arg(long, requires = "save")]
    pub save_taps: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Arguments of `incept bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Batch size.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch: u32,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Timed iterations.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub iters: u32,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 3)]
    pub warmup: u32,
    /// Also time every step (a convolution with its fused BatchNorm and ReLU is
    /// one step) and print where the time goes, by op and by layer.
    #[arg(long)]
    pub profile: bool,
    /// Arithmetic.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Which model to load and with which settings.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A model file: a PyTorch checkpoint (.pth, zip or legacy, plain or a
    /// training checkpoint), a TorchScript archive, an ONNX file, or a
    /// safetensors state dict, recognised from its contents. For weights
    /// without a graph, the number of classes, the aux head and the channel
    /// widths come from the weights' shapes.
    #[arg(
        value_name = "MODEL",
        required_unless_present = "arch",
        conflicts_with = "arch"
    )]
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
