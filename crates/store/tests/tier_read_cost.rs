//! What reading a tier costs now that reads merge in the base rows a tier
//! row does not include yet: 12 hours of generated events (2 per second, 2
//! partitions, checkpoints written as the consumer writes them) into SQLite,
//! with tier rows written at every base window close and held back 5
//! minutes, then each tier of three metrics read as stored (`Store::read`)
//! and brought up to date (`query::read_current`), twice each. Prints times
//! and their ratio; asserts nothing about time. Not run by default:
//!
//! ```sh
//! cargo test -p store --test tier_read_cost -- --ignored --nocapture
//! ```

use engine::{CompiledPlan, EngineConfig, Output, Partition};
use std::sync::Arc;
use std::time::Instant;
use store::sqlite::SqliteStore;
use store::{RowFilter, Store, WriteBatch};

const TOPIC: &str = "mta.events";
const NOW_MS: i64 = 4_102_444_800_000;

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn reading_tiers_as_stored_and_brought_up_to_date() {
    for every in [0, 300_000] {
        measure(every);
    }
}

fn measure(every: u64) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let (_, compiled) = dsl::files::compile(&[dir]).expect("pipelines");
    let plan = compiled.plan.expect("pipelines compile");
    let plan = Arc::new(CompiledPlan::new(plan, EngineConfig::default()).expect("runnable"));
    let path = std::env::temp_dir().join(format!("tier-read-cost-{}.db", std::process::id()));
    let mut store = SqliteStore::open(&path.to_string_lossy()).expect("store");
    store.setup(&plan.plan).expect("setup");
    // From 10:00: the day stays open, so the daily tier reads all its base rows.
    let start_ms = 1_717_372_800_000 + 10 * 3_600_000;
    let config = workload::Config { seed: 3, rate_per_s: 2.0, start_ms, ..Default::default() };
    let lines: Vec<String> = workload::Generator::new(config).take(86_400).collect();
    let mut partitions: Vec<Partition> =
        (0..2).map(|p| Partition::new(Arc::clone(&plan), p).with_tier_rows_every(every)).collect();
    let mut offsets = [0i64; 2];
    for chunk in lines.chunks(5_000) {
        let mut out = Output::default();
        for (p, partition) in partitions.iter_mut().enumerate() {
            let mine: Vec<&String> = chunk.iter().skip(p).step_by(2).collect();
            partition.process_all(TOPIC, offsets[p], &mine, NOW_MS, &mut out);
            offsets[p] += mine.len() as i64;
        }
        engine::drop_superseded(&mut out.rows);
        let checkpoints: Vec<_> = partitions.iter().filter_map(Partition::checkpoint).collect();
        let batch =
            WriteBatch { topic: TOPIC, rows: &out.rows, dead_letters: &[], checkpoints: &checkpoints, owners: &[] };
        store.write(&batch).expect("write");
    }
    for name in ["delivery_by_provider", "delivery_latency", "delivery_by_sender"] {
        let m = plan.plan.metrics.iter().position(|x| x.name == name).expect("a shipped metric");
        for tier in 1..plan.plan.metrics[m].tiers.len() {
            let filter = RowFilter { tier, from_ms: None, to_ms: None, equals: vec![], partition: None };
            for _ in 0..2 {
                let started = Instant::now();
                let stored = store.read(&plan.plan, m, &filter).expect("read").len();
                let as_stored = started.elapsed();
                let started = Instant::now();
                let current = store::query::read_current(&store, &plan.plan, m, &filter).expect("read").len();
                let up_to_date = started.elapsed();
                println!(
                    "tier_rows_every {every}: {name} {}: {stored} rows as stored in {as_stored:?}, {current} up to date in {up_to_date:?} ({:.1}x)",
                    plan.plan.metrics[m].tiers[tier].name,
                    up_to_date.as_secs_f64() / as_stored.as_secs_f64().max(1e-9)
                );
            }
        }
    }
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.to_string_lossy()));
    }
}
