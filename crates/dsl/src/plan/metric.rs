//! Metrics (keys, aggregates, derived columns, storage tiers) and alerts.

use super::{Expr, Type};
use serde::{Deserialize, Serialize};

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFn {
    /// Number of events.
    Count,
    /// Number of events where the argument is true.
    CountIf,
    /// Sum; nulls skipped.
    Sum,
    /// Minimum; nulls skipped.
    Min,
    /// Maximum; nulls skipped.
    Max,
    /// Mean; nulls skipped.
    Avg,
    /// Value at the earliest event time (ties: lowest offset).
    First,
    /// Value at the latest event time (ties: highest offset).
    Last,
    /// Approximate number of distinct values (HyperLogLog).
    Distinct,
    /// Approximate quantile (mergeable sketch).
    Quantile,
}

/// A compiled metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPlan {
    /// Metric name.
    pub name: String,
    /// Hex SHA-256 of the metric's normalised definition together with its
    /// source and classifiers: its identity across deployments.
    pub hash: String,
    /// Index into [`Plan::sources`](super::Plan::sources).
    pub source: usize,
    /// Events for which this is not true are skipped.
    pub filter: Option<Expr>,
    /// Group-by columns.
    pub keys: Vec<KeyPlan>,
    /// Aggregate columns.
    pub aggregates: Vec<AggregatePlan>,
    /// Columns computed from aggregates at read time (ratios).
    pub derived: Vec<DerivedPlan>,
    /// Width of the finest window, ms.
    pub window_ms: u64,
    /// How far behind the newest event time an event may be and still count, ms.
    pub lateness_ms: u64,
    /// Storage tiers, finest first; tier 0 is the window itself.
    pub tiers: Vec<TierPlan>,
    /// Table name prefix.
    pub table: String,
    /// Most live series per window; the rest go to `__other__`.
    pub cardinality_limit: u64,
    /// Whether live series are served on `/metrics`.
    pub export_prometheus: bool,
}

/// A group-by column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyPlan {
    /// Column name.
    pub name: String,
    /// Value, over source fields.
    pub expr: Expr,
    /// Type.
    pub ty: Type,
}

/// An aggregate column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregatePlan {
    /// Column name.
    pub name: String,
    /// Aggregate function.
    pub function: AggregateFn,
    /// Argument, over source fields (`None` for `count()`).
    pub arg: Option<Expr>,
    /// For quantiles: which, in (0, 1).
    pub quantile: Option<f64>,
    /// Type of the finished value.
    pub ty: Type,
}

/// A column computed from aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DerivedPlan {
    /// Column name.
    pub name: String,
    /// Value, over [`Expr::Column`]s naming aggregates.
    pub expr: Expr,
    /// Type.
    pub ty: Type,
}

/// A storage tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierPlan {
    /// Canonical width, e.g. `1m`; used in table names and queries.
    pub name: String,
    /// Width, ms.
    pub width_ms: u64,
    /// Retention, ms.
    pub retention_ms: u64,
}

/// A compiled alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPlan {
    /// Alert name.
    pub name: String,
    /// Index into [`Plan::metrics`](super::Plan::metrics).
    pub metric: usize,
    /// Condition over the metric's columns.
    pub condition: Expr,
    /// How long the condition must hold, ms.
    pub for_ms: u64,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Annotations.
    pub annotations: Vec<(String, String)>,
}
