//! Where and how to connect: [`ScyllaConfig`], the `[store.scylla]`
//! section of a configuration file ([`ScyllaSettings`]) and consistency levels.

use super::schema::Replication;
use crate::{Error, Result};
use scylla::statement::Consistency;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (port 9042 when omitted).
    pub nodes: Vec<String>,
    /// Keyspace, created when missing.
    pub keyspace: String,
    /// Replication of a keyspace this creates.
    pub replication: Replication,
    /// Consistency of writes (rows, dead letters, checkpoints, claims).
    pub write_consistency: Consistency,
    /// Consistency of reads (queries, checkpoints, history).
    pub read_consistency: Consistency,
    /// Data centre whose nodes requests go to; `None`: any node, by token.
    pub local_datacenter: Option<String>,
    /// Most requests outstanding at once during a write.
    pub max_in_flight: usize,
    /// Client-side timeout of one request.
    pub request_timeout: Duration,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        ScyllaConfig {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "streams".into(),
            replication: Replication::default(),
            write_consistency: Consistency::LocalQuorum,
            read_consistency: Consistency::LocalQuorum,
            local_datacenter: None,
            max_in_flight: 256,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl ScyllaConfig {
    /// Parses `HOST[:PORT][,HOST…][/KEYSPACE]` (the part after `scylla:` in `--store`).
    pub fn parse(spec: &str) -> Self {
        let (hosts, keyspace) = spec.split_once('/').unwrap_or((spec, "streams"));
        let nodes = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| if h.contains(':') { h.to_string() } else { format!("{h}:9042") })
            .collect();
        ScyllaConfig { nodes, keyspace: keyspace.to_string(), ..Default::default() }
    }

    /// These settings for the nodes and keyspace of `spec`
    /// (`HOST[:PORT][,HOST…][/KEYSPACE]`, as [`ScyllaConfig::parse`]).
    pub fn at(&self, spec: &str) -> Self {
        let target = ScyllaConfig::parse(spec);
        ScyllaConfig { nodes: target.nodes, keyspace: target.keyspace, ..self.clone() }
    }

    /// Checks the settings before connecting.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        self.replication.validate()?;
        if self.read_consistency == Consistency::Any {
            return Err(Error::InvalidConfig("read consistency ANY applies to writes only".into()));
        }
        if let (Some(local), Replication::NetworkTopology(dcs)) = (&self.local_datacenter, &self.replication) {
            // LOCAL_* consistency would find no replica in the local data centre.
            if !dcs.iter().any(|(dc, _)| dc == local) {
                return Err(Error::InvalidConfig(format!(
                    "local data centre `{local}` has no replication factor (data centres: {})",
                    dcs.iter().map(|(dc, _)| dc.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Parses a consistency level by its CQL name (`LOCAL_QUORUM`, `one`, …).
/// The serial levels are for lightweight transactions, which the store
/// chooses itself, so they are not accepted.
///
/// # Errors
/// [`Error::InvalidConfig`] listing the accepted names.
pub fn parse_consistency(name: &str) -> Result<Consistency> {
    const LEVELS: [(&str, Consistency); 9] = [
        ("ANY", Consistency::Any),
        ("ONE", Consistency::One),
        ("TWO", Consistency::Two),
        ("THREE", Consistency::Three),
        ("QUORUM", Consistency::Quorum),
        ("ALL", Consistency::All),
        ("LOCAL_QUORUM", Consistency::LocalQuorum),
        ("EACH_QUORUM", Consistency::EachQuorum),
        ("LOCAL_ONE", Consistency::LocalOne),
    ];
    let upper = name.trim().to_ascii_uppercase();
    LEVELS.iter().find(|(n, _)| *n == upper).map(|(_, c)| *c).ok_or_else(|| {
        Error::InvalidConfig(format!(
            "unknown consistency `{name}`; expected one of {}",
            LEVELS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_names_parse_in_any_case() {
        assert_eq!(parse_consistency("LOCAL_QUORUM").ok(), Some(Consistency::LocalQuorum));
        assert_eq!(parse_consistency("local_one").ok(), Some(Consistency::LocalOne));
        assert_eq!(parse_consistency(" each_quorum ").ok(), Some(Consistency::EachQuorum));
        for bad in ["SERIAL", "LOCAL_SERIAL", "quorom", ""] {
            let error = parse_consistency(bad).expect_err(bad).to_string();
            assert!(error.contains("LOCAL_QUORUM"), "{bad}: {error}");
        }
    }

    #[test]
    fn settings_are_checked_before_connecting() {
        assert!(ScyllaConfig::default().validate().is_ok());
        let config = |replication, local: Option<&str>, read| ScyllaConfig {
            replication,
            local_datacenter: local.map(String::from),
            read_consistency: read,
            ..Default::default()
        };
        let nts = Replication::NetworkTopology(vec![("dc1".into(), 3), ("dc2".into(), 2)]);
        assert!(config(nts.clone(), Some("dc2"), Consistency::LocalQuorum).validate().is_ok());
        // SimpleStrategy knows no data centres, so any local one is fine.
        assert!(config(Replication::Simple(1), Some("dc9"), Consistency::One).validate().is_ok());
        for (bad, needle) in [
            (config(nts.clone(), Some("dc9"), Consistency::LocalQuorum), "`dc9`"),
            (config(nts, None, Consistency::Any), "ANY"),
            (config(Replication::Simple(0), None, Consistency::One), "at least 1"),
        ] {
            let error = bad.validate().expect_err("invalid");
            assert!(matches!(error, Error::InvalidConfig(_)) && error.to_string().contains(needle), "{error}");
        }
    }

    #[test]
    fn store_spec_parses() {
        let c = ScyllaConfig::parse("a,b:19042/metrics");
        assert_eq!(c.nodes, ["a:9042", "b:19042"]);
        assert_eq!(c.keyspace, "metrics");
        assert_eq!(c.write_consistency, Consistency::LocalQuorum);
        assert_eq!(c.read_consistency, Consistency::LocalQuorum);
        assert_eq!(c.local_datacenter, None);
        assert_eq!(ScyllaConfig::parse("scylla").keyspace, "streams");
    }
}

/// The `[store.scylla]` section of `streamd.toml`, as written: read by
/// `streamd` and by `streamctl --config`, every key optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScyllaSettings {
    /// `SimpleStrategy` or `NetworkTopologyStrategy`, for a keyspace this creates.
    pub replication: String,
    /// `SimpleStrategy`'s factor; unset means 1.
    pub replication_factor: Option<u32>,
    /// `NetworkTopologyStrategy`'s factor per data centre.
    pub datacenters: BTreeMap<String, u32>,
    /// Consistency level name of writes.
    pub write_consistency: String,
    /// Consistency level name of reads.
    pub read_consistency: String,
    /// Data centre requests are routed to; empty: any node.
    pub local_datacenter: String,
    /// Most requests outstanding at once during a write or an indexed read.
    pub max_in_flight: usize,
    /// Client-side timeout of one request, ms.
    pub request_timeout_ms: u64,
}

impl Default for ScyllaSettings {
    fn default() -> Self {
        ScyllaSettings {
            replication: "SimpleStrategy".into(),
            replication_factor: None,
            datacenters: BTreeMap::new(),
            write_consistency: "LOCAL_QUORUM".into(),
            read_consistency: "LOCAL_QUORUM".into(),
            local_datacenter: String::new(),
            max_in_flight: ScyllaConfig::default().max_in_flight,
            request_timeout_ms: ScyllaConfig::default().request_timeout.as_millis() as u64,
        }
    }
}

impl ScyllaSettings {
    /// The settings as a [`ScyllaConfig`] whose nodes and keyspace a store
    /// URL fills in ([`ScyllaConfig::at`]).
    ///
    /// # Errors
    /// Every problem found, each prefixed with its key (`store.scylla.…`).
    pub fn into_config(self) -> std::result::Result<ScyllaConfig, Vec<String>> {
        let mut problems = Vec::new();
        let replication = match self.replication.as_str() {
            "SimpleStrategy" => {
                if !self.datacenters.is_empty() {
                    problems.push(
                        "store.scylla.datacenters: SimpleStrategy has one factor for the whole cluster; \
                         use replication_factor, or replication = \"NetworkTopologyStrategy\""
                            .to_string(),
                    );
                }
                Replication::Simple(self.replication_factor.unwrap_or(1))
            }
            "NetworkTopologyStrategy" => {
                if self.replication_factor.is_some() {
                    problems.push(
                        "store.scylla.replication_factor: NetworkTopologyStrategy takes a factor per data \
                         centre in [store.scylla.datacenters]"
                            .to_string(),
                    );
                }
                Replication::NetworkTopology(self.datacenters.into_iter().collect())
            }
            other => {
                problems.push(format!(
                    "store.scylla.replication `{other}`: expected `SimpleStrategy` or `NetworkTopologyStrategy`"
                ));
                Replication::default()
            }
        };
        let mut consistency = |key: &str, name: &str| {
            parse_consistency(name).map_err(|e| problems.push(format!("store.scylla.{key}: {e}"))).unwrap_or_default()
        };
        let write_consistency = consistency("write_consistency", &self.write_consistency);
        let read_consistency = consistency("read_consistency", &self.read_consistency);
        if self.max_in_flight == 0 {
            problems.push("store.scylla.max_in_flight: at least 1 request must be allowed at once".to_string());
        }
        if self.request_timeout_ms == 0 {
            problems.push("store.scylla.request_timeout_ms: must be more than 0".to_string());
        }
        let config = ScyllaConfig {
            replication,
            write_consistency,
            read_consistency,
            local_datacenter: (!self.local_datacenter.is_empty()).then_some(self.local_datacenter),
            max_in_flight: self.max_in_flight,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            ..ScyllaConfig::default()
        };
        if problems.is_empty() {
            if let Err(e) = config.validate() {
                problems.push(format!("store.scylla: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }
}
