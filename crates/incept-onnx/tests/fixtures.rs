//! Imports the real exporter outputs in `fixtures/` (TorchScript with and
//! without BatchNorm, dynamo with external data) and checks graphs, names,
//! shapes against the template, and the export → import round trip.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use incept_ir::template::{InceptionV3Config, Widths, inception_v3};
use incept_ir::{Graph, Op};
use incept_onnx::{ExportOptions, NamingSource, export, export_bytes, import, import_bytes};

fn fixtures() -> PathBuf {
    match std::env::var_os("INCEPT_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"),
    }
}

const MODELS: [&str; 3] = ["tiny_aux", "tiny_noaux", "tiny_transform"];
const FILES: [(&str, NamingSource); 3] = [
    ("ts_folded.onnx", NamingSource::TorchScriptScopes),
    ("ts_bn.onnx", NamingSource::TorchScriptScopes),
    ("dynamo.onnx", NamingSource::DynamoMetadata),
];

struct Meta {
    num_classes: usize,
    transform_input: bool,
}

fn meta(model: &str) -> Meta {
    let text = std::fs::read_to_string(fixtures().join(model).join("meta.json")).unwrap();
    let field = |key: &str| {
        let at = text
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in meta.json"));
        let rest = &text[at + key.len() + 3..];
        rest[..rest.find([',', '\n']).unwrap()].trim().to_string()
    };
    Meta {
        num_classes: field("num_classes").parse().unwrap(),
        transform_input: field("transform_input") == "true",
    }
}

/// The template of the fixture's config, with widths read off the imported weights.
fn template_for(g: &Graph, m: &Meta) -> Graph {
    let widths = Widths::from_param_shapes(
        g.params
            .iter()
            .map(|p| (p.name.as_str(), p.shape.as_slice())),
    );
    let cfg = InceptionV3Config {
        num_classes: m.num_classes,
        aux_logits: false,
        transform_input: m.transform_input,
        widths,
        ..InceptionV3Config::default()
    };
    inception_v3(&cfg).unwrap().graph
}

#[test]
fn every_fixture_imports_with_torchvision_names() {
    for model in MODELS {
        let m = meta(model);
        for (file, naming) in FILES {
            let path = fixtures().join(model).join(file);
            let imp = import(&path).unwrap_or_else(|e| panic!("{e}"));
            let g = &imp.graph;
            g.validate().unwrap();
            assert_eq!(imp.naming, naming, "{model}/{file}");
            let t = template_for(g, &m);
            // Same output shape as the template of the same config.
            let out = |g: &Graph| {
                g.values[g.outputs.iter().find(|o| !o.training_only).unwrap().value]
                    .ty
                    .clone()
            };
            assert_eq!(out(g), out(&t), "{model}/{file}");
            // Every imported node carries the name of its template counterpart.
            let tnames: std::collections::HashSet<&str> =
                t.nodes.iter().map(|n| n.name.as_str()).collect();
            for n in &g.nodes {
                assert!(
                    tnames.contains(n.name.as_str()),
                    "{model}/{file}: node `{}` ({}) is not a template name",
                    n.name,
                    n.op.name()
                );
                let tn = t.nodes.iter().find(|x| x.name == n.name).unwrap();
                assert_eq!(
                    g.values[n.output].ty, t.values[tn.output].ty,
                    "{model}/{file}: {}",
                    n.name
                );
            }
            // Weights are named by their state-dict keys.
            let folded = g.metadata.contains_key("folded_batchnorm");
            for p in &g.params {
                // A folded BatchNorm leaves its shift as the convolution's bias.
                let fused_bias = folded
                    && p.name.strip_suffix(".conv.bias").is_some_and(|m| {
                        t.params
                            .iter()
                            .any(|q| q.name == format!("{m}.bn.bias") && q.shape == p.shape)
                    });
                assert!(
                    fused_bias
                        || t.params
                            .iter()
                            .any(|q| q.name == p.name && q.shape == p.shape),
                    "{model}/{file}: parameter `{}` {:?} is not a template key",
                    p.name,
                    p.shape
                );
            }
            let has_bn = g.nodes.iter().any(|n| matches!(n.op, Op::BatchNorm(_)));
            assert_eq!(has_bn, file == "ts_bn.onnx", "{model}/{file}");
            assert_eq!(
                g.metadata.get("folded_batchnorm").map(String::as_str),
                (!has_bn).then_some("true")
            );
            assert_eq!(
                g.nodes
                    .iter()
                    .any(|n| n.name == "transform_input" && matches!(n.op, Op::ChannelAffine(_))),
                m.transform_input,
                "{model}/{file}"
            );
        }
    }
}

