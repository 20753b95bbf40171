//! safetensors files as incept tensors: a hardened reader and an atomic writer.
//!
//! The `safetensors` crate validates offsets, lengths and the header size;
//! this crate adds what it lets through (duplicate names, which its JSON
//! parsing keeps silently) and converts to [`incept_ir::Tensor`]. Writes go
//! to a temporary file in the destination's folder, renamed into place only
//! when complete.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use incept_ir::{ByteOrder, DType, Tensor};
use safetensors::{Dtype, SafeTensors};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use thiserror::Error;

/// What went wrong with a safetensors file.
#[derive(Debug, Error)]
pub enum SafetensorsError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The header or layout is invalid.
    #[error("{path}: not a valid safetensors file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// Two tensors share a name.
    #[error("{path}: the header names tensor `{name}` more than once")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// A tensor's dtype is not one incept handles.
    #[error(
        "{path}: tensor `{tensor}` has dtype {dtype}; incept reads F32, F16, BF16, F64 and I64"
    )]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// A tensor's bytes do not fit its shape.
    #[error("{path}: tensor `{tensor}`: {source}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Why.
        source: incept_ir::TensorError,
    },
}

/// The contents of a safetensors file.
#[derive(Clone, Debug, Default)]
pub struct SafetensorsFile {
    /// Tensors in the order of their data in the file.
    pub tensors: Vec<(String, Tensor)>,
    /// The `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
}

impl SafetensorsFile {
    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Reads the file at `path`.
pub fn read(path: &Path) -> Result<SafetensorsFile, SafetensorsError> {
    let bytes = std::fs::read(path).map_err(|source| SafetensorsError::Io {
        path: path.into(),
        source,
    })?;
    read_bytes(&bytes, path)
}

/// Parses `bytes`; `path` is used in error messages.
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<SafetensorsFile, SafetensorsError> {
    let format = |message: String| SafetensorsError::Format {
        path: path.into(),
        message,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| format(e.to_string()))?;
    check_duplicates(bytes, path)?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| format(e.to_string()))?;
    let mut tensors = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            other => {
                return Err(SafetensorsError::Dtype {
                    path: path.into(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let t = Tensor::from_bytes(dtype, view.shape().to_vec(), view.data(), ByteOrder::Little)
            .map_err(|source| SafetensorsError::Tensor {
                path: path.into(),
                tensor: name.to_string(),
                source,
            })?;
        tensors.push((name.to_string(), t));
    }
    // `iter` follows the header's name order; data order is what users see in other tools.
    let offsets: BTreeMap<String, usize> = meta
        .tensors()
        .into_iter()
        .map(|(n, info)| (n, info.data_offsets.0))
        .collect();
    tensors.sort_by_key(|(n, _)| offsets.get(n).copied().unwrap_or(usize::MAX));
    let metadata = meta
        .metadata()
        .clone()
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    Ok(SafetensorsFile { tensors, metadata })
}

/// Refuses a header that names a tensor twice (JSON allows it; the
/// `safetensors` crate keeps one silently).
fn check_duplicates(bytes: &[u8], path: &Path) -> Result<(), SafetensorsError> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, IgnoredAny)) = m.next_entry::<String, IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    // deserialize() above already checked that the length prefix and header are in bounds.
    let n = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    let header = usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..8 + n))
        .unwrap_or(&[]);
    let Keys(keys) = serde_json::from_slice(header).map_err(|e| SafetensorsError::Format {
        path: path.into(),
        message: e.to_string(),
    })?;
    let mut seen = std::collections::HashSet::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            return Err(SafetensorsError::Duplicate {
                path: path.into(),
                name: k,
            });
        }
    }
    Ok(())
}

/// A tensor as the `safetensors` crate sees it: its bytes are borrowed, not copied.
struct View<'a>(&'a Tensor);

impl safetensors::View for View<'_> {
    fn dtype(&self) -> Dtype {
        match self.0.dtype() {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
            DType::F64 => Dtype::F64,
            DType::I64 => Dtype::I64,
        }
    }
    fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        self.0.le_bytes()
    }
    fn data_len(&self) -> usize {
        self.0.nbytes()
    }
}

fn views<'a>(tensors: &[(&'a str, &'a Tensor)]) -> Vec<(&'a str, View<'a>)> {
    tensors.iter().map(|&(n, t)| (n, View(t))).collect()
}

fn format_error(path: &Path, e: safetensors::SafeTensorError) -> SafetensorsError {
    SafetensorsError::Format {
        path: path.into(),
        message: e.to_string(),
    }
}

/// Serialises `tensors` (in the given order) with `metadata`.
pub fn to_bytes(
    tensors: &[(&str, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, SafetensorsError> {
    let meta = (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect());
    safetensors::serialize(views(tensors), meta).map_err(|e| format_error(Path::new("<output>"), e))
}

/// Writes `tensors` to `path` atomically: streamed into a temporary file in
/// the same folder (no second copy of the weights in memory), renamed over
/// `path` once complete. No partial file is ever left.
pub fn write(
    path: &Path,
    tensors: &[(&str, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), SafetensorsError> {
    let meta = (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect());
    let io = |source| SafetensorsError::Io {
        path: path.into(),
        source,
    };
    let tmp = temporary_sibling(path);
    let result = safetensors::serialize_to_file(views(tensors), meta, &tmp)
        .map_err(|e| format_error(path, e))
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io)
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.incept-{}.tmp", std::process::id()))
}
