//! Connections that stop short are reaped on time, against the real binary: a TCP connection
//! that sends no request (or half of one), a session that never sends a Socket.IO CONNECT, a
//! client gone silent (a half-open connection), and an upgrade that never completes. Every
//! other client carries on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::ws_client::Client;

/// Short timeouts, so the test waits well under a second for each.
const ARGS: &[&str] = &[
    "--cores",
    "2",
    "--head-timeout",
    "300",
    "--connect-timeout",
    "300",
    "--ping-interval",
    "300",
    "--ping-timeout",
    "200",
    "--upgrade-timeout",
    "300",
];

/// Reads until the server closes the connection; how long that took, and what it sent.
#[track_caller]
fn until_closed(stream: &mut TcpStream, within: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut received = Vec::new();
    loop {
        let mut chunk = [0; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return (started.elapsed(), received),
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error) => panic!("not closed within {within:?}: {error}"),
        }
    }
}

#[test]
fn a_connection_that_sends_no_request_is_closed_after_the_head_timeout() {
    let server = common::Server::start(ARGS);
    if server.is_external() {
        return;
    }
    let mut silent = TcpStream::connect(server.addr).expect("connect");
    let (took, received) = until_closed(&mut silent, Duration::from_secs(5));
    assert!(received.is_empty(), "closed without an answer");
    assert!(
        took >= Duration::from_millis(250),
        "not before the timeout ({took:?})"
    );

    let mut partial = TcpStream::connect(server.addr).expect("connect");
    partial
        .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        .expect("half a head");
    let (_, received) = until_closed(&mut partial, Duration::from_secs(5));
    assert!(
        received.starts_with(b"HTTP/1.1 408"),
        "a partial head is answered 408, got {:?}",
        String::from_utf8_lossy(&received)
    );
}

#[test]
fn a_session_that_never_connects_to_a_namespace_is_closed() {
    // Pings far apart, so that the client that stays answers none in this test.
    let mut args = ARGS.to_vec();
    let at = args
        .iter()
        .position(|a| *a == "--ping-interval")
        .expect("flag")
        + 1;
    args[at] = "10000";
    let server = common::Server::start(&args);
    if server.is_external() {
        return;
    }
    let mut idle = Client::open(server.addr, None);
    let mut active = Client::connect(server.addr, None);
    let started = Instant::now();
    let (ended, _) = idle.read_to_end(Duration::from_secs(5));
    assert!(ended, "closed after the connect timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    active.send(r#"421["echo","still here"]"#);
    assert_eq!(
        active.text(),
        r#"431["still here"]"#,
        "the other client carries on"
    );
}

#[test]
fn a_client_gone_silent_is_closed_after_the_ping_timeout() {
    let server = common::Server::start(ARGS);
    if server.is_external() {
        return;
    }
    // Connected, then it never answers a ping (a peer gone without a FIN looks the same).
    let mut silent = Client::connect(server.addr, None);
    let started = Instant::now();
    assert_eq!(silent.text(), "2", "pinged after the ping interval");
    let (ended, closes) = silent.read_to_end(Duration::from_secs(5));
    assert!(ended, "closed once the pong is overdue");
    assert!(closes <= 1, "at most a close frame before the end");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "closed after ping interval + timeout ({took:?})"
    );
}

#[test]
fn an_upgrade_that_never_completes_is_dropped_and_polling_goes_on() {
    let server = common::Server::start(ARGS);
    if server.is_external() {
        return;
    }
    let sid = polling_handshake(server.addr);
    // A probe WebSocket that sends `2probe` and then nothing (no `5`).
    let mut probe = TcpStream::connect(server.addr).expect("connect");
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    probe
        .write_all(request.as_bytes())
        .expect("upgrade request");
    let mask = [1, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 6];
    frame.extend_from_slice(&mask);
    frame.extend(b"2probe".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    probe.write_all(&frame).expect("2probe");
    let (took, received) = until_closed(&mut probe, Duration::from_secs(5));
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.contains("3probe"),
        "the probe was answered: {received:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "dropped after the upgrade timeout ({took:?})"
    );
    // The session is still served over polling (it answers its pings, so it lives on).
    let answer = http(server.addr, "POST", &sid, "3");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "still polling: {answer}"
    );
}

/// Opens a polling session and connects it to `/`; its sid.
fn polling_handshake(addr: SocketAddr) -> String {
    let sid = common::sid_in(&http(addr, "GET", "", ""));
    assert!(http(addr, "POST", &sid, "40").starts_with("HTTP/1.1 200"));
    sid
}

/// One polling request on its own connection; the whole response.
fn http(addr: SocketAddr, method: &str, sid: &str, body: &str) -> String {
    let sid = if sid.is_empty() {
        String::new()
    } else {
        format!("&sid={sid}")
    };
    let query = format!("EIO=4&transport=polling{sid}");
    let request = common::polling_request(method, &query, body);
    let response = common::exchange(addr, &request, Duration::from_secs(5));
    String::from_utf8_lossy(&response).into_owned()
}
