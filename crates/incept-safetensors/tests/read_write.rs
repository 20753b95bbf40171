//! Round trips and hostile inputs for the safetensors reader and writer.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use incept_ir::{DType, Tensor, TensorData};
use incept_safetensors::{SafetensorsError, read, read_bytes, to_bytes, write};

/// A file from a JSON header and a data section, as a hostile writer would make it.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn err(bytes: &[u8]) -> String {
    read_bytes(bytes, Path::new("bad.safetensors"))
        .unwrap_err()
        .to_string()
}

#[test]
fn round_trip_every_dtype() {
    let t = |dtype| {
        Tensor::from_f32(vec![2, 3], vec![1.0, -2.0, 0.5, 3.0, 0.0, -0.25])
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    };
    let tensors = vec![
        ("b".to_string(), t(DType::F32)),
        ("a".to_string(), t(DType::F16)),
        ("c".to_string(), t(DType::BF16)),
        ("d".to_string(), t(DType::F64)),
        (
            "n".to_string(),
            Tensor::new(vec![], TensorData::I64(vec![42])).unwrap(),
        ),
    ];
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    let dir = std::env::temp_dir().join(format!("incept-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.safetensors");
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write(&path, &refs, &meta).unwrap();
    let back = read(&path).unwrap();
    let mut want = tensors.clone();
    let mut got = back.tensors.clone();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    assert_eq!(back.metadata, meta);
    // No temporary file is left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "w.safetensors")
        .collect();
    assert!(leftovers.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn duplicate_names_are_refused() {
    let h = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let e = err(&raw(h, &[0; 4]));
    assert_eq!(
        e,
        "bad.safetensors: the header names tensor `w` more than once"
    );
}

#[test]
fn hostile_headers_are_refused() {
    // Header length of u64::MAX.
    let mut v = u64::MAX.to_le_bytes().to_vec();
    v.extend_from_slice(b"{}");
    assert!(err(&v).contains("not a valid safetensors file"));
    // Data offsets past the end.
    let h = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    assert!(err(&raw(h, &[0; 8])).contains("not a valid"));
    // Overlapping tensors.
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    assert!(err(&raw(h, &[0; 12])).contains("not a valid"));
    // Byte count that disagrees with the shape.
    let h = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
    assert!(err(&raw(h, &[0; 8])).contains("not a valid"));
    // Shape product that overflows.
    let h = r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#;
    assert!(err(&raw(h, &[0; 4])).contains("not a valid"));
    // Trailing bytes after the last tensor.
    let h = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    assert!(err(&raw(h, &[0; 8])).contains("not a valid"));
    // Bad UTF-8 and bad JSON.
    assert!(err(&raw("{\"\u{0}", &[])).contains("not a valid"));
    let mut v = 4u64.to_le_bytes().to_vec();
    v.extend_from_slice(&[0xff, 0xfe, 0x7b, 0x7d]);
    assert!(err(&v).contains("not a valid"));
    // Metadata values that are not strings.
    let h = r#"{"__metadata__":{"a":1}}"#;
    assert!(err(&raw(h, &[])).contains("not a valid"));
    // Empty and truncated files.
    assert!(err(&[]).contains("not a valid"));
    assert!(err(&[1, 0, 0]).contains("not a valid"));
}

#[test]
fn unsupported_dtype_names_the_tensor() {
    let h = r#"{"mask":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#;
    let e = read_bytes(&raw(h, &[0, 1]), Path::new("m.safetensors")).unwrap_err();
    assert!(matches!(e, SafetensorsError::Dtype { .. }));
    insta::assert_snapshot!("unsupported_dtype", e.to_string());
}

#[test]
fn serialised_bytes_read_back() {
    let t = Tensor::from_f32(vec![2], vec![1.0, 2.0]).unwrap();
    let bytes = to_bytes(&[("x", &t)], &BTreeMap::new()).unwrap();
    let f = read_bytes(&bytes, Path::new("mem")).unwrap();
    assert_eq!(f.get("x"), Some(&t));
}
