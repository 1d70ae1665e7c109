//! The pollers' own series on `/metrics` (`stream_dnsbl_poller_*`): what
//! this instance's pollers asked, found in their caches, were refused by
//! their budgets, and how long their sweeps took. The observations
//! themselves are the pipelines' series (`stream_dnsbl_status_*`, ...).

use std::collections::HashMap;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use reputation::{ListCounters, Report};

/// The pollers' counters, registered with the daemon's registry.
pub struct PollerMetrics {
    queries: IntCounterVec,
    cache_hits: IntCounterVec,
    answers: IntCounterVec,
    budget_refusals: IntCounterVec,
    canary_failures: IntCounterVec,
    targets: IntGaugeVec,
    targets_dropped: IntGaugeVec,
    sweep_seconds: HistogramVec,
}

impl PollerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let metric = IntGaugeVec::new(Opts::new(name, help), &["source"])?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let sweep_seconds = HistogramVec::new(
            HistogramOpts::new("stream_dnsbl_poller_sweep_seconds", "Duration of the DNSBL sweeps of this instance.")
                .buckets(vec![0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
            &["source"],
        )?;
        registry.register(Box::new(sweep_seconds.clone()))?;
        Ok(PollerMetrics {
            queries: counter(
                "stream_dnsbl_poller_queries_total",
                "DNS queries sent to the resolver (A and TXT, canaries included).",
                &["source", "list"],
            )?,
            cache_hits: counter(
                "stream_dnsbl_poller_cache_hits_total",
                "Targets answered from the poller's cache (within the answer's TTL).",
                &["source", "list"],
            )?,
            answers: counter(
                "stream_dnsbl_poller_answers_total",
                "Targets' A answers (not from the cache), by state.",
                &["source", "list", "state"],
            )?,
            budget_refusals: counter(
                "stream_dnsbl_poller_budget_refusals_total",
                "Queries held back by the rate budget (budget=rate, sent later) or not sent as the day's allowance was used up (budget=daily).",
                &["source", "list", "budget"],
            )?,
            canary_failures: counter(
                "stream_dnsbl_poller_canary_failures_total",
                "Sweeps whose RFC 5782 canaries failed: the list was degraded for them.",
                &["source", "list"],
            )?,
            targets: gauge("stream_dnsbl_poller_targets", "Targets of the latest sweep.")?,
            targets_dropped: gauge(
                "stream_dnsbl_poller_targets_dropped",
                "Targets taken from metrics that the latest sweep left out for the source's target limit.",
            )?,
            sweep_seconds,
        })
    }

    /// Adds what a report says happened since `last` (the counters of the
    /// poller's previous report, per list), and keeps its counters there.
    pub fn record(&self, source: &str, report: &Report, last: &mut HashMap<String, ListCounters>) {
        for list in &report.lists {
            let before = last.insert(list.list.clone(), list.counters).unwrap_or_default();
            let now = list.counters;
            let labels = [source, list.list.as_str()];
            let add = |vec: &IntCounterVec, labels: &[&str], now: u64, before: u64| {
                vec.with_label_values(labels).inc_by(now.saturating_sub(before));
            };
            add(&self.queries, &labels, now.queries, before.queries);
            add(&self.cache_hits, &labels, now.cache_hits, before.cache_hits);
            add(&self.canary_failures, &labels, now.canary_failures, before.canary_failures);
            for (state, now, before) in [
                ("listed", now.listed, before.listed),
                ("clean", now.clean, before.clean),
                ("degraded", now.degraded, before.degraded),
            ] {
                add(&self.answers, &[source, &list.list, state], now, before);
            }
            add(&self.budget_refusals, &[source, &list.list, "rate"], now.rate_waits, before.rate_waits);
            add(&self.budget_refusals, &[source, &list.list, "daily"], now.daily_refused, before.daily_refused);
        }
        if let Some(sweep) = &report.sweep {
            self.sweep_seconds.with_label_values(&[source]).observe(sweep.took.as_secs_f64());
            self.targets.with_label_values(&[source]).set(i64::try_from(sweep.targets).unwrap_or(i64::MAX));
            self.targets_dropped
                .with_label_values(&[source])
                .set(i64::try_from(sweep.dropped_for_limit).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::{Encoder, TextEncoder};
    use reputation::{ListStatus, SweepStats};

    use super::*;

    fn report(counters: ListCounters, sweep: Option<SweepStats>) -> Report {
        let list = ListStatus {
            list: "zen".into(),
            zone: "zen.example".into(),
            canaries_ok: true,
            canary_problem: None,
            degraded_cycles: 0,
            queries_today: counters.queries,
            budget_used: 0.0,
            counters,
        };
        Report { observations: Vec::new(), lists: vec![list], sweep }
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// The poller's counters grow by what each report adds; a new poller
    /// (a deploy, a take-over) starts its own count without moving them back.
    #[test]
    fn the_pollers_counters_reach_the_registry_as_increments() {
        let registry = Registry::new();
        let metrics = PollerMetrics::register(&registry).expect("register");
        let mut last = HashMap::new();
        let first = ListCounters {
            queries: 5,
            cache_hits: 1,
            listed: 1,
            clean: 2,
            degraded: 1,
            rate_waits: 3,
            daily_refused: 0,
            canary_failures: 0,
        };
        let sweep = SweepStats { took: Duration::from_millis(1500), targets: 4, dropped_for_limit: 2 };
        metrics.record("rep", &report(first, Some(sweep)), &mut last);
        let second = ListCounters { queries: 9, clean: 4, daily_refused: 2, canary_failures: 1, ..first };
        metrics.record("rep", &report(second, None), &mut last);
        // A new poller: its counts start again at zero.
        let mut fresh = HashMap::new();
        metrics.record("rep", &report(ListCounters { queries: 2, ..ListCounters::default() }, None), &mut fresh);

        let mut buffer = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut buffer).expect("encode");
        let text = String::from_utf8(buffer).expect("utf-8");
        let expected = [
            (r#"queries_total{list="zen",source="rep"}"#, 11.0),
            (r#"cache_hits_total{list="zen",source="rep"}"#, 1.0),
            (r#"canary_failures_total{list="zen",source="rep"}"#, 1.0),
            (r#"answers_total{list="zen",source="rep",state="clean"}"#, 4.0),
            (r#"answers_total{list="zen",source="rep",state="listed"}"#, 1.0),
            (r#"budget_refusals_total{budget="rate",list="zen",source="rep"}"#, 3.0),
            (r#"budget_refusals_total{budget="daily",list="zen",source="rep"}"#, 2.0),
            (r#"targets_dropped{source="rep"}"#, 2.0),
            (r#"sweep_seconds_sum{source="rep"}"#, 1.5),
            (r#"sweep_seconds_count{source="rep"}"#, 1.0),
        ];
        for (series, value) in expected {
            assert_eq!(sample(&text, &format!("stream_dnsbl_poller_{series}")), Some(value), "{series}\n{text}");
        }
    }
}
