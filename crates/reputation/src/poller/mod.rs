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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::watch;

use crate::budget::{DailyBudget, TokenBucket};
use crate::cache::TtlCache;
use crate::observation::Observation;
use crate::schedule::{slot_offset, Rechecks};
use crate::target::Target;
use crate::{Error, Result};

mod config;
mod list;

pub use config::{ListConfig, ListCounters, ListStatus, PollerConfig, Report, SweepStats};
use list::{now_ms, Ctx, ListState};

/// How often a poller that is not active asks again whether it is.
const STANDBY_CHECK: Duration = Duration::from_secs(2);

/// How long a poller whose sweep could not be delivered (e.g. Kafka is
/// down) waits before sweeping that slot again, so that an outage does not
/// turn into a storm of canary queries.
const UNDELIVERED_RETRY: Duration = Duration::from_secs(30);

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
