//! Aggregate states: mergeable and serialisable, so tiers and cross-partition
//! reads merge states rather than finished numbers.
//!
//! Distinct counts use HyperLogLog (`cardinality-estimator`: exact for small
//! sets, about 1.6% standard error at precision 12); quantiles use DDSketch
//! (`sketches-ddsketch`, 1% relative error).

use crate::value::{KeyVal, Val};
use cardinality_estimator::CardinalityEstimator;
use dsl::plan::{AggregateFn, AggregatePlan, Scalar};
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};
use std::hash::Hasher;

/// Relative accuracy of quantile sketches.
pub const QUANTILE_ALPHA: f64 = 0.01;

fn sketch_config() -> Config {
    Config::new(QUANTILE_ALPHA, 2048, 1.0e-9)
}

/// Where an event stands in the stream, for `first` / `last` tie-breaks that
/// are the same whatever partition reads merge in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Event time, ms.
    pub ts: i64,
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
}

/// The running state of one aggregate of one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AggState {
    /// `count`, `count_if`.
    Count {
        /// Events counted.
        n: u64,
    },
    /// `sum` of ints.
    SumInt {
        /// The exact sum: 128 bits cannot overflow from 64-bit values (it
        /// would take 2^64 of them), so merging is exact in any order,
        /// which saturating at 64 bits was not. Stored as a JSON integer
        /// while it fits 64 bits (as before), else as a decimal string.
        #[serde(with = "wide_sum")]
        sum: i128,
    },
    /// `sum` of floats.
    SumFloat {
        /// Sum (`inf` once it overflows: see [`any_float`]).
        #[serde(with = "any_float")]
        sum: f64,
    },
    /// `min` / `max`.
    Extreme {
        /// The smallest (or largest) value so far.
        value: Option<KeyVal>,
        /// Whether this keeps the largest.
        is_max: bool,
    },
    /// `avg`.
    Avg {
        /// Sum of values.
        #[serde(with = "any_float")]
        sum: f64,
        /// Number of values.
        n: u64,
    },
    /// `first` / `last`.
    Edge {
        /// The value and where it was seen (boxed: inline it would make
        /// every state of every series 56 bytes instead of 32; serialised
        /// the same either way).
        value: Option<Box<(Position, KeyVal)>>,
        /// Whether this keeps the latest.
        is_last: bool,
    },
    /// `distinct`.
    Distinct {
        /// HyperLogLog sketch.
        hll: Box<CardinalityEstimator<[u8]>>,
    },
    /// Quantiles.
    Quantile {
        /// DDSketch.
        sketch: Box<Sketch>,
        /// Which quantile the finished value reports.
        q: f64,
    },
}

impl AggState {
    /// An empty state for `plan`.
    pub fn new(plan: &AggregatePlan) -> Self {
        match plan.function {
            AggregateFn::Count | AggregateFn::CountIf => AggState::Count { n: 0 },
            AggregateFn::Sum if plan.ty.scalar == Scalar::Int => AggState::SumInt { sum: 0 },
            AggregateFn::Sum => AggState::SumFloat { sum: 0.0 },
            AggregateFn::Min => AggState::Extreme { value: None, is_max: false },
            AggregateFn::Max => AggState::Extreme { value: None, is_max: true },
            AggregateFn::Avg => AggState::Avg { sum: 0.0, n: 0 },
            AggregateFn::First => AggState::Edge { value: None, is_last: false },
            AggregateFn::Last => AggState::Edge { value: None, is_last: true },
            AggregateFn::Distinct => AggState::Distinct { hll: Box::default() },
            AggregateFn::Quantile => AggState::Quantile {
                sketch: Box::new(Sketch(DDSketch::new(sketch_config()))),
                q: plan.quantile.unwrap_or(0.5),
            },
        }
    }

    /// Counts one event (`count()`, or `count_if` whose predicate holds).
    #[inline]
    pub fn count(&mut self) {
        self.count_by(1);
    }

    /// Counts `by` events at once: a `count_if` adds its predicate's outcome
    /// as 0 or 1, because a branch on it would be mispredicted whenever
    /// events of different kinds are mixed.
    #[inline]
    pub fn count_by(&mut self, by: u64) {
        if let AggState::Count { n } = self {
            *n += by;
        }
    }

