//! Literals: unsigned numbers, strings with their escapes, durations.

use super::{Converter, Rule};
use crate::ast::Duration;
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::span::{Span, Spanned};
use pest::iterators::Pair;

impl Converter<'_> {
    pub(super) fn unsigned(&self, pair: &Pair<'_, Rule>) -> u64 {
        pair.as_str().parse().unwrap_or_else(|_| {
            self.report(
                Diagnostic::error(Code::BadNumber, self.span(pair), "number too large")
                    .with_label(format!("the largest allowed is {}", u64::MAX)),
            );
            0
        })
    }

    pub(super) fn string(&self, pair: Pair<'_, Rule>) -> Spanned<String> {
        let span = self.span(&pair);
        let inner = pair.into_inner().next().expect("grammar: string has a body");
        let raw = inner.as_str();
        let body_start = inner.as_span().start();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let escape_span = |len: usize| Span::new(self.file, body_start + i, body_start + i + len);
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'u')) => {
                    let rest = &raw[i + 2..];
                    let decoded = rest
                        .strip_prefix('{')
                        .and_then(|r| r.split_once('}'))
                        .and_then(|(hex, _)| u32::from_str_radix(hex, 16).ok().filter(|_| hex.len() <= 6))
                        .and_then(char::from_u32);
                    match decoded {
                        Some(ch) => {
                            out.push(ch);
                            // Skip `{`, the hex digits and `}`.
                            let escape_len = rest.find('}').map_or(0, |close| close + 1);
                            for _ in 0..escape_len {
                                chars.next();
                            }
                        }
                        None => self.report(
                            Diagnostic::error(Code::BadEscape, escape_span(2), "invalid unicode escape")
                                .with_help("write a code point as `\\u{1F600}`"),
                        ),
                    }
                }
                Some((_, other)) => self.report(
                    Diagnostic::error(
                        Code::BadEscape,
                        escape_span(1 + other.len_utf8()),
                        format!("unknown escape `\\{other}`"),
                    )
                    .with_help("the escapes are `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r` and `\\u{…}`"),
                ),
                None => {}
            }
        }
        Spanned::new(out, span)
    }

    pub(super) fn duration(&self, pair: &Pair<'_, Rule>) -> Spanned<Duration> {
        let span = self.span(pair);
        match parse_duration(pair.as_str()) {
            Some(ms) => Spanned::new(Duration(ms), span),
            None => {
                self.report(
                    Diagnostic::error(Code::BadDuration, span, "duration out of range")
                        .with_label("too large")
                        .with_note("durations are at most 1000 years"),
                );
                Spanned::new(Duration(0), span)
            }
        }
    }
}

/// Parses `1h30m` into milliseconds; `None` on overflow or malformed text.
pub fn parse_duration(text: &str) -> Option<u64> {
    const MAX_MS: u64 = 1000 * 365 * 86_400_000;
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            let unit = match rest.chars().next()? {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 7 * 86_400_000,
                'y' => 365 * 86_400_000,
                _ => return None,
            };
            (unit, 1)
        };
        rest = &rest[len..];
        total = total.checked_add(value.checked_mul(unit_ms)?)?;
    }
    (total <= MAX_MS).then_some(total)
}
