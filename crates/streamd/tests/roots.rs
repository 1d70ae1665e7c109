//! Which files a directory compiles is one rule (`dsl::files`): every
//! `*.stream` file found is a root, imports resolve relative to the importing
//! file. So for every fixture directory under `tests/roots/` (flat files; a
//! metric in a subdirectory importing `../deliveries.stream`; a library only
//! in a subdirectory, reached only by import) `streamctl check`, `streamctl
//! run`, a daemon the directory was deployed to and `streamd --watch` of the
//! directory name the same metrics, and every one of them counts events.
//!
//! Regression test for issue 26 item 1: a deployed bundle compiled only its
//! top-level files, so a metric in a subdirectory silently never ran.

mod common;

use common::{free_port, run_streamctl, start_embedded_watching, status, temp_dir, wait_until, Guard};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const FIXTURES: [&str; 3] = ["flat", "nested", "library"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/roots").join(name)
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().into_iter().flatten().filter_map(|n| n.as_str().map(String::from)).collect()
}

/// The metrics `streamctl check --format json` says `dir` defines.
fn checked_metrics(dir: &Path) -> Vec<String> {
    let out = run_streamctl(&["check", "--format", "json", utf8(dir)]);
    assert!(out.status.success(), "{} does not check", dir.display());
    let report: Value = serde_json::from_slice(&out.stdout).expect("check's json report");
    names(&report["metrics"])
}

/// Per metric, the events `streamctl run` of `dir` counted over `events`.
fn run_counts(dir: &Path, events: &Path, work: &Path) -> Vec<(String, u64)> {
    let summary = work.join("summary.json");
    let db = format!("sqlite:{}", work.join("run.db").display());
    let out =
        run_streamctl(&["run", utf8(dir), "--input", utf8(events), "--store", &db, "--summary-json", utf8(&summary)]);
    assert!(out.status.success(), "streamctl run {}", dir.display());
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    let metrics = summary["metrics"].as_array().cloned().unwrap_or_default();
    metrics
        .iter()
        .map(|m| (m["name"].as_str().unwrap_or_default().to_string(), m["events"].as_u64().unwrap_or(0)))
        .collect()
}

/// Generated delivery events as JSON lines (gen's fixed start time: event
/// time stays within lateness of the batch before, so none is late).
fn generate(path: &Path, events: u32) {
    let out = run_streamctl(&["gen", "--events", &events.to_string(), "--bad-ratio", "0", "--out", utf8(path)]);
    assert!(out.status.success(), "streamctl gen");
}

/// Whether `/status` lists exactly `expected`, each counting events.
fn runs_exactly(status: &Value, expected: &[String]) -> bool {
    let counting = status["consumer"]["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["events"].as_u64().is_some_and(|n| n > 0))
        .filter_map(|m| m["name"].as_str().map(String::from))
        .collect::<Vec<_>>();
    names(&status["metrics"]) == expected && expected.iter().all(|m| counting.contains(m))
}

#[test]
fn check_run_and_deploy_agree_on_the_metrics_of_every_fixture_directory() {
    let work = temp_dir("roots-deploy");
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("mta.events", 2, 1).expect("topic");
    cluster.create_topic("mta.events.dlq", 1, 1).expect("dlq");
    cluster.create_topic("streamd.control", 1, 1).expect("control topic");
    let brokers = cluster.bootstrap_servers();
    let config = work.join("streamd.toml");
    std::fs::write(&config, "[deploy]\nreport_interval_s = 1\n[kafka]\nflush_interval_ms = 200\n").expect("config");
    let port = free_port();
    let _daemon = Guard(
        Command::new(env!("CARGO_BIN_EXE_streamd"))
            .args(["--config", utf8(&config), "--brokers", &brokers])
            .args(["--pipelines", utf8(&fixture("flat"))])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--store", &format!("sqlite:{}", work.join("streamd.db").display())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start streamd"),
    );
    wait_until("streamd to start", Duration::from_secs(30), || status(port).is_some());
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");

    for name in FIXTURES {
        let dir = fixture(name);
        let checked = checked_metrics(&dir);
        assert_eq!(checked.len(), 2, "{name}: each fixture defines two metrics: {checked:?}");

        let events = work.join(format!("{name}.jsonl"));
        generate(&events, 500);
        let counts = run_counts(&dir, &events, &work);
        assert_eq!(counts.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(), checked, "{name}: run and check");
        assert!(counts.iter().all(|(_, n)| *n > 0), "{name}: every metric counts events in run: {counts:?}");

        let deployed = run_streamctl(&["deploy", utf8(&dir), "--wait", "30", "--brokers", &brokers]);
        assert!(deployed.status.success(), "{name}: deploy");
        let text = std::fs::read_to_string(&events).expect("events");
        for line in text.lines() {
            producer.send(BaseRecord::<(), str>::to("mta.events").payload(line)).expect("produce");
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        wait_until(&format!("{name}: the deployed metrics to count events"), Duration::from_secs(30), || {
            status(port).is_some_and(|s| runs_exactly(&s, &checked))
        });
    }
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn watch_runs_every_metric_check_reports() {
    for name in FIXTURES {
        let dir = fixture(name);
        let checked = checked_metrics(&dir);
        let work = temp_dir(&format!("roots-watch-{name}"));
        let port = free_port();
        let _daemon = start_embedded_watching(&work, port, &dir, 120);
        wait_until(&format!("{name}: version 1 to run every metric"), Duration::from_secs(60), || {
            status(port).is_some_and(|s| s["plan_version"] == 1 && runs_exactly(&s, &checked))
        });
        let _ = std::fs::remove_dir_all(&work);
    }
}
