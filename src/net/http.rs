//! One HTTP/1.1 connection: request heads, bodies, keep-alive, CORS, the listener's routes
//! (`net::route`), and the Engine.IO polling endpoints (handshake, GET, POST). A WebSocket
//! upgrade hands the connection to `net::ws`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_channel::oneshot;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::route::{Request, Response, RouteId, Router};
use super::{handle_poll, ws, Forward, Host, PollRequest, Upgrade};
use crate::codec::deflate::Agreement;
use crate::codec::eio::Version;
use crate::codec::http::{self, Method};
use crate::codec::ws::accept_key;
use crate::engine::{EngineError, Peer, PollReply};
use crate::id::Id;

/// Initial read buffer; grown on demand so idle connections stay small.
const INITIAL_READ: usize = 1024;

/// What an Engine.IO request asked for, validated and owned.
struct EioRequest {
    method: Method,
    peer: Peer,
    websocket: bool,
    sid: Option<Result<Id, ()>>,
    b64: bool,
    websocket_key: Option<String>,
    websocket_deflate: Option<Agreement>,
    binary_body: bool,
}

/// What a request head asked for.
enum Target {
    Eio(EioRequest),
    /// Answer at once.
    Reply(Response),
    Preflight,
    /// One of the listener's routes; the body is read before it is called.
    Route(RouteId, Request),
}

/// What one request-response exchange left the connection in.
enum Next {
    /// Write this answer; keep the connection if the request allowed it.
    Answer(PollReply),
    /// The connection is gone, upgraded, or handed to another shard.
    Done,
}

/// The parts of a request head that outlive the parse.
struct Head {
    target: Target,
    keep_alive: bool,
    content_length: usize,
    origin: Option<String>,
    request_headers: Option<String>,
}

/// Serves one connection until it closes, is upgraded, or is handed to another shard.
pub(super) async fn serve<H: Host>(
    host: Rc<H>,
    router: Rc<Router>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let mut buf = BytesMut::with_capacity(INITIAL_READ);
    let address = Some(peer);
    loop {
        let head = match read_head(&*host, &router, &mut stream, &mut buf, address).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(status) => {
                let response = Response::empty(status);
                let _ = write_response(&*host, &mut stream, &response, false, None, None).await;
                return;
            }
        };
        let in_flight = InFlight::new(&*host);
        let origin = head.origin.as_deref();
        let unread = head.content_length;
        let max_payload = host.engine_config().max_payload;
        let route_limit = router.max_body(max_payload);
        // (answer, whether it answers a CORS preflight, body bytes still to skip, whether the
        // connection closes lingeringly)
        let (response, preflight, unread, linger) = match head.target {
            Target::Reply(response) => (response, false, unread, false),
            // Refused unread, as an Engine.IO body would be: the connection closes after,
            // lingering so that a client still writing the body reads the answer.
            Target::Route(..) if unread > route_limit => (router.too_large(), false, unread, true),
            Target::Route(route, mut request) => {
                // A client that waits for permission to send its body gets it now (RFC 9110
                // 10.1.1); one over the limit got the 413 above instead.
                if unread > buf.len()
                    && expects_continue(&request)
                    // Boxed, as the linger below: a rare path's state must not grow the
                    // connection's task, which every idle WebSocket holds for its life.
                    && !Box::pin(write_continue(&mut stream)).await
                {
                    return;
                }
                let Some(body) = read_body(&mut stream, &mut buf, unread).await else {
                    return;
                };
                request.body = body;
                (router.call(route, request).await, false, 0, false)
            }
            Target::Preflight => (Response::empty(204), true, unread, false),
            Target::Eio(request) if request.websocket => match websocket(&mut buf, request) {
                Ok(upgrade) => {
                    // The WebSocket brings its own buffer; this one is not kept for its life.
                    drop(buf);
                    drop(in_flight);
                    return ws::start(host, stream, upgrade).await;
                }
                Err(reply) => (reply.into(), false, unread, false),
            },
            Target::Eio(request) => {
                match exchange(&*host, &mut stream, &mut buf, request, unread).await {
                    Next::Answer(reply) => (reply.into(), false, 0, false),
                    Next::Done => return,
                }
            }
        };
        // An oversized body is never read: the connection cannot continue after it.
        let oversized = response.status == 413 || unread > max_payload;
        let keep_alive = head.keep_alive && !oversized;
        let preflight = preflight.then_some(head.request_headers.as_deref());
        let written = write_response(
            &*host,
            &mut stream,
            &response,
            keep_alive,
            origin,
            preflight,
        );
        if !written.await {
            return;
        }
        if !keep_alive {
            drop(in_flight);
            if linger {
                Box::pin(linger_close(&mut stream)).await;
            }
            return;
        }
        drop(in_flight);
        if read_body(&mut stream, &mut buf, unread).await.is_none() {
            return;
        }
    }
}

