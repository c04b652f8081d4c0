//! This process as one node of a Redis cluster of Socket.IO servers, wire-compatible with
//! Node's `@socket.io/redis-adapter` (classic mode) and `@socket.io/redis-emitter`: each
//! namespace's uid and subscriptions, what a local broadcast publishes, and what a message from
//! Redis asks this node to deliver (the receiving rules of the classic adapter).
//!
//! Sans-IO, like the engine: bytes and channel names in, decisions out. It never touches a
//! socket, a runtime or the clock; the Redis link carries its publishes and hands it what the
//! subscriptions receive, and the shards deliver what it decodes.

use std::collections::HashMap;

use bytes::Bytes;

use crate::codec::adapter::{
    self, AdapterError, BroadcastMessage, BroadcastOpts, ClassicChannel, ClusterBody,
    ClusterMessage, Flags, Packet, RemoteSocket, Request, RequestBody, RequestType, Response,
    SubscriptionMode,
};
use crate::codec::notepack::{self, DecodedEvent, DecodedValue, NotepackError};
use crate::id::RandomPool;

/// The largest message from Redis this node decodes; a larger one is dropped unread.
pub const MAX_MESSAGE: usize = adapter::DEFAULT_MAX_LEN;

/// The characters of a Node `uid2` id: a random byte names one of them (byte mod 64).
const UID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Which of Node's Redis adapters this node speaks: they differ in channels and format and
/// can't share a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `createAdapter`: classic Pub/Sub, a pattern per namespace, requests and responses on
    /// channels of their own.
    #[default]
    Classic,
    /// `createShardedAdapter` (Redis 7 sharded Pub/Sub): everything on the namespace's main
    /// channel, responses on the asker's own, and in the dynamic modes one channel per room.
    Sharded(SubscriptionMode),
}

/// What a namespace's adapter subscribes to: patterns (`PSUBSCRIBE`), channels (`SUBSCRIBE`)
/// and sharded channels (`SSUBSCRIBE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    /// Classic: `<prefix>#<nsp>#*`, every broadcast of the namespace.
    pub patterns: Vec<String>,
    /// Classic: the request channel, the shared response channel and this node's own one.
    pub channels: Vec<String>,
    /// Sharded: the main channel and this node's response channel.
    pub sharded: Vec<String>,
}

/// A channel, and whether it is a sharded one (`SPUBLISH`, `SSUBSCRIBE`, `PUBSUB
/// SHARDNUMSUB`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The channel's name.
    pub name: String,
    /// Whether it is a sharded channel.
    pub sharded: bool,
}

/// A broadcast sent by this node's application, to publish.
#[derive(Debug, Clone, Copy)]
pub struct LocalBroadcast<'a> {
    /// The namespace.
    pub nsp: &'a str,
    /// The target rooms (none: the whole namespace).
    pub rooms: &'a [Box<str>],
    /// The rooms whose members are left out.
    pub except: &'a [Box<str>],
    /// Dropped for recipients that can't take it at once.
    pub volatile: bool,
    /// The event name.
    pub event: &'a str,
    /// The arguments' JSON, comma-separated, without brackets.
    pub args: &'a [u8],
    /// The binary attachments the arguments' placeholders name.
    pub attachments: &'a [Bytes],
    /// Its connection state recovery offset, when stored (ringcast's `opts.offset`).
    pub offset: Option<&'a str>,
}

/// A message to publish: its channel and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The channel.
    pub channel: String,
    /// The message.
    pub payload: Vec<u8>,
    /// Published with `SPUBLISH` (the sharded adapter), not `PUBLISH`.
    pub sharded: bool,
}

/// A broadcast another node (or an emitter) published, decoded once for every shard here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBroadcast {
    /// The namespace.
    pub nsp: String,
    /// The target rooms (none: the whole namespace).
    pub rooms: Vec<String>,
    /// The rooms whose members are left out.
    pub except: Vec<String>,
    /// Dropped for recipients that can't take it at once.
    pub volatile: bool,
    /// The event, its arguments as JSON with placeholders, and its attachments.
    pub event: DecodedEvent,
    /// The offset a ringcast node gave it for connection state recovery (`opts.offset`).
    pub offset: Option<String>,
}

/// An operation another node (or an emitter) asks every node to apply to its own sockets:
/// Node's `socketsJoin`, `socketsLeave` and `disconnectSockets`, which answer nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOperation {
    /// The namespace.
    pub nsp: String,
    /// The sockets' rooms (none: the whole namespace).
    pub rooms: Vec<String>,
    /// The rooms whose members are left out.
    pub except: Vec<String>,
    /// What to do to each.
    pub action: RemoteAction,
}

/// What a [`RemoteOperation`] does to each socket it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteAction {
    /// Join these rooms.
    Join(Vec<String>),
    /// Leave these rooms.
    Leave(Vec<String>),
    /// Leave the namespace, or with `close` end the whole connection.
    Disconnect {
        /// End the Engine.IO connection too.
        close: bool,
    },
}

