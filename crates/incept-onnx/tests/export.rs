//! Export of graphs built in memory: the Inception V3 template with every
//! op the IR has (BatchNorm, Dropout, Flatten, ChannelAffine, the aux head).
#![allow(clippy::unwrap_used, clippy::panic)]

use incept_ir::template::{InceptionV3Config, Widths, inception_v3};
use incept_ir::{Graph, Op, Tensor, TensorData};
use incept_onnx::proto::ModelProto;
use incept_onnx::{ExportOptions, NamingSource, OnnxError, export, export_bytes, import_bytes};
use prost::Message;

/// A small template (widths / 16; 299x299 so the aux head is in the graph) with deterministic weights bound.
fn bound_template(transform_input: bool) -> Graph {
    let full = inception_v3(&InceptionV3Config::default()).unwrap().graph;
    let mut widths = Widths::full();
    for p in &full.params {
        if let Some(m) = p.name.strip_suffix(".conv.weight") {
            widths.set(m, (p.shape[0] / 16).max(1));
        }
    }
    let cfg = InceptionV3Config {
        num_classes: 7,
        transform_input,
        widths,
        ..InceptionV3Config::default()
    };
    let mut g = inception_v3(&cfg).unwrap().graph;
    for (i, p) in g.params.iter_mut().enumerate() {
        let n: usize = p.shape.iter().product();
        let data = match p.dtype {
            incept_ir::DType::I64 => TensorData::I64(vec![i as i64; n]),
            // Positive values, so running_var is valid.
            _ => TensorData::F32(
                (0..n)
                    .map(|k| 0.5 + ((i * 31 + k) % 17) as f32 / 16.0)
                    .collect(),
            ),
        };
        p.data = Some(Tensor::new(p.shape.clone(), data).unwrap());
    }
    g
}

#[test]
fn template_exports_inference_only_and_reimports_with_its_names() {
    for transform_input in [false, true] {
        let g = bound_template(transform_input);
        assert!(g.outputs.iter().any(|o| o.training_only));
        let bytes = export_bytes(&g, &ExportOptions::default()).unwrap();
        let m = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(m.producer_name.as_deref(), Some("incept"));
        let gp = m.graph.as_ref().unwrap();
        // Only the logits; the aux head and its weights are left out, and so are buffers no node reads.
        assert_eq!(
            gp.output
                .iter()
                .map(|o| o.name.clone().unwrap())
                .collect::<Vec<_>>(),
            ["logits"]
        );
        assert!(
            !gp.node
                .iter()
                .any(|n| n.name.as_deref().unwrap().starts_with("AuxLogits"))
        );
        assert!(
            !gp.initializer
                .iter()
                .any(|t| t.name.as_deref().unwrap().contains("AuxLogits"))
        );
        assert!(
            !gp.initializer.iter().any(|t| t
                .name
                .as_deref()
                .unwrap()
                .ends_with("num_batches_tracked"))
        );
        // A dynamic batch named N.
        let input = format!("{:?}", gp.input[0]);
        assert!(input.contains("DimParam(\"N\")"), "{input}");
        let meta: Vec<_> = m
            .metadata_props
            .iter()
            .map(|p| (p.key.clone().unwrap(), p.value.clone().unwrap()))
            .collect();
        assert!(
            meta.contains(&("transform_input".into(), transform_input.to_string())),
            "{meta:?}"
        );

        let back = import_bytes(&bytes).unwrap();
        assert_eq!(back.naming, NamingSource::Original);
        let inference = g.inference_nodes();
        let kept: Vec<(&str, &'static str)> = g
            .nodes
            .iter()
            .zip(&inference)
            .filter(|(_, k)| **k)
            .map(|(n, _)| (n.name.as_str(), n.op.name()))
            .collect();
        let got: Vec<(&str, &'static str)> = back
            .graph
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.op.name()))
            .collect();
        assert_eq!(got, kept);
        for p in &back.graph.params {
            let orig = &g.params[g.param_by_name(&p.name).unwrap()];
            assert_eq!(
                p.data.as_ref().unwrap().to_le_bytes(),
                orig.data.as_ref().unwrap().to_le_bytes(),
                "{}",
                p.name
            );
        }
        let bn = back
            .graph
            .nodes
            .iter()
            .find(|n| n.name == "Mixed_5b.branch1x1.bn")
            .unwrap();
        assert!(
            matches!(&bn.op, Op::BatchNorm(b) if b.eps == 0.001),
            "{:?}",
            bn.op
        );
        if transform_input {
            let t = &back.graph.nodes[0];
            assert_eq!(t.name, "transform_input");
            let Op::ChannelAffine(a) = &t.op else {
                panic!("{:?}", t.op)
            };
            assert_eq!(a.scale, [0.458, 0.448, 0.45]);
            assert_eq!(a.shift, [-0.03, -0.088, -0.188]);
        }
    }
}

#[test]
fn opsets_outside_the_export_range_are_refused() {
    let g = bound_template(false);
    for opset in [7, 12, 22] {
        let e = export_bytes(&g, &ExportOptions { opset }).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("opset {opset} is not supported")),
            "{e}"
        );
    }
    for opset in [13, 21] {
        let bytes = export_bytes(&g, &ExportOptions { opset }).unwrap();
        assert_eq!(import_bytes(&bytes).unwrap().opset, opset);
    }
}

#[test]
fn a_failed_export_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.onnx");
    // The template without weights cannot be written.
    let g = inception_v3(&InceptionV3Config::default()).unwrap().graph;
    let e = export(&g, &path, &ExportOptions::default()).unwrap_err();
    assert!(matches!(e, OnnxError::Export { .. }), "{e}");
    assert!(e.to_string().contains("has no data"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A folder that does not exist: an I/O error naming the path, nothing written.
    let e = export(
        &bound_template(false),
        &dir.path().join("missing/out.onnx"),
        &ExportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, OnnxError::Io { .. }), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A successful export leaves exactly the output file.
    export(&bound_template(false), &path, &ExportOptions::default()).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("out.onnx")]);
}
