//! Typing calls: built-in scalar functions, classifier invocations, and
//! aggregates where they are not allowed.

use super::{Scope, Ty, Typed};
use crate::ast::{self, ExprKind};
use crate::check::{Checker, DefKind};
use crate::codes::Code;
use crate::diagnostic::{closest, Diagnostic};
use crate::plan::*;
use crate::span::Span;

/// Names of the aggregate functions, for messages and lookup.
pub(crate) const AGGREGATES: &[&str] = &[
    "count", "count_if", "sum", "min", "max", "avg", "first", "last", "distinct", "quantile", "p50", "p90", "p95",
    "p99", "p999",
];

const FUNCTIONS: &[(&str, Function)] = &[
    ("lower", Function::Lower),
    ("upper", Function::Upper),
    ("trim", Function::Trim),
    ("length", Function::Length),
    ("split_part", Function::SplitPart),
    ("domain_of_email", Function::DomainOfEmail),
    ("provider", Function::Provider),
    ("starts_with", Function::StartsWith),
    ("ends_with", Function::EndsWith),
    ("contains", Function::Contains),
    ("concat", Function::Concat),
    ("coalesce", Function::Coalesce),
    ("if", Function::If),
    ("abs", Function::Abs),
    ("round", Function::Round),
    ("floor", Function::Floor),
    ("ceil", Function::Ceil),
    ("least", Function::Least),
    ("greatest", Function::Greatest),
    ("to_string", Function::ToString),
    ("to_int", Function::ToInt),
    ("to_float", Function::ToFloat),
    ("time_bucket", Function::TimeBucket),
    ("hour", Function::Hour),
    ("day_of_week", Function::DayOfWeek),
    ("header", Function::Header),
];

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Whether `name` is a built-in scalar or aggregate function.
pub(crate) fn is_builtin_name(name: &str) -> bool {
    FUNCTIONS.iter().any(|(n, _)| *n == name) || AGGREGATES.contains(&name)
}

/// The name of a built-in function as written.
pub fn function_name(function: Function) -> &'static str {
    FUNCTIONS.iter().find(|(_, f)| *f == function).map_or("?", |(n, _)| n)
}

/// Every name a call may use, for "did you mean".
fn callable_names<'c>(checker: &'c Checker<'_>) -> Vec<&'c str> {
    let mut names: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).chain(AGGREGATES.iter().copied()).collect();
    names.extend(checker.defs.iter().filter(|(_, d)| d.kind == DefKind::Classifier).map(|(n, _)| n.as_str()));
    names
}

