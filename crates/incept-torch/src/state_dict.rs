//! Finding the state dict in what a checkpoint pickled, normalising its keys,
//! and copying its tensors out of their storages.
//!
//! A checkpoint is either the state dict itself or a dict that holds it under
//! a conventional key ([`STATE_DICT_KEYS`]) beside entries such as `epoch` or
//! `optimizer`, which were read by the same safe machine and are ignored.
//! Every tensor is checked (dtype, view bounds, total size) before the first
//! one is copied; then the storages are read one at a time, in file order, and
//! each one's bytes are dropped as soon as its tensors are built, so the peak
//! is the tensors plus the largest storage. Storages no tensor of the state
//! dict uses (optimizer state, ignored entries) are never read.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::rc::Rc;

use incept_ir::{ByteOrder, Tensor};

use crate::error::{FormatError, ReadError, ViewError, ZipError};
use crate::pickle::Parsed;
use crate::source::Source;
use crate::storage::{self, StorageRef, TensorSpec};
use crate::value::{Dict, Heap, Obj, Value};

/// Keys under which training checkpoints keep the model's weights, in the
/// order they are tried.
pub const STATE_DICT_KEYS: &[&str] = &[
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "ema",
    "model_ema",
    "state_dict_ema",
];

/// Prefixes stripped when every key carries them (DataParallel, Lightning-style wrappers).
pub const STRIPPED_PREFIXES: &[&str] = &["module.", "model."];

/// Where a storage's bytes lie in the file; the extent was checked against the
/// file's length and the storage's declared size, but not yet read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Extent {
    /// The zip entry or legacy stream location, for messages.
    pub what: String,
    /// The bytes within the file.
    pub range: Range<usize>,
    /// The zip entry's CRC-32, checked when the bytes are read.
    pub crc: Option<u32>,
}

/// A tensor that is its whole storage, read from the source straight into
/// its own buffer (no intermediate copy); `None` when the fast path does not
/// apply (a view, a shared storage, big-endian data or host).
fn read_whole<S: Source + ?Sized>(
    t: &NamedSpec,
    name: &str,
    order: ByteOrder,
    src: &S,
) -> Result<Option<Tensor>, FormatError> {
    let view_error = |error| FormatError::View {
        tensor: name.to_owned(),
        error,
    };
    let Some(dtype) = t.storage.ty.dtype() else {
        return Ok(None);
    };
    let Some(shape) = storage::whole_storage_shape(&t.spec, &t.storage).map_err(view_error)? else {
        return Ok(None);
    };
    if order != ByteOrder::Little {
        return Ok(None);
    }
    let mut tensor = Tensor::zeros(dtype, shape).map_err(|e| view_error(ViewError::Tensor(e)))?;
    let Some(buf) = tensor.le_bytes_mut() else {
        return Ok(None);
    };
    let extent = &t.extent;
    if buf.len() != extent.range.len() {
        return Ok(None);
    }
    src.read_into(extent.range.start, buf).map_err(|error| {
        FormatError::Read(ReadError {
            what: extent.what.clone(),
            offset: extent.range.start as u64,
            end: extent.range.end as u64,
            kind: error.kind(),
            message: error.to_string(),
        })
    })?;
    if let Some(expected) = extent.crc {
        let found = crc32fast::hash(buf);
        if found != expected {
            return Err(FormatError::Zip(ZipError::Crc {
                entry: extent.what.clone(),
                expected,
                found,
            }));
        }
    }
    Ok(Some(tensor))
}

impl Extent {
    /// Reads the extent's bytes and checks their CRC-32.
    fn read<'s, S: Source + ?Sized>(&self, src: &'s S) -> Result<Cow<'s, [u8]>, FormatError> {
        let data = src
            .read_for(&self.what, self.range.start, self.range.len())
            .map_err(FormatError::Read)?;
        if let Some(expected) = self.crc {
            let found = crc32fast::hash(&data);
            if found != expected {
                return Err(FormatError::Zip(ZipError::Crc {
                    entry: self.what.clone(),
                    expected,
                    found,
                }));
            }
        }
        Ok(data)
    }
}

/// Where each storage a pickle names lies, already checked against its size.
pub(crate) type Bound = HashMap<Rc<str>, Rc<Extent>>;

