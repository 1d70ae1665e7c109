//! One store test suite, run against every backend: always on SQLite, and on
//! Scylla/Cassandra when `SCYLLA_NODES` (`host[:port],…`) is set, each run in
//! a fresh keyspace. Without it the Scylla runs print `SKIPPED: …` and pass.
//!
//! The body writes rows (null keys included, several source partitions, a
//! tier row) with dead letters and a checkpoint, reads them back through
//! every filter, rewrites them (upserts, no duplicates), restores open tier
//! rows and sweeps. `layouts` checks that rows of every layout of aggregate
//! states (values alone, values beside states, older states beside newer
//! values) read back as last written.

use engine::aggregate::AggState;
use engine::{Checkpoint, DeadLetter, KeyVal, MetricStart, Reason, Row};
use store::schema::{encode_state, quote, series_id, table_name, STATE_SUFFIX};
use store::scylla::{ScyllaConfig, ScyllaStore};
use store::sqlite::SqliteStore;
use store::{DeploymentRecord, RowFilter, Store, WriteBatch};

const TOPIC: &str = "deliveries";
const T0: i64 = 1_700_000_040_000; // a minute boundary

fn plan() -> dsl::Plan {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/bounces.stream").to_string();
    let compiled = dsl::compile(&[path], &|p: &str| std::fs::read_to_string(p).map_err(|e| e.to_string()));
    assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
    compiled.plan.expect("checked above")
}

/// How a backend handles retention.
#[derive(Clone, Copy, PartialEq)]
enum Retention {
    /// `sweep` deletes expired rows.
    Sweep,
    /// Rows expire by TTL; `sweep` deletes nothing.
    Ttl,
}

fn row(plan: &dsl::Plan, tier: usize, window_start: i64, partition: i32, keys: Vec<KeyVal>, n: u64) -> Row {
    let metric = &plan.metrics[0];
    let states = metric
        .aggregates
        .iter()
        .map(|a| match AggState::new(a) {
            AggState::Count { .. } => AggState::Count { n },
            other => other,
        })
        .collect();
    Row {
        metric: std::sync::Arc::clone(metric),
        tier,
        window_start,
        partition,
        keys: keys.into(),
        states,
        included_through: (tier > 0).then_some(window_start + 60_000),
    }
}

fn keys(plan: &dsl::Plan, first: Option<&str>) -> Vec<KeyVal> {
    let n = plan.metrics[0].keys.len();
    let mut k = vec![KeyVal::Str("x".into()); n];
    k[0] = first.map_or(KeyVal::Null, |s| KeyVal::Str(s.into()));
    k
}

fn counts(rows: &[Row]) -> Vec<(i64, i32, KeyVal, KeyVal)> {
    rows.iter().map(|r| (r.window_start, r.partition, r.keys[0].clone(), r.states[0].finish())).collect()
}

fn all(tier: usize) -> RowFilter {
    RowFilter { tier, from_ms: None, to_ms: None, equals: vec![], partition: None }
}

