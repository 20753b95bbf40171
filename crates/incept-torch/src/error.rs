//! The errors of the checkpoint reader: one enum per layer (zip, pickle, tensor
//! view, checkpoint format) and [`TorchError`], which names the file.
//!
//! Every message says which file, entry, byte offset, global or tensor is at
//! fault and what was expected, so that a user can act on it without a debugger.

use std::path::PathBuf;

use incept_ir::TensorError;
use thiserror::Error;

/// An error from [`crate::load`] or [`crate::load_bytes`]: always names the file.
#[derive(Debug, Error)]
pub enum TorchError {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {error}")]
    Io {
        /// The path given.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The file was read but is not a checkpoint this reader accepts.
    #[error("{file}: {error}")]
    InFile {
        /// The file's name as given by the caller.
        file: String,
        /// What is wrong with it (boxed: results stay small on the happy path).
        error: Box<FormatError>,
    },
}

impl TorchError {
    /// The format error, when the file could be read.
    pub fn format_error(&self) -> Option<&FormatError> {
        match self {
            TorchError::Io { .. } => None,
            TorchError::InFile { error, .. } => Some(error),
        }
    }

    /// The pickle error, when the failure happened inside a pickle.
    pub fn pickle_error(&self) -> Option<&PickleError> {
        match self.format_error()? {
            FormatError::Pickle { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The zip error, when the zip container itself is malformed.
    pub fn zip_error(&self) -> Option<&ZipError> {
        match self.format_error()? {
            FormatError::Zip(error) => Some(error),
            _ => None,
        }
    }
}

/// What is wrong with a file's content, independent of its name.
#[derive(Debug, Error)]
pub enum FormatError {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Another known model format was given where a PyTorch checkpoint was expected.
    #[error("this looks like {format}, not a PyTorch checkpoint ({hint})")]
    LooksLike {
        /// The format recognised, e.g. "a safetensors file".
        format: &'static str,
        /// What the user can do about it.
        hint: &'static str,
    },
    /// The first bytes match no checkpoint container.
    #[error(
        "not a PyTorch checkpoint: starts with {magic}; expected a zip archive (PK\\x03\\x04) or a legacy pickle stream (\\x80\\x02\\x8a\\x0a...)"
    )]
    UnknownFormat {
        /// The first bytes, in hex.
        magic: String,
    },
    /// The zip container is malformed or uses a feature torch never writes.
    #[error("zip container: {0}")]
    Zip(ZipError),
    /// An entry every checkpoint of this kind has is absent.
    #[error("the archive has no entry `{entry}`")]
    MissingEntry {
        /// The entry looked for.
        entry: String,
    },
    /// The zip archive holds entries from more than one top folder.
    #[error("the archive has entries under several top folders (`{first}` and `{second}`)")]
    SeveralPrefixes {
        /// One top folder.
        first: String,
        /// Another one.
        second: String,
    },
    /// A pickle inside the file is malformed or refused.
    #[error("{entry}: {error}")]
    Pickle {
        /// The pickle: a zip entry name or a part of a legacy stream.
        entry: String,
        /// What went wrong.
        error: PickleError,
    },
    /// The `byteorder` entry holds something other than `little` or `big`.
    #[error("entry `{entry}` says {found:?}; expected \"little\" or \"big\"")]
    BadByteOrder {
        /// The entry name.
        entry: String,
        /// Its content (at most 32 bytes, lossily decoded).
        found: String,
    },
    /// A storage referenced by the pickle has no data entry.
    #[error("storage `{key}` has no entry `{entry}`")]
    StorageMissing {
        /// The storage key.
        key: String,
        /// The entry expected to hold it.
        entry: String,
    },
    /// A storage's bytes disagree with the element count its persistent id declares.
    #[error(
        "storage `{key}` ({location}) is declared as {numel} {dtype} elements = {expected} bytes, but holds {found} bytes"
    )]
    StorageSize {
        /// The storage key.
        key: String,
        /// Where its bytes are: a zip entry or a legacy stream offset.
        location: String,
        /// The storage's element type name.
        dtype: &'static str,
        /// Elements declared.
        numel: u64,
        /// Bytes that makes (saturating).
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The same storage key is declared twice with different types or sizes.
    #[error("storage `{key}` is declared twice with different types or sizes")]
    StorageConflict {
        /// The storage key.
        key: String,
    },
    /// A legacy (non-zip) stream is malformed.
    #[error("legacy stream: {0}")]
    Legacy(LegacyError),
    /// A tensor's view does not fit its storage.
    #[error("tensor `{tensor}`: {error}")]
    View {
        /// The tensor's key.
        tensor: String,
        /// The rule broken.
        error: ViewError,
    },
    /// A tensor of the state dict has an element type incept does not handle.
    #[error(
        "tensor `{tensor}` is stored as {storage_type}, which incept does not read (supported: float32, float16, bfloat16, float64, int64)"
    )]
    UnsupportedDType {
        /// The tensor's key.
        tensor: String,
        /// The storage class, e.g. `torch.IntStorage`.
        storage_type: String,
    },
    /// No state dict was found in the checkpoint.
    #[error("no state dict found: {found}")]
    NoStateDict {
        /// What the checkpoint holds instead.
        found: String,
    },
    /// Two tensors end up with the same name.
    #[error("tensor name `{name}` appears twice")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// The tensors together would take far more memory than the file's size explains.
    #[error(
        "the tensors would take more than {limit} bytes, far more than the file's size explains (views repeating one storage?)"
    )]
    OutputTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Reading the file failed part-way (it shrank, or the disk failed).
    #[error("{0}")]
    Read(ReadError),
    /// A TorchScript module tree is nested too deeply or too large to walk.
    #[error("TorchScript module tree at `{path}`: {reason}")]
    TorchScriptTree {
        /// Attribute path where the walk stopped.
        path: String,
        /// Why.
        reason: &'static str,
    },
}

