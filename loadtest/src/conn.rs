//! The loadtest's socket I/O: which server a client connects to (one, or several nodes of a
//! cluster), TCP connect (optionally from one of several loopback source addresses, to get
//! past the ephemeral-port limit of one address), the WebSocket upgrade, the Socket.IO
//! connect on the main namespace, and a reusable frame buffer that reads without allocating
//! per message.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flate2::{Decompress, FlushDecompress};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::wire::{self, FrameError, Incoming};

/// Where the server is and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The Engine.IO path, e.g. `/socket.io/`.
    pub path: String,
    /// Local addresses to spread connections over (empty: let the kernel choose).
    pub sources: Vec<IpAddr>,
    /// The Socket.IO CONNECT packet every client sends: `40`, or `40{...}` with an auth
    /// payload (a token, say).
    pub connect: Vec<u8>,
    /// Offer permessage-deflate in the upgrade (`--deflate`).
    pub deflate: bool,
}

/// Bytes every client of this process read from its connection (the upgrade's answer included):
/// the bytes on the wire, compressed or not, for `wire_bytes_per_unit`.
pub static WIRE_BYTES_READ: AtomicU64 = AtomicU64::new(0);

/// RFC 7692 §7.2.2: the tail a sender cuts off each compressed message.
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A connection's permessage-deflate inflater, once agreed.
struct Inflate {
    decompress: Decompress,
    /// The server said `server_no_context_takeover`: each message stands alone. Otherwise
    /// (Node's default) the window carries over from message to message.
    reset_each: bool,
    out: Vec<u8>,
}

impl Inflate {
    fn message(&mut self, compressed: &[u8]) -> Result<&[u8], FrameError> {
        if self.reset_each {
            self.decompress.reset(false);
        }
        self.out.clear();
        for part in [compressed, &DEFLATE_TAIL[..]] {
            let mut input = part;
            // Each pass consumes input or fills the output, which doubles up to MAX_FRAME.
            for _ in 0..64 {
                if input.is_empty() {
                    break;
                }
                if self.out.capacity() - self.out.len() < 1024 {
                    if self.out.len() >= wire::MAX_FRAME {
                        return Err(FrameError::TooLarge(self.out.len() as u64));
                    }
                    self.out.reserve(self.out.capacity().max(4096));
                }
                let before = self.decompress.total_in();
                self.decompress
                    .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                    .map_err(|_| FrameError::Inflate)?;
                let used = (self.decompress.total_in() - before) as usize;
                input = &input[used.min(input.len())..];
            }
            if !input.is_empty() {
                return Err(FrameError::Inflate);
            }
        }
        Ok(&self.out)
    }
}

/// Which of several servers each client connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// How many server addresses there are (at least 1).
    pub servers: usize,
    /// With `Some(k)`, clients `0..publishers` all connect to server `k` and every other
    /// client to one of the other servers (fanout's remote-intake variant); otherwise client
    /// `i` connects to server `i % servers`.
    pub publishers_on: Option<usize>,
    pub publishers: usize,
}

impl Placement {
    /// Everything on one server.
    pub fn single() -> Self {
        Placement {
            servers: 1,
            publishers_on: None,
            publishers: 0,
        }
    }

    /// The index of the server client `client` connects to.
    pub fn server_of(&self, client: usize) -> usize {
        match self.publishers_on {
            Some(home) if client < self.publishers => home,
            // Round robin over the servers other than the publishers' one.
            Some(home) if self.servers > 1 => {
                let other = client % (self.servers - 1);
                if other >= home {
                    other + 1
                } else {
                    other
                }
            }
            _ => client % self.servers.max(1),
        }
    }
}

