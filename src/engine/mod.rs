//! Engine.IO sessions of one shard, as a sans-IO state machine.
//!
//! Owns every session the shard is responsible for: handshake, heartbeat deadlines, the active
//! transport (polling, a WebSocket probe, WebSocket), the outbound queues, and close reasons.
//! It knows nothing of Socket.IO: the application above sees [`Event`]s (open, message,
//! binary, close) and answers with [`Engine::send`] / [`Engine::close`], or with
//! [`Engine::send_many`] for a broadcast: those frames are held until the end of the runtime's
//! turn, so that a run of broadcasts to the same recipients reaches each as one write.
//!
//! It performs no I/O and reads no clock: the network layer feeds it requests and frames with
//! `now`, collects what to write ([`Engine::ws_poll_write`], [`PollReply`]), and the shard's
//! timer calls [`Engine::handle_timeouts`] at [`Engine::next_deadline`].
#![forbid(unsafe_code)]

mod admission;
mod session;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use slab::Slab;

use crate::codec::eio::{self, ContentType, Packet, Version};
use crate::codec::frame::{ws_header, Frame, FrameKind};
use crate::codec::ws;
use crate::config::{EngineConfig, SlowConsumerPolicy};
use crate::id::{Id, RandomPool};

pub use admission::{Admission, AdmissionLimits};
pub use session::CloseReason;
use session::{Heartbeat, Session, Transport, Upgrade};

/// Spare link queues kept for reuse, and the largest capacity worth keeping (frames).
const MAX_SPARE_QUEUES: usize = 4096;
const MAX_SPARE_QUEUE_CAPACITY: usize = 1024;

/// The most bytes of frames joined for one run of broadcasts; a longer run starts another.
const MAX_JOINED_BYTES: usize = 64 * 1024;

/// A session's slab key on its shard.
pub type SessionKey = u32;
/// A WebSocket connection on its shard: a slab slot plus the generation that tells a reused
/// slot from the connection that held it before (a finished task may still hold the old key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkKey {
    index: u32,
    generation: u32,
}

/// What a client's handshake request said: where it goes, which protocol, its query string
/// and address (kept for the application, like Node's `handshake.query` / `address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The application endpoint (HTTP path) the session belongs to.
    pub endpoint: u8,
    /// Engine.IO protocol revision.
    pub version: Version,
    /// The handshake request's query string.
    pub query: Box<str>,
    /// The client's address, when known.
    pub address: Option<SocketAddr>,
}

/// What the application layer learns about sessions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session was opened (handshake sent).
    Open(SessionKey),
    /// A text message.
    Message(SessionKey, Bytes),
    /// A binary message.
    Binary(SessionKey, Bytes),
    /// The session is gone; its key may be reused after this event.
    Close(SessionKey, CloseReason),
}

