//! Backfill: metrics computed over a topic's history, on the batch path,
//! handing over to the live consumer without a gap or a double count.
//!
//! When a deploy starts a metric, every live partition starts counting it
//! at the offset it had reached (its switch offset) and records that offset
//! in its checkpoint (`MetricStart::since_offset`). A backfill reads each
//! partition from the offset of a time (`offsetsForTimes`) up to, not
//! including, that switch offset, so the two together count every message
//! once. Its rows carry their own source partition,
//! [`BACKFILL_PARTITION_BASE`] + the Kafka partition, beside the live
//! rows of the same windows; reads merge source partitions by merging
//! states, so a window that straddles the switch reads as one. Its
//! checkpoints live under their own name ([`checkpoint_topic`]) and are
//! written with the rows they cover, as the live consumer's are: a backfill
//! killed at any moment resumes where its last transaction left it and
//! ends with the same rows as one that ran through.
//!
//! It assigns partitions itself (no group membership, no commits: the
//! store holds its progress); `group.id` only names it to the brokers.

use crate::batch::{self, Fed};
use crate::{Error, Result};
use engine::{CompiledPlan, Partition};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::Store;

/// Source partition of a backfill's rows: this plus the Kafka partition.
pub const BACKFILL_PARTITION_BASE: i32 = 1_000_000;

/// How a backfill runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `group.id` (the backfill's own).
    pub group_id: String,
    /// Extra librdkafka settings, passed through as given.
    pub librdkafka: Vec<(String, String)>,
    /// The topic to read.
    pub topic: String,
    /// Start at the first message of this time or later (ms since the epoch).
    pub from_ms: i64,
    /// Stop before the first message of this time, if it comes before the switch.
    pub to_ms: Option<i64>,
    /// Messages covered by one store transaction.
    pub flush_messages: usize,
    /// Worker threads.
    pub workers: usize,
    /// Processing time given to the engine.
    pub now_ms: i64,
    /// How long to wait for the brokers' answers.
    pub timeout: Duration,
}

/// What a backfill reads of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The Kafka partition.
    pub partition: i32,
    /// The first offset of `from` (`None`: no message that late).
    pub from_offset: i64,
    /// Where the live consumer started the metrics: the backfill stops before it.
    pub switch_offset: i64,
    /// Where this run starts: `from_offset`, or the replay point of an
    /// interrupted backfill.
    pub resume_offset: i64,
    /// One past the last offset an interrupted backfill processed.
    pub done_through: Option<i64>,
}

impl Range {
    /// Messages (offsets) left to read.
    pub fn remaining(&self) -> u64 {
        u64::try_from(self.switch_offset - self.resume_offset).unwrap_or(0)
    }

    /// Whether nothing is left to do: the range is empty, or an earlier
    /// run read all of it and closed its windows (its replay point reached
    /// the switch).
    pub fn is_done(&self) -> bool {
        self.resume_offset >= self.switch_offset || self.from_offset >= self.switch_offset
    }
}

/// The name a backfill of `plan`'s metrics over `topic` keeps its
/// checkpoints under: one per set of metric versions.
pub fn checkpoint_topic(topic: &str, plan: &dsl::Plan) -> String {
    let hashes: Vec<&str> = plan.metrics.iter().map(|m| m.hash.get(..12).unwrap_or(&m.hash)).collect();
    format!("{topic}#backfill:{}", hashes.join("+"))
}

/// `plan` with only the metrics named (and no alerts): what a backfill runs.
///
/// # Errors
/// When a name is not a metric of the plan.
pub fn only_metrics(plan: &dsl::Plan, names: &[String]) -> Result<dsl::Plan> {
    let mut only = plan.clone();
    for name in names {
        if !plan.metrics.iter().any(|m| &m.name == name) {
            return Err(Error::Backfill(format!("no metric `{name}` in the pipelines")));
        }
    }
    only.metrics.retain(|m| names.contains(&m.name));
    only.alerts.clear();
    Ok(only)
}

fn consumer(settings: &Settings) -> Result<BaseConsumer> {
    crate::consumer::config_for_consumer(&settings.brokers, &settings.group_id, &settings.librdkafka, &[])
        .create()
        .map_err(|source| Error::Kafka { context: "cannot create the backfill consumer".into(), source })
}

