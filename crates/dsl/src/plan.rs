//! The compiled, checked plan: the contract between the language and the
//! engine. Serialisable and versioned; it holds no spans and no source text.
//!
//! Field references are indices into the source's `fields`, classifier
//! parameters are indices into the classifier's `params`, and every regex in a
//! classifier that tests a parameter directly is folded into that parameter's
//! [`TextMatcher`], so the engine runs one `RegexSet` per text field, not one
//! regex per rule.

use crate::ast::BinaryOp;
use serde::{Deserialize, Serialize};
use std::fmt;
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

/// Scalar types of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scalar {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// true / false.
    Bool,
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp,
    /// Milliseconds.
    Duration,
}

impl Scalar {
    /// The name as written in the language.
    pub fn name(self) -> &'static str {
        match self {
            Scalar::String => "string",
            Scalar::Int => "int",
            Scalar::Float => "float",
            Scalar::Bool => "bool",
            Scalar::Timestamp => "timestamp",
            Scalar::Duration => "duration",
        }
    }

    /// Int or float.
    pub fn is_numeric(self) -> bool {
        matches!(self, Scalar::Int | Scalar::Float)
    }
}

/// A scalar type and whether it may be null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Type {
    /// The scalar.
    pub scalar: Scalar,
    /// Whether null is a possible value.
    pub nullable: bool,
}

impl Type {
    /// A non-null type.
    pub fn of(scalar: Scalar) -> Self {
        Type { scalar, nullable: false }
    }

    /// The same scalar, nullable if `nullable`.
    pub fn with_nullable(self, nullable: bool) -> Self {
        Type { scalar: self.scalar, nullable }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.scalar.name(), if self.nullable { "?" } else { "" })
    }
}

/// A constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// No value.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// String.
    String(String),
    /// Milliseconds.
    Duration(u64),
}

/// Message formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per message.
    Json,
}

/// A source: where events come from and which fields to decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcePlan {
    /// Source name.
    pub name: String,
    /// Kafka topic.
    pub topic: String,
    /// Message format.
    pub format: Format,
    /// Every declared scalar field, depth-first in declaration order.
    pub fields: Vec<FieldPlan>,
    /// Index into `fields` of the event-time field.
    pub event_time: usize,
    /// How far an event's time may be ahead of the earlier of its message's
    /// broker timestamp and the processing time, ms. An event
    /// further ahead is dead-lettered: one wrong clock must not close every
    /// window of its partition.
    #[serde(default = "default_max_future_ms")]
    pub max_future_ms: u64,
    /// Distinct classifier calls over this source's events; each is computed
    /// at most once per event, however many metrics use it.
    pub classifications: Vec<Classification>,
    /// For a `from dnsbl` source: what the reputation poller asks about. Its
    /// observations arrive on `topic` like any other source's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnsbl: Option<DnsblPlan>,
}

/// What a DNSBL reputation source polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsblPlan {
    /// The pause between sweeps, ms (jittered by the poller).
    pub every_ms: u64,
    /// Addresses, CIDR blocks and domains, as written.
    pub targets: Vec<String>,
    /// Targets taken from the delivery stream: metrics' recent key values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets_from: Vec<DnsblTargetsFromPlan>,
    /// The lists, in definition order.
    pub lists: Vec<DnsblListPlan>,
}

/// `targets from metric M key K within D`: at each sweep, the distinct values
/// of key `K` in `M`'s stored rows whose window starts within the last `D`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsblTargetsFromPlan {
    /// The metric's name.
    pub metric: String,
    /// One of its group-by keys.
    pub key: String,
    /// How far back a window may start, ms.
    pub within_ms: u64,
}

/// Whether a DNSBL lists IP addresses or domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsblKind {
    /// Queried with the address reversed: `2.0.0.127.zone`.
    Ip,
    /// Queried with the domain: `example.com.zone`.
    Domain,
}

/// One DNSBL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsblListPlan {
    /// The list's name, the value of the observations' `list` field.
    pub name: String,
    /// The zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// IP or domain list.
    pub kind: DnsblKind,
    /// How much a listing here matters (alert severity).
    pub weight: f64,
    /// Queries a second at most.
    pub max_qps: f64,
    /// Queries a UTC day at most, if limited.
    pub max_per_day: Option<u64>,
    /// The environment variable holding the data-query key, if the list needs one.
    pub key_env: Option<String>,
    /// Names of listing codes: `127.0.0.2` → `SBL`.
    pub codes: std::collections::BTreeMap<String, String>,
}