/// A tensor found in the checkpoint, not yet copied out.
#[derive(Debug)]
pub(crate) struct NamedSpec {
    pub name: String,
    pub spec: TensorSpec,
    pub storage: StorageRef,
    pub extent: Rc<Extent>,
}

/// The tensors of a checkpoint and where they were found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub tensors: Vec<NamedSpec>,
    pub source_key: Option<String>,
    pub warnings: Vec<String>,
}

/// The tensor a value refers to, with where its storage's bytes are.
pub(crate) fn tensor_of(
    heap: &Heap,
    v: &Value,
    name: &str,
    bound: &Bound,
) -> Result<Option<NamedSpec>, FormatError> {
    let Some(Obj::Tensor(spec)) = heap.deref(v) else {
        return Ok(None);
    };
    let Some(Obj::Storage(storage)) = heap.get(spec.storage) else {
        return Ok(None);
    };
    let extent = bound
        .get(&storage.key)
        .cloned()
        .ok_or_else(|| FormatError::StorageMissing {
            key: storage.key.to_string(),
            entry: format!("data/{}", storage.key),
        })?;
    Ok(Some(NamedSpec {
        name: name.to_owned(),
        spec: spec.clone(),
        storage: storage.clone(),
        extent,
    }))
}

fn is_state_dict(heap: &Heap, d: &Dict) -> bool {
    !d.entries.is_empty()
        && d.entries.iter().all(|(k, v)| {
            matches!(k, Value::Str(_)) && matches!(heap.deref(v), Some(Obj::Tensor(_)))
        })
}

fn dict_of<'h>(heap: &'h Heap, v: &Value) -> Option<&'h Dict> {
    match heap.deref(v) {
        Some(Obj::Dict(d)) => Some(d),
        _ => None,
    }
}

/// Finds the state dict of a `torch.save` pickle: the root, or the first
/// [`STATE_DICT_KEYS`] entry that is one.
pub(crate) fn find(parsed: &Parsed, bound: &Bound) -> Result<Found, FormatError> {
    let heap = &parsed.heap;
    let Some(root) = dict_of(heap, &parsed.root) else {
        return Err(FormatError::NoStateDict {
            found: format!("the file holds {}, not a dict", parsed.root.describe(heap)),
        });
    };
    let (dict, source_key) = if is_state_dict(heap, root) {
        (root, None)
    } else {
        let candidates: Vec<(&str, &Dict)> = STATE_DICT_KEYS
            .iter()
            .filter_map(|k| {
                let d = dict_of(heap, root.get_str(k)?)?;
                is_state_dict(heap, d).then_some((*k, d))
            })
            .collect();
        let Some(&(key, dict)) = candidates.first() else {
            return Err(FormatError::NoStateDict {
                found: describe_top_level(heap, root),
            });
        };
        (dict, Some(key.to_owned()))
    };
    let mut found = Found {
        source_key,
        ..Found::default()
    };
    if let Some(key) = &found.source_key {
        for k in STATE_DICT_KEYS {
            if k != key
                && root
                    .get_str(k)
                    .and_then(|v| dict_of(heap, v))
                    .is_some_and(|d| is_state_dict(heap, d))
            {
                found.warnings.push(format!(
                    "read the weights under `{key}`; `{k}` also holds a state dict and was ignored"
                ));
            }
        }
    }
    for (k, v) in &dict.entries {
        let name = k.as_str().unwrap_or_default();
        if let Some(t) = tensor_of(heap, v, name, bound)? {
            found.tensors.push(t);
        }
    }
    Ok(found)
}

fn describe_top_level(heap: &Heap, root: &Dict) -> String {
    if root.entries.is_empty() {
        return "the file holds an empty dict".into();
    }
    let shown: Vec<String> = root
        .entries
        .iter()
        .take(12)
        .map(|(k, v)| {
            let kind = match heap.deref(v) {
                Some(o) => o.kind().to_owned(),
                None => v.describe(heap),
            };
            format!("{} ({kind})", k.describe(heap))
        })
        .collect();
    let more = if root.entries.len() > 12 { ", …" } else { "" };
    format!(
        "the top-level dict is not name → tensor and has none of the keys {}; it holds {}{more}",
        STATE_DICT_KEYS.join(", "),
        shown.join(", ")
    )
}

