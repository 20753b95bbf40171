//! One module per subcommand.

pub mod bench;
pub mod dump;
pub mod report;
pub mod run;
