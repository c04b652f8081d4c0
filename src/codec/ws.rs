//! RFC 6455 WebSocket framing for the server side: decoding masked client frames into messages,
//! the opening-handshake accept key, and encoding: the one server frame header encoder
//! ([`encode_header`], which `codec::frame` uses for data frames) and the close and pong frames.
//!
//! With permessage-deflate negotiated ([`Decoder::with_deflate`]), RSV1 on a message's first
//! frame marks it compressed; the whole message is inflated (within the message limit) by the
//! caller's [`Inflater`] once its last fragment is in. Otherwise, and always for RSV2/RSV3, RSV
//! bits are errors.
//!
//! Pure: works on `BytesMut`/`Bytes` only; no sockets, runtime or Engine.IO knowledge.

use std::fmt;

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

use super::deflate::{InflateError, Inflater};

/// Continuation frame.
pub const OPCODE_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OPCODE_TEXT: u8 = 0x1;
/// Binary frame.
pub const OPCODE_BINARY: u8 = 0x2;
/// Close frame.
pub const OPCODE_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OPCODE_PING: u8 = 0x9;
/// Pong frame.
pub const OPCODE_PONG: u8 = 0xA;

const FIN: u8 = 0x80;
const RSV_BITS: u8 = 0x70;
/// RFC 7692 §6: RSV1 on a data message's first frame marks it compressed.
pub const RSV1: u8 = 0x40;
const OPCODE_BITS: u8 = 0x0F;
const MASK: u8 = 0x80;
const LEN_BITS: u8 = 0x7F;
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;
/// RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The largest header of a server frame: 2 bytes and an 8-byte length, no mask.
pub const MAX_SERVER_HEADER: usize = 10;
const MASK_KEY_LEN: usize = 4;

/// RFC 6455 §1.3: appended to the client's key before hashing.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// RFC 6455 §7.4.1 status codes the server sends: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Protocol error.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Invalid payload data (bad UTF-8).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Message too big.
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// One complete message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, to be answered with a pong.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// `code` is `None` for an empty close frame; `reason` is valid UTF-8.
    Close {
        /// The close code, if any.
        code: Option<u16>,
        /// The close reason.
        reason: Bytes,
    },
}

/// Why the connection must be failed; [`WsError::close_code`] is the code to close with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// A framing rule was broken.
    Protocol(&'static str),
    /// A message is larger than allowed.
    MessageTooBig,
    /// A text message is not valid UTF-8.
    InvalidUtf8,
    /// A compressed message is not valid DEFLATE data.
    BadCompression,
}

impl WsError {
    /// The close status for this failure (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => CLOSE_PROTOCOL_ERROR,
            WsError::MessageTooBig => CLOSE_MESSAGE_TOO_BIG,
            // As Node's `ws` does: the payload is not what the extension says it is.
            WsError::InvalidUtf8 | WsError::BadCompression => CLOSE_INVALID_PAYLOAD,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Protocol(what) => write!(f, "WebSocket protocol error: {what}"),
            WsError::MessageTooBig => f.write_str("WebSocket message too big"),
            WsError::InvalidUtf8 => f.write_str("WebSocket text is not valid UTF-8"),
            WsError::BadCompression => f.write_str("WebSocket message is not valid DEFLATE"),
        }
    }
}

impl std::error::Error for WsError {}

/// A fragmented data message being reassembled.
struct Fragments {
    opcode: u8,
    compressed: bool,
    data: BytesMut,
}

