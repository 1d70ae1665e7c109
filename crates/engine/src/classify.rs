//! Running a classifier: which rule of a [`ClassifierPlan`] matches first.
//!
//! A classifier's text tests are folded by the compiler into one matcher per
//! parameter (`diagnostic`, `status`, ...), each a list of patterns. With
//! the standard library's ~230 case-insensitive patterns, asking a
//! `RegexSet` which of them match costs about 15 µs per SMTP reply: the
//! overlapping search over a set that large keeps outgrowing the lazy DFA
//! and falls back to the PikeVM. Instead:
//!
//! 1. one pass over the text finds which patterns *can* match, from
//!    literals every match of a pattern must contain ([`crate::literals`]):
//!    over ASCII texts (nearly all SMTP replies) a literal table, over
//!    others an Aho-Corasick automaton of the literals such texts need
//!    (the matchers and a classification's hits: [`crate::matcher`]);
//! 2. each rule lists, from its condition, hits it cannot be true without
//!    (`Clauses`); a rule none of whose candidates can match is skipped
//!    without being evaluated;
//! 3. the rules that remain are evaluated in order, and a pattern's real
//!    regex (for an anchored literal, a prefix comparison) runs only when a
//!    condition asks for it, at most once per text.
//!
//! The answer is the same as the full set's: step 1 only rules out patterns
//! that cannot match, step 2 only rules that cannot be true, and step 3 asks
//! each pattern's own regex, which matches exactly when the set says so.
//! The full `RegexSet` answers only where no literal automaton could be built.

use crate::eval::{Classify, Prepared, RegexCache, Scope};
use crate::matcher::{Hits, Matchers};
use crate::value::Val;
use dsl::ast::BinaryOp;
use dsl::plan::{ClassifierPlan, Expr, OutcomePlan, Scalar};
use serde_json::{Map, Value};
use smallvec::SmallVec;

/// A rule's condition holds only if, for each clause, one of the clause's
/// hits is true. Clauses longer than this are not kept (they filter little).
const MAX_CLAUSE: usize = 8;

/// A classifier ready to run: its plan and, per matcher, the compiled set,
/// each pattern's regex and the literal prefilter.
#[derive(Debug)]
pub struct ClassifierRuntime {
    /// The plan.
    pub plan: ClassifierPlan,
    /// Per rule, its condition prepared.
    conditions: Vec<Prepared>,
    matchers: Matchers,
    /// Per rule: the hits its condition needs, in conjunctive form, as
    /// ranges of `masks`: `(word, mask)` of candidate bits in [`Hits`],
    /// of which one must be set for each clause.
    clauses: Vec<Vec<(u32, u32)>>,
    masks: Vec<(u32, u64)>,
    /// Rule bit sets, `rule_words` words each: the rules without clauses,
    /// then per pattern (matcher by matcher) the rules whose first clause
    /// names it. A rule can only be true when its bit is set in `always` or
    /// in the set of a pattern that may match, so only those are checked.
    rule_sets: Vec<u64>,
    rule_words: usize,
    /// Per matcher: the index of its first pattern's rule set (1-based; 0 is `always`).
    pattern_base: Vec<usize>,
}

/// Conjunctive normal form over hits: every inner list needs one true hit.
type Clauses = Vec<Vec<(usize, usize)>>;

