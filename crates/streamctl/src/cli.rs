//! Command-line arguments.

use crate::commands::{
    alerts, backfill, check, classify, dashboards, deploy, episodes, explain, fmt, gen, query, run, test,
};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Check, explain and format stream pipelines.
#[derive(Parser)]
#[command(name = "streamctl", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args)]
pub struct GlobalArgs {
    /// streamd's configuration file (`streamd.toml`): its `[store.scylla]`
    /// settings (replication, consistency, local data centre) apply to a
    /// `scylla:` store, as they do in streamd.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Parse and type-check pipeline files, printing every diagnostic.
    Check(check::Args),
    /// Compile pipelines and print the execution plan.
    Explain(explain::Args),
    /// Rewrite pipeline files in the canonical format.
    Fmt(fmt::Args),
    /// Run pipelines over a file of JSON lines into a store, without Kafka.
    Run(run::Args),
    /// Compute metrics over a topic's history, up to where the live consumer started them.
    Backfill(backfill::Args),
    /// Read a metric's rows from a store, merged across partitions.
    Query(query::Args),
    /// Read DNSBL listing episodes (the history of `dnsbl` sources) from a store.
    Episodes(episodes::Args),
    /// Run pipeline unit tests (`*.test.json` fixtures).
    Test(test::Args),
    /// Classify JSON lines of SMTP replies with a classifier (default: the standard `bounce`).
    Classify(classify::Args),
    /// Write generated delivery events as JSON lines.
    Gen(gen::Args),
    /// Compile `alert` definitions into a Prometheus alerting rules file.
    Alerts(alerts::Args),
    /// Generate Grafana dashboards: one per pipeline file, and one for streamd.
    Dashboards(dashboards::Args),
    /// Publish a directory of pipelines to the live fleet (applied without restart).
    Deploy(deploy::DeployArgs),
    /// Compare a directory with what is deployed.
    Diff(deploy::DiffArgs),
    /// Show each live streamd: applied version, assignment, health, refusals.
    Status(deploy::StatusArgs),
    /// Republish an earlier version.
    Rollback(deploy::RollbackArgs),
    /// List every deployed version.
    History(deploy::HistoryArgs),
}

/// How to print results.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// For machines: one JSON document on stdout.
    Json,
}