impl Checker<'_> {
    pub(super) fn call(
        &mut self,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        scope: &Scope<'_>,
    ) -> Option<Typed> {
        if AGGREGATES.contains(&name.node.as_str()) {
            let message = match scope {
                Scope::Source { in_compute: true, .. } => "aggregates cannot be nested".to_string(),
                _ => format!("aggregate `{}` can only be used in `compute`", name.node),
            };
            self.report(Diagnostic::error(Code::MisplacedAggregate, name.span, message));
            return None;
        }
        if let Some((_, function)) = FUNCTIONS.iter().find(|(n, _)| *n == name.node) {
            let (expr, ty) = self.builtin(*function, name, args, span, scope)?;
            return Some(Typed::Value(expr, ty));
        }
        if self.defs.get(&name.node).is_some_and(|d| d.kind == DefKind::Classifier) {
            let index = self.lookup(name, DefKind::Classifier, Code::UnknownFunction)?;
            return self.classifier_call(index, name, args, span, scope);
        }
        let mut d = Diagnostic::error(Code::UnknownFunction, name.span, format!("unknown function `{}`", name.node));
        let names = callable_names(self);
        if let Some(best) = closest(&name.node, names) {
            d = d.with_help(format!("did you mean `{best}`?"));
        }
        self.report(d);
        None
    }

    fn classifier_call(
        &mut self,
        index: usize,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        scope: &Scope<'_>,
    ) -> Option<Typed> {
        if !matches!(scope, Scope::Source { .. }) {
            self.report(
                Diagnostic::error(
                    Code::UnknownFunction,
                    name.span,
                    format!("classifier `{}` cannot be called here", name.node),
                )
                .with_note("classifiers run over a source's events: call them in `where`, `group by` or `compute`"),
            );
            return None;
        }
        // A classifier that failed to check has no plan; its errors are already reported.
        let params = self.classifier_plans.get(index)?.as_ref()?.params.clone();
        if args.len() != params.len() {
            let signature: Vec<String> = params.iter().map(|p| format!("{}: {}", p.name, p.ty)).collect();
            self.report(
                Diagnostic::error(
                    Code::ArgumentCount,
                    span,
                    format!(
                        "classifier `{}` takes {}, not {}",
                        name.node,
                        plural(params.len(), "argument"),
                        args.len()
                    ),
                )
                .with_note(format!("its parameters: ({})", signature.join(", "))),
            );
            return None;
        }
        let mut plan_args = Vec::new();
        for (arg, param) in args.iter().zip(&params) {
            let (expr, ty) = self.value(arg, scope)?;
            let fits = match ty {
                // A bare `null` is a nullability problem, reported below.
                Ty::Null => true,
                Ty::Known(t) => {
                    t.scalar == param.ty.scalar || (t.scalar == Scalar::Int && param.ty.scalar == Scalar::Float)
                }
            };
            if !fits {
                self.report(
                    Diagnostic::error(
                        Code::TypeMismatch,
                        arg.span,
                        format!("parameter `{}` is `{}`", param.name, param.ty),
                    )
                    .with_label(format!("this is {}", ty.describe())),
                );
                return None;
            }
            if ty.is_nullable() && !param.ty.nullable {
                self.report(
                    Diagnostic::error(
                        Code::Nullable,
                        arg.span,
                        format!("parameter `{}` does not accept null", param.name),
                    )
                    .with_label(format!("this is {} and may be null", ty.describe()))
                    .with_help(format!(
                        "declare the parameter `{}?`, or pass `coalesce(…, default)`",
                        param.ty.scalar.name()
                    )),
                );
                return None;
            }
            plan_args.push(expr);
        }
        Some(Typed::Classification { classifier: index, args: plan_args })
    }

    fn builtin(
        &mut self,
        function: Function,
        name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        scope: &Scope<'_>,
    ) -> Option<(Expr, Ty)> {
        use Scalar::*;
        let fname = name.node.as_str();
        let (min, max) = match function {
            Function::Lower | Function::Upper | Function::Trim | Function::Length | Function::DomainOfEmail => (1, 1),
            Function::Abs | Function::Round | Function::Floor | Function::Ceil => (1, 1),
            Function::ToString | Function::ToInt | Function::ToFloat | Function::Hour | Function::DayOfWeek => (1, 1),
            Function::Header => (1, 1),
            Function::Provider => (1, 2),
            Function::StartsWith | Function::EndsWith | Function::Contains | Function::TimeBucket => (2, 2),
            Function::SplitPart | Function::If => (3, 3),
            Function::Concat | Function::Coalesce => (1, usize::MAX),
            Function::Least | Function::Greatest => (2, usize::MAX),
        };
        if args.len() < min || args.len() > max {
            let expected = match (min, max) {
                (a, b) if a == b => format!("{a}"),
                (a, usize::MAX) => format!("at least {a}"),
                (a, b) => format!("{a} to {b}"),
            };
            self.report(Diagnostic::error(
                Code::ArgumentCount,
                span,
                format!(
                    "`{fname}` takes {expected} argument{}, not {}",
                    if expected == "1" || expected == "at least 1" { "" } else { "s" },
                    args.len()
                ),
            ));
            return None;
        }
        if function == Function::Header {
            let Scope::Source { .. } = scope else {
                self.report(Diagnostic::error(
                    Code::UnknownFunction,
                    name.span,
                    "`header` reads Kafka headers and only works over a source",
                ));
                return None;
            };
            let ExprKind::Str(header) = &args[0].node else {
                self.report(
                    Diagnostic::error(Code::ExpectedLiteral, args[0].span, "the header name must be a string literal")
                        .with_help("write e.g. `header(\"x-tenant\")`"),
                );
                return None;
            };
            let call = Expr::Call { function, args: vec![Expr::Literal(Value::String(header.clone()))] };
            return Some((call, Ty::of(String, true)));
        }
        let mut plan_args = Vec::with_capacity(args.len());
        let mut tys = Vec::with_capacity(args.len());
        for arg in args {
            let (e, t) = self.value(arg, scope)?;
            plan_args.push(e);
            tys.push(t);
        }
        let any_nullable = tys.iter().any(|t| t.is_nullable());
        let what = format!("`{fname}`");
        let ty = match function {
            Function::Lower | Function::Upper | Function::Trim => {
                self.expect(tys[0], &[String], args[0].span, &what)?;
                Ty::of(String, any_nullable)
            }
            Function::Length => {
                self.expect(tys[0], &[String], args[0].span, &what)?;
                Ty::of(Int, any_nullable)
            }
            Function::DomainOfEmail => {
                self.expect(tys[0], &[String], args[0].span, &what)?;
                Ty::of(String, true)
            }
            Function::Provider => {
                for (ty, arg) in tys.iter().zip(args) {
                    self.expect(*ty, &[String], arg.span, &what)?;
                }
                Ty::of(String, true)
            }
            Function::SplitPart => {
                self.expect(tys[0], &[String], args[0].span, &what)?;
                self.expect(tys[1], &[String], args[1].span, &what)?;
                self.expect(tys[2], &[Int], args[2].span, &what)?;
                Ty::of(String, any_nullable)
            }
            Function::StartsWith | Function::EndsWith | Function::Contains => {
                self.expect(tys[0], &[String], args[0].span, &what)?;
                self.expect(tys[1], &[String], args[1].span, &what)?;
                Ty::of(Bool, any_nullable)
            }
            Function::Concat => {
                for (t, a) in tys.iter().zip(args) {
                    self.expect(*t, &[String], a.span, &what)?;
                }
                Ty::of(String, any_nullable)
            }
            Function::Coalesce => {
                let typed: Vec<(Ty, Span)> = tys.iter().copied().zip(args.iter().map(|a| a.span)).collect();
                let unified = self.unify(&typed, span, "the arguments of `coalesce`")?;
                let all_nullable = tys.iter().all(|t| t.is_nullable());
                Ty::Known(unified.or(String).with_nullable(all_nullable))
            }
            Function::If => {
                self.expect(tys[0], &[Bool], args[0].span, "the condition of `if`")?;
                let typed = [(tys[1], args[1].span), (tys[2], args[2].span)];
                self.unify(&typed, span, "the branches of `if`")?
            }
            Function::Abs => {
                self.expect(tys[0], &[Int, Float], args[0].span, &what)?;
                tys[0]
            }
            Function::Round | Function::Floor | Function::Ceil => {
                self.expect(tys[0], &[Int, Float], args[0].span, &what)?;
                Ty::of(Int, any_nullable)
            }
            Function::Least | Function::Greatest => {
                for (t, a) in tys.iter().zip(args) {
                    self.expect(*t, &[Int, Float], a.span, &what)?;
                }
                let float = tys.iter().any(|t| t.scalar() == Some(Float));
                Ty::of(if float { Float } else { Int }, any_nullable)
            }
            Function::ToString => {
                self.expect(tys[0], &[String, Int, Float, Bool, Timestamp, Duration], args[0].span, &what)?;
                Ty::of(String, any_nullable)
            }
            Function::ToInt => {
                self.expect(tys[0], &[String, Int, Float, Bool], args[0].span, &what)?;
                Ty::of(Int, true)
            }
            Function::ToFloat => {
                self.expect(tys[0], &[String, Int, Float, Bool], args[0].span, &what)?;
                Ty::of(Float, true)
            }
            Function::TimeBucket => {
                self.expect(tys[0], &[Timestamp], args[0].span, &what)?;
                self.expect(tys[1], &[Duration], args[1].span, &what)?;
                Ty::of(Timestamp, any_nullable)
            }
            Function::Hour | Function::DayOfWeek => {
                self.expect(tys[0], &[Timestamp], args[0].span, &what)?;
                Ty::of(Int, any_nullable)
            }
            Function::Header => unreachable!("handled above"),
        };
        Some((Expr::Call { function, args: plan_args }, ty))
    }
}
