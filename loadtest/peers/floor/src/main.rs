//! The floor: the least a server can do and still pass the loadtest's checks, so that
//! `loadtest/compare` can say what the machine itself costs for a workload (one TCP socket per
//! client, kernel included) and how far each real server is above it.
//!
//! One thread, epoll (through mio), WebSocket only: the upgrade, the Engine.IO open with a fixed
//! sid, the Socket.IO CONNECT, then `join` (ack), `publish` (to every member of the room, the
//! sender included; ack if asked) and `echo` (ack with the same arguments). A publish is
//! encoded once, into one frame; what a turn of the loop (one `epoll_wait`'s events) queues
//! for a connection goes out in one `write` at the end of the turn, so a recipient of several
//! publishes in one turn costs one write, as a real server that batches pays. No validation
//! beyond what routing needs, no pings, no timeouts, no limits: it is not a server anyone
//! should run, only a yardstick.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use base64::Engine as _;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};

const LISTENER: Token = Token(usize::MAX);
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OPEN: &[u8] = br#"0{"sid":"AAAAAAAAAAAAAAAAAAAA","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
const CONNECTED: &[u8] = br#"40{"sid":"AAAAAAAAAAAAAAAAAAAB"}"#;

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet handled.
    input: Vec<u8>,
    /// Bytes the socket did not take yet, written when it is writable again.
    output: Vec<u8>,
    upgraded: bool,
    /// The rooms it joined (to leave them when it goes).
    rooms: Vec<Vec<u8>>,
}

impl Conn {
    /// Queues `bytes` for the end of the turn.
    fn send(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Writes what waited, as much as the socket takes.
    fn flush(&mut self) -> io::Result<()> {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// Every connection (by token) and every room's members.
#[derive(Default)]
struct Server {
    conns: HashMap<usize, Conn>,
    rooms: HashMap<Vec<u8>, Vec<usize>>,
    next: usize,
    /// Connections given something to write this turn.
    dirty: Vec<usize>,
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut host, mut port) = ("0.0.0.0".to_owned(), 3000u16);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--host" => host = args.next().unwrap_or(host),
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            _ => {}
        }
    }
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let mut listener = TcpListener::bind(addr)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {port}");
    let mut server = Server::default();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                server.accept(&listener, &poll)?;
                continue;
            }
            let token = event.token().0;
            let mut alive = true;
            if event.is_writable() {
                if let Some(conn) = server.conns.get_mut(&token) {
                    alive = conn.flush().is_ok();
                }
            }
            if alive && event.is_readable() {
                alive = server.read(token, &mut buf);
            }
            if !alive {
                server.close(token, &poll);
            }
        }
        // One write per connection for everything the turn gave it.
        for token in std::mem::take(&mut server.dirty) {
            let failed = server
                .conns
                .get_mut(&token)
                .is_some_and(|c| c.flush().is_err());
            if failed {
                server.close(token, &poll);
            }
        }
    }
}

