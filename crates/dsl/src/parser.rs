//! Text → [`ast::File`]. The only module that imports pest.
//!
//! Before pest runs, a linear pre-scan bounds bracket nesting and runs of
//! prefix operators, the only ways the grammar recurses, so no input can
//! overflow the stack. While building the tree, expression depth is tracked
//! and capped for the same reason: later passes recurse over it freely.

use crate::ast::*;
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::span::{FileId, Span, Spanned};
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;
use std::cell::RefCell;
use std::sync::LazyLock;

/// The generated parser; private so pest's `Rule` never leaks into the API.
mod grammar {
    #![allow(missing_docs)]
    #[derive(pest_derive::Parser)]
    #[grammar = "../../../dsl/stream.pest"]
    pub(super) struct StreamParser;
}
use grammar::{Rule, StreamParser};

/// Largest file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 4 << 20;
/// Deepest bracket (`(`, `[`, `{`, `case`) nesting accepted.
pub const MAX_NESTING: usize = 64;
/// Longest run of prefix operators (`not`, `-`) accepted.
pub const MAX_PREFIX_RUN: usize = 32;
/// Deepest expression tree accepted.
pub const MAX_EXPR_DEPTH: u32 = 128;

/// Parses the text of one file. On failure returns every problem found.
pub fn parse(file: FileId, text: &str) -> Result<File, Vec<Diagnostic>> {
    if text.len() > MAX_FILE_BYTES {
        let end = text.len().min(1);
        return Err(vec![Diagnostic::error(
            Code::TooLarge,
            Span::new(file, 0, end),
            format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", text.len()),
        )
        .with_help("split the pipelines over several files")]);
    }
    prescan(file, text).map_err(|d| vec![d])?;
    let mut pairs = StreamParser::parse(Rule::file, text).map_err(|e| vec![syntax_error(file, text, &e)])?;
    let root = pairs.next().expect("grammar: file rule yields one pair");
    let converter =
        Converter { file, text, diagnostics: RefCell::new(Vec::new()), too_deep_reported: RefCell::new(false) };
    let ast = converter.file(root);
    let diagnostics = converter.diagnostics.into_inner();
    if diagnostics.is_empty() {
        Ok(ast)
    } else {
        Err(diagnostics)
    }
}

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
fn trim_end(text: &str, start: usize, mut end: usize) -> usize {
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
fn prescan(file: FileId, text: &str) -> Result<(), Diagnostic> {
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

/// Turns a pest error into our diagnostic, naming rules in the user's words.
fn syntax_error(file: FileId, text: &str, error: &pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let at = match error.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = describe_found(text, at);
    let span = Span::new(file, at, at + found.1);
    let mut expected: Vec<&str> = match &error.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.iter().map(|r| describe_rule(*r)).collect(),
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    expected.sort_unstable();
    expected.dedup();
    // Put the most helpful, specific expectations first and cap the list.
    expected.sort_by_key(|e| (e.starts_with("an ") || e.starts_with("a "), *e));
    let expected_text = match expected.as_slice() {
        [] => "something else".to_string(),
        [one] => (*one).to_string(),
        many => {
            let shown: Vec<&str> = many.iter().take(8).copied().collect();
            let (last, rest) = shown.split_last().expect("at least two");
            let more = if many.len() > 8 { ", …" } else { "" };
            format!("{}{more} or {last}", rest.join(", "))
        }
    };
    let diagnostic = Diagnostic::error(Code::Syntax, span, format!("unexpected {}", found.0))
        .with_label(format!("expected {expected_text}"));
    match trailing_comma_help(text, at).or_else(|| mistake_help(text, at, &expected)) {
        Some(help) => diagnostic.with_help(help),
        None => diagnostic,
    }
}

/// Advice for a few common mistakes, recognised by what stands at the
/// error (`found`), the clause it is in, and what the grammar expected
/// there (in [`describe_rule`]'s words).
fn mistake_help(text: &str, at: usize, expected: &[&str]) -> Option<String> {
    let rest = text.get(at..)?;
    let found = leading_word(rest);
    let (clause, previous) = last_words(&text[..at]);
    if rest.starts_with("=~") {
        return Some("a regex match is written `~` (and `!~` for no match)".into());
    }
    if rest.starts_with('=') && !rest.starts_with("==") {
        return Some("compare with `==`".into());
    }
    // Pest reports a clause or entry that fails after its first word at that word.
    let after = rest[found.len()..].trim_start();
    if !found.is_empty() && after.starts_with('=') && expected.iter().any(|e| e.starts_with("an entry")) {
        return Some("write `:` between a label's or annotation's name and its value".into());
    }
    let next_word = leading_word(after);
    if (previous == Some("group") && found != "by") || (found == "group" && next_word != "by") {
        return Some("write `group by`".into());
    }
    let is_name = !found.is_empty() && !found.starts_with(|c: char| c.is_ascii_digit());
    if is_name && expected.contains(&"a string") {
        return Some(format!("write text in double quotes: `\"{found}\"`"));
    }
    match clause? {
        "group" | "compute" if is_name && !CLAUSE_WORDS.contains(&found) => Some(format!(
            "to name the item before it, write `as {found}`; to start another item, put a comma before it"
        )),
        "rollup" if found.starts_with(|c: char| c.is_ascii_digit()) => {
            Some("separate the tiers with commas: `rollup 1h keep 90d, 1d keep 2y`".into())
        }
        _ => None,
    }
}

/// In `text` (comments and strings left out): the last metric clause or
/// declaration keyword, and the last word.
fn last_words(text: &str) -> (Option<&str>, Option<&str>) {
    let (mut clause, mut last) = (None, None);
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => {
                chars.find(|&(_, c)| c == '\n');
            }
            '"' => {
                let mut escaped = false;
                for (_, c) in chars.by_ref() {
                    match c {
                        '"' if !escaped => break,
                        '\\' => escaped = !escaped,
                        _ => escaped = false,
                    }
                }
            }
            c if is_word_char(c) => {
                let word = leading_word(&text[i..]);
                while chars.next_if(|&(j, _)| j < i + word.len()).is_some() {}
                if CLAUSE_WORDS.contains(&word) {
                    clause = Some(word);
                }
                last = Some(word);
            }
            _ => {}
        }
    }
    (clause, last)
}

