//! One shard's Socket.IO state (clients, sockets, namespaces, pending acks, deadlines) and the
//! handling of every inbound packet and peer message.
//!
//! Borrow discipline: `Io::state` and `Io::engine` are borrowed only for short, non-nested
//! spans; user handlers are always called with no borrow held, so they may emit, join or
//! disconnect freely.

use std::any::Any;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use slab::Slab;

use super::message::{encode_packet, Message};
use super::namespace::{percent_decode, ConnectError, Handshake, Namespace};
use super::socket::{AckError, AckSender, Socket};
use super::{Broadcast, DisconnectReason, Io, IoMsg, EMPTY_AUTH};
use crate::codec::eio::Version;
use crate::codec::json;
use crate::codec::sio::{self, Assembler, PacketType};
use crate::engine::{CloseReason, SessionKey};
use crate::id::{Id, RandomPool};
use crate::rooms::Rooms;

/// A socket's slab key on its shard.
pub(crate) type SocketKey = u32;

/// What runs when every ack of a broadcast arrived (or the deadline passed).
pub(crate) type AggregateCallback = Box<dyn FnOnce(Result<Vec<Message>, (AckError, Vec<Message>)>)>;

/// What runs when an ack arrives (or its deadline passes).
pub(crate) enum AckHandler {
    /// A handler on this shard.
    Local(Box<dyn FnOnce(Result<Message, AckError>)>),
    /// A recipient of a broadcast-with-ack sent from this shard.
    Aggregate(u64),
    /// A recipient of a broadcast-with-ack sent from another shard.
    Remote { origin: u16, request: u64 },
}

pub(crate) struct SocketState {
    pub(crate) id: Arc<str>,
    pub(crate) ns: usize,
    pub(crate) session: SessionKey,
    /// The rooms it is in (from the start, the room named by its id); the names are shared
    /// with the room index.
    pub(crate) rooms: Vec<Arc<str>>,
    /// Pending acks by id. A B-tree, not a hash map: empty it allocates nothing and takes half
    /// the room, and most sockets never wait for an ack.
    pub(crate) acks: BTreeMap<u64, AckHandler>,
    pub(crate) auth: Bytes,
    /// The application's value for this socket (`Socket::set_data`).
    pub(crate) data: Option<Box<dyn Any>>,
}

struct Client {
    version: Version,
    /// (namespace index, socket) for every namespace joined.
    sockets: Vec<(usize, SocketKey)>,
    /// Namespaces whose CONNECT waits for asynchronous middleware.
    connecting: Vec<usize>,
    /// A binary packet waiting for its attachments (boxed: rare, and large next to the rest).
    assembling: Option<Box<Assembler>>,
    /// Close the session if no namespace is joined by then.
    connect_deadline: Option<Instant>,
}

/// Clients by session key. Session keys are the engine's slab keys (small, dense, reused), so a
/// vector indexed by them holds each client in one slot, smaller than a hash map would.
#[derive(Default)]
struct Clients(Vec<Option<Client>>);

impl Clients {
    fn get(&self, session: SessionKey) -> Option<&Client> {
        self.0.get(session as usize)?.as_ref()
    }

    fn get_mut(&mut self, session: SessionKey) -> Option<&mut Client> {
        self.0.get_mut(session as usize)?.as_mut()
    }

    fn insert(&mut self, session: SessionKey, client: Client) {
        let index = session as usize;
        if index >= self.0.len() {
            self.0.resize_with(index + 1, || None);
        }
        self.0[index] = Some(client);
    }

    fn remove(&mut self, session: SessionKey) -> Option<Client> {
        self.0.get_mut(session as usize)?.take()
    }
}

pub(crate) struct Nsp {
    pub(crate) name: Arc<str>,
    pub(crate) def: Arc<Namespace>,
    pub(crate) rooms: Rooms,
    pub(crate) members: HashSet<SocketKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Connect(SessionKey),
    Ack(SocketKey, u64),
    Aggregate(u64),
}

/// The origin side of a broadcast that waits for every recipient's ack.
struct Aggregate {
    /// Recipients counted so far (this shard plus the shards that answered).
    expected: usize,
    /// Shards that have not reported their count yet.
    shards_pending: usize,
    responses: Vec<Message>,
    callback: AggregateCallback,
}

