//! `.pth → IR → ONNX → IR` keeps the graph and every weight bit for bit, for
//! each committed checkpoint (the aux head is training-only and not exported).

#![allow(clippy::unwrap_used, clippy::panic)]

use incept_fixtures::{Fixture, TINY};
use incept_ir::template::bind_state_dict;
use incept_ir::{Graph, Op};
use incept_onnx::{ExportOptions, export_bytes, import_bytes};

/// The nodes inference runs, with their ops, input names and output types.
///
/// ONNX stores float attributes and constants as float32, so the
/// `transform_input` constants (float64 in the IR, computed as torchvision's
/// Python expression computes them) are compared at float32 precision: the
/// precision every float32 run, PyTorch's included, uses them at.
fn inference_structure(g: &Graph) -> Vec<String> {
    g.nodes
        .iter()
        .zip(g.inference_nodes())
        .filter(|(_, needed)| *needed)
        .map(|(n, _)| {
            let inputs: Vec<&str> = n
                .inputs
                .iter()
                .map(|&i| g.values[i].name.as_str())
                .collect();
            let op = match &n.op {
                Op::ChannelAffine(a) => {
                    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
                    format!(
                        "ChannelAffine(scale {:?}, shift {:?})",
                        f32s(&a.scale),
                        f32s(&a.shift)
                    )
                }
                op => format!("{op:?}"),
            };
            format!(
                "{} = {op} ({}) -> {}",
                n.name,
                inputs.join(", "),
                g.values[n.output].ty
            )
        })
        .collect()
}

#[test]
fn checkpoints_survive_an_onnx_round_trip() {
    for name in TINY {
        let f = Fixture::open(name);
        let ckpt = incept_torch::load(&f.path("model.pth")).unwrap();
        let original = bind_state_dict(ckpt.tensors, f.transform_input(), [299, 299])
            .unwrap()
            .graph;
        for opset in [13, 17, 21] {
            let bytes = export_bytes(&original, &ExportOptions { opset }).unwrap();
            let back = import_bytes(&bytes).unwrap().graph;
            let (a, b) = (inference_structure(&back), inference_structure(&original));
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x, y, "{name} opset {opset}");
            }
            assert_eq!(a.len(), b.len(), "{name} opset {opset}");
            let used: Vec<&incept_ir::Param> = original
                .nodes
                .iter()
                .zip(original.inference_nodes())
                .filter(|(_, needed)| *needed)
                .flat_map(|(n, _)| n.params.iter().map(|&p| &original.params[p]))
                .collect();
            for p in used {
                let q = back.param_by_name(&p.name).map(|i| &back.params[i]);
                let q = q.unwrap_or_else(|| panic!("{name}: `{}` lost in the round trip", p.name));
                assert_eq!(q.data, p.data, "{name}: `{}` changed", p.name);
            }
        }
    }
}
