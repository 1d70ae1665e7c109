//! What the loop and the rebalance callbacks share, and the flush: take
//! from the ledger, write (in the background or at once), then commit.

use super::ledger::{Key, Ledger, Progress};
use super::lock;
use super::rebalance::{Context, Retry};
use super::writer::{FlushError, FlushResult, StoreWriter};
use crate::dead_letter::DeadLetterProducer;
use crate::{Observer, Refusal, Settings};
use dsl::bundle::MetricChanges;
use engine::{CompiledPlan, Partition};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often retention (`ttl`, `keep`) is enforced.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// How long the loop waits for a busy store writer before it serves
/// librdkafka again: rebalances must not wait for a slow store, and a
/// consumer that stops polling for `max.poll.interval.ms` loses its
/// partitions.
const WRITER_WAIT_SLICE: Duration = Duration::from_millis(100);

/// Everything the loop and the rebalance callbacks share, behind one mutex.
pub(super) struct Shared {
    /// The running plan; the empty plan until the first is applied.
    pub plan: Arc<CompiledPlan>,
    /// Bundle version of `plan`; `None` for local files.
    pub plan_version: Option<u64>,
    /// Where `plan`'s dead letters go (see [`Settings::dead_letter_topic`]).
    pub dead_letter_topic: Option<String>,
    /// Shared with the writer thread, which holds it while it writes; every
    /// other use waits for the writer first (see [`Shared::store`]).
    pub store: Arc<Mutex<Box<dyn store::Store + Send>>>,
    /// Writes flushes in the background.
    pub writer: StoreWriter,
    /// A background flush that ended while the store was wanted for
    /// something else, waiting for [`Shared::finish_writer`].
    pub written: Option<(super::ledger::Flush, FlushResult)>,
    pub settings: Settings,
    pub partitions: BTreeMap<Key, Partition>,
    /// Assigned partitions, with the rebalance count at their assignment:
    /// a message polled before that belongs to an earlier ownership.
    pub assigned: BTreeMap<Key, u64>,
    /// Assigned partitions whose restore failed, waiting (paused) for a retry.
    pub unrestored: BTreeMap<Key, Retry>,
    /// The owner epoch this instance claimed for each partition it restored
    /// (see [`store::Store::claim`]); every write carries them.
    pub epochs: BTreeMap<Key, u64>,
    /// Rebalances so far (shared with the loop, which stamps each message).
    pub rebalances: Arc<AtomicU64>,
    /// Output not yet written, what a flush takes, what may be committed.
    pub ledger: Ledger,
    pub dead_letters: Option<Arc<DeadLetterProducer>>,
    /// When the last flush was taken.
    pub last_flush: Instant,
    /// When retention was last enforced.
    pub last_sweep: Instant,
    pub is_paused: bool,
    pub observer: Arc<dyn Observer>,
}