/// A question another node asks every node, to answer on the response channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteQuery {
    /// The namespace.
    pub nsp: String,
    /// The asking node's request id, to put in the answer.
    pub request_id: String,
    /// The sockets' rooms (none: the whole namespace; unused by all-rooms).
    pub rooms: Vec<String>,
    /// The rooms whose members are left out.
    pub except: Vec<String>,
    /// Sharded: the asking node's uid, whose own channel gets the answer (classic answers go
    /// to the shared response channel).
    pub reply_to: Option<String>,
}

/// A broadcast another node sends with `io.timeout(ms).emit(..., callback)`: every node delivers
/// it and reports its recipients and their acks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAckBroadcast {
    /// The namespace, the asking node's request id and the selected rooms.
    pub query: RemoteQuery,
    /// Dropped for recipients that can't take it at once.
    pub volatile: bool,
    /// The event, its arguments as JSON with placeholders, and its attachments.
    pub event: DecodedEvent,
    /// How long the asking node waits, in milliseconds, if it said.
    pub timeout_ms: Option<u64>,
}

/// An event another node (or an emitter) sent to the other servers, not to clients: Node's
/// `serverSideEmit`, for the namespace's server-side handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteServerEvent {
    /// The namespace.
    pub nsp: String,
    /// With an ack expected, whom to answer ([`Node::server_event_response`]; no rooms).
    pub ack: Option<RemoteQuery>,
    /// The event and its arguments.
    pub event: DecodedEvent,
}

/// Who asked a question this node sent: one request of one shard. Every answer names it (the
/// request id carries it, with the kind of answer expected), so the link that receives the
/// answers keeps no table of questions in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker {
    /// The asking shard.
    pub shard: u16,
    /// The shard's request id.
    pub request: u64,
}

/// A question this node asks every other node of a namespace.
#[derive(Debug, Clone, Copy)]
pub enum Question<'a> {
    /// Describe your sockets in `rooms` (none: all) but not in `except` (REMOTE_FETCH).
    Fetch {
        /// The rooms.
        rooms: &'a [Box<str>],
        /// The rooms whose members are left out.
        except: &'a [Box<str>],
    },
    /// Name your rooms of the namespace (ALL_ROOMS).
    AllRooms,
    /// Deliver this broadcast and report its recipients and their acks (BROADCAST).
    Broadcast {
        /// The broadcast.
        broadcast: LocalBroadcast<'a>,
        /// How long this node waits for the acks, in milliseconds.
        timeout_ms: u64,
    },
    /// Run your handler of this event and answer with its ack (SERVER_SIDE_EMIT with ack).
    ServerEvent {
        /// The event name.
        event: &'a str,
        /// The arguments' JSON, comma-separated, without brackets.
        args: &'a [u8],
        /// The binary attachments the arguments' placeholders name.
        attachments: &'a [Bytes],
    },
}

/// One other node's answer to a question of this node's.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The namespace asked about.
    pub nsp: String,
    /// The request it answers.
    pub asker: Asker,
    /// What it says.
    pub reply: AnswerReply,
}

/// What an [`Answer`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerReply {
    /// Its sockets ([`Question::Fetch`]).
    Sockets(Vec<RemoteSocket>),
    /// Its rooms ([`Question::AllRooms`]).
    Rooms(Vec<String>),
    /// How many of its sockets got the broadcast: that many [`AnswerReply::Ack`] follow
    /// ([`Question::Broadcast`]).
    Recipients(u64),
    /// One recipient's ack: its first argument, the only one that crosses nodes.
    Ack(DecodedValue),
    /// Its server-side handler's ack ([`Question::ServerEvent`]).
    ServerAck(DecodedValue),
}

/// What a message from Redis asks of this node.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Deliver to the matching local sockets (never re-published).
    Broadcast(RemoteBroadcast),
    /// Apply to the matching local sockets.
    Operation(RemoteOperation),
    /// Describe the matching local sockets to the node that asks ([`Node::fetch_response`]).
    Fetch(RemoteQuery),
    /// Name every local room of the namespace to the node that asks
    /// ([`Node::rooms_response`]).
    AllRooms(RemoteQuery),
    /// Deliver to the matching local sockets asking each for an ack, and tell the node that
    /// asks how many got it and what they answered ([`Node::client_count_response`],
    /// [`Node::ack_response`]).
    AckBroadcast(RemoteAckBroadcast),
    /// Name the matching local sockets' ids to the node that asks (the legacy SOCKETS request,
    /// [`Node::socket_ids_response`]).
    SocketIds(RemoteQuery),
    /// Run the namespace's server-side handler of the event (and, with a request id, answer
    /// with its ack: [`Node::server_event_response`]).
    ServerEvent(RemoteServerEvent),
    /// An answer to a question this node asked: for the shard that asked.
    Answer(Answer),
    /// Nothing to do, as the protocol says: this node's own broadcast coming back, a room
    /// this node has no member of, a channel of no namespace it serves.
    Ignored,
    /// Bad input: dropped (and counted by the caller).
    Dropped(Dropped),
}