/// Reading some bytes of the file failed, after their extent had been checked
/// against the file's length.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cannot read {what} (bytes {offset}..{end}): {message}")]
pub struct ReadError {
    /// What was being read: a zip record or entry, a legacy storage.
    pub what: String,
    /// The first byte.
    pub offset: u64,
    /// One past the last byte.
    pub end: u64,
    /// The operating system's error kind.
    pub kind: std::io::ErrorKind,
    /// The operating system's message.
    pub message: String,
}

/// The zip container is malformed or uses a feature torch never writes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ZipError {
    /// No end-of-central-directory record: not a zip, or truncated.
    #[error("no end-of-central-directory record (the archive is truncated or not a zip)")]
    NoEndRecord,
    /// A record runs past the end of the file.
    #[error("the {what} runs past the end of the file (truncated archive?)")]
    Truncated {
        /// Which record.
        what: String,
    },
    /// The archive spans several disks.
    #[error("multi-disk archives are not supported")]
    MultiDisk,
    /// The entry count is larger than the central directory can hold.
    #[error("the archive declares {count} entries, more than its central directory can hold")]
    TooManyEntries {
        /// The declared count.
        count: u64,
    },
    /// A central directory record is malformed.
    #[error("central directory record {index}: {reason}")]
    BadRecord {
        /// Index of the record.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// Two entries have the same name.
    #[error("entry `{name}` appears twice")]
    DuplicateEntry {
        /// The name.
        name: String,
    },
    /// Two entries share bytes.
    #[error("entries `{first}` and `{second}` overlap")]
    Overlap {
        /// One entry.
        first: String,
        /// The other.
        second: String,
    },
    /// An entry's data lies outside the file.
    #[error(
        "entry `{entry}` ends at byte {end}, past its bounds (file or central directory at {limit})"
    )]
    OutOfBounds {
        /// The entry.
        entry: String,
        /// Where its data would end.
        end: u64,
        /// Where it must end at the latest.
        limit: u64,
    },
    /// An entry is compressed; torch always stores entries uncompressed.
    #[error("entry `{entry}` is compressed (method {method}); torch stores entries uncompressed")]
    Compressed {
        /// The entry.
        entry: String,
        /// The zip compression method number.
        method: u16,
    },
    /// An entry is encrypted.
    #[error("entry `{entry}` is encrypted")]
    Encrypted {
        /// The entry.
        entry: String,
    },
    /// The local header disagrees with the central directory.
    #[error("entry `{entry}`: local header disagrees with the central directory on {field}")]
    LocalHeaderMismatch {
        /// The entry.
        entry: String,
        /// The field that differs.
        field: &'static str,
    },
    /// Reading part of the archive failed.
    #[error("{0}")]
    Read(ReadError),
    /// The entry's CRC-32 does not match its data.
    #[error("entry `{entry}`: CRC-32 is {found:08x}, the central directory says {expected:08x}")]
    Crc {
        /// The entry.
        entry: String,
        /// CRC declared.
        expected: u32,
        /// CRC of the data.
        found: u32,
    },
}

