//! Switching a partition to a new plan between two messages: unchanged
//! metrics keep their state, added ones start at the switch, removed and
//! changed ones flush and stop — and a restore from a checkpoint written
//! before or after the switch keeps exactly those semantics.

use engine::{CompiledPlan, EngineConfig, Message, Output, Partition, Row};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The processing time messages without a broker timestamp arrive at
/// (2100-01-01): after every event time here, so none is too far ahead.
const NOW_MS: i64 = 4_102_444_800_000;

const SOURCE: &str = r#"version 1

source s from kafka "t" format json { ts: timestamp event_time, k: string, v: int }
"#;

/// Stays the same in both plans.
const KEPT: &str = r#"
metric kept from s
  group by k
  compute count() as c, sum(v) as sv
  window 10s, lateness 5s
  rollup 1m keep 1h
"#;

/// Only in the old plan.
const REMOVED: &str = r#"
metric removed from s
  compute count() as c
  window 10s, lateness 5s
"#;

const CHANGED_OLD: &str = r#"
metric changed from s
  group by k
  compute max(v) as mx
  window 10s, lateness 5s
"#;

const CHANGED_NEW: &str = r#"
metric changed from s
  where v > 3
  group by k
  compute max(v) as mx
  window 10s, lateness 5s
"#;

/// Only in the new plan.
const ADDED: &str = r#"
metric added from s
  group by k
  compute count() as c, min(v) as mn
  window 10s, lateness 5s
  rollup 1m keep 1h
"#;

fn compile(metrics: &[&str]) -> Arc<CompiledPlan> {
    let text = format!("{SOURCE}{}", metrics.concat());
    let compiled = dsl::compile_str("p.stream", &text);
    let plan = compiled.plan.clone().unwrap_or_else(|| panic!("{}", compiled.render_diagnostics()));
    Arc::new(CompiledPlan::new(plan, EngineConfig::default()).expect("the plan builds"))
}

/// 400 events, 1 s apart in event time with some disorder, over 5 keys.
fn payloads() -> Vec<String> {
    (0..400i64)
        .map(|i| {
            let ts = 1_717_372_800_000 + i * 1000 - (i % 7) * 700;
            let secs = ts / 1000;
            let ms = ts % 1000;
            let time = format!("2024-06-03T00:{:02}:{:02}.{ms:03}Z", (secs / 60) % 60, secs % 60);
            format!(r#"{{"ts":"{time}","k":"k{}","v":{}}}"#, i % 5, (i * 7) % 11)
        })
        .collect()
}

fn message(payload: &str, offset: i64) -> Message<'_> {
    Message::plain("t", 0, offset, payload.as_bytes())
}

/// Processes the messages at `offsets` of `payloads` in `p`, into `out`.
fn feed(p: &mut Partition, payloads: &[String], offsets: std::ops::Range<usize>, out: &mut Output) {
    for offset in offsets {
        p.process(&message(&payloads[offset], offset as i64), NOW_MS, out);
    }
}

/// Finished rows of metric `name` (tier, window, keys → values), last write wins as in a store.
type Table = BTreeMap<(usize, i64, String), String>;

fn table(rows: &[Row], name: &str) -> Table {
    let mut out = Table::new();
    for row in rows.iter().filter(|r| r.metric.name == name) {
        let values: Vec<_> = row.states.iter().map(engine::aggregate::AggState::finish).collect();
        out.insert((row.tier, row.window_start, format!("{:?}", row.keys)), format!("{values:?}"));
    }
    out
}

/// Runs `plan` over offsets `from..` of `payloads` in a fresh partition, to the end.
fn reference(plan: &Arc<CompiledPlan>, payloads: &[String], from: usize, name: &str) -> Table {
    let mut p = Partition::new(Arc::clone(plan), 0);
    let mut out = Output::default();
    feed(&mut p, payloads, from..payloads.len(), &mut out);
    p.close_all(&mut out);
    table(&out.rows, name)
}

