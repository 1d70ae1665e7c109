//! The syntax tree of one file, as written. Every node keeps its span;
//! equality ignores spans (see [`Spanned`]).

use crate::span::{Span, Spanned};

/// A name with its place.
pub type Ident = Spanned<String>;

/// One parsed file.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    /// The `version N` header, if present.
    pub version: Option<Spanned<u64>>,
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `import "path"`
    Import(Import),
    /// `source … from kafka …`
    Source(Source),
    /// `classifier name(params) { rules }`
    Classifier(Classifier),
    /// `metric name from source clauses…`
    Metric(Metric),
    /// `alert name on metric when …`
    Alert(Alert),
}

impl Item {
    /// The whole item's span.
    pub fn span(&self) -> Span {
        match self {
            Item::Import(i) => i.span,
            Item::Source(s) => s.span,
            Item::Classifier(c) => c.span,
            Item::Metric(m) => m.span,
            Item::Alert(a) => a.span,
        }
    }

    /// The defined name, for items that define one.
    pub fn name(&self) -> Option<&Ident> {
        match self {
            Item::Import(_) => None,
            Item::Source(s) => Some(&s.name),
            Item::Classifier(c) => Some(&c.name),
            Item::Metric(m) => Some(&m.name),
            Item::Alert(a) => Some(&a.name),
        }
    }
}

/// `import "path"`: makes another file's definitions visible here.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    /// As written, unescaped.
    pub path: Spanned<String>,
    /// The whole item.
    pub span: Span,
}

/// A Kafka topic and the typed shape of its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Source name.
    pub name: Ident,
    /// Kafka topic.
    pub topic: Spanned<String>,
    /// Message format (`json`).
    pub format: Ident,
    /// `max_future DURATION`, when written.
    pub max_future: Option<Spanned<Duration>>,
    /// Declared fields.
    pub fields: Vec<FieldDecl>,
    /// `from dnsbl { … }`: the reputation poller's settings. Such a source's
    /// topic (unless set), format and fields are those of a DNSBL observation.
    pub dnsbl: Option<Dnsbl>,
    /// The whole item.
    pub span: Span,
}

/// `dnsbl { … }`: what a DNSBL reputation source polls, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Dnsbl {
    /// Settings in source order.
    pub settings: Vec<DnsblSetting>,
    /// From `dnsbl` to the closing brace.
    pub span: Span,
}

/// One setting of a `dnsbl` block.
#[derive(Debug, Clone, PartialEq)]
pub enum DnsblSetting {
    /// `topic "NAME"`: where observations go.
    Topic(Spanned<String>),
    /// `every DURATION`: the pause between sweeps.
    Every(Spanned<Duration>),
    /// `targets ["192.0.2.0/28", "example.com"]`.
    Targets(Spanned<Vec<Spanned<String>>>),
    /// `targets from metric NAME key COLUMN within DURATION`.
    TargetsFrom(DnsblTargetsFrom),
    /// `list NAME zone "ZONE" KIND options…`.
    List(DnsblList),
}

/// `targets from metric NAME key COLUMN within DURATION`: the distinct values
/// of a metric's group-by key in its rows of the last `within`.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsblTargetsFrom {
    /// The metric whose stored rows give the targets.
    pub metric: Ident,
    /// One of its group-by keys.
    pub key: Ident,
    /// How far back a window may start.
    pub within: Spanned<Duration>,
    /// The whole setting.
    pub span: Span,
}

/// `list NAME zone "ZONE" ip|domain [weight N] [max_qps N] [max_per_day N] [key_env "VAR"] [codes { … }]`
#[derive(Debug, Clone, PartialEq)]
pub struct DnsblList {
    /// The list's name: a value of the `list` field.
    pub name: Ident,
    /// The zone queried, e.g. `zen.spamhaus.org`.
    pub zone: Spanned<String>,
    /// `ip` or `domain`, checked later.
    pub kind: Ident,
    /// Options in source order.
    pub options: Vec<DnsblOption>,
    /// The whole list.
    pub span: Span,
}

