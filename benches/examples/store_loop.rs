//! Writes the rows the engine emits over the benchmark's events into a
//! fresh SQLite database, in batches the size of the consumer's flushes, for
//! profilers: `ROUNDS=3 target/release/examples/store_loop`.
//!
//! `HISTORY=N` first writes N copies of the rows, each a day earlier than the
//! next (untimed), so the timed writes go into a database that already holds
//! older windows, as a daemon's does after a while.
use store::{Store, WriteBatch};

const DAY_MS: i64 = 86_400_000;

fn main() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (n, rounds, batch) = (env("ENGINE_BENCH_EVENTS", 200_000), env("ROUNDS", 3), env("BATCH", 4096));
    let history = env("HISTORY", 0) as i64;
    let path = benches::default_events_file(n, 42).expect("events can be generated");
    let events = benches::Events::load(&path).expect("events load");
    let plan = benches::pipelines_plan();
    let compiled = std::sync::Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan"));
    let rows = benches::partition_rows(&compiled, &events);
    let days_earlier = |days: i64| -> Vec<engine::Row> {
        let shift = |ms: i64| ms - days * DAY_MS;
        let shifted = |row: &engine::Row| engine::Row {
            window_start: shift(row.window_start),
            included_through: row.included_through.map(shift),
            ..row.clone()
        };
        rows.iter().map(shifted).collect()
    };
    let write_all = |store: &mut store::sqlite::SqliteStore, rows: &[engine::Row]| {
        for chunk in rows.chunks(batch) {
            store.write(&WriteBatch { topic: "mta.events", rows: chunk, ..Default::default() }).expect("write");
        }
        // Pages still in the write-ahead log are part of the cost: copy them in.
        store.connection().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
    };
    let dir = std::env::temp_dir().join(format!("store_loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut best = 0.0f64;
    for round in 0..rounds {
        let db = dir.join(format!("round-{round}.db"));
        let mut store = store::sqlite::SqliteStore::open(&db.to_string_lossy()).expect("store");
        store.setup(&compiled.plan).expect("schema");
        for days in (1..=history).rev() {
            write_all(&mut store, &days_earlier(days));
        }
        let start = std::time::Instant::now();
        write_all(&mut store, &rows);
        best = best.max(rows.len() as f64 / start.elapsed().as_secs_f64());
        drop(store);
        let _ = std::fs::remove_file(&db);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("store: {} rows ({history} days of history before), best {best:.0} rows/s", rows.len());
}
