//! The poller: asks a configured recursive resolver about every target on
//! every list, within each list's budgets, and turns the answers into
//! [`Observation`]s.
//!
//! A sweep first asks each list about its RFC 5782 canaries; a list whose
//! canaries fail is degraded as a whole for that sweep (its targets are not
//! queried, so a broken list does not spend budget). Answers are cached to
//! their TTL; a target whose state changed is asked again after
//! `recheck_after`, past the cache. Every query is bounded by the
//! configured timeout, and a sweep by the lists' rate budgets.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::watch;

use crate::budget::{DailyBudget, TokenBucket};
use crate::cache::TtlCache;
use crate::classify::{classify, Answer, Degraded, State, Verdict};
use crate::observation::Observation;
use crate::schedule::{slot_offset, Rechecks};
use crate::target::{ListKind, Target};
use crate::{Error, Result};

/// How often a poller that is not active asks again whether it is.
const STANDBY_CHECK: Duration = Duration::from_secs(2);

/// How long a poller whose sweep could not be delivered (e.g. Kafka is
/// down) waits before sweeping that slot again, so that an outage does not
/// turn into a storm of canary queries.
const UNDELIVERED_RETRY: Duration = Duration::from_secs(30);

/// A TXT answer is cut to this many bytes.
const MAX_TXT_BYTES: usize = 512;

/// One DNSBL.
#[derive(Debug, Clone, PartialEq)]
pub struct ListConfig {
    /// The list's name in the pipeline, e.g. `spamhaus_zen`.
    pub name: String,
    /// The zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    pub kind: ListKind,
    /// Names of listing codes: `127.0.0.2` → `SBL`.
    pub meanings: BTreeMap<Ipv4Addr, String>,
    /// How much a listing here matters (alert severity).
    pub weight: f64,
    /// A data-query key, put in front of the zone (`KEY.zen.dq.example`).
    pub query_key: Option<String>,
    /// Queries a second at most (a token bucket with a one-second burst).
    pub max_qps: f64,
    /// Queries a UTC day at most; past it, targets are degraded, not queried.
    pub max_queries_per_day: Option<u64>,
}

impl ListConfig {
    /// The zone actually queried: with the query key in front, if any.
    pub fn query_zone(&self) -> String {
        match &self.query_key {
            Some(key) => format!("{key}.{}", self.zone.trim_end_matches('.')),
            None => self.zone.trim_end_matches('.').to_owned(),
        }
    }

    /// RFC 5782 test points: one that must be listed, one that must not.
    pub fn canaries(&self) -> (Target, Target) {
        match self.kind {
            ListKind::Ip => (
                Target::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
                Target::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))),
            ),
            ListKind::Domain => (Target::Domain("test".into()), Target::Domain("invalid".into())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// The recursive resolver to ask (your own; public resolvers are refused
    /// by most lists).
    pub resolver: SocketAddr,
    /// How long one query may take.
    pub timeout: Duration,
    /// The length of a sweep slot: one sweep each (see [`Poller::run_into`]).
    pub interval: Duration,
    /// The fraction (0 to 0.5) of a slot within whose start its sweep begins.
    pub jitter: f64,
    /// How soon a target whose state changed is asked again.
    pub recheck_after: Duration,
    /// Answers kept per list at most.
    pub cache_capacity: usize,
    /// An answer is kept at most this long, whatever its TTL.
    pub max_cache_ttl: Duration,
    pub lists: Vec<ListConfig>,
    pub targets: Vec<Target>,
    /// Seeds the jitter.
    pub seed: u64,
}

impl PollerConfig {
    pub fn validate(&self) -> Result<()> {
        for list in &self.lists {
            if !(list.max_qps.is_finite() && list.max_qps > 0.0) {
                return Err(Error::Config { list: list.name.clone(), why: "max_qps must be a positive number" });
            }
            if list.zone.trim_end_matches('.').is_empty() {
                return Err(Error::Config { list: list.name.clone(), why: "the zone is empty" });
            }
        }
        Ok(())
    }
}

/// A list's health and budget after a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListStatus {
    pub list: String,
    pub zone: String,
    /// Whether the canaries answered as they must in the latest sweep.
    pub canaries_ok: bool,
    /// Why not, if they did not.
    pub canary_problem: Option<String>,
    /// Sweeps in a row whose canaries failed.
    pub degraded_cycles: u32,
    /// Queries sent today (UTC).
    pub queries_today: u64,
    /// The share of the daily allowance used (0 when unlimited).
    pub budget_used: f64,
    /// What the poller did on this list since it started.
    pub counters: ListCounters,
}

