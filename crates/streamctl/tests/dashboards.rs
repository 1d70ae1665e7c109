//! `streamctl dashboards`: golden dashboards, checked against Grafana's
//! published dashboard types.
//!
//! The dashboards of `pipelines/` are checked in where the docker stack
//! provisions them (`docker/grafana/dashboards/`), so that directory is the
//! golden snapshot. Re-bless with `BLESS=1 cargo test -p streamctl --test
//! dashboards` and review the diff.
//!
//! The type check wraps each dashboard as `const d: Dashboard = …` and runs
//! `tsc --strict` against `@grafana/schema` (versions pinned in
//! `tests/grafana/package.json`, installed once into the target directory).
//! An object literal gets TypeScript's excess-property check, so a misspelt
//! or misplaced field fails too, not only a wrong type. Without node and npm
//! the check prints `SKIPPED`, except under `CI`, where it fails.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const GOLDEN: &str = "docker/grafana/dashboards";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamctl-dashboards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn json_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".json"));
    names.sort();
    names
}

fn generate(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["dashboards", "pipelines/", "--out", dir.to_str().expect("utf-8")])
        .current_dir(repo())
        .output()
        .expect("run streamctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dashboards_of_the_shipped_pipelines_are_the_checked_in_files() {
    let dir = temp_dir("golden");
    generate(&dir);
    let generated = json_files(&dir);
    // A dashboard per file that defines metrics, and streamd's.
    assert_eq!(
        generated,
        ["bounces.json", "delivery.json", "engagement.json", "latency.json", "reputation.json", "streamd.json"]
    );
    let golden = repo().join(GOLDEN);
    if std::env::var_os("BLESS").is_some() {
        for old in json_files(&golden) {
            std::fs::remove_file(golden.join(old)).expect("remove");
        }
        for name in &generated {
            std::fs::copy(dir.join(name), golden.join(name)).expect("bless");
        }
    }
    assert_eq!(json_files(&golden), generated, "{GOLDEN} holds other files (re-bless with BLESS=1)");
    for name in &generated {
        let actual = std::fs::read_to_string(dir.join(name)).expect("generated");
        let expected = std::fs::read_to_string(golden.join(name)).expect("golden");
        assert!(
            actual == expected,
            "{GOLDEN}/{name} is stale (re-bless with BLESS=1 if intended); generated:\n{actual}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join(GOLDEN).join(name)).expect("read")).expect("json")
}

#[test]
fn a_row_per_metric_a_panel_per_exported_column_and_alert_links() {
    let delivery = load("delivery.json");
    let panels = delivery["panels"].as_array().expect("panels");
    let rows: Vec<&str> = panels.iter().filter(|p| p["type"] == "row").filter_map(|p| p["title"].as_str()).collect();
    assert_eq!(rows, ["delivery_by_sender", "delivery_by_ip", "delivery_by_provider", "account_volume"]);
    let rate = panels
        .iter()
        .find(|p| {
            p["title"] == "bounce_rate" && p["targets"][0]["expr"].as_str().is_some_and(|e| e.contains("by_sender"))
        })
        .expect("bounce_rate panel of delivery_by_sender");
    let expr = rate["targets"][0]["expr"].as_str().expect("expr");
    assert!(expr.contains("stream_delivery_by_sender_bounced_total{sender_domain=~\"$sender_domain\"}"), "{expr}");
    assert_eq!(rate["targets"][0]["legendFormat"], "{{sender_domain}}");
    assert_eq!(rate["links"][0]["url"], "/alerting/list?search=high_bounce_rate");
    // Not exported: a row that says where its data is instead.
    assert!(panels.iter().any(|p| p["title"] == "account_volume is not exported"));
    let variables: Vec<&str> =
        delivery["templating"]["list"].as_array().expect("list").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(variables, ["datasource", "sender_domain", "ip_pool", "sending_ip", "provider"]);
    let links: Vec<&str> =
        delivery["links"].as_array().expect("links").iter().filter_map(|l| l["title"].as_str()).collect();
    assert!(links.contains(&"Alert: high_bounce_rate") && links.contains(&"Alert: provider_deferring"), "{links:?}");

    let streamd = load("streamd.json");
    let text = streamd.to_string();
    for series in
        ["stream_events_consumed_total", "stream_consumer_lag", "stream_dead_letters_total", "stream_late_events_total"]
            .into_iter()
            .chain(["stream_store_write_seconds_bucket", "stream_build_info", "stream_plan_info", "stream_live_series"])
            .chain(["stream_consumption_paused", "stream_partitions_awaiting_plan"])
    {
        assert!(text.contains(series), "streamd dashboard lacks {series}");
    }
}

/// `node` and `npm`, or `None` (with a printed reason) when absent outside CI.
fn node_tools() -> Option<()> {
    let works = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if works("node") && works("npm") {
        return Some(());
    }
    assert!(std::env::var_os("CI").is_none(), "node and npm are required in CI (.ci/install.sh installs them)");
    println!("SKIPPED: dashboards are not type-checked: node and npm are not installed (apt-get install nodejs npm)");
    None
}

/// The pinned packages, installed once under the target directory.
fn schema_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("grafana-schema");
    std::fs::create_dir_all(&dir).expect("cache dir");
    let manifest =
        std::fs::read_to_string(repo().join("crates/streamctl/tests/grafana/package.json")).expect("package.json");
    let is_current = std::fs::read_to_string(dir.join("package.json")).is_ok_and(|m| m == manifest)
        && dir.join("node_modules/.bin/tsc").exists();
    if !is_current {
        std::fs::write(dir.join("package.json"), &manifest).expect("write package.json");
        let install = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .expect("run npm");
        assert!(install.status.success(), "npm install failed:\n{}", String::from_utf8_lossy(&install.stderr));
    }
    std::fs::copy(repo().join("crates/streamctl/tests/grafana/tsconfig.json"), dir.join("tsconfig.json"))
        .expect("tsconfig");
    dir
}

fn tsc(dir: &Path, source: &str) -> std::process::Output {
    std::fs::write(dir.join("check.ts"), source).expect("check.ts");
    Command::new(dir.join("node_modules/.bin/tsc"))
        .args(["-p", "tsconfig.json"])
        .current_dir(dir)
        .output()
        .expect("run tsc")
}

#[test]
fn dashboards_type_check_against_grafanas_published_schema() {
    if node_tools().is_none() {
        return;
    }
    let dir = schema_dir();
    let mut source = String::from("import type { Dashboard } from \"@grafana/schema\";\n");
    let names = json_files(&repo().join(GOLDEN));
    for (i, name) in names.iter().enumerate() {
        let json = std::fs::read_to_string(repo().join(GOLDEN).join(name)).expect("read");
        source.push_str(&format!("// {name}\nexport const d{i}: Dashboard = {json};\n"));
    }
    let out = tsc(&dir, &source);
    assert!(
        out.status.success(),
        "generated dashboards do not type-check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a misspelt field in a panel is caught.
    let broken = std::fs::read_to_string(repo().join(GOLDEN).join("streamd.json")).expect("read").replacen(
        "\"gridPos\"",
        "\"gridPosition\"",
        1,
    );
    let out = tsc(
        &dir,
        &format!("import type {{ Dashboard }} from \"@grafana/schema\";\nexport const d: Dashboard = {broken};\n"),
    );
    assert!(!out.status.success(), "a misspelt panel field passed the type check");
    assert!(String::from_utf8_lossy(&out.stdout).contains("gridPosition"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The reputation dashboard opens with one row putting each IP's listings
/// beside its `blocked`/`badreputation` rates, both panels filtered by the
/// one `sending_ip` variable (the source takes its targets from
/// `ip_block_bounces`' `sending_ip`).
#[test]
fn listings_sit_beside_the_same_ips_bounce_rates_in_one_row() {
    let reputation = load("reputation.json");
    let panels = reputation["panels"].as_array().expect("panels");
    assert_eq!(panels[0]["type"], "row");
    assert_eq!(panels[0]["title"], "dnsbl_status beside ip_block_bounces by sending_ip");
    let (listings, bounces) = (&panels[1], &panels[2]);
    assert_eq!((listings["gridPos"]["y"].as_u64(), bounces["gridPos"]["y"].as_u64()), (Some(1), Some(1)));
    assert_eq!((listings["gridPos"]["x"].as_u64(), bounces["gridPos"]["x"].as_u64()), (Some(0), Some(12)));
    let exprs = |panel: &Value| -> Vec<String> {
        panel["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter_map(|t| t["expr"].as_str().map(String::from))
            .collect()
    };
    let listed = exprs(listings);
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].contains("stream_dnsbl_status_listed_total{list=~\"$list\", target=~\"$sending_ip\"}"),
        "{listed:?}"
    );
    let rates = exprs(bounces);
    assert_eq!(rates.len(), 2, "blocked_rate and badreputation_rate");
    assert!(rates[0].contains("stream_ip_block_bounces_blocked_total{sending_ip=~\"$sending_ip\"}"), "{rates:?}");
    assert!(rates[1].contains("stream_ip_block_bounces_badreputation_total{sending_ip=~\"$sending_ip\"}"), "{rates:?}");
}
