//! `streamctl dashboards`: Grafana dashboards generated from the pipelines,
//! one per pipeline file that defines metrics, plus one for `streamd`.
//!
//! A pipeline dashboard has a row per metric and a time-series panel per
//! exported column, queried with the same PromQL as the alert rules
//! ([`crate::promql`]); the group-by columns are the legend and template
//! variables. Alerts of the file are linked from the dashboard and from the
//! panels of the columns they test. A metric without `export prometheus`
//! gets a row saying so: its stored rows are in the query API, not in
//! Prometheus. A `dnsbl` source whose targets are taken from a metric of
//! the file (`targets from metric M key K`) gets a row on top putting each
//! target's listings beside `M`'s rates for the same key value, both
//! filtered by the variable `K`.
//!
//! The JSON follows Grafana's published dashboard schema (`@grafana/schema`,
//! `schemaVersion` [`SCHEMA_VERSION`]); the tests type-check it against it.

use crate::cli::GlobalArgs;
use crate::pipeline::{compile_by_file, PipelineFile};
use crate::promql::MetricQueries;
use anyhow::Context;
use dsl::plan::{AlertPlan, Expr, MetricPlan, Plan};
use engine::export::SeriesKind;
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

/// The dashboard JSON schema version of current Grafana releases.
pub const SCHEMA_VERSION: u32 = 42;

/// Panels per line of the grid (24 units wide).
const PANEL_WIDTH: u32 = 8;
const PANEL_HEIGHT: u32 = 8;

/// Generate Grafana dashboards: one per pipeline file, and one for streamd.
#[derive(clap::Args)]
pub struct Args {
    /// Pipeline files, or directories searched for `*.stream` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// Directory to write `<file>.json` dashboards and `streamd.json` into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: String,
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let Some((plan, files)) = compile_by_file(&args.paths)? else {
        return Ok(super::bad_pipelines());
    };
    let out = Path::new(&args.out);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let mut written = Vec::new();
    for file in files.iter().filter(|f| !f.metrics.is_empty()) {
        let dashboard = match pipeline_dashboard(&plan, file) {
            Ok(d) => d,
            Err(error) => {
                eprintln!("error: {}: {error:#}", file.path);
                return Ok(super::bad_pipelines());
            }
        };
        written.push(write(out, &stem(&file.path), &dashboard)?);
    }
    written.push(write(out, "streamd", &streamd_dashboard())?);
    eprintln!("wrote {} dashboards to {}: {}", written.len(), out.display(), written.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn write(dir: &Path, name: &str, dashboard: &Value) -> anyhow::Result<String> {
    let file = format!("{name}.json");
    let text = serde_json::to_string_pretty(dashboard)? + "\n";
    std::fs::write(dir.join(&file), text).with_context(|| format!("cannot write `{file}`"))?;
    Ok(file)
}

/// `pipelines/delivery.stream` → `delivery`.
fn stem(path: &str) -> String {
    Path::new(path).file_stem().map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned())
}

/// The data source every panel uses: the dashboard's `datasource` variable.
fn datasource() -> Value {
    json!({ "type": "prometheus", "uid": "${datasource}" })
}

fn datasource_variable() -> Value {
    json!({
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "refresh": 1,
        "hide": 0,
    })
}

/// A multi-value variable over the values of `label` in `series`.
fn label_variable(label: &str, series: &str) -> Value {
    let query = format!("label_values({series}, {label})");
    json!({
        "name": label,
        "label": label,
        "type": "query",
        "datasource": datasource(),
        "query": { "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery" },
        "refresh": 2,
        "sort": 1,
        "multi": true,
        "includeAll": true,
        // Matches every value, the empty one (null keys) included.
        "allValue": ".*",
        "hide": 0,
    })
}

fn link(title: &str, url: &str, tooltip: &str) -> Value {
    json!({
        "title": title,
        "type": "link",
        "url": url,
        "tooltip": tooltip,
        "icon": "bolt",
        "tags": [],
        "asDropdown": false,
        "includeVars": false,
        "keepTime": false,
        "targetBlank": false,
    })
}

/// Grafana's alert list filtered to one rule (Prometheus rules show there
/// as data-source-managed rules).
fn alert_link(alert: &AlertPlan) -> Value {
    link(
        &format!("Alert: {}", alert.name),
        &format!("/alerting/list?search={}", alert.name),
        "The alert rule and its state in Grafana's alert list",
    )
}

fn row(id: u32, title: &str, y: u32) -> Value {
    json!({
        "type": "row",
        "id": id,
        "title": title,
        "collapsed": false,
        "panels": [],
        "gridPos": { "h": 1, "w": 24, "x": 0, "y": y },
    })
}

fn grid(index: u32, y: u32) -> Value {
    json!({ "h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": (index % 3) * PANEL_WIDTH, "y": y + (index / 3) * PANEL_HEIGHT })
}

/// A time-series panel of one or more PromQL queries `(expr, legend)`.
fn timeseries(id: u32, title: &str, description: &str, grid_pos: Value, queries: &[(&str, &str)], unit: &str) -> Value {
    let targets: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (expr, legend))| {
            json!({
                "refId": char::from(b'A' + (i % 26) as u8).to_string(),
                "datasource": datasource(),
                "expr": expr,
                "legendFormat": legend,
                "range": true,
            })
        })
        .collect();
    json!({
        "type": "timeseries",
        "id": id,
        "title": title,
        "description": description,
        "datasource": datasource(),
        "gridPos": grid_pos,
        "targets": targets,
        "fieldConfig": { "defaults": { "unit": unit }, "overrides": [] },
        "options": {
            "legend": { "displayMode": "list", "placement": "bottom", "showLegend": true },
            "tooltip": { "mode": "multi", "sort": "desc" },
        },
    })
}