fn suite(store: &mut dyn Store, retention: Retention) {
    let plan = plan();
    store.setup(&plan).expect("setup");
    store.setup(&plan).expect("setup is idempotent");

    let a = keys(&plan, Some("a.example"));
    let null = keys(&plan, None);
    let mut rows = Vec::new();
    for w in 0..3 {
        for p in 0..2 {
            rows.push(row(&plan, 0, T0 + w * 60_000, p, a.clone(), 1 + w as u64));
            rows.push(row(&plan, 0, T0 + w * 60_000, p, null.clone(), 10));
        }
    }
    let tier_start = T0 - T0.rem_euclid(3_600_000);
    rows.push(row(&plan, 1, tier_start, 0, a.clone(), 6));
    let dead = vec![
        DeadLetter {
            partition: 1,
            offset: 7,
            topic: TOPIC.into(),
            reason: Reason::MalformedJson,
            detail: "line 1".into(),
            payload: b"{oops".to_vec(),
            key: None,
        },
        DeadLetter {
            partition: 0,
            offset: 3,
            topic: TOPIC.into(),
            reason: Reason::InvalidUtf8,
            detail: String::new(),
            payload: vec![0xff],
            key: Some(b"k".to_vec()),
        },
    ];
    let checkpoint = Checkpoint {
        partition: 0,
        replay_offset: 5,
        next_offset: 9,
        max_event_time: Some(T0 + 150_000),
        metrics: Some(vec![
            MetricStart { hash: plan.metrics[0].hash.clone(), since_offset: None, table: None, replaced: false },
            MetricStart {
                hash: "added-later".into(),
                since_offset: Some(7),
                table: Some("added_later".into()),
                replaced: true,
            },
        ]),
        plan_version: Some(3),
    };
    let legacy = Checkpoint {
        partition: 2,
        replay_offset: 1,
        next_offset: 2,
        max_event_time: None,
        metrics: None,
        plan_version: None,
    };
    let checkpoints = [checkpoint.clone(), legacy.clone()];
    let batch = WriteBatch { topic: TOPIC, rows: &rows, dead_letters: &dead, checkpoints: &checkpoints, owners: &[] };
    store.write(&batch).expect("write");

    assert_eq!(store.checkpoint(TOPIC, 0).expect("checkpoint"), Some(checkpoint.clone()));
    assert_eq!(store.checkpoint(TOPIC, 2).expect("checkpoint"), Some(legacy.clone()));
    assert_eq!(store.checkpoint(TOPIC, 1).expect("checkpoint"), None);
    // Listed whole (tier reads bound themselves by them), in (topic, partition) order.
    let listed = store.all_checkpoints().expect("list");
    assert_eq!(listed, vec![(TOPIC.to_string(), checkpoint.clone()), (TOPIC.to_string(), legacy.clone())]);

    // The deployment history keeps every record, oldest first.
    let record = |version: u64, at_ms: i64, outcome: &str| DeploymentRecord {
        version: Some(version),
        instance: "host-1".into(),
        at_ms,
        outcome: outcome.into(),
        plan_hash: format!("hash-{version}"),
        detail: String::new(),
    };
    store.record_deployment(&record(2, T0 + 10, "rejected")).expect("record");
    store.record_deployment(&record(1, T0, "applied")).expect("record");
    let history = store.deployments().expect("history");
    assert_eq!(history, vec![record(1, T0, "applied"), record(2, T0 + 10, "rejected")]);
    // A plan of local files has no version, and keeps none.
    let local = DeploymentRecord { version: None, ..record(0, T0 + 20, "applied") };
    store.record_deployment(&local).expect("record");
    assert_eq!(store.deployments().expect("history")[2], local);
    assert_eq!(store.checkpoint("other", 0).expect("checkpoint"), None);

    let read = store.read(&plan, 0, &all(0)).expect("read");
    assert_eq!(read.len(), 12);
    let windows: Vec<i64> = read.iter().map(|r| r.window_start).collect();
    assert!(windows.windows(2).all(|w| w[0] <= w[1]), "ordered by window start: {windows:?}");

    // Filters: time range, key value (null too), source partition.
    let ranged = RowFilter { from_ms: Some(T0 + 60_000), to_ms: Some(T0 + 120_000), ..all(0) };
    assert_eq!(store.read(&plan, 0, &ranged).expect("read").len(), 4);
    let by_key = RowFilter { equals: vec![(0, KeyVal::Str("a.example".into()))], partition: Some(1), ..all(0) };
    assert_eq!(
        counts(&store.read(&plan, 0, &by_key).expect("read")),
        (0..3).map(|w| (T0 + w * 60_000, 1, a[0].clone(), KeyVal::Int(1 + w))).collect::<Vec<_>>()
    );
    let by_null = RowFilter { equals: vec![(0, KeyVal::Null)], ..all(0) };
    assert_eq!(store.read(&plan, 0, &by_null).expect("read").len(), 6);

    // Rewriting is an upsert: values change, nothing duplicates.
    let rewritten: Vec<Row> =
        rows.iter().map(|r| row(&plan, r.tier, r.window_start, r.partition, r.keys.to_vec(), 42)).collect();
    store.write(&WriteBatch { topic: TOPIC, rows: &rewritten, ..Default::default() }).expect("rewrite");
    let read = store.read(&plan, 0, &all(0)).expect("read");
    assert_eq!(read.len(), 12);
    assert!(read.iter().all(|r| r.states[0].finish() == KeyVal::Int(42)));

    let tier = store.read(&plan, 0, &all(1)).expect("read tier");
    assert_eq!(tier.len(), 1);
    assert_eq!(tier[0].included_through, Some(tier_start + 60_000));
    let open = store.open_tier_rows(&plan, &checkpoint).expect("open tier rows");
    assert_eq!(counts(&open), counts(&tier));

    let letters = store.dead_letters(TOPIC).expect("dead letters");
    let got: Vec<(i32, i64, &str, &[u8])> =
        letters.iter().map(|d| (d.partition, d.offset, d.reason.as_str(), d.payload.as_slice())).collect();
    assert_eq!(got, vec![(0, 3, "invalid_utf8", &[0xff][..]), (1, 7, "malformed_json", &b"{oops"[..])]);
    assert!(store.dead_letters("other").expect("dead letters").is_empty());

    // Owners: each claim raises the epoch; a write carrying an older one
    // for any of its partitions writes nothing and names them.
    let first = store.claim(TOPIC, 0).expect("claim");
    let second = store.claim(TOPIC, 0).expect("claim again");
    assert_eq!(second, first + 1);
    let other = store.claim(TOPIC, 1).expect("claim another partition");
    let stale_rows = vec![row(&plan, 0, T0, 0, keys(&plan, Some("a")), 1000)];
    let stale = WriteBatch { topic: TOPIC, rows: &stale_rows, owners: &[(0, first), (1, other)], ..Default::default() };
    match store.write(&stale) {
        Err(store::Error::Fenced { topic, partitions }) => assert_eq!((topic.as_str(), partitions), (TOPIC, vec![0])),
        other => panic!("a write with a superseded epoch: {other:?}"),
    }
    assert!(store.read(&plan, 0, &all(0)).expect("read").iter().all(|r| r.states[0].finish() == KeyVal::Int(42)));
    let current = WriteBatch { topic: TOPIC, owners: &[(0, second), (1, other)], ..Default::default() };
    store.write(&current).expect("a write by the current owners");

    // Nothing is within its retention's reach of expiring yet.
    assert_eq!(store.sweep(&plan, T0 + 200_000).expect("sweep"), 0);
    let far = T0 + 10 * 365 * 86_400_000;
    match retention {
        Retention::Sweep => {
            assert_eq!(store.sweep(&plan, far).expect("sweep"), 13);
            assert!(store.read(&plan, 0, &all(0)).expect("read").is_empty());
        }
        Retention::Ttl => assert_eq!(store.sweep(&plan, far).expect("sweep"), 0),
    }
}

