//! `cargo xtask interop`: checks of the `incept` CLI against the real Python
//! stack (torchvision, onnxruntime), each one a script in `xtask/interop/`.
//!
//! To add a check, add a script and one entry to [`CHECKS`]. Every script is run
//! with the venv's python from the repository root as
//! `<script> --incept <path to incept> --fixtures <fixtures dir>` and must exit
//! non-zero on any mismatch, printing a readable summary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::{fixtures, util, venv};

/// One named interop check.
struct Check {
    /// Name used by `--only` and in the summary.
    name: &'static str,
    /// Script under `xtask/interop/`.
    script: &'static str,
    /// Whether the check reads the full-size fixture set (`fixtures/full/`).
    needs_full: bool,
    /// What the check compares.
    about: &'static str,
}

const CHECKS: &[Check] = &[
    Check {
        name: "report",
        script: "check_report.py",
        needs_full: false,
        about: "`incept report --format json` vs torchvision Inception3: per-layer output shapes, parameters, MACs; totals",
    },
    Check {
        name: "onnx-export",
        script: "check_onnx_export.py",
        needs_full: true,
        about: "`incept convert` .pth/.onnx -> ONNX (opsets 13/17/21): onnx.checker full_check, onnxruntime vs torch's export, metadata, torchvision names",
    },
    Check {
        name: "safetensors-export",
        script: "check_safetensors_export.py",
        needs_full: true,
        about: "`incept convert` .pth -> safetensors: bit-identical to torch.load, load_state_dict(strict) reproduces golden logits",
    },
    Check {
        name: "run",
        script: "check_run.py",
        needs_full: true,
        about: "`incept run` f32/f64 on .pth and the ONNX fixtures vs PyTorch float64 and onnxruntime logits",
    },
    Check {
        name: "preprocess",
        script: "check_preprocess.py",
        needs_full: false,
        about: "`incept run --image` input tap `x` and logits vs torchvision's Resize/CenterCrop/Normalize on generated PNG/JPEG images",
    },
];

/// `cargo xtask interop [--list] [--only NAME]... [--no-build] [--incept PATH]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let mut only: Vec<String> = Vec::new();
    let mut build = true;
    let mut incept_override: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => {
                for c in CHECKS {
                    let full = if c.needs_full {
                        " [reads fixtures/full/]"
                    } else {
                        ""
                    };
                    println!("{:<18} {}{full}", c.name, c.about);
                }
                return Ok(());
            }
            "--only" => match it.next() {
                Some(name) => only.push(name.clone()),
                None => bail!("--only needs a check name"),
            },
            "--no-build" => build = false,
            "--incept" => match it.next() {
                Some(path) => {
                    incept_override = Some(PathBuf::from(path));
                    build = false;
                }
                None => bail!("--incept needs a path"),
            },
            other => bail!("interop: unknown option `{other}`"),
        }
    }
    for name in &only {
        if !CHECKS.iter().any(|c| c.name == name) {
            bail!("unknown interop check `{name}` (see `cargo xtask interop --list`)");
        }
    }
    let selected: Vec<&Check> = CHECKS
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.name.to_owned()))
        .collect();

    let root = util::root();
    let python = venv::ensure()?;
    let fixtures_dir = root.join("fixtures");
    // Generated once, for the checks that read it (`needs_full`) and for manual comparisons.
    fixtures::ensure_full(&python, &root)?;

    let incept =
        incept_override.unwrap_or_else(|| root.join("target").join("release").join("incept"));
    let build_error = if build {
        build_incept(&root).err()
    } else {
        None
    };
    if let Some(e) = &build_error {
        eprintln!("incept binary not built: {e:#}");
    }

    let mut results: Vec<(&str, Result<f64>)> = Vec::new();
    for check in &selected {
        println!("\n=== interop check `{}`: {}", check.name, check.about);
        let start = Instant::now();
        let outcome = match &build_error {
            Some(e) => Err(anyhow::anyhow!("incept binary not built: {e:#}")),
            None => run_check(&python, &root, check, &incept, &fixtures_dir),
        };
        results.push((check.name, outcome.map(|()| start.elapsed().as_secs_f64())));
    }

    println!("\n=== interop summary");
    let mut failed = 0usize;
    for (name, r) in &results {
        match r {
            Ok(secs) => println!("  PASS  {name} ({secs:.1}s)"),
            Err(e) => {
                failed += 1;
                println!("  FAIL  {name}: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} interop check(s) failed", results.len());
    }
    Ok(())
}

/// `cargo build --release -p incept-cli`.
pub fn build_incept(root: &Path) -> Result<()> {
    util::cargo_build_release(root, &["-p", "incept-cli"])
}

fn run_check(
    python: &Path,
    root: &Path,
    check: &Check,
    incept: &Path,
    fixtures_dir: &Path,
) -> Result<()> {
    let script = root.join("xtask").join("interop").join(check.script);
    util::run(
        Command::new(python)
            .arg(&script)
            .arg("--incept")
            .arg(incept)
            .arg("--fixtures")
            .arg(fixtures_dir)
            .current_dir(root),
    )
}
