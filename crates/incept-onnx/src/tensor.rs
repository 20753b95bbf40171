//! Phase 2 of import: `TensorProto` → [`Tensor`], from `raw_data`, the typed
//! fields, or an external data file. Every size is checked against the bytes
//! actually present before anything is allocated.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use half::{bf16, f16};
use incept_ir::{ByteOrder, DType, Tensor, TensorData, checked_numel};

use crate::error::OnnxError;
use crate::proto::TensorProto;
use crate::proto::tensor_proto::{DataLocation, DataType};

/// The IR dtype of an ONNX `TensorProto.DataType` code.
pub fn dtype_of(code: i32) -> Option<DType> {
    match DataType::try_from(code).ok()? {
        DataType::Float => Some(DType::F32),
        DataType::Float16 => Some(DType::F16),
        DataType::Bfloat16 => Some(DType::BF16),
        DataType::Double => Some(DType::F64),
        DataType::Int64 => Some(DType::I64),
        _ => None,
    }
}

/// The ONNX data-type code of an IR dtype.
pub fn code_of(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => DataType::Float as i32,
        DType::F16 => DataType::Float16 as i32,
        DType::BF16 => DataType::Bfloat16 as i32,
        DType::F64 => DataType::Double as i32,
        DType::I64 => DataType::Int64 as i32,
    }
}

/// Where external data files are looked up: the model's folder, or nowhere
/// for models read from memory.
#[derive(Clone, Debug)]
pub(crate) struct Source<'a> {
    /// The model file, for errors.
    pub path: &'a Path,
    /// The folder external data is resolved against.
    pub base: Option<&'a Path>,
}

/// Decodes one tensor. `what` names it in errors.
pub(crate) fn decode_tensor(src: &Source<'_>, t: &TensorProto) -> Result<Tensor, OnnxError> {
    let name = t.name.clone().unwrap_or_default();
    let err = |rule: String| OnnxError::Tensor {
        path: src.path.to_path_buf(),
        tensor: name.clone(),
        rule,
    };
    let code = t.data_type.unwrap_or(0);
    let dtype = dtype_of(code).ok_or_else(|| {
        let label = DataType::try_from(code)
            .map(|d| d.as_str_name().to_string())
            .unwrap_or_else(|_| format!("unknown data type {code}"));
        err(format!(
            "data type {label} is not supported (f32, f16, bf16, f64, i64)"
        ))
    })?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| err(format!("dimension {d} is negative")))?;
        shape.push(d);
    }
    let numel = checked_numel(&shape).ok_or_else(|| err(format!("dims {:?} overflow", t.dims)))?;
    let nbytes = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| err(format!("dims {:?} overflow", t.dims)))?;
    if t.segment.is_some() {
        return Err(err("segmented tensors are not supported".into()));
    }
    let external = t.data_location == Some(DataLocation::External as i32);
    if !external && !t.external_data.is_empty() {
        return Err(err(
            "has external_data entries but data_location is not EXTERNAL".into(),
        ));
    }
    if external {
        let bytes = read_external(src, &name, t, nbytes)?;
        return Tensor::from_bytes(dtype, shape, &bytes, ByteOrder::Little)
            .map_err(|e| err(e.to_string()));
    }
    let typed = [
        !t.float_data.is_empty(),
        !t.int32_data.is_empty(),
        !t.int64_data.is_empty(),
        !t.double_data.is_empty(),
        !t.string_data.is_empty(),
        !t.uint64_data.is_empty(),
    ];
    let n_typed = typed.iter().filter(|&&b| b).count();
    if let Some(raw) = &t.raw_data {
        if n_typed > 0 {
            return Err(err("holds both raw_data and a typed data field".into()));
        }
        if raw.len() != nbytes {
            return Err(err(format!(
                "raw_data has {} bytes, dims {:?} of {dtype} need {nbytes}",
                raw.len(),
                t.dims
            )));
        }
        return Tensor::from_bytes(dtype, shape, raw, ByteOrder::Little)
            .map_err(|e| err(e.to_string()));
    }
    if n_typed > 1 {
        return Err(err("holds more than one typed data field".into()));
    }
    let count = |found: usize, field: &str| {
        if found == numel {
            Ok(())
        } else {
            Err(err(format!(
                "{field} has {found} elements, dims {:?} need {numel}",
                t.dims
            )))
        }
    };
    let data = match dtype {
        DType::F32 => {
            count(t.float_data.len(), "float_data")?;
            TensorData::F32(t.float_data.clone())
        }
        DType::F64 => {
            count(t.double_data.len(), "double_data")?;
            TensorData::F64(t.double_data.clone())
        }
        DType::I64 => {
            count(t.int64_data.len(), "int64_data")?;
            TensorData::I64(t.int64_data.clone())
        }
        // ONNX stores 16-bit floats as their bit patterns, one per int32.
        DType::F16 => {
            count(t.int32_data.len(), "int32_data")?;
            TensorData::F16(
                t.int32_data
                    .iter()
                    .map(|&b| f16::from_bits(b as u16))
                    .collect(),
            )
        }
        DType::BF16 => {
            count(t.int32_data.len(), "int32_data")?;
            TensorData::BF16(
                t.int32_data
                    .iter()
                    .map(|&b| bf16::from_bits(b as u16))
                    .collect(),
            )
        }
    };
    Tensor::new(shape, data).map_err(|e| err(e.to_string()))
}