impl Shared {
    /// Emits the tier rows the partitions `keys` hold back into what is pending.
    pub fn emit_held_back<'k>(&mut self, keys: impl Iterator<Item = &'k Key>) {
        for key in keys {
            if let Some(partition) = self.partitions.get_mut(key) {
                partition.emit_held_back(self.ledger.output(&key.0));
            }
        }
    }

    /// Completes the background flush once it has ended, and starts the
    /// next when one is due. While the writer is still busy, consuming goes
    /// on until another flush's worth of messages (`flush_messages`) is
    /// pending, then waits for it: the store sets the pace. `Ok(false)`:
    /// still waiting after [`WRITER_WAIT_SLICE`]; serve librdkafka and call again.
    pub fn flush_in_background(&mut self, consumer: &BaseConsumer<Context>) -> Result<bool, FlushError> {
        let must_wait = self.ledger.pending_messages() >= self.settings.flush_messages as u64;
        self.finish_writer(consumer, if must_wait { WRITER_WAIT_SLICE } else { Duration::ZERO })?;
        if self.writer.is_busy {
            return Ok(!must_wait);
        }
        if self.is_due() {
            self.start_writer();
        }
        Ok(true)
    }

    fn is_due(&self) -> bool {
        self.ledger.pending_messages() >= self.settings.flush_messages as u64
            || (self.last_flush.elapsed() >= self.settings.flush_interval && self.ledger.has_pending())
    }

    pub fn advance_idle(&mut self) {
        let now = crate::control::now_ms();
        let idle_ms = self.settings.idle_timeout.as_millis() as i64;
        for ((topic, _), partition) in self.partitions.iter_mut() {
            partition.on_idle(now, idle_ms, self.ledger.output(topic));
        }
    }

    /// Dead letters to Kafka, then rows + dead letters + checkpoints to the
    /// store in one batch per topic, then replay points to Kafka; the
    /// background flush first, if one is under way. Nothing at all (no
    /// partition, nothing pending, as before the first plan) writes nothing.
    pub fn flush(&mut self, consumer: &BaseConsumer<Context>) -> Result<(), FlushError> {
        self.finish_writer(consumer, Duration::MAX)?;
        if self.partitions.is_empty() && !self.ledger.has_pending() {
            return Ok(());
        }
        let flush = self.take();
        let _span = tracing::info_span!("flush", messages = flush.messages).entered();
        let written = flush.write(&mut **lock(&self.store), self.dead_letters.as_deref());
        self.finish_flush(flush, written, consumer)
    }

    /// Flushes in the background: the writer thread writes the store while
    /// the loop goes on consuming, and [`Shared::finish_writer`] commits the
    /// replay points once it is done. Starts nothing while a background
    /// flush is under way or unfinished: its outcome decides what comes next.
    fn start_writer(&mut self) {
        if self.ledger.is_in_flight() {
            return;
        }
        let flush = self.take();
        // The thread can only be gone after a panic, which the next wait for it resumes.
        if let Err(flush) = self.writer.send(flush) {
            let written = flush.write(&mut **lock(&self.store), self.dead_letters.as_deref());
            self.written = Some((*flush, written));
        }
    }

    /// Waits up to `wait` for the background flush, if any; its outcome
    /// waits in `written` for [`Shared::finish_writer`].
    fn await_writer(&mut self, wait: Duration) {
        if let Some(outcome) = self.writer.outcome(wait) {
            self.written = Some(outcome);
        }
    }

    /// Completes the background flush if it ends within `wait`: see
    /// [`Shared::finish_flush`].
    fn finish_writer(&mut self, consumer: &BaseConsumer<Context>, wait: Duration) -> Result<(), FlushError> {
        self.await_writer(wait);
        match self.written.take() {
            Some((flush, written)) => self.finish_flush(flush, written, consumer),
            None => Ok(()),
        }
    }

    /// The store, once no background flush is using it.
    pub fn store(&mut self) -> MutexGuard<'_, Box<dyn store::Store + Send>> {
        self.await_writer(Duration::MAX);
        lock(&self.store)
    }

    /// Takes everything pending from the ledger, with every partition's
    /// progress of this moment.
    fn take(&mut self) -> super::ledger::Flush {
        self.last_flush = Instant::now();
        let plan_version = self.plan_version;
        let progress = self.partitions.iter().map(|(key, state)| Progress {
            key: key.clone(),
            checkpoint: state.checkpoint().map(|c| engine::Checkpoint { plan_version, ..c }),
            replay_point: state.replay_point(),
            epoch: self.epochs.get(key).copied(),
        });
        let mut flush = self.ledger.take(progress);
        flush.dead_letter_topic.clone_from(&self.dead_letter_topic);
        flush
    }

    /// After [`super::ledger::Flush::write`]: on success, reports it,
    /// commits its replay points and publishes the status; on failure, the
    /// ledger puts it back in front of what was consumed since, to be
    /// written first next time.
    fn finish_flush(
        &mut self,
        flush: super::ledger::Flush,
        written: FlushResult,
        consumer: &BaseConsumer<Context>,
    ) -> Result<(), FlushError> {
        let mut report = match written {
            Ok(report) => report,
            Err(error) => {
                self.ledger.failed(flush);
                if let FlushError::Store(store::Error::Fenced { topic, partitions }) = &error {
                    self.drop_fenced(topic, partitions);
                    return Ok(());
                }
                return Err(error);
            }
        };
        let partitions: Vec<(&str, &Partition)> = self.partitions.iter().map(|((t, _), p)| (t.as_str(), p)).collect();
        let rows: Vec<(&str, &engine::Row)> =
            flush.outputs.iter().flat_map(|(t, out)| out.rows.iter().map(move |r| (t.as_str(), r))).collect();
        self.observer.flushed_state(&self.plan, &partitions, &rows);

        let mut tpl = TopicPartitionList::new();
        for (topic, partition, replay) in self.ledger.written(&flush) {
            if tpl.add_partition_offset(&topic, partition, Offset::Offset(replay)).is_ok() {
                report.committed.push((topic, partition, replay));
            }
        }
        if tpl.count() > 0 {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    self.ledger.commit_done(&report.committed);
                    debug!(partitions = tpl.count(), "Committed offsets.");
                }
                // Not fatal: the rows are durable and the next flush commits again.
                Err(error) => warn!(error = %error, "Offset commit failed; will retry at the next flush."),
            }
        }
        self.observer.flushed(&report);
        self.publish_status();
        if self.last_sweep.elapsed() >= SWEEP_INTERVAL {
            self.sweep();
        }
        Ok(())
    }

    /// Gives up partitions another owner has claimed since this one did
    /// (it was paused past its session timeout, and the group moved them):
    /// their state and output go, nothing of theirs is written or
    /// committed; the rest is written at the next flush. librdkafka learns
    /// of the move at its next heartbeat and revokes them.
    fn drop_fenced(&mut self, topic: &str, partitions: &[i32]) {
        warn!(topic, ?partitions, "Another owner claimed these partitions; dropping their state and output.");
        let keys: Vec<Key> = partitions.iter().map(|p| (topic.to_string(), *p)).collect();
        self.forget(&keys);
        self.observer.fenced(topic, partitions);
        self.publish_status();
    }

    /// Switches every partition to `plan` (the caller has flushed, so what
    /// was produced before the switch goes first); the stopped metrics' last
    /// rows join what is pending, each holding its metric. Returns what
    /// changed, or why the plan cannot run here.
    pub fn switch(&mut self, plan: &Arc<CompiledPlan>, version: Option<u64>) -> Result<MetricChanges, Refusal> {
        self.store().setup(&plan.plan).map_err(|e| Refusal::Store { message: e.to_string() })?;
        let changes = MetricChanges::between(Some(&self.plan.plan), &plan.plan);
        for ((topic, _), partition) in self.partitions.iter_mut() {
            partition.reconfigure(Arc::clone(plan), self.ledger.output(topic));
        }
        self.plan = Arc::clone(plan);
        self.plan_version = version;
        // Partitions waiting for a newer plan's checkpoint may resume now.
        for retry in self.unrestored.values_mut() {
            retry.now();
        }
        self.dead_letter_topic = super::dead_letter_topic(self.settings.dead_letter_topic.as_deref(), plan);
        Ok(changes)
    }

    /// Deletes rows past their tier's retention, measured against the data's
    /// own time (the highest event time seen), so replaying old data never
    /// deletes what it just wrote, but never from later than the wall clock:
    /// event time is whatever producers wrote, and one event dated 9999 must
    /// not make every stored row look expired (issue 25). Failures are
    /// logged and retried later.
    fn sweep(&mut self) {
        self.last_sweep = Instant::now();
        let Some(newest) = self.partitions.values().filter_map(Partition::max_event_time).max() else { return };
        let now = newest.min(crate::control::now_ms());
        let plan = Arc::clone(&self.plan);
        match self.store().sweep(&plan.plan, now) {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, "Deleted rows past their retention."),
            Err(error) => warn!(error = %error, "Retention sweep failed; will retry."),
        }
    }
}
