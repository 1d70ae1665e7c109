//! The consumer loop and the rebalance callbacks.
//!
//! The protocol that keeps results exactly-once (`docs/exactly-once.md`):
//!
//! * a flush takes the pending output together with every partition's
//!   checkpoint and replay point *of that same moment*, writes output and
//!   checkpoints to the store (one transaction in SQLite), and only then
//!   commits the replay points to Kafka: a commit is never ahead of the
//!   store;
//! * on assignment a partition is claimed (owner epoch), restored from the
//!   store and started at the store checkpoint's replay point, whatever
//!   Kafka has committed: the store is the truth;
//! * its queue is split off before the first fetch: a message waiting in
//!   the consumer queue while newer ones are taken from the partition's own
//!   would be processed after them, out of order;
//! * every write carries the owner epochs; the store refuses a write for a
//!   partition claimed by someone else since.

use crate::dead_letter::DeadLetterProducer;
use crate::{Error, FlushReport, MetricStatus, Observer, PartitionStatus, PlanUpdate, Result, Settings, Status};
use dsl::bundle::MetricChanges;
use engine::{Checkpoint, CompiledPlan, Message, MessageMeta, Output, Partition, Reason};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{DeploymentRecord, Store, WriteBatch};
use tracing::{debug, error, info, warn};

type Key = (String, i32);

/// Everything the loop and the rebalance callbacks share.
struct Shared {
    plan: Arc<CompiledPlan>,
    /// Bundle version of `plan`; `None` for local files.
    plan_version: Option<u64>,
    /// Rows that metrics of earlier plans flushed when they stopped, with
    /// the plan their indices refer to; written before anything else.
    retired: Vec<(Arc<CompiledPlan>, BTreeMap<String, Output>)>,
    /// Shared with the writer thread, which holds it while it writes; every
    /// other use waits for the writer first (see [`Shared::store`]).
    store: Arc<Mutex<Box<dyn Store + Send>>>,
    /// Writes flushes in the background.
    writer: StoreWriter,
    /// A background flush that ended while the store was wanted for
    /// something else, waiting for [`Shared::finish_writer`].
    written: Option<(Taken, FlushResult)>,
    settings: Settings,
    partitions: BTreeMap<Key, Partition>,
    /// Assigned partitions, with the rebalance count at their assignment:
    /// a message polled before that belongs to an earlier ownership.
    assigned: BTreeMap<Key, u64>,
    /// Assigned partitions whose restore failed, waiting (paused) for a retry.
    unrestored: BTreeMap<Key, Retry>,
    /// The owner epoch this instance claimed for each partition it restored
    /// (see [`store::Store::claim`]); every write carries them.
    epochs: BTreeMap<Key, u64>,
    /// Rebalances so far (shared with the loop, which stamps each message).
    rebalances: Arc<AtomicU64>,
    /// Output not yet written, per topic.
    pending: BTreeMap<String, Output>,
    pending_messages: u64,
    committed: BTreeMap<Key, i64>,
    dead_letters: Option<Arc<DeadLetterProducer>>,
    /// When the last flush was taken.
    last_flush: Instant,
    /// When retention was last enforced.
    last_sweep: Instant,
    is_paused: bool,
    observer: Arc<dyn Observer>,
}

/// How often retention (`ttl`, `keep`) is enforced.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why a flush did not complete; both are retried.
enum FlushError {
    Store(store::Error),
    DeadLetters(String),
}

type FlushResult = std::result::Result<FlushReport, FlushError>;

/// The thread that writes flushes in the background ([`Shared::start_writer`]).
struct StoreWriter {
    jobs: Sender<Taken>,
    outcomes: Receiver<(Taken, FlushResult)>,
    /// Whether a flush was sent and its outcome not yet received.
    is_busy: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StoreWriter {
    fn spawn(
        store: Arc<Mutex<Box<dyn Store + Send>>>,
        dead_letters: Option<Arc<DeadLetterProducer>>,
    ) -> std::io::Result<Self> {
        let (jobs, taken) = mpsc::channel::<Taken>();
        let (outcome, outcomes) = mpsc::channel();
        let thread = std::thread::Builder::new().name("store-writer".into()).spawn(move || {
            // Ends when the consumer is dropped (both channels close with it).
            for taken in taken {
                let written = taken.write(&mut **lock(&store), dead_letters.as_deref());
                if outcome.send((taken, written)).is_err() {
                    break;
                }
            }
        })?;
        Ok(StoreWriter { jobs, outcomes, is_busy: false, thread: Some(thread) })
    }

    /// Hands a flush to the thread (it must not be busy); gives it back if
    /// the thread is gone.
    fn send(&mut self, taken: Taken) -> std::result::Result<(), Box<Taken>> {
        self.jobs.send(taken).map_err(|mpsc::SendError(taken)| Box::new(taken))?;
        self.is_busy = true;
        Ok(())
    }

    /// The outcome of the flush handed over: `None` if there is none, or
    /// if it is still being written after waiting up to `wait`
    /// (`Duration::MAX`: until it is done).
    fn outcome(&mut self, wait: Duration) -> Option<(Taken, FlushResult)> {
        if !self.is_busy {
            return None;
        }
        let received = match self.outcomes.recv_timeout(wait) {
            Ok(outcome) => Some(outcome),
            Err(mpsc::RecvTimeoutError::Timeout) => return None,
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        };
        self.is_busy = false;
        match received {
            Some(outcome) => Some(outcome),
            // The thread took the flush and ended without an answer: it
            // panicked. Its rows are gone, so going on could commit past
            // them: fail as loudly as a write in the loop would have.
            None => match self.thread.take().map(std::thread::JoinHandle::join) {
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                _ => unreachable!("the store writer answers every flush it takes while the consumer lives"),
            },
        }
    }
}

impl Drop for StoreWriter {
    /// Ends the thread (closing its channel) and waits for it, so that the
    /// store is closed when the consumer is.
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.jobs, mpsc::channel().0));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Display for FlushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushError::Store(error) => error.fmt(f),
            FlushError::DeadLetters(error) => f.write_str(error),
        }
    }
}

