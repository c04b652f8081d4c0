//! [`BroadcastOperator`]: selects sockets of one namespace (rooms, except, socket ids as
//! rooms) across every shard, then emits to them (encoded once) or runs a server-wide
//! operation on them: fetch, join, leave, disconnect, all rooms. Operations answer through an
//! [`OpFuture`], bounded by a timeout, with a typed [`OpError`].
//!
//! Shard-local like every handle; `ServerHandle::of` gives the `Send` form for other threads.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use serde::Serialize;

use super::ack::BroadcastAcks;
use super::adapter::{
    self, AckSpec, Broadcast, EventPacket, Op, OpCollector, Operation, Reply, Target,
};
use super::message::{encode_event_as, Args, Message};
use super::recovery::Restored;
use super::SocketIo;
use crate::key::ShardId;

/// How long operations and broadcast acks wait when no timeout is set (Node's default).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One socket as `fetch_sockets` describes it, wherever it lives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SocketInfo {
    /// The socket id.
    pub id: String,
    /// Its namespace.
    pub nsp: String,
    /// The rooms it is in (its own id room included).
    pub rooms: Vec<String>,
    /// What its client said when it connected.
    pub handshake: HandshakeInfo,
    /// The application's value for it (`Socket::set_data`), `null` if none.
    pub data: serde_json::Value,
    /// The shard that holds it; `None` for a socket of another node of the cluster.
    pub shard: Option<ShardId>,
}

/// The handshake of a socket, as `fetch_sockets` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandshakeInfo {
    /// The query string of the Engine.IO handshake request.
    pub query: String,
    /// The client's address, when known.
    pub address: Option<SocketAddr>,
    /// The CONNECT packet's auth object (`{}` if none).
    pub auth: serde_json::Value,
    /// Socket.IO protocol revision: 5, or 4 for socket.io-client 2.x.
    pub protocol: u8,
}

/// Why a server-wide operation gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpError {
    /// A responder (a shard, a node) did not answer within the timeout.
    Timeout,
    /// The server stopped before the operation could finish.
    ServerStopped,
    /// The shard that was to run it has too many messages waiting; try again later.
    Overloaded,
    /// The cluster could not be asked (Redis is down or slow).
    ClusterUnavailable,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpError::Timeout => "operation has timed out",
            OpError::ServerStopped => "server stopped",
            OpError::Overloaded => "server overloaded",
            OpError::ClusterUnavailable => "cluster unavailable",
        })
    }
}

impl std::error::Error for OpError {}

/// The answer of a server-wide operation, once every shard (and node) has given its part or the
/// timeout has passed. `Send` when `T` is, so it can be awaited on any runtime or thread.
#[must_use = "an operation's answer is only seen by awaiting it"]
pub struct OpFuture<T> {
    state: OpState<T>,
}

enum OpState<T> {
    Waiting(oneshot::Receiver<Result<T, OpError>>),
    Ready(Option<Result<T, OpError>>),
}

impl<T> OpFuture<T> {
    /// A future and the function that completes it.
    pub(crate) fn channel() -> (OpFuture<T>, impl FnOnce(Result<T, OpError>)) {
        let (sender, receiver) = oneshot::channel();
        let complete = move |outcome| {
            // The caller may have dropped the future: nobody to tell.
            let _ = sender.send(outcome);
        };
        let future = OpFuture {
            state: OpState::Waiting(receiver),
        };
        (future, complete)
    }

    /// A future already answered.
    pub(crate) fn ready(outcome: Result<T, OpError>) -> OpFuture<T> {
        OpFuture {
            state: OpState::Ready(Some(outcome)),
        }
    }
}

// Never pinned structurally: the outcome is only ever moved out whole.
impl<T> Unpin for OpFuture<T> {}

