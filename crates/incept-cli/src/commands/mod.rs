//! One module per subcommand.

pub mod bench;
pub mod convert;
pub mod dump;
pub mod inspect;
pub mod report;
pub mod run;
