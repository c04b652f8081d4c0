//! Socket.IO packets (protocol v5, and v4 as spoken by EIO=3 clients) inside Engine.IO
//! messages, plus the assembler for binary attachments.
//!
//! The decoder splits the packet head (type, attachment count, namespace, ack id) and keeps the
//! JSON payload as a zero-copy slice after validating it the way socket.io-parser does. Pure: no
//! I/O, no sessions or namespaces; depends only on `codec::json`.

use std::fmt;
use std::io::Write;
use std::ops::Range;

use bytes::Bytes;

use crate::codec::json;

/// The main namespace.
pub const MAIN_NAMESPACE: &str = "/";
/// Separates the attachment count from the rest of a binary packet head (`52-`).
pub const ATTACHMENTS_END: u8 = b'-';
/// Ends a namespace that is not `/` (`2/chat,`).
pub const NAMESPACE_END: u8 = b',';
/// Starts the query a v2 client appends to a namespace (`0/chat?token=abc`).
pub const NAMESPACE_QUERY: u8 = b'?';
/// The largest ack id: JavaScript's `Number.MAX_SAFE_INTEGER` (2^53 - 1).
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;
/// Most digits accepted in an ack id.
pub const MAX_ACK_ID_DIGITS: usize = 16;
/// Event names a client may not emit (socket.io-parser refuses them).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Socket.IO packet types; the wire digit is the discriminant.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Join a namespace.
    Connect = 0,
    /// Leave a namespace.
    Disconnect,
    /// An event.
    Event,
    /// An acknowledgement.
    Ack,
    /// A refused CONNECT.
    ConnectError,
    /// An event with binary attachments.
    BinaryEvent,
    /// An acknowledgement with binary attachments.
    BinaryAck,
}

impl PacketType {
    /// The packet type for a wire digit (`b'0'`..=`b'6'`).
    pub fn from_digit(digit: u8) -> Option<PacketType> {
        Some(match digit {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The wire digit (`b'0'`..=`b'6'`).
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Whether binary attachments follow the packet (BINARY_EVENT, BINARY_ACK).
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// A decoded Socket.IO packet; every `Bytes` is a zero-copy slice of the input (except the
/// static `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Packet type.
    pub kind: PacketType,
    /// UTF-8 namespace, `/` when absent, without any `?query` suffix.
    pub nsp: Bytes,
    /// What followed `?` in the namespace (v2 clients: `40/custom?token=abc`); empty if none.
    pub query: Bytes,
    /// Declared attachment count (binary kinds only, else 0).
    pub attachments: usize,
    /// The ack id, if any.
    pub ack_id: Option<u64>,
    /// The raw JSON payload, possibly empty.
    pub data: Bytes,
    /// EVENT and ACK kinds: the byte ranges of the array's elements in `data`, found while
    /// validating it, so the layer above never scans the payload again. Empty otherwise.
    pub elements: Vec<Range<usize>>,
}

impl Packet {
    /// The namespace as text (validated UTF-8 by [`decode`]).
    pub fn nsp_str(&self) -> &str {
        std::str::from_utf8(&self.nsp).unwrap_or(MAIN_NAMESPACE)
    }
}

/// Why a Socket.IO packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioError {
    /// No packet type.
    Empty,
    /// The type is not a digit 0-6.
    UnknownType,
    /// A binary packet whose attachment count is missing, malformed, or contradicted by its
    /// placeholders.
    BadAttachments,
    /// More attachments than the caller allows.
    TooManyAttachments,
    /// A namespace that is not UTF-8.
    BadNamespace,
    /// An ack id above 2^53 - 1 or longer than 16 digits.
    BadAckId,
    /// A payload that is not JSON or not the shape its packet type requires.
    InvalidPayload,
}

impl fmt::Display for SioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SioError::Empty => "empty Socket.IO packet",
            SioError::UnknownType => "unknown Socket.IO packet type",
            SioError::BadAttachments => "bad Socket.IO attachment count",
            SioError::TooManyAttachments => "too many Socket.IO attachments",
            SioError::BadNamespace => "bad Socket.IO namespace",
            SioError::BadAckId => "bad Socket.IO ack id",
            SioError::InvalidPayload => "invalid Socket.IO payload",
        })
    }
}

