//! Event arguments in both directions: [`Message`] (received, raw JSON kept as bytes) and
//! [`Args`] (to send), plus the one place Socket.IO packets are serialised into frames, in the
//! server's parser: JSON text (`codec::sio`) or MessagePack (`codec::msgpack`, converted from
//! the same JSON and attachments here, at the edge, so nothing above knows the difference).

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::frame::{Frame, FrameBuilder, FrameKind};
use crate::codec::json::{self, JsonError};
use crate::codec::msgpack::{self, MsgpackError};
use crate::codec::sio::{self, PacketType};
use crate::config::Parser;

/// The arguments of a received event or acknowledgement.
///
/// Arguments stay raw JSON bytes (a relayed payload is never re-serialised); decode one with
/// [`Message::get`] when the server needs its value. Binary arguments arrive as placeholders
/// in the JSON plus [`Message::attachments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    data: Bytes,
    args: Vec<Range<usize>>,
    attachments: Vec<Bytes>,
}

impl Message {
    /// `data` is a validated JSON array; `args` the ranges of the arguments to expose.
    pub(crate) fn new(data: Bytes, args: Vec<Range<usize>>, attachments: Vec<Bytes>) -> Message {
        Message {
            data,
            args,
            attachments,
        }
    }

    /// A message of the arguments in `json` (comma-separated, without brackets, with
    /// placeholders for `attachments`), as another node sent them; `None` if it is not JSON.
    pub(crate) fn from_args_json(json: &[u8], attachments: Vec<Bytes>) -> Option<Message> {
        let mut data = Vec::with_capacity(json.len() + 2);
        data.push(b'[');
        data.extend_from_slice(json);
        data.push(b']');
        let data = Bytes::from(data);
        let args = json::split_array(&data).ok()?;
        Some(Message::new(data, args, attachments))
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The raw JSON of argument `index`.
    pub fn raw(&self, index: usize) -> Option<&[u8]> {
        let range = self.args.get(index)?;
        self.data.get(range.clone())
    }

    /// Argument `index` as a string, if it is a JSON string.
    pub fn str(&self, index: usize) -> Option<Cow<'_, str>> {
        let raw = self.raw(index)?;
        if !json::is_string(raw) {
            return None;
        }
        json::parse_str(raw).ok()
    }

    /// Argument `index` decoded into any deserialisable type.
    pub fn get<T: DeserializeOwned>(&self, index: usize) -> Result<T, JsonError> {
        let raw = self.raw(index).ok_or(JsonError::Invalid)?;
        json::from_slice(raw)
    }

    /// The binary attachments, in placeholder order.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// All arguments, unchanged, ready to send again (binary included).
    pub fn to_args(&self) -> Args {
        self.args_from(0)
    }

    /// Arguments `first..`, unchanged, ready to send again (binary included).
    pub fn args_from(&self, first: usize) -> Args {
        let json = match (self.args.get(first), self.args.last()) {
            (Some(start), Some(end)) => self.data.slice(start.start..end.end),
            _ => Bytes::new(),
        };
        Args {
            json: ArgsJson::Shared(json),
            count: self.args.len().saturating_sub(first),
            attachments: self.attachments.clone(),
        }
    }
}

/// Arguments to send with an event or an acknowledgement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    json: ArgsJson,
    count: usize,
    attachments: Vec<Bytes>,
}

/// The comma-separated JSON of the arguments, without brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ArgsJson {
    Owned(Vec<u8>),
    Shared(Bytes),
}

impl Default for ArgsJson {
    fn default() -> Self {
        ArgsJson::Owned(Vec::new())
    }
}

impl ArgsJson {
    fn as_slice(&self) -> &[u8] {
        match self {
            ArgsJson::Owned(v) => v,
            ArgsJson::Shared(b) => b,
        }
    }

