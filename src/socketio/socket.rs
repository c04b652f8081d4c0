//! The handles handlers get: [`Socket`] (one connected socket) and [`AckSender`] (answer a
//! client's ack request).
//!
//! Handles are shard-local (`!Send`): they hold the shard's `Rc<SocketIo>` and the socket's
//! generational key, so a handle kept past its socket's life does nothing.

use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ack::{AckError, AckHandler};
use super::dispatch::{self, contain};
use super::message::{encode_ack, encode_event_as, Args, Message};
use super::operator::BroadcastOperator;
use super::recovery::Logged;
use super::tables::{SocketKey, SocketState, State};
use super::SocketIo;
use crate::engine::{CloseReason, SendError, SessionKey};
use crate::key::ShardId;

/// A connected socket in one namespace, usable on the shard that owns it.
#[derive(Clone)]
pub struct Socket {
    io: Rc<SocketIo>,
    key: SocketKey,
    id: Arc<str>,
    nsp: Arc<str>,
    /// The extension of a socket being removed: its observer and disconnect handler still
    /// read it once the socket is gone from the tables.
    departed: Option<Rc<dyn std::any::Any>>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("id", &self.id).finish()
    }
}

impl Socket {
    pub(crate) fn new(io: Rc<SocketIo>, key: SocketKey, id: Arc<str>, nsp: Arc<str>) -> Socket {
        Socket {
            io,
            key,
            id,
            nsp,
            departed: None,
        }
    }