/// Why a client connection failed.
#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    Frame(FrameError),
    /// The server closed the connection (EOF, close frame, Engine.IO close or disconnect).
    Closed,
    /// The upgrade or the Engine.IO / Socket.IO handshake did not go as the protocol says.
    Handshake(String),
    /// The server refused the Socket.IO connect.
    Refused(String),
    /// No answer in time.
    Timeout(&'static str),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io(error) => write!(f, "i/o error: {error}"),
            ConnError::Frame(error) => write!(f, "bad frame: {error}"),
            ConnError::Closed => f.write_str("connection closed by the server"),
            ConnError::Handshake(what) => write!(f, "handshake failed: {what}"),
            ConnError::Refused(why) => write!(f, "connect refused by the server: {why}"),
            ConnError::Timeout(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl From<io::Error> for ConnError {
    fn from(error: io::Error) -> Self {
        ConnError::Io(error)
    }
}

impl From<FrameError> for ConnError {
    fn from(error: FrameError) -> Self {
        ConnError::Frame(error)
    }
}

/// Opens a TCP connection; client `index` picks the source address.
pub async fn tcp_connect(target: &Target, index: usize) -> io::Result<TcpStream> {
    let stream = if target.sources.is_empty() {
        TcpStream::connect_addr(target.addr).await?
    } else {
        let source = target.sources[index % target.sources.len()];
        connect_from(source, target.addr).await?
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Caps the kernel's receive buffer of a connected socket, so that a client that stops
/// reading stops the server's writes to it after a few KiB instead of megabytes.
pub fn shrink_receive_buffer(stream: &TcpStream, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid socket fd (the stream is borrowed for the call), a valid option pointer
    // and its exact size.
    let done = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Non-blocking connect from a given local address, completed by waiting for writability.
async fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    // Let connect() pick the port per destination, so one source address serves more than
    // the ~28k ports a plain bind() would allow.
    let enable: libc::c_int = 1;
    // SAFETY: a valid socket, a valid option pointer and its exact size.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&enable as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    stream.writable(false).await?;
    // The connect's outcome is in SO_ERROR once the socket is writable.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is the open socket `stream` owns; `error` and `len` are valid out-pointers.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if error != 0 {
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(stream)
}

/// Bytes read from one connection and not yet consumed, decoded into WebSocket messages.
pub struct FrameBuf {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    pos: usize,
    /// Bytes of the message last returned, consumed on the next call.
    returned: usize,
    /// A fragmented message being put together: its opcode, whether it is compressed, and
    /// its bytes so far.
    fragments: Option<(u8, bool, Vec<u8>)>,
    /// A reassembled message was returned; its buffer is reset on the next call.
    fragments_returned: bool,
    /// Set when the server agreed permessage-deflate.
    inflate: Option<Inflate>,
}

impl FrameBuf {
    pub fn new(capacity: usize) -> Self {
        FrameBuf {
            buf: Vec::with_capacity(capacity),
            pos: 0,
            returned: 0,
            fragments: None,
            fragments_returned: false,
            inflate: None,
        }
    }

    /// The server agreed permessage-deflate (with or without its context takeover).
    fn inflate_from_now(&mut self, server_no_context_takeover: bool) {
        self.inflate = Some(Inflate {
            decompress: Decompress::new(false),
            reset_each: server_no_context_takeover,
            out: Vec::with_capacity(4096),
        });
    }

    /// The next complete message (opcode, payload), if the bytes read so far hold one.
    pub fn next(&mut self) -> Result<Option<(u8, &[u8])>, FrameError> {
        self.pos += std::mem::take(&mut self.returned);
        if std::mem::take(&mut self.fragments_returned) {
            self.fragments = None;
        }
        loop {
            let Some(frame) = wire::decode_frame(&self.buf[self.pos..])? else {
                return Ok(None);
            };
            let payload = self.pos + frame.payload.start..self.pos + frame.payload.end;
            let is_control = frame.opcode & 0x8 != 0;
            if frame.compressed
                && (self.inflate.is_none() || is_control || frame.opcode == wire::OP_CONTINUATION)
            {
                return Err(FrameError::Reserved);
            }
            if is_control || (frame.fin && frame.opcode != wire::OP_CONTINUATION) {
                self.returned = frame.len;
                if frame.compressed {
                    let inflate = self.inflate.as_mut().ok_or(FrameError::Reserved)?;
                    return Ok(Some((frame.opcode, inflate.message(&self.buf[payload])?)));
                }
                return Ok(Some((frame.opcode, &self.buf[payload])));
            }
            // A fragment: put the message together (servers rarely fragment; this may allocate).
            let bytes = &self.buf[payload];
            match (&mut self.fragments, frame.opcode) {
                (None, wire::OP_CONTINUATION) | (Some(_), wire::OP_TEXT | wire::OP_BINARY) => {
                    return Err(FrameError::Reserved);
                }
                (None, opcode) => {
                    self.fragments = Some((opcode, frame.compressed, bytes.to_vec()));
                }
                (Some((_, _, so_far)), _) => so_far.extend_from_slice(bytes),
            }
            self.pos += frame.len;
            if frame.fin {
                self.fragments_returned = true;
                let (opcode, compressed, bytes) = self.fragments.as_ref().expect("set just above");
                if *compressed {
                    let inflate = self.inflate.as_mut().ok_or(FrameError::Reserved)?;
                    return Ok(Some((*opcode, inflate.message(bytes)?)));
                }
                return Ok(Some((*opcode, bytes)));
            }
        }
    }

    /// Reads more bytes from `io`; `Closed` on EOF.
    pub async fn fill<R: AsyncReadRent>(&mut self, io: &mut R) -> Result<(), ConnError> {
        self.pos += std::mem::take(&mut self.returned);
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(self.buf.capacity().max(4096));
        }
        let (start, end) = (self.buf.len(), self.buf.capacity());
        let spare = std::mem::take(&mut self.buf).slice_mut(start..end);
        let (result, spare) = io.read(spare).await;
        self.buf = spare.into_inner();
        match result {
            Ok(0) => Err(ConnError::Closed),
            Ok(read) => {
                WIRE_BYTES_READ.fetch_add(read as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => Err(ConnError::Io(error)),
        }
    }

    /// Reads until a full HTTP response head is buffered; returns its status code, its
    /// length and its Content-Length (if any), consuming nothing.
    async fn peek_response_head<R: AsyncReadRent>(
        &mut self,
        io: &mut R,
    ) -> Result<(u16, usize, Option<usize>, Option<bool>), ConnError> {
        self.pos += std::mem::take(&mut self.returned);
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 24];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf[self.pos..]) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = response.code.unwrap_or(0);
                    let content_length = response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| wire::parse_decimal(h.value))
                        .map(|n| n as usize);
                    // permessage-deflate agreed: whether the server keeps no context.
                    let deflate = response
                        .headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                        .filter_map(|h| std::str::from_utf8(h.value).ok())
                        .find(|v| v.trim_start().starts_with("permessage-deflate"))
                        .map(|v| v.contains("server_no_context_takeover"));
                    return Ok((code, len, content_length, deflate));
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() - self.pos > 64 * 1024 {
                        return Err(ConnError::Handshake("response head too large".into()));
                    }
                    self.fill(io).await?;
                }
                Err(error) => return Err(ConnError::Handshake(format!("bad response: {error}"))),
            }
        }
    }

    /// Reads an HTTP response head and leaves only what follows it.
    async fn read_response_head<R: AsyncReadRent>(&mut self, io: &mut R) -> Result<u16, ConnError> {
        let (code, head, _, deflate) = self.peek_response_head(io).await?;
        self.pos += head;
        if let Some(server_no_context_takeover) = deflate {
            self.inflate_from_now(server_no_context_takeover);
        }
        Ok(code)
    }

    /// Reads one whole HTTP response with a Content-Length body: its status and where the
    /// body lies (see [`FrameBuf::bytes`]); it is consumed on the next read.
    pub async fn read_response<R: AsyncReadRent>(
        &mut self,
        io: &mut R,
    ) -> Result<(u16, Range<usize>), ConnError> {
        let (code, head, content_length, _) = self.peek_response_head(io).await?;
        let Some(length) = content_length.filter(|&n| n <= wire::MAX_FRAME) else {
            return Err(ConnError::Handshake(
                "response without a usable Content-Length".into(),
            ));
        };
        while self.buf.len() - self.pos < head + length {
            self.fill(io).await?;
        }
        let body = self.pos + head..self.pos + head + length;
        self.returned = head + length;
        Ok((code, body))
    }

    /// Bytes of the buffer, for a range [`FrameBuf::read_response`] returned.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