/// Strips [`STRIPPED_PREFIXES`] while every name carries one; returns what was stripped.
pub(crate) fn strip_prefixes(names: &mut [String]) -> Option<String> {
    let mut stripped = String::new();
    'again: for _ in 0..4 {
        for p in STRIPPED_PREFIXES {
            if !names.is_empty() && names.iter().all(|n| n.len() > p.len() && n.starts_with(p)) {
                for n in names.iter_mut() {
                    n.replace_range(..p.len(), "");
                }
                stripped.push_str(p);
                continue 'again;
            }
        }
        break;
    }
    (!stripped.is_empty()).then_some(stripped)
}

/// The tensors copied out, with the prefix stripped from their names.
pub(crate) struct Materialized {
    pub tensors: Vec<(String, Tensor)>,
    pub stripped_prefix: Option<String>,
}

/// Checks every tensor, then reads the storages one at a time, in file order,
/// and copies each tensor out of its storage's bytes.
///
/// The output may not exceed `limit` bytes in total: views repeating one
/// storage could otherwise turn a small file into a huge allocation.
pub(crate) fn materialize<S: Source + ?Sized>(
    found: Vec<NamedSpec>,
    order: ByteOrder,
    limit: u64,
    src: &S,
) -> Result<Materialized, FormatError> {
    let mut names: Vec<String> = found.iter().map(|t| t.name.clone()).collect();
    let stripped_prefix = strip_prefixes(&mut names);
    let mut seen = HashSet::new();
    for n in &names {
        if !seen.insert(n.as_str()) {
            return Err(FormatError::DuplicateTensor { name: n.clone() });
        }
    }
    let mut total = 0u64;
    for (t, name) in found.iter().zip(&names) {
        if t.storage.ty.dtype().is_none() {
            return Err(FormatError::UnsupportedDType {
                tensor: name.clone(),
                storage_type: t.storage.ty.class_name().to_owned(),
            });
        }
        let n = storage::view_nbytes(&t.spec, &t.storage).map_err(|error| FormatError::View {
            tensor: name.clone(),
            error,
        })?;
        total = total.saturating_add(n);
        if total > limit {
            return Err(FormatError::OutputTooLarge { limit });
        }
    }
    // The tensors of each storage, storages in file order (zip entries never
    // overlap and legacy storages follow each other, so the range is a key).
    let mut by_storage: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, t) in found.iter().enumerate() {
        by_storage
            .entry((t.extent.range.start, t.extent.range.end))
            .or_default()
            .push(i);
    }
    let mut built: Vec<Option<Tensor>> = Vec::new();
    built.resize_with(found.len(), || None);
    for users in by_storage.values() {
        let Some(first) = users.first().and_then(|&i| found.get(i)) else {
            continue;
        };
        if let [only] = users.as_slice()
            && let Some(tensor) = read_whole(&found[*only], &names[*only], order, src)?
        {
            built[*only] = Some(tensor);
            continue;
        }
        let bytes = first.extent.read(src)?;
        for &i in users {
            let (Some(t), Some(name), Some(slot)) = (found.get(i), names.get(i), built.get_mut(i))
            else {
                continue;
            };
            let Some(dtype) = t.storage.ty.dtype() else {
                continue;
            };
            let tensor = storage::materialize(&t.spec, &t.storage, dtype, &bytes, order).map_err(
                |error| FormatError::View {
                    tensor: name.clone(),
                    error,
                },
            )?;
            *slot = Some(tensor);
        }
        // `bytes` is dropped here, before the next storage is read.
    }
    let tensors = names
        .into_iter()
        .zip(built)
        .filter_map(|(name, t)| Some((name, t?)))
        .collect();
    Ok(Materialized {
        tensors,
        stripped_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn strips_only_when_every_key_has_the_prefix() {
        let mut n = names(&["module.a.weight", "module.b"]);
        assert_eq!(strip_prefixes(&mut n).as_deref(), Some("module."));
        assert_eq!(n, names(&["a.weight", "b"]));

        let mut n = names(&["module.a", "b"]);
        assert_eq!(strip_prefixes(&mut n), None);
        assert_eq!(n, names(&["module.a", "b"]));

        let mut n = names(&["model.module.x", "model.module.y"]);
        assert_eq!(strip_prefixes(&mut n).as_deref(), Some("model.module."));
        assert_eq!(n, names(&["x", "y"]));

        // A key that is the prefix alone would become empty: keep everything.
        let mut n = names(&["module.", "module.a"]);
        assert_eq!(strip_prefixes(&mut n), None);
    }
}
