//! Message bytes → a row of the fields a plan needs, in one pass.
//!
//! The JSON object is walked once with serde. Every declared field is
//! checked against its declared type (the source declaration is the
//! contract), but only the fields some metric reads are kept; undeclared keys
//! are skipped without building values, and strings without escapes are
//! borrowed from the message. Type problems are reported with the field's
//! path so a dead letter says exactly what was wrong.

use crate::value::{parse_timestamp, same_key, Val};
use dsl::plan::{FieldPlan, Scalar, SourcePlan};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;

mod scan;

/// Why a message could not be turned into an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Larger than the configured maximum.
    Oversized,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// Not well-formed JSON.
    MalformedJson,
    /// JSON, but not an object.
    NotAnObject,
    /// A non-null field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A timestamp field does not parse.
    BadTimestamp,
    /// Older than a metric's lateness allows.
    Late,
    /// Further ahead of the message's broker timestamp (or of the
    /// processing time) than the source's `max_future` allows.
    FutureTime,
}

impl Reason {
    /// Every reason, for metrics and summaries.
    pub const ALL: [Reason; 9] = [
        Reason::Oversized,
        Reason::InvalidUtf8,
        Reason::MalformedJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::BadTimestamp,
        Reason::Late,
        Reason::FutureTime,
    ];

    /// Snake-case name, as in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Oversized => "oversized",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::MalformedJson => "malformed_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::Late => "late",
            Reason::FutureTime => "future_time",
        }
    }
}

/// A rejected message's reason with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// What exactly, e.g. "field `latency_ms`: expected int, found string".
    pub detail: String,
}

/// Decodes messages of one source.
#[derive(Debug)]
pub struct Decoder {
    root: Vec<(Box<str>, Node)>,
    field_count: usize,
    /// Used, non-nullable fields: must be present.
    required: Vec<usize>,
    paths: Vec<String>,
    /// Whether a metric reads the field; others are only type-checked.
    is_kept: Vec<bool>,
    types: Vec<Scalar>,
    max_bytes: usize,
    /// Whether names are unique within every record (the checker makes
    /// sure), which lets lookups try the next declared key first.
    has_unique_names: bool,
    /// Whether, besides, no name has a character JSON must escape (a plan
    /// read from a bundle could have one), so the next declared name can be
    /// compared with a message's key as it is written.
    compares_expected_key: bool,
}

#[derive(Debug)]
enum Node {
    Leaf(usize),
    Record(Vec<(Box<str>, Node)>),
}

