//! PromQL over the series that `export prometheus` serves (named by
//! `engine::export`), shared by the generated alert rules and dashboards so
//! that both ask Prometheus the same questions.
//!
//! A column's value per key is:
//! * a counter column: `sum by (KEYS) (increase(stream_M_C_total[R]))`, its
//!   count over the last window width `R` (at least `1m`, so a range holds
//!   several scrapes), summed over instances: each instance counts its own
//!   partitions, so the sum is the whole topic;
//! * a derived column made of counter columns, literals, arithmetic and
//!   `abs`/`round`/`floor`/`ceil`: the same expression over those counter
//!   expressions, which stays exact across instances (a ratio of sums);
//! * any other column: `max by (KEYS) (stream_M_C)`, the current window's
//!   gauge; with several instances each sees only its share of the
//!   partitions, and the largest share is the conservative reading.
//!
//! Alert conditions become vector expressions that hold one element per
//! offending key: comparisons filter, `and`/`or` are set intersection and
//! union on the key labels, `not` subtracts from the metric's keys.
//! Conditions on group-by columns become label matchers: pushed into every
//! selector when they are top-level conjuncts, the metric's key set
//! restricted by them otherwise. The value of the first comparison is the
//! alert's `$value`.

use anyhow::{bail, Result};
use dsl::ast::BinaryOp;
use dsl::plan::{Expr, Function, MetricPlan, Value};
use engine::export::{exported_columns, label_value, ColumnSource, ExportedColumn, SeriesKind};
use engine::KeyVal;

/// Shortest range for `increase()`: a few scrapes at the usual 15s interval.
const MIN_RANGE_MS: u64 = 60_000;

/// A label matcher such as `provider!="gmail"`.
#[derive(Debug, Clone, PartialEq)]
struct Matcher {
    label: String,
    op: &'static str,
    value: String,
}

impl Matcher {
    fn negated(mut self) -> Matcher {
        self.op = match self.op {
            "=" => "!=",
            "!=" => "=",
            "=~" => "!~",
            _ => "=~",
        };
        self
    }

    fn render(&self) -> String {
        format!("{}{}{}", self.label, self.op, quote(&self.value))
    }
}

/// A PromQL string literal. PromQL reads Go's escapes, which include every
/// escape JSON writes.
pub fn quote(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// PromQL for one exported metric.
pub struct MetricQueries<'p> {
    metric: &'p MetricPlan,
    columns: Vec<ExportedColumn>,
    range: String,
}

impl<'p> MetricQueries<'p> {
    /// Queries over `metric`'s exported series.
    pub fn new(metric: &'p MetricPlan) -> Self {
        let range = dsl::fmt::format_duration(metric.window_ms.max(MIN_RANGE_MS));
        MetricQueries { metric, columns: exported_columns(metric), range }
    }

    /// The `by (…)` clause over the group-by columns; empty without keys.
    fn by(&self) -> String {
        if self.metric.keys.is_empty() {
            String::new()
        } else {
            let keys: Vec<&str> = self.metric.keys.iter().map(|k| k.name.as_str()).collect();
            format!(" by ({})", keys.join(", "))
        }
    }

    fn selector(series: &str, matchers: &[Matcher]) -> String {
        if matchers.is_empty() {
            series.to_string()
        } else {
            let inner: Vec<String> = matchers.iter().map(Matcher::render).collect();
            format!("{series}{{{}}}", inner.join(", "))
        }
    }

    /// The exported columns.
    pub fn columns(&self) -> &[ExportedColumn] {
        &self.columns
    }

    /// The value of exported column `name` per key, with every group-by
    /// column matched against the dashboard variable of the same name
    /// (`provider=~"$provider"`).
    pub fn column_for_dashboard(&self, name: &str) -> Result<String> {
        self.column_for_variables(name, |key| key.to_string())
    }

    /// [`Self::column_for_dashboard`], with each group-by column matched
    /// against the dashboard variable `variable(column)` instead.
    pub fn column_for_variables(&self, name: &str, variable: impl Fn(&str) -> String) -> Result<String> {
        let matchers: Vec<Matcher> = self
            .metric
            .keys
            .iter()
            .map(|k| Matcher { label: k.name.clone(), op: "=~", value: format!("${}", variable(&k.name)) })
            .collect();
        self.column_with(name, &matchers)
    }