/// What the Socket.IO layer of a shard holds (see `Io::counts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    /// Engine.IO sessions known to Socket.IO.
    pub clients: usize,
    /// Sockets (a client's connection to one namespace).
    pub sockets: usize,
    /// Rooms with members, every namespace's (each socket's own room included).
    pub rooms: usize,
    /// Pending connect, ack and aggregate deadlines that still mean something.
    pub timers: usize,
}

pub(crate) struct State {
    shard: u16,
    shards: u16,
    pub(crate) namespaces: Vec<Nsp>,
    by_name: HashMap<Arc<str>, usize>,
    clients: Clients,
    pub(crate) sockets: Slab<SocketState>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    next_ack: u64,
    aggregates: HashMap<u64, Aggregate>,
    next_request: u64,
    random: RandomPool,
}

impl State {
    pub(crate) fn new(shard: u16, shards: u16) -> State {
        State {
            shard,
            shards,
            namespaces: Vec::new(),
            by_name: HashMap::new(),
            clients: Clients::default(),
            sockets: Slab::new(),
            timers: BinaryHeap::new(),
            next_ack: 0,
            aggregates: HashMap::new(),
            next_request: 0,
            random: RandomPool::new(),
        }
    }

    pub(crate) fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// With no client left, gives back what the busiest moment grew (client and socket tables,
    /// room indexes, timers). False if any client is left.
    pub(crate) fn release_idle_memory(&mut self) -> bool {
        if self.clients.0.iter().any(Option::is_some) || !self.sockets.is_empty() {
            return false;
        }
        self.clients = Clients::default();
        self.sockets = Slab::new();
        self.timers
            .retain(|Reverse(t)| matches!(t.1, Timer::Aggregate(_)));
        self.timers.shrink_to_fit();
        for nsp in &mut self.namespaces {
            nsp.rooms.shrink_if_empty();
            nsp.members.shrink_to_fit();
        }
        true
    }

    /// Sockets, clients, rooms and live timers on this shard.
    pub(crate) fn counts(&self) -> IoCounts {
        IoCounts {
            clients: self.clients.0.iter().flatten().count(),
            sockets: self.sockets.len(),
            rooms: self.namespaces.iter().map(|nsp| nsp.rooms.len()).sum(),
            timers: self
                .timers
                .iter()
                .filter(|Reverse(t)| self.is_live(t))
                .count(),
        }
    }

    /// Whether a timer entry still means something: its client, ack or aggregate is there.
    fn is_live(&self, (at, timer): &(Instant, Timer)) -> bool {
        match *timer {
            Timer::Connect(session) => self
                .clients
                .get(session)
                .is_some_and(|c| c.connect_deadline == Some(*at)),
            Timer::Ack(socket, id) => self
                .sockets
                .get(socket as usize)
                .is_some_and(|s| s.acks.contains_key(&id)),
            Timer::Aggregate(request) => self.aggregates.contains_key(&request),
        }
    }