impl<T> Future for OpFuture<T> {
    type Output = Result<T, OpError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            OpState::Waiting(receiver) => match Pin::new(receiver).poll(cx) {
                Poll::Ready(Ok(outcome)) => Poll::Ready(outcome),
                // The shard dropped the request: it stopped.
                Poll::Ready(Err(oneshot::Canceled)) => Poll::Ready(Err(OpError::ServerStopped)),
                Poll::Pending => Poll::Pending,
            },
            OpState::Ready(outcome) => {
                Poll::Ready(outcome.take().unwrap_or(Err(OpError::ServerStopped)))
            }
        }
    }
}

impl<T> fmt::Debug for OpFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpFuture").finish_non_exhaustive()
    }
}

/// What an operator selects, and how it sends: the same for the shard-local
/// [`BroadcastOperator`] and the `Send` operator of the server handle, which hands it over.
#[derive(Clone)]
pub(crate) struct Selection {
    pub(crate) target: Target,
    pub(crate) volatile: bool,
    pub(crate) local: bool,
    pub(crate) timeout: Option<Duration>,
    /// The timeout when none was set: Node's 5 s, or a cluster's requests timeout.
    pub(crate) default_timeout: Duration,
}

impl Selection {
    /// Every socket of namespace `nsp`, except the socket `except_socket` if given; acks and
    /// operations wait `default_timeout` unless told otherwise.
    pub(crate) fn new(
        nsp: Arc<str>,
        except_socket: Option<&str>,
        default_timeout: Duration,
    ) -> Selection {
        Selection {
            target: Target {
                nsp,
                rooms: Vec::new(),
                except: except_socket.map(Box::from).into_iter().collect(),
            },
            volatile: false,
            local: false,
            timeout: None,
            default_timeout,
        }
    }

    /// How long acks and operations wait (the default when none was set).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.default_timeout)
    }
}

/// The selecting methods of an operator holding a `selection` field (the shard-local one and
/// the `Send` one say the same, once).
macro_rules! selecting_methods {
    () => {
        /// Adds a target room (a socket id is a room too). No room means the whole namespace.
        pub fn to(mut self, room: &str) -> Self {
            self.selection.target.rooms.push(room.into());
            self
        }

        /// Excludes the members of a room.
        pub fn except(mut self, room: &str) -> Self {
            self.selection.target.except.push(room.into());
            self
        }

        /// Drops the packet for recipients that cannot take it right away.
        pub fn volatile(mut self) -> Self {
            self.selection.volatile = true;
            self
        }

        /// Only this server process (every shard of it), never other nodes of a cluster.
        pub fn local(mut self) -> Self {
            self.selection.local = true;
            self
        }

        /// How long acks and operations wait for every responder (default 5 s, or the
        /// cluster's requests timeout; from the call, for the server handle's operator).
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.selection.timeout = Some(timeout);
            self
        }
    };
}
pub(crate) use selecting_methods;

impl fmt::Debug for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selection")
            .field("nsp", &self.target.nsp)
            .field("rooms", &self.target.rooms)
            .field("except", &self.target.except)
            .finish_non_exhaustive()
    }
}

/// Selects the sockets of one namespace, on every shard (and, with a cluster adapter, every
/// node): members of any room added with [`to`](Self::to) (the whole namespace if none),
/// minus members of any room added with [`except`](Self::except); a socket id is a room too.
/// Then emits to them, encoded once, or runs an operation on them. A clone selects the same
/// sockets (to emit and then disconnect them, say).
#[derive(Clone)]
pub struct BroadcastOperator {
    io: Rc<SocketIo>,
    selection: Selection,
    /// Set by the `Send` handle: the deadline its caller's clock fixed.
    deadline: Option<Instant>,
}

impl fmt::Debug for BroadcastOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BroadcastOperator")
            .field(&self.selection)
            .finish()
    }
}

impl BroadcastOperator {
    pub(crate) fn new(io: Rc<SocketIo>, nsp: Arc<str>, except_socket: Option<&str>) -> Self {
        let selection = Selection::new(nsp, except_socket, io.adapter.default_timeout());
        BroadcastOperator::from_selection(io, selection, None)
    }

