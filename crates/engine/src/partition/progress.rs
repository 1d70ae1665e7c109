//! What a partition may persist and commit: its progress, the checkpoint
//! that records it, and the plan switch, which moves the checkpoint to
//! the switch.

use super::MetricStats;
use super::{Partition, Progress};
use crate::output::{Checkpoint, MetricStart, Output};
use crate::window::MetricState;
use crate::CompiledPlan;
use std::sync::Arc;

impl Partition {
    /// Where the partition is now.
    pub(super) fn current_progress(&self) -> Option<Progress> {
        let open = self.metrics.iter().flat_map(|m| m.windows.values().map(|w| w.min_offset)).min();
        Some(Progress {
            replay_offset: [open, self.replay_floor, self.next_offset].into_iter().flatten().min()?,
            next_offset: self.next_offset?,
            max_event_time: self.max_event_time,
        })
    }

    /// What may be committed: where the partition is now, or while tier
    /// rows are held back, where it was when none was. Restored from there,
    /// replay closes the windows closed since again and merges them into
    /// the tiers, whose stored rows do not include them yet.
    pub(super) fn progress(&self) -> Option<Progress> {
        if self.tier_rows_every_ms > 0 {
            self.settled
        } else {
            self.current_progress()
        }
    }

    /// The progress to persist with the rows emitted so far.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let progress = self.progress()?;
        Some(Checkpoint {
            partition: self.partition,
            replay_offset: progress.replay_offset,
            next_offset: progress.next_offset,
            max_event_time: progress.max_event_time,
            metrics: Some(
                self.plan
                    .plan
                    .metrics
                    .iter()
                    .zip(self.since_offset.iter().zip(&self.replaced))
                    .map(|(m, (since, replaced))| MetricStart {
                        hash: m.hash.clone(),
                        since_offset: *since,
                        table: Some(m.table.clone()),
                        replaced: *replaced,
                    })
                    .collect(),
            ),
            plan_version: None,
        })
    }

    /// Where each metric started counting (`None`: from the beginning), in plan order.
    pub fn since_offsets(&self) -> &[Option<i64>] {
        &self.since_offset
    }

    /// Switches to `plan` between two messages. Metrics with the same hash
    /// in both plans keep their open windows and counters; metrics only in
    /// `plan` start counting at the next offset; metrics only in the old
    /// plan close all their open windows into `out` and stop. Each row in
    /// `out` holds its own metric, so the caller writes them like any other
    /// rows. Returns the old plan.
    pub fn reconfigure(&mut self, plan: Arc<CompiledPlan>, out: &mut Output) -> Arc<CompiledPlan> {
        // Held-back rows go out under the plan that made them, and the
        // checkpoint moves to the switch, so no replay crosses it.
        self.emit_held_back(out);
        let old_metrics = &self.plan.plan.metrics;
        let mut kept: Vec<Option<usize>> = vec![None; old_metrics.len()];
        for (new_index, metric) in plan.plan.metrics.iter().enumerate() {
            if let Some(old_index) = old_metrics.iter().position(|m| m.hash == metric.hash) {
                kept[old_index] = Some(new_index);
            }
        }
        // A metric that starts now takes over the table of a version the
        // old plan ran and this one does not.
        let mut replaced: Vec<bool> = plan
            .plan
            .metrics
            .iter()
            .map(|metric| old_metrics.iter().zip(&kept).any(|(old, kept)| kept.is_none() && old.table == metric.table))
            .collect();
        for (old_index, new_index) in kept.iter().enumerate() {
            if new_index.is_none() {
                self.close_metric(old_index, i64::MAX, out);
            }
        }
        let count = plan.plan.metrics.len();
        let mut metrics: Vec<Option<MetricState>> = (0..count).map(|_| None).collect();
        let mut stats = vec![MetricStats::default(); count];
        let mut since_offset = vec![self.next_offset; count];
        let old_states = std::mem::take(&mut self.metrics);
        for (old_index, state) in old_states.into_iter().enumerate() {
            if let Some(new_index) = kept[old_index] {
                metrics[new_index] = Some(state);
                stats[new_index] = self.stats.metrics[old_index];
                since_offset[new_index] = self.since_offset[old_index];
                replaced[new_index] = self.replaced[old_index];
            }
        }
        self.metrics = metrics
            .into_iter()
            .zip(&plan.plan.metrics)
            .map(|(state, metric)| state.unwrap_or_else(|| MetricState::new(metric)))
            .collect();
        self.stats.metrics = stats;
        self.since_offset = since_offset;
        self.replaced = replaced;
        let old = std::mem::replace(&mut self.plan, plan);
        self.settle();
        old
    }
}
