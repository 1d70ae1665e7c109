//! The reputation demo: `streamd --embedded` over the shipped pipelines
//! serves its own DNSBL zone on 127.0.0.1, polls it (this instance owns
//! partition 0 of the observation topic), produces the observations to the
//! in-process cluster and consumes them like any message: listed, clean and
//! degraded targets show on `/metrics` within a minute.

mod common;

use common::{free_port, get, repo, run_streamctl, start_embedded, start_embedded_watching, temp_dir, wait_until};
use std::time::Duration;

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_embedded_demo_shows_listed_clean_and_degraded_targets_on_metrics() {
    let dir = temp_dir("reputation");
    let port = free_port();
    let _streamd = start_embedded(&dir, port, &repo().join("pipelines"), 90);
    let mut last = String::new();
    wait_until("the first DNSBL sweep on /metrics", Duration::from_secs(60), || {
        last = get(port, "/metrics").unwrap_or_default();
        sample(&last, r#"stream_dnsbl_status_observations_total{list="spamhaus_zen",target="192.0.2.4"}"#).is_some()
            && sample(&last, r#"stream_dnsbl_status_observations_total{list="spamhaus_dbl",target="mail.example.com"}"#)
                .is_some()
            && sample(&last, r#"stream_dnsbl_health_canary_failed_ratio{list="spamhaus_zen"}"#).is_some()
    });
    let zen = |column: &str, target: &str| {
        sample(&last, &format!(r#"stream_dnsbl_status_{column}_total{{list="spamhaus_zen",target="{target}"}}"#))
    };
    // The demo zone lists 192.0.2.2 and .3, answers .4 with 127.255.255.254
    // (a list refusing a public resolver: degraded, not listed), and knows
    // nothing of .1 (clean).
    assert!(zen("listed", "192.0.2.2").is_some_and(|n| n >= 1.0), "{last}");
    assert!(zen("listed", "192.0.2.3").is_some_and(|n| n >= 1.0), "{last}");
    assert!(zen("degraded", "192.0.2.4").is_some_and(|n| n >= 1.0), "{last}");
    assert_eq!(zen("listed", "192.0.2.4"), None, "an error code is never a listing");
    assert!(zen("observations", "192.0.2.1").is_some_and(|n| n >= 1.0), "{last}");
    assert_eq!(zen("listed", "192.0.2.1"), None);
    assert_eq!(zen("degraded", "192.0.2.1"), None);
    // The lists' canaries pass in the demo.
    assert_eq!(sample(&last, r#"stream_dnsbl_health_canary_failed_ratio{list="spamhaus_zen"}"#), Some(0.0));
    // The poller's own series: the queries it sent, the listings it found.
    let poller = |series: &str| sample(&last, &format!("stream_dnsbl_poller_{series}"));
    assert!(poller(r#"queries_total{list="spamhaus_zen",source="reputation"}"#).is_some_and(|n| n >= 4.0), "{last}");
    assert!(
        poller(r#"answers_total{list="spamhaus_zen",source="reputation",state="listed"}"#).is_some_and(|n| n >= 2.0),
        "{last}"
    );
    assert_eq!(poller(r#"canary_failures_total{list="spamhaus_zen",source="reputation"}"#), Some(0.0));
    assert!(poller(r#"sweep_seconds_count{source="reputation"}"#).is_some_and(|n| n >= 1.0), "{last}");

    // The listings are open episodes in the store, one per list and target.
    let store = format!("sqlite:{}", dir.join("streamd.db").display());
    let output = run_streamctl(&["episodes", "--store", &store, "--open", "--format", "json"]);
    assert!(output.status.success(), "streamctl episodes: {}", String::from_utf8_lossy(&output.stderr));
    let episodes: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let mut listed: Vec<String> = episodes
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| format!("{} {}", e["list"].as_str().unwrap_or("?"), e["target"].as_str().unwrap_or("?")))
        .collect();
    listed.sort();
    assert_eq!(listed, ["spamcop 192.0.2.2", "spamhaus_zen 192.0.2.2", "spamhaus_zen 192.0.2.3"]);
    // The same through the query API.
    let api = get(port, "/api/v1/episodes?open=true&list=spamhaus_zen").expect("answered");
    let api: serde_json::Value = serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}"));
    let targets: Vec<&str> = api.as_array().expect("a list").iter().filter_map(|e| e["target"].as_str()).collect();
    assert_eq!(targets, ["192.0.2.2", "192.0.2.3"]);
}

/// A deploy that changes a `dnsbl` source moves the pollers to the new
/// plan: a list added by editing the watched files is polled (and shows on
/// `/metrics`) without a restart.
#[test]
fn a_deployed_dnsbl_source_is_polled_without_a_restart() {
    let dir = temp_dir("reputation-deploy");
    let pipelines = dir.join("pipelines");
    std::fs::create_dir_all(&pipelines).expect("pipelines dir");
    for entry in std::fs::read_dir(repo().join("pipelines")).expect("shipped pipelines") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "stream") {
            std::fs::copy(&path, pipelines.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let reputation = pipelines.join("reputation.stream");
    // Only the static targets: a sweep of every sending IP the demo stream
    // has seen takes minutes at the lists' query rates.
    let shipped: String = std::fs::read_to_string(&reputation)
        .expect("reputation.stream")
        .lines()
        .filter(|l| !l.trim_start().starts_with("targets from "))
        .map(|l| format!("{l}\n"))
        .collect();
    let spamcop = shipped.lines().find(|l| l.trim_start().starts_with("list spamcop ")).expect("the spamcop list");
    std::fs::write(&reputation, shipped.replace(&format!("{spamcop}\n"), "")).expect("without spamcop");

    let port = free_port();
    let _streamd = start_embedded_watching(&dir, port, &pipelines, 150);
    let series = |list: &str| format!(r#"stream_dnsbl_status_observations_total{{list="{list}",target="192.0.2.2"}}"#);
    let mut last = String::new();
    wait_until("the first plan's sweep on /metrics", Duration::from_secs(60), || {
        last = get(port, "/metrics").unwrap_or_default();
        sample(&last, &series("spamhaus_zen")).is_some()
    });
    assert_eq!(sample(&last, &series("spamcop")), None, "spamcop is not in the first plan");

    std::fs::write(&reputation, &shipped).expect("with spamcop again");
    wait_until("the deployed list's sweep on /metrics", Duration::from_secs(60), || {
        last = get(port, "/metrics").unwrap_or_default();
        sample(&last, &series("spamcop")).is_some()
    });
    // The demo zone of the new pollers lists 192.0.2.2 on every list.
    assert!(
        sample(&last, r#"stream_dnsbl_status_listed_total{list="spamcop",target="192.0.2.2"}"#)
            .is_some_and(|n| n >= 1.0),
        "{last}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
