//! `streamctl test`: pipeline unit tests from fixtures checked in beside the pipelines.
//!
//! A fixture is a JSON file `NAME.test.json`:
//!
//! ```json
//! {
//!   "description": "what this checks",
//!   "pipelines": ["../delivery.stream"],
//!   "now": "2024-06-03T01:00:00Z",
//!   "input": [ {"ts": "2024-06-03T00:00:01Z", "...": "..."}, "a raw line, e.g. malformed" ],
//!   "expect": [
//!     { "metric": "delivery_by_sender", "tier": "1m", "group_by": ["sender_domain"],
//!       "rows": [ {"window_start": "2024-06-03T00:00:00.000Z", "sender_domain": "a.example", "attempts": 3} ] }
//!   ],
//!   "dead_letters": { "malformed_json": 1 }
//! }
//! ```
//!
//! Paths are relative to the fixture. Objects in `input` are sent as compact
//! JSON, strings as raw lines, in order, to one partition; all windows are
//! closed at the end. Each expectation lists every row of that metric and
//! tier (merged like `streamctl query`); only the columns a row names are
//! compared, floats within a relative 1e-9. `"partial": true` allows extra rows.
//! `now` (optional, RFC 3339 or epoch ms; default the wall clock) is the
//! processing time: events more than their source's `max_future` ahead of
//! it are `future_time` dead letters, so a fixture that tests one sets it.

use crate::cli::GlobalArgs;
use crate::pipeline;
use anyhow::{bail, Context};
use engine::{Message, Output, Partition, Reason};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use store::{Store, WriteBatch};

/// Run pipeline unit tests (`*.test.json` fixtures).
#[derive(clap::Args)]
pub struct Args {
    /// Fixture files, or directories searched for `*.test.json`.
    #[arg(default_value = "pipelines/")]
    paths: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    description: String,
    pipelines: Vec<String>,
    #[serde(default)]
    now: Option<String>,
    input: Vec<serde_json::Value>,
    #[serde(default)]
    expect: Vec<Expectation>,
    #[serde(default)]
    dead_letters: Option<BTreeMap<String, u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    metric: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    group_by: Option<Vec<String>>,
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    partial: bool,
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let fixtures = find(&args.paths)?;
    if fixtures.is_empty() {
        bail!("no `*.test.json` fixtures under {}", args.paths.join(", "));
    }
    let mut failed = 0;
    for path in &fixtures {
        match run_fixture(path) {
            Ok(problems) if problems.is_empty() => println!("ok   {}", path.display()),
            Ok(problems) => {
                failed += 1;
                println!("FAIL {}", path.display());
                for p in problems {
                    println!("{p}");
                }
            }
            Err(error) => {
                failed += 1;
                println!("FAIL {}: {error:#}", path.display());
            }
        }
    }
    println!("{} passed, {failed} failed", fixtures.len() - failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn find(paths: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).with_context(|| format!("cannot list `{}`", path.display()))? {
                stack.push(entry?.path());
            }
        } else if path.to_string_lossy().ends_with(".test.json") {
            out.push(path);
        } else if !path.exists() {
            bail!("`{}` does not exist", path.display());
        }
    }
    out.sort();
    Ok(out)
}

