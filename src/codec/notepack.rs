//! MessagePack as notepack.io 3.0.x writes and reads it, converted to and from Socket.IO event
//! data: what the Node `@socket.io/redis-adapter` and `@socket.io/redis-emitter` publish.
//!
//! The MessagePack bytes themselves are `rmpv`'s: [`read`] decodes one whole message (bounded:
//! borrowed from the slice, so a declared length past the end is refused before anything is
//! allocated, containers nest at most a little over [`MAX_DEPTH`], no trailing bytes) and
//! [`write`] encodes a value in the smallest forms, which are notepack's.
//!
//! **Decoding** ([`decode_event`], [`decode_value`]) turns a decoded value into what a Node
//! server would send its own clients: raw JSON plus binary attachments. Each `bin` becomes a
//! `{"_placeholder":true,"num":i}` (depth first, in array order and map-key order) and its
//! bytes attachment `i`; a Timestamp (ext −1, all three forms) or a legacy Date (`d7 00`)
//! becomes the ISO-8601 string `Date.toJSON` writes, or `null` outside JavaScript's date range;
//! NaN and ±Infinity become `null`; float32 is read as the double it denotes; floats are
//! written as JavaScript writes numbers; the legacy `d4 00 xx` (undefined) becomes `null`, or
//! leaves its key out of a map;
//! ext 0 of any other length is binary; any other ext type is the pair `[type, bin]`. Map keys
//! that are integers, floats or booleans become the strings JavaScript makes of them; entries
//! with any other non-string key are dropped. Integers are written exactly, beyond 2^53 too.
//!
//! `rmpv` keeps an ext's type and bytes but not the header that carried them, so the legacy
//! forms are told apart by length: ext 0 of 1 byte is `d4 00` (undefined) and of 8 bytes `d7 00`
//! (a Date), as notepack 2.x wrote them; a notepack 2.x ArrayBuffer of exactly 1 or 8 bytes
//! (`c7 01 00`, `c7 08 00`) reads as those too. notepack 3.x writes every binary kind as `bin`.
//! JavaScript objects put integer-like keys first and keep the last of duplicate keys; the
//! JSON here keeps the map's order and every entry, which a client's `JSON.parse` settles the
//! same way.
//!
//! **Encoding** ([`encode_event`], [`encode_value`], and [`event_to_value`], [`json_to_value`]
//! for a value to embed in a larger message) goes the other way: JSON (validated by
//! `codec::json`) to MessagePack, every placeholder replaced by `bin(attachments[num])`,
//! integral numbers as integers in their smallest form (`-0` as 0, `1.0` and `1e3` as integers,
//! as notepack writes a JavaScript number), any other number as float64, strings, arrays and
//! maps in their smallest forms, keys in document order.
//!
//! Pure: no I/O, no clock, no runtime; it depends on `rmpv`, `bytes` and `codec::json` only,
//! and on nothing above the codec.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

use bytes::Bytes;
use rmpv::Value;

use crate::codec::json::{self, JsonError};

/// How deeply JSON may nest, the outer `[...]` of an event's data included: the JSON codec's
/// limit, so whatever ringcast accepts from a client can cross the cluster and back. Binary
/// placeholders (`{...}`) count as the containers they become.
pub const MAX_DEPTH: usize = json::MAX_DEPTH;

/// The depth budget handed to `rmpv` when reading a message. rmpv spends two units per
/// container and up to three on a leaf, so this admits [`MAX_DEPTH`] levels of event data
/// inside an envelope of up to four containers (`[uid, {packet: {data}}, opts]` has two).
const READ_DEPTH: usize = 2 * (MAX_DEPTH + 4) + 3;

/// JavaScript's date range: ±8.64e15 ms around the epoch. Outside it a Date is invalid and
/// `JSON.stringify` writes `null`.
const MAX_DATE_MS: i128 = 8_640_000_000_000_000;

/// Why MessagePack or JSON could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotepackError {
    /// Not one complete MessagePack value: truncated, a length running past the end, or bytes
    /// left after the value.
    Malformed,
    /// Event data that is not an array.
    NotArray,
    /// Event data that is an empty array (no event name).
    Empty,
    /// An event name that is not a string.
    NameNotString,
    /// Containers nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A MessagePack string (a value or a key) that is not valid UTF-8.
    InvalidUtf8,
    /// Arguments that are not valid JSON (lone surrogate escapes included: a Rust string
    /// cannot hold them).
    InvalidJson,
    /// A binary placeholder whose `num` is not the index of an attachment.
    BadPlaceholder,
    /// A string, binary, array or map longer than MessagePack's 2^32 − 1.
    TooLarge,
}

impl fmt::Display for NotepackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotepackError::Malformed => "malformed MessagePack",
            NotepackError::NotArray => "event data is not an array",
            NotepackError::Empty => "event data is an empty array",
            NotepackError::NameNotString => "event name is not a string",
            NotepackError::TooDeep => "event data nests too deeply",
            NotepackError::InvalidUtf8 => "MessagePack string is not valid UTF-8",
            NotepackError::InvalidJson => "invalid JSON",
            NotepackError::BadPlaceholder => "binary placeholder refers to a missing attachment",
            NotepackError::TooLarge => "value too large for MessagePack",
        })
    }
}

impl std::error::Error for NotepackError {}

/// An event decoded from its data array `[eventName, ...args]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvent {
    /// The event name.
    pub name: String,
    /// The arguments' JSON, comma-separated, without brackets (empty when there are none).
    pub args: Vec<u8>,
    /// How many arguments `args` holds.
    pub count: usize,
    /// The binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
}

/// One value decoded to JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedValue {
    /// The JSON of the value.
    pub json: Vec<u8>,
    /// The binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
}

// ------------------------------------------------------------------------------------------
// Bytes

/// Reads `bytes` as exactly one MessagePack value.
///
/// Strings, binaries and exts borrow from `bytes` while reading, so a declared length longer
/// than what is left is refused before anything is allocated; arrays and maps grow with the
/// elements actually read (each takes at least one byte), never with their declared length.
/// Containers may nest a little deeper than [`MAX_DEPTH`] (room for the message envelope);
/// deeper gives [`NotepackError::TooDeep`]. Bytes left after the value give
/// [`NotepackError::Malformed`], as in notepack ("trailing bytes").
///
/// Memory stays linear in the input, but a tree of values is larger than its bytes: an array
/// of N one-byte nils takes N bytes and, at the peak, about 100 × N (rmpv's borrowed tree,
/// 32 bytes a value and room to grow, then the owned one, 40 bytes a value). Cap the size of
/// what is handed in.
pub fn read(bytes: &[u8]) -> Result<Value, NotepackError> {
    let mut rest = bytes;
    let value =
        rmpv::decode::read_value_ref_with_max_depth(&mut rest, READ_DEPTH).map_err(|error| {
            match error {
                rmpv::decode::Error::DepthLimitExceeded => NotepackError::TooDeep,
                _ => NotepackError::Malformed,
            }
        })?;
    if !rest.is_empty() {
        return Err(NotepackError::Malformed);
    }
    Ok(value.to_owned())
}

