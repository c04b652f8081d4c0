//! The handles handlers get: [`Socket`] (one connected socket), [`AckSender`] (answer a
//! client's ack request) and [`BroadcastOperator`] (to / except / volatile / local / timeout).
//!
//! Handles are shard-local (`!Send`): they hold the shard's `Rc<Io>` and a slab key checked
//! against the socket id, so a handle kept past its socket's life does nothing.

use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::message::{encode_ack, encode_event, Args, Message};
use super::state::{self, AckHandler, SocketKey};
use super::{Broadcast, Io, RemoteAck};
use crate::engine::CloseReason;

/// Why an acknowledgement did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The deadline passed first.
    Timeout,
    /// The socket disconnected first.
    Disconnected,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckError::Timeout => "operation has timed out",
            AckError::Disconnected => "socket has been disconnected",
        })
    }
}

impl std::error::Error for AckError {}

/// A connected socket in one namespace, usable on the shard that owns it.
#[derive(Clone)]
pub struct Socket {
    io: Rc<Io>,
    key: SocketKey,
    id: Arc<str>,
    nsp: Arc<str>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("id", &self.id).finish()
    }
}

impl Socket {
    pub(crate) fn new(io: Rc<Io>, key: SocketKey, id: Arc<str>, nsp: Arc<str>) -> Socket {
        Socket { io, key, id, nsp }
    }

    /// The socket id (as the client sees it in `socket.id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.with_state(|_, _| ()).is_some()
    }

    /// The shard this socket lives on.
    pub fn shard(&self) -> u16 {
        self.io.shard
    }

    /// The namespace name.
    pub fn nsp(&self) -> Arc<str> {
        self.nsp.clone()
    }

    /// The raw JSON auth payload of the CONNECT (`{}` if none).
    pub fn auth_raw(&self) -> Bytes {
        self.with_state(|_, socket| socket.auth.clone())
            .unwrap_or_default()
    }

    /// One parameter of the client's Engine.IO handshake query, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        let session = self.route()?.0;
        let engine = self.io.engine.borrow();
        super::namespace::query_param(engine.query(session)?, key)
    }

    /// The client's address, when known.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        let session = self.route()?.0;
        self.io.engine.borrow().address(session)
    }

    /// The rooms this socket is in (its own id room included).
    pub fn rooms(&self) -> Vec<String> {
        self.with_state(|_, socket| socket.rooms.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default()
    }

    /// Keeps a value of the application's with this socket (replacing any earlier one); it
    /// lives as long as the socket.
    pub fn set_data<T: 'static>(&self, value: T) {
        self.with_socket_mut(|socket| socket.data = Some(Box::new(value)));
    }

    /// Runs `f` on the value kept with [`Socket::set_data`], if it has type `T`. The value is
    /// lent out while `f` runs, so `f` may use this socket freely.
    pub fn with_data<T: 'static, R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut data = self
            .with_socket_mut(|socket| socket.data.take())
            .flatten()?;
        let result = data.downcast_mut::<T>().map(f);
        self.with_socket_mut(|socket| {
            // `f` may have stored a new value meanwhile; it wins.
            socket.data.get_or_insert(data);
        });
        result
    }

    /// Sends an event to this socket. False if it is gone or could not take it.
    pub fn emit(&self, event: &str, args: &Args) -> bool {
        let Some((session, nsp)) = self.route() else {
            return false;
        };
        let frames = encode_event(&nsp, event, args, None);
        self.io.send_frames(session, &frames, false)
    }

    /// Sends an event and waits for the client's ack, at most `timeout`; `callback` gets the
    /// ack's arguments or why they did not come.
    pub fn emit_with_ack(
        &self,
        event: &str,
        args: &Args,
        timeout: Duration,
        callback: impl FnOnce(Result<Message, AckError>) + 'static,
    ) {
        let Some((session, nsp)) = self.route() else {
            return callback(Err(AckError::Disconnected));
        };
        let ack_id = self.io.state.borrow_mut().next_ack_id();
        let frames = encode_event(&nsp, event, args, Some(ack_id));
        self.io.state.borrow_mut().add_ack(
            self.key,
            ack_id,
            AckHandler::Local(Box::new(callback)),
            Some(self.io.now() + timeout),
        );
        self.io.send_frames(session, &frames, false);
    }

    /// Joins a room (on this socket's shard; broadcasts reach it from every shard). False if
    /// the socket is disconnected, or already in `max_rooms_per_socket` rooms (its own id
    /// room not counted) and not in this one.
    pub fn join(&self, room: &str) -> bool {
        // + 1: the socket's own room, joined at connect.
        let max_rooms = self.io.config.max_rooms_per_socket.saturating_add(1);
        self.connected() && self.io.state.borrow_mut().join(self.key, room, max_rooms)
    }

    /// Leaves a room. (A handle kept past its socket's disconnect does nothing: its slot may
    /// hold another socket by now.)
    pub fn leave(&self, room: &str) {
        if self.connected() {
            self.io.state.borrow_mut().leave(self.key, room);
        }
    }

    /// Removes the socket from its namespace (the client gets a DISCONNECT).
    pub fn disconnect(&self) {
        if self.connected() {
            state::disconnect_socket(&self.io, self.key);
        }
    }

    /// Closes the whole Engine.IO connection (every namespace of that client).
    pub fn close_connection(&self) {
        if let Some((session, _)) = self.route() {
            self.io
                .engine
                .borrow_mut()
                .close(session, CloseReason::ServerClose);
        }
    }

    /// A broadcast to `room` from this socket: every member except this socket.
    pub fn to(&self, room: &str) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// A broadcast to the whole namespace except this socket.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.io.clone(), self.nsp(), Some(self.id.clone()))
    }

    /// A broadcast to the whole namespace, this socket included.
    pub fn namespace(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.io.clone(), self.nsp(), None)
    }

    fn route(&self) -> Option<(u32, Arc<str>)> {
        self.with_state(|_, socket| (socket.session, self.nsp.clone()))
    }

    fn with_socket_mut<T>(&self, f: impl FnOnce(&mut state::SocketState) -> T) -> Option<T> {
        let mut state = self.io.state.borrow_mut();
        let socket = state.sockets.get_mut(self.key as usize)?;
        if socket.id != self.id {
            return None;
        }
        Some(f(socket))
    }

    fn with_state<T>(&self, f: impl FnOnce(&state::State, &state::SocketState) -> T) -> Option<T> {
        let state = self.io.state.borrow();
        let socket = state.sockets.get(self.key as usize)?;
        if socket.id != self.id {
            return None;
        }
        Some(f(&state, socket))
    }
}

