//! A classifier's compiled matchers, and the hits of one classification.
//!
//! The compiler folds a classifier's text tests into one matcher per
//! parameter, each a list of patterns. [`Matchers`] holds, per matcher, each
//! pattern's regex, the literal prefilters that tell, in one pass over a
//! text, which patterns *can* match, and (built when first needed) the full
//! `RegexSet`; [`Hits`] works out a classification's pattern hits lazily
//! from those. Rule conditions (expressions, [`crate::eval`]) read hits
//! through [`Hits::get`]; this module knows nothing of expressions or rules
//! ([`crate::classify`]).

use crate::literal_table::LiteralTable;
use crate::literals::{anchored_literal, required_literals, Requirement, Texts};
use crate::value::Val;
use aho_corasick::{dfa, AhoCorasick, AhoCorasickKind, StartKind};
use dsl::plan::TextMatcher;
use regex::{Regex, RegexSet};
use smallvec::SmallVec;
use std::cell::Cell;
use std::sync::OnceLock;

/// A classifier's matchers, compiled, and where each one's block of words
/// starts in a [`Hits`].
#[derive(Debug)]
pub struct Matchers {
    /// Per matcher of the plan, in order.
    pub(crate) list: Vec<MatcherRuntime>,
    /// Per matcher: where its bits start in a [`Hits`] word array.
    pub(crate) layout: Vec<usize>,
    /// Words in a [`Hits`] word array.
    pub(crate) words: usize,
}

impl Matchers {
    /// Compiles `plans`.
    ///
    /// # Errors
    /// If a pattern does not compile (too large for the regex engine).
    pub fn new(plans: &[TextMatcher]) -> Result<Self, regex::Error> {
        let list = plans.iter().map(|m| MatcherRuntime::new(m.param, &m.patterns)).collect::<Result<Vec<_>, _>>()?;
        let mut layout = Vec::with_capacity(list.len());
        let mut words = 0;
        for m in &list {
            layout.push(words);
            words += Hits::words_for(m.regexes.len());
        }
        Ok(Matchers { list, layout, words })
    }
}

/// See [`MatcherRuntime::new`].
const NO_PREFILTER: &str = r"\A\z";

#[derive(Debug)]
pub(crate) struct MatcherRuntime {
    pub(crate) param: usize,
    /// The patterns, for what is built when first needed.
    patterns: Vec<String>,
    /// All patterns at once, for texts the prefilter does not handle (none
    /// when the prefilters could be built, as for every rule set so far):
    /// built when first needed, a fifth of a plan's compile time saved.
    /// `None` if it does not compile (its patterns do, one by one: they
    /// answer instead).
    set: OnceLock<Option<RegexSet>>,
    /// Each pattern alone.
    pub(crate) regexes: Vec<Regex>,
    /// Per pattern: the literal it is, anchored at the start (a prefix
    /// test), so its regex need not run.
    prefixes: Vec<Option<Vec<u8>>>,
    /// For ASCII texts (smaller, longer literal sets).
    ascii: Prefilter,
    /// For all other texts (rare: built when first needed).
    any: OnceLock<Prefilter>,
}

/// The patterns that may match a text, from the literals they need.
#[derive(Debug)]
struct Prefilter {
    /// Necessary literals of the patterns that have them; `None` when it
    /// could not be built (every text then takes the full set).
    literals: Option<Literals>,
    /// Literal index → pattern index.
    literal_pattern: Vec<usize>,
    /// Per pattern: whether it is just its literals, so a literal found is
    /// a match and no regex need run.
    is_exact: Vec<bool>,
    /// Words in a bit set of the patterns.
    words: usize,
    /// The patterns without necessary literals (always candidates), as a bit set.
    unfiltered: Vec<u64>,
}

/// A literal automaton.
#[derive(Debug)]
enum Literals {
    /// For ASCII texts: the DFA laid out for the walk the prefilter needs
    /// ([`LiteralTable`]).
    Table(Box<LiteralTable>),
    /// For other texts (or a DFA too large to lay out): any automaton,
    /// through the library's search.
    Other(AhoCorasick),
}

impl MatcherRuntime {
    fn new(param: usize, patterns: &[String]) -> Result<Self, regex::Error> {
        let regexes = patterns.iter().map(|p| Regex::new(p)).collect::<Result<Vec<_>, _>>()?;
        let prefixes = patterns.iter().map(|p| anchored_literal(p)).collect();
        let ascii = Prefilter::new(patterns, Texts::Ascii);
        Ok(MatcherRuntime {
            param,
            patterns: patterns.to_vec(),
            set: OnceLock::new(),
            regexes,
            prefixes,
            ascii,
            any: OnceLock::new(),
        })
    }

