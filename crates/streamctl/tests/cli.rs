//! The built `streamctl` binary, end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn streamctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamctl")).args(args).current_dir(repo()).output().expect("run streamctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamctl-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn shipped_pipelines_check_clean_and_are_formatted() {
    let check = streamctl(&["check", "--deny-warnings", "pipelines/"]);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stderr(&check).starts_with("ok: "), "{}", stderr(&check));
    let fmt = streamctl(&["fmt", "--check", "pipelines/", "dsl/stdlib/"]);
    assert!(fmt.status.success(), "unformatted: {}", String::from_utf8_lossy(&fmt.stdout));
}

#[test]
fn errors_exit_65_with_located_diagnostics() {
    let dir = temp_dir("errors");
    let file = dir.join("bad.stream");
    std::fs::write(&file, "version 1\nmetric m from nowhere\n  compute count() as n\n  window 1m\n").expect("write");
    let out = streamctl(&["check", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(65));
    let text = stderr(&out);
    assert!(text.contains("error[E201]: unknown source `nowhere`"), "{text}");
    assert!(text.contains("bad.stream:2:15"), "{text}");

    let json = streamctl(&["check", "--format", "json", file.to_str().expect("utf-8 path")]);
    assert_eq!(json.status.code(), Some(65));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json report");
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"], 1);
    assert_eq!(report["diagnostics"][0]["code"], "E201");
    assert_eq!(report["diagnostics"][0]["line"], 2);
    assert_eq!(report["diagnostics"][0]["column"], 15);
}

#[test]
fn explain_prints_the_plan_as_text_and_json() {
    let text = streamctl(&["explain", "pipelines/"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.starts_with("plan "), "{out}");
    assert!(out.contains("metric bounce_reasons"), "{out}");
    let json = streamctl(&["explain", "--format", "json", "pipelines/"]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("plan json");
    assert_eq!(plan["format_version"], 1);
    assert!(plan["metrics"].as_array().is_some_and(|m| m.len() >= 5));
}

#[test]
fn fmt_rewrites_files_and_keeps_comments() {
    let dir = temp_dir("fmt");
    let file = dir.join("p.stream");
    let messy = "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time } # the source\nmetric m from s window 1m compute count() as n # counted\n";
    std::fs::write(&file, messy).expect("write");
    let path = file.to_str().expect("utf-8 path");
    let check = streamctl(&["fmt", "--check", path]);
    assert_eq!(check.status.code(), Some(1), "an unformatted file fails --check");
    assert!(streamctl(&["fmt", path]).status.success());
    let formatted = std::fs::read_to_string(&file).expect("read");
    assert!(formatted.contains("# the source") && formatted.contains("# counted"), "{formatted}");
    assert!(formatted.contains("} # the source\n"), "{formatted}");
    assert!(formatted.contains("  compute count() as n # counted\n  window 1m"), "{formatted}");
    assert!(streamctl(&["fmt", "--check", path]).status.success(), "formatting is idempotent");
    assert!(streamctl(&["check", path]).status.success(), "formatted file still checks");
}

#[test]
fn unreadable_input_is_a_clear_error() {
    let dir = temp_dir("unreadable");
    let file = dir.join("latin1.stream");
    std::fs::write(&file, b"version 1\n# caf\xe9\n").expect("write");
    let out = streamctl(&["check", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(65));
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));

    let missing = streamctl(&["check", "no/such/dir"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("does not exist"), "{}", stderr(&missing));
}
