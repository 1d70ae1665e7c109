//! A readable rendering of a [`Plan`], for `streamctl explain`.

use crate::check::function_name;
use crate::fmt::{format_duration, string};
use crate::plan::*;
use std::fmt::Write;

/// Renders the plan as text: what is decoded, how classifiers are matched,
/// and what each metric keys, aggregates and stores.
pub fn explain(plan: &Plan) -> String {
    let mut out = String::new();
    let rules: usize = plan.classifiers.iter().map(|c| c.rules.len()).sum();
    let _ =
        writeln!(out, "plan {} (language {}, plan format {})", plan.hash, plan.language_version, plan.format_version);
    let _ = writeln!(
        out,
        "{} source(s), {} classifier(s) with {rules} rule(s), {} metric(s), {} alert(s)",
        plan.sources.len(),
        plan.classifiers.len(),
        plan.metrics.len(),
        plan.alerts.len()
    );
    for source in &plan.sources {
        explain_source(&mut out, plan, source);
    }
    for classifier in &plan.classifiers {
        explain_classifier(&mut out, classifier);
    }
    for metric in &plan.metrics {
        explain_metric(&mut out, plan, metric);
    }
    for alert in &plan.alerts {
        let metric = &plan.metrics[alert.metric];
        let _ = writeln!(out, "\nalert {} on {}", alert.name, metric.name);
        let _ =
            writeln!(out, "  when {} for {}", expr(&alert.condition, &Names::Columns), format_duration(alert.for_ms));
        for (k, v) in &alert.labels {
            let _ = writeln!(out, "  label {k} = {}", string(v));
        }
        for (k, v) in &alert.annotations {
            let _ = writeln!(out, "  annotation {k} = {}", string(v));
        }
    }
    out
}

fn explain_source(out: &mut String, plan: &Plan, source: &SourcePlan) {
    let _ = writeln!(out, "\nsource {}", source.name);
    let event_time = source.fields[source.event_time].path.join(".");
    let _ = writeln!(
        out,
        "  topic {}, format json, event time {event_time}, max_future {}",
        string(&source.topic),
        format_duration(source.max_future_ms)
    );
    if let Some(dnsbl) = &source.dnsbl {
        explain_dnsbl(out, dnsbl);
    }
    let used: Vec<String> =
        source.fields.iter().filter(|f| f.is_used).map(|f| format!("{} {}", f.path.join("."), f.ty)).collect();
    let _ = writeln!(out, "  decodes {} of {} fields: {}", used.len(), source.fields.len(), used.join(", "));
    if !source.classifications.is_empty() {
        let _ = writeln!(out, "  classifications, each computed once per event:");
        let names = Names::Source(source);
        for (i, c) in source.classifications.iter().enumerate() {
            let args: Vec<String> = c.args.iter().map(|a| expr(a, &names)).collect();
            let _ = writeln!(out, "    #{i} {}({})", plan.classifiers[c.classifier].name, args.join(", "));
        }
    }
}

fn explain_dnsbl(out: &mut String, dnsbl: &DnsblPlan) {
    let _ = writeln!(
        out,
        "  dnsbl: one sweep per {} slot, {} target spec(s): {}",
        format_duration(dnsbl.every_ms),
        dnsbl.targets.len(),
        dnsbl.targets.join(", ")
    );
    for from in &dnsbl.targets_from {
        let _ = writeln!(
            out,
            "    and, each sweep, the `{}` values of `{}` rows from the last {} (at most the source's target limit)",
            from.key,
            from.metric,
            format_duration(from.within_ms)
        );
    }
    for list in &dnsbl.lists {
        let kind = match list.kind {
            DnsblKind::Ip => "ip",
            DnsblKind::Domain => "domain",
        };
        let per_day = list.max_per_day.map_or("unlimited".to_string(), |d| d.to_string());
        let _ = writeln!(
            out,
            "    list {} zone {} ({kind}), weight {}, max {} query/s, {per_day} a day{}",
            list.name,
            string(&list.zone),
            list.weight,
            list.max_qps,
            list.key_env.as_ref().map_or(String::new(), |k| format!(", key from ${k}")),
        );
        if !list.codes.is_empty() {
            let codes: Vec<String> = list.codes.iter().map(|(c, m)| format!("{c}={m}")).collect();
            let _ = writeln!(out, "      codes {}", codes.join(" "));
        }
    }
}

fn explain_classifier(out: &mut String, classifier: &ClassifierPlan) {
    let params: Vec<String> = classifier.params.iter().map(|p| format!("{}: {}", p.name, p.ty)).collect();
    let _ = writeln!(out, "\nclassifier {}({})", classifier.name, params.join(", "));
    for (i, m) in classifier.matchers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  matcher m{i}: {} against {} pattern(s) in one set",
            classifier.params[m.param].name,
            m.patterns.len()
        );
    }
    let names = Names::Classifier(classifier);
    for (i, rule) in classifier.rules.iter().enumerate() {
        let o = &rule.outcome;
        let _ = writeln!(out, "  {:>3}. {} reason {} {}", i + 1, o.category, o.reason, o.kind.name());
        let _ = writeln!(out, "       when {}", expr(&rule.condition, &names));
    }
    let d = &classifier.default;
    let _ = writeln!(out, "  default {} reason {} {}", d.category, d.reason, d.kind.name());
}

