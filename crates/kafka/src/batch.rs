//! The batch path: messages read ahead of time (a file's lines, a topic's
//! history) run through their partitions on worker threads, one worker per
//! core, while a writer thread writes what they produce to the store.
//!
//! The caller feeds messages through a [`Feeder`] on its own thread, which
//! packs them into chunks per worker; each worker owns a fixed subset of the
//! partitions (partition `i` belongs to worker `i % workers`), processes a
//! chunk at a time and hands its rows, dead letters and the checkpoints of
//! its partitions to the writer. The writer gathers them and writes a
//! transaction once `flush_messages` messages are covered: each partition's
//! rows are written in the order they were produced, with the partition's
//! latest checkpoint, so what is durable is always a prefix of every
//! partition's input, as on the live path. Channels are bounded: a slow
//! writer holds the workers back, slow workers hold the feeder back. The
//! writer's queue holds a whole transaction's worth of results per worker,
//! so the workers keep going while it writes one transaction (a queue of a
//! few chunks stalls them for most of every write), and memory stays
//! bounded by about two transactions.

use crate::{Error, Result};
use engine::{Checkpoint, Message, MessageMeta, Output, Partition};
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use store::{Store, WriteBatch};

/// Messages per chunk handed to a worker.
const CHUNK_MESSAGES: usize = 2048;
/// Chunks waiting per worker (more smooths a burst of one partition's
/// events), and results waiting for the writer beyond one transaction's.
const QUEUE: usize = 8;

/// How a batch run goes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Worker threads; at most one per partition.
    pub workers: usize,
    /// Processing time given to the engine (bounds event time with `max_future`).
    pub now_ms: i64,
    /// Messages covered by one store transaction.
    pub flush_messages: usize,
    /// Close every open window when the input ends (a finite input:
    /// `streamctl run`); otherwise windows stay open and only what is
    /// closed by then is written, with checkpoints to resume from.
    pub close_at_end: bool,
    /// Whether dead letters are written (a backfill leaves them to the
    /// live consumer, which met the same messages first).
    pub keep_dead_letters: bool,
    /// The name checkpoints are written under, when not the messages'
    /// topic (a backfill keeps its progress apart from the live consumer's).
    pub checkpoint_topic: Option<String>,
}

impl Settings {
    /// One worker per core, for `partitions` partitions.
    pub fn workers_for(partitions: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        partitions.clamp(1, cores.max(1))
    }
}

/// What a run leaves: its partitions (for their stats and checkpoints) and
/// the rows written per metric.
pub struct Outcome {
    /// The partitions, in the order given.
    pub partitions: Vec<Partition>,
    /// Rows written, per metric of the plan (a tier row superseded within a
    /// transaction is not written).
    pub rows_written: Vec<u64>,
    /// Messages fed.
    pub messages: u64,
}

/// One message of a chunk: ranges into the chunk's buffer.
struct Entry {
    /// Index of the partition among those given to [`run`].
    partition: usize,
    offset: i64,
    payload: (usize, usize),
    key: Option<(usize, usize)>,
    timestamp_ms: Option<i64>,
    /// For a message longer than the limit: its whole length and digest.
    truncated: Option<(u64, [u8; 32])>,
}

#[derive(Default)]
struct Chunk {
    buf: Vec<u8>,
    entries: Vec<Entry>,
}

/// What a worker hands the writer.
struct Produced {
    messages: u64,
    out: Output,
    checkpoints: Vec<Checkpoint>,
}

/// Packs messages into chunks for the workers; see [`run`].
pub struct Feeder {
    workers: usize,
    /// Messages per chunk: [`CHUNK_MESSAGES`], or fewer when transactions are smaller.
    chunk_messages: usize,
    chunks: Vec<Chunk>,
    senders: Vec<SyncSender<Chunk>>,
    spare: Receiver<Chunk>,
    messages: u64,
}

/// A message for [`Feeder::push`].
#[derive(Debug, Clone, Copy)]
pub struct Fed<'a> {
    /// Index of its partition among those given to [`run`].
    pub partition: usize,
    /// Its offset in that partition.
    pub offset: i64,
    /// The bytes (for a truncated message, the beginning kept).
    pub payload: &'a [u8],
    /// The Kafka key.
    pub key: Option<&'a [u8]>,
    /// The broker timestamp.
    pub timestamp_ms: Option<i64>,
    /// For a message longer than the limit: its whole length and SHA-256.
    pub truncated: Option<(u64, [u8; 32])>,
}

