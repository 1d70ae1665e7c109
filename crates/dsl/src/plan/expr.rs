//! Typed expressions and what they may name: Kafka metadata, built-in
//! functions, classification outputs.

use super::{ClassOutput, Scalar, Type, Value};
use crate::ast::BinaryOp;
use serde::{Deserialize, Serialize};

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
        /// Index into [`ClassifierPlan::matchers`](super::ClassifierPlan::matchers).
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