fn run_fixture(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).context("cannot read the fixture")?;
    let fixture: Fixture = serde_json::from_str(&text).context("the fixture is not valid")?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let pipelines: Vec<String> = fixture.pipelines.iter().map(|p| dir.join(p).to_string_lossy().into_owned()).collect();
    let plan = pipeline::load(&pipelines)?;
    let topic = plan.plan.sources.first().map(|s| s.topic.clone()).context("the pipelines declare no source")?;
    let mut store = store::sqlite::SqliteStore::open(":memory:")?;
    store.setup(&plan.plan)?;
    let now_ms = match &fixture.now {
        Some(text) => super::query::parse_time(text).map_err(|e| anyhow::anyhow!("`now`: {e}"))?,
        None => kafka::control::now_ms(),
    };
    let mut partition = Partition::new(plan.clone(), 0);
    let mut out = Output::default();
    for (offset, event) in fixture.input.iter().enumerate() {
        let line = match event {
            serde_json::Value::String(raw) => raw.clone(),
            other => other.to_string(),
        };
        partition.process(&Message::plain(&topic, 0, offset as i64, line.as_bytes()), now_ms, &mut out);
    }
    partition.close_all(&mut out);
    store.write(&WriteBatch {
        topic: &topic,
        rows: &out.rows,
        dead_letters: &out.dead_letters,
        checkpoints: &[],
        owners: &[],
    })?;

    let mut problems = Vec::new();
    if !fixture.description.is_empty() {
        problems.push(format!("  ({})", fixture.description));
    }
    let baseline = problems.len();
    for expectation in &fixture.expect {
        let query = store::query::Query {
            metric: expectation.metric.clone(),
            tier: expectation.tier.clone(),
            group_by: expectation.group_by.clone(),
            ..Default::default()
        };
        let result = store::query::run(&store, &plan.plan, &query)?;
        let actual: Vec<serde_json::Map<String, serde_json::Value>> =
            result.rows.iter().map(|r| result.columns.iter().cloned().zip(r.iter().cloned()).collect()).collect();
        let keys: Vec<String> = match &expectation.group_by {
            Some(keys) => keys.clone(),
            None => plan
                .plan
                .metrics
                .iter()
                .filter(|m| m.name == result.metric)
                .flat_map(|m| m.keys.iter().map(|k| k.name.clone()))
                .collect(),
        };
        let title = format!("metric {} tier {}", result.metric, result.tier);
        compare(&title, expectation, &result.columns, &keys, actual, &mut problems);
    }
    if let Some(expected) = &fixture.dead_letters {
        let stats = partition.stats();
        let actual: BTreeMap<String, u64> = Reason::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), stats.dead_letters_for(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if &actual != expected {
            problems.push(format!("  dead letters\n  - expected {}\n  + actual   {}", json(expected), json(&actual)));
        }
    }
    if problems.len() == baseline {
        problems.clear();
    }
    Ok(problems)
}

fn compare(
    title: &str,
    expectation: &Expectation,
    columns: &[String],
    keys: &[String],
    mut actual: Vec<serde_json::Map<String, serde_json::Value>>,
    problems: &mut Vec<String>,
) {
    let mut lines = Vec::new();
    for expected in &expectation.rows {
        if let Some(unknown) = expected.keys().find(|k| !columns.contains(k)) {
            lines.push(format!("  ? column `{unknown}` does not exist; columns: {}", columns.join(", ")));
            continue;
        }
        // The actual row with the same window and key values as the expected one.
        let identity = |row: &serde_json::Map<String, serde_json::Value>| {
            expected
                .iter()
                .filter(|(k, _)| k.as_str() == "window_start" || keys.contains(k))
                .all(|(k, v)| row.get(k) == Some(v))
        };
        match actual.iter().position(identity) {
            Some(i) => {
                let row = actual.remove(i);
                if !expected.iter().all(|(k, v)| row.get(k).is_some_and(|a| same(a, v))) {
                    let shown: serde_json::Map<_, _> =
                        expected.keys().filter_map(|k| row.get(k).map(|v| (k.clone(), v.clone()))).collect();
                    lines.push(format!("  - expected {}\n  + actual   {}", json(expected), json(&shown)));
                }
            }
            None => lines.push(format!("  - missing  {}", json(expected))),
        }
    }
    if !expectation.partial {
        for row in actual {
            lines.push(format!("  + unexpected {}", json(&row)));
        }
    }
    if !lines.is_empty() {
        problems.push(format!("  {title}"));
        problems.extend(lines);
    }
}

fn same(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(e)) => a == e || (a - e).abs() <= 1e-9 * a.abs().max(e.abs()),
        _ => actual == expected,
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
