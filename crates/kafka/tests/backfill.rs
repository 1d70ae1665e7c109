//! Backfill on librdkafka's mock cluster: a metric deployed while the live
//! consumer runs, backfilled from the start of the topic while the live side
//! keeps going, reads (merged across source partitions) exactly as a clean
//! run of that metric over the whole topic.

use engine::{CompiledPlan, EngineConfig, Message, MessageMeta, Output, Partition};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::Arc;
use std::time::Duration;
use store::query::Query;
use store::sqlite::SqliteStore;
use store::{Store, WriteBatch};

const TOPIC: &str = "mta.events";
const PARTITIONS: i32 = 2;
const NOW_MS: i64 = 4_102_444_800_000;
const METRIC: &str = "delivery_by_provider";

fn full_plan() -> dsl::Plan {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let (_, compiled) = dsl::files::compile(&[dir]).expect("pipelines");
    assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
    let mut plan = compiled.plan.expect("checked above");
    plan.alerts.clear();
    plan
}

fn runnable(plan: dsl::Plan) -> Arc<CompiledPlan> {
    Arc::new(CompiledPlan::new(plan, EngineConfig::default()).expect("runnable"))
}

/// Each partition's lines, in offset order.
fn events(per_partition: usize) -> Vec<Vec<String>> {
    let config = workload::Config { seed: 31, rate_per_s: 30.0, bad_ratio: 0.01, ..Default::default() };
    let mut all = workload::Generator::new(config);
    let mut lines = vec![Vec::new(); PARTITIONS as usize];
    for i in 0..per_partition * PARTITIONS as usize {
        lines[i % PARTITIONS as usize].push(all.next().expect("endless"));
    }
    lines
}

