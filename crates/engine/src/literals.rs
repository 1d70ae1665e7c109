//! Necessary literals of a regex, for the classifier's prefilter.
//!
//! For a pattern, [`required_literals`] finds a set of strings such that
//! every match of the pattern contains one of them, with ASCII letters
//! compared case-insensitively (non-ASCII characters are spelled out, e.g.
//! `(?i)k` gives `k` and the Kelvin sign `\u{212A}`). A text that contains
//! none of them cannot match, so the pattern need not run. The analysis may
//! only err towards "might match": it over-approximates (a class with only
//! the lower case of a letter counts as that letter in either case), and
//! gives up ([`Requirement::Any`]) on anything it does not understand.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// At most this many alternatives in a literal set; beyond it, sets are
/// too weak a filter to be worth their cost. (At 32, two of std:bounces'
/// wordings, message size with 35 and temporary failure, had no set, so
/// their regexes ran on every reply that reached their rules.)
const MAX_SET: usize = 64;
/// Literals handed to the prefilter are cut to this length (a prefix of a
/// necessary substring is itself necessary).
const MAX_LEN: usize = 32;
/// A class is spelled out when it holds at most this many characters
/// (after folding ASCII case).
const MAX_CLASS: usize = 3;

/// What a pattern needs from an ASCII text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing known: the pattern must always run.
    Any,
    /// It can match only texts that contain one of these (ASCII lowercase,
    /// compared ASCII-case-insensitively). Empty: it cannot match at all.
    OneOf(Vec<Vec<u8>>),
    /// It matches exactly the texts that contain one of these (compared
    /// the same way): the pattern is no more than this set of literals.
    Exactly(Vec<Vec<u8>>),
}

/// Which texts a requirement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Texts {
    /// Any UTF-8 text.
    Any,
    /// Texts of ASCII characters only. On them a Unicode case-folding class
    /// such as `(?i)s` = `[Ssſ]` can only match `S` or `s`, and a non-ASCII
    /// literal cannot match at all, so the sets are smaller and longer
    /// (SMTP replies are nearly always ASCII).
    Ascii,
}

/// The requirement of `pattern` over `texts`, parsed as the `regex` crate parses it.
pub fn required_literals(pattern: &str, texts: Texts) -> Requirement {
    let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else { return Requirement::Any };
    let facts = analyse(&hir, texts);
    if let Some(exact) = facts.exact.as_ref().filter(|set| facts.is_precise && score(set) > 0) {
        if exact.iter().all(|l| l.len() <= MAX_LEN) {
            let mut exact = exact.clone();
            exact.sort();
            exact.dedup();
            return Requirement::Exactly(exact);
        }
    }
    match best(&facts) {
        None => Requirement::Any,
        Some(set) => {
            let mut cut: Vec<Vec<u8>> = set.into_iter().map(cut_short).collect();
            cut.sort();
            cut.dedup();
            Requirement::OneOf(cut)
        }
    }
}

/// `literal` cut to at most [`MAX_LEN`] bytes, at a character boundary.
fn cut_short(mut literal: Vec<u8>) -> Vec<u8> {
    if literal.len() > MAX_LEN {
        // UTF-8 continuation bytes are 0b10xx_xxxx: back off to a character start.
        let end = (1..=MAX_LEN).rev().find(|&i| literal[i] & 0xc0 != 0x80).unwrap_or(MAX_LEN);
        literal.truncate(end);
    }
    literal
}

/// What is known of a sub-expression.
struct Facts {
    /// Every string it can match (lowercased), when that set is small.
    exact: Option<Vec<Vec<u8>>>,
    /// A set one of whose members every match contains.
    required: Option<Vec<Vec<u8>>>,
    /// Whether `exact` is all there is to it: a text has a match exactly
    /// when it contains a member, compared ASCII-case-insensitively (no
    /// anchors or word boundaries, and every letter matches in both cases).
    is_precise: bool,
}

impl Facts {
    fn unknown() -> Self {
        Facts { exact: None, required: None, is_precise: false }
    }
    fn exactly(set: Vec<Vec<u8>>, is_precise: bool) -> Self {
        Facts { exact: Some(set), required: None, is_precise }
    }
}