/// Why a message from Redis was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not a message of the adapter's protocol (or too large, or too deep).
    Malformed(AdapterError),
    /// An adapter message whose event data can't be delivered.
    BadEvent(NotepackError),
    /// A packet of another type than EVENT, or for another namespace than its channel's.
    Unexpected,
}

/// The uid a log entry names (nobody receives it as a broadcast).
const LOG_UID: &str = "ringcast-log";

/// A stored broadcast (or direct emit) as connection state recovery's log in Redis keeps it:
/// a classic broadcast message (`[uid, packet, opts]`, MessagePack, with `opts.offset`), so it
/// reads back as what another node would have published.
pub fn log_entry(broadcast: &LocalBroadcast<'_>) -> Result<Vec<u8>, NotepackError> {
    let data = notepack::event_to_value(broadcast.event, broadcast.args, broadcast.attachments)?;
    let message = BroadcastMessage {
        uid: LOG_UID.to_owned(),
        packet: Packet {
            kind: 2,
            data,
            nsp: Some(broadcast.nsp.to_owned()),
        },
        opts: BroadcastOpts {
            rooms: broadcast.rooms.iter().map(|r| r.to_string()).collect(),
            except: broadcast.except.iter().map(|r| r.to_string()).collect(),
            flags: None,
            offset: broadcast.offset.map(str::to_owned),
        },
    };
    let mut entry = Vec::new();
    message.encode(&mut entry);
    Ok(entry)
}

/// A log entry of [`log_entry`]'s, read back (garbage is dropped, never delivered).
pub fn read_log_entry(entry: &[u8]) -> Result<RemoteBroadcast, Dropped> {
    let message = BroadcastMessage::decode(entry, MAX_MESSAGE).map_err(Dropped::Malformed)?;
    if message.packet.kind != 2 {
        return Err(Dropped::Unexpected);
    }
    let nsp = message.packet.nsp_or_root().to_owned();
    let event = notepack::decode_event(message.packet.data).map_err(Dropped::BadEvent)?;
    Ok(RemoteBroadcast {
        nsp,
        rooms: message.opts.rooms,
        except: message.opts.except,
        volatile: false,
        event,
        offset: message.opts.offset,
    })
}

/// The adapter state of this process: one uid per namespace, as Node counts one server per
/// subscribed connection and this process has one.
pub struct Node {
    prefix: String,
    mode: Mode,
    uids: HashMap<String, String>,
    /// Sharded, dynamic modes: how many shards of this process have members of each room
    /// that has a channel of its own (subscribed while above zero).
    rooms: HashMap<(String, String), u32>,
    random: RandomPool,
}

impl Node {
    /// A classic node publishing under `prefix` (Node's `key` option, `socket.io` by default).
    pub fn new(prefix: impl Into<String>) -> Node {
        Node::with_mode(prefix, Mode::Classic)
    }

    /// A node of the given adapter `mode` publishing under `prefix`.
    pub fn with_mode(prefix: impl Into<String>, mode: Mode) -> Node {
        Node {
            prefix: prefix.into(),
            mode,
            uids: HashMap::new(),
            rooms: HashMap::new(),
            random: RandomPool::new(),
        }
    }

    /// The adapter this node speaks.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Serves namespace `nsp`: gives it a uid and says what to subscribe to; `None` if it is
    /// served already.
    pub fn add_namespace(&mut self, nsp: &str) -> Option<Subscriptions> {
        if self.uids.contains_key(nsp) {
            return None;
        }
        let prefix = &self.prefix;
        let (uid, subscriptions) = match self.mode {
            Mode::Classic => {
                let uid = uid2(&mut self.random);
                let subscriptions = Subscriptions {
                    patterns: vec![adapter::broadcast_pattern(prefix, nsp)],
                    channels: vec![
                        adapter::request_channel(prefix, nsp),
                        adapter::response_channel(prefix, nsp),
                        adapter::specific_response_channel(prefix, nsp, &uid),
                    ],
                    sharded: Vec::new(),
                };
                (uid, subscriptions)
            }
            Mode::Sharded(_) => {
                let uid = random_id(&mut self.random);
                let subscriptions = Subscriptions {
                    patterns: Vec::new(),
                    channels: Vec::new(),
                    sharded: vec![
                        adapter::broadcast_channel(prefix, nsp),
                        adapter::sharded_response_channel(prefix, nsp, &uid),
                    ],
                };
                (uid, subscriptions)
            }
        };
        self.uids.insert(nsp.to_owned(), uid);
        Some(subscriptions)
    }

