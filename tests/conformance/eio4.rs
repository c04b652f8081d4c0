//! Engine.IO v4 behaviours (conformance.md §5.1), against the raw echo endpoint `/engine.io/`.
//! One test per behaviour of the official v4 suite, written independently from the spec text.
//! Uses only the blocking clients of `support`; nothing from ringcast's library.

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::*;

const PREFIX: &str = "engine.io";

fn polling(addr: std::net::SocketAddr) -> Polling {
    Polling::open(addr, PREFIX, 4)
}

// ---- handshake, heartbeat, close: shared with /socket.io/ (see engine_v4.rs) -------------

mod engine_layer {
    crate::engine_io_v4_tests!("engine.io");
}

// ---- message › HTTP long-polling ---------------------------------------------------------

#[test]
fn eio4_polling_echoes_one_text_packet() {
    let server = server();
    // Handshake, POST and GET share one kept-alive connection, as node-fetch's agent does.
    let mut conn = HttpConn::open(server.addr);
    let session = Polling::open_on(&mut conn, server.addr, PREFIX, 4, "");
    let posted = conn.post(&session.path(), "4hello");
    assert_eq!((posted.status, posted.text().as_str()), (200, "ok"));
    let polled = conn.get(&session.path());
    assert_eq!(polled.status, 200);
    assert_eq!(polled.text(), "4hello");
}

#[test]
fn eio4_polling_echoes_several_text_packets_batched() {
    let server = server();
    let session = polling(server.addr);
    let payload = format!("4test1{RS}4test2{RS}4test3");
    session.post_ok(&payload);
    let polled = session.get();
    assert_eq!(polled.status, 200);
    assert_eq!(polled.text(), payload);
}

#[test]
fn eio4_polling_echoes_text_and_binary() {
    let server = server();
    let session = polling(server.addr);
    let payload = format!("4hello{RS}bAQIDBA==");
    session.post_ok(&payload);
    let polled = session.get();
    assert_eq!(polled.status, 200);
    assert_eq!(polled.text(), payload);
}

#[test]
fn eio4_polling_invalid_packet_closes_session() {
    let server = server();
    let session = polling(server.addr);
    match session_post_status(&session, "abc") {
        Some(400) | None => {}
        // reference is lax here (conformance.md §8): it answers 200 ok, then closes.
        Some(200) if external() => {}
        other => panic!("invalid packet answered {other:?}, expected 400"),
    }
    assert_eq!(session.get().status, 400);
}

/// Status of a POST, or None when the server dropped the connection instead of answering.
fn session_post_status(session: &Polling, body: &str) -> Option<u16> {
    request(session.addr, "POST", &session.path(), &[], body.as_bytes())
        .ok()
        .map(|r| r.status)
}

#[test]
fn eio4_polling_duplicate_poll_closes_session() {
    let server = server();
    let session = polling(server.addr);
    let mut first = HttpConn::open(server.addr);
    first.send("GET", &session.path(), &[], b"").unwrap();
    // Time for the server to read the first request, even on a loaded 2-core machine (5 ms was
    // not always enough there).
    sleep(Duration::from_millis(50));
    let second = get(server.addr, &format!("{}&t=burst", session.path()));
    assert!(
        matches!(second.status, 400 | 500),
        "second poll answered {}",
        second.status
    );
    let first = first.receive().unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "1");
    assert_eq!(session.get().status, 400);
}

#[test]
fn eio4_polling_cancelled_poll_closes_session() {
    let server = server();
    let session = polling(server.addr);
    let mut pending = HttpConn::open(server.addr);
    pending.send("GET", &session.path(), &[], b"").unwrap();
    // Time for the server to read the first request, even on a loaded 2-core machine (5 ms was
    // not always enough there).
    sleep(Duration::from_millis(50));
    pending.abort();
    assert_eq!(session.get().status, 400);
}

// ---- message › WebSocket -----------------------------------------------------------------

#[test]
fn eio4_ws_echoes_text() {
    let server = server();
    let (mut ws, _) = ws_session(server.addr, PREFIX, 4);
    ws.send_text("4hello");
    assert_eq!(ws.text(), "4hello");
}

#[test]
fn eio4_ws_echoes_binary() {
    let server = server();
    let (mut ws, _) = ws_session(server.addr, PREFIX, 4);
    ws.send_binary(&[1, 2, 3, 4]);
    assert_eq!(ws.binary(), vec![1, 2, 3, 4]);
}

#[test]
fn eio4_ws_invalid_packet_closes_socket() {
    let server = server();
    let (mut ws, _) = ws_session(server.addr, PREFIX, 4);
    ws.send_text("abc");
    ws.expect_closed(Duration::from_secs(2));
}

// ---- upgrade -----------------------------------------------------------------------------

#[test]
fn eio4_upgrade_from_polling_to_websocket() {
    let server = server();
    let start = Instant::now();
    let session = polling(server.addr);
    let mut ws = session.upgrade();
    ws.send_text("4hello");
    // Must be the echo, not a ping: the whole upgrade fits inside pingInterval.
    assert_eq!(ws.text(), "4hello");
    assert!(start.elapsed() < Duration::from_millis(PING_INTERVAL_MS));
}

#[test]
fn eio4_upgrade_then_polling_get_is_refused() {
    let server = server();
    let session = polling(server.addr);
    let mut ws = session.upgrade();
    assert_eq!(session.get().status, 400);
    ws.send_text("4hello");
    assert_eq!(ws.next_skipping_pings(), Event::Text("4hello".into()));
}

#[test]
fn eio4_upgrade_then_second_websocket_is_closed() {
    let server = server();
    let session = polling(server.addr);
    let mut ws = session.upgrade();
    ws_expect_rejected(server.addr, &session.ws_path());
    ws.send_text("4hello");
    assert_eq!(ws.next_skipping_pings(), Event::Text("4hello".into()));
}
