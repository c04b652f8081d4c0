//! The fuzz targets' bodies: one function per decoder or state machine, each feeding arbitrary
//! bytes to ringcast and checking what must hold for every input (no panic, results within
//! the input's bounds, the same answer however the bytes were split, round trips, agreement
//! with a model).
//!
//! Used by the libFuzzer targets in `fuzz_targets/` and, as a smoke run over the committed
//! corpus, by the server's `tests/fuzz_smoke.rs` (which includes this file by path, so it must
//! depend on nothing but ringcast and ringcast's own dependencies).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::task::Context;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use futures_util::task::noop_waker_ref;
use ringcast::internals::codec::adapter::{
    self, BroadcastMessage, ClassicChannel, ClusterMessage, OptsOrder, Request, RequestType,
    Response, ShardedChannel, SubscriptionMode,
};
use ringcast::internals::codec::deflate::{self, Deflater, Inflater};
use ringcast::internals::codec::eio::{self, Packet, Version};
use ringcast::internals::codec::frame::Frame;
use ringcast::internals::codec::msgpack;
use ringcast::internals::codec::notepack::{self, Value};
use ringcast::internals::codec::{http, json, sio, ws};
use ringcast::internals::engine::{Engine, Event, LinkKey, Peer, PollReply, SessionKey};
use ringcast::internals::rooms::Rooms;
use ringcast::ShardId;
use ringcast::{CloseReason, EngineConfig};

/// A target's body: takes any bytes, panics if an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/` file and corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("http_request", http_request),
    ("ws_frames", ws_frames),
    ("eio_packet", eio_packet),
    ("eio_payload", eio_payload),
    ("sio_packet", sio_packet),
    ("json_event", json_event),
    ("notepack", notepack),
    ("msgpack_packet", msgpack_packet),
    ("adapter_messages", adapter_messages),
    ("engine_session", engine_session),
    ("rooms", rooms),
];

/// Reads fuzzer bytes as a sequence of small choices; past the end it reads zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max + 1).min(self.data.len());
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        taken
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

// ------------------------------------------------------------------------------------------
// Decoders

/// An HTTP request head: a complete head is found whatever its prefix looked like, and no
/// prefix of it is taken for a complete head.
pub fn http_request(data: &[u8]) {
    const MAX_HEAD: usize = 4096;
    let Ok(Some(request)) = http::parse_request(data, MAX_HEAD) else {
        return;
    };
    let head_len = request.head_len;
    assert!(head_len <= data.len() && head_len <= MAX_HEAD);
    let _ = http::query_param(request.query, "sid");
    for cut in [0, head_len / 2, head_len.saturating_sub(1)] {
        if cut < head_len {
            assert!(
                matches!(
                    http::parse_request(&data[..cut], MAX_HEAD),
                    Ok(None) | Err(_)
                ),
                "a prefix of a head parsed as complete"
            );
            assert!(
                !matches!(http::parse_request(&data[..cut], MAX_HEAD), Ok(Some(_))),
                "a prefix of a head parsed as complete"
            );
        }
    }
}

/// A WebSocket frame stream from a client: decoding it in pieces gives the same messages (or
/// the same error) as decoding it whole, and no message is larger than the limit.
///
/// With the first byte's top bit set, the decoder has permessage-deflate: RSV1 messages are
/// inflated (never past the limit, whatever they inflate to), and the stream, compressed by the
/// server's deflater and sent as one RSV1 frame, must come back as it was. The stream, read as
/// a `Sec-WebSocket-Extensions` value, must negotiate without panicking.
pub fn ws_frames(data: &[u8]) {
    const MAX_MESSAGE: usize = 1 << 12;
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let deflate = step & 0x80 != 0;
    let whole = decode_ws(stream, stream.len().max(1), MAX_MESSAGE, deflate);
    let pieces = decode_ws(stream, usize::from(step % 64) + 1, MAX_MESSAGE, deflate);
    assert_eq!(
        whole, pieces,
        "the result depends on how the stream was split"
    );
    for message in whole.0 {
        // The tag byte, and for a close its two code bytes, come on top of the payload.
        assert!(
            message.len() <= MAX_MESSAGE + 3,
            "a message over the limit got through"
        );
    }
    if deflate {
        deflate_round_trip(stream, MAX_MESSAGE);
        if let Ok(header) = std::str::from_utf8(stream) {
            let _ = deflate::negotiate(header);
        }
    }
}

