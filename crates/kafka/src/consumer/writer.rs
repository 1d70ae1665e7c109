//! The store writer: the thread that writes flushes while the loop goes on
//! consuming, and the write itself (dead letters to Kafka, then rows, dead
//! letters and checkpoints to the store).

use super::ledger::Flush;
use super::lock;
use crate::dead_letter::DeadLetterProducer;
use crate::FlushReport;
use engine::Reason;
use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{Store, WriteBatch};

/// Why a flush did not complete; both are retried.
pub(super) enum FlushError {
    Store(store::Error),
    DeadLetters(String),
}

impl std::fmt::Display for FlushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushError::Store(error) => error.fmt(f),
            FlushError::DeadLetters(error) => f.write_str(error),
        }
    }
}

pub(super) type FlushResult = std::result::Result<FlushReport, FlushError>;

/// The thread that writes flushes in the background ([`super::state::Shared::start_writer`]).
pub(super) struct StoreWriter {
    jobs: Sender<Flush>,
    outcomes: Receiver<(Flush, FlushResult)>,
    /// Whether a flush was sent and its outcome not yet received.
    pub is_busy: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StoreWriter {
    pub fn spawn(
        store: Arc<Mutex<Box<dyn Store + Send>>>,
        dead_letters: Option<Arc<DeadLetterProducer>>,
    ) -> std::io::Result<Self> {
        let (jobs, taken) = mpsc::channel::<Flush>();
        let (outcome, outcomes) = mpsc::channel();
        let thread = std::thread::Builder::new().name("store-writer".into()).spawn(move || {
            // Ends when the consumer is dropped (both channels close with it).
            for flush in taken {
                let written = flush.write(&mut **lock(&store), dead_letters.as_deref());
                if outcome.send((flush, written)).is_err() {
                    break;
                }
            }
        })?;
        Ok(StoreWriter { jobs, outcomes, is_busy: false, thread: Some(thread) })
    }

    /// Hands a flush to the thread (it must not be busy); gives it back if
    /// the thread is gone.
    pub fn send(&mut self, flush: Flush) -> std::result::Result<(), Box<Flush>> {
        self.jobs.send(flush).map_err(|mpsc::SendError(flush)| Box::new(flush))?;
        self.is_busy = true;
        Ok(())
    }

    /// The outcome of the flush handed over: `None` if there is none, or
    /// if it is still being written after waiting up to `wait`
    /// (`Duration::MAX`: until it is done).
    pub fn outcome(&mut self, wait: Duration) -> Option<(Flush, FlushResult)> {
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

impl Flush {
    /// Dead letters to Kafka, then rows + dead letters + checkpoints to the
    /// store in one batch per topic. Only I/O and nothing of the loop's
    /// state: the writer thread runs it while the loop goes on.
    pub(super) fn write(
        &self,
        store: &mut (dyn Store + Send),
        dead_letters: Option<&DeadLetterProducer>,
    ) -> FlushResult {
        let started = Instant::now();
        let mut report = FlushReport { messages: self.messages, ..Default::default() };
        let mut dead_by_reason: BTreeMap<Reason, u64> = BTreeMap::new();
        for (topic, out) in &self.outputs {
            if let (Some(producer), Some(to)) = (dead_letters, &self.dead_letter_topic) {
                producer.send_all(to, &out.dead_letters, Duration::from_secs(30)).map_err(FlushError::DeadLetters)?;
            }
            let checkpoints = self.checkpoints.get(topic).map_or(&[][..], Vec::as_slice);
            store
                .write(&WriteBatch {
                    topic,
                    rows: &out.rows,
                    dead_letters: &out.dead_letters,
                    checkpoints,
                    owners: self.owners_of(topic),
                })
                .map_err(FlushError::Store)?;
            count_rows(&mut report.rows_by_metric, &out.rows);
            for d in &out.dead_letters {
                *dead_by_reason.entry(d.reason).or_default() += 1;
            }
        }
        report.store_write = started.elapsed();
        report.dead_letters = dead_by_reason.into_iter().collect();
        Ok(report)
    }
}

/// Adds `rows` to `counts` by metric name: one name looked up per run of
/// rows of one metric (rows come grouped by metric), not per row.
fn count_rows(counts: &mut BTreeMap<String, u64>, rows: &[engine::Row]) {
    for run in rows.chunk_by(|a, b| Arc::ptr_eq(&a.metric, &b.metric)) {
        let name = &run[0].metric.name;
        match counts.get_mut(name) {
            Some(n) => *n += run.len() as u64,
            None => drop(counts.insert(name.clone(), run.len() as u64)),
        }
    }
}
