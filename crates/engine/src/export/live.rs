//! What the exported series hold while windows open and close.
//!
//! [`LiveExport`] is fed, at each flush, the open windows of every assigned
//! partition and the base-window rows emitted since the previous flush (the
//! final state of each window that closed). From those it keeps:
//!
//! * **counters** per key: for every (topic, partition, window, key) it
//!   remembers the highest count it has added, and adds only what goes
//!   beyond. A window's count only grows, so this adds every event exactly
//!   once — also when a partition is restored and replays a window it had
//!   already counted (the count climbs back to where it was and adds
//!   nothing), and when a partition leaves (nothing is subtracted). Counters
//!   are therefore monotonic whatever happens to partitions and plans;
//! * **gauges** per key: the finished value of the key's newest open window,
//!   merged across partitions (states merge; finished numbers would not);
//! * **bounds**: at most the metric's cardinality limit of keys get a series
//!   of their own; later keys are folded into the `__other__` series and
//!   counted. A key, its remembered windows and its series are forgotten
//!   [`STALE_MS`] (or the metric's lateness and two windows, if longer) after
//!   they were last seen, so memory follows the live keys.
//!
//! Metrics are identified by their hash, not their index, so a plan change
//! that keeps a metric keeps its counters, and a changed metric starts anew.
//! Pure and deterministic: the caller passes processing time.

use super::{exported_columns, label_value, ColumnSource, ExportedColumn, SeriesKind};
use crate::aggregate::AggState;
use crate::eval::{eval, RegexCache, Scope};
use crate::output::Row;
use crate::partition::Partition;
use crate::value::{KeyVal, Val, OTHER};
use crate::window::fill_shared_sketches;
use crate::CompiledPlan;
use dsl::plan::MetricPlan;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How long a key, a remembered window and a series outlive their last sighting.
pub const STALE_MS: i64 = 5 * 60_000;

/// Gauges are recomputed at most this often: merging sketches across
/// partitions costs more than counting.
pub const GAUGE_INTERVAL_MS: i64 = 1_000;

type Key = Arc<[KeyVal]>;

/// The live exported series of every exported metric.
#[derive(Debug, Default)]
pub struct LiveExport {
    /// By metric hash.
    metrics: BTreeMap<String, MetricExport>,
    gauges_at_ms: Option<i64>,
}

/// Where a key's contributions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Own,
    Other,
}

#[derive(Debug)]
struct KeyState {
    target: Target,
    seen_at_ms: i64,
}

#[derive(Debug)]
struct Series {
    /// Per exported column; counters accumulate, gauges hold the latest value.
    values: Vec<Option<f64>>,
    seen_at_ms: i64,
}

/// One window of one partition: per key, the counter values already added.
#[derive(Debug, Default)]
struct SeenWindow {
    keys: HashMap<Key, Vec<f64>>,
    seen_at_ms: i64,
}

#[derive(Debug)]
struct MetricExport {
    plan: MetricPlan,
    columns: Vec<ExportedColumn>,
    /// (topic, partition, window start) → what was added from it.
    windows: BTreeMap<(String, i32, i64), SeenWindow>,
    keys: HashMap<Key, KeyState>,
    series: HashMap<Key, Series>,
    own_series: usize,
    overflow_keys: u64,
    other_key: Key,
}

/// One sample: label pairs and value.
pub type Sample = (Vec<(String, String)>, f64);

/// One exported series family, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Series name.
    pub name: String,
    /// Counter or gauge.
    pub kind: SeriesKind,
    /// Help text.
    pub help: String,
    /// Samples, sorted by labels.
    pub samples: Vec<Sample>,
}

/// Per exported metric, how many series are served and how many keys overflowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSummary {
    /// Metric name.
    pub name: String,
    /// Series (keys) currently served, `__other__` included.
    pub series: usize,
    /// Keys folded into `__other__` since the metric was first exported.
    pub overflow_keys: u64,
}

/// A numeric sample value, if the value has one.
fn sample_value(value: &Val<'_>) -> Option<f64> {
    match value {
        Val::Bool(b) => Some(f64::from(u8::from(*b))),
        other => other.as_f64().filter(|f| f.is_finite()),
    }
}

/// The value a counter column adds: the count or sum of an aggregate state.
fn counter_value(state: &AggState) -> f64 {
    match state {
        AggState::Count { n } => *n as f64,
        AggState::SumInt { sum } => *sum as f64,
        AggState::SumFloat { sum } => *sum,
        _ => 0.0,
    }
}

impl MetricExport {
    fn new(plan: &MetricPlan) -> Self {
        MetricExport {
            columns: exported_columns(plan),
            plan: plan.clone(),
            windows: BTreeMap::new(),
            keys: HashMap::new(),
            series: HashMap::new(),
            own_series: 0,
            overflow_keys: 0,
            other_key: plan.keys.iter().map(|_| KeyVal::Str(OTHER.into())).collect(),
        }
    }

