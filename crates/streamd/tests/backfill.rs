//! `streamctl deploy --backfill` against a running fleet: two `streamd`
//! processes in one consumer group on librdkafka's mock cluster, sharing one
//! store and the topic's partitions, while a producer keeps sending
//! generated events. The deploy adds a metric; its backfill reads each
//! partition from the start up to the switch offset the live consumer
//! recorded, beside the live consumer. At the end the metric's answers
//! (every tier, merged over source partitions) equal a run of the metric
//! over the whole topic from the start: every event counted once. The
//! deploy also changes a metric, which it must not backfill. A second test
//! kills one daemon as the deploy is applied.

mod common;

use common::answers::{answers, assert_same, write};
use common::{is_assigned, positions, run_streamctl, status, terminate, wait_until};
use engine::{CompiledPlan, EngineConfig, Output, Partition};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::sqlite::SqliteStore;
use store::Store as _;

const TOPIC: &str = "mta.events";
const PARTITIONS: usize = 2;
/// The metric the deploy adds (and backfills).
const METRIC: &str = "provider_mix";
/// Messages per second of wall-clock time.
const RATE: f64 = 800.0;

/// A count of the events that pass `filter`, per provider, with an hourly tier.
fn count_metric(name: &str, filter: &str) -> String {
    format!(
        "version 1\n\nimport \"deliveries.stream\"\n\nmetric {name} from deliveries\n  where {filter}\n  \
         group by provider\n  compute count() as n\n  window 1m, lateness 2m\n  rollup 1h keep 90d\n"
    )
}

/// Counts, distinct counts and a percentile: merged states, not sums of numbers.
fn added_metric() -> String {
    format!(
        "version 1\n\nimport \"deliveries.stream\"\n\nmetric {METRIC} from deliveries\n  where event != \"opened\"\n  \
         group by provider\n  compute\n    count() as events,\n    count_if(event == \"bounced\") as bounced,\n    \
         distinct(recipient_domain) as domains,\n    p90(latency_ms) as p90_ms,\n    bounced / events as bounce_rate\n  \
         window 1m, lateness 2m\n  rollup 1h keep 90d, 1d keep 2y\n"
    )
}

/// A producer thread sending generated events (seeded, 1% malformed) round
/// robin over the partitions at [`RATE`] until `stop`; `produced` counts
/// them. It returns each partition's lines in offset order.
fn produce_until(
    brokers: &str,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<Vec<String>>> {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create().expect("producer");
    std::thread::spawn(move || {
        // Two events a second of event time: the topic spans hours, so every tier has several windows.
        let config = workload::Config { seed: 28, rate_per_s: 2.0, bad_ratio: 0.01, ..Default::default() };
        let mut lines = vec![Vec::new(); PARTITIONS];
        let started = Instant::now();
        for (i, line) in workload::Generator::new(config).enumerate() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let due = started + Duration::from_secs_f64(i as f64 / RATE);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                producer.poll(wait);
            }
            let partition = i % PARTITIONS;
            let mut record = Some(BaseRecord::<(), str>::to(TOPIC).partition(partition as i32).payload(line.as_str()));
            while let Some(r) = record.take() {
                if let Err((_, r)) = producer.send(r) {
                    producer.poll(Duration::from_millis(10));
                    record = Some(r);
                }
            }
            lines[partition].push(line);
            produced.store(i + 1, Ordering::Relaxed);
        }
        producer.flush(Duration::from_secs(30)).expect("produce");
        lines
    })
}

fn compile(dir: &Path) -> dsl::Plan {
    let (_, compiled) = dsl::files::compile(&[dir]).expect("pipelines");
    assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
    compiled.plan.expect("checked above")
}

/// What the fleet should hold at the end: `plan` run from the start of
/// every partition, windows still open left open (as the daemons leave
/// them when they stop).
fn clean_run(plan: &dsl::Plan, events: &[Vec<String>]) -> SqliteStore {
    let compiled = Arc::new(CompiledPlan::new(plan.clone(), EngineConfig::default()).expect("runnable"));
    let mut store = SqliteStore::open(":memory:").expect("store");
    store.setup(plan).expect("setup");
    let now = kafka::control::now_ms();
    let mut out = Output::default();
    let mut checkpoints = Vec::new();
    for (p, lines) in events.iter().enumerate() {
        let mut partition = Partition::new(Arc::clone(&compiled), p as i32);
        partition.process_all(TOPIC, 0, lines.iter(), now, &mut out);
        checkpoints.extend(partition.checkpoint());
    }
    write(&mut store, TOPIC, &mut out, &checkpoints);
    store
}

