//! JSON for the wire: a strict structural scanner, string helpers and the serde bridge.
//!
//! This is the only module that touches `simd-json` (serde deserialisation). The hand-written
//! scanner validates and splits JSON without building a tree, because most payloads are relayed
//! as raw bytes and the server only needs a few values (event name, ack arguments,
//! placeholders). Pure: no I/O, no runtime, no dependency on other ringcast modules.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// How many containers may nest (`[[...]]`) before a document is refused.
pub const MAX_DEPTH: usize = 128;

/// Why a JSON document or token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not RFC 8259 JSON (or not UTF-8).
    Invalid,
    /// Valid JSON, but not an array where one was required.
    NotArray,
    /// Valid JSON, but not a string where one was required.
    NotString,
    /// Valid JSON, but not an object where one was required.
    NotObject,
    /// Containers nest more than 128 deep (`MAX_DEPTH`).
    TooDeep,
    /// A binary placeholder `{"_placeholder":true,"num":N}` whose `num` is not a valid
    /// attachment index.
    BadPlaceholder,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonError::Invalid => "invalid JSON",
            JsonError::NotArray => "JSON value is not an array",
            JsonError::NotString => "JSON value is not a string",
            JsonError::NotObject => "JSON value is not an object",
            JsonError::TooDeep => "JSON nests too deeply",
            JsonError::BadPlaceholder => "binary placeholder refers to a missing attachment",
        })
    }
}

impl std::error::Error for JsonError {}

/// Strictly validates `json` and, if it is an array, returns the byte ranges of its top-level
/// elements (whitespace trimmed). Anything other than an array gives [`JsonError::NotArray`]
/// (after validation, so invalid input still gives [`JsonError::Invalid`]).
pub fn split_array(json: &[u8]) -> Result<Vec<Range<usize>>, JsonError> {
    let mut ranges = Vec::with_capacity(4);
    let top = scan(json, |range| {
        ranges.push(range);
        true
    })?;
    if top != b'[' {
        return Err(JsonError::NotArray);
    }
    Ok(ranges)
}

/// Strictly validates one JSON value (RFC 8259) with optional surrounding whitespace.
pub fn validate(json: &[u8]) -> Result<(), JsonError> {
    scan(json, |_| false).map(|_| ())
}

/// Whether `json` is an object: after leading whitespace it starts with `{`. Assumes `json`
/// has been validated.
pub fn is_object(json: &[u8]) -> bool {
    first_non_ws(json) == Some(b'{')
}

/// Whether `json` is a string: after leading whitespace it starts with `"`. Assumes `json`
/// has been validated.
pub fn is_string(json: &[u8]) -> bool {
    first_non_ws(json) == Some(b'"')
}

/// Decodes one JSON string token (e.g. `"join"`, `"a\"b"`; surrounding whitespace allowed).
///
/// Borrows from `raw` when the string has no escapes; otherwise unescapes it into an owned
/// `String`. Escapes that decode to lone surrogates are refused ([`JsonError::Invalid`]), since
/// a Rust `str` cannot hold them.
pub fn parse_str(raw: &[u8]) -> Result<Cow<'_, str>, JsonError> {
    let token = trim_ws(raw);
    if token.first() != Some(&b'"') {
        validate(token)?;
        return Err(JsonError::NotString);
    }
    let inner = token
        .strip_prefix(b"\"")
        .and_then(|rest| rest.strip_suffix(b"\""));
    if let Some(inner) = inner {
        if !inner.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
            return std::str::from_utf8(inner)
                .map(Cow::Borrowed)
                .map_err(|_| JsonError::Invalid);
        }
    }
    // Escapes (or garbage): validate strictly, then unescape. (simd-json 0.14 turns a lone
    // surrogate escape into U+0000 instead of failing, so it is not used here.)
    validate(token)?;
    unescape(inner.ok_or(JsonError::Invalid)?).map(Cow::Owned)
}

