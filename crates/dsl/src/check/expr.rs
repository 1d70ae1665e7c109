//! Typing expressions and building their plan form.
//!
//! Each function reports a problem once, at the innermost place it can be
//! seen, and returns `None`; callers then stay silent, so one mistake never
//! produces a cascade of follow-on errors.

mod call;

pub(crate) use call::{function_name, is_builtin_name, AGGREGATES};

use super::{Checker, SchemaField, SchemaShape};
use crate::ast::{self, BinaryOp, ExprKind, UnaryOp};
use crate::codes::Code;
use crate::diagnostic::{closest, Diagnostic};
use crate::plan::*;
use crate::span::Span;

/// The static type of a value: a known type, or the bare `null` literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Null,
    Known(Type),
}

impl Ty {
    fn of(scalar: Scalar, nullable: bool) -> Ty {
        Ty::Known(Type { scalar, nullable })
    }

    pub(crate) fn is_nullable(self) -> bool {
        match self {
            Ty::Null => true,
            Ty::Known(t) => t.nullable,
        }
    }

    fn scalar(self) -> Option<Scalar> {
        match self {
            Ty::Null => None,
            Ty::Known(t) => Some(t.scalar),
        }
    }

    fn is_numeric(self) -> bool {
        self.scalar().is_some_and(Scalar::is_numeric)
    }

    fn describe(self) -> String {
        match self {
            Ty::Null => "`null`".into(),
            Ty::Known(t) => format!("`{t}`"),
        }
    }

    /// The type, with `null` resolved to a nullable `fallback`.
    pub(crate) fn or(self, fallback: Scalar) -> Type {
        match self {
            Ty::Null => Type { scalar: fallback, nullable: true },
            Ty::Known(t) => t,
        }
    }
}

/// Where an expression stands, which decides what its names mean.
pub(crate) enum Scope<'s> {
    /// Over the fields of a source: `where`, `group by`, aggregate arguments.
    Source { source: usize, in_compute: bool },
    /// Over a classifier's parameters: rule conditions.
    Classifier { params: &'s [ParamPlan] },
    /// Over a metric's columns: derived columns and alert conditions.
    Columns { columns: &'s [(String, Type)], what: &'static str },
}

/// A checked expression: a value, or something only a member access can use.
pub(crate) enum Typed {
    Value(Expr, Ty),
    /// A record-typed source field, by path.
    Record {
        source: usize,
        path: Vec<String>,
        nullable: bool,
    },
    /// The `kafka` metadata namespace.
    Kafka,
    /// A classifier call, before `.member` picks an output.
    Classification {
        classifier: usize,
        args: Vec<Expr>,
    },
}