/// Writes `value` as MessagePack in the smallest forms: positive fixint, uint8/16/32/64,
/// negative fixint, int8/16/32/64, fixstr/str8/16/32, bin8/16/32, fixarray/array16/32,
/// fixmap/map16/32, float64 for `F64`. These are notepack's forms. (A `Value::F32` would be
/// written as float32; nothing here builds one.)
pub fn write(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec does not fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

// ------------------------------------------------------------------------------------------
// Decoding: MessagePack value -> JSON + attachments

/// Decodes an event's data array `[eventName, ...args]` (the `data` of a published packet)
/// into the event name and the arguments as ringcast sends them.
pub fn decode_event(data: Value) -> Result<DecodedEvent, NotepackError> {
    let Value::Array(items) = data else {
        return Err(NotepackError::NotArray);
    };
    let mut items = items.into_iter();
    let name = match items.next() {
        None => return Err(NotepackError::Empty),
        Some(Value::String(name)) => name.into_str().ok_or(NotepackError::InvalidUtf8)?,
        Some(_) => return Err(NotepackError::NameNotString),
    };
    let mut out = ToJson::default();
    let mut count = 0;
    for item in items {
        if count > 0 {
            out.json.push(b',');
        }
        // The data array is at depth 1, its arguments at depth 2.
        out.value(item, 2)?;
        count += 1;
    }
    Ok(DecodedEvent {
        name,
        args: out.json,
        count,
        attachments: out.attachments,
    })
}

/// Decodes one value (e.g. a BROADCAST_ACK's `packet`, the first argument of a client's ack)
/// into its JSON and attachments.
pub fn decode_value(value: Value) -> Result<DecodedValue, NotepackError> {
    let mut out = ToJson::default();
    out.value(value, 1)?;
    Ok(DecodedValue {
        json: out.json,
        attachments: out.attachments,
    })
}

#[derive(Default)]
struct ToJson {
    json: Vec<u8>,
    attachments: Vec<Bytes>,
}

impl ToJson {
    /// Writes `value`; `depth` is the depth it has if it is a container (the outermost
    /// container is at depth 1).
    fn value(&mut self, value: Value, depth: usize) -> Result<(), NotepackError> {
        match value {
            Value::Nil => self.json.extend_from_slice(b"null"),
            Value::Boolean(true) => self.json.extend_from_slice(b"true"),
            Value::Boolean(false) => self.json.extend_from_slice(b"false"),
            Value::Integer(n) => write_integer(&mut self.json, n),
            Value::F32(f) => write_number(&mut self.json, f64::from(f)),
            Value::F64(f) => write_number(&mut self.json, f),
            Value::String(s) => {
                let s = s.as_str().ok_or(NotepackError::InvalidUtf8)?;
                json::write_str(&mut self.json, s);
            }
            Value::Binary(bytes) => self.binary(bytes, depth)?,
            Value::Array(items) => {
                check_depth(depth)?;
                self.json.push(b'[');
                for (i, item) in items.into_iter().enumerate() {
                    if i > 0 {
                        self.json.push(b',');
                    }
                    self.value(item, depth + 1)?;
                }
                self.json.push(b']');
            }
            Value::Map(entries) => {
                check_depth(depth)?;
                self.json.push(b'{');
                let mut first = true;
                for (key, value) in entries {
                    let Some(key) = key_string(&key)? else {
                        continue;
                    };
                    if is_undefined(&value) {
                        // `JSON.stringify` leaves out a key whose value is undefined.
                        continue;
                    }
                    if !first {
                        self.json.push(b',');
                    }
                    first = false;
                    json::write_str(&mut self.json, &key);
                    self.json.push(b':');
                    self.value(value, depth + 1)?;
                }
                self.json.push(b'}');
            }
            Value::Ext(kind, data) => self.ext(kind, data, depth)?,
        }
        Ok(())
    }

    /// A `bin`: a placeholder here, the bytes as the next attachment.
    fn binary(&mut self, bytes: Vec<u8>, depth: usize) -> Result<(), NotepackError> {
        check_depth(depth)?;
        let num = self.attachments.len();
        let _ = write!(self.json, r#"{{"_placeholder":true,"num":{num}}}"#);
        self.attachments.push(Bytes::from(bytes));
        Ok(())
    }

    fn ext(&mut self, kind: i8, data: Vec<u8>, depth: usize) -> Result<(), NotepackError> {
        match (kind, data.len()) {
            (-1, 4 | 8 | 12) => self.date(timestamp_ms(&data)),
            // Legacy: `d4 00 xx` is undefined, `d7 00 <i64 ms>` a Date.
            (0, 1) => self.json.extend_from_slice(b"null"),
            (0, 8) => self.date(be_i64(&data).map(i128::from)),
            // Legacy: an ArrayBuffer (`c7/c8/c9` with type 0).
            (0, _) => self.binary(data, depth)?,
            _ => {
                check_depth(depth)?;
                let _ = write!(self.json, "[{kind},");
                self.binary(data, depth + 1)?;
                self.json.push(b']');
            }
        }
        Ok(())
    }

    /// A Date as `Date.prototype.toJSON` writes it: ISO-8601, or `null` when invalid.
    fn date(&mut self, ms: Option<i128>) {
        match ms.filter(|ms| (-MAX_DATE_MS..=MAX_DATE_MS).contains(ms)) {
            Some(ms) => {
                self.json.push(b'"');
                // In range, so it fits an i64.
                write_iso8601(&mut self.json, ms as i64);
                self.json.push(b'"');
            }
            None => self.json.extend_from_slice(b"null"),
        }
    }
}

/// The legacy `d4 00 xx`: JavaScript's undefined.
fn is_undefined(value: &Value) -> bool {
    matches!(value, Value::Ext(0, data) if data.len() == 1)
}

fn check_depth(depth: usize) -> Result<(), NotepackError> {
    if depth > MAX_DEPTH {
        Err(NotepackError::TooDeep)
    } else {
        Ok(())
    }
}

/// A map key as the string JavaScript makes of it; `None` for keys whose entry is dropped.
fn key_string(key: &Value) -> Result<Option<Cow<'_, str>>, NotepackError> {
    Ok(match key {
        Value::String(s) => Some(Cow::Borrowed(s.as_str().ok_or(NotepackError::InvalidUtf8)?)),
        Value::Integer(n) => {
            let mut out = Vec::new();
            write_integer(&mut out, *n);
            String::from_utf8(out).ok().map(Cow::Owned)
        }
        Value::F32(f) => Some(Cow::Owned(js_number_string(f64::from(*f)))),
        Value::F64(f) => Some(Cow::Owned(js_number_string(*f))),
        Value::Boolean(true) => Some(Cow::Borrowed("true")),
        Value::Boolean(false) => Some(Cow::Borrowed("false")),
        _ => None,
    })
}

fn write_integer(out: &mut Vec<u8>, n: rmpv::Integer) {
    let _ = match (n.as_u64(), n.as_i64()) {
        (Some(n), _) => write!(out, "{n}"),
        (None, Some(n)) => write!(out, "{n}"),
        // An Integer is always one or the other.
        (None, None) => write!(out, "0"),
    };
}

/// A number as `JSON.stringify` writes it: `null` for NaN and ±Infinity, otherwise as
/// JavaScript's `Number.prototype.toString`.
fn write_number(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        out.extend_from_slice(js_number_string(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// JavaScript's `Number::toString(x)` (ECMA-262 § 6.1.6.1.20): the shortest digits that read
/// back as `x`, in positional notation for exponents −7 < e < 21 and in `d.ddde±n` otherwise.
fn js_number_string(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return "0".into(); // -0 too
    }
    // Rust's `{:e}` gives the fewest digits that read back as `f` ("1.2345e-7", "3e0",
    // "1e21"), but breaks an exact tie between two such upwards (…076.625 → "…076.63"), where
    // JavaScript takes the closest, then the even one. Rust's fixed-precision formatting rounds
    // exactly, half to even: with as many digits, it is JavaScript's choice whenever it reads
    // back as `f` (it may not, next to a power of two).
    let shortest = format!("{:e}", f.abs());
    let digits = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.len() - usize::from(m.contains('.')));
    let rounded = format!("{:.*e}", digits.saturating_sub(1), f.abs());
    let scientific = if rounded.parse::<f64>() == Ok(f.abs()) {
        rounded
    } else {
        shortest
    };
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i64;
    let n = exponent.parse::<i64>().unwrap_or(0) + 1;
    let mut s = String::with_capacity(32);
    if f < 0.0 {
        s.push('-');
    }
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        s.push_str(int);
        s.push('.');
        s.push_str(frac);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-n) as usize));
        s.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        s.push_str(first);
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        let e = n - 1;
        s.push('e');
        s.push(if e >= 0 { '+' } else { '-' });
        s.push_str(&e.abs().to_string());
    }
    s
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

