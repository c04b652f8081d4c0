//! Joining a namespace: the CONNECT packet, middleware (synchronous, then asynchronous on a
//! shard-local task), the refusal (CONNECT_ERROR) or the admission (the socket is created,
//! CONNECT answered, the connect handler and the observer called).
//!
//! Reads and writes the tables and the engine; never reaches other shards.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::dispatch::{self, contain, protocol_error};
use super::message::encode_packet;
use super::namespace::{percent_decode, Admission, Authorizer, ConnectError, Handshake, Namespace};
use super::operator::BroadcastOperator;
use super::recovery::Restored;
use super::tables::{SocketRecovery, SocketState};
use super::{SocketIo, EMPTY_AUTH};
use crate::codec::eio::Version;
use crate::codec::json;
use crate::codec::sio::PacketType;
use crate::engine::{CloseReason, SessionKey};
use crate::id::Id;

pub(crate) fn connect(
    io: &Rc<SocketIo>,
    session: SessionKey,
    nsp: &str,
    auth: Bytes,
    query: Bytes,
) {
    let (version, ns) = {
        let mut state = io.state.borrow_mut();
        let Some(version) = state.clients.get(session).map(|c| c.version) else {
            return;
        };
        let new = state.namespace_index(nsp).is_none();
        let ns = state.namespace_or_create(nsp, |name| io.namespaces.resolve(name));
        (version, ns.map(|ns| (ns, new)))
    };
    let ns = ns.map(|(ns, new)| {
        if new {
            io.adapter.serve(nsp);
        }
        ns
    });
    let Some(ns) = ns else {
        let data = br#"{"message":"Invalid namespace"}"#;
        let frames = encode_packet(
            io.config.parser,
            PacketType::ConnectError,
            nsp,
            None,
            data,
            &[],
        );
        // A client gone meanwhile needs no answer.
        let _ = io.send_frames(session, &frames, false);
        return;
    };
    let (busy, joined) = {
        let state = io.state.borrow();
        let client = state.clients.get(session);
        let busy = client
            .is_some_and(|c| c.sockets.iter().any(|(n, _)| *n == ns) || c.connecting.contains(&ns));
        let joined = client.map_or(0, |c| c.sockets.len() + c.connecting.len());
        (busy, joined)
    };
    if busy {
        return protocol_error(io, session);
    }
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
    let (handlers, nsp_name) = {
        let state = io.state.borrow();
        let namespace = &state.namespaces[ns];
        (namespace.handlers.clone(), namespace.name.clone())
    };
    let (query, address, headers, engine_id) = {
        let engine = io.engine.borrow();
        (
            engine.query(session).unwrap_or_default().into(),
            engine.address(session),
            engine.headers(session).into(),
            engine.id(session),
        )
    };
    let Some(engine_id) = engine_id else {
        return;
    };
    let handshake = Handshake {
        nsp: nsp_name,
        auth,
        protocol: if version == Version::V3 { 4 } else { 5 },
        query,
        address,
        headers,
    };
    // A client coming back with its session (connection state recovery, spec D.2): both
    // `pid` and `offset` strings in its CONNECT.
    let comeback = match (&io.recovery, version) {
        (Some(_), Version::V4) => json::from_slice::<Comeback>(&handshake.auth).ok(),
        _ => None,
    };
    let waits = matches!(handlers.authorizer, Some(Authorizer::Later(_)))
        || !handlers.async_middlewares.is_empty();
    if comeback.is_none() && !waits {
        // The common case, decided now.
        let verdict =
            middlewares_pass(&handlers, &handshake).and_then(|()| match &handlers.authorizer {
                Some(Authorizer::Now(authorize)) => contain("authorizer", || authorize(&handshake))
                    .unwrap_or_else(|| Err(ConnectError::new("server error"))),
                _ => Ok(Admission::default()),
            });
        return match verdict {
            Ok(admission) => admit(io, session, version, ns, handshake, admission, None),
            Err(error) => refuse(io, session, version, &handshake.nsp, &error),
        };
    }
    // An asynchronous decision: the connection waits in `connecting` until it is made.
    if let Some(client) = io.state.borrow_mut().clients.get_mut(session) {
        client.connecting.push(ns);
    }
    let task_io = io.clone();
    io.spawn(Box::pin(async move {
        let io = task_io;
        let restored = match comeback {
            Some(comeback) => {
                let operator = BroadcastOperator::new(io.clone(), handshake.nsp.clone(), None);
                let (pid, offset) = (&comeback.pid, &comeback.offset);
                let kept = operator.restore(pid, offset).await.ok().flatten();
                // On a cluster, the session may have been kept by another node (or by this
                // one before a restart), and the cluster says whether what this process
                // kept is still the session to restore.
                match io.adapter.shared_recovery() {
                    Some(shared) => shared.restore(&handshake.nsp, pid, offset, kept).await,
                    None => kept,
                }
            }
            None => None,
        };
        let skip = restored.is_some()
            && io
                .config
                .recovery
                .as_ref()
                .is_some_and(|recovery| recovery.skip_middleware);
        let verdict = decide(&handlers, &handshake, skip).await;
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
            Ok(admission) => admit(&io, session, version, ns, handshake, admission, restored),
            Err(error) => refuse(&io, session, version, &handshake.nsp, &error),
        }
    }));
}

