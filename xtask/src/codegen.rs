//! `cargo xtask codegen`: regenerates incept-onnx's checked-in protobuf code
//! (`crates/incept-onnx/src/proto/onnx.rs`) from its checked-in `proto/onnx.proto`.
//!
//! `--update-proto PATH --onnx-version X.Y.Z` first replaces the checked-in
//! proto with the one at PATH (from the `onnx` wheel), under a header naming
//! its origin. The generation itself lives in `crates/incept-onnx/codegen/`,
//! shared with the test that checks the checked-in code has not drifted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

#[path = "../../crates/incept-onnx/codegen/generate.rs"]
mod generate;

/// Runs `cargo xtask codegen [--update-proto PATH --onnx-version X.Y.Z]`.
pub fn run(args: &[String]) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf();
    let crate_dir = root.join("crates/incept-onnx");
    let mut update: Option<PathBuf> = None;
    let mut version: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--update-proto" => {
                update = Some(it.next().context("--update-proto needs a path")?.into())
            }
            "--onnx-version" => {
                version = Some(it.next().context("--onnx-version needs a version")?.clone())
            }
            other => bail!("codegen: unknown argument `{other}`"),
        }
    }
    if let Some(src) = update {
        let version = version.context("--update-proto needs --onnx-version")?;
        let text =
            std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
        let dest = crate_dir.join("proto/onnx.proto");
        std::fs::write(&dest, format!("{}{text}", generate::proto_header(&version)))
            .with_context(|| format!("writing {}", dest.display()))?;
        eprintln!("wrote {}", dest.display());
    }
    let scratch = std::env::temp_dir().join(format!("incept-codegen-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let code = generate::generate(&crate_dir, &scratch).map_err(|e| anyhow!("codegen: {e}"));
    std::fs::remove_dir_all(&scratch)?;
    let out = crate_dir.join("src/proto/onnx.rs");
    std::fs::write(&out, code?).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
