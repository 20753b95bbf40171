//! `cargo xtask`: project automation that is not part of the product.
//!
//! Everything that needs Python (PyTorch, torchvision, onnxruntime) lives here and
//! runs inside the repository's `.venv`, which `cargo xtask venv` creates from
//! `fixtures/requirements.txt`. The product crates never call Python.
//!
//! Commands:
//! - `venv`: create or update `.venv` (also done implicitly by the others).
//! - `fixtures [--full] [--out DIR] [--check]`: run `fixtures/make_fixtures.py`.
//! - `bench [--quick] [--write] [--no-build]`: incept side by side with onnxruntime and
//!   PyTorch on the full-size model (`xtask/bench/bench.py`).
//! - `interop [--list] [--only NAME]... [--no-build] [--incept PATH]`: the named checks of
//!   `xtask/interop/` against the release `incept` binary.

// xtask is a command-line tool for developers: printing is its user interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod codegen;
mod fixtures;
mod interop;
mod util;
mod venv;

use std::process::ExitCode;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  codegen [--update-proto PATH --onnx-version X.Y.Z]
                                        regenerate crates/incept-onnx/src/proto/onnx.rs from its proto/onnx.proto
  venv [--force]                        create/update .venv from fixtures/requirements.txt
  fixtures [--full] [--out DIR]         regenerate the fixtures (tiny models, or --full size into fixtures/full/)
  fixtures --check [--full] [--out DIR] regenerate into a temp dir and compare with the existing files
  bench [--quick] [--write] [--no-build]
                                        incept vs onnxruntime (speed), incept vs torch.load (load time, memory)
                                        on the full-size model, side by side; --write updates docs/benchmarks.md
  interop [--list] [--only NAME]... [--no-build] [--incept PATH]
                                        run the interop checks (xtask/interop/) against target/release/incept
                                        (built first with cargo build --release -p incept-cli unless --no-build
                                        or --incept PATH is given)
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line, without anyhow's backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        bail!("missing command");
    };
    match cmd.as_str() {
        "codegen" => codegen::run(rest),
        "venv" => venv::cmd(rest),
        "fixtures" => fixtures::cmd(rest),
        "interop" => interop::cmd(rest),
        "bench" => bench::cmd(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown xtask command `{other}`")
        }
    }
}
