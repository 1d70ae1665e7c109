//! Rebalance handling: the client context's callbacks. On assignment a
//! partition is claimed, restored from the store and started at the store
//! checkpoint's replay point, and its queue is split off; a failed restore
//! waits, paused, for [`Shared::retry_restores`], and so does a partition
//! whose checkpoint a newer plan wrote, until that plan runs here. On
//! revocation the partitions are flushed and committed before they move.

use super::jitter;
use super::ledger::Key;
use super::lock;
use super::state::Shared;
use crate::Observer;
use engine::Partition;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, RebalanceProtocol};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// The consumer's client context: statistics (lag) and rebalances.
pub(super) struct Context {
    pub shared: Arc<Mutex<Shared>>,
    pub observer: Arc<dyn Observer>,
    /// The consumer this is the context of (set once it exists), to split
    /// partition queues off inside the rebalance callback.
    pub consumer: OnceLock<Weak<BaseConsumer<Context>>>,
}

/// When to try a failed restore again.
pub(super) struct Retry {
    at: Instant,
    delay: Duration,
    /// The plan version the partition waits for, when that is why.
    pub awaiting_plan: Option<u64>,
}

impl Retry {
    pub fn new(delay: Duration) -> Self {
        Retry { at: Instant::now() + delay, delay, awaiting_plan: None }
    }

    /// Waiting for plan version `wanted`, checked again after `delay`.
    fn awaiting(wanted: u64, delay: Duration) -> Self {
        Retry { awaiting_plan: Some(wanted), ..Retry::new(delay) }
    }

    /// Due at once (a plan was applied that a waiting partition may need).
    pub fn now(&mut self) {
        self.at = Instant::now();
    }
}

/// Whether `checkpoint` was written under a newer plan version than
/// `running` and lists a metric that `plan` does not run: resuming would
/// lose where that metric started. (A checkpoint of a newer version whose
/// metrics `plan` all runs loses nothing, which also keeps a fleet going
/// whose control topic was made anew and counts versions from 1 again.)
fn written_by_a_newer_plan(checkpoint: &engine::Checkpoint, running: Option<u64>, plan: &dsl::Plan) -> bool {
    let newer = matches!((checkpoint.plan_version, running), (Some(wanted), Some(running)) if wanted > running);
    let unknown = |hash: &str| !plan.metrics.iter().any(|m| m.hash == hash);
    newer && checkpoint.metrics.as_ref().is_some_and(|starts| starts.iter().any(|s| unknown(&s.hash)))
}

