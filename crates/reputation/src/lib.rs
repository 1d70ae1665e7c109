//! Reputation monitoring: polling DNS blocklists (DNSBLs) about sending IPs
//! and domains.
//!
//! * [`target`]: what is asked about and under which name (IPv4 octets and
//!   IPv6 nibbles reversed, domains as they are, CIDR blocks expanded);
//! * [`classify`]: what an answer means: listed, clean, or degraded (an
//!   error code, a rewritten NXDOMAIN, a timeout: never a listing);
//! * [`budget`], [`cache`], [`schedule`]: rate and daily budgets per list,
//!   answers kept to their TTL, one sweep per slot and quick re-checks;
//! * [`poller`]: the asynchronous poller against a configured resolver,
//!   with RFC 5782 canaries each sweep;
//! * [`episode`]: listing history, one episode per listing from its first
//!   to its last observation.

pub mod budget;
pub mod cache;
pub mod classify;
pub mod episode;
pub mod observation;
pub mod plan;
pub mod poller;
pub mod schedule;
pub mod stream_targets;
pub mod target;
pub mod zone;

use std::net::SocketAddr;

pub use classify::{Answer, Degraded, State, Verdict};
pub use episode::{Episode, Episodes};
pub use observation::Observation;
pub use plan::{poller_config, Settings};
pub use poller::{
    slot_of, ListConfig, ListCounters, ListStatus, Outlet, Poller, PollerConfig, RefreshTargets, Report, SweepStats,
};
pub use target::{ListKind, Target};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad target `{target}`: {why}")]
    BadTarget { target: String, why: &'static str },
    #[error("target `{target}` has more than {max} addresses")]
    TooManyTargets { target: String, max: usize },
    #[error("list `{list}` needs its query key in the environment variable `{var}`")]
    MissingKey { list: String, var: String },
    #[error("list `{list}`: {why}")]
    Config { list: String, why: &'static str },
    #[error("cannot set up a resolver for {resolver}")]
    Resolver {
        resolver: SocketAddr,
        #[source]
        source: hickory_resolver::net::NetError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
