//! Two `streamd` processes in one consumer group on librdkafka's mock
//! cluster (real protocol on 127.0.0.1), driven by the `streamctl` binary:
//! deploys converge on both within seconds without a restart, a bundle the
//! daemons cannot run is refused by both while the running plan stays, a
//! rollback republishes an earlier version, and the admin API needs its token.

mod common;

use common::{free_port, request, run_streamctl, wait_until};
use dsl::bundle::{Bundle, Provenance};
use rdkafka::mocking::MockCluster;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "test-token";

fn status(port: u16) -> Option<serde_json::Value> {
    let (code, body) = request(port, "/status", None)?;
    (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// Kills the daemon if the test fails before it stops.
struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_pipelines(dir: &Path, filter: &str, extra: bool) {
    let metric = |name: &str, filter: &str| {
        format!(
            "version 1\n\nimport \"deliveries.stream\"\n\nmetric {name} from deliveries\n  where {filter}\n  \
             group by provider\n  compute count() as n\n  window 1m, lateness 2m\n"
        )
    };
    let mut files = vec![("outcomes.stream", metric("outcomes", filter))];
    if extra {
        files.push(("retries.stream", metric("retries", "attempt > 1")));
    }
    common::pipeline_dir(dir, &files);
}

#[test]
fn two_daemons_converge_refuse_together_and_roll_back() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("mta.events", 4, 1).expect("topic");
    cluster.create_topic("mta.events.dlq", 1, 1).expect("dlq");
    cluster.create_topic("streamd.control", 1, 1).expect("control topic");
    let brokers = cluster.bootstrap_servers();
    let dir = std::env::temp_dir().join(format!("streamd-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (v1_dir, v2_dir) = (dir.join("v1"), dir.join("v2"));
    write_pipelines(&v1_dir, "event == \"delivered\"", false);
    write_pipelines(&v2_dir, "event != \"delivered\"", true);
    let config = dir.join("streamd.toml");
    std::fs::write(
        &config,
        "[deploy]\nreport_interval_s = 1\n[kafka]\nflush_interval_ms = 200\n\
         [kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n",
    )
    .expect("config");

    let start = |name: &str| {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_streamd"))
            .args(["--config", config.to_str().expect("utf-8"), "--brokers", &brokers])
            .args(["--pipelines", v1_dir.to_str().expect("utf-8")])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--store", &format!("sqlite:{}", dir.join(format!("{name}.db")).display())])
            .env("STREAMD_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start streamd");
        Daemon { child, port }
    };
    let daemons = [start("a"), start("b")];
    let version_of = |d: &Daemon| status(d.port).map(|s| s["plan_version"].clone());
    for d in &daemons {
        wait_until("the daemons to start", Duration::from_secs(30), || version_of(d).is_some());
        assert_eq!(version_of(d), Some(serde_json::Value::Null), "nothing deployed: local files run");
    }
    let started: Vec<serde_json::Value> =
        daemons.iter().map(|d| status(d.port).map(|s| s["started_at_ms"].clone()).expect("status")).collect();

    // v1 holds the same files as the local ones; v2 changes one metric and adds one.
    let target = ["--brokers", brokers.as_str()];
    let deploy = |dir: &Path| {
        let mut args = vec!["deploy", dir.to_str().expect("utf-8"), "--wait", "30"];
        args.extend(target);
        run_streamctl(&args)
    };
    assert!(deploy(&v1_dir).status.success());
    let dry = run_streamctl(&[&["diff", v2_dir.to_str().expect("utf-8")][..], &target[..]].concat());
    let dry_text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry_text.contains("added     retries.stream") && dry_text.contains("-  where event == \"delivered\""));
    let deployed = deploy(&v2_dir);
    assert!(deployed.status.success());
    assert!(String::from_utf8_lossy(&deployed.stdout).contains("applied by 2 instance(s)"));
    for d in &daemons {
        let s = status(d.port).expect("status");
        assert_eq!(s["plan_version"], 2);
        assert_eq!(s["metrics"], serde_json::json!(["outcomes", "retries"]));
    }

    // A bundle this build cannot run (a newer language) is refused by both; v2 stays.
    let files = dsl::files::bundle_files(&v2_dir).expect("files");
    let (mut newer, _) = Bundle::build(files, 3, Provenance::default()).expect("builds");
    newer.language_version = dsl::LANGUAGE_VERSION + 1;
    let control =
        kafka::control::ControlTopic { brokers: brokers.clone(), topic: "streamd.control".into(), librdkafka: vec![] };
    control.publisher().expect("publisher").publish_bundle(&newer, Duration::from_secs(10)).expect("publish");
    for d in &daemons {
        wait_until("the refusal", Duration::from_secs(20), || {
            status(d.port).is_some_and(|s| s["last_rejection"]["version"] == 3)
        });
        let s = status(d.port).expect("status");
        assert_eq!(s["plan_version"], 2, "the running plan stays");
        assert!(s["last_rejection"]["error"].as_str().is_some_and(|e| e.contains("language version")));
    }
    wait_until("both reports to show the refusal", Duration::from_secs(20), || {
        let out = run_streamctl(&[&["status"][..], &target[..]].concat());
        String::from_utf8_lossy(&out.stdout).matches("refused version 3").count() == 2
    });

    // Roll back to the newest version with other files (v1), through the admin API this time.
    let admin = format!("http://127.0.0.1:{}", daemons[0].port);
    let rolled = run_streamctl(&["rollback", "--admin", &admin, "--token", TOKEN, "--wait", "30"]);
    assert!(rolled.status.success());
    assert!(String::from_utf8_lossy(&rolled.stdout).contains("rolling back to version 1 as version 4"));
    for d in &daemons {
        let s = status(d.port).expect("status");
        assert_eq!(s["plan_version"], 4);
        assert_eq!(s["metrics"], serde_json::json!(["outcomes"]));
    }
    let history = run_streamctl(&[&["history"][..], &target[..]].concat());
    let history = String::from_utf8_lossy(&history.stdout);
    assert_eq!(history.lines().count(), 4, "{history}");
    assert!(history.contains("rollback to 1"));

    // No restart happened; the admin API needs its token.
    let now: Vec<serde_json::Value> =
        daemons.iter().map(|d| status(d.port).map(|s| s["started_at_ms"].clone()).expect("status")).collect();
    assert_eq!(now, started);
    assert_eq!(request(daemons[0].port, "/admin/v1/control", None).map(|r| r.0), Some(401));
    assert_eq!(request(daemons[0].port, "/admin/v1/control", Some("wrong")).map(|r| r.0), Some(401));
    assert_eq!(request(daemons[0].port, "/admin/v1/control", Some(TOKEN)).map(|r| r.0), Some(200));

    drop(daemons);
    // Each daemon recorded what it applied and refused in its store.
    let db = store::sqlite::SqliteStore::open(dir.join("a.db").to_str().expect("utf-8")).expect("store");
    let history: Vec<(Option<u64>, String)> =
        store::Store::deployments(&db).expect("history").into_iter().map(|r| (r.version, r.outcome)).collect();
    for expected in [(Some(2), "applied"), (Some(3), "rejected"), (Some(4), "applied")] {
        assert!(history.contains(&(expected.0, expected.1.to_string())), "{history:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `streamd --embedded --watch DIR`: editing a file deploys it; a broken
/// edit is refused and reported while the running plan stays.
#[test]
fn watch_mode_reloads_edited_files_and_refuses_broken_ones() {
    let dir = std::env::temp_dir().join(format!("streamd-watch-{}", std::process::id()));
    let pipelines = dir.join("pipelines");
    write_pipelines(&pipelines, "event == \"delivered\"", false);
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_streamd"))
        .args(["--embedded", "--watch", pipelines.to_str().expect("utf-8")])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--store", &format!("sqlite:{}", dir.join("watch.db").display())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start streamd");
    let daemon = Daemon { child, port };
    // The directory is published as version 1 at start.
    wait_until("version 1", Duration::from_secs(30), || status(daemon.port).is_some_and(|s| s["plan_version"] == 1));
    write_pipelines(&pipelines, "event == \"bounced\"", true);
    wait_until("version 2", Duration::from_secs(30), || status(daemon.port).is_some_and(|s| s["plan_version"] == 2));
    assert_eq!(status(daemon.port).expect("status")["metrics"], serde_json::json!(["outcomes", "retries"]));
    std::fs::write(pipelines.join("retries.stream"), "version 1\n\nmetric broken from nowhere\n").expect("write");
    wait_until("the refusal", Duration::from_secs(30), || {
        status(daemon.port)
            .is_some_and(|s| s["last_rejection"]["error"].as_str().is_some_and(|e| e.contains("nowhere")))
    });
    assert_eq!(status(daemon.port).expect("status")["plan_version"], 2, "the running plan stays");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
