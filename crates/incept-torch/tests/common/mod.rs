//! Helpers shared by the integration tests: fixture paths and a minimal
//! stored-zip writer for inputs crafted at run time.

#![allow(dead_code)]

use std::path::PathBuf;

use incept_torch::{Checkpoint, TorchError};

/// The path of a fixture written by `tests/data/make_data.py`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The bytes of a fixture.
pub fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Loads a fixture by name (the name, not the path, appears in messages).
pub fn load(name: &str) -> Result<Checkpoint, TorchError> {
    incept_torch::load_bytes(&bytes(name), name)
}

/// Loads a fixture that must be refused, and returns the error.
pub fn refused(name: &str) -> TorchError {
    match load(name) {
        Ok(c) => panic!("{name} was accepted: {} tensors", c.tensors.len()),
        Err(e) => e,
    }
}

/// A zip of stored entries as torch lays them out (no data descriptors, no zip64).
pub fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    stored_zip_declaring(entries, &[])
}

/// [`stored_zip`], except that the entries named in `declared` claim the size
/// given in their local header and central directory record (a zip64 extra
/// field carries sizes of 2^32 - 1 and over), whatever bytes they hold.
pub fn stored_zip_declaring(entries: &[(&str, &[u8])], declared: &[(&str, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(data);
        let n = name.as_bytes();
        let size = declared
            .iter()
            .find(|(d, _)| d == name)
            .map_or(data.len() as u64, |&(_, s)| s);
        let size32 = u32::try_from(size).unwrap_or(u32::MAX);
        let extra: Vec<u8> = if size32 == u32::MAX {
            let mut x = vec![0x01, 0x00, 16, 0];
            x.extend(size.to_le_bytes());
            x.extend(size.to_le_bytes());
            x
        } else {
            Vec::new()
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend(crc.to_le_bytes());
        out.extend(size32.to_le_bytes());
        out.extend(size32.to_le_bytes());
        out.extend((n.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(n);
        out.extend(*data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend(crc.to_le_bytes());
        central.extend(size32.to_le_bytes());
        central.extend(size32.to_le_bytes());
        central.extend((n.len() as u16).to_le_bytes());
        central.extend((extra.len() as u16).to_le_bytes());
        central.extend([0u8; 10]);
        central.extend(offset.to_le_bytes());
        central.extend(n);
        central.extend(extra);
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend(central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend(cd_len.to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// Writes `bytes` to a fresh file in the temporary folder, named after this
/// process and `name`, and returns its path.
pub fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("incept_torch_{}_{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// Loads `bytes` both from memory and from a temporary file, checks that the
/// two agree, and returns the file's result (named by the temporary path).
pub fn load_both(name: &str, bytes: &[u8]) -> Result<Checkpoint, TorchError> {
    let path = temp_file(name, bytes);
    let from_file = incept_torch::load(&path);
    let from_memory = incept_torch::load_bytes(bytes, &path.display().to_string());
    let _ = std::fs::remove_file(&path);
    assert_same(&from_file, &from_memory, name);
    from_file
}

/// The tensor's elements as bits, so that NaNs compare equal to themselves.
pub fn bits(t: &incept_ir::Tensor) -> Vec<u64> {
    use incept_ir::TensorData;
    match t.data() {
        TensorData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::F16(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::BF16(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as u64).collect(),
    }
}

/// Two loads of the same bytes agree: the same checkpoint, bit for bit, or the
/// same error message.
pub fn assert_same(
    a: &Result<Checkpoint, TorchError>,
    b: &Result<Checkpoint, TorchError>,
    what: &str,
) {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.container, b.container, "{what}: container");
            assert_eq!(a.source_key, b.source_key, "{what}: source key");
            assert_eq!(a.stripped_prefix, b.stripped_prefix, "{what}: prefix");
            assert_eq!(a.warnings, b.warnings, "{what}: warnings");
            assert_eq!(a.byte_order, b.byte_order, "{what}: byte order");
            assert_eq!(a.tensors.len(), b.tensors.len(), "{what}: tensor count");
            for ((na, ta), (nb, tb)) in a.tensors.iter().zip(&b.tensors) {
                assert_eq!(na, nb, "{what}: names");
                assert_eq!(ta.dtype(), tb.dtype(), "{what}: {na} dtype");
                assert_eq!(ta.shape(), tb.shape(), "{what}: {na} shape");
                assert!(bits(ta) == bits(tb), "{what}: {na} values differ");
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{what}: errors"),
        (a, b) => panic!(
            "{what}: from a file {:?}, from memory {:?}",
            a.as_ref().map(|c| c.tensors.len()),
            b.as_ref().map(|c| c.tensors.len())
        ),
    }
}

/// A torch-like archive holding only `data.pkl`.
pub fn pickle_zip(pkl: &[u8]) -> Vec<u8> {
    stored_zip(&[("archive/data.pkl", pkl), ("archive/version", b"3\n")])
}

/// BINUNICODE.
pub fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s.as_bytes());
    v
}
