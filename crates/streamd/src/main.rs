//! `streamd`: runs every deployed pipeline over Kafka into a store and serves
//! Prometheus metrics. `streamd --embedded` needs no Kafka: it starts an
//! in-process cluster fed by the built-in generator.

mod config;
mod deploy;
mod embedded;
mod episodes_api;
mod export;
mod http;
mod metrics;
mod query_api;
mod reputation;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// Run stream pipelines over Kafka into a store, serving Prometheus metrics.
#[derive(Parser)]
#[command(name = "streamd", version, about)]
struct Args {
    /// TOML configuration file (see streamd.example.toml).
    #[arg(long, short, env = "STREAMD_CONFIG")]
    config: Option<String>,
    /// Start an in-process Kafka fed by the built-in event generator: nothing to install.
    #[arg(long)]
    embedded: bool,
    /// Pipeline files or directories (overrides the file).
    #[arg(long)]
    pipelines: Vec<String>,
    /// Address of /metrics, /healthz and /status (overrides the file).
    #[arg(long, env = "STREAMD_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Store URL, `sqlite:PATH` or `scylla:HOST[:PORT][,HOST…][/KEYSPACE]` (overrides the file).
    #[arg(long, env = "STREAMD_STORE")]
    store: Option<String>,
    /// Kafka bootstrap servers (overrides the file).
    #[arg(long, env = "STREAMD_BROKERS")]
    brokers: Option<String>,
    /// Publish this directory as a new bundle whenever its files change (live reload).
    #[arg(long, value_name = "DIR")]
    watch: Option<String>,
    /// Bearer token of the admin API `/admin/v1/*` (overrides the file).
    #[arg(long, env = "STREAMD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Stop by itself after this many seconds (for demos and tests).
    #[arg(long, value_name = "SECONDS")]
    run_for: Option<u64>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// For people.
    Pretty,
    /// One JSON object per line, for log pipelines.
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,librdkafka=warn".into());
    match args.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init(),
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(error = format!("{error:#}"), "streamd stopped.");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut raw = config::read(args.config.as_deref())?;
    if !args.pipelines.is_empty() {
        raw.pipelines.paths = args.pipelines.clone();
    }
    if let Some(addr) = &args.http_addr {
        raw.http.addr = addr.clone();
    }
    if let Some(store) = &args.store {
        raw.store.url = store.clone();
    }
    if let Some(brokers) = &args.brokers {
        raw.kafka.brokers = brokers.clone();
    }
    if let Some(dir) = &args.watch {
        raw.pipelines.paths = vec![dir.clone()];
    }
    let mut config = config::Config::try_from(raw)?;
    if let Some(token) = args.admin_token.clone().filter(|t| !t.is_empty()) {
        config.admin_token = Some(token);
    }
    if args.watch.is_some() && config.control_topic.is_none() {
        bail!("--watch publishes to the control topic: set deploy.control_topic");
    }
    let started_at_ms = kafka::control::now_ms();

    // Local files: the plan when nothing is deployed yet, and the embedded demo's topic.
    let local = load_plan(&config.pipelines);
    let embedded = if args.embedded {
        start_store_afresh(&config.store_url)?;
        let plan = local.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let topic = kafka::topics_of(plan).into_iter().next().context("the pipelines declare no source")?;
        let dead_letter_topic =
            config.kafka.dead_letter_topic.as_deref().map(|t| t.replace(kafka::TOPIC_PLACEHOLDER, &topic));
        let cluster = embedded::Embedded::start(
            &topic,
            dead_letter_topic.as_deref(),
            config.control_topic.as_deref(),
            config.embedded,
        )?;
        for source in plan.plan.sources.iter().filter(|s| s.dnsbl.is_some()) {
            cluster.create_topic(&source.topic, 1)?;
            cluster.create_topic(&reputation::sweeps::sweeps_topic(&source.topic), 1)?;
        }
        config.kafka.brokers = cluster.brokers();
        Some(cluster)
    } else {
        None
    };

    // What is deployed wins over local files.
    let control = config.control_topic.as_ref().map(|topic| kafka::control::ControlTopic {
        brokers: config.kafka.brokers.clone(),
        topic: topic.clone(),
        librdkafka: config.kafka.librdkafka.clone(),
    });
    let control_state = match &control {
        Some(control) => {
            control.ensure_exists(Duration::from_secs(15))?;
            control.read_all(Duration::from_secs(30))?
        }
        None => kafka::control::ControlState::default(),
    };
    let (deployed, rejections) = kafka::control::newest_runnable(&control_state, &deploy::compile_bundle);
    let (version, plan) = match deployed {
        Some((version, plan)) => {
            info!(version, "Running the deployed bundle.");
            (Some(version), plan)
        }
        None => (None, local?),
    };
    let metrics = Arc::new(metrics::Metrics::new().context("cannot register metrics")?);

