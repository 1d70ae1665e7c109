//! Merged reads: the one implementation behind `streamctl query` and the
//! HTTP query API.
//!
//! Rows of every source partition (and of key values left out of a
//! `group_by` subset) are merged by merging aggregate *states*, so distinct
//! counts and percentiles over several partitions or a coarser grouping are
//! right, not sums or averages of finished numbers. Derived columns are then
//! computed from the merged aggregates.
//!
//! A tier's rows are read as they stand now, not as they were last written:
//! [`read_current`] merges into each stored tier row the base rows of its
//! tier window that it does not include yet, so an answer is the same
//! whether the writer rewrote tier rows at every base window close or held
//! them back.

use crate::schema::series_id;
use crate::{Error, Result, RowFilter, Store};
use dsl::plan::{MetricPlan, Scalar};
use engine::aggregate::AggState;
use engine::eval::{eval, RegexCache, Scope};
use engine::value::{format_timestamp, parse_timestamp, Val};
use engine::{KeyVal, Row};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Metric name.
    pub metric: String,
    /// Tier name (`1m`, `1h`); the finest when `None`.
    pub tier: Option<String>,
    /// Window start at or after, ms.
    pub from_ms: Option<i64>,
    /// Window start before, ms.
    pub to_ms: Option<i64>,
    /// `column = value` conditions on group-by columns, values as text.
    pub filters: Vec<(String, String)>,
    /// Keep only these group-by columns (merging over the others); all when `None`.
    pub group_by: Option<Vec<String>>,
}

/// Merged rows: one per window and (kept) key combination.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueryResult {
    /// Metric name.
    pub metric: String,
    /// Tier name.
    pub tier: String,
    /// `window_start`, then key columns, then aggregates and derived columns.
    pub columns: Vec<String>,
    /// Values, parallel to `columns`; `window_start` as RFC 3339 text.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// Runs `query` against `store`.
///
/// # Errors
/// If the metric, tier or a column is unknown, a filter value does not
/// parse, or the store fails.
pub fn run(store: &dyn Store, plan: &dsl::Plan, query: &Query) -> Result<QueryResult> {
    let (m, metric) = plan.metrics.iter().enumerate().find(|(_, m)| m.name == query.metric).ok_or_else(|| {
        Error::BadQuery(unknown("metric", &query.metric, plan.metrics.iter().map(|m| m.name.as_str())))
    })?;
    let tier = match &query.tier {
        None => 0,
        Some(name) => metric
            .tiers
            .iter()
            .position(|t| &t.name == name)
            .ok_or_else(|| Error::BadQuery(unknown("tier", name, metric.tiers.iter().map(|t| t.name.as_str()))))?,
    };
    let key_index = |name: &str| {
        metric.keys.iter().position(|k| k.name == name).ok_or_else(|| {
            Error::BadQuery(unknown("group-by column", name, metric.keys.iter().map(|k| k.name.as_str())))
        })
    };
    let mut equals = Vec::new();
    for (column, text) in &query.filters {
        let k = key_index(column)?;
        equals.push((
            k,
            parse_key(text, metric.keys[k].ty.scalar).ok_or_else(|| {
                Error::BadQuery(format!(
                    "`{text}` is not a valid {} for column `{column}`",
                    metric.keys[k].ty.scalar.name()
                ))
            })?,
        ));
    }
    let kept: Vec<usize> = match &query.group_by {
        None => (0..metric.keys.len()).collect(),
        Some(names) => names.iter().map(|n| key_index(n)).collect::<Result<_>>()?,
    };
    let filter = RowFilter { tier, from_ms: query.from_ms, to_ms: query.to_ms, equals, partition: None };
    let rows = read_current(store, plan, m, &filter)?;

    let mut merged: BTreeMap<(i64, Vec<KeyVal>), Vec<AggState>> = BTreeMap::new();
    for row in rows {
        let key: Vec<KeyVal> = kept.iter().map(|&k| row.keys[k].clone()).collect();
        match merged.get_mut(&(row.window_start, key.clone())) {
            Some(states) => {
                for (mine, theirs) in states.iter_mut().zip(row.states.iter()) {
                    mine.merge(theirs);
                }
            }
            None => {
                merged.insert((row.window_start, key), row.states.to_vec());
            }
        }
    }

    let mut columns = vec!["window_start".to_string()];
    columns.extend(kept.iter().map(|&k| metric.keys[k].name.clone()));
    columns.extend(metric.aggregates.iter().map(|a| a.name.clone()));
    columns.extend(metric.derived.iter().map(|d| d.name.clone()));
    let regexes = RegexCache::default();
    let rows = merged
        .into_iter()
        .map(|((start, keys), states)| {
            let finished: Vec<KeyVal> = states.iter().map(AggState::finish).collect();
            let mut out = vec![serde_json::Value::String(format_timestamp(start))];
            out.extend(keys.iter().map(KeyVal::to_json));
            out.extend(finished.iter().map(KeyVal::to_json));
            out.extend(metric.derived.iter().map(|d| derived_value(metric, &finished, &d.expr, &regexes)));
            out
        })
        .collect();
    Ok(QueryResult { metric: metric.name.clone(), tier: metric.tiers[tier].name.clone(), columns, rows })
}