/// An option of a `list`.
#[derive(Debug, Clone, PartialEq)]
pub enum DnsblOption {
    /// `weight N`: how much a listing here matters.
    Weight(Spanned<f64>),
    /// `max_qps N`: queries a second at most.
    MaxQps(Spanned<f64>),
    /// `max_per_day N`: queries a UTC day at most.
    MaxPerDay(Spanned<u64>),
    /// `key_env "VAR"`: the environment variable holding a data-query key.
    KeyEnv(Spanned<String>),
    /// `codes { "127.0.0.2": "SBL", … }`: names of listing codes.
    Codes(Spanned<Vec<(Spanned<String>, Spanned<String>)>>),
}

/// `name: type [event_time]`
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDecl {
    /// Field name (the JSON key).
    pub name: Ident,
    /// Declared type.
    pub ty: TypeExpr,
    /// Marked `event_time`.
    pub is_event_time: bool,
    /// The whole declaration.
    pub span: Span,
}

/// A written type: `string`, `int?`, `{ region: string }?`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    /// Scalar name or nested record.
    pub kind: TypeKind,
    /// Followed by `?`.
    pub is_nullable: bool,
    /// The whole type.
    pub span: Span,
}

/// The shape of a written type.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    /// A scalar type name, checked later.
    Scalar(Ident),
    /// A nested object.
    Record(Vec<FieldDecl>),
}

/// An ordered rule set: the first rule whose condition holds decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// Classifier name; calling it as a function classifies.
    pub name: Ident,
    /// Typed inputs.
    pub params: Vec<Param>,
    /// Rules, in precedence order.
    pub rules: Vec<Rule>,
    /// The outcome when no rule matches.
    pub default: Option<Outcome>,
    /// The whole item.
    pub span: Span,
}

/// A classifier input.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Name, visible in rule conditions.
    pub name: Ident,
    /// Declared type.
    pub ty: TypeExpr,
}

/// `rule <category> reason <reason> <kind> when <condition> [hint "…"]`
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// What the rule decides.
    pub outcome: Outcome,
    /// When it applies.
    pub condition: Expr,
    /// The whole rule.
    pub span: Span,
}

/// The result a rule or default assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Fine category, e.g. `gmail.mailbox_full`.
    pub category: Ident,
    /// Coarse reason, e.g. `mailboxfull`.
    pub reason: Ident,
    /// `hard`, `soft`, `block` or `transient`.
    pub kind: Ident,
    /// Remediation hint.
    pub hint: Option<Spanned<String>>,
}

/// A metric: filter, keys, aggregates, windows, storage and export.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric name.
    pub name: Ident,
    /// The source it reads.
    pub source: Ident,
    /// Clauses in source order.
    pub clauses: Vec<Spanned<Clause>>,
    /// The whole item.
    pub span: Span,
}

/// One clause of a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `where <predicate>`
    Where(Expr),
    /// `group by e [as n], …`
    GroupBy(Vec<NamedExpr>),
    /// `compute agg(..) [as n], …`
    Compute(Vec<NamedExpr>),
    /// `window <d> [, lateness <d>]`
    Window {
        /// Window width.
        width: Spanned<Duration>,
        /// Allowed lateness.
        lateness: Option<Spanned<Duration>>,
    },
    /// `rollup <d> keep <d>, …`
    Rollup(Vec<RollupTier>),
    /// `into table <name> [ttl <d>]`
    Into {
        /// Table name.
        table: Ident,
        /// Retention of the finest tier.
        ttl: Option<Spanned<Duration>>,
    },
    /// `cardinality limit <n>`
    Cardinality(Spanned<u64>),
    /// `export <target>`
    Export(Ident),
}

impl Clause {
    /// The clause keyword, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            Clause::Where(_) => "where",
            Clause::GroupBy(_) => "group by",
            Clause::Compute(_) => "compute",
            Clause::Window { .. } => "window",
            Clause::Rollup(_) => "rollup",
            Clause::Into { .. } => "into table",
            Clause::Cardinality(_) => "cardinality limit",
            Clause::Export(_) => "export",
        }
    }

    /// Position in the canonical clause order used by `fmt`.
    pub fn canonical_rank(&self) -> u8 {
        match self {
            Clause::Where(_) => 0,
            Clause::GroupBy(_) => 1,
            Clause::Compute(_) => 2,
            Clause::Window { .. } => 3,
            Clause::Rollup(_) => 4,
            Clause::Into { .. } => 5,
            Clause::Cardinality(_) => 6,
            Clause::Export(_) => 7,
        }
    }
}

