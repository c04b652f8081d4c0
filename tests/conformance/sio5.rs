//! Socket.IO v5 behaviours (conformance.md §5.2), against the `/socket.io/` app: the Engine.IO
//! part (handshake, heartbeat, close, upgrade with no echo) and the Socket.IO part (connect,
//! disconnect, message, ack, protocol errors).
//! Uses only the blocking clients of `support`; nothing from ringcast's library.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;

const PREFIX: &str = "socket.io";

// ==== Engine.IO part ======================================================================

// Handshake, heartbeat and close: the same tests as on /engine.io/ (engine_v4.rs).
mod engine_layer {
    crate::engine_io_v4_tests!("socket.io");
}

#[test]
fn sio5_eio_upgrade_from_polling_to_websocket() {
    let server = server();
    let session = Polling::open(server.addr, PREFIX, 4);
    let mut ws = session.upgrade();
    // The session lives on: the regular heartbeat continues over the WebSocket.
    assert_eq!(ws.text(), "2");
}

#[test]
fn sio5_eio_upgrade_then_polling_get_is_refused() {
    let server = server();
    let session = Polling::open(server.addr, PREFIX, 4);
    let _ws = session.upgrade();
    assert_eq!(session.get().status, 400);
}

#[test]
fn sio5_eio_upgrade_then_second_websocket_is_closed() {
    let server = server();
    let session = Polling::open(server.addr, PREFIX, 4);
    let _ws = session.upgrade();
    ws_expect_rejected(server.addr, &session.ws_path());
}

// ==== Socket.IO part ======================================================================

/// A WebSocket session with the Engine.IO handshake read.
fn engine_ws(addr: SocketAddr) -> Ws {
    ws_session(addr, PREFIX, 4).0
}

/// Checks a CONNECT reply `40<nsp>{"sid":"..."}` holding only the sid key.
fn check_connect_reply(frame: &str, namespace_prefix: &str) {
    let json = frame
        .strip_prefix(&format!("40{namespace_prefix}"))
        .unwrap_or_else(|| panic!("not a CONNECT reply for {namespace_prefix:?}: {frame:?}"));
    let value: serde_json::Value = serde_json::from_str(json).expect("CONNECT reply JSON");
    let object = value.as_object().expect("CONNECT reply is an object");
    assert_eq!(object.len(), 1, "only sid expected in {frame:?}");
    assert!(object.get("sid").and_then(|s| s.as_str()).is_some());
}