impl Feeder {
    /// Queues a message for its partition's worker.
    ///
    /// # Errors
    /// When the run has stopped (a worker or the writer failed); [`run`]
    /// then returns why.
    pub fn push(&mut self, message: Fed<'_>) -> Result<()> {
        let w = message.partition % self.workers;
        let chunk = &mut self.chunks[w];
        let start = chunk.buf.len();
        chunk.buf.extend_from_slice(message.payload);
        let payload = (start, chunk.buf.len());
        let key = message.key.map(|key| {
            let start = chunk.buf.len();
            chunk.buf.extend_from_slice(key);
            (start, chunk.buf.len())
        });
        chunk.entries.push(Entry {
            partition: message.partition,
            offset: message.offset,
            payload,
            key,
            timestamp_ms: message.timestamp_ms,
            truncated: message.truncated,
        });
        self.messages += 1;
        if chunk.entries.len() >= self.chunk_messages {
            self.send(w)?;
        }
        Ok(())
    }

    /// Messages pushed so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    fn send(&mut self, w: usize) -> Result<()> {
        let mut fresh = self.spare.try_recv().unwrap_or_default();
        fresh.buf.clear();
        fresh.entries.clear();
        let full = std::mem::replace(&mut self.chunks[w], fresh);
        self.senders[w].send(full).map_err(|_| Error::Stopped)
    }

    fn finish(mut self) -> Result<u64> {
        for w in 0..self.workers {
            if !self.chunks[w].entries.is_empty() {
                self.send(w)?;
            }
        }
        Ok(self.messages)
    }
}

/// Runs `partitions` (fresh or restored) over what `feed` pushes, on
/// `settings.workers` threads, writing to `store` from another thread.
/// `topic` is the messages' topic.
///
/// # Errors
/// When writing fails (nothing after the last written transaction is
/// durable), or what `feed` returns.
pub fn run<S: Store + Send + ?Sized>(
    store: &mut S,
    plan: &Arc<engine::CompiledPlan>,
    topic: &str,
    partitions: Vec<Partition>,
    settings: &Settings,
    feed: impl FnOnce(&mut Feeder) -> Result<()>,
) -> Result<Outcome> {
    let workers = settings.workers.clamp(1, partitions.len().max(1));
    let count = partitions.len();
    let mut owned: Vec<Vec<(usize, Partition)>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, partition) in partitions.into_iter().enumerate() {
        owned[i % workers].push((i, partition));
    }
    let chunk_messages = settings.flush_messages.clamp(1, CHUNK_MESSAGES);
    let chunks_per_transaction = settings.flush_messages.div_ceil(chunk_messages);
    let (produced_tx, produced_rx) = sync_channel::<Produced>(workers * (chunks_per_transaction + QUEUE));
    let (spare_tx, spare_rx) = sync_channel::<Chunk>(QUEUE * workers);
    let mut senders = Vec::with_capacity(workers);
    let mut receivers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = sync_channel::<Chunk>(QUEUE);
        senders.push(tx);
        receivers.push(rx);
    }
    let metrics = plan.plan.metrics.len();
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("batch-writer".into())
            .spawn_scoped(scope, || {
                let checkpoint_topic = settings.checkpoint_topic.as_deref().unwrap_or(topic);
                write_all(store, &plan.plan, checkpoint_topic, produced_rx, settings, metrics)
            })
            .map_err(Error::Thread)?;
        let mut handles = Vec::with_capacity(workers);
        for (w, (chunks, partitions)) in receivers.into_iter().zip(owned).enumerate() {
            let produced = produced_tx.clone();
            let spare = spare_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("batch-worker-{w}"))
                .spawn_scoped(scope, move || work(partitions, topic, chunks, produced, spare, settings))
                .map_err(Error::Thread)?;
            handles.push(handle);
        }
        drop(produced_tx);
        drop(spare_tx);
        let mut feeder = Feeder {
            workers,
            chunk_messages,
            chunks: (0..workers).map(|_| Chunk::default()).collect(),
            senders,
            spare: spare_rx,
            messages: 0,
        };
        let fed = feed(&mut feeder).and_then(|()| feeder.finish());
        // Every sender is dropped by now: the workers drain and stop.
        let mut slots: Vec<Option<Partition>> = (0..count).map(|_| None).collect();
        for handle in handles {
            for (i, partition) in handle.join().map_err(|_| Error::Stopped)? {
                slots[i] = Some(partition);
            }
        }
        let rows_written = writer.join().map_err(|_| Error::Stopped)??;
        let messages = fed?;
        let partitions = slots.into_iter().flatten().collect();
        Ok(Outcome { partitions, rows_written, messages })
    })
}