    /// Adds a timer; past a bound, sweeps out entries whose target is gone (they would
    /// otherwise wait until they come due, many more than the live ones under churn).
    fn push_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
        let live_bound = 2 * (self.sockets.len() + self.aggregates.len()) + 1024;
        if self.timers.len() > live_bound + self.clients.0.len() {
            let mut timers = std::mem::take(&mut self.timers);
            timers.retain(|Reverse(t)| self.is_live(t));
            self.timers = timers;
        }
    }

    /// An ack id no other shard hands out (ids interleave by shard), below 2^53.
    pub(crate) fn next_ack_id(&mut self) -> u64 {
        let id = self.next_ack * self.shards as u64 + self.shard as u64;
        self.next_ack = (self.next_ack + 1) % (1 << 40);
        id
    }

    pub(crate) fn namespace_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn namespace_or_create(&mut self, io: &Io, name: &str) -> Option<usize> {
        if let Some(&index) = self.by_name.get(name) {
            return Some(index);
        }
        let def = io.namespaces.resolve(name)?;
        let name: Arc<str> = Arc::from(name);
        self.namespaces.push(Nsp {
            name: name.clone(),
            def,
            rooms: Rooms::default(),
            members: HashSet::new(),
        });
        let index = self.namespaces.len() - 1;
        self.by_name.insert(name, index);
        Some(index)
    }

    pub(crate) fn add_ack(
        &mut self,
        socket: SocketKey,
        ack_id: u64,
        handler: AckHandler,
        deadline: Option<Instant>,
    ) {
        if let Some(state) = self.sockets.get_mut(socket as usize) {
            state.acks.insert(ack_id, handler);
            if let Some(deadline) = deadline {
                self.push_timer(deadline, Timer::Ack(socket, ack_id));
            }
        }
    }

    /// Removes and returns the handler waiting for `ack_id` on `socket`.
    fn take_ack(&mut self, socket: SocketKey, ack_id: u64) -> Option<AckHandler> {
        self.sockets.get_mut(socket as usize)?.acks.remove(&ack_id)
    }

    /// Registers the origin side of a broadcast-with-ack; returns its request id.
    pub(crate) fn add_aggregate(
        &mut self,
        shards_pending: usize,
        deadline: Instant,
        callback: AggregateCallback,
    ) -> u64 {
        let request = self.next_request;
        self.next_request += 1;
        self.aggregates.insert(
            request,
            Aggregate {
                expected: 0,
                shards_pending,
                responses: Vec::new(),
                callback,
            },
        );
        self.push_timer(deadline, Timer::Aggregate(request));
        request
    }

    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Adds `count` expected acks and reports whether the broadcast is now complete.
    fn aggregate_count(
        &mut self,
        request: u64,
        count: usize,
        shard_report: bool,
    ) -> Option<Aggregate> {
        let aggregate = self.aggregates.get_mut(&request)?;
        aggregate.expected += count;
        if shard_report {
            aggregate.shards_pending = aggregate.shards_pending.saturating_sub(1);
        }
        self.take_if_complete(request)
    }

    fn aggregate_response(&mut self, request: u64, message: Message) -> Option<Aggregate> {
        self.aggregates.get_mut(&request)?.responses.push(message);
        self.take_if_complete(request)
    }

    fn take_if_complete(&mut self, request: u64) -> Option<Aggregate> {
        let aggregate = self.aggregates.get(&request)?;
        if aggregate.shards_pending == 0 && aggregate.responses.len() >= aggregate.expected {
            return self.aggregates.remove(&request);
        }
        None
    }

    /// Joins `socket` to `room` (an `Arc<str>` the caller holds is shared, not copied). False
    /// if the socket is gone, or is in `max_rooms` rooms already and not in this one.
    pub(crate) fn join(
        &mut self,
        socket: SocketKey,
        room: impl AsRef<str> + Into<Arc<str>>,
        max_rooms: usize,
    ) -> bool {
        let Some(state) = self.sockets.get_mut(socket as usize) else {
            return false;
        };
        if state.rooms.len() >= max_rooms {
            return state.rooms.iter().any(|r| **r == *room.as_ref());
        }
        if let Some(name) = self.namespaces[state.ns].rooms.join_shared(room, socket) {
            state.rooms.push(name);
        }
        true
    }

    pub(crate) fn leave(&mut self, socket: SocketKey, room: &str) {
        let Some(state) = self.sockets.get_mut(socket as usize) else {
            return;
        };
        if self.namespaces[state.ns].rooms.leave(room, socket) {
            state.rooms.retain(|r| &**r != room);
        }
    }

    /// Calls `visit(socket, session)` for every local target of a broadcast.
    pub(crate) fn for_each_target(
        &mut self,
        ns: usize,
        rooms: &[Box<str>],
        except: &[Box<str>],
        mut visit: impl FnMut(SocketKey, SessionKey),
    ) {
        let Some(nsp) = self.namespaces.get_mut(ns) else {
            return;
        };
        let sockets = &self.sockets;
        let members = nsp.members.iter().copied();
        nsp.rooms.for_each_target(rooms, except, members, |key| {
            if let Some(state) = sockets.get(key as usize) {
                visit(key, state.session);
            }
        });
    }
}

