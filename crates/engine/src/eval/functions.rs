//! The language's built-in functions over evaluated arguments.

use super::{eval, order, EventCtx, RegexCache, Scope};
use crate::value::{day_of_week, format_timestamp, Val};
use dsl::plan::{Expr, Function, Value};
use std::borrow::Cow;

pub(super) fn call<'s>(
    function: Function,
    args: &'s [Expr],
    scope: &Scope<'s, '_>,
    regexes: &'s RegexCache,
) -> Val<'s> {
    // Functions with their own null handling first.
    match function {
        Function::Coalesce => {
            return args.iter().map(|a| eval(a, scope, regexes)).find(|v| !matches!(v, Val::Null)).unwrap_or(Val::Null)
        }
        Function::If => {
            let condition = eval(&args[0], scope, regexes).is_true();
            return eval(&args[if condition { 1 } else { 2 }], scope, regexes);
        }
        Function::Provider => {
            // Nulls do not make it null: a missing MX host falls back to the domain.
            let values: Vec<Val<'s>> = args.iter().map(|a| eval(a, scope, regexes)).collect();
            let text = |i: usize| match values.get(i) {
                Some(Val::Str(s)) => Some(s.as_ref()),
                _ => None,
            };
            return dsl::providers::of(text(0), text(1)).map_or(Val::Null, |p| Val::Str(Cow::Borrowed(p)));
        }
        Function::Header => {
            let (Scope::Event(EventCtx { meta, .. }), Some(Expr::Literal(Value::String(name)))) = (scope, args.first())
            else {
                return Val::Null;
            };
            return meta
                .headers
                .iter()
                .find(|(k, _)| k == name)
                .map_or(Val::Null, |(_, v)| Val::Str(Cow::Owned(String::from_utf8_lossy(v).into_owned())));
        }
        _ => {}
    }
    let values: Vec<Val<'s>> = args.iter().map(|a| eval(a, scope, regexes)).collect();
    if values.iter().any(|v| matches!(v, Val::Null)) {
        return Val::Null;
    }
    let text = |i: usize| match &values[i] {
        Val::Str(s) => s.as_ref(),
        _ => "",
    };
    let owned = |s: String| Val::Str(Cow::Owned(s));
    match function {
        Function::Lower => owned(text(0).to_lowercase()),
        Function::Upper => owned(text(0).to_uppercase()),
        Function::Trim => match &values[0] {
            Val::Str(Cow::Borrowed(s)) => Val::Str(Cow::Borrowed(s.trim())),
            _ => owned(text(0).trim().to_string()),
        },
        Function::Length => Val::Int(text(0).chars().count() as i64),
        Function::SplitPart => {
            let n = match values[2] {
                Val::Int(n) => n,
                _ => return Val::Null,
            };
            let sep = text(1);
            let part =
                if n >= 1 && !sep.is_empty() { text(0).split(sep).nth((n - 1) as usize).unwrap_or("") } else { "" };
            owned(part.to_string())
        }
        Function::DomainOfEmail => match text(0).rsplit_once('@') {
            Some((_, domain)) if !domain.is_empty() => owned(domain.trim_end_matches('>').to_lowercase()),
            _ => Val::Null,
        },
        Function::StartsWith => Val::Bool(text(0).starts_with(text(1))),
        Function::EndsWith => Val::Bool(text(0).ends_with(text(1))),
        Function::Contains => Val::Bool(text(0).contains(text(1))),
        Function::Concat => owned((0..values.len()).map(text).collect()),
        Function::Abs => match values[0] {
            Val::Int(i) => i.checked_abs().map_or(Val::Null, Val::Int),
            Val::Float(f) => Val::Float(f.abs()),
            _ => Val::Null,
        },
        Function::Round | Function::Floor | Function::Ceil => match values[0] {
            Val::Int(i) => Val::Int(i),
            Val::Float(f) => {
                let r = match function {
                    Function::Round => f.round(),
                    Function::Floor => f.floor(),
                    _ => f.ceil(),
                };
                if r.is_finite() && r.abs() < 9.2e18 {
                    Val::Int(r as i64)
                } else {
                    Val::Null
                }
            }
            _ => Val::Null,
        },
        Function::Least | Function::Greatest => {
            let is_greatest = function == Function::Greatest;
            let mut best = values[0].clone();
            for v in &values[1..] {
                let better = order(v, &best).is_some_and(|o| if is_greatest { o.is_gt() } else { o.is_lt() });
                if better {
                    best = v.clone();
                }
            }
            if values.iter().any(|v| matches!(v, Val::Float(_))) {
                best.as_f64().map_or(Val::Null, Val::Float)
            } else {
                best
            }
        }
        Function::ToString => owned(match &values[0] {
            Val::Str(s) => s.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) | Val::Dur(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Ts(t) => format_timestamp(*t),
            Val::Null => String::new(),
        }),
        Function::ToInt => match &values[0] {
            Val::Int(i) => Val::Int(*i),
            Val::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Val::Int(f.trunc() as i64),
            Val::Bool(b) => Val::Int(i64::from(*b)),
            Val::Str(s) => s.trim().parse().map_or(Val::Null, Val::Int),
            _ => Val::Null,
        },
        Function::ToFloat => match &values[0] {
            Val::Int(i) => Val::Float(*i as f64),
            Val::Float(f) => Val::Float(*f),
            Val::Bool(b) => Val::Float(f64::from(u8::from(*b))),
            Val::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map_or(Val::Null, Val::Float),
            _ => Val::Null,
        },
        Function::TimeBucket => match (&values[0], &values[1]) {
            (Val::Ts(t), Val::Dur(d)) if *d > 0 => Val::Ts(t.div_euclid(*d) * d),
            _ => Val::Null,
        },
        Function::Hour => match values[0] {
            Val::Ts(t) => Val::Int(t.rem_euclid(86_400_000) / 3_600_000),
            _ => Val::Null,
        },
        Function::DayOfWeek => match values[0] {
            Val::Ts(t) => Val::Int(day_of_week(t)),
            _ => Val::Null,
        },
        Function::Coalesce | Function::If | Function::Header | Function::Provider => unreachable!("handled above"),
    }
}