impl Decoder {
    /// A decoder for the used fields of `source`; messages over `max_bytes` are rejected.
    pub fn new(source: &SourcePlan, max_bytes: usize) -> Self {
        let mut root = Vec::new();
        for (index, field) in source.fields.iter().enumerate() {
            insert(&mut root, &field.path, index);
        }
        let required = source.fields.iter().enumerate().filter(|(_, f)| !f.ty.nullable).map(|(i, _)| i).collect();
        let has_unique_names = every_record(&root, &has_unique_names);
        Decoder {
            field_count: source.fields.len(),
            required,
            paths: source.fields.iter().map(|f: &FieldPlan| f.path.join(".")).collect(),
            is_kept: source.fields.iter().map(|f| f.is_used).collect(),
            types: source.fields.iter().map(|f| f.ty.scalar).collect(),
            max_bytes,
            has_unique_names,
            compares_expected_key: has_unique_names
                && every_record(&root, &|names| {
                    names.iter().all(|(name, _)| name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'))
                }),
            root,
        }
    }

    /// Decodes `bytes` into one value per source field (null where unused or absent).
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Vec<Val<'a>>, Rejection> {
        if bytes.len() > self.max_bytes {
            return Err(Rejection {
                reason: Reason::Oversized,
                detail: format!("{} bytes; the limit is {}", bytes.len(), self.max_bytes),
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| Rejection {
            reason: Reason::InvalidUtf8,
            detail: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        })?;
        let row = match self.scan(text) {
            Some(row) => row,
            None => self.decode_with_serde(text)?,
        };
        for &index in &self.required {
            if matches!(row[index], Val::Null) {
                return Err(Rejection {
                    reason: Reason::MissingField,
                    detail: format!("field `{}` is missing or null", self.paths[index]),
                });
            }
        }
        Ok(row)
    }
}

impl Decoder {
    /// The general path: serde over the whole message. It decides every
    /// message [`Decoder::scan`] leaves to it, bad ones with their reason.
    ///
    /// The reason is the first thing to fix: a message that is not
    /// well-formed JSON is `malformed_json` even when a type problem came
    /// first (`{"n":"x",,,`), so a rejected message's syntax is checked to
    /// its end before its type problem is reported. That costs a second
    /// pass, on rejected messages only.
    fn decode_with_serde<'a>(&self, text: &'a str) -> Result<Vec<Val<'a>>, Rejection> {
        let mut row = vec![Val::Null; self.field_count];
        let problem = RefCell::new(None);
        let reading = Cell::new(None);
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let seed = ObjectSeed {
            decoder: self,
            nodes: &self.root,
            row: &mut row,
            problem: &problem,
            reading: &reading,
            is_root: true,
        };
        let result = seed.deserialize(&mut deserializer).and_then(|()| deserializer.end());
        let Err(error) = result else { return Ok(row) };
        // Skipping validates without building values or parsing numbers,
        // iteratively (no depth limit), so it fails only on syntax.
        if let Err(syntax) = serde_json::from_str::<IgnoredAny>(text) {
            return Err(Rejection { reason: Reason::MalformedJson, detail: syntax.to_string() });
        }
        if let Some(rejection) = problem.into_inner() {
            return Err(rejection);
        }
        match reading.get() {
            // Well-formed, but a declared field's number is beyond what
            // serde can read (1e400): its type cannot hold it.
            Some(index) if error.to_string().starts_with("number out of range") => {
                Err(self.out_of_range(index, "a number"))
            }
            _ => Err(Rejection { reason: Reason::MalformedJson, detail: error.to_string() }),
        }
    }

    /// The rejection of field `index`'s value, `found`, as outside its type's range.
    fn out_of_range(&self, index: usize, found: &str) -> Rejection {
        let ty = self.types[index];
        let range = match ty {
            Scalar::Int => " (-9223372036854775808 to 9223372036854775807)",
            Scalar::Float => " (finite, at most 1.7976931348623157e308 in magnitude)",
            _ => "",
        };
        Rejection {
            reason: Reason::WrongType,
            detail: format!(
                "field `{}`: expected {}, found {found} out of its range{range}",
                self.paths[index],
                ty.name()
            ),
        }
    }
}

impl Decoder {
    /// The node named `key` among `nodes`. Keys usually come in declaration
    /// order, so the node after the previous match (`next`, moved past the
    /// one found) is tried first; names are unique within a record, so this
    /// finds the same node as a scan.
    // Always inlined: it runs once per field of every message.
    #[inline(always)]
    fn find_node<'n>(&self, nodes: &'n [(Box<str>, Node)], next: &mut usize, key: &str) -> Option<&'n Node> {
        let found = match nodes.get(*next) {
            Some((k, _)) if self.has_unique_names && same_key(k.as_bytes(), key.as_bytes()) => Some(*next),
            _ => nodes.iter().position(|(k, _)| same_key(k.as_bytes(), key.as_bytes())),
        }?;
        *next = found + 1;
        Some(&nodes[found].1)
    }

    /// What the row keeps of field `index`'s value: the value when a metric
    /// reads it or it is null; otherwise a placeholder, since an unread field
    /// must still be present and the presence check looks at the row.
    #[inline]
    fn kept<'a>(&self, index: usize, value: Val<'a>) -> Val<'a> {
        if self.is_kept[index] || matches!(value, Val::Null) {
            value
        } else {
            Val::Bool(true)
        }
    }
}

/// Whether `holds` of the names of every record, the root's included.
fn every_record(nodes: &[(Box<str>, Node)], holds: &impl Fn(&[(Box<str>, Node)]) -> bool) -> bool {
    holds(nodes)
        && nodes.iter().all(|(_, node)| match node {
            Node::Leaf(_) => true,
            Node::Record(children) => every_record(children, holds),
        })
}