/// Unescapes the inside of a validated string literal. Escaped surrogate pairs are joined;
/// lone surrogates are refused.
fn unescape(inner: &[u8]) -> Result<String, JsonError> {
    let mut out = Vec::with_capacity(inner.len());
    let mut pos = 0;
    while let Some(&byte) = inner.get(pos) {
        if byte != b'\\' {
            out.push(byte);
            pos += 1;
            continue;
        }
        let escaped = *inner.get(pos + 1).ok_or(JsonError::Invalid)?;
        pos += 2;
        let simple = match escaped {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let high = hex4(inner.get(pos..pos + 4))?;
                pos += 4;
                let code = if (0xd800..0xdc00).contains(&high) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    if inner.get(pos..pos + 2) != Some(b"\\u") {
                        return Err(JsonError::Invalid);
                    }
                    let low = hex4(inner.get(pos + 2..pos + 6))?;
                    if !(0xdc00..0xe000).contains(&low) {
                        return Err(JsonError::Invalid);
                    }
                    pos += 6;
                    0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
                } else {
                    high
                };
                let ch = char::from_u32(code).ok_or(JsonError::Invalid)?;
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                continue;
            }
            _ => return Err(JsonError::Invalid),
        };
        out.push(simple);
    }
    String::from_utf8(out).map_err(|_| JsonError::Invalid)
}

fn hex4(digits: Option<&[u8]>) -> Result<u32, JsonError> {
    let digits = digits.ok_or(JsonError::Invalid)?;
    digits.iter().try_fold(0u32, |value, &d| {
        let nibble = char::from(d).to_digit(16).ok_or(JsonError::Invalid)?;
        Ok(value << 4 | nibble)
    })
}

/// Writes `s` as a JSON string literal, escaping quotes, backslashes and control characters
/// the way `JSON.stringify` does.
pub fn write_str(out: &mut impl std::io::Write, s: &str) {
    // Writes to memory don't fail; a failing sink just gets a truncated literal.
    let _ = write_str_checked(out, s);
}

fn write_str_checked(out: &mut impl std::io::Write, s: &str) -> std::io::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.write_all(b"\"")?;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.write_all(bytes.get(start..i).unwrap_or_default())?;
        if short.is_empty() {
            let unicode = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            out.write_all(&unicode)?;
        } else {
            out.write_all(short)?;
        }
        start = i + 1;
    }
    out.write_all(bytes.get(start..).unwrap_or_default())?;
    out.write_all(b"\"")
}

/// Deserialises `raw` with serde through simd-json (on a scratch copy, since simd-json parses
/// in place).
pub fn from_slice<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, JsonError> {
    let mut scratch = raw.to_vec();
    simd_json::serde::from_slice(&mut scratch).map_err(|_| JsonError::Invalid)
}

/// Serialises `value` compactly, preserving field and map order as serde presents them.
pub fn to_writer<T: serde::Serialize + ?Sized>(
    out: &mut impl std::io::Write,
    value: &T,
) -> Result<(), JsonError> {
    serde_json::to_writer(out, value).map_err(|_| JsonError::Invalid)
}

/// Checks every binary placeholder in `json` against the declared attachment count and
/// returns how many placeholders were found.
///
/// Like socket.io-parser, any object whose `_placeholder` key is `true` is a placeholder; its
/// `num` must be an integer in `0..attachments`, otherwise [`JsonError::BadPlaceholder`]
/// (socket.io-parser throws "illegal attachments" for the same inputs). Key order, extra keys
/// and number spelling (`1`, `1.0`, `1e0`) do not matter; with duplicate keys the last wins, as
/// in `JSON.parse`.
pub fn check_placeholders(json: &[u8], attachments: usize) -> Result<usize, JsonError> {
    validate(json)?;
    if !contains(json, b"_placeholder") {
        // No placeholder key anywhere (escaped key spellings aside, handled below).
        if !json.contains(&b'\\') {
            return Ok(0);
        }
    }
    let mut walker = Walker {
        json,
        pos: 0,
        attachments,
        found: 0,
    };
    walker.skip_ws();
    walker.value()?;
    Ok(walker.found)
}

/// Recursive walk over a document that [`validate`] accepted, so the structure is known good and
/// the recursion depth is bounded by [`MAX_DEPTH`].
struct Walker<'a> {
    json: &'a [u8],
    pos: usize,
    attachments: usize,
    found: usize,
}