/// The `max_future` of a source that does not set one: an hour.
pub const DEFAULT_MAX_FUTURE_MS: u64 = 3_600_000;

fn default_max_future_ms() -> u64 {
    DEFAULT_MAX_FUTURE_MS
}

/// One decodable field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldPlan {
    /// JSON keys from the message root, e.g. `["meta", "region"]`.
    pub path: Vec<String>,
    /// Declared type; a record field on the path being null makes it null.
    pub ty: Type,
    /// Whether some metric (or the event time) reads it; unused fields are not decoded.
    pub is_used: bool,
}

/// One classifier invocation: which classifier, over which arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Index into [`Plan::classifiers`].
    pub classifier: usize,
    /// One expression per parameter, over the source's fields.
    pub args: Vec<Expr>,
}

/// A compiled classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierPlan {
    /// Classifier name.
    pub name: String,
    /// Parameters with their types.
    pub params: Vec<ParamPlan>,
    /// One matcher per text parameter that rules test with regexes or
    /// `contains` / `starts_with` / `ends_with`.
    pub matchers: Vec<TextMatcher>,
    /// Rules in precedence order; the first whose condition is true wins.
    pub rules: Vec<RulePlan>,
    /// Outcome when no rule matches.
    pub default: OutcomePlan,
}

/// A classifier parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamPlan {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: Type,
}

/// All patterns tested against one parameter, run as one `RegexSet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextMatcher {
    /// Index into [`ClassifierPlan::params`].
    pub param: usize,
    /// Patterns in `regex` crate syntax, flags inlined; indexed by [`Expr::MatcherHit`].
    pub patterns: Vec<String>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulePlan {
    /// What it assigns.
    pub outcome: OutcomePlan,
    /// When it applies, over the classifier's parameters.
    pub condition: Expr,
}

/// A classification result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomePlan {
    /// Fine category.
    pub category: String,
    /// Coarse reason.
    pub reason: String,
    /// Severity kind.
    pub kind: Kind,
    /// Remediation hint.
    pub hint: Option<String>,
}

/// How a failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Permanent for this recipient: stop sending.
    Hard,
    /// Temporary for this recipient: retry.
    Soft,
    /// Sender-side reputation or policy block.
    Block,
    /// Network or system trouble, not about recipient or sender.
    Transient,
}

impl Kind {
    /// Every kind with its name.
    pub const ALL: [(&'static str, Kind); 4] =
        [("hard", Kind::Hard), ("soft", Kind::Soft), ("block", Kind::Block), ("transient", Kind::Transient)];

    /// The name as written.
    pub fn name(self) -> &'static str {
        Kind::ALL.iter().find(|(_, k)| *k == self).map_or("?", |(n, _)| n)
    }
}

/// Fields of a classification result reachable as `classifier(..).member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassOutput {
    /// `.category`
    Category,
    /// `.reason`
    Reason,
    /// `.kind`
    Kind,
    /// `.hint` (nullable)
    Hint,
    /// `.rule`: one-based index of the matching rule, 0 for the default.
    Rule,
}

impl ClassOutput {
    /// Every output with its name and type.
    pub const ALL: [(&'static str, ClassOutput, Type); 5] = [
        ("category", ClassOutput::Category, Type { scalar: Scalar::String, nullable: false }),
        ("reason", ClassOutput::Reason, Type { scalar: Scalar::String, nullable: false }),
        ("kind", ClassOutput::Kind, Type { scalar: Scalar::String, nullable: false }),
        ("hint", ClassOutput::Hint, Type { scalar: Scalar::String, nullable: true }),
        ("rule", ClassOutput::Rule, Type { scalar: Scalar::Int, nullable: false }),
    ];

    /// The member name.
    pub fn name(self) -> &'static str {
        ClassOutput::ALL.iter().find(|(_, o, _)| *o == self).map_or("?", |(n, _, _)| n)
    }
}

/// Kafka message metadata reachable as `kafka.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Meta {
    /// `kafka.topic`
    Topic,
    /// `kafka.partition`
    Partition,
    /// `kafka.offset`
    Offset,
    /// `kafka.key` (nullable, lossy UTF-8)
    Key,
    /// `kafka.timestamp` (nullable)
    Timestamp,
}

