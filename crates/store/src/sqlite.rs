//! The SQLite backend: the embedded default.
//!
//! WAL journal, one transaction per [`WriteBatch`] (rows, dead letters and
//! checkpoints commit together, after the partitions' owner epochs are
//! checked in the same transaction: see [`Store::claim`]), prepared statements cached per table, and
//! a page cache of up to 64 MiB per connection (SQLite's default of 2 MiB
//! makes upserts into a growing database re-read their pages). The log is
//! copied into the database every 16,384 pages (64 MiB) rather than SQLite's
//! 1,000: tier rows rewrite the same pages minute after minute, and each
//! copy writes a page once however often the log holds it.

use crate::schema::{
    metric_columns, quote, stored_state, table_name, write_series_id, write_state, ColumnKind, STATE_SUFFIX,
};
use crate::{DeploymentRecord, Error, Result, RowFilter, Store, StoredDeadLetter, WriteBatch};
use dsl::plan::MetricPlan;
use engine::{Checkpoint, KeyVal, Row};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// A SQLite database file (or `:memory:`).
pub struct SqliteStore {
    conn: Connection,
}

fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let context = context.into();
    move |source| Error::Sqlite { context, source }
}

/// The DNSBL listing episodes, created when first written or read.
const EPISODES_DDL: &str = "CREATE TABLE IF NOT EXISTS stream_dnsbl_episodes (
       list TEXT NOT NULL, target TEXT NOT NULL, first_seen_ms INTEGER NOT NULL,
       last_seen_ms INTEGER NOT NULL, ended_ms INTEGER, code TEXT NOT NULL, last_code TEXT NOT NULL,
       meaning TEXT, first_txt TEXT, last_txt TEXT,
       PRIMARY KEY (list, target, first_seen_ms));";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    /// If the file cannot be opened or configured.
    pub fn open(path: &str) -> Result<Self> {
        let conn = Connection::open(path).map_err(sqlite(format!("cannot open `{path}`")))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -65536;
             PRAGMA wal_autocheckpoint = 16384;
             PRAGMA journal_size_limit = 67108864;
             CREATE TABLE IF NOT EXISTS stream_checkpoints (
               topic TEXT NOT NULL, partition INTEGER NOT NULL,
               replay_offset INTEGER NOT NULL, next_offset INTEGER NOT NULL, max_event_time INTEGER,
               metrics TEXT, plan_version INTEGER,
               PRIMARY KEY (topic, partition));
             CREATE TABLE IF NOT EXISTS stream_owners (
               topic TEXT NOT NULL, partition INTEGER NOT NULL, epoch INTEGER NOT NULL,
               PRIMARY KEY (topic, partition));
             CREATE TABLE IF NOT EXISTS stream_deployments (
               version INTEGER NOT NULL, instance TEXT NOT NULL, at_ms INTEGER NOT NULL,
               outcome TEXT NOT NULL, plan_hash TEXT NOT NULL, detail TEXT NOT NULL,
               PRIMARY KEY (version, instance, at_ms));
             CREATE TABLE IF NOT EXISTS stream_dead_letters (
               topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
               reason TEXT NOT NULL, detail TEXT NOT NULL, payload BLOB NOT NULL, key BLOB,
               PRIMARY KEY (topic, partition, offset));",
        )
        .map_err(sqlite("cannot create the bookkeeping tables"))?;
        // Checkpoints written before plans could change have no `metrics`
        // column, those from before plans were versioned no `plan_version`.
        for (column, ty) in [("metrics", "TEXT"), ("plan_version", "INTEGER")] {
            let exists: bool = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('stream_checkpoints') WHERE name = ?1",
                    [column],
                    |r| r.get(0),
                )
                .map_err(sqlite("cannot inspect the checkpoint table"))?;
            if !exists {
                conn.execute_batch(&format!("ALTER TABLE stream_checkpoints ADD COLUMN {column} {ty}"))
                    .map_err(sqlite(format!("cannot add the checkpoint column `{column}`")))?;
            }
        }
        conn.set_prepared_statement_cache_capacity(256);
        Ok(SqliteStore { conn })
    }

    /// The underlying connection, for tests and tools.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn sql_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text => "TEXT",
        ColumnKind::Int | ColumnKind::Bool | ColumnKind::Timestamp => "INTEGER",
        ColumnKind::Float => "REAL",
        ColumnKind::State => "BLOB",
    }
}

