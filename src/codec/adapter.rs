//! The Redis adapter's wire messages: channel names and every message that
//! `@socket.io/redis-adapter` 8.3 (classic and sharded) and `@socket.io/redis-emitter` 5.1
//! publish, decoded from bytes into typed values and encoded back as Node writes them.
//!
//! Pure: no I/O, no clock, no runtime, no other ringcast module. It must not depend on Redis, on
//! the Socket.IO layer or on how event data becomes Socket.IO packets: a packet's `data`, an ack's
//! value, `socket.data` and a handshake stay opaque [`rmpv::Value`]s here, and `codec::notepack`
//! converts them.
//!
//! What is where (section A of `shared/spec/ecosystem-protocols.md`):
//!
//! - **Channels** (A.2, A.7): builders for every channel name and the subscription pattern;
//!   [`classic_channel`], [`sharded_channel`] and [`broadcast_room`] classify the channel a
//!   message arrived on, taking the room as Node does (the text after `<prefix>#<nsp>#` less
//!   its last character).
//! - **Broadcasts** (A.3, B.1): [`BroadcastMessage`], the MessagePack array `[uid, packet, opts]`.
//! - **Requests and responses** (A.4, B.1): [`Request`] and [`Response`]; JSON or MessagePack by
//!   the first byte (`{` is JSON).
//! - **The sharded adapter** (A.7): [`ClusterMessage`].
//!
//! **Decoding** refuses inputs over a caller's maximum before reading them ([`DEFAULT_MAX_LEN`]),
//! containers nested deeper than [`MAX_DEPTH`], MessagePack strings that are not UTF-8, trailing
//! bytes, and fields of the wrong type; every refusal is an [`AdapterError`], never a panic.
//! Keys may come in any order, unknown keys are ignored, a key given twice counts with its last
//! value (as `JSON.parse` and notepack do), `null` counts as absent for every typed field, and a
//! room given as a number is read as its decimal string.
//!
//! **Encoding** writes Node's key order, byte for byte as captured. JSON messages whose opaque
//! values JSON cannot carry (binary, MessagePack extensions such as Dates, NaN, ±Infinity,
//! float32, non-string map keys) are written as MessagePack instead, which every Node receiver of
//! those channels also reads (the first-byte test); this is the sharded adapter's own rule, and
//! for the classic adapter it keeps values that Node's `JSON.stringify` would mangle.
//!
//! rmpv (1.3) does not preallocate arrays or maps from a declared length, and preallocates at
//! most 64 KiB for a string or binary before reading it, so a hostile length costs no more than
//! that. A decoded message may still take up to about 40 times its size in memory (an
//! `rmpv::Value` is 40 bytes, a MessagePack `nil` one), which the caller's maximum bounds.

use std::fmt;

use rmpv::Value;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};

/// The default bound on one message's size, in bytes: larger ones are refused unread.
pub const DEFAULT_MAX_LEN: usize = 1 << 20;

/// How deep containers may nest in one message, the message's own envelope included (a
/// broadcast's `data` array is at depth 3, a JSON request's at depth 2).
pub const MAX_DEPTH: usize = 100;

/// The uid the emitter publishes with (B).
pub const EMITTER_UID: &str = "emitter";

/// The channel prefix both adapters and the emitter use by default (`key` / `channelPrefix`).
pub const DEFAULT_PREFIX: &str = "socket.io";

/// rmpv counts about two levels per container (the value and its body) plus a few for a leaf;
/// this lets every message within [`MAX_DEPTH`] through, and [`check`] then applies the exact
/// bound.
const RMPV_DEPTH: usize = 2 * MAX_DEPTH + 8;

// ------------------------------------------------------------------------------------------
// Errors

/// Why a message was refused. The caller drops the message and counts the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterError {
    /// Longer than the maximum the caller allows; not read.
    TooLarge,
    /// Not valid JSON (syntax, trailing characters, a number out of range, invalid UTF-8).
    Json,
    /// Not valid MessagePack (truncated, an unknown marker, trailing bytes).
    MessagePack,
    /// Containers nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A MessagePack string is not UTF-8.
    InvalidUtf8,
    /// Not the container the message must be: a map, or for a broadcast an array of three.
    Shape,
    /// A field Node needs is missing (or `null`).
    Missing(&'static str),
    /// A field has a type Node cannot use.
    WrongType(&'static str),
    /// A `type` number this message kind does not have.
    UnknownType(u64),
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterError::TooLarge => f.write_str("adapter message too large"),
            AdapterError::Json => f.write_str("adapter message is not valid JSON"),
            AdapterError::MessagePack => f.write_str("adapter message is not valid MessagePack"),
            AdapterError::TooDeep => f.write_str("adapter message nests too deeply"),
            AdapterError::InvalidUtf8 => {
                f.write_str("adapter message has a string that is not UTF-8")
            }
            AdapterError::Shape => f.write_str("adapter message has the wrong shape"),
            AdapterError::Missing(field) => write!(f, "adapter message lacks `{field}`"),
            AdapterError::WrongType(field) => write!(f, "adapter message has a bad `{field}`"),
            AdapterError::UnknownType(n) => write!(f, "adapter message has unknown type {n}"),
        }
    }
}

impl std::error::Error for AdapterError {}

// ------------------------------------------------------------------------------------------
// Channels (A.2, A.7)

/// `<prefix>#<nsp>#`: the classic adapter's broadcasts to the whole namespace or to several
/// rooms, and the sharded adapter's main channel.
pub fn broadcast_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// `<prefix>#<nsp>#<room>#`: a broadcast to exactly one room (classic; sharded in the dynamic
/// modes).
pub fn room_channel(prefix: &str, nsp: &str, room: &str) -> String {
    format!("{prefix}#{nsp}#{room}#")
}

/// `<prefix>#<nsp>#*`: what a classic node PSUBSCRIBEs to for its namespace's broadcasts. It is
/// a Redis glob: `*`, `?`, `[` or `\` in the prefix or the namespace act as glob syntax there, as
/// they do for Node.
pub fn broadcast_pattern(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#*")
}

/// `<prefix>-request#<nsp>#`: the classic adapter's requests, all types.
pub fn request_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}-request#{nsp}#")
}

/// `<prefix>-response#<nsp>#`: the classic adapter's shared response channel (the default).
pub fn response_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}-response#{nsp}#")
}

/// `<prefix>-response#<nsp>#<uid>#`: classic responses addressed to one node
/// (`publishOnSpecificResponseChannel`).
pub fn specific_response_channel(prefix: &str, nsp: &str, uid: &str) -> String {
    format!("{prefix}-response#{nsp}#{uid}#")
}

/// `<prefix>#<nsp>#<uid>#`: the sharded adapter's responses to one node. It has the shape of a
/// room channel; [`sharded_channel`] tells them apart by the node's own uid.
pub fn sharded_response_channel(prefix: &str, nsp: &str, uid: &str) -> String {
    room_channel(prefix, nsp, uid)
}

/// The text after `<prefix>#<nsp>#` in `channel`, less its last character, as Node takes a
/// broadcast's room (`channel.slice(prefix.length, -1)`): `Some("")` for the namespace channel
/// (and for anything one character longer), `Some(room)` for `<prefix>#<nsp>#<room>#`, `None`
/// when the channel is not under this namespace's prefix. Namespaces and rooms may contain `#`:
/// `socket.io#/a#b#` is both namespace `/a#b`'s channel and room `b` of `/a`, and a message's own
/// namespace field settles it.
pub fn broadcast_room<'a>(channel: &'a str, prefix: &str, nsp: &str) -> Option<&'a str> {
    let rest = strip3(channel, prefix, "#", nsp)?.strip_prefix('#')?;
    Some(without_last_char(rest))
}

/// What a channel is to one namespace's classic adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicChannel<'a> {
    /// `<prefix>#<nsp>#…`: a broadcast; `room` is empty for the namespace channel (see
    /// [`broadcast_room`]).
    Broadcast {
        /// The room the channel names, or empty.
        room: &'a str,
    },
    /// `<prefix>-request#<nsp>#`.
    Request,
    /// `<prefix>-response#<nsp>#`, the shared response channel.
    Response,
    /// `<prefix>-response#<nsp>#<uid>#`: responses for the node `uid` (taken as a room is).
    ResponseTo {
        /// The addressed node's uid.
        uid: &'a str,
    },
}

/// Classifies a channel a classic node received a message on, for namespace `nsp` under
/// `prefix`; `None` if it is none of that namespace's channels.
pub fn classic_channel<'a>(
    channel: &'a str,
    prefix: &str,
    nsp: &str,
) -> Option<ClassicChannel<'a>> {
    if let Some(rest) = strip3(channel, prefix, "-response#", nsp) {
        let rest = rest.strip_prefix('#')?;
        return Some(if rest.is_empty() {
            ClassicChannel::Response
        } else {
            ClassicChannel::ResponseTo {
                uid: without_last_char(rest),
            }
        });
    }
    if strip3(channel, prefix, "-request#", nsp) == Some("#") {
        return Some(ClassicChannel::Request);
    }
    broadcast_room(channel, prefix, nsp).map(|room| ClassicChannel::Broadcast { room })
}

/// What a channel is to one namespace's sharded adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardedChannel<'a> {
    /// `<prefix>#<nsp>#`: every message type.
    Main,
    /// `<prefix>#<nsp>#<own uid>#`: responses to this node.
    Response,
    /// `<prefix>#<nsp>#<room>#`: a broadcast to one room (dynamic modes).
    Room(&'a str),
}

/// Classifies a channel a sharded node with uid `own_uid` received a message on; `None` if it is
/// not under `<prefix>#<nsp>#`. Node processes a message from `Response` with its response
/// handler and everything else with its message handler.
pub fn sharded_channel<'a>(
    channel: &'a str,
    prefix: &str,
    nsp: &str,
    own_uid: &str,
) -> Option<ShardedChannel<'a>> {
    let rest = strip3(channel, prefix, "#", nsp)?.strip_prefix('#')?;
    Some(if rest.is_empty() {
        ShardedChannel::Main
    } else if rest.strip_suffix('#') == Some(own_uid) {
        ShardedChannel::Response
    } else {
        ShardedChannel::Room(without_last_char(rest))
    })
}

/// The channel a classic node or the emitter publishes a broadcast to: the room's channel when
/// the broadcast targets exactly one room (duplicates count once, as in Node's `Set`), the
/// namespace channel otherwise. `except` never matters.
pub fn classic_publish_channel(prefix: &str, nsp: &str, rooms: &[String]) -> String {
    match rooms.split_first() {
        Some((first, rest)) if rest.iter().all(|r| r == first) => room_channel(prefix, nsp, first),
        _ => broadcast_channel(prefix, nsp),
    }
}

/// The sharded adapter's `subscriptionMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// Two channels per namespace, no room channels.
    Static,
    /// Room channels for rooms that do not look like a socket id (the default).
    #[default]
    Dynamic,
    /// Room channels for every room, socket ids included.
    DynamicPrivate,
}

/// Whether Node's sharded adapter takes `room` for a socket id: 20 UTF-16 code units long.
pub fn looks_like_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

fn strip3<'a>(channel: &'a str, a: &str, b: &str, c: &str) -> Option<&'a str> {
    channel.strip_prefix(a)?.strip_prefix(b)?.strip_prefix(c)
}

fn without_last_char(s: &str) -> &str {
    s.char_indices().next_back().map_or("", |(i, _)| &s[..i])
}

// ------------------------------------------------------------------------------------------
// Shared parts

/// A Socket.IO packet as the adapters carry it, before Socket.IO encodes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// `type`: the Socket.IO packet type (0–6); 2 (EVENT) for everything the adapters send.
    pub kind: u8,
    /// `data`: an array, `[event, ...args]` for an event, as MessagePack values.
    pub data: Value,
    /// `nsp`: the classic adapter and the emitter always write it; the sharded adapter never does
    /// (its message names the namespace). A classic receiver takes a missing one for `/`.
    pub nsp: Option<String>,
}

impl Packet {
    /// The packet's namespace as a classic receiver reads it: `/` when missing.
    pub fn nsp_or_root(&self) -> &str {
        self.nsp.as_deref().unwrap_or("/")
    }
}

/// A broadcast's flags (`opts.flags`); every one may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `volatile`.
    pub volatile: Option<bool>,
    /// `compress`.
    pub compress: Option<bool>,
    /// `timeout`, in milliseconds: only in broadcasts with acks (and the sharded FETCH_SOCKETS).
    pub timeout: Option<u64>,
    /// `expectSingleResponse`, set by `RemoteSocket.emit`.
    pub expect_single_response: Option<bool>,
}

/// Which sockets a broadcast or an operation selects (`opts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOpts {
    /// `rooms`: empty means the whole namespace.
    pub rooms: Vec<String>,
    /// `except`: rooms (socket ids among them) whose members are left out.
    pub except: Vec<String>,
    /// `flags`: written by broadcasts (and the sharded adapter), absent from the classic
    /// adapter's operation requests.
    pub flags: Option<Flags>,
    /// `offset`: ringcast's own key, the connection state recovery offset a ringcast node gave
    /// a stored broadcast, so every node delivers it with the same one. Node's adapters read
    /// only `rooms`, `except` and `flags`, and ignore it.
    pub offset: Option<String>,
}

/// A socket as REMOTE_FETCH / FETCH_SOCKETS_RESPONSE describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    /// `id`: the socket id.
    pub id: String,
    /// `handshake`: Node's handshake object (headers, time, address, xdomain, secure, issued,
    /// url, query, auth), as sent.
    pub handshake: Value,
    /// `rooms`: the socket's rooms, its own id included.
    pub rooms: Vec<String>,
    /// `data`: `socket.data`.
    pub data: Value,
}

// ------------------------------------------------------------------------------------------
// The classic broadcast (A.3)

/// Which key order [`BroadcastMessage::encode_with`] writes `opts` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptsOrder {
    /// The Node server's: `rooms, except, flags`.
    Server,
    /// The emitter's: `rooms, flags, except`.
    Emitter,
}

/// A classic broadcast, published to `<prefix>#<nsp>#` or a room's channel: the MessagePack
/// array `[uid, packet, opts]`. Node reads it with its parser (MessagePack), never as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    /// The sending adapter's uid ([`EMITTER_UID`] from the emitter).
    pub uid: String,
    /// The packet, `type` 2.
    pub packet: Packet,
    /// Rooms, exceptions and flags.
    pub opts: BroadcastOpts,
}

