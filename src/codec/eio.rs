//! Engine.IO packets and HTTP long-polling payloads, protocol v4 (EIO=4) and v3 (EIO=3).
//!
//! Decoders take complete inputs (a WebSocket message or a whole POST body) and return packets
//! that borrow from them where possible; encoders write into caller-owned buffers. Pure: no I/O,
//! no clock, no session state; depends only on `codec::frame` and `codec::json`.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;

use crate::codec::frame::{Frame, FrameKind};
use crate::codec::json;

/// Which Engine.IO protocol revision a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// EIO=3: length-prefixed polling payloads, client-driven heartbeat.
    V3,
    /// EIO=4: record-separated polling payloads, server-driven heartbeat.
    V4,
}

/// Engine.IO packet types, in the spec's order (the wire digit is the discriminant).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Server handshake.
    Open = 0,
    /// Close the session.
    Close,
    /// Heartbeat ping (or upgrade probe).
    Ping,
    /// Heartbeat pong.
    Pong,
    /// A message.
    Message,
    /// Complete an upgrade.
    Upgrade,
    /// Nothing (releases a pending poll).
    Noop,
}

impl PacketType {
    /// The packet type for a wire digit (`b'0'`..=`b'6'`).
    pub fn from_digit(digit: u8) -> Option<PacketType> {
        Some(match digit {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }

    /// The wire digit (`b'0'`..=`b'6'`).
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }
}

/// The polling payload separator of EIO=4 (ASCII record separator).
pub const RECORD_SEPARATOR: u8 = 0x1e;
/// Prefix of a base64-encoded binary packet inside a text payload (`bAQID` / v3 `b4AQID`).
pub const BASE64_PREFIX: u8 = b'b';
/// EIO=3 text payload: separator between a packet's length and the packet.
pub const V3_LENGTH_END: u8 = b':';
/// EIO=3 binary (XHR2) payload: marker of a string packet.
pub const V3_BINARY_STRING: u8 = 0;
/// EIO=3 binary (XHR2) payload: marker of a binary packet.
pub const V3_BINARY_BINARY: u8 = 1;
/// EIO=3 binary (XHR2) payload: end of the length digits.
pub const V3_BINARY_LENGTH_END: u8 = 0xff;
/// Longest length field accepted in a v3 payload; more digits than this is garbage (and would
/// overflow).
const MAX_LENGTH_DIGITS: usize = 12;

/// A decoded Engine.IO packet. Text data is valid UTF-8 and, for text inputs, a zero-copy slice
/// of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0` + handshake JSON (only ever sent by servers).
    Open(Bytes),
    /// `1`.
    Close,
    /// `2` + optional data (`2probe`).
    Ping(Bytes),
    /// `3` + optional data (`3probe`).
    Pong(Bytes),
    /// `4` + UTF-8 text: the text after the `4`.
    Message(Bytes),
    /// A binary message: the raw bytes.
    Binary(Bytes),
    /// `5`.
    Upgrade,
    /// `6`.
    Noop,
}

/// Why an Engine.IO input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EioError {
    /// An empty packet or payload.
    Empty,
    /// A type digit (or v3 binary type byte) that is not a known packet type.
    UnknownType,
    /// A `b...` packet whose base64 does not decode.
    InvalidBase64,
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// A v3 length that is too large, too long, or disagrees with the data.
    BadLength,
    /// A v3 payload whose structure is broken (missing `:`, bad marker byte, missing 0xFF).
    BadFraming,
    /// An `application/octet-stream` body on an EIO=4 session (only v3 has binary payloads).
    BinaryBodyNotAllowed,
}

impl fmt::Display for EioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EioError::Empty => "empty Engine.IO packet or payload",
            EioError::UnknownType => "unknown Engine.IO packet type",
            EioError::InvalidBase64 => "invalid base64 in a binary Engine.IO packet",
            EioError::InvalidUtf8 => "Engine.IO text is not UTF-8",
            EioError::BadLength => "bad Engine.IO payload length",
            EioError::BadFraming => "malformed Engine.IO payload",
            EioError::BinaryBodyNotAllowed => "binary polling payload on an EIO=4 session",
        })
    }
}

impl std::error::Error for EioError {}

/// Base64 as engine.io clients write it; decoding tolerates missing padding and stray trailing
/// bits, as the JavaScript decoders do.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes one text packet: a WebSocket text frame or one packet of a payload, e.g. `4hello`,
/// `2probe`, `5`, `1`, `6`.
///
/// Validates UTF-8 (cheap, and it keeps every `Message` safe to treat as text). Base64 binary
/// packets (`b...`) depend on the protocol version and are refused here as
/// `EioError::UnknownType`; use [`decode_ws_text`] when a `b` packet is acceptable. Data
/// after the type of `1`, `5` and `6` is ignored, as the reference does.
pub fn decode_text(packet: Bytes) -> Result<Packet, EioError> {
    std::str::from_utf8(&packet).map_err(|_| EioError::InvalidUtf8)?;
    decode_typed(packet)
}