/// Counts one request, from its head read to its answer written, in
/// [`Host::requests_in_flight`].
struct InFlight<'h, H: Host>(&'h H);

impl<'h, H: Host> InFlight<'h, H> {
    fn new(host: &'h H) -> Self {
        let count = host.requests_in_flight();
        count.set(count.get() + 1);
        InFlight(host)
    }
}

impl<H: Host> Drop for InFlight<'_, H> {
    fn drop(&mut self) {
        let count = self.0.requests_in_flight();
        count.set(count.get() - 1);
    }
}

/// Reads until a whole request head is buffered, parses it, and consumes it from `buf`.
/// `Ok(None)`: the peer closed; `Err(status)`: a malformed or oversized head.
async fn read_head<H: Host>(
    host: &H,
    router: &Router,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    address: Option<SocketAddr>,
) -> Result<Option<Head>, u16> {
    let max_head = host.http_config().max_head_bytes;
    // Created on the first wait only: most heads arrive whole with the first read. Boxed, as
    // every timer here, so that it takes no room in the connection's task between requests.
    let mut deadline = None;
    loop {
        match http::parse_request(buf, max_head) {
            Ok(Some(request)) => {
                let mut head = Head {
                    target: target(host, router, &request, &buf[..request.head_len], address),
                    keep_alive: request.keep_alive,
                    content_length: request.content_length,
                    origin: request.origin.map(str::to_owned),
                    request_headers: request.access_control_request_headers.map(str::to_owned),
                };
                let head_len = request.head_len;
                match &mut head.target {
                    // A route reads its headers from the head itself: hand it over, uncopied.
                    Target::Route(_, routed) => routed.set_head(buf.split_to(head_len).freeze()),
                    _ => buf.advance(head_len),
                }
                return Ok(Some(head));
            }
            Ok(None) => {
                let timer = deadline.get_or_insert_with(|| {
                    Box::pin(monoio::time::sleep(host.http_config().head_timeout))
                });
                // Noted before the read: a read cut short by the timer takes the buffer with it.
                let partial = !buf.is_empty();
                let read = monoio::select! {
                    read = read_more(stream, buf) => read,
                    () = timer.as_mut() => {
                        // A silent keep-alive connection just closes; a head left unfinished
                        // is told why.
                        return if partial { Err(408) } else { Ok(None) };
                    }
                };
                if !read {
                    return Ok(None);
                }
            }
            Err(error) => return Err(error.status()),
        }
    }
}

/// Runs one Engine.IO request: a WebSocket upgrade, a handshake, a GET or a POST. The body
/// (`content_length` bytes) is always consumed, so keep-alive stays in step.
async fn exchange<H: Host>(
    host: &H,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    request: EioRequest,
    content_length: usize,
) -> Next {
    if content_length > host.engine_config().max_payload {
        // Refused unread: the connection closes after the answer.
        if let (Method::Post, Some(Ok(sid))) = (request.method, request.sid) {
            send_to_owner(host, sid, PollRequest::TooLarge, None);
        }
        return Next::Answer(PollReply::error(EngineError::PayloadTooLarge));
    }
    let Some(body) = read_body(stream, buf, content_length).await else {
        return Next::Done;
    };
    let sid = match request.sid {
        None if request.method == Method::Get => {
            let now = Instant::now();
            let mut engine = host.engine().borrow_mut();
            if let Err(refused) = engine.admit(request.peer.address, now) {
                return Next::Answer(PollReply::error(refused));
            }
            let (_, reply) = engine.open_polling(now, request.peer, !request.b64);
            drop(engine);
            host.pump();
            return Next::Answer(reply);
        }
        None => return Next::Answer(PollReply::error(EngineError::BadHandshakeMethod)),
        Some(Err(())) => return Next::Answer(PollReply::error(EngineError::UnknownSid)),
        Some(Ok(sid)) => sid,
    };
    let reply = match request.method {
        Method::Get => poll_get(host, stream, buf, sid).await,
        Method::Post => {
            let (sender, receiver) = oneshot::channel();
            let post = PollRequest::Post {
                body,
                binary: request.binary_body,
            };
            send_to_owner(host, sid, post, Some(sender));
            receiver.await.ok()
        }
        _ => Some(PollReply::error(EngineError::BadRequest)),
    };
    reply.map_or(Next::Done, Next::Answer)
}

