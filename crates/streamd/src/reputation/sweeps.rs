//! Exactly-once production of a poller's sweeps.
//!
//! Time is cut into slots of the source's `every`; each slot gets one sweep
//! ([`reputation::Poller::run_into`]). A sweep is produced as ONE Kafka
//! transaction holding its observations (on the source's topic, each with a
//! `dnsbl-slot` header) and a marker record on `TOPIC.sweeps` (partition 0,
//! the slot as its payload). The transactional id is derived from the
//! consumer group and the source, the same on every instance, so:
//!
//! * the instance that becomes the poller calls `init_transactions`, which
//!   fences the one before it: the broker aborts its open transaction and
//!   refuses its later writes and commits;
//! * it then reads the last committed marker (`read_committed`) and does
//!   not sweep that slot again (a marker names the lists swept: a list a
//!   deploy added is swept in that slot, the others are not);
//! * a poller that lost the polling, or whose commit failed, delivers
//!   nothing of that sweep; a slot not committed is swept again.
//!
//! Re-checks (between sweeps) are one transaction each, without a marker.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use reputation::{ListCounters, Outlet, Report};
use tracing::{info, warn};

use super::metrics::PollerMetrics;
use super::{log_lists, EpisodeBook};

/// The header carrying an observation's sweep slot.
pub const SLOT_HEADER: &str = "dnsbl-slot";

/// How long a transaction step or a marker read may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// Markers read at a time, going back from the end of `TOPIC.sweeps`.
const MARKER_WINDOW: i64 = 256;

/// The topic of a source's sweep markers.
pub fn sweeps_topic(topic: &str) -> String {
    format!("{topic}.sweeps")
}

/// The transactional id of a source's poller: the same on every instance
/// of the group, so the one that takes the polling over fences the other.
pub fn transactional_id(group: &str, source: &str) -> String {
    format!("{group}.dnsbl.{source}")
}

/// Delivers a poller's reports to Kafka, one transaction per sweep, while
/// `owns` says this instance polls; writes the listing episodes of what it
/// committed.
pub struct SweepOutlet<O> {
    /// Connection settings (brokers, security) shared by the producer and
    /// the marker reader.
    client: ClientConfig,
    transactional_id: String,
    source: String,
    topic: String,
    sweeps: String,
    owns: O,
    /// Present while this instance polls: initialised, so the poller
    /// before it is fenced.
    producer: Option<BaseProducer>,
    /// The last slot committed by any poller and the lists swept in it, as
    /// read when taking over and committed since.
    committed: Option<(i64, BTreeSet<String>)>,
    episodes: EpisodeBook,
    metrics: Option<Arc<PollerMetrics>>,
    /// The poller's counters as of its previous report.
    counted: HashMap<String, ListCounters>,
}

impl<O: FnMut() -> bool> SweepOutlet<O> {
    pub fn new(client: ClientConfig, group: &str, source: &str, topic: &str, owns: O, episodes: EpisodeBook) -> Self {
        SweepOutlet {
            client,
            transactional_id: transactional_id(group, source),
            source: source.to_owned(),
            topic: topic.to_owned(),
            sweeps: sweeps_topic(topic),
            owns,
            producer: None,
            committed: None,
            episodes,
            metrics: None,
            counted: HashMap::new(),
        }
    }

    /// Counts what the poller does in `metrics` (on `/metrics`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<PollerMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Whether this instance polls now; taking over fences the poller
    /// before and reads the last committed slot.
    fn polls(&mut self) -> bool {
        if !(self.owns)() {
            if self.producer.take().is_some() {
                info!(source = %self.source, "This instance no longer polls the DNSBLs.");
            }
            return false;
        }
        if self.producer.is_some() {
            return true;
        }
        match blocking(|| self.take_over()) {
            Ok(()) => true,
            Err(error) => {
                warn!(source = %self.source, %error, "Cannot take the DNSBL polling over; trying again shortly.");
                false
            }
        }
    }

