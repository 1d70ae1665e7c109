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
//! bounded time range of at most 1,000 buckets (`read::MAX_INDEXED_BUCKETS`) lists the
//! series of each bucket there, drops those the key conditions exclude, and
//! reads only the matching partitions (`WHERE series = ? AND bucket = ?` and
//! the window range), `max_in_flight` at a time. Reads without both bounds
//! fall back to a token-range scan filtered on the clustering column
//! (`ALLOW FILTERING`). Source partition conditions are applied client-side.
//!
//! Retention is by TTL, so [`Store::sweep`] deletes nothing and returns 0.
//!
//! # Layout
//!
//! `config` (where and how to connect), `errors` (driver errors, and which
//! are retried), `session` (connecting, the runtime, prepared statements,
//! table setup), [`schema`] (the CQL), `write` (claims, rows, dead letters,
//! checkpoints), `read` (rows through the series index or a scan); this
//! file holds the store and the small reads of the [`Store`] interface.

mod config;
mod errors;
mod read;
pub mod schema;
mod session;
mod write;

pub use self::config::{parse_consistency, ScyllaConfig, ScyllaSettings};
use self::errors::{exec_err, pager_is_transient, scylla_err};
pub use self::errors::{is_transient, prepare_is_transient};
pub use self::read::indexed_buckets;
pub use self::session::session_builder;
pub use self::write::{bind, group_rows, row_values, to_cql, upsert_specs, MetricKey, RowGroups, Values};
use crate::{DeploymentRecord, Error, Result, RowFilter, Store, StoredDeadLetter, WriteBatch};
use engine::{Checkpoint, Row};
use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
/// Re-exported so configuration code names levels without depending on the driver.
pub use scylla::statement::Consistency;
use scylla::value::CqlTimestamp;
use std::collections::HashMap;
use std::sync::Mutex;

/// A keyspace on a Scylla or Cassandra cluster.
pub struct ScyllaStore {
    runtime: tokio::runtime::Runtime,
    session: Session,
    config: ScyllaConfig,
    prepared: Mutex<HashMap<String, PreparedStatement>>,
    replication_alter: Option<String>,
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
                .maybe_first_row::<crate::CheckpointColumns>()
                .map_err(scylla_err("cannot read a checkpoint", false))?;
            row.map(|columns| crate::stored_checkpoint(partition, columns)).transpose()
        })
    }

    fn all_checkpoints(&self) -> Result<Vec<(String, Checkpoint)>> {
        self.block(self.all_checkpoints_async())
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
