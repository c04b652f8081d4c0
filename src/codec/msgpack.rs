//! Socket.IO packets as npm `socket.io-msgpack-parser` 3.x writes and reads them: one
//! MessagePack map `{type, nsp, data, id}` per packet, sent as one binary Engine.IO message,
//! binary values inline as MessagePack `bin` (no attachments, no BINARY_* types).
//!
//! The conversion happens here, at the edge: [`decode`] turns such a map into the same
//! [`sio::Packet`] the JSON decoder gives (the data as validated JSON, each `bin` a
//! `{"_placeholder":true,"num":i}` with its bytes as attachment `i`, so handlers can't tell the
//! parsers apart), and [`encode`] / [`encode_event`] write a packet whose data is JSON plus
//! attachments back as such a map. The value conversion itself is `codec::notepack`'s (the
//! parser's notepack.io 2.2 writes the same forms as the Redis adapter's notepack 3, plus the
//! `d4 00 00` it writes for `undefined`, which both read as absent).
//!
//! Checks are the parser's `checkPacket` (type 0-4, a string namespace, an integer id, the data
//! each type allows) plus socket.io-parser's event-name rule, so a handler sees the same packets
//! whichever parser the server speaks; a `nil` data or id counts as absent (python-socketio's
//! msgpack serializer writes `data: nil` where the Node parser leaves the key out). Hostile input (truncated, declared lengths past the end,
//! nesting, wrong types) is an error, never a panic or an allocation of a declared length.
//!
//! Pure: no I/O, no clock, no runtime; depends on `rmp`/`rmpv`, `bytes` and `codec::{json,
//! notepack, sio}` only.

use std::fmt;
use std::io::Write;

use bytes::Bytes;
use rmpv::Value;

use crate::codec::json;
use crate::codec::notepack::{self, NotepackError};
use crate::codec::sio::{self, PacketType, MAX_ACK_ID};

/// Why a MessagePack packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgpackError {
    /// Not one complete MessagePack value, or not valid event data (see the inner error).
    Value(NotepackError),
    /// The value is not a map.
    NotAMap,
    /// `type` missing, not an integer, or not 0-4.
    BadType,
    /// `nsp` missing or not a string.
    BadNamespace,
    /// `id` not an integer in `0..=2^53-1`.
    BadAckId,
    /// `data` not what the packet type allows.
    InvalidPayload,
    /// More `bin` values than the caller allows.
    TooManyAttachments,
}

impl fmt::Display for MsgpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MsgpackError::Value(error) => write!(f, "MessagePack packet: {error}"),
            MsgpackError::NotAMap => f.write_str("MessagePack packet is not a map"),
            MsgpackError::BadType => f.write_str("bad MessagePack packet type"),
            MsgpackError::BadNamespace => f.write_str("bad MessagePack packet namespace"),
            MsgpackError::BadAckId => f.write_str("bad MessagePack packet id"),
            MsgpackError::InvalidPayload => f.write_str("invalid MessagePack packet data"),
            MsgpackError::TooManyAttachments => f.write_str("too many binary values"),
        }
    }
}

impl std::error::Error for MsgpackError {}

impl From<NotepackError> for MsgpackError {
    fn from(error: NotepackError) -> Self {
        MsgpackError::Value(error)
    }
}

/// notepack.io 2.x writes `undefined` as ext 0 of one byte (`d4 00 00`): a key holding it is
/// absent, as `JSON.stringify` and the parser's checks (`data === undefined`) see it. `nil`
/// counts as absent too: python-socketio's msgpack serializer writes `data: nil` for a CONNECT
/// without auth and a DISCONNECT (where the Node parser would refuse it), and no packet type
/// takes a `null` for data or id.
fn is_absent(value: &Value) -> bool {
    matches!(value, Value::Nil) || matches!(value, Value::Ext(0, data) if data.len() == 1)
}

