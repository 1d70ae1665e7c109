//! What processing produces for the caller to persist: rows, dead letters,
//! and each partition's checkpoint. Plain data, shared by the partition
//! state that makes them, the windows that build rows, and the callers
//! (stores, the consumer, `streamctl run`) that write them.

use crate::aggregate::AggState;
use crate::decode::Reason;
use crate::value::KeyVal;
use crate::CompiledPlan;
use dsl::plan::MetricPlan;
use dsl::Plan;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A finished or updated row for the store to upsert.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its metric, shared with the plan that made it: all a store needs to
    /// write it (table, columns, tiers), also once that plan is replaced.
    pub metric: Arc<MetricPlan>,
    /// Tier index: 0 is the window itself.
    pub tier: usize,
    /// Start of the window, ms.
    pub window_start: i64,
    /// Source partition that wrote it.
    pub partition: i32,
    /// Group-by values (shared with the engine's windows and other rows).
    pub keys: Arc<[KeyVal]>,
    /// Aggregate states, in plan order (shared with the tier window they
    /// belong to until it changes them again).
    pub states: Arc<[AggState]>,
    /// For tier rows: end of the latest base window merged in.
    pub included_through: Option<i64>,
}

impl Row {
    /// The index of this row's metric in `plan`: the same metric (the
    /// shared one, else one with the same [`MetricPlan::hash`]) or none.
    pub fn metric_index(&self, plan: &Plan) -> Option<usize> {
        let metrics = &plan.metrics;
        metrics
            .iter()
            .position(|m| Arc::ptr_eq(m, &self.metric))
            .or_else(|| metrics.iter().position(|m| m.hash == self.metric.hash))
    }
}

/// Leaves out of `rows` (in emission order) every tier row that a later
/// row of the same tier window and series replaces, keeping the order of
/// the rest: a tier row is emitted again each time a base window merges
/// into it, and written in order only the last one would remain anyway.
///
/// A tier window's rows all share its key (one allocation per series), so
/// two rows are of the same series when their keys are the same
/// allocation; equal keys held apart (a tier window rebuilt after a
/// restore) are both kept, in order, which is still correct.
pub fn drop_superseded(rows: &mut Vec<Row>) {
    let tier_rows = rows.iter().filter(|row| row.tier > 0).count();
    if tier_rows < 2 {
        return;
    }
    let mut seen: ahash::AHashSet<(*const MetricPlan, usize, i64, i32, *const KeyVal)> =
        ahash::AHashSet::with_capacity(tier_rows);
    // From the end, so the row kept of each series is its last one.
    let is_latest: Vec<bool> = rows
        .iter()
        .rev()
        .map(|row| {
            row.tier == 0
                || seen.insert((
                    Arc::as_ptr(&row.metric),
                    row.tier,
                    row.window_start,
                    row.partition,
                    Arc::as_ptr(&row.keys).cast::<KeyVal>(),
                ))
        })
        .collect();
    let mut latest = is_latest.into_iter().rev();
    rows.retain(|_| latest.next().unwrap_or(true));
}

/// A message that could not be used, with the original bytes.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Source topic.
    pub topic: String,
    /// Why.
    pub reason: Reason,
    /// What exactly.
    pub detail: String,
    /// The message as received.
    pub payload: Vec<u8>,
    /// The message key.
    pub key: Option<Vec<u8>>,
}

/// What processing produced, for the caller to persist.
#[derive(Debug, Default)]
pub struct Output {
    /// Rows to upsert.
    pub rows: Vec<Row>,
    /// Rejected messages.
    pub dead_letters: Vec<DeadLetter>,
}

impl Output {
    /// Whether there is nothing to persist.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.dead_letters.is_empty()
    }
}

/// A partition's persisted progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Partition.
    pub partition: i32,
    /// First offset needed to rebuild the open windows: the offset to commit.
    pub replay_offset: i64,
    /// One past the last offset processed.
    pub next_offset: i64,
    /// Highest event time seen (advanced by idleness), ms.
    pub max_event_time: Option<i64>,
    /// The metrics that were running, by hash, and where each started.
    /// `None` (a checkpoint from before plans could change) means every
    /// metric of the plan has always run.
    #[serde(default)]
    pub metrics: Option<Vec<MetricStart>>,
    /// Bundle version of the plan that wrote it (`None`: local files, a
    /// batch run, or a checkpoint from before versions were recorded). An
    /// instance on an older plan must not resume from it: the metrics it
    /// does not know yet would lose where they started.
    #[serde(default)]
    pub plan_version: Option<u64>,
}

impl Checkpoint {
    /// Puts back to `now_ms` an event time no event of `plan` could have
    /// reached by now (see [`CompiledPlan::is_unreachable_event_time`]).
    /// Returns the event time it replaced.
    ///
    /// Restored as it is, such a checkpoint's watermark would make every
    /// event late until the real time caught up with it, in 9999 for an
    /// event dated 9999-12-31. Put back, events older than the lateness of
    /// now are late, as on any live partition; the windows the far-ahead
    /// event time closed early were written then, and the one open at that
    /// moment may come out partial.
    pub fn distrust_future_event_time(&mut self, plan: &CompiledPlan, now_ms: i64) -> Option<i64> {
        let distrusted = self.max_event_time.filter(|&t| plan.is_unreachable_event_time(t, now_ms))?;
        self.max_event_time = Some(now_ms);
        Some(distrusted)
    }
}

/// Where a metric started counting in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricStart {
    /// [`dsl::plan::MetricPlan::hash`].
    pub hash: String,
    /// First offset the metric counts; `None` for from the beginning.
    pub since_offset: Option<i64>,
    /// The metric's table ([`dsl::plan::MetricPlan::table`]); `None` in
    /// checkpoints from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Whether the metric took over its table from another version of it
    /// (a changed metric) when it started: the table then holds that
    /// version's rows of this partition up to the start, and a backfill
    /// beside them would count those windows twice.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier_row(metric: &Arc<MetricPlan>, keys: &Arc<[KeyVal]>, included_through: i64) -> Row {
        Row {
            metric: Arc::clone(metric),
            tier: 1,
            window_start: 0,
            partition: 0,
            keys: Arc::clone(keys),
            states: Arc::from(Vec::new()),
            included_through: Some(included_through),
        }
    }

    /// Equal keys held in two allocations (a tier window rebuilt after a
    /// restore) are not recognised as one series: both stay, and the last
    /// row written must still be the newest.
    #[test]
    fn the_newest_row_of_a_series_is_written_last_even_when_its_key_is_held_twice() {
        let (first, second): (Arc<[KeyVal]>, Arc<[KeyVal]>) =
            (Arc::from(vec![KeyVal::Int(7)]), Arc::from(vec![KeyVal::Int(7)]));
        let text = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time }\nmetric m from s\n  compute count() as n\n  window 1m\n";
        let compiled = dsl::compile_str("m.stream", text);
        let metric = Arc::clone(&compiled.plan.expect("plan").metrics[0]);
        let mut rows = vec![tier_row(&metric, &first, 1), tier_row(&metric, &second, 2), tier_row(&metric, &first, 3)];
        drop_superseded(&mut rows);
        let kept: Vec<Option<i64>> = rows.iter().map(|r| r.included_through).collect();
        assert_eq!(kept, [Some(2), Some(3)]);
    }
}