fn be_i64(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The milliseconds of a Timestamp extension (type −1) of 4, 8 or 12 bytes, truncated toward
/// zero as `new Date(seconds * 1e3 + nanoseconds / 1e6)` does.
fn timestamp_ms(data: &[u8]) -> Option<i128> {
    let (seconds, nanos) = match data.len() {
        4 => (i128::from(be_u32(data)?), 0),
        8 => {
            let word = be_i64(data)? as u64;
            (i128::from(word & ((1 << 34) - 1)), i128::from(word >> 34))
        }
        12 => (
            i128::from(be_i64(data.get(4..)?)?),
            i128::from(be_u32(data)?),
        ),
        _ => return None,
    };
    Some((seconds * 1_000_000_000 + nanos) / 1_000_000)
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ`, as `Date.prototype.toISOString` writes it: years outside
/// 0..=9999 as a sign and six digits (`+010000`, `-000001`).
fn write_iso8601(out: &mut Vec<u8>, ms: i64) {
    const DAY_MS: i64 = 86_400_000;
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let of_day = ms.rem_euclid(DAY_MS);
    let _ = if (0..=9999).contains(&year) {
        write!(out, "{year:04}")
    } else {
        let sign = if year < 0 { '-' } else { '+' };
        write!(out, "{sign}{:06}", year.unsigned_abs())
    };
    let _ = write!(
        out,
        "-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1000 % 60,
        of_day % 1000
    );
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`: eras of 400 years, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

// ------------------------------------------------------------------------------------------
// Encoding: JSON + attachments -> MessagePack

/// Encodes an event's data array `[name, ...args]` as notepack would: `args` is the arguments'
/// JSON, comma-separated without brackets (possibly empty), and each placeholder in it is
/// replaced by `bin(attachments[num])`.
pub fn encode_event(
    name: &str,
    args: &[u8],
    attachments: &[Bytes],
) -> Result<Vec<u8>, NotepackError> {
    Ok(write(&event_to_value(name, args, attachments)?))
}

/// Encodes one JSON value (e.g. an ack's first argument, `socket.data`) as notepack would,
/// each placeholder replaced by `bin(attachments[num])`.
pub fn encode_value(json: &[u8], attachments: &[Bytes]) -> Result<Vec<u8>, NotepackError> {
    Ok(write(&json_to_value(json, attachments)?))
}

/// [`encode_event`]'s value, to embed in a message (`packet.data`) before [`write`].
pub fn event_to_value(
    name: &str,
    args: &[u8],
    attachments: &[Bytes],
) -> Result<Value, NotepackError> {
    let mut array = Vec::with_capacity(args.len() + 2);
    array.push(b'[');
    array.extend_from_slice(args);
    array.push(b']');
    // A valid `[args]` is one array, so `args` is a list of values.
    let Value::Array(mut items) = json_to_value(&array, attachments)? else {
        return Err(NotepackError::InvalidJson);
    };
    check_len(name.len())?;
    check_len(items.len() + 1)?;
    items.insert(0, Value::from(name));
    Ok(Value::Array(items))
}

/// [`encode_value`]'s value, to embed in a message before [`write`].
pub fn json_to_value(json: &[u8], attachments: &[Bytes]) -> Result<Value, NotepackError> {
    json::validate(json).map_err(|error| match error {
        JsonError::TooDeep => NotepackError::TooDeep,
        _ => NotepackError::InvalidJson,
    })?;
    let mut reader = FromJson {
        json,
        pos: 0,
        attachments,
    };
    reader.value()
}

fn check_len(len: usize) -> Result<(), NotepackError> {
    if u32::try_from(len).is_ok() {
        Ok(())
    } else {
        Err(NotepackError::TooLarge)
    }
}

/// A recursive descent over JSON that [`json::validate`] accepted, so the recursion is bounded
/// by [`json::MAX_DEPTH`]; it still answers [`NotepackError::InvalidJson`] rather than assume.
struct FromJson<'a> {
    json: &'a [u8],
    pos: usize,
    attachments: &'a [Bytes],
}

impl FromJson<'_> {
    fn peek(&self) -> Option<u8> {
        self.json.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `byte` (after whitespace) or fails.
    fn expect(&mut self, byte: u8) -> Result<(), NotepackError> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(NotepackError::InvalidJson)
        }
    }

    /// Consumes `byte` (after whitespace) if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn value(&mut self) -> Result<Value, NotepackError> {
        self.skip_ws();
        match self.peek().ok_or(NotepackError::InvalidJson)? {
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                check_len(items.len())?;
                Ok(Value::Array(items))
            }
            b'{' => {
                self.pos += 1;
                let mut entries = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_ws();
                        let key = self.string()?;
                        self.expect(b':')?;
                        entries.push((Value::from(key), self.value()?));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                check_len(entries.len())?;
                self.placeholder(&entries)
                    .map(|found| found.unwrap_or(Value::Map(entries)))
            }
            b'"' => Ok(Value::from(self.string()?)),
            b't' => self.literal(b"true", Value::Boolean(true)),
            b'f' => self.literal(b"false", Value::Boolean(false)),
            b'n' => self.literal(b"null", Value::Nil),
            _ => self.number(),
        }
    }

    /// An object whose `_placeholder` is `true` is a placeholder, as in socket.io-parser: its
    /// `num` must index the attachments (`1`, `1.0` and `1e0` alike; with duplicate keys the
    /// last wins, as in `JSON.parse`).
    fn placeholder(&self, entries: &[(Value, Value)]) -> Result<Option<Value>, NotepackError> {
        let last = |name: &str| {
            entries
                .iter()
                .rev()
                .find(|(key, _)| key.as_str() == Some(name))
                .map(|(_, value)| value)
        };
        if last("_placeholder") != Some(&Value::Boolean(true)) {
            return Ok(None);
        }
        let attachment = last("num")
            .and_then(Value::as_u64)
            .and_then(|num| usize::try_from(num).ok())
            .and_then(|num| self.attachments.get(num))
            .ok_or(NotepackError::BadPlaceholder)?;
        check_len(attachment.len())?;
        Ok(Some(Value::Binary(attachment.to_vec())))
    }

    fn string(&mut self) -> Result<String, NotepackError> {
        let start = self.pos;
        if self.peek() != Some(b'"') {
            return Err(NotepackError::InvalidJson);
        }
        self.pos += 1;
        loop {
            match self.peek().ok_or(NotepackError::InvalidJson)? {
                b'"' => break,
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        let token = self.json.get(start..self.pos).unwrap_or_default();
        let s = json::parse_str(token).map_err(|_| NotepackError::InvalidJson)?;
        check_len(s.len())?;
        Ok(s.into_owned())
    }

    fn literal(&mut self, text: &[u8], value: Value) -> Result<Value, NotepackError> {
        if self.json.get(self.pos..self.pos + text.len()) == Some(text) {
            self.pos += text.len();
            Ok(value)
        } else {
            Err(NotepackError::InvalidJson)
        }
    }

    /// A number as notepack writes the JavaScript number `JSON.parse` makes of it: integral
    /// values as integers, others as float64. Integers are taken exactly where they fit 64
    /// bits (JavaScript would round those beyond 2^53).
    fn number(&mut self) -> Result<Value, NotepackError> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            self.pos += 1;
        }
        let text = self.json.get(start..self.pos).unwrap_or_default();
        let text = std::str::from_utf8(text).map_err(|_| NotepackError::InvalidJson)?;
        if text.is_empty() {
            return Err(NotepackError::InvalidJson);
        }
        if !text.contains(['.', 'e', 'E']) {
            let exact = if text.starts_with('-') {
                text.parse::<i64>().ok().map(Value::from)
            } else {
                text.parse::<u64>().ok().map(Value::from)
            };
            if let Some(value) = exact {
                return Ok(value);
            }
        }
        let f = text
            .parse::<f64>()
            .map_err(|_| NotepackError::InvalidJson)?;
        Ok(integral(f).unwrap_or(Value::F64(f)))
    }
}