/// Rows of a batch encoded for binding, in the order of their tables'
/// keys, a chunk at a time: every parameter of every row (series ids, keys,
/// finished values, state blobs, window, source partition), so that the
/// thread running the inserts reads one chunk front to back instead of
/// each row's key and states, scattered over the heap, a cache miss apiece.
///
/// A window closes its series in hash order, which would make each upsert
/// search and split a random page of the table's b-tree. In key order
/// (`window_start`, `series`, `source_partition`: what SQLite compares, text
/// byte by byte), each insert lands next to the one before: its pages stay
/// in cache, and are filled before they split instead of left half full.
/// The sort is stable, so of two rows with the same key in one batch the
/// later is still written last and kept.
#[derive(Default)]
struct Encoded {
    /// Per row: the index in the batch of the first row of its metric (as
    /// held: two versions of a metric writing one table have their own
    /// columns) and tier, which names its statement; and where its
    /// parameters end in `params`.
    rows: Vec<(u32, u32)>,
    /// Each row's parameters, in the order of [`upsert_sql`].
    params: Vec<Param>,
    /// Texts and blobs of the parameters, one after the other.
    bytes: Vec<u8>,
}

/// One parameter of an [`Encoded`] row; texts and blobs are in its bytes.
#[derive(Debug)]
enum Param {
    Null,
    Int(i64),
    Real(f64),
    Text(Range<usize>),
    Blob(Range<usize>),
}

impl Encoded {
    /// Appends `bytes` as a text parameter.
    fn text(&mut self, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.params.push(Param::Text(start..self.bytes.len()));
    }

    /// Appends a key or finished value, bound as [`to_sql`] converts it
    /// (texts copied straight into the chunk rather than through an owned
    /// `String`).
    fn value(&mut self, value: &KeyVal) {
        let param = match value {
            KeyVal::Str(s) => return self.text(s.as_bytes()),
            other => match to_sql(other) {
                Value::Null => Param::Null,
                Value::Integer(i) => Param::Int(i),
                Value::Real(f) => Param::Real(f),
                Value::Text(text) => return self.text(text.as_bytes()),
                Value::Blob(blob) => {
                    let start = self.bytes.len();
                    self.bytes.extend_from_slice(&blob);
                    Param::Blob(start..self.bytes.len())
                }
            },
        };
        self.params.push(param);
    }

    /// Parameter `param` as SQLite takes it.
    fn bound(&self, param: &Param) -> ValueRef<'_> {
        match param {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(*i),
            Param::Real(f) => ValueRef::Real(*f),
            Param::Text(range) => ValueRef::Text(&self.bytes[range.clone()]),
            Param::Blob(range) => ValueRef::Blob(&self.bytes[range.clone()]),
        }
    }
}

/// Rows per [`Encoded`] chunk.
const ENCODED_CHUNK_ROWS: usize = 2048;
/// From this many rows, a write encodes on a second thread while it
/// inserts: sorting and encoding are a third of a large write (the end of a
/// batch run writes every hourly and daily row at once), and SQLite's part
/// cannot be split.
const ENCODE_APART_ROWS: usize = 20_000;

