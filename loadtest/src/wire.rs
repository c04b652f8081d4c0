//! Pure client-side wire formats: masked WebSocket frames out, server frames in, the upgrade
//! request, and the few Engine.IO / Socket.IO packet shapes the bench contract uses.
//! No I/O here; `conn` does the reading and writing.

use std::fmt;
use std::ops::Range;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;

/// Largest frame the loadtest accepts from a server (the contract's messages are small).
pub const MAX_FRAME: usize = 16 << 20;

/// A server broke the WebSocket framing rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Servers must not mask their frames (RFC 6455 §5.1).
    Masked,
    /// Reserved bits set without an extension that defines them.
    Reserved,
    /// A compressed (permessage-deflate) message that does not inflate.
    Inflate,
    /// A frame larger than [`MAX_FRAME`].
    TooLarge(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Masked => f.write_str("server sent a masked frame"),
            FrameError::Reserved => f.write_str("server set reserved frame bits"),
            FrameError::Inflate => f.write_str("server sent a message that does not inflate"),
            FrameError::TooLarge(len) => write!(f, "server frame of {len} bytes is too large"),
        }
    }
}

/// One frame found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    /// RSV1: a permessage-deflate message's first frame (the caller checks it was agreed).
    pub compressed: bool,
    pub opcode: u8,
    /// Where the payload lies in the buffer that was decoded.
    pub payload: Range<usize>,
    /// Bytes the whole frame takes (header + payload).
    pub len: usize,
}

/// Decodes the frame at the start of `buf`; `None` while it is incomplete.
pub fn decode_frame(buf: &[u8]) -> Result<Option<RawFrame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x30 != 0 {
        return Err(FrameError::Reserved);
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (header, len) = match b1 & 0x7f {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            (4, u64::from(u16::from_be_bytes([bytes[0], bytes[1]])))
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut raw = [0u8; 8];
            raw.copy_from_slice(bytes);
            (10, u64::from_be_bytes(raw))
        }
        short => (2, u64::from(short)),
    };
    if len > MAX_FRAME as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let end = header + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(RawFrame {
        fin: b0 & 0x80 != 0,
        compressed: b0 & 0x40 != 0,
        opcode: b0 & 0x0f,
        payload: header..end,
        len: end,
    }))
}

/// Appends one masked client frame carrying `payload`.
pub fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, byte) in out[start..].iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// The HTTP request that opens an Engine.IO v4 WebSocket session directly; with `deflate`,
/// offering permessage-deflate as browsers do.
pub fn upgrade_request(out: &mut Vec<u8>, host: &str, path: &str, key: &str, deflate: bool) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b"?EIO=4&transport=websocket HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(key.as_bytes());
    if deflate {
        out.extend_from_slice(
            b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        );
    }
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
}

/// What a text message from the server is, as far as the bench contract cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// Engine.IO open (`0{...}`).
    Open,
    /// Engine.IO ping (`2`): answer with a pong.
    Ping,
    /// Socket.IO CONNECT on the main namespace (`40{...}`).
    Connected,
    /// Socket.IO CONNECT_ERROR (`44{...}`).
    ConnectError(&'a [u8]),
    /// Socket.IO EVENT without ack (`42[...]`): the JSON array.
    Event(&'a [u8]),
    /// Socket.IO ACK (`43<id>[...]`): the id and the JSON array.
    Ack(u64, &'a [u8]),
    /// Engine.IO close or Socket.IO DISCONNECT.
    Closed,
    /// Anything else (noop, pong, events of other namespaces...).
    Other,
}

/// Classifies one Engine.IO text packet.
pub fn classify(packet: &[u8]) -> Incoming<'_> {
    match packet {
        [b'0', ..] => Incoming::Open,
        [b'2'] => Incoming::Ping,
        [b'1'] | [b'4', b'1', ..] => Incoming::Closed,
        [b'4', b'0', ..] => Incoming::Connected,
        [b'4', b'4', rest @ ..] => Incoming::ConnectError(rest),
        [b'4', b'2', rest @ ..] if rest.first() == Some(&b'[') => Incoming::Event(rest),
        [b'4', b'3', rest @ ..] => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 || digits > 18 {
                return Incoming::Other;
            }
            let id = rest[..digits]
                .iter()
                .fold(0u64, |id, d| id * 10 + u64::from(d - b'0'));
            Incoming::Ack(id, &rest[digits..])
        }
        _ => Incoming::Other,
    }
}

