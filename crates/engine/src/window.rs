//! Series and windows of one metric within one partition.

use crate::aggregate::AggState;
use crate::output::Row;
use crate::value::{KeyVal, Val, OTHER};
use dsl::plan::MetricPlan;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, LazyLock};

/// The keys of one window's series, in arrival order, with a hash index.
/// The window keeps the series' states beside it, in the same order.
///
/// Keys are reference-counted: a closed window's key goes on into its row
/// and into every tier window it merges into without being copied.
#[derive(Debug, Default, Clone)]
pub struct SeriesMap {
    /// Open addressing with linear probing: a power of two long (or empty),
    /// never more than half full. Each slot holds its key's hash and the key
    /// itself, so a lookup reads one slot and the key, not a table of control
    /// bytes, a bucket, the key list and then the key (a cache miss each on
    /// the per-event path, once the maps outgrow the L2 cache).
    slots: Vec<IndexSlot>,
    /// Indexed series (all but the overflow series).
    indexed: usize,
    /// Keys in arrival order.
    pub keys: Vec<Arc<[KeyVal]>>,
    overflow: Option<u32>,
}

/// The length of a [`SeriesMap`]'s table once it holds a series.
const MIN_SLOTS: usize = 16;

/// One slot of [`SeriesMap::slots`]. Aligned so that no slot straddles two
/// cache lines.
#[derive(Debug, Default, Clone)]
#[repr(C, align(32))]
struct IndexSlot {
    hash: u64,
    /// `None`: the slot is empty.
    key: Option<Arc<[KeyVal]>>,
    series: u32,
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

/// The series index's hasher, seeded at random once per process: with
/// seeds anyone can read here, a stream of keys crafted to collide would
/// make every lookup probe the whole table. One per process, not per map,
/// because closed windows carry their series' hashes into the tier windows.
/// Nothing visible depends on the seeds: series keep their arrival order.
static SERIES_HASHER: LazyLock<ahash::RandomState> = LazyLock::new(ahash::RandomState::new);

/// The hash of an evaluated key.
fn hash_of(key: &[Val<'_>]) -> u64 {
    let mut hasher = SERIES_HASHER.build_hasher();
    for part in key {
        part.hash_into(&mut hasher);
    }
    hasher.finish()
}

/// The hash of an owned key: the same as [`hash_of`] of its values.
fn hash_of_owned(key: &[KeyVal]) -> u64 {
    let mut hasher = SERIES_HASHER.build_hasher();
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
                    self.keys.push(key.iter().map(|_| KeyVal::Str(OTHER.into())).collect());
                    let i = (self.keys.len() - 1) as u32;
                    self.overflow = Some(i);
                    Slot::NewOverflow(i as usize)
                }
            };
        }
        Slot::New(self.add(hash, key.iter().map(Val::to_key).collect()) as usize)
    }

    /// The series with hash `hash` whose key satisfies `is_key`.
    fn find(&self, hash: u64, is_key: impl Fn(&[KeyVal]) -> bool) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = hash as usize & mask;
        loop {
            // Never more than half full: the probe reaches an empty slot.
            let slot = &self.slots[at];
            let key = slot.key.as_deref()?;
            if slot.hash == hash && is_key(key) {
                return Some(slot.series);
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds the series of key `key` (not yet present) with hash `hash`.
    fn add(&mut self, hash: u64, key: Arc<[KeyVal]>) -> u32 {
        if (self.indexed + 1) * 2 > self.slots.len() {
            self.resize((self.slots.len() * 2).max(MIN_SLOTS));
        }
        let series = self.keys.len() as u32;
        self.place(IndexSlot { hash, key: Some(Arc::clone(&key)), series });
        self.keys.push(key);
        self.indexed += 1;
        series
    }

    /// Puts `slot` into the first empty slot of its probe sequence.
    fn place(&mut self, slot: IndexSlot) {
        let mask = self.slots.len() - 1;
        let mut at = slot.hash as usize & mask;
        while self.slots[at].key.is_some() {
            at = (at + 1) & mask;
        }
        self.slots[at] = slot;
    }

    /// Makes the table `size` slots long (a power of two that fits every
    /// indexed series at most half full) and re-places every slot.
    fn resize(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, vec![IndexSlot::default(); size]);
        for slot in old.into_iter().filter(|slot| slot.key.is_some()) {
            self.place(slot);
        }
    }

    /// The series of the owned key `key`, added (sharing `key`) if absent;
    /// never overflows, since the key was admitted by a finer window.
    /// Returns its index and whether it was added.
    pub fn insert_key(&mut self, key: &Arc<[KeyVal]>) -> (usize, bool) {
        self.insert_hashed(key, hash_of_owned(key))
    }

    /// [`SeriesMap::insert_key`] of series `i` of a closed window, whose
    /// hash is known.
    pub fn insert_closed(&mut self, closed: &ClosedSeries, i: usize) -> (usize, bool) {
        self.insert_hashed(&closed.keys[i], closed.hashes[i])
    }

    /// Makes room for `more` new series at once rather than by doubling
    /// step by step (a tier window's first merge).
    pub fn reserve(&mut self, more: usize) {
        let size = ((self.indexed + more) * 2).next_power_of_two().max(MIN_SLOTS);
        if size > self.slots.len() {
            self.resize(size);
        }
    }

    fn insert_hashed(&mut self, key: &Arc<[KeyVal]>, hash: u64) -> (usize, bool) {
        if let Some(i) = self.find(hash, |k| k == key.as_ref()) {
            return (i as usize, false);
        }
        (self.add(hash, Arc::clone(key)) as usize, true)
    }

    /// Per series, in order, its key's hash: read from the slots rather
    /// than hashed again (but for the overflow series, which has none).
    fn hashes(&self) -> Vec<u64> {
        let mut hashes = vec![0; self.keys.len()];
        for slot in self.slots.iter().filter(|slot| slot.key.is_some()) {
            hashes[slot.series as usize] = slot.hash;
        }
        if let Some(i) = self.overflow {
            hashes[i as usize] = hash_of_owned(&self.keys[i as usize]);
        }
        hashes
    }
}

