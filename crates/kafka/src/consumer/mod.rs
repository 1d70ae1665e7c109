//! The consumer: the poll loop here, its parts beside it.
//!
//! * `ledger`: pure bookkeeping of what is pending, what a flush takes,
//!   what may be committed and what a failed write puts back;
//! * `writer`: the store-writer thread and the write itself;
//! * `workers`: a batch spread over the engine's worker threads;
//! * `rebalance`: assignment (claim, restore, start offset, queue split)
//!   and revocation (flush, commit, forget);
//! * `state`: what the loop and the callbacks share, the flush, the plan switch;
//! * `status`: `/status` and the deployment history.
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

mod ledger;
mod rebalance;
mod state;
mod status;
mod workers;
mod writer;

use crate::dead_letter::DeadLetterProducer;
use crate::{Error, Observer, PlanUpdate, Refusal, Result, Settings, TOPIC_PLACEHOLDER};
use engine::CompiledPlan;
use ledger::{Key, Ledger};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rebalance::Context;
use state::Shared;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use store::Store;
use tracing::{error, info, warn};
use writer::{FlushError, StoreWriter};

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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves state we can still flush: recover it.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
    /// Creates the consumer with the empty plan: nothing set up in the
    /// store, no topic subscribed. The first plan comes through
    /// [`Consumer::apply`], as every later one does.
    ///
    /// # Errors
    /// If the client or the store writer thread cannot be created.
    pub fn new(settings: Settings, store: Box<dyn Store + Send>, observer: Arc<dyn Observer>) -> Result<Self> {
        let config = config_for_consumer(
            &settings.brokers,
            &settings.group_id,
            &settings.librdkafka,
            &[("auto.offset.reset", "earliest"), ("statistics.interval.ms", "5000")],
        );
        let dead_letters = match &settings.dead_letter_topic {
            Some(_) => Some(Arc::new(DeadLetterProducer::new(&config_for_producer(&settings)).map_err(|source| {
                Error::Kafka { context: "cannot create the dead-letter producer".into(), source }
            })?)),
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
            plan: Arc::new(CompiledPlan::empty()),
            plan_version: None,
            dead_letter_topic: None,
            store,
            writer,
            written: None,
            settings: settings.clone(),
            partitions: BTreeMap::new(),
            ledger: Ledger::default(),
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
        Ok(Consumer { consumer, shared, rebalances, settings, updates: None })
    }

    /// Follows `updates`: each plan received is applied between two batches
    /// (see [`engine::Partition::reconfigure`]).
    pub fn with_plan_updates(mut self, updates: Receiver<PlanUpdate>) -> Self {
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
            if update.plan.is_err() || Some(i) == newest {
                self.apply_with(update, shutdown)?;
            }
        }
        Ok(())
    }

    /// Applies `update`, the first plan as every later one: the store is set
    /// up for it, what was consumed under the running plan is made durable,
    /// every partition switches, the deployment is recorded and observed,
    /// and the subscription follows the plan's topics. A plan refused is
    /// recorded and the running plan stays.
    ///
    /// # Errors
    /// If the store fails for good, the subscription fails, or the plan is
    /// refused while nothing runs yet ([`Error::Refused`]).
    pub fn apply(&self, update: &PlanUpdate) -> Result<()> {
        self.apply_with(update, &AtomicBool::new(false))
    }

    fn apply_with(&self, update: &PlanUpdate, shutdown: &AtomicBool) -> Result<()> {
        let is_first = lock(&self.shared).plan.plan.hash.is_empty();
        // A plan that reads no topic would leave the group with nothing to consume.
        let no_source = Refusal::NoSource;
        let plan = match &update.plan {
            Ok(plan) if topics_of(plan).is_empty() && is_first => return Err(Error::Refused(no_source)),
            Ok(plan) if topics_of(plan).is_empty() => {
                lock(&self.shared).reject(update.version, &no_source);
                return Ok(());
            }
            Ok(plan) => plan,
            Err(error) if is_first => return Err(Error::Refused(error.clone())),
            Err(error) => {
                lock(&self.shared).reject(update.version, error);
                return Ok(());
            }
        };
        // What was consumed so far is written first, with the old plan's checkpoints.
        self.flush_until_done(shutdown)?;
        let mut shared = lock(&self.shared);
        let old_topics = topics_of(&shared.plan);
        match shared.switch(plan, update.version) {
            Ok(changes) => {
                let detail = format!(
                    "kept {:?}, added {:?}, changed {:?}, removed {:?}",
                    changes.kept, changes.added, changes.changed, changes.removed
                );
                info!(version = ?update.version, plan = %&plan.plan.hash.get(..16).unwrap_or_default(), %detail, "Applied a plan.");
                shared.record_deployment(update.version, "applied", detail);
                shared.observer.plan_applied(update.version, &plan.plan, &changes);
            }
            Err(error) if is_first => return Err(Error::Refused(error)),
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
            info!(topics = ?topics, group = %self.settings.group_id, "Subscribed to the plan's topics.");
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
            shared.emit_held_back(keys.iter());
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
    let spread = (u64::from(attempt).wrapping_mul(0x9e37_79b9) ^ crate::control::now_ms() as u64) % 500;
    delay.mul_f64(0.75 + spread as f64 / 1000.0)
}

/// The topics a plan reads, sorted and without repeats.
pub fn topics_of(plan: &CompiledPlan) -> Vec<String> {
    let mut topics: Vec<String> = plan.plan.sources.iter().map(|s| s.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    topics
}

/// The dead-letter topic for `plan`: `settings.dead_letter_topic` with
/// `{topic}` replaced by the first topic the plan reads (`None`: dead
/// letters stay in the store only).
pub(crate) fn dead_letter_topic(pattern: Option<&str>, plan: &CompiledPlan) -> Option<String> {
    let first = topics_of(plan).into_iter().next().unwrap_or_default();
    pattern.map(|p| p.replace(TOPIC_PLACEHOLDER, &first))
}

/// A consumer in `group_id` that commits only what it is told to, with
/// `extra` settings; the operator's `librdkafka` settings last, so they win.
pub(crate) fn config_for_consumer(
    brokers: &str,
    group_id: &str,
    librdkafka: &[(String, String)],
    extra: &[(&str, &str)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in extra.iter().copied().chain(librdkafka.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        config.set(key, value);
    }
    config
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

/// Runs a consumer of `plan` (local files) until `shutdown` is set:
/// [`Consumer::new`], [`Consumer::apply`], then [`Consumer::run`].
///
/// # Errors
/// See [`Consumer::new`], [`Consumer::apply`] and [`Consumer::run`].
pub fn run(
    settings: Settings,
    plan: Arc<CompiledPlan>,
    store: Box<dyn Store + Send>,
    observer: Arc<dyn Observer>,
    shutdown: &AtomicBool,
) -> Result<()> {
    let consumer = Consumer::new(settings, store, observer)?;
    consumer.apply(&PlanUpdate { version: None, plan: Ok(plan) })?;
    consumer.run(shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Silent;
    impl Observer for Silent {}

    fn consumer() -> Consumer {
        // Never connects: nothing is subscribed before a plan is applied.
        let settings = Settings { brokers: "127.0.0.1:9".into(), ..Default::default() };
        let store = store::sqlite::SqliteStore::open(":memory:").expect("in-memory store");
        Consumer::new(settings, Box::new(store), Arc::new(Silent)).expect("consumer")
    }

    fn plan(text: &str) -> Arc<CompiledPlan> {
        let compiled = dsl::compile_str("p.stream", text);
        let diagnostics = compiled.render_diagnostics();
        let plan = compiled.plan.unwrap_or_else(|| panic!("{diagnostics}"));
        Arc::new(CompiledPlan::new(plan, engine::EngineConfig::default()).expect("builds"))
    }

    #[test]
    fn a_first_plan_that_cannot_run_stops_the_consumer_with_its_refusal() {
        let no_source = PlanUpdate { version: Some(1), plan: Ok(plan("version 1\n")) };
        assert!(matches!(consumer().apply(&no_source), Err(Error::Refused(Refusal::NoSource))));
        let refused = PlanUpdate { version: Some(1), plan: Err(Refusal::Store { message: "read-only".into() }) };
        match consumer().apply(&refused) {
            Err(Error::Refused(refusal)) => {
                assert_eq!(refusal.to_string(), "the store cannot hold the plan: read-only")
            }
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn the_first_plan_is_applied_as_any_other() {
        let consumer = consumer();
        let text = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time }\nmetric m from s\n  compute count() as c\n  window 1m\n";
        let first = plan(text);
        consumer.apply(&PlanUpdate { version: Some(7), plan: Ok(Arc::clone(&first)) }).expect("applied");
        let shared = lock(&consumer.shared);
        assert!(Arc::ptr_eq(&shared.plan, &first));
        assert_eq!(shared.plan_version, Some(7));
        assert_eq!(shared.dead_letter_topic, None, "no dead-letter topic configured");
        drop(shared);
        let history = lock(&consumer.shared).store().deployments().expect("history");
        assert_eq!(history.iter().map(|r| (r.version, r.outcome.as_str())).collect::<Vec<_>>(), [(Some(7), "applied")]);
        assert_eq!(dead_letter_topic(Some("{topic}.dlq"), &first).as_deref(), Some("t.dlq"));
        assert_eq!(dead_letter_topic(Some("fixed"), &first).as_deref(), Some("fixed"));
    }
}