/// Counts of what a poller did on one list since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ListCounters {
    /// Queries sent (`A` and `TXT`, canaries included).
    pub queries: u64,
    /// Targets answered from the cache.
    pub cache_hits: u64,
    /// Targets' `A` answers (not from the cache), by state.
    pub listed: u64,
    pub clean: u64,
    pub degraded: u64,
    /// Queries held back by the rate budget (sent once it allowed them).
    pub rate_waits: u64,
    /// Queries not sent: the day's allowance was used up.
    pub daily_refused: u64,
    /// Sweeps whose canaries failed.
    pub canary_failures: u64,
}

/// What one sweep or round of re-checks produced.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub observations: Vec<Observation>,
    pub lists: Vec<ListStatus>,
    /// Of a sweep: how long it took, the targets it polled and those
    /// dropped for the target limit.
    pub sweep: Option<SweepStats>,
}

/// How a sweep went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub took: Duration,
    pub targets: usize,
    pub dropped_for_limit: usize,
}

struct ListState {
    cfg: ListConfig,
    query_zone: String,
    bucket: TokenBucket,
    daily: DailyBudget,
    cache: TtlCache<usize, (Verdict, Option<String>)>,
    /// The latest state of each target, by index: what a change is measured against.
    last: HashMap<usize, State>,
    canary_problem: Option<String>,
    degraded_cycles: u32,
    counters: ListCounters,
}

pub struct Poller {
    resolver: TokioResolver,
    resolver_name: String,
    timeout: Duration,
    interval: Duration,
    jitter: f64,
    recheck_after: Duration,
    lists: Vec<ListState>,
    targets: Vec<Target>,
    /// The targets of the configuration, before any [`Poller::refresh_targets_with`].
    fixed: Vec<Target>,
    refresh: Option<RefreshTargets>,
    rechecks: Rechecks,
    rng: SmallRng,
}

/// Given the configured targets, the targets of the next sweep and how
/// many were dropped for the target limit.
pub type RefreshTargets = Box<dyn FnMut(&[Target]) -> (Vec<Target>, usize) + Send>;

impl Poller {
    pub fn new(config: PollerConfig) -> Result<Self> {
        config.validate()?;
        let mut udp = ConnectionConfig::udp();
        udp.port = config.resolver.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = config.resolver.port();
        let server = NameServerConfig::new(config.resolver.ip(), true, vec![udp, tcp]);
        let mut opts = ResolverOpts::default();
        opts.timeout = config.timeout;
        // One try: a timeout is an answer (degraded), and every query the
        // list sees is one the budget counted.
        opts.attempts = 0;
        // Our own cache decides what is asked again; the resolver's would
        // hide queries from the budget's count.
        opts.cache_size = 0;
        opts.num_concurrent_reqs = 1;
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .map_err(|source| Error::Resolver { resolver: config.resolver, source })?;
        let now = Instant::now();
        let lists = config
            .lists
            .into_iter()
            .map(|cfg| ListState {
                query_zone: cfg.query_zone(),
                bucket: TokenBucket::new(cfg.max_qps, cfg.max_qps, now),
                daily: DailyBudget::new(cfg.max_queries_per_day),
                cache: TtlCache::new(config.cache_capacity, config.max_cache_ttl),
                last: HashMap::new(),
                canary_problem: None,
                degraded_cycles: 0,
                counters: ListCounters::default(),
                cfg,
            })
            .collect();
        Ok(Poller {
            resolver,
            resolver_name: config.resolver.to_string(),
            timeout: config.timeout,
            interval: config.interval,
            jitter: config.jitter,
            recheck_after: config.recheck_after,
            lists,
            fixed: config.targets.clone(),
            targets: config.targets,
            refresh: None,
            rechecks: Rechecks::default(),
            rng: SmallRng::seed_from_u64(config.seed),
        })
    }

    /// Before each sweep, asks `refresh` for the targets (given the
    /// configured ones): `targets from metric` takes them from the store.
    #[must_use]
    pub fn refresh_targets_with(mut self, refresh: RefreshTargets) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// The names of the lists, in the pipeline's order.
    pub fn list_names(&self) -> Vec<String> {
        self.lists.iter().map(|l| l.cfg.name.clone()).collect()
    }

