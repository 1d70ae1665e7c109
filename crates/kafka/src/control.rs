//! The control topic: where `streamctl deploy` publishes bundles and every
//! `streamd` reports what it runs.
//!
//! A compacted topic with two kinds of records, told apart by key:
//! * `bundle/<version, 20 digits>` → a [`Bundle`]: one record per version,
//!   so compaction keeps the whole history;
//! * `instance/<id>` → an [`InstanceReport`]: compaction keeps each
//!   instance's latest report.
//!
//! Versions order bundles, not offsets: a reader takes every partition from
//! the beginning and the newest bundle is the highest version, whatever
//! partition it landed in.

use crate::{Error, Refusal, Result};
use dsl::bundle::Bundle;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tracing::warn;

/// Default name of the control topic.
pub const DEFAULT_CONTROL_TOPIC: &str = "streamd.control";

const BUNDLE_PREFIX: &str = "bundle/";
const INSTANCE_PREFIX: &str = "instance/";

/// What one `streamd` instance last said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// Instance id (host and process).
    pub instance: String,
    /// Consumer group.
    pub group: String,
    /// Version of the running bundle; `None` when it runs local files.
    pub plan_version: Option<u64>,
    /// Hash of the running plan.
    pub plan_hash: String,
    /// Assigned partitions.
    pub assignment: Vec<(String, i32)>,
    /// Whether consumption is paused (store failing).
    pub is_paused: bool,
    /// The last bundle it refused, if any.
    pub last_rejection: Option<Rejection>,
    /// Process start, ms since the epoch.
    pub started_at_ms: i64,
    /// Time of this report, ms since the epoch.
    pub reported_at_ms: i64,
}

/// A bundle a daemon refused to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Its version (`None` for local files, e.g. `streamd --watch`).
    pub version: Option<u64>,
    /// Why, in words.
    pub error: String,
    /// Why, as data (absent from reports of older daemons).
    #[serde(default)]
    pub refusal: Option<Refusal>,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

impl Rejection {
    /// `version` refused now, for `refusal`.
    pub fn new(version: Option<u64>, refusal: &Refusal) -> Self {
        Rejection { version, error: refusal.to_string(), refusal: Some(refusal.clone()), at_ms: now_ms() }
    }
}

/// Everything on the control topic.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ControlState {
    /// Bundles by version.
    pub bundles: BTreeMap<u64, Bundle>,
    /// Latest report per instance.
    pub instances: BTreeMap<String, InstanceReport>,
}

impl ControlState {
    /// The newest bundle.
    pub fn latest(&self) -> Option<&Bundle> {
        self.bundles.values().next_back()
    }

    /// The version the next publication gets.
    pub fn next_version(&self) -> u64 {
        self.bundles.keys().next_back().map_or(1, |v| v + 1)
    }

    /// Adds one record; returns the bundle if it was one.
    fn apply(&mut self, record: ControlRecord) -> Option<u64> {
        match record {
            ControlRecord::Bundle(bundle) => {
                let version = bundle.version;
                self.bundles.insert(version, *bundle);
                Some(version)
            }
            ControlRecord::Instance(report) => {
                self.instances.insert(report.instance.clone(), *report);
                None
            }
        }
    }
}

/// One decoded record of the control topic.
#[derive(Debug, Clone)]
pub enum ControlRecord {
    /// A published bundle.
    Bundle(Box<Bundle>),
    /// An instance report.
    Instance(Box<InstanceReport>),
}

/// How to reach the control topic.
#[derive(Debug, Clone)]
pub struct ControlTopic {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic name.
    pub topic: String,
    /// Extra librdkafka settings (security and the like), passed as given.
    pub librdkafka: Vec<(String, String)>,
}

