//! `--parser msgpack` with the real npm `socket.io-msgpack-parser` 3.0.2 on socket.io-client
//! 4.8 (scripts under tests/clients/js/): the binary with `--cores 2` (two namespaces, acks from
//! the server, binary both ways, rooms and broadcasts across shards, a JSON client refused
//! cleanly) on every transport; a library-built server (the server's emit with ack answered by
//! the client, CONNECT_ERROR with data, DISCONNECT); and two nodes on a real `redis-server` with
//! a Node socket.io server on the same parser (broadcasts from either ringcast node, the Node
//! server and the Redis emitter reaching msgpack clients); and
//! python-socketio with `serializer="msgpack"`.
//!
//! Needs `node`, `npm ci --prefix tests/clients`, the Python venv of tests/clients/README.md
//! and, for the cluster test, `redis-server`.
//! Every server runs on loopback and is stopped by the handle that started it.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::redis::RedisServer;
use common::script::{run, Runtime};
use common::Server;
use ringcast::{Args, ConnectError, Handshake, Namespace, Parser, Server as Ringcast};
use serde_json::json;

/// Outer bound on one script; each script enforces its own, shorter deadline.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// The binary with `--parser msgpack --cores 2` serving `/` and `/chat`.
fn msgpack_binary() -> Server {
    Server::start(&[
        "--parser",
        "msgpack",
        "--cores",
        "2",
        "--no-pin",
        "--namespace",
        "/",
        "--namespace",
        "/chat",
    ])
}

fn binary_scenario(mode: &str) {
    let server = msgpack_binary();
    let outcome = run(
        Runtime::Node,
        "js/msgpack.mjs",
        &[mode],
        &server.url(),
        &[],
        SCRIPT_DEADLINE,
    )
    .expect_ok();
    // The JSON client was refused by a closed session, never connected.
    println!("{}", outcome.stdout);
    assert!(
        outcome.stdout.contains("JSON client: "),
        "{}",
        outcome.stdout
    );
}

#[test]
fn msgpack_clients_on_the_binary_over_polling_then_websocket() {
    binary_scenario("default");
}

#[test]
fn msgpack_clients_on_the_binary_over_polling() {
    binary_scenario("polling");
}

#[test]
fn msgpack_clients_on_the_binary_over_websocket() {
    binary_scenario("websocket");
}

#[test]
fn python_socketio_with_the_msgpack_serializer() {
    let server = msgpack_binary();
    for mode in ["websocket", "polling"] {
        run(
            Runtime::Python,
            "py/msgpack_client.py",
            &[mode],
            &server.url(),
            &[],
            SCRIPT_DEADLINE,
        )
        .expect_ok();
    }
}

#[test]
fn a_library_server_asks_refuses_and_disconnects_in_msgpack() {
    let (report, reports) = mpsc::channel();
    let private = Namespace::new()
        .middleware(|handshake: &Handshake| {
            let token = handshake
                .auth::<serde_json::Value>()
                .ok()
                .and_then(|auth| auth["token"].as_str().map(str::to_owned));
            match token.as_deref() {
                Some("secret") => Ok(()),
                _ => Err(ConnectError::new("not authorized").with_data(&json!({ "code": 42 }))),
            }
        })
        .on_connect(move |socket| {
            let report = report.clone();
            let asker = socket.clone();
            let question = Args::new()
                .with_str("q")
                .with_binary(bytes::Bytes::from_static(&[1, 2]));
            socket.emit_with_ack(
                "question",
                &question,
                Duration::from_secs(5),
                move |result| {
                    let Ok(message) = result else {
                        let _ = report.send(None);
                        return;
                    };
                    let answer = message.str(0).map(|s| s.into_owned());
                    let binary = message.attachments().first().cloned().unwrap_or_default();
                    let summary = json!({ "answer": answer, "count": message.len() });
                    let args = Args::json(&summary).map(|args| args.with_binary(binary.clone()));
                    if let Ok(args) = args {
                        let _ = asker.emit("ack-result", &args);
                    }
                    let _ = report.send(Some((answer, binary)));
                },
            );
        })
        .on("bye", |socket, _message, _ack| socket.disconnect());
    let handle = Ringcast::builder()
        .namespace("/private", private)
        .configure(|config| {
            config.cores = 2;
            config.host = [127, 0, 0, 1].into();
            config.port = 0;
            config.pin_cores = false;
            config.force_epoll = common::epoll_requested();
            config.socketio.parser = Parser::Msgpack;
        })
        .start()
        .expect("start ringcast");
    let url = format!("http://{}", handle.local_addr());
    for mode in ["websocket", "polling"] {
        run(
            Runtime::Node,
            "js/msgpack_library.mjs",
            &[mode],
            &url,
            &[],
            SCRIPT_DEADLINE,
        )
        .expect_ok();
        // The first client's answer, as the server's callback saw it.
        let answer = reports
            .recv_timeout(Duration::from_secs(5))
            .expect("the ack callback ran");
        assert_eq!(
            answer,
            Some((
                Some("answer".to_owned()),
                bytes::Bytes::from_static(&[3, 4, 5])
            ))
        );
        // The client that said bye was asked too and answered nothing: it left.
        let second = reports.recv_timeout(Duration::from_secs(8));
        assert!(matches!(second, Ok(None)), "{second:?}");
    }
    handle.stop();
}

#[test]
fn broadcasts_from_another_node_and_the_emitter_reach_msgpack_clients() {
    let redis = RedisServer::start();
    let url = redis.url();
    let args = [
        "--parser", "msgpack", "--cores", "2", "--no-pin", "--redis", &url,
    ];
    let (a, b) = (Server::start(&args), Server::start(&args));
    let outcome = run(
        Runtime::Node,
        "js/msgpack_cluster.mjs",
        &[],
        &a.url(),
        &[
            ("NODE_A_URL", a.url()),
            ("NODE_B_URL", b.url()),
            ("REDIS_URL", url.clone()),
        ],
        SCRIPT_DEADLINE,
    )
    .expect_ok();
    assert!(
        outcome.stdout.contains(r#""members":5"#),
        "{}",
        outcome.stdout
    );
}
