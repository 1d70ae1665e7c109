//! The CQL the Scylla backend runs, generated from the plan (pure text, no
//! driver): golden-tested in `tests/cql_golden.rs`.
//!
//! # Layout of a metric tier table
//!
//! ```text
//! PRIMARY KEY ((series, bucket), window_start, source_partition)
//! ```
//!
//! * `series` is the canonical text of the group-by values
//!   ([`crate::schema::series_id`]), exactly as in SQLite. It stands for the
//!   group-by columns in the partition key because CQL primary-key columns
//!   cannot be null and group-by values can; the group-by columns themselves
//!   are regular columns (for reading and filtering).
//! * `bucket` is `window_start` divided (flooring) by the tier's bucket width
//!   ([`bucket_ms`]), which bounds a partition:
//!
//!   | tier width        | bucket  | rows per series and source partition |
//!   | ----------------- | ------- | ------------------------------------ |
//!   | below 1h (`1m`)   | 1 day   | 86 400 s / 60 s = 1 440              |
//!   | 1h up to below 1d | 30 days | 30 × 24 = 720                        |
//!   | 1d and above      | 366 days| 366                                  |
//!
//!   With P source partitions a partition holds at most P times that (each
//!   row a few hundred bytes plus its sketch states), far under Scylla's
//!   large-partition warning (1 000 MB / 100 000 rows by default) for any
//!   realistic P.
//! * Clustering by `window_start` then `source_partition`, ascending.
//! * Rows expire by TTL: `USING TTL` of the tier's retention plus one window
//!   (from the write, so a row lives at least its retention), capped at CQL's
//!   maximum of 20 years. Time-window compaction with one window per bucket
//!   lets whole SSTables expire at once.

use crate::schema::{metric_columns, quote, table_name, Column, ColumnKind, STATE_SUFFIX};
use crate::{Error, Result};
use dsl::plan::MetricPlan;
use std::collections::{BTreeMap, HashMap};

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
/// CQL's largest TTL, seconds (20 years).
pub const MAX_TTL_S: u64 = 630_720_000;

/// Width of a partition's time bucket for a tier of `width_ms`, ms.
pub fn bucket_ms(width_ms: u64) -> u64 {
    if width_ms < HOUR_MS {
        DAY_MS
    } else if width_ms < DAY_MS {
        30 * DAY_MS
    } else {
        366 * DAY_MS
    }
}

/// The bucket of a window starting at `window_start_ms`.
pub fn bucket_of(window_start_ms: i64, width_ms: u64) -> i64 {
    window_start_ms.div_euclid(bucket_ms(width_ms) as i64)
}

/// TTL of a tier's rows, seconds: retention plus one window, at most [`MAX_TTL_S`].
pub fn ttl_s(metric: &MetricPlan, tier: usize) -> u64 {
    let t = &metric.tiers[tier];
    (t.retention_ms.saturating_add(t.width_ms) / 1000).clamp(1, MAX_TTL_S)
}

/// The CQL type of a logical column kind.
pub fn cql_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text => "text",
        ColumnKind::Int => "bigint",
        ColumnKind::Float => "double",
        ColumnKind::Bool => "boolean",
        ColumnKind::Timestamp => "timestamp",
        ColumnKind::State => "blob",
    }
}

/// Primary-key columns of every metric table, with their CQL types, in key order.
pub const PRIMARY_KEY: [(&str, &str); 4] =
    [("series", "text"), ("bucket", "bigint"), ("window_start", "timestamp"), ("source_partition", "int")];

/// How the keyspace is replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with this factor (development, one data centre).
    Simple(u32),
    /// `NetworkTopologyStrategy` with a factor per data centre.
    NetworkTopology(Vec<(String, u32)>),
}

impl Default for Replication {
    fn default() -> Self {
        Replication::Simple(1)
    }
}