fn dashboard(
    uid: &str,
    title: &str,
    description: &str,
    variables: Vec<Value>,
    links: Vec<Value>,
    panels: Vec<Value>,
) -> Value {
    json!({
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["streams", "generated"],
        "editable": false,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "time": { "from": "now-1h", "to": "now" },
        "refresh": "30s",
        "templating": { "list": variables },
        "links": links,
        "panels": panels,
    })
}

/// Column names an alert condition reads.
fn columns_read(alert: &AlertPlan) -> Vec<String> {
    let mut names = Vec::new();
    alert.condition.walk(&mut |e| {
        if let Expr::Column(name) = e {
            names.push(name.clone());
        }
    });
    names
}

/// The dashboard of one pipeline file.
///
/// # Errors
/// When a column cannot be queried (it cannot happen for exported columns).
pub fn pipeline_dashboard(plan: &Plan, file: &PipelineFile) -> anyhow::Result<Value> {
    let name = stem(&file.path);
    let metrics: Vec<(usize, &MetricPlan)> = file.metrics.iter().map(|&m| (m, &*plan.metrics[m])).collect();
    let alerts: Vec<&AlertPlan> = plan.alerts.iter().filter(|a| file.metrics.contains(&a.metric)).collect();

    let mut variables = vec![datasource_variable()];
    let mut seen_labels: Vec<&str> = Vec::new();
    for (_, metric) in &metrics {
        let queries = MetricQueries::new(metric);
        let Some(first) = queries.columns().first() else { continue };
        for key in &metric.keys {
            if !seen_labels.contains(&key.name.as_str()) {
                seen_labels.push(&key.name);
                variables.push(label_variable(&key.name, &first.series));
            }
        }
    }

    let mut panels = Vec::new();
    let (mut id, mut y) = (1u32, 0u32);
    for join in listing_joins(plan, &metrics) {
        let (join_panels, height) = join.panels(&mut id, y)?;
        panels.extend(join_panels);
        y += height;
    }
    for (index, metric) in &metrics {
        panels.push(row(id, &metric.name, y));
        id += 1;
        y += 1;
        let queries = MetricQueries::new(metric);
        if queries.columns().is_empty() {
            let content = format!(
                "`{}` has no `export prometheus`, so Prometheus has none of its series. Its stored rows are served by \
                 streamd's query API: `/api/v1/query?metric={}`.",
                metric.name, metric.name
            );
            panels.push(json!({
                "type": "text",
                "id": id,
                "title": format!("{} is not exported", metric.name),
                "gridPos": { "h": 3, "w": 24, "x": 0, "y": y },
                "options": { "mode": "markdown", "content": content },
            }));
            id += 1;
            y += 3;
            continue;
        }
        let legend = if metric.keys.is_empty() {
            String::from("total")
        } else {
            metric.keys.iter().map(|k| format!("{{{{{}}}}}", k.name)).collect::<Vec<_>>().join(" / ")
        };
        let window = dsl::fmt::format_duration(metric.window_ms);
        for (i, column) in queries.columns().iter().enumerate() {
            let expr = queries.column_for_dashboard(&column.column)?;
            let description = match column.kind {
                SeriesKind::Counter => {
                    format!("Count per {window} window, from the counter `{}` summed over instances.", column.series)
                }
                SeriesKind::Gauge => format!("The current {window} window's value: `{}`.", column.series),
            };
            let mut panel = timeseries(
                id,
                &column.column,
                &description,
                grid(i as u32, y),
                &[(expr.as_str(), legend.as_str())],
                "short",
            );
            let links: Vec<Value> = alerts
                .iter()
                .filter(|a| a.metric == *index && columns_read(a).contains(&column.column))
                .map(|a| alert_link(a))
                .collect();
            if !links.is_empty() {
                panel["links"] = Value::Array(links);
            }
            panels.push(panel);
            id += 1;
        }
        y += (queries.columns().len() as u32).div_ceil(3) * PANEL_HEIGHT;
    }

    let mut links: Vec<Value> = alerts.iter().map(|a| alert_link(a)).collect();
    links.push(json!({
        "title": "streams",
        "type": "dashboards",
        "tags": ["streams"],
        "asDropdown": true,
        "icon": "external link",
        "includeVars": false,
        "keepTime": true,
        "targetBlank": false,
        "tooltip": "Other generated dashboards",
        "url": "",
    }));
    Ok(dashboard(
        &format!("streams-{name}"),
        &format!("Pipelines: {name}"),
        &format!(
            "Generated by `streamctl dashboards` from {}. Do not edit: change the pipeline and regenerate.",
            file.path
        ),
        variables,
        links,
        panels,
    ))
}

