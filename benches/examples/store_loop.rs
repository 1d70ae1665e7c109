//! Writes the rows the engine emits over the benchmark's events into a
//! fresh SQLite database, in batches the size of the consumer's flushes, for
//! profilers: `ROUNDS=3 target/release/examples/store_loop`.
use store::{Store, WriteBatch};

fn main() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (n, rounds, batch) = (env("ENGINE_BENCH_EVENTS", 200_000), env("ROUNDS", 3), env("BATCH", 4096));
    let path = benches::events_file(n, 42, &[]).expect("events can be generated");
    let events = benches::Events::load(&path).expect("events load");
    let plan = benches::pipelines_plan();
    let compiled = std::sync::Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan"));
    let rows = benches::partition_rows(&compiled, &events);
    let dir = std::env::temp_dir().join(format!("store_loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut best = 0.0f64;
    for round in 0..rounds {
        let db = dir.join(format!("round-{round}.db"));
        let mut store = store::sqlite::SqliteStore::open(&db.to_string_lossy()).expect("store");
        store.setup(&compiled.plan).expect("schema");
        let start = std::time::Instant::now();
        for chunk in rows.chunks(batch) {
            store
                .write(&compiled.plan, &WriteBatch { topic: "mta.events", rows: chunk, ..Default::default() })
                .expect("write");
        }
        best = best.max(rows.len() as f64 / start.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("store: {} rows, best {best:.0} rows/s", rows.len());
}