/// What the fixed part of a frame header says.
struct FrameHeader {
    fin: bool,
    compressed: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

/// Decodes client frames into messages, reassembling fragments up to a size limit.
pub struct Decoder {
    max_message: usize,
    /// permessage-deflate was negotiated: RSV1 is allowed on a message's first frame.
    deflate: bool,
    fragments: Option<Fragments>,
}

impl Decoder {
    /// `max_message` bounds a data message's total payload (all fragments together). Control
    /// frames are bounded by the protocol's 125 bytes instead.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            deflate: false,
            fragments: None,
        }
    }

    /// A decoder for a connection that negotiated permessage-deflate. `max_message` bounds
    /// both the compressed message and what it inflates to.
    pub fn with_deflate(max_message: usize) -> Decoder {
        Decoder {
            deflate: true,
            ..Decoder::new(max_message)
        }
    }

    /// Whether compressed messages may arrive (permessage-deflate was agreed).
    pub fn inflates(&self) -> bool {
        self.deflate
    }

    /// [`Decoder::decode_with`] without an inflater: a compressed message is a protocol error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        self.decode_with(buf, None)
    }

    /// Takes one complete message (or control frame) off the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed. Whole frames are consumed from `buf` as soon as
    /// they are complete: a non-final fragment moves into the decoder's reassembly state, so
    /// after `Ok(None)` `buf` may have lost those frames but holds every byte of the incomplete
    /// frame that follows. A frame's payload is unmasked in place and split off `buf`, so an
    /// unfragmented message shares `buf`'s allocation; fragments are copied together.
    ///
    /// Errors are detected from the earliest header byte that shows them (a payload that is too
    /// big is refused from its length field, before it is buffered), so the result does not
    /// depend on how the input was split. After an error the connection must be failed.
    ///
    /// A compressed message is inflated by `inflater` once complete; inflating it past
    /// `max_message` is [`WsError::MessageTooBig`], invalid data [`WsError::BadCompression`].
    pub fn decode_with(
        &mut self,
        buf: &mut BytesMut,
        mut inflater: Option<&mut Inflater>,
    ) -> Result<Option<Message>, WsError> {
        loop {
            let Some(header) = self.parse_header(buf)? else {
                return Ok(None);
            };
            let frame_len = header.header_len.saturating_add(header.payload_len);
            if buf.len() < frame_len {
                return Ok(None);
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(header.payload_len);
            unmask(&mut payload, header.mask);

            match header.opcode {
                OPCODE_CLOSE => return close_message(payload.freeze()).map(Some),
                OPCODE_PING => return Ok(Some(Message::Ping(payload.freeze()))),
                OPCODE_PONG => return Ok(Some(Message::Pong(payload.freeze()))),
                OPCODE_CONTINUATION => {
                    // parse_header refused a continuation with no message open.
                    let Some(open) = self.fragments.as_mut() else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    open.data.extend_from_slice(&payload);
                    if header.fin {
                        if let Some(done) = self.fragments.take() {
                            let data = self.inflated(
                                done.compressed,
                                done.data.freeze(),
                                inflater.as_deref_mut(),
                            )?;
                            return data_message(done.opcode, data).map(Some);
                        }
                    }
                }
                opcode if header.fin => {
                    let data = self.inflated(
                        header.compressed,
                        payload.freeze(),
                        inflater.as_deref_mut(),
                    )?;
                    return data_message(opcode, data).map(Some);
                }
                opcode => {
                    self.fragments = Some(Fragments {
                        opcode,
                        compressed: header.compressed,
                        data: payload,
                    });
                }
            }
        }
    }

    /// A complete data message's payload as the application sees it.
    fn inflated(
        &self,
        compressed: bool,
        payload: Bytes,
        inflater: Option<&mut Inflater>,
    ) -> Result<Bytes, WsError> {
        if !compressed {
            return Ok(payload);
        }
        let Some(inflater) = inflater else {
            return Err(WsError::Protocol("compressed message without an inflater"));
        };
        inflater
            .inflate(&payload, self.max_message)
            .map_err(|error| match error {
                InflateError::TooBig => WsError::MessageTooBig,
                InflateError::Invalid => WsError::BadCompression,
            })
    }

    /// Parses and validates the header at the front of `buf` without consuming it.
    ///
    /// Checks run in wire order (first byte, second byte, extended length), so a prefix of the
    /// header yields the same error as the whole header would.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<FrameHeader>, WsError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let fin = first & FIN != 0;
        let opcode = first & OPCODE_BITS;
        let compressed = first & RSV1 != 0;
        if first & RSV_BITS & !RSV1 != 0 || (compressed && !self.deflate) {
            return Err(WsError::Protocol("reserved bits set without an extension"));
        }
        let is_control = match opcode {
            OPCODE_CLOSE | OPCODE_PING | OPCODE_PONG => true,
            OPCODE_TEXT | OPCODE_BINARY | OPCODE_CONTINUATION => false,
            _ => return Err(WsError::Protocol("reserved opcode")),
        };
        if is_control && !fin {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        // RFC 7692 §6.1: RSV1 only on the first frame of a data message.
        if compressed && (is_control || opcode == OPCODE_CONTINUATION) {
            return Err(WsError::Protocol(
                "RSV1 set on a control or continuation frame",
            ));
        }
        match (opcode, self.fragments.is_some()) {
            (OPCODE_CONTINUATION, false) => {
                return Err(WsError::Protocol("continuation without a message"));
            }
            (OPCODE_TEXT | OPCODE_BINARY, true) => {
                return Err(WsError::Protocol("new message inside a fragmented message"));
            }
            _ => {}
        }

        let Some(&second) = buf.get(1) else {
            return Ok(None);
        };
        if second & MASK == 0 {
            return Err(WsError::Protocol("unmasked client frame"));
        }
        let short_len = second & LEN_BITS;
        if is_control && usize::from(short_len) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::Protocol("control frame payload over 125 bytes"));
        }
        let (len_bytes, payload_len) = match short_len {
            LEN_16 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                (2, u64::from(u16::from_be_bytes([bytes[0], bytes[1]])))
            }
            LEN_64 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("64-bit payload length with top bit set"));
                }
                (8, len)
            }
            len => (0, u64::from(len)),
        };
        if !is_control {
            let buffered = self.fragments.as_ref().map_or(0, |f| f.data.len());
            let total = (buffered as u64).saturating_add(payload_len);
            if total > self.max_message as u64 {
                return Err(WsError::MessageTooBig);
            }
        }
        // Bounded by max_message (a usize) or 125 above, so this cannot truncate.
        let payload_len = usize::try_from(payload_len).map_err(|_| WsError::MessageTooBig)?;

        let mask_start = 2 + len_bytes;
        let Some(mask_bytes) = buf.get(mask_start..mask_start + MASK_KEY_LEN) else {
            return Ok(None);
        };
        let mut mask = [0u8; MASK_KEY_LEN];
        mask.copy_from_slice(mask_bytes);
        Ok(Some(FrameHeader {
            fin,
            compressed,
            opcode,
            mask,
            header_len: mask_start + MASK_KEY_LEN,
            payload_len,
        }))
    }
}

fn data_message(opcode: u8, payload: Bytes) -> Result<Message, WsError> {
    if opcode == OPCODE_TEXT {
        if std::str::from_utf8(&payload).is_err() {
            return Err(WsError::InvalidUtf8);
        }
        Ok(Message::Text(payload))
    } else {
        Ok(Message::Binary(payload))
    }
}