impl Replication {
    /// Checks what Scylla would otherwise reject only at keyspace creation
    /// (or, for a factor of 0, accept and then fail every request).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a factor of 0, `NetworkTopologyStrategy`
    /// without a data centre, or an empty or repeated data centre name.
    pub fn validate(&self) -> Result<()> {
        match self {
            Replication::Simple(0) => Err(Error::InvalidConfig("replication factor must be at least 1".into())),
            Replication::Simple(_) => Ok(()),
            Replication::NetworkTopology(dcs) if dcs.is_empty() => Err(Error::InvalidConfig(
                "NetworkTopologyStrategy needs a replication factor for at least one data centre".into(),
            )),
            Replication::NetworkTopology(dcs) => {
                let mut seen = std::collections::BTreeSet::new();
                for (dc, n) in dcs {
                    if dc.is_empty() {
                        return Err(Error::InvalidConfig("data centre names cannot be empty".into()));
                    }
                    if !seen.insert(dc) {
                        return Err(Error::InvalidConfig(format!("data centre `{dc}` is listed twice")));
                    }
                    if *n == 0 {
                        return Err(Error::InvalidConfig(format!(
                            "replication factor of data centre `{dc}` must be at least 1"
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// The `replication = {…}` map literal.
    fn cql_map(&self) -> String {
        match self {
            Replication::Simple(n) => format!("{{'class': 'SimpleStrategy', 'replication_factor': {n}}}"),
            Replication::NetworkTopology(dcs) => {
                let mut s = "{'class': 'NetworkTopologyStrategy'".to_string();
                for (dc, n) in dcs {
                    s.push_str(&format!(", '{}': {n}", dc.replace('\'', "''")));
                }
                s.push('}');
                s
            }
        }
    }

    /// Whether `existing`, the `replication` column of
    /// `system_schema.keyspaces`, says the same. The server reports the
    /// class fully qualified (`org.apache.cassandra.locator.SimpleStrategy`)
    /// and every factor as text.
    pub fn matches(&self, existing: &HashMap<String, String>) -> bool {
        let class = existing.get("class").map(|c| c.rsplit('.').next().unwrap_or(c));
        let factors: BTreeMap<&str, Option<u32>> = existing
            .iter()
            .filter(|(k, _)| k.as_str() != "class")
            .map(|(k, v)| (k.as_str(), v.trim().parse::<u32>().ok()))
            .collect();
        match self {
            Replication::Simple(n) => {
                class == Some("SimpleStrategy")
                    && factors.len() == 1
                    && factors.get("replication_factor") == Some(&Some(*n))
            }
            Replication::NetworkTopology(dcs) => {
                let wanted: BTreeMap<&str, Option<u32>> = dcs.iter().map(|(dc, n)| (dc.as_str(), Some(*n))).collect();
                class == Some("NetworkTopologyStrategy") && factors == wanted
            }
        }
    }
}

/// `CREATE KEYSPACE IF NOT EXISTS`.
pub fn create_keyspace(keyspace: &str, replication: &Replication) -> String {
    format!("CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {}", quote(keyspace), replication.cql_map())
}

/// `ALTER KEYSPACE`: what an operator runs to give an existing keyspace
/// `replication` (followed by a repair when factors grow).
pub fn alter_keyspace(keyspace: &str, replication: &Replication) -> String {
    format!("ALTER KEYSPACE {} WITH replication = {}", quote(keyspace), replication.cql_map())
}

/// The replication of a keyspace (bound: its name).
pub fn select_keyspace_replication() -> &'static str {
    "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?"
}

fn qualified(keyspace: &str, table: &str) -> String {
    format!("{}.{}", quote(keyspace), quote(table))
}

/// The bookkeeping tables: checkpoints, partition owners, dead letters, deployment history.
pub fn create_bookkeeping(keyspace: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} (topic text, partition int, epoch bigint, PRIMARY KEY ((topic, partition)))",
            qualified(keyspace, "stream_owners")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (topic text, partition int, replay_offset bigint, next_offset bigint, \
             max_event_time bigint, metrics text, plan_version bigint, PRIMARY KEY ((topic, partition)))",
            qualified(keyspace, "stream_checkpoints")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (topic text, partition int, offset bigint, reason text, detail text, \
             payload blob, key blob, PRIMARY KEY ((topic, partition), offset)) WITH CLUSTERING ORDER BY (offset ASC)",
            qualified(keyspace, "stream_dead_letters")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (version bigint, instance text, at timestamp, outcome text, \
             plan_hash text, detail text, PRIMARY KEY ((version), instance, at))",
            qualified(keyspace, "stream_deployments")
        ),
        create_episodes(keyspace),
    ]
}

/// How long a DNSBL listing episode is kept after its last write: 2 years.
pub const EPISODE_TTL_S: u32 = 2 * 365 * 86_400;

/// DNSBL listing episodes: a partition per list and target (a handful of
/// episodes each), expiring [`EPISODE_TTL_S`] after their last write.
pub fn create_episodes(keyspace: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (list text, target text, first_seen timestamp, last_seen timestamp, \
         ended timestamp, code text, last_code text, meaning text, first_txt text, last_txt text, \
         PRIMARY KEY ((list, target), first_seen)) WITH default_time_to_live = {EPISODE_TTL_S}",
        qualified(keyspace, "stream_dnsbl_episodes")
    )
}

/// An episode's upsert (the same identity overwrites).
pub fn upsert_episode(keyspace: &str) -> String {
    format!(
        "INSERT INTO {} (list, target, first_seen, last_seen, ended, code, last_code, meaning, first_txt, last_txt) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        qualified(keyspace, "stream_dnsbl_episodes")
    )
}

/// Every episode (a small table; filters apply after reading).
pub fn select_episodes(keyspace: &str) -> String {
    format!(
        "SELECT list, target, first_seen, last_seen, ended, code, last_code, meaning, first_txt, last_txt FROM {}",
        qualified(keyspace, "stream_dnsbl_episodes")
    )
}

/// Every data column of a metric table after the primary key: group-by
/// columns, then each aggregate's value and state, then `included_through`.
pub fn data_columns(metric: &MetricPlan) -> Vec<Column> {
    let mut columns = metric_columns(metric);
    columns.push(Column { name: "included_through".into(), kind: ColumnKind::Timestamp });
    columns
}

/// `CREATE TABLE IF NOT EXISTS` for `metric`'s tier `tier`.
pub fn create_table(keyspace: &str, metric: &MetricPlan, tier: usize) -> String {
    let mut cql = format!("CREATE TABLE IF NOT EXISTS {} (", qualified(keyspace, &table_name(metric, tier)));
    for (name, ty) in PRIMARY_KEY {
        cql.push_str(&format!("{name} {ty}, "));
    }
    for c in data_columns(metric) {
        cql.push_str(&format!("{} {}, ", quote(&c.name), cql_type(c.kind)));
    }
    let bucket_days = bucket_ms(metric.tiers[tier].width_ms) / DAY_MS;
    cql.push_str(&format!(
        "PRIMARY KEY ((series, bucket), window_start, source_partition)) \
         WITH CLUSTERING ORDER BY (window_start ASC, source_partition ASC) \
         AND compaction = {{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', \
         'compaction_window_size': {bucket_days}}}"
    ));
    cql
}

/// The series index of a tier table: which series have rows in a bucket.
pub fn series_index_name(metric: &MetricPlan, tier: usize) -> String {
    format!("{}__series", table_name(metric, tier))
}

/// The series index: one partition per bucket listing its series, written
/// with the rows (same TTL), so a time-range read visits only the buckets
/// of the range and the partitions of their series instead of scanning.
pub fn create_series_index(keyspace: &str, metric: &MetricPlan, tier: usize) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (bucket bigint, series text, PRIMARY KEY ((bucket), series))",
        qualified(keyspace, &series_index_name(metric, tier))
    )
}

/// Index insert: bucket, series.
pub fn insert_series_index(keyspace: &str, metric: &MetricPlan, tier: usize) -> String {
    format!(
        "INSERT INTO {} (bucket, series) VALUES (?, ?) USING TTL {}",
        qualified(keyspace, &series_index_name(metric, tier)),
        ttl_s(metric, tier)
    )
}

/// The series of one bucket.
pub fn select_series_index(keyspace: &str, metric: &MetricPlan, tier: usize) -> String {
    format!("SELECT series FROM {} WHERE bucket = ?", qualified(keyspace, &series_index_name(metric, tier)))
}

/// One partition's rows in a time range: bind values are series, bucket,
/// window start lower (inclusive) and upper (exclusive) bound; selected as
/// by [`select`].
pub fn select_series(keyspace: &str, metric: &MetricPlan, tier: usize) -> String {
    format!(
        "{} FROM {} WHERE series = ? AND bucket = ? AND window_start >= ? AND window_start < ?",
        selected_columns(metric),
        qualified(keyspace, &table_name(metric, tier))
    )
}

/// The checkpoint columns added since the table was first made: a keyspace
/// made earlier gets them at connection, by [`add_checkpoint_column`].
pub const CHECKPOINT_ADDED_COLUMNS: [(&str, &str); 1] = [("plan_version", "bigint")];

/// Additive migration of the checkpoint table: `ALTER TABLE … ADD` one of
/// [`CHECKPOINT_ADDED_COLUMNS`].
pub fn add_checkpoint_column(keyspace: &str, name: &str, ty: &str) -> String {
    format!("ALTER TABLE {} ADD {} {}", qualified(keyspace, "stream_checkpoints"), name, ty)
}

/// Additive migration: `ALTER TABLE … ADD` one column.
pub fn add_column(keyspace: &str, table: &str, column: &Column) -> String {
    format!("ALTER TABLE {} ADD {} {}", qualified(keyspace, table), quote(&column.name), cql_type(column.kind))
}

/// The columns of a table as the cluster describes them.
pub fn describe_columns() -> &'static str {
    "SELECT column_name, kind, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?"
}

