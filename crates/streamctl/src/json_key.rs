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
}