impl ClassifierRuntime {
    /// Compiles the matchers of `plan`.
    ///
    /// # Errors
    /// If a pattern set does not compile (too large for the regex engine).
    pub fn new(plan: ClassifierPlan) -> Result<Self, regex::Error> {
        let matchers = Matchers::new(&plan.matchers)?;
        let rule_words = plan.rules.len().div_ceil(64);
        let mut pattern_base = Vec::with_capacity(matchers.list.len());
        let mut sets = 1;
        for m in &matchers.list {
            pattern_base.push(sets);
            sets += m.regexes.len();
        }
        let mut rule_sets = vec![0u64; sets * rule_words];
        let (mut rule_clauses, mut masks) = (Vec::new(), Vec::new());
        for (r, rule) in plan.rules.iter().enumerate() {
            let mut ranges = Vec::new();
            let clauses = clauses(&rule.condition);
            let (word, bit) = (r / 64, 1u64 << (r % 64));
            match clauses.first() {
                None => rule_sets[word] |= bit,
                Some(first) => {
                    for &(m, p) in first {
                        if matchers.list.get(m).is_some_and(|matcher| p < matcher.regexes.len()) {
                            rule_sets[(pattern_base[m] + p) * rule_words + word] |= bit;
                        }
                    }
                }
            }
            for clause in clauses {
                let start = masks.len() as u32;
                for (m, p) in clause {
                    // A hit of a matcher or pattern that does not exist is null: never true.
                    if matchers.list.get(m).is_none_or(|matcher| p >= matcher.regexes.len()) {
                        continue;
                    }
                    let (word, bit) = Hits::candidate_bit(matchers.layout[m], p);
                    masks.push((word as u32, bit));
                }
                ranges.push((start, masks.len() as u32));
            }
            rule_clauses.push(ranges);
        }
        Ok(ClassifierRuntime {
            conditions: plan.rules.iter().map(|r| Prepared::new(&r.condition)).collect(),
            plan,
            matchers,
            clauses: rule_clauses,
            masks,
            rule_sets,
            rule_words,
            pattern_base,
        })
    }

    /// The index of the first rule that matches `params`, or `None` for the default.
    pub fn classify(&self, params: &[Val<'_>], regexes: &RegexCache) -> Option<usize> {
        let hits = Hits::new(&self.matchers, params);
        let scope = Scope::Classifier { params, hits: &hits };
        let mut rules: SmallVec<[u64; 8]> = SmallVec::from_slice(&self.rule_sets[..self.rule_words]);
        for (m, matcher) in self.matchers.list.iter().enumerate() {
            let first = self.matchers.layout[m] + 1;
            for (w, word) in hits.words[first..first + matcher.regexes.len().div_ceil(64)].iter().enumerate() {
                let mut bits = word.get();
                while bits != 0 {
                    let p = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let set = (self.pattern_base[m] + p) * self.rule_words;
                    rules.iter_mut().zip(&self.rule_sets[set..set + self.rule_words]).for_each(|(r, s)| *r |= s);
                }
            }
        }
        // Candidate rules in order; the first that holds wins.
        for (w, mut bits) in rules.into_iter().enumerate() {
            while bits != 0 {
                let r = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let holds = self.clauses[r].iter().all(|&(start, end)| {
                    self.masks[start as usize..end as usize]
                        .iter()
                        .any(|&(w, mask)| hits.words[w as usize].get() & mask != 0)
                });
                if holds && self.conditions[r].test(&scope, regexes) == Some(true) {
                    return Some(r);
                }
            }
        }
        None
    }

    /// Why the first `upto` rules did not match `params`: per rule, the
    /// first operand of its condition's top-level `and`s that is not true
    /// (`None` if every operand is). Slow (each condition is evaluated
    /// whole, without the prefilter); for explaining one input, not for
    /// classifying many.
    pub fn unmet_conjuncts<'p>(
        &'p self,
        params: &[Val<'_>],
        regexes: &RegexCache,
        upto: usize,
    ) -> Vec<Option<&'p Expr>> {
        let hits = Hits::new(&self.matchers, params);
        let scope = Scope::Classifier { params, hits: &hits };
        let rules = &self.plan.rules[..upto.min(self.plan.rules.len())];
        rules
            .iter()
            .map(|rule| {
                rule.condition.conjuncts().into_iter().find(|part| !crate::eval::eval(part, &scope, regexes).is_true())
            })
            .collect()
    }
}