/// Decodes a WebSocket text frame, accepting base64 binary packets in the framing of
/// `version` (`bAQID` for v4, `b4AQID` for v3: clients forced to base64 send those).
pub fn decode_ws_text(packet: Bytes, version: Version) -> Result<Packet, EioError> {
    std::str::from_utf8(&packet).map_err(|_| EioError::InvalidUtf8)?;
    decode_text_valid(packet, version)
}

/// Decodes a WebSocket binary frame. v4: the whole frame is the message. v3: the first byte is
/// the packet type and must be 4 (message); the rest is the message.
pub fn decode_ws_binary(data: Bytes, version: Version) -> Result<Packet, EioError> {
    match version {
        Version::V4 => Ok(Packet::Binary(data)),
        Version::V3 => decode_v3_binary_packet(data),
    }
}

/// Decodes a polling POST body into its packets.
///
/// - v4: packets separated by 0x1E; `b<base64>` is a binary message.
/// - v3, text body (`binary_body` false): `<len>:<packet>` repeated, `len` in UTF-16 code units
///   of the packet; `b4<base64>` is a binary message; a `0:` entry is skipped, as the reference
///   does.
/// - v3, binary body (`binary_body` true, Content-Type application/octet-stream): per packet a
///   marker byte 0 (string) or 1 (binary), the length as one byte per decimal digit, 0xFF, then
///   the packet (a UTF-8 text packet, or a type byte and raw bytes).
///
/// Text packets are zero-copy slices of `body`. The packet count is bounded by the body size
/// (every packet costs at least one byte).
pub fn decode_payload(
    body: Bytes,
    version: Version,
    binary_body: bool,
) -> Result<Vec<Packet>, EioError> {
    if body.is_empty() {
        return Err(EioError::Empty);
    }
    match (version, binary_body) {
        (Version::V4, true) => Err(EioError::BinaryBodyNotAllowed),
        (Version::V4, false) => decode_v4_payload(body),
        (Version::V3, false) => decode_v3_text_payload(body),
        (Version::V3, true) => decode_v3_binary_payload(body),
    }
}

/// The Content-Type of a polling response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// Text payloads (v4, and v3 without binary packets or with base64).
    TextPlain,
    /// v3 binary (XHR2) payloads.
    OctetStream,
}

impl ContentType {
    /// The header value.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContentType::TextPlain => "text/plain; charset=UTF-8",
            ContentType::OctetStream => "application/octet-stream",
        }
    }
}

/// Appends queued frames to `out` as one polling response body and says which Content-Type it
/// needs.
///
/// - v4: text packets as they are, binary as `b` + base64, joined by 0x1E.
/// - v3 with `supports_binary` (the handshake had no `b64=1`) and at least one binary frame:
///   the binary (XHR2) format (string packet: 0, digits of its UTF-8 byte length, 0xFF, bytes;
///   binary: 1, digits of 1 + length, 0xFF, 4, raw bytes).
/// - v3 otherwise: `<len>:<packet>`, `len` in UTF-16 code units; binary as `b4` + base64.
pub fn encode_payload<'a>(
    frames: impl IntoIterator<Item = &'a Frame>,
    version: Version,
    supports_binary: bool,
    out: &mut Vec<u8>,
) -> ContentType {
    match version {
        Version::V4 => {
            for (i, frame) in frames.into_iter().enumerate() {
                if i > 0 {
                    out.push(RECORD_SEPARATOR);
                }
                match frame.kind() {
                    FrameKind::Text => out.extend_from_slice(frame.payload_slice()),
                    FrameKind::Binary => {
                        out.push(BASE64_PREFIX);
                        push_base64(out, frame.payload_slice());
                    }
                }
            }
            ContentType::TextPlain
        }
        Version::V3 => {
            // The format depends on the whole batch; v3 is legacy, so one small Vec is fine.
            let frames: Vec<&Frame> = frames.into_iter().collect();
            let any_binary = frames.iter().any(|f| f.kind() == FrameKind::Binary);
            if supports_binary && any_binary {
                for frame in frames {
                    encode_v3_binary_entry(frame, out);
                }
                ContentType::OctetStream
            } else {
                for frame in frames {
                    encode_v3_text_entry(frame, out);
                }
                ContentType::TextPlain
            }
        }
    }
}

