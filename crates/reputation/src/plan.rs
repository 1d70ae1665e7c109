//! From a compiled `dnsbl` source to a poller configuration.
//!
//! The pipeline says what to poll (lists, targets, how often); the process
//! says how (which resolver, timeouts): [`Settings`], from `streamd`'s
//! configuration.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use dsl::plan::{DnsblKind, DnsblPlan};

use crate::poller::{ListConfig, PollerConfig};
use crate::target::{expand, ListKind};
use crate::{Error, Result};

/// All targets of one source together, after expanding blocks, at most.
pub const MAX_TARGETS: usize = 262_144;

/// How the process runs the poller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The recursive resolver to ask.
    pub resolver: SocketAddr,
    /// How long one query may take.
    pub timeout: Duration,
    /// The fraction (0 to 0.5) by which a sweep's pause may move either way.
    pub jitter: f64,
    /// How soon a target whose state changed is asked again.
    pub recheck_after: Duration,
    /// Answers kept per list at most.
    pub cache_capacity: usize,
    /// An answer is kept at most this long, whatever its TTL.
    pub max_cache_ttl: Duration,
    /// Seeds the jitter.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resolver: SocketAddr::from(([127, 0, 0, 1], 53)),
            timeout: Duration::from_secs(2),
            jitter: 0.1,
            recheck_after: Duration::from_secs(60),
            cache_capacity: 100_000,
            max_cache_ttl: Duration::from_secs(3600),
            seed: 0,
        }
    }
}

/// The poller configuration of a compiled `dnsbl` source. `env` reads the
/// environment variables named by `key_env` (the keys stay out of the
/// pipeline files and the plan).
pub fn poller_config(
    plan: &DnsblPlan,
    settings: &Settings,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PollerConfig> {
    let mut targets = BTreeSet::new();
    for spec in &plan.targets {
        let room = MAX_TARGETS.saturating_sub(targets.len());
        let expanded = expand(spec, room.min(dsl::dnsbl::MAX_BLOCK_ADDRESSES as usize))?;
        targets.extend(expanded);
        if targets.len() > MAX_TARGETS {
            return Err(Error::TooManyTargets { target: spec.clone(), max: MAX_TARGETS });
        }
    }
    let mut lists = Vec::new();
    for list in &plan.lists {
        let query_key = match &list.key_env {
            Some(var) => Some(
                env(var)
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| Error::MissingKey { list: list.name.clone(), var: var.clone() })?,
            ),
            None => None,
        };
        lists.push(ListConfig {
            name: list.name.clone(),
            zone: list.zone.clone(),
            kind: match list.kind {
                DnsblKind::Ip => ListKind::Ip,
                DnsblKind::Domain => ListKind::Domain,
            },
            meanings: list
                .codes
                .iter()
                .filter_map(|(code, meaning)| Some((code.parse::<Ipv4Addr>().ok()?, meaning.clone())))
                .collect(),
            weight: list.weight,
            query_key,
            max_qps: list.max_qps,
            max_queries_per_day: list.max_per_day,
        });
    }
    let config = PollerConfig {
        resolver: settings.resolver,
        timeout: settings.timeout,
        interval: Duration::from_millis(plan.every_ms),
        jitter: settings.jitter,
        recheck_after: settings.recheck_after,
        cache_capacity: settings.cache_capacity,
        max_cache_ttl: settings.max_cache_ttl,
        lists,
        targets: targets.into_iter().collect(),
        seed: settings.seed,
    };
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"version 1
source reputation from dnsbl {
  every 2m
  targets ["192.0.2.0/30", "192.0.2.1", "mail.example.com"]
  list zen zone "zen.example" ip weight 3 max_qps 5 max_per_day 1000 key_env "ZEN_KEY" codes { "127.0.0.2": "SBL" }
  list dbl zone "dbl.example" domain
}
"#;

    fn plan() -> DnsblPlan {
        let compiled = dsl::compile_str("r.stream", PIPELINE);
        let plan = compiled.plan.clone().unwrap_or_else(|| panic!("{}", compiled.render_diagnostics()));
        plan.sources[0].dnsbl.clone().expect("a dnsbl source")
    }

    #[test]
    fn a_compiled_source_becomes_a_poller_configuration() {
        let config =
            poller_config(&plan(), &Settings::default(), |var| (var == "ZEN_KEY").then(|| "secret".to_owned()))
                .unwrap();
        assert_eq!(config.interval, Duration::from_secs(120));
        assert_eq!(config.targets.len(), 5, "4 addresses (one given twice) and a domain");
        let zen = &config.lists[0];
        assert_eq!(zen.query_zone(), "secret.zen.example");
        assert_eq!(zen.meanings[&Ipv4Addr::new(127, 0, 0, 2)], "SBL");
        assert_eq!((zen.weight, zen.max_qps, zen.max_queries_per_day), (3.0, 5.0, Some(1000)));
        assert_eq!(config.lists[1].kind, ListKind::Domain);
        assert_eq!(config.lists[1].max_qps, dsl::dnsbl::DEFAULT_MAX_QPS);
    }

    #[test]
    fn a_missing_key_is_a_clear_error() {
        let err = poller_config(&plan(), &Settings::default(), |_| None).unwrap_err();
        assert_eq!(err.to_string(), "list `zen` needs its query key in the environment variable `ZEN_KEY`");
    }
}
