//! `cargo xtask`: project automation that is not part of the product.

use anyhow::{Result, bail};

mod codegen;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("codegen") => codegen::run(&args[1..]),
        Some(other) => bail!("unknown xtask command `{other}`"),
        None => bail!("usage: cargo xtask <command>"),
    }
}
