//! Engine.IO sessions of one shard, as a sans-IO state machine.
//!
//! Owns every session the shard is responsible for: handshake, heartbeat deadlines, the active
//! transport (polling, a WebSocket probe, WebSocket), the outbound queues, and close reasons.
//! It knows nothing of Socket.IO: the application above sees [`Event`]s (open, message,
//! binary, upgraded, close) and answers with [`Engine::send`] / [`Engine::close`], or with
//! [`Engine::send_many`] for a broadcast: those frames are held until the end of the runtime's
//! turn, so that a run of broadcasts to the same recipients reaches each as one write.
//!
//! It performs no I/O and reads no clock: the network layer feeds it requests and frames with
//! `now`, collects what to write ([`Engine::poll_ws_write`], [`PollReply`]), and the shard's
//! timer calls [`Engine::handle_timeouts`] at [`Engine::next_deadline`].
//!
//! [`Engine`]'s doc lists its method families, one file each, and the order to call them in.
#![forbid(unsafe_code)]

mod admission;
mod lifecycle;
mod link;
mod outbound;
mod packet;
mod polling;
mod reply;
mod session;
mod timer;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;

use crate::codec::deflate::Deflater;
use crate::codec::eio::Version;
use crate::config::EngineConfig;
use crate::deadline::DeadlineHeap;
use crate::id::{Id, RandomPool};
use crate::key::{Key, ShardId, Slots};

pub use admission::{Admission, AdmissionLimits};
use link::Link;
pub use link::{LinkKey, WriteBatch};
use outbound::Deferred;
pub use outbound::SendError;
pub use reply::{EngineError, PollReply, PollWaiter};
pub use session::CloseReason;
use session::{Session, Transport};

/// A session's key on its shard: its slot and generation (see `key::Slots`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub(crate) Key);

impl SessionKey {
    /// The session's slot: small, dense and reused, fit to index a side table (whose entry
    /// should keep the whole key to tell a reused slot's session from the one before).
    pub fn index(self) -> usize {
        self.0.index()
    }
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
    /// The handshake request's headers named by `EngineConfig::handshake_headers` (lower-case
    /// name, value); empty unless some are named.
    pub headers: Box<[(Box<str>, Box<str>)]>,
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
    /// The session moved from HTTP long-polling to its WebSocket (the client's `5`); see
    /// [`Engine::transport_name`].
    Upgraded(SessionKey),
    /// The session is gone; its key may be reused after this event.
    Close(SessionKey, CloseReason),
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

/// Clients whose outbound queue overflowed, by what was done (see
/// [`SlowConsumerPolicy`](crate::config::SlowConsumerPolicy)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlowConsumerCounts {
    /// Sessions closed (policy `Disconnect`).
    pub disconnected: u64,
    /// Packets dropped (policy `Drop`).
    pub dropped: u64,
}

/// What went through an engine since it started, and its sessions by transport and protocol
/// now (see [`Engine::traffic`]); the metrics route's share of the engine. The counters are
/// plain fields of the engine, bumped where the data already flows, never shared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineTraffic {
    /// Engine.IO message packets (text or binary) received from clients.
    pub packets_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Packets queued for clients (a broadcast counts once per recipient).
    pub packets_out: u64,
    /// Their bytes as queued: whole WebSocket frames, or polling packets' payloads.
    pub bytes_out: u64,
    /// Of `packets_out`, those that went compressed (permessage-deflate).
    pub compressed_out: u64,
    /// Handshakes refused, by reason (see [`RefusedHandshakes`]).
    pub refused: RefusedHandshakes,
    /// Sessions now, `[polling, websocket][EIO=3, EIO=4]` (a session probing a WebSocket is
    /// still polling).
    pub sessions_by_transport: [[usize; 2]; 2],
}

/// Handshakes refused ([`Engine::admit`], [`Engine::handshake_refused`]), one count per
/// reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusedHandshakes {
    /// The server is shutting down.
    pub shutting_down: u64,
    /// Past the server's or the address's session limit (or the shard's 2^24 slots).
    pub session_limit: u64,
    /// Past the address's handshakes per second.
    pub handshake_rate: u64,
    /// `EIO` missing, or a version this server does not speak (3 with `allow_eio3` off).
    pub unsupported_protocol: u64,
    /// `transport` missing or unknown.
    pub unknown_transport: u64,
    /// Anything else (a WebSocket request that says `transport=polling`, or the reverse).
    pub bad_request: u64,
}

