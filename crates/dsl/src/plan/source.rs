//! Sources: where events come from, which fields to decode, which
//! classifications to compute, and what a DNSBL source polls.

use super::{Expr, Type};
use serde::{Deserialize, Serialize};

/// Message formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per message.
    Json,
}

/// A source: where events come from and which fields to decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcePlan {
    /// Source name.
    pub name: String,
    /// Kafka topic.
    pub topic: String,
    /// Message format.
    pub format: Format,
    /// Every declared scalar field, depth-first in declaration order.
    pub fields: Vec<FieldPlan>,
    /// Index into `fields` of the event-time field.
    pub event_time: usize,
    /// How far an event's time may be ahead of the earlier of its message's
    /// broker timestamp and the processing time, ms. An event
    /// further ahead is dead-lettered: one wrong clock must not close every
    /// window of its partition.
    #[serde(default = "default_max_future_ms")]
    pub max_future_ms: u64,
    /// Distinct classifier calls over this source's events; each is computed
    /// at most once per event, however many metrics use it.
    pub classifications: Vec<Classification>,
    /// For a `from dnsbl` source: what the reputation poller asks about. Its
    /// observations arrive on `topic` like any other source's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnsbl: Option<DnsblPlan>,
}

/// What a DNSBL reputation source polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsblPlan {
    /// The length of a sweep slot, ms: the poller sweeps once per slot, at a jittered moment in it.
    pub every_ms: u64,
    /// Addresses, CIDR blocks and domains, as written.
    pub targets: Vec<String>,
    /// Targets taken from the delivery stream: metrics' recent key values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets_from: Vec<DnsblTargetsFromPlan>,
    /// The lists, in definition order.
    pub lists: Vec<DnsblListPlan>,
}

/// `targets from metric M key K within D`: at each sweep, the distinct values
/// of key `K` in `M`'s stored rows whose window starts within the last `D`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsblTargetsFromPlan {
    /// The metric's name.
    pub metric: String,
    /// One of its group-by keys.
    pub key: String,
    /// How far back a window may start, ms.
    pub within_ms: u64,
}

/// Whether a DNSBL lists IP addresses or domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsblKind {
    /// Queried with the address reversed: `2.0.0.127.zone`.
    Ip,
    /// Queried with the domain: `example.com.zone`.
    Domain,
}

/// One DNSBL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsblListPlan {
    /// The list's name, the value of the observations' `list` field.
    pub name: String,
    /// The zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// IP or domain list.
    pub kind: DnsblKind,
    /// How much a listing here matters (alert severity).
    pub weight: f64,
    /// Queries a second at most.
    pub max_qps: f64,
    /// Queries a UTC day at most, if limited.
    pub max_per_day: Option<u64>,
    /// The environment variable holding the data-query key, if the list needs one.
    pub key_env: Option<String>,
    /// Names of listing codes: `127.0.0.2` → `SBL`.
    pub codes: std::collections::BTreeMap<String, String>,
}

/// The `max_future` of a source that does not set one: an hour.
pub const DEFAULT_MAX_FUTURE_MS: u64 = 3_600_000;

fn default_max_future_ms() -> u64 {
    DEFAULT_MAX_FUTURE_MS
}

/// One decodable field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldPlan {
    /// JSON keys from the message root, e.g. `["meta", "region"]`.
    pub path: Vec<String>,
    /// Declared type; a record field on the path being null makes it null.
    pub ty: Type,
    /// Whether some metric (or the event time) reads it; unused fields are not decoded.
    pub is_used: bool,
}

/// One classifier invocation: which classifier, over which arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Index into [`Plan::classifiers`](super::Plan::classifiers).
    pub classifier: usize,
    /// One expression per parameter, over the source's fields.
    pub args: Vec<Expr>,
}