    fn stale_ms(&self) -> i64 {
        STALE_MS.max((self.plan.lateness_ms + 2 * self.plan.window_ms) as i64)
    }

    /// The series `key` contributes to, admitting it if new.
    fn target(&mut self, key: &[KeyVal], now_ms: i64) -> Target {
        if let Some(state) = self.keys.get_mut(key) {
            state.seen_at_ms = now_ms;
            return state.target;
        }
        // The engine's own overflow series is already `__other__`.
        let target = if *key == *self.other_key {
            Target::Other
        } else if self.own_series < self.plan.cardinality_limit as usize {
            self.own_series += 1;
            Target::Own
        } else {
            self.overflow_keys += 1;
            Target::Other
        };
        self.keys.insert(key.into(), KeyState { target, seen_at_ms: now_ms });
        target
    }

    fn series_mut(&mut self, key: &[KeyVal], target: Target, now_ms: i64) -> &mut Series {
        let exported: Key = match target {
            Target::Own => key.into(),
            Target::Other => self.other_key.clone(),
        };
        let width = self.columns.len();
        let series =
            self.series.entry(exported).or_insert_with(|| Series { values: vec![None; width], seen_at_ms: now_ms });
        series.seen_at_ms = now_ms;
        series
    }

    /// Adds what `states` (of `key` in one window of one partition) counted
    /// beyond what was already added from that window.
    fn observe(&mut self, at: (&str, i32, i64), key: &[KeyVal], states: &[AggState], now_ms: i64) {
        let window = self.windows.entry((at.0.to_string(), at.1, at.2)).or_default();
        window.seen_at_ms = now_ms;
        let counters: Vec<(usize, f64)> = self
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.kind == SeriesKind::Counter)
            .filter_map(|(i, c)| match c.source {
                ColumnSource::Aggregate(a) => states.get(a).map(|s| (i, counter_value(s))),
                ColumnSource::Derived(_) => None,
            })
            .collect();
        let seen = window.keys.entry(key.into()).or_insert_with(|| vec![0.0; counters.len()]);
        let mut deltas = Vec::with_capacity(counters.len());
        for ((column, value), already) in counters.iter().zip(seen.iter_mut()) {
            if *value > *already {
                deltas.push((*column, *value - *already));
                *already = *value;
            }
        }
        let target = self.target(key, now_ms);
        let series = self.series_mut(key, target, now_ms);
        for (column, delta) in deltas {
            *series.values[column].get_or_insert(0.0) += delta;
        }
    }

    /// Recomputes gauges from the newest open window of each key.
    fn update_gauges(&mut self, newest: HashMap<Key, (i64, Vec<AggState>)>, regexes: &RegexCache, now_ms: i64) {
        let gauges: Vec<usize> =
            self.columns.iter().enumerate().filter(|(_, c)| c.kind == SeriesKind::Gauge).map(|(i, _)| i).collect();
        if gauges.is_empty() {
            return;
        }
        for series in self.series.values_mut() {
            for &g in &gauges {
                series.values[g] = None;
            }
        }
        // Keys folded into `__other__` are merged into one state per window start.
        let mut merged: HashMap<Key, (i64, Vec<AggState>)> = HashMap::new();
        for (key, (start, states)) in newest {
            let exported = match self.target(&key, now_ms) {
                Target::Own => key,
                Target::Other => self.other_key.clone(),
            };
            match merged.get_mut(&exported) {
                Some((s, existing)) if *s == start => existing.iter_mut().zip(&states).for_each(|(a, b)| a.merge(b)),
                Some((s, existing)) if *s < start => *existing = states,
                Some(_) => {}
                None => {
                    merged.insert(exported, (start, states));
                }
            }
        }
        for (exported, (_, states)) in merged {
            let finished: Vec<KeyVal> = states.iter().map(AggState::finish).collect();
            let values: Vec<(usize, Option<f64>)> = gauges
                .iter()
                .map(|&g| {
                    let value = match self.columns[g].source {
                        ColumnSource::Aggregate(a) => finished.get(a).and_then(|v| sample_value(&v.as_val())),
                        ColumnSource::Derived(d) => {
                            let lookup = |name: &str| -> Val<'_> {
                                self.plan
                                    .aggregates
                                    .iter()
                                    .position(|a| a.name == name)
                                    .map_or(Val::Null, |i| finished[i].as_val())
                            };
                            sample_value(&eval(
                                &self.plan.derived[d].expr,
                                &Scope::Columns { lookup: &lookup },
                                regexes,
                            ))
                        }
                    };
                    (g, value)
                })
                .collect();
            let width = self.columns.len();
            let series =
                self.series.entry(exported).or_insert_with(|| Series { values: vec![None; width], seen_at_ms: now_ms });
            series.seen_at_ms = now_ms;
            for (g, value) in values {
                series.values[g] = value;
            }
        }
    }

    /// Forgets windows, keys and series not seen for a while.
    fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms - self.stale_ms();
        self.windows.retain(|_, w| w.seen_at_ms >= horizon);
        self.keys.retain(|_, k| k.seen_at_ms >= horizon);
        self.series.retain(|_, s| s.seen_at_ms >= horizon);
        self.own_series = self.keys.values().filter(|k| k.target == Target::Own).count();
    }
}

