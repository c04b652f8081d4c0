//! What a library user declares once per namespace: connect middleware and handlers. Shared
//! by every shard (`Send + Sync`); each shard calls them on its own thread with shard-local
//! [`Socket`] handles.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::{
    AckSender, BroadcastOperator, DisconnectReason, Message, ObserverFactory, ServerAck, Socket,
};
use crate::codec::{http, json};

type Middleware = dyn Fn(&Handshake) -> Result<(), ConnectError> + Send + Sync;
type AsyncMiddleware = dyn Fn(Handshake) -> MiddlewareFuture + Send + Sync;
/// What an asynchronous middleware returns: a shard-local future with the verdict.
pub type MiddlewareFuture = Pin<Box<dyn Future<Output = Result<(), ConnectError>>>>;
type ConnectHandler = dyn Fn(&Socket) + Send + Sync;
type EventHandler = dyn Fn(&Socket, Message, Option<AckSender>) + Send + Sync;
type DisconnectHandler = dyn Fn(&Socket, DisconnectReason) + Send + Sync;
type AnyEventHandler = dyn Fn(&Socket, &str, Message, Option<AckSender>) + Send + Sync;
type Admits = dyn Fn(&str) -> bool + Send + Sync;
type SyncAuthorizer = dyn Fn(&Handshake) -> Result<Admission, ConnectError> + Send + Sync;
type AsyncAuthorizer = dyn Fn(Handshake) -> AdmissionFuture + Send + Sync;
/// What an asynchronous authorizer returns: a shard-local future with the admission.
pub type AdmissionFuture = Pin<Box<dyn Future<Output = Result<Admission, ConnectError>>>>;

/// A namespace's authorizer, answering at once or later.
#[derive(Clone)]
pub(crate) enum Authorizer {
    Now(Arc<SyncAuthorizer>),
    Later(Arc<AsyncAuthorizer>),
}
type ServerEventHandler = dyn Fn(BroadcastOperator, Message, Option<ServerAck>) + Send + Sync;

/// The handlers of one namespace (or of every namespace a dynamic pattern admits).
#[derive(Clone, Default)]
pub struct Namespace {
    pub(crate) middlewares: Vec<Arc<Middleware>>,
    pub(crate) async_middlewares: Vec<Arc<AsyncMiddleware>>,
    pub(crate) authorizer: Option<Authorizer>,
    pub(crate) on_connect: Option<Arc<ConnectHandler>>,
    pub(crate) on_disconnect: Option<Arc<DisconnectHandler>>,
    pub(crate) events: HashMap<Box<str>, Arc<EventHandler>>,
    pub(crate) on_any: Option<Arc<AnyEventHandler>>,
    pub(crate) server_events: HashMap<Box<str>, Arc<ServerEventHandler>>,
}

impl Namespace {
    /// A namespace with no handlers: clients may connect, and events are ignored.
    pub fn new() -> Namespace {
        Namespace::default()
    }

    /// Adds connect middleware; they run in order and the first error refuses the connection
    /// with a CONNECT_ERROR.
    pub fn middleware(
        mut self,
        check: impl Fn(&Handshake) -> Result<(), ConnectError> + Send + Sync + 'static,
    ) -> Namespace {
        self.middlewares.push(Arc::new(check));
        self
    }

    /// Adds asynchronous connect middleware (a token check against another service, say). It
    /// runs after every synchronous one, on the shard's thread, so its future may use
    /// shard-local I/O; the client waits for the CONNECT reply meanwhile.
    pub fn async_middleware<F>(
        mut self,
        check: impl Fn(Handshake) -> F + Send + Sync + 'static,
    ) -> Namespace
    where
        F: Future<Output = Result<(), ConnectError>> + 'static,
    {
        self.async_middlewares
            .push(Arc::new(move |handshake| Box::pin(check(handshake))));
        self
    }