/// A row putting a DNSBL source's listings beside the stream metric its
/// targets are taken from (`targets from metric M key K`), one target per
/// key value: the listing metric's `target` and `M`'s `K` both match the
/// dashboard variable `K`, so picking an IP shows its listings and, beside
/// them, its bounces.
struct ListingJoin<'p> {
    /// A metric of the `dnsbl` source that groups by `target`.
    listings: &'p MetricPlan,
    /// The metric the targets come from.
    stream: &'p MetricPlan,
    /// Its key holding the targets.
    key: &'p str,
}

/// The listing joins of a file's exported metrics.
fn listing_joins<'p>(plan: &'p Plan, metrics: &[(usize, &'p MetricPlan)]) -> Vec<ListingJoin<'p>> {
    let exported = |m: &MetricPlan| !MetricQueries::new(m).columns().is_empty();
    let mut joins = Vec::new();
    for (source_index, source) in plan.sources.iter().enumerate() {
        let Some(dnsbl) = &source.dnsbl else { continue };
        for from in &dnsbl.targets_from {
            let Some((_, stream)) = metrics.iter().find(|(_, m)| m.name == from.metric && exported(m)) else {
                continue;
            };
            let listings = metrics
                .iter()
                .map(|(_, m)| *m)
                .filter(|m| m.source == source_index && exported(m) && m.keys.iter().any(|k| k.name == "target"));
            joins.extend(listings.map(|listings| ListingJoin { listings, stream, key: &from.key }));
        }
    }
    joins
}

/// The derived columns of `metric` (its ratios and rates) when it exports
/// any, else every exported column.
fn headline_columns(queries: &MetricQueries<'_>, metric: &MetricPlan) -> Vec<String> {
    let all: Vec<String> = queries.columns().iter().map(|c| c.column.clone()).collect();
    let derived: Vec<String> = all.iter().filter(|c| metric.derived.iter().any(|d| &d.name == *c)).cloned().collect();
    if derived.is_empty() {
        all
    } else {
        derived
    }
}

impl ListingJoin<'_> {
    /// The row and its two half-width panels from `y`, and their height.
    fn panels(&self, id: &mut u32, y: u32) -> anyhow::Result<(Vec<Value>, u32)> {
        let title = format!("{} beside {} by {}", self.listings.name, self.stream.name, self.key);
        let mut panels = vec![row(*id, &title, y)];
        *id += 1;
        let sides = [(self.listings, "target"), (self.stream, self.key)];
        for (i, (metric, joined_key)) in sides.into_iter().enumerate() {
            let queries = MetricQueries::new(metric);
            let variable = |key: &str| if key == joined_key { self.key.to_string() } else { key.to_string() };
            let legend = metric.keys.iter().map(|k| format!("{{{{{}}}}}", k.name)).collect::<Vec<_>>().join(" / ");
            let columns = headline_columns(&queries, metric);
            let mut exprs = Vec::new();
            for column in &columns {
                exprs.push((queries.column_for_variables(column, variable)?, format!("{column} {legend}")));
            }
            let refs: Vec<(&str, &str)> = exprs.iter().map(|(e, l)| (e.as_str(), l.as_str())).collect();
            let description = format!(
                "`{}` of `{}`, its `{joined_key}` matched against the `{}` variable: the same targets as beside it.",
                columns.join("`, `"),
                metric.name,
                self.key
            );
            let grid_pos = json!({ "h": PANEL_HEIGHT, "w": 12, "x": 12 * i as u32, "y": y + 1 });
            panels.push(timeseries(*id, &metric.name, &description, grid_pos, &refs, "short"));
            *id += 1;
        }
        Ok((panels, 1 + PANEL_HEIGHT))
    }
}

/// Title, description, queries (PromQL, legend) and unit of a panel.
type PanelSpec<'a> = (&'a str, &'a str, Vec<(String, &'a str)>, &'a str);

