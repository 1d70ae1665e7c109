//! Merged queries against the truth: distinct counts (HyperLogLog) and p99
//! (DDSketch) merged across source partitions, group-by keys and tiers must
//! match a naive computation over the raw events within the sketches'
//! documented error: HLL about 1.6% standard error at precision 12 (bound
//! here: 5%), DDSketch 1% relative error (bound: 1% around the true rank).

use engine::value::format_timestamp;
use engine::{CompiledPlan, EngineConfig, Message, Output, Partition};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use store::query::{run, Query};
use store::sqlite::SqliteStore;
use store::{Store, WriteBatch};

/// The processing time messages without a broker timestamp arrive at
/// (2100-01-01): after every event time here, so none is too far ahead.
const NOW_MS: i64 = 4_102_444_800_000;

const PIPELINE: &str = r#"version 1

source events from kafka "events" format json {
  ts: timestamp event_time,
  region: string,
  user: string,
  latency_ms: int,
}

metric latency from events
  group by region
  compute
    count() as n,
    distinct(user) as users,
    p99(latency_ms) as p99_ms
  window 1m, lateness 1m
  rollup 1h keep 90d
"#;

const PARTITIONS: i32 = 4;
const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000; // an hour boundary

struct Event {
    ts: i64,
    region: &'static str,
    user: u64,
    latency_ms: i64,
}

/// Deterministic events: three hours, three regions, users from a pool of
/// 40 000, latencies spread log-uniformly over 1 ms to 60 s.
fn events(n: usize) -> Vec<Event> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let regions = ["eu", "us", "ap"];
    (0..n)
        .map(|i| {
            let ts = T0 + (i as i64 * 3 * 3_600_000) / n as i64;
            let region = regions[(next() % 3) as usize];
            let user = next() % 40_000;
            let unit = (next() % 1_000_000) as f64 / 1_000_000.0;
            let latency_ms = (60_000f64).powf(unit).round() as i64;
            Event { ts, region, user, latency_ms }
        })
        .collect()
}

fn store_of(events: &[Event]) -> (SqliteStore, dsl::Plan) {
    let compiled = dsl::compile_str("accuracy.stream", PIPELINE);
    assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
    let plan = compiled.plan.expect("checked above");
    let compiled = Arc::new(CompiledPlan::new(plan.clone(), EngineConfig::default()).expect("runnable"));
    let mut store = SqliteStore::open(":memory:").expect("store");
    store.setup(&plan).expect("setup");
    let mut out = Output::default();
    for p in 0..PARTITIONS {
        let mut partition = Partition::new(compiled.clone(), p);
        for (offset, e) in events.iter().enumerate().filter(|(i, _)| *i as i32 % PARTITIONS == p) {
            let line = serde_json::json!({
                "ts": format_timestamp(e.ts),
                "region": e.region,
                "user": format!("user-{}", e.user),
                "latency_ms": e.latency_ms,
            })
            .to_string();
            partition.process(&Message::plain("events", p, offset as i64, line.as_bytes()), NOW_MS, &mut out);
        }
        partition.close_all(&mut out);
    }
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters.first());
    let batch = WriteBatch { topic: "events", rows: &out.rows, dead_letters: &[], checkpoints: &[], owners: &[] };
    store.write(&batch).expect("write");
    (store, plan)
}

/// The naive truth per group: distinct users and sorted latencies.
#[derive(Default)]
struct Truth {
    users: BTreeSet<u64>,
    latencies: Vec<i64>,
}

fn check(label: &str, truth: &mut Truth, users: f64, p99: f64) {
    let exact = truth.users.len() as f64;
    let error = (users - exact).abs() / exact;
    assert!(error <= 0.05, "{label}: distinct {users} vs exact {exact} ({:.2}% off)", error * 100.0);
    truth.latencies.sort_unstable();
    let n = truth.latencies.len();
    let rank = 0.99 * (n - 1) as f64;
    let lo = truth.latencies[(rank.floor() as usize).saturating_sub(1)] as f64 * 0.99;
    let hi = truth.latencies[(rank.ceil() as usize + 1).min(n - 1)] as f64 * 1.01;
    assert!((lo..=hi).contains(&p99), "{label}: p99 {p99} outside [{lo}, {hi}] (n = {n})");
}

fn column(result: &store::query::QueryResult, row: &[serde_json::Value], name: &str) -> f64 {
    let i = result.columns.iter().position(|c| c == name).unwrap_or_else(|| panic!("no column {name}"));
    row[i].as_f64().unwrap_or_else(|| panic!("{name} is not a number: {}", row[i]))
}

#[test]
fn merged_distinct_and_p99_match_the_raw_events() {
    let events = events(60_000);
    let (store, plan) = store_of(&events);

    // Hour tier, totals: merged over 4 partitions, 3 regions and 60 windows.
    let mut hours: BTreeMap<i64, Truth> = BTreeMap::new();
    for e in &events {
        let t = hours.entry(e.ts - e.ts.rem_euclid(3_600_000)).or_default();
        t.users.insert(e.user);
        t.latencies.push(e.latency_ms);
    }
    let query =
        Query { metric: "latency".into(), tier: Some("1h".into()), group_by: Some(vec![]), ..Default::default() };
    let result = run(&store, &plan, &query).expect("query");
    assert_eq!(result.rows.len(), hours.len());
    for (row, (start, truth)) in result.rows.iter().zip(hours.iter_mut()) {
        assert_eq!(row[0], serde_json::Value::String(format_timestamp(*start)));
        assert_eq!(column(&result, row, "n") as usize, truth.latencies.len());
        check(&format!("1h {start}"), truth, column(&result, row, "users"), column(&result, row, "p99_ms"));
    }

    // Minute tier, per region, one hour's range: merged over partitions.
    let mut minutes: BTreeMap<(i64, &str), Truth> = BTreeMap::new();
    for e in events.iter().filter(|e| e.ts >= T0 + 3_600_000 && e.ts < T0 + 2 * 3_600_000) {
        let t = minutes.entry((e.ts - e.ts.rem_euclid(60_000), e.region)).or_default();
        t.users.insert(e.user);
        t.latencies.push(e.latency_ms);
    }
    let query = Query {
        metric: "latency".into(),
        tier: Some("1m".into()),
        from_ms: Some(T0 + 3_600_000),
        to_ms: Some(T0 + 2 * 3_600_000),
        ..Default::default()
    };
    let result = run(&store, &plan, &query).expect("query");
    assert_eq!(result.rows.len(), minutes.len());
    for (row, ((start, region), truth)) in result.rows.iter().zip(minutes.iter_mut()) {
        assert_eq!(row[1], serde_json::Value::String((*region).into()));
        check(&format!("1m {start} {region}"), truth, column(&result, row, "users"), column(&result, row, "p99_ms"));
    }
}
