//! How SQLite keeps aggregate states: a count or a sum is stored as its
//! value alone (its state column null), every other aggregate with its
//! state. Reads give back exactly the states the engine emitted, and rows
//! written in the earlier layout (every state beside its value) read the
//! same.

use engine::aggregate::AggState;
use engine::{CompiledPlan, EngineConfig, Output, Partition, Row};
use store::schema::{encode_state, quote, series_id, table_name, STATE_SUFFIX};
use store::sqlite::SqliteStore;
use store::{RowFilter, Store, WriteBatch};

const TOPIC: &str = "mta.events";
const NOW_MS: i64 = 4_102_444_800_000;

fn plan() -> CompiledPlan {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let (_, compiled) = dsl::files::compile(&[dir]).expect("pipelines");
    assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
    let plan = compiled.plan.expect("checked above");
    CompiledPlan::new(plan, EngineConfig::default()).expect("runnable")
}

/// The rows of one partition over generated events, as the store keeps
/// them: the last of each row written.
fn rows(plan: &std::sync::Arc<CompiledPlan>) -> Vec<Row> {
    rows_of(plan, 6_000)
}

/// [`rows`] of `events` events.
fn rows_of(plan: &std::sync::Arc<CompiledPlan>, events: usize) -> Vec<Row> {
    let config = workload::Config { seed: 8, rate_per_s: 20.0, ..Default::default() };
    let mut partition = Partition::new(std::sync::Arc::clone(plan), 0);
    let mut out = Output::default();
    partition.process_all(TOPIC, 0, workload::Generator::new(config).take(events), NOW_MS, &mut out);
    partition.close_all(&mut out);
    engine::drop_superseded(&mut out.rows);
    out.rows
}

/// Every stored row, each state as JSON (distinct counts by their estimate:
/// their serialised form carries a pointer).
fn stored(store: &SqliteStore, plan: &dsl::Plan) -> Vec<String> {
    let mut lines = Vec::new();
    for (m, metric) in plan.metrics.iter().enumerate() {
        for tier in 0..metric.tiers.len() {
            let filter = RowFilter { tier, from_ms: None, to_ms: None, equals: vec![], partition: None };
            for row in store.read(plan, m, &filter).expect("read") {
                lines.push(describe(&row));
            }
        }
    }
    lines.sort();
    lines
}

fn describe(row: &Row) -> String {
    let states: Vec<String> = row
        .states
        .iter()
        .map(|s| match s {
            AggState::Distinct { .. } => format!("distinct {:?}", s.finish()),
            other => serde_json::to_string(other).expect("state"),
        })
        .collect();
    format!(
        "{} {} {} {} {} {:?} {}",
        row.metric.name,
        row.tier,
        row.window_start,
        row.partition,
        series_id(&row.keys),
        row.included_through,
        states.join(" ")
    )
}

