//! Closing windows: base windows past the watermark are emitted and merged
//! into their tiers, tier rows are emitted (or held back and emitted once
//! per step of event time), and idle partitions advance by processing time.

use super::Partition;
use crate::output::{Output, Row};
use std::sync::Arc;

impl Partition {
    /// Advances event time by processing time when no message has arrived
    /// for `idle_timeout_ms`, so an idle partition still closes its windows.
    pub fn on_idle(&mut self, now_ms: i64, idle_timeout_ms: i64, out: &mut Output) {
        let (Some(last), Some(max)) = (self.last_message_at_ms, self.max_event_time) else { return };
        let idle = now_ms - last;
        if idle < idle_timeout_ms {
            return;
        }
        // Treat event time as having moved on with the wall clock since the timeout.
        let advanced = max.saturating_add(idle - idle_timeout_ms);
        if advanced > max {
            self.max_event_time = Some(advanced);
            self.last_message_at_ms = Some(now_ms - idle_timeout_ms);
            self.close_ready(out);
        }
    }

    /// Closes every open window and tier, as at the end of a finite input.
    pub fn close_all(&mut self, out: &mut Output) {
        for m in 0..self.metrics.len() {
            self.close_metric(m, i64::MAX, out);
        }
        self.settle();
    }

    /// Emits every tier row held back (see
    /// [`Partition::with_tier_rows_every`]), so that the checkpoint is
    /// where the partition is: before handing the partition over or
    /// stopping, to spare the next owner a longer replay.
    pub fn emit_held_back(&mut self, out: &mut Output) {
        if self.held_back == 0 {
            return self.settle();
        }
        for m in 0..self.metrics.len() {
            for t in 1..self.metrics[m].tiers.len() {
                let starts: Vec<i64> = self.metrics[m].tiers[t].keys().copied().collect();
                for start in starts {
                    self.emit_tier_window(m, t, start, out);
                }
            }
        }
        self.settle();
    }

    /// Emits the held-back rows of one tier window.
    pub(super) fn emit_tier_window(&mut self, m: usize, t: usize, start: i64, out: &mut Output) {
        let Some(window) = self.metrics[m].tiers[t].get_mut(&start) else { return };
        let held_back = std::mem::take(&mut window.held_back);
        for &i in &held_back {
            // The same as if it had been emitted at its last merge.
            let through = window.held_through[i as usize].take();
            out.rows.push(window.row((&self.plan.plan.metrics[m], t, start), self.partition, i as usize, through));
        }
        self.held_back -= held_back.len();
        self.stats.metrics[m].rows += held_back.len() as u64;
    }

    /// With no tier row held back, the checkpoint may move to where the partition is.
    pub(super) fn settle(&mut self) {
        // Without holding back, the checkpoint is always where the partition is.
        if self.tier_rows_every_ms > 0 && self.held_back == 0 {
            self.settled = self.current_progress().or(self.settled);
        }
    }

    pub(super) fn close_ready(&mut self, out: &mut Output) {
        for m in 0..self.metrics.len() {
            if let Some(watermark) = self.watermark(m) {
                self.close_metric(m, watermark, out);
            }
        }
        if self.held_back > 0 {
            let step = self.max_event_time.map(|t| t.div_euclid(self.tier_rows_every_ms));
            if self.emitted_in.is_none_or(|last| step > Some(last)) {
                self.emitted_in = step;
                self.emit_held_back(out);
            }
        }
        self.settle();
    }

    /// Closes base windows ending at or before `watermark`, merges them into
    /// the tiers, and drops tier windows that can receive nothing more.
    ///
    /// Rows share keys and states with the windows instead of copying
    /// them: a base window's states go into its row and, for a series new
    /// to a tier window, become that tier's states too, so a large close
    /// (100k series into a 1d tier) holds every state once.
    pub(super) fn close_metric(&mut self, m: usize, watermark: i64, out: &mut Output) {
        let plan = &self.plan.plan.metrics[m];
        let width = plan.window_ms as i64;
        let state = &mut self.metrics[m];
        let closing: Vec<i64> =
            state.windows.keys().take_while(|start| start.saturating_add(width) <= watermark).copied().collect();
        for &start in &closing {
            let Some(window) = state.windows.remove(&start) else { continue };
            let end = start + width;
            self.stats.metrics[m].windows_closed += 1;
            out.rows.reserve(window.series.len() * plan.tiers.len().max(1));
            let series = window.into_series(plan.aggregates.len(), self.plan.shared_sketches(m));
            for (t, tier) in plan.tiers.iter().enumerate().skip(1) {
                let tier_width = tier.width_ms as i64;
                let tier_start = start.div_euclid(tier_width) * tier_width;
                let tier_window = state.tiers[t].entry(tier_start).or_default();
                if tier_window.series.is_empty() {
                    tier_window.series.reserve(series.len());
                }
                for (s, states) in series.states.iter().enumerate() {
                    let (i, is_new) = tier_window.series.insert_closed(&series, s);
                    if is_new {
                        // Merged into nothing, the tier's states are the window's: share them.
                        tier_window.states.push(Arc::clone(states));
                    } else if tier_window.included_through.get(i).is_some_and(|&through| end <= through) {
                        continue; // This series' stored row included it before a restart.
                    } else {
                        // Copies only if a row emitted earlier still holds them.
                        let mine = Arc::make_mut(&mut tier_window.states[i]);
                        mine.iter_mut().zip(states.iter()).for_each(|(mine, theirs)| mine.merge(theirs));
                    }
                    if self.tier_rows_every_ms > 0 {
                        self.held_back += usize::from(tier_window.hold_back(i, end));
                        continue;
                    }
                    out.rows.push(tier_window.row((plan, t, tier_start), self.partition, i, Some(end)));
                    self.stats.metrics[m].rows += 1;
                }
            }
            for (keys, states) in series.keys.into_iter().zip(series.states) {
                out.rows.push(Row {
                    metric: Arc::clone(plan),
                    tier: 0,
                    window_start: start,
                    partition: self.partition,
                    keys,
                    states,
                    included_through: None,
                });
                self.stats.metrics[m].rows += 1;
            }
        }
        for t in 1..self.metrics[m].tiers.len() {
            let tier_width = self.plan.plan.metrics[m].tiers[t].width_ms as i64;
            while let Some(&start) = self.metrics[m].tiers[t].keys().next() {
                if start.saturating_add(tier_width) > watermark {
                    break;
                }
                // Nothing more merges into it: its held-back rows go out now.
                self.emit_tier_window(m, t, start, out);
                self.metrics[m].tiers[t].remove(&start);
            }
        }
    }
}
