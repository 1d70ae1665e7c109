//! Throughput of the consumer path against a real broker, for `benches/e2e.sh`.
//!
//! ```text
//! throughput produce  BROKERS TOPIC EVENTS PARTITIONS   create the topic, produce generated events
//! throughput consume  BROKERS TOPIC EVENTS              raw consume-only rate (fresh group)
//! throughput pipeline BROKERS TOPIC EVENTS DB           the streamd path: engine over pipelines/ into SQLite
//! ```
//!
//! The consume-only rate is measured from the first message consumed to the
//! last; the pipeline's from the end of its first flush to the end of the
//! flush that makes the last message durable (rows written, replay point
//! committed), over the messages flushed in between. Group-join time is
//! left out of both alike.

use engine::{CompiledPlan, EngineConfig};
use kafka::{Observer, Settings};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    let number = |i: usize| arg(i).parse::<usize>().unwrap_or_else(|_| usage());
    match arg(0).as_str() {
        "produce" => produce(&arg(1), &arg(2), number(3), number(4) as i32),
        "consume" => consume(&arg(1), &arg(2), number(3)),
        "pipeline" => pipeline(&arg(1), &arg(2), number(3), &arg(4)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: throughput produce|consume|pipeline BROKERS TOPIC EVENTS [PARTITIONS|DB]");
    std::process::exit(2)
}

fn produce(brokers: &str, topic: &str, events: usize, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime
        .block_on(
            admin.create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new()),
        )
        .expect("create topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()
        .expect("producer");
    let started = Instant::now();
    let generator = workload::Generator::new(workload::Config { rate_per_s: 926.0, ..Default::default() });
    for (i, line) in generator.take(events).enumerate() {
        let mut record =
            Some(BaseRecord::<(), str>::to(topic).partition((i % partitions as usize) as i32).payload(line.as_str()));
        while let Some(r) = record.take() {
            if let Err((_, r)) = producer.send(r) {
                producer.poll(Duration::from_millis(5));
                record = Some(r);
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    eprintln!("produced {events} events in {:.1}s", started.elapsed().as_secs_f64());
}

fn consume(brokers: &str, topic: &str, events: usize) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("consume-only-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = 0usize;
    let mut bytes = 0usize;
    let mut first: Option<Instant> = None;
    let mut cpu_first = CpuTimes::default();
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < events && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            if first.is_none() {
                first = Some(Instant::now());
                cpu_first = CpuTimes::now();
            }
            bytes += rdkafka::Message::payload(&message).map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    let elapsed = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    println!(
        "consume-only {seen} events {elapsed:.3}s {:.0} events/s ({:.1} MB)",
        seen as f64 / elapsed,
        bytes as f64 / 1e6
    );
    let (cpu, _) = CpuTimes::now().since(&cpu_first);
    println!("consume-only cpu {cpu:.2}s {:.2} us/event ({:.2} cores)", cpu / seen as f64 * 1e6, cpu / elapsed);
}

/// The number in environment variable `name`, else `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the consumer has made durable: messages whose rows are written and
/// whose replay points are committed.
#[derive(Default)]
struct Progress {
    flushed: Mutex<Flushed>,
}

#[derive(Default, Clone)]
struct Flushed {
    messages: u64,
    rows: u64,
    /// When the first flush with messages ended, and the messages it held.
    first: Option<(Instant, u64)>,
    /// When the latest flush with messages ended.
    last: Option<Instant>,
    /// CPU times when the first and the latest flush with messages ended.
    cpu_first: Option<CpuTimes>,
    cpu_last: Option<CpuTimes>,
}

/// CPU seconds (user + system) this process has used: all its threads,
/// including those that have ended, and each live thread by its id.
#[derive(Clone, Default)]
struct CpuTimes {
    process: f64,
    threads: Vec<(String, String, f64)>,
}

impl CpuTimes {
    /// Read from `/proc` (Linux); zeros where it cannot be read.
    fn now() -> Self {
        // Fields 14 and 15 of a `stat` file, in clock ticks (100 a second on Linux).
        let seconds = |stat: &str| {
            let after_name: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            let ticks = |i: usize| after_name.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            (ticks(11) + ticks(12)) / 100.0
        };
        let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
        let threads = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten().map(|task| {
            let stat = read(&task.path().join("stat"));
            let name = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')).map_or("", |(name, _)| name);
            (task.file_name().to_string_lossy().into_owned(), name.to_string(), seconds(&stat))
        });
        CpuTimes { threads: threads.collect(), process: seconds(&read(std::path::Path::new("/proc/self/stat"))) }
    }

    /// What was used since `earlier`: in all, and by thread name (threads
    /// that have ended since are only in the total).
    fn since(&self, earlier: &CpuTimes) -> (f64, std::collections::BTreeMap<String, f64>) {
        let mut by_name = std::collections::BTreeMap::new();
        for (id, name, now) in &self.threads {
            let before = earlier.threads.iter().find(|(i, _, _)| i == id).map_or(0.0, |t| t.2);
            *by_name.entry(name.clone()).or_default() += now - before;
        }
        (self.process - earlier.process, by_name)
    }
}

impl Observer for Progress {
    fn flushed(&self, report: &kafka::FlushReport) {
        let mut flushed = self.flushed.lock().expect("lock");
        flushed.messages += report.messages;
        flushed.rows += report.rows_by_metric.values().sum::<u64>();
        // Flushes without messages (none follow the last one here) move no window end.
        if report.messages > 0 {
            let now = Instant::now();
            let messages = flushed.messages;
            flushed.first.get_or_insert((now, messages));
            flushed.last = Some(now);
            let cpu = CpuTimes::now();
            flushed.cpu_first.get_or_insert_with(|| cpu.clone());
            flushed.cpu_last = Some(cpu);
        }
    }
}

fn pipeline(brokers: &str, topic: &str, events: usize, db: &str) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let files = dsl::files::bundle_files(std::path::Path::new(dir)).expect("pipelines");
    let (bundle, _) = dsl::bundle::Bundle::build(files, 1, Default::default())
        .unwrap_or_else(|c| panic!("{}", c.render_diagnostics()));
    let plan = Arc::new(CompiledPlan::from_bundle(&bundle, EngineConfig::default()).expect("runnable"));
    // A topic no source reads would measure the consumer without the engine.
    assert!(
        plan.plan.sources.iter().any(|s| s.topic == topic),
        "no pipeline reads `{topic}`; use one of {:?}",
        plan.plan.sources.iter().map(|s| &s.topic).collect::<Vec<_>>()
    );
    let store = store::sqlite::SqliteStore::open(db).expect("store");
    let progress = Arc::new(Progress::default());
    let settings = Settings {
        brokers: brokers.into(),
        group_id: format!("pipeline-{}", std::process::id()),
        dead_letter_topic: None,
        librdkafka: vec![],
        idle_timeout: Duration::from_secs(3600),
        // Progress is seen at flushes: flush often enough that the end is seen within 10 ms
        // (each flush, a SQLite transaction and an offset commit, is inside the measured window).
        flush_interval: Duration::from_millis(10),
        // `WORKERS=1` measures the single-threaded path against the default (one per core).
        workers: env_or("WORKERS", Settings::default().workers),
        // `FLUSH_MESSAGES=100000` measures larger flushes against the default.
        flush_messages: env_or("FLUSH_MESSAGES", Settings::default().flush_messages),
        // `TIER_ROWS_EVERY_MS=300000` holds tier rows back for 5 minutes of event time.
        tier_rows_every: Duration::from_millis(env_or("TIER_ROWS_EVERY_MS", 0) as u64),
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let observer: Arc<dyn Observer> = progress.clone();
    let handle = std::thread::Builder::new()
        .name("consumer".into())
        .spawn(move || kafka::run(settings, plan, Box::new(store), observer, &flag))
        .expect("consumer thread");
    let deadline = Instant::now() + Duration::from_secs(600);
    let flushed = loop {
        let flushed = progress.flushed.lock().expect("lock").clone();
        if flushed.messages >= events as u64 || Instant::now() > deadline {
            break flushed;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::SeqCst);
    handle.join().expect("consumer thread").expect("consumer");
    // From the end of the first flush to the end of the last: the group join
    // (about 23 s with tansu) stays outside, and so do the first flush's messages.
    let (Some((started, before)), Some(ended)) = (flushed.first, flushed.last) else {
        panic!("nothing was flushed within 600 s");
    };
    let elapsed = ended.duration_since(started).as_secs_f64();
    let measured = flushed.messages - before;
    println!(
        "pipeline {events} events {elapsed:.3}s {:.0} events/s ({} rows written; rate over the {measured} events flushed after the first flush)",
        measured as f64 / elapsed,
        flushed.rows
    );
    if let (Some(first), Some(last)) = (&flushed.cpu_first, &flushed.cpu_last) {
        let (total, by_name) = last.since(first);
        let threads: f64 = by_name.values().sum();
        let named = by_name.iter().filter(|(_, s)| **s > 0.0).map(|(name, s)| format!("{name} {s:.2}"));
        println!(
            "pipeline cpu {total:.2}s {:.2} us/event ({:.2} cores): {}, worker and ended threads {:.2}",
            total / measured as f64 * 1e6,
            total / elapsed,
            named.collect::<Vec<_>>().join(", "),
            total - threads
        );
    }
}
