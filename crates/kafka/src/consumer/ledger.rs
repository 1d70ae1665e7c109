//! The flush/commit ledger: what is pending, what a flush takes, what may
//! be committed once it is written, and what a failed write puts back.
//!
//! Pure bookkeeping, no I/O: the consumer feeds it the engine's output and
//! each partition's progress, hands the [`Flush`] it takes to the store
//! writer, and reports the outcome back. The rules it keeps
//! (`docs/exactly-once.md`):
//!
//! * a flush carries the checkpoints and replay points of the moment it is
//!   taken, with exactly the output produced up to then;
//! * a replay point may be committed only after its flush is written, and
//!   never behind what was committed for that partition before;
//! * a failed write goes back in front of what was produced since, so the
//!   next flush writes everything in the order it was produced;
//! * a partition given up (revoked, or claimed by another owner) loses its
//!   pending output and its commit position, also when it is given up while
//!   a flush is being written: the next owner replays it from the store.
//!
//! It knows nothing of plans. Each row holds its metric (`engine::Row`),
//! so the last rows of metrics a plan switch stopped are pending output
//! like any other, written in the order they were produced: no plan is
//! kept after it is replaced to say what those rows are.

use engine::{Checkpoint, Output};
use std::collections::{BTreeMap, BTreeSet};

/// A partition: topic and partition number.
pub(crate) type Key = (String, i32);

/// One partition's progress at the moment a flush is taken.
#[derive(Debug)]
pub(crate) struct Progress {
    pub key: Key,
    /// What the store records for it (`None`: nothing processed yet).
    pub checkpoint: Option<Checkpoint>,
    /// Where a new owner would start: the offset to commit.
    pub replay_point: Option<i64>,
    /// The owner epoch this instance claimed for it, checked by the store.
    pub epoch: Option<u64>,
}

/// Output taken for one flush, with the checkpoints and replay points that
/// cover it: everything the store writer needs, and nothing of the loop.
pub(crate) struct Flush {
    /// Per topic: rows and dead letters.
    pub outputs: BTreeMap<String, Output>,
    /// Per topic: the checkpoints written with its output.
    pub checkpoints: BTreeMap<String, Vec<Checkpoint>>,
    /// What to commit once written: topic, partition, replay point.
    pub replay_points: Vec<(String, i32, i64)>,
    /// Per topic: the owner epoch of each partition, checked by the store.
    pub owners: BTreeMap<String, Vec<(i32, u64)>>,
    /// Messages consumed for it.
    pub messages: u64,
    /// Where its dead letters go besides the store (set by the consumer).
    pub dead_letter_topic: Option<String>,
}

impl Flush {
    /// The owner epochs of `topic`'s partitions.
    pub fn owners_of(&self, topic: &str) -> &[(i32, u64)] {
        self.owners.get(topic).map_or(&[], Vec::as_slice)
    }
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Output not yet taken, per topic.
    pending: BTreeMap<String, Output>,
    /// Messages consumed for `pending`.
    messages: u64,
    /// The replay point last committed, per partition.
    committed: BTreeMap<Key, i64>,
    /// While a flush is out (taken, outcome not yet reported): the
    /// partitions given up since, which its outcome must leave alone.
    in_flight: Option<BTreeSet<Key>>,
}

impl Ledger {
    /// Where output for `topic` goes.
    pub fn output(&mut self, topic: &str) -> &mut Output {
        self.pending.entry(topic.to_string()).or_default()
    }

    /// Adds `out` to what is pending for `topic`.
    pub fn add(&mut self, topic: &str, out: Output) {
        let pending = self.output(topic);
        pending.rows.extend(out.rows);
        pending.dead_letters.extend(out.dead_letters);
    }

    /// Counts `messages` more consumed.
    pub fn consumed(&mut self, messages: u64) {
        self.messages += messages;
    }

    /// Messages consumed since the last flush was taken.
    pub fn pending_messages(&self) -> u64 {
        self.messages
    }

    /// Whether anything at all waits to be written.
    pub fn has_pending(&self) -> bool {
        self.messages > 0 || self.pending.values().any(|o| !o.is_empty())
    }

    /// The replay point last committed for `key`.
    pub fn committed(&self, key: &Key) -> Option<i64> {
        self.committed.get(key).copied()
    }