impl ControlTopic {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.librdkafka {
            // Only connection settings apply to these side clients.
            if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") || k.starts_with("client.")
            {
                config.set(k, v);
            }
        }
        config
    }

    /// Creates the topic (one partition, compacted) unless it exists.
    ///
    /// # Errors
    /// If the topic is missing and cannot be created.
    pub fn ensure_exists(&self, timeout: Duration) -> Result<()> {
        ensure_topic(&self.config(), &self.topic, &[("cleanup.policy", "compact")], timeout).map_err(|source| {
            Error::Kafka { context: format!("control topic `{}`: cannot read or create it", self.topic), source }
        })
    }

    /// A producer of control records.
    ///
    /// # Errors
    /// If the client cannot be created.
    pub fn publisher(&self) -> Result<ControlPublisher> {
        let mut config = self.config();
        config.set("acks", "all").set("enable.idempotence", "true").set("linger.ms", "0");
        let producer = config
            .create()
            .map_err(|source| Error::Kafka { context: "cannot create the control producer".into(), source })?;
        Ok(ControlPublisher { producer, topic: self.topic.clone() })
    }

    /// A reader of every partition of the topic from the beginning.
    ///
    /// # Errors
    /// If the client cannot be created or the topic has no partitions.
    pub fn reader(&self, timeout: Duration) -> Result<ControlReader> {
        let mut config = self.config();
        // No group: every reader sees everything and commits nothing.
        config
            .set("group.id", "streamd-control-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            // Deploy latency: a broker may hold an idle fetch this long
            // before answering; the topic is tiny, frequent fetches cost nothing.
            .set("fetch.wait.max.ms", "100");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|source| Error::Kafka { context: "cannot create the control reader".into(), source })?;
        let metadata = consumer.fetch_metadata(Some(&self.topic), timeout).map_err(|source| Error::Kafka {
            context: format!("control topic `{}`: cannot read metadata", self.topic),
            source,
        })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::NoControlTopic { topic: self.topic.clone() });
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition_offset(&self.topic, p, Offset::Beginning)
                .map_err(|source| Error::Kafka { context: "cannot assign the control topic".into(), source })?;
        }
        consumer
            .assign(&tpl)
            .map_err(|source| Error::Kafka { context: "cannot assign the control topic".into(), source })?;
        Ok(ControlReader { consumer, at_end: BTreeSet::new(), partitions: partitions.len() })
    }

    /// Reads the whole topic: every bundle and the latest instance reports.
    ///
    /// # Errors
    /// If the topic cannot be read to its end within `timeout`.
    pub fn read_all(&self, timeout: Duration) -> Result<ControlState> {
        let mut reader = self.reader(timeout)?;
        let mut state = ControlState::default();
        let deadline = Instant::now() + timeout;
        while !reader.is_at_end() {
            if Instant::now() >= deadline {
                return Err(Error::ControlNotRead { topic: self.topic.clone(), timeout });
            }
            for record in reader.poll(Duration::from_millis(100)) {
                state.apply(record);
            }
        }
        Ok(state)
    }
}

/// Follows the control topic.
pub struct ControlReader {
    consumer: BaseConsumer,
    at_end: BTreeSet<i32>,
    partitions: usize,
}

impl ControlReader {
    /// Whether every partition has been read to its current end.
    pub fn is_at_end(&self) -> bool {
        self.at_end.len() >= self.partitions
    }

    /// Records that arrived within `timeout` (after the first, whatever
    /// else is already buffered). Undecodable records are logged and skipped:
    /// a broken record must not stop the fleet from following the topic.
    pub fn poll(&mut self, timeout: Duration) -> Vec<ControlRecord> {
        let mut records = Vec::new();
        let mut wait = timeout;
        while let Some(result) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            match result {
                Ok(message) => {
                    self.at_end.remove(&message.partition());
                    match decode(message.key(), message.payload()) {
                        Ok(Some(record)) => records.push(record),
                        Ok(None) => {}
                        Err(error) => warn!(offset = message.offset(), error = %error, "Skipping a control record."),
                    }
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.at_end.insert(partition);
                }
                Err(error) => warn!(error = %error, "Control topic error; librdkafka retries."),
            }
        }
        records
    }

    /// Polls until `timeout` passes, folding everything into `state`;
    /// returns the versions of bundles that arrived.
    pub fn poll_into(&mut self, state: &mut ControlState, timeout: Duration) -> Vec<u64> {
        self.poll(timeout).into_iter().filter_map(|r| state.apply(r)).collect()
    }
}

fn decode(key: Option<&[u8]>, payload: Option<&[u8]>) -> std::result::Result<Option<ControlRecord>, String> {
    let key = key.map(String::from_utf8_lossy).unwrap_or_default();
    // A tombstone (no payload) removes nothing we keep: history is append-only.
    let Some(payload) = payload else { return Ok(None) };
    if key.starts_with(BUNDLE_PREFIX) {
        let bundle: Bundle = serde_json::from_slice(payload).map_err(|e| format!("bundle `{key}`: {e}"))?;
        return Ok(Some(ControlRecord::Bundle(Box::new(bundle))));
    }
    if key.starts_with(INSTANCE_PREFIX) {
        let report: InstanceReport = serde_json::from_slice(payload).map_err(|e| format!("report `{key}`: {e}"))?;
        return Ok(Some(ControlRecord::Instance(Box::new(report))));
    }
    Err(format!("unknown record key `{key}`"))
}

/// Publishes control records.
pub struct ControlPublisher {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl ControlPublisher {
    /// Publishes a bundle and waits until the broker has it.
    ///
    /// # Errors
    /// If it cannot be delivered within `timeout`.
    pub fn publish_bundle(&self, bundle: &Bundle, timeout: Duration) -> Result<()> {
        let payload = serde_json::to_vec(bundle).map_err(Error::Encode)?;
        self.send(&format!("{BUNDLE_PREFIX}{:020}", bundle.version), &payload, timeout)
    }

