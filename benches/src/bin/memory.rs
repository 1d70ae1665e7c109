//! Peak memory of one partition holding ~100,000 live series in one open window.
//!
//! `cargo run --release -p benches --bin memory`
//!
//! Runs a metric grouped by a high-cardinality key (default `message_id`,
//! unique per event, so N events make N series) with the aggregates real
//! pipelines use (`count`, `count_if`, `distinct`, `p99`) over N generated
//! events (`streamctl gen --seed 42`, starting at 00:00:30 so they all fall
//! into one 1-hour window, which stays open). Events are streamed from the
//! file, not held in memory. Prints the live series and the process's peak
//! resident set size (`VmHWM`), before and after.
//!
//! Options: `--events N` (default 100000), `--group-by "EXPR, ..."`
//! (default `message_id`; e.g. `"sender_domain, recipient_domain"` with
//! `--events 1000000`).

use std::io::BufRead;
use std::sync::Arc;

fn main() {
    let mut events = 100_000usize;
    let mut group_by = "message_id".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--events", Some(n)) => events = n.replace('_', "").parse().expect("--events takes a number"),
            ("--group-by", Some(keys)) => group_by = keys,
            _ => {
                eprintln!("usage: memory [--events N] [--group-by \"EXPR, ...\"]");
                std::process::exit(2);
            }
        }
    }
    let path =
        match benches::events_file(events, &workload::Config { start_ms: 1_717_372_830_000, ..Default::default() }) {
            Ok(path) => path,
            Err(why) => {
                eprintln!("SKIPPED: cannot generate events: {why}");
                return;
            }
        };

    let pipeline = format!(
        "version 1\n\nimport \"deliveries.stream\"\n\n\
         metric memory_probe from deliveries\n  group by {group_by}\n  compute\n    count() as events,\n    \
         count_if(event == \"bounced\") as bounced,\n    distinct(recipient_domain) as recipient_domains,\n    \
         p99(latency_ms) as p99_latency_ms\n  window 1h, lateness 2m\n  rollup 1d keep 2y\n  cardinality limit 10000000\n"
    );
    let plan = benches::probe_plan(&pipeline);
    let compiled = Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan compiles"));
    let topic = compiled.plan.sources[0].topic.clone();
    let mut partition = engine::Partition::new(Arc::clone(&compiled), 0);
    let mut out = engine::Output::default();
    let (hwm_before, rss_before) = benches::rss_kib().unwrap_or_default();

    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    let (mut offset, mut rows, mut dead_letters) = (0i64, 0usize, 0usize);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).expect("readable") == 0 {
            break;
        }
        let payload = line.strip_suffix(b"\n").unwrap_or(&line);
        partition.process(&engine::Message::plain(&topic, 0, offset, payload), benches::NOW_MS, &mut out);
        rows += out.rows.len();
        dead_letters += out.dead_letters.len();
        out.rows.clear();
        out.dead_letters.clear();
        offset += 1;
    }
    let series: usize = partition.live_series().iter().sum();
    let (hwm, rss) = benches::rss_kib().unwrap_or_default();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("group by {group_by}; count, count_if, distinct, p99; window 1h");
    println!("events:                  {offset} ({dead_letters} dead letters, {rows} rows emitted so far)");
    println!("live series:             {series}");
    println!("RSS before events:       {:.1} MiB (peak {:.1} MiB)", mib(rss_before), mib(hwm_before));
    println!("RSS with window open:    {:.1} MiB", mib(rss));
    println!("peak RSS (VmHWM):        {:.1} MiB", mib(hwm));
    if series > 0 {
        println!(
            "per live series:         {:.0} bytes",
            (rss.saturating_sub(rss_before) * 1024) as f64 / series as f64
        );
    }
    partition.close_all(&mut out);
    let (hwm_closed, _) = benches::rss_kib().unwrap_or_default();
    println!(
        "peak RSS after close_all: {:.1} MiB ({} rows held in one Output: base and 1d tier rows)",
        mib(hwm_closed),
        out.rows.len()
    );
}
