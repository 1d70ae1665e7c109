//! Helpers for tests that start `streamd` and other servers on loopback.

#![allow(dead_code)] // Each test crate uses a different part.

pub mod tansu;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
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
    let output = Command::new(streamctl()).args(args).output().expect("run streamctl");
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
