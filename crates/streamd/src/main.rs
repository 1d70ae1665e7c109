//! `streamd`: runs every deployed pipeline over Kafka into a store and serves
//! Prometheus metrics. `streamd --embedded` needs no Kafka: it starts an
//! in-process cluster fed by the built-in generator.

mod config;
mod embedded;
mod http;
mod metrics;
mod query_api;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info};

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
    let mut config = config::Config::try_from(raw)?;

    let plan = load_plan(&config.pipelines)?;
    config.kafka.topics = plan.plan.sources.iter().map(|s| s.topic.clone()).collect();
    config.kafka.topics.dedup();
    if config.kafka.topics.is_empty() {
        bail!("the pipelines declare no source");
    }
    if config.kafka.dead_letter_topic.is_none() {
        config.kafka.dead_letter_topic = Some(format!("{}.dlq", config.kafka.topics[0]));
    }
    let metrics = Arc::new(metrics::Metrics::new(&plan.plan).context("cannot register metrics")?);

    let embedded = if args.embedded {
        let cluster = embedded::Embedded::start(
            &config.kafka.topics[0],
            config.kafka.dead_letter_topic.as_deref(),
            config.embedded,
        )?;
        config.kafka.brokers = cluster.brokers();
        Some(cluster)
    } else {
        None
    };

    let (store, reader) = open_store(&config.store_url)?;
    let info = Arc::new(http::Info {
        plan_hash: plan.plan.hash.clone(),
        language_version: plan.plan.language_version,
        metrics: plan.plan.metrics.iter().map(|m| m.name.clone()).collect(),
        is_embedded: args.embedded,
        query: Some(Arc::new(query_api::QueryApi::new(reader, plan.clone()))),
    });
    let shutdown = Arc::new(AtomicBool::new(false));
    let consumer = kafka::Consumer::new(config.kafka.clone(), plan.clone(), store, metrics.clone())?;
    let flag = shutdown.clone();
    let consumer_thread = std::thread::Builder::new().name("consumer".into()).spawn(move || consumer.run(&flag))?;
    info!(plan = %&plan.plan.hash[..16], metrics = plan.plan.metrics.len(), http = %config.http_addr, "streamd started.");

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
    let consumer_result = consumer_thread.join().map_err(|_| anyhow::anyhow!("the consumer thread panicked"))?;
    drop(embedded);
    result?;
    consumer_result?;
    info!("streamd stopped cleanly.");
    Ok(())
}

type BoxedStore = Box<dyn store::Store + Send>;

/// The consumer's store and a second handle for the query API: SQLite opens
/// a second connection (WAL: readers never block the consumer's write
/// transactions); Scylla a second session.
fn open_store(url: &str) -> anyhow::Result<(BoxedStore, BoxedStore)> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let store = store::sqlite::SqliteStore::open(path)?;
        let reader = store::sqlite::SqliteStore::open(path).context("cannot open the store for queries")?;
        return Ok((Box::new(store), Box::new(reader)));
    }
    if let Some(spec) = url.strip_prefix("scylla:") {
        let config = store::scylla::ScyllaConfig::parse(spec);
        let store = store::scylla::ScyllaStore::connect(config.clone())
            .with_context(|| format!("cannot connect to Scylla `{spec}`"))?;
        let reader = store::scylla::ScyllaStore::connect(config).context("cannot connect to Scylla for queries")?;
        return Ok((Box::new(store), Box::new(reader)));
    }
    bail!("unsupported store `{url}`")
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

fn load_plan(paths: &[String]) -> anyhow::Result<Arc<engine::CompiledPlan>> {
    let mut roots = Vec::new();
    for path in paths {
        let p = std::path::Path::new(path);
        if p.is_dir() {
            let mut files: Vec<String> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list `{path}`"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|e| e == "stream"))
                .map(|f| f.to_string_lossy().into_owned())
                .collect();
            files.sort();
            roots.extend(files);
        } else {
            roots.push(path.clone());
        }
    }
    let compiled = dsl::compile(&roots, &|p: &str| std::fs::read_to_string(p).map_err(|e| e.to_string()));
    if !compiled.diagnostics.is_empty() {
        eprintln!("{}", compiled.render_diagnostics());
    }
    let Some(plan) = compiled.plan else { bail!("the pipelines have errors; nothing started") };
    Ok(Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).context("the plan cannot run")?))
}
