//! End-to-end tests of the `incept` binary: output snapshots and exit codes.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::{Command, Output};

fn incept(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_incept"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Runs a command that must succeed and returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = incept(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Runs a command that must fail with exit code 2 and returns its stderr.
fn error(args: &[&str]) -> String {
    let out = incept(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} should fail: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).is_empty(),
        "an error must not print a partial report"
    );
    stderr(&out)
}

#[test]
fn report_table() {
    insta::assert_snapshot!(
        "report_inception_v3_table",
        ok(&["report", "--arch", "inception_v3"])
    );
}

#[test]
fn report_yaml() {
    insta::assert_snapshot!(
        "report_inception_v3_yaml",
        ok(&["report", "--arch", "inception_v3", "--format", "yaml"])
    );
}

#[test]
fn report_json_totals_and_schema() {
    let json = ok(&[
        "report",
        "--arch",
        "inception_v3",
        "--no-aux",
        "--format",
        "json",
        "--batch",
        "8",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["input_shape"], serde_json::json!([8, 3, 299, 299]));
    assert_eq!(v["totals"]["main"]["params"], 23_834_568);
    assert_eq!(v["totals"]["main"]["macs"], 8 * 5_713_216_096u64);
    assert_eq!(v["totals"]["aux"]["params"], 0);
    let fc = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "fc")
        .unwrap();
    assert_eq!(fc["output_shape"], serde_json::json!([8, 1000]));
}