    /// Adds one event's argument value; nulls are skipped. A count counts
    /// a true value (a `count_if` predicate's), so adding `true` is
    /// [`AggState::count`], which the engine calls directly.
    pub fn add(&mut self, value: &Val<'_>, at: Position) {
        match self {
            AggState::Count { n } => {
                if value.is_true() {
                    *n += 1;
                }
            }
            AggState::SumInt { sum } => {
                if let Val::Int(i) = value {
                    *sum = sum.saturating_add(i128::from(*i));
                }
            }
            AggState::SumFloat { sum } => {
                if let Some(f) = value.as_f64() {
                    *sum += f;
                }
            }
            AggState::Extreme { value: current, is_max } => {
                if matches!(value, Val::Null) {
                    return;
                }
                let candidate = value.to_key();
                let replace = match current {
                    None => true,
                    Some(c) => is_better(&candidate, c, *is_max),
                };
                if replace {
                    *current = Some(candidate);
                }
            }
            AggState::Avg { sum, n } => {
                if let Some(f) = value.as_f64() {
                    *sum += f;
                    *n += 1;
                }
            }
            AggState::Edge { value: current, is_last } => {
                if matches!(value, Val::Null) {
                    return;
                }
                let replace = match current {
                    None => true,
                    Some(seen) => (*is_last && at > seen.0) || (!*is_last && at < seen.0),
                };
                if replace {
                    *current = Some(Box::new((at, value.to_key())));
                }
            }
            AggState::Distinct { hll } => {
                if matches!(value, Val::Null) {
                    return;
                }
                hll.insert_hash(stable_hash(value));
            }
            AggState::Quantile { sketch, .. } => {
                if let Some(f) = value.as_f64() {
                    if f.is_finite() {
                        sketch.0.add(f);
                    }
                }
            }
        }
    }

    /// Merges `other` (same aggregate) into `self`.
    pub fn merge(&mut self, other: &AggState) {
        match (self, other) {
            (AggState::Count { n }, AggState::Count { n: m }) => *n += m,
            (AggState::SumInt { sum }, AggState::SumInt { sum: s }) => *sum = sum.saturating_add(*s),
            (AggState::SumFloat { sum }, AggState::SumFloat { sum: s }) => *sum += s,
            (AggState::Extreme { value, is_max }, AggState::Extreme { value: Some(o), .. })
                if value.as_ref().is_none_or(|v| is_better(o, v, *is_max)) =>
            {
                *value = Some(o.clone());
            }
            (AggState::Avg { sum, n }, AggState::Avg { sum: s, n: m }) => {
                *sum += s;
                *n += m;
            }
            (AggState::Edge { value, is_last }, AggState::Edge { value: Some(other), .. }) => {
                let at = other.0;
                let replace = match value {
                    None => true,
                    Some(seen) => (*is_last && at > seen.0) || (!*is_last && at < seen.0),
                };
                if replace {
                    *value = Some(other.clone());
                }
            }
            (AggState::Distinct { hll }, AggState::Distinct { hll: o }) => hll.merge(o),
            (AggState::Quantile { sketch, .. }, AggState::Quantile { sketch: o, .. }) => {
                // Both sketches use `sketch_config`, so merging cannot fail.
                let _ = sketch.0.merge(&o.0);
            }
            _ => {}
        }
    }

    /// Makes this quantile's sketch a copy of `leader`'s, a quantile of the
    /// same argument whose sketch alone was fed while the window was open.
    pub fn copy_sketch(&mut self, leader: &AggState) {
        if let (AggState::Quantile { sketch, .. }, AggState::Quantile { sketch: fed, .. }) = (self, leader) {
            sketch.clone_from(fed);
        }
    }

