//! `deploy`, `diff`, `status`, `rollback`, `history`: the live fleet's
//! plans, through the control topic (`--brokers`) or a daemon's admin API
//! (`--admin URL --token …`, e.g. the embedded demo).

use crate::cli::GlobalArgs;
use anyhow::{bail, Context};
use dsl::bundle::{Bundle, FileChange, MetricChanges, Provenance};
use kafka::control::{ControlState, ControlTopic, InstanceReport, DEFAULT_CONTROL_TOPIC};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the fleet's control state lives.
#[derive(clap::Args)]
pub struct TargetArgs {
    /// Kafka bootstrap servers of the fleet.
    #[arg(long, env = "STREAMD_BROKERS", conflicts_with = "admin")]
    brokers: Option<String>,
    /// The control topic.
    #[arg(long, env = "STREAMD_CONTROL_TOPIC", default_value = DEFAULT_CONTROL_TOPIC)]
    control_topic: String,
    /// A daemon's admin API instead of Kafka, e.g. `http://127.0.0.1:9464`.
    #[arg(long, env = "STREAMD_ADMIN_URL")]
    admin: Option<String>,
    /// Bearer token of the admin API.
    #[arg(long, env = "STREAMD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `streamctl deploy`.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// Directory of pipeline files.
    dir: String,
    #[command(flatten)]
    target: TargetArgs,
    /// Show what would change and publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Why (recorded with the bundle).
    #[arg(long, short)]
    message: Option<String>,
    /// Wait up to this many seconds until every live instance applied (or refused) it.
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u64>,
    /// Once applied, backfill the metrics the deploy adds from this time
    /// (RFC 3339 or epoch ms); needs `--wait`, `--brokers` and `--store`.
    /// Changed metrics are not backfilled. See `streamctl backfill`.
    #[arg(long, value_name = "TIME", value_parser = super::query::parse_time, requires_all = ["wait", "store"])]
    backfill: Option<i64>,
    /// The fleet's store, for `--backfill`.
    #[arg(long, requires = "backfill")]
    store: Option<String>,
}

/// `streamctl diff`.
#[derive(clap::Args)]
pub struct DiffArgs {
    /// Directory of pipeline files.
    dir: String,
    #[command(flatten)]
    target: TargetArgs,
}

/// `streamctl status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `streamctl rollback`.
#[derive(clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The version to go back to (default: the newest version before the one the fleet runs, with other files).
    #[arg(long)]
    to: Option<u64>,
    /// Show what would change and publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Wait up to this many seconds until every live instance applied (or refused) it.
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u64>,
}

/// `streamctl history`.
#[derive(clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    target: TargetArgs,
}

/// An instance that has not reported for this long is shown as stale.
const STALE_AFTER_MS: i64 = 30_000;
const TIMEOUT: Duration = Duration::from_secs(20);

enum Target {
    Kafka(ControlTopic),
    Admin { url: String, token: String },
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<Target> {
        if let Some(url) = &self.admin {
            let token = self.token.clone().context("--admin needs --token (or STREAMD_ADMIN_TOKEN)")?;
            return Ok(Target::Admin { url: url.trim_end_matches('/').to_string(), token });
        }
        let Some(brokers) = &self.brokers else {
            bail!("say where the fleet is: --brokers HOST:PORT (or STREAMD_BROKERS), or --admin URL --token TOKEN")
        };
        Ok(Target::Kafka(ControlTopic {
            brokers: brokers.clone(),
            topic: self.control_topic.clone(),
            librdkafka: Vec::new(),
        }))
    }
}

impl Target {
    fn state(&self) -> anyhow::Result<ControlState> {
        match self {
            Target::Kafka(control) => Ok(control.read_all(TIMEOUT)?),
            Target::Admin { url, token } => {
                let body = http(url, token, "/admin/v1/control", None)?;
                serde_json::from_slice(&body).context("the admin API answered with something else than control state")
            }
        }
    }

    fn publish(&self, bundle: &Bundle) -> anyhow::Result<()> {
        match self {
            Target::Kafka(control) => {
                control.ensure_exists(TIMEOUT)?;
                Ok(control.publisher()?.publish_bundle(bundle, TIMEOUT)?)
            }
            Target::Admin { url, token } => {
                http(url, token, "/admin/v1/bundles", Some(&serde_json::to_vec(bundle)?))?;
                Ok(())
            }
        }
    }
}

/// Largest admin answer read (the control state holds every bundle ever published).
const MAX_ANSWER: u64 = 256 << 20;

