//! A linear pass over the text before pest runs: lexemes as far as nesting
//! and comments are concerned, the comments themselves, and the bounds on
//! nesting that keep the recursive-descent parser off the end of the stack.

use super::{MAX_NESTING, MAX_PREFIX_RUN};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::span::{FileId, Span};

/// A lexical unit, as far as nesting and comments are concerned.
enum Lexeme<'t> {
    Comment {
        start: usize,
        end: usize,
    },
    Word {
        start: usize,
        text: &'t str,
    },
    /// String and regex literals: opaque.
    Literal,
    Punct {
        at: usize,
        byte: u8,
    },
}

/// Splits `text` into [`Lexeme`]s, skipping strings, comments and regex
/// literals exactly as the grammar does (a regex follows `~`).
fn lex(text: &str) -> impl Iterator<Item = Lexeme<'_>> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut after_tilde = false;
    std::iter::from_fn(move || loop {
        let b = *bytes.get(i)?;
        let start = i;
        let skip_quoted = |i: &mut usize, close: u8| {
            *i += 1;
            while *i < bytes.len() && bytes[*i] != close && bytes[*i] != b'\n' {
                *i += if bytes[*i] == b'\\' { 2 } else { 1 };
            }
            *i = (*i + 1).min(bytes.len());
        };
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                return Some(Lexeme::Comment { start, end: i });
            }
            b'"' => {
                skip_quoted(&mut i, b'"');
                after_tilde = false;
                return Some(Lexeme::Literal);
            }
            b'/' if after_tilde => {
                skip_quoted(&mut i, b'/');
                after_tilde = false;
                return Some(Lexeme::Literal);
            }
            b if b.is_ascii_alphanumeric() || b == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                after_tilde = false;
                return Some(Lexeme::Word { start, text: &text[start..i] });
            }
            _ => {
                // Advance by a whole character so slicing stays on boundaries.
                i += text[i..].chars().next().map_or(1, char::len_utf8);
                after_tilde = b == b'~';
                return Some(Lexeme::Punct { at: start, byte: b });
            }
        }
    })
}

/// The end of `text[start..end]` without trailing whitespace and comments.
/// Strings and regexes never span lines, so lexing the last line suffices.
pub(super) fn trim_end(text: &str, start: usize, mut end: usize) -> usize {
    loop {
        end = start + text[start..end].trim_end().len();
        let line_start = text[start..end].rfind('\n').map_or(start, |i| start + i + 1);
        if !text[line_start..end].contains('#') {
            return end;
        }
        // A `#` may sit inside a regex whose `~` is on an earlier line: lex the whole span.
        match lex(&text[start..end]).last() {
            Some(Lexeme::Comment { start: comment, .. }) => end = start + comment,
            _ => return end,
        }
    }
}

/// Every comment in `text`, in order.
pub(crate) fn comments(text: &str) -> Vec<crate::fmt::Comment> {
    lex(text)
        .filter_map(|l| match l {
            Lexeme::Comment { start, end } => Some(crate::fmt::Comment { start: start as u32, end: end as u32 }),
            _ => None,
        })
        .collect()
}

/// Rejects inputs that would make the recursive-descent parser recurse too
/// deep: bracket and `case` nesting, and long runs of prefix operators.
pub(super) fn prescan(file: FileId, text: &str) -> Result<(), Diagnostic> {
    let mut openers = 0usize;
    let mut prefix_run = 0usize;
    let bytes = text.as_bytes();
    // `x.end`, `case.full` and `reason case` use the words as names, not keywords.
    // The words stand as names, not keywords, after `.`, `rule`, `default`
    // or `reason` (and in the kind position after `reason NAME`), and before
    // `.` or `:` (categories, field names, map keys).
    let is_name = |start: usize, len: usize| {
        let before = text[..start].trim_end();
        let previous_word =
            |s: &str| s.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or("").to_string();
        let word_before = previous_word(before);
        let before_that = previous_word(before[..before.len() - word_before.len()].trim_end());
        let after = text[start + len..].trim_start();
        before.ends_with('.')
            || matches!(word_before.as_str(), "rule" | "default" | "reason")
            || before_that == "reason"
            || after.starts_with('.')
            || after.starts_with(':')
            || bytes.get(start + len) == Some(&b'.')
    };
    for lexeme in lex(text) {
        let lexeme = match lexeme {
            Lexeme::Word { start, text: word @ ("case" | "end") } if is_name(start, word.len()) => {
                Lexeme::Word { start, text: "" }
            }
            other => other,
        };
        let (at, is_prefix) = match lexeme {
            Lexeme::Comment { .. } => continue,
            Lexeme::Literal => (0, false),
            Lexeme::Word { start, text: "case" } => {
                openers += 1;
                if openers > MAX_NESTING {
                    return Err(too_deep(file, start, "`case` expressions"));
                }
                (start, false)
            }
            Lexeme::Word { text: "end", .. } => {
                openers = openers.saturating_sub(1);
                (0, false)
            }
            Lexeme::Word { start, text } => (start, text == "not"),
            Lexeme::Punct { at, byte: b'(' | b'[' | b'{' } => {
                openers += 1;
                if openers > MAX_NESTING {
                    return Err(too_deep(file, at, "brackets"));
                }
                // An opening bracket does not end a run: `- ( - ( …` still nests.
                continue;
            }
            Lexeme::Punct { byte: b')' | b']' | b'}', .. } => {
                openers = openers.saturating_sub(1);
                (0, false)
            }
            Lexeme::Punct { at, byte } => (at, byte == b'-'),
        };
        if is_prefix {
            prefix_run += 1;
            if prefix_run > MAX_PREFIX_RUN {
                return Err(too_deep(file, at, "prefix operators"));
            }
        } else {
            prefix_run = 0;
        }
    }
    Ok(())
}

fn too_deep(file: FileId, at: usize, what: &str) -> Diagnostic {
    Diagnostic::error(Code::TooDeep, Span::new(file, at, at + 1), format!("{what} are nested too deeply"))
        .with_label("this is one level too many")
        .with_note(format!(
            "the limits are {MAX_NESTING} levels of brackets and {MAX_PREFIX_RUN} prefix operators in a row"
        ))
        .with_help("name intermediate results with `group by … as` or split the condition")
}
