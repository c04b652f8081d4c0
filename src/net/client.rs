//! Outbound HTTP/1.1 POSTs from a shard's monoio runtime, for backend hooks (webhooks): a
//! [`Target`] parsed once from an `http://` or `https://` URL, and a [`Pool`] of keep-alive
//! connections to it per shard, bounded in connections and in callers waiting, every call
//! bounded by a deadline.
//!
//! Hand-written, and small on purpose: no maintained HTTP client runs on monoio (the usual ones
//! need tokio's reactor), and hooks need only this much: one method, a `Content-Length` body,
//! answers framed by `Content-Length`, chunked encoding or EOF (parsed with `httparse`), no
//! redirects. `https://` is TLS through rustls (`monoio-rustls` as the stream on monoio, rustls's
//! `StreamOwned` for [`post_blocking`]) with the `rustls::ClientConfig` the caller gives
//! [`Target::parse`]; the server's certificate is always verified, against the URL's host (a
//! name, or an IP literal as an IP SAN). The exchange is generic over the stream, so the plain
//! path is what it was.
//!
//! It is a pipe: what is posted, how it is signed and what an answer means are the caller's. It
//! must not depend on the rest of the crate (no config, no shard, no Socket.IO), nor be shared
//! across threads: a pool lives on one shard and is used through `Rc`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_channel::oneshot;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::pki_types::ServerName;

/// An answer's head (status line and headers, interim answers each counted alone) is at most
/// this long.
const MAX_HEAD: usize = 16 * 1024;
/// Headers in one answer head, at most.
const MAX_HEADERS: usize = 64;
/// A chunk-size line (with its extensions), at most.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Interim (1xx) answers skipped before the final one, at most: a backend sending them forever
/// is not one worth waiting on until the deadline.
const MAX_INTERIM: usize = 8;
/// Idle connections older than this are closed, not reused: backends commonly drop keep-alive
/// connections after 5 s, and a request racing that close is wasted.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// First read buffer per exchange; grown on demand.
const INITIAL_READ: usize = 1024;

/// Where an endpoint's requests go, parsed once from its `http[s]://host[:port][/path]` URL at
/// config time.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    addr: SocketAddr,
    /// The `Host` header's value: the URL's host and port as written.
    host: String,
    /// The request target: the URL's path and query, "/" when it has none.
    path: String,
    /// `https://`: how to speak TLS to it.
    tls: Option<Tls>,
}

/// An `https://` target's TLS client and the name its certificate must carry.
#[derive(Clone, Debug)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    /// The URL's host: for SNI (a name) and the certificate's check (a name or an IP SAN).
    name: ServerName<'static>,
}

/// Why a URL is not a [`Target`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// `https://` with no TLS configuration given.
    NoTls,
    /// Not an `http[s]://host[:port][/path]` URL.
    Invalid(String),
    /// The host did not resolve.
    Resolve(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::NoTls => f.write_str("https:// needs a TLS configuration"),
            TargetError::Invalid(why) => write!(f, "invalid URL: {why}"),
            TargetError::Resolve(why) => write!(f, "cannot resolve host: {why}"),
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Whether `url` is an `https://` one (which [`Target::parse`] needs a TLS configuration
    /// for).
    pub(crate) fn is_https(url: &str) -> bool {
        url.split_once("://")
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("https"))
    }

    /// Parses and resolves (std `ToSocketAddrs`, once, at startup: blocking is fine here).
    /// `https://` speaks TLS with `tls` (ignored for `http://`), and without it gives
    /// `Err(TargetError::NoTls)`; anything else malformed `Err(TargetError::Invalid(_))`;
    /// unresolvable `Err(TargetError::Resolve(_))`.
    pub(crate) fn parse(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Target, TargetError> {
        let invalid = |why: &str| Err(TargetError::Invalid(why.to_owned()));
        let scheme_end = match url.find("://") {
            Some(at) => at,
            None => return invalid("expected http[s]://host[:port][/path]"),
        };
        let scheme = &url[..scheme_end];
        let https = scheme.eq_ignore_ascii_case("https");
        if !https && !scheme.eq_ignore_ascii_case("http") {
            return invalid("the scheme is not http or https");
        }
        let tls = match (https, tls) {
            (false, _) => None,
            (true, None) => return Err(TargetError::NoTls),
            (true, Some(config)) => Some(config),
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if tail.contains('#') {
            return invalid("a fragment is not allowed");
        }
        // The path goes into the request line verbatim: nothing that could end or split it.
        if tail.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return invalid("the path has spaces or control characters");
        }
        let path = match tail.as_bytes().first() {
            None => "/".to_owned(),
            Some(b'?') => format!("/{tail}"),
            Some(_) => tail.to_owned(),
        };
        if authority.contains('@') {
            return invalid("credentials in the URL are not supported");
        }
        let (host, port) = split_host_port(authority, if https { 443 } else { 80 })?;
        let tls = match tls {
            None => None,
            Some(config) => Some(Tls {
                config,
                // An IP literal becomes an IP address to find among the certificate's SANs.
                name: ServerName::try_from(host.clone()).map_err(|_| {
                    TargetError::Invalid("the host is not a TLS server name".into())
                })?,
            }),
        };
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|error| TargetError::Resolve(format!("{host}: {error}")))?
            .next()
            .ok_or_else(|| TargetError::Resolve(format!("{host}: no address")))?;
        Ok(Target {
            addr,
            host: authority.to_owned(),
            path,
            tls,
        })
    }
}

