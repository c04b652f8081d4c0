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
    /// Containers nest deeper than [`MAX_DEPTH`].
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
    let top = Scanner::new(json).run(&mut |range| {
        ranges.push(range);
        true
    })?;
    if top != b'[' {
        return Err(JsonError::NotArray);
    }
    Ok(ranges)
}

/// Validates `json` and returns the range of the first element of a top-level array (`None`
/// for `[]`), without allocating. The Socket.IO decoder uses it to check event packets.
pub fn array_head(json: &[u8]) -> Result<Option<Range<usize>>, JsonError> {
    let mut head = None;
    let top = Scanner::new(json).run(&mut |range| {
        if head.is_none() {
            head = Some(range);
        }
        // Elements after the first are still validated; only the first is recorded.
        true
    })?;
    if top != b'[' {
        return Err(JsonError::NotArray);
    }
    Ok(head)
}

/// Strictly validates one JSON value (RFC 8259) with optional surrounding whitespace.
pub fn validate(json: &[u8]) -> Result<(), JsonError> {
    Scanner::new(json).run(&mut |_| false).map(|_| ())
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

/// Whether `json` is an array: after leading whitespace it starts with `[`. Assumes `json`
/// has been validated.
pub fn is_array(json: &[u8]) -> bool {
    first_non_ws(json) == Some(b'[')
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

/// Byte classes inside a string literal.
const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const BACKSLASH: u8 = 2;
const CONTROL: u8 = 3;
const NON_ASCII: u8 = 4;

static STRING_CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if i < 0x20 {
            CONTROL
        } else if i == b'"' as usize {
            QUOTE
        } else if i == b'\\' as usize {
            BACKSLASH
        } else if i >= 0x80 {
            NON_ASCII
        } else {
            PLAIN
        };
        i += 1;
    }
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the 8 bytes in `word` needs a closer look inside a string: a quote, a
/// backslash, a control character or a non-ASCII byte.
fn word_is_special(word: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    word & HIGHS != 0
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
        || word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0
}

/// Single-pass structural scanner. The container stack is a bit set (1 = object), which is why
/// [`MAX_DEPTH`] is 128.
struct Scanner<'a> {
    json: &'a [u8],
    pos: usize,
    non_ascii: bool,
}

impl<'a> Scanner<'a> {
    fn new(json: &'a [u8]) -> Scanner<'a> {
        Scanner {
            json,
            pos: 0,
            non_ascii: false,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.json.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonError::Invalid)
        }
    }

