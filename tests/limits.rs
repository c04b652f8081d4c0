//! The configurable limits, against the real binary: sessions per server and per address,
//! handshakes per address and second, rooms per socket and namespaces per client. Each refusal
//! is an answer (an HTTP status with an Engine.IO error body, a join ack with an error, a
//! CONNECT_ERROR) and touches no other client.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::ws_client::Client;

/// A polling handshake on its own connection: the status and body of the answer.
fn handshake(addr: SocketAddr) -> (u16, String) {
    let request = common::polling_request("GET", "EIO=4&transport=polling", "");
    common::status_and_body(&common::exchange(addr, &request, Duration::from_secs(10)))
}

/// A WebSocket handshake: the status line the server answered the upgrade with.
fn websocket_status(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
              Upgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("request");
    let mut response = [0; 256];
    let read = stream.read(&mut response).expect("response");
    let text = String::from_utf8_lossy(&response[..read]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn sessions_past_the_server_limit_are_refused_until_one_closes() {
    let server = common::Server::start(&["--cores", "2", "--max-connections", "2"]);
    if server.is_external() {
        return;
    }
    let first = Client::connect(server.addr, None);
    let mut second = Client::connect(server.addr, None);
    let (status, body) = handshake(server.addr);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, r#"{"code":4,"message":"Too many connections"}"#);
    assert!(websocket_status(server.addr).starts_with("HTTP/1.1 503"));
    // The sessions already open are untouched.
    second.send(r#"421["echo","ok"]"#);
    assert_eq!(second.text(), r#"431["ok"]"#);
    // A slot frees when a session ends.
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        if handshake(server.addr).0 == 200 {
            admitted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(admitted, "a handshake is admitted once a session closed");
}

#[test]
fn sessions_per_address_are_limited() {
    let server = common::Server::start(&["--cores", "2", "--max-connections-per-ip", "1"]);
    if server.is_external() {
        return;
    }
    let _only = Client::connect(server.addr, None);
    let (status, _) = handshake(server.addr);
    assert_eq!(status, 503, "a second session from 127.0.0.1");
}

#[test]
fn handshakes_per_second_are_limited_per_address() {
    let server = common::Server::start(&["--cores", "2", "--handshakes-per-ip", "3"]);
    if server.is_external() {
        return;
    }
    let statuses: Vec<u16> = (0..5).map(|_| handshake(server.addr).0).collect();
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert_eq!(statuses[3], 429);
    let (_, body) = handshake(server.addr);
    assert_eq!(body, r#"{"code":4,"message":"Too many handshakes"}"#);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        handshake(server.addr).0,
        200,
        "the next second admits again"
    );
}

#[test]
fn a_socket_past_its_room_limit_is_refused_the_join() {
    let server = common::Server::start(&["--cores", "1", "--max-rooms-per-socket", "2"]);
    if server.is_external() {
        return;
    }
    let mut client = Client::connect(server.addr, None);
    client.join("a");
    client.join("b");
    client.send(r#"421["join","c"]"#);
    assert_eq!(
        client.text(),
        r#"431[{"error":{"code":"room_limit","message":"not joined"}}]"#
    );
    client.join("a");
    // Not in "c": a publish there reaches no one; one to "b" still arrives.
    client.send(r#"42["publish","c","lost"]"#);
    client.send(r#"42["publish","b","kept"]"#);
    assert_eq!(client.text(), r#"42["message","kept"]"#);
}

#[test]
fn a_client_past_its_namespace_limit_gets_connect_error() {
    let server = common::Server::start(&[
        "--cores",
        "1",
        "--max-namespaces-per-client",
        "1",
        "--namespace",
        "/",
        "--namespace",
        "/chat",
    ]);
    if server.is_external() {
        return;
    }
    let mut client = Client::connect(server.addr, None);
    client.send("40/chat,");
    assert_eq!(
        client.text(),
        r#"44/chat,{"message":"Too many namespaces"}"#
    );
    client.send(r#"421["echo","still"]"#);
    assert_eq!(
        client.text(),
        r#"431["still"]"#,
        "the first namespace is untouched"
    );
}
