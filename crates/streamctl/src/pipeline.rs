//! Compiling pipelines for the commands that run them.

use crate::files;
use anyhow::{bail, Context};
use std::sync::Arc;

/// Compiles `paths` into a runnable plan, printing diagnostics; fails on errors.
pub fn load(paths: &[String]) -> anyhow::Result<Arc<engine::CompiledPlan>> {
    let roots = files::expand(paths)?;
    let compiled = dsl::compile(&roots, &files::load);
    if !compiled.diagnostics.is_empty() {
        eprintln!("{}", compiled.render_diagnostics());
    }
    let Some(plan) = compiled.plan else {
        bail!("the pipelines have errors");
    };
    let runnable = engine::CompiledPlan::new(plan, engine::EngineConfig::default()).context("the plan cannot run")?;
    Ok(Arc::new(runnable))
}

/// Opens the store named by `spec`: `sqlite:PATH` or
/// `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`.
pub fn open_store(spec: &str) -> anyhow::Result<Box<dyn store::Store + Send>> {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        return Ok(Box::new(store::sqlite::SqliteStore::open(path)?));
    }
    if let Some(nodes) = spec.strip_prefix("scylla:") {
        let config = store::scylla::ScyllaConfig::parse(nodes);
        let store =
            store::scylla::ScyllaStore::connect(config).with_context(|| format!("cannot connect to `{spec}`"))?;
        return Ok(Box::new(store));
    }
    bail!("unsupported store `{spec}`; use `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]`")
}
