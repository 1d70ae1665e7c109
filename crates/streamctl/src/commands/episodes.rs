//! `streamctl episodes`: the DNSBL listing history of `dnsbl` sources, one
//! line per listing from its first observation to its last.

use crate::cli::{GlobalArgs, OutputFormat};
use crate::commands::query::parse_time;
use crate::pipeline;
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use store::episodes::{Episode, EpisodeFilter};

/// Read DNSBL listing episodes from a store.
#[derive(clap::Args)]
pub struct Args {
    /// Where they are: `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`.
    #[arg(long, default_value = "sqlite:streams.db")]
    store: String,
    /// Only this list.
    #[arg(long)]
    list: Option<String>,
    /// Only this target (address or domain).
    #[arg(long)]
    target: Option<String>,
    /// Only listings lasting at or after (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// Only listings that began before (RFC 3339 or epoch ms).
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    /// Only listings that still last.
    #[arg(long)]
    open: bool,
    /// `text` (a table) or `json`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let store = pipeline::open_existing_store(&args.store, &pipeline::scylla_settings(global)?, "")?;
    let filter = EpisodeFilter {
        list: args.list,
        target: args.target,
        from_ms: args.from,
        to_ms: args.to,
        open_only: args.open,
    };
    let episodes = store.episodes(&filter).context("cannot read the episodes")?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &episodes)?;
            writeln!(stdout)?;
        }
        OutputFormat::Text => write_table(&mut stdout, &episodes)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write_table(out: &mut impl Write, episodes: &[Episode]) -> std::io::Result<()> {
    let time = engine::value::format_timestamp;
    let header = ["list", "target", "first_seen", "last_seen", "ended", "duration_s", "code", "first_txt"];
    let rows: Vec<[String; 8]> = episodes
        .iter()
        .map(|e| {
            [
                e.list.clone(),
                e.target.clone(),
                time(e.first_seen_ms),
                time(e.last_seen_ms),
                e.ended_ms.map_or_else(|| "open".to_string(), time),
                (e.duration_ms() / 1000).to_string(),
                e.code.clone(),
                e.first_txt.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    writeln!(out, "({} episode(s))", rows.len())
}
