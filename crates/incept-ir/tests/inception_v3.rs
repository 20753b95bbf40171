//! The Inception V3 template against torchvision's published figures.
//!
//! The expected numbers are torchvision's own (its model documentation and
//! `sum(p.numel() for p in model.parameters())`); `cargo xtask interop`
//! additionally checks every layer against a live torchvision model.

#![allow(clippy::unwrap_used, clippy::panic)]

use incept_ir::cost::node_macs;
use incept_ir::template::{InceptionV3Config, TemplateError, inception_v3};
use incept_ir::{Graph, GraphError, ParamKind};

fn build(f: impl FnOnce(&mut InceptionV3Config)) -> Graph {
    let mut cfg = InceptionV3Config::default();
    f(&mut cfg);
    let m = inception_v3(&cfg).unwrap();
    m.graph.validate().unwrap();
    m.graph
}

/// `[C, H, W]` of the value named `name`.
fn chw(g: &Graph, name: &str) -> Vec<usize> {
    let v = g
        .value_by_name(name)
        .unwrap_or_else(|| panic!("no value {name}"));
    g.values[v].ty.concrete(1)[1..].to_vec()
}

fn macs(g: &Graph, inference: bool) -> u64 {
    let main = g.inference_nodes();
    g.nodes
        .iter()
        .zip(main)
        .filter(|(_, m)| *m == inference)
        .map(|(n, _)| node_macs(g, n))
        .sum()
}

#[test]
fn parameter_counts_match_torchvision() {
    assert_eq!(build(|_| {}).trainable_params(), 27_161_264);
    assert_eq!(
        build(|c| c.aux_logits = false).trainable_params(),
        23_834_568
    );
}

#[test]
fn state_dict_keys_match_torchvision() {
    let with_aux = build(|_| {});
    assert_eq!(with_aux.params.len(), 580);
    assert_eq!(build(|c| c.aux_logits = false).params.len(), 566);
    let buffers = with_aux
        .params
        .iter()
        .filter(|p| p.kind == ParamKind::Buffer)
        .count();
    // running_mean, running_var, num_batches_tracked for each of 96 BatchNorms.
    assert_eq!(buffers, 96 * 3);
    assert_eq!(with_aux.params[0].name, "Conv2d_1a_3x3.conv.weight");
    assert_eq!(
        with_aux.params[5].name,
        "Conv2d_1a_3x3.bn.num_batches_tracked"
    );
    assert_eq!(
        with_aux.params.last().map(|p| p.name.as_str()),
        Some("fc.bias")
    );
}

#[test]
fn macs_match_torchvision() {
    let g = build(|_| {});
    assert_eq!(macs(&g, true), 5_713_216_096);
    assert_eq!(macs(&g, false), 5_683_200);
}

#[test]
fn shapes_along_the_main_path() {
    let g = build(|_| {});
    let expect: &[(&str, [usize; 3])] = &[
        ("x", [3, 299, 299]),
        ("Conv2d_1a_3x3", [32, 149, 149]),
        ("Conv2d_2a_3x3", [32, 147, 147]),
        ("Conv2d_2b_3x3", [64, 147, 147]),
        ("maxpool1", [64, 73, 73]),
        ("Conv2d_3b_1x1", [80, 73, 73]),
        ("Conv2d_4a_3x3", [192, 71, 71]),
        ("maxpool2", [192, 35, 35]),
        ("Mixed_5b", [256, 35, 35]),
        ("Mixed_5c", [288, 35, 35]),
        ("Mixed_5d", [288, 35, 35]),
        ("Mixed_6a", [768, 17, 17]),
        ("Mixed_6b", [768, 17, 17]),
        ("Mixed_6c", [768, 17, 17]),
        ("Mixed_6d", [768, 17, 17]),
        ("Mixed_6e", [768, 17, 17]),
        ("Mixed_7a", [1280, 8, 8]),
        ("Mixed_7b", [2048, 8, 8]),
        ("Mixed_7c", [2048, 8, 8]),
        ("avgpool", [2048, 1, 1]),
        ("dropout", [2048, 1, 1]),
        // Aux head.
        ("AuxLogits.avg_pool2d", [768, 5, 5]),
        ("AuxLogits.conv0", [128, 5, 5]),
        ("AuxLogits.conv1", [768, 1, 1]),
        ("AuxLogits.adaptive_avg_pool2d", [768, 1, 1]),
    ];
    for (name, shape) in expect {
        assert_eq!(chw(&g, name), shape.to_vec(), "{name}");
    }
    assert_eq!(chw(&g, "flatten"), vec![2048]);
    assert_eq!(chw(&g, "fc"), vec![1000]);
    assert_eq!(chw(&g, "AuxLogits.fc"), vec![1000]);
    let out = &g.outputs;
    assert_eq!(
        (out[0].name.as_str(), out[0].training_only),
        ("logits", false)
    );
    assert_eq!(
        (out[1].name.as_str(), out[1].training_only),
        ("aux_logits", true)
    );
}

