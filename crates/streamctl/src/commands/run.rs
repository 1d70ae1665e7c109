//! `streamctl run`: the engine over a file, into a store, without Kafka.

use crate::cli::GlobalArgs;
use crate::lines::{self, Line};
use crate::pipeline;
use anyhow::Context;
use engine::value::format_timestamp;
use engine::{Partition, Reason};
use kafka::batch::Fed;
use std::io::{BufReader, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    /// `0`: at every close; `close` (the default): once, when the tier
    /// window closes (or the input ends). The stored results are the same
    /// whichever is chosen; only the number of writes differs.
    #[arg(long, value_name = "DURATION", default_value = "close", value_parser = parse_every)]
    tier_rows_every: u64,
    /// The time to take as now (RFC 3339 or epoch ms; default: the wall
    /// clock). Lines carry no broker timestamp, so an event more than its
    /// source's `max_future` ahead of this is dead-lettered as
    /// `future_time`, and the retention sweep measures from no later than this.
    #[arg(long, value_name = "TIME", value_parser = super::query::parse_time)]
    now: Option<i64>,
    /// Lines longer than this many bytes are dead-lettered as oversized,
    /// keeping their first 4 KiB, their size and their SHA-256; memory
    /// stays bounded by it.
    #[arg(long, value_name = "BYTES", default_value_t = engine::EngineConfig::default().max_message_bytes)]
    max_message_bytes: usize,
}

