//! The poller against a real DNS server process: Debian's `dnsmasq` on
//! 127.0.0.1, serving test DNSBL zones from a hosts file (installed by
//! `.ci/install.sh`; with `CI=true` a missing `dnsmasq` fails the tests).
//!
//! dnsmasq logs every query it sees, so the tests count what reached the
//! server instead of trusting the poller's own count.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reputation::{Episodes, ListConfig, ListKind, Observation, Poller, PollerConfig, State, Target};

/// A dnsmasq process answering for the `*.test` zones given to it. Stopped
/// (and its files removed) on drop.
struct Dnsmasq {
    child: Child,
    dir: PathBuf,
    port: u16,
}

fn dnsmasq_binary() -> Option<PathBuf> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// The server, or `None` (test skipped, said so) when dnsmasq is missing
/// outside CI. In CI a missing server fails the test.
fn server(name: &str, hosts: &str, extra: &[&str]) -> Option<Dnsmasq> {
    let Some(binary) = dnsmasq_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dnsmasq is not installed (bash .ci/install.sh installs it)"
        );
        eprintln!("SKIPPED: dnsmasq is not installed (bash .ci/install.sh installs it)");
        return None;
    };
    let dir = std::env::temp_dir().join(format!("reputation-{name}-{}", std::process::id()));
    for attempt in 0..5 {
        // A failed attempt's drop removed the directory: each starts afresh.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        fs::write(dir.join("hosts"), hosts).expect("hosts file");
        let port = free_port();
        let mut cmd = Command::new(&binary);
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--log-queries",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--addn-hosts={}", dir.join("hosts").display()))
        .arg(format!("--log-facility={}", dir.join("log").display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd.spawn().expect("start dnsmasq");
        let server = Dnsmasq { child, dir: dir.clone(), port };
        if server.wait_ready() {
            return Some(server);
        }
        drop(server);
        assert!(attempt < 4, "dnsmasq did not start");
    }
    None
}

fn free_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

