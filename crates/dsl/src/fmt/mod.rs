//! Canonical formatting. `streamctl fmt` prints a parsed file back in one
//! canonical layout, keeping every comment; the same printer without comments
//! is the normalised form that identity hashes are taken over.
//!
//! Comments are attached by position: those before a field, rule, clause or
//! item are printed above it (a comment inside an expression moves above the
//! clause or rule holding it, since expressions are printed on one line), and
//! a comment after code on the same line stays at the end of that line.

mod expr;

use crate::ast::*;
pub use expr::format_expr;
pub(crate) use expr::string;

/// Lines longer than this are wrapped where the layout allows.
const MAX_WIDTH: usize = 100;
const INDENT: &str = "  ";

/// Formats a whole file, keeping its comments. `text` is the source it was parsed from.
pub fn format_file(file: &File, text: &str) -> String {
    let mut p = Printer { comments: crate::parser::comments(text), next: 0, text, out: String::new() };
    p.file(file);
    p.out
}

/// Formats one item without comments: the normalised form used for hashing.
pub fn format_item(item: &Item) -> String {
    let mut p = Printer { comments: Vec::new(), next: 0, text: "", out: String::new() };
    p.item(item);
    p.out
}
/// Formats milliseconds as the largest units that divide it: `90m` → `1h30m`.
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    const UNITS: [(&str, u64); 6] =
        [("y", 365 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// A `#` comment: its byte range, up to the end of its line.
#[derive(Debug, Clone)]
pub(crate) struct Comment {
    pub start: u32,
    pub end: u32,
}

/// A line of output: comments above it, its text, and a comment after it.
type PrintedLine = (Vec<String>, String, Option<String>);

struct Printer<'t> {
    comments: Vec<Comment>,
    next: usize,
    text: &'t str,
    out: String,
}

impl Printer<'_> {
    fn comment_text(&self, c: &Comment) -> &str {
        self.text[c.start as usize..c.end as usize].trim_end()
    }

    /// Comments starting before `pos` not printed yet, as text.
    fn take_before(&mut self, pos: u32) -> Vec<String> {
        let mut taken = Vec::new();
        while let Some(c) = self.comments.get(self.next) {
            if c.start >= pos {
                break;
            }
            taken.push(self.comment_text(c).to_string());
            self.next += 1;
        }
        taken
    }

    /// The comment after `end` on the same source line, if any.
    fn take_trailing(&mut self, end: u32) -> Option<String> {
        let c = self.comments.get(self.next)?;
        let between = self.text.get(end as usize..c.start as usize)?;
        if !between.chars().all(|ch| ch == ',' || (ch.is_whitespace() && ch != '\n')) {
            return None;
        }
        let text = self.comment_text(c).to_string();
        self.next += 1;
        Some(text)
    }

    fn lines(&mut self, comments: &[String], indent: &str) {
        for c in comments {
            self.out.push_str(indent);
            self.out.push_str(c);
            self.out.push('\n');
        }
    }

    fn end_line(&mut self, trailing: Option<String>) {
        if let Some(t) = trailing {
            self.out.push(' ');
            self.out.push_str(&t);
        }
        self.out.push('\n');
    }

    fn file(&mut self, file: &File) {
        if let Some(v) = &file.version {
            let lead = self.take_before(v.span.start);
            self.lines(&lead, "");
            self.out.push_str(&format!("version {}", v.node));
            let trailing = self.take_trailing(v.span.end);
            self.end_line(trailing);
        }
        let mut previous: Option<&Item> = None;
        for item in &file.items {
            let is_import_run = matches!((previous, item), (Some(Item::Import(_)), Item::Import(_)));
            if !self.out.is_empty() && !is_import_run {
                self.out.push('\n');
            }
            let lead = self.take_before(item.span().start);
            self.lines(&lead, "");
            self.item(item);
            previous = Some(item);
        }
        let rest = self.take_before(u32::MAX);
        if !rest.is_empty() {
            if !self.out.is_empty() {
                self.out.push('\n');
            }
            self.lines(&rest, "");
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Import(i) => {
                let lead = self.take_before(i.span.end);
                self.lines(&lead, "");
                self.out.push_str(&format!("import {}", string(&i.path)));
                let trailing = self.take_trailing(i.span.end);
                self.end_line(trailing);
            }
            Item::Source(s) => self.source(s),
            Item::Classifier(c) => self.classifier(c),
            Item::Metric(m) => self.metric(m),
            Item::Alert(a) => self.alert(a),
        }
    }

    fn source(&mut self, s: &Source) {
        if let Some(dnsbl) = &s.dnsbl {
            return self.dnsbl_source(s, dnsbl);
        }
        let max_future = s.max_future.as_ref().map(|d| format!(" max_future {}", format_duration(d.node.as_millis())));
        self.out.push_str(&format!(
            "source {} from kafka {} format {}{} {{\n",
            s.name.node,
            string(&s.topic),
            s.format.node,
            max_future.unwrap_or_default()
        ));
        // Trailing comments of a run of fields are aligned one column past the longest field.
        let mut lines: Vec<PrintedLine> = Vec::new();
        for field in &s.fields {
            let lead = self.take_before(field.span.end);
            let text = format!("{INDENT}{},", field_decl(field));
            let trailing = self.take_trailing(field.span.end);
            lines.push((lead, text, trailing));
        }
        let width = lines.iter().filter(|(_, _, t)| t.is_some()).map(|(_, text, _)| text.len()).max().unwrap_or(0);
        for (lead, text, trailing) in lines {
            self.lines(&lead, INDENT);
            self.out.push_str(&text);
            if let Some(t) = trailing {
                self.out.push_str(&" ".repeat(width - text.len() + 1));
                self.out.push_str(&t);
            }
            self.out.push('\n');
        }
        let lead = self.take_before(s.span.end);
        self.lines(&lead, INDENT);
        self.out.push('}');
        let trailing = self.take_trailing(s.span.end);
        self.end_line(trailing);
    }

    fn dnsbl_source(&mut self, s: &Source, dnsbl: &Dnsbl) {
        self.out.push_str(&format!("source {} from dnsbl {{\n", s.name.node));
        for setting in &dnsbl.settings {
            let end = match setting {
                DnsblSetting::Topic(t) => t.span.end,
                DnsblSetting::Every(e) => e.span.end,
                DnsblSetting::Targets(t) => t.span.end,
                DnsblSetting::TargetsFrom(t) => t.span.end,
                DnsblSetting::List(l) => l.span.end,
            };
            let lead = self.take_before(end);
            self.lines(&lead, INDENT);
            let text = match setting {
                DnsblSetting::Topic(t) => format!("{INDENT}topic {}", string(&t.node)),
                DnsblSetting::Every(e) => format!("{INDENT}every {}", format_duration(e.node.as_millis())),
                DnsblSetting::Targets(t) => {
                    let targets: Vec<String> = t.node.iter().map(|t| string(&t.node)).collect();
                    format!("{INDENT}targets [{}]", targets.join(", "))
                }
                DnsblSetting::TargetsFrom(t) => format!(
                    "{INDENT}targets from metric {} key {} within {}",
                    t.metric.node,
                    t.key.node,
                    format_duration(t.within.node.as_millis())
                ),
                DnsblSetting::List(l) => dnsbl_list(l),
            };
            self.out.push_str(&text);
            let trailing = self.take_trailing(end);
            self.end_line(trailing);
        }
        let lead = self.take_before(s.span.end);
        self.lines(&lead, INDENT);
        self.out.push('}');
        let trailing = self.take_trailing(s.span.end);
        self.end_line(trailing);
    }

    fn classifier(&mut self, c: &Classifier) {
        let params: Vec<String> = c.params.iter().map(|p| format!("{}: {}", p.name.node, type_expr(&p.ty))).collect();
        self.out.push_str(&format!("classifier {}({}) {{\n", c.name.node, params.join(", ")));
        let mut is_first = true;
        for rule in &c.rules {
            let lead = self.take_before(rule.span.end);
            if !lead.is_empty() && !is_first {
                self.out.push('\n');
            }
            is_first = false;
            self.lines(&lead, INDENT);
            self.out.push_str(&format!("{INDENT}rule {}\n", outcome(&rule.outcome)));
            self.out.push_str(&format!("{INDENT}{INDENT}when {}", format_expr(&rule.condition)));
            if let Some(hint) = &rule.outcome.hint {
                self.out.push('\n');
                self.out.push_str(&format!("{INDENT}{INDENT}hint {}", string(hint)));
            }
            let trailing = self.take_trailing(rule.span.end);
            self.end_line(trailing);
        }
        if let Some(default) = &c.default {
            let end = default.hint.as_ref().map_or(default.kind.span, |h| h.span).end;
            let lead = self.take_before(end);
            if !lead.is_empty() && !is_first {
                self.out.push('\n');
            }
            self.lines(&lead, INDENT);
            self.out.push_str(&format!("{INDENT}default {}", outcome(default)));
            if let Some(hint) = &default.hint {
                self.out.push_str(&format!("\n{INDENT}{INDENT}hint {}", string(hint)));
            }
            let trailing = self.take_trailing(end);
            self.end_line(trailing);
        }
        let lead = self.take_before(c.span.end);
        self.lines(&lead, INDENT);
        self.out.push('}');
        let trailing = self.take_trailing(c.span.end);
        self.end_line(trailing);
    }

    fn metric(&mut self, m: &Metric) {
        self.out.push_str(&format!("metric {} from {}", m.name.node, m.source.node));
        let header_end = m.source.span.end;
        let trailing = self.take_trailing(header_end);
        self.end_line(trailing);
        // Gather each clause with its comments in source order, then print in canonical order.
        let mut printed: Vec<(u8, usize, PrintedLine)> = Vec::new();
        for (i, clause) in m.clauses.iter().enumerate() {
            let lead = self.take_before(clause.span.end);
            let trailing = self.take_trailing(clause.span.end);
            printed.push((clause.node.canonical_rank(), i, (lead, clause_text(&clause.node), trailing)));
        }
        printed.sort_by_key(|(rank, i, _)| (*rank, *i));
        for (_, _, (lead, text, trailing)) in printed {
            self.lines(&lead, INDENT);
            self.out.push_str(&text);
            self.end_line(trailing);
        }
    }

    /// An alert, each part on its line with the comments before it above
    /// it and the one after it at its end, like a metric's clauses.
    fn alert(&mut self, a: &Alert) {
        let lead = self.take_before(a.metric.span.end);
        self.lines(&lead, "");
        self.out.push_str(&format!("alert {} on {}", a.name.node, a.metric.node));
        let trailing = self.take_trailing(a.metric.span.end);
        self.end_line(trailing);
        let mut end = a.condition.span.end;
        let lead = self.take_before(end);
        self.lines(&lead, INDENT);
        self.out.push_str(&format!("{INDENT}when {}", format_expr(&a.condition)));
        let trailing = self.take_trailing(end);
        self.end_line(trailing);
        if let Some(d) = &a.for_duration {
            end = d.span.end;
            let lead = self.take_before(end);
            self.lines(&lead, INDENT);
            self.out.push_str(&format!("{INDENT}for {}", format_duration(d.node.as_millis())));
            let trailing = self.take_trailing(end);
            self.end_line(trailing);
        }
        for (keyword, map) in [("labels", &a.labels), ("annotations", &a.annotations)] {
            let Some((_, last)) = map.last() else { continue };
            // The keyword and the braces have no spans: found past the comments around them.
            let keyword_at = skip_comments(self.text, end as usize) as u32;
            let close = past_closing_brace(self.text, last.span.end as usize) as u32;
            end = close;
            let lead = self.take_before(keyword_at);
            self.lines(&lead, INDENT);
            let entries: Vec<PrintedLine> = map
                .iter()
                .map(|(k, v)| {
                    let lead = self.take_before(k.span.start);
                    (lead, format!("{}: {}", k.node, string(&v.node)), self.take_trailing(v.span.end))
                })
                .collect();
            let before_close = self.take_before(close);
            let has_comments = !before_close.is_empty() || entries.iter().any(|(l, _, t)| !l.is_empty() || t.is_some());
            let inline = format!(
                "{INDENT}{keyword} {{ {} }}",
                entries.iter().map(|(_, e, _)| e.as_str()).collect::<Vec<_>>().join(", ")
            );
            if !has_comments && inline.len() <= MAX_WIDTH {
                self.out.push_str(&inline);
            } else {
                self.out.push_str(&format!("{INDENT}{keyword} {{\n"));
                let inner = format!("{INDENT}{INDENT}");
                for (lead, entry, trailing) in entries {
                    self.lines(&lead, &inner);
                    self.out.push_str(&format!("{inner}{entry},"));
                    self.end_line(trailing);
                }
                self.lines(&before_close, &inner);
                self.out.push_str(&format!("{INDENT}}}"));
            }
            let trailing = self.take_trailing(close);
            self.end_line(trailing);
        }
    }
}