/// The most selective necessary set of `facts`: the one whose shortest
/// member is longest; `None` when no set has a non-empty shortest member.
fn best(facts: &Facts) -> Option<Vec<Vec<u8>>> {
    let candidates = facts.exact.iter().chain(facts.required.iter());
    candidates.filter(|set| score(set) > 0).max_by_key(|set| score(set)).cloned()
}

/// The length of the shortest member; an empty set (no match possible) is best.
fn score(set: &[Vec<u8>]) -> usize {
    set.iter().map(Vec::len).min().unwrap_or(usize::MAX)
}

fn analyse(hir: &Hir, texts: Texts) -> Facts {
    match hir.kind() {
        HirKind::Empty => Facts::exactly(vec![Vec::new()], true),
        HirKind::Look(_) => Facts::exactly(vec![Vec::new()], false),
        HirKind::Literal(literal) if texts == Texts::Ascii && !literal.0.is_ascii() => Facts::exactly(Vec::new(), true),
        HirKind::Literal(literal) => {
            // The prefilter ignores ASCII case; a literal letter does not.
            let is_precise = !literal.0.iter().any(u8::is_ascii_alphabetic);
            Facts::exactly(vec![literal.0.to_ascii_lowercase()], is_precise)
        }
        HirKind::Class(class) => match members(class, texts) {
            Some((members, is_precise)) => Facts::exactly(members, is_precise),
            None => Facts::unknown(),
        },
        HirKind::Capture(capture) => analyse(&capture.sub, texts),
        HirKind::Repetition(repetition) if repetition.min == 0 && repetition.max == Some(1) => {
            // `x?`: the empty string or x.
            let sub = analyse(&repetition.sub, texts);
            match sub.exact {
                Some(mut set) if set.len() < MAX_SET => {
                    set.push(Vec::new());
                    Facts::exactly(set, sub.is_precise)
                }
                _ => Facts::unknown(),
            }
        }
        HirKind::Repetition(repetition) => {
            if repetition.min == 0 {
                return Facts::unknown();
            }
            let sub = analyse(&repetition.sub, texts);
            if repetition.min == 1 && repetition.max == Some(1) {
                return sub;
            }
            // Each match contains at least one match of the sub-expression.
            Facts { exact: None, required: best(&sub), is_precise: false }
        }
        HirKind::Concat(subs) => concat(subs, texts),
        HirKind::Alternation(subs) => {
            let facts: Vec<Facts> = subs.iter().map(|sub| analyse(sub, texts)).collect();
            let exact = facts.iter().try_fold(Vec::new(), |mut all, f| {
                all.extend(f.exact.as_ref()?.iter().cloned());
                (all.len() <= MAX_SET).then_some(all)
            });
            let is_precise = exact.is_some() && facts.iter().all(|f| f.is_precise);
            // Every branch must bring a set of its own (an impossible
            // branch brings the empty set, which adds nothing).
            let required = facts.iter().try_fold(Vec::new(), |mut all, f| {
                let set = match &f.exact {
                    Some(exact) if exact.is_empty() => Vec::new(),
                    _ => best(f)?,
                };
                all.extend(set);
                (all.len() <= MAX_SET).then_some(all)
            });
            Facts { exact, required, is_precise }
        }
    }
}

/// A concatenation: runs of exactly known parts multiply out into one set;
/// each run, and each other part's own requirement, is necessary.
fn concat(subs: &[Hir], texts: Texts) -> Facts {
    let mut necessary: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut run: Vec<Vec<u8>> = vec![Vec::new()];
    let mut is_exact = true;
    let mut is_precise = true;
    for sub in subs {
        let facts = analyse(sub, texts);
        is_precise &= facts.is_precise;
        match facts.exact {
            Some(set) if set.is_empty() => return Facts::exactly(Vec::new(), true),
            Some(set) if run.len() * set.len() <= MAX_SET => {
                run = run.iter().flat_map(|a| set.iter().map(move |b| [a.as_slice(), b].concat())).collect();
            }
            Some(set) => {
                necessary.push(std::mem::replace(&mut run, set));
                is_exact = false;
            }
            None => {
                necessary.push(std::mem::replace(&mut run, vec![Vec::new()]));
                necessary.extend(facts.required);
                is_exact = false;
            }
        }
    }
    if is_exact {
        return Facts::exactly(run, is_precise);
    }
    necessary.push(run);
    let required = necessary.into_iter().filter(|set| score(set) > 0).max_by_key(|set| score(set));
    Facts { exact: None, required, is_precise: false }
}

