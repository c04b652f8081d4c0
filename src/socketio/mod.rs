//! Socket.IO on top of one shard's Engine.IO sessions: namespaces, connect middleware, sockets,
//! events, acknowledgements (both ways), rooms, broadcasts and server-wide operations across
//! shards, and the lifecycle observer.
//!
//! Runs on one shard's thread; nothing here touches sockets or reads a clock (time comes in as
//! `now`). Other shards are reached only through the [`adapter`] boundary, whose
//! [`SocketIoMsg`]s the shard's bus carries through the `peers` function the shard provides.
//!
//! Files by role: `tables` (the data), `dispatch` (engine events, packets, rooms, removal,
//! deadlines), `connect` (CONNECT and middleware), `ack`, `adapter` (what leaves the shard),
//! `operator` (broadcasts and operations), `socket` (handles), `observe`, `message`,
//! `namespace` (what the application declares).
#![forbid(unsafe_code)]

mod ack;
mod adapter;
mod connect;
mod dispatch;
mod message;
mod namespace;
mod observe;
mod operator;
mod recovery;
mod socket;
mod tables;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use ack::{AckError, BroadcastAcks, ServerAck};
pub(crate) use adapter::Op;
pub use adapter::{Ask, Broadcast, NodeHooks, Operation, Reply, ServerCountFuture, SocketIoMsg};
/// The broadcast encoder, for `benches/broadcast.rs` (through `ringcast::internals`).
pub use message::encode_event;
pub(crate) use message::Args as EventArgs;
pub use message::{Args, Message};
pub use namespace::{
    Admission, AdmissionFuture, ConnectError, Handshake, MiddlewareFuture, Namespace, Namespaces,
};
pub use observe::{Observer, ObserverFactory};
pub(crate) use operator::{selecting_methods, Selection, DEFAULT_TIMEOUT};
pub use operator::{BroadcastOperator, HandshakeInfo, OpError, OpFuture, SocketInfo};
pub(crate) use recovery::{
    node_of as recovery_node_of, offset as recovery_offset, reaches as recovery_reaches, Logged,
    RestoreFuture, Restored, Session as RecoverySession, SharedRecovery,
};
pub use socket::{AckSender, Socket};
pub use tables::{SocketIoCounts, SocketIoTraffic};

use crate::codec::frame::Frame;
use crate::directory::RoomDirectory;
use crate::engine::{CloseReason, Engine, Event, SendError, SessionKey};
use crate::gather::Gather;
use crate::key::ShardId;
use adapter::{Adapter, Origin, ShardFanout};
use tables::{SocketKey, State};

