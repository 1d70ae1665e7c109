//! The HTTP endpoint of a running `streamd --embedded`: it serves the
//! checked-in OpenAPI document, schemathesis finds no server error and no
//! answer outside that document, the probes answer within a second while
//! thousands of idle and slow connections are open and while `/metrics` is
//! scraped without pause, slow clients are cut off, and oversized request
//! heads and bodies are refused.

mod common;

use common::{free_port, get, repo, request, start_embedded_admin, temp_dir, wait_until, Guard};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "http-test-token";

/// One daemon at a time: each generates events at full speed, and the
/// probes' answer times are measured on a shared 2-core machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `streamd --embedded` over `pipelines` with the admin API on, once `/healthz` answers.
fn start(name: &str, pipelines: &Path) -> (Guard, u16, std::path::PathBuf) {
    let dir = temp_dir(name);
    let port = free_port();
    let daemon = start_embedded_admin(&dir, port, pipelines, TOKEN, 300);
    wait_until("streamd to serve /healthz", Duration::from_secs(60), || get(port, "/healthz").is_some());
    (daemon, port, dir)
}

fn openapi_file() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("openapi.json")).expect("openapi.json is JSON")
}

/// Writes `head` (a request head, maybe with a body start) on a new
/// connection; the status code and the whole answer.
fn raw_status(port: u16, head: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(head).expect("write the head");
    let mut answer = Vec::new();
    // The server closes after refusing; a reset after the answer is fine.
    let mut buffer = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        answer.extend_from_slice(&buffer[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, answer)
}

/// The `schemathesis` command: on `PATH`, or where `python3`'s pip puts commands.
fn schemathesis() -> String {
    if Command::new("schemathesis").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return "schemathesis".into();
    }
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Path::new(&scripts).join("schemathesis").to_string_lossy().into_owned()
}

/// Fails unless the server closes `stream` within 30 s without answering.
fn assert_closed(mut stream: TcpStream, what: &str) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let started = Instant::now();
    match stream.read(&mut [0u8; 512]) {
        Ok(0) => {}
        Ok(_) => panic!("{what} got an answer"),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            panic!("{what} is still open after 30 s")
        }
        Err(_) => {} // reset: closed too
    }
    println!("{what} was closed {} ms later", started.elapsed().as_millis());
}

