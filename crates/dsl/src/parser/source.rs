//! `source` declarations, their DNSBL blocks, and field and type declarations.

use super::{Converter, Rule};
use crate::ast::*;
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::span::{Span, Spanned};
use pest::iterators::Pair;

impl Converter<'_> {
    pub(super) fn source(&self, pair: Pair<'_, Rule>) -> Source {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.ident(inner.next().expect("grammar: source name"));
        let next = inner.next().expect("grammar: source body");
        if next.as_rule() == Rule::dnsbl_source {
            return self.dnsbl_source(name, next, span);
        }
        let topic = self.string(next);
        let format = self.ident(inner.next().expect("grammar: source format"));
        let mut next = inner.next().expect("grammar: source fields");
        let mut max_future = None;
        if next.as_rule() == Rule::max_future_clause {
            max_future = next.clone().into_inner().next().map(|d| self.duration(&d));
            next = inner.next().expect("grammar: source fields");
        }
        let fields = self.fields(next);
        Source { name, topic, format, max_future, fields, dnsbl: None, span }
    }

    /// `source NAME from dnsbl { … }`: the topic (unless set), format and
    /// fields are the fixed ones of a DNSBL observation.
    fn dnsbl_source(&self, name: Ident, block: Pair<'_, Rule>, span: Span) -> Source {
        let block_span = self.span(&block);
        let start = block.as_span().start();
        let settings: Vec<DnsblSetting> = block.into_inner().map(|s| self.dnsbl_setting(s)).collect();
        let topic = settings
            .iter()
            .find_map(|s| match s {
                DnsblSetting::Topic(t) => Some(t.clone()),
                _ => None,
            })
            .unwrap_or_else(|| Spanned::new(format!("reputation.{}", name.node), name.span));
        let keyword = Span::new(self.file, start, start + "dnsbl".len());
        let fields = crate::dnsbl::OBSERVATION_FIELDS
            .iter()
            .map(|f| FieldDecl {
                name: Spanned::new(f.name.to_string(), keyword),
                ty: TypeExpr {
                    kind: TypeKind::Scalar(Spanned::new(f.scalar.name().to_string(), keyword)),
                    is_nullable: f.nullable,
                    span: keyword,
                },
                is_event_time: f.is_event_time,
                span: keyword,
            })
            .collect();
        Source {
            name,
            topic,
            format: Spanned::new("json".to_string(), keyword),
            max_future: None,
            fields,
            dnsbl: Some(Dnsbl { settings, span: block_span }),
            span,
        }
    }

    fn dnsbl_setting(&self, pair: Pair<'_, Rule>) -> DnsblSetting {
        let rule = pair.as_rule();
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        match rule {
            Rule::dnsbl_topic => DnsblSetting::Topic(self.string(inner.next().expect("grammar: topic name"))),
            Rule::dnsbl_every => DnsblSetting::Every(self.duration(&inner.next().expect("grammar: every duration"))),
            Rule::dnsbl_targets => DnsblSetting::Targets(Spanned::new(inner.map(|t| self.string(t)).collect(), span)),
            Rule::dnsbl_targets_from => DnsblSetting::TargetsFrom(DnsblTargetsFrom {
                metric: self.ident(inner.next().expect("grammar: targets metric")),
                key: self.ident(inner.next().expect("grammar: targets key")),
                within: self.duration(&inner.next().expect("grammar: targets within")),
                span,
            }),
            _ => {
                let name = self.ident(inner.next().expect("grammar: list name"));
                let zone = self.string(inner.next().expect("grammar: list zone"));
                let kind = self.ident(inner.next().expect("grammar: list kind"));
                let options = inner.map(|o| self.dnsbl_option(o)).collect();
                DnsblSetting::List(DnsblList { name, zone, kind, options, span })
            }
        }
    }

    fn dnsbl_option(&self, pair: Pair<'_, Rule>) -> DnsblOption {
        let rule = pair.as_rule();
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let number = |p: Pair<'_, Rule>| {
            let at = self.span(&p);
            match p.as_str().parse::<f64>() {
                Ok(v) if v.is_finite() => Spanned::new(v, at),
                _ => {
                    self.report(Diagnostic::error(Code::BadNumber, at, "number out of range"));
                    Spanned::new(0.0, at)
                }
            }
        };
        match rule {
            Rule::dnsbl_weight => DnsblOption::Weight(number(inner.next().expect("grammar: weight"))),
            Rule::dnsbl_max_qps => DnsblOption::MaxQps(number(inner.next().expect("grammar: max_qps"))),
            Rule::dnsbl_max_per_day => {
                let n = inner.next().expect("grammar: max_per_day");
                DnsblOption::MaxPerDay(Spanned::new(self.unsigned(&n), self.span(&n)))
            }
            Rule::dnsbl_key_env => DnsblOption::KeyEnv(self.string(inner.next().expect("grammar: key_env"))),
            _ => DnsblOption::Codes(Spanned::new(
                inner
                    .map(|entry| {
                        let mut parts = entry.into_inner();
                        let code = self.string(parts.next().expect("grammar: code"));
                        let meaning = self.string(parts.next().expect("grammar: meaning"));
                        (code, meaning)
                    })
                    .collect(),
                span,
            )),
        }
    }

    fn fields(&self, block: Pair<'_, Rule>) -> Vec<FieldDecl> {
        block
            .into_inner()
            .map(|field| {
                let span = self.span(&field);
                let mut inner = field.into_inner();
                let name = self.ident(inner.next().expect("grammar: field name"));
                let ty = self.type_expr(inner.next().expect("grammar: field type"));
                let is_event_time = inner.next().is_some();
                FieldDecl { name, ty, is_event_time, span }
            })
            .collect()
    }

    pub(super) fn type_expr(&self, pair: Pair<'_, Rule>) -> TypeExpr {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let shape = inner.next().expect("grammar: type has a shape");
        let kind = match shape.as_rule() {
            Rule::field_block => TypeKind::Record(self.fields(shape)),
            _ => TypeKind::Scalar(self.ident(shape)),
        };
        TypeExpr { kind, is_nullable: inner.next().is_some(), span }
    }
}
