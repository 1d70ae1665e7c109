//! Configuration: a TOML file (`--config`), overridden by flags, validated
//! into [`Config`] before anything starts. Every option has a safe default;
//! `streamd.example.toml` beside this crate documents them all.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use store::scylla::{ScyllaConfig, ScyllaSettings};

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Kafka connection and consumer behaviour.
    pub kafka: RawKafka,
    /// Where results go.
    pub store: RawStore,
    /// Which pipelines run.
    pub pipelines: RawPipelines,
    /// The HTTP endpoint.
    pub http: RawHttp,
    /// The built-in demo.
    pub embedded: RawEmbedded,
    /// Deployment: the control topic and the admin endpoint.
    pub deploy: RawDeploy,
    /// The DNSBL poller of `dnsbl` sources.
    pub reputation: RawReputation,
}

/// `[reputation]`: how the poller of a pipeline's `dnsbl` sources runs (what
/// it polls is in the pipeline).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReputation {
    /// The recursive resolver to ask, `IP:PORT`: your own (lists refuse public
    /// resolvers). Empty: `dnsbl` sources are not polled (with `--embedded`,
    /// the demo zone is asked instead).
    pub resolver: String,
    /// How long one query may take, ms.
    pub timeout_ms: u64,
    /// How soon a target whose state changed is asked again, ms.
    pub recheck_after_ms: u64,
    /// The fraction (0 to 0.5) by which the pause between sweeps moves either way.
    pub jitter: f64,
}

impl Default for RawReputation {
    fn default() -> Self {
        RawReputation { resolver: String::new(), timeout_ms: 2000, recheck_after_ms: 60_000, jitter: 0.1 }
    }
}

/// `[deploy]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDeploy {
    /// Compacted topic of bundles and instance reports; empty: run local files only, no live deploys.
    pub control_topic: String,
    /// Bearer token of `/admin/v1/*`; empty disables the admin endpoint (`STREAMD_ADMIN_TOKEN` overrides).
    pub admin_token: String,
    /// This instance's name in reports and the deployment history; empty: `<host>-<pid>`.
    pub instance: String,
    /// Seconds between instance reports on the control topic.
    pub report_interval_s: u64,
}

impl Default for RawDeploy {
    fn default() -> Self {
        RawDeploy {
            control_topic: kafka::control::DEFAULT_CONTROL_TOPIC.into(),
            admin_token: String::new(),
            instance: String::new(),
            report_interval_s: 5,
        }
    }
}

/// `[kafka]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKafka {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group.
    pub group_id: String,
    /// Dead-letter topic; empty means `<source topic>.dlq`.
    pub dead_letter_topic: String,
    /// Longest time between flushes, ms.
    pub flush_interval_ms: u64,
    /// Messages that make a flush due (see [`kafka::Settings::flush_messages`]).
    pub flush_messages: usize,
    /// After this long without messages, a partition's event time follows processing time, ms.
    pub idle_timeout_ms: u64,
    /// First retry delay after a failed store write, ms.
    pub retry_initial_ms: u64,
    /// Longest retry delay, ms.
    pub retry_max_ms: u64,
    /// Threads running the engine over the assigned partitions; 0: one per core.
    pub workers: usize,
    /// Passed to librdkafka as given, e.g. `"session.timeout.ms" = "10000"`.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for RawKafka {
    fn default() -> Self {
        RawKafka {
            brokers: "127.0.0.1:9092".into(),
            group_id: "streamd".into(),
            dead_letter_topic: String::new(),
            flush_interval_ms: 500,
            flush_messages: 20_000,
            idle_timeout_ms: 30_000,
            retry_initial_ms: 100,
            retry_max_ms: 10_000,
            workers: 0,
            librdkafka: BTreeMap::new(),
        }
    }
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    /// `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`.
    pub url: String,
    /// Tier (rollup) rows are written at most once per this much event time,
    /// ms ([`DEFAULT_TIER_ROWS_EVERY_MS`] by default); 0: at every base
    /// window close (see [`kafka::Settings::tier_rows_every`]).
    pub tier_rows_every_ms: u64,
    /// Only for a `scylla:` URL.
    pub scylla: RawScylla,
}

