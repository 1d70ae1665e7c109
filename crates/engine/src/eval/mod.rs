//! Evaluating plan expressions over one event or a classifier's parameters.
//!
//! This module sits below the classifiers ([`crate::classify`]): a rule's
//! condition is an expression, and an expression over an event may ask for a
//! classification, which it does through the narrow [`Classify`] interface.
//! A classifier's matcher hits come from [`crate::matcher`], below both.

mod functions;
mod prepared;

pub use prepared::{Operand, Prepared, TextSlots};

use crate::matcher::Hits;
use crate::value::Val;
use dsl::ast::BinaryOp;
use dsl::plan::{ClassOutput, Classification, Expr, Meta, OutcomePlan, Value};
use functions::call;
use regex::Regex;
use std::borrow::Cow;
use std::cell::Cell;

/// Kafka metadata of the message being evaluated.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Message key.
    pub key: Option<&'a [u8]>,
    /// Kafka timestamp, ms.
    pub timestamp_ms: Option<i64>,
    /// Headers.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Compiled standalone regexes (those not folded into a matcher), by pattern.
#[derive(Debug, Default)]
pub struct RegexCache {
    regexes: Vec<(String, Regex)>,
}

impl RegexCache {
    /// Compiles every standalone regex in `exprs`.
    ///
    /// # Errors
    /// If a pattern does not compile.
    pub fn add_all<'e>(&mut self, exprs: impl IntoIterator<Item = &'e Expr>) -> Result<(), regex::Error> {
        for expr in exprs {
            let mut result = Ok(());
            expr.walk(&mut |e| {
                if let Expr::Regex { pattern, .. } = e {
                    if result.is_ok() && !self.regexes.iter().any(|(p, _)| p == pattern) {
                        match Regex::new(pattern) {
                            Ok(r) => self.regexes.push((pattern.clone(), r)),
                            Err(error) => result = Err(error),
                        }
                    }
                }
            });
            result?;
        }
        Ok(())
    }

    fn get(&self, pattern: &str) -> Option<&Regex> {
        self.regexes.iter().find(|(p, _)| p == pattern).map(|(_, r)| r)
    }
}

/// How an expression over an event asks for a classification: the plan's
/// classifiers, by index. Implemented by [`crate::classify`] (above this
/// module) for the classifiers of a runnable plan; asked once per
/// classification and event, the answer then cached in [`EventCtx`].
pub trait Classify {
    /// The first rule of classifier `classifier` that matches `params`,
    /// `None` for its default.
    fn classify(&self, classifier: usize, params: &[Val<'_>], regexes: &RegexCache) -> Option<usize>;

    /// The outcome of rule `rule` of classifier `classifier` (`None`: its default).
    fn outcome(&self, classifier: usize, rule: Option<usize>) -> &OutcomePlan;
}

/// Everything an expression over one event can see. Classifications are
/// computed on first use and cached for the rest of the event.
pub struct EventCtx<'s, 'a> {
    /// Decoded fields.
    pub row: &'s [Val<'a>],
    /// Message metadata.
    pub meta: &'s MessageMeta<'s>,
    /// The source's classifier invocations.
    pub classifications: &'s [Classification],
    /// All classifiers of the plan.
    pub classifiers: &'s dyn Classify,
    /// Per classification: matching rule + 1, 0 for the default; `None` until computed.
    pub cache: &'s [Cell<Option<u32>>],
    /// The source's text slots (see [`TextSlots`]).
    pub texts: &'s TextSlots,
    /// Per text slot: the event's mask, [`TextSlots::UNKNOWN`] until asked for.
    pub text_masks: &'s [Cell<u64>],
}

impl<'s> EventCtx<'s, '_> {
    /// Which of slot `slot`'s texts the event's field is: one bit, or none.
    #[inline]
    fn text_mask(&self, slot: usize) -> u64 {
        let cell = &self.text_masks[slot];
        let mut mask = cell.get();
        if mask == TextSlots::UNKNOWN {
            mask = self.texts.mask(slot, self.row);
            cell.set(mask);
        }
        mask
    }