struct Context {
    shared: Arc<Mutex<Shared>>,
    observer: Arc<dyn Observer>,
    /// The consumer this is the context of (set once it exists), to split
    /// partition queues off inside the rebalance callback.
    consumer: OnceLock<Weak<BaseConsumer<Context>>>,
}

/// A message taken from the consumer, stamped with the rebalance count at
/// the time: the loop gathers a batch before processing it, and a
/// rebalance in between may have taken its partition away. It stays in
/// librdkafka's buffer (no copy) until the batch is done with it.
struct Polled<'c> {
    message: BorrowedMessage<'c>,
    rebalances: u64,
}

/// Most messages gathered into one batch.
const MAX_BATCH: usize = 4096;

/// How long the loop waits for a busy store writer before it serves
/// librdkafka again: rebalances must not wait for a slow store, and a
/// consumer that stops polling for `max.poll.interval.ms` loses its
/// partitions.
const WRITER_WAIT_SLICE: Duration = Duration::from_millis(100);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves state we can still flush: recover it.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.observer.lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    /// Replaces rdkafka's default handling (`pre_rebalance`, assign,
    /// `post_rebalance`) because an assignment needs two things done
    /// between receiving the partitions and assigning them: each partition
    /// starts at its **store** checkpoint's replay point (the store is the
    /// truth, see [`Shared::restore`]), and its queue is split off from the
    /// consumer queue before the first fetch, so that none of its messages
    /// can wait in the consumer queue while newer ones are taken from the
    /// partition's own (which processed them out of order).
    fn rebalance(&self, consumer: &BaseConsumer<Self>, error: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let result = match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let paused = self.before_assign(tpl);
                let assigned = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if assigned.is_ok() && paused.count() > 0 {
                    // Their restore failed: they wait, paused, for the loop to retry it.
                    if let Err(error) = consumer.pause(&paused) {
                        warn!(error = %error, "Cannot pause partitions waiting for their restore.");
                    }
                }
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                // librdkafka's advice for a failed rebalance: drop the assignment and rejoin.
                warn!(error = ?other, "Rebalance failed; giving up the assignment.");
                let all = consumer.assignment().unwrap_or_default();
                self.revoke(consumer, &all);
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            warn!(error = %error, "Cannot apply the rebalance's assignment.");
        }
    }
}

impl Context {
    /// Takes over the partitions of `tpl`: restores each from the store
    /// and sets its start offset, and splits its queue off. Returns the
    /// partitions whose restore failed (to pause; they start at the
    /// committed offset, and the loop retries the restore and seeks).
    fn before_assign(&self, tpl: &mut TopicPartitionList) -> TopicPartitionList {
        let consumer = self.consumer.get().and_then(Weak::upgrade);
        let mut shared = lock(&self.shared);
        let now = shared.rebalances.fetch_add(1, Ordering::SeqCst) + 1;
        let mut paused = TopicPartitionList::new();
        let keys: Vec<Key> = tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        for key in keys {
            shared.assigned.entry(key.clone()).or_insert(now);
            // Dropping the handle keeps the split: librdkafka never forwards it again.
            drop(consumer.as_ref().and_then(|c| c.split_partition_queue(&key.0, key.1)));
            let start = match shared.partitions.get(&key) {
                Some(partition) => partition.replay_point().map(Offset::Offset),
                None => match shared.restore(&key) {
                    Ok(start) => Some(start),
                    Err(error) => {
                        warn!(topic = %key.0, partition = key.1, error = %error, "Cannot restore the partition; it waits, paused, and is retried.");
                        let retry = Retry::new(shared.settings.retry_initial);
                        shared.unrestored.insert(key.clone(), retry);
                        let _ = paused.add_partition_offset(&key.0, key.1, Offset::Invalid);
                        None
                    }
                },
            };
            if let Some(start) = start {
                if let Err(error) = tpl.set_partition_offset(&key.0, key.1, start) {
                    warn!(topic = %key.0, partition = key.1, error = %error, "Cannot set the start offset.");
                }
            }
        }
        info!(partitions = tpl.count(), "Assigned partitions.");
        shared.publish_status();
        paused
    }

    /// Gives up the partitions of `tpl`: flushes and commits what they
    /// produced (if the store is down, commits nothing: the next owner
    /// replays from the last commit), then drops their state.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut shared = lock(&self.shared);
        // Tier rows held back go with this flush, so that its commit spares
        // the next owner replaying what they cover.
        shared.emit_held_back(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
        match shared.flush(consumer) {
            Ok(()) => info!(partitions = tpl.count(), "Flushed and committed revoked partitions."),
            Err(error) => {
                warn!(error = %error, "Revoked partitions could not be flushed; the next owner replays them.")
            }
        }
        shared.rebalances.fetch_add(1, Ordering::SeqCst);
        for element in tpl.elements() {
            let key = (element.topic().to_string(), element.partition());
            shared.partitions.remove(&key);
            shared.committed.remove(&key);
            shared.assigned.remove(&key);
            shared.unrestored.remove(&key);
            shared.epochs.remove(&key);
        }
        shared.publish_status();
    }
}

/// When to try a failed restore again.
struct Retry {
    at: Instant,
    delay: Duration,
}

impl Retry {
    fn new(delay: Duration) -> Self {
        Retry { at: Instant::now() + delay, delay }
    }
}

impl Shared {
    /// Emits the tier rows the partitions `keys` hold back into what is pending.
    fn emit_held_back(&mut self, keys: impl Iterator<Item = Key>) {
        for key in keys {
            if let Some(partition) = self.partitions.get_mut(&key) {
                partition.emit_held_back(self.pending.entry(key.0).or_default());
            }
        }
    }

