//! The Kafka side of `streamd`: a consumer-group member that runs the engine
//! over its assigned partitions and never acknowledges a message before its
//! results are durable.
//!
//! * A [`Consumer`] starts on the empty plan; its first plan, like every
//!   later one, comes through [`Consumer::apply`] (store set up, deployment
//!   recorded, observer told, topics subscribed).
//! * One [`Partition`](engine::Partition) state per assigned partition; on
//!   assignment it is claimed, restored from the store's checkpoint and
//!   open tier rows, and consumed from the checkpoint's replay point (the
//!   store is the truth, see `engine::partition`).
//! * Every flush writes dead letters to the dead-letter topic, then rows, dead
//!   letters and checkpoints to the store in one batch, and only then commits
//!   the partitions' replay points to Kafka.
//! * While the store is failing, the assignment is paused, writes are retried
//!   with capped exponential backoff and jitter, nothing is committed, and
//!   consumption resumes by itself.
//! * On revocation the partitions are flushed and committed inside the
//!   rebalance callback, before they move to another member.
//!
//! The loop is blocking and runs on its own thread; the daemon observes it
//! through [`Observer`] and [`Status`].

#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod backfill;
pub mod batch;
mod consumer;
pub mod control;
mod dead_letter;

pub use consumer::{run, topics_of, Consumer};

use std::time::Duration;

/// Errors that stop the consumer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kafka client could not be created or subscribed.
    #[error("kafka: {context}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The store failed in a way retrying cannot fix.
    #[error("store")]
    Store(#[source] store::Error),
    /// A thread could not be started.
    #[error("cannot start the store writer thread")]
    Thread(#[source] std::io::Error),
    /// The control topic does not exist (or has no partitions).
    #[error("control topic `{topic}` does not exist or has no partitions")]
    NoControlTopic {
        /// Its name.
        topic: String,
    },
    /// The control topic could not be read to its end in time.
    #[error("control topic `{topic}`: not read to its end within {timeout:?}")]
    ControlNotRead {
        /// Its name.
        topic: String,
        /// How long it was given.
        timeout: std::time::Duration,
    },
    /// A record for the control topic could not be encoded.
    #[error("cannot encode a control record")]
    Encode(#[source] serde_json::Error),
    /// The first plan was refused: there is no running plan to keep.
    #[error("the plan cannot run here: {0}")]
    Refused(#[source] Refusal),
    /// A backfill cannot run as asked.
    #[error("backfill: {0}")]
    Backfill(String),
    /// A batch run stopped because one of its threads failed.
    #[error("the batch run stopped: one of its threads failed")]
    Stopped,
}

/// Why a plan does not run here, as data: the consumer records it in the
/// deployment history, `/status` and the instance reports carry it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Refusal {
    /// A bundle this build cannot run: [`engine::CompiledPlan::from_bundle`]'s error.
    #[error("{message}")]
    Bundle {
        /// The error's text.
        message: String,
        /// The error as data (its `kind` and fields).
        error: serde_json::Value,
    },
    /// Local files (`streamd --watch`) that do not compile.
    #[error("files of {dir} do not compile:\n{rendered}")]
    Files {
        /// The directory.
        dir: String,
        /// The diagnostics, rendered.
        rendered: String,
    },
    /// The plan declares no source: it would consume nothing.
    #[error("the plan declares no source")]
    NoSource,
    /// The store cannot hold the plan (its tables or columns).
    #[error("the store cannot hold the plan: {message}")]
    Store {
        /// The store's error.
        message: String,
    },
}

impl From<&engine::Error> for Refusal {
    fn from(error: &engine::Error) -> Self {
        Refusal::Bundle { message: error.to_string(), error: serde_json::to_value(error).unwrap_or_default() }
    }
}

/// In [`Settings::dead_letter_topic`], the first topic the running plan
/// reads (braces are not allowed in topic names, so it cannot clash).
pub const TOPIC_PLACEHOLDER: &str = "{topic}";

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `group.id`.
    pub group_id: String,
    /// Where rejected messages go besides the store; [`TOPIC_PLACEHOLDER`]
    /// in it stands for the first topic the running plan reads, and
    /// follows every plan applied. `None` keeps them in the store only.
    pub dead_letter_topic: Option<String>,
    /// Extra librdkafka settings, passed through as given.
    pub librdkafka: Vec<(String, String)>,
    /// Longest time between flushes.
    pub flush_interval: Duration,
    /// Messages that make a flush due. Flushes are written in the
    /// background; once this many more are pending while one is being
    /// written, consuming waits for it.
    pub flush_messages: usize,
    /// An idle partition's event time advances by processing time after this long.
    pub idle_timeout: Duration,
    /// First retry delay after a failed store write.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// This instance's name in the deployment history.
    pub instance: String,
    /// Threads that run the engine, each over a share of the assigned partitions.
    pub workers: usize,
    /// Tier rows are held back and written at most once per this much
    /// event time (zero: at every base window close); see
    /// [`engine::Partition::with_tier_rows_every`].
    pub tier_rows_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            brokers: "127.0.0.1:9092".into(),
            group_id: "streamd".into(),
            dead_letter_topic: None,
            librdkafka: Vec::new(),
            flush_interval: Duration::from_millis(500),
            flush_messages: 20_000,
            idle_timeout: Duration::from_secs(30),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            instance: "streamd".into(),
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            tier_rows_every: Duration::ZERO,
        }
    }
}

