//! `streamctl check`: the same validation `streamd` runs on a bundle.

use crate::cli::{GlobalArgs, OutputFormat};
use std::io::Write;
use std::process::ExitCode;

/// Parse and type-check pipeline files, printing every diagnostic.
#[derive(clap::Args)]
pub struct Args {
    /// Pipeline files, or directories searched for `*.stream` files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// `text` for people, `json` for machines (diagnostics on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let (roots, mut compiled) = dsl::files::compile(&args.paths)?;
    // The same validation streamd runs: the plan must also build into a runnable engine
    // (e.g. a classifier's pattern set must fit the regex engine's limits).
    let runtime_error = match engine::CompiledPlan::from_compiled(&mut compiled, engine::EngineConfig::default()) {
        None => None,
        Some(Ok(runnable)) => {
            compiled.plan = Some(runnable.plan);
            None
        }
        Some(Err(error)) => Some(format!("{:#}", anyhow::Error::from(error))),
    };
    let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count() + usize::from(runtime_error.is_some());
    let warnings = compiled.diagnostics.len() - errors;
    let is_failure = errors > 0 || (args.deny_warnings && warnings > 0);
    match args.format {
        OutputFormat::Json => {
            let located: Vec<_> = compiled.diagnostics.iter().map(|d| d.located(&compiled.sources)).collect();
            let summary = serde_json::json!({
                "ok": !is_failure,
                "files": roots,
                "errors": errors,
                "warnings": warnings,
                "diagnostics": located,
                "plan_hash": compiled.plan.as_ref().map(|p| p.hash.clone()),
                // What a daemon running these files reports in `/status`.
                "metrics": compiled.plan.as_ref().map(|p| p.metrics.iter().map(|m| m.name.clone()).collect::<Vec<_>>()),
                "runtime_error": runtime_error,
            });
            let mut stdout = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut stdout, &summary)?;
            writeln!(stdout)?;
        }
        OutputFormat::Text => {
            if !compiled.diagnostics.is_empty() {
                eprintln!("{}", compiled.render_diagnostics());
            }
            if let Some(error) = &runtime_error {
                eprintln!("error: the plan cannot run: {error}\n");
            }
            match &compiled.plan {
                Some(plan) if !is_failure => {
                    let rules: usize = plan.classifiers.iter().map(|c| c.rules.len()).sum();
                    eprintln!(
                        "ok: {} file(s): {} source(s), {} classifier(s) with {rules} rule(s), {} metric(s), {} alert(s); {warnings} warning(s)",
                        roots.len(),
                        plan.sources.len(),
                        plan.classifiers.len(),
                        plan.metrics.len(),
                        plan.alerts.len(),
                    );
                }
                _ => eprintln!("failed: {errors} error(s), {warnings} warning(s) in {} file(s)", roots.len()),
            }
        }
    }
    Ok(if is_failure { super::bad_pipelines() } else { ExitCode::SUCCESS })
}