#[test]
fn the_served_openapi_document_is_the_checked_in_one() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_daemon, port, dir) = start("http-openapi", &repo().join("pipelines"));
    let (code, served) = request(port, "/api/v1/openapi.json", None).expect("answer");
    assert_eq!(code, 200);
    let served: serde_json::Value = serde_json::from_str(&served).expect("JSON");
    assert_eq!(served, openapi_file());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let test = "schemathesis_finds_no_server_error_and_no_answer_outside_the_document";
    let schemathesis = schemathesis();
    if !common::require_tool(&schemathesis, test, "pip install schemathesis") {
        return;
    }
    let (_daemon, port, dir) = start("http-schemathesis", &repo().join("pipelines"));
    // Let the first windows close, so that queries answer rows too.
    wait_until("a first query answer with rows", Duration::from_secs(60), || {
        request(port, "/api/v1/query?metric=delivery_by_sender", None)
            .is_some_and(|(code, body)| code == 200 && body.starts_with("[{"))
    });
    let output = Command::new(&schemathesis)
        .args(["run", &format!("http://127.0.0.1:{port}/api/v1/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance",
        ])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", "40", "--seed", "29", "--no-color", "--report", "junit", "--report-junit-path"])
        .arg(dir.join("junit.xml"))
        .current_dir(&dir)
        .output()
        .expect("run schemathesis");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{report}");
    assert!(output.status.success(), "schemathesis found problems:\n{report}");
    // It tested every operation of the document (but the document itself,
    // which it reads and which the test above compares).
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("the JUnit report");
    let paths = openapi_file()["paths"].as_object().expect("paths").clone();
    for (path, operations) in paths.iter().filter(|(path, _)| *path != "/api/v1/openapi.json") {
        for method in operations.as_object().expect("operations").keys() {
            let operation = format!("{} {path}", method.to_uppercase());
            assert!(junit.contains(&format!("\"{operation}\"")), "schemathesis did not test {operation}:\n{junit}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn probes_answer_within_a_second_under_idle_and_slow_connections_and_oversize_is_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // One small metric: what is measured is the server's fairness, not the
    // rendering of the demo's thousands of series (see docs/http-api.md).
    let pipelines = temp_dir("http-connections-pipelines");
    std::fs::copy(repo().join("pipelines/deliveries.stream"), pipelines.join("deliveries.stream")).expect("copy");
    let metric =
        "version 1\nimport \"deliveries.stream\"\nmetric events from deliveries\n  compute count() as n\n  window 1m\n";
    std::fs::write(pipelines.join("events.stream"), metric).expect("write");
    let (_daemon, port, dir) = start("http-connections", &pipelines);
    // 3,000 connections that send nothing.
    let idle: Vec<TcpStream> =
        (0..3000).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("an idle connection")).collect();
    // 100 slowloris clients: a request head one header at a time, never finished.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("a slow connection");
            write!(stream, "GET /metrics?slow={i} HTTP/1.1\r\nhost: 127.0.0.1\r\n").expect("write");
            stream
        })
        .collect();
    let watched = slow[0].try_clone().expect("clone");
    let dripping = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for stream in &mut slow {
                    let _ = write!(stream, "x-drip-{n}: 1\r\n");
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(1))).build().into();
    for _ in 0..5 {
        for path in ["/healthz", "/metrics"] {
            let started = Instant::now();
            let answer = agent.get(format!("http://127.0.0.1:{port}{path}")).call();
            let mut answer = answer.unwrap_or_else(|e| panic!("{path} did not answer within a second: {e}"));
            assert_eq!(answer.status(), 200, "{path}");
            let body = answer.body_mut().read_to_string().expect("body");
            assert!(!body.is_empty(), "{path}");
            println!("{path}: {} ms with 3,000 idle and 100 slow connections", started.elapsed().as_millis());
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    // A request head over the limit: 431; a body over it: 413 before it is sent.
    let (code, answer) = raw_status(
        port,
        format!("GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: {}\r\n\r\n", "a".repeat(32 << 10)).as_bytes(),
    );
    assert_eq!(code, 431, "{answer}");
    let (code, answer) = raw_status(
        port,
        format!(
            "POST /admin/v1/bundles HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
            64 << 20
        )
        .as_bytes(),
    );
    assert_eq!(code, 413, "{answer}");
    assert!(answer.contains(r#""code":"body_too_large""#), "{answer}");

    // Idle and slow connections alike are closed once their head is overdue,
    // however often a slow one sends a byte.
    assert_closed(idle.into_iter().next().expect("one"), "an idle connection");
    assert_closed(watched, "a slow connection");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    dripping.join().expect("the slow clients");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(pipelines);
}

#[test]
fn healthz_answers_within_a_second_while_metrics_is_scraped_without_pause() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_daemon, port, dir) = start("http-scrapers", &repo().join("pipelines"));
    // The demo's exposition grows to megabytes within seconds.
    wait_until("a large exposition", Duration::from_secs(60), || {
        get(port, "/metrics").is_some_and(|m| m.len() > 500_000)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scrapers: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut scrapes = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    scrapes += u32::from(get(port, "/metrics").is_some());
                }
                scrapes
            })
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(1))).build().into();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let answer = agent.get(format!("http://127.0.0.1:{port}/healthz")).call();
        answer.unwrap_or_else(|e| panic!("/healthz did not answer within a second while /metrics was scraped: {e}"));
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes: u32 = scrapers.into_iter().map(|s| s.join().expect("scraper")).sum();
    assert!(scrapes > 0, "no scrape succeeded");
    println!("/healthz: slowest {} ms during {scrapes} scrapes by 8 clients", slowest.as_millis());
    let _ = std::fs::remove_dir_all(dir);
}