/// `f` as an integer if it is integral and fits: `0..2^64` as unsigned, `-2^63 < f < 0` as
/// signed. (−2^63 itself stays a float: JavaScript writes it `-9223372036854776000`, which is
/// out of i64's range, so reading that text back gives the same float again.)
fn integral(f: f64) -> Option<Value> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if !f.is_finite() || f.fract() != 0.0 {
        return None;
    }
    if (0.0..TWO_64).contains(&f) {
        Some(Value::from(f as u64)) // -0 included, as 0
    } else if f > -TWO_63 && f < 0.0 {
        Some(Value::from(f as i64))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `message[1]["data"]` of a captured broadcast `[uid, packet, opts]`, or `message["packet"]
    /// ["data"]` of a BROADCAST request.
    fn data_of(message: &Value) -> Value {
        let packet = match message {
            Value::Array(items) => &items[1],
            Value::Map(_) => field(message, "packet"),
            _ => panic!("not a message: {message}"),
        };
        field(packet, "data").clone()
    }

    fn field<'a>(map: &'a Value, name: &str) -> &'a Value {
        map.as_map()
            .unwrap()
            .iter()
            .find(|(key, _)| key.as_str() == Some(name))
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("no {name} in {map}"))
    }

    /// The data array's own bytes, as written inside the capture.
    fn data_bytes(message: &[u8]) -> Vec<u8> {
        write(&data_of(&read(message).unwrap()))
    }

    /// What a Node client got for the event: `[name,args...]`.
    fn event_json(event: &DecodedEvent) -> String {
        let mut out = b"[".to_vec();
        json::write_str(&mut out, &event.name);
        if event.count > 0 {
            out.push(b',');
            out.extend_from_slice(&event.args);
        }
        out.push(b']');
        String::from_utf8(out).unwrap()
    }

    fn decode_hex_data(data: &str) -> Result<DecodedEvent, NotepackError> {
        decode_event(read(&hex(data))?)
    }

    fn value_json(bytes: &[u8]) -> Result<(String, Vec<Bytes>), NotepackError> {
        let decoded = decode_value(read(bytes)?)?;
        Ok((
            String::from_utf8(decoded.json).unwrap(),
            decoded.attachments,
        ))
    }

    // Section 0 and A.3 of the ecosystem spec, captured from socket.io 4.8 + redis-adapter 8.3.

    const HELLO: &str = "93a65338784a517683a47479706502a46461746197a568656c6c6fa5776f726c642a\
        cb400c000000000000c3c081a161920102a36e7370a12f83a5726f6f6d7390a665786365707490a566\
        6c61677380";
    const TO_ROOM1: &str = "93a65338784a517683a47479706502a46461746192a8746f2d726f6f6d31a178a3\
        6e7370a12f83a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380";
    const MULTI: &str = "93a65338784a517683a47479706502a46461746192a56d756c746901a36e7370a12f\
        83a5726f6f6d7392a5726f6f6d31a5726f6f6d32a665786365707491a5726f6f6d33a5666c61677380";
    const BIN: &str = "93a65338784a517683a47479706502a46461746193a362696ec40301020381a66e6573\
        746564c4020405a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380";
    /// The spec elides this one after `nsp`; completed with the opts every other `io.emit`
    /// capture carries.
    const TYPES: &str = "93a65338784a517683a47479706502a46461746197a57479706573d7ff1d5353006553\
        f100c0fbcd012cce00011170cf0000010000000000a36e7370a12f\
        83a5726f6f6d7390a665786365707490a5666c61677380";
    /// A.4: a BROADCAST request (MessagePack) and its BROADCAST_ACK.
    const ASK: &str = "85a3756964a65338784a5176a9726571756573744964a64b3535443761a47479706507a6\
        7061636b657483a47479706502a46461746192a361736b01a36e7370a12fa46f70747383a5726f6f6d73\
        90a665786365707490a5666c61677381a774696d656f7574cd07d0";
    const ACK: &str = "83a47479706509a9726571756573744964a64b3535443761a67061636b6574ad61636b2d\
        66726f6d2d63324042";
    /// B.1: the emitter's broadcast.
    const EMITTER: &str = "93a7656d697474657283a47479706502a46461746194ac66726f6d2d656d69747465\
        72a1610181a162c3a36e7370a12f83a5726f6f6d7390a5666c61677380a665786365707490";

    #[test]
    fn captures_decode_to_what_the_node_client_got() {
        let table: &[(&str, &str)] = &[
            (HELLO, r#"["hello","world",42,3.5,true,null,{"a":[1,2]}]"#),
            (TO_ROOM1, r#"["to-room1","x"]"#),
            (MULTI, r#"["multi",1]"#),
            (
                BIN,
                r#"["bin",{"_placeholder":true,"num":0},{"nested":{"_placeholder":true,"num":1}}]"#,
            ),
            (
                TYPES,
                r#"["types","2023-11-14T22:13:20.123Z",null,-5,300,70000,1099511627776]"#,
            ),
            (ASK, r#"["ask",1]"#),
            (EMITTER, r#"["from-emitter","a",1,{"b":true}]"#),
        ];
        for (capture, expected) in table {
            let message = read(&hex(capture)).unwrap();
            let event = decode_event(data_of(&message)).unwrap();
            assert_eq!(event_json(&event), *expected);
            let expected_attachments: Vec<Bytes> = if *capture == BIN {
                vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4, 5])]
            } else {
                Vec::new()
            };
            assert_eq!(event.attachments, expected_attachments, "{expected}");
        }
        // The emitter's Date (timestamp32), from the fragment the spec shows.
        let event = decode_hex_data("92 a6652d64617465 d6ff6553f100").unwrap();
        assert_eq!(
            event_json(&event),
            r#"["e-date","2023-11-14T22:13:20.000Z"]"#
        );
        // The section 0 capture alone.
        assert_eq!(
            value_json(&hex("d7ff1d5353006553f100")).unwrap().0,
            r#""2023-11-14T22:13:20.123Z""#
        );
        // The BROADCAST_ACK's `packet`: the first ack argument.
        let ack = read(&hex(ACK)).unwrap();
        let packet = decode_value(field(&ack, "packet").clone()).unwrap();
        assert_eq!(packet.json, br#""ack-from-c2@B""#);
    }

    #[test]
    fn captures_round_trip_to_nodes_bytes() {
        for capture in [HELLO, TO_ROOM1, MULTI, BIN, ASK, EMITTER] {
            let original = data_bytes(&hex(capture));
            // The data array really is what the capture holds, byte for byte.
            let whole = hex(capture);
            assert!(whole.windows(original.len()).any(|w| w == original));
            let event = decode_event(read(&original).unwrap()).unwrap();
            let encoded = encode_event(&event.name, &event.args, &event.attachments).unwrap();
            assert_eq!(encoded, original, "{capture}");
        }
        // The Date cannot round-trip: it reaches JSON as a string, and a string is what goes
        // back. Everything else in the `types` capture does (undefined was already nil).
        let original = data_bytes(&hex(TYPES));
        let event = decode_event(read(&original).unwrap()).unwrap();
        let encoded = encode_event(&event.name, &event.args, &event.attachments).unwrap();
        let expected = hex(
            "97a57479706573 b8 323032332d31312d31345432323a31333a32302e3132335a \
             c0fbcd012cce00011170cf0000010000000000",
        );
        assert_eq!(encoded, expected);
        // And the whole BROADCAST request re-encodes to its own bytes through rmpv.
        assert_eq!(write(&read(&hex(ASK)).unwrap()), hex(ASK));
    }

    #[test]
    fn integers_in_notepacks_smallest_forms() {
        let table: &[(&str, &str)] = &[
            ("0", "00"),
            ("-0", "00"),
            ("1.0", "01"),
            ("1e2", "64"),
            ("127", "7f"),
            ("128", "cc80"),
            ("255", "ccff"),
            ("256", "cd0100"),
            ("65535", "cdffff"),
            ("65536", "ce00010000"),
            ("4294967295", "ceffffffff"),
            ("4294967296", "cf0000000100000000"),
            ("9007199254740993", "cf0020000000000001"),
            ("18446744073709551615", "cfffffffffffffffff"),
            ("-1", "ff"),
            ("-32", "e0"),
            ("-33", "d0df"),
            ("-128", "d080"),
            ("-129", "d1ff7f"),
            ("-32768", "d18000"),
            ("-32769", "d2ffff7fff"),
            ("-2147483648", "d280000000"),
            ("-2147483649", "d3ffffffff7fffffff"),
            ("-9223372036854775808", "d38000000000000000"),
            // Beyond 64 bits: a double, as JavaScript holds it.
            ("18446744073709551616", "cb43f0000000000000"),
            ("-9223372036854775809", "cbc3e0000000000000"),
            ("3.5", "cb400c000000000000"),
            ("-0.5", "cbbfe0000000000000"),
            ("1e300", "cb7e37e43c8800759c"),
        ];
        for (json, bytes) in table {
            let encoded = encode_value(json.as_bytes(), &[]).unwrap();
            assert_eq!(encoded, hex(bytes), "{json}");
            // And back: integers exactly, floats as JavaScript writes them.
            let back = value_json(&encoded).unwrap().0;
            let expected = match *json {
                "-0" => "0",
                "1.0" => "1",
                "1e2" => "100",
                "18446744073709551616" => "18446744073709552000",
                "-9223372036854775809" => "-9223372036854776000",
                "1e300" => "1e+300",
                other => other,
            };
            assert_eq!(back, expected, "{json}");
        }
    }

    #[test]
    fn strings_arrays_maps_in_their_smallest_forms() {
        let s = |n: usize| format!("\"{}\"", "a".repeat(n));
        let table: Vec<(String, Vec<u8>)> = vec![
            (s(0), hex("a0")),
            (s(31), [&[0xbf][..], &[b'a'; 31]].concat()),
            (s(32), [&[0xd9, 32][..], &[b'a'; 32]].concat()),
            (s(255), [&[0xd9, 255][..], &[b'a'; 255]].concat()),
            (s(256), [&[0xda, 1, 0][..], &[b'a'; 256]].concat()),
            (s(65536), [&[0xdb, 0, 1, 0, 0][..], &[b'a'; 65536]].concat()),
            ("\"é\"".into(), hex("a2c3a9")),
            ("\"\\u00e9\\n\"".into(), hex("a3c3a90a")),
            ("[]".into(), hex("90")),
            (
                format!("[{}]", vec!["1"; 15].join(",")),
                [&[0x9f][..], &[1; 15]].concat(),
            ),
            (
                format!("[{}]", vec!["1"; 16].join(",")),
                [&[0xdc, 0, 16][..], &[1; 16]].concat(),
            ),
            ("{}".into(), hex("80")),
            ("{\"b\":1,\"a\":2}".into(), hex("82a16201a16102")),
            (
                format!(
                    "{{{}}}",
                    (0..16)
                        .map(|i| format!("\"{i:x}\":0"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                [
                    &[0xde, 0, 16][..],
                    &(0..16)
                        .flat_map(|i| [0xa1, format!("{i:x}").as_bytes()[0], 0])
                        .collect::<Vec<_>>(),
                ]
                .concat(),
            ),
            (" [ true , false , null ] ".into(), hex("93c3c2c0")),
        ];
        for (json, bytes) in &table {
            assert_eq!(
                &encode_value(json.as_bytes(), &[]).unwrap(),
                bytes,
                "{json}"
            );
        }
    }

    #[test]
    fn placeholders_become_bin_and_bin_becomes_placeholders() {
        let attachments = [Bytes::from_static(b"\x01\x02"), Bytes::from(vec![7u8; 300])];
        let encoded = encode_event(
            "up",
            br#"{"_placeholder":true,"num":1},[{"num":0,"_placeholder":true,"x":1}]"#,
            &attachments,
        )
        .unwrap();
        let expected = [
            &hex("93 a27570 c5012c")[..],
            &[7u8; 300],
            &hex("91 c4020102"),
        ]
        .concat();
        assert_eq!(encoded, expected);
        // Decoding numbers them afresh, depth first.
        let event = decode_event(read(&encoded).unwrap()).unwrap();
        assert_eq!(
            event.args,
            br#"{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(event.count, 2);
        assert_eq!(
            event.attachments,
            [attachments[1].clone(), attachments[0].clone()]
        );
        // `num` spelled 1.0 or 1e0 is still 1; not `true` is not a placeholder.
        for args in [
            r#"{"_placeholder":true,"num":1.0}"#,
            r#"{"_placeholder":true,"num":1e0}"#,
        ] {
            assert!(
                encode_event("e", args.as_bytes(), &attachments).is_ok(),
                "{args}"
            );
        }
        assert_eq!(
            encode_value(br#"{"_placeholder":false,"num":9}"#, &[]).unwrap(),
            hex("82 ac5f706c616365686f6c646572 c2 a36e756d 09")
        );
        for bad in [
            r#"{"_placeholder":true,"num":2}"#,
            r#"{"_placeholder":true,"num":-1}"#,
            r#"{"_placeholder":true,"num":0.5}"#,
            r#"{"_placeholder":true,"num":"0"}"#,
            r#"{"_placeholder":true}"#,
            r#"[[{"_placeholder":true,"num":99}]]"#,
        ] {
            assert_eq!(
                encode_event("e", bad.as_bytes(), &attachments),
                Err(NotepackError::BadPlaceholder),
                "{bad}"
            );
        }
    }

    #[test]
    fn encode_refuses_what_is_not_json() {
        for args in [
            "1,",
            ",1",
            "1 2",
            "1],[2",
            "]",
            "{",
            "\"\\ud800\"",
            "NaN",
            "'a'",
        ] {
            assert_eq!(
                encode_event("e", args.as_bytes(), &[]),
                Err(NotepackError::InvalidJson),
                "{args}"
            );
        }
        assert_eq!(encode_event("e", b"", &[]).unwrap(), hex("91a165"));
        assert_eq!(encode_event("e", b"  ", &[]).unwrap(), hex("91a165"));
        assert_eq!(encode_value(b"", &[]), Err(NotepackError::InvalidJson));
        // The JSON codec's depth limit, the event's own brackets included.
        let at_limit = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
        let encoded = encode_event("e", at_limit.as_bytes(), &[]).unwrap();
        let event = decode_event(read(&encoded).unwrap()).unwrap();
        assert_eq!(event.args, at_limit.as_bytes());
        let over = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(
            encode_event("e", over.as_bytes(), &[]),
            Err(NotepackError::TooDeep)
        );
    }

    #[test]
    fn floats_nan_and_infinity() {
        let table: &[(&str, &str)] = &[
            ("cb400c000000000000", "3.5"),
            ("cb7ff8000000000000", "null"),                  // NaN
            ("cb7ff0000000000000", "null"),                  // Infinity
            ("cbfff0000000000000", "null"),                  // -Infinity
            ("cb8000000000000000", "0"),                     // -0
            ("cb4008000000000000", "3"),                     // an integral double
            ("cb3fb999999999999a", "0.1"),                   // 0.1
            ("cb3eb0c6f7a0b5ed8d", "0.000001"),              // 1e-6
            ("cb3e7ad7f29abcaf48", "1e-7"),                  // 1e-7
            ("cb444b1ae4d6e2ef50", "1e+21"),                 // 1e21
            ("cb4415af1d78b58c40", "100000000000000000000"), // 1e20
            ("cb43f0000000000000", "18446744073709552000"),  // 2^64
            ("cb0000000000000001", "5e-324"),
            ("cb7fefffffffffffff", "1.7976931348623157e+308"),
            ("cbc0934a456d5cfaad", "-1234.5678"),
            // Exact ties between two shortest spellings: the even one, as V8 writes them.
            ("cb42e5230b6407d294", "185922073149076.62"),
            ("cb42a3d8a9670cce20", "10910637983335.062"),
            ("ca40600000", "3.5"),                 // float32
            ("ca3dcccccd", "0.10000000149011612"), // float32 0.1, as a double
            ("ca7fc00000", "null"),                // float32 NaN
            ("caff800000", "null"),                // float32 -Infinity
        ];
        for (bytes, json) in table {
            assert_eq!(value_json(&hex(bytes)).unwrap().0, *json, "{bytes}");
        }
        // Encoding never writes float32.
        assert_eq!(
            encode_value(b"0.1", &[]).unwrap(),
            hex("cb3fb999999999999a")
        );
    }

    #[test]
    fn timestamps_in_every_form() {
        let table: &[(&str, &str)] = &[
            // timestamp32: whole seconds.
            ("d6ff00000000", "\"1970-01-01T00:00:00.000Z\""),
            ("d6ff6553f100", "\"2023-11-14T22:13:20.000Z\""),
            ("d6ff38bb0c00", "\"2000-02-29T00:00:00.000Z\""), // 951782400
            ("d6ffffffffff", "\"2106-02-07T06:28:15.000Z\""),
            // timestamp64: nanoseconds << 34 | seconds (34 bits).
            ("d7ff1d5353006553f100", "\"2023-11-14T22:13:20.123Z\""),
            ("d7ff0000000000000000", "\"1970-01-01T00:00:00.000Z\""),
            // 999999999 ns: truncated to 999 ms.
            ("d7ffee6b27fc00000000", "\"1970-01-01T00:00:00.999Z\""),
            ("d7ff00000003ffffffff", "\"2514-05-30T01:53:03.000Z\""),
            // timestamp96: u32 nanoseconds, i64 seconds; before 1970 and far out.
            (
                "c70cff 00000000 ffffffffffffffff",
                "\"1969-12-31T23:59:59.000Z\"",
            ),
            (
                "c70cff 1dcd6500 ffffffffffffffff",
                "\"1969-12-31T23:59:59.500Z\"",
            ),
            // -1 s + 1 ns = -999.999999 ms, truncated toward zero as `new Date` does.
            (
                "c70cff 00000001 ffffffffffffffff",
                "\"1969-12-31T23:59:59.001Z\"",
            ),
            (
                "c70cff 00000000 ffffffff7ca34a00",
                "\"1900-03-01T00:00:00.000Z\"",
            ), // -2203891200
            (
                "c70cff 00000000 fffffff1868b8400",
                "\"0000-01-01T00:00:00.000Z\"",
            ), // -62167219200
            (
                "c70cff 00000000 fffffff1868a3280",
                "\"-000001-12-31T00:00:00.000Z\"",
            ), // one day earlier
            (
                "c70cff 00000000 0000003afff44180",
                "\"+010000-01-01T00:00:00.000Z\"",
            ), // 253402300800
            // The ends of JavaScript's date range (±8.64e15 ms), and just past them.
            (
                "c70cff 00000000 000007dba8218000",
                "\"+275760-09-13T00:00:00.000Z\"",
            ),
            (
                "c70cff 00000000 fffff82457de8000",
                "\"-271821-04-20T00:00:00.000Z\"",
            ),
            ("c70cff 00000000 000007dba8218001", "null"),
            ("c70cff 00000000 fffff82457de7fff", "null"),
            ("c70cff ffffffff 7fffffffffffffff", "null"),
            ("c70cff ffffffff 8000000000000000", "null"),
            // Legacy Date: `d7 00` and the milliseconds as an i64.
            ("d700 0000018bcfe5687b", "\"2023-11-14T22:13:20.123Z\""),
            ("d700 ffffffffffffffff", "\"1969-12-31T23:59:59.999Z\""),
            ("d700 7fffffffffffffff", "null"),
        ];
        for (bytes, json) in table {
            assert_eq!(value_json(&hex(bytes)).unwrap().0, *json, "{bytes}");
        }
    }

    #[test]
    fn civil_dates_step_one_day_at_a_time() {
        // Walk a million days each way from the epoch and check every step against the
        // calendar's rules, independently of the era arithmetic.
        let leap = |y: i64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        let month_len = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let next = |(y, m, d): (i64, u32, u32)| {
            if d < month_len(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            }
        };
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        let mut date = civil_from_days(-1_000_000);
        for days in -999_999..=1_000_000 {
            date = next(date);
            assert_eq!(civil_from_days(days), date, "day {days}");
        }
    }

    #[test]
    fn legacy_and_other_ext_types() {
        let table: &[(&str, &str, &[&[u8]])] = &[
            // `d4 00 xx`: undefined, null in JSON (and inside arrays).
            ("d40000", "null", &[]),
            ("92 d40000 01", "[null,1]", &[]),
            // In a map, its key is left out, as `JSON.stringify` does.
            ("82 a161 d40000 a162 01", r#"{"b":1}"#, &[]),
            // Ext 0 with the `c7/c8/c9` headers: an ArrayBuffer, so binary.
            (
                "c70300 010203",
                r#"{"_placeholder":true,"num":0}"#,
                &[&[1, 2, 3]],
            ),
            ("c70000", r#"{"_placeholder":true,"num":0}"#, &[&[]]),
            (
                "c8000200 0405",
                r#"{"_placeholder":true,"num":0}"#,
                &[&[4, 5]],
            ),
            (
                "c900000003 00 090807",
                r#"{"_placeholder":true,"num":0}"#,
                &[&[9, 8, 7]],
            ),
            // rmpv keeps no header, so length decides: 1 byte is `d4 00`'s undefined and 8 are
            // `d7 00`'s Date, whatever header carried them.
            ("c70100 09", "null", &[]),
            (
                "c70800 0000000000000000",
                r#""1970-01-01T00:00:00.000Z""#,
                &[],
            ),
            // Any other type: [type, bytes].
            (
                "d405 aa",
                r#"[5,{"_placeholder":true,"num":0}]"#,
                &[&[0xaa]],
            ),
            (
                "d5fe aabb",
                r#"[-2,{"_placeholder":true,"num":0}]"#,
                &[&[0xaa, 0xbb]],
            ),
            (
                "c70201 6869",
                r#"[1,{"_placeholder":true,"num":0}]"#,
                &[b"hi"],
            ),
            ("c7007f", r#"[127,{"_placeholder":true,"num":0}]"#, &[&[]]),
            // Type -1 of a length that is no timestamp.
            (
                "d5ff 0102",
                r#"[-1,{"_placeholder":true,"num":0}]"#,
                &[&[1, 2]],
            ),
            (
                "92 d80a 00000000000000000000000000000000 c401ff",
                r#"[[10,{"_placeholder":true,"num":0}],{"_placeholder":true,"num":1}]"#,
                &[&[0; 16], &[0xff]],
            ),
        ];
        for (bytes, json, attachments) in table {
            let (got, got_attachments) = value_json(&hex(bytes)).unwrap();
            assert_eq!(got, *json, "{bytes}");
            let expected: Vec<Bytes> = attachments
                .iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect();
            assert_eq!(got_attachments, expected, "{bytes}");
        }
    }

    #[test]
    fn non_string_keys() {
        let table: &[(&str, &str)] = &[
            ("81 01 a161", r#"{"1":"a"}"#),
            ("81 ff a161", r#"{"-1":"a"}"#),
            (
                "81 cfffffffffffffffff c0",
                r#"{"18446744073709551615":null}"#,
            ),
            ("81 cb400c000000000000 01", r#"{"3.5":1}"#),
            ("81 cb4008000000000000 01", r#"{"3":1}"#),
            ("81 cb7ff8000000000000 01", r#"{"NaN":1}"#),
            ("81 cbfff0000000000000 01", r#"{"-Infinity":1}"#),
            ("81 ca40600000 01", r#"{"3.5":1}"#),
            ("82 c3 01 c2 02", r#"{"true":1,"false":2}"#),
            // Other keys drop their entry, value and all (its binary is no attachment).
            ("84 c0 01 a161 02 90 03 c40101 c40102", r#"{"a":2}"#),
            ("83 80 01 d6ff00000000 02 a162 03", r#"{"b":3}"#),
            ("81 c0 c40101", "{}"),
            // Keys keep the map's order; duplicates stay for the client's JSON.parse.
            ("83 a162 01 a161 02 a162 03", r#"{"b":1,"a":2,"b":3}"#),
            ("81 a2225c 01", r#"{"\"\\":1}"#),
        ];
        for (bytes, json) in table {
            let (got, attachments) = value_json(&hex(bytes)).unwrap();
            assert_eq!(got, *json, "{bytes}");
            assert!(attachments.is_empty(), "{bytes}");
        }
    }

    #[test]
    fn bad_event_data() {
        let table: &[(&str, NotepackError)] = &[
            ("c0", NotepackError::NotArray),
            ("81a16101", NotepackError::NotArray),
            ("a568656c6c6f", NotepackError::NotArray),
            ("90", NotepackError::Empty),
            ("9101", NotepackError::NameNotString),
            ("91c0", NotepackError::NameNotString),
            ("91c40161", NotepackError::NameNotString),
            ("91a1ff", NotepackError::InvalidUtf8),
            ("92a165a2c328", NotepackError::InvalidUtf8),
            ("92a16581a2c32801", NotepackError::InvalidUtf8),
            ("92a16591a3eda080", NotepackError::InvalidUtf8), // a surrogate
        ];
        for (bytes, error) in table {
            assert_eq!(decode_hex_data(bytes), Err(*error), "{bytes}");
        }
        assert_eq!(
            decode_hex_data("91a0").unwrap(),
            DecodedEvent {
                name: String::new(),
                args: Vec::new(),
                count: 0,
                attachments: Vec::new()
            }
        );
        for error in table.iter().map(|(_, e)| e) {
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn malformed_messagepack() {
        for bytes in [
            "",
            "92",             // an element short
            "93a165",         // two short
            "a5 6869",        // a string cut short
            "c4",             // a bin without its length
            "c6 ffffffff 00", // a 4 GiB bin in one byte: refused, nothing allocated
            "db ffffffff 00",
            "c9 ffffffff 05 00",
            "dd ffffffff c0", // four billion elements declared, one there
            "df ffffffff c0c0",
            "cb 400c", // a float cut short
            "c0 c0",   // trailing bytes
            "9101 01",
        ] {
            assert_eq!(read(&hex(bytes)), Err(NotepackError::Malformed), "{bytes}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let nested = |depth: usize| {
            let mut bytes = hex("92a165"); // ["e", ...]
            bytes.extend(std::iter::repeat_n(0x91, depth - 1));
            bytes.push(0x01);
            bytes
        };
        // The data array counts as depth 1: MAX_DEPTH containers in all.
        let event = decode_event(read(&nested(MAX_DEPTH)).unwrap()).unwrap();
        assert_eq!(
            event.args,
            format!(
                "{}1{}",
                "[".repeat(MAX_DEPTH - 1),
                "]".repeat(MAX_DEPTH - 1)
            )
            .as_bytes()
        );
        assert_eq!(
            decode_event(read(&nested(MAX_DEPTH + 1)).unwrap()),
            Err(NotepackError::TooDeep)
        );
        // A placeholder counts as the object it becomes; an ext pair as two.
        let mut bin = nested(MAX_DEPTH);
        bin.pop();
        bin.extend(hex("c40101"));
        assert_eq!(
            decode_event(read(&bin).unwrap()),
            Err(NotepackError::TooDeep)
        );
        let mut bin = nested(MAX_DEPTH - 1);
        bin.pop();
        bin.extend(hex("c40101"));
        assert!(decode_event(read(&bin).unwrap()).is_ok());
        let mut ext = nested(MAX_DEPTH - 1);
        ext.pop();
        ext.extend(hex("d40501"));
        assert_eq!(
            decode_event(read(&ext).unwrap()),
            Err(NotepackError::TooDeep)
        );
        // A map nests like an array.
        let mut maps = hex("92a165");
        for _ in 0..MAX_DEPTH {
            maps.extend(hex("81a161"));
        }
        maps.push(0x01);
        assert_eq!(
            decode_event(read(&maps).unwrap()),
            Err(NotepackError::TooDeep)
        );

        // The event data at the limit still reads inside a message envelope...
        let mut message = hex("93a3756964 82a474797065 02 a464617461");
        message.extend(nested(MAX_DEPTH));
        message.extend(hex("80"));
        let value = read(&message).unwrap();
        assert!(decode_event(data_of(&value)).is_ok());
        // ...and the reader refuses anything much deeper, without exhausting the stack.
        let deep = [vec![0x91; 100_000], vec![0x01]].concat();
        assert_eq!(read(&deep), Err(NotepackError::TooDeep));
        let deep = [0x81u8, 0xa1, 0x61].repeat(100_000);
        assert_eq!(read(&deep), Err(NotepackError::TooDeep));
    }

    /// A JSON tree with binary leaves, written as ringcast holds it: placeholders numbered
    /// depth first, attachments alongside. Objects may repeat keys: both directions keep them.
    #[derive(Debug, Clone)]
    enum Tree {
        Null,
        Bool(bool),
        Int(i64),
        UInt(u64),
        Str(String),
        Bin(Vec<u8>),
        Array(Vec<Tree>),
        Object(Vec<(String, Tree)>),
    }

    impl Tree {
        fn write(&self, out: &mut Vec<u8>, attachments: &mut Vec<Bytes>) {
            match self {
                Tree::Null => out.extend_from_slice(b"null"),
                Tree::Bool(b) => out.extend_from_slice(b.to_string().as_bytes()),
                Tree::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
                Tree::UInt(n) => out.extend_from_slice(n.to_string().as_bytes()),
                Tree::Str(s) => json::write_str(out, s),
                Tree::Bin(bytes) => {
                    out.extend_from_slice(
                        format!(r#"{{"_placeholder":true,"num":{}}}"#, attachments.len())
                            .as_bytes(),
                    );
                    attachments.push(Bytes::copy_from_slice(bytes));
                }
                Tree::Array(items) => {
                    out.push(b'[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        item.write(out, attachments);
                    }
                    out.push(b']');
                }
                Tree::Object(entries) => {
                    out.push(b'{');
                    for (i, (key, value)) in entries.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        json::write_str(out, key);
                        out.push(b':');
                        value.write(out, attachments);
                    }
                    out.push(b'}');
                }
            }
        }
    }

    fn arb_tree() -> impl Strategy<Value = Tree> {
        let leaf = prop_oneof![
            Just(Tree::Null),
            any::<bool>().prop_map(Tree::Bool),
            any::<i64>().prop_map(Tree::Int),
            any::<u64>().prop_map(Tree::UInt),
            ".*".prop_map(Tree::Str),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(Tree::Bin),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Tree::Array),
                prop::collection::vec((".*", inner), 0..6).prop_map(Tree::Object),
            ]
        })
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec((".*", inner), 0..6)
                    .prop_map(|entries| serde_json::Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_without_floats_round_trips(value in arb_json()) {
            let text = serde_json::to_string(&value).unwrap();
            let encoded = encode_value(text.as_bytes(), &[]).unwrap();
            let (back, attachments) = value_json(&encoded).unwrap();
            prop_assert_eq!(back, text);
            prop_assert!(attachments.is_empty());
        }

        #[test]
        fn events_with_binary_round_trip(name in ".*", args in prop::collection::vec(arb_tree(), 0..5)) {
            let mut json_args = Vec::new();
            let mut attachments = Vec::new();
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    json_args.push(b',');
                }
                arg.write(&mut json_args, &mut attachments);
            }
            let encoded = encode_event(&name, &json_args, &attachments).unwrap();
            let event = decode_event(read(&encoded).unwrap()).unwrap();
            prop_assert_eq!(&event.name, &name);
            prop_assert_eq!(event.count, args.len());
            prop_assert_eq!(String::from_utf8(event.args).unwrap(), String::from_utf8(json_args).unwrap());
            prop_assert_eq!(event.attachments, attachments);
        }

        #[test]
        fn floats_read_back_as_the_same_double(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let (text, _) = value_json(&write(&Value::F64(f))).unwrap();
            let back: f64 = text.parse().unwrap();
            prop_assert_eq!(back.to_bits(), if f == 0.0 { 0 } else { f.to_bits() }, "{}", text);
            // And once written as JavaScript writes it, the text is stable.
            let again = value_json(&encode_value(text.as_bytes(), &[]).unwrap()).unwrap().0;
            prop_assert_eq!(again, text);
        }

        #[test]
        fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
            if let Ok(value) = read(&bytes) {
                let _ = decode_value(value.clone());
                let _ = decode_event(value);
            }
        }
    }
}
