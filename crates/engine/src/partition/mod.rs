//! One Kafka partition's state: open windows of every metric, the watermark,
//! and the replay protocol that makes results exactly-once.
//!
//! The replay protocol, in short (see `ARCHITECTURE.md`):
//! * closed base windows are emitted once; tier rows are emitted every time a
//!   base window is merged into them, with `included_through` recording how
//!   far they go, so tiers never hold back the replay point (unless tier rows
//!   are held back to be written less often: then the replay point stays
//!   where it was when none was held back, see
//!   [`Partition::with_tier_rows_every`]);
//! * the replay point is the lowest offset of any event in an open base window;
//! * a [`Checkpoint`] records the replay point, the next offset and the max
//!   event time. After a restore, events below the checkpoint's next offset
//!   whose window had already closed were fully handled before and are
//!   skipped; the others rebuild the open windows exactly.

use crate::aggregate::{AggState, Position};
use crate::decode::{Reason, Rejection};
use crate::eval::{EventCtx, MessageMeta, Scope, TextSlots};
use crate::output::{Checkpoint, DeadLetter, Output, Row};
use crate::value::{format_timestamp, Val};
use crate::window::{MetricState, SeriesMap, Slot, Window};
use crate::CompiledPlan;
use serde::Serialize;
use sha2::{Digest, Sha256};
use smallvec::SmallVec;
use std::cell::Cell;
use std::sync::Arc;

mod close;
mod progress;

/// A message to process.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The raw bytes.
    pub payload: &'a [u8],
    /// Where it came from.
    pub meta: MessageMeta<'a>,
}

impl<'a> Message<'a> {
    /// A message with no key, broker timestamp or headers: a line of a
    /// file, or one made up in a test.
    pub fn plain(topic: &'a str, partition: i32, offset: i64, payload: &'a [u8]) -> Self {
        Message { payload, meta: MessageMeta { topic, partition, offset, key: None, timestamp_ms: None, headers: &[] } }
    }
}

/// Counters of one metric in one partition.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct MetricStats {
    /// Events that passed the metric's filter.
    pub events: u64,
    /// Events too late for the metric.
    pub late: u64,
    /// Events that went to the `__other__` series.
    pub overflow: u64,
    /// Base windows closed.
    pub windows_closed: u64,
    /// Rows emitted, all tiers.
    pub rows: u64,
}

/// Counters of one partition.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PartitionStats {
    /// Messages seen, replayed ones included.
    pub messages: u64,
    /// Messages re-read during replay whose effects were already persisted.
    pub replayed_skips: u64,
    /// Dead letters by reason (index = position in [`Reason::ALL`]).
    pub dead_letters: [u64; Reason::ALL.len()],
    /// Per metric.
    pub metrics: Vec<MetricStats>,
}

impl PartitionStats {
    /// Dead letters for `reason`.
    pub fn dead_letters_for(&self, reason: Reason) -> u64 {
        Reason::ALL.iter().position(|r| *r == reason).map_or(0, |i| self.dead_letters[i])
    }

    fn count(&mut self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.dead_letters[i] += 1;
        }
    }
}

/// The state of one partition.
pub struct Partition {
    plan: Arc<CompiledPlan>,
    partition: i32,
    metrics: Vec<MetricState>,
    /// Per metric: the first offset it counts (`None`: from the beginning).
    /// A metric deployed while the partition runs starts where it was, and
    /// skips older messages when they are replayed.
    since_offset: Vec<Option<i64>>,
    /// Per metric: whether it took over its table from another version of
    /// it when it started (see [`crate::MetricStart::replaced`]).
    replaced: Vec<bool>,
    max_event_time: Option<i64>,
    next_offset: Option<i64>,
    /// Messages below this offset were processed before the last restore.
    replay_barrier: i64,
    /// Until replay passes the barrier, the replay point cannot move past this.
    replay_floor: Option<i64>,
    /// Processing time of the last message, for idle advance.
    last_message_at_ms: Option<i64>,
    stats: PartitionStats,
    /// Tier rows are emitted at most once per this much event time (0: at
    /// every base window close). See [`Partition::with_tier_rows_every`].
    tier_rows_every_ms: i64,
    /// Tier rows held back: (tier window, series) pairs not yet emitted.
    held_back: usize,
    /// `max event time / tier_rows_every_ms` when held-back rows were last emitted.
    emitted_in: Option<i64>,
    /// While tier rows are held back: the progress as of the last moment
    /// none was, which is what may be committed.
    settled: Option<Progress>,
}

