//! Names, types, windows: everything a program must satisfy beyond the grammar.
//!
//! The checker walks every loaded file once, collects every problem (it does
//! not stop at the first) and, while it checks, builds the typed plan
//! expressions, so there is no second, divergent pass over the AST.
//! Definitions share one namespace across all loaded files, because metric
//! names become table and series names; a file may only use definitions from
//! itself and the files it imports (transitively).
//!
//! ```text
//! mod         names and visibility; the order of the passes
//! source      formats, field schemas, the event-time field
//! dnsbl       `dnsbl { … }` blocks of sources
//! classifier  parameters, rules, outcomes
//! metric      metric clauses, windows, tiers, storage; alerts
//! expr        typing expressions into plan expressions (calls in expr/call)
//! ```

mod classifier;
mod dnsbl;
mod expr;
mod metric;
mod source;

use crate::ast::{self, Item};
use crate::codes::Code;
use crate::diagnostic::{closest, Diagnostic};
use crate::load::Loaded;
use crate::plan::*;
use crate::span::{FileId, SourceMap, Span};
use std::collections::{BTreeSet, HashMap, HashSet};

pub(crate) use expr::function_name;

/// Words reserved inside expressions; they cannot name fields or columns.
pub const RESERVED: &[&str] =
    &["and", "or", "not", "in", "as", "case", "when", "then", "else", "end", "true", "false", "null"];

/// Column names the store adds to every metric row.
pub const RESERVED_COLUMNS: &[&str] = &["window_start", "window_end", "source_partition", "tier", "state", "included"];

/// What kind of thing a global name denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DefKind {
    Source,
    Classifier,
    Metric,
    Alert,
}