    /// Decides who the connecting client is: after the synchronous middleware (and before
    /// the asynchronous ones), `check` refuses the CONNECT or admits it with an
    /// [`Admission`]: what to keep as the socket's auth and data, the rooms it starts in and a
    /// value of the application's for the socket's life ([`Socket::extension`]). Runs on the
    /// shard's thread, so the admission may hold shard-local values. One per namespace; a
    /// second call replaces the first.
    pub fn authorize(
        mut self,
        check: impl Fn(&Handshake) -> Result<Admission, ConnectError> + Send + Sync + 'static,
    ) -> Namespace {
        self.authorizer = Some(Authorizer::Now(Arc::new(check)));
        self
    }

    /// [`Namespace::authorize`] for a decision that waits on something (a backend's answer):
    /// the future runs on the shard's thread, before the asynchronous middleware, while the
    /// client waits for its CONNECT reply. One authorizer per namespace, either kind.
    pub fn authorize_async<F>(
        mut self,
        check: impl Fn(Handshake) -> F + Send + Sync + 'static,
    ) -> Namespace
    where
        F: Future<Output = Result<Admission, ConnectError>> + 'static,
    {
        self.authorizer = Some(Authorizer::Later(Arc::new(move |handshake| {
            Box::pin(check(handshake))
        })));
        self
    }

    /// Called once a socket has connected (after its CONNECT reply is queued).
    pub fn on_connect(mut self, handler: impl Fn(&Socket) + Send + Sync + 'static) -> Namespace {
        self.on_connect = Some(Arc::new(handler));
        self
    }

    /// Called when a socket leaves the namespace, whatever the reason.
    pub fn on_disconnect(
        mut self,
        handler: impl Fn(&Socket, DisconnectReason) + Send + Sync + 'static,
    ) -> Namespace {
        self.on_disconnect = Some(Arc::new(handler));
        self
    }

    /// Handles event `name`. The [`AckSender`] is there when the client asked for an ack.
    pub fn on(
        mut self,
        name: &str,
        handler: impl Fn(&Socket, Message, Option<AckSender>) + Send + Sync + 'static,
    ) -> Namespace {
        self.events.insert(name.into(), Arc::new(handler));
        self
    }

    /// Handles every event that has no handler of its own.
    pub fn on_any(
        mut self,
        handler: impl Fn(&Socket, &str, Message, Option<AckSender>) + Send + Sync + 'static,
    ) -> Namespace {
        self.on_any = Some(Arc::new(handler));
        self
    }
}

impl Namespace {
    /// Handles event `name` sent by another server of the cluster with
    /// `server_side_emit` (or Node's `serverSideEmit`, or an emitter's), not by a client. It
    /// runs on one shard of this process, with an operator on the namespace (to emit to
    /// clients, say); the [`ServerAck`] is there when the sender waits for an answer.
    pub fn on_server_side_emit(
        mut self,
        name: &str,
        handler: impl Fn(BroadcastOperator, Message, Option<ServerAck>) + Send + Sync + 'static,
    ) -> Namespace {
        self.server_events.insert(name.into(), Arc::new(handler));
        self
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("middlewares", &self.middlewares.len())
            .field("async_middlewares", &self.async_middlewares.len())
            .field("authorizer", &self.authorizer.is_some())
            .field("events", &self.events.keys().collect::<Vec<_>>())
            .field(
                "server_events",
                &self.server_events.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a client sent to join a namespace, as middleware sees it.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub(crate) nsp: Arc<str>,
    pub(crate) auth: Bytes,
    pub(crate) protocol: u8,
    pub(crate) query: Box<str>,
    pub(crate) address: Option<SocketAddr>,
    pub(crate) headers: Box<[(Box<str>, Box<str>)]>,
}

impl Handshake {
    /// The namespace being joined.
    pub fn nsp(&self) -> &str {
        &self.nsp
    }

    /// The raw JSON auth object (`{}` when the client sent none). For protocol 4 clients
    /// (socket.io-client 2.x) it holds the namespace query parameters.
    pub fn auth_raw(&self) -> &[u8] {
        &self.auth
    }

    /// The auth object decoded into any type.
    pub fn auth<T: serde::de::DeserializeOwned>(&self) -> Result<T, json::JsonError> {
        json::from_slice(&self.auth)
    }

    /// The query string of the client's Engine.IO handshake request (`EIO=4&transport=...`
    /// plus whatever the client added with its `query` option).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// One parameter of the handshake query, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        query_param(&self.query, key)
    }

    /// The client's address, when known.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// A header of the client's Engine.IO handshake request, when the server keeps it
    /// (`EngineConfig::handshake_headers` names it; `name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(kept, _)| **kept == *name)
            .map(|(_, value)| &**value)
    }

