//! Diagnostics: what went wrong, where, and what to do about it.
//!
//! A [`Diagnostic`] is plain data (serialisable, so the daemon's logs and API
//! can carry it unrendered). [`render`] is the one place that turns it into the
//! rustc-like text users read.

use crate::codes::Code;
use crate::span::{SourceMap, Span};
use serde::Serialize;
use std::fmt::Write;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The program is still accepted.
    Warning,
    /// The program is rejected.
    Error,
}

/// A span with a short message under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// Shown beside the underline; may be empty.
    pub message: String,
    /// The primary label is underlined with `^`, secondary ones with `-`.
    pub is_primary: bool,
}

/// One problem found in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// One line, lowercase, no trailing period.
    pub message: String,
    /// Places in the source; the first primary label locates the diagnostic.
    pub labels: Vec<Label>,
    /// Extra facts (`= note: …`).
    pub notes: Vec<String>,
    /// What to do (`= help: …`).
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error with `code` and `message` and a primary label at `span`.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            labels: vec![Label { span, message: String::new(), is_primary: true }],
            notes: Vec::new(),
            help: None,
        }
    }

    /// A warning with `code` and `message` and a primary label at `span`.
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    /// Sets the message under the primary label.
    pub fn with_label(mut self, message: impl Into<String>) -> Self {
        if let Some(primary) = self.labels.iter_mut().find(|l| l.is_primary) {
            primary.message = message.into();
        }
        self
    }

    /// Adds a secondary label, e.g. the first definition of a duplicate.
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label { span, message: message.into(), is_primary: false });
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The primary span.
    pub fn span(&self) -> Span {
        self.labels.iter().find(|l| l.is_primary).or(self.labels.first()).map(|l| l.span).unwrap_or_default()
    }

    /// Whether this diagnostic rejects the program.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The diagnostic with its places resolved to file, line and column, for
    /// `--format json` and logs.
    pub fn located(&self, sources: &SourceMap) -> LocatedDiagnostic {
        let locate = |l: &Label| {
            let file = sources.get(l.span.file);
            let (line, column) = file.line_col(l.span.start);
            let (end_line, end_column) = file.line_col(l.span.end);
            LocatedLabel {
                file: file.name.clone(),
                line,
                column,
                end_line,
                end_column,
                message: l.message.clone(),
                is_primary: l.is_primary,
            }
        };
        let labels: Vec<LocatedLabel> = self.labels.iter().map(locate).collect();
        let primary = labels.iter().find(|l| l.is_primary).or(labels.first()).cloned();
        LocatedDiagnostic {
            code: self.code,
            severity: self.severity,
            message: self.message.clone(),
            file: primary.as_ref().map(|l| l.file.clone()),
            line: primary.as_ref().map(|l| l.line),
            column: primary.as_ref().map(|l| l.column),
            labels,
            notes: self.notes.clone(),
            help: self.help.clone(),
        }
    }
}

/// A diagnostic with line and column numbers, as serialised for machines.
#[derive(Clone, Debug, Serialize)]
pub struct LocatedDiagnostic {
    /// Stable code, e.g. `E203`.
    pub code: Code,
    /// `error` or `warning`.
    pub severity: Severity,
    /// What went wrong.
    pub message: String,
    /// File of the primary label.
    pub file: Option<String>,
    /// One-based line of the primary label.
    pub line: Option<usize>,
    /// One-based column (in characters) of the primary label.
    pub column: Option<usize>,
    /// Every label, located.
    pub labels: Vec<LocatedLabel>,
    /// Notes.
    pub notes: Vec<String>,
    /// Help.
    pub help: Option<String>,
}

/// A label with line and column numbers.
#[derive(Clone, Debug, Serialize)]
pub struct LocatedLabel {
    /// File name.
    pub file: String,
    /// One-based first line.
    pub line: usize,
    /// One-based first column.
    pub column: usize,
    /// One-based last line.
    pub end_line: usize,
    /// One-based column just past the end.
    pub end_column: usize,
    /// Text beside the underline.
    pub message: String,
    /// Whether this is the primary label.
    pub is_primary: bool,
}

