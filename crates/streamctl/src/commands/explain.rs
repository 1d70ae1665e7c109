//! `streamctl explain`: the compiled plan.

use crate::cli::{GlobalArgs, OutputFormat};
use std::io::Write;
use std::process::ExitCode;

/// Compile pipelines and print the execution plan.
#[derive(clap::Args)]
pub struct Args {
    /// Pipeline files, or directories searched for `*.stream` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// `text` for people, `json` for the exact serialised plan the engine runs.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let (_, compiled) = dsl::files::compile(&args.paths)?;
    if !compiled.diagnostics.is_empty() {
        eprintln!("{}", compiled.render_diagnostics());
    }
    let Some(plan) = compiled.plan else {
        return Ok(super::bad_pipelines());
    };
    let mut stdout = std::io::stdout().lock();
    match args.format {
        OutputFormat::Text => write!(stdout, "{}", dsl::explain(&plan))?,
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &plan)?;
            writeln!(stdout)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