    /// The targets of the last sweep (or the configured ones).
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Polls `targets` from now on. A target kept keeps its state (cached
    /// answer, last state, pending re-check); a target gone loses it.
    pub fn set_targets(&mut self, targets: Vec<Target>) {
        if targets == self.targets {
            return;
        }
        let new_index: HashMap<&Target, usize> = targets.iter().enumerate().map(|(i, t)| (t, i)).collect();
        let moved: Vec<Option<usize>> = self.targets.iter().map(|t| new_index.get(t).copied()).collect();
        let rename = |old: usize| moved.get(old).copied().flatten();
        for list in &mut self.lists {
            list.cache.rekey(|old| rename(*old));
            let last = std::mem::take(&mut list.last);
            list.last = last.into_iter().filter_map(|(old, state)| Some((rename(old)?, state))).collect();
        }
        self.rechecks.rekey(rename);
        self.targets = targets;
    }

    /// One sweep: canaries, then every target on every list (lists in
    /// parallel, each within its own budget).
    pub async fn sweep(&mut self) -> Report {
        self.sweep_lists(None).await
    }

    /// [`Poller::sweep`] of the lists named in `only` (all with `None`).
    pub async fn sweep_lists(&mut self, only: Option<&[String]>) -> Report {
        let start = Instant::now();
        let mut dropped_for_limit = 0;
        if let Some(refresh) = self.refresh.as_mut() {
            let (targets, dropped) = refresh(&self.fixed);
            dropped_for_limit = dropped;
            self.set_targets(targets);
        }
        let picks = self
            .lists
            .iter()
            .map(|list| {
                only.is_none_or(|names| names.contains(&list.cfg.name)).then(|| {
                    self.targets.iter().enumerate().filter(|(_, t)| t.kind() == list.cfg.kind).map(|(i, _)| i).collect()
                })
            })
            .collect();
        let mut report = self.round(picks, true, false).await;
        report.sweep = Some(SweepStats { took: start.elapsed(), targets: self.targets.len(), dropped_for_limit });
        report
    }

    /// Asks again, past the cache, the targets whose re-check is due.
    pub async fn recheck_due(&mut self) -> Report {
        let due = self.rechecks.take_due(Instant::now());
        let picks = (0..self.lists.len())
            .map(|li| Some(due.iter().filter(|(l, _)| *l == li).map(|(_, t)| *t).collect()))
            .collect();
        self.round(picks, false, true).await
    }

    /// Polls on each list the targets (by index) of its pick, skipping a
    /// list without one; lists in parallel, each within its own budget. With
    /// `canaries`, a list's canaries are asked first and, if they fail, its
    /// targets are degraded without a query. With `fresh`, past the cache.
    async fn round(&mut self, picks: Vec<Option<Vec<usize>>>, canaries: bool, fresh: bool) -> Report {
        let ctx = Ctx { resolver: &self.resolver, resolver_name: &self.resolver_name, timeout: self.timeout };
        let (ctx, targets) = (&ctx, &self.targets);
        let results = join_all(self.lists.iter_mut().zip(picks).map(|(list, pick)| async move {
            let (mut out, mut changed) = (Vec::new(), Vec::new());
            let Some(pick) = pick else {
                return (out, changed);
            };
            let canaries_ok = !canaries || list.check_canaries(ctx).await;
            for index in pick {
                let Some(target) = targets.get(index) else {
                    continue;
                };
                let obs = if canaries_ok {
                    list.poll(ctx, index, target, fresh).await
                } else {
                    list.canary_degraded(ctx, target)
                };
                if list.record(index, obs.state) {
                    changed.push(index);
                }
                out.push(obs);
            }
            (out, changed)
        }))
        .await;
        self.collect(results)
    }

    fn collect(&mut self, results: Vec<(Vec<Observation>, Vec<usize>)>) -> Report {
        let at = Instant::now() + self.recheck_after;
        let mut observations = Vec::new();
        for (li, (obs, changed)) in results.into_iter().enumerate() {
            observations.extend(obs);
            for index in changed {
                self.rechecks.schedule(at, li, index);
            }
        }
        Report { observations, lists: self.status(), sweep: None }
    }

    /// Each list's health and budget now.
    pub fn status(&mut self) -> Vec<ListStatus> {
        let now = now_ms();
        self.lists
            .iter_mut()
            .map(|l| ListStatus {
                list: l.cfg.name.clone(),
                zone: l.cfg.zone.clone(),
                canaries_ok: l.canary_problem.is_none(),
                canary_problem: l.canary_problem.clone(),
                degraded_cycles: l.degraded_cycles,
                queries_today: l.daily.used(now),
                budget_used: l.daily.used_ratio(now),
                counters: l.counters,
            })
            .collect()
    }

    /// Sweeps once per slot and runs re-checks when due, handing each
    /// report to `emit`, until `shutdown` turns true or its sender is
    /// dropped. A sweep in flight when shutdown comes is dropped whole:
    /// nothing half-done is emitted.
    pub async fn run<F>(self, emit: F, shutdown: watch::Receiver<bool>)
    where
        F: FnMut(Report),
    {
        self.run_while(|| true, emit, shutdown).await
    }

    /// [`Poller::run`], sweeping only while `active` says so when a sweep or
    /// a re-check is due. Skipped sweeps query nothing and emit nothing.
    pub async fn run_while<A, F>(self, active: A, emit: F, shutdown: watch::Receiver<bool>)
    where
        A: FnMut() -> bool,
        F: FnMut(Report),
    {
        self.run_into(Gate { active, emit }, shutdown).await
    }

    /// The poller's loop. Time is cut into slots of `interval` (slot `n`
    /// runs from `n × interval` since the epoch); each slot gets one sweep,
    /// started within the first `jitter` of it (at once for a poller that
    /// takes over in the middle of a slot). Before a sweep `outlet` says
    /// which lists of the slot are this poller's to sweep (in `streamd`:
    /// none unless this instance polls, and not those some poller already
    /// delivered for that slot); a sweep it could not deliver is done
    /// again after [`UNDELIVERED_RETRY`]. A standby poller asks again every
    /// [`STANDBY_CHECK`].
    pub async fn run_into<O: Outlet>(mut self, mut outlet: O, mut shutdown: watch::Receiver<bool>) {
        let mut done: Option<i64> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let slot = slot_of(now_ms(), self.interval);
            let todo =
                if done.is_none_or(|d| slot > d) { outlet.may_sweep(slot, &self.list_names()) } else { Vec::new() };
            let mut undelivered = false;
            if !todo.is_empty() {
                tokio::select! {
                    report = self.sweep_lists(Some(&todo)) => {
                        if outlet.deliver(Some((slot, &todo)), report) {
                            done = Some(slot);
                        } else {
                            undelivered = true;
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
            let next_slot = slot_start_ms(slot_of(now_ms(), self.interval) + 1, self.interval)
                + i64::try_from(slot_offset(self.interval, self.jitter, &mut self.rng).as_millis()).unwrap_or(0);
            let until_next_slot = Duration::from_millis(u64::try_from(next_slot - now_ms()).unwrap_or(0));
            // Within a slot already swept a poller waits for the next one;
            // after a sweep it could not deliver, a while; a standby looks
            // again soon, so that it takes over within seconds.
            let current = slot_of(now_ms(), self.interval);
            let pause = if done.is_some_and(|d| d >= current) {
                until_next_slot
            } else if undelivered {
                until_next_slot.min(UNDELIVERED_RETRY)
            } else {
                until_next_slot.min(STANDBY_CHECK)
            };
            let next_sweep = Instant::now() + pause;
            loop {
                let wake = self.rechecks.next().map_or(next_sweep, |at| at.min(next_sweep));
                tokio::select! {
                    _ = tokio::time::sleep_until(wake.into()) => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return;
                        }
                        continue;
                    }
                }
                if self.rechecks.next().is_some_and(|at| at <= Instant::now()) {
                    if outlet.may_recheck() {
                        tokio::select! {
                            report = self.recheck_due() => {
                                outlet.deliver(None, report);
                            }
                            _ = shutdown.changed() => return,
                        }
                    } else {
                        // Not ours to poll now: whoever is will sweep.
                        self.rechecks.take_due(Instant::now());
                    }
                }
                if Instant::now() >= next_sweep {
                    break;
                }
            }
        }
    }
}

/// Where a running poller's reports go, and whether it may poll now.
pub trait Outlet {
    /// The lists (of `lists`, the poller's) whose sweep of `slot` is this
    /// poller's to do now: none when the slot is not its own.
    fn may_sweep(&mut self, slot: i64, lists: &[String]) -> Vec<String>;
    /// Whether re-checks that came due are this poller's to do now.
    fn may_recheck(&mut self) -> bool;
    /// Hands a report on: of the sweep of some lists in a slot, or (`None`)
    /// of re-checks. False when it could not: that sweep is done again.
    fn deliver(&mut self, sweep: Option<(i64, &[String])>, report: Report) -> bool;
}

/// An [`Outlet`] of two closures: whether to poll, and where reports go.
struct Gate<A, F> {
    active: A,
    emit: F,
}

impl<A: FnMut() -> bool, F: FnMut(Report)> Outlet for Gate<A, F> {
    fn may_sweep(&mut self, _slot: i64, lists: &[String]) -> Vec<String> {
        if (self.active)() {
            lists.to_vec()
        } else {
            Vec::new()
        }
    }

    fn may_recheck(&mut self) -> bool {
        (self.active)()
    }

    fn deliver(&mut self, _sweep: Option<(i64, &[String])>, report: Report) -> bool {
        (self.emit)(report);
        true
    }
}

/// The sweep slot holding `time_ms`: slot `n` runs from `n × interval`
/// since the epoch.
pub fn slot_of(time_ms: i64, interval: Duration) -> i64 {
    time_ms.div_euclid(interval_ms(interval))
}

/// When slot `slot` starts, ms since the epoch.
pub fn slot_start_ms(slot: i64, interval: Duration) -> i64 {
    slot.saturating_mul(interval_ms(interval))
}

fn interval_ms(interval: Duration) -> i64 {
    i64::try_from(interval.as_millis()).unwrap_or(i64::MAX).max(1)
}

struct Ctx<'a> {
    resolver: &'a TokioResolver,
    resolver_name: &'a str,
    timeout: Duration,
}

impl ListState {
    /// Records a target's state; true when it changed from a known one.
    fn record(&mut self, index: usize, state: State) -> bool {
        matches!(self.last.insert(index, state), Some(before) if before != state)
    }