    /// An operator on this shard for what the server handle selected, with its deadline.
    pub(crate) fn from_selection(
        io: Rc<SocketIo>,
        selection: Selection,
        deadline: Option<Instant>,
    ) -> Self {
        BroadcastOperator {
            io,
            selection,
            deadline,
        }
    }

    selecting_methods!();

    /// The namespace it selects in.
    pub fn nsp(&self) -> &str {
        &self.selection.target.nsp
    }

    /// The shard's Socket.IO server this operator runs on.
    pub(crate) fn io(&self) -> &Rc<SocketIo> {
        &self.io
    }

    fn deadline(&self) -> Instant {
        let timeout = self.selection.timeout();
        self.deadline.unwrap_or_else(|| self.io.now() + timeout)
    }

    /// Emits to every matching socket on every shard. Returns the recipients on this shard.
    pub fn emit(self, event: &str, args: &Args) -> usize {
        // With connection state recovery, an event that is not volatile is stored: it carries
        // its offset as a last argument, which the client keeps (spec D.2).
        let offset = match &self.io.recovery {
            Some(recovery) if !self.selection.volatile => Some(recovery.borrow_mut().next_offset()),
            _ => None,
        };
        let stored;
        let sent = match &offset {
            Some(offset) => {
                stored = args.clone().with_str(offset);
                &stored
            }
            None => args,
        };
        let frames = encode_event_as(
            self.io.config.parser,
            &self.selection.target.nsp,
            event,
            sent,
            None,
        );
        self.send(event, args, frames, None, offset)
    }

    /// Emits and collects every recipient's ack (on every shard) until all have answered or
    /// the timeout (default 5 s) passes; then calls `callback` once.
    pub fn emit_with_ack(
        self,
        event: &str,
        args: &Args,
        callback: impl FnOnce(BroadcastAcks) + 'static,
    ) {
        self.emit_with_ack_counted(event, args, move |_, acks| callback(acks));
    }

    /// [`emit_with_ack`](Self::emit_with_ack), telling `callback` also how many recipients
    /// every shard and node reported (the HTTP API's `expected`).
    pub(crate) fn emit_with_ack_counted(
        self,
        event: &str,
        args: &Args,
        callback: impl FnOnce(usize, BroadcastAcks) + 'static,
    ) {
        let deadline = self.deadline();
        let request =
            adapter::expect_acks(&self.io, self.selection.local, deadline, Box::new(callback));
        let ack_id = self.io.state.borrow_mut().next_ack_id();
        let frames = encode_event_as(
            self.io.config.parser,
            &self.selection.target.nsp,
            event,
            args,
            Some(ack_id),
        );
        let spec = AckSpec {
            origin: self.io.origin(),
            request,
            ack_id,
            deadline,
        };
        self.send(event, args, frames, Some(spec), None);
    }

    /// Describes every matching socket (id, namespace, rooms, handshake, data, shard).
    pub fn fetch_sockets(self) -> OpFuture<Vec<SocketInfo>> {
        self.operate_then(Op::FetchSockets, Vec::new(), |all, reply| {
            if let Reply::Sockets(sockets) = reply {
                all.extend(sockets);
            }
        })
    }

    /// [`fetch_sockets`](Self::fetch_sockets) that answers what came when a responder did
    /// not answer in time, with `false` (complete) or `true` (partial) (the HTTP API's
    /// `partial`). Fails only when the cluster could not be asked.
    pub(crate) fn fetch_sockets_partial(self) -> OpFuture<(Vec<SocketInfo>, bool)> {
        let (future, complete) = OpFuture::channel();
        let deadline = self.deadline();
        let collector = Box::new(PartialFetch {
            sockets: Vec::new(),
            unavailable: false,
            done: Box::new(complete),
        });
        let operation = Operation {
            target: self.selection.target,
            op: Op::FetchSockets,
        };
        adapter::operate(
            &self.io,
            operation,
            self.selection.local,
            deadline,
            collector,
        );
        future
    }