/// POSTs `body` to `target` from a thread that is not a shard's (the startup check, before the
/// shards run), blocking for at most about `timeout`; the answer's status. No keep-alive:
/// one request, then the connection is closed. An `https://` target's TLS handshake (and its
/// failure, a bad certificate say) comes with the first write.
pub(crate) fn post_blocking(
    target: &Target,
    extra: &str,
    body: &[u8],
    timeout: std::time::Duration,
) -> Result<u16, String> {
    let stream = std::net::TcpStream::connect_timeout(&target.addr, timeout)
        .map_err(|error| format!("cannot connect: {error}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        target.path,
        target.host,
        body.len()
    );
    match &target.tls {
        None => post_over(stream, &head, body),
        Some(tls) => {
            let connection = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
                .map_err(|error| format!("cannot start TLS: {error}"))?;
            post_over(rustls::StreamOwned::new(connection, stream), &head, body)
        }
    }
}

/// [`post_blocking`]'s exchange over either stream.
fn post_over(
    mut stream: impl std::io::Read + std::io::Write,
    head: &str,
    body: &[u8],
) -> Result<u16, String> {
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .map_err(|error| format!("cannot send: {error}"))?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let read = stream
            .read(&mut buffer)
            .map_err(|error| format!("no answer: {error}"))?;
        if read == 0 {
            return Err("closed without an answer".into());
        }
        answer.extend_from_slice(&buffer[..read]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&answer) {
            Ok(httparse::Status::Complete(_)) => {
                return response.code.ok_or_else(|| "no status".to_owned())
            }
            Ok(httparse::Status::Partial) if answer.len() < MAX_HEAD => {}
            _ => return Err("not an HTTP answer".into()),
        }
    }
}

/// The host to resolve (brackets removed from an IPv6 literal) and the port (`default` if none).
fn split_host_port(authority: &str, default: u16) -> Result<(String, u16), TargetError> {
    let invalid = |why: &str| Err(TargetError::Invalid(why.to_owned()));
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((literal, after)) = bracketed.split_once(']') else {
            return invalid("unclosed [ in the host");
        };
        if literal.parse::<Ipv6Addr>().is_err() {
            return invalid("bad IPv6 literal");
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return invalid("junk after the IPv6 literal"),
            },
        };
        (literal, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    // The host also goes into the Host header verbatim: a hostname's characters only.
    let is_ipv6 = authority.starts_with('[');
    if host.is_empty()
        || (!is_ipv6
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'))
    {
        return invalid("bad host");
    }
    let port = match port {
        None => default,
        // Digits only: `parse` would take a sign.
        Some(port) if !port.bytes().all(|b| b.is_ascii_digit()) => return invalid("bad port"),
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return invalid("bad port"),
        },
    };
    Ok((host.to_owned(), port))
}

/// A backend's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// In the order received; values decoded lossily (obs-text is not UTF-8).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The first header of that name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a call gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallError {
    /// Nothing reached the backend: the connect was refused / reset / failed, or the connection
    /// broke before the whole request was written. Safe to retry.
    Refused,
    /// The deadline passed (at any stage).
    Timeout,
    /// The connection failed after the request was written, before a complete answer (reset,
    /// EOF).
    Broken,
    /// The answer's body is over `max_response`.
    TooLarge,
    /// Not a parseable HTTP/1.x answer (bad status line/headers, head over 16 KiB, bad chunked
    /// encoding).
    Malformed,
    /// Too many callers waiting for a connection.
    Overloaded,
}