/// What `class` can match, each as UTF-8 with ASCII letters lowercased,
/// deduplicated, when there are few enough to spell out. An empty class
/// gives the empty set: it matches nothing.
fn members(class: &Class, texts: Texts) -> Option<(Vec<Vec<u8>>, bool)> {
    let mut members = Vec::new();
    // ASCII letters as the class has them, to tell whether it holds both cases.
    let mut letters = Vec::new();
    match class {
        Class::Unicode(c) => {
            for range in c.iter() {
                let end = match texts {
                    Texts::Ascii if !range.start().is_ascii() => continue,
                    Texts::Ascii => range.end().min('\x7f'),
                    Texts::Any => range.end(),
                };
                if u32::from(end) - u32::from(range.start()) >= 2 * MAX_CLASS as u32 {
                    return None;
                }
                for ch in range.start()..=end {
                    if ch.is_ascii_alphabetic() {
                        letters.push(ch as u8);
                    }
                    let mut buf = [0; 4];
                    members.push(ch.encode_utf8(&mut buf).as_bytes().to_ascii_lowercase());
                }
            }
        }
        Class::Bytes(c) => {
            for range in c.iter() {
                let end = match texts {
                    Texts::Ascii if !range.start().is_ascii() => continue,
                    Texts::Ascii => range.end().min(0x7f),
                    Texts::Any => range.end(),
                };
                if end - range.start() >= 2 * MAX_CLASS as u8 {
                    return None;
                }
                letters.extend((range.start()..=end).filter(u8::is_ascii_alphabetic));
                members.extend((range.start()..=end).map(|b| vec![b.to_ascii_lowercase()]));
            }
        }
    }
    members.sort_unstable();
    members.dedup();
    let is_precise = letters.iter().all(|&c| letters.contains(&(c ^ 0x20)));
    (members.len() <= MAX_CLASS).then_some((members, is_precise))
}