impl Server {
    fn accept(&mut self, listener: &TcpListener, poll: &Poll) -> io::Result<()> {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let token = self.next;
                    self.next += 1;
                    poll.registry().register(
                        &mut stream,
                        Token(token),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let conn = Conn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        upgraded: false,
                        rooms: Vec::new(),
                    };
                    self.conns.insert(token, conn);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // Out of descriptors, say: try again on the next event.
                Err(_) => return Ok(()),
            }
        }
    }

    fn close(&mut self, token: usize, poll: &Poll) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = poll.registry().deregister(&mut conn.stream);
            for room in conn.rooms {
                if let Some(members) = self.rooms.get_mut(&room) {
                    members.retain(|&member| member != token);
                }
            }
        }
    }

    /// Reads until the socket is drained (mio is edge-triggered) and handles what came; false
    /// when the connection is gone.
    fn read(&mut self, token: usize, buf: &mut [u8]) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return false;
            };
            match conn.stream.read(buf) {
                Ok(0) => return false,
                Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        self.handle(token)
    }

    /// Handles every complete request or frame read from `token`.
    fn handle(&mut self, token: usize) -> bool {
        let Some(conn) = self.conns.get_mut(&token) else {
            return false;
        };
        if !conn.upgraded {
            let Some(end) = find(&conn.input, b"\r\n\r\n") else {
                return true;
            };
            let Some(key) = header(&conn.input[..end], b"sec-websocket-key") else {
                return false;
            };
            let mut hash = Sha1::new();
            hash.update(key);
            hash.update(WS_GUID);
            let accept = base64::engine::general_purpose::STANDARD.encode(hash.finalize());
            let mut reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            text_frame(&mut reply, &[OPEN]);
            conn.send(&reply);
            conn.input.drain(..end + 4);
            conn.upgraded = true;
            self.dirty.push(token);
        }
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return false;
            };
            let Some((opcode, range, len)) = client_frame(&mut conn.input) else {
                return true;
            };
            match opcode {
                0x1 => {
                    let packet = conn.input[range].to_vec();
                    conn.input.drain(..len);
                    self.packet(token, &packet);
                }
                0x8 => return false,
                _ => {
                    conn.input.drain(..len);
                }
            }
        }
    }

    /// One Engine.IO text packet from `token`.
    fn packet(&mut self, token: usize, packet: &[u8]) {
        let mut out = Vec::new();
        match packet {
            [b'4', b'0', ..] => text_frame(&mut out, &[CONNECTED]),
            [b'4', b'2', rest @ ..] => {
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                let (ack, array) = rest.split_at(digits);
                let (event, args) = event_parts(array);
                match event {
                    b"join" => {
                        let room = first_string(args).to_vec();
                        self.rooms.entry(room.clone()).or_default().push(token);
                        if let Some(conn) = self.conns.get_mut(&token) {
                            conn.rooms.push(room);
                        }
                    }
                    b"publish" => {
                        let room = first_string(args);
                        let payload = after_first(args);
                        let mut frame = Vec::with_capacity(payload.len() + 24);
                        text_frame(&mut frame, &[b"42[\"message\",", payload, b"]"]);
                        let members = self.rooms.get(room).map(Vec::as_slice).unwrap_or(&[]);
                        for member in members {
                            if let Some(conn) = self.conns.get_mut(member) {
                                conn.send(&frame);
                                self.dirty.push(*member);
                            }
                        }
                    }
                    b"echo" if !ack.is_empty() => {
                        text_frame(&mut out, &[b"43", ack, b"[", args, b"]"]);
                        ack_sent(self, token, &out);
                        return;
                    }
                    _ => {}
                }
                if !ack.is_empty() {
                    text_frame(&mut out, &[b"43", ack, b"[]"]);
                }
            }
            _ => {}
        }
        ack_sent(self, token, &out);
    }
}

/// Sends `out` (if anything) to `token`.
fn ack_sent(server: &mut Server, token: usize, out: &[u8]) {
    if out.is_empty() {
        return;
    }
    if let Some(conn) = server.conns.get_mut(&token) {
        conn.send(out);
        server.dirty.push(token);
    }
}

/// Appends one unmasked text frame whose payload is `parts` joined.
fn text_frame(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// The client frame at the start of `input`, unmasked in place: its opcode, where its payload
/// lies and how many bytes it takes; `None` while incomplete. (Fragmented messages are not
/// used by the loadtest.)
fn client_frame(input: &mut [u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if input.len() < 2 {
        return None;
    }
    let opcode = input[0] & 0x0f;
    let (mut at, len) = match input[1] & 0x7f {
        126 => (
            4,
            u16::from_be_bytes([*input.get(2)?, *input.get(3)?]) as usize,
        ),
        127 => {
            let bytes: [u8; 8] = input.get(2..10)?.try_into().ok()?;
            (10, u64::from_be_bytes(bytes) as usize)
        }
        n => (2, n as usize),
    };
    let mask: [u8; 4] = input.get(at..at + 4)?.try_into().ok()?;
    at += 4;
    let end = at.checked_add(len)?;
    let payload = input.get_mut(at..end)?;
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
    Some((opcode, at..end, end))
}

/// `["name",args...]` → (`name`, `args...`): the event name and the rest of the array's
/// inside, unparsed.
fn event_parts(array: &[u8]) -> (&[u8], &[u8]) {
    let inner = array
        .strip_prefix(b"[\"")
        .and_then(|a| a.strip_suffix(b"]"))
        .unwrap_or(&[]);
    let name_end = inner.iter().position(|&b| b == b'"').unwrap_or(inner.len());
    let rest = inner.get(name_end + 1..).unwrap_or(&[]);
    (&inner[..name_end], rest.strip_prefix(b",").unwrap_or(rest))
}

/// The first argument's text when it is a string without escapes (a room name).
fn first_string(args: &[u8]) -> &[u8] {
    let inner = args.strip_prefix(b"\"").unwrap_or(&[]);
    let end = inner.iter().position(|&b| b == b'"').unwrap_or(inner.len());
    &inner[..end]
}

/// What follows the first argument (a room name string) and its comma.
fn after_first(args: &[u8]) -> &[u8] {
    let room = first_string(args);
    args.get(room.len() + 3..).unwrap_or(&[])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request header's value, its name matched without regard to case.
fn header<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (key, value) = line.split_at(colon);
        key.eq_ignore_ascii_case(name)
            .then(|| value[1..].trim_ascii())
    })
}