/// Encodes `rows` in key order, table after table (each table's rows in
/// the order of its key), handing each chunk to `emit` until it says stop.
fn encode_in_key_order(rows: &[Row], mut emit: impl FnMut(Encoded) -> bool) {
    // Rows of one table, whichever version of its metric made them, go
    // together; each row with the first row of its metric version and tier.
    let mut tables: Vec<String> = Vec::new();
    let mut members: Vec<Vec<(u32, u32)>> = Vec::new();
    let mut table_of: HashMap<(*const MetricPlan, usize), (usize, u32)> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let (t, first) = *table_of.entry((Arc::as_ptr(&row.metric), row.tier)).or_insert_with(|| {
            let name = table_name(&row.metric, row.tier);
            let t = tables.iter().position(|n| *n == name).unwrap_or_else(|| {
                tables.push(name);
                members.push(Vec::new());
                tables.len() - 1
            });
            (t, i as u32)
        });
        members[t].push((i as u32, first));
    }
    let (mut ids, mut spans) = (Vec::new(), Vec::new());
    for members in members {
        ids.clear();
        spans.clear();
        for &(i, _) in &members {
            let start = ids.len();
            write_series_id(&mut ids, &rows[i as usize].keys);
            spans.push(start..ids.len());
        }
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&rows[members[a].0 as usize], &rows[members[b].0 as usize]);
            x.window_start
                .cmp(&y.window_start)
                .then_with(|| ids[spans[a].clone()].cmp(&ids[spans[b].clone()]))
                .then(x.partition.cmp(&y.partition))
        });
        let mut chunk = Encoded::default();
        for k in order {
            let (i, first) = members[k];
            let row = &rows[i as usize];
            chunk.text(&ids[spans[k].clone()]);
            for key in row.keys.iter() {
                chunk.value(key);
            }
            for state in row.states.iter() {
                chunk.value(&state.finish());
                if state.is_its_value() {
                    chunk.params.push(Param::Null);
                } else {
                    let start = chunk.bytes.len();
                    write_state(&mut chunk.bytes, state);
                    chunk.params.push(Param::Blob(start..chunk.bytes.len()));
                }
            }
            chunk.params.push(Param::Int(row.window_start));
            chunk.params.push(Param::Int(i64::from(row.partition)));
            chunk.params.push(row.included_through.map_or(Param::Null, Param::Int));
            chunk.rows.push((first, chunk.params.len() as u32));
            if chunk.rows.len() >= ENCODED_CHUNK_ROWS && !emit(std::mem::take(&mut chunk)) {
                return;
            }
        }
        if !chunk.rows.is_empty() && !emit(chunk) {
            return;
        }
    }
}

fn to_sql(v: &KeyVal) -> Value {
    match v {
        KeyVal::Null => Value::Null,
        KeyVal::Bool(b) => Value::Integer(i64::from(*b)),
        KeyVal::Int(i) | KeyVal::Ts(i) => Value::Integer(*i),
        KeyVal::Float(bits) => Value::Real(f64::from_bits(*bits)),
        KeyVal::Str(s) => Value::Text(s.to_string()),
    }
}

impl Store for SqliteStore {
    fn setup(&mut self, plan: &dsl::Plan) -> Result<()> {
        let tx = self.conn.transaction().map_err(sqlite("cannot begin schema setup"))?;
        for metric in &plan.metrics {
            let columns = metric_columns(metric);
            for tier in 0..metric.tiers.len() {
                let table = table_name(metric, tier);
                let mut ddl = format!("CREATE TABLE IF NOT EXISTS {} (series TEXT NOT NULL", quote(&table));
                for c in &columns {
                    ddl.push_str(&format!(", {} {}", quote(&c.name), sql_type(c.kind)));
                }
                ddl.push_str(
                    ", window_start INTEGER NOT NULL, source_partition INTEGER NOT NULL, included_through INTEGER",
                );
                // Window start first: a new window's rows go to the end of
                // the key order instead of beside every older window of the
                // same series, so a write dirties a few pages rather than
                // pages all over a table that grows for months. Tables made
                // with the earlier order (series first) keep it and work.
                // Without a rowid, the rows are stored in the key's b-tree:
                // an upsert writes one b-tree instead of a table and an
                // index repeating the key (series included), which saves
                // about a tenth of the batch path's CPU and a quarter of
                // the file. Tables made with a rowid keep it and work.
                ddl.push_str(", PRIMARY KEY (window_start, series, source_partition)) WITHOUT ROWID");
                tx.execute_batch(&ddl).map_err(sqlite(format!("cannot create table `{table}`")))?;
                // Additive migration: add columns of new aggregates; keys are identity.
                let existing: Vec<String> = tx
                    .prepare(&format!("SELECT name FROM pragma_table_info({})", quote_literal(&table)))
                    .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
                    .map_err(sqlite(format!("cannot inspect table `{table}`")))?;
                for key in &metric.keys {
                    if !existing.contains(&key.name) {
                        return Err(Error::IncompatibleSchema {
                            table,
                            detail: format!(
                                "it has no key column `{}`; give the changed metric a new `into table` name",
                                key.name
                            ),
                        });
                    }
                }
                for c in &columns {
                    if !existing.contains(&c.name) {
                        tx.execute_batch(&format!(
                            "ALTER TABLE {} ADD COLUMN {} {}",
                            quote(&table),
                            quote(&c.name),
                            sql_type(c.kind)
                        ))
                        .map_err(sqlite(format!("cannot add column `{}` to `{table}`", c.name)))?;
                    }
                }
            }
        }
        tx.commit().map_err(sqlite("cannot commit schema setup"))
    }

