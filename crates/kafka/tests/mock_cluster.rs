//! The consumer against librdkafka's in-process mock cluster (real protocol on
//! 127.0.0.1): stored rows must equal a direct engine run over the same
//! messages, through a rebalance, a store outage and broker errors.

mod common;

use engine::{CompiledPlan, EngineConfig, Message, MessageMeta, Output, Partition};
use kafka::{FlushReport, Observer, Settings};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use store::sqlite::SqliteStore;
use store::{RowFilter, Store, WriteBatch};

/// The processing time messages without a broker timestamp arrive at
/// (2100-01-01): after every event time here, so none is too far ahead.
const NOW_MS: i64 = 4_102_444_800_000;

const TOPIC: &str = "mta.events";
const PARTITIONS: i32 = 4;

fn plan() -> Arc<CompiledPlan> {
    common::pipelines_plan()
}

/// Generated events with a few malformed lines, each with its partition.
fn events(n: usize, seed: u64) -> Vec<(i32, String)> {
    let config = workload::Config { seed, rate_per_s: 50.0, bad_ratio: 0.01, ..Default::default() };
    workload::Generator::new(config)
        .take(n)
        .enumerate()
        .map(|(i, line)| ((i as i32 * 7 + i as i32 / 3) % PARTITIONS, line))
        .collect()
}

