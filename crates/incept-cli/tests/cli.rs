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
