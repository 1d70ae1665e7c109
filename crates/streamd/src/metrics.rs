//! Prometheus metrics of the daemon (`stream_*`), fed by the consumer's
//! observer callbacks, and the latest status for `/status`.

use kafka::{FlushReport, Observer, Status};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The registry and every metric in it.
pub struct Metrics {
    registry: Registry,
    /// Shared with the query API, which answers for the running plan.
    current_plan: crate::query_api::CurrentPlan,
    plan_info: IntGaugeVec,
    plan_rejections: IntCounter,
    events_consumed: IntCounter,
    pipeline_events: IntCounterVec,
    late_events: IntCounterVec,
    overflow_events: IntCounterVec,
    dead_letters: IntCounterVec,
    rows_written: IntCounterVec,
    store_write_seconds: Histogram,
    store_errors: IntCounter,
    fenced_partitions: IntCounterVec,
    consumer_lag: IntGaugeVec,
    replay_point_age: IntGaugeVec,
    live_series: IntGaugeVec,
    paused: IntGauge,
    awaiting_plan: IntGauge,
    state: Mutex<State>,
    /// The pipelines' `export prometheus` series.
    export: crate::export::Exporter,
    /// The DNSBL pollers' own series.
    dnsbl_poller: Arc<crate::reputation::metrics::PollerMetrics>,
}

#[derive(Default)]
struct State {
    status: Status,
    deployment: Deployment,
    /// Per metric name, the last totals seen, to turn status snapshots into counter increments.
    last_totals: BTreeMap<String, (u64, u64, u64)>,
    /// Per partition: the replay point and when it last moved.
    replay_points: BTreeMap<(String, i32), (i64, Instant)>,
}

/// The running plan and the last refusal, for `/status` and instance reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Deployment {
    /// Bundle version of the running plan; `None` for local files.
    pub plan_version: Option<u64>,
    /// Hash of the running plan.
    pub plan_hash: String,
    /// Metric names of the running plan.
    pub metrics: Vec<String>,
    /// When the running plan was applied, ms since the epoch.
    pub applied_at_ms: i64,
    /// The last plan refused, if any.
    pub last_rejection: Option<kafka::control::Rejection>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    // Names are static and unique; registration cannot fail.
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

impl Metrics {
    /// Registers every metric. The running plan is the empty one until the
    /// consumer applies its first ([`Observer::plan_applied`]).
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| IntGaugeVec::new(Opts::new(name, help), labels);
        let build = gauge_vec("stream_build_info", "Build of this streamd.", &["version"])?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        register(&registry, build);
        let plan_info = register(
            &registry,
            gauge_vec(
                "stream_plan_info",
                "The running plan: its bundle version (`local` for files), hash, language version, metric count.",
                &["version", "plan_hash", "language_version", "metrics"],
            )?,
        );
        let metrics = Metrics {
            current_plan: Arc::new(RwLock::new(Arc::new(dsl::Plan::empty()))),
            plan_info,
            plan_rejections: register(
                &registry,
                IntCounter::new("stream_plan_rejections_total", "Plans refused; the running plan stayed.")?,
            ),
            events_consumed: register(
                &registry,
                IntCounter::new("stream_events_consumed_total", "Messages consumed and processed.")?,
            ),
            pipeline_events: register(
                &registry,
                counter_vec("stream_pipeline_events_total", "Events counted by each pipeline metric.", &["metric"])?,
            ),
            late_events: register(
                &registry,
                counter_vec("stream_late_events_total", "Events later than a metric's lateness.", &["metric"])?,
            ),
            overflow_events: register(
                &registry,
                counter_vec(
                    "stream_cardinality_overflow_total",
                    "Events sent to a metric's __other__ series.",
                    &["metric"],
                )?,
            ),
            dead_letters: register(
                &registry,
                counter_vec("stream_dead_letters_total", "Rejected messages, by reason.", &["reason"])?,
            ),
            rows_written: register(
                &registry,
                counter_vec(
                    "stream_rows_written_total",
                    "Rows written to the store (windows and tiers).",
                    &["metric"],
                )?,
            ),
            store_write_seconds: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new("stream_store_write_seconds", "Duration of store writes (one per flush).")
                        .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                )?,
            ),
            store_errors: register(
                &registry,
                IntCounter::new("stream_store_errors_total", "Failed store writes (retried).")?,
            ),
            fenced_partitions: register(
                &registry,
                counter_vec(
                    "stream_fenced_partitions_total",
                    "Partitions dropped because another instance claimed them in the store (a write was refused).",
                    &["topic"],
                )?,
            ),
            consumer_lag: register(
                &registry,
                gauge_vec("stream_consumer_lag", "Messages behind the partition's end.", &["topic", "partition"])?,
            ),
            replay_point_age: register(
                &registry,
                gauge_vec(
                    "stream_replay_point_age_seconds",
                    "Seconds since a partition's committed replay point last moved.",
                    &["topic", "partition"],
                )?,
            ),
            live_series: register(
                &registry,
                gauge_vec("stream_live_series", "Open series per metric on this instance.", &["metric"])?,
            ),
            paused: register(
                &registry,
                IntGauge::new("stream_consumption_paused", "1 while consumption is paused by a failing store.")?,
            ),
            awaiting_plan: register(
                &registry,
                IntGauge::new(
                    "stream_partitions_awaiting_plan",
                    "Assigned partitions paused until the newer plan their checkpoint was written under runs here.",
                )?,
            ),
            dnsbl_poller: Arc::new(crate::reputation::metrics::PollerMetrics::register(&registry)?),
            registry,
            state: Mutex::new(State::default()),
            export: crate::export::Exporter::default(),
        };
        Ok(metrics)
    }

    /// Records `plan` as the running plan.
    fn set_plan(&self, version: Option<u64>, plan: &dsl::Plan) {
        self.plan_info.reset();
        let version_label = version.map_or_else(|| "local".to_string(), |v| v.to_string());
        let hash = plan.hash.get(..16).unwrap_or(&plan.hash);
        self.plan_info
            .with_label_values(&[
                &version_label,
                hash,
                &plan.language_version.to_string(),
                &plan.metrics.len().to_string(),
            ])
            .set(1);
        *self.current_plan.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(plan.clone());
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.deployment.plan_version = version;
        state.deployment.plan_hash = plan.hash.clone();
        state.deployment.metrics = plan.metrics.iter().map(|m| m.name.clone()).collect();
        state.deployment.applied_at_ms = kafka::control::now_ms();
    }

    /// The DNSBL pollers' series.
    pub fn dnsbl_poller(&self) -> Arc<crate::reputation::metrics::PollerMetrics> {
        Arc::clone(&self.dnsbl_poller)
    }

    /// The running plan, for readers that must follow deploys.
    pub fn current_plan(&self) -> crate::query_api::CurrentPlan {
        Arc::clone(&self.current_plan)
    }

    /// The running plan and the last refusal.
    pub fn deployment(&self) -> Deployment {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).deployment.clone()
    }

    /// The exposition in Prometheus text format.
    pub fn render(&self) -> String {
        {
            let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for ((topic, partition), (_, since)) in &state.replay_points {
                self.replay_point_age
                    .with_label_values(&[topic, &partition.to_string()])
                    .set(since.elapsed().as_secs() as i64);
            }
        }
        let mut buffer = Vec::new();
        let families = self.registry.gather();
        let _ = TextEncoder::new().encode(&families, &mut buffer);
        let mut text = String::from_utf8(buffer).unwrap_or_default();
        let taken = families.iter().map(|f| f.name().to_string()).collect();
        self.export.render(&taken, &mut text);
        text
    }

    /// The latest status.
    pub fn status(&self) -> Status {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).status.clone()
    }
}