/// A WebSocket connection that completed the Socket.IO connect on the main namespace.
pub struct Socket {
    pub stream: TcpStream,
    pub frames: FrameBuf,
    /// This connection's masking key.
    pub mask: [u8; 4],
}

/// Connects, upgrades and joins the main namespace, answering pings on the way.
pub async fn open_socket(target: &Target, index: usize) -> Result<Socket, ConnError> {
    let mut stream = tcp_connect(target, index).await?;
    let mut random = [0u8; 20];
    getrandom::getrandom(&mut random)
        .map_err(|e| ConnError::Io(io::Error::other(e.to_string())))?;
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &random[..16]);
    let mask = [random[16], random[17], random[18], random[19]];
    let mut request = Vec::with_capacity(256);
    wire::upgrade_request(
        &mut request,
        &target.host,
        &target.path,
        &key,
        target.deflate,
    );
    let (result, _) = stream.write_all(request).await;
    result?;
    let mut frames = FrameBuf::new(4096);
    let status = frames.read_response_head(&mut stream).await?;
    if status != 101 {
        return Err(ConnError::Handshake(format!("upgrade answered {status}")));
    }
    if target.deflate && frames.inflate.is_none() {
        return Err(ConnError::Handshake(
            "--deflate: the server did not agree permessage-deflate".into(),
        ));
    }
    let mut opened = false;
    loop {
        let reply = match frames.next()? {
            Some((wire::OP_TEXT, packet)) => match wire::classify(packet) {
                Incoming::Open if !opened => {
                    opened = true;
                    Some(&target.connect[..])
                }
                Incoming::Ping => Some(&b"3"[..]),
                Incoming::Connected if opened => break,
                Incoming::ConnectError(why) => {
                    return Err(ConnError::Refused(
                        String::from_utf8_lossy(why).into_owned(),
                    ))
                }
                Incoming::Closed => return Err(ConnError::Closed),
                _ => None,
            },
            Some((wire::OP_CLOSE, _)) => return Err(ConnError::Closed),
            Some(_) => None,
            None => {
                frames.fill(&mut stream).await?;
                None
            }
        };
        if let Some(packet) = reply {
            let mut out = Vec::with_capacity(16);
            wire::put_frame(&mut out, wire::OP_TEXT, packet, mask);
            let (result, _) = stream.write_all(out).await;
            result?;
        }
    }
    Ok(Socket {
        stream,
        frames,
        mask,
    })
}