#[test]
fn sqlite_backend() {
    let mut store = SqliteStore::open(":memory:").expect("open");
    suite(&mut store, Retention::Sweep);
    episodes(&mut store);
}

/// A metric of every kind of state column: counts and sums (kept as their
/// value alone) and a maximum (kept with its state).
fn layouts_plan() -> dsl::Plan {
    let compiled = dsl::compile_str(
        "layouts.stream",
        "version 1\n\nsource s from kafka \"layouts\" format json {\n  ts: timestamp event_time,\n  k: string?,\n  n: int,\n  x: float,\n}\n\n\
         metric layouts from s\n  group by k\n  compute count() as c, sum(n) as total, sum(x) as mass, max(n) as top\n  window 1m\n",
    );
    assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
    compiled.plan.expect("checked above")
}

/// One row of [`layouts_plan`] holding these states.
fn layouts_row(plan: &dsl::Plan, window: i64, key: Option<&str>, n: u64, total: i128, mass: f64) -> Row {
    Row {
        metric: std::sync::Arc::clone(&plan.metrics[0]),
        tier: 0,
        window_start: T0 + window * 60_000,
        partition: 0,
        keys: vec![key.map_or(KeyVal::Null, |k| KeyVal::Str(k.into()))].into(),
        states: vec![
            AggState::Count { n },
            AggState::SumInt { sum: total },
            AggState::SumFloat { sum: mass },
            AggState::Extreme { value: Some(KeyVal::Int(n as i64)), is_max: true },
        ]
        .into(),
        included_through: None,
    }
}