/// The row upsert of `metric`'s tier `tier`: bind values are the primary key
/// ([`PRIMARY_KEY`] order), then [`data_columns`].
pub fn upsert(keyspace: &str, metric: &MetricPlan, tier: usize) -> String {
    let mut names: Vec<String> = PRIMARY_KEY.iter().map(|(n, _)| (*n).to_string()).collect();
    names.extend(data_columns(metric).iter().map(|c| quote(&c.name)));
    let marks = vec!["?"; names.len()].join(", ");
    format!(
        "INSERT INTO {} ({}) VALUES ({marks}) USING TTL {}",
        qualified(keyspace, &table_name(metric, tier)),
        names.join(", "),
        ttl_s(metric, tier)
    )
}

/// The row read of `metric`'s tier `tier`: bind values are the window start
/// lower (inclusive) and upper (exclusive) bounds. Selected: series,
/// window_start, source_partition, included_through, then each aggregate's
/// value and state.
///
/// This scans the table's token ranges with `ALLOW FILTERING` on the
/// clustering column: the fallback for reads without a bounded time range
/// (see [`select_series`] for the indexed path); group-by and partition
/// conditions are applied by the reader.
pub fn select(keyspace: &str, metric: &MetricPlan, tier: usize) -> String {
    format!(
        "{} FROM {} WHERE window_start >= ? AND window_start < ? ALLOW FILTERING",
        selected_columns(metric),
        qualified(keyspace, &table_name(metric, tier))
    )
}

