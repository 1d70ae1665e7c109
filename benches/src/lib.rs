//! Inputs shared by the benchmarks: generated programs, the shipped
//! pipelines compiled from disk, and generated event files.

use std::borrow::Cow;
use std::fmt::Write;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A program with `rules` classifier rules and `metrics` metrics over one
/// source, shaped like real pipelines: regex and status-code rules, metrics
/// with filters, classifier keys, percentiles and rollups.
pub fn large_program(rules: usize, metrics: usize) -> String {
    let mut text = String::from(
        "version 1\n\nsource deliveries from kafka \"mta.events\" format json {\n  ts: timestamp event_time,\n  event: string,\n  \
         sender_domain: string,\n  sending_ip: string,\n  provider: string,\n  smtp_code: int?,\n  status: string?,\n  \
         diagnostic: string?,\n  latency_ms: int?,\n}\n\n",
    );
    text.push_str("classifier bounce(diagnostic: string?, status: string?, smtp_code: int?, provider: string?) {\n");
    let providers = ["gmail", "microsoft", "yahoo", "apple", "other"];
    for i in 0..rules {
        let provider = providers[i % providers.len()];
        let _ = writeln!(
            text,
            "  rule {provider}.scenario_{i} reason reason_{} {}\n    when provider == \"{provider}\" and diagnostic ~ /(mailbox|account) {i} (is )?(full|unknown|blocked)/i\n    hint \"remediation {i}\"",
            i % 30,
            ["hard", "soft", "block", "transient"][i % 4],
        );
    }
    text.push_str("  default unclassified reason undefined soft\n}\n");
    for i in 0..metrics {
        let _ = writeln!(
            text,
            "\nmetric m{i} from deliveries\n  where event in [\"bounced\", \"deferred\"] and smtp_code >= {}\n  group by sender_domain, provider, bounce(diagnostic, status, smtp_code, provider).reason as reason\n  compute count() as n, distinct(sending_ip) as ips, p99(latency_ms) as p99_ms, count_if(event == \"bounced\") as bounced, bounced / n as rate\n  window 1m, lateness 2m\n  rollup 1h keep 90d, 1d keep 2y\n  export prometheus",
            400 + i % 100
        );
    }
    text
}

/// The workspace root (benches run with the `benches` package as cwd).
pub fn workspace_root() -> PathBuf {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The shipped pipeline files, `pipelines/*.stream`, sorted, as absolute paths.
pub fn pipeline_paths() -> Vec<String> {
    let dir = workspace_root().join("pipelines");
    let mut paths: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "stream"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    paths.sort();
    paths
}

/// Compiles `roots` from disk; `extra` is an in-memory file (path, text)
/// that may import files from disk. Panics with the diagnostics on errors.
pub fn compile_files(roots: &[String], extra: Option<(&str, &str)>) -> dsl::Plan {
    let extra = extra.map(|(path, text)| (dsl::load::normalize(path), text.to_string()));
    let loader = |p: &str| match &extra {
        Some((path, text)) if path == p => Ok(text.clone()),
        _ => std::fs::read_to_string(p).map_err(|e| e.to_string()),
    };
    let mut roots = roots.to_vec();
    if let Some((path, _)) = &extra {
        roots.push(path.clone());
    }
    let compiled = dsl::compile(&roots, &loader);
    match compiled.plan {
        Some(plan) => plan,
        None => panic!("pipelines do not compile:\n{}", compiled.render_diagnostics()),
    }
}

/// The plan of every pipeline in `pipelines/`, as deployed.
pub fn pipelines_plan() -> dsl::Plan {
    compile_files(&pipeline_paths(), None)
}

/// A plan of one in-memory pipeline `text` placed in `pipelines/` (so it can
/// `import "deliveries.stream"` and `import "std:bounces"`).
pub fn probe_plan(text: &str) -> dsl::Plan {
    let path = workspace_root().join("pipelines").join("__bench_probe.stream");
    compile_files(&[], Some((&path.to_string_lossy(), text)))
}

/// The generated events of `config` (the project's generator,
/// [`workload`]), the first `n`: `<target>/bench-data/events-<n>-seed<seed>….jsonl`,
/// written if missing. The name carries every setting that differs from the
/// default. `Err` explains why it could not be written.
pub fn events_file(n: usize, config: &workload::Config) -> Result<PathBuf, String> {
    let dir = target_dir().join("bench-data");
    let default = workload::Config::default();
    let mut name = format!("events-{n}-seed{}", config.seed);
    if config.start_ms != default.start_ms {
        let _ = write!(name, "-start{}", config.start_ms);
    }
    if config.rate_per_s != default.rate_per_s {
        let _ = write!(name, "-rate{}", config.rate_per_s);
    }
    if config.bad_ratio != default.bad_ratio {
        let _ = write!(name, "-bad{}", config.bad_ratio);
    }
    if !config.engagement {
        name.push_str("-noengagement");
    }
    let path = dir.join(name + ".jsonl");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let partial = path.with_extension("partial");
    eprintln!("generating {n} events into {} ...", path.display());
    let write = || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
        let mut generator = workload::Generator::new(config.clone());
        let mut line = Vec::with_capacity(1024);
        for _ in 0..n {
            generator.next_line(&mut line);
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.flush()
    };
    write().map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, &path).map_err(|e| format!("cannot rename {}: {e}", partial.display()))?;
    Ok(path)
}

