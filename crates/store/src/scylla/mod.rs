//! The ScyllaDB / Cassandra backend, on the `scylla` driver.
//!
//! The table layout (partition key with a time bucket, TTL, compaction) is
//! generated in [`schema`] and documented there; it holds the same logical
//! schema as SQLite ([`crate::schema`]).
//!
//! # Sync over async
//!
//! [`Store`] is synchronous (the consumer loop calls it from its own thread).
//! A `ScyllaStore` owns a small multi-threaded tokio runtime (2 workers) that
//! drives the driver's connections; each `Store` call blocks on one future in
//! it. Called from inside another tokio runtime (where `block_on` would
//! panic), the call runs the future on a scoped helper thread instead, so
//! the backend is safe anywhere, though async callers should still prefer
//! `spawn_blocking`.
//!
//! # Writes
//!
//! Every statement is prepared once and marked idempotent (rows and
//! checkpoints are absolute upserts, so the driver may retry and speculate);
//! write and read consistency are configured separately (`LOCAL_QUORUM` by
//! default); routing is token- and shard-aware (the driver's default load
//! balancing), confined to [`ScyllaConfig::local_datacenter`] when set. Rows
//! of one batch are grouped by Scylla partition (table, series, bucket): a group of
//! several rows goes as one *unlogged* batch (one partition, so one replica
//! set and no batch log), a single row as a plain execute; at most
//! [`ScyllaConfig::max_in_flight`] requests are outstanding. Dead letters go
//! with the rows; checkpoints are written only once every row and dead letter
//! is acknowledged. Scylla has no multi-partition transactions, so "rows and
//! checkpoint together" holds in the one direction that matters: a
//! checkpoint is never durable before its rows. A failure part-way leaves
//! some rows written and the checkpoint old; the replay after it rewrites
//! the same absolute rows.
//!
//! # Reads
//!
//! Every row write also records its series in the tier's series index
//! (`<table>__series`, one partition per bucket, same TTL). A read with a
//! bounded time range of at most [`MAX_INDEXED_BUCKETS`] buckets lists the
//! series of each bucket there, drops those the key conditions exclude, and
//! reads only the matching partitions (`WHERE series = ? AND bucket = ?` and
//! the window range), `max_in_flight` at a time. Reads without both bounds
//! fall back to a token-range scan filtered on the clustering column
//! (`ALLOW FILTERING`). Source partition conditions are applied client-side.
//!
//! Retention is by TTL, so [`Store::sweep`] deletes nothing and returns 0.

pub mod schema;