impl BroadcastMessage {
    /// Decodes a broadcast; elements after the third are ignored, as Node's destructuring does.
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, AdapterError> {
        let Value::Array(items) = parse(bytes, max_len, false)? else {
            return Err(AdapterError::Shape);
        };
        let mut items = items.into_iter();
        let (Some(uid), Some(packet), Some(opts)) = (items.next(), items.next(), items.next())
        else {
            return Err(AdapterError::Shape);
        };
        Ok(BroadcastMessage {
            uid: string(uid, "uid")?,
            packet: packet_of(packet, "packet")?,
            opts: opts_of(opts)?,
        })
    }

    /// Appends the message as a Node server writes it (`opts` as `rooms, except, flags`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(OptsOrder::Server, out);
    }

    /// Appends the message with `opts` in the given key order.
    pub fn encode_with(&self, order: OptsOrder, out: &mut Vec<u8>) {
        let tree = Out::Array(vec![
            Out::Str(&self.uid),
            packet_out(&self.packet),
            opts_out(&self.opts, order),
        ]);
        write_msgpack(out, &tree);
    }
}

// ------------------------------------------------------------------------------------------
// Classic requests and responses (A.4, B.1)

/// The classic adapter's `type` numbers: requests 0–7, responses 8 and 9 (6 also names a
/// SERVER_SIDE_EMIT answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    /// 0, SOCKETS (legacy: 8.x answers it, never sends it).
    Sockets,
    /// 1, ALL_ROOMS.
    AllRooms,
    /// 2, REMOTE_JOIN.
    RemoteJoin,
    /// 3, REMOTE_LEAVE.
    RemoteLeave,
    /// 4, REMOTE_DISCONNECT.
    RemoteDisconnect,
    /// 5, REMOTE_FETCH.
    RemoteFetch,
    /// 6, SERVER_SIDE_EMIT.
    ServerSideEmit,
    /// 7, BROADCAST (with ack).
    Broadcast,
    /// 8, BROADCAST_CLIENT_COUNT.
    BroadcastClientCount,
    /// 9, BROADCAST_ACK.
    BroadcastAck,
}

impl RequestType {
    const ALL: [RequestType; 10] = [
        RequestType::Sockets,
        RequestType::AllRooms,
        RequestType::RemoteJoin,
        RequestType::RemoteLeave,
        RequestType::RemoteDisconnect,
        RequestType::RemoteFetch,
        RequestType::ServerSideEmit,
        RequestType::Broadcast,
        RequestType::BroadcastClientCount,
        RequestType::BroadcastAck,
    ];

    /// The type with this number, if any.
    pub fn from_number(n: u64) -> Option<Self> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// The type's number on the wire.
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// A classic request, published to `<prefix>-request#<nsp>#`. Every node receives every
/// request, its own included.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `uid`: the sender's uid; the emitter sends join, leave and disconnect without one.
    pub uid: Option<String>,
    /// What is asked.
    pub body: RequestBody,
}

/// What a classic request asks, by `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// 0, SOCKETS: the ids of the local sockets in `rooms` (legacy, 6.x/7.x).
    Sockets {
        /// `requestId`.
        request_id: String,
        /// `rooms`.
        rooms: Vec<String>,
    },
    /// 1, ALL_ROOMS: the local room names.
    AllRooms {
        /// `requestId`.
        request_id: String,
    },
    /// 2, REMOTE_JOIN: the selected sockets join `rooms`. Nobody answers.
    RemoteJoin {
        /// `opts` (`rooms`, `except`).
        opts: BroadcastOpts,
        /// `rooms`: the rooms to join (a single room is read as a list of one).
        rooms: Vec<String>,
    },
    /// 3, REMOTE_LEAVE: the selected sockets leave `rooms`. Nobody answers.
    RemoteLeave {
        /// `opts` (`rooms`, `except`).
        opts: BroadcastOpts,
        /// `rooms`: the rooms to leave (a single room is read as a list of one).
        rooms: Vec<String>,
    },
    /// 4, REMOTE_DISCONNECT: the selected sockets are disconnected. Nobody answers.
    RemoteDisconnect {
        /// `opts` (`rooms`, `except`).
        opts: BroadcastOpts,
        /// `close`: also close the underlying connection (missing: false).
        close: bool,
    },
    /// 5, REMOTE_FETCH: describe the selected sockets.
    RemoteFetch {
        /// `requestId`.
        request_id: String,
        /// `opts` (`rooms`, `except`).
        opts: BroadcastOpts,
    },
    /// 6, SERVER_SIDE_EMIT: `data` is `[event, ...args]`; with a `requestId`, each other node
    /// answers once.
    ServerSideEmit {
        /// `requestId`: present when an ack is expected.
        request_id: Option<String>,
        /// `data`: an array.
        data: Value,
    },
    /// 7, BROADCAST with ack (MessagePack): each other node answers with
    /// BROADCAST_CLIENT_COUNT, then one BROADCAST_ACK per client ack.
    Broadcast {
        /// `requestId`.
        request_id: String,
        /// `packet`.
        packet: Packet,
        /// `opts` with `flags` (`timeout`).
        opts: BroadcastOpts,
    },
    /// 2 without `opts` (legacy, 6.x): socket `sid` joins `room`; its owner answers
    /// `{requestId}`.
    LegacyJoin {
        /// `requestId`.
        request_id: Option<String>,
        /// `sid`.
        sid: String,
        /// `room`.
        room: String,
    },
    /// 3 without `opts` (legacy): socket `sid` leaves `room`; its owner answers.
    LegacyLeave {
        /// `requestId`.
        request_id: Option<String>,
        /// `sid`.
        sid: String,
        /// `room`.
        room: String,
    },
    /// 4 without `opts` (legacy): socket `sid` is disconnected; its owner answers.
    LegacyDisconnect {
        /// `requestId`.
        request_id: Option<String>,
        /// `sid`.
        sid: String,
        /// `close` (missing: false).
        close: bool,
    },
}

impl RequestBody {
    /// The request's `type`.
    pub fn request_type(&self) -> RequestType {
        match self {
            RequestBody::Sockets { .. } => RequestType::Sockets,
            RequestBody::AllRooms { .. } => RequestType::AllRooms,
            RequestBody::RemoteJoin { .. } | RequestBody::LegacyJoin { .. } => {
                RequestType::RemoteJoin
            }
            RequestBody::RemoteLeave { .. } | RequestBody::LegacyLeave { .. } => {
                RequestType::RemoteLeave
            }
            RequestBody::RemoteDisconnect { .. } | RequestBody::LegacyDisconnect { .. } => {
                RequestType::RemoteDisconnect
            }
            RequestBody::RemoteFetch { .. } => RequestType::RemoteFetch,
            RequestBody::ServerSideEmit { .. } => RequestType::ServerSideEmit,
            RequestBody::Broadcast { .. } => RequestType::Broadcast,
        }
    }

    /// The request's `requestId`, if it has one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            RequestBody::Sockets { request_id, .. }
            | RequestBody::AllRooms { request_id }
            | RequestBody::RemoteFetch { request_id, .. }
            | RequestBody::Broadcast { request_id, .. } => Some(request_id),
            RequestBody::ServerSideEmit { request_id, .. }
            | RequestBody::LegacyJoin { request_id, .. }
            | RequestBody::LegacyLeave { request_id, .. }
            | RequestBody::LegacyDisconnect { request_id, .. } => request_id.as_deref(),
            RequestBody::RemoteJoin { .. }
            | RequestBody::RemoteLeave { .. }
            | RequestBody::RemoteDisconnect { .. } => None,
        }
    }
}

impl Request {
    /// Decodes a request: JSON if the first byte is `{`, MessagePack otherwise. Types 8 and 9
    /// (responses) and unknown numbers are [`AdapterError::UnknownType`].
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, AdapterError> {
        let mut map = Fields::of(parse(bytes, max_len, true)?)?;
        let uid = map.opt_string("uid")?;
        let kind = map.kind::<RequestType>("type")?;
        let body = match kind {
            RequestType::Sockets => RequestBody::Sockets {
                request_id: map.string("requestId")?,
                rooms: map.rooms("rooms")?,
            },
            RequestType::AllRooms => RequestBody::AllRooms {
                request_id: map.string("requestId")?,
            },
            RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect => {
                operation(kind, &mut map)?
            }
            RequestType::RemoteFetch => RequestBody::RemoteFetch {
                request_id: map.string("requestId")?,
                opts: opts_of(map.required("opts")?)?,
            },
            RequestType::ServerSideEmit => RequestBody::ServerSideEmit {
                request_id: map.opt_string("requestId")?,
                data: array(map.required("data")?, "data")?,
            },
            RequestType::Broadcast => RequestBody::Broadcast {
                request_id: map.string("requestId")?,
                packet: packet_of(map.required("packet")?, "packet")?,
                opts: opts_of(map.required("opts")?)?,
            },
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => {
                return Err(AdapterError::UnknownType(kind.number().into()))
            }
        };
        Ok(Request { uid, body })
    }

    /// Appends the request as Node writes it: MessagePack for BROADCAST, JSON otherwise (but
    /// for data JSON cannot carry; see the module doc).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body = &self.body;
        let mut map: Vec<(&'static str, Out<'_>)> = Vec::with_capacity(6);
        if let Some(uid) = &self.uid {
            map.push(("uid", Out::Str(uid)));
        }
        if let Some(id) = body.request_id() {
            map.push(("requestId", Out::Str(id)));
        }
        map.push(("type", Out::Uint(body.request_type().number().into())));
        match body {
            RequestBody::Sockets { rooms, .. } => map.push(("rooms", strs(rooms))),
            RequestBody::AllRooms { .. } => {}
            RequestBody::RemoteJoin { opts, rooms } | RequestBody::RemoteLeave { opts, rooms } => {
                map.push(("opts", opts_out(opts, OptsOrder::Server)));
                map.push(("rooms", strs(rooms)));
            }
            RequestBody::RemoteDisconnect { opts, close } => {
                map.push(("opts", opts_out(opts, OptsOrder::Server)));
                map.push(("close", Out::Bool(*close)));
            }
            RequestBody::RemoteFetch { opts, .. } => {
                map.push(("opts", opts_out(opts, OptsOrder::Server)))
            }
            RequestBody::ServerSideEmit { data, .. } => map.push(("data", Out::Value(data))),
            RequestBody::Broadcast { packet, opts, .. } => {
                map.push(("packet", packet_out(packet)));
                map.push(("opts", opts_out(opts, OptsOrder::Server)));
                return write_msgpack(out, &Out::Map(map));
            }
            RequestBody::LegacyJoin { sid, room, .. }
            | RequestBody::LegacyLeave { sid, room, .. } => {
                map.push(("sid", Out::Str(sid)));
                map.push(("room", Out::Str(room)));
            }
            RequestBody::LegacyDisconnect { sid, close, .. } => {
                map.push(("sid", Out::Str(sid)));
                map.push(("close", Out::Bool(*close)));
            }
        }
        write_json_or_msgpack(out, &Out::Map(map));
    }
}

/// REMOTE_JOIN / LEAVE / DISCONNECT: the `opts` form when `opts` is there, else the legacy
/// single-socket form.
fn operation(kind: RequestType, map: &mut Fields) -> Result<RequestBody, AdapterError> {
    if let Some(opts) = map.optional("opts") {
        let opts = opts_of(opts)?;
        return Ok(match kind {
            RequestType::RemoteJoin => RequestBody::RemoteJoin {
                opts,
                rooms: map.rooms_or_one("rooms")?,
            },
            RequestType::RemoteLeave => RequestBody::RemoteLeave {
                opts,
                rooms: map.rooms_or_one("rooms")?,
            },
            _ => RequestBody::RemoteDisconnect {
                opts,
                close: map.opt_bool("close")?.unwrap_or(false),
            },
        });
    }
    let Some(sid) = map.opt_string("sid")? else {
        return Err(AdapterError::Missing("opts"));
    };
    let request_id = map.opt_string("requestId")?;
    Ok(match kind {
        RequestType::RemoteJoin => RequestBody::LegacyJoin {
            request_id,
            sid,
            room: map.room("room")?,
        },
        RequestType::RemoteLeave => RequestBody::LegacyLeave {
            request_id,
            sid,
            room: map.room("room")?,
        },
        _ => RequestBody::LegacyDisconnect {
            request_id,
            sid,
            close: map.opt_bool("close")?.unwrap_or(false),
        },
    })
}

/// A classic response, published to `<prefix>-response#<nsp>#` (or a node's own response
/// channel). Node tells most kinds apart only by the request it is waiting for under that
/// `requestId`, so [`Response::decode`] asks the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// To SOCKETS: `{requestId, sockets: [sid, ...]}`.
    Sockets {
        /// `requestId`.
        request_id: String,
        /// `sockets`.
        sockets: Vec<String>,
    },
    /// To ALL_ROOMS: `{requestId, rooms}`.
    AllRooms {
        /// `requestId`.
        request_id: String,
        /// `rooms`.
        rooms: Vec<String>,
    },
    /// To REMOTE_FETCH: `{requestId, sockets: [{id, handshake, rooms, data}, ...]}`.
    RemoteFetch {
        /// `requestId`.
        request_id: String,
        /// `sockets`.
        sockets: Vec<RemoteSocket>,
    },
    /// To SERVER_SIDE_EMIT with ack: `{type: 6, requestId, data}` (the first ack argument).
    ServerSideEmit {
        /// `requestId`.
        request_id: String,
        /// `data` (`null` when missing).
        data: Value,
    },
    /// To BROADCAST: `{type: 8, requestId, clientCount}`, sent even when the count is 0.
    BroadcastClientCount {
        /// `requestId`.
        request_id: String,
        /// `clientCount`.
        client_count: u64,
    },
    /// To BROADCAST, once per client ack (MessagePack): `{type: 9, requestId, packet}`, the
    /// first ack argument.
    BroadcastAck {
        /// `requestId`.
        request_id: String,
        /// `packet` (`null` when missing).
        packet: Value,
    },
    /// To a legacy single-socket request: `{requestId}`.
    Done {
        /// `requestId`.
        request_id: String,
    },
}