    /// The finished value.
    pub fn finish(&self) -> KeyVal {
        match self {
            AggState::Count { n } => KeyVal::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
            // Beyond the column's 64 bits the sum is null, an error value,
            // never a wrong number.
            AggState::SumInt { sum } => i64::try_from(*sum).map_or(KeyVal::Null, KeyVal::Int),
            AggState::SumFloat { sum } => KeyVal::Float(sum.to_bits()),
            AggState::Extreme { value, .. } => value.clone().unwrap_or(KeyVal::Null),
            AggState::Avg { sum, n } => {
                if *n == 0 {
                    KeyVal::Null
                } else {
                    KeyVal::Float((sum / *n as f64).to_bits())
                }
            }
            AggState::Edge { value, .. } => value.as_ref().map_or(KeyVal::Null, |edge| edge.1.clone()),
            AggState::Distinct { hll } => KeyVal::Int(hll.estimate() as i64),
            AggState::Quantile { sketch, q } => match sketch.0.quantile(*q) {
                Ok(Some(v)) => KeyVal::Float(v.to_bits()),
                _ => KeyVal::Null,
            },
        }
    }
}

impl AggState {
    /// Whether the finished value is the whole state: a count, or a sum
    /// that fits its column (a finite float, an integer within 64 bits). A
    /// store may then keep the value alone and rebuild the state with
    /// [`AggState::from_value`].
    ///
    /// A count of `i64::MAX` or more is not: it finishes saturated at
    /// `i64::MAX`, so that value stands for "read the state", and a reader
    /// can tell from the value alone which of the two to trust.
    pub fn is_its_value(&self) -> bool {
        match self {
            AggState::Count { n } => *n < i64::MAX as u64,
            AggState::SumInt { sum } => i64::try_from(*sum).is_ok(),
            AggState::SumFloat { sum } => sum.is_finite(),
            _ => false,
        }
    }

    /// The state of an aggregate of `plan` whose finished value is `value`,
    /// for a state that [`AggState::is_its_value`]; `None` for other
    /// aggregates, a value of the wrong kind, and a value that is not the
    /// whole state (a saturated count, a sum that is null or not finite).
    ///
    /// So `from_value(plan, &s.finish())` is `Some(s)` exactly when
    /// `s.is_its_value()`: a store that keeps the state beside the value
    /// only when the value is not the whole state can decide which to read
    /// from the value, whatever an older write left in the state column.
    pub fn from_value(plan: &AggregatePlan, value: &KeyVal) -> Option<Self> {
        let state = match (AggState::new(plan), value) {
            (AggState::Count { .. }, KeyVal::Int(n)) => u64::try_from(*n).ok().map(|n| AggState::Count { n }),
            (AggState::SumInt { .. }, KeyVal::Int(sum)) => Some(AggState::SumInt { sum: i128::from(*sum) }),
            (AggState::SumFloat { .. }, KeyVal::Float(bits)) => Some(AggState::SumFloat { sum: f64::from_bits(*bits) }),
            // A float column may hand back a whole number as an integer.
            (AggState::SumFloat { .. }, KeyVal::Int(sum)) => Some(AggState::SumFloat { sum: *sum as f64 }),
            _ => None,
        };
        state.filter(AggState::is_its_value)
    }
}

/// A DDSketch with a `Debug` that shows its summary.
///
/// Serialised as the sketch, or as null when empty: an empty sketch's
/// minimum and maximum are infinite, which JSON cannot hold (they would be
/// written as null and fail to read back, e.g. when a window's values of a
/// nullable field were all null).
#[derive(Clone)]
pub struct Sketch(pub DDSketch);

impl Serialize for Sketch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Some(&self.0).filter(|sketch| sketch.count() > 0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Sketch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sketch = Option::<DDSketch>::deserialize(deserializer)?;
        Ok(Sketch(sketch.unwrap_or_else(|| DDSketch::new(sketch_config()))))
    }
}

impl std::fmt::Debug for Sketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DDSketch(count={}, min={:?}, max={:?})", self.0.count(), self.0.min(), self.0.max())
    }
}

fn is_better(candidate: &KeyVal, current: &KeyVal, is_max: bool) -> bool {
    let ordering = compare_keys(candidate, current);
    if is_max {
        ordering.is_gt()
    } else {
        ordering.is_lt()
    }
}