fn kafka(context: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error + '_ {
    move |source| Error::Kafka { context: context.to_string(), source }
}

/// What a backfill of `plan` (the metrics to backfill, see [`only_metrics`])
/// would read: per partition, the offset of `from`, the switch offset the
/// live consumer recorded, and where an interrupted backfill left off.
///
/// # Errors
/// When the brokers or the store cannot answer, or when a partition's live
/// consumer has not started one of the metrics (deploy them first),
/// counted it from the beginning (nothing to backfill), or started it in a
/// table another version of it had written (see
/// [`engine::MetricStart::replaced`]).
pub fn plan_ranges(store: &dyn Store, plan: &dsl::Plan, settings: &Settings) -> Result<Vec<Range>> {
    let consumer = consumer(settings)?;
    let metadata = consumer
        .fetch_metadata(Some(&settings.topic), settings.timeout)
        .map_err(kafka("cannot read the topic's metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == settings.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(Error::Backfill(format!("topic `{}` does not exist or has no partitions", settings.topic)));
    }
    let offsets_of = |time: i64| -> Result<Vec<i64>> {
        if time <= 0 {
            // The beginning: no need to ask by time.
            return partitions
                .iter()
                .map(|&p| {
                    let (low, _) = consumer
                        .fetch_watermarks(&settings.topic, p, settings.timeout)
                        .map_err(kafka("cannot read a partition's start"))?;
                    Ok(low)
                })
                .collect();
        }
        let mut query = TopicPartitionList::new();
        for &p in &partitions {
            query
                .add_partition_offset(&settings.topic, p, Offset::Offset(time))
                .map_err(kafka("cannot ask for the offsets of a time"))?;
        }
        let answer =
            consumer.offsets_for_times(query, settings.timeout).map_err(kafka("cannot read the offsets of a time"))?;
        partitions
            .iter()
            .map(|&p| {
                let (_, high) = consumer
                    .fetch_watermarks(&settings.topic, p, settings.timeout)
                    .map_err(kafka("cannot read a partition's end"))?;
                Ok(match answer.find_partition(&settings.topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    // No message at or after the time: the partition's end.
                    _ => high,
                })
            })
            .collect()
    };
    let from = offsets_of(settings.from_ms)?;
    let to = settings.to_ms.map(offsets_of).transpose()?;
    let backfill_topic = checkpoint_topic(&settings.topic, plan);
    let mut ranges = Vec::with_capacity(partitions.len());
    for (i, &p) in partitions.iter().enumerate() {
        let live = store.checkpoint(&settings.topic, p).map_err(Error::Store)?;
        let mut switch = i64::MAX;
        for metric in &plan.metrics {
            let started = live
                .as_ref()
                .and_then(|c| c.metrics.as_ref())
                .and_then(|starts| starts.iter().find(|s| s.hash == metric.hash));
            match started {
                Some(engine::MetricStart { replaced: true, since_offset: Some(since), .. }) => {
                    return Err(Error::Backfill(format!(
                        "`{}` took over table `{}` from another version of it on partition {p} at offset {}: the \
                         table holds that version's rows up to there, and a backfill beside them would count those \
                         windows twice; give the changed metric a new `into table` name to backfill it",
                        metric.name, metric.table, since
                    )))
                }
                Some(start) => match start.since_offset {
                    Some(since) => switch = switch.min(since),
                    None => {
                        return Err(Error::Backfill(format!(
                        "the live consumer has counted `{}` on partition {p} from the beginning: nothing to backfill",
                        metric.name
                    )))
                    }
                },
                None => {
                    return Err(Error::Backfill(format!(
                        "the live consumer has not started `{}` on partition {p} yet: deploy it and let it apply first",
                        metric.name
                    )))
                }
            }
        }
        if let Some(to) = &to {
            switch = switch.min(to[i]);
        }
        let done = store.checkpoint(&backfill_topic, BACKFILL_PARTITION_BASE + p).map_err(Error::Store)?;
        ranges.push(Range {
            partition: p,
            from_offset: from[i],
            switch_offset: switch,
            resume_offset: done.as_ref().map_or(from[i], |c| c.replay_offset.max(from[i])),
            done_through: done.map(|c| c.next_offset),
        });
    }
    Ok(ranges)
}

/// What a backfill did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Messages processed (replayed ones of a resumed backfill included).
    pub messages: u64,
    /// Rows written, per metric of the backfilled plan.
    pub rows_written: Vec<u64>,
    /// Partitions read.
    pub partitions: usize,
}