    /// Builds the partition's state from its store checkpoint (one
    /// attempt) and returns where consumption must start: the checkpoint's
    /// replay point, or the beginning of the partition when the store has
    /// none. The store is the truth, not the offset committed to Kafka: the
    /// commit follows the store write, so it is at most as far, and after a
    /// store was replaced it would skip what the new store never saw.
    fn restore(&mut self, key: &Key) -> std::result::Result<Offset, store::Error> {
        let every = u64::try_from(self.settings.tier_rows_every.as_millis()).unwrap_or(u64::MAX);
        let plan = Arc::clone(&self.plan);
        let mut store = self.store();
        // Claimed before the checkpoint is read: whatever an earlier owner
        // writes after this fails, whatever it wrote before is read.
        let epoch = store.claim(&key.0, key.1)?;
        let (partition, start) = match store.checkpoint(&key.0, key.1)? {
            None => (Partition::new(plan, key.1), Offset::Beginning),
            Some(c) => {
                let tiers = store.open_tier_rows(&plan.plan, &c)?;
                info!(topic = %key.0, partition = key.1, replay_offset = c.replay_offset, next_offset = c.next_offset, max_event_time = ?c.max_event_time, "Restored partition state.");
                (Partition::restore(plan, &c, tiers), Offset::Offset(c.replay_offset))
            }
        };
        drop(store);
        self.partitions.insert(key.clone(), partition.with_tier_rows_every(every));
        self.epochs.insert(key.clone(), epoch);
        Ok(start)
    }

    /// Retries the restores that failed at assignment, each when its
    /// backoff has passed; a restored partition seeks to its start and
    /// resumes.
    fn retry_restores(&mut self, consumer: &BaseConsumer<Context>) {
        let due: Vec<Key> =
            self.unrestored.iter().filter(|(_, retry)| retry.at <= Instant::now()).map(|(k, _)| k.clone()).collect();
        for key in due {
            match self.restore(&key) {
                Ok(start) => {
                    self.unrestored.remove(&key);
                    let mut tpl = TopicPartitionList::new();
                    let _ = tpl.add_partition_offset(&key.0, key.1, start);
                    let resumed = consumer
                        .seek_partitions(tpl.clone(), Duration::from_secs(10))
                        .and_then(|_| consumer.resume(&tpl));
                    match resumed {
                        Ok(()) => {
                            info!(topic = %key.0, partition = key.1, "Restored a partition after a retry; resumed.")
                        }
                        Err(error) => {
                            // Without the seek its messages cannot be trusted: try again.
                            warn!(topic = %key.0, partition = key.1, error = %error, "Cannot seek a restored partition; retrying.");
                            self.partitions.remove(&key);
                            self.unrestored.insert(key, Retry::new(self.settings.retry_initial));
                        }
                    }
                }
                Err(error) => {
                    let delay = self.unrestored.get(&key).map_or(self.settings.retry_initial, |r| r.delay);
                    self.observer.store_failed(&error, delay);
                    warn!(topic = %key.0, partition = key.1, error = %error, "Cannot read the checkpoint; retrying.");
                    let next = (delay * 2).min(self.settings.retry_max);
                    self.unrestored.insert(key, Retry { at: Instant::now() + jitter(delay, 1), delay: next });
                }
            }
        }
    }

    /// Runs the engine over a batch: each partition's messages in order,
    /// partitions spread over the worker threads. Messages of partitions
    /// taken away (or handed back) since they were polled are dropped: they
    /// were not committed, so their owner reads them again.
    fn process_batch(&mut self, batch: &[Polled<'_>]) {
        let _span = tracing::debug_span!("batch", messages = batch.len()).entered();
        let now = now_ms();
        let mut groups: Vec<(Key, Vec<&BorrowedMessage<'_>>)> = Vec::new();
        for polled in batch {
            let (topic, partition) = (polled.message.topic(), polled.message.partition());
            // Partition numbers first: cheaper than the topic names, and they mostly differ.
            let is_ours =
                |(k, assigned_at): (&Key, &u64)| k.1 == partition && k.0 == topic && *assigned_at <= polled.rebalances;
            if !self.assigned.iter().any(is_ours) {
                debug!(topic, partition, "Dropped a message polled before a rebalance.");
                continue;
            }
            if self.unrestored.keys().any(|k| k.1 == partition && k.0 == topic) {
                // Fetched before the pause: read again after the restore's seek.
                continue;
            }
            match groups.iter_mut().find(|(k, _)| k.1 == partition && k.0 == topic) {
                Some((_, messages)) => messages.push(&polled.message),
                None => groups.push(((topic.to_string(), partition), vec![&polled.message])),
            }
        }
        for (_, messages) in &groups {
            self.pending_messages += messages.len() as u64;
        }
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (key, partition) in self.partitions.iter_mut() {
            if let Some((_, messages)) = groups.iter().find(|(k, _)| k == key) {
                jobs.push(Job { topic: &key.0, partition, messages, out: Output::default() });
            }
        }
        // Spread partitions over the workers, biggest first, each to the least loaded.
        let workers = self.settings.workers.max(1).min(jobs.len().max(1));
        jobs.sort_by_key(|j| std::cmp::Reverse(j.messages.len()));
        let mut bins: Vec<(usize, Vec<Job<'_>>)> = (0..workers).map(|_| (0, Vec::new())).collect();
        for job in jobs {
            if let Some(bin) = bins.iter_mut().min_by_key(|(load, _)| *load) {
                bin.0 += job.messages.len();
                bin.1.push(job);
            }
        }
        let done: Vec<Vec<Job<'_>>> = if bins.len() == 1 {
            bins.into_iter().map(|(_, jobs)| run_jobs(jobs, now)).collect()
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> =
                    bins.into_iter().map(|(_, jobs)| scope.spawn(move || run_jobs(jobs, now))).collect();
                handles.into_iter().map(join_scoped).collect()
            })
        };
        for job in done.into_iter().flatten() {
            let pending = self.pending.entry(job.topic.to_string()).or_default();
            pending.rows.extend(job.out.rows);
            pending.dead_letters.extend(job.out.dead_letters);
        }
    }

