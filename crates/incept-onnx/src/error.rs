//! The one error type of the crate: every variant names the file and the
//! node, tensor or entry at fault, and the rule it broke.

use std::fmt;
use std::path::PathBuf;

use incept_ir::GraphError;
use thiserror::Error;

/// One op of a model that the importer cannot convert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedOp {
    /// The node's name (or its first output when unnamed).
    pub node: String,
    /// `op_type`.
    pub op_type: String,
    /// The node's domain (`""` is the default ONNX domain).
    pub domain: String,
    /// Why: unknown op, unknown domain, opset out of range.
    pub reason: String,
    /// How many nodes share this op and reason (`node` is the first).
    pub count: usize,
}

impl fmt::Display for UnsupportedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = if self.domain.is_empty() {
            String::new()
        } else {
            format!("{}::", self.domain)
        };
        let more = match self.count {
            0 | 1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        write!(
            f,
            "{domain}{} (node `{}`{more}): {}",
            self.op_type, self.node, self.reason
        )
    }
}

fn list(ops: &[UnsupportedOp]) -> String {
    ops.iter()
        .map(|o| format!("\n  - {o}"))
        .collect::<Vec<_>>()
        .join("")
}

/// Anything that can go wrong reading or writing ONNX.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// Reading or inspecting a file failed.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is larger than a protobuf message may be (2 GiB − 1).
    #[error(
        "{path}: the file is {size} bytes, over the protobuf limit of {limit} bytes; \
         models this large must keep their weights in external data files"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The bytes are not a valid protobuf `ModelProto` (or are truncated).
    #[error("{path}: not a valid ONNX protobuf (truncated or not ONNX): {source}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// prost's description.
        source: prost::DecodeError,
    },
    /// The protobuf decodes but is not a usable ONNX model.
    #[error("{path}: not an ONNX model: {reason}")]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The model's opset for a domain is outside what the importer covers.
    #[error(
        "{path}: opset {version} of domain `{domain}` is not supported (supported: {supported})"
    )]
    UnsupportedOpset {
        /// The file.
        path: PathBuf,
        /// The domain (`""` = default ONNX).
        domain: String,
        /// The version imported.
        version: i64,
        /// The versions the importer covers.
        supported: String,
    },
    /// Ops the importer cannot convert, all of them at once.
    #[error("{path}: {} unsupported op(s):{}", ops.len(), list(ops))]
    UnsupportedOps {
        /// The file.
        path: PathBuf,
        /// Every unsupported node.
        ops: Vec<UnsupportedOp>,
    },
    /// An initializer or constant tensor is malformed.
    #[error("{path}: tensor `{tensor}`: {rule}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The rule broken.
        rule: String,
    },
    /// An external-data reference is refused.
    #[error("{path}: tensor `{tensor}`: external data {rule}")]
    ExternalData {
        /// The model file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The rule broken, with the offending value.
        rule: String,
    },
    /// A node is malformed or outside what its converter supports.
    #[error("{path}: node `{node}` ({op_type}): {rule}")]
    Node {
        /// The file.
        path: PathBuf,
        /// The node.
        node: String,
        /// Its op.
        op_type: String,
        /// The rule broken.
        rule: String,
    },
    /// A node reads a value no earlier node, input or initializer defines.
    #[error(
        "{path}: node `{node}` reads `{input}` before anything defines it \
         (nodes out of topological order, a cycle, or a missing tensor)"
    )]
    UsedBeforeDefined {
        /// The file.
        path: PathBuf,
        /// The node.
        node: String,
        /// The value read.
        input: String,
    },
    /// Two nodes, inputs or initializers define the same value.
    #[error("{path}: `{name}` is defined twice (again by {by})")]
    DefinedTwice {
        /// The file.
        path: PathBuf,
        /// The value.
        name: String,
        /// The second definer.
        by: String,
    },
    /// The converted graph fails the IR's checks.
    #[error("{path}: the imported graph is inconsistent: {source}")]
    Graph {
        /// The file.
        path: PathBuf,
        /// The IR's error.
        source: GraphError,
    },
    /// The graph cannot be written as ONNX.
    #[error("{path}: cannot export: {rule}")]
    Export {
        /// The output file.
        path: PathBuf,
        /// Why.
        rule: String,
    },
}

/// The name used for in-memory models in errors.
pub(crate) fn memory_path() -> PathBuf {
    PathBuf::from("<memory>")
}