    /// The full set, built on first use; `None` if it does not compile.
    pub(crate) fn set(&self) -> Option<&RegexSet> {
        self.set
            .get_or_init(|| {
                // `\A\z` (only the empty text) goes after the real patterns, so their
                // indices and results are unchanged; its own result is never read.
                // Its empty literal prefix keeps the regex engine from putting a
                // literal (Aho-Corasick) prefilter in front of the set, which for
                // sets of case-insensitive alternations like `std:bounces` makes
                // the overlapping search over SMTP replies 2-2.5x slower than the
                // lazy DFA alone (regex 1.13, generated workload).
                let all = self.patterns.iter().map(String::as_str).chain([NO_PREFILTER]);
                // With ~200 case-insensitive patterns the default 2 MiB lazy-DFA
                // cache thrashes and matching falls back to a slow engine; the
                // cache grows only as needed, so a high ceiling costs nothing until
                // it is needed (4.8x faster on the 210-rule `std:bounces`).
                regex::RegexSetBuilder::new(all).size_limit(64 << 20).dfa_size_limit(256 << 20).build().ok()
            })
            .as_ref()
    }

    /// The prefilter for `text`.
    fn prefilter(&self, text: &str) -> &Prefilter {
        if text.is_ascii() {
            &self.ascii
        } else {
            self.any.get_or_init(|| Prefilter::new(&self.patterns, Texts::Any))
        }
    }
}

impl Prefilter {
    fn new(patterns: &[String], texts: Texts) -> Self {
        let words = patterns.len().div_ceil(64);
        let (mut literals, mut literal_pattern, mut unfiltered) = (Vec::new(), Vec::new(), vec![0; words]);
        let mut is_exact = vec![false; patterns.len()];
        for (i, pattern) in patterns.iter().enumerate() {
            let set = match required_literals(pattern, texts) {
                Requirement::Any => {
                    set_bit(&mut unfiltered, i);
                    continue;
                }
                Requirement::OneOf(set) => set,
                Requirement::Exactly(set) => {
                    is_exact[i] = true;
                    set
                }
            };
            literal_pattern.extend(std::iter::repeat_n(i, set.len()));
            literals.extend(set);
        }
        literals.iter_mut().for_each(|l: &mut Vec<u8>| l.make_ascii_lowercase());
        // Nearly every SMTP reply is ASCII: its automaton is a DFA (about 1.7
        // MB for std:bounces), laid out for the walk (LiteralTable). The rare
        // other texts get a contiguous NFA, a twentieth of the size and
        // quicker to build, searched case-insensitively.
        let table = match texts {
            Texts::Ascii => {
                dfa::Builder::new().start_kind(StartKind::Unanchored).prefilter(false).build(&literals).ok().and_then(
                    |dfa| {
                        LiteralTable::new(&dfa, &literals, 2 * words, |literal, marks| {
                            let p = literal_pattern[literal];
                            mark_pattern(marks, words, p, is_exact[p]);
                        })
                    },
                )
            }
            Texts::Any => None,
        };
        let literals = match table {
            Some(table) => Some(Literals::Table(Box::new(table))),
            None => AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .prefilter(false)
                .build(&literals)
                .or_else(|_| AhoCorasick::builder().ascii_case_insensitive(true).build(&literals))
                .ok()
                .map(Literals::Other),
        };
        Prefilter { literals, literal_pattern, is_exact, words, unfiltered }
    }

    /// Sets in `bits` (two bit sets of the patterns, `words` each) the
    /// patterns that may match `text`, then those known to match; `false`
    /// when it cannot tell.
    fn candidates(&self, text: &str, bits: &mut [u64]) -> bool {
        match &self.literals {
            None => return false,
            Some(Literals::Table(table)) => {
                table.find(text.as_bytes(), |marks| {
                    // Equal lengths, so the ORs vectorise.
                    let bits = &mut bits[..marks.len()];
                    (0..marks.len()).for_each(|i| bits[i] |= marks[i]);
                })
            }
            Some(Literals::Other(literals)) => {
                let Ok(hits) = literals.try_find_overlapping_iter(text.as_bytes()) else { return false };
                for hit in hits {
                    let p = self.literal_pattern[hit.pattern().as_usize()];
                    mark_pattern(bits, self.words, p, self.is_exact[p]);
                }
            }
        }
        bits.iter_mut().zip(&self.unfiltered).for_each(|(b, u)| *b |= u);
        true
    }
}

/// Marks pattern `p` in `bits` (two bit sets, `words` each) as one that may
/// match and, when `is_match`, as one known to match.
fn mark_pattern(bits: &mut [u64], words: usize, p: usize, is_match: bool) {
    set_bit(bits, p);
    if is_match {
        set_bit(&mut bits[words..], p);
    }
}

/// Sets bit `i` of a bit set.
fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

