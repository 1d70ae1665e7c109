//! Series and windows of one metric within one partition.

use crate::aggregate::AggState;
use crate::value::{KeyVal, Val, OTHER};
use ahash::AHashMap;
use dsl::plan::MetricPlan;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

/// The series of one window: key values → aggregate states, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct SeriesMap {
    /// Hash of the key → indices into `keys` with that hash.
    index: AHashMap<u64, Vec<u32>>,
    /// Keys in arrival order.
    pub keys: Vec<Box<[KeyVal]>>,
    /// States, parallel to `keys`.
    pub states: Vec<Vec<AggState>>,
    overflow: Option<u32>,
}

/// A fixed hasher, so series order never depends on process randomness.
#[derive(Default, Clone, Copy)]
struct FixedState;

impl BuildHasher for FixedState {
    type Hasher = ahash::AHasher;
    fn build_hasher(&self) -> ahash::AHasher {
        ahash::RandomState::with_seeds(0x5eed, 0x0f, 0x5e, 0x7135).build_hasher()
    }
}

impl SeriesMap {
    /// Number of series.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The states of the series with key `key`, created if new. When the map
    /// already holds `limit` series, a new key goes to the overflow series
    /// and `true` is returned alongside.
    pub fn entry(&mut self, key: &[Val<'_>], plan: &MetricPlan, limit: usize) -> (&mut Vec<AggState>, bool) {
        let mut hasher = FixedState.build_hasher();
        for part in key {
            part.hash_into(&mut hasher);
        }
        let hash = hasher.finish();
        let found = self.index.get(&hash).and_then(|candidates| {
            candidates.iter().copied().find(|&i| self.keys[i as usize].iter().zip(key).all(|(k, v)| k.matches(v)))
        });
        if let Some(i) = found {
            return (&mut self.states[i as usize], false);
        }
        if self.keys.len() >= limit {
            let i = match self.overflow {
                Some(i) => i,
                None => {
                    let other: Box<[KeyVal]> = key.iter().map(|_| KeyVal::Str(OTHER.into())).collect();
                    let i = self.push(other, plan);
                    self.overflow = Some(i);
                    i
                }
            };
            return (&mut self.states[i as usize], true);
        }
        let i = self.push(key.iter().map(Val::to_key).collect(), plan);
        self.index.entry(hash).or_default().push(i);
        (&mut self.states[i as usize], false)
    }

    fn push(&mut self, key: Box<[KeyVal]>, plan: &MetricPlan) -> u32 {
        self.keys.push(key);
        self.states.push(plan.aggregates.iter().map(AggState::new).collect());
        (self.keys.len() - 1) as u32
    }

    /// Merges the series of `other` into this map (tier roll-ups, reads).
    /// Returns the indices of the series touched, in `other`'s order.
    pub fn merge_from(&mut self, other: &SeriesMap, plan: &MetricPlan) -> Vec<usize> {
        let mut touched = Vec::with_capacity(other.len());
        for (key, states) in other.keys.iter().zip(&other.states) {
            let i = self.insert_key(key, plan);
            for (mine, theirs) in self.states[i].iter_mut().zip(states) {
                mine.merge(theirs);
            }
            touched.push(i);
        }
        touched
    }

    /// Inserts `key` (owned) with empty states if absent; never overflows,
    /// since the key was admitted by a finer window. Returns its index.
    pub fn insert_key(&mut self, key: &[KeyVal], plan: &MetricPlan) -> usize {
        let vals: Vec<Val<'_>> = key.iter().map(KeyVal::as_val).collect();
        let mut hasher = FixedState.build_hasher();
        for part in &vals {
            part.hash_into(&mut hasher);
        }
        let hash = hasher.finish();
        if let Some(i) = self.index.get(&hash).and_then(|c| {
            c.iter().copied().find(|&i| self.keys[i as usize].iter().zip(&vals).all(|(k, v)| k.matches(v)))
        }) {
            return i as usize;
        }
        let i = self.push(key.into(), plan);
        self.index.entry(hash).or_default().push(i);
        i as usize
    }

    /// Replaces the states of the series with key `key` (restoring stored rows).
    pub fn restore(&mut self, key: &[KeyVal], states: Vec<AggState>, plan: &MetricPlan) {
        let i = self.insert_key(key, plan);
        self.states[i] = states;
    }
}

/// An open base window.
#[derive(Debug, Default)]
pub struct Window {
    /// Its series.
    pub series: SeriesMap,
    /// Lowest offset of an event in it: replay must start there to rebuild it.
    pub min_offset: i64,
}

/// An open tier window (hour, day): merged from closed base windows.
#[derive(Debug, Default)]
pub struct TierWindow {
    /// Its series.
    pub series: SeriesMap,
    /// End of the latest base window merged in; base windows of this tier
    /// window ending at or before it are included (empty ones trivially).
    pub included_through: i64,
}

/// All open windows of one metric in one partition.
#[derive(Debug, Default)]
pub struct MetricState {
    /// Open base windows by start.
    pub windows: BTreeMap<i64, Window>,
    /// Per tier 1.. (index 0 unused), open tier windows by start.
    pub tiers: Vec<BTreeMap<i64, TierWindow>>,
}