/// `open_socket` with a deadline.
pub async fn open_socket_within(
    target: &Target,
    index: usize,
    limit: Duration,
) -> Result<Socket, ConnError> {
    monoio::select! {
        socket = open_socket(target, index) => socket,
        _ = monoio::time::sleep(limit) => Err(ConnError::Timeout("the Socket.IO connect")),
    }
}

#[cfg(test)]
mod tests {
    use super::Placement;

    #[test]
    fn clients_alternate_over_the_servers() {
        let two = Placement {
            servers: 2,
            publishers_on: None,
            publishers: 4,
        };
        let servers: Vec<usize> = (0..6).map(|c| two.server_of(c)).collect();
        assert_eq!(servers, [0, 1, 0, 1, 0, 1]);
        assert!((0..10).all(|c| Placement::single().server_of(c) == 0));
    }

    #[test]
    fn publishers_on_one_server_and_the_rest_on_the_others() {
        let two = Placement {
            servers: 2,
            publishers_on: Some(0),
            publishers: 3,
        };
        let servers: Vec<usize> = (0..6).map(|c| two.server_of(c)).collect();
        assert_eq!(servers, [0, 0, 0, 1, 1, 1]);
        let three = Placement {
            servers: 3,
            publishers_on: Some(1),
            publishers: 2,
        };
        let servers: Vec<usize> = (0..7).map(|c| three.server_of(c)).collect();
        assert_eq!(servers, [1, 1, 0, 2, 0, 2, 0]);
    }
}