    fn owned(&mut self) -> &mut Vec<u8> {
        if let ArgsJson::Shared(bytes) = self {
            *self = ArgsJson::Owned(bytes.to_vec());
        }
        match self {
            ArgsJson::Owned(v) => v,
            ArgsJson::Shared(_) => unreachable!("converted above"),
        }
    }
}

impl Args {
    /// No arguments.
    pub fn new() -> Args {
        Args::default()
    }

    /// Arguments from their comma-separated JSON (valid, placeholders matching
    /// `attachments`), as another node sent them.
    pub(crate) fn from_parts(json: Vec<u8>, count: usize, attachments: Vec<Bytes>) -> Args {
        Args {
            json: ArgsJson::Owned(json),
            count,
            attachments,
        }
    }

    /// The comma-separated JSON of the arguments, without brackets.
    pub(crate) fn json_bytes(&self) -> &[u8] {
        self.json.as_slice()
    }

    /// One argument serialised from any value.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Args, JsonError> {
        Args::new().with_json(value)
    }

    /// Appends an argument serialised from any value.
    pub fn with_json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Args, JsonError> {
        let count = self.count;
        let out = self.json.owned();
        let rollback = out.len();
        if count > 0 {
            out.push(b',');
        }
        if let Err(error) = json::to_writer(out, value) {
            out.truncate(rollback);
            return Err(error);
        }
        self.count += 1;
        Ok(self)
    }

    /// Appends an argument given as raw JSON (validated).
    pub fn with_raw(mut self, raw: &[u8]) -> Result<Args, JsonError> {
        json::validate(raw)?;
        self.push_raw(raw);
        Ok(self)
    }

    /// Appends a string argument.
    pub fn with_str(mut self, value: &str) -> Args {
        let count = self.count;
        let out = self.json.owned();
        if count > 0 {
            out.push(b',');
        }
        json::write_str(out, value);
        self.count += 1;
        self
    }

    /// Appends a binary argument (sent as an attachment with a placeholder).
    pub fn with_binary(mut self, data: Bytes) -> Args {
        let placeholder = format!(
            r#"{{"_placeholder":true,"num":{}}}"#,
            self.attachments.len()
        );
        self.push_raw(placeholder.as_bytes());
        self.attachments.push(data);
        self
    }

    fn push_raw(&mut self, raw: &[u8]) {
        let count = self.count;
        let out = self.json.owned();
        if count > 0 {
            out.push(b',');
        }
        out.extend_from_slice(raw);
        self.count += 1;
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The binary attachments.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }
}

/// Serialises an EVENT (or BINARY_EVENT) once: the text frame then one frame per attachment.
pub fn encode_event(nsp: &str, event: &str, args: &Args, ack_id: Option<u64>) -> Vec<Frame> {
    let kind = if args.attachments.is_empty() {
        PacketType::Event
    } else {
        PacketType::BinaryEvent
    };
    // `["event",args]`: the name's quotes and the brackets and comma, plus a few escapes.
    let mut body = Vec::with_capacity(event.len() + args.json.as_slice().len() + 8);
    body.push(b'[');
    json::write_str(&mut body, event);
    if args.count > 0 {
        body.push(b',');
        body.extend_from_slice(args.json.as_slice());
    }
    body.push(b']');
    encode_text_packet(kind, nsp, ack_id, &body, &args.attachments)
}

/// Serialises an EVENT in the server's parser: one match, then the same work as before.
pub(crate) fn encode_event_as(
    parser: Parser,
    nsp: &str,
    event: &str,
    args: &Args,
    ack_id: Option<u64>,
) -> Vec<Frame> {
    match parser {
        Parser::Default => encode_event(nsp, event, args, ack_id),
        Parser::Msgpack => msgpack_frame(args.json.as_slice().len() + event.len(), |out| {
            let json = args.json.as_slice();
            msgpack::encode_event(out, nsp, event, json, &args.attachments, ack_id)
        }),
    }
}

