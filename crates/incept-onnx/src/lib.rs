//! incept's ONNX reader and writer: ONNX models (with external data) in,
//! [`incept_ir::Graph`] out, and back.
//!
//! Import runs in phases (`src/import/mod.rs`): decode with size limits,
//! initializers (raw, typed or external data), node conversion through the
//! op table in [`ops`] (all unsupported ops reported at once), validation,
//! then torchvision naming ([`NamingSource`]). Export writes whatever the
//! graph holds at opset 13 to 21 (default 17).
//!
//! Supported ops (default domain, model opsets 7 to 28; each converter's
//! file names its spec and version history):
//!
//! | ONNX | IR |
//! | --- | --- |
//! | Conv (auto_pad NOTSET/SAME_UPPER/SAME_LOWER/VALID) | Conv2d |
//! | BatchNormalization (inference) | BatchNorm |
//! | Relu | Relu |
//! | MaxPool, AveragePool | Pool2d |
//! | GlobalAveragePool, ReduceMean over [2, 3] with keepdims | AdaptiveAvgPool2d [1, 1] |
//! | Concat | Concat |
//! | Flatten (axis 1) | Flatten |
//! | Reshape (constant shape) | Reshape |
//! | Gemm (alpha/beta folded only when exact), MatMul + Add | Linear |
//! | Dropout | Dropout |
//! | Identity, Constant | (no node) |
//! | Gather/Slice → Unsqueeze → Mul → Add per channel → Concat; Mul + Add by `[1, C, 1, 1]` constants | ChannelAffine |
//!
//! Architecture invariant: this crate reads only the model file and the
//! external data files inside the model's folder that the model names; it
//! never executes anything and never writes outside the output path (a
//! temporary file beside it, then a rename).

mod error;
mod export;
mod import;
mod limits;
mod naming;
pub mod ops;
pub mod proto;
mod template;
mod tensor;

use std::path::Path;

use incept_ir::Graph;

pub use error::{OnnxError, UnsupportedOp};
pub use export::{ExportOptions, MAX_EXPORT_OPSET, MIN_EXPORT_OPSET, export, export_bytes};
pub use limits::{MAX_PROTO_BYTES, check_file_size};
pub use naming::NamingSource;

/// `producer_name` of the models incept writes.
pub const PRODUCER: &str = "incept";

/// An imported model.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The graph; it validates.
    pub graph: Graph,
    /// Things the user should know that did not stop the import.
    pub warnings: Vec<String>,
    /// The model's default-domain opset.
    pub opset: i64,
    /// `producer_name producer_version` (`pytorch 2.15.0`).
    pub producer: String,
    /// Where the node and parameter names came from.
    pub naming: NamingSource,
}

/// Imports the ONNX model at `path`; external data is read from its folder.
pub fn import(path: &Path) -> Result<Imported, OnnxError> {
    let io = |action: &'static str| {
        move |source| OnnxError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let meta = std::fs::metadata(path).map_err(io("reading metadata"))?;
    // Refuse before reading: a model over 2 GiB cannot be a valid protobuf.
    check_file_size(path, meta.len())?;
    let bytes = std::fs::read(path).map_err(io("reading"))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    import::import_bytes(path, Some(base), &bytes)
}

/// Imports a model from memory. External data is refused (there is no folder).
pub fn import_bytes(bytes: &[u8]) -> Result<Imported, OnnxError> {
    import::import_bytes(&error::memory_path(), None, bytes)
}