/// The hits of one classification, worked out lazily. Per matcher, a block
/// of words: the first holds flags, then one bit per pattern for "may
/// match" (a candidate), "known" and "matches".
pub struct Hits<'r> {
    runtime: &'r Matchers,
    params: &'r [Val<'r>],
    /// Inline for classifiers of up to about 600 patterns: no allocation per classification.
    pub(crate) words: SmallVec<[Cell<u64>; 32]>,
}

/// Flag: the matcher's parameter is a string (otherwise every hit is null).
const IS_TEXT: u64 = 1;

impl<'r> Hits<'r> {
    /// Words per matcher of `n` patterns: a flag word and three bit arrays.
    pub(crate) fn words_for(n: usize) -> usize {
        1 + 3 * n.div_ceil(64)
    }

    /// The hits of `runtime`'s matchers over `params`, none worked out yet
    /// beyond what the literal prefilter tells.
    pub fn new(runtime: &'r Matchers, params: &'r [Val<'r>]) -> Self {
        Hits::with(runtime, params, true)
    }

    /// The text matcher `m` runs on, if its parameter is a string.
    fn text(&self, m: usize) -> Option<&'r str> {
        match self.params.get(self.runtime.list[m].param) {
            Some(Val::Str(s)) => Some(s.as_ref()),
            _ => None,
        }
    }

    /// With `use_prefilter` false, every text takes the full set (the
    /// reference the prefilter is tested against).
    pub(crate) fn with(runtime: &'r Matchers, params: &'r [Val<'r>], use_prefilter: bool) -> Self {
        let hits = Hits { runtime, params, words: SmallVec::from_elem(Cell::new(0), runtime.words) };
        let words = &hits.words;
        for (m, matcher) in runtime.list.iter().enumerate() {
            let Some(text) = hits.text(m) else { continue };
            let base = runtime.layout[m];
            let n = matcher.regexes.len().div_ceil(64);
            words[base].set(IS_TEXT);
            let prefilter = matcher.prefilter(text);
            let mut bits: SmallVec<[u64; 16]> = SmallVec::from_elem(0, 2 * n);
            if use_prefilter && prefilter.candidates(text, &mut bits) {
                let (candidates, matches) = bits.split_at(n);
                for (i, (candidate, matches)) in candidates.iter().zip(matches).enumerate() {
                    // A pattern known to match is known, and matches.
                    words[base + 1 + i].set(*candidate);
                    words[base + 1 + n + i].set(*matches);
                    words[base + 1 + 2 * n + i].set(*matches);
                }
            } else {
                // Everything known at once: the full set, or each pattern.
                let matches = matcher.set().map(|set| set.matches(text));
                for p in 0..matcher.regexes.len() {
                    let is_match = match &matches {
                        Some(matches) => matches.matched(p),
                        None => matcher.regexes[p].is_match(text),
                    };
                    for array in [0, 1].into_iter().chain(is_match.then_some(2)) {
                        let w = &words[base + 1 + array * n + p / 64];
                        w.set(w.get() | 1 << (p % 64));
                    }
                }
            }
        }
        hits
    }

    fn bit(&self, m: usize, array: usize, p: usize) -> bool {
        let n = self.runtime.list[m].regexes.len().div_ceil(64);
        self.words[self.runtime.layout[m] + 1 + array * n + p / 64].get() & (1 << (p % 64)) != 0
    }

    /// The word and bit that say whether pattern `p` may match, for a
    /// matcher whose block starts at `base`.
    pub(crate) fn candidate_bit(base: usize, p: usize) -> (usize, u64) {
        (base + 1 + p / 64, 1 << (p % 64))
    }

    /// Whether pattern `p` of matcher `m` matches; `None` when the
    /// parameter is not a string (or the hit does not exist).
    pub fn get(&self, m: usize, p: usize) -> Option<bool> {
        let matcher = self.runtime.list.get(m)?;
        if p >= matcher.regexes.len() || self.words[self.runtime.layout[m]].get() & IS_TEXT == 0 {
            return None;
        }
        if !self.bit(m, 0, p) {
            return Some(false);
        }
        if !self.bit(m, 1, p) {
            let is_match = self.text(m).is_some_and(|t| match &matcher.prefixes[p] {
                Some(prefix) => t.as_bytes().starts_with(prefix),
                None => matcher.regexes[p].is_match(t),
            });
            let n = matcher.regexes.len().div_ceil(64);
            let base = self.runtime.layout[m] + 1;
            let known = &self.words[base + n + p / 64];
            known.set(known.get() | 1 << (p % 64));
            if is_match {
                let value = &self.words[base + 2 * n + p / 64];
                value.set(value.get() | 1 << (p % 64));
            }
            return Some(is_match);
        }
        Some(self.bit(m, 2, p))
    }
}