    /// The channel whose subscribers Node counts as the cluster's servers of namespace `nsp`
    /// (`PUBSUB NUMSUB` of the request channel; sharded, `SHARDNUMSUB` of the main one);
    /// `None` if this node does not serve it.
    pub fn count_channel(&self, nsp: &str) -> Option<Channel> {
        self.uids.contains_key(nsp).then(|| match self.mode {
            Mode::Classic => Channel {
                name: adapter::request_channel(&self.prefix, nsp),
                sharded: false,
            },
            Mode::Sharded(_) => Channel {
                name: adapter::broadcast_channel(&self.prefix, nsp),
                sharded: true,
            },
        })
    }

    /// Sharded, dynamic modes: a shard of this process has its first member of `room`. The
    /// channel to subscribe to when this is the process's first (and the room has a channel
    /// of its own in this mode).
    pub fn room_joined(&mut self, nsp: &str, room: &str) -> Option<String> {
        let channel = self.own_room_channel(nsp, room)?;
        let shards = self
            .rooms
            .entry((nsp.to_owned(), room.to_owned()))
            .or_default();
        *shards += 1;
        (*shards == 1).then_some(channel)
    }

    /// Sharded, dynamic modes: a shard of this process has lost its last member of `room`.
    /// The channel to unsubscribe from when no shard has a member left.
    pub fn room_left(&mut self, nsp: &str, room: &str) -> Option<String> {
        let channel = self.own_room_channel(nsp, room)?;
        let key = (nsp.to_owned(), room.to_owned());
        let shards = self.rooms.get_mut(&key)?;
        *shards -= 1;
        if *shards > 0 {
            return None;
        }
        self.rooms.remove(&key);
        Some(channel)
    }

    /// Whether rooms have channels of their own here (the sharded adapter's dynamic modes).
    pub fn watches_rooms(&self) -> bool {
        matches!(
            self.mode,
            Mode::Sharded(SubscriptionMode::Dynamic | SubscriptionMode::DynamicPrivate)
        )
    }

    /// The channel of `room` of a served namespace, if rooms like it have one in this mode
    /// (Node's dynamic mode gives none to what looks like a socket id).
    fn own_room_channel(&self, nsp: &str, room: &str) -> Option<String> {
        self.uids.get(nsp)?;
        let own = match self.mode {
            Mode::Sharded(SubscriptionMode::Dynamic) => !adapter::looks_like_socket_id(room),
            Mode::Sharded(SubscriptionMode::DynamicPrivate) => true,
            _ => false,
        };
        own.then(|| adapter::room_channel(&self.prefix, nsp, room))
    }

    /// The uid of namespace `nsp`'s adapter, if it is served.
    pub fn uid(&self, nsp: &str) -> Option<&str> {
        self.uids.get(nsp).map(String::as_str)
    }

    /// What to publish for a broadcast of this node's application (Node's order: publish, then
    /// deliver locally). `None` for a namespace this node does not serve.
    pub fn publish(
        &self,
        broadcast: &LocalBroadcast<'_>,
    ) -> Option<Result<Publish, NotepackError>> {
        let uid = self.uid(broadcast.nsp)?;
        let data = match notepack::event_to_value(
            broadcast.event,
            broadcast.args,
            broadcast.attachments,
        ) {
            Ok(data) => data,
            Err(error) => return Some(Err(error)),
        };
        let rooms: Vec<String> = broadcast.rooms.iter().map(|r| r.to_string()).collect();
        let except = broadcast.except.iter().map(|r| r.to_string()).collect();
        let flags = Flags {
            volatile: broadcast.volatile.then_some(true),
            ..Flags::default()
        };
        if let Mode::Sharded(subscription) = self.mode {
            let message = ClusterMessage {
                uid: uid.to_owned(),
                nsp: broadcast.nsp.to_owned(),
                body: ClusterBody::Broadcast {
                    request_id: None,
                    // The sharded adapter's packet names no namespace: the message does.
                    packet: Packet {
                        kind: 2,
                        data,
                        nsp: None,
                    },
                    opts: BroadcastOpts {
                        rooms,
                        except,
                        flags: Some(flags),
                        offset: broadcast.offset.map(str::to_owned),
                    },
                },
            };
            let channel = message.publish_channel(&self.prefix, subscription);
            return Some(Ok(sharded_publish(channel, &message)));
        }
        let channel = adapter::classic_publish_channel(&self.prefix, broadcast.nsp, &rooms);
        let message = BroadcastMessage {
            uid: uid.to_owned(),
            packet: Packet {
                kind: 2,
                data,
                nsp: Some(broadcast.nsp.to_owned()),
            },
            opts: BroadcastOpts {
                rooms,
                except,
                flags: Some(flags),
                offset: broadcast.offset.map(str::to_owned),
            },
        };
        let mut payload = Vec::new();
        message.encode(&mut payload);
        Some(Ok(Publish {
            channel,
            payload,
            sharded: false,
        }))
    }

    /// The answer to a [`Incoming::Fetch`]: this node's matching sockets.
    pub fn fetch_response(&self, query: &RemoteQuery, sockets: Vec<RemoteSocket>) -> Publish {
        self.respond(
            query,
            Response::RemoteFetch {
                request_id: query.request_id.clone(),
                sockets,
            },
        )
    }