/// [`events_file`] of the default generator settings with `seed`.
pub fn default_events_file(n: usize, seed: u64) -> Result<PathBuf, String> {
    events_file(n, &workload::Config { seed, ..workload::Config::default() })
}

/// One delivery event, every field, strings borrowed where unescaped: what
/// the parse-only baseline decodes into.
#[derive(serde::Deserialize)]
#[allow(missing_docs)]
pub struct Event<'a> {
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(borrow)]
    pub message_id: Cow<'a, str>,
    #[serde(borrow)]
    pub account_id: Cow<'a, str>,
    #[serde(borrow)]
    pub sender_domain: Cow<'a, str>,
    #[serde(borrow)]
    pub sending_ip: Cow<'a, str>,
    #[serde(borrow)]
    pub ip_pool: Cow<'a, str>,
    #[serde(borrow)]
    pub recipient_domain: Cow<'a, str>,
    #[serde(borrow)]
    pub provider: Cow<'a, str>,
    #[serde(borrow)]
    pub mx_host: Cow<'a, str>,
    pub smtp_code: i64,
    #[serde(borrow)]
    pub status: Cow<'a, str>,
    #[serde(borrow)]
    pub diagnostic: Option<Cow<'a, str>>,
    pub attempt: i64,
    pub latency_ms: i64,
    pub size_bytes: i64,
}

/// The `bounce` classifier of `std:bounces`, ready to run alone.
pub struct BounceClassifier {
    /// The compiled classifier.
    pub runtime: engine::classify::ClassifierRuntime,
    /// Its standalone regexes.
    pub regexes: engine::eval::RegexCache,
}

impl BounceClassifier {
    /// The classifier of `plan`, which must import `std:bounces`.
    pub fn new(plan: &dsl::Plan) -> Self {
        let bounce = plan.classifiers.iter().find(|c| c.name == "bounce").expect("std:bounces is imported");
        let mut regexes = engine::eval::RegexCache::default();
        regexes.add_all(bounce.rules.iter().map(|r| &r.condition)).expect("regexes compile");
        let runtime = engine::classify::ClassifierRuntime::new(bounce.clone()).expect("classifier compiles");
        BounceClassifier { runtime, regexes }
    }

    /// The parameters of every bounced or deferred event, in the classifier's order.
    pub fn failures<'a>(&self, events: &[Event<'a>]) -> Vec<Vec<engine::value::Val<'a>>> {
        events.iter().filter(|e| e.event == "bounced" || e.event == "deferred").map(|e| self.params(e)).collect()
    }

    fn params<'a>(&self, event: &Event<'a>) -> Vec<engine::value::Val<'a>> {
        use engine::value::Val;
        self.runtime
            .plan
            .params
            .iter()
            .map(|param| match param.name.as_str() {
                "diagnostic" => event.diagnostic.clone().map_or(Val::Null, Val::Str),
                "status" => Val::Str(event.status.clone()),
                "smtp_code" => Val::Int(event.smtp_code),
                "provider" => Val::Str(event.provider.clone()),
                // Not in the generated events (nor in the source's messages here).
                "smtp_command" | "feedback_type" => Val::Null,
                other => panic!("the bounce classifier has an unexpected parameter `{other}`"),
            })
            .collect()
    }
}