/// `data` compressed as the server does, framed as a client would (masked, RSV1, binary),
/// decodes back to `data`.
fn deflate_round_trip(data: &[u8], max_message: usize) {
    let Some(server_frame) = Deflater::new(1).frame(0x2, data) else {
        return; // did not shrink: sent uncompressed, nothing to check
    };
    assert_eq!(server_frame[0], 0x80 | ws::RSV1 | 0x2, "FIN, RSV1, binary");
    let header = match server_frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let packed = &server_frame[header..];
    let mut frame = vec![server_frame[0]];
    match packed.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]); // a zero mask leaves the payload as it is
    frame.extend_from_slice(packed);
    let mut decoder = ws::Decoder::with_deflate(max_message.max(data.len()));
    let mut inflater = Inflater::new();
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = decoder.decode_with(&mut buf, Some(&mut inflater));
    assert_eq!(
        decoded,
        Ok(Some(ws::Message::Binary(Bytes::copy_from_slice(data)))),
        "a compressed message did not come back as it was"
    );
}

type WsOutcome = (Vec<Vec<u8>>, Option<u16>);

/// Decodes `stream` fed `chunk` bytes at a time: the messages (tagged by kind) and the close
/// code of the error that stopped it, if any.
fn decode_ws(stream: &[u8], chunk: usize, max_message: usize, deflate: bool) -> WsOutcome {
    let mut decoder = if deflate {
        ws::Decoder::with_deflate(max_message)
    } else {
        ws::Decoder::new(max_message)
    };
    let mut inflater = Inflater::new();
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode_with(&mut buf, Some(&mut inflater)) {
                Ok(Some(message)) => messages.push(tag_ws(message)),
                Ok(None) => break,
                Err(error) => return (messages, Some(error.close_code())),
            }
        }
    }
    (messages, None)
}

fn tag_ws(message: ws::Message) -> Vec<u8> {
    let (tag, bytes) = match message {
        ws::Message::Text(b) => (b't', b),
        ws::Message::Binary(b) => (b'b', b),
        ws::Message::Ping(b) => (b'i', b),
        ws::Message::Pong(b) => (b'o', b),
        ws::Message::Close { code, reason } => {
            let code = code.map_or([0xff; 2], u16::to_be_bytes);
            (b'c', Bytes::from([&code[..], &reason[..]].concat()))
        }
    };
    let mut tagged = vec![tag];
    tagged.extend_from_slice(&bytes);
    tagged
}

/// One Engine.IO packet, as a WebSocket text or binary frame or a polling packet: a decoded
/// message re-encodes to the same packet.
pub fn eio_packet(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(packet) = eio::decode_text(bytes.clone()) {
        assert_text_round_trip(&packet);
    }
    for version in [Version::V3, Version::V4] {
        if let Ok(packet) = eio::decode_ws_text(bytes.clone(), version) {
            assert_text_round_trip(&packet);
        }
        let _ = eio::decode_ws_binary(bytes.clone(), version);
    }
}

fn assert_text_round_trip(packet: &Packet) {
    if let Packet::Message(text) = packet {
        let mut again = vec![b'4'];
        again.extend_from_slice(text);
        assert_eq!(
            eio::decode_text(Bytes::from(again)).as_ref(),
            Ok(packet),
            "a message does not survive a round trip"
        );
    }
}