/// The position of the first character at or after `pos` that is neither
/// whitespace nor inside a comment.
fn skip_comments(text: &str, mut pos: usize) -> usize {
    let bytes = text.as_bytes();
    while let Some(&b) = bytes.get(pos) {
        if b == b'#' {
            pos = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        } else if b.is_ascii_whitespace() {
            pos += 1;
        } else {
            break;
        }
    }
    pos
}

/// Just past the `}` that closes a map whose last entry ends at `pos`
/// (only a comma, whitespace and comments can stand between them).
fn past_closing_brace(text: &str, pos: usize) -> usize {
    let mut at = skip_comments(text, pos);
    if text.as_bytes().get(at) == Some(&b',') {
        at = skip_comments(text, at + 1);
    }
    (at + 1).min(text.len())
}

fn clause_text(clause: &Clause) -> String {
    match clause {
        Clause::Where(e) => format!("{INDENT}where {}", format_expr(e)),
        Clause::GroupBy(items) => list_clause("group by", items),
        Clause::Compute(items) => list_clause("compute", items),
        Clause::Window { width, lateness } => {
            let mut s = format!("{INDENT}window {}", format_duration(width.node.as_millis()));
            if let Some(l) = lateness {
                s.push_str(&format!(", lateness {}", format_duration(l.node.as_millis())));
            }
            s
        }
        Clause::Rollup(tiers) => {
            let tiers: Vec<String> = tiers
                .iter()
                .map(|t| {
                    format!(
                        "{} keep {}",
                        format_duration(t.width.node.as_millis()),
                        format_duration(t.keep.node.as_millis())
                    )
                })
                .collect();
            format!("{INDENT}rollup {}", tiers.join(", "))
        }
        Clause::Into { table, ttl } => match ttl {
            Some(ttl) => format!("{INDENT}into table {} ttl {}", table.node, format_duration(ttl.node.as_millis())),
            None => format!("{INDENT}into table {}", table.node),
        },
        Clause::Cardinality(limit) => format!("{INDENT}cardinality limit {}", limit.node),
        Clause::Export(target) => format!("{INDENT}export {}", target.node),
    }
}

