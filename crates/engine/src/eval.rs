//! Evaluating plan expressions over one event, and running classifiers.

pub use crate::classify::{ClassifierRuntime, Hits};
use crate::value::{day_of_week, format_timestamp, Val};
use dsl::ast::BinaryOp;
use dsl::plan::{ClassOutput, Classification, Expr, Function, Meta, Value};
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
    pub classifiers: &'s [ClassifierRuntime],
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
                let classifier = &self.classifiers[call.classifier];
                let rule = classifier.classify(&params, regexes).map_or(0, |r| r as u32 + 1);
                cell.set(Some(rule));
                rule
            }
        };
        let plan = &self.classifiers[self.classifications[index].classifier].plan;
        let outcome = match rule {
            0 => &plan.default,
            r => &plan.rules[r as usize - 1].outcome,
        };
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

/// The string literals that a source's prepared tests compare fields
/// with, numbered per field (a slot). A field is compared with its slot's
/// texts once per event, on first use; each test of it (`event ==
/// "bounced"`, `event in [...]`, however many metrics ask) is then a bit
/// test of that mask instead of string comparisons of its own.
#[derive(Debug, Default)]
pub struct TextSlots {
    slots: Vec<TextSlot>,
}

#[derive(Debug)]
struct TextSlot {
    field: usize,
    /// Distinct, at most 64: bit `i` of a mask stands for `texts[i]`.
    texts: Vec<Box<str>>,
}

impl TextSlots {
    /// The mask of an event not yet compared (no field equals all 64 texts).
    pub const UNKNOWN: u64 = u64::MAX;

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot of `field` and the bits of `texts` in it, adding them as
    /// needed; `None` (and nothing added) if that would take the slot past
    /// 64 texts.
    fn bits(&mut self, field: usize, texts: &[Box<str>]) -> Option<(usize, u64)> {
        let slot = match self.slots.iter().position(|s| s.field == field) {
            Some(slot) => slot,
            None => {
                self.slots.push(TextSlot { field, texts: Vec::new() });
                self.slots.len() - 1
            }
        };
        let known = &mut self.slots[slot].texts;
        let before = known.len();
        for text in texts {
            if !known.contains(text) {
                known.push(text.clone());
            }
        }
        if known.len() > 64 {
            known.truncate(before);
            return None;
        }
        let bits = texts.iter().filter_map(|t| known.iter().position(|k| k == t)).fold(0, |bits, i| bits | 1 << i);
        Some((slot, bits))
    }

    /// The bit of the text that `row`'s field of slot `slot` equals, or 0
    /// (another text, null, not a string).
    fn mask(&self, slot: usize, row: &[Val<'_>]) -> u64 {
        let TextSlot { field, texts } = &self.slots[slot];
        match row.get(*field) {
            Some(Val::Str(s)) => texts.iter().position(|t| t.as_ref() == s.as_ref()).map_or(0, |i| 1 << i),
            _ => 0,
        }
    }
}

/// An expression prepared for the per-event path. The shapes real
/// pipelines and classifiers use in filters, keys, `count_if` and rule
/// conditions (a field or parameter, one compared with string literals or
/// tested for a prefix, a classifier matcher's hit, `and` / `or` / `not` of
/// those) run without walking the plan's tree or building values;
/// everything else goes to [`eval`]. It gives what [`eval`] of the original
/// expression gives.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A source field or classifier parameter.
    Value(Operand),
    /// `x == "text"` (`is_equal`) or `x != "text"`; null-safe.
    StrEq {
        /// The field or parameter.
        of: Operand,
        /// The literal.
        text: Box<str>,
        /// `==` rather than `!=`.
        is_equal: bool,
    },
    /// `x in ["a", "b", ...]`.
    StrIn {
        /// The field or parameter.
        of: Operand,
        /// The literals.
        texts: Box<[Box<str>]>,
    },
    /// A source field compared with texts through its [`TextSlots`] mask:
    /// `x == "a"` or `x in [...]` (`is_equal`: whether a bit of `bits` is
    /// set), `x != "a"` (whether none is).
    TextBits {
        /// The field's slot.
        slot: usize,
        /// The bits of the literals.
        bits: u64,
        /// `==` / `in` rather than `!=`.
        is_equal: bool,
    },
    /// `starts_with(x, "prefix")`.
    StartsWith {
        /// The field or parameter.
        of: Operand,
        /// The literal prefix.
        prefix: Box<str>,
    },
    /// A field or parameter compared (`==` `!=` `<` `<=` `>` `>=`) with a
    /// literal other than a string, e.g. `smtp_code >= 500`.
    Compare {
        /// The field or parameter.
        of: Operand,
        /// The comparison.
        op: BinaryOp,
        /// The literal.
        literal: Value,
        /// Whether the operand is the left-hand side.
        is_operand_left: bool,
    },
    /// A classifier matcher's pattern hit.
    Hit {
        /// The matcher.
        matcher: usize,
        /// Its pattern.
        pattern: usize,
    },
    /// `not`.
    Not(Box<Prepared>),
    /// `and`, three-valued.
    And(Box<Prepared>, Box<Prepared>),
    /// `or`, three-valued.
    Or(Box<Prepared>, Box<Prepared>),
    /// Anything else, evaluated by [`eval`].
    Other(Expr),
}

