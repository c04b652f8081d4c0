//! One HTTP/1.1 connection: request heads, bodies, keep-alive, CORS, and the Engine.IO polling
//! endpoints (handshake, GET, POST). A WebSocket upgrade hands the connection to `net::ws`.

use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_channel::oneshot;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::{handle_poll, ws, Forward, Host, PollRequest, Upgrade};
use crate::codec::eio::Version;
use crate::codec::http::{self, Method};
use crate::codec::ws::accept_key;
use crate::engine::{EngineError, PollReply};
use crate::id::Id;

/// Initial read buffer; grown on demand so idle connections stay small.
const INITIAL_READ: usize = 1024;

/// What an Engine.IO request asked for, validated and owned.
struct EioRequest {
    method: Method,
    endpoint: u8,
    version: Version,
    websocket: bool,
    sid: Option<Result<Id, ()>>,
    b64: bool,
    websocket_key: Option<String>,
    binary_body: bool,
    content_length: usize,
    keep_alive: bool,
}

enum Route {
    Eio(EioRequest),
    /// Answer and carry on (or close when `keep_alive` is false).
    Reply(PollReply),
    Preflight,
}

/// Serves one connection until it closes, is upgraded, or is handed to another shard.
pub(super) async fn serve<H: Host>(host: Rc<H>, mut stream: TcpStream) {
    let mut buf = BytesMut::with_capacity(INITIAL_READ);
    loop {
        let max_head = host.engine_config().max_head_bytes;
        // Read until a whole request head is buffered.
        let (route, head_len, keep_alive, origin, request_headers) = loop {
            match http::parse_request(&buf, max_head) {
                Ok(Some(request)) => {
                    let keep_alive = request.keep_alive;
                    let origin = request.origin.map(str::to_owned);
                    let request_headers = request.access_control_request_headers.map(str::to_owned);
                    let route = route(&*host, &request);
                    break (route, request.head_len, keep_alive, origin, request_headers);
                }
                Ok(None) => {
                    if !read_more(&mut stream, &mut buf).await {
                        return;
                    }
                }
                Err(error) => {
                    let status = error.status();
                    let _ = write_reply(
                        &*host,
                        &mut stream,
                        &PollReply {
                            status,
                            content_type: "text/plain",
                            body: Bytes::new(),
                        },
                        false,
                        None,
                    )
                    .await;
                    return;
                }
            }
        };
        buf.advance(head_len);
        let origin = origin.as_deref();
        let request = match route {
            Route::Reply(reply) => {
                if !write_reply(&*host, &mut stream, &reply, keep_alive, origin).await
                    || !keep_alive
                {
                    return;
                }
                continue;
            }
            Route::Preflight => {
                let mut head = Vec::with_capacity(256);
                let mut extra = Vec::new();
                host.cors()
                    .write_headers(&mut extra, origin, true, request_headers.as_deref());
                http::write_response_head(&mut head, 204, None, 0, keep_alive, &extra);
                let (result, _) = stream.write_all(head).await;
                if result.is_err() || !keep_alive {
                    return;
                }
                continue;
            }
            Route::Eio(request) => request,
        };
        if request.websocket {
            let Some(key) = request.websocket_key else {
                let reply = PollReply::error(EngineError::BadRequest);
                let _ = write_reply(&*host, &mut stream, &reply, false, origin).await;
                return;
            };
            let sid = match request.sid {
                None => None,
                Some(Ok(sid)) => Some(sid),
                Some(Err(())) => {
                    let reply = PollReply::error(EngineError::UnknownSid);
                    let _ = write_reply(&*host, &mut stream, &reply, false, origin).await;
                    return;
                }
            };
            let upgrade = Upgrade {
                accept: accept_key(&key),
                sid,
                version: request.version,
                endpoint: request.endpoint,
                leftover: buf.split().freeze(),
            };
            return ws::start(host, stream, upgrade).await;
        }
        // Long-polling.
        let Some(sid) = request.sid else {
            if request.method != Method::Get {
                let reply = PollReply::error(EngineError::BadHandshakeMethod);
                if !write_reply(&*host, &mut stream, &reply, request.keep_alive, origin).await
                    || !request.keep_alive
                {
                    return;
                }
                if !discard_body(&mut stream, &mut buf, request.content_length).await {
                    return;
                }
                continue;
            }
            let (_, reply) = host.engine().borrow_mut().open_polling(
                Instant::now(),
                request.endpoint,
                request.version,
                !request.b64,
            );
            host.pump();
            if !write_reply(&*host, &mut stream, &reply, request.keep_alive, origin).await
                || !request.keep_alive
            {
                return;
            }
            continue;
        };
        let Ok(sid) = sid else {
            let reply = PollReply::error(EngineError::UnknownSid);
            if !write_reply(&*host, &mut stream, &reply, request.keep_alive, origin).await
                || !request.keep_alive
            {
                return;
            }
            continue;
        };
        let reply = match request.method {
            Method::Get => poll_get(&*host, &mut stream, &mut buf, sid).await,
            Method::Post => {
                if request.content_length > host.engine_config().max_payload {
                    send_to_owner(&*host, sid, PollRequest::TooLarge, None);
                    let reply = PollReply::error(EngineError::PayloadTooLarge);
                    let _ = write_reply(&*host, &mut stream, &reply, false, origin).await;
                    return;
                }
                let Some(body) = read_body(&mut stream, &mut buf, request.content_length).await
                else {
                    return;
                };
                let (sender, receiver) = oneshot::channel();
                let post = PollRequest::Post {
                    body,
                    binary: request.binary_body,
                };
                send_to_owner(&*host, sid, post, Some(sender));
                receiver.await.ok()
            }
            _ => Some(PollReply::error(EngineError::BadRequest)),
        };
        let Some(reply) = reply else {
            return;
        };
        if !write_reply(&*host, &mut stream, &reply, request.keep_alive, origin).await
            || !request.keep_alive
        {
            return;
        }
    }
}