/// Decodes one binary Engine.IO message as a packet plus its binary values (in placeholder
/// order). At most `max_attachments` `bin` values are accepted.
pub fn decode(
    bytes: &[u8],
    max_attachments: usize,
) -> Result<(sio::Packet, Vec<Bytes>), MsgpackError> {
    let Value::Map(entries) = notepack::read(bytes)? else {
        return Err(MsgpackError::NotAMap);
    };
    let (mut kind, mut nsp, mut id, mut data) = (None, None, None, None);
    // Duplicate keys: the last wins, as when JavaScript builds the object.
    for (key, value) in entries {
        let field = match key.as_str() {
            Some("type") => &mut kind,
            Some("nsp") => &mut nsp,
            Some("id") => &mut id,
            Some("data") => &mut data,
            // `options` (socket.io-client's compress flag) and anything else: not ours.
            _ => continue,
        };
        *field = Some(value).filter(|value| !is_absent(value));
    }
    let kind = match kind.as_ref().and_then(Value::as_u64) {
        Some(0) => PacketType::Connect,
        Some(1) => PacketType::Disconnect,
        Some(2) => PacketType::Event,
        Some(3) => PacketType::Ack,
        Some(4) => PacketType::ConnectError,
        _ => return Err(MsgpackError::BadType),
    };
    let nsp = match nsp {
        Some(Value::String(nsp)) => nsp.into_str().ok_or(MsgpackError::BadNamespace)?,
        _ => return Err(MsgpackError::BadNamespace),
    };
    let ack_id = match id {
        None => None,
        Some(id) => Some(
            id.as_u64()
                .filter(|&id| id <= MAX_ACK_ID)
                .ok_or(MsgpackError::BadAckId)?,
        ),
    };
    // The parser's `isDataValid`.
    let allowed = matches!(
        (kind, &data),
        (PacketType::Connect, None | Some(Value::Map(_)))
            | (PacketType::Disconnect, None)
            | (
                PacketType::ConnectError,
                Some(Value::String(_) | Value::Map(_))
            )
            | (PacketType::Event | PacketType::Ack, Some(Value::Array(_)))
    );
    if !allowed {
        return Err(MsgpackError::InvalidPayload);
    }
    let (json, attachments) = match data {
        None => (Vec::new(), Vec::new()),
        Some(value) => {
            let decoded = notepack::decode_value(value)?;
            (decoded.json, decoded.attachments)
        }
    };
    if attachments.len() > max_attachments {
        return Err(MsgpackError::TooManyAttachments);
    }
    // A map that spells a placeholder itself must point at a real `bin`, as a binary packet's
    // must in the JSON parser: handlers and relays trust every placeholder.
    if matches!(kind, PacketType::Event | PacketType::Ack) {
        json::check_placeholders(&json, attachments.len())
            .map_err(|_| MsgpackError::InvalidPayload)?;
    }
    let data = Bytes::from(json);
    // The JSON decoder's rules (a non-reserved event name, ...) on the converted data.
    let elements = sio::validate_payload(kind, &data).map_err(|_| MsgpackError::InvalidPayload)?;
    let kind = match kind {
        PacketType::Event if !attachments.is_empty() => PacketType::BinaryEvent,
        PacketType::Ack if !attachments.is_empty() => PacketType::BinaryAck,
        kind => kind,
    };
    let packet = sio::Packet {
        kind,
        nsp: Bytes::from(nsp),
        query: Bytes::new(),
        attachments: attachments.len(),
        ack_id,
        data,
        elements,
    };
    Ok((packet, attachments))
}

/// The parser's packet type for ours: it has no BINARY_* types, binary values travel inline.
fn type_number(kind: PacketType) -> u8 {
    match kind {
        PacketType::BinaryEvent => PacketType::Event as u8,
        PacketType::BinaryAck => PacketType::Ack as u8,
        kind => kind as u8,
    }
}