/// The parsed `external_data` entries of one tensor.
struct ExternalRef {
    location: String,
    offset: u64,
    length: Option<u64>,
}

fn parse_external(src: &Source<'_>, name: &str, t: &TensorProto) -> Result<ExternalRef, OnnxError> {
    let err = |rule: String| OnnxError::ExternalData {
        path: src.path.to_path_buf(),
        tensor: name.to_string(),
        rule,
    };
    let mut seen = HashSet::new();
    let (mut location, mut offset, mut length) = (None, 0u64, None);
    for e in &t.external_data {
        let key = e.key.as_deref().unwrap_or("");
        let value = e.value.as_deref().unwrap_or("");
        if !seen.insert(key) {
            return Err(err(format!("key `{key}` appears twice")));
        }
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| err(format!("{key} `{v}` is not a non-negative integer")))
        };
        match key {
            "location" => location = Some(value.to_string()),
            "offset" => offset = number(value)?,
            "length" => length = Some(number(value)?),
            // A checksum is informational; we do not verify it but accept it.
            "checksum" => {}
            other => return Err(err(format!("key `{other}` is unknown"))),
        }
    }
    let location = location.ok_or_else(|| err("has no `location`".into()))?;
    Ok(ExternalRef {
        location,
        offset,
        length,
    })
}

/// Checks `location` is a plain relative path inside the model's folder:
/// no absolute paths, drive letters, UNC prefixes, backslashes or `..`.
pub(crate) fn check_location(location: &str) -> Result<PathBuf, String> {
    if location.is_empty() {
        return Err("location is empty".into());
    }
    if location.contains('\\') {
        return Err(format!(
            "location `{location}` contains a backslash (Windows paths are refused)"
        ));
    }
    let b = location.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err(format!("location `{location}` has a drive letter"));
    }
    if location.contains('\0') {
        return Err(format!("location `{location}` contains a NUL byte"));
    }
    let p = Path::new(location);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "location `{location}` has a `..` component (it must stay inside the model's folder)"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "location `{location}` is absolute (it must be relative to the model's folder)"
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("location `{location}` names no file"));
    }
    Ok(out)
}

fn read_external(
    src: &Source<'_>,
    name: &str,
    t: &TensorProto,
    nbytes: usize,
) -> Result<Vec<u8>, OnnxError> {
    let err = |rule: String| OnnxError::ExternalData {
        path: src.path.to_path_buf(),
        tensor: name.to_string(),
        rule,
    };
    let r = parse_external(src, name, t)?;
    let rel = check_location(&r.location).map_err(&err)?;
    let base = src
        .base
        .ok_or_else(|| err("cannot be read: the model was not read from a file".into()))?;
    // Walk the path component by component so that no symlink anywhere on
    // the way (not only the last) can lead outside the folder.
    let mut full = base.to_path_buf();
    for part in rel.components() {
        full.push(part);
        let meta = std::fs::symlink_metadata(&full)
            .map_err(|e| err(format!("`{}` cannot be opened: {e}", r.location)))?;
        if meta.file_type().is_symlink() {
            return Err(err(format!(
                "`{}` goes through a symbolic link ({})",
                r.location,
                full.display()
            )));
        }
    }
    let meta = std::fs::symlink_metadata(&full)
        .map_err(|e| err(format!("`{}` cannot be opened: {e}", r.location)))?;
    if !meta.is_file() {
        return Err(err(format!("`{}` is not a regular file", r.location)));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // A hard link can alias any file the attacker could name when making it.
        if meta.nlink() > 1 {
            return Err(err(format!(
                "`{}` has {} hard links (refused: it may alias a file outside the folder)",
                r.location,
                meta.nlink()
            )));
        }
    }
    let file_len = meta.len();
    let length = r.length.unwrap_or(file_len.saturating_sub(r.offset));
    let end = r
        .offset
        .checked_add(length)
        .ok_or_else(|| err(format!("offset {} + length {length} overflows", r.offset)))?;
    if end > file_len {
        return Err(err(format!(
            "offset {} + length {length} = {end} is past the end of `{}` ({file_len} bytes)",
            r.offset, r.location
        )));
    }
    if length != nbytes as u64 {
        return Err(err(format!(
            "length {length} differs from the {nbytes} bytes its dims and data type need"
        )));
    }
    let mut f = File::open(&full).map_err(|e| err(format!("`{}`: {e}", r.location)))?;
    f.seek(SeekFrom::Start(r.offset))
        .map_err(|e| err(format!("`{}`: {e}", r.location)))?;
    let mut buf = vec![0u8; nbytes];
    f.read_exact(&mut buf)
        .map_err(|e| err(format!("`{}`: {e}", r.location)))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_that_leave_the_folder_are_refused() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "C:\\x",
            "C:x",
            "\\\\host\\s",
            "",
            ".",
        ] {
            assert!(check_location(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            check_location("./w/model.data").ok(),
            Some(PathBuf::from("w/model.data"))
        );
    }
}
