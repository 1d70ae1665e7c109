//! Startup is a reload from the empty plan: a daemon that starts on a
//! deployed bundle records and reports it exactly as it records and
//! reports a bundle deployed while it runs, a daemon that starts on local
//! files records their plan without a version, and a bundle it refuses
//! shows on `/status` as data (`streamd` on librdkafka's mock cluster,
//! 127.0.0.1 only).

mod common;

use common::{free_port, status, temp_dir, wait_until, Guard};
use dsl::bundle::{Bundle, Provenance};
use kafka::control::ControlTopic;
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `deliveries.stream` and one `.stream` file per metric name, each
/// counting deliveries by provider.
fn pipelines(dir: &Path, metrics: &[&str], version: u64) -> Bundle {
    std::fs::create_dir_all(dir).expect("pipeline dir");
    std::fs::copy(common::repo().join("pipelines/deliveries.stream"), dir.join("deliveries.stream")).expect("copy");
    for name in metrics {
        let text = format!(
            "version 1\n\nimport \"deliveries.stream\"\n\nmetric {name} from deliveries\n  group by provider\n  \
             compute count() as n\n  window 1m\n"
        );
        std::fs::write(dir.join(format!("{name}.stream")), text).expect("write");
    }
    let files = dsl::files::bundle_files(dir).expect("files");
    Bundle::build(files, version, Provenance::default()).expect("compiles").0
}

/// Starts `streamd` on the local files of `dir/local` and a SQLite store
/// at `db`, serving HTTP on `port`; returns once `/status` answers, with
/// that first answer.
fn start(dir: &Path, brokers: &str, port: u16, db: &Path) -> (Guard, Value) {
    let config = dir.join("streamd.toml");
    std::fs::write(&config, "[deploy]\nreport_interval_s = 1\n[kafka]\nflush_interval_ms = 200\n").expect("config");
    let daemon = Guard(
        Command::new(env!("CARGO_BIN_EXE_streamd"))
            .args(["--config", config.to_str().expect("utf-8"), "--brokers", brokers])
            .args(["--pipelines", dir.join("local").to_str().expect("utf-8")])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--store", &format!("sqlite:{}", db.display())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start streamd"),
    );
    let mut first = None;
    wait_until("the daemon to start", Duration::from_secs(30), || {
        first = status(port);
        first.is_some()
    });
    (daemon, first.expect("waited for it"))
}

/// The deployment history in the SQLite store at `db`: version, instance,
/// outcome, plan hash, detail.
fn history(db: &Path) -> Vec<(Option<u64>, String, String, String, String)> {
    let store = store::sqlite::SqliteStore::open(db.to_str().expect("utf-8")).expect("store");
    let records = store::Store::deployments(&store).expect("history");
    records.into_iter().map(|r| (r.version, r.instance, r.outcome, r.plan_hash, r.detail)).collect()
}

/// The parts of `/status` that describe the running plan, with the time
/// it was applied checked and left out.
fn deployment(status: &Value, not_before_ms: i64) -> Value {
    let applied_at = status["applied_at_ms"].as_i64().expect("applied_at_ms");
    assert!(applied_at >= not_before_ms, "applied at {applied_at}, before {not_before_ms}");
    serde_json::json!({
        "plan_version": status["plan_version"],
        "plan_hash": status["plan_hash"],
        "metrics": status["metrics"],
        "last_rejection": status["last_rejection"],
    })
}