/// A closed base window's series, to be merged into its tiers and emitted:
/// keys with their hashes, and one shared state run per series.
#[derive(Debug, Default)]
pub struct ClosedSeries {
    /// Keys, in arrival order.
    pub keys: Vec<Arc<[KeyVal]>>,
    /// Per key, its hash in any [`SeriesMap`].
    hashes: Vec<u64>,
    /// Per key, its states.
    pub states: Vec<Arc<[AggState]>>,
}

impl ClosedSeries {
    /// Number of series.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
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
    /// A quantile sharing a sketch (see [`fill_shared_sketches`]) has an
    /// empty one here.
    pub fn series(&self, width: usize) -> impl Iterator<Item = (&Arc<[KeyVal]>, &[AggState])> {
        self.series.keys.iter().enumerate().map(move |(i, key)| (key, &self.states[i * width..(i + 1) * width]))
    }

    /// Takes the window apart into keys and one shared state run per series
    /// (with the quantiles' sketches shared as `shared` says copied).
    pub fn into_series(self, width: usize, shared: &[(usize, usize)]) -> ClosedSeries {
        let hashes = self.series.hashes();
        let mut states = self.states;
        if !shared.is_empty() {
            states.chunks_exact_mut(width).for_each(|run| fill_shared_sketches(run, shared));
        }
        // From the back, so no element moves twice; `drain` has an exact
        // length, so each run is allocated once.
        let mut runs: Vec<Arc<[AggState]>> = Vec::with_capacity(self.series.len());
        for _ in 0..self.series.len() {
            runs.push(states.drain(states.len() - width..).collect());
        }
        runs.reverse();
        ClosedSeries { keys: self.series.keys, hashes, states: runs }
    }
}

