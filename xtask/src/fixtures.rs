//! `cargo xtask fixtures`: runs `fixtures/make_fixtures.py` in the venv, or
//! (`--check`) regenerates into a temporary directory and compares byte for byte
//! with the files already there, to back the reproducibility claims of
//! `fixtures/README.md`. Files expected to differ are listed, with the reason, in
//! `fixtures/reproducibility.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{util, venv};

/// Options of `cargo xtask fixtures`.
#[derive(Debug, Default)]
struct Options {
    full: bool,
    check: bool,
    out: Option<PathBuf>,
}

/// `cargo xtask fixtures [--full] [--out DIR] [--check]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let mut opts = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--full" => opts.full = true,
            "--check" => opts.check = true,
            "--out" => {
                let dir = it.next().context("--out needs a directory")?;
                opts.out = Some(PathBuf::from(dir));
            }
            other => bail!("fixtures: unknown option `{other}`"),
        }
    }
    let root = util::root();
    let python = venv::ensure()?;
    let out = opts.out.clone().unwrap_or_else(|| root.join("fixtures"));
    if opts.check {
        check(&python, &root, opts.full, &out)
    } else {
        generate(&python, &root, opts.full, &out)
    }
}

/// Runs the generator into `out` (the tiny set, or `out/full/` with `full`).
/// Generates the full-size set into `fixtures/full/` unless it is there.
pub fn ensure_full(python: &Path, root: &Path) -> Result<()> {
    let fixtures_dir = root.join("fixtures");
    if !fixtures_dir.join("full").join("meta.json").exists() {
        eprintln!("fixtures/full/ is missing: generating the full-size set");
        generate(python, root, true, &fixtures_dir)?;
    }
    Ok(())
}

pub fn generate(python: &Path, root: &Path, full: bool, out: &Path) -> Result<()> {
    let start = Instant::now();
    let mut cmd = Command::new(python);
    cmd.arg(root.join("fixtures").join("make_fixtures.py"))
        .arg("--out")
        .arg(out);
    if full {
        cmd.arg("--full");
    }
    // The generator pins this itself too (by re-executing); setting it here saves the re-exec.
    cmd.env("PYTHONHASHSEED", "0").current_dir(root);
    util::run(&mut cmd)?;
    eprintln!(
        "fixtures{} written to {} in {:.1}s",
        if full { " (full size)" } else { "" },
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One line of `fixtures/reproducibility.txt`: a path pattern and why it differs.
struct Expected {
    pattern: String,
    reason: String,
}

fn load_expected(path: &Path) -> Result<Vec<Expected>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (pattern, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        out.push(Expected {
            pattern: pattern.to_owned(),
            reason: reason.trim().to_owned(),
        });
    }
    Ok(out)
}

/// `*` matches exactly one whole path segment.
fn matches(pattern: &str, rel: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let r: Vec<&str> = rel.split('/').collect();
    p.len() == r.len() && p.iter().zip(&r).all(|(p, r)| *p == "*" || p == r)
}

fn check(python: &Path, root: &Path, full: bool, out: &Path) -> Result<()> {
    let expected = load_expected(&root.join("fixtures").join("reproducibility.txt"))?;
    let tmp = tempfile::Builder::new()
        .prefix("incept-fixtures-check-")
        .tempdir()?;
    generate(python, root, full, tmp.path())?;
    let (fresh, existing) = if full {
        (tmp.path().join("full"), out.join("full"))
    } else {
        (tmp.path().to_path_buf(), out.to_path_buf())
    };

    let produced = util::files_under(&fresh)?;
    let mut unexpected = 0usize;
    let mut same = 0usize;
    println!("comparing a fresh run with {}:", existing.display());
    for rel in &produced {
        let rel_s = rel.to_string_lossy().replace('\\', "/");
        let old = existing.join(rel);
        let reason = expected
            .iter()
            .find(|e| matches(&e.pattern, &rel_s))
            .map(|e| e.reason.as_str());
        if !old.exists() {
            println!("  MISSING     {rel_s} (not in {})", existing.display());
            unexpected += 1;
            continue;
        }
        let identical = util::sha256_file(&old)? == util::sha256_file(&fresh.join(rel))?;
        match (identical, reason) {
            (true, None) => {
                same += 1;
                println!("  identical   {rel_s}");
            }
            (true, Some(_)) => {
                same += 1;
                println!(
                    "  identical   {rel_s} (listed as non-reproducible: update reproducibility.txt?)"
                );
            }
            (false, Some(why)) => println!("  differs     {rel_s} (expected: {why})"),
            (false, None) => {
                unexpected += 1;
                println!("  DIFFERS     {rel_s} (unexpected)");
            }
        }
    }
    // Files in the generated model directories that a fresh run no longer makes.
    let mut dirs: Vec<PathBuf> = produced
        .iter()
        .filter_map(|r| r.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
        let old_dir = existing.join(dir);
        if !old_dir.is_dir() {
            continue;
        }
        for rel in util::files_under(&old_dir)? {
            let rel = dir.join(rel);
            if !produced.contains(&rel) {
                unexpected += 1;
                println!("  STALE       {} (no longer generated)", rel.display());
            }
        }
    }
    println!(
        "{same} of {} files identical; {unexpected} unexpected difference(s)",
        produced.len()
    );
    if unexpected > 0 {
        bail!("fixtures are not reproducible as documented (see fixtures/reproducibility.txt)");
    }
    Ok(())
}