    /// The answer to a [`Incoming::AllRooms`]: this node's rooms of the namespace.
    pub fn rooms_response(&self, query: &RemoteQuery, rooms: Vec<String>) -> Publish {
        self.respond(
            query,
            Response::AllRooms {
                request_id: query.request_id.clone(),
                rooms,
            },
        )
    }

    /// What to publish for a join, leave or disconnect of this node's application, so that
    /// every other node applies it too (Node's REMOTE_JOIN, REMOTE_LEAVE, REMOTE_DISCONNECT;
    /// this node ignores its own copy). `None` for a namespace this node does not serve.
    pub fn operation_request(
        &self,
        nsp: &str,
        rooms: &[Box<str>],
        except: &[Box<str>],
        action: RemoteAction,
    ) -> Option<Publish> {
        let uid = self.uid(nsp)?;
        let opts = BroadcastOpts {
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            except: except.iter().map(|r| r.to_string()).collect(),
            flags: None,
            offset: None,
        };
        let body = match action {
            RemoteAction::Join(rooms) => RequestBody::RemoteJoin { opts, rooms },
            RemoteAction::Leave(rooms) => RequestBody::RemoteLeave { opts, rooms },
            RemoteAction::Disconnect { close } => RequestBody::RemoteDisconnect { opts, close },
        };
        self.request(nsp, uid, body)
    }

    /// What to publish to ask every other node `question` about namespace `nsp` for `asker`.
    /// `None` for a namespace this node does not serve.
    pub fn ask(
        &self,
        nsp: &str,
        asker: Asker,
        question: &Question<'_>,
    ) -> Option<Result<Publish, NotepackError>> {
        let uid = self.uid(nsp)?;
        let kind = match question {
            Question::Fetch { .. } => RequestType::RemoteFetch,
            Question::AllRooms => RequestType::AllRooms,
            Question::Broadcast { .. } => RequestType::Broadcast,
            Question::ServerEvent { .. } => RequestType::ServerSideEmit,
        };
        let request_id = request_id(uid, kind, asker);
        let names = |rooms: &[Box<str>]| rooms.iter().map(|r| r.to_string()).collect();
        let body = match *question {
            Question::Fetch { rooms, except } => RequestBody::RemoteFetch {
                request_id,
                opts: BroadcastOpts {
                    rooms: names(rooms),
                    except: names(except),
                    flags: None,
                    offset: None,
                },
            },
            Question::AllRooms => RequestBody::AllRooms { request_id },
            Question::Broadcast {
                broadcast,
                timeout_ms,
            } => {
                let data = match notepack::event_to_value(
                    broadcast.event,
                    broadcast.args,
                    broadcast.attachments,
                ) {
                    Ok(data) => data,
                    Err(error) => return Some(Err(error)),
                };
                let flags = Flags {
                    volatile: broadcast.volatile.then_some(true),
                    timeout: Some(timeout_ms),
                    ..Flags::default()
                };
                RequestBody::Broadcast {
                    request_id,
                    packet: Packet {
                        kind: 2,
                        data,
                        nsp: Some(nsp.to_owned()),
                    },
                    opts: BroadcastOpts {
                        rooms: names(broadcast.rooms),
                        except: names(broadcast.except),
                        flags: Some(flags),
                        offset: None,
                    },
                }
            }
            Question::ServerEvent {
                event,
                args,
                attachments,
            } => match notepack::event_to_value(event, args, attachments) {
                Ok(data) => RequestBody::ServerSideEmit {
                    request_id: Some(request_id),
                    data,
                },
                Err(error) => return Some(Err(error)),
            },
        };
        self.request(nsp, uid, body).map(Ok)
    }

    /// What to publish to send an event to every other node's server-side handlers, with no
    /// ack (Node's `serverSideEmit`). `None` for a namespace this node does not serve.
    pub fn server_event(
        &self,
        nsp: &str,
        event: &str,
        args: &[u8],
        attachments: &[Bytes],
    ) -> Option<Result<Publish, NotepackError>> {
        let uid = self.uid(nsp)?;
        let data = match notepack::event_to_value(event, args, attachments) {
            Ok(data) => data,
            Err(error) => return Some(Err(error)),
        };
        let body = RequestBody::ServerSideEmit {
            request_id: None,
            data,
        };
        self.request(nsp, uid, body).map(Ok)
    }

    /// The answer to a [`Incoming::ServerEvent`] with a request id: the first argument the
    /// handler acked with (as JSON with placeholders, and the attachments they name).
    pub fn server_event_response(
        &self,
        query: &RemoteQuery,
        json: &[u8],
        attachments: &[Bytes],
    ) -> Result<Publish, NotepackError> {
        self.respond_with_value(query, json, attachments, |request_id, data| {
            Response::ServerSideEmit { request_id, data }
        })
    }