/// A row as the tests compare them: where it is and its states as JSON.
fn layouts_text(row: &Row) -> String {
    let states: Vec<String> = row.states.iter().map(|s| serde_json::to_string(s).expect("a state")).collect();
    format!("{} {} {:?} {}", row.window_start, row.partition, row.keys, states.join(" "))
}

/// Rows in each layout a store may hold read back as the states last
/// written: the current one (a count or sum as its value alone), the
/// older one (every state beside its value, written by `older`), a row of
/// the older layout rewritten in the current one (its older state is
/// still there on Scylla, where the rewrite leaves the column unset: the
/// newer value must win), and sums beyond their column (stored with their
/// state: an int sum past 64 bits, a float sum past f64's range) rewritten
/// within it and back.
fn layouts<S: Store>(store: &mut S, older: impl Fn(&mut S, &[Row])) {
    let plan = layouts_plan();
    store.setup(&plan).expect("setup");
    let big = i128::from(i64::MAX) + 5;
    let row = |window, key: Option<&str>, n, total, mass| layouts_row(&plan, window, key, n, total, mass);
    let current = [row(0, Some("current"), 3, -4, 1.5), row(0, None, 2, 0, 0.0)];
    let earlier = [row(1, Some("older"), 5, 6, 2.25), row(1, None, 7, -8, 0.5)];
    let rewritten_first = [row(2, Some("rewritten"), 40, 41, 42.5)];
    let rewritten = [row(2, Some("rewritten"), 4, 5, 6.5)];
    // A float sum past f64's range is infinite (two events of 1e308): kept with its state too.
    let back_within = [
        row(3, Some("wide"), 1, big, 1.0),
        row(3, Some("narrow"), 1, 9, 1.0),
        row(3, Some("overflowed"), 1, 9, f64::INFINITY),
        row(3, Some("overflowing"), 1, 9, 1.0),
    ];
    let back_within_last = [
        row(3, Some("wide"), 2, 10, 2.0),
        row(3, Some("narrow"), 2, big, 2.0),
        row(3, Some("overflowed"), 2, 9, 3.0),
        row(3, Some("overflowing"), 2, 9, f64::NEG_INFINITY),
    ];
    let write = |store: &mut S, rows: &[Row]| {
        store.write(&WriteBatch { topic: "layouts", rows, ..Default::default() }).expect("write");
    };
    write(store, &current);
    older(store, &earlier);
    older(store, &rewritten_first);
    write(store, &rewritten);
    write(store, &back_within);
    write(store, &back_within_last);
    let last: Vec<&Row> = current.iter().chain(&earlier).chain(&rewritten).chain(&back_within_last).collect();
    let mut expected: Vec<String> = last.iter().map(|r| layouts_text(r)).collect();
    expected.sort();
    let filters = [
        all(0),
        // Bounded: through the series index on Scylla.
        RowFilter { from_ms: Some(T0), to_ms: Some(T0 + 4 * 60_000), ..all(0) },
    ];
    for filter in filters {
        let mut read: Vec<String> = store.read(&plan, 0, &filter).expect("read").iter().map(layouts_text).collect();
        read.sort();
        assert_eq!(read, expected, "{:?} to {:?}", filter.from_ms, filter.to_ms);
    }
}

/// The older SQLite layout: the rows as written now, then every state
/// put beside its value.
fn sqlite_older(store: &mut SqliteStore, rows: &[Row]) {
    store.write(&WriteBatch { topic: "layouts", rows, ..Default::default() }).expect("write");
    for row in rows {
        let metric = &row.metric;
        for (a, state) in metric.aggregates.iter().zip(row.states.iter()) {
            let sql = format!(
                "UPDATE {} SET {} = ?1 WHERE series = ?2 AND window_start = ?3 AND source_partition = ?4",
                quote(&table_name(metric, row.tier)),
                quote(&format!("{}{STATE_SUFFIX}", a.name))
            );
            let changed = store
                .connection()
                .execute(
                    &sql,
                    rusqlite::params![encode_state(state), series_id(&row.keys), row.window_start, row.partition],
                )
                .expect("update");
            assert_eq!(changed, 1);
        }
    }
}