impl Response {
    /// Decodes a response: JSON if the first byte is `{`, MessagePack otherwise. `pending` is
    /// asked for the type of the request this node is waiting for under the response's
    /// `requestId`; `Ok(None)` when it waits for none (another node's response on the shared
    /// channel) or for a type that gets no response. For a pending BROADCAST, the response's
    /// `type` picks 8 or 9; for the others the pending request's type decides, as in Node.
    pub fn decode(
        bytes: &[u8],
        max_len: usize,
        pending: impl FnOnce(&str) -> Option<RequestType>,
    ) -> Result<Option<Self>, AdapterError> {
        let mut map = Fields::of(parse(bytes, max_len, true)?)?;
        let request_id = map.string("requestId")?;
        let Some(kind) = pending(&request_id) else {
            return Ok(None);
        };
        Ok(Some(match kind {
            RequestType::Sockets => Response::Sockets {
                sockets: map.rooms_required("sockets")?,
                request_id,
            },
            RequestType::AllRooms => Response::AllRooms {
                rooms: map.rooms_required("rooms")?,
                request_id,
            },
            RequestType::RemoteFetch => Response::RemoteFetch {
                sockets: remote_sockets(map.required("sockets")?)?,
                request_id,
            },
            RequestType::ServerSideEmit => Response::ServerSideEmit {
                data: map.optional("data").unwrap_or(Value::Nil),
                request_id,
            },
            RequestType::Broadcast => match map.kind::<RequestType>("type")? {
                RequestType::BroadcastClientCount => Response::BroadcastClientCount {
                    client_count: map.number("clientCount")?,
                    request_id,
                },
                RequestType::BroadcastAck => Response::BroadcastAck {
                    packet: map.optional("packet").unwrap_or(Value::Nil),
                    request_id,
                },
                other => return Err(AdapterError::UnknownType(other.number().into())),
            },
            RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect => {
                Response::Done { request_id }
            }
            RequestType::BroadcastClientCount | RequestType::BroadcastAck => return Ok(None),
        }))
    }

    /// The response's `requestId`.
    pub fn request_id(&self) -> &str {
        match self {
            Response::Sockets { request_id, .. }
            | Response::AllRooms { request_id, .. }
            | Response::RemoteFetch { request_id, .. }
            | Response::ServerSideEmit { request_id, .. }
            | Response::BroadcastClientCount { request_id, .. }
            | Response::BroadcastAck { request_id, .. }
            | Response::Done { request_id } => request_id,
        }
    }

    /// Appends the response as Node writes it: MessagePack for BROADCAST_ACK, JSON otherwise
    /// (but for values JSON cannot carry; see the module doc).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let id = ("requestId", Out::Str(self.request_id()));
        let typed = |kind: RequestType| ("type", Out::Uint(kind.number().into()));
        let map = match self {
            Response::Sockets { sockets, .. } => vec![id, ("sockets", strs(sockets))],
            Response::AllRooms { rooms, .. } => vec![id, ("rooms", strs(rooms))],
            Response::RemoteFetch { sockets, .. } => vec![id, ("sockets", sockets_out(sockets))],
            Response::ServerSideEmit { data, .. } => vec![
                typed(RequestType::ServerSideEmit),
                id,
                ("data", Out::Value(data)),
            ],
            Response::BroadcastClientCount { client_count, .. } => vec![
                typed(RequestType::BroadcastClientCount),
                id,
                ("clientCount", Out::Uint(*client_count)),
            ],
            Response::BroadcastAck { packet, .. } => {
                let map = vec![
                    typed(RequestType::BroadcastAck),
                    id,
                    ("packet", Out::Value(packet)),
                ];
                return write_msgpack(out, &Out::Map(map));
            }
            Response::Done { .. } => vec![id],
        };
        write_json_or_msgpack(out, &Out::Map(map));
    }
}

// ------------------------------------------------------------------------------------------
// The sharded adapter (A.7)

/// The sharded adapter's (socket.io-adapter `ClusterAdapter`'s) `type` numbers, 1–13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterType {
    /// 1, INITIAL_HEARTBEAT (heartbeat-based cluster adapters only).
    InitialHeartbeat,
    /// 2, HEARTBEAT (heartbeat-based cluster adapters only).
    Heartbeat,
    /// 3, BROADCAST.
    Broadcast,
    /// 4, SOCKETS_JOIN.
    SocketsJoin,
    /// 5, SOCKETS_LEAVE.
    SocketsLeave,
    /// 6, DISCONNECT_SOCKETS.
    DisconnectSockets,
    /// 7, FETCH_SOCKETS.
    FetchSockets,
    /// 8, FETCH_SOCKETS_RESPONSE.
    FetchSocketsResponse,
    /// 9, SERVER_SIDE_EMIT.
    ServerSideEmit,
    /// 10, SERVER_SIDE_EMIT_RESPONSE.
    ServerSideEmitResponse,
    /// 11, BROADCAST_CLIENT_COUNT.
    BroadcastClientCount,
    /// 12, BROADCAST_ACK.
    BroadcastAck,
    /// 13, ADAPTER_CLOSE (not sent by the sharded Redis adapter).
    AdapterClose,
}

impl ClusterType {
    const ALL: [ClusterType; 13] = [
        ClusterType::InitialHeartbeat,
        ClusterType::Heartbeat,
        ClusterType::Broadcast,
        ClusterType::SocketsJoin,
        ClusterType::SocketsLeave,
        ClusterType::DisconnectSockets,
        ClusterType::FetchSockets,
        ClusterType::FetchSocketsResponse,
        ClusterType::ServerSideEmit,
        ClusterType::ServerSideEmitResponse,
        ClusterType::BroadcastClientCount,
        ClusterType::BroadcastAck,
        ClusterType::AdapterClose,
    ];

    /// The type with this number, if any.
    pub fn from_number(n: u64) -> Option<Self> {
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        Self::ALL.get(i).copied()
    }

    /// The type's number on the wire.
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    /// Whether this type answers a request (Node's `onResponse` handles it, on whichever
    /// channel it arrives).
    pub fn is_response(self) -> bool {
        matches!(
            self,
            ClusterType::FetchSocketsResponse
                | ClusterType::ServerSideEmitResponse
                | ClusterType::BroadcastClientCount
                | ClusterType::BroadcastAck
        )
    }
}

/// A sharded adapter message (`ClusterMessage` / `ClusterResponse`): `{type, data, uid, nsp}`,
/// JSON unless its data holds what JSON cannot carry (then MessagePack), on the channels of
/// A.7.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMessage {
    /// `uid`: the sender (16 hex characters from Node).
    pub uid: String,
    /// `nsp`: the namespace; a receiver drops messages of other namespaces.
    pub nsp: String,
    /// `type` and `data`.
    pub body: ClusterBody,
}

/// A sharded message's `type` and `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterBody {
    /// 1, no data.
    InitialHeartbeat,
    /// 2, no data.
    Heartbeat,
    /// 3: `{packet, requestId?, opts}`; `packet` has no `nsp`.
    Broadcast {
        /// `requestId`: present when acks are expected.
        request_id: Option<String>,
        /// `packet`: `{type, data}`.
        packet: Packet,
        /// `opts`, with `flags`.
        opts: BroadcastOpts,
    },
    /// 4: `{opts, rooms}`.
    SocketsJoin {
        /// `opts`.
        opts: BroadcastOpts,
        /// `rooms`.
        rooms: Vec<String>,
    },
    /// 5: `{opts, rooms}`.
    SocketsLeave {
        /// `opts`.
        opts: BroadcastOpts,
        /// `rooms`.
        rooms: Vec<String>,
    },
    /// 6: `{opts, close}`.
    DisconnectSockets {
        /// `opts`.
        opts: BroadcastOpts,
        /// `close` (missing: false).
        close: bool,
    },
    /// 7: `{opts, requestId}`; `opts.flags.timeout` bounds the wait.
    FetchSockets {
        /// `opts`.
        opts: BroadcastOpts,
        /// `requestId`.
        request_id: String,
    },
    /// 8: `{requestId, sockets}`.
    FetchSocketsResponse {
        /// `requestId`.
        request_id: String,
        /// `sockets`.
        sockets: Vec<RemoteSocket>,
    },
    /// 9: `{requestId?, packet}`, `packet` being `[event, ...args]`.
    ServerSideEmit {
        /// `requestId`: present when an ack is expected.
        request_id: Option<String>,
        /// `packet`: an array.
        packet: Value,
    },
    /// 10: `{requestId, packet}`, the first ack argument.
    ServerSideEmitResponse {
        /// `requestId`.
        request_id: String,
        /// `packet` (`null` when missing).
        packet: Value,
    },
    /// 11: `{requestId, clientCount}`.
    BroadcastClientCount {
        /// `requestId`.
        request_id: String,
        /// `clientCount`.
        client_count: u64,
    },
    /// 12: `{requestId, packet}`, the first ack argument.
    BroadcastAck {
        /// `requestId`.
        request_id: String,
        /// `packet` (`null` when missing).
        packet: Value,
    },
    /// 13, no data.
    AdapterClose,
}

impl ClusterBody {
    /// The message's `type`.
    pub fn cluster_type(&self) -> ClusterType {
        match self {
            ClusterBody::InitialHeartbeat => ClusterType::InitialHeartbeat,
            ClusterBody::Heartbeat => ClusterType::Heartbeat,
            ClusterBody::Broadcast { .. } => ClusterType::Broadcast,
            ClusterBody::SocketsJoin { .. } => ClusterType::SocketsJoin,
            ClusterBody::SocketsLeave { .. } => ClusterType::SocketsLeave,
            ClusterBody::DisconnectSockets { .. } => ClusterType::DisconnectSockets,
            ClusterBody::FetchSockets { .. } => ClusterType::FetchSockets,
            ClusterBody::FetchSocketsResponse { .. } => ClusterType::FetchSocketsResponse,
            ClusterBody::ServerSideEmit { .. } => ClusterType::ServerSideEmit,
            ClusterBody::ServerSideEmitResponse { .. } => ClusterType::ServerSideEmitResponse,
            ClusterBody::BroadcastClientCount { .. } => ClusterType::BroadcastClientCount,
            ClusterBody::BroadcastAck { .. } => ClusterType::BroadcastAck,
            ClusterBody::AdapterClose => ClusterType::AdapterClose,
        }
    }

    /// The message's `requestId`, if it has one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ClusterBody::Broadcast { request_id, .. }
            | ClusterBody::ServerSideEmit { request_id, .. } => request_id.as_deref(),
            ClusterBody::FetchSockets { request_id, .. }
            | ClusterBody::FetchSocketsResponse { request_id, .. }
            | ClusterBody::ServerSideEmitResponse { request_id, .. }
            | ClusterBody::BroadcastClientCount { request_id, .. }
            | ClusterBody::BroadcastAck { request_id, .. } => Some(request_id),
            ClusterBody::InitialHeartbeat
            | ClusterBody::Heartbeat
            | ClusterBody::SocketsJoin { .. }
            | ClusterBody::SocketsLeave { .. }
            | ClusterBody::DisconnectSockets { .. }
            | ClusterBody::AdapterClose => None,
        }
    }
}

impl ClusterMessage {
    /// Decodes a sharded message: JSON if the first byte is `{`, MessagePack otherwise.
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, AdapterError> {
        let mut map = Fields::of(parse(bytes, max_len, true)?)?;
        let kind = map.kind::<ClusterType>("type")?;
        let uid = map.string("uid")?;
        let nsp = map.string("nsp")?;
        let body = match kind {
            ClusterType::InitialHeartbeat => ClusterBody::InitialHeartbeat,
            ClusterType::Heartbeat => ClusterBody::Heartbeat,
            ClusterType::AdapterClose => ClusterBody::AdapterClose,
            _ => cluster_data(kind, Fields::nested(map.required("data")?, "data")?)?,
        };
        Ok(ClusterMessage { uid, nsp, body })
    }

    /// Appends the message as Node writes it: `type, data, uid, nsp`, JSON unless the data
    /// holds what JSON cannot carry.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut map = vec![("type", Out::Uint(self.body.cluster_type().number().into()))];
        if let Some(data) = cluster_data_out(&self.body) {
            map.push(("data", data));
        }
        map.push(("uid", Out::Str(&self.uid)));
        map.push(("nsp", Out::Str(&self.nsp)));
        write_json_or_msgpack(out, &Out::Map(map));
    }

    /// The channel Node's sharded adapter publishes this message to (responses go to
    /// [`sharded_response_channel`] of the requester instead): a room's channel for a
    /// BROADCAST without `requestId` to exactly one room, in the dynamic modes (in `Dynamic`
    /// only for a room that does not [look like a socket id](looks_like_socket_id)); the main
    /// channel otherwise.
    pub fn publish_channel(&self, prefix: &str, mode: SubscriptionMode) -> String {
        if let ClusterBody::Broadcast {
            request_id: None,
            opts,
            ..
        } = &self.body
        {
            if let [room] = opts.rooms.as_slice() {
                let own_channel = match mode {
                    SubscriptionMode::Static => false,
                    SubscriptionMode::Dynamic => !looks_like_socket_id(room),
                    SubscriptionMode::DynamicPrivate => true,
                };
                if own_channel {
                    return room_channel(prefix, &self.nsp, room);
                }
            }
        }
        broadcast_channel(prefix, &self.nsp)
    }
}

fn cluster_data(kind: ClusterType, mut data: Fields) -> Result<ClusterBody, AdapterError> {
    Ok(match kind {
        ClusterType::Broadcast => ClusterBody::Broadcast {
            request_id: data.opt_string("requestId")?,
            packet: packet_of(data.required("packet")?, "packet")?,
            opts: opts_of(data.required("opts")?)?,
        },
        ClusterType::SocketsJoin => ClusterBody::SocketsJoin {
            opts: opts_of(data.required("opts")?)?,
            rooms: data.rooms_or_one("rooms")?,
        },
        ClusterType::SocketsLeave => ClusterBody::SocketsLeave {
            opts: opts_of(data.required("opts")?)?,
            rooms: data.rooms_or_one("rooms")?,
        },
        ClusterType::DisconnectSockets => ClusterBody::DisconnectSockets {
            opts: opts_of(data.required("opts")?)?,
            close: data.opt_bool("close")?.unwrap_or(false),
        },
        ClusterType::FetchSockets => ClusterBody::FetchSockets {
            opts: opts_of(data.required("opts")?)?,
            request_id: data.string("requestId")?,
        },
        ClusterType::FetchSocketsResponse => ClusterBody::FetchSocketsResponse {
            request_id: data.string("requestId")?,
            sockets: remote_sockets(data.required("sockets")?)?,
        },
        ClusterType::ServerSideEmit => ClusterBody::ServerSideEmit {
            request_id: data.opt_string("requestId")?,
            packet: array(data.required("packet")?, "packet")?,
        },
        ClusterType::ServerSideEmitResponse => ClusterBody::ServerSideEmitResponse {
            request_id: data.string("requestId")?,
            packet: data.optional("packet").unwrap_or(Value::Nil),
        },
        ClusterType::BroadcastClientCount => ClusterBody::BroadcastClientCount {
            request_id: data.string("requestId")?,
            client_count: data.number("clientCount")?,
        },
        ClusterType::BroadcastAck => ClusterBody::BroadcastAck {
            request_id: data.string("requestId")?,
            packet: data.optional("packet").unwrap_or(Value::Nil),
        },
        ClusterType::InitialHeartbeat => ClusterBody::InitialHeartbeat,
        ClusterType::Heartbeat => ClusterBody::Heartbeat,
        ClusterType::AdapterClose => ClusterBody::AdapterClose,
    })
}

