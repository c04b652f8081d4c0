//! The adapter boundary: where a broadcast or a server-wide operation leaves this shard, and
//! what comes back. Broadcasts are encoded once and shared (`Arc`); operations (fetch, join,
//! leave, disconnect, all rooms) run on every responder and their answers are merged in the
//! shard's [`Gather`] table, like a broadcast's acks.
//!
//! Today's responders are the other shards of this process ([`ShardFanout`]); a cluster
//! adapter adds other nodes behind the same [`Adapter`] trait, with [`Origin`] telling where a
//! reply goes. Nothing here touches sockets or the bus: messages leave through the function the
//! shard lends (`ShardHooks::peers`).

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ack::{AckCollector, AckHandler};
use super::dispatch::{self, contain};
use super::message::{encode_event_as, Args, Message};
use super::operator::{HandshakeInfo, OpError, SocketInfo, DEFAULT_TIMEOUT};
use super::recovery::{Logged, SharedRecovery};
use super::tables::SocketKey;
use super::SocketIo;
use crate::codec::eio::Version;
use crate::codec::frame::Frame;
use crate::config::Parser;
use crate::engine::{CloseReason, SessionKey};
use crate::gather::{Collector, Finished, RequestId};
use crate::key::ShardId;

/// Where a request was sent from, so its answers can go back: a shard of this process (a
/// cluster adds other nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A shard of this process.
    Shard(ShardId),
}

/// Which sockets of a namespace: members of any of `rooms` (all if none), minus members of
/// any of `except`. A socket id is a room too.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) nsp: Arc<str>,
    pub(crate) rooms: Vec<Box<str>>,
    pub(crate) except: Vec<Box<str>>,
}

/// A broadcast as it travels to other shards: encoded once, shared by reference.
#[derive(Debug)]
pub struct Broadcast {
    pub(crate) target: Target,
    pub(crate) volatile: bool,
    /// The packet's text frame, then one frame per attachment.
    pub(crate) frames: Vec<Frame>,
    /// The event as the application gave it, kept only while an observer watches.
    pub(crate) packet: Option<EventPacket>,
    /// Set when the sender waits for every recipient's ack.
    pub(crate) ack: Option<AckSpec>,
    /// Published by another node (for the metrics: a broadcast from Redis, not a shard's).
    pub(crate) from_node: bool,
    /// The offset its frames carry when connection state recovery stores it: every shard
    /// that delivers it logs it.
    pub(crate) offset: Option<Arc<str>>,
}

impl Broadcast {
    /// A broadcast another node published, encoded once for every shard of this process, to
    /// the whole namespace until [`Broadcast::to`] says otherwise. Never published again (it
    /// reaches the shards as a peer message, not through the adapter). `parser` is the
    /// server's: every shard's clients speak it. With `offset` it is stored (connection state
    /// recovery): its frames carry the offset as a last argument, and every shard that
    /// delivers it logs it.
    pub fn remote(
        parser: Parser,
        nsp: &str,
        event: &str,
        args: Args,
        offset: Option<Arc<str>>,
    ) -> Broadcast {
        let frames = match &offset {
            Some(offset) => {
                let stored = args.clone().with_str(offset);
                encode_event_as(parser, nsp, event, &stored, None)
            }
            None => encode_event_as(parser, nsp, event, &args, None),
        };
        Broadcast {
            target: Target {
                nsp: nsp.into(),
                rooms: Vec::new(),
                except: Vec::new(),
            },
            volatile: false,
            frames,
            packet: Some(EventPacket {
                event: event.into(),
                args,
            }),
            ack: None,
            from_node: true,
            offset,
        }
    }

    /// Only to members of `rooms` (all if none), minus members of `except`.
    pub fn to(mut self, rooms: Vec<String>, except: Vec<String>) -> Broadcast {
        self.target.rooms = boxed(rooms);
        self.target.except = boxed(except);
        self
    }

    /// Dropped for recipients that can't take it at once (never a stored one).
    pub fn volatile(mut self) -> Broadcast {
        self.volatile = self.offset.is_none();
        self
    }

    /// The namespace.
    pub(crate) fn nsp(&self) -> &str {
        &self.target.nsp
    }

    /// The target rooms (none: the whole namespace).
    pub(crate) fn rooms(&self) -> &[Box<str>] {
        &self.target.rooms
    }

    /// The rooms whose members are left out.
    pub(crate) fn except(&self) -> &[Box<str>] {
        &self.target.except
    }

