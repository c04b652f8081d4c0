//! The only socket I/O: accepting connections, HTTP/1.1 request handling (polling endpoints,
//! routes, CORS), the WebSocket driver and vectored writes; outbound, `client`'s HTTP/1.1 POSTs
//! to backend hooks.
//!
//! It speaks HTTP, WebSocket and Engine.IO framing and never interprets Socket.IO: it feeds
//! the shard's [`Engine`] and asks its [`Host`] to run the application afterwards. Requests for
//! sessions owned by another shard travel as [`Forward`] messages. What a listener answers
//! besides Engine.IO is its [`Router`]'s, filled by the layers above.

pub(crate) mod client;
mod http;
pub(crate) mod redis;
mod route;
#[cfg(test)]
mod tests;
mod ws;

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpListener;

use crate::codec::deflate::Agreement;
use crate::codec::http::Cors;
use crate::config::{EngineConfig, HttpConfig};
use crate::engine::{Engine, Peer, PollReply, PollWaiter};
use crate::id::Id;
use crate::key::ShardId;

pub(crate) use route::{Request, Response, Router};
pub(crate) use ws::{adopt_websocket, write_direct};

/// What the network layer needs from its shard.
pub(crate) trait Host: 'static {
    /// The shard's Engine.IO sessions.
    fn engine(&self) -> &RefCell<Engine>;
    /// Engine.IO options.
    fn engine_config(&self) -> &EngineConfig;
    /// HTTP connection options.
    fn http_config(&self) -> &HttpConfig;
    /// CORS policy for polling responses.
    fn cors(&self) -> &Cors;
    /// This shard's index and the number of shards.
    fn shard(&self) -> ShardId;
    /// Number of shards.
    fn shards(&self) -> u16;
    /// The engine endpoint served at an HTTP path, if any.
    fn endpoint(&self, path: &str) -> Option<u8>;
    /// Runs the application on everything the engine produced, then flushes.
    fn pump(&self);
    /// Sends a request to the shard that owns its session.
    fn forward(&self, to: ShardId, forward: Forward);
    /// HTTP requests whose head was read and whose answer is not yet written: a shard that
    /// shuts down waits for them.
    fn requests_in_flight(&self) -> &Cell<usize>;
}

/// A request carried to the owner shard of its session.
#[derive(Debug)]
pub(crate) enum Forward {
    /// A polling request; the owner answers through `reply`.
    Poll {
        sid: Id,
        request: PollRequest,
        reply: Option<PollWaiter>,
    },
    /// A WebSocket upgrade for an existing session: the connection itself moves.
    WebSocket { fd: OwnedFd, upgrade: Upgrade },
}

/// A polling request for a session.
#[derive(Debug)]
pub(crate) enum PollRequest {
    /// GET: wait for packets.
    Get,
    /// POST: packets from the client.
    Post { body: Bytes, binary: bool },
    /// The body was larger than maxPayload; the session is closed.
    TooLarge,
    /// The connection holding a GET went away.
    Aborted,
}

/// A WebSocket upgrade request, parsed.
#[derive(Debug)]
pub(crate) struct Upgrade {
    pub(crate) accept: String,
    /// The client's permessage-deflate offer the server can take, if any; taken only when
    /// the engine's `per_message_deflate` is on.
    pub(crate) deflate: Option<Agreement>,
    pub(crate) sid: Option<Id>,
    pub(crate) peer: Peer,
    /// Bytes read past the request head (the client may already have sent frames).
    pub(crate) leftover: Bytes,
}

/// Reads more bytes into the spare capacity of `buf` (appending), growing it by at least
/// `grow` when less than a quarter of that is free. False on EOF or error.
pub(crate) async fn read_into<R: AsyncReadRent>(
    reader: &mut R,
    buf: &mut BytesMut,
    grow: usize,
) -> bool {
    if buf.capacity() - buf.len() < grow / 4 {
        buf.reserve(grow.max(buf.capacity()));
    }
    let start = buf.len();
    let end = buf.capacity();
    let spare = std::mem::take(buf).slice_mut(start..end);
    let (result, spare) = reader.read(spare).await;
    *buf = spare.into_inner();
    matches!(result, Ok(n) if n > 0)
}

/// Sets a connection's kernel send buffer (SO_SNDBUF); a failure leaves the default.
fn set_send_buffer(stream: &monoio::net::TcpStream, bytes: usize) {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket fd (the stream is borrowed for the call), a valid option pointer
    // and its exact size.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Hands the memory the allocator holds free back to the operating system: glibc keeps freed
/// pages in its arenas, so without this a server that served a crowd keeps that crowd's RSS.
pub(crate) fn return_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it touches no memory of
    // ours and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Accepts connections, one task per connection, until `stop` completes (a graceful
/// shutdown); the listener is closed then. `router` says what the listener answers: a shard
/// may run several loops (a metrics or API port), each with its own router.
pub(crate) async fn accept_loop<H: Host>(
    host: Rc<H>,
    router: Rc<Router>,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = monoio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                if let Some(bytes) = host.http_config().socket_send_buffer {
                    set_send_buffer(&stream, bytes);
                }
                monoio::spawn(http::serve(host.clone(), router.clone(), stream, peer));
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                // Out of file descriptors and the like: back off instead of spinning.
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Handles a polling request on the owner shard (local or forwarded).
pub(crate) fn handle_poll<H: Host>(
    host: &H,
    sid: Id,
    request: PollRequest,
    reply: Option<PollWaiter>,
) {
    let now = std::time::Instant::now();
    let found = host.engine().borrow().find(sid.as_str());
    let key = match found {
        Ok(key) => key,
        Err(error) => {
            let Some(reply) = reply else {
                return;
            };
            let closed = match request {
                PollRequest::Get => host.engine().borrow_mut().polling_get_closed(sid.as_str()),
                _ => None,
            };
            let _ = reply.send(closed.unwrap_or_else(|| PollReply::error(error)));
            return;
        }
    };
    {
        let mut engine = host.engine().borrow_mut();
        match request {
            PollRequest::Get => {
                if let Some(reply) = reply {
                    engine.polling_get(key, reply);
                }
            }
            PollRequest::Post { body, binary } => {
                let answer = engine.polling_post(key, now, body, binary);
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            PollRequest::TooLarge => {
                engine.close(key, crate::engine::CloseReason::TransportError);
            }
            PollRequest::Aborted => engine.polling_aborted(key),
        }
    }
    host.pump();
}