/// Each aggregate's value then its state: a count or sum is written as its
/// value alone (its state column unset), and its state is rebuilt from the
/// value ([`crate::schema::stored_state`]).
fn selected_columns(metric: &MetricPlan) -> String {
    let mut cql = "SELECT series, window_start, source_partition, included_through".to_string();
    for a in &metric.aggregates {
        cql.push_str(&format!(", {}, {}", quote(&a.name), quote(&format!("{}{STATE_SUFFIX}", a.name))));
    }
    cql
}

/// Checkpoint upsert: topic, partition, replay offset, next offset, max
/// event time, metric starts (JSON), plan version.
pub fn upsert_checkpoint(keyspace: &str) -> String {
    format!(
        "INSERT INTO {} (topic, partition, replay_offset, next_offset, max_event_time, metrics, plan_version) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        qualified(keyspace, "stream_checkpoints")
    )
}

/// A partition's owner epoch, read with serial consistency (see `ScyllaStore::claim`).
pub fn select_owner(keyspace: &str) -> String {
    format!("SELECT epoch FROM {} WHERE topic = ? AND partition = ?", qualified(keyspace, "stream_owners"))
}

/// The first claim of a partition (lightweight transaction): topic, partition.
pub fn insert_owner(keyspace: &str) -> String {
    format!(
        "INSERT INTO {} (topic, partition, epoch) VALUES (?, ?, 1) IF NOT EXISTS",
        qualified(keyspace, "stream_owners")
    )
}

