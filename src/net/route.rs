//! HTTP routes: the requests a listener answers that are not Engine.IO. A [`Router`] is a table
//! of (method, path) -> handler that the layers above `net` fill (the shard registers the stats
//! endpoint); `net::http` asks it before the Engine.IO endpoints and writes the [`Response`]
//! the handler gives back, with the same CORS headers as every other answer. Besides exact
//! paths a router takes patterns (`/v1/sockets/{id}`: a `{name}` segment matches one
//! non-empty segment, handed to the handler as [`Request::param`]), and a router may set its
//! own body limit and 413 answer (an API port's `max_body`, not the engine's `max_payload`).
//!
//! Every answer `net` writes is a [`Response`]: Engine.IO's [`PollReply`] converts into one.
//! This file knows HTTP only: it must not depend on Socket.IO, the shard or the bus.

use std::borrow::Cow;
use std::fmt;
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

/// A request as a route sees it: owned, its body read whole (at most the router's limit; a
/// longer one is refused with 413 before the route is called). Its `Debug` shows neither the
/// head, the query nor the body: they may carry credentials (`Authorization`, a key in the
/// query), which must never reach a log line.
#[allow(dead_code)] // The stats route reads none of these; the routes to come will.
pub(crate) struct Request {
    pub(crate) method: Method,
    /// The target before `?`.
    pub(crate) path: Box<str>,
    /// The target after `?`, `""` if none; not percent-decoded.
    pub(crate) query: Box<str>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) body: Bytes,
    /// The `{name}` segments of a pattern route, in order, not percent-decoded.
    params: Vec<(Box<str>, Box<str>)>,
    /// The whole request head (bounded by `max_head_bytes`), so that a route reads whichever
    /// headers it needs, when it needs them.
    head: Bytes,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("peer", &self.peer)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
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
            params: Vec::new(),
            head: Bytes::new(),
        }
    }

    /// The raw (not percent-decoded) segment a pattern route's `{name}` matched.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, value)| &**value)
    }

    /// Fills the `{name}` segments of the pattern `route` matched (`net::http` calls it).
    pub(crate) fn set_params(&mut self, router: &Router, route: RouteId) {
        if let Some((_, Path::Pattern(segments), _)) = router.routes.get(route.0) {
            self.params = pattern_params(segments, &self.path);
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

/// What a route matches: one exact path, or a pattern of segments.
enum Path {
    Exact(Box<str>),
    /// `/`-separated segments; `Some(name)` for a `{name}` segment.
    Pattern(Vec<Segment>),
}

/// One segment of a pattern: literal text, or a named parameter.
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
}

/// Makes a router's 413 answer (an API wants its own error body and headers).
type TooLarge = Box<dyn Fn() -> Response>;

/// What one listener answers: its routes, and whether it serves the Engine.IO endpoints
/// (`Host::endpoint`) too. Routes are matched first, exact paths before patterns, each on the
/// method too; anything else is Engine.IO's (when served) or a 404.
#[derive(Default)]
pub(crate) struct Router {
    engine_io: bool,
    routes: Vec<(Method, Path, Handler)>,
    /// The largest body a route takes; `None`: the engine's `max_payload`.
    max_body: Option<usize>,
    too_large: Option<TooLarge>,
    /// The route that answers what no other route matches (an API's own 404), if any.
    fallback: Option<RouteId>,
}

impl Router {
    /// A router for the main listener: routes, then the Engine.IO endpoints.
    pub(crate) fn with_engine_io() -> Router {
        Router {
            engine_io: true,
            ..Router::default()
        }
    }

    /// A router with routes only (a metrics or API port): Engine.IO paths are 404 here.
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
        self.routes
            .push((method, Path::Exact(path.into()), handler));
    }

    /// Answers `method` requests whose path matches `pattern` (`/v1/users/{user}/sockets`): a
    /// `{name}` segment matches any one non-empty segment, which the handler reads with
    /// [`Request::param`]. Exact routes are tried first.
    pub(crate) fn route_pattern<F, R>(&mut self, method: Method, pattern: &str, handler: F)
    where
        F: Fn(Request) -> R + 'static,
        R: Future<Output = Response> + 'static,
    {
        let segments = pattern
            .split('/')
            .map(|segment| {
                match segment
                    .strip_prefix('{')
                    .and_then(|rest| rest.strip_suffix('}'))
                {
                    Some(name) => Segment::Param(name.into()),
                    None => Segment::Literal(segment.into()),
                }
            })
            .collect();
        let handler: Handler = Box::new(move |request| Box::pin(handler(request)));
        self.routes.push((method, Path::Pattern(segments), handler));
    }

    /// Answers every request that no route matches with `handler` instead of a plain 404;
    /// only on a router without Engine.IO (whose unmatched paths are Engine.IO's).
    pub(crate) fn fallback<F, R>(&mut self, handler: F)
    where
        F: Fn(Request) -> R + 'static,
        R: Future<Output = Response> + 'static,
    {
        if self.engine_io {
            return;
        }
        let handler: Handler = Box::new(move |request| Box::pin(handler(request)));
        // A pattern of no segment at all never matches a path: only `fallback` names it.
        self.routes
            .push((Method::Other, Path::Pattern(Vec::new()), handler));
        self.fallback = Some(RouteId(self.routes.len() - 1));
    }

    /// Refuses route bodies longer than `limit` (instead of the engine's `max_payload`), with
    /// the answer `too_large` makes.
    pub(crate) fn limit_body(&mut self, limit: usize, too_large: impl Fn() -> Response + 'static) {
        self.max_body = Some(limit);
        self.too_large = Some(Box::new(too_large));
    }

    /// The largest route body this router takes, given the engine's `max_payload`.
    pub(crate) fn max_body(&self, max_payload: usize) -> usize {
        self.max_body.unwrap_or(max_payload)
    }

    /// The answer to a route request whose body is over [`Router::max_body`].
    pub(crate) fn too_large(&self) -> Response {
        self.too_large
            .as_ref()
            .map_or_else(|| Response::empty(413), |make| make())
    }

    /// Whether this listener serves the Engine.IO endpoints.
    pub(crate) fn serves_engine_io(&self) -> bool {
        self.engine_io
    }

    /// The route for a request, if any: an exact path first, then a pattern. Linear: a
    /// listener has a few dozen routes at most.
    pub(crate) fn find(&self, method: Method, path: &str) -> Option<RouteId> {
        let exact = self.routes.iter().position(|(m, p, _)| {
            *m == method && matches!(p, Path::Exact(exact) if **exact == *path)
        });
        exact
            .or_else(|| {
                self.routes.iter().position(|(m, p, _)| {
                    *m == method
                        && matches!(p, Path::Pattern(segments) if pattern_matches(segments, path))
                })
            })
            .map(RouteId)
            .or(self.fallback)
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

/// Whether `path` has as many segments as the pattern, each literal equal and each parameter
/// non-empty.
fn pattern_matches(segments: &[Segment], path: &str) -> bool {
    let mut parts = path.split('/');
    for segment in segments {
        let Some(part) = parts.next() else {
            return false;
        };
        let fits = match segment {
            Segment::Literal(literal) => **literal == *part,
            Segment::Param(_) => !part.is_empty(),
        };
        if !fits {
            return false;
        }
    }
    parts.next().is_none()
}

/// The parameters of a path the pattern matched.
fn pattern_params(segments: &[Segment], path: &str) -> Vec<(Box<str>, Box<str>)> {
    segments
        .iter()
        .zip(path.split('/'))
        .filter_map(|(segment, part)| match segment {
            Segment::Param(name) => Some((name.clone(), part.into())),
            Segment::Literal(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod pattern_tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments_and_exact_routes_win() {
        let mut router = Router::routes_only();
        router.route_pattern(Method::Get, "/v1/sockets/{id}", |_| async {
            Response::empty(200)
        });
        router.route_pattern(Method::Post, "/v1/users/{user}/disconnect", |_| async {
            Response::empty(200)
        });
        router.route(Method::Get, "/v1/sockets/all", |_| async {
            Response::empty(204)
        });
        let pattern = router.find(Method::Get, "/v1/sockets/abc");
        assert_eq!(pattern, Some(RouteId(0)));
        assert_eq!(
            router.find(Method::Get, "/v1/sockets/all"),
            Some(RouteId(2))
        );
        for path in [
            "/v1/sockets/",
            "/v1/sockets",
            "/v1/sockets/a/b",
            "/v2/sockets/a",
        ] {
            assert_eq!(router.find(Method::Get, path), None, "{path}");
        }
        assert_eq!(router.find(Method::Post, "/v1/sockets/abc"), None);
        router.fallback(|_| async { Response::empty(418) });
        assert_eq!(
            router.find(Method::Post, "/v1/sockets/abc"),
            Some(RouteId(3))
        );
        assert_eq!(
            router.find(Method::Get, "/v1/sockets/abc"),
            Some(RouteId(0))
        );
        let route = router
            .find(Method::Post, "/v1/users/42%2F7/disconnect")
            .expect("matches");
        let mut request = Request::new(Method::Post, "/v1/users/42%2F7/disconnect", "", None);
        request.set_params(&router, route);
        assert_eq!(request.param("user"), Some("42%2F7"));
        assert_eq!(request.param("id"), None);
    }

    #[test]
    fn body_limit_and_its_answer_are_the_routers() {
        let mut router = Router::routes_only();
        assert_eq!(router.max_body(100), 100);
        assert_eq!(router.too_large().status, 413);
        router.limit_body(10, || Response::new(413, "application/json", "{}"));
        assert_eq!(router.max_body(100), 10);
        assert_eq!(router.too_large().body, Bytes::from_static(b"{}"));
    }
}
