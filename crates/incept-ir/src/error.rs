//! Error types of the IR: tensor construction, shape inference and graph validation.

use thiserror::Error;

use crate::dtype::DType;

/// A tensor could not be built from the data given.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TensorError {
    /// The product of the dimensions does not fit in `usize`.
    #[error("shape {shape:?} has more elements than can be addressed")]
    ShapeOverflow {
        /// The offending shape.
        shape: Vec<usize>,
    },
    /// Element count of the data differs from the shape's.
    #[error("shape {shape:?} needs {expected} elements, the data has {found}")]
    DataLength {
        /// The shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements present.
        found: usize,
    },
    /// Byte count of serialized data differs from what dtype and shape need.
    #[error("a {dtype} tensor of shape {shape:?} needs {expected} bytes, {found} are present")]
    ByteLength {
        /// The dtype.
        dtype: DType,
        /// The shape.
        shape: Vec<usize>,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// A dtype conversion that is not defined (integer ↔ float).
    #[error("cannot convert a {from} tensor to {to}")]
    Conversion {
        /// Source dtype.
        from: DType,
        /// Target dtype.
        to: DType,
    },
}

/// A graph is inconsistent: a node's inputs or parameters do not fit its op,
/// or the graph's structure breaks an invariant. Every variant names the node
/// or value at fault.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GraphError {
    /// Two values, nodes or parameters share a name.
    #[error("two {what}s are named `{name}`")]
    DuplicateName {
        /// "value", "node" or "parameter".
        what: &'static str,
        /// The name.
        name: String,
    },
    /// An index points past the graph's values.
    #[error("{node}: refers to value #{index}, which does not exist")]
    DanglingValue {
        /// Node (or graph input/output list) holding the reference.
        node: String,
        /// The index.
        index: usize,
    },
    /// An index points past the graph's parameters.
    #[error("{node}: refers to parameter #{index}, which does not exist")]
    DanglingParam {
        /// Node holding the reference.
        node: String,
        /// The index.
        index: usize,
    },
    /// Nodes are not in topological order (or the graph has a cycle).
    #[error("{node}: uses `{value}` before any node defines it (cycle or nodes out of order)")]
    UsedBeforeDefined {
        /// The node.
        node: String,
        /// The value used.
        value: String,
    },
    /// A value is the output of two nodes (or of a node and the graph inputs).
    #[error("`{value}` is defined twice (again by {node})")]
    DefinedTwice {
        /// The value.
        value: String,
        /// The second definer.
        node: String,
    },
    /// A value is neither a graph input nor any node's output.
    #[error("`{value}` is never defined")]
    NeverDefined {
        /// The value.
        value: String,
    },
    /// A value's declared type differs from what shape inference gives.
    #[error("{node}: output declared as {declared}, but its inputs give {inferred}")]
    TypeMismatch {
        /// The node.
        node: String,
        /// The declared type.
        declared: String,
        /// The inferred type.
        inferred: String,
    },
    /// A parameter's bound data disagrees with its declared type.
    #[error("parameter `{param}`: declared {expected}, its data is {found}")]
    ParamData {
        /// The parameter.
        param: String,
        /// Declared dtype and shape.
        expected: String,
        /// The data's dtype and shape.
        found: String,
    },
    /// The wrong number of activation inputs.
    #[error("{node} ({op}): takes {expected} input(s), has {found}")]
    Arity {
        /// The node.
        node: String,
        /// The op.
        op: &'static str,
        /// How many the op takes.
        expected: usize,
        /// How many it has.
        found: usize,
    },
    /// The wrong number of parameters.
    #[error("{node} ({op}): takes {expected} parameter(s), has {found}")]
    ParamCount {
        /// The node.
        node: String,
        /// The op.
        op: &'static str,
        /// How many the op takes.
        expected: usize,
        /// How many it has.
        found: usize,
    },
    /// An input has the wrong rank.
    #[error("{node} ({op}): expects a rank-{expected} input, got {found}")]
    Rank {
        /// The node.
        node: String,
        /// The op.
        op: &'static str,
        /// The rank the op needs.
        expected: usize,
        /// The input's shape.
        found: String,
    },
    /// A dimension the op needs to know is symbolic.
    #[error("{node} ({op}): dimension {axis} of input {shape} must be fixed")]
    SymbolicDim {
        /// The node.
        node: String,
        /// The op.
        op: &'static str,
        /// The axis.
        axis: usize,
        /// The input's shape.
        shape: String,
    },
    /// Channel counts disagree between an input and the op.
    #[error("{node} ({op}): expects {expected} input channels, input {shape} has {found}")]
    Channels {
        /// The node.
        node: String,
        /// The op.
        op: &'static str,
        /// Channels the op expects.
        expected: usize,
        /// Channels present.
        found: usize,
        /// The input's shape.
        shape: String,
    },
    /// A parameter has the wrong shape for the op.
    #[error("{node}: parameter `{param}` must have shape {expected:?}, has {found:?}")]
    ParamShape {
        /// The node.
        node: String,
        /// The parameter.
        param: String,
        /// The shape the op needs.
        expected: Vec<usize>,
        /// The parameter's shape.
        found: Vec<usize>,
    },
    /// The op's window does not fit its input: the output would be empty.
    #[error("{node} ({op}): output would be empty: {detail}")]
    EmptyOutput {
        /// The node.
        node: String,
        /// The op.
        op: &'static str,
        /// Input size, window and padding involved.
        detail: String,
    },
    /// Concat inputs disagree outside the concatenation axis.
    #[error("{node} (Concat): inputs {shapes} differ outside axis {axis}")]
    ConcatMismatch {
        /// The node.
        node: String,
        /// Concatenation axis.
        axis: usize,
        /// The inputs' shapes.
        shapes: String,
    },
    /// An attribute is out of range.
    #[error("{node} ({op}): {detail}")]
    Attribute {
        /// The node.
        node: String,
        /// The op.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
}
