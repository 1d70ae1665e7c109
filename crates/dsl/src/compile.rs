//! Checked parts → [`Plan`]: text matchers per classifier parameter and
//! identity hashes.

use crate::ast::{self, Item};
use crate::check::Checked;
use crate::fmt::format_item;
use crate::plan::*;
use crate::LANGUAGE_VERSION;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Assembles the plan. Only called when checking found no errors.
pub(crate) fn build(checked: Checked<'_>) -> Plan {
    // Each definition's canonical text is hashed once; a metric's identity
    // chains the digests of what it depends on with its own text.
    let digest = |item: Item| hex(&Sha256::digest(format_item(&item)));
    let source_digests: Vec<String> = checked.sources.iter().map(|(_, a)| digest(Item::Source((*a).clone()))).collect();
    let classifier_digests: Vec<String> =
        checked.classifiers.iter().map(|(_, a)| digest(Item::Classifier((*a).clone()))).collect();

    let classifier_names: Vec<String> = checked.classifiers.iter().map(|(p, _)| p.name.clone()).collect();
    let classifiers: Vec<ClassifierPlan> =
        checked.classifiers.into_iter().map(|(plan, _)| with_matchers(plan)).collect();

    let metrics: Vec<Arc<MetricPlan>> = checked
        .metrics
        .into_iter()
        .map(|(mut plan, ast, used)| {
            let mut hasher = Sha256::new();
            hasher.update(format!("language {LANGUAGE_VERSION}\n"));
            hasher.update(format!("source {}\n", source_digests[plan.source]));
            // By name, so the order definitions were loaded in does not matter.
            let mut used: Vec<usize> = used.into_iter().collect();
            used.sort_by(|a, b| classifier_names[*a].cmp(&classifier_names[*b]));
            for classifier in used {
                hasher.update(format!("classifier {}\n", classifier_digests[classifier]));
            }
            hasher.update(format_metric(ast));
            plan.hash = hex(&hasher.finalize());
            Arc::new(plan)
        })
        .collect();
    let alert_texts: Vec<String> =
        checked.alerts.iter().map(|(_, a)| format_item(&Item::Alert((*a).clone()))).collect();

    let mut hasher = Sha256::new();
    hasher.update(format!("language {LANGUAGE_VERSION}\n"));
    for digest in source_digests.iter().chain(&classifier_digests) {
        hasher.update(format!("{digest}\n"));
    }
    for text in &alert_texts {
        hasher.update(text);
    }
    for metric in &metrics {
        hasher.update(format!("{} {}\n", metric.name, metric.hash));
    }

    Plan {
        format_version: PLAN_FORMAT_VERSION,
        language_version: LANGUAGE_VERSION,
        hash: hex(&hasher.finalize()),
        sources: checked.sources.into_iter().map(|(plan, _)| plan).collect(),
        classifiers,
        metrics,
        alerts: checked.alerts.into_iter().map(|(plan, _)| plan).collect(),
    }
}

fn format_metric(metric: &ast::Metric) -> String {
    format_item(&Item::Metric(metric.clone()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Moves every test of a parameter's text against a regex or a literal
/// (`contains`, `starts_with`, `ends_with`) into that parameter's matcher.
fn with_matchers(mut plan: ClassifierPlan) -> ClassifierPlan {
    let mut matchers = Matchers::default();
    for rule in &mut plan.rules {
        fold_text_tests(&mut rule.condition, &mut matchers);
    }
    plan.matchers = matchers.list;
    plan
}

/// Matchers under construction, with an index to deduplicate patterns.
#[derive(Default)]
struct Matchers {
    list: Vec<TextMatcher>,
    /// (param, pattern) → (matcher, pattern index).
    seen: HashMap<(usize, String), (usize, usize)>,
}

impl Matchers {
    fn hit(&mut self, param: usize, pattern: String) -> Expr {
        let list = &mut self.list;
        let (matcher, pattern) = *self.seen.entry((param, pattern)).or_insert_with_key(|(param, pattern)| {
            let matcher = match list.iter().position(|m| m.param == *param) {
                Some(m) => m,
                None => {
                    list.push(TextMatcher { param: *param, patterns: Vec::new() });
                    list.len() - 1
                }
            };
            list[matcher].patterns.push(pattern.clone());
            (matcher, list[matcher].patterns.len() - 1)
        });
        Expr::MatcherHit { matcher, pattern }
    }
}

fn fold_text_tests(e: &mut Expr, matchers: &mut Matchers) {
    let hit = match e {
        Expr::Regex { arg, pattern } => match **arg {
            Expr::Param(param) => Some((param, pattern.clone())),
            _ => None,
        },
        Expr::Call { function, args } => match (function, args.as_slice()) {
            (Function::Contains, [Expr::Param(p), Expr::Literal(Value::String(s))]) => {
                Some((*p, regex_syntax::escape(s)))
            }
            (Function::StartsWith, [Expr::Param(p), Expr::Literal(Value::String(s))]) => {
                Some((*p, format!("^{}", regex_syntax::escape(s))))
            }
            (Function::EndsWith, [Expr::Param(p), Expr::Literal(Value::String(s))]) => {
                Some((*p, format!("{}$", regex_syntax::escape(s))))
            }
            _ => None,
        },
        _ => None,
    };
    if let Some((param, pattern)) = hit {
        *e = matchers.hit(param, pattern);
        return;
    }
    match e {
        Expr::Not(inner) | Expr::Neg(inner) => fold_text_tests(inner, matchers),
        Expr::Binary { lhs, rhs, .. } => {
            fold_text_tests(lhs, matchers);
            fold_text_tests(rhs, matchers);
        }
        Expr::Regex { arg, .. } => fold_text_tests(arg, matchers),
        Expr::In { arg, list } => {
            fold_text_tests(arg, matchers);
            list.iter_mut().for_each(|x| fold_text_tests(x, matchers));
        }
        Expr::Case { arms, otherwise } => {
            for (c, v) in arms {
                fold_text_tests(c, matchers);
                fold_text_tests(v, matchers);
            }
            if let Some(o) = otherwise {
                fold_text_tests(o, matchers);
            }
        }
        Expr::Call { args, .. } => args.iter_mut().for_each(|x| fold_text_tests(x, matchers)),
        _ => {}
    }
}
