//! Compiling pipelines for the commands that run them.

use anyhow::Context;
use std::sync::Arc;

/// Compiles `paths` into a runnable plan, printing diagnostics; fails on errors.
pub fn load(paths: &[String]) -> anyhow::Result<Arc<engine::CompiledPlan>> {
    load_with(paths, engine::EngineConfig::default())
}

/// [`load`] with the engine's limits set.
pub fn load_with(paths: &[String], config: engine::EngineConfig) -> anyhow::Result<Arc<engine::CompiledPlan>> {
    let (_, mut compiled) = dsl::files::compile(paths)?;
    if !compiled.diagnostics.is_empty() {
        eprintln!("{}", compiled.render_diagnostics());
    }
    let built = engine::CompiledPlan::from_compiled(&mut compiled, config).context("the pipelines have errors")?;
    Ok(Arc::new(built.context("the plan cannot run")?))
}

/// Opens the store named by `spec`: `sqlite:PATH` or
/// `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`.
pub fn open_store(spec: &str) -> anyhow::Result<Box<dyn store::Store + Send>> {
    Ok(match store::StoreUrl::parse(spec)? {
        store::StoreUrl::Sqlite(path) => Box::new(store::sqlite::SqliteStore::open(path)?),
        store::StoreUrl::Scylla(nodes) => {
            let config = store::scylla::ScyllaConfig::parse(nodes);
            Box::new(
                store::scylla::ScyllaStore::connect(config).with_context(|| format!("cannot connect to `{spec}`"))?,
            )
        }
    })
}

/// [`open_store`] for a command that only reads: a SQLite file that does not
/// exist is an error (opening would create an empty one), its message ended
/// by `hint` (e.g. `; run … first`).
pub fn open_existing_store(spec: &str, hint: &str) -> anyhow::Result<Box<dyn store::Store + Send>> {
    if let Ok(store::StoreUrl::Sqlite(path)) = store::StoreUrl::parse(spec) {
        if !std::path::Path::new(path).exists() {
            anyhow::bail!("store `{path}` does not exist{hint}");
        }
    }
    open_store(spec)
}

/// One pipeline file named on the command line, with what it defines.
pub struct PipelineFile {
    /// The path as expanded from the command line, e.g. `pipelines/delivery.stream`.
    pub path: String,
    /// Indices into the plan's metrics of the metrics defined in this file.
    pub metrics: Vec<usize>,
    /// Indices into the plan's alerts of the alerts defined in this file,
    /// with each condition in canonical text.
    pub alerts: Vec<(usize, String)>,
}

/// Compiles `paths` together (as the daemon does) and attributes each
/// metric and alert to the file that defines it, for commands that
/// generate one artefact per file. `Ok(None)` when the pipelines have errors
/// (already printed).
pub fn compile_by_file(paths: &[String]) -> anyhow::Result<Option<(dsl::Plan, Vec<PipelineFile>)>> {
    let (roots, compiled) = dsl::files::compile(paths)?;
    if !compiled.diagnostics.is_empty() {
        eprintln!("{}", compiled.render_diagnostics());
    }
    let Some(plan) = compiled.plan else { return Ok(None) };
    let mut out = Vec::new();
    for path in roots {
        let text = dsl::files::read_text(&path).map_err(|e| anyhow::anyhow!("cannot read `{path}`: {e}"))?;
        // It compiled above, so it parses; the file id only labels spans.
        let Ok(ast) = dsl::parser::parse(dsl::span::FileId::default(), &text) else { continue };
        let mut file = PipelineFile { path, metrics: Vec::new(), alerts: Vec::new() };
        for item in &ast.items {
            match item {
                dsl::ast::Item::Metric(m) => {
                    file.metrics.extend(plan.metrics.iter().position(|p| p.name == m.name.node));
                }
                dsl::ast::Item::Alert(a) => {
                    if let Some(i) = plan.alerts.iter().position(|p| p.name == a.name.node) {
                        file.alerts.push((i, dsl::fmt::format_expr(&a.condition)));
                    }
                }
                _ => {}
            }
        }
        out.push(file);
    }
    Ok(Some((plan, out)))
}
