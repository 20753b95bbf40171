//! Broken and hostile models, built with the prost types: each must fail
//! with a typed error that names the file, node or tensor and the rule
//! broken, and never panic.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use incept_ir::Op;
use incept_onnx::proto::attribute_proto::AttributeType;
use incept_onnx::proto::tensor_proto::{DataLocation, DataType};
use incept_onnx::proto::tensor_shape_proto::{Dimension, dimension};
use incept_onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};
use incept_onnx::{OnnxError, import, import_bytes};
use prost::Message;

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d < 0 {
                dimension::Value::DimParam("N".into())
            } else {
                dimension::Value::DimValue(d)
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn f32_init(name: &str, dims: &[i64], fill: f32) -> TensorProto {
    let n: i64 = dims.iter().product();
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        raw_data: Some(
            (0..n)
                .flat_map(|i| (fill + i as f32).to_le_bytes())
                .collect(),
        ),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn attr_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A small valid model: conv → relu → global pool → flatten → gemm.
fn model() -> ModelProto {
    let mut conv = node("Conv", "conv", &["x", "conv.weight"], "c");
    conv.attribute = vec![
        attr_ints("kernel_shape", &[3, 3]),
        attr_ints("pads", &[1, 1, 1, 1]),
    ];
    let mut gemm = node("Gemm", "fc", &["f", "fc.weight", "fc.bias"], "y");
    gemm.attribute = vec![attr_int("transB", 1)];
    let mut flatten = node("Flatten", "flatten", &["p"], "f");
    flatten.attribute = vec![attr_int("axis", 1)];
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        producer_name: Some("hand".into()),
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: vec![
                conv,
                node("Relu", "relu", &["c"], "r"),
                node("GlobalAveragePool", "pool", &["r"], "p"),
                flatten,
                gemm,
            ],
            initializer: vec![
                f32_init("conv.weight", &[4, 3, 3, 3], 0.0),
                f32_init("fc.weight", &[5, 4], 1.0),
                f32_init("fc.bias", &[5], 2.0),
            ],
            input: vec![value_info("x", &[-1, 3, 8, 8])],
            output: vec![value_info("y", &[-1, 5])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn graph(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.as_mut().unwrap()
}

fn err_of(m: &ModelProto) -> OnnxError {
    match import_bytes(&m.encode_to_vec()) {
        Ok(_) => panic!("the model imported"),
        Err(e) => e,
    }
}

/// Asserts the error's message mentions every needle.
fn says(e: &OnnxError, needles: &[&str]) {
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "error `{msg}` does not mention `{n}`");
    }
}

#[test]
fn the_base_model_imports() {
    let imp = import_bytes(&model().encode_to_vec()).unwrap();
    assert_eq!(imp.graph.nodes.len(), 5);
    assert_eq!(imp.graph.params[0].name, "conv.weight");
}

#[test]
fn not_a_protobuf() {
    let e = import_bytes(b"\xff\xff\xff\xff this is not onnx").unwrap_err();
    assert!(matches!(e, OnnxError::Decode { .. }), "{e}");
    // Bytes that decode as a message of unknown fields are still not a model.
    let e = import_bytes(b"").unwrap_err();
    assert!(matches!(e, OnnxError::NotAModel { .. }), "{e}");
}

#[test]
fn truncated() {
    let bytes = model().encode_to_vec();
    for cut in [bytes.len() / 2, bytes.len() - 1, 3] {
        let e = import_bytes(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(e, OnnxError::Decode { .. } | OnnxError::NotAModel { .. }),
            "{cut}: {e}"
        );
    }
}

#[test]
fn cycle_and_use_before_definition() {
    let mut m = model();
    // relu reads the flatten output that comes later: a cycle r → p → f → r.
    graph(&mut m).node[1].input[0] = "f".into();
    let e = err_of(&m);
    assert!(matches!(e, OnnxError::UsedBeforeDefined { .. }), "{e}");
    says(&e, &["<memory>", "relu", "`f`"]);
    let mut m = model();
    graph(&mut m).node.swap(1, 2);
    says(&err_of(&m), &["pool", "`r`", "before anything defines it"]);
}

#[test]
fn defined_twice() {
    let mut m = model();
    graph(&mut m).node[2].output[0] = "c".into();
    let e = err_of(&m);
    assert!(matches!(e, OnnxError::DefinedTwice { .. }), "{e}");
}

#[test]
fn wrong_number_of_inputs() {
    let mut m = model();
    graph(&mut m).node[1].input.push("x".into());
    let e = err_of(&m);
    says(&e, &["relu", "Relu", "takes 1 input(s), has 2"]);
    let mut m = model();
    graph(&mut m).node[0].input.truncate(1);
    says(&err_of(&m), &["conv", "takes 2 to 3 input(s), has 1"]);
}

#[test]
fn initializer_length_disagrees_with_dims() {
    let mut m = model();
    graph(&mut m).initializer[0]
        .raw_data
        .as_mut()
        .unwrap()
        .truncate(10);
    let e = err_of(&m);
    assert!(matches!(e, OnnxError::Tensor { .. }), "{e}");
    says(&e, &["conv.weight", "raw_data has 10 bytes", "need 432"]);
    // Typed data with the wrong count.
    let mut m = model();
    let t = &mut graph(&mut m).initializer[2];
    t.raw_data = None;
    t.float_data = vec![1.0; 4];
    says(
        &err_of(&m),
        &["fc.bias", "float_data has 4 elements", "need 5"],
    );
}

#[test]
fn dims_negative_or_overflowing() {
    let mut m = model();
    graph(&mut m).initializer[0].dims = vec![-4, 3, 3, 3];
    says(&err_of(&m), &["conv.weight", "dimension -4 is negative"]);
    let mut m = model();
    graph(&mut m).initializer[0].dims = vec![1 << 40, 1 << 40, 1 << 40];
    says(&err_of(&m), &["conv.weight", "overflow"]);
    // A huge but addressable shape over a few bytes: refused before allocating.
    let mut m = model();
    graph(&mut m).initializer[0].dims = vec![1 << 40];
    says(&err_of(&m), &["conv.weight", "need 4398046511104"]);
}

#[test]
fn unknown_data_type() {
    let mut m = model();
    graph(&mut m).initializer[0].data_type = Some(DataType::String as i32);
    says(&err_of(&m), &["conv.weight", "STRING is not supported"]);
    let mut m = model();
    graph(&mut m).initializer[0].data_type = Some(999);
    says(&err_of(&m), &["conv.weight", "unknown data type 999"]);
}

#[test]
fn f16_from_int32_data_and_f32_from_float_data() {
    let mut m = model();
    let t = &mut graph(&mut m).initializer[2];
    t.raw_data = None;
    t.data_type = Some(DataType::Float16 as i32);
    t.int32_data = vec![0x3c00; 5]; // 1.0 in binary16
    let g = import_bytes(&m.encode_to_vec()).unwrap().graph;
    assert_eq!(
        g.params[2].data.as_ref().unwrap().to_f64_vec(),
        vec![1.0; 5]
    );
}

#[test]
fn unknown_domain_and_every_unsupported_op_at_once() {
    let mut m = model();
    let mut evil = node("Relu", "evil", &["r"], "r2");
    evil.domain = Some("com.evil".into());
    let g = graph(&mut m);
    g.node.push(evil);
    g.node.push(node("Softmax", "softmax", &["y"], "s"));
    g.node.push(node("LSTM", "lstm", &["y"], "l"));
    g.node.push(node("LSTM", "lstm2", &["y"], "l2"));
    let e = err_of(&m);
    let OnnxError::UnsupportedOps { ops, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(ops.len(), 3, "{e}");
    says(
        &e,
        &[
            "3 unsupported op(s)",
            "com.evil::Relu",
            "domain `com.evil`",
            "Softmax (node `softmax`)",
            "LSTM (node `lstm` and 1 more)",
        ],
    );
}

#[test]
fn opset_out_of_range() {
    let mut m = model();
    m.opset_import[0].version = Some(99);
    let e = err_of(&m);
    assert!(
        matches!(e, OnnxError::UnsupportedOpset { version: 99, .. }),
        "{e}"
    );
}

#[test]
fn deeply_nested_subgraphs_fail_to_decode() {
    let mut g = GraphProto::default();
    for _ in 0..150 {
        let n = NodeProto {
            op_type: Some("If".into()),
            attribute: vec![AttributeProto {
                name: Some("then_branch".into()),
                g: Some(g),
                ..Default::default()
            }],
            ..Default::default()
        };
        g = GraphProto {
            node: vec![n],
            ..Default::default()
        };
    }
    let mut m = model();
    graph(&mut m).node.push(g.node.remove(0));
    let e = err_of(&m);
    assert!(matches!(e, OnnxError::Decode { .. }), "{e}");
}

#[test]
fn gemm_alpha_beta_fold_only_when_exact() {
    let mut m = model();
    graph(&mut m).node[4]
        .attribute
        .push(attr_float("alpha", 2.0));
    let g = import_bytes(&m.encode_to_vec()).unwrap().graph;
    assert_eq!(g.params[1].data.as_ref().unwrap().as_f32().unwrap()[0], 2.0);
    let mut m = model();
    graph(&mut m).initializer[1] = f32_init("fc.weight", &[5, 4], 0.1);
    graph(&mut m).node[4]
        .attribute
        .push(attr_float("alpha", 0.3));
    says(&err_of(&m), &["fc", "Gemm", "alpha = 0.3 cannot be folded"]);
    // transB = 0: the weight is [in, out] and is transposed.
    let mut m = model();
    graph(&mut m).initializer[1] = f32_init("fc.weight", &[4, 5], 0.0);
    graph(&mut m).node[4].attribute.clear();
    let g = import_bytes(&m.encode_to_vec()).unwrap().graph;
    let w = g.params[1].data.as_ref().unwrap();
    assert_eq!(w.shape(), &[5, 4]);
    assert_eq!(w.as_f32().unwrap()[..2], [0.0, 5.0]);
}

#[test]
fn matmul_then_add_is_linear() {
    let mut m = model();
    let g = graph(&mut m);
    g.initializer[1] = f32_init("fc.weight", &[4, 5], 0.0);
    g.node[4] = node("MatMul", "fc_mm", &["f", "fc.weight"], "mm");
    g.node.push(node("Add", "fc", &["mm", "fc.bias"], "y"));
    let g = import_bytes(&m.encode_to_vec()).unwrap().graph;
    let fc = g.nodes.last().unwrap();
    assert!(
        matches!(&fc.op, Op::Linear(l) if l.bias && l.in_features == 4 && l.out_features == 5),
        "{:?}",
        fc.op
    );
    assert_eq!(fc.name, "fc");
}

#[test]
fn conv_auto_pad() {
    for (mode, stride, expect) in [
        ("SAME_UPPER", 2, [0, 0, 1, 1]),
        ("SAME_LOWER", 2, [1, 1, 0, 0]),
        ("VALID", 1, [0; 4]),
        ("SAME_UPPER", 1, [1; 4]),
    ] {
        let mut m = model();
        let conv = &mut graph(&mut m).node[0];
        conv.attribute = vec![
            attr_ints("kernel_shape", &[3, 3]),
            attr_str("auto_pad", mode),
            attr_ints("strides", &[stride, stride]),
        ];
        let g = import_bytes(&m.encode_to_vec()).unwrap().graph;
        let Op::Conv2d(c) = &g.nodes[0].op else {
            panic!()
        };
        assert_eq!(c.pads, expect, "{mode} stride {stride}");
    }
    let mut m = model();
    graph(&mut m).node[0]
        .attribute
        .push(attr_str("auto_pad", "SIDEWAYS"));
    says(&err_of(&m), &["conv", "auto_pad `SIDEWAYS`"]);
}

/// Writes `m` with `conv.weight` moved to external data described by `entries`.
fn external_model(dir: &Path, entries: &[(&str, &str)]) -> std::path::PathBuf {
    let mut m = model();
    let t = &mut graph(&mut m).initializer[0];
    t.raw_data = None;
    t.data_location = Some(DataLocation::External as i32);
    t.external_data = entries
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v.to_string()),
        })
        .collect();
    let path = dir.join("model.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

fn external_err(dir: &Path, entries: &[(&str, &str)]) -> OnnxError {
    match import(&external_model(dir, entries)) {
        Ok(_) => panic!("{entries:?} imported"),
        Err(e) => {
            assert!(matches!(e, OnnxError::ExternalData { .. }), "{e}");
            says(&e, &["model.onnx", "conv.weight"]);
            e
        }
    }
}

#[test]
fn external_data_is_read_from_the_models_folder() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..108).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut padded = vec![0u8; 16];
    padded.extend(&bytes);
    std::fs::write(dir.path().join("w.bin"), &padded).unwrap();
    let path = external_model(
        dir.path(),
        &[("location", "w.bin"), ("offset", "16"), ("length", "432")],
    );
    let g = import(&path).unwrap().graph;
    assert_eq!(g.params[0].data.as_ref().unwrap().to_le_bytes(), bytes);
}

