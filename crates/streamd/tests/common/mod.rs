//! Helpers for tests that start `streamd` and other servers on loopback.

#![allow(dead_code)] // Each test crate uses a different part.

pub mod answers;
pub mod tansu;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `GET path` on 127.0.0.1:`port`: the status and the body, or `None` if the
/// server is not there (yet) or has not answered within 20 s. Sends
/// `authorization: Bearer token` if given.
pub fn request(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    fetch(port, path, token, Duration::from_secs(20))
}

/// `GET path` on 127.0.0.1:`port`; the body (whatever the status), or `None`
/// if the server is not there (yet) or has not answered within 5 s (e.g. it is stopped).
pub fn get(port: u16, path: &str) -> Option<String> {
    fetch(port, path, None, Duration::from_secs(5)).map(|(_, body)| body)
}

fn fetch(port: u16, path: &str, token: Option<&str>, timeout: Duration) -> Option<(u16, String)> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).build().into();
    let mut request = agent.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().ok()?;
    let body = response.body_mut().with_config().limit(64 << 20).read_to_string().ok()?;
    Some((response.status().as_u16(), body))
}

/// A port nobody listens on right now, each call another one.
///
/// Taken below the range the kernel hands out for `bind(…:0)` and for
/// outgoing connections (`net.ipv4.ip_local_port_range`): a port from that
/// range, free when checked, could be taken by a connection of a test
/// running beside this one before the server binds it. Tests of one binary
/// run in parallel, hence the counter; binaries run one after another.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const SPAN: u32 = 10_000;
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768)
        .clamp(SPAN + 1024, 65_535);
    let first = ephemeral_from - SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = first + (std::process::id() * 7 + n) % SPAN;
        let port = u16::try_from(port).expect("below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {first}..{ephemeral_from}")
}

/// A child process killed when the test ends, however it ends.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh temporary directory for `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts `streamd --embedded` on 127.0.0.1:`port` over `pipelines`, with
/// event time running fast so windows close within seconds, stopping by
/// itself after `run_for` seconds.
pub fn start_embedded(dir: &Path, port: u16, pipelines: &Path, run_for: u32) -> Guard {
    embedded(dir, port, run_for, &["--pipelines", pipelines.to_str().expect("utf-8")])
}

/// [`start_embedded`] with the admin API on behind `token`.
pub fn start_embedded_admin(dir: &Path, port: u16, pipelines: &Path, token: &str, run_for: u32) -> Guard {
    embedded(dir, port, run_for, &["--pipelines", pipelines.to_str().expect("utf-8"), "--admin-token", token])
}

/// [`start_embedded`] with `--watch watched`: the directory is deployed as
/// version 1 at start, and again whenever it changes.
pub fn start_embedded_watching(dir: &Path, port: u16, watched: &Path, run_for: u32) -> Guard {
    embedded(dir, port, run_for, &["--watch", watched.to_str().expect("utf-8")])
}

fn embedded(dir: &Path, port: u16, run_for: u32, pipeline_args: &[&str]) -> Guard {
    let config = dir.join("streamd.toml");
    std::fs::write(
        &config,
        "[embedded]\nevents_per_second = 3000\ntime_acceleration = 60.0\nbad_ratio = 0.01\n[kafka]\nflush_interval_ms = 200\n",
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_streamd"))
        .args(["--embedded", "--run-for", &run_for.to_string(), "--config", config.to_str().expect("utf-8")])
        .args(pipeline_args)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--store", &format!("sqlite:{}", dir.join("streamd.db").display())])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start streamd");
    Guard(child)
}

/// Starts `streamd --config config args… --log-format json` from the
/// repository root, its log (`RUST_LOG=info`) appended to `log`.
pub fn start_streamd(config: &Path, log: &Path, args: &[&str]) -> Guard {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_streamd"))
        .args(["--config", config.to_str().expect("utf-8")])
        .args(args)
        .args(["--log-format", "json"])
        .current_dir(repo())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start streamd");
    Guard(child)
}

/// Whether `tool --version` runs. When it does not: under `CI` the test
/// fails (CI installs it), elsewhere it prints `SKIPPED: …` and returns false.
pub fn require_tool(tool: &str, test: &str, install: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI ({install}; .ci/install.sh does it)");
    println!("SKIPPED: {test}: {tool} is not installed ({install})");
    false
}

