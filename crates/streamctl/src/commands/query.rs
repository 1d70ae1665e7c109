//! `streamctl query`: merged rows of a metric from a store.

use crate::cli::{GlobalArgs, OutputFormat};
use crate::pipeline;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;

/// Read a metric's rows from a store, merged across partitions.
#[derive(clap::Args)]
pub struct Args {
    /// Metric name.
    metric: String,
    /// Where the results are: `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`.
    #[arg(long, default_value = "sqlite:streams.db")]
    store: String,
    /// The pipelines that wrote them (to know the metric's layout).
    #[arg(long, default_value = "pipelines/")]
    pipelines: Vec<String>,
    /// Keep rows whose group-by column equals a value: `--where sender_domain=example.com`.
    #[arg(long = "where", value_name = "COLUMN=VALUE", value_parser = parse_condition)]
    conditions: Vec<(String, String)>,
    /// Windows starting at or after (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// Windows starting before (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    /// Tier to read: `1m`, `1h`, `1d` … (the finest by default).
    #[arg(long)]
    tier: Option<String>,
    /// Keep only these group-by columns, merging over the rest (comma-separated; `''` for totals).
    #[arg(long, value_delimiter = ',')]
    group_by: Option<Vec<String>>,
    /// `text` (a table) or `json`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

fn parse_condition(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.trim().to_string(), v.to_string())).ok_or_else(|| "expected COLUMN=VALUE".into())
}

pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .ok()
        .or_else(|| engine::value::parse_timestamp(s))
        .ok_or_else(|| "expected RFC 3339 or epoch milliseconds".into())
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let plan = pipeline::load(&args.pipelines)?;
    let store =
        pipeline::open_existing_store(&args.store, &pipeline::scylla_settings(global)?, "; run `streamctl run` first")?;
    let query = store::query::Query {
        metric: args.metric,
        tier: args.tier,
        from_ms: args.from,
        to_ms: args.to,
        filters: args.conditions,
        group_by: args.group_by.map(|names| names.into_iter().filter(|n| !n.is_empty()).collect()),
    };
    let result = store::query::run(store.as_ref(), &plan.plan, &query).context("query failed")?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &result)?;
            writeln!(stdout)?;
        }
        OutputFormat::Text => write_table(&mut stdout, &result)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write_table(out: &mut impl Write, result: &store::query::QueryResult) -> std::io::Result<()> {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.4}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = result.rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let widths: Vec<usize> = result
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<&str>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(result.columns.iter().map(String::as_str).collect()))?;
    for row in &cells {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    writeln!(out, "({} rows, {} tier)", result.rows.len(), result.tier)
}
