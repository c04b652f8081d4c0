//! RFC 7692 permessage-deflate: the extension's negotiation in the opening handshake, and raw
//! DEFLATE for one message at a time both ways ([`Deflater`], [`Inflater`]).
//!
//! The server always answers with `server_no_context_takeover` and `client_no_context_takeover`:
//! every message is compressed on its own, so one compressed frame fits every recipient (a
//! broadcast is compressed once, as it is encoded once) and one inflater per shard serves every
//! connection (a connection keeps no 32 KiB window between messages). Inflating is bounded: the
//! output stops at the caller's limit, so a decompression bomb is refused by size.
//!
//! Pure: works on byte slices through `flate2` (its pure-Rust backend); no sockets, runtime,
//! config or Engine.IO knowledge.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::ws;

/// The extension's token in `Sec-WebSocket-Extensions`.
const EXTENSION: &str = "permessage-deflate";

/// RFC 7692 §7.2.1: a message's compressed data ends with an empty stored block from a sync
/// flush, which the sender removes and the receiver appends again.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The LZ77 window the server compresses with (2^15 bytes, all `miniz_oxide` offers), so an
/// offer that asks for a smaller one (`server_max_window_bits` < 15) is declined.
const SERVER_WINDOW_BITS: u8 = 15;

/// The server's answer to an acceptable offer: what to write in the 101's
/// `Sec-WebSocket-Extensions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The offer named `server_max_window_bits` (only 15 is accepted), which the answer must
    /// then repeat (§7.1.2.1).
    server_max_window_bits: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101 answer.
    pub fn response_value(&self) -> &'static str {
        if self.server_max_window_bits {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=15"
        } else {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
    }
}

/// Picks the first acceptable permessage-deflate offer in one `Sec-WebSocket-Extensions` value
/// (RFC 7692 §5: offers are tried in the client's order of preference); `None` when there is
/// none, and the connection goes on without compression.
///
/// An offer is declined when a parameter is unknown, repeated or has an invalid value (§5.1),
/// or asks for a server window under 2^15 bytes, which this server can't honour (§7.1.2.1).
/// `client_max_window_bits` needs no answer: the inflater takes any window up to 2^15, and the
/// answer's `client_no_context_takeover` already makes every client message stand alone.
pub fn negotiate(header: &str) -> Option<Agreement> {
    // Offers are split at commas: no parameter value of this extension may contain one, and a
    // quoted comma in another extension only makes that extension's parse fail, never ours.
    header.split(',').find_map(accept_offer)
}