    /// Completes the background flush once it has ended, and starts the
    /// next when one is due. While the writer is still busy, consuming goes
    /// on until another flush's worth of messages (`flush_messages`) is
    /// pending, then waits for it: the store sets the pace. `Ok(false)`:
    /// still waiting after [`WRITER_WAIT_SLICE`]; serve librdkafka and call again.
    fn flush_in_background(&mut self, consumer: &BaseConsumer<Context>) -> std::result::Result<bool, FlushError> {
        let must_wait = self.pending_messages >= self.settings.flush_messages as u64;
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
        self.pending_messages >= self.settings.flush_messages as u64
            || (self.last_flush.elapsed() >= self.settings.flush_interval
                && (self.pending_messages > 0 || self.pending.values().any(|o| !o.is_empty())))
    }

    fn advance_idle(&mut self) {
        let now = now_ms();
        let idle_ms = self.settings.idle_timeout.as_millis() as i64;
        for ((topic, _), partition) in self.partitions.iter_mut() {
            partition.on_idle(now, idle_ms, self.pending.entry(topic.clone()).or_default());
        }
    }

    /// Dead letters to Kafka, then rows + dead letters + checkpoints to the
    /// store in one batch per topic, then replay points to Kafka; the
    /// background flush first, if one is under way.
    fn flush(&mut self, consumer: &BaseConsumer<Context>) -> std::result::Result<(), FlushError> {
        self.finish_writer(consumer, Duration::MAX)?;
        let taken = self.take_pending();
        let _span = tracing::info_span!("flush", messages = taken.messages).entered();
        let written = taken.write(&mut **lock(&self.store), self.dead_letters.as_deref());
        self.finish_flush(taken, written, consumer)
    }