/// A sharded message's `data` in Node's key order, `None` for the types without one.
fn cluster_data_out(body: &ClusterBody) -> Option<Out<'_>> {
    fn opts(opts: &BroadcastOpts) -> (&'static str, Out<'_>) {
        ("opts", opts_out(opts, OptsOrder::Server))
    }
    fn id(id: &str) -> (&'static str, Out<'_>) {
        ("requestId", Out::Str(id))
    }
    Some(Out::Map(match body {
        ClusterBody::InitialHeartbeat | ClusterBody::Heartbeat | ClusterBody::AdapterClose => {
            return None
        }
        ClusterBody::Broadcast {
            request_id,
            packet,
            opts: o,
        } => {
            let mut map = vec![("packet", packet_out(packet))];
            if let Some(request_id) = request_id {
                map.push(id(request_id));
            }
            map.push(opts(o));
            map
        }
        ClusterBody::SocketsJoin { opts: o, rooms }
        | ClusterBody::SocketsLeave { opts: o, rooms } => {
            vec![opts(o), ("rooms", strs(rooms))]
        }
        ClusterBody::DisconnectSockets { opts: o, close } => {
            vec![opts(o), ("close", Out::Bool(*close))]
        }
        ClusterBody::FetchSockets {
            opts: o,
            request_id,
        } => vec![opts(o), id(request_id)],
        ClusterBody::FetchSocketsResponse {
            request_id,
            sockets,
        } => vec![id(request_id), ("sockets", sockets_out(sockets))],
        ClusterBody::ServerSideEmit { request_id, packet } => {
            let mut map = Vec::with_capacity(2);
            if let Some(request_id) = request_id {
                map.push(id(request_id));
            }
            map.push(("packet", Out::Value(packet)));
            map
        }
        ClusterBody::ServerSideEmitResponse { request_id, packet }
        | ClusterBody::BroadcastAck { request_id, packet } => {
            vec![id(request_id), ("packet", Out::Value(packet))]
        }
        ClusterBody::BroadcastClientCount {
            request_id,
            client_count,
        } => vec![id(request_id), ("clientCount", Out::Uint(*client_count))],
    }))
}

// ------------------------------------------------------------------------------------------
// Reading: bytes to a checked value, then typed fields

/// Reads one message: refuses it over `max_len`, parses it as JSON (when `json` and the first
/// byte is `{`) or MessagePack (all of it: trailing bytes are an error), then checks its depth
/// and its strings.
fn parse(bytes: &[u8], max_len: usize, json: bool) -> Result<Value, AdapterError> {
    if bytes.len() > max_len {
        return Err(AdapterError::TooLarge);
    }
    let value = if json && bytes.first() == Some(&b'{') {
        match serde_json::from_slice::<JsonIn>(bytes) {
            Ok(JsonIn(value)) => value,
            Err(error) if error.to_string().starts_with("recursion limit") => {
                return Err(AdapterError::TooDeep)
            }
            Err(_) => return Err(AdapterError::Json),
        }
    } else {
        let mut rest = bytes;
        let value =
            rmpv::decode::read_value_with_max_depth(&mut rest, RMPV_DEPTH).map_err(|error| {
                match error {
                    rmpv::decode::Error::DepthLimitExceeded => AdapterError::TooDeep,
                    _ => AdapterError::MessagePack,
                }
            })?;
        if !rest.is_empty() {
            return Err(AdapterError::MessagePack);
        }
        value
    };
    check(&value, 1)?;
    Ok(value)
}

/// Containers at most [`MAX_DEPTH`] deep (the outermost at `depth` 1) and only UTF-8 strings
/// (rmpv keeps invalid ones, and would write them back as binary).
fn check(value: &Value, depth: usize) -> Result<(), AdapterError> {
    match value {
        Value::String(text) if text.as_str().is_none() => Err(AdapterError::InvalidUtf8),
        Value::Array(items) => {
            if depth > MAX_DEPTH {
                return Err(AdapterError::TooDeep);
            }
            items.iter().try_for_each(|item| check(item, depth + 1))
        }
        Value::Map(entries) => {
            if depth > MAX_DEPTH {
                return Err(AdapterError::TooDeep);
            }
            entries.iter().try_for_each(|(key, item)| {
                check(key, depth + 1)?;
                check(item, depth + 1)
            })
        }
        _ => Ok(()),
    }
}

/// A map's entries, read field by field.
struct Fields(Vec<(Value, Value)>);

/// A `type` enum read from its number.
trait Numbered: Sized {
    fn from_number(n: u64) -> Option<Self>;
}

impl Numbered for RequestType {
    fn from_number(n: u64) -> Option<Self> {
        RequestType::from_number(n)
    }
}

impl Numbered for ClusterType {
    fn from_number(n: u64) -> Option<Self> {
        ClusterType::from_number(n)
    }
}

impl Fields {
    /// The message itself: a map, or [`AdapterError::Shape`].
    fn of(value: Value) -> Result<Self, AdapterError> {
        match value {
            Value::Map(entries) => Ok(Fields(entries)),
            _ => Err(AdapterError::Shape),
        }
    }

    /// A map inside the message, or a wrong type for `field`.
    fn nested(value: Value, field: &'static str) -> Result<Self, AdapterError> {
        match value {
            Value::Map(entries) => Ok(Fields(entries)),
            _ => Err(AdapterError::WrongType(field)),
        }
    }

    /// The last value under `key`, taken out; `None` when absent or `null`.
    fn optional(&mut self, key: &str) -> Option<Value> {
        let (_, value) = self
            .0
            .iter_mut()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))?;
        match std::mem::replace(value, Value::Nil) {
            Value::Nil => None,
            value => Some(value),
        }
    }

    fn required(&mut self, key: &'static str) -> Result<Value, AdapterError> {
        self.optional(key).ok_or(AdapterError::Missing(key))
    }

    fn string(&mut self, key: &'static str) -> Result<String, AdapterError> {
        string(self.required(key)?, key)
    }

    fn opt_string(&mut self, key: &'static str) -> Result<Option<String>, AdapterError> {
        self.optional(key).map(|v| string(v, key)).transpose()
    }

    fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>, AdapterError> {
        match self.optional(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(_) => Err(AdapterError::WrongType(key)),
        }
    }

    fn number(&mut self, key: &'static str) -> Result<u64, AdapterError> {
        number(self.required(key)?, key)
    }

    fn kind<T: Numbered>(&mut self, key: &'static str) -> Result<T, AdapterError> {
        let n = self.number(key)?;
        T::from_number(n).ok_or(AdapterError::UnknownType(n))
    }

    /// A list of rooms; missing is empty.
    fn rooms(&mut self, key: &'static str) -> Result<Vec<String>, AdapterError> {
        self.optional(key).map_or(Ok(Vec::new()), |v| rooms(v, key))
    }

    /// A list of rooms that must be there.
    fn rooms_required(&mut self, key: &'static str) -> Result<Vec<String>, AdapterError> {
        rooms(self.required(key)?, key)
    }

    /// Rooms to join or leave: a list, or one room (Node's `socket.join` takes either);
    /// missing is empty.
    fn rooms_or_one(&mut self, key: &'static str) -> Result<Vec<String>, AdapterError> {
        match self.optional(key) {
            None => Ok(Vec::new()),
            Some(value @ Value::Array(_)) => rooms(value, key),
            Some(value) => room_name(value)
                .map(|room| vec![room])
                .ok_or(AdapterError::WrongType(key)),
        }
    }

    fn room(&mut self, key: &'static str) -> Result<String, AdapterError> {
        room_name(self.required(key)?).ok_or(AdapterError::WrongType(key))
    }
}

fn string(value: Value, field: &'static str) -> Result<String, AdapterError> {
    match value {
        Value::String(text) => text.into_str().ok_or(AdapterError::InvalidUtf8),
        _ => Err(AdapterError::WrongType(field)),
    }
}

/// A non-negative integer; a float counts when it is integral (JavaScript has only numbers).
fn number(value: Value, field: &'static str) -> Result<u64, AdapterError> {
    let float = match value {
        Value::Integer(n) => return n.as_u64().ok_or(AdapterError::WrongType(field)),
        Value::F64(f) => f,
        Value::F32(f) => f.into(),
        _ => return Err(AdapterError::WrongType(field)),
    };
    if float.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&float) {
        Ok(float as u64)
    } else {
        Err(AdapterError::WrongType(field))
    }
}

/// A room: a string, or a number as JavaScript writes it in decimal (integers, and integral
/// floats below 1e21; other floats are refused).
fn room_name(value: Value) -> Option<String> {
    let float = match value {
        Value::String(text) => return text.into_str(),
        Value::Integer(n) => {
            return n
                .as_u64()
                .map(|n| n.to_string())
                .or_else(|| n.as_i64().map(|n| n.to_string()))
        }
        Value::F64(f) => f,
        Value::F32(f) => f.into(),
        _ => return None,
    };
    (float.fract() == 0.0 && float.abs() < 1e21).then(|| (float as i128).to_string())
}

fn rooms(value: Value, field: &'static str) -> Result<Vec<String>, AdapterError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|item| room_name(item).ok_or(AdapterError::WrongType(field)))
            .collect(),
        _ => Err(AdapterError::WrongType(field)),
    }
}

/// An array kept opaque (event data).
fn array(value: Value, field: &'static str) -> Result<Value, AdapterError> {
    match value {
        Value::Array(_) => Ok(value),
        _ => Err(AdapterError::WrongType(field)),
    }
}

fn packet_of(value: Value, field: &'static str) -> Result<Packet, AdapterError> {
    let mut map = Fields::nested(value, field)?;
    let kind = match map.optional("type") {
        None => return Err(AdapterError::Missing("packet.type")),
        Some(kind) => number(kind, "packet.type")?,
    };
    let kind = u8::try_from(kind)
        .ok()
        .filter(|kind| *kind <= 6)
        .ok_or(AdapterError::WrongType("packet.type"))?;
    let data = map
        .optional("data")
        .ok_or(AdapterError::Missing("packet.data"))?;
    Ok(Packet {
        kind,
        data: array(data, "packet.data")?,
        nsp: map
            .optional("nsp")
            .map(|nsp| string(nsp, "packet.nsp"))
            .transpose()?,
    })
}

fn opts_of(value: Value) -> Result<BroadcastOpts, AdapterError> {
    let mut map = Fields::nested(value, "opts")?;
    let rooms = map.rooms("rooms")?;
    let except = map.rooms("except")?;
    let flags = match map.optional("flags") {
        None => None,
        Some(flags) => {
            let mut flags = Fields::nested(flags, "flags")?;
            Some(Flags {
                volatile: flags.opt_bool("volatile")?,
                compress: flags.opt_bool("compress")?,
                timeout: flags
                    .optional("timeout")
                    .map(|t| number(t, "timeout"))
                    .transpose()?,
                expect_single_response: flags.opt_bool("expectSingleResponse")?,
            })
        }
    };
    // A malformed offset is no offset: the broadcast is still delivered (not stored).
    let offset = map.opt_string("offset").ok().flatten();
    Ok(BroadcastOpts {
        rooms,
        except,
        flags,
        offset,
    })
}

fn remote_sockets(value: Value) -> Result<Vec<RemoteSocket>, AdapterError> {
    let Value::Array(items) = value else {
        return Err(AdapterError::WrongType("sockets"));
    };
    items
        .into_iter()
        .map(|item| {
            let mut socket = Fields::nested(item, "sockets")?;
            Ok(RemoteSocket {
                id: socket.string("id")?,
                handshake: socket.optional("handshake").unwrap_or(Value::Nil),
                rooms: socket.rooms("rooms")?,
                data: socket.optional("data").unwrap_or(Value::Nil),
            })
        })
        .collect()
}

/// A JSON document read into an rmpv value, keeping every object's keys in order (and twice
/// when given twice). serde_json bounds its recursion (128).
struct JsonIn(Value);

impl<'de> Deserialize<'de> for JsonIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor).map(JsonIn)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Boolean(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::F64(f))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::from(s))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::from(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(JsonIn(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, JsonIn(item))) = map.next_entry::<String, JsonIn>()? {
            entries.push((Value::from(key), item));
        }
        Ok(Value::Map(entries))
    }
}

// ------------------------------------------------------------------------------------------
// Writing: a borrowed tree in Node's key order, then JSON or MessagePack

/// What a message writes, borrowing its values.
enum Out<'a> {
    Map(Vec<(&'static str, Out<'a>)>),
    Array(Vec<Out<'a>>),
    Str(&'a str),
    Uint(u64),
    Bool(bool),
    Value(&'a Value),
}

fn strs(items: &[String]) -> Out<'_> {
    Out::Array(items.iter().map(|item| Out::Str(item)).collect())
}

fn packet_out(packet: &Packet) -> Out<'_> {
    let mut map = vec![
        ("type", Out::Uint(packet.kind.into())),
        ("data", Out::Value(&packet.data)),
    ];
    if let Some(nsp) = &packet.nsp {
        map.push(("nsp", Out::Str(nsp)));
    }
    Out::Map(map)
}

fn opts_out(opts: &BroadcastOpts, order: OptsOrder) -> Out<'_> {
    let rooms = ("rooms", strs(&opts.rooms));
    let except = ("except", strs(&opts.except));
    let flags = opts.flags.map(|flags| ("flags", flags_out(flags)));
    let mut map = match (order, flags) {
        (_, None) => vec![rooms, except],
        (OptsOrder::Server, Some(flags)) => vec![rooms, except, flags],
        (OptsOrder::Emitter, Some(flags)) => vec![rooms, flags, except],
    };
    if let Some(offset) = &opts.offset {
        map.push(("offset", Out::Str(offset)));
    }
    Out::Map(map)
}