/// All Engine.IO sessions and WebSocket links of one shard.
///
/// Its methods come in families, one file each (quinn-proto's `Connection` is the model):
///
/// - **Getters** (this file): [`Engine::config`], [`Engine::find`], [`Engine::id`],
///   [`Engine::endpoint`], [`Engine::version`], [`Engine::transport_name`],
///   [`Engine::counts`], [`Engine::is_empty`]...
/// - **Sessions begin and end** (`lifecycle.rs`): [`Engine::admit`], [`Engine::open_polling`],
///   [`Engine::open_websocket`], [`Engine::close`], [`Engine::drain`],
///   [`Engine::release_idle_memory`].
/// - **Inputs from the network, polling** (`polling.rs`): [`Engine::polling_get`],
///   [`Engine::polling_post`], [`Engine::polling_aborted`], [`Engine::polling_get_closed`], and
///   [`Engine::flush`], which answers the GETs that became answerable.
/// - **Inputs from the network, WebSocket link** (`link.rs`): [`Engine::ws_upgrade`],
///   [`Engine::ws_message`], [`Engine::ws_error`], [`Engine::ws_reader_done`],
///   [`Engine::ws_writer_done`]; for the link's writer, [`Engine::poll_ws_write`],
///   [`Engine::poll_ws_closing`], [`Engine::ws_hold_until`] and [`Engine::recycle_queue`].
///   The packets either transport brings are handled in `packet.rs`.
/// - **The application side, outbound** (`outbound.rs`): [`Engine::send`],
///   [`Engine::send_frames`], [`Engine::send_many`], and for the end of the turn
///   [`Engine::poll_deferred`] / [`Engine::send_deferred`]; events go out through
///   [`Engine::next_event`].
/// - **Time** (`timer.rs`): [`Engine::next_deadline`], [`Engine::handle_timeouts`].
///
/// One meaning per word: `polling_*` is an input from HTTP long-polling, `poll_*` is a Rust
/// poll (ready now, or the waker is kept and woken later).
///
/// # Calling order
///
/// 1. Hand in one input: a polling request, a WebSocket message, the timeouts due, or a send
///    or close from the application.
/// 2. Drain [`Engine::next_event`], handing each event to the application with no borrow of
///    the engine held (a handler may send or close, which can queue more events: drain until
///    none is left).
/// 3. Call [`Engine::flush`]: it answers the GETs that 1 and 2 made answerable.
/// 4. At the end of the runtime's turn, once [`Engine::poll_deferred`] is ready, call
///    [`Engine::send_deferred`], then 2 and 3 again.
/// 5. Sleep until [`Engine::next_deadline`] (ask again after every step: it moves), then
///    call [`Engine::handle_timeouts`] and go on with 2.
///
/// [`pump`] is steps 2 and 3, the one copy of them; `pump_and_end_turn` (for the tests) adds
/// step 4 for a harness that has no task waiting on [`Engine::poll_deferred`].
pub struct Engine {
    shard: ShardId,
    config: EngineConfig,
    sessions: Slots<Session>,
    links: Slots<Link>,
    /// One live entry per session: (key, `Session::timer_generation`) (see `timer.rs`).
    deadlines: DeadlineHeap<(SessionKey, u32)>,
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
    /// The task that calls [`Engine::send_deferred`], woken when the first one is held (or
    /// the first link is listed for a direct write).
    deferred_waker: Option<Waker>,
    /// Links with frames whose idle writers `net` writes for this turn ([`Engine::take_direct`]).
    ready_links: Vec<LinkKey>,
    /// Set by [`Engine::drain`]: no new sessions; polling sessions close at their next GET.
    draining: bool,
    /// The server's session limits, shared with the other shards (see [`Engine::admit`]).
    admission: Option<Arc<Admission>>,
    /// Slots [`Engine::admit`] took that no session holds yet (the next open takes one).
    admitted_unused: usize,
    /// What the slow-consumer policy did so far.
    slow_consumers: SlowConsumerCounts,
    /// Packets, bytes and refusals so far (the metrics route's; see [`EngineTraffic`]).
    traffic: EngineTraffic,
    /// When a refused handshake was last logged, and how many were refused since: one line
    /// a second at most, so a flood of refusals can't flood the log.
    refusals_logged: Option<(std::time::Instant, u64)>,
    random: RandomPool,
    /// The shard's compressor for links that agreed permessage-deflate, made on first use
    /// (a few hundred KiB of tables, so never on a server that does not compress).
    deflater: Option<Deflater>,
}

