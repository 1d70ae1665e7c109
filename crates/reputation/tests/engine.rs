//! Observations go through the same engine as every other source: the
//! shipped `pipelines/reputation.stream` compiles, and the JSON the poller
//! writes decodes into its metrics' rows without a dead letter.

use std::path::Path;
use std::sync::Arc;

use engine::value::KeyVal;
use engine::{CompiledPlan, EngineConfig, Message, MessageMeta, Output, Partition};
use reputation::{Observation, State};

fn shipped_plan() -> dsl::Plan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    let files = dsl::files::bundle_files(&dir).expect("pipelines");
    let built = dsl::bundle::Bundle::build(files, 1, Default::default());
    let (_, compiled) = built.unwrap_or_else(|c| panic!("{}", c.render_diagnostics()));
    compiled.plan.expect("compiled")
}

fn observation(minute: i64, list: &str, target: &str, state: State, degraded: Option<&str>) -> Observation {
    Observation {
        // 2024-06-03T00:00:00Z plus `minute` minutes.
        time_ms: 1_717_372_800_000 + minute * 60_000,
        list: list.into(),
        zone: format!("{list}.example"),
        kind: "ip".into(),
        target: target.into(),
        state,
        code: (state == State::Listed).then(|| "127.0.0.2".into()),
        meaning: None,
        degraded: degraded.map(Into::into),
        txt: None,
        weight: 3.0,
        budget_used: 0.5,
        resolver: "127.0.0.1:53".into(),
        latency_ms: 3,
        cached: false,
    }
}

#[test]
fn observations_become_rows_of_the_shipped_reputation_metrics() {
    let plan = shipped_plan();
    let source = plan.sources.iter().position(|s| s.dnsbl.is_some()).expect("a dnsbl source");
    let topic = plan.sources[source].topic.clone();
    let status = plan.metrics.iter().position(|m| m.name == "dnsbl_status").expect("dnsbl_status");
    let health = plan.metrics.iter().position(|m| m.name == "dnsbl_health").expect("dnsbl_health");
    let compiled = Arc::new(CompiledPlan::new(plan, EngineConfig::default()).expect("plan builds"));
    let mut partition = Partition::new(compiled.clone(), 0);
    let mut out = Output::default();

    let observations = [
        observation(0, "zen", "192.0.2.1", State::Clean, None),
        observation(0, "zen", "192.0.2.2", State::Listed, None),
        observation(1, "zen", "192.0.2.2", State::Listed, None),
        observation(2, "zen", "192.0.2.3", State::Degraded, Some("rate_limited")),
        observation(2, "spamcop", "192.0.2.1", State::Degraded, Some("canary_failed")),
    ];
    for (offset, obs) in observations.iter().enumerate() {
        let payload = obs.to_json();
        let key = obs.key();
        let meta = MessageMeta {
            topic: &topic,
            partition: 0,
            offset: offset as i64,
            key: Some(key.as_bytes()),
            timestamp_ms: Some(obs.time_ms),
            headers: &[],
        };
        partition.process(&Message { payload: &payload, meta }, obs.time_ms, &mut out);
    }
    partition.close_all(&mut out);
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);

    let value = |metric: usize, keys: &[&str], column: usize| -> KeyVal {
        let row = out
            .rows
            .iter()
            .find(|r| {
                r.metric_index(&compiled.plan) == Some(metric)
                    && r.tier == 0
                    && r.keys.iter().map(engine::export::label_value).collect::<Vec<_>>() == keys
            })
            .unwrap_or_else(|| panic!("no row {keys:?}"));
        row.states[column].finish()
    };
    // dnsbl_status: observations, listed, degraded, weight.
    assert_eq!(value(status, &["zen", "192.0.2.2"], 0), KeyVal::Int(2));
    assert_eq!(value(status, &["zen", "192.0.2.2"], 1), KeyVal::Int(2));
    assert_eq!(value(status, &["zen", "192.0.2.1"], 1), KeyVal::Int(0));
    assert_eq!(value(status, &["zen", "192.0.2.3"], 2), KeyVal::Int(1));
    // dnsbl_health: observations, canary_failed.
    assert_eq!(value(health, &["spamcop"], 1), KeyVal::Int(1));
    assert_eq!(value(health, &["zen"], 0), KeyVal::Int(4));
    assert_eq!(value(health, &["zen"], 1), KeyVal::Int(0));
}
