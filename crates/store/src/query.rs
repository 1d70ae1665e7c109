//! Merged reads: the one implementation behind `streamctl query` and the
//! HTTP query API.
//!
//! Rows of every source partition (and of key values left out of a
//! `group_by` subset) are merged by merging aggregate *states*, so distinct
//! counts and percentiles over several partitions or a coarser grouping are
//! right, not sums or averages of finished numbers. Derived columns are then
//! computed from the merged aggregates.

use crate::{Error, Result, RowFilter, Store};
use dsl::plan::{MetricPlan, Scalar};
use engine::aggregate::AggState;
use engine::eval::{eval, RegexCache, Scope};
use engine::value::{format_timestamp, parse_timestamp, Val};
use engine::KeyVal;
use std::collections::BTreeMap;

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
    let rows = store.read(plan, m, &filter)?;

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
