//! Behaviours the official suites don't check but the conformance app must have: the HTTP
//! status codes of conformance.md §4, maxPayload, CORS, non-ASCII and long payloads, EIO=3
//! binary payloads both ways (§10), and socket.io-client v2 compatibility on `/socket.io/` (§9).
//! Uses only the blocking clients of `support`; nothing from ringcast's library.

use std::time::Duration;

use crate::support::*;

// ---- §4 HTTP and WebSocket error answers -------------------------------------------------

#[test]
fn http_unsupported_eio_values_are_refused() {
    let server = server();
    for prefix in ["engine.io", "socket.io"] {
        for eio in ["", "5", "abc", "3.0"] {
            let path = format!("/{prefix}/?EIO={eio}&transport=polling");
            assert_eq!(get(server.addr, &path).status, 400, "{path}");
            let path = format!("/{prefix}/?EIO={eio}&transport=websocket");
            match ws_try_open(server.addr, &path) {
                Err(WsOpenError::Refused(status)) => assert_eq!(status, 400, "{path}"),
                other => panic!("{path}: expected a 400 refusal, got {:?}", other.err()),
            }
        }
    }
}

#[test]
fn http_unknown_sid_is_refused() {
    let server = server();
    for eio in [3, 4] {
        for prefix in ["engine.io", "socket.io"] {
            let path = format!("/{prefix}/?EIO={eio}&transport=polling&sid=nosuchsession");
            assert_eq!(get(server.addr, &path).status, 400, "GET {path}");
            let body = if eio == 3 { "6:4hello" } else { "4hello" };
            assert_eq!(post(server.addr, &path, body).status, 400, "POST {path}");
            let path = format!("/{prefix}/?EIO={eio}&transport=websocket&sid=nosuchsession");
            match ws_try_open(server.addr, &path) {
                Err(WsOpenError::Refused(status)) => assert_eq!(status, 400, "{path}"),
                other => panic!("{path}: expected a 400 refusal, got {:?}", other.err()),
            }
        }
    }
}

#[test]
fn http_unknown_query_keys_are_ignored() {
    let server = server();
    let response = get(
        server.addr,
        "/engine.io/?EIO=4&transport=polling&t=NxYz1&foo=bar",
    );
    assert_eq!(response.status, 200);
    check_open_packet(&response.text(), &["websocket"], false);
}

#[test]
fn http_content_types_of_polling_answers() {
    let server = server();
    let session = Polling::open(server.addr, "engine.io", 4);
    let posted = session.post("4hello");
    assert_eq!(posted.status, 200);
    assert_eq!(posted.text(), "ok");
    let post_type = posted.header("content-type").unwrap_or_default();
    assert!(
        post_type.starts_with("text/html"),
        "POST type {post_type:?}"
    );
    let polled = session.get();
    let poll_type = polled
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace(' ', "");
    assert_eq!(poll_type, "text/plain;charset=utf-8");
}

#[test]
fn http_binary_post_on_eio4_closes_session() {
    let server = server();
    let session = Polling::open(server.addr, "engine.io", 4);
    let response = request(
        server.addr,
        "POST",
        &session.path(),
        &[("Content-Type", "application/octet-stream")],
        &[1, 2, 3, 4],
    )
    .unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(session.get().status, 400);
}

// ---- §10 maxPayload ----------------------------------------------------------------------

#[test]
fn max_payload_oversize_post_is_refused_and_session_closed() {
    let server = server();
    let session = Polling::open(server.addr, "engine.io", 4);
    let mut body = String::from("4");
    body.push_str(&"a".repeat(MAX_PAYLOAD as usize));
    let mut conn = HttpConn::open(server.addr);
    // The server may answer before reading the whole body; a failed write is fine then.
    let _ = conn.send("POST", &session.path(), &[], body.as_bytes());
    let response = conn.receive().expect("an answer to the oversize POST");
    assert_eq!(response.status, 413);
    let after = session.get().status;
    // reference is lax here (conformance.md §8): engine.io 6.6 answers 413 but keeps the
    // session open (not listed in §8; observed). ringcast closes it.
    if !(external() && after == 200) {
        assert_eq!(after, 400);
    }
}

#[test]
fn max_payload_accepts_a_payload_at_the_limit() {
    let server = server();
    let session = Polling::open(server.addr, "engine.io", 4);
    let mut body = String::from("4");
    body.push_str(&"a".repeat(MAX_PAYLOAD as usize - 1));
    session.post_ok(&body);
    assert_eq!(session.get().text(), body);
}

