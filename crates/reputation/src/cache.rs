//! Answers kept until their TTL runs out, in bounded memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A map whose entries expire. When full, expired entries go first, then
/// the one that would expire soonest: memory stays within `capacity`.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: HashMap<K, (V, Instant)>,
    capacity: usize,
    max_ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize, max_ttl: Duration) -> Self {
        TtlCache { entries: HashMap::new(), capacity, max_ttl }
    }

    /// The value, if it has not expired at `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            _ => None,
        }
    }

    /// Keeps `value` for `ttl` (at most the cache's `max_ttl`); a zero TTL
    /// keeps nothing.
    pub fn insert(&mut self, key: K, value: V, ttl: Duration, now: Instant) {
        let ttl = ttl.min(self.max_ttl);
        if ttl.is_zero() || self.capacity == 0 {
            self.entries.remove(&key);
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= self.capacity {
                let soonest = self.entries.iter().min_by_key(|(_, (_, expires))| *expires).map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key, (value, now + ttl));
    }

    /// Renames the keys by `rename`, dropping those it maps to `None`.
    pub fn rekey(&mut self, rename: impl Fn(&K) -> Option<K>) {
        let entries = std::mem::take(&mut self.entries);
        self.entries = entries.into_iter().filter_map(|(k, v)| Some((rename(&k)?, v))).collect();
    }

    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_with_their_ttl_capped_by_the_maximum() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(8, Duration::from_secs(60));
        c.insert("a", 1, Duration::from_secs(10), t0);
        c.insert("b", 2, Duration::from_secs(3600), t0);
        c.insert("z", 3, Duration::ZERO, t0);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(9)), Some(1));
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(10)), None);
        assert_eq!(c.get(&"b", t0 + Duration::from_secs(59)), Some(2));
        assert_eq!(c.get(&"b", t0 + Duration::from_secs(60)), None, "capped");
        assert_eq!(c.get(&"z", t0), None);
    }

    #[test]
    fn a_full_cache_drops_the_expired_then_the_soonest_to_expire() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(2, Duration::from_secs(600));
        c.insert(1, (), Duration::from_secs(5), t0);
        c.insert(2, (), Duration::from_secs(50), t0);
        c.insert(3, (), Duration::from_secs(100), t0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&1, t0), None);
        assert!(c.get(&2, t0).is_some() && c.get(&3, t0).is_some());
        let later = t0 + Duration::from_secs(60);
        c.insert(4, (), Duration::from_secs(1), later);
        assert_eq!(c.len(), 2);
        assert!(c.get(&3, later).is_some() && c.get(&4, later).is_some());
        for i in 0..1000 {
            c.insert(100 + i, (), Duration::from_secs(300), later);
        }
        assert_eq!(c.len(), 2, "bounded");
    }
}