    fn outcome(&'s self, index: usize, output: ClassOutput, regexes: &'s RegexCache) -> Val<'s> {
        let cell = &self.cache[index];
        let rule = match cell.get() {
            Some(rule) => rule,
            None => {
                let call = &self.classifications[index];
                let scope = Scope::Event(self);
                let params: Vec<Val<'_>> = call.args.iter().map(|a| eval(a, &scope, regexes)).collect();
                let rule = self.classifiers.classify(call.classifier, &params, regexes).map_or(0, |r| r as u32 + 1);
                cell.set(Some(rule));
                rule
            }
        };
        let outcome =
            self.classifiers.outcome(self.classifications[index].classifier, rule.checked_sub(1).map(|r| r as usize));
        match output {
            ClassOutput::Category => Val::Str(Cow::Borrowed(&outcome.category)),
            ClassOutput::Reason => Val::Str(Cow::Borrowed(&outcome.reason)),
            ClassOutput::Kind => Val::Str(Cow::Borrowed(outcome.kind.name())),
            ClassOutput::Hint => outcome.hint.as_deref().map_or(Val::Null, |h| Val::Str(Cow::Borrowed(h))),
            ClassOutput::Rule => Val::Int(i64::from(rule)),
        }
    }
}

/// What names in an expression refer to.
pub enum Scope<'s, 'a> {
    /// A source event.
    Event(&'s EventCtx<'s, 'a>),
    /// A classifier's parameters.
    Classifier {
        /// Parameter values.
        params: &'s [Val<'a>],
        /// Matcher results, worked out as conditions ask for them.
        hits: &'s Hits<'s>,
    },
    /// Finished columns of a metric row.
    Columns {
        /// Column values by name.
        lookup: &'s dyn Fn(&str) -> Val<'s>,
    },
}

/// Evaluates `expr`. Never fails: type errors were ruled out by the checker,
/// and runtime problems (overflow, division by zero) produce null.
pub fn eval<'s>(expr: &'s Expr, scope: &Scope<'s, '_>, regexes: &'s RegexCache) -> Val<'s> {
    match expr {
        Expr::Literal(v) => literal(v),
        Expr::Field(i) => match scope {
            Scope::Event(ctx) => borrow(&ctx.row[*i]),
            _ => Val::Null,
        },
        Expr::Meta(m) => match scope {
            Scope::Event(EventCtx { meta, .. }) => match m {
                Meta::Topic => Val::Str(Cow::Borrowed(meta.topic)),
                Meta::Partition => Val::Int(i64::from(meta.partition)),
                Meta::Offset => Val::Int(meta.offset),
                Meta::Key => meta.key.map_or(Val::Null, |k| Val::Str(String::from_utf8_lossy(k))),
                Meta::Timestamp => meta.timestamp_ms.map_or(Val::Null, Val::Ts),
            },
            _ => Val::Null,
        },
        Expr::Param(i) => match scope {
            Scope::Classifier { params, .. } => borrow(&params[*i]),
            _ => Val::Null,
        },
        Expr::Classify { classification, output } => match scope {
            Scope::Event(ctx) => ctx.outcome(*classification, *output, regexes),
            _ => Val::Null,
        },
        Expr::MatcherHit { matcher, pattern } => match scope {
            // Like a regex test of null, a test of a null parameter is null.
            Scope::Classifier { hits, .. } => hits.get(*matcher, *pattern).map_or(Val::Null, Val::Bool),
            _ => Val::Null,
        },
        Expr::Column(name) => match scope {
            Scope::Columns { lookup } => lookup(name),
            _ => Val::Null,
        },
        Expr::Not(e) => match eval(e, scope, regexes) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Null,
        },
        Expr::Neg(e) => match eval(e, scope, regexes) {
            Val::Int(i) => i.checked_neg().map_or(Val::Null, Val::Int),
            Val::Float(f) => Val::Float(-f),
            Val::Dur(d) => Val::Dur(-d),
            _ => Val::Null,
        },
        Expr::Binary { op, lhs, rhs } => binary(*op, lhs, rhs, scope, regexes),
        Expr::Regex { arg, pattern } => match eval(arg, scope, regexes) {
            Val::Str(s) => Val::Bool(regexes.get(pattern).is_some_and(|r| r.is_match(&s))),
            _ => Val::Null,
        },
        Expr::In { arg, list } => {
            let value = eval(arg, scope, regexes);
            Val::Bool(list.iter().any(|item| equal(&value, &eval(item, scope, regexes))))
        }
        Expr::Case { arms, otherwise } => {
            for (condition, value) in arms {
                if eval(condition, scope, regexes).is_true() {
                    return eval(value, scope, regexes);
                }
            }
            otherwise.as_ref().map_or(Val::Null, |o| eval(o, scope, regexes))
        }
        Expr::Call { function, args } => call(*function, args, scope, regexes),
    }
}

