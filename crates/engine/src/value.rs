//! Runtime values: borrowed while an event is evaluated, owned once they
//! become part of a series key or an aggregate state.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::hash::{Hash, Hasher};

/// A value during evaluation; strings borrow from the message when they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// Absent or JSON `null`.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Text.
    Str(Cow<'a, str>),
    /// Milliseconds since the Unix epoch.
    Ts(i64),
    /// Milliseconds.
    Dur(i64),
}

impl Val<'_> {
    /// The value as an owned key part.
    pub fn to_key(&self) -> KeyVal {
        match self {
            Val::Null => KeyVal::Null,
            Val::Bool(b) => KeyVal::Bool(*b),
            Val::Int(i) => KeyVal::Int(*i),
            Val::Float(f) => KeyVal::Float(f.to_bits()),
            Val::Str(s) => KeyVal::Str(s.as_ref().into()),
            Val::Ts(t) => KeyVal::Ts(*t),
            Val::Dur(d) => KeyVal::Int(*d),
        }
    }

    /// Numeric value as f64, if numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            Val::Ts(t) | Val::Dur(t) => Some(*t as f64),
            _ => None,
        }
    }

    /// As a truth value: `Some` for a boolean, `None` (null) for anything else.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether this is `true` (null and everything else count as false).
    pub fn is_true(&self) -> bool {
        matches!(self, Val::Bool(true))
    }

    /// Feeds a canonical encoding to `hasher`; equal values hash equally
    /// whether borrowed or owned. Used for series lookup and distinct counts.
    pub fn hash_into<H: Hasher>(&self, hasher: &mut H) {
        match self {
            Val::Null => 0u8.hash(hasher),
            Val::Bool(b) => (1u8, *b).hash(hasher),
            Val::Int(i) | Val::Dur(i) => (2u8, *i).hash(hasher),
            Val::Float(f) => (3u8, f.to_bits()).hash(hasher),
            Val::Str(s) => (4u8, s.as_ref()).hash(hasher),
            Val::Ts(t) => (5u8, *t).hash(hasher),
        }
    }
}

/// One column of a series key, owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum KeyVal {
    /// Null.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer (also durations).
    Int(i64),
    /// Float, by bits so keys are `Eq` and `Hash`.
    Float(u64),
    /// Text: up to 24 bytes inline, so comparing a series key with an
    /// event's values reads no further memory for most keys, and a new
    /// series allocates nothing per text column.
    Str(CompactString),
    /// Timestamp, ms.
    Ts(i64),
}

/// The key value every column of the overflow series holds.
pub const OTHER: &str = "__other__";

impl KeyVal {
    /// Borrowed view, for evaluation and hashing.
    pub fn as_val(&self) -> Val<'_> {
        match self {
            KeyVal::Null => Val::Null,
            KeyVal::Bool(b) => Val::Bool(*b),
            KeyVal::Int(i) => Val::Int(*i),
            KeyVal::Float(bits) => Val::Float(f64::from_bits(*bits)),
            KeyVal::Str(s) => Val::Str(Cow::Borrowed(s)),
            KeyVal::Ts(t) => Val::Ts(*t),
        }
    }

    /// Whether this key part equals the borrowed value `v`.
    pub fn matches(&self, v: &Val<'_>) -> bool {
        match (self, v) {
            (KeyVal::Null, Val::Null) => true,
            (KeyVal::Bool(a), Val::Bool(b)) => a == b,
            (KeyVal::Int(a), Val::Int(b) | Val::Dur(b)) => a == b,
            (KeyVal::Float(a), Val::Float(b)) => *a == b.to_bits(),
            (KeyVal::Str(a), Val::Str(b)) => same_key(a.as_bytes(), b.as_bytes()),
            (KeyVal::Ts(a), Val::Ts(b)) => a == b,
            _ => false,
        }
    }

    /// JSON rendering for outputs and the query API.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            KeyVal::Null => serde_json::Value::Null,
            KeyVal::Bool(b) => (*b).into(),
            KeyVal::Int(i) => (*i).into(),
            KeyVal::Float(bits) => {
                serde_json::Number::from_f64(f64::from_bits(*bits)).map_or(serde_json::Value::Null, Into::into)
            }
            KeyVal::Str(s) => serde_json::Value::String(s.to_string()),
            KeyVal::Ts(t) => serde_json::Value::String(format_timestamp(*t)),
        }
    }
}