    /// How many sockets match on every shard of this process (never other nodes: the HTTP
    /// API's `local_recipients` and local room sizes).
    pub(crate) fn count_local(mut self) -> OpFuture<usize> {
        self.selection.local = true;
        self.operate_then(Op::Count, 0, add_count)
    }

    /// The kept session `pid` of this namespace and what it missed after `offset`, from the
    /// shard of this process that kept it (connection state recovery).
    pub(crate) fn restore(mut self, pid: &str, offset: &str) -> OpFuture<Option<Box<Restored>>> {
        self.selection.local = true;
        let op = Op::Restore {
            pid: pid.into(),
            offset: offset.into(),
        };
        self.operate_then(op, None, |found: &mut Option<Box<Restored>>, reply| {
            if let Reply::Restored(restored) = reply {
                *found = Some(restored);
            }
        })
    }

    /// Joins every matching socket to each of `rooms`; answers how many sockets matched.
    pub fn sockets_join<R: AsRef<str>>(
        self,
        rooms: impl IntoIterator<Item = R>,
    ) -> OpFuture<usize> {
        let rooms = rooms.into_iter().map(|r| r.as_ref().into()).collect();
        self.operate_then(Op::Join(rooms), 0, add_count)
    }

    /// Takes every matching socket out of each of `rooms`; answers how many sockets matched.
    pub fn sockets_leave<R: AsRef<str>>(
        self,
        rooms: impl IntoIterator<Item = R>,
    ) -> OpFuture<usize> {
        let rooms = rooms.into_iter().map(|r| r.as_ref().into()).collect();
        self.operate_then(Op::Leave(rooms), 0, add_count)
    }

    /// Disconnects every matching socket from the namespace (the client gets a DISCONNECT), or
    /// with `close`, closes its whole connection; answers how many sockets matched.
    pub fn disconnect_sockets(self, close: bool) -> OpFuture<usize> {
        self.operate_then(Op::Disconnect { close }, 0, add_count)
    }

    /// Every room of the namespace that has a member anywhere (socket id rooms included);
    /// `to` and `except` do not apply.
    pub fn all_rooms(self) -> OpFuture<Vec<String>> {
        self.operate_then(Op::AllRooms, Vec::new(), |all: &mut Vec<_>, reply| {
            if let Reply::Rooms(rooms) = reply {
                all.extend(rooms);
                // Several shards may hold members of one room: name it once.
                all.sort_unstable();
                all.dedup();
            }
        })
    }

    /// How many servers serve the namespace: this process counts once, whatever its shards,
    /// and with a cluster every node subscribed to it counts once too (Node's
    /// `serverCount()`). Without a cluster (or `local()`), 1.
    pub fn server_count(self) -> OpFuture<usize> {
        let (future, complete) = OpFuture::channel();
        let count = self
            .io
            .adapter
            .server_count(&self.selection.target.nsp, self.selection.local);
        self.io.spawn(Box::pin(async move {
            complete(count.await.ok_or(OpError::ClusterUnavailable));
        }));
        future
    }

    /// Sends an event to the other servers of the cluster, not to clients: each one's handler
    /// of it ([`Namespace::on_server_side_emit`](super::Namespace::on_server_side_emit)) runs
    /// (Node's `serverSideEmit`). This process is one server, whatever its shards: its own
    /// handlers are not called, and without a cluster (or with `local()`) nobody hears it.
    /// Rooms, except and volatile do not apply.
    pub fn server_side_emit(self, event: &str, args: &Args) {
        let nsp = &self.selection.target.nsp;
        adapter::server_event(&self.io, nsp, event, args, self.selection.local, None);
    }