/// Whether `c` may be part of a name or keyword.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The name or keyword `text` starts with (empty if none).
fn leading_word(text: &str) -> &str {
    &text[..text.find(|c: char| !is_word_char(c)).unwrap_or(text.len())]
}

/// Words that start a metric clause or a top-level declaration.
const CLAUSE_WORDS: [&str; 13] = [
    "where",
    "group",
    "compute",
    "window",
    "rollup",
    "into",
    "cardinality",
    "export",
    "metric",
    "alert",
    "classifier",
    "source",
    "import",
];

/// Advice when a syntax error at `at` comes from a comma after the last item
/// of a `group by`, `compute` or `rollup` list, which the language does not
/// allow. Keywords are contextual, so after such a comma the next clause's
/// keyword is read as one more item (`group by a, b,` then `compute …`
/// reads `compute` as a field and fails on the word after it), or fails
/// itself where items cannot be names (`rollup`), or the file ends.
fn trailing_comma_help(text: &str, at: usize) -> Option<String> {
    const RULE: &str = "`group by`, `compute` and `rollup` lists take no comma after their last item";
    let (before, last) = last_char_before(text, at)?;
    if last == ',' {
        let rest = text.get(at..)?;
        let word = leading_word(rest);
        return if rest.is_empty() {
            Some(format!("remove the comma at the end of the file: {RULE}"))
        } else if CLAUSE_WORDS.contains(&word) {
            Some(format!("remove the comma before `{word}`: {RULE}"))
        } else {
            None
        };
    }
    // The word that ends just before the error: a clause keyword read as an item?
    if !is_word_char(last) {
        return None;
    }
    let end = before + 1; // `last` is ASCII.
    let word_start =
        text[..end].char_indices().rev().take_while(|&(_, c)| is_word_char(c)).last().map_or(end, |(i, _)| i);
    let word = &text[word_start..end];
    let (_, comma) = last_char_before(text, word_start)?;
    (CLAUSE_WORDS.contains(&word) && comma == ',')
        .then(|| format!("remove the comma before `{word}`: {RULE} (after one, `{word}` is read as one more item)"))
}

