//! The read path: rows of one metric tier, through the series index for a
//! bounded time range, else by a filtered scan.

use super::errors::{exec_err, pager_is_transient, scylla_err};
use super::{schema, ScyllaStore};
use crate::schema::{series_id, stored_state, table_name};
use crate::{Error, Result, RowFilter};
use engine::{Checkpoint, KeyVal, Row};
use futures_util::{StreamExt, TryStreamExt};
use scylla::value::{CqlTimestamp, CqlValue};
use std::sync::Arc;

impl ScyllaStore {
    pub(super) async fn read_async(&self, plan: &dsl::Plan, metric: usize, filter: &RowFilter) -> Result<Vec<Row>> {
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

impl ScyllaStore {
    /// Every checkpoint, in (topic, partition) order (see [`crate::Store::all_checkpoints`]).
    pub(super) async fn all_checkpoints_async(&self) -> Result<Vec<(String, Checkpoint)>> {
        const CONTEXT: &str = "cannot list checkpoints";
        let statement = self.prepare_read(&schema::select_all_checkpoints(&self.config.keyspace)).await?;
        let pager = self.session.execute_iter(statement, ()).await.map_err(|source| Error::Scylla {
            context: CONTEXT.into(),
            retryable: pager_is_transient(&source),
            source: Box::new(source),
        })?;
        let mut stream = pager
            .rows_stream::<(String, i32, i64, i64, Option<i64>, Option<String>, Option<i64>)>()
            .map_err(scylla_err(CONTEXT, false))?;
        let mut out = Vec::new();
        while let Some((topic, partition, replay_offset, next_offset, max_event_time, metrics, plan_version)) =
            stream.try_next().await.map_err(scylla_err(CONTEXT, true))?
        {
            let columns = (replay_offset, next_offset, max_event_time, metrics, plan_version);
            out.push((topic, crate::stored_checkpoint(partition, columns)?));
        }
        out.sort_by(|(a, x), (b, y)| (a, x.partition).cmp(&(b, y.partition)));
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
            // Only a count's or sum's value can stand for its state, and those are numbers.
            let value = match columns.next().flatten() {
                Some(CqlValue::BigInt(n)) => KeyVal::Int(n),
                Some(CqlValue::Double(x)) => KeyVal::Float(x.to_bits()),
                _ => KeyVal::Null,
            };
            let bytes = match columns.next().flatten() {
                Some(CqlValue::Blob(b)) => Some(b),
                _ => None,
            };
            let state = stored_state(a, &value, bytes.as_deref())
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

fn timestamp(v: Option<CqlValue>) -> Option<i64> {
    match v {
        Some(CqlValue::Timestamp(t)) => Some(t.0),
        Some(CqlValue::BigInt(i)) => Some(i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::aggregate::AggState;

    fn range(from: Option<i64>, to: Option<i64>) -> RowFilter {
        RowFilter { tier: 0, from_ms: from, to_ms: to, equals: vec![], partition: None }
    }

    /// Rows as a read returns them (series, window start, source partition,
    /// included_through, then each aggregate's value and state) in each
    /// layout: a count's state unset (the current one), beside its value
    /// (the older one), and an older state left beside a newer value (a
    /// row of the older layout rewritten: the unset state column kept it).
    #[test]
    fn a_count_reads_from_its_value_whatever_its_state_column_holds() {
        use crate::schema::encode_state;
        let compiled = dsl::compile_str(
            "t.stream",
            "version 1\n\nsource s from kafka \"t\" format json {\n  ts: timestamp event_time,\n  k: string,\n  n: int,\n}\n\n\
             metric m from s\n  group by k\n  compute count() as c, max(n) as top\n  window 1m\n",
        );
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("checked above");
        let filter = range(None, None);
        let reader = RowReader { m: &plan.metrics[0], filter: &filter, table: "m_1m".into() };
        let top = AggState::Extreme { value: Some(KeyVal::Int(5)), is_max: true };
        let stored = |count_state: Option<AggState>| scylla::value::Row {
            columns: vec![
                Some(CqlValue::Text(series_id(&[KeyVal::Str("gmail".into())]))),
                Some(CqlValue::Timestamp(CqlTimestamp(60_000))),
                Some(CqlValue::Int(2)),
                None,
                Some(CqlValue::BigInt(9)),
                count_state.map(|s| CqlValue::Blob(encode_state(&s))),
                Some(CqlValue::BigInt(5)),
                Some(CqlValue::Blob(encode_state(&top))),
            ],
        };
        for count_state in [None, Some(AggState::Count { n: 9 }), Some(AggState::Count { n: 3 })] {
            let row = reader.decode(stored(count_state.clone())).expect("decodes").expect("not filtered out");
            let finished: Vec<KeyVal> = row.states.iter().map(AggState::finish).collect();
            assert_eq!(finished, [KeyVal::Int(9), KeyVal::Int(5)], "count state {count_state:?}");
            assert_eq!((row.window_start, row.partition, row.included_through), (60_000, 2, None));
        }
        // A maximum has no value to fall back on: without its state the row is an error.
        let mut broken = stored(None);
        broken.columns[7] = None;
        assert!(reader.decode(broken).is_err());
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
