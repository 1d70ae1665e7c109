//! Targets taken from the delivery stream itself: `targets from metric M key
//! K within D` asks, at each sweep, about the distinct values of `M`'s key
//! `K` in its stored rows whose window starts within the last `D` (e.g.
//! every `sending_ip` seen in the last day), besides the static targets.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use dsl::plan::DnsblTargetsFromPlan;
use engine::KeyVal;
use store::{RowFilter, Store};

use tracing::{info, warn};

use crate::plan::MAX_TARGETS;
use crate::poller::RefreshTargets;
use crate::target::{ListKind, Target};

/// A store shared between the poller and whoever else writes to it.
pub type SharedStore = Arc<Mutex<Box<dyn Store + Send>>>;

/// What a poller of `source` calls before each sweep: its configured
/// targets and the recent key values of the metrics `targets_from` names,
/// read from `store`, up to [`MAX_TARGETS`] (what is dropped for the limit
/// is counted in the log and returned). A metric that cannot be read is left out, said
/// in the log; the configured targets are always polled.
pub fn refresher(
    plan: &dsl::Plan,
    source: &str,
    targets_from: &[DnsblTargetsFromPlan],
    kinds: Vec<ListKind>,
    store: SharedStore,
) -> RefreshTargets {
    let plan = plan.clone();
    let (source, targets_from) = (source.to_owned(), targets_from.to_vec());
    Box::new(move |fixed: &[Target]| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        let now_ms = i64::try_from(now).unwrap_or(i64::MAX);
        let mut values = BTreeSet::new();
        {
            let store = store.lock().unwrap_or_else(PoisonError::into_inner);
            for from in &targets_from {
                match recent_key_values(store.as_ref(), &plan, from, now_ms) {
                    Ok(found) => values.extend(found),
                    Err(error) => {
                        warn!(source, metric = from.metric, %error, "Cannot read the targets taken from a metric; polling the others.");
                    }
                }
            }
        }
        let merged = merge(fixed, values, &kinds, MAX_TARGETS);
        if merged.dropped_for_limit > 0 {
            warn!(
                source,
                dropped_for_limit = merged.dropped_for_limit,
                limit = MAX_TARGETS,
                "Targets taken from metrics exceed the source's target limit; the rest are not polled."
            );
        }
        info!(
            source,
            targets = merged.targets.len(),
            from_stream = merged.from_stream,
            dropped_for_limit = merged.dropped_for_limit,
            ignored = merged.ignored,
            "DNSBL sweep targets."
        );
        (merged.targets, merged.dropped_for_limit)
    })
}

/// The static targets merged with values taken from the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Static targets first, then the stream's new ones, each once.
    pub targets: Vec<Target>,
    /// Targets the stream added (not among the static ones).
    pub from_stream: usize,
    /// Stream values left out because the source's target limit was reached.
    pub dropped_for_limit: usize,
    /// Stream values that are neither an address nor a domain, or of a kind
    /// (IP or domain) no list of the source asks about.
    pub ignored: usize,
}

/// Merges `values` (from the stream) into `fixed` (the static targets): a
/// value becomes a target when it parses as an address or a domain that a
/// list of kind in `kinds` asks about, and while fewer than `limit` targets
/// are held. Values come in their order (sorted, from [`recent_key_values`]).
pub fn merge<I>(fixed: &[Target], values: I, kinds: &[ListKind], limit: usize) -> Merged
where
    I: IntoIterator<Item = String>,
{
    let mut seen: BTreeSet<Target> = fixed.iter().cloned().collect();
    let mut merged = Merged { targets: fixed.to_vec(), ..Merged::default() };
    for value in values {
        let Ok(target) = Target::parse(&value) else {
            merged.ignored += 1;
            continue;
        };
        if !kinds.contains(&target.kind()) {
            merged.ignored += 1;
            continue;
        }
        if seen.contains(&target) {
            continue;
        }
        if merged.targets.len() >= limit {
            merged.dropped_for_limit += 1;
            continue;
        }
        seen.insert(target.clone());
        merged.targets.push(target);
        merged.from_stream += 1;
    }
    merged
}

/// The distinct non-null values of `from`'s key in the base-window rows of
/// its metric that start at or after `now_ms - within`, sorted. A metric or
/// key the plan does not have gives nothing.
///
/// # Errors
/// When the store cannot be read.
pub fn recent_key_values(
    store: &dyn Store,
    plan: &dsl::Plan,
    from: &DnsblTargetsFromPlan,
    now_ms: i64,
) -> store::Result<BTreeSet<String>> {
    let Some(metric) = plan.metrics.iter().position(|m| m.name == from.metric) else {
        return Ok(BTreeSet::new());
    };
    let Some(key) = plan.metrics[metric].keys.iter().position(|k| k.name == from.key) else {
        return Ok(BTreeSet::new());
    };
    let within = i64::try_from(from.within_ms).unwrap_or(i64::MAX);
    let filter = RowFilter {
        tier: 0,
        from_ms: Some(now_ms.saturating_sub(within)),
        to_ms: None,
        equals: Vec::new(),
        partition: None,
    };
    let rows = store.read(plan, metric, &filter)?;
    Ok(rows
        .iter()
        .filter_map(|row| match row.keys.get(key) {
            Some(KeyVal::Str(s)) => Some(s.to_string()),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(texts: &[&str]) -> Vec<Target> {
        texts.iter().map(|t| Target::parse(t).unwrap()).collect()
    }

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn stream_values_join_the_static_targets_once_each() {
        let fixed = targets(&["192.0.2.1", "mail.example.com"]);
        let values = strings(&["192.0.2.1", "198.51.100.7", "2001:db8::9", "198.51.100.7"]);
        let merged = merge(&fixed, values, &[ListKind::Ip, ListKind::Domain], 100);
        assert_eq!(merged.targets, targets(&["192.0.2.1", "mail.example.com", "198.51.100.7", "2001:db8::9"]));
        assert_eq!((merged.from_stream, merged.dropped_for_limit, merged.ignored), (2, 0, 0));
    }

    #[test]
    fn values_no_list_asks_about_are_ignored() {
        let values = strings(&["not a host", "", "mail.example.com", "198.51.100.7"]);
        let merged = merge(&[], values, &[ListKind::Ip], 100);
        assert_eq!(merged.targets, targets(&["198.51.100.7"]));
        assert_eq!(merged.ignored, 3);
        let merged = merge(&[], strings(&["198.51.100.7", "Mail.Example.com."]), &[ListKind::Domain], 100);
        assert_eq!(merged.targets, targets(&["mail.example.com"]));
    }

    #[test]
    fn the_limit_keeps_the_static_targets_and_counts_what_it_drops() {
        let fixed = targets(&["192.0.2.1", "192.0.2.2"]);
        let values = strings(&["198.51.100.1", "198.51.100.2", "198.51.100.3", "192.0.2.1"]);
        let merged = merge(&fixed, values, &[ListKind::Ip], 3);
        assert_eq!(merged.targets, targets(&["192.0.2.1", "192.0.2.2", "198.51.100.1"]));
        assert_eq!((merged.from_stream, merged.dropped_for_limit), (1, 2));
    }
}
