//! `GET /api/v1/episodes`: DNSBL listing episodes as JSON (the history of
//! `dnsbl` sources; see docs/reputation.md).
//!
//! Parameters, all optional: `list`, `target`, `from` (listings lasting at
//! or after), `to` (listings that began before; both RFC 3339 or epoch ms),
//! `open` (`true`: only listings that still last). The answer is a JSON
//! array of episodes by list, target and start: `list`, `target`, `code`,
//! `last_code`, `meaning`, `first_seen_ms`, `last_seen_ms`, `ended_ms`
//! (null while open), `first_txt`, `last_txt`.

use crate::http::ApiError;
use serde::Deserialize;
use store::episodes::{Episode, EpisodeFilter};
use store::Store;

/// The query parameters, as decoded from the query string.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EpisodeParams {
    /// Only this list.
    pub list: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only listings lasting at or after (RFC 3339 or epoch ms).
    pub from: Option<String>,
    /// Only listings that began before (RFC 3339 or epoch ms).
    pub to: Option<String>,
    /// Only listings that still last.
    pub open: Option<bool>,
}

/// The episodes `params` select from `store`.
pub fn episodes(store: &dyn Store, params: &EpisodeParams) -> Result<Vec<Episode>, ApiError> {
    let time = |name: &str, text: &Option<String>| -> Result<Option<i64>, ApiError> {
        text.as_deref()
            .map(|t| {
                t.parse::<i64>().ok().or_else(|| engine::value::parse_timestamp(t)).ok_or_else(|| {
                    ApiError::bad_query(format!("`{name}={t}`: expected RFC 3339 or epoch milliseconds"))
                })
            })
            .transpose()
    };
    let filter = EpisodeFilter {
        list: params.list.clone(),
        target: params.target.clone(),
        from_ms: time("from", &params.from)?,
        to_ms: time("to", &params.to)?,
        open_only: params.open.unwrap_or(false),
    };
    store.episodes(&filter).map_err(|e| {
        if e.is_retryable() {
            ApiError::unavailable(e)
        } else {
            ApiError::internal(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_are_selected_by_parameters_and_bad_times_are_400() {
        let mut store = store::sqlite::SqliteStore::open(":memory:").expect("open");
        let episode = |target: &str, ended: Option<i64>| Episode {
            list: "zen".into(),
            target: target.into(),
            code: "127.0.0.2".into(),
            last_code: "127.0.0.2".into(),
            meaning: None,
            first_seen_ms: 1_000,
            last_seen_ms: 2_000,
            ended_ms: ended,
            first_txt: None,
            last_txt: None,
        };
        store.write_episodes(&[episode("192.0.2.1", Some(3_000)), episode("192.0.2.2", None)]).expect("write");
        let all = episodes(&store, &EpisodeParams::default()).expect("answered");
        assert_eq!(all.len(), 2);
        let open = episodes(&store, &EpisodeParams { open: Some(true), ..Default::default() }).expect("answered");
        assert_eq!(open.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["192.0.2.2"]);
        let later = EpisodeParams { from: Some("1970-01-01T00:00:04Z".into()), ..Default::default() };
        assert_eq!(episodes(&store, &later).expect("answered").len(), 1, "the open one lasts");
        let bad = EpisodeParams { to: Some("yesterday".into()), ..Default::default() };
        assert_eq!(episodes(&store, &bad).map_err(|e| e.code).err(), Some("bad_query"));
    }
}
