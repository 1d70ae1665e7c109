//! Backfill on librdkafka's mock cluster: a metric deployed while the live
//! consumer runs, backfilled from the start of the topic while the live side
//! keeps going, reads (merged across source partitions) exactly as a clean
//! run of that metric over the whole topic.

use engine::{CompiledPlan, EngineConfig, Message, Output, Partition};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::Arc;
use std::time::Duration;
use store::sqlite::SqliteStore;
use store::Store;

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
    produce_offsets(brokers, events, 0..usize::MAX);
}

/// Produces the messages of `offsets` of every partition.
fn produce_offsets(brokers: &str, events: &[Vec<String>], offsets: std::ops::Range<usize>) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("producer");
    for (p, lines) in events.iter().enumerate() {
        for line in lines.iter().take(offsets.end).skip(offsets.start) {
            let record = BaseRecord::<(), [u8]>::to(TOPIC).partition(p as i32).payload(line.as_bytes());
            let mut record = Some(record);
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

fn write(store: &mut SqliteStore, out: &mut Output, checkpoints: &[engine::Checkpoint]) {
    answers::write(store, TOPIC, out, checkpoints);
}

/// Every row of every tier of the metric, merged over source partitions, as text.
fn answers(store: &SqliteStore, plan: &dsl::Plan) -> Vec<String> {
    answers::answers(store, plan, METRIC)
}

fn assert_same(actual: &[String], expected: &[String]) {
    answers::assert_same(METRIC, actual, expected);
}

/// The plans: all pipelines, all but the metric, the metric alone.
struct Plans {
    full: dsl::Plan,
    without: dsl::Plan,
    only: dsl::Plan,
}

impl Plans {
    fn new() -> Self {
        let full = full_plan();
        let mut without = full.clone();
        without.metrics.retain(|m| m.name != METRIC);
        let only = kafka::backfill::only_metrics(&full, &[METRIC.to_string()]).expect("metric");
        Plans { full, without, only }
    }
}

/// The live consumer up to the deploy: every partition without the metric
/// up to its switch offset, where the deploy starts it (recorded in the
/// checkpoints written then).
fn live_until_switch(
    live: &mut SqliteStore,
    plans: &Plans,
    events: &[Vec<String>],
    switch: &[usize],
) -> Vec<Partition> {
    live.setup(&plans.full).expect("setup");
    let mut out = Output::default();
    let without = runnable(plans.without.clone());
    let mut partitions: Vec<Partition> = (0..PARTITIONS).map(|p| Partition::new(Arc::clone(&without), p)).collect();
    for (p, partition) in partitions.iter_mut().enumerate() {
        partition.process_all(TOPIC, 0, events[p].iter().take(switch[p]), NOW_MS, &mut out);
    }
    let checkpoints: Vec<_> = partitions.iter().filter_map(Partition::checkpoint).collect();
    write(live, &mut out, &checkpoints);
    let full = runnable(plans.full.clone());
    for partition in &mut partitions {
        partition.reconfigure(Arc::clone(&full), &mut out);
    }
    let checkpoints: Vec<_> = partitions.iter().filter_map(Partition::checkpoint).collect();
    write(live, &mut out, &checkpoints);
    partitions
}

/// The live consumer after the deploy, to the end of the topic (then closing every window).
fn live_after_switch(live: &mut SqliteStore, partitions: &mut [Partition], events: &[Vec<String>], switch: &[usize]) {
    let mut out = Output::default();
    for (p, partition) in partitions.iter_mut().enumerate() {
        for (offset, line) in events[p].iter().enumerate().skip(switch[p]) {
            partition.process(&Message::plain(TOPIC, p as i32, offset as i64, line.as_bytes()), NOW_MS, &mut out);
            if offset % 400 == 0 {
                let checkpoints: Vec<_> = std::iter::once(partition.checkpoint()).flatten().collect();
                write(live, &mut out, &checkpoints);
            }
        }
    }
    for partition in partitions.iter_mut() {
        partition.close_all(&mut out);
    }
    write(live, &mut out, &[]);
}

/// The answers of a clean run of the metric alone over the whole topic.
fn clean_answers(plans: &Plans, events: &[Vec<String>]) -> Vec<String> {
    clean_answers_from(plans, events, 0)
}

/// [`clean_answers`] of every partition from offset `from` on.
fn clean_answers_from(plans: &Plans, events: &[Vec<String>], from: usize) -> Vec<String> {
    let only = runnable(plans.only.clone());
    let mut clean = SqliteStore::open(":memory:").expect("store");
    clean.setup(&plans.only).expect("setup");
    let mut out = Output::default();
    for (p, lines) in events.iter().enumerate() {
        let mut partition = Partition::new(Arc::clone(&only), p as i32);
        partition.process_all(TOPIC, from as i64, lines.iter().skip(from), NOW_MS, &mut out);
        partition.close_all(&mut out);
    }
    write(&mut clean, &mut out, &[]);
    answers(&clean, &plans.only)
}

fn settings(brokers: &str, from_ms: i64) -> kafka::backfill::Settings {
    kafka::backfill::Settings {
        brokers: brokers.to_string(),
        group_id: "backfill-test".into(),
        librdkafka: Vec::new(),
        topic: TOPIC.into(),
        from_ms,
        to_ms: None,
        flush_messages: 150,
        workers: 2,
        now_ms: NOW_MS,
        timeout: Duration::from_secs(30),
    }
}

/// A directory for a test's store, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kafka-backfill-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn db(&self) -> String {
        self.0.join("live.db").to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn backfill_and_the_live_consumer_together_count_every_message_once() {
    let events = events(3_000);
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, &events);
    let plans = Plans::new();
    let dir = TempDir::new("live");
    let path = dir.db();
    let switch = [1_700usize, 1_100];
    let mut live = SqliteStore::open(&path).expect("store");
    let mut partitions = live_until_switch(&mut live, &plans, &events, &switch);

    // The backfill, on its own threads, while the live side goes on.
    let settings = settings(&brokers, 0);
    let ranges = kafka::backfill::plan_ranges(&live, &plans.only, &settings).expect("ranges");
    let got: Vec<(i32, i64, i64)> = ranges.iter().map(|r| (r.partition, r.from_offset, r.switch_offset)).collect();
    assert_eq!(got, vec![(0, 0, 1_700), (1, 0, 1_100)], "from the first offset to the switch");
    let backfill = std::thread::spawn({
        let (path, settings) = (path.clone(), settings.clone());
        let only = runnable(plans.only.clone());
        move || {
            let mut store = SqliteStore::open(&path).expect("store");
            kafka::backfill::run(&mut store, &only, &ranges, &settings, |_| {}).expect("backfill")
        }
    });
    live_after_switch(&mut live, &mut partitions, &events, &switch);
    let summary = backfill.join().expect("backfill thread");
    assert_eq!(summary.messages, switch.iter().sum::<usize>() as u64);
    let expected = clean_answers(&plans, &events);
    assert_same(&answers(&live, &plans.full), &expected);

    // Run again: nothing left to do, nothing changes.
    let ranges = kafka::backfill::plan_ranges(&live, &plans.only, &settings).expect("ranges");
    assert!(ranges.iter().all(kafka::backfill::Range::is_done), "{ranges:?}");
    let again =
        kafka::backfill::run(&mut live, &runnable(plans.only.clone()), &ranges, &settings, |_| {}).expect("rerun");
    assert_eq!(again.messages, 0);
    assert_same(&answers(&live, &plans.full), &expected);
}

/// The child side of the kill tests: one backfill run, until done or killed.
fn backfill_child(brokers: &str, path: &str, from_ms: i64) {
    let plans = Plans::new();
    let mut store = SqliteStore::open(path).expect("store");
    let settings = settings(brokers, from_ms);
    let ranges = kafka::backfill::plan_ranges(&store, &plans.only, &settings).expect("ranges");
    kafka::backfill::run(&mut store, &runnable(plans.only), &ranges, &settings, |_| {}).expect("backfill");
}

/// The child's arguments, when this process is one.
fn child_args() -> Option<(String, String, i64)> {
    let var = |name| std::env::var(name).ok();
    Some((var("BACKFILL_CHILD_BROKERS")?, var("BACKFILL_CHILD_DB")?, var("BACKFILL_CHILD_FROM")?.parse().ok()?))
}

/// `kill -9` of the backfill process (this test binary running `test`
/// again as the child) at random moments from a printed seed
/// (`BACKFILL_KILL_SEED` replays a schedule), each time resumed, until it
/// finishes: it must end with the answers of a clean run from `from`
/// (the offset of every partition that `from_ms` is the time of).
fn killed_at_random_moments_and_resumed(test: &str, brokers: &str, events: &[Vec<String>], from: usize, from_ms: i64) {
    let seed = std::env::var("BACKFILL_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("{test}: kill schedule seed {seed} (BACKFILL_KILL_SEED={seed} replays it)");
    let mut rng = workload::Rng::new(seed);
    let plans = Plans::new();
    let dir = TempDir::new(test);
    let path = dir.db();
    let switch = [3_100usize, 2_600];
    let mut live = SqliteStore::open(&path).expect("store");
    let mut partitions = live_until_switch(&mut live, &plans, events, &switch);
    live_after_switch(&mut live, &mut partitions, events, &switch);
    drop(live);
    let ranges = kafka::backfill::plan_ranges(
        &SqliteStore::open(&path).expect("store"),
        &plans.only,
        &settings(brokers, from_ms),
    )
    .expect("ranges");
    let got: Vec<(i64, i64)> = ranges.iter().map(|r| (r.from_offset, r.switch_offset)).collect();
    assert_eq!(
        got,
        vec![(from as i64, 3_100), (from as i64, 2_600)],
        "the offsets of the time asked, up to the switch"
    );

    // How far the backfill has got: offsets covered by its checkpoints.
    let backfill_topic = kafka::backfill::checkpoint_topic(TOPIC, &plans.only);
    let progress = |path: &str| -> i64 {
        // Read-only, so that looking never holds the writer up.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let Ok(db) = rusqlite::Connection::open_with_flags(path, flags) else { return 0 };
        db.query_row(
            "SELECT coalesce(sum(next_offset), 0) FROM stream_checkpoints WHERE topic = ?1",
            [&backfill_topic],
            |r| r.get::<_, i64>(0),
        )
        .map_or(0, |sum| (sum - PARTITIONS as i64 * from as i64).max(0))
    };
    let total: i64 = switch.iter().map(|s| (s - from) as i64).sum();
    let (mut kills, mut kills_partway, mut runs) = (0, 0, 0);
    loop {
        runs += 1;
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--nocapture"])
            .env("BACKFILL_CHILD_BROKERS", brokers)
            .env("BACKFILL_CHILD_DB", &path)
            .env("BACKFILL_CHILD_FROM", from_ms.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the backfill");
        // Up to 6 kills, then the last run goes through: one in four at a
        // random moment of start-up, the others once the backfill has
        // written up to a random offset beyond where it was.
        let at = progress(&path);
        let kill = (kills < 6).then(|| match rng.below(4) {
            0 => (Duration::from_millis(rng.below(800) as u64), i64::MIN),
            _ => (Duration::ZERO, at + 1 + rng.below(((total - at) / 2).max(1) as usize) as i64),
        });
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if kill.is_some_and(|(after, offsets)| started.elapsed() >= after && progress(&path) >= offsets) {
                child.kill().expect("kill -9");
                child.wait().expect("reap");
                kills += 1;
                let now = progress(&path);
                kills_partway += usize::from(now > 0 && now < total);
                break None;
            }
            assert!(started.elapsed() < Duration::from_secs(180), "the backfill hangs");
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(status) = status {
            assert!(status.success(), "the backfill failed: {status}");
            break;
        }
    }
    eprintln!("{test}: {kills} kills in {runs} runs, {kills_partway} with part of the backfill written");
    assert!(kills_partway > 0, "no run was killed part way (seed {seed})");
    let live = SqliteStore::open(&path).expect("store");
    assert_same(&answers(&live, &plans.full), &clean_answers_from(&plans, events, from));
}

#[test]
fn on_the_mock_cluster_a_backfill_killed_at_random_moments_and_resumed_counts_every_message_once() {
    if let Some((brokers, path, from_ms)) = child_args() {
        return backfill_child(&brokers, &path, from_ms);
    }
    let events = events(4_000);
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, &events);
    // The mock cluster cannot look offsets up by time: from the beginning.
    killed_at_random_moments_and_resumed(
        "on_the_mock_cluster_a_backfill_killed_at_random_moments_and_resumed_counts_every_message_once",
        &brokers,
        &events,
        0,
        0,
    );
}

#[path = "../../streamd/tests/common/tansu.rs"]
mod tansu;

#[path = "../../streamd/tests/common/answers.rs"]
mod answers;

#[test]
fn on_tansu_a_backfill_from_a_time_killed_at_random_moments_and_resumed_counts_every_message_once() {
    let test = "on_tansu_a_backfill_from_a_time_killed_at_random_moments_and_resumed_counts_every_message_once";
    if let Some((brokers, path, from_ms)) = child_args() {
        return backfill_child(&brokers, &path, from_ms);
    }
    let Some(binary) = tansu::or_skip(test) else { return };
    let dir = TempDir::new("tansu");
    let broker = tansu::Tansu::start(&binary, &dir.0, &[(TOPIC, PARTITIONS)]);
    let events = events(4_000);
    // From a time part way, looked up on the broker (offsetsForTimes): the
    // first 700 messages of each partition are produced before it.
    produce_offsets(&broker.address, &events, 0..700);
    std::thread::sleep(Duration::from_millis(1_500));
    let from_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    std::thread::sleep(Duration::from_millis(1_500));
    produce_offsets(&broker.address, &events, 700..usize::MAX);
    killed_at_random_moments_and_resumed(test, &broker.address, &events, 700, from_ms);
}