    /// Publishes an instance report.
    ///
    /// # Errors
    /// If it cannot be delivered within `timeout`.
    pub fn publish_report(&self, report: &InstanceReport, timeout: Duration) -> Result<()> {
        let payload = serde_json::to_vec(report).map_err(Error::Encode)?;
        self.send(&format!("{INSTANCE_PREFIX}{}", report.instance), &payload, timeout)
    }

    fn send(&self, key: &str, payload: &[u8], timeout: Duration) -> Result<()> {
        self.producer
            .send(BaseRecord::to(&self.topic).key(key).payload(payload))
            .map_err(|(source, _)| Error::Kafka { context: format!("cannot publish `{key}`"), source })?;
        self.producer
            .flush(timeout)
            .map_err(|source| Error::Kafka { context: format!("`{key}` was not delivered in time"), source })
    }
}

/// Creates `topic` with one partition, the brokers' default replication and
/// `settings` (topic configs such as `cleanup.policy`) unless it exists:
/// for the topics the product writes itself, so that it runs where
/// brokers do not create topics on first use. `config` carries the
/// connection settings.
///
/// # Errors
/// If the metadata cannot be read, or the topic is missing and cannot be created.
pub fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    settings: &[(&str, &str)],
    timeout: Duration,
) -> std::result::Result<(), KafkaError> {
    let probe: BaseConsumer = config.create()?;
    let metadata = probe.fetch_metadata(Some(topic), timeout)?;
    if metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()) {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let mut new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(-1));
    for (key, value) in settings {
        new_topic = new_topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    for result in block_on(admin.create_topics([&new_topic], &options))? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// Runs a future that needs no runtime of its own (rdkafka's admin
/// futures are completed by librdkafka's threads) on this thread.
fn block_on<F: Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Turns a bundle into a runnable plan, or says why it cannot run here
/// ([`engine::CompiledPlan::from_bundle`]).
pub type Compile<'a> = dyn Fn(&Bundle) -> std::result::Result<Arc<engine::CompiledPlan>, engine::Error> + 'a;

/// A bundle version with its runnable plan.
pub type Runnable = (u64, Arc<engine::CompiledPlan>);

/// The newest bundle of `state` that compiles, and why the newer ones do
/// not (newest first): what a daemon starts with.
pub fn newest_runnable(state: &ControlState, compile: &Compile<'_>) -> (Option<Runnable>, Vec<(u64, Refusal)>) {
    let mut rejections = Vec::new();
    for (version, bundle) in state.bundles.iter().rev() {
        match compile(bundle) {
            Ok(plan) => return (Some((*version, plan)), rejections),
            Err(error) => rejections.push((*version, Refusal::from(&error))),
        }
    }
    (None, rejections)
}

/// Follows the control topic for one daemon: hands each newer runnable
/// bundle to the consumer and reports the instance.
pub struct Follower {
    /// Reads the topic.
    pub reader: ControlReader,
    /// Publishes reports.
    pub publisher: ControlPublisher,
    /// Where plans go (the consumer applies them between batches).
    pub updates: std::sync::mpsc::Sender<crate::PlanUpdate>,
    /// Bundles up to this version were applied or rejected already.
    pub last_tried: Option<u64>,
    /// How often the instance reports itself when nothing happens.
    pub report_interval: Duration,
}

impl Follower {
    /// Runs until `shutdown` is set. `report` describes the instance now.
    /// Bundles that do not compile here go to the consumer as refusals, so
    /// it records them in order with the plans it applies.
    pub fn run(
        mut self,
        shutdown: &std::sync::atomic::AtomicBool,
        compile: &Compile<'_>,
        report: &dyn Fn() -> InstanceReport,
    ) {
        let mut state = ControlState::default();
        let mut last_report: Option<(Instant, InstanceReport)> = None;
        while !shutdown.load(std::sync::atomic::Ordering::Relaxed) {
            let arrived = self.reader.poll_into(&mut state, Duration::from_millis(100));
            if !arrived.is_empty() {
                if let Some(bundle) = state.latest().filter(|b| self.last_tried.is_none_or(|v| b.version > v)) {
                    self.last_tried = Some(bundle.version);
                    let plan = compile(bundle).map_err(|error| Refusal::from(&error));
                    let update = crate::PlanUpdate { version: Some(bundle.version), plan };
                    if self.updates.send(update).is_err() {
                        return; // The consumer is gone.
                    }
                }
            }
            // Report at once when something changed, else every interval.
            let now = report();
            let is_due = last_report.as_ref().is_none_or(|(at, last)| {
                at.elapsed() >= self.report_interval
                    || (last.plan_version, &last.last_rejection, &last.assignment, last.is_paused)
                        != (now.plan_version, &now.last_rejection, &now.assignment, now.is_paused)
            });
            if is_due {
                if let Err(error) = self.publisher.publish_report(&now, Duration::from_secs(5)) {
                    warn!(error = %error, "Cannot publish the instance report; will retry.");
                }
                last_report = Some((Instant::now(), now));
            }
        }
    }
}

/// Wall-clock time, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
