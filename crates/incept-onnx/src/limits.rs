//! Phase 1 of import: size limits and protobuf decoding, before anything
//! else looks at the model.

use std::path::Path;

use prost::Message;

use crate::error::OnnxError;
use crate::proto::ModelProto;

/// The largest file a protobuf message may be: 2 GiB − 1 bytes.
pub const MAX_PROTO_BYTES: u64 = i32::MAX as u64;

/// Refuses a model file of `size` bytes before it is read: protobuf cannot
/// represent messages of 2 GiB or more, so such a file is not a valid model
/// (its weights belong in external data).
pub fn check_file_size(path: &Path, size: u64) -> Result<(), OnnxError> {
    if size > MAX_PROTO_BYTES {
        return Err(OnnxError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_PROTO_BYTES,
        });
    }
    Ok(())
}

/// Decodes a `ModelProto` and checks it has what every later phase needs.
/// prost caps message nesting at 100 levels, so deeply nested subgraphs fail
/// here as a decode error rather than overflowing the stack.
pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    check_file_size(path, bytes.len() as u64)?;
    let model = ModelProto::decode(bytes).map_err(|source| OnnxError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    let not_model = |reason: &str| OnnxError::NotAModel {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    // Arbitrary bytes often decode as a message of unknown fields: demand the
    // fields a model must have.
    if model.ir_version.unwrap_or(0) <= 0 {
        return Err(not_model("ir_version is missing"));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| not_model("it has no graph"))?;
    if graph.output.is_empty() {
        return Err(not_model("the graph has no outputs"));
    }
    Ok(model)
}