/// A duration of the pipeline language (`90s`, `5m`, `1h`) in ms, `0`, or
/// `close` (never before the tier window closes).
fn parse_every(text: &str) -> Result<u64, String> {
    match text {
        "0" => Ok(0),
        "close" => Ok(u64::MAX),
        _ => dsl::parser::parse_duration(text)
            .ok_or_else(|| format!("`{text}` is not a duration such as `5m` (or `0`, or `close`)")),
    }
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let config = engine::EngineConfig { max_message_bytes: args.max_message_bytes };
    let plan = pipeline::load_with(&args.pipelines, config)?;
    let now_ms = args.now.unwrap_or_else(kafka::control::now_ms);
    let topic = match &args.topic {
        Some(t) => t.clone(),
        None => plan.plan.sources.first().map(|s| s.topic.clone()).context("the pipelines declare no source")?,
    };
    let mut store = pipeline::open_store(&args.store, &pipeline::scylla_settings(global)?)?;
    store.setup(&plan.plan)?;
    let (reader, input_bytes): (Box<dyn Read>, Option<u64>) = if args.input == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = std::fs::File::open(&args.input).with_context(|| format!("cannot open `{}`", args.input))?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let mut lines = lines::Lines::new(BufReader::with_capacity(1 << 20, reader), args.max_message_bytes);
    let count = usize::from(args.partitions);
    let partitions: Vec<Partition> = (0..args.partitions)
        .map(|p| Partition::new(plan.clone(), i32::from(p)).with_tier_rows_every(args.tier_rows_every))
        .collect();
    let settings = kafka::batch::Settings {
        workers: kafka::batch::Settings::workers_for(count),
        now_ms,
        flush_messages: args.batch,
        close_at_end: true,
        keep_dead_letters: true,
        checkpoint_topic: None,
    };
    let started = Instant::now();
    let progress = crate::progress::bar(input_bytes, "events");
    let mut blank_lines = 0u64;
    let mut read_error = None;
    let outcome = kafka::batch::run(store.as_mut(), &plan, &topic, partitions, &settings, |feeder| {
        let mut offsets = vec![0i64; count];
        let key_finder = crate::json_key::FieldFinder::new(&args.key);
        let mut bytes = 0u64;
        loop {
            let (line, read) = match lines.next_line() {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(error) => {
                    read_error = Some(error);
                    break;
                }
            };
            bytes += line.len() as u64 + 1;
            if read == Line::Whole && lines::is_blank(line) {
                // A blank line (a file's trailing newline pair) is no message.
                blank_lines += 1;
                continue;
            }
            let (p, truncated) = match read {
                Line::Whole if count > 1 => (partition_of(line, &key_finder, count), None),
                Line::Whole => (0, None),
                Line::Truncated { len, sha256 } => (0, Some((len, sha256))),
            };
            let offset = offsets[p];
            offsets[p] += 1;
            feeder.push(Fed { partition: p, offset, payload: line, key: None, timestamp_ms: None, truncated })?;
            if feeder.messages().is_multiple_of(PROGRESS_EVERY) {
                if input_bytes.is_some() {
                    progress.set_message(format!("{} events", feeder.messages()));
                    progress.set_position(bytes);
                } else {
                    progress.set_position(feeder.messages());
                }
            }
        }
        Ok(())
    });
    progress.finish_and_clear();
    if let Some(error) = read_error {
        return Err(anyhow::Error::new(error).context("cannot read the input"));
    }
    let outcome = outcome?;
    // Retention is measured against the data's own time, so replaying old
    // files keeps their rows; but never from later than now, so however an
    // event's time is wrong, no row is deleted for being old before its time.
    // (Events too far ahead were dead-lettered and moved no event time.)
    let swept_to = outcome.partitions.iter().filter_map(Partition::max_event_time).max().map(|t| t.min(now_ms));
    let rows_deleted = match swept_to {
        Some(at) => store.sweep(&plan.plan, at)?,
        None => 0,
    };
    let mut summary =
        summarise(&plan.plan, &outcome.partitions, outcome.messages, &outcome.rows_written, started.elapsed());
    summary.blank_lines = blank_lines;
    summary.retention = Retention { measured_from: swept_to.map(format_timestamp), rows_deleted };
    print_summary(&summary);
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write `{path}`"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Events between two updates of the progress bar.
const PROGRESS_EVERY: u64 = 16_384;

/// The partition for a line: a stable hash of its `key` field as JSON text
/// (partition 0 when absent or when the line is not a JSON object; a line
/// that is not well-formed JSON may go by what looks like the field).
fn partition_of(line: &[u8], key: &crate::json_key::FieldFinder, partitions: usize) -> usize {
    let fnv = |h: u64, text: &[u8]| text.iter().fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let seed = 0xcbf2_9ce4_8422_2325u64;
    let hash = match key.find(line) {
        // The field's JSON text: a string without escapes is its bytes, quoted.
        Some(crate::json_key::Found::Raw(raw)) => fnv(fnv(fnv(seed, b"\""), raw), b"\""),
        Some(crate::json_key::Found::Absent) => return 0,
        None => {
            let value: Option<serde_json::Value> = serde_json::from_slice(line).ok();
            let Some(text) = value.as_ref().and_then(|v| v.get(key.key())).map(|k| k.to_string()) else { return 0 };
            fnv(seed, text.as_bytes())
        }
    };
    (hash % partitions as u64) as usize
}

#[derive(serde::Serialize)]
struct Summary {
    events_in: u64,
    /// Blank lines skipped (not counted in `events_in`).
    blank_lines: u64,
    dead_letters: u64,
    dead_letters_by_reason: std::collections::BTreeMap<&'static str, u64>,
    late_events: u64,
    rows_written: u64,
    elapsed_s: f64,
    events_per_s: f64,
    metrics: Vec<MetricSummary>,
    retention: Retention,
}

/// What the retention sweep after the run did.
#[derive(serde::Serialize, Default)]
struct Retention {
    /// The time retention was measured from: the newest event time, but
    /// no later than now. `None`: no event, no sweep.
    measured_from: Option<String>,
    /// Rows deleted as past their tier's retention.
    rows_deleted: u64,
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
        blank_lines: 0,
        dead_letters: by_reason.values().sum(),
        late_events: by_reason.get("late").copied().unwrap_or(0),
        dead_letters_by_reason: by_reason,
        rows_written: rows_written.iter().sum(),
        elapsed_s,
        events_per_s: if elapsed_s > 0.0 { lines as f64 / elapsed_s } else { 0.0 },
        metrics,
        retention: Retention::default(),
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
    if s.blank_lines > 0 {
        let _ = writeln!(err, "  blank lines skipped {}", s.blank_lines);
    }
    if let Some(from) = &s.retention.measured_from {
        let _ = writeln!(err, "  retention measured from {from}: {} rows deleted", s.retention.rows_deleted);
    }
    for m in &s.metrics {
        let _ = writeln!(
            err,
            "  metric {:<28} {:>9} events {:>7} rows {:>6} windows {:>5} late {:>5} overflow",
            m.name, m.events, m.rows, m.windows_closed, m.late, m.overflow
        );
    }
}
