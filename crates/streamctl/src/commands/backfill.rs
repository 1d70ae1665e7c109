//! `streamctl backfill`: metrics over a topic's history, handing over to the
//! live consumer at the offsets where it started them (see
//! `kafka::backfill`).

use crate::cli::GlobalArgs;
use crate::pipeline;
use anyhow::Context;
use kafka::backfill::{self, Range};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Compute metrics over a topic's history, up to where the live consumer started them.
#[derive(clap::Args)]
pub struct Args {
    /// Pipeline files or directories (as deployed).
    #[arg(required = true, value_name = "PIPELINES")]
    pipelines: Vec<String>,
    /// A metric to backfill (repeat for several).
    #[arg(long = "metric", required = true, value_name = "NAME")]
    metrics: Vec<String>,
    /// Start at the first message of this time (RFC 3339 or epoch ms).
    #[arg(long, value_name = "TIME", value_parser = super::query::parse_time)]
    from: i64,
    /// Stop before the first message of this time, if that comes before the switch offsets.
    #[arg(long, value_name = "TIME", value_parser = super::query::parse_time)]
    to: Option<i64>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "STREAMD_BROKERS")]
    brokers: String,
    /// The store the live consumer writes to: `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`.
    #[arg(long)]
    store: String,
    /// The backfill's own consumer group id (it commits nothing: its progress is in the store).
    #[arg(long, default_value = "streamctl-backfill")]
    group: String,
    /// The topic to read; defaults to the first source's topic.
    #[arg(long)]
    topic: Option<String>,
    /// Messages per store transaction.
    #[arg(long, default_value_t = 50_000)]
    batch: usize,
    /// Worker threads (default: one per core, at most one per partition).
    #[arg(long)]
    workers: Option<usize>,
    /// Say how many messages and which offsets of each partition it would read, and read none.
    #[arg(long)]
    dry_run: bool,
    /// Seconds to wait for the brokers.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let full = pipeline::load(&args.pipelines)?;
    let job = Job {
        metrics: args.metrics,
        from_ms: args.from,
        to_ms: args.to,
        brokers: args.brokers,
        store: args.store,
        scylla: pipeline::scylla_settings(global)?,
        group: args.group,
        topic: args.topic,
        batch: args.batch,
        workers: args.workers,
        timeout: Duration::from_secs(args.timeout),
    };
    backfill(&full.plan, &job, args.dry_run, Duration::ZERO)?;
    Ok(ExitCode::SUCCESS)
}

/// A backfill to run: what `streamctl backfill` and `deploy --backfill` ask for.
pub struct Job {
    /// The metrics to backfill.
    pub metrics: Vec<String>,
    /// From this time (ms since the epoch).
    pub from_ms: i64,
    /// Up to this time, if before the switch.
    pub to_ms: Option<i64>,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The live store.
    pub store: String,
    /// Settings of a `scylla:` store.
    pub scylla: store::scylla::ScyllaConfig,
    /// The backfill's group id.
    pub group: String,
    /// The topic; the first source's when `None`.
    pub topic: Option<String>,
    /// Messages per transaction.
    pub batch: usize,
    /// Worker threads; one per core when `None`.
    pub workers: Option<usize>,
    /// How long to wait for the brokers.
    pub timeout: Duration,
}

/// Runs `job` over `full` (the deployed plan). Waits up to `wait_for_start`
/// for the live consumer to have started the metrics on every partition
/// (its first checkpoint after applying the deploy).
pub fn backfill(full: &dsl::Plan, job: &Job, dry_run: bool, wait_for_start: Duration) -> anyhow::Result<()> {
    let only = backfill::only_metrics(full, &job.metrics)?;
    let plan =
        Arc::new(engine::CompiledPlan::new(only, engine::EngineConfig::default()).context("the plan cannot run")?);
    let topic = match &job.topic {
        Some(t) => t.clone(),
        None => plan.plan.sources.first().map(|s| s.topic.clone()).context("the pipelines declare no source")?,
    };
    let mut store = pipeline::open_store(&job.store, &job.scylla)?;
    store.setup(&plan.plan)?;
    let settings = backfill::Settings {
        brokers: job.brokers.clone(),
        group_id: job.group.clone(),
        librdkafka: Vec::new(),
        topic,
        from_ms: job.from_ms,
        to_ms: job.to_ms,
        flush_messages: job.batch,
        workers: job.workers.unwrap_or_else(|| kafka::batch::Settings::workers_for(usize::MAX)),
        now_ms: kafka::control::now_ms(),
        timeout: job.timeout,
    };
    let waiting = Instant::now();
    let ranges = loop {
        match backfill::plan_ranges(store.as_ref(), &plan.plan, &settings) {
            Ok(ranges) => break ranges,
            Err(kafka::Error::Backfill(why)) if why.contains("not started") && waiting.elapsed() < wait_for_start => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(error) => return Err(error.into()),
        }
    };
    print_ranges(&ranges);
    if dry_run {
        return Ok(());
    }
    let total: u64 = ranges.iter().filter(|r| !r.is_done()).map(Range::remaining).sum();
    let started = Instant::now();
    let progress = crate::progress::bar(Some(total), "messages");
    let summary = backfill::run(store.as_mut(), &plan, &ranges, &settings, |n| {
        progress.set_position(n);
        progress.set_message(format!("{n} messages"));
    });
    progress.finish_and_clear();
    let summary = summary?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "backfilled {} messages of {} partitions in {elapsed:.2}s ({:.0} messages/s)",
        summary.messages,
        summary.partitions,
        summary.messages as f64 / elapsed.max(1e-9)
    );
    for (metric, rows) in plan.plan.metrics.iter().zip(&summary.rows_written) {
        eprintln!("  metric {:<28} {rows:>9} rows", metric.name);
    }
    Ok(())
}

fn print_ranges(ranges: &[Range]) {
    let total: u64 = ranges.iter().filter(|r| !r.is_done()).map(Range::remaining).sum();
    eprintln!("{total} messages to read (offsets from the time asked up to the live consumer's switch):");
    for r in ranges {
        let state = if r.is_done() {
            "done".to_string()
        } else if r.done_through.is_some() {
            format!("resumes at {}", r.resume_offset)
        } else {
            "to do".to_string()
        };
        eprintln!(
            "  partition {:>3}: offsets {}..{} ({} messages), {state}",
            r.partition,
            r.from_offset,
            r.switch_offset,
            u64::try_from(r.switch_offset - r.from_offset).unwrap_or(0)
        );
    }
}
