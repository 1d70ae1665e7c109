//! Metrics (filter, keys, aggregates, windows, tiers, storage, export) and alerts.

use super::expr::{Scope, Ty, AGGREGATES};
use super::{Checker, DefKind, RESERVED_COLUMNS};
use crate::ast::{self, Clause, ExprKind};
use crate::codes::Code;
use crate::diagnostic::{closest, Diagnostic};
use crate::fmt::format_duration;
use crate::plan::*;
use crate::span::{Span, Spanned};
use std::collections::HashMap;

/// Retention of the finest tier when `into table … ttl` is not given.
pub const DEFAULT_TTL_MS: u64 = 7 * 86_400_000;
/// Live series per window when `cardinality limit` is not given.
pub const DEFAULT_CARDINALITY_LIMIT: u64 = 100_000;
/// The largest cardinality limit accepted.
pub const MAX_CARDINALITY_LIMIT: u64 = 10_000_000;
/// The largest lateness accepted.
pub const MAX_LATENESS_MS: u64 = 7 * 86_400_000;
const DAY_MS: u64 = 86_400_000;

/// The clauses of one metric, at most one of each.
#[derive(Default)]
struct Clauses<'a> {
    filter: Option<&'a ast::Expr>,
    group_by: Option<&'a [ast::NamedExpr]>,
    compute: Option<(&'a [ast::NamedExpr], Span)>,
    window: Option<(&'a Spanned<ast::Duration>, Option<&'a Spanned<ast::Duration>>)>,
    rollup: Option<&'a [ast::RollupTier]>,
    into: Option<(&'a ast::Ident, Option<&'a Spanned<ast::Duration>>)>,
    cardinality: Option<&'a Spanned<u64>>,
    export: Option<&'a ast::Ident>,
}