/// Rows of metric `metric` matching `filter`, in (window start, series,
/// source partition) order, as [`Store::read`] gives them, except that a
/// tier's rows are brought up to date: each tier window's row of a series
/// and source partition is its stored row merged with the base rows of that
/// series, partition and tier window that end after the row's
/// `included_through` (in window order, as the engine merges them), and a
/// tier window with base rows but no stored row yet gets one made of them.
/// The answer is thus the same whether the writer rewrote its tier rows at
/// every base window close or held them back (`tier_rows_every`).
///
/// Base rows are read only from the first base window that some source
/// partition's tier rows may not include yet, by the stored checkpoints
/// (see [`Store::all_checkpoints`]): the base windows closed since its
/// checkpoint's event time, a few minutes' worth while tier rows are held
/// back. All in range are read when the store cannot list checkpoints, has
/// none, or holds rows of a partition without one. This takes every
/// partition with rows to have a checkpoint once any has (the consumer,
/// `streamctl run` and backfills write one with their rows).
///
/// A stored tier row without `included_through` (none is written so) is
/// taken as it is. Base rows already deleted by their retention cannot be
/// merged: a tier row held back for longer than its metric's base retention
/// would then be answered as stored.
///
/// # Errors
/// As [`Store::read`].
pub fn read_current(store: &dyn Store, plan: &dsl::Plan, metric: usize, filter: &RowFilter) -> Result<Vec<Row>> {
    let rows = store.read(plan, metric, filter)?;
    let Some(m) = plan.metrics.get(metric) else { return Ok(rows) };
    if filter.tier == 0 {
        return Ok(rows);
    }
    let Some(tier) = m.tiers.get(filter.tier) else { return Ok(rows) };
    let width = i64::try_from(tier.width_ms).unwrap_or(i64::MAX).max(1);
    let base_width = i64::try_from(m.window_ms).unwrap_or(i64::MAX);
    let tier_start = |t: i64| t.div_euclid(width).saturating_mul(width);
    // Tier windows starting in [from, to) hold the base windows starting
    // from the first tier boundary at or after `from` to the end of the
    // tier window that `to - 1` is in.
    let base = RowFilter {
        tier: 0,
        from_ms: filter.from_ms.map(|from| tier_start(from.saturating_sub(1)).saturating_add(width)),
        to_ms: filter.to_ms.map(|to| tier_start(to.saturating_sub(1)).saturating_add(width)),
        equals: filter.equals.clone(),
        partition: filter.partition,
    };
    if matches!((base.from_ms, base.to_ms), (Some(from), Some(to)) if to <= from) {
        return Ok(rows);
    }
    let base_rows = match unmerged_from(store, m)? {
        Some((unmerged, partitions)) => {
            let from_ms = Some(base.from_ms.map_or(unmerged, |from| from.max(unmerged)));
            let bounded = RowFilter { from_ms, ..base.clone() };
            let base_rows = store.read(plan, metric, &bounded)?;
            // The checkpoints say nothing of a partition without one.
            if rows.iter().chain(&base_rows).all(|row| partitions.contains(&row.partition)) {
                base_rows
            } else {
                store.read(plan, metric, &base)?
            }
        }
        None => store.read(plan, metric, &base)?,
    };
    // Each row with, once a base row merges into it, its states as they grow.
    let mut current: BTreeMap<RowId, (Row, Option<Vec<AggState>>)> =
        rows.into_iter().map(|row| ((row.window_start, series_id(&row.keys), row.partition), (row, None))).collect();
    for row in base_rows {
        let start = tier_start(row.window_start);
        if filter.from_ms.is_some_and(|from| start < from) || filter.to_ms.is_some_and(|to| start >= to) {
            continue;
        }
        let end = row.window_start.saturating_add(base_width);
        match current.entry((start, series_id(&row.keys), row.partition)) {
            Entry::Occupied(mut stored) => {
                let (stored, merged) = stored.get_mut();
                if stored.included_through.is_none_or(|through| end <= through) {
                    continue; // Already in it (or a row that does not say).
                }
                let states = merged.get_or_insert_with(|| stored.states.to_vec());
                states.iter_mut().zip(row.states.iter()).for_each(|(mine, theirs)| mine.merge(theirs));
                stored.included_through = Some(end);
            }
            Entry::Vacant(missing) => {
                let row = Row {
                    metric: Arc::clone(&row.metric),
                    tier: filter.tier,
                    window_start: start,
                    partition: row.partition,
                    keys: row.keys,
                    states: row.states,
                    included_through: Some(end),
                };
                missing.insert((row, None));
            }
        }
    }
    Ok(current
        .into_values()
        .map(|(mut row, merged)| {
            if let Some(states) = merged {
                row.states = states.into();
            }
            row
        })
        .collect())
}