impl Dnsmasq {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn wait_ready(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.log().contains("read ") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The `query[TYPE] NAME` lines the server logged.
    fn queries(&self) -> Vec<String> {
        self.log().lines().filter_map(|l| l.split_once(": query[").map(|(_, q)| q.to_owned())).collect()
    }

    /// Rewrites the hosts file and makes dnsmasq read it again.
    fn set_hosts(&self, hosts: &str) {
        let before = self.log().matches("read ").count();
        fs::write(self.dir.join("hosts"), hosts).expect("hosts file");
        let status = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status().expect("kill -HUP");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.log().matches("read ").count() == before {
            assert!(Instant::now() < deadline, "dnsmasq did not reload");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn ip_list(name: &str, zone: &str, qps: f64) -> ListConfig {
    ListConfig {
        name: name.into(),
        zone: zone.into(),
        kind: ListKind::Ip,
        meanings: [([127, 0, 0, 2], "SBL"), ([127, 0, 0, 4], "XBL")]
            .into_iter()
            .map(|(c, m)| (Ipv4Addr::from(c), m.to_owned()))
            .collect::<BTreeMap<_, _>>(),
        weight: 1.0,
        query_key: None,
        max_qps: qps,
        max_queries_per_day: None,
    }
}

fn config(resolver: SocketAddr, lists: Vec<ListConfig>, targets: &[&str]) -> PollerConfig {
    PollerConfig {
        resolver,
        timeout: Duration::from_millis(500),
        interval: Duration::from_secs(60),
        jitter: 0.0,
        recheck_after: Duration::ZERO,
        cache_capacity: 1024,
        max_cache_ttl: Duration::from_secs(3600),
        lists,
        targets: targets.iter().map(|t| Target::parse(t).unwrap()).collect(),
        seed: 1,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn by_target<'a>(obs: &'a [Observation], list: &str, target: &str) -> &'a Observation {
    obs.iter()
        .find(|o| o.list == list && o.target == target)
        .unwrap_or_else(|| panic!("no observation of {target} on {list}: {obs:#?}"))
}

const CANARIES: &str = "127.0.0.2 2.0.0.127.bl.test\n";

#[test]
fn listed_clean_and_every_error_answer_is_degraded() {
    let hosts = format!(
        "{CANARIES}\
         127.0.0.2 2.2.0.192.bl.test\n\
         127.0.0.2 3.2.0.192.bl.test\n\
         127.0.0.4 3.2.0.192.bl.test\n\
         127.255.255.252 252.2.0.192.bl.test\n\
         127.255.255.254 254.2.0.192.bl.test\n\
         127.255.255.255 255.2.0.192.bl.test\n\
         127.255.255.250 250.2.0.192.bl.test\n\
         127.255.255.251 251.2.0.192.bl.test\n\
         127.0.1.255 9.2.0.192.bl.test\n\
         127.0.1.2 test.dbl.test\n\
         127.0.1.2 spam.example.dbl.test\n"
    );
    let Some(dns) = server(
        "states",
        &hosts,
        &[
            "--local=/bl.test/",
            "--local=/dbl.test/",
            // A resolver that rewrites NXDOMAIN into an address of its own.
            "--address=/55.2.0.192.bl.test/198.51.100.1",
            "--txt-record=2.2.0.192.bl.test,listed: see https://bl.test/192.0.2.2",
        ],
    ) else {
        return;
    };
    let mut domains = ip_list("dbl", "dbl.test", 100.0);
    domains.kind = ListKind::Domain;
    let cfg = config(
        dns.addr(),
        vec![ip_list("bl", "bl.test", 100.0), domains],
        &[
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.252",
            "192.0.2.254",
            "192.0.2.255",
            "192.0.2.250",
            "192.0.2.251",
            "192.0.2.9",
            "192.0.2.55",
            "good.example",
            "spam.example",
        ],
    );
    let mut poller = Poller::new(cfg).unwrap();
    let report = runtime().block_on(poller.sweep());
    let obs = &report.observations;
    assert_eq!(obs.len(), 12, "IP targets on the IP list, domains on the domain list");
    assert!(report.lists.iter().all(|l| l.canaries_ok), "{:?}", report.lists);

    let clean = by_target(obs, "bl", "192.0.2.1");
    assert_eq!((clean.state, clean.code.as_deref()), (State::Clean, None));
    let listed = by_target(obs, "bl", "192.0.2.2");
    assert_eq!(listed.state, State::Listed);
    assert_eq!(listed.code.as_deref(), Some("127.0.0.2"));
    assert_eq!(listed.meaning.as_deref(), Some("SBL"));
    assert_eq!(listed.txt.as_deref(), Some("listed: see https://bl.test/192.0.2.2"));
    assert_eq!(listed.resolver, dns.addr().to_string());
    let two = by_target(obs, "bl", "192.0.2.3");
    assert_eq!(two.state, State::Listed);
    let mut meanings: Vec<&str> = two.meaning.as_deref().unwrap().split(',').collect();
    meanings.sort();
    assert_eq!(meanings, ["SBL", "XBL"]);

    for (target, why) in [
        ("192.0.2.252", "zone_typo"),
        ("192.0.2.254", "public_resolver"),
        ("192.0.2.255", "rate_limited"),
        ("192.0.2.250", "bad_query_key"),
        ("192.0.2.251", "bad_query_key"),
        ("192.0.2.9", "wrong_target_kind"),
        ("192.0.2.55", "resolver_rewrite"),
    ] {
        let o = by_target(obs, "bl", target);
        assert_eq!(o.state, State::Degraded, "{target}: {o:?}");
        assert_eq!(o.degraded.as_deref(), Some(why), "{target}");
        assert_eq!(o.txt, None, "{target}: no TXT is asked for an error");
    }
    assert_eq!(by_target(obs, "dbl", "good.example").state, State::Clean);
    let spam = by_target(obs, "dbl", "spam.example");
    assert_eq!(spam.state, State::Listed);
    assert_eq!(spam.code.as_deref(), Some("127.0.1.2"));

    // Every query the poller counted reached the server, and no other:
    // 2 canaries per list, 12 A queries, a TXT per listing (3).
    let seen = dns.queries();
    let counted: u64 = report.lists.iter().map(|l| l.counters.queries).sum();
    assert_eq!(seen.len() as u64, counted, "{seen:#?}");
    assert_eq!(seen.len(), 4 + 12 + 3, "{seen:#?}");
    assert_eq!(seen.iter().filter(|q| q.starts_with("TXT]")).count(), 3);
    // The poller's counters (on streamd's /metrics): answers by state.
    let by_state = |f: fn(&reputation::ListCounters) -> u64| report.lists.iter().map(|l| f(&l.counters)).sum::<u64>();
    assert_eq!((by_state(|c| c.listed), by_state(|c| c.clean), by_state(|c| c.degraded)), (3, 2, 7));
    assert_eq!(by_state(|c| c.cache_hits), 0);
}

/// SERVFAIL and REFUSED as a real resolver gives them. The resolver asked
/// is a validating dnsmasq (DNSSEC on, with a root trust anchor) that
/// forwards to an upstream dnsmasq serving the list unsigned: the
/// upstream's answer for 192.0.2.2 cannot be validated (SERVFAIL, as
/// validating resolvers answer), and the upstream refuses 192.0.2.3 (it
/// serves no such name and has no upstream of its own: REFUSED, passed on).
/// The canaries are answered by the resolver itself, so the list is healthy
/// and each target is degraded for its own reason; no error is a listing.
#[test]
fn servfail_and_refused_from_a_real_resolver_are_degraded() {
    let Some(upstream) = server("upstream", "", &["--address=/2.2.0.192.bl.test/127.0.0.2"]) else {
        return;
    };
    let forward = format!("--server=127.0.0.1#{}", upstream.port);
    let Some(dns) = server(
        "validating",
        CANARIES,
        &[
            // The must-not-be-listed canary: NXDOMAIN from the resolver.
            "--address=/1.0.0.127.bl.test/",
            "--dnssec",
            "--trust-anchor=.,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
            &forward,
        ],
    ) else {
        return;
    };
    let cfg = config(dns.addr(), vec![ip_list("bl", "bl.test", 100.0)], &["192.0.2.2", "192.0.2.3"]);
    let mut poller = Poller::new(cfg).unwrap();
    let report = runtime().block_on(poller.sweep());
    assert!(report.lists[0].canaries_ok, "{:?}", report.lists[0]);
    let servfail = by_target(&report.observations, "bl", "192.0.2.2");
    assert_eq!((servfail.state, servfail.degraded.as_deref()), (State::Degraded, Some("servfail")), "{servfail:?}");
    let refused = by_target(&report.observations, "bl", "192.0.2.3");
    assert_eq!((refused.state, refused.degraded.as_deref()), (State::Degraded, Some("refused")), "{refused:?}");
    assert!(dns.log().contains("validation 2.2.0.192.bl.test is"), "{}", dns.log());
    assert!(upstream.queries().iter().any(|q| q.contains("3.2.0.192.bl.test")), "{:?}", upstream.queries());
    assert_eq!(report.lists[0].counters.degraded, 2);
}

#[test]
fn answers_are_cached_to_their_ttl() {
    let hosts = format!("{CANARIES}127.0.0.2 2.2.0.192.bl.test\n");
    let Some(dns) = server("cache", &hosts, &["--local=/bl.test/", "--local-ttl=600"]) else {
        return;
    };
    let mut poller = Poller::new(config(dns.addr(), vec![ip_list("bl", "bl.test", 100.0)], &["192.0.2.2"])).unwrap();
    let rt = runtime();
    let first = rt.block_on(poller.sweep());
    let after_first = dns.queries().len();
    let second = rt.block_on(poller.sweep());
    assert!(!first.observations[0].cached);
    assert!(second.observations[0].cached);
    assert_eq!(second.observations[0].state, State::Listed);
    // The second sweep asked the canaries again (they are the list's health
    // check) but not the cached target.
    assert_eq!(dns.queries().len(), after_first + 2, "{:#?}", dns.queries());
    assert_eq!(second.lists[0].counters.cache_hits, 1);
    assert_eq!(second.lists[0].counters.queries as usize, dns.queries().len());
}

#[test]
fn a_resolver_that_does_not_answer_degrades_everything() {
    // A UDP socket that takes queries and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg =
        config(silent.local_addr().unwrap(), vec![ip_list("bl", "bl.test", 100.0)], &["192.0.2.1", "192.0.2.2"]);
    cfg.timeout = Duration::from_millis(200);
    let mut poller = Poller::new(cfg).unwrap();
    let started = Instant::now();
    let report = runtime().block_on(poller.sweep());
    assert!(started.elapsed() < Duration::from_secs(10), "queries are bounded in time");
    assert_eq!(report.observations.len(), 2);
    for o in &report.observations {
        assert_eq!(o.state, State::Degraded, "{o:?}");
        assert_eq!(o.degraded.as_deref(), Some("canary_failed"));
    }
    let status = &report.lists[0];
    assert!(!status.canaries_ok);
    let problem = status.canary_problem.as_deref().unwrap();
    assert!(problem.contains("no answer in time"), "{problem}");
    assert_eq!(status.degraded_cycles, 1);
}

#[test]
fn failed_canaries_degrade_the_whole_list_without_querying_its_targets() {
    // `bl.test` has lost its test point; `rw.test` is behind a resolver that
    // answers every name with an address of its own.
    let Some(dns) =
        server("canary", "127.0.0.2 2.2.0.192.bl.test\n", &["--local=/bl.test/", "--address=/rw.test/198.51.100.1"])
    else {
        return;
    };
    let cfg = config(
        dns.addr(),
        vec![ip_list("bl", "bl.test", 100.0), ip_list("rw", "rw.test", 100.0)],
        &["192.0.2.1", "192.0.2.2"],
    );
    let mut poller = Poller::new(cfg).unwrap();
    let rt = runtime();
    let report = rt.block_on(poller.sweep());
    assert_eq!(report.observations.len(), 4);
    for o in &report.observations {
        assert_eq!(o.state, State::Degraded, "{o:?}");
        assert_eq!(o.degraded.as_deref(), Some("canary_failed"), "{o:?}");
    }
    let bl = &report.lists[0];
    assert!(bl.canary_problem.as_deref().unwrap().contains("127.0.0.2 must be listed but is clean"), "{bl:?}");
    let rw = &report.lists[1];
    assert!(rw.canary_problem.as_deref().unwrap().contains("outside 127.0.0.0/8"), "{rw:?}");
    // Only the first canary of each list was asked: the targets were not.
    assert_eq!(dns.queries().len(), 2, "{:#?}", dns.queries());
    let again = rt.block_on(poller.sweep());
    assert_eq!(again.lists[0].degraded_cycles, 2);
    assert_eq!((again.lists[0].counters.canary_failures, again.lists[1].counters.canary_failures), (2, 2));
    // Once the test point is back, the list is healthy again.
    dns.set_hosts(&format!("{CANARIES}127.0.0.2 2.2.0.192.bl.test\n"));
    let healed = rt.block_on(poller.sweep());
    assert!(healed.lists[0].canaries_ok);
    assert_eq!(healed.lists[0].degraded_cycles, 0);
    assert_eq!(by_target(&healed.observations, "bl", "192.0.2.2").state, State::Listed);
}

#[test]
fn the_rate_budget_holds_at_the_server() {
    let Some(dns) = server("rate", CANARIES, &["--local=/bl.test/"]) else {
        return;
    };
    let targets: Vec<String> = (1..=16).map(|i| format!("192.0.2.{i}")).collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let rate = 4.0;
    let mut poller = Poller::new(config(dns.addr(), vec![ip_list("bl", "bl.test", rate)], &targets)).unwrap();
    let started = Instant::now();
    let report = runtime().block_on(poller.sweep());
    let elapsed = started.elapsed();
    assert_eq!(report.observations.len(), 16);
    let seen = dns.queries();
    assert_eq!(seen.len(), 18, "16 targets and 2 canaries");
    // The bucket starts full (a burst of `rate`); the rest come at `rate` a
    // second, so 18 queries need at least (18 - 4) / 4 = 3.5 s.
    assert!(elapsed >= Duration::from_millis(3400), "{elapsed:?}");
    // And in no second of the server's log did more than burst + rate arrive.
    let mut per_second: BTreeMap<String, usize> = BTreeMap::new();
    for line in dns.log().lines().filter(|l| l.contains(": query[")) {
        *per_second.entry(line[..15].to_owned()).or_default() += 1;
    }
    assert!(per_second.values().all(|n| *n <= 8), "{per_second:?}");
    // The 14 queries past the burst were held back by the rate budget (one
    // may find a token refilled while the one before it was answered).
    assert!((13..=14).contains(&report.lists[0].counters.rate_waits), "{:?}", report.lists[0].counters);
}

#[test]
fn the_daily_budget_stops_queries_and_degrades_the_rest() {
    let Some(dns) = server("daily", CANARIES, &["--local=/bl.test/"]) else {
        return;
    };
    let targets: Vec<String> = (1..=12).map(|i| format!("192.0.2.{i}")).collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let mut list = ip_list("bl", "bl.test", 1000.0);
    list.max_queries_per_day = Some(10);
    let mut poller = Poller::new(config(dns.addr(), vec![list], &targets)).unwrap();
    let report = runtime().block_on(poller.sweep());
    assert_eq!(dns.queries().len(), 10);
    let states: Vec<(State, Option<&str>)> =
        report.observations.iter().map(|o| (o.state, o.degraded.as_deref())).collect();
    assert_eq!(states.iter().filter(|s| s.0 == State::Clean).count(), 8);
    assert_eq!(states.iter().filter(|s| s.1 == Some("budget_exhausted")).count(), 4);
    assert_eq!(report.lists[0].budget_used, 1.0);
    assert_eq!(report.lists[0].counters.daily_refused, 4);
}

#[test]
fn a_listing_that_appears_and_disappears_is_one_episode() {
    let Some(dns) = server("episode", CANARIES, &["--local=/bl.test/", "--txt-record=7.2.0.192.bl.test,spam trap hit"])
    else {
        return;
    };
    let mut poller = Poller::new(config(dns.addr(), vec![ip_list("bl", "bl.test", 100.0)], &["192.0.2.7"])).unwrap();
    let rt = runtime();
    let mut episodes = Episodes::default();
    let mut written = Vec::new();
    let mut sweep = |poller: &mut Poller| {
        let report = rt.block_on(poller.sweep());
        let obs = report.observations[0].clone();
        written.extend(episodes.observe(&obs));
        obs
    };
    assert_eq!(sweep(&mut poller).state, State::Clean);
    dns.set_hosts(&format!("{CANARIES}127.0.0.2 7.2.0.192.bl.test\n"));
    let first = sweep(&mut poller);
    assert_eq!(first.state, State::Listed);
    std::thread::sleep(Duration::from_millis(20));
    let last = sweep(&mut poller);
    assert_eq!(last.state, State::Listed);
    dns.set_hosts(CANARIES);
    let gone = sweep(&mut poller);
    assert_eq!(gone.state, State::Clean);

    // Three writes of one episode (opened, extended, ended), one identity.
    assert_eq!(written.len(), 3);
    assert!(written
        .iter()
        .all(|e| (e.list.as_str(), e.target.as_str(), e.first_seen_ms) == ("bl", "192.0.2.7", first.time_ms)));
    let ended = written.last().unwrap();
    assert_eq!(ended.last_seen_ms, last.time_ms);
    assert_eq!(ended.ended_ms, Some(gone.time_ms));
    assert_eq!(ended.first_txt.as_deref(), Some("spam trap hit"));
    assert!(ended.duration_ms() >= 20);
    assert!(episodes.is_empty());
}

#[test]
fn a_changed_target_is_rechecked_past_the_cache() {
    // Listings are answered with a TTL of 10 minutes, so the cache would
    // keep a listing that ends in the meantime.
    let Some(dns) = server("recheck", CANARIES, &["--local=/bl.test/", "--local-ttl=600"]) else {
        return;
    };
    let mut poller =
        Poller::new(config(dns.addr(), vec![ip_list("bl", "bl.test", 100.0)], &["192.0.2.7", "192.0.2.8"])).unwrap();
    let rt = runtime();
    let first = rt.block_on(poller.sweep());
    assert!(first.observations.iter().all(|o| o.state == State::Clean));
    assert!(rt.block_on(poller.recheck_due()).observations.is_empty(), "nothing changed");
    dns.set_hosts(&format!("{CANARIES}127.0.0.2 7.2.0.192.bl.test\n"));
    let second = rt.block_on(poller.sweep());
    assert_eq!(by_target(&second.observations, "bl", "192.0.2.7").state, State::Listed);
    // The listing ends before its TTL runs out; the re-check of the target
    // that changed asks the server again, and only about that target.
    dns.set_hosts(CANARIES);
    let before = dns.queries().len();
    let recheck = rt.block_on(poller.recheck_due());
    assert_eq!(recheck.observations.len(), 1);
    let o = &recheck.observations[0];
    assert_eq!((o.target.as_str(), o.state, o.cached), ("192.0.2.7", State::Clean, false));
    assert_eq!(dns.queries()[before..], ["A] 7.2.0.192.bl.test from 127.0.0.1".to_owned()]);
    // It changed again (listed -> clean), so it is re-checked once more;
    // then it is stable and nothing is due.
    assert_eq!(rt.block_on(poller.recheck_due()).observations.len(), 1);
    assert!(rt.block_on(poller.recheck_due()).observations.is_empty());
}

#[test]
fn the_poller_sweeps_on_its_interval_until_shut_down() {
    let Some(dns) = server("run", CANARIES, &["--local=/bl.test/"]) else {
        return;
    };
    let mut cfg = config(dns.addr(), vec![ip_list("bl", "bl.test", 100.0)], &["192.0.2.1"]);
    cfg.interval = Duration::from_millis(100);
    cfg.jitter = 0.2;
    let poller = Poller::new(cfg).unwrap();
    runtime().block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (reports, mut received) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(poller.run(
            move |report| {
                let _ = reports.send(report);
            },
            stopped,
        ));
        for _ in 0..3 {
            let report = received.recv().await.expect("a report");
            assert_eq!(report.observations[0].state, State::Clean);
        }
        stop.send(true).expect("poller listening");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the poller stops when told")
            .expect("the poller did not panic");
    });
    assert!(dns.queries().len() >= 9, "three sweeps of three queries");
}

#[test]
fn a_standby_poller_queries_nothing_and_sweeps_soon_after_it_becomes_active() {
    let Some(dns) = server("standby", CANARIES, &["--local=/bl.test/"]) else {
        return;
    };
    let mut cfg = config(dns.addr(), vec![ip_list("bl", "bl.test", 100.0)], &["192.0.2.1"]);
    cfg.interval = Duration::from_secs(3600);
    let poller = Poller::new(cfg).unwrap();
    runtime().block_on(async {
        let active = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (reports, mut received) = tokio::sync::mpsc::unbounded_channel();
        let flag = active.clone();
        let task = tokio::spawn(poller.run_while(
            move || flag.load(std::sync::atomic::Ordering::SeqCst),
            move |report| {
                let _ = reports.send(report);
            },
            stopped,
        ));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(received.try_recv().is_err(), "a standby poller emits nothing");
        assert!(dns.queries().is_empty(), "and asks nothing: {:?}", dns.queries());
        // Taking over: the sweep comes within the standby check (2 s), not
        // after the hour-long interval.
        active.store(true, std::sync::atomic::Ordering::SeqCst);
        let report = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("a sweep soon after becoming active")
            .expect("a report");
        assert_eq!(report.observations.len(), 1);
        stop.send(true).expect("poller listening");
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops").expect("no panic");
    });
    assert_eq!(dns.queries().len(), 3, "two canaries and the target, once");
}

/// `targets from metric ip_block_bounces key sending_ip within 1d` of the
/// shipped pipeline, against a real SQLite store and dnsmasq: the sending
/// IPs with rows inside the last day are asked about (besides the static
/// target), those only seen before it are not, nor a key that is no address.
#[test]
fn targets_taken_from_the_stream_are_exactly_the_recent_sending_ips() {
    use engine::aggregate::AggState;
    use engine::{KeyVal, Row};
    use reputation::stream_targets::{refresher, SharedStore};
    use std::sync::{Arc, Mutex};
    use store::{Store, WriteBatch};

    let hosts = format!("{CANARIES}127.0.0.2 7.100.51.198.bl.test\n");
    let Some(dns) = server("stream-targets", &hosts, &["--local=/bl.test/", "--local-ttl=600"]) else {
        return;
    };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/reputation.stream").to_string();
    let compiled = dsl::compile(&[path], &|p: &str| fs::read_to_string(p).map_err(|e| e.to_string()));
    let plan = compiled.plan.clone().unwrap_or_else(|| panic!("{}", compiled.render_diagnostics()));
    let dnsbl = plan.sources.iter().find_map(|s| s.dnsbl.clone()).expect("a dnsbl source");
    assert_eq!(dnsbl.targets_from.len(), 1, "the shipped pipeline takes targets from the stream");
    let metric = plan.metrics.iter().position(|m| m.name == "ip_block_bounces").expect("ip_block_bounces");

    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    let hour = 3_600_000;
    let window = |ago: i64| (now - ago) / 300_000 * 300_000;
    let row = |ago: i64, ip: &str| Row {
        metric: Arc::clone(&plan.metrics[metric]),
        tier: 0,
        window_start: window(ago),
        partition: 0,
        keys: vec![KeyVal::Str(ip.into())].into(),
        states: plan.metrics[metric].aggregates.iter().map(AggState::new).collect(),
        included_through: None,
    };
    let rows = [
        row(hour, "198.51.100.7"),
        row(23 * hour, "198.51.100.8"),
        row(23 * hour, "198.51.100.7"),
        row(25 * hour, "198.51.100.9"),
        row(2 * hour, "mta-unknown"),
        row(2 * hour, "2001:db8::25"),
    ];
    let mut sqlite = store::sqlite::SqliteStore::open(":memory:").expect("sqlite");
    sqlite.setup(&plan).expect("tables");
    sqlite.write(&WriteBatch { topic: "mta.events", rows: &rows, ..Default::default() }).expect("write rows");
    let shared: SharedStore = Arc::new(Mutex::new(Box::new(sqlite)));

    let refresh = refresher(&plan, "reputation", &dnsbl.targets_from, vec![ListKind::Ip], shared.clone());
    let mut poller = Poller::new(config(dns.addr(), vec![ip_list("bl", "bl.test", 100.0)], &["192.0.2.1"]))
        .unwrap()
        .refresh_targets_with(refresh);
    let rt = runtime();
    let report = rt.block_on(poller.sweep());

    let mut asked: Vec<&str> = report.observations.iter().map(|o| o.target.as_str()).collect();
    asked.sort_unstable();
    assert_eq!(asked, ["192.0.2.1", "198.51.100.7", "198.51.100.8", "2001:db8::25"]);
    let mut seen: Vec<String> = dns
        .queries()
        .into_iter()
        .filter_map(|q| q.strip_prefix("A] ").map(|n| n.split(' ').next().unwrap_or("").to_owned()))
        .filter(|n| n.ends_with(".bl.test") && !n.starts_with("2.0.0.127.") && !n.starts_with("1.0.0.127."))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    let ipv6 = Target::parse("2001:db8::25").unwrap().query_name("bl.test");
    let mut expected =
        vec!["1.2.0.192.bl.test".to_owned(), "7.100.51.198.bl.test".into(), "8.100.51.198.bl.test".into(), ipv6];
    expected.sort_unstable();
    assert_eq!(seen, expected, "the server saw exactly the recent IPs and the static one");
    assert_eq!(by_target(&report.observations, "bl", "198.51.100.7").state, State::Listed);

    // A new sending IP joins at the next sweep (ahead of 198.51.100.7 in
    // the sorted targets); 198.51.100.7 keeps its cached listing.
    let new_row = [row(0, "198.51.100.10")];
    let batch = WriteBatch { topic: "mta.events", rows: &new_row, ..Default::default() };
    shared.lock().unwrap().write(&batch).expect("write a new row");
    let before = dns.queries().len();
    let second = rt.block_on(poller.sweep());
    assert_eq!(second.observations.len(), 5, "{:#?}", second.observations);
    let kept = by_target(&second.observations, "bl", "198.51.100.7");
    assert!(kept.cached && kept.state == State::Listed, "{kept:#?}");
    let asked: Vec<String> = dns.queries()[before..].to_vec();
    assert!(asked.iter().any(|q| q.contains("10.100.51.198.bl.test")), "{asked:#?}");
    assert!(!asked.iter().any(|q| q.contains("7.100.51.198.bl.test")), "{asked:#?}");
}