/// A request to the admin API, a POST of `body` or else a GET; the body of
/// a 2xx answer, or the API's error message.
fn http(url: &str, token: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let method = if body.is_some() { "POST" } else { "GET" };
    if !url.starts_with("http://") {
        bail!("--admin takes an http:// URL, not `{url}`");
    }
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(TIMEOUT)).build().into();
    let target = format!("{url}{path}");
    let authorization = format!("Bearer {token}");
    let answer = match body {
        Some(body) => agent
            .post(&target)
            .header("authorization", &authorization)
            .header("content-type", "application/json")
            .send(body),
        None => agent.get(&target).header("authorization", &authorization).call(),
    };
    let mut answer = answer.with_context(|| format!("{method} {target}: no answer"))?;
    let status = answer.status();
    let body = answer
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .with_context(|| format!("{method} {target}: cannot read the answer"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{method} {path}: {status}: {}", message.trim());
    }
    Ok(body)
}

/// Runs `git` in `dir`; `None` when it is not a repository or git is missing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn provenance(dir: &Path, note: Option<String>) -> Provenance {
    let git_commit = git(dir, &["rev-parse", "HEAD"]).map(|commit| {
        // Uncommitted edits under the directory make the commit an approximation: say so.
        let is_dirty = git(dir, &["status", "--porcelain", "--", "."]).is_some_and(|s| !s.is_empty());
        if is_dirty {
            format!("{commit}-dirty")
        } else {
            commit
        }
    });
    let author = git(dir, &["config", "user.email"])
        .filter(|a| !a.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    Provenance { git_commit, author, created_at_ms: kafka::control::now_ms(), note }
}

/// Builds the directory's bundle as the next version and its plan, compiled
/// once; prints diagnostics; `None` if it does not compile or cannot run.
fn build(dir: &str, state: &ControlState, note: Option<String>) -> anyhow::Result<Option<(Bundle, dsl::Plan)>> {
    let files = dsl::files::bundle_files(Path::new(dir)).with_context(|| format!("cannot read `{dir}`"))?;
    if files.is_empty() {
        bail!("`{dir}` has no .stream files");
    }
    let (bundle, mut compiled) = match Bundle::build(files, state.next_version(), provenance(Path::new(dir), note)) {
        Ok(built) => built,
        Err(compiled) => {
            eprint!("{}", compiled.render_diagnostics());
            return Ok(None);
        }
    };
    if !compiled.diagnostics.is_empty() {
        eprint!("{}", compiled.render_diagnostics());
    }
    // The step every daemon runs the bundle through (`CompiledPlan::from_bundle`,
    // whose checks of the bundle itself hold for one just built): a plan whose
    // matchers do not build is refused here, not by the whole fleet.
    match engine::CompiledPlan::from_compiled(&mut compiled, engine::EngineConfig::default()) {
        Some(Ok(runnable)) => Ok(Some((bundle, runnable.plan))),
        Some(Err(error)) => {
            let error = engine::Error::CannotRun { version: bundle.version, source: Box::new(error) };
            eprintln!("error: {:#}", anyhow::Error::from(error));
            Ok(None)
        }
        None => Ok(None),
    }
}

/// What going from the deployed bundle to `new` does to the running metrics.
fn metric_changes(deployed: Option<&Bundle>, new: &dsl::Plan) -> MetricChanges {
    let old = deployed.and_then(|b| b.compile().plan);
    MetricChanges::between(old.as_ref(), new)
}

