//! Which container a file is, told from its first bytes, and the layout of
//! torch's zip archives: the top folder, `data.pkl`, `byteorder`, and the
//! `data/<key>` entries the storages live in.

use std::rc::Rc;

use incept_ir::ByteOrder;

use crate::allowlist::Mode;
use crate::error::{FormatError, LegacyError};
use crate::legacy::LEGACY_MAGIC;
use crate::pickle::{self, Parsed};
use crate::source::Source;
use crate::state_dict::{self, Extent, Found};
use crate::storage::StorageRef;
use crate::torchscript;
use crate::zip_container::ZipArchive;

/// The kind of file a checkpoint came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// `torch.save` since torch 1.6: a zip archive with `data.pkl` and `data/<key>`.
    Zip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)`: stacked pickles then raw storages.
    Legacy,
    /// `torch.jit.save`: a zip archive with `code/`, `data.pkl` and `constants.pkl`.
    TorchScript,
}

/// What the first bytes say the file is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sniffed {
    Zip,
    Legacy,
}

/// How many of the first bytes [`sniff`] needs.
pub(crate) const SNIFF_LEN: usize = 512;

/// Tells the container from the magic bytes, or says what else the file looks
/// like; `bytes` are the file's first bytes (at least [`SNIFF_LEN`] of them, or
/// all), `len` its length.
pub(crate) fn sniff(bytes: &[u8], len: usize) -> Result<Sniffed, FormatError> {
    if len == 0 {
        return Err(FormatError::Empty);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(Sniffed::Zip);
    }
    if bytes.starts_with(LEGACY_MAGIC) {
        return Ok(Sniffed::Legacy);
    }
    if bytes.get(257..262) == Some(b"ustar") {
        return Err(FormatError::Legacy(LegacyError::Tar));
    }
    if looks_like_safetensors(bytes, len) {
        return Err(FormatError::LooksLike {
            format: "a safetensors file",
            hint: "read it with a safetensors reader instead",
        });
    }
    if looks_like_onnx(bytes) {
        return Err(FormatError::LooksLike {
            format: "an ONNX model (protobuf starting with ir_version)",
            hint: "import it as ONNX instead",
        });
    }
    if bytes.first() == Some(&0x80) {
        return Err(FormatError::LooksLike {
            format: "a bare pickle without torch's legacy magic number",
            hint: "save it again with torch.save",
        });
    }
    let magic: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(FormatError::UnknownFormat {
        magic: magic.join(" "),
    })
}

fn looks_like_safetensors(bytes: &[u8], len: usize) -> bool {
    let Some(head) = bytes.get(..8) else {
        return false;
    };
    let mut a = [0u8; 8];
    a.copy_from_slice(head);
    let n = u64::from_le_bytes(a);
    n >= 2 && n <= (len as u64).saturating_sub(8) && bytes.get(8) == Some(&b'{')
}

fn looks_like_onnx(bytes: &[u8]) -> bool {
    // ModelProto field 1 (ir_version, varint) is written first; versions are
    // small, and the next field is a string or a message (wire type 2).
    match bytes {
        [0x08, v, tag, ..] => (1..=32).contains(v) && tag & 0x07 == 2,
        _ => false,
    }
}

/// The tensors a zip archive holds, before they are read and copied out.
pub(crate) struct ZipContents {
    pub container: Container,
    pub found: Found,
    pub byte_order: ByteOrder,
}

/// Reads a `torch.save` or `torch.jit.save` zip archive up to the named tensor
/// views: the directory, `byteorder` and the pickles are read; the storages
/// are located and their sizes checked, but not read.
pub(crate) fn read_zip<S: Source + ?Sized>(src: &S) -> Result<ZipContents, FormatError> {
    let zip = ZipArchive::parse(src).map_err(FormatError::Zip)?;
    let prefix = top_folder(&zip)?;
    let entry = |rest: &str| format!("{prefix}/{rest}");

    let byteorder = zip.read(&entry("byteorder")).map_err(FormatError::Zip)?;
    let byte_order = match byteorder.as_deref() {
        None => ByteOrder::Little,
        Some(b"little") => ByteOrder::Little,
        Some(b"big") => ByteOrder::Big,
        Some(other) => {
            return Err(FormatError::BadByteOrder {
                entry: entry("byteorder"),
                found: String::from_utf8_lossy(other.get(..32).unwrap_or(other)).into_owned(),
            });
        }
    };

    let code_prefix = entry("code/");
    let is_torchscript = zip.size(&entry("constants.pkl")).is_some()
        || zip
            .entries()
            .iter()
            .any(|e| e.name.starts_with(&code_prefix));
    let mode = if is_torchscript {
        Mode::TorchScript
    } else {
        Mode::Checkpoint
    };

    let data_pkl = entry("data.pkl");
    let parsed = parse_entry(&zip, &data_pkl, mode)?.ok_or_else(|| FormatError::MissingEntry {
        entry: data_pkl.clone(),
    })?;
    let storages = |p: &Parsed, dir: &str| bind_storages(&zip, &prefix, dir, p);

    if !is_torchscript {
        let bound = storages(&parsed, "data")?;
        let found = state_dict::find(&parsed, &bound)?;
        return Ok(ZipContents {
            container: Container::Zip,
            found,
            byte_order,
        });
    }

    let bound = storages(&parsed, "data")?;
    let mut found = torchscript::collect(&parsed, &bound)?;
    let constants_pkl = entry("constants.pkl");
    if let Some(constants) = parse_entry(&zip, &constants_pkl, mode)? {
        let bound = storages(&constants, "constants")?;
        let extra = torchscript::constants(&constants, &bound)?;
        if !extra.is_empty() {
            found.warnings.push(format!(
                "{} tensors come from constants.pkl (a frozen module?) and are named constants.<i>",
                extra.len()
            ));
            found.tensors.extend(extra);
        }
    }
    Ok(ZipContents {
        container: Container::TorchScript,
        found,
        byte_order,
    })
}

/// The one top folder every entry lives under, as torch's own reader requires.
fn top_folder<S: Source + ?Sized>(zip: &ZipArchive<'_, S>) -> Result<String, FormatError> {
    let mut prefix: Option<&str> = None;
    for e in zip.entries() {
        let Some((top, _)) = e.name.split_once('/') else {
            return Err(FormatError::MissingEntry {
                entry: "<folder>/data.pkl (entries must live in one top folder)".into(),
            });
        };
        match prefix {
            None => prefix = Some(top),
            Some(p) if p == top => {}
            Some(p) => {
                return Err(FormatError::SeveralPrefixes {
                    first: p.to_owned(),
                    second: top.to_owned(),
                });
            }
        }
    }
    prefix
        .map(str::to_owned)
        .ok_or_else(|| FormatError::MissingEntry {
            entry: "<folder>/data.pkl".into(),
        })
}

fn parse_entry<S: Source + ?Sized>(
    zip: &ZipArchive<'_, S>,
    name: &str,
    mode: Mode,
) -> Result<Option<Parsed>, FormatError> {
    let Some(data) = zip.read(name).map_err(FormatError::Zip)? else {
        return Ok(None);
    };
    pickle::parse_exact(&data, mode)
        .map(Some)
        .map_err(|error| FormatError::Pickle {
            entry: name.to_owned(),
            error,
        })
}

/// Looks up `<prefix>/<dir>/<key>` for every storage the pickle names and checks
/// its size against the persistent id, without reading it; the keys were
/// checked to be `[0-9A-Za-z_]+` when the pickle was read, so no path can
/// escape.
fn bind_storages<S: Source + ?Sized>(
    zip: &ZipArchive<'_, S>,
    prefix: &str,
    dir: &str,
    parsed: &Parsed,
) -> Result<state_dict::Bound, FormatError> {
    let mut bound = state_dict::Bound::default();
    for s in parsed.storages() {
        let name = format!("{prefix}/{dir}/{}", s.key);
        let e = zip
            .stored(&name)
            .map_err(FormatError::Zip)?
            .ok_or_else(|| FormatError::StorageMissing {
                key: s.key.to_string(),
                entry: name.clone(),
            })?;
        check_storage_size(s, e.data.len() as u64, &name)?;
        bound.insert(
            s.key.clone(),
            Rc::new(Extent {
                what: name,
                range: e.data.clone(),
                crc: Some(e.crc),
            }),
        );
    }
    Ok(bound)
}

/// Checks that a storage's bytes match the element count its persistent id declares.
pub(crate) fn check_storage_size(
    s: &StorageRef,
    found: u64,
    location: &str,
) -> Result<(), FormatError> {
    let expected = s.nbytes();
    if expected != Some(found) {
        return Err(FormatError::StorageSize {
            key: s.key.to_string(),
            location: location.to_owned(),
            dtype: s.ty.dtype_name(),
            numel: s.numel,
            expected: expected.unwrap_or(u64::MAX),
            found,
        });
    }
    Ok(())
}
