//! Syntax errors in the user's words: what stands at the error, what the
//! grammar expected there, and advice for a few common mistakes.

use super::Rule;
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::span::{FileId, Span};

/// Turns a pest error into our diagnostic, naming rules in the user's words.
pub(super) fn syntax_error(file: FileId, text: &str, error: &pest::error::Error<Rule>) -> Diagnostic {
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