/// Checks a WebSocket request; the upgrade itself is `net::ws`'s (possibly on the owner shard).
fn websocket(buf: &mut BytesMut, request: EioRequest) -> Result<Upgrade, PollReply> {
    let Some(key) = request.websocket_key else {
        return Err(PollReply::error(EngineError::BadRequest));
    };
    let sid = match request.sid {
        None => None,
        Some(Ok(sid)) => Some(sid),
        Some(Err(())) => return Err(PollReply::error(EngineError::UnknownSid)),
    };
    Ok(Upgrade {
        accept: accept_key(&key),
        deflate: request.websocket_deflate,
        sid,
        peer: request.peer,
        leftover: buf.split().freeze(),
    })
}

/// Picks what to do with a request: one of the listener's routes, else an Engine.IO endpoint
/// (its query validated), else 404.
fn target<H: Host>(
    host: &H,
    router: &Router,
    request: &http::Request<'_>,
    head: &[u8],
    address: Option<SocketAddr>,
) -> Target {
    let (method, path, query) = (request.method, request.path, request.query);
    if let Some(route) = router.find(method, path) {
        let mut routed = Request::new(method, path, query, address);
        routed.set_params(router, route);
        return Target::Route(route, routed);
    }
    let endpoint = router.serves_engine_io().then(|| host.endpoint(path));
    let Some(endpoint) = endpoint.flatten() else {
        return Target::Reply(Response::not_found());
    };
    if method == Method::Options && request.websocket_key.is_none() {
        return Target::Preflight;
    }
    // A request with no sid is a handshake: its refusal is counted (and logged) by the engine.
    let refuse = |error| {
        if http::query_param(query, "sid").is_none() {
            let mut engine = host.engine().borrow_mut();
            engine.handshake_refused(error, address, Instant::now());
        }
        Target::Reply(PollReply::error(error).into())
    };
    let version = match http::query_param(query, "EIO") {
        Some("4") => Version::V4,
        Some("3") if host.engine_config().allow_eio3 => Version::V3,
        _ => return refuse(EngineError::UnsupportedVersion),
    };
    let websocket = match http::query_param(query, "transport") {
        Some("polling") => false,
        Some("websocket") => true,
        _ => return refuse(EngineError::UnknownTransport),
    };
    if websocket != request.websocket_requested {
        return refuse(EngineError::BadRequest);
    }
    Target::Eio(EioRequest {
        method,
        peer: Peer {
            endpoint,
            version,
            query: query.into(),
            address,
            // Only a handshake's are kept: a request of an open session has nothing to add.
            headers: match http::query_param(query, "sid") {
                None => kept_headers(&host.engine_config().handshake_headers, head),
                Some(_) => Box::default(),
            },
        },
        websocket,
        sid: http::query_param(query, "sid").map(|sid| Id::parse(sid).ok_or(())),
        b64: http::query_param(query, "b64").is_some(),
        websocket_key: request.websocket_key.map(str::to_owned),
        websocket_deflate: request.websocket_deflate,
        binary_body: request
            .content_type
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream")),
    })
}

/// The headers of `head` a session keeps (`EngineConfig::handshake_headers`).
fn kept_headers(names: &[String], head: &[u8]) -> Box<[(Box<str>, Box<str>)]> {
    names
        .iter()
        .filter_map(|name| {
            http::header_value(head, name).map(|value| (name.as_str().into(), value.into()))
        })
        .collect()
}

