//! The batch path (`kafka::batch`): partitions on worker threads and the
//! store written from its own thread must store exactly what one thread
//! running the partitions in turn stores, whatever the number of workers
//! and however small the transactions.

mod common;

use engine::{CompiledPlan, Message, Output, Partition};
use kafka::batch::{Fed, Settings};
use std::sync::Arc;
use store::sqlite::SqliteStore;
use store::{Store, WriteBatch};

const TOPIC: &str = "mta.events";
const NOW_MS: i64 = 4_102_444_800_000;

fn plan() -> Arc<CompiledPlan> {
    common::pipelines_plan()
}

/// Generated lines (some malformed) with their partition among `partitions`.
fn events(n: usize, partitions: usize) -> Vec<(usize, Vec<u8>)> {
    let config = workload::Config { seed: 23, rate_per_s: 60.0, bad_ratio: 0.01, ..Default::default() };
    let mut generator = workload::Generator::new(config);
    (0..n)
        .map(|i| {
            let mut line = Vec::new();
            generator.next_line(&mut line);
            ((i * 7 + i / 5) % partitions, line)
        })
        .collect()
}

fn store(dir: &std::path::Path, name: &str, plan: &CompiledPlan) -> SqliteStore {
    let path = dir.join(name);
    let mut store = SqliteStore::open(path.to_str().expect("utf-8")).expect("open store");
    store.setup(&plan.plan).expect("setup");
    store
}

/// Everything stored: rows of every metric and tier, dead letters, checkpoints.
fn contents(store: &SqliteStore, plan: &CompiledPlan, partitions: usize) -> Vec<String> {
    let mut lines = store::snapshot(store, &plan.plan).expect("snapshot");
    for dead in store.dead_letters(TOPIC).expect("dead letters") {
        lines.push(format!("dead {} {} {} {}", dead.partition, dead.offset, dead.reason, dead.detail));
    }
    for p in 0..partitions {
        lines.push(format!("checkpoint {:?}", store.checkpoint(TOPIC, p as i32).expect("checkpoint")));
    }
    lines
}

#[test]
fn workers_and_a_writer_thread_store_what_one_thread_stores() {
    let plan = plan();
    let partitions = 3;
    let events = events(12_000, partitions);
    let dir = std::env::temp_dir().join(format!("kafka-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    // One thread, the partitions in turn, one transaction.
    let mut serial = store(&dir, "serial.db", &plan);
    let mut out = Output::default();
    let mut running: Vec<Partition> = (0..partitions).map(|p| Partition::new(Arc::clone(&plan), p as i32)).collect();
    let mut offsets = vec![0i64; partitions];
    for (p, payload) in &events {
        running[*p].process(&Message::plain(TOPIC, *p as i32, offsets[*p], payload), NOW_MS, &mut out);
        offsets[*p] += 1;
    }
    running.iter_mut().for_each(|p| p.close_all(&mut out));
    engine::drop_superseded(&mut out.rows);
    let checkpoints: Vec<_> = running.iter().filter_map(Partition::checkpoint).collect();
    let batch = WriteBatch {
        topic: TOPIC,
        rows: &out.rows,
        dead_letters: &out.dead_letters,
        checkpoints: &checkpoints,
        owners: &[],
    };
    serial.write(&batch).expect("write");
    let expected = contents(&serial, &plan, partitions);
    assert!(expected.len() > 1000, "{} lines", expected.len());

    for (workers, flush_messages) in [(1, 50_000), (2, 700), (3, 1)] {
        let name = format!("batch-{workers}-{flush_messages}.db");
        let mut parallel = store(&dir, &name, &plan);
        let fresh: Vec<Partition> = (0..partitions).map(|p| Partition::new(Arc::clone(&plan), p as i32)).collect();
        let settings = Settings {
            workers,
            now_ms: NOW_MS,
            flush_messages,
            close_at_end: true,
            keep_dead_letters: true,
            checkpoint_topic: None,
        };
        let outcome = kafka::batch::run(&mut parallel, &plan, TOPIC, fresh, &settings, |feeder| {
            let mut offsets = vec![0i64; partitions];
            for (p, payload) in &events {
                let offset = offsets[*p];
                offsets[*p] += 1;
                feeder.push(Fed { partition: *p, offset, payload, key: None, timestamp_ms: None, truncated: None })?;
            }
            Ok(())
        })
        .expect("batch run");
        assert_eq!(outcome.messages, events.len() as u64);
        assert_eq!(outcome.partitions.len(), partitions);
        for (p, partition) in outcome.partitions.iter().enumerate() {
            assert_eq!(partition.partition(), p as i32, "partitions come back in the order given");
        }
        let stored: u64 = outcome.rows_written.iter().sum();
        assert!(stored >= out.rows.len() as u64, "{stored} rows written, {} at least", out.rows.len());
        assert_eq!(contents(&parallel, &plan, partitions), expected, "{workers} workers, flushes of {flush_messages}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_feed_stops_the_run_with_its_error() {
    let plan = plan();
    let dir = std::env::temp_dir().join(format!("kafka-batch-fail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut store = store(&dir, "s.db", &plan);
    let fresh = vec![Partition::new(Arc::clone(&plan), 0)];
    let settings = Settings {
        workers: 2,
        now_ms: NOW_MS,
        flush_messages: 10,
        close_at_end: true,
        keep_dead_letters: true,
        checkpoint_topic: None,
    };
    let result = kafka::batch::run(&mut store, &plan, TOPIC, fresh, &settings, |_| Err(kafka::Error::Stopped));
    assert!(matches!(result, Err(kafka::Error::Stopped)));
    let _ = std::fs::remove_dir_all(&dir);
}
