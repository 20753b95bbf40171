//! Errors of the interpreter: a graph it cannot run, or an input that does not fit.

use thiserror::Error;

/// Why a model cannot be prepared or run.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum InterpError {
    /// The graph breaks an IR invariant.
    #[error("the graph is invalid: {0}")]
    Graph(#[from] incept_ir::GraphError),
    /// A parameter has no data (a template that was never bound to weights).
    #[error("parameter `{param}` of {node} has no weights bound")]
    Unbound {
        /// The node.
        node: String,
        /// The parameter.
        param: String,
    },
    /// A parameter's data is not a float tensor.
    #[error("parameter `{param}` is {dtype}, a float type is needed")]
    ParamDtype {
        /// The parameter.
        param: String,
        /// Its dtype.
        dtype: incept_ir::DType,
    },
    /// The graph does not have exactly one input.
    #[error("the interpreter runs graphs with one input, this one has {0}")]
    InputCount(usize),
    /// The input tensor's shape does not fit the graph.
    #[error("input `{name}` must have shape {expected} (any batch), got {found:?}")]
    InputShape {
        /// The graph input.
        name: String,
        /// Its declared type.
        expected: String,
        /// The tensor's shape.
        found: Vec<usize>,
    },
    /// The input tensor is not a float tensor.
    #[error("input must be a float tensor, got {0}")]
    InputDtype(incept_ir::DType),
    /// A tap names no value of the graph, or one inference does not compute.
    #[error("cannot tap `{0}`: no value of that name is computed at inference")]
    UnknownTap(String),
    /// The thread pool could not be created.
    #[error("cannot start {threads} worker threads: {message}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// The OS's message.
        message: String,
    },
}