fn list_clause(keyword: &str, items: &[NamedExpr]) -> String {
    let items: Vec<String> = items
        .iter()
        .map(|n| match &n.alias {
            Some(alias) => format!("{} as {}", format_expr(&n.expr), alias.node),
            None => format_expr(&n.expr),
        })
        .collect();
    let inline = format!("{INDENT}{keyword} {}", items.join(", "));
    if inline.len() <= MAX_WIDTH {
        return inline;
    }
    let sep = format!(",\n{INDENT}{INDENT}");
    format!("{INDENT}{keyword}\n{INDENT}{INDENT}{}", items.join(&sep))
}

fn outcome(o: &Outcome) -> String {
    format!("{} reason {} {}", o.category.node, o.reason.node, o.kind.node)
}

fn field_decl(f: &FieldDecl) -> String {
    let mut s = format!("{}: {}", f.name.node, type_expr(&f.ty));
    if f.is_event_time {
        s.push_str(" event_time");
    }
    s
}

fn type_expr(t: &TypeExpr) -> String {
    let base = match &t.kind {
        TypeKind::Scalar(name) => name.node.clone(),
        TypeKind::Record(fields) if fields.is_empty() => "{}".into(),
        TypeKind::Record(fields) => {
            let fields: Vec<String> = fields.iter().map(field_decl).collect();
            format!("{{ {} }}", fields.join(", "))
        }
    };
    if t.is_nullable {
        format!("{base}?")
    } else {
        base
    }
}