fn literal(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Int(i) => Val::Int(*i),
        Value::Float(f) => Val::Float(*f),
        Value::String(s) => Val::Str(Cow::Borrowed(s)),
        Value::Duration(d) => Val::Dur(i64::try_from(*d).unwrap_or(i64::MAX)),
    }
}

fn borrow<'s>(v: &'s Val<'_>) -> Val<'s> {
    match v {
        Val::Str(s) => Val::Str(Cow::Borrowed(s.as_ref())),
        Val::Null => Val::Null,
        Val::Bool(b) => Val::Bool(*b),
        Val::Int(i) => Val::Int(*i),
        Val::Float(f) => Val::Float(*f),
        Val::Ts(t) => Val::Ts(*t),
        Val::Dur(d) => Val::Dur(*d),
    }
}

/// Null-safe equality; ints and floats compare numerically.
pub fn equal(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Int(x), Val::Float(y)) | (Val::Float(y), Val::Int(x)) => (*x as f64) == *y,
        (Val::Dur(x), Val::Int(y)) | (Val::Int(y), Val::Dur(x)) => x == y,
        _ => a == b,
    }
}

fn order(a: &Val<'_>, b: &Val<'_>) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Ts(x), Val::Ts(y)) | (Val::Dur(x), Val::Dur(y)) | (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        _ => a.as_f64().zip(b.as_f64()).and_then(|(x, y)| x.partial_cmp(&y)),
    }
}

fn binary<'s>(op: BinaryOp, lhs: &'s Expr, rhs: &'s Expr, scope: &Scope<'s, '_>, regexes: &'s RegexCache) -> Val<'s> {
    // `and` / `or` short-circuit with three-valued logic.
    match op {
        BinaryOp::And => return and(eval(lhs, scope, regexes), || eval(rhs, scope, regexes)),
        BinaryOp::Or => return or(eval(lhs, scope, regexes), || eval(rhs, scope, regexes)),
        _ => {}
    }
    apply(op, eval(lhs, scope, regexes), eval(rhs, scope, regexes))
}

/// A binary operator other than `and` / `or` over its operands' values.
fn apply<'s>(op: BinaryOp, l: Val<'s>, r: Val<'s>) -> Val<'s> {
    match op {
        BinaryOp::Eq => return Val::Bool(equal(&l, &r)),
        BinaryOp::Ne => return Val::Bool(!equal(&l, &r)),
        _ => {}
    }
    if matches!(l, Val::Null) || matches!(r, Val::Null) {
        return Val::Null;
    }
    match op {
        BinaryOp::Lt => order(&l, &r).map_or(Val::Null, |o| Val::Bool(o.is_lt())),
        BinaryOp::Le => order(&l, &r).map_or(Val::Null, |o| Val::Bool(o.is_le())),
        BinaryOp::Gt => order(&l, &r).map_or(Val::Null, |o| Val::Bool(o.is_gt())),
        BinaryOp::Ge => order(&l, &r).map_or(Val::Null, |o| Val::Bool(o.is_ge())),
        BinaryOp::Div => match (l.as_f64(), r.as_f64()) {
            (Some(_), Some(0.0)) => Val::Null,
            (Some(x), Some(y)) => Val::Float(x / y),
            _ => Val::Null,
        },
        _ => arithmetic(op, &l, &r),
    }
}

/// Three-valued `and`: false if either side is, else null if either is not a boolean.
fn and<'s>(lhs: Val<'s>, rhs: impl FnOnce() -> Val<'s>) -> Val<'s> {
    junction(false, lhs.as_bool(), || rhs().as_bool()).map_or(Val::Null, Val::Bool)
}

/// Three-valued `or`: true if either side is, else null if either is not a boolean.
fn or<'s>(lhs: Val<'s>, rhs: impl FnOnce() -> Val<'s>) -> Val<'s> {
    junction(true, lhs.as_bool(), || rhs().as_bool()).map_or(Val::Null, Val::Bool)
}

/// `and` (`decisive` false) or `or` (`decisive` true) of truths: the
/// decisive value on either side decides (the right side is not asked when
/// the left decides); otherwise the other value if both sides are known,
/// else null.
fn junction(decisive: bool, lhs: Option<bool>, rhs: impl FnOnce() -> Option<bool>) -> Option<bool> {
    if lhs == Some(decisive) {
        return lhs;
    }
    match (lhs, rhs()) {
        (_, Some(r)) if r == decisive => Some(decisive),
        (Some(_), Some(_)) => Some(!decisive),
        _ => None,
    }
}

