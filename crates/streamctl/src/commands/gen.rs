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
    /// Event time of the first event, RFC 3339 or epoch seconds.
    #[arg(long, alias = "start-ts", default_value = "2024-06-03T00:00:00Z", value_parser = parse_time)]
    start: i64,
    /// Fraction of lines replaced by malformed ones (cut short, not JSON,
    /// not an object, not UTF-8, blank, a field missing, of the wrong type or
    /// a bad timestamp).
    #[arg(long, default_value_t = 0.0)]
    bad_ratio: f64,
    /// Leave out engagement events (`opened`, `clicked`).
    #[arg(long)]
    no_engagement: bool,
    /// Print how many events and malformed lines were written, and how fast, to stderr.
    #[arg(long)]
    stats: bool,
    /// Output file; standard output when absent.
    #[arg(long)]
    out: Option<String>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(seconds) = s.parse::<i64>() {
        return seconds.checked_mul(1000).ok_or_else(|| format!("{s} seconds is out of range"));
    }
    engine::value::parse_timestamp(s).ok_or_else(|| "expected an RFC 3339 timestamp or epoch seconds".into())
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = workload::Config {
        seed: args.seed,
        start_ms: args.start,
        rate_per_s: args.rate,
        bad_ratio: args.bad_ratio,
        engagement: !args.no_engagement,
    };
    let writer: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("cannot create `{path}`"))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = BufWriter::with_capacity(1 << 20, writer);
    let mut generator = workload::Generator::new(config);
    let mut line = Vec::with_capacity(1024);
    let started = std::time::Instant::now();
    for _ in 0..args.events {
        generator.next_line(&mut line);
        line.push(b'\n');
        writer.write_all(&line)?;
    }
    writer.flush()?;
    if args.stats {
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "{} events in {elapsed:.2}s ({:.0} events/s), {} malformed",
            args.events,
            args.events as f64 / elapsed.max(1e-9),
            generator.malformed()
        );
    }
    Ok(ExitCode::SUCCESS)
}
