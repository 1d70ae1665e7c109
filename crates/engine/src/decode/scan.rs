//! The fast path of [`Decoder::decode`]: one forward scan over the message,
//! without serde's visitor machinery, that handles what real messages look
//! like (a flat or lightly nested object of strings, integers, decimals,
//! booleans and nulls, strings with or without escapes).
//!
//! It is a filter in front of the serde path, not a second parser to keep in
//! step with it: whenever it meets anything it is not sure of, including
//! every kind of bad input, it answers `None` and the serde path decides,
//! with its exact reason and detail. So the one rule is that it never
//! accepts what the serde path would reject and, when it accepts, gives the
//! same values. The differential tests below hold it to that.
//!
//! The text has been checked to be UTF-8; every position it slices at is
//! next to an ASCII byte, so slices stay on character boundaries.

use super::{Decoder, Node};
use crate::value::{parse_timestamp, same_key, Val};
use dsl::plan::Scalar;
use std::borrow::Cow;

/// Skipped values nested deeper than this go to serde (whose limit is 128).
const MAX_DEPTH: usize = 64;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Decoder {
    /// The row of `text`, or `None` to leave the message to the serde path.
    pub(super) fn scan<'a>(&self, text: &'a str) -> Option<Vec<Val<'a>>> {
        let mut row: Vec<Val<'a>> = std::iter::repeat_with(|| Val::Null).take(self.field_count).collect();
        let mut s = Scanner { text, bytes: text.as_bytes(), pos: 0 };
        s.whitespace();
        if s.peek()? != b'{' {
            return None;
        }
        self.object(&mut s, &self.root, &mut row)?;
        s.whitespace();
        (s.pos == s.bytes.len()).then_some(row)
    }

    /// At a `{`: the object's declared fields into `row`, the rest skipped.
    fn object<'a>(&self, s: &mut Scanner<'a>, nodes: &[(Box<str>, Node)], row: &mut [Val<'a>]) -> Option<()> {
        s.pos += 1;
        s.whitespace();
        if s.eat(b'}') {
            return Some(());
        }
        let mut next = 0;
        loop {
            if !s.eat(b'"') {
                return None;
            }
            // Keys usually come in declaration order: the expected one is
            // compared in place, without looking for the closing quote first.
            let node = match nodes.get(next) {
                Some((expected, node)) if self.compares_expected_key && s.key_is(expected) => {
                    next += 1;
                    Some(node)
                }
                _ => {
                    let key = s.key()?;
                    self.find_node(nodes, &mut next, key)
                }
            };
            s.whitespace();
            if !s.eat(b':') {
                return None;
            }
            s.whitespace();
            match node {
                None => s.skip_value(0)?,
                Some(Node::Leaf(index)) => {
                    let value = self.leaf(s, *index)?;
                    row[*index] = self.kept(*index, value);
                }
                Some(Node::Record(children)) => {
                    super::clear_record(children, row);
                    match s.peek()? {
                        b'{' => self.object(s, children, row)?,
                        b'n' => s.literal(b"null")?,
                        _ => return None,
                    }
                }
            }
            if s.after_member(b'}')? {
                return Some(());
            }
        }
    }

    /// A declared scalar field's value, checked against its type.
    fn leaf<'a>(&self, s: &mut Scanner<'a>, index: usize) -> Option<Val<'a>> {
        let ty = self.types[index];
        match s.peek()? {
            b'"' => {
                s.pos += 1;
                // Most strings have no escapes: borrowed, without a call.
                let text = match s.plain_string() {
                    Some(text) => Cow::Borrowed(text),
                    None => s.string()?,
                };
                match ty {
                    Scalar::String => Some(Val::Str(text)),
                    Scalar::Timestamp => parse_timestamp(&text).map(Val::Ts),
                    _ => None,
                }
            }
            b'n' => s.literal(b"null").map(|()| Val::Null),
            b't' if ty == Scalar::Bool => s.literal(b"true").map(|()| Val::Bool(true)),
            b'f' if ty == Scalar::Bool => s.literal(b"false").map(|()| Val::Bool(false)),
            b'-' | b'0'..=b'9' if ty == Scalar::Int => s.integer().map(Val::Int),
            b'-' | b'0'..=b'9' => {
                let (number, is_integer) = s.number()?;
                match (ty, is_integer) {
                    (Scalar::Float, true) => integer_of(number).map(|i| Val::Float(i as f64)),
                    // Both correctly rounded, so the same as serde_json's `float_roundtrip`.
                    (Scalar::Float, false) => number.parse::<f64>().ok().filter(|f| f.is_finite()).map(Val::Float),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// An integer literal as serde_json reads it into an `i64`; `None` where it
/// would read something else (`-0` is a float to it; out of range).
fn integer_of(number: &str) -> Option<i64> {
    if number == "-0" {
        return None;
    }
    number.parse().ok()
}

/// The number of 8 digits (values 0 to 9, most significant in the lowest
/// byte): pairs, then fours, then all eight, each step one multiply.
fn eight_digits(digits: u64) -> u64 {
    let pairs = (digits.wrapping_mul(10) + (digits >> 8)) & 0x00ff_00ff_00ff_00ff;
    let fours = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    (fours.wrapping_mul(10_000) + (fours >> 32)) & 0xffff_ffff
}

/// Offsets (little-endian byte order) of `"`, `\` and control characters in
/// `word`: the lowest set high bit marks the first such byte exactly.
fn specials(word: u64) -> u64 {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    has_zero(word ^ (ONES * u64::from(b'"')))
        | has_zero(word ^ (ONES * u64::from(b'\\')))
        | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> bool {
        let is_there = self.peek() == Some(b);
        self.pos += usize::from(is_there);
        is_there
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// After an object member or array element: past the `,` and the
    /// whitespace after it (`false`: more follow) or past `close` (`true`).
    fn after_member(&mut self, close: u8) -> Option<bool> {
        self.whitespace();
        match self.next_byte()? {
            b',' => {
                self.whitespace();
                Some(false)
            }
            b if b == close => Some(true),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// Moves to the next `"`, `\` or control character in a string.
    #[inline]
    fn skip_to_special(&mut self) -> Option<u8> {
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            let found = specials(u64::from_le_bytes(word));
            if found != 0 {
                self.pos += (found.trailing_zeros() / 8) as usize;
                return Some(self.bytes[self.pos]);
            }
            self.pos += 8;
        }
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    /// After an opening quote: whether the key is `key`, written without
    /// escapes (which `key` must not need); past its closing quote if so.
    #[inline]
    fn key_is(&mut self, key: &str) -> bool {
        let end = self.pos + key.len();
        let is_key = self.bytes.get(end) == Some(&b'"') && same_key(&self.bytes[self.pos..end], key.as_bytes());
        if is_key {
            self.pos = end + 1;
        }
        is_key
    }

    /// [`Scanner::plain_string`] out of line, for keys other than the one
    /// expected (inlined there, it made the whole loop slower).
    #[inline(never)]
    fn key(&mut self) -> Option<&'a str> {
        self.plain_string()
    }

    /// After an opening quote: the string if it has no escapes, and the
    /// position past its closing quote; otherwise `None`, and the position
    /// is left as it was. Inlined: most strings are such.
    #[inline(always)]
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let text = match self.skip_to_special() {
            Some(b'"') => self.text.get(start..self.pos),
            _ => None,
        };
        match text {
            Some(_) => self.pos += 1,
            None => self.pos = start,
        }
        text
    }

    /// After an opening quote: the string, unescaped; past its closing quote.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.pos;
        match self.skip_to_special()? {
            b'"' => {
                let text = self.text.get(start..self.pos)?;
                self.pos += 1;
                Some(Cow::Borrowed(text))
            }
            b'\\' => {
                let mut owned = String::from(self.text.get(start..self.pos)?);
                loop {
                    self.pos += 1;
                    match self.next_byte()? {
                        b'"' => owned.push('"'),
                        b'\\' => owned.push('\\'),
                        b'/' => owned.push('/'),
                        b'b' => owned.push('\u{8}'),
                        b'f' => owned.push('\u{c}'),
                        b'n' => owned.push('\n'),
                        b'r' => owned.push('\r'),
                        b't' => owned.push('\t'),
                        b'u' => owned.push(self.unicode_escape()?),
                        _ => return None,
                    }
                    let run = self.pos;
                    let stop = self.skip_to_special()?;
                    owned.push_str(self.text.get(run..self.pos)?);
                    if stop == b'"' {
                        self.pos += 1;
                        return Some(Cow::Owned(owned));
                    }
                    if stop != b'\\' {
                        return None;
                    }
                }
            }
            _ => None,
        }
    }

    /// After `\u`: the character of the escape, or of the surrogate pair.
    /// Lone surrogates are left to serde.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if !(0xD800..0xDC00).contains(&first) {
            return char::from_u32(first);
        }
        self.literal(b"\\u")?;
        let second = self.hex4()?;
        if !(0xDC00..0xE000).contains(&second) {
            return None;
        }
        char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + char::from(d).to_digit(16)?;
        }
        self.pos += 4;
        Some(value)
    }

    /// After an opening quote: past the closing one, escapes checked as
    /// serde_json checks those of a value it skips.
    fn skip_string(&mut self) -> Option<()> {
        loop {
            match self.skip_to_special()? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => {
                    self.pos += 1;
                    match self.next_byte()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            self.hex4()?;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// A JSON integer as serde_json reads it into an `i64`, computed as it
    /// is scanned; `None` for anything else (a fraction, an exponent, `-0`,
    /// out of range, malformed), which the other paths decide.
    fn integer(&mut self) -> Option<i64> {
        // Most integers are 1 to 7 digits: counted and converted a word at a
        // time, without a branch per digit. Past the message's end the word
        // holds zeros, which are no digits.
        let word = match self.bytes.get(self.pos..self.pos + 8) {
            Some(word) => word.try_into().map_or(0, u64::from_le_bytes),
            // The message's last 8 bytes, moved down to start here.
            None => self.bytes.len().checked_sub(8).map_or(0, |last| {
                let tail = self.bytes[last..].try_into().map_or(0, u64::from_le_bytes);
                tail.checked_shr(8 * (self.pos - last) as u32).unwrap_or(0)
            }),
        };
        let digits = word.wrapping_sub(ONES * u64::from(b'0'));
        // Exact up to the first non-digit: a borrow or carry across bytes
        // only starts at a byte that is no digit.
        let non_digits = (digits.wrapping_add(ONES * 0x76) | digits) & HIGHS;
        let length = (non_digits.trailing_zeros() / 8) as usize;
        if (1..8).contains(&length)
            && (length == 1 || word as u8 != b'0')
            && !matches!((word >> (8 * length)) as u8, b'.' | b'e' | b'E')
        {
            self.pos += length;
            // The digits in the top bytes, below them zeros: leading zeros.
            return Some(eight_digits(digits << (8 * (8 - length))) as i64);
        }
        let is_negative = self.eat(b'-');
        let first = self.next_byte()?;
        if !first.is_ascii_digit() {
            return None;
        }
        let mut value = i64::from(first - b'0');
        if first != b'0' {
            while let Some(digit @ b'0'..=b'9') = self.peek() {
                value = value.checked_mul(10)?.checked_add(i64::from(digit - b'0'))?;
                self.pos += 1;
            }
        }
        // A digit here follows a leading zero.
        if matches!(self.peek(), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) || (is_negative && value == 0) {
            return None;
        }
        Some(if is_negative { -value } else { value })
    }

    /// A JSON number: its text and whether it is an integer (no fraction,
    /// no exponent).
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let start = self.pos;
        self.eat(b'-');
        match self.next_byte()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut is_integer = true;
        if self.eat(b'.') {
            is_integer = false;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_integer = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Some((self.text.get(start..self.pos)?, is_integer))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return None;
        }
        self.digits();
        Some(())
    }

    /// Past any JSON value, checked as serde_json checks what it skips.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.skip_string()
            }
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.pos += 1;
                self.whitespace();
                if self.eat(b'}') {
                    return Some(());
                }
                loop {
                    if !self.eat(b'"') {
                        return None;
                    }
                    self.skip_string()?;
                    self.whitespace();
                    if !self.eat(b':') {
                        return None;
                    }
                    self.whitespace();
                    self.skip_value(depth + 1)?;
                    if self.after_member(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                self.whitespace();
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    if self.after_member(b']')? {
                        return Some(());
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decoder() -> Decoder {
        let compiled = dsl::compile_str(
            "t.stream",
            "version 1\nsource s from kafka \"t\" format json {\n ts: timestamp event_time, name: string, n: int?, \
             x: float?, ok: bool?, meta: { region: string?, zone: int? }?, unused: string? }\n\
             metric m from s where ok == true group by name, meta.region, meta.zone \
             compute count() as c, sum(n) as total, avg(x) as ax window 1m",
        );
        assert!(compiled.plan.is_some(), "{}", compiled.render_diagnostics());
        Decoder::new(&compiled.plan.expect("checked above").sources[0], 1 << 20)
    }

    /// Whenever the scan accepts, the serde path accepts with the same row.
    fn agrees(d: &Decoder, text: &str) -> Result<bool, String> {
        let Some(scanned) = d.scan(text) else { return Ok(false) };
        match d.decode_with_serde(text) {
            Ok(row) if row == scanned => Ok(true),
            Ok(row) => Err(format!("{text:?}: scan gives {scanned:?}, serde {row:?}")),
            Err(rejection) => Err(format!("{text:?}: scan accepts, serde rejects: {rejection:?}")),
        }
    }

    const TYPICAL: &str = r#"{"ts":"2024-06-03T00:00:00.973Z","name":"a","n":-12,"x":0.25,"ok":true,"meta":{"region":"eu","zone":3},"unused":"u","extra":[1,{"a":[true,false,null]},-2.5e3,"s"]}"#;

    #[test]
    fn scans_typical_and_tricky_messages_as_serde_reads_them() {
        let d = decoder();
        let accepted = [
            TYPICAL,
            r#" { "ts" : "2024-06-03T00:00:00Z" , "name" : "q\"uo\\te\/d\n\t\u00e9\ud83d\ude00" } "#,
            r#"{"name":"é ü ✓","ts":"2024-06-03T00:00:00+02:00","meta":null,"x":3,"n":0}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","x":-0.0,"ok":false,"meta":{},"unused":null}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","x":1E-400,"n":9223372036854775807}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","x":7,"n":-9223372036854775807}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","name":"b","n":1,"n":null,"zz":"\u0000\uDFFF"}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","meta":{"region":"x"},"meta":null}"#,
            "{}",
        ];
        for text in accepted {
            assert_eq!(agrees(&d, text), Ok(true), "{text}");
        }
        // Left to serde: bad input of every kind, and what the scan does not try.
        let deferred = [
            "",
            "[]",
            "null",
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a",}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a"} x"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a\x"}"#,
            "{\"ts\":\"2024-06-03T00:00:00Z\",\"name\":\"a\u{1}\"}",
            r#"{"ts":"2024-06-03T00:00:00Z","name":"\ud800"}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"\udc00\ud800"}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","n\u0061me":"a"}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":-0}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":01}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":1.0}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":9223372036854775808}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":-9223372036854775808}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":-}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":1e3}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","x":1e400}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","x":1.}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","x":.5}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","n":"3"}"#,
            r#"{"ts":"yesterday","name":"a"}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","meta":5}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","ok":1}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","zz":[1,]}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","zz":"\u12"}"#,
            r#"{"ts":"2024-06-03T00:00:00Z","name":"a","zz":nul}"#,
        ];
        for text in deferred {
            assert_eq!(agrees(&d, text), Ok(false), "{text}");
        }
        let deep =
            format!(r#"{{"ts":"2024-06-03T00:00:00Z","name":"a","zz":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(agrees(&d, &deep), Ok(false), "deep nesting goes to serde, which limits it");
        let shallow =
            format!(r#"{{"ts":"2024-06-03T00:00:00Z","name":"a","zz":{}1{}}}"#, "[".repeat(60), "]".repeat(60));
        assert_eq!(agrees(&d, &shallow), Ok(true));
    }

    #[test]
    fn names_that_need_escapes_are_not_compared_as_written() {
        let compiled = dsl::compile_str(
            "t.stream",
            "version 1\nsource s from kafka \"t\" format json { ts: timestamp event_time, name: string }\n\
             metric m from s group by name compute count() as c window 1m",
        );
        let mut source = compiled.plan.expect("compiles").sources[0].clone();
        // A plan read from a bundle may name a key JSON writes escaped.
        source.fields[1].path = vec![r"x\ny".to_string()];
        let d = Decoder::new(&source, 1 << 20);
        let escaped = r#"{"ts":"2024-06-03T00:00:00Z","x\\ny":"a"}"#;
        assert_eq!(d.decode(escaped.as_bytes()).map(|row| row[1].clone()), Ok(Val::Str("a".into())));
        // Written as is, the key holds a newline: another key.
        let as_written = r#"{"ts":"2024-06-03T00:00:00Z","x\ny":"a"}"#;
        assert_eq!(d.decode(as_written.as_bytes()).map_err(|r| r.reason), Err(super::super::Reason::MissingField));
    }

    /// Edits that JSON is sensitive to, at random places in valid messages.
    fn edited() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "\"",
            "\\",
            "\\u",
            "\\ud83d",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "-",
            "0",
            "1",
            ".",
            "e",
            "E+",
            "null",
            "true",
            "\u{1}",
            "é",
            "\\n",
            "\"x\":",
            "9999999999999999999",
            "",
        ]);
        let edit = (any::<prop::sample::Index>(), 0usize..4, pieces);
        (
            prop::sample::select(vec![TYPICAL, r#"{"ts":"2024-06-03T00:00:00Z","name":"a\"b","n":3}"#]),
            prop::collection::vec(edit, 1..4),
        )
            .prop_map(|(base, edits)| {
                let mut text = base.to_string();
                for (at, cut, piece) in edits {
                    let mut start = at.index(text.len() + 1);
                    while !text.is_char_boundary(start) {
                        start -= 1;
                    }
                    let mut end = (start + cut).min(text.len());
                    while !text.is_char_boundary(end) {
                        end += 1;
                    }
                    text.replace_range(start..end, piece);
                }
                text
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]
        #[test]
        fn never_accepts_what_serde_rejects_nor_reads_it_differently(text in edited()) {
            let d = decoder();
            prop_assert_eq!(agrees(&d, &text).map(|_| ()), Ok(()));
        }

        /// Integers of every length (the word-at-a-time path takes up to 7
        /// digits), with signs, leading zeros and what may follow them, near
        /// the end of the message or not.
        #[test]
        fn reads_integers_as_serde_does(
            sign in prop::sample::select(vec!["", "-"]),
            digits in "[0-9]{1,21}",
            after in prop::sample::select(vec!["}", ",\"x\":1}", ".5}", "e2}", "E}", " }", "0}", "x}", ""]),
        ) {
            let d = decoder();
            let text = format!(r#"{{"ts":"2024-06-03T00:00:00Z","name":"a","n":{sign}{digits}{after}"#);
            let canonical = !digits.starts_with('0') || digits == "0";
            let accepted = agrees(&d, &text);
            prop_assert!(accepted.is_ok(), "{:?}", accepted);
            if canonical && digits.len() <= 18 && !(sign == "-" && digits == "0") && (after == "}" || after.starts_with(',')) {
                prop_assert_eq!(accepted, Ok(true), "{}", text);
            }
        }
    }
}