/// Copies, in one series' states, each leader's sketch into its followers.
pub fn fill_shared_sketches(states: &mut [AggState], shared: &[(usize, usize)]) {
    for &(follower, leader) in shared {
        // A leader comes before its followers.
        let (before, from_follower) = states.split_at_mut(follower);
        if let (Some(leader), Some(follower)) = (before.get(leader), from_follower.first_mut()) {
            follower.copy_sketch(leader);
        }
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
    /// Series merged into since their rows were last emitted, in the order
    /// first merged (only when tier rows are held back: see
    /// [`crate::Partition::with_tier_rows_every`]).
    pub held_back: Vec<u32>,
    /// Per series (parallel to `series.keys`; absent means not held back):
    /// the end of the newest base window merged into it while its row is
    /// held back, which its row records as `included_through`.
    pub held_through: Vec<Option<i64>>,
}

impl TierWindow {
    /// The row of series `i` of this window, which starts at `start`, of
    /// tier `tier` of metric `metric` in `partition`: the tier window's own
    /// key (the same allocation each time the row is emitted: see
    /// [`crate::drop_superseded`]) and states.
    pub fn row(
        &self,
        (metric, tier, start): (&Arc<MetricPlan>, usize, i64),
        partition: i32,
        i: usize,
        through: Option<i64>,
    ) -> Row {
        Row {
            metric: Arc::clone(metric),
            tier,
            window_start: start,
            partition,
            keys: Arc::clone(&self.series.keys[i]),
            states: Arc::clone(&self.states[i]),
            included_through: through,
        }
    }

    /// Records that series `i` took in the base window ending at `end`, and
    /// that its row is held back. Returns whether it was not held back yet.
    pub fn hold_back(&mut self, i: usize, end: i64) -> bool {
        if self.held_through.len() <= i {
            self.held_through.resize(i + 1, None);
        }
        let was_held_back = self.held_through[i].replace(end).is_some();
        if !was_held_back {
            self.held_back.push(i as u32);
        }
        !was_held_back
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// Texts inline (up to 24 bytes) and on the heap.
    fn key(i: usize) -> [Val<'static>; 2] {
        let domain = if i.is_multiple_of(3) { "a-name-longer-than-inline.example" } else { "example" };
        [Val::Str(Cow::Owned(format!("d{}.{domain}", i % 1000))), Val::Int(i as i64 / 1000)]
    }

    #[test]
    fn keys_are_found_again_through_every_growth_of_the_table() {
        let mut map = SeriesMap::default();
        for i in 0..5000 {
            assert_eq!(map.entry(&key(i), usize::MAX), Slot::New(i));
            // Every key so far, after each growth step.
            if i.is_power_of_two() {
                for j in 0..=i {
                    assert_eq!(map.entry(&key(j), usize::MAX), Slot::Existing(j));
                }
            }
        }
        assert_eq!(map.len(), 5000);
        // Owned keys (a tier window merging this one) land on the same series.
        let mut tier = SeriesMap::default();
        for (i, owned) in map.keys.iter().enumerate().rev() {
            assert_eq!(tier.insert_key(owned), (4999 - i, true));
        }
        for (i, owned) in map.keys.iter().enumerate() {
            assert_eq!(tier.insert_key(owned), (4999 - i, false));
            assert_eq!(tier.entry(&key(i), usize::MAX), Slot::Existing(4999 - i));
        }
    }

    #[test]
    fn a_reserved_table_takes_its_keys_without_growing() {
        let mut map = SeriesMap::default();
        map.reserve(1000);
        assert_eq!(map.slots.len(), 2048);
        for i in 0..1000 {
            assert_eq!(map.entry(&key(i), usize::MAX), Slot::New(i));
        }
        assert_eq!(map.slots.len(), 2048);
        for i in 0..1000 {
            assert_eq!(map.entry(&key(i), usize::MAX), Slot::Existing(i));
        }
    }

    #[test]
    fn keys_past_the_limit_share_the_overflow_series() {
        let mut map = SeriesMap::default();
        assert_eq!(map.entry(&key(0), 2), Slot::New(0));
        assert_eq!(map.entry(&key(1), 2), Slot::New(1));
        assert_eq!(map.entry(&key(2), 2), Slot::NewOverflow(2));
        assert_eq!(map.entry(&key(3), 2), Slot::Overflow(2));
        assert_eq!(map.entry(&key(1), 2), Slot::Existing(1));
        let other: Arc<[KeyVal]> = [KeyVal::Str(OTHER.into()), KeyVal::Str(OTHER.into())].into();
        assert_eq!(map.keys[2], other);

        // Closed, its series carry their hashes into a tier window: the same
        // ones as hashing their keys again, the overflow series' included.
        let window = Window { series: map, states: Vec::new(), min_offset: 0 };
        let closed = window.into_series(0, &[]);
        let mut tier = SeriesMap::default();
        for i in 0..closed.len() {
            assert_eq!(tier.insert_closed(&closed, i), (i, true));
        }
        for (i, key) in closed.keys.iter().enumerate() {
            assert_eq!(tier.insert_key(key), (i, false), "{key:?}");
        }
    }
}
