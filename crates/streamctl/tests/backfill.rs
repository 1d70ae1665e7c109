//! `streamctl backfill` end to end, on librdkafka's mock cluster: the live
//! consumer's checkpoints say where it started the metric; `--dry-run` shows
//! the offsets, the run reads exactly those messages, a second run reads
//! none, and `streamctl query` then reads the backfilled rows.

mod common;

use common::{stderr, streamctl, temp_dir};
use engine::{Checkpoint, MetricStart};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::Duration;
use store::{Store, WriteBatch};

const TOPIC: &str = "mta.events";
const METRIC: &str = "delivery_by_provider";

/// A store (`sqlite:PATH`, in a directory removed when the returned guard
/// drops) holding the live consumer's checkpoints: on each (partition,
/// offset) of `switches`, [`METRIC`] started there (having taken over its
/// table from another version of it when `replaced`), the other metrics of
/// `pipelines/` from the beginning.
fn live_store(name: &str, switches: [(i32, i64); 2], replaced: bool) -> (common::TempDir, String) {
    let dir = temp_dir(name);
    let db = dir.join("live.db");
    let db = db.to_str().expect("utf-8");
    let (_, compiled) = dsl::files::compile(&[common::repo().join("pipelines")]).expect("pipelines");
    let plan = compiled.plan.expect("the pipelines compile");
    let mut live = store::sqlite::SqliteStore::open(db).expect("store");
    live.setup(&plan).expect("setup");
    let checkpoints: Vec<Checkpoint> = switches
        .into_iter()
        .map(|(partition, switch)| Checkpoint {
            partition,
            replay_offset: switch,
            next_offset: switch,
            max_event_time: None,
            metrics: Some(
                plan.metrics
                    .iter()
                    .map(|m| MetricStart {
                        hash: m.hash.clone(),
                        since_offset: (m.name == METRIC).then_some(switch),
                        table: Some(m.table.clone()),
                        replaced: replaced && m.name == METRIC,
                    })
                    .collect(),
            ),
            plan_version: None,
        })
        .collect();
    live.write(&WriteBatch { topic: TOPIC, checkpoints: &checkpoints, ..WriteBatch::default() }).expect("write");
    let store = format!("sqlite:{db}");
    (dir, store)
}

#[test]
fn backfill_reads_up_to_the_switch_offsets_once_and_its_rows_are_queried() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
    let config = workload::Config { seed: 4, rate_per_s: 20.0, ..Default::default() };
    for (i, line) in workload::Generator::new(config).take(1_200).enumerate() {
        let mut record = Some(BaseRecord::<(), [u8]>::to(TOPIC).partition((i % 2) as i32).payload(line.as_bytes()));
        while let Some(r) = record.take() {
            if let Err((_, r)) = producer.send(r) {
                producer.poll(Duration::from_millis(10));
                record = Some(r);
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    // The live consumer's checkpoints: the metric started at offsets 400 and 250.
    let (_dir, store) = live_store("backfill", [(0, 400), (1, 250)], false);
    let args = ["backfill", "pipelines/", "--metric", METRIC, "--from", "0", "--brokers", &brokers, "--store", &store];
    let dry = streamctl(&[&args[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{}", stderr(&dry));
    let text = stderr(&dry);
    assert!(text.contains("650 messages to read"), "{text}");
    assert!(text.contains("partition   0: offsets 0..400 (400 messages), to do"), "{text}");
    assert!(text.contains("partition   1: offsets 0..250 (250 messages), to do"), "{text}");
    let query = ["query", METRIC, "--store", &store, "--tier", "1d", "--group-by", "", "--format", "json"];
    let rows = |out: std::process::Output| -> Vec<serde_json::Value> {
        assert!(out.status.success(), "{}", stderr(&out));
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        result["rows"].as_array().expect("rows").clone()
    };
    assert_eq!(rows(streamctl(&query)), Vec::<serde_json::Value>::new(), "the dry run wrote rows");

    let run = streamctl(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(stderr(&run).contains("backfilled 650 messages of 2 partitions"), "{}", stderr(&run));
    let again = streamctl(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("0 messages to read"), "{}", stderr(&again));
    assert!(stderr(&again).contains("backfilled 0 messages"), "{}", stderr(&again));

    // 650 messages, all delivery events but for a few engagement ones: the
    // daily total of attempts counts the backfilled ones (the live side wrote none).
    let daily = rows(streamctl(&query));
    let attempts: i64 = daily.iter().map(|r| r[1].as_i64().unwrap_or(0)).sum();
    assert!((600..650).contains(&attempts), "{daily:?}");
}

/// A metric that took over its table from another version of it (a changed
/// metric keeping its `into table`) is refused, dry run or not: the table
/// holds the other version's rows up to the switch.
#[test]
fn backfill_refuses_a_metric_that_took_over_its_table_from_another_version() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let (_dir, store) = live_store("backfill-replaced", [(0, 40), (1, 25)], true);
    let args = ["backfill", "pipelines/", "--metric", METRIC, "--from", "0", "--brokers", &brokers, "--store", &store];
    for run in [streamctl(&[&args[..], &["--dry-run"]].concat()), streamctl(&args)] {
        assert!(!run.status.success());
        let text = stderr(&run);
        assert!(text.contains(&format!("`{METRIC}` took over table `{METRIC}` from another version")), "{text}");
        assert!(text.contains("new `into table` name"), "{text}");
    }
}
