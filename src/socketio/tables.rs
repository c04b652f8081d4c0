//! One shard's Socket.IO data: clients (one per Engine.IO session), sockets, namespaces with
//! their room indexes, pending acks, connect and ack deadlines.
//!
//! Plain tables: no handles, no user code, no messages to other shards. Everything that
//! reacts to packets (`dispatch`, `connect`) or leaves the shard (`adapter`) works on these.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::ack::AckHandler;
use super::namespace::Namespace;
use crate::codec::eio::Version;
use crate::codec::sio::Assembler;
use crate::deadline::DeadlineHeap;
use crate::engine::SessionKey;
use crate::histogram::Histogram;
use crate::id::RandomPool;
use crate::key::{Key, ShardId, Slots};
use crate::rooms::Rooms;

/// A socket's key on its shard: slot and generation (not to be confused with its client's
/// [`SessionKey`]). A handle kept past its socket's life names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SocketKey(Key);

impl SocketKey {
    /// The slot, which the socket's id carries.
    pub(crate) fn index(self) -> usize {
        self.0.index()
    }
}

pub(crate) struct SocketState {
    pub(crate) id: Arc<str>,
    /// Index of its namespace in [`State::namespaces`].
    pub(crate) ns: usize,
    pub(crate) session: SessionKey,
    /// The rooms it is in (from the start, the room named by its id); the names are shared
    /// with the room index.
    pub(crate) rooms: Vec<Arc<str>>,
    /// Pending acks by id. A B-tree, not a hash map: empty it allocates nothing and takes half
    /// the room, and most sockets never wait for an ack.
    pub(crate) acks: BTreeMap<u64, AckHandler>,
    pub(crate) auth: Bytes,
    /// The application's value for this socket (`Socket::set_data`) as compact JSON text: about
    /// its length in memory (a `serde_json::Value` object costs a B-tree node, some 600 bytes,
    /// however small), and a socket without one pays a pointer.
    pub(crate) data: Option<Box<str>>,
    /// The authorizer's value for this socket (`Admission::extension`).
    pub(crate) extension: Option<std::rc::Rc<dyn std::any::Any>>,
    /// Its private id and whether it was recovered, with connection state recovery on (boxed:
    /// a socket without it pays a pointer).
    pub(crate) recovery: Option<Box<SocketRecovery>>,
}

/// A socket's part in connection state recovery.
pub(crate) struct SocketRecovery {
    /// The private session id (`pid`) its client presents to come back.
    pub(crate) pid: Arc<str>,
    pub(crate) recovered: bool,
}

pub(crate) struct Client {
    /// Its session's whole key: a reused slot's new session is another client.
    pub(crate) session: SessionKey,
    pub(crate) version: Version,
    /// (namespace index, socket) for every namespace joined.
    pub(crate) sockets: Vec<(usize, SocketKey)>,
    /// Namespaces whose CONNECT waits for asynchronous middleware.
    pub(crate) connecting: Vec<usize>,
    /// A binary packet waiting for its attachments (boxed: rare, and large next to the rest).
    pub(crate) assembling: Option<Box<Assembler>>,
    /// Close the session if no namespace is joined by then.
    pub(crate) connect_deadline: Option<Instant>,
}

/// Clients by session. Session slots are small, dense and reused, so a vector indexed by them
/// holds each client in one slot, smaller than a hash map would; the client keeps its whole
/// session key, so a stale key finds nothing.
#[derive(Default)]
pub(crate) struct Clients(Vec<Option<Client>>);

impl Clients {
    pub(crate) fn get(&self, session: SessionKey) -> Option<&Client> {
        let client = self.0.get(session.index())?.as_ref()?;
        (client.session == session).then_some(client)
    }

    pub(crate) fn get_mut(&mut self, session: SessionKey) -> Option<&mut Client> {
        let client = self.0.get_mut(session.index())?.as_mut()?;
        (client.session == session).then_some(client)
    }

    /// Adds the client of its session (replacing whatever the slot held).
    pub(crate) fn insert(&mut self, client: Client) {
        let index = client.session.index();
        if index >= self.0.len() {
            self.0.resize_with(index + 1, || None);
        }
        self.0[index] = Some(client);
    }

    pub(crate) fn remove(&mut self, session: SessionKey) -> Option<Client> {
        self.get(session)?;
        self.0.get_mut(session.index())?.take()
    }

    fn count(&self) -> usize {
        self.0.iter().flatten().count()
    }
}

