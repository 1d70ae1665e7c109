//! `streamctl gen`: generated delivery events as JSON lines.

use crate::cli::GlobalArgs;
use anyhow::Context;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

/// Write realistic generated MTA delivery events as JSON lines.
///
/// Deterministic: the same arguments give the same lines. The distributions
/// follow the shared workload description (event types, Zipf-distributed
/// senders and recipients, providers, SMTP diagnostics, bounded disorder with
/// 0.1% late events).
#[derive(clap::Args)]
pub struct Args {
    /// Number of events.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Seed of the generated world and stream.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event-time rate, events per second (926/s is 80M a day).
    #[arg(long, default_value_t = 926.0)]
    rate: f64,
    /// Event time of the first event, RFC 3339.
    #[arg(long, default_value = "2024-06-03T00:00:00Z", value_parser = parse_time)]
    start: i64,
    /// Fraction of lines replaced by malformed ones.
    #[arg(long, default_value_t = 0.0)]
    bad_ratio: f64,
    /// Output file; standard output when absent.
    #[arg(long)]
    out: Option<String>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    engine::value::parse_timestamp(s).ok_or_else(|| "expected an RFC 3339 timestamp".into())
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config =
        workload::Config { seed: args.seed, start_ms: args.start, rate_per_s: args.rate, bad_ratio: args.bad_ratio };
    let writer: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("cannot create `{path}`"))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = BufWriter::with_capacity(1 << 20, writer);
    let mut generator = workload::Generator::new(config);
    let mut line = String::with_capacity(1024);
    for _ in 0..args.events {
        generator.next_into(&mut line);
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(ExitCode::SUCCESS)
}