/// Renders `diagnostic` the way rustc does, without colour:
///
/// ```text
/// error[E203]: unknown field `sender`
///   --> pipelines/bounces.stream:4:12
///   |
/// 4 |   group by sender, reason
///   |            ^^^^^^ not a field of source `deliveries`
///   |
///   = help: did you mean `sender_domain`?
/// ```
pub fn render(diagnostic: &Diagnostic, sources: &SourceMap) -> String {
    let mut out = String::new();
    let severity = match diagnostic.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(out, "{severity}[{}]: {}", diagnostic.code, diagnostic.message);

    // One snippet per file, the primary label's file first; within it, each
    // line once, with one underline row per label on it in column order.
    let primary_file = diagnostic.span().file;
    let mut files: Vec<_> = diagnostic.labels.iter().map(|l| l.span.file).collect();
    files.sort_by_key(|f| (*f != primary_file, *f));
    files.dedup();
    let gutter = diagnostic
        .labels
        .iter()
        .map(|l| sources.get(l.span.file).line_col(l.span.start).0.to_string().len())
        .max()
        .unwrap_or(1);
    let pad = " ".repeat(gutter);
    for file_id in files {
        let file = sources.get(file_id);
        let mut labels: Vec<(usize, usize, &Label)> = diagnostic
            .labels
            .iter()
            .filter(|l| l.span.file == file_id)
            .map(|l| {
                let (line, col) = file.line_col(l.span.start);
                (line, col, l)
            })
            .collect();
        labels.sort_by_key(|(line, col, l)| (*line, *col, !l.is_primary));
        let (first_line, first_col) = labels
            .iter()
            .find(|(_, _, l)| l.is_primary)
            .or(labels.first())
            .map_or((1, 1), |(line, col, _)| (*line, *col));
        let _ = writeln!(out, "{pad}--> {}:{first_line}:{first_col}", file.name);
        let _ = writeln!(out, "{pad} |");
        let mut previous_line: Option<usize> = None;
        for (line, col, label) in &labels {
            if previous_line != Some(*line) {
                if previous_line.is_some_and(|p| *line > p + 1) {
                    let _ = writeln!(out, "{pad}...");
                }
                let text = file.line_text(*line).replace('\t', " ");
                let _ = writeln!(out, "{line:>gutter$} | {text}");
                previous_line = Some(*line);
            }
            let width = file.line_text(*line).chars().count();
            let (end_line, end_col) = file.line_col(label.span.end);
            // A multi-line span is underlined to the end of its first line.
            let last_col = if end_line == *line { end_col } else { width + 1 };
            let underline_len = last_col.saturating_sub(*col).max(1);
            let mark = if label.is_primary { "^" } else { "-" };
            let message = if label.message.is_empty() { String::new() } else { format!(" {}", label.message) };
            let _ = writeln!(out, "{pad} | {}{}{message}", " ".repeat(col - 1), mark.repeat(underline_len));
        }
    }
    if !diagnostic.notes.is_empty() || diagnostic.help.is_some() {
        let _ = writeln!(out, "{pad} |");
    }
    for note in &diagnostic.notes {
        let _ = writeln!(out, "{pad} = note: {note}");
    }
    if let Some(help) = &diagnostic.help {
        let _ = writeln!(out, "{pad} = help: {help}");
    }
    out
}

/// Renders every diagnostic, separated by blank lines.
pub fn render_all(diagnostics: &[Diagnostic], sources: &SourceMap) -> String {
    diagnostics.iter().map(|d| render(d, sources)).collect::<Vec<_>>().join("\n")
}

/// The known name closest to `name`, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| {
            *d <= limit || (c.starts_with(name) && name.len() >= 3) || (name.starts_with(c) && c.len() >= 3)
        })
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{FileId, Span};

    #[test]
    fn renders_like_rustc() {
        let mut sources = SourceMap::new();
        let text = "version 1\nmetric m from deliveries\n  group by sender, reason\n";
        let file = sources.add("pipelines/bounces.stream", text);
        let start = text.find("sender").unwrap();
        let d = Diagnostic::error(Code::UnknownField, Span::new(file, start, start + 6), "unknown field `sender`")
            .with_label("not a field of source `deliveries`")
            .with_help("did you mean `sender_domain`?");
        let expected = "\
error[E203]: unknown field `sender`
 --> pipelines/bounces.stream:3:12
  |
3 |   group by sender, reason
  |            ^^^^^^ not a field of source `deliveries`
  |
  = help: did you mean `sender_domain`?
";
        assert_eq!(render(&d, &sources), expected);
        assert_eq!(d.located(&sources).line, Some(3));
        let _ = FileId(0);
    }

    #[test]
    fn closest_finds_typos_only() {
        let names = ["sender_domain", "smtp_code", "status"];
        assert_eq!(closest("sender", names), Some("sender_domain"));
        assert_eq!(closest("smtp_cod", names), Some("smtp_code"));
        assert_eq!(closest("statsu", names), Some("status"));
        assert_eq!(closest("zzz", names), None);
    }
}