/// Sends a polling request to the owner of `sid` (this shard or another).
fn send_to_owner<H: Host>(
    host: &H,
    sid: Id,
    request: PollRequest,
    reply: Option<crate::engine::PollWaiter>,
) {
    let owner = sid.shard();
    if owner == host.shard() {
        handle_poll(host, sid, request, reply);
    } else if owner.index() < usize::from(host.shards()) {
        host.forward(
            owner,
            Forward::Poll {
                sid,
                request,
                reply,
            },
        );
    } else if let Some(reply) = reply {
        let _ = reply.send(PollReply::error(EngineError::UnknownSid));
    }
}

/// A GET: waits for the owner's answer while watching the connection, so that a client that
/// aborts its long-poll closes the session at once (conformance.md §5.1 #13).
async fn poll_get<H: Host>(
    host: &H,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    sid: Id,
) -> Option<PollReply> {
    let (sender, mut receiver) = oneshot::channel();
    send_to_owner(host, sid, PollRequest::Get, Some(sender));
    let mut watching = true;
    loop {
        if !watching {
            return receiver.await.ok();
        }
        monoio::select! {
            reply = &mut receiver => return reply.ok(),
            readable = stream.readable(false) => {
                if readable.is_err() || !read_more(stream, buf).await {
                    send_to_owner(host, sid, PollRequest::Aborted, None);
                    return None;
                }
                // A pipelined request: keep it buffered, stop watching.
                watching = false;
            }
        }
    }
}

/// Whether a route's request asked for `100 Continue` before it sends its body.
fn expects_continue(request: &Request) -> bool {
    request
        .header("expect")
        .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"))
}

/// Tells the client to send its body; false if the connection broke.
async fn write_continue(stream: &mut TcpStream) -> bool {
    let (result, _) = stream
        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec())
        .await;
    result.is_ok()
}

/// How long, and how many bytes, a connection refused for its body's size is read and
/// discarded before it is closed.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Closes a connection whose body was refused unread without losing the answer: a close with
/// unread input makes the kernel send a reset, which can destroy the answer before a client
/// that writes its whole body first (Python's urllib and many others) reads it. So the write
/// half is shut (the client sees the end of the answer), then input is discarded for up to
/// [`LINGER_TIME`] or [`LINGER_BYTES`], whichever comes first (a bounded cost per hostile
/// peer), then the connection closes.
async fn linger_close(stream: &mut TcpStream) {
    use monoio::io::AsyncWriteRent;
    let _ = stream.shutdown().await;
    let discard = async {
        let mut scratch = BytesMut::with_capacity(16 * 1024);
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            scratch.clear();
            if !super::read_into(stream, &mut scratch, 16 * 1024).await {
                return;
            }
            discarded += scratch.len();
        }
    };
    monoio::select! {
        () = discard => {},
        () = monoio::time::sleep(LINGER_TIME) => {},
    }
}

/// Reads more bytes into `buf`; false on EOF or error.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> bool {
    super::read_into(stream, buf, INITIAL_READ).await
}

async fn read_body(stream: &mut TcpStream, buf: &mut BytesMut, length: usize) -> Option<Bytes> {
    while buf.len() < length {
        buf.reserve(length - buf.len());
        if !read_more(stream, buf).await {
            return None;
        }
    }
    Some(buf.split_to(length).freeze())
}

/// Writes a response with CORS headers (with the preflight ones, given the requested
/// headers, when `preflight` is set) before its own; false if the connection broke.
async fn write_response<H: Host>(
    host: &H,
    stream: &mut TcpStream,
    response: &Response,
    keep_alive: bool,
    origin: Option<&str>,
    preflight: Option<Option<&str>>,
) -> bool {
    let mut extra = Vec::new();
    let requested_headers = preflight.flatten();
    host.cors()
        .write_headers(&mut extra, origin, preflight.is_some(), requested_headers);
    for (name, value) in &response.headers {
        if !http::write_header(&mut extra, name, value) {
            tracing::warn!(
                name,
                "a response header that is not a valid line was left out"
            );
        }
    }
    let mut out = Vec::with_capacity(256 + response.body.len());
    http::write_response_head(
        &mut out,
        response.status,
        response.content_type.as_deref(),
        response.body.len(),
        keep_alive,
        &extra,
    );
    out.extend_from_slice(&response.body);
    let (result, _) = stream.write_all(out).await;
    result.is_ok()
}