/// Orders values of one column: numbers numerically (ints and floats mixed),
/// everything else by its natural order.
pub fn compare_keys(a: &KeyVal, b: &KeyVal) -> std::cmp::Ordering {
    match (a, b) {
        (KeyVal::Int(x), KeyVal::Float(y)) => (*x as f64).total_cmp(&f64::from_bits(*y)),
        (KeyVal::Float(x), KeyVal::Int(y)) => f64::from_bits(*x).total_cmp(&(*y as f64)),
        (KeyVal::Float(x), KeyVal::Float(y)) => f64::from_bits(*x).total_cmp(&f64::from_bits(*y)),
        _ => a.cmp(b),
    }
}

/// A hash of a value that is the same in every process and release, so
/// HyperLogLog states written by one run merge correctly with another's.
pub fn stable_hash(value: &Val<'_>) -> u64 {
    let mut h = Fnv1a64::default();
    value.hash_into(&mut h);
    // FNV alone mixes the high bits poorly; finish with a SplitMix64 round.
    let mut x = h.0;
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a, 64 bit: fixed and dependency-free.
struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a64 {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// An `i128` sum as a JSON integer while it fits an `i64` (the form states
/// were always stored in), else as a decimal string: serde's buffering of
/// internally tagged enums cannot hold a 128-bit integer.
mod wide_sum {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sum: &i128, serializer: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*sum) {
            Ok(narrow) => serializer.serialize_i64(narrow),
            Err(_) => serializer.collect_str(sum),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Narrow(i64),
        Wide(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i128, D::Error> {
        match Stored::deserialize(deserializer)? {
            Stored::Narrow(sum) => Ok(i128::from(sum)),
            Stored::Wide(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A float that may not be finite: a sum of valid values can overflow to
/// infinity (two events of 1e308). JSON has no such numbers (`serde_json`
/// writes `null`, which then could not be read back, and so neither could
/// the metric's stored rows or a restart's tier rows), so a non-finite one
/// is written as the text `"inf"`, `"-inf"` or `"NaN"`. A finite one is a
/// JSON number, as before; `null`, written by earlier versions for a
/// non-finite sum whose sign is lost, reads as NaN.
mod any_float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.collect_str(value)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Number(f64),
        Text(String),
        Null(()),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        match Stored::deserialize(deserializer)? {
            Stored::Number(value) => Ok(value),
            Stored::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Stored::Null(()) => Ok(f64::NAN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsl::plan::Type;

    /// A float sum that overflowed is stored and read back as what it is,
    /// and the `null` of earlier versions still reads.
    #[test]
    fn non_finite_float_sums_read_back() {
        for sum in [f64::INFINITY, f64::NEG_INFINITY, 1.5, -0.0] {
            for state in [AggState::SumFloat { sum }, AggState::Avg { sum, n: 2 }] {
                let stored = serde_json::to_string(&state).expect("serialise");
                let read: AggState = serde_json::from_str(&stored).expect(&stored);
                assert_eq!(serde_json::to_string(&read).expect("serialise"), stored);
                assert_eq!(read.finish(), state.finish(), "{stored}");
            }
        }
        let nan = serde_json::to_string(&AggState::SumFloat { sum: f64::NAN }).expect("serialise");
        assert_eq!(nan, r#"{"kind":"sum_float","sum":"NaN"}"#);
        for stored in [nan.as_str(), r#"{"kind":"sum_float","sum":null}"#] {
            let read: AggState = serde_json::from_str(stored).expect(stored);
            assert!(matches!(read, AggState::SumFloat { sum } if sum.is_nan()), "{stored}");
        }
        let read: AggState = serde_json::from_str(r#"{"kind":"avg","sum":null,"n":3}"#).expect("earlier avg");
        assert!(matches!(read, AggState::Avg { sum, n: 3 } if sum.is_nan()));
    }

    /// Issue 25: an int sum past 64 bits is exact in its state, merges
    /// the same in any order, is stored and read back, and finishes as
    /// null instead of a saturated number.
    #[test]
    fn an_int_sum_beyond_64_bits_is_exact_and_finishes_as_null() {
        let p = plan(AggregateFn::Sum, Scalar::Int, None);
        let values = [i64::MAX, 1, -1, i64::MAX, i64::MIN, i64::MIN];
        let mut whole = AggState::new(&p);
        let mut parts = [AggState::new(&p), AggState::new(&p)];
        for (i, v) in values.iter().enumerate() {
            whole.add(&Val::Int(*v), at(i as i64));
            parts[i % 2].add(&Val::Int(*v), at(i as i64));
        }
        let [mut left, right] = parts;
        left.merge(&right);
        assert_eq!(whole.finish(), KeyVal::Int(-2));
        assert_eq!(left.finish(), KeyVal::Int(-2));
        let mut over = AggState::new(&p);
        over.add(&Val::Int(i64::MAX), at(0));
        over.add(&Val::Int(1), at(1));
        assert_eq!(over.finish(), KeyVal::Null);
        let stored = serde_json::to_string(&over).expect("serialise");
        assert_eq!(stored, r#"{"kind":"sum_int","sum":"9223372036854775808"}"#);
        let read: AggState = serde_json::from_str(&stored).expect("deserialise");
        assert_eq!(serde_json::to_string(&read).expect("serialise"), stored);
        let old: AggState = serde_json::from_str(r#"{"kind":"sum_int","sum":-5}"#).expect("the old form");
        assert_eq!(old.finish(), KeyVal::Int(-5));
    }

    /// A value rebuilds its state exactly when the state is its value, and
    /// then rebuilds it exactly; otherwise the value says "read the state".
    #[test]
    fn a_value_rebuilds_its_state_exactly_when_it_is_the_whole_state() {
        let count = plan(AggregateFn::Count, Scalar::Int, None);
        let int_sum = plan(AggregateFn::Sum, Scalar::Int, None);
        let float_sum = plan(AggregateFn::Sum, Scalar::Float, None);
        let cases = [
            (&count, AggState::Count { n: 0 }, true),
            (&count, AggState::Count { n: 7 }, true),
            (&count, AggState::Count { n: i64::MAX as u64 - 1 }, true),
            (&count, AggState::Count { n: i64::MAX as u64 }, false),
            (&count, AggState::Count { n: u64::MAX }, false),
            (&int_sum, AggState::SumInt { sum: -5 }, true),
            (&int_sum, AggState::SumInt { sum: i128::from(i64::MIN) }, true),
            (&int_sum, AggState::SumInt { sum: i128::from(i64::MAX) + 1 }, false),
            (&float_sum, AggState::SumFloat { sum: 2.5 }, true),
            (&float_sum, AggState::SumFloat { sum: -0.0 }, true),
            (&float_sum, AggState::SumFloat { sum: f64::INFINITY }, false),
            (&float_sum, AggState::SumFloat { sum: f64::NAN }, false),
        ];
        for (p, state, whole) in cases {
            assert_eq!(state.is_its_value(), whole, "{state:?}");
            let rebuilt = AggState::from_value(p, &state.finish());
            let same = rebuilt.as_ref().map(|r| serde_json::to_string(r).expect("serialise"));
            let expected = whole.then(|| serde_json::to_string(&state).expect("serialise"));
            assert_eq!(same, expected, "{state:?}");
        }
        // A float column may hand back a whole number as an integer.
        assert!(
            matches!(AggState::from_value(&float_sum, &KeyVal::Int(3)), Some(AggState::SumFloat { sum }) if sum == 3.0)
        );
        // Nothing else is rebuilt from its value.
        for p in [plan(AggregateFn::Max, Scalar::Int, None), plan(AggregateFn::Distinct, Scalar::Int, None)] {
            assert!(AggState::from_value(&p, &KeyVal::Int(3)).is_none());
        }
        assert!(AggState::from_value(&count, &KeyVal::Null).is_none());
        assert!(AggState::from_value(&count, &KeyVal::Int(-1)).is_none());
    }

    #[test]
    fn a_state_is_at_most_32_bytes() {
        // Every series of a window keeps one per aggregate, side by side:
        // their size is the window's cache footprint (boxing `Edge` took it from 56).
        assert!(std::mem::size_of::<AggState>() <= 32, "{}", std::mem::size_of::<AggState>());
    }

    fn plan(function: AggregateFn, scalar: Scalar, quantile: Option<f64>) -> AggregatePlan {
        AggregatePlan { name: "a".into(), function, arg: None, quantile, ty: Type::of(scalar) }
    }

    fn at(ts: i64) -> Position {
        Position { ts, partition: 0, offset: ts }
    }

    #[test]
    fn merged_states_equal_one_state_over_all_values() {
        let plans = [
            plan(AggregateFn::Count, Scalar::Int, None),
            plan(AggregateFn::Sum, Scalar::Int, None),
            plan(AggregateFn::Min, Scalar::Int, None),
            plan(AggregateFn::Max, Scalar::Int, None),
            plan(AggregateFn::Avg, Scalar::Float, None),
            plan(AggregateFn::First, Scalar::Int, None),
            plan(AggregateFn::Last, Scalar::Int, None),
            plan(AggregateFn::Distinct, Scalar::Int, None),
            plan(AggregateFn::Quantile, Scalar::Float, Some(0.9)),
        ];
        for p in &plans {
            let mut whole = AggState::new(p);
            let (mut left, mut right) = (AggState::new(p), AggState::new(p));
            for i in 0..100i64 {
                let v = if p.function == AggregateFn::Count { Val::Bool(true) } else { Val::Int((i * 37) % 50) };
                whole.add(&v, at(i));
                if i % 3 == 0 { &mut left } else { &mut right }.add(&v, at(i));
            }
            left.merge(&right);
            assert_eq!(left.finish(), whole.finish(), "{:?}", p.function);
            let json = serde_json::to_string(&left).unwrap();
            let back: AggState = serde_json::from_str(&json).unwrap();
            assert_eq!(back.finish(), whole.finish(), "{:?} after serde", p.function);
        }
    }

    #[test]
    fn an_empty_sketch_survives_json_and_a_full_one_keeps_its_form() {
        let empty = AggState::new(&plan(AggregateFn::Quantile, Scalar::Float, Some(0.5)));
        let json = serde_json::to_string(&empty).expect("serialises");
        let back: AggState = serde_json::from_str(&json).expect("an empty sketch reads back");
        assert_eq!(back.finish(), KeyVal::Null);
        let mut full = empty;
        full.add(&Val::Int(7), at(1));
        let AggState::Quantile { sketch, .. } = &full else { unreachable!("a quantile's state") };
        // As the sketch alone, so states stored before empty sketches became null still read.
        let bare = serde_json::to_value(&sketch.0).expect("serialises");
        assert_eq!(serde_json::to_value(sketch.as_ref()).expect("serialises"), bare);
        let back: AggState = serde_json::from_str(&serde_json::to_string(&full).expect("serialises")).expect("reads");
        assert_eq!(back.finish(), full.finish());
    }

    #[test]
    fn a_follower_quantile_reports_from_its_leaders_sketch() {
        let mut states = [
            AggState::new(&plan(AggregateFn::Quantile, Scalar::Float, Some(0.1))),
            AggState::new(&plan(AggregateFn::Count, Scalar::Int, None)),
            AggState::new(&plan(AggregateFn::Quantile, Scalar::Float, Some(0.9))),
        ];
        let mut alone = AggState::new(&plan(AggregateFn::Quantile, Scalar::Float, Some(0.9)));
        for x in 1..=100 {
            states[0].add(&Val::Int(x), at(x));
            alone.add(&Val::Int(x), at(x));
        }
        crate::window::fill_shared_sketches(&mut states, &[(2, 0)]);
        assert_eq!(states[2].finish(), alone.finish());
        assert_ne!(states[0].finish(), states[2].finish(), "each keeps its own quantile");
    }

    #[test]
    fn stable_hash_is_fixed() {
        // Changing this value breaks merging with stored states: never change it.
        assert_eq!(
            stable_hash(&Val::Str("gmail.com".into())),
            stable_hash(&Val::Str(String::from("gmail.com").into()))
        );
        assert_ne!(stable_hash(&Val::Int(1)), stable_hash(&Val::Str("1".into())));
    }
}