#[test]
fn max_payload_oversize_ws_message_closes_with_1009() {
    let server = server();
    let (mut ws, _) = ws_session(server.addr, "engine.io", 4);
    let mut message = String::from("4");
    message.push_str(&"a".repeat(MAX_PAYLOAD as usize));
    let _ = ws.try_send(tungstenite::Message::Text(message));
    let (_, code) = ws.expect_closed(Duration::from_secs(2));
    assert_eq!(code, Some(1009));
}

// ---- §10 CORS ----------------------------------------------------------------------------

#[test]
fn cors_header_on_polling_answers() {
    let server = server();
    let origin = [("Origin", "http://example.com")];
    let path = "/engine.io/?EIO=4&transport=polling";
    let handshake = request(server.addr, "GET", path, &origin, b"").unwrap();
    assert_eq!(handshake.status, 200);
    assert_eq!(handshake.header("access-control-allow-origin"), Some("*"));
    let sid = check_open_packet(&handshake.text(), &["websocket"], false);
    let path = format!("{path}&sid={sid}");
    let posted = request(server.addr, "POST", &path, &origin, b"4hi").unwrap();
    assert_eq!(posted.status, 200);
    assert_eq!(posted.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn cors_preflight_is_answered() {
    let server = server();
    for prefix in ["engine.io", "socket.io"] {
        let path = format!("/{prefix}/?EIO=4&transport=polling");
        let response = request(
            server.addr,
            "OPTIONS",
            &path,
            &[
                ("Origin", "http://example.com"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        )
        .unwrap();
        assert!(
            matches!(response.status, 200 | 204),
            "{path}: {}",
            response.status
        );
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    }
}

// ---- §10 non-ASCII and long payloads -----------------------------------------------------

const NON_ASCII: &str = "é€😀";

#[test]
fn eio4_polling_echoes_non_ascii_text() {
    let server = server();
    let session = Polling::open(server.addr, "engine.io", 4);
    let payload = format!("4{NON_ASCII}{RS}4hello");
    session.post_ok(&payload);
    assert_eq!(session.get().text(), payload);
}

#[test]
fn eio4_ws_echoes_non_ascii_text() {
    let server = server();
    let (mut ws, _) = ws_session(server.addr, "engine.io", 4);
    ws.send_text(&format!("4{NON_ASCII}"));
    assert_eq!(ws.text(), format!("4{NON_ASCII}"));
}

#[test]
fn eio3_polling_counts_lengths_in_utf16_units() {
    let server = server();
    let session = Polling::open(server.addr, "engine.io", 3);
    // 😀 is two UTF-16 code units, so "4é€😀" has length 5.
    let payload = format!("5:4{NON_ASCII}6:4hello");
    session.post_ok(&payload);
    assert_eq!(session.get().text(), payload);
}

fn long_text() -> String {
    (0..500 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

#[test]
fn eio4_polling_echoes_long_text() {
    let server = server();
    let session = Polling::open(server.addr, "engine.io", 4);
    let payload = format!("4{}", long_text());
    session.post_ok(&payload);
    let polled = session.get();
    assert_eq!(polled.status, 200);
    assert!(polled.text() == payload, "long echo differs");
}

#[test]
fn eio4_ws_echoes_long_text() {
    let server = server();
    let (mut ws, _) = ws_session(server.addr, "engine.io", 4);
    let payload = format!("4{}", long_text());
    ws.send_text(&payload);
    assert!(ws.text() == payload, "long echo differs");
}

// ---- §3.6 EIO=3 binary payloads both ways ------------------------------------------------

#[test]
fn eio3_polling_accepts_xhr2_binary_post() {
    let server = server();
    let session = Polling::open(server.addr, "engine.io", 3);
    let mut body = eio3_binary_record(false, b"4hello");
    body.extend(eio3_binary_record(true, &[4, 1, 2, 3, 4]));
    let response = request(
        server.addr,
        "POST",
        &session.path(),
        &[("Content-Type", "application/octet-stream")],
        &body,
    )
    .unwrap();
    assert_eq!(response.status, 200);
    let polled = session.get();
    assert_eq!(polled.status, 200);
    assert_eq!(polled.body, body);
}

#[test]
fn eio3_polling_b64_session_gets_base64_for_binary_post() {
    let server = server();
    let mut conn = HttpConn::open(server.addr);
    let session = Polling::open_on(&mut conn, server.addr, "engine.io", 3, "&b64=1");
    let response = request(
        server.addr,
        "POST",
        &session.path(),
        &[("Content-Type", "application/octet-stream")],
        &eio3_binary_record(true, &[4, 1, 2, 3, 4]),
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(session.get().text(), "10:b4AQIDBA==");
}

// ---- §9 socket.io-client v2 (EIO=3) on /socket.io/ ---------------------------------------

/// Gathers the next `count` EIO=3 packets of a polling session (the handshake's extra packets
/// first), polling as needed.
fn v3_packets(session: &mut Polling, count: usize) -> Vec<String> {
    let mut packets = std::mem::take(&mut session.extra);
    let mut polls = 0;
    while packets.len() < count {
        polls += 1;
        assert!(polls <= 4, "only {packets:?} after {polls} polls");
        let polled = session.get();
        assert_eq!(polled.status, 200);
        packets.extend(eio3_decode(&polled.text()));
    }
    packets
}

#[test]
fn sio_v2_polling_implicit_main_namespace_connect() {
    let server = server();
    let mut session = Polling::open(server.addr, "socket.io", 3);
    let packets = v3_packets(&mut session, 2);
    assert_eq!(packets, ["40", r#"42["auth",{}]"#]);
}

#[test]
fn sio_v2_polling_custom_namespace_with_query_and_binary_event() {
    let server = server();
    let mut conn = HttpConn::open(server.addr);
    let mut session = Polling::open_on(&mut conn, server.addr, "socket.io", 3, "&b64=1");
    assert_eq!(v3_packets(&mut session, 2), ["40", r#"42["auth",{}]"#]);
    // A ping keeps the client-driven heartbeat alive while we go on.
    session.post_ok(eio3_encode(&["2", "40/custom?token=abc"]));
    let mut packets = v3_packets(&mut session, 3);
    packets.retain(|p| p != "3");
    assert_eq!(
        packets,
        ["40/custom,", r#"42/custom,["auth",{"token":"abc"}]"#]
    );
    let event = r#"451-["message",{"_placeholder":true,"num":0}]"#;
    session.post_ok(eio3_encode(&[event, "b4CQk="]));
    let packets = v3_packets(&mut session, 2);
    assert_eq!(
        packets,
        [
            r#"451-["message-back",{"_placeholder":true,"num":0}]"#,
            "b4CQk="
        ]
    );
}

/// A v2-style WebSocket session on `/socket.io/`: open packet, implicit `40`, `auth` event.
fn sio_v2_ws(addr: std::net::SocketAddr) -> Ws {
    let (mut ws, _) = ws_session(addr, "socket.io", 3);
    assert_eq!(ws.text(), "40");
    assert_eq!(ws.text(), r#"42["auth",{}]"#);
    ws
}

#[test]
fn sio_v2_ws_implicit_connect_and_heartbeat() {
    let server = server();
    let mut ws = sio_v2_ws(server.addr);
    ws.send_text("2");
    assert_eq!(ws.text(), "3");
    ws.send_text(r#"42["message","hi"]"#);
    assert_eq!(ws.text(), r#"42["message-back","hi"]"#);
}

#[test]
fn sio_v2_ws_custom_namespace_query_becomes_auth() {
    let server = server();
    let mut ws = sio_v2_ws(server.addr);
    ws.send_text("40/custom?token=abc");
    assert_eq!(ws.text(), "40/custom,");
    assert_eq!(ws.text(), r#"42/custom,["auth",{"token":"abc"}]"#);
}

#[test]
fn sio_v2_ws_binary_event_attachments_carry_type_byte() {
    let server = server();
    let mut ws = sio_v2_ws(server.addr);
    ws.send_text(r#"451-["message",{"_placeholder":true,"num":0}]"#);
    ws.send_binary(&[4, 9, 9]);
    assert_eq!(
        ws.text(),
        r#"451-["message-back",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(ws.binary(), vec![4, 9, 9]);
}

#[test]
fn sio_v2_upgrade_from_polling() {
    let server = server();
    let mut session = Polling::open(server.addr, "socket.io", 3);
    assert_eq!(v3_packets(&mut session, 2), ["40", r#"42["auth",{}]"#]);
    let mut ws = session.upgrade();
    ws.send_text("2");
    assert_eq!(ws.text(), "3");
    ws.send_text(r#"42["message",1]"#);
    assert_eq!(ws.text(), r#"42["message-back",1]"#);
}