/// One namespace as this shard holds it: its handlers, rooms and members.
pub(crate) struct NamespaceState {
    pub(crate) name: Arc<str>,
    pub(crate) handlers: Arc<Namespace>,
    pub(crate) rooms: Rooms<SocketKey>,
    pub(crate) members: HashSet<SocketKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Connect(SessionKey),
    Ack(SocketKey, u64),
}

/// What the Socket.IO layer of a shard holds (see `SocketIo::counts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketIoCounts {
    /// Engine.IO sessions known to Socket.IO.
    pub clients: usize,
    /// Sockets (a client's connection to one namespace).
    pub sockets: usize,
    /// Rooms with members, every namespace's (each socket's own room included).
    pub rooms: usize,
    /// Pending connect and ack deadlines that still mean something, and requests to other
    /// shards in flight.
    pub timers: usize,
}

/// What went through a shard's Socket.IO layer since it started (see `SocketIo::traffic`),
/// for the metrics route. Bumped once per broadcast or ack, never per recipient, and never
/// shared with another shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketIoTraffic {
    /// Broadcasts this shard's handlers or operators sent.
    pub broadcasts_local: u64,
    /// Broadcasts another shard of this process sent here.
    pub broadcasts_cross_shard: u64,
    /// Broadcasts another node published through Redis, delivered here.
    pub broadcasts_remote: u64,
    /// Broadcast packets handed to recipients on this shard (one per recipient).
    pub deliveries: u64,
    /// From an `emit_with_ack` (to one socket, or a broadcast's to each recipient) to its
    /// client's answer.
    pub ack_round_trip: Histogram,
    /// Sockets now, per namespace (every namespace this shard knows, in its order).
    pub sockets_per_namespace: Vec<(Arc<str>, usize)>,
}

pub(crate) struct State {
    shard: ShardId,
    shards: u16,
    pub(crate) namespaces: Vec<NamespaceState>,
    by_name: HashMap<Arc<str>, usize>,
    pub(crate) clients: Clients,
    sockets: Slots<SocketState>,
    timers: DeadlineHeap<Timer>,
    next_ack: u64,
    pub(crate) random: RandomPool,
}

impl State {
    pub(crate) fn new(shard: ShardId, shards: u16) -> State {
        State {
            shard,
            shards,
            namespaces: Vec::new(),
            by_name: HashMap::new(),
            clients: Clients::default(),
            sockets: Slots::default(),
            timers: DeadlineHeap::new(),
            next_ack: 0,
            random: RandomPool::new(),
        }
    }

    pub(crate) fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    pub(crate) fn socket(&self, key: SocketKey) -> Option<&SocketState> {
        self.sockets.get(key.0)
    }

    pub(crate) fn socket_mut(&mut self, key: SocketKey) -> Option<&mut SocketState> {
        self.sockets.get_mut(key.0)
    }

    /// The key the next inserted socket gets.
    pub(crate) fn vacant_socket(&self) -> SocketKey {
        SocketKey(self.sockets.vacant_key())
    }

    /// Adds a socket to its namespace and to the room named by its id.
    pub(crate) fn insert_socket(&mut self, socket: SocketState) -> SocketKey {
        let (ns, id) = (socket.ns, socket.id.clone());
        let key = SocketKey(self.sockets.insert(socket));
        self.namespaces[ns].members.insert(key);
        self.join(key, id, usize::MAX);
        key
    }

    /// Takes a socket out of its namespace and every room.
    pub(crate) fn remove_socket(&mut self, key: SocketKey) -> Option<SocketState> {
        let socket = self.sockets.remove(key.0)?;
        let nsp = &mut self.namespaces[socket.ns];
        for room in &socket.rooms {
            nsp.rooms.leave(room, key);
        }
        nsp.members.remove(&key);
        Some(socket)
    }

    /// With no client left, gives back what the busiest moment grew (client and socket tables,
    /// room indexes, timers). False if any client is left.
    pub(crate) fn release_idle_memory(&mut self) -> bool {
        if self.clients.count() > 0 || !self.sockets.is_empty() {
            return false;
        }
        self.clients = Clients::default();
        self.sockets.release_if_empty();
        self.timers = DeadlineHeap::new();
        for nsp in &mut self.namespaces {
            nsp.rooms.shrink_if_empty();
            nsp.members.shrink_to_fit();
        }
        true
    }

    /// Sockets, clients, rooms and live timers on this shard.
    pub(crate) fn counts(&self) -> SocketIoCounts {
        SocketIoCounts {
            clients: self.clients.count(),
            sockets: self.sockets.len(),
            rooms: self.namespaces.iter().map(|nsp| nsp.rooms.len()).sum(),
            timers: self
                .timers
                .live_count(|at, timer| is_live(&self.clients, &self.sockets, at, timer)),
        }
    }

