//! Series and windows of one metric within one partition.

use crate::aggregate::AggState;
use crate::value::{KeyVal, Val, OTHER};
use dsl::plan::MetricPlan;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// No index entry / end of a collision chain.
const NONE: u32 = u32::MAX;

/// The series of one window: key values → aggregate states, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct SeriesMap {
    /// Hash of the key → the latest series with that hash; the others with
    /// the same hash follow through `next`.
    index: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
    /// Per series: the next series with the same hash, or [`NONE`].
    next: Vec<u32>,
    /// Keys in arrival order.
    pub keys: Vec<Box<[KeyVal]>>,
    /// States, parallel to `keys`.
    pub states: Vec<Vec<AggState>>,
    overflow: Option<u32>,
}

/// A fixed hasher, so series order never depends on process randomness.
const FIXED_STATE: ahash::RandomState = ahash::RandomState::with_seeds(0x5eed, 0x0f, 0x5e, 0x7135);

/// The index is keyed by key hashes already: use them as they are.
#[derive(Debug, Default, Clone, Copy)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; stay correct for anything else.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
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
        let mut hasher = FIXED_STATE.build_hasher();
        for part in key {
            part.hash_into(&mut hasher);
        }
        let hash = hasher.finish();
        if let Some(i) = self.find(hash, |k| k.iter().zip(key).all(|(k, v)| k.matches(v))) {
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
        self.link(hash, i);
        (&mut self.states[i as usize], false)
    }

    /// The series with hash `hash` whose key satisfies `is_key`.
    fn find(&self, hash: u64, is_key: impl Fn(&[KeyVal]) -> bool) -> Option<u32> {
        let mut i = *self.index.get(&hash)?;
        while i != NONE {
            if is_key(&self.keys[i as usize]) {
                return Some(i);
            }
            i = self.next[i as usize];
        }
        None
    }

    /// Indexes series `i` under `hash`.
    fn link(&mut self, hash: u64, i: u32) {
        let previous = self.index.insert(hash, i);
        self.next[i as usize] = previous.unwrap_or(NONE);
    }

    fn push(&mut self, key: Box<[KeyVal]>, plan: &MetricPlan) -> u32 {
        self.keys.push(key);
        self.states.push(plan.aggregates.iter().map(AggState::new).collect());
        self.next.push(NONE);
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
        let mut hasher = FIXED_STATE.build_hasher();
        for part in key {
            part.as_val().hash_into(&mut hasher);
        }
        let hash = hasher.finish();
        if let Some(i) = self.find(hash, |k| k.iter().zip(key).all(|(k, v)| k.matches(&v.as_val()))) {
            return i as usize;
        }
        let i = self.push(key.into(), plan);
        self.link(hash, i);
        i as usize
    }

    /// Replaces the states of the series with key `key` (restoring stored
    /// rows). Returns its index.
    pub fn restore(&mut self, key: &[KeyVal], states: Vec<AggState>, plan: &MetricPlan) -> usize {
        let i = self.insert_key(key, plan);
        self.states[i] = states;
        i
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
    /// Per series (parallel to `series.keys`; absent means `i64::MIN`): the
    /// `included_through` of the stored row the series was restored from.
    /// Base windows ending at or before it are already in its state and are
    /// not merged again during replay.
    ///
    /// Kept per series rather than per tier window: a store whose batches
    /// are not atomic (e.g. concurrent Scylla writes cut by a crash) may keep
    /// one series' row of a batch and lose another's, so the newest row of
    /// the window says nothing about the others. (Per window it was also an
    /// `i64` defaulting to 0, which skipped base windows ending at or before
    /// the epoch.)
    pub included_through: Vec<i64>,
}

/// All open windows of one metric in one partition.
#[derive(Debug, Default)]
pub struct MetricState {
    /// Open base windows by start.
    pub windows: BTreeMap<i64, Window>,
    /// Per tier 1.. (index 0 unused), open tier windows by start.
    pub tiers: Vec<BTreeMap<i64, TierWindow>>,
}

impl MetricState {
    /// No open windows, with room for every tier of `metric`.
    pub fn new(metric: &MetricPlan) -> Self {
        MetricState { windows: BTreeMap::new(), tiers: (0..metric.tiers.len()).map(|_| BTreeMap::new()).collect() }
    }
}