/// Tier rows are held back for up to 5 minutes of event time by default:
/// with 1-minute windows a series' hourly and daily rows are written a
/// fifth as often (a fifth fewer rows written in all, see
/// docs/performance.md), readers merge what is held back from the base rows
/// (`store::query::read_current`), and a restart after a crash replays at
/// most 5 minutes of event time more, seconds of work at the measured rates.
pub const DEFAULT_TIER_ROWS_EVERY_MS: u64 = 300_000;

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: "sqlite:streamd.db".into(),
            tier_rows_every_ms: DEFAULT_TIER_ROWS_EVERY_MS,
            scylla: RawScylla::default(),
        }
    }
}

/// `[store.scylla]`: shared with `streamctl --config`.
pub type RawScylla = ScyllaSettings;

/// `[pipelines]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPipelines {
    /// Files or directories of `*.stream` files.
    pub paths: Vec<String>,
}

impl Default for RawPipelines {
    fn default() -> Self {
        RawPipelines { paths: vec!["pipelines/".into()] }
    }
}

/// `[http]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    /// Address of `/metrics`, `/healthz`, `/status`; loopback unless you mean otherwise.
    pub addr: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp { addr: "127.0.0.1:9464".into() }
    }
}

/// `[embedded]`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEmbedded {
    /// Generated events per second of wall time.
    pub events_per_second: u32,
    /// Partitions of the in-process topic.
    pub partitions: i32,
    /// Fraction of generated lines made malformed.
    pub bad_ratio: f64,
    /// Event time starts a day behind the wall clock and advances this many
    /// times faster, so windows close quickly, until it reaches the clock;
    /// then it runs with it (events ahead of the clock would be
    /// `future_time` dead letters).
    pub time_acceleration: f64,
}

impl Default for RawEmbedded {
    fn default() -> Self {
        RawEmbedded { events_per_second: 5000, partitions: 4, bad_ratio: 0.001, time_acceleration: 20.0 }
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Consumer settings (topics are filled from the plan).
    pub kafka: kafka::Settings,
    /// Store URL.
    pub store_url: String,
    /// Scylla settings; nodes and keyspace come from [`Config::store_url`].
    pub scylla: ScyllaConfig,
    /// Pipeline paths.
    pub pipelines: Vec<String>,
    /// HTTP address.
    pub http_addr: SocketAddr,
    /// Embedded demo settings.
    pub embedded: RawEmbedded,
    /// Control topic, if live deploys are on.
    pub control_topic: Option<String>,
    /// Admin endpoint token, if the endpoint is on.
    pub admin_token: Option<String>,
    /// Seconds between instance reports.
    pub report_interval: Duration,
    /// The DNSBL poller: `None` when no resolver is configured.
    pub reputation: Option<reputation::Settings>,
}

impl TryFrom<RawConfig> for Config {
    type Error = anyhow::Error;