    /// Whether recipients that can't take it at once miss it.
    pub(crate) fn is_volatile(&self) -> bool {
        self.volatile
    }

    /// The event's name and arguments, when kept (for observers and for publishing).
    pub(crate) fn event(&self) -> Option<(&str, &Args)> {
        self.packet.as_ref().map(|p| (&*p.event, &p.args))
    }
}

/// An event's name and arguments before encoding.
#[derive(Debug)]
pub(crate) struct EventPacket {
    pub(crate) event: Box<str>,
    pub(crate) args: Args,
}

/// Where a broadcast's acks go back to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckSpec {
    pub(crate) origin: Origin,
    pub(crate) request: RequestId,
    pub(crate) ack_id: u64,
    pub(crate) deadline: Instant,
}

/// A server-wide operation on the sockets a target selects (opaque outside this layer).
#[derive(Debug)]
pub struct Operation {
    pub(crate) target: Target,
    pub(crate) op: Op,
}

impl Operation {
    /// Makes the selected sockets of `nsp` (members of `rooms`, all if none, minus members of
    /// `except`) join `join`.
    pub fn join(nsp: &str, rooms: Vec<String>, except: Vec<String>, join: Vec<String>) -> Self {
        Operation::on(nsp, rooms, except, Op::Join(boxed(join)))
    }

    /// Makes the selected sockets leave `leave`.
    pub fn leave(nsp: &str, rooms: Vec<String>, except: Vec<String>, leave: Vec<String>) -> Self {
        Operation::on(nsp, rooms, except, Op::Leave(boxed(leave)))
    }

    /// Disconnects the selected sockets (with `close`, their whole connections).
    pub fn disconnect(nsp: &str, rooms: Vec<String>, except: Vec<String>, close: bool) -> Self {
        Operation::on(nsp, rooms, except, Op::Disconnect { close })
    }

    /// The namespace, the selected rooms and the excepted ones.
    pub(crate) fn target(&self) -> (&str, &[Box<str>], &[Box<str>]) {
        let target = &self.target;
        (&target.nsp, &target.rooms, &target.except)
    }

    /// What it does.
    pub(crate) fn op(&self) -> &Op {
        &self.op
    }

    fn on(nsp: &str, rooms: Vec<String>, except: Vec<String>, op: Op) -> Self {
        Operation {
            target: Target {
                nsp: nsp.into(),
                rooms: boxed(rooms),
                except: boxed(except),
            },
            op,
        }
    }
}

fn boxed(names: Vec<String>) -> Vec<Box<str>> {
    names.into_iter().map(String::into_boxed_str).collect()
}

#[derive(Debug)]
pub(crate) enum Op {
    /// Describe each socket.
    FetchSockets,
    /// Join each socket to these rooms.
    Join(Vec<Box<str>>),
    /// Take each socket out of these rooms.
    Leave(Vec<Box<str>>),
    /// Disconnect each socket from its namespace, or close its whole connection.
    Disconnect { close: bool },
    /// Name every room of the namespace (the target's rooms are ignored).
    AllRooms,
    /// Count the matching sockets (this process only: other nodes are never asked).
    Count,
    /// Hand over the kept session `pid` and what it missed after `offset` (connection state
    /// recovery; this process only).
    Restore { pid: Box<str>, offset: Box<str> },
}

/// One responder's answer to a request.
#[derive(Debug)]
pub enum Reply {
    /// A broadcast-with-ack reached this many sockets there (their acks follow).
    Recipients(usize),
    /// One recipient's ack.
    Ack(Message),
    /// Sockets described (fetch).
    Sockets(Vec<SocketInfo>),
    /// Room names (all rooms).
    Rooms(Vec<String>),
    /// Sockets acted on (join, leave, disconnect).
    Count(usize),
    /// The cluster's part: this many other nodes were asked, and answer one by one (each
    /// answer counts as one; a node's `Recipients` announces its acks, as a shard's does).
    Nodes(usize),
    /// The cluster could not be asked (Redis down or slow).
    Unavailable,
    /// A kept session and what it missed, from the shard that kept it.
    Restored(Box<super::recovery::Restored>),
}