/// The sum of every sample of `name` (all label sets) in an exposition.
pub fn sample_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `streamctl` binary, built beside this crate's `streamd` by `cargo test --workspace`
/// (and built here when only this crate's tests were built).
pub fn streamctl() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_streamd")).with_file_name("streamctl");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo).args(["build", "-p", "streamctl"]).status().expect("cargo build");
        assert!(built.success(), "cannot build streamctl");
    }
    path
}

/// Runs `streamctl args…`, echoing its output into the test's log.
pub fn run_streamctl(args: &[&str]) -> std::process::Output {
    run_streamctl_with(args, |_| {})
}

/// Runs `streamctl args…` like [`run_streamctl`], handing each line of its
/// standard output to `on_line` as it comes (e.g. to act at a moment of a deploy).
pub fn run_streamctl_with(args: &[&str], mut on_line: impl FnMut(&str)) -> std::process::Output {
    use std::io::{BufRead, Read};
    let mut child = Command::new(streamctl())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run streamctl");
    let mut stderr = child.stderr.take().expect("piped");
    let stderr = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let mut stdout = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.expect("streamctl's output");
        on_line(&line);
        stdout.extend_from_slice(line.as_bytes());
        stdout.push(b'\n');
    }
    let output =
        std::process::Output { status: child.wait().expect("wait"), stdout, stderr: stderr.join().expect("stderr") };
    eprintln!(
        "$ streamctl {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Polls `done` every 200 ms; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `/status` of the daemon on `port`, or `None` when it does not answer (yet).
pub fn status(port: u16) -> Option<serde_json::Value> {
    get(port, "/status").and_then(|body| serde_json::from_str(&body).ok())
}

/// Whether the daemon on `port` owns a partition (restored and running).
pub fn is_assigned(port: u16) -> bool {
    status(port).is_some_and(|s| s["consumer"]["partitions"].as_array().is_some_and(|p| !p.is_empty()))
}

/// Starts a daemon with `start(port)` on a free port and waits until its
/// `/status` names it `instance`. Should another process take the port
/// between [`free_port`] and the daemon's bind, the daemon exits, and it is
/// started again on another port.
pub fn start_on_free_port(instance: &str, mut start: impl FnMut(u16) -> Guard) -> (Guard, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut daemon = start(port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if status(port).is_some_and(|s| s["instance"] == instance) {
                return (daemon, port);
            }
            if daemon.0.try_wait().is_ok_and(|exited| exited.is_some()) {
                break;
            }
            assert!(Instant::now() < deadline, "{instance} did not start within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("{instance} exited at start on five ports in a row")
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`…) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
}

/// Sends SIGTERM and waits for the exit (at most 60 s).
pub fn terminate(mut process: Guard) -> ExitStatus {
    signal(process.0.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = process.0.try_wait() {
            return status;
        }
        assert!(Instant::now() < deadline, "streamd did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Per partition (of `partitions`), the next offset the daemons on `ports` have reached (the highest).
pub fn positions(ports: &[u16], partitions: usize) -> Vec<i64> {
    let mut reached = vec![0i64; partitions];
    for status in ports.iter().filter_map(|&port| status(port)) {
        for p in status["consumer"]["partitions"].as_array().into_iter().flatten() {
            if let (Some(partition), Some(next)) = (p["partition"].as_i64(), p["next_offset"].as_i64()) {
                if let Some(slot) = usize::try_from(partition).ok().and_then(|p| reached.get_mut(p)) {
                    *slot = (*slot).max(next);
                }
            }
        }
    }
    reached
}

/// Waits until the daemons on `ports` have together processed the
/// `per_partition[p]` messages of every partition `p`; fails after `timeout`.
pub fn wait_caught_up(ports: &[u16], per_partition: &[i64], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let reached = positions(ports, per_partition.len());
        if reached.iter().zip(per_partition).all(|(reached, want)| reached >= want) {
            return;
        }
        assert!(Instant::now() < deadline, "not caught up within {timeout:?}: {reached:?} of {per_partition:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Makes `dir` a fresh pipeline directory: the repository's
/// `deliveries.stream` (the source) beside `files` (name, text).
pub fn pipeline_dir(dir: &Path, files: &[(&str, String)]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("pipeline dir");
    std::fs::copy(repo().join("pipelines/deliveries.stream"), dir.join("deliveries.stream")).expect("copy the source");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write a pipeline file");
    }
}