/// Events held in memory: one buffer, one range per line.
pub struct Events {
    buf: Vec<u8>,
    lines: Vec<(usize, usize)>,
}

impl Events {
    /// Reads a JSON-lines file.
    ///
    /// # Errors
    /// If it cannot be read.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let buf = std::fs::read(path)?;
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, b) in buf.iter().enumerate() {
            if *b == b'\n' {
                if i > start {
                    lines.push((start, i));
                }
                start = i + 1;
            }
        }
        if start < buf.len() {
            lines.push((start, buf.len()));
        }
        Ok(Events { buf, lines })
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Total bytes, newlines excluded.
    pub fn bytes(&self) -> usize {
        self.lines.iter().map(|(s, e)| e - s).sum()
    }

    /// The events' raw bytes, in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.lines.iter().map(|&(s, e)| &self.buf[s..e])
    }
}

/// Feeds every event to one fresh partition of `plan` as partition 0 of the
/// source topic (offsets = line numbers), clearing emitted output as it goes,
/// then closes all windows. Returns the number of rows and dead letters.
pub fn run_partition(plan: &std::sync::Arc<engine::CompiledPlan>, events: &Events) -> (usize, usize) {
    let (mut rows, mut dead) = (0, 0);
    feed_partition(plan, events, |out| {
        rows += out.rows.len();
        dead += out.dead_letters.len();
        out.rows.clear();
        out.dead_letters.clear();
    });
    (rows, dead)
}

/// Every row [`run_partition`] emits, in order.
pub fn partition_rows(plan: &std::sync::Arc<engine::CompiledPlan>, events: &Events) -> Vec<engine::Row> {
    let mut rows = Vec::new();
    feed_partition(plan, events, |out| rows.append(&mut out.rows));
    rows
}

/// Runs [`run_partition`]'s partition, handing `take` the output whenever there is some.
fn feed_partition(
    plan: &std::sync::Arc<engine::CompiledPlan>,
    events: &Events,
    mut take: impl FnMut(&mut engine::Output),
) {
    let topic = plan.plan.sources[0].topic.clone();
    let mut partition = engine::Partition::new(std::sync::Arc::clone(plan), 0);
    let mut out = engine::Output::default();
    for (offset, payload) in events.iter().enumerate() {
        partition.process(&engine::Message::plain(&topic, 0, offset as i64, payload), NOW_MS, &mut out);
        if !out.is_empty() {
            take(&mut out);
        }
    }
    partition.close_all(&mut out);
    take(&mut out);
}

/// Like [`run_partition`], with the events dealt round-robin to `count`
/// partitions and fed in chunks of `chunk` messages per partition, as the
/// consumer feeds a batch. Returns the number of rows.
pub fn run_partitions(
    plan: &std::sync::Arc<engine::CompiledPlan>,
    events: &Events,
    count: usize,
    chunk: usize,
) -> usize {
    let topic = plan.plan.sources[0].topic.clone();
    let mut partitions: Vec<engine::Partition> =
        (0..count).map(|p| engine::Partition::new(std::sync::Arc::clone(plan), p as i32)).collect();
    let lines: Vec<&[u8]> = events.iter().collect();
    let mut out = engine::Output::default();
    let mut rows = 0;
    for (round, block) in lines.chunks(count * chunk).enumerate() {
        for (p, partition) in partitions.iter_mut().enumerate() {
            for (j, payload) in block.iter().skip(p).step_by(count).enumerate() {
                let message = engine::Message::plain(&topic, p as i32, (round * chunk + j) as i64, payload);
                partition.process(&message, NOW_MS, &mut out);
            }
            rows += out.rows.len();
            out.rows.clear();
            out.dead_letters.clear();
        }
    }
    for partition in &mut partitions {
        partition.close_all(&mut out);
    }
    rows + out.rows.len()
}

/// The processing time generated messages (which carry no broker timestamp)
/// arrive at (2100-01-01): after every generated event time, so none is
/// dead-lettered as too far ahead.
pub const NOW_MS: i64 = 4_102_444_800_000;

/// Peak and current resident set size of this process, in KiB, from
/// `/proc/self/status` (`VmHWM`, `VmRSS`); `None` off Linux.
pub fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}
