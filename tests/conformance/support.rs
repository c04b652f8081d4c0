//! Blocking test clients for the conformance tests: a raw HTTP/1.1 client over `std::net`
//! (fresh or kept-alive connections, abortable), a WebSocket client over tungstenite, and
//! Engine.IO payload helpers. Depends only on std, tungstenite and serde_json, never on ringcast
//! itself, so the same tests can be pointed at the Node reference server.
#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

/// Longest wait for any single answer; every test stays bounded by it.
pub const READ_TIMEOUT: Duration = Duration::from_millis(2500);
/// Engine.IO v4 polling record separator.
pub const RS: char = '\u{1e}';
/// Handshake timers of the conformance app (conformance.md §3.2).
pub const PING_INTERVAL_MS: u64 = 300;
pub const PING_TIMEOUT_MS: u64 = 200;
pub const MAX_PAYLOAD: u64 = 1_000_000;
/// When a session that never answers (or sends) a ping must be dead: pingInterval +
/// pingTimeout after the handshake. The suites' own client takes a few ms to send the next
/// request; 10 ms stands in for that, so a server timer that fires on time is never raced,
/// while one rounded up by more than that still fails.
pub const PING_DEADLINE: Duration = Duration::from_millis(PING_INTERVAL_MS + PING_TIMEOUT_MS + 10);

/// Whether the tests run against an external (reference) server; only then are the lax
/// behaviours of conformance.md §8 accepted.
pub fn external() -> bool {
    std::env::var_os("RINGCAST_EXTERNAL_ADDR").is_some()
}

/// The conformance-mode server of one test.
pub fn server() -> crate::common::Server {
    crate::common::Server::start(&["--conformance", "--cores", "2"])
}

// ------------------------------------------------------------------------------------------
// HTTP/1.1
// ------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as UTF-8 (panics otherwise: every text answer must be valid UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("response body is not UTF-8")
    }
}

/// One client TCP connection speaking HTTP/1.1, reusable for several requests (keep-alive).
pub struct HttpConn {
    stream: TcpStream,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn open(addr: SocketAddr) -> HttpConn {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        HttpConn {
            stream,
            addr,
            buf: Vec::new(),
        }
    }

