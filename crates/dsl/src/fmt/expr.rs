//! Expressions on one line, with the fewest parentheses that read back the
//! same tree, and string literals with the escapes the grammar reads.

use super::format_duration;
use crate::ast::*;

/// Formats an expression on one line.
pub fn format_expr(e: &Expr) -> String {
    let mut out = String::new();
    expr(&mut out, e);
    out
}

/// A string literal with the escapes the grammar reads back.
pub(crate) fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Precedence of an expression as printed; operands of lower precedence than
/// their position needs get parentheses.
fn precedence(e: &Expr) -> u8 {
    match &e.node {
        ExprKind::Binary(op, ..) => op.precedence(),
        ExprKind::Unary(UnaryOp::Not, _) => NOT_PRECEDENCE,
        ExprKind::Unary(UnaryOp::Neg, _) => NEG_PRECEDENCE,
        ExprKind::Match { .. } | ExprKind::In { .. } => MATCH_PRECEDENCE,
        _ => ATOM_PRECEDENCE,
    }
}

fn operand(out: &mut String, e: &Expr, min: u8) {
    if precedence(e) < min {
        out.push('(');
        expr(out, e);
        out.push(')');
    } else {
        expr(out, e);
    }
}

fn expr(out: &mut String, e: &Expr) {
    match &e.node {
        ExprKind::Null => out.push_str("null"),
        ExprKind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ExprKind::Int(i) => out.push_str(&i.to_string()),
        ExprKind::Float(f) => {
            let s = f.to_string();
            out.push_str(&s);
            if !s.contains('.') {
                out.push_str(".0");
            }
        }
        ExprKind::Str(s) => out.push_str(&string(s)),
        ExprKind::Duration(d) => out.push_str(&format_duration(d.as_millis())),
        ExprKind::Name(n) => out.push_str(n),
        ExprKind::Member(base, member) => {
            // `1.x` would lex as a malformed float: a numeric base needs parentheses.
            let is_number = matches!(base.node, ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Duration(_));
            operand(out, base, if is_number { ATOM_PRECEDENCE + 1 } else { ATOM_PRECEDENCE });
            out.push('.');
            out.push_str(&member.node);
        }
        ExprKind::Call(name, args) => {
            out.push_str(&name.node);
            out.push('(');
            comma_list(out, args);
            out.push(')');
        }
        ExprKind::Unary(UnaryOp::Not, arg) => {
            out.push_str("not ");
            operand(out, arg, NOT_PRECEDENCE);
        }
        ExprKind::Unary(UnaryOp::Neg, arg) => {
            out.push('-');
            operand(out, arg, NEG_PRECEDENCE);
        }
        ExprKind::Binary(op, lhs, rhs) => {
            let p = op.precedence();
            operand(out, lhs, p);
            out.push(' ');
            out.push_str(op.symbol());
            out.push(' ');
            // Left-associative: an equal-precedence right operand needs parentheses.
            operand(out, rhs, p + 1);
        }
        ExprKind::Match { expr: arg, regex, is_negated } => {
            operand(out, arg, MATCH_PRECEDENCE);
            out.push_str(if *is_negated { " !~ /" } else { " ~ /" });
            out.push_str(&regex.pattern);
            out.push('/');
            out.push_str(&regex.flags);
        }
        ExprKind::In { expr: arg, list, is_negated } => {
            operand(out, arg, MATCH_PRECEDENCE);
            out.push_str(if *is_negated { " not in [" } else { " in [" });
            comma_list(out, list);
            out.push(']');
        }
        ExprKind::Case { arms, otherwise } => {
            out.push_str("case");
            for (condition, value) in arms {
                out.push_str(" when ");
                expr(out, condition);
                out.push_str(" then ");
                expr(out, value);
            }
            if let Some(o) = otherwise {
                out.push_str(" else ");
                expr(out, o);
            }
            out.push_str(" end");
        }
    }
}

fn comma_list(out: &mut String, items: &[Expr]) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        expr(out, item);
    }
}