#[test]
fn the_startup_plan_is_recorded_and_reported_as_a_deployed_one() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("mta.events", 2, 1).expect("topic");
    cluster.create_topic("mta.events.dlq", 1, 1).expect("dlq");
    cluster.create_topic("streamd.control", 1, 1).expect("control topic");
    let brokers = cluster.bootstrap_servers();
    let dir = temp_dir("startup");
    let control = ControlTopic { brokers: brokers.clone(), topic: "streamd.control".into(), librdkafka: vec![] };
    let publisher = control.publisher().expect("publisher");
    let publish = |bundle: Bundle| {
        publisher.publish_bundle(&bundle, Duration::from_secs(10)).expect("publish");
        bundle.plan_hash
    };
    // Deployed before the daemon starts; its local files are other ones.
    let v1_hash = publish(pipelines(&dir.join("v1"), &["outcomes"], 1));
    pipelines(&dir.join("local"), &["local_only"], 0);
    let (port, db) = (free_port(), dir.join("a.db"));
    let started = kafka::control::now_ms();
    let (daemon, at_start) = start(&dir, &brokers, port, &db);
    let instance = at_start["instance"].as_str().expect("instance").to_string();
    assert_eq!(
        deployment(&at_start, started),
        serde_json::json!({"plan_version": 1, "plan_hash": v1_hash, "metrics": ["outcomes"], "last_rejection": null}),
    );

    // Deployed while it runs: the same report, the same kind of record.
    let deployed = kafka::control::now_ms();
    let v2_hash = publish(pipelines(&dir.join("v2"), &["outcomes", "retries"], 2));
    wait_until("v2 to run", Duration::from_secs(30), || status(port).is_some_and(|s| s["plan_version"] == 2));
    assert_eq!(
        deployment(&status(port).expect("status"), deployed),
        serde_json::json!({
            "plan_version": 2, "plan_hash": v2_hash, "metrics": ["outcomes", "retries"], "last_rejection": null
        }),
    );
    // A refusal is data on /status, not only words.
    let mut newer = pipelines(&dir.join("v3"), &["outcomes"], 3);
    newer.language_version = dsl::LANGUAGE_VERSION + 1;
    publish(newer);
    wait_until("v3 refused", Duration::from_secs(30), || {
        status(port).is_some_and(|s| s["last_rejection"]["version"] == 3)
    });
    let refusal = &status(port).expect("status")["last_rejection"]["refusal"];
    assert_eq!(refusal["kind"], "bundle", "{refusal}");
    assert_eq!(refusal["error"]["kind"], "newer_language", "{refusal}");
    assert_eq!(refusal["error"]["needs"], dsl::LANGUAGE_VERSION + 1, "{refusal}");
    drop(daemon);

    let history = history(&db);
    let record = |version: u64, hash: &str, detail: &str| {
        (Some(version), instance.clone(), "applied".to_string(), hash.to_string(), detail.to_string())
    };
    assert_eq!(
        history[..2],
        [
            record(1, &v1_hash, r#"kept [], added ["outcomes"], changed [], removed []"#),
            record(2, &v2_hash, r#"kept ["outcomes"], added ["retries"], changed [], removed []"#),
        ]
    );
    assert_eq!((history[2].0, history[2].2.as_str()), (Some(3), "rejected"), "{history:?}");
    assert!(history[2].4.contains("language version"), "{history:?}");
    assert_eq!(history.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A daemon started on local files (nothing deployed) records its plan in
/// the deployment history as it would a deployed one, without a version,
/// and reports it on `/status` with the plan hash `check` gives the files.
#[test]
fn a_startup_plan_of_local_files_is_recorded_without_a_version() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("mta.events", 2, 1).expect("topic");
    cluster.create_topic("streamd.control", 1, 1).expect("control topic");
    let brokers = cluster.bootstrap_servers();
    let dir = temp_dir("startup-local");
    let local = pipelines(&dir.join("local"), &["local_only"], 1);
    let (_, compiled) = dsl::files::compile(&[dir.join("local")]).expect("compile");
    let checked_hash = compiled.plan.expect("compiles").hash;
    let (port, db) = (free_port(), dir.join("local.db"));
    let started = kafka::control::now_ms();
    let (daemon, at_start) = start(&dir, &brokers, port, &db);
    let instance = at_start["instance"].as_str().expect("instance").to_string();
    assert_eq!(
        deployment(&at_start, started),
        serde_json::json!({
            "plan_version": null, "plan_hash": checked_hash, "metrics": ["local_only"], "last_rejection": null
        }),
    );
    // The files, deployed as a bundle, would run the same plan.
    assert_eq!(local.plan_hash, checked_hash);
    drop(daemon);

    let history = history(&db);
    assert_eq!(
        history,
        [(
            None,
            instance,
            "applied".to_string(),
            checked_hash,
            r#"kept [], added ["local_only"], changed [], removed []"#.to_string()
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