/// Appends a Socket.IO event on the main namespace: `42<ack>["<event>",<args...>]`, where
/// each argument is already JSON.
pub fn put_event(out: &mut Vec<u8>, event: &str, ack: Option<u64>, args: &[&[u8]]) {
    out.extend_from_slice(b"42");
    if let Some(id) = ack {
        put_decimal(out, id);
    }
    out.extend_from_slice(b"[\"");
    out.extend_from_slice(event.as_bytes());
    out.push(b'"');
    for arg in args {
        out.push(b',');
        out.extend_from_slice(arg);
    }
    out.push(b']');
}

/// Appends `value` in decimal without allocating.
pub fn put_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Parses an unsigned decimal that fills all of `digits`.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, d| {
        d.is_ascii_digit().then(|| value * 10 + u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds an unmasked server frame.
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            len if len < 126 => out.push(len as u8),
            len if len < 65536 => {
                out.push(126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_every_length_form_and_waits_for_more() {
        for len in [0, 5, 125, 126, 1000, 65535, 65536, 70000] {
            let payload = vec![b'x'; len];
            let frame = server_frame(OP_TEXT, &payload);
            for cut in [0, 1, frame.len() / 2, frame.len() - 1] {
                if cut < frame.len() {
                    assert_eq!(decode_frame(&frame[..cut]), Ok(None), "len {len} cut {cut}");
                }
            }
            let decoded = decode_frame(&frame).unwrap().unwrap();
            assert!(decoded.fin);
            assert_eq!(decoded.opcode, OP_TEXT);
            assert_eq!(&frame[decoded.payload.clone()], &payload[..]);
            assert_eq!(decoded.len, frame.len());
        }
    }

    #[test]
    fn refuses_masked_reserved_and_huge_frames() {
        assert_eq!(decode_frame(&[0x81, 0x80]), Err(FrameError::Masked));
        assert_eq!(decode_frame(&[0xA1, 0x00]), Err(FrameError::Reserved));
        assert!(decode_frame(&[0xC1, 0x00]).unwrap().unwrap().compressed);
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(matches!(decode_frame(&huge), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn client_frames_are_masked_round_trip() {
        let mask = [1, 2, 3, 4];
        for len in [3, 200, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            put_frame(&mut out, OP_TEXT, &payload, mask);
            let header = match len {
                l if l < 126 => 2,
                l if l < 65536 => 4,
                _ => 10,
            };
            assert_eq!(out[1] & 0x80, 0x80);
            assert_eq!(&out[header..header + 4], &mask);
            let unmasked: Vec<u8> = out[header + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i & 3])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn classifies_contract_packets() {
        assert_eq!(classify(b"0{\"sid\":\"x\"}"), Incoming::Open);
        assert_eq!(classify(b"2"), Incoming::Ping);
        assert_eq!(classify(b"40{\"sid\":\"y\"}"), Incoming::Connected);
        assert_eq!(
            classify(b"44{\"message\":\"no\"}"),
            Incoming::ConnectError(b"{\"message\":\"no\"}")
        );
        assert_eq!(classify(b"42[\"m\",1]"), Incoming::Event(b"[\"m\",1]"));
        assert_eq!(classify(b"4312[\"a\"]"), Incoming::Ack(12, b"[\"a\"]"));
        assert_eq!(classify(b"43[]"), Incoming::Other);
        assert_eq!(classify(b"41"), Incoming::Closed);
        assert_eq!(classify(b"1"), Incoming::Closed);
        assert_eq!(classify(b"6"), Incoming::Other);
    }

    #[test]
    fn writes_events_and_decimals() {
        let mut out = Vec::new();
        put_event(&mut out, "publish", None, &[b"\"r1\"", b"\"p\""]);
        assert_eq!(out, b"42[\"publish\",\"r1\",\"p\"]");
        out.clear();
        put_event(&mut out, "join", Some(7), &[b"\"r\""]);
        assert_eq!(out, b"427[\"join\",\"r\"]");
        for value in [0, 9, 10, 12345, u64::MAX / 10] {
            out.clear();
            put_decimal(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
            assert_eq!(parse_decimal(&out), Some(value));
        }
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"1x"), None);
    }
}
