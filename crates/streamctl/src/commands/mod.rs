//! One module per subcommand.

pub mod alerts;
pub mod backfill;
pub mod check;
pub mod classify;
pub mod dashboards;
pub mod deploy;
pub mod episodes;
pub mod explain;
pub mod fmt;
pub mod gen;
pub mod query;
pub mod run;
pub mod test;

use std::process::ExitCode;

/// Exit code for pipelines with errors (sysexits `EX_DATAERR`).
pub const EXIT_BAD_PIPELINES: u8 = 65;

/// The exit code for bad pipelines.
pub fn bad_pipelines() -> ExitCode {
    ExitCode::from(EXIT_BAD_PIPELINES)
}
