//! Tier rows held back answer like tier rows rewritten at every base window
//! close: the same events through the engine and SQLite with
//! `tier_rows_every` 0, 5 minutes and `close` (tier rows written only when
//! their tier window closes) give the same answer for every metric and
//! tier, merged per series and as totals, whole and from a tier boundary,
//! after each of several flushes mid-stream and at the end; and at the end
//! the stored rows are the same. Held back 5 minutes once more without
//! checkpoints, the reads that cannot be bounded by them (as on a store
//! that cannot list them) answer the same too.

use engine::{CompiledPlan, EngineConfig, Output, Partition};
use std::sync::Arc;
use store::query::{run, Query};
use store::sqlite::SqliteStore;
use store::{RowFilter, Store, WriteBatch};

const TOPIC: &str = "mta.events";
/// The processing time (2100-01-01): after every event time here.
const NOW_MS: i64 = 4_102_444_800_000;
const PARTITIONS: i32 = 2;
const FIVE_MINUTES: u64 = 300_000;

fn plan() -> Arc<CompiledPlan> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let (_, compiled) = dsl::files::compile(&[dir]).expect("pipelines");
    assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
    let plan = compiled.plan.expect("checked above");
    Arc::new(CompiledPlan::new(plan, EngineConfig::default()).expect("runnable"))
}

/// One way of writing: its partitions and the store they flush into.
struct Writer {
    every: u64,
    /// Whether checkpoints are written with the rows.
    checkpoints: bool,
    partitions: Vec<Partition>,
    next_offset: Vec<i64>,
    store: SqliteStore,
}

impl Writer {
    fn new(plan: &Arc<CompiledPlan>, (every, checkpoints): (u64, bool)) -> Self {
        let mut store = SqliteStore::open(":memory:").expect("store");
        store.setup(&plan.plan).expect("setup");
        Writer {
            every,
            checkpoints,
            partitions: (0..PARTITIONS)
                .map(|p| Partition::new(Arc::clone(plan), p).with_tier_rows_every(every))
                .collect(),
            next_offset: vec![0; PARTITIONS as usize],
            store,
        }
    }

    /// Processes `lines` (line `i` to partition `i % PARTITIONS`), then
    /// flushes what they produced with the partitions' checkpoints, as the
    /// consumer does; at the end of the input, closes every window first.
    fn feed(&mut self, lines: &[String], end: bool) {
        let mut out = Output::default();
        for (p, partition) in self.partitions.iter_mut().enumerate() {
            let mine = lines.iter().skip(p).step_by(PARTITIONS as usize);
            let first = self.next_offset[p];
            self.next_offset[p] += mine.clone().count() as i64;
            partition.process_all(TOPIC, first, mine, NOW_MS, &mut out);
            if end {
                partition.close_all(&mut out);
            }
        }
        engine::drop_superseded(&mut out.rows);
        let checkpoints: Vec<_> = if self.checkpoints {
            self.partitions.iter().filter_map(Partition::checkpoint).collect()
        } else {
            Vec::new()
        };
        let batch =
            WriteBatch { topic: TOPIC, rows: &out.rows, dead_letters: &[], checkpoints: &checkpoints, owners: &[] };
        self.store.write(&batch).expect("write");
    }

    /// Every tier's answer for every metric (base windows are written the
    /// same either way: compared at the end): per series and as totals
    /// over everything, and per series from `from_ms` on.
    fn answers(&self, plan: &dsl::Plan, from_ms: i64) -> Vec<String> {
        let mut answers = Vec::new();
        for metric in &plan.metrics {
            for tier in &metric.tiers[1..] {
                for (group_by, from) in [(None, None), (Some(vec![]), None), (None, Some(from_ms))] {
                    let query = Query {
                        metric: metric.name.clone(),
                        tier: Some(tier.name.clone()),
                        from_ms: from,
                        group_by: group_by.clone(),
                        ..Query::default()
                    };
                    let result = run(&self.store, plan, &query).expect("query");
                    answers.push(format!("{} {} {group_by:?} {from:?}: {:?}", metric.name, tier.name, result.rows));
                }
            }
        }
        answers
    }

