//! Runs the engine over the bench events in a loop, for profilers.
fn main() {
    let n: usize = std::env::var("ENGINE_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let path = benches::events_file(n, 42, &[]).expect("events");
    let events = benches::Events::load(&path).expect("load");
    let plan = benches::pipelines_plan();
    let compiled = std::sync::Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan"));
    let mut best = 0.0f64;
    for _ in 0..rounds {
        let start = std::time::Instant::now();
        std::hint::black_box(benches::run_partition(&compiled, &events));
        best = best.max(events.len() as f64 / start.elapsed().as_secs_f64());
    }
    println!("best {best:.0} events/s, rows {:?}", benches::run_partition(&compiled, &events));
}
