//! Runs the engine over the benchmark's events in a loop, for profilers
//! (`PARSE_ONLY=1`: the parse-only baseline instead; `DECODE_ONLY=1`: the
//! engine's decoder alone; `CLASSIFY_ONLY=1`: the `std:bounces` classifier
//! alone over the bounced and deferred events; `PARTITIONS=4`: the events dealt to four
//! partitions in chunks of 1,024, as the consumer feeds them):
//!
//! `ROUNDS=1 valgrind --tool=callgrind target/release/examples/engine_loop`
fn main() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (n, rounds) = (env("ENGINE_BENCH_EVENTS", 200_000), env("ROUNDS", 10));
    let parse_only = std::env::var_os("PARSE_ONLY").is_some();
    let decode_only = std::env::var_os("DECODE_ONLY").is_some();
    let classify_only = std::env::var_os("CLASSIFY_ONLY").is_some();
    let path = benches::events_file(n, 42, &[]).expect("events can be generated");
    let events = benches::Events::load(&path).expect("events load");
    let plan = benches::pipelines_plan();
    let compiled = std::sync::Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan"));
    let bounce = compiled.plan.classifiers.iter().find(|c| c.name == "bounce").expect("std:bounces is imported");
    let classifier = engine::eval::ClassifierRuntime::new(bounce.clone()).expect("classifier");
    let mut regexes = engine::eval::RegexCache::default();
    regexes.add_all(bounce.rules.iter().map(|r| &r.condition)).expect("regexes");
    let param_names: Vec<String> = bounce.params.iter().map(|p| p.name.clone()).collect();
    let parsed: Vec<benches::Event<'_>> = if classify_only {
        events.iter().map(|line| serde_json::from_slice(line).expect("generated events parse")).collect()
    } else {
        Vec::new()
    };
    let failures: Vec<_> = parsed
        .iter()
        .filter(|e| e.event == "bounced" || e.event == "deferred")
        .map(|e| benches::classifier_params(e, &param_names))
        .collect();
    let mut best = 0.0f64;
    for _ in 0..rounds {
        let start = std::time::Instant::now();
        if classify_only {
            for params in &failures {
                std::hint::black_box(classifier.classify(params, &regexes));
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
