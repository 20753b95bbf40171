//! Checkpoints written by torch itself, compared with the golden JSON the same
//! script wrote from torch's own view of the tensors.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns fail loudly on bad fixtures

mod common;

use incept_ir::{ByteOrder, DType};
use incept_torch::{Checkpoint, Container};
use serde_json::Value;

fn golden(name: &str) -> Value {
    let text = std::fs::read_to_string(common::data(&format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn dtype_name(d: DType) -> &'static str {
    d.name()
}

/// Compares every tensor's name (in order), dtype, shape and values with the golden file.
fn check(file: &str, golden_name: &str) -> Checkpoint {
    let ckpt = common::load(file).unwrap_or_else(|e| panic!("{e}"));
    let g = golden(golden_name);
    let expected = g["tensors"].as_array().unwrap();
    let names: Vec<&str> = ckpt.tensors.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<&str> = expected
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, want, "{file}: tensor names and order");
    for ((name, tensor), t) in ckpt.tensors.iter().zip(expected) {
        assert_eq!(
            dtype_name(tensor.dtype()),
            t["dtype"],
            "{file}: {name} dtype"
        );
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(tensor.shape(), &shape[..], "{file}: {name} shape");
        let values: Vec<f64> = t["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        match tensor.data() {
            incept_ir::TensorData::I64(v) => {
                let ints: Vec<i64> = t["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                assert_eq!(v, &ints, "{file}: {name} values");
            }
            _ => assert_eq!(tensor.to_f64_vec(), values, "{file}: {name} values"),
        }
    }
    let source_key = g["source_key"].as_str().map(str::to_owned);
    assert_eq!(ckpt.source_key, source_key, "{file}: source key");
    let stripped = g["stripped_prefix"].as_str().map(str::to_owned);
    assert_eq!(ckpt.stripped_prefix, stripped, "{file}: stripped prefix");
    ckpt
}

#[test]
fn every_dtype_and_a_parameter() {
    let c = check("dtypes.pth", "dtypes");
    assert_eq!(c.container, Container::Zip);
    assert_eq!(c.byte_order, ByteOrder::Little);
    let scalar = c.get("scalar_i64").unwrap();
    assert_eq!(scalar.shape(), &[] as &[usize]);
    assert_eq!(scalar.dtype(), DType::I64);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn strided_views_and_shared_storages() {
    let c = check("views.pth", "views");
    // `view` is big[1:, ::2] of a 4x6 tensor: 3x3, copied contiguous.
    assert_eq!(c.get("view").unwrap().shape(), &[3, 3]);
    assert_eq!(c.get("transposed").unwrap().shape(), &[6, 4]);
}

#[test]
fn legacy_stream() {
    let c = check("legacy.pth", "legacy");
    assert_eq!(c.container, Container::Legacy);
}

#[test]
fn big_endian_archive_is_byte_swapped() {
    // torch cannot write big-endian on this host: make_data.py rewrote the
    // byteorder entry and byte-swapped the storages of a torch-written file.
    let c = check("big_endian.pth", "big_endian");
    assert_eq!(c.byte_order, ByteOrder::Big);
}

#[test]
fn torchscript_module_tree_by_attribute_path() {
    let c = check("torchscript.pt", "torchscript");
    assert_eq!(c.container, Container::TorchScript);
    assert!(c.get("Mixed_5b.branch1x1.conv.weight").is_some());
    assert!(c.get("Mixed_5b.branch1x1.bn.num_batches_tracked").is_some());
}

#[test]
fn training_checkpoint_with_dataparallel_prefix_and_sgd_state() {
    let c = check("training.pth", "training");
    assert_eq!(c.container, Container::Zip);
    assert_eq!(c.source_key.as_deref(), Some("model_state_dict"));
    assert_eq!(c.stripped_prefix.as_deref(), Some("module."));
    let nbt = c.get("Conv2d_1a_3x3.bn.num_batches_tracked").unwrap();
    assert_eq!(nbt.dtype(), DType::I64);
    assert_eq!(nbt.shape(), &[] as &[usize]);
}

#[test]
fn load_reads_from_a_path() {
    let c = incept_torch::load(&common::data("dtypes.pth")).unwrap();
    assert_eq!(c.tensors.len(), 8);
    let err = incept_torch::load(&common::data("no_such_file.pth")).unwrap_err();
    assert!(matches!(err, incept_torch::TorchError::Io { .. }));
    assert!(err.to_string().contains("no_such_file.pth"), "{err}");
}

#[test]
fn pickle_protocols_4_and_5() {
    check("protocol4.pth", "protocol4");
    check("protocol5.pth", "protocol5");
}

#[test]
fn parameter_with_python_attributes() {
    check("parameter_state.pth", "parameter_state");
}

/// `torch._utils._rebuild_tensor(storage, offset, size, stride)`, which torch
/// before 1.0 wrote; torch 2.x cannot produce it, so the pickle is made here.
#[test]
fn old_four_argument_rebuild_tensor() {
    let mut pkl = b"\x80\x02}(".to_vec();
    pkl.extend(common::unicode("w"));
    pkl.extend(b"ctorch._utils\n_rebuild_tensor\n((");
    pkl.extend(common::unicode("storage"));
    pkl.extend(b"ctorch\nFloatStorage\n");
    pkl.extend(common::unicode("0"));
    pkl.extend(common::unicode("cpu"));
    pkl.extend(b"K\x03tQK\x01(K\x02t(K\x01ttRu.");
    let data: Vec<u8> = [0.5f32, 1.5, -2.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let zip = common::stored_zip(&[("old/data.pkl", &pkl), ("old/data/0", &data)]);
    let c = incept_torch::load_bytes(&zip, "old.pth").unwrap();
    assert_eq!(c.get("w").unwrap().as_f32(), Some(&[1.5f32, -2.0][..]));
}

/// `load(path)` reads by position, one storage at a time; `load_bytes` slices
/// a buffer. They must agree on every committed file, good or bad: the same
/// tensors bit for bit, or the same error.
#[test]
fn path_and_memory_readers_agree_on_every_committed_file() {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(common::data(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pth" || e == "pt"))
        .collect();
    let data_files = files.len();
    assert!(data_files >= 40, "only {data_files} files in tests/data");
    let root = incept_fixtures::root();
    for set in incept_fixtures::TINY {
        for name in [
            "model.pth",
            "model_legacy.pth",
            "checkpoint.pth",
            "scripted.pt",
        ] {
            let p = root.join(set).join(name);
            if p.exists() {
                files.push(p);
            }
        }
    }
    // tiny_*/model.pth (3), tiny_aux's legacy stream and training checkpoint,
    // two TorchScript archives.
    assert!(files.len() >= data_files + 7, "fixtures missing: {files:?}");
    files.sort();
    let mut loaded = 0;
    for path in &files {
        let from_file = incept_torch::load(path);
        let bytes = std::fs::read(path).unwrap();
        let from_memory = incept_torch::load_bytes(&bytes, &path.display().to_string());
        common::assert_same(&from_file, &from_memory, &path.display().to_string());
        loaded += usize::from(from_file.is_ok());
    }
    // The nine good files of tests/data and the seven fixtures.
    assert_eq!(loaded, 16, "files loaded");
}