/// What a flush wrote.
#[derive(Debug, Default, Clone)]
pub struct FlushReport {
    /// Messages consumed since the previous flush.
    pub messages: u64,
    /// Rows written, by metric name.
    pub rows_by_metric: std::collections::BTreeMap<String, u64>,
    /// Dead letters written, by reason.
    pub dead_letters: Vec<(engine::Reason, u64)>,
    /// How long the store write took.
    pub store_write: Duration,
    /// Partitions committed, with their replay points.
    pub committed: Vec<(String, i32, i64)>,
}

/// Callbacks for telemetry; all default to doing nothing.
pub trait Observer: Send + Sync {
    /// A flush completed.
    fn flushed(&self, _report: &FlushReport) {}
    /// After a flush made them durable, for live exports: every assigned
    /// partition with its topic (running `plan`, the current one), and the
    /// rows emitted since the previous flush with theirs (each holding its
    /// own metric, which `plan` may no longer have). The partitions are as they are
    /// when the flush ends: written in the background, it may be several
    /// batches behind them (their open windows ahead of the rows). Called
    /// with the consumer's state locked: keep it short.
    fn flushed_state(
        &self,
        _plan: &engine::CompiledPlan,
        _partitions: &[(&str, &engine::Partition)],
        _rows: &[(&str, &engine::Row)],
    ) {
    }
    /// A store write failed and will be retried after `retry_in`.
    fn store_failed(&self, _error: &store::Error, _retry_in: Duration) {}
    /// A write was refused because another instance claimed `partitions`
    /// of `topic` since this one did (see [`store::Store::claim`]): their
    /// state and unwritten output were dropped, and the rest of the write
    /// is retried without them.
    fn fenced(&self, _topic: &str, _partitions: &[i32]) {}
    /// Consumer lag of a partition, from librdkafka statistics.
    fn lag(&self, _topic: &str, _partition: i32, _lag: i64) {}
    /// The status changed (assignment, watermarks, replay points).
    fn status(&self, _status: &Status) {}
    /// A new plan runs: `version` of the bundle, or `None` for local files.
    fn plan_applied(&self, _version: Option<u64>, _plan: &dsl::Plan, _changes: &dsl::bundle::MetricChanges) {}
    /// A plan was refused and the running plan stays.
    fn plan_rejected(&self, _version: Option<u64>, _refusal: &Refusal) {}
}

/// A plan to switch to between two batches, or one that was refused
/// before it reached the consumer (so the refusal is recorded in order).
#[derive(Debug, Clone)]
pub struct PlanUpdate {
    /// Bundle version; `None` for local files.
    pub version: Option<u64>,
    /// The compiled plan, or why it cannot run here.
    pub plan: std::result::Result<std::sync::Arc<engine::CompiledPlan>, Refusal>,
}

/// A snapshot of the consumer, for `/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// Assigned partitions.
    pub partitions: Vec<PartitionStatus>,
    /// Whether consumption is paused because the store is failing.
    pub is_paused: bool,
    /// Per metric: events counted, late, overflow (summed over partitions).
    pub metrics: Vec<MetricStatus>,
    /// Assigned partitions waiting, paused, for the newer plan their
    /// checkpoint was written under (see `docs/exactly-once.md`).
    pub awaiting_plan: Vec<AwaitingPlan>,
}

/// An assigned partition waiting for a plan version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AwaitingPlan {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The bundle version its checkpoint was written under.
    pub version: u64,
}

/// One assigned partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionStatus {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Highest event time seen, RFC 3339.
    pub max_event_time: Option<String>,
    /// The offset committed at the last flush.
    pub replay_point: Option<i64>,
    /// One past the last offset processed.
    pub next_offset: Option<i64>,
    /// Open series per metric.
    pub live_series: Vec<usize>,
    /// Tier rows held back (`Settings::tier_rows_every`); while there are
    /// any, the replay point stays where it was when there were none.
    pub held_back_tier_rows: usize,
}

/// Counters of one metric on this instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricStatus {
    /// Metric name.
    pub name: String,
    /// Events counted.
    pub events: u64,
    /// Late events.
    pub late: u64,
    /// Events sent to `__other__`.
    pub overflow: u64,
    /// Open series.
    pub live_series: usize,
}
