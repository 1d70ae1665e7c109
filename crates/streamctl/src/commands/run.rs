//! `streamctl run`: the engine over a file, into a store, without Kafka.

use crate::cli::GlobalArgs;
use crate::pipeline;
use anyhow::Context;
use engine::{Message, MessageMeta, Output, Partition, Reason};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use store::{Store, WriteBatch};

/// Run pipelines over a file of JSON lines, as if it were a Kafka topic, into a store.
#[derive(clap::Args)]
pub struct Args {
    /// Pipeline files or directories.
    #[arg(required = true, value_name = "PIPELINES")]
    pipelines: Vec<String>,
    /// JSON lines to read; `-` for standard input.
    #[arg(long, short)]
    input: String,
    /// Where to write results: `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`.
    #[arg(long, default_value = "sqlite:streams.db")]
    store: String,
    /// Spread lines over this many partitions by the `--key` field.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    partitions: u16,
    /// Field whose value picks a line's partition (with `--partitions`).
    #[arg(long, default_value = "message_id")]
    key: String,
    /// Topic the lines stand for; defaults to the first source's topic.
    #[arg(long)]
    topic: Option<String>,
    /// Lines per store transaction.
    #[arg(long, default_value_t = 50_000)]
    batch: usize,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    summary_json: Option<String>,
    /// Hold tier (rollup) rows back and write them at most once per this
    /// much event time (e.g. `5m`), instead of at every base window close;
    /// the stored results are the same, in fewer writes. `0`: at every close.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_every)]
    tier_rows_every: u64,
}

/// A duration of the pipeline language (`90s`, `5m`, `1h`) in ms, or `0`.
fn parse_every(text: &str) -> Result<u64, String> {
    match text {
        "0" => Ok(0),
        _ => dsl::parser::parse_duration(text).ok_or_else(|| format!("`{text}` is not a duration such as `5m`")),
    }
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let plan = pipeline::load(&args.pipelines)?;
    let topic = match &args.topic {
        Some(t) => t.clone(),
        None => plan.plan.sources.first().map(|s| s.topic.clone()).context("the pipelines declare no source")?,
    };
    let mut store = pipeline::open_store(&args.store)?;
    store.setup(&plan.plan)?;
    let reader: Box<dyn Read> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&args.input).with_context(|| format!("cannot open `{}`", args.input))?)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut partitions: Vec<Partition> = (0..args.partitions)
        .map(|p| Partition::new(plan.clone(), i32::from(p)).with_tier_rows_every(args.tier_rows_every))
        .collect();
    let mut offsets = vec![0i64; partitions.len()];
    let mut out = Output::default();
    let mut line = Vec::with_capacity(1024);
    let started = Instant::now();
    let progress = Progress::new();
    let mut lines = 0u64;
    // Per metric, rows written (a tier row superseded within a flush is not).
    let mut rows_written = vec![0u64; plan.plan.metrics.len()];
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).context("cannot read the input")?;
        if read == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        lines += 1;
        let p = if partitions.len() == 1 { 0 } else { partition_of(&line, &args.key, partitions.len()) };
        let meta = MessageMeta {
            topic: &topic,
            partition: p as i32,
            offset: offsets[p],
            key: None,
            timestamp_ms: None,
            headers: &[],
        };
        offsets[p] += 1;
        partitions[p].process(&Message { payload: &line, meta }, 0, &mut out);
        if lines.is_multiple_of(args.batch as u64) {
            flush(store.as_mut(), &plan.plan, &topic, &partitions, &mut out, &mut rows_written)?;
            progress.show(lines, started);
        }
    }
    for p in &mut partitions {
        p.close_all(&mut out);
    }
    flush(store.as_mut(), &plan.plan, &topic, &partitions, &mut out, &mut rows_written)?;
    // Retention is measured against the data's own time, so replaying old files keeps their rows.
    if let Some(now) = partitions.iter().filter_map(Partition::max_event_time).max() {
        store.sweep(&plan.plan, now)?;
    }
    progress.clear();
    let summary = summarise(&plan.plan, &partitions, lines, &rows_written, started.elapsed());
    print_summary(&summary);
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write `{path}`"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes what the partitions produced, with their checkpoints, and
/// counts the rows written into `rows_written` (per metric).
fn flush(
    store: &mut dyn Store,
    plan: &dsl::Plan,
    topic: &str,
    partitions: &[Partition],
    out: &mut Output,
    rows_written: &mut [u64],
) -> anyhow::Result<()> {
    let checkpoints: Vec<_> = partitions.iter().filter_map(Partition::checkpoint).collect();
    engine::drop_superseded(&mut out.rows);
    store.write(
        plan,
        &WriteBatch { topic, rows: &out.rows, dead_letters: &out.dead_letters, checkpoints: &checkpoints, owners: &[] },
    )?;
    out.rows.iter().for_each(|row| rows_written[row.metric] += 1);
    out.rows.clear();
    out.dead_letters.clear();
    Ok(())
}