/// What a returning client's CONNECT carries (extra keys are the application's auth).
#[derive(serde::Deserialize)]
struct Comeback {
    pid: String,
    offset: String,
}

/// Runs the synchronous middleware in order: the first refusal, if any.
fn middlewares_pass(handlers: &Namespace, handshake: &Handshake) -> Result<(), ConnectError> {
    for middleware in &handlers.middlewares {
        contain("middleware", || middleware(handshake))
            .unwrap_or_else(|| Err(ConnectError::new("server error")))?;
    }
    Ok(())
}

/// The whole decision on a CONNECT, on a task: the synchronous middleware, the authorizer
/// (either kind), then the asynchronous middleware. `skip_middleware`: a recovered socket's
/// (the authorizer still runs: what it attaches, the socket needs).
async fn decide(
    handlers: &Namespace,
    handshake: &Handshake,
    skip_middleware: bool,
) -> Result<Admission, ConnectError> {
    if !skip_middleware {
        middlewares_pass(handlers, handshake)?;
    }
    let admission = match &handlers.authorizer {
        Some(Authorizer::Now(authorize)) => contain("authorizer", || authorize(handshake))
            .unwrap_or_else(|| Err(ConnectError::new("server error")))?,
        Some(Authorizer::Later(authorize)) => {
            match contain("authorizer", || authorize(handshake.clone())) {
                Some(decision) => decision.await?,
                None => return Err(ConnectError::new("server error")),
            }
        }
        None => Admission::default(),
    };
    if !skip_middleware {
        for middleware in &handlers.async_middlewares {
            match contain("middleware", || middleware(handshake.clone())) {
                Some(check) => check.await?,
                None => return Err(ConnectError::new("server error")),
            }
        }
    }
    Ok(admission)
}

/// Answers a refused CONNECT: `{"message","data"}` for protocol 5, a bare string for 4.
fn refuse(io: &SocketIo, session: SessionKey, version: Version, nsp: &str, error: &ConnectError) {
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
    let frames = encode_packet(
        io.config.parser,
        PacketType::ConnectError,
        nsp,
        None,
        &data,
        &[],
    );
    let _ = io.send_frames(session, &frames, false);
}

