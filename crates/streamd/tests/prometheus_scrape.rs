//! A real Prometheus scrapes a real `streamd`: the embedded daemon runs the
//! shipped pipelines, Debian's `prometheus` scrapes it every second and
//! evaluates the generated alert rules, and the test reads the result back
//! through Prometheus's HTTP API — the pipelines' exported series and
//! streamd's own, with the expected labels and growing values, every series
//! the streamd dashboard plots, and the rules healthy. `promtool check
//! metrics` lints the exposition.
//!
//! Needs `prometheus` and `promtool` (`.ci/install.sh` installs them);
//! without them it prints `SKIPPED`, except under `CI`, where it fails.

mod common;

use common::{free_port, get, repo, require_tool, start_embedded, temp_dir, Guard};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The result vector of an instant query, empty while there is none.
fn query(port: u16, promql: &str) -> Vec<Value> {
    let query = serde_urlencoded::to_string([("query", promql)]).unwrap_or_default();
    let Some(body) = get(port, &format!("/api/v1/query?{query}")) else { return Vec::new() };
    let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    answer["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The sum of an instant query's values.
fn value(port: u16, promql: &str) -> f64 {
    query(port, promql).iter().filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok()).sum()
}

/// Polls `check` every 250ms until it holds or `within` passes.
fn wait_for(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

#[test]
fn prometheus_scrapes_pipeline_and_daemon_series() {
    if !require_tool("prometheus", "prometheus_scrape", "apt-get install prometheus")
        || !require_tool("promtool", "prometheus_scrape", "apt-get install prometheus")
    {
        return;
    }
    let dir = temp_dir("scrape");
    let (streamd_port, prometheus_port) = (free_port(), free_port());
    let _streamd = start_embedded(&dir, streamd_port, &repo().join("pipelines"), 60);

    let rules = repo().join("docker/prometheus/rules/streams.rules.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: streamd\n    static_configs:\n      - targets: [\"127.0.0.1:{streamd_port}\"]\n",
            rules.display()
        ),
    )
    .expect("prometheus config");
    let tsdb = dir.join("tsdb");
    let _prometheus = Guard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let started = Instant::now();

    // Scraped, with events flowing and windows closing into the store.
    assert!(
        wait_for(Duration::from_secs(40), || value(prometheus_port, "up{job=\"streamd\"}") == 1.0
            && value(prometheus_port, "stream_rows_written_total") > 0.0
            && value(prometheus_port, "count_over_time(stream_events_consumed_total[1m])") >= 3.0),
        "Prometheus did not scrape streamd with rows written; /metrics:\n{}",
        get(streamd_port, "/metrics").unwrap_or_default()
    );

    // Pipeline series: labelled by the group-by columns.
    let by_sender = query(prometheus_port, "stream_delivery_by_sender_attempts_total");
    assert!(!by_sender.is_empty(), "no stream_delivery_by_sender_attempts_total");
    for series in &by_sender {
        let labels = series["metric"].as_object().expect("labels");
        assert_eq!(labels.get("job").and_then(Value::as_str), Some("streamd"), "{series}");
        assert!(labels.get("sender_domain").and_then(Value::as_str).is_some_and(|d| d.contains('.')), "{series}");
    }
    let latency = query(prometheus_port, "stream_delivery_latency_p99_ms");
    assert!(latency.iter().any(|s| s["metric"]["provider"].is_string()), "quantile gauges per provider: {latency:?}");
    let reasons = query(prometheus_port, "stream_bounce_reasons_failures_total");
    assert!(
        reasons
            .iter()
            .all(|s| ["sender_domain", "provider", "reason", "kind"].iter().all(|l| s["metric"].get(l).is_some())),
        "{reasons:?}"
    );
    assert!(value(prometheus_port, "stream_exported_series{metric=\"delivery_by_sender\"}") > 0.0);

    // Growing values: the same counters, a few scrapes later.
    let (events, attempts) = (
        value(prometheus_port, "stream_events_consumed_total"),
        value(prometheus_port, "sum(stream_delivery_by_sender_attempts_total)"),
    );
    assert!(events > 0.0 && attempts > 0.0, "events {events}, attempts {attempts}");
    assert!(
        wait_for(Duration::from_secs(15), || {
            value(prometheus_port, "stream_events_consumed_total") > events
                && value(prometheus_port, "sum(stream_delivery_by_sender_attempts_total)") > attempts
        }),
        "counters did not grow past {events} events and {attempts} attempts"
    );
    // Monotonic as Prometheus sees them: no counter reset of any exported series.
    assert_eq!(value(prometheus_port, "sum(resets(stream_delivery_by_sender_attempts_total[5m]))"), 0.0);

    // Every series the streamd dashboard plots exists.
    let dashboard = std::fs::read_to_string(repo().join("docker/grafana/dashboards/streamd.json")).expect("dashboard");
    let plotted: BTreeSet<String> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("stream_"))
        .map(str::to_string)
        .collect();
    let mut missing = BTreeSet::new();
    wait_for(Duration::from_secs(15), || {
        missing = plotted.iter().filter(|name| query(prometheus_port, name).is_empty()).cloned().collect();
        missing.is_empty()
    });
    assert!(missing.is_empty(), "the streamd dashboard plots series Prometheus does not have: {missing:?}");

    // The generated rules load and evaluate against the real series.
    let mut rules_state = Value::Null;
    let healthy = wait_for(Duration::from_secs(10), || {
        rules_state =
            serde_json::from_str(&get(prometheus_port, "/api/v1/rules").unwrap_or_default()).unwrap_or(Value::Null);
        let rules: Vec<&Value> = rules_state["data"]["groups"]
            .as_array()
            .map(|g| g.iter().flat_map(|g| g["rules"].as_array().into_iter().flatten()).collect())
            .unwrap_or_default();
        // 3 rules over the delivery stream, 4 over reputation.stream.
        rules.len() == 7 && rules.iter().all(|r| r["health"] == "ok")
    });
    assert!(healthy, "rules not loaded and healthy: {rules_state}");

    // promtool lints our exposition. Pipeline column names are the authors'
    // (`p99_ms`): promtool's naming advice on them is allowed, nothing else.
    let exposition = get(streamd_port, "/metrics").expect("metrics");
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    lint.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("write");
    let lint = lint.wait_with_output().expect("promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&lint.stdout), String::from_utf8_lossy(&lint.stderr));
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(l.starts_with("stream_delivery_latency_") && l.contains("should not contain abbreviated units")))
        .collect();
    assert!(
        lint.status.success() || (lint.status.code() == Some(3) && problems.is_empty()),
        "promtool check metrics: {:?}\n{report}",
        lint.status
    );
    println!(
        "scraped {} pipeline series and streamd's own in {:.1}s",
        by_sender.len() + latency.len() + reasons.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