fn produce(brokers: &str, events: &[(i32, String)]) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("producer");
    for (partition, line) in events {
        let mut record = Some(BaseRecord::<(), [u8]>::to(TOPIC).partition(*partition).payload(line.as_bytes()));
        while let Some(r) = record.take() {
            if let Err((_, r)) = producer.send(r) {
                producer.poll(Duration::from_millis(10));
                record = Some(r);
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A one-broker mock cluster holding `events` in the source topic, and its bootstrap servers.
fn cluster_with(events: &[(i32, String)]) -> (MockCluster<'static, DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    produce(&brokers, events);
    (cluster, brokers)
}

/// Whether the members' reported positions cover every one of `events`.
fn has_all(positions: &OffsetPerPartition, events: &[(i32, String)]) -> bool {
    let positions = positions.lock().expect("lock");
    (0..PARTITIONS)
        .all(|p| positions.get(&p).copied().unwrap_or(0) >= events.iter().filter(|(q, _)| *q == p).count() as i64)
}

/// The engine run directly over each partition's messages in order: the rows
/// a correct consumer must have written once all of them are processed.
fn reference(plan: &Arc<CompiledPlan>, events: &[(i32, String)]) -> SqliteStore {
    reference_from(plan, events, |_| 0)
}

/// [`reference`] over each partition's messages from offset `from(partition)` on.
fn reference_from(plan: &Arc<CompiledPlan>, events: &[(i32, String)], from: impl Fn(i32) -> i64) -> SqliteStore {
    reference_with_headers(plan, events, from, |_| Vec::new())
}

/// [`reference_from`], event `i` of `events` with headers `headers(i)`.
fn reference_with_headers(
    plan: &Arc<CompiledPlan>,
    events: &[(i32, String)],
    from: impl Fn(i32) -> i64,
    headers: impl Fn(usize) -> Vec<(&'static str, &'static [u8])>,
) -> SqliteStore {
    let mut store = SqliteStore::open(":memory:").expect("store");
    store.setup(&plan.plan).expect("setup");
    let mut out = Output::default();
    for p in 0..PARTITIONS {
        let mut partition = Partition::new(plan.clone(), p);
        let mine = events.iter().enumerate().filter(|(_, (q, _))| *q == p);
        for (offset, (i, (_, line))) in mine.enumerate().skip(from(p) as usize) {
            let headers = headers(i);
            let meta = MessageMeta {
                topic: TOPIC,
                partition: p,
                offset: offset as i64,
                key: None,
                timestamp_ms: None,
                headers: &headers,
            };
            partition.process(&Message { payload: line.as_bytes(), meta }, NOW_MS, &mut out);
        }
    }
    store
        .write(&WriteBatch {
            topic: TOPIC,
            rows: &out.rows,
            dead_letters: &out.dead_letters,
            checkpoints: &[],
            owners: &[],
        })
        .expect("write");
    store
}

/// Every stored row of every metric and tier, finished, in a stable order.
fn dump(plan: &dsl::Plan, store: &dyn Store) -> Vec<String> {
    let mut lines = Vec::new();
    for (m, metric) in plan.metrics.iter().enumerate() {
        for tier in 0..metric.tiers.len() {
            let filter = RowFilter { tier, from_ms: None, to_ms: None, equals: vec![], partition: None };
            for row in store.read(plan, m, &filter).expect("read") {
                let values: Vec<_> = row.states.iter().map(|s| s.finish()).collect();
                lines.push(format!(
                    "{} {} {} p{} {:?} {:?} {:?}",
                    metric.name, tier, row.window_start, row.partition, row.keys, values, row.included_through
                ));
            }
        }
    }
    lines.sort();
    lines
}

/// An offset per partition, shared between threads.
type OffsetPerPartition = Arc<Mutex<std::collections::BTreeMap<i32, i64>>>;

#[derive(Default)]
struct Recorder {
    /// Highest next offset any member reported per partition.
    positions: OffsetPerPartition,
    /// Partitions assigned at the last status.
    assigned: AtomicU64,
    messages: AtomicU64,
    store_failures: AtomicU64,
    commits: Mutex<Vec<(String, i32, i64)>>,
    /// With a store's durable replay points: commits found ahead of them.
    durable: Option<OffsetPerPartition>,
    early_commits: AtomicU64,
    /// Times the assignment went from some partitions to none.
    revocations: AtomicU64,
    /// Partitions dropped because another instance claimed them.
    fenced: Mutex<Vec<(String, i32)>>,
}

impl Observer for Recorder {
    fn flushed(&self, report: &FlushReport) {
        self.messages.fetch_add(report.messages, Ordering::SeqCst);
        self.commits.lock().expect("lock").extend(report.committed.iter().cloned());
        if let Some(durable) = &self.durable {
            let durable = durable.lock().expect("lock");
            let early = report.committed.iter().filter(|(_, p, replay)| durable.get(p).is_none_or(|d| replay > d));
            self.early_commits.fetch_add(early.count() as u64, Ordering::SeqCst);
        }
    }
    fn status(&self, status: &kafka::Status) {
        let before = self.assigned.swap(status.partitions.len() as u64, Ordering::SeqCst);
        if before > 0 && status.partitions.is_empty() {
            self.revocations.fetch_add(1, Ordering::SeqCst);
        }
        let mut positions = self.positions.lock().expect("lock");
        for p in &status.partitions {
            let next = p.next_offset.unwrap_or(0);
            let entry = positions.entry(p.partition).or_insert(0);
            *entry = (*entry).max(next);
        }
    }
    fn store_failed(&self, _: &store::Error, _: Duration) {
        self.store_failures.fetch_add(1, Ordering::SeqCst);
    }
    fn fenced(&self, topic: &str, partitions: &[i32]) {
        self.fenced.lock().expect("lock").extend(partitions.iter().map(|p| (topic.to_string(), *p)));
    }
}

/// A SQLite store that fails every write while `is_down` is set, every
/// checkpoint read while `reads_down` is, and every second write with
/// `fails_every_other`; each write takes at least
/// `write_time`.
struct FlakyStore {
    inner: SqliteStore,
    is_down: Arc<AtomicBool>,
    /// Checkpoint reads (a partition's restore) fail while set.
    reads_down: Arc<AtomicBool>,
    failed_writes: Arc<AtomicU64>,
    fails_every_other: bool,
    write_time: Duration,
    writes: u64,
    /// The consumer's thread (it sets the schema up), and failed writes made
    /// on another one: background flushes.
    consumer_thread: Option<std::thread::ThreadId>,
    failed_in_background: Arc<AtomicU64>,
    /// Per partition, the highest replay point of the checkpoints written.
    durable: OffsetPerPartition,
}

impl FlakyStore {
    fn new(path: &str, is_down: Arc<AtomicBool>) -> Self {
        FlakyStore {
            inner: SqliteStore::open(path).expect("store"),
            is_down,
            reads_down: Arc::default(),
            failed_writes: Arc::default(),
            fails_every_other: false,
            write_time: Duration::ZERO,
            writes: 0,
            consumer_thread: None,
            failed_in_background: Arc::default(),
            durable: OffsetPerPartition::default(),
        }
    }
}

impl Store for FlakyStore {
    fn setup(&mut self, plan: &dsl::Plan) -> store::Result<()> {
        self.consumer_thread.get_or_insert(std::thread::current().id());
        self.inner.setup(plan)
    }
    fn write(&mut self, batch: &WriteBatch<'_>) -> store::Result<()> {
        self.writes += 1;
        std::thread::sleep(self.write_time);
        if self.is_down.load(Ordering::SeqCst) || (self.fails_every_other && self.writes.is_multiple_of(2)) {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            if self.consumer_thread.is_some_and(|id| id != std::thread::current().id()) {
                self.failed_in_background.fetch_add(1, Ordering::SeqCst);
            }
            return Err(store::Error::Unavailable("injected outage".into()));
        }
        self.inner.write(batch)?;
        let mut durable = self.durable.lock().expect("lock");
        for checkpoint in batch.checkpoints {
            let replay = durable.entry(checkpoint.partition).or_insert(checkpoint.replay_offset);
            *replay = (*replay).max(checkpoint.replay_offset);
        }
        Ok(())
    }
    fn claim(&mut self, topic: &str, partition: i32) -> store::Result<u64> {
        if self.reads_down.load(Ordering::SeqCst) {
            return Err(store::Error::Unavailable("injected outage of reads".into()));
        }
        self.inner.claim(topic, partition)
    }
    fn checkpoint(&self, topic: &str, partition: i32) -> store::Result<Option<engine::Checkpoint>> {
        if self.reads_down.load(Ordering::SeqCst) {
            return Err(store::Error::Unavailable("injected outage of reads".into()));
        }
        self.inner.checkpoint(topic, partition)
    }
    fn read(&self, plan: &dsl::Plan, metric: usize, filter: &RowFilter) -> store::Result<Vec<engine::Row>> {
        self.inner.read(plan, metric, filter)
    }
    fn dead_letters(&self, topic: &str) -> store::Result<Vec<store::StoredDeadLetter>> {
        self.inner.dead_letters(topic)
    }
    fn sweep(&mut self, plan: &dsl::Plan, now_ms: i64) -> store::Result<u64> {
        self.inner.sweep(plan, now_ms)
    }
    fn record_deployment(&mut self, record: &store::DeploymentRecord) -> store::Result<()> {
        self.inner.record_deployment(record)
    }
    fn deployments(&self) -> store::Result<Vec<store::DeploymentRecord>> {
        self.inner.deployments()
    }
}

fn settings(brokers: &str) -> Settings {
    Settings {
        brokers: brokers.to_string(),
        group_id: "streamd-test".into(),
        dead_letter_topic: Some(format!("{TOPIC}.dlq")),
        librdkafka: vec![("session.timeout.ms".into(), "6000".into()), ("heartbeat.interval.ms".into(), "500".into())],
        flush_interval: Duration::from_millis(200),
        flush_messages: 2000,
        idle_timeout: Duration::from_secs(3600),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        instance: "test".into(),
        // More workers than cores: the parallel path runs even on one core.
        workers: 3,
        tier_rows_every: Duration::ZERO,
    }
}

/// A database file in the temporary directory, removed (with its WAL
/// files) when the test is done with it.
struct TempDb(PathBuf);

impl TempDb {
    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

impl std::ops::Deref for TempDb {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

fn temp_db(name: &str) -> TempDb {
    let db = TempDb(std::env::temp_dir().join(format!("kafka-{name}-{}.db", std::process::id())));
    db.remove();
    db
}

struct Member {
    shutdown: Arc<AtomicBool>,
    handle: JoinHandle<kafka::Result<()>>,
}

fn start(settings: Settings, plan: Arc<CompiledPlan>, store: Box<dyn Store + Send>, observer: Arc<Recorder>) -> Member {
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    let handle = std::thread::spawn(move || kafka::run(settings, plan, store, observer, &flag));
    Member { shutdown, handle }
}

impl Member {
    fn stop(self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.handle.join().expect("consumer thread").expect("consumer ran");
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rows_equal_a_direct_run_through_rebalance_store_outage_and_broker_errors() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    cluster.create_topic(&format!("{TOPIC}.dlq"), 1, 1).expect("dlq topic");
    let brokers = cluster.bootstrap_servers();
    let plan = plan();
    let all = events(12_000, 5);
    let db = temp_db("equal");
    let path = db.to_str().expect("utf-8").to_string();
    let is_down = Arc::new(AtomicBool::new(false));
    let positions = OffsetPerPartition::default();
    let recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
    // Processed through the end of `n` produced messages, in every partition.
    let processed = |n: usize| has_all(&positions, &all[..n]);
    let store = FlakyStore::new(&path, is_down.clone());
    let failed_writes = store.failed_writes.clone();

    // A first member consumes the first third. It holds tier rows back for
    // 90 s of event time (the stream covers four minutes): those it holds
    // when its partitions move, and when it stops, must still be written.
    produce(&brokers, &all[..4000]);
    let held_back = Settings { tier_rows_every: Duration::from_secs(90), ..settings(&brokers) };
    let first = start(held_back, plan.clone(), Box::new(store), recorder.clone());
    wait_for("the first third", Duration::from_secs(60), || processed(4000));

    // A second member joins: the partitions are split (a rebalance mid-stream).
    let second_recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
    let second_store = SqliteStore::open(&path).expect("store");
    let second = start(settings(&brokers), plan.clone(), Box::new(second_store), second_recorder.clone());
    wait_for("the rebalance", Duration::from_secs(60), || {
        second_recorder.assigned.load(Ordering::SeqCst) > 0
            && recorder.assigned.load(Ordering::SeqCst) < PARTITIONS as u64
    });
    produce(&brokers, &all[4000..8000]);
    wait_for("the second third", Duration::from_secs(60), || processed(8000));
    assert!(second_recorder.messages.load(Ordering::SeqCst) > 0, "the second member got partitions");

    // The first member's store goes away for a while; broker fetches fail too.
    is_down.store(true, Ordering::SeqCst);
    let commits_before = recorder.commits.lock().expect("lock").len();
    cluster.request_errors(
        rdkafka::types::RDKafkaApiKey::Fetch,
        &[rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3],
    );
    produce(&brokers, &all[8000..]);
    wait_for("a failed write", Duration::from_secs(30), || failed_writes.load(Ordering::SeqCst) >= 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        recorder.commits.lock().expect("lock").len(),
        commits_before,
        "nothing is committed while the store is down"
    );
    is_down.store(false, Ordering::SeqCst);
    wait_for("everything", Duration::from_secs(90), || processed(all.len()));
    assert!(recorder.store_failures.load(Ordering::SeqCst) > 0);

    first.stop();
    second.stop();

    let stored = SqliteStore::open(&path).expect("reopen");
    let expected = reference(&plan, &all);
    let (got, want) = (dump(&plan.plan, &stored), dump(&plan.plan, &expected));
    assert!(!want.is_empty());
    if got.len() != want.len() {
        let summary = |lines: &[String]| {
            let mut counts = std::collections::BTreeMap::new();
            for l in lines {
                let parts: Vec<&str> = l.splitn(5, ' ').collect();
                *counts.entry(format!("{} t{} {}", parts[0], parts[1], parts[3])).or_insert(0) += 1;
            }
            counts
        };
        let (g, w) = (summary(&got), summary(&want));
        for (k, v) in &w {
            if g.get(k) != Some(v) {
                eprintln!("{k}: stored {:?} expected {v}", g.get(k));
            }
        }
    }
    assert_eq!(got.len(), want.len(), "row count");
    assert!(got == want, "first difference: {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
    // Every malformed message is dead-lettered exactly once.
    let dead = stored.dead_letters(TOPIC).expect("dead letters");
    let expected_dead = expected.dead_letters(TOPIC).expect("dead letters");
    assert_eq!(dead.len(), expected_dead.len());
    assert!(!dead.is_empty());

    // …and is on the dead-letter topic with its reason and source position.
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&[&format!("{TOPIC}.dlq")]).expect("subscribe");
    let mut positions = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while positions.len() < dead.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            let headers = m.headers().expect("headers");
            let header = |name: &str| {
                (0..headers.count())
                    .filter_map(|i| headers.try_get(i))
                    .find(|h| h.key == name)
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .unwrap_or_default()
            };
            assert!(!header("reason").is_empty() && !header("detail").is_empty());
            assert_eq!(header("source_topic"), TOPIC);
            positions.insert((header("source_partition"), header("source_offset")));
        }
    }
    // At least once on the topic: a flush retried after an outage may send a record twice.
    assert_eq!(positions.len(), dead.len(), "every dead letter is on the dead-letter topic");
}

/// A store that cannot be read when partitions are assigned: the
/// rebalance callback does not wait for it (the member keeps its place in
/// the group, and stops promptly when asked), the partitions wait paused,
/// and once the store is back they are restored and start at the store's
/// checkpoint: the rows equal a direct run.
#[test]
fn a_store_outage_at_assignment_pauses_the_partitions_until_their_restore() {
    let plan = plan();
    let all = events(6000, 13);
    let (_cluster, brokers) = cluster_with(&all[..3000]);
    let db = temp_db("restore-outage");
    let path = db.to_str().expect("utf-8").to_string();
    let positions = OffsetPerPartition::default();
    let processed = |n: usize| has_all(&positions, &all[..n]);

    // A first member writes checkpoints for the first half, then leaves.
    let recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
    let first = start(settings(&brokers), plan.clone(), Box::new(SqliteStore::open(&path).expect("store")), recorder);
    wait_for("the first half", Duration::from_secs(60), || processed(3000));
    first.stop();

    // A stop asked for while every restore fails returns.
    let store = FlakyStore::new(&path, Arc::default());
    store.reads_down.store(true, Ordering::SeqCst);
    let recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
    let stuck = start(settings(&brokers), plan.clone(), Box::new(store), recorder.clone());
    wait_for("failed restores", Duration::from_secs(60), || recorder.store_failures.load(Ordering::SeqCst) >= 2);
    let asked = Instant::now();
    stuck.stop();
    assert!(asked.elapsed() < Duration::from_secs(20), "stopped {:?} after it was asked", asked.elapsed());

    // Another member gets the partitions while the store cannot be read, and
    // more events arrive; then the store comes back.
    let store = FlakyStore::new(&path, Arc::default());
    let reads_down = store.reads_down.clone();
    reads_down.store(true, Ordering::SeqCst);
    let recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
    let member = start(settings(&brokers), plan.clone(), Box::new(store), recorder.clone());
    produce(&brokers, &all[3000..]);
    wait_for("failed restores", Duration::from_secs(60), || recorder.store_failures.load(Ordering::SeqCst) >= 3);
    assert_eq!(recorder.messages.load(Ordering::SeqCst), 0, "nothing is processed before the restore");
    reads_down.store(false, Ordering::SeqCst);
    wait_for("everything", Duration::from_secs(90), || processed(all.len()));
    assert_eq!(recorder.revocations.load(Ordering::SeqCst), 0, "the member kept its partitions");
    member.stop();

    let stored = SqliteStore::open(&path).expect("reopen");
    let (got, want) = (dump(&plan.plan, &stored), dump(&plan.plan, &reference(&plan, &all)));
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "row count");
    assert!(got == want, "first difference: {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
}

/// A background flush that fails goes back in front of what was consumed
/// while it was written, and is written with it later: nothing is lost or
/// counted twice. Every second write fails, so after the first success
/// every first attempt of a flush fails (in the background) and its retry,
/// on the consumer thread, succeeds. Writes are slow, so batches go on
/// while the writer is busy; no replay point is committed before the
/// checkpoint holding it is written.
#[test]
fn background_flushes_that_fail_or_lag_lose_double_and_commit_nothing_early() {
    let plan = plan();
    let all = events(6000, 11);
    let (_cluster, brokers) = cluster_with(&all);
    let db = temp_db("background");
    let path = db.to_str().expect("utf-8").to_string();
    let mut store = FlakyStore::new(&path, Arc::default());
    store.fails_every_other = true;
    store.write_time = Duration::from_millis(15);
    let failed_in_background = store.failed_in_background.clone();
    let positions = OffsetPerPartition::default();
    let recorder =
        Arc::new(Recorder { positions: positions.clone(), durable: Some(store.durable.clone()), ..Default::default() });
    // Small, frequent flushes, so that batches keep coming while one is written.
    let settings = Settings { flush_interval: Duration::from_millis(20), flush_messages: 300, ..settings(&brokers) };
    let member = start(settings, plan.clone(), Box::new(store), recorder.clone());
    wait_for("everything", Duration::from_secs(90), || has_all(&positions, &all));
    member.stop();
    assert!(failed_in_background.load(Ordering::SeqCst) > 0, "no flush failed in the background");
    assert!(!recorder.commits.lock().expect("lock").is_empty());
    assert_eq!(recorder.early_commits.load(Ordering::SeqCst), 0, "replay points committed before they were written");

    let stored = SqliteStore::open(&path).expect("reopen");
    let expected = reference(&plan, &all);
    let (got, want) = (dump(&plan.plan, &stored), dump(&plan.plan, &expected));
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "row count");
    assert!(got == want, "first difference: {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
    assert_eq!(
        stored.dead_letters(TOPIC).expect("dead letters").len(),
        expected.dead_letters(TOPIC).expect("dead letters").len()
    );
}

/// A store write that takes longer than `max.poll.interval.ms`: the loop
/// keeps serving librdkafka while it waits for the writer, so the group
/// does not take the partitions away from a consumer that is merely slow.
#[test]
fn a_write_slower_than_the_poll_interval_keeps_the_assignment() {
    let plan = plan();
    let all = events(1500, 13);
    let (_cluster, brokers) = cluster_with(&all);
    let db = temp_db("slow-writer");
    let path = db.to_str().expect("utf-8").to_string();
    let mut store = FlakyStore::new(&path, Arc::default());
    store.write_time = Duration::from_millis(4000);
    let positions = OffsetPerPartition::default();
    let recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
    // The mock cluster's group needs a session of 3 s to form at all.
    let librdkafka =
        [("session.timeout.ms", "3000"), ("heartbeat.interval.ms", "200"), ("max.poll.interval.ms", "3000")];
    let librdkafka = librdkafka.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let settings = Settings { flush_messages: 500, librdkafka, ..settings(&brokers) };
    let member = start(settings, plan.clone(), Box::new(store), recorder.clone());
    wait_for("everything", Duration::from_secs(90), || has_all(&positions, &all));
    wait_for("the last flush", Duration::from_secs(30), || {
        recorder.messages.load(Ordering::SeqCst) >= all.len() as u64
    });
    let revocations = recorder.revocations.load(Ordering::SeqCst);
    member.stop();
    assert_eq!(revocations, 0, "the group took the partitions away while a write was under way");

    let stored = SqliteStore::open(&path).expect("reopen");
    let (got, want) = (dump(&plan.plan, &stored), dump(&plan.plan, &reference(&plan, &all)));
    assert!(got == want, "first difference: {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
}

/// An instance whose partition another instance has claimed in the store
/// (say it was paused past its session and the group moved on without it)
/// has its next write refused: it drops that partition, says so, writes
/// nothing more for it, and the other partitions' rows, refused with it in
/// that write, are written again without it, none lost.
#[test]
fn a_partition_claimed_by_another_instance_is_dropped_and_nothing_more_written_for_it() {
    let plan = plan();
    let first = events(800, 31);
    let (_cluster, brokers) = cluster_with(&first);
    let db = temp_db("fenced");
    let path = db.to_str().expect("utf-8").to_string();
    let positions = OffsetPerPartition::default();
    let recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
    let store = SqliteStore::open(&path).expect("open");
    let member = start(settings(&brokers), plan.clone(), Box::new(store), recorder.clone());
    wait_for("the first events", Duration::from_secs(60), || has_all(&positions, &first));
    wait_for("their flush", Duration::from_secs(30), || recorder.messages.load(Ordering::SeqCst) >= first.len() as u64);

    // Another instance takes partition 0 over.
    let mut other = SqliteStore::open(&path).expect("open");
    other.claim(TOPIC, 0).expect("claim");
    let of_partition = |lines: Vec<String>, p: &str| -> Vec<String> {
        lines.into_iter().filter(|l| l.split_whitespace().nth(3) == Some(p)).collect()
    };
    let claimed_with = of_partition(dump(&plan.plan, &other), "p0");
    let checkpoint_at_claim = other.checkpoint(TOPIC, 0).expect("read").map(|c| c.next_offset);
    let first_of_0 = first.iter().filter(|(p, _)| *p == 0).count() as i64;
    assert_eq!(checkpoint_at_claim, Some(first_of_0), "partition 0 was written up to its end");

    let second = events(800, 32);
    produce(&brokers, &second);
    let all: Vec<(i32, String)> = first.iter().chain(&second).cloned().collect();
    wait_for("the refused write", Duration::from_secs(60), || {
        recorder.fenced.lock().expect("lock").iter().any(|(t, p)| t == TOPIC && *p == 0)
    });
    let others: Vec<(i32, String)> = all.iter().filter(|(p, _)| *p != 0).cloned().collect();
    wait_for("the other partitions", Duration::from_secs(60), || has_all(&positions, &others));
    wait_for("their flush", Duration::from_secs(30), || {
        let expected = (first.len() + others.len() - first.iter().filter(|(p, _)| *p != 0).count()) as u64;
        recorder.messages.load(Ordering::SeqCst) >= expected
    });
    member.stop();
    assert_eq!(*recorder.fenced.lock().expect("lock"), vec![(TOPIC.to_string(), 0)], "dropped once");

    let stored = SqliteStore::open(&path).expect("reopen");
    let got = dump(&plan.plan, &stored);
    assert_eq!(of_partition(got.clone(), "p0"), claimed_with, "partition 0's rows as they were when it was claimed");
    let checkpoint = stored.checkpoint(TOPIC, 0).expect("read").map(|c| c.next_offset);
    assert_eq!(checkpoint, checkpoint_at_claim, "partition 0's checkpoint as it was when it was claimed");
    for p in 1..PARTITIONS {
        let next = stored.checkpoint(TOPIC, p).expect("read").map(|c| c.next_offset);
        assert_eq!(next, Some(all.iter().filter(|(q, _)| *q == p).count() as i64), "partition {p} written to its end");
    }
    let want = dump(&plan.plan, &reference(&plan, &all));
    for p in ["p1", "p2", "p3"] {
        let (got, want) = (of_partition(got.clone(), p), of_partition(want.clone(), p));
        assert!(got == want, "{p}: first difference: {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
    }
}

/// A pipeline that groups by a Kafka header gets each message's header
/// through the consumer (which gathers headers only for plans that read
/// one): its rows equal a direct run given the same headers.
#[test]
fn a_header_read_by_a_pipeline_reaches_it_through_the_consumer() {
    use rdkafka::message::{Header, OwnedHeaders};
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/deliveries.stream"))
        .expect("deliveries.stream");
    let tenants = "version 1\n\nimport \"deliveries.stream\"\n\nmetric by_tenant from deliveries\n  \
                   group by header(\"x-tenant\") as tenant\n  compute count() as n\n  window 1m, lateness 1m\n";
    let files = vec![("deliveries.stream".to_string(), source), ("tenants.stream".to_string(), tenants.to_string())];
    let (bundle, _) = dsl::bundle::Bundle::build(files, 1, Default::default())
        .unwrap_or_else(|c| panic!("{}", c.render_diagnostics()));
    let plan = Arc::new(CompiledPlan::from_bundle(&bundle, EngineConfig::default()).expect("runnable"));
    assert!(plan.reads_headers());
    assert!(!self::plan().reads_headers(), "pipelines/ reads no header, so the consumer gathers none");
    // Slow event time (2 events/s), so that windows close.
    let config = workload::Config { seed: 17, rate_per_s: 2.0, bad_ratio: 0.01, ..Default::default() };
    let all: Vec<(i32, String)> =
        workload::Generator::new(config).take(1200).enumerate().map(|(i, l)| (i as i32 % PARTITIONS, l)).collect();
    // Every third message has no tenant header; the others one of two tenants.
    let tenant_of = |i: usize| ["acme", "globex", ""][i % 3];
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
    for (i, (partition, line)) in all.iter().enumerate() {
        let mut headers = OwnedHeaders::new().insert(Header { key: "x-other", value: Some("1") });
        if !tenant_of(i).is_empty() {
            headers = headers.insert(Header { key: "x-tenant", value: Some(tenant_of(i)) });
        }
        let record = BaseRecord::<(), [u8]>::to(TOPIC).partition(*partition).payload(line.as_bytes()).headers(headers);
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let db = temp_db("headers");
    let path = db.to_str().expect("utf-8").to_string();
    let positions = OffsetPerPartition::default();
    let recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
    let store = SqliteStore::open(&path).expect("store");
    let member = start(settings(&brokers), plan.clone(), Box::new(store), recorder.clone());
    wait_for("everything", Duration::from_secs(60), || has_all(&positions, &all));
    member.stop();

    let expected = reference_with_headers(
        &plan,
        &all,
        |_| 0,
        |i| {
            let tenant = tenant_of(i);
            let mut headers: Vec<(&str, &[u8])> = vec![("x-other", b"1")];
            if !tenant.is_empty() {
                headers.push(("x-tenant", tenant.as_bytes()));
            }
            headers
        },
    );
    let stored = SqliteStore::open(&path).expect("reopen");
    let (got, want) = (dump_metric(&plan.plan, &stored, "by_tenant"), dump_metric(&plan.plan, &expected, "by_tenant"));
    for tenant in ["\"acme\"", "\"globex\"", "Null"] {
        assert!(want.iter().any(|row| row.contains(tenant)), "no row of tenant {tenant}");
    }
    assert!(got == want, "first difference: {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
}

/// Test pipelines for the live deploy: `kept` is in both versions, `changed`
/// gets a different filter, `removed` goes, `added` comes. Lateness exceeds
/// the generator's latest events (15 minutes), so no event is late and a
/// run started at the switch counts exactly the events after it.
fn deploy_files(version: u32) -> Vec<(String, String)> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/deliveries.stream"))
        .expect("deliveries.stream");
    let metric = |name: &str, filter: &str| {
        format!(
            "version 1\n\nimport \"deliveries.stream\"\n\nmetric {name} from deliveries\n  where {filter}\n  \
             group by provider\n  compute count() as n, sum(latency_ms) as latency\n  window 1m, lateness 16m\n  \
             rollup 1h keep 30d\n"
        )
    };
    let mut files = vec![
        ("deliveries.stream".to_string(), source),
        ("kept.stream".to_string(), metric("kept", "event == \"delivered\"")),
    ];
    if version == 1 {
        files.push(("changed.stream".into(), metric("changed", "event == \"bounced\"")));
        files.push(("removed.stream".into(), metric("removed", "event == \"deferred\"")));
    } else {
        files.push(("changed.stream".into(), metric("changed", "event != \"bounced\"")));
        files.push(("added.stream".into(), metric("added", "attempt > 1")));
    }
    files
}

fn deploy_bundle(version: u32) -> (dsl::bundle::Bundle, Arc<CompiledPlan>) {
    let built = dsl::bundle::Bundle::build(deploy_files(version), version.into(), Default::default());
    let (bundle, compiled) = built.unwrap_or_else(|c| panic!("{}", c.render_diagnostics()));
    let plan = compiled.plan.expect("compiled");
    (bundle, Arc::new(CompiledPlan::new(plan, EngineConfig::default()).expect("runnable")))
}

/// Rows of metric `name` as `dump` prints them.
fn dump_metric(plan: &dsl::Plan, store: &dyn Store, name: &str) -> Vec<String> {
    dump(plan, store).into_iter().filter(|l| l.starts_with(&format!("{name} "))).collect()
}

#[derive(Default)]
struct DeployRecorder {
    inner: Recorder,
    applied: Mutex<Vec<Option<u64>>>,
    rejected: Mutex<Vec<(Option<u64>, String)>>,
    /// The partitions the last status listed as waiting for a plan, with the version.
    awaiting_plan: Mutex<Vec<(i32, u64)>>,
}

impl Observer for DeployRecorder {
    fn flushed(&self, report: &FlushReport) {
        self.inner.flushed(report);
    }
    fn status(&self, status: &kafka::Status) {
        self.inner.status(status);
        *self.awaiting_plan.lock().expect("lock") =
            status.awaiting_plan.iter().map(|a| (a.partition, a.version)).collect();
    }
    fn plan_applied(&self, version: Option<u64>, _: &dsl::Plan, _: &dsl::bundle::MetricChanges) {
        self.applied.lock().expect("lock").push(version);
    }
    fn plan_rejected(&self, version: Option<u64>, refusal: &kafka::Refusal) {
        self.rejected.lock().expect("lock").push((version, refusal.to_string()));
    }
}

/// A deploy through the control topic while events flow: the unchanged
/// metric's rows equal a run without a deploy, the added metric's rows equal
/// a run started at the switch, the removed one flushed what it had, a bad
/// bundle is refused, and the consumer never restarted.
#[test]
fn a_live_deploy_keeps_unchanged_metrics_and_starts_new_ones_at_the_switch() {
    use kafka::control::{ControlTopic, Follower};
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    cluster.create_topic(&format!("{TOPIC}.dlq"), 1, 1).expect("dlq topic");
    cluster.create_topic("streamd.control", 1, 1).expect("control topic");
    let brokers = cluster.bootstrap_servers();
    let control = ControlTopic { brokers: brokers.clone(), topic: "streamd.control".into(), librdkafka: vec![] };
    let publisher = control.publisher().expect("publisher");
    let (v1, plan_v1) = deploy_bundle(1);
    let (v2, plan_v2) = deploy_bundle(2);
    publisher.publish_bundle(&v1, Duration::from_secs(10)).expect("publish v1");

    // Slow event time (2 events/s), so that 16 minutes of lateness still closes windows.
    let config = workload::Config { seed: 11, rate_per_s: 2.0, bad_ratio: 0.01, ..Default::default() };
    let all: Vec<(i32, String)> =
        workload::Generator::new(config).take(9_000).enumerate().map(|(i, l)| (i as i32 % PARTITIONS, l)).collect();
    let db = temp_db("deploy");
    let path = db.to_str().expect("utf-8").to_string();
    let recorder = Arc::new(DeployRecorder::default());
    let (updates, plan_updates) = std::sync::mpsc::channel();
    let store = SqliteStore::open(&path).expect("store");
    let consumer = kafka::Consumer::new(settings(&brokers), Box::new(store), recorder.clone()).expect("consumer");
    consumer.apply(&kafka::PlanUpdate { version: Some(1), plan: Ok(plan_v1.clone()) }).expect("v1 applied");
    let consumer = consumer.with_plan_updates(plan_updates);
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    let consumer_thread = std::thread::spawn(move || consumer.run(&flag));
    let follower = Follower {
        reader: control.reader(Duration::from_secs(10)).expect("reader"),
        publisher: control.publisher().expect("publisher"),
        updates,
        last_tried: Some(1),
        report_interval: Duration::from_secs(1),
    };
    let flag = shutdown.clone();
    let follower_thread = std::thread::spawn(move || {
        let compile = |b: &dsl::bundle::Bundle| CompiledPlan::from_bundle(b, EngineConfig::default()).map(Arc::new);
        let report = || kafka::control::InstanceReport {
            instance: "test".into(),
            reported_at_ms: kafka::control::now_ms(),
            ..Default::default()
        };
        follower.run(&flag, &compile, &report);
    });

    let positions = recorder.inner.positions.clone();
    let processed = |n: usize| has_all(&positions, &all[..n]);
    // A steady stream: the deploy lands while messages keep arriving.
    let producer_events = all.clone();
    let producer_brokers = brokers.clone();
    let producer = std::thread::spawn(move || {
        for chunk in producer_events.chunks(200) {
            produce(&producer_brokers, chunk);
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    wait_for("the first part", Duration::from_secs(60), || processed(2500));
    publisher.publish_bundle(&v2, Duration::from_secs(10)).expect("publish v2");
    wait_for("v2 applied", Duration::from_secs(30), || recorder.applied.lock().expect("lock").contains(&Some(2)));
    // A bundle that does not compile is refused; v2 keeps running.
    let mut bad = v2.clone();
    bad.version = 3;
    bad.files.retain(|f| f.path != "deliveries.stream");
    bad.hash = String::new();
    publisher.publish_bundle(&bad, Duration::from_secs(10)).expect("publish v3");
    wait_for("v3 rejected", Duration::from_secs(30), || !recorder.rejected.lock().expect("lock").is_empty());
    producer.join().expect("producer");
    wait_for("everything", Duration::from_secs(90), || processed(all.len()));
    shutdown.store(true, Ordering::SeqCst);
    consumer_thread.join().expect("consumer thread").expect("consumer ran");
    follower_thread.join().expect("follower thread");
    // The start applies v1 as a deploy would, then one switch: no restart.
    assert_eq!(*recorder.applied.lock().expect("lock"), vec![Some(1), Some(2)], "one switch, no restart");
    assert_eq!(recorder.rejected.lock().expect("lock")[0].0, Some(3));

    let stored = SqliteStore::open(&path).expect("reopen");
    // Unchanged: as if nothing had been deployed.
    let without_deploy = reference(&plan_v1, &all);
    let kept = dump_metric(&plan_v2.plan, &stored, "kept");
    assert!(!kept.is_empty());
    assert_eq!(kept, dump_metric(&plan_v1.plan, &without_deploy, "kept"));
    // Added: as if started at the switch, which each partition's checkpoint records.
    let added_hash = &plan_v2.plan.metrics.iter().find(|m| m.name == "added").expect("added").hash;
    let starts: Vec<i64> = (0..PARTITIONS)
        .map(|p| {
            let checkpoint = stored.checkpoint(TOPIC, p).expect("read").expect("a checkpoint");
            let starts = checkpoint.metrics.expect("metric starts");
            let since = starts.iter().find(|s| &s.hash == added_hash).and_then(|s| s.since_offset).expect("a start");
            assert!(since > 0, "partition {p} switched mid-stream");
            since
        })
        .collect();
    let from_switch = reference_from(&plan_v2, &all, |p| starts[p as usize]);
    let added = dump_metric(&plan_v2.plan, &stored, "added");
    assert!(!added.is_empty());
    assert_eq!(added, dump_metric(&plan_v2.plan, &from_switch, "added"));
    // Removed: flushed up to the switch, so its table holds rows and no more arrive.
    assert!(!dump_metric(&plan_v1.plan, &stored, "removed").is_empty());
    // The history records the switch and the refusal.
    let history: Vec<(Option<u64>, String)> =
        stored.deployments().expect("history").into_iter().map(|r| (r.version, r.outcome)).collect();
    assert_eq!(
        history,
        vec![(Some(1), "applied".to_string()), (Some(2), "applied".to_string()), (Some(3), "rejected".to_string())]
    );
}

/// A deploy reaches instances one by one. A partition that moves in
/// between, from an instance already on v2 to one still on v1, waits
/// (paused) on the second until v2 runs there too: the metric v2 added
/// keeps the start the first instance recorded and misses nothing. (Were it
/// resumed under v1, the start would be dropped and the metric would
/// restart once v2 arrived, missing what came between.)
#[test]
fn a_partition_moved_to_an_instance_still_on_the_old_plan_waits_for_the_new_one() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    cluster.create_topic(&format!("{TOPIC}.dlq"), 1, 1).expect("dlq topic");
    let brokers = cluster.bootstrap_servers();
    let (_, plan_v1) = deploy_bundle(1);
    let (_, plan_v2) = deploy_bundle(2);
    // Slow event time (2 events/s), so that 16 minutes of lateness still closes windows.
    let config = workload::Config { seed: 12, rate_per_s: 2.0, bad_ratio: 0.01, ..Default::default() };
    let all: Vec<(i32, String)> =
        workload::Generator::new(config).take(8_000).enumerate().map(|(i, l)| (i as i32 % PARTITIONS, l)).collect();
    let db = temp_db("propagation");
    let path = db.to_str().expect("utf-8").to_string();
    let member = |instance: &str, recorder: &Arc<DeployRecorder>| {
        let (updates, plan_updates) = std::sync::mpsc::channel();
        let settings = Settings { instance: instance.into(), ..settings(&brokers) };
        let store = SqliteStore::open(&path).expect("store");
        let consumer = kafka::Consumer::new(settings, Box::new(store), recorder.clone()).expect("consumer");
        consumer.apply(&kafka::PlanUpdate { version: Some(1), plan: Ok(plan_v1.clone()) }).expect("v1 applied");
        let consumer = consumer.with_plan_updates(plan_updates);
        let shutdown = Arc::new(AtomicBool::new(false));
        let flag = shutdown.clone();
        let handle = std::thread::spawn(move || consumer.run(&flag));
        (updates, Member { shutdown, handle })
    };
    let v2 = || kafka::PlanUpdate { version: Some(2), plan: Ok(plan_v2.clone()) };
    let producer_events = all.clone();
    let producer_brokers = brokers.clone();
    let producer = std::thread::spawn(move || {
        for chunk in producer_events.chunks(200) {
            produce(&producer_brokers, chunk);
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    // Instance a alone, on v1, then on v2.
    let a = Arc::new(DeployRecorder::default());
    let (to_a, member_a) = member("a", &a);
    wait_for("a's first events", Duration::from_secs(60), || has_all(&a.inner.positions, &all[..1500]));
    to_a.send(v2()).expect("to a");
    wait_for("v2 applied on a", Duration::from_secs(30), || a.applied.lock().expect("lock").contains(&Some(2)));
    wait_for("a's events under v2", Duration::from_secs(60), || has_all(&a.inner.positions, &all[..3000]));
    let added_hash = plan_v2.plan.metrics.iter().find(|m| m.name == "added").expect("added").hash.clone();
    let starts = |store: &SqliteStore| -> Vec<Option<i64>> {
        (0..PARTITIONS)
            .map(|p| {
                let checkpoint = store.checkpoint(TOPIC, p).expect("read").expect("a checkpoint");
                let starts = checkpoint.metrics.expect("metric starts");
                starts.iter().find(|s| s.hash == added_hash).and_then(|s| s.since_offset)
            })
            .collect()
    };
    let started = starts(&SqliteStore::open(&path).expect("store"));
    assert!(started.iter().all(|s| s.is_some_and(|s| s > 0)), "every partition switched mid-stream: {started:?}");

    // Instance b joins still on v1 and takes some of a's partitions; events keep coming.
    let b = Arc::new(DeployRecorder::default());
    let (to_b, member_b) = member("b", &b);
    wait_for("a to keep only some partitions", Duration::from_secs(30), || {
        (1..PARTITIONS as u64).contains(&a.inner.assigned.load(Ordering::SeqCst))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(b.inner.assigned.load(Ordering::SeqCst), 0, "b runs none of the partitions v2 checkpointed");
    let waiting = b.awaiting_plan.lock().expect("lock").clone();
    assert_eq!(waiting.len(), PARTITIONS as usize - a.inner.assigned.load(Ordering::SeqCst) as usize, "{waiting:?}");
    assert!(waiting.iter().all(|(_, version)| *version == 2), "{waiting:?}");
    to_b.send(v2()).expect("to b");
    wait_for("v2 applied on b", Duration::from_secs(30), || b.applied.lock().expect("lock").contains(&Some(2)));
    wait_for("b to resume them", Duration::from_secs(30), || b.awaiting_plan.lock().expect("lock").is_empty());
    assert!(b.inner.assigned.load(Ordering::SeqCst) > 0, "b runs its partitions");
    producer.join().expect("producer");
    let stored = SqliteStore::open(&path).expect("store");
    let counts: Vec<i64> = (0..PARTITIONS).map(|p| all.iter().filter(|(q, _)| *q == p).count() as i64).collect();
    wait_for("everything", Duration::from_secs(90), || {
        (0..PARTITIONS)
            .all(|p| stored.checkpoint(TOPIC, p).ok().flatten().is_some_and(|c| c.next_offset >= counts[p as usize]))
    });
    member_a.stop();
    member_b.stop();

    // Each partition's `added` kept the start a recorded, and counted everything from it.
    assert_eq!(starts(&stored), started, "the starts of `added` as a recorded them");
    let from_switch = reference_from(&plan_v2, &all, |p| started[p as usize].unwrap_or_default());
    let added = dump_metric(&plan_v2.plan, &stored, "added");
    assert!(!added.is_empty());
    assert_eq!(added, dump_metric(&plan_v2.plan, &from_switch, "added"));
    // The unchanged metric is as if nothing had been deployed.
    assert_eq!(
        dump_metric(&plan_v2.plan, &stored, "kept"),
        dump_metric(&plan_v1.plan, &reference(&plan_v1, &all), "kept")
    );
}

/// A stored checkpoint whose event time no event could have reached (here
/// 9999-12-31, as a build that still took such an event wrote it) is put
/// back to the processing time when the consumer restores it: the events
/// after it are counted, not dead-lettered as late until 9999.
#[test]
fn a_checkpoint_with_an_unreachable_event_time_does_not_make_every_later_event_late() {
    let plan = plan();
    // Live events: event time a minute behind the processing time.
    let now = kafka::control::now_ms();
    let config = workload::Config { seed: 41, start_ms: now - 60_000, rate_per_s: 50.0, ..Default::default() };
    let all: Vec<(i32, String)> =
        workload::Generator::new(config).take(1_000).enumerate().map(|(i, l)| (i as i32 % PARTITIONS, l)).collect();
    let (first, second) = all.split_at(500);
    let (_cluster, brokers) = cluster_with(first);
    let db = temp_db("unreachable-event-time");
    let path = db.to_str().expect("utf-8").to_string();
    let flushed_through = |events: &[(i32, String)]| {
        let store = SqliteStore::open(&path).expect("open");
        (0..PARTITIONS).all(|p| {
            let count = events.iter().filter(|(q, _)| *q == p).count() as i64;
            store.checkpoint(TOPIC, p).expect("read").is_some_and(|c| c.next_offset >= count)
        })
    };
    let consume = |events: &[(i32, String)]| {
        let positions = OffsetPerPartition::default();
        let recorder = Arc::new(Recorder { positions: positions.clone(), ..Default::default() });
        let store = SqliteStore::open(&path).expect("open");
        let member = start(settings(&brokers), plan.clone(), Box::new(store), recorder);
        wait_for("the events", Duration::from_secs(60), || has_all(&positions, events));
        wait_for("their flush", Duration::from_secs(30), || flushed_through(events));
        member.stop();
    };
    consume(first);

    let far = 253_402_214_400_000; // 9999-12-31T00:00:00Z
    let mut store = SqliteStore::open(&path).expect("open");
    let poisoned: Vec<engine::Checkpoint> = (0..PARTITIONS)
        .map(|p| engine::Checkpoint {
            max_event_time: Some(far),
            ..store.checkpoint(TOPIC, p).expect("read").expect("one")
        })
        .collect();
    store.write(&WriteBatch { topic: TOPIC, checkpoints: &poisoned, ..WriteBatch::default() }).expect("poison");
    drop(store);

    produce(&brokers, second);
    consume(&all);
    let store = SqliteStore::open(&path).expect("open");
    let late_in_second: i64 = (0..PARTITIONS)
        .map(|p| {
            let first_of_p = first.iter().filter(|(q, _)| *q == p).count() as i64;
            store
                .connection()
                .query_row(
                    "SELECT count(*) FROM stream_dead_letters WHERE partition = ?1 AND offset >= ?2 AND reason = 'late'",
                    (p, first_of_p),
                    |r| r.get::<_, i64>(0),
                )
                .expect("count")
        })
        .sum();
    // Put back to now, the watermark is where a live partition's is: a
    // generated straggler may be late, not the stream (500 late if not).
    assert!(late_in_second < 25, "{late_in_second} of the {} later events were late", second.len());
    for p in 0..PARTITIONS {
        let checkpoint = store.checkpoint(TOPIC, p).expect("read").expect("one");
        assert!(checkpoint.max_event_time.is_some_and(|t| t <= kafka::control::now_ms()), "{checkpoint:?}");
    }
}