use self::schema::Replication;
use crate::schema::{encode_state, series_id, table_name, ColumnKind};
use crate::{DeploymentRecord, Error, Result, RowFilter, Store, StoredDeadLetter, WriteBatch};
use engine::aggregate::AggState;
use engine::{Checkpoint, KeyVal, Row};
use futures_util::{StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{ExecutionError, PagerExecutionError, PrepareError, RequestAttemptError};
use scylla::frame::response::result::{ColumnSpec, TableSpec};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
/// Re-exported so configuration code names levels without depending on the driver.
pub use scylla::statement::Consistency;
use scylla::value::{CqlTimestamp, CqlValue};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest number of statements in one unlogged batch.
const MAX_BATCH: usize = 100;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (port 9042 when omitted).
    pub nodes: Vec<String>,
    /// Keyspace, created when missing.
    pub keyspace: String,
    /// Replication of a keyspace this creates.
    pub replication: Replication,
    /// Consistency of writes (rows, dead letters, checkpoints, claims).
    pub write_consistency: Consistency,
    /// Consistency of reads (queries, checkpoints, history).
    pub read_consistency: Consistency,
    /// Data centre whose nodes requests go to; `None`: any node, by token.
    pub local_datacenter: Option<String>,
    /// Most requests outstanding at once during a write.
    pub max_in_flight: usize,
    /// Client-side timeout of one request.
    pub request_timeout: Duration,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        ScyllaConfig {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "streams".into(),
            replication: Replication::default(),
            write_consistency: Consistency::LocalQuorum,
            read_consistency: Consistency::LocalQuorum,
            local_datacenter: None,
            max_in_flight: 256,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl ScyllaConfig {
    /// Parses `HOST[:PORT][,HOST…][/KEYSPACE]` (the part after `scylla:` in `--store`).
    pub fn parse(spec: &str) -> Self {
        let (hosts, keyspace) = spec.split_once('/').unwrap_or((spec, "streams"));
        let nodes = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| if h.contains(':') { h.to_string() } else { format!("{h}:9042") })
            .collect();
        ScyllaConfig { nodes, keyspace: keyspace.to_string(), ..Default::default() }
    }

    /// Checks the settings before connecting.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        self.replication.validate()?;
        if self.read_consistency == Consistency::Any {
            return Err(Error::InvalidConfig("read consistency ANY applies to writes only".into()));
        }
        if let (Some(local), Replication::NetworkTopology(dcs)) = (&self.local_datacenter, &self.replication) {
            // LOCAL_* consistency would find no replica in the local data centre.
            if !dcs.iter().any(|(dc, _)| dc == local) {
                return Err(Error::InvalidConfig(format!(
                    "local data centre `{local}` has no replication factor (data centres: {})",
                    dcs.iter().map(|(dc, _)| dc.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Parses a consistency level by its CQL name (`LOCAL_QUORUM`, `one`, …).
/// The serial levels are for lightweight transactions, which the store
/// chooses itself, so they are not accepted.
///
/// # Errors
/// [`Error::InvalidConfig`] listing the accepted names.
pub fn parse_consistency(name: &str) -> Result<Consistency> {
    const LEVELS: [(&str, Consistency); 9] = [
        ("ANY", Consistency::Any),
        ("ONE", Consistency::One),
        ("TWO", Consistency::Two),
        ("THREE", Consistency::Three),
        ("QUORUM", Consistency::Quorum),
        ("ALL", Consistency::All),
        ("LOCAL_QUORUM", Consistency::LocalQuorum),
        ("EACH_QUORUM", Consistency::EachQuorum),
        ("LOCAL_ONE", Consistency::LocalOne),
    ];
    let upper = name.trim().to_ascii_uppercase();
    LEVELS.iter().find(|(n, _)| *n == upper).map(|(_, c)| *c).ok_or_else(|| {
        Error::InvalidConfig(format!(
            "unknown consistency `{name}`; expected one of {}",
            LEVELS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Whether a driver error is transient: timeouts, unavailable or overloaded
/// replicas, broken connections, an empty pool. Syntax, invalid requests,
/// authorisation and configuration errors are not.
pub fn is_transient(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::LastAttemptError(attempt) => attempt_is_transient(attempt),
        ExecutionError::PrepareError(e) => prepare_is_transient(e),
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        _ => false,
    }
}

/// [`is_transient`] for failed preparations.
pub fn prepare_is_transient(error: &PrepareError) -> bool {
    match error {
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_is_transient(first_attempt),
        PrepareError::ConnectionPoolError(_) => true,
        _ => false,
    }
}

fn attempt_is_transient(attempt: &RequestAttemptError) -> bool {
    use scylla::errors::DbError as D;
    match attempt {
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            D::Unavailable { .. }
                | D::Overloaded
                | D::IsBootstrapping
                | D::ReadTimeout { .. }
                | D::WriteTimeout { .. }
                | D::ReadFailure { .. }
                | D::WriteFailure { .. }
                | D::TruncateError
                | D::ServerError
                | D::RateLimitReached { .. }
        ),
        RequestAttemptError::BrokenConnectionError(_) | RequestAttemptError::UnableToAllocStreamId => true,
        _ => false,
    }
}

/// [`is_transient`] for failures to start a paged read.
fn pager_is_transient(error: &PagerExecutionError) -> bool {
    match error {
        PagerExecutionError::PrepareError(e) => prepare_is_transient(e),
        PagerExecutionError::SerializationError(_) => false,
        _ => true,
    }
}

fn scylla_err<E>(context: impl Into<String>, retryable: bool) -> impl FnOnce(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let context = context.into();
    move |source| Error::Scylla { context, retryable, source: Box::new(source) }
}

fn exec_err(context: impl Into<String>) -> impl FnOnce(ExecutionError) -> Error {
    let context = context.into();
    move |source| Error::Scylla { context, retryable: is_transient(&source), source: Box::new(source) }
}

/// A keyspace on a Scylla or Cassandra cluster.
pub struct ScyllaStore {
    runtime: tokio::runtime::Runtime,
    session: Session,
    config: ScyllaConfig,
    prepared: Mutex<HashMap<String, PreparedStatement>>,
    replication_alter: Option<String>,
}

impl ScyllaStore {
    /// Connects and creates the keyspace and bookkeeping tables.
    ///
    /// # Errors
    /// If the configuration is invalid, no node can be reached or the DDL fails.
    pub fn connect(config: ScyllaConfig) -> Result<Self> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scylla")
            .enable_all()
            .build()
            .map_err(scylla_err("cannot start the driver runtime", false))?;
        let session = block(&runtime, session_builder(&config).build())
            .map_err(scylla_err(format!("cannot connect to {}", config.nodes.join(",")), true))?;
        let mut store =
            ScyllaStore { runtime, session, config, prepared: Mutex::new(HashMap::new()), replication_alter: None };
        let existing = store.block(async {
            let ks = &store.config.keyspace;
            store.ddl(&schema::create_keyspace(ks, &store.config.replication)).await?;
            for ddl in schema::create_bookkeeping(ks) {
                store.ddl(&ddl).await?;
            }
            // Only feeds a warning: a cluster that will not say must not stop the start.
            Ok(store.keyspace_replication().await.ok().flatten())
        })?;
        if existing.is_some_and(|e| !store.config.replication.matches(&e)) {
            store.replication_alter = Some(schema::alter_keyspace(&store.config.keyspace, &store.config.replication));
        }
        Ok(store)
    }

    /// When the keyspace existed with another replication than configured
    /// (`CREATE KEYSPACE IF NOT EXISTS` leaves it as it is), the `ALTER
    /// KEYSPACE` statement an operator would run to apply the configuration.
    pub fn replication_alter(&self) -> Option<&str> {
        self.replication_alter.as_deref()
    }

    /// The keyspace's replication as the server reports it.
    async fn keyspace_replication(&self) -> Result<Option<HashMap<String, String>>> {
        let context = "cannot read the keyspace's replication";
        let result = self
            .session
            .query_unpaged(schema::select_keyspace_replication(), (&self.config.keyspace,))
            .await
            .map_err(exec_err(context))?;
        let rows = result.into_rows_result().map_err(scylla_err(context, false))?;
        let row = rows.maybe_first_row::<(HashMap<String, String>,)>().map_err(scylla_err(context, false))?;
        Ok(row.map(|(replication,)| replication))
    }

    /// The configuration connected with.
    pub fn config(&self) -> &ScyllaConfig {
        &self.config
    }

    fn block<F: Future + Send>(&self, future: F) -> F::Output
    where
        F::Output: Send,
    {
        block(&self.runtime, future)
    }

    async fn ddl(&self, cql: &str) -> Result<()> {
        self.session.query_unpaged(cql, &[]).await.map_err(exec_err(format!("cannot run `{cql}`")))?;
        Ok(())
    }

    /// A statement that writes, at the write consistency.
    async fn prepare(&self, cql: &str) -> Result<PreparedStatement> {
        self.prepare_at(cql, self.config.write_consistency).await
    }

    /// A statement that reads, at the read consistency.
    async fn prepare_read(&self, cql: &str) -> Result<PreparedStatement> {
        self.prepare_at(cql, self.config.read_consistency).await
    }

    async fn prepare_at(&self, cql: &str, consistency: Consistency) -> Result<PreparedStatement> {
        if let Some(p) = self.prepared.lock().map_err(|_| poisoned())?.get(cql) {
            return Ok(p.clone());
        }
        let mut p = self.session.prepare(cql).await.map_err(|source| Error::Scylla {
            context: format!("cannot prepare `{cql}`"),
            retryable: prepare_is_transient(&source),
            source: Box::new(source),
        })?;
        p.set_is_idempotent(true);
        p.set_consistency(consistency);
        self.prepared.lock().map_err(|_| poisoned())?.insert(cql.to_string(), p.clone());
        Ok(p)
    }

    async fn existing_columns(&self, table: &str) -> Result<HashMap<String, (String, String)>> {
        let result = self
            .session
            .query_unpaged(schema::describe_columns(), (&self.config.keyspace, table))
            .await
            .map_err(exec_err(format!("cannot describe `{table}`")))?;
        let rows = result.into_rows_result().map_err(scylla_err(format!("cannot describe `{table}`"), false))?;
        let mut out = HashMap::new();
        for r in rows.rows::<(String, String, String)>().map_err(scylla_err("bad system_schema row", false))? {
            let (name, kind, ty) = r.map_err(scylla_err("bad system_schema row", false))?;
            out.insert(name, (kind, ty));
        }
        Ok(out)
    }

    async fn setup_async(&self, plan: &dsl::Plan) -> Result<()> {
        let ks = &self.config.keyspace;
        for metric in &plan.metrics {
            for tier in 0..metric.tiers.len() {
                let table = table_name(metric, tier);
                self.ddl(&schema::create_table(ks, metric, tier)).await?;
                self.ddl(&schema::create_series_index(ks, metric, tier)).await?;
                let existing = self.existing_columns(&table).await?;
                let incompatible = |detail: String| Error::IncompatibleSchema { table: table.clone(), detail };
                for (name, ty) in schema::PRIMARY_KEY {
                    match existing.get(name) {
                        Some((_, t)) if t == ty => {}
                        _ => return Err(incompatible(format!("its primary key differs at `{name}` (want {ty})"))),
                    }
                }
                for key in &metric.keys {
                    if !existing.contains_key(&key.name) {
                        return Err(incompatible(format!(
                            "it has no key column `{}`; give the changed metric a new `into table` name",
                            key.name
                        )));
                    }
                }
                for c in schema::data_columns(metric) {
                    match existing.get(&c.name) {
                        None => self.ddl(&schema::add_column(ks, &table, &c)).await?,
                        Some((_, t)) if t == schema::cql_type(c.kind) => {}
                        Some((_, t)) => {
                            return Err(incompatible(format!(
                                "column `{}` is {t}, the plan needs {}",
                                c.name,
                                schema::cql_type(c.kind)
                            )))
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A partition's owner epoch, read through Paxos (serial consistency),
    /// so it sees every claim acknowledged before.
    async fn owner_epoch(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        let mut statement = self.prepare_read(&schema::select_owner(&self.config.keyspace)).await?;
        statement.set_consistency(Consistency::Serial);
        let result = self
            .session
            .execute_unpaged(&statement, (topic, partition))
            .await
            .map_err(exec_err("cannot read an owner"))?;
        let rows = result.into_rows_result().map_err(scylla_err("cannot read an owner", false))?;
        let row = rows.maybe_first_row::<(Option<i64>,)>().map_err(scylla_err("cannot read an owner", false))?;
        Ok(row.and_then(|(epoch,)| epoch))
    }

    /// See [`Store::claim`]: compare-and-set on the owner row, read again
    /// when another claim came between.
    async fn claim_async(&self, topic: &str, partition: i32) -> Result<u64> {
        let ks = &self.config.keyspace;
        for _ in 0..16 {
            let (statement, next) = match self.owner_epoch(topic, partition).await? {
                None => (self.prepare(&schema::insert_owner(ks)).await?, 1),
                Some(epoch) => (self.prepare(&schema::update_owner(ks)).await?, epoch + 1),
            };
            let result = if next == 1 {
                self.session.execute_unpaged(&statement, (topic, partition)).await
            } else {
                self.session.execute_unpaged(&statement, (next, topic, partition, next - 1)).await
            }
            .map_err(exec_err("cannot claim a partition"))?;
            let rows = result.into_rows_result().map_err(scylla_err("cannot claim a partition", false))?;
            // `[applied]` comes first; a refused one is followed by the row as it is.
            let applied = rows
                .maybe_first_row::<scylla::value::Row>()
                .map_err(scylla_err("cannot claim a partition", false))?
                .and_then(|row| row.columns.into_iter().next().flatten())
                .is_some_and(|applied| matches!(applied, CqlValue::Boolean(true)));
            if applied {
                return Ok(u64::try_from(next).unwrap_or(0));
            }
        }
        Err(Error::Unavailable(format!("claims of {topic}/{partition} keep conflicting")))
    }

    async fn write_async(&self, batch: &WriteBatch<'_>) -> Result<()> {
        let ks = &self.config.keyspace;
        // Scylla has no transaction across partitions: the owners are checked
        // before anything is written, so an owner replaced before this write
        // began writes nothing (one replaced while it is under way can still
        // write this batch: see docs/scylla.md).
        let mut fenced = Vec::new();
        for &(partition, epoch) in batch.owners {
            if self.owner_epoch(batch.topic, partition).await? != i64::try_from(epoch).ok() {
                fenced.push(partition);
            }
        }
        if !fenced.is_empty() {
            return Err(Error::Fenced { topic: batch.topic.to_string(), partitions: fenced });
        }
        let groups = group_rows(batch.rows);
        let mut statements: BTreeMap<(MetricKey, usize), PreparedStatement> = BTreeMap::new();
        for (m, t, _, _) in groups.keys() {
            if let std::collections::btree_map::Entry::Vacant(e) = statements.entry((m.clone(), *t)) {
                e.insert(self.prepare(&schema::upsert(ks, &m.0, *t)).await?);
            }
        }
        // The series index entries of the rows' partitions, grouped by index partition (bucket).
        let mut index: BTreeMap<(MetricKey, usize, i64), Vec<Values>> = BTreeMap::new();
        let mut index_statements: BTreeMap<(MetricKey, usize), PreparedStatement> = BTreeMap::new();
        for (m, t, series, bucket) in groups.keys() {
            let entry = vec![Some(CqlValue::BigInt(*bucket)), Some(CqlValue::Text(series.clone()))];
            index.entry((m.clone(), *t, *bucket)).or_default().push(entry);
            if let std::collections::btree_map::Entry::Vacant(e) = index_statements.entry((m.clone(), *t)) {
                e.insert(self.prepare(&schema::insert_series_index(ks, &m.0, *t)).await?);
            }
        }
        let dead_letter = self.prepare(&schema::insert_dead_letter(ks)).await?;
        let mut requests = Vec::new();
        for ((m, t, _, _), rows) in groups {
            let table = table_name(&m.0, t);
            let statement = &statements[&(m, t)];
            for chunk in in_chunks(rows.into_values(), MAX_BATCH) {
                requests.push(Request::Rows { statement, table: table.clone(), rows: chunk });
            }
        }
        for ((m, t, _), entries) in index {
            let table = schema::series_index_name(&m.0, t);
            let statement = &index_statements[&(m, t)];
            for chunk in in_chunks(entries, MAX_BATCH) {
                requests.push(Request::Rows { statement, table: table.clone(), rows: chunk });
            }
        }
        for d in batch.dead_letters {
            requests.push(Request::DeadLetter { statement: &dead_letter, dead_letter: d });
        }
        let sends: Vec<BoxedSend<'_>> = requests.into_iter().map(|r| Box::pin(self.send(r)) as BoxedSend<'_>).collect();
        futures_util::stream::iter(sends)
            .buffer_unordered(self.config.max_in_flight.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        if !batch.checkpoints.is_empty() {
            let statement = self.prepare(&schema::upsert_checkpoint(ks)).await?;
            let statement = &statement;
            let sends: Vec<BoxedSend<'_>> = batch
                .checkpoints
                .iter()
                .map(|c| {
                    Box::pin(async move {
                        self.session
                            .execute_unpaged(
                                statement,
                                (
                                    batch.topic,
                                    c.partition,
                                    c.replay_offset,
                                    c.next_offset,
                                    c.max_event_time,
                                    crate::checkpoint_metrics_json(c),
                                ),
                            )
                            .await
                            .map_err(exec_err("cannot write a checkpoint"))
                            .map(drop)
                    }) as BoxedSend<'_>
                })
                .collect();
            futures_util::stream::iter(sends)
                .buffer_unordered(self.config.max_in_flight.max(1))
                .try_collect::<Vec<()>>()
                .await?;
        }
        Ok(())
    }

    async fn send(&self, request: Request<'_>) -> Result<()> {
        match request {
            Request::Rows { statement, table, mut rows } if rows.len() == 1 => {
                let values = rows.pop().unwrap_or_default();
                self.session
                    .execute_unpaged(statement, values)
                    .await
                    .map_err(exec_err(format!("cannot write to `{table}`")))?;
            }
            Request::Rows { statement, table, rows } => {
                let mut b = Batch::new(BatchType::Unlogged);
                b.set_is_idempotent(true);
                b.set_consistency(self.config.write_consistency);
                for _ in 0..rows.len() {
                    b.append_statement(statement.clone());
                }
                self.session.batch(&b, rows).await.map_err(exec_err(format!("cannot write a batch to `{table}`")))?;
            }
            Request::DeadLetter { statement, dead_letter: d } => {
                self.session
                    .execute_unpaged(
                        statement,
                        (&d.topic, d.partition, d.offset, d.reason.as_str(), &d.detail, &d.payload, &d.key),
                    )
                    .await
                    .map_err(exec_err("cannot write a dead letter"))?;
            }
        }
        Ok(())
    }

    async fn read_async(&self, plan: &dsl::Plan, metric: usize, filter: &RowFilter) -> Result<Vec<Row>> {
        let m = plan.metrics.get(metric).ok_or_else(|| Error::BadQuery(format!("no metric #{metric}")))?;
        if filter.tier >= m.tiers.len() {
            return Err(Error::BadQuery(format!("metric `{}` has no tier #{}", m.name, filter.tier)));
        }
        for (key, _) in &filter.equals {
            if *key >= m.keys.len() {
                return Err(Error::BadQuery(format!("no key column #{key}")));
            }
        }
        let reader = RowReader { m, filter, table: table_name(m, filter.tier) };
        let mut out = match indexed_buckets(m.tiers[filter.tier].width_ms, filter) {
            Some(buckets) => self.read_indexed(&reader, buckets).await?,
            None => self.read_scan(&reader).await?,
        };
        // The series id is built once per row, not at every comparison.
        out.sort_by_cached_key(|r| (r.window_start, series_id(&r.keys), r.partition));
        Ok(out)
    }

    /// A bounded time range: the series index of each bucket, then each
    /// matching series' partition, at most `max_in_flight` at a time.
    async fn read_indexed(&self, reader: &RowReader<'_>, buckets: std::ops::RangeInclusive<i64>) -> Result<Vec<Row>> {
        let ks = &self.config.keyspace;
        let (m, tier) = (reader.m, reader.filter.tier);
        let index = self.prepare_read(&schema::select_series_index(ks, m, tier)).await?;
        let rows = self.prepare_read(&schema::select_series(ks, m, tier)).await?;
        let from = CqlTimestamp(reader.filter.from_ms.unwrap_or(i64::MIN));
        let to = CqlTimestamp(reader.filter.to_ms.unwrap_or(i64::MAX));
        let mut partitions = Vec::new();
        for bucket in buckets {
            let pager = self.session.execute_iter(index.clone(), (bucket,)).await.map_err(|source| Error::Scylla {
                context: format!("cannot read the series index of `{}`", reader.table),
                retryable: pager_is_transient(&source),
                source: Box::new(source),
            })?;
            let mut stream =
                pager.rows_stream::<(String,)>().map_err(scylla_err("unexpected series index columns", false))?;
            while let Some((series,)) =
                stream.try_next().await.map_err(scylla_err("cannot read the series index", true))?
            {
                // Key conditions are decided on the series id alone, before reading rows.
                let keys: Vec<KeyVal> = serde_json::from_str(&series).map_err(|source| Error::CorruptState {
                    table: schema::series_index_name(m, tier),
                    column: "series".into(),
                    source,
                })?;
                if reader.filter.equals.iter().all(|(k, v)| keys.get(*k) == Some(v)) {
                    partitions.push((series, bucket));
                }
            }
        }
        let reads = partitions.into_iter().map(|(series, bucket)| {
            let rows = &rows;
            async move {
                let result = self
                    .session
                    .execute_unpaged(rows, (series, bucket, from, to))
                    .await
                    .map_err(exec_err(format!("cannot read `{}`", reader.table)))?;
                let result =
                    result.into_rows_result().map_err(scylla_err(format!("cannot read `{}`", reader.table), false))?;
                let mut out = Vec::new();
                for r in result
                    .rows::<scylla::value::Row>()
                    .map_err(scylla_err(format!("unexpected columns in `{}`", reader.table), false))?
                {
                    let r = r.map_err(scylla_err(format!("cannot read `{}`", reader.table), false))?;
                    out.extend(reader.decode(r)?);
                }
                Ok::<_, Error>(out)
            }
        });
        let parts: Vec<Vec<Row>> =
            futures_util::stream::iter(reads).buffer_unordered(self.config.max_in_flight.max(1)).try_collect().await?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// An unbounded range: a token-range scan with `ALLOW FILTERING`.
    async fn read_scan(&self, reader: &RowReader<'_>) -> Result<Vec<Row>> {
        let statement = self.prepare_read(&schema::select(&self.config.keyspace, reader.m, reader.filter.tier)).await?;
        let from = CqlTimestamp(reader.filter.from_ms.unwrap_or(i64::MIN));
        let to = CqlTimestamp(reader.filter.to_ms.unwrap_or(i64::MAX));
        let pager = self.session.execute_iter(statement, (from, to)).await.map_err(|source| Error::Scylla {
            context: format!("cannot query `{}`", reader.table),
            retryable: pager_is_transient(&source),
            source: Box::new(source),
        })?;
        let mut stream = pager
            .rows_stream::<scylla::value::Row>()
            .map_err(scylla_err(format!("unexpected columns in `{}`", reader.table), false))?;
        let mut out = Vec::new();
        while let Some(r) =
            stream.try_next().await.map_err(scylla_err(format!("cannot read `{}`", reader.table), true))?
        {
            out.extend(reader.decode(r)?);
        }
        Ok(out)
    }
}

/// Most buckets a read walks through the series index; wider ranges scan.
const MAX_INDEXED_BUCKETS: i64 = 1000;

/// The buckets a read covers, when its time range is bounded and narrow
/// enough for the series index.
pub fn indexed_buckets(width_ms: u64, filter: &RowFilter) -> Option<std::ops::RangeInclusive<i64>> {
    let (from, to) = (filter.from_ms?, filter.to_ms?);
    if to <= from {
        return Some(std::ops::RangeInclusive::new(1, 0)); // Empty: nothing can match.
    }
    let (first, last) = (schema::bucket_of(from, width_ms), schema::bucket_of(to - 1, width_ms));
    (last - first < MAX_INDEXED_BUCKETS).then_some(first..=last)
}

/// Decodes the selected columns of one metric tier into rows.
struct RowReader<'a> {
    m: &'a Arc<dsl::plan::MetricPlan>,
    filter: &'a RowFilter,
    table: String,
}

impl RowReader<'_> {
    /// The row, or `None` when the filter's partition or key conditions exclude it.
    fn decode(&self, r: scylla::value::Row) -> Result<Option<Row>> {
        let corrupt = |column: &str, source: serde_json::Error| Error::CorruptState {
            table: self.table.clone(),
            column: column.to_string(),
            source,
        };
        let mut columns = r.columns.into_iter();
        let series = match columns.next().flatten() {
            Some(CqlValue::Text(s)) => s,
            _ => String::new(),
        };
        let keys: Vec<KeyVal> = serde_json::from_str(&series).map_err(|e| corrupt("series", e))?;
        let window_start = timestamp(columns.next().flatten()).unwrap_or_default();
        let partition = match columns.next().flatten() {
            Some(CqlValue::Int(p)) => p,
            _ => 0,
        };
        let included_through = timestamp(columns.next().flatten());
        if self.filter.partition.is_some_and(|p| p != partition)
            || self.filter.equals.iter().any(|(k, v)| keys.get(*k) != Some(v))
        {
            return Ok(None);
        }
        let mut states = Vec::with_capacity(self.m.aggregates.len());
        for a in &self.m.aggregates {
            let bytes = match columns.next().flatten() {
                Some(CqlValue::Blob(b)) => b,
                _ => Vec::new(),
            };
            let state: AggState = serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(&format!("{}{}", a.name, crate::schema::STATE_SUFFIX), e))?;
            states.push(state);
        }
        Ok(Some(Row {
            metric: Arc::clone(self.m),
            tier: self.filter.tier,
            window_start,
            partition,
            included_through,
            keys: keys.into(),
            states: states.into(),
        }))
    }
}

/// Bind values of one statement.
pub type Values = Vec<Option<CqlValue>>;

/// `items` in order, moved into vectors of `size` (the last one shorter):
/// each batch owns its rows' values without copying them.
fn in_chunks<T>(items: impl IntoIterator<Item = T>, size: usize) -> impl Iterator<Item = Vec<T>> {
    let mut items = items.into_iter().peekable();
    std::iter::from_fn(move || {
        items.peek()?;
        Some(items.by_ref().take(size.max(1)).collect())
    })
}

type BoxedSend<'a> = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

enum Request<'a> {
    Rows { statement: &'a PreparedStatement, table: String, rows: Vec<Values> },
    DeadLetter { statement: &'a PreparedStatement, dead_letter: &'a engine::DeadLetter },
}

fn poisoned() -> Error {
    Error::Unavailable("the prepared-statement cache lock is poisoned".into())
}

fn timestamp(v: Option<CqlValue>) -> Option<i64> {
    match v {
        Some(CqlValue::Timestamp(t)) => Some(t.0),
        Some(CqlValue::BigInt(i)) => Some(i),
        _ => None,
    }
}

fn block<F: Future + Send>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| match s.spawn(|| runtime.block_on(future)).join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    } else {
        runtime.block_on(future)
    }
}

/// A key or aggregate value as the CQL value of a column of `kind`.
pub fn to_cql(v: &KeyVal, kind: ColumnKind) -> Option<CqlValue> {
    Some(match (kind, v) {
        (_, KeyVal::Null) => return None,
        (ColumnKind::Text, KeyVal::Str(s)) => CqlValue::Text(s.to_string()),
        (ColumnKind::Int, KeyVal::Int(i) | KeyVal::Ts(i)) => CqlValue::BigInt(*i),
        (ColumnKind::Int, KeyVal::Float(bits)) => CqlValue::BigInt(f64::from_bits(*bits) as i64),
        (ColumnKind::Float, KeyVal::Float(bits)) => CqlValue::Double(f64::from_bits(*bits)),
        (ColumnKind::Float, KeyVal::Int(i)) => CqlValue::Double(*i as f64),
        (ColumnKind::Bool, KeyVal::Bool(b)) => CqlValue::Boolean(*b),
        (ColumnKind::Timestamp, KeyVal::Ts(t) | KeyVal::Int(t)) => CqlValue::Timestamp(CqlTimestamp(*t)),
        (ColumnKind::Text, other) => CqlValue::Text(other.to_json().to_string()),
        _ => return None,
    })
}

/// The driver session's settings. Write timestamps come from this client
/// and only ever grow (the driver's monotonic generator), so a row written
/// by a later flush replaces the earlier version whatever the clocks of
/// the coordinators that receive the two writes (by default each
/// coordinator stamps a write with its own clock).
pub fn session_builder(config: &ScyllaConfig) -> SessionBuilder {
    let mut profile = ExecutionProfile::builder()
        // Prepared statements and batches set their own; this covers the DDL.
        .consistency(config.write_consistency)
        .request_timeout(Some(config.request_timeout));
    if let Some(dc) = &config.local_datacenter {
        // Without failover: LOCAL_* consistency is met in the local data
        // centre or not at all, and remote coordinators only add latency.
        profile = profile.load_balancing_policy(
            DefaultPolicy::builder().prefer_datacenter(dc.clone()).token_aware(true).permit_dc_failover(false).build(),
        );
    }
    let profile = profile.build().into_handle();
    SessionBuilder::new()
        .known_nodes(&config.nodes)
        .default_execution_profile_handle(profile)
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
}

/// A row's metric as a map key: ordered by table, then by hash (two
/// versions of a metric may write one table, each with its own columns).
#[derive(Debug, Clone)]
pub struct MetricKey(pub Arc<dsl::plan::MetricPlan>);

impl Ord for MetricKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        (&self.0.table, &self.0.hash).cmp(&(&other.0.table, &other.0.hash))
    }
}

impl PartialOrd for MetricKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for MetricKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for MetricKey {}

/// Grouped rows: by Scylla partition, then by window start and source partition.
pub type RowGroups = BTreeMap<(MetricKey, usize, String, i64), BTreeMap<(i64, i32), Values>>;

/// The rows by Scylla partition (metric, tier, series, bucket), each
/// partition's by window start and source partition, holding the last
/// version of each row: the statements of a batch share one write
/// timestamp, and at equal timestamps Scylla keeps the larger value, not
/// the later one; batches of one partition may also run concurrently. A
/// caller that wrote a row twice in one batch (a tier row emitted again
/// as windows merge into it) must still find its latest version stored.
pub fn group_rows(rows: &[Row]) -> RowGroups {
    let mut groups = RowGroups::new();
    for row in rows {
        let metric = &row.metric;
        let series = series_id(&row.keys);
        let bucket = schema::bucket_of(row.window_start, metric.tiers[row.tier].width_ms);
        let values = row_values(metric, row, &series, bucket);
        groups
            .entry((MetricKey(Arc::clone(metric)), row.tier, series, bucket))
            .or_default()
            .insert((row.window_start, row.partition), values);
    }
    groups
}

/// The bind values of one row for [`schema::upsert`].
pub fn row_values(metric: &dsl::plan::MetricPlan, row: &Row, series: &str, bucket: i64) -> Vec<Option<CqlValue>> {
    let columns = schema::data_columns(metric);
    let mut values = Vec::with_capacity(4 + columns.len());
    values.push(Some(CqlValue::Text(series.to_string())));
    values.push(Some(CqlValue::BigInt(bucket)));
    values.push(Some(CqlValue::Timestamp(CqlTimestamp(row.window_start))));
    values.push(Some(CqlValue::Int(row.partition)));
    let mut kinds = columns.iter().map(|c| c.kind);
    for k in row.keys.iter() {
        let kind = kinds.next().unwrap_or(ColumnKind::Text);
        values.push(to_cql(k, kind));
    }
    for state in row.states.iter() {
        let kind = kinds.next().unwrap_or(ColumnKind::Float);
        values.push(to_cql(&state.finish(), kind));
        kinds.next();
        values.push(Some(CqlValue::Blob(encode_state(state))));
    }
    values.push(row.included_through.map(|t| CqlValue::Timestamp(CqlTimestamp(t))));
    values
}

/// The column specifications of [`schema::upsert`]'s bind markers, as the
/// cluster would describe them when preparing it: what bind values are
/// type-checked and serialised against (used by tests and the benchmark).
pub fn upsert_specs(keyspace: &str, metric: &dsl::plan::MetricPlan, tier: usize) -> Vec<ColumnSpec<'static>> {
    use scylla::frame::response::result::{ColumnType, NativeType};
    let native = |cql: &str| {
        ColumnType::Native(match cql {
            "text" => NativeType::Text,
            "bigint" => NativeType::BigInt,
            "int" => NativeType::Int,
            "double" => NativeType::Double,
            "boolean" => NativeType::Boolean,
            "timestamp" => NativeType::Timestamp,
            _ => NativeType::Blob,
        })
    };
    let table = TableSpec::owned(keyspace.to_string(), table_name(metric, tier));
    let mut specs: Vec<ColumnSpec<'static>> = schema::PRIMARY_KEY
        .iter()
        .map(|(n, t)| ColumnSpec::owned((*n).to_string(), native(t), table.clone()))
        .collect();
    specs.extend(
        schema::data_columns(metric)
            .into_iter()
            .map(|c| ColumnSpec::owned(c.name, native(schema::cql_type(c.kind)), table.clone())),
    );
    specs
}

/// Type-checks and serialises `values` against `specs` into `out`, exactly
/// as the driver does when binding a prepared statement; returns the bytes written.
///
/// # Errors
/// When a value does not fit its column's type.
pub fn bind(specs: &[ColumnSpec<'_>], values: &Values, out: &mut Vec<u8>) -> Result<usize> {
    use scylla::serialize::row::{RowSerializationContext, SerializeRow};
    let before = out.len();
    let mut writer = scylla::serialize::writers::RowWriter::new(out);
    values
        .serialize(&RowSerializationContext::from_specs(specs), &mut writer)
        .map_err(scylla_err("cannot bind a row", false))?;
    Ok(out.len() - before)
}

impl Store for ScyllaStore {
    fn setup(&mut self, plan: &dsl::Plan) -> Result<()> {
        self.block(self.setup_async(plan))
    }

    fn write(&mut self, batch: &WriteBatch<'_>) -> Result<()> {
        self.block(self.write_async(batch))
    }

    fn claim(&mut self, topic: &str, partition: i32) -> Result<u64> {
        self.block(self.claim_async(topic, partition))
    }

    fn checkpoint(&self, topic: &str, partition: i32) -> Result<Option<Checkpoint>> {
        self.block(async {
            let statement = self.prepare_read(&schema::select_checkpoint(&self.config.keyspace)).await?;
            let result = self
                .session
                .execute_unpaged(&statement, (topic, partition))
                .await
                .map_err(exec_err("cannot read a checkpoint"))?;
            let rows = result.into_rows_result().map_err(scylla_err("cannot read a checkpoint", false))?;
            let row = rows
                .maybe_first_row::<(i64, i64, Option<i64>, Option<String>)>()
                .map_err(scylla_err("cannot read a checkpoint", false))?;
            row.map(|(replay_offset, next_offset, max_event_time, metrics)| {
                let checkpoint = Checkpoint { partition, replay_offset, next_offset, max_event_time, metrics: None };
                crate::with_checkpoint_metrics(checkpoint, metrics.as_deref())
            })
            .transpose()
        })
    }

    fn record_deployment(&mut self, record: &DeploymentRecord) -> Result<()> {
        self.block(async {
            let insert = self.prepare(&schema::insert_deployment(&self.config.keyspace)).await?;
            let version = crate::deployment_version_column(record.version);
            self.session
                .execute_unpaged(
                    &insert,
                    (
                        version,
                        &record.instance,
                        CqlTimestamp(record.at_ms),
                        &record.outcome,
                        &record.plan_hash,
                        &record.detail,
                    ),
                )
                .await
                .map_err(exec_err("cannot record a deployment"))?;
            Ok(())
        })
    }

    fn write_episodes(&mut self, episodes: &[crate::episodes::Episode]) -> Result<()> {
        self.block(async {
            let upsert = self.prepare(&schema::upsert_episode(&self.config.keyspace)).await?;
            for e in episodes {
                self.session
                    .execute_unpaged(
                        &upsert,
                        (
                            &e.list,
                            &e.target,
                            CqlTimestamp(e.first_seen_ms),
                            CqlTimestamp(e.last_seen_ms),
                            e.ended_ms.map(CqlTimestamp),
                            &e.code,
                            &e.last_code,
                            &e.meaning,
                            &e.first_txt,
                            &e.last_txt,
                        ),
                    )
                    .await
                    .map_err(exec_err("cannot write an episode"))?;
            }
            Ok(())
        })
    }

    fn episodes(&self, filter: &crate::episodes::EpisodeFilter) -> Result<Vec<crate::episodes::Episode>> {
        type EpisodeRow = (
            String,
            String,
            CqlTimestamp,
            CqlTimestamp,
            Option<CqlTimestamp>,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        self.block(async {
            let statement = self.prepare_read(&schema::select_episodes(&self.config.keyspace)).await?;
            let pager = self.session.execute_iter(statement, ()).await.map_err(|source| Error::Scylla {
                context: "cannot query episodes".into(),
                retryable: pager_is_transient(&source),
                source: Box::new(source),
            })?;
            let mut stream =
                pager.rows_stream::<EpisodeRow>().map_err(scylla_err("unexpected episode columns", false))?;
            let mut out = Vec::new();
            while let Some((list, target, first, last, ended, code, last_code, meaning, first_txt, last_txt)) =
                stream.try_next().await.map_err(scylla_err("cannot read episodes", true))?
            {
                let episode = crate::episodes::Episode {
                    list,
                    target,
                    code,
                    last_code,
                    meaning,
                    first_seen_ms: first.0,
                    last_seen_ms: last.0,
                    ended_ms: ended.map(|t| t.0),
                    first_txt,
                    last_txt,
                };
                if filter.matches(&episode) {
                    out.push(episode);
                }
            }
            crate::episodes::sort(&mut out);
            Ok(out)
        })
    }

    fn deployments(&self) -> Result<Vec<DeploymentRecord>> {
        self.block(async {
            let statement = self.prepare_read(&schema::select_deployments(&self.config.keyspace)).await?;
            let pager = self.session.execute_iter(statement, ()).await.map_err(|source| Error::Scylla {
                context: "cannot query the deployment history".into(),
                retryable: pager_is_transient(&source),
                source: Box::new(source),
            })?;
            let mut stream = pager
                .rows_stream::<(i64, String, CqlTimestamp, String, String, String)>()
                .map_err(scylla_err("unexpected deployment columns", false))?;
            let mut out = Vec::new();
            while let Some((version, instance, at, outcome, plan_hash, detail)) =
                stream.try_next().await.map_err(scylla_err("cannot read the deployment history", true))?
            {
                let version = crate::deployment_version(version);
                out.push(DeploymentRecord { version, instance, at_ms: at.0, outcome, plan_hash, detail });
            }
            out.sort_by(|a, b| (a.at_ms, a.version, &a.instance).cmp(&(b.at_ms, b.version, &b.instance)));
            Ok(out)
        })
    }

    fn read(&self, plan: &dsl::Plan, metric: usize, filter: &RowFilter) -> Result<Vec<Row>> {
        self.block(self.read_async(plan, metric, filter))
    }

    fn dead_letters(&self, topic: &str) -> Result<Vec<StoredDeadLetter>> {
        self.block(async {
            let statement = self.prepare_read(&schema::select_dead_letters(&self.config.keyspace)).await?;
            let pager = self.session.execute_iter(statement, (topic,)).await.map_err(|source| Error::Scylla {
                context: "cannot query dead letters".into(),
                retryable: pager_is_transient(&source),
                source: Box::new(source),
            })?;
            let mut stream = pager
                .rows_stream::<(i32, i64, String, String, Vec<u8>)>()
                .map_err(scylla_err("unexpected dead-letter columns", false))?;
            let mut out = Vec::new();
            while let Some((partition, offset, reason, detail, payload)) =
                stream.try_next().await.map_err(scylla_err("cannot read dead letters", true))?
            {
                out.push(StoredDeadLetter { topic: topic.to_string(), partition, offset, reason, detail, payload });
            }
            out.sort_by_key(|d| (d.partition, d.offset));
            Ok(out)
        })
    }

    fn sweep(&mut self, _plan: &dsl::Plan, _now_ms: i64) -> Result<u64> {
        // Rows expire by TTL (see `schema::ttl_s`); nothing to delete here.
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{DbError, WriteType};

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "from the test".into()))
    }

    #[test]
    fn chunks_hold_every_item_once_in_order() {
        for (n, size) in [(0, 100), (1, 100), (100, 100), (101, 100), (250, 100), (5, 1), (3, 0)] {
            let chunks: Vec<Vec<usize>> = in_chunks(0..n, size).collect();
            assert_eq!(chunks.concat(), (0..n).collect::<Vec<_>>(), "{n} items in chunks of {size}");
            assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= size.max(1)), "{n} items in chunks of {size}");
            assert_eq!(chunks.len(), n.div_ceil(size.max(1)));
        }
    }

    #[test]
    fn transient_errors_are_retryable() {
        for e in [
            db(DbError::Overloaded),
            db(DbError::WriteTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                write_type: WriteType::Simple,
            }),
            db(DbError::Unavailable { consistency: Consistency::LocalQuorum, required: 2, alive: 1 }),
            ExecutionError::EmptyPlan,
            ExecutionError::RequestTimeout(Duration::from_secs(1)),
        ] {
            assert!(is_transient(&e), "{e}");
            assert!(exec_err("x")(e).is_retryable());
        }
        for e in [
            db(DbError::SyntaxError),
            db(DbError::Invalid),
            db(DbError::Unauthorized),
            ExecutionError::PrepareError(PrepareError::AllAttemptsFailed {
                first_attempt: RequestAttemptError::DbError(DbError::SyntaxError, "bad".into()),
            }),
        ] {
            assert!(!is_transient(&e), "{e}");
            assert!(!exec_err("x")(e).is_retryable());
        }
    }

    #[test]
    fn write_timestamps_are_the_clients_own_and_only_grow() {
        let builder = session_builder(&ScyllaConfig::parse("scylla"));
        let generator = builder.config.timestamp_generator.expect("a client-side timestamp generator");
        let stamps: Vec<i64> = (0..1000).map(|_| generator.next_timestamp()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "timestamps must strictly grow");
    }

    #[test]
    fn consistency_names_parse_in_any_case() {
        assert_eq!(parse_consistency("LOCAL_QUORUM").ok(), Some(Consistency::LocalQuorum));
        assert_eq!(parse_consistency("local_one").ok(), Some(Consistency::LocalOne));
        assert_eq!(parse_consistency(" each_quorum ").ok(), Some(Consistency::EachQuorum));
        for bad in ["SERIAL", "LOCAL_SERIAL", "quorom", ""] {
            let error = parse_consistency(bad).expect_err(bad).to_string();
            assert!(error.contains("LOCAL_QUORUM"), "{bad}: {error}");
        }
    }

    #[test]
    fn settings_are_checked_before_connecting() {
        assert!(ScyllaConfig::default().validate().is_ok());
        let config = |replication, local: Option<&str>, read| ScyllaConfig {
            replication,
            local_datacenter: local.map(String::from),
            read_consistency: read,
            ..Default::default()
        };
        let nts = Replication::NetworkTopology(vec![("dc1".into(), 3), ("dc2".into(), 2)]);
        assert!(config(nts.clone(), Some("dc2"), Consistency::LocalQuorum).validate().is_ok());
        // SimpleStrategy knows no data centres, so any local one is fine.
        assert!(config(Replication::Simple(1), Some("dc9"), Consistency::One).validate().is_ok());
        for (bad, needle) in [
            (config(nts.clone(), Some("dc9"), Consistency::LocalQuorum), "`dc9`"),
            (config(nts, None, Consistency::Any), "ANY"),
            (config(Replication::Simple(0), None, Consistency::One), "at least 1"),
        ] {
            let error = bad.validate().expect_err("invalid");
            assert!(matches!(error, Error::InvalidConfig(_)) && error.to_string().contains(needle), "{error}");
        }
    }

    #[test]
    fn store_spec_parses() {
        let c = ScyllaConfig::parse("a,b:19042/metrics");
        assert_eq!(c.nodes, ["a:9042", "b:19042"]);
        assert_eq!(c.keyspace, "metrics");
        assert_eq!(c.write_consistency, Consistency::LocalQuorum);
        assert_eq!(c.read_consistency, Consistency::LocalQuorum);
        assert_eq!(c.local_datacenter, None);
        assert_eq!(ScyllaConfig::parse("scylla").keyspace, "streams");
    }

    /// A tier row written twice in one batch: only its last version is
    /// sent (at one write timestamp Scylla would keep the larger value).
    #[test]
    fn a_row_written_twice_in_a_batch_is_sent_once_in_its_last_version() {
        let compiled = dsl::compile_str(
            "t.stream",
            "version 1\n\nsource s from kafka \"t\" format json {\n  ts: timestamp event_time,\n  k: string,\n}\n\n\
             metric m from s\n  group by k\n  compute count() as c\n  window 1m\n  rollup 1h keep 1d\n",
        );
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("checked above");
        let row = |partition: i32, included_through: i64| Row {
            metric: Arc::clone(&plan.metrics[0]),
            tier: 1,
            window_start: 3_600_000,
            partition,
            keys: vec![KeyVal::Str("gmail".into())].into(),
            states: plan.metrics[0].aggregates.iter().map(AggState::new).collect(),
            included_through: Some(included_through),
        };
        let rows = [row(0, 3_660_000), row(1, 3_660_000), row(0, 3_720_000)];
        let groups = group_rows(&rows);
        assert_eq!(groups.len(), 1, "one series, one bucket");
        let sent: Vec<(i32, Option<CqlValue>)> = groups
            .values()
            .flat_map(|rows| rows.iter().map(|((_, partition), values)| (*partition, values.last().cloned().flatten())))
            .collect();
        let at = |ms| Some(CqlValue::Timestamp(CqlTimestamp(ms)));
        assert_eq!(sent, [(0, at(3_720_000)), (1, at(3_660_000))]);
    }

    #[test]
    fn bind_values_match_the_upsert_markers() {
        let compiled = dsl::compile_str(
            "t.stream",
            "version 1\n\nsource s from kafka \"t\" format json {\n  ts: timestamp event_time,\n  k: string?,\n  n: int,\n}\n\n\
             metric m from s\n  group by k\n  compute count() as c, max(n) as top, p99(n) as p\n  window 1m\n  rollup 1h keep 1d\n",
        );
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("checked above");
        let metric = &plan.metrics[0];
        let row = Row {
            metric: Arc::clone(metric),
            tier: 1,
            window_start: 3_600_000,
            partition: 3,
            keys: vec![KeyVal::Null].into(),
            states: metric.aggregates.iter().map(AggState::new).collect(),
            included_through: Some(3_660_000),
        };
        let values = row_values(metric, &row, &series_id(&row.keys), 0);
        let markers = schema::upsert("ks", metric, 1).matches('?').count();
        assert_eq!(values.len(), markers);
        assert_eq!(values[4], None, "null key");
        assert_eq!(values.last(), Some(&Some(CqlValue::Timestamp(CqlTimestamp(3_660_000)))));
        let mut out = Vec::new();
        assert!(bind(&upsert_specs("ks", metric, 1), &values, &mut out).expect("types match") > 0);
        // A value of the wrong type is refused, as the driver would.
        let mut wrong = values.clone();
        wrong[3] = Some(CqlValue::BigInt(3));
        assert!(bind(&upsert_specs("ks", metric, 1), &wrong, &mut out).is_err());
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    fn range(from: Option<i64>, to: Option<i64>) -> RowFilter {
        RowFilter { tier: 0, from_ms: from, to_ms: to, equals: vec![], partition: None }
    }

    #[test]
    fn bounded_narrow_ranges_read_through_the_index() {
        const MINUTE: u64 = 60_000;
        let day = schema::bucket_ms(MINUTE) as i64;
        // One day of 1m windows is one bucket; the end bound is exclusive.
        assert_eq!(indexed_buckets(MINUTE, &range(Some(0), Some(day))), Some(0..=0));
        assert_eq!(indexed_buckets(MINUTE, &range(Some(day - 1), Some(day + 1))), Some(0..=1));
        assert_eq!(indexed_buckets(MINUTE, &range(Some(-1), Some(1))), Some(-1..=0));
        assert!(indexed_buckets(MINUTE, &range(Some(5), Some(5))).is_some_and(|r| r.is_empty()));
        // Unbounded or too wide: scan.
        assert_eq!(indexed_buckets(MINUTE, &range(None, Some(day))), None);
        assert_eq!(indexed_buckets(MINUTE, &range(Some(0), None)), None);
        assert_eq!(indexed_buckets(MINUTE, &range(Some(0), Some(day * MAX_INDEXED_BUCKETS))), Some(0..=999));
        assert_eq!(indexed_buckets(MINUTE, &range(Some(0), Some(day * MAX_INDEXED_BUCKETS + 1))), None);
    }
}