#[test]
fn sqlite_layouts() {
    let mut store = SqliteStore::open(":memory:").expect("open");
    layouts(&mut store, sqlite_older);
}

/// The older Scylla layout, written through a session of its own: the
/// upsert with every state bound beside its value, and the series index.
fn scylla_older(config: &ScyllaConfig) -> impl Fn(&mut ScyllaStore, &[Row]) + '_ {
    use scylla::value::{CqlValue, MaybeUnset};
    use store::scylla::schema;
    move |_, rows| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let session = store::scylla::session_builder(config).build().await.expect("connect to SCYLLA_NODES");
            for row in rows {
                let (metric, ks) = (&row.metric, &config.keyspace);
                let series = series_id(&row.keys);
                let bucket = schema::bucket_of(row.window_start, metric.tiers[row.tier].width_ms);
                let mut values = store::scylla::row_values(metric, row, &series, bucket);
                let columns = schema::data_columns(metric);
                let mut states = row.states.iter();
                for (value, column) in values[schema::PRIMARY_KEY.len()..].iter_mut().zip(&columns) {
                    if column.name.ends_with(STATE_SUFFIX) {
                        let state = states.next().expect("a state per state column");
                        *value = MaybeUnset::Set(Some(CqlValue::Blob(encode_state(state))));
                    }
                }
                let upsert = session.prepare(schema::upsert(ks, metric, row.tier)).await.expect("prepare");
                session.execute_unpaged(&upsert, values).await.expect("an older row");
                let index = session.prepare(schema::insert_series_index(ks, metric, row.tier)).await.expect("prepare");
                session.execute_unpaged(&index, (bucket, series)).await.expect("its series");
            }
        });
    }
}

/// DNSBL listing episodes: upserts by identity, a later version wins, an
/// older one written again (a replay) does not move an episode back, and
/// filters select by list, target, time and openness.
fn episodes(store: &mut dyn Store) {
    use store::episodes::{Episode, EpisodeFilter};
    let episode = |target: &str, first: i64, last: i64, ended: Option<i64>| Episode {
        list: "zen".into(),
        target: target.into(),
        code: "127.0.0.2".into(),
        last_code: "127.0.0.2".into(),
        meaning: Some("SBL".into()),
        first_seen_ms: T0 + first,
        last_seen_ms: T0 + last,
        ended_ms: ended.map(|e| T0 + e),
        first_txt: Some("first".into()),
        last_txt: Some(format!("at {last}")),
    };
    let all = EpisodeFilter::default();
    assert!(store.episodes(&all).expect("read").is_empty());
    store.write_episodes(&[episode("192.0.2.1", 0, 0, None)]).expect("write");
    store.write_episodes(&[episode("192.0.2.1", 0, 60_000, None), episode("192.0.2.2", 0, 0, None)]).expect("write");
    let closed = episode("192.0.2.1", 0, 120_000, Some(180_000));
    store.write_episodes(std::slice::from_ref(&closed)).expect("write");
    // A replay of an earlier version changes nothing.
    store.write_episodes(&[episode("192.0.2.1", 0, 60_000, None)]).expect("write");
    let read = store.episodes(&all).expect("read");
    assert_eq!(read.len(), 2, "{read:?}");
    assert_eq!(read[0], closed);
    assert_eq!(read[0].duration_ms(), 120_000);
    let open = store.episodes(&EpisodeFilter { open_only: true, ..all.clone() }).expect("read");
    assert_eq!(open.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["192.0.2.2"]);
    let one = EpisodeFilter { target: Some("192.0.2.1".into()), from_ms: Some(T0 + 200_000), ..all.clone() };
    assert!(store.episodes(&one).expect("read").is_empty(), "ended before `from`");
    // A second listing of the same target is a second episode.
    store.write_episodes(&[episode("192.0.2.1", 600_000, 600_000, None)]).expect("write");
    let target = EpisodeFilter { target: Some("192.0.2.1".into()), ..all };
    assert_eq!(store.episodes(&target).expect("read").len(), 2);
}