/// WS session connected to `/`: handshake, `40`, CONNECT reply, `auth` event.
fn connected(addr: SocketAddr) -> Ws {
    let mut ws = engine_ws(addr);
    ws.send_text("40");
    check_connect_reply(&ws.text(), "");
    assert_eq!(ws.text(), r#"42["auth",{}]"#);
    ws
}

#[test]
fn sio5_connect_main_namespace() {
    let server = server();
    let mut ws = engine_ws(server.addr);
    ws.send_text("40");
    check_connect_reply(&ws.text(), "");
    assert_eq!(ws.text(), r#"42["auth",{}]"#);
}

#[test]
fn sio5_connect_main_namespace_with_payload() {
    let server = server();
    let mut ws = engine_ws(server.addr);
    ws.send_text(r#"40{"token":"123"}"#);
    check_connect_reply(&ws.text(), "");
    assert_eq!(ws.text(), r#"42["auth",{"token":"123"}]"#);
}

#[test]
fn sio5_connect_custom_namespace() {
    let server = server();
    let mut ws = engine_ws(server.addr);
    ws.send_text("40/custom,");
    check_connect_reply(&ws.text(), "/custom,");
    assert_eq!(ws.text(), r#"42/custom,["auth",{}]"#);
}

#[test]
fn sio5_connect_custom_namespace_with_payload() {
    let server = server();
    let mut ws = engine_ws(server.addr);
    ws.send_text(r#"40/custom,{"token":"abc"}"#);
    check_connect_reply(&ws.text(), "/custom,");
    assert_eq!(ws.text(), r#"42/custom,["auth",{"token":"abc"}]"#);
}

#[test]
fn sio5_connect_unknown_namespace_is_refused() {
    let server = server();
    let mut ws = engine_ws(server.addr);
    ws.send_text("40/random");
    assert_eq!(ws.text(), r#"44/random,{"message":"Invalid namespace"}"#);
}

#[test]
fn sio5_connect_invalid_packet_closes_socket() {
    let server = server();
    let mut ws = engine_ws(server.addr);
    ws.send_text("4abc");
    ws.expect_closed(Duration::from_secs(2));
}

#[test]
fn sio5_connect_missing_handshake_closes_socket() {
    let server = server();
    let mut ws = engine_ws(server.addr);
    // No CONNECT and no pongs: ping timeout (~500 ms) or connectTimeout (1000 ms).
    ws.expect_closed(Duration::from_secs(2));
}

#[test]
fn sio5_disconnect_main_namespace_keeps_engine_session() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text("41");
    // No reply to the DISCONNECT; the next frame is the regular ping.
    assert_eq!(ws.text(), "2");
}

#[test]
fn sio5_disconnect_custom_namespace() {
    let server = server();
    let mut ws = connected(server.addr);
    // Wait for the first ping and leave it unanswered: the rest fits in pingTimeout.
    assert_eq!(ws.text(), "2");
    ws.send_text("40/custom");
    check_connect_reply(&ws.text(), "/custom,");
    assert_eq!(ws.text(), r#"42/custom,["auth",{}]"#);
    ws.send_text("41/custom");
    ws.send_text(r#"42["message","message to main namespace"]"#);
    assert_eq!(
        ws.text(),
        r#"42["message-back","message to main namespace"]"#
    );
}

#[test]
fn sio5_message_plain_text_event() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text(r#"42["message",1,"2",{"3":[true]}]"#);
    assert_eq!(ws.text(), r#"42["message-back",1,"2",{"3":[true]}]"#);
}

#[test]
fn sio5_message_binary_event() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text(r#"452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    ws.send_binary(&[1, 2, 3]);
    ws.send_binary(&[4, 5, 6]);
    assert_eq!(
        ws.next_skipping_pings(),
        Event::Text(
            r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
                .into()
        )
    );
    assert_eq!(ws.next_skipping_pings(), Event::Binary(vec![1, 2, 3]));
    assert_eq!(ws.next_skipping_pings(), Event::Binary(vec![4, 5, 6]));
}

#[test]
fn sio5_message_ack() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text(r#"42456["message-with-ack",1,"2",{"3":[false]}]"#);
    assert_eq!(ws.text(), r#"43456[1,"2",{"3":[false]}]"#);
}

#[test]
fn sio5_message_binary_ack() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text(
        r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    );
    ws.send_binary(&[1, 2, 3]);
    ws.send_binary(&[4, 5, 6]);
    assert_eq!(
        ws.next_skipping_pings(),
        Event::Text(
            r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.into()
        )
    );
    assert_eq!(ws.next_skipping_pings(), Event::Binary(vec![1, 2, 3]));
    assert_eq!(ws.next_skipping_pings(), Event::Binary(vec![4, 5, 6]));
}

#[test]
fn sio5_message_unknown_packet_type_closes_socket() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text("4abc");
    ws.expect_closed(Duration::from_secs(2));
}

#[test]
fn sio5_message_event_payload_not_array_closes_socket() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text("42{}");
    ws.expect_closed(Duration::from_secs(2));
}

#[test]
fn sio5_message_invalid_ack_id_closes_socket() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text(r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#);
    ws.expect_closed(Duration::from_secs(2));
}

// ---- beyond the suite (conformance.md §3.5) ----------------------------------------------

#[test]
fn sio5_message_with_ack_event_without_ack_id_is_ignored() {
    let server = server();
    let mut ws = connected(server.addr);
    ws.send_text(r#"42["message-with-ack",1]"#);
    ws.send_text(r#"42["message",2]"#);
    // Nothing for the ack-less event; the connection stays usable.
    assert_eq!(
        ws.next_skipping_pings(),
        Event::Text(r#"42["message-back",2]"#.into())
    );
}
