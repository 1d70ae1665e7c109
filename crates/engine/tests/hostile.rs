//! One hostile event must never poison a partition (issue 25): an event far
//! ahead in time, an oversized message, or a broken one is dead-lettered and
//! changes no row and no later verdict.

use engine::value::{format_timestamp, KeyVal};
use engine::{CompiledPlan, EngineConfig, Message, MessageMeta, Output, Partition, Reason};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// 2024-06-03T00:00:00Z.
const BASE_MS: i64 = 1_717_372_800_000;
/// The processing time of the runs: a day after the events.
const NOW_MS: i64 = BASE_MS + 24 * HOUR;

const PIPELINE: &str = r#"version 1
source s from kafka "t" format json {
  ts: timestamp event_time, k: string, v: int,
}
metric m from s
  group by k
  compute count() as n, sum(v) as total, max(v) as top, last(v) as latest
  window 1m, lateness 2m
  rollup 1h keep 7d
"#;

fn plan(text: &str, max_message_bytes: usize) -> Arc<CompiledPlan> {
    let compiled = dsl::compile_str("hostile.stream", text);
    let plan = compiled.plan.clone().unwrap_or_else(|| panic!("{}", compiled.render_diagnostics()));
    Arc::new(CompiledPlan::new(plan, EngineConfig { max_message_bytes }).expect("plan"))
}

fn event(ts: i64, k: &str, v: i64) -> Vec<u8> {
    format!(r#"{{"ts":"{}","k":"{k}","v":{v}}}"#, format_timestamp(ts)).into_bytes()
}

/// A message with an optional broker timestamp.
fn message(payload: &[u8], offset: i64, broker_ms: Option<i64>) -> Message<'_> {
    Message {
        payload,
        meta: MessageMeta { topic: "t", partition: 0, offset, key: None, timestamp_ms: broker_ms, headers: &[] },
    }
}

type Rows = BTreeMap<(String, usize, i64, Vec<KeyVal>), (Vec<KeyVal>, Option<i64>)>;

/// A message's payload and broker timestamp.
type Msg = (Vec<u8>, Option<i64>);

/// What one partition stores from `messages` (payload and broker
/// timestamp; the last write of each row wins, as in a store), with its
/// dead letters' offsets and reasons.
fn run_with(plan: &Arc<CompiledPlan>, messages: &[Msg]) -> (Rows, Vec<(i64, Reason)>) {
    let mut partition = Partition::new(Arc::clone(plan), 0);
    let mut out = Output::default();
    for (offset, (payload, broker_ms)) in messages.iter().enumerate() {
        partition.process(&message(payload, offset as i64, *broker_ms), NOW_MS, &mut out);
    }
    partition.close_all(&mut out);
    let rows = out
        .rows
        .iter()
        .map(|r| {
            let finished = r.states.iter().map(engine::aggregate::AggState::finish).collect();
            ((r.metric.name.clone(), r.tier, r.window_start, r.keys.to_vec()), (finished, r.included_through))
        })
        .collect();
    (rows, out.dead_letters.iter().map(|d| (d.offset, d.reason)).collect())
}

/// [`run_with`], every message with the same broker timestamp.
fn run(plan: &Arc<CompiledPlan>, payloads: &[Vec<u8>], broker_ms: Option<i64>) -> (Rows, Vec<(i64, Reason)>) {
    let messages: Vec<Msg> = payloads.iter().map(|p| (p.clone(), broker_ms)).collect();
    run_with(plan, &messages)
}

/// Events a minute apart over an hour, some of them late.
fn stream() -> Vec<Vec<u8>> {
    (0..60i64)
        .map(|i| {
            let late = if i % 7 == 6 { 5 * MINUTE } else { 0 };
            event(BASE_MS + i * MINUTE - late, ["a", "b", "c"][(i % 3) as usize], i)
        })
        .collect()
}