#[test]
fn export_then_import_gives_the_same_graph() {
    let dir = tempfile::tempdir().unwrap();
    for model in MODELS {
        for (file, _) in FILES {
            let first = import(&fixtures().join(model).join(file)).unwrap().graph;
            let out = dir.path().join(format!("{model}_{file}"));
            export(&first, &out, &ExportOptions::default()).unwrap();
            let again = import(&out).unwrap();
            assert_eq!(again.naming, NamingSource::Original);
            assert_eq!(
                again.producer,
                format!("incept {}", env!("CARGO_PKG_VERSION"))
            );
            let second = again.graph;
            // Bit-identical weights (PartialEq on f32 would equate 0.0 and -0.0).
            for (a, b) in first.params.iter().zip(&second.params) {
                assert_eq!(a.name, b.name);
                assert_eq!(
                    a.data.as_ref().unwrap().to_le_bytes(),
                    b.data.as_ref().unwrap().to_le_bytes(),
                    "{}",
                    a.name
                );
            }
            assert_eq!(first, second, "{model}/{file}");
            // And the bytes of a second export are the bytes of the first.
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(
                export_bytes(&second, &ExportOptions::default()).unwrap(),
                bytes
            );
            assert_eq!(import_bytes(&bytes).unwrap().graph, second);
        }
    }
}

#[test]
fn dynamo_transform_input_dump() {
    let imp = import(&fixtures().join("tiny_transform/dynamo.onnx")).unwrap();
    let header = format!(
        "opset {} producer {} naming {}\n",
        imp.opset, imp.producer, imp.naming
    );
    insta::assert_snapshot!("tiny_transform_dynamo_dump", header + &imp.graph.dump());
}

/// The fixture with every name that could give torchvision's away replaced:
/// node names, initializer names, metadata, producer.
fn anonymised(path: &std::path::Path) -> Vec<u8> {
    use incept_onnx::proto::ModelProto;
    use prost::Message;
    let mut m = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    m.producer_name = Some("anonymous".into());
    let g = m.graph.as_mut().unwrap();
    let mut renames = std::collections::HashMap::new();
    for (i, t) in g.initializer.iter_mut().enumerate() {
        let new = format!("w{i}");
        renames.insert(t.name.replace(new.clone()).unwrap(), new);
        // Inline the external data, so the anonymised model needs no folder.
        if !t.external_data.is_empty() {
            let data = std::fs::read(path.with_extension("onnx.data")).unwrap();
            let get = |k: &str| {
                t.external_data
                    .iter()
                    .find(|e| e.key.as_deref() == Some(k))
                    .unwrap()
                    .value
                    .clone()
                    .unwrap()
            };
            let (off, len): (usize, usize) = (
                get("offset").parse().unwrap(),
                get("length").parse().unwrap(),
            );
            t.raw_data = Some(data[off..off + len].to_vec());
            t.external_data.clear();
            t.data_location = None;
        }
    }
    for (i, n) in g.node.iter_mut().enumerate() {
        n.name = Some(format!("n{i}"));
        n.metadata_props.clear();
        for input in &mut n.input {
            if let Some(new) = renames.get(input) {
                *input = new.clone();
            }
        }
    }
    m.encode_to_vec()
}

#[test]
fn anonymised_exports_are_named_by_matching_the_template() {
    for model in MODELS {
        for (file, _) in FILES {
            let path = fixtures().join(model).join(file);
            let named = import(&path).unwrap().graph;
            let imp = import_bytes(&anonymised(&path)).unwrap();
            assert_eq!(imp.naming, NamingSource::TemplateMatch, "{model}/{file}");
            let names = |g: &Graph| g.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&imp.graph), names(&named), "{model}/{file}");
            let params = |g: &Graph| g.params.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
            assert_eq!(params(&imp.graph), params(&named), "{model}/{file}");
            assert_eq!(imp.graph.metadata, named.metadata, "{model}/{file}");
        }
    }
}

#[test]
fn a_graph_that_is_not_inception_keeps_its_own_names() {
    use incept_onnx::proto::ModelProto;
    use prost::Message;
    // Cut the anonymised graph after Mixed_5b's first convolution: not an Inception V3.
    let path = fixtures().join("tiny_noaux/ts_folded.onnx");
    let mut m = ModelProto::decode(anonymised(&path).as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let keep = 6;
    g.node.truncate(keep);
    let last = g.node[keep - 1].output[0].clone();
    let out = g.output[0].clone();
    g.output = vec![incept_onnx::proto::ValueInfoProto {
        name: Some(last),
        r#type: None,
        ..out
    }];
    let imp = import_bytes(&m.encode_to_vec()).unwrap();
    assert_eq!(imp.naming, NamingSource::Original);
    assert_eq!(imp.graph.nodes[0].name, "n0");
    assert_eq!(imp.graph.params[0].name, "w2");
}