/// Where a partition was at a moment: what a [`Checkpoint`] records of it.
#[derive(Debug, Clone, Copy)]
struct Progress {
    replay_offset: i64,
    next_offset: i64,
    max_event_time: Option<i64>,
}

impl Partition {
    /// A fresh partition with no state.
    pub fn new(plan: Arc<CompiledPlan>, partition: i32) -> Self {
        let metrics = plan.plan.metrics.iter().map(|m| MetricState::new(m)).collect();
        let stats =
            PartitionStats { metrics: vec![MetricStats::default(); plan.plan.metrics.len()], ..Default::default() };
        Partition {
            since_offset: vec![None; plan.plan.metrics.len()],
            replaced: vec![false; plan.plan.metrics.len()],
            plan,
            partition,
            metrics,
            max_event_time: None,
            next_offset: None,
            replay_barrier: i64::MIN,
            replay_floor: None,
            last_message_at_ms: None,
            stats,
            tier_rows_every_ms: 0,
            held_back: 0,
            emitted_in: None,
            settled: None,
        }
    }

    /// Holds tier rows back and emits them at most once per `every_ms` of
    /// event time (when event time first advances into a new step of it),
    /// and when their tier window closes, instead of at every base window
    /// close: a series' hourly and daily rows are then written once per
    /// `every_ms` instead of once per base window, at the cost of tier rows
    /// that lag by up to `every_ms` and of a replay point (see
    /// [`Partition::checkpoint`]) that stays where it was when no row was
    /// held back, so a restart replays up to `every_ms` more. `0` (the
    /// default) emits them at every base window close.
    pub fn with_tier_rows_every(mut self, every_ms: u64) -> Self {
        self.tier_rows_every_ms = i64::try_from(every_ms).unwrap_or(i64::MAX);
        self.settle();
        self
    }

    /// A partition resuming from `checkpoint`, with the open tier rows read
    /// back from the store. The caller then feeds messages from
    /// `checkpoint.replay_offset` on.
    ///
    /// `plan` may differ from the plan that wrote the checkpoint: metrics the
    /// checkpoint does not list start at its `next_offset`, as if deployed
    /// there, and their stored tier rows (from an earlier version of the
    /// same table) are not merged into.
    pub fn restore(plan: Arc<CompiledPlan>, checkpoint: &Checkpoint, tier_rows: Vec<Row>) -> Self {
        let mut p = Partition::new(plan, checkpoint.partition);
        p.max_event_time = checkpoint.max_event_time;
        p.next_offset = Some(checkpoint.next_offset);
        p.replay_barrier = checkpoint.next_offset;
        p.replay_floor = Some(checkpoint.replay_offset);
        p.settled = Some(Progress {
            replay_offset: checkpoint.replay_offset,
            next_offset: checkpoint.next_offset,
            max_event_time: checkpoint.max_event_time,
        });
        if let Some(known) = &checkpoint.metrics {
            for (m, metric) in p.plan.plan.metrics.iter().enumerate() {
                (p.since_offset[m], p.replaced[m]) = match known.iter().find(|k| k.hash == metric.hash) {
                    Some(start) => (start.since_offset, start.replaced),
                    // Starting now, in the table of another version that ran.
                    None => (
                        Some(checkpoint.next_offset),
                        known.iter().any(|k| k.table.as_deref() == Some(metric.table.as_str())),
                    ),
                };
            }
        }
        for row in tier_rows {
            let Some(m) = row.metric_index(&p.plan.plan) else { continue };
            if p.since_offset[m].is_some_and(|since| since >= checkpoint.next_offset) {
                continue; // New with this restore: the rows belong to an earlier version.
            }
            let Some(tier) = row.metric.tiers.get(row.tier).filter(|_| row.tier > 0) else { continue };
            let end = row.window_start + tier.width_ms as i64;
            if end <= p.watermark(m).unwrap_or(i64::MIN) {
                continue; // Closed: nothing more will merge into it.
            }
            let window = p.metrics[m].tiers[row.tier].entry(row.window_start).or_default();
            // Each row says how far its own series goes: see `TierWindow::included_through`.
            let i = window.restore(&row.keys, row.states);
            if window.included_through.len() <= i {
                window.included_through.resize(i + 1, i64::MIN);
            }
            window.included_through[i] = row.included_through.unwrap_or(i64::MIN);
        }
        p
    }

