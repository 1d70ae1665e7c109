//! Finding one top-level string field of a JSON line without parsing all
//! of it, to spread lines over partitions at the speed of reading them.
//!
//! It handles what event lines look like (a flat object of strings without
//! escapes, numbers, `true`, `false`, `null`) and gives up (`None`) on
//! anything else, for the caller to parse the line properly.

/// What [`string_field`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// The field's string value, which has no escapes, without its quotes.
    Raw(&'a [u8]),
    /// The line is a flat object without the field.
    Absent,
}

/// The value of top-level field `key` of `line`, a flat JSON object; when a
/// key occurs twice, the last one (as a JSON parser keeps). `None`: not
/// sure (escapes, nesting, a value that is not a string, bad JSON).
pub fn string_field<'a>(line: &'a [u8], key: &str) -> Option<Found<'a>> {
    std::str::from_utf8(line).ok()?;
    let mut pos = skip_space(line, 0);
    if line.get(pos) != Some(&b'{') {
        return None;
    }
    pos = skip_space(line, pos + 1);
    let mut found = Found::Absent;
    if line.get(pos) == Some(&b'}') {
        return (skip_space(line, pos + 1) == line.len()).then_some(found);
    }
    loop {
        let (name, after) = string(line, pos)?;
        pos = skip_space(line, after);
        if line.get(pos) != Some(&b':') {
            return None;
        }
        pos = skip_space(line, pos + 1);
        if name == key.as_bytes() {
            let (value, after) = string(line, pos)?;
            found = Found::Raw(value);
            pos = after;
        } else {
            pos = match line.get(pos)? {
                b'"' => string(line, pos)?.1,
                b'{' | b'[' => return None,
                _ => {
                    let end = pos + line[pos..].iter().position(|b| matches!(b, b',' | b'}' | b' ' | b'\t' | b'\r'))?;
                    if !is_literal(&line[pos..end]) {
                        return None;
                    }
                    end
                }
            };
        }
        pos = skip_space(line, pos);
        match line.get(pos)? {
            b',' => pos = skip_space(line, pos + 1),
            b'}' => return (skip_space(line, pos + 1) == line.len()).then_some(found),
            _ => return None,
        }
    }
}

/// [`string_field`] of one key over many lines, with a quicker path for
/// the common line: no backslash, no nested object or array. There a key is
/// a quoted name at an even count of quotes followed by `:`, found with
/// vectorised searches instead of walking every field.
///
/// It agrees with [`string_field`] and with a JSON parser on every
/// well-formed line; on a line that is not (which is dead-lettered
/// whichever partition it goes to) it may find a value where they give up.
pub struct FieldFinder {
    key: String,
    /// `"key"`, when the key needs no escaping in JSON.
    quoted: Option<memchr::memmem::Finder<'static>>,
}

impl FieldFinder {
    /// A finder of top-level field `key`.
    pub fn new(key: &str) -> Self {
        let plain = key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        let quoted = plain.then(|| memchr::memmem::Finder::new(format!("\"{key}\"").as_bytes()).into_owned());
        FieldFinder { key: key.to_owned(), quoted }
    }

    /// The key looked for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The field's value in `line`, as [`string_field`] gives it.
    pub fn find<'a>(&self, line: &'a [u8]) -> Option<Found<'a>> {
        self.quick(line).or_else(|| string_field(line, &self.key))
    }

    /// The answer for a line without escapes or nesting; `None` for others.
    fn quick<'a>(&self, line: &'a [u8]) -> Option<Found<'a>> {
        let quoted = self.quoted.as_ref()?;
        std::str::from_utf8(line).ok()?;
        let open = skip_space(line, 0);
        if line.get(open) != Some(&b'{') || memchr::memchr(b'\\', line).is_some() {
            return None;
        }
        if memchr::memchr2(b'{', b'[', &line[open + 1..]).is_some() {
            return None;
        }
        let mut found = Found::Absent;
        // Quotes before `counted`, to tell an opening quote from a closing one.
        let (mut quotes, mut counted) = (0, 0);
        for at in quoted.find_iter(line) {
            quotes += memchr::memchr_iter(b'"', &line[counted..at]).count();
            counted = at;
            let mut pos = skip_space(line, at + quoted.needle().len());
            if quotes % 2 != 0 || line.get(pos) != Some(&b':') {
                continue;
            }
            pos = skip_space(line, pos + 1);
            if line.get(pos) != Some(&b'"') {
                return None; // Not a string: the full path says what it is.
            }
            let len = memchr::memchr(b'"', &line[pos + 1..])?;
            let value = &line[pos + 1..pos + 1 + len];
            if value.iter().any(|&b| b < 0x20) {
                return None;
            }
            found = Found::Raw(value);
        }
        Some(found)
    }
}

/// The string starting at `line[pos]` (a `"`) without escapes, and the
/// position after its closing quote.
fn string(line: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    if line.get(pos) != Some(&b'"') {
        return None;
    }
    let start = pos + 1;
    // Strings here are short: a plain loop beats a vectorised search's set-up.
    let len = line.get(start..)?.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    let end = start + len;
    (line[end] == b'"').then_some((&line[start..end], end + 1))
}

/// Whether `token` is `true`, `false`, `null` or a JSON number.
fn is_literal(token: &[u8]) -> bool {
    if matches!(token, b"true" | b"false" | b"null") {
        return true;
    }
    let digits = |rest: &[u8]| rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut rest = token.strip_prefix(b"-").unwrap_or(token);
    let whole = digits(rest);
    if whole == 0 || (whole > 1 && rest[0] == b'0') {
        return false;
    }
    rest = &rest[whole..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    if let Some(exponent) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exponent = exponent.strip_prefix(b"+").or_else(|| exponent.strip_prefix(b"-")).unwrap_or(exponent);
        let n = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = &exponent[n..];
    }
    rest.is_empty()
}

