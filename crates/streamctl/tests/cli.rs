//! The built `streamctl` binary, end to end.

mod common;

use common::{repo, stderr, streamctl, temp_dir};

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

/// `query` and `episodes` only read: a SQLite store that is not there is an
/// error, and is not created empty.
#[test]
fn reading_commands_refuse_a_missing_store_without_creating_it() {
    let dir = temp_dir("missing-store");
    let db = dir.join("none.db");
    let store = format!("sqlite:{}", db.display());
    let pipelines = repo().join("pipelines");
    let query = streamctl(&["query", "m", "--store", &store, "--pipelines", pipelines.to_str().expect("utf-8 path")]);
    assert_eq!(query.status.code(), Some(1));
    assert!(stderr(&query).contains("does not exist; run `streamctl run` first"), "{}", stderr(&query));
    let episodes = streamctl(&["episodes", "--store", &store]);
    assert_eq!(episodes.status.code(), Some(1));
    assert!(stderr(&episodes).contains(&format!("store `{}` does not exist", db.display())), "{}", stderr(&episodes));
    assert!(!db.exists(), "a reading command created the store");
}

/// `streamctl run` over a small generated file (checked in) must produce exactly
/// the checked-in rows, tier rows held back or not. Re-bless with `BLESS=1`
/// after an intended change.
#[test]
fn run_over_generated_events_matches_golden_rows() {
    let dir = temp_dir("golden-run");
    let snapshot = repo().join("crates/streamctl/tests/data/events_1500.expected");
    for every in ["0", "2m", "close"] {
        let db = dir.join(format!("run-{every}.db"));
        let store = format!("sqlite:{}", db.display());
        let run = streamctl(&[
            "run",
            "pipelines/",
            "--input",
            "crates/streamctl/tests/data/events_1500.jsonl",
            "--store",
            &store,
            "--tier-rows-every",
            every,
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
        let queries: [&[&str]; 5] = [
            &["delivery_by_provider", "--tier", "1m"],
            &["delivery_by_provider", "--tier", "1h", "--group-by", "provider"],
            &["bounce_reasons", "--group-by", "reason,kind"],
            &["delivery_latency", "--tier", "1h"],
            &["engagement_by_sender", "--tier", "1d", "--group-by", ""],
        ];
        let mut actual = String::new();
        for q in queries {
            let mut args = vec!["query", "--store", &store, "--format", "json"];
            args.extend_from_slice(q);
            let out = streamctl(&args);
            assert!(out.status.success(), "{q:?}: {}", stderr(&out));
            actual.push_str(&format!("# streamctl query {}\n{}", q.join(" "), String::from_utf8_lossy(&out.stdout)));
        }
        if every == "0" && std::env::var_os("BLESS").is_some() {
            std::fs::write(&snapshot, &actual).expect("write snapshot");
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        assert!(
            expected == actual,
            "rows with --tier-rows-every {every} differ from {} (re-bless with BLESS=1 if intended):\n{actual}",
            snapshot.display()
        );
    }
    let bad = streamctl(&["run", "pipelines/", "--input", "-", "--tier-rows-every", "5x"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("`5x` is not a duration such as `5m` (or `0`, or `close`)"), "{}", stderr(&bad));
}

/// 1% malformed lines of every kind from the project's generator (cut
/// short, not JSON, invalid UTF-8, no object, blank, missing field, wrong
/// type, bad timestamp): nothing crashes, every malformed line is a dead
/// letter with a reason, and good + bad = input lines.
#[test]
fn malformed_input_is_dead_lettered_and_counts_add_up() {
    let dir = temp_dir("dirty");
    let input = dir.join("dirty.jsonl");
    let generated = streamctl(&[
        "gen",
        "--events",
        "30000",
        "--bad-ratio",
        "0.01",
        "--seed",
        "11",
        "--stats",
        "--out",
        input.to_str().expect("utf-8"),
    ]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let stats = stderr(&generated);
    let malformed: u64 = stats
        .split(", ")
        .find_map(|part| part.trim().strip_suffix(" malformed").and_then(|n| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no malformed count in {stats}"));
    assert!(malformed > 200, "{stats}");

    let summary_path = dir.join("summary.json");
    let db = dir.join("dirty.db");
    let run = streamctl(&[
        "run",
        "pipelines/",
        "--input",
        input.to_str().expect("utf-8"),
        "--store",
        &format!("sqlite:{}", db.display()),
        "--summary-json",
        summary_path.to_str().expect("utf-8"),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).expect("summary")).expect("summary json");
    for key in ["events_in", "dead_letters", "late_events", "rows_written", "elapsed_s"] {
        assert!(summary.get(key).is_some(), "summary lacks `{key}`: {summary}");
    }
    // Blank lines are skipped and counted, not dead-lettered.
    let blank = summary["blank_lines"].as_u64().expect("blank lines");
    assert!(blank > 0, "{summary}");
    assert_eq!(summary["events_in"].as_u64(), Some(30_000 - blank));
    let dead = summary["dead_letters"].as_u64().expect("dead letters");
    let late = summary["late_events"].as_u64().expect("late events");
    assert_eq!(dead - late + blank, malformed, "every other malformed line is a dead letter: {summary}");
    let by_reason = summary["dead_letters_by_reason"].as_object().expect("by reason");
    for reason in ["invalid_utf8", "malformed_json", "not_an_object", "missing_field", "wrong_type", "bad_timestamp"] {
        assert!(
            by_reason.get(reason).and_then(|n| n.as_u64()).unwrap_or(0) > 0,
            "no `{reason}` dead letters: {summary}"
        );
    }
    // Every dead letter is stored with its reason and original bytes.
    let db = rusqlite::Connection::open(&db).expect("the store");
    let stored: (u64, u64, u64) = db
        .query_row(
            "select count(*), sum(length(payload) >= 0), count(distinct reason) from stream_dead_letters",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("count the dead letters");
    assert_eq!((stored.0, stored.1), (dead, dead), "stored dead letters: {stored:?}");
    assert!(stored.2 >= 6, "stored dead letters: {stored:?}");
}