/// A later claim (lightweight transaction): new epoch, topic, partition, the epoch read.
pub fn update_owner(keyspace: &str) -> String {
    format!(
        "UPDATE {} SET epoch = ? WHERE topic = ? AND partition = ? IF epoch = ?",
        qualified(keyspace, "stream_owners")
    )
}

/// Checkpoint read by topic and partition.
pub fn select_checkpoint(keyspace: &str) -> String {
    format!(
        "SELECT replay_offset, next_offset, max_event_time, metrics, plan_version FROM {} WHERE topic = ? AND partition = ?",
        qualified(keyspace, "stream_checkpoints")
    )
}

/// Every checkpoint (one row per source partition: a small table, read whole).
pub fn select_all_checkpoints(keyspace: &str) -> String {
    format!(
        "SELECT topic, partition, replay_offset, next_offset, max_event_time, metrics, plan_version FROM {}",
        qualified(keyspace, "stream_checkpoints")
    )
}

/// Dead-letter upsert: topic, partition, offset, reason, detail, payload, key.
pub fn insert_dead_letter(keyspace: &str) -> String {
    format!(
        "INSERT INTO {} (topic, partition, offset, reason, detail, payload, key) VALUES (?, ?, ?, ?, ?, ?, ?)",
        qualified(keyspace, "stream_dead_letters")
    )
}

/// Dead letters of a topic (every partition; ordered by the reader).
pub fn select_dead_letters(keyspace: &str) -> String {
    format!(
        "SELECT partition, offset, reason, detail, payload FROM {} WHERE topic = ? ALLOW FILTERING",
        qualified(keyspace, "stream_dead_letters")
    )
}

/// Deployment record: version, instance, time, outcome, plan hash, detail.
pub fn insert_deployment(keyspace: &str) -> String {
    format!(
        "INSERT INTO {} (version, instance, at, outcome, plan_hash, detail) VALUES (?, ?, ?, ?, ?, ?)",
        qualified(keyspace, "stream_deployments")
    )
}

/// The whole deployment history (a small table: one row per version and instance).
pub fn select_deployments(keyspace: &str) -> String {
    format!(
        "SELECT version, instance, at, outcome, plan_hash, detail FROM {}",
        qualified(keyspace, "stream_deployments")
    )
}