impl std::error::Error for SioError {}

/// Decodes the text of an Engine.IO message (what follows the Engine.IO `4`), e.g.
/// `2/chat,12["ev",1]`, `40`, `40/custom`, `452-["m",{"_placeholder":true,"num":0}]`.
///
/// Head: type digit; for binary kinds `<count>-` (count <= `max_attachments`); a namespace
/// starting at `/` and ending at `,` or at the end of the input; an ack id (a run of ASCII
/// digits). The payload is validated as socket.io-parser's `isPayloadValid` does: CONNECT empty
/// or an object; DISCONNECT empty; CONNECT_ERROR a string or an object; EVENT and BINARY_EVENT a
/// non-empty array whose first element is a number or a non-reserved event name; ACK and
/// BINARY_ACK an array. For binary kinds every placeholder must also point at a declared
/// attachment (`SioError::BadAttachments` otherwise).
pub fn decode(text: Bytes, max_attachments: usize) -> Result<Packet, SioError> {
    let digit = *text.first().ok_or(SioError::Empty)?;
    let kind = PacketType::from_digit(digit).ok_or(SioError::UnknownType)?;
    let mut pos = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let count_digits = digit_run(text.get(pos..).unwrap_or_default());
        if count_digits == 0 || text.get(pos + count_digits) != Some(&ATTACHMENTS_END) {
            return Err(SioError::BadAttachments);
        }
        let digits = text.get(pos..pos + count_digits).unwrap_or_default();
        // More digits than any usize could hold can only be a lie about the count.
        attachments = parse_decimal(digits).ok_or(SioError::TooManyAttachments)?;
        if attachments > max_attachments {
            return Err(SioError::TooManyAttachments);
        }
        pos += count_digits + 1;
    }

    let mut nsp = Bytes::from_static(MAIN_NAMESPACE.as_bytes());
    let mut query = Bytes::new();
    if text.get(pos) == Some(&b'/') {
        let rest = text.get(pos..).unwrap_or_default();
        let nsp_len = rest
            .iter()
            .position(|&b| b == NAMESPACE_END)
            .unwrap_or(rest.len());
        let full = text.slice(pos..pos + nsp_len);
        std::str::from_utf8(&full).map_err(|_| SioError::BadNamespace)?;
        match full.iter().position(|&b| b == NAMESPACE_QUERY) {
            Some(q) => {
                nsp = full.slice(..q);
                query = full.slice(q + 1..);
            }
            None => nsp = full,
        }
        pos += nsp_len;
        if text.get(pos) == Some(&NAMESPACE_END) {
            pos += 1;
        }
    }

    let mut ack_id = None;
    let id_digits = digit_run(text.get(pos..).unwrap_or_default());
    if id_digits > 0 {
        if id_digits > MAX_ACK_ID_DIGITS {
            return Err(SioError::BadAckId);
        }
        let id = parse_decimal(text.get(pos..pos + id_digits).unwrap_or_default())
            .and_then(|id| u64::try_from(id).ok())
            .filter(|&id| id <= MAX_ACK_ID)
            .ok_or(SioError::BadAckId)?;
        ack_id = Some(id);
        pos += id_digits;
    }

    let data = text.slice(pos.min(text.len())..);
    let elements = validate_payload(kind, &data)?;
    if kind.is_binary() && !data.is_empty() {
        json::check_placeholders(&data, attachments).map_err(|_| SioError::BadAttachments)?;
    }
    Ok(Packet {
        kind,
        nsp,
        query,
        attachments,
        ack_id,
        data,
        elements,
    })
}