impl Observer for Metrics {
    fn flushed_state(
        &self,
        plan: &engine::CompiledPlan,
        partitions: &[(&str, &engine::Partition)],
        rows: &[(&str, &engine::Row)],
    ) {
        self.export.observe(plan, partitions, rows);
    }

    fn flushed(&self, report: &FlushReport) {
        self.events_consumed.inc_by(report.messages);
        for (metric, rows) in &report.rows_by_metric {
            self.rows_written.with_label_values(&[metric]).inc_by(*rows);
        }
        for (reason, n) in &report.dead_letters {
            self.dead_letters.with_label_values(&[reason.as_str()]).inc_by(*n);
        }
        self.store_write_seconds.observe(report.store_write.as_secs_f64());
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (topic, partition, replay) in &report.committed {
            let entry = state.replay_points.entry((topic.clone(), *partition)).or_insert((*replay, Instant::now()));
            if entry.0 != *replay {
                *entry = (*replay, Instant::now());
            }
        }
    }

    fn store_failed(&self, _error: &store::Error, _retry_in: Duration) {
        self.store_errors.inc();
    }

    fn fenced(&self, topic: &str, partitions: &[i32]) {
        self.fenced_partitions.with_label_values(&[topic]).inc_by(partitions.len() as u64);
    }

    fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(lag);
    }

    fn status(&self, status: &Status) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in &status.metrics {
            let (events, late, overflow) = state.last_totals.get(&m.name).copied().unwrap_or_default();
            // Totals drop when partitions move away; counters only count increases.
            self.pipeline_events.with_label_values(&[&m.name]).inc_by(m.events.saturating_sub(events));
            self.late_events.with_label_values(&[&m.name]).inc_by(m.late.saturating_sub(late));
            self.overflow_events.with_label_values(&[&m.name]).inc_by(m.overflow.saturating_sub(overflow));
            state.last_totals.insert(m.name.clone(), (m.events, m.late, m.overflow));
            self.live_series.with_label_values(&[&m.name]).set(m.live_series as i64);
        }
        self.paused.set(i64::from(status.is_paused));
        self.awaiting_plan.set(status.awaiting_plan.len() as i64);
        let assigned: Vec<(String, i32)> = status.partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect();
        state.replay_points.retain(|k, _| assigned.contains(k));
        state.status = status.clone();
    }

    fn plan_applied(&self, version: Option<u64>, plan: &dsl::Plan, changes: &dsl::bundle::MetricChanges) {
        self.set_plan(version, plan);
        // Stopped metrics have no live series any more.
        for name in changes.removed.iter() {
            let _ = self.live_series.remove_label_values(&[name]);
        }
    }

    fn plan_rejected(&self, version: Option<u64>, refusal: &kafka::Refusal) {
        self.plan_rejections.inc();
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.deployment.last_rejection = Some(kafka::control::Rejection::new(version, refusal));
    }
}
