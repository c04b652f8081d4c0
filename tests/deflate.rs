//! permessage-deflate (RFC 7692) on the real binary, from a raw socket that sees every frame
//! bit: the negotiation (and its absence with the extension off), RSV1 on the wire for large
//! messages both ways (a 2 KB echo, a room broadcast), small messages plain, and one client's
//! decompression bomb (1009), bad DEFLATE data (1007) and RSV2 (1002) closing that client only.
//! The client compresses with `flate2` (a dependency of the crate) on its own, frame by frame.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

const DEFLATE_ON: &[&str] = &[
    "--cores",
    "2",
    "--per-message-deflate",
    "--metrics-path",
    "/metrics",
];
const OFFER: &str = "permessage-deflate; client_max_window_bits";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// One complete server frame: its first byte (FIN, RSV, opcode) and payload.
struct Frame {
    first: u8,
    payload: Vec<u8>,
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions` answer, if any.
    extensions: Option<String>,
}

impl Client {
    /// Upgrades to a WebSocket Engine.IO session, offering `offer` (if any), and reads the open
    /// packet.
    #[track_caller]
    fn open(addr: SocketAddr, offer: Option<&str>) -> Client {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let extension = offer
            .map(|offer| format!("Sec-WebSocket-Extensions: {offer}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n{extension}\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("upgrade");
        let mut client = Client {
            stream,
            buf: Vec::new(),
            extensions: None,
        };
        let end = loop {
            if let Some(at) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(client.fill(), "closed during the handshake");
        };
        let head = String::from_utf8(client.buf.drain(..end).collect()).expect("head");
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        client.extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        let open = client.frame();
        assert_eq!(open.first, 0x81);
        assert!(open.payload.starts_with(b"0{"));
        client
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(read) => {
                self.buf.extend_from_slice(&chunk[..read]);
                true
            }
        }
    }

    /// The next frame, or `None` once the server has closed the connection.
    fn try_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 2 {
                let (len, header) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => (
                        usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                        4,
                    ),
                    127 if self.buf.len() >= 10 => {
                        let mut be = [0; 8];
                        be.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(be) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    len => (usize::from(len), 2),
                };
                if len != usize::MAX && self.buf.len() >= header + len {
                    let frame: Vec<u8> = self.buf.drain(..header + len).collect();
                    return Some(Frame {
                        first: frame[0],
                        payload: frame[header..].to_vec(),
                    });
                }
            }
            if !self.fill() {
                return None;
            }
        }
    }

    #[track_caller]
    fn frame(&mut self) -> Frame {
        self.try_frame()
            .expect("a frame before the connection ended")
    }

    /// The next frame's message as text, inflated when RSV1 is set.
    #[track_caller]
    fn text(&mut self) -> (bool, String) {
        let frame = self.frame();
        assert_eq!(frame.first & 0x8f, 0x81, "a final text frame");
        let compressed = frame.first & 0x40 != 0;
        let data = if compressed {
            inflate(&frame.payload)
        } else {
            frame.payload
        };
        (compressed, String::from_utf8(data).expect("UTF-8"))
    }

    /// Sends one masked frame with `first` (FIN, RSV bits, opcode) as its first byte.
    fn send_frame(&mut self, first: u8, payload: &[u8]) {
        let mask = [0x1b, 0x2c, 0x3d, 0x4e];
        let mut frame = vec![first];
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
        self.stream.write_all(&frame).expect("write");
    }

    fn send(&mut self, text: &str) {
        self.send_frame(0x81, text.as_bytes());
    }

    fn send_compressed(&mut self, text: &str) {
        self.send_frame(0xc1, &deflate(text.as_bytes()));
    }

    /// Reads until the end and names it: `close <code>`, or `closed` without a close frame.
    fn ending(&mut self) -> String {
        for _ in 0..1000 {
            match self.try_frame() {
                Some(frame) if frame.first & 0x0f == 0x8 && frame.payload.len() >= 2 => {
                    return format!(
                        "close {}",
                        u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                    );
                }
                Some(_) => {}
                None => return "closed".to_owned(),
            }
        }
        "open".to_owned()
    }
}

/// Raw DEFLATE with a sync flush, the 00 00 ff ff tail cut off (RFC 7692 §7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    compress
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("deflate");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "a whole sync flush");
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    decompress
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("inflate");
    out
}

fn connect(addr: SocketAddr) -> Client {
    let mut client = Client::open(addr, Some(OFFER));
    assert_eq!(client.extensions.as_deref(), Some(ANSWER));
    client.send("40");
    let (_, connected) = client.text();
    assert!(connected.starts_with("40{\"sid\""), "{connected}");
    client
}

#[test]
fn the_offer_is_answered_only_with_the_extension_on() {
    let off = common::Server::start(&["--cores", "1"]);
    assert_eq!(Client::open(off.addr, Some(OFFER)).extensions, None);
    let on = common::Server::start(DEFLATE_ON);
    assert_eq!(Client::open(on.addr, None).extensions, None);
    assert_eq!(
        Client::open(on.addr, Some(OFFER)).extensions.as_deref(),
        Some(ANSWER)
    );
    // A server window under 2^15 can't be honoured: that offer is declined, the next taken.
    let declined = Client::open(
        on.addr,
        Some("permessage-deflate; server_max_window_bits=10"),
    );
    assert_eq!(declined.extensions, None);
    let second = Client::open(
        on.addr,
        Some("permessage-deflate; server_max_window_bits=10, permessage-deflate"),
    );
    assert_eq!(second.extensions.as_deref(), Some(ANSWER));
}

#[test]
fn large_messages_travel_compressed_both_ways_and_small_ones_plain() {
    let server = common::Server::start(DEFLATE_ON);
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    let mut plain = Client::open(server.addr, None);
    plain.send("40");
    plain.text();
    for client in [&mut a, &mut b, &mut plain] {
        client.send(r#"421["join","deflate-room"]"#);
        assert_eq!(client.text(), (false, "431[]".to_owned()));
    }

    // A 2 KB JSON message, sent compressed, echoed compressed and intact.
    let big = format!(
        "{{\"items\":[{}]}}",
        (0..60)
            .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let big = format!("{big:0<2048}");
    let escaped = big.replace('"', "\\\"");
    a.send_compressed(&format!(r#"422["echo","{escaped}"]"#));
    let (compressed, echoed) = a.text();
    assert!(compressed, "the echo came back with RSV1");
    assert_eq!(echoed, format!(r#"432["{escaped}"]"#));

    // Small ones stay plain, either way.
    a.send_compressed(&format!(r#"423["echo","{}"]"#, "s".repeat(600)));
    let (compressed, _) = a.text();
    assert!(!compressed, "under the 1024-byte threshold");

    // A broadcast: compressed for the deflate clients, plain for the other, the same text.
    b.send(&format!(r#"424["publish","deflate-room","{escaped}"]"#));
    let expected = format!(r#"42["message","{escaped}"]"#);
    for client in [&mut a, &mut b] {
        let mut seen = None;
        for _ in 0..3 {
            let (compressed, text) = client.text();
            if text.starts_with("42[") {
                seen = Some((compressed, text));
                break;
            }
        }
        assert_eq!(seen, Some((true, expected.clone())));
    }
    // The echo and two broadcast deliveries went compressed (the third member has no
    // extension); the metrics count them.
    let metrics = common::exchange(
        server.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let metrics = String::from_utf8_lossy(&metrics);
    let compressed = metrics
        .lines()
        .find_map(|line| line.strip_prefix("ringcast_sent_compressed_packets_total "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert_eq!(compressed, Some(3.0), "{metrics}");
    let mut seen = None;
    for _ in 0..3 {
        let frame = plain.frame();
        if frame.payload.starts_with(b"42[") {
            assert_eq!(frame.first, 0x81, "no RSV1 without the extension");
            seen = Some(String::from_utf8(frame.payload).expect("UTF-8"));
            break;
        }
    }
    assert_eq!(seen, Some(expected));
}

#[test]
fn a_bomb_bad_data_or_rsv2_close_that_client_alone() {
    let server = common::Server::start(DEFLATE_ON);
    let mut bystander = connect(server.addr);

    // 8 MiB of zeros in about 8 KiB: refused by size (the default max payload is 1 MB).
    let mut bomb = connect(server.addr);
    let zeros = vec![0u8; 8 << 20];
    let packed = deflate(&zeros);
    assert!(packed.len() < 16 << 10);
    bomb.send_frame(0xc2, &packed);
    assert_eq!(bomb.ending(), "close 1009");

    let mut bad = connect(server.addr);
    bad.send_frame(0xc1, &[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(bad.ending(), "close 1007");

    let mut rsv2 = connect(server.addr);
    rsv2.send_frame(0xa1, b"42[\"echo\"]");
    assert_eq!(rsv2.ending(), "close 1002");

    // Fragmented and compressed: RSV1 on the first frame only.
    let text = format!(r#"425["echo","{}"]"#, "fragment ".repeat(300));
    let packed = deflate(text.as_bytes());
    let (first, rest) = packed.split_at(packed.len() / 2);
    bystander.send_frame(0x41, first);
    bystander.send_frame(0x80, rest);
    let (compressed, echoed) = bystander.text();
    assert!(compressed);
    assert_eq!(echoed, format!(r#"435["{}"]"#, "fragment ".repeat(300)));
}

/// tests/ui/deflate.mjs: headless Chromium (Debian's `chromium`, driven by puppeteer-core from
/// `npm ci --prefix tests/ui`) connects over a compressed WebSocket and exchanges a 117 KB
/// message and a broadcast.
#[test]
fn headless_chromium_exchanges_a_large_message_over_a_compressed_websocket() {
    use std::path::Path;
    use std::process::{Command, Stdio};

    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    assert!(
        ui.join("node_modules/puppeteer-core").is_dir()
            && ui.join("node_modules/socket.io-client").is_dir(),
        "install puppeteer-core first with `npm ci --prefix tests/ui`"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: `apt-get install chromium` (or name one with CHROMIUM)"
    );
    let server = common::Server::start(DEFLATE_ON);
    let mut child = Command::new("node")
        .arg("deflate.mjs")
        .current_dir(&ui)
        .env("RINGCAST_URL", server.url())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    // The script closes its browser itself; past the deadline the child is killed by its
    // own handle.
    let stdout = common::script::collect(child.stdout.take());
    let stderr = common::script::collect(child.stderr.take());
    let status = common::script::wait_with_deadline(&mut child, Duration::from_secs(75));
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the Chromium scenario failed ({status:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    print!("{stdout}");
}