    fn take_over(&mut self) -> KafkaResult<()> {
        // The markers' topic is the poller's own: made here where brokers
        // do not create topics on first use (one partition, as it is read).
        kafka::control::ensure_topic(&self.client, &self.sweeps, &[], KAFKA_TIMEOUT)?;
        let producer: BaseProducer = self
            .client
            .clone()
            .set("transactional.id", &self.transactional_id)
            .set("enable.idempotence", "true")
            .set("linger.ms", "50")
            .create()?;
        producer.init_transactions(KAFKA_TIMEOUT)?;
        let committed = last_committed_slot(&self.client, &self.sweeps)?;
        info!(source = %self.source, last_committed_slot = ?committed, "This instance polls the DNSBLs now.");
        self.committed = committed;
        self.producer = Some(producer);
        self.episodes.restore();
        Ok(())
    }

    /// Produces `report` as one transaction (with the marker of `sweep`).
    fn transact(&self, producer: &BaseProducer, sweep: Option<(i64, &[String])>, report: &Report) -> KafkaResult<()> {
        producer.begin_transaction()?;
        let result = (|| {
            let slot_text = sweep.map(|(s, _)| s.to_string());
            for observation in &report.observations {
                let (key, payload) = (observation.key(), observation.to_json());
                let mut record = BaseRecord::to(&self.topic).key(&key).payload(payload.as_slice());
                if let Some(slot) = &slot_text {
                    record = record.headers(OwnedHeaders::new().insert(Header { key: SLOT_HEADER, value: Some(slot) }));
                }
                send(producer, record)?;
            }
            if let Some((slot, lists)) = sweep {
                let marker = serde_json::json!({ "slot": slot, "lists": lists }).to_string();
                send(producer, BaseRecord::to(&self.sweeps).partition(0).key(&self.source).payload(marker.as_bytes()))?;
            }
            producer.commit_transaction(KAFKA_TIMEOUT)
        })();
        if result.is_err() {
            // Nothing of it becomes visible; a fenced producer cannot abort
            // and is dropped by the caller.
            let _ = producer.abort_transaction(KAFKA_TIMEOUT);
        }
        result
    }
}

impl<O: FnMut() -> bool> Outlet for SweepOutlet<O> {
    fn may_sweep(&mut self, slot: i64, lists: &[String]) -> Vec<String> {
        if !self.polls() {
            return Vec::new();
        }
        match &self.committed {
            Some((committed, swept)) if *committed == slot => {
                lists.iter().filter(|l| !swept.contains(*l)).cloned().collect()
            }
            Some((committed, _)) if *committed > slot => Vec::new(),
            _ => lists.to_vec(),
        }
    }

    fn may_recheck(&mut self) -> bool {
        self.polls()
    }

    fn deliver(&mut self, sweep: Option<(i64, &[String])>, report: Report) -> bool {
        if let Some(metrics) = &self.metrics {
            metrics.record(&self.source, &report, &mut self.counted);
        }
        let slot = sweep.map(|(s, _)| s);
        // The polling may have moved during the sweep: the new poller sweeps
        // this slot (or has), and this one delivers nothing of it.
        if !self.polls() {
            info!(source = %self.source, slot, "The DNSBL polling moved during the sweep; its observations are dropped.");
            return false;
        }
        let Some(producer) = self.producer.as_ref() else {
            return false;
        };
        if let Err(error) = blocking(|| self.transact(producer, sweep, &report)) {
            warn!(source = %self.source, topic = %self.topic, slot, %error, "DNSBL sweep not committed; the slot is swept again.");
            // Fenced (another instance polls) or broken: take over afresh
            // if this instance still polls at the next check.
            self.producer = None;
            return false;
        }
        if let Some((slot, lists)) = sweep {
            match &mut self.committed {
                Some((committed, swept)) if *committed == slot => swept.extend(lists.iter().cloned()),
                _ => self.committed = Some((slot, lists.iter().cloned().collect())),
            }
        }
        log_lists(&self.source, &report);
        info!(source = %self.source, slot, observations = report.observations.len(), "DNSBL sweep committed.");
        self.episodes.record(&report, sweep.map(|(_, l)| l));
        true
    }
}

/// A sweep marker: the slot and the lists swept.
#[derive(serde::Deserialize)]
struct Marker {
    slot: i64,
    lists: Vec<String>,
}