#[test]
fn deploy_backfill_while_a_fleet_consumes_counts_every_event_once() {
    deploy_backfill_on_a_fleet("backfill-fleet", false);
}

/// One daemon killed with SIGKILL the moment the deploy sees both apply it:
/// the other takes its partition over from its last checkpoint, and the
/// backfill's part still meets the live part.
#[test]
fn deploy_backfill_with_a_daemon_killed_as_it_applies_counts_every_event_once() {
    deploy_backfill_on_a_fleet("backfill-fleet-kill", true);
}

/// Two daemons, a producer, `streamctl deploy --backfill`; with `kill`,
/// daemon `a` is killed once the deploy reports that both applied it.
fn deploy_backfill_on_a_fleet(name: &str, kill: bool) {
    let started = Instant::now();
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS as i32, 1).expect("topic");
    cluster.create_topic("mta.events.dlq", 1, 1).expect("dlq");
    cluster.create_topic("streamd.control", 1, 1).expect("control topic");
    let brokers = cluster.bootstrap_servers();
    let dir = common::temp_dir(name);
    let (v1_dir, v2_dir) = (dir.join("v1"), dir.join("v2"));
    // v2 keeps `outcomes`, changes `retries` and adds the metric.
    let outcomes = ("outcomes.stream", count_metric("outcomes", "event == \"delivered\""));
    let retries = |filter| ("retries.stream", count_metric("retries", filter));
    common::pipeline_dir(&v1_dir, &[outcomes.clone(), retries("attempt > 1")]);
    common::pipeline_dir(&v2_dir, &[outcomes, retries("attempt > 2"), ("mix.stream", added_metric())]);
    let db = dir.join("fleet.db");
    let store_url = format!("sqlite:{}", db.display());

    // Two daemons in one group, one store, running v1 (without the metric).
    let start = |daemon: &str| {
        let name = format!("{name}-{daemon}");
        let config = dir.join(format!("{daemon}.toml"));
        std::fs::write(
            &config,
            format!(
                "[deploy]\ninstance = \"{name}\"\nreport_interval_s = 1\n\
                 [kafka]\ngroup_id = \"fleet\"\nflush_interval_ms = 200\nidle_timeout_ms = 3600000\n\
                 [kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
                 [store]\ntier_rows_every_ms = 0\n"
            ),
        )
        .expect("config");
        let log = dir.join(format!("{daemon}.log"));
        let v1 = v1_dir.to_str().expect("utf-8");
        common::start_on_free_port(&name, |port| {
            let http = format!("127.0.0.1:{port}");
            let args = ["--brokers", &brokers, "--pipelines", v1, "--http-addr", &http, "--store", &store_url];
            common::start_streamd(&config, &log, &args)
        })
    };
    let ((a, a_port), (b, b_port)) = (start("a"), start("b"));
    let ports = [a_port, b_port];
    let mut daemons = vec![Some(a), Some(b)];
    let (stop, produced) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let producer = produce_until(&brokers, Arc::clone(&stop), Arc::clone(&produced));

    // Both own a partition and have counted part of it (the switch comes
    // part way), and both report on the control topic (a deploy waits for them).
    wait_until("both daemons to own a partition and consume", Duration::from_secs(30), || {
        ports.iter().all(|&p| is_assigned(p)) && positions(&ports, PARTITIONS).iter().all(|&n| n >= 1_000)
    });
    let control =
        kafka::control::ControlTopic { brokers: brokers.clone(), topic: "streamd.control".into(), librdkafka: vec![] };
    wait_until("both daemons to report", Duration::from_secs(30), || {
        control.read_all(Duration::from_secs(10)).is_ok_and(|state| state.instances.len() == 2)
    });
    // v1 on the control topic: what the daemons run already, so that v2 adds exactly the metric.
    let target = ["--brokers", brokers.as_str()];
    let v1 = run_streamctl(&[&["deploy", v1_dir.to_str().expect("utf-8"), "--wait", "30"][..], &target[..]].concat());
    assert!(v1.status.success(), "deploy v1");

    // The deploy and its backfill, while events keep arriving.
    let v2_path = v2_dir.to_str().expect("utf-8");
    let deploy_args = ["deploy", v2_path, "--wait", "30", "--backfill", "0", "--store", &store_url];
    let deploying = Instant::now();
    let deployed = common::run_streamctl_with(&[&deploy_args[..], &target[..]].concat(), |line| {
        if kill && line.starts_with("applied by") {
            drop(daemons[0].take()); // SIGKILL
        }
    });
    let deploy_s = deploying.elapsed().as_secs_f64();
    // The daemons still running.
    let live: Vec<u16> = ports.iter().zip(&daemons).filter(|(_, d)| d.is_some()).map(|(&p, _)| p).collect();
    assert_eq!(live.len(), if kill { 1 } else { 2 });
    let (stdout, stderr) = (String::from_utf8_lossy(&deployed.stdout), String::from_utf8_lossy(&deployed.stderr));
    assert!(deployed.status.success(), "deploy --backfill failed:\n{stdout}{stderr}");
    assert!(stdout.contains("applied by 2 instance(s)"), "{stdout}");
    // Not the changed metric: its table holds its old version's rows before the switch.
    assert!(
        stdout.contains("not backfilled (changed: their tables hold the old version's rows up to the switch): retries"),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("metric {METRIC} ")) && !stderr.contains("metric retries"), "{stderr}");
    let backfilled: u64 = stderr
        .split_once("backfilled ")
        .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no backfill summary in:\n{stderr}"));
    for &port in &live {
        assert_eq!(status(port).expect("status")["metrics"], serde_json::json!([METRIC, "outcomes", "retries"]));
    }

    // More events after the switch (hours of event time past its windows), then stop.
    let after_deploy = produced.load(Ordering::Relaxed);
    wait_until("events after the deploy", Duration::from_secs(30), || {
        produced.load(Ordering::Relaxed) >= after_deploy + 2_000
    });
    stop.store(true, Ordering::Relaxed);
    let events = producer.join().expect("producer");
    let per_partition: Vec<i64> = events.iter().map(|lines| lines.len() as i64).collect();
    common::wait_caught_up(&live, &per_partition, Duration::from_secs(60));
    for daemon in daemons.into_iter().flatten() {
        assert!(terminate(daemon).success(), "a daemon stopped cleanly");
    }

    // Every tier of the metric reads as a run over the whole topic (and the kept one too).
    let plan = compile(&v2_dir);
    let fleet = SqliteStore::open(db.to_str().expect("utf-8")).expect("store");
    let clean = clean_run(&plan, &events);
    for metric in [METRIC, "outcomes"] {
        assert_same(metric, &answers(&fleet, &plan, metric), &answers(&clean, &plan, metric));
    }
    // The live consumer started the metric part way through each partition;
    // the backfill read from the start up to there.
    let hash = &plan.metrics.iter().find(|m| m.name == METRIC).expect("the metric").hash;
    let switch: Vec<i64> = (0..PARTITIONS as i32)
        .map(|p| {
            let checkpoint = fleet.checkpoint(TOPIC, p).expect("read").expect("a checkpoint");
            let starts = checkpoint.metrics.expect("metric starts");
            starts.iter().find(|s| &s.hash == hash).and_then(|s| s.since_offset).expect("a switch offset")
        })
        .collect();
    for (p, (&at, &len)) in switch.iter().zip(&per_partition).enumerate() {
        assert!(at > 0 && at < len, "partition {p}: switch offset {at} of {len} messages, not part way");
    }
    assert_eq!(backfilled, switch.iter().sum::<i64>() as u64, "the backfill read up to the switch offsets {switch:?}");
    eprintln!(
        "{name}: {} events ({per_partition:?}), switch offsets {switch:?}, {backfilled} backfilled, \
         the deploy took {deploy_s:.1}s, the test {:.1}s",
        events.iter().map(Vec::len).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
