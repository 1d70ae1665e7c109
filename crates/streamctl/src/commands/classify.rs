//! `streamctl classify`: run a classifier (by default the standard `bounce`)
//! over JSON lines, one result line per input line.
//!
//! Each input line is a JSON object. Its keys are matched to the classifier's
//! parameters by name (`diagnostic`, `status`, `smtp_code`, `provider`,
//! `smtp_command` for `bounce`); missing keys and `null` are null. Other keys
//! (`rhost`, `recipient_domain`, ...) are ignored, except that when the
//! classifier has a `provider` parameter and the line has no `provider`, one
//! is derived from `rhost` (or `mx_host`) and `recipient_domain` exactly as
//! the language's `provider(recipient_domain, mx_host)` does, from the table
//! `dsl/stdlib/providers.tsv`.
//!
//! Output per line: `{"category","reason","kind","provider","rule"}` where
//! `rule` is the matching rule's position counting from 1, 0 for the
//! default (like the language's `.rule`). `--explain` adds `hint` and the
//! `matched` patterns of the rule's condition that hit the input. A line
//! that is not a JSON object gives `{"line": N, "error": "..."}`; the exit
//! code is then 65. So does a line longer than the engine's message limit
//! (1 MiB, as `streamd` and `streamctl run` would dead-letter it as
//! oversized): it is read through without being kept, so one huge line
//! costs neither memory nor time.
//!
//! `--taxonomy` prints the classifier's categories as a Markdown table
//! instead (this is what `dsl/stdlib/README.md` embeds).

use crate::cli::GlobalArgs;
use crate::lines::{self, Line};
use anyhow::{bail, Context};
use dsl::plan::{ClassifierPlan, Expr, Scalar};
use engine::eval::{ClassifierRuntime, RegexCache};
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
    /// Add the hint and the patterns of the matching rule that hit.
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
        let mut params = Vec::with_capacity(plan.params.len());
        for p in &plan.params {
            params.push(param(&p.name, p.ty.scalar, object.get(&p.name))?);
        }
        if let Some(i) = self.provider_param {
            if matches!(params[i], Val::Null) {
                let text = |key: &str| object.get(key).and_then(Value::as_str);
                let host = text("rhost").or_else(|| text("mx_host"));
                if let Some(provider) = dsl::providers::of(text("recipient_domain"), host) {
                    params[i] = Val::Str(provider.into());
                }
            }
        }
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
            if let Some(r) = rule {
                out["matched"] = Value::Array(self.matched(&plan.rules[r].condition, &params));
            }
        }
        Ok(out)
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

/// One parameter from a JSON value; strings are accepted for numbers.
fn param<'a>(name: &str, scalar: Scalar, value: Option<&'a Value>) -> Result<Val<'a>, String> {
    let bad = |v: &Value| format!("`{name}` should be {}, not {v}", scalar.name());
    Ok(match (scalar, value) {
        (_, None | Some(Value::Null)) => Val::Null,
        (Scalar::String, Some(Value::String(s))) => Val::Str(s.as_str().into()),
        (Scalar::Int, Some(v @ Value::Number(n))) => Val::Int(n.as_i64().ok_or_else(|| bad(v))?),
        (Scalar::Int, Some(v @ Value::String(s))) => Val::Int(s.trim().parse().map_err(|_| bad(v))?),
        (Scalar::Float, Some(v @ Value::Number(n))) => Val::Float(n.as_f64().ok_or_else(|| bad(v))?),
        (Scalar::Bool, Some(Value::Bool(b))) => Val::Bool(*b),
        (_, Some(v)) => return Err(bad(v)),
    })
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