/// The dashboard of `streamd` itself, over the daemon's `stream_*` series.
pub fn streamd_dashboard() -> Value {
    let sel = "instance=~\"$instance\"";
    let rate = |name: &str, by: &str| format!("sum by ({by}) (rate({name}{{{sel}}}[$__rate_interval]))");
    let specs: Vec<PanelSpec> = vec![
        (
            "Throughput",
            "Messages consumed per second, and events counted per pipeline metric.",
            vec![
                (format!("sum(rate(stream_events_consumed_total{{{sel}}}[$__rate_interval]))"), "consumed"),
                (rate("stream_pipeline_events_total", "metric"), "{{metric}}"),
            ],
            "ops",
        ),
        (
            "Consumer lag",
            "Messages behind the end of each partition.",
            vec![(format!("sum by (topic, partition) (stream_consumer_lag{{{sel}}})"), "{{topic}}/{{partition}}")],
            "short",
        ),
        (
            "Replay point age",
            "Seconds since each partition's committed replay point moved: grows while a window stays open or commits stall.",
            vec![(
                format!("max by (topic, partition) (stream_replay_point_age_seconds{{{sel}}})"),
                "{{topic}}/{{partition}}",
            )],
            "s",
        ),
        (
            "Dead letters",
            "Rejected messages per second, by reason.",
            vec![(rate("stream_dead_letters_total", "reason"), "{{reason}}")],
            "ops",
        ),
        (
            "Late events",
            "Events later than a metric's lateness per second (also dead-lettered as `late`).",
            vec![(rate("stream_late_events_total", "metric"), "{{metric}}")],
            "ops",
        ),
        (
            "Store write latency",
            "Duration of store writes (one per flush), and failed writes per second.",
            vec![
                (
                    format!(
                        "histogram_quantile(0.5, sum by (le) (rate(stream_store_write_seconds_bucket{{{sel}}}[$__rate_interval])))"
                    ),
                    "p50",
                ),
                (
                    format!(
                        "histogram_quantile(0.99, sum by (le) (rate(stream_store_write_seconds_bucket{{{sel}}}[$__rate_interval])))"
                    ),
                    "p99",
                ),
                (format!("sum(rate(stream_store_errors_total{{{sel}}}[$__rate_interval]))"), "errors/s"),
            ],
            "s",
        ),
        (
            "Rows written",
            "Rows written to the store per second (windows and tiers), by metric.",
            vec![(rate("stream_rows_written_total", "metric"), "{{metric}}")],
            "ops",
        ),
        (
            "Live series",
            "Open series per metric, exported Prometheus series, and keys folded into __other__ per second.",
            vec![
                (format!("sum by (metric) (stream_live_series{{{sel}}})"), "open {{metric}}"),
                (format!("sum by (metric) (stream_exported_series{{{sel}}})"), "exported {{metric}}"),
                (rate("stream_cardinality_overflow_total", "metric"), "overflow events {{metric}}"),
                (rate("stream_exported_series_overflow_total", "metric"), "overflow keys {{metric}}"),
            ],
            "short",
        ),
        (
            "Consumption paused",
            "1 while a failing store pauses consumption; partitions held, paused, until the newer plan their checkpoint was written under runs on the instance.",
            vec![
                (format!("max by (instance) (stream_consumption_paused{{{sel}}})"), "{{instance}}"),
                (
                    format!("max by (instance) (stream_partitions_awaiting_plan{{{sel}}})"),
                    "{{instance}} partitions awaiting a plan",
                ),
            ],
            "short",
        ),
    ];
    let mut panels = vec![json!({
        "type": "table",
        "id": 1,
        "title": "Deployed version",
        "description": "Build and running plan of each instance.",
        "datasource": datasource(),
        "gridPos": { "h": 5, "w": 24, "x": 0, "y": 0 },
        "targets": [
            { "refId": "A", "datasource": datasource(), "expr": format!("stream_build_info{{{sel}}}"), "format": "table", "instant": true },
            { "refId": "B", "datasource": datasource(), "expr": format!("stream_plan_info{{{sel}}}"), "format": "table", "instant": true },
        ],
        "options": { "showHeader": true },
        "fieldConfig": { "defaults": {}, "overrides": [] },
    })];
    for (i, (title, description, queries, unit)) in specs.iter().enumerate() {
        let queries: Vec<(&str, &str)> = queries.iter().map(|(e, l)| (e.as_str(), *l)).collect();
        panels.push(timeseries(i as u32 + 2, title, description, grid(i as u32, 5), &queries, unit));
    }
    let mut instance = label_variable("instance", "stream_build_info");
    instance["label"] = json!("Instance");
    dashboard(
        "streamd",
        "streamd",
        "The daemon's own health. Generated by `streamctl dashboards`. Do not edit: regenerate.",
        vec![datasource_variable(), instance],
        vec![json!({
            "title": "Pipelines",
            "type": "dashboards",
            "tags": ["streams"],
            "asDropdown": true,
            "icon": "external link",
            "includeVars": false,
            "keepTime": true,
            "targetBlank": false,
            "tooltip": "The pipeline dashboards",
            "url": "",
        })],
        panels,
    )
}