/// Runs `f`, which waits on Kafka, so that on a multi-threaded runtime the
/// other tasks (other sources' pollers, the demo zone) go on meanwhile: a
/// slow commit must not turn their DNS answers into timeouts.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Sends a record, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, mut record: BaseRecord<'_, String, [u8]>) -> KafkaResult<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(100));
            }
            Err((error, _)) => return Err(error),
        }
    }
}

/// The highest slot among the committed markers of `sweeps` (partition 0),
/// read back from its end, and the lists its markers name; `None` when
/// there is none (or no such topic yet).
pub fn last_committed_slot(client: &ClientConfig, sweeps: &str) -> KafkaResult<Option<(i64, BTreeSet<String>)>> {
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", format!("{sweeps}.reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(sweeps), KAFKA_TIMEOUT)?;
    let exists =
        metadata.topics().iter().any(|t| t.name() == sweeps && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Ok(None);
    }
    let (low, high) = consumer.fetch_watermarks(sweeps, 0, KAFKA_TIMEOUT)?;
    let mut end = high;
    while end > low {
        let start = (end - MARKER_WINDOW).max(low);
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(sweeps, 0, Offset::Offset(start))?;
        consumer.assign(&assignment)?;
        let mut last: Option<(i64, BTreeSet<String>)> = None;
        loop {
            match consumer.poll(KAFKA_TIMEOUT) {
                Some(Ok(message)) if message.offset() < end => {
                    let Some(marker) = message.payload().and_then(|p| serde_json::from_slice::<Marker>(p).ok()) else {
                        continue;
                    };
                    match &mut last {
                        Some((slot, lists)) if *slot == marker.slot => lists.extend(marker.lists),
                        Some((slot, _)) if *slot > marker.slot => {}
                        _ => last = Some((marker.slot, marker.lists.into_iter().collect())),
                    }
                }
                Some(Ok(_)) | Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(error)) => return Err(error),
                None => return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut)),
            }
        }
        if last.is_some() {
            return Ok(last);
        }
        end = start;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    use rdkafka::message::Headers;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    use reputation::zone::{self, Zone};
    use reputation::{ListConfig, ListKind, Observation, Poller, PollerConfig, Target};
    use tokio::sync::watch;

    use super::super::EpisodeStore;
    use super::*;

    const TOPIC: &str = "reputation.handover";
    const TARGETS: u8 = 30;
    const SLOT_MS: i64 = 3_600_000;

    fn now_ms() -> i64 {
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis())
            .expect("ms")
    }

    fn list() -> ListConfig {
        ListConfig {
            name: "zen".into(),
            zone: "zen.test".into(),
            kind: ListKind::Ip,
            meanings: BTreeMap::new(),
            weight: 1.0,
            query_key: None,
            // 2 canaries and 30 targets: a sweep takes over two seconds.
            max_qps: 10.0,
            max_queries_per_day: None,
        }
    }

    fn poller(resolver: SocketAddr) -> Poller {
        Poller::new(PollerConfig {
            resolver,
            timeout: Duration::from_secs(2),
            interval: Duration::from_millis(SLOT_MS as u64),
            jitter: 0.0,
            recheck_after: Duration::from_secs(3600),
            cache_capacity: 1000,
            max_cache_ttl: Duration::from_secs(3600),
            lists: vec![list()],
            targets: (1..=TARGETS).map(|i| Target::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))).collect(),
            seed: 1,
        })
        .expect("poller")
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    struct Setup {
        _cluster: MockCluster<'static, DefaultProducerContext>,
        client: ClientConfig,
        zone: Arc<Zone>,
        resolver: SocketAddr,
        stop_zone: watch::Sender<bool>,
        zone_thread: std::thread::JoinHandle<()>,
        dir: std::path::PathBuf,
        store: EpisodeStore,
    }

    fn setup(name: &str) -> Setup {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 3, 1).expect("topic");
        // The mock cluster cannot create topics through the admin API, as
        // the poller does where one is missing (`crates/kafka/tests/topics.rs`).
        cluster.create_topic(&sweeps_topic(TOPIC), 1, 1).expect("sweeps topic");
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", cluster.bootstrap_servers());
        let zone = Arc::new(Zone::demo(&[list()]));
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("non-blocking");
        let resolver = socket.local_addr().expect("address");
        let (stop_zone, stopped) = watch::channel(false);
        let served = zone.clone();
        let zone_thread = std::thread::spawn(move || {
            runtime().block_on(async move {
                let socket = tokio::net::UdpSocket::from_std(socket).expect("tokio socket");
                zone::serve(socket, served, stopped).await;
            });
        });
        // The tests expect one slot (an hour): not near its end.
        let left = SLOT_MS - now_ms().rem_euclid(SLOT_MS);
        if left < 60_000 {
            std::thread::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0) + 1_000));
        }
        let dir = std::env::temp_dir().join(format!("streamd-sweeps-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("s.db");
        let sqlite = store::sqlite::SqliteStore::open(path.to_str().expect("utf-8")).expect("open");
        let store: EpisodeStore = Arc::new(Mutex::new(Box::new(sqlite) as Box<dyn store::Store + Send>));
        Setup { _cluster: cluster, client, zone, resolver, stop_zone, zone_thread, dir, store }
    }

    impl Setup {
        fn finish(self) {
            let _ = self.stop_zone.send(true);
            let _ = self.zone_thread.join();
            let _ = std::fs::remove_dir_all(&self.dir);
        }

        /// Runs a poller with its outlet on a thread of its own until `stop`.
        fn spawn(&self, owns: Arc<AtomicBool>, stop: watch::Receiver<bool>) -> std::thread::JoinHandle<()> {
            let outlet = SweepOutlet::new(
                self.client.clone(),
                "group",
                "reputation",
                TOPIC,
                move || owns.load(Ordering::SeqCst),
                EpisodeBook::new(self.store.clone(), "reputation", vec!["zen".into()]),
            );
            let poller = poller(self.resolver);
            std::thread::spawn(move || {
                // As in streamd: a multi-threaded runtime, so Kafka waits block in place.
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move { tokio::spawn(poller.run_into(outlet, stop)).await.expect("poller") });
            })
        }

        /// Each committed observation on the topic: (key, slot, status).
        fn committed(&self) -> Vec<(String, Option<i64>, String)> {
            let consumer: BaseConsumer = self
                .client
                .clone()
                .set("group.id", "count")
                .set("isolation.level", "read_committed")
                .set("enable.partition.eof", "true")
                .create()
                .expect("consumer");
            let mut assignment = TopicPartitionList::new();
            for partition in 0..3 {
                assignment.add_partition_offset(TOPIC, partition, Offset::Beginning).expect("partition");
            }
            consumer.assign(&assignment).expect("assign");
            let (mut out, mut at_end) = (Vec::new(), 0);
            while at_end < 3 {
                match consumer.poll(Duration::from_secs(10)).expect("a message or the end") {
                    Ok(message) => {
                        let slot = message
                            .headers()
                            .and_then(|h| h.iter().find(|h| h.key == SLOT_HEADER))
                            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok());
                        let obs: Observation =
                            serde_json::from_slice(message.payload().expect("payload")).expect("json");
                        out.push((obs.key(), slot, format!("{:?}/{:?}/{:?}", obs.state, obs.code, obs.degraded)));
                    }
                    Err(KafkaError::PartitionEOF(_)) => at_end += 1,
                    Err(error) => panic!("{error}"),
                }
            }
            out
        }

        /// What one sweep of a single poller sees: key → status.
        fn single_sweep(&self) -> HashMap<String, String> {
            let mut single = poller(self.resolver);
            let report = runtime().block_on(single.sweep());
            report
                .observations
                .iter()
                .map(|o| (o.key(), format!("{:?}/{:?}/{:?}", o.state, o.code, o.degraded)))
                .collect()
        }

        fn wait_for_commit(&self, deadline: Duration) -> Option<i64> {
            let start = Instant::now();
            while start.elapsed() < deadline {
                if let Some((slot, _)) = last_committed_slot(&self.client, &sweeps_topic(TOPIC)).expect("markers") {
                    return Some(slot);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            None
        }
    }

    /// Checks that each target is on the topic exactly once for each slot
    /// there, with what a single poller's sweep saw.
    fn assert_once_per_slot(committed: &[(String, Option<i64>, String)], single: &HashMap<String, String>) {
        let mut per_slot: HashMap<Option<i64>, HashMap<String, String>> = HashMap::new();
        for (key, slot, status) in committed {
            let previous = per_slot.entry(*slot).or_default().insert(key.clone(), status.clone());
            assert!(previous.is_none(), "{key} twice in slot {slot:?}: {committed:?}");
        }
        assert!(!per_slot.is_empty());
        for (slot, seen) in &per_slot {
            assert!(slot.is_some(), "every observation carries its slot");
            assert_eq!(seen, single, "slot {slot:?} is what a single poller saw");
        }
    }

    /// Two pollers on one topic; the first loses the polling in the middle
    /// of its sweep. The topic holds each target once per slot, as a single
    /// poller's sweep would have it.
    #[test]
    fn a_handover_in_the_middle_of_a_sweep_puts_each_observation_on_the_topic_once() {
        let setup = setup("mid");
        let single = setup.single_sweep();
        assert_eq!(single.len(), usize::from(TARGETS));
        let before = setup.zone.served();
        let (a_owns, b_owns) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(false)));
        let (stop, stopped) = watch::channel(false);
        let a = setup.spawn(a_owns.clone(), stopped.clone());
        let b = setup.spawn(b_owns.clone(), stopped);
        // The first poller has asked 12 of its 32 questions: hand over.
        let start = Instant::now();
        while setup.zone.served() < before + 12 {
            assert!(start.elapsed() < Duration::from_secs(20), "the first poller never swept");
            std::thread::sleep(Duration::from_millis(10));
        }
        a_owns.store(false, Ordering::SeqCst);
        b_owns.store(true, Ordering::SeqCst);
        assert!(setup.zone.served() < before + 32, "the handover came in the middle of the sweep");
        let slot = setup.wait_for_commit(Duration::from_secs(30)).expect("the second poller commits its sweep");
        // Let the first poller finish its sweep (and drop it).
        while setup.zone.served() < before + 64 {
            assert!(start.elapsed() < Duration::from_secs(40), "both sweeps end");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        let _ = stop.send(true);
        a.join().expect("first poller");
        b.join().expect("second poller");
        let committed = setup.committed();
        assert_eq!(committed.len(), usize::from(TARGETS), "{committed:?}");
        assert!(committed.iter().all(|(_, s, _)| *s == Some(slot)));
        assert_once_per_slot(&committed, &single);
        setup.finish();
    }

    /// A poller that takes over after a committed sweep (a restart, or a
    /// handover between sweeps) does not sweep that slot again, and sweeps
    /// the next one.
    #[test]
    fn taking_over_after_a_committed_sweep_does_not_repeat_its_slot() {
        let setup = setup("after");
        let single = setup.single_sweep();
        let (stop, stopped) = watch::channel(false);
        let a = setup.spawn(Arc::new(AtomicBool::new(true)), stopped);
        let slot = setup.wait_for_commit(Duration::from_secs(30)).expect("the first poller commits its sweep");
        let _ = stop.send(true);
        a.join().expect("first poller");

        let served = setup.zone.served();
        let (stop, stopped) = watch::channel(false);
        let b = setup.spawn(Arc::new(AtomicBool::new(true)), stopped);
        std::thread::sleep(Duration::from_secs(3));
        let _ = stop.send(true);
        b.join().expect("second poller");
        assert_eq!(setup.zone.served(), served, "the second poller asked nothing in the committed slot");
        let committed = setup.committed();
        assert_eq!(committed.len(), usize::from(TARGETS));
        assert_once_per_slot(&committed, &single);

        let mut outlet = SweepOutlet::new(
            setup.client.clone(),
            "group",
            "reputation",
            TOPIC,
            || true,
            EpisodeBook::new(setup.store.clone(), "reputation", vec!["zen".into()]),
        );
        let (zen, added) = ("zen".to_string(), "spamcop".to_string());
        assert_eq!(
            outlet.may_sweep(slot, std::slice::from_ref(&zen)),
            Vec::<String>::new(),
            "a committed slot is not swept again"
        );
        assert_eq!(outlet.may_sweep(slot, &[zen.clone(), added.clone()]), [added], "but a list a deploy added is");
        assert_eq!(outlet.may_sweep(slot + 1, std::slice::from_ref(&zen)), [zen], "and the next slot");
        setup.finish();
    }
}