/// A polling POST body in every framing: the packets re-encode to a body that decodes to the
/// same packets.
pub fn eio_payload(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let (version, binary_body) = match choice % 3 {
        0 => (Version::V4, false),
        1 => (Version::V3, false),
        _ => (Version::V3, true),
    };
    let Ok(packets) = eio::decode_payload(Bytes::copy_from_slice(body), version, binary_body)
    else {
        return;
    };
    assert!(packets.len() <= body.len(), "more packets than bytes");
    let frames: Vec<Frame> = packets.iter().filter_map(frame_of).collect();
    if frames.len() != packets.len() || frames.is_empty() {
        return;
    }
    let mut encoded = Vec::new();
    let content_type = eio::encode_payload(&frames, version, binary_body, &mut encoded);
    let again = eio::decode_payload(
        Bytes::from(encoded),
        version,
        content_type == eio::ContentType::OctetStream,
    )
    .expect("an encoded payload decodes");
    assert_eq!(again, packets, "packets do not survive a round trip");
}

/// The server-side frame that carries `packet`, for the packet kinds a server sends.
fn frame_of(packet: &Packet) -> Option<Frame> {
    match packet {
        Packet::Message(text) => {
            let mut packet = vec![b'4'];
            packet.extend_from_slice(text);
            Some(Frame::text(&packet))
        }
        Packet::Binary(data) => Some(Frame::binary(data)),
        Packet::Noop => Some(Frame::text(b"6")),
        Packet::Close => Some(Frame::text(b"1")),
        _ => None,
    }
}

/// A Socket.IO packet and its binary attachments: a decoded packet re-encodes to itself, its
/// elements lie inside its data, and reassembly takes exactly the declared attachments.
pub fn sio_packet(data: &[u8]) {
    const MAX_ATTACHMENTS: usize = 8;
    let mut input = Input { data };
    let text = Bytes::copy_from_slice(input.bytes(512));
    let Ok(packet) = sio::decode(text, MAX_ATTACHMENTS) else {
        return;
    };
    assert!(packet.attachments <= MAX_ATTACHMENTS);
    for range in &packet.elements {
        assert!(range.start <= range.end && range.end <= packet.data.len());
    }
    let mut encoded = Vec::new();
    sio::encode(
        &mut encoded,
        packet.kind,
        packet.nsp_str(),
        packet.attachments,
        packet.ack_id,
        &packet.data,
    );
    if packet.query.is_empty() {
        let again =
            sio::decode(Bytes::from(encoded), MAX_ATTACHMENTS).expect("an encoded packet decodes");
        assert_eq!(again, packet, "a packet does not survive a round trip");
    }
    let declared = packet.attachments;
    let mut assembler = sio::Assembler::new(packet);
    let mut pushed = 0;
    while !assembler.is_complete() {
        assert_eq!(assembler.missing(), declared - pushed);
        assembler.push(Bytes::copy_from_slice(input.bytes(16)));
        pushed += 1;
    }
    assert_eq!(assembler.missing(), 0);
    let (_, attachments) = assembler.finish();
    assert_eq!(attachments.len(), declared);
}

/// JSON as events carry it: what the validator accepts, serde_json accepts too, but for what
/// JavaScript's `JSON.parse` takes and serde_json does not (lone surrogate escapes, swapped
/// for a plain escape here, and numbers beyond f64, which JavaScript reads as Infinity); an
/// array's element ranges cover valid JSON values inside the input.
pub fn json_event(data: &[u8]) {
    let valid = json::validate(data).is_ok();
    if valid {
        let checked = serde_json::from_slice::<serde_json::Value>(&without_surrogate_escapes(data));
        if let Err(error) = checked {
            assert!(
                error.to_string().starts_with("number out of range"),
                "accepted what serde_json refuses: {error}"
            );
        }
    }
    if let Ok(elements) = json::split_array(data) {
        assert!(valid, "split an array the validator refuses");
        for range in elements {
            assert!(range.start <= range.end && range.end <= data.len());
            let element = &data[range];
            assert!(
                json::validate(element).is_ok(),
                "an element is not valid JSON"
            );
            // A lone surrogate is valid JSON but no Rust string: `parse_str` refuses it.
            if json::is_string(element) && without_surrogate_escapes(element) == element {
                assert!(
                    json::parse_str(element).is_ok(),
                    "a valid string does not parse"
                );
            }
        }
    }
}