/// Runs the backfill of `plan` (see [`only_metrics`]) over `ranges` (from
/// [`plan_ranges`]), calling `progress` with the messages read so far.
///
/// # Errors
/// When Kafka or the store fails; what was written stays, and a rerun
/// resumes from it.
pub fn run<S: Store + Send + ?Sized>(
    store: &mut S,
    plan: &Arc<CompiledPlan>,
    ranges: &[Range],
    settings: &Settings,
    mut progress: impl FnMut(u64),
) -> Result<Summary> {
    let todo: Vec<&Range> = ranges.iter().filter(|r| !r.is_done()).collect();
    if todo.is_empty() {
        return Ok(Summary { rows_written: vec![0; plan.plan.metrics.len()], ..Summary::default() });
    }
    let backfill_topic = checkpoint_topic(&settings.topic, &plan.plan);
    let mut partitions = Vec::with_capacity(todo.len());
    for range in &todo {
        let id = BACKFILL_PARTITION_BASE + range.partition;
        let partition = match store.checkpoint(&backfill_topic, id).map_err(Error::Store)? {
            Some(mut checkpoint) => {
                // As the live consumer does (see `Checkpoint::distrust_future_event_time`).
                checkpoint.distrust_future_event_time(plan, settings.now_ms);
                let tier_rows = store.open_tier_rows(&plan.plan, &checkpoint).map_err(Error::Store)?;
                Partition::restore(Arc::clone(plan), &checkpoint, tier_rows)
            }
            None => Partition::new(Arc::clone(plan), id),
        };
        partitions.push(partition);
    }
    let consumer = consumer(settings)?;
    let mut assignment = TopicPartitionList::new();
    for range in &todo {
        assignment
            .add_partition_offset(&settings.topic, range.partition, Offset::Offset(range.resume_offset))
            .map_err(kafka("cannot assign a partition"))?;
    }
    consumer.assign(&assignment).map_err(kafka("cannot assign the partitions"))?;
    let batch_settings = batch::Settings {
        workers: settings.workers,
        now_ms: settings.now_ms,
        flush_messages: settings.flush_messages,
        close_at_end: true,
        keep_dead_letters: false,
        checkpoint_topic: Some(backfill_topic),
    };
    let outcome = batch::run(store, plan, &settings.topic, partitions, &batch_settings, |feeder| {
        let mut left = todo.len();
        let mut finished = vec![false; todo.len()];
        let mut last_message = Instant::now();
        while left > 0 {
            let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
                if last_message.elapsed() > settings.timeout {
                    return Err(Error::Backfill(format!(
                        "no message from `{}` for {:?} before the switch offsets were reached",
                        settings.topic, settings.timeout
                    )));
                }
                continue;
            };
            last_message = Instant::now();
            let message = polled.map_err(kafka("cannot read the topic"))?;
            let Some(i) = todo.iter().position(|r| r.partition == message.partition()) else { continue };
            let range = todo[i];
            if finished[i] {
                continue;
            }
            if message.offset() < range.switch_offset {
                feeder.push(Fed {
                    partition: i,
                    offset: message.offset(),
                    payload: message.payload().unwrap_or_default(),
                    key: message.key(),
                    timestamp_ms: message.timestamp().to_millis(),
                    truncated: None,
                })?;
                if feeder.messages().is_multiple_of(4096) {
                    progress(feeder.messages());
                }
            }
            if message.offset() + 1 >= range.switch_offset {
                finished[i] = true;
                left -= 1;
                let mut done = TopicPartitionList::new();
                done.add_partition(&settings.topic, range.partition);
                let _ = consumer.pause(&done);
            }
        }
        progress(feeder.messages());
        Ok(())
    })?;
    Ok(Summary { messages: outcome.messages, rows_written: outcome.rows_written, partitions: todo.len() })
}