impl Engine {
    /// An empty engine for shard `shard`.
    pub fn new(shard: ShardId, config: EngineConfig) -> Engine {
        Engine {
            shard,
            config,
            sessions: Slots::default(),
            links: Slots::default(),
            deadlines: DeadlineHeap::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            spare_queues: Vec::new(),
            closed_by_client: VecDeque::new(),
            deferred: Vec::new(),
            deferred_waker: None,
            ready_links: Vec::new(),
            draining: false,
            admission: None,
            admitted_unused: 0,
            slow_consumers: SlowConsumerCounts::default(),
            traffic: EngineTraffic::default(),
            refusals_logged: None,
            random: RandomPool::new(),
            deflater: None,
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
        self.sessions.get(key.0).map(|s| s.id)
    }

    /// The application endpoint a session belongs to.
    pub fn endpoint(&self, key: SessionKey) -> Option<u8> {
        self.sessions.get(key.0).map(|s| s.endpoint)
    }

    /// The handshake query string of a session.
    pub fn query(&self, key: SessionKey) -> Option<&str> {
        self.sessions.get(key.0).map(|s| &*s.query)
    }

    /// The client address of a session, when known.
    pub fn address(&self, key: SessionKey) -> Option<SocketAddr> {
        self.sessions.get(key.0).and_then(|s| s.address)
    }

    /// The headers the session's handshake request sent that `EngineConfig::handshake_headers`
    /// names (lower-case name, value).
    pub fn headers(&self, key: SessionKey) -> &[(Box<str>, Box<str>)] {
        self.sessions.get(key.0).map_or(&[], |s| &s.headers)
    }

    /// The protocol version of a session.
    pub fn version(&self, key: SessionKey) -> Option<Version> {
        self.sessions.get(key.0).map(|s| s.version)
    }

    /// The transport that carries a session now, as Socket.IO names it: `"polling"` (an
    /// upgrade probe included, until [`Event::Upgraded`]) or `"websocket"`.
    pub fn transport_name(&self, key: SessionKey) -> Option<&'static str> {
        self.sessions.get(key.0).map(|s| match s.transport {
            Transport::Polling | Transport::Upgrading { .. } => "polling",
            Transport::WebSocket(_) => "websocket",
        })
    }

    /// Finds a session by the id a peer sent.
    pub fn find(&self, id: &str) -> Result<SessionKey, EngineError> {
        let id = Id::parse(id).ok_or(EngineError::UnknownSid)?;
        match self.sessions.get_by_index(id.key() as usize) {
            Some((key, session)) if id.shard() == self.shard && session.id == id => {
                Ok(SessionKey(key))
            }
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

    /// What the engine holds now (for the stats endpoint and soak runs).
    pub fn counts(&self) -> EngineCounts {
        EngineCounts {
            sessions: self.sessions.len(),
            websockets: self.links.len(),
            timers: self
                .deadlines
                .live_count(|_, (key, generation)| timer::is_live(&self.sessions, key, generation)),
            slow_consumers: self.slow_consumers,
        }
    }

    /// What went through the engine so far, and its sessions by transport and protocol now
    /// (one pass over the sessions: for a scrape, not the hot path).
    pub fn traffic(&self) -> EngineTraffic {
        let mut traffic = self.traffic;
        for (_, session) in self.sessions.iter() {
            let transport = usize::from(matches!(session.transport, Transport::WebSocket(_)));
            let version = usize::from(session.version == Version::V4);
            traffic.sessions_by_transport[transport][version] += 1;
        }
        traffic
    }

    /// Whether no session and no WebSocket connection is left.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.links.is_empty()
    }

    /// The next event for the application, in order.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// Steps 2 and 3 of the calling order (see [`Engine`]): hands every queued event to `handle`,
/// with no borrow of the engine held while it runs (a handler may send, close or broadcast,
/// and the events that queues are handled too), then answers the polls made answerable
/// ([`Engine::flush`]).
pub fn pump(engine: &RefCell<Engine>, mut handle: impl FnMut(Event)) {
    loop {
        let event = engine.borrow_mut().next_event();
        match event {
            Some(event) => handle(event),
            None => break,
        }
    }
    engine.borrow_mut().flush();
}

/// [`pump`], then the end of the runtime's turn (step 4 of the calling order): sends the
/// broadcasts held for it ([`Engine::send_deferred`]) and pumps what that queued. For a
/// harness with no task waiting on [`Engine::poll_deferred`]; a shard has one.
#[cfg(test)]
pub(crate) fn pump_and_end_turn(engine: &RefCell<Engine>, mut handle: impl FnMut(Event)) {
    pump(engine, &mut handle);
    engine.borrow_mut().send_deferred();
    pump(engine, handle);
}

#[cfg(test)]
mod tests;