/// The literal `pattern` is exactly, anchored at the start of the text and
/// compared byte for byte (`^5\.1\.`, what `starts_with(status, "5.1.")`
/// compiles to), so a prefix test answers for its regex.
pub fn anchored_literal(pattern: &str) -> Option<Vec<u8>> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let HirKind::Concat(parts) = hir.kind() else { return None };
    match parts.as_slice() {
        [start, literal] if *start.kind() == HirKind::Look(Look::Start) => match literal.kind() {
            HirKind::Literal(literal) => Some(literal.0.to_vec()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_of(pattern: &str) -> Vec<String> {
        one_of_in(pattern, Texts::Any)
    }

    fn one_of_in(pattern: &str, texts: Texts) -> Vec<String> {
        match required_literals(pattern, texts) {
            Requirement::OneOf(set) => {
                set.into_iter().map(|l| String::from_utf8(l).expect("whole characters")).collect()
            }
            Requirement::Exactly(set) => std::iter::once("<exactly>".to_string())
                .chain(set.into_iter().map(|l| String::from_utf8(l).expect("whole characters")))
                .collect(),
            Requirement::Any => vec!["<any>".into()],
        }
    }

    #[test]
    fn anchored_literals_are_recognised() {
        assert_eq!(anchored_literal(r"^5\.1\."), Some(b"5.1.".to_vec()));
        assert_eq!(anchored_literal("^ab"), Some(b"ab".to_vec()));
        assert_eq!(anchored_literal("(?i)^ab"), None);
        assert_eq!(anchored_literal("(?m)^ab"), None);
        assert_eq!(anchored_literal("^ab$"), None);
        assert_eq!(anchored_literal("ab"), None);
        assert_eq!(anchored_literal("^a|b"), None);
        assert_eq!(anchored_literal("^a+"), None);
    }

    #[test]
    fn finds_the_most_selective_necessary_set() {
        assert_eq!(
            one_of_in("(?i)mailbox (is )?full|over quota", Texts::Ascii),
            ["<exactly>", "mailbox full", "mailbox is full", "over quota"]
        );
        assert_eq!(
            one_of("(?i)mailbox (is )?full|over quota"),
            ["<exactly>", "mailbox full", "mailbox is full", "mailbox iſ full", "over quota"]
        );
        assert_eq!(
            one_of("(?i)account (that you tried to reach )?(blocked|inactive)"),
            ["account blocked", "account bloc\u{212A}ed", "account inactive", "account that you tried to reach "],
            "cut to 32 bytes, so not exact"
        );
        assert_eq!(
            one_of("(?i)is (disabled|inactive)"),
            ["<exactly>", "is disabled", "is diſabled", "is inactive", "iſ disabled", "iſ diſabled", "iſ inactive"],
            "the long s folds to s"
        );
        assert_eq!(one_of(r"^4\."), ["4."]);
        assert_eq!(one_of(r"(?i)gsmtp$|gsmtp\b"), ["gsmtp", "gſmtp"]);
        assert_eq!(one_of(r"(?i)(?-u:\b)dmarc(?-u:\b)"), ["dmarc"]);
        assert_eq!(
            one_of_in("(?i)daily (user )?rate (quota|limit)", Texts::Ascii),
            ["<exactly>", "daily rate limit", "daily rate quota", "daily user rate limit", "daily user rate quota"]
        );
        assert_eq!(one_of("Dmarc"), ["dmarc"], "case-sensitive letters are not exact");
        assert_eq!(one_of("(?i)d[-_]marc"), ["<exactly>", "d-marc", "d_marc"]);
        assert_eq!(one_of("x*"), ["<any>"]);
        assert_eq!(one_of(r"\d+"), ["<any>"]);
        assert_eq!(one_of("später"), ["später"]);
        assert_eq!(one_of("(?i)voll|später"), ["<exactly>", "spÄter", "später", "voll", "ſpÄter", "ſpäter"]);
        assert_eq!(one_of("(?i)ok"), ["<exactly>", "ok", "o\u{212A}"], "the Kelvin sign folds to k");
        assert_eq!(one_of("[^\\s\\S]"), ["<exactly>"], "matches nothing");
        assert_eq!(one_of_in("(?i)is (disabled|inactive)", Texts::Ascii), ["<exactly>", "is disabled", "is inactive"]);
        assert_eq!(one_of_in("(?i)voll|später", Texts::Ascii), ["<exactly>", "voll"]);
        assert_eq!(one_of_in("später", Texts::Ascii), ["<exactly>"], "cannot match ASCII");
    }

    /// Necessary literals: every match contains one. Exact ones: a text
    /// matches exactly when it contains one.
    #[test]
    fn every_match_contains_a_required_literal() {
        let patterns = [
            "(?i)mailbox (is )?full|over quota",
            "(?i)ok|[Mm]ailbox",
            "Over quota",
            "(?i)over.quota",
            r"(?i)(?-u:\b)ptr(?-u:\b)|reverse dns",
            r"(?i)5\.7\.[0-9]+ .*(block|listed)",
            "(?i)k[a-c]?[-_ ]x{2,3}",
            "(?i)(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)",
        ];
        let texts = [
            "MAILBOX IS FULL",
            "Over Quota!",
            "no PTR record",
            "Reverse DNS",
            "5.7.1 foo BLOCK",
            "K-xx",
            "kb xxx",
            "ACEGIK",
            "bdfhjl",
            "OK",
            "o\u{212A}",
            "MAILBOX",
            "over QUOTA",
            "overxquota",
            "mailbox iſ full",
        ];
        for pattern in patterns {
            let regex = regex::Regex::new(pattern).expect("compiles");
            for text in texts {
                let is_match = regex.is_match(text);
                let modes = [Texts::Any, Texts::Ascii].into_iter().filter(|t| *t == Texts::Any || text.is_ascii());
                for texts in modes {
                    let lower = text.to_ascii_lowercase();
                    let contains = |set: &[Vec<u8>]| {
                        set.iter().any(|l| lower.contains(std::str::from_utf8(l).expect("whole characters")))
                    };
                    match required_literals(pattern, texts) {
                        Requirement::Any => {}
                        Requirement::OneOf(set) => {
                            assert!(!is_match || contains(&set), "{pattern} matches {text:?} without {set:?}");
                        }
                        Requirement::Exactly(set) => {
                            assert_eq!(is_match, contains(&set), "{pattern} on {text:?} against {set:?}");
                        }
                    }
                }
            }
        }
    }
}
