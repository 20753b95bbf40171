//! Checking models: layer-by-layer reports of shapes, parameters and
//! multiply-accumulates, rendered as a table, YAML or JSON.
//!
//! Works on any [`incept_ir::Graph`]; it never reads files itself.

pub mod report;
pub mod stats;

pub use report::{Format, LayerRow, Report, ReportError, Section, Sum, Totals};
pub use stats::{ErrorStats, error_stats};
