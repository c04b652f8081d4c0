//! HTTP routes: the requests a listener answers that are not Engine.IO. A [`Router`] is a table
//! of (method, path) -> handler that the layers above `net` fill (the shard registers the stats
//! endpoint); `net::http` asks it before the Engine.IO endpoints and writes the [`Response`]
//! the handler gives back, with the same CORS headers as every other answer.
//!
//! Every answer `net` writes is a [`Response`]: Engine.IO's [`PollReply`] converts into one.
//! This file knows HTTP only: it must not depend on Socket.IO, the shard or the bus.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;

use crate::codec::http::{self, Method};
use crate::engine::PollReply;

/// An HTTP answer: status, `Content-Type`, extra header lines and body. `Content-Length`,
/// `Connection` and CORS are added when it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Written only when set.
    pub(crate) content_type: Option<Cow<'static, str>>,
    /// Extra header lines, written after the CORS ones. A name or value with a line break is
    /// left out (it would let a value that came from a peer inject headers).
    pub(crate) headers: Vec<(&'static str, Cow<'static, str>)>,
    pub(crate) body: Bytes,
}

impl Response {
    /// `status` with no body and no `Content-Type`.
    pub(crate) fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// `status` with a body of the given type.
    pub(crate) fn new(
        status: u16,
        content_type: impl Into<Cow<'static, str>>,
        body: impl Into<Bytes>,
    ) -> Response {
        Response {
            status,
            content_type: Some(content_type.into()),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// 200 with a JSON body.
    pub(crate) fn json(body: impl Into<Bytes>) -> Response {
        Response::new(200, "application/json", body)
    }

    /// 404 `Not Found` (text): a path no endpoint or route serves.
    pub(crate) fn not_found() -> Response {
        Response::new(404, "text/plain", Bytes::from_static(b"Not Found"))
    }

    /// Adds a header line.
    #[allow(dead_code)] // The stats route needs none; metrics, static files and the API will.
    pub(crate) fn with_header(
        mut self,
        name: &'static str,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

impl From<PollReply> for Response {
    /// Engine.IO answers name a type even when they have no body; Node sends it only with a
    /// body or a 200, and so do we (the conformance and hostile tables check the bytes).
    fn from(reply: PollReply) -> Response {
        let typed = !reply.body.is_empty() || reply.status == 200;
        Response {
            status: reply.status,
            content_type: typed.then_some(Cow::Borrowed(reply.content_type)),
            headers: Vec::new(),
            body: reply.body,
        }
    }
}

/// A request as a route sees it: owned, its body read whole (at most `max_payload` bytes; a
/// longer one is refused with 413 before the route is called).
#[derive(Debug)]
#[allow(dead_code)] // The stats route reads none of these; the routes to come will.
pub(crate) struct Request {
    pub(crate) method: Method,
    /// The target before `?`.
    pub(crate) path: Box<str>,
    /// The target after `?`, `""` if none; not percent-decoded.
    pub(crate) query: Box<str>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) body: Bytes,
    /// The whole request head (bounded by `max_head_bytes`), so that a route reads whichever
    /// headers it needs, when it needs them.
    head: Bytes,
}

#[allow(dead_code)] // The stats route reads none of these; the routes to come will.
impl Request {
    /// A request with no head bytes and no body yet (`net::http` adds them once it has them).
    pub(crate) fn new(
        method: Method,
        path: &str,
        query: &str,
        peer: Option<SocketAddr>,
    ) -> Request {
        Request {
            method,
            path: path.into(),
            query: query.into(),
            peer,
            body: Bytes::new(),
            head: Bytes::new(),
        }
    }

    /// The request head, as read (what [`Request::header`] looks in).
    pub(crate) fn set_head(&mut self, head: Bytes) {
        self.head = head;
    }

    /// The first value of header `name` (any case), trimmed; `None` if absent or not UTF-8.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        http::header_value(&self.head, name)
    }

    /// The raw (not percent-decoded) value of query parameter `key`.
    pub(crate) fn query_param(&self, key: &str) -> Option<&str> {
        http::query_param(&self.query, key)
    }
}

/// What a route's handler returns: run on the shard that took the request, so it may hold
/// `Rc`s.
pub(crate) type ResponseFuture = Pin<Box<dyn Future<Output = Response>>>;

type Handler = Box<dyn Fn(Request) -> ResponseFuture>;

/// Which of a [`Router`]'s routes a request matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteId(usize);

/// What one listener answers: its routes, and whether it serves the Engine.IO endpoints
/// (`Host::endpoint`) too. Routes are matched first, on the exact method and path; anything
/// else is Engine.IO's (when served) or a 404.
#[derive(Default)]
pub(crate) struct Router {
    engine_io: bool,
    routes: Vec<(Method, Box<str>, Handler)>,
}

impl Router {
    /// A router for the main listener: routes, then the Engine.IO endpoints.
    pub(crate) fn with_engine_io() -> Router {
        Router {
            engine_io: true,
            routes: Vec::new(),
        }
    }

    /// A router with routes only (a metrics or API port): Engine.IO paths are 404 here.
    #[allow(dead_code)] // No second listener yet; the net tests run one.
    pub(crate) fn routes_only() -> Router {
        Router::default()
    }

    /// Answers `method` requests for exactly `path` with `handler`. A route added for a
    /// method and path already routed is never reached.
    pub(crate) fn route<F, R>(&mut self, method: Method, path: &str, handler: F)
    where
        F: Fn(Request) -> R + 'static,
        R: Future<Output = Response> + 'static,
    {
        let handler: Handler = Box::new(move |request| Box::pin(handler(request)));
        self.routes.push((method, path.into(), handler));
    }

    /// Whether this listener serves the Engine.IO endpoints.
    pub(crate) fn serves_engine_io(&self) -> bool {
        self.engine_io
    }

    /// The route for a request, if any. Linear: a listener has a handful of routes.
    pub(crate) fn find(&self, method: Method, path: &str) -> Option<RouteId> {
        self.routes
            .iter()
            .position(|(m, p, _)| *m == method && **p == *path)
            .map(RouteId)
    }

    /// Runs the route `find` returned.
    pub(crate) fn call(&self, route: RouteId, request: Request) -> ResponseFuture {
        match self.routes.get(route.0) {
            Some((_, _, handler)) => handler(request),
            // Ids come from this router's `find`; answer as for an unknown path all the same.
            None => Box::pin(std::future::ready(Response::not_found())),
        }
    }
}