/// The HTTP answer to a polling request, made by the owner shard and written by whichever
/// shard holds the TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollReply {
    /// HTTP status.
    pub status: u16,
    /// Content-Type of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl PollReply {
    /// 200 with an Engine.IO payload.
    pub fn payload(content_type: ContentType, body: Vec<u8>) -> PollReply {
        PollReply {
            status: 200,
            content_type: content_type.as_str(),
            body: body.into(),
        }
    }

    /// 200 with a JSON body.
    pub fn json(body: Bytes) -> PollReply {
        PollReply {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    /// 200 `ok`, the answer to an accepted POST.
    pub fn ok() -> PollReply {
        PollReply {
            status: 200,
            content_type: "text/html",
            body: Bytes::from_static(b"ok"),
        }
    }

    /// An Engine.IO error answer (conformance.md §4).
    pub fn error(error: EngineError) -> PollReply {
        let (status, body): (u16, &'static [u8]) = match error {
            EngineError::UnknownTransport => (400, br#"{"code":0,"message":"Transport unknown"}"#),
            EngineError::UnknownSid => (400, br#"{"code":1,"message":"Session ID unknown"}"#),
            EngineError::BadHandshakeMethod => {
                (400, br#"{"code":2,"message":"Bad handshake method"}"#)
            }
            EngineError::BadRequest => (400, br#"{"code":3,"message":"Bad request"}"#),
            EngineError::Forbidden => (403, br#"{"code":4,"message":"Forbidden"}"#),
            EngineError::UnsupportedVersion => (
                400,
                br#"{"code":5,"message":"Unsupported protocol version"}"#,
            ),
            EngineError::DuplicatePoll => (400, b""),
            EngineError::PayloadTooLarge => (413, b""),
            EngineError::ShuttingDown => (503, br#"{"code":3,"message":"Server shutting down"}"#),
            EngineError::TooManySessions => {
                (503, br#"{"code":4,"message":"Too many connections"}"#)
            }
            EngineError::TooManyHandshakes => {
                (429, br#"{"code":4,"message":"Too many handshakes"}"#)
            }
        };
        PollReply {
            status,
            content_type: "application/json",
            body: Bytes::from_static(body),
        }
    }
}

/// Where a polling GET's answer goes: a channel, so the same path serves connections on this
/// shard and connections forwarded from other shards.
pub type PollWaiter = oneshot::Sender<PollReply>;

/// Why a request was refused; maps to the reference's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineError {
    /// Missing or unknown `transport`.
    UnknownTransport,
    /// Unknown, closed or malformed `sid`.
    UnknownSid,
    /// A handshake by a method other than GET.
    BadHandshakeMethod,
    /// A request that does not fit the session's transport state.
    BadRequest,
    /// Refused by policy.
    Forbidden,
    /// Missing or unsupported `EIO`.
    UnsupportedVersion,
    /// A second concurrent GET.
    DuplicatePoll,
    /// A body larger than maxPayload.
    PayloadTooLarge,
    /// A handshake while the server shuts down (see [`Engine::drain`]).
    ShuttingDown,
    /// A handshake past the server's or the client address's session limit.
    TooManySessions,
    /// A handshake past the client address's handshakes per second.
    TooManyHandshakes,
}

/// What a WebSocket writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteBatch {
    /// Write the frames pushed into the output vector, then ask again.
    Frames,
    /// Write the frames pushed (ending with a close frame if any), then shut the socket.
    Close,
}

/// What an engine holds (see [`Engine::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounts {
    /// Engine.IO sessions.
    pub sessions: usize,
    /// WebSocket connections (a session's, or a probe's).
    pub websockets: usize,
    /// Pending deadlines of live sessions (replaced ones not counted).
    pub timers: usize,
    /// What the slow-consumer policy did since the engine started.
    pub slow_consumers: SlowConsumerCounts,
}

/// Clients whose outbound queue overflowed, by what was done (see [`SlowConsumerPolicy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowConsumerCounts {
    /// Sessions closed (policy `Disconnect`).
    pub disconnected: u64,
    /// Packets dropped (policy `Drop`).
    pub dropped: u64,
}

/// One WebSocket connection's outbound side.
#[derive(Debug)]
struct Link {
    generation: u32,
    session: Option<SessionKey>,
    version: Version,
    /// Frames for the writer; handed over whole (allocation included), so an idle link holds
    /// no buffer.
    queue: Vec<Bytes>,
    queued_bytes: usize,
    waker: Option<Waker>,
    /// Set once the link must end: the close frame to send last (if any).
    closing: Option<Option<Bytes>>,
    /// Not before this instant may the first frame go out (conformance quirk, see config).
    hold_until: Option<Instant>,
}

/// All Engine.IO sessions and WebSocket links of one shard.
pub struct Engine {
    shard: u16,
    config: EngineConfig,
    sessions: Slab<Session>,
    links: Slab<Link>,
    next_link_generation: u32,
    deadlines: BinaryHeap<Reverse<(Instant, SessionKey, u32)>>,
    events: VecDeque<Event>,
    /// Sessions whose pending poll may be answerable now (flushed by [`Engine::flush`]).
    dirty: Vec<SessionKey>,
    /// Emptied link queues, kept with their capacity: busy links reuse them, idle links hold
    /// none (see [`Engine::recycle_queue`]).
    spare_queues: Vec<Vec<Bytes>>,
    /// Sessions a client closed over polling: their next GET gets a noop, not a 400
    /// (the GET/POST race of conformance.md §6).
    closed_by_client: VecDeque<(Id, Version)>,
    /// Broadcasts waiting for the end of the turn ([`Engine::send_many`]), oldest first.
    deferred: Vec<Deferred>,
    /// The task that calls [`Engine::send_deferred`], woken when the first one is held.
    deferred_waker: Option<Waker>,
    /// Set by [`Engine::drain`]: no new sessions; polling sessions close at their next GET.
    draining: bool,
    /// The server's session limits, shared with the other shards (see [`Engine::admit`]).
    admission: Option<Arc<Admission>>,
    /// Slots [`Engine::admit`] took that no session holds yet (the next open takes one).
    admitted_unused: usize,
    /// What the slow-consumer policy did so far.
    slow_consumers: SlowConsumerCounts,
    random: RandomPool,
}

/// A run of broadcasts to the same recipients, held until the end of the turn.
#[derive(Debug)]
struct Deferred {
    /// Each session at most once; every live one has `Session::deferred` set.
    recipients: Vec<SessionKey>,
    /// How many of `recipients` were live when the run began (none can end without first
    /// flushing the run, see [`Engine::close`]).
    live: usize,
    frames: Vec<Frame>,
    bytes: usize,
}

impl Engine {
    /// An empty engine for shard `shard`.
    pub fn new(shard: u16, config: EngineConfig) -> Engine {
        Engine {
            shard,
            config,
            sessions: Slab::new(),
            links: Slab::new(),
            next_link_generation: 0,
            deadlines: BinaryHeap::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            spare_queues: Vec::new(),
            closed_by_client: VecDeque::new(),
            deferred: Vec::new(),
            deferred_waker: None,
            draining: false,
            admission: None,
            admitted_unused: 0,
            slow_consumers: SlowConsumerCounts::default(),
            random: RandomPool::new(),
        }
    }

    /// The options in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The id of a session.
    pub fn id(&self, key: SessionKey) -> Option<Id> {
        self.sessions.get(key as usize).map(|s| s.id)
    }

    /// The application endpoint a session belongs to.
    pub fn endpoint(&self, key: SessionKey) -> Option<u8> {
        self.sessions.get(key as usize).map(|s| s.endpoint)
    }

    /// The handshake query string of a session.
    pub fn query(&self, key: SessionKey) -> Option<&str> {
        self.sessions.get(key as usize).map(|s| &*s.query)
    }

    /// The client address of a session, when known.
    pub fn address(&self, key: SessionKey) -> Option<SocketAddr> {
        self.sessions.get(key as usize).and_then(|s| s.address)
    }

    /// The protocol version of a session.
    pub fn version(&self, key: SessionKey) -> Option<Version> {
        self.sessions.get(key as usize).map(|s| s.version)
    }

    /// Finds a session by the id a peer sent.
    pub fn find(&self, id: &str) -> Result<SessionKey, EngineError> {
        let id = Id::parse(id).ok_or(EngineError::UnknownSid)?;
        let key = id.key();
        match self.sessions.get(key as usize) {
            Some(session) if id.shard() == self.shard && session.id == id => Ok(key),
            _ => Err(EngineError::UnknownSid),
        }
    }

    /// Applies the server's session limits (shared by every shard) to this engine.
    pub fn with_admission(mut self, admission: Arc<Admission>) -> Engine {
        self.admission = Some(admission);
        self
    }

    /// Whether new sessions may open (not once [`Engine::drain`] has begun).
    pub fn accepts_sessions(&self) -> bool {
        !self.draining
    }

    /// Asks to open a session for a handshake from `address`: refused while shutting down and
    /// past the session and handshake limits. On `Ok` the next [`Engine::open_polling`] or
    /// [`Engine::open_websocket`] holds the slot taken, and gives it back when it closes.
    pub fn admit(&mut self, address: Option<SocketAddr>, now: Instant) -> Result<(), EngineError> {
        if self.draining {
            return Err(EngineError::ShuttingDown);
        }
        if let Some(admission) = &self.admission {
            admission.admit(address.map(|a| a.ip()), now)?;
            self.admitted_unused += 1;
        }
        Ok(())
    }

    /// What the engine holds now (for the stats endpoint and soak runs).
    pub fn counts(&self) -> EngineCounts {
        EngineCounts {
            sessions: self.sessions.len(),
            websockets: self.links.len(),
            timers: self
                .deadlines
                .iter()
                .filter(|Reverse((_, key, generation))| self.is_live_deadline(*key, *generation))
                .count(),
            slow_consumers: self.slow_consumers,
        }
    }

    fn is_live_deadline(&self, key: SessionKey, generation: u32) -> bool {
        self.sessions
            .get(key as usize)
            .is_some_and(|s| s.timer_generation == generation)
    }

    /// With no session and no WebSocket left, gives back what the busiest moment grew: the
    /// slabs, queues and pools keep their peak capacity otherwise. False if anything is left.
    pub fn release_idle_memory(&mut self) -> bool {
        if !self.is_empty() || !self.deferred.is_empty() {
            return false;
        }
        // Fresh slabs: keys restart from 0, which nothing can confuse with a closed session's
        // (ids are checked whole, links carry a generation).
        self.sessions = Slab::new();
        self.links = Slab::new();
        self.deadlines = BinaryHeap::new();
        self.events = VecDeque::new();
        self.dirty = Vec::new();
        self.spare_queues = Vec::new();
        self.deferred = Vec::new();
        true
    }

    /// Whether no session and no WebSocket connection is left.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.links.is_empty()
    }

    /// Starts a graceful shutdown: everything queued or held goes out, then each session is
    /// closed (`ServerShutdown`) behind it: a WebSocket gets its queue and a close frame, a
    /// pending GET its queue and a close packet, and a polling session with no GET pending
    /// gets both at its next GET. New sessions are refused from now on.
    pub fn drain(&mut self) {
        self.draining = true;
        self.send_deferred();
        let keys: Vec<SessionKey> = self.sessions.iter().map(|(key, _)| key as u32).collect();
        for key in keys {
            let Some(session) = self.sessions.get(key as usize) else {
                continue;
            };
            let waits_for_get = session.transport == Transport::Polling && session.poll.is_none();
            if !waits_for_get {
                self.close(key, CloseReason::ServerShutdown);
            }
        }
        self.flush();
    }

    /// Opens a session with a polling handshake; the reply carries the open packet.
    pub fn open_polling(
        &mut self,
        now: Instant,
        peer: Peer,
        supports_binary: bool,
    ) -> (SessionKey, PollReply) {
        let version = peer.version;
        let key = self.insert_session(now, peer, supports_binary, Transport::Polling);
        let open = self.open_packet(key, true);
        let frame = Frame::text(&open);
        let mut body = Vec::with_capacity(open.len() + 8);
        let content_type = eio::encode_payload([&frame], version, supports_binary, &mut body);
        self.events.push_back(Event::Open(key));
        (key, PollReply::payload(content_type, body))
    }

    /// Opens a session directly over WebSocket; its open packet is queued on the new link.
    pub fn open_websocket(&mut self, now: Instant, peer: Peer) -> (SessionKey, LinkKey) {
        let version = peer.version;
        let link = self.insert_link(version);
        let key = self.insert_session(now, peer, true, Transport::WebSocket(link));
        let hold_until = match version {
            Version::V3 => self.config.eio3_ws_open_delay.map(|d| now + d),
            Version::V4 => None,
        };
        if let Some(entry) = self.link_mut(link) {
            entry.session = Some(key);
            entry.hold_until = hold_until;
        }
        let open = self.open_packet(key, false);
        self.push_link(link, Frame::text(&open).ws_bytes().clone());
        self.events.push_back(Event::Open(key));
        (key, link)
    }

    fn insert_session(
        &mut self,
        now: Instant,
        peer: Peer,
        supports_binary: bool,
        transport: Transport,
    ) -> SessionKey {
        let version = peer.version;
        let entry = self.sessions.vacant_entry();
        let key = entry.key() as SessionKey;
        let id = Id::generate(self.shard, key, &mut self.random);
        let heartbeat = match version {
            Version::V4 => Heartbeat::SendPingAt(now + self.config.ping_interval),
            Version::V3 => {
                Heartbeat::ClientPingBy(now + self.config.ping_interval + self.config.ping_timeout)
            }
        };
        let mut session = Session::new(id, peer, supports_binary, transport, heartbeat);
        if self.admitted_unused > 0 {
            self.admitted_unused -= 1;
            session.admitted = true;
        }
        entry.insert(session);
        self.reschedule(key);
        key
    }

    fn open_packet(&self, key: SessionKey, can_upgrade: bool) -> Vec<u8> {
        let session = &self.sessions[key as usize];
        eio::open_packet(
            session.id.as_str(),
            can_upgrade,
            self.config.ping_interval.as_millis() as u64,
            self.config.ping_timeout.as_millis() as u64,
            self.config.max_payload as u64,
        )
    }

    fn insert_link(&mut self, version: Version) -> LinkKey {
        let generation = self.next_link_generation;
        self.next_link_generation = generation.wrapping_add(1);
        let index = self.links.insert(Link::new(version, generation)) as u32;
        LinkKey { index, generation }
    }

    fn link(&self, key: LinkKey) -> Option<&Link> {
        self.links
            .get(key.index as usize)
            .filter(|link| link.generation == key.generation)
    }

    fn link_mut(&mut self, key: LinkKey) -> Option<&mut Link> {
        self.links
            .get_mut(key.index as usize)
            .filter(|link| link.generation == key.generation)
    }

    // ---------------------------------------------------------------------------------------
    // Polling transport

    /// A polling GET: answered now if frames wait, else when the next frame is sent.
    pub fn poll_get(&mut self, key: SessionKey, waiter: PollWaiter) {
        let Some(session) = self.sessions.get_mut(key as usize) else {
            let _ = waiter.send(PollReply::error(EngineError::UnknownSid));
            return;
        };
        match session.transport {
            Transport::WebSocket(_) => {
                let _ = waiter.send(PollReply::error(EngineError::BadRequest));
                return;
            }
            Transport::Polling | Transport::Upgrading { .. } => {}
        }
        if session.poll.is_some() {
            let _ = waiter.send(PollReply::error(EngineError::DuplicatePoll));
            self.close(key, CloseReason::TransportError);
            return;
        }
        session.poll = Some(waiter);
        if self.draining {
            self.close(key, CloseReason::ServerShutdown);
            return;
        }
        self.release_probed_poll(key);
        self.answer_poll(key);
    }

    /// A GET for a session that a client closed a moment ago gets a noop, once.
    pub fn poll_get_closed(&mut self, id: &str) -> Option<PollReply> {
        let position = self
            .closed_by_client
            .iter()
            .position(|(closed, _)| closed.as_str() == id)?;
        let (_, version) = self.closed_by_client.remove(position)?;
        let mut body = Vec::new();
        let content_type = eio::encode_payload([&Frame::text(b"6")], version, false, &mut body);
        Some(PollReply::payload(content_type, body))
    }

    /// The connection holding this session's GET went away: the client is gone.
    pub fn poll_aborted(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key as usize) else {
            return;
        };
        if session.poll.take().is_some() {
            self.close(key, CloseReason::TransportClose);
        }
    }

    /// A polling POST: every packet is handled, then `ok` (or an error, closing the session).
    pub fn poll_post(
        &mut self,
        key: SessionKey,
        now: Instant,
        body: Bytes,
        binary_body: bool,
    ) -> PollReply {
        let Some(session) = self.sessions.get(key as usize) else {
            return PollReply::error(EngineError::UnknownSid);
        };
        if matches!(session.transport, Transport::WebSocket(_)) {
            return PollReply::error(EngineError::BadRequest);
        }
        if body.len() > self.config.max_payload {
            self.close(key, CloseReason::TransportError);
            return PollReply::error(EngineError::PayloadTooLarge);
        }
        let version = session.version;
        if binary_body && version == Version::V4 {
            self.close(key, CloseReason::ParseError);
            return PollReply::error(EngineError::BadRequest);
        }
        let packets = match eio::decode_payload(body, version, binary_body) {
            Ok(packets) => packets,
            Err(_) => {
                self.close(key, CloseReason::ParseError);
                return PollReply::error(EngineError::BadRequest);
            }
        };
        for packet in packets {
            if self.handle_packet(key, now, packet, None).is_err() {
                return PollReply::error(EngineError::BadRequest);
            }
            if !self.sessions.contains(key as usize) {
                break;
            }
        }
        PollReply::ok()
    }

    /// Answers the pending GET if frames are queued.
    fn answer_poll(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key as usize) else {
            return;
        };
        if session.outbox.is_empty() || session.poll.is_none() {
            return;
        }
        let Some(waiter) = session.poll.take() else {
            return;
        };
        let mut body = Vec::with_capacity(session.outbox_bytes + 4 * session.outbox.len());
        let content_type = eio::encode_payload(
            session.outbox.iter(),
            session.version,
            session.supports_binary,
            &mut body,
        );
        session.outbox.clear();
        session.outbox_bytes = 0;
        let _ = waiter.send(PollReply::payload(content_type, body));
    }

    /// Answers every pending poll that became answerable while handling input.
    pub fn flush(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            self.answer_poll(key);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    // ---------------------------------------------------------------------------------------
    // WebSocket transport

    /// A WebSocket with a `sid`: starts an upgrade probe for a polling session.
    pub fn ws_upgrade(&mut self, key: SessionKey, now: Instant) -> Result<LinkKey, EngineError> {
        let Some(session) = self.sessions.get(key as usize) else {
            return Err(EngineError::UnknownSid);
        };
        if !matches!(session.transport, Transport::Polling) {
            return Err(EngineError::BadRequest);
        }
        let version = session.version;
        let link = self.insert_link(version);
        if let Some(entry) = self.link_mut(link) {
            entry.session = Some(key);
        }
        let session = &mut self.sessions[key as usize];
        session.transport = Transport::Upgrading {
            link,
            stage: Upgrade::Probing,
        };
        session.upgrade_deadline = Some(now + self.config.upgrade_timeout);
        self.reschedule(key);
        Ok(link)
    }

    /// A complete message read from a WebSocket.
    pub fn ws_message(&mut self, link: LinkKey, now: Instant, message: ws::Message) {
        let Some(entry) = self.link(link) else {
            return;
        };
        let version = entry.version;
        let session = entry.session;
        let packet = match message {
            ws::Message::Text(text) => eio::decode_ws_text(text, version),
            ws::Message::Binary(data) => eio::decode_ws_binary(data, version),
            ws::Message::Ping(payload) => {
                self.push_link(link, ws::pong_frame(&payload));
                return;
            }
            ws::Message::Pong(_) => return,
            ws::Message::Close { .. } => {
                self.end_link(
                    link,
                    Some(ws::close_frame(1000, "")),
                    CloseReason::TransportClose,
                );
                return;
            }
        };
        let Some(key) = session else {
            return;
        };
        match packet {
            Ok(packet) => {
                let _ = self.handle_packet(key, now, packet, Some(link));
            }
            Err(_) => self.end_link(
                link,
                Some(ws::close_frame(1000, "")),
                CloseReason::ParseError,
            ),
        }
    }

    /// The WebSocket broke the protocol (bad frame, oversized message, invalid UTF-8).
    pub fn ws_error(&mut self, link: LinkKey, error: ws::WsError) {
        let close = ws::close_frame(error.close_code(), "");
        self.end_link(link, Some(close), CloseReason::TransportError);
    }

    /// The WebSocket's reader ended (EOF or I/O error): the peer is gone.
    pub fn ws_reader_done(&mut self, link: LinkKey) {
        self.end_link(link, None, CloseReason::TransportClose);
    }

    /// Hands the writer everything queued for `link`, or registers its waker. When `out` is
    /// empty the queue moves into it whole, allocation included: an idle link holds no buffer.
    pub fn ws_poll_write(
        &mut self,
        link: LinkKey,
        now: Instant,
        cx: &mut Context<'_>,
        out: &mut Vec<Bytes>,
    ) -> Poll<WriteBatch> {
        let Some(entry) = self.link_mut(link) else {
            return Poll::Ready(WriteBatch::Close);
        };
        if let Some(until) = entry.hold_until {
            if now < until {
                entry.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            entry.hold_until = None;
        }
        if !entry.queue.is_empty() {
            let queue = std::mem::take(&mut entry.queue);
            if out.is_empty() {
                *out = queue;
            } else {
                out.extend(queue);
            }
            entry.queued_bytes = 0;
            return Poll::Ready(WriteBatch::Frames);
        }
        match entry.closing.take() {
            Some(close_frame) => {
                out.extend(close_frame);
                entry.closing = Some(None);
                Poll::Ready(WriteBatch::Close)
            }
            None => {
                entry.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Ready once the link must end (or is gone); otherwise registers the writer's waker.
    /// Only for a writer that is blocked in a write (it shares the waker slot).
    pub fn ws_poll_closing(&mut self, link: LinkKey, cx: &mut Context<'_>) -> Poll<()> {
        match self.link_mut(link) {
            Some(entry) if entry.closing.is_none() => {
                entry.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Takes back a queue the writer has written out, for the next link that gets frames.
    pub fn recycle_queue(&mut self, mut queue: Vec<Bytes>) {
        queue.clear();
        if queue.capacity() <= MAX_SPARE_QUEUE_CAPACITY
            && self.spare_queues.len() < MAX_SPARE_QUEUES
        {
            self.spare_queues.push(queue);
        }
    }

    /// When a held link may write (see [`EngineConfig::eio3_ws_open_delay`]).
    pub fn ws_hold_until(&self, link: LinkKey) -> Option<Instant> {
        self.link(link).and_then(|l| l.hold_until)
    }

    /// The writer is done: the link is forgotten.
    pub fn ws_writer_done(&mut self, link: LinkKey) {
        if self.link(link).is_some() {
            self.end_link(link, None, CloseReason::TransportClose);
            self.links.remove(link.index as usize);
        }
    }

    /// Ends a link: its session closes if the link carried it; a probe only ends the probe.
    fn end_link(&mut self, link: LinkKey, close_frame: Option<Bytes>, reason: CloseReason) {
        let Some(entry) = self.link_mut(link) else {
            return;
        };
        if entry.closing.is_none() {
            entry.closing = Some(close_frame);
        }
        if let Some(waker) = entry.waker.take() {
            waker.wake();
        }
        let Some(key) = entry.session.take() else {
            return;
        };
        let Some(session) = self.sessions.get_mut(key as usize) else {
            return;
        };
        match session.transport {
            Transport::WebSocket(l) if l == link => self.close(key, reason),
            Transport::Upgrading { link: l, .. } if l == link => {
                session.transport = Transport::Polling;
                session.upgrade_deadline = None;
            }
            _ => {}
        }
    }

    fn push_link(&mut self, link: LinkKey, frame: Bytes) {
        let spare_queues = &mut self.spare_queues;
        let Some(entry) = self
            .links
            .get_mut(link.index as usize)
            .filter(|entry| entry.generation == link.generation)
        else {
            return;
        };
        if entry.closing.is_some() {
            return;
        }
        if entry.queue.capacity() == 0 {
            // A link that was idle holds no queue; take a used one rather than growing a
            // new one frame by frame.
            entry.queue = spare_queues.pop().unwrap_or_default();
        }
        entry.queued_bytes += frame.len();
        entry.queue.push(frame);
        if let Some(waker) = entry.waker.take() {
            waker.wake();
        }
    }

    // ---------------------------------------------------------------------------------------
    // Packets from the client

    /// Handles one packet; `via` is the link it came on (None for polling).
    fn handle_packet(
        &mut self,
        key: SessionKey,
        now: Instant,
        packet: Packet,
        via: Option<LinkKey>,
    ) -> Result<(), CloseReason> {
        let Some(session) = self.sessions.get_mut(key as usize) else {
            return Err(CloseReason::TransportClose);
        };
        let on_probe = matches!(
            (session.transport, via),
            (Transport::Upgrading { link, .. }, Some(v)) if link == v
        );
        if on_probe {
            return self.handle_probe_packet(key, now, packet);
        }
        if via.is_some() != matches!(session.transport, Transport::WebSocket(_)) {
            // A packet on a transport that is not (or no longer) the session's: ignore it.
            return Ok(());
        }
        match packet {
            Packet::Message(text) => self.events.push_back(Event::Message(key, text)),
            Packet::Binary(data) => self.events.push_back(Event::Binary(key, data)),
            Packet::Pong(_) if session.version == Version::V4 => {
                if matches!(session.heartbeat, Heartbeat::PongBy(_)) {
                    session.heartbeat = Heartbeat::SendPingAt(now + self.config.ping_interval);
                    self.reschedule(key);
                }
            }
            Packet::Ping(data) if session.version == Version::V3 => {
                let mut pong = Vec::with_capacity(1 + data.len());
                pong.push(b'3');
                pong.extend_from_slice(&data);
                session.heartbeat = Heartbeat::ClientPingBy(
                    now + self.config.ping_interval + self.config.ping_timeout,
                );
                self.reschedule(key);
                self.send(key, &Frame::text(&pong), false);
            }
            Packet::Close => {
                // A GET racing this POST (conformance.md §6) still gets its noop if it has
                // not arrived yet.
                if via.is_none() && session.poll.is_none() {
                    let closed = (session.id, session.version);
                    self.remember_client_close(closed);
                }
                self.close(key, CloseReason::ClientClose);
            }
            Packet::Noop => {}
            _ => {
                self.close(key, CloseReason::ParseError);
                return Err(CloseReason::ParseError);
            }
        }
        Ok(())
    }

    /// Packets on a probe WebSocket: `2probe`, then `5` completes the upgrade.
    fn handle_probe_packet(
        &mut self,
        key: SessionKey,
        now: Instant,
        packet: Packet,
    ) -> Result<(), CloseReason> {
        let session = &mut self.sessions[key as usize];
        let Transport::Upgrading { link, stage } = session.transport else {
            return Ok(());
        };
        match packet {
            Packet::Ping(data) if &data[..] == b"probe" && stage == Upgrade::Probing => {
                session.transport = Transport::Upgrading {
                    link,
                    stage: Upgrade::Probed,
                };
                self.push_link(link, Frame::text(b"3probe").ws_bytes().clone());
                self.release_probed_poll(key);
                self.answer_poll(key);
                Ok(())
            }
            Packet::Upgrade if stage != Upgrade::Probing => {
                session.transport = Transport::WebSocket(link);
                session.upgrade_deadline = None;
                if session.version == Version::V3 {
                    // The client keeps pinging; restart its deadline from now.
                    session.heartbeat = Heartbeat::ClientPingBy(
                        now + self.config.ping_interval + self.config.ping_timeout,
                    );
                }
                let pending: Vec<Frame> = session.outbox.drain(..).collect();
                session.outbox_bytes = 0;
                // A GET still waiting is one the client sent after its noop, racing this `5`.
                if let Some(waiter) = session.poll.take() {
                    let _ = waiter.send(PollReply::error(EngineError::BadRequest));
                }
                let version = session.version;
                for frame in pending {
                    self.push_link(link, link_bytes(&frame, version));
                }
                self.reschedule(key);
                Ok(())
            }
            _ => {
                self.end_link(
                    link,
                    Some(ws::close_frame(1000, "")),
                    CloseReason::ParseError,
                );
                Ok(())
            }
        }
    }

    /// Once `3probe` is out, the client waits for its pending poll to end before it sends `5`:
    /// the first poll (pending or next) gets a noop at once (conformance.md §5.1 #23).
    fn release_probed_poll(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key as usize) else {
            return;
        };
        let Transport::Upgrading {
            link,
            stage: Upgrade::Probed,
        } = session.transport
        else {
            return;
        };
        if session.poll.is_some() && session.outbox.is_empty() {
            session.push(Frame::text(b"6"));
            session.transport = Transport::Upgrading {
                link,
                stage: Upgrade::Released,
            };
        }
    }

    fn remember_client_close(&mut self, closed: (Id, Version)) {
        if self.closed_by_client.len() >= 1024 {
            self.closed_by_client.pop_front();
        }
        self.closed_by_client.push_back(closed);
    }

    // ---------------------------------------------------------------------------------------
    // The application side

    /// Queues a frame for a session on its active transport. A volatile frame is dropped when
    /// the transport cannot take it right away. Errors when the session is gone or its queue
    /// overflowed (the session is then closed: a slow consumer).
    pub fn send(&mut self, key: SessionKey, frame: &Frame, volatile: bool) -> bool {
        self.send_frames(key, std::slice::from_ref(frame), volatile)
    }

    /// Queues frames that go together (a packet and its attachments) for a session, after
    /// everything sent to it before, broadcasts held for the end of the turn included. A
    /// volatile packet is dropped when the transport cannot take it right away.
    pub fn send_frames(&mut self, key: SessionKey, frames: &[Frame], volatile: bool) -> bool {
        if self.sessions.get(key as usize).is_some_and(|s| s.deferred) {
            self.send_deferred();
        }
        self.queue(key, &mut Joined::new(frames), volatile)
    }

    /// Queues `frames` for every session in `recipients` (each at most once), behind what each
    /// was sent before, but only at the end of the runtime's turn ([`Engine::send_deferred`]).
    /// Consecutive calls for the same recipients are joined, so each recipient gets one buffer,
    /// one write, for the whole run instead of one per broadcast: at high fan-out the per-
    /// recipient work, not the bytes, is the cost. Returns how many recipients are live.
    pub fn send_many(&mut self, recipients: Vec<SessionKey>, frames: &[Frame]) -> usize {
        let bytes: usize = frames.iter().map(|f| f.ws_bytes().len()).sum();
        if let Some(last) = self.deferred.last_mut() {
            if last.recipients == recipients && last.bytes + bytes <= MAX_JOINED_BYTES {
                last.frames.extend_from_slice(frames);
                last.bytes += bytes;
                return last.live;
            }
        }
        let mut live = 0;
        for &key in &recipients {
            if let Some(session) = self.sessions.get_mut(key as usize) {
                session.deferred = true;
                live += 1;
            }
        }
        if live == 0 {
            return 0;
        }
        if self.deferred.is_empty() {
            if let Some(waker) = self.deferred_waker.take() {
                waker.wake();
            }
        }
        self.deferred.push(Deferred {
            recipients,
            live,
            frames: frames.to_vec(),
            bytes,
        });
        live
    }

    /// Ready when broadcasts are held ([`Engine::send_many`]); otherwise registers the waker
    /// of the task that will call [`Engine::send_deferred`] once they are.
    pub fn poll_deferred(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.deferred.is_empty() {
            self.deferred_waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Queues every held broadcast for its recipients, oldest first. Polls they make
    /// answerable are answered by the next [`Engine::flush`].
    pub fn send_deferred(&mut self) {
        let mut runs = std::mem::take(&mut self.deferred);
        for run in runs.drain(..) {
            let mut joined = Joined::new(&run.frames);
            for &key in &run.recipients {
                let Some(session) = self.sessions.get_mut(key as usize) else {
                    continue;
                };
                session.deferred = false;
                self.queue(key, &mut joined, false);
            }
        }
        // Keep the allocation unless queueing held new broadcasts meanwhile (a slow consumer's
        // close can't: it finds nothing held).
        if self.deferred.is_empty() {
            self.deferred = runs;
        }
    }

    /// A packet for `key` did not fit its outbound queue: the slow-consumer policy applies.
    fn overflowed(&mut self, key: SessionKey) {
        match self.config.slow_consumer {
            SlowConsumerPolicy::Disconnect => {
                self.slow_consumers.disconnected += 1;
                self.close(key, CloseReason::SlowConsumer);
            }
            SlowConsumerPolicy::Drop => self.slow_consumers.dropped += 1,
        }
    }

    /// Queues a packet's frames on the session's active transport.
    fn queue(&mut self, key: SessionKey, frames: &mut Joined<'_>, volatile: bool) -> bool {
        let Some(session) = self.sessions.get_mut(key as usize) else {
            return false;
        };
        match session.transport {
            Transport::WebSocket(link) => {
                let version = session.version;
                let Some(entry) = self.link(link) else {
                    return false;
                };
                if volatile && !entry.queue.is_empty() {
                    return false;
                }
                let bytes = frames.ws_bytes(version);
                if entry.queued_bytes + bytes.len() > self.config.max_outbound_bytes {
                    self.overflowed(key);
                    return false;
                }
                let bytes = bytes.clone();
                self.push_link(link, bytes);
            }
            Transport::Polling | Transport::Upgrading { .. } => {
                if volatile && (session.poll.is_none() || !session.outbox.is_empty()) {
                    return false;
                }
                let size: usize = frames.frames.iter().map(|f| f.payload_slice().len()).sum();
                if session.outbox_bytes + size > self.config.max_outbound_bytes {
                    self.overflowed(key);
                    return false;
                }
                for frame in frames.frames {
                    session.push(frame.clone());
                }
                if session.poll.is_some() {
                    self.dirty.push(key);
                }
            }
        }
        true
    }

    /// Closes a session (server side): a pending poll gets what is queued plus a close packet,
    /// a WebSocket gets what is queued plus a close frame. Emits [`Event::Close`].
    pub fn close(&mut self, key: SessionKey, reason: CloseReason) {
        let Some(session) = self.sessions.get(key as usize) else {
            return;
        };
        if session.deferred {
            // What was broadcast to it goes out before the close.
            self.send_deferred();
            if !self.sessions.contains(key as usize) {
                return;
            }
        }
        let mut session = self.sessions.remove(key as usize);
        if let (true, Some(admission)) = (session.admitted, &self.admission) {
            admission.release(session.address.map(|a| a.ip()));
        }
        match session.transport {
            Transport::WebSocket(link) | Transport::Upgrading { link, .. } => {
                if let Some(entry) = self.link_mut(link) {
                    entry.session = None;
                }
                let frame =
                    (reason != CloseReason::TransportClose).then(|| ws::close_frame(1000, ""));
                self.end_link(link, frame, reason);
            }
            Transport::Polling => {}
        }
        if let Some(waiter) = session.poll.take() {
            if reason == CloseReason::ClientClose {
                session.outbox.clear();
                session.push(Frame::text(b"6"));
            } else if reason.notifies_client() {
                session.push(Frame::text(b"1"));
            }
            let mut body = Vec::new();
            let content_type = eio::encode_payload(
                session.outbox.iter(),
                session.version,
                session.supports_binary,
                &mut body,
            );
            let _ = waiter.send(PollReply::payload(content_type, body));
        }
        self.events.push_back(Event::Close(key, reason));
    }

    /// The next event for the application, in order.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---------------------------------------------------------------------------------------
    // Time

    /// When [`Engine::handle_timeouts`] must run next.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key, generation))) = self.deadlines.peek().copied() {
            match self.sessions.get(key as usize) {
                Some(session) if session.timer_generation == generation => return Some(at),
                _ => {
                    self.deadlines.pop();
                }
            }
        }
        None
    }

    /// Sends due pings, closes sessions whose peer went silent, ends stale upgrade probes.
    pub fn handle_timeouts(&mut self, now: Instant) {
        while let Some(Reverse((at, key, generation))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(session) = self.sessions.get_mut(key as usize) else {
                continue;
            };
            if session.timer_generation != generation {
                continue;
            }
            if let Some(deadline) = session.upgrade_deadline {
                if deadline <= now {
                    session.upgrade_deadline = None;
                    if let Transport::Upgrading { link, .. } = session.transport {
                        self.end_link(
                            link,
                            Some(ws::close_frame(1000, "")),
                            CloseReason::TransportClose,
                        );
                    }
                }
            }
            let Some(session) = self.sessions.get_mut(key as usize) else {
                continue;
            };
            match session.heartbeat {
                Heartbeat::SendPingAt(due) if due <= now => {
                    // The timeout clock starts when the ping is queued (conformance.md §6).
                    session.heartbeat = Heartbeat::PongBy(now + self.config.ping_timeout);
                    self.send(key, &Frame::text(b"2"), false);
                }
                Heartbeat::PongBy(due) | Heartbeat::ClientPingBy(due) if due <= now => {
                    self.close(key, CloseReason::PingTimeout);
                    continue;
                }
                _ => {}
            }
            self.reschedule(key);
        }
        self.flush();
    }

    fn reschedule(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key as usize) else {
            return;
        };
        let mut at = session.heartbeat.due();
        if let Some(upgrade) = session.upgrade_deadline {
            at = at.min(upgrade);
        }
        session.timer_generation = session.timer_generation.wrapping_add(1);
        self.deadlines
            .push(Reverse((at, key, session.timer_generation)));
        // Replaced deadlines stay in the heap until they come due; under churn they could
        // outnumber the live ones many times over, so past a bound they are swept out.
        if self.deadlines.len() > 2 * self.sessions.len() + 1024 {
            let mut deadlines = std::mem::take(&mut self.deadlines);
            deadlines
                .retain(|Reverse((_, key, generation))| self.is_live_deadline(*key, *generation));
            self.deadlines = deadlines;
        }
    }
}

impl Link {
    fn new(version: Version, generation: u32) -> Link {
        Link {
            generation,
            session: None,
            version,
            queue: Vec::new(),
            queued_bytes: 0,
            waker: None,
            closing: None,
            hold_until: None,
        }
    }
}

/// The frames of a packet (or of a run of broadcasts) and their WebSocket bytes, joined into
/// one buffer per Engine.IO version on first use and shared by every recipient.
struct Joined<'a> {
    frames: &'a [Frame],
    v4: Option<Bytes>,
    v3: Option<Bytes>,
}

impl<'a> Joined<'a> {
    fn new(frames: &'a [Frame]) -> Joined<'a> {
        Joined {
            frames,
            v4: None,
            v3: None,
        }
    }

    fn ws_bytes(&mut self, version: Version) -> &Bytes {
        let frames = self.frames;
        let slot = match version {
            Version::V4 => &mut self.v4,
            Version::V3 => &mut self.v3,
        };
        slot.get_or_insert_with(|| match frames {
            [frame] => link_bytes(frame, version),
            _ => {
                let len = frames.iter().map(|f| f.ws_bytes().len() + 1).sum();
                let mut joined = BytesMut::with_capacity(len);
                for frame in frames {
                    put_link_bytes(&mut joined, frame, version);
                }
                joined.freeze()
            }
        })
    }
}

/// The WebSocket bytes of a frame for a recipient: shared as is, except binary frames for
/// Engine.IO v3, which carry a leading message-type byte.
fn link_bytes(frame: &Frame, version: Version) -> Bytes {
    if needs_v3_type_byte(frame, version) {
        let mut bytes = BytesMut::with_capacity(frame.ws_bytes().len() + 1);
        put_link_bytes(&mut bytes, frame, version);
        return bytes.freeze();
    }
    frame.ws_bytes().clone()
}

fn needs_v3_type_byte(frame: &Frame, version: Version) -> bool {
    frame.kind() == FrameKind::Binary && version == Version::V3
}

/// Appends what [`link_bytes`] returns, without building it on its own.
fn put_link_bytes(out: &mut BytesMut, frame: &Frame, version: Version) {
    if needs_v3_type_byte(frame, version) {
        let data = frame.payload_slice();
        let (header, header_len) = ws_header(FrameKind::Binary, data.len() + 1);
        out.extend_from_slice(&header[..header_len]);
        out.extend_from_slice(&[eio::PacketType::Message as u8]);
        out.extend_from_slice(data);
    } else {
        out.extend_from_slice(frame.ws_bytes());
    }
}

#[cfg(test)]
mod tests;
