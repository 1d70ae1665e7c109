//! Storage of metric rows, checkpoints and dead letters.
//!
//! [`Store`] is what the daemon and `streamctl run` write through; backends
//! know tables, not pipelines: a plan is turned into table layouts by
//! [`schema`], and every backend stores the same logical schema. SQLite
//! (bundled) is the embedded default.
//!
//! Writes are absolute upserts of aggregate states keyed by series, window
//! start and source partition, so repeating a write is harmless; a batch of
//! rows and the checkpoint that releases them are written together.
//! Reads merge source partitions (and, for coarse ranges, windows) by merging
//! states, see [`query`].

#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod episodes;
pub mod query;
pub mod schema;
pub mod scylla;
pub mod sqlite;

use engine::aggregate::AggState;
use engine::{Checkpoint, DeadLetter, KeyVal, Row};

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQLite database failed.
    #[error("sqlite: {context}")]
    Sqlite {
        /// What was being done.
        context: String,
        /// The driver error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored aggregate state could not be decoded.
    #[error("table `{table}`: stored state of column `{column}` is corrupt")]
    CorruptState {
        /// Table.
        table: String,
        /// Column.
        column: String,
        /// The decode error.
        #[source]
        source: serde_json::Error,
    },
    /// The existing table cannot hold what the plan needs.
    #[error("table `{table}` exists with an incompatible layout: {detail}")]
    IncompatibleSchema {
        /// Table.
        table: String,
        /// What differs.
        detail: String,
    },
    /// A query names something the plan does not have.
    #[error("{0}")]
    BadQuery(String),
    /// The Scylla/Cassandra driver failed.
    #[error("scylla: {context}")]
    Scylla {
        /// What was being done.
        context: String,
        /// Whether the failure is transient (timeouts, unavailable or
        /// overloaded replicas, broken connections), see
        /// [`scylla::is_transient`].
        retryable: bool,
        /// The driver error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This store does not keep this kind of data.
    #[error("this store keeps no {0}")]
    Unsupported(&'static str),
    /// A setting is out of range or unknown (caught before connecting).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// The store cannot be reached right now (network, node down, overload).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Another owner has claimed these partitions since the writer did
    /// (see [`Store::claim`]): nothing of the batch was written.
    #[error("topic `{topic}`: partitions {partitions:?} belong to a newer owner")]
    Fenced {
        /// Topic.
        topic: String,
        /// The partitions the writer no longer owns.
        partitions: Vec<i32>,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed (the store was
    /// busy or unavailable) rather than failing the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sqlite { source: rusqlite::Error::SqliteFailure(e, _), .. } => {
                matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::ReadOnly
                )
            }
            Error::Unavailable(_) => true,
            Error::Scylla { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

/// Results of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a store URL (`--store`, `store.url`) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreUrl<'a> {
    /// `sqlite:PATH`: the path.
    Sqlite(&'a str),
    /// `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`: the part after `scylla:`
    /// (see [`scylla::ScyllaConfig::parse`]).
    Scylla(&'a str),
}

impl<'a> StoreUrl<'a> {
    /// Parses a store URL.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for any other scheme.
    pub fn parse(url: &'a str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            return Ok(StoreUrl::Sqlite(path));
        }
        if let Some(spec) = url.strip_prefix("scylla:") {
            return Ok(StoreUrl::Scylla(spec));
        }
        Err(Error::InvalidConfig(format!(
            "unsupported store `{url}`; use `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`"
        )))
    }
}

/// Everything one processing step produced, written atomically where the
/// backend allows: rows, dead letters, then the checkpoints that release them.
#[derive(Debug, Default)]
pub struct WriteBatch<'a> {
    /// Kafka topic the checkpoints belong to.
    pub topic: &'a str,
    /// Rows to upsert.
    pub rows: &'a [Row],
    /// Rejected messages.
    pub dead_letters: &'a [DeadLetter],
    /// Partition progress to record once the rows are durable.
    pub checkpoints: &'a [Checkpoint],
    /// The writer's owner epoch of each partition the batch writes for
    /// (from [`Store::claim`]); empty for a writer that claims nothing
    /// (`streamctl run`). A partition claimed by someone else since makes
    /// the write fail with [`Error::Fenced`], writing nothing.
    pub owners: &'a [(i32, u64)],
}

/// Which rows to read.
#[derive(Debug, Clone)]
pub struct RowFilter {
    /// Tier index into the metric's tiers.
    pub tier: usize,
    /// Window start at or after, ms.
    pub from_ms: Option<i64>,
    /// Window start before, ms.
    pub to_ms: Option<i64>,
    /// Key column index and required value.
    pub equals: Vec<(usize, KeyVal)>,
    /// Only this source partition.
    pub partition: Option<i32>,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Reason name.
    pub reason: String,
    /// Detail.
    pub detail: String,
    /// Original bytes.
    pub payload: Vec<u8>,
}

/// A plan a daemon applied or rejected, the one it started with included:
/// the store's deployment history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentRecord {
    /// Bundle version; `None` for a plan of local pipeline files (`streamd
    /// --pipelines`), which has none. Stored as version 0: bundles count from 1.
    pub version: Option<u64>,
    /// The daemon instance that recorded it.
    pub instance: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// `applied` or `rejected`.
    pub outcome: String,
    /// Hash of the running plan after it (for a rejection: the plan that stayed).
    pub plan_hash: String,
    /// Why it was rejected, or a summary of what changed.
    pub detail: String,
}

/// The `version` column of a deployment record: the bundle version, 0 for
/// local pipeline files (no bundle is version 0).
fn deployment_version_column(version: Option<u64>) -> i64 {
    version.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// A deployment record's version from its column (see [`deployment_version_column`]).
fn deployment_version(column: i64) -> Option<u64> {
    u64::try_from(column).ok().filter(|v| *v > 0)
}

/// A place metric rows, checkpoints and dead letters live.
pub trait Store {
    /// Creates or migrates the tables `plan` needs.
    ///
    /// # Errors
    /// On storage failure, or when an existing table cannot be migrated additively.
    fn setup(&mut self, plan: &dsl::Plan) -> Result<()>;

    /// Writes a batch; rows and checkpoints become durable together. Each
    /// row holds its metric, so no plan is needed: rows of metrics a newer
    /// plan stopped are written like the others (their tables were set up
    /// when their plan was).
    ///
    /// # Errors
    /// On storage failure; nothing of the batch is then committed.
    fn write(&mut self, batch: &WriteBatch<'_>) -> Result<()>;

    /// Makes the caller the owner of `topic`/`partition`: raises the
    /// partition's owner epoch and returns it. From then on a write that
    /// carries an older epoch for that partition fails with
    /// [`Error::Fenced`], so an owner that was paused past its session
    /// timeout (and replaced) cannot write over its successor.
    ///
    /// # Errors
    /// On storage failure.
    fn claim(&mut self, topic: &str, partition: i32) -> Result<u64>;

    /// The last checkpoint of `topic`/`partition`.
    ///
    /// # Errors
    /// On storage failure.
    fn checkpoint(&self, topic: &str, partition: i32) -> Result<Option<Checkpoint>>;

    /// Every stored checkpoint, with its topic (checkpoints of a backfill
    /// included, under their own topic), in (topic, partition) order. Reads
    /// use it to bound how far back tier rows may lag (see
    /// [`query::read_current`]).
    ///
    /// # Errors
    /// On storage failure; [`Error::Unsupported`] for a store that cannot
    /// list them.
    fn all_checkpoints(&self) -> Result<Vec<(String, Checkpoint)>> {
        Err(Error::Unsupported("list of checkpoints"))
    }

    /// Rows of `metric` matching `filter`, in (window start, series) order.
    ///
    /// # Errors
    /// On storage failure or corrupt states.
    fn read(&self, plan: &dsl::Plan, metric: usize, filter: &RowFilter) -> Result<Vec<Row>>;

    /// Tier rows of `partition` that may still be open after `checkpoint`,
    /// for [`engine::Partition::restore`].
    ///
    /// # Errors
    /// On storage failure or corrupt states.
    fn open_tier_rows(&self, plan: &dsl::Plan, checkpoint: &Checkpoint) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for (m, metric) in plan.metrics.iter().enumerate() {
            let watermark = checkpoint.max_event_time.map_or(i64::MIN, |t| t.saturating_sub(metric.lateness_ms as i64));
            for (t, tier) in metric.tiers.iter().enumerate().skip(1) {
                // Tier windows ending after the watermark may still grow.
                let from = watermark.saturating_sub(tier.width_ms as i64) + 1;
                let filter = RowFilter {
                    tier: t,
                    from_ms: Some(from),
                    // No window starts after the highest event time: a bounded range reads by index.
                    to_ms: checkpoint.max_event_time.map(|t| t.saturating_add(1)),
                    equals: vec![],
                    partition: Some(checkpoint.partition),
                };
                rows.extend(self.read(plan, m, &filter)?);
            }
        }
        Ok(rows)
    }

    /// Dead letters stored for `topic`, in (partition, offset) order.
    ///
    /// # Errors
    /// On storage failure.
    fn dead_letters(&self, topic: &str) -> Result<Vec<StoredDeadLetter>>;

    /// Appends to the deployment history.
    ///
    /// # Errors
    /// On storage failure.
    fn record_deployment(&mut self, record: &DeploymentRecord) -> Result<()>;

    /// The deployment history, oldest first.
    ///
    /// # Errors
    /// On storage failure.
    fn deployments(&self) -> Result<Vec<DeploymentRecord>>;

    /// Deletes rows whose tier retention has passed at `now_ms`; returns how many.
    ///
    /// # Errors
    /// On storage failure.
    fn sweep(&mut self, plan: &dsl::Plan, now_ms: i64) -> Result<u64>;

    /// Upserts DNSBL listing episodes (identity: list, target, first_seen_ms).
    ///
    /// # Errors
    /// On storage failure, or for a store that keeps no episodes.
    fn write_episodes(&mut self, _episodes: &[episodes::Episode]) -> Result<()> {
        Err(Error::Unsupported("listing episodes"))
    }

    /// The DNSBL listing episodes `filter` selects, by list, target and start.
    ///
    /// # Errors
    /// On storage failure, or for a store that keeps no episodes.
    fn episodes(&self, _filter: &episodes::EpisodeFilter) -> Result<Vec<episodes::Episode>> {
        Err(Error::Unsupported("listing episodes"))
    }
}

/// A checkpoint's stored columns beside its key, as both backends keep
/// them: replay offset, next offset, max event time, metric starts (JSON),
/// plan version (a signed integer).
type CheckpointColumns = (i64, i64, Option<i64>, Option<String>, Option<i64>);

/// The metric starts and the plan version of `checkpoint`, as stored (the
/// last two of [`CheckpointColumns`]).
fn checkpoint_columns(checkpoint: &Checkpoint) -> (Option<String>, Option<i64>) {
    let metrics = checkpoint.metrics.as_ref().and_then(|m| serde_json::to_string(m).ok());
    (metrics, checkpoint.plan_version.and_then(|v| i64::try_from(v).ok()))
}

/// The checkpoint of `partition` read back from its stored columns.
fn stored_checkpoint(partition: i32, columns: CheckpointColumns) -> Result<Checkpoint> {
    let (replay_offset, next_offset, max_event_time, metrics, plan_version) = columns;
    let metrics = match metrics {
        None => None,
        Some(text) => Some(serde_json::from_str(&text).map_err(|source| Error::CorruptState {
            table: "stream_checkpoints".into(),
            column: "metrics".into(),
            source,
        })?),
    };
    // A negative version was never written.
    let plan_version = plan_version.and_then(|v| u64::try_from(v).ok());
    Ok(Checkpoint { partition, replay_offset, next_offset, max_event_time, metrics, plan_version })
}

/// A canonical text line per stored row of every metric and tier (finished
/// values and coverage, sorted): two stores hold the same results exactly when
/// their snapshots are equal. Used by the crash and replay tests.
///
/// # Errors
/// On storage failure.
pub fn snapshot(store: &dyn Store, plan: &dsl::Plan) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (m, metric) in plan.metrics.iter().enumerate() {
        for tier in 0..metric.tiers.len() {
            let filter = RowFilter { tier, from_ms: None, to_ms: None, equals: vec![], partition: None };
            for row in store.read(plan, m, &filter)? {
                let values: Vec<KeyVal> = row.states.iter().map(AggState::finish).collect();
                lines.push(format!(
                    "{} {} {} p{} {:?} {:?} {:?}",
                    metric.name,
                    metric.tiers[tier].name,
                    row.window_start,
                    row.partition,
                    row.keys,
                    values,
                    row.included_through
                ));
            }
        }
    }
    lines.sort();
    Ok(lines)
}