// -- timestamps ---------------------------------------------------------------

/// Parses an RFC 3339 timestamp (`2024-06-03T00:00:00.973Z`, offsets
/// `+02:00`, optional fraction) into milliseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, month, day)
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Day of week, 1 = Monday … 7 = Sunday.
pub fn day_of_week(ms: i64) -> i64 {
    // 1970-01-01 was a Thursday (4).
    (ms.div_euclid(86_400_000) + 3).rem_euclid(7) + 1
}

/// `a == b` for short strings such as object keys and series keys: up to
/// 32 bytes in overlapping 4- and 8-byte loads. With a call to `memcmp` per
/// key, comparing keys was a tenth of decoding; with a loop over 8-byte
/// chunks, still 90 instructions a key.
#[inline]
pub(crate) fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |s: &[u8], at: usize| {
        let mut w = [0; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_le_bytes(w)
    };
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        17..=32 => {
            word(a, 0) == word(b, 0)
                && word(a, 8) == word(b, 8)
                && word(a, n - 16) == word(b, n - 16)
                && word(a, n - 8) == word(b, n - 8)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_is_equality_at_every_length() {
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=text.len() {
            let a = &text[..n];
            assert!(same_key(a, a), "{n}");
            if n > 0 {
                assert!(!same_key(a, &text[..n - 1]), "{n}: a prefix");
            }
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_key(a, &b), "{n}: differs at {at}");
            }
        }
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("2024-06-03T00:00:00.973Z"), Some(1_717_372_800_973));
        assert_eq!(parse_timestamp("2024-06-03T02:00:00.9+02:00"), Some(1_717_372_800_900));
        assert_eq!(format_timestamp(1_717_372_800_973), "2024-06-03T00:00:00.973Z");
        assert_eq!(parse_timestamp(&format_timestamp(-86_400_001)), Some(-86_400_001));
        for bad in [
            "2024-13-45T99:61:00.000Z",
            "yesterday",
            "",
            "2024-06-03 00:00:00Z",
            "0000-00-00T00:00:00.000Z",
            "2023-02-29T00:00:00Z",
            "2024-06-03T00:00:00.Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
        assert_eq!(day_of_week(parse_timestamp("2024-06-03T12:00:00Z").unwrap()), 1);
        // a Monday
    }

    proptest::proptest! {
        /// Any instant from year 0 to 9999, written with an offset (or
        /// none) and any fraction, reads back; spoiling any one character of
        /// its date and time makes it unreadable.
        #[test]
        fn timestamps_read_back_and_spoiled_ones_do_not(
            ms in -62_167_219_200_000i64..253_402_300_800_000,
            offset_minutes in -1439i64..=1439,
            fraction_digits in 0usize..=9,
            spoil_at in 0usize..19,
            spoiler in proptest::sample::select(b"x/: T-+.Z\x00\xff".to_vec()),
        ) {
            let seconds = ms.div_euclid(1000);
            let millis = ms.rem_euclid(1000);
            let local = format_timestamp((seconds + offset_minutes * 60) * 1000);
            let fraction = format!("{millis:03}000000");
            let fraction = if fraction_digits == 0 { String::new() } else { format!(".{}", &fraction[..fraction_digits]) };
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let zone = format!("{sign}{:02}:{:02}", offset_minutes.abs() / 60, offset_minutes.abs() % 60);
            let text = format!("{}{fraction}{zone}", &local[..19]);
            // Digits past milliseconds are dropped; fewer count as tenths or hundredths.
            let unit = 10i64.pow(3u32.saturating_sub(fraction_digits as u32));
            let expected = seconds * 1000 + millis / unit * unit;
            proptest::prop_assert_eq!(parse_timestamp(&text), Some(expected), "{}", text);
            let mut spoiled = text.into_bytes();
            let was = spoiled[spoil_at];
            spoiled[spoil_at] = spoiler;
            // `T` may be written `t`; a separator replaced by itself spoils nothing.
            let same = spoiler == was || (spoil_at == 10 && spoiler == b't');
            if !same {
                let spoiled = String::from_utf8_lossy(&spoiled);
                proptest::prop_assert_eq!(parse_timestamp(&spoiled), None, "{}", spoiled);
            }
        }
    }
}