    /// The partition number.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Counters.
    pub fn stats(&self) -> &PartitionStats {
        &self.stats
    }

    /// Highest event time seen, ms.
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_event_time
    }

    /// The metric's watermark: max event time minus its lateness.
    pub fn watermark(&self, metric: usize) -> Option<i64> {
        let lateness = self.plan.plan.metrics[metric].lateness_ms as i64;
        self.max_event_time.map(|t| t.saturating_sub(lateness))
    }

    /// Open series per metric (base windows), for memory and cardinality reporting.
    pub fn live_series(&self) -> Vec<usize> {
        self.metrics.iter().map(|m| m.windows.values().map(|w| w.series.len()).sum()).collect()
    }

    /// The plan this partition runs; the metric indices of its counters and
    /// open windows refer to it.
    pub fn plan(&self) -> &Arc<CompiledPlan> {
        &self.plan
    }

    /// The open base windows of metric `metric`, oldest first, with their
    /// start (for live exports; see `export::live`).
    pub fn open_windows(&self, metric: usize) -> impl Iterator<Item = (i64, &Window)> {
        self.metrics.get(metric).into_iter().flat_map(|m| m.windows.iter().map(|(start, w)| (*start, w)))
    }

    /// The offset that may be committed once the rows emitted so far are
    /// durable: the first offset still needed to rebuild the open windows
    /// (and, while tier rows are held back, the windows closed since the
    /// last moment none was).
    pub fn replay_point(&self) -> Option<i64> {
        self.progress().map(|p| p.replay_offset)
    }

    /// One past the last offset processed.
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    /// Tier rows held back (see [`Partition::with_tier_rows_every`]), one
    /// per series and tier window.
    pub fn held_back_tier_rows(&self) -> usize {
        self.held_back
    }

    /// Takes note of a message at `offset` arriving at `now_ms`; whether it
    /// was processed before the last restore.
    fn arrive(&mut self, offset: i64, now_ms: i64) -> bool {
        self.stats.messages += 1;
        self.next_offset = Some(self.next_offset.map_or(offset + 1, |n| n.max(offset + 1)));
        if self.replay_floor.is_some() && offset + 1 >= self.replay_barrier {
            self.replay_floor = None;
        }
        self.last_message_at_ms = Some(now_ms);
        if self.max_event_time.is_some_and(|t| self.plan.is_unreachable_event_time(t, now_ms)) {
            // The clock went back after an idle partition had advanced
            // event time with it (see `CompiledPlan::is_unreachable_event_time`).
            self.max_event_time = Some(now_ms);
        }
        offset < self.replay_barrier
    }

    /// Processes `payloads` as this partition's messages of `topic` at
    /// `first_offset` and on, each a [`Message::plain`] (see [`Partition::process`]).
    pub fn process_all<P: AsRef<[u8]>>(
        &mut self,
        topic: &str,
        first_offset: i64,
        payloads: impl IntoIterator<Item = P>,
        now_ms: i64,
        out: &mut Output,
    ) {
        for (offset, payload) in (first_offset..).zip(payloads) {
            self.process(&Message::plain(topic, self.partition, offset, payload.as_ref()), now_ms, out);
        }
    }

    /// Processes one message, appending rows of windows it closes and dead letters to `out`.
    ///
    /// `now_ms` is the processing time (wall clock). With the message's
    /// broker timestamp it bounds event time: an event more than its
    /// source's `max_future` ahead of the earlier of the two (`now_ms` alone
    /// when the message has no timestamp) is dead-lettered as
    /// [`Reason::FutureTime`] and moves nothing (no window, no watermark),
    /// so one wrong clock cannot make every later event late. The earlier
    /// of the two, because a producer sets a message's create time: a
    /// producer whose clock is wrong must not move the bound for its own
    /// events. Replayed later, a message meets the same bound unless its
    /// broker timestamp was ahead of the processing time when first seen
    /// (then the bound is looser on replay, by at most that difference).
    pub fn process(&mut self, message: &Message<'_>, now_ms: i64, out: &mut Output) {
        let offset = message.meta.offset;
        let is_replayed = self.arrive(offset, now_ms);
        let plan = Arc::clone(&self.plan);
        let mut late_for: Vec<&str> = Vec::new();
        let mut event_time = None;
        for (s, source) in plan.plan.sources.iter().enumerate() {
            if source.topic != message.meta.topic {
                continue;
            }
            let row = match plan.decoders[s].decode(message.payload) {
                Ok(row) => row,
                Err(_) if is_replayed => {
                    self.stats.replayed_skips += 1;
                    return;
                }
                Err(rejection) if rejection.reason == Reason::Oversized => {
                    let sha256: [u8; 32] = Sha256::digest(message.payload).into();
                    let len = message.payload.len() as u64;
                    let rejection = oversized(len, plan.max_message_bytes(), &sha256, message.payload.len());
                    self.dead_letter(message, rejection, out);
                    return;
                }
                Err(rejection) => {
                    self.dead_letter(message, rejection, out);
                    return;
                }
            };
            let Val::Ts(ts) = row[source.event_time] else {
                unreachable!("the decoder guarantees a non-null event time");
            };
            if let Some(rejection) = too_far_ahead(ts, source.max_future_ms, message.meta.timestamp_ms, now_ms) {
                if is_replayed {
                    self.stats.replayed_skips += 1;
                } else {
                    self.dead_letter(message, rejection, out);
                }
                return;
            }
            event_time = Some(ts);
            // Inline: most events are classified by no metric, and none should allocate for it.
            let classified: SmallVec<[Cell<Option<u32>>; 4]> =
                SmallVec::from_elem(Cell::new(None), source.classifications.len());
            let texts = &plan.text_slots[s];
            let text_masks: SmallVec<[Cell<u64>; 4]> = SmallVec::from_elem(Cell::new(TextSlots::UNKNOWN), texts.len());
            let ctx = EventCtx {
                row: &row,
                meta: &message.meta,
                classifications: &source.classifications,
                classifiers: &plan.classifiers,
                cache: &classified,
                texts,
                text_masks: &text_masks,
            };
            let scope = Scope::Event(&ctx);
            let at = Position { ts, partition: self.partition, offset };
            // Overwritten in place per metric: cheaper than clearing and extending.
            let mut key: SmallVec<[Val<'_>; 4]> = SmallVec::from_elem(Val::Null, plan.max_keys);
            for &m in &plan.metrics_by_source[s] {
                if self.since_offset[m].is_some_and(|since| offset < since) {
                    continue; // Replayed from before this metric was deployed.
                }
                let metric = &plan.plan.metrics[m];
                let prepared = &plan.prepared[m];
                if let Some(filter) = &prepared.filter {
                    if filter.test(&scope, &plan.regexes) != Some(true) {
                        continue;
                    }
                }
                let width = metric.window_ms as i64;
                let start = ts.div_euclid(width) * width;
                let watermark = self.max_event_time.map(|t| t.saturating_sub(metric.lateness_ms as i64));
                if watermark.is_some_and(|w| start + width <= w) {
                    if is_replayed {
                        // Its window closed before the checkpoint: already counted or dead-lettered.
                        continue;
                    }
                    self.stats.metrics[m].late += 1;
                    late_for.push(&metric.name);
                    continue;
                }
                let stats = &mut self.stats.metrics[m];
                stats.events += 1;
                let window = self.metrics[m].windows.entry(start).or_insert_with(|| Window {
                    series: SeriesMap::default(),
                    states: Vec::new(),
                    min_offset: offset,
                });
                window.min_offset = window.min_offset.min(offset);
                let key = &mut key[..prepared.keys.len()];
                for (part, k) in key.iter_mut().zip(&prepared.keys) {
                    *part = k.eval(&scope, &plan.regexes);
                }
                let i = match window.series.entry(key, metric.cardinality_limit as usize) {
                    Slot::Existing(i) => i,
                    Slot::Overflow(i) => {
                        stats.overflow += 1;
                        i
                    }
                    slot @ (Slot::New(i) | Slot::NewOverflow(i)) => {
                        stats.overflow += u64::from(matches!(slot, Slot::NewOverflow(_)));
                        window.states.extend(metric.aggregates.iter().map(AggState::new));
                        i
                    }
                };
                let states = window.states_mut(i, prepared.width);
                for &c in &prepared.counts {
                    states[c].count();
                }
                for (c, test) in &prepared.count_ifs {
                    states[*c].count_by(u64::from(test.test(&scope, &plan.regexes) == Some(true)));
                }
                for (v, arg) in &prepared.values {
                    states[*v].add(&arg.eval(&scope, &plan.regexes), at);
                }
            }
        }
        if is_replayed && late_for.is_empty() {
            self.stats.replayed_skips += u64::from(event_time.is_none());
        }
        if !late_for.is_empty() {
            let detail = format!(
                "event time {} is older than the lateness of {}",
                event_time.map(format_timestamp).unwrap_or_default(),
                late_for.join(", ")
            );
            self.dead_letter(message, Rejection { reason: Reason::Late, detail }, out);
        }
        if let Some(ts) = event_time {
            if self.max_event_time.is_none_or(|m| ts > m) {
                self.max_event_time = Some(ts);
                self.close_ready(out);
            }
        }
    }

    /// Dead-letters a message that was read only in part because it is
    /// larger than the engine takes (see [`EngineConfig`]): `prefix` is its
    /// beginning, `len` its whole size and `sha256` the digest of all of
    /// it. The reader's memory stays bounded by the limit, and so does the
    /// dead letter. It counts as a message at its offset like any other.
    ///
    /// [`EngineConfig`]: crate::EngineConfig
    pub fn process_truncated(
        &mut self,
        message: &Message<'_>,
        len: u64,
        sha256: &[u8; 32],
        now_ms: i64,
        out: &mut Output,
    ) {
        if self.arrive(message.meta.offset, now_ms) {
            self.stats.replayed_skips += 1;
            return;
        }
        let rejection = oversized(len, self.plan.max_message_bytes(), sha256, message.payload.len());
        self.dead_letter(message, rejection, out);
    }

    fn dead_letter(&mut self, message: &Message<'_>, rejection: Rejection, out: &mut Output) {
        self.stats.count(rejection.reason);
        let mut payload = message.payload;
        if rejection.reason == Reason::Oversized {
            // The whole message stored as its own dead letter would be as
            // large as what was refused (a 1 GB line made a run fail).
            payload = &payload[..payload.len().min(DEAD_LETTER_PREFIX_BYTES)];
        }
        out.dead_letters.push(DeadLetter {
            partition: self.partition,
            offset: message.meta.offset,
            topic: message.meta.topic.to_string(),
            reason: rejection.reason,
            detail: rejection.detail,
            payload: payload.to_vec(),
            key: message.meta.key.map(<[u8]>::to_vec),
        });
    }
}