/// What a restore found.
pub(super) enum Restored {
    /// Restored: consumption starts here.
    At(Offset),
    /// The checkpoint was written under plan version `wanted`, newer than
    /// the one running here, and lists metrics this plan does not run.
    /// Resuming from it under the older plan would forget where they
    /// started (a metric added by a deploy would restart later, when this
    /// instance gets the plan, and miss what came between); so the
    /// partition waits, paused, for it.
    AwaitingPlan { wanted: u64 },
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

fn keys_of(tpl: &TopicPartitionList) -> Vec<Key> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
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
        for key in keys_of(tpl) {
            shared.assigned.entry(key.clone()).or_insert(now);
            // Dropping the handle keeps the split: librdkafka never forwards it again.
            drop(consumer.as_ref().and_then(|c| c.split_partition_queue(&key.0, key.1)));
            let start = match shared.partitions.get(&key) {
                Some(partition) => partition.replay_point().map(Offset::Offset),
                None => match shared.restore(&key) {
                    Ok(Restored::At(start)) => Some(start),
                    Ok(Restored::AwaitingPlan { wanted }) => {
                        warn!(topic = %key.0, partition = key.1, wanted, running = ?shared.plan_version, "The partition's checkpoint was written under a newer plan with metrics this one does not run; it waits, paused, until that plan (or a later one) runs here.");
                        let retry = Retry::awaiting(wanted, shared.settings.retry_initial);
                        shared.unrestored.insert(key.clone(), retry);
                        let _ = paused.add_partition_offset(&key.0, key.1, Offset::Invalid);
                        None
                    }
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
    /// produced (if the store is down, commits nothing and drops their
    /// output: the next owner replays from the last commit), then drops
    /// their state.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut shared = lock(&self.shared);
        let keys = keys_of(tpl);
        // Tier rows held back go with this flush, so that its commit spares
        // the next owner replaying what they cover.
        shared.emit_held_back(keys.iter());
        match shared.flush(consumer) {
            Ok(()) => info!(partitions = tpl.count(), "Flushed and committed revoked partitions."),
            Err(error) => {
                warn!(error = %error, "Revoked partitions could not be flushed; the next owner replays them.")
            }
        }
        shared.rebalances.fetch_add(1, Ordering::SeqCst);
        shared.forget(&keys);
        shared.publish_status();
    }
}

impl Shared {
    /// Builds the partition's state from its store checkpoint (one
    /// attempt) and returns where consumption must start: the checkpoint's
    /// replay point, or the beginning of the partition when the store has
    /// none. The store is the truth, not the offset committed to Kafka: the
    /// commit follows the store write, so it is at most as far, and after a
    /// store was replaced it would skip what the new store never saw.
    /// Nothing is restored from a checkpoint a newer plan wrote (see
    /// [`Restored::AwaitingPlan`]).
    pub(super) fn restore(&mut self, key: &Key) -> std::result::Result<Restored, store::Error> {
        let every = u64::try_from(self.settings.tier_rows_every.as_millis()).unwrap_or(u64::MAX);
        let plan = Arc::clone(&self.plan);
        let running = self.plan_version;
        let mut store = self.store();
        // Claimed before the checkpoint is read: whatever an earlier owner
        // writes after this fails, whatever it wrote before is read.
        let epoch = store.claim(&key.0, key.1)?;
        let (partition, start) = match store.checkpoint(&key.0, key.1)? {
            None => (Partition::new(plan, key.1), Offset::Beginning),
            Some(c) if written_by_a_newer_plan(&c, running, &plan.plan) => {
                return Ok(Restored::AwaitingPlan { wanted: c.plan_version.unwrap_or_default() });
            }
            Some(mut c) => {
                let now_ms = crate::control::now_ms();
                if let Some(distrusted) = c.distrust_future_event_time(&plan, now_ms) {
                    warn!(
                        topic = %key.0,
                        partition = key.1,
                        event_time = %engine::value::format_timestamp(distrusted),
                        now = %engine::value::format_timestamp(now_ms),
                        "The checkpoint's event time is further ahead than any event could be (written before \
                         far-future events were refused, or by a clock that had jumped): resuming from now instead. \
                         Events older than the lateness are late; the window open when it was written may come out partial."
                    );
                }
                let tiers = store.open_tier_rows(&plan.plan, &c)?;
                info!(topic = %key.0, partition = key.1, replay_offset = c.replay_offset, next_offset = c.next_offset, max_event_time = ?c.max_event_time, "Restored partition state.");
                (Partition::restore(plan, &c, tiers), Offset::Offset(c.replay_offset))
            }
        };
        drop(store);
        self.partitions.insert(key.clone(), partition.with_tier_rows_every(every));
        self.epochs.insert(key.clone(), epoch);
        Ok(Restored::At(start))
    }

    /// Retries the restores that failed at assignment, each when its
    /// backoff has passed; a restored partition seeks to its start and
    /// resumes.
    pub(super) fn retry_restores(&mut self, consumer: &BaseConsumer<Context>) {
        let due: Vec<Key> =
            self.unrestored.iter().filter(|(_, retry)| retry.at <= Instant::now()).map(|(k, _)| k.clone()).collect();
        let mut restored = false;
        for key in due {
            match self.restore(&key) {
                Ok(Restored::AwaitingPlan { wanted }) => {
                    debug!(topic = %key.0, partition = key.1, wanted, "Still waiting for the plan the checkpoint was written under.");
                    self.unrestored.insert(key, Retry::awaiting(wanted, self.settings.retry_max));
                }
                Ok(Restored::At(start)) => {
                    self.unrestored.remove(&key);
                    let mut tpl = TopicPartitionList::new();
                    let _ = tpl.add_partition_offset(&key.0, key.1, start);
                    let resumed = consumer
                        .seek_partitions(tpl.clone(), Duration::from_secs(10))
                        .and_then(|_| consumer.resume(&tpl));
                    match resumed {
                        Ok(()) => {
                            restored = true;
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
                    let retry = Retry { at: Instant::now() + jitter(delay, 1), delay: next, awaiting_plan: None };
                    self.unrestored.insert(key, retry);
                }
            }
        }
        if restored {
            self.publish_status();
        }
    }

    /// Forgets the partitions `keys` (revoked, or claimed by another
    /// owner): their state, ownership and what the ledger holds for them.
    pub(super) fn forget(&mut self, keys: &[Key]) {
        for key in keys {
            self.partitions.remove(key);
            self.assigned.remove(key);
            self.unrestored.remove(key);
            self.epochs.remove(key);
        }
        self.ledger.give_up(keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Checkpoint, MetricStart};

    fn plan() -> dsl::Plan {
        let text = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time }\nmetric m from s\n  compute count() as c\n  window 1m\n";
        let compiled = dsl::compile_str("p.stream", text);
        let diagnostics = compiled.render_diagnostics();
        compiled.plan.unwrap_or_else(|| panic!("{diagnostics}"))
    }

    fn checkpoint(version: Option<u64>, hashes: Option<&[&str]>) -> Checkpoint {
        let starts = hashes.map(|h| {
            h.iter()
                .map(|h| MetricStart { hash: (*h).into(), since_offset: Some(3), table: None, replaced: false })
                .collect()
        });
        Checkpoint {
            partition: 0,
            replay_offset: 1,
            next_offset: 5,
            max_event_time: None,
            metrics: starts,
            plan_version: version,
        }
    }

    #[test]
    fn only_a_newer_plan_with_metrics_this_one_does_not_run_is_waited_for() {
        let plan = plan();
        let known = plan.metrics[0].hash.clone();
        let (known, other) = (known.as_str(), "another metric");
        let waits = |version, hashes: Option<&[&str]>, running| {
            written_by_a_newer_plan(&checkpoint(version, hashes), running, &plan)
        };
        assert!(waits(Some(3), Some(&[known, other]), Some(2)), "newer, with a metric not run here");
        assert!(!waits(Some(3), Some(&[known]), Some(2)), "newer, every metric run here");
        assert!(!waits(Some(2), Some(&[known, other]), Some(2)), "the same version");
        assert!(!waits(Some(1), Some(&[other]), Some(2)), "older: its metric was removed since");
        assert!(!waits(None, Some(&[other]), Some(2)), "no version: a batch run or an older store");
        assert!(!waits(Some(3), Some(&[other]), None), "local files: no version to compare");
        assert!(!waits(Some(3), None, Some(2)), "no metric starts: every metric ran from the start");
    }
}