/// The last character before `at` that is neither whitespace nor part of a
/// comment, with its byte position.
fn last_char_before(text: &str, at: usize) -> Option<(usize, char)> {
    let mut end = at;
    loop {
        let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
        let line = &text[line_start..end];
        // A `#` outside a string starts a comment (a `#` inside one follows an odd number of quotes).
        let code = line
            .char_indices()
            .find(|&(i, c)| c == '#' && line[..i].matches('"').count().is_multiple_of(2))
            .map_or(line, |(i, _)| &line[..i]);
        if let Some((i, c)) = code.char_indices().rev().find(|(_, c)| !c.is_whitespace()) {
            return Some((line_start + i, c));
        }
        if line_start == 0 {
            return None;
        }
        end = line_start - 1;
    }
}

/// What stands at `at`, for "unexpected …", and how many bytes to underline.
fn describe_found(text: &str, at: usize) -> (String, usize) {
    let rest = text.get(at..).unwrap_or("");
    let Some(first) = rest.chars().next() else { return ("end of file".into(), 0) };
    if first.is_ascii_alphanumeric() || first == '_' {
        let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
        let len = word.len();
        (format!("`{word}`"), len)
    } else if first == '\n' {
        ("end of line".into(), 1)
    } else {
        (format!("`{}`", first.escape_debug()), first.len_utf8())
    }
}

fn describe_rule(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::version_decl => "`version`",
        Rule::import_decl => "`import`",
        Rule::source_decl => "`source`",
        Rule::classifier_decl => "`classifier`",
        Rule::metric_decl => "`metric`",
        Rule::alert_decl => "`alert`",
        Rule::ident | Rule::any_ident | Rule::name => "a name",
        Rule::category => "a category such as `gmail.mailbox_full`",
        Rule::int_lit => "an integer",
        Rule::float_lit => "a number",
        Rule::duration => "a duration such as `5m`",
        Rule::string_lit | Rule::string_inner => "a string",
        Rule::regex_lit | Rule::regex_body | Rule::regex_flags => "a regex such as `/mailbox full/i`",
        Rule::field_block | Rule::string_map => "`{`",
        Rule::field_decl => "a field such as `sender_domain: string`",
        Rule::type_expr => "a type such as `string` or `int?`",
        Rule::nullable_mark => "`?`",
        Rule::event_time_mark => "`event_time`",
        Rule::max_future_clause => "`max_future`",
        Rule::dnsbl_source => "`dnsbl`",
        Rule::dnsbl_topic => "`topic`",
        Rule::dnsbl_every => "`every`",
        Rule::dnsbl_targets => "`targets`",
        Rule::dnsbl_targets_from => "`targets from metric`",
        Rule::dnsbl_list => "`list`",
        Rule::dnsbl_weight => "`weight`",
        Rule::dnsbl_max_qps => "`max_qps`",
        Rule::dnsbl_max_per_day => "`max_per_day`",
        Rule::dnsbl_key_env => "`key_env`",
        Rule::dnsbl_codes => "`codes`",
        Rule::dnsbl_code => "a code such as `\"127.0.0.2\": \"SBL\"`",
        Rule::param_list | Rule::param_decl => "a parameter such as `diagnostic: string?`",
        Rule::rule_decl => "`rule`",
        Rule::default_decl => "`default`",
        Rule::outcome => "a category",
        Rule::hint_clause => "`hint`",
        Rule::where_clause => "`where`",
        Rule::group_clause => "`group by`",
        Rule::compute_clause => "`compute`",
        Rule::window_clause => "`window`",
        Rule::rollup_clause => "`rollup`",
        Rule::rollup_tier => "a tier such as `1h keep 90d`",
        Rule::into_clause => "`into table`",
        Rule::cardinality_clause => "`cardinality limit`",
        Rule::export_clause => "`export`",
        Rule::for_clause => "`for`",
        Rule::labels_clause => "`labels`",
        Rule::annotations_clause => "`annotations`",
        Rule::string_entry => "an entry such as `severity: \"page\"`",
        Rule::member => "`.`",
        Rule::match_op => "`~`",
        Rule::not_match_op => "`!~`",
        Rule::in_op | Rule::not_in_op => "`in`",
        Rule::list => "`[`",
        Rule::paren => "`(`",
        Rule::case_expr => "`case`",
        Rule::case_arm => "`when`",
        Rule::or_op
        | Rule::and_op
        | Rule::eq_op
        | Rule::ne_op
        | Rule::le_op
        | Rule::ge_op
        | Rule::lt_op
        | Rule::gt_op
        | Rule::add_op
        | Rule::sub_op
        | Rule::mul_op
        | Rule::div_op
        | Rule::rem_op => "an operator",
        _ => "an expression",
    }
}

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

