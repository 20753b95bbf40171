//! The Python environment: `.venv` at the repository root, built from
//! `fixtures/requirements.txt` and stamped with that file's hash so that it is
//! rebuilt (by `pip install`) exactly when the pins change. `INCEPT_VENV` overrides
//! the location; `INCEPT_PYTHON` the interpreter that creates it (default `python3`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util;

const STAMP: &str = ".incept-requirements.sha256";

/// `cargo xtask venv [--force]`.
pub fn cmd(args: &[String]) -> Result<()> {
    let mut force = false;
    for a in args {
        match a.as_str() {
            "--force" => force = true,
            other => bail!("venv: unknown option `{other}`"),
        }
    }
    let python = ensure_with(&util::root(), force)?;
    println!("venv ready: {}", python.display());
    Ok(())
}

/// Makes sure `.venv` exists and matches `fixtures/requirements.txt`; returns its python.
pub fn ensure() -> Result<PathBuf> {
    ensure_with(&util::root(), false)
}

fn ensure_with(root: &Path, force: bool) -> Result<PathBuf> {
    let venv = std::env::var_os("INCEPT_VENV").map_or_else(|| root.join(".venv"), PathBuf::from);
    let python = venv.join("bin").join("python");
    let requirements = root.join("fixtures").join("requirements.txt");
    let wanted = util::sha256_file(&requirements)?;
    let stamp = venv.join(STAMP);
    let current = std::fs::read_to_string(&stamp).unwrap_or_default();
    if !force && python.exists() && current.trim() == wanted {
        return Ok(python);
    }
    let start = Instant::now();
    if !python.exists() {
        let base = std::env::var("INCEPT_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        eprintln!("creating {} with {base}", venv.display());
        util::run(Command::new(&base).arg("-m").arg("venv").arg(&venv))?;
    } else {
        eprintln!(
            "updating {} (requirements.txt changed or no stamp)",
            venv.display()
        );
    }
    util::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&stamp, format!("{wanted}\n"))
        .with_context(|| format!("writing {}", stamp.display()))?;
    eprintln!("venv ready in {:.1}s", start.elapsed().as_secs_f64());
    Ok(python)
}