    fn column_with(&self, name: &str, matchers: &[Matcher]) -> Result<String> {
        let Some(column) = self.columns.iter().find(|c| c.column == name) else {
            bail!("column `{name}` of metric `{}` is not exported (string columns have no series)", self.metric.name);
        };
        if let ColumnSource::Derived(i) = column.source {
            if let Some(expanded) = self.expand_counters(&self.metric.derived[i].expr, matchers) {
                return Ok(expanded);
            }
        }
        Ok(self.series_value(column, matchers))
    }

    fn series_value(&self, column: &ExportedColumn, matchers: &[Matcher]) -> String {
        let selector = Self::selector(&column.series, matchers);
        match column.kind {
            SeriesKind::Counter => format!("sum{} (increase({selector}[{}]))", self.by(), self.range),
            SeriesKind::Gauge => format!("max{} ({selector})", self.by()),
        }
    }

    /// A derived column's expression over counter expressions, if it uses
    /// only counter columns and operations PromQL has.
    fn expand_counters(&self, expr: &Expr, matchers: &[Matcher]) -> Option<String> {
        Some(match expr {
            Expr::Literal(value) => number(value)?,
            Expr::Column(name) => {
                let column = self.columns.iter().find(|c| &c.column == name)?;
                if column.kind != SeriesKind::Counter {
                    return None;
                }
                self.series_value(column, matchers)
            }
            Expr::Neg(e) => format!("-({})", self.expand_counters(e, matchers)?),
            Expr::Binary { op, lhs, rhs } if is_arithmetic(*op) => {
                let (l, r) = (self.expand_counters(lhs, matchers)?, self.expand_counters(rhs, matchers)?);
                if *op == BinaryOp::Div && !matches!(**rhs, Expr::Literal(_)) {
                    // The language makes x / 0 null; PromQL makes it ±Inf or
                    // NaN. Dropping zero divisors drops the key instead.
                    format!("({l} / ({r} != 0))")
                } else {
                    format!("({l} {} {r})", op.symbol())
                }
            }
            Expr::Call { function, args } if args.len() == 1 => {
                let name = match function {
                    Function::Abs => "abs",
                    Function::Round => "round",
                    Function::Floor => "floor",
                    Function::Ceil => "ceil",
                    _ => return None,
                };
                format!("{name}({})", self.expand_counters(&args[0], matchers)?)
            }
            _ => return None,
        })
    }

    /// The metric's keys (value 1 each), restricted by `matchers`.
    fn universe(&self, matchers: &[Matcher]) -> Result<String> {
        let Some(first) = self.columns.first() else {
            bail!("metric `{}` exports no numeric column", self.metric.name);
        };
        Ok(format!("group{} ({})", self.by(), Self::selector(&first.series, matchers)))
    }

    /// An alert condition as a PromQL vector expression.
    ///
    /// # Errors
    /// When the condition uses something PromQL cannot express over the
    /// exported series (a string aggregate, an ordering of group-by values, …).
    pub fn condition(&self, condition: &Expr) -> Result<String> {
        let conjuncts = condition.conjuncts();
        let mut matchers = Vec::new();
        let mut rest = Vec::new();
        for conjunct in conjuncts {
            match self.label_predicate(conjunct) {
                Some(mut m) => matchers.append(&mut m),
                None => rest.push(conjunct),
            }
        }
        if rest.is_empty() {
            return self.universe(&matchers);
        }
        let parts = rest.iter().map(|e| self.vector(e, &matchers)).collect::<Result<Vec<_>>>()?;
        Ok(parts.join(" and "))
    }