/// Runs application code. A panic is contained (and logged) so that one faulty handler can't
/// take down the shard and every other client on it; `None` tells the caller it panicked.
fn contain<T>(what: &'static str, run: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::error!(handler = what, "an application handler panicked");
            None
        }
    }
}

// -------------------------------------------------------------------------------------------
// Engine events

pub(super) fn on_open(io: &Rc<Io>, session: SessionKey) {
    let Some(version) = io.engine.borrow().version(session) else {
        return;
    };
    let deadline = io.now() + io.config.connect_timeout;
    {
        let mut state = io.state.borrow_mut();
        state.clients.insert(
            session,
            Client {
                version,
                // Room for one namespace, the usual case.
                sockets: Vec::with_capacity(1),
                connecting: Vec::new(),
                assembling: None,
                connect_deadline: Some(deadline),
            },
        );
        state.push_timer(deadline, Timer::Connect(session));
    }
    if version == Version::V3 {
        // Protocol 4 clients are connected to the main namespace implicitly.
        connect(io, session, "/", Bytes::new(), Bytes::new());
    }
}

pub(super) fn on_text(io: &Rc<Io>, session: SessionKey, text: Bytes) {
    let assembling = io
        .state
        .borrow()
        .clients
        .get(session)
        .is_some_and(|c| c.assembling.is_some());
    if assembling {
        return protocol_error(io, session);
    }
    let packet = match sio::decode(text, io.config.max_attachments) {
        Ok(packet) => packet,
        Err(_) => return protocol_error(io, session),
    };
    // `sio::decode` has already checked the placeholders against the attachment count.
    if packet.kind.is_binary() && packet.attachments > 0 {
        if let Some(client) = io.state.borrow_mut().clients.get_mut(session) {
            client.assembling = Some(Box::new(Assembler::new(packet)));
        }
        return;
    }
    dispatch(io, session, packet, Vec::new());
}

pub(super) fn on_binary(io: &Rc<Io>, session: SessionKey, data: Bytes) {
    let complete = {
        let mut state = io.state.borrow_mut();
        let Some(client) = state.clients.get_mut(session) else {
            return;
        };
        match client.assembling.as_mut() {
            None => None,
            Some(assembler) => {
                if assembler.push(data) {
                    client.assembling.take().map(|assembler| assembler.finish())
                } else {
                    return;
                }
            }
        }
    };
    match complete {
        Some((packet, attachments)) => dispatch(io, session, packet, attachments),
        None => protocol_error(io, session),
    }
}

pub(super) fn on_close(io: &Rc<Io>, session: SessionKey, reason: DisconnectReason) {
    let client = io.state.borrow_mut().clients.remove(session);
    let Some(client) = client else {
        return;
    };
    for (_, socket) in client.sockets {
        remove_socket(io, socket, reason);
    }
}

/// A peer broke the Socket.IO protocol: its whole session is closed.
fn protocol_error(io: &Rc<Io>, session: SessionKey) {
    io.engine
        .borrow_mut()
        .close(session, CloseReason::ParseError);
}

fn dispatch(io: &Rc<Io>, session: SessionKey, packet: sio::Packet, attachments: Vec<Bytes>) {
    let nsp = packet.nsp_str().to_owned();
    match packet.kind {
        PacketType::Connect => {
            let auth = packet.data.clone();
            connect(io, session, &nsp, auth, packet.query.clone())
        }
        PacketType::Disconnect => {
            let socket = find_socket(io, session, &nsp);
            match socket {
                Some(socket) => {
                    detach_from_client(io, session, socket);
                    remove_socket(io, socket, DisconnectReason::ClientNamespaceDisconnect);
                }
                None => protocol_error(io, session),
            }
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let Some(socket) = find_socket(io, session, &nsp) else {
                return protocol_error(io, session);
            };
            on_event(io, socket, packet, attachments)
        }
        PacketType::Ack | PacketType::BinaryAck => {
            let Some(socket) = find_socket(io, session, &nsp) else {
                return protocol_error(io, session);
            };
            let Some(ack_id) = packet.ack_id else {
                return protocol_error(io, session);
            };
            let message = Message::new(packet.data, packet.elements, attachments);
            on_ack(io, socket, ack_id, message)
        }
        PacketType::ConnectError => protocol_error(io, session),
    }
}

