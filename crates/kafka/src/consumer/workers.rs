//! The worker pool: a batch's messages grouped by partition, the partitions
//! spread over scoped worker threads, each partition's messages run
//! through the engine in offset order.

use super::ledger::Key;
use super::state::Shared;
use super::Polled;
use engine::{Message, MessageMeta, Output, Partition};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use tracing::debug;

/// One partition's share of a batch.
struct Job<'a> {
    topic: &'a str,
    partition: &'a mut Partition,
    messages: &'a [&'a BorrowedMessage<'a>],
    out: Output,
}

impl Shared {
    /// Runs the engine over a batch: each partition's messages in order,
    /// partitions spread over the worker threads. Messages of partitions
    /// taken away (or handed back) since they were polled are dropped: they
    /// were not committed, so their owner reads them again.
    pub(super) fn process_batch(&mut self, batch: &[Polled<'_>]) {
        let _span = tracing::debug_span!("batch", messages = batch.len()).entered();
        let now = crate::control::now_ms();
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
            self.ledger.consumed(messages.len() as u64);
        }
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (key, partition) in self.partitions.iter_mut() {
            if let Some((_, messages)) = groups.iter().find(|(k, _)| k == key) {
                jobs.push(Job { topic: &key.0, partition, messages, out: Output::default() });
            }
        }
        for job in run_spread(jobs, self.settings.workers, now) {
            self.ledger.add(job.topic, job.out);
        }
    }
}

/// Spreads `jobs` over at most `workers` threads, biggest first, each to
/// the least loaded, and runs them; returns them done.
fn run_spread(mut jobs: Vec<Job<'_>>, workers: usize, now: i64) -> Vec<Job<'_>> {
    let workers = workers.max(1).min(jobs.len().max(1));
    jobs.sort_by_key(|j| std::cmp::Reverse(j.messages.len()));
    let mut bins: Vec<(usize, Vec<Job<'_>>)> = (0..workers).map(|_| (0, Vec::new())).collect();
    for job in jobs {
        if let Some(bin) = bins.iter_mut().min_by_key(|(load, _)| *load) {
            bin.0 += job.messages.len();
            bin.1.push(job);
        }
    }
    if bins.len() == 1 {
        return bins.into_iter().flat_map(|(_, jobs)| run_jobs(jobs, now)).collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = bins.into_iter().map(|(_, jobs)| scope.spawn(move || run_jobs(jobs, now))).collect();
        handles.into_iter().flat_map(join_scoped).collect()
    })
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
