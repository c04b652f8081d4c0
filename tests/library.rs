//! Integration tests of ringcast's Rust library API, driven by the real npm `socket.io-client`
//! (4.x, and 2.x where noted). Each test starts its own two-shard server in this process, runs
//! one node script from `tests/library/js/` against it (the script asserts what the clients
//! see and exits 0), and checks what the server's handlers reported over a channel.
//!
//! Needs `node` and `npm ci --prefix tests/clients`. Depends only on the public API.

mod common;
// Shared with tests/operations.rs, which uses the rest of it.
#[allow(dead_code)]
#[path = "library/support.rs"]
mod support;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcast::{
    AckError, Args, CloseReason, ConnectError, DisconnectReason, Handshake, Namespace, Server,
};
use serde::Deserialize;
use serde_json::json;

use support::{assert_no_more, collect, TestServer};

/// How long the server waits for acks in the tests that let one time out.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a test waits for its server-side reports once the script is done.
const REPORT_WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure that nothing more is reported.
const QUIET: Duration = Duration::from_millis(200);

/// One JSON argument.
fn json_arg(value: serde_json::Value) -> Args {
    Args::json(&value).expect("serialisable")
}

#[test]
fn server_emit_with_ack_gets_the_answer_or_an_error() {
    let (report, reports) = mpsc::channel();
    let ns = Namespace::new().on_connect(move |socket| {
        let report = report.clone();
        let asker = socket.clone();
        let asked = Instant::now();
        let question = Args::new().with_str("q");
        socket.emit_with_ack("question", &question, ACK_TIMEOUT, move |result| {
            let outcome = result.map(|message| message.str(0).map(|s| s.into_owned()));
            let summary = match &outcome {
                Ok(answer) => json!({ "answer": answer }),
                Err(error) => json!({ "error": error.to_string() }),
            };
            // For the client that disconnected this does nothing.
            let _ = asker.emit("ack-result", &json_arg(summary));
            let _ = report.send((outcome, asked.elapsed()));
        });
    });
    let server = TestServer::start(Server::builder().namespace("/", ns));
    server.run_script("emit_with_ack.mjs");

    let mut outcomes = collect(&reports, 3, REPORT_WAIT);
    assert_no_more(&reports, QUIET);
    outcomes.sort_by_key(|(outcome, _)| format!("{outcome:?}"));
    let kinds: Vec<_> = outcomes
        .iter()
        .map(|(outcome, _)| outcome.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            Err(AckError::Disconnected),
            Err(AckError::Timeout),
            Ok(Some("answer:q".to_owned())),
        ]
    );
    let timed_out_after = outcomes[1].1;
    assert!(
        timed_out_after >= ACK_TIMEOUT - Duration::from_millis(50)
            && timed_out_after < ACK_TIMEOUT + Duration::from_millis(1500),
        "timed out after {timed_out_after:?}"
    );
    assert!(
        outcomes[2].1 < ACK_TIMEOUT,
        "answered after {:?}",
        outcomes[2].1
    );
}

/// The auth object the middleware test expects.
#[derive(Debug, Deserialize)]
struct TokenAuth {
    token: Option<String>,
}

/// What a middleware saw: namespace, protocol, whether auth decoded, the token.
type HandshakeReport = (String, u8, bool, Option<String>);

/// The token check both middleware tests use: reports what it saw, admits token "secret".
fn check_token(
    handshake: &Handshake,
    report: &mpsc::Sender<HandshakeReport>,
) -> Result<(), ConnectError> {
    let auth = handshake.auth::<TokenAuth>();
    let token = auth.as_ref().ok().and_then(|auth| auth.token.clone());
    let _ = report.send((
        handshake.nsp().to_owned(),
        handshake.protocol(),
        auth.is_ok(),
        token.clone(),
    ));
    match (auth, token) {
        (Err(_), _) => Err(ConnectError::new("invalid auth")),
        (Ok(_), Some(token)) if token == "secret" => Ok(()),
        (Ok(_), _) => Err(ConnectError::new("not authorized").with_data(&json!({ "code": 42 }))),
    }
}

#[test]
fn middleware_refuses_or_admits_by_auth_token() {
    let (report, handshakes) = mpsc::channel();
    let guarded =
        Namespace::new().middleware(move |handshake: &Handshake| check_token(handshake, &report));
    run_middleware_script(guarded, &handshakes);
}

#[test]
fn async_middleware_decides_after_shard_local_io() {
    let (report, handshakes) = mpsc::channel();
    let guarded = Namespace::new().async_middleware(move |handshake: Handshake| {
        let report = report.clone();
        async move {
            // Stands for a lookup in another service: the shard keeps serving meanwhile.
            monoio::time::sleep(Duration::from_millis(20)).await;
            check_token(&handshake, &report)
        }
    });
    run_middleware_script(guarded, &handshakes);
}