impl Meta {
    /// Every metadata field with its name and type.
    pub const ALL: [(&'static str, Meta, Type); 5] = [
        ("topic", Meta::Topic, Type { scalar: Scalar::String, nullable: false }),
        ("partition", Meta::Partition, Type { scalar: Scalar::Int, nullable: false }),
        ("offset", Meta::Offset, Type { scalar: Scalar::Int, nullable: false }),
        ("key", Meta::Key, Type { scalar: Scalar::String, nullable: true }),
        ("timestamp", Meta::Timestamp, Type { scalar: Scalar::Timestamp, nullable: true }),
    ];

    /// The member name.
    pub fn name(self) -> &'static str {
        Meta::ALL.iter().find(|(_, m, _)| *m == self).map_or("?", |(n, _, _)| n)
    }
}

/// Built-in scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // Documented with signatures in dsl/README.md.
pub enum Function {
    Lower,
    Upper,
    Trim,
    Length,
    SplitPart,
    DomainOfEmail,
    StartsWith,
    EndsWith,
    Contains,
    Concat,
    Coalesce,
    If,
    Abs,
    Round,
    Floor,
    Ceil,
    Least,
    Greatest,
    ToString,
    ToInt,
    ToFloat,
    TimeBucket,
    Hour,
    DayOfWeek,
    Header,
    Provider,
}

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

/// A typed expression. Which indices mean what depends on where it stands:
/// `Field` in a metric or classification argument indexes the source's fields;
/// `Param` and `MatcherHit` appear only in classifier rules; `Column` only in
/// derived columns and alert conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    /// A constant.
    Literal(Value),
    /// A source field by index.
    Field(usize),
    /// Kafka metadata.
    Meta(Meta),
    /// A classifier parameter by index.
    Param(usize),
    /// One output of a source classification (index into `SourcePlan::classifications`).
    Classify {
        /// Which classification.
        classification: usize,
        /// Which output.
        output: ClassOutput,
    },
    /// Whether pattern `pattern` of classifier matcher `matcher` matched.
    MatcherHit {
        /// Index into [`ClassifierPlan::matchers`].
        matcher: usize,
        /// Index into that matcher's patterns.
        pattern: usize,
    },
    /// A metric column (key, aggregate or derived) by name.
    Column(String),
    /// `not`.
    Not(Box<Expr>),
    /// Unary minus.
    Neg(Box<Expr>),
    /// Infix operator; `and`/`or` use three-valued logic, `==`/`!=` are null-safe.
    Binary {
        /// Operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// Regex test of a computed string (not a classifier parameter).
    Regex {
        /// Tested text.
        arg: Box<Expr>,
        /// Pattern, flags inlined.
        pattern: String,
    },
    /// Membership; null-safe.
    In {
        /// Tested value.
        arg: Box<Expr>,
        /// Candidates.
        list: Vec<Expr>,
    },
    /// First arm whose condition is true, else `otherwise` (null if absent).
    Case {
        /// (condition, value) pairs.
        arms: Vec<(Expr, Expr)>,
        /// Fallback.
        otherwise: Option<Box<Expr>>,
    },
    /// Built-in function call.
    Call {
        /// Function.
        function: Function,
        /// Arguments.
        args: Vec<Expr>,
    },
}

impl Expr {
    /// The operands of this expression's top-level `and`s, left to right
    /// (the expression itself when it is no `and`).
    pub fn conjuncts(&self) -> Vec<&Expr> {
        fn collect<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
            match e {
                Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
                    collect(lhs, out);
                    collect(rhs, out);
                }
                other => out.push(other),
            }
        }
        let mut out = Vec::new();
        collect(self, &mut out);
        out
    }

    /// Calls `f` on this expression and every sub-expression, parents first.
    pub fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Not(e) | Expr::Neg(e) => e.walk(f),
            Expr::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            Expr::Regex { arg, .. } => arg.walk(f),
            Expr::In { arg, list } => {
                arg.walk(f);
                list.iter().for_each(|e| e.walk(f));
            }
            Expr::Case { arms, otherwise } => {
                for (c, v) in arms {
                    c.walk(f);
                    v.walk(f);
                }
                if let Some(e) = otherwise {
                    e.walk(f);
                }
            }
            Expr::Call { args, .. } => args.iter().for_each(|e| e.walk(f)),
            Expr::Literal(_)
            | Expr::Field(_)
            | Expr::Meta(_)
            | Expr::Param(_)
            | Expr::Classify { .. }
            | Expr::MatcherHit { .. }
            | Expr::Column(_) => {}
        }
    }
}

/// A compiled metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPlan {
    /// Metric name.
    pub name: String,
    /// Hex SHA-256 of the metric's normalised definition together with its
    /// source and classifiers: its identity across deployments.
    pub hash: String,
    /// Index into [`Plan::sources`].
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
    /// Index into [`Plan::metrics`].
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