impl DefKind {
    fn noun(self) -> &'static str {
        match self {
            DefKind::Source => "source",
            DefKind::Classifier => "classifier",
            DefKind::Metric => "metric",
            DefKind::Alert => "alert",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Def {
    kind: DefKind,
    /// Index into the checker's list of that kind.
    index: usize,
    file: FileId,
    span: Span,
}

/// A declared source field, as a tree.
#[derive(Debug, Clone)]
pub(crate) struct SchemaField {
    pub name: String,
    pub nullable: bool,
    pub shape: SchemaShape,
}

#[derive(Debug, Clone)]
pub(crate) enum SchemaShape {
    /// Index into `SourcePlan::fields`.
    Scalar(usize),
    Record(Vec<SchemaField>),
}

/// Everything the compiler needs besides the plan parts.
pub(crate) struct Checked<'a> {
    pub sources: Vec<(SourcePlan, &'a ast::Source)>,
    pub classifiers: Vec<(ClassifierPlan, &'a ast::Classifier)>,
    pub metrics: Vec<(MetricPlan, &'a ast::Metric, BTreeSet<usize>)>,
    pub alerts: Vec<(AlertPlan, &'a ast::Alert)>,
}

pub(crate) struct Checker<'a> {
    map: &'a SourceMap,
    diagnostics: Vec<Diagnostic>,
    defs: HashMap<String, Def>,
    /// For each file, the files whose definitions it may use.
    visible: HashMap<FileId, HashSet<FileId>>,
    current_file: FileId,
    source_asts: Vec<&'a ast::Source>,
    source_plans: Vec<SourcePlan>,
    schemas: Vec<Vec<SchemaField>>,
    classifier_asts: Vec<&'a ast::Classifier>,
    classifier_plans: Vec<Option<ClassifierPlan>>,
    metric_asts: Vec<&'a ast::Metric>,
    /// Columns of each metric that checked, for alerts.
    metric_plans: Vec<Option<MetricPlan>>,
    /// Classifiers the metric being checked uses (for its identity hash).
    classifiers_used: BTreeSet<usize>,
    /// The same, for every metric checked so far.
    metric_used: Vec<BTreeSet<usize>>,
}

/// Checks every loaded file. Returns the checked parts and all diagnostics
/// (warnings included); the caller decides from their severity.
pub(crate) fn check<'a>(loaded: &'a Loaded, map: &'a SourceMap) -> (Checked<'a>, Vec<Diagnostic>) {
    let mut checker = Checker {
        map,
        diagnostics: Vec::new(),
        defs: HashMap::new(),
        visible: visibility(loaded),
        current_file: FileId(0),
        source_asts: Vec::new(),
        source_plans: Vec::new(),
        schemas: Vec::new(),
        classifier_asts: Vec::new(),
        classifier_plans: Vec::new(),
        metric_asts: Vec::new(),
        metric_plans: Vec::new(),
        classifiers_used: BTreeSet::new(),
        metric_used: Vec::new(),
    };
    // Files load depth-first, imports before the files importing them, so a
    // clash between a file and its import is reported in the importing file.
    let files: Vec<_> = loaded.files.iter().collect();

    // Names first, so definitions may come in any order.
    let mut alert_asts: Vec<(FileId, &ast::Alert)> = Vec::new();
    for file in &files {
        for item in &file.ast.items {
            let (kind, index) = match item {
                Item::Import(_) => continue,
                Item::Source(s) => {
                    checker.source_asts.push(s);
                    (DefKind::Source, checker.source_asts.len() - 1)
                }
                Item::Classifier(c) => {
                    if expr::is_builtin_name(&c.name.node) {
                        checker.report(
                            Diagnostic::error(
                                Code::Reserved,
                                c.name.span,
                                format!("`{}` is a built-in function", c.name.node),
                            )
                            .with_label("a classifier cannot take this name")
                            .with_help("give the classifier another name"),
                        );
                    }
                    checker.classifier_asts.push(c);
                    (DefKind::Classifier, checker.classifier_asts.len() - 1)
                }
                Item::Metric(m) => {
                    checker.metric_asts.push(m);
                    (DefKind::Metric, checker.metric_asts.len() - 1)
                }
                Item::Alert(a) => {
                    alert_asts.push((file.id, a));
                    (DefKind::Alert, alert_asts.len() - 1)
                }
            };
            let name = item.name().expect("items other than imports have names");
            checker.define(name, kind, index, file.id);
        }
    }

    let file_of = |span: Span| span.file;
    for i in 0..checker.source_asts.len() {
        let source = checker.source_asts[i];
        checker.current_file = file_of(source.span);
        let (plan, schema) = checker.check_source(source);
        checker.source_plans.push(plan);
        checker.schemas.push(schema);
    }
    for i in 0..checker.classifier_asts.len() {
        let classifier = checker.classifier_asts[i];
        checker.current_file = file_of(classifier.span);
        let plan = checker.check_classifier(classifier);
        checker.classifier_plans.push(plan);
    }
    let mut tables: HashMap<String, Span> = HashMap::new();
    for i in 0..checker.metric_asts.len() {
        let metric = checker.metric_asts[i];
        checker.current_file = file_of(metric.span);
        checker.classifiers_used.clear();
        let plan = checker.check_metric(metric);
        if let Some(plan) = &plan {
            let table_span = metric.clauses.iter().find_map(|c| match &c.node {
                ast::Clause::Into { table, .. } => Some(table.span),
                _ => None,
            });
            let span = table_span.unwrap_or(metric.name.span);
            if let Some(first) = tables.get(&plan.table) {
                checker.report(
                    Diagnostic::error(
                        Code::Duplicate,
                        span,
                        format!("table `{}` is written by two metrics", plan.table),
                    )
                    .with_label("second metric writing it")
                    .with_secondary(*first, "first metric writing it")
                    .with_help("give one of them its own `into table <name>`"),
                );
            } else {
                tables.insert(plan.table.clone(), span);
            }
        }
        let used = std::mem::take(&mut checker.classifiers_used);
        checker.metric_plans.push(plan);
        checker.metric_used.push(used);
    }
    // Targets taken from metrics: checked once every metric is.
    for i in 0..checker.source_asts.len() {
        let source = checker.source_asts[i];
        let Some(dnsbl) = &source.dnsbl else { continue };
        checker.current_file = file_of(source.span);
        let targets_from = checker.check_dnsbl_targets_from(dnsbl);
        if let Some(plan) = checker.source_plans[i].dnsbl.as_mut() {
            plan.targets_from = targets_from;
        }
    }
    let mut alerts = Vec::new();
    for (file, alert) in &alert_asts {
        checker.current_file = *file;
        if let Some(plan) = checker.check_alert(alert) {
            alerts.push((plan, *alert));
        }
    }

    let checked = Checked {
        sources: checker.source_plans.clone().into_iter().zip(checker.source_asts.iter().copied()).collect(),
        classifiers: checker
            .classifier_plans
            .iter()
            .zip(&checker.classifier_asts)
            .filter_map(|(p, a)| p.clone().map(|p| (p, *a)))
            .collect(),
        metrics: checker
            .metric_plans
            .iter()
            .zip(&checker.metric_asts)
            .zip(&checker.metric_used)
            .filter_map(|((p, a), used)| p.clone().map(|p| (p, *a, used.clone())))
            .collect(),
        alerts,
    };
    (checked, checker.diagnostics)
}

impl<'a> Checker<'a> {
    pub(crate) fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn define(&mut self, name: &ast::Ident, kind: DefKind, index: usize, file: FileId) {
        if let Some(first) = self.defs.get(&name.node) {
            let diagnostic = Diagnostic::error(Code::Duplicate, name.span, format!("`{}` is defined twice", name.node))
                .with_label(format!("second definition, as a {}", kind.noun()))
                .with_secondary(first.span, format!("first defined here, as a {}", first.kind.noun()))
                .with_note("sources, classifiers, metrics and alerts share one namespace across all deployed files");
            self.report(diagnostic);
            return;
        }
        self.defs.insert(name.node.clone(), Def { kind, index, file, span: name.span });
    }

    /// Looks `name` up as a `kind` visible from the current file; reports and
    /// returns `None` if it is unknown, of another kind, or not imported.
    fn lookup(&mut self, name: &ast::Ident, kind: DefKind, code: Code) -> Option<usize> {
        let def = self.defs.get(&name.node).copied();
        match def {
            Some(def) if def.kind == kind => {
                let is_visible = self.visible.get(&self.current_file).is_some_and(|v| v.contains(&def.file));
                if is_visible {
                    return Some(def.index);
                }
                let path = self.map.get(def.file).name.clone();
                self.report(
                    Diagnostic::error(code, name.span, format!("{} `{}` is not imported here", kind.noun(), name.node))
                        .with_secondary(def.span, "defined here")
                        .with_help(format!("add `import \"{}\"` to this file", self.import_hint(&path))),
                );
                None
            }
            Some(def) => {
                self.report(
                    Diagnostic::error(
                        code,
                        name.span,
                        format!("`{}` is a {}, not a {}", name.node, def.kind.noun(), kind.noun()),
                    )
                    .with_secondary(def.span, format!("the {} is defined here", def.kind.noun())),
                );
                None
            }
            None => {
                let candidates: Vec<&str> =
                    self.defs.iter().filter(|(_, d)| d.kind == kind).map(|(n, _)| n.as_str()).collect();
                let mut diagnostic =
                    Diagnostic::error(code, name.span, format!("unknown {} `{}`", kind.noun(), name.node))
                        .with_label(format!("no {} has this name", kind.noun()));
                if let Some(best) = closest(&name.node, candidates) {
                    diagnostic = diagnostic.with_help(format!("did you mean `{best}`?"));
                }
                self.report(diagnostic);
                None
            }
        }
    }

    /// How the current file would import the file at `path`.
    fn import_hint(&self, path: &str) -> String {
        if path.starts_with(crate::load::STD_PREFIX) {
            return path.to_string();
        }
        let from = &self.map.get(self.current_file).name;
        let from_dir: Vec<&str> = from.rsplit_once('/').map_or(vec![], |(d, _)| d.split('/').collect());
        let to: Vec<&str> = path.split('/').collect();
        let common = from_dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let mut parts: Vec<&str> = vec![".."; from_dir.len() - common];
        parts.extend(&to[common..]);
        parts.join("/")
    }

    fn check_name_not_reserved(&mut self, name: &ast::Ident, what: &str) -> bool {
        if RESERVED.contains(&name.node.as_str()) {
            self.report(
                Diagnostic::error(Code::Reserved, name.span, format!("`{}` is a reserved word", name.node))
                    .with_label(format!("cannot name a {what}"))
                    .with_note(format!("reserved words: {}", RESERVED.join(", "))),
            );
            return false;
        }
        true
    }

    /// Notes `name` among the names declared so far in one list (`seen`:
    /// fields, parameters, DNSBL lists). A name already there is reported as
    /// a `what` `verb` twice, and is not noted again: `false`.
    fn declare_once<'n>(
        &mut self,
        seen: &mut HashMap<&'n str, Span>,
        name: &'n ast::Ident,
        what: &str,
        verb: &str,
    ) -> bool {
        if let Some(first) = seen.get(name.node.as_str()) {
            self.report(
                Diagnostic::error(Code::Duplicate, name.span, format!("{what} `{}` is {verb} twice", name.node))
                    .with_secondary(*first, format!("first {verb} here")),
            );
            return false;
        }
        seen.insert(&name.node, name.span);
        true
    }

    fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

/// For each file, itself and every file it reaches through imports.
fn visibility(loaded: &Loaded) -> HashMap<FileId, HashSet<FileId>> {
    let mut out = HashMap::new();
    for file in &loaded.files {
        let mut seen = HashSet::from([file.id]);
        let mut stack = file.imports.clone();
        while let Some(next) = stack.pop() {
            if seen.insert(next) {
                if let Some(f) = loaded.get(next) {
                    stack.extend(f.imports.iter().copied());
                }
            }
        }
        out.insert(file.id, seen);
    }
    out
}