/// Answers one ack request from a client. Dropping it without sending sends nothing (as in
/// Node, the client's callback then never runs).
pub struct AckSender {
    socket: Socket,
    ack_id: u64,
}

impl fmt::Debug for AckSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckSender")
            .field("ack_id", &self.ack_id)
            .finish()
    }
}

impl AckSender {
    pub(crate) fn new(socket: Socket, ack_id: u64) -> AckSender {
        AckSender { socket, ack_id }
    }

    /// Sends the acknowledgement with these arguments.
    pub fn send(self, args: &Args) -> bool {
        let Some((session, nsp)) = self.socket.route() else {
            return false;
        };
        let frames = encode_ack(&nsp, self.ack_id, args);
        self.socket.io.send_frames(session, &frames, false)
    }
}

/// Selects the recipients of a broadcast in one namespace, then emits to all of them, on
/// every shard, encoded once.
pub struct BroadcastOperator {
    io: Rc<Io>,
    nsp: Arc<str>,
    rooms: Vec<Box<str>>,
    except: Vec<Box<str>>,
    volatile: bool,
    local: bool,
    timeout: Option<Duration>,
}

impl fmt::Debug for BroadcastOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastOperator")
            .field("nsp", &self.nsp)
            .field("rooms", &self.rooms)
            .field("except", &self.except)
            .finish()
    }
}

impl BroadcastOperator {
    pub(crate) fn new(io: Rc<Io>, nsp: Arc<str>, except_socket: Option<Arc<str>>) -> Self {
        BroadcastOperator {
            io,
            nsp,
            rooms: Vec::new(),
            except: except_socket
                .map(|id| Box::from(&*id))
                .into_iter()
                .collect(),
            volatile: false,
            local: false,
            timeout: None,
        }
    }

    /// Adds a target room (a socket id is a room too). No room means the whole namespace.
    pub fn to(mut self, room: &str) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Excludes the members of a room.
    pub fn except(mut self, room: &str) -> Self {
        self.except.push(room.into());
        self
    }

    /// Drops the packet for recipients that cannot take it right away.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Only this server process (every shard of it), never other nodes of a cluster.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// How long [`BroadcastOperator::emit_with_ack`] waits for acks.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Emits to every matching socket on every shard. Returns the recipients on this shard.
    pub fn emit(self, event: &str, args: &Args) -> usize {
        let frames = encode_event(&self.nsp, event, args, None);
        self.send(frames, None)
    }

    /// Emits and collects every recipient's ack (on every shard) until all have answered or
    /// the timeout (default 5 s) passes; then calls `callback` once.
    pub fn emit_with_ack(
        self,
        event: &str,
        args: &Args,
        callback: impl FnOnce(Result<Vec<Message>, (AckError, Vec<Message>)>) + 'static,
    ) {
        let deadline = self.io.now() + self.timeout.unwrap_or(Duration::from_secs(5));
        let other_shards = self.io.shards as usize - 1;
        let (request, ack_id) = {
            let mut state = self.io.state.borrow_mut();
            let request = state.add_aggregate(other_shards, deadline, Box::new(callback));
            (request, state.next_ack_id())
        };
        let frames = encode_event(&self.nsp, event, args, Some(ack_id));
        let spec = RemoteAck {
            origin: self.io.shard,
            request,
            ack_id,
            deadline,
        };
        self.send(frames, Some(spec));
    }

    /// Delivers on this shard and hands one shared copy to every other shard.
    fn send(self, frames: Vec<crate::codec::frame::Frame>, ack: Option<RemoteAck>) -> usize {
        // `local` only matters across nodes; within one process every shard is this node.
        let _this_node_only = self.local;
        let broadcast = Broadcast {
            nsp: self.nsp,
            rooms: self.rooms,
            except: self.except,
            volatile: self.volatile,
            frames,
            ack,
        };
        state::broadcast(&self.io, broadcast)
    }
}