/// What a prepared test reads: a source field or a classifier parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// A source field (in an event's scope).
    Field(usize),
    /// A classifier parameter (in a classifier's scope).
    Param(usize),
}

impl Operand {
    fn of(expr: &Expr) -> Option<Self> {
        match expr {
            Expr::Field(i) => Some(Operand::Field(*i)),
            Expr::Param(i) => Some(Operand::Param(*i)),
            _ => None,
        }
    }

    /// Its value in `scope`; `None` (null) where it does not exist.
    fn get<'s, 'a>(self, scope: &Scope<'s, 'a>) -> Option<&'s Val<'a>> {
        match (self, scope) {
            (Operand::Field(i), Scope::Event(ctx)) => ctx.row.get(i),
            (Operand::Param(i), Scope::Classifier { params, .. }) => params.get(i),
            _ => None,
        }
    }
}

impl Prepared {
    /// Prepares `expr`.
    pub fn new(expr: &Expr) -> Self {
        let text = |e: &Expr| match e {
            Expr::Literal(Value::String(s)) => Some(s.as_str().into()),
            _ => None,
        };
        let prepared = match expr {
            Expr::Field(_) | Expr::Param(_) => Operand::of(expr).map(Prepared::Value),
            Expr::MatcherHit { matcher, pattern } => Some(Prepared::Hit { matcher: *matcher, pattern: *pattern }),
            Expr::Not(e) => Some(Prepared::Not(Box::new(Prepared::new(e)))),
            Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
                Some(Prepared::And(Box::new(Prepared::new(lhs)), Box::new(Prepared::new(rhs))))
            }
            Expr::Binary { op: BinaryOp::Or, lhs, rhs } => {
                Some(Prepared::Or(Box::new(Prepared::new(lhs)), Box::new(Prepared::new(rhs))))
            }
            Expr::Binary { op: op @ (BinaryOp::Eq | BinaryOp::Ne), lhs, rhs } => {
                let operand_and_text = match (Operand::of(lhs), Operand::of(rhs)) {
                    (Some(of), None) => text(rhs).map(|t| (of, t)),
                    (None, Some(of)) => text(lhs).map(|t| (of, t)),
                    _ => None,
                };
                operand_and_text
                    .map(|(of, text)| Prepared::StrEq { of, text, is_equal: *op == BinaryOp::Eq })
                    .or_else(|| Prepared::compare(*op, lhs, rhs))
            }
            Expr::Binary { op: op @ (BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge), lhs, rhs } => {
                Prepared::compare(*op, lhs, rhs)
            }
            Expr::In { arg, list } => Operand::of(arg)
                .zip(list.iter().map(text).collect::<Option<Box<[_]>>>())
                .map(|(of, texts)| Prepared::StrIn { of, texts }),
            Expr::Call { function: Function::StartsWith, args } => match args.as_slice() {
                [arg, prefix] => {
                    Operand::of(arg).zip(text(prefix)).map(|(of, prefix)| Prepared::StartsWith { of, prefix })
                }
                _ => None,
            },
            _ => None,
        };
        prepared.unwrap_or_else(|| Prepared::Other(expr.clone()))
    }

    /// Prepares `expr` over a source's events: comparisons of its fields
    /// with texts go through `slots`.
    pub fn for_events(expr: &Expr, slots: &mut TextSlots) -> Self {
        Prepared::new(expr).slotted(slots)
    }

    fn slotted(self, slots: &mut TextSlots) -> Self {
        let texts_bits = |field, texts: &[Box<str>], is_equal, slots: &mut TextSlots| {
            slots.bits(field, texts).map(|(slot, bits)| Prepared::TextBits { slot, bits, is_equal })
        };
        match self {
            Prepared::StrEq { of: Operand::Field(field), text, is_equal } => {
                texts_bits(field, std::slice::from_ref(&text), is_equal, slots).unwrap_or(Prepared::StrEq {
                    of: Operand::Field(field),
                    text,
                    is_equal,
                })
            }
            Prepared::StrIn { of: Operand::Field(field), texts } => {
                texts_bits(field, &texts, true, slots).unwrap_or(Prepared::StrIn { of: Operand::Field(field), texts })
            }
            Prepared::Not(e) => Prepared::Not(Box::new(e.slotted(slots))),
            Prepared::And(lhs, rhs) => Prepared::And(Box::new(lhs.slotted(slots)), Box::new(rhs.slotted(slots))),
            Prepared::Or(lhs, rhs) => Prepared::Or(Box::new(lhs.slotted(slots)), Box::new(rhs.slotted(slots))),
            other => other,
        }
    }

    /// `lhs op rhs` where one side is a field or parameter and the other a literal.
    fn compare(op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Option<Self> {
        match (Operand::of(lhs), Operand::of(rhs), lhs, rhs) {
            (Some(of), None, _, Expr::Literal(literal)) => {
                Some(Prepared::Compare { of, op, literal: literal.clone(), is_operand_left: true })
            }
            (None, Some(of), Expr::Literal(literal), _) => {
                Some(Prepared::Compare { of, op, literal: literal.clone(), is_operand_left: false })
            }
            _ => None,
        }
    }

    /// Evaluates it over the event or classifier parameters of `scope`.
    // Inlined so that a field, the commonest shape, costs no call.
    #[inline]
    pub fn eval<'s>(&'s self, scope: &Scope<'s, '_>, regexes: &'s RegexCache) -> Val<'s> {
        match self {
            Prepared::Value(of) => of.get(scope).map_or(Val::Null, borrow),
            _ => self.eval_other(scope, regexes),
        }
    }

    fn eval_other<'s>(&'s self, scope: &Scope<'s, '_>, regexes: &'s RegexCache) -> Val<'s> {
        match self {
            Prepared::Value(of) => of.get(scope).map_or(Val::Null, borrow),
            Prepared::Compare { of, op, literal: value, is_operand_left } => {
                let operand = of.get(scope).map_or(Val::Null, borrow);
                if *is_operand_left {
                    apply(*op, operand, literal(value))
                } else {
                    apply(*op, literal(value), operand)
                }
            }
            Prepared::Other(expr) => eval(expr, scope, regexes),
            _ => self.test(scope, regexes).map_or(Val::Null, Val::Bool),
        }
    }

    /// Whether it holds, three-valued as [`Prepared::eval`]: `Some` for a
    /// boolean, `None` for null or a value of another type. Filters and
    /// rule conditions ask only this, so the boolean shapes run without
    /// building a value at every level.
    // Inlined so that a bit test, the commonest shape of filters and
    // `count_if`, costs no call.
    #[inline]
    pub fn test<'s>(&'s self, scope: &Scope<'s, '_>, regexes: &'s RegexCache) -> Option<bool> {
        match self {
            Prepared::TextBits { slot, bits, is_equal } => Some(text_bits_hold(scope, *slot, *bits, *is_equal)),
            _ => self.test_other(scope, regexes),
        }
    }

    fn test_other<'s>(&'s self, scope: &Scope<'s, '_>, regexes: &'s RegexCache) -> Option<bool> {
        let is_text = |of: Operand, text: &str| matches!(of.get(scope), Some(Val::Str(s)) if s.as_ref() == text);
        match self {
            Prepared::StrEq { of, text, is_equal } => Some(is_text(*of, text) == *is_equal),
            Prepared::StrIn { of, texts } => Some(texts.iter().any(|t| is_text(*of, t))),
            Prepared::TextBits { slot, bits, is_equal } => Some(text_bits_hold(scope, *slot, *bits, *is_equal)),
            // As the function: null for null, and a non-text value reads as "".
            Prepared::StartsWith { of, prefix } => match of.get(scope) {
                None | Some(Val::Null) => None,
                Some(Val::Str(s)) => Some(s.starts_with(prefix.as_ref())),
                Some(_) => Some(prefix.is_empty()),
            },
            Prepared::Hit { matcher, pattern } => match scope {
                Scope::Classifier { hits, .. } => hits.get(*matcher, *pattern),
                _ => None,
            },
            Prepared::Not(e) => e.test(scope, regexes).map(|b| !b),
            Prepared::And(lhs, rhs) => junction(false, lhs.test(scope, regexes), || rhs.test(scope, regexes)),
            Prepared::Or(lhs, rhs) => junction(true, lhs.test(scope, regexes), || rhs.test(scope, regexes)),
            // Whole numbers (`smtp_code >= 500`) without building values.
            Prepared::Compare { of, op, literal: Value::Int(literal), is_operand_left } => match of.get(scope) {
                Some(&Val::Int(operand)) => {
                    let (l, r) = if *is_operand_left { (operand, *literal) } else { (*literal, operand) };
                    match op {
                        BinaryOp::Eq => Some(l == r),
                        BinaryOp::Ne => Some(l != r),
                        BinaryOp::Lt => Some(l < r),
                        BinaryOp::Le => Some(l <= r),
                        BinaryOp::Gt => Some(l > r),
                        BinaryOp::Ge => Some(l >= r),
                        _ => None,
                    }
                }
                _ => self.eval(scope, regexes).as_bool(),
            },
            Prepared::Value(_) | Prepared::Compare { .. } | Prepared::Other(_) => self.eval(scope, regexes).as_bool(),
        }
    }
}

/// [`Prepared::TextBits`]: whether a bit of `bits` is set in the event's
/// mask of `slot` (`is_equal`), or none is.
#[inline]
fn text_bits_hold(scope: &Scope<'_, '_>, slot: usize, bits: u64, is_equal: bool) -> bool {
    // Outside an event's scope, the field is no text, as with a field operand.
    let mask = match scope {
        Scope::Event(ctx) => ctx.text_mask(slot),
        _ => 0,
    };
    (mask & bits != 0) == is_equal
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

fn call<'s>(function: Function, args: &'s [Expr], scope: &Scope<'s, '_>, regexes: &'s RegexCache) -> Val<'s> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const META: MessageMeta<'static> =
        MessageMeta { topic: "t", partition: 0, offset: 0, key: None, timestamp_ms: None, headers: &[] };

    /// An event of `row`, with no classifications.
    fn event<'s, 'a>(row: &'s [Val<'a>], texts: &'s TextSlots, text_masks: &'s [Cell<u64>]) -> EventCtx<'s, 'a> {
        EventCtx { row, meta: &META, classifications: &[], classifiers: &[], cache: &[], texts, text_masks }
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