    fn try_from(raw: RawConfig) -> anyhow::Result<Config> {
        let mut problems = Vec::new();
        let http_addr = raw
            .http
            .addr
            .parse::<SocketAddr>()
            .map_err(|e| problems.push(format!("http.addr `{}`: {e}", raw.http.addr)))
            .ok();
        if !raw.store.url.starts_with("sqlite:") && !raw.store.url.starts_with("scylla:") {
            problems.push(format!(
                "store.url `{}`: expected `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`",
                raw.store.url
            ));
        }
        let scylla = raw.store.scylla.into_config().map_err(|p| problems.extend(p)).ok();
        if raw.pipelines.paths.is_empty() {
            problems.push("pipelines.paths is empty".into());
        }
        if raw.kafka.flush_messages == 0 || raw.kafka.flush_interval_ms == 0 {
            problems.push("kafka.flush_messages and kafka.flush_interval_ms must be positive".into());
        }
        if raw.embedded.partitions < 1
            || raw.embedded.events_per_second == 0
            || !(0.0..=1.0).contains(&raw.embedded.bad_ratio)
        {
            problems.push("embedded: partitions ≥ 1, events_per_second ≥ 1, bad_ratio in [0, 1]".into());
        }
        let r = &raw.reputation;
        let resolver = if r.resolver.is_empty() {
            Some(None)
        } else {
            r.resolver
                .parse::<SocketAddr>()
                .map(Some)
                .map_err(|e| problems.push(format!("reputation.resolver `{}`: {e} (expected IP:PORT)", r.resolver)))
                .ok()
        };
        if !(0.0..=0.5).contains(&r.jitter) || r.timeout_ms == 0 {
            problems.push("reputation: jitter in [0, 0.5], timeout_ms ≥ 1".into());
        }
        let (Some(http_addr), Some(scylla), Some(resolver), true) = (http_addr, scylla, resolver, problems.is_empty())
        else {
            bail!("invalid configuration:\n  {}", problems.join("\n  "));
        };
        let k = raw.kafka;
        let instance = if raw.deploy.instance.is_empty() { default_instance() } else { raw.deploy.instance };
        Ok(Config {
            kafka: kafka::Settings {
                brokers: k.brokers,
                group_id: k.group_id,
                // Empty: `<topic>.dlq`, following the running plan's first topic.
                dead_letter_topic: Some(if k.dead_letter_topic.is_empty() {
                    format!("{}.dlq", kafka::TOPIC_PLACEHOLDER)
                } else {
                    k.dead_letter_topic
                }),
                librdkafka: k.librdkafka.into_iter().collect(),
                flush_interval: Duration::from_millis(k.flush_interval_ms),
                flush_messages: k.flush_messages,
                idle_timeout: Duration::from_millis(k.idle_timeout_ms),
                retry_initial: Duration::from_millis(k.retry_initial_ms),
                retry_max: Duration::from_millis(k.retry_max_ms.max(k.retry_initial_ms)),
                instance,
                workers: match k.workers {
                    0 => std::thread::available_parallelism().map_or(1, usize::from),
                    n => n,
                },
                tier_rows_every: Duration::from_millis(raw.store.tier_rows_every_ms),
            },
            store_url: raw.store.url,
            scylla,
            pipelines: raw.pipelines.paths,
            http_addr,
            embedded: raw.embedded,
            control_topic: (!raw.deploy.control_topic.is_empty()).then_some(raw.deploy.control_topic),
            admin_token: (!raw.deploy.admin_token.is_empty()).then_some(raw.deploy.admin_token),
            report_interval: Duration::from_secs(raw.deploy.report_interval_s.max(1)),
            reputation: resolver.map(|resolver| reputation::Settings {
                resolver,
                timeout: Duration::from_millis(raw.reputation.timeout_ms),
                jitter: raw.reputation.jitter,
                recheck_after: Duration::from_millis(raw.reputation.recheck_after_ms),
                ..reputation::Settings::default()
            }),
        })
    }
}

/// `<host>-<pid>`: unique among running instances, readable in reports.
fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "streamd".into());
    format!("{host}-{}", std::process::id())
}