    /// Whether a flush is out.
    pub fn is_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Takes everything pending for one flush, with the progress of every
    /// partition: its checkpoint, and its replay point when it is ahead of
    /// the one committed. One flush at a time: the outcome of this one must
    /// be reported ([`Ledger::written`] or [`Ledger::failed`]) before the
    /// next is taken.
    pub fn take(&mut self, progress: impl IntoIterator<Item = Progress>) -> Flush {
        debug_assert!(self.in_flight.is_none(), "one flush at a time");
        let mut checkpoints: BTreeMap<String, Vec<Checkpoint>> = BTreeMap::new();
        let mut replay_points = Vec::new();
        let mut owners: BTreeMap<String, Vec<(i32, u64)>> = BTreeMap::new();
        for Progress { key, checkpoint, replay_point, epoch } in progress {
            if let Some(checkpoint) = checkpoint {
                checkpoints.entry(key.0.clone()).or_default().push(checkpoint);
            }
            if let Some(epoch) = epoch {
                owners.entry(key.0.clone()).or_default().push((key.1, epoch));
            }
            match (replay_point, self.committed.get(&key)) {
                (Some(replay), Some(&committed)) if replay <= committed => {}
                (Some(replay), _) => replay_points.push((key.0, key.1, replay)),
                (None, _) => {}
            }
        }
        for out in self.pending.values_mut() {
            engine::drop_superseded(&mut out.rows);
        }
        self.in_flight = Some(BTreeSet::new());
        Flush {
            outputs: std::mem::take(&mut self.pending),
            checkpoints,
            replay_points,
            owners,
            messages: std::mem::take(&mut self.messages),
            dead_letter_topic: None,
        }
    }

    /// `flush` is written: returns the replay points that may now be
    /// committed (those of partitions still held), for
    /// [`Ledger::commit_done`] once Kafka has them.
    pub fn written(&mut self, flush: &Flush) -> Vec<(String, i32, i64)> {
        let given_up = self.in_flight.take().unwrap_or_default();
        flush
            .replay_points
            .iter()
            .filter(|(topic, partition, replay)| {
                let key = (topic.clone(), *partition);
                !given_up.contains(&key) && self.committed.get(&key).is_none_or(|c| c < replay)
            })
            .cloned()
            .collect()
    }

    /// Kafka accepted the commit of `points`.
    pub fn commit_done(&mut self, points: &[(String, i32, i64)]) {
        for (topic, partition, replay) in points {
            let committed = self.committed.entry((topic.clone(), *partition)).or_insert(*replay);
            *committed = (*committed).max(*replay);
        }
    }

    /// `flush` could not be written: its output goes back in front of what
    /// was produced since, except that of partitions given up meanwhile.
    pub fn failed(&mut self, flush: Flush) {
        let given_up = self.in_flight.take().unwrap_or_default();
        let newer = std::mem::replace(&mut self.pending, flush.outputs);
        for (topic, out) in newer {
            self.add(&topic, out);
        }
        self.messages += flush.messages;
        for (topic, partition) in &given_up {
            self.drop_output(topic, &[*partition]);
        }
    }

