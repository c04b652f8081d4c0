//! One outbound Engine.IO packet, encoded once and shared by every recipient.
//!
//! A [`Frame`] holds the complete server-to-client WebSocket frame (server frames are unmasked,
//! so the same bytes fit every recipient). The Engine.IO packet inside it is a zero-copy slice,
//! which the polling transport batches into payloads. A frame may also carry a cell for its
//! permessage-deflate form, filled by the first recipient that needs it and shared by every
//! clone, so a broadcast is compressed once however many shards deliver it. Pure: no I/O, no
//! runtime.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};

use super::deflate::Deflater;
use super::ws::{self, MAX_SERVER_HEADER};

/// Whether a frame carries an Engine.IO text packet or a raw binary message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// `<type digit><data>`, e.g. `4hello`.
    Text,
    /// Raw message bytes (Engine.IO v4 framing; v3 adds a type byte on the wire).
    Binary,
}

impl FrameKind {
    /// The WebSocket opcode of frames of this kind.
    pub fn opcode(self) -> u8 {
        match self {
            FrameKind::Text => ws::OPCODE_TEXT,
            FrameKind::Binary => ws::OPCODE_BINARY,
        }
    }
}

/// An encoded outbound packet: the whole WebSocket frame, with the packet as a slice of it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// INVARIANT: `ws[..start]` is a valid unmasked FIN frame header for `ws[start..]`.
    ws: Bytes,
    start: u8,
    kind: FrameKind,
    /// The compressed frame (RSV1), or `None` when compressing did not shrink it, once a
    /// recipient needed it. Attached only with permessage-deflate on ([`Frame::share_deflate`]),
    /// so a server without it carries a null pointer and nothing more.
    deflated: Option<Arc<OnceLock<Option<Bytes>>>>,
}

/// Frames are equal when their bytes are: whether the compressed form was made is no part of
/// what they say.
impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.ws == other.ws && self.start == other.start && self.kind == other.kind
    }
}

impl Eq for Frame {}

impl Frame {
    /// Builds a text frame from a complete Engine.IO text packet (`4hello`, `2`, `3probe`, ...).
    pub fn text(packet: &[u8]) -> Frame {
        let mut builder = FrameBuilder::new(FrameKind::Text, packet.len());
        builder.buf().extend_from_slice(packet);
        builder.finish()
    }

    /// Builds a binary frame from raw message bytes.
    pub fn binary(data: &[u8]) -> Frame {
        let mut builder = FrameBuilder::new(FrameKind::Binary, data.len());
        builder.buf().extend_from_slice(data);
        builder.finish()
    }

    /// Text or binary.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The complete WebSocket frame (header and payload), ready to write.
    pub fn ws_bytes(&self) -> &Bytes {
        &self.ws
    }

    /// The Engine.IO text packet (type digit and data) or the raw binary message.
    pub fn payload(&self) -> Bytes {
        self.ws.slice(self.start as usize..)
    }

    /// Same as [`Frame::payload`] without touching the reference count.
    pub fn payload_slice(&self) -> &[u8] {
        &self.ws[self.start as usize..]
    }

    /// Gives the frame a cell for its compressed form, shared from now on by every clone (a
    /// broadcast's frames get one before they travel to the other shards).
    pub fn share_deflate(&mut self) {
        if self.deflated.is_none() {
            self.deflated = Some(Arc::new(OnceLock::new()));
        }
    }

    /// The compressed frame (RSV1 set), made with `deflater` unless a clone made it already;
    /// `None` when compressing does not make the payload smaller.
    pub fn deflated(&self, deflater: &mut Deflater) -> Option<Bytes> {
        let opcode = self.kind.opcode();
        match &self.deflated {
            Some(cell) => cell
                .get_or_init(|| deflater.frame(opcode, self.payload_slice()))
                .clone(),
            None => deflater.frame(opcode, self.payload_slice()),
        }
    }
}

