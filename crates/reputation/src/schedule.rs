//! When to poll: sweeps jittered within their slot and quick re-checks of targets whose state
//! changed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::RngExt;

/// How far into its slot a sweep starts: up to `jitter` (a fraction, 0 to
/// 0.5) of `interval`, so that pollers of different sources or
/// installations drift apart instead of hitting a list at the same moments.
pub fn slot_offset(interval: Duration, jitter: f64, rng: &mut SmallRng) -> Duration {
    let jitter = jitter.clamp(0.0, 0.5);
    if jitter == 0.0 {
        return Duration::ZERO;
    }
    interval.mul_f64(rng.random_range(0.0..=jitter))
}

/// Targets to look at again soon, each at most once, bounded by the number
/// of (list, target) pairs the poller has.
#[derive(Debug, Default)]
pub struct Rechecks {
    due: BTreeSet<(Instant, usize, usize)>,
}

impl Rechecks {
    /// Schedules target `target` of list `list` at `at`, unless it already is.
    pub fn schedule(&mut self, at: Instant, list: usize, target: usize) {
        if !self.due.iter().any(|(_, l, t)| (*l, *t) == (list, target)) {
            self.due.insert((at, list, target));
        }
    }

    /// Takes the re-checks due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<(usize, usize)> {
        let later = self.due.split_off(&(now, usize::MAX, usize::MAX));
        let due = std::mem::replace(&mut self.due, later);
        due.into_iter().map(|(_, l, t)| (l, t)).collect()
    }

    /// Renames the targets by `rename`, dropping those it maps to `None`.
    pub fn rekey(&mut self, rename: impl Fn(usize) -> Option<usize>) {
        let due = std::mem::take(&mut self.due);
        self.due = due.into_iter().filter_map(|(at, l, t)| Some((at, l, rename(t)?))).collect();
    }

    /// When the next re-check is due.
    pub fn next(&self) -> Option<Instant> {
        self.due.first().map(|(at, _, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sweeps_start_within_the_first_jitter_of_their_slot() {
        let mut rng = SmallRng::seed_from_u64(7);
        let base = Duration::from_secs(100);
        let offsets: Vec<Duration> = (0..200).map(|_| slot_offset(base, 0.1, &mut rng)).collect();
        assert!(offsets.iter().all(|p| *p <= Duration::from_secs(10)));
        assert!(offsets.iter().any(|p| *p < Duration::from_secs(3)));
        assert!(offsets.iter().any(|p| *p > Duration::from_secs(7)));
        assert_eq!(slot_offset(base, 0.0, &mut rng), Duration::ZERO);
        assert!(slot_offset(base, 5.0, &mut rng) <= Duration::from_secs(50));
    }

    #[test]
    fn rechecks_come_due_once_each_in_time_order() {
        let t0 = Instant::now();
        let mut r = Rechecks::default();
        r.schedule(t0 + Duration::from_secs(20), 0, 1);
        r.schedule(t0 + Duration::from_secs(10), 1, 0);
        r.schedule(t0 + Duration::from_secs(5), 0, 1); // already scheduled
        assert_eq!(r.len(), 2);
        assert_eq!(r.next(), Some(t0 + Duration::from_secs(10)));
        assert!(r.take_due(t0).is_empty());
        assert_eq!(r.take_due(t0 + Duration::from_secs(10)), vec![(1, 0)]);
        assert_eq!(r.take_due(t0 + Duration::from_secs(60)), vec![(0, 1)]);
        assert!(r.is_empty());
    }
}
