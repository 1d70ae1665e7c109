//! `GET /api/v1/query`: merged series of a metric as JSON, for Grafana and
//! for customers.
//!
//! Parameters: `metric` (required), `tier` (`1m`, `1h`, …; the finest when
//! absent), `from` / `to` (window start at or after / before; RFC 3339 or
//! epoch ms, as Grafana's `${__from}` / `${__to}` give), `where=COLUMN:VALUE`
//! (repeatable; `null` matches missing keys), `group_by=a,b` (keep these
//! group-by columns, merging over the others; empty for totals; all when
//! absent).
//!
//! The answer is a JSON array with one object per window and kept key
//! combination: `time` (window start, RFC 3339), the kept group-by columns,
//! the aggregates and derived columns. Grafana's Infinity (JSON) data source
//! reads it as a table with `time` as its time field, without transformations.
//! Errors are `{"code": …, "error": "…"}`: 400 `bad_query`, 503
//! `unavailable` (store busy or down: retry) or 500 `internal`.

use crate::http::ApiError;
use std::sync::{Arc, Mutex};
use store::query::Query;
use store::Store;

/// What the query endpoint reads with: its own store handle (a second
/// connection, so queries never wait on the consumer's transactions) and the plan.
pub struct QueryApi {
    store: Mutex<Box<dyn Store + Send>>,
    plan: CurrentPlan,
}

/// The running plan, replaced when a deploy is applied.
pub type CurrentPlan = Arc<std::sync::RwLock<Arc<dsl::Plan>>>;

impl QueryApi {
    /// A query endpoint over `store`, answering for whatever plan `plan` holds.
    pub fn new(store: Box<dyn Store + Send>, plan: CurrentPlan) -> Self {
        QueryApi { store: Mutex::new(store), plan }
    }

    /// Answers the query string `query` (after `?`, still percent-encoded): a
    /// JSON array of rows, or the error to answer with.
    pub fn answer(&self, query: &str) -> Result<serde_json::Value, ApiError> {
        let parsed = parse(query).map_err(ApiError::bad_query)?;
        let Ok(store) = self.store.lock() else { return Err(ApiError::internal("the query store lock is poisoned")) };
        let plan = Arc::clone(&self.plan.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        match store::query::run(store.as_ref(), &plan, &parsed) {
            Ok(result) => {
                let rows: Vec<serde_json::Value> = result
                    .rows
                    .into_iter()
                    .map(|row| {
                        let object: serde_json::Map<String, serde_json::Value> = result
                            .columns
                            .iter()
                            .enumerate()
                            .map(|(i, c)| if i == 0 { "time".to_string() } else { c.clone() })
                            .zip(row)
                            .collect();
                        serde_json::Value::Object(object)
                    })
                    .collect();
                Ok(serde_json::Value::Array(rows))
            }
            Err(e @ store::Error::BadQuery(_)) => Err(ApiError::bad_query(e.to_string())),
            Err(e) if e.is_retryable() => Err(ApiError::unavailable(e)),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }
}

impl QueryApi {
    /// Answers `/api/v1/episodes` (see [`crate::episodes_api`]) for the
    /// query string `query`.
    pub fn answer_episodes(&self, query: &str) -> Result<serde_json::Value, ApiError> {
        let params: crate::episodes_api::EpisodeParams = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::bad_query(format!("the query string is malformed: {e}")))?;
        let Ok(store) = self.store.lock() else { return Err(ApiError::internal("the query store lock is poisoned")) };
        let episodes = crate::episodes_api::episodes(store.as_ref(), &params)?;
        serde_json::to_value(episodes).map_err(|e| ApiError::internal(e.to_string()))
    }
}

fn parse(query: &str) -> Result<Query, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| format!("the query string is malformed: {e}"))?;
    let mut q = Query::default();
    for (key, value) in pairs {
        match key.as_str() {
            "metric" => q.metric = value,
            "tier" => q.tier = Some(value).filter(|t| !t.is_empty()),
            "from" => q.from_ms = Some(parse_time("from", &value)?),
            "to" => q.to_ms = Some(parse_time("to", &value)?),
            "where" => {
                let (column, v) =
                    value.split_once(':').ok_or_else(|| format!("`where={value}`: expected COLUMN:VALUE"))?;
                q.filters.push((column.to_string(), v.to_string()));
            }
            "group_by" => {
                q.group_by = Some(value.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect());
            }
            _ => return Err(format!("unknown parameter `{key}`; known: metric, tier, from, to, where, group_by")),
        }
    }
    if q.metric.is_empty() {
        return Err("missing parameter `metric`".into());
    }
    Ok(q)
}

