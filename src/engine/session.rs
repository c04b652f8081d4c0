//! One Engine.IO session's state: transport, heartbeat, polling outbox.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::{LinkKey, PollWaiter};
use crate::codec::eio::Version;
use crate::codec::frame::Frame;
use crate::id::Id;

/// Why a session ended (the reference's reasons, as Socket.IO reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The connection was closed by the peer (EOF, aborted poll, WebSocket close).
    TransportClose,
    /// The connection failed (protocol error on the WebSocket, duplicate poll, oversize body).
    TransportError,
    /// The client stopped answering heartbeats.
    PingTimeout,
    /// The client sent an Engine.IO close packet.
    ClientClose,
    /// The client sent something that is not Engine.IO.
    ParseError,
    /// The server closed the session.
    ServerClose,
    /// The client could not keep up: its outbound queue overflowed.
    SlowConsumer,
    /// The server is shutting down (after sending everything queued).
    ServerShutdown,
}

impl CloseReason {
    /// The reason as Socket.IO's `disconnect` event names it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ClientClose => "transport close",
            CloseReason::ParseError => "parse error",
            CloseReason::ServerClose => "forced server close",
            CloseReason::SlowConsumer => "transport error",
            CloseReason::ServerShutdown => "server shutting down",
        }
    }

    /// Whether a pending poll should carry a close packet to the client.
    pub(super) fn notifies_client(self) -> bool {
        !matches!(self, CloseReason::TransportClose)
    }
}

/// Which transport carries the session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    Polling,
    /// Polling, with a WebSocket probing to take over.
    Upgrading {
        link: LinkKey,
        stage: Upgrade,
    },
    WebSocket(LinkKey),
}

/// How far a polling-to-WebSocket upgrade has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upgrade {
    /// Waiting for `2probe` on the new WebSocket.
    Probing,
    /// `3probe` sent; the next poll is released with a noop.
    Probed,
    /// The noop went out: the client's next step is `5`, so a further GET waits for it (and is
    /// refused once the WebSocket has taken over), whichever connection wins the race.
    Released,
}

/// The heartbeat's next step and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Heartbeat {
    /// EIO=4: the server pings at this instant.
    SendPingAt(Instant),
    /// EIO=4: the client must pong by this instant.
    PongBy(Instant),
    /// EIO=3: the client must ping by this instant.
    ClientPingBy(Instant),
}

impl Heartbeat {
    pub(super) fn due(self) -> Instant {
        match self {
            Heartbeat::SendPingAt(at) | Heartbeat::PongBy(at) | Heartbeat::ClientPingBy(at) => at,
        }
    }
}

pub(super) struct Session {
    pub(super) id: Id,
    pub(super) endpoint: u8,
    pub(super) version: Version,
    /// EIO=3 polling: binary payloads allowed (the handshake had no `b64`).
    pub(super) supports_binary: bool,
    /// The handshake request's query string and the client's address.
    pub(super) query: Box<str>,
    pub(super) address: Option<SocketAddr>,
    /// The handshake's kept headers (`EngineConfig::handshake_headers`).
    pub(super) headers: Box<[(Box<str>, Box<str>)]>,
    pub(super) transport: Transport,
    /// Frames waiting for the next poll (polling and during an upgrade).
    pub(super) outbox: VecDeque<Frame>,
    pub(super) outbox_bytes: usize,
    /// The pending GET.
    pub(super) poll: Option<PollWaiter>,
    pub(super) heartbeat: Heartbeat,
    pub(super) upgrade_deadline: Option<Instant>,
    /// Only the deadline entry with this generation is live.
    pub(super) timer_generation: u32,
    /// Holds a slot of the server's session limits (see `Engine::admit`).
    pub(super) admitted: bool,
    /// Named by a broadcast held for the end of the turn: anything sent to it (or its close)
    /// first sends what is held, to keep the order.
    pub(super) deferred: bool,
}

impl Session {
    pub(super) fn new(
        id: Id,
        peer: super::Peer,
        supports_binary: bool,
        transport: Transport,
        heartbeat: Heartbeat,
    ) -> Session {
        Session {
            id,
            endpoint: peer.endpoint,
            version: peer.version,
            supports_binary,
            query: peer.query,
            address: peer.address,
            headers: peer.headers,
            transport,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            poll: None,
            heartbeat,
            upgrade_deadline: None,
            timer_generation: 0,
            admitted: false,
            deferred: false,
        }
    }

    pub(super) fn push(&mut self, frame: Frame) {
        self.outbox_bytes += frame.payload_slice().len();
        self.outbox.push_back(frame);
    }
}