#[test]
fn external_data_outside_the_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for loc in [
        "../x",
        "/etc/passwd",
        "a/../../x",
        "C:\\x",
        "\\\\host\\s",
        "C:x",
    ] {
        let e = external_err(dir.path(), &[("location", loc)]);
        says(&e, &[loc]);
    }
}

#[test]
fn external_data_through_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), vec![0u8; 432]).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("w.bin")).unwrap();
    says(
        &external_err(dir.path(), &[("location", "w.bin")]),
        &["symbolic link"],
    );
    std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
    says(
        &external_err(dir.path(), &[("location", "sub/secret")]),
        &["symbolic link"],
    );
    // A hard link aliases a file that may live anywhere on the same file system.
    std::fs::hard_link(outside.path().join("secret"), dir.path().join("hard.bin")).unwrap();
    says(
        &external_err(dir.path(), &[("location", "hard.bin")]),
        &["hard links"],
    );
}

#[test]
fn external_data_offsets_and_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), vec![0u8; 440]).unwrap();
    let cases: [(&[(&str, &str)], &str); 8] = [
        (
            &[("location", "w.bin"), ("offset", "-8")],
            "`-8` is not a non-negative integer",
        ),
        (
            &[("location", "w.bin"), ("length", "lots")],
            "`lots` is not a non-negative integer",
        ),
        (
            &[("location", "w.bin"), ("offset", "16"), ("length", "432")],
            "past the end",
        ),
        (
            &[
                ("location", "w.bin"),
                ("offset", "18446744073709551615"),
                ("length", "432"),
            ],
            "overflows",
        ),
        (
            &[("location", "w.bin"), ("length", "400")],
            "differs from the 432 bytes",
        ),
        (
            &[("location", "w.bin"), ("colour", "red")],
            "key `colour` is unknown",
        ),
        (
            &[("location", "w.bin"), ("offset", "0"), ("offset", "8")],
            "key `offset` appears twice",
        ),
        (&[("location", "missing.bin")], "cannot be opened"),
    ];
    for (entries, rule) in cases {
        says(&external_err(dir.path(), entries), &[rule]);
    }
    // From memory there is no folder to read from.
    let mut m = model();
    let t = &mut graph(&mut m).initializer[0];
    t.raw_data = None;
    t.data_location = Some(DataLocation::External as i32);
    t.external_data = vec![StringStringEntryProto {
        key: Some("location".into()),
        value: Some("w.bin".into()),
    }];
    says(&err_of(&m), &["not read from a file"]);
}

