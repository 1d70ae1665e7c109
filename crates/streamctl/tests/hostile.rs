//! Issue 25 end to end: one hostile line must not fail a run, lose its
//! batch, delete stored rows or cost unbounded memory or time.

mod common;

use common::{stderr, streamctl, temp_dir};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A base table kept a day, so a retention sweep measured from a far-future
/// event time would delete every row.
const PIPELINE: &str = r#"version 1
source s from kafka "t" format json { ts: timestamp event_time, k: string, v: int }
metric m from s
  group by k
  compute count() as n, sum(v) as total
  window 1m, lateness 1m
  into table m ttl 1d
"#;

/// Events one every 10 s from `from` minutes past 2024-06-03T00:00Z, `count` of them.
fn events(from: i64, count: i64) -> Vec<String> {
    (0..count)
        .map(|i| {
            let s = from * 60 + i * 10;
            format!(r#"{{"ts":"2024-06-03T00:{:02}:{:02}Z","k":"k{}","v":{i}}}"#, s / 60, s % 60, i % 3)
        })
        .collect()
}

fn write_lines(file: &Path, lines: &[String]) {
    std::fs::write(file, lines.join("\n") + "\n").expect("write input");
}

fn run(dir: &Path, pipeline: &Path, input: &Path, db: &Path, extra: &[&str]) -> serde_json::Value {
    let summary = dir.join("summary.json");
    let store = format!("sqlite:{}", db.display());
    let mut args =
        vec!["run", path(pipeline), "--input", path(input), "--store", &store, "--summary-json", path(&summary)];
    args.extend_from_slice(extra);
    let out = streamctl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("summary json")
}

fn query(db: &Path) -> String {
    let store = format!("sqlite:{}", db.display());
    let pipelines = db.parent().expect("dir").join("p.stream");
    let out = streamctl(&["query", "m", "--store", &store, "--pipelines", path(&pipelines), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 25, case 1: an event dated 9999 in the middle of a file is a
/// `future_time` dead letter; every later event is counted as before (none
/// becomes late), and the retention sweep deletes none of the rows a
/// previous run stored.
#[test]
fn a_far_future_event_is_dead_lettered_and_deletes_no_stored_row() {
    let dir = temp_dir("future");
    let pipeline = dir.join("p.stream");
    std::fs::write(&pipeline, PIPELINE).expect("write pipeline");
    let (first, second, clean_input) = (dir.join("first.jsonl"), dir.join("second.jsonl"), dir.join("clean.jsonl"));
    write_lines(&first, &events(0, 30));
    let clean = events(5, 60);
    write_lines(&clean_input, &clean);
    let mut hostile = clean.clone();
    hostile.insert(20, r#"{"ts":"9999-12-31T00:00:00Z","k":"k0","v":1000000}"#.to_string());
    write_lines(&second, &hostile);
    let now = ["--now", "2024-06-03T01:00:00Z"];

    let (db, clean_db) = (dir.join("hostile.db"), dir.join("clean.db"));
    for db in [&db, &clean_db] {
        run(&dir, &pipeline, &first, db, &now);
    }
    let before = query(&db);
    assert!(before.contains("k2"), "{before}");
    let summary = run(&dir, &pipeline, &second, &db, &now);
    run(&dir, &pipeline, &clean_input, &clean_db, &now);

    assert_eq!(summary["dead_letters_by_reason"], serde_json::json!({ "future_time": 1 }), "{summary}");
    assert_eq!(summary["late_events"], 0, "{summary}");
    assert_eq!(summary["retention"]["measured_from"], "2024-06-03T00:14:50.000Z", "{summary}");
    assert_eq!(summary["retention"]["rows_deleted"], 0, "{summary}");
    assert_eq!(query(&db), query(&clean_db), "the same rows as without the hostile line");

    // Without `--now`, the wall clock bounds event time the same way.
    let summary = run(&dir, &pipeline, &second, &dir.join("wall.db"), &[]);
    assert_eq!(summary["dead_letters_by_reason"], serde_json::json!({ "future_time": 1 }), "{summary}");
}

/// Stored dead letters: (reason, payload length, detail).
fn dead_letters(db: &Path) -> Option<Vec<(String, u64, String)>> {
    let script = "import sqlite3,sys,json; c=sqlite3.connect(sys.argv[1]); \
                  print(json.dumps(c.execute('select reason, length(payload), detail from stream_dead_letters order by 1').fetchall()))";
    let out = Command::new("python3").args(["-c", script]).arg(db).output().ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("json"))
}

/// The input for the oversized-line tests: good events around one line of
/// `size` bytes with no newline inside.
fn input_with_a_huge_line(file: &Path, size: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).expect("create input"));
    let good = events(0, 20);
    for line in &good[..10] {
        writeln!(out, "{line}").expect("write");
    }
    let prefix = br#"{"ts":"2024-06-03T00:00:00Z","k":""#;
    out.write_all(prefix).expect("write");
    let chunk = vec![b'x'; 1 << 20];
    let mut left = size - prefix.len() - 2;
    while left > 0 {
        let n = left.min(chunk.len());
        out.write_all(&chunk[..n]).expect("write");
        left -= n;
    }
    out.write_all(b"\"}\n\n").expect("write");
    for line in &good[10..] {
        writeln!(out, "{line}").expect("write");
    }
    out.flush().expect("flush");
}

/// The checks both oversized-line tests make of a run over [`input_with_a_huge_line`].
fn check_huge_line_run(summary: &serde_json::Value, db: &Path, size: usize) {
    assert_eq!(summary["events_in"], 21, "{summary}");
    assert_eq!(summary["blank_lines"], 1, "{summary}");
    assert_eq!(summary["dead_letters_by_reason"], serde_json::json!({ "oversized": 1 }), "{summary}");
    assert_eq!(summary["metrics"][0]["events"], 20, "every other line is counted: {summary}");
    let Some(stored) = dead_letters(db) else {
        eprintln!("SKIPPED the stored dead letter check: needs python3");
        return;
    };
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (reason, kept, detail) = &stored[0];
    assert_eq!((reason.as_str(), *kept), ("oversized", 4096), "{detail}");
    assert!(detail.starts_with(&format!("{size} bytes; the limit is ")), "{detail}");
    assert!(detail.contains("sha256 ") && detail.ends_with("the first 4096 bytes are kept"), "{detail}");
}

/// Issue 25, case 3, small: a 3 MB line over a lowered limit.
#[test]
fn a_line_over_the_limit_is_cut_off_and_the_rest_of_the_batch_is_stored() {
    let dir = temp_dir("huge-small");
    let pipeline = dir.join("p.stream");
    std::fs::write(&pipeline, PIPELINE).expect("write pipeline");
    let input = dir.join("in.jsonl");
    let size = 3 << 20;
    input_with_a_huge_line(&input, size);
    let db = dir.join("out.db");
    let summary = run(&dir, &pipeline, &input, &db, &["--max-message-bytes", "65536", "--batch", "5"]);
    check_huge_line_run(&summary, &db, size);
}

/// The peak resident set size of a running process, in KiB, from
/// `/proc/PID/status` (`VmHWM`); `None` off Linux or once it has exited.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Issue 25, case 3, full size: a 200 MB line in a file with the default
/// 1 MiB limit. The run exits 0, stores every other line, keeps a bounded
/// dead letter, and its peak memory stays far below the line's size.
/// Writes 200 MB to the temporary directory, so it runs on request:
/// `cargo test -p streamctl --test hostile -- --ignored`.
#[test]
#[ignore = "writes a 200 MB file; run with --ignored"]
fn a_200_mb_line_costs_bounded_memory_and_loses_nothing_else() {
    let dir = temp_dir("huge-full");
    let pipeline = dir.join("p.stream");
    std::fs::write(&pipeline, PIPELINE).expect("write pipeline");
    let input = dir.join("in.jsonl");
    let size = 200_000_000;
    input_with_a_huge_line(&input, size);
    let (db, summary) = (dir.join("out.db"), dir.join("summary.json"));
    let store = format!("sqlite:{}", db.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamctl"))
        .args(["run", path(&pipeline), "--input", path(&input), "--store", &store, "--summary-json", path(&summary)])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start streamctl");
    // VmHWM only grows, so its last reading before the exit is the peak.
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        peak_kib = peak_kib.max(peak_rss_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "exit {status}");
    eprintln!("peak RSS of `streamctl run` over a {size}-byte line: {} MiB", peak_kib / 1024);
    assert!(peak_kib > 0, "no /proc reading");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB for a {size}-byte line");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    check_huge_line_run(&summary, &db, size);
}

/// Issue 25, case 2: `classify` takes time linear in its input. A line of
/// about 1 MiB whose host is all labels (`a.a.a…`) or all dots takes no
/// longer, within a generous factor, than the same bytes as 1 KiB lines;
/// a line over the engine's 1 MiB limit is refused, and said so.
#[test]
fn classify_is_linear_in_hostile_hosts_and_refuses_lines_over_the_limit() {
    let dir = temp_dir("classify");
    let line = |host: String| format!(r#"{{"rhost":"{host}","recipient_domain":"{host}","diagnostic":"{host}"}}"#);
    let time = |name: &str, text: String| {
        let file = dir.join(name);
        std::fs::write(&file, text).expect("write input");
        let started = Instant::now();
        let out = streamctl(&["classify", "--rules", "dsl/stdlib/", "--input", path(&file)]);
        (started.elapsed(), out)
    };
    for unit in ["a.", "."] {
        let small: String = (0..1000).map(|_| line(unit.repeat(300 / unit.len())) + "\n").collect();
        let large = line(unit.repeat((1 << 20) / 3 / unit.len() - 100)) + "\n";
        assert!(large.len() < 1 << 20 && large.len() > small.len() / 2);
        let (small_time, out) = time("small.jsonl", small);
        assert!(out.status.success(), "{}", stderr(&out));
        let (large_time, out) = time("large.jsonl", large);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            large_time < small_time * 10 + Duration::from_secs(1),
            "{unit:?}: a 1 MiB line took {large_time:?}, 1 KiB lines {small_time:?}"
        );
    }
    let (_, out) = time("over.jsonl", line("a.".repeat(1 << 20)) + "\n" + &line("gmail.com".into()) + "\n");
    assert_eq!(out.status.code(), Some(65));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout:.300}");
    assert!(lines[0].contains("the limit is 1048576, as for a message"), "{:.300}", lines[0]);
    assert!(lines[1].contains("\"category\""), "{}", lines[1]);
}