/// `list NAME zone "ZONE" KIND options…`, codes one a line.
fn dnsbl_list(l: &DnsblList) -> String {
    let mut out = format!("{INDENT}list {} zone {} {}", l.name.node, string(&l.zone.node), l.kind.node);
    for option in &l.options {
        match option {
            DnsblOption::Weight(w) => out.push_str(&format!(" weight {}", w.node)),
            DnsblOption::MaxQps(q) => out.push_str(&format!(" max_qps {}", q.node)),
            DnsblOption::MaxPerDay(d) => out.push_str(&format!(" max_per_day {}", d.node)),
            DnsblOption::KeyEnv(k) => out.push_str(&format!(" key_env {}", string(&k.node))),
            DnsblOption::Codes(codes) => {
                out.push_str(" codes {");
                for (code, meaning) in &codes.node {
                    out.push_str(&format!("\n{INDENT}{INDENT}{}: {},", string(&code.node), string(&meaning.node)));
                }
                if !codes.node.is_empty() {
                    out.push_str(&format!("\n{INDENT}"));
                }
                out.push('}');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_units() {
        assert_eq!(format_duration(90 * 60_000), "1h30m");
        assert_eq!(format_duration(2 * 365 * 86_400_000), "2y");
        assert_eq!(format_duration(90 * 86_400_000), "90d");
        assert_eq!(format_duration(1500), "1s500ms");
        assert_eq!(format_duration(0), "0s");
    }
}
