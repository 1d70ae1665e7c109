//! Golden tests: one test per phase, each globbing a directory of cases.
//!
//! | directory          | input            | snapshot beside it               |
//! | ------------------ | ---------------- | -------------------------------- |
//! | `golden/parse/ok`  | `NAME.stream`    | `NAME.ast`: the syntax tree      |
//! | `golden/check/err` | `NAME.stream`    | `NAME.diagnostics`: rendered     |
//! | `golden/check/warn`| `NAME.stream`    | `NAME.diagnostics`: warnings     |
//! | `golden/explain`   | `NAME.stream`    | `NAME.explain`: the plan as text |
//! | `golden/fmt`       | `NAME.stream`    | `NAME.formatted`: canonical form |
//!
//! A mismatch fails with both texts. After an intended change, re-bless with
//! `BLESS=1 cargo test -p dsl --test golden` and review the snapshot diff.

use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The `*.stream` cases of one phase directory, as paths relative to `golden/`.
fn cases(phase: &str) -> Vec<String> {
    let dir = golden_dir().join(phase);
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "stream"))
        .map(|p| format!("{phase}/{}", p.file_name().expect("file name").to_string_lossy()))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

fn read(relative: &str) -> Result<String, String> {
    std::fs::read_to_string(golden_dir().join(relative)).map_err(|e| e.to_string())
}

/// Compares `actual` with the snapshot, or writes it when `BLESS` is set.
/// Returns a failure message instead of panicking, so every case is reported.
fn assert_snapshot(case: &str, extension: &str, actual: &str) -> Option<String> {
    let snapshot = golden_dir().join(case).with_extension(extension);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&snapshot, actual).expect("write snapshot");
        return None;
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    if expected == actual {
        return None;
    }
    Some(format!(
        "=== {case}: snapshot {} differs (re-bless with BLESS=1 if intended)\n--- expected\n{expected}\n--- actual\n{actual}",
        snapshot.display()
    ))
}

fn finish(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} case(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn parse_ok() {
    let mut failures = Vec::new();
    for case in cases("parse/ok") {
        let text = read(&case).expect("read case");
        let ast = match dsl::parser::parse(dsl::span::FileId(0), &text) {
            Ok(ast) => ast,
            Err(diagnostics) => {
                let mut sources = dsl::SourceMap::new();
                sources.add(case.clone(), text.clone());
                failures.push(format!("=== {case} should parse:\n{}", dsl::render_all(&diagnostics, &sources)));
                continue;
            }
        };
        failures.extend(assert_snapshot(&case, "ast", &format!("{ast:#?}\n")));
    }
    finish(failures);
}

#[test]
fn check_err() {
    let mut failures = Vec::new();
    for case in cases("check/err") {
        let compiled = dsl::compile(std::slice::from_ref(&case), &read);
        if !compiled.has_errors() {
            failures.push(format!("=== {case} should fail to check, but it passed"));
            continue;
        }
        failures.extend(assert_snapshot(&case, "diagnostics", &compiled.render_diagnostics()));
    }
    finish(failures);
}

#[test]
fn check_warn() {
    let mut failures = Vec::new();
    for case in cases("check/warn") {
        let compiled = dsl::compile(std::slice::from_ref(&case), &read);
        if compiled.has_errors() || compiled.diagnostics.is_empty() {
            failures.push(format!("=== {case} should check with warnings:\n{}", compiled.render_diagnostics()));
            continue;
        }
        failures.extend(assert_snapshot(&case, "diagnostics", &compiled.render_diagnostics()));
    }
    finish(failures);
}

#[test]
fn explain() {
    let mut failures = Vec::new();
    for case in cases("explain") {
        let compiled = dsl::compile(std::slice::from_ref(&case), &read);
        let Some(plan) = &compiled.plan else {
            failures.push(format!("=== {case} should check:\n{}", compiled.render_diagnostics()));
            continue;
        };
        failures.extend(assert_snapshot(&case, "explain", &dsl::explain(plan)));
    }
    finish(failures);
}

/// `fmt` prints metric clauses in canonical order; everything else keeps its order.
fn clauses_in_canonical_order(mut file: dsl::ast::File) -> dsl::ast::File {
    for item in &mut file.items {
        if let dsl::ast::Item::Metric(m) = item {
            m.clauses.sort_by_key(|c| c.node.canonical_rank());
        }
    }
    file
}

#[test]
fn fmt() {
    let mut failures = Vec::new();
    for case in cases("fmt") {
        let text = read(&case).expect("read case");
        let file = dsl::span::FileId(0);
        let original = dsl::parser::parse(file, &text).expect("fmt cases parse");
        let formatted = dsl::fmt::format_file(&original, &text);
        failures.extend(assert_snapshot(&case, "formatted", &formatted));
        let reparsed = dsl::parser::parse(file, &formatted).expect("formatted text parses");
        if clauses_in_canonical_order(reparsed.clone()) != clauses_in_canonical_order(original) {
            failures.push(format!("=== {case}: formatting changed the syntax tree"));
        }
        let twice = dsl::fmt::format_file(&reparsed, &formatted);
        if twice != formatted {
            failures.push(format!("=== {case}: formatting is not idempotent:\n{twice}"));
        }
        let comments = |t: &str| t.lines().filter_map(|l| l.find('#').map(|i| l[i..].trim_end().to_string())).count();
        if comments(&formatted) < comments(&text) {
            failures.push(format!("=== {case}: formatting lost a comment"));
        }
    }
    finish(failures);
}