    let (store, reader) = open_store(&config.store_url, &config.scylla)?;
    let admin = match (&control, &config.admin_token) {
        (Some(control), Some(token)) => {
            Some(Arc::new(deploy::Admin { token: token.clone(), control: control.clone() }))
        }
        _ => None,
    };
    let info = Arc::new(http::Info {
        instance: config.kafka.instance.clone(),
        started_at_ms,
        is_embedded: args.embedded,
        query: Some(Arc::new(query_api::QueryApi::new(reader, metrics.current_plan()))),
        admin,
    });
    let shutdown = Arc::new(AtomicBool::new(false));
    let (updates, plan_updates) = std::sync::mpsc::channel();
    for (version, refusal) in rejections {
        let _ = updates.send(kafka::PlanUpdate { version: Some(version), plan: Err(refusal) });
    }
    // Startup is a reload from the empty plan: the first plan takes the
    // path every deployed one takes (store, history, metrics, subscription).
    let consumer = kafka::Consumer::new(config.kafka.clone(), store, metrics.clone())?;
    consumer.apply(&kafka::PlanUpdate { version, plan: Ok(plan.clone()) })?;
    let consumer = consumer.with_plan_updates(plan_updates);
    let flag = shutdown.clone();
    let consumer_thread = std::thread::Builder::new().name("consumer".into()).spawn(move || consumer.run(&flag))?;
    let mut helpers = Vec::new();
    if let Some(control) = &control {
        let follower = kafka::control::Follower {
            reader: control.reader(Duration::from_secs(15))?,
            publisher: control.publisher()?,
            updates: updates.clone(),
            last_tried: control_state.bundles.keys().next_back().copied(),
            report_interval: config.report_interval,
        };
        let (flag, metrics) = (shutdown.clone(), metrics.clone());
        let (instance, group) = (config.kafka.instance.clone(), config.kafka.group_id.clone());
        helpers.push(std::thread::Builder::new().name("control".into()).spawn(move || {
            let report = || deploy::report(&metrics, &instance, &group, started_at_ms);
            follower.run(&flag, &deploy::compile_bundle, &report);
        })?);
        if let Some(dir) = &args.watch {
            let watch = deploy::Watch { dir: dir.into(), control: control.clone(), updates: updates.clone() };
            let flag = shutdown.clone();
            helpers.push(std::thread::Builder::new().name("watch".into()).spawn(move || watch.run(&flag))?);
        }
    }
    drop(updates);
    // With --embedded and no resolver configured, the demo zone answers.
    let demo = args.embedded && config.reputation.is_none();
    let poller_settings = config.reputation.clone().or_else(|| demo.then(::reputation::Settings::default));
    let pollers = match poller_settings {
        Some(settings) if reputation::has_dnsbl(&plan.plan) => {
            let (episodes, _) =
                open_store(&config.store_url, &config.scylla).context("cannot open the episode store")?;
            let episodes = Arc::new(std::sync::Mutex::new(episodes));
            Some(reputation::supervise(
                settings,
                config.kafka.clone(),
                metrics.clone(),
                demo,
                episodes,
                shutdown.clone(),
            )?)
        }
        None if reputation::has_dnsbl(&plan.plan) => {
            warn!("The pipelines have a `dnsbl` source but [reputation] resolver is not set: it is not polled here.");
            None
        }
        _ => None,
    };
    info!(
        plan = %&plan.plan.hash[..16],
        version = ?version,
        metrics = plan.plan.metrics.len(),
        instance = %config.kafka.instance,
        http = %config.http_addr,
        "streamd started."
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.http_addr))?;
        let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, metrics.clone(), info, async {
            let _ = stopped.await;
        }));
        wait_for_stop(args.run_for).await;
        info!("Stopping: flushing, committing, leaving the group.");
        shutdown.store(true, Ordering::SeqCst);
        let _ = stop_http.send(());
        let _ = server.await;
        anyhow::Ok(())
    });
    shutdown.store(true, Ordering::SeqCst);
    if let Some(pollers) = pollers {
        pollers.join();
    }
    let consumer_result = consumer_thread.join().map_err(|_| anyhow::anyhow!("the consumer thread panicked"))?;
    for helper in helpers {
        let _ = helper.join();
    }
    drop(embedded);
    result?;
    consumer_result?;
    info!("streamd stopped cleanly.");
    Ok(())
}

type BoxedStore = Box<dyn store::Store + Send>;

