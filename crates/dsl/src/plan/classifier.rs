//! Classifiers: parameters, one text matcher per tested parameter, rules
//! and outcomes, and the outputs a classification offers.

use super::{Expr, Scalar, Type};
use serde::{Deserialize, Serialize};

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
    /// Patterns in `regex` crate syntax, flags inlined; indexed by [`Expr::MatcherHit`](super::Expr::MatcherHit).
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
