//! `streamctl check` speed: parse, check and compile a large program.
//!
//! `cargo bench -p benches --bench dsl_check`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn check_large_program(c: &mut Criterion) {
    let text = benches::large_program(2000, 200);
    let mut group = c.benchmark_group("dsl");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("check_2000_rules_200_metrics", |b| {
        b.iter_batched(
            || text.clone(),
            |text| {
                let compiled = dsl::compile_str("large.stream", &text);
                assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
                compiled
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("parse_only_2000_rules_200_metrics", |b| {
        b.iter(|| dsl::parser::parse(dsl::span::FileId(0), &text).expect("parses"))
    });
    group.finish();
}

criterion_group!(benches, check_large_program);
criterion_main!(benches);