/// From which window start base rows of `metric` may not be in their tier
/// rows yet, by the stored checkpoints, and the partitions that have a
/// checkpoint. A checkpoint's event time is one at which its partition's
/// tier rows were all written (at every base window close, or, while rows
/// are held back, at the last moment none was: the checkpoint records that
/// moment's event time), in its transaction or before: every base window
/// its watermark had closed then is in them. `None` when the store cannot
/// list its checkpoints or has none.
fn unmerged_from(store: &dyn Store, metric: &MetricPlan) -> Result<Option<(i64, BTreeSet<i32>)>> {
    let checkpoints = match store.all_checkpoints() {
        Ok(checkpoints) => checkpoints,
        Err(Error::Unsupported(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let lateness = i64::try_from(metric.lateness_ms).unwrap_or(i64::MAX);
    let width = i64::try_from(metric.window_ms).unwrap_or(i64::MAX);
    let mut from = i64::MAX;
    let mut partitions = BTreeSet::new();
    for (_, checkpoint) in &checkpoints {
        // Without an event time a partition has closed no window.
        let Some(max_event_time) = checkpoint.max_event_time else { continue };
        // Base windows ending at or before the watermark were closed.
        let watermark = max_event_time.saturating_sub(lateness);
        from = from.min(watermark.saturating_sub(width).saturating_add(1));
        partitions.insert(checkpoint.partition);
    }
    Ok((!partitions.is_empty()).then_some((from, partitions)))
}

/// A row's place in [`Store::read`]'s order: window start, series, source partition.
type RowId = (i64, String, i32);

/// Evaluates a derived column over finished aggregate values.
pub fn derived_value(
    metric: &MetricPlan,
    finished: &[KeyVal],
    expr: &dsl::plan::Expr,
    regexes: &RegexCache,
) -> serde_json::Value {
    let lookup = |name: &str| -> Val<'_> {
        metric.aggregates.iter().position(|a| a.name == name).map_or(Val::Null, |i| finished[i].as_val())
    };
    let scope = Scope::Columns { lookup: &lookup };
    match eval(expr, &scope, regexes) {
        Val::Null => serde_json::Value::Null,
        Val::Bool(b) => b.into(),
        Val::Int(i) | Val::Dur(i) => i.into(),
        Val::Float(f) => serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
        Val::Str(s) => s.to_string().into(),
        Val::Ts(t) => format_timestamp(t).into(),
    }
}

/// Parses a filter value for a column of type `scalar`.
pub fn parse_key(text: &str, scalar: Scalar) -> Option<KeyVal> {
    if text == "null" {
        return Some(KeyVal::Null);
    }
    match scalar {
        Scalar::String => Some(KeyVal::Str(text.into())),
        Scalar::Int | Scalar::Duration => text.parse().ok().map(KeyVal::Int),
        Scalar::Float => text.parse::<f64>().ok().map(|f| KeyVal::Float(f.to_bits())),
        Scalar::Bool => text.parse().ok().map(KeyVal::Bool),
        Scalar::Timestamp => parse_timestamp(text).map(KeyVal::Ts),
    }
}

fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    format!("unknown {what} `{name}`; known: {}", known.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::WriteBatch;
    use engine::Checkpoint;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const T0: i64 = 1_717_408_800_000; // 2024-06-03T10:00:00Z

    fn plan() -> dsl::Plan {
        let text = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time, k: string }\n\
                    metric m from s\n  group by k\n  compute count() as n\n  window 1m\n  rollup 1h keep 90d\n";
        let compiled = dsl::compile_str("m.stream", text);
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        compiled.plan.expect("checked above")
    }

    /// A row of `count() = n` for key `k`.
    fn row(plan: &dsl::Plan, tier: usize, start: i64, partition: i32, k: &str, n: i64, through: Option<i64>) -> Row {
        let metric = &plan.metrics[0];
        let state = AggState::from_value(&metric.aggregates[0], &KeyVal::Int(n)).expect("a count");
        Row {
            metric: Arc::clone(metric),
            tier,
            window_start: start,
            partition,
            keys: vec![KeyVal::Str(k.into())].into(),
            states: vec![state].into(),
            included_through: through,
        }
    }

    /// (window start, partition, key, count, included_through) of each row
    /// read, times from `T0`, in the order read: window, series, partition.
    fn read(store: &SqliteStore, plan: &dsl::Plan, filter: &RowFilter) -> Vec<(i64, i32, String, KeyVal, Option<i64>)> {
        read_current(store, plan, 0, filter)
            .expect("read")
            .iter()
            .map(|r| {
                let key = match &r.keys[0] {
                    KeyVal::Str(s) => s.to_string(),
                    other => format!("{other:?}"),
                };
                (r.window_start - T0, r.partition, key, r.states[0].finish(), r.included_through.map(|t| t - T0))
            })
            .collect()
    }

    #[test]
    fn a_tier_row_is_read_with_the_base_rows_it_does_not_include_yet() {
        let plan = plan();
        let mut store = SqliteStore::open(":memory:").expect("store");
        store.setup(&plan).expect("setup");
        let rows = [
            // Partition 0, `a`: the 10:00 row holds 10:00 and 10:01, not 10:02.
            row(&plan, 0, T0, 0, "a", 1, None),
            row(&plan, 0, T0 + MINUTE, 0, "a", 2, None),
            row(&plan, 0, T0 + 2 * MINUTE, 0, "a", 3, None),
            row(&plan, 1, T0, 0, "a", 3, Some(T0 + 2 * MINUTE)),
            // Partition 1, `a`: no tier row written yet.
            row(&plan, 0, T0 + 5 * MINUTE, 1, "a", 4, None),
            // A tier row that does not say what it includes is taken as it is.
            row(&plan, 0, T0 + 30 * MINUTE, 0, "b", 5, None),
            row(&plan, 1, T0, 0, "b", 10, None),
            // The next hour, only base rows.
            row(&plan, 0, T0 + HOUR, 0, "a", 7, None),
            row(&plan, 0, T0 + HOUR + MINUTE, 1, "a", 8, None),
        ];
        let batch = WriteBatch { topic: "t", rows: &rows, dead_letters: &[], checkpoints: &[], owners: &[] };
        store.write(&batch).expect("write");
        let filter = |from_ms, to_ms, partition| RowFilter { tier: 1, from_ms, to_ms, equals: vec![], partition };

        let all = vec![
            (0, 0, "a".to_string(), KeyVal::Int(6), Some(3 * MINUTE)),
            (0, 1, "a".to_string(), KeyVal::Int(4), Some(6 * MINUTE)),
            (0, 0, "b".to_string(), KeyVal::Int(10), None),
            (HOUR, 0, "a".to_string(), KeyVal::Int(7), Some(HOUR + MINUTE)),
            (HOUR, 1, "a".to_string(), KeyVal::Int(8), Some(HOUR + 2 * MINUTE)),
        ];
        assert_eq!(read(&store, &plan, &filter(None, None, None)), all);
        // Ranges select tier windows by their start, whatever base windows lie in the range.
        assert_eq!(read(&store, &plan, &filter(Some(T0 + 30 * MINUTE), None, None)), all[3..]);
        assert_eq!(read(&store, &plan, &filter(Some(T0), Some(T0 + 1), None)), all[..3]);
        assert_eq!(read(&store, &plan, &filter(None, Some(T0 + HOUR), Some(1))), all[1..2]);
        assert!(read(&store, &plan, &filter(Some(T0 + 1), Some(T0 + HOUR), None)).is_empty());
        // The finest tier is read as stored.
        assert_eq!(
            read_current(&store, &plan, 0, &RowFilter { tier: 0, ..filter(None, None, None) }).expect("read").len(),
            7
        );

        // Checkpoints bound how far back base rows are read: a partition
        // whose watermark is 11:01:30 had written tier rows including every
        // base window ending by then. With a checkpoint of partition 0
        // only, partition 1, whose rows are seen, is not bounded:
        // everything is read.
        let lateness = plan.metrics[0].lateness_ms as i64;
        let checkpoint = |partition| Checkpoint {
            partition,
            replay_offset: 0,
            next_offset: 1,
            max_event_time: Some(T0 + HOUR + 90_000 + lateness),
            metrics: None,
            plan_version: None,
        };
        let write_checkpoint = |store: &mut SqliteStore, partition| {
            let checkpoints = [checkpoint(partition)];
            let batch = WriteBatch { topic: "t", rows: &[], dead_letters: &[], checkpoints: &checkpoints, owners: &[] };
            store.write(&batch).expect("write");
        };
        write_checkpoint(&mut store, 0);
        assert_eq!(read(&store, &plan, &filter(None, None, None)), all);
        // With both, only base windows ending after 11:01:30 are read: the
        // 10:00 rows and the missing 11:00 row of partition 0 (which a
        // writer could not leave behind with such checkpoints) are answered
        // as stored.
        write_checkpoint(&mut store, 1);
        let bounded = vec![(0, 0, "a".to_string(), KeyVal::Int(3), Some(2 * MINUTE)), all[2].clone(), all[4].clone()];
        assert_eq!(read(&store, &plan, &filter(None, None, None)), bounded);
    }
}