fn find_socket(io: &Io, session: SessionKey, nsp: &str) -> Option<SocketKey> {
    let state = io.state.borrow();
    let ns = state.namespace_index(nsp)?;
    let client = state.clients.get(session)?;
    client
        .sockets
        .iter()
        .find(|(n, _)| *n == ns)
        .map(|&(_, socket)| socket)
}

fn connect(io: &Rc<Io>, session: SessionKey, nsp: &str, auth: Bytes, query: Bytes) {
    let (version, ns) = {
        let mut state = io.state.borrow_mut();
        let Some(version) = state.clients.get(session).map(|c| c.version) else {
            return;
        };
        (version, state.namespace_or_create(io, nsp))
    };
    let Some(ns) = ns else {
        let data = br#"{"message":"Invalid namespace"}"#;
        let frames = encode_packet(PacketType::ConnectError, nsp, None, data, &[]);
        io.send_frames(session, &frames, false);
        return;
    };
    let busy = io
        .state
        .borrow()
        .clients
        .get(session)
        .is_some_and(|c| c.sockets.iter().any(|(n, _)| *n == ns) || c.connecting.contains(&ns));
    if busy {
        return protocol_error(io, session);
    }
    let joined = io
        .state
        .borrow()
        .clients
        .get(session)
        .map_or(0, |c| c.sockets.len() + c.connecting.len());
    if joined >= io.config.max_namespaces_per_client {
        let error = ConnectError::new("Too many namespaces");
        return refuse(io, session, version, nsp, &error);
    }
    let auth = match version {
        Version::V4 if auth.is_empty() => EMPTY_AUTH,
        Version::V4 if json::is_object(&auth) => auth,
        Version::V4 => return protocol_error(io, session),
        Version::V3 => query_to_json(&query),
    };
    let def = io.state.borrow().namespaces[ns].def.clone();
    let (query, address, engine_id) = {
        let engine = io.engine.borrow();
        (
            engine.query(session).unwrap_or_default().into(),
            engine.address(session),
            engine.id(session),
        )
    };
    let Some(engine_id) = engine_id else {
        return;
    };
    let handshake = Handshake {
        nsp: io.state.borrow().namespaces[ns].name.clone(),
        auth,
        protocol: if version == Version::V3 { 4 } else { 5 },
        query,
        address,
    };
    for middleware in &def.middlewares {
        let verdict = contain("middleware", || middleware(&handshake))
            .unwrap_or_else(|| Err(ConnectError::new("server error")));
        if let Err(error) = verdict {
            return refuse(io, session, version, &handshake.nsp, &error);
        }
    }
    if def.async_middlewares.is_empty() {
        return admit(io, session, version, ns, handshake);
    }
    // Asynchronous middleware: the connection waits in `connecting` until they all agree.
    if let Some(client) = io.state.borrow_mut().clients.get_mut(session) {
        client.connecting.push(ns);
    }
    let task_io = io.clone();
    io.spawn(Box::pin(async move {
        let mut verdict = Ok(());
        for middleware in &def.async_middlewares {
            let check = contain("middleware", || middleware(handshake.clone()));
            verdict = match check {
                Some(check) => check.await,
                None => Err(ConnectError::new("server error")),
            };
            if verdict.is_err() {
                break;
            }
        }
        let io = task_io;
        // The client may have gone (or its session key been reused) while we waited.
        let same_session = io.engine.borrow().id(session) == Some(engine_id);
        let waiting = io
            .state
            .borrow_mut()
            .clients
            .get_mut(session)
            .is_some_and(|c| {
                let position = c.connecting.iter().position(|&n| n == ns);
                position.map(|p| c.connecting.swap_remove(p)).is_some()
            });
        if !(same_session && waiting) {
            return;
        }
        match verdict {
            Ok(()) => admit(&io, session, version, ns, handshake),
            Err(error) => refuse(&io, session, version, &handshake.nsp, &error),
        }
    }));
}