fn close_message(payload: Bytes) -> Result<Message, WsError> {
    match payload.len() {
        0 => Ok(Message::Close {
            code: None,
            reason: payload,
        }),
        1 => Err(WsError::Protocol("close frame with a 1-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = payload.slice(2..);
            if std::str::from_utf8(&reason).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            Ok(Message::Close {
                code: Some(code),
                reason,
            })
        }
    }
}

/// Whether a peer may send this close code (RFC 6455 §7.4 and the IANA registry): 1004-1006 and
/// 1015 are reserved for local use and never appear on the wire.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Reference unmasking, one byte at a time.
pub fn unmask_scalar(buf: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Unmasks (or masks: XOR is its own inverse) a payload in place, eight bytes per step.
pub fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    // Each chunk starts at a multiple of 8, hence of 4, so the mask lines up identically in every
    // chunk and in the tail.
    let [a, b, c, d] = mask;
    let mask64 = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_ne_bytes(word) ^ mask64;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    unmask_scalar(chunks.into_remainder(), mask);
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// The unmasked FIN header of a server frame with `opcode` and a `len`-byte payload (RFC 6455
/// §5.2): the header's bytes, of which the first `.1` are used.
pub fn encode_header(opcode: u8, len: usize) -> ([u8; MAX_SERVER_HEADER], usize) {
    let mut header = [0u8; MAX_SERVER_HEADER];
    header[0] = FIN | opcode;
    if len < usize::from(LEN_16) {
        header[1] = len as u8;
        (header, 2)
    } else if len <= usize::from(u16::MAX) {
        header[1] = LEN_16;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (header, 4)
    } else {
        header[1] = LEN_64;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

/// A whole unmasked server frame: header and payload.
fn server_frame(opcode: u8, payload: &[&[u8]]) -> Bytes {
    let len = payload.iter().map(|part| part.len()).sum();
    let (header, header_len) = encode_header(opcode, len);
    let mut frame = BytesMut::with_capacity(header_len + len);
    frame.put_slice(&header[..header_len]);
    for part in payload {
        frame.put_slice(part);
    }
    frame.freeze()
}

/// An unmasked server close frame. The reason is cut (at a character boundary) to fit the
/// 125-byte control payload.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.as_bytes().get(..end).unwrap_or_default();
    server_frame(OPCODE_CLOSE, &[&code.to_be_bytes(), reason])
}

/// An unmasked server pong echoing a ping's payload (cut to 125 bytes, which a decoded ping never
/// exceeds).
pub fn pong_frame(payload: &[u8]) -> Bytes {
    let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
    server_frame(OPCODE_PONG, &[payload])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;
    const MASK_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const EVERY_OFFSET_LIMIT: usize = 4096;

    type Outcome = Vec<Result<Message, WsError>>;

    /// A client frame with every header field under the test's control.
    struct RawFrame<'a> {
        first: u8,
        masked: bool,
        payload: &'a [u8],
        /// Force a 16- or 64-bit length field even for short payloads.
        len_field: Option<u8>,
    }

    fn raw(r: RawFrame<'_>) -> Vec<u8> {
        let mask_bit = if r.masked { MASK } else { 0 };
        let mut out = vec![r.first];
        let len = r.payload.len();
        match r.len_field {
            Some(LEN_64) => {
                out.push(mask_bit | LEN_64);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
            Some(LEN_16) => {
                out.push(mask_bit | LEN_16);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ if len < 126 => out.push(mask_bit | len as u8),
            _ if len <= 0xFFFF => {
                out.push(mask_bit | LEN_16);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | LEN_64);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        let mut payload = r.payload.to_vec();
        if r.masked {
            out.extend_from_slice(&MASK_KEY);
            unmask_scalar(&mut payload, MASK_KEY);
        }
        out.extend_from_slice(&payload);
        out
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        raw(RawFrame {
            first: if fin { FIN } else { 0 } | opcode,
            masked: true,
            payload,
            len_field: None,
        })
    }

    fn header_only(first: u8, second: u8, ext: &[u8]) -> Vec<u8> {
        let mut out = vec![first, second];
        out.extend_from_slice(ext);
        out
    }

    fn text(s: &str) -> Message {
        Message::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn binary(b: &[u8]) -> Message {
        Message::Binary(Bytes::copy_from_slice(b))
    }

    fn close(code: Option<u16>, reason: &str) -> Message {
        Message::Close {
            code,
            reason: Bytes::copy_from_slice(reason.as_bytes()),
        }
    }

    /// Feeds `chunks` in order, decoding everything available after each one; stops at the first
    /// error, which is recorded.
    fn run(chunks: &[&[u8]], max: usize) -> (Outcome, usize) {
        let mut decoder = Decoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(message)) => out.push(Ok(message)),
                    Ok(None) => break,
                    Err(error) => {
                        out.push(Err(error));
                        return (out, buf.len());
                    }
                }
            }
        }
        (out, buf.len())
    }

    /// Decodes whole, split at every offset, and byte by byte; all must agree.
    fn decode_all_ways(input: &[u8], max: usize) -> (Outcome, usize) {
        let whole = run(&[input], max);
        // Every offset for ordinary fixtures; for the multi-KiB ones (64-bit lengths) every offset
        // around the header and the end plus a stride through the payload, to keep the debug
        // build's test time reasonable.
        let cuts: Vec<usize> = if input.len() <= EVERY_OFFSET_LIMIT {
            (0..=input.len()).collect()
        } else {
            (0..=input.len())
                .filter(|&cut| cut < 64 || input.len() - cut < 64 || cut % 251 == 0)
                .collect()
        };
        for cut in cuts {
            let (a, b) = input.split_at(cut);
            let split = run(&[a, b], max);
            assert_eq!(split.0, whole.0, "split at {cut}");
            if whole.0.last().is_some_and(|r| r.is_ok()) || whole.0.is_empty() {
                assert_eq!(split.1, whole.1, "leftover, split at {cut}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes, max).0, whole.0, "byte by byte");
        whole
    }

    fn fixtures() -> Vec<(&'static str, Vec<u8>, Outcome)> {
        let long_text = "x".repeat(300);
        let big = vec![0xABu8; 70_000];
        let ok = Ok;
        vec![
            (
                "RFC 5.7 masked Hello",
                vec![
                    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                vec![ok(text("Hello"))],
            ),
            (
                "RFC 5.7 unmasked Hello is refused from a client",
                vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
                vec![Err(WsError::Protocol("unmasked client frame"))],
            ),
            (
                "RFC 5.7 fragmented Hel + lo (masked)",
                [
                    frame(false, OPCODE_TEXT, b"Hel"),
                    frame(true, OPCODE_CONTINUATION, b"lo"),
                ]
                .concat(),
                vec![ok(text("Hello"))],
            ),
            (
                "RFC 5.7 masked ping Hello",
                vec![
                    0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                vec![ok(Message::Ping(Bytes::from_static(b"Hello")))],
            ),
            (
                "RFC 5.7 masked pong Hello",
                vec![
                    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
                ],
                vec![ok(Message::Pong(Bytes::from_static(b"Hello")))],
            ),
            (
                "empty text",
                frame(true, OPCODE_TEXT, b""),
                vec![ok(text(""))],
            ),
            (
                "empty binary",
                frame(true, OPCODE_BINARY, b""),
                vec![ok(binary(b""))],
            ),
            (
                "125-byte binary",
                frame(true, OPCODE_BINARY, &[7; 125]),
                vec![ok(binary(&[7; 125]))],
            ),
            (
                "126-byte text (16-bit length)",
                frame(true, OPCODE_TEXT, "y".repeat(126).as_bytes()),
                vec![ok(text(&"y".repeat(126)))],
            ),
            (
                "300-byte text",
                frame(true, OPCODE_TEXT, long_text.as_bytes()),
                vec![ok(text(&long_text))],
            ),
            (
                "65535-byte binary",
                frame(true, OPCODE_BINARY, &big[..65535]),
                vec![ok(binary(&big[..65535]))],
            ),
            (
                "70000-byte binary (64-bit length)",
                frame(true, OPCODE_BINARY, &big),
                vec![ok(binary(&big))],
            ),
            (
                "non-minimal lengths are accepted",
                [
                    raw(RawFrame {
                        first: FIN | OPCODE_TEXT,
                        masked: true,
                        payload: b"ab",
                        len_field: Some(LEN_16),
                    }),
                    raw(RawFrame {
                        first: FIN | OPCODE_BINARY,
                        masked: true,
                        payload: b"cd",
                        len_field: Some(LEN_64),
                    }),
                ]
                .concat(),
                vec![ok(text("ab")), ok(binary(b"cd"))],
            ),
            (
                "several messages back to back",
                [
                    frame(true, OPCODE_TEXT, b"4hello"),
                    frame(true, OPCODE_BINARY, &[1, 2, 3]),
                    frame(true, OPCODE_TEXT, b"2"),
                ]
                .concat(),
                vec![ok(text("4hello")), ok(binary(&[1, 2, 3])), ok(text("2"))],
            ),
            (
                "control frames between fragments",
                [
                    frame(false, OPCODE_BINARY, b"ab"),
                    frame(true, OPCODE_PING, b"p1"),
                    frame(false, OPCODE_CONTINUATION, b""),
                    frame(true, OPCODE_PONG, b""),
                    frame(false, OPCODE_CONTINUATION, b"cd"),
                    frame(true, OPCODE_CLOSE, &[0x03, 0xe8]),
                    frame(true, OPCODE_CONTINUATION, b"e"),
                ]
                .concat(),
                vec![
                    ok(Message::Ping(Bytes::from_static(b"p1"))),
                    ok(Message::Pong(Bytes::new())),
                    ok(close(Some(1000), "")),
                    ok(binary(b"abcde")),
                ],
            ),
            (
                "text split inside a UTF-8 character",
                [
                    frame(false, OPCODE_TEXT, &"é".as_bytes()[..1]),
                    frame(true, OPCODE_CONTINUATION, &"é".as_bytes()[1..]),
                ]
                .concat(),
                vec![ok(text("é"))],
            ),
            (
                "fragmented message then a new one",
                [
                    frame(false, OPCODE_TEXT, b"a"),
                    frame(true, OPCODE_CONTINUATION, b"b"),
                    frame(true, OPCODE_TEXT, b"c"),
                ]
                .concat(),
                vec![ok(text("ab")), ok(text("c"))],
            ),
            (
                "empty close",
                frame(true, OPCODE_CLOSE, b""),
                vec![ok(close(None, ""))],
            ),
            (
                "close with code and reason",
                frame(
                    true,
                    OPCODE_CLOSE,
                    &[&[0x0f, 0xa0][..], "bye ✓".as_bytes()].concat(),
                ),
                vec![ok(close(Some(4000), "bye ✓"))],
            ),
            (
                "close 1014",
                frame(true, OPCODE_CLOSE, &1014u16.to_be_bytes()),
                vec![ok(close(Some(1014), ""))],
            ),
            (
                "close 3000",
                frame(true, OPCODE_CLOSE, &3000u16.to_be_bytes()),
                vec![ok(close(Some(3000), ""))],
            ),
            ("incomplete header", vec![0x81, 0xFE, 0x01], vec![]),
            (
                "incomplete payload",
                frame(true, OPCODE_TEXT, b"Hello")[..9].to_vec(),
                vec![],
            ),
            (
                "message then incomplete fragment",
                [
                    frame(true, OPCODE_TEXT, b"a"),
                    frame(false, OPCODE_TEXT, b"b"),
                ]
                .concat(),
                vec![ok(text("a"))],
            ),
            // Errors.
            (
                "rsv1",
                frame(true, 0x40 | OPCODE_TEXT, b"a"),
                vec![Err(WsError::Protocol(
                    "reserved bits set without an extension",
                ))],
            ),
            (
                "rsv2",
                frame(true, 0x20 | OPCODE_TEXT, b"a"),
                vec![Err(WsError::Protocol(
                    "reserved bits set without an extension",
                ))],
            ),
            (
                "rsv3",
                frame(true, 0x10 | OPCODE_PING, b""),
                vec![Err(WsError::Protocol(
                    "reserved bits set without an extension",
                ))],
            ),
            (
                "opcode 3",
                frame(true, 0x3, b""),
                vec![Err(WsError::Protocol("reserved opcode"))],
            ),
            (
                "opcode 7",
                frame(true, 0x7, b""),
                vec![Err(WsError::Protocol("reserved opcode"))],
            ),
            (
                "opcode 0xB",
                frame(true, 0xB, b""),
                vec![Err(WsError::Protocol("reserved opcode"))],
            ),
            (
                "opcode 0xF",
                frame(true, 0xF, b""),
                vec![Err(WsError::Protocol("reserved opcode"))],
            ),
            (
                "unmasked binary",
                raw(RawFrame {
                    first: FIN | OPCODE_BINARY,
                    masked: false,
                    payload: b"ab",
                    len_field: None,
                }),
                vec![Err(WsError::Protocol("unmasked client frame"))],
            ),
            (
                "ping of 126 bytes",
                frame(true, OPCODE_PING, &[0; 126]),
                vec![Err(WsError::Protocol(
                    "control frame payload over 125 bytes",
                ))],
            ),
            (
                "ping with a forced 16-bit length",
                raw(RawFrame {
                    first: FIN | OPCODE_PING,
                    masked: true,
                    payload: b"a",
                    len_field: Some(LEN_16),
                }),
                vec![Err(WsError::Protocol(
                    "control frame payload over 125 bytes",
                ))],
            ),
            (
                "close of 126 bytes",
                frame(true, OPCODE_CLOSE, &[0x03; 126]),
                vec![Err(WsError::Protocol(
                    "control frame payload over 125 bytes",
                ))],
            ),
            (
                "fragmented ping",
                frame(false, OPCODE_PING, b""),
                vec![Err(WsError::Protocol("fragmented control frame"))],
            ),
            (
                "fragmented close",
                frame(false, OPCODE_CLOSE, b""),
                vec![Err(WsError::Protocol("fragmented control frame"))],
            ),
            (
                "continuation without start",
                frame(true, OPCODE_CONTINUATION, b"x"),
                vec![Err(WsError::Protocol("continuation without a message"))],
            ),
            (
                "continuation after a finished message",
                [
                    frame(true, OPCODE_TEXT, b"a"),
                    frame(true, OPCODE_CONTINUATION, b"b"),
                ]
                .concat(),
                vec![
                    ok(text("a")),
                    Err(WsError::Protocol("continuation without a message")),
                ],
            ),
            (
                "text inside a fragmented message",
                [
                    frame(false, OPCODE_TEXT, b"a"),
                    frame(true, OPCODE_TEXT, b"b"),
                ]
                .concat(),
                vec![Err(WsError::Protocol(
                    "new message inside a fragmented message",
                ))],
            ),
            (
                "binary inside a fragmented message, after a ping",
                [
                    frame(false, OPCODE_BINARY, b"a"),
                    frame(true, OPCODE_PING, b""),
                    frame(false, OPCODE_BINARY, b"b"),
                ]
                .concat(),
                vec![
                    ok(Message::Ping(Bytes::new())),
                    Err(WsError::Protocol("new message inside a fragmented message")),
                ],
            ),
            (
                "64-bit length with top bit set",
                header_only(
                    FIN | OPCODE_BINARY,
                    MASK | LEN_64,
                    &[0x80, 0, 0, 0, 0, 0, 0, 1],
                ),
                vec![Err(WsError::Protocol(
                    "64-bit payload length with top bit set",
                ))],
            ),
            (
                "huge 64-bit length refused before the payload arrives",
                header_only(
                    FIN | OPCODE_BINARY,
                    MASK | LEN_64,
                    &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                ),
                vec![Err(WsError::MessageTooBig)],
            ),
            (
                "length over the limit refused from the header",
                header_only(
                    FIN | OPCODE_BINARY,
                    MASK | LEN_64,
                    &(MAX as u64 + 1).to_be_bytes(),
                ),
                vec![Err(WsError::MessageTooBig)],
            ),
            (
                "invalid UTF-8 text",
                frame(true, OPCODE_TEXT, &[0x61, 0xff]),
                vec![Err(WsError::InvalidUtf8)],
            ),
            (
                "truncated UTF-8 text",
                frame(true, OPCODE_TEXT, &"é".as_bytes()[..1]),
                vec![Err(WsError::InvalidUtf8)],
            ),
            (
                "invalid UTF-8 across fragments",
                [
                    frame(false, OPCODE_TEXT, b"ok"),
                    frame(true, OPCODE_CONTINUATION, &[0xc0, 0x80]),
                ]
                .concat(),
                vec![Err(WsError::InvalidUtf8)],
            ),
            (
                "invalid UTF-8 is fine in binary",
                frame(true, OPCODE_BINARY, &[0xff]),
                vec![ok(binary(&[0xff]))],
            ),
            (
                "close with 1-byte payload",
                frame(true, OPCODE_CLOSE, &[0x03]),
                vec![Err(WsError::Protocol("close frame with a 1-byte payload"))],
            ),
            (
                "close code 999",
                frame(true, OPCODE_CLOSE, &999u16.to_be_bytes()),
                vec![Err(WsError::Protocol("invalid close code"))],
            ),
            (
                "close code 1005",
                frame(true, OPCODE_CLOSE, &1005u16.to_be_bytes()),
                vec![Err(WsError::Protocol("invalid close code"))],
            ),
            (
                "close code 1006",
                frame(true, OPCODE_CLOSE, &1006u16.to_be_bytes()),
                vec![Err(WsError::Protocol("invalid close code"))],
            ),
            (
                "close code 1015",
                frame(true, OPCODE_CLOSE, &1015u16.to_be_bytes()),
                vec![Err(WsError::Protocol("invalid close code"))],
            ),
            (
                "close code 2999",
                frame(true, OPCODE_CLOSE, &2999u16.to_be_bytes()),
                vec![Err(WsError::Protocol("invalid close code"))],
            ),
            (
                "close code 5000",
                frame(true, OPCODE_CLOSE, &5000u16.to_be_bytes()),
                vec![Err(WsError::Protocol("invalid close code"))],
            ),
            (
                "close with non-UTF-8 reason",
                frame(true, OPCODE_CLOSE, &[0x03, 0xe8, 0xff]),
                vec![Err(WsError::InvalidUtf8)],
            ),
        ]
    }

    #[test]
    fn fixtures_decode_identically_however_split() {
        for (name, input, expected) in fixtures() {
            let (outcome, _) = decode_all_ways(&input, MAX);
            assert_eq!(outcome, expected, "{name}");
        }
    }

    #[test]
    fn incomplete_input_is_kept() {
        let full = frame(true, OPCODE_TEXT, b"Hello");
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(Decoder::new(MAX).decode(&mut buf), Ok(None));
            assert_eq!(&buf[..], &full[..cut], "cut {cut}");
        }
        // A completed non-final fragment moves into the decoder; the next partial frame stays.
        let first = frame(false, OPCODE_TEXT, b"Hel");
        let rest = frame(true, OPCODE_CONTINUATION, b"lo");
        let mut buf = BytesMut::from(&[&first[..], &rest[..3]].concat()[..]);
        let mut decoder = Decoder::new(MAX);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &rest[..3]);
        buf.extend_from_slice(&rest[3..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Some(text("Hello"))));
        assert!(buf.is_empty());
    }

    #[test]
    fn message_size_limit() {
        let limit = 10;
        let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
            (
                "exactly the limit",
                frame(true, OPCODE_BINARY, &[1; 10]),
                vec![Ok(binary(&[1; 10]))],
            ),
            (
                "one over",
                frame(true, OPCODE_BINARY, &[1; 11]),
                vec![Err(WsError::MessageTooBig)],
            ),
            (
                "fragments exactly at the limit",
                [
                    frame(false, OPCODE_TEXT, b"12345"),
                    frame(true, OPCODE_CONTINUATION, b"67890"),
                ]
                .concat(),
                vec![Ok(text("1234567890"))],
            ),
            (
                "fragments over the limit",
                [
                    frame(false, OPCODE_TEXT, b"12345"),
                    frame(false, OPCODE_CONTINUATION, b"67890"),
                    frame(true, OPCODE_CONTINUATION, b"!"),
                ]
                .concat(),
                vec![Err(WsError::MessageTooBig)],
            ),
            (
                "control frames do not count",
                [
                    frame(false, OPCODE_TEXT, b"1234567890"),
                    frame(true, OPCODE_PING, &[0; 125]),
                    frame(true, OPCODE_CONTINUATION, b""),
                ]
                .concat(),
                vec![
                    Ok(Message::Ping(Bytes::from(vec![0; 125]))),
                    Ok(text("1234567890")),
                ],
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(decode_all_ways(&input, limit).0, expected, "{name}");
        }
    }

    #[test]
    fn unfragmented_payload_is_not_copied() {
        let input = frame(true, OPCODE_BINARY, &[9; 64]);
        let mut buf = BytesMut::from(&input[..]);
        let start = buf.as_ptr() as usize;
        let Ok(Some(Message::Binary(payload))) = Decoder::new(MAX).decode(&mut buf) else {
            panic!("expected a binary message");
        };
        assert_eq!(payload.as_ptr() as usize, start + 6);
    }

    #[test]
    fn error_close_codes() {
        let cases = [
            (WsError::Protocol("x"), 1002),
            (WsError::MessageTooBig, 1009),
            (WsError::InvalidUtf8, 1007),
        ];
        for (error, code) in cases {
            assert_eq!(error.close_code(), code);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn close_codes() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ];
        let invalid = [
            0,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2000,
            2999,
            5000,
            u16::MAX,
        ];
        for code in valid {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in invalid {
            assert!(!is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn unmask_matches_scalar() {
        let masks = [
            [0, 0, 0, 0],
            MASK_KEY,
            [0xff, 0x01, 0x80, 0x7f],
            [1, 2, 3, 4],
        ];
        let source: Vec<u8> = (0..80u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        for mask in masks {
            for rotation in 0..4 {
                // Every phase of the mask relative to the payload.
                let mask = [0, 1, 2, 3].map(|i| mask[(i + rotation) % 4]);
                for offset in 0..8 {
                    // Every alignment of the payload within its allocation.
                    for len in 0..=64 {
                        let mut fast = source.clone();
                        let mut scalar = source.clone();
                        unmask(&mut fast[offset..offset + len], mask);
                        unmask_scalar(&mut scalar[offset..offset + len], mask);
                        assert_eq!(fast, scalar, "mask {mask:?} offset {offset} len {len}");
                        unmask(&mut fast[offset..offset + len], mask);
                        assert_eq!(fast, source);
                    }
                }
            }
        }
    }

    #[test]
    fn accept_keys() {
        let cases = [
            ("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="),
        ];
        for (key, accept) in cases {
            assert_eq!(accept_key(key), accept);
        }
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        for (opcode, len, expected) in [
            (OPCODE_TEXT, 0, &[0x81, 0][..]),
            (OPCODE_BINARY, 125, &[0x82, 125]),
            (OPCODE_CLOSE, 126, &[0x88, 126, 0, 126]),
            (OPCODE_TEXT, 65535, &[0x81, 126, 0xff, 0xff]),
            (OPCODE_BINARY, 65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let (header, header_len) = encode_header(opcode, len);
            assert_eq!(&header[..header_len], expected, "{len} bytes");
        }
    }

    #[test]
    fn server_control_frames() {
        let long = "é".repeat(100); // 200 bytes; cut to 122 (61 characters) to fit 123
        let cases: Vec<(Bytes, Vec<u8>)> = vec![
            (close_frame(CLOSE_NORMAL, ""), vec![0x88, 0x02, 0x03, 0xe8]),
            (
                close_frame(1002, "bad"),
                vec![0x88, 0x05, 0x03, 0xea, b'b', b'a', b'd'],
            ),
            (
                close_frame(4000, &long),
                [&[0x88, 124, 0x0f, 0xa0][..], "é".repeat(61).as_bytes()].concat(),
            ),
            (
                close_frame(1000, &"a".repeat(200)),
                [&[0x88, 125, 0x03, 0xe8][..], "a".repeat(123).as_bytes()].concat(),
            ),
            (pong_frame(b""), vec![0x8a, 0x00]),
            (
                pong_frame(b"Hello"),
                vec![0x8a, 0x05, b'H', b'e', b'l', b'l', b'o'],
            ),
            (
                pong_frame(&[1; 200]),
                [&[0x8a, 125][..], &[1; 125]].concat(),
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(&frame[..], &expected[..]);
        }
    }

    /// Frames produced by tungstenite (an independent client implementation) decode as expected,
    /// and tungstenite parses our server frames.
    #[test]
    fn interoperates_with_tungstenite() {
        use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
        use tungstenite::protocol::frame::{Frame as TFrame, FrameHeader as THeader};

        let client = |is_final: bool, opcode: OpCode, payload: &[u8]| {
            let header = THeader {
                is_final,
                opcode,
                mask: Some([9, 8, 7, 6]),
                ..THeader::default()
            };
            let mut out = Vec::new();
            TFrame::from_payload(header, payload.to_vec())
                .format(&mut out)
                .unwrap();
            out
        };
        let input = [
            client(true, OpCode::Data(Data::Text), b"4hello"),
            client(false, OpCode::Data(Data::Binary), &[0; 200]),
            client(true, OpCode::Control(Control::Ping), b"probe"),
            client(true, OpCode::Data(Data::Continue), &[1; 70_000]),
            client(true, OpCode::Control(Control::Close), &[0x03, 0xe9]),
        ]
        .concat();
        let expected: Outcome = vec![
            Ok(text("4hello")),
            Ok(Message::Ping(Bytes::from_static(b"probe"))),
            Ok(binary(&[[0u8; 200].as_slice(), &[1; 70_000]].concat())),
            Ok(close(Some(1001), "")),
        ];
        assert_eq!(run(&[&input], MAX).0, expected);

        let server = [close_frame(1000, "bye"), pong_frame(b"2probe")];
        for (frame, (opcode, payload)) in server.iter().zip([
            (OpCode::Control(Control::Close), &b"\x03\xe8bye"[..]),
            (OpCode::Control(Control::Pong), &b"2probe"[..]),
        ]) {
            let mut cursor = std::io::Cursor::new(&frame[..]);
            let (header, len) = THeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(header.opcode, opcode);
            assert_eq!(len as usize, payload.len());
            assert_eq!(&frame[cursor.position() as usize..], payload);
        }
    }

    fn arb_message() -> impl Strategy<Value = (u8, Vec<u8>)> {
        prop_oneof![
            ".{0,40}".prop_map(|s: String| (OPCODE_TEXT, s.into_bytes())),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (OPCODE_BINARY, b)),
        ]
    }

    proptest! {
        /// Random messages, randomly fragmented with pings interleaved, fed in random chunks,
        /// come back out unchanged.
        #[test]
        fn round_trip(
            messages in proptest::collection::vec((arb_message(), proptest::collection::vec(1usize..50, 0..4), any::<bool>()), 1..6),
            chunk in 1usize..64,
        ) {
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for ((opcode, payload), cuts, ping) in &messages {
                let mut pieces = Vec::new();
                let mut rest = &payload[..];
                for &cut in cuts {
                    let (head, tail) = rest.split_at(cut.min(rest.len()));
                    pieces.push(head);
                    rest = tail;
                }
                pieces.push(rest);
                let last = pieces.len() - 1;
                for (i, piece) in pieces.iter().enumerate() {
                    let op = if i == 0 { *opcode } else { OPCODE_CONTINUATION };
                    input.extend(frame(i == last, op, piece));
                    if *ping && i == 0 {
                        input.extend(frame(true, OPCODE_PING, b"p"));
                    }
                }
                let bytes = Bytes::from(payload.clone());
                let message = Ok(if *opcode == OPCODE_TEXT { Message::Text(bytes) } else { Message::Binary(bytes) });
                let ping_message = Ok(Message::Ping(Bytes::from_static(b"p")));
                // The ping follows the first frame: before the message unless that frame was all of it.
                match (*ping, last) {
                    (false, _) => expected.push(message),
                    (true, 0) => expected.extend([message, ping_message]),
                    (true, _) => expected.extend([ping_message, message]),
                }
            }
            let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
            prop_assert_eq!(&run(&[&input], MAX).0, &expected);
            prop_assert_eq!(&run(&chunks, MAX).0, &expected);
        }
    }

    /// A message compressed as a client would send it: raw DEFLATE, the tail cut off.
    fn compressed(data: &[u8]) -> Vec<u8> {
        let frame = crate::codec::deflate::Deflater::new(6)
            .frame(OPCODE_TEXT, data)
            .expect("shrinks");
        let start = match frame[1] & LEN_BITS {
            LEN_16 => 4,
            LEN_64 => 10,
            _ => 2,
        };
        frame[start..].to_vec()
    }

    fn decode_deflate(max: usize, input: &[u8]) -> Result<Option<Message>, WsError> {
        let mut decoder = Decoder::with_deflate(max);
        let mut inflater = Inflater::new();
        let mut buf = BytesMut::from(input);
        decoder.decode_with(&mut buf, Some(&mut inflater))
    }

    #[test]
    fn compressed_messages_inflate() {
        let json = r#"42["chat","a fairly long message, a fairly long message"]"#.repeat(40);
        let packed = compressed(json.as_bytes());
        // Whole.
        let mut input = raw(RawFrame {
            first: FIN | RSV1 | OPCODE_TEXT,
            masked: true,
            payload: &packed,
            len_field: None,
        });
        assert_eq!(decode_deflate(MAX, &input), Ok(Some(text(&json))));
        // Fragmented: RSV1 on the first frame only, then an uncompressed message after it.
        let (a, b) = packed.split_at(packed.len() / 2);
        input = raw(RawFrame {
            first: RSV1 | OPCODE_TEXT,
            masked: true,
            payload: a,
            len_field: None,
        });
        input.extend(frame(false, OPCODE_CONTINUATION, &b[..1]));
        input.extend(frame(true, OPCODE_PING, b"p"));
        input.extend(frame(true, OPCODE_CONTINUATION, &b[1..]));
        input.extend(frame(true, OPCODE_BINARY, b"plain"));
        let mut decoder = Decoder::with_deflate(MAX);
        let mut inflater = Inflater::new();
        let mut buf = BytesMut::from(&input[..]);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(decoder.decode_with(&mut buf, Some(&mut inflater)));
        }
        assert_eq!(
            got,
            vec![
                Ok(Some(Message::Ping(Bytes::from_static(b"p")))),
                Ok(Some(text(&json))),
                Ok(Some(binary(b"plain"))),
                Ok(None),
            ]
        );
    }

    #[test]
    fn compressed_frames_are_checked() {
        let packed = compressed(&[b'z'; 5000]);
        let rsv1 = |first: u8| {
            raw(RawFrame {
                first,
                masked: true,
                payload: &packed,
                len_field: None,
            })
        };
        // Not negotiated.
        let mut plain = Decoder::new(MAX);
        assert!(matches!(
            plain.decode(&mut BytesMut::from(&rsv1(FIN | RSV1 | OPCODE_TEXT)[..])),
            Err(WsError::Protocol(_))
        ));
        // RSV2 and RSV3 stay reserved.
        for bits in [0x20, 0x10] {
            assert!(matches!(
                decode_deflate(MAX, &rsv1(FIN | bits | OPCODE_TEXT)),
                Err(WsError::Protocol(_))
            ));
        }
        // RSV1 on a control frame or a continuation.
        let mut input = frame(false, OPCODE_TEXT, b"a");
        input.extend(raw(RawFrame {
            first: FIN | RSV1 | OPCODE_CONTINUATION,
            masked: true,
            payload: b"b",
            len_field: None,
        }));
        assert!(matches!(
            decode_deflate(MAX, &input),
            Err(WsError::Protocol(_))
        ));
        let ping = raw(RawFrame {
            first: FIN | RSV1 | OPCODE_PING,
            masked: true,
            payload: b"",
            len_field: None,
        });
        assert!(matches!(
            decode_deflate(MAX, &ping),
            Err(WsError::Protocol(_))
        ));
        // Inflating past the limit: 1009, though the compressed bytes are well within it.
        assert!(packed.len() < 100);
        assert_eq!(
            decode_deflate(4999, &rsv1(FIN | RSV1 | OPCODE_BINARY)),
            Err(WsError::MessageTooBig)
        );
        assert_eq!(WsError::MessageTooBig.close_code(), CLOSE_MESSAGE_TOO_BIG);
        assert_eq!(
            decode_deflate(5000, &rsv1(FIN | RSV1 | OPCODE_BINARY)),
            Ok(Some(binary(&[b'z'; 5000])))
        );
        // Not DEFLATE: 1007.
        let bad = raw(RawFrame {
            first: FIN | RSV1 | OPCODE_TEXT,
            masked: true,
            payload: &[0xff, 0xff, 0xff],
            len_field: None,
        });
        assert_eq!(decode_deflate(MAX, &bad), Err(WsError::BadCompression));
        assert_eq!(WsError::BadCompression.close_code(), CLOSE_INVALID_PAYLOAD);
        // Inflated text that is not UTF-8: 1007 too.
        let latin1 = compressed(&[0xe9; 3000]);
        let input = raw(RawFrame {
            first: FIN | RSV1 | OPCODE_TEXT,
            masked: true,
            payload: &latin1,
            len_field: None,
        });
        assert_eq!(decode_deflate(MAX, &input), Err(WsError::InvalidUtf8));
    }
}