    /// Waits for the rate budget and counts the query in the daily one;
    /// false when the day's allowance is used up.
    async fn spend(&mut self) -> bool {
        if !self.daily.try_spend(now_ms()) {
            self.counters.daily_refused += 1;
            return false;
        }
        let mut waited = false;
        loop {
            let wait = self.bucket.wait(Instant::now());
            if wait.is_zero() && self.bucket.try_take(Instant::now()) {
                break;
            }
            waited = true;
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
        self.counters.rate_waits += u64::from(waited);
        self.counters.queries += 1;
        true
    }

    async fn check_canaries(&mut self, ctx: &Ctx<'_>) -> bool {
        let (listed, clean) = self.cfg.canaries();
        let mut problem = None;
        for (target, must_be) in [(listed, State::Listed), (clean, State::Clean)] {
            if !self.spend().await {
                problem = Some("daily query budget used up".to_owned());
                break;
            }
            let name = target.query_name(&self.query_zone);
            let (answer, _) = lookup_a(ctx, &name).await;
            let verdict = classify(&answer, &self.cfg.meanings);
            if verdict.state != must_be {
                let detail = match &verdict.degraded {
                    Some(_) => verdict.meaning.clone().unwrap_or_default(),
                    None => verdict.state.to_string(),
                };
                problem = Some(format!("canary {target} must be {must_be} but is {} ({detail})", verdict.state));
                break;
            }
        }
        if problem.is_some() {
            self.counters.canary_failures += 1;
            self.degraded_cycles += 1;
        } else {
            self.degraded_cycles = 0;
        }
        self.canary_problem = problem;
        self.canary_problem.is_none()
    }

    fn canary_degraded(&self, ctx: &Ctx<'_>, target: &Target) -> Observation {
        let verdict =
            Verdict::degraded(Degraded::CanaryFailed, Vec::new(), self.canary_problem.clone().unwrap_or_default());
        self.observation(ctx, target, &verdict, None, 0, false)
    }

    async fn poll(&mut self, ctx: &Ctx<'_>, index: usize, target: &Target, force: bool) -> Observation {
        if !force {
            if let Some((verdict, txt)) = self.cache.get(&index, Instant::now()) {
                self.counters.cache_hits += 1;
                return self.observation(ctx, target, &verdict, txt, 0, true);
            }
        }
        if !self.spend().await {
            let verdict = Verdict::degraded(Degraded::BudgetExhausted, Vec::new(), "daily query budget used up");
            return self.observation(ctx, target, &verdict, None, 0, false);
        }
        let name = target.query_name(&self.query_zone);
        let (answer, latency) = lookup_a(ctx, &name).await;
        let verdict = classify(&answer, &self.cfg.meanings);
        *match verdict.state {
            State::Listed => &mut self.counters.listed,
            State::Clean => &mut self.counters.clean,
            State::Degraded => &mut self.counters.degraded,
        } += 1;
        let txt =
            if verdict.state == State::Listed && self.spend().await { lookup_txt(ctx, &name).await } else { None };
        if let Some(ttl) = verdict.ttl {
            self.cache.insert(
                index,
                (verdict.clone(), txt.clone()),
                Duration::from_secs(u64::from(ttl)),
                Instant::now(),
            );
        } else {
            self.cache.remove(&index);
        }
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.observation(ctx, target, &verdict, txt, latency_ms, false)
    }

    fn observation(
        &self,
        ctx: &Ctx<'_>,
        target: &Target,
        verdict: &Verdict,
        txt: Option<String>,
        latency_ms: u64,
        cached: bool,
    ) -> Observation {
        let code = (!verdict.codes.is_empty())
            .then(|| verdict.codes.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
        Observation {
            time_ms: now_ms(),
            list: self.cfg.name.clone(),
            zone: self.cfg.zone.clone(),
            kind: self.cfg.kind.to_string(),
            target: target.to_string(),
            state: verdict.state,
            code,
            meaning: verdict.meaning.clone(),
            degraded: verdict.degraded.as_ref().map(|d| d.as_str().to_owned()),
            txt,
            weight: self.cfg.weight,
            budget_used: self.daily.used_ratio(now_ms()),
            resolver: ctx.resolver_name.to_owned(),
            latency_ms,
            cached,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The `A` answer for `name`, and how long it took. Bounded by the timeout
/// even if the resolver library were to wait longer.
async fn lookup_a(ctx: &Ctx<'_>, name: &str) -> (Answer, Duration) {
    let started = Instant::now();
    let bound = ctx.timeout + Duration::from_millis(500);
    let answer = match tokio::time::timeout(bound, ctx.resolver.ipv4_lookup(fqdn(name))).await {
        Err(_) => Answer::Timeout,
        Ok(Err(e)) => answer_from_error(&e),
        Ok(Ok(lookup)) => {
            let mut addrs = Vec::new();
            let mut ttl = u32::MAX;
            for record in lookup.answers() {
                if let RData::A(a) = &record.data {
                    addrs.push(a.0);
                    ttl = ttl.min(record.ttl);
                }
            }
            if addrs.is_empty() {
                Answer::NoData { ttl: None }
            } else {
                Answer::Addresses { addrs, ttl }
            }
        }
    };
    (answer, started.elapsed())
}

/// The `TXT` answer for `name` (records joined by ` | `, cut to 512
/// bytes), or `None` if there is none or it failed.
async fn lookup_txt(ctx: &Ctx<'_>, name: &str) -> Option<String> {
    let bound = ctx.timeout + Duration::from_millis(500);
    let lookup = tokio::time::timeout(bound, ctx.resolver.txt_lookup(fqdn(name))).await.ok()?.ok()?;
    let mut texts = Vec::new();
    for record in lookup.answers() {
        if let RData::TXT(txt) = &record.data {
            let text: String = txt.txt_data.iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect();
            texts.push(text);
        }
    }
    if texts.is_empty() {
        return None;
    }
    let mut joined = texts.join(" | ");
    if joined.len() > MAX_TXT_BYTES {
        let mut cut = MAX_TXT_BYTES;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        joined.truncate(cut);
    }
    Some(joined)
}

fn answer_from_error(error: &NetError) -> Answer {
    match error {
        NetError::Timeout => Answer::Timeout,
        NetError::Dns(DnsError::NoRecordsFound(none)) => match none.response_code {
            ResponseCode::NXDomain => Answer::NxDomain { ttl: none.negative_ttl },
            ResponseCode::NoError => Answer::NoData { ttl: none.negative_ttl },
            ResponseCode::ServFail => Answer::ServFail,
            ResponseCode::Refused => Answer::Refused,
            other => Answer::Failed(format!("response code {other}")),
        },
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => Answer::ServFail,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => Answer::Refused,
        other => Answer::Failed(other.to_string()),
    }
}