/// The open packet text: `0{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,
/// "maxPayload":..}`, exactly these keys in this order; `upgrades` is `["websocket"]` when
/// `can_upgrade`, else `[]`.
pub fn open_packet(
    sid: &str,
    can_upgrade: bool,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + sid.len());
    out.push(PacketType::Open.digit());
    out.extend_from_slice(b"{\"sid\":");
    json::write_str(&mut out, sid);
    out.extend_from_slice(if can_upgrade {
        b",\"upgrades\":[\"websocket\"]"
    } else {
        b",\"upgrades\":[]"
    });
    out.extend_from_slice(b",\"pingInterval\":");
    push_decimal(&mut out, ping_interval_ms);
    out.extend_from_slice(b",\"pingTimeout\":");
    push_decimal(&mut out, ping_timeout_ms);
    out.extend_from_slice(b",\"maxPayload\":");
    push_decimal(&mut out, max_payload);
    out.push(b'}');
    out
}

/// UTF-16 length of UTF-8 bytes (JavaScript's `string.length` of their text): every byte but
/// continuation bytes starts a code point, and 4-byte sequences (lead byte >= 0xF0) need a
/// surrogate pair. Total on any input, exact on valid UTF-8.
fn utf16_len_bytes(bytes: &[u8]) -> usize {
    if bytes.is_ascii() {
        return bytes.len();
    }
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0xbf => 0,
            0xf0..=0xff => 2,
            _ => 1,
        })
        .sum()
}

/// How many bytes of `text` (valid UTF-8, starting at a character boundary) make up the first
/// `units` UTF-16 code units; `None` if `text` is too short or the count splits a surrogate
/// pair.
fn utf16_prefix_bytes(text: &[u8], units: usize) -> Option<usize> {
    if text.get(..units).is_some_and(<[u8]>::is_ascii) {
        return Some(units);
    }
    let mut bytes = 0;
    let mut counted = 0;
    while counted < units {
        let (width, code_units) = match *text.get(bytes)? {
            0x00..=0x7f => (1, 1),
            0xc0..=0xdf => (2, 1),
            0xe0..=0xef => (3, 1),
            _ => (4, 2),
        };
        bytes += width;
        counted += code_units;
    }
    (counted == units && bytes <= text.len()).then_some(bytes)
}

/// A text packet known to be UTF-8, with `b` packets in the framing of `version`.
fn decode_text_valid(packet: Bytes, version: Version) -> Result<Packet, EioError> {
    if packet.first() != Some(&BASE64_PREFIX) {
        return decode_typed(packet);
    }
    let encoded = match version {
        Version::V4 => packet.get(1..),
        Version::V3 => match packet.get(1) {
            Some(&digit) if PacketType::from_digit(digit) == Some(PacketType::Message) => {
                packet.get(2..)
            }
            // Other types in base64 are never sent by real clients.
            _ => return Err(EioError::UnknownType),
        },
    };
    let raw = LENIENT_BASE64
        .decode(encoded.unwrap_or_default())
        .map_err(|_| EioError::InvalidBase64)?;
    Ok(Packet::Binary(Bytes::from(raw)))
}

/// `<type digit><data>`, known to be UTF-8 (so any slice after the ASCII digit is UTF-8 too).
fn decode_typed(packet: Bytes) -> Result<Packet, EioError> {
    let digit = *packet.first().ok_or(EioError::Empty)?;
    let kind = PacketType::from_digit(digit).ok_or(EioError::UnknownType)?;
    let data = || packet.slice(1..);
    Ok(match kind {
        PacketType::Open => Packet::Open(data()),
        PacketType::Close => Packet::Close,
        PacketType::Ping => Packet::Ping(data()),
        PacketType::Pong => Packet::Pong(data()),
        PacketType::Message => Packet::Message(data()),
        PacketType::Upgrade => Packet::Upgrade,
        PacketType::Noop => Packet::Noop,
    })
}

/// A v3 binary packet: type byte 4, then the message.
fn decode_v3_binary_packet(data: Bytes) -> Result<Packet, EioError> {
    match data.first() {
        None => Err(EioError::Empty),
        Some(&kind) if kind == PacketType::Message as u8 => Ok(Packet::Binary(data.slice(1..))),
        Some(_) => Err(EioError::UnknownType),
    }
}

fn decode_v4_payload(body: Bytes) -> Result<Vec<Packet>, EioError> {
    std::str::from_utf8(&body).map_err(|_| EioError::InvalidUtf8)?;
    let mut packets = Vec::with_capacity(1);
    let mut start = 0;
    loop {
        let rest = body.get(start..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&b| b == RECORD_SEPARATOR)
            .map_or(body.len(), |i| start + i);
        packets.push(decode_text_valid(body.slice(start..end), Version::V4)?);
        if end == body.len() {
            return Ok(packets);
        }
        start = end + 1;
    }
}

/// Parses up to [`MAX_LENGTH_DIGITS`] digits (each already converted to 0..=9).
fn digits_value(digits: impl Iterator<Item = u8>) -> Result<usize, EioError> {
    let mut value: usize = 0;
    for (i, digit) in digits.enumerate() {
        if i >= MAX_LENGTH_DIGITS {
            return Err(EioError::BadLength);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(digit)))
            .ok_or(EioError::BadLength)?;
    }
    Ok(value)
}

