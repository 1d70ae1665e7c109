//! The built `streamd` binary in embedded mode: starts with no Kafka
//! installed, consumes generated events, writes rows and dead letters, serves
//! /metrics, /healthz and /status on 127.0.0.1, and stops cleanly by itself.

mod common;

use common::free_port;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent.get(format!("http://127.0.0.1:{port}{path}")).call().ok()?.body_mut().read_to_string().ok()
}

/// Stops the daemon if the test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the first sample of `name` (all label sets summed).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn embedded_daemon_consumes_serves_metrics_and_stops_cleanly() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("streamd-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("streamd.db");
    let port = free_port();
    let config = dir.join("streamd.toml");
    // Fast event time so windows close within the test.
    std::fs::write(&config, "[embedded]\nevents_per_second = 3000\ntime_acceleration = 60.0\nbad_ratio = 0.01\n[kafka]\nflush_interval_ms = 200\n")
        .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_streamd"))
        .args(["--embedded", "--run-for", "25", "--config", config.to_str().expect("utf-8")])
        .args(["--http-addr", &format!("127.0.0.1:{port}"), "--store", &format!("sqlite:{}", db.display())])
        .current_dir(&repo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start streamd");
    let mut guard = Guard(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        if let Some(body) = get(port, "/metrics") {
            metrics = body;
            if sample(&metrics, "stream_rows_written_total") > 0.0
                && sample(&metrics, "stream_dead_letters_total") > 0.0
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(sample(&metrics, "stream_events_consumed_total") > 1000.0, "{metrics}");
    assert!(sample(&metrics, "stream_rows_written_total") > 0.0, "windows closed and were written:\n{metrics}");
    assert!(sample(&metrics, "stream_dead_letters_total") > 0.0, "{metrics}");
    assert!(metrics.contains("stream_pipeline_events_total{metric=\"delivery_by_sender\"}"), "{metrics}");
    assert!(metrics.contains("stream_store_write_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("stream_plan_info{"), "{metrics}");
    assert_eq!(get(port, "/healthz").as_deref(), Some("ok\n"));
    let status: serde_json::Value = serde_json::from_str(&get(port, "/status").expect("status")).expect("json");
    assert_eq!(status["embedded"], true);
    // The delivery topic's 4 partitions, and the one of the reputation
    // source's observations (pipelines/reputation.stream).
    let topics: Vec<&str> = status["consumer"]["partitions"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["topic"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(topics.iter().filter(|t| **t == "mta.events").count(), 4, "{status}");
    assert_eq!(topics.iter().filter(|t| **t == "reputation.observations").count(), 1, "{status}");

    // The query API answers from the store: objects with a `time` column,
    // merged over source partitions; bad queries are 400 with a message.
    // Rows of this metric appear once its first windows close; poll for them.
    let deadline = Instant::now() + Duration::from_secs(15);
    let rows = loop {
        let body = get(port, "/api/v1/query?metric=delivery_by_sender&tier=1m&group_by=").expect("query");
        let rows: serde_json::Value = serde_json::from_str(&body).expect("json");
        if rows.as_array().is_some_and(|r| !r.is_empty()) || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let rows = rows.as_array().expect("an array of rows");
    assert!(!rows.is_empty(), "closed windows are queryable");
    for row in rows {
        assert!(row["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{row}");
        assert!(row["attempts"].as_u64().is_some_and(|n| n > 0), "{row}");
        assert!(row.get("sender_domain").is_none(), "grouped to totals: {row}");
    }
    let error: serde_json::Value =
        serde_json::from_str(&get(port, "/api/v1/query?metric=nope").expect("query")).expect("json");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("unknown metric")), "{error}");

    // It stops by itself (--run-for), flushing and committing, exit code 0.
    let exit = guard.0.wait().expect("wait");
    let mut log = String::new();
    if let Some(mut stderr) = guard.0.stderr.take() {
        let _ = stderr.read_to_string(&mut log);
    }
    assert!(exit.success(), "{log}");
    assert!(log.contains("streamd stopped cleanly"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
