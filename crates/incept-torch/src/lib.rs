//! Reads PyTorch checkpoints — `torch.save` zip archives, legacy non-zip
//! streams and `torch.jit.save` TorchScript archives — into named
//! [`incept_ir::Tensor`]s, without Python and without executing anything the
//! file contains.
//!
//! The pipeline, one module per phase:
//!
//! 1. `container` tells the format from the magic bytes (and names
//!    safetensors or ONNX files given by mistake);
//! 2. `zip_container` checks the zip directory, or `legacy` splits the stream,
//!    both reading through a `source` (a slice, or a file read by position);
//! 3. `pickle` runs each pickle on a restricted machine whose globals come from
//!    an exact allowlist ([`ALLOWED_GLOBALS`]) and whose work is capped;
//! 4. `state_dict` (or `torchscript`) finds the tensors and their names;
//! 5. `storage` checks every view against its storage; then the storages are
//!    read one at a time and each view is copied out of its storage's bytes.
//!
//! Architecture invariants: nothing from the file is imported, called or
//! evaluated; nothing is allocated for a tensor before its size has been
//! checked against the bytes present; a file is never read whole — the zip
//! directory comes from its tail, the pickles are read on their own, and each
//! storage is read when its tensors are built and dropped right after, so the
//! peak is the tensors plus the largest storage; no input makes this crate
//! panic.

mod allowlist;
mod container;
mod error;
mod legacy;
mod pickle;
mod source;
mod state_dict;
mod storage;
mod torchscript;
mod value;
mod zip_container;

use std::path::Path;

use incept_ir::{ByteOrder, Tensor};

use crate::source::{FileSource, Source};

pub use allowlist::ALLOWED_GLOBALS;
pub use container::Container;
pub use error::{
    FormatError, LegacyError, PickleError, ReadError, TorchError, ViewError, ZipError,
};
pub use state_dict::{STATE_DICT_KEYS, STRIPPED_PREFIXES};

/// The weights read from a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The container the file used.
    pub container: Container,
    /// The tensors in file order, keys normalised (prefix stripped).
    pub tensors: Vec<(String, Tensor)>,
    /// The key of a training checkpoint the state dict was found under
    /// (`model_state_dict`, …); `None` when the file is the state dict itself
    /// or a TorchScript module.
    pub source_key: Option<String>,
    /// The prefix removed from every key (`module.`), if any.
    pub stripped_prefix: Option<String>,
    /// Things the user may want to know that did not stop the load.
    pub warnings: Vec<String>,
    /// The byte order the storages were written in (tensors are always native).
    pub byte_order: ByteOrder,
}

impl Checkpoint {
    /// The tensor of a given (normalised) name.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Reads the checkpoint at `path`.
///
/// A regular file is read by position, a piece at a time: the zip directory
/// from its tail, the pickles, then one storage at a time, each dropped once
/// its tensors are built. Peak memory is the output tensors plus the largest
/// storage plus the pickles, not the whole file on top of the tensors. Anything
/// else (a pipe, a device) is read whole, as [`load_bytes`] would.
pub fn load(path: &Path) -> Result<Checkpoint, TorchError> {
    let io = |error| TorchError::Io {
        path: path.to_owned(),
        error,
    };
    let name = path.display().to_string();
    match FileSource::open(path).map_err(io)? {
        Some(file) => read(&file).map_err(|error| in_file(&name, error)),
        None => load_bytes(&std::fs::read(path).map_err(io)?, &name),
    }
}

/// Reads a checkpoint held in memory; `name` is used in error messages.
///
/// The storages are sliced from `bytes`, never copied before decoding.
pub fn load_bytes(bytes: &[u8], name: &str) -> Result<Checkpoint, TorchError> {
    read(bytes).map_err(|error| in_file(name, error))
}

fn in_file(name: &str, error: FormatError) -> TorchError {
    TorchError::InFile {
        file: name.to_owned(),
        error: Box::new(error),
    }
}

/// Output may exceed the file's size only this much: shared storages and tied
/// weights repeat bytes, but not without bound.
fn output_limit(file_len: usize) -> u64 {
    (file_len as u64).saturating_mul(4).saturating_add(16 << 20)
}

fn read<S: Source + ?Sized>(src: &S) -> Result<Checkpoint, FormatError> {
    let len = src.len();
    let head = src
        .read_for("the first bytes", 0, len.min(container::SNIFF_LEN))
        .map_err(FormatError::Read)?;
    let sniffed = container::sniff(&head, len)?;
    drop(head);
    let (container, found, byte_order) = match sniffed {
        container::Sniffed::Zip => {
            let z = container::read_zip(src)?;
            (z.container, z.found, z.byte_order)
        }
        container::Sniffed::Legacy => (Container::Legacy, legacy::read(src)?, ByteOrder::Little),
    };
    let state_dict::Found {
        tensors,
        source_key,
        warnings,
    } = found;
    if tensors.is_empty() {
        return Err(FormatError::NoStateDict {
            found: "the file holds no tensors".into(),
        });
    }
    let m = state_dict::materialize(tensors, byte_order, output_limit(len), src)?;
    Ok(Checkpoint {
        container,
        tensors: m.tensors,
        source_key,
        stripped_prefix: m.stripped_prefix,
        warnings,
        byte_order,
    })
}
