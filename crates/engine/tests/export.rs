//! Live exports (`export prometheus`): counters count every event exactly
//! once across window closes, replays and partition moves; gauges merge
//! partitions; the cardinality limit bounds the series; stale keys go.

use engine::export::live::{Family, LiveExport, STALE_MS};
use engine::{CompiledPlan, EngineConfig, Output, Partition, Row};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The processing time messages without a broker timestamp arrive at
/// (2100-01-01): after every event time here, so none is too far ahead.
const NOW_MS: i64 = 4_102_444_800_000;

const SOURCE: &str = r#"version 1

source s from kafka "t" format json { ts: timestamp event_time, k: string, v: int }
"#;

const METRIC: &str = r#"
metric m from s
  group by k
  compute count() as c, sum(v) as sv, avg(v) as mean, sv / c as per_event
  window 10s, lateness 5s
  export prometheus
"#;

fn compile(text: &str) -> Arc<CompiledPlan> {
    let compiled = dsl::compile_str("p.stream", &format!("{SOURCE}{text}"));
    let plan = compiled.plan.clone().unwrap_or_else(|| panic!("{}", compiled.render_diagnostics()));
    Arc::new(CompiledPlan::new(plan, EngineConfig::default()).expect("the plan builds"))
}

/// Feeds `events` (ts seconds, key, value) with consecutive offsets from `first_offset`.
fn feed(p: &mut Partition, events: &[(i64, &str, i64)], first_offset: i64, out: &mut Output) {
    let payloads = events.iter().map(|(ts, k, v)| {
        let time = engine::value::format_timestamp(ts * 1000);
        format!(r#"{{"ts": "{time}", "k": "{k}", "v": {v}}}"#)
    });
    p.process_all("t", first_offset, payloads, NOW_MS, out);
}

fn observe(export: &mut LiveExport, plan: &CompiledPlan, parts: &[&Partition], out: &mut Output, now_ms: i64) {
    let partitions: Vec<(&str, &Partition)> = parts.iter().map(|p| ("t", *p)).collect();
    let rows: Vec<(&str, &Row)> = out.rows.iter().map(|r| ("t", r)).collect();
    export.observe(plan, &partitions, &rows, now_ms);
    out.rows.clear();
}

/// Samples of `name` as key label → value.
fn samples(export: &LiveExport, name: &str) -> BTreeMap<String, f64> {
    let families: Vec<Family> = export.families();
    let family = families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no family {name}"));
    family
        .samples
        .iter()
        .map(|(labels, v)| (labels.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>().join(","), *v))
        .collect()
}

#[test]
fn counters_count_each_event_once_across_closes_and_flushes() {
    let plan = compile(METRIC);
    let mut p = Partition::new(plan.clone(), 0);
    let mut export = LiveExport::new();
    let mut out = Output::default();
    // Three windows of a and b; flushes at odd moments, between and within windows.
    let events: Vec<(i64, &str, i64)> = (0..60).map(|i| (i, if i % 3 == 0 { "b" } else { "a" }, 2)).collect();
    for chunk in events.chunks(7) {
        let first = events.iter().position(|e| std::ptr::eq(e, &chunk[0])).expect("index") as i64;
        feed(&mut p, chunk, first, &mut out);
        observe(&mut export, &plan, &[&p], &mut out, 1_000);
        let counts = samples(&export, "stream_m_c_total");
        let seen = first + chunk.len() as i64;
        assert_eq!(counts.values().sum::<f64>(), seen as f64, "after {seen} events: {counts:?}");
    }
    p.close_all(&mut out);
    observe(&mut export, &plan, &[&p], &mut out, 2_000);
    assert_eq!(samples(&export, "stream_m_c_total"), BTreeMap::from([("a".into(), 40.0), ("b".into(), 20.0)]));
    assert_eq!(samples(&export, "stream_m_sv_total"), BTreeMap::from([("a".into(), 80.0), ("b".into(), 40.0)]));
}

#[test]
fn a_replayed_partition_adds_nothing_twice_and_a_departed_one_subtracts_nothing() {
    let plan = compile(METRIC);
    let mut export = LiveExport::new();
    let mut out = Output::default();
    let events: Vec<(i64, &str, i64)> = (0..30).map(|i| (i, "a", 1)).collect();
    let mut p = Partition::new(plan.clone(), 3);
    feed(&mut p, &events[..20], 0, &mut out);
    observe(&mut export, &plan, &[&p], &mut out, 1_000);
    assert_eq!(samples(&export, "stream_m_c_total")["a"], 20.0);
    let checkpoint = p.checkpoint().expect("checkpoint");

    // The partition leaves: its open windows vanish, the counter stays.
    observe(&mut export, &plan, &[], &mut out, 1_500);
    assert_eq!(samples(&export, "stream_m_c_total")["a"], 20.0);

    // It comes back, restored from the checkpoint, and replays from the
    // replay point before going on: only the 10 new events count.
    let mut restored = Partition::restore(plan.clone(), &checkpoint, Vec::new());
    let replay = checkpoint.replay_offset as usize;
    assert!(replay < 20, "some events are replayed");
    feed(&mut restored, &events[replay..], replay as i64, &mut out);
    observe(&mut export, &plan, &[&restored], &mut out, 2_000);
    assert_eq!(samples(&export, "stream_m_c_total")["a"], 30.0);
}

#[test]
fn gauges_merge_partitions_over_the_newest_window() {
    let plan = compile(METRIC);
    let mut export = LiveExport::new();
    let mut out = Output::default();
    let (mut p0, mut p1) = (Partition::new(plan.clone(), 0), Partition::new(plan.clone(), 1));
    // An older window (ts 0..9) and the newest (10..19) in both partitions.
    feed(&mut p0, &[(1, "a", 100), (11, "a", 1), (12, "a", 3)], 0, &mut out);
    feed(&mut p1, &[(2, "a", 100), (13, "a", 8)], 0, &mut out);
    observe(&mut export, &plan, &[&p0, &p1], &mut out, 1_000);
    assert_eq!(samples(&export, "stream_m_mean")["a"], 4.0, "mean of 1, 3 and 8");
    // A derived gauge is computed from the merged aggregates of the window.
    assert_eq!(samples(&export, "stream_m_per_event")["a"], 4.0);
}

#[test]
fn quantile_gauges_of_one_argument_each_report_their_own_quantile() {
    // The engine feeds one sketch for both quantiles of `v` while windows are open.
    let plan = compile(&METRIC.replace("sv / c as per_event", "sv / c as per_event, p50(v) as lo, p99(v) as hi"));
    let mut export = LiveExport::new();
    let mut out = Output::default();
    let (mut p0, mut p1) = (Partition::new(plan.clone(), 0), Partition::new(plan.clone(), 1));
    let events: Vec<(i64, &str, i64)> = (1..=100).map(|v| (10 + v % 10, "a", v)).collect();
    let (evens, odds): (Vec<_>, Vec<_>) = events.iter().partition(|e| e.2 % 2 == 0);
    feed(&mut p0, &evens, 0, &mut out);
    feed(&mut p1, &odds, 0, &mut out);
    observe(&mut export, &plan, &[&p0, &p1], &mut out, 1_000);
    // DDSketch's relative accuracy is 1%.
    let (lo, hi) = (samples(&export, "stream_m_lo")["a"], samples(&export, "stream_m_hi")["a"]);
    assert!((lo - 50.0).abs() <= 1.0, "p50 of 1..=100 merged over two partitions: {lo}");
    assert!((hi - 99.0).abs() <= 1.0, "p99 of 1..=100 merged over two partitions: {hi}");
}

#[test]
fn keys_beyond_the_limit_fold_into_other_and_are_counted() {
    let plan = compile(&METRIC.replace("  export prometheus", "  cardinality limit 3\n  export prometheus"));
    let mut export = LiveExport::new();
    let mut out = Output::default();
    let mut p = Partition::new(plan.clone(), 0);
    // Each window has three keys (within the engine's per-window limit), but
    // over the windows there are nine.
    let events: Vec<(i64, String, i64)> = (0..9).map(|i| (i / 3 * 10, format!("k{i}"), 1)).collect();
    let events: Vec<(i64, &str, i64)> = events.iter().map(|(t, k, v)| (*t, k.as_str(), *v)).collect();
    feed(&mut p, &events, 0, &mut out);
    p.close_all(&mut out);
    observe(&mut export, &plan, &[&p], &mut out, 1_000);
    let counts = samples(&export, "stream_m_c_total");
    assert_eq!(counts.len(), 4, "3 keys and __other__: {counts:?}");
    assert_eq!(counts["__other__"], 6.0);
    assert_eq!(counts.values().sum::<f64>(), 9.0);
    let summary = &export.summaries()[0];
    assert_eq!((summary.series, summary.overflow_keys), (4, 6));
}

#[test]
fn stale_keys_are_forgotten_and_a_changed_metric_starts_anew() {
    let plan = compile(METRIC);
    let mut export = LiveExport::new();
    let mut out = Output::default();
    let mut p = Partition::new(plan.clone(), 0);
    feed(&mut p, &[(1, "old", 1), (2, "old", 1)], 0, &mut out);
    p.close_all(&mut out);
    observe(&mut export, &plan, &[&p], &mut out, 0);
    assert_eq!(samples(&export, "stream_m_c_total")["old"], 2.0);
    observe(&mut export, &plan, &[&p], &mut out, STALE_MS - 1);
    assert_eq!(samples(&export, "stream_m_c_total").len(), 1, "kept for a while after its window closed");
    observe(&mut export, &plan, &[&p], &mut out, STALE_MS + 1);
    assert!(samples(&export, "stream_m_c_total").is_empty(), "then forgotten");
    assert_eq!(export.summaries()[0].series, 0);

    // The same name with another definition is another metric (another hash).
    let changed = compile(&METRIC.replace("group by k", "where v > 0\n  group by k"));
    let mut q = Partition::new(changed.clone(), 0);
    feed(&mut q, &[(100, "new", 1)], 0, &mut out);
    observe(&mut export, &changed, &[&q], &mut out, STALE_MS + 2);
    assert_eq!(samples(&export, "stream_m_c_total"), BTreeMap::from([("new".into(), 1.0)]));
    // A plan without it exports nothing.
    let unexported = compile(&METRIC.replace("  export prometheus", ""));
    observe(&mut export, &unexported, &[], &mut out, STALE_MS + 3);
    assert!(export.families().is_empty());
}

#[test]
fn a_metric_kept_by_a_new_plan_keeps_counting_where_it_was() {
    let old = compile(METRIC);
    let other = "\nmetric first from s\n  compute count() as n\n  window 10s\n  export prometheus\n";
    // The same metric, now second in the plan: another index, the same hash.
    let new = compile(&format!("{other}{METRIC}"));
    let mut export = LiveExport::new();
    let mut out = Output::default();
    let mut p = Partition::new(old.clone(), 0);
    feed(&mut p, &[(1, "a", 1), (2, "a", 1), (3, "a", 1)], 0, &mut out);
    observe(&mut export, &old, &[&p], &mut out, 1_000);
    p.reconfigure(new.clone(), &mut out);
    feed(&mut p, &[(4, "a", 1), (5, "a", 1)], 3, &mut out);
    observe(&mut export, &new, &[&p], &mut out, 2_000);
    assert_eq!(samples(&export, "stream_m_c_total")["a"], 5.0, "open windows carried over are not counted again");
    assert_eq!(samples(&export, "stream_first_n_total")[""], 2.0, "the new metric counts from the switch");
}
