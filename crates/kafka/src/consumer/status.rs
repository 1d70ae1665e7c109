//! What the consumer tells the daemon: its status (`/status`) and the
//! plans it applied or refused (deployment history, observer).

use super::state::Shared;
use crate::{AwaitingPlan, MetricStatus, PartitionStatus, Refusal, Status};
use store::DeploymentRecord;
use tracing::warn;

impl Shared {
    pub(super) fn reject(&mut self, version: Option<u64>, refusal: &Refusal) {
        warn!(version = ?version, error = %refusal, "Rejected a plan; the running plan stays.");
        self.record_deployment(version, "rejected", refusal.to_string());
        self.observer.plan_rejected(version, refusal);
        self.publish_status();
    }

    /// Appends to the store's deployment history; a failure only costs the record.
    pub(super) fn record_deployment(&mut self, version: Option<u64>, outcome: &str, detail: String) {
        let record = DeploymentRecord {
            version,
            instance: self.settings.instance.clone(),
            at_ms: crate::control::now_ms(),
            outcome: outcome.into(),
            plan_hash: self.plan.plan.hash.clone(),
            detail,
        };
        if let Err(error) = self.store().record_deployment(&record) {
            warn!(error = %error, version = ?version, "Cannot record the deployment in the store.");
        }
    }

    pub(super) fn publish_status(&self) {
        let metrics = &self.plan.plan.metrics;
        let mut status = Status { is_paused: self.is_paused, ..Default::default() };
        status.metrics = metrics
            .iter()
            .enumerate()
            .map(|(i, m)| MetricStatus {
                name: m.name.clone(),
                events: self.partitions.values().map(|p| p.stats().metrics[i].events).sum(),
                late: self.partitions.values().map(|p| p.stats().metrics[i].late).sum(),
                overflow: self.partitions.values().map(|p| p.stats().metrics[i].overflow).sum(),
                live_series: self.partitions.values().map(|p| p.live_series()[i]).sum(),
            })
            .collect();
        status.partitions = self
            .partitions
            .iter()
            .map(|(key, p)| PartitionStatus {
                topic: key.0.clone(),
                partition: key.1,
                max_event_time: p.max_event_time().map(engine::value::format_timestamp),
                replay_point: self.ledger.committed(key),
                next_offset: p.next_offset(),
                live_series: p.live_series(),
                held_back_tier_rows: p.held_back_tier_rows(),
            })
            .collect();
        status.awaiting_plan = self
            .unrestored
            .iter()
            .filter_map(|((topic, partition), retry)| {
                let version = retry.awaiting_plan?;
                Some(AwaitingPlan { topic: topic.clone(), partition: *partition, version })
            })
            .collect();
        self.observer.status(&status);
    }
}