#[test]
fn a_switch_keeps_unchanged_metrics_and_starts_new_ones_at_the_switch() {
    let old = compile(&[KEPT, REMOVED, CHANGED_OLD]);
    let new = compile(&[ADDED, CHANGED_NEW, KEPT]);
    let payloads = payloads();
    let switch = 170;

    let mut p = Partition::new(Arc::clone(&old), 0);
    let mut before = Output::default();
    feed(&mut p, &payloads, 0..switch, &mut before);
    let mut retired = Output::default();
    let previous = p.reconfigure(Arc::clone(&new), &mut retired);
    assert!(Arc::ptr_eq(&previous, &old));
    let mut after = Output::default();
    feed(&mut p, &payloads, switch..payloads.len(), &mut after);
    p.close_all(&mut after);

    // Unchanged: as if nothing happened.
    let mut kept = table(&before.rows, "kept");
    kept.extend(table(&after.rows, "kept"));
    assert_eq!(kept, reference(&old, &payloads, 0, "kept"));
    // Added and changed: as if started at the switch.
    assert_eq!(table(&after.rows, "added"), reference(&new, &payloads, switch, "added"));
    assert_eq!(table(&after.rows, "changed"), reference(&new, &payloads, switch, "changed"));
    // Removed and the old version of the changed one: everything up to the switch, flushed at it.
    for name in ["removed", "changed"] {
        let mut flushed = table(&before.rows, name);
        flushed.extend(table(&retired.rows, name));
        assert_eq!(flushed, reference(&old, &payloads[..switch], 0, name), "{name}");
    }
    assert!(retired.rows.iter().all(|r| ["removed", "changed"].contains(&r.metric.name.as_str())));
    // Counters moved with their metric.
    let kept_index = new.plan.metrics.iter().position(|m| m.name == "kept").expect("kept");
    assert_eq!(p.stats().metrics[kept_index].events, payloads.len() as u64);
    let added_index = new.plan.metrics.iter().position(|m| m.name == "added").expect("added");
    assert_eq!(p.stats().metrics[added_index].events, (payloads.len() - switch) as u64);
    assert_eq!(p.since_offsets()[added_index], Some(switch as i64));
    assert_eq!(p.since_offsets()[kept_index], None);
}

/// Tier rows held back (`with_tier_rows_every`) go out at the switch, under
/// the plan that made them, and the checkpoint catches up with the switch.
#[test]
fn held_back_tier_rows_go_out_at_a_switch_under_the_old_plan() {
    let old = compile(&[KEPT, REMOVED]);
    let new = compile(&[KEPT]);
    let payloads = payloads();
    let switch = 170;
    let hour = 3_600_000;

    let mut p = Partition::new(Arc::clone(&old), 0).with_tier_rows_every(hour);
    let mut before = Output::default();
    feed(&mut p, &payloads, 0..switch, &mut before);
    let held = p.checkpoint().expect("a checkpoint");
    assert!(held.next_offset < switch as i64, "held back, the checkpoint stays behind: {held:?}");
    assert!(p.held_back_tier_rows() > 0);
    let mut retired = Output::default();
    p.reconfigure(Arc::clone(&new), &mut retired);
    assert_eq!(p.held_back_tier_rows(), 0);
    let kept_tier_rows = retired.rows.iter().filter(|r| r.tier == 1 && r.metric.name == "kept");
    assert!(kept_tier_rows.count() > 0, "the kept metric's held-back tier rows");
    let caught_up = p.checkpoint().expect("a checkpoint");
    assert_eq!(caught_up.next_offset, switch as i64);
    assert!(caught_up.replay_offset > held.replay_offset);

    let mut after = Output::default();
    feed(&mut p, &payloads, switch..payloads.len(), &mut after);
    p.close_all(&mut after);
    let mut kept = table(&before.rows, "kept");
    kept.extend(table(&retired.rows, "kept"));
    kept.extend(table(&after.rows, "kept"));
    assert_eq!(kept, reference(&old, &payloads, 0, "kept"));
}

