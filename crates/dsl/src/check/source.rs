//! Sources: the format, the declared fields as a schema tree and a flat
//! list of decodable scalars, and the one event-time field.

use super::{Checker, SchemaField, SchemaShape};
use crate::ast::{self, TypeKind};
use crate::codes::Code;
use crate::diagnostic::{closest, Diagnostic};
use crate::plan::*;
use crate::span::Span;
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn check_source(&mut self, source: &ast::Source) -> (SourcePlan, Vec<SchemaField>) {
        let format = match source.format.node.as_str() {
            "json" => Format::Json,
            other => {
                self.report(
                    Diagnostic::error(Code::UnknownFormat, source.format.span, format!("unknown format `{other}`"))
                        .with_label("not supported")
                        .with_help("the supported format is `json`"),
                );
                Format::Json
            }
        };
        let mut fields = Vec::new();
        let mut event_times: Vec<(usize, &ast::FieldDecl)> = Vec::new();
        let schema = self.schema_fields(&source.fields, &mut Vec::new(), false, &mut fields, &mut event_times, true);
        let event_time = match event_times.as_slice() {
            [] => {
                self.report(
                    Diagnostic::error(
                        Code::EventTime,
                        source.name.span,
                        format!("source `{}` has no event-time field", source.name.node),
                    )
                    .with_help("mark the timestamp field that windows use, e.g. `ts: timestamp event_time`"),
                );
                0
            }
            [(index, decl), rest @ ..] => {
                for (_, other) in rest {
                    self.report(
                        Diagnostic::error(Code::EventTime, other.span, "more than one event-time field")
                            .with_label("second `event_time`")
                            .with_secondary(decl.span, "first `event_time`"),
                    );
                }
                let ty = fields[*index].ty;
                if ty.scalar != Scalar::Timestamp || ty.nullable {
                    let mut d = Diagnostic::error(
                        Code::EventTime,
                        decl.ty.span,
                        format!("the event-time field must be `timestamp`, not `{ty}`"),
                    )
                    .with_note("every event needs an event time to be placed in a window");
                    if ty.scalar == Scalar::Timestamp && !decl.ty.is_nullable {
                        d = d.with_label("this field is inside a record that may be null");
                    }
                    self.report(d);
                }
                fields[*index].is_used = true;
                *index
            }
        };
        let plan = SourcePlan {
            name: source.name.node.clone(),
            topic: source.topic.node.clone(),
            format,
            fields,
            event_time,
            max_future_ms: source.max_future.as_ref().map_or(DEFAULT_MAX_FUTURE_MS, |d| d.node.as_millis()),
            classifications: Vec::new(),
            dnsbl: source.dnsbl.as_ref().map(|d| self.check_dnsbl(d)),
        };
        (plan, schema)
    }

    /// Builds the schema tree and the flat list of scalar leaves.
    fn schema_fields<'d>(
        &mut self,
        decls: &'d [ast::FieldDecl],
        path: &mut Vec<String>,
        parent_nullable: bool,
        leaves: &mut Vec<FieldPlan>,
        event_times: &mut Vec<(usize, &'d ast::FieldDecl)>,
        is_top: bool,
    ) -> Vec<SchemaField> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut out = Vec::new();
        for decl in decls {
            if !self.declare_once(&mut seen, &decl.name, "field", "declared") {
                continue;
            }
            if !self.check_name_not_reserved(&decl.name, "field") {
                continue;
            }
            if is_top && decl.name.node == "kafka" {
                self.report(
                    Diagnostic::error(Code::Reserved, decl.name.span, "`kafka` is reserved for message metadata")
                        .with_note("`kafka.key`, `kafka.partition`, `kafka.offset`, `kafka.timestamp` and `kafka.topic` are always available"),
                );
                continue;
            }
            path.push(decl.name.node.clone());
            let nullable = decl.ty.is_nullable;
            let shape = match &decl.ty.kind {
                TypeKind::Scalar(name) => {
                    let Some(scalar) = self.scalar_type(name) else {
                        path.pop();
                        continue;
                    };
                    leaves.push(FieldPlan {
                        path: path.clone(),
                        ty: Type { scalar, nullable: nullable || parent_nullable },
                        is_used: false,
                    });
                    if decl.is_event_time {
                        event_times.push((leaves.len() - 1, decl));
                    }
                    SchemaShape::Scalar(leaves.len() - 1)
                }
                TypeKind::Record(children) => {
                    if decl.is_event_time {
                        self.report(Diagnostic::error(Code::EventTime, decl.span, "a record cannot be the event time"));
                    }
                    let children =
                        self.schema_fields(children, path, nullable || parent_nullable, leaves, event_times, false);
                    SchemaShape::Record(children)
                }
            };
            path.pop();
            out.push(SchemaField { name: decl.name.node.clone(), nullable, shape });
        }
        out
    }

    pub(super) fn scalar_type(&mut self, name: &ast::Ident) -> Option<Scalar> {
        const NAMES: [(&str, Scalar); 5] = [
            ("string", Scalar::String),
            ("int", Scalar::Int),
            ("float", Scalar::Float),
            ("bool", Scalar::Bool),
            ("timestamp", Scalar::Timestamp),
        ];
        if let Some((_, s)) = NAMES.iter().find(|(n, _)| *n == name.node) {
            return Some(*s);
        }
        let mut diagnostic = Diagnostic::error(Code::UnknownType, name.span, format!("unknown type `{}`", name.node))
            .with_note(
            "the types are string, int, float, bool, timestamp, and records `{ name: type, … }`; add `?` for nullable",
        );
        if let Some(best) = closest(&name.node, NAMES.iter().map(|(n, _)| *n)) {
            diagnostic = diagnostic.with_help(format!("did you mean `{best}`?"));
        }
        self.report(diagnostic);
        None
    }
}
