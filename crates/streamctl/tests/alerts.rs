//! `streamctl alerts`: golden rules files, and Prometheus's own `promtool`
//! accepting and unit-testing them.
//!
//! The rules for `pipelines/` are checked in where the docker stack loads
//! them (`docker/prometheus/rules/streams.rules.yml`), so that file is the
//! golden snapshot: it cannot drift from the pipelines. Other shapes of
//! conditions are cases under `tests/golden/alerts/*.stream`, each with its
//! `.rules.yml`. Re-bless both with `BLESS=1 cargo test -p streamctl --test
//! alerts` and review the diff.
//!
//! `promtool` comes from Debian's `prometheus` package (`.ci/install.sh`).
//! Without it the promtool test prints `SKIPPED` — except under `CI`, where
//! it fails, so CI cannot pass without running it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn streamctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamctl")).args(args).current_dir(repo()).output().expect("run streamctl")
}

/// Compares `actual` with the file at `path` (relative to the repo), or writes it under `BLESS`.
fn assert_golden(path: &str, actual: &str) {
    let file = repo().join(path);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&file, actual).expect("bless");
        return;
    }
    let expected = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(expected == actual, "{path} is stale (re-bless with BLESS=1 if intended); generated:\n{actual}");
}

fn rules_for(path: &str) -> String {
    let out = streamctl(&["alerts", path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn rules_of_the_shipped_pipelines_are_the_checked_in_file() {
    assert_golden("docker/prometheus/rules/streams.rules.yml", &rules_for("pipelines/"));
}

#[test]
fn golden_condition_shapes() {
    const DIR: &str = "crates/streamctl/tests/golden/alerts";
    let mut cases: Vec<String> = std::fs::read_dir(repo().join(DIR))
        .expect("golden dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".stream").map(str::to_string))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        assert_golden(&format!("{DIR}/{case}.rules.yml"), &rules_for(&format!("{DIR}/{case}.stream")));
    }
}

#[test]
fn out_writes_the_file_and_bad_alerts_exit_65() {
    let dir = std::env::temp_dir().join(format!("streamctl-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("rules.yml");
    let written = streamctl(&["alerts", "pipelines/", "--out", out.to_str().expect("utf-8")]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    assert_eq!(std::fs::read_to_string(&out).expect("written"), rules_for("pipelines/"));

    // An ordering of group-by values has no PromQL equivalent: a clear error, not a wrong rule.
    let bad = dir.join("bad.stream");
    std::fs::write(
        &bad,
        "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time, p: string }\n\
         metric m from s group by p compute count() as n window 1m export prometheus\n\
         alert a on m when p > \"m\" and n > 1\n",
    )
    .expect("write");
    let failed = streamctl(&["alerts", bad.to_str().expect("utf-8")]);
    assert_eq!(failed.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("alert `a`") && stderr.contains("group-by column `p`"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `promtool`, or `None` (with a printed reason) when it is absent outside CI.
fn promtool() -> Option<&'static str> {
    match Command::new("promtool").arg("--version").output() {
        Ok(o) if o.status.success() => Some("promtool"),
        _ if std::env::var_os("CI").is_some() => panic!("promtool is required in CI (.ci/install.sh installs it)"),
        _ => {
            println!("SKIPPED: promtool is not installed (apt-get install prometheus)");
            None
        }
    }
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let Some(promtool) = promtool() else { return };
    let mut files = vec![repo().join("docker/prometheus/rules/streams.rules.yml")];
    for entry in std::fs::read_dir(repo().join("crates/streamctl/tests/golden/alerts")).expect("golden dir") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().ends_with(".rules.yml") {
            files.push(path);
        }
    }
    let check = Command::new(promtool).args(["check", "rules"]).args(&files).output().expect("promtool");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new(promtool)
        .args(["test", "rules", "docker/prometheus/rules/streams.test.yml"])
        .current_dir(repo())
        .output()
        .expect("promtool");
    assert!(
        test.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}