/// Reads `path` (if any) into a raw configuration.
pub fn read(path: Option<&str>) -> anyhow::Result<RawConfig> {
    let Some(path) = path else { return Ok(RawConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{path}`"))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration in `{path}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::scylla::schema::Replication;

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../streamd.example.toml");
        let raw: RawConfig = toml::from_str(text).expect("example parses");
        Config::try_from(raw).expect("example validates");
    }

    #[test]
    fn holding_tier_rows_back_reaches_the_consumer() {
        let raw: RawConfig = toml::from_str("[store]\ntier_rows_every_ms = 90000").expect("parses");
        let config = Config::try_from(raw).expect("valid");
        assert_eq!(config.kafka.tier_rows_every, Duration::from_secs(90));
        // Held back 5 minutes by default; 0 writes them at every base window close.
        let default = Config::try_from(RawConfig::default()).expect("valid");
        assert_eq!(default.kafka.tier_rows_every, Duration::from_secs(300));
        let raw: RawConfig = toml::from_str("[store]\ntier_rows_every_ms = 0").expect("parses");
        assert_eq!(Config::try_from(raw).expect("valid").kafka.tier_rows_every, Duration::ZERO);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(toml::from_str::<RawConfig>("[kafka]\nbrokerz = \"x\"").is_err());
        let raw: RawConfig =
            toml::from_str("[http]\naddr = \"nowhere\"\n[store]\nurl = \"postgres://x\"").expect("parses");
        let error = Config::try_from(raw).expect_err("invalid").to_string();
        assert!(error.contains("http.addr") && error.contains("store.url"), "{error}");
    }

    fn scylla(toml: &str) -> anyhow::Result<ScyllaConfig> {
        let raw: RawConfig = toml::from_str(toml)?;
        Ok(Config::try_from(raw)?.scylla)
    }

    #[test]
    fn scylla_defaults_are_simple_strategy_and_local_quorum() {
        let c = scylla("").expect("valid");
        assert_eq!(c.replication, Replication::Simple(1));
        assert_eq!(c.write_consistency, store::scylla::Consistency::LocalQuorum);
        assert_eq!(c.read_consistency, store::scylla::Consistency::LocalQuorum);
        assert_eq!(c.local_datacenter, None);
        assert_eq!((c.max_in_flight, c.request_timeout), (256, std::time::Duration::from_secs(10)));
    }

    #[test]
    fn scylla_settings_reach_the_store_config() {
        let c = scylla(
            "[store.scylla]\nreplication = \"NetworkTopologyStrategy\"\nwrite_consistency = \"each_quorum\"\n\
             read_consistency = \"LOCAL_ONE\"\nlocal_datacenter = \"eu-west\"\n\
             [store.scylla.datacenters]\neu-west = 3\nus-east = 2\n",
        )
        .expect("valid");
        assert_eq!(c.replication, Replication::NetworkTopology(vec![("eu-west".into(), 3), ("us-east".into(), 2)]));
        assert_eq!(c.write_consistency, store::scylla::Consistency::EachQuorum);
        assert_eq!(c.read_consistency, store::scylla::Consistency::LocalOne);
        assert_eq!(c.local_datacenter.as_deref(), Some("eu-west"));
        let c = scylla("[store.scylla]\nmax_in_flight = 32\nrequest_timeout_ms = 2500\n").expect("valid");
        assert_eq!((c.max_in_flight, c.request_timeout), (32, std::time::Duration::from_millis(2500)));
        let simple = scylla("[store.scylla]\nreplication_factor = 3").expect("valid");
        assert_eq!(simple.replication, Replication::Simple(3));
    }

    #[test]
    fn bad_scylla_settings_are_reported_not_panicked_on() {
        for (toml, needle) in [
            ("[store.scylla]\nreplication_factor = 0", "at least 1"),
            ("[store.scylla]\nreplication = \"NetworkTopologyStrategy\"", "at least one data centre"),
            ("[store.scylla]\nreplication = \"NetworkTopologyStrategy\"\n[store.scylla.datacenters]\ndc1 = 0", "`dc1`"),
            ("[store.scylla]\nreplication = \"Simple\"", "store.scylla.replication `Simple`"),
            ("[store.scylla]\nwrite_consistency = \"QUORUMS\"", "store.scylla.write_consistency"),
            ("[store.scylla]\nread_consistency = \"ANY\"", "writes only"),
            ("[store.scylla.datacenters]\ndc1 = 3", "store.scylla.datacenters"),
            ("[store.scylla]\nmax_in_flight = 0", "store.scylla.max_in_flight"),
            ("[store.scylla]\nrequest_timeout_ms = 0", "store.scylla.request_timeout_ms"),
            (
                "[store.scylla]\nreplication = \"NetworkTopologyStrategy\"\nreplication_factor = 3\n\
                 [store.scylla.datacenters]\ndc1 = 3",
                "store.scylla.replication_factor",
            ),
            (
                "[store.scylla]\nreplication = \"NetworkTopologyStrategy\"\nlocal_datacenter = \"dc2\"\n\
                 [store.scylla.datacenters]\ndc1 = 3",
                "`dc2`",
            ),
        ] {
            let error = format!("{:#}", scylla(toml).expect_err(toml));
            assert!(error.contains(needle), "{toml}: {error}");
        }
        assert!(toml::from_str::<RawConfig>("[store.scylla]\nconsistency = \"ONE\"").is_err());
        assert!(toml::from_str::<RawConfig>("[store.scylla]\nreplication_factor = -1").is_err());
    }
}