    fn write(&mut self, batch: &WriteBatch<'_>) -> Result<()> {
        // Immediate: the write lock is taken before the owners are read, so
        // no claim by another process can come between the check and the write.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite("cannot begin a write"))?;
        if !batch.owners.is_empty() {
            let mut statement = tx
                .prepare_cached("SELECT epoch FROM stream_owners WHERE topic = ?1 AND partition = ?2")
                .map_err(sqlite("cannot prepare an owner check"))?;
            let mut fenced = Vec::new();
            for &(partition, epoch) in batch.owners {
                let stored: Option<i64> = statement
                    .query_row(params![batch.topic, partition], |r| r.get(0))
                    .optional()
                    .map_err(sqlite("cannot check a partition's owner"))?;
                if stored != i64::try_from(epoch).ok() {
                    fenced.push(partition);
                }
            }
            if !fenced.is_empty() {
                return Err(Error::Fenced { topic: batch.topic.to_string(), partitions: fenced });
            }
        }
        // One statement per metric version and tier for the whole batch,
        // and the rows' parameters bound in place (SQLite copies them): no
        // per-row statement-cache lookup (it hashes the SQL text), no
        // per-row vector of owned values. Few per batch: found by a scan
        // from the most recent.
        let mut statements: Vec<(u32, rusqlite::CachedStatement<'_>)> = Vec::new();
        let mut insert = |chunk: Encoded| -> Result<()> {
            let mut start = 0;
            for &(first, end) in &chunk.rows {
                let params = &chunk.params[start..end as usize];
                start = end as usize;
                let row_of_table = &batch.rows[first as usize];
                let at = match statements.iter().rposition(|(f, _)| *f == first) {
                    Some(at) => at,
                    None => {
                        let sql = upsert_sql(&row_of_table.metric, row_of_table.tier);
                        let statement = tx.prepare_cached(&sql).map_err(sqlite("cannot prepare a row upsert"))?;
                        statements.push((first, statement));
                        statements.len() - 1
                    }
                };
                let statement = &mut statements[at].1;
                let upserted = params
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, param)| {
                        statement.raw_bind_parameter(i + 1, ToSqlOutput::Borrowed(chunk.bound(param)))
                    })
                    .and_then(|()| statement.raw_execute());
                upserted.map_err(|source| Error::Sqlite {
                    context: format!("cannot write to `{}`", table_name(&row_of_table.metric, row_of_table.tier)),
                    source,
                })?;
            }
            Ok(())
        };
        if batch.rows.len() >= ENCODE_APART_ROWS {
            std::thread::scope(|scope| {
                let (encoded, chunks) = std::sync::mpsc::sync_channel(4);
                scope.spawn(move || encode_in_key_order(batch.rows, |chunk| encoded.send(chunk).is_ok()));
                // An error drops `chunks`, which stops the encoder.
                chunks.into_iter().try_for_each(&mut insert)
            })?;
        } else {
            let mut inserted = Ok(());
            encode_in_key_order(batch.rows, |chunk| {
                inserted = insert(chunk);
                inserted.is_ok()
            });
            inserted?;
        }
        drop(statements);
        {
            let mut statement = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO stream_dead_letters (topic, partition, offset, reason, detail, payload, key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sqlite("cannot prepare a dead-letter insert"))?;
            for d in batch.dead_letters {
                statement
                    .execute(params![d.topic, d.partition, d.offset, d.reason.as_str(), d.detail, d.payload, d.key])
                    .map_err(sqlite("cannot write a dead letter"))?;
            }
        }
        {
            let mut statement = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO stream_checkpoints (topic, partition, replay_offset, next_offset, max_event_time, metrics, plan_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sqlite("cannot prepare a checkpoint write"))?;
            for c in batch.checkpoints {
                let (metrics, plan_version) = crate::checkpoint_columns(c);
                statement
                    .execute(params![
                        batch.topic,
                        c.partition,
                        c.replay_offset,
                        c.next_offset,
                        c.max_event_time,
                        metrics,
                        plan_version
                    ])
                    .map_err(sqlite("cannot write a checkpoint"))?;
            }
        }
        tx.commit().map_err(sqlite("cannot commit a write"))
    }

    fn claim(&mut self, topic: &str, partition: i32) -> Result<u64> {
        let epoch: i64 = self
            .conn
            .query_row(
                "INSERT INTO stream_owners (topic, partition, epoch) VALUES (?1, ?2, 1)
                 ON CONFLICT (topic, partition) DO UPDATE SET epoch = epoch + 1 RETURNING epoch",
                params![topic, partition],
                |r| r.get(0),
            )
            .map_err(sqlite("cannot claim a partition"))?;
        Ok(u64::try_from(epoch).unwrap_or(0))
    }

    fn checkpoint(&self, topic: &str, partition: i32) -> Result<Option<Checkpoint>> {
        self.conn
            .query_row(
                "SELECT replay_offset, next_offset, max_event_time, metrics, plan_version FROM stream_checkpoints WHERE topic = ?1 AND partition = ?2",
                params![topic, partition],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(sqlite("cannot read a checkpoint"))?
            .map(|columns| crate::stored_checkpoint(partition, columns))
            .transpose()
    }

    fn all_checkpoints(&self) -> Result<Vec<(String, Checkpoint)>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT topic, partition, replay_offset, next_offset, max_event_time, metrics, plan_version FROM stream_checkpoints
                 ORDER BY topic, partition",
            )
            .map_err(sqlite("cannot list checkpoints"))?;
        let rows = statement
            .query_map([], |r| {
                let columns = (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?);
                Ok((r.get::<_, String>(0)?, r.get::<_, i32>(1)?, columns))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sqlite("cannot list checkpoints"))?;
        rows.into_iter()
            .map(|(topic, partition, columns)| Ok((topic, crate::stored_checkpoint(partition, columns)?)))
            .collect()
    }

    fn write_episodes(&mut self, episodes: &[crate::episodes::Episode]) -> Result<()> {
        self.conn.execute_batch(EPISODES_DDL).map_err(sqlite("cannot create the episode table"))?;
        let tx = self.conn.transaction().map_err(sqlite("cannot write episodes"))?;
        {
            // A write never moves an episode back: an older version of it
            // (a replayed or late write) leaves the newer one in place.
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO stream_dnsbl_episodes (list, target, first_seen_ms, last_seen_ms, ended_ms, code,
                       last_code, meaning, first_txt, last_txt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (list, target, first_seen_ms) DO UPDATE SET
                       last_seen_ms = excluded.last_seen_ms, ended_ms = excluded.ended_ms,
                       last_code = excluded.last_code, last_txt = excluded.last_txt
                     WHERE excluded.last_seen_ms > stream_dnsbl_episodes.last_seen_ms
                        OR (excluded.last_seen_ms = stream_dnsbl_episodes.last_seen_ms
                            AND stream_dnsbl_episodes.ended_ms IS NULL)",
                )
                .map_err(sqlite("cannot write episodes"))?;
            for e in episodes {
                upsert
                    .execute(params![
                        e.list,
                        e.target,
                        e.first_seen_ms,
                        e.last_seen_ms,
                        e.ended_ms,
                        e.code,
                        e.last_code,
                        e.meaning,
                        e.first_txt,
                        e.last_txt
                    ])
                    .map_err(sqlite("cannot write an episode"))?;
            }
        }
        tx.commit().map_err(sqlite("cannot write episodes"))
    }

    fn episodes(&self, filter: &crate::episodes::EpisodeFilter) -> Result<Vec<crate::episodes::Episode>> {
        self.conn.execute_batch(EPISODES_DDL).map_err(sqlite("cannot create the episode table"))?;
        let mut statement = self
            .conn
            .prepare(
                "SELECT list, target, first_seen_ms, last_seen_ms, ended_ms, code, last_code, meaning, first_txt,
                   last_txt
                 FROM stream_dnsbl_episodes
                 WHERE (?1 IS NULL OR list = ?1) AND (?2 IS NULL OR target = ?2)
                 ORDER BY list, target, first_seen_ms",
            )
            .map_err(sqlite("cannot read episodes"))?;
        let rows = statement
            .query_map(params![filter.list, filter.target], |r| {
                Ok(crate::episodes::Episode {
                    list: r.get(0)?,
                    target: r.get(1)?,
                    first_seen_ms: r.get(2)?,
                    last_seen_ms: r.get(3)?,
                    ended_ms: r.get(4)?,
                    code: r.get(5)?,
                    last_code: r.get(6)?,
                    meaning: r.get(7)?,
                    first_txt: r.get(8)?,
                    last_txt: r.get(9)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sqlite("cannot read episodes"))?;
        Ok(rows.into_iter().filter(|e| filter.matches(e)).collect())
    }

    fn record_deployment(&mut self, record: &DeploymentRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO stream_deployments (version, instance, at_ms, outcome, plan_hash, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    crate::deployment_version_column(record.version),
                    record.instance,
                    record.at_ms,
                    record.outcome,
                    record.plan_hash,
                    record.detail
                ],
            )
            .map_err(sqlite("cannot record a deployment"))?;
        Ok(())
    }

    fn deployments(&self) -> Result<Vec<DeploymentRecord>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT version, instance, at_ms, outcome, plan_hash, detail FROM stream_deployments
                 ORDER BY at_ms, version, instance",
            )
            .map_err(sqlite("cannot read the deployment history"))?;
        let rows = statement
            .query_map([], |r| {
                Ok(DeploymentRecord {
                    version: crate::deployment_version(r.get(0)?),
                    instance: r.get(1)?,
                    at_ms: r.get(2)?,
                    outcome: r.get(3)?,
                    plan_hash: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sqlite("cannot read the deployment history"))?;
        Ok(rows)
    }

    fn read(&self, plan: &dsl::Plan, metric: usize, filter: &RowFilter) -> Result<Vec<Row>> {
        let m = plan.metrics.get(metric).ok_or_else(|| Error::BadQuery(format!("no metric #{metric}")))?;
        if filter.tier >= m.tiers.len() {
            return Err(Error::BadQuery(format!("metric `{}` has no tier #{}", m.name, filter.tier)));
        }
        let table = table_name(m, filter.tier);
        // Each aggregate's state, then its value (a count or sum is stored
        // as its value alone, its state null; rows of earlier versions have both).
        let state_columns: Vec<String> =
            m.aggregates.iter().flat_map(|a| [quote(&format!("{}{STATE_SUFFIX}", a.name)), quote(&a.name)]).collect();
        let mut sql = format!(
            "SELECT series, window_start, source_partition, included_through{}{} FROM {} WHERE 1 = 1",
            if state_columns.is_empty() { "" } else { ", " },
            state_columns.join(", "),
            quote(&table)
        );
        let mut values: Vec<Value> = Vec::new();
        if let Some(from) = filter.from_ms {
            sql.push_str(" AND window_start >= ?");
            values.push(Value::Integer(from));
        }
        if let Some(to) = filter.to_ms {
            sql.push_str(" AND window_start < ?");
            values.push(Value::Integer(to));
        }
        if let Some(p) = filter.partition {
            sql.push_str(" AND source_partition = ?");
            values.push(Value::Integer(i64::from(p)));
        }
        for (key, value) in &filter.equals {
            let Some(k) = m.keys.get(*key) else { return Err(Error::BadQuery(format!("no key column #{key}"))) };
            if matches!(value, KeyVal::Null) {
                sql.push_str(&format!(" AND {} IS NULL", quote(&k.name)));
            } else {
                sql.push_str(&format!(" AND {} = ?", quote(&k.name)));
                values.push(to_sql(value));
            }
        }
        sql.push_str(" ORDER BY window_start, series, source_partition");
        let mut statement = self.conn.prepare_cached(&sql).map_err(sqlite(format!("cannot query `{table}`")))?;
        let mut rows =
            statement.query(rusqlite::params_from_iter(values)).map_err(sqlite(format!("cannot query `{table}`")))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(sqlite(format!("cannot read `{table}`")))? {
            let series: String = r.get(0).map_err(sqlite("bad series column"))?;
            let keys: Vec<KeyVal> = serde_json::from_str(&series).map_err(|source| Error::CorruptState {
                table: table.clone(),
                column: "series".into(),
                source,
            })?;
            let mut states = Vec::with_capacity(m.aggregates.len());
            for (i, a) in m.aggregates.iter().enumerate() {
                let corrupt = |source| Error::CorruptState {
                    table: table.clone(),
                    column: format!("{}{STATE_SUFFIX}", a.name),
                    source,
                };
                let state = match r.get_ref(4 + 2 * i).map_err(sqlite("bad state column"))? {
                    ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Some(bytes),
                    ValueRef::Null => None,
                    _ => return Err(corrupt(serde::de::Error::custom("a number where a state belongs"))),
                };
                let value = match r.get_ref(5 + 2 * i).map_err(sqlite("bad value column"))? {
                    ValueRef::Integer(n) => KeyVal::Int(n),
                    ValueRef::Real(x) => KeyVal::Float(x.to_bits()),
                    _ => KeyVal::Null,
                };
                states.push(stored_state(a, &value, state).map_err(corrupt)?);
            }
            out.push(Row {
                metric: Arc::clone(m),
                tier: filter.tier,
                window_start: r.get(1).map_err(sqlite("bad window_start"))?,
                partition: r.get(2).map_err(sqlite("bad source_partition"))?,
                included_through: r.get(3).map_err(sqlite("bad included_through"))?,
                keys: keys.into(),
                states: states.into(),
            });
        }
        Ok(out)
    }

    fn dead_letters(&self, topic: &str) -> Result<Vec<StoredDeadLetter>> {
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT partition, offset, reason, detail, payload FROM stream_dead_letters WHERE topic = ?1 ORDER BY partition, offset",
            )
            .map_err(sqlite("cannot query dead letters"))?;
        let rows = statement
            .query_map(params![topic], |r| {
                Ok(StoredDeadLetter {
                    topic: topic.to_string(),
                    partition: r.get(0)?,
                    offset: r.get(1)?,
                    reason: r.get(2)?,
                    detail: r.get(3)?,
                    payload: r.get(4)?,
                })
            })
            .map_err(sqlite("cannot query dead letters"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(sqlite("cannot read dead letters"))
    }

    fn sweep(&mut self, plan: &dsl::Plan, now_ms: i64) -> Result<u64> {
        let mut deleted = 0;
        for metric in &plan.metrics {
            for (t, tier) in metric.tiers.iter().enumerate() {
                let cutoff = now_ms.saturating_sub((tier.retention_ms + tier.width_ms) as i64);
                let table = table_name(metric, t);
                deleted += self
                    .conn
                    .execute(&format!("DELETE FROM {} WHERE window_start < ?1", quote(&table)), params![cutoff])
                    .map_err(sqlite(format!("cannot sweep `{table}`")))? as u64;
            }
        }
        Ok(deleted)
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn upsert_sql(metric: &dsl::plan::MetricPlan, tier: usize) -> String {
    let columns = metric_columns(metric);
    let mut names = vec!["series".to_string()];
    names.extend(columns.iter().map(|c| quote(&c.name)));
    names.extend(["window_start".to_string(), "source_partition".into(), "included_through".into()]);
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|n| !matches!(n.as_str(), "series" | "window_start" | "source_partition"))
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (series, window_start, source_partition) DO UPDATE SET {}",
        quote(&table_name(metric, tier)),
        names.join(", "),
        placeholders.join(", "),
        updates.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key or value encoded into a chunk binds as the value `to_sql` makes
    /// of it (what the read path's filters bind).
    #[test]
    fn encoded_parameters_bind_as_their_sql_values() {
        let values = [
            KeyVal::Null,
            KeyVal::Bool(true),
            KeyVal::Bool(false),
            KeyVal::Int(-7),
            KeyVal::Ts(1_717_372_800_000),
            KeyVal::Float(2.5f64.to_bits()),
            KeyVal::Str("example.com".into()),
            KeyVal::Str("a text longer than twenty-four bytes, on the heap".into()),
            KeyVal::Str("".into()),
        ];
        let mut chunk = Encoded::default();
        chunk.text(b"prefix");
        for value in &values {
            chunk.value(value);
        }
        assert_eq!(chunk.params.len(), values.len() + 1);
        for (param, value) in chunk.params[1..].iter().zip(&values) {
            assert_eq!(chunk.bound(param), ValueRef::from(&to_sql(value)), "{value:?}");
        }
    }

    /// A store made before checkpoints listed their metrics and their plan
    /// version opens, reads its old checkpoints, and keeps new ones whole.
    #[test]
    fn a_checkpoint_table_from_before_metric_starts_and_plan_versions_gains_their_columns() {
        let path = std::env::temp_dir().join(format!("store-checkpoint-columns-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let path = path.to_str().expect("a UTF-8 temp path").to_string();
        {
            let old = Connection::open(&path).expect("open");
            old.execute_batch(
                "CREATE TABLE stream_checkpoints (
                   topic TEXT NOT NULL, partition INTEGER NOT NULL,
                   replay_offset INTEGER NOT NULL, next_offset INTEGER NOT NULL, max_event_time INTEGER,
                   PRIMARY KEY (topic, partition));
                 INSERT INTO stream_checkpoints VALUES ('t', 0, 5, 9, 1000);",
            )
            .expect("the old table");
        }
        let mut store = SqliteStore::open(&path).expect("opens the old store");
        let old = Checkpoint {
            partition: 0,
            replay_offset: 5,
            next_offset: 9,
            max_event_time: Some(1000),
            metrics: None,
            plan_version: None,
        };
        assert_eq!(store.checkpoint("t", 0).expect("read"), Some(old.clone()));
        let new = Checkpoint { partition: 1, plan_version: Some(4), metrics: Some(vec![]), ..old.clone() };
        let checkpoints = [new.clone()];
        store.write(&WriteBatch { topic: "t", checkpoints: &checkpoints, ..WriteBatch::default() }).expect("write");
        assert_eq!(store.all_checkpoints().expect("list"), vec![("t".to_string(), old), ("t".to_string(), new)]);
        drop(store);
        // Opening again finds the columns there.
        SqliteStore::open(&path).expect("opens again");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(format!("{path}-wal"));
        let _ = std::fs::remove_file(format!("{path}-shm"));
    }
}
