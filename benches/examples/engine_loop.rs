//! Runs the engine over the benchmark's events in a loop, for profilers
//! (`PARSE_ONLY=1`: the parse-only baseline instead; `DECODE_ONLY=1`: the
//! engine's decoder alone; `CLASSIFY_ONLY=1`: the `std:bounces` classifier
//! alone over the bounced and deferred events; `PARTITIONS=4`: the events dealt to four
//! partitions in chunks of 1,024, as the consumer feeds them; `METRICS=a,b`:
//! only those metrics of `pipelines/`, `METRICS=` none, which leaves decoding
//! and the per-event loop):
//!
//! `ROUNDS=1 valgrind --tool=callgrind target/release/examples/engine_loop`
fn main() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (n, rounds) = (env("ENGINE_BENCH_EVENTS", 200_000), env("ROUNDS", 10));
    let parse_only = std::env::var_os("PARSE_ONLY").is_some();
    let decode_only = std::env::var_os("DECODE_ONLY").is_some();
    let classify_only = std::env::var_os("CLASSIFY_ONLY").is_some();
    let path = benches::default_events_file(n, 42).expect("events can be generated");
    let events = benches::Events::load(&path).expect("events load");
    let mut plan = benches::pipelines_plan();
    if let Ok(names) = std::env::var("METRICS") {
        let names: Vec<&str> = names.split(',').filter(|name| !name.is_empty()).collect();
        if let Some(unknown) = names.iter().find(|name| !plan.metrics.iter().any(|m| m.name == **name)) {
            panic!("METRICS names `{unknown}`, which no pipeline defines");
        }
        plan.metrics.retain(|m| names.contains(&m.name.as_str()));
        // Alerts name their metric; none is run here.
        plan.alerts.clear();
    }
    let compiled = std::sync::Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan"));
    // Built only for its mode: it would dominate an instruction profile of the others.
    let bounce = classify_only.then(|| benches::BounceClassifier::new(&compiled.plan));
    let parsed: Vec<benches::Event<'_>> = match bounce {
        Some(_) => events.iter().map(|line| serde_json::from_slice(line).expect("generated events parse")).collect(),
        None => Vec::new(),
    };
    let failures = bounce.as_ref().map(|b| b.failures(&parsed)).unwrap_or_default();
    let mut best = 0.0f64;
    for _ in 0..rounds {
        let start = std::time::Instant::now();
        if let Some(bounce) = &bounce {
            for params in &failures {
                std::hint::black_box(bounce.runtime.classify(params, &bounce.regexes));
            }
            best = best.max(failures.len() as f64 / start.elapsed().as_secs_f64());
            continue;
        }
        if decode_only {
            let decoder = engine::decode::Decoder::new(&compiled.plan.sources[0], 1 << 20);
            for line in events.iter() {
                std::hint::black_box(decoder.decode(line).ok());
            }
        } else if parse_only {
            for line in events.iter() {
                std::hint::black_box(serde_json::from_slice::<benches::Event<'_>>(line).ok());
            }
        } else {
            match env("PARTITIONS", 1) {
                1 => drop(std::hint::black_box(benches::run_partition(&compiled, &events))),
                count => drop(std::hint::black_box(benches::run_partitions(&compiled, &events, count, 1024))),
            }
        }
        best = best.max(events.len() as f64 / start.elapsed().as_secs_f64());
    }
    println!(
        "{}: best {best:.0} events/s",
        if classify_only {
            "classify-only (classifications/s)"
        } else if decode_only {
            "decode-only"
        } else if parse_only {
            "parse-only"
        } else {
            "engine"
        }
    );
}