impl LiveExport {
    /// Nothing exported yet.
    pub fn new() -> Self {
        LiveExport::default()
    }

    /// Takes in the state after a flush: `rows` are the rows emitted since
    /// the previous call (each with its source topic and its own metric:
    /// rows of a metric `plan` does not export are ignored), `partitions`
    /// every assigned partition with its topic. Metrics of
    /// `plan` without `export prometheus` are ignored; exported metrics no
    /// longer in `plan` (by hash) are dropped.
    pub fn observe(
        &mut self,
        plan: &CompiledPlan,
        partitions: &[(&str, &Partition)],
        rows: &[(&str, &Row)],
        now_ms: i64,
    ) {
        let exported: Vec<(usize, &Arc<MetricPlan>)> =
            plan.plan.metrics.iter().enumerate().filter(|(_, m)| !exported_columns(m).is_empty()).collect();
        self.metrics.retain(|hash, _| exported.iter().any(|(_, m)| &m.hash == hash));
        for (_, metric) in &exported {
            self.metrics.entry(metric.hash.clone()).or_insert_with(|| MetricExport::new(metric));
        }
        for (topic, row) in rows {
            if row.tier != 0 {
                continue;
            }
            if let Some(export) = self.metrics.get_mut(&row.metric.hash) {
                export.observe((topic, row.partition, row.window_start), &row.keys, &row.states, now_ms);
            }
        }
        let is_gauge_due = self.gauges_at_ms.is_none_or(|at| now_ms - at >= GAUGE_INTERVAL_MS);
        for (index, metric) in exported {
            let Some(export) = self.metrics.get_mut(&metric.hash) else { continue };
            let mut newest: HashMap<Key, (i64, Vec<AggState>)> = HashMap::new();
            for (topic, partition) in partitions {
                if !std::ptr::eq(partition.plan().as_ref(), plan) {
                    continue; // Still on another plan: its indices mean other metrics.
                }
                for (start, window) in partition.open_windows(index) {
                    for (key, states) in window.series(metric.aggregates.len()) {
                        export.observe((topic, partition.partition(), start), key, states, now_ms);
                        if !is_gauge_due {
                            continue;
                        }
                        match newest.get_mut(key) {
                            Some((s, merged)) if *s == start => {
                                merged.iter_mut().zip(states).for_each(|(a, b)| a.merge(b));
                            }
                            Some((s, merged)) if *s < start => {
                                *s = start;
                                *merged = states.to_vec();
                            }
                            Some(_) => {}
                            None => {
                                newest.insert(Arc::clone(key), (start, states.to_vec()));
                            }
                        }
                    }
                }
            }
            if is_gauge_due {
                // Open windows feed only one sketch of quantiles sharing it.
                let shared = plan.shared_sketches(index);
                newest.values_mut().for_each(|(_, states)| fill_shared_sketches(states, shared));
                export.update_gauges(newest, &plan.regexes, now_ms);
            }
            export.expire(now_ms);
        }
        if is_gauge_due {
            self.gauges_at_ms = Some(now_ms);
        }
    }

    /// Every exported family with its current samples, by metric then column.
    pub fn families(&self) -> Vec<Family> {
        let mut metrics: Vec<&MetricExport> = self.metrics.values().collect();
        metrics.sort_by(|a, b| a.plan.name.cmp(&b.plan.name));
        let mut out = Vec::new();
        for metric in metrics {
            let labels: Vec<&str> = metric.plan.keys.iter().map(|k| k.name.as_str()).collect();
            for (c, column) in metric.columns.iter().enumerate() {
                let mut samples: Vec<Sample> = metric
                    .series
                    .iter()
                    .filter_map(|(key, series)| {
                        let value = series.values[c]?;
                        let pairs =
                            labels.iter().zip(key.iter()).map(|(l, v)| (l.to_string(), label_value(v))).collect();
                        Some((pairs, value))
                    })
                    .collect();
                samples.sort_by(|a, b| a.0.cmp(&b.0));
                let help = match column.kind {
                    SeriesKind::Counter => format!("Metric {}: {} over all windows.", metric.plan.name, column.column),
                    SeriesKind::Gauge => {
                        format!("Metric {}: {} over the newest open window.", metric.plan.name, column.column)
                    }
                };
                out.push(Family { name: column.series.clone(), kind: column.kind, help, samples });
            }
        }
        out
    }

    /// Per exported metric: series served and keys overflowed, by name.
    pub fn summaries(&self) -> Vec<MetricSummary> {
        let mut out: Vec<MetricSummary> = self
            .metrics
            .values()
            .map(|m| MetricSummary {
                name: m.plan.name.clone(),
                series: m.series.len(),
                overflow_keys: m.overflow_keys,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}
