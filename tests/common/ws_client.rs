//! A WebSocket Socket.IO client on a plain blocking socket, for tests that must decide when a
//! client reads (slow consumers, shutdown): Engine.IO v4, namespace `/`, unfragmented frames.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A WebSocket Socket.IO client on a plain socket, so the test decides when it reads.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The Engine.IO open packet the server sent (`0{"sid":...}`).
    pub open_packet: String,
}

impl Client {
    /// Connects to namespace `/` over WebSocket. `receive_buffer` (bytes), when given, is set
    /// before connecting, so the window the server may fill stays small.
    #[track_caller]
    pub fn connect(addr: SocketAddr, receive_buffer: Option<usize>) -> Client {
        let mut client = Client::open(addr, receive_buffer);
        client.send("40");
        assert!(client.text().starts_with("40{\"sid\""), "connected to /");
        client
    }

    /// Opens an Engine.IO session over WebSocket (the open packet read), without connecting
    /// to any Socket.IO namespace.
    #[track_caller]
    pub fn open(addr: SocketAddr, receive_buffer: Option<usize>) -> Client {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        if let Some(size) = receive_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        socket.connect(&addr.into()).expect("connect");
        let mut stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        let request = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream
            .write_all(request.as_bytes())
            .expect("upgrade request");
        let mut client = Client {
            stream,
            buf: Vec::new(),
            open_packet: String::new(),
        };
        let head_end = loop {
            if let Some(at) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            client.fill();
        };
        assert!(client.buf.starts_with(b"HTTP/1.1 101"), "not upgraded");
        client.buf.drain(..head_end);
        client.open_packet = client.text();
        assert!(client.open_packet.starts_with("0{"), "open packet first");
        client
    }

    #[track_caller]
    pub fn fill(&mut self) {
        let mut chunk = [0; 64 * 1024];
        let read = loop {
            match self.stream.read(&mut chunk) {
                Ok(read) => break read,
                // A signal to this test process (another test's child ending) is no error.
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => panic!("read: {error}"),
            }
        };
        assert!(read > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..read]);
    }

    /// The next text message (server frames are unmasked and unfragmented here).
    #[track_caller]
    pub fn text(&mut self) -> String {
        loop {
            if let Some((first, header, len)) = self.frame_at(0) {
                assert_eq!(first, 0x81, "a final text frame");
                let frame: Vec<u8> = self.buf.drain(..header + len).collect();
                return String::from_utf8(frame[header..].to_vec()).expect("UTF-8");
            }
            self.fill();
        }
    }

    /// The complete frame at `at` in the buffer, if there is one: its first byte, header
    /// length and payload length.
    fn frame_at(&self, at: usize) -> Option<(u8, usize, usize)> {
        let head = self.buf.get(at..)?;
        let (len, header) = match *head.get(1)? & 0x7f {
            126 => (
                usize::from(u16::from_be_bytes(head.get(2..4)?.try_into().ok()?)),
                4,
            ),
            127 => (
                u64::from_be_bytes(head.get(2..10)?.try_into().ok()?) as usize,
                10,
            ),
            len => (usize::from(len), 2),
        };
        (head.len() >= header + len).then_some((head[0], header, len))
    }

    /// The complete frames buffered: (first byte, payload), in order.
    fn frames(&self) -> Vec<(u8, &[u8])> {
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some((first, header, len)) = self.frame_at(at) {
            frames.push((first, &self.buf[at + header..at + header + len]));
            at += header + len;
        }
        frames
    }

    /// Sends a text message; false once the server has closed the connection.
    pub fn try_send(&mut self, text: &str) -> bool {
        let payload = text.as_bytes();
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).is_ok()
    }

    #[track_caller]
    pub fn send(&mut self, text: &str) {
        assert!(self.try_send(text), "send failed");
    }

    /// Joins `room` with the built-in `join` event and waits for its ack.
    #[track_caller]
    pub fn join(&mut self, room: &str) {
        self.send(&format!(r#"421["join","{room}"]"#));
        assert_eq!(self.text(), "431[]", "join acked");
    }

    /// Reads until the server ends the connection (true) or `within` passes (false), and
    /// counts the close frames among the complete frames read.
    pub fn read_to_end(&mut self, within: Duration) -> (bool, usize) {
        self.stream
            .set_read_timeout(Some(within))
            .expect("read timeout");
        let ended = loop {
            let mut chunk = [0; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(read) => self.buf.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    break !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                }
            }
        };
        let closes = self
            .frames()
            .iter()
            .filter(|(first, _)| first & 0x0f == 0x8)
            .count();
        (ended, closes)
    }

    /// Writes raw bytes (a hand-made, possibly broken, frame).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
    }

    /// Reads until the server ends the connection (or `within` passes) and describes how it
    /// ended: `close <code>` for a close frame with a code, `closed` for an end without one,
    /// `open` if it did not end.
    pub fn ending(&mut self, within: Duration) -> String {
        let (ended, _) = self.read_to_end(within);
        let close = self
            .frames()
            .into_iter()
            .find(|(first, payload)| first & 0x0f == 0x8 && payload.len() >= 2);
        if let Some((_, payload)) = close {
            return format!("close {}", u16::from_be_bytes([payload[0], payload[1]]));
        }
        if ended { "closed" } else { "open" }.to_owned()
    }
}