    /// Adds a timer; past a bound, the heap drops entries whose target is gone (under churn
    /// they would otherwise far outnumber the live ones until they come due).
    pub(crate) fn push_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push(at, timer);
        let (clients, sockets) = (&self.clients, &self.sockets);
        // Live: a connect deadline per client, an ack deadline per socket most of the time.
        let live = clients.0.len() + sockets.len();
        self.timers
            .sweep_if_grown(live, |at, timer| is_live(clients, sockets, at, timer));
    }

    /// The earliest live timer due at `now`, taken off the heap.
    pub(crate) fn pop_due_timer(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        let (clients, sockets) = (&self.clients, &self.sockets);
        self.timers
            .pop_due(now, |at, timer| is_live(clients, sockets, at, timer))
    }

    /// The earliest live timer's deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        let (clients, sockets) = (&self.clients, &self.sockets);
        self.timers
            .next_deadline(|at, timer| is_live(clients, sockets, at, timer))
    }

    /// An ack id no other shard hands out (ids interleave by shard), below 2^53.
    pub(crate) fn next_ack_id(&mut self) -> u64 {
        let id = self.next_ack * u64::from(self.shards) + u64::from(self.shard.get());
        self.next_ack = (self.next_ack + 1) % (1 << 40);
        id
    }

    pub(crate) fn namespace_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The namespace called `name`, created on first use if `resolve` finds its handlers.
    pub(crate) fn namespace_or_create(
        &mut self,
        name: &str,
        resolve: impl FnOnce(&str) -> Option<Arc<Namespace>>,
    ) -> Option<usize> {
        if let Some(&index) = self.by_name.get(name) {
            return Some(index);
        }
        let handlers = resolve(name)?;
        let name: Arc<str> = Arc::from(name);
        self.namespaces.push(NamespaceState {
            name: name.clone(),
            handlers,
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
        if let Some(state) = self.socket_mut(socket) {
            state.acks.insert(ack_id, handler);
            if let Some(deadline) = deadline {
                self.push_timer(deadline, Timer::Ack(socket, ack_id));
            }
        }
    }

    /// Removes and returns the handler waiting for `ack_id` on `socket`.
    pub(crate) fn take_ack(&mut self, socket: SocketKey, ack_id: u64) -> Option<AckHandler> {
        self.socket_mut(socket)?.acks.remove(&ack_id)
    }

    /// Joins `socket` to `room` (an `Arc<str>` the caller holds is shared, not copied).
    /// `Some(true)` if it joined now, `Some(false)` if it was in already; `None` if the socket
    /// is gone, or is in `max_rooms` rooms already and not in this one.
    pub(crate) fn join(
        &mut self,
        socket: SocketKey,
        room: impl AsRef<str> + Into<Arc<str>>,
        max_rooms: usize,
    ) -> Option<bool> {
        let state = self.sockets.get_mut(socket.0)?;
        if state.rooms.len() >= max_rooms {
            let member = state.rooms.iter().any(|r| **r == *room.as_ref());
            return member.then_some(false);
        }
        match self.namespaces[state.ns].rooms.join_shared(room, socket) {
            Some(name) => {
                state.rooms.push(name);
                Some(true)
            }
            None => Some(false),
        }
    }

    /// Takes `socket` out of `room`; true if it was in it.
    pub(crate) fn leave(&mut self, socket: SocketKey, room: &str) -> bool {
        let Some(state) = self.sockets.get_mut(socket.0) else {
            return false;
        };
        if self.namespaces[state.ns].rooms.leave(room, socket) {
            state.rooms.retain(|r| &**r != room);
            return true;
        }
        false
    }

    /// Calls `visit(socket, session)` for every socket of namespace `ns` in one of `rooms`
    /// (every socket of it if `rooms` is empty) and in none of `except`.
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
            if let Some(state) = sockets.get(key.0) {
                visit(key, state.session);
            }
        });
    }
}

/// Whether a timer entry still means something: its client waits for a CONNECT until then, or
/// its ack is still pending.
fn is_live(clients: &Clients, sockets: &Slots<SocketState>, at: Instant, timer: Timer) -> bool {
    match timer {
        Timer::Connect(session) => clients
            .get(session)
            .is_some_and(|c| c.connect_deadline == Some(at)),
        Timer::Ack(socket, id) => sockets
            .get(socket.0)
            .is_some_and(|s| s.acks.contains_key(&id)),
    }
}