/// The connection settings the write path relies on (a file database: an
/// in-memory one has no write-ahead log).
#[test]
fn sqlite_connection_settings() {
    let dir = std::env::temp_dir().join(format!("store-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = SqliteStore::open(&dir.join("settings.db").to_string_lossy()).expect("open");
    let pragma = |name: &str| -> String {
        store
            .connection()
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map_or_else(
                |e| format!("error: {e}"),
                |v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                },
            )
    };
    assert_eq!(pragma("journal_mode"), "wal");
    assert_eq!(pragma("synchronous"), "1", "NORMAL");
    assert_eq!(pragma("wal_autocheckpoint"), "16384");
    assert_eq!(pragma("cache_size"), "-65536");
    assert_eq!(pragma("journal_size_limit"), "67108864");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tables made before rows were keyed by window start first (series first,
/// with a rowid) are left as they are, and everything still works on them.
#[test]
fn sqlite_tables_keyed_series_first_still_work() {
    let mut earlier = store_with_earlier_tables(|sql| {
        sql.replace(NEW_KEY, "PRIMARY KEY (series, window_start, source_partition))").replace(" WITHOUT ROWID", "")
    });
    suite(&mut earlier, Retention::Sweep);
}

/// Tables made before they were clustered by their key (a rowid table and
/// an index of the key beside it) work the same.
#[test]
fn sqlite_tables_with_a_rowid_still_work() {
    let mut earlier = store_with_earlier_tables(|sql| sql.replace(" WITHOUT ROWID", ""));
    suite(&mut earlier, Retention::Sweep);
}

/// The primary key of metric tables as `setup` makes them.
const NEW_KEY: &str = "PRIMARY KEY (window_start, series, source_partition)) WITHOUT ROWID";

/// A store whose metric tables are made by `earlier` from the current DDL.
fn store_with_earlier_tables(earlier: impl Fn(&str) -> String) -> SqliteStore {
    let plan = plan();
    let mut current = SqliteStore::open(":memory:").expect("open");
    current.setup(&plan).expect("setup");
    let ddl: Vec<String> = {
        let conn = current.connection();
        let mut statement = conn
            .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'stream_%'")
            .expect("prepare");
        let tables = statement.query_map([], |r| r.get::<_, String>(0)).expect("query");
        tables.map(|sql| sql.expect("sql")).collect()
    };
    assert!(!ddl.is_empty());
    let store = SqliteStore::open(":memory:").expect("open");
    for sql in &ddl {
        assert!(sql.ends_with(NEW_KEY), "{sql}");
        let old = earlier(sql);
        assert_ne!(&old, sql);
        store.connection().execute_batch(&old).expect("an earlier table");
    }
    store
}

#[test]
fn scylla_backend() {
    let Ok(nodes) = std::env::var("SCYLLA_NODES") else {
        println!("SKIPPED: scylla_backend: SCYLLA_NODES is not set (e.g. SCYLLA_NODES=127.0.0.1:9042 with docker/docker-compose.yml)");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let keyspace = format!("streams_test_{}_{nanos}", std::process::id());
    let config = ScyllaConfig { keyspace, ..ScyllaConfig::parse(&nodes) };
    let config = ScyllaConfig { write_consistency: scylla_one(), read_consistency: scylla_one(), ..config };
    let mut store = ScyllaStore::connect(config.clone()).expect("connect to SCYLLA_NODES");
    suite(&mut store, Retention::Ttl);
    episodes(&mut store);
    layouts(&mut store, scylla_older(&config));
}

/// A single test node cannot satisfy `LOCAL_QUORUM` with replication 1 only
/// when it is down; `ONE` keeps the test independent of the node count.
fn scylla_one() -> scylla::statement::Consistency {
    scylla::statement::Consistency::One
}
