//! What happens to a shard's sockets: engine events and inbound packets dispatched to handlers
//! (events, acks, namespace disconnects), room joins and leaves, socket removal, and the
//! connect and ack deadlines.
//!
//! Borrow discipline: `SocketIo::state` and `SocketIo::engine` are borrowed only for short,
//! non-nested spans; user handlers and observers are always called with no borrow held, so they
//! may emit, join or disconnect freely. This module and `socket` name each other (handlers get `Socket`
//! handles; handles call back in here): the one allowed cycle of the layer.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::ack::{AckError, AckHandler};
use super::adapter::{self, finish};
use super::connect::connect;
use super::message::{encode_packet, Message};
use super::recovery;
use super::socket::{AckSender, Socket};
use super::tables::{Client, SocketKey, SocketState, Timer};
use super::{DisconnectReason, SocketIo};
use crate::codec::eio::Version;
use crate::codec::json;
use crate::codec::msgpack;
use crate::codec::sio::{self, Assembler, PacketType};
use crate::config::Parser;
use crate::engine::{CloseReason, SessionKey};

/// Runs application code. A panic is contained (and logged) so that one faulty handler can't
/// take down the shard and every other client on it; `None` tells the caller it panicked.
pub(crate) fn contain<T>(what: &'static str, run: impl FnOnce() -> T) -> Option<T> {
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

pub(super) fn on_open(io: &Rc<SocketIo>, session: SessionKey) {
    let Some(version) = io.engine.borrow().version(session) else {
        return;
    };
    let deadline = io.now() + io.config.connect_timeout;
    {
        let mut state = io.state.borrow_mut();
        state.clients.insert(Client {
            session,
            version,
            // Room for one namespace, the usual case.
            sockets: Vec::with_capacity(1),
            connecting: Vec::new(),
            assembling: None,
            connect_deadline: Some(deadline),
        });
        state.push_timer(deadline, Timer::Connect(session));
    }
    if version == Version::V3 {
        // Protocol 4 clients are connected to the main namespace implicitly.
        connect(io, session, "/", Bytes::new(), Bytes::new());
    }
}

pub(super) fn on_text(io: &Rc<SocketIo>, session: SessionKey, text: Bytes) {
    if io.config.parser == Parser::Msgpack {
        // socket.io-msgpack-parser sends every packet as binary: a text one is a JSON client.
        tracing::debug!("closing a session: a text packet to a MessagePack server");
        return protocol_error(io, session);
    }
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
        Err(error) => {
            tracing::debug!(%error, "closing a session: bad Socket.IO packet");
            return protocol_error(io, session);
        }
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

pub(super) fn on_binary(io: &Rc<SocketIo>, session: SessionKey, data: Bytes) {
    if io.config.parser == Parser::Msgpack {
        // One whole packet per message, binary values inline: nothing to assemble.
        return match msgpack::decode(&data, io.config.max_attachments) {
            Ok((packet, attachments)) => dispatch(io, session, packet, attachments),
            Err(error) => {
                tracing::debug!(%error, "closing a session: bad MessagePack packet");
                protocol_error(io, session)
            }
        };
    }
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

pub(super) fn on_close(io: &Rc<SocketIo>, session: SessionKey, reason: DisconnectReason) {
    let client = io.state.borrow_mut().clients.remove(session);
    let Some(client) = client else {
        return;
    };
    for (_, socket) in client.sockets {
        remove_socket(io, socket, reason);
    }
}

/// The session switched to WebSocket: the observer hears it for each of its sockets.
pub(super) fn on_upgraded(io: &Rc<SocketIo>, session: SessionKey) {
    let Some(observer) = &io.observer else {
        return;
    };
    let sockets = io
        .state
        .borrow()
        .clients
        .get(session)
        .map(|c| c.sockets.clone())
        .unwrap_or_default();
    for (_, socket) in sockets {
        if let Some(handle) = io.handle(socket) {
            contain("observer", || observer.upgraded(&handle, "websocket"));
        }
    }
}

/// A peer broke the Socket.IO protocol: its whole session is closed.
pub(crate) fn protocol_error(io: &SocketIo, session: SessionKey) {
    io.engine
        .borrow_mut()
        .close(session, CloseReason::ParseError);
}

fn dispatch(io: &Rc<SocketIo>, session: SessionKey, packet: sio::Packet, attachments: Vec<Bytes>) {
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

fn find_socket(io: &SocketIo, session: SessionKey, nsp: &str) -> Option<SocketKey> {
    let state = io.state.borrow();
    let ns = state.namespace_index(nsp)?;
    let client = state.clients.get(session)?;
    client
        .sockets
        .iter()
        .find(|(n, _)| *n == ns)
        .map(|&(_, socket)| socket)
}

fn on_event(io: &Rc<SocketIo>, socket: SocketKey, packet: sio::Packet, attachments: Vec<Bytes>) {
    let Some(session) = io.state.borrow().socket(socket).map(|s| s.session) else {
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
    let (handle, handlers) = {
        let state = io.state.borrow();
        let Some(entry) = state.socket(socket) else {
            return;
        };
        let namespace = &state.namespaces[entry.ns];
        let handle = Socket::new(io.clone(), socket, entry.id.clone(), namespace.name.clone());
        (handle, namespace.handlers.clone())
    };
    let args = ranges[1..].to_vec();
    let message = Message::new(packet.data, args, attachments);
    if let Some(observer) = &io.observer {
        contain("observer", || {
            observer.event_received(&handle, &name, &message)
        });
    }
    let ack = packet
        .ack_id
        .map(|ack_id| AckSender::new(handle.clone(), ack_id));
    let completed = if let Some(handler) = handlers.events.get(name.as_str()) {
        contain("event", || handler(&handle, message, ack))
    } else if let Some(handler) = &handlers.on_any {
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

fn on_ack(io: &Rc<SocketIo>, socket: SocketKey, ack_id: u64, message: Message) {
    let handler = io.state.borrow_mut().take_ack(socket, ack_id);
    match handler {
        None => {}
        Some(AckHandler::Local(callback)) => {
            contain("ack", || callback(Ok(message)));
        }
        Some(AckHandler::Broadcast {
            origin,
            request,
            sent,
        }) => {
            let took = io.now().saturating_duration_since(sent);
            io.traffic.borrow_mut().ack_round_trip.observe(took);
            adapter::forward_ack(io, origin, request, message);
        }
    }
}

/// Takes a socket out of its client's list (the session stays open).
fn detach_from_client(io: &SocketIo, session: SessionKey, socket: SocketKey) {
    if let Some(client) = io.state.borrow_mut().clients.get_mut(session) {
        client.sockets.retain(|&(_, s)| s != socket);
    }
}

/// Joins a socket to a room; the observer hears of a room joined now. `Some(joined now)`, or
/// `None` if the socket is gone or at `max_rooms` (see `State::join`).
pub(crate) fn join(
    io: &Rc<SocketIo>,
    socket: SocketKey,
    room: &str,
    max_rooms: usize,
) -> Option<bool> {
    let joined = join_unobserved(io, socket, room, max_rooms);
    if joined == Some(true) {
        share_session(io, socket);
        if let (Some(observer), Some(handle)) = (&io.observer, io.handle(socket)) {
            contain("observer", || observer.joined(&handle, room));
        }
    }
    joined
}

/// [`join`] with no word to the observer (the rooms a socket is admitted with, which the
/// observer hears with `connected`).
pub(crate) fn join_unobserved(
    io: &Rc<SocketIo>,
    socket: SocketKey,
    room: &str,
    max_rooms: usize,
) -> Option<bool> {
    let joined = io.state.borrow_mut().join(socket, room, max_rooms);
    if joined == Some(true) {
        watch_room(io, socket, room, true);
    }
    joined
}

/// After `socket` joined (`joined`) or left `room`: when that made the room appear on this
/// shard (its only member) or empty, tells the adapter (if it listens) and the shards' room
/// directory (if there is one; a socket's own id room is never listed).
pub(crate) fn watch_room(io: &Rc<SocketIo>, socket: SocketKey, room: &str, joined: bool) {
    let watches = io.adapter.watches_rooms();
    if !watches && io.directory.is_none() {
        return;
    }
    let changed = {
        let state = io.state.borrow();
        state.socket(socket).and_then(|entry| {
            let nsp = &state.namespaces[entry.ns];
            let mut members = nsp.rooms.members(room);
            let changed = match (members.next(), members.next()) {
                (Some(_), None) => joined,
                (None, _) => !joined,
                _ => false,
            };
            changed.then(|| (nsp.name.clone(), *entry.id == *room))
        })
    };
    let Some((nsp, own)) = changed else {
        return;
    };
    if watches {
        io.adapter.room_changed(&nsp, room, joined);
    }
    if let (Some(directory), false) = (&io.directory, own) {
        directory.set(&nsp, room, io.shard.index(), joined);
    }
}

/// Takes a socket out of a room; the observer hears of it if it was in it.
pub(crate) fn leave(io: &Rc<SocketIo>, socket: SocketKey, room: &str) {
    let left = io.state.borrow_mut().leave(socket, room);
    if left {
        watch_room(io, socket, room, false);
        share_session(io, socket);
        if let (Some(observer), Some(handle)) = (&io.observer, io.handle(socket)) {
            contain("observer", || observer.left(&handle, room));
        }
    }
}

/// Removes a socket: leaves its rooms, fails its pending acks, calls the disconnect handler.
pub(crate) fn remove_socket(io: &Rc<SocketIo>, socket: SocketKey, reason: DisconnectReason) {
    let Some(handle) = io.handle(socket) else {
        return;
    };
    let handlers = io.namespace_handlers(socket);
    let Some(entry) = io.state.borrow_mut().remove_socket(socket) else {
        return;
    };
    let handle = handle.departing(entry.extension.clone());
    keep_for_recovery(io, &entry, reason);
    let watches = io.adapter.watches_rooms();
    if watches || io.directory.is_some() {
        let state = io.state.borrow();
        let nsp = &state.namespaces[entry.ns];
        let emptied: Vec<_> = entry
            .rooms
            .iter()
            .filter(|room| nsp.rooms.members(room).next().is_none())
            .collect();
        let name = nsp.name.clone();
        drop(state);
        for room in emptied {
            if watches {
                io.adapter.room_changed(&name, room, false);
            }
            if let (Some(directory), false) = (&io.directory, **room == *entry.id) {
                directory.set(&name, room, io.shard.index(), false);
            }
        }
    }
    for (_, handler) in entry.acks {
        if let AckHandler::Local(callback) = handler {
            contain("ack", || callback(Err(AckError::Disconnected)));
        }
    }
    if let Some(observer) = &io.observer {
        // As in Node: every room is left (its own room aside), then the socket disconnects.
        for room in entry
            .rooms
            .iter()
            .filter(|room| room.as_ref() != entry.id.as_ref())
        {
            contain("observer", || observer.left(&handle, room));
        }
        contain("observer", || observer.disconnected(&handle, reason));
    }
    if let Some(on_disconnect) = handlers.as_ref().and_then(|h| h.on_disconnect.as_ref()) {
        contain("disconnect", || on_disconnect(&handle, reason));
    }
}

/// Keeps a removed socket's session for its return, when connection state recovery is on and
/// the connection was lost rather than left (`recovery::keeps_session`); on a cluster, where
/// every node sees it.
fn keep_for_recovery(io: &SocketIo, entry: &SocketState, reason: DisconnectReason) {
    let (Some(recovery), Some(own)) = (&io.recovery, &entry.recovery) else {
        return;
    };
    let shared = io.adapter.shared_recovery();
    if !recovery::keeps_session(reason.as_str()) {
        if let Some(shared) = shared {
            shared.left(&own.pid);
        }
        return;
    }
    let nsp = io.state.borrow().namespaces[entry.ns].name.clone();
    let session = recovery::Session::of(nsp, entry, own);
    if let Some(shared) = shared {
        shared.keep(&session);
    }
    recovery.borrow_mut().keep(session, io.now());
}

/// Tells the cluster a connected socket's session as it is now (its rooms changed), for its
/// return should this node die; on a cluster with connection state recovery only.
pub(crate) fn share_session(io: &SocketIo, socket: SocketKey) {
    let Some(shared) = io.adapter.shared_recovery() else {
        return;
    };
    let state = io.state.borrow();
    let Some(entry) = state.socket(socket) else {
        return;
    };
    let Some(own) = &entry.recovery else {
        return;
    };
    let nsp = state.namespaces[entry.ns].name.clone();
    shared.live(&recovery::Session::of(nsp, entry, own));
}

/// Server-side disconnect of one socket from its namespace (`41` to the client).
pub(crate) fn disconnect_socket(io: &Rc<SocketIo>, socket: SocketKey) {
    let target = {
        let state = io.state.borrow();
        state
            .socket(socket)
            .map(|s| (s.session, state.namespaces[s.ns].name.clone()))
    };
    let Some((session, nsp)) = target else {
        return;
    };
    let frames = encode_packet(
        io.config.parser,
        PacketType::Disconnect,
        &nsp,
        None,
        b"",
        &[],
    );
    let _ = io.send_frames(session, &frames, false);
    detach_from_client(io, session, socket);
    remove_socket(io, socket, DisconnectReason::ServerNamespaceDisconnect);
}

// -------------------------------------------------------------------------------------------
// Timers

pub(super) fn on_timeouts(io: &Rc<SocketIo>, now: Instant) {
    loop {
        let due = io.state.borrow_mut().pop_due_timer(now);
        let Some((at, timer)) = due else {
            break;
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
        }
    }
    let expired = io.gather.borrow_mut().expire(now);
    finish(expired);
}
