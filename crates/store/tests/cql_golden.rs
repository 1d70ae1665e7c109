//! Golden tests of the CQL the Scylla backend generates for the shipped
//! `pipelines/` plan: keyspace, bookkeeping tables and statements, and per
//! metric tier the table, its upsert and its read.
//!
//! Snapshots live in `tests/golden/cql/`. A mismatch fails with both texts;
//! after an intended change re-bless with
//! `BLESS=1 cargo test -p store --test cql_golden` and review the diff.

use std::path::Path;
use store::scylla::schema::{self, Replication};

/// The processing time messages without a broker timestamp arrive at
/// (2100-01-01): after every event time here, so none is too far ahead.
const NOW_MS: i64 = 4_102_444_800_000;

fn pipelines_plan() -> dsl::Plan {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let (_, compiled) = dsl::files::compile(&[root]).expect("pipelines dir");
    assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
    compiled.plan.expect("checked above")
}

fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cql").join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "snapshot {} differs (re-bless with BLESS=1 if intended)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn pipelines_cql() {
    let plan = pipelines_plan();
    assert_snapshot("pipelines.cql", &schema::render("streams", &Replication::Simple(1), &plan));
}

/// The keyspace statements of one replication: the `CREATE` run at
/// connect, and the `ALTER` an operator is told to run when an existing
/// keyspace differs.
fn keyspace_statements(replication: &Replication) -> String {
    replication.validate().expect("a valid replication");
    format!(
        "{};\n{};\n",
        schema::create_keyspace("streams", replication),
        schema::alter_keyspace("streams", replication)
    )
}

#[test]
fn simple_strategy_keyspace() {
    assert_snapshot("keyspace_simple.cql", &keyspace_statements(&Replication::Simple(3)));
}

#[test]
fn network_topology_keyspace() {
    let replication = Replication::NetworkTopology(vec![("dc1".into(), 3), ("dc2".into(), 3)]);
    assert_snapshot("keyspace_network_topology.cql", &keyspace_statements(&replication));
}

#[test]
fn additive_migration() {
    let plan = pipelines_plan();
    let metric = &plan.metrics[0];
    let table = store::schema::table_name(metric, 0);
    let mut out = String::new();
    for c in schema::data_columns(metric) {
        out.push_str(&format!("{};\n", schema::add_column("streams", &table, &c)));
    }
    assert_snapshot("add_columns.cql", &out);
}

/// Every row the engine produces for the shipped pipelines over generated
/// events binds to its upsert with the column types the CQL declares.
#[test]
fn every_generated_row_binds_to_its_upsert() {
    use engine::{CompiledPlan, EngineConfig, Output, Partition};
    let plan = std::sync::Arc::new(CompiledPlan::new(pipelines_plan(), EngineConfig::default()).expect("runnable"));
    let mut out = Output::default();
    let mut partition = Partition::new(plan.clone(), 0);
    let config = workload::Config { seed: 7, rate_per_s: 200.0, ..Default::default() };
    partition.process_all("mta.events", 0, workload::Generator::new(config).take(4_000), NOW_MS, &mut out);
    // The reputation source's observations, on its own topic.
    let mut observations = Partition::new(plan.clone(), 0);
    let mut observed = Output::default();
    let topic = plan.plan.sources.iter().find(|s| s.dnsbl.is_some()).map(|s| s.topic.clone()).expect("dnsbl source");
    let lines = [("spamhaus_zen", "listed", "null"), ("spamcop", "degraded", "\"timeout\""), ("spamcop", "clean", "null")]
        .iter()
        .enumerate()
        .map(|(i, (list, status, degraded))| format!(
            r#"{{"time":"2024-06-03T00:0{i}:00.000Z","list":"{list}","zone":"z.example","kind":"ip","target":"192.0.2.{i}","status":"{status}","code":null,"meaning":null,"degraded":{degraded},"txt":null,"weight":1.0,"budget_used":0.1,"resolver":"127.0.0.1:53","latency_ms":3,"cached":false}}"#
        ))
        .collect::<Vec<_>>();
    observations.process_all(&topic, 0, &lines, NOW_MS, &mut observed);
    observations.close_all(&mut observed);
    assert!(observed.dead_letters.is_empty(), "observations decode: {:?}", observed.dead_letters);
    out.rows.extend(observed.rows);
    partition.close_all(&mut out);
    let mut tables = std::collections::BTreeSet::new();
    let mut buffer = Vec::new();
    let (mut bound, mut bound_with_states, mut unset) = (0, 0, 0);
    for row in &out.rows {
        let metric = &row.metric;
        let series = store::schema::series_id(&row.keys);
        let values = store::scylla::row_values(metric, row, &series, schema::bucket_of(row.window_start, 60_000));
        let specs = store::scylla::upsert_specs("streams", metric, row.tier);
        buffer.clear();
        match store::scylla::bind(&specs, &values, &mut buffer) {
            Ok(n) => bound += n,
            Err(e) => panic!("{} tier {}: {e:?}\n{values:?}", metric.name, row.tier),
        }
        unset += values.iter().filter(|v| matches!(v, scylla::value::MaybeUnset::Unset)).count();
        buffer.clear();
        bound_with_states += store::scylla::bind(&specs, &with_every_state(row, values), &mut buffer).expect("binds");
        tables.insert(store::schema::table_name(metric, row.tier));
    }
    let all: usize = plan.plan.metrics.iter().map(|m| m.tiers.len()).sum();
    assert_eq!(tables.len(), all, "every table got rows: {tables:?}");
    let rows = out.rows.len() as f64;
    println!(
        "{} rows: {:.1} bound bytes per row, {:.1} with every state bound (the older layout), {:.2} columns unset per row",
        out.rows.len(),
        bound as f64 / rows,
        bound_with_states as f64 / rows,
        unset as f64 / rows
    );
    assert!(bound < bound_with_states && unset > out.rows.len(), "counts and sums bind no state");
}

/// `values` of `row` as the older layout bound them: every aggregate's
/// state beside its value.
fn with_every_state(row: &engine::Row, mut values: store::scylla::Values) -> store::scylla::Values {
    let columns = schema::data_columns(&row.metric);
    let mut states = row.states.iter();
    for (value, column) in values[schema::PRIMARY_KEY.len()..].iter_mut().zip(&columns) {
        if column.name.ends_with(store::schema::STATE_SUFFIX) {
            let state = states.next().expect("a state per state column");
            *value =
                scylla::value::MaybeUnset::Set(Some(scylla::value::CqlValue::Blob(store::schema::encode_state(state))));
        }
    }
    values
}
