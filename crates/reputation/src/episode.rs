//! Listing history: an episode is a listing of one target on one list, from
//! its first observation to its last.
//!
//! An episode's identity is (list, target, first_seen_ms), so writing it
//! again is an idempotent upsert. Degraded observations say nothing about a
//! listing and neither extend nor end it; a clean one ends it. After a
//! restart, [`Episodes::restore`] takes the stored open episodes back, so a
//! listing that continues does not open a second episode. A listing whose
//! target is no longer polled (it left the targets of `targets from`, or a
//! deploy removed it) ends at its last observation
//! ([`Episodes::close_unpolled`]).

use std::collections::{HashMap, HashSet};

use crate::classify::State;
use crate::observation::Observation;

/// An episode as stored (`store::episodes`).
pub use store::episodes::Episode;

/// The open episodes, one per (list, target) at most.
#[derive(Debug, Default)]
pub struct Episodes {
    open: HashMap<(String, String), Episode>,
}

impl Episodes {
    /// Takes back the open episodes read from the store.
    pub fn restore(&mut self, open: impl IntoIterator<Item = Episode>) {
        for episode in open.into_iter().filter(Episode::is_open) {
            self.open.insert((episode.list.clone(), episode.target.clone()), episode);
        }
    }

    /// Applies an observation; returns the episode it opened, extended or
    /// ended, to be upserted.
    pub fn observe(&mut self, obs: &Observation) -> Option<Episode> {
        let key = (obs.list.clone(), obs.target.clone());
        let code = obs.code.clone().unwrap_or_default();
        match obs.state {
            State::Degraded => None,
            State::Listed => {
                let episode = self.open.entry(key).or_insert_with(|| Episode {
                    list: obs.list.clone(),
                    target: obs.target.clone(),
                    code: code.clone(),
                    last_code: code.clone(),
                    meaning: obs.meaning.clone(),
                    first_seen_ms: obs.time_ms,
                    last_seen_ms: obs.time_ms,
                    ended_ms: None,
                    first_txt: obs.txt.clone(),
                    last_txt: obs.txt.clone(),
                });
                if obs.time_ms >= episode.last_seen_ms {
                    episode.last_seen_ms = obs.time_ms;
                    episode.last_code = code;
                    if obs.txt.is_some() {
                        episode.last_txt = obs.txt.clone();
                    }
                }
                Some(episode.clone())
            }
            State::Clean => {
                let mut episode = self.open.remove(&key)?;
                episode.ended_ms = Some(obs.time_ms.max(episode.last_seen_ms));
                Some(episode)
            }
        }
    }