fn flags_out(flags: Flags) -> Out<'static> {
    let mut map = Vec::new();
    if let Some(volatile) = flags.volatile {
        map.push(("volatile", Out::Bool(volatile)));
    }
    if let Some(compress) = flags.compress {
        map.push(("compress", Out::Bool(compress)));
    }
    if let Some(timeout) = flags.timeout {
        map.push(("timeout", Out::Uint(timeout)));
    }
    if let Some(single) = flags.expect_single_response {
        map.push(("expectSingleResponse", Out::Bool(single)));
    }
    Out::Map(map)
}

fn sockets_out(sockets: &[RemoteSocket]) -> Out<'_> {
    Out::Array(
        sockets
            .iter()
            .map(|socket| {
                Out::Map(vec![
                    ("id", Out::Str(&socket.id)),
                    ("handshake", Out::Value(&socket.handshake)),
                    ("rooms", strs(&socket.rooms)),
                    ("data", Out::Value(&socket.data)),
                ])
            })
            .collect(),
    )
}

/// A length as MessagePack writes it (lengths past `u32::MAX` cannot be written).
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Writes `tree` as MessagePack: the smallest form of every integer, string and container
/// header, as notepack does. (Writing into a `Vec` cannot fail.)
fn write_msgpack(out: &mut Vec<u8>, tree: &Out<'_>) {
    use rmp::encode;
    match tree {
        Out::Map(entries) => {
            let _ = encode::write_map_len(out, len32(entries.len()));
            for (key, item) in entries {
                let _ = encode::write_str(out, key);
                write_msgpack(out, item);
            }
        }
        Out::Array(items) => {
            let _ = encode::write_array_len(out, len32(items.len()));
            for item in items {
                write_msgpack(out, item);
            }
        }
        Out::Str(text) => {
            let _ = encode::write_str(out, text);
        }
        Out::Uint(n) => {
            let _ = encode::write_uint(out, *n);
        }
        Out::Bool(b) => {
            let _ = encode::write_bool(out, *b);
        }
        Out::Value(value) => {
            let _ = rmpv::encode::write_value(out, value);
        }
    }
}

/// Writes `tree` as JSON (`JSON.stringify`'s bytes for the values Node sends), or as
/// MessagePack when it holds a value JSON cannot carry.
fn write_json_or_msgpack(out: &mut Vec<u8>, tree: &Out<'_>) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, tree).is_err() {
        out.truncate(start);
        write_msgpack(out, tree);
    }
}

impl Serialize for Out<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Out::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, item) in entries {
                    map.serialize_entry(key, item)?;
                }
                map.end()
            }
            Out::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Out::Str(text) => serializer.serialize_str(text),
            Out::Uint(n) => serializer.serialize_u64(*n),
            Out::Bool(b) => serializer.serialize_bool(*b),
            Out::Value(value) => JsonOut(value).serialize(serializer),
        }
    }
}

/// An rmpv value as JSON; an error for what JSON cannot carry without loss.
struct JsonOut<'a>(&'a Value);