    /// Socket.IO protocol revision of the client: 5, or 4 for socket.io-client 2.x.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }
}

/// How an authorizer ([`Namespace::authorize`]) admits a socket. The default keeps the
/// handshake's auth, sets no data, joins no room and attaches nothing.
#[derive(Default)]
pub struct Admission {
    pub(crate) auth: Option<Bytes>,
    pub(crate) data: Option<serde_json::Value>,
    pub(crate) rooms: Vec<String>,
    pub(crate) extension: Option<Rc<dyn Any>>,
}

impl Admission {
    /// Admits the socket as it came.
    pub fn new() -> Admission {
        Admission::default()
    }

    /// Keeps `auth` (a JSON object) as the socket's auth instead of what the client sent:
    /// what `fetch_sockets`, other nodes and the Admin UI see (a credential taken out, say).
    pub fn auth(mut self, auth: Bytes) -> Admission {
        self.auth = Some(auth);
        self
    }

    /// Starts the socket with this data ([`Socket::set_data`]).
    pub fn data(mut self, data: serde_json::Value) -> Admission {
        self.data = Some(data);
        self
    }

    /// Joins `room` once connected, before the connect handler runs (past the room limit, it
    /// is not joined).
    pub fn join(mut self, room: impl Into<String>) -> Admission {
        self.rooms.push(room.into());
        self
    }

    /// Keeps `value` with the socket for its life, read back with [`Socket::extension`].
    pub fn extension<T: 'static>(mut self, value: Rc<T>) -> Admission {
        self.extension = Some(value);
        self
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("rooms", &self.rooms)
            .field("extension", &self.extension.is_some())
            .finish_non_exhaustive()
    }
}

/// A refusal by middleware, sent to the client as CONNECT_ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub(crate) message: String,
    pub(crate) data: Option<Bytes>,
}

impl ConnectError {
    /// A refusal with a message (the client's `connect_error` has `err.message`).
    pub fn new(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Adds a JSON value as `err.data`.
    pub fn with_data<T: serde::Serialize>(mut self, data: &T) -> ConnectError {
        let mut raw = Vec::new();
        if json::to_writer(&mut raw, data).is_ok() {
            self.data = Some(raw.into());
        }
        self
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What the application declares for every shard: namespaces (declared names and dynamic
/// patterns) and the lifecycle observers.
#[derive(Clone, Default)]
pub struct Namespaces {
    pub(crate) declared: HashMap<Box<str>, Arc<Namespace>>,
    pub(crate) dynamic: Vec<(Arc<Admits>, Arc<Namespace>)>,
    pub(crate) observers: Vec<Arc<ObserverFactory>>,
}

impl Namespaces {
    /// Serves `namespace` as `name`: for benches that build a shard by hand (through
    /// `ringcast::internals`); applications use `ServerBuilder::namespace`.
    pub fn declare(&mut self, name: &str, namespace: Namespace) {
        self.declared.insert(name.into(), Arc::new(namespace));
    }

    /// The handlers for `name`, declared or admitted by a dynamic pattern.
    pub(crate) fn resolve(&self, name: &str) -> Option<Arc<Namespace>> {
        if let Some(ns) = self.declared.get(name) {
            return Some(ns.clone());
        }
        self.dynamic
            .iter()
            .find(|(admits, _)| admits(name))
            .map(|(_, ns)| ns.clone())
    }
}

/// One parameter of a query string, percent-decoded (`+` is a space).
pub(crate) fn query_param(query: &str, key: &str) -> Option<String> {
    http::query_param(query, key).map(percent_decode)
}

/// Decodes `%XX` escapes and `+`; invalid escapes stay as they are.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