    /// The stored tier rows (not merged with base rows), for telling
    /// whether rows were held back.
    fn stored_tier_rows(&self, plan: &dsl::Plan) -> Vec<String> {
        let mut lines = Vec::new();
        for (m, metric) in plan.metrics.iter().enumerate() {
            for tier in 1..metric.tiers.len() {
                let filter = RowFilter { tier, from_ms: None, to_ms: None, equals: vec![], partition: None };
                for row in self.store.read(plan, m, &filter).expect("read") {
                    let values: Vec<_> = row.states.iter().map(engine::aggregate::AggState::finish).collect();
                    lines.push(format!(
                        "{} {tier} {} {} {:?} {values:?}",
                        metric.name, row.window_start, row.partition, row.keys
                    ));
                }
            }
        }
        lines
    }
}

#[test]
fn answers_do_not_depend_on_whether_tier_rows_were_held_back() {
    let plan = plan();
    // Six hours of event time from 20:00 at 0.3 events per second:
    // the first day's tier window closes, the second's stays open until
    // the end.
    let start_ms = 1_717_372_800_000 + 20 * 3_600_000;
    let config = workload::Config { seed: 28, rate_per_s: 0.3, start_ms, ..Default::default() };
    let lines: Vec<String> = workload::Generator::new(config).take(6_480).collect();
    let mut writers: Vec<Writer> = [(0, true), (FIVE_MINUTES, true), (u64::MAX, true), (FIVE_MINUTES, false)]
        .into_iter()
        .map(|setting| Writer::new(&plan, setting))
        .collect();
    // Flushes every 780 events (about 43 minutes, off the hour
    // boundaries); answers compared at 21:26, 23:36 and 01:01 and at the
    // end (02:00).
    let chunks: Vec<&[String]> = lines.chunks(780).collect();
    let mut compared = 0;
    let mut held_back_seen = [false; 3];
    for (i, chunk) in chunks.iter().enumerate() {
        let end = i + 1 == chunks.len();
        for writer in &mut writers {
            writer.feed(chunk, end);
        }
        if ![1, 4, 6].contains(&i) && !end {
            continue;
        }
        // From the start of the second day: a boundary of every tier.
        let from = (start_ms / 86_400_000 + 1) * 86_400_000;
        let expected = writers[0].answers(&plan.plan, from);
        let stored = writers[0].stored_tier_rows(&plan.plan);
        for (w, writer) in writers.iter().enumerate().skip(1) {
            let answers = writer.answers(&plan.plan, from);
            assert_eq!(answers.len(), expected.len());
            for (theirs, ours) in answers.iter().zip(&expected) {
                let (every, checkpoints) = (writer.every, writer.checkpoints);
                assert_eq!(
                    theirs,
                    ours,
                    "tier_rows_every {every} (checkpoints: {checkpoints}) after {} events",
                    (i + 1) * 780
                );
            }
            held_back_seen[w - 1] |= writer.stored_tier_rows(&plan.plan) != stored;
        }
        compared += 1;
    }
    assert!(compared >= 4, "answers compared {compared} times");
    // Otherwise the test would not show that readers merge what was held back.
    assert_eq!(held_back_seen, [true; 3], "the stored tier rows differed mid-stream (5m, close, 5m)");

    // At the end every tier row is written: the stores hold the same rows
    // (distinct counts compared by their estimates).
    let expected = store::snapshot(&writers[0].store, &plan.plan).expect("snapshot");
    assert!(expected.iter().any(|line| line.contains(" 1d ")), "a daily row is stored");
    for writer in &writers[1..] {
        assert_eq!(store::snapshot(&writer.store, &plan.plan).expect("snapshot"), expected, "every {}", writer.every);
    }
}
