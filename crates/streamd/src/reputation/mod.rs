//! The DNSBL poller of the plan's `dnsbl` sources.
//!
//! Who polls: of all instances of the group, the one the group assigned
//! partition 0 of the source's topic; the others skip their sweeps. The
//! group gives that partition to exactly one live member, so the lists see
//! one poller however many instances run, and polling moves with the
//! partition when its owner stops or dies.
//!
//! Where observations go: produced to the source's topic (keyed by
//! list/target), one transaction per sweep ([`sweeps`]), then consumed like
//! every other message: windows, tiers, store and the offset protocol make
//! the results exactly-once over what the topic holds. See
//! docs/reputation.md.

pub mod metrics;
pub mod sweeps;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use reputation::zone::Zone;
use reputation::{Episodes, Poller, Report};
use store::episodes::EpisodeFilter;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::metrics::Metrics;

/// The running pollers; [`Reputation::stop`] ends them.
pub struct Reputation {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Reputation {
    /// Stops the pollers (a sweep in flight is dropped whole) and waits.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

/// One `dnsbl` source, ready to run.
struct Job {
    source: String,
    topic: String,
    poller: Poller,
}

/// The store episodes are written to, shared by the sources' pollers.
pub type EpisodeStore = reputation::stream_targets::SharedStore;

/// Whether `plan` has a `dnsbl` source.
pub fn has_dnsbl(plan: &dsl::Plan) -> bool {
    plan.sources.iter().any(|s| s.dnsbl.is_some())
}

/// Starts a poller per `dnsbl` source of `plan`, or nothing when there is
/// none. With `demo`, the pollers ask an in-process zone holding demo
/// listings instead of the configured resolver. Listing episodes go to
/// `episodes`.
pub fn start(
    plan: &dsl::Plan,
    settings: &reputation::Settings,
    kafka: &kafka::Settings,
    metrics: Arc<Metrics>,
    demo: bool,
    episodes: EpisodeStore,
) -> anyhow::Result<Option<Reputation>> {
    let sources: Vec<(&str, &str, &dsl::plan::DnsblPlan)> =
        plan.sources.iter().filter_map(|s| Some((s.name.as_str(), s.topic.as_str(), s.dnsbl.as_ref()?))).collect();
    if sources.is_empty() {
        return Ok(None);
    }
    // Two threads: a poller waiting on Kafka (a commit) leaves the others
    // (and the demo zone) a thread to answer on.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut settings = settings.clone();
    settings.seed = u64::from(std::process::id());
    let mut demo_zone = None;
    if demo {
        let socket = runtime.block_on(reputation::zone::bind(0)).context("cannot bind the demo DNSBL zone")?;
        settings.resolver = socket.local_addr()?;
        let mut lists = Vec::new();
        for (_, _, dnsbl) in &sources {
            lists.extend(reputation::poller_config(dnsbl, &settings, |_| Some("demo".into()))?.lists);
        }
        info!(resolver = %settings.resolver, "Serving the demo DNSBL zone.");
        demo_zone = Some((socket, Arc::new(Zone::demo(&lists))));
    }
    let mut jobs = Vec::new();
    for (source, topic, dnsbl) in sources {
        // The demo zone takes any query key: the demo needs none set.
        let env = |var: &str| if demo { Some("demo".to_string()) } else { std::env::var(var).ok() };
        let config = reputation::poller_config(dnsbl, &settings, env).with_context(|| format!("source `{source}`"))?;
        info!(
            source,
            topic,
            lists = config.lists.len(),
            targets = config.targets.len(),
            resolver = %config.resolver,
            "DNSBL poller ready; it polls while this instance owns partition 0 of its topic."
        );
        let kinds: Vec<_> = config.lists.iter().map(|l| l.kind).collect();
        let mut poller = Poller::new(config)?;
        if !dnsbl.targets_from.is_empty() {
            let refresh =
                reputation::stream_targets::refresher(plan, source, &dnsbl.targets_from, kinds, episodes.clone());
            poller = poller.refresh_targets_with(refresh);
        }
        jobs.push(Job { source: source.to_string(), topic: topic.to_string(), poller });
    }
    let mut client = ClientConfig::new();
    for (key, value) in &kafka.librdkafka {
        // Consumer-only settings would make the producer fail; pass the connection ones.
        if key.starts_with("security.") || key.starts_with("sasl.") || key.starts_with("ssl.") {
            client.set(key, value);
        }
    }
    client.set("bootstrap.servers", &kafka.brokers);
    let group = kafka.group_id.clone();
    let plan_lists: Vec<String> = plan
        .sources
        .iter()
        .filter_map(|s| s.dnsbl.as_ref())
        .flat_map(|d| d.lists.iter().map(|l| l.name.clone()))
        .collect();
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new().name("reputation".into()).spawn(move || {
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            if let Some((socket, zone)) = demo_zone {
                tasks.push(tokio::spawn(reputation::zone::serve(socket, zone, stopped.clone())));
            }
            for job in jobs {
                let (metrics, topic) = (metrics.clone(), job.topic.clone());
                let poller_metrics = metrics.dnsbl_poller();
                let owns = move || owns_first_partition(&metrics, &topic);
                let book = EpisodeBook::new(episodes.clone(), &job.source, plan_lists.clone());
                let outlet = sweeps::SweepOutlet::new(client.clone(), &group, &job.source, &job.topic, owns, book)
                    .with_metrics(poller_metrics);
                tasks.push(tokio::spawn(job.poller.run_into(outlet, stopped.clone())));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
    })?;
    Ok(Some(Reputation { stop, thread }))
}

/// The pollers, kept on the running plan: a deploy that adds, changes or
/// removes a `dnsbl` source (or a metric its `targets from` reads) stops
/// them and starts them on the new plan. The new pollers read the open
/// episodes back, so a listing that continues keeps its episode.
pub struct Supervisor {
    thread: std::thread::JoinHandle<()>,
}

impl Supervisor {
    /// Waits for the pollers to stop (after the shutdown flag is set).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// What of a plan its pollers depend on: its `dnsbl` sources and the
/// metrics their `targets from` read. The pollers restart when it changes.
fn polled(plan: &dsl::Plan) -> (Vec<dsl::plan::SourcePlan>, Vec<Arc<dsl::plan::MetricPlan>>) {
    let sources: Vec<_> = plan.sources.iter().filter(|s| s.dnsbl.is_some()).cloned().collect();
    let read: Vec<&str> = sources
        .iter()
        .filter_map(|s| s.dnsbl.as_ref())
        .flat_map(|d| d.targets_from.iter().map(|t| t.metric.as_str()))
        .collect();
    let metrics = plan.metrics.iter().filter(|m| read.contains(&m.name.as_str())).cloned().collect();
    (sources, metrics)
}

/// Starts the pollers of the running plan (see [`start`]; an error here
/// stops the daemon), then follows the running plan until `shutdown`: a
/// deployed plan whose pollers cannot start (e.g. a query key's variable
/// is not set) leaves polling off, with an error in the log, until the
/// next deploy.
pub fn supervise(
    settings: reputation::Settings,
    kafka: kafka::Settings,
    metrics: Arc<Metrics>,
    demo: bool,
    episodes: EpisodeStore,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<Supervisor> {
    let current = metrics.current_plan();
    let running_plan = move || Arc::clone(&current.read().unwrap_or_else(std::sync::PoisonError::into_inner));
    let plan = running_plan();
    let mut polling = polled(&plan);
    let mut pollers = start(&plan, &settings, &kafka, metrics.clone(), demo, episodes.clone())?;
    let thread = std::thread::Builder::new().name("reputation-plan".into()).spawn(move || {
        while !shutdown.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(500));
            let plan = running_plan();
            let now_polled = polled(&plan);
            if now_polled == polling {
                continue;
            }
            if let Some(running) = pollers.take() {
                running.stop();
            }
            polling = now_polled;
            match start(&plan, &settings, &kafka, metrics.clone(), demo, episodes.clone()) {
                Ok(started) => {
                    info!(sources = polling.0.len(), "The DNSBL pollers follow the deployed plan.");
                    pollers = started;
                }
                Err(e) => error!(error = %format!("{e:#}"), "The deployed plan's DNSBL pollers cannot start: not polling until the next deploy."),
            }
        }
        if let Some(running) = pollers {
            running.stop();
        }
    })?;
    Ok(Supervisor { thread })
}

/// A poller's listing history: the open episodes, kept in step with the
/// store.
pub struct EpisodeBook {
    store: EpisodeStore,
    open: Episodes,
    /// Set when this poller takes over: the open episodes are read back
    /// before the next report.
    restore: bool,
    source: String,
    /// Every list of the plan's `dnsbl` sources.
    plan_lists: Vec<String>,
}

impl EpisodeBook {
    pub fn new(store: EpisodeStore, source: &str, plan_lists: Vec<String>) -> Self {
        EpisodeBook { store, open: Episodes::default(), restore: true, source: source.to_owned(), plan_lists }
    }

    /// Reads the open episodes back before the next report.
    pub fn restore(&mut self) {
        self.restore = true;
    }

    /// Applies a report's observations to the open episodes and upserts
    /// those that opened, moved or ended; after a sweep of `swept` lists,
    /// those of its lists whose target it no longer polls end at their last
    /// observation, and so, when read back, do those of lists the plan no
    /// longer has. A failed write re-reads the open episodes from the store
    /// before the next report, so nothing is opened twice.
    pub fn record(&mut self, report: &Report, swept: Option<&[String]>) {
        let source = self.source.as_str();
        let mut store = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changed = Vec::new();
        if std::mem::take(&mut self.restore) {
            match store.episodes(&EpisodeFilter { open_only: true, ..EpisodeFilter::default() }) {
                Ok(stored) => {
                    self.open = Episodes::default();
                    self.open.restore(stored);
                    changed.extend(self.open.close_lists_except(&self.plan_lists));
                }
                Err(error) => {
                    warn!(source, %error, "Cannot read the open listing episodes; trying again after the next sweep.");
                    self.restore = true;
                    return;
                }
            }
        }
        changed.extend(report.observations.iter().filter_map(|o| self.open.observe(o)));
        if let Some(lists) = swept {
            changed.extend(self.open.close_unpolled(lists, &report.observations));
        }
        let ended = changed.iter().filter(|e| e.ended_ms.is_some()).count();
        if changed.is_empty() {
            return;
        }
        if let Err(error) = store.write_episodes(&changed) {
            warn!(source, %error, episodes = changed.len(), "Cannot write listing episodes; they are written again after the next sweep.");
            self.restore = true;
        } else if ended > 0 {
            info!(source, ended, "Listing episodes ended.");
        }
    }
}

/// Whether this instance owns partition 0 of `topic` now.
fn owns_first_partition(metrics: &Metrics, topic: &str) -> bool {
    metrics.status().partitions.iter().any(|p| p.topic == topic && p.partition == 0)
}

/// Logs the lists whose canaries failed in a report.
fn log_lists(source: &str, report: &Report) {
    for list in &report.lists {
        if !list.canaries_ok {
            warn!(source, list = %list.list, problem = ?list.canary_problem, cycles = list.degraded_cycles, "DNSBL canaries fail: the list is degraded.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reputation::{Observation, State};

    fn report(time_ms: i64, state: State) -> Report {
        report_on("192.0.2.2", time_ms, state)
    }

    fn report_on(target: &str, time_ms: i64, state: State) -> Report {
        let observation = Observation {
            time_ms,
            list: "zen".into(),
            zone: "zen.example".into(),
            kind: "ip".into(),
            target: target.into(),
            state,
            code: (state == State::Listed).then(|| "127.0.0.2".into()),
            meaning: None,
            degraded: None,
            txt: None,
            weight: 1.0,
            budget_used: 0.0,
            resolver: "127.0.0.1:53".into(),
            latency_ms: 1,
            cached: false,
        };
        Report { observations: vec![observation], lists: Vec::new(), sweep: None }
    }

    fn temp_store(name: &str) -> (std::path::PathBuf, impl Fn() -> EpisodeStore) {
        let dir = std::env::temp_dir().join(format!("streamd-episodes-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("s.db");
        let _ = std::fs::remove_file(&path);
        let open_store = move || -> EpisodeStore {
            let store = store::sqlite::SqliteStore::open(path.to_str().expect("utf-8")).expect("open");
            Arc::new(std::sync::Mutex::new(Box::new(store) as Box<dyn store::Store + Send>))
        };
        (dir, open_store)
    }

    /// Every stored episode.
    fn stored(store: &EpisodeStore) -> Vec<reputation::Episode> {
        store.lock().expect("lock").episodes(&EpisodeFilter::default()).expect("read")
    }

    /// A deploy removes a listed target: the pollers of the new plan,
    /// which no longer poll it, end its stored episode at its last
    /// observation instead of leaving it open.
    #[test]
    fn the_listing_of_a_target_no_longer_polled_ends_at_its_last_observation() {
        let (dir, open_store) = temp_store("gone");
        let zen = ["zen".to_string()];
        let first = open_store();
        let mut book = EpisodeBook::new(first.clone(), "reputation", zen.to_vec());
        book.record(&report(1_000, State::Listed), Some(&zen));
        book.record(&report(2_000, State::Listed), Some(&zen));
        drop((book, first));

        let second = open_store();
        let mut book = EpisodeBook::new(second.clone(), "reputation", zen.to_vec());
        let other = report_on("192.0.2.5", 3_000, State::Clean);
        // Re-checks say nothing of what is polled; a sweep does.
        book.record(&other, None);
        assert_eq!(stored(&second)[0].ended_ms, None);
        book.record(&other, Some(&zen));
        let ends: Vec<_> = stored(&second).iter().map(|e| (e.first_seen_ms, e.last_seen_ms, e.ended_ms)).collect();
        assert_eq!(ends, [(1_000, 2_000, Some(2_000))]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two pollers one after the other (a restart, or a handover), each
    /// starting with nothing in memory: the listing that continues keeps its
    /// one episode, and ends it once.
    #[test]
    fn a_new_poller_continues_the_stored_episode_instead_of_opening_another() {
        let (dir, open_store) = temp_store("continue");
        let lists = vec!["zen".to_string()];
        let first = open_store();
        let mut book = EpisodeBook::new(first.clone(), "reputation", lists.clone());
        book.record(&report(1_000, State::Listed), None);
        book.record(&report(2_000, State::Listed), None);
        drop((book, first));

        let second = open_store();
        let mut book = EpisodeBook::new(second.clone(), "reputation", lists);
        book.record(&report(3_000, State::Listed), None);
        book.record(&report(4_000, State::Clean), None);
        let ends: Vec<_> = stored(&second).iter().map(|e| (e.first_seen_ms, e.last_seen_ms, e.ended_ms)).collect();
        assert_eq!(ends, [(1_000, 3_000, Some(4_000))]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A deploy removes a list: the new plan's poller, reading the open
    /// episodes back, ends those of that list at their last observation;
    /// those of its own lists stay open.
    #[test]
    fn the_listings_of_a_list_the_plan_no_longer_has_end_at_their_last_observation() {
        let (dir, open_store) = temp_store("list-gone");
        let first = open_store();
        let mut book = EpisodeBook::new(first.clone(), "reputation", vec!["zen".into(), "spamcop".into()]);
        let mut both = report(1_000, State::Listed);
        let spamcop = Observation { list: "spamcop".into(), time_ms: 1_500, ..both.observations[0].clone() };
        both.observations.push(spamcop);
        book.record(&both, None);
        drop((book, first));

        let second = open_store();
        let mut book = EpisodeBook::new(second.clone(), "reputation", vec!["zen".into()]);
        book.record(&report(2_000, State::Listed), None);
        let mut episodes = stored(&second);
        episodes.sort_by(|a, b| a.list.cmp(&b.list));
        let ends: Vec<_> = episodes.iter().map(|e| (e.list.as_str(), e.last_seen_ms, e.ended_ms)).collect();
        assert_eq!(ends, [("spamcop", 1_500, Some(1_500)), ("zen", 2_000, None)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