impl CallError {
    /// A short name, for logs and metric labels.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CallError::Refused => "refused",
            CallError::Timeout => "timeout",
            CallError::Broken => "broken",
            CallError::TooLarge => "too_large",
            CallError::Malformed => "malformed",
            CallError::Overloaded => "overloaded",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for CallError {}

/// One endpoint's keep-alive connections on one shard (not Send; used through Rc).
pub(crate) struct Pool {
    shared: Rc<Shared>,
}

/// What a pool's guards ([`Slot`], [`WaitTicket`]) reach back to.
struct Shared {
    target: Target,
    max_connections: usize,
    max_waiting: usize,
    /// [`IDLE_TIMEOUT`], shorter in tests.
    idle_timeout: Duration,
    /// Slots taken: connections open, being opened, or idle. At most `max_connections`.
    taken: Cell<usize>,
    /// Idle connections, the most recently used last (LIFO: the warmest is reused, the coldest
    /// age out).
    idle: RefCell<Vec<(Conn, Instant)>>,
    /// Callers waiting for a slot, first come first served.
    waiters: RefCell<VecDeque<(u64, oneshot::Sender<Conn>)>>,
    next_waiter: Cell<u64>,
}

/// One of the pool's `max_connections` slots, held by whoever has or opens a connection:
/// dropping it (with its connection, when a call is cancelled or fails) frees the slot for the
/// next waiter, so no path leaks one.
struct Slot {
    shared: Rc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let shared = &self.shared;
        shared.taken.set(shared.taken.get() - 1);
        // A waiter takes the freed slot over, to open a connection of its own.
        if let Some(sender) = shared.pop_waiter() {
            shared.taken.set(shared.taken.get() + 1);
            let conn = Conn {
                stream: None,
                slot: Slot {
                    shared: shared.clone(),
                },
            };
            // The receiver is alive (a waiter leaving removes its entry first); were it not,
            // the connection would come back here and drop, freeing the slot again.
            let _ = sender.send(conn);
        }
    }
}

/// A slot and, unless the holder has still to connect, its connection.
struct Conn {
    stream: Option<Stream>,
    slot: Slot,
}

/// An open connection: in clear, or TLS over TCP (boxed: rustls's state is large).
enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

/// A waiter's place in the queue; dropped (answered, timed out or cancelled), it leaves it.
struct WaitTicket {
    shared: Rc<Shared>,
    id: u64,
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        self.shared
            .waiters
            .borrow_mut()
            .retain(|(id, _)| *id != self.id);
    }
}

impl Shared {
    /// The first waiter still waiting, out of the queue.
    fn pop_waiter(&self) -> Option<oneshot::Sender<Conn>> {
        let mut waiters = self.waiters.borrow_mut();
        while let Some((_, sender)) = waiters.pop_front() {
            if !sender.is_canceled() {
                return Some(sender);
            }
        }
        None
    }

    /// Closes idle connections past [`IDLE_TIMEOUT`] (the oldest are first).
    fn expire_idle(&self, now: Instant) {
        let stale: Vec<(Conn, Instant)> = {
            let mut idle = self.idle.borrow_mut();
            let fresh = idle
                .iter()
                .position(|(_, since)| now.duration_since(*since) <= self.idle_timeout)
                .unwrap_or(idle.len());
            idle.drain(..fresh).collect()
        };
        // Dropped out of the borrow: each freed slot may go to a waiter.
        drop(stale);
    }
}

/// How a call got its connection.
enum Lease {
    /// An idle connection (reused: the backend may have closed it meanwhile).
    Reused(Conn),
    /// A slot to open a fresh connection with.
    Fresh(Slot),
}

impl Pool {
    /// At most `max_connections` (1 if given 0) open at once; callers beyond that wait in a FIFO
    /// of at most `max_waiting`, past which `post` fails at once with `CallError::Overloaded`.
    pub(crate) fn new(target: Target, max_connections: usize, max_waiting: usize) -> Pool {
        Pool {
            shared: Rc::new(Shared {
                target,
                max_connections: max_connections.max(1),
                max_waiting,
                idle_timeout: IDLE_TIMEOUT,
                taken: Cell::new(0),
                idle: RefCell::new(Vec::new()),
                waiters: RefCell::new(VecDeque::new()),
                next_waiter: Cell::new(0),
            }),
        }
    }