#[test]
fn report_smallest_input_warns_about_the_aux_head() {
    let out = incept(&["report", "--arch", "inception_v3", "--input-size", "75"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("Mixed_7c                       Concat             1x2048x1x1"),
        "{text}"
    );
    assert!(
        text.contains("warning: the aux head (AuxLogits, training only) cannot run at 75x75"),
        "{text}"
    );
}

#[test]
fn report_other_sizes_and_classes() {
    let json = ok(&[
        "report",
        "--arch",
        "inception_v3",
        "--input-size",
        "512",
        "--num-classes",
        "10",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let layer = |name: &str| {
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()["output_shape"]
            .clone()
    };
    assert_eq!(layer("Mixed_7c"), serde_json::json!([1, 2048, 14, 14]));
    assert_eq!(layer("fc"), serde_json::json!([1, 10]));
    assert_eq!(layer("AuxLogits.fc"), serde_json::json!([1, 10]));
}

#[test]
fn input_too_small_is_a_clear_error() {
    insta::assert_snapshot!(
        "error_input_size_64",
        error(&["report", "--arch", "inception_v3", "--input-size", "64"])
    );
}

#[test]
fn zero_batch_and_zero_classes_are_refused() {
    let e = error(&["report", "--arch", "inception_v3", "--batch", "0"]);
    assert!(
        e.contains("--batch") && e.contains("0 is not in 1..=65536"),
        "{e}"
    );
    let e = error(&["report", "--arch", "inception_v3", "--num-classes", "0"]);
    assert!(
        e.contains("--num-classes") && e.contains("0 is not in 1.."),
        "{e}"
    );
}

#[test]
fn unknown_architecture_lists_the_known_ones() {
    let e = error(&["report", "--arch", "resnet50"]);
    assert!(e.contains("inception_v3"), "{e}");
}

#[test]
fn help_reads_well() {
    insta::assert_snapshot!("help", ok(&["--help"]));
    insta::assert_snapshot!("help_report", ok(&["report", "--help"]));
}

#[test]
fn dump_prints_the_typed_graph() {
    let text = ok(&["dump", "--arch", "inception_v3", "--no-aux"]);
    assert!(text.starts_with("graph inception_v3\n"));
    assert!(text.contains("Mixed_5b.branch5x5_2.conv = Conv2d 48->64 k=5 s=1 p=2 (Mixed_5b.branch5x5_1) -> f32[N,64,35,35]"));
    assert!(text.contains("output logits = fc: f32[N,1000]"));
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("incept-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(path: &str) -> String {
    incept_fixtures::root().join(path).display().to_string()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

/// Output shape of a layer in a JSON report.
fn layer_shape(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name}"))["output_shape"]
        .clone()
}

#[test]
fn every_container_reports_the_same_model() {
    let template = json(&["report", "--arch", "inception_v3", "--format", "json"]);
    for file in [
        "model.pth",
        "model_legacy.pth",
        "checkpoint.pth",
        "scripted.pt",
        "ts_folded.onnx",
        "ts_bn.onnx",
        "dynamo.onnx",
    ] {
        let r = json(&[
            "report",
            &fixture(&format!("tiny_aux/{file}")),
            "--format",
            "json",
        ]);
        // Widths are reduced 16x, shapes otherwise torchvision's.
        assert_eq!(
            layer_shape(&r, "Mixed_7c"),
            serde_json::json!([1, 128, 8, 8]),
            "{file}"
        );
        assert_eq!(
            layer_shape(&r, "fc"),
            layer_shape(&template, "fc"),
            "{file}"
        );
        for name in [
            "Conv2d_1a_3x3",
            "maxpool1",
            "Mixed_5b",
            "Mixed_6e",
            "avgpool",
        ] {
            let (a, b) = (layer_shape(&r, name), layer_shape(&template, name));
            assert_eq!(
                a.as_array().unwrap()[2..],
                b.as_array().unwrap()[2..],
                "{file}: spatial size of {name}"
            );
        }
    }
}

#[test]
fn bad_model_files_are_clear_errors() {
    let dir = scratch("bad");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let empty = write("empty.pth", b"");
    let e = error(&["report", &empty]);
    assert!(e.contains("empty.pth"), "{e}");
    let random = write(
        "random.pth",
        &(0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<_>>(),
    );
    let e = error(&["inspect", &random]);
    assert!(e.contains("random.pth"), "{e}");
    // A truncated zip checkpoint.
    let full = std::fs::read(fixture("tiny_aux/model.pth")).unwrap();
    let truncated = write("truncated.pth", &full[..full.len() / 2]);
    let e = error(&["report", &truncated]);
    assert!(e.contains("truncated.pth"), "{e}");
    // A torch.save of something that is not a state dict of Inception V3: the binding lists what is wrong.
    let e = error(&[
        "report",
        &fixture("tiny_aux/model.pth"),
        "--arch",
        "inception_v3",
    ]);
    assert!(e.contains("cannot be used with"), "{e}");
    // An ONNX file that is cut short.
    let onnx = std::fs::read(fixture("tiny_aux/ts_bn.onnx")).unwrap();
    let cut = write("cut.onnx", &onnx[..onnx.len() - 1000]);
    let e = error(&["report", &cut]);
    assert!(e.contains("cut.onnx"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_malicious_pickle_is_refused_and_runs_nothing() {
    // GLOBAL posix system; MARK; the command; TUPLE; REDUCE; STOP — in a zip as data.pkl.
    let dir = scratch("evil");
    let marker = dir.join("pwned");
    let cmd = format!("touch {}", marker.display());
    let mut pkl = b"\x80\x02cposix\nsystem\nq\x00(X".to_vec();
    pkl.extend((cmd.len() as u32).to_le_bytes());
    pkl.extend(cmd.as_bytes());
    pkl.extend(b"tR.");
    let zip = stored_zip(&[("archive/data.pkl", &pkl), ("archive/version", b"3\n")]);
    let path = dir.join("evil.pth");
    std::fs::write(&path, zip).unwrap();
    let e = error(&["inspect", &path.display().to_string()]);
    assert!(e.contains("posix.system"), "{e}");
    assert!(!marker.exists(), "the pickle ran");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A minimal zip archive with stored (uncompressed) entries.
fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let local = |sig: u32, v: &mut Vec<u8>| {
            v.extend(sig.to_le_bytes());
            if sig == 0x0201_4b50 {
                v.extend(20u16.to_le_bytes());
            }
            v.extend(20u16.to_le_bytes());
            v.extend([0u8; 4]); // flags, method: stored
            v.extend([0u8; 4]); // time, date
            v.extend(crc.to_le_bytes());
            v.extend((data.len() as u32).to_le_bytes());
            v.extend((data.len() as u32).to_le_bytes());
            v.extend((name.len() as u16).to_le_bytes());
            v.extend(0u16.to_le_bytes());
        };
        local(0x0403_4b50, &mut out);
        out.extend(name.as_bytes());
        out.extend(*data);
        local(0x0201_4b50, &mut central);
        central.extend([0u8; 6]); // comment length, disk, internal attrs
        central.extend([0u8; 4]); // external attrs
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

#[test]
fn run_saves_logits_that_match_pytorch() {
    let dir = scratch("run");
    let out = dir.join("out.safetensors");
    let f = incept_fixtures::Fixture::open("tiny_aux");
    ok(&[
        "run",
        &fixture("tiny_aux/model.pth"),
        "--input",
        &fixture("input.safetensors"),
        "--save",
        &out.display().to_string(),
    ]);
    let saved = incept_safetensors::read(&out).unwrap();
    let golden = f.golden();
    let bound = incept_verify::error_stats(
        golden.get("logits_f32").unwrap(),
        golden.get("logits_f64").unwrap(),
    )
    .unwrap()
    .max_rel;
    let err = incept_verify::error_stats(
        saved.get("logits").unwrap(),
        golden.get("logits_f64").unwrap(),
    )
    .unwrap()
    .max_rel;
    assert!(err <= bound, "{err:e} > {bound:e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn convert_to_onnx_and_safetensors_and_back() {
    let dir = scratch("convert");
    let onnx = dir.join("m.onnx").display().to_string();
    let st = dir.join("m.safetensors").display().to_string();
    let src = fixture("tiny_transform/model.pth");
    ok(&["convert", &src, "--transform-input", "-o", &onnx]);
    ok(&["convert", &onnx, "-o", &st]);
    let run = |m: &str, extra: &[&str]| {
        let mut args = vec!["run", m, "--seed", "5", "--format", "json", "--top", "3"];
        args.extend(extra);
        json(&args)["results"][0]["top"].clone()
    };
    let reference = run(&src, &["--transform-input"]);
    assert_eq!(
        run(&onnx, &[]),
        reference,
        "the ONNX export computes what the checkpoint does"
    );
    assert_eq!(
        run(&st, &["--transform-input"]),
        reference,
        "the safetensors export holds the same weights"
    );
    let e = error(&[
        "convert",
        &src,
        "-o",
        &dir.join("m.bin").display().to_string(),
    ]);
    assert!(
        e.contains("m.bin") && e.contains(".onnx or .safetensors"),
        "{e}"
    );
    assert!(!dir.join("m.bin").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inspect_a_training_checkpoint() {
    let text = ok(&["inspect", &fixture("tiny_noaux/model.pth")]);
    let text = text.replace(&incept_fixtures::root().display().to_string(), "fixtures");
    insta::assert_snapshot!("inspect_tiny_noaux", text);
    let j = json(&[
        "inspect",
        &fixture("tiny_aux/checkpoint.pth"),
        "--format",
        "json",
    ]);
    assert_eq!(j["tensors"].as_array().unwrap().len(), 580);
    assert!(
        j["architecture"]
            .as_str()
            .unwrap()
            .starts_with("inception_v3 (num_classes=1000, aux_logits=true")
    );
    assert!(j["details"].to_string().contains("model_state_dict"));
}
