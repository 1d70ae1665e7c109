//! `alert` declarations.

use super::{Converter, Rule};
use crate::ast::{Alert, Ident};
use crate::span::Spanned;
use pest::iterators::Pair;

impl Converter<'_> {
    pub(super) fn alert(&self, pair: Pair<'_, Rule>) -> Alert {
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
}