/// socket.io-parser's `isPayloadValid`, with an empty payload allowed only where the packet
/// type may have none; for EVENT and ACK kinds, the ranges of the array's elements.
pub fn validate_payload(kind: PacketType, data: &[u8]) -> Result<Vec<Range<usize>>, SioError> {
    let invalid = |_| SioError::InvalidPayload;
    let mut elements = Vec::new();
    let ok = match kind {
        PacketType::Connect => {
            data.is_empty() || {
                json::validate(data).map_err(invalid)?;
                json::is_object(data)
            }
        }
        PacketType::Disconnect => data.is_empty(),
        PacketType::ConnectError => {
            json::validate(data).map_err(invalid)?;
            json::is_string(data) || json::is_object(data)
        }
        PacketType::Event | PacketType::BinaryEvent => {
            elements = json::split_array(data).map_err(invalid)?;
            let first = elements.first().and_then(|range| data.get(range.clone()));
            match first.and_then(|first| first.first().map(|&b| (b, first))) {
                Some((b'"', name)) => {
                    let name = json::parse_str(name).map_err(invalid)?;
                    !RESERVED_EVENTS.contains(&name.as_ref())
                }
                Some((b'-' | b'0'..=b'9', _)) => true,
                _ => false,
            }
        }
        PacketType::Ack | PacketType::BinaryAck => {
            elements = json::split_array(data).map_err(invalid)?;
            true
        }
    };
    if ok {
        Ok(elements)
    } else {
        Err(SioError::InvalidPayload)
    }
}

