//! The `incept` binary: argument parsing, dispatch and exit codes.
//!
//! Exit codes: 0 success, 1 a check failed, 2 an error (bad arguments, a
//! file that cannot be read). Errors go to stderr as one paragraph.

mod alloc;
mod cli;
mod commands;
mod input;
mod model;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

#[global_allocator]
static ALLOCATOR: alloc::HugePages = alloc::HugePages;

/// What a successful command concluded.
pub enum Outcome {
    /// Everything checked out.
    Success,
    /// The command ran, and what it checked failed.
    CheckFailed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report(args) => commands::report::run(&args),
        Command::Dump(args) => commands::dump::run(&args),
        Command::Run(args) => commands::run::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Convert(args) => commands::convert::run(&args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(err) => {
            output::error(&err);
            ExitCode::from(2)
        }
    }
}
