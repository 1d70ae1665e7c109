//! The compiled, checked plan: the contract between the language and the
//! engine. Serialisable and versioned; it holds no spans and no source text.
//!
//! Field references are indices into the source's `fields`, classifier
//! parameters are indices into the classifier's `params`, and every regex in a
//! classifier that tests a parameter directly is folded into that parameter's
//! [`TextMatcher`], so the engine runs one `RegexSet` per text field, not one
//! regex per rule.

//!
//! ```text
//! types       scalars, types and constants
//! source      sources, their fields and classifications, DNSBL sources
//! classifier  classifiers: parameters, text matchers, rules, outcomes
//! expr        typed expressions, Kafka metadata, built-in functions
//! metric      metrics: keys, aggregates, derived columns, tiers; alerts
//! ```

mod classifier;
mod expr;
mod metric;
mod source;
mod types;

pub use classifier::{ClassOutput, ClassifierPlan, Kind, OutcomePlan, ParamPlan, RulePlan, TextMatcher};
pub use expr::{Expr, Function, Meta};
pub use metric::{AggregateFn, AggregatePlan, AlertPlan, DerivedPlan, KeyPlan, MetricPlan, TierPlan};
pub use source::{
    Classification, DnsblKind, DnsblListPlan, DnsblPlan, DnsblTargetsFromPlan, FieldPlan, Format, SourcePlan,
    DEFAULT_MAX_FUTURE_MS,
};
pub use types::{Scalar, Type, Value};

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Version of the plan's serialised shape; bumped on incompatible changes.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Everything `streamd` runs: sources, classifiers, metrics, alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`] at the time of compiling.
    pub format_version: u32,
    /// The language version of the files.
    pub language_version: u64,
    /// Hex SHA-256 over every metric hash and alert; identifies the whole plan.
    pub hash: String,
    /// Sources, in definition order.
    pub sources: Vec<SourcePlan>,
    /// Classifiers, in definition order.
    pub classifiers: Vec<ClassifierPlan>,
    /// Metrics, in definition order. Shared: a row the engine emits holds
    /// its metric (see `engine::Row`), so it can be written after the plan
    /// that made it is gone.
    #[serde(with = "shared")]
    pub metrics: Vec<Arc<MetricPlan>>,
    /// Alerts, in definition order.
    pub alerts: Vec<AlertPlan>,
}

/// (De)serialises shared items as the items themselves.
mod shared {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer, T: Serialize>(items: &[Arc<T>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(items.iter().map(|item| &**item))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        deserializer: D,
    ) -> Result<Vec<Arc<T>>, D::Error> {
        Ok(Vec::<T>::deserialize(deserializer)?.into_iter().map(Arc::new).collect())
    }
}

impl Plan {
    /// The plan that runs nothing, with an empty hash: where a daemon
    /// starts before its first plan is applied.
    pub fn empty() -> Self {
        Plan {
            format_version: PLAN_FORMAT_VERSION,
            language_version: crate::LANGUAGE_VERSION,
            hash: String::new(),
            sources: Vec::new(),
            classifiers: Vec::new(),
            metrics: Vec::new(),
            alerts: Vec::new(),
        }
    }
}
