//! Compiling pipelines for the commands that run them.

use crate::cli::GlobalArgs;
use anyhow::Context;
use std::sync::Arc;
use store::scylla::ScyllaConfig;

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

/// How `scylla:` stores are replicated, written and read: the
/// `[store.scylla]` settings of `--config` (streamd's configuration file,
/// checked as streamd checks them), else the defaults. Nodes and keyspace
/// come from the store URL.
pub fn scylla_settings(global: &GlobalArgs) -> anyhow::Result<ScyllaConfig> {
    let Some(path) = &global.config else { return Ok(ScyllaConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    scylla_settings_in(&text).with_context(|| format!("in `{}`", path.display()))
}

/// The `[store.scylla]` settings of a configuration file's text; the rest
/// of the file is streamd's, not read here.
fn scylla_settings_in(text: &str) -> anyhow::Result<ScyllaConfig> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct File {
        store: Store,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Store {
        scylla: store::scylla::ScyllaSettings,
    }
    let file: File = toml::from_str(text)?;
    file.store
        .scylla
        .into_config()
        .map_err(|problems| anyhow::anyhow!("invalid settings:\n  {}", problems.join("\n  ")))
}

/// Opens the store named by `spec`: `sqlite:PATH` or
/// `scylla:HOST[:PORT][,HOST…][/KEYSPACE]` with the settings `scylla`.
pub fn open_store(spec: &str, scylla: &ScyllaConfig) -> anyhow::Result<Box<dyn store::Store + Send>> {
    Ok(match store::StoreUrl::parse(spec)? {
        store::StoreUrl::Sqlite(path) => Box::new(store::sqlite::SqliteStore::open(path)?),
        store::StoreUrl::Scylla(nodes) => Box::new(
            store::scylla::ScyllaStore::connect(scylla.at(nodes))
                .with_context(|| format!("cannot connect to `{spec}`"))?,
        ),
    })
}

/// [`open_store`] for a command that only reads: a SQLite file that does not
/// exist is an error (opening would create an empty one), its message ended
/// by `hint` (e.g. `; run … first`).
pub fn open_existing_store(
    spec: &str,
    scylla: &ScyllaConfig,
    hint: &str,
) -> anyhow::Result<Box<dyn store::Store + Send>> {
    if let Ok(store::StoreUrl::Sqlite(path)) = store::StoreUrl::parse(spec) {
        if !std::path::Path::new(path).exists() {
            anyhow::bail!("store `{path}` does not exist{hint}");
        }
    }
    open_store(spec, scylla)
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

#[cfg(test)]
mod scylla_settings_tests {
    use super::*;
    use store::scylla::schema::Replication;
    use store::scylla::Consistency;

    #[test]
    fn without_a_file_the_defaults_apply() {
        let config = scylla_settings(&GlobalArgs { config: None }).expect("defaults");
        assert_eq!(config.replication, Replication::Simple(1));
        assert_eq!(config.write_consistency, Consistency::LocalQuorum);
        assert_eq!(config.read_consistency, Consistency::LocalQuorum);
    }

    /// The shipped example, which streamd also checks, reads the same here.
    #[test]
    fn streamds_example_file_is_read() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../streamd/streamd.example.toml");
        let config = scylla_settings(&GlobalArgs { config: Some(path) }).expect("the example is valid");
        assert_eq!(config.replication, Replication::Simple(1));
        assert_eq!(config.local_datacenter, None);
    }

    /// Every `[store.scylla]` key reaches the store's settings; nodes and
    /// keyspace come from the store URL; streamd's other sections are not read.
    #[test]
    fn store_scylla_settings_reach_the_store() {
        let text = "[kafka]\nbrokers = \"k:9092\"\n[store]\nurl = \"scylla:ignored\"\ntier_rows_every_ms = 60000\n\
                    [store.scylla]\nreplication = \"NetworkTopologyStrategy\"\nwrite_consistency = \"each_quorum\"\n\
                    read_consistency = \"LOCAL_ONE\"\nlocal_datacenter = \"eu-west\"\n\
                    [store.scylla.datacenters]\neu-west = 3\nus-east = 2\n[http]\naddr = \"127.0.0.1:1\"\n";
        let config = scylla_settings_in(text).expect("valid").at("10.0.0.1,10.0.0.2:9043/metrics");
        assert_eq!(config.nodes, ["10.0.0.1:9042", "10.0.0.2:9043"]);
        assert_eq!(config.keyspace, "metrics");
        assert_eq!(
            config.replication,
            Replication::NetworkTopology(vec![("eu-west".into(), 3), ("us-east".into(), 2)])
        );
        assert_eq!(config.write_consistency, Consistency::EachQuorum);
        assert_eq!(config.read_consistency, Consistency::LocalOne);
        assert_eq!(config.local_datacenter.as_deref(), Some("eu-west"));
    }

    #[test]
    fn bad_settings_are_errors_naming_the_key() {
        for (text, needle) in [
            ("[store.scylla]\nread_consistency = \"ANY\"", "writes only"),
            ("[store.scylla]\nwrite_consistency = \"QUORUMS\"", "store.scylla.write_consistency"),
            ("[store.scylla]\nconsistency = \"ONE\"", "consistency"),
            ("[store.scylla]\nreplication_factor = 0", "at least 1"),
            ("[store.scylla\n", "TOML"),
        ] {
            let error = format!("{:#}", scylla_settings_in(text).expect_err(text));
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