    /// Writes one request without waiting for its answer.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        let has_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if method != "GET" && method != "OPTIONS" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            if !has_type {
                // What a browser or node-fetch sends for a string body.
                head.push_str("Content-Type: text/plain;charset=UTF-8\r\n");
            }
        }
        for (key, value) in headers {
            head.push_str(&format!("{key}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)
    }

    /// Reads one response (Content-Length, chunked or until EOF).
    pub fn receive(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, status_line.to_string()))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if status == 204 || status == 304 || (100..200).contains(&status) {
            // No body by definition.
        } else if chunked {
            response.body = self.read_chunked()?;
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| io::Error::new(ErrorKind::InvalidData, "content-length"))?;
            while self.buf.len() < length {
                self.fill()?;
            }
            response.body = self.buf.drain(..length).collect();
        } else {
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        self.send(method, path, headers, body)?;
        self.receive()
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn post(&mut self, path: &str, body: impl AsRef<[u8]>) -> Response {
        self.request("POST", path, &[], body.as_ref())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Abandons a pending request by destroying the TCP connection, as a client-side abort does.
    pub fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(ErrorKind::InvalidData, "chunk size"))?;
            if size == 0 {
                // Trailers end with an empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            while self.buf.len() < size + 2 {
                self.fill()?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    HttpConn::open(addr).request(method, path, headers, body)
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub fn post(addr: SocketAddr, path: &str, body: impl AsRef<[u8]>) -> Response {
    request(addr, "POST", path, &[], body.as_ref()).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

// ------------------------------------------------------------------------------------------
// WebSocket
// ------------------------------------------------------------------------------------------

/// What the next read on a WebSocket produced. Control frames are handled by tungstenite.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame (with its code, if any), EOF or a reset.
    Closed(Option<u16>),
    Timeout,
}

/// Why a WebSocket could not be opened.
#[derive(Debug)]
pub enum WsOpenError {
    /// The server answered the upgrade with this non-101 status.
    Refused(u16),
    /// The connection ended or failed during the handshake.
    Dropped(String),
}

pub struct Ws {
    socket: WebSocket<TcpStream>,
}

pub fn ws_try_open(addr: SocketAddr, path: &str) -> Result<Ws, WsOpenError> {
    let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let url = format!("ws://{addr}{path}");
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut attempt = tungstenite::client::client(url.as_str(), stream);
    loop {
        match attempt {
            Ok((socket, _response)) => return Ok(Ws { socket }),
            Err(HandshakeError::Interrupted(mid)) => {
                if Instant::now() > deadline {
                    return Err(WsOpenError::Dropped("handshake timed out".into()));
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                return Err(WsOpenError::Refused(response.status().as_u16()))
            }
            Err(HandshakeError::Failure(e)) => return Err(WsOpenError::Dropped(e.to_string())),
        }
    }
}

pub fn ws_open(addr: SocketAddr, path: &str) -> Ws {
    ws_try_open(addr, path).unwrap_or_else(|e| panic!("WebSocket {path}: {e:?}"))
}

/// Opens a WebSocket that the server must end: refused with a 4xx, dropped during the
/// handshake, or accepted and then closed.
pub fn ws_expect_rejected(addr: SocketAddr, path: &str) {
    match ws_try_open(addr, path) {
        Err(WsOpenError::Refused(status)) => {
            assert!(
                (400..500).contains(&status),
                "{path}: refused with {status}"
            )
        }
        Err(WsOpenError::Dropped(_)) => {}
        Ok(mut ws) => {
            ws.expect_closed(READ_TIMEOUT);
        }
    }
}

impl Ws {
    pub fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_string()))
            .unwrap_or_else(|e| panic!("send {text:?}: {e}"));
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.socket
            .send(Message::Binary(bytes.to_vec()))
            .unwrap_or_else(|e| panic!("send binary: {e}"));
    }

    /// Sends without failing the test if the server already hung up.
    pub fn try_send(&mut self, message: Message) -> bool {
        self.socket.send(message).is_ok()
    }

    /// The next data frame or the end of the connection, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Event::Timeout;
            }
            let _ = self
                .socket
                .get_mut()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.socket.read() {
                Ok(Message::Text(text)) => return Event::Text(text),
                Ok(Message::Binary(bytes)) => return Event::Binary(bytes),
                Ok(Message::Close(frame)) => return Event::Closed(frame.map(|f| f.code.into())),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(tungstenite::Error::Utf8) => {
                    panic!("server sent a text frame that is not UTF-8")
                }
                Err(_) => return Event::Closed(None),
            }
        }
    }

    pub fn next(&mut self) -> Event {
        self.next_event(READ_TIMEOUT)
    }

    /// The next frame, which must be text.
    pub fn text(&mut self) -> String {
        match self.next() {
            Event::Text(text) => text,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame, which must be binary.
    pub fn binary(&mut self) -> Vec<u8> {
        match self.next() {
            Event::Binary(bytes) => bytes,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// The next frame other than an Engine.IO v4 ping (`2`), which some tests ignore.
    pub fn next_skipping_pings(&mut self) -> Event {
        loop {
            match self.next() {
                Event::Text(text) if text == "2" => {}
                other => return other,
            }
        }
    }

    /// Waits for the connection to end, ignoring data frames; returns how long it took and
    /// the close code if a close frame came.
    pub fn expect_closed(&mut self, within: Duration) -> (Duration, Option<u16>) {
        let start = Instant::now();
        loop {
            let left = within.saturating_sub(start.elapsed());
            match self.next_event(left) {
                Event::Closed(code) => return (start.elapsed(), code),
                Event::Timeout => panic!("WebSocket still open after {within:?}"),
                Event::Text(_) | Event::Binary(_) => {}
            }
        }
    }

    /// Waits up to `within` for the connection to end, ignoring data frames; None if it stayed
    /// open.
    pub fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let left = within.saturating_sub(start.elapsed());
            match self.next_event(left) {
                Event::Closed(_) => return Some(start.elapsed()),
                Event::Timeout => return None,
                Event::Text(_) | Event::Binary(_) => {}
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Engine.IO helpers
// ------------------------------------------------------------------------------------------

/// Engine.IO path on one endpoint: `/{prefix}/?EIO={eio}&transport={transport}`.
pub fn eio_path(prefix: &str, eio: u8, transport: &str) -> String {
    format!("/{prefix}/?EIO={eio}&transport={transport}")
}

/// Parses an open packet (`0{...}`) and checks the handshake fields common to all versions.
pub fn check_open_packet(packet: &str, upgrades: &[&str], v3: bool) -> String {
    let json = packet
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("not an open packet: {packet:?}"));
    let value: serde_json::Value = serde_json::from_str(json).expect("handshake JSON");
    let object = value.as_object().expect("handshake is a JSON object");
    let sid = object
        .get("sid")
        .and_then(|s| s.as_str())
        .expect("sid is a string")
        .to_string();
    assert!(!sid.is_empty(), "empty sid");
    assert_eq!(object.get("upgrades"), Some(&serde_json::json!(upgrades)));
    assert_eq!(
        object.get("pingInterval"),
        Some(&serde_json::json!(PING_INTERVAL_MS))
    );
    assert_eq!(
        object.get("pingTimeout"),
        Some(&serde_json::json!(PING_TIMEOUT_MS))
    );
    if v3 {
        // The v3 suite accepts maxPayload absent or 1000000, and extra keys.
        if let Some(max) = object.get("maxPayload") {
            assert_eq!(max, &serde_json::json!(MAX_PAYLOAD));
        }
    } else {
        assert_eq!(
            object.get("maxPayload"),
            Some(&serde_json::json!(MAX_PAYLOAD))
        );
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "maxPayload",
                "pingInterval",
                "pingTimeout",
                "sid",
                "upgrades"
            ],
            "handshake keys"
        );
    }
    sid
}

/// String length in UTF-16 code units, as the EIO=3 text payload counts it.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Encodes packets as an EIO=3 text payload (`<len>:<packet>` each).
pub fn eio3_encode(packets: &[&str]) -> String {
    packets
        .iter()
        .map(|p| format!("{}:{p}", utf16_len(p)))
        .collect()
}

/// Splits an EIO=3 text payload into packets.
pub fn eio3_decode(payload: &str) -> Vec<String> {
    let mut packets = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let (length, tail) = rest
            .split_once(':')
            .unwrap_or_else(|| panic!("bad EIO=3 payload {payload:?}"));
        let length: usize = length
            .parse()
            .unwrap_or_else(|_| panic!("bad EIO=3 length in {payload:?}"));
        let mut units = 0;
        let mut end = 0;
        for c in tail.chars() {
            if units == length {
                break;
            }
            units += c.len_utf16();
            end += c.len_utf8();
        }
        assert_eq!(units, length, "truncated EIO=3 payload {payload:?}");
        packets.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    packets
}

/// Encodes one EIO=3 XHR2 binary-payload record: kind byte, decimal length digits, 255, data.
pub fn eio3_binary_record(is_binary: bool, data: &[u8]) -> Vec<u8> {
    let mut record = vec![u8::from(is_binary)];
    record.extend(data.len().to_string().bytes().map(|digit| digit - b'0'));
    record.push(255);
    record.extend_from_slice(data);
    record
}

/// A polling session on one endpoint, opened by a GET handshake.
pub struct Polling {
    pub addr: SocketAddr,
    pub prefix: &'static str,
    pub eio: u8,
    pub sid: String,
    /// Packets that arrived in the handshake response after the open packet (EIO=3 Socket.IO).
    pub extra: Vec<String>,
}

impl Polling {
    pub fn open(addr: SocketAddr, prefix: &'static str, eio: u8) -> Polling {
        Self::open_on(&mut HttpConn::open(addr), addr, prefix, eio, "")
    }

    /// Opens the session with extra query text (e.g. `&b64=1`) on the given connection.
    pub fn open_on(
        conn: &mut HttpConn,
        addr: SocketAddr,
        prefix: &'static str,
        eio: u8,
        extra_query: &str,
    ) -> Polling {
        let response = conn.get(&format!(
            "{}{extra_query}",
            eio_path(prefix, eio, "polling")
        ));
        assert_eq!(response.status, 200, "handshake: {:?}", response.text());
        let body = response.text();
        let (open, extra) = if eio == 3 {
            let mut packets = eio3_decode(&body);
            let open = packets.remove(0);
            (open, packets)
        } else {
            let mut packets: Vec<String> = body.split(RS).map(str::to_string).collect();
            let open = packets.remove(0);
            (open, packets)
        };
        let sid = check_open_packet(&open, &["websocket"], eio == 3);
        Polling {
            addr,
            prefix,
            eio,
            sid,
            extra,
        }
    }

    pub fn path(&self) -> String {
        format!(
            "/{}/?EIO={}&transport=polling&sid={}",
            self.prefix, self.eio, self.sid
        )
    }

    pub fn ws_path(&self) -> String {
        format!(
            "/{}/?EIO={}&transport=websocket&sid={}",
            self.prefix, self.eio, self.sid
        )
    }

    pub fn get(&self) -> Response {
        get(self.addr, &self.path())
    }

    pub fn post(&self, body: impl AsRef<[u8]>) -> Response {
        post(self.addr, &self.path(), body)
    }

    /// POSTs and checks the `200 ok` answer.
    pub fn post_ok(&self, body: impl AsRef<[u8]>) {
        let response = self.post(body);
        assert_eq!(response.status, 200, "POST: {:?}", response.text());
        assert_eq!(response.text(), "ok");
    }

    /// Runs the probe part of the upgrade: WS with the sid, `2probe` → `3probe`, then the pending
    /// (or next) poll must be ended at once with a noop.
    pub fn probe(&self) -> Ws {
        let mut ws = ws_open(self.addr, &self.ws_path());
        ws.send_text("2probe");
        assert_eq!(ws.text(), "3probe");
        let response = self.get();
        assert_eq!(response.status, 200);
        let noop = if self.eio == 3 { "1:6" } else { "6" };
        assert_eq!(response.text(), noop);
        ws
    }

    /// Probe, then `5`: the session now runs on the returned WebSocket.
    pub fn upgrade(&self) -> Ws {
        let mut ws = self.probe();
        ws.send_text("5");
        ws
    }
}

/// Opens a WebSocket-only session and checks its handshake frame.
pub fn ws_session(addr: SocketAddr, prefix: &str, eio: u8) -> (Ws, String) {
    let mut ws = ws_open(addr, &eio_path(prefix, eio, "websocket"));
    let sid = check_open_packet(&ws.text(), &[], eio == 3);
    (ws, sid)
}