impl Serialize for JsonOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Nil => serializer.serialize_unit(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::Integer(n) => match (n.as_u64(), n.as_i64()) {
                (Some(n), _) => serializer.serialize_u64(n),
                (None, Some(n)) => serializer.serialize_i64(n),
                (None, None) => Err(S::Error::custom("integer")),
            },
            Value::F64(f) if f.is_finite() => serializer.serialize_f64(*f),
            Value::String(text) => match text.as_str() {
                Some(text) => serializer.serialize_str(text),
                None => Err(S::Error::custom("string is not UTF-8")),
            },
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&JsonOut(item))?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, item) in entries {
                    let Some(key) = key.as_str() else {
                        return Err(S::Error::custom("map key is not a string"));
                    };
                    map.serialize_entry(key, &JsonOut(item))?;
                }
                map.end()
            }
            Value::F64(_) | Value::F32(_) | Value::Binary(_) | Value::Ext(..) => {
                Err(S::Error::custom("not representable in JSON"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ------------------------------------------------------------------------------------
    // The spec's captures (shared/spec/ecosystem-protocols.md, sections A and B)

    /// A.3: `io.to("room1").emit("to-room1", "x")`, 67 bytes.
    const TO_ROOM1: &str = "93a65338784a517683a47479706502a46461746192a8746f2d726f6f6d31a178a36e7370a12f83a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380";
    /// A.3: `io.emit("hello","world",42,3.5,true,null,{a:[1,2]})`.
    const HELLO: &str = "93a65338784a517683a47479706502a46461746197a568656c6c6fa5776f726c642acb400c000000000000c3c081a161920102a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380";
    /// A.3: `io.to(["room1","room2"]).except("room3").emit("multi",1)`.
    const MULTI: &str = "93a65338784a517683a47479706502a46461746192a56d756c746901a36e7370a12f83a5726f6f6d7392a5726f6f6d31a5726f6f6d32a665786365707491a5726f6f6d33a5666c61677380";
    /// A.3: the tail of `io.volatile.compress(false).emit("vol",1)` (the rest is elided).
    const VOL_TAIL: &str = "a5666c61677382a8766f6c6174696c65c3a8636f6d7072657373c2";
    /// A.3: `io.emit("bin", Buffer[1,2,3], {nested: Uint8Array[4,5]})`.
    const BIN: &str = "93a65338784a517683a47479706502a46461746193a362696ec40301020381a66e6573746564c4020405a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380";
    /// A.3: the head of `io.emit("types", new Date(1700000000123), undefined, -5, 300, 70000,
    /// 2**40)`, up to the packet's `nsp` (the opts are elided).
    const TYPES_HEAD: &str = "93a65338784a517683a47479706502a46461746197a57479706573d7ff1d5353006553f100c0fbcd012cce00011170cf0000010000000000a36e7370a12f";
    /// A.3: `io.of("/chat").emit("chat-msg","hi")`: its head, and a fragment of its packet.
    const CHAT_HEAD: &str = "93a6734c42334f4583";
    const CHAT_NSP: &str = "a36e7370a52f63686174";
    /// B.1: the emitter's `emit("from-emitter","a",1,{b:true})`.
    const EMITTER: &str = "93a7656d697474657283a47479706502a46461746194ac66726f6d2d656d6974746572a1610181a162c3a36e7370a12f83a5726f6f6d7390a5666c61677380a665786365707490";
    /// B.1: the head of the emitter's `emit("e-bin", Buffer "hi")`.
    const EMITTER_BIN_HEAD: &str =
        "93a7656d697474657283a47479706502a46461746192a5652d62696ec4026869a36e7370a12f";
    /// B.1: a fragment of the emitter's `emit("e-date", new Date(1700000000000))`.
    const EMITTER_DATE: &str = "a6652d64617465d6ff6553f100";
    /// A.4: the BROADCAST request (105 bytes) and its BROADCAST_ACK (45 bytes).
    const BROADCAST_REQUEST: &str = "85a3756964a65338784a5176a9726571756573744964a64b3535443761a47479706507a67061636b657483a47479706502a46461746192a361736b01a36e7370a12fa46f70747383a5726f6f6d7390a665786365707490a5666c61677381a774696d656f7574cd07d0";
    const BROADCAST_ACK: &str =
        "83a47479706509a9726571756573744964a64b3535443761a67061636b6574ad61636b2d66726f6d2d63324042";
    /// A.7: the sharded BROADCAST with binary (MessagePack, 109 bytes).
    const SHARDED_BIN: &str = "84a47479706503a46461746182a67061636b657482a47479706502a46461746193a362696ec40301020381a66e6573746564c4020405a46f70747383a5726f6f6d7390a665786365707490a5666c61677380a3756964b037336462316461643064376231353863a36e7370a12f";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn to_hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn s(text: &str) -> Value {
        Value::from(text)
    }

    fn n(number: i64) -> Value {
        Value::from(number)
    }

    fn arr(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    fn obj(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (s(k), v)).collect())
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    fn opts(rooms: &[&str], except: &[&str], flags: Option<Flags>) -> BroadcastOpts {
        BroadcastOpts {
            rooms: strings(rooms),
            except: strings(except),
            flags,
            offset: None,
        }
    }

    fn event(nsp: Option<&str>, data: Vec<Value>) -> Packet {
        Packet {
            kind: 2,
            data: arr(data),
            nsp: nsp.map(str::to_string),
        }
    }

    fn broadcast(bytes: &[u8]) -> BroadcastMessage {
        BroadcastMessage::decode(bytes, DEFAULT_MAX_LEN).unwrap()
    }

    fn encoded(message: &BroadcastMessage) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        out
    }

    fn request(text: &str) -> Request {
        Request::decode(text.as_bytes(), DEFAULT_MAX_LEN).unwrap()
    }

    fn request_bytes(request: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        request.encode(&mut out);
        out
    }

    fn response_bytes(response: &Response) -> Vec<u8> {
        let mut out = Vec::new();
        response.encode(&mut out);
        out
    }

    fn response(bytes: &[u8], pending: RequestType) -> Response {
        Response::decode(bytes, DEFAULT_MAX_LEN, |_| Some(pending))
            .unwrap()
            .unwrap()
    }

    fn cluster(bytes: &[u8]) -> ClusterMessage {
        ClusterMessage::decode(bytes, DEFAULT_MAX_LEN).unwrap()
    }

    fn cluster_bytes(message: &ClusterMessage) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        out
    }

    /// The JSON text re-encodes to itself.
    fn assert_request_json(text: &str) -> Request {
        let decoded = request(text);
        assert_eq!(String::from_utf8(request_bytes(&decoded)).unwrap(), text);
        decoded
    }

    fn assert_cluster_json(text: &str) -> ClusterMessage {
        let decoded = cluster(text.as_bytes());
        assert_eq!(String::from_utf8(cluster_bytes(&decoded)).unwrap(), text);
        decoded
    }

    // ------------------------------------------------------------------------------------
    // Broadcasts (A.3, B.1)

    #[test]
    fn the_to_room1_capture_decodes_and_re_encodes_byte_for_byte() {
        let bytes = hex(TO_ROOM1);
        assert_eq!(bytes.len(), 67);
        let message = broadcast(&bytes);
        assert_eq!(
            message,
            BroadcastMessage {
                uid: "S8xJQv".into(),
                packet: event(Some("/"), vec![s("to-room1"), s("x")]),
                opts: opts(&["room1"], &[], Some(Flags::default())),
            }
        );
        assert_eq!(to_hex(&encoded(&message)), TO_ROOM1);
    }

    #[test]
    fn the_server_broadcast_captures_decode_to_the_documented_values_and_re_encode() {
        let hello = broadcast(&hex(HELLO));
        assert_eq!(
            hello.packet.data,
            arr(vec![
                s("hello"),
                s("world"),
                n(42),
                Value::F64(3.5),
                Value::Boolean(true),
                Value::Nil,
                obj(vec![("a", arr(vec![n(1), n(2)]))]),
            ])
        );
        assert_eq!(hello.opts, opts(&[], &[], Some(Flags::default())));
        assert_eq!(to_hex(&encoded(&hello)), HELLO);

        let multi = broadcast(&hex(MULTI));
        assert_eq!(multi.packet.data, arr(vec![s("multi"), n(1)]));
        assert_eq!(
            multi.opts,
            opts(&["room1", "room2"], &["room3"], Some(Flags::default()))
        );
        assert_eq!(to_hex(&encoded(&multi)), MULTI);

        let bin = broadcast(&hex(BIN));
        assert_eq!(
            bin.packet.data,
            arr(vec![
                s("bin"),
                Value::Binary(vec![1, 2, 3]),
                obj(vec![("nested", Value::Binary(vec![4, 5]))]),
            ])
        );
        assert_eq!(to_hex(&encoded(&bin)), BIN);
    }

    #[test]
    fn the_partial_captures_match_what_the_encoder_writes_for_the_same_values() {
        // `io.volatile.compress(false).emit("vol", 1)`: the flags tail.
        let vol = BroadcastMessage {
            uid: "S8xJQv".into(),
            packet: event(Some("/"), vec![s("vol"), n(1)]),
            opts: opts(
                &[],
                &[],
                Some(Flags {
                    volatile: Some(true),
                    compress: Some(false),
                    ..Flags::default()
                }),
            ),
        };
        let bytes = encoded(&vol);
        assert!(to_hex(&bytes).ends_with(VOL_TAIL));
        assert_eq!(broadcast(&bytes), vol);

        // The Date, undefined and integer forms, up to the packet's nsp.
        let mut types = hex(TYPES_HEAD);
        types.extend_from_slice(&hex("83a5726f6f6d7390a665786365707490a5666c61677380"));
        let decoded = broadcast(&types);
        let Value::Array(data) = &decoded.packet.data else {
            panic!("data is an array");
        };
        // d7 ff: timestamp64, nanoseconds << 34 | seconds = 123 ms after 1700000000 s.
        let Value::Ext(-1, stamp) = &data[1] else {
            panic!("a Date is the timestamp extension");
        };
        let stamp = u64::from_be_bytes(stamp[..].try_into().unwrap());
        assert_eq!(
            (stamp >> 34, stamp & ((1 << 34) - 1)),
            (123_000_000, 1_700_000_000)
        );
        assert_eq!(data[2..], [Value::Nil, n(-5), n(300), n(70000), n(1 << 40)]);
        assert_eq!(encoded(&decoded), types);

        // `/chat`: the uid of A's /chat adapter and the packet's nsp.
        let chat = BroadcastMessage {
            uid: "sLB3OE".into(),
            packet: event(Some("/chat"), vec![s("chat-msg"), s("hi")]),
            opts: opts(&[], &[], Some(Flags::default())),
        };
        let chat_hex = to_hex(&encoded(&chat));
        assert!(chat_hex.starts_with(CHAT_HEAD) && chat_hex.contains(CHAT_NSP));
    }

    #[test]
    fn the_emitters_broadcasts_decode_and_re_encode_in_its_key_order() {
        let bytes = hex(EMITTER);
        let message = broadcast(&bytes);
        assert_eq!(
            message,
            BroadcastMessage {
                uid: EMITTER_UID.into(),
                packet: event(
                    Some("/"),
                    vec![
                        s("from-emitter"),
                        s("a"),
                        n(1),
                        obj(vec![("b", Value::Boolean(true))]),
                    ]
                ),
                opts: opts(&[], &[], Some(Flags::default())),
            }
        );
        let mut out = Vec::new();
        message.encode_with(OptsOrder::Emitter, &mut out);
        assert_eq!(out, bytes);
        // The server's order differs only in `opts`.
        assert_ne!(encoded(&message), bytes);

        let bin = BroadcastMessage {
            uid: EMITTER_UID.into(),
            packet: event(Some("/"), vec![s("e-bin"), Value::Binary(b"hi".to_vec())]),
            opts: opts(&[], &[], Some(Flags::default())),
        };
        let mut out = Vec::new();
        bin.encode_with(OptsOrder::Emitter, &mut out);
        assert!(to_hex(&out).starts_with(EMITTER_BIN_HEAD));

        // A Date without milliseconds is timestamp32.
        let date = BroadcastMessage {
            uid: EMITTER_UID.into(),
            packet: event(
                Some("/"),
                vec![
                    s("e-date"),
                    Value::Ext(-1, 1_700_000_000u32.to_be_bytes().to_vec()),
                ],
            ),
            opts: opts(&[], &[], Some(Flags::default())),
        };
        assert!(to_hex(&encoded(&date)).contains(EMITTER_DATE));
    }

    #[test]
    fn a_broadcast_tolerates_missing_keys_any_order_unknown_keys_and_numeric_rooms() {
        // The hand-made minimal message of A.3: no nsp, no flags.
        let minimal = Value::Array(vec![
            s("rust-1"),
            obj(vec![("data", arr(vec![s("ev")])), ("type", n(2))]),
            obj(vec![("except", arr(vec![])), ("rooms", arr(vec![]))]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &minimal).unwrap();
        let message = broadcast(&bytes);
        assert_eq!(message.packet.nsp, None);
        assert_eq!(message.packet.nsp_or_root(), "/");
        assert_eq!(message.opts, opts(&[], &[], None));
        // Re-encoded without the keys it lacked.
        assert_eq!(broadcast(&encoded(&message)), message);

        let odd = Value::Array(vec![
            s("x"),
            obj(vec![
                ("nsp", s("/chat")),
                ("id", n(3)),
                ("type", n(2)),
                ("data", arr(vec![s("ev")])),
            ]),
            obj(vec![
                (
                    "flags",
                    obj(vec![
                        ("local", Value::Boolean(true)),
                        ("timeout", Value::F64(2000.0)),
                        ("expectSingleResponse", Value::Boolean(true)),
                    ]),
                ),
                ("rooms", arr(vec![n(5), Value::F64(7.0), n(-3), s("r")])),
                ("rooms", arr(vec![n(5), Value::F64(7.0), n(-3), s("r")])),
                ("extra", Value::Binary(vec![1])),
            ]),
            s("ignored fourth element"),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &odd).unwrap();
        let message = broadcast(&bytes);
        assert_eq!(message.packet.nsp.as_deref(), Some("/chat"));
        assert_eq!(message.opts.rooms, strings(&["5", "7", "-3", "r"]));
        assert_eq!(message.opts.except, Vec::<String>::new());
        assert_eq!(
            message.opts.flags,
            Some(Flags {
                timeout: Some(2000),
                expect_single_response: Some(true),
                ..Flags::default()
            })
        );
    }

    // ------------------------------------------------------------------------------------
    // Classic requests and responses (A.4, B.1)

    #[test]
    fn the_captured_json_requests_decode_and_re_encode_byte_for_byte() {
        let all_rooms = assert_request_json(r#"{"uid":"S8xJQv","requestId":"AZ5nHk","type":1}"#);
        assert_eq!(
            all_rooms,
            Request {
                uid: Some("S8xJQv".into()),
                body: RequestBody::AllRooms {
                    request_id: "AZ5nHk".into()
                },
            }
        );
        let join = assert_request_json(
            r#"{"uid":"S8xJQv","type":2,"opts":{"rooms":[],"except":[]},"rooms":["room9"]}"#,
        );
        assert_eq!(
            join.body,
            RequestBody::RemoteJoin {
                opts: opts(&[], &[], None),
                rooms: strings(&["room9"]),
            }
        );
        let leave = assert_request_json(
            r#"{"uid":"S8xJQv","type":3,"opts":{"rooms":["room1"],"except":["room5"]},"rooms":["room9"]}"#,
        );
        assert_eq!(
            leave.body,
            RequestBody::RemoteLeave {
                opts: opts(&["room1"], &["room5"], None),
                rooms: strings(&["room9"]),
            }
        );
        let disconnect = assert_request_json(
            r#"{"uid":"S8xJQv","type":4,"opts":{"rooms":["no-such-room"],"except":[]},"close":true}"#,
        );
        assert_eq!(
            disconnect.body,
            RequestBody::RemoteDisconnect {
                opts: opts(&["no-such-room"], &[], None),
                close: true,
            }
        );
        let fetch = assert_request_json(
            r#"{"uid":"S8xJQv","requestId":"_YEWBq","type":5,"opts":{"rooms":[],"except":[]}}"#,
        );
        assert_eq!(
            fetch.body,
            RequestBody::RemoteFetch {
                request_id: "_YEWBq".into(),
                opts: opts(&[], &[], None),
            }
        );
        let emit =
            assert_request_json(r#"{"uid":"S8xJQv","type":6,"data":["sse",1,"two",{"three":3}]}"#);
        assert_eq!(
            emit.body,
            RequestBody::ServerSideEmit {
                request_id: None,
                data: arr(vec![s("sse"), n(1), s("two"), obj(vec![("three", n(3))])]),
            }
        );
        let emit_ack = assert_request_json(
            r#"{"uid":"S8xJQv","requestId":"Vwe2Vy","type":6,"data":["sse-ack","ping"]}"#,
        );
        assert_eq!(emit_ack.body.request_id(), Some("Vwe2Vy"));
        assert_eq!(emit_ack.body.request_type(), RequestType::ServerSideEmit);
    }

    #[test]
    fn the_emitters_requests_have_no_uid_and_re_encode_byte_for_byte() {
        let join = assert_request_json(
            r#"{"type":2,"opts":{"rooms":["3UeenbSRiQGHh2XrAAAA"],"except":[]},"rooms":["r7","r8"]}"#,
        );
        assert_eq!(join.uid, None);
        assert_eq!(
            join.body,
            RequestBody::RemoteJoin {
                opts: opts(&["3UeenbSRiQGHh2XrAAAA"], &[], None),
                rooms: strings(&["r7", "r8"]),
            }
        );
        assert_request_json(r#"{"type":3,"opts":{"rooms":["r7"],"except":[]},"rooms":["r8"]}"#);
        assert_request_json(r#"{"type":4,"opts":{"rooms":[],"except":[]},"close":true}"#);
        let emit =
            assert_request_json(r#"{"uid":"emitter","type":6,"data":["from-emitter","sse",2]}"#);
        assert_eq!(emit.uid.as_deref(), Some(EMITTER_UID));
    }

    #[test]
    fn the_legacy_requests_decode_from_their_documented_fields() {
        // A.4 names their fields, not an order (6.x wrote them; nothing was captured).
        let sockets = assert_request_json(
            r#"{"uid":"S8xJQv","requestId":"AAAAAA","type":0,"rooms":["room1"]}"#,
        );
        assert_eq!(
            sockets.body,
            RequestBody::Sockets {
                request_id: "AAAAAA".into(),
                rooms: strings(&["room1"]),
            }
        );
        assert_eq!(
            request(r#"{"type":2,"requestId":"r1","sid":"abc","room":"room1"}"#).body,
            RequestBody::LegacyJoin {
                request_id: Some("r1".into()),
                sid: "abc".into(),
                room: "room1".into(),
            }
        );
        assert_eq!(
            request(r#"{"type":3,"requestId":"r1","sid":"abc","room":12}"#).body,
            RequestBody::LegacyLeave {
                request_id: Some("r1".into()),
                sid: "abc".into(),
                room: "12".into(),
            }
        );
        assert_eq!(
            request(r#"{"type":4,"requestId":"r1","sid":"abc","close":false}"#).body,
            RequestBody::LegacyDisconnect {
                request_id: Some("r1".into()),
                sid: "abc".into(),
                close: false,
            }
        );
        for legacy in [
            r#"{"requestId":"r1","type":2,"sid":"abc","room":"room1"}"#,
            r#"{"requestId":"r1","type":4,"sid":"abc","close":true}"#,
        ] {
            assert_request_json(legacy);
        }
        // Neither opts nor sid: nothing Node could act on.
        assert_eq!(
            Request::decode(br#"{"type":2,"rooms":["a"]}"#, DEFAULT_MAX_LEN),
            Err(AdapterError::Missing("opts"))
        );
    }

    #[test]
    fn the_broadcast_request_and_its_ack_decode_and_re_encode_byte_for_byte() {
        let bytes = hex(BROADCAST_REQUEST);
        assert_eq!(bytes.len(), 105);
        let decoded = Request::decode(&bytes, DEFAULT_MAX_LEN).unwrap();
        assert_eq!(
            decoded,
            Request {
                uid: Some("S8xJQv".into()),
                body: RequestBody::Broadcast {
                    request_id: "K55D7a".into(),
                    packet: event(Some("/"), vec![s("ask"), n(1)]),
                    opts: opts(
                        &[],
                        &[],
                        Some(Flags {
                            timeout: Some(2000),
                            ..Flags::default()
                        })
                    ),
                },
            }
        );
        assert_eq!(to_hex(&request_bytes(&decoded)), BROADCAST_REQUEST);

        let bytes = hex(BROADCAST_ACK);
        assert_eq!(bytes.len(), 45);
        let ack = response(&bytes, RequestType::Broadcast);
        assert_eq!(
            ack,
            Response::BroadcastAck {
                request_id: "K55D7a".into(),
                packet: s("ack-from-c2@B"),
            }
        );
        assert_eq!(to_hex(&response_bytes(&ack)), BROADCAST_ACK);
    }

    #[test]
    fn the_captured_json_responses_decode_and_re_encode_byte_for_byte() {
        let cases: [(&str, RequestType, Response); 4] = [
            (
                r#"{"requestId":"AZ5nHk","rooms":["pHL8NGQqrfPTeE33AAAB","room1"]}"#,
                RequestType::AllRooms,
                Response::AllRooms {
                    request_id: "AZ5nHk".into(),
                    rooms: strings(&["pHL8NGQqrfPTeE33AAAB", "room1"]),
                },
            ),
            (
                r#"{"type":6,"requestId":"Vwe2Vy","data":"pong-from-B"}"#,
                RequestType::ServerSideEmit,
                Response::ServerSideEmit {
                    request_id: "Vwe2Vy".into(),
                    data: s("pong-from-B"),
                },
            ),
            // The two below are the documented shapes with the capture's request id.
            (
                r#"{"type":8,"requestId":"K55D7a","clientCount":0}"#,
                RequestType::Broadcast,
                Response::BroadcastClientCount {
                    request_id: "K55D7a".into(),
                    client_count: 0,
                },
            ),
            (
                r#"{"requestId":"AAAAAA","sockets":["pHL8NGQqrfPTeE33AAAB"]}"#,
                RequestType::Sockets,
                Response::Sockets {
                    request_id: "AAAAAA".into(),
                    sockets: strings(&["pHL8NGQqrfPTeE33AAAB"]),
                },
            ),
        ];
        for (text, pending, expected) in cases {
            let decoded = response(text.as_bytes(), pending);
            assert_eq!(decoded, expected);
            assert_eq!(String::from_utf8(response_bytes(&decoded)).unwrap(), text);
        }
        // A legacy answer.
        let done = response(br#"{"requestId":"r1"}"#, RequestType::RemoteJoin);
        assert_eq!(
            done,
            Response::Done {
                request_id: "r1".into()
            }
        );
        assert_eq!(response_bytes(&done), br#"{"requestId":"r1"}"#);
    }

    /// A.4's REMOTE_FETCH socket, compacted, with the elided key filled in.
    const FETCHED_SOCKET: &str = concat!(
        r#"{"id":"pHL8NGQqrfPTeE33AAAB","#,
        r#""handshake":{"headers":{"sec-websocket-version":"13","sec-websocket-key":"dGhlIHNhbXBsZSBub25jZQ==","connection":"Upgrade","upgrade":"websocket","#,
        r#""sec-websocket-extensions":"permessage-deflate; client_max_window_bits","host":"127.0.0.1:3102"},"#,
        r#""time":"Tue Nov 24 2026 14:53:16 GMT+0000 (Coordinated Universal Time)","address":"127.0.0.1","#,
        r#""xdomain":false,"secure":false,"issued":1795531996022,"#,
        r#""url":"/socket.io/?EIO=4&transport=websocket","query":{"EIO":"4","transport":"websocket"},"auth":{}},"#,
        r#""rooms":["pHL8NGQqrfPTeE33AAAB","room1"],"#,
        r#""data":{"server":"B","num":7}}"#
    );

    #[test]
    fn the_remote_fetch_response_keeps_the_handshake_and_data_in_order() {
        let text = format!(r#"{{"requestId":"_YEWBq","sockets":[{FETCHED_SOCKET}]}}"#);
        let decoded = response(text.as_bytes(), RequestType::RemoteFetch);
        let Response::RemoteFetch {
            request_id,
            sockets,
        } = &decoded
        else {
            panic!("a REMOTE_FETCH answer");
        };
        assert_eq!(request_id, "_YEWBq");
        assert_eq!(sockets.len(), 1);
        let socket = &sockets[0];
        assert_eq!(socket.id, "pHL8NGQqrfPTeE33AAAB");
        assert_eq!(socket.rooms, strings(&["pHL8NGQqrfPTeE33AAAB", "room1"]));
        assert_eq!(socket.data, obj(vec![("server", s("B")), ("num", n(7))]));
        let Value::Map(handshake) = &socket.handshake else {
            panic!("the handshake is an object");
        };
        let keys: Vec<&str> = handshake.iter().filter_map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["headers", "time", "address", "xdomain", "secure", "issued", "url", "query", "auth"]
        );
        assert_eq!(String::from_utf8(response_bytes(&decoded)).unwrap(), text);
    }

    #[test]
    fn responses_are_read_as_the_pending_request_says() {
        let text = br#"{"requestId":"x","sockets":[]}"#;
        assert_eq!(
            Response::decode(text, DEFAULT_MAX_LEN, |_| None),
            Ok(None),
            "another node's response"
        );
        assert_eq!(
            response(text, RequestType::Sockets),
            Response::Sockets {
                request_id: "x".into(),
                sockets: vec![]
            }
        );
        assert_eq!(
            response(text, RequestType::RemoteFetch),
            Response::RemoteFetch {
                request_id: "x".into(),
                sockets: vec![]
            }
        );
        let mut asked = None;
        let _ = Response::decode(text, DEFAULT_MAX_LEN, |id| {
            asked = Some(id.to_string());
            None
        });
        assert_eq!(asked.as_deref(), Some("x"));
        // For a pending BROADCAST the type picks the kind; others are counted.
        assert_eq!(
            Response::decode(br#"{"type":6,"requestId":"x"}"#, DEFAULT_MAX_LEN, |_| Some(
                RequestType::Broadcast
            )),
            Err(AdapterError::UnknownType(6))
        );
        // An answer to ALL_ROOMS needs its rooms.
        assert_eq!(
            Response::decode(br#"{"requestId":"x"}"#, DEFAULT_MAX_LEN, |_| Some(
                RequestType::AllRooms
            )),
            Err(AdapterError::Missing("rooms"))
        );
        // Binary in an ack cannot be JSON: it goes as MessagePack, which Node also reads.
        let ack = Response::ServerSideEmit {
            request_id: "x".into(),
            data: Value::Binary(vec![1, 2]),
        };
        let bytes = response_bytes(&ack);
        assert_ne!(bytes[0], b'{');
        assert_eq!(response(&bytes, RequestType::ServerSideEmit), ack);
    }

    // ------------------------------------------------------------------------------------
    // The sharded adapter (A.7)

    const UID_A: &str = "73db1dad0d7b158c";
    const UID_B: &str = "1062ed90c44d7a08";

    #[test]
    fn the_sharded_json_captures_decode_and_re_encode_byte_for_byte() {
        let hello = assert_cluster_json(
            r#"{"type":3,"data":{"packet":{"type":2,"data":["hello","world",42,3.5,true,null,{"a":[1,2]}]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"73db1dad0d7b158c","nsp":"/"}"#,
        );
        assert_eq!(hello.uid, UID_A);
        assert_eq!(hello.nsp, "/");
        let ClusterBody::Broadcast {
            request_id: None,
            packet,
            opts: o,
        } = &hello.body
        else {
            panic!("a broadcast without ack");
        };
        assert_eq!(packet.nsp, None);
        assert_eq!(o, &opts(&[], &[], Some(Flags::default())));
        assert_eq!(
            hello.publish_channel(DEFAULT_PREFIX, SubscriptionMode::Dynamic),
            "socket.io#/#"
        );

        let room1 = assert_cluster_json(
            r#"{"type":3,"data":{"packet":{"type":2,"data":["to-room1","x"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}},"uid":"73db1dad0d7b158c","nsp":"/"}"#,
        );
        assert_eq!(
            room1.publish_channel(DEFAULT_PREFIX, SubscriptionMode::Dynamic),
            "socket.io#/#room1#"
        );
        assert_eq!(
            room1.publish_channel(DEFAULT_PREFIX, SubscriptionMode::Static),
            "socket.io#/#"
        );

        let fetch = assert_cluster_json(
            r#"{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"d517e04a5950486d"},"uid":"73db1dad0d7b158c","nsp":"/"}"#,
        );
        assert_eq!(fetch.body.cluster_type(), ClusterType::FetchSockets);
        assert_eq!(fetch.body.request_id(), Some("d517e04a5950486d"));

        let with_ack = assert_cluster_json(
            r#"{"type":3,"data":{"packet":{"type":2,"data":["ask",1]},"requestId":"26e3d4432e234d27","opts":{"rooms":[],"except":[],"flags":{"timeout":2000}}},"uid":"73db1dad0d7b158c","nsp":"/"}"#,
        );
        assert_eq!(with_ack.body.request_id(), Some("26e3d4432e234d27"));

        let join = assert_cluster_json(
            r#"{"type":4,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["room9"]},"uid":"73db1dad0d7b158c","nsp":"/"}"#,
        );
        assert_eq!(
            join.body,
            ClusterBody::SocketsJoin {
                opts: opts(&[], &[], Some(Flags::default())),
                rooms: strings(&["room9"]),
            }
        );
        let disconnect = assert_cluster_json(
            r#"{"type":6,"data":{"opts":{"rooms":["no-such-room"],"except":[],"flags":{}},"close":true},"uid":"73db1dad0d7b158c","nsp":"/"}"#,
        );
        assert_eq!(
            disconnect.body,
            ClusterBody::DisconnectSockets {
                opts: opts(&["no-such-room"], &[], Some(Flags::default())),
                close: true,
            }
        );
    }

    #[test]
    fn the_elided_sharded_captures_decode_with_their_uids_filled_in() {
        // The spec shortens some uids to `73db…` / `1062…`; these are the full ones of the run.
        let emit = assert_cluster_json(&format!(
            r#"{{"type":9,"data":{{"requestId":"ae35f04afe742eaf","packet":["sse-ack","ping"]}},"uid":"{UID_A}","nsp":"/"}}"#
        ));
        assert_eq!(
            emit.body,
            ClusterBody::ServerSideEmit {
                request_id: Some("ae35f04afe742eaf".into()),
                packet: arr(vec![s("sse-ack"), s("ping")]),
            }
        );
        let answer = assert_cluster_json(&format!(
            r#"{{"type":10,"data":{{"requestId":"ae35f04afe742eaf","packet":"pong-from-B"}},"uid":"{UID_B}","nsp":"/"}}"#
        ));
        assert!(answer.body.cluster_type().is_response());
        let count = assert_cluster_json(&format!(
            r#"{{"type":11,"data":{{"requestId":"26e3d4432e234d27","clientCount":1}},"uid":"{UID_B}","nsp":"/"}}"#
        ));
        assert_eq!(
            count.body,
            ClusterBody::BroadcastClientCount {
                request_id: "26e3d4432e234d27".into(),
                client_count: 1,
            }
        );
        let ack = assert_cluster_json(&format!(
            r#"{{"type":12,"data":{{"requestId":"26e3d4432e234d27","packet":"ack-from-c2@B"}},"uid":"{UID_B}","nsp":"/"}}"#
        ));
        assert_eq!(
            ack.body,
            ClusterBody::BroadcastAck {
                request_id: "26e3d4432e234d27".into(),
                packet: s("ack-from-c2@B"),
            }
        );
        let sockets = assert_cluster_json(&format!(
            r#"{{"type":8,"data":{{"requestId":"d517e04a5950486d","sockets":[{FETCHED_SOCKET}]}},"uid":"{UID_B}","nsp":"/"}}"#
        ));
        let ClusterBody::FetchSocketsResponse { sockets, .. } = &sockets.body else {
            panic!("a FETCH_SOCKETS_RESPONSE");
        };
        assert_eq!(sockets[0].id, "pHL8NGQqrfPTeE33AAAB");
        // Heartbeats and ADAPTER_CLOSE carry no data.
        for (kind, text) in [
            (
                ClusterType::InitialHeartbeat,
                r#"{"type":1,"uid":"u","nsp":"/"}"#,
            ),
            (ClusterType::Heartbeat, r#"{"type":2,"uid":"u","nsp":"/"}"#),
            (
                ClusterType::AdapterClose,
                r#"{"type":13,"uid":"u","nsp":"/"}"#,
            ),
        ] {
            assert_eq!(assert_cluster_json(text).body.cluster_type(), kind);
        }
    }

    #[test]
    fn the_sharded_binary_broadcast_decodes_and_re_encodes_byte_for_byte() {
        let bytes = hex(SHARDED_BIN);
        assert_eq!(bytes.len(), 109);
        let message = cluster(&bytes);
        assert_eq!(
            message,
            ClusterMessage {
                uid: UID_A.into(),
                nsp: "/".into(),
                body: ClusterBody::Broadcast {
                    request_id: None,
                    packet: event(
                        None,
                        vec![
                            s("bin"),
                            Value::Binary(vec![1, 2, 3]),
                            obj(vec![("nested", Value::Binary(vec![4, 5]))]),
                        ]
                    ),
                    opts: opts(&[], &[], Some(Flags::default())),
                },
            }
        );
        assert_eq!(to_hex(&cluster_bytes(&message)), SHARDED_BIN);
    }

    #[test]
    fn the_sharded_publish_channel_follows_the_subscription_mode() {
        let to = |room: &str, request_id: Option<&str>| ClusterMessage {
            uid: UID_A.into(),
            nsp: "/".into(),
            body: ClusterBody::Broadcast {
                request_id: request_id.map(str::to_string),
                packet: event(None, vec![s("e")]),
                opts: opts(&[room], &[], Some(Flags::default())),
            },
        };
        let sid = "pHL8NGQqrfPTeE33AAAB";
        assert_eq!(
            to(sid, None).publish_channel("p", SubscriptionMode::Dynamic),
            "p#/#"
        );
        assert_eq!(
            to(sid, None).publish_channel("p", SubscriptionMode::DynamicPrivate),
            format!("p#/#{sid}#")
        );
        assert_eq!(
            to("room1", Some("id")).publish_channel("p", SubscriptionMode::Dynamic),
            "p#/#",
            "broadcasts with acks use the main channel"
        );
    }

    // ------------------------------------------------------------------------------------
    // Channels (A.2, A.7)

    #[test]
    fn channel_names_are_nodes() {
        let p = DEFAULT_PREFIX;
        assert_eq!(broadcast_channel(p, "/"), "socket.io#/#");
        assert_eq!(broadcast_pattern(p, "/chat"), "socket.io#/chat#*");
        assert_eq!(room_channel(p, "/", "room1"), "socket.io#/#room1#");
        assert_eq!(request_channel(p, "/"), "socket.io-request#/#");
        assert_eq!(response_channel(p, "/chat"), "socket.io-response#/chat#");
        assert_eq!(
            specific_response_channel(p, "/", "ifJJLg"),
            "socket.io-response#/#ifJJLg#"
        );
        assert_eq!(
            sharded_response_channel(p, "/", UID_A),
            "socket.io#/#73db1dad0d7b158c#"
        );
        assert_eq!(classic_publish_channel(p, "/", &[]), "socket.io#/#");
        assert_eq!(
            classic_publish_channel(p, "/", &strings(&["room1"])),
            "socket.io#/#room1#"
        );
        assert_eq!(
            classic_publish_channel(p, "/", &strings(&["a", "a"])),
            "socket.io#/#a#",
            "one distinct room"
        );
        assert_eq!(
            classic_publish_channel(p, "/", &strings(&["room1", "room2"])),
            "socket.io#/#"
        );
        assert!(looks_like_socket_id("pHL8NGQqrfPTeE33AAAB"));
        assert!(!looks_like_socket_id("room1"));
    }

    #[test]
    fn channels_are_classified_as_node_takes_them() {
        let p = DEFAULT_PREFIX;
        assert_eq!(broadcast_room("socket.io#/#", p, "/"), Some(""));
        assert_eq!(broadcast_room("socket.io#/#room1#", p, "/"), Some("room1"));
        assert_eq!(
            broadcast_room("socket.io#/#pHL8NGQqrfPTeE33AAAB#", p, "/"),
            Some("pHL8NGQqrfPTeE33AAAB")
        );
        assert_eq!(broadcast_room("socket.io#/chat#", p, "/"), None);
        assert_eq!(
            broadcast_room("socket.io#/chat#roomz#", p, "/chat"),
            Some("roomz")
        );
        assert_eq!(broadcast_room("other#/#", p, "/"), None);
        // Rooms and namespaces may hold `#`; the room is what is left less the last character.
        assert_eq!(broadcast_room("socket.io#/#a#b#", p, "/"), Some("a#b"));
        assert_eq!(broadcast_room("socket.io#/a#b#", p, "/a"), Some("b"));
        assert_eq!(broadcast_room("socket.io#/a#b#", p, "/a#b"), Some(""));
        assert_eq!(broadcast_room("socket.io#/#x", p, "/"), Some(""));
        assert_eq!(broadcast_room("socket.io#/#ab", p, "/"), Some("a"));
        assert_eq!(broadcast_room("socket.io#/#é#", p, "/"), Some("é"));

        assert_eq!(
            classic_channel("socket.io-request#/#", p, "/"),
            Some(ClassicChannel::Request)
        );
        assert_eq!(
            classic_channel("socket.io-response#/#", p, "/"),
            Some(ClassicChannel::Response)
        );
        assert_eq!(
            classic_channel("socket.io-response#/#ifJJLg#", p, "/"),
            Some(ClassicChannel::ResponseTo { uid: "ifJJLg" })
        );
        assert_eq!(
            classic_channel("socket.io#/#room1#", p, "/"),
            Some(ClassicChannel::Broadcast { room: "room1" })
        );
        assert_eq!(classic_channel("socket.io-request#/chat#", p, "/"), None);
        assert_eq!(classic_channel("socket.io-request#/#x#", p, "/"), None);

        assert_eq!(
            sharded_channel("socket.io#/#", p, "/", UID_A),
            Some(ShardedChannel::Main)
        );
        assert_eq!(
            sharded_channel("socket.io#/#73db1dad0d7b158c#", p, "/", UID_A),
            Some(ShardedChannel::Response)
        );
        assert_eq!(
            sharded_channel("socket.io#/#room1#", p, "/", UID_A),
            Some(ShardedChannel::Room("room1"))
        );
        assert_eq!(sharded_channel("socket.io#/chat#", p, "/", UID_A), None);
    }

    // ------------------------------------------------------------------------------------
    // Refusals

    #[test]
    fn malformed_messages_are_errors() {
        let max = DEFAULT_MAX_LEN;
        let request = |text: &str| Request::decode(text.as_bytes(), max);
        assert_eq!(
            request(r#"{"type":"1","requestId":"x"}"#),
            Err(AdapterError::WrongType("type"))
        );
        assert_eq!(
            request(r#"{"type":1.5,"requestId":"x"}"#),
            Err(AdapterError::WrongType("type"))
        );
        assert_eq!(
            request(r#"{"type":-1,"requestId":"x"}"#),
            Err(AdapterError::WrongType("type"))
        );
        assert_eq!(
            request(r#"{"requestId":"x"}"#),
            Err(AdapterError::Missing("type"))
        );
        assert_eq!(
            request(r#"{"type":1}"#),
            Err(AdapterError::Missing("requestId"))
        );
        assert_eq!(
            request(r#"{"type":1,"requestId":7}"#),
            Err(AdapterError::WrongType("requestId"))
        );
        assert_eq!(
            request(r#"{"type":42}"#),
            Err(AdapterError::UnknownType(42))
        );
        assert_eq!(
            request(r#"{"type":8,"requestId":"x"}"#),
            Err(AdapterError::UnknownType(8))
        );
        assert_eq!(
            request(r#"{"type":5,"requestId":"x"}"#),
            Err(AdapterError::Missing("opts"))
        );
        assert_eq!(
            request(r#"{"type":5,"requestId":"x","opts":{"rooms":"abc"}}"#),
            Err(AdapterError::WrongType("rooms"))
        );
        assert_eq!(
            request(r#"{"type":5,"requestId":"x","opts":{"rooms":[1.5]}}"#),
            Err(AdapterError::WrongType("rooms"))
        );
        assert_eq!(
            request(r#"{"type":5,"requestId":"x","opts":{"flags":{"volatile":1}}}"#),
            Err(AdapterError::WrongType("volatile"))
        );
        assert_eq!(
            request(r#"{"type":6,"data":"ev"}"#),
            Err(AdapterError::WrongType("data"))
        );
        assert_eq!(request(r#"{"type":6}"#), Err(AdapterError::Missing("data")));
        assert_eq!(
            request(r#"{"type":1,"requestId":"x"} x"#),
            Err(AdapterError::Json)
        );
        assert_eq!(
            request(r#"{"type":1,"requestId":"x""#),
            Err(AdapterError::Json)
        );
        assert_eq!(request(r#"{"type":1e400}"#), Err(AdapterError::Json));
        // Not starting with `{`: MessagePack, where `[` is a lone integer.
        assert_eq!(request(r#"[1,2]"#), Err(AdapterError::MessagePack));
        assert_eq!(Request::decode(&[], max), Err(AdapterError::MessagePack));
        assert_eq!(
            Request::decode(&[0x92, 1, 2], max),
            Err(AdapterError::Shape)
        );
        assert_eq!(Request::decode(&[0xc0], max), Err(AdapterError::Shape));

        let cluster = |text: &str| ClusterMessage::decode(text.as_bytes(), max);
        assert_eq!(
            cluster(r#"{"type":14,"uid":"u","nsp":"/"}"#),
            Err(AdapterError::UnknownType(14))
        );
        assert_eq!(
            cluster(r#"{"type":0,"uid":"u","nsp":"/"}"#),
            Err(AdapterError::UnknownType(0))
        );
        assert_eq!(
            cluster(r#"{"type":1,"nsp":"/"}"#),
            Err(AdapterError::Missing("uid"))
        );
        assert_eq!(
            cluster(r#"{"type":1,"uid":"u"}"#),
            Err(AdapterError::Missing("nsp"))
        );
        assert_eq!(
            cluster(r#"{"type":3,"uid":"u","nsp":"/"}"#),
            Err(AdapterError::Missing("data"))
        );
        assert_eq!(
            cluster(r#"{"type":3,"uid":"u","nsp":"/","data":[]}"#),
            Err(AdapterError::WrongType("data"))
        );
        assert_eq!(
            cluster(r#"{"type":3,"uid":"u","nsp":"/","data":{"opts":{}}}"#),
            Err(AdapterError::Missing("packet"))
        );
        assert_eq!(
            cluster(r#"{"type":3,"uid":"u","nsp":"/","data":{"opts":{},"packet":{"type":2}}}"#),
            Err(AdapterError::Missing("packet.data"))
        );
        assert_eq!(
            cluster(
                r#"{"type":3,"uid":"u","nsp":"/","data":{"opts":{},"packet":{"type":9,"data":[]}}}"#
            ),
            Err(AdapterError::WrongType("packet.type"))
        );
        assert_eq!(
            cluster(
                r#"{"type":8,"uid":"u","nsp":"/","data":{"requestId":"r","sockets":[{"rooms":[]}]}}"#
            ),
            Err(AdapterError::Missing("id"))
        );
        assert_eq!(
            cluster(r#"{"type":11,"uid":"u","nsp":"/","data":{"requestId":"r","clientCount":-1}}"#),
            Err(AdapterError::WrongType("clientCount"))
        );

        // Broadcasts are MessagePack only, and an array of three.
        let to_room1 = hex(TO_ROOM1);
        let decode = |bytes: &[u8]| BroadcastMessage::decode(bytes, max);
        assert_eq!(decode(br#"["u",{},{}]"#), Err(AdapterError::MessagePack));
        assert_eq!(decode(br#"{"a":1}"#), Err(AdapterError::MessagePack));
        assert_eq!(decode(&[0x92, 0xa1, b'u', 0x80]), Err(AdapterError::Shape));
        assert_eq!(decode(&[0x80]), Err(AdapterError::Shape));
        assert_eq!(
            decode(&[0x93, 0x01, 0x80, 0x80]),
            Err(AdapterError::WrongType("uid"))
        );
        assert_eq!(
            decode(&[0x93, 0xa1, b'u', 0x80, 0x80]),
            Err(AdapterError::Missing("packet.type"))
        );
        assert_eq!(
            decode(&[0x93, 0xa1, b'u', 0x90, 0x80]),
            Err(AdapterError::WrongType("packet"))
        );
        for cut in 0..to_room1.len() {
            assert_eq!(
                decode(&to_room1[..cut]),
                Err(AdapterError::MessagePack),
                "cut at {cut}"
            );
        }
        let mut trailing = to_room1.clone();
        trailing.push(0xc0);
        assert_eq!(decode(&trailing), Err(AdapterError::MessagePack));
        // A string that is not UTF-8.
        let mut bad = to_room1.clone();
        let at = bad.windows(2).position(|w| w == [0xa1, b'x']).unwrap();
        bad[at + 1] = 0xff;
        assert_eq!(decode(&bad), Err(AdapterError::InvalidUtf8));
    }

    #[test]
    fn hostile_lengths_fail_fast_and_inputs_over_the_limit_are_not_read() {
        // Declared lengths of 4 GiB with nothing behind them: str32, bin32, ext32, array32,
        // map32, in a broadcast and alone.
        for head in [
            &[0xdb, 0xff, 0xff, 0xff, 0xff][..],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
        ] {
            let mut message = vec![0x93, 0xa1, b'u'];
            message.extend_from_slice(head);
            assert_eq!(
                BroadcastMessage::decode(&message, DEFAULT_MAX_LEN),
                Err(AdapterError::MessagePack)
            );
            assert_eq!(
                Request::decode(head, DEFAULT_MAX_LEN),
                Err(AdapterError::MessagePack)
            );
        }
        let to_room1 = hex(TO_ROOM1);
        assert_eq!(
            BroadcastMessage::decode(&to_room1, to_room1.len() - 1),
            Err(AdapterError::TooLarge)
        );
        assert!(BroadcastMessage::decode(&to_room1, to_room1.len()).is_ok());
        let huge = vec![b'{'; DEFAULT_MAX_LEN + 1];
        assert_eq!(
            Request::decode(&huge, DEFAULT_MAX_LEN),
            Err(AdapterError::TooLarge)
        );
    }

    /// A broadcast whose event argument nests `extra` arrays below the packet's data, so the
    /// message is `3 + extra` deep.
    fn nested_broadcast(extra: usize) -> Vec<u8> {
        // ["u", {"type": 2, "data": [ [[...[nil]...]] ]}, {}]
        let mut bytes = hex("93a17582a474797065" /* "type" */);
        bytes.extend_from_slice(&hex("02a464617461" /* 2, "data" */));
        bytes.push(0x91);
        bytes.extend(std::iter::repeat_n(0x91, extra));
        bytes.extend_from_slice(&[0xc0, 0x80]);
        bytes
    }

    #[test]
    fn nesting_is_bounded_in_both_encodings() {
        assert!(
            BroadcastMessage::decode(&nested_broadcast(MAX_DEPTH - 3), DEFAULT_MAX_LEN).is_ok()
        );
        for extra in [MAX_DEPTH - 2, MAX_DEPTH + 10, 5000] {
            assert_eq!(
                BroadcastMessage::decode(&nested_broadcast(extra), DEFAULT_MAX_LEN),
                Err(AdapterError::TooDeep),
                "{extra}"
            );
        }
        // JSON: the request is depth 1 and its data array depth 2.
        let json = |depth: usize| {
            format!(
                r#"{{"type":6,"data":{}{}}}"#,
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        assert!(Request::decode(json(MAX_DEPTH).as_bytes(), DEFAULT_MAX_LEN).is_ok());
        for depth in [MAX_DEPTH + 1, 127, 129, 5000] {
            assert_eq!(
                Request::decode(json(depth).as_bytes(), DEFAULT_MAX_LEN),
                Err(AdapterError::TooDeep),
                "{depth}"
            );
        }
        // Deep keys count too.
        let mut deep_map = vec![0x81, 0xa1, b'k'];
        for _ in 0..MAX_DEPTH {
            deep_map.extend_from_slice(&[0x81, 0xa1, b'k']);
        }
        deep_map.push(0xc0);
        assert_eq!(
            Request::decode(&deep_map, DEFAULT_MAX_LEN),
            Err(AdapterError::TooDeep)
        );
    }

    #[test]
    fn values_json_cannot_carry_go_as_messagepack_and_come_back_unchanged() {
        for data in [
            Value::Binary(vec![0]),
            Value::Ext(-1, vec![0, 0, 0, 1]),
            Value::F64(f64::NAN),
            Value::F64(f64::INFINITY),
            Value::F32(1.5),
            Value::Map(vec![(n(1), s("integer key"))]),
        ] {
            let request = Request {
                uid: Some("u".into()),
                body: RequestBody::ServerSideEmit {
                    request_id: None,
                    data: arr(vec![s("ev"), data]),
                },
            };
            let bytes = request_bytes(&request);
            assert_ne!(bytes[0], b'{');
            let again = Request::decode(&bytes, DEFAULT_MAX_LEN).unwrap();
            assert_eq!(format!("{again:?}"), format!("{request:?}"));
        }
        // JSON floats come back exactly, -0 included.
        for float in [0.1, -0.0, 1e300, 2.0, 5e-324, 123456.789] {
            let request = Request {
                uid: None,
                body: RequestBody::ServerSideEmit {
                    request_id: Some("r".into()),
                    data: arr(vec![Value::F64(float)]),
                },
            };
            let bytes = request_bytes(&request);
            assert_eq!(bytes[0], b'{');
            let again = Request::decode(&bytes, DEFAULT_MAX_LEN).unwrap();
            assert_eq!(format!("{again:?}"), format!("{request:?}"));
        }
    }

    #[test]
    fn duplicate_keys_count_with_their_last_value() {
        let request = request(r#"{"type":1,"requestId":"a","requestId":"b","type":1}"#);
        assert_eq!(request.body.request_id(), Some("b"));
    }

    #[test]
    fn type_numbers_round_trip() {
        for n in 0..=9 {
            assert_eq!(RequestType::from_number(n).unwrap().number() as u64, n);
        }
        assert_eq!(RequestType::from_number(10), None);
        for n in 1..=13 {
            assert_eq!(ClusterType::from_number(n).unwrap().number() as u64, n);
        }
        assert_eq!(ClusterType::from_number(0), None);
        assert_eq!(ClusterType::from_number(14), None);
        assert_eq!(ClusterType::from_number(u64::MAX), None);
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::F64),
            any::<f32>().prop_map(Value::F32),
            ".{0,8}".prop_map(Value::from),
            vec(any::<u8>(), 0..8).prop_map(Value::Binary),
            (any::<i8>(), vec(any::<u8>(), 0..10)).prop_map(|(t, d)| Value::Ext(t, d)),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                vec(
                    (
                        prop_oneof![".{0,4}".prop_map(Value::from), inner.clone()],
                        inner
                    ),
                    0..4
                )
                .prop_map(Value::Map),
            ]
        })
    }

    proptest::proptest! {
        /// Any event data and any names survive every message that carries them, in whichever
        /// encoding the encoder picks.
        #[test]
        fn any_data_survives_every_message(
            args in proptest::collection::vec(any_value(), 0..4),
            ack in any_value(),
            name in ".{0,6}",
        ) {
            survives_every_message(arr(args), ack, name);
        }
    }

    /// Compared by debug text, where NaN equals NaN.
    fn assert_same(a: &dyn fmt::Debug, b: &dyn fmt::Debug) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    fn survives_every_message(data: Value, ack: Value, name: String) {
        let b = BroadcastMessage {
            uid: name.clone(),
            packet: event(Some(&name), vec![data.clone()]),
            opts: opts(&[&name], &[&name], Some(Flags::default())),
        };
        assert_same(&broadcast(&encoded(&b)), &b);
        let q = Request {
            uid: Some(name.clone()),
            body: RequestBody::ServerSideEmit {
                request_id: Some(name.clone()),
                data: data.clone(),
            },
        };
        assert_same(
            &Request::decode(&request_bytes(&q), usize::MAX).unwrap(),
            &q,
        );
        let fetched = RemoteSocket {
            id: name.clone(),
            handshake: ack.clone(),
            rooms: vec![name.clone()],
            data,
        };
        for (r, pending) in [
            (
                Response::BroadcastAck {
                    request_id: name.clone(),
                    packet: ack.clone(),
                },
                RequestType::Broadcast,
            ),
            (
                Response::ServerSideEmit {
                    request_id: name.clone(),
                    data: ack.clone(),
                },
                RequestType::ServerSideEmit,
            ),
            (
                Response::RemoteFetch {
                    request_id: name.clone(),
                    sockets: vec![fetched],
                },
                RequestType::RemoteFetch,
            ),
        ] {
            assert_same(&response(&response_bytes(&r), pending), &r);
        }
        let c = ClusterMessage {
            uid: name.clone(),
            nsp: name.clone(),
            body: ClusterBody::ServerSideEmitResponse {
                request_id: name,
                packet: ack,
            },
        };
        assert_same(&cluster(&cluster_bytes(&c)), &c);
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            AdapterError::Missing("requestId").to_string(),
            "adapter message lacks `requestId`"
        );
        assert_eq!(
            AdapterError::UnknownType(42).to_string(),
            "adapter message has unknown type 42"
        );
    }
}