    /// A condition part as a vector expression, every selector restricted by `matchers`.
    fn vector(&self, expr: &Expr, matchers: &[Matcher]) -> Result<String> {
        if let Some(own) = self.label_predicate(expr) {
            let mut all = matchers.to_vec();
            all.extend(own);
            return self.universe(&all);
        }
        match expr {
            Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
                Ok(format!("({} and {})", self.vector(lhs, matchers)?, self.vector(rhs, matchers)?))
            }
            Expr::Binary { op: BinaryOp::Or, lhs, rhs } => {
                Ok(format!("({} or {})", self.vector(lhs, matchers)?, self.vector(rhs, matchers)?))
            }
            Expr::Not(inner) => Ok(format!("({} unless {})", self.universe(matchers)?, self.vector(inner, matchers)?)),
            Expr::Binary { op, lhs, rhs } if is_comparison(*op) => {
                Ok(format!("{} {} {}", self.value(lhs, matchers)?, op.symbol(), self.value(rhs, matchers)?))
            }
            other => bail!("`{}` cannot be expressed in PromQL", describe(other)),
        }
    }

    /// A numeric operand of a comparison.
    fn value(&self, expr: &Expr, matchers: &[Matcher]) -> Result<String> {
        match expr {
            Expr::Literal(value) => {
                number(value).ok_or_else(|| anyhow::anyhow!("the literal {value:?} is not a number"))
            }
            Expr::Column(name) => {
                if self.metric.keys.iter().any(|k| &k.name == name) {
                    bail!("group-by column `{name}` can only be compared for equality or matched in an alert");
                }
                self.column_with(name, matchers)
            }
            Expr::Neg(e) => Ok(format!("-({})", self.value(e, matchers)?)),
            Expr::Binary { op, lhs, rhs } if is_arithmetic(*op) => {
                Ok(format!("({} {} {})", self.value(lhs, matchers)?, op.symbol(), self.value(rhs, matchers)?))
            }
            other => bail!("`{}` cannot be expressed in PromQL", describe(other)),
        }
    }

    /// `Some(matchers)` when `expr` only tests group-by columns against
    /// literals (`==`, `!=`, `in`, `~`, their negations, and conjunctions).
    fn label_predicate(&self, expr: &Expr) -> Option<Vec<Matcher>> {
        let is_key = |e: &Expr| match e {
            Expr::Column(name) => self.metric.keys.iter().any(|k| &k.name == name).then(|| name.clone()),
            _ => None,
        };
        match expr {
            Expr::Binary { op: op @ (BinaryOp::Eq | BinaryOp::Ne), lhs, rhs } => {
                let (label, literal) = match (is_key(lhs), is_key(rhs), &**lhs, &**rhs) {
                    (Some(label), None, _, Expr::Literal(v)) | (None, Some(label), Expr::Literal(v), _) => (label, v),
                    _ => return None,
                };
                let op = if *op == BinaryOp::Eq { "=" } else { "!=" };
                Some(vec![Matcher { label, op, value: literal_label(literal) }])
            }
            Expr::In { arg, list } => {
                let label = is_key(arg)?;
                let mut alternatives = Vec::new();
                for item in list {
                    let Expr::Literal(v) = item else { return None };
                    alternatives.push(regex::escape(&literal_label(v)));
                }
                Some(vec![Matcher { label, op: "=~", value: alternatives.join("|") }])
            }
            Expr::Regex { arg, pattern } => {
                let label = is_key(arg)?;
                // Prometheus anchors label regexes; the language searches.
                Some(vec![Matcher { label, op: "=~", value: format!(".*(?:{pattern}).*") }])
            }
            Expr::Not(inner) => match self.label_predicate(inner) {
                Some(mut m) if m.len() == 1 => m.pop().map(|m| vec![m.negated()]),
                _ => None,
            },
            Expr::Binary { op: BinaryOp::And, lhs, rhs } => {
                match (self.label_predicate(lhs), self.label_predicate(rhs)) {
                    (Some(mut a), Some(b)) => {
                        a.extend(b);
                        Some(a)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Comparisons and arithmetic are written the same in PromQL as in the language.
fn is_comparison(op: BinaryOp) -> bool {
    matches!(op, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge)
}

fn is_arithmetic(op: BinaryOp) -> bool {
    matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem)
}

/// A numeric literal as PromQL; durations in milliseconds, as exported.
fn number(value: &Value) -> Option<String> {
    match value {
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) if f.is_finite() => Some(format!("{f:?}")),
        Value::Duration(ms) => Some(ms.to_string()),
        Value::Bool(b) => Some(u8::from(*b).to_string()),
        _ => None,
    }
}

/// A literal compared with a group-by column, as the label value it matches.
fn literal_label(value: &Value) -> String {
    let key = match value {
        Value::Null => KeyVal::Null,
        Value::Bool(b) => KeyVal::Bool(*b),
        Value::Int(i) => KeyVal::Int(*i),
        Value::Float(f) => KeyVal::Float(f.to_bits()),
        Value::String(s) => KeyVal::Str(s.as_str().into()),
        Value::Duration(ms) => KeyVal::Int(i64::try_from(*ms).unwrap_or(i64::MAX)),
    };
    label_value(&key)
}

/// A short description of an unsupported expression for error messages.
fn describe(expr: &Expr) -> String {
    match expr {
        Expr::Column(name) => name.clone(),
        Expr::Literal(v) => format!("{v:?}"),
        Expr::Call { function, .. } => format!("{function:?}(…)").to_lowercase(),
        Expr::Case { .. } => "case".into(),
        Expr::Regex { .. } => "a regex match on a computed value".into(),
        Expr::In { .. } => "an `in` test on a computed value".into(),
        Expr::Binary { op, .. } => format!("an `{}` operation here", op.symbol()),
        _ => "this expression".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(text: &str) -> MetricPlan {
        let source = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time, e: string, p: string, n: int? }\n";
        let compiled = dsl::compile_str("m.stream", &format!("{source}{text}"));
        assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
        std::sync::Arc::unwrap_or_clone(compiled.plan.expect("plan").metrics.remove(0))
    }

    const METRIC: &str = "metric m from s group by e, p compute count() as tries, count_if(e == \"x\") as xs, \
                          p99(n) as p99, avg(n) as mean, xs / tries as x_rate, mean / tries as odd window 5m export prometheus\n";

    fn condition(metric: &MetricPlan, text: &str) -> Result<String> {
        let source = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time, e: string, p: string, n: int? }\n";
        let compiled = dsl::compile_str("m.stream", &format!("{source}{METRIC}alert a on m when {text}\n"));
        assert!(!compiled.has_errors(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("plan");
        MetricQueries::new(metric).condition(&plan.alerts[0].condition)
    }

    #[test]
    fn counters_use_increase_over_the_window_and_gauges_the_largest_instance() {
        let m = metric(METRIC);
        let q = MetricQueries::new(&m);
        assert_eq!(q.column_with("tries", &[]).expect("tries"), "sum by (e, p) (increase(stream_m_tries_total[5m]))");
        assert_eq!(q.column_with("p99", &[]).expect("p99"), "max by (e, p) (stream_m_p99)");
        assert_eq!(
            q.column_with("x_rate", &[]).expect("ratio"),
            "(sum by (e, p) (increase(stream_m_xs_total[5m])) / (sum by (e, p) (increase(stream_m_tries_total[5m])) != 0))"
        );
        // A gauge inside a derived column: no exact expansion, use its own gauge.
        assert_eq!(q.column_with("odd", &[]).expect("odd"), "max by (e, p) (stream_m_odd)");
    }

    #[test]
    fn label_conditions_become_matchers_and_the_first_comparison_gives_the_value() {
        let m = metric(METRIC);
        assert_eq!(
            condition(&m, "x_rate > 0.1 and tries >= 100 and e != \"test\"").expect("condition"),
            "(sum by (e, p) (increase(stream_m_xs_total{e!=\"test\"}[5m])) / (sum by (e, p) (increase(stream_m_tries_total{e!=\"test\"}[5m])) != 0)) > 0.1 \
             and sum by (e, p) (increase(stream_m_tries_total{e!=\"test\"}[5m])) >= 100"
        );
        assert_eq!(
            condition(&m, "p in [\"a.b\", \"c\"] and not (e ~ /^x/) and p99 > 250").expect("condition"),
            "max by (e, p) (stream_m_p99{p=~\"a\\\\.b|c\", e!~\".*(?:^x).*\"}) > 250"
        );
    }

    #[test]
    fn nested_label_tests_and_not_use_the_key_set() {
        let m = metric(METRIC);
        assert_eq!(
            condition(&m, "tries > 5 or e == \"vip\"").expect("condition"),
            "(sum by (e, p) (increase(stream_m_tries_total[5m])) > 5 or group by (e, p) (stream_m_tries_total{e=\"vip\"}))"
        );
        assert_eq!(
            condition(&m, "not (mean < 3)").expect("condition"),
            "(group by (e, p) (stream_m_tries_total) unless max by (e, p) (stream_m_mean) < 3)"
        );
    }

    #[test]
    fn what_promql_cannot_say_is_an_error() {
        let m = metric(METRIC);
        let error = condition(&m, "e > \"m\" and tries > 1").expect_err("ordering labels");
        assert!(error.to_string().contains("group-by column `e`"), "{error}");
    }

    #[test]
    fn strings_are_quoted_as_promql_expects() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