/// Answers a refused CONNECT: `{"message","data"}` for protocol 5, a bare string for 4.
fn refuse(io: &Io, session: SessionKey, version: Version, nsp: &str, error: &ConnectError) {
    let mut data = Vec::new();
    match version {
        Version::V4 => {
            data.extend_from_slice(br#"{"message":"#);
            json::write_str(&mut data, &error.message);
            if let Some(extra) = &error.data {
                data.extend_from_slice(br#","data":"#);
                data.extend_from_slice(extra);
            }
            data.push(b'}');
        }
        Version::V3 => json::write_str(&mut data, &error.message),
    }
    let frames = encode_packet(PacketType::ConnectError, nsp, None, &data, &[]);
    io.send_frames(session, &frames, false);
}

/// Creates the socket, answers the CONNECT and runs the connect handler.
fn admit(io: &Rc<Io>, session: SessionKey, version: Version, ns: usize, handshake: Handshake) {
    let name = handshake.nsp;
    let (socket, id) = {
        let mut guard = io.state.borrow_mut();
        let state = &mut *guard;
        let Some(engine_id) = io.engine.borrow().id(session) else {
            return;
        };
        let entry = state.sockets.vacant_entry();
        let key = entry.key() as SocketKey;
        let id: Arc<str> = match version {
            Version::V3 if &*name == "/" => Arc::from(engine_id.as_str()),
            Version::V3 => Arc::from(format!("{name}#{engine_id}")),
            Version::V4 => Arc::from(Id::generate(io.shard, key, &mut state.random).as_str()),
        };
        entry.insert(SocketState {
            id: id.clone(),
            ns,
            session,
            // Room for its own id room: most sockets join no other.
            rooms: Vec::with_capacity(1),
            acks: BTreeMap::new(),
            auth: handshake.auth,
            data: None,
        });
        state.namespaces[ns].members.insert(key);
        state.join(key, id.clone(), usize::MAX);
        if let Some(client) = state.clients.get_mut(session) {
            client.sockets.push((ns, key));
            client.connect_deadline = None;
        }
        (key, id)
    };
    let reply = match version {
        Version::V4 => {
            let mut data = Vec::with_capacity(40);
            data.extend_from_slice(br#"{"sid":"#);
            json::write_str(&mut data, &id);
            data.push(b'}');
            data
        }
        Version::V3 => Vec::new(),
    };
    let frames = encode_packet(PacketType::Connect, &name, None, &reply, &[]);
    io.send_frames(session, &frames, false);
    let def = io.state.borrow().namespaces[ns].def.clone();
    if let Some(on_connect) = &def.on_connect {
        let handle = Socket::new(io.clone(), socket, id, name);
        if contain("connect", || on_connect(&handle)).is_none() {
            io.engine
                .borrow_mut()
                .close(session, CloseReason::ServerClose);
        }
    }
}

/// Protocol 4 clients put auth in the namespace query: `a=1&b=x` becomes `{"a":"1","b":"x"}`.
fn query_to_json(query: &[u8]) -> Bytes {
    let Ok(query) = std::str::from_utf8(query) else {
        return EMPTY_AUTH;
    };
    let mut out = Vec::from(&b"{"[..]);
    for (n, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if n > 0 {
            out.push(b',');
        }
        json::write_str(&mut out, &percent_decode(key));
        out.push(b':');
        json::write_str(&mut out, &percent_decode(value));
    }
    out.push(b'}');
    out.into()
}

fn on_event(io: &Rc<Io>, socket: SocketKey, packet: sio::Packet, attachments: Vec<Bytes>) {
    let session = io
        .state
        .borrow()
        .sockets
        .get(socket as usize)
        .map(|s| s.session);
    let Some(session) = session else {
        return;
    };
    // `sio::decode` validated the array and found its elements.
    let ranges = packet.elements;
    let Some(name_range) = ranges.first() else {
        return protocol_error(io, session);
    };
    let name_raw = &packet.data[name_range.clone()];
    let name = if json::is_string(name_raw) {
        match json::parse_str(name_raw) {
            Ok(name) => name.into_owned(),
            Err(_) => return protocol_error(io, session),
        }
    } else {
        String::from_utf8_lossy(name_raw).into_owned()
    };
    let (def, id, nsp) = {
        let state = io.state.borrow();
        let socket_state = &state.sockets[socket as usize];
        let namespace = &state.namespaces[socket_state.ns];
        (
            namespace.def.clone(),
            socket_state.id.clone(),
            namespace.name.clone(),
        )
    };
    let args = ranges[1..].to_vec();
    let message = Message::new(packet.data, args, attachments);
    let handle = Socket::new(io.clone(), socket, id, nsp);
    let ack = packet
        .ack_id
        .map(|ack_id| AckSender::new(handle.clone(), ack_id));
    let completed = if let Some(handler) = def.events.get(name.as_str()) {
        contain("event", || handler(&handle, message, ack))
    } else if let Some(handler) = &def.on_any {
        contain("event", || handler(&handle, &name, message, ack))
    } else {
        Some(())
    };
    if completed.is_none() {
        io.engine
            .borrow_mut()
            .close(session, CloseReason::ServerClose);
    }
}

fn on_ack(io: &Rc<Io>, socket: SocketKey, ack_id: u64, message: Message) {
    let handler = io.state.borrow_mut().take_ack(socket, ack_id);
    match handler {
        None => {}
        Some(AckHandler::Local(callback)) => {
            contain("ack", || callback(Ok(message)));
        }
        Some(AckHandler::Aggregate(request)) => {
            let done = io.state.borrow_mut().aggregate_response(request, message);
            finish_aggregate(done);
        }
        Some(AckHandler::Remote { origin, request }) => {
            io.send_peer(origin, IoMsg::Ack { request, message });
        }
    }
}

fn finish_aggregate(done: Option<Aggregate>) {
    if let Some(aggregate) = done {
        contain("ack", || (aggregate.callback)(Ok(aggregate.responses)));
    }
}

/// Takes a socket out of its client's list (the session stays open).
fn detach_from_client(io: &Io, session: SessionKey, socket: SocketKey) {
    if let Some(client) = io.state.borrow_mut().clients.get_mut(session) {
        client.sockets.retain(|&(_, s)| s != socket);
    }
}

/// Removes a socket: leaves its rooms, fails its pending acks, calls the disconnect handler.
pub(crate) fn remove_socket(io: &Rc<Io>, socket: SocketKey, reason: DisconnectReason) {
    let (state_entry, def, nsp_name) = {
        let mut state = io.state.borrow_mut();
        if !state.sockets.contains(socket as usize) {
            return;
        }
        let entry = state.sockets.remove(socket as usize);
        let nsp = &mut state.namespaces[entry.ns];
        for room in &entry.rooms {
            nsp.rooms.leave(room, socket);
        }
        nsp.members.remove(&socket);
        (entry, nsp.def.clone(), nsp.name.clone())
    };
    for (_, handler) in state_entry.acks {
        if let AckHandler::Local(callback) = handler {
            contain("ack", || callback(Err(AckError::Disconnected)));
        }
    }
    if let Some(on_disconnect) = &def.on_disconnect {
        let handle = Socket::new(io.clone(), socket, state_entry.id, nsp_name);
        contain("disconnect", || on_disconnect(&handle, reason));
    }
}

/// Server-side disconnect of one socket from its namespace (`41` to the client).
pub(crate) fn disconnect_socket(io: &Rc<Io>, socket: SocketKey) {
    let target = {
        let state = io.state.borrow();
        state
            .sockets
            .get(socket as usize)
            .map(|s| (s.session, state.namespaces[s.ns].name.clone()))
    };
    let Some((session, nsp)) = target else {
        return;
    };
    let frames = encode_packet(PacketType::Disconnect, &nsp, None, b"", &[]);
    io.send_frames(session, &frames, false);
    detach_from_client(io, session, socket);
    remove_socket(io, socket, DisconnectReason::ServerNamespaceDisconnect);
}

// -------------------------------------------------------------------------------------------
// Broadcasts

/// Delivers a broadcast to this shard's matching sockets; registers acks if requested.
/// Returns the number of recipients.
pub(crate) fn deliver_local(io: &Rc<Io>, broadcast: &Broadcast) -> usize {
    let mut targets = Vec::new();
    let mut sessions = Vec::new();
    // Only a broadcast that waits for acks needs to know which sockets got it.
    let plain = broadcast.ack.is_none() && !broadcast.volatile;
    {
        let mut state = io.state.borrow_mut();
        let Some(ns) = state.namespace_index(&broadcast.nsp) else {
            return 0;
        };
        state.for_each_target(
            ns,
            &broadcast.rooms,
            &broadcast.except,
            |socket, session| {
                if plain {
                    sessions.push(session);
                } else {
                    targets.push((socket, session));
                }
            },
        );
    }
    if plain {
        if sessions.is_empty() {
            return 0;
        }
        return io
            .engine
            .borrow_mut()
            .send_many(sessions, &broadcast.frames);
    }
    let mut delivered = 0;
    for &(socket, session) in &targets {
        if io.send_frames(session, &broadcast.frames, broadcast.volatile) {
            delivered += 1;
            if let Some(spec) = broadcast.ack {
                let handler = if spec.origin == io.shard {
                    AckHandler::Aggregate(spec.request)
                } else {
                    AckHandler::Remote {
                        origin: spec.origin,
                        request: spec.request,
                    }
                };
                io.state
                    .borrow_mut()
                    .add_ack(socket, spec.ack_id, handler, Some(spec.deadline));
            }
        }
    }
    delivered
}

/// Sends a broadcast to this shard and to every other shard (one message each).
pub(crate) fn broadcast(io: &Rc<Io>, broadcast: Broadcast) -> usize {
    let request = broadcast.ack.map(|spec| spec.request);
    let shared = Arc::new(broadcast);
    for shard in (0..io.shards).filter(|&s| s != io.shard) {
        io.send_peer(shard, IoMsg::Broadcast(shared.clone()));
    }
    let count = deliver_local(io, &shared);
    if let Some(request) = request {
        let done = io.state.borrow_mut().aggregate_count(request, count, false);
        finish_aggregate(done);
    }
    count
}

pub(super) fn on_peer_message(io: &Rc<Io>, _from: u16, msg: IoMsg) {
    match msg {
        IoMsg::Broadcast(broadcast) => {
            let count = deliver_local(io, &broadcast);
            if let Some(spec) = broadcast.ack {
                io.send_peer(
                    spec.origin,
                    IoMsg::AckCount {
                        request: spec.request,
                        count,
                    },
                );
            }
        }
        IoMsg::AckCount { request, count } => {
            let done = io.state.borrow_mut().aggregate_count(request, count, true);
            finish_aggregate(done);
        }
        IoMsg::Ack { request, message } => {
            let done = io.state.borrow_mut().aggregate_response(request, message);
            finish_aggregate(done);
        }
    }
}

// -------------------------------------------------------------------------------------------
// Timers

pub(super) fn on_timeouts(io: &Rc<Io>, now: Instant) {
    loop {
        let due = {
            let mut state = io.state.borrow_mut();
            match state.timers.peek() {
                Some(Reverse((at, _))) if *at <= now => state.timers.pop().map(|Reverse(t)| t),
                _ => None,
            }
        };
        let Some((at, timer)) = due else {
            return;
        };
        match timer {
            Timer::Connect(session) => {
                let expired = io
                    .state
                    .borrow()
                    .clients
                    .get(session)
                    .is_some_and(|c| c.connect_deadline == Some(at));
                if expired {
                    io.engine
                        .borrow_mut()
                        .close(session, CloseReason::ServerClose);
                }
            }
            Timer::Ack(socket, ack_id) => {
                let handler = io.state.borrow_mut().take_ack(socket, ack_id);
                if let Some(AckHandler::Local(callback)) = handler {
                    contain("ack", || callback(Err(AckError::Timeout)));
                }
            }
            Timer::Aggregate(request) => {
                let aggregate = io.state.borrow_mut().aggregates.remove(&request);
                if let Some(aggregate) = aggregate {
                    let responses = aggregate.responses;
                    contain("ack", || {
                        (aggregate.callback)(Err((AckError::Timeout, responses)))
                    });
                }
            }
        }
    }
}
