//! Series and windows of one metric within one partition.

use crate::aggregate::AggState;
use crate::value::{KeyVal, Val, OTHER};
use dsl::plan::MetricPlan;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

/// No index entry / end of a collision chain.
const NONE: u32 = u32::MAX;

/// The keys of one window's series, in arrival order, with a hash index.
/// The window keeps the series' states beside it, in the same order.
///
/// Keys are reference-counted: a closed window's key goes on into its row
/// and into every tier window it merges into without being copied.
#[derive(Debug, Default, Clone)]
pub struct SeriesMap {
    /// Hash of the key → the latest series with that hash; the others with
    /// the same hash follow through `next`.
    index: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
    /// Per series: the next series with the same hash, or [`NONE`].
    next: Vec<u32>,
    /// Keys in arrival order.
    pub keys: Vec<Arc<[KeyVal]>>,
    overflow: Option<u32>,
}

/// Where [`SeriesMap::entry`] put an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// An existing series.
    Existing(usize),
    /// A series just added: the caller appends its empty states.
    New(usize),
    /// The existing overflow series: the key was new and the map full.
    Overflow(usize),
    /// The overflow series, just added.
    NewOverflow(usize),
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

/// The hash of an evaluated key.
fn hash_of(key: &[Val<'_>]) -> u64 {
    let mut hasher = FIXED_STATE.build_hasher();
    for part in key {
        part.hash_into(&mut hasher);
    }
    hasher.finish()
}

/// The hash of an owned key: the same as [`hash_of`] of its values.
fn hash_of_owned(key: &[KeyVal]) -> u64 {
    let mut hasher = FIXED_STATE.build_hasher();
    for part in key {
        part.as_val().hash_into(&mut hasher);
    }
    hasher.finish()
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

    /// The series of key `key`, added if new. When the map already holds
    /// `limit` series, a new key goes to the overflow series instead.
    pub fn entry(&mut self, key: &[Val<'_>], limit: usize) -> Slot {
        let hash = hash_of(key);
        if let Some(i) = self.find(hash, |k| k.iter().zip(key).all(|(k, v)| k.matches(v))) {
            return Slot::Existing(i as usize);
        }
        if self.keys.len() >= limit {
            return match self.overflow {
                Some(i) => Slot::Overflow(i as usize),
                None => {
                    let i = self.push(key.iter().map(|_| KeyVal::Str(OTHER.into())).collect());
                    self.overflow = Some(i);
                    Slot::NewOverflow(i as usize)
                }
            };
        }
        let i = self.push(key.iter().map(Val::to_key).collect());
        self.link(hash, i);
        Slot::New(i as usize)
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

    fn push(&mut self, key: Arc<[KeyVal]>) -> u32 {
        self.keys.push(key);
        self.next.push(NONE);
        (self.keys.len() - 1) as u32
    }

    /// The series of the owned key `key`, added (sharing `key`) if absent;
    /// never overflows, since the key was admitted by a finer window.
    /// Returns its index and whether it was added.
    pub fn insert_key(&mut self, key: &Arc<[KeyVal]>) -> (usize, bool) {
        let hash = hash_of_owned(key);
        if let Some(i) = self.find(hash, |k| k == key.as_ref()) {
            return (i as usize, false);
        }
        let i = self.push(Arc::clone(key));
        self.link(hash, i);
        (i as usize, true)
    }
}

/// An open base window.
#[derive(Debug, Default)]
pub struct Window {
    /// Its series' keys.
    pub series: SeriesMap,
    /// Their states, one run of the metric's aggregates per series, in
    /// series order (one allocation for the window, not one per series).
    pub states: Vec<AggState>,
    /// Lowest offset of an event in it: replay must start there to rebuild it.
    pub min_offset: i64,
}

impl Window {
    /// The states of series `i`, of a metric with `width` aggregates.
    pub fn states_mut(&mut self, i: usize, width: usize) -> &mut [AggState] {
        &mut self.states[i * width..(i + 1) * width]
    }

    /// Every series: its key and states, of a metric with `width` aggregates.
    pub fn series(&self, width: usize) -> impl Iterator<Item = (&Arc<[KeyVal]>, &[AggState])> {
        self.series.keys.iter().enumerate().map(move |(i, key)| (key, &self.states[i * width..(i + 1) * width]))
    }

    /// Takes the window apart into keys and one shared state run per series.
    pub fn into_series(self, width: usize) -> impl Iterator<Item = (Arc<[KeyVal]>, Arc<[AggState]>)> {
        let mut states = self.states;
        // From the back, so no element moves twice; `drain` has an exact
        // length, so each run is allocated once.
        let mut runs: Vec<Arc<[AggState]>> = Vec::with_capacity(self.series.len());
        for _ in 0..self.series.len() {
            runs.push(states.drain(states.len() - width..).collect());
        }
        self.series.keys.into_iter().zip(runs.into_iter().rev())
    }
}

/// An open tier window (hour, day): merged from closed base windows.
#[derive(Debug, Default)]
pub struct TierWindow {
    /// Its series' keys.
    pub series: SeriesMap,
    /// Per series, its states. Shared with the rows emitted for it (and
    /// at first with the base window it came from); a merge copies them
    /// only while such a row is still alive.
    pub states: Vec<Arc<[AggState]>>,
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

impl TierWindow {
    /// Replaces the states of the series with key `key` (restoring a
    /// stored row). Returns its index.
    pub fn restore(&mut self, key: &Arc<[KeyVal]>, states: Arc<[AggState]>) -> usize {
        let (i, is_new) = self.series.insert_key(key);
        if is_new {
            self.states.push(states);
        } else {
            self.states[i] = states;
        }
        i
    }
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
