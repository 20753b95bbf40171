//! `incept report`: the layer-by-layer shape, parameter and MAC report.

use anyhow::Result;
use incept_verify::{Format, Report};

use crate::cli::{ReportArgs, ReportFormat};
use crate::{Outcome, model, output};

/// Runs `incept report`.
pub fn run(args: &ReportArgs) -> Result<Outcome> {
    let loaded = model::load(&args.model)?;
    let report = Report::new(
        &loaded.graph,
        &loaded.source,
        args.batch as usize,
        loaded.warnings,
    )?;
    let format = match args.format {
        ReportFormat::Table => Format::Table,
        ReportFormat::Yaml => Format::Yaml,
        ReportFormat::Json => Format::Json,
    };
    // Warnings travel inside the YAML/JSON; the table prints them at its end.
    if format != Format::Table {
        report.warnings.iter().for_each(|w| output::warning(w));
    }
    output::stdout(&report.render(format)?)?;
    Ok(Outcome::Success)
}
