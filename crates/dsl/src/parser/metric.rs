//! `metric` declarations and their clauses.

use super::{Converter, Rule};
use crate::ast::{Clause, Metric, NamedExpr, RollupTier};
use crate::span::Spanned;
use pest::iterators::Pair;

impl Converter<'_> {
    pub(super) fn metric(&self, pair: Pair<'_, Rule>) -> Metric {
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
}