/// Gives every frame of at least `threshold` payload bytes a shared cell for its compressed
/// form ([`Frame::share_deflate`]): those are the ones a link with permessage-deflate gets
/// compressed.
pub fn share_deflate_over(frames: &mut [Frame], threshold: usize) {
    for frame in frames {
        if frame.payload_slice().len() >= threshold {
            frame.share_deflate();
        }
    }
}

/// Writes a frame's payload in place after room reserved for the header, so that a packet is
/// serialised exactly once.
pub struct FrameBuilder {
    buf: BytesMut,
    kind: FrameKind,
}

impl FrameBuilder {
    /// Starts a frame whose payload is expected to be about `capacity` bytes long.
    pub fn new(kind: FrameKind, capacity: usize) -> FrameBuilder {
        let mut buf = BytesMut::with_capacity(MAX_SERVER_HEADER + capacity);
        buf.put_bytes(0, MAX_SERVER_HEADER);
        FrameBuilder { buf, kind }
    }

    /// The payload written so far; append to it.
    pub fn buf(&mut self) -> PayloadWriter<'_> {
        PayloadWriter(&mut self.buf)
    }

    /// Writes the header in front of the payload and freezes the frame.
    pub fn finish(mut self) -> Frame {
        let len = self.buf.len() - MAX_SERVER_HEADER;
        let (header, header_len) = ws::encode_header(self.kind.opcode(), len);
        let start = MAX_SERVER_HEADER - header_len;
        self.buf[start..MAX_SERVER_HEADER].copy_from_slice(&header[..header_len]);
        let ws = self.buf.freeze().slice(start..);
        Frame {
            ws,
            start: header_len as u8,
            kind: self.kind,
            deflated: None,
        }
    }
}

/// Append-only view of a [`FrameBuilder`]'s payload.
pub struct PayloadWriter<'a>(&'a mut BytesMut);

impl PayloadWriter<'_> {
    /// Appends bytes to the payload.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Appends one byte.
    pub fn push(&mut self, byte: u8) {
        self.0.put_u8(byte);
    }
}

impl std::io::Write for PayloadWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_follow_rfc6455() {
        for (len, header_len, second) in [
            (0, 2, 0),
            (125, 2, 125),
            (126, 4, 126),
            (65535, 4, 126),
            (65536, 10, 127),
        ] {
            let data = vec![b'x'; len];
            let frame = Frame::text(&data);
            assert_eq!(frame.ws_bytes().len(), len + header_len);
            assert_eq!(frame.ws_bytes()[0], 0x81);
            assert_eq!(frame.ws_bytes()[1], second);
            assert_eq!(frame.payload_slice(), &data[..]);
        }
    }

    #[test]
    fn binary_frame_uses_binary_opcode() {
        let frame = Frame::binary(&[1, 2, 3]);
        assert_eq!(&frame.ws_bytes()[..], &[0x82, 3, 1, 2, 3]);
        assert_eq!(frame.kind(), FrameKind::Binary);
    }

    #[test]
    fn clones_share_one_compressed_form_once_given_a_cell() {
        let text = format!("4{}", "a broadcast to many ".repeat(100));
        let mut frames = [Frame::text(text.as_bytes()), Frame::text(b"4small")];
        share_deflate_over(&mut frames, 100);
        let (big, small) = (frames[0].clone(), frames[1].clone());
        let first = big.deflated(&mut Deflater::new(6)).expect("compressible");
        // Another shard's clone with its own deflater gets the very same bytes, not a copy.
        let again = frames[0]
            .deflated(&mut Deflater::new(1))
            .expect("compressible");
        assert_eq!(first.as_ptr(), again.as_ptr());
        // Under the threshold: no cell, so each call compresses anew.
        let one = small.deflated(&mut Deflater::new(6));
        let two = frames[1].deflated(&mut Deflater::new(6));
        assert_eq!(one, two);
        // The cell is no part of equality.
        assert_eq!(big, Frame::text(text.as_bytes()));
    }
}