    /// Flushes in the background: the writer thread writes the store while
    /// the loop goes on consuming, and [`Shared::finish_writer`] commits the
    /// replay points once it is done. Starts nothing while a background
    /// flush is under way or unfinished: its outcome decides what comes next.
    fn start_writer(&mut self) {
        if self.writer.is_busy || self.written.is_some() {
            return;
        }
        let taken = self.take_pending();
        // The thread can only be gone after a panic, which the next wait for it resumes.
        if let Err(taken) = self.writer.send(taken) {
            let written = taken.write(&mut **lock(&self.store), self.dead_letters.as_deref());
            self.written = Some((*taken, written));
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
    fn finish_writer(
        &mut self,
        consumer: &BaseConsumer<Context>,
        wait: Duration,
    ) -> std::result::Result<(), FlushError> {
        self.await_writer(wait);
        match self.written.take() {
            Some((taken, written)) => self.finish_flush(taken, written, consumer),
            None => Ok(()),
        }
    }

    /// The store, once no background flush is using it.
    fn store(&mut self) -> MutexGuard<'_, Box<dyn Store + Send>> {
        self.await_writer(Duration::MAX);
        lock(&self.store)
    }

    /// Takes everything not yet written, with the checkpoints and replay
    /// points that cover it, for [`Taken::write`].
    fn take_pending(&mut self) -> Taken {
        let mut checkpoints: BTreeMap<String, Vec<Checkpoint>> = BTreeMap::new();
        let mut replay_points = Vec::new();
        for ((topic, partition), state) in &self.partitions {
            if let Some(checkpoint) = state.checkpoint() {
                checkpoints.entry(topic.clone()).or_default().push(checkpoint);
            }
            if let Some(replay) = state.replay_point() {
                if self.committed.get(&(topic.clone(), *partition)) != Some(&replay) {
                    replay_points.push((topic.clone(), *partition, replay));
                }
            }
        }
        self.last_flush = Instant::now();
        for out in self.pending.values_mut() {
            engine::drop_superseded(&mut out.rows);
        }
        let mut owners: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
        for ((topic, partition), epoch) in &self.epochs {
            owners.entry(topic.clone()).or_default().push((*partition, *epoch));
        }
        Taken {
            owners,
            plan: Arc::clone(&self.plan),
            retired: std::mem::take(&mut self.retired),
            outputs: std::mem::take(&mut self.pending),
            checkpoints,
            replay_points,
            messages: std::mem::take(&mut self.pending_messages),
        }
    }

    /// After [`Taken::write`]: on success, reports it, commits its replay
    /// points and publishes the status; on failure, puts it back in front of
    /// what was consumed since, to be written first next time.
    fn finish_flush(
        &mut self,
        taken: Taken,
        written: FlushResult,
        consumer: &BaseConsumer<Context>,
    ) -> std::result::Result<(), FlushError> {
        let mut report = match written {
            Ok(report) => report,
            Err(error) => {
                let newer = std::mem::replace(&mut self.pending, taken.outputs);
                for (topic, out) in newer {
                    let pending = self.pending.entry(topic).or_default();
                    pending.rows.extend(out.rows);
                    pending.dead_letters.extend(out.dead_letters);
                }
                self.retired.splice(0..0, taken.retired);
                self.pending_messages += taken.messages;
                if let FlushError::Store(store::Error::Fenced { topic, partitions }) = &error {
                    self.drop_fenced(topic, partitions);
                    return Ok(());
                }
                return Err(error);
            }
        };
        let partitions: Vec<(&str, &Partition)> = self.partitions.iter().map(|((t, _), p)| (t.as_str(), p)).collect();
        let rows: Vec<(&str, &engine::Row)> =
            taken.outputs.iter().flat_map(|(t, out)| out.rows.iter().map(move |r| (t.as_str(), r))).collect();
        self.observer.flushed_state(&taken.plan, &partitions, &rows);

        let mut tpl = TopicPartitionList::new();
        for (topic, partition, replay) in &taken.replay_points {
            if tpl.add_partition_offset(topic, *partition, Offset::Offset(*replay)).is_ok() {
                report.committed.push((topic.clone(), *partition, *replay));
            }
        }
        if tpl.count() > 0 {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    for (topic, partition, replay) in &report.committed {
                        self.committed.insert((topic.clone(), *partition), *replay);
                    }
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
        for partition in partitions {
            let key = (topic.to_string(), *partition);
            self.partitions.remove(&key);
            self.assigned.remove(&key);
            self.committed.remove(&key);
            self.unrestored.remove(&key);
            self.epochs.remove(&key);
        }
        let theirs = |p: i32| partitions.contains(&p);
        if let Some(out) = self.pending.get_mut(topic) {
            out.rows.retain(|row| !theirs(row.partition));
            out.dead_letters.retain(|d| !theirs(d.partition));
        }
        for (_, outputs) in &mut self.retired {
            if let Some(out) = outputs.get_mut(topic) {
                out.rows.retain(|row| !theirs(row.partition));
            }
        }
        self.publish_status();
    }

    /// Switches every partition to `update` (the caller has flushed, so
    /// nothing pending refers to the old plan). Returns what changed, or
    /// why the plan cannot run here.
    fn switch(&mut self, plan: &Arc<CompiledPlan>, version: Option<u64>) -> std::result::Result<MetricChanges, String> {
        self.store().setup(&plan.plan).map_err(|e| format!("the store cannot hold the plan: {e}"))?;
        let old = Arc::clone(&self.plan);
        let changes = MetricChanges::between(Some(&old.plan), &plan.plan);
        let mut retired: BTreeMap<String, Output> = BTreeMap::new();
        for ((topic, _), partition) in self.partitions.iter_mut() {
            partition.reconfigure(Arc::clone(plan), retired.entry(topic.clone()).or_default());
        }
        retired.retain(|_, out| !out.rows.is_empty());
        if !retired.is_empty() {
            self.retired.push((old, retired));
        }
        self.plan = Arc::clone(plan);
        self.plan_version = version;
        Ok(changes)
    }

    fn reject(&mut self, version: Option<u64>, error: &str) {
        warn!(version = ?version, error = %error, "Rejected a plan; the running plan stays.");
        self.record_deployment(version, "rejected", error.to_string());
        self.observer.plan_rejected(version, error);
        self.publish_status();
    }

    /// Appends to the store's deployment history; a failure only costs the record.
    fn record_deployment(&mut self, version: Option<u64>, outcome: &str, detail: String) {
        let Some(version) = version else { return };
        let record = DeploymentRecord {
            version,
            instance: self.settings.instance.clone(),
            at_ms: now_ms(),
            outcome: outcome.into(),
            plan_hash: self.plan.plan.hash.clone(),
            detail,
        };
        if let Err(error) = self.store().record_deployment(&record) {
            warn!(error = %error, version, "Cannot record the deployment in the store.");
        }
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
        let now = newest.min(now_ms());
        let plan = Arc::clone(&self.plan);
        match self.store().sweep(&plan.plan, now) {
            Ok(0) => {}
            Ok(deleted) => info!(deleted, "Deleted rows past their retention."),
            Err(error) => warn!(error = %error, "Retention sweep failed; will retry."),
        }
    }

    fn publish_status(&self) {
        let metrics = &self.plan.plan.metrics;
        let mut status = Status { is_paused: self.is_paused, ..Default::default() };
        status.metrics = metrics
            .iter()
            .enumerate()
            .map(|(i, m)| MetricStatus {
                name: m.name.clone(),
                events: self.partitions.values().map(|p| p.stats().metrics[i].events).sum(),
                late: self.partitions.values().map(|p| p.stats().metrics[i].late).sum(),
                overflow: self.partitions.values().map(|p| p.stats().metrics[i].overflow).sum(),
                live_series: self.partitions.values().map(|p| p.live_series()[i]).sum(),
            })
            .collect();
        status.partitions = self
            .partitions
            .iter()
            .map(|((topic, partition), p)| PartitionStatus {
                topic: topic.clone(),
                partition: *partition,
                max_event_time: p.max_event_time().map(engine::value::format_timestamp),
                replay_point: self.committed.get(&(topic.clone(), *partition)).copied(),
                next_offset: p.next_offset(),
                live_series: p.live_series(),
                held_back_tier_rows: p.held_back_tier_rows(),
            })
            .collect();
        self.observer.status(&status);
    }
}

/// Output taken from [`Shared::pending`] for one flush, with the
/// checkpoints and replay points that cover it.
struct Taken {
    /// The plan the outputs' metric indices refer to.
    plan: Arc<CompiledPlan>,
    /// Rows of metrics that stopped, under their own plans; written first.
    retired: Vec<(Arc<CompiledPlan>, BTreeMap<String, Output>)>,
    /// Per topic: rows and dead letters.
    outputs: BTreeMap<String, Output>,
    /// Per topic: the checkpoints written with its output.
    checkpoints: BTreeMap<String, Vec<Checkpoint>>,
    /// What to commit once written: topic, partition, replay point.
    replay_points: Vec<(String, i32, i64)>,
    /// Per topic: the owner epoch of each partition, checked by the store.
    owners: BTreeMap<String, Vec<(i32, u64)>>,
    /// Messages consumed for it.
    messages: u64,
}

impl Taken {
    fn owners_of(&self, topic: &str) -> &[(i32, u64)] {
        self.owners.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Dead letters to Kafka, then rows + dead letters + checkpoints to the
    /// store in one batch per topic. Only I/O and nothing of the loop's
    /// state: the writer thread runs it while the loop goes on.
    fn write(&self, store: &mut (dyn Store + Send), dead_letters: Option<&DeadLetterProducer>) -> FlushResult {
        let started = Instant::now();
        let mut report = FlushReport { messages: self.messages, ..Default::default() };
        let mut count_rows = |plan: &CompiledPlan, rows: &[engine::Row]| {
            // Counted by index first: a name per metric, not per row.
            let mut per_metric = vec![0u64; plan.plan.metrics.len()];
            rows.iter().for_each(|row| per_metric[row.metric] += 1);
            for (metric, n) in plan.plan.metrics.iter().zip(per_metric).filter(|(_, n)| *n > 0) {
                *report.rows_by_metric.entry(metric.name.clone()).or_default() += n;
            }
        };
        // Stopped metrics' last rows, under the plan that defined them. The
        // checkpoints that follow may already leave those metrics out.
        for (plan, outputs) in &self.retired {
            for (topic, out) in outputs {
                store
                    .write(
                        &plan.plan,
                        &WriteBatch { topic, rows: &out.rows, owners: self.owners_of(topic), ..Default::default() },
                    )
                    .map_err(FlushError::Store)?;
                count_rows(plan, &out.rows);
            }
        }
        let mut dead_by_reason: BTreeMap<Reason, u64> = BTreeMap::new();
        for (topic, out) in &self.outputs {
            if let Some(producer) = dead_letters {
                producer.send_all(&out.dead_letters, Duration::from_secs(30)).map_err(FlushError::DeadLetters)?;
            }
            let checkpoints = self.checkpoints.get(topic).map_or(&[][..], Vec::as_slice);
            store
                .write(
                    &self.plan.plan,
                    &WriteBatch {
                        topic,
                        rows: &out.rows,
                        dead_letters: &out.dead_letters,
                        checkpoints,
                        owners: self.owners_of(topic),
                    },
                )
                .map_err(FlushError::Store)?;
            count_rows(&self.plan, &out.rows);
            for d in &out.dead_letters {
                *dead_by_reason.entry(d.reason).or_default() += 1;
            }
        }
        report.store_write = started.elapsed();
        report.dead_letters = dead_by_reason.into_iter().collect();
        Ok(report)
    }
}

/// One partition's share of a batch.
struct Job<'a> {
    topic: &'a str,
    partition: &'a mut Partition,
    messages: &'a [&'a BorrowedMessage<'a>],
    out: Output,
}

/// Waits for a worker thread. The engine does not panic on input; if a
/// worker did, fail as loudly as inline.
fn join_scoped<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs each job's messages through its partition, in offset order.
fn run_jobs(mut jobs: Vec<Job<'_>>, now_ms: i64) -> Vec<Job<'_>> {
    for job in &mut jobs {
        // librdkafka parses a message's headers when asked for them: only
        // when some expression reads one.
        let reads_headers = job.partition.plan().reads_headers();
        for message in job.messages {
            let headers: Vec<(&str, &[u8])> = reads_headers
                .then(|| message.headers())
                .flatten()
                .map(|h| {
                    (0..h.count()).filter_map(|i| h.try_get(i)).map(|h| (h.key, h.value.unwrap_or_default())).collect()
                })
                .unwrap_or_default();
            let meta = MessageMeta {
                // The job's: `topic()` would convert the C string again per message.
                topic: job.topic,
                partition: message.partition(),
                offset: message.offset(),
                key: message.key(),
                timestamp_ms: message.timestamp().to_millis(),
                headers: &headers,
            };
            let payload = message.payload().unwrap_or_default();
            job.partition.process(&Message { payload, meta }, now_ms, &mut job.out);
        }
    }
    jobs
}

/// A running consumer-group member.
pub struct Consumer {
    consumer: Arc<BaseConsumer<Context>>,
    shared: Arc<Mutex<Shared>>,
    rebalances: Arc<AtomicU64>,
    settings: Settings,
    updates: Option<Receiver<PlanUpdate>>,
}

impl Consumer {
    /// Creates the consumer and subscribes to the plan's topics.
    ///
    /// # Errors
    /// If the client cannot be created or subscribed, or the store schema cannot be set up.
    pub fn new(
        settings: Settings,
        plan: Arc<CompiledPlan>,
        mut store: Box<dyn Store + Send>,
        observer: Arc<dyn Observer>,
    ) -> Result<Self> {
        store.setup(&plan.plan).map_err(Error::Store)?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "5000");
        for (k, v) in &settings.librdkafka {
            config.set(k, v);
        }
        let dead_letters = match &settings.dead_letter_topic {
            Some(topic) => {
                Some(Arc::new(DeadLetterProducer::new(&config_for_producer(&settings), topic).map_err(|source| {
                    Error::Kafka { context: "cannot create the dead-letter producer".into(), source }
                })?))
            }
            None => None,
        };
        let store = Arc::new(Mutex::new(store));
        let writer = StoreWriter::spawn(Arc::clone(&store), dead_letters.clone()).map_err(Error::Thread)?;
        let rebalances = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Mutex::new(Shared {
            assigned: BTreeMap::new(),
            unrestored: BTreeMap::new(),
            epochs: BTreeMap::new(),
            rebalances: rebalances.clone(),
            plan,
            plan_version: None,
            retired: Vec::new(),
            store,
            writer,
            written: None,
            settings: settings.clone(),
            partitions: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_messages: 0,
            committed: BTreeMap::new(),
            dead_letters,
            last_flush: Instant::now(),
            last_sweep: Instant::now(),
            is_paused: false,
            observer: observer.clone(),
        }));
        let context = Context { shared: shared.clone(), observer, consumer: OnceLock::new() };
        let consumer: Arc<BaseConsumer<Context>> = Arc::new(
            config
                .create_with_context(context)
                .map_err(|source| Error::Kafka { context: "cannot create the consumer".into(), source })?,
        );
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| Error::Kafka { context: format!("cannot subscribe to {topics:?}"), source })?;
        info!(topics = ?topics, group = %settings.group_id, "Subscribed.");
        Ok(Consumer { consumer, shared, rebalances, settings, updates: None })
    }

