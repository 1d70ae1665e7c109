//! What a poller is configured with, and what it reports.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use crate::observation::Observation;
use crate::target::{ListKind, Target};
use crate::{Error, Result};

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