/// A crash right after the switch: the new plan restores from the checkpoint
/// the old plan wrote at the switch, replays from its replay point, and the
/// added metric still counts from the switch only.
#[test]
fn a_restore_under_a_new_plan_starts_its_new_metrics_at_the_checkpoint() {
    let old = compile(&[KEPT, REMOVED]);
    let new = compile(&[KEPT, ADDED]);
    let payloads = payloads();
    let switch = 203;

    let mut p = Partition::new(Arc::clone(&old), 0);
    let mut durable = Output::default();
    feed(&mut p, &payloads, 0..switch, &mut durable);
    let checkpoint = p.checkpoint().expect("a checkpoint");
    assert!(checkpoint.replay_offset < switch as i64, "open windows hold the replay point back");
    let tier_rows: Vec<Row> = durable.rows.iter().filter(|r| r.tier > 0).cloned().collect();

    let mut restored = Partition::restore(Arc::clone(&new), &checkpoint, tier_rows);
    let mut out = Output::default();
    feed(&mut restored, &payloads, checkpoint.replay_offset as usize..payloads.len(), &mut out);
    restored.close_all(&mut out);
    assert_eq!(table(&out.rows, "added"), reference(&new, &payloads, switch, "added"));
    let mut kept = table(&durable.rows, "kept");
    kept.extend(table(&out.rows, "kept"));
    assert_eq!(kept, reference(&old, &payloads, 0, "kept"));

    // The checkpoint written after the switch lists the added metric's start,
    // so a second restore keeps it.
    let again = Partition::restore(Arc::clone(&new), &restored.checkpoint().expect("checkpoint"), Vec::new());
    let added_index = new.plan.metrics.iter().position(|m| m.name == "added").expect("added");
    assert_eq!(again.since_offsets()[added_index], Some(switch as i64));
}

/// Where each metric's start says it took over its table from another
/// version, by name.
fn replaced(checkpoint: &engine::Checkpoint, plan: &CompiledPlan) -> BTreeMap<String, bool> {
    let starts = checkpoint.metrics.as_ref().expect("metric starts");
    plan.plan
        .metrics
        .iter()
        .map(|m| {
            let start = starts.iter().find(|s| s.hash == m.hash).expect("a start per metric");
            assert_eq!(start.table.as_deref(), Some(m.table.as_str()));
            (m.name.clone(), start.replaced)
        })
        .collect()
}

/// A changed metric starts in the table its old version wrote, and its
/// start says so, through a switch, through the checkpoints after it, and
/// through a restore under the new plan from a checkpoint of the old one;
/// an added metric's start does not. A backfill refuses the first (its
/// table holds the old version's rows up to the switch).
#[test]
fn a_changed_metric_records_that_it_took_over_its_table() {
    let old = compile(&[KEPT, CHANGED_OLD]);
    let new = compile(&[KEPT, CHANGED_NEW, ADDED]);
    let payloads = payloads();
    let switch = 170;
    let expected: BTreeMap<String, bool> =
        [("kept", false), ("changed", true), ("added", false)].map(|(m, r)| (m.to_string(), r)).into();

    let mut p = Partition::new(Arc::clone(&old), 0);
    let mut out = Output::default();
    feed(&mut p, &payloads, 0..switch, &mut out);
    let before_switch = p.checkpoint().expect("a checkpoint");
    assert!(before_switch.metrics.as_ref().expect("starts").iter().all(|s| !s.replaced));
    p.reconfigure(Arc::clone(&new), &mut out);
    feed(&mut p, &payloads, switch..switch + 50, &mut out);
    let after_switch = p.checkpoint().expect("a checkpoint");
    assert_eq!(replaced(&after_switch, &new), expected);

    // Restored from a checkpoint written after the switch: kept as recorded.
    let again = Partition::restore(Arc::clone(&new), &after_switch, Vec::new());
    assert_eq!(replaced(&again.checkpoint().expect("a checkpoint"), &new), expected);
    // Restored under the new plan from the old plan's checkpoint: the
    // changed metric starts there, in the table the old version wrote.
    let moved = Partition::restore(Arc::clone(&new), &before_switch, Vec::new());
    assert_eq!(replaced(&moved.checkpoint().expect("a checkpoint"), &new), expected);
    // A checkpoint from before tables were recorded says nothing of it.
    let mut untabled = before_switch.clone();
    untabled.metrics.iter_mut().flatten().for_each(|s| s.table = None);
    let unknown = Partition::restore(Arc::clone(&new), &untabled, Vec::new());
    assert!(replaced(&unknown.checkpoint().expect("a checkpoint"), &new).values().all(|r| !r));

    // The flag is in the stored form only when set.
    let json = serde_json::to_string(&after_switch).expect("json");
    assert_eq!(json.matches("\"replaced\":true").count(), 1, "{json}");
    assert!(!json.contains("\"replaced\":false"), "{json}");
}
