//! Engine throughput over generated delivery events.
//!
//! `cargo bench -p benches --bench engine`
//!
//! Loads `ENGINE_BENCH_EVENTS` (default 200,000) events of the project's
//! generator (`workload`, seed 42; written into `<target>/bench-data` on
//! first use) into memory once, then measures, per event:
//!
//! * `parse_only`: `serde_json` into a struct borrowing every field: the floor
//!   any JSON consumer pays;
//! * `engine_all_pipelines`: a fresh `Partition` running the plan of every
//!   file in `pipelines/` over all events, emitted rows dropped as they come,
//!   `close_all` included;
//! * `classify_only`: the `std:bounces` classifier alone (its `RegexSet`s and
//!   rule conditions, through `ClassifierRuntime::classify`) over the
//!   (diagnostic, status, smtp_code, provider, smtp_command) of the bounced and deferred
//!   events, pre-extracted; throughput is classifications/s.
//!
//! A summary follows: the three passes interleaved over 7 rounds (so a
//! shared machine's drifting speed hits all of them alike), with events/s
//! and the engine / parse-only ratio per round, median and best.

use benches::{BounceClassifier, Event, Events};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn event_count() -> usize {
    std::env::var("ENGINE_BENCH_EVENTS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(200_000)
}

fn load_events() -> Option<Events> {
    let n = event_count();
    let path = match benches::default_events_file(n, 42) {
        Ok(path) => path,
        Err(why) => {
            eprintln!("SKIPPED engine benchmarks: cannot generate events: {why}");
            return None;
        }
    };
    let events = Events::load(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Some(events)
}

fn engine_benches(c: &mut Criterion) {
    let Some(events) = load_events() else { return };
    let n = events.len() as u64;

    let plan = benches::pipelines_plan();
    let metrics = plan.metrics.len();
    let compiled = Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan compiles"));
    let (rows, dead) = benches::run_partition(&compiled, &events);
    eprintln!(
        "{n} events ({:.0} bytes on average), {metrics} metrics in pipelines/: {rows} rows, {dead} dead letters per run",
        events.bytes() as f64 / n as f64
    );

    // The bounce classifier and the parameters of every bounced / deferred event.
    let bounce = BounceClassifier::new(&compiled.plan);
    let parsed: Vec<Event<'_>> =
        events.iter().map(|line| serde_json::from_slice(line).expect("generated events parse")).collect();
    let failures = bounce.failures(&parsed);
    let BounceClassifier { runtime: classifier, regexes } = bounce;
    let unclassified = failures.iter().filter(|p| classifier.classify(p, &regexes).is_none()).count();
    eprintln!("{} bounced or deferred events to classify, {unclassified} fall to the default", failures.len());

    let parse_pass = || {
        for line in events.iter() {
            let event: Event<'_> = serde_json::from_slice(line).expect("generated events parse");
            black_box(&event);
        }
    };
    let engine_pass = || {
        black_box(benches::run_partition(&compiled, &events));
    };
    let classify_pass = || {
        for params in &failures {
            black_box(classifier.classify(params, &regexes));
        }
    };
    let timed = |pass: &dyn Fn(), iters: u64| {
        let start = Instant::now();
        for _ in 0..iters {
            pass();
        }
        start.elapsed()
    };

    let mut group = c.benchmark_group("engine");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(n));
    group.bench_function("parse_only", |b| b.iter_custom(|iters| timed(&parse_pass, iters)));
    group.bench_function("engine_all_pipelines", |b| b.iter_custom(|iters| timed(&engine_pass, iters)));
    group.throughput(Throughput::Elements(failures.len() as u64));
    group.bench_function("classify_only", |b| b.iter_custom(|iters| timed(&classify_pass, iters)));
    group.finish();

    // The machine may be shared and its speed drifts over seconds, so the
    // ratio comes from passes interleaved in the same rounds, not from the
    // separate criterion runs above.
    let rounds = 7;
    let (mut parse, mut engine, mut classify, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let p = n as f64 / timed(&parse_pass, 1).as_secs_f64();
        let e = n as f64 / timed(&engine_pass, 1).as_secs_f64();
        let c = failures.len() as f64 / (timed(&classify_pass, 10).as_secs_f64() / 10.0);
        parse.push(p);
        engine.push(e);
        classify.push(c);
        ratios.push(e / p);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!("\nsummary: {rounds} interleaved rounds over {n} events, one thread; median (best) per round");
    println!("  parse_only            {:>10.0} events/s          ({:.0})", median(&mut parse), best(&parse));
    println!("  engine_all_pipelines  {:>10.0} events/s          ({:.0})", median(&mut engine), best(&engine));
    println!("  classify_only         {:>10.0} classifications/s ({:.0})", median(&mut classify), best(&classify));
    println!("  engine / parse_only   {:>10.2}                   ({:.2})", median(&mut ratios), best(&ratios));
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