/// The partition for a line: a stable hash of its `key` field (partition 0 when absent).
fn partition_of(line: &[u8], key: &str, partitions: usize) -> usize {
    let value: Option<serde_json::Value> = serde_json::from_slice(line).ok();
    let Some(text) = value.as_ref().and_then(|v| v.get(key)).map(|k| k.to_string()) else { return 0 };
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (hash % partitions as u64) as usize
}

#[derive(serde::Serialize)]
struct Summary {
    events_in: u64,
    dead_letters: u64,
    dead_letters_by_reason: std::collections::BTreeMap<&'static str, u64>,
    late_events: u64,
    rows_written: u64,
    elapsed_s: f64,
    events_per_s: f64,
    metrics: Vec<MetricSummary>,
}

#[derive(serde::Serialize)]
struct MetricSummary {
    name: String,
    events: u64,
    late: u64,
    overflow: u64,
    windows_closed: u64,
    rows: u64,
}

fn summarise(
    plan: &dsl::Plan,
    partitions: &[Partition],
    lines: u64,
    rows_written: &[u64],
    elapsed: Duration,
) -> Summary {
    let mut by_reason = std::collections::BTreeMap::new();
    for reason in Reason::ALL {
        let n: u64 = partitions.iter().map(|p| p.stats().dead_letters_for(reason)).sum();
        if n > 0 {
            by_reason.insert(reason.as_str(), n);
        }
    }
    let metrics: Vec<MetricSummary> = plan
        .metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let sum = |f: fn(&engine::partition::MetricStats) -> u64| {
                partitions.iter().map(|p| f(&p.stats().metrics[i])).sum()
            };
            MetricSummary {
                name: m.name.clone(),
                events: sum(|s| s.events),
                late: sum(|s| s.late),
                overflow: sum(|s| s.overflow),
                windows_closed: sum(|s| s.windows_closed),
                rows: rows_written[i],
            }
        })
        .collect();
    let elapsed_s = elapsed.as_secs_f64();
    Summary {
        events_in: lines,
        dead_letters: by_reason.values().sum(),
        late_events: by_reason.get("late").copied().unwrap_or(0),
        dead_letters_by_reason: by_reason,
        rows_written: rows_written.iter().sum(),
        elapsed_s,
        events_per_s: if elapsed_s > 0.0 { lines as f64 / elapsed_s } else { 0.0 },
        metrics,
    }
}

fn print_summary(s: &Summary) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{} events in {:.2}s ({:.0} events/s): {} rows written, {} dead letters ({} late)",
        s.events_in, s.elapsed_s, s.events_per_s, s.rows_written, s.dead_letters, s.late_events
    );
    for (reason, n) in &s.dead_letters_by_reason {
        let _ = writeln!(err, "  dead letters {reason:<15} {n}");
    }
    for m in &s.metrics {
        let _ = writeln!(
            err,
            "  metric {:<28} {:>9} events {:>7} rows {:>6} windows {:>5} late {:>5} overflow",
            m.name, m.events, m.rows, m.windows_closed, m.late, m.overflow
        );
    }
}

/// A one-line progress display, only when stderr is a terminal.
struct Progress {
    is_terminal: bool,
}

impl Progress {
    fn new() -> Self {
        Progress { is_terminal: std::io::stderr().is_terminal() }
    }

    fn show(&self, lines: u64, started: Instant) {
        if self.is_terminal {
            let rate = lines as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprint!("\r{lines} events, {rate:.0} events/s   ");
        }
    }

    fn clear(&self) {
        if self.is_terminal {
            eprint!("\r{:60}\r", "");
        }
    }
}