    /// Forgets the partitions `keys` (revoked, or claimed by another owner):
    /// their output not yet written and their commit position go, and the
    /// flush being written, if any, will neither commit nor put back theirs.
    pub fn give_up<'k>(&mut self, keys: impl IntoIterator<Item = &'k Key>) {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for key in keys {
            self.committed.remove(key);
            if let Some(given_up) = &mut self.in_flight {
                given_up.insert(key.clone());
            }
            by_topic.entry(&key.0).or_default().push(key.1);
        }
        for (topic, partitions) in by_topic {
            self.drop_output(topic, &partitions);
        }
    }

    /// Leaves out of what is pending the output of `topic`'s `partitions`.
    fn drop_output(&mut self, topic: &str, partitions: &[i32]) {
        let theirs = |p: i32| partitions.contains(&p);
        if let Some(out) = self.pending.get_mut(topic) {
            out.rows.retain(|row| !theirs(row.partition));
            out.dead_letters.retain(|d| !theirs(d.partition));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsl::plan::MetricPlan;
    use engine::{Checkpoint, DeadLetter, Reason, Row};
    use std::sync::{Arc, LazyLock};

    const TOPIC: &str = "mta.events";

    /// A metric named `name` counting events of [`TOPIC`].
    fn metric(name: &str) -> Arc<MetricPlan> {
        let text = format!(
            "version 1\nsource s from kafka \"{TOPIC}\" format json {{ ts: timestamp event_time }}\nmetric {name} from s\n  compute count() as c\n  window 1m\n"
        );
        let compiled = dsl::compile_str("test.stream", &text);
        let diagnostics = compiled.render_diagnostics();
        let plan = compiled.plan.unwrap_or_else(|| panic!("{diagnostics}"));
        Arc::clone(&plan.metrics[0])
    }

    static METRIC: LazyLock<Arc<MetricPlan>> = LazyLock::new(|| metric("m"));

    fn row(partition: i32, window_start: i64) -> Row {
        row_of(&METRIC, partition, window_start)
    }

    fn row_of(metric: &Arc<MetricPlan>, partition: i32, window_start: i64) -> Row {
        Row {
            metric: Arc::clone(metric),
            tier: 0,
            window_start,
            partition,
            keys: Arc::from(Vec::new()),
            states: Arc::from(Vec::new()),
            included_through: None,
        }
    }

    fn dead_letter(partition: i32, offset: i64) -> DeadLetter {
        DeadLetter {
            partition,
            offset,
            topic: TOPIC.into(),
            reason: Reason::MalformedJson,
            detail: String::new(),
            payload: Vec::new(),
            key: None,
        }
    }

    fn output(rows: Vec<Row>) -> Output {
        Output { rows, dead_letters: Vec::new() }
    }

    fn key(partition: i32) -> Key {
        (TOPIC.to_string(), partition)
    }

    /// Partition `partition` at replay point `replay`.
    fn at(partition: i32, replay: i64) -> Progress {
        let checkpoint = Checkpoint {
            partition,
            replay_offset: replay,
            next_offset: replay + 1,
            max_event_time: None,
            metrics: None,
            plan_version: None,
        };
        Progress { key: key(partition), checkpoint: Some(checkpoint), replay_point: Some(replay), epoch: Some(7) }
    }

    fn windows(out: &BTreeMap<String, Output>) -> Vec<(i32, i64)> {
        out.values().flat_map(|o| o.rows.iter().map(|r| (r.partition, r.window_start))).collect()
    }

    #[test]
    fn a_written_flush_commits_its_replay_points_and_takes_everything_pending() {
        let mut ledger = Ledger::default();
        ledger.add(TOPIC, output(vec![row(0, 60_000), row(1, 60_000)]));
        ledger.output(TOPIC).dead_letters.push(dead_letter(0, 3));
        ledger.consumed(10);
        let flush = ledger.take([at(0, 5), at(1, 9)]);
        assert_eq!(windows(&flush.outputs), [(0, 60_000), (1, 60_000)]);
        assert_eq!(flush.outputs[TOPIC].dead_letters.len(), 1);
        assert_eq!(flush.messages, 10);
        assert_eq!(flush.checkpoints[TOPIC].len(), 2);
        assert_eq!(flush.owners_of(TOPIC), [(0, 7), (1, 7)]);
        assert!(!ledger.has_pending() && ledger.is_in_flight());
        // Nothing is committed before the write is reported.
        assert_eq!(ledger.committed(&key(0)), None);
        let points = ledger.written(&flush);
        assert_eq!(points, [(TOPIC.to_string(), 0, 5), (TOPIC.to_string(), 1, 9)]);
        ledger.commit_done(&points);
        assert_eq!((ledger.committed(&key(0)), ledger.committed(&key(1))), (Some(5), Some(9)));
        assert!(!ledger.is_in_flight());
        // An unchanged replay point is not committed again.
        let again = ledger.take([at(0, 5), at(1, 12)]);
        assert_eq!(again.replay_points, [(TOPIC.to_string(), 1, 12)]);
    }

    #[test]
    fn a_failed_write_goes_back_in_front_of_newer_output() {
        let mut ledger = Ledger::default();
        ledger.add(TOPIC, output(vec![row(0, 60_000)]));
        ledger.consumed(4);
        let flush = ledger.take([at(0, 5)]);
        // Consuming goes on while the flush is written.
        ledger.add(TOPIC, output(vec![row(0, 120_000)]));
        ledger.consumed(3);
        ledger.failed(flush);
        assert!(!ledger.is_in_flight());
        assert_eq!(ledger.committed(&key(0)), None);
        let retry = ledger.take([at(0, 8)]);
        assert_eq!(windows(&retry.outputs), [(0, 60_000), (0, 120_000)]);
        assert_eq!(retry.messages, 7);
        assert_eq!(retry.replay_points, [(TOPIC.to_string(), 0, 8)]);
    }

    #[test]
    fn a_partition_revoked_while_its_flush_is_written_is_neither_committed_nor_put_back() {
        for write_fails in [false, true] {
            let mut ledger = Ledger::default();
            ledger.add(TOPIC, output(vec![row(0, 60_000), row(1, 60_000)]));
            let flush = ledger.take([at(0, 5), at(1, 6)]);
            ledger.add(TOPIC, output(vec![row(0, 120_000), row(1, 120_000)]));
            ledger.give_up([&key(1)]);
            if write_fails {
                ledger.failed(flush);
                let retry = ledger.take([at(0, 5)]);
                assert_eq!(windows(&retry.outputs), [(0, 60_000), (0, 120_000)], "the revoked partition's go");
            } else {
                let points = ledger.written(&flush);
                assert_eq!(points, [(TOPIC.to_string(), 0, 5)], "the revoked partition is not committed");
                ledger.commit_done(&points);
                assert_eq!(ledger.committed(&key(1)), None);
                let next = ledger.take([at(0, 5)]);
                assert_eq!(windows(&next.outputs), [(0, 120_000)]);
            }
        }
    }

    #[test]
    fn a_revoked_partition_loses_its_commit_position_and_pending_output() {
        let mut ledger = Ledger::default();
        let flush = ledger.take([at(0, 5)]);
        let points = ledger.written(&flush);
        ledger.commit_done(&points);
        ledger.add(TOPIC, output(vec![row(0, 60_000)]));
        ledger.output(TOPIC).dead_letters.push(dead_letter(0, 6));
        ledger.give_up([&key(0)]);
        assert_eq!(ledger.committed(&key(0)), None);
        let flush = ledger.take([]);
        assert!(flush.outputs.values().all(Output::is_empty));
        // Assigned again and restored further back: its replay point is committed anew.
        ledger.written(&flush);
        let flush = ledger.take([at(0, 3)]);
        assert_eq!(flush.replay_points, [(TOPIC.to_string(), 0, 3)]);
    }

    /// At a plan switch the stopped metrics' last rows join what is
    /// pending, each holding its metric: no plan is kept for them, and they
    /// are written, put back and given up like any other output, in the
    /// order they were produced.
    #[test]
    fn rows_of_stopped_metrics_are_pending_output_that_survives_a_failed_write() {
        let (old, new) = (metric("old"), metric("new"));
        let names = |out: &BTreeMap<String, Output>| -> Vec<(String, (i32, i64))> {
            out.values()
                .flat_map(|o| o.rows.iter().map(|r| (r.metric.name.clone(), (r.partition, r.window_start))))
                .collect()
        };
        let mut ledger = Ledger::default();
        // At the switch, the old plan's held-back and open rows go out.
        ledger.add(TOPIC, output(vec![row_of(&old, 0, 0), row_of(&old, 1, 0)]));
        ledger.add("empty", Output::default());
        ledger.add(TOPIC, output(vec![row_of(&new, 0, 60_000)]));
        assert!(ledger.has_pending());
        let flush = ledger.take([at(0, 5), at(1, 5)]);
        let taken = [("old".to_string(), (0, 0)), ("old".to_string(), (1, 0)), ("new".to_string(), (0, 60_000))];
        assert_eq!(names(&flush.outputs), taken);
        // A second switch before the failed write is retried: the first one's rows stay first.
        ledger.add(TOPIC, output(vec![row_of(&new, 0, 120_000)]));
        ledger.failed(flush);
        let retry = ledger.take([at(0, 5), at(1, 5)]);
        let mut expected = taken.to_vec();
        expected.push(("new".to_string(), (0, 120_000)));
        assert_eq!(names(&retry.outputs), expected);
        // A partition given up takes its stopped rows along.
        ledger.failed(retry);
        ledger.give_up([&key(1)]);
        let last = ledger.take([at(0, 5)]);
        assert_eq!(windows(&last.outputs), [(0, 0), (0, 60_000), (0, 120_000)]);
        ledger.written(&last);
        assert!(!ledger.has_pending());
    }

    #[test]
    fn a_replay_point_is_never_committed_behind_the_last_commit() {
        let mut ledger = Ledger::default();
        let flush = ledger.take([at(0, 10)]);
        let points = ledger.written(&flush);
        ledger.commit_done(&points);
        // Behind or equal: nothing to commit.
        for replay in [4, 10] {
            let flush = ledger.take([at(0, replay)]);
            assert!(flush.replay_points.is_empty(), "replay point {replay}");
            assert!(ledger.written(&flush).is_empty());
        }
        // Two flushes reported out of order cannot move it back either.
        let ahead = ledger.take([at(0, 20)]);
        let points = ledger.written(&ahead);
        ledger.commit_done(&points);
        ledger.commit_done(&[(TOPIC.to_string(), 0, 15)]);
        assert_eq!(ledger.committed(&key(0)), Some(20));
    }
}
