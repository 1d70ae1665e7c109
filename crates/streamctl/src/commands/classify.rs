//! `streamctl classify`: run a classifier (by default the standard `bounce`)
//! over JSON lines, one result line per input line.
//!
//! Each input line is a JSON object. Its keys are matched to the classifier's
//! parameters by name (`diagnostic`, `status`, `smtp_code`, `provider`,
//! `smtp_command`, `feedback_type` for `bounce`); missing keys, `null` and
//! blank strings are null. Other keys (`rhost`, `recipient_domain`, ...) are
//! ignored, except that when the classifier has a `provider` parameter and the
//! line has no `provider`, one is derived from `rhost` (or `mx_host`) and
//! `recipient_domain` exactly as the language's
//! `provider(recipient_domain, mx_host)` does, from the table
//! `dsl/stdlib/providers.tsv` (see [`params_from_json`]).
//!
//! Output per line: `{"category","reason","kind","provider","rule"}` where
//! `rule` is the matching rule's position counting from 1, 0 for the
//! default (like the language's `.rule`). `--explain` adds the `hint`, the
//! precedence `tier` that decided (the first word of the category), the
//! `matched` patterns of the deciding rule's condition, and `earlier`: per
//! tier tried before it, each rule with the first part of its condition
//! that was not true. A line that is not a JSON object gives
//! `{"line": N, "error": "..."}`; the exit code is then 65. So does a line
//! longer than the engine's message limit (1 MiB, as `streamd` and
//! `streamctl run` would dead-letter it as oversized): it is read through
//! without being kept, so one huge line costs neither memory nor time.
//!
//! `--taxonomy` prints the classifier's categories as a Markdown table
//! instead (this is what `dsl/stdlib/README.md` embeds).

use crate::cli::GlobalArgs;
use crate::lines::{self, Line};
use anyhow::{bail, Context};
use dsl::plan::{ClassifierPlan, Expr};
use engine::classify::{params_from_json, ClassifierRuntime};
use engine::eval::RegexCache;
use engine::value::Val;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

/// Classify JSON lines with a classifier (default: `bounce`).
#[derive(clap::Args)]
pub struct Args {
    /// Rule files, or directories searched for `*.stream` files (e.g. `dsl/stdlib/`).
    #[arg(long, required = true, value_name = "PATH", num_args = 1..)]
    rules: Vec<String>,
    /// JSON lines to classify; `-` is standard input. A line over 1 MiB (the
    /// engine's message limit) is refused with an error line, unread.
    #[arg(long, default_value = "-", value_name = "FILE")]
    input: String,
    /// The classifier to run.
    #[arg(long, default_value = "bounce", value_name = "NAME")]
    classifier: String,
    /// Add the hint, the deciding tier and patterns, and why each earlier rule did not match.
    #[arg(long)]
    explain: bool,
    /// Print the taxonomy (category, reason, kind, hint) as Markdown and exit.
    #[arg(long, conflicts_with_all = ["explain"])]
    taxonomy: bool,
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let (_, compiled) = dsl::files::compile(&args.rules)?;
    if compiled.has_errors() {
        eprintln!("{}", compiled.render_diagnostics());
        return Ok(super::bad_pipelines());
    }
    let Some(plan) = compiled.plan else {
        return Ok(super::bad_pipelines());
    };
    let names: Vec<String> = plan.classifiers.iter().map(|c| c.name.clone()).collect();
    let Some(classifier) = plan.classifiers.into_iter().find(|c| c.name == args.classifier) else {
        bail!("no classifier `{}` in the rules (found: {})", args.classifier, names.join(", "));
    };
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    if args.taxonomy {
        write!(stdout, "{}", taxonomy(&classifier))?;
        stdout.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let classifier = Classifier::new(classifier)?;
    let mut input: Box<dyn BufRead> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.input).with_context(|| format!("cannot open `{}`", args.input))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut errors = 0usize;
    let limit = engine::EngineConfig::default().max_message_bytes;
    let mut buffer = Vec::new();
    let mut i = 0;
    while let Some(read) =
        lines::read_line(&mut input, &mut buffer, limit).with_context(|| format!("cannot read `{}`", args.input))?
    {
        i += 1;
        let line = buffer.strip_suffix(b"\r").unwrap_or(&buffer);
        let result = match read {
            Line::Whole => classifier.classify_line(line, args.explain),
            Line::Truncated { len, .. } => Err(format!("{len} bytes; the limit is {limit}, as for a message")),
        };
        let out = match result {
            Ok(out) => out,
            Err(error) => {
                errors += 1;
                json!({ "line": i, "error": error })
            }
        };
        serde_json::to_writer(&mut stdout, &out)?;
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    if errors > 0 {
        eprintln!("{errors} malformed line(s)");
        return Ok(super::bad_pipelines());
    }
    Ok(ExitCode::SUCCESS)
}

/// A compiled classifier plus what `--explain` needs.
struct Classifier {
    runtime: ClassifierRuntime,
    regexes: RegexCache,
    provider_param: Option<usize>,
}

impl Classifier {
    fn new(plan: ClassifierPlan) -> anyhow::Result<Self> {
        let mut regexes = RegexCache::default();
        regexes.add_all(plan.rules.iter().map(|r| &r.condition)).context("a rule's regex does not compile")?;
        let provider_param = plan.params.iter().position(|p| p.name == "provider");
        let runtime = ClassifierRuntime::new(plan).context("the classifier's patterns do not compile")?;
        Ok(Classifier { runtime, regexes, provider_param })
    }