fn skip_space(line: &[u8], mut pos: usize) -> usize {
    while matches!(line.get(pos), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_flat_string_fields_and_gives_up_on_what_it_is_not_sure_of() {
        let line = br#"{"ts":"2024-06-03T00:00:00Z","n":12,"ok":true,"x":null,"f":-1.5e3,"k":"a.com"}"#;
        assert_eq!(string_field(line, "k"), Some(Found::Raw(b"a.com")));
        assert_eq!(string_field(line, "ts"), Some(Found::Raw(b"2024-06-03T00:00:00Z")));
        assert_eq!(string_field(line, "missing"), Some(Found::Absent));
        assert_eq!(string_field(br#" { "k" : "v" , "k":"w" } "#, "k"), Some(Found::Raw(b"w")));
        assert_eq!(string_field(b"{}", "k"), Some(Found::Absent));
        for unsure in [
            &br#"{"k":"a\"b"}"#[..],
            br#"{"k":12}"#,
            br#"{"o":{"k":"v"},"k":"w"}"#,
            br#"{"a":[1],"k":"w"}"#,
            br#"{"k":"v""#,
            br#"{"k":"v"} x"#,
            br#"{"k":"v",}"#,
            br#"{"a":abc,"k":"v"}"#,
            br#"{"a":01,"k":"v"}"#,
            br#"{"a":1.,"k":"v"}"#,
            b"{\"k\":\"\xe9\"}",
            br#"[{"k":"v"}]"#,
            b"not json",
            b"",
        ] {
            assert_eq!(string_field(unsure, "k"), None, "{}", String::from_utf8_lossy(unsure));
        }
    }

    #[test]
    fn agrees_with_a_json_parser_whenever_it_answers() {
        let mut generator =
            workload::Generator::new(workload::Config { bad_ratio: 0.3, seed: 3, ..workload::Config::default() });
        let mut line = Vec::new();
        let mut answered = 0;
        for _ in 0..3000 {
            generator.next_line(&mut line);
            let parsed: Option<serde_json::Value> = serde_json::from_slice(&line).ok();
            for key in ["sender_domain", "diagnostic", "smtp_code", "nope"] {
                let Some(found) = string_field(&line, key) else { continue };
                answered += 1;
                let value = parsed.as_ref().expect("answered only for JSON objects").get(key);
                match found {
                    Found::Raw(raw) => assert_eq!(value.and_then(|v| v.as_str()).map(str::as_bytes), Some(raw)),
                    Found::Absent => assert!(value.is_none()),
                }
            }
        }
        assert!(answered > 5000, "{answered}");
    }

    /// What a JSON parser makes of `key` in `line`: `None` when the line is
    /// no JSON object, else the field as [`Found`] (a non-string value as `None` inside).
    fn parsed(line: &[u8], key: &str) -> Option<Option<Option<String>>> {
        let value: serde_json::Value = serde_json::from_slice(line).ok()?;
        let object = value.as_object()?;
        Some(object.get(key).map(|v| v.as_str().map(str::to_owned)))
    }

    #[test]
    fn the_finder_agrees_with_a_json_parser_and_with_string_field() {
        let mut lines: Vec<Vec<u8>> = [
            &br#"{"k":"v"}"#[..],
            br#" { "k" : "v" , "k":"w" } "#,
            br#"{"a":"k","k":"v"}"#,
            br#"{"a":"\"k\":","k":"v"}"#,
            br#"{"a":"x\\","k":"v"}"#,
            br#"{"o":{"k":"v"}}"#,
            br#"{"o":{"k":"v"},"k":"w"}"#,
            br#"{"a":["k"],"b":"[\"k\"]"}"#,
            br#"{"a":"{","k":"v"}"#,
            br#"{"k":12}"#,
            br#"{"k":null}"#,
            br#"{"a":""k":","k":"v"}"#,
            br#"{"a":"x\","k":"v"}"#,
            br#"{"k":"a\u0041"}"#,
            br#"{"kk":"v","k ":"w"}"#,
            br#"{"xk":"v"}"#,
            br#"{"s":"say \"k\": \"x\"","k":"v"}"#,
            b"{\"k\":\"\xe9\"}",
            b"{}",
            b"[]",
            b"",
        ]
        .iter()
        .map(|l| l.to_vec())
        .collect();
        let mut generator =
            workload::Generator::new(workload::Config { bad_ratio: 0.3, seed: 5, ..workload::Config::default() });
        let mut line = Vec::new();
        for _ in 0..3000 {
            generator.next_line(&mut line);
            lines.push(line.clone());
        }
        let mut quick = 0;
        for key in ["k", "sender_domain", "diagnostic", "smtp_code", "nope"] {
            let finder = FieldFinder::new(key);
            for line in &lines {
                let text = String::from_utf8_lossy(line);
                if let Some(answer) = finder.quick(line) {
                    quick += usize::from(key == "sender_domain");
                    if let Some(field) = parsed(line, key) {
                        let expected = match field {
                            None => Found::Absent,
                            Some(Some(ref s)) => Found::Raw(s.as_bytes()),
                            Some(None) => panic!("a non-string value answered quickly: {text}"),
                        };
                        assert_eq!(answer, expected, "{key} in {text}");
                    }
                }
                if let Some(answer) = string_field(line, key) {
                    assert_eq!(finder.find(line), Some(answer), "{key} in {text}");
                }
            }
        }
        // The quick path answers the common line (30% of these are made bad).
        assert!(quick > 3000 / 2, "{quick}");
    }
}