#[test]
fn counts_and_sums_are_stored_as_their_values_and_read_back_as_the_same_states() {
    let plan = std::sync::Arc::new(plan());
    let rows = rows(&plan);
    let mut expected: Vec<String> = rows.iter().map(describe).collect();
    expected.sort();
    let dir = std::env::temp_dir().join(format!("store-states-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("s.db");
    let mut store = SqliteStore::open(path.to_str().expect("utf-8")).expect("open");
    store.setup(&plan.plan).expect("setup");
    let batch = WriteBatch { topic: TOPIC, rows: &rows, dead_letters: &[], checkpoints: &[], owners: &[] };
    store.write(&batch).expect("write");
    assert_eq!(stored(&store, &plan.plan), expected, "read back as written");

    // Counts and sums have no state column value; the other aggregates do.
    let (mut value_only, mut with_state) = (0, 0);
    for metric in &plan.plan.metrics {
        for tier in 0..metric.tiers.len() {
            for a in &metric.aggregates {
                let sql = format!(
                    "SELECT count(*) FILTER (WHERE {0} IS NULL), count(*) FILTER (WHERE {0} IS NOT NULL) FROM {1}",
                    quote(&format!("{}{STATE_SUFFIX}", a.name)),
                    quote(&table_name(metric, tier))
                );
                let (nulls, states): (i64, i64) =
                    store.connection().query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?))).expect("count");
                match AggState::new(a) {
                    AggState::Count { .. } | AggState::SumInt { .. } | AggState::SumFloat { .. } => {
                        assert_eq!(states, 0, "{} of {}", a.name, metric.name);
                        value_only += nulls;
                    }
                    _ => {
                        assert_eq!(nulls, 0, "{} of {}", a.name, metric.name);
                        with_state += states;
                    }
                }
            }
        }
    }
    assert!(value_only > 10_000 && with_state > 1_000, "{value_only} values alone, {with_state} with states");

    // The earlier layout: every state beside its value. It reads the same.
    let tx = store.connection().unchecked_transaction().expect("begin");
    for row in &rows {
        let metric = &row.metric;
        for (a, state) in metric.aggregates.iter().zip(row.states.iter()) {
            if state.is_its_value() {
                let sql = format!(
                    "UPDATE {} SET {} = ?1 WHERE series = ?2 AND window_start = ?3 AND source_partition = ?4",
                    quote(&table_name(metric, row.tier)),
                    quote(&format!("{}{STATE_SUFFIX}", a.name))
                );
                let changed = tx
                    .execute(
                        &sql,
                        rusqlite::params![encode_state(state), series_id(&row.keys), row.window_start, row.partition],
                    )
                    .expect("update");
                assert_eq!(changed, 1);
            }
        }
    }
    tx.commit().expect("commit");
    assert_eq!(stored(&store, &plan.plan), expected, "the earlier layout reads the same");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The store writes a batch's rows in its tables' key order (a window
/// closes its series in hash order); which order they came in must not
/// matter, except that of two rows with the same key the later is kept.
/// The batches are large enough (over 20,000 rows) to be encoded on a
/// second thread while they are inserted, and are also written in small
/// batches, encoded inline, to the same result.
#[test]
fn rows_in_any_order_are_stored_the_same_and_of_one_key_the_later_row_is_kept() {
    let plan = std::sync::Arc::new(plan());
    let rows = rows_of(&plan, 24_000);
    assert!(rows.len() > 20_000, "{} rows", rows.len());
    let mut expected: Vec<String> = rows.iter().map(describe).collect();
    expected.sort();
    let dir = std::env::temp_dir().join(format!("store-order-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    // Each row with another row's states under its own key: a version that
    // a later row of the same key must replace (and would, in turn, replace).
    let base: Vec<&Row> = rows.iter().filter(|r| r.tier == 0).collect();
    let altered: Vec<Row> = base
        .windows(2)
        .filter(|pair| {
            std::sync::Arc::ptr_eq(&pair[0].metric, &pair[1].metric) && describe(pair[0]) != describe(pair[1])
        })
        .map(|pair| Row { states: std::sync::Arc::clone(&pair[1].states), ..pair[0].clone() })
        .collect();
    assert!(altered.len() > 100, "{} altered rows", altered.len());

    for (name, batch, want) in [
        ("reversed", rows.iter().rev().cloned().collect::<Vec<_>>(), expected.clone()),
        ("altered first", altered.iter().chain(rows.iter().rev()).cloned().collect(), expected.clone()),
        ("altered last", rows.iter().chain(altered.iter()).cloned().collect(), {
            let key = |r: &Row| (r.metric.name.clone(), r.tier, r.window_start, series_id(&r.keys));
            let replaced: std::collections::HashSet<_> = altered.iter().map(key).collect();
            let mut want: Vec<String> =
                rows.iter().filter(|r| !replaced.contains(&key(r))).chain(altered.iter()).map(describe).collect();
            want.sort();
            want
        }),
    ] {
        for (how, batch_rows) in [("at once", batch.len()), ("in small batches", 1_000)] {
            let path = dir.join(format!("{}-{}.db", name.replace(' ', "_"), batch_rows));
            let mut store = SqliteStore::open(path.to_str().expect("utf-8")).expect("open");
            store.setup(&plan.plan).expect("setup");
            for rows in batch.chunks(batch_rows) {
                store.write(&WriteBatch { topic: TOPIC, rows, ..WriteBatch::default() }).expect("write");
            }
            assert_eq!(stored(&store, &plan.plan), want, "{name}, {how}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