/// Prints what going from the deployed bundle to `new` changes, with what
/// that does to the metrics (when known); whether any file changes.
fn print_changes(deployed: Option<&Bundle>, new: &Bundle, metrics: Option<&MetricChanges>) -> bool {
    match deployed {
        Some(old) => println!("deployed: version {} ({})", old.version, short(&old.hash)),
        None => println!("deployed: nothing yet"),
    }
    let files = new.file_changes(deployed);
    let mut is_changed = false;
    for change in &files {
        match change {
            FileChange::Added(path) => println!("  added     {path}"),
            FileChange::Removed(path) => println!("  removed   {path}"),
            FileChange::Changed(path, _) => println!("  changed   {path}"),
            FileChange::Unchanged(path) => println!("  unchanged {path}"),
        }
        is_changed |= !matches!(change, FileChange::Unchanged(_));
    }
    if let Some(metrics) = metrics {
        let list = |names: &[String]| if names.is_empty() { "-".to_string() } else { names.join(", ") };
        println!("metrics:");
        println!("  keep state:            {}", list(&metrics.kept));
        println!("  start at the switch:   {}", list(&metrics.added));
        println!("  restart (changed):     {}", list(&metrics.changed));
        println!("  flush and stop:        {}", list(&metrics.removed));
    }
    for change in &files {
        if let FileChange::Changed(_, diff) = change {
            print!("\n{diff}");
        }
    }
    is_changed
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `streamctl deploy DIR`.
pub fn deploy(global: &GlobalArgs, args: DeployArgs) -> anyhow::Result<ExitCode> {
    // Checked before anything is published: a backfill after it would need them.
    let scylla = crate::pipeline::scylla_settings(global)?;
    let target = args.target.target()?;
    let state = target.state()?;
    let Some((bundle, plan)) = build(&args.dir, &state, args.message)? else { return Ok(super::bad_pipelines()) };
    if state.latest().is_some_and(|b| b.hash == bundle.hash) {
        println!("nothing to deploy: `{}` is what version {} holds", args.dir, state.next_version() - 1);
        return Ok(ExitCode::SUCCESS);
    }
    let changes = metric_changes(state.latest(), &plan);
    print_changes(state.latest(), &bundle, Some(&changes));
    let code = publish(&target, &bundle, args.dry_run, args.wait)?;
    if let (Some(from_ms), Some(store), false) = (args.backfill, &args.store, args.dry_run) {
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        let brokers = args.target.brokers.clone().context("--backfill reads Kafka: give --brokers")?;
        // A changed metric's table still holds its old version's rows of
        // the windows before the switch: a backfill beside them would count
        // those windows twice.
        if !changes.changed.is_empty() {
            println!(
                "not backfilled (changed: their tables hold the old version's rows up to the switch): {}",
                changes.changed.join(", ")
            );
        }
        let metrics = changes.added;
        if metrics.is_empty() {
            println!("nothing to backfill: the deploy adds no metric");
            return Ok(code);
        }
        let job = super::backfill::Job {
            metrics,
            from_ms,
            to_ms: None,
            brokers,
            store: store.clone(),
            scylla: scylla.clone(),
            group: "streamctl-backfill".into(),
            topic: None,
            batch: 50_000,
            workers: None,
            timeout: TIMEOUT,
        };
        super::backfill::backfill(&plan, &job, false, Duration::from_secs(args.wait.unwrap_or(0)))?;
    }
    Ok(code)
}

/// `streamctl diff DIR`.
pub fn diff(_global: &GlobalArgs, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let target = args.target.target()?;
    let state = target.state()?;
    let Some((bundle, plan)) = build(&args.dir, &state, None)? else { return Ok(super::bad_pipelines()) };
    let changes = metric_changes(state.latest(), &plan);
    if !print_changes(state.latest(), &bundle, Some(&changes)) {
        println!("no difference");
    }
    Ok(ExitCode::SUCCESS)
}

/// `streamctl status`.
pub fn status(_global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let state = args.target.target()?.state()?;
    let now = kafka::control::now_ms();
    if args.json {
        let instances: Vec<serde_json::Value> = state
            .instances
            .values()
            .map(|r| {
                let mut value = serde_json::to_value(r).unwrap_or_default();
                value["is_live"] = (now - r.reported_at_ms < STALE_AFTER_MS).into();
                value
            })
            .collect();
        let latest = state.latest().map(|b| b.version);
        println!("{}", serde_json::json!({ "latest_version": latest, "instances": instances }));
        return Ok(ExitCode::SUCCESS);
    }
    match state.latest() {
        Some(b) => println!("latest deployed version: {} ({}, by {})", b.version, short(&b.hash), b.author),
        None => println!("nothing deployed yet"),
    }
    if state.instances.is_empty() {
        println!("no instance has reported");
    }
    for report in state.instances.values() {
        print_instance(report, now);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_instance(r: &InstanceReport, now: i64) {
    let age_s = (now - r.reported_at_ms) / 1000;
    let health = if now - r.reported_at_ms >= STALE_AFTER_MS {
        format!("stale (last report {age_s}s ago)")
    } else if r.is_paused {
        "paused: the store is failing".to_string()
    } else {
        format!("ok (reported {age_s}s ago)")
    };
    let version = r.plan_version.map_or_else(|| "local files".to_string(), |v| format!("version {v}"));
    let partitions: Vec<String> = r.assignment.iter().map(|(t, p)| format!("{t}/{p}")).collect();
    println!("{} [{}]: {version} ({}), {health}", r.instance, r.group, short(&r.plan_hash));
    println!("  partitions: {}", if partitions.is_empty() { "none".to_string() } else { partitions.join(" ") });
    if let Some(rejection) = &r.last_rejection {
        let which = rejection.version.map_or_else(|| "local files".to_string(), |v| format!("version {v}"));
        println!("  refused {which}: {}", rejection.error.lines().next().unwrap_or_default());
    }
}

/// `streamctl rollback`.
pub fn rollback(_global: &GlobalArgs, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let target = args.target.target()?;
    let state = target.state()?;
    let Some(latest) = state.latest() else { bail!("nothing is deployed: there is nothing to roll back") };
    // Undo the deploy the fleet runs (which may be older than the newest
    // version, when that was refused): go to the newest earlier version
    // with other files.
    let now = kafka::control::now_ms();
    let mut running = state
        .instances
        .values()
        .filter(|r| now - r.reported_at_ms < STALE_AFTER_MS)
        .filter_map(|r| r.plan_version)
        .collect::<Vec<_>>();
    running.sort_unstable();
    running.dedup();
    let current = match running.as_slice() {
        [version] => state.bundles.get(version).unwrap_or(latest),
        _ => latest,
    };
    let previous = match args.to {
        Some(version) => state.bundles.get(&version).with_context(|| format!("there is no version {version}"))?,
        None => state
            .bundles
            .range(..current.version)
            .rev()
            .map(|(_, b)| b)
            .find(|b| b.hash != current.hash)
            .with_context(|| format!("no version before {} holds other files", current.version))?,
    };
    let note = Some(format!("rollback to {}", previous.version));
    let bundle = previous.republished(state.next_version(), provenance(Path::new("."), note));
    println!("rolling back to version {} as version {}", previous.version, bundle.version);
    let changes = bundle.compile().plan.map(|plan| metric_changes(Some(latest), &plan));
    print_changes(Some(latest), &bundle, changes.as_ref());
    publish(&target, &bundle, args.dry_run, args.wait)
}

/// `streamctl history`.
pub fn history(_global: &GlobalArgs, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let state = args.target.target()?.state()?;
    if state.bundles.is_empty() {
        println!("nothing deployed yet");
    }
    for b in state.bundles.values() {
        let when = engine::value::format_timestamp(b.created_at_ms);
        let commit = b.git_commit.as_deref().map(short).unwrap_or("-");
        let note = b.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default();
        println!(
            "{:>5}  {when}  {}  {:<24}  git {commit}  {} files{note}",
            b.version,
            short(&b.hash),
            b.author,
            b.files.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Publishes `bundle` (unless `dry_run`), then waits for the fleet if asked to.
fn publish(target: &Target, bundle: &Bundle, dry_run: bool, wait: Option<u64>) -> anyhow::Result<ExitCode> {
    if dry_run {
        println!("\ndry run: version {} not published", bundle.version);
        return Ok(ExitCode::SUCCESS);
    }
    target.publish(bundle)?;
    println!("\npublished version {} ({})", bundle.version, short(&bundle.hash));
    wait_for_fleet(target, bundle.version, wait)
}

/// Waits until every live instance runs `version` or refused it; prints each outcome.
fn wait_for_fleet(target: &Target, version: u64, wait: Option<u64>) -> anyhow::Result<ExitCode> {
    let Some(seconds) = wait else { return Ok(ExitCode::SUCCESS) };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    loop {
        let state = target.state()?;
        let now = kafka::control::now_ms();
        let live: Vec<&InstanceReport> =
            state.instances.values().filter(|r| now - r.reported_at_ms < STALE_AFTER_MS).collect();
        let refused = |r: &InstanceReport| r.last_rejection.as_ref().is_some_and(|x| x.version == Some(version));
        let done = live.iter().all(|r| r.plan_version == Some(version) || refused(r));
        if done && !live.is_empty() {
            let elapsed = started.elapsed().as_secs_f64();
            for r in &live {
                print_instance(r, now);
            }
            if live.iter().any(|r| refused(r)) {
                eprintln!("version {version} was refused (see above); the previous plan keeps running");
                return Ok(ExitCode::FAILURE);
            }
            println!("applied by {} instance(s) within {elapsed:.1}s", live.len());
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() >= deadline {
            for r in &live {
                print_instance(r, now);
            }
            bail!("not every live instance applied version {version} within {seconds}s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