    /// The answer to a [`Incoming::SocketIds`]: the ids of this node's matching sockets.
    pub fn socket_ids_response(&self, query: &RemoteQuery, sockets: Vec<String>) -> Publish {
        self.respond(
            query,
            Response::Sockets {
                request_id: query.request_id.clone(),
                sockets,
            },
        )
    }

    /// A request of this node's: classic, on the namespace's request channel; sharded, as the
    /// sharded adapter's message of the same meaning on the main channel (`None` for the
    /// questions it does not ask: all rooms).
    fn request(&self, nsp: &str, uid: &str, body: RequestBody) -> Option<Publish> {
        if let Mode::Sharded(_) = self.mode {
            let message = ClusterMessage {
                uid: uid.to_owned(),
                nsp: nsp.to_owned(),
                body: sharded::request_body(body)?,
            };
            let channel = adapter::broadcast_channel(&self.prefix, nsp);
            return Some(sharded_publish(channel, &message));
        }
        let request = Request {
            uid: Some(uid.to_owned()),
            body,
        };
        let mut payload = Vec::new();
        request.encode(&mut payload);
        Some(Publish {
            channel: adapter::request_channel(&self.prefix, nsp),
            payload,
            sharded: false,
        })
    }

    /// The first answer to a [`Incoming::AckBroadcast`]: how many local sockets got it (sent
    /// even when none did, or the asker would wait for this node until its timeout).
    pub fn client_count_response(&self, query: &RemoteQuery, count: usize) -> Publish {
        self.respond(
            query,
            Response::BroadcastClientCount {
                request_id: query.request_id.clone(),
                client_count: count as u64,
            },
        )
    }

    /// One recipient's ack to a [`Incoming::AckBroadcast`]: its first argument (as JSON with
    /// placeholders, and the attachments they name), the only one that crosses nodes.
    pub fn ack_response(
        &self,
        query: &RemoteQuery,
        json: &[u8],
        attachments: &[Bytes],
    ) -> Result<Publish, NotepackError> {
        self.respond_with_value(query, json, attachments, |request_id, packet| {
            Response::BroadcastAck { request_id, packet }
        })
    }

    /// An answer to `query` carrying one value (as JSON with placeholders, and the
    /// attachments they name), made by `response` from the request id and the value.
    fn respond_with_value(
        &self,
        query: &RemoteQuery,
        json: &[u8],
        attachments: &[Bytes],
        response: fn(String, rmpv::Value) -> Response,
    ) -> Result<Publish, NotepackError> {
        let value = notepack::json_to_value(json, attachments)?;
        Ok(self.respond(query, response(query.request_id.clone(), value)))
    }

    /// An answer to `query`. Classic: on the namespace's shared response channel, which every
    /// node reads (Node answers there unless told otherwise, and listens to both). Sharded: on
    /// the asker's own channel, as the sharded adapter's message of the same meaning.
    fn respond(&self, query: &RemoteQuery, response: Response) -> Publish {
        let nsp = &query.nsp;
        let response = match (self.mode, &query.reply_to) {
            (Mode::Sharded(_), Some(asker)) => match sharded::response_body(response) {
                Ok(body) => {
                    let channel = adapter::sharded_response_channel(&self.prefix, nsp, asker);
                    let message = ClusterMessage {
                        uid: self.uid(nsp).unwrap_or_default().to_owned(),
                        nsp: nsp.clone(),
                        body,
                    };
                    return sharded_publish(channel, &message);
                }
                Err(response) => response,
            },
            _ => response,
        };
        let mut payload = Vec::new();
        response.encode(&mut payload);
        Publish {
            channel: adapter::response_channel(&self.prefix, nsp),
            payload,
            sharded: false,
        }
    }

