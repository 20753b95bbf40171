//! `incept dump`: the typed IR graph as text.

use anyhow::Result;

use crate::cli::ModelArgs;
use crate::{Outcome, model, output};

/// Runs `incept dump`.
pub fn run(args: &ModelArgs) -> Result<Outcome> {
    let loaded = model::load(args)?;
    loaded.warnings.iter().for_each(|w| output::warning(w));
    output::stdout(&loaded.graph.dump())?;
    Ok(Outcome::Success)
}