/// `data` with every `\uD800`-`\uDFFF` escape replaced by `\u0041` (same length).
fn without_surrogate_escapes(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut i = 0;
    while i + 6 <= out.len() {
        if out[i] == b'\\' {
            let is_surrogate = out[i + 1] == b'u'
                && out[i + 2].eq_ignore_ascii_case(&b'd')
                && matches!(out[i + 3].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f');
            if is_surrogate {
                out[i + 2..i + 6].copy_from_slice(b"0041");
            }
            // Skip the escaped character, so `\\u` (an escaped backslash, then `u`) is not
            // read as an escape.
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// A MessagePack message as the Redis adapter or the emitter publishes it: whatever reads
/// converts without panicking, as one value and, where it holds one (`[uid, {data}, opts]`,
/// `{packet: {data}}`) or is one, as event data. The JSON is valid and holds the arguments;
/// unless the message itself holds maps shaped like placeholders (`_placeholder: true`, which
/// Socket.IO cannot tell from real ones), the placeholders are exactly the attachments, in
/// order, and the JSON encodes to MessagePack that decodes to the same JSON.
pub fn notepack(data: &[u8]) {
    let Ok(message) = notepack::read(data) else {
        return;
    };
    let literal = has_placeholder_shape(&message);
    let events: Vec<Value> = [packet_data(&message).cloned(), Some(message.clone())]
        .into_iter()
        .flatten()
        .collect();
    if let Ok(value) = notepack::decode_value(message) {
        assert!(json::validate(&value.json).is_ok(), "invalid JSON");
        if !literal {
            assert_placeholders(&value.json, value.attachments.len());
            let bytes = notepack::encode_value(&value.json, &value.attachments)
                .expect("decoded JSON encodes again");
            let again =
                notepack::decode_value(notepack::read(&bytes).expect("what we wrote reads"))
                    .expect("re-encoded JSON decodes");
            assert_eq!(again, value, "the JSON changed on the way round");
        }
    }
    for data in events {
        let Ok(event) = notepack::decode_event(data) else {
            continue;
        };
        let mut array = b"[".to_vec();
        array.extend_from_slice(&serde_json::to_vec(&event.name).expect("a string serialises"));
        if event.count > 0 {
            array.push(b',');
            array.extend_from_slice(&event.args);
        }
        array.push(b']');
        assert_eq!(
            json::split_array(&array).map(|args| args.len()),
            Ok(event.count + 1),
            "the arguments are not {} JSON values",
            event.count
        );
        if literal {
            continue;
        }
        assert_placeholders(&array, event.attachments.len());
        let bytes = notepack::encode_event(&event.name, &event.args, &event.attachments)
            .expect("decoded event encodes again");
        let again = notepack::decode_event(notepack::read(&bytes).expect("what we wrote reads"))
            .expect("re-encoded event decodes");
        assert_eq!(again, event, "the event changed on the way round");
    }
}

/// A socket.io-msgpack-parser packet as a client sends it: no panic; what decodes has element
/// ranges inside its data, valid JSON, at most the allowed binaries, an event's or ack's
/// placeholders exactly its binaries in order; and it encodes to MessagePack that decodes to
/// the same packet (unless the input holds maps shaped like placeholders, which Socket.IO
/// cannot tell from real ones).
pub fn msgpack_packet(data: &[u8]) {
    const MAX_ATTACHMENTS: usize = 8;
    let Ok((packet, attachments)) = msgpack::decode(data, MAX_ATTACHMENTS) else {
        return;
    };
    assert!(attachments.len() <= MAX_ATTACHMENTS);
    assert_eq!(packet.attachments, attachments.len());
    assert!(packet.data.is_empty() || json::validate(&packet.data).is_ok());
    for range in &packet.elements {
        assert!(range.start <= range.end && range.end <= packet.data.len());
    }
    if matches!(
        packet.kind,
        sio::PacketType::Event
            | sio::PacketType::BinaryEvent
            | sio::PacketType::Ack
            | sio::PacketType::BinaryAck
    ) {
        assert_placeholders(&packet.data, attachments.len());
    }
    let literal = notepack::read(data).is_ok_and(|value| has_placeholder_shape(&value));
    if literal {
        return;
    }
    let mut encoded = Vec::new();
    msgpack::encode(
        &mut encoded,
        packet.kind,
        packet.nsp_str(),
        packet.ack_id,
        &packet.data,
        &attachments,
    )
    .expect("a decoded packet encodes");
    let again = msgpack::decode(&encoded, MAX_ATTACHMENTS).expect("an encoded packet decodes");
    assert_eq!(
        again,
        (packet, attachments),
        "a packet does not survive a round trip"
    );
}

/// `packet.data` of a broadcast (`[uid, packet, opts]`) or a request (`{packet}`).
fn packet_data(message: &Value) -> Option<&Value> {
    let packet = match message {
        Value::Array(items) => items.get(1)?,
        map => field(map, "packet")?,
    };
    field(packet, "data")
}

fn field<'a>(map: &'a Value, name: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(key, _)| key.as_str() == Some(name))
        .map(|(_, value)| value)
}

/// Whether a map anywhere in `value` has `_placeholder: true`.
fn has_placeholder_shape(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(has_placeholder_shape),
        Value::Map(entries) => entries.iter().any(|(key, value)| {
            (key.as_str() == Some("_placeholder") && *value == Value::Boolean(true))
                || has_placeholder_shape(key)
                || has_placeholder_shape(value)
        }),
        _ => false,
    }
}

/// Valid JSON whose placeholders are exactly the attachments, each once, in order.
fn assert_placeholders(json: &[u8], attachments: usize) {
    let text = String::from_utf8_lossy(json);
    assert_eq!(
        json::check_placeholders(json, attachments),
        Ok(attachments),
        "placeholders and attachments disagree in {text}"
    );
    for num in 0..attachments {
        let placeholder = format!(r#"{{"_placeholder":true,"num":{num}}}"#);
        assert!(
            text.contains(&placeholder),
            "no placeholder {num} in {text}"
        );
    }
}

/// The Redis adapter's messages and channels: the bytes through every decoder (classic
/// broadcast, request, response for each pending request type, sharded message); whatever
/// decodes re-encodes to bytes that decode to the same value and re-encode to the same bytes.
/// Then the bytes as a channel name, and, split at newlines into prefix, namespace and room, as
/// the parts of channel names that must parse back to those parts.
pub fn adapter_messages(data: &[u8]) {
    const MAX: usize = 1 << 16;
    if let Ok(message) = BroadcastMessage::decode(data, MAX) {
        for order in [OptsOrder::Server, OptsOrder::Emitter] {
            round_trip(
                &message,
                |m, out| m.encode_with(order, out),
                |bytes| BroadcastMessage::decode(bytes, usize::MAX),
            );
        }
        let channel = adapter::classic_publish_channel("p", "/", &message.opts.rooms);
        assert!(adapter::broadcast_room(&channel, "p", "/").is_some());
    }
    if let Ok(request) = Request::decode(data, MAX) {
        round_trip(&request, Request::encode, |bytes| {
            Request::decode(bytes, usize::MAX)
        });
    }
    for number in 0..=10 {
        let pending = RequestType::from_number(number);
        if let Ok(Some(response)) = Response::decode(data, MAX, |_| pending) {
            round_trip(&response, Response::encode, |bytes| {
                Response::decode(bytes, usize::MAX, |id| {
                    assert_eq!(id, response.request_id(), "the request id changed");
                    pending
                })
                .map(|again| again.expect("a response to a pending request"))
            });
        }
    }
    if let Ok(message) = ClusterMessage::decode(data, MAX) {
        round_trip(&message, ClusterMessage::encode, |bytes| {
            ClusterMessage::decode(bytes, usize::MAX)
        });
        for mode in [
            SubscriptionMode::Static,
            SubscriptionMode::Dynamic,
            SubscriptionMode::DynamicPrivate,
        ] {
            let channel = message.publish_channel("p", mode);
            assert!(adapter::broadcast_room(&channel, "p", &message.nsp).is_some());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        adapter_channels(text);
    }
}

/// Encodes `value`, decodes that, and checks the value and its encoding are unchanged (values
/// compare by their debug text, where NaN equals NaN).
fn round_trip<T: std::fmt::Debug, E: std::fmt::Debug>(
    value: &T,
    encode: impl Fn(&T, &mut Vec<u8>),
    decode: impl Fn(&[u8]) -> Result<T, E>,
) {
    let mut bytes = Vec::new();
    encode(value, &mut bytes);
    let again = decode(&bytes).expect("an encoded message decodes");
    assert_eq!(
        format!("{again:?}"),
        format!("{value:?}"),
        "a message does not survive a round trip"
    );
    let mut bytes_again = Vec::new();
    encode(&again, &mut bytes_again);
    assert_eq!(bytes_again, bytes, "a message re-encodes differently");
}

fn adapter_channels(text: &str) {
    const PREFIX: &str = "socket.io";
    if let Some(room) = adapter::broadcast_room(text, PREFIX, "/") {
        let rest = text
            .strip_prefix("socket.io#/#")
            .expect("under the namespace channel");
        assert!(rest.starts_with(room) && rest.len() - room.len() <= 4);
    }
    let _ = adapter::classic_channel(text, PREFIX, "/");
    let _ = adapter::sharded_channel(text, PREFIX, "/", "0123456789abcdef");
    let mut parts = text.splitn(3, '\n');
    let (Some(prefix), Some(nsp), Some(room)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    assert_eq!(
        adapter::broadcast_pattern(prefix, nsp),
        adapter::broadcast_channel(prefix, nsp) + "*"
    );
    let namespace = adapter::broadcast_channel(prefix, nsp);
    assert_eq!(adapter::broadcast_room(&namespace, prefix, nsp), Some(""));
    let room_channel = adapter::room_channel(prefix, nsp, room);
    assert_eq!(
        adapter::broadcast_room(&room_channel, prefix, nsp),
        Some(room)
    );
    assert_eq!(
        adapter::classic_channel(&room_channel, prefix, nsp),
        Some(ClassicChannel::Broadcast { room })
    );
    assert_eq!(
        adapter::classic_channel(&adapter::request_channel(prefix, nsp), prefix, nsp),
        Some(ClassicChannel::Request)
    );
    assert_eq!(
        adapter::classic_channel(&adapter::response_channel(prefix, nsp), prefix, nsp),
        Some(ClassicChannel::Response)
    );
    assert_eq!(
        adapter::classic_channel(
            &adapter::specific_response_channel(prefix, nsp, room),
            prefix,
            nsp
        ),
        Some(ClassicChannel::ResponseTo { uid: room })
    );
    let own = adapter::sharded_response_channel(prefix, nsp, room);
    assert_eq!(
        adapter::sharded_channel(&own, prefix, nsp, room),
        Some(ShardedChannel::Response)
    );
    assert_eq!(
        adapter::sharded_channel(&namespace, prefix, nsp, room),
        Some(ShardedChannel::Main)
    );
    let other_uid = format!("{room}x");
    assert_eq!(
        adapter::sharded_channel(&room_channel, prefix, nsp, &other_uid),
        Some(ShardedChannel::Room(room))
    );
}

// ------------------------------------------------------------------------------------------
// State machines

/// A shard's Engine.IO sessions driven by a random sequence of client and server actions.
/// After every step: the engine holds exactly the sessions a model says are open, a session
/// closes (one `Close` event) only once, no link's queue grows past the outbound limit by more
/// than one packet, and every answered poll has a status the reference uses.
pub fn engine_session(data: &[u8]) {
    const MAX_OUTBOUND: usize = 2048;
    let config = EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1024,
        max_outbound_bytes: MAX_OUTBOUND,
        allow_eio3: true,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(ShardId::new(0), config);
    let mut now = Instant::now();
    let mut input = Input { data };
    // The model: open sessions, and the link of those on WebSocket.
    let mut open: BTreeMap<SessionKey, Option<LinkKey>> = BTreeMap::new();
    let mut polls: Vec<oneshot::Receiver<PollReply>> = Vec::new();
    let mut cx = Context::from_waker(noop_waker_ref());
    while !input.is_empty() {
        let keys: Vec<SessionKey> = open.keys().copied().collect();
        let pick = |input: &mut Input<'_>| -> Option<SessionKey> {
            (!keys.is_empty()).then(|| keys[input.below(keys.len())])
        };
        match input.below(12) {
            0 => {
                let version = if input.byte() % 2 == 0 {
                    Version::V4
                } else {
                    Version::V3
                };
                let (key, reply) = engine.open_polling(now, peer(version), input.byte() % 2 == 0);
                assert_eq!(reply.status, 200);
                assert!(
                    open.insert(key, None).is_none(),
                    "a key of an open session reused"
                );
            }
            1 => {
                let version = if input.byte() % 2 == 0 {
                    Version::V4
                } else {
                    Version::V3
                };
                let (key, link) = engine.open_websocket(now, peer(version));
                assert!(
                    open.insert(key, Some(link)).is_none(),
                    "a key of an open session reused"
                );
            }
            2 => {
                if let Some(key) = pick(&mut input) {
                    let (sender, receiver) = oneshot::channel();
                    engine.polling_get(key, sender);
                    polls.push(receiver);
                }
            }
            3 => {
                if let Some(key) = pick(&mut input) {
                    let body = Bytes::copy_from_slice(input.bytes(64));
                    let reply = engine.polling_post(key, now, body, input.byte() % 4 == 0);
                    assert!(
                        matches!(reply.status, 200 | 400 | 403),
                        "status {}",
                        reply.status
                    );
                }
            }
            4 => {
                if let Some(link) = pick(&mut input).and_then(|k| open[&k]) {
                    let text = Bytes::copy_from_slice(input.bytes(64));
                    let message = if input.byte() % 2 == 0 {
                        ws::Message::Text(text)
                    } else {
                        ws::Message::Binary(text)
                    };
                    engine.ws_message(link, now, message);
                }
            }
            5 => {
                if let Some(key) = pick(&mut input) {
                    if open[&key].is_none() {
                        if let Ok(link) = engine.ws_upgrade(key, now) {
                            open.insert(key, Some(link));
                        }
                    }
                }
            }
            6 => {
                if let Some(key) = pick(&mut input) {
                    let frame = Frame::text(&[b'4'; 200][..input.below(200) + 1]);
                    let _ = engine.send(key, &frame, input.byte() % 4 == 0);
                }
            }
            7 => {
                let count = input.below(4) + 1;
                let recipients: BTreeSet<SessionKey> =
                    (0..count).filter_map(|_| pick(&mut input)).collect();
                if !recipients.is_empty() {
                    let frame = Frame::text(&[b'4'; 300][..input.below(300) + 1]);
                    engine.send_many(recipients.into_iter().collect(), &[frame]);
                }
            }
            8 => engine.send_deferred(),
            9 => {
                if let Some(link) = pick(&mut input).and_then(|k| open[&k]) {
                    let mut out = Vec::new();
                    if engine
                        .poll_ws_write(link, now, &mut cx, &mut out)
                        .is_ready()
                    {
                        let written: usize = out.iter().map(|b| b.len()).sum();
                        assert!(written <= MAX_OUTBOUND + 512, "{written} bytes queued");
                    }
                    if input.byte() % 8 == 0 {
                        engine.ws_reader_done(link);
                        engine.ws_writer_done(link);
                    }
                }
            }
            10 => {
                if let Some(key) = pick(&mut input) {
                    engine.close(key, CloseReason::ServerClose);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(input.byte()) * 4);
                engine.handle_timeouts(now);
            }
        }
        engine.flush();
        while let Some(event) = engine.next_event() {
            match event {
                Event::Open(key) => assert!(open.contains_key(&key), "open of an unknown session"),
                Event::Message(key, _) | Event::Binary(key, _) => {
                    assert!(open.contains_key(&key), "message for a closed session")
                }
                Event::Upgraded(key) => {
                    assert!(open.contains_key(&key), "upgrade of a closed session")
                }
                Event::Close(key, _) => {
                    assert!(open.remove(&key).is_some(), "a session closed twice");
                }
            }
        }
        for poll in &mut polls {
            if let Ok(Some(reply)) = poll.try_recv() {
                assert!(
                    matches!(reply.status, 200 | 400),
                    "poll status {}",
                    reply.status
                );
            }
        }
        assert_eq!(
            engine.session_count(),
            open.len(),
            "engine and model disagree"
        );
    }
}

fn peer(version: Version) -> Peer {
    Peer {
        endpoint: 0,
        version,
        query: "EIO=4&transport=polling".into(),
        address: None,
        headers: Box::default(),
    }
}

/// A shard's room index driven by random joins and leaves: membership, counts and broadcast
/// targets always match a plain map of sets.
pub fn rooms(data: &[u8]) {
    const NAMES: [&str; 6] = ["", "a", "b", "room", "ünï", "a-very-long-room-name"];
    let mut rooms = Rooms::default();
    let mut model: HashMap<&str, BTreeSet<u32>> = HashMap::new();
    let mut input = Input { data };
    while !input.is_empty() {
        let room = NAMES[input.below(NAMES.len())];
        let member = u32::from(input.byte() % 16);
        match input.below(3) {
            0 => {
                let added = rooms.join(room, member);
                assert_eq!(added, model.entry(room).or_default().insert(member));
            }
            1 => {
                let removed = rooms.leave(room, member);
                let in_model = model.get_mut(room).is_some_and(|m| m.remove(&member));
                assert_eq!(removed, in_model);
                if model.get(room).is_some_and(BTreeSet::is_empty) {
                    model.remove(room);
                }
            }
            _ => {
                let targets = [NAMES[input.below(NAMES.len())], room];
                let target_rooms = &targets[..input.below(3)];
                let except = [NAMES[input.below(NAMES.len())]];
                let except = &except[..input.below(2)];
                let all: BTreeSet<u32> = (0..16).collect();
                let mut got = Vec::new();
                rooms.for_each_target(target_rooms, except, all.iter().copied(), |m| got.push(m));
                let got_set: BTreeSet<u32> = got.iter().copied().collect();
                assert_eq!(got.len(), got_set.len(), "a target visited twice");
                let members_of = |r: &str| model.get(r).cloned().unwrap_or_default();
                let mut want: BTreeSet<u32> = if target_rooms.is_empty() {
                    all.clone()
                } else {
                    target_rooms.iter().flat_map(|r| members_of(r)).collect()
                };
                for r in except {
                    for m in members_of(r) {
                        want.remove(&m);
                    }
                }
                assert_eq!(got_set, want, "broadcast targets");
            }
        }
        // The room just touched after every step, every room at the end: checking them all
        // each step would make the target quadratic in its input.
        assert_eq!(rooms.len(), model.len(), "room count");
        assert_room(&rooms, &model, room);
    }
    for name in NAMES {
        assert_room(&rooms, &model, name);
    }
}

fn assert_room(rooms: &Rooms, model: &HashMap<&str, BTreeSet<u32>>, name: &str) {
    let members = model.get(name).cloned().unwrap_or_default();
    let got: BTreeSet<u32> = rooms.members(name).collect();
    assert_eq!(got, members, "members of {name:?}");
    for m in 0..16 {
        assert_eq!(
            rooms.contains(name, m),
            members.contains(&m),
            "{m} in {name:?}"
        );
    }
}