impl Checker<'_> {
    fn clauses<'m>(&mut self, metric: &'m ast::Metric) -> Clauses<'m> {
        let mut clauses = Clauses::default();
        let mut first_of: HashMap<&'static str, Span> = HashMap::new();
        for clause in &metric.clauses {
            let keyword = clause.keyword();
            if let Some(first) = first_of.get(keyword) {
                self.report(
                    Diagnostic::error(Code::DuplicateClause, clause.span, format!("`{keyword}` is given twice"))
                        .with_label("second one")
                        .with_secondary(*first, "first one")
                        .with_help(match keyword {
                            "where" => "combine the conditions with `and`",
                            _ => "merge the two into one clause",
                        }),
                );
                continue;
            }
            first_of.insert(keyword, clause.span);
            match &clause.node {
                Clause::Where(e) => clauses.filter = Some(e),
                Clause::GroupBy(items) => clauses.group_by = Some(items),
                Clause::Compute(items) => clauses.compute = Some((items, clause.span)),
                Clause::Window { width, lateness } => clauses.window = Some((width, lateness.as_ref())),
                Clause::Rollup(tiers) => clauses.rollup = Some(tiers),
                Clause::Into { table, ttl } => clauses.into = Some((table, ttl.as_ref())),
                Clause::Cardinality(limit) => clauses.cardinality = Some(limit),
                Clause::Export(target) => clauses.export = Some(target),
            }
        }
        clauses
    }

    pub(crate) fn check_metric(&mut self, metric: &ast::Metric) -> Option<MetricPlan> {
        let errors_before = self.error_count();
        let clauses = self.clauses(metric);
        let source = self.lookup(&metric.source, DefKind::Source, Code::UnknownSource);

        let mut columns: HashMap<String, Span> = HashMap::new();
        let mut filter = None;
        let mut keys = Vec::new();
        let mut aggregates = Vec::new();
        let mut derived = Vec::new();
        if let Some(source) = source {
            let scope = Scope::Source { source, in_compute: false };
            if let Some(e) = clauses.filter {
                filter = self.predicate(e, &scope, "the `where` condition");
            }
            for item in clauses.group_by.unwrap_or_default() {
                let Some(name) = self.column_name(item, None, &mut columns) else { continue };
                if let Some((expr, ty)) = self.value(&item.expr, &scope) {
                    keys.push(KeyPlan { name, expr, ty: ty.or(Scalar::String) });
                }
            }
            if let Some((items, _)) = clauses.compute {
                self.compute(source, items, &mut columns, &mut aggregates, &mut derived);
            }
        }
        if clauses.compute.is_none() {
            self.report(
                Diagnostic::error(
                    Code::MissingClause,
                    metric.name.span,
                    format!("metric `{}` has no `compute` clause", metric.name.node),
                )
                .with_help("add what to aggregate, e.g. `compute count() as events`"),
            );
        }
        let window_errors = self.error_count();
        let (window_ms, lateness_ms) = self.window(metric, clauses.window);
        let ttl = clauses.into.and_then(|(_, ttl)| ttl);
        // Tiers are checked against the window; a bad window would only make them fail too.
        let rollups = if self.error_count() > window_errors { &[][..] } else { clauses.rollup.unwrap_or_default() };
        let tiers = self.tiers(window_ms, ttl, rollups);
        let table = clauses.into.map_or_else(|| metric.name.node.clone(), |(t, _)| t.node.clone());
        if let Some((table_name, _)) = clauses.into {
            self.check_name_not_reserved(table_name, "table");
        }
        let cardinality_limit = match clauses.cardinality {
            None => DEFAULT_CARDINALITY_LIMIT,
            Some(limit) if (1..=MAX_CARDINALITY_LIMIT).contains(&limit.node) => limit.node,
            Some(limit) => {
                self.report(
                    Diagnostic::error(Code::BadCardinality, limit.span, "cardinality limit out of range")
                        .with_label(format!("must be from 1 to {MAX_CARDINALITY_LIMIT}")),
                );
                DEFAULT_CARDINALITY_LIMIT
            }
        };
        let export_prometheus = match clauses.export {
            None => false,
            Some(target) if target.node == "prometheus" => true,
            Some(target) => {
                self.report(
                    Diagnostic::error(
                        Code::UnknownExport,
                        target.span,
                        format!("unknown export target `{}`", target.node),
                    )
                    .with_help("the supported target is `prometheus`"),
                );
                false
            }
        };
        if self.error_count() > errors_before {
            return None;
        }
        Some(MetricPlan {
            name: metric.name.node.clone(),
            hash: String::new(),
            source: source?,
            filter,
            keys,
            aggregates,
            derived,
            window_ms,
            lateness_ms,
            tiers,
            table,
            cardinality_limit,
            export_prometheus,
        })
    }

    /// The column name of a `group by` or `compute` item: its alias, or one
    /// derived from a plain field, member or single-field aggregate.
    fn column_name(
        &mut self,
        item: &ast::NamedExpr,
        aggregate: Option<&str>,
        columns: &mut HashMap<String, Span>,
    ) -> Option<String> {
        let (name, span) = match &item.alias {
            Some(alias) => {
                if !self.check_name_not_reserved(alias, "column") {
                    return None;
                }
                (alias.node.clone(), alias.span)
            }
            None => {
                let implied = match (&item.expr.node, aggregate) {
                    (ExprKind::Name(n), None) => Some(n.clone()),
                    (ExprKind::Member(_, m), None) => Some(m.node.clone()),
                    (ExprKind::Call(f, args), Some(_)) if args.is_empty() => Some(f.node.clone()),
                    (ExprKind::Call(f, args), Some(_)) if args.len() == 1 => match &args[0].node {
                        ExprKind::Name(n) => Some(format!("{}_{n}", f.node)),
                        ExprKind::Member(_, m) => Some(format!("{}_{}", f.node, m.node)),
                        _ => None,
                    },
                    _ => None,
                };
                match implied {
                    Some(n) => (n, item.expr.span),
                    None => {
                        self.report(
                            Diagnostic::error(Code::UnnamedKey, item.expr.span, "this column needs a name")
                                .with_label("add `as <name>` after it")
                                .with_note("plain fields and members name themselves; other expressions do not"),
                        );
                        return None;
                    }
                }
            }
        };
        if RESERVED_COLUMNS.contains(&name.as_str()) {
            self.report(
                Diagnostic::error(Code::Reserved, span, format!("column name `{name}` is reserved"))
                    .with_note(format!("every row already has {}", RESERVED_COLUMNS.join(", ")))
                    .with_help("rename it with `as <name>`"),
            );
            return None;
        }
        if let Some(first) = columns.get(&name) {
            self.report(
                Diagnostic::error(Code::Duplicate, span, format!("column `{name}` is defined twice"))
                    .with_secondary(*first, "first defined here")
                    .with_help("rename one with `as <name>`"),
            );
            return None;
        }
        columns.insert(name.clone(), span);
        Some(name)
    }

    fn compute(
        &mut self,
        source: usize,
        items: &[ast::NamedExpr],
        columns: &mut HashMap<String, Span>,
        aggregates: &mut Vec<AggregatePlan>,
        derived: &mut Vec<DerivedPlan>,
    ) {
        let scope = Scope::Source { source, in_compute: true };
        let mut derived_items = Vec::new();
        for item in items {
            let call = match &item.expr.node {
                ExprKind::Call(f, args) if AGGREGATES.contains(&f.node.as_str()) => Some((f, args)),
                _ => None,
            };
            let Some((function, args)) = call else {
                derived_items.push(item);
                continue;
            };
            let Some(name) = self.column_name(item, Some(&function.node), columns) else { continue };
            if let Some(plan) = self.aggregate(name, function, args, item.expr.span, &scope) {
                aggregates.push(plan);
            }
        }
        let aggregate_columns: Vec<(String, Type)> = aggregates.iter().map(|a| (a.name.clone(), a.ty)).collect();
        let derived_names: Vec<(String, Type)> = derived_items
            .iter()
            .filter_map(|i| i.alias.as_ref().map(|a| (a.node.clone(), Type::of(Scalar::Float))))
            .collect();
        for item in derived_items {
            if mentions_any(&item.expr, &derived_names) {
                self.report(
                    Diagnostic::error(
                        Code::NotAggregate,
                        item.expr.span,
                        "a derived column cannot use another derived column",
                    )
                    .with_help("write the expression over the aggregates themselves"),
                );
                continue;
            }
            let mentions_column = mentions_any(&item.expr, &aggregate_columns);
            if !mentions_column {
                let what = match &item.expr.node {
                    ExprKind::Name(n) => format!("`{n}` is not an aggregate"),
                    ExprKind::Call(f, _) => format!("`{}` is not an aggregate", f.node),
                    _ => "this is not an aggregate".to_string(),
                };
                // A misspelt aggregate (`cout(…)`) is most likely meant.
                let meant = match &item.expr.node {
                    ExprKind::Call(f, _) => closest(&f.node, AGGREGATES.iter().copied()),
                    _ => None,
                };
                let help = match meant {
                    Some(aggregate) => format!("did you mean `{aggregate}`?"),
                    None => "to split rows by this value, put it in `group by`; to summarise it, aggregate it, e.g. `max(…)`"
                        .to_string(),
                };
                self.report(
                    Diagnostic::error(Code::NotAggregate, item.expr.span, what)
                        .with_label("`compute` takes aggregates, or arithmetic over them")
                        .with_help(help),
                );
                continue;
            }
            let Some(name) = self.column_name(item, None, columns) else { continue };
            let columns_scope = Scope::Columns { columns: &aggregate_columns, what: "a derived column" };
            if let Some((expr, ty)) = self.value(&item.expr, &columns_scope) {
                derived.push(DerivedPlan { name, expr, ty: ty.or(Scalar::Float) });
            }
        }
    }

    fn aggregate(
        &mut self,
        name: String,
        function: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        scope: &Scope<'_>,
    ) -> Option<AggregatePlan> {
        use Scalar::*;
        let fname = function.node.as_str();
        let (aggregate, quantile) = match fname {
            "count" => (AggregateFn::Count, None),
            "count_if" => (AggregateFn::CountIf, None),
            "sum" => (AggregateFn::Sum, None),
            "min" => (AggregateFn::Min, None),
            "max" => (AggregateFn::Max, None),
            "avg" => (AggregateFn::Avg, None),
            "first" => (AggregateFn::First, None),
            "last" => (AggregateFn::Last, None),
            "distinct" => (AggregateFn::Distinct, None),
            "quantile" => (AggregateFn::Quantile, None),
            "p50" => (AggregateFn::Quantile, Some(0.5)),
            "p90" => (AggregateFn::Quantile, Some(0.9)),
            "p95" => (AggregateFn::Quantile, Some(0.95)),
            "p99" => (AggregateFn::Quantile, Some(0.99)),
            "p999" => (AggregateFn::Quantile, Some(0.999)),
            _ => unreachable!("caller checked the name is an aggregate"),
        };
        let expected_args = match (aggregate, quantile) {
            (AggregateFn::Count, _) => 0,
            (AggregateFn::Quantile, None) => 2,
            _ => 1,
        };
        if args.len() != expected_args {
            let mut d = Diagnostic::error(
                Code::ArgumentCount,
                span,
                format!(
                    "`{fname}` takes {expected_args} argument{}, not {}",
                    if expected_args == 1 { "" } else { "s" },
                    args.len()
                ),
            );
            if aggregate == AggregateFn::Count {
                d = d.with_help("to count events where a value is set, use `count_if(x != null)`");
            } else if aggregate == AggregateFn::Quantile {
                d = d.with_help("write e.g. `quantile(latency_ms, 0.99)`");
            }
            self.report(d);
            return None;
        }
        let quantile = if aggregate == AggregateFn::Quantile && quantile.is_none() {
            let q = match &args[1].node {
                ExprKind::Float(q) if *q > 0.0 && *q < 1.0 => *q,
                _ => {
                    self.report(
                        Diagnostic::error(
                            Code::ExpectedLiteral,
                            args[1].span,
                            "the quantile must be a number literal between 0 and 1",
                        )
                        .with_help("write e.g. `0.99` for the 99th percentile"),
                    );
                    return None;
                }
            };
            Some(q)
        } else {
            quantile
        };
        let (arg, arg_ty) = match args.first() {
            Some(a) => {
                let (e, t) = self.value(a, scope)?;
                (Some(e), t)
            }
            None => (None, Ty::Known(Type::of(Int))),
        };
        let arg_span = args.first().map_or(span, |a| a.span);
        let what = format!("`{fname}`");
        let ty = match aggregate {
            AggregateFn::Count => Type::of(Int),
            AggregateFn::CountIf => {
                self.expect(arg_ty, &[Bool], arg_span, &what)?;
                Type::of(Int)
            }
            AggregateFn::Sum => {
                self.expect(arg_ty, &[Int, Float], arg_span, &what)?;
                Type::of(arg_ty.or(Int).scalar)
            }
            AggregateFn::Min | AggregateFn::Max => {
                self.expect(arg_ty, &[Int, Float, Timestamp, Duration, String], arg_span, &what)?;
                arg_ty.or(Int).with_nullable(true)
            }
            AggregateFn::Avg => {
                self.expect(arg_ty, &[Int, Float], arg_span, &what)?;
                Type { scalar: Float, nullable: true }
            }
            AggregateFn::First | AggregateFn::Last => arg_ty.or(String).with_nullable(true),
            AggregateFn::Distinct => Type::of(Int),
            AggregateFn::Quantile => {
                self.expect(arg_ty, &[Int, Float], arg_span, &what)?;
                Type { scalar: Float, nullable: true }
            }
        };
        Some(AggregatePlan { name, function: aggregate, arg, quantile, ty })
    }

    fn window(
        &mut self,
        metric: &ast::Metric,
        window: Option<(&Spanned<ast::Duration>, Option<&Spanned<ast::Duration>>)>,
    ) -> (u64, u64) {
        let Some((width, lateness)) = window else {
            self.report(
                Diagnostic::error(
                    Code::MissingClause,
                    metric.name.span,
                    format!("metric `{}` has no `window` clause", metric.name.node),
                )
                .with_help("add the aggregation window, e.g. `window 1m, lateness 2m`"),
            );
            return (60_000, 0);
        };
        let w = width.node.as_millis();
        let is_aligned = w >= 1000 && w.is_multiple_of(1000) && (DAY_MS.is_multiple_of(w) || w.is_multiple_of(DAY_MS));
        if !is_aligned {
            self.report(
                Diagnostic::error(
                    Code::BadWindow,
                    width.span,
                    format!("a `{}` window does not line up with days", format_duration(w)),
                )
                .with_note("windows are whole seconds that divide a day (e.g. 10s, 1m, 5m, 15m, 1h) or whole days")
                .with_help("pick a width such as `1m` or `5m`"),
            );
        }
        let lateness_ms = lateness.map_or(0, |l| l.node.as_millis());
        if let Some(l) = lateness {
            if lateness_ms > MAX_LATENESS_MS {
                self.report(
                    Diagnostic::error(Code::BadWindow, l.span, "lateness is too large")
                        .with_label(format!("the limit is {}", format_duration(MAX_LATENESS_MS)))
                        .with_note("open windows are kept in memory until the lateness has passed"),
                );
            }
        }
        (w, lateness_ms)
    }

    fn tiers(
        &mut self,
        window_ms: u64,
        ttl: Option<&Spanned<ast::Duration>>,
        rollups: &[ast::RollupTier],
    ) -> Vec<TierPlan> {
        let base_retention = ttl.map_or(DEFAULT_TTL_MS.max(window_ms), |t| t.node.as_millis());
        if let Some(ttl) = ttl {
            if base_retention < window_ms {
                self.report(
                    Diagnostic::error(Code::BadRetention, ttl.span, "the ttl is shorter than the window").with_label(
                        format!("rows would expire before their {} window closes", format_duration(window_ms)),
                    ),
                );
            }
        }
        let mut tiers =
            vec![TierPlan { name: format_duration(window_ms), width_ms: window_ms, retention_ms: base_retention }];
        for tier in rollups {
            let width = tier.width.node.as_millis();
            let previous = tiers.last().map_or(window_ms, |t| t.width_ms);
            if width <= previous || previous == 0 || width % previous != 0 {
                self.report(
                    Diagnostic::error(
                        Code::BadRollup,
                        tier.width.span,
                        format!(
                            "a `{}` tier cannot be built from `{}` windows",
                            format_duration(width),
                            format_duration(previous)
                        ),
                    )
                    .with_label(format!("must be a larger multiple of {}", format_duration(previous)))
                    .with_note("each tier merges whole windows of the tier before it"),
                );
                continue;
            }
            if !(DAY_MS.is_multiple_of(width) || width.is_multiple_of(DAY_MS)) {
                self.report(
                    Diagnostic::error(
                        Code::BadRollup,
                        tier.width.span,
                        format!("a `{}` tier does not line up with days", format_duration(width)),
                    )
                    .with_note("tiers are widths that divide a day (e.g. 1h, 6h) or whole days"),
                );
                continue;
            }
            let keep = tier.keep.node.as_millis();
            if keep < width {
                self.report(
                    Diagnostic::error(Code::BadRetention, tier.keep.span, "retention is shorter than the tier")
                        .with_label(format!("keeps less than one {} row", format_duration(width))),
                );
                continue;
            }
            tiers.push(TierPlan { name: format_duration(width), width_ms: width, retention_ms: keep });
        }
        tiers
    }

    pub(crate) fn check_alert(&mut self, alert: &ast::Alert) -> Option<AlertPlan> {
        let errors_before = self.error_count();
        let metric_index = self.lookup(&alert.metric, DefKind::Metric, Code::UnknownMetric)?;
        // A metric that failed to check has no plan; its errors are already reported.
        let metric = self.metric_plans.get(metric_index)?.clone()?;
        if !metric.export_prometheus {
            self.report(
                Diagnostic::error(
                    Code::MissingClause,
                    alert.metric.span,
                    format!("metric `{}` is not exported", metric.name),
                )
                .with_label("alerts are evaluated by Prometheus over exported series")
                .with_help(format!("add `export prometheus` to metric `{}`", metric.name)),
            );
        }
        let columns: Vec<(String, Type)> = metric
            .keys
            .iter()
            .map(|k| (k.name.clone(), k.ty))
            .chain(metric.aggregates.iter().map(|a| (a.name.clone(), a.ty)))
            .chain(metric.derived.iter().map(|d| (d.name.clone(), d.ty)))
            .collect();
        let scope = Scope::Columns { columns: &columns, what: "an alert condition" };
        let condition = self.predicate(&alert.condition, &scope, "an alert condition");
        for entries in [&alert.labels, &alert.annotations] {
            let mut seen: HashMap<&str, Span> = HashMap::new();
            for (key, _) in entries {
                if let Some(first) = seen.insert(&key.node, key.span) {
                    self.report(
                        Diagnostic::error(Code::Duplicate, key.span, format!("`{}` is given twice", key.node))
                            .with_secondary(first, "first given here"),
                    );
                }
            }
        }
        if self.error_count() > errors_before {
            return None;
        }
        let pairs = |entries: &[(ast::Ident, Spanned<String>)]| {
            entries.iter().map(|(k, v)| (k.node.clone(), v.node.clone())).collect()
        };
        Some(AlertPlan {
            name: alert.name.node.clone(),
            metric: metric_index,
            condition: condition?,
            for_ms: alert.for_duration.as_ref().map_or(0, |d| d.node.as_millis()),
            labels: pairs(&alert.labels),
            annotations: pairs(&alert.annotations),
        })
    }
}

/// Whether `expr` names any of `columns` (outside call names).
fn mentions_any(expr: &ast::Expr, columns: &[(String, Type)]) -> bool {
    match &expr.node {
        ExprKind::Name(n) => columns.iter().any(|(c, _)| c == n),
        ExprKind::Member(base, _) => mentions_any(base, columns),
        ExprKind::Call(_, args) => args.iter().any(|a| mentions_any(a, columns)),
        ExprKind::Unary(_, a) => mentions_any(a, columns),
        ExprKind::Binary(_, a, b) => mentions_any(a, columns) || mentions_any(b, columns),
        ExprKind::Match { expr, .. } => mentions_any(expr, columns),
        ExprKind::In { expr, list, .. } => mentions_any(expr, columns) || list.iter().any(|e| mentions_any(e, columns)),
        ExprKind::Case { arms, otherwise } => {
            arms.iter().any(|(c, v)| mentions_any(c, columns) || mentions_any(v, columns))
                || otherwise.as_ref().is_some_and(|o| mentions_any(o, columns))
        }
        _ => false,
    }
}