/// A worker: processes the chunks of its partitions, hands over what they produce.
fn work(
    mut partitions: Vec<(usize, Partition)>,
    topic: &str,
    chunks: Receiver<Chunk>,
    produced: SyncSender<Produced>,
    spare: SyncSender<Chunk>,
    settings: &Settings,
) -> Vec<(usize, Partition)> {
    // Index of each partition among the worker's own.
    let local: BTreeMap<usize, usize> = partitions.iter().enumerate().map(|(j, (i, _))| (*i, j)).collect();
    let mut out = Output::default();
    let mut stopped = false;
    while let Ok(chunk) = chunks.recv() {
        let mut last = usize::MAX;
        let mut j = 0;
        for entry in &chunk.entries {
            if entry.partition != last {
                last = entry.partition;
                j = local.get(&entry.partition).copied().unwrap_or(0);
            }
            let Some((_, partition)) = partitions.get_mut(j) else { continue };
            let meta = MessageMeta {
                topic,
                partition: partition.partition(),
                offset: entry.offset,
                key: entry.key.map(|(s, e)| &chunk.buf[s..e]),
                timestamp_ms: entry.timestamp_ms,
                headers: &[],
            };
            let message = Message { payload: &chunk.buf[entry.payload.0..entry.payload.1], meta };
            match &entry.truncated {
                None => partition.process(&message, settings.now_ms, &mut out),
                Some((len, sha256)) => partition.process_truncated(&message, *len, sha256, settings.now_ms, &mut out),
            }
        }
        let messages = chunk.entries.len() as u64;
        let _ = spare.try_send(chunk);
        let checkpoints = partitions.iter().filter_map(|(_, p)| p.checkpoint()).collect();
        let batch = Produced { messages, out: std::mem::take(&mut out), checkpoints };
        if produced.send(batch).is_err() {
            // The writer failed: stop, which stops the feeder.
            stopped = true;
            break;
        }
    }
    if !stopped {
        for (_, partition) in &mut partitions {
            if settings.close_at_end {
                partition.close_all(&mut out);
            } else {
                partition.emit_held_back(&mut out);
            }
        }
        let checkpoints = partitions.iter().filter_map(|(_, p)| p.checkpoint()).collect();
        let _ = produced.send(Produced { messages: 0, out, checkpoints });
    }
    partitions
}

/// The writer: gathers what the workers produce and writes a transaction
/// per `flush_messages` messages, and at the end.
fn write_all<S: Store + ?Sized>(
    store: &mut S,
    plan: &dsl::Plan,
    topic: &str,
    produced: Receiver<Produced>,
    settings: &Settings,
    metrics: usize,
) -> Result<Vec<u64>> {
    let mut rows_written = vec![0u64; metrics];
    let mut pending = Output::default();
    let mut checkpoints: BTreeMap<i32, Checkpoint> = BTreeMap::new();
    let mut messages = 0u64;
    let mut write = |pending: &mut Output, checkpoints: &mut BTreeMap<i32, Checkpoint>| -> Result<()> {
        engine::drop_superseded(&mut pending.rows);
        let checkpoints: Vec<Checkpoint> = std::mem::take(checkpoints).into_values().collect();
        store
            .write(&WriteBatch {
                topic,
                rows: &pending.rows,
                dead_letters: &pending.dead_letters,
                checkpoints: &checkpoints,
                owners: &[],
            })
            .map_err(Error::Store)?;
        // One lookup per run of rows of one metric, not per row.
        for run in pending.rows.chunk_by(|a, b| Arc::ptr_eq(&a.metric, &b.metric)) {
            if let Some(m) = run[0].metric_index(plan) {
                rows_written[m] += run.len() as u64;
            }
        }
        pending.rows.clear();
        pending.dead_letters.clear();
        Ok(())
    };
    let mut dirty = false;
    while let Ok(mut batch) = produced.recv() {
        messages += batch.messages;
        pending.rows.append(&mut batch.out.rows);
        if settings.keep_dead_letters {
            pending.dead_letters.append(&mut batch.out.dead_letters);
        }
        for checkpoint in batch.checkpoints {
            checkpoints.insert(checkpoint.partition, checkpoint);
        }
        dirty = true;
        if messages >= settings.flush_messages as u64 {
            write(&mut pending, &mut checkpoints)?;
            messages = 0;
            dirty = false;
        }
    }
    if dirty {
        write(&mut pending, &mut checkpoints)?;
    }
    Ok(rows_written)
}