impl Checker<'_> {
    /// Checks a condition: it must be a boolean (null counts as false).
    pub(crate) fn predicate(&mut self, e: &ast::Expr, scope: &Scope<'_>, what: &str) -> Option<Expr> {
        let (expr, ty) = self.value(e, scope)?;
        match ty {
            Ty::Known(Type { scalar: Scalar::Bool, .. }) => Some(expr),
            other => {
                self.report(
                    Diagnostic::error(Code::NotPredicate, e.span, format!("{what} must be a boolean"))
                        .with_label(format!("this is {}", other.describe()))
                        .with_help("compare it, e.g. `x == \"value\"` or `x != null`"),
                );
                None
            }
        }
    }

    /// Checks an expression that must produce a scalar value.
    pub(crate) fn value(&mut self, e: &ast::Expr, scope: &Scope<'_>) -> Option<(Expr, Ty)> {
        match self.expr(e, scope)? {
            Typed::Value(expr, ty) => Some((expr, ty)),
            Typed::Record { path, .. } => {
                self.report(
                    Diagnostic::error(
                        Code::TypeMismatch,
                        e.span,
                        format!("`{}` is a record, not a value", path.join(".")),
                    )
                    .with_help("use one of its fields, e.g. `record.field`"),
                );
                None
            }
            Typed::Kafka => {
                self.report(
                    Diagnostic::error(Code::TypeMismatch, e.span, "`kafka` is a namespace, not a value").with_help(
                        "use `kafka.key`, `kafka.partition`, `kafka.offset`, `kafka.timestamp` or `kafka.topic`",
                    ),
                );
                None
            }
            Typed::Classification { classifier, .. } => {
                let name = self.classifier_asts[classifier].name.node.clone();
                self.report(
                    Diagnostic::error(
                        Code::TypeMismatch,
                        e.span,
                        format!("the result of `{name}(…)` is a record, not a value"),
                    )
                    .with_help("pick an output: `.category`, `.reason`, `.kind`, `.hint` or `.rule`"),
                );
                None
            }
        }
    }

    fn expr(&mut self, e: &ast::Expr, scope: &Scope<'_>) -> Option<Typed> {
        let value = |expr: Expr, ty: Ty| Some(Typed::Value(expr, ty));
        let lit = |v: Value, ty: Ty| Some(Typed::Value(Expr::Literal(v), ty));
        match &e.node {
            ExprKind::Null => lit(Value::Null, Ty::Null),
            ExprKind::Bool(b) => lit(Value::Bool(*b), Ty::of(Scalar::Bool, false)),
            ExprKind::Int(i) => lit(Value::Int(*i), Ty::of(Scalar::Int, false)),
            ExprKind::Float(f) => lit(Value::Float(*f), Ty::of(Scalar::Float, false)),
            ExprKind::Str(s) => lit(Value::String(s.clone()), Ty::of(Scalar::String, false)),
            ExprKind::Duration(d) => lit(Value::Duration(d.0), Ty::of(Scalar::Duration, false)),
            ExprKind::Name(name) => self.name(name, e.span, scope),
            ExprKind::Member(base, member) => {
                let base = self.expr(base, scope)?;
                self.member(base, member, scope)
            }
            ExprKind::Call(name, args) => self.call(name, args, e.span, scope),
            ExprKind::Unary(UnaryOp::Not, arg) => {
                let (arg, ty) = self.value(arg, scope)?;
                self.expect(ty, &[Scalar::Bool], e.span, "`not`")?;
                value(Expr::Not(Box::new(arg)), Ty::of(Scalar::Bool, ty.is_nullable()))
            }
            ExprKind::Unary(UnaryOp::Neg, arg) => {
                let span = arg.span;
                let (arg, ty) = self.value(arg, scope)?;
                self.expect(ty, &[Scalar::Int, Scalar::Float, Scalar::Duration], span, "`-`")?;
                value(Expr::Neg(Box::new(arg)), ty)
            }
            ExprKind::Binary(op, lhs, rhs) => {
                let (l, lt) = self.value(lhs, scope)?;
                let (r, rt) = self.value(rhs, scope)?;
                let ty = self.binary_type(*op, lt, rt, lhs.span, rhs.span)?;
                value(Expr::Binary { op: *op, lhs: Box::new(l), rhs: Box::new(r) }, ty)
            }
            ExprKind::Match { expr, regex, is_negated } => {
                let span = expr.span;
                let (arg, ty) = self.value(expr, scope)?;
                self.expect(ty, &[Scalar::String], span, "a regex match")?;
                let pattern = self.regex(regex)?;
                let test = Expr::Regex { arg: Box::new(arg), pattern };
                let test = if *is_negated { Expr::Not(Box::new(test)) } else { test };
                value(test, Ty::of(Scalar::Bool, ty.is_nullable()))
            }
            ExprKind::In { expr, list, is_negated } => {
                let (arg, ty) = self.value(expr, scope)?;
                let mut items = Vec::new();
                for item in list {
                    let (item_expr, item_ty) = self.value(item, scope)?;
                    if !comparable(ty, item_ty) {
                        self.report(
                            Diagnostic::error(Code::TypeMismatch, item.span, "list item has the wrong type")
                                .with_label(format!("this is {}", item_ty.describe()))
                                .with_secondary(expr.span, format!("tested value is {}", ty.describe())),
                        );
                        return None;
                    }
                    items.push(item_expr);
                }
                let test = Expr::In { arg: Box::new(arg), list: items };
                let test = if *is_negated { Expr::Not(Box::new(test)) } else { test };
                value(test, Ty::of(Scalar::Bool, false))
            }
            ExprKind::Case { arms, otherwise } => {
                let mut plan_arms = Vec::new();
                let mut types = Vec::new();
                for (condition, result) in arms {
                    let condition = self.predicate(condition, scope, "a `when` condition")?;
                    let (result_expr, result_ty) = self.value(result, scope)?;
                    types.push((result_ty, result.span));
                    plan_arms.push((condition, result_expr));
                }
                let otherwise = match otherwise {
                    Some(o) => {
                        let (o_expr, o_ty) = self.value(o, scope)?;
                        types.push((o_ty, o.span));
                        Some(Box::new(o_expr))
                    }
                    None => {
                        types.push((Ty::Null, e.span));
                        None
                    }
                };
                let ty = self.unify(&types, e.span, "the branches of `case`")?;
                value(Expr::Case { arms: plan_arms, otherwise }, ty)
            }
        }
    }

    fn name(&mut self, name: &str, span: Span, scope: &Scope<'_>) -> Option<Typed> {
        match scope {
            Scope::Source { source, .. } => {
                let source = *source;
                if let Some(field) = self.schemas[source].iter().find(|f| f.name == name).cloned() {
                    return Some(self.field_typed(source, &field, vec![name.to_string()], false));
                }
                if name == "kafka" {
                    return Some(Typed::Kafka);
                }
                let source_name = self.source_plans[source].name.clone();
                let names: Vec<String> = self.schemas[source].iter().map(|f| f.name.clone()).collect();
                let mut d = Diagnostic::error(Code::UnknownField, span, format!("unknown field `{name}`"))
                    .with_label(format!("not a field of source `{source_name}`"));
                if let Some(best) = closest(name, names.iter().map(String::as_str)) {
                    d = d.with_help(format!("did you mean `{best}`?"));
                } else if AGGREGATES.contains(&name) {
                    d = d.with_help(format!("to call the aggregate, write `{name}(…)`"));
                }
                self.report(d);
                None
            }
            Scope::Classifier { params } => {
                if let Some(i) = params.iter().position(|p| p.name == name) {
                    return Some(Typed::Value(Expr::Param(i), Ty::Known(params[i].ty)));
                }
                let mut d = Diagnostic::error(Code::UnknownField, span, format!("unknown parameter `{name}`"))
                    .with_label("rule conditions can only use the classifier's parameters");
                if let Some(best) = closest(name, params.iter().map(|p| p.name.as_str())) {
                    d = d.with_help(format!("did you mean `{best}`?"));
                } else {
                    d = d.with_help(format!("add `{name}: string?` (or its type) to the classifier's parameters"));
                }
                self.report(d);
                None
            }
            Scope::Columns { columns, what } => {
                if let Some((col, ty)) = columns.iter().find(|(c, _)| c == name) {
                    return Some(Typed::Value(Expr::Column(col.clone()), Ty::Known(*ty)));
                }
                let mut d = Diagnostic::error(Code::UnknownColumn, span, format!("unknown column `{name}`"))
                    .with_label(format!("{what} can only use {}", columns_noun(what)));
                if let Some(best) = closest(name, columns.iter().map(|(c, _)| c.as_str())) {
                    d = d.with_help(format!("did you mean `{best}`?"));
                } else if !columns.is_empty() {
                    let list: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).take(12).collect();
                    d = d.with_note(format!("available: {}", list.join(", ")));
                }
                self.report(d);
                None
            }
        }
    }

    fn field_typed(&mut self, source: usize, field: &SchemaField, path: Vec<String>, parent_nullable: bool) -> Typed {
        match &field.shape {
            SchemaShape::Scalar(index) => {
                let plan_field = &mut self.source_plans[source].fields[*index];
                plan_field.is_used = true;
                Typed::Value(Expr::Field(*index), Ty::Known(plan_field.ty))
            }
            SchemaShape::Record(_) => Typed::Record { source, path, nullable: parent_nullable || field.nullable },
        }
    }

    fn member(&mut self, base: Typed, member: &ast::Ident, scope: &Scope<'_>) -> Option<Typed> {
        let name = member.node.as_str();
        match base {
            Typed::Record { source, path, nullable } => {
                let mut fields = &self.schemas[source];
                for part in &path {
                    let Some(SchemaField { shape: SchemaShape::Record(children), .. }) =
                        fields.iter().find(|f| &f.name == part)
                    else {
                        unreachable!("record paths come from the schema");
                    };
                    fields = children;
                }
                if let Some(field) = fields.iter().find(|f| f.name == name).cloned() {
                    let mut path = path;
                    path.push(name.to_string());
                    return Some(self.field_typed(source, &field, path, nullable));
                }
                let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
                self.unknown_member(member, &format!("record `{}`", path.join(".")), names.iter().map(String::as_str));
                None
            }
            Typed::Kafka => match Meta::ALL.iter().find(|(n, _, _)| *n == name) {
                Some((_, meta, ty)) => Some(Typed::Value(Expr::Meta(*meta), Ty::Known(*ty))),
                None => {
                    self.unknown_member(member, "`kafka`", Meta::ALL.iter().map(|(n, _, _)| *n));
                    None
                }
            },
            Typed::Classification { classifier, args } => {
                let Some((_, output, ty)) = ClassOutput::ALL.iter().find(|(n, _, _)| *n == name) else {
                    let what = format!("the result of `{}(…)`", self.classifier_asts[classifier].name.node);
                    self.unknown_member(member, &what, ClassOutput::ALL.iter().map(|(n, _, _)| *n));
                    return None;
                };
                let Scope::Source { source, .. } = scope else {
                    unreachable!("classifications are only built in source scope");
                };
                let classifications = &mut self.source_plans[*source].classifications;
                let call = Classification { classifier, args };
                let index = match classifications.iter().position(|c| *c == call) {
                    Some(i) => i,
                    None => {
                        classifications.push(call);
                        classifications.len() - 1
                    }
                };
                self.classifiers_used.insert(classifier);
                Some(Typed::Value(Expr::Classify { classification: index, output: *output }, Ty::Known(*ty)))
            }
            Typed::Value(_, ty) => {
                self.report(
                    Diagnostic::error(
                        Code::UnknownMember,
                        member.span,
                        format!("{} has no member `{name}`", ty.describe()),
                    )
                    .with_label("only records, `kafka` and classifier results have members"),
                );
                None
            }
        }
    }

    fn unknown_member<'n>(&mut self, member: &ast::Ident, what: &str, names: impl Iterator<Item = &'n str> + Clone) {
        let mut d =
            Diagnostic::error(Code::UnknownMember, member.span, format!("{what} has no member `{}`", member.node));
        if let Some(best) = closest(&member.node, names.clone()) {
            d = d.with_help(format!("did you mean `{best}`?"));
        } else {
            d = d.with_note(format!(
                "its members are {}",
                names.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        self.report(d);
    }

    /// Requires `ty` to be one of `allowed` (null is allowed: it propagates).
    pub(crate) fn expect(&mut self, ty: Ty, allowed: &[Scalar], span: Span, what: &str) -> Option<()> {
        match ty {
            Ty::Null => Some(()),
            Ty::Known(t) if allowed.contains(&t.scalar) => Some(()),
            Ty::Known(t) => {
                let names: Vec<String> = allowed.iter().map(|s| format!("`{}`", s.name())).collect();
                let expected = match names.split_last() {
                    Some((last, [])) => last.clone(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => "nothing".into(),
                };
                self.report(
                    Diagnostic::error(Code::TypeMismatch, span, format!("{what} expects {expected}, found `{t}`"))
                        .with_label(format!("this is `{t}`")),
                );
                None
            }
        }
    }

    fn binary_type(&mut self, op: BinaryOp, lt: Ty, rt: Ty, ls: Span, rs: Span) -> Option<Ty> {
        use Scalar::*;
        let nullable = lt.is_nullable() || rt.is_nullable();
        let mismatch = |checker: &mut Self, what: std::string::String| {
            checker.report(
                Diagnostic::error(Code::TypeMismatch, rs, what)
                    .with_label(format!("this is {}", rt.describe()))
                    .with_secondary(ls, format!("this is {}", lt.describe())),
            );
            None
        };
        match op {
            BinaryOp::And | BinaryOp::Or => {
                self.expect(lt, &[Bool], ls, &format!("`{}`", op.symbol()))?;
                self.expect(rt, &[Bool], rs, &format!("`{}`", op.symbol()))?;
                Some(Ty::of(Bool, nullable))
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                if comparable(lt, rt) {
                    Some(Ty::of(Bool, false))
                } else {
                    mismatch(self, format!("cannot compare {} with {}", lt.describe(), rt.describe()))
                }
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let ordered = match (lt.scalar(), rt.scalar()) {
                    (None, _) | (_, None) => true,
                    (Some(a), Some(b)) => {
                        (a.is_numeric() && b.is_numeric()) || (a == b && matches!(a, String | Timestamp | Duration))
                    }
                };
                if ordered {
                    Some(Ty::of(Bool, nullable))
                } else {
                    mismatch(self, format!("cannot order {} and {}", lt.describe(), rt.describe()))
                }
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                let result = match (op, lt.scalar(), rt.scalar()) {
                    (BinaryOp::Div, _, _)
                        if (lt.is_numeric() || lt == Ty::Null) && (rt.is_numeric() || rt == Ty::Null) =>
                    {
                        // Division is always float, and null when dividing by zero.
                        Some(Ty::of(Float, true))
                    }
                    (BinaryOp::Rem, Some(Int), Some(Int)) => Some(Ty::of(Int, true)),
                    (BinaryOp::Rem, _, _) if lt.is_numeric() && rt.is_numeric() => Some(Ty::of(Float, true)),
                    (_, Some(Int), Some(Int)) if op != BinaryOp::Div => Some(Ty::of(Int, nullable)),
                    (_, Some(a), Some(b)) if op != BinaryOp::Div && a.is_numeric() && b.is_numeric() => {
                        Some(Ty::of(Float, nullable))
                    }
                    (BinaryOp::Add | BinaryOp::Sub, Some(Timestamp), Some(Duration)) => {
                        Some(Ty::of(Timestamp, nullable))
                    }
                    (BinaryOp::Sub, Some(Timestamp), Some(Timestamp)) => Some(Ty::of(Duration, nullable)),
                    (BinaryOp::Add | BinaryOp::Sub, Some(Duration), Some(Duration)) => Some(Ty::of(Duration, nullable)),
                    (_, None, Some(s)) | (_, Some(s), None) if s.is_numeric() => Some(Ty::of(s, true)),
                    _ => None,
                };
                match result {
                    Some(ty) => Some(ty),
                    None => {
                        let hint = if lt.scalar() == Some(String) && rt.scalar() == Some(String) && op == BinaryOp::Add
                        {
                            " (use `concat(a, b)` to join strings)"
                        } else {
                            ""
                        };
                        mismatch(
                            self,
                            format!("`{}` cannot combine {} and {}{hint}", op.symbol(), lt.describe(), rt.describe()),
                        )
                    }
                }
            }
        }
    }

    /// The common type of several values: equal scalars, or int and float
    /// (float wins); nullable if any is.
    pub(crate) fn unify(&mut self, types: &[(Ty, Span)], span: Span, what: &str) -> Option<Ty> {
        let mut scalar: Option<(Scalar, Span)> = None;
        let mut nullable = false;
        for (ty, ty_span) in types {
            nullable |= ty.is_nullable();
            let Some(s) = ty.scalar() else { continue };
            scalar = match scalar {
                None => Some((s, *ty_span)),
                Some((prev, _)) if prev == s => scalar,
                Some((prev, prev_span)) if prev.is_numeric() && s.is_numeric() => Some((Scalar::Float, prev_span)),
                Some((prev, prev_span)) => {
                    self.report(
                        Diagnostic::error(Code::TypeMismatch, *ty_span, format!("{what} have different types"))
                            .with_label(format!("this is `{}`", s.name()))
                            .with_secondary(prev_span, format!("this is `{}`", prev.name())),
                    );
                    return None;
                }
            };
        }
        match scalar {
            Some((s, _)) => Some(Ty::of(s, nullable)),
            None => {
                self.report(
                    Diagnostic::error(Code::TypeMismatch, span, format!("cannot tell the type of {what}"))
                        .with_note("every branch is `null`"),
                );
                None
            }
        }
    }

    fn regex(&mut self, regex: &crate::span::Spanned<ast::RegexLit>) -> Option<String> {
        if let Some(bad) = regex.flags.chars().find(|c| !"imsxU".contains(*c)) {
            self
                .report(Diagnostic::error(Code::BadRegex, regex.span, format!("unknown regex flag `{bad}`")).with_note(
                "the flags are i (case-insensitive), m (multi-line), s (dot matches newline), x (verbose), U (lazy)",
            ));
            return None;
        }
        let pattern = regex.to_regex_syntax();
        // Parsing and translating validates syntax, classes and flags at a
        // fraction of the cost of compiling; the engine compiles the set.
        if let Err(error) = regex_syntax::Parser::new().parse(&pattern) {
            let detail = error.to_string();
            let last = detail.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("invalid").trim();
            let last = last.strip_prefix("error: ").unwrap_or(last).to_string();
            self.report(
                Diagnostic::error(Code::BadRegex, regex.span, "invalid regular expression")
                    .with_label(last)
                    .with_note("the syntax is that of Rust's `regex` crate"),
            );
            return None;
        }
        Some(pattern)
    }
}

fn columns_noun(what: &str) -> &'static str {
    if what.starts_with("a derived") {
        "the metric's aggregates"
    } else {
        "the metric's columns"
    }
}

/// Whether `==` / `in` may compare values of these types.
fn comparable(a: Ty, b: Ty) -> bool {
    match (a.scalar(), b.scalar()) {
        (None, _) | (_, None) => true,
        (Some(x), Some(y)) => x == y || (x.is_numeric() && y.is_numeric()),
    }
}