/// A pickle is malformed, uses something this reader refuses, or exceeds a limit.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PickleError {
    /// An opcode's argument runs past the end of the pickle.
    #[error("byte {offset}: {opcode} needs more bytes than the pickle has (truncated?)")]
    Truncated {
        /// Offset of the opcode.
        offset: usize,
        /// Its name.
        opcode: &'static str,
    },
    /// A byte that is no pickle opcode.
    #[error("byte {offset}: unknown opcode 0x{byte:02x}")]
    UnknownOpcode {
        /// Offset.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A real pickle opcode that checkpoints never need and this reader refuses.
    #[error("byte {offset}: opcode {opcode} is not accepted in a checkpoint")]
    RefusedOpcode {
        /// Offset.
        offset: usize,
        /// Its name.
        opcode: &'static str,
    },
    /// A protocol newer than 5.
    #[error("byte {offset}: pickle protocol {version} is not supported (2 to 5 are)")]
    Protocol {
        /// Offset.
        offset: usize,
        /// The version.
        version: u8,
    },
    /// An opcode needs more values than the stack has.
    #[error("byte {offset}: {opcode} on a stack with too few values")]
    StackUnderflow {
        /// Offset.
        offset: usize,
        /// The opcode.
        opcode: &'static str,
    },
    /// An opcode needs a MARK and there is none.
    #[error("byte {offset}: {opcode} without a preceding MARK")]
    NoMark {
        /// Offset.
        offset: usize,
        /// The opcode.
        opcode: &'static str,
    },
    /// A memo key read before it was set.
    #[error("byte {offset}: memo key {key} was never set")]
    MemoMissing {
        /// Offset.
        offset: usize,
        /// The key.
        key: u64,
    },
    /// The pickle ends without STOP.
    #[error("the pickle ends at byte {offset} without a STOP opcode (truncated?)")]
    MissingStop {
        /// Length read.
        offset: usize,
    },
    /// Bytes after STOP.
    #[error("byte {offset}: {count} bytes after the STOP opcode")]
    TrailingBytes {
        /// Offset of the first extra byte.
        offset: usize,
        /// How many.
        count: usize,
    },
    /// STOP left more or fewer than one value on the stack.
    #[error("byte {offset}: STOP with {count} values on the stack (expected exactly 1)")]
    BadStop {
        /// Offset.
        offset: usize,
        /// Stack length.
        count: usize,
    },
    /// A LONG1/LONG4 integer wider than 64 bits.
    #[error("byte {offset}: integer of {width} bytes (at most 8 are accepted)")]
    LongTooWide {
        /// Offset.
        offset: usize,
        /// Its width in bytes.
        width: u64,
    },
    /// A global outside the allowlist.
    #[error(
        "byte {offset}: global `{module}.{name}` is not allowed (only tensor rebuild functions, storage types, OrderedDict, torch.Size and torch.device are); nothing was imported or run"
    )]
    RefusedGlobal {
        /// Offset.
        offset: usize,
        /// Module.
        module: String,
        /// Name.
        name: String,
    },
    /// A pickled `nn.Module` rather than a state dict.
    #[error(
        "byte {offset}: the file pickles a whole module (`{module}.{name}`), which cannot be read without running its code; save `model.state_dict()` instead"
    )]
    WholeModule {
        /// Offset.
        offset: usize,
        /// Module.
        module: String,
        /// Class.
        name: String,
    },
    /// An allowlisted callable called with the wrong number or types of arguments.
    #[error("byte {offset}: `{callable}` misused: expected {expected}, got {found}")]
    Misuse {
        /// Offset.
        offset: usize,
        /// The callable.
        callable: String,
        /// What it accepts.
        expected: String,
        /// What it was given.
        found: String,
    },
    /// An opcode applied to a value of the wrong kind (BUILD on a tensor, SETITEM on a list…).
    #[error("byte {offset}: {opcode} on {found}, expected {expected}")]
    WrongType {
        /// Offset.
        offset: usize,
        /// The opcode.
        opcode: &'static str,
        /// What it needs.
        expected: &'static str,
        /// What it got.
        found: String,
    },
    /// A persistent id that is not `('storage', StorageType, key, location, numel)`.
    #[error("byte {offset}: persistent id {reason}")]
    BadPersistentId {
        /// Offset.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A storage key with characters other than `[0-9A-Za-z_]`.
    #[error("byte {offset}: storage key {key:?} is not made of [0-9A-Za-z_] (path traversal?)")]
    BadStorageKey {
        /// Offset.
        offset: usize,
        /// The key.
        key: String,
    },
    /// A dict key set twice.
    #[error("byte {offset}: key {key} set twice in one dict")]
    DuplicateKey {
        /// Offset.
        offset: usize,
        /// The key, as Python would print it.
        key: String,
    },
    /// Bytes that should be UTF-8 text are not.
    #[error("byte {offset}: {opcode} text is not valid UTF-8")]
    BadUtf8 {
        /// Offset.
        offset: usize,
        /// The opcode.
        opcode: &'static str,
    },
    /// The pickle would build more values than any checkpoint needs.
    #[error("byte {offset}: the pickle would build more than {limit} values (memo amplification?)")]
    Budget {
        /// Offset.
        offset: usize,
        /// The cap.
        limit: u64,
    },
    /// Too many nested MARKs or too many values on the stack.
    #[error("byte {offset}: more than {limit} {what}")]
    Depth {
        /// Offset.
        offset: usize,
        /// What overflowed: "nested MARKs", "values on the stack".
        what: &'static str,
        /// The cap.
        limit: usize,
    },
}