/// Serialises an ACK (or BINARY_ACK) in the server's parser.
pub(crate) fn encode_ack(parser: Parser, nsp: &str, ack_id: u64, args: &Args) -> Vec<Frame> {
    let kind = if args.attachments.is_empty() {
        PacketType::Ack
    } else {
        PacketType::BinaryAck
    };
    let mut body = Vec::with_capacity(args.json.as_slice().len() + 2);
    body.push(b'[');
    body.extend_from_slice(args.json.as_slice());
    body.push(b']');
    encode_packet(parser, kind, nsp, Some(ack_id), &body, &args.attachments)
}

/// Serialises any packet in the server's parser: JSON inside an Engine.IO message (`4` +
/// packet) plus one frame per attachment, or one binary MessagePack message.
pub(crate) fn encode_packet(
    parser: Parser,
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    data: &[u8],
    attachments: &[Bytes],
) -> Vec<Frame> {
    match parser {
        Parser::Default => encode_text_packet(kind, nsp, ack_id, data, attachments),
        Parser::Msgpack => msgpack_frame(data.len() + nsp.len(), |out| {
            msgpack::encode(out, kind, nsp, ack_id, data, attachments)
        }),
    }
}

/// A packet as socket.io-parser writes it: inside an Engine.IO message (`4` + packet), plus one
/// frame per attachment.
fn encode_text_packet(
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    data: &[u8],
    attachments: &[Bytes],
) -> Vec<Frame> {
    let mut builder = FrameBuilder::new(FrameKind::Text, data.len() + nsp.len() + 24);
    let mut out = builder.buf();
    out.push(b'4');
    sio::encode(&mut out, kind, nsp, attachments.len(), ack_id, data);
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(builder.finish());
    frames.extend(attachments.iter().map(|a| Frame::binary(a)));
    frames
}

/// One binary frame written by `write`. Arguments are validated JSON when built, so a failure
/// means a value MessagePack can't hold (over 2^32 - 1 long): nothing is sent.
fn msgpack_frame(
    capacity: usize,
    write: impl FnOnce(&mut crate::codec::frame::PayloadWriter<'_>) -> Result<(), MsgpackError>,
) -> Vec<Frame> {
    let mut builder = FrameBuilder::new(FrameKind::Binary, capacity + 24);
    if let Err(error) = write(&mut builder.buf()) {
        tracing::warn!(%error, "a packet could not be written as MessagePack; not sent");
        return Vec::new();
    }
    vec![builder.finish()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frames: &[Frame]) -> &str {
        std::str::from_utf8(frames[0].payload_slice()).unwrap()
    }

    #[test]
    fn events_and_acks_are_encoded_like_the_reference() {
        let args = Args::new().with_json(&1).unwrap().with_str("2");
        assert_eq!(
            text(&encode_event("/", "message-back", &args, None)),
            r#"42["message-back",1,"2"]"#
        );
        assert_eq!(
            text(&encode_event("/chat", "a", &Args::new(), Some(7))),
            r#"42/chat,7["a"]"#
        );
        let binary = Args::new().with_binary(Bytes::from_static(&[1, 2]));
        let frames = encode_ack(Parser::Default, "/", 9, &binary);
        assert_eq!(text(&frames), r#"461-9[{"_placeholder":true,"num":0}]"#);
        assert_eq!(frames[1].payload_slice(), &[1, 2]);
    }

    #[test]
    fn relayed_args_keep_their_bytes() {
        let data = Bytes::from_static(br#"["echo",{"a":[1, 2]},"x"]"#);
        let ranges = json::split_array(&data).unwrap();
        let message = Message::new(data, ranges[1..].to_vec(), Vec::new());
        assert_eq!(message.len(), 2);
        assert_eq!(message.str(1).as_deref(), Some("x"));
        let frames = encode_ack(Parser::Default, "/", 1, &message.to_args());
        assert_eq!(text(&frames), r#"431[{"a":[1, 2]},"x"]"#);
    }
}
