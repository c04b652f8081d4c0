//! How sessions begin and end: admission, the handshake over polling or WebSocket, the
//! server-side close, the graceful drain, and giving memory back once idle.
//!
//! No I/O and no clock: `now` comes in as an argument.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::session::{Heartbeat, Session, Transport};
use super::{CloseReason, Engine, EngineError, Event, LinkKey, Peer, PollReply, SessionKey};
use crate::codec::eio::{self, Version};
use crate::codec::frame::Frame;
use crate::codec::ws;
use crate::deadline::DeadlineHeap;
use crate::id::{Id, MAX_SLOTS};

impl Engine {
    /// Asks to open a session for a handshake from `address`: refused while shutting down and
    /// past the session and handshake limits. On `Ok` the next [`Engine::open_polling`] or
    /// [`Engine::open_websocket`] holds the slot taken, and gives it back when it closes.
    pub fn admit(&mut self, address: Option<SocketAddr>, now: Instant) -> Result<(), EngineError> {
        let admitted = self.check_admission(address, now);
        if let Err(refused) = admitted {
            self.count_refusal(refused, address, now);
        }
        admitted
    }

    fn check_admission(
        &mut self,
        address: Option<SocketAddr>,
        now: Instant,
    ) -> Result<(), EngineError> {
        if self.draining {
            return Err(EngineError::ShuttingDown);
        }
        // A session id names its slot in 24 bits (`id::MAX_SLOTS`).
        if self.sessions.vacant_key().index() >= MAX_SLOTS {
            return Err(EngineError::TooManySessions);
        }
        if let Some(admission) = &self.admission {
            admission.admit(address.map(|a| a.ip()), now)?;
            self.admitted_unused += 1;
        }
        Ok(())
    }

    /// Counts a handshake the network layer refused before asking [`Engine::admit`] (an
    /// unsupported `EIO`, an unknown `transport`, a WebSocket request that says `polling`), and
    /// logs it as [`Engine::admit`] logs its own refusals.
    pub fn handshake_refused(
        &mut self,
        refused: EngineError,
        address: Option<SocketAddr>,
        now: Instant,
    ) {
        self.count_refusal(refused, address, now);
    }

    /// Counts a refused handshake by its reason, and logs it: at most one line a second per
    /// shard (with how many more were refused meanwhile), so that a client hammering a limit
    /// can't turn each refusal into a log line.
    fn count_refusal(&mut self, refused: EngineError, address: Option<SocketAddr>, now: Instant) {
        let refusals = &mut self.traffic.refused;
        let reason = match refused {
            EngineError::ShuttingDown => {
                refusals.shutting_down += 1;
                "shutting down"
            }
            EngineError::TooManyHandshakes => {
                refusals.handshake_rate += 1;
                "too many handshakes from this address"
            }
            EngineError::TooManySessions => {
                refusals.session_limit += 1;
                "session limit reached"
            }
            EngineError::UnsupportedVersion => {
                refusals.unsupported_protocol += 1;
                "unsupported protocol version"
            }
            EngineError::UnknownTransport => {
                refusals.unknown_transport += 1;
                "unknown transport"
            }
            _ => {
                refusals.bad_request += 1;
                "bad request"
            }
        };
        match &mut self.refusals_logged {
            Some((last, unlogged))
                if now.saturating_duration_since(*last) < Duration::from_secs(1) =>
            {
                *unlogged += 1;
            }
            logged => {
                let more = (*logged).map_or(0, |(_, unlogged)| unlogged);
                let client = address.map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
                tracing::info!(
                    %client,
                    reason,
                    refused_since_last_line = more,
                    "handshake refused"
                );
                *logged = Some((now, 0));
            }
        }
    }

    /// With no session and no WebSocket left, gives back what the busiest moment grew: the
    /// slabs, queues and pools keep their peak capacity otherwise. False if anything is left.
    pub fn release_idle_memory(&mut self) -> bool {
        if !self.is_empty() || !self.deferred.is_empty() {
            return false;
        }
        // Fresh slabs; their generations go on counting, so no key of a closed session or link
        // names a new one.
        self.sessions.release_if_empty();
        self.links.release_if_empty();
        self.deadlines = DeadlineHeap::new();
        self.events = VecDeque::new();
        self.dirty = Vec::new();
        self.spare_queues = Vec::new();
        self.deferred = Vec::new();
        true
    }

    /// Starts a graceful shutdown: everything queued or held goes out, then each session is
    /// closed (`ServerShutdown`) behind it: a WebSocket gets its queue and a close frame, a
    /// pending GET its queue and a close packet, and a polling session with no GET pending
    /// gets both at its next GET. New sessions are refused from now on.
    pub fn drain(&mut self) {
        self.draining = true;
        self.send_deferred();
        let keys: Vec<SessionKey> = self
            .sessions
            .iter()
            .map(|(key, _)| SessionKey(key))
            .collect();
        for key in keys {
            let Some(session) = self.sessions.get(key.0) else {
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
        let key = SessionKey(self.sessions.vacant_key());
        let id = Id::generate(self.shard, key.0.index() as u32, &mut self.random);
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
        self.sessions.insert(session);
        self.reschedule(key);
        key
    }

    fn open_packet(&self, key: SessionKey, can_upgrade: bool) -> Vec<u8> {
        let Some(session) = self.sessions.get(key.0) else {
            return Vec::new();
        };
        eio::open_packet(
            session.id.as_str(),
            can_upgrade,
            self.config.ping_interval.as_millis() as u64,
            self.config.ping_timeout.as_millis() as u64,
            self.config.max_payload as u64,
        )
    }

    /// Closes a session (server side): a pending poll gets what is queued plus a close packet,
    /// a WebSocket gets what is queued plus a close frame. Emits [`Event::Close`].
    pub fn close(&mut self, key: SessionKey, reason: CloseReason) {
        let Some(session) = self.sessions.get(key.0) else {
            return;
        };
        if session.deferred {
            // What was broadcast to it goes out before the close.
            self.send_deferred();
            if !self.sessions.contains(key.0) {
                return;
            }
        }
        let Some(mut session) = self.sessions.remove(key.0) else {
            return;
        };
        if let (true, Some(admission)) = (session.admitted, &self.admission) {
            admission.release(session.address.map(|a| a.ip()));
        }
        match session.transport {
            Transport::WebSocket(link) | Transport::Upgrading { link, .. } => {
                if let Some(entry) = self.link_mut(link) {
                    entry.session = None;
                }
                let frame = (reason != CloseReason::TransportClose)
                    .then(|| ws::close_frame(ws::CLOSE_NORMAL, ""));
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
}