#[test]
fn a_far_future_event_is_dead_lettered_and_changes_no_row_and_no_later_verdict() {
    let plan = plan(PIPELINE, 1 << 20);
    let clean = stream();
    let mut hostile = clean.clone();
    hostile.insert(20, br#"{"ts":"9999-12-31T00:00:00Z","k":"a","v":1}"#.to_vec());
    // Broker timestamps (streamd) and processing time (a file) both bound it.
    for broker_ms in [Some(BASE_MS + 30 * MINUTE), None] {
        let (clean_rows, clean_dead) = run(&plan, &clean, broker_ms);
        let (rows, dead) = run(&plan, &hostile, broker_ms);
        assert_eq!(rows, clean_rows, "broker timestamp {broker_ms:?}");
        let expected: Vec<(i64, Reason)> = clean_dead
            .iter()
            .map(|&(offset, reason)| (if offset >= 20 { offset + 1 } else { offset }, reason))
            .chain([(20, Reason::FutureTime)])
            .collect();
        let mut dead = dead;
        dead.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(dead, expected, "only the far-future event is added, and nothing later became late");
    }
}

#[test]
fn the_bound_is_max_future_past_the_broker_timestamp_or_else_the_processing_time() {
    let one_hour = plan(PIPELINE, 1 << 20);
    let two_hours = plan(&PIPELINE.replace("format json {", "format json max_future 2h {"), 1 << 20);
    let verdict = |plan: &Arc<CompiledPlan>, ts: i64, broker_ms: Option<i64>| {
        let mut partition = Partition::new(Arc::clone(plan), 0);
        let mut out = Output::default();
        partition.process(&message(&event(ts, "a", 1), 0, broker_ms), NOW_MS, &mut out);
        let reason = out.dead_letters.first().map(|d| (d.reason, d.detail.clone()));
        (reason, partition.max_event_time())
    };
    let broker = BASE_MS;
    assert_eq!(verdict(&one_hour, broker + HOUR, Some(broker)), (None, Some(broker + HOUR)));
    let (reason, max_event_time) = verdict(&one_hour, broker + HOUR + 1, Some(broker));
    let (reason, detail) = reason.expect("dead-lettered");
    assert_eq!((reason, max_event_time), (Reason::FutureTime, None), "it moves no event time");
    assert_eq!(
        detail,
        "event time 2024-06-03T01:00:00.001Z is more than 1h ahead of the message's broker timestamp \
         2024-06-03T00:00:00.000Z"
    );
    assert_eq!(verdict(&two_hours, broker + HOUR + 1, Some(broker)).0, None);
    // Without a broker timestamp, or with one later than the processing time
    // (a producer's clock sets it), the processing time is the reference.
    for broker_ms in [None, Some(NOW_MS + 1), Some(i64::MAX)] {
        assert_eq!(verdict(&one_hour, NOW_MS + HOUR, broker_ms).0, None);
        let (reason, _) = verdict(&one_hour, NOW_MS + HOUR + 1, broker_ms);
        assert!(reason.expect("dead-lettered").1.contains("ahead of the processing time"), "{broker_ms:?}");
    }
}

#[test]
fn an_oversized_message_leaves_a_bounded_dead_letter_with_its_size_and_digest() {
    let plan = plan(PIPELINE, 1 << 20);
    let huge = vec![b'x'; 3 << 20];
    let digest: String = Sha256::digest(&huge).iter().map(|b| format!("{b:02x}")).collect();
    let mut partition = Partition::new(Arc::clone(&plan), 0);
    let mut out = Output::default();
    partition.process(&message(&event(BASE_MS, "a", 1), 0, None), NOW_MS, &mut out);
    partition.process(&message(&huge, 1, None), NOW_MS, &mut out);
    // A reader that kept only the beginning of a message hands over that.
    let sha256: [u8; 32] = Sha256::digest(&huge).into();
    partition.process_truncated(&message(&huge[..100], 2, None), huge.len() as u64, &sha256, NOW_MS, &mut out);
    partition.process(&message(&event(BASE_MS + 1, "a", 2), 3, None), NOW_MS, &mut out);
    partition.close_all(&mut out);
    assert_eq!(out.dead_letters.len(), 2);
    for (dead, kept) in out.dead_letters.iter().zip([engine::DEAD_LETTER_PREFIX_BYTES, 100]) {
        assert_eq!(dead.reason, Reason::Oversized);
        assert_eq!(dead.payload, huge[..kept]);
        assert_eq!(
            dead.detail,
            format!("3145728 bytes; the limit is 1048576; sha256 {digest}; the first {kept} bytes are kept")
        );
    }
    assert_eq!(partition.next_offset(), Some(4));
    assert_eq!(out.rows.len(), 2, "the events around them count: {:?}", out.rows);
}

/// What a hostile message looks like, to be inserted into a good stream.
#[derive(Debug, Clone)]
enum Hostile {
    /// A valid event this far (ms) past the processing time plus `max_future`.
    Future(i64),
    Oversized(usize),
    Malformed(String),
    NotAnObject(String),
    WrongType,
    Blank,
}

impl Hostile {
    fn payload(&self) -> Vec<u8> {
        match self {
            Hostile::Future(ahead) => event(NOW_MS + HOUR + 1 + ahead, "a", 1_000_000),
            Hostile::Oversized(extra) => {
                let mut bytes = event(BASE_MS, "a", 1_000_000);
                bytes.extend(std::iter::repeat_n(b' ', 4096 + extra));
                bytes
            }
            Hostile::Malformed(text) | Hostile::NotAnObject(text) => text.clone().into_bytes(),
            Hostile::WrongType => {
                format!(r#"{{"ts":"{}","k":"a","v":"1000000"}}"#, format_timestamp(BASE_MS)).into_bytes()
            }
            Hostile::Blank => Vec::new(),
        }
    }
}

fn arb_hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        (0i64..=250_000_000_000_000).prop_map(Hostile::Future),
        (0usize..100).prop_map(Hostile::Oversized),
        prop::sample::select(vec![r#"{"ts":"#, r#"{"k":"x",,,"#, "[1,", "{", r#"{"v":1}}"#])
            .prop_map(|s| Hostile::Malformed(s.to_string())),
        prop::sample::select(vec!["[]", "7", "null", r#""text""#]).prop_map(|s| Hostile::NotAnObject(s.to_string())),
        Just(Hostile::WrongType),
        Just(Hostile::Blank),
    ]
}

/// A broker timestamp: none (a file), the processing time, or a producer's
/// create time far ahead of it.
fn arb_broker() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![Just(None), Just(Some(NOW_MS)), Just(Some(NOW_MS + 1000 * 24 * HOUR)), Just(Some(i64::MAX))]
}

/// Good events on a clock rising 0–40 s a step with up to 3 minutes of
/// disorder, so some are late for the 2-minute lateness.
fn arb_events() -> impl Strategy<Value = Vec<(i64, usize, i64)>> {
    prop::collection::vec((0i64..=40, 0i64..=180, 0usize..3, -50i64..=50), 0..120).prop_map(|steps| {
        let mut clock = BASE_MS;
        steps
            .into_iter()
            .map(|(step, behind, k, v)| {
                clock += step * 1000;
                (clock - behind * 1000, k, v)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A stream with hostile messages inserted anywhere stores, for its
    /// good events, exactly the rows the stream stores without them, and
    /// every hostile message is a dead letter. Each message has a broker
    /// timestamp or none, some of them from a producer whose clock is far
    /// ahead: that moves the event-time bound of no message.
    #[test]
    fn hostile_messages_change_no_row_of_the_good_ones(
        events in arb_events(),
        hostile in prop::collection::vec((any::<prop::sample::Index>(), arb_hostile(), arb_broker()), 0..12),
        brokers in prop::collection::vec(arb_broker(), 120),
    ) {
        let plan = plan(PIPELINE, 4096);
        let good: Vec<Msg> = events
            .iter()
            .zip(&brokers)
            .map(|(&(ts, k, v), &broker_ms)| (event(ts, ["a", "b", "c"][k], v), broker_ms))
            .collect();
        let mut mixed: Vec<(bool, Msg)> = good.iter().map(|m| (false, m.clone())).collect();
        for (at, h, broker_ms) in &hostile {
            let i = at.index(mixed.len() + 1);
            mixed.insert(i, (true, (h.payload(), *broker_ms)));
        }
        let (clean_rows, clean_dead) = run_with(&plan, &good);
        let messages: Vec<Msg> = mixed.iter().map(|(_, m)| m.clone()).collect();
        let (rows, dead) = run_with(&plan, &messages);
        prop_assert_eq!(rows, clean_rows);
        // The good events get the same verdicts (late ones stay late, no others);
        // every hostile message is dead-lettered, with a reason other than `late`.
        let good_offsets: Vec<i64> = (0..mixed.len() as i64).filter(|&o| !mixed[o as usize].0).collect();
        let dead_good: Vec<(i64, Reason)> = dead
            .iter()
            .filter(|(o, _)| !mixed[*o as usize].0)
            .map(|&(o, r)| (good_offsets.iter().position(|&g| g == o).expect("good offset") as i64, r))
            .collect();
        prop_assert_eq!(dead_good, clean_dead);
        let dead_hostile: Vec<&(i64, Reason)> = dead.iter().filter(|(o, _)| mixed[*o as usize].0).collect();
        prop_assert_eq!(dead_hostile.len(), hostile.len());
        prop_assert!(dead_hostile.iter().all(|(_, r)| *r != Reason::Late));
    }
}

/// An event time no event could have reached (an older build took a 9999
/// event; a clock that jumped ahead moved an idle partition's event time)
/// is put back to the processing time, in a checkpoint when it is restored
/// and in a running partition at its next message: kept, it would make
/// every later event late.
#[test]
fn an_unreachable_event_time_is_put_back_to_now() {
    let plan = plan(PIPELINE, 1 << 20);
    let events = stream();
    // Live: processing time runs with event time, a minute per event.
    let now_at = |offset: usize| BASE_MS + offset as i64 * MINUTE;
    let feed = |partition: &mut Partition, from: usize, out: &mut Output| {
        for (offset, payload) in events.iter().enumerate().skip(from) {
            partition.process(&message(payload, offset as i64, None), now_at(offset), out);
        }
        partition.close_all(out);
    };
    let base_rows = |out: &Output, from: i64| -> BTreeMap<(i64, Vec<KeyVal>), Vec<KeyVal>> {
        let rows = out.rows.iter().filter(|r| r.tier == 0 && r.window_start >= from);
        rows.map(|r| ((r.window_start, r.keys.to_vec()), r.states.iter().map(|s| s.finish()).collect())).collect()
    };
    let late_from = |out: &Output, from: i64| -> Vec<i64> {
        out.dead_letters.iter().filter(|d| d.offset >= from && d.reason == Reason::Late).map(|d| d.offset).collect()
    };
    let mut clean = Partition::new(Arc::clone(&plan), 0);
    let mut clean_out = Output::default();
    feed(&mut clean, 0, &mut clean_out);

    let switch = 30;
    let mut first = Partition::new(Arc::clone(&plan), 0);
    let mut out = Output::default();
    for (offset, payload) in events.iter().enumerate().take(switch) {
        first.process(&message(payload, offset as i64, None), now_at(offset), &mut out);
    }
    let mut checkpoint = first.checkpoint().expect("a checkpoint");
    let restore_at = now_at(switch);
    let far = 253_402_214_400_000; // 9999-12-31T00:00:00Z
    checkpoint.max_event_time = Some(far);

    // Put back: the events after it count as in a run that never saw it.
    let mut distrusted = checkpoint.clone();
    assert_eq!(distrusted.distrust_future_event_time(&plan, restore_at), Some(far));
    assert_eq!(distrusted.max_event_time, Some(restore_at));
    let mut healed = Partition::restore(Arc::clone(&plan), &distrusted, Vec::new());
    let mut healed_out = Output::default();
    feed(&mut healed, distrusted.replay_offset as usize, &mut healed_out);
    let after = restore_at - 2 * MINUTE; // Windows the restore's watermark leaves open.
    assert!(!base_rows(&healed_out, after).is_empty());
    assert_eq!(base_rows(&healed_out, after), base_rows(&clean_out, after));
    assert_eq!(late_from(&healed_out, switch as i64), late_from(&clean_out, switch as i64));

    // In a running partition: the clock jumps a year ahead while it idles
    // (event time advances with it), then back. The next message puts its
    // event time back, and the events after it count.
    let mut jumped = Partition::new(Arc::clone(&plan), 0);
    let mut jumped_out = Output::default();
    for (offset, payload) in events.iter().enumerate().take(switch) {
        jumped.process(&message(payload, offset as i64, None), now_at(offset), &mut jumped_out);
    }
    let year = 365 * 24 * HOUR;
    jumped.on_idle(now_at(switch) + year, MINUTE, &mut jumped_out);
    assert!(jumped.max_event_time().is_some_and(|t| t > now_at(switch) + year / 2));
    for (offset, payload) in events.iter().enumerate().skip(switch) {
        jumped.process(&message(payload, offset as i64, None), now_at(offset), &mut jumped_out);
    }
    jumped.close_all(&mut jumped_out);
    assert_eq!(base_rows(&jumped_out, after), base_rows(&clean_out, after));
    assert_eq!(late_from(&jumped_out, switch as i64), late_from(&clean_out, switch as i64));

    // Within twice the sources' `max_future` (1h) of now, an event time stands.
    for ahead in [0, HOUR, 2 * HOUR] {
        let mut reachable = checkpoint.clone();
        reachable.max_event_time = Some(restore_at + ahead);
        assert_eq!(reachable.distrust_future_event_time(&plan, restore_at), None, "{ahead}");
        assert_eq!(reachable.max_event_time, Some(restore_at + ahead));
    }
    let mut unreachable = checkpoint;
    unreachable.max_event_time = Some(restore_at + 2 * HOUR + 1);
    assert_eq!(unreachable.distrust_future_event_time(&plan, restore_at), Some(restore_at + 2 * HOUR + 1));
}