    /// Reads a message a subscription received on `channel`. `has_room(nsp, room)` says
    /// whether any local socket is in `room`: a message to one room no local socket is in is
    /// ignored before it is decoded, as Node does.
    pub fn receive(
        &self,
        channel: &str,
        payload: &[u8],
        has_room: impl Fn(&str, &str) -> bool,
    ) -> Incoming {
        if let Mode::Sharded(_) = self.mode {
            return sharded::receive(&self.prefix, &self.uids, channel, payload);
        }
        if let Some((nsp, uid, is_response)) = self.request_namespace(channel) {
            return if is_response {
                receive_response(nsp, uid, payload)
            } else {
                receive_request(nsp, uid, payload)
            };
        }
        // A namespace may contain `#`, so several served namespaces may claim the channel; the
        // message's own namespace settles it below.
        let mut claims =
            self.uids.iter().filter_map(|(nsp, uid)| {
                match adapter::classic_channel(channel, &self.prefix, nsp)? {
                    ClassicChannel::Broadcast { room } => Some((nsp, uid, room)),
                    _ => None,
                }
            });
        let Some(first) = claims.next() else {
            return Incoming::Ignored;
        };
        let claims: Vec<_> = std::iter::once(first).chain(claims).collect();
        let wanted = claims
            .iter()
            .any(|&(nsp, _, room)| room.is_empty() || has_room(nsp, room));
        if !wanted {
            return Incoming::Ignored;
        }
        // Every broadcast this node publishes comes back through its pattern: told apart by
        // the uid it starts with, it is not decoded at all.
        if claims
            .iter()
            .any(|&(_, uid, _)| starts_with_uid(payload, uid))
        {
            return Incoming::Ignored;
        }
        let message = match BroadcastMessage::decode(payload, MAX_MESSAGE) {
            Ok(message) => message,
            Err(error) => return Incoming::Dropped(Dropped::Malformed(error)),
        };
        let nsp = message.packet.nsp_or_root();
        let Some(&(_, uid, _)) = claims.iter().find(|(claimed, _, _)| *claimed == nsp) else {
            return Incoming::Dropped(Dropped::Unexpected);
        };
        if message.uid == *uid {
            return Incoming::Ignored;
        }
        if message.packet.kind != 2 {
            return Incoming::Dropped(Dropped::Unexpected);
        }
        let nsp = nsp.to_owned();
        let event = match notepack::decode_event(message.packet.data) {
            Ok(event) => event,
            Err(error) => return Incoming::Dropped(Dropped::BadEvent(error)),
        };
        let volatile = message
            .opts
            .flags
            .and_then(|flags| flags.volatile)
            .unwrap_or(false);
        Incoming::Broadcast(RemoteBroadcast {
            nsp,
            rooms: message.opts.rooms,
            except: message.opts.except,
            volatile,
            event,
            offset: message.opts.offset,
        })
    }
}

impl Node {
    /// The served namespace whose request or response channel `channel` is, with its uid and
    /// whether it is a response channel (the shared one, or this node's own).
    fn request_namespace(&self, channel: &str) -> Option<(&str, &str, bool)> {
        self.uids.iter().find_map(|(nsp, uid)| {
            let is_response = match adapter::classic_channel(channel, &self.prefix, nsp)? {
                ClassicChannel::Request => false,
                ClassicChannel::Response => true,
                ClassicChannel::ResponseTo { uid: to } if to == uid => true,
                _ => return None,
            };
            Some((nsp.as_str(), uid.as_str(), is_response))
        })
    }
}

/// What a join, leave or disconnect request (either adapter's, or the emitter's) asks.
fn operation(nsp: &str, opts: BroadcastOpts, action: RemoteAction) -> Incoming {
    Incoming::Operation(RemoteOperation {
        nsp: nsp.to_owned(),
        rooms: opts.rooms,
        except: opts.except,
        action,
    })
}

/// A request on namespace `nsp`'s request channel, from another node or an emitter.
fn receive_request(nsp: &str, uid: &str, payload: &[u8]) -> Incoming {
    let request = match Request::decode(payload, MAX_MESSAGE) {
        Ok(request) => request,
        Err(error) => return Incoming::Dropped(Dropped::Malformed(error)),
    };
    let apply = |opts, action| operation(nsp, opts, action);
    // This node's own requests come back to it: it applies its joins, leaves and disconnects
    // itself, and answers its own questions with its shards' part, not through Redis.
    if request.uid.as_deref() == Some(uid) {
        return Incoming::Ignored;
    }
    match request.body {
        RequestBody::RemoteJoin { opts, rooms } => apply(opts, RemoteAction::Join(rooms)),
        RequestBody::RemoteLeave { opts, rooms } => apply(opts, RemoteAction::Leave(rooms)),
        RequestBody::RemoteDisconnect { opts, close } => {
            apply(opts, RemoteAction::Disconnect { close })
        }
        RequestBody::RemoteFetch { request_id, opts } => Incoming::Fetch(RemoteQuery {
            nsp: nsp.to_owned(),
            request_id,
            rooms: opts.rooms,
            except: opts.except,
            reply_to: None,
        }),
        RequestBody::AllRooms { request_id } => Incoming::AllRooms(RemoteQuery {
            nsp: nsp.to_owned(),
            request_id,
            rooms: Vec::new(),
            except: Vec::new(),
            reply_to: None,
        }),
        RequestBody::Broadcast {
            request_id,
            packet,
            opts,
        } => {
            if packet.kind != 2 || packet.nsp_or_root() != nsp {
                return Incoming::Dropped(Dropped::Unexpected);
            }
            let event = match notepack::decode_event(packet.data) {
                Ok(event) => event,
                Err(error) => return Incoming::Dropped(Dropped::BadEvent(error)),
            };
            let flags = opts.flags.unwrap_or_default();
            Incoming::AckBroadcast(RemoteAckBroadcast {
                query: RemoteQuery {
                    nsp: nsp.to_owned(),
                    request_id,
                    rooms: opts.rooms,
                    except: opts.except,
                    reply_to: None,
                },
                volatile: flags.volatile.unwrap_or(false),
                event,
                timeout_ms: flags.timeout,
            })
        }
        RequestBody::Sockets { request_id, rooms } => Incoming::SocketIds(RemoteQuery {
            nsp: nsp.to_owned(),
            request_id,
            rooms,
            except: Vec::new(),
            reply_to: None,
        }),
        RequestBody::ServerSideEmit { request_id, data } => match notepack::decode_event(data) {
            Ok(event) => Incoming::ServerEvent(RemoteServerEvent {
                nsp: nsp.to_owned(),
                ack: request_id.map(|request_id| RemoteQuery {
                    nsp: nsp.to_owned(),
                    request_id,
                    rooms: Vec::new(),
                    except: Vec::new(),
                    reply_to: None,
                }),
                event,
            }),
            Err(error) => Incoming::Dropped(Dropped::BadEvent(error)),
        },
        // The legacy single-socket forms (adapter 6.x) are not served: no sender of 8.x or of
        // the emitter 5.x writes them.
        RequestBody::LegacyJoin { .. }
        | RequestBody::LegacyLeave { .. }
        | RequestBody::LegacyDisconnect { .. } => Incoming::Ignored,
    }
}