    /// Follows `updates`: each plan received is applied between two batches
    /// (see [`engine::Partition::reconfigure`]); `version` is the bundle
    /// version of the plan this consumer starts with.
    pub fn with_plan_updates(mut self, version: Option<u64>, updates: Receiver<PlanUpdate>) -> Self {
        lock(&self.shared).plan_version = version;
        self.updates = Some(updates);
        self
    }

    fn push<'c>(&self, batch: &mut Vec<Polled<'c>>, message: BorrowedMessage<'c>) {
        let rebalances = self.rebalances.load(Ordering::SeqCst);
        batch.push(Polled { message, rebalances });
    }

    /// Adds what a poll returned to `batch`: `false` when it returned no
    /// message (nothing waiting, or an error, logged), so that queue is done
    /// for now.
    fn take<'c>(&self, batch: &mut Vec<Polled<'c>>, polled: Option<KafkaResult<BorrowedMessage<'c>>>) -> bool {
        match polled {
            Some(Ok(message)) => {
                self.push(batch, message);
                true
            }
            Some(Err(error)) => {
                warn!(error = %error, "Kafka error; librdkafka retries.");
                false
            }
            None => false,
        }
    }

    /// Records waiting refusals and applies the newest waiting plan, if any.
    fn apply_updates(&self, shutdown: &AtomicBool) -> Result<()> {
        let Some(updates) = &self.updates else { return Ok(()) };
        let waiting: Vec<PlanUpdate> = updates.try_iter().collect();
        let newest = waiting.iter().rposition(|u| u.plan.is_ok());
        for (i, update) in waiting.iter().enumerate() {
            if let Err(error) = &update.plan {
                lock(&self.shared).reject(update.version, error);
            } else if Some(i) == newest {
                self.apply(update, shutdown)?;
            }
        }
        Ok(())
    }

    fn apply(&self, update: &PlanUpdate, shutdown: &AtomicBool) -> Result<()> {
        let Ok(plan) = &update.plan else { return Ok(()) };
        // What was consumed so far belongs to the old plan: make it durable under it.
        self.flush_until_done(shutdown)?;
        let mut shared = lock(&self.shared);
        let old_topics = topics_of(&shared.plan);
        match shared.switch(plan, update.version) {
            Ok(changes) => {
                let detail = format!(
                    "kept {:?}, added {:?}, changed {:?}, removed {:?}",
                    changes.kept, changes.added, changes.changed, changes.removed
                );
                info!(version = ?update.version, plan = %&plan.plan.hash[..16], %detail, "Applied a new plan.");
                shared.record_deployment(update.version, "applied", detail);
                shared.observer.plan_applied(update.version, &plan.plan, &changes);
            }
            Err(error) => {
                shared.reject(update.version, &error);
                return Ok(());
            }
        }
        let new_topics = topics_of(&shared.plan);
        shared.publish_status();
        drop(shared);
        // The stopped metrics' last rows and the new checkpoints, at once.
        self.flush_until_done(shutdown)?;
        if new_topics != old_topics {
            let topics: Vec<&str> = new_topics.iter().map(String::as_str).collect();
            self.consumer
                .subscribe(&topics)
                .map_err(|source| Error::Kafka { context: format!("cannot subscribe to {topics:?}"), source })?;
            info!(topics = ?topics, "Subscribed to the new plan's topics.");
        }
        Ok(())
    }

    /// Consumes until `shutdown` is set, then flushes, commits and leaves the group.
    ///
    /// # Errors
    /// If the store fails in a way that retrying cannot fix.
    pub fn run(self, shutdown: &AtomicBool) -> Result<()> {
        let mut last_idle_check = Instant::now();
        let limit = MAX_BATCH.min(self.settings.flush_messages.max(1));
        // One queue per assigned partition, so that a batch takes from every
        // partition even when librdkafka delivers one partition's fetched
        // chunk after another (catching up on a backlog); rebuilt after
        // every rebalance (an assignment resets them).
        let mut queues: Vec<PartitionQueue<Context>> = Vec::new();
        let mut queues_at = u64::MAX;
        while !shutdown.load(Ordering::Relaxed) {
            let at_start = self.rebalances.load(Ordering::SeqCst);
            if at_start != queues_at {
                queues.clear();
                let assigned: Vec<Key> = lock(&self.shared).assigned.keys().cloned().collect();
                queues = assigned.iter().filter_map(|(t, p)| self.consumer.split_partition_queue(t, *p)).collect();
                queues_at = at_start;
            }
            // Per round: its messages borrow the queues, which a rebalance rebuilds.
            let mut batch = Vec::with_capacity(limit);
            // The main queue first: callbacks, and messages fetched before
            // their partition's queue was split off (older, so they go first).
            let mut wait = if queues.is_empty() { Duration::from_millis(50) } else { Duration::ZERO };
            while batch.len() < limit && self.take(&mut batch, self.consumer.poll(wait)) {
                wait = Duration::ZERO;
            }
            // Then a share from each partition, unless a rebalance just made the queues stale.
            if !queues.is_empty() && self.rebalances.load(Ordering::SeqCst) == at_start {
                let share = (limit.saturating_sub(batch.len()) / queues.len()).max(1);
                for queue in &queues {
                    for _ in 0..share {
                        if !self.take(&mut batch, queue.poll(Duration::ZERO)) {
                            break;
                        }
                    }
                }
                if batch.is_empty() {
                    // Idle: wait on the main queue, which also serves callbacks.
                    if let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(20)) {
                        self.push(&mut batch, message);
                    }
                }
            }
            if !batch.is_empty() {
                lock(&self.shared).process_batch(&batch);
            }
            drop(batch);
            {
                let mut shared = lock(&self.shared);
                if !shared.unrestored.is_empty() {
                    shared.retry_restores(&self.consumer);
                }
            }
            if last_idle_check.elapsed() >= Duration::from_secs(1) {
                lock(&self.shared).advance_idle();
                last_idle_check = Instant::now();
            }
            // A failed flush is back in front of what is pending: retry it all, paused.
            if let Err(error) = self.flush_in_background() {
                warn!(error = %error, "Background flush failed; retrying.");
                self.flush_until_done(shutdown)?;
            }
            self.apply_updates(shutdown)?;
        }
        info!("Shutting down: flushing and committing.");
        {
            let mut shared = lock(&self.shared);
            let keys: Vec<Key> = shared.partitions.keys().cloned().collect();
            shared.emit_held_back(keys.into_iter());
        }
        self.flush_until_done(&AtomicBool::new(false))?;
        self.consumer.unsubscribe();
        // Serve the final rebalance (revocation) so the group hands partitions over at once.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.consumer.assignment().map(|a| a.count() > 0).unwrap_or(false) {
            let _ = self.consumer.poll(Duration::from_millis(50));
        }
        info!("Left the group.");
        Ok(())
    }

    /// [`Shared::flush_in_background`], serving librdkafka while it waits
    /// for the writer.
    fn flush_in_background(&self) -> std::result::Result<(), FlushError> {
        while !lock(&self.shared).flush_in_background(&self.consumer)? {
            self.serve(Duration::ZERO);
        }
        Ok(())
    }

    /// Polls the main queue once, waiting up to `timeout`: it serves
    /// callbacks (rebalances) and counts as the application polling. A
    /// message it returns (from a partition without its own queue yet) is
    /// processed, never dropped.
    fn serve(&self, timeout: Duration) {
        if let Some(Ok(message)) = self.consumer.poll(timeout) {
            let mut one = Vec::with_capacity(1);
            self.push(&mut one, message);
            lock(&self.shared).process_batch(&one);
        }
    }

    /// Flushes, retrying with backoff while paused; messages that still arrive
    /// while paused are processed, never dropped. Gives up only when `stop` is
    /// set after a failure (the caller is shutting down without a store).
    fn flush_until_done(&self, stop: &AtomicBool) -> Result<()> {
        let mut delay = self.settings.retry_initial;
        let mut attempt = 0u32;
        loop {
            let result = lock(&self.shared).flush(&self.consumer);
            let error = match result {
                Ok(()) => {
                    if attempt > 0 {
                        self.set_paused(false);
                        info!(attempts = attempt + 1, "Store recovered; resumed consuming.");
                    }
                    return Ok(());
                }
                Err(FlushError::Store(error)) if !error.is_retryable() => {
                    error!(error = %error, "Store failed permanently.");
                    return Err(Error::Store(error));
                }
                Err(FlushError::Store(error)) => {
                    let shared = lock(&self.shared);
                    shared.observer.store_failed(&error, delay);
                    error.to_string()
                }
                Err(FlushError::DeadLetters(error)) => error,
            };
            if attempt == 0 {
                self.set_paused(true);
            }
            attempt += 1;
            warn!(error = %error, attempt, retry_in_ms = delay.as_millis() as u64, "Flush failed; consumption paused, retrying.");
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // Keep polling while waiting: it serves rebalances and heartbeats.
            let until = Instant::now() + jitter(delay, attempt);
            while Instant::now() < until {
                self.serve(Duration::from_millis(20));
            }
            delay = (delay * 2).min(self.settings.retry_max);
        }
    }

    fn set_paused(&self, is_paused: bool) {
        let Ok(assignment) = self.consumer.assignment() else { return };
        let result = if is_paused { self.consumer.pause(&assignment) } else { self.consumer.resume(&assignment) };
        if let Err(error) = result {
            warn!(error = %error, is_paused, "Cannot pause or resume the assignment.");
        }
        let mut shared = lock(&self.shared);
        shared.is_paused = is_paused;
        shared.publish_status();
    }
}

