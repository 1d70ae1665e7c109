//! A metric's stored answers as text, to compare a store with a clean run's
//! (also used by `crates/kafka/tests/backfill.rs`).

use store::query::Query;
use store::{Store, WriteBatch};

/// Writes `out` (the last row of each window, the dead letters) with
/// `checkpoints` to `store` in one batch of `topic`, then empties it.
pub fn write<S: Store + ?Sized>(
    store: &mut S,
    topic: &str,
    out: &mut engine::Output,
    checkpoints: &[engine::Checkpoint],
) {
    engine::drop_superseded(&mut out.rows);
    let batch = WriteBatch { topic, rows: &out.rows, dead_letters: &out.dead_letters, checkpoints, owners: &[] };
    store.write(&batch).expect("write");
    out.rows.clear();
    out.dead_letters.clear();
}

/// Every row of every tier of `metric`, merged over source partitions, as
/// text. A tier without rows fails the test: there is nothing to compare.
pub fn answers(store: &dyn Store, plan: &dsl::Plan, metric: &str) -> Vec<String> {
    let tiers = &plan.metrics.iter().find(|m| m.name == metric).expect("a metric of the plan").tiers;
    let mut lines = Vec::new();
    for tier in tiers {
        let query = Query { metric: metric.into(), tier: Some(tier.name.clone()), ..Query::default() };
        let result = store::query::run(store, plan, &query).expect("query");
        assert!(!result.rows.is_empty(), "no {} rows of {metric}", tier.name);
        lines.extend(result.rows.iter().map(|row| format!("{} {}", tier.name, serde_json::Value::from(row.clone()))));
    }
    lines
}

/// Asserts that `actual` (answers of `what`) equals a clean run's, showing the first rows that differ.
pub fn assert_same(what: &str, actual: &[String], expected: &[String]) {
    let differ: Vec<(Option<&String>, Option<&String>)> = (0..actual.len().max(expected.len()))
        .map(|i| (actual.get(i), expected.get(i)))
        .filter(|(a, e)| a != e)
        .take(3)
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: {} rows vs {} in a clean run; first differences (actual, clean): {differ:#?}",
        actual.len(),
        expected.len()
    );
}
