//! Bounce classifications per second on one core: the standard `bounce`
//! classifier (`dsl/stdlib/bounces.stream`) over the bounced and deferred
//! events of a generated workload (`gen_events.py`, 200k events, seed 42).
//!
//! `cargo bench -p benches --bench classify`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::eval::{ClassifierRuntime, RegexCache};
use engine::value::Val;

/// (diagnostic, status, smtp_code, provider) of each failed delivery; the
/// generated events carry no `smtp_command`, which is passed as null.
type Reply = (Option<String>, Option<String>, Option<i64>, Option<String>);

fn replies() -> Vec<Reply> {
    let path = benches::events_file(200_000, 42, &["--no-engagement"]).expect("events");
    let text = std::fs::read_to_string(path).expect("read events");
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v.get("event").and_then(|e| e.as_str()), Some("bounced" | "deferred")))
        .map(|v| (s(&v, "diagnostic"), s(&v, "status"), v.get("smtp_code").and_then(|c| c.as_i64()), s(&v, "provider")))
        .collect()
}

fn bounce() -> (ClassifierRuntime, RegexCache) {
    let root = benches::workspace_root().join("dsl/stdlib/bounces.stream");
    let plan = benches::compile_files(&[root.to_string_lossy().into_owned()], None);
    let plan = plan.classifiers.into_iter().find(|c| c.name == "bounce").expect("bounce classifier");
    let mut regexes = RegexCache::default();
    regexes.add_all(plan.rules.iter().map(|r| &r.condition)).expect("regexes");
    (ClassifierRuntime::new(plan).expect("matchers"), regexes)
}

fn text(x: &Option<String>) -> Val<'_> {
    x.as_deref().map_or(Val::Null, |x| Val::Str(x.into()))
}

fn classify(c: &mut Criterion) {
    let replies = replies();
    let (classifier, regexes) = bounce();
    let names: Vec<&str> = classifier.plan.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["diagnostic", "status", "smtp_code", "provider", "smtp_command"], "the bench's parameter order");
    let params: Vec<[Val<'_>; 5]> = replies
        .iter()
        .map(|(d, s, code, p)| [text(d), text(s), code.map_or(Val::Null, Val::Int), text(p), Val::Null])
        .collect();
    let mut group = c.benchmark_group("classify");
    group.sample_size(10).measurement_time(std::time::Duration::from_secs(5));
    group.throughput(Throughput::Elements(params.len() as u64));
    group.bench_function(format!("bounce_stdlib_{}_rules_workload_failures", classifier.plan.rules.len()), |b| {
        b.iter(|| params.iter().filter(|p| classifier.classify(&p[..], &regexes).is_some()).count())
    });
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