impl<'a> Walker<'a> {
    fn peek(&self) -> Option<u8> {
        self.json.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// Skips one value and returns its raw bytes.
    fn value(&mut self) -> Result<&'a [u8], JsonError> {
        let json = self.json;
        let start = self.pos;
        match self.peek() {
            Some(b'{') => self.object()?,
            Some(b'[') => {
                self.pos += 1;
                self.skip_ws();
                while self.peek().is_some_and(|b| b != b']') {
                    self.value()?;
                    self.skip_ws();
                    if self.peek() == Some(b',') {
                        self.pos += 1;
                        self.skip_ws();
                    }
                }
                self.pos += 1;
            }
            Some(b'"') => self.string(),
            Some(_) => {
                while self
                    .peek()
                    .is_some_and(|b| !is_ws(b) && !matches!(b, b',' | b']' | b'}'))
                {
                    self.pos += 1;
                }
            }
            None => return Err(JsonError::Invalid),
        }
        Ok(json.get(start..self.pos).unwrap_or_default())
    }

    fn string(&mut self) {
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += if b == b'\\' { 2 } else { 1 };
            if b == b'"' {
                return;
            }
        }
    }

    fn object(&mut self) -> Result<(), JsonError> {
        let mut is_placeholder = false;
        let json = self.json;
        let mut num: Option<&'a [u8]> = None;
        self.pos += 1;
        self.skip_ws();
        while self.peek() == Some(b'"') {
            let key_start = self.pos;
            self.string();
            let key = json.get(key_start..self.pos).unwrap_or_default();
            self.skip_ws();
            self.pos += 1; // ':'
            self.skip_ws();
            let value = self.value()?;
            match parse_str(key)?.as_ref() {
                "_placeholder" => is_placeholder = value == b"true",
                "num" => num = Some(value),
                _ => {}
            }
            self.skip_ws();
            if self.peek() == Some(b',') {
                self.pos += 1;
                self.skip_ws();
            }
        }
        self.pos += 1; // '}'
        if is_placeholder {
            let index = num
                .filter(|raw| {
                    raw.first()
                        .is_some_and(|b| *b == b'-' || b.is_ascii_digit())
                })
                .and_then(|raw| std::str::from_utf8(raw).ok())
                .and_then(|raw| raw.parse::<f64>().ok())
                .filter(|n| n.fract() == 0.0 && *n >= 0.0);
            match index {
                Some(n) if n < self.attachments as f64 => self.found += 1,
                _ => return Err(JsonError::BadPlaceholder),
            }
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn first_non_ws(json: &[u8]) -> Option<u8> {
    json.iter().copied().find(|&b| !is_ws(b))
}

fn trim_ws(json: &[u8]) -> &[u8] {
    let start = json.iter().position(|&b| !is_ws(b)).unwrap_or(json.len());
    let end = json
        .iter()
        .rposition(|&b| !is_ws(b))
        .map_or(start, |i| i + 1);
    json.get(start..end).unwrap_or_default()
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit per byte) the bytes of `word` that need a closer look inside a string: a
/// quote, a backslash, a control character, and non-ASCII bytes when `check_non_ascii`. The
/// lowest mark is exact (borrows only propagate upwards from a true match), so
/// `trailing_zeros() / 8` is the index of the first special byte.
fn special_bytes(word: u64, check_non_ascii: bool) -> u64 {
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let non_ascii = if check_non_ascii { word & HIGHS } else { 0 };
    non_ascii
        | zero_bytes(word ^ (ONES * u64::from(b'"')))
        | zero_bytes(word ^ (ONES * u64::from(b'\\')))
        | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
}

/// Skips JSON whitespace from `pos`. Compact JSON has none, so the first test usually exits.
#[inline(always)]
fn skip_ws(json: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = json.get(pos) {
        if b > b' ' || !is_ws(b) {
            break;
        }
        pos += 1;
    }
    pos
}

/// Single-pass structural scanner over the whole document. `element` is called with the range
/// of each top-level array element until it returns false. Returns the first byte of the
/// top-level value.
///
/// The position lives in a local (not a struct field) so that it stays in a register; the
/// container stack is a bit set (1 = object), which is why [`MAX_DEPTH`] is 128.
fn scan<F: FnMut(Range<usize>) -> bool>(json: &[u8], mut element: F) -> Result<u8, JsonError> {
    let mut report = true;
    let mut non_ascii = false;
    let mut containers: u128 = 0;
    let mut depth = 0usize;
    let mut pos = skip_ws(json, 0);
    let top = *json.get(pos).ok_or(JsonError::Invalid)?;
    let mut element_start = 0;
    'value: loop {
        // A value starts at `pos` (whitespace already skipped).
        if depth == 1 {
            element_start = pos;
        }
        let byte = *json.get(pos).ok_or(JsonError::Invalid)?;
        match byte {
            b'"' => pos = scan_string(json, pos, &mut non_ascii)?,
            b'{' | b'[' => {
                if depth >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                let is_object = byte == b'{';
                containers = (containers & !(1u128 << depth)) | (u128::from(is_object) << depth);
                depth += 1;
                pos = skip_ws(json, pos + 1);
                let close = if is_object { b'}' } else { b']' };
                match json.get(pos) {
                    Some(&b) if b == close => {
                        pos += 1;
                        depth -= 1;
                    }
                    _ => {
                        if is_object {
                            pos = scan_key(json, pos, &mut non_ascii)?;
                        }
                        continue 'value;
                    }
                }
            }
            b'-' | b'0'..=b'9' => pos = scan_number(json, pos)?,
            b't' => pos = scan_literal(json, pos, b"true")?,
            b'f' => pos = scan_literal(json, pos, b"false")?,
            b'n' => pos = scan_literal(json, pos, b"null")?,
            _ => return Err(JsonError::Invalid),
        }
        // A value just ended at `pos`: climb out of every container it closes.
        loop {
            if depth == 0 {
                pos = skip_ws(json, pos);
                if pos != json.len() {
                    return Err(JsonError::Invalid);
                }
                if non_ascii && std::str::from_utf8(json).is_err() {
                    return Err(JsonError::Invalid);
                }
                return Ok(top);
            }
            if depth == 1 && top == b'[' && report {
                report = element(element_start..pos);
            }
            let in_object = containers & (1u128 << (depth - 1)) != 0;
            pos = skip_ws(json, pos);
            match json.get(pos) {
                Some(b',') => {
                    pos = skip_ws(json, pos + 1);
                    if in_object {
                        pos = scan_key(json, pos, &mut non_ascii)?;
                    }
                    continue 'value;
                }
                Some(b']') if !in_object => {}
                Some(b'}') if in_object => {}
                _ => return Err(JsonError::Invalid),
            }
            pos += 1;
            depth -= 1;
        }
    }
}

/// `"key"`, whitespace, `:`, whitespace; returns the position of the value.
#[inline]
fn scan_key(json: &[u8], pos: usize, non_ascii: &mut bool) -> Result<usize, JsonError> {
    if json.get(pos) != Some(&b'"') {
        return Err(JsonError::Invalid);
    }
    let pos = skip_ws(json, scan_string(json, pos, non_ascii)?);
    if json.get(pos) != Some(&b':') {
        return Err(JsonError::Invalid);
    }
    Ok(skip_ws(json, pos + 1))
}

/// A string literal starting at the opening quote; returns the position after the closing one.
/// Sets `non_ascii` when it meets a non-ASCII byte (UTF-8 is checked once per document).
#[inline]
fn scan_string(json: &[u8], mut pos: usize, non_ascii: &mut bool) -> Result<usize, JsonError> {
    pos += 1;
    loop {
        // Jump over plain ASCII eight bytes at a time, straight to the first special byte.
        while let Some(chunk) = json.get(pos..pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let special = special_bytes(u64::from_le_bytes(word), !*non_ascii);
            if special != 0 {
                pos += (special.trailing_zeros() / 8) as usize;
                break;
            }
            pos += 8;
        }
        match *json.get(pos).ok_or(JsonError::Invalid)? {
            b'"' => return Ok(pos + 1),
            b'\\' => match json.get(pos + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => pos += 2,
                Some(b'u') => {
                    let hex = json.get(pos + 2..pos + 6).ok_or(JsonError::Invalid)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(JsonError::Invalid);
                    }
                    pos += 6;
                }
                _ => return Err(JsonError::Invalid),
            },
            0x00..=0x1f => return Err(JsonError::Invalid),
            byte => {
                *non_ascii |= byte >= 0x80;
                pos += 1;
            }
        }
    }
}