    /// The handle of a socket being removed, still reading `extension`.
    pub(crate) fn departing(mut self, extension: Option<Rc<dyn std::any::Any>>) -> Socket {
        self.departed = extension;
        self
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
    pub fn shard(&self) -> ShardId {
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

    /// A header of the client's Engine.IO handshake request, when the server keeps it
    /// (`EngineConfig::handshake_headers` names it; `name` in lower case).
    pub fn handshake_header(&self, name: &str) -> Option<String> {
        let session = self.route()?.0;
        let engine = self.io.engine.borrow();
        let headers = engine.headers(session);
        headers
            .iter()
            .find(|(kept, _)| **kept == *name)
            .map(|(_, value)| value.to_string())
    }

    /// The value its namespace's authorizer attached when admitting it
    /// ([`crate::Admission::extension`]), if it is a `T`.
    pub fn extension<T: 'static>(&self) -> Option<Rc<T>> {
        let value = match self.with_state(|_, socket| socket.extension.clone()) {
            Some(value) => value?,
            None => self.departed.clone()?,
        };
        value.downcast::<T>().ok()
    }

    /// The client's sockets in its other namespaces (same Engine.IO connection), on this
    /// shard like this one.
    pub fn siblings(&self) -> Vec<Socket> {
        self.with_state(|state, socket| {
            let Some(client) = state.clients.get(socket.session) else {
                return Vec::new();
            };
            client
                .sockets
                .iter()
                .filter(|(_, key)| *key != self.key)
                .filter_map(|(ns, key)| {
                    let sibling = state.socket(*key)?;
                    let nsp = state.namespaces[*ns].name.clone();
                    Some(Socket::new(self.io.clone(), *key, sibling.id.clone(), nsp))
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// The rooms this socket is in (its own id room included).
    pub fn rooms(&self) -> Vec<String> {
        self.with_state(|_, socket| socket.rooms.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default()
    }

    /// Keeps a value of the application's with this socket as JSON (replacing any earlier
    /// one): it lives as long as the socket and is what `fetch_sockets` reports as `data`, on
    /// any shard (and node).
    pub fn set_data<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), serde_json::Error> {
        let text = serde_json::to_string(value)?.into_boxed_str();
        let stored = self
            .with_socket_mut(|socket| socket.data = Some(text))
            .is_some();
        if stored {
            if let Some(observer) = &self.io.observer {
                contain("observer", || observer.data_changed(self));
            }
        }
        Ok(())
    }

    /// The value kept with [`Socket::set_data`], decoded as a `T`; `None` if there is none or
    /// it does not decode as one.
    pub fn data<T: DeserializeOwned>(&self) -> Option<T> {
        self.with_state(|_, socket| {
            let text = socket.data.as_deref()?;
            if text == "null" {
                return None;
            }
            serde_json::from_str(text).ok()
        })
        .flatten()
    }

    /// The value kept with [`Socket::set_data`] as JSON (`null` if none).
    pub fn data_json(&self) -> serde_json::Value {
        self.with_state(|_, socket| socket.data.as_deref().map(parse_data))
            .flatten()
            .unwrap_or_default()
    }

    /// Changes the value kept with [`Socket::set_data`] in place, as a `T` (starting from
    /// `T::default()` if there is none); false if the socket is gone or the value does not
    /// decode as a `T`.
    pub fn update_data<T: Serialize + DeserializeOwned + Default>(
        &self,
        change: impl FnOnce(&mut T),
    ) -> bool {
        if !self.connected() {
            return false;
        }
        let value = self.data_json();
        let mut data: T = if value.is_null() {
            T::default()
        } else {
            match serde_json::from_value(value) {
                Ok(data) => data,
                Err(_) => return false,
            }
        };
        change(&mut data);
        self.set_data(&data).is_ok()
    }

    /// Sends an event to this socket; fails if it is gone, its queue overflowed (the
    /// slow-consumer policy applied) or the packet was dropped.
    pub fn emit(&self, event: &str, args: &Args) -> Result<(), SendError> {
        let Some((session, nsp)) = self.route() else {
            return Err(SendError::Closed);
        };
        let Some(recovery) = &self.io.recovery else {
            let frames = encode_event_as(self.io.config.parser, &nsp, event, args, None);
            let sent = self.io.send_frames(session, &frames, false);
            self.notify_sent(event, args);
            return sent;
        };
        // Stored for connection state recovery, as a broadcast to the socket's own room is.
        let offset = recovery.borrow_mut().next_offset();
        let stored = args.clone().with_str(&offset);
        let frames = encode_event_as(self.io.config.parser, &nsp, event, &stored, None);
        let own_room: [Box<str>; 1] = [self.id().into()];
        if let Some(shared) = self.io.adapter.shared_recovery() {
            shared.log(&Logged {
                nsp: &nsp,
                offset: &offset,
                rooms: &own_room,
                except: &[],
                local: false,
                event,
                args,
            });
        }
        recovery
            .borrow_mut()
            .store(&nsp, offset, &own_room, &[], &frames, self.io.now());
        let sent = self.io.send_frames(session, &frames, false);
        self.notify_sent(event, args);
        sent
    }

    /// Whether this socket was recovered: the client came back within the recovery window
    /// with its session, got its id, rooms and data back, and the events it missed.
    pub fn recovered(&self) -> bool {
        self.with_state(|_, socket| socket.recovery.as_ref().is_some_and(|r| r.recovered))
            .unwrap_or(false)
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
        let frames = encode_event_as(self.io.config.parser, &nsp, event, args, Some(ack_id));
        // The round trip is measured on the tick's clock, from this emit to the ack's
        // arrival; a weak handle, so a pending ack keeps no cycle through the server.
        let sent = self.io.now();
        let io = Rc::downgrade(&self.io);
        let timed = move |outcome: Result<Message, AckError>| {
            if let (Ok(_), Some(io)) = (&outcome, io.upgrade()) {
                let took = io.now().saturating_duration_since(sent);
                io.traffic.borrow_mut().ack_round_trip.observe(took);
            }
            callback(outcome)
        };
        self.io.state.borrow_mut().add_ack(
            self.key,
            ack_id,
            AckHandler::Local(Box::new(timed)),
            Some(self.io.now() + timeout),
        );
        // A failure reaches the callback: the ack times out, or fails as the socket goes.
        let _ = self.io.send_frames(session, &frames, false);
        self.notify_sent(event, args);
    }

    /// Joins a room (on this socket's shard; broadcasts reach it from every shard). False if
    /// the socket is disconnected, or already in `max_rooms_per_socket` rooms (its own id
    /// room not counted) and not in this one.
    pub fn join(&self, room: &str) -> bool {
        // + 1: the socket's own room, joined at connect.
        let max_rooms = self.io.config.max_rooms_per_socket.saturating_add(1);
        self.connected() && dispatch::join(&self.io, self.key, room, max_rooms).is_some()
    }

    /// Leaves a room. (A handle kept past its socket's disconnect does nothing: its slot may
    /// hold another socket by now.)
    pub fn leave(&self, room: &str) {
        if self.connected() {
            dispatch::leave(&self.io, self.key, room);
        }
    }

    /// Removes the socket from its namespace (the client gets a DISCONNECT).
    pub fn disconnect(&self) {
        if self.connected() {
            dispatch::disconnect_socket(&self.io, self.key);
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
        BroadcastOperator::new(self.io.clone(), self.nsp(), Some(&self.id))
    }

    /// A broadcast to the whole namespace, this socket included.
    pub fn namespace(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.io.clone(), self.nsp(), None)
    }

    /// An operator on another namespace of this socket's shard (an observer that reports to
    /// an admin namespace, say); it reaches every shard like any other.
    pub fn of(&self, nsp: &str) -> BroadcastOperator {
        BroadcastOperator::new(self.io.clone(), Arc::from(nsp), None)
    }

    /// The transport that carries this socket's connection now (`"polling"` or
    /// `"websocket"`); `None` once it is gone.
    pub fn transport(&self) -> Option<&'static str> {
        let session = self.route()?.0;
        self.io.engine.borrow().transport_name(session)
    }

    /// The query string of the client's Engine.IO handshake, as it came.
    pub fn handshake_query(&self) -> Option<String> {
        let session = self.route()?.0;
        let engine = self.io.engine.borrow();
        engine.query(session).map(str::to_owned)
    }

    /// The Engine.IO session id of this socket's connection (shared by its sockets in every
    /// namespace); `None` once it is gone.
    pub fn session_id(&self) -> Option<String> {
        let session = self.route()?.0;
        let id = self.io.engine.borrow().id(session)?;
        Some(id.as_str().to_owned())
    }

    /// Runs a task on this socket's shard (to await an operation's answer from a handler,
    /// say); what it sends goes out as it goes.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.io.spawn(Box::pin(task));
    }

    fn notify_sent(&self, event: &str, args: &Args) {
        if let Some(observer) = &self.io.observer {
            contain("observer", || observer.event_sent(self, event, args));
        }
    }

    fn route(&self) -> Option<(SessionKey, Arc<str>)> {
        self.with_state(|_, socket| (socket.session, self.nsp.clone()))
    }

    fn with_socket_mut<T>(&self, f: impl FnOnce(&mut SocketState) -> T) -> Option<T> {
        let mut state = self.io.state.borrow_mut();
        state.socket_mut(self.key).map(f)
    }

    fn with_state<T>(&self, f: impl FnOnce(&State, &SocketState) -> T) -> Option<T> {
        let state = self.io.state.borrow();
        let socket = state.socket(self.key)?;
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

    /// Sends the acknowledgement with these arguments; fails as [`Socket::emit`] does.
    pub fn send(self, args: &Args) -> Result<(), SendError> {
        let Some((session, nsp)) = self.socket.route() else {
            return Err(SendError::Closed);
        };
        let frames = encode_ack(self.socket.io.config.parser, &nsp, self.ack_id, args);
        self.socket.io.send_frames(session, &frames, false)
    }
}

/// A socket's stored data (JSON text this crate wrote) as a value.
pub(crate) fn parse_data(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_default()
}