/// Creates the socket, answers the CONNECT and runs the connect handler.
fn admit(
    io: &Rc<SocketIo>,
    session: SessionKey,
    version: Version,
    ns: usize,
    handshake: Handshake,
    admission: Admission,
    restored: Option<Box<Restored>>,
) {
    let name = handshake.nsp;
    let Admission {
        auth,
        data,
        rooms,
        extension,
    } = admission;
    let Some(engine_id) = io.engine.borrow().id(session) else {
        return;
    };
    let (socket, id, pid) = {
        let mut guard = io.state.borrow_mut();
        let state = &mut *guard;
        let key = state.vacant_socket();
        let id: Arc<str> = match (version, &restored) {
            // A recovered socket keeps its id (ids are names, not routes: another shard's
            // slot in it is harmless).
            (_, Some(restored)) => restored.session.sid.clone(),
            (Version::V3, None) if &*name == "/" => Arc::from(engine_id.as_str()),
            (Version::V3, None) => Arc::from(format!("{name}#{engine_id}")),
            (Version::V4, None) => {
                Arc::from(Id::generate(io.shard, key.index() as u32, &mut state.random).as_str())
            }
        };
        // Its private session id: the one it came back with, or a new secret one.
        let pid: Option<Arc<str>> = match (&io.recovery, version, &restored) {
            (_, _, Some(restored)) => Some(restored.session.pid.clone()),
            (Some(_), Version::V4, None) => {
                let pid = Id::generate(io.shard, key.index() as u32, &mut state.random);
                // On a cluster it names its node, for its return should that node die.
                Some(match io.adapter.shared_recovery() {
                    Some(shared) => format!("{}.{}", pid.as_str(), shared.node()).into(),
                    None => Arc::from(pid.as_str()),
                })
            }
            _ => None,
        };
        let data = match (data, &restored) {
            (Some(data), _) => Some(data.to_string().into_boxed_str()),
            (None, Some(restored)) => restored.session.data.clone(),
            (None, None) => None,
        };
        let socket = state.insert_socket(SocketState {
            id: id.clone(),
            ns,
            session,
            // Room for its own id room: most sockets join no other.
            rooms: Vec::with_capacity(1),
            acks: BTreeMap::new(),
            auth: auth.unwrap_or(handshake.auth),
            data,
            extension,
            recovery: pid.clone().map(|pid| {
                Box::new(SocketRecovery {
                    pid,
                    recovered: restored.is_some(),
                })
            }),
        });
        if let Some(client) = state.clients.get_mut(session) {
            client.sockets.push((ns, socket));
            client.connect_deadline = None;
        }
        (socket, id, pid)
    };
    // Its own id room appeared with it (the sharded adapter's dynamic-private mode gives it a
    // channel).
    dispatch::watch_room(io, socket, &id, true);
    let reply = match version {
        Version::V4 => {
            let mut data = Vec::with_capacity(64);
            data.extend_from_slice(br#"{"sid":"#);
            json::write_str(&mut data, &id);
            if let Some(pid) = &pid {
                data.extend_from_slice(br#","pid":"#);
                json::write_str(&mut data, pid);
            }
            data.push(b'}');
            data
        }
        Version::V3 => Vec::new(),
    };
    // A recovered socket is back in its rooms, and gets what it missed before its CONNECT
    // answer (the client dispatches them just before `connect`).
    let max_rooms = io.config.max_rooms_per_socket.saturating_add(1);
    if let Some(restored) = &restored {
        for room in restored.session.rooms.iter().filter(|r| ***r != *id) {
            dispatch::join_unobserved(io, socket, room, max_rooms);
        }
        for frames in &restored.missed {
            let _ = io.send_frames(session, frames, false);
        }
    }
    let frames = encode_packet(
        io.config.parser,
        PacketType::Connect,
        &name,
        None,
        &reply,
        &[],
    );
    let _ = io.send_frames(session, &frames, false);
    // The admission's rooms are the socket's from the start: the observer hears them with
    // `connected`, not as joins.
    for room in &rooms {
        dispatch::join_unobserved(io, socket, room, max_rooms);
    }
    dispatch::share_session(io, socket);
    let handle = super::Socket::new(io.clone(), socket, id, name);
    if let Some(observer) = &io.observer {
        contain("observer", || observer.connected(&handle));
    }
    let handlers = io.namespace_handlers(socket);
    if let Some(on_connect) = handlers.as_ref().and_then(|h| h.on_connect.as_ref()) {
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