fn arithmetic<'s>(op: BinaryOp, l: &Val<'_>, r: &Val<'_>) -> Val<'s> {
    let int = |f: fn(i64, i64) -> Option<i64>, x: i64, y: i64| f(x, y).map_or(Val::Null, Val::Int);
    match (op, l, r) {
        (BinaryOp::Add, Val::Int(x), Val::Int(y)) => int(i64::checked_add, *x, *y),
        (BinaryOp::Sub, Val::Int(x), Val::Int(y)) => int(i64::checked_sub, *x, *y),
        (BinaryOp::Mul, Val::Int(x), Val::Int(y)) => int(i64::checked_mul, *x, *y),
        (BinaryOp::Rem, Val::Int(x), Val::Int(y)) => int(i64::checked_rem, *x, *y),
        (BinaryOp::Add, Val::Ts(t), Val::Dur(d)) => t.checked_add(*d).map_or(Val::Null, Val::Ts),
        (BinaryOp::Sub, Val::Ts(t), Val::Dur(d)) => t.checked_sub(*d).map_or(Val::Null, Val::Ts),
        (BinaryOp::Sub, Val::Ts(a), Val::Ts(b)) => a.checked_sub(*b).map_or(Val::Null, Val::Dur),
        (BinaryOp::Add, Val::Dur(a), Val::Dur(b)) => a.checked_add(*b).map_or(Val::Null, Val::Dur),
        (BinaryOp::Sub, Val::Dur(a), Val::Dur(b)) => a.checked_sub(*b).map_or(Val::Null, Val::Dur),
        _ => match (l.as_f64(), r.as_f64()) {
            (Some(x), Some(y)) => match op {
                BinaryOp::Add => Val::Float(x + y),
                BinaryOp::Sub => Val::Float(x - y),
                BinaryOp::Mul => Val::Float(x * y),
                BinaryOp::Rem if y != 0.0 => Val::Float(x % y),
                _ => Val::Null,
            },
            _ => Val::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_CLASSIFIERS: Vec<crate::classify::ClassifierRuntime> = Vec::new();
    const META: MessageMeta<'static> =
        MessageMeta { topic: "t", partition: 0, offset: 0, key: None, timestamp_ms: None, headers: &[] };

    /// An event of `row`, with no classifications.
    fn event<'s, 'a>(row: &'s [Val<'a>], texts: &'s TextSlots, text_masks: &'s [Cell<u64>]) -> EventCtx<'s, 'a> {
        EventCtx { row, meta: &META, classifications: &[], classifiers: &NO_CLASSIFIERS, cache: &[], texts, text_masks }
    }

    /// `and` and `or` over true, false and null (SQL's three-valued logic),
    /// and the right side is not asked when the left decides.
    #[test]
    fn junctions_are_three_valued() {
        let (t, f, n) = (Some(true), Some(false), None);
        let and = [(t, t, t), (t, f, f), (t, n, n), (f, t, f), (f, f, f), (f, n, f), (n, t, n), (n, f, f), (n, n, n)];
        let or = [(t, t, t), (t, f, t), (t, n, t), (f, t, t), (f, f, f), (f, n, n), (n, t, t), (n, f, n), (n, n, n)];
        for (decisive, table) in [(false, and), (true, or)] {
            for (lhs, rhs, want) in table {
                assert_eq!(junction(decisive, lhs, || rhs), want, "{lhs:?} {rhs:?}, decisive {decisive}");
            }
            assert_eq!(junction(decisive, Some(decisive), || panic!("asked")), Some(decisive));
        }
    }

    /// Every prepared shape gives what `eval` of the expression gives, over
    /// fields that are strings, other strings, null and of another type.
    #[test]
    fn prepared_expressions_evaluate_as_the_tree() {
        let field = |i| Box::new(Expr::Field(i));
        let text = |s: &str| Expr::Literal(Value::String(s.to_string()));
        let eq = |op, lhs: Box<Expr>, rhs: Expr| Expr::Binary { op, lhs, rhs: Box::new(rhs) };
        let is_a = eq(BinaryOp::Eq, field(0), text("a"));
        let a_is = Expr::Binary { op: BinaryOp::Eq, lhs: Box::new(text("a")), rhs: field(0) };
        let not_b = eq(BinaryOp::Ne, field(1), text("b"));
        let in_list = Expr::In { arg: field(1), list: vec![text("b"), text("c")] };
        let mixed_list = Expr::In { arg: field(1), list: vec![text("b"), Expr::Literal(Value::Int(1))] };
        let and =
            |l: &Expr, r: &Expr| Expr::Binary { op: BinaryOp::And, lhs: Box::new(l.clone()), rhs: Box::new(r.clone()) };
        let or =
            |l: &Expr, r: &Expr| Expr::Binary { op: BinaryOp::Or, lhs: Box::new(l.clone()), rhs: Box::new(r.clone()) };
        let exprs = vec![
            Expr::Field(0),
            is_a.clone(),
            a_is,
            not_b.clone(),
            in_list.clone(),
            mixed_list,
            Expr::Not(Box::new(Expr::Field(2))),
            and(&is_a, &not_b),
            and(&Expr::Field(2), &in_list),
            or(&Expr::Field(2), &is_a),
            or(&not_b, &Expr::Field(2)),
            eq(BinaryOp::Lt, field(0), text("b")),
            eq(BinaryOp::Ge, field(0), Expr::Literal(Value::Int(1))),
            Expr::Binary { op: BinaryOp::Gt, lhs: Box::new(Expr::Literal(Value::Float(0.5))), rhs: field(0) },
            eq(BinaryOp::Eq, field(0), Expr::Literal(Value::Int(1))),
            eq(BinaryOp::Ne, field(0), Expr::Literal(Value::Null)),
            and(&eq(BinaryOp::Le, field(0), Expr::Literal(Value::Int(1))), &Expr::Field(2)),
            eq(BinaryOp::Lt, field(0), Expr::Literal(Value::Int(1))),
            Expr::Binary { op: BinaryOp::Gt, lhs: Box::new(Expr::Literal(Value::Int(1))), rhs: field(0) },
        ];
        assert!(matches!(Prepared::new(&exprs[1]), Prepared::StrEq { .. }));
        assert!(matches!(Prepared::new(&exprs[4]), Prepared::StrIn { .. }));
        assert!(matches!(Prepared::new(&exprs[5]), Prepared::Other(_)));
        assert!(exprs[12..16].iter().chain(&exprs[17..]).all(|e| matches!(Prepared::new(e), Prepared::Compare { .. })));
        let values = || {
            [Val::Str("a".into()), Val::Str("b".into()), Val::Str("c".into()), Val::Null, Val::Int(1), Val::Float(0.25)]
        };
        let regexes = RegexCache::default();
        let prepared: Vec<Prepared> = exprs.iter().map(Prepared::new).collect();
        // The same over an event's text slots, the second field's shared by two tests.
        let mut texts = TextSlots::default();
        let slotted: Vec<Prepared> = exprs.iter().map(|e| Prepared::for_events(e, &mut texts)).collect();
        assert!([1, 2, 3, 4].iter().all(|&i| matches!(slotted[i], Prepared::TextBits { .. })), "{slotted:?}");
        assert_eq!(texts.len(), 2);
        for x in values() {
            for y in values() {
                for z in [Val::Bool(true), Val::Bool(false), Val::Null] {
                    let row = [x.clone(), y.clone(), z];
                    let text_masks = [Cell::new(TextSlots::UNKNOWN), Cell::new(TextSlots::UNKNOWN)];
                    let ctx = event(&row, &texts, &text_masks);
                    let scope = Scope::Event(&ctx);
                    for ((expr, prepared), slotted) in exprs.iter().zip(&prepared).zip(&slotted) {
                        let tree = eval(expr, &scope, &regexes);
                        for prepared in [prepared, slotted] {
                            assert_eq!(prepared.eval(&scope, &regexes), tree, "{prepared:?} over {row:?}");
                            assert_eq!(prepared.test(&scope, &regexes), tree.as_bool(), "{prepared:?} over {row:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_field_compared_with_more_than_64_texts_keeps_string_comparisons_for_the_rest() {
        let mut texts = TextSlots::default();
        let list = |range: std::ops::Range<usize>| Expr::In {
            arg: Box::new(Expr::Field(0)),
            list: range.map(|i| Expr::Literal(Value::String(format!("t{i}")))).collect(),
        };
        assert!(matches!(Prepared::for_events(&list(0..60), &mut texts), Prepared::TextBits { .. }));
        assert!(matches!(Prepared::for_events(&list(50..70), &mut texts), Prepared::StrIn { .. }));
        // Texts already in the slot still fit.
        let prepared = Prepared::for_events(&list(55..64), &mut texts);
        assert!(matches!(prepared, Prepared::TextBits { .. }), "{prepared:?}");
        let row = [Val::Str("t63".into())];
        let text_masks = [Cell::new(TextSlots::UNKNOWN)];
        let ctx = event(&row, &texts, &text_masks);
        assert_eq!(prepared.test(&Scope::Event(&ctx), &RegexCache::default()), Some(true));
    }
}
