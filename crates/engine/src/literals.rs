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

use regex_syntax::hir::{Class, Hir, HirKind};

/// At most this many alternatives in a literal set; beyond it, sets are
/// too weak a filter to be worth their cost.
const MAX_SET: usize = 32;
/// Literals handed to the prefilter are cut to this length (a prefix of a
/// necessary substring is itself necessary).
const MAX_LEN: usize = 24;
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
    match best(&analyse(&hir, texts)) {
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
}

impl Facts {
    fn unknown() -> Self {
        Facts { exact: None, required: None }
    }
    fn exactly(set: Vec<Vec<u8>>) -> Self {
        Facts { exact: Some(set), required: None }
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
        HirKind::Empty | HirKind::Look(_) => Facts::exactly(vec![Vec::new()]),
        HirKind::Literal(literal) if texts == Texts::Ascii && !literal.0.is_ascii() => Facts::exactly(Vec::new()),
        HirKind::Literal(literal) => Facts::exactly(vec![literal.0.to_ascii_lowercase()]),
        HirKind::Class(class) => match members(class, texts) {
            Some(members) => Facts::exactly(members),
            None => Facts::unknown(),
        },
        HirKind::Capture(capture) => analyse(&capture.sub, texts),
        HirKind::Repetition(repetition) => {
            if repetition.min == 0 {
                return Facts::unknown();
            }
            let sub = analyse(&repetition.sub, texts);
            if repetition.min == 1 && repetition.max == Some(1) {
                return sub;
            }
            // Each match contains at least one match of the sub-expression.
            Facts { exact: None, required: best(&sub) }
        }
        HirKind::Concat(subs) => concat(subs, texts),
        HirKind::Alternation(subs) => {
            let facts: Vec<Facts> = subs.iter().map(|sub| analyse(sub, texts)).collect();
            let exact = facts.iter().try_fold(Vec::new(), |mut all, f| {
                all.extend(f.exact.as_ref()?.iter().cloned());
                (all.len() <= MAX_SET).then_some(all)
            });
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
            Facts { exact, required }
        }
    }
}

/// A concatenation: runs of exactly known parts multiply out into one set;
/// each run, and each other part's own requirement, is necessary.
fn concat(subs: &[Hir], texts: Texts) -> Facts {
    let mut necessary: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut run: Vec<Vec<u8>> = vec![Vec::new()];
    let mut is_exact = true;
    for sub in subs {
        let facts = analyse(sub, texts);
        match facts.exact {
            Some(set) if set.is_empty() => return Facts::exactly(Vec::new()),
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
        return Facts::exactly(run);
    }
    necessary.push(run);
    let required = necessary.into_iter().filter(|set| score(set) > 0).max_by_key(|set| score(set));
    Facts { exact: None, required }
}

/// What `class` can match, each as UTF-8 with ASCII letters lowercased,
/// deduplicated, when there are few enough to spell out. An empty class
/// gives the empty set: it matches nothing.
fn members(class: &Class, texts: Texts) -> Option<Vec<Vec<u8>>> {
    let mut members = Vec::new();
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
                members.extend((range.start()..=end).map(|b| vec![b.to_ascii_lowercase()]));
            }
        }
    }
    members.sort_unstable();
    members.dedup();
    (members.len() <= MAX_CLASS).then_some(members)
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
            Requirement::Any => vec!["<any>".into()],
        }
    }

    #[test]
    fn finds_the_most_selective_necessary_set() {
        assert_eq!(one_of("(?i)mailbox (is )?full|over quota"), ["mailbox ", "over quota"]);
        assert_eq!(one_of("(?i)account (that you tried to reach )?(blocked|inactive)"), ["account "]);
        assert_eq!(
            one_of("(?i)is (disabled|inactive)"),
            ["is disabled", "is diſabled", "is inactive", "iſ disabled", "iſ diſabled", "iſ inactive"],
            "the long s folds to s"
        );
        assert_eq!(one_of(r"^4\."), ["4."]);
        assert_eq!(one_of(r"(?i)gsmtp$|gsmtp\b"), ["gsmtp", "gſmtp"]);
        assert_eq!(one_of(r"(?i)(?-u:\b)dmarc(?-u:\b)"), ["dmarc"]);
        assert_eq!(one_of("(?i)daily (user )?rate (quota|limit)"), ["rate limit", "rate quota"]);
        assert_eq!(one_of("x*"), ["<any>"]);
        assert_eq!(one_of(r"\d+"), ["<any>"]);
        assert_eq!(one_of("später"), ["später"]);
        assert_eq!(one_of("(?i)voll|später"), ["spÄter", "später", "voll", "ſpÄter", "ſpäter"]);
        assert_eq!(one_of("(?i)ok"), ["ok", "o\u{212A}"], "the Kelvin sign folds to k");
        assert_eq!(one_of("[^\\s\\S]"), Vec::<String>::new(), "matches nothing");
        assert_eq!(one_of_in("(?i)is (disabled|inactive)", Texts::Ascii), ["is disabled", "is inactive"]);
        assert_eq!(one_of_in("(?i)voll|später", Texts::Ascii), ["voll"]);
        assert_eq!(one_of_in("später", Texts::Ascii), Vec::<String>::new(), "cannot match ASCII");
    }

    #[test]
    fn every_match_contains_a_required_literal() {
        let patterns = [
            "(?i)mailbox (is )?full|over quota",
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
        ];
        for pattern in patterns {
            let regex = regex::Regex::new(pattern).expect("compiles");
            for text in texts {
                if !regex.is_match(text) {
                    continue;
                }
                let modes = [Texts::Any, Texts::Ascii].into_iter().filter(|t| *t == Texts::Any || text.is_ascii());
                for texts in modes {
                    match required_literals(pattern, texts) {
                        Requirement::Any => {}
                        Requirement::OneOf(set) => {
                            let lower = text.to_ascii_lowercase();
                            assert!(
                                set.iter().any(|l| lower.contains(std::str::from_utf8(l).expect("whole characters"))),
                                "{pattern} matches {text:?} without {set:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