#[inline]
fn skip_digits(json: &[u8], mut pos: usize) -> usize {
    while json.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    pos
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; returns the position after it.
#[inline]
fn scan_number(json: &[u8], mut pos: usize) -> Result<usize, JsonError> {
    if json.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match json.get(pos) {
        Some(b'0') => pos += 1,
        Some(b'1'..=b'9') => pos = skip_digits(json, pos + 1),
        _ => return Err(JsonError::Invalid),
    }
    if json.get(pos) == Some(&b'.') {
        let end = skip_digits(json, pos + 1);
        if end == pos + 1 {
            return Err(JsonError::Invalid);
        }
        pos = end;
    }
    if matches!(json.get(pos), Some(b'e' | b'E')) {
        pos += 1;
        if matches!(json.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let end = skip_digits(json, pos);
        if end == pos {
            return Err(JsonError::Invalid);
        }
        pos = end;
    }
    Ok(pos)
}

#[inline]
fn scan_literal(json: &[u8], pos: usize, literal: &[u8]) -> Result<usize, JsonError> {
    if json.get(pos..pos + literal.len()) == Some(literal) {
        Ok(pos + literal.len())
    } else {
        Err(JsonError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "1.5",
        "-0.0",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "0.5e-10",
        "123456789012345678901234567890",
        "true",
        "false",
        "null",
        "\"\"",
        "\"a\"",
        "\"a\\\"b\"",
        "\"\\\\ \\/ \\b \\f \\n \\r \\t\"",
        "\"\\u0041\\uD83D\\uDE00\"",
        "\"\\ud800\"",
        "\"é€😀\"",
        "[]",
        "{}",
        "[ ]",
        "{ }",
        " [1 , 2 ] ",
        "\t\r\n[1]\n",
        "[1,\"2\",{\"3\":[true]}]",
        "{\"a\":1,\"b\":[null,{}],\"c\":{\"d\":\"e\"}}",
        "[[[[[]]]]]",
        "{\"a\" : 1 , \"b\" : 2}",
        "\"a long string with no escapes at all, longer than eight bytes\"",
    ];

    const INVALID: &[&str] = &[
        "",
        " ",
        "01",
        "-",
        "-01",
        "+1",
        ".5",
        "1.",
        "1.e5",
        "1e",
        "1e+",
        "0x10",
        "NaN",
        "Infinity",
        "tru",
        "truex",
        "nul",
        "True",
        "\"",
        "\"abc",
        "\"abc\\\"",
        "\"a\nb\"",
        "\"a\tb\"",
        "\"\u{1}\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "'a'",
        "[",
        "]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1,}",
        "{\"a\"}",
        "{\"a\":}",
        "{a:1}",
        "{1:1}",
        "{\"a\" 1}",
        "[}",
        "{]",
        "[1]]",
        "[1] [2]",
        "1 2",
        "{}{}",
        "[1,2",
        "{\"a\":[1,2}",
    ];

    #[test]
    fn validates_valid_corpus() {
        for text in VALID {
            assert_eq!(validate(text.as_bytes()), Ok(()), "{text:?}");
            // serde_json agrees.
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refuses_invalid_corpus() {
        for text in INVALID {
            assert_eq!(
                validate(text.as_bytes()),
                Err(JsonError::Invalid),
                "{text:?}"
            );
            assert!(split_array(text.as_bytes()).is_err(), "{text:?}");
        }
    }

    #[test]
    fn refuses_invalid_utf8_in_strings() {
        for bytes in [
            &b"\"\xff\""[..],
            b"\"\xc3\"",
            b"\"\xed\xa0\x80\"",
            b"[\"ok\",\"\xe2\x82\"]",
        ] {
            assert_eq!(validate(bytes), Err(JsonError::Invalid), "{bytes:?}");
        }
        assert_eq!(validate(b"\xc3\xa9"), Err(JsonError::Invalid));
        assert_eq!(validate("\"\u{e9}\"".as_bytes()), Ok(()));
    }

    #[test]
    fn special_bytes_at_every_offset() {
        // The string scanner jumps eight bytes at a time; put each kind of special byte at
        // every offset around those windows and compare with serde_json.
        let specials: &[&str] = &[
            "\\\"", "\n", "\u{1}", "\u{1f}", "é", "😀", "\\u0041", "\\n", "\\x", "\u{7f}",
        ];
        for special in specials {
            for before in 0..20 {
                for after in [0, 1, 7, 8, 9] {
                    let text = format!(
                        "[\"{}{special}{}\",1]",
                        "a".repeat(before),
                        "b".repeat(after)
                    );
                    let theirs = serde_json::from_str::<serde_json::Value>(&text).is_ok();
                    assert_eq!(validate(text.as_bytes()).is_ok(), theirs, "{text:?}");
                    if theirs {
                        let ranges = split_array(text.as_bytes()).unwrap();
                        assert_eq!(ranges.len(), 2, "{text:?}");
                        assert_eq!(&text[ranges[1].clone()], "1");
                    }
                }
            }
        }
    }

    #[test]
    fn depth_limit() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(validate(ok.as_bytes()), Ok(()));
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(validate(deep.as_bytes()), Err(JsonError::TooDeep));
        let objects = "{\"a\":".repeat(MAX_DEPTH + 1) + "1" + &"}".repeat(MAX_DEPTH + 1);
        assert_eq!(validate(objects.as_bytes()), Err(JsonError::TooDeep));
        // Unbalanced and huge: refused without blowing the stack.
        assert_eq!(
            validate("[".repeat(100_000).as_bytes()),
            Err(JsonError::TooDeep)
        );
        // Mixed containers at the limit keep their kinds apart.
        let mixed = "[{\"a\":".repeat(MAX_DEPTH / 2) + "1" + &"}]".repeat(MAX_DEPTH / 2);
        assert_eq!(validate(mixed.as_bytes()), Ok(()));
        let wrong = "[{\"a\":".repeat(4) + "1" + &"]}".repeat(4);
        assert_eq!(validate(wrong.as_bytes()), Err(JsonError::Invalid));
    }

    #[test]
    fn split_array_ranges_are_exact() {
        let table: &[(&str, &[&str])] = &[
            ("[]", &[]),
            ("[ ]", &[]),
            ("[1]", &["1"]),
            (" [ 1 , \"a\" ] ", &["1", "\"a\""]),
            (
                "[\"message\",1,\"2\",{\"3\":[true]}]",
                &["\"message\"", "1", "\"2\"", "{\"3\":[true]}"],
            ),
            (
                "[[],{},[1,[2]],{\"a\":[]}]",
                &["[]", "{}", "[1,[2]]", "{\"a\":[]}"],
            ),
            ("[\"a,b]\" , \"c\\\"]\"]", &["\"a,b]\"", "\"c\\\"]\""]),
            (
                "[null,true,false,-1.5e3]",
                &["null", "true", "false", "-1.5e3"],
            ),
            ("[\n{ \"x\" : 1 }\n]", &["{ \"x\" : 1 }"]),
        ];
        for (text, elements) in table {
            let ranges = split_array(text.as_bytes()).unwrap();
            let got: Vec<&str> = ranges.iter().map(|r| &text[r.clone()]).collect();
            assert_eq!(&got, elements, "{text:?}");
        }
    }

    #[test]
    fn split_array_refuses_non_arrays() {
        for text in ["{}", "1", "\"[1]\"", "null", " {\"a\":[1]} "] {
            assert_eq!(
                split_array(text.as_bytes()),
                Err(JsonError::NotArray),
                "{text}"
            );
        }
        assert_eq!(split_array(b"[1,]"), Err(JsonError::Invalid));
    }

    #[test]
    fn kind_predicates() {
        let table = [
            (" {}", true, false),
            ("\"x\"", false, true),
            ("\n[1]", false, false),
            ("1", false, false),
            ("", false, false),
        ];
        for (text, object, string) in table {
            assert_eq!(is_object(text.as_bytes()), object, "{text:?}");
            assert_eq!(is_string(text.as_bytes()), string, "{text:?}");
        }
    }

    #[test]
    fn parse_str_table() {
        let table: &[(&[u8], Result<&str, JsonError>, bool)] = &[
            (b"\"join\"", Ok("join"), true),
            (b" \"join\" ", Ok("join"), true),
            (b"\"\"", Ok(""), true),
            ("\"é€😀\"".as_bytes(), Ok("é€😀"), true),
            (b"\"a\\\"b\"", Ok("a\"b"), false),
            (b"\"a\\\\b\\/c\\n\"", Ok("a\\b/c\n"), false),
            (b"\"\\u00e9\\uD83D\\uDE00\"", Ok("é😀"), false),
            (b"\"\\ud800\"", Err(JsonError::Invalid), false),
            (b"\"", Err(JsonError::Invalid), false),
            (b"\"a", Err(JsonError::Invalid), false),
            (b"\"a\"b\"", Err(JsonError::Invalid), false),
            (b"\"a\nb\"", Err(JsonError::Invalid), false),
            (b"\"\\q\"", Err(JsonError::Invalid), false),
            (b"\"\xff\"", Err(JsonError::Invalid), false),
            (b"1", Err(JsonError::NotString), false),
            (b"[\"a\"]", Err(JsonError::NotString), false),
            (b"nope", Err(JsonError::Invalid), false),
            (b"", Err(JsonError::Invalid), false),
        ];
        for (raw, expected, borrowed) in table {
            let got = parse_str(raw);
            assert_eq!(got.as_deref().map_err(|e| *e), *expected, "{raw:?}");
            if let Ok(value) = got {
                assert_eq!(matches!(value, Cow::Borrowed(_)), *borrowed, "{raw:?}");
            }
        }
    }

    #[test]
    fn write_str_table() {
        let table = [
            ("", "\"\""),
            ("join", "\"join\""),
            ("a\"b", "\"a\\\"b\""),
            ("a\\b", "\"a\\\\b\""),
            ("\n\r\t\u{8}\u{c}", "\"\\n\\r\\t\\b\\f\""),
            ("\u{0}\u{1f}", "\"\\u0000\\u001f\""),
            ("é€😀/", "\"é€😀/\""),
            ("\u{7f}", "\"\u{7f}\""),
        ];
        for (input, expected) in table {
            let mut out = Vec::new();
            write_str(&mut out, input);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{input:?}");
            // JSON.stringify agrees with serde_json on these.
            assert_eq!(serde_json::to_string(input).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn serde_bridge() {
        #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
        struct Auth {
            token: String,
            n: Option<u32>,
        }
        let auth: Auth = from_slice(br#"{"token":"abc","n":3}"#).unwrap();
        assert_eq!(
            auth,
            Auth {
                token: "abc".into(),
                n: Some(3)
            }
        );
        assert_eq!(
            from_slice::<Auth>(b"{\"token\":1}"),
            Err(JsonError::Invalid)
        );
        assert_eq!(from_slice::<Auth>(b"{"), Err(JsonError::Invalid));
        assert_eq!(from_slice::<String>(b"\"x\\ny\"").unwrap(), "x\ny");

        let mut out = Vec::new();
        to_writer(&mut out, &auth).unwrap();
        assert_eq!(out, br#"{"token":"abc","n":3}"#);
        let mut out = Vec::new();
        to_writer(&mut out, &("message-back", 1, [true], "é")).unwrap();
        assert_eq!(out, "[\"message-back\",1,[true],\"é\"]".as_bytes());
    }

    #[test]
    fn placeholders_table() {
        let p = |n: &str| format!("{{\"_placeholder\":true,\"num\":{n}}}");
        let table: Vec<(String, usize, Result<usize, JsonError>)> = vec![
            ("[\"m\",1]".into(), 0, Ok(0)),
            (format!("[\"m\",{}]", p("0")), 1, Ok(1)),
            (format!("[\"m\",{},{}]", p("0"), p("1")), 2, Ok(2)),
            (format!("[\"m\",{{\"a\":[{}]}}]", p("0")), 1, Ok(1)),
            (
                format!("[\"m\",{}]", p("1")),
                1,
                Err(JsonError::BadPlaceholder),
            ),
            (
                format!("[\"m\",{}]", p("0")),
                0,
                Err(JsonError::BadPlaceholder),
            ),
            (
                format!("[\"m\",{}]", p("-1")),
                5,
                Err(JsonError::BadPlaceholder),
            ),
            (
                format!("[\"m\",{}]", p("0.5")),
                5,
                Err(JsonError::BadPlaceholder),
            ),
            (
                format!("[\"m\",{}]", p("\"0\"")),
                5,
                Err(JsonError::BadPlaceholder),
            ),
            (format!("[\"m\",{}]", p("1.0")), 2, Ok(1)),
            ("[{\"num\":0,\"_placeholder\":true}]".into(), 1, Ok(1)),
            (
                "[{\"_placeholder\":true}]".into(),
                1,
                Err(JsonError::BadPlaceholder),
            ),
            // Not placeholders: `_placeholder` is not `true`, or only appears as text.
            ("[{\"_placeholder\":false,\"num\":9}]".into(), 0, Ok(0)),
            (
                "[\"_placeholder\",{\"x\":\"_placeholder\"}]".into(),
                0,
                Ok(0),
            ),
            ("[{\"_placeholder\":1,\"num\":9}]".into(), 0, Ok(0)),
            (format!("[\"m\",{}", p("0")), 1, Err(JsonError::Invalid)),
        ];
        for (json, attachments, expected) in table {
            assert_eq!(
                check_placeholders(json.as_bytes(), attachments),
                expected,
                "{json} with {attachments}"
            );
        }
    }

    /// A JSON value generator for property tests.
    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec((".*", inner), 0..6)
                    .prop_map(|entries| serde_json::Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json_on_generated_documents(value in arb_json(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            prop_assert_eq!(validate(text.as_bytes()), Ok(()));
            let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            if let serde_json::Value::Array(items) = &reparsed {
                let ranges = split_array(text.as_bytes()).unwrap();
                prop_assert_eq!(ranges.len(), items.len());
                for (range, item) in ranges.iter().zip(items) {
                    let parsed: serde_json::Value = serde_json::from_str(&text[range.clone()]).unwrap();
                    prop_assert_eq!(&parsed, item);
                }
            }
        }

        #[test]
        fn agrees_with_serde_json_on_random_text(text in "[\\[\\]{}\":,0-9eE.+\\-tfrulnas \\\\]{0,24}") {
            let ours = validate(text.as_bytes()).is_ok();
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
            prop_assert_eq!(ours, theirs, "{:?}", text);
        }

        #[test]
        fn strings_agree_with_serde_json(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("a"), Just("abcdefgh"), Just("\\\""), Just("\\\\"), Just("\\u00e9"),
                    Just("\\ud83d\\ude00"), Just("\\q"), Just("\""), Just("\n"), Just("\u{1}"),
                    Just("é"), Just("😀"), Just(" "), Just("\\"),
                ],
                0..12,
            ),
        ) {
            let text = format!("\"{}\"", parts.concat());
            // Lone surrogates are valid JSON but not a valid Rust `String`.
            let valid = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
            prop_assert_eq!(validate(text.as_bytes()).is_ok(), valid, "{:?}", text);
            let theirs: Result<String, _> = serde_json::from_str(&text);
            prop_assert_eq!(parse_str(text.as_bytes()).ok(), theirs.ok().map(Cow::Owned), "{:?}", text);
        }

        #[test]
        fn write_str_round_trips(s in ".*") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(validate(&out), Ok(()));
            prop_assert_eq!(parse_str(&out).unwrap(), s.as_str());
        }

        #[test]
        fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64), attachments in 0usize..4) {
            let _ = validate(&bytes);
            let _ = split_array(&bytes);
            let _ = parse_str(&bytes);
            let _ = check_placeholders(&bytes, attachments);
            let _ = from_slice::<serde_json::Value>(&bytes);
        }
    }
}