/// Writes a packet whose `data` is JSON (empty for none: DISCONNECT, a v3 CONNECT) with
/// placeholders for `attachments`, as the parser's encoder would: `{type, nsp, data, id}`,
/// `data` and `id` left out when absent.
pub fn encode(
    out: &mut impl Write,
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    data: &[u8],
    attachments: &[Bytes],
) -> Result<(), MsgpackError> {
    let data = if data.is_empty() {
        None
    } else {
        Some(notepack::json_to_value(data, attachments)?)
    };
    write_map(out, kind, nsp, ack_id, data.as_ref());
    Ok(())
}

/// Writes an EVENT whose data is `[name, ...args]`: `args` is the arguments' JSON,
/// comma-separated without brackets (possibly empty), with placeholders for `attachments`.
pub fn encode_event(
    out: &mut impl Write,
    nsp: &str,
    name: &str,
    args: &[u8],
    attachments: &[Bytes],
    ack_id: Option<u64>,
) -> Result<(), MsgpackError> {
    let data = notepack::event_to_value(name, args, attachments)?;
    write_map(out, PacketType::Event, nsp, ack_id, Some(&data));
    Ok(())
}

/// Writes the map; errors of `out` are ignored: every sink used here writes to memory.
fn write_map(
    out: &mut impl Write,
    kind: PacketType,
    nsp: &str,
    ack_id: Option<u64>,
    data: Option<&Value>,
) {
    let len = 2 + u32::from(data.is_some()) + u32::from(ack_id.is_some());
    let _ = rmp::encode::write_map_len(out, len);
    let _ = rmp::encode::write_str(out, "type");
    let _ = rmp::encode::write_uint(out, u64::from(type_number(kind)));
    let _ = rmp::encode::write_str(out, "nsp");
    let _ = rmp::encode::write_str(out, nsp);
    if let Some(data) = data {
        let _ = rmp::encode::write_str(out, "data");
        let _ = rmpv::encode::write_value(out, data);
    }
    if let Some(id) = ack_id {
        let _ = rmp::encode::write_str(out, "id");
        let _ = rmp::encode::write_uint(out, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn data(packet: &sio::Packet) -> &str {
        std::str::from_utf8(&packet.data).unwrap()
    }

    // Each input below is what npm socket.io-msgpack-parser 3.0.2's encoder wrote for the
    // packet socket.io-client 4.8 builds (key order and `undefined` included).
    #[test]
    fn reads_what_the_client_writes() {
        // {type: 0, data: undefined, nsp: "/"}: a CONNECT without auth.
        let (packet, bins) = decode(&hex("83a47479706500a464617461d40000a36e7370a12f"), 8).unwrap();
        assert_eq!(packet.kind, PacketType::Connect);
        assert_eq!(packet.nsp_str(), "/");
        assert!(packet.data.is_empty() && bins.is_empty());

        let connect = "83a47479706500a46461746181a5746f6b656ea174a36e7370a52f63686174";
        let (packet, _) = decode(&hex(connect), 8).unwrap();
        assert_eq!(
            (packet.nsp_str(), data(&packet)),
            ("/chat", r#"{"token":"t"}"#)
        );

        // An event with an ack id, a Buffer and the client's `options`.
        let event = "85a47479706502a46461746193a2686901c403010203a76f7074696f6e7381a8636f6d7072657373c3a2696407a36e7370a12f";
        let (packet, bins) = decode(&hex(event), 8).unwrap();
        assert_eq!(packet.kind, PacketType::BinaryEvent);
        assert_eq!(packet.ack_id, Some(7));
        assert_eq!(data(&packet), r#"["hi",1,{"_placeholder":true,"num":0}]"#);
        assert_eq!(packet.elements.len(), 3);
        assert_eq!(packet.attachments, 1);
        assert_eq!(bins, vec![Bytes::from_static(&[1, 2, 3])]);

        let ack = "84a47479706503a2696400a4646174619181a161c40109a36e7370a12f";
        let (packet, bins) = decode(&hex(ack), 8).unwrap();
        assert_eq!(packet.kind, PacketType::BinaryAck);
        assert_eq!(packet.ack_id, Some(0));
        assert_eq!(data(&packet), r#"[{"a":{"_placeholder":true,"num":0}}]"#);
        assert_eq!(bins, vec![Bytes::from_static(&[9])]);

        let (packet, _) = decode(&hex("82a47479706501a36e7370a52f63686174"), 8).unwrap();
        assert_eq!(
            (packet.kind, packet.nsp_str()),
            (PacketType::Disconnect, "/chat")
        );
    }

    fn map(entries: Vec<(&str, Value)>) -> Vec<u8> {
        let value = Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        );
        notepack::write(&value)
    }

    fn event(items: Vec<Value>) -> Vec<u8> {
        map(vec![
            ("type", Value::from(2)),
            ("nsp", Value::from("/")),
            ("data", Value::Array(items)),
        ])
    }

    #[test]
    fn refuses_what_the_parser_refuses() {
        let nsp = || ("nsp", Value::from("/"));
        let cases: Vec<(&str, Vec<u8>, MsgpackError)> = vec![
            ("not a map", hex("92a16101"), MsgpackError::NotAMap),
            ("no type", map(vec![nsp()]), MsgpackError::BadType),
            (
                "type 5",
                map(vec![("type", Value::from(5)), nsp()]),
                MsgpackError::BadType,
            ),
            (
                "type -1",
                map(vec![("type", Value::from(-1)), nsp()]),
                MsgpackError::BadType,
            ),
            (
                "type text",
                map(vec![("type", Value::from("2")), nsp()]),
                MsgpackError::BadType,
            ),
            (
                "type float",
                map(vec![("type", Value::F64(2.0)), nsp()]),
                MsgpackError::BadType,
            ),
            (
                "no nsp",
                map(vec![("type", Value::from(1))]),
                MsgpackError::BadNamespace,
            ),
            (
                "nsp number",
                map(vec![("type", Value::from(1)), ("nsp", Value::from(1))]),
                MsgpackError::BadNamespace,
            ),
            (
                "nsp not UTF-8",
                hex("82a47479706501a36e7370a1ff"),
                MsgpackError::BadNamespace,
            ),
            (
                "negative id",
                map(vec![
                    ("type", Value::from(3)),
                    nsp(),
                    ("id", Value::from(-1)),
                    ("data", Value::Array(vec![])),
                ]),
                MsgpackError::BadAckId,
            ),
            (
                "id past 2^53 - 1",
                map(vec![
                    ("type", Value::from(3)),
                    nsp(),
                    ("id", Value::from(MAX_ACK_ID + 1)),
                    ("data", Value::Array(vec![])),
                ]),
                MsgpackError::BadAckId,
            ),
            (
                "id text",
                map(vec![
                    ("type", Value::from(3)),
                    nsp(),
                    ("id", Value::from("1")),
                    ("data", Value::Array(vec![])),
                ]),
                MsgpackError::BadAckId,
            ),
            (
                "event without data",
                map(vec![("type", Value::from(2)), nsp()]),
                MsgpackError::InvalidPayload,
            ),
            (
                "event data a map",
                map(vec![
                    ("type", Value::from(2)),
                    nsp(),
                    ("data", Value::Map(vec![])),
                ]),
                MsgpackError::InvalidPayload,
            ),
            ("empty event", event(vec![]), MsgpackError::InvalidPayload),
            (
                "reserved name",
                event(vec![Value::from("connect")]),
                MsgpackError::InvalidPayload,
            ),
            (
                "name an array",
                event(vec![Value::Array(vec![])]),
                MsgpackError::InvalidPayload,
            ),
            (
                "disconnect with data",
                map(vec![
                    ("type", Value::from(1)),
                    nsp(),
                    ("data", Value::from("x")),
                ]),
                MsgpackError::InvalidPayload,
            ),
            (
                "connect with an array",
                map(vec![
                    ("type", Value::from(0)),
                    nsp(),
                    ("data", Value::Array(vec![])),
                ]),
                MsgpackError::InvalidPayload,
            ),
            (
                "event with null",
                map(vec![("type", Value::from(2)), nsp(), ("data", Value::Nil)]),
                MsgpackError::InvalidPayload,
            ),
            (
                "a placeholder with no bin",
                event(vec![
                    Value::from("e"),
                    Value::Map(vec![
                        (Value::from("_placeholder"), Value::from(true)),
                        (Value::from("num"), Value::from(0)),
                    ]),
                ]),
                MsgpackError::InvalidPayload,
            ),
            (
                "too many bins",
                event(vec![
                    Value::from("e"),
                    Value::Binary(vec![1]),
                    Value::Binary(vec![2]),
                    Value::Binary(vec![3]),
                ]),
                MsgpackError::TooManyAttachments,
            ),
            (
                "empty input",
                Vec::new(),
                MsgpackError::Value(NotepackError::Malformed),
            ),
            (
                "truncated",
                hex("83a474797065"),
                MsgpackError::Value(NotepackError::Malformed),
            ),
            (
                "trailing bytes",
                [event(vec![Value::from("e")]), vec![0xc0]].concat(),
                MsgpackError::Value(NotepackError::Malformed),
            ),
            // Declared lengths far past the end: refused before anything that size exists.
            (
                "str32 of 4 GiB",
                hex("81a3nspdbffffffff".replace("nsp", "6e7370").as_str()),
                MsgpackError::Value(NotepackError::Malformed),
            ),
            (
                "map32 of 4G entries",
                hex("dfffffffff"),
                MsgpackError::Value(NotepackError::Malformed),
            ),
            (
                "array32 of 4G items",
                hex("83a47479706502a36e7370a12fa464617461ddffffffff"),
                MsgpackError::Value(NotepackError::Malformed),
            ),
            (
                "bin32 of 4 GiB",
                hex("83a47479706502a36e7370a12fa46461746192a165c6ffffffff"),
                MsgpackError::Value(NotepackError::Malformed),
            ),
        ];
        for (what, bytes, expected) in cases {
            assert_eq!(decode(&bytes, 2).map(|_| ()), Err(expected), "{what}");
        }
        // Nesting past the JSON limit.
        let mut deep = Value::from(1);
        for _ in 0..(json::MAX_DEPTH + 8) {
            deep = Value::Array(vec![deep]);
        }
        let bytes = event(vec![Value::from("e"), deep]);
        assert_eq!(
            decode(&bytes, 2).map(|_| ()),
            Err(MsgpackError::Value(NotepackError::TooDeep))
        );
    }

    #[test]
    fn python_socketios_nil_data_and_id_are_absent() {
        for kind in [0, 1] {
            let bytes = map(vec![
                ("type", Value::from(kind)),
                ("data", Value::Nil),
                ("nsp", Value::from("/")),
                ("id", Value::Nil),
            ]);
            let (packet, _) = decode(&bytes, 2).unwrap();
            assert!(packet.data.is_empty() && packet.ack_id.is_none());
        }
    }

    #[test]
    fn undefined_and_unknown_keys_are_absent_and_the_last_duplicate_wins() {
        let bytes = map(vec![
            ("type", Value::from(9)),
            ("nsp", Value::from("/a")),
            ("id", Value::Ext(0, vec![0])),
            ("type", Value::from(2)),
            ("whatever", Value::Nil),
            (
                "data",
                Value::Array(vec![Value::from("e"), Value::Ext(0, vec![0])]),
            ),
        ]);
        let (packet, _) = decode(&bytes, 2).unwrap();
        assert_eq!((packet.kind, packet.ack_id), (PacketType::Event, None));
        assert_eq!(data(&packet), r#"["e",null]"#);
    }

    fn written(write: impl FnOnce(&mut Vec<u8>) -> Result<(), MsgpackError>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        out.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn writes_what_the_server_parser_writes() {
        // {type: 2, nsp: "/", data: ["a", 1]}
        assert_eq!(
            written(|out| encode_event(out, "/", "a", b"1", &[], None)),
            "83a47479706502a36e7370a12fa46461746192a16101"
        );
        // An ack with a bin and an id; BINARY_ACK is written as ACK.
        let bins = [Bytes::from_static(&[7, 8])];
        assert_eq!(
            written(|out| encode(
                out,
                PacketType::BinaryAck,
                "/c",
                Some(300),
                br#"[{"_placeholder":true,"num":0}]"#,
                &bins
            )),
            "84a47479706503a36e7370a22f63a46461746191c4020708a26964cd012c"
        );
        // DISCONNECT has no data key at all (the client checks `data === undefined`).
        assert_eq!(
            written(|out| encode(out, PacketType::Disconnect, "/", None, b"", &[])),
            "82a47479706501a36e7370a12f"
        );
        // A CONNECT reply reads back as the client's decoder would see it.
        let mut out = Vec::new();
        encode(
            &mut out,
            PacketType::Connect,
            "/",
            None,
            br#"{"sid":"abc"}"#,
            &[],
        )
        .unwrap();
        let (packet, _) = decode(&out, 0).unwrap();
        assert_eq!(data(&packet), r#"{"sid":"abc"}"#);
        // A placeholder with no attachment can't be written.
        assert!(encode_event(
            &mut Vec::new(),
            "/",
            "e",
            br#"{"_placeholder":true,"num":0}"#,
            &[],
            None
        )
        .is_err());
    }

    fn arb_arg() -> impl Strategy<Value = (String, Option<Vec<u8>>)> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        let json = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec(("[a-z]{1,8}", inner), 0..6)
                    .prop_map(|e| serde_json::Value::Object(e.into_iter().collect())),
            ]
        });
        prop_oneof![
            json.prop_map(|v| (serde_json::to_string(&v).unwrap(), None)),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| (String::new(), Some(b))),
        ]
    }

    proptest! {
        #[test]
        fn events_round_trip(
            name in "[^\\x00]{1,12}".prop_filter("not reserved", |n| !sio::RESERVED_EVENTS.contains(&n.as_str())),
            args in prop::collection::vec(arb_arg(), 0..6),
            nsp in "/[a-z]{0,6}",
            ack in prop::option::of(0..=MAX_ACK_ID),
        ) {
            let (mut json_args, mut bins) = (Vec::new(), Vec::new());
            for (i, (json, bin)) in args.iter().enumerate() {
                if i > 0 {
                    json_args.push(b',');
                }
                match bin {
                    Some(bytes) => {
                        write!(json_args, r#"{{"_placeholder":true,"num":{}}}"#, bins.len()).unwrap();
                        bins.push(Bytes::from(bytes.clone()));
                    }
                    None => json_args.extend_from_slice(json.as_bytes()),
                }
            }
            let mut out = Vec::new();
            encode_event(&mut out, &nsp, &name, &json_args, &bins, ack).unwrap();
            let (packet, back) = decode(&out, 64).unwrap();
            let mut expected = Vec::new();
            json::write_str(&mut expected, &name);
            if !json_args.is_empty() {
                expected.push(b',');
                expected.extend_from_slice(&json_args);
            }
            prop_assert_eq!(&packet.data[1..packet.data.len() - 1], &expected[..]);
            prop_assert_eq!(packet.elements.len(), args.len() + 1);
            prop_assert_eq!(packet.nsp_str(), nsp.as_str());
            prop_assert_eq!(packet.ack_id, ack);
            prop_assert_eq!(back, bins);
        }

        #[test]
        fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes, 4);
        }

        #[test]
        fn never_panics_on_a_valid_head_with_random_data(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
            let mut input = hex("83a47479706502a36e7370a12fa464617461");
            input.extend_from_slice(&bytes);
            let _ = decode(&input, 4);
        }
    }
}