/// Sets every field of a record to null before the record is read, so a
/// record given twice (`"geo":{…},"geo":{…}`) is replaced by the later one,
/// as a repeated scalar is, not merged with it.
fn clear_record(nodes: &[(Box<str>, Node)], row: &mut [Val<'_>]) {
    for (_, node) in nodes {
        match node {
            Node::Leaf(index) => row[*index] = Val::Null,
            Node::Record(children) => clear_record(children, row),
        }
    }
}

fn has_unique_names(nodes: &[(Box<str>, Node)]) -> bool {
    nodes.iter().enumerate().all(|(i, (name, _))| !nodes[..i].iter().any(|(other, _)| other == name))
}

fn insert(nodes: &mut Vec<(Box<str>, Node)>, path: &[String], index: usize) {
    let Some((head, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        nodes.push((head.as_str().into(), Node::Leaf(index)));
        return;
    }
    let position = nodes.iter().position(|(k, n)| k.as_ref() == head && matches!(n, Node::Record(_)));
    let position = position.unwrap_or_else(|| {
        nodes.push((head.as_str().into(), Node::Record(Vec::new())));
        nodes.len() - 1
    });
    if let Node::Record(children) = &mut nodes[position].1 {
        insert(children, rest, index);
    }
}

struct ObjectSeed<'d, 'r, 'a> {
    decoder: &'d Decoder,
    nodes: &'d [(Box<str>, Node)],
    row: &'r mut Vec<Val<'a>>,
    problem: &'r RefCell<Option<Rejection>>,
    /// The declared field whose value is being read, if any.
    reading: &'r Cell<Option<usize>>,
    is_root: bool,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ObjectSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let mut next = 0;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.decoder.find_node(self.nodes, &mut next, &key) {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Node::Leaf(index)) => {
                    let seed = LeafSeed { decoder: self.decoder, index: *index, problem: self.problem };
                    self.reading.set(Some(*index));
                    let value = map.next_value_seed(seed)?;
                    self.reading.set(None);
                    self.row[*index] = self.decoder.kept(*index, value);
                }
                Some(Node::Record(children)) => {
                    clear_record(children, self.row);
                    let seed = ObjectSeed {
                        decoder: self.decoder,
                        nodes: children,
                        row: &mut *self.row,
                        problem: self.problem,
                        reading: self.reading,
                        is_root: false,
                    };
                    map.next_value_seed(NullableObject(seed))?;
                }
            }
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.reject_shape("null")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.reject_shape("a boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.reject_shape("a number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.reject_shape("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.reject_shape("a number")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.reject_shape("a string")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.reject_shape("an array")
    }
}

impl ObjectSeed<'_, '_, '_> {
    fn reject_shape<E: de::Error>(self, found: &str) -> Result<(), E> {
        let rejection = if self.is_root {
            Rejection { reason: Reason::NotAnObject, detail: format!("the message is {found}, not a JSON object") }
        } else {
            Rejection { reason: Reason::WrongType, detail: format!("a record field is {found}, not an object") }
        };
        *self.problem.borrow_mut() = Some(rejection);
        Err(E::custom("rejected"))
    }
}

/// An object key, borrowed from the message unless it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// A nested record that may be null (its fields then stay null).
struct NullableObject<'d, 'r, 'a>(ObjectSeed<'d, 'r, 'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for NullableObject<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for NullableObject<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.0.deserialize(d)
    }
}

struct LeafSeed<'d, 'r> {
    decoder: &'d Decoder,
    index: usize,
    problem: &'r RefCell<Option<Rejection>>,
}