    /// The same pool with another idle timeout (tests do not wait 4 s).
    #[cfg(test)]
    fn with_idle_timeout(target: Target, max_connections: usize, idle_timeout: Duration) -> Pool {
        let mut pool = Pool::new(target, max_connections, 0);
        if let Some(shared) = Rc::get_mut(&mut pool.shared) {
            shared.idle_timeout = idle_timeout;
        }
        pool
    }

    /// Connections open now: idle, busy or being opened (for metrics and tests).
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.shared.taken.get()
    }

    /// Callers waiting for a connection (for metrics and tests).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.shared.waiters.borrow().len()
    }

    /// POSTs `body` with `Host`, `Content-Length` (never chunked) and the given extra header
    /// lines (already validated by the caller, each ending in `\r\n`). The whole call (waiting
    /// for a connection, connecting, writing, reading the answer) ends by `deadline`. An answer
    /// body over `max_response` bytes is `CallError::TooLarge` (that connection is closed).
    /// Redirects are not followed (a 3xx is an answer).
    pub(crate) async fn post(
        &self,
        extra: &str,
        body: &[u8],
        deadline: Instant,
        max_response: usize,
    ) -> Result<Answer, CallError> {
        debug_assert!(extra.is_empty() || extra.ends_with("\r\n"));
        let target = &self.shared.target;
        let mut request = Vec::with_capacity(64 + target.path.len() + extra.len() + body.len());
        request.extend_from_slice(b"POST ");
        request.extend_from_slice(target.path.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        request.extend_from_slice(target.host.as_bytes());
        request.extend_from_slice(b"\r\nContent-Length: ");
        request.extend_from_slice(body.len().to_string().as_bytes());
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(extra.as_bytes());
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        // One timer over every stage; when it fires, the call's future is dropped and its
        // guards give back the slot (closing the connection) or the place in the queue.
        match monoio::time::timeout_at(deadline.into(), self.call(request, max_response)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout),
        }
    }

    async fn call(&self, request: Vec<u8>, max_response: usize) -> Result<Answer, CallError> {
        let mut request = request;
        let (mut conn, mut may_retry) = match self.lease().await? {
            Lease::Reused(conn) => (conn, true),
            Lease::Fresh(slot) => (self.connect(slot).await?, false),
        };
        loop {
            let Some(stream) = conn.stream.as_mut() else {
                // A lease always carries a connection by now; were it not, nothing was sent.
                return Err(CallError::Refused);
            };
            let (outcome, returned) = match stream {
                Stream::Plain(stream) => exchange(stream, request, max_response).await,
                Stream::Tls(stream) => exchange(&mut **stream, request, max_response).await,
            };
            request = returned;
            let failure = match outcome {
                Ok((answer, reusable)) => {
                    if reusable {
                        self.give_back(conn);
                    }
                    return Ok(answer);
                }
                Err(failure) => failure,
            };
            match failure {
                // A reused connection that fails before any byte of the answer was most likely
                // closed by the backend while idle (its keep-alive timeout raced ours): retry
                // once on a fresh connection, as clients commonly do. A backend that closed the
                // connection never read the request; one that read it and died before answering
                // gets it twice, which receivers of hooks must bear anyway (retries).
                // A fresh connection failing the same way is no such race: not retried.
                Failure::Unsent | Failure::NoAnswer if may_retry => {
                    may_retry = false;
                    let slot = conn.slot;
                    drop(conn.stream);
                    conn = self.connect(slot).await?;
                }
                Failure::Unsent => return Err(CallError::Refused),
                Failure::NoAnswer | Failure::Broken => return Err(CallError::Broken),
                Failure::TooLarge => return Err(CallError::TooLarge),
                Failure::Malformed => return Err(CallError::Malformed),
            }
        }
    }

    /// An idle connection, a free slot, or a place in the queue until one is handed over.
    async fn lease(&self) -> Result<Lease, CallError> {
        let shared = &self.shared;
        let now = Instant::now();
        shared.expire_idle(now);
        let warmest = shared.idle.borrow_mut().pop();
        if let Some((conn, _)) = warmest {
            return Ok(Lease::Reused(conn));
        }
        if shared.taken.get() < shared.max_connections && shared.waiters.borrow().is_empty() {
            shared.taken.set(shared.taken.get() + 1);
            return Ok(Lease::Fresh(Slot {
                shared: shared.clone(),
            }));
        }
        if shared.waiters.borrow().len() >= shared.max_waiting {
            return Err(CallError::Overloaded);
        }
        let id = shared.next_waiter.get();
        shared.next_waiter.set(id + 1);
        let (sender, receiver) = oneshot::channel();
        shared.waiters.borrow_mut().push_back((id, sender));
        let _ticket = WaitTicket {
            shared: shared.clone(),
            id,
        };
        match receiver.await {
            Ok(conn) if conn.stream.is_some() => Ok(Lease::Reused(conn)),
            Ok(conn) => Ok(Lease::Fresh(conn.slot)),
            // Senders live in the queue, which the pool owns while anyone calls it.
            Err(_) => Err(CallError::Refused),
        }
    }

    /// Opens a connection in `slot` (and, for `https://`, does the TLS handshake: a failure,
    /// a certificate refused say, sent nothing of the request, so it is `Refused` too).
    async fn connect(&self, slot: Slot) -> Result<Conn, CallError> {
        let target = &self.shared.target;
        let stream = TcpStream::connect_addr(target.addr)
            .await
            .map_err(|_| CallError::Refused)?;
        // Requests are written whole, once: Nagle would only delay them. A failure here costs
        // latency, not correctness.
        let _ = stream.set_nodelay(true);
        let stream = match &target.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                let connector = TlsConnector::from(tls.config.clone());
                match connector.connect(tls.name.clone(), stream).await {
                    Ok(stream) => Stream::Tls(Box::new(stream)),
                    Err(error) => {
                        tracing::debug!(host = %target.host, %error, "TLS handshake failed");
                        return Err(CallError::Refused);
                    }
                }
            }
        };
        Ok(Conn {
            stream: Some(stream),
            slot,
        })
    }

    /// A connection whose exchange ended cleanly: to the first waiter, or idle.
    fn give_back(&self, conn: Conn) {
        let shared = &self.shared;
        let conn = match shared.pop_waiter() {
            Some(sender) => match sender.send(conn) {
                Ok(()) => return,
                Err(conn) => conn,
            },
            None => conn,
        };
        let now = Instant::now();
        shared.idle.borrow_mut().push((conn, now));
        shared.expire_idle(now);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Idle connections hold their slots, which point back at the pool's state: closed
        // here, or that cycle would keep them (and their sockets) alive. Nobody waits now (a
        // call borrows the pool).
        let idle = std::mem::take(&mut *self.shared.idle.borrow_mut());
        drop(idle);
    }
}

