//! Inputs shared by the benchmarks.

use std::fmt::Write;

/// A program with `rules` classifier rules and `metrics` metrics over one
/// source, shaped like real pipelines: regex and status-code rules, metrics
/// with filters, classifier keys, percentiles and rollups.
pub fn large_program(rules: usize, metrics: usize) -> String {
    let mut text = String::from(
        "version 1\n\nsource deliveries from kafka \"mta.events\" format json {\n  ts: timestamp event_time,\n  event: string,\n  \
         sender_domain: string,\n  sending_ip: string,\n  provider: string,\n  smtp_code: int?,\n  status: string?,\n  \
         diagnostic: string?,\n  latency_ms: int?,\n}\n\n",
    );
    text.push_str("classifier bounce(diagnostic: string?, status: string?, smtp_code: int?, provider: string?) {\n");
    let providers = ["gmail", "microsoft", "yahoo", "apple", "other"];
    for i in 0..rules {
        let provider = providers[i % providers.len()];
        let _ = writeln!(
            text,
            "  rule {provider}.scenario_{i} reason reason_{} {}\n    when provider == \"{provider}\" and diagnostic ~ /(mailbox|account) {i} (is )?(full|unknown|blocked)/i\n    hint \"remediation {i}\"",
            i % 30,
            ["hard", "soft", "block", "transient"][i % 4],
        );
    }
    text.push_str("  default unclassified reason undefined soft\n}\n");
    for i in 0..metrics {
        let _ = writeln!(
            text,
            "\nmetric m{i} from deliveries\n  where event in [\"bounced\", \"deferred\"] and smtp_code >= {}\n  group by sender_domain, provider, bounce(diagnostic, status, smtp_code, provider).reason as reason\n  compute count() as n, distinct(sending_ip) as ips, p99(latency_ms) as p99_ms, count_if(event == \"bounced\") as bounced, bounced / n as rate\n  window 1m, lateness 2m\n  rollup 1h keep 90d, 1d keep 2y\n  export prometheus",
            400 + i % 100
        );
    }
    text
}