fn parse_time(name: &str, text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .ok()
        .or_else(|| engine::value::parse_timestamp(text))
        .ok_or_else(|| format!("`{name}={text}`: expected RFC 3339 or epoch milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Output, Partition};
    use store::sqlite::SqliteStore;
    use store::WriteBatch;

    /// The processing time messages without a broker timestamp arrive at
    /// (2100-01-01): after every event time here, so none is too far ahead.
    const NOW_MS: i64 = 4_102_444_800_000;

    const PIPELINE: &str = r#"version 1

source events from kafka "events" format json {
  ts: timestamp event_time,
  provider: string,
  user: string,
}

metric users from events
  group by provider
  compute count() as n, distinct(user) as users
  window 1m, lateness 1m
  rollup 1h keep 90d
"#;

    fn api() -> QueryApi {
        let compiled = dsl::compile_str("q.stream", PIPELINE);
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("checked above");
        let plan = Arc::new(engine::CompiledPlan::new(plan, engine::EngineConfig::default()).expect("plan"));
        let mut store = SqliteStore::open(":memory:").expect("store");
        store.setup(&plan.plan).expect("setup");
        let mut out = Output::default();
        for p in 0..2 {
            let mut partition = Partition::new(plan.clone(), p);
            let lines = (0..4i64).map(|i| {
                serde_json::json!({
                    "ts": engine::value::format_timestamp(1_700_000_040_000 + i * 60_000),
                    "provider": if i % 2 == 0 { "gmail" } else { "yahoo" },
                    "user": format!("u{}", i + i64::from(p)),
                })
                .to_string()
            });
            partition.process_all("events", 0, lines, NOW_MS, &mut out);
            partition.close_all(&mut out);
        }
        let batch = WriteBatch { topic: "events", rows: &out.rows, dead_letters: &[], checkpoints: &[], owners: &[] };
        store.write(&batch).expect("write");
        QueryApi::new(Box::new(store), Arc::new(std::sync::RwLock::new(Arc::new(plan.plan.clone()))))
    }

    fn json(answer: Result<serde_json::Value, ApiError>) -> (u16, serde_json::Value) {
        match answer {
            Ok(rows) => (200, rows),
            Err(error) => (error.status.as_u16(), error.body()),
        }
    }

    #[test]
    fn rows_are_objects_with_a_time_column_merged_over_partitions() {
        let api = api();
        let (code, body) = json(api.answer("metric=users&tier=1h&group_by="));
        assert_eq!(code, 200, "{body}");
        assert_eq!(body, serde_json::json!([{ "time": "2023-11-14T22:00:00.000Z", "n": 8, "users": 5 }]));

        let (code, body) = json(api.answer(
            "metric=users&where=provider:gmail&from=2023-11-14T22%3A14%3A00Z&to=1700000280000&group_by=provider",
        ));
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            body,
            serde_json::json!([
                { "time": "2023-11-14T22:14:00.000Z", "provider": "gmail", "n": 2, "users": 2 },
                { "time": "2023-11-14T22:16:00.000Z", "provider": "gmail", "n": 2, "users": 2 },
            ])
        );
    }

    #[test]
    fn bad_queries_are_400_with_a_message() {
        let api = api();
        for (query, needle) in [
            ("tier=1m", "missing parameter `metric`"),
            ("metric=nope", "unknown metric `nope`"),
            ("metric=users&tier=5m", "unknown tier `5m`"),
            ("metric=users&where=provider", "expected COLUMN:VALUE"),
            ("metric=users&from=yesterday", "expected RFC 3339"),
            ("metric=users&group_by=region", "unknown group-by column `region`"),
            ("metric=users&limit=3", "unknown parameter `limit`"),
        ] {
            let (code, body) = json(api.answer(query));
            assert_eq!(code, 400, "{query}: {body}");
            assert_eq!(body["code"], "bad_query", "{query}: {body}");
            assert!(body["error"].as_str().is_some_and(|e| e.contains(needle)), "{query}: {body}");
        }
    }
}