/// Serves `guarded` on `/` and `/private`, runs middleware.mjs, checks every handshake seen.
fn run_middleware_script(guarded: Namespace, handshakes: &mpsc::Receiver<HandshakeReport>) {
    let guarded = guarded.on_connect(|socket| {
        let auth = Args::new()
            .with_raw(&socket.auth_raw())
            .expect("auth is JSON");
        let _ = socket.emit("welcome", &auth);
    });
    let server = TestServer::start(
        Server::builder()
            .namespace("/", guarded.clone())
            .namespace("/private", guarded),
    );
    server.run_script("middleware.mjs");

    let seen: Vec<_> = reports_until_quiet(handshakes);
    let expected = [
        ("/", 5, true, Some("bad")),
        ("/", 5, true, None),
        ("/", 5, false, None),
        ("/", 5, true, Some("secret")),
        ("/private", 4, true, Some("bad")),
        ("/private", 4, true, Some("secret")),
    ];
    for (nsp, protocol, decoded, token) in expected {
        let wanted = (nsp.to_owned(), protocol, decoded, token.map(str::to_owned));
        assert!(
            seen.contains(&wanted),
            "no handshake {wanted:?} in {seen:?}"
        );
    }
}

#[test]
fn dynamic_namespaces_are_created_on_demand_and_isolated() {
    let (report, connects) = mpsc::channel();
    let dynamic = Namespace::new()
        .on_connect(move |socket| {
            let _ = report.send(socket.nsp().to_string());
            socket.join("room");
            let _ = socket.emit("hello", &Args::new().with_str(&socket.nsp()));
        })
        .on("say", |socket, message, _ack| {
            let text = message.str(0).unwrap_or_default();
            let said = Args::new().with_str(&socket.nsp()).with_str(&text);
            socket.namespace().to("room").emit("said", &said);
        });
    let server = TestServer::start(
        Server::builder().dynamic_namespace(|name| name.starts_with("/dyn-"), dynamic),
    );
    server.run_script("dynamic_namespaces.mjs");

    let mut names = collect(&connects, 4, REPORT_WAIT);
    assert_no_more(&connects, QUIET);
    names.sort();
    assert_eq!(names, ["/dyn-1", "/dyn-1", "/dyn-2", "/dyn-2"]);
}

#[test]
fn broadcast_with_ack_collects_every_member_across_shards() {
    let (report, results) = mpsc::channel();
    let ns = Namespace::new()
        .on("join", |socket, message, ack| {
            if let Some(room) = message.str(0) {
                socket.join(&room);
            }
            if let Some(ack) = ack {
                let _ = ack.send(&Args::new());
            }
        })
        .on("trigger", move |socket, _message, _ack| {
            let report = report.clone();
            let origin = socket.clone();
            socket
                .namespace()
                .to("r")
                .timeout(ACK_TIMEOUT)
                .emit_with_ack("ping-all", &Args::new(), move |result| {
                    let (error, responses) = match result {
                        Ok(responses) => (None, responses),
                        Err((error, responses)) => (Some(error), responses),
                    };
                    let ids: Vec<String> = responses
                        .iter()
                        .filter_map(|message| message.str(0).map(|id| id.into_owned()))
                        .collect();
                    let summary = json!({
                        "error": error.map(|error| error.to_string()),
                        "ids": ids,
                    });
                    let _ = origin.emit("ping-all-result", &json_arg(summary));
                    let _ = report.send((error, responses.len()));
                });
        });
    let server = TestServer::start(Server::builder().namespace("/", ns));
    let summary = server.run_script_json("broadcast_ack.mjs");

    let members = summary["members"].as_u64().expect("member count") as usize;
    let outcomes = collect(&results, 2, REPORT_WAIT);
    assert_eq!(
        outcomes,
        [(None, members), (Some(AckError::Timeout), members - 1)]
    );
}

#[test]
fn volatile_emits_reach_an_idle_client_without_errors() {
    let (report, bursts) = mpsc::channel();
    let ns = Namespace::new()
        .on("burst", move |socket, message, _ack| {
            let count: u32 = message.get(0).unwrap_or(0);
            let delivered: Vec<usize> = (0..count)
                .map(|n| {
                    socket
                        .namespace()
                        .to(socket.id())
                        .volatile()
                        .emit("v", &json_arg(json!(n)))
                })
                .collect();
            let _ = socket.emit("done", &Args::new());
            let _ = report.send(delivered);
        })
        .on("echo", |_socket, message, ack| {
            if let Some(ack) = ack {
                let _ = ack.send(&message.to_args());
            }
        });
    let server = TestServer::start(Server::builder().namespace("/", ns));
    let summary = server.run_script_json("volatile.mjs");

    let bursts = collect(&bursts, 4, REPORT_WAIT);
    // The first emit of each burst found the client idle, so it was taken.
    assert!(
        bursts.iter().all(|burst| burst.first() == Some(&1)),
        "{bursts:?}"
    );
    // The client got exactly what the server says it delivered.
    let delivered: usize = bursts.iter().flatten().sum();
    assert_eq!(summary["received"], json!(delivered));
}

