//! Expressions, by precedence climbing over pest's pairs. The depth of
//! the tree is counted while it is built, and a tree deeper than
//! [`MAX_EXPR_DEPTH`] becomes one diagnostic, so later passes may recurse freely.

use super::{Converter, Rule, MAX_EXPR_DEPTH};
use crate::ast::{BinaryOp, Expr, ExprKind, RegexLit, UnaryOp};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::span::{Span, Spanned};
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::sync::LazyLock;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    // Lowest precedence first; must agree with `BinaryOp::precedence`.
    PrattParser::new()
        .op(Op::infix(Rule::or_op, Assoc::Left))
        .op(Op::infix(Rule::and_op, Assoc::Left))
        .op(Op::prefix(Rule::not_op))
        .op(Op::infix(Rule::eq_op, Assoc::Left)
            | Op::infix(Rule::ne_op, Assoc::Left)
            | Op::infix(Rule::lt_op, Assoc::Left)
            | Op::infix(Rule::le_op, Assoc::Left)
            | Op::infix(Rule::gt_op, Assoc::Left)
            | Op::infix(Rule::ge_op, Assoc::Left)
            | Op::postfix(Rule::match_op)
            | Op::postfix(Rule::not_match_op)
            | Op::postfix(Rule::in_op)
            | Op::postfix(Rule::not_in_op))
        .op(Op::infix(Rule::add_op, Assoc::Left) | Op::infix(Rule::sub_op, Assoc::Left))
        .op(Op::infix(Rule::mul_op, Assoc::Left)
            | Op::infix(Rule::div_op, Assoc::Left)
            | Op::infix(Rule::rem_op, Assoc::Left))
        .op(Op::prefix(Rule::neg_op))
        .op(Op::postfix(Rule::member))
});

/// An expression with the depth of its tree, so depth is bounded while building.
type Sized = (Expr, u32);

