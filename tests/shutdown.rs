//! Graceful shutdown of the real binary: on SIGTERM ringcast stops accepting, sends every
//! client what was queued for it, closes every session behind that, and exits (status 0)
//! well within its grace period.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::ws_client::Client;

/// Messages published before the shutdown, each about 2 KiB: 400 KiB in all, far more than a
/// stalled client's socket buffers take, so most of it waits in the server's queues.
const MESSAGES: usize = 200;

#[test]
fn sigterm_sends_everything_queued_then_closes_every_session_and_exits() {
    let mut server = common::Server::start(&["--cores", "2", "--shutdown-grace", "10000"]);
    if server.is_external() {
        return;
    }
    // A WebSocket client that does not read until after the signal, a polling client with no
    // GET pending at the signal, and a publisher.
    let mut stalled = Client::connect(server.addr, Some(4096));
    stalled.join("r");
    let mut poller = Polling::connect(server.addr);
    poller.join("r");
    let mut publisher = Client::connect(server.addr, None);
    let pad = "p".repeat(2048);
    for n in 0..MESSAGES {
        publisher.send(&format!(r#"42["publish","r","{n:04}{pad}"]"#));
    }
    publisher.send(r#"429["echo","sync"]"#);
    assert_eq!(publisher.text(), r#"439["sync"]"#, "every publish handled");
    // Deliveries to members on the other shard cross the bus; let them land.
    std::thread::sleep(Duration::from_millis(300));

    let signalled = Instant::now();
    let terminating = std::thread::spawn(move || {
        let status = server.terminate(Duration::from_secs(20));
        (status, signalled.elapsed(), server.addr)
    });

    // The stalled client reads now: every message, in order, then a close frame.
    for n in 0..MESSAGES {
        let text = stalled.text();
        assert!(
            text.starts_with(&format!(r#"42["message","{n:04}"#)),
            "message {n} in order, got {}",
            &text[..text.len().min(40)]
        );
    }
    let (ended, closes) = stalled.read_to_end(Duration::from_secs(10));
    assert!(ended, "the connection ended");
    assert_eq!(closes, 1, "a close frame after the last message");

    // The polling client's next GET carries every message, then the close packet.
    let mut packets = Vec::new();
    while !packets.iter().any(|p: &String| p == "1") {
        packets.extend(poller.get());
    }
    let messages: Vec<&String> = packets.iter().filter(|p| p.starts_with("42")).collect();
    assert_eq!(
        messages.len(),
        MESSAGES,
        "every message reached the polling client"
    );
    for (n, message) in messages.iter().enumerate() {
        assert!(
            message.starts_with(&format!(r#"42["message","{n:04}"#)),
            "in order"
        );
    }
    assert_eq!(
        packets.last().map(String::as_str),
        Some("1"),
        "the close packet last"
    );

    let (status, took, addr) = terminating.join().expect("terminating thread");
    let status = status.expect("ringcast exited within 20 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(10),
        "exited within the grace period"
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens once it has exited"
    );
}

/// An Engine.IO v4 long-polling client on one keep-alive HTTP/1.1 connection, as browsers
/// poll: once the server stops accepting, only connections already open can reach it.
struct Polling {
    stream: TcpStream,
    sid: String,
}

impl Polling {
    #[track_caller]
    fn connect(addr: SocketAddr) -> Polling {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let mut client = Polling {
            stream,
            sid: String::new(),
        };
        let (status, body) = client.request("GET", "");
        assert_eq!(status, 200, "handshake");
        client.sid = common::sid_in(&body);
        client.post("40");
        assert!(client.get()[0].starts_with("40{"), "connected to /");
        client
    }

    #[track_caller]
    fn join(&mut self, room: &str) {
        self.post(&format!(r#"421["join","{room}"]"#));
        assert_eq!(self.get(), ["431[]"], "join acked");
    }

    #[track_caller]
    fn post(&mut self, payload: &str) {
        let (status, body) = self.request("POST", payload);
        assert_eq!((status, body.as_str()), (200, "ok"), "POST {payload}");
    }

    /// One GET: the packets of its answer.
    #[track_caller]
    fn get(&mut self) -> Vec<String> {
        let (status, body) = self.request("GET", "");
        assert_eq!(status, 200, "GET: {body}");
        body.split('\u{1e}').map(str::to_owned).collect()
    }

    /// One request on the connection: the status and the body (by its Content-Length).
    #[track_caller]
    fn request(&mut self, method: &str, body: &str) -> (u16, String) {
        let sid = if self.sid.is_empty() {
            String::new()
        } else {
            format!("&sid={}", self.sid)
        };
        let head = format!(
            "{method} /socket.io/?EIO=4&transport=polling{sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream
            .write_all(head.as_bytes())
            .expect("request head");
        self.stream
            .write_all(body.as_bytes())
            .expect("request body");
        let mut response = Vec::new();
        let head_end = loop {
            if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0; 4096];
            let read = self.stream.read(&mut chunk).expect("response");
            assert!(read > 0, "the server closed the connection");
            response.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8(response[..head_end].to_vec()).expect("UTF-8 head");
        let status = head[9..12].parse().expect("status code");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("Content-Length");
        while response.len() < head_end + length {
            let mut chunk = [0; 64 * 1024];
            let read = self.stream.read(&mut chunk).expect("response body");
            assert!(read > 0, "the server closed the connection mid-body");
            response.extend_from_slice(&chunk[..read]);
        }
        let body =
            String::from_utf8(response[head_end..head_end + length].to_vec()).expect("UTF-8 body");
        (status, body)
    }
}