/// How an exchange failed.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The request was not written whole.
    Unsent,
    /// The connection ended (EOF or error) before any byte of the answer.
    NoAnswer,
    /// The connection ended mid-answer.
    Broken,
    TooLarge,
    Malformed,
}

/// Writes `request` and reads its answer; the answer, and whether the connection may carry
/// another request. The request's buffer comes back for a retry.
async fn exchange<S: AsyncReadRent + AsyncWriteRent>(
    stream: &mut S,
    request: Vec<u8>,
    max_response: usize,
) -> (Result<(Answer, bool), Failure>, Vec<u8>) {
    let (written, request) = stream.write_all(request).await;
    if written.is_err() {
        return (Err(Failure::Unsent), request);
    }
    let mut buf = BytesMut::with_capacity(INITIAL_READ);
    (read_answer(stream, &mut buf, max_response).await, request)
}

/// Reads more into `buf`: the bytes read, 0 at EOF.
async fn fill<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
) -> std::io::Result<usize> {
    buf.reserve(want.max(INITIAL_READ));
    let start = buf.len();
    let end = buf.capacity();
    let spare = std::mem::take(buf).slice_mut(start..end);
    let (result, spare) = stream.read(spare).await;
    *buf = spare.into_inner();
    result
}

/// Reads more, past the first byte of the answer: EOF or an error is a broken answer.
async fn more<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
) -> Result<(), Failure> {
    match fill(stream, buf, want).await {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(Failure::Broken),
    }
}

/// An answer's head, owned.
struct Head {
    status: u16,
    http11: bool,
    headers: Vec<(String, String)>,
}

/// Parses a head at the start of `buf`: its length, or `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => {
            let (Some(status), Some(version)) = (response.code, response.version) else {
                return Err(Failure::Malformed);
            };
            let headers = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Ok(Some((
                len,
                Head {
                    status,
                    http11: version == 1,
                    headers,
                },
            )))
        }
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
        _ => Err(Failure::Malformed),
    }
}

