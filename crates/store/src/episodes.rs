//! Listing history of DNSBL reputation sources: one row per episode, a
//! listing of one target on one list from its first observation to its
//! last. Its identity is (list, target, first_seen_ms), so writing an
//! episode again is an idempotent upsert.

use serde::{Deserialize, Serialize};

/// One listing episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// The list's name in the pipeline.
    pub list: String,
    /// The address or domain listed.
    pub target: String,
    /// The codes of the first observation (`127.0.0.2,127.0.0.4`).
    pub code: String,
    /// The codes of the latest observation.
    pub last_code: String,
    /// The list's names for the first codes.
    pub meaning: Option<String>,
    /// First observation listed, ms since the epoch.
    pub first_seen_ms: i64,
    /// Latest observation listed, ms since the epoch.
    pub last_seen_ms: i64,
    /// The clean observation that ended it; `None` while it lasts.
    pub ended_ms: Option<i64>,
    /// The first `TXT` answer.
    pub first_txt: Option<String>,
    /// The latest `TXT` answer.
    pub last_txt: Option<String>,
}

impl Episode {
    /// From the first to the last observation listed, ms.
    pub fn duration_ms(&self) -> i64 {
        self.last_seen_ms - self.first_seen_ms
    }

    /// Whether the listing still lasts.
    pub fn is_open(&self) -> bool {
        self.ended_ms.is_none()
    }
}

/// Which episodes to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpisodeFilter {
    /// Only this list.
    pub list: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only episodes lasting at or after this time (ms): ended at or after it, or open.
    pub from_ms: Option<i64>,
    /// Only episodes that began before this time (ms).
    pub to_ms: Option<i64>,
    /// Only episodes that still last.
    pub open_only: bool,
}

impl EpisodeFilter {
    /// Whether `episode` passes.
    pub fn matches(&self, episode: &Episode) -> bool {
        self.list.as_ref().is_none_or(|l| *l == episode.list)
            && self.target.as_ref().is_none_or(|t| *t == episode.target)
            && self.from_ms.is_none_or(|from| episode.ended_ms.is_none_or(|end| end >= from))
            && self.to_ms.is_none_or(|to| episode.first_seen_ms < to)
            && (!self.open_only || episode.is_open())
    }
}

/// Episodes in a stable order: by list, target, then first observation.
pub fn sort(episodes: &mut [Episode]) {
    episodes.sort_by(|a, b| (&a.list, &a.target, a.first_seen_ms).cmp(&(&b.list, &b.target, b.first_seen_ms)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episode(first: i64, ended: Option<i64>) -> Episode {
        Episode {
            list: "zen".into(),
            target: "192.0.2.1".into(),
            code: "127.0.0.2".into(),
            last_code: "127.0.0.2".into(),
            meaning: None,
            first_seen_ms: first,
            last_seen_ms: first + 10,
            ended_ms: ended,
            first_txt: None,
            last_txt: None,
        }
    }

    #[test]
    fn filters_select_by_list_target_time_and_openness() {
        let closed = episode(100, Some(200));
        let open = episode(300, None);
        let f = |from, to, open_only| EpisodeFilter { from_ms: from, to_ms: to, open_only, ..Default::default() };
        assert!(f(None, None, false).matches(&closed));
        assert!(!f(Some(201), None, false).matches(&closed));
        assert!(f(Some(200), None, false).matches(&closed));
        assert!(f(Some(10_000), None, false).matches(&open));
        assert!(!f(None, Some(300), false).matches(&open));
        assert!(!f(None, None, true).matches(&closed));
        let other = EpisodeFilter { list: Some("dbl".into()), ..Default::default() };
        assert!(!other.matches(&open));
    }
}
