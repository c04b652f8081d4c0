//! Socket.IO on top of one shard's Engine.IO sessions: namespaces, connect middleware, sockets,
//! events, acknowledgements (both ways), rooms and broadcasts across shards.
//!
//! Runs on one shard's thread; nothing here touches sockets or reads a clock (time comes in as
//! `now`). Other shards are reached only through [`IoMsg`]s handed to the shard's bus by the
//! `peers` function the shard provides.
#![forbid(unsafe_code)]

mod message;
mod namespace;
mod socket;
mod state;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

/// Not public API: the broadcast encoder, reachable for `benches/broadcast.rs`.
#[doc(hidden)]
pub use message::encode_event;
pub use message::{Args, Message};
pub use namespace::{ConnectError, Handshake, MiddlewareFuture, Namespace, Namespaces};
pub use socket::{AckError, AckSender, BroadcastOperator, Socket};
pub use state::IoCounts;
pub(crate) use state::State;

use crate::codec::frame::Frame;
use crate::engine::{CloseReason, Engine, Event, SessionKey};

/// A shard-local task handed to the shard to run (this layer never spawns by itself).
pub type LocalTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// How Socket.IO reaches beyond itself, provided by the shard that hosts it.
pub struct ShardHooks {
    /// Sends a message to another shard.
    pub peers: Box<dyn Fn(u16, IoMsg)>,
    /// Runs a task on this shard.
    pub spawn: Box<dyn Fn(LocalTask)>,
}

/// Why a socket left its namespace (the strings Socket.IO clients and servers use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left the namespace (`socket.disconnect()` on the client).
    ClientNamespaceDisconnect,
    /// The server removed the socket from the namespace.
    ServerNamespaceDisconnect,
    /// The Engine.IO session ended.
    Transport(CloseReason),
}

impl DisconnectReason {
    /// The reason as Socket.IO names it.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::Transport(reason) => reason.as_str(),
        }
    }
}

/// Socket.IO limits and timers: `Config::socketio`, under the name this layer uses.
pub use crate::config::SocketIoConfig as IoConfig;

/// A broadcast as it travels to other shards: encoded once, shared by reference.
#[derive(Debug)]
pub struct Broadcast {
    pub(crate) nsp: Arc<str>,
    pub(crate) rooms: Vec<Box<str>>,
    pub(crate) except: Vec<Box<str>>,
    pub(crate) volatile: bool,
    /// The packet's text frame, then one frame per attachment.
    pub(crate) frames: Vec<Frame>,
    /// Set when the sender waits for every recipient's ack.
    pub(crate) ack: Option<RemoteAck>,
}

/// Where acks for a broadcast go back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RemoteAck {
    pub(crate) origin: u16,
    pub(crate) request: u64,
    pub(crate) ack_id: u64,
    pub(crate) deadline: Instant,
}

/// Socket.IO's messages between shards.
#[derive(Debug)]
pub enum IoMsg {
    /// Deliver to this shard's matching sockets.
    Broadcast(Arc<Broadcast>),
    /// How many sockets on the sending shard got a broadcast that waits for acks.
    AckCount {
        /// The origin's request id.
        request: u64,
        /// Recipients on the sending shard.
        count: usize,
    },
    /// One recipient's ack for a broadcast.
    Ack {
        /// The origin's request id.
        request: u64,
        /// The ack's arguments.
        message: Message,
    },
}

/// One shard's Socket.IO server. Shared through `Rc` by the shard's tasks and socket handles.
pub struct Io {
    pub(crate) shard: u16,
    pub(crate) shards: u16,
    pub(crate) engine: Rc<RefCell<Engine>>,
    pub(crate) state: RefCell<State>,
    pub(crate) config: IoConfig,
    pub(crate) namespaces: Arc<Namespaces>,
    hooks: ShardHooks,
    /// The current tick's time, set by the shard before it calls in (this layer reads no
    /// clock).
    now: Cell<Instant>,
}

impl Io {
    /// A Socket.IO server for one shard.
    pub fn new(
        shard: u16,
        shards: u16,
        engine: Rc<RefCell<Engine>>,
        config: IoConfig,
        namespaces: Arc<Namespaces>,
        hooks: ShardHooks,
        now: Instant,
    ) -> Rc<Io> {
        Rc::new(Io {
            shard,
            shards,
            engine,
            state: RefCell::new(State::new(shard, shards)),
            config,
            namespaces,
            hooks,
            now: Cell::new(now),
        })
    }

    /// Handles one engine event for a Socket.IO session.
    pub fn handle_event(self: &Rc<Self>, event: Event) {
        match event {
            Event::Open(session) => state::on_open(self, session),
            Event::Message(session, text) => state::on_text(self, session, text),
            Event::Binary(session, data) => state::on_binary(self, session, data),
            Event::Close(session, reason) => {
                state::on_close(self, session, DisconnectReason::Transport(reason))
            }
        }
    }

    /// Handles a message from another shard.
    pub fn handle_peer_message(self: &Rc<Self>, from: u16, msg: IoMsg) {
        state::on_peer_message(self, from, msg)
    }

    /// Sets the time of the current tick (the shard calls this before handing work in).
    pub fn set_now(&self, now: Instant) {
        self.now.set(now);
    }

    /// The time of the current tick.
    pub fn now(&self) -> Instant {
        self.now.get()
    }

    /// The earliest connect or ack deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.state.borrow_mut().next_deadline()
    }

    /// Expires connect timeouts and ack timeouts that are due.
    pub fn handle_timeouts(self: &Rc<Self>, now: Instant) {
        state::on_timeouts(self, now)
    }

    /// An operator for namespace `nsp` on this shard (for broadcasts from outside a handler).
    pub fn of(self: &Rc<Self>, nsp: &str) -> BroadcastOperator {
        BroadcastOperator::new(self.clone(), Arc::from(nsp), None)
    }

    /// Number of connected sockets on this shard (all namespaces).
    pub fn socket_count(&self) -> usize {
        self.state.borrow().socket_count()
    }

    /// Runs a task on this shard (asynchronous middleware); the shard flushes after it.
    fn spawn(&self, task: LocalTask) {
        (self.hooks.spawn)(task)
    }

    /// With no client left, gives back the memory the busiest moment grew; false otherwise.
    pub fn release_idle_memory(&self) -> bool {
        self.state.borrow_mut().release_idle_memory()
    }

    /// What this shard's Socket.IO layer holds now.
    pub fn counts(&self) -> IoCounts {
        self.state.borrow().counts()
    }

    fn send_peer(&self, to: u16, msg: IoMsg) {
        (self.hooks.peers)(to, msg)
    }

    fn send_frames(&self, session: SessionKey, frames: &[Frame], volatile: bool) -> bool {
        self.engine
            .borrow_mut()
            .send_frames(session, frames, volatile)
    }
}

/// The auth payload used when a client sent none.
pub(crate) const EMPTY_AUTH: Bytes = Bytes::from_static(b"{}");

#[cfg(test)]
mod tests;