/// Length of the run of ASCII digits at the start of `bytes`.
fn digit_run(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Parses ASCII digits; `None` on overflow.
fn parse_decimal(digits: &[u8]) -> Option<usize> {
    digits.iter().try_fold(0usize, |value, &d| {
        value
            .checked_mul(10)?
            .checked_add(usize::from(d.wrapping_sub(b'0')))
    })
}

/// Writes a packet: type digit, `<attachments>-` for binary kinds, `<nsp>,` unless the
/// namespace is `/` (or empty), the ack id, then `data`. The caller writes the Engine.IO `4`
/// first. Errors of `out` are ignored: every sink used here writes to memory.
pub fn encode(
    out: &mut impl Write,
    kind: PacketType,
    nsp: &str,
    attachments: usize,
    ack_id: Option<u64>,
    data: &[u8],
) {
    let _ = encode_checked(out, kind, nsp, attachments, ack_id, data);
}

fn encode_checked(
    out: &mut impl Write,
    kind: PacketType,
    nsp: &str,
    attachments: usize,
    ack_id: Option<u64>,
    data: &[u8],
) -> std::io::Result<()> {
    out.write_all(&[kind.digit()])?;
    if kind.is_binary() {
        write!(out, "{attachments}")?;
        out.write_all(&[ATTACHMENTS_END])?;
    }
    if !nsp.is_empty() && nsp != MAIN_NAMESPACE {
        out.write_all(nsp.as_bytes())?;
        out.write_all(&[NAMESPACE_END])?;
    }
    if let Some(id) = ack_id {
        write!(out, "{id}")?;
    }
    out.write_all(data)
}

/// Collects the binary attachments that follow a BINARY_EVENT or BINARY_ACK head, in order.
#[derive(Debug, Clone)]
pub struct Assembler {
    packet: Packet,
    attachments: Vec<Bytes>,
}

impl Assembler {
    /// Starts collecting the `packet.attachments` attachments of `packet`.
    pub fn new(packet: Packet) -> Assembler {
        // The count is bounded by the decoder's `max_attachments`; cap the up-front allocation
        // anyway.
        let attachments = Vec::with_capacity(packet.attachments.min(16));
        Assembler {
            packet,
            attachments,
        }
    }

    /// Adds the next attachment; returns true when all have arrived. Once complete, further
    /// attachments are dropped (callers check [`Assembler::is_complete`] first and treat an
    /// unexpected binary message as a protocol error).
    pub fn push(&mut self, attachment: Bytes) -> bool {
        if !self.is_complete() {
            self.attachments.push(attachment);
        }
        self.is_complete()
    }

    /// Whether every declared attachment has arrived.
    pub fn is_complete(&self) -> bool {
        self.attachments.len() >= self.packet.attachments
    }

    /// How many attachments are still missing.
    pub fn missing(&self) -> usize {
        self.packet
            .attachments
            .saturating_sub(self.attachments.len())
    }

    /// The packet head and its attachments, in arrival order.
    pub fn finish(self) -> (Packet, Vec<Bytes>) {
        (self.packet, self.attachments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 10;

    /// Type, namespace, attachments, ack id, data, expected text.
    type EncodeCase = (
        PacketType,
        &'static str,
        usize,
        Option<u64>,
        &'static str,
        &'static str,
    );

    fn packet(
        kind: PacketType,
        nsp: &'static str,
        query: &'static str,
        attachments: usize,
        ack_id: Option<u64>,
        data: &'static str,
    ) -> Packet {
        Packet {
            kind,
            nsp: Bytes::from_static(nsp.as_bytes()),
            query: Bytes::from_static(query.as_bytes()),
            attachments,
            ack_id,
            data: Bytes::from_static(data.as_bytes()),
            elements: match kind {
                PacketType::Event
                | PacketType::BinaryEvent
                | PacketType::Ack
                | PacketType::BinaryAck => json::split_array(data.as_bytes()).unwrap_or_default(),
                _ => Vec::new(),
            },
        }
    }

    fn decode_str(text: &'static str) -> Result<Packet, SioError> {
        decode(Bytes::from_static(text.as_bytes()), MAX)
    }

    const PLACEHOLDERS_2: &str =
        r#"["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    const ACK_PLACEHOLDERS_2: &str =
        r#"["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;

    #[test]
    fn decodes_valid_packets() {
        use PacketType::*;
        let table: Vec<(&'static str, Packet)> = vec![
            ("0", packet(Connect, "/", "", 0, None, "")),
            ("0{\"token\":\"123\"}", packet(Connect, "/", "", 0, None, "{\"token\":\"123\"}")),
            ("0/custom,", packet(Connect, "/custom", "", 0, None, "")),
            ("0/custom", packet(Connect, "/custom", "", 0, None, "")),
            ("0/random", packet(Connect, "/random", "", 0, None, "")),
            (
                "0/custom,{\"token\":\"abc\"}",
                packet(Connect, "/custom", "", 0, None, "{\"token\":\"abc\"}"),
            ),
            ("0/custom?token=abc", packet(Connect, "/custom", "token=abc", 0, None, "")),
            ("0/custom?token=abc,", packet(Connect, "/custom", "token=abc", 0, None, "")),
            ("0/?a=1&b=2", packet(Connect, "/", "a=1&b=2", 0, None, "")),
            ("1", packet(Disconnect, "/", "", 0, None, "")),
            ("1/custom", packet(Disconnect, "/custom", "", 0, None, "")),
            ("1/custom,", packet(Disconnect, "/custom", "", 0, None, "")),
            (
                "2[\"message\",1,\"2\",{\"3\":[true]}]",
                packet(Event, "/", "", 0, None, "[\"message\",1,\"2\",{\"3\":[true]}]"),
            ),
            ("2/chat,12[\"ev\",1]", packet(Event, "/chat", "", 0, Some(12), "[\"ev\",1]")),
            ("2[1,2]", packet(Event, "/", "", 0, None, "[1,2]")),
            ("2[-1]", packet(Event, "/", "", 0, None, "[-1]")),
            ("2 [\"ev\"] ", packet(Event, "/", "", 0, None, " [\"ev\"] ")),
            (
                "2456[\"message-with-ack\",1,\"2\",{\"3\":[false]}]",
                packet(
                    Event,
                    "/",
                    "",
                    0,
                    Some(456),
                    "[\"message-with-ack\",1,\"2\",{\"3\":[false]}]",
                ),
            ),
            ("2/é,[\"ev\"]", packet(Event, "/é", "", 0, None, "[\"ev\"]")),
            ("29007199254740991[\"e\"]", packet(Event, "/", "", 0, Some(9_007_199_254_740_991), "[\"e\"]")),
            ("3456[1,\"2\",{\"3\":[false]}]", packet(Ack, "/", "", 0, Some(456), "[1,\"2\",{\"3\":[false]}]")),
            ("31[]", packet(Ack, "/", "", 0, Some(1), "[]")),
            ("3/chat,1[]", packet(Ack, "/chat", "", 0, Some(1), "[]")),
            ("4{\"message\":\"Invalid namespace\"}", packet(ConnectError, "/", "", 0, None, "{\"message\":\"Invalid namespace\"}")),
            ("4\"Not authorized\"", packet(ConnectError, "/", "", 0, None, "\"Not authorized\"")),
            ("51-[\"message\",{\"_placeholder\":true,\"num\":0}]", packet(BinaryEvent, "/", "", 1, None, "[\"message\",{\"_placeholder\":true,\"num\":0}]")),
            ("52-789[\"message-with-ack\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]", packet(BinaryEvent, "/", "", 2, Some(789), ACK_PLACEHOLDERS_2)),
            ("51-/chat,7[\"up\",{\"_placeholder\":true,\"num\":0}]", packet(BinaryEvent, "/chat", "", 1, Some(7), "[\"up\",{\"_placeholder\":true,\"num\":0}]")),
            ("50-[\"none\"]", packet(BinaryEvent, "/", "", 0, None, "[\"none\"]")),
            ("61-3[{\"_placeholder\":true,\"num\":0}]", packet(BinaryAck, "/", "", 1, Some(3), "[{\"_placeholder\":true,\"num\":0}]")),
            ("610-3[]", packet(BinaryAck, "/", "", 10, Some(3), "[]")),
        ];
        for (text, expected) in table {
            assert_eq!(decode_str(text), Ok(expected), "{text}");
        }
        assert_eq!(
            decode_str("52-[\"message\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]")
                .unwrap()
                .data,
            PLACEHOLDERS_2.as_bytes()
        );
    }

    #[test]
    fn refuses_invalid_packets() {
        let table: &[(&str, SioError)] = &[
            ("", SioError::Empty),
            ("abc", SioError::UnknownType),
            ("7", SioError::UnknownType),
            ("/", SioError::UnknownType),
            // Ack ids.
            (
                "2abc[\"message-with-ack\",1,\"2\",{\"3\":[false]}]",
                SioError::InvalidPayload,
            ),
            ("29007199254740992[\"e\"]", SioError::BadAckId),
            ("212345678901234567[\"e\"]", SioError::BadAckId),
            ("299999999999999999999999[\"e\"]", SioError::BadAckId),
            // Payload shapes (socket.io-parser's isPayloadValid).
            ("2{}", SioError::InvalidPayload),
            ("2", SioError::InvalidPayload),
            ("2[]", SioError::InvalidPayload),
            ("2[{}]", SioError::InvalidPayload),
            ("2[null]", SioError::InvalidPayload),
            ("2[true]", SioError::InvalidPayload),
            ("2[[\"a\"]]", SioError::InvalidPayload),
            ("2\"ev\"", SioError::InvalidPayload),
            ("2[\"connect\"]", SioError::InvalidPayload),
            ("2[\"disconnect\",1]", SioError::InvalidPayload),
            ("2[\"newListener\"]", SioError::InvalidPayload),
            ("2[\"ev\",]", SioError::InvalidPayload),
            ("2[\"ev\"", SioError::InvalidPayload),
            ("2[\"ev\"]x", SioError::InvalidPayload),
            ("2/chat[\"ev\"]", SioError::InvalidPayload),
            ("2,[\"ev\"]", SioError::InvalidPayload),
            ("0\"str\"", SioError::InvalidPayload),
            ("0[]", SioError::InvalidPayload),
            ("0{", SioError::InvalidPayload),
            ("1{}", SioError::InvalidPayload),
            ("1/custom,x", SioError::InvalidPayload),
            ("3", SioError::InvalidPayload),
            ("3{}", SioError::InvalidPayload),
            ("31", SioError::InvalidPayload),
            ("4", SioError::InvalidPayload),
            ("4[]", SioError::InvalidPayload),
            ("41", SioError::InvalidPayload),
            // Attachments.
            ("5[\"m\"]", SioError::BadAttachments),
            ("5-[\"m\"]", SioError::BadAttachments),
            ("5a-[\"m\"]", SioError::BadAttachments),
            ("51[\"m\"]", SioError::BadAttachments),
            ("511-[\"m\"]", SioError::TooManyAttachments),
            (
                "599999999999999999999999999-[\"m\"]",
                SioError::TooManyAttachments,
            ),
            (
                "51-[\"m\",{\"_placeholder\":true,\"num\":1}]",
                SioError::BadAttachments,
            ),
            (
                "52-[\"m\",{\"_placeholder\":true,\"num\":-1}]",
                SioError::BadAttachments,
            ),
            (
                "61-[{\"_placeholder\":true,\"num\":\"0\"}]",
                SioError::BadAttachments,
            ),
            ("61-{}", SioError::InvalidPayload),
            ("52-", SioError::InvalidPayload),
            ("6", SioError::BadAttachments),
        ];
        for (text, expected) in table {
            let got = decode(Bytes::copy_from_slice(text.as_bytes()), MAX);
            assert_eq!(got, Err(*expected), "{text}");
        }
        assert_eq!(
            decode(Bytes::from_static(b"2/\xff,[\"e\"]"), MAX),
            Err(SioError::BadNamespace)
        );
        assert_eq!(
            decode(Bytes::from_static(b"2[\"\xff\"]"), MAX),
            Err(SioError::InvalidPayload)
        );
        assert_eq!(
            decode(
                Bytes::from_static(b"51-[\"m\",{\"_placeholder\":true,\"num\":0}]"),
                0
            ),
            Err(SioError::TooManyAttachments)
        );
    }

    #[test]
    fn decoded_fields_are_zero_copy() {
        let text = Bytes::from_static(b"2/chat?x=1,5[\"ev\"]");
        let packet = decode(text.clone(), MAX).unwrap();
        assert_eq!(packet.nsp.as_ptr(), text[1..].as_ptr());
        assert_eq!(packet.query.as_ptr(), text[7..].as_ptr());
        assert_eq!(packet.data.as_ptr(), text[12..].as_ptr());
        assert_eq!(packet.nsp_str(), "/chat");
    }

    #[test]
    fn encodes_byte_exact() {
        use PacketType::*;
        let table: &[EncodeCase] = &[
            (Connect, "/", 0, None, "{\"sid\":\"abc\"}", "0{\"sid\":\"abc\"}"),
            (Connect, "/custom", 0, None, "{\"sid\":\"abc\"}", "0/custom,{\"sid\":\"abc\"}"),
            (Connect, "/custom", 0, None, "", "0/custom,"),
            (Disconnect, "/", 0, None, "", "1"),
            (Event, "/", 0, None, "[\"auth\",{}]", "2[\"auth\",{}]"),
            (Event, "/custom", 0, None, "[\"auth\",{}]", "2/custom,[\"auth\",{}]"),
            (Event, "", 0, None, "[\"e\"]", "2[\"e\"]"),
            (Event, "/", 0, Some(12), "[\"e\"]", "212[\"e\"]"),
            (Ack, "/", 0, Some(456), "[1,\"2\",{\"3\":[false]}]", "3456[1,\"2\",{\"3\":[false]}]"),
            (ConnectError, "/random", 0, None, "{\"message\":\"Invalid namespace\"}", "4/random,{\"message\":\"Invalid namespace\"}"),
            (
                BinaryEvent,
                "/",
                2,
                None,
                "[\"message-back\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
                "52-[\"message-back\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
            ),
            (
                BinaryAck,
                "/",
                2,
                Some(789),
                "[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
                "62-789[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
            ),
            (BinaryEvent, "/chat", 12, Some(0), "[]", "512-/chat,0[]"),
        ];
        for (kind, nsp, attachments, ack_id, data, expected) in table {
            let mut out = Vec::new();
            encode(&mut out, *kind, nsp, *attachments, *ack_id, data.as_bytes());
            assert_eq!(String::from_utf8(out).unwrap(), *expected);
        }
    }

    #[test]
    fn encodes_into_a_frame_payload() {
        use crate::codec::frame::{FrameBuilder, FrameKind};
        let mut builder = FrameBuilder::new(FrameKind::Text, 32);
        builder.buf().push(b'4');
        encode(
            &mut builder.buf(),
            PacketType::Event,
            "/",
            0,
            None,
            b"[\"auth\",{}]",
        );
        assert_eq!(builder.finish().payload_slice(), b"42[\"auth\",{}]");
    }

    #[test]
    fn assembler_collects_in_order() {
        let head = decode_str(
            "52-[\"message\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
        )
        .unwrap();
        let mut assembler = Assembler::new(head.clone());
        assert!(!assembler.is_complete());
        assert_eq!(assembler.missing(), 2);
        assert!(!assembler.push(Bytes::from_static(&[1, 2, 3])));
        assert!(assembler.push(Bytes::from_static(&[4, 5, 6])));
        assert!(assembler.is_complete());
        // Extra attachments are dropped.
        assert!(assembler.push(Bytes::from_static(&[7])));
        let (packet, attachments) = assembler.finish();
        assert_eq!(packet, head);
        assert_eq!(
            attachments,
            vec![
                Bytes::from_static(&[1, 2, 3]),
                Bytes::from_static(&[4, 5, 6])
            ]
        );

        let none = Assembler::new(decode_str("50-[\"e\"]").unwrap());
        assert!(none.is_complete());
    }

    fn arb_kind() -> impl Strategy<Value = PacketType> {
        (0u8..7).prop_map(|d| PacketType::from_digit(b'0' + d).unwrap())
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            kind in arb_kind(),
            nsp in prop_oneof![Just("/".to_string()), "/[a-z0-9é]{1,8}"],
            attachments in 0usize..4,
            ack_id in prop::option::of(0u64..=MAX_ACK_ID),
            event in "[a-z]{1,8}",
        ) {
            let attachments = if kind.is_binary() { attachments } else { 0 };
            let data = match kind {
                PacketType::Connect => "{\"k\":[1]}".to_string(),
                PacketType::Disconnect => String::new(),
                PacketType::ConnectError => "\"no\"".to_string(),
                PacketType::Ack | PacketType::BinaryAck => {
                    let args: Vec<String> = (0..attachments)
                        .map(|n| format!("{{\"_placeholder\":true,\"num\":{n}}}"))
                        .collect();
                    format!("[{}]", args.join(","))
                }
                PacketType::Event | PacketType::BinaryEvent => {
                    let mut args = vec![format!("\"{event}\"")];
                    args.extend((0..attachments).map(|n| format!("{{\"_placeholder\":true,\"num\":{n}}}")));
                    format!("[{}]", args.join(","))
                }
            };
            let mut out = Vec::new();
            encode(&mut out, kind, &nsp, attachments, ack_id, data.as_bytes());
            let packet = decode(Bytes::from(out), MAX).unwrap();
            prop_assert_eq!(packet.kind, kind);
            prop_assert_eq!(packet.nsp_str(), nsp.as_str());
            prop_assert_eq!(packet.attachments, attachments);
            prop_assert_eq!(packet.ack_id, ack_id);
            prop_assert_eq!(&packet.data[..], data.as_bytes());
            prop_assert!(packet.query.is_empty());
        }

        #[test]
        fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
            let _ = decode(Bytes::from(bytes), MAX);
        }

        #[test]
        fn never_panics_on_structured_garbage(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("5"), Just("2"), Just("-"), Just("/"), Just(","), Just("?"), Just("12"),
                    Just("["), Just("]"), Just("{\"_placeholder\":true,\"num\":0}"), Just("\"e\""),
                    Just("9007199254740993"),
                ],
                0..12,
            ),
        ) {
            let _ = decode(Bytes::from(parts.concat()), MAX);
        }
    }
}