/// A shard-local task handed to the shard to run (this layer never spawns by itself).
pub type LocalTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// How Socket.IO reaches beyond itself, provided by the shard that hosts it.
pub struct ShardHooks {
    /// Sends a message to another shard.
    pub peers: Box<dyn Fn(ShardId, SocketIoMsg)>,
    /// Runs a task on this shard.
    pub spawn: Box<dyn Fn(LocalTask)>,
    /// Reaches the other nodes of a cluster, if any.
    pub nodes: Option<NodeHooks>,
    /// The shards' room directory: broadcasts to rooms go only to shards with members.
    pub directory: Option<Arc<RoomDirectory>>,
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

/// Socket.IO limits and timers (`Config::socketio`).
pub use crate::config::SocketIoConfig;

/// Work for a shard from outside it (another thread, another runtime): a function run on
/// the shard with its Socket.IO server at hand. `Send`; what it captures must be too.
pub struct Command(Box<CommandFn>);

type CommandFn = dyn FnOnce(&Rc<SocketIo>) + Send;

impl Command {
    /// Wraps `run`, to be run on a shard.
    pub fn new(run: impl FnOnce(&Rc<SocketIo>) + Send + 'static) -> Command {
        Command(Box::new(run))
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// One shard's Socket.IO server. Shared through `Rc` by the shard's tasks and socket handles.
pub struct SocketIo {
    pub(crate) shard: ShardId,
    pub(crate) engine: Rc<RefCell<Engine>>,
    pub(crate) state: RefCell<State>,
    pub(crate) config: SocketIoConfig,
    pub(crate) namespaces: Arc<Namespaces>,
    /// Where broadcasts and operations leave this shard.
    pub(crate) adapter: Box<dyn Adapter>,
    /// Requests to other shards waiting for their answers (broadcast acks, operations).
    gather: RefCell<Gather<Reply>>,
    /// The application's lifecycle observer for this shard, if it gave one.
    observer: Option<Box<dyn Observer>>,
    spawn: Box<dyn Fn(LocalTask)>,
    /// The current tick's time, set by the shard before it calls in (this layer reads no
    /// clock).
    now: Cell<Instant>,
    /// Broadcasts, deliveries and ack round trips so far (the metrics route's).
    pub(crate) traffic: RefCell<SocketIoTraffic>,
    /// Connection state recovery's offsets, log and kept sessions, when it is on.
    pub(crate) recovery: Option<RefCell<recovery::Recovery>>,
    /// Which shards have members of which rooms, shared by the server's shards (none with
    /// one shard, or with recovery on: every shard then logs every stored broadcast).
    pub(crate) directory: Option<Arc<RoomDirectory>>,
}

impl SocketIo {
    /// A Socket.IO server for one shard.
    pub fn new(
        shard: ShardId,
        shards: u16,
        engine: Rc<RefCell<Engine>>,
        config: SocketIoConfig,
        namespaces: Arc<Namespaces>,
        hooks: ShardHooks,
        now: Instant,
    ) -> Rc<SocketIo> {
        let observer: Option<Box<dyn Observer>> = match namespaces.observers.as_slice() {
            [] => None,
            [make] => Some(make(shard)),
            many => Some(Box::new(observe::Observers(
                many.iter().map(|make| make(shard)).collect(),
            ))),
        };
        let node = hooks
            .nodes
            .as_ref()
            .and_then(|nodes| nodes.recovery.as_ref())
            .map(|shared| Arc::<str>::from(shared.node()));
        let recovery = config.recovery.as_ref().map(|recovery| {
            RefCell::new(recovery::Recovery::new(
                recovery,
                shard.index() as u16,
                node,
            ))
        });
        Rc::new(SocketIo {
            recovery,
            directory: hooks.directory,
            shard,
            engine,
            state: RefCell::new(State::new(shard, shards)),
            config,
            namespaces,
            adapter: Box::new(ShardFanout {
                shard,
                shards,
                peers: hooks.peers,
                nodes: hooks.nodes,
            }),
            gather: RefCell::new(Gather::default()),
            observer,
            spawn: hooks.spawn,
            now: Cell::new(now),
            traffic: RefCell::default(),
        })
    }

    /// Handles one engine event for a Socket.IO session.
    pub fn handle_event(self: &Rc<Self>, event: Event) {
        match event {
            Event::Open(session) => dispatch::on_open(self, session),
            Event::Message(session, text) => dispatch::on_text(self, session, text),
            Event::Binary(session, data) => dispatch::on_binary(self, session, data),
            Event::Upgraded(session) => dispatch::on_upgraded(self, session),
            Event::Close(session, reason) => {
                dispatch::on_close(self, session, DisconnectReason::Transport(reason))
            }
        }
    }

    /// Handles a message from another shard.
    pub fn handle_peer_message(self: &Rc<Self>, msg: SocketIoMsg) {
        adapter::on_peer_message(self, msg)
    }

    /// Runs work handed in from outside the shard.
    pub fn run_command(self: &Rc<Self>, command: Command) {
        dispatch::contain("command", || (command.0)(self));
    }

    /// Sets the time of the current tick (the shard calls this before handing work in).
    pub fn set_now(&self, now: Instant) {
        self.now.set(now);
    }

    /// The time of the current tick.
    pub fn now(&self) -> Instant {
        self.now.get()
    }

    /// The earliest connect, ack or request deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timers = self.state.borrow_mut().next_deadline();
        let requests = self.gather.borrow().next_deadline();
        timers.into_iter().chain(requests).min()
    }

    /// Expires connect, ack and request deadlines that are due.
    pub fn handle_timeouts(self: &Rc<Self>, now: Instant) {
        dispatch::on_timeouts(self, now)
    }

    /// An operator for namespace `nsp` on this shard (for broadcasts from outside a handler).
    pub fn of(self: &Rc<Self>, nsp: &str) -> BroadcastOperator {
        BroadcastOperator::new(self.clone(), Arc::from(nsp), None)
    }

    /// Number of connected sockets on this shard (all namespaces).
    pub fn socket_count(&self) -> usize {
        self.state.borrow().socket_count()
    }

    /// Runs a task on this shard (asynchronous middleware, an operation's answer); the shard
    /// flushes after it.
    pub(crate) fn spawn(&self, task: LocalTask) {
        (self.spawn)(task)
    }

    /// With no client left, gives back the memory the busiest moment grew; false otherwise.
    pub fn release_idle_memory(&self) -> bool {
        self.state.borrow_mut().release_idle_memory()
    }

    /// What this shard's Socket.IO layer holds now.
    pub fn counts(&self) -> SocketIoCounts {
        let mut counts = self.state.borrow().counts();
        counts.timers += self.gather.borrow().len();
        counts
    }

    /// What went through this shard's Socket.IO layer so far, and its sockets per namespace
    /// now.
    pub fn traffic(&self) -> SocketIoTraffic {
        let mut traffic = self.traffic.borrow().clone();
        traffic.sockets_per_namespace = self
            .state
            .borrow()
            .namespaces
            .iter()
            .map(|ns| (ns.name.clone(), ns.members.len()))
            .collect();
        traffic
    }

    /// This shard as the origin of a request.
    pub(crate) fn origin(&self) -> Origin {
        Origin::Shard(self.shard)
    }

    /// A handle on a socket of this shard, if it is still there.
    pub(crate) fn handle(self: &Rc<Self>, socket: SocketKey) -> Option<Socket> {
        let (id, nsp) = {
            let state = self.state.borrow();
            let entry = state.socket(socket)?;
            (entry.id.clone(), state.namespaces[entry.ns].name.clone())
        };
        Some(Socket::new(self.clone(), socket, id, nsp))
    }

    /// The handlers of a socket's namespace.
    /// Runs the namespace's server-side handler of an event another server sent; nothing if
    /// it has none (an ack asked for is then never sent, as in Node).
    pub fn server_event(
        self: &Rc<Self>,
        nsp: &str,
        event: &str,
        message: Message,
        ack: Option<ServerAck>,
    ) {
        let handler = self
            .namespaces
            .resolve(nsp)
            .and_then(|handlers| handlers.server_events.get(event).cloned());
        if let Some(handler) = handler {
            let operator = self.of(nsp);
            dispatch::contain("server-side event", || handler(operator, message, ack));
        }
    }

    fn namespace_handlers(&self, socket: SocketKey) -> Option<Arc<Namespace>> {
        let state = self.state.borrow();
        let entry = state.socket(socket)?;
        Some(state.namespaces[entry.ns].handlers.clone())
    }

    fn send_frames(
        &self,
        session: SessionKey,
        frames: &[Frame],
        volatile: bool,
    ) -> Result<(), SendError> {
        self.engine
            .borrow_mut()
            .send_frames(session, frames, volatile)
    }
}

/// The auth payload used when a client sent none.
pub(crate) const EMPTY_AUTH: Bytes = Bytes::from_static(b"{}");

#[cfg(test)]
mod tests;
