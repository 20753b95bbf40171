//! `cargo xtask bench`: incept measured side by side with its peers on the
//! full-size model, in one run, reported as ratios (`xtask/bench/bench.py`).
//!
//! A benchmark, never a timed test: these machines are shared and noisy, so
//! the peers run interleaved with incept in the same process tree and minute.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{fixtures, interop, util, venv};

/// `cargo xtask bench [--quick] [--write] [--no-build]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let mut build = true;
    let mut script_args: Vec<String> = Vec::new();
    for a in args {
        match a.as_str() {
            "--no-build" => build = false,
            "--quick" | "--write" => script_args.push(a.clone()),
            other => bail!("bench: unknown option `{other}`"),
        }
    }
    let root = util::root();
    let python = venv::ensure()?;
    fixtures::ensure_full(&python, &root)?;
    if build {
        interop::build_incept(&root)?;
        util::cargo_build_release(
            &root,
            &[
                "-p",
                "incept-interp",
                "--example",
                "core_latency",
                "--example",
                "fma_peak",
            ],
        )?;
    }
    let release = root.join("target").join("release");
    let incept = release.join("incept");
    let latency = release.join("examples").join("core_latency");
    let peak = release.join("examples").join("fma_peak");
    util::run(
        Command::new(&python)
            .arg(root.join("xtask").join("bench").join("bench.py"))
            .arg("--incept")
            .arg(&incept)
            .arg("--fixtures")
            .arg(root.join("fixtures"))
            .arg("--latency-probe")
            .arg(&latency)
            .arg("--peak-probe")
            .arg(&peak)
            .arg("--docs")
            .arg(root.join("docs").join("benchmarks.md"))
            .args(&script_args)
            .current_dir(&root),
    )
}
