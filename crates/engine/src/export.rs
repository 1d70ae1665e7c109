//! `export prometheus`: which Prometheus series a metric exports, under
//! which names, and (in [`live`]) what they hold while windows open and close.
//!
//! Naming is defined here once, because three things must agree on it: the
//! daemon serving `/metrics`, and the alert rules and dashboards that
//! `streamctl` generates. For metric `M`, column `C`:
//!
//! * `count`, `count_if` and `sum` columns are **counters**
//!   `stream_M_C_total`: everything the instance counted for the key, over
//!   every window, so `increase()` and `rate()` work and instances add up;
//! * every other numeric column (`avg`, quantiles, `distinct`, numeric
//!   `min`/`max`/`first`/`last`, and derived columns) is a **gauge**
//!   `stream_M_C`: its value over the key's newest open window;
//! * string-valued columns are not exported (a sample is a number);
//! * each group-by column is a label of the same name; a null key value is
//!   the empty label value, which Prometheus treats as an absent label.

pub mod live;

use crate::value::{format_timestamp, KeyVal};
use dsl::plan::{AggregateFn, MetricPlan, Scalar, Type};

/// Prefix of every exported series.
pub const PREFIX: &str = "stream_";

/// How a column is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// Monotonic total over all windows.
    Counter,
    /// The current window's value.
    Gauge,
}

/// Where an exported column's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnSource {
    /// Index into [`MetricPlan::aggregates`].
    Aggregate(usize),
    /// Index into [`MetricPlan::derived`].
    Derived(usize),
}

/// One exported column of a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedColumn {
    /// The column name in the pipeline.
    pub column: String,
    /// The Prometheus series name.
    pub series: String,
    /// Counter or gauge.
    pub kind: SeriesKind,
    /// Which aggregate or derived column.
    pub source: ColumnSource,
}

/// The series name of column `column` of metric `metric`.
pub fn series_name(metric: &str, column: &str, kind: SeriesKind) -> String {
    match kind {
        SeriesKind::Counter => format!("{PREFIX}{metric}_{column}_total"),
        SeriesKind::Gauge => format!("{PREFIX}{metric}_{column}"),
    }
}

/// Whether values of this type can be a sample (numbers, booleans as 0/1,
/// timestamps and durations in milliseconds).
fn is_numeric(ty: Type) -> bool {
    ty.scalar != Scalar::String
}

/// The kind a column of `function` exports as, if it exports at all.
fn aggregate_kind(function: AggregateFn, ty: Type) -> Option<SeriesKind> {
    match function {
        AggregateFn::Count | AggregateFn::CountIf | AggregateFn::Sum => Some(SeriesKind::Counter),
        _ if is_numeric(ty) => Some(SeriesKind::Gauge),
        _ => None,
    }
}

/// The exported columns of `metric`, aggregates first, in plan order; empty
/// when the metric has no `export prometheus`.
pub fn exported_columns(metric: &MetricPlan) -> Vec<ExportedColumn> {
    if !metric.export_prometheus {
        return Vec::new();
    }
    let aggregates = metric.aggregates.iter().enumerate().filter_map(|(i, a)| {
        let kind = aggregate_kind(a.function, a.ty)?;
        Some((a.name.as_str(), kind, ColumnSource::Aggregate(i)))
    });
    let derived = metric
        .derived
        .iter()
        .enumerate()
        .filter(|(_, d)| is_numeric(d.ty))
        .map(|(i, d)| (d.name.as_str(), SeriesKind::Gauge, ColumnSource::Derived(i)));
    aggregates
        .chain(derived)
        .map(|(column, kind, source)| ExportedColumn {
            column: column.to_string(),
            series: series_name(&metric.name, column, kind),
            kind,
            source,
        })
        .collect()
}

/// The label names of `metric`'s series: its group-by columns.
pub fn label_names(metric: &MetricPlan) -> Vec<&str> {
    metric.keys.iter().map(|k| k.name.as_str()).collect()
}

/// A key value as a label value: text as is, numbers in decimal,
/// timestamps in RFC 3339, null as the empty string.
pub fn label_value(value: &KeyVal) -> String {
    match value {
        KeyVal::Null => String::new(),
        KeyVal::Bool(b) => b.to_string(),
        KeyVal::Int(i) => i.to_string(),
        KeyVal::Float(bits) => f64::from_bits(*bits).to_string(),
        KeyVal::Str(s) => s.to_string(),
        KeyVal::Ts(t) => format_timestamp(*t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(text: &str) -> MetricPlan {
        let source =
            "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time, e: string, n: int? }\n";
        let compiled = dsl::compile_str("m.stream", &format!("{source}{text}"));
        assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
        std::sync::Arc::unwrap_or_clone(compiled.plan.expect("plan").metrics.remove(0))
    }

    #[test]
    fn counts_and_sums_are_counters_the_rest_gauges_and_strings_stay_out() {
        let m = metric(
            "metric m from s group by e compute count() as n_all, sum(n) as total, p99(n) as p99, \
             max(e) as last_e, n_all / total as ratio window 1m export prometheus\n",
        );
        let got: Vec<(String, SeriesKind)> = exported_columns(&m).into_iter().map(|c| (c.series, c.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("stream_m_n_all_total".to_string(), SeriesKind::Counter),
                ("stream_m_total_total".to_string(), SeriesKind::Counter),
                ("stream_m_p99".to_string(), SeriesKind::Gauge),
                ("stream_m_ratio".to_string(), SeriesKind::Gauge),
            ]
        );
        assert_eq!(label_names(&m), vec!["e"]);
    }

    #[test]
    fn metrics_without_export_export_nothing() {
        let m = metric("metric m from s compute count() as n_all window 1m\n");
        assert!(exported_columns(&m).is_empty());
    }

    #[test]
    fn label_values_are_readable_and_null_is_empty() {
        assert_eq!(label_value(&KeyVal::Null), "");
        assert_eq!(label_value(&KeyVal::Int(-3)), "-3");
        assert_eq!(label_value(&KeyVal::Str("a\"b".into())), "a\"b");
        assert_eq!(label_value(&KeyVal::Ts(0)), "1970-01-01T00:00:00.000Z");
    }
}
