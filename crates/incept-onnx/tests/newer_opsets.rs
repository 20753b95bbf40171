//! A model declaring any opset up to the newest onnxruntime 1.32 runs (28)
//! imports exactly as at the opset it was exported with: the supported ops'
//! versions 22 to 25 only add element types.

#![allow(clippy::unwrap_used)]

use incept_fixtures::Fixture;
use incept_onnx::ops::MAX_OPSET;
use incept_onnx::proto::ModelProto;
use incept_onnx::{OnnxError, import_bytes};
use prost::Message;

fn with_opset(bytes: &[u8], version: i64) -> Vec<u8> {
    let mut m = ModelProto::decode(bytes).unwrap();
    for o in &mut m.opset_import {
        if matches!(o.domain.as_deref(), None | Some("")) {
            o.version = Some(version);
        }
    }
    m.encode_to_vec()
}

#[test]
fn opsets_22_to_28_import_like_17() {
    let f = Fixture::open("tiny_transform");
    let bytes = std::fs::read(f.path("ts_bn.onnx")).unwrap();
    let reference = import_bytes(&bytes).unwrap().graph;
    assert_eq!(MAX_OPSET, 28);
    for v in 22..=MAX_OPSET {
        let g = import_bytes(&with_opset(&bytes, v)).unwrap().graph;
        assert_eq!(g, reference, "opset {v}");
    }
    let e = import_bytes(&with_opset(&bytes, 29)).unwrap_err();
    assert!(
        matches!(e, OnnxError::UnsupportedOpset { version: 29, .. }),
        "{e}"
    );
}
