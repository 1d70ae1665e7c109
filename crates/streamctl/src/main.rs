//! `streamctl`: check, explain and format stream pipelines.

mod cli;
mod commands;
mod json_key;
mod lines;
mod pipeline;
mod progress;
mod promql;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Check(args) => commands::check::run(&cli.global, args),
        cli::Command::Explain(args) => commands::explain::run(&cli.global, args),
        cli::Command::Fmt(args) => commands::fmt::run(&cli.global, args),
        cli::Command::Run(args) => commands::run::run(&cli.global, args),
        cli::Command::Backfill(args) => commands::backfill::run(&cli.global, args),
        cli::Command::Query(args) => commands::query::run(&cli.global, args),
        cli::Command::Episodes(args) => commands::episodes::run(&cli.global, args),
        cli::Command::Test(args) => commands::test::run(&cli.global, args),
        cli::Command::Classify(args) => commands::classify::run(&cli.global, args),
        cli::Command::Gen(args) => commands::gen::run(&cli.global, args),
        cli::Command::Alerts(args) => commands::alerts::run(&cli.global, args),
        cli::Command::Dashboards(args) => commands::dashboards::run(&cli.global, args),
        cli::Command::Deploy(args) => commands::deploy::deploy(&cli.global, args),
        cli::Command::Diff(args) => commands::deploy::diff(&cli.global, args),
        cli::Command::Status(args) => commands::deploy::status(&cli.global, args),
        cli::Command::Rollback(args) => commands::deploy::rollback(&cli.global, args),
        cli::Command::History(args) => commands::deploy::history(&cli.global, args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writing to a closed pipe (`streamctl explain … | head`) is not a failure.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