struct Converter<'t> {
    file: FileId,
    text: &'t str,
    diagnostics: RefCell<Vec<Diagnostic>>,
    too_deep_reported: RefCell<bool>,
}

impl Converter<'_> {
    /// The pair's span without trailing whitespace and comments, which pest
    /// includes when a rule ends in an optional part or a repetition.
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, s.start(), trim_end(self.text, s.start(), s.end()))
    }

    fn report(&self, diagnostic: Diagnostic) {
        self.diagnostics.borrow_mut().push(diagnostic);
    }

    fn ident(&self, pair: Pair<'_, Rule>) -> Ident {
        Spanned::new(pair.as_str().to_string(), self.span(&pair))
    }

    fn file(&self, root: Pair<'_, Rule>) -> File {
        let mut version = None;
        let mut items = Vec::new();
        for pair in root.into_inner() {
            match pair.as_rule() {
                Rule::version_decl => {
                    let span = self.span(&pair);
                    let number = pair.into_inner().next().expect("grammar: version has a number");
                    version = Some(Spanned::new(self.unsigned(&number), span));
                }
                Rule::import_decl => {
                    let span = self.span(&pair);
                    let path = self.string(pair.into_inner().next().expect("grammar: import has a path"));
                    items.push(Item::Import(Import { path, span }));
                }
                Rule::source_decl => items.push(Item::Source(self.source(pair))),
                Rule::classifier_decl => items.push(Item::Classifier(self.classifier(pair))),
                Rule::metric_decl => items.push(Item::Metric(self.metric(pair))),
                Rule::alert_decl => items.push(Item::Alert(self.alert(pair))),
                Rule::EOI => {}
                other => unreachable!("grammar: unexpected {other:?} at top level"),
            }
        }
        File { version, items }
    }

    fn source(&self, pair: Pair<'_, Rule>) -> Source {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("grammar: source name"));
        let next = inner.next().expect("grammar: source body");
        if next.as_rule() == Rule::dnsbl_source {
            return self.dnsbl_source(name, next, span);
        }
        let topic = self.string(next);
        let format = self.ident(inner.next().expect("grammar: source format"));
        let mut next = inner.next().expect("grammar: source fields");
        let mut max_future = None;
        if next.as_rule() == Rule::max_future_clause {
            max_future = next.clone().into_inner().next().map(|d| self.duration(&d));
            next = inner.next().expect("grammar: source fields");
        }
        let fields = self.fields(next);
        Source { name, topic, format, max_future, fields, dnsbl: None, span }
    }

    /// `source NAME from dnsbl { … }`: the topic (unless set), format and
    /// fields are the fixed ones of a DNSBL observation.
    fn dnsbl_source(&self, name: Ident, block: Pair<'_, Rule>, span: Span) -> Source {
        let block_span = self.span(&block);
        let start = block.as_span().start();
        let settings: Vec<DnsblSetting> = block.into_inner().map(|s| self.dnsbl_setting(s)).collect();
        let topic = settings
            .iter()
            .find_map(|s| match s {
                DnsblSetting::Topic(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap_or_else(|| Spanned::new(format!("reputation.{}", name.node), name.span));
        let keyword = Span::new(self.file, start, start + "dnsbl".len());
        let fields = crate::dnsbl::OBSERVATION_FIELDS
            .iter()
            .map(|f| FieldDecl {
                name: Spanned::new(f.name.to_string(), keyword),
                ty: TypeExpr {
                    kind: TypeKind::Scalar(Spanned::new(f.scalar.name().to_string(), keyword)),
                    is_nullable: f.nullable,
                    span: keyword,
                },
                is_event_time: f.is_event_time,
                span: keyword,
            })
            .collect();
        Source {
            name,
            topic,
            format: Spanned::new("json".to_string(), keyword),
            max_future: None,
            fields,
            dnsbl: Some(Dnsbl { settings, span: block_span }),
            span,
        }
    }

    fn dnsbl_setting(&self, pair: Pair<'_, Rule>) -> DnsblSetting {
        let rule = pair.as_rule();
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        match rule {
            Rule::dnsbl_topic => DnsblSetting::Topic(self.string(inner.next().expect("grammar: topic name"))),
            Rule::dnsbl_every => DnsblSetting::Every(self.duration(&inner.next().expect("grammar: every duration"))),
            Rule::dnsbl_targets => DnsblSetting::Targets(Spanned::new(inner.map(|t| self.string(t)).collect(), span)),
            Rule::dnsbl_targets_from => DnsblSetting::TargetsFrom(DnsblTargetsFrom {
                metric: self.ident(inner.next().expect("grammar: targets metric")),
                key: self.ident(inner.next().expect("grammar: targets key")),
                within: self.duration(&inner.next().expect("grammar: targets within")),
                span,
            }),
            _ => {
                let name = self.ident(inner.next().expect("grammar: list name"));
                let zone = self.string(inner.next().expect("grammar: list zone"));
                let kind = self.ident(inner.next().expect("grammar: list kind"));
                let options = inner.map(|o| self.dnsbl_option(o)).collect();
                DnsblSetting::List(DnsblList { name, zone, kind, options, span })
            }
        }
    }

    fn dnsbl_option(&self, pair: Pair<'_, Rule>) -> DnsblOption {
        let rule = pair.as_rule();
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let number = |p: Pair<'_, Rule>| {
            let at = self.span(&p);
            match p.as_str().parse::<f64>() {
                Ok(v) if v.is_finite() => Spanned::new(v, at),
                _ => {
                    self.report(Diagnostic::error(Code::BadNumber, at, "number out of range"));
                    Spanned::new(0.0, at)
                }
            }
        };
        match rule {
            Rule::dnsbl_weight => DnsblOption::Weight(number(inner.next().expect("grammar: weight"))),
            Rule::dnsbl_max_qps => DnsblOption::MaxQps(number(inner.next().expect("grammar: max_qps"))),
            Rule::dnsbl_max_per_day => {
                let n = inner.next().expect("grammar: max_per_day");
                DnsblOption::MaxPerDay(Spanned::new(self.unsigned(&n), self.span(&n)))
            }
            Rule::dnsbl_key_env => DnsblOption::KeyEnv(self.string(inner.next().expect("grammar: key_env"))),
            _ => DnsblOption::Codes(Spanned::new(
                inner
                    .map(|entry| {
                        let mut parts = entry.into_inner();
                        let code = self.string(parts.next().expect("grammar: code"));
                        let meaning = self.string(parts.next().expect("grammar: meaning"));
                        (code, meaning)
                    })
                    .collect(),
                span,
            )),
        }
    }

    fn fields(&self, block: Pair<'_, Rule>) -> Vec<FieldDecl> {
        block
            .into_inner()
            .map(|field| {
                let span = self.span(&field);
                let mut inner = field.into_inner();
                let name = self.ident(inner.next().expect("grammar: field name"));
                let ty = self.type_expr(inner.next().expect("grammar: field type"));
                let is_event_time = inner.next().is_some();
                FieldDecl { name, ty, is_event_time, span }
            })
            .collect()
    }

    fn type_expr(&self, pair: Pair<'_, Rule>) -> TypeExpr {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let shape = inner.next().expect("grammar: type has a shape");
        let kind = match shape.as_rule() {
            Rule::field_block => TypeKind::Record(self.fields(shape)),
            _ => TypeKind::Scalar(self.ident(shape)),
        };
        TypeExpr { kind, is_nullable: inner.next().is_some(), span }
    }

    fn classifier(&self, pair: Pair<'_, Rule>) -> Classifier {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("grammar: classifier name"));
        let params = inner
            .next()
            .expect("grammar: classifier params")
            .into_inner()
            .map(|p| {
                let mut parts = p.into_inner();
                let name = self.ident(parts.next().expect("grammar: param name"));
                let ty = self.type_expr(parts.next().expect("grammar: param type"));
                Param { name, ty }
            })
            .collect();
        let mut rules = Vec::new();
        let mut default = None;
        for part in inner {
            match part.as_rule() {
                Rule::rule_decl => {
                    let span = self.span(&part);
                    let mut parts = part.into_inner();
                    let mut outcome = self.outcome(parts.next().expect("grammar: rule outcome"));
                    let condition = self.expr(parts.next().expect("grammar: rule condition"));
                    outcome.hint = parts.next().map(|h| self.hint(h));
                    rules.push(Rule_ { outcome, condition, span });
                }
                Rule::default_decl => {
                    let mut parts = part.into_inner();
                    let mut outcome = self.outcome(parts.next().expect("grammar: default outcome"));
                    outcome.hint = parts.next().map(|h| self.hint(h));
                    default = Some(outcome);
                }
                other => unreachable!("grammar: unexpected {other:?} in classifier"),
            }
        }
        Classifier { name, params, rules, default, span }
    }

    fn outcome(&self, pair: Pair<'_, Rule>) -> Outcome {
        let mut inner = pair.into_inner();
        let category = self.ident(inner.next().expect("grammar: category"));
        let reason = self.ident(inner.next().expect("grammar: reason"));
        let kind = self.ident(inner.next().expect("grammar: kind"));
        Outcome { category, reason, kind, hint: None }
    }

    fn hint(&self, pair: Pair<'_, Rule>) -> Spanned<String> {
        self.string(pair.into_inner().next().expect("grammar: hint text"))
    }

    fn metric(&self, pair: Pair<'_, Rule>) -> Metric {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("grammar: metric name"));
        let source = self.ident(inner.next().expect("grammar: metric source"));
        let clauses = inner.map(|c| self.clause(c)).collect();
        Metric { name, source, clauses, span }
    }

    fn clause(&self, pair: Pair<'_, Rule>) -> Spanned<Clause> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        let clause = match rule {
            Rule::where_clause => Clause::Where(self.expr(inner.next().expect("grammar: where expr"))),
            Rule::group_clause => Clause::GroupBy(inner.map(|n| self.named(n)).collect()),
            Rule::compute_clause => Clause::Compute(inner.map(|n| self.named(n)).collect()),
            Rule::window_clause => {
                let width = self.duration(&inner.next().expect("grammar: window width"));
                let lateness = inner.next().map(|d| self.duration(&d));
                Clause::Window { width, lateness }
            }
            Rule::rollup_clause => Clause::Rollup(
                inner
                    .map(|tier| {
                        let mut parts = tier.into_inner();
                        let width = self.duration(&parts.next().expect("grammar: tier width"));
                        let keep = self.duration(&parts.next().expect("grammar: tier keep"));
                        RollupTier { width, keep }
                    })
                    .collect(),
            ),
            Rule::into_clause => {
                let table = self.ident(inner.next().expect("grammar: table name"));
                let ttl = inner.next().map(|d| self.duration(&d));
                Clause::Into { table, ttl }
            }
            Rule::cardinality_clause => {
                let number = inner.next().expect("grammar: cardinality number");
                Clause::Cardinality(Spanned::new(self.unsigned(&number), self.span(&number)))
            }
            Rule::export_clause => Clause::Export(self.ident(inner.next().expect("grammar: export target"))),
            other => unreachable!("grammar: unexpected {other:?} in metric"),
        };
        Spanned::new(clause, span)
    }

    fn named(&self, pair: Pair<'_, Rule>) -> NamedExpr {
        let mut inner = pair.into_inner();
        let expr = self.expr(inner.next().expect("grammar: named expr"));
        let alias = inner.next().map(|a| self.ident(a));
        NamedExpr { expr, alias }
    }

    fn alert(&self, pair: Pair<'_, Rule>) -> Alert {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("grammar: alert name"));
        let metric = self.ident(inner.next().expect("grammar: alert metric"));
        let condition = self.expr(inner.next().expect("grammar: alert condition"));
        let mut alert =
            Alert { name, metric, condition, for_duration: None, labels: vec![], annotations: vec![], span };
        for part in inner {
            match part.as_rule() {
                Rule::for_clause => {
                    alert.for_duration = Some(self.duration(&part.into_inner().next().expect("grammar: for duration")));
                }
                Rule::labels_clause => alert.labels = self.string_map(part),
                Rule::annotations_clause => alert.annotations = self.string_map(part),
                other => unreachable!("grammar: unexpected {other:?} in alert"),
            }
        }
        alert
    }

    fn string_map(&self, pair: Pair<'_, Rule>) -> Vec<(Ident, Spanned<String>)> {
        let map = pair.into_inner().next().expect("grammar: map body");
        map.into_inner()
            .map(|entry| {
                let mut parts = entry.into_inner();
                let key = self.ident(parts.next().expect("grammar: map key"));
                let value = self.string(parts.next().expect("grammar: map value"));
                (key, value)
            })
            .collect()
    }

    // -- literals -----------------------------------------------------------

    fn unsigned(&self, pair: &Pair<'_, Rule>) -> u64 {
        pair.as_str().parse().unwrap_or_else(|_| {
            self.report(
                Diagnostic::error(Code::BadNumber, self.span(pair), "number too large")
                    .with_label(format!("the largest allowed is {}", u64::MAX)),
            );
            0
        })
    }

    fn string(&self, pair: Pair<'_, Rule>) -> Spanned<String> {
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

    fn duration(&self, pair: &Pair<'_, Rule>) -> Spanned<Duration> {
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

    // -- expressions --------------------------------------------------------

    fn expr(&self, pair: Pair<'_, Rule>) -> Expr {
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

/// `Rule` the grammar rule and `Rule` the classifier rule share a name; the
/// AST's is re-exported under this alias inside this module only.
type Rule_ = crate::ast::Rule;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> File {
        parse(FileId(0), text).unwrap_or_else(|d| panic!("{d:#?}"))
    }

    fn first_error(text: &str) -> Diagnostic {
        parse(FileId(0), text).expect_err("should fail").remove(0)
    }

    fn where_expr(text: &str) -> Expr {
        let file = parse_ok(&format!("version 1\nmetric m from s where {text}"));
        let Item::Metric(m) = &file.items[0] else { panic!() };
        let Clause::Where(e) = &m.clauses[0].node else { panic!() };
        e.clone()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("2y"), Some(2 * 365 * 86_400_000));
        assert_eq!(parse_duration("99999999999999999999d"), None);
        assert_eq!(parse_duration("1001y"), None);
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn precedence() {
        let e = where_expr("a or b and not c == 1 + 2 * -3");
        let ExprKind::Binary(BinaryOp::Or, _, rhs) = &e.node else { panic!("{e:?}") };
        let ExprKind::Binary(BinaryOp::And, _, rhs) = &rhs.node else { panic!() };
        let ExprKind::Unary(UnaryOp::Not, inner) = &rhs.node else { panic!() };
        let ExprKind::Binary(BinaryOp::Eq, _, rhs) = &inner.node else { panic!() };
        let ExprKind::Binary(BinaryOp::Add, _, rhs) = &rhs.node else { panic!() };
        let ExprKind::Binary(BinaryOp::Mul, _, rhs) = &rhs.node else { panic!() };
        assert!(matches!(rhs.node, ExprKind::Unary(UnaryOp::Neg, _)));
    }

    #[test]
    fn postfix_forms() {
        let e = where_expr("lower(x).y ~ /a\\/b/i and z not in [1, 2] and w !~ /q/");
        let ExprKind::Binary(BinaryOp::And, lhs, rhs) = &e.node else { panic!() };
        assert!(matches!(&rhs.node, ExprKind::Match { is_negated: true, .. }));
        let ExprKind::Binary(BinaryOp::And, m, inn) = &lhs.node else { panic!() };
        let ExprKind::Match { expr, regex, .. } = &m.node else { panic!() };
        assert_eq!(regex.pattern, "a\\/b");
        assert_eq!(regex.to_regex_syntax(), "(?i)a/b");
        assert!(matches!(&expr.node, ExprKind::Member(..)));
        assert!(matches!(&inn.node, ExprKind::In { is_negated: true, .. }));
    }

    #[test]
    fn keywords_stay_usable_as_field_names() {
        let e = where_expr("status == \"x\" and reason == window");
        assert!(matches!(e.node, ExprKind::Binary(BinaryOp::And, ..)));
    }

    #[test]
    fn string_escapes() {
        let e = where_expr(r#"x == "a\"b\\c\n\u{e9}""#);
        let ExprKind::Binary(_, _, rhs) = &e.node else { panic!() };
        assert_eq!(rhs.node, ExprKind::Str("a\"b\\c\né".into()));
        let d = first_error("version 1\nmetric m from s where x == \"a\\qb\"");
        assert_eq!(d.code, Code::BadEscape);
    }

    #[test]
    fn syntax_errors_name_what_was_expected() {
        let d = first_error("version 1\nmetric m from s window");
        assert_eq!(d.code, Code::Syntax);
        assert_eq!(d.message, "unexpected end of file");
        assert!(d.labels[0].message.contains("a duration such as `5m`"), "{:?}", d.labels);
    }

    #[test]
    fn a_comma_after_the_last_item_of_a_list_gets_advice() {
        let head = "version 1\nmetric m from s\n";
        // The next clause's keyword read as an item, with a comment between.
        let d = first_error(&format!("{head}  group by a, b, # the b\n  compute count() as n\n"));
        assert_eq!(d.message, "unexpected `count`");
        let help = d.help.expect("help");
        assert!(help.starts_with("remove the comma before `compute`"), "{help}");
        assert!(help.ends_with("(after one, `compute` is read as one more item)"), "{help}");
        // A compute list before the next metric.
        let d = first_error(&format!("{head}  compute count() as n,\n\nmetric m2 from s\n"));
        assert!(d.help.expect("help").starts_with("remove the comma before `metric`"));
        // Where items cannot be names, the keyword itself is unexpected.
        let d = first_error(&format!("{head}  rollup 1h keep 90d, 1d keep 2y,\n  into table t\n"));
        assert!(d.help.expect("help").starts_with("remove the comma before `into`"));
        let d = first_error(&format!("{head}  group by a,\n"));
        assert!(d.help.expect("help").starts_with("remove the comma at the end of the file"));
        // Other syntax errors get none, a comma inside a string no more than any.
        assert_eq!(first_error(&format!("{head}  window 1m 2m\n")).help, None);
        let d = first_error(&format!("{head}  where x == \",#\" group\n  window\n"));
        assert_eq!(d.help.as_deref(), Some("write `group by`"));
        assert_eq!(first_error(&format!("{head}  group by a, compute\n  window\n")).help, None);
        // Non-ASCII text around the error is no word, and is sliced whole.
        for body in ["  where x ~ /é/ y", "  group by a, é", "  compute count() as n, éa", "  where \"é\" é"] {
            let _ = first_error(&format!("{head}{body}\n"));
        }
    }

    #[test]
    fn common_mistakes_get_advice() {
        let help = |body: &str| first_error(&format!("version 1\nmetric m from s\n{body}\n")).help;
        let says = |body: &str, advice: &str| {
            let help = help(body).unwrap_or_default();
            assert!(help.contains(advice), "{body}: {help:?}");
        };
        says("  where event = \"bounced\"", "compare with `==`");
        says("  where diagnostic =~ /full/", "written `~`");
        says("  group sender_domain", "write `group by`");
        says("  compute count() n", "write `as n`");
        says("  group by sender_domain domain # a comment\n", "write `as domain`");
        says("  rollup 1h keep 90d 1d keep 2y", "separate the tiers with commas");
        let alert = |labels: &str| format!("  compute count() as n\nalert a on m when n > 1 labels {{ {labels} }}");
        says(&alert("severity: page"), "`\"page\"`");
        says(&alert("severity = \"page\""), "write `:`");
        // Words in strings and comments are no clause: this error is in `where`.
        assert_eq!(help("  where x == \"compute\" # group\n  y"), None);
        assert_eq!(help("  window 1m 2m"), None);
    }

    #[test]
    fn deep_nesting_is_a_diagnostic() {
        let deep = format!("version 1\nmetric m from s where {}x{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(first_error(&deep).code, Code::TooDeep);
        let nots = format!("version 1\nmetric m from s where {}x", "not ".repeat(5000));
        assert_eq!(first_error(&nots).code, Code::TooDeep);
        let chain = format!("version 1\nmetric m from s where x{}", " + x".repeat(20000));
        assert_eq!(first_error(&chain).code, Code::TooDeep);
        let members = format!("version 1\nmetric m from s where x{}", ".y".repeat(20000));
        assert_eq!(first_error(&members).code, Code::TooDeep);
        let cases =
            format!("version 1\nmetric m from s where {} 1 {}", "case when x then ".repeat(500), "end ".repeat(500));
        assert_eq!(first_error(&cases).code, Code::TooDeep);
    }

    #[test]
    fn regex_may_contain_brackets_and_hashes() {
        let e = where_expr("x ~ /((a)# [b/ and y");
        assert!(matches!(e.node, ExprKind::Binary(BinaryOp::And, ..)));
    }
}