#[test]
fn a_file_over_2_gib_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.onnx");
    let f = std::fs::File::create(&path).unwrap();
    // Sparse: no disk space used.
    f.set_len(3 << 30).unwrap();
    let e = import(&path).unwrap_err();
    assert!(
        matches!(e, OnnxError::TooLarge { size, .. } if size == 3 << 30),
        "{e}"
    );
    says(&e, &["huge.onnx", "2147483647"]);
    assert!(incept_onnx::check_file_size(&path, (1 << 31) - 1).is_ok());
    assert!(incept_onnx::check_file_size(&path, 1 << 31).is_err());
}

#[test]
fn missing_file_names_it() {
    let e = import(Path::new("/nonexistent/model.onnx")).unwrap_err();
    assert!(matches!(e, OnnxError::Io { .. }), "{e}");
    says(&e, &["/nonexistent/model.onnx"]);
}

#[test]
fn a_declared_output_shape_that_disagrees_is_a_warning() {
    let mut m = model();
    graph(&mut m).output[0] = value_info("y", &[-1, 6]);
    let imp = import_bytes(&m.encode_to_vec()).unwrap();
    assert_eq!(imp.warnings.len(), 1, "{:?}", imp.warnings);
    assert!(
        imp.warnings[0]
            .contains("output `y` is declared with dims [None, Some(6)] but computes [N,5]"),
        "{:?}",
        imp.warnings
    );
    assert!(
        import_bytes(&model().encode_to_vec())
            .unwrap()
            .warnings
            .is_empty()
    );
}