/// `expr [as name]`
#[derive(Debug, Clone, PartialEq)]
pub struct NamedExpr {
    /// The expression.
    pub expr: Expr,
    /// The alias, if written.
    pub alias: Option<Ident>,
}

/// `rollup <width> keep <retention>`
#[derive(Debug, Clone, PartialEq)]
pub struct RollupTier {
    /// Tier width.
    pub width: Spanned<Duration>,
    /// Retention.
    pub keep: Spanned<Duration>,
}

/// An alert over a metric's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Alert name.
    pub name: Ident,
    /// The metric watched.
    pub metric: Ident,
    /// Fires while this holds.
    pub condition: Expr,
    /// How long it must hold.
    pub for_duration: Option<Spanned<Duration>>,
    /// Labels added to the alert.
    pub labels: Vec<(Ident, Spanned<String>)>,
    /// Annotations (summary, description, runbook).
    pub annotations: Vec<(Ident, Spanned<String>)>,
    /// The whole item.
    pub span: Span,
}

/// A duration in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    /// Milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }
}

/// An expression.
pub type Expr = Spanned<ExprKind>;

/// Expression shapes.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal, unescaped.
    Str(String),
    /// A duration literal.
    Duration(Duration),
    /// A bare name.
    Name(String),
    /// `expr.name`
    Member(Box<Expr>, Ident),
    /// `name(args)`
    Call(Ident, Vec<Expr>),
    /// `not e`, `-e`
    Unary(UnaryOp, Box<Expr>),
    /// `a op b`
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `e ~ /re/flags`, `e !~ /re/flags`
    Match {
        /// Matched text.
        expr: Box<Expr>,
        /// The regex literal.
        regex: Spanned<RegexLit>,
        /// `!~`
        is_negated: bool,
    },
    /// `e in [..]`, `e not in [..]`
    In {
        /// Tested value.
        expr: Box<Expr>,
        /// Candidates.
        list: Vec<Expr>,
        /// `not in`
        is_negated: bool,
    },
    /// `case when c then v … [else v] end`
    Case {
        /// Conditions and values, in order.
        arms: Vec<(Expr, Expr)>,
        /// Value when no arm holds.
        otherwise: Option<Box<Expr>>,
    },
}

/// A regex literal as written between slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexLit {
    /// The pattern as written (`\/` still escaped).
    pub pattern: String,
    /// Flag letters after the closing slash.
    pub flags: String,
}

impl RegexLit {
    /// The pattern in `regex` crate syntax, with flags inlined.
    pub fn to_regex_syntax(&self) -> String {
        let pattern = self.pattern.replace("\\/", "/");
        if self.flags.is_empty() {
            pattern
        } else {
            format!("(?{}){pattern}", self.flags)
        }
    }
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `not`
    Not,
    /// `-`
    Neg,
}

/// Infix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `==` (null-safe)
    Eq,
    /// `!=` (null-safe)
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (always a float)
    Div,
    /// `%`
    Rem,
}

impl BinaryOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }

    /// Binding strength; higher binds tighter. Must agree with the parser.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => 4,
            BinaryOp::Add | BinaryOp::Sub => 5,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 6,
        }
    }
}

/// Precedence of `not`: below comparisons, above `and`.
pub const NOT_PRECEDENCE: u8 = 3;
/// Precedence of `~`, `!~`, `in`, `not in`: that of comparisons.
pub const MATCH_PRECEDENCE: u8 = 4;
/// Precedence of unary minus.
pub const NEG_PRECEDENCE: u8 = 7;
/// Precedence of `.member`, calls and atoms.
pub const ATOM_PRECEDENCE: u8 = 8;
