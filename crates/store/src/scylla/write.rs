//! The write path: owner claims and checks, rows grouped by Scylla
//! partition into unlogged batches, dead letters, then checkpoints.

use super::errors::{exec_err, scylla_err};
use super::{schema, Consistency, ScyllaStore};
use crate::schema::{encode_state, series_id, table_name, ColumnKind};
use crate::{Error, Result, WriteBatch};
use engine::{KeyVal, Row};
use futures_util::{StreamExt, TryStreamExt};
use scylla::frame::response::result::{ColumnSpec, TableSpec};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue, MaybeUnset};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

/// Largest number of statements in one unlogged batch.
const MAX_BATCH: usize = 100;

impl ScyllaStore {
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
    pub(super) async fn claim_async(&self, topic: &str, partition: i32) -> Result<u64> {
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

    pub(super) async fn write_async(&self, batch: &WriteBatch<'_>) -> Result<()> {
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
            let entry = vec![set(CqlValue::BigInt(*bucket)), set(CqlValue::Text(series.clone()))];
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
                    let (metrics, plan_version) = crate::checkpoint_columns(c);
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
                                    metrics,
                                    plan_version,
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
}

/// One bind value: a value (`Set(Some)`), null (`Set(None)`: in CQL a
/// cell tombstone, which removes what an earlier write put there), or
/// unset (`Unset`: the column is left as it is, and nothing is written).
pub type Bind = MaybeUnset<Option<CqlValue>>;

/// Bind values of one statement.
pub type Values = Vec<Bind>;

fn set(value: CqlValue) -> Bind {
    MaybeUnset::Set(Some(value))
}

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
///
/// * A null group-by value is left unset: the series id (part of the
///   primary key) holds the keys, so every write of this row has the same
///   null there, and unset writes nothing where null would write a tombstone.
///   Likewise a base-tier row's `included_through`: base-tier rows never
///   have one, tier rows always do, and a table holds one tier.
/// * Every aggregate's value is set, null included: a value always replaces
///   the one an earlier write of the row left.
/// * A count or sum whose value is its whole state
///   ([`AggState::is_its_value`](engine::aggregate::AggState::is_its_value))
///   leaves its state column unset: no blob, and no tombstone either (a
///   null would be one, on every rewrite of every row). A state an earlier
///   write left there stays, but readers never prefer it: they rebuild the
///   state from such a value whatever the state column holds
///   ([`crate::schema::stored_state`]). Any other aggregate, and a count or
///   sum whose value is not its whole state, writes its state.
pub fn row_values(metric: &dsl::plan::MetricPlan, row: &Row, series: &str, bucket: i64) -> Values {
    let columns = schema::data_columns(metric);
    let mut values = Vec::with_capacity(4 + columns.len());
    values.push(set(CqlValue::Text(series.to_string())));
    values.push(set(CqlValue::BigInt(bucket)));
    values.push(set(CqlValue::Timestamp(CqlTimestamp(row.window_start))));
    values.push(set(CqlValue::Int(row.partition)));
    let mut kinds = columns.iter().map(|c| c.kind);
    for k in row.keys.iter() {
        let kind = kinds.next().unwrap_or(ColumnKind::Text);
        values.push(MaybeUnset::from_option(to_cql(k, kind).map(Some)));
    }
    for state in row.states.iter() {
        let kind = kinds.next().unwrap_or(ColumnKind::Float);
        values.push(MaybeUnset::Set(to_cql(&state.finish(), kind)));
        kinds.next();
        values.push(if state.is_its_value() { MaybeUnset::Unset } else { set(CqlValue::Blob(encode_state(state))) });
    }
    values.push(MaybeUnset::from_option(row.included_through.map(|t| Some(CqlValue::Timestamp(CqlTimestamp(t))))));
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

#[cfg(test)]
mod tests {
    use super::*;
    use engine::aggregate::AggState;

    /// The value of a bind that sets one (`None` for null and unset).
    fn set_value(bind: Option<&Bind>) -> Option<CqlValue> {
        match bind {
            Some(MaybeUnset::Set(value)) => value.clone(),
            _ => None,
        }
    }

    /// How one column is bound: `"unset"`, `"null"`, or the value.
    fn shown(bind: &Bind) -> String {
        match bind {
            MaybeUnset::Unset => "unset".into(),
            MaybeUnset::Set(None) => "null".into(),
            MaybeUnset::Set(Some(CqlValue::Blob(bytes))) => format!("state {}", String::from_utf8_lossy(bytes)),
            MaybeUnset::Set(Some(value)) => format!("{value:?}"),
        }
    }

    /// A count or sum binds its value and leaves its state unset; a
    /// sketch (here a maximum and a quantile) binds both; a count or sum
    /// whose value is not its whole state (an int sum beyond 64 bits, a
    /// float sum that is not finite) binds its state and a null or
    /// non-finite value. Every one of them binds to the upsert's types.
    #[test]
    fn counts_and_sums_bind_their_value_alone_sketches_their_state_too() {
        let compiled = dsl::compile_str(
            "t.stream",
            "version 1\n\nsource s from kafka \"t\" format json {\n  ts: timestamp event_time,\n  k: string,\n  n: int,\n  x: float,\n}\n\n\
             metric m from s\n  group by k\n  compute count() as c, sum(n) as total, sum(x) as mass, max(n) as top, p50(x) as mid\n  window 1m\n",
        );
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("checked above");
        let metric = &plan.metrics[0];
        let row = |states: Vec<AggState>| Row {
            metric: Arc::clone(metric),
            tier: 0,
            window_start: 60_000,
            partition: 0,
            keys: vec![KeyVal::Str("gmail".into())].into(),
            states: states.into(),
            included_through: None,
        };
        let top = AggState::Extreme { value: Some(KeyVal::Int(12)), is_max: true };
        let mid = AggState::new(&metric.aggregates[4]);
        let columns: Vec<String> = schema::data_columns(metric).iter().map(|c| c.name.clone()).collect();
        let bound = |states: Vec<AggState>| -> Vec<(String, String)> {
            let r = row(states);
            let values = row_values(metric, &r, &series_id(&r.keys), 0);
            let mut out = Vec::new();
            assert!(bind(&upsert_specs("ks", metric, 0), &values, &mut out).expect("types match") > 0);
            columns.iter().cloned().zip(values[4..].iter().map(shown)).collect()
        };
        let fitting = vec![
            AggState::Count { n: 5 },
            AggState::SumInt { sum: -7 },
            AggState::SumFloat { sum: 2.5 },
            top.clone(),
            mid.clone(),
        ];
        let expected = [
            ("k", "Text(\"gmail\")"),
            ("c", "BigInt(5)"),
            ("c__state", "unset"),
            ("total", "BigInt(-7)"),
            ("total__state", "unset"),
            ("mass", "Double(2.5)"),
            ("mass__state", "unset"),
            ("top", "BigInt(12)"),
            ("top__state", r#"state {"kind":"extreme","value":{"t":"int","v":12},"is_max":true}"#),
            ("mid", "null"),
            ("mid__state", r#"state {"kind":"quantile","sketch":null,"q":0.5}"#),
            ("included_through", "unset"),
        ];
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(c, v)| (c.to_string(), v.to_string())).collect()
        };
        assert_eq!(bound(fitting), owned(&expected));
        // Beyond what the value column holds, the state is bound too.
        let beyond = vec![
            AggState::Count { n: u64::MAX },
            AggState::SumInt { sum: i128::from(i64::MAX) + 1 },
            AggState::SumFloat { sum: f64::INFINITY },
            top,
            mid,
        ];
        let got = bound(beyond);
        assert_eq!(
            got[1..7],
            owned(&[
                ("c", "BigInt(9223372036854775807)"),
                ("c__state", r#"state {"kind":"count","n":18446744073709551615}"#),
                ("total", "null"),
                ("total__state", r#"state {"kind":"sum_int","sum":"9223372036854775808"}"#),
                ("mass", "Double(inf)"),
                ("mass__state", r#"state {"kind":"sum_float","sum":"inf"}"#),
            ])[..]
        );
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
            .flat_map(|rows| rows.iter().map(|((_, partition), values)| (*partition, set_value(values.last()))))
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
        assert!(matches!(values[4], MaybeUnset::Unset), "a null key is left unset: {:?}", values[4]);
        assert_eq!(set_value(values.last()), Some(CqlValue::Timestamp(CqlTimestamp(3_660_000))));
        let mut out = Vec::new();
        assert!(bind(&upsert_specs("ks", metric, 1), &values, &mut out).expect("types match") > 0);
        // A value of the wrong type is refused, as the driver would.
        let mut wrong = values.clone();
        wrong[3] = set(CqlValue::BigInt(3));
        assert!(bind(&upsert_specs("ks", metric, 1), &wrong, &mut out).is_err());
    }
}
