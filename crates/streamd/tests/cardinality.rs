//! A metric grouped by a unique field (the message id) with
//! `export prometheus`: `/metrics` stays bounded by its cardinality limit
//! however many ids go by, and reports the overflow.

mod common;

use common::{free_port, get, repo, sample_sum, start_embedded, temp_dir};
use std::time::{Duration, Instant};

const LIMIT: usize = 50;

#[test]
fn exported_series_stay_within_the_cardinality_limit_and_overflow_is_reported() {
    let dir = temp_dir("cardinality");
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("pipelines dir");
    std::fs::copy(repo().join("pipelines/deliveries.stream"), pipelines.join("deliveries.stream")).expect("source");
    std::fs::write(
        pipelines.join("by_message.stream"),
        format!(
            "version 1\n\nimport \"deliveries.stream\"\n\n\
             metric by_message from deliveries\n  group by message_id\n  compute count() as events, p99(latency_ms) as p99_latency\n  \
             window 1m, lateness 2m\n  cardinality limit {LIMIT}\n  export prometheus\n"
        ),
    )
    .expect("pipeline");
    let port = free_port();
    let _streamd = start_embedded(&dir, port, &pipelines, 30);

    // Sample /metrics for a while: thousands of ids go by (3000 events/s,
    // each its own id), and every scrape stays within the limit.
    let (started, mut scrapes, mut max_series, mut last) = (Instant::now(), 0, 0usize, String::new());
    while started.elapsed() < Duration::from_secs(25) && scrapes < 8 {
        std::thread::sleep(Duration::from_millis(500));
        let Some(metrics) = get(port, "/metrics") else { continue };
        if sample_sum(&metrics, "stream_exported_series_overflow_total") == 0.0 {
            continue; // Not yet past the limit.
        }
        for family in ["stream_by_message_events_total{", "stream_by_message_p99_latency{"] {
            let series = metrics.lines().filter(|l| l.starts_with(family)).count();
            assert!(series <= LIMIT + 1, "{series} series of {family} with a limit of {LIMIT}:\n{metrics}");
            max_series = max_series.max(series);
        }
        let served = sample_sum(&metrics, "stream_exported_series");
        assert!(served <= (LIMIT + 1) as f64, "stream_exported_series = {served}");
        scrapes += 1;
        last = metrics;
    }
    assert!(scrapes >= 4, "too few scrapes past the limit ({scrapes}):\n{last}");
    assert!(max_series > LIMIT / 2, "the limit was used: {max_series} series");
    assert!(last.contains("stream_by_message_events_total{message_id=\"__other__\"}"), "{last}");
    let consumed = sample_sum(&last, "stream_pipeline_events_total{metric=\"by_message\"}");
    let folded = sample_sum(&last, "stream_exported_series_overflow_total{metric=\"by_message\"}");
    assert!(folded > LIMIT as f64, "overflowing keys are counted: {folded}");
    // The engine's own per-window limit folds events into `__other__` too.
    assert!(sample_sum(&last, "stream_cardinality_overflow_total{metric=\"by_message\"}") > 0.0, "{last}");
    // Open windows are bounded too: the limit per window and partition.
    let live = sample_sum(&last, "stream_live_series{metric=\"by_message\"}");
    assert!(live <= ((LIMIT + 1) * 4 * 4) as f64, "{live} open series");
    println!(
        "by_message: {consumed} events, at most {max_series} exported series, {folded} keys folded into __other__"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