/// The embedded demo's cluster is new at every start, its offsets from 0:
/// checkpoints of an earlier run would take the new messages for replays of
/// the old ones. A SQLite store starts empty (the previous run's file is
/// removed); a Scylla keyspace is refused.
fn start_store_afresh(url: &str) -> anyhow::Result<()> {
    let Ok(store::StoreUrl::Sqlite(path)) = store::StoreUrl::parse(url) else {
        bail!("--embedded runs on a new in-process cluster each time: give it a SQLite store, not `{url}`");
    };
    if path == ":memory:" || !std::path::Path::new(path).exists() {
        return Ok(());
    }
    for file in [path.to_string(), format!("{path}-wal"), format!("{path}-shm")] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("cannot remove `{file}`")),
        }
    }
    info!(store = path, "The embedded cluster starts empty: so does its store (the previous run's was removed).");
    Ok(())
}

/// The consumer's store and a second handle for the query API: SQLite opens
/// a second connection (WAL: readers never block the consumer's write
/// transactions); Scylla a second session.
fn open_store(url: &str, scylla: &store::scylla::ScyllaConfig) -> anyhow::Result<(BoxedStore, BoxedStore)> {
    let spec = match store::StoreUrl::parse(url)? {
        store::StoreUrl::Sqlite(path) => {
            let store = store::sqlite::SqliteStore::open(path)?;
            let reader = store::sqlite::SqliteStore::open(path).context("cannot open the store for queries")?;
            return Ok((Box::new(store), Box::new(reader)));
        }
        store::StoreUrl::Scylla(spec) => spec,
    };
    let config = scylla.at(spec);
    let store = store::scylla::ScyllaStore::connect(config.clone())
        .with_context(|| format!("cannot connect to Scylla `{spec}`"))?;
    if let Some(alter) = store.replication_alter() {
        warn!(
            keyspace = %config.keyspace,
            "The keyspace exists with another replication than [store.scylla] configures; \
             it is left as it is. To apply the configuration, run `{alter}` and then a repair."
        );
    }
    let reader = store::scylla::ScyllaStore::connect(config).context("cannot connect to Scylla for queries")?;
    Ok((Box::new(store), Box::new(reader)))
}

/// Resolves on SIGINT, SIGTERM, or after `run_for` seconds.
async fn wait_for_stop(run_for: Option<u64>) {
    let deadline = async {
        match run_for {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("Received SIGINT."),
        _ = terminate => info!("Received SIGTERM."),
        _ = deadline => info!("Run time is over."),
    }
}

/// Compiles the pipeline files `paths` name, by the root rule every command
/// shares ([`dsl::files`]): a deployed bundle of the same directory runs the
/// same metrics.
fn load_plan(paths: &[String]) -> anyhow::Result<Arc<engine::CompiledPlan>> {
    let (_, mut compiled) = dsl::files::compile(paths)?;
    if !compiled.diagnostics.is_empty() {
        eprintln!("{}", compiled.render_diagnostics());
    }
    let built = engine::CompiledPlan::from_compiled(&mut compiled, engine::EngineConfig::default())
        .context("the pipelines have errors; nothing started")?;
    Ok(Arc::new(built.context("the plan cannot run")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_demo_starts_with_an_empty_sqlite_store_and_refuses_scylla() {
        let dir = std::env::temp_dir().join(format!("streamd-afresh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = dir.join("demo.db");
        let db = db.to_str().expect("utf-8");
        for file in [db.to_string(), format!("{db}-wal")] {
            std::fs::write(&file, b"an earlier run").expect("write");
        }
        start_store_afresh(&format!("sqlite:{db}")).expect("removed");
        assert!(!std::path::Path::new(db).exists() && !std::path::Path::new(&format!("{db}-wal")).exists());
        start_store_afresh(&format!("sqlite:{db}")).expect("nothing to remove is fine");
        start_store_afresh("sqlite::memory:").expect("memory");
        assert!(start_store_afresh("scylla:127.0.0.1/streams").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pipelines_directory_is_read_recursively() {
        let dir = std::env::temp_dir().join(format!("streamd-load-plan-{}", std::process::id()));
        let team = dir.join("team");
        std::fs::create_dir_all(&team).expect("temp dir");
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::copy(repo.join("pipelines/deliveries.stream"), dir.join("deliveries.stream")).expect("copy");
        let nested = "version 1\nimport \"../deliveries.stream\"\nmetric nested from deliveries\n  compute count() as n\n  window 1m\n";
        std::fs::write(team.join("nested.stream"), nested).expect("write");
        let plan = load_plan(&[dir.to_string_lossy().into_owned()]);
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<String> = plan.expect("plan").plan.metrics.iter().map(|m| m.name.clone()).collect();
        assert_eq!(names, ["nested"]);
    }
}
