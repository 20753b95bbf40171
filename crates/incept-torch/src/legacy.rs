//! The legacy stream `torch.save(..., _use_new_zipfile_serialization=False)`
//! writes: five pickles back to back (magic number, protocol version 1001,
//! sys_info, the data, the storage keys) followed, for each key in order, by an
//! 8-byte little-endian element count and the storage's raw bytes.
//!
//! Every pickle goes through the same allowlist as the zip format; each
//! storage's count is checked against its persistent id and against the bytes
//! left before it is located. torch writes the storages little-endian whatever
//! the host; a stream whose sys_info says big-endian is refused rather than
//! guessed at.
//!
//! Only the pickles are read here, from a window at the start of the stream
//! that grows until they parse (or the window is the whole file, so errors are
//! those of the whole file); each storage's bytes are read later, by offset,
//! when its tensors are built.

use std::collections::HashMap;
use std::rc::Rc;

use crate::allowlist::Mode;
use crate::error::{FormatError, LegacyError, PickleError};
use crate::pickle::{self, Parsed};
use crate::source::Source;
use crate::state_dict::{self, Bound, Extent, Found};
use crate::storage::StorageRef;
use crate::value::{Obj, Value};

/// The first pickle of every legacy stream: `0x1950a86a20f9469cfc6c` as a
/// protocol-2 LONG1. Compared as bytes, because it is wider than the 64-bit
/// integers the pickle reader accepts.
pub(crate) const LEGACY_MAGIC: &[u8] =
    b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e";

/// The first window of the stream the pickles are looked for in.
const FIRST_WINDOW: usize = 1 << 20;

fn run(bytes: &[u8], at: usize, which: &str) -> Result<Parsed, FormatError> {
    pickle::parse_at(bytes, at, Mode::Checkpoint).map_err(|error: PickleError| {
        FormatError::Pickle {
            entry: format!("legacy {which} pickle"),
            error,
        }
    })
}

/// The data pickle, the storage keys, and where the storages start.
struct Pickles {
    data: Parsed,
    keys: Vec<Rc<str>>,
    end: usize,
}

/// Reads a legacy stream up to the named tensor views; the storages are
/// located and their sizes checked, but not read.
pub(crate) fn read<S: Source + ?Sized>(src: &S) -> Result<Found, FormatError> {
    let len = src.len();
    let mut window = len.min(FIRST_WINDOW);
    let Pickles { data, keys, end } = loop {
        let head = src
            .read_for("the legacy pickles", 0, window)
            .map_err(FormatError::Read)?;
        match pickles(&head) {
            Ok(p) => break p,
            // A pickle that parses within the window parses the same in the
            // whole file; a pickle error may be the window's edge, so it is
            // confirmed on a larger window, up to the whole file.
            Err(FormatError::Pickle { .. }) if window < len => {
                window = len.min(window.saturating_mul(8));
            }
            Err(e) => return Err(e),
        }
    };
    storages(src, &data, keys, end)
}

/// Parses the four pickles after the magic number.
fn pickles(bytes: &[u8]) -> Result<Pickles, FormatError> {
    let legacy = FormatError::Legacy;
    let protocol = run(bytes, LEGACY_MAGIC.len(), "protocol version")?;
    if protocol.root != Value::Int(1001) {
        return Err(legacy(LegacyError::Protocol {
            found: protocol.root.describe(&protocol.heap),
        }));
    }
    let sys_info = run(bytes, protocol.end, "sys_info")?;
    match sys_info.heap.deref(&sys_info.root) {
        Some(Obj::Dict(d)) => {
            if d.get_str("little_endian") == Some(&Value::Bool(false)) {
                return Err(legacy(LegacyError::BigEndian));
            }
        }
        _ => {
            return Err(legacy(LegacyError::Shape {
                which: "sys_info",
                expected: "a dict",
                found: sys_info.root.describe(&sys_info.heap),
            }));
        }
    }
    let data = run(bytes, sys_info.end, "data")?;
    let keys_pickle = run(bytes, data.end, "storage keys")?;
    let keys: Vec<Rc<str>> = match keys_pickle.heap.deref(&keys_pickle.root) {
        Some(Obj::List(items)) if items.iter().all(|v| v.as_str().is_some()) => items
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => {
            return Err(legacy(LegacyError::Shape {
                which: "storage keys",
                expected: "a list of strings",
                found: keys_pickle.root.describe(&keys_pickle.heap),
            }));
        }
    };

    Ok(Pickles {
        data,
        keys,
        end: keys_pickle.end,
    })
}

/// Locates each storage after the pickles, checking its count header against
/// its persistent id and its bytes against the bytes left.
fn storages<S: Source + ?Sized>(
    src: &S,
    data: &Parsed,
    keys: Vec<Rc<str>>,
    mut pos: usize,
) -> Result<Found, FormatError> {
    let legacy = FormatError::Legacy;
    let len = src.len();
    let declared: HashMap<&str, &StorageRef> = data.storages().map(|s| (&*s.key, s)).collect();
    let mut bound = Bound::default();
    for key in keys {
        let Some(s) = declared.get(&*key) else {
            return Err(legacy(LegacyError::UnknownStorage {
                key: key.to_string(),
            }));
        };
        let left = len.saturating_sub(pos) as u64;
        if left < 8 {
            return Err(legacy(LegacyError::Truncated {
                key: key.to_string(),
                offset: pos,
                needed: 8,
                available: left,
            }));
        }
        let header = src
            .read_for(&format!("the count of legacy storage `{key}`"), pos, 8)
            .map_err(FormatError::Read)?;
        let count = <[u8; 8]>::try_from(&*header)
            .map(u64::from_le_bytes)
            .map_err(|_| {
                legacy(LegacyError::Truncated {
                    key: key.to_string(),
                    offset: pos,
                    needed: 8,
                    available: left,
                })
            })?;
        if count != s.numel {
            return Err(legacy(LegacyError::Count {
                key: key.to_string(),
                offset: pos,
                found: count,
                declared: s.numel,
            }));
        }
        pos += 8;
        let needed = s.nbytes().unwrap_or(u64::MAX);
        let available = len.saturating_sub(pos) as u64;
        if needed > available {
            return Err(legacy(LegacyError::Truncated {
                key: key.to_string(),
                offset: pos,
                needed,
                available,
            }));
        }
        // needed <= available = len - pos: cannot overflow.
        let end = pos + needed as usize;
        bound.insert(
            key.clone(),
            Rc::new(Extent {
                what: format!("legacy storage `{key}` at byte {pos}"),
                range: pos..end,
                crc: None,
            }),
        );
        pos = end;
    }
    for s in data.storages() {
        if !bound.contains_key(&s.key) {
            return Err(legacy(LegacyError::Unlisted {
                key: s.key.to_string(),
            }));
        }
    }
    let mut found = state_dict::find(data, &bound)?;
    if pos < len {
        found.warnings.push(format!(
            "{} bytes after the last storage were ignored",
            len - pos
        ));
    }
    Ok(found)
}