fn decode_v3_text_payload(body: Bytes) -> Result<Vec<Packet>, EioError> {
    std::str::from_utf8(&body).map_err(|_| EioError::InvalidUtf8)?;
    let mut packets = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < body.len() {
        let rest = body.get(pos..).unwrap_or_default();
        let colon = rest
            .iter()
            .position(|&b| b == V3_LENGTH_END)
            .ok_or(EioError::BadFraming)?;
        let digits = rest.get(..colon).unwrap_or_default();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(EioError::BadFraming);
        }
        let units = digits_value(digits.iter().map(|d| d - b'0'))?;
        let start = pos + colon + 1;
        let text = body.get(start..).unwrap_or_default();
        let len = utf16_prefix_bytes(text, units).ok_or(EioError::BadLength)?;
        if len > 0 {
            packets.push(decode_text_valid(
                body.slice(start..start + len),
                Version::V3,
            )?);
        }
        pos = start + len;
    }
    Ok(packets)
}

fn decode_v3_binary_payload(body: Bytes) -> Result<Vec<Packet>, EioError> {
    let mut packets = Vec::with_capacity(1);
    let mut pos = 0;
    while let Some(&marker) = body.get(pos) {
        if marker != V3_BINARY_STRING && marker != V3_BINARY_BINARY {
            return Err(EioError::BadFraming);
        }
        let rest = body.get(pos + 1..).unwrap_or_default();
        let end_of_length = rest
            .iter()
            .take(MAX_LENGTH_DIGITS + 1)
            .position(|&b| b == V3_BINARY_LENGTH_END)
            .ok_or(EioError::BadFraming)?;
        let digits = rest.get(..end_of_length).unwrap_or_default();
        if digits.is_empty() || digits.iter().any(|&d| d > 9) {
            return Err(EioError::BadFraming);
        }
        let len = digits_value(digits.iter().copied())?;
        let start = pos + 1 + end_of_length + 1;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= body.len())
            .ok_or(EioError::BadLength)?;
        let packet = body.slice(start..end);
        packets.push(if marker == V3_BINARY_STRING {
            std::str::from_utf8(&packet).map_err(|_| EioError::InvalidUtf8)?;
            decode_text_valid(packet, Version::V3)?
        } else {
            decode_v3_binary_packet(packet)?
        });
        pos = end;
    }
    Ok(packets)
}

fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    // `encode_string` needs a String; writing through a slice avoids a copy.
    let start = out.len();
    let encoded_len = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + encoded_len, 0);
    if let Some(target) = out.get_mut(start..) {
        let written = STANDARD.encode_slice(data, target).unwrap_or(0);
        out.truncate(start + written);
    }
}

/// Writes `value` in decimal ASCII.
fn push_decimal(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 20];
    let count = decimal_digits(value, &mut digits);
    out.extend(digits.iter().skip(digits.len() - count).map(|d| b'0' + d));
}

/// Fills the tail of `buf` with the decimal digits of `value` (as 0..=9) and returns how many.
fn decimal_digits(mut value: u64, buf: &mut [u8; 20]) -> usize {
    let mut count = 0;
    for slot in buf.iter_mut().rev() {
        *slot = (value % 10) as u8;
        value /= 10;
        count += 1;
        if value == 0 {
            break;
        }
    }
    count
}

/// Writes the length digits of an XHR2 entry, one byte per digit, and the 0xFF terminator.
fn push_binary_length(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 20];
    let count = decimal_digits(len as u64, &mut digits);
    out.extend_from_slice(digits.get(digits.len() - count..).unwrap_or_default());
    out.push(V3_BINARY_LENGTH_END);
}

fn encode_v3_binary_entry(frame: &Frame, out: &mut Vec<u8>) {
    let payload = frame.payload_slice();
    match frame.kind() {
        FrameKind::Text => {
            out.push(V3_BINARY_STRING);
            push_binary_length(out, payload.len());
        }
        FrameKind::Binary => {
            out.push(V3_BINARY_BINARY);
            push_binary_length(out, payload.len() + 1);
            out.push(PacketType::Message as u8);
        }
    }
    out.extend_from_slice(payload);
}

