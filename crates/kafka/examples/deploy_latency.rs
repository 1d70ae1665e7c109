//! Deploy latency: from publishing a bundle on the control topic to every
//! member of a consumer group running it, while events flow.
//!
//! Two consumers in one group on librdkafka's mock cluster, each with its
//! control-topic follower (the same parts `streamd` wires), consume a steady
//! stream of generated events; the bench publishes bundles that alternate
//! between two versions of a pipeline and times each until both members
//! have applied it. Run with `bash benches/deploy_latency.sh` (or
//! `cargo run --release -p kafka --example deploy_latency -- [DEPLOYS]`).

use dsl::bundle::{Bundle, Provenance};
use engine::{CompiledPlan, EngineConfig};
use kafka::control::{ControlTopic, Follower, InstanceReport};
use kafka::{Observer, Settings};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "mta.events";
const CONTROL: &str = "streamd.control";

/// When each version was applied, per member.
#[derive(Default)]
struct Applied(Mutex<Vec<(u64, Instant)>>);

impl Observer for Applied {
    fn plan_applied(&self, version: Option<u64>, _: &dsl::Plan, _: &dsl::bundle::MetricChanges) {
        if let (Some(v), Ok(mut applied)) = (version, self.0.lock()) {
            applied.push((v, Instant::now()));
        }
    }
}

fn files(variant: u64) -> Vec<(String, String)> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/deliveries.stream"))
        .expect("pipelines/deliveries.stream");
    let filter = if variant.is_multiple_of(2) { "event == \"delivered\"" } else { "event != \"delivered\"" };
    let metric = format!(
        "version 1\n\nimport \"deliveries.stream\"\n\nmetric outcomes from deliveries\n  where {filter}\n  \
         group by provider\n  compute count() as n\n  window 1m, lateness 2m\n"
    );
    vec![("deliveries.stream".into(), source), ("outcomes.stream".into(), metric)]
}

fn compile(bundle: &Bundle) -> Result<Arc<CompiledPlan>, engine::Error> {
    CompiledPlan::from_bundle(bundle, EngineConfig::default()).map(Arc::new)
}

fn main() {
    let deploys: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 4, 1).expect("topic");
    cluster.create_topic(CONTROL, 1, 1).expect("control topic");
    let brokers = cluster.bootstrap_servers();
    let control = ControlTopic { brokers: brokers.clone(), topic: CONTROL.into(), librdkafka: vec![] };
    let publisher = control.publisher().expect("publisher");
    let (first, compiled) = Bundle::build(files(1), 1, Provenance::default()).expect("bundle");
    publisher.publish_bundle(&first, Duration::from_secs(10)).expect("publish");
    let plan = Arc::new(CompiledPlan::new(compiled.plan.expect("plan"), EngineConfig::default()).expect("runnable"));

    let stop = Arc::new(AtomicBool::new(false));
    let dir = std::env::temp_dir().join(format!("deploy-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut members = Vec::new();
    let mut threads = Vec::new();
    for m in 0..2 {
        let applied = Arc::new(Applied::default());
        let settings = Settings {
            brokers: brokers.clone(),
            group_id: "deploy-latency".into(),
            librdkafka: vec![("session.timeout.ms".into(), "6000".into())],
            flush_interval: Duration::from_millis(200),
            instance: format!("member-{m}"),
            ..Default::default()
        };
        let store = store::sqlite::SqliteStore::open(&dir.join(format!("{m}.db")).to_string_lossy()).expect("store");
        let (updates, plan_updates) = std::sync::mpsc::channel();
        let consumer = kafka::Consumer::new(settings, Box::new(store), applied.clone()).expect("consumer");
        consumer.apply(&kafka::PlanUpdate { version: Some(1), plan: Ok(plan.clone()) }).expect("first plan");
        let consumer = consumer.with_plan_updates(plan_updates);
        let follower = Follower {
            reader: control.reader(Duration::from_secs(10)).expect("reader"),
            publisher: control.publisher().expect("publisher"),
            updates,
            last_tried: Some(1),
            report_interval: Duration::from_secs(5),
        };
        let flag = stop.clone();
        threads.push(std::thread::spawn(move || consumer.run(&flag).map(drop).map_err(|e| e.to_string())));
        let flag = stop.clone();
        threads.push(std::thread::spawn(move || {
            let report = move || InstanceReport {
                instance: format!("member-{m}"),
                reported_at_ms: kafka::control::now_ms(),
                ..Default::default()
            };
            follower.run(&flag, &compile, &report);
            Ok(())
        }));
        members.push(applied);
    }
    // A steady stream of 2,000 events/s while deploys happen.
    let flag = stop.clone();
    let producer_brokers = brokers.clone();
    threads.push(std::thread::spawn(move || {
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", &producer_brokers).create().expect("producer");
        let mut generator = workload::Generator::new(workload::Config { seed: 3, ..Default::default() });
        while !flag.load(Ordering::Relaxed) {
            for _ in 0..200 {
                let line = generator.next().unwrap_or_default();
                let _ = producer.send(BaseRecord::<(), str>::to(TOPIC).payload(line.as_str()));
            }
            producer.poll(Duration::from_millis(100));
        }
        let _ = producer.flush(Duration::from_secs(5));
        Ok(())
    }));
    // Let the group settle: both members assigned and consuming.
    std::thread::sleep(Duration::from_secs(8));

    let mut latencies = Vec::new();
    for version in 2..2 + deploys {
        let (bundle, _) = Bundle::build(files(version), version, Provenance::default()).expect("bundle");
        let published = Instant::now();
        publisher.publish_bundle(&bundle, Duration::from_secs(10)).expect("publish");
        let deadline = published + Duration::from_secs(60);
        let applied_at =
            |m: &Applied| m.0.lock().ok().and_then(|a| a.iter().find(|(v, _)| *v == version).map(|(_, at)| *at));
        loop {
            let times: Vec<Option<Instant>> = members.iter().map(|m| applied_at(m)).collect();
            if times.iter().all(Option::is_some) {
                let last = times.into_iter().flatten().max().unwrap_or(published);
                latencies.push(last.duration_since(published));
                break;
            }
            assert!(Instant::now() < deadline, "version {version} was not applied by both members within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        if let Ok(Err(error)) = thread.join() {
            eprintln!("a member failed: {error}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "deploy latency, publish → applied by both members ({} deploys under 2,000 events/s): \
         median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        ms.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}
