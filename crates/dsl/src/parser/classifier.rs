//! `classifier` declarations: parameters, rules and outcomes.

use super::{Converter, Rule};
use crate::ast::{Classifier, Outcome, Param};
use crate::span::Spanned;
use pest::iterators::Pair;

/// `Rule` the grammar rule and `Rule` the classifier rule share a name; the
/// AST's is known under this alias inside this module only.
type Rule_ = crate::ast::Rule;

impl Converter<'_> {
    pub(super) fn classifier(&self, pair: Pair<'_, Rule>) -> Classifier {
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
}