/// A response on one of namespace's response channels: an [`Answer`] if it answers a question
/// of this node's (whose uid is `uid`), ignored otherwise (other nodes' answers to each other).
fn receive_response(nsp: &str, uid: &str, payload: &[u8]) -> Incoming {
    let mut asker = None;
    let decoded = Response::decode(payload, MAX_MESSAGE, |id| {
        let (kind, of) = parse_request_id(id, uid)?;
        asker = Some(of);
        Some(kind)
    });
    let response = match decoded {
        Ok(Some(response)) => response,
        Ok(None) => return Incoming::Ignored,
        Err(error) => return Incoming::Dropped(Dropped::Malformed(error)),
    };
    let Some(asker) = asker else {
        return Incoming::Ignored;
    };
    let value = |value| notepack::decode_value(value).map_err(Dropped::BadEvent);
    let reply = match response {
        Response::RemoteFetch { sockets, .. } => Ok(AnswerReply::Sockets(sockets)),
        Response::AllRooms { rooms, .. } => Ok(AnswerReply::Rooms(rooms)),
        Response::BroadcastClientCount { client_count, .. } => {
            Ok(AnswerReply::Recipients(client_count))
        }
        Response::BroadcastAck { packet, .. } => value(packet).map(AnswerReply::Ack),
        Response::ServerSideEmit { data, .. } => value(data).map(AnswerReply::ServerAck),
        // Not a question this node asks.
        Response::Sockets { .. } | Response::Done { .. } => Err(Dropped::Unexpected),
    };
    match reply {
        Ok(reply) => Incoming::Answer(Answer {
            nsp: nsp.to_owned(),
            asker,
            reply,
        }),
        Err(why) => Incoming::Dropped(why),
    }
}

/// The request id of a question of node `uid`: `<uid>.<type>.<shard>.<request>`. Node's own ids
/// are six `uid2` characters, which never hold a dot.
fn request_id(uid: &str, kind: RequestType, asker: Asker) -> String {
    format!("{uid}.{}.{}.{}", kind.number(), asker.shard, asker.request)
}

/// Reads a request id of node `uid`'s (see [`request_id`]); `None` for anybody else's.
fn parse_request_id(id: &str, uid: &str) -> Option<(RequestType, Asker)> {
    let mut parts = id.strip_prefix(uid)?.strip_prefix('.')?.split('.');
    let kind = RequestType::from_number(parts.next()?.parse().ok()?)?;
    let shard = parts.next()?.parse().ok()?;
    let request = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((kind, Asker { shard, request }))
}

/// Whether a classic broadcast (MessagePack `[uid, packet, opts]`) starts with `uid`: a
/// three-element array whose first element is that string, as this node writes it (fixstr).
fn starts_with_uid(payload: &[u8], uid: &str) -> bool {
    let uid = uid.as_bytes();
    match payload {
        [0x93, len, rest @ ..] if uid.len() < 32 && usize::from(*len) == 0xa0 | uid.len() => {
            rest.starts_with(uid)
        }
        _ => false,
    }
}

/// A message of the sharded adapter's to publish on `channel`.
fn sharded_publish(channel: String, message: &ClusterMessage) -> Publish {
    let mut payload = Vec::new();
    message.encode(&mut payload);
    Publish {
        channel,
        payload,
        sharded: true,
    }
}

/// The sharded adapter's node id: Node's `randomId()`, 8 random bytes in hex.
fn random_id(random: &mut RandomPool) -> String {
    let mut bytes = [0u8; 8];
    random.fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Node `uid2(6)` id: six random characters of `A–Z a–z 0–9 - _`.
fn uid2(random: &mut RandomPool) -> String {
    let mut bytes = [0u8; 6];
    random.fill(&mut bytes);
    bytes
        .iter()
        .map(|&b| char::from(UID_ALPHABET[usize::from(b % 64)]))
        .collect()
}

mod sharded;
#[cfg(test)]
mod tests;