#[test]
fn num_classes_and_transform_input() {
    let g = build(|c| {
        c.num_classes = 10;
        c.transform_input = true;
    });
    assert_eq!(chw(&g, "fc"), vec![10]);
    assert_eq!(chw(&g, "AuxLogits.fc"), vec![10]);
    let first = &g.nodes[0];
    assert_eq!(first.name, "transform_input");
    assert_eq!(
        g.metadata.get("transform_input").map(String::as_str),
        Some("true")
    );
}

#[test]
fn other_input_sizes() {
    for (size, mixed_7c) in [(342, 9), (512, 14)] {
        let g = build(|c| c.input_size = [size, size]);
        assert_eq!(
            chw(&g, "Mixed_7c"),
            vec![2048, mixed_7c, mixed_7c],
            "input {size}"
        );
        assert_eq!(chw(&g, "fc"), vec![1000]);
    }
}

#[test]
fn smallest_input_drops_the_aux_head_with_a_warning() {
    let mut cfg = InceptionV3Config {
        input_size: [75, 75],
        ..InceptionV3Config::default()
    };
    let m = inception_v3(&cfg).unwrap();
    m.graph.validate().unwrap();
    assert_eq!(chw(&m.graph, "Mixed_7c"), vec![2048, 1, 1]);
    assert_eq!(m.graph.outputs.len(), 1);
    assert_eq!(m.warnings.len(), 1);
    assert!(
        m.warnings[0].contains("AuxLogits.avg_pool2d"),
        "{}",
        m.warnings[0]
    );
    // The aux weights are still declared, so a full checkpoint binds.
    assert_eq!(m.graph.params.len(), 580);
    assert_eq!(m.graph.trainable_params(), 27_161_264);

    cfg.aux_logits = false;
    let m = inception_v3(&cfg).unwrap();
    assert!(m.warnings.is_empty());
}

#[test]
fn too_small_input_names_the_layer_and_the_minimum() {
    let cfg = InceptionV3Config {
        input_size: [64, 64],
        ..InceptionV3Config::default()
    };
    let err = inception_v3(&cfg).unwrap_err();
    match &err {
        TemplateError::InputTooSmall { min, cause, .. } => {
            assert_eq!(*min, 75);
            assert!(
                matches!(cause, GraphError::EmptyOutput { node, .. } if node == "Mixed_7a.branch3x3_2.conv"),
                "{cause}"
            );
        }
        other => panic!("unexpected error {other}"),
    }
    insta::assert_snapshot!("input_64_too_small", err.to_string());
    // 74 fails one layer later than 64 would at 75: the minimum is exact.
    let cfg74 = InceptionV3Config {
        input_size: [74, 74],
        ..InceptionV3Config::default()
    };
    assert!(inception_v3(&cfg74).is_err());
}

#[test]
fn zero_classes_is_refused() {
    let cfg = InceptionV3Config {
        num_classes: 0,
        ..InceptionV3Config::default()
    };
    assert!(matches!(inception_v3(&cfg), Err(TemplateError::Config(_))));
}

#[test]
fn dump_is_stable() {
    let g = build(|c| c.aux_logits = true);
    insta::assert_snapshot!("inception_v3_dump", g.dump());
}