fn explain_metric(out: &mut String, plan: &Plan, metric: &MetricPlan) {
    let source = &plan.sources[metric.source];
    let names = Names::Source(source);
    let _ = writeln!(out, "\nmetric {} [{}]", metric.name, &metric.hash[..16]);
    let _ = write!(out, "  from {}", source.name);
    match &metric.filter {
        Some(f) => {
            let _ = writeln!(out, " where {}", expr(f, &names));
        }
        None => out.push('\n'),
    }
    for key in &metric.keys {
        let _ = writeln!(out, "  key {} {} = {}", key.name, key.ty, expr(&key.expr, &names));
    }
    for agg in &metric.aggregates {
        let function =
            serde_json::to_value(agg.function).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let arg = agg.arg.as_ref().map(|a| expr(a, &names)).unwrap_or_default();
        let arg = match agg.quantile {
            Some(q) => format!("{arg}, {q}"),
            None => arg,
        };
        let _ = writeln!(out, "  aggregate {} {} = {function}({arg})", agg.name, agg.ty);
    }
    for d in &metric.derived {
        let _ = writeln!(out, "  derived {} {} = {} (at read time)", d.name, d.ty, expr(&d.expr, &Names::Columns));
    }
    let tiers: Vec<String> =
        metric.tiers.iter().map(|t| format!("{} keep {}", t.name, format_duration(t.retention_ms))).collect();
    let _ = writeln!(
        out,
        "  window {}, lateness {}",
        format_duration(metric.window_ms),
        format_duration(metric.lateness_ms)
    );
    let _ = writeln!(out, "  tiers {}", tiers.join(" -> "));
    let _ = writeln!(
        out,
        "  table {}, cardinality limit {}{}",
        metric.table,
        metric.cardinality_limit,
        if metric.export_prometheus { ", export prometheus" } else { "" }
    );
}

/// A condition of `classifier` (a rule's, or a part of one) as text, with
/// parameter and matcher names resolved, as `streamctl explain` prints it.
pub fn classifier_condition(classifier: &ClassifierPlan, condition: &Expr) -> String {
    expr(condition, &Names::Classifier(classifier))
}

/// What indices in an expression refer to.
enum Names<'p> {
    Source(&'p SourcePlan),
    Classifier(&'p ClassifierPlan),
    Columns,
}

fn expr(e: &Expr, names: &Names<'_>) -> String {
    match e {
        Expr::Literal(v) => match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format!("{f:?}"),
            Value::String(s) => string(s),
            Value::Duration(d) => format_duration(*d),
        },
        Expr::Field(i) => match names {
            Names::Source(s) => s.fields[*i].path.join("."),
            _ => format!("field#{i}"),
        },
        Expr::Meta(m) => format!("kafka.{}", m.name()),
        Expr::Param(i) => match names {
            Names::Classifier(c) => c.params[*i].name.clone(),
            _ => format!("param#{i}"),
        },
        Expr::Classify { classification, output } => format!("classification#{classification}.{}", output.name()),
        Expr::MatcherHit { matcher, pattern } => match names {
            Names::Classifier(c) => {
                let m = &c.matchers[*matcher];
                format!("m{matcher}[{pattern}] /{}/ on {}", m.patterns[*pattern], c.params[m.param].name)
            }
            _ => format!("m{matcher}[{pattern}]"),
        },
        Expr::Column(name) => name.clone(),
        Expr::Not(inner) => format!("not {}", expr(inner, names)),
        Expr::Neg(inner) => format!("-{}", expr(inner, names)),
        Expr::Binary { op, lhs, rhs } => format!("({} {} {})", expr(lhs, names), op.symbol(), expr(rhs, names)),
        Expr::Regex { arg, pattern } => format!("{} ~ /{pattern}/", expr(arg, names)),
        Expr::In { arg, list } => {
            let items: Vec<String> = list.iter().map(|x| expr(x, names)).collect();
            format!("{} in [{}]", expr(arg, names), items.join(", "))
        }
        Expr::Case { arms, otherwise } => {
            let mut s = "case".to_string();
            for (c, v) in arms {
                let _ = write!(s, " when {} then {}", expr(c, names), expr(v, names));
            }
            if let Some(o) = otherwise {
                let _ = write!(s, " else {}", expr(o, names));
            }
            s + " end"
        }
        Expr::Call { function, args } => {
            let args: Vec<String> = args.iter().map(|x| expr(x, names)).collect();
            format!("{}({})", function_name(*function), args.join(", "))
        }
    }
}
