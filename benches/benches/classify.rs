//! Bounce classifications per second on one core: the standard `bounce`
//! classifier (`dsl/stdlib/bounces.stream`) over the bounced and deferred
//! events of a generated workload (`workload`, 200k events, seed 42, no engagement events).
//!
//! `cargo bench -p benches --bench classify`

use benches::{BounceClassifier, Event, Events};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn classify(c: &mut Criterion) {
    let path =
        benches::events_file(200_000, &workload::Config { engagement: false, ..Default::default() }).expect("events");
    let events = Events::load(&path).expect("read events");
    let parsed: Vec<Event<'_>> =
        events.iter().map(|line| serde_json::from_slice(line).expect("generated events parse")).collect();
    let root = benches::workspace_root().join("dsl/stdlib/bounces.stream");
    let bounce = BounceClassifier::new(&benches::compile_files(&[root.to_string_lossy().into_owned()], None));
    let failures = bounce.failures(&parsed);
    let mut group = c.benchmark_group("classify");
    group.sample_size(10).measurement_time(std::time::Duration::from_secs(5));
    group.throughput(Throughput::Elements(failures.len() as u64));
    group.bench_function(format!("bounce_stdlib_{}_rules_workload_failures", bounce.runtime.plan.rules.len()), |b| {
        b.iter(|| failures.iter().filter(|p| bounce.runtime.classify(p, &bounce.regexes).is_some()).count())
    });
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
