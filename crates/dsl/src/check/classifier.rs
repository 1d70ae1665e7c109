//! Classifiers: parameters, rules (with unreachable ones warned about)
//! and outcomes, and the default that is assumed when none is written.

use super::{expr, Checker};
use crate::ast::{self, TypeExpr, TypeKind};
use crate::codes::Code;
use crate::diagnostic::{closest, Diagnostic};
use crate::plan::*;
use crate::span::Span;
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn check_classifier(&mut self, classifier: &ast::Classifier) -> Option<ClassifierPlan> {
        let errors_before = self.error_count();
        let mut params = Vec::new();
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for param in &classifier.params {
            if !self.declare_once(&mut seen, &param.name, "parameter", "declared") {
                continue;
            }
            // A bad type is reported; the name is still declared so rules using it raise nothing more.
            let ty = self.param_type(&param.ty).unwrap_or(Type { scalar: Scalar::String, nullable: true });
            params.push(ParamPlan { name: param.name.node.clone(), ty });
        }
        let mut rules = Vec::new();
        let mut always_matches: Option<Span> = None;
        for rule in &classifier.rules {
            if let Some(earlier) = always_matches {
                self.report(
                    Diagnostic::warning(Code::UnreachableRule, rule.outcome.category.span, "this rule can never match")
                        .with_secondary(earlier, "this earlier rule always matches"),
                );
            }
            if matches!(rule.condition.node, ast::ExprKind::Bool(true)) {
                always_matches.get_or_insert(rule.condition.span);
            }
            let outcome = self.outcome(&rule.outcome);
            let scope = expr::Scope::Classifier { params: &params };
            let condition = self.predicate(&rule.condition, &scope, "a rule condition");
            if let (Some(outcome), Some(condition)) = (outcome, condition) {
                rules.push(RulePlan { outcome, condition });
            }
        }
        let default = match &classifier.default {
            Some(outcome) => self.outcome(outcome),
            None => {
                self.report(
                    Diagnostic::warning(
                        Code::NoDefault,
                        classifier.name.span,
                        format!("classifier `{}` has no `default`", classifier.name.node),
                    )
                    .with_note("unmatched input is classified as `unclassified reason undefined soft`")
                    .with_help("end the rules with e.g. `default unclassified reason undefined soft`"),
                );
                Some(OutcomePlan {
                    category: "unclassified".into(),
                    reason: "undefined".into(),
                    kind: Kind::Soft,
                    hint: None,
                })
            }
        };
        if self.error_count() > errors_before {
            return None;
        }
        Some(ClassifierPlan {
            name: classifier.name.node.clone(),
            params,
            matchers: Vec::new(),
            rules,
            default: default?,
        })
    }

    fn outcome(&mut self, outcome: &ast::Outcome) -> Option<OutcomePlan> {
        let kind = match Kind::ALL.iter().find(|(n, _)| *n == outcome.kind.node) {
            Some((_, k)) => *k,
            None => {
                let mut diagnostic = Diagnostic::error(
                    Code::UnknownKind,
                    outcome.kind.span,
                    format!("unknown kind `{}`", outcome.kind.node),
                )
                .with_note("the kinds are hard, soft, block and transient");
                if let Some(best) = closest(&outcome.kind.node, Kind::ALL.iter().map(|(n, _)| *n)) {
                    diagnostic = diagnostic.with_help(format!("did you mean `{best}`?"));
                }
                self.report(diagnostic);
                return None;
            }
        };
        Some(OutcomePlan {
            category: outcome.category.node.clone(),
            reason: outcome.reason.node.clone(),
            kind,
            hint: outcome.hint.as_ref().map(|h| h.node.clone()),
        })
    }

    fn param_type(&mut self, ty: &TypeExpr) -> Option<Type> {
        match &ty.kind {
            TypeKind::Scalar(name) => self.scalar_type(name).map(|s| Type { scalar: s, nullable: ty.is_nullable }),
            TypeKind::Record(_) => {
                self.report(
                    Diagnostic::error(Code::TypeMismatch, ty.span, "classifier parameters must be scalars")
                        .with_help("pass the record's fields as separate parameters"),
                );
                None
            }
        }
    }
}
