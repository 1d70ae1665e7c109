//! Expressions prepared for the per-event path ([`Prepared`]) and the
//! text slots that turn a source's string comparisons into bit tests
//! ([`TextSlots`]).

use super::{apply, borrow, eval, junction, literal, RegexCache, Scope};
use crate::value::Val;
use dsl::ast::BinaryOp;
use dsl::plan::{Expr, Function, Value};

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
    pub(super) fn mask(&self, slot: usize, row: &[Val<'_>]) -> u64 {
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