/// `delay` ± 25%, spread by the attempt number so instances do not retry in step.
fn jitter(delay: Duration, attempt: u32) -> Duration {
    let spread = (u64::from(attempt).wrapping_mul(0x9e37_79b9) ^ now_ms() as u64) % 500;
    delay.mul_f64(0.75 + spread as f64 / 1000.0)
}

/// The topics a plan reads, sorted and without repeats.
fn topics_of(plan: &CompiledPlan) -> Vec<String> {
    let mut topics: Vec<String> = plan.plan.sources.iter().map(|s| s.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    topics
}

fn config_for_producer(settings: &Settings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    for (k, v) in &settings.librdkafka {
        // Consumer-only settings would make the producer warn; pass the rest.
        if !k.starts_with("group.")
            && !k.starts_with("session.")
            && !k.contains("offset")
            && !k.starts_with("enable.partition")
        {
            config.set(k, v);
        }
    }
    config
}

/// Runs a consumer until `shutdown` is set: [`Consumer::new`] then [`Consumer::run`].
///
/// # Errors
/// See [`Consumer::new`] and [`Consumer::run`].
pub fn run(
    settings: Settings,
    plan: Arc<CompiledPlan>,
    store: Box<dyn Store + Send>,
    observer: Arc<dyn Observer>,
    shutdown: &AtomicBool,
) -> Result<()> {
    Consumer::new(settings, plan, store, observer)?.run(shutdown)
}