/// The classifiers of a runnable plan, by index, as expressions over an
/// event ask for them.
impl Classify for Vec<ClassifierRuntime> {
    fn classify(&self, classifier: usize, params: &[Val<'_>], regexes: &RegexCache) -> Option<usize> {
        self[classifier].classify(params, regexes)
    }

    fn outcome(&self, classifier: usize, rule: Option<usize>) -> &OutcomePlan {
        let plan = &self[classifier].plan;
        rule.map_or(&plan.default, |r| &plan.rules[r].outcome)
    }
}

/// A classifier's arguments from a JSON object, the way `streamctl classify`
/// reads its input lines: each parameter from the key of its name; a missing
/// key, `null` and a blank string are null; a number may come as a string. A
/// `provider` parameter left null is derived from `rhost` (or `mx_host`) and
/// `recipient_domain`, as the language's `provider(recipient_domain, mx_host)`
/// does.
///
/// # Errors
/// A value of the wrong type for its parameter.
pub fn params_from_json<'a>(
    plan: &ClassifierPlan,
    object: &'a Map<String, Value>,
) -> Result<Vec<Val<'a>>, crate::Error> {
    let text = |key: &str| object.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    let mut params = Vec::with_capacity(plan.params.len());
    for p in &plan.params {
        let scalar = p.ty.scalar;
        let bad = |v: &Value| crate::Error::ClassifierArgument {
            param: p.name.clone(),
            expected: scalar.name(),
            found: v.to_string(),
        };
        params.push(match (scalar, object.get(&p.name)) {
            (_, None | Some(Value::Null)) => Val::Null,
            (_, Some(Value::String(s))) if s.trim().is_empty() => Val::Null,
            (Scalar::String, Some(Value::String(s))) => Val::Str(s.as_str().into()),
            (Scalar::Int, Some(v @ Value::Number(n))) => Val::Int(n.as_i64().ok_or_else(|| bad(v))?),
            (Scalar::Int, Some(v @ Value::String(s))) => Val::Int(s.trim().parse().map_err(|_| bad(v))?),
            (Scalar::Float, Some(v @ Value::Number(n))) => Val::Float(n.as_f64().ok_or_else(|| bad(v))?),
            (Scalar::Bool, Some(Value::Bool(b))) => Val::Bool(*b),
            (_, Some(v)) => return Err(bad(v)),
        });
        if p.name == "provider" && matches!(params.last(), Some(Val::Null)) {
            let host = text("rhost").or_else(|| text("mx_host"));
            if let (Some(slot), Some(provider)) =
                (params.last_mut(), dsl::providers::of(text("recipient_domain"), host))
            {
                *slot = Val::Str(provider.into());
            }
        }
    }
    Ok(params)
}

