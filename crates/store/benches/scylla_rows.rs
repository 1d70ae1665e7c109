//! The Scylla backend's per-row CPU cost before the network: series id,
//! bucket, bind values (aggregate values plus JSON-encoded states) and
//! type-checked serialisation into the request's bytes, for the rows the
//! shipped pipelines produce over generated events.
//!
//! `cargo bench -p store --bench scylla_rows`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::{CompiledPlan, EngineConfig, Output, Partition, Row};
use std::sync::Arc;
use store::scylla::{bind, row_values, schema, upsert_specs};

/// The processing time messages without a broker timestamp arrive at
/// (2100-01-01): after every event time here, so none is too far ahead.
const NOW_MS: i64 = 4_102_444_800_000;

fn rows() -> (Arc<CompiledPlan>, Vec<Row>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines");
    let (_, compiled) = dsl::files::compile(&[root]).expect("pipelines dir");
    let plan = Arc::new(
        CompiledPlan::new(compiled.plan.expect("pipelines compile"), EngineConfig::default()).expect("runnable"),
    );
    let mut out = Output::default();
    let mut partition = Partition::new(plan.clone(), 0);
    let config = workload::Config { seed: 7, rate_per_s: 200.0, ..Default::default() };
    partition.process_all("mta.events", 0, workload::Generator::new(config).take(50_000), NOW_MS, &mut out);
    partition.close_all(&mut out);
    (plan, out.rows)
}

fn bench(c: &mut Criterion) {
    let (plan, rows) = rows();
    let specs: Vec<Vec<_>> =
        plan.plan.metrics.iter().map(|m| (0..m.tiers.len()).map(|t| upsert_specs("streams", m, t)).collect()).collect();
    let mut group = c.benchmark_group("scylla_rows");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            let mut n = 0;
            for row in &rows {
                let metric = &row.metric;
                let series = store::schema::series_id(&row.keys);
                let bucket = schema::bucket_of(row.window_start, metric.tiers[row.tier].width_ms);
                n += row_values(metric, row, &series, bucket).len();
            }
            n
        });
    });
    group.bench_function("encode_and_bind", |b| {
        let mut buffer = Vec::with_capacity(1 << 16);
        b.iter(|| {
            let mut bytes = 0;
            for row in &rows {
                let metric = &row.metric;
                let series = store::schema::series_id(&row.keys);
                let bucket = schema::bucket_of(row.window_start, metric.tiers[row.tier].width_ms);
                let values = row_values(metric, row, &series, bucket);
                buffer.clear();
                bytes += bind(
                    &specs[row.metric_index(&plan.plan).expect("a metric of the plan")][row.tier],
                    &values,
                    &mut buffer,
                )
                .expect("binds");
            }
            bytes
        });
    });
    group.finish();
    let mut buffer = Vec::new();
    let total: usize = rows
        .iter()
        .map(|row| {
            let metric = &row.metric;
            let values = row_values(metric, row, &store::schema::series_id(&row.keys), 0);
            buffer.clear();
            bind(&specs[row.metric_index(&plan.plan).expect("a metric of the plan")][row.tier], &values, &mut buffer)
                .expect("binds")
        })
        .sum();
    println!("{} rows, {:.0} bound bytes per row on average", rows.len(), total as f64 / rows.len() as f64);
}

criterion_group!(benches, bench);
criterion_main!(benches);