impl Converter<'_> {
    pub(super) fn expr(&self, pair: Pair<'_, Rule>) -> Expr {
        self.sized_expr(pair).0
    }

    fn sized_expr(&self, pair: Pair<'_, Rule>) -> Sized {
        PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(|op, (rhs, depth)| {
                let span = self.span(&op).to(rhs.span);
                let op = if op.as_rule() == Rule::not_op { UnaryOp::Not } else { UnaryOp::Neg };
                self.deeper(ExprKind::Unary(op, Box::new(rhs)), span, depth)
            })
            .map_infix(|(lhs, ld), op, (rhs, rd)| {
                let span = lhs.span.to(rhs.span);
                let op = match op.as_rule() {
                    Rule::or_op => BinaryOp::Or,
                    Rule::and_op => BinaryOp::And,
                    Rule::eq_op => BinaryOp::Eq,
                    Rule::ne_op => BinaryOp::Ne,
                    Rule::lt_op => BinaryOp::Lt,
                    Rule::le_op => BinaryOp::Le,
                    Rule::gt_op => BinaryOp::Gt,
                    Rule::ge_op => BinaryOp::Ge,
                    Rule::add_op => BinaryOp::Add,
                    Rule::sub_op => BinaryOp::Sub,
                    Rule::mul_op => BinaryOp::Mul,
                    Rule::div_op => BinaryOp::Div,
                    Rule::rem_op => BinaryOp::Rem,
                    other => unreachable!("grammar: {other:?} is not an infix operator"),
                };
                self.deeper(ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span, ld.max(rd))
            })
            .map_postfix(|(lhs, depth), op| {
                let span = lhs.span.to(self.span(&op));
                let rule = op.as_rule();
                let mut inner = op.into_inner();
                let kind = match rule {
                    Rule::member => {
                        ExprKind::Member(Box::new(lhs), self.ident(inner.next().expect("grammar: member name")))
                    }
                    Rule::match_op | Rule::not_match_op => ExprKind::Match {
                        expr: Box::new(lhs),
                        regex: self.regex(inner.next().expect("grammar: regex")),
                        is_negated: rule == Rule::not_match_op,
                    },
                    Rule::in_op | Rule::not_in_op => {
                        let list = inner.find(|p| p.as_rule() == Rule::list).expect("grammar: in list");
                        let (items, list_depth) = self.exprs(list.into_inner());
                        let depth = depth.max(list_depth);
                        return self.deeper(
                            ExprKind::In { expr: Box::new(lhs), list: items, is_negated: rule == Rule::not_in_op },
                            span,
                            depth,
                        );
                    }
                    other => unreachable!("grammar: {other:?} is not a postfix operator"),
                };
                self.deeper(kind, span, depth)
            })
            .parse(pair.into_inner())
    }

    fn exprs<'i>(&self, pairs: impl Iterator<Item = Pair<'i, Rule>>) -> (Vec<Expr>, u32) {
        let mut depth = 0;
        let items = pairs
            .map(|p| {
                let (e, d) = self.sized_expr(p);
                depth = depth.max(d);
                e
            })
            .collect();
        (items, depth)
    }

    /// Wraps `kind` one level above children of depth `child_depth`, or
    /// replaces it by a placeholder once the tree would be too deep.
    fn deeper(&self, kind: ExprKind, span: Span, child_depth: u32) -> Sized {
        let depth = child_depth + 1;
        if depth > MAX_EXPR_DEPTH {
            if !self.too_deep_reported.replace(true) {
                self.report(
                    Diagnostic::error(Code::TooDeep, span, "expression is nested too deeply")
                        .with_note(format!("the limit is {MAX_EXPR_DEPTH} levels"))
                        .with_help("split the expression into named parts"),
                );
            }
            return (Spanned::new(ExprKind::Null, span), 1);
        }
        (Spanned::new(kind, span), depth)
    }

    fn primary(&self, pair: Pair<'_, Rule>) -> Sized {
        let span = self.span(&pair);
        let leaf = |kind| (Spanned::new(kind, span), 1);
        match pair.as_rule() {
            Rule::paren => self.sized_expr(pair.into_inner().next().expect("grammar: paren has expr")),
            Rule::name => leaf(ExprKind::Name(pair.as_str().to_string())),
            Rule::true_lit => leaf(ExprKind::Bool(true)),
            Rule::false_lit => leaf(ExprKind::Bool(false)),
            Rule::null_lit => leaf(ExprKind::Null),
            Rule::int_lit => match pair.as_str().parse::<i64>() {
                Ok(v) => leaf(ExprKind::Int(v)),
                Err(_) => {
                    self.report(
                        Diagnostic::error(Code::BadNumber, span, "integer too large")
                            .with_label(format!("the largest integer is {}", i64::MAX)),
                    );
                    leaf(ExprKind::Null)
                }
            },
            Rule::float_lit => match pair.as_str().parse::<f64>() {
                Ok(v) if v.is_finite() => leaf(ExprKind::Float(v)),
                _ => {
                    self.report(Diagnostic::error(Code::BadNumber, span, "number out of range"));
                    leaf(ExprKind::Null)
                }
            },
            Rule::duration => leaf(ExprKind::Duration(self.duration(&pair).node)),
            Rule::string_lit => leaf(ExprKind::Str(self.string(pair).node)),
            Rule::call => {
                let mut inner = pair.into_inner();
                let name = self.ident(inner.next().expect("grammar: call name"));
                let (args, depth) = self.exprs(inner);
                self.deeper(ExprKind::Call(name, args), span, depth)
            }
            Rule::case_expr => {
                let mut arms = Vec::new();
                let mut otherwise = None;
                let mut depth = 0;
                for part in pair.into_inner().filter(|p| p.as_rule() != Rule::end_kw) {
                    if part.as_rule() == Rule::case_arm {
                        let (parts, d) = self.exprs(part.into_inner());
                        depth = depth.max(d);
                        let mut parts = parts.into_iter();
                        let when = parts.next().expect("grammar: arm condition");
                        let then = parts.next().expect("grammar: arm value");
                        arms.push((when, then));
                    } else {
                        let (e, d) = self.sized_expr(part);
                        depth = depth.max(d);
                        otherwise = Some(Box::new(e));
                    }
                }
                self.deeper(ExprKind::Case { arms, otherwise }, span, depth)
            }
            other => unreachable!("grammar: unexpected primary {other:?}"),
        }
    }

    fn regex(&self, pair: Pair<'_, Rule>) -> Spanned<RegexLit> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let pattern = inner.next().expect("grammar: regex body").as_str().to_string();
        let flags = inner.next().map(|f| f.as_str().to_string()).unwrap_or_default();
        Spanned::new(RegexLit { pattern, flags }, span)
    }
}