    /// Scans the whole document. `element` is called with the range of each top-level array
    /// element until it returns false. Returns the first byte of the top-level value.
    fn run(mut self, element: &mut dyn FnMut(Range<usize>) -> bool) -> Result<u8, JsonError> {
        let mut report = true;
        let mut containers: u128 = 0;
        let mut depth = 0usize;
        self.skip_ws();
        let top = self.peek().ok_or(JsonError::Invalid)?;
        let mut element_start = 0;
        'value: loop {
            // A value starts at `pos` (whitespace already skipped).
            if depth == 1 {
                element_start = self.pos;
            }
            let mut opened = None;
            match self.peek() {
                Some(b'{') => opened = Some(true),
                Some(b'[') => opened = Some(false),
                Some(b'"') => self.scan_string()?,
                Some(b'-' | b'0'..=b'9') => self.scan_number()?,
                Some(b't') => self.scan_literal(b"true")?,
                Some(b'f') => self.scan_literal(b"false")?,
                Some(b'n') => self.scan_literal(b"null")?,
                _ => return Err(JsonError::Invalid),
            }
            if let Some(is_object) = opened {
                if depth >= MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                containers = (containers & !(1u128 << depth)) | (u128::from(is_object) << depth);
                depth += 1;
                self.pos += 1;
                self.skip_ws();
                let close = if is_object { b'}' } else { b']' };
                if self.peek() == Some(close) {
                    self.pos += 1;
                    depth -= 1;
                } else {
                    if is_object {
                        self.scan_key()?;
                    }
                    continue 'value;
                }
            }
            // A value just ended at `pos`: climb out of every container it closes.
            loop {
                if depth == 0 {
                    self.skip_ws();
                    if self.pos != self.json.len() {
                        return Err(JsonError::Invalid);
                    }
                    if self.non_ascii && std::str::from_utf8(self.json).is_err() {
                        return Err(JsonError::Invalid);
                    }
                    return Ok(top);
                }
                if depth == 1 && top == b'[' && report {
                    report = element(element_start..self.pos);
                }
                let in_object = containers & (1u128 << (depth - 1)) != 0;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if in_object {
                            self.scan_key()?;
                        }
                        continue 'value;
                    }
                    Some(b']') if !in_object => {}
                    Some(b'}') if in_object => {}
                    _ => return Err(JsonError::Invalid),
                }
                self.pos += 1;
                depth -= 1;
            }
        }
    }

    /// `"key"`, whitespace, `:`, whitespace.
    fn scan_key(&mut self) -> Result<(), JsonError> {
        if self.peek() != Some(b'"') {
            return Err(JsonError::Invalid);
        }
        self.scan_string()?;
        self.skip_ws();
        self.expect(b':')?;
        self.skip_ws();
        Ok(())
    }

    /// A string literal starting at the opening quote.
    fn scan_string(&mut self) -> Result<(), JsonError> {
        self.pos += 1;
        loop {
            // Skip plain ASCII eight bytes at a time.
            while let Some(chunk) = self.json.get(self.pos..self.pos + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                if word_is_special(u64::from_le_bytes(word)) {
                    break;
                }
                self.pos += 8;
            }
            let byte = self.peek().ok_or(JsonError::Invalid)?;
            match STRING_CLASS[usize::from(byte)] {
                PLAIN => self.pos += 1,
                NON_ASCII => {
                    // Checked once for the whole document at the end.
                    self.non_ascii = true;
                    self.pos += 1;
                }
                QUOTE => {
                    self.pos += 1;
                    return Ok(());
                }
                BACKSLASH => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            let hex = self
                                .json
                                .get(self.pos + 1..self.pos + 5)
                                .ok_or(JsonError::Invalid)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(JsonError::Invalid);
                            }
                            self.pos += 5;
                        }
                        _ => return Err(JsonError::Invalid),
                    }
                }
                _ => return Err(JsonError::Invalid),
            }
        }
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn scan_number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.skip_digits();
            }
            _ => return Err(JsonError::Invalid),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.skip_digits() == 0 {
                return Err(JsonError::Invalid);
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.skip_digits() == 0 {
                return Err(JsonError::Invalid);
            }
        }
        Ok(())
    }

    fn scan_literal(&mut self, literal: &[u8]) -> Result<(), JsonError> {
        if self.json.get(self.pos..self.pos + literal.len()) == Some(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(JsonError::Invalid)
        }
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
            let head = array_head(text.as_bytes()).unwrap().map(|r| &text[r]);
            assert_eq!(head, elements.first().copied(), "{text:?}");
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
            assert_eq!(
                array_head(text.as_bytes()),
                Err(JsonError::NotArray),
                "{text}"
            );
        }
        assert_eq!(split_array(b"[1,]"), Err(JsonError::Invalid));
        assert_eq!(array_head(b"[1,]"), Err(JsonError::Invalid));
    }

    #[test]
    fn kind_predicates() {
        let table = [
            (" {}", true, false, false),
            ("\"x\"", false, true, false),
            ("\n[1]", false, false, true),
            ("1", false, false, false),
            ("", false, false, false),
        ];
        for (text, object, string, array) in table {
            assert_eq!(is_object(text.as_bytes()), object, "{text:?}");
            assert_eq!(is_string(text.as_bytes()), string, "{text:?}");
            assert_eq!(is_array(text.as_bytes()), array, "{text:?}");
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
            let _ = array_head(&bytes);
            let _ = parse_str(&bytes);
            let _ = check_placeholders(&bytes, attachments);
            let _ = from_slice::<serde_json::Value>(&bytes);
        }
    }
}