/// The hits `condition` needs to be true (three-valued: `and` is true only
/// when both sides are, `or` when one is), as clauses. Leaving a clause out
/// only weakens the filter, so whatever is too large to say is left out.
fn clauses(condition: &Expr) -> Clauses {
    match condition {
        Expr::MatcherHit { matcher, pattern } => vec![vec![(*matcher, *pattern)]],
        Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
            let mut all = clauses(lhs);
            all.extend(clauses(rhs));
            all
        }
        Expr::Binary { op: BinaryOp::Or, lhs, rhs } => {
            let (left, right) = (clauses(lhs), clauses(rhs));
            let mut all = Vec::new();
            if left.len() * right.len() <= MAX_CLAUSE {
                for l in &left {
                    for r in &right {
                        let clause: Vec<_> = l.iter().chain(r).copied().collect();
                        if clause.len() <= MAX_CLAUSE {
                            all.push(clause);
                        }
                    }
                }
            }
            all
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::RegexCache;
    use regex::Regex;

    fn runtime(text: &str) -> (ClassifierRuntime, RegexCache) {
        let compiled = dsl::compile_str("t.stream", text);
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("checked above").classifiers.remove(0);
        let mut regexes = RegexCache::default();
        regexes.add_all(plan.rules.iter().map(|r| &r.condition)).expect("regexes compile");
        (ClassifierRuntime::new(plan).expect("sets compile"), regexes)
    }

    #[test]
    fn every_path_gives_the_answer_of_each_pattern_alone() {
        let (classifier, regexes) = runtime(
            "version 1\nclassifier c(d: string?, s: string?) {\n  \
             rule a reason full soft when d ~ /mailbox (is )?full|over quota/i\n  \
             rule b reason unknown hard when d ~ /user unknown|no such user/i and starts_with(s, \"5.\")\n  \
             rule c reason empty soft when d ~ /^$/\n  \
             rule d reason blocked block when contains(d, \"Spamhaus\")\n  \
             default unclassified reason undefined soft\n}\n",
        );
        // ASCII texts go through the literal table, the others through an
        // automaton of their own literals.
        let texts = [
            "",
            "Mailbox FULL",
            "550 user unknown",
            "listed at Spamhaus",
            "über quota",
            "ok",
            "\n",
            "MAILBOX IS FULL",
            "5.1.1 user unknown",
            "Spamhaus – mailbox full",
            "“No Such User”",
        ];
        for (m, runtime) in classifier.matchers.list.iter().enumerate() {
            let matcher = &classifier.plan.matchers[m];
            assert_eq!(
                runtime.set().expect("the set compiles").len(),
                matcher.patterns.len() + 1,
                "one sentinel per set"
            );
            for text in texts {
                let mut params = vec![Val::Null; classifier.plan.params.len()];
                params[matcher.param] = Val::Str(text.into());
                let hits = Hits::new(&classifier.matchers, &params);
                let matches = runtime.set().expect("the set compiles").matches(text);
                for (i, pattern) in matcher.patterns.iter().enumerate() {
                    let alone = Regex::new(pattern).expect("compiles").is_match(text);
                    assert_eq!(matches.matched(i), alone, "{pattern} on {text:?}");
                    assert_eq!(hits.get(m, i), Some(alone), "{pattern} on {text:?}");
                }
            }
        }
        let classify = |d: Option<&str>, s: &str| {
            let params = [d.map_or(Val::Null, |d| Val::Str(d.into())), Val::Str(s.into())];
            classifier.classify(&params, &regexes)
        };
        assert_eq!(classify(Some("mailbox is full"), "4.2.2"), Some(0));
        assert_eq!(classify(Some("no such user here"), "5.1.1"), Some(1));
        assert_eq!(classify(Some("no such user here"), "4.1.1"), None);
        assert_eq!(classify(Some(""), "5.0.0"), Some(2));
        assert_eq!(classify(Some("blocked: Spamhaus"), "5.7.1"), Some(3));
        assert_eq!(classify(None, "5.0.0"), None);
    }

    /// Rule conditions prepared (parameters compared with literals, prefix
    /// tests, hits) give what the tree gives, over texts, nulls and numbers.
    #[test]
    fn prepared_conditions_evaluate_as_the_tree() {
        let (classifier, regexes) = runtime(
            "version 1\nclassifier c(d: string?, s: string?, p: string?, n: int?) {\n  \
             rule a reason full soft when p == \"gmail\" and d ~ /mailbox (is )?full/i\n  \
             rule b reason unknown hard when (p in [\"yahoo\", \"aol\"] or d ~ /user unknown/i) and starts_with(s, \"5.\")\n  \
             rule c reason other soft when not (p != \"x\") or starts_with(s, \"\") and n >= 500\n  \
             rule e reason other soft when n < 300 and 200 <= n or n == 421\n  \
             default unclassified reason undefined soft\n}\n",
        );
        let prepared: Vec<Prepared> = classifier.plan.rules.iter().map(|r| Prepared::new(&r.condition)).collect();
        assert!(prepared.iter().all(|p| !matches!(p, Prepared::Other(_))), "{prepared:?}");
        let texts = || [Val::Null, Val::Str("mailbox is full".into()), Val::Str("5.1.1 user unknown".into())];
        let providers =
            [Val::Null, Val::Str("gmail".into()), Val::Str("aol".into()), Val::Str("x".into()), Val::Int(3)];
        for d in texts() {
            for s in texts().into_iter().chain([Val::Str("5.2.2".into()), Val::Int(5)]) {
                for p in providers.clone() {
                    for n in [
                        Val::Null,
                        Val::Int(550),
                        Val::Int(250),
                        Val::Int(300),
                        Val::Int(421),
                        Val::Float(299.5),
                        Val::Str("250".into()),
                    ] {
                        let params = [d.clone(), s.clone(), p.clone(), n];
                        let hits = Hits::new(&classifier.matchers, &params);
                        let scope = Scope::Classifier { params: &params, hits: &hits };
                        for (rule, prepared) in classifier.plan.rules.iter().zip(&prepared) {
                            let tree = crate::eval::eval(&rule.condition, &scope, &regexes);
                            assert_eq!(prepared.eval(&scope, &regexes), tree, "{:?} over {params:?}", rule.condition);
                            assert_eq!(
                                prepared.test(&scope, &regexes),
                                tree.as_bool(),
                                "{:?} over {params:?}",
                                rule.condition
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod stdlib_tests {
    use super::*;
    use crate::eval::eval;

    /// Every labelled reply classifies as when every rule is evaluated over
    /// the full set's hits, and every hit of the standard classifier, over
    /// those replies and variants of them (case changed, cut short, padded),
    /// equals the full set's answer and each pattern's own regex's.
    #[test]
    fn standard_rules_hit_exactly_as_the_full_set() {
        let compiled = dsl::compile_str("t.stream", "version 1\nimport \"std:bounces\"\n");
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("checked above").classifiers.remove(0);
        let classifier = ClassifierRuntime::new(plan).expect("sets compile");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dsl/stdlib/tests/bounces.labelled.jsonl");
        let labelled = std::fs::read_to_string(path).expect("labelled set");
        let mut texts = Vec::new();
        for line in labelled.lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect("labelled line");
            for key in ["diagnostic", "status"] {
                if let Some(text) = value.get(key).and_then(|v| v.as_str()) {
                    let half: String = text.chars().take(text.chars().count() / 2).collect();
                    texts.extend([text.to_string(), text.to_uppercase(), text.to_lowercase(), half]);
                    texts.push(format!("x{text}y"));
                }
            }
        }
        let regexes = RegexCache::default();
        for line in labelled.lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect("labelled line");
            let params: Vec<Val<'_>> = classifier
                .plan
                .params
                .iter()
                .map(|p| match value.get(&p.name) {
                    Some(serde_json::Value::String(s)) => Val::Str(s.as_str().into()),
                    Some(serde_json::Value::Number(n)) => n.as_i64().map_or(Val::Null, Val::Int),
                    _ => Val::Null,
                })
                .collect();
            let exact = Hits::with(&classifier.matchers, &params, false);
            let scope = Scope::Classifier { params: &params, hits: &exact };
            let reference = classifier.plan.rules.iter().position(|r| eval(&r.condition, &scope, &regexes).is_true());
            assert_eq!(classifier.classify(&params, &regexes), reference, "{line}");
        }
        for (m, runtime) in classifier.matchers.list.iter().enumerate() {
            for text in &texts {
                let mut params = vec![Val::Null; classifier.plan.params.len()];
                params[runtime.param] = Val::Str(text.as_str().into());
                let hits = Hits::new(&classifier.matchers, &params);
                let matches = runtime.set().expect("the set compiles").matches(text);
                for p in 0..runtime.regexes.len() {
                    assert_eq!(hits.get(m, p), Some(matches.matched(p)), "pattern {p} of matcher {m} on {text:?}");
                    // What answers when the set does not compile.
                    assert_eq!(runtime.regexes[p].is_match(text), matches.matched(p), "pattern {p} alone on {text:?}");
                }
            }
        }
    }
}