/// How an answer's body is delimited.
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes: the connection cannot be reused.
    Eof,
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn lists(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

fn framing(head: &Head) -> Result<Framing, Failure> {
    if head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    let mut length: Option<u64> = None;
    let mut encodings: Option<&str> = None;
    for (name, value) in &head.headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // Several headers form one list; the last coding is what frames the body.
            encodings = Some(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            for item in value.split(',') {
                let item = item.trim();
                if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Failure::Malformed);
                }
                let n = item.parse::<u64>().map_err(|_| Failure::Malformed)?;
                // Differing lengths mean no one knows where the answer ends.
                if length.is_some_and(|known| known != n) {
                    return Err(Failure::Malformed);
                }
                length = Some(n);
            }
        }
    }
    if let Some(encodings) = encodings {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3); a response whose final
        // coding is not chunked runs until the close.
        let last = encodings.rsplit(',').next().unwrap_or("").trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::Eof
        });
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None => Framing::Eof,
    })
}

/// Reads one answer (after any interim ones): the answer and whether the connection may be
/// reused.
async fn read_answer<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_response: usize,
) -> Result<(Answer, bool), Failure> {
    let mut interim = 0;
    let mut answered = false;
    let head = loop {
        match parse_head(buf)? {
            Some((len, head)) => {
                buf.advance(len);
                match head.status {
                    // We never ask to switch protocols.
                    101 => return Err(Failure::Malformed),
                    100..=199 => {
                        interim += 1;
                        if interim > MAX_INTERIM {
                            return Err(Failure::Malformed);
                        }
                    }
                    _ => break head,
                }
            }
            None => match fill(stream, buf, INITIAL_READ).await {
                Ok(n) if n > 0 => answered = true,
                _ if answered => return Err(Failure::Broken),
                _ => return Err(Failure::NoAnswer),
            },
        }
    };
    let framing = framing(&head)?;
    let mut reusable = head.http11
        && !head
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && lists(v, "close"));
    let body = match framing {
        Framing::Empty => Bytes::new(),
        Framing::Length(n) => {
            if n > max_response as u64 {
                return Err(Failure::TooLarge);
            }
            let n = n as usize;
            while buf.len() < n {
                let missing = n - buf.len();
                more(stream, buf, missing).await?;
            }
            buf.split_to(n).freeze()
        }
        Framing::Chunked => read_chunked(stream, buf, max_response).await?,
        Framing::Eof => {
            reusable = false;
            loop {
                if buf.len() > max_response {
                    return Err(Failure::TooLarge);
                }
                match fill(stream, buf, INITIAL_READ).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    // A reset cuts an EOF-delimited body short.
                    Err(_) => return Err(Failure::Broken),
                }
            }
            std::mem::take(buf).freeze()
        }
    };
    // Bytes past the answer are a backend out of step: do not send another request there.
    if !buf.is_empty() {
        reusable = false;
    }
    Ok((
        Answer {
            status: head.status,
            headers: head.headers,
            body,
        },
        reusable,
    ))
}

/// Decodes a chunked body (RFC 9112 §7.1), trailers read and dropped.
async fn read_chunked<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_response: usize,
) -> Result<Bytes, Failure> {
    let mut body = BytesMut::new();
    loop {
        let (line, size) = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete(found)) => break found,
                Ok(httparse::Status::Partial) if buf.len() <= MAX_CHUNK_LINE => {
                    more(stream, buf, INITIAL_READ).await?;
                }
                _ => return Err(Failure::Malformed),
            }
        };
        buf.advance(line);
        if size == 0 {
            break;
        }
        if size > (max_response - body.len()) as u64 {
            return Err(Failure::TooLarge);
        }
        let size = size as usize;
        // The chunk's data and its CRLF.
        while buf.len() < size + 2 {
            let missing = size + 2 - buf.len();
            more(stream, buf, missing).await?;
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err(Failure::Malformed);
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(size + 2);
    }
    // Trailers, up to the empty line.
    loop {
        let mut trailers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(buf, &mut trailers) {
            Ok(httparse::Status::Complete((len, _))) => {
                buf.advance(len);
                return Ok(body.freeze());
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {
                more(stream, buf, INITIAL_READ).await?;
            }
            _ => return Err(Failure::Malformed),
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