#[test]
fn broadcast_operators_select_the_right_sockets() {
    let ns = Namespace::new()
        .on("join", |socket, message, ack| {
            for room in (0..message.len()).filter_map(|i| message.str(i)) {
                socket.join(&room);
            }
            if let Some(ack) = ack {
                let _ = ack.send(&json_arg(json!(socket.rooms())));
            }
        })
        .on("op", |socket, message, _ack| {
            let label = message.str(0).unwrap_or_default().into_owned();
            let got = Args::new().with_str(&label);
            match label.as_str() {
                "to-two" => socket.namespace().to("a").to("b").emit("got", &got),
                "except" => socket.namespace().to("a").except("b").emit("got", &got),
                "socket-to-a" => socket.to("a").emit("got", &got),
                "broadcast" => socket.broadcast().emit("got", &got),
                "namespace" => socket.namespace().emit("got", &got),
                "to-id" => {
                    let target = message.str(1).unwrap_or_default();
                    socket.namespace().to(&target).emit("got", &got)
                }
                "fence" => socket.namespace().emit("fence", &Args::new()),
                _ => 0,
            };
        });
    let server = TestServer::start(Server::builder().namespace("/", ns));
    server.run_script("operators.mjs");
}

#[test]
fn disconnect_reasons_on_both_sides() {
    let (report, disconnects) = mpsc::channel();
    let ns = Namespace::new()
        .on("kick", |socket, _message, _ack| socket.disconnect())
        .on("close-me", |socket, _message, _ack| {
            socket.close_connection()
        })
        .on_disconnect(move |socket, reason| {
            let _ = report.send((socket.id().to_owned(), reason));
        });
    let server = TestServer::start(Server::builder().namespace("/", ns));
    let ids = server.run_script_json("disconnect.mjs");

    let reasons: HashMap<String, DisconnectReason> =
        collect(&disconnects, 6, REPORT_WAIT).into_iter().collect();
    assert_no_more(&disconnects, QUIET);
    let expected = [
        ("kicked", DisconnectReason::ServerNamespaceDisconnect),
        ("left", DisconnectReason::ClientNamespaceDisconnect),
        (
            "clientClose",
            DisconnectReason::Transport(CloseReason::ClientClose),
        ),
        (
            "wsClose",
            DisconnectReason::Transport(CloseReason::TransportClose),
        ),
        (
            "dropped",
            DisconnectReason::Transport(CloseReason::TransportClose),
        ),
        (
            "serverClose",
            DisconnectReason::Transport(CloseReason::ServerClose),
        ),
    ];
    for (name, reason) in expected {
        let id = ids[name].as_str().expect("socket id");
        assert_eq!(reasons.get(id), Some(&reason), "{name} ({id})");
    }
}

#[test]
fn binary_from_the_server_reaches_every_client_kind() {
    let ns = Namespace::new()
        .on_connect(|socket| {
            let bin = Args::new()
                .with_binary(Bytes::from_static(&[1, 2, 3]))
                .with_str("x");
            let _ = socket.emit("bin", &bin);
            let two = Args::new()
                .with_binary(Bytes::from_static(&[4]))
                .with_binary(Bytes::new());
            let _ = socket.emit("bin2", &two);
        })
        .on("echo", |_socket, message, ack| {
            if let Some(ack) = ack {
                let _ = ack.send(&message.to_args());
            }
        });
    let server = TestServer::start(Server::builder().namespace("/", ns));
    server.run_script("binary.mjs");
}

#[test]
fn events_from_one_handler_arrive_in_order() {
    let ns = Namespace::new().on("burst", |socket, message, _ack| {
        let count: u32 = message.get(0).unwrap_or(0);
        for n in 0..count {
            let _ = socket.emit("n", &json_arg(json!(n)));
        }
        let _ = socket.emit("end", &Args::new());
    });
    let server = TestServer::start(Server::builder().namespace("/", ns));
    server.run_script("order.mjs");
}

/// Regression: a closed WebSocket's reader once ended the link of the next connection, which
/// had reused its slot.
#[test]
fn websocket_connections_survive_close_and_reconnect_cycles() {
    let server =
        TestServer::start(Server::builder().namespace("/", ringcast::apps::builtin_namespace()));
    server.run_script("reconnect_cycles.mjs");
}

/// Everything reported until nothing more comes for a while.
fn reports_until_quiet<T>(reports: &mpsc::Receiver<T>) -> Vec<T> {
    let mut seen = Vec::new();
    while let Ok(report) = reports.recv_timeout(QUIET) {
        seen.push(report);
    }
    seen
}