impl<'de> DeserializeSeed<'de> for LeafSeed<'_, '_> {
    type Value = Val<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Val<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl LeafSeed<'_, '_> {
    fn out_of_range<E: de::Error>(&self, found: &str) -> E {
        *self.problem.borrow_mut() = Some(self.decoder.out_of_range(self.index, found));
        E::custom("rejected")
    }

    fn wrong<E: de::Error>(&self, found: &str) -> E {
        let expected = self.decoder.types[self.index].name();
        *self.problem.borrow_mut() = Some(Rejection {
            reason: Reason::WrongType,
            detail: format!("field `{}`: expected {expected}, found {found}", self.decoder.paths[self.index]),
        });
        E::custom("rejected")
    }

    fn string<'v, E: de::Error>(&self, s: Cow<'v, str>) -> Result<Val<'v>, E> {
        match self.decoder.types[self.index] {
            Scalar::String => Ok(Val::Str(s)),
            Scalar::Timestamp => match parse_timestamp(&s) {
                Some(ms) => Ok(Val::Ts(ms)),
                None => {
                    let shown: String = s.chars().take(40).collect();
                    *self.problem.borrow_mut() = Some(Rejection {
                        reason: Reason::BadTimestamp,
                        detail: format!(
                            "field `{}`: `{shown}` is not an RFC 3339 timestamp",
                            self.decoder.paths[self.index]
                        ),
                    });
                    Err(E::custom("rejected"))
                }
            },
            _ => Err(self.wrong("a string")),
        }
    }
}