fn produce(brokers: &str, events: &[Vec<String>]) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("producer");
    for (p, lines) in events.iter().enumerate() {
        for line in lines {
            let mut record = Some(BaseRecord::<(), [u8]>::to(TOPIC).partition(p as i32).payload(line.as_bytes()));
            while let Some(r) = record.take() {
                if let Err((_, r)) = producer.send(r) {
                    producer.poll(Duration::from_millis(10));
                    record = Some(r);
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn message<'a>(p: i32, offset: usize, line: &'a str) -> Message<'a> {
    let meta =
        MessageMeta { topic: TOPIC, partition: p, offset: offset as i64, key: None, timestamp_ms: None, headers: &[] };
    Message { payload: line.as_bytes(), meta }
}

fn write(store: &mut SqliteStore, plan: &dsl::Plan, out: &mut Output, checkpoints: &[engine::Checkpoint]) {
    engine::drop_superseded(&mut out.rows);
    let batch = WriteBatch { topic: TOPIC, rows: &out.rows, dead_letters: &out.dead_letters, checkpoints, owners: &[] };
    store.write(plan, &batch).expect("write");
    out.rows.clear();
    out.dead_letters.clear();
}

/// Every row of every tier of the metric, merged over source partitions, as text.
fn answers(store: &SqliteStore, plan: &dsl::Plan) -> Vec<String> {
    let mut lines = Vec::new();
    for tier in ["1m", "1h", "1d"] {
        let query = Query { metric: METRIC.into(), tier: Some(tier.into()), ..Query::default() };
        let result = store::query::run(store, plan, &query).expect("query");
        assert!(!result.rows.is_empty(), "no {tier} rows");
        lines.extend(result.rows.iter().map(|row| format!("{tier} {}", serde_json::Value::from(row.clone()))));
    }
    lines
}

/// Asserts equal answers, showing the first rows that differ.
fn assert_same(actual: &[String], expected: &[String]) {
    let differ: Vec<(Option<&String>, Option<&String>)> = (0..actual.len().max(expected.len()))
        .map(|i| (actual.get(i), expected.get(i)))
        .filter(|(a, e)| a != e)
        .take(3)
        .collect();
    assert!(
        differ.is_empty(),
        "{} rows vs {} in a clean run; first differences: {differ:#?}",
        actual.len(),
        expected.len()
    );
}

#[test]
fn backfill_and_the_live_consumer_together_count_every_message_once() {
    let per_partition = 3_000;
    let events = events(per_partition);
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, &events);

    let full = full_plan();
    let mut without = full.clone();
    without.metrics.retain(|m| m.name != METRIC);
    let (full_runnable, without_runnable) = (runnable(full.clone()), runnable(without.clone()));
    let only = kafka::backfill::only_metrics(&full, &[METRIC.to_string()]).expect("metric");
    let only_runnable = runnable(only.clone());

    let dir = std::env::temp_dir().join(format!("kafka-backfill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("live.db");
    let path = path.to_str().expect("utf-8");

    // The live consumer: every partition without the metric up to its
    // switch offset, where the deploy starts it.
    let switch = [1_700usize, 1_100];
    let mut live = SqliteStore::open(path).expect("store");
    live.setup(&full).expect("setup");
    let mut out = Output::default();
    let mut partitions: Vec<Partition> =
        (0..PARTITIONS).map(|p| Partition::new(Arc::clone(&without_runnable), p)).collect();
    for (p, partition) in partitions.iter_mut().enumerate() {
        for (offset, line) in events[p].iter().enumerate().take(switch[p]) {
            partition.process(&message(p as i32, offset, line), NOW_MS, &mut out);
        }
    }
    let checkpoints: Vec<_> = partitions.iter().filter_map(Partition::checkpoint).collect();
    write(&mut live, &without, &mut out, &checkpoints);
    for partition in &mut partitions {
        partition.reconfigure(Arc::clone(&full_runnable), &mut out);
    }
    let checkpoints: Vec<_> = partitions.iter().filter_map(Partition::checkpoint).collect();
    write(&mut live, &without, &mut out, &checkpoints);

    // The backfill, on its own threads, while the live side goes on.
    let settings = kafka::backfill::Settings {
        brokers: brokers.clone(),
        group_id: "backfill-test".into(),
        librdkafka: Vec::new(),
        topic: TOPIC.into(),
        from_ms: 0,
        to_ms: None,
        flush_messages: 500,
        workers: 2,
        now_ms: NOW_MS,
        timeout: Duration::from_secs(30),
    };
    let ranges = kafka::backfill::plan_ranges(&live, &only, &settings).expect("ranges");
    let expected_ranges: Vec<(i32, i64, i64)> = (0..PARTITIONS).map(|p| (p, 0, switch[p as usize] as i64)).collect();
    let got: Vec<(i32, i64, i64)> = ranges.iter().map(|r| (r.partition, r.from_offset, r.switch_offset)).collect();
    assert_eq!(got, expected_ranges, "from the first offset to the switch");
    let backfill = std::thread::spawn({
        let path = path.to_string();
        let only_runnable = Arc::clone(&only_runnable);
        let settings = settings.clone();
        move || {
            let mut store = SqliteStore::open(&path).expect("store");
            kafka::backfill::run(&mut store, &only_runnable, &ranges, &settings, |_| {}).expect("backfill")
        }
    });
    for (p, partition) in partitions.iter_mut().enumerate() {
        for (offset, line) in events[p].iter().enumerate().skip(switch[p]) {
            partition.process(&message(p as i32, offset, line), NOW_MS, &mut out);
            if offset % 400 == 0 {
                let checkpoints: Vec<_> = std::iter::once(partition.checkpoint()).flatten().collect();
                write(&mut live, &full, &mut out, &checkpoints);
            }
        }
    }
    for partition in &mut partitions {
        partition.close_all(&mut out);
    }
    write(&mut live, &full, &mut out, &[]);
    let summary = backfill.join().expect("backfill thread");
    assert_eq!(summary.messages, switch.iter().sum::<usize>() as u64);

    // A clean run of the metric alone over the whole topic.
    let mut clean = SqliteStore::open(":memory:").expect("store");
    clean.setup(&only).expect("setup");
    for (p, lines) in events.iter().enumerate() {
        let mut partition = Partition::new(Arc::clone(&only_runnable), p as i32);
        for (offset, line) in lines.iter().enumerate() {
            partition.process(&message(p as i32, offset, line), NOW_MS, &mut out);
        }
        partition.close_all(&mut out);
    }
    write(&mut clean, &only, &mut out, &[]);

    assert_same(&answers(&live, &full), &answers(&clean, &only));

    // Run again: nothing left to do, nothing changes.
    let ranges = kafka::backfill::plan_ranges(&live, &only, &settings).expect("ranges");
    assert!(ranges.iter().all(kafka::backfill::Range::is_done), "{ranges:?}");
    let again = kafka::backfill::run(&mut live, &only_runnable, &ranges, &settings, |_| {}).expect("rerun");
    assert_eq!(again.messages, 0);
    assert_same(&answers(&live, &full), &answers(&clean, &only));
    let _ = std::fs::remove_dir_all(&dir);
}