/// A tensor's size, stride and offset do not describe a view inside its storage.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ViewError {
    /// Size and stride lists of different lengths.
    #[error("size {size:?} and stride {stride:?} have different lengths")]
    Rank {
        /// Sizes.
        size: Vec<i64>,
        /// Strides.
        stride: Vec<i64>,
    },
    /// A negative size, stride or offset.
    #[error("negative {what} in size {size:?}, stride {stride:?}, offset {offset}")]
    Negative {
        /// "size", "stride" or "offset".
        what: &'static str,
        /// Sizes.
        size: Vec<i64>,
        /// Strides.
        stride: Vec<i64>,
        /// Storage offset.
        offset: i64,
    },
    /// The element count or the last element's index overflows.
    #[error("size {size:?} with stride {stride:?} overflows")]
    Overflow {
        /// Sizes.
        size: Vec<i64>,
        /// Strides.
        stride: Vec<i64>,
    },
    /// The view reaches past the end of its storage.
    #[error(
        "size {size:?}, stride {stride:?} and offset {offset} reach element {last}, but storage `{key}` holds {numel} elements"
    )]
    OutOfBounds {
        /// Sizes.
        size: Vec<i64>,
        /// Strides.
        stride: Vec<i64>,
        /// Storage offset.
        offset: i64,
        /// Index of the last element reached.
        last: u64,
        /// The storage key.
        key: String,
        /// Elements in the storage.
        numel: u64,
    },
    /// More elements than the storage holds (a broadcast view): refused so output memory stays near the file size.
    #[error(
        "size {size:?} has {view_numel} elements, more than the {numel} of storage `{key}` (broadcast views are refused)"
    )]
    Expanded {
        /// Sizes.
        size: Vec<i64>,
        /// Elements of the view.
        view_numel: u64,
        /// The storage key.
        key: String,
        /// Elements in the storage.
        numel: u64,
    },
    /// The IR refused the decoded data.
    #[error("{0}")]
    Tensor(TensorError),
}

/// A legacy (non-zip, `_use_new_zipfile_serialization=False`) stream is malformed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LegacyError {
    /// The protocol version pickle is not 1001.
    #[error("protocol version {found} (expected 1001)")]
    Protocol {
        /// The value found, as text.
        found: String,
    },
    /// The sys_info pickle says the writer was big-endian.
    #[error(
        "written on a big-endian machine (sys_info little_endian=False), which incept refuses rather than guess"
    )]
    BigEndian,
    /// A pickle of the stream has the wrong shape.
    #[error("the {which} pickle is {found}, expected {expected}")]
    Shape {
        /// Which pickle: "sys_info", "storage keys".
        which: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// A storage listed in the keys pickle was never referenced by the data pickle.
    #[error("storage `{key}` is listed but no tensor uses it, so its element size is unknown")]
    UnknownStorage {
        /// The key.
        key: String,
    },
    /// A storage's element-count header disagrees with its persistent id.
    #[error("storage `{key}` at byte {offset} says {found} elements, its persistent id {declared}")]
    Count {
        /// The key.
        key: String,
        /// Where the header is.
        offset: usize,
        /// Count in the header.
        found: u64,
        /// Count in the persistent id.
        declared: u64,
    },
    /// A storage runs past the end of the file.
    #[error("storage `{key}` at byte {offset} needs {needed} bytes, {available} are left")]
    Truncated {
        /// The key.
        key: String,
        /// Where its data starts.
        offset: usize,
        /// Bytes needed.
        needed: u64,
        /// Bytes left.
        available: u64,
    },
    /// A storage referenced by a tensor is not in the keys list.
    #[error("storage `{key}` is used by a tensor but not listed in the storage keys")]
    Unlisted {
        /// The key.
        key: String,
    },
    /// The stream is an old tar archive (torch < 0.4).
    #[error(
        "this is a tar-format checkpoint from torch < 0.4, which incept does not read; re-save it with a current torch"
    )]
    Tar,
    /// A persistent id carries legacy view metadata.
    #[error("storage `{key}` is a legacy storage view, which incept does not read")]
    StorageView {
        /// The key.
        key: String,
    },
}
