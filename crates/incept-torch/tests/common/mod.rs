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
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(data);
        let n = name.as_bytes();
        let size = data.len() as u32;
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend(crc.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend((n.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(n);
        out.extend(*data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend(crc.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend((n.len() as u16).to_le_bytes());
        central.extend([0u8; 12]);
        central.extend(offset.to_le_bytes());
        central.extend(n);
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