fn encode_v3_text_entry(frame: &Frame, out: &mut Vec<u8>) {
    let payload = frame.payload_slice();
    match frame.kind() {
        FrameKind::Text => {
            push_decimal(out, utf16_len_bytes(payload) as u64);
            out.push(V3_LENGTH_END);
            out.extend_from_slice(payload);
        }
        FrameKind::Binary => {
            // `b4` + base64 is ASCII, so its length in UTF-16 units is its byte length.
            let encoded_len = base64::encoded_len(payload.len(), true).unwrap_or(0);
            push_decimal(out, (encoded_len + 2) as u64);
            out.push(V3_LENGTH_END);
            out.push(BASE64_PREFIX);
            out.push(PacketType::Message.digit());
            push_base64(out, payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Input body, expected packets.
    type PayloadCase = (&'static [u8], Result<Vec<Packet>, EioError>);
    /// Frames, version, supports_binary, expected body, expected content type.
    type EncodeCase = (Vec<Frame>, Version, bool, &'static [u8], ContentType);

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    fn msg(s: &'static str) -> Packet {
        Packet::Message(Bytes::from_static(s.as_bytes()))
    }

    fn bin(s: &'static [u8]) -> Packet {
        Packet::Binary(Bytes::from_static(s))
    }

    #[test]
    fn packet_type_digits() {
        for (digit, kind) in (b'0'..).zip([
            PacketType::Open,
            PacketType::Close,
            PacketType::Ping,
            PacketType::Pong,
            PacketType::Message,
            PacketType::Upgrade,
            PacketType::Noop,
        ]) {
            assert_eq!(PacketType::from_digit(digit), Some(kind));
            assert_eq!(kind.digit(), digit);
        }
        assert_eq!(PacketType::from_digit(b'7'), None);
        assert_eq!(PacketType::from_digit(b'b'), None);
    }

    #[test]
    fn decode_text_table() {
        let table: &[(&'static [u8], Result<Packet, EioError>)] = &[
            (b"4hello", Ok(msg("hello"))),
            (b"4", Ok(msg(""))),
            ("4é€😀".as_bytes(), Ok(msg("é€😀"))),
            (b"2", Ok(Packet::Ping(Bytes::new()))),
            (b"2probe", Ok(Packet::Ping(b(b"probe")))),
            (b"3", Ok(Packet::Pong(Bytes::new()))),
            (b"3probe", Ok(Packet::Pong(b(b"probe")))),
            (b"0{\"sid\":\"x\"}", Ok(Packet::Open(b(b"{\"sid\":\"x\"}")))),
            (b"1", Ok(Packet::Close)),
            (b"5", Ok(Packet::Upgrade)),
            (b"6", Ok(Packet::Noop)),
            (b"6junk", Ok(Packet::Noop)),
            (b"", Err(EioError::Empty)),
            (b"abc", Err(EioError::UnknownType)),
            (b"7", Err(EioError::UnknownType)),
            (b"bAQIDBA==", Err(EioError::UnknownType)),
            (b"4\xff", Err(EioError::InvalidUtf8)),
            (b"4\xc3", Err(EioError::InvalidUtf8)),
        ];
        for (input, expected) in table {
            assert_eq!(decode_text(b(input)), *expected, "{input:?}");
        }
    }

    #[test]
    fn decode_ws_text_table() {
        let table: &[(&'static [u8], Version, Result<Packet, EioError>)] = &[
            (b"4hello", Version::V4, Ok(msg("hello"))),
            (b"4hello", Version::V3, Ok(msg("hello"))),
            (b"bAQIDBA==", Version::V4, Ok(bin(&[1, 2, 3, 4]))),
            (b"bAQIDBA", Version::V4, Ok(bin(&[1, 2, 3, 4]))),
            (b"b", Version::V4, Ok(bin(&[]))),
            (b"b4AQIDBA==", Version::V3, Ok(bin(&[1, 2, 3, 4]))),
            (b"b4", Version::V3, Ok(bin(&[]))),
            (b"b2AQ==", Version::V3, Err(EioError::UnknownType)),
            (b"b", Version::V3, Err(EioError::UnknownType)),
            (b"b!!", Version::V4, Err(EioError::InvalidBase64)),
            (b"b4A", Version::V3, Err(EioError::InvalidBase64)),
            (b"abc", Version::V3, Err(EioError::UnknownType)),
            (b"", Version::V4, Err(EioError::Empty)),
            (b"b\xff", Version::V4, Err(EioError::InvalidUtf8)),
        ];
        for (input, version, expected) in table {
            assert_eq!(
                decode_ws_text(b(input), *version),
                *expected,
                "{input:?} {version:?}"
            );
        }
    }

    #[test]
    fn decode_ws_binary_table() {
        let table: &[(&'static [u8], Version, Result<Packet, EioError>)] = &[
            (&[1, 2, 3, 4], Version::V4, Ok(bin(&[1, 2, 3, 4]))),
            (&[], Version::V4, Ok(bin(&[]))),
            (&[4, 1, 2, 3, 4], Version::V4, Ok(bin(&[4, 1, 2, 3, 4]))),
            (&[4, 1, 2, 3, 4], Version::V3, Ok(bin(&[1, 2, 3, 4]))),
            (&[4], Version::V3, Ok(bin(&[]))),
            (&[1, 2, 3, 4], Version::V3, Err(EioError::UnknownType)),
            (&[], Version::V3, Err(EioError::Empty)),
        ];
        for (input, version, expected) in table {
            assert_eq!(
                decode_ws_binary(b(input), *version),
                *expected,
                "{input:?} {version:?}"
            );
        }
    }

    #[test]
    fn decode_payload_v4_table() {
        let table: &[PayloadCase] = &[
            (b"4hello", Ok(vec![msg("hello")])),
            (
                b"4test1\x1e4test2\x1e4test3",
                Ok(vec![msg("test1"), msg("test2"), msg("test3")]),
            ),
            (
                b"4hello\x1ebAQIDBA==",
                Ok(vec![msg("hello"), bin(&[1, 2, 3, 4])]),
            ),
            (b"3", Ok(vec![Packet::Pong(Bytes::new())])),
            (b"1", Ok(vec![Packet::Close])),
            (
                "4é€😀\x1e2".as_bytes(),
                Ok(vec![msg("é€😀"), Packet::Ping(Bytes::new())]),
            ),
            (b"", Err(EioError::Empty)),
            (b"abc", Err(EioError::UnknownType)),
            (b"4a\x1e", Err(EioError::Empty)),
            (b"\x1e4a", Err(EioError::Empty)),
            (b"4a\x1e\x1e4b", Err(EioError::Empty)),
            (b"4a\x1eb!!", Err(EioError::InvalidBase64)),
            (b"4\xff", Err(EioError::InvalidUtf8)),
            // v3 framing on a v4 session: `6` is a noop whose data is ignored, as in the
            // reference; `2:4` is a ping with data; `9:...` is not a packet at all.
            (b"6:4hello", Ok(vec![Packet::Noop])),
            (b"2:4", Ok(vec![Packet::Ping(b(b":4"))])),
            (b"9:4hello", Err(EioError::UnknownType)),
        ];
        for (input, expected) in table {
            assert_eq!(
                decode_payload(b(input), Version::V4, false),
                *expected,
                "{input:?}"
            );
        }
        assert_eq!(
            decode_payload(b(b"4hello"), Version::V4, true),
            Err(EioError::BinaryBodyNotAllowed)
        );
    }

    #[test]
    fn decode_payload_v3_text_table() {
        let table: &[PayloadCase] = &[
            (b"6:4hello", Ok(vec![msg("hello")])),
            (
                b"6:4test16:4test26:4test3",
                Ok(vec![msg("test1"), msg("test2"), msg("test3")]),
            ),
            (
                b"6:4hello10:b4AQIDBA==",
                Ok(vec![msg("hello"), bin(&[1, 2, 3, 4])]),
            ),
            (b"1:2", Ok(vec![Packet::Ping(Bytes::new())])),
            (b"1:1", Ok(vec![Packet::Close])),
            (b"6:2probe", Ok(vec![Packet::Ping(b(b"probe"))])),
            ("5:4é€😀".as_bytes(), Ok(vec![msg("é€😀")])),
            ("3:4😀1:6".as_bytes(), Ok(vec![msg("😀"), Packet::Noop])),
            (b"06:4hello", Ok(vec![msg("hello")])),
            (b"0:1:6", Ok(vec![Packet::Noop])),
            (b"0:", Ok(vec![])),
            (b"", Err(EioError::Empty)),
            (b"abc", Err(EioError::BadFraming)),
            (b":4a", Err(EioError::BadFraming)),
            (b"x:4a", Err(EioError::BadFraming)),
            (b"6:4hello6", Err(EioError::BadFraming)),
            (b"7:4hello", Err(EioError::BadLength)),
            (b"5:4hello", Err(EioError::BadFraming)),
            (b"5:abcde", Err(EioError::UnknownType)),
            (b"99999999999999999999:4", Err(EioError::BadLength)),
            // Two units would split the surrogate pair of 😀.
            ("2:4😀".as_bytes(), Err(EioError::BadLength)),
            (b"3:abc", Err(EioError::UnknownType)),
            (b"3:b4!", Err(EioError::InvalidBase64)),
            (b"6:b2AQID", Err(EioError::UnknownType)),
            (b"2:4\xff", Err(EioError::InvalidUtf8)),
        ];
        for (input, expected) in table {
            assert_eq!(
                decode_payload(b(input), Version::V3, false),
                *expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn decode_payload_v3_binary_table() {
        let table: &[PayloadCase] = &[
            (
                &[
                    0, 6, 255, b'4', b'h', b'e', b'l', b'l', b'o', 1, 5, 255, 4, 1, 2, 3, 4,
                ],
                Ok(vec![msg("hello"), bin(&[1, 2, 3, 4])]),
            ),
            (&[0, 1, 255, b'2'], Ok(vec![Packet::Ping(Bytes::new())])),
            (&[1, 1, 255, 4], Ok(vec![bin(&[])])),
            (
                &[0, 0, 6, 255, b'4', b'h', b'e', b'l', b'l', b'o'],
                Ok(vec![msg("hello")]),
            ),
            (&[2, 1, 255, b'2'], Err(EioError::BadFraming)),
            (&[0, 1, b'2'], Err(EioError::BadFraming)),
            (&[0, 255, b'2'], Err(EioError::BadFraming)),
            (&[0, 10, 255, b'2'], Err(EioError::BadFraming)),
            (&[0, 2, 255, b'2'], Err(EioError::BadLength)),
            (&[0, 1, 255, b'a'], Err(EioError::UnknownType)),
            (&[0, 2, 255, b'4', 0xff], Err(EioError::InvalidUtf8)),
            (&[1, 2, 255, 2, 9], Err(EioError::UnknownType)),
            (&[0, 0, 255], Err(EioError::Empty)),
            (&[1, 0, 255], Err(EioError::Empty)),
            (&[0, 1, 255, b'2', 7], Err(EioError::BadFraming)),
            (&[], Err(EioError::Empty)),
            (
                &[0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 255],
                Err(EioError::BadFraming),
            ),
            (
                &[0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 255],
                Err(EioError::BadLength),
            ),
        ];
        for (input, expected) in table {
            assert_eq!(
                decode_payload(b(input), Version::V3, true),
                *expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn text_packets_are_zero_copy() {
        let body = b(b"4test1\x1e4test2");
        let packets = decode_payload(body.clone(), Version::V4, false).unwrap();
        let Packet::Message(first) = &packets[0] else {
            panic!("not a message")
        };
        assert_eq!(first.as_ptr(), body[1..].as_ptr());
        let body = b(b"6:4hello");
        let packets = decode_payload(body.clone(), Version::V3, false).unwrap();
        let Packet::Message(first) = &packets[0] else {
            panic!("not a message")
        };
        assert_eq!(first.as_ptr(), body[3..].as_ptr());
    }

    fn frames(list: &[(&str, bool)]) -> Vec<Frame> {
        list.iter()
            .map(|(data, binary)| {
                if *binary {
                    Frame::binary(data.as_bytes())
                } else {
                    Frame::text(data.as_bytes())
                }
            })
            .collect()
    }

    #[test]
    fn encode_payload_conformance_examples() {
        let hello_and_binary = vec![Frame::text(b"4hello"), Frame::binary(&[1, 2, 3, 4])];
        let table: Vec<EncodeCase> = vec![
            (
                frames(&[("4hello", false)]),
                Version::V4,
                true,
                b"4hello",
                ContentType::TextPlain,
            ),
            (
                frames(&[("4test1", false), ("4test2", false), ("4test3", false)]),
                Version::V4,
                true,
                b"4test1\x1e4test2\x1e4test3",
                ContentType::TextPlain,
            ),
            (
                hello_and_binary.clone(),
                Version::V4,
                true,
                b"4hello\x1ebAQIDBA==",
                ContentType::TextPlain,
            ),
            (
                frames(&[("2", false)]),
                Version::V4,
                true,
                b"2",
                ContentType::TextPlain,
            ),
            (
                frames(&[("4hello", false)]),
                Version::V3,
                true,
                b"6:4hello",
                ContentType::TextPlain,
            ),
            (
                frames(&[("4test1", false), ("4test2", false), ("4test3", false)]),
                Version::V3,
                true,
                b"6:4test16:4test26:4test3",
                ContentType::TextPlain,
            ),
            (
                frames(&[("4é€😀", false)]),
                Version::V3,
                true,
                "5:4é€😀".as_bytes(),
                ContentType::TextPlain,
            ),
            (
                frames(&[("3", false)]),
                Version::V3,
                true,
                b"1:3",
                ContentType::TextPlain,
            ),
            (
                frames(&[("6", false)]),
                Version::V3,
                false,
                b"1:6",
                ContentType::TextPlain,
            ),
            (
                hello_and_binary.clone(),
                Version::V3,
                false,
                b"6:4hello10:b4AQIDBA==",
                ContentType::TextPlain,
            ),
            (
                hello_and_binary,
                Version::V3,
                true,
                &[
                    0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4,
                ],
                ContentType::OctetStream,
            ),
            (vec![], Version::V4, true, b"", ContentType::TextPlain),
        ];
        for (frames, version, supports_binary, expected, content_type) in table {
            let mut out = Vec::new();
            let got = encode_payload(&frames, version, supports_binary, &mut out);
            assert_eq!(out, expected, "{frames:?} {version:?} {supports_binary}");
            assert_eq!(got, content_type, "{frames:?} {version:?}");
        }
    }

    #[test]
    fn encode_payload_appends() {
        let mut out = b"x".to_vec();
        encode_payload(&[Frame::text(b"4a")], Version::V4, false, &mut out);
        assert_eq!(out, b"x4a");
    }

    #[test]
    fn encode_payload_long_lengths() {
        let text = format!("4{}", "é".repeat(1000));
        let mut out = Vec::new();
        encode_payload(&[Frame::text(text.as_bytes())], Version::V3, true, &mut out);
        assert_eq!(out, format!("1001:{text}").as_bytes());

        let data = vec![7u8; 1234];
        let mut out = Vec::new();
        encode_payload(&[Frame::binary(&data)], Version::V3, true, &mut out);
        assert_eq!(&out[..6], &[1, 1, 2, 3, 5, 255]);
        assert_eq!(out[6], 4);
        assert_eq!(&out[7..], &data[..]);
    }

    #[test]
    fn content_type_strings() {
        assert_eq!(ContentType::TextPlain.as_str(), "text/plain; charset=UTF-8");
        assert_eq!(
            ContentType::OctetStream.as_str(),
            "application/octet-stream"
        );
    }

    #[test]
    fn open_packet_is_exact() {
        assert_eq!(
            open_packet("abc", true, 25000, 20000, 1_000_000),
            br#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert_eq!(
            open_packet("a\"b", false, 300, 200, 0),
            br#"0{"sid":"a\"b","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":0}"#
        );
        let packet = open_packet("x", true, u64::MAX, 0, 1);
        let json: serde_json::Value = serde_json::from_slice(&packet[1..]).unwrap();
        assert_eq!(json["pingInterval"], u64::MAX);
    }

    #[test]
    fn utf16_lengths() {
        let table = [
            ("", 0),
            ("hello", 5),
            ("é", 1),
            ("€", 1),
            ("😀", 2),
            ("4é€😀", 5),
            ("\u{ffff}\u{10000}", 3),
            ("a\u{7f}\u{80}\u{7ff}\u{800}", 5),
        ];
        for (s, len) in table {
            assert_eq!(utf16_len_bytes(s.as_bytes()), len, "{s:?}");
            assert_eq!(
                utf16_len_bytes(s.as_bytes()),
                s.encode_utf16().count(),
                "{s:?}"
            );
        }
    }

    /// A queued frame for round trips: a text message or a binary message.
    fn arb_frame() -> impl Strategy<Value = (bool, Vec<u8>)> {
        prop_oneof![
            ".{0,12}".prop_map(|s: String| (false, s.into_bytes())),
            prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| (true, b)),
        ]
    }

    proptest! {
        #[test]
        fn payload_round_trips(
            list in prop::collection::vec(arb_frame(), 1..8),
            version in prop_oneof![Just(Version::V3), Just(Version::V4)],
            supports_binary in any::<bool>(),
        ) {
            let frames: Vec<Frame> = list
                .iter()
                .map(|(binary, data)| {
                    if *binary {
                        Frame::binary(data)
                    } else {
                        let mut packet = b"4".to_vec();
                        packet.extend_from_slice(data);
                        Frame::text(&packet)
                    }
                })
                .collect();
            let expected: Vec<Packet> = list
                .iter()
                .map(|(binary, data)| {
                    let data = Bytes::from(data.clone());
                    if *binary { Packet::Binary(data) } else { Packet::Message(data) }
                })
                .collect();
            let mut out = Vec::new();
            let content_type = encode_payload(&frames, version, supports_binary, &mut out);
            let binary_body = content_type == ContentType::OctetStream;
            prop_assert_eq!(
                binary_body,
                version == Version::V3 && supports_binary && list.iter().any(|(b, _)| *b)
            );
            prop_assert_eq!(decode_payload(Bytes::from(out), version, binary_body), Ok(expected));
        }

        #[test]
        fn utf16_len_matches_std(s in ".*") {
            prop_assert_eq!(utf16_len_bytes(s.as_bytes()), s.encode_utf16().count());
        }

        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
            let bytes = Bytes::from(bytes);
            let _ = decode_text(bytes.clone());
            for version in [Version::V3, Version::V4] {
                let _ = decode_ws_text(bytes.clone(), version);
                let _ = decode_ws_binary(bytes.clone(), version);
                let _ = decode_payload(bytes.clone(), version, false);
                let _ = decode_payload(bytes.clone(), version, true);
            }
        }

        #[test]
        fn structured_garbage_never_panics(
            parts in prop::collection::vec(
                prop_oneof![
                    Just(b"4".to_vec()), Just(b":".to_vec()), Just(vec![0x1e]), Just(vec![0xff]),
                    Just(b"b4".to_vec()), Just(vec![0]), Just(vec![1]), Just(vec![9]),
                    Just("😀".as_bytes().to_vec()), Just(b"12".to_vec()), Just(b"AQ==".to_vec()),
                ],
                0..16,
            ),
        ) {
            let bytes = Bytes::from(parts.concat());
            for version in [Version::V3, Version::V4] {
                let _ = decode_payload(bytes.clone(), version, false);
                let _ = decode_payload(bytes.clone(), version, true);
            }
        }
    }
}