/// How much of an oversized message its dead letter keeps.
pub const DEAD_LETTER_PREFIX_BYTES: usize = 4096;

/// The rejection of an oversized message of `len` bytes, `available` of
/// which are at hand; its dead letter keeps at most [`DEAD_LETTER_PREFIX_BYTES`].
fn oversized(len: u64, limit: usize, sha256: &[u8; 32], available: usize) -> Rejection {
    let kept = available.min(DEAD_LETTER_PREFIX_BYTES);
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    Rejection {
        reason: Reason::Oversized,
        detail: format!("{len} bytes; the limit is {limit}; sha256 {hex}; the first {kept} bytes are kept"),
    }
}

/// Why an event at `ts` is further ahead than `max_future_ms` of the
/// earlier of its message's broker timestamp and the processing time
/// `now_ms`; `None` when it is not.
fn too_far_ahead(ts: i64, max_future_ms: u64, broker_ms: Option<i64>, now_ms: i64) -> Option<Rejection> {
    let (reference, what) = match broker_ms {
        Some(broker) if broker <= now_ms => (broker, "the message's broker timestamp"),
        _ => (now_ms, "the processing time"),
    };
    let ahead = i64::try_from(max_future_ms).unwrap_or(i64::MAX);
    if ts <= reference.saturating_add(ahead) {
        return None;
    }
    Some(Rejection {
        reason: Reason::FutureTime,
        detail: format!(
            "event time {} is more than {} ahead of {what} {}",
            format_timestamp(ts),
            dsl::fmt::format_duration(max_future_ms),
            format_timestamp(reference)
        ),
    })
}
