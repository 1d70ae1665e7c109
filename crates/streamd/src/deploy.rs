//! Live reconfiguration on the daemon's side: compiling bundles from the
//! control topic, reporting this instance, `--watch`, and the admin
//! endpoint that publishes bundles for clients without Kafka access.

use crate::http::ApiError;
use crate::metrics::Metrics;
use axum::http::StatusCode;
use dsl::bundle::{Bundle, Provenance};
use engine::{CompiledPlan, EngineConfig};
use kafka::control::{ControlPublisher, ControlTopic, InstanceReport};
use kafka::{PlanUpdate, Refusal};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Compiles a bundle with this build's language and engine, or says why it cannot run here.
pub fn compile_bundle(bundle: &Bundle) -> Result<Arc<CompiledPlan>, engine::Error> {
    CompiledPlan::from_bundle(bundle, EngineConfig::default()).map(Arc::new)
}

/// Describes this instance for the control topic.
pub fn report(metrics: &Metrics, instance: &str, group: &str, started_at_ms: i64) -> InstanceReport {
    let status = metrics.status();
    let deployment = metrics.deployment();
    InstanceReport {
        instance: instance.to_string(),
        group: group.to_string(),
        plan_version: deployment.plan_version,
        plan_hash: deployment.plan_hash,
        assignment: status.partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect(),
        is_paused: status.is_paused,
        last_rejection: deployment.last_rejection,
        started_at_ms,
        reported_at_ms: kafka::control::now_ms(),
    }
}

/// `streamd --watch DIR`: publishes the directory as a new bundle whenever
/// its files change (and compile); a version that does not compile is
/// reported as a refusal and nothing is published.
pub struct Watch {
    /// The directory.
    pub dir: PathBuf,
    /// Where bundles go.
    pub control: ControlTopic,
    /// Refusals go to the consumer like any other.
    pub updates: Sender<PlanUpdate>,
}

impl Watch {
    /// Polls every second until `shutdown` is set.
    pub fn run(self, shutdown: &AtomicBool) {
        let publisher = match self.control.publisher() {
            Ok(p) => p,
            Err(error) => {
                warn!(error = %error, "--watch cannot publish; watching stopped.");
                return;
            }
        };
        let mut last_files: Option<Vec<(String, String)>> = None;
        while !shutdown.load(Ordering::Relaxed) {
            match dsl::files::bundle_files(&self.dir) {
                Ok(files) if last_files.as_ref() != Some(&files) => {
                    last_files = Some(files.clone());
                    self.publish_if_new(&publisher, files);
                }
                Ok(_) => {}
                Err(error) => warn!(dir = %self.dir.display(), error = %error, "--watch cannot read the directory."),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn publish_if_new(&self, publisher: &ControlPublisher, files: Vec<(String, String)>) {
        let state = match self.control.read_all(Duration::from_secs(10)) {
            Ok(state) => state,
            Err(error) => {
                warn!(error = %error, "--watch cannot read the control topic.");
                return;
            }
        };
        let provenance = Provenance {
            author: "streamd --watch".into(),
            created_at_ms: kafka::control::now_ms(),
            note: Some(format!("files of {}", self.dir.display())),
            git_commit: None,
        };
        match Bundle::build(files, state.next_version(), provenance) {
            Ok((bundle, _)) if state.latest().is_some_and(|b| b.hash == bundle.hash) => {}
            Ok((bundle, _)) => match compile_bundle(&bundle) {
                Ok(_) => match publisher.publish_bundle(&bundle, Duration::from_secs(10)) {
                    Ok(()) => {
                        info!(version = bundle.version, dir = %self.dir.display(), "Published the changed files.")
                    }
                    Err(error) => warn!(error = %error, "--watch cannot publish the bundle."),
                },
                // Every daemon would refuse it: report it here and publish nothing.
                Err(error) => {
                    let _ = self.updates.send(PlanUpdate { version: None, plan: Err(Refusal::from(&error)) });
                }
            },
            Err(compiled) => {
                let refusal = Refusal::Files {
                    dir: self.dir.display().to_string(),
                    rendered: dsl::render_all(&compiled.diagnostics, &compiled.sources),
                };
                let _ = self.updates.send(PlanUpdate { version: None, plan: Err(refusal) });
            }
        }
    }
}

/// The admin endpoint's work, behind its bearer token.
pub struct Admin {
    /// The expected token.
    pub token: String,
    /// The control topic it reads and publishes to.
    pub control: ControlTopic,
}

impl Admin {
    /// Whether the `authorization` header value carries the token.
    pub fn is_authorized(&self, authorization: Option<&str>) -> bool {
        let given = authorization.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim);
        // Compare in constant time: the token is a secret.
        given.is_some_and(|g| {
            g.len() == self.token.len() && g.bytes().zip(self.token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        })
    }

    /// `GET /admin/v1/control`: every bundle and instance report.
    pub fn control_state(&self) -> Result<serde_json::Value, ApiError> {
        let state = self.control.read_all(Duration::from_secs(10)).map_err(ApiError::unavailable)?;
        serde_json::to_value(&state).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// `POST /admin/v1/bundles`: publishes a bundle whose version is the next
    /// one; the version published.
    pub fn publish(&self, body: &[u8]) -> Result<u64, ApiError> {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_bundle", message);
        let bundle: Bundle = serde_json::from_slice(body).map_err(|e| bad(format!("not a bundle: {e}")))?;
        bundle.validate().map_err(|e| bad(e.to_string()))?;
        let state = self.control.read_all(Duration::from_secs(10)).map_err(ApiError::unavailable)?;
        if bundle.version != state.next_version() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "version_conflict",
                format!(
                    "version {} is not the next one ({}); read the control state again",
                    bundle.version,
                    state.next_version()
                ),
            ));
        }
        self.control
            .publisher()
            .and_then(|p| p.publish_bundle(&bundle, Duration::from_secs(10)))
            .map_err(ApiError::unavailable)?;
        Ok(bundle.version)
    }
}