/// Validates the Engine.IO query and picks what to do with a request.
fn route<H: Host>(host: &H, request: &http::Request<'_>) -> Route {
    let Some(endpoint) = host.endpoint(request.path) else {
        return Route::Reply(PollReply {
            status: 404,
            content_type: "text/plain",
            body: Bytes::from_static(b"Not Found"),
        });
    };
    if request.method == Method::Options && request.websocket_key.is_none() {
        return Route::Preflight;
    }
    let query = request.query;
    let version = match http::query_param(query, "EIO") {
        Some("4") => Version::V4,
        Some("3") if host.engine_config().allow_eio3 => Version::V3,
        _ => return Route::Reply(PollReply::error(EngineError::UnsupportedVersion)),
    };
    let websocket = match http::query_param(query, "transport") {
        Some("polling") => false,
        Some("websocket") => true,
        _ => return Route::Reply(PollReply::error(EngineError::UnknownTransport)),
    };
    if websocket != request.websocket_requested {
        return Route::Reply(PollReply::error(EngineError::BadRequest));
    }
    Route::Eio(EioRequest {
        method: request.method,
        endpoint,
        version,
        websocket,
        sid: http::query_param(query, "sid").map(|sid| Id::parse(sid).ok_or(())),
        b64: http::query_param(query, "b64").is_some(),
        websocket_key: request.websocket_key.map(str::to_owned),
        binary_body: request
            .content_type
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream")),
        content_length: request.content_length,
        keep_alive: request.keep_alive,
    })
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
    } else if owner < host.shards() {
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

/// Answers a forwarded poll request on the owner shard.
pub(crate) fn answer_forwarded_poll<H: Host>(
    host: &H,
    sid: Id,
    request: PollRequest,
    reply: Option<crate::engine::PollWaiter>,
) {
    handle_poll(host, sid, request, reply)
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

async fn discard_body(stream: &mut TcpStream, buf: &mut BytesMut, length: usize) -> bool {
    read_body(stream, buf, length).await.is_some()
}

/// Writes a response with CORS headers; false if the connection broke.
async fn write_reply<H: Host>(
    host: &H,
    stream: &mut TcpStream,
    reply: &PollReply,
    keep_alive: bool,
    origin: Option<&str>,
) -> bool {
    let mut extra = Vec::new();
    host.cors().write_headers(&mut extra, origin, false, None);
    let mut out = Vec::with_capacity(256 + reply.body.len());
    let content_type =
        (!reply.body.is_empty() || reply.status == 200).then_some(reply.content_type);
    http::write_response_head(
        &mut out,
        reply.status,
        content_type,
        reply.body.len(),
        keep_alive,
        &extra,
    );
    out.extend_from_slice(&reply.body);
    let (result, _) = stream.write_all(out).await;
    result.is_ok()
}