    fn classify_line(&self, line: &[u8], explain: bool) -> Result<Value, String> {
        let text = std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8 (byte {})", e.valid_up_to()))?;
        if text.trim().is_empty() {
            return Err("empty line".into());
        }
        let object: Map<String, Value> = match serde_json::from_str(text) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err("not a JSON object".into()),
            Err(e) => return Err(format!("not JSON: {e}")),
        };
        let plan = &self.runtime.plan;
        let params = params_from_json(plan, &object).map_err(|e| e.to_string())?;
        let rule = self.runtime.classify(&params, &self.regexes);
        let outcome = rule.map_or(&plan.default, |r| &plan.rules[r].outcome);
        let provider = self.provider_param.map_or(Value::Null, |i| match &params[i] {
            Val::Str(s) => Value::String(s.to_string()),
            _ => Value::Null,
        });
        let mut out = json!({
            "category": outcome.category,
            "reason": outcome.reason,
            "kind": outcome.kind.name(),
            "provider": provider,
            "rule": rule.map_or(0, |r| r + 1),
        });
        if explain {
            out["hint"] = outcome.hint.clone().map_or(Value::Null, Value::String);
            out["tier"] = Value::String(rule.map_or("default", |_| tier(&outcome.category)).to_string());
            if let Some(r) = rule {
                out["matched"] = Value::Array(self.matched(&plan.rules[r].condition, &params));
            }
            out["earlier"] = self.earlier(&params, rule.unwrap_or(plan.rules.len()));
        }
        Ok(out)
    }

    /// Why the rules before `upto` did not decide, per precedence tier (the
    /// first word of the categories): the tier's rules and, per rule, the
    /// first part of its condition that was not true.
    fn earlier(&self, params: &[Val<'_>], upto: usize) -> Value {
        let plan = &self.runtime.plan;
        let unmet = self.runtime.unmet_conjuncts(params, &self.regexes, upto);
        let mut tiers: Vec<Value> = Vec::new();
        for (i, failed) in unmet.iter().enumerate() {
            let category = &plan.rules[i].outcome.category;
            let name = tier(category);
            let failed = failed.map_or(Value::Null, |e| Value::String(shorten(&dsl::classifier_condition(plan, e))));
            let row = json!({ "rule": i + 1, "category": category, "failed": failed });
            match tiers.last_mut() {
                Some(last) if last["tier"] == name => {
                    last["last_rule"] = json!(i + 1);
                    if let Some(rules) = last["not_matched"].as_array_mut() {
                        rules.push(row);
                    }
                }
                _ => tiers.push(json!({ "tier": name, "first_rule": i + 1, "last_rule": i + 1, "not_matched": [row] })),
            }
        }
        Value::Array(tiers)
    }

    /// The matcher patterns of `condition` that match the parameters.
    fn matched(&self, condition: &Expr, params: &[Val<'_>]) -> Vec<Value> {
        let plan = &self.runtime.plan;
        let mut out = Vec::new();
        condition.walk(&mut |e| {
            if let Expr::MatcherHit { matcher, pattern } = e {
                let m = &plan.matchers[*matcher];
                if let (Val::Str(text), Some(p)) = (&params[m.param], m.patterns.get(*pattern)) {
                    if regex::Regex::new(p).is_ok_and(|re| re.is_match(text)) {
                        out.push(json!({ "param": plan.params[m.param].name, "pattern": p }));
                    }
                }
            }
        });
        out
    }
}

/// The precedence tier of a category: its first word (`gmail`, `generic`,
/// `stage`, `status`, ...).
fn tier(category: &str) -> &str {
    category.split('.').next().unwrap_or(category)
}

/// A condition cut to a readable length (a long pattern says little more).
fn shorten(text: &str) -> String {
    const MAX: usize = 160;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The classifier's outcomes as a Markdown table, then counts per reason.
pub fn taxonomy(plan: &ClassifierPlan) -> String {
    let mut out = String::from("| # | category | reason | kind | hint |\n| ---: | --- | --- | --- | --- |\n");
    let rows = plan.rules.iter().enumerate().map(|(i, r)| (i + 1, &r.outcome)).chain([(0, &plan.default)]);
    for (n, o) in rows {
        let hint = o.hint.as_deref().unwrap_or("").replace('|', "\\|");
        out.push_str(&format!("| {n} | `{}` | {} | {} | {hint} |\n", o.category, o.reason, o.kind.name()));
    }
    let mut reasons: BTreeMap<&str, (usize, BTreeMap<&str, usize>)> = BTreeMap::new();
    for o in plan.rules.iter().map(|r| &r.outcome).chain([&plan.default]) {
        let entry = reasons.entry(o.reason.as_str()).or_default();
        entry.0 += 1;
        *entry.1.entry(o.kind.name()).or_default() += 1;
    }
    out.push_str(&format!(
        "\n{} categories (the rules plus the default) over {} reasons:\n\n| reason | categories | kinds |\n| --- | ---: | --- |\n",
        plan.rules.len() + 1,
        reasons.len()
    ));
    for (reason, (count, kinds)) in &reasons {
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        out.push_str(&format!("| {reason} | {count} | {} |\n", kinds.join(", ")));
    }
    out
}