    /// Sends an event to the other servers' handlers and gathers each one's ack (its first
    /// argument, as Node sends it). Fails with [`OpError::Timeout`] unless every other server
    /// answered within the timeout; with no other server, answers an empty list at once.
    pub fn server_side_emit_with_ack(self, event: &str, args: &Args) -> OpFuture<Vec<Message>> {
        let (future, complete) = OpFuture::channel();
        let merge = |all: &mut Vec<Message>, reply| {
            if let Reply::Ack(message) = reply {
                all.push(message);
            }
        };
        let collector = Box::new(OpCollector::new(Vec::new(), merge, Box::new(complete)));
        let nsp = &self.selection.target.nsp;
        let ack = Some((self.deadline(), collector as _));
        adapter::server_event(&self.io, nsp, event, args, self.selection.local, ack);
        future
    }

    /// Runs `op` everywhere and returns the merged answers.
    fn operate_then<T: Send + 'static>(
        self,
        op: Op,
        empty: T,
        merge: fn(&mut T, Reply),
    ) -> OpFuture<T> {
        let (future, complete) = OpFuture::channel();
        self.operate(op, empty, merge, Box::new(complete));
        future
    }

    /// Runs `op` everywhere; `done` gets the merged answers or why some are missing.
    pub(crate) fn operate<T: 'static>(
        self,
        op: Op,
        empty: T,
        merge: fn(&mut T, Reply),
        done: Box<dyn FnOnce(Result<T, OpError>)>,
    ) {
        let deadline = self.deadline();
        let collector = Box::new(OpCollector::new(empty, merge, done));
        let operation = Operation {
            target: self.selection.target,
            op,
        };
        adapter::operate(
            &self.io,
            operation,
            self.selection.local,
            deadline,
            collector,
        );
    }

    /// Delivers on this shard and hands one shared copy to every other responder.
    fn send(
        self,
        event: &str,
        args: &Args,
        frames: Vec<crate::codec::frame::Frame>,
        ack: Option<AckSpec>,
        offset: Option<Arc<str>>,
    ) -> usize {
        // The observer and other nodes need the event as given; nobody else does, so it is kept
        // only then.
        let keep = self.io.observer.is_some() || self.io.adapter.publishes();
        let packet = keep.then(|| EventPacket {
            event: event.into(),
            args: args.clone(),
        });
        let mut frames = frames;
        self.io.engine.borrow().share_deflate(&mut frames);
        let broadcast = Broadcast {
            target: self.selection.target,
            volatile: self.selection.volatile,
            frames,
            packet,
            ack,
            from_node: false,
            offset,
        };
        adapter::broadcast(&self.io, broadcast, self.selection.local)
    }
}

/// What a partial fetch answers: the sockets, and whether a responder was late.
type PartialSockets = Result<(Vec<SocketInfo>, bool), OpError>;

/// Gathers a fetch's sockets and, unlike [`OpCollector`], keeps them when a responder is late.
struct PartialFetch {
    sockets: Vec<SocketInfo>,
    unavailable: bool,
    done: Box<dyn FnOnce(PartialSockets)>,
}

impl crate::gather::Collector<Reply> for PartialFetch {
    fn add(&mut self, reply: Reply) -> usize {
        match reply {
            Reply::Nodes(asked) => return asked,
            Reply::Unavailable => self.unavailable = true,
            Reply::Sockets(sockets) => self.sockets.extend(sockets),
            _ => {}
        }
        0
    }

    fn finish(self: Box<Self>, complete: bool) {
        let PartialFetch {
            sockets,
            unavailable,
            done,
        } = *self;
        let outcome = if unavailable {
            Err(OpError::ClusterUnavailable)
        } else {
            Ok((sockets, !complete))
        };
        super::dispatch::contain("operation", || done(outcome));
    }
}

fn add_count(total: &mut usize, reply: Reply) {
    if let Reply::Count(count) = reply {
        *total += count;
    }
}
