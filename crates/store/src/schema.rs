//! The logical table layout of a plan, shared by every backend.
//!
//! One table per metric and tier, named `<table>_<tier>` (`delivery_by_ip_1m`,
//! `delivery_by_ip_1h`). Columns: `series` (the canonical JSON of the key
//! values, so null keys upsert correctly), one column per group-by key,
//! `window_start` (ms), `source_partition`, one value column per aggregate
//! plus `<aggregate>__state` holding its mergeable state (empty for a count
//! or sum whose value is the whole state: see [`stored_state`]), and
//! `included_through` for tier rows.

use dsl::plan::{AggregatePlan, MetricPlan, Scalar};
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

/// The state of aggregate `plan` in a stored row, from its value column
/// (`value`, null when absent) and its state column (`state`, `None` when
/// null or absent).
///
/// A count or sum is written as its value alone; other aggregates, and a
/// count or sum whose value is not its whole state (a saturated count, a
/// sum beyond its column), with their state beside it; rows of earlier
/// versions have both. The value decides: when it is the whole state
/// ([`AggState::from_value`]) the state is rebuilt from it and the state
/// column is not read, so a state an older write left there (Scylla keeps
/// it when a later write leaves the column unset) cannot override a newer
/// value; otherwise the state column holds the state. Shared by every
/// backend's read path.
///
/// # Errors
/// When the state is needed and the column is empty or not a valid state.
pub fn stored_state(plan: &AggregatePlan, value: &KeyVal, state: Option<&[u8]>) -> Result<AggState, serde_json::Error> {
    if let Some(rebuilt) = AggState::from_value(plan, value) {
        return Ok(rebuilt);
    }
    match state {
        Some(bytes) => serde_json::from_slice(bytes),
        None => Err(serde::de::Error::custom(format!("no state, and `{}` does not hold one ({value:?})", plan.name))),
    }
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
    use dsl::plan::{AggregateFn, Type};

    fn aggregate(function: AggregateFn) -> AggregatePlan {
        AggregatePlan { name: "a".into(), function, arg: None, quantile: None, ty: Type::of(Scalar::Int) }
    }

    #[test]
    fn a_value_that_is_the_whole_state_decides_over_the_state_column() {
        let count = aggregate(AggregateFn::Count);
        let stale = encode_state(&AggState::Count { n: 3 });
        // New layout (no state), the older one (both), and a state an
        // older write left beside a newer value: the value decides.
        for state in [None, Some(encode_state(&AggState::Count { n: 9 })), Some(stale.clone())] {
            let read = stored_state(&count, &KeyVal::Int(9), state.as_deref()).expect("a state");
            assert_eq!(read.finish(), KeyVal::Int(9), "{state:?}");
        }
        // A value that is not the whole state: the state column decides.
        let big = AggState::Count { n: u64::MAX };
        let read = stored_state(&count, &big.finish(), Some(&encode_state(&big))).expect("a state");
        assert!(matches!(read, AggState::Count { n: u64::MAX }), "{read:?}");
        let sum = aggregate(AggregateFn::Sum);
        let wide = AggState::SumInt { sum: i128::from(i64::MAX) * 2 };
        assert_eq!(wide.finish(), KeyVal::Null);
        let read = stored_state(&sum, &KeyVal::Null, Some(&encode_state(&wide))).expect("a state");
        assert_eq!(encode_state(&read), encode_state(&wide));
        // A sketch always reads its state.
        let max = aggregate(AggregateFn::Max);
        let top = AggState::Extreme { value: Some(KeyVal::Int(5)), is_max: true };
        let read = stored_state(&max, &KeyVal::Int(4), Some(&encode_state(&top))).expect("a state");
        assert_eq!(read.finish(), KeyVal::Int(5));
        // Neither: an error naming the column's aggregate, never a guess.
        let error = stored_state(&sum, &KeyVal::Null, None).expect_err("nothing to read").to_string();
        assert!(error.contains("`a`"), "{error}");
        assert!(stored_state(&max, &KeyVal::Int(4), Some(b"{oops")).is_err());
    }

    #[test]
    fn the_buffered_series_id_is_the_series_id() {
        let keys = [KeyVal::Str("a\"b".into()), KeyVal::Null, KeyVal::Int(-3), KeyVal::Float(1.5f64.to_bits())];
        let mut buffer = Vec::new();
        write_series_id(&mut buffer, &keys);
        assert_eq!(String::from_utf8(buffer).expect("JSON is UTF-8"), series_id(&keys));
    }
}
