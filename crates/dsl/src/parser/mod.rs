//! Text → [`ast::File`](crate::ast::File). The only module that imports pest.
//!
//! Before pest runs, a linear pre-scan bounds bracket nesting and runs of
//! prefix operators, the only ways the grammar recurses, so no input can
//! overflow the stack. While building the tree, expression depth is tracked
//! and capped for the same reason: later passes recurse over it freely.
//!
//! ```text
//! prescan       lexemes, comments, the nesting bounds checked before pest runs
//! syntax_error  pest's errors in the user's words, with advice for common mistakes
//! source        `source` declarations, DNSBL blocks, field and type declarations
//! classifier    `classifier` declarations: parameters, rules, outcomes
//! metric        `metric` declarations and their clauses
//! alert         `alert` declarations
//! literal       numbers, strings with escapes, durations
//! expr          expressions, by precedence climbing, with a depth bound
//! ```
//!
//! Every part of the tree is built by a method of one `Converter`, which
//! holds the file being read and collects its diagnostics.

mod alert;
mod classifier;
mod expr;
mod literal;
mod metric;
mod prescan;
mod source;
mod syntax_error;
#[cfg(test)]
mod tests;

use crate::ast::{File, Ident, Import, Item};
use crate::codes::Code;
use crate::diagnostic::Diagnostic;
use crate::span::{FileId, Span, Spanned};
use pest::iterators::Pair;
use pest::Parser as _;
use std::cell::RefCell;

pub use literal::parse_duration;
pub(crate) use prescan::comments;
use prescan::{prescan, trim_end};
use syntax_error::syntax_error;

/// The generated parser; private so pest's `Rule` never leaks into the API.
mod grammar {
    #![allow(missing_docs)]
    #[derive(pest_derive::Parser)]
    #[grammar = "../../../dsl/stream.pest"]
    pub(super) struct StreamParser;
}
use grammar::{Rule, StreamParser};

/// Largest file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 4 << 20;
/// Deepest bracket (`(`, `[`, `{`, `case`) nesting accepted.
pub const MAX_NESTING: usize = 64;
/// Longest run of prefix operators (`not`, `-`) accepted.
pub const MAX_PREFIX_RUN: usize = 32;
/// Deepest expression tree accepted.
pub const MAX_EXPR_DEPTH: u32 = 128;

/// Parses the text of one file. On failure returns every problem found.
pub fn parse(file: FileId, text: &str) -> Result<File, Vec<Diagnostic>> {
    if text.len() > MAX_FILE_BYTES {
        let end = text.len().min(1);
        return Err(vec![Diagnostic::error(
            Code::TooLarge,
            Span::new(file, 0, end),
            format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", text.len()),
        )
        .with_help("split the pipelines over several files")]);
    }
    prescan(file, text).map_err(|d| vec![d])?;
    let mut pairs = StreamParser::parse(Rule::file, text).map_err(|e| vec![syntax_error(file, text, &e)])?;
    let root = pairs.next().expect("grammar: file rule yields one pair");
    let converter =
        Converter { file, text, diagnostics: RefCell::new(Vec::new()), too_deep_reported: RefCell::new(false) };
    let ast = converter.file(root);
    let diagnostics = converter.diagnostics.into_inner();
    if diagnostics.is_empty() {
        Ok(ast)
    } else {
        Err(diagnostics)
    }
}

/// Builds the syntax tree of one file from pest's pairs, collecting diagnostics.
struct Converter<'t> {
    file: FileId,
    text: &'t str,
    diagnostics: RefCell<Vec<Diagnostic>>,
    too_deep_reported: RefCell<bool>,
}

impl Converter<'_> {
    /// The pair's span without trailing whitespace and comments, which pest
    /// includes when a rule ends in an optional part or a repetition.
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(self.file, s.start(), trim_end(self.text, s.start(), s.end()))
    }

    fn report(&self, diagnostic: Diagnostic) {
        self.diagnostics.borrow_mut().push(diagnostic);
    }

    fn ident(&self, pair: Pair<'_, Rule>) -> Ident {
        Spanned::new(pair.as_str().to_string(), self.span(&pair))
    }

    fn file(&self, root: Pair<'_, Rule>) -> File {
        let mut version = None;
        let mut items = Vec::new();
        for pair in root.into_inner() {
            match pair.as_rule() {
                Rule::version_decl => {
                    let span = self.span(&pair);
                    let number = pair.into_inner().next().expect("grammar: version has a number");
                    version = Some(Spanned::new(self.unsigned(&number), span));
                }
                Rule::import_decl => {
                    let span = self.span(&pair);
                    let path = self.string(pair.into_inner().next().expect("grammar: import has a path"));
                    items.push(Item::Import(Import { path, span }));
                }
                Rule::source_decl => items.push(Item::Source(self.source(pair))),
                Rule::classifier_decl => items.push(Item::Classifier(self.classifier(pair))),
                Rule::metric_decl => items.push(Item::Metric(self.metric(pair))),
                Rule::alert_decl => items.push(Item::Alert(self.alert(pair))),
                Rule::EOI => {}
                other => unreachable!("grammar: unexpected {other:?} at top level"),
            }
        }
        File { version, items }
    }
}
