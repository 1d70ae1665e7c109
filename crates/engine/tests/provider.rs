//! `provider(recipient_domain, mx_host)` in a running pipeline: the MX host
//! decides when it is a known provider's, the domain otherwise, null when
//! neither is listed in `dsl/stdlib/providers.tsv`.

use engine::{CompiledPlan, EngineConfig, KeyVal, Output, Partition};
use std::sync::Arc;

/// The processing time messages without a broker timestamp arrive at
/// (2100-01-01): after every event time here, so none is too far ahead.
const NOW_MS: i64 = 4_102_444_800_000;

const PIPELINE: &str = r#"version 1

source s from kafka "t" format json { ts: timestamp event_time, rcpt: string, mx: string? }

metric by_provider from s
  group by provider(rcpt, mx) as provider
  compute count() as n
  window 1m
"#;

#[test]
fn events_group_by_the_provider_of_their_mx_or_domain() {
    let compiled = dsl::compile_str("p.stream", PIPELINE);
    let plan = compiled.plan.clone().unwrap_or_else(|| panic!("{}", compiled.render_diagnostics()));
    let plan = Arc::new(CompiledPlan::new(plan, EngineConfig::default()).expect("runnable"));
    let events = [
        r#"{"ts":"2024-06-03T00:00:01Z","rcpt":"gmail.com","mx":"gmail-smtp-in.l.google.com"}"#,
        r#"{"ts":"2024-06-03T00:00:02Z","rcpt":"contoso.com","mx":"contoso-com.mail.protection.outlook.com"}"#,
        r#"{"ts":"2024-06-03T00:00:03Z","rcpt":"Hotmail.com","mx":null}"#,
        r#"{"ts":"2024-06-03T00:00:04Z","rcpt":"example.org","mx":"mx.example.org"}"#,
        r#"{"ts":"2024-06-03T00:00:05Z","rcpt":"yahoo.com","mx":"mta5.am0.yahoodns.net"}"#,
    ];
    let mut partition = Partition::new(plan, 0);
    let mut out = Output::default();
    partition.process_all("t", 0, events, NOW_MS, &mut out);
    partition.close_all(&mut out);
    assert!(out.dead_letters.is_empty());
    let mut keys: Vec<KeyVal> = out.rows.iter().map(|r| r.keys[0].clone()).collect();
    keys.sort_by_key(|k| format!("{k:?}"));
    let text = |s: &str| KeyVal::Str(s.into());
    let mut expected = vec![text("gmail"), text("microsoft"), KeyVal::Null, text("yahoo")];
    expected.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(keys, expected);
    let microsoft = out.rows.iter().find(|r| r.keys[0] == text("microsoft")).expect("microsoft");
    assert_eq!(microsoft.states[0].finish(), KeyVal::Int(2), "the hosted domain and hotmail.com");
}