impl<'de> Visitor<'de> for LeafSeed<'_, '_> {
    type Value = Val<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Val<'de>, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val<'de>, E> {
        match self.decoder.types[self.index] {
            Scalar::Bool => Ok(Val::Bool(v)),
            _ => Err(self.wrong("a boolean")),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val<'de>, E> {
        match self.decoder.types[self.index] {
            Scalar::Int => Ok(Val::Int(v)),
            Scalar::Float => Ok(Val::Float(v as f64)),
            _ => Err(self.wrong("a number")),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val<'de>, E> {
        match (self.decoder.types[self.index], i64::try_from(v)) {
            (Scalar::Int, Ok(i)) => Ok(Val::Int(i)),
            (Scalar::Float, _) => Ok(Val::Float(v as f64)),
            (Scalar::Int, Err(_)) => Err(self.out_of_range("an integer")),
            _ => Err(self.wrong("a number")),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val<'de>, E> {
        match self.decoder.types[self.index] {
            Scalar::Float => Ok(Val::Float(v)),
            // serde reads `-0` as a float (an i64 has no negative zero); it is 0.
            Scalar::Int if v == 0.0 && v.is_sign_negative() => Ok(Val::Int(0)),
            // An integer below i64's range comes as a float too (and one
            // rounding to i64::MIN was not read as an i64, so is below it).
            Scalar::Int if v <= i64::MIN as f64 || v >= i64::MAX as f64 => Err(self.out_of_range("a number")),
            _ => Err(self.wrong("a fractional number")),
        }
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Val<'de>, E> {
        self.string(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val<'de>, E> {
        self.string(Cow::Owned(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Val<'de>, E> {
        self.string(Cow::Owned(v))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Val<'de>, A::Error> {
        Err(self.wrong("an array"))
    }
    fn visit_map<M: MapAccess<'de>>(self, _: M) -> Result<Val<'de>, M::Error> {
        Err(self.wrong("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> Decoder {
        let compiled = dsl::compile_str(
            "t.stream",
            "version 1\nsource s from kafka \"t\" format json {\n ts: timestamp event_time, name: string, n: int?, x: float?, meta: { region: string? }?, unused: string }\nmetric m from s group by name, meta.region compute count() as c, sum(n) as total, avg(x) as ax window 1m",
        );
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        let plan = compiled.plan.expect("checked above");
        Decoder::new(&plan.sources[0], 1024)
    }

    fn reason(bytes: &[u8]) -> Reason {
        decoder().decode(bytes).expect_err("should be rejected").reason
    }

    #[test]
    fn decodes_used_fields_and_borrows() {
        let d = decoder();
        let row = d
            .decode(br#"{"ts":"2024-06-03T00:00:00Z","name":"a\"b","n":3,"x":1,"meta":{"region":"eu"},"unused":"u","extra":[1,{"a":2}]}"#)
            .unwrap();
        assert_eq!(row[0], Val::Ts(1_717_372_800_000));
        assert_eq!(row[1], Val::Str("a\"b".into()));
        assert_eq!(row[2], Val::Int(3));
        assert_eq!(row[3], Val::Float(1.0));
        assert_eq!(row[4], Val::Str("eu".into()));
        assert_eq!(row[5], Val::Bool(true), "unused fields are checked, not kept");
        let row = d.decode(br#"{"ts":"2024-06-03T00:00:00Z","name":"plain","meta":null,"unused":"u"}"#).unwrap();
        assert!(matches!(&row[1], Val::Str(Cow::Borrowed("plain"))));
        assert_eq!(row[4], Val::Null);
    }

    #[test]
    fn keys_in_any_order_escaped_or_repeated() {
        let d = decoder();
        let in_order = d
            .decode(br#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":3,"x":1.5,"meta":{"region":"eu"},"unused":"u"}"#)
            .unwrap();
        let shuffled = d
            .decode(br#"{"unused":"u","meta":{"region":"eu"},"x":1.5,"zz":[1],"n":3,"name":"a","ts":"2024-06-03T00:00:00Z"}"#)
            .unwrap();
        let escaped = d
            .decode(br#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":3,"x":1.5,"meta":{"region":"eu"},"unused":"u"}"#)
            .unwrap();
        assert_eq!(in_order, shuffled);
        assert_eq!(in_order, escaped);
        let repeated =
            d.decode(br#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":3,"name":"b","n":null,"unused":"u"}"#).unwrap();
        assert_eq!(repeated[1], Val::Str("b".into()), "the last occurrence wins");
        assert_eq!(repeated[2], Val::Null);
        // A repeated record replaces the earlier one, not merged with it, on both paths.
        for second in ["{}", "null"] {
            let text = format!(
                r#"{{"ts":"2024-06-03T00:00:00Z","name":"a","unused":"u","meta":{{"region":"eu"}},"meta":{second}}}"#
            );
            let scanned = d.scan(&text).expect("the fast path reads it");
            let read = d.decode_with_serde(&text).expect("valid");
            assert_eq!((&scanned[4], &read[4]), (&Val::Null, &Val::Null), "{text}");
        }
        assert_eq!(
            reason(br#"{"ts":"2024-06-03T00:00:00Z","name":"a","unused":"u","name":null}"#),
            Reason::MissingField
        );
    }

    #[test]
    fn every_kind_of_bad_input_has_a_reason() {
        assert_eq!(reason(b"\xff\xfe{}"), Reason::InvalidUtf8);
        assert_eq!(reason(br#"{"ts":"2024-06-03T00:00:00Z","name":"#), Reason::MalformedJson);
        assert_eq!(reason(b""), Reason::MalformedJson);
        assert_eq!(reason(b"[]"), Reason::NotAnObject);
        assert_eq!(reason(b"null"), Reason::NotAnObject);
        assert_eq!(reason(br#"{"name":"a"}"#), Reason::MissingField);
        assert_eq!(reason(br#"{"ts":"2024-06-03T00:00:00Z","name":{"a":1},"unused":"u"}"#), Reason::WrongType);
        assert_eq!(reason(br#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":"812ms","unused":"u"}"#), Reason::WrongType);
        assert_eq!(reason(br#"{"ts":1717372800,"name":"a"}"#), Reason::WrongType);
        assert_eq!(reason(br#"{"ts":"yesterday","name":"a"}"#), Reason::BadTimestamp);
        assert_eq!(reason(br#"{"ts":"2024-06-03T00:00:00Z","name":"a","meta":5,"unused":"u"}"#), Reason::WrongType);
        assert_eq!(
            reason(br#"{"ts":"2024-06-03T00:00:00Z","name":"a"}"#),
            Reason::MissingField,
            "unused but declared non-null"
        );
        assert_eq!(
            reason(br#"{"ts":"2024-06-03T00:00:00Z","name":"a","unused":7}"#),
            Reason::WrongType,
            "unused fields are type-checked"
        );
        assert_eq!(reason(br#"{"ts":"2024-06-03T00:00:00Z","name":"a"} trailing"#), Reason::MalformedJson);
        assert_eq!(reason(&[b' '; 2000]), Reason::Oversized);
        let detail =
            decoder().decode(br#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":1.5,"unused":"u"}"#).unwrap_err().detail;
        assert_eq!(detail, "field `n`: expected int, found a fractional number");
    }

    /// Issue 25: the reason is the first thing to fix. A message that is not
    /// well-formed JSON is malformed whatever type problem comes before the
    /// break; a well-formed number a typed field cannot hold is a wrong type
    /// whose detail names the range; `-0` is the integer 0.
    #[test]
    fn syntax_is_decided_before_types_and_ranges_are_named() {
        for broken in [
            &br#"{"ts":"2024-06-03T00:00:00Z","n":"x",,,"#[..],
            br#"{"n":"x","ts":"2024-06-03T00:00:00Z","name":"a","unused":"u""#,
            br#"{"ts":"yesterday","name":"a",,"#,
            br#"{"ts":"2024-06-03T00:00:00Z","meta":5 "name":"a"}"#,
            b"[1,",
            b"null x",
            br#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":1e400,"unused":"u"} trailing"#,
        ] {
            assert_eq!(reason(broken), Reason::MalformedJson, "{}", String::from_utf8_lossy(broken));
        }
        let d = decoder();
        let rejection = |text: &str| d.decode(text.as_bytes()).expect_err("rejected");
        let base = r#"{"ts":"2024-06-03T00:00:00Z","name":"a","unused":"u","#;
        for (field, expected) in [
            (r#""n":1e400}"#, "field `n`: expected int, found a number out of its range (-9223372036854775808 to 9223372036854775807)"),
            (r#""n":9223372036854775808}"#, "field `n`: expected int, found an integer out of its range (-9223372036854775808 to 9223372036854775807)"),
            (r#""n":-9223372036854775809}"#, "field `n`: expected int, found a number out of its range (-9223372036854775808 to 9223372036854775807)"),
            (r#""x":-1e400}"#, "field `x`: expected float, found a number out of its range (finite, at most 1.7976931348623157e308 in magnitude)"),
        ] {
            let r = rejection(&format!("{base}{field}"));
            assert_eq!((r.reason, r.detail.as_str()), (Reason::WrongType, expected), "{field}");
        }
        // Lone surrogates: malformed in a declared field, on both paths; unread elsewhere.
        for name in [r#""a\ud800""#, r#""\udc00""#, r#""\ud800\u0041""#] {
            let text = format!(r#"{{"ts":"2024-06-03T00:00:00Z","name":{name},"unused":"u"}}"#);
            assert_eq!(d.scan(&text), None, "{text}");
            assert_eq!(rejection(&text).reason, Reason::MalformedJson, "{text}");
            assert!(d.decode(format!(r#"{base}"other":{name}}}"#).as_bytes()).is_ok(), "{text}");
        }
        // A leap second is second 59 of its minute, fractions kept.
        let leap = r#"{"ts":"2016-12-31T23:59:60.5Z","name":"a","unused":"u"}"#;
        assert_eq!(d.decode(leap.as_bytes()).expect("a leap second")[0], Val::Ts(1_483_228_799_500));
        // An undeclared field's number is skipped, not read: no range applies.
        assert!(d.decode(format!(r#"{base}"other":1e400}}"#).as_bytes()).is_ok());
        for zero in ["-0", "-0.0", "0"] {
            let text = format!(r#"{base}"n":{zero}}}"#);
            let row = d.decode(text.as_bytes()).expect("an int");
            assert_eq!(row[2], Val::Int(0), "{zero}");
        }
        assert_eq!(rejection(&format!(r#"{base}"n":1.0}}"#)).reason, Reason::WrongType);
        let text = format!(r#"{base}"n":-9223372036854775808}}"#);
        assert_eq!(d.decode(text.as_bytes()).expect("i64::MIN")[2], Val::Int(i64::MIN));
    }
}