    /// After a sweep of `lists` that observed the pairs of `observed`: ends
    /// each open episode of those lists whose target the sweep did not
    /// observe (no longer polled), at its last observation. Returns them,
    /// to be upserted.
    pub fn close_unpolled<'a>(
        &mut self,
        lists: &[String],
        observed: impl IntoIterator<Item = &'a Observation>,
    ) -> Vec<Episode> {
        let observed: HashSet<(&str, &str)> =
            observed.into_iter().map(|o| (o.list.as_str(), o.target.as_str())).collect();
        self.close_where(|list, target| lists.contains(list) && !observed.contains(&(list.as_str(), target.as_str())))
    }

    /// Ends, at their last observation, the open episodes of lists not in
    /// `lists` (a deploy removed them: nothing polls them any more).
    /// Returns them, to be upserted.
    pub fn close_lists_except(&mut self, lists: &[String]) -> Vec<Episode> {
        self.close_where(|list, _| !lists.contains(list))
    }

    /// Ends, at their last observation, the open episodes whose (list,
    /// target) satisfies `gone`, and returns them in (list, target) order.
    fn close_where(&mut self, gone: impl Fn(&String, &String) -> bool) -> Vec<Episode> {
        let keys: Vec<(String, String)> =
            self.open.keys().filter(|(list, target)| gone(list, target)).cloned().collect();
        let mut closed: Vec<Episode> =
            keys.into_iter().filter_map(|key| self.open.remove(&key)).map(end_at_last).collect();
        closed.sort_by(|a, b| (&a.list, &a.target).cmp(&(&b.list, &b.target)));
        closed
    }

    pub fn open(&self) -> impl Iterator<Item = &Episode> {
        self.open.values()
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// An episode ended at its last observation.
fn end_at_last(mut episode: Episode) -> Episode {
    episode.ended_ms = Some(episode.last_seen_ms);
    episode
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(t: i64, state: State, txt: Option<&str>) -> Observation {
        Observation {
            time_ms: t,
            list: "zen".into(),
            zone: "zen.example".into(),
            kind: "ip".into(),
            target: "192.0.2.1".into(),
            state,
            code: (state == State::Listed).then(|| "127.0.0.2".into()),
            meaning: None,
            degraded: None,
            txt: txt.map(Into::into),
            weight: 1.0,
            budget_used: 0.0,
            resolver: "127.0.0.1:53".into(),
            latency_ms: 1,
            cached: false,
        }
    }

    #[test]
    fn a_listing_from_first_to_last_observation_is_one_episode() {
        let mut e = Episodes::default();
        assert_eq!(e.observe(&obs(0, State::Clean, None)), None);
        let first = e.observe(&obs(10, State::Listed, Some("spam"))).unwrap();
        assert_eq!((first.first_seen_ms, first.last_seen_ms), (10, 10));
        assert_eq!(e.observe(&obs(15, State::Degraded, None)), None);
        e.observe(&obs(20, State::Listed, None));
        let last = e.observe(&obs(30, State::Listed, Some("still spam"))).unwrap();
        assert_eq!(last.first_seen_ms, 10);
        assert_eq!(last.first_txt.as_deref(), Some("spam"));
        assert_eq!(last.last_txt.as_deref(), Some("still spam"));
        let ended = e.observe(&obs(40, State::Clean, None)).unwrap();
        assert_eq!((ended.first_seen_ms, ended.last_seen_ms), (10, 30));
        assert_eq!(ended.ended_ms, Some(40));
        assert_eq!(ended.duration_ms(), 20);
        assert!(e.is_empty());
        // A second listing is a second episode.
        let again = e.observe(&obs(50, State::Listed, None)).unwrap();
        assert_eq!(again.first_seen_ms, 50);
    }

    #[test]
    fn a_restart_continues_the_open_episode() {
        let mut before = Episodes::default();
        before.observe(&obs(10, State::Listed, Some("a")));
        let stored: Vec<Episode> = before.open().cloned().collect();
        let mut after = Episodes::default();
        after.restore(stored);
        let continued = after.observe(&obs(20, State::Listed, None)).unwrap();
        assert_eq!((continued.first_seen_ms, continued.last_seen_ms), (10, 20));
        assert_eq!(after.len(), 1);
    }

    #[test]
    fn a_listing_whose_target_is_no_longer_polled_ends_at_its_last_observation() {
        let mut e = Episodes::default();
        let other = |t: i64| Observation { target: "192.0.2.9".into(), ..obs(t, State::Listed, None) };
        let other_list = |t: i64| Observation { list: "spamcop".into(), ..obs(t, State::Listed, None) };
        e.observe(&obs(10, State::Listed, None));
        e.observe(&obs(20, State::Listed, None));
        e.observe(&other(20));
        e.observe(&other_list(20));
        // The next sweep of `zen` observes 192.0.2.9 only: 192.0.2.1 left.
        let swept = [other(30)];
        e.observe(&swept[0]);
        let closed = e.close_unpolled(&["zen".to_string()], &swept);
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!(
            (closed[0].target.as_str(), closed[0].last_seen_ms, closed[0].ended_ms),
            ("192.0.2.1", 20, Some(20))
        );
        // Episodes of lists not swept, and of targets still polled, stay open.
        assert_eq!(e.len(), 2);
        assert!(e.close_unpolled(&["zen".to_string()], &swept).is_empty());
    }

    #[test]
    fn an_older_observation_does_not_move_the_end_back() {
        let mut e = Episodes::default();
        e.observe(&obs(10, State::Listed, None));
        e.observe(&obs(30, State::Listed, Some("new")));
        let ep = e.observe(&obs(20, State::Listed, Some("old"))).unwrap();
        assert_eq!(ep.last_seen_ms, 30);
        assert_eq!(ep.last_txt.as_deref(), Some("new"));
    }
}