fn accept_offer(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreement = Agreement {
        server_max_window_bits: false,
    };
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
            None => (param, None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                let bits = window_bits(value?)?;
                if bits < SERVER_WINDOW_BITS {
                    return None;
                }
                agreement.server_max_window_bits = true;
                2
            }
            "client_max_window_bits" => {
                if let Some(value) = value {
                    window_bits(value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(agreement)
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// A window size parameter: 8 to 15, decimal digits only (§7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = value.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// Compresses one message at a time (no context kept between messages).
pub struct Deflater {
    compress: Compress,
}

impl Deflater {
    /// `level`: 0 (store) to 9 (smallest); out-of-range values are clamped.
    pub fn new(level: u32) -> Deflater {
        Deflater {
            compress: Compress::new(Compression::new(level.min(9)), false),
        }
    }

    /// The complete unmasked server frame (FIN, RSV1, `opcode`) carrying `payload` compressed,
    /// or `None` when compressing does not make it smaller (it is then sent as is: RSV1 is
    /// per message).
    pub fn frame(&mut self, opcode: u8, payload: &[u8]) -> Option<Bytes> {
        self.compress.reset();
        // Room for the header, then the compressed bytes. A message that does not shrink is not
        // worth sending compressed, so the output is capped at the input's size (plus the tail
        // that is cut off again): one call either finishes within it or gives up.
        let limit = payload.len() + TAIL.len();
        let mut out = Vec::with_capacity(ws::MAX_SERVER_HEADER + limit);
        out.resize(ws::MAX_SERVER_HEADER, 0);
        let before = self.compress.total_in();
        self.compress
            .compress_vec(payload, &mut out, FlushCompress::Sync)
            .ok()?;
        let consumed = self.compress.total_in() - before;
        let written = out.len() - ws::MAX_SERVER_HEADER;
        // A full buffer may hide an unfinished flush; a finished one ends with the tail.
        if consumed != payload.len() as u64
            || out.len() == out.capacity()
            || written >= limit
            || !out.ends_with(&TAIL)
        {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        let len = out.len() - ws::MAX_SERVER_HEADER;
        let (mut header, header_len) = ws::encode_header(opcode, len);
        header[0] |= ws::RSV1;
        let start = ws::MAX_SERVER_HEADER - header_len;
        out[start..ws::MAX_SERVER_HEADER].copy_from_slice(&header[..header_len]);
        Some(Bytes::from(out).slice(start..))
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message would pass the limit.
    TooBig,
    /// Not valid DEFLATE data (or data after the final block's end).
    Invalid,
}

/// Inflates one message at a time (the client keeps no context either).
pub struct Inflater {
    decompress: Decompress,
}

impl Default for Inflater {
    fn default() -> Inflater {
        Inflater::new()
    }
}

impl Inflater {
    /// A raw-DEFLATE inflater with a 2^15-byte window (any client window fits in it).
    pub fn new() -> Inflater {
        Inflater {
            decompress: Decompress::new(false),
        }
    }

    /// Inflates a whole message's compressed payload (the tail added back here), refusing
    /// one that would inflate past `limit` bytes as soon as it does: at most `limit` bytes
    /// (plus one) are ever allocated for it.
    pub fn inflate(&mut self, compressed: &[u8], limit: usize) -> Result<Bytes, InflateError> {
        self.decompress.reset(false);
        // Start near a typical ratio and double, never past the limit plus one byte (that byte
        // tells "exactly the limit" from "more").
        let cap = limit.saturating_add(1);
        let mut out: Vec<u8> =
            Vec::with_capacity(compressed.len().saturating_mul(4).max(64).min(cap));
        let mut input: &[u8] = compressed;
        let mut tail: &[u8] = &TAIL;
        // Every pass either consumes input or fills the output, which grows (doubling) up to
        // `cap`; the bound keeps a stream that stalls from spinning.
        let max_passes = compressed.len() + 80;
        for _ in 0..max_passes {
            let on_tail = input.is_empty();
            let src = if on_tail { tail } else { input };
            if src.is_empty() {
                return Ok(Bytes::from(out));
            }
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(InflateError::TooBig);
                }
                let grow = out.len().max(64).min(cap - out.len());
                out.reserve_exact(grow);
            }
            let before_in = self.decompress.total_in();
            let before_out = out.len();
            let status = self
                .decompress
                .decompress_vec(src, &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let used = usize::try_from(self.decompress.total_in() - before_in)
                .map_err(|_| InflateError::Invalid)?;
            let rest = src.get(used..).ok_or(InflateError::Invalid)?;
            if on_tail {
                tail = rest;
            } else {
                input = rest;
            }
            if status == Status::StreamEnd {
                // A final block ends the message (§7.2.3.4 allows BFINAL); bytes after it other
                // than the tail added here are not DEFLATE.
                if !input.is_empty() {
                    return Err(InflateError::Invalid);
                }
                return Ok(Bytes::from(out));
            }
            if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                // No progress with room to write: the stream is stuck (truncated or corrupt).
                return Err(InflateError::Invalid);
            }
        }
        Err(InflateError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload_of(frame: &Bytes) -> &[u8] {
        let len = frame[1] & 0x7f;
        match len {
            126 => &frame[4..],
            127 => &frame[10..],
            _ => &frame[2..],
        }
    }

    #[test]
    fn negotiation_follows_rfc7692() {
        let plain = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        for (offer, answer) in [
            ("permessage-deflate", Some(plain)),
            ("permessage-deflate; client_max_window_bits", Some(plain)),
            ("Permessage-Deflate;client_max_window_bits=10", Some(plain)),
            (
                "permessage-deflate; client_max_window_bits=\"12\"",
                Some(plain),
            ),
            (
                "permessage-deflate; server_no_context_takeover",
                Some(plain),
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                Some(plain),
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                Some(
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                     server_max_window_bits=15",
                ),
            ),
            // A smaller server window can't be honoured: the offer is declined ...
            ("permessage-deflate; server_max_window_bits=10", None),
            // ... and the next one taken.
            (
                "permessage-deflate; server_max_window_bits=10, permessage-deflate",
                Some(plain),
            ),
            ("x-webkit-deflate-frame, permessage-deflate", Some(plain)),
            ("permessage-deflate; client_max_window_bits=16", None),
            ("permessage-deflate; client_max_window_bits=7", None),
            ("permessage-deflate; client_max_window_bits=+9", None),
            ("permessage-deflate; server_max_window_bits", None),
            ("permessage-deflate; server_no_context_takeover=1", None),
            ("permessage-deflate; unknown", None),
            (
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                None,
            ),
            ("deflate-frame", None),
            ("", None),
        ] {
            assert_eq!(
                negotiate(offer).map(|a| a.response_value()),
                answer,
                "{offer}"
            );
        }
    }

    #[test]
    fn round_trips() {
        let mut deflater = Deflater::new(6);
        let mut inflater = Inflater::new();
        let json = br#"42["chat",{"text":"hello hello hello hello hello hello"}]"#.repeat(60);
        for data in [&json[..], &vec![b'a'; 70_000][..]] {
            let frame = deflater.frame(ws::OPCODE_TEXT, data).expect("shrinks");
            assert_eq!(frame[0], 0x80 | ws::RSV1 | ws::OPCODE_TEXT);
            let payload = payload_of(&frame);
            assert!(payload.len() < data.len() / 4);
            assert!(!payload.ends_with(&TAIL));
            assert_eq!(inflater.inflate(payload, data.len()).as_deref(), Ok(data));
            // One byte short of the limit: refused.
            assert_eq!(
                inflater.inflate(payload, data.len() - 1),
                Err(InflateError::TooBig)
            );
        }
        // Random bytes don't shrink: sent as they are.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        assert_eq!(deflater.frame(ws::OPCODE_BINARY, &noise), None);
        // An empty message inflates to nothing (RFC 7692 §7.2.3.6: a single 0x00 byte).
        assert_eq!(inflater.inflate(&[0x00], 10).as_deref(), Ok(&b""[..]));
        assert_eq!(inflater.inflate(&[], 10).as_deref(), Ok(&b""[..]));
    }

    #[test]
    fn rfc7692_examples_inflate() {
        let mut inflater = Inflater::new();
        // §7.2.3.1: "Hello" compressed, and §7.2.3.3: the same in a stored block.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflater.inflate(&hello, 5).as_deref(), Ok(&b"Hello"[..]));
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflater.inflate(&stored, 5).as_deref(), Ok(&b"Hello"[..]));
        // §7.2.3.4: BFINAL set, no tail needed.
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflater.inflate(&last, 5).as_deref(), Ok(&b"Hello"[..]));
    }

    #[test]
    fn a_bomb_is_refused_by_size() {
        let mut deflater = Deflater::new(9);
        let mut inflater = Inflater::new();
        // 64 MiB of zeros compress to about 64 KiB; the limit is 1 MB.
        let zeros = vec![0u8; 64 << 20];
        let frame = deflater.frame(ws::OPCODE_BINARY, &zeros).expect("shrinks");
        let payload = payload_of(&frame);
        assert!(payload.len() < 128 << 10);
        assert_eq!(
            inflater.inflate(payload, 1_000_000),
            Err(InflateError::TooBig)
        );
        // The inflater is reusable afterwards.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflater.inflate(&hello, 5).as_deref(), Ok(&b"Hello"[..]));
    }

    #[test]
    fn bad_data_is_an_error() {
        let mut inflater = Inflater::new();
        // Block type 3 is reserved.
        assert_eq!(
            inflater.inflate(&[0xff, 0xff], 100),
            Err(InflateError::Invalid)
        );
        // A final block followed by more bytes.
        let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x01, 0x02];
        assert_eq!(inflater.inflate(&last, 100), Err(InflateError::Invalid));
        // A stored block whose length and its complement disagree.
        let stored = [0x00, 0x05, 0x00, 0x00, 0x00, 0x48];
        assert_eq!(inflater.inflate(&stored, 100), Err(InflateError::Invalid));
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflater.inflate(&hello, 5).as_deref(), Ok(&b"Hello"[..]));
    }
}
