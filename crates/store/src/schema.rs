//! The logical table layout of a plan, shared by every backend.
//!
//! One table per metric and tier, named `<table>_<tier>` (`delivery_by_ip_1m`,
//! `delivery_by_ip_1h`). Columns: `series` (the canonical JSON of the key
//! values, so null keys upsert correctly), one column per group-by key,
//! `window_start` (ms), `source_partition`, one value column per aggregate
//! plus `<aggregate>__state` holding its mergeable state, and
//! `included_through` for tier rows.

use dsl::plan::{MetricPlan, Scalar};
use engine::aggregate::AggState;
use engine::KeyVal;

/// A column of a metric table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Logical type.
    pub kind: ColumnKind,
}

/// Logical column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Text.
    Text,
    /// 64-bit integer.
    Int,
    /// Double.
    Float,
    /// Boolean.
    Bool,
    /// Milliseconds since the epoch.
    Timestamp,
    /// Serialised aggregate state.
    State,
}

impl ColumnKind {
    fn of(scalar: Scalar) -> Self {
        match scalar {
            Scalar::String => ColumnKind::Text,
            Scalar::Int | Scalar::Duration => ColumnKind::Int,
            Scalar::Float => ColumnKind::Float,
            Scalar::Bool => ColumnKind::Bool,
            Scalar::Timestamp => ColumnKind::Timestamp,
        }
    }
}

/// The name of the table of `metric`'s tier `tier`.
pub fn table_name(metric: &MetricPlan, tier: usize) -> String {
    format!("{}_{}", metric.table, metric.tiers[tier].name)
}

/// Suffix of state columns.
pub const STATE_SUFFIX: &str = "__state";

/// Key columns then aggregate value and state columns, in plan order.
pub fn metric_columns(metric: &MetricPlan) -> Vec<Column> {
    let mut columns: Vec<Column> =
        metric.keys.iter().map(|k| Column { name: k.name.clone(), kind: ColumnKind::of(k.ty.scalar) }).collect();
    for a in &metric.aggregates {
        columns.push(Column { name: a.name.clone(), kind: ColumnKind::of(a.ty.scalar) });
        columns.push(Column { name: format!("{}{STATE_SUFFIX}", a.name), kind: ColumnKind::State });
    }
    columns
}

/// The canonical text of a series key: the same for equal keys whatever the
/// backend, usable as a primary-key column where keys may be null.
pub fn series_id(keys: &[KeyVal]) -> String {
    serde_json::to_string(keys).unwrap_or_default()
}

/// Appends [`series_id`] of `keys` to `out` (the same JSON, for writers that
/// reuse one buffer).
pub fn write_series_id(out: &mut Vec<u8>, keys: &[KeyVal]) {
    json_into(out, keys);
}

/// The stored form of an aggregate state (JSON; empty if it cannot be encoded).
pub fn encode_state(state: &AggState) -> Vec<u8> {
    let mut out = Vec::new();
    write_state(&mut out, state);
    out
}

/// Appends the stored form of `state` to `out`, as [`encode_state`].
pub fn write_state(out: &mut Vec<u8>, state: &AggState) {
    json_into(out, state);
}

/// Appends `value` as JSON to `out`, or nothing if it cannot be encoded
/// (states and keys always can: no maps with non-string keys).
fn json_into<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let len = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(len);
    }
}

/// Quotes an identifier for SQL and CQL.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffered_series_id_is_the_series_id() {
        let keys = [KeyVal::Str("a\"b".into()), KeyVal::Null, KeyVal::Int(-3), KeyVal::Float(1.5f64.to_bits())];
        let mut buffer = Vec::new();
        write_series_id(&mut buffer, &keys);
        assert_eq!(String::from_utf8(buffer).expect("JSON is UTF-8"), series_id(&keys));
    }
}