/// Everything generated for `plan`, as one text: what the golden test snapshots.
pub fn render(keyspace: &str, replication: &Replication, plan: &dsl::Plan) -> String {
    let mut out = format!("{};\n", create_keyspace(keyspace, replication));
    for s in create_bookkeeping(keyspace) {
        out.push_str(&format!("{s};\n"));
    }
    for (name, ty) in CHECKPOINT_ADDED_COLUMNS {
        out.push_str(&format!("-- when missing: {};\n", add_checkpoint_column(keyspace, name, ty)));
    }
    for s in [
        upsert_checkpoint(keyspace),
        select_checkpoint(keyspace),
        select_all_checkpoints(keyspace),
        select_owner(keyspace),
        insert_owner(keyspace),
        update_owner(keyspace),
        insert_dead_letter(keyspace),
        select_dead_letters(keyspace),
        insert_deployment(keyspace),
        select_deployments(keyspace),
        upsert_episode(keyspace),
        select_episodes(keyspace),
    ] {
        out.push_str(&format!("{s};\n"));
    }
    for metric in &plan.metrics {
        for tier in 0..metric.tiers.len() {
            let t = &metric.tiers[tier];
            out.push_str(&format!(
                "\n-- {} tier {}: bucket {} days ({} windows), TTL {} s\n",
                metric.name,
                t.name,
                bucket_ms(t.width_ms) / DAY_MS,
                bucket_ms(t.width_ms) / t.width_ms.max(1),
                ttl_s(metric, tier)
            ));
            out.push_str(&format!("{};\n", create_table(keyspace, metric, tier)));
            out.push_str(&format!("{};\n", upsert(keyspace, metric, tier)));
            out.push_str(&format!("{};\n", select(keyspace, metric, tier)));
            out.push_str(&format!("{};\n", create_series_index(keyspace, metric, tier)));
            out.push_str(&format!("{};\n", insert_series_index(keyspace, metric, tier)));
            out.push_str(&format!("{};\n", select_series_index(keyspace, metric, tier)));
            out.push_str(&format!("{};\n", select_series(keyspace, metric, tier)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_partitions() {
        assert_eq!(bucket_ms(60_000) / 60_000, 1440);
        assert_eq!(bucket_ms(HOUR_MS) / HOUR_MS, 720);
        assert_eq!(bucket_ms(DAY_MS) / DAY_MS, 366);
        assert_eq!(bucket_of(-1, 60_000), -1);
        assert_eq!(bucket_of(DAY_MS as i64, 60_000), 1);
    }

    fn nts(dcs: &[(&str, u32)]) -> Replication {
        Replication::NetworkTopology(dcs.iter().map(|(dc, n)| (dc.to_string(), *n)).collect())
    }

    fn server_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn keyspace_cql_of_both_strategies() {
        assert_eq!(
            create_keyspace("streams", &Replication::Simple(1)),
            "CREATE KEYSPACE IF NOT EXISTS \"streams\" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        assert_eq!(
            alter_keyspace("streams", &nts(&[("eu-west", 3), ("o'dc", 2)])),
            "ALTER KEYSPACE \"streams\" WITH replication = {'class': 'NetworkTopologyStrategy', 'eu-west': 3, 'o''dc': 2}"
        );
    }

    #[test]
    fn replication_is_validated() {
        assert!(Replication::Simple(1).validate().is_ok());
        assert!(nts(&[("dc1", 3), ("dc2", 1)]).validate().is_ok());
        for (bad, needle) in [
            (Replication::Simple(0), "at least 1"),
            (nts(&[]), "at least one data centre"),
            (nts(&[("dc1", 0)]), "`dc1`"),
            (nts(&[("", 3)]), "empty"),
            (nts(&[("dc1", 3), ("dc1", 2)]), "twice"),
        ] {
            let error = bad.validate().expect_err("invalid").to_string();
            assert!(error.contains(needle), "{bad:?}: {error}");
        }
    }

    #[test]
    fn replication_compares_with_what_the_server_reports() {
        let simple =
            server_map(&[("class", "org.apache.cassandra.locator.SimpleStrategy"), ("replication_factor", "1")]);
        assert!(Replication::Simple(1).matches(&simple));
        assert!(!Replication::Simple(3).matches(&simple));
        assert!(!nts(&[("dc1", 1)]).matches(&simple));
        let topology = server_map(&[
            ("class", "org.apache.cassandra.locator.NetworkTopologyStrategy"),
            ("dc1", "3"),
            ("dc2", "3"),
        ]);
        assert!(nts(&[("dc2", 3), ("dc1", 3)]).matches(&topology));
        assert!(!nts(&[("dc1", 3)]).matches(&topology));
        assert!(!nts(&[("dc1", 3), ("dc2", 2)]).matches(&topology));
        assert!(!Replication::Simple(3).matches(&topology));
    }
}
