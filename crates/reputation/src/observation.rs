//! One poll of one target on one list: the event the reputation source emits.

use serde::{Deserialize, Serialize};

use crate::classify::State;

/// One target × list × poll. Serialised as one JSON object, the event of a
/// `dnsbl` source (field names are the source's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// When the answer came, ms since the epoch.
    pub time_ms: i64,
    /// The list's name in the pipeline (`spamhaus_zen`).
    pub list: String,
    /// The zone queried (`zen.spamhaus.org`), without a query key.
    pub zone: String,
    /// `ip` or `domain`.
    pub kind: String,
    /// The address or domain asked about.
    pub target: String,
    /// `listed`, `clean` or `degraded`.
    pub state: State,
    /// The answer's codes, comma-separated (`127.0.0.2,127.0.0.4`).
    pub code: Option<String>,
    /// The list's names for the codes (`SBL,XBL`), or for a degraded answer
    /// what went wrong.
    pub meaning: Option<String>,
    /// For a degraded answer, why (`rate_limited`, `timeout`,
    /// `resolver_rewrite`, `canary_failed`, ...).
    pub degraded: Option<String>,
    /// The `TXT` answer of a listing (its reason or URL).
    pub txt: Option<String>,
    /// The list's weight, from the pipeline.
    pub weight: f64,
    /// The resolver asked (`127.0.0.1:53`).
    pub resolver: String,
    /// How long the `A` query took, 0 when answered from the cache.
    pub latency_ms: u64,
    /// Whether the answer came from the cache (within its TTL).
    pub cached: bool,
}