/// Socket.IO's messages between shards.
#[derive(Debug)]
pub enum SocketIoMsg {
    /// Deliver to this shard's matching sockets.
    Broadcast(Arc<Broadcast>),
    /// Run an operation here and answer `origin`.
    Request {
        /// Where the answer goes.
        origin: Origin,
        /// The origin's request id.
        request: RequestId,
        /// What to do.
        operation: Arc<Operation>,
    },
    /// Run an operation here; nobody waits for an answer (another node's join, leave or
    /// disconnect).
    Apply(Arc<Operation>),
    /// An answer to a request (or to a broadcast's ack request) this shard sent.
    Reply {
        /// This shard's request id.
        request: RequestId,
        /// The answer.
        reply: Reply,
    },
}

/// Where broadcasts and requests go beyond this shard.
pub(crate) trait Adapter {
    /// How many responders besides this shard get what [`Adapter::send_all`] sends; `local`
    /// keeps to this process.
    fn responders(&self, local: bool) -> usize;
    /// Sends a message (made once per responder) to every responder.
    fn send_all(&self, msg: &dyn Fn() -> SocketIoMsg, local: bool);
    /// Sends a message (made once per shard) to the other shards of this process whose bits
    /// are set in `shards`.
    fn send_to_shards(&self, shards: u64, msg: &dyn Fn() -> SocketIoMsg);
    /// Sends an answer back to the responder a request came from.
    fn reply(&self, origin: Origin, msg: SocketIoMsg);
    /// Hands a broadcast of this shard's to other nodes, unless `local`; whether it does is
    /// [`Adapter::publishes`].
    fn publish(&self, broadcast: &Broadcast, local: bool);
    /// Whether broadcasts leave this process (they then keep their event for it).
    fn publishes(&self) -> bool;
    /// Tells the other nodes this process now serves namespace `nsp` too.
    fn serve(&self, nsp: &str);
    /// Asks the other nodes to run an operation of this shard's too, unless `local`.
    fn request(&self, operation: &Operation, local: bool);
    /// Counts the servers of namespace `nsp`: this process, and other nodes unless `local`
    /// (`None`: the cluster can't be asked now).
    fn server_count(&self, nsp: &str, local: bool) -> ServerCountFuture;
    /// Whether a question asked unless `local` goes to other nodes too (then they are one more
    /// responder, whose first answer is [`Reply::Nodes`]).
    fn asks_nodes(&self, local: bool) -> bool;
    /// Asks the other nodes a question whose answers go to this shard's `request`; resolves
    /// to how many nodes were asked (`None`: the cluster can't be asked now). Only called when
    /// [`Adapter::asks_nodes`].
    fn ask(&self, question: &Ask<'_>, request: RequestId) -> ServerCountFuture;
    /// Sends an event to the other nodes' server-side handlers, with no ack.
    fn server_event(&self, nsp: &str, event: &str, args: &Args);
    /// How long acks and operations wait when the application set no timeout.
    fn default_timeout(&self) -> Duration;
    /// Whether other nodes are told of this shard's rooms as they appear and empty
    /// ([`Adapter::room_changed`]).
    fn watches_rooms(&self) -> bool;
    /// Room `room` of namespace `nsp` got its first member on this shard (`created`), or
    /// lost its last.
    fn room_changed(&self, nsp: &str, room: &str, created: bool);
    /// Where questions to other nodes that time out are counted.
    fn timeouts(&self) -> Option<&Arc<AtomicU64>>;
    /// Connection state recovery across nodes and restarts, on a cluster with recovery on.
    fn shared_recovery(&self) -> Option<&dyn SharedRecovery>;
}

/// A question for the other nodes of a cluster.
pub enum Ask<'a> {
    /// Their part of a fetch or an all-rooms.
    Operation(&'a Operation),
    /// Deliver a broadcast and report its recipients and their acks within `timeout`.
    Broadcast(&'a Broadcast, Duration),
    /// Run their server-side handler of `event` and answer with its ack.
    ServerEvent {
        /// The namespace.
        nsp: &'a str,
        /// The event name.
        event: &'a str,
        /// Its arguments.
        args: &'a Args,
    },
}

/// How a shard reaches the other nodes of a cluster (lent by the shard; neither may block).
pub struct NodeHooks {
    /// Publishes a broadcast of this process.
    pub publish: Box<dyn Fn(&Broadcast)>,
    /// Serves a namespace this shard created (dynamic namespaces are created on first use).
    pub serve: Box<dyn Fn(&str)>,
    /// Asks the other nodes to apply an operation too (join, leave, disconnect).
    pub request: Box<dyn Fn(&Operation)>,
    /// Asks the other nodes a question answered to one request of this shard
    /// ([`Adapter::ask`]).
    pub ask: Box<AskFn>,
    /// Sends an event to the other nodes' server-side handlers ([`Adapter::server_event`]).
    pub server_event: Box<ServerEventFn>,
    /// How long questions to other nodes wait when the application set no timeout (the
    /// requests timeout, Node's `requestsTimeout`).
    pub timeout: Duration,
    /// Hears of each room this shard has members of as it appears (`true`) and empties, when
    /// the cluster subscribes per room (the sharded adapter's dynamic modes).
    pub rooms: Option<Box<RoomsFn>>,
    /// Counts the questions to other nodes that were not fully answered in time.
    pub timeouts: Arc<AtomicU64>,
    /// Counts the servers of namespace `nsp` in the cluster (this process as one), as Node
    /// counts them; `None` when the cluster can't be asked now.
    pub count: Box<dyn Fn(&str) -> ServerCountFuture>,
    /// Connection state recovery across nodes and restarts, when recovery is on.
    pub recovery: Option<Box<dyn SharedRecovery>>,
}

/// [`NodeHooks::ask`]: the question, and the request its answers go to.
pub type AskFn = dyn Fn(&Ask<'_>, RequestId) -> ServerCountFuture;

/// [`NodeHooks::server_event`]: the namespace, the event and its arguments.
pub type ServerEventFn = dyn Fn(&str, &str, &Args);

/// [`NodeHooks::rooms`]: the namespace, the room, and whether it appeared or emptied.
pub type RoomsFn = dyn Fn(&str, &str, bool);

/// What [`NodeHooks::count`] answers.
pub type ServerCountFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<usize>>>>;

/// The adapter of one process: every other shard, one bus message each.
pub(crate) struct ShardFanout {
    pub(crate) shard: ShardId,
    pub(crate) shards: u16,
    pub(crate) peers: Box<dyn Fn(ShardId, SocketIoMsg)>,
    /// Other nodes, when this process is part of a cluster.
    pub(crate) nodes: Option<NodeHooks>,
}

impl Adapter for ShardFanout {
    fn responders(&self, _local: bool) -> usize {
        self.shards as usize - 1
    }

    fn send_all(&self, msg: &dyn Fn() -> SocketIoMsg, _local: bool) {
        for shard in (0..self.shards).map(ShardId::new) {
            if shard != self.shard {
                (self.peers)(shard, msg());
            }
        }
    }

    fn send_to_shards(&self, shards: u64, msg: &dyn Fn() -> SocketIoMsg) {
        let others = shards & !(1u64 << self.shard.index());
        for shard in (0..self.shards).filter(|&shard| others & (1u64 << shard) != 0) {
            (self.peers)(ShardId::new(shard), msg());
        }
    }

    fn reply(&self, origin: Origin, msg: SocketIoMsg) {
        match origin {
            Origin::Shard(shard) => (self.peers)(shard, msg),
        }
    }

    fn publish(&self, broadcast: &Broadcast, local: bool) {
        if let (false, Some(nodes)) = (local, &self.nodes) {
            (nodes.publish)(broadcast);
        }
    }

    fn publishes(&self) -> bool {
        self.nodes.is_some()
    }

    fn serve(&self, nsp: &str) {
        if let Some(nodes) = &self.nodes {
            (nodes.serve)(nsp);
        }
    }

    fn request(&self, operation: &Operation, local: bool) {
        if let (false, Some(nodes)) = (local, &self.nodes) {
            (nodes.request)(operation);
        }
    }

    fn server_count(&self, nsp: &str, local: bool) -> ServerCountFuture {
        match (local, &self.nodes) {
            (false, Some(nodes)) => (nodes.count)(nsp),
            _ => Box::pin(std::future::ready(Some(1))),
        }
    }

    fn asks_nodes(&self, local: bool) -> bool {
        !local && self.nodes.is_some()
    }

    fn ask(&self, question: &Ask<'_>, request: RequestId) -> ServerCountFuture {
        match &self.nodes {
            Some(nodes) => (nodes.ask)(question, request),
            None => Box::pin(std::future::ready(Some(0))),
        }
    }

    fn server_event(&self, nsp: &str, event: &str, args: &Args) {
        if let Some(nodes) = &self.nodes {
            (nodes.server_event)(nsp, event, args);
        }
    }

    fn default_timeout(&self) -> Duration {
        self.nodes
            .as_ref()
            .map_or(DEFAULT_TIMEOUT, |nodes| nodes.timeout)
    }

    fn watches_rooms(&self) -> bool {
        self.nodes.as_ref().is_some_and(|n| n.rooms.is_some())
    }

    fn room_changed(&self, nsp: &str, room: &str, created: bool) {
        if let Some(rooms) = self.nodes.as_ref().and_then(|n| n.rooms.as_ref()) {
            rooms(nsp, room, created);
        }
    }

    fn timeouts(&self) -> Option<&Arc<AtomicU64>> {
        self.nodes.as_ref().map(|nodes| &nodes.timeouts)
    }

    fn shared_recovery(&self) -> Option<&dyn SharedRecovery> {
        self.nodes.as_ref()?.recovery.as_deref()
    }
}

/// A request that asks other nodes too: counts it when it ends before every answer came (a
/// slow shard of this process makes it time out too; either way the question went unanswered).
struct CountTimeouts {
    inner: Box<dyn Collector<Reply>>,
    timeouts: Arc<AtomicU64>,
}

impl Collector<Reply> for CountTimeouts {
    fn add(&mut self, reply: Reply) -> usize {
        self.inner.add(reply)
    }

    fn finish(self: Box<Self>, complete: bool) {
        if !complete {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.finish(complete);
    }
}

/// `collector`, counted in the cluster's timeouts when `asks` other nodes.
fn counting_timeouts(
    io: &SocketIo,
    asks: bool,
    collector: Box<dyn Collector<Reply>>,
) -> Box<dyn Collector<Reply>> {
    match io.adapter.timeouts() {
        Some(timeouts) if asks => Box::new(CountTimeouts {
            inner: collector,
            timeouts: timeouts.clone(),
        }),
        _ => collector,
    }
}

/// Merges the answers of an operation into a `T`, then hands it (or why it is missing) to
/// `done`.
pub(crate) struct OpCollector<T> {
    value: T,
    merge: fn(&mut T, Reply),
    done: Box<dyn FnOnce(Result<T, OpError>)>,
    /// The cluster could not be asked: the answer would miss other nodes' part.
    unavailable: bool,
}

impl<T> OpCollector<T> {
    pub(crate) fn new(
        value: T,
        merge: fn(&mut T, Reply),
        done: Box<dyn FnOnce(Result<T, OpError>)>,
    ) -> OpCollector<T> {
        OpCollector {
            value,
            merge,
            done,
            unavailable: false,
        }
    }
}

impl<T> Collector<Reply> for OpCollector<T> {
    fn add(&mut self, reply: Reply) -> usize {
        match reply {
            Reply::Nodes(asked) => return asked,
            Reply::Unavailable => self.unavailable = true,
            reply => (self.merge)(&mut self.value, reply),
        }
        0
    }

    fn finish(self: Box<Self>, complete: bool) {
        let OpCollector {
            value,
            done,
            unavailable,
            ..
        } = *self;
        let outcome = match (complete, unavailable) {
            (_, true) => Err(OpError::ClusterUnavailable),
            (true, false) => Ok(value),
            (false, false) => Err(OpError::Timeout),
        };
        contain("operation", || done(outcome));
    }
}

/// Runs finished requests' completions (with no borrow held).
pub(crate) fn finish(finished: impl IntoIterator<Item = Finished<Reply>>) {
    finished.into_iter().for_each(Finished::run);
}

/// Sends a broadcast to every responder and delivers it here; returns the recipients here.
pub(crate) fn broadcast(io: &Rc<SocketIo>, broadcast: Broadcast, local: bool) -> usize {
    io.traffic.borrow_mut().broadcasts_local += 1;
    let ack = broadcast.ack;
    let request = ack.map(|spec| spec.request);
    let shared = Arc::new(broadcast);
    // Node's order: publish, then deliver. A broadcast that waits for acks asks the other
    // nodes instead, once it knows how many there are (they answer to its request).
    match ack {
        None => {
            io.adapter.publish(&shared, local);
            log_shared(io, &shared, local);
        }
        Some(spec) if io.adapter.asks_nodes(local) => {
            let timeout = spec.deadline.saturating_duration_since(io.now());
            ask_nodes(io, &Ask::Broadcast(&shared, timeout), spec.request);
        }
        Some(_) => {}
    }
    // A plain broadcast to rooms goes only to the shards with members of them.
    let shards = match (&io.directory, ack) {
        (Some(directory), None) if !shared.rooms().is_empty() => {
            directory.shards_of(shared.nsp(), shared.rooms())
        }
        _ => None,
    };
    let msg = || SocketIoMsg::Broadcast(shared.clone());
    match shards {
        Some(shards) => io.adapter.send_to_shards(shards, &msg),
        None => io.adapter.send_all(&msg, local),
    }
    let count = deliver_local(io, &shared);
    if let Some(request) = request {
        let done = io
            .gather
            .borrow_mut()
            .answer(request, Reply::Recipients(count));
        finish(done);
    }
    count
}

/// Appends a stored broadcast of this node's to the cluster's log, when there is one.
fn log_shared(io: &SocketIo, broadcast: &Broadcast, local: bool) {
    let Some(shared) = io.adapter.shared_recovery() else {
        return;
    };
    let (Some(offset), Some((event, args))) = (&broadcast.offset, broadcast.event()) else {
        return;
    };
    shared.log(&Logged {
        nsp: broadcast.nsp(),
        offset,
        rooms: broadcast.rooms(),
        except: broadcast.except(),
        local,
        event,
        args,
    });
}

/// Starts gathering the acks of a broadcast about to be sent: its request id, to put in the
/// broadcast's [`AckSpec`].
pub(crate) fn expect_acks(
    io: &SocketIo,
    local: bool,
    deadline: Instant,
    callback: super::ack::CountedAcks,
) -> RequestId {
    // Every responder and this shard report their recipients first (the cluster, how many
    // nodes it asked).
    let nodes = usize::from(io.adapter.asks_nodes(local));
    let responders = io.adapter.responders(local) + 1 + nodes;
    let collector = counting_timeouts(io, nodes > 0, Box::new(AckCollector::new(callback)));
    let (request, _) = io
        .gather
        .borrow_mut()
        .start(responders, deadline, collector);
    request
}

/// Runs an operation on every responder and here; `collector` gets the merged answers.
pub(crate) fn operate(
    io: &Rc<SocketIo>,
    operation: Operation,
    local: bool,
    deadline: Instant,
    collector: Box<dyn Collector<Reply>>,
) {
    // Other nodes are asked for their sockets and rooms; they hear of joins, leaves and
    // disconnects but answer nothing (as in Node, whose socketsJoin returns nothing).
    let asks =
        io.adapter.asks_nodes(local) && matches!(operation.op, Op::FetchSockets | Op::AllRooms);
    let responders = io.adapter.responders(local) + 1 + usize::from(asks);
    let collector = counting_timeouts(io, asks, collector);
    let (request, _) = io
        .gather
        .borrow_mut()
        .start(responders, deadline, collector);
    let shared = Arc::new(operation);
    if asks {
        ask_nodes(io, &Ask::Operation(&shared), request);
    } else {
        io.adapter.request(&shared, local);
    }
    let origin = io.origin();
    io.adapter.send_all(
        &|| SocketIoMsg::Request {
            origin,
            request,
            operation: shared.clone(),
        },
        local,
    );
    let reply = run_operation(io, &shared);
    let done = io.gather.borrow_mut().answer(request, reply);
    finish(done);
}

/// Asks the other nodes `question` for `request`; once the cluster says how many nodes it
/// asked (or that it can't be asked), that is the cluster's first answer to the request.
pub(crate) fn ask_nodes(io: &Rc<SocketIo>, question: &Ask<'_>, request: RequestId) {
    let asked = io.adapter.ask(question, request);
    let io_ref = Rc::downgrade(io);
    io.spawn(Box::pin(async move {
        let reply = asked.await.map_or(Reply::Unavailable, Reply::Nodes);
        let Some(io) = io_ref.upgrade() else {
            return;
        };
        let done = io.gather.borrow_mut().answer(request, reply);
        finish(done);
    }));
}

/// Sends an event to the other nodes' server-side handlers; with `callback`, gathers each
/// node's ack (this process is one server: its own handlers are not called).
pub(crate) fn server_event(
    io: &Rc<SocketIo>,
    nsp: &str,
    event: &str,
    args: &Args,
    local: bool,
    ack: Option<(Instant, Box<dyn Collector<Reply>>)>,
) {
    let Some((deadline, collector)) = ack else {
        if !local {
            io.adapter.server_event(nsp, event, args);
        }
        return;
    };
    let asks = io.adapter.asks_nodes(local);
    let collector = counting_timeouts(io, asks, collector);
    let (request, done) = io
        .gather
        .borrow_mut()
        .start(usize::from(asks), deadline, collector);
    finish(done);
    if asks {
        ask_nodes(io, &Ask::ServerEvent { nsp, event, args }, request);
    }
}

pub(super) fn on_peer_message(io: &Rc<SocketIo>, msg: SocketIoMsg) {
    match msg {
        SocketIoMsg::Broadcast(broadcast) => {
            {
                let mut traffic = io.traffic.borrow_mut();
                if broadcast.from_node {
                    traffic.broadcasts_remote += 1;
                } else {
                    traffic.broadcasts_cross_shard += 1;
                }
            }
            let count = deliver_local(io, &broadcast);
            if let Some(spec) = broadcast.ack {
                let reply = Reply::Recipients(count);
                io.adapter.reply(
                    spec.origin,
                    SocketIoMsg::Reply {
                        request: spec.request,
                        reply,
                    },
                );
            }
        }
        SocketIoMsg::Request {
            origin,
            request,
            operation,
        } => {
            let reply = run_operation(io, &operation);
            io.adapter
                .reply(origin, SocketIoMsg::Reply { request, reply });
        }
        SocketIoMsg::Apply(operation) => {
            run_operation(io, &operation);
        }
        SocketIoMsg::Reply { request, reply } => {
            let done = io.gather.borrow_mut().answer(request, reply);
            finish(done);
        }
    }
}

/// A recipient's ack for a broadcast-with-ack: to the gather here, or back to the origin.
pub(crate) fn forward_ack(io: &SocketIo, origin: Origin, request: RequestId, message: Message) {
    if origin == io.origin() {
        let done = io.gather.borrow_mut().answer(request, Reply::Ack(message));
        finish(done);
    } else {
        let reply = Reply::Ack(message);
        io.adapter
            .reply(origin, SocketIoMsg::Reply { request, reply });
    }
}

/// Delivers a broadcast to this shard's matching sockets; registers acks if requested.
/// Returns the number of recipients.
pub(crate) fn deliver_local(io: &Rc<SocketIo>, broadcast: &Broadcast) -> usize {
    if let (Some(recovery), Some(offset)) = (&io.recovery, &broadcast.offset) {
        let target = &broadcast.target;
        recovery.borrow_mut().store(
            &target.nsp,
            offset.clone(),
            &target.rooms,
            &target.except,
            &broadcast.frames,
            io.now(),
        );
    }
    let mut targets = Vec::new();
    // Sized for a small room at once (growing it costs a reallocation per doubling).
    let mut sessions = Vec::with_capacity(16);
    // Only a broadcast that waits for acks (or that an observer watches) needs to know which
    // sockets got it.
    let plain = broadcast.ack.is_none() && !broadcast.volatile;
    let observed = broadcast.packet.as_ref().is_some_and(|packet| {
        io.observer
            .as_ref()
            .is_some_and(|observer| observer.watches_recipients(&packet.event))
    });
    {
        let mut state = io.state.borrow_mut();
        let Some(ns) = state.namespace_index(&broadcast.target.nsp) else {
            return 0;
        };
        let target = &broadcast.target;
        state.for_each_target(ns, &target.rooms, &target.except, |socket, session| {
            if plain {
                sessions.push(session);
                if observed {
                    targets.push((socket, session));
                }
            } else {
                targets.push((socket, session));
            }
        });
    }
    if plain {
        if sessions.is_empty() {
            return 0;
        }
        let count = io
            .engine
            .borrow_mut()
            .send_many(sessions, &broadcast.frames);
        io.traffic.borrow_mut().deliveries += count as u64;
        notify_sent(io, broadcast, &targets, count);
        return count;
    }
    let mut delivered = Vec::with_capacity(targets.len());
    for &(socket, session) in &targets {
        if io
            .send_frames(session, &broadcast.frames, broadcast.volatile)
            .is_ok()
        {
            delivered.push((socket, session));
            if let Some(spec) = broadcast.ack {
                let handler = AckHandler::Broadcast {
                    origin: spec.origin,
                    request: spec.request,
                    sent: io.now(),
                };
                io.state
                    .borrow_mut()
                    .add_ack(socket, spec.ack_id, handler, Some(spec.deadline));
            }
        }
    }
    io.traffic.borrow_mut().deliveries += delivered.len() as u64;
    // Sockets collected for acks are told one by one only if the observer watches them.
    let watched = broadcast.packet.as_ref().is_some_and(|packet| {
        io.observer
            .as_ref()
            .is_some_and(|o| o.watches_recipients(&packet.event))
    });
    let told: &[_] = if watched { &delivered } else { &[] };
    notify_sent(io, broadcast, told, delivered.len());
    delivered.len()
}

/// Tells the observer which sockets a broadcast was sent to (collected only if it watches
/// recipients), or how many.
fn notify_sent(
    io: &Rc<SocketIo>,
    broadcast: &Broadcast,
    sockets: &[(SocketKey, SessionKey)],
    count: usize,
) {
    let (Some(observer), Some(packet)) = (&io.observer, &broadcast.packet) else {
        return;
    };
    if sockets.is_empty() {
        if count > 0 {
            contain("observer", || {
                observer.broadcast_sent(&packet.event, &packet.args, count)
            });
        }
        return;
    }
    for &(socket, _) in sockets {
        if let Some(handle) = io.handle(socket) {
            contain("observer", || {
                observer.event_sent(&handle, &packet.event, &packet.args)
            });
        }
    }
}

/// The sockets a target selects on this shard.
fn targets(io: &SocketIo, target: &Target) -> Vec<SocketKey> {
    let mut state = io.state.borrow_mut();
    let Some(ns) = state.namespace_index(&target.nsp) else {
        return Vec::new();
    };
    let mut sockets = Vec::new();
    state.for_each_target(ns, &target.rooms, &target.except, |socket, _| {
        sockets.push(socket)
    });
    sockets
}

/// Runs an operation on this shard's sockets.
fn run_operation(io: &Rc<SocketIo>, operation: &Operation) -> Reply {
    let target = &operation.target;
    match &operation.op {
        Op::FetchSockets => {
            let sockets = targets(io, target);
            Reply::Sockets(sockets.iter().filter_map(|&s| describe(io, s)).collect())
        }
        Op::Join(rooms) => {
            let sockets = targets(io, target);
            for &socket in &sockets {
                for room in rooms {
                    dispatch::join(io, socket, room, usize::MAX);
                }
            }
            Reply::Count(sockets.len())
        }
        Op::Leave(rooms) => {
            let sockets = targets(io, target);
            for &socket in &sockets {
                for room in rooms {
                    dispatch::leave(io, socket, room);
                }
            }
            Reply::Count(sockets.len())
        }
        Op::Disconnect { close } => {
            let sockets = targets(io, target);
            for &socket in &sockets {
                if *close {
                    let session = io.state.borrow().socket(socket).map(|s| s.session);
                    if let Some(session) = session {
                        io.engine
                            .borrow_mut()
                            .close(session, CloseReason::ServerClose);
                    }
                } else {
                    dispatch::disconnect_socket(io, socket);
                }
            }
            Reply::Count(sockets.len())
        }
        Op::Count => Reply::Count(targets(io, target).len()),
        Op::Restore { pid, offset } => {
            let restored = io
                .recovery
                .as_ref()
                .and_then(|r| r.borrow_mut().restore(&target.nsp, pid, offset, io.now()));
            match restored {
                Some(restored) => Reply::Restored(Box::new(restored)),
                None => Reply::Count(0),
            }
        }
        Op::AllRooms => {
            let state = io.state.borrow();
            let rooms = state
                .namespace_index(&target.nsp)
                .map(|ns| {
                    state.namespaces[ns]
                        .rooms
                        .names()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Reply::Rooms(rooms)
        }
    }
}

/// What `fetch_sockets` tells of one socket.
fn describe(io: &SocketIo, socket: SocketKey) -> Option<SocketInfo> {
    let (id, nsp, rooms, auth, data, session) = {
        let state = io.state.borrow();
        let entry = state.socket(socket)?;
        (
            entry.id.to_string(),
            state.namespaces[entry.ns].name.to_string(),
            entry.rooms.iter().map(|r| r.to_string()).collect(),
            entry.auth.clone(),
            entry
                .data
                .as_deref()
                .map(super::socket::parse_data)
                .unwrap_or_default(),
            entry.session,
        )
    };
    let engine = io.engine.borrow();
    let handshake = HandshakeInfo {
        query: engine.query(session).unwrap_or_default().to_owned(),
        address: engine.address(session),
        auth: serde_json::from_slice(&auth).unwrap_or_default(),
        protocol: match engine.version(session) {
            Some(Version::V3) => 4,
            _ => 5,
        },
    };
    Some(SocketInfo {
        id,
        nsp,
        rooms,
        handshake,
        data,
        shard: Some(io.shard),
    })
}
