//! Server-wide operations and the lifecycle observer with real npm `socket.io-client` clients
//! on every shard: fetch, join, leave, disconnect, all rooms and broadcast acks run from a
//! plain thread and from a tokio runtime through `ServerHandle::of`, and from a handler; an
//! operation that waits for a busy shard times out; the observer hears each socket's life in
//! order.
//!
//! Needs `node` and `npm ci --prefix tests/clients`. Depends only on the public API.

mod common;
// Shared with tests/library.rs, which uses all of it.
#[allow(dead_code)]
#[path = "library/support.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringcast::{
    Args, DisconnectReason, Message, Namespace, Observer, OpError, Server, ShardId, Socket,
};
use serde_json::json;

use support::{collect, last_json_line, TestServer};

/// How long a test waits for a report from the server's handlers.
const REPORT_WAIT: Duration = Duration::from_secs(15);

fn json_arg(value: serde_json::Value) -> Args {
    Args::json(&value).expect("serialisable")
}

#[test]
fn operations_from_outside_reach_sockets_on_every_shard() {
    let (ready, readies) = mpsc::channel();
    let ns = Namespace::new()
        .on("setup", |socket, message, ack| {
            let index: u64 = message.get(0).unwrap_or_default();
            socket
                .set_data(&json!({ "index": index }))
                .expect("serialisable");
            socket.join(if index % 2 == 0 { "even" } else { "odd" });
            if let Some(ack) = ack {
                let _ = ack.send(&Args::new());
            }
        })
        .on("ready", move |_socket, message, _ack| {
            let ids: Vec<String> = message.get(0).unwrap_or_default();
            let _ = ready.send(ids);
        });
    let server = TestServer::start_with_shards(Server::builder().namespace("/", ns), 4);
    let script = server.spawn_script("operations.mjs");
    let ids = collect(&readies, 1, REPORT_WAIT).remove(0);
    let (evens, odds): (Vec<_>, Vec<_>) = ids.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let evens: Vec<String> = evens.into_iter().map(|(_, id)| id.clone()).collect();
    let odds: Vec<String> = odds.into_iter().map(|(_, id)| id.clone()).collect();
    let handle = server.handle();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    // fetch_sockets: every socket, on every shard, with its data and rooms.
    let sockets = runtime
        .block_on(handle.of("/").fetch_sockets())
        .expect("fetched");
    assert_eq!(sockets.len(), ids.len());
    let shards: HashSet<ShardId> = sockets.iter().filter_map(|s| s.shard).collect();
    assert_eq!(shards.len(), 4, "sockets on every shard");
    for socket in &sockets {
        let index = ids
            .iter()
            .position(|id| *id == socket.id)
            .expect("known id");
        assert_eq!(socket.data, json!({ "index": index }));
        let room = if index % 2 == 0 { "even" } else { "odd" };
        assert_eq!(socket.rooms, [socket.id.clone(), room.to_owned()]);
        assert_eq!(socket.nsp, "/");
        assert_eq!(socket.handshake.protocol, 5);
        assert!(socket.handshake.query.contains("EIO=4"));
        assert!(socket.handshake.address.is_some());
    }
    // Without a cluster, this process is the one server.
    assert_eq!(runtime.block_on(handle.of("/").server_count()), Ok(1));
    let odd_sockets = runtime
        .block_on(handle.of("/").to("odd").fetch_sockets())
        .expect("fetched");
    assert_eq!(odd_sockets.len(), odds.len());

    // An emit from a plain thread reaches everyone.
    let from_thread = handle.of("/");
    std::thread::spawn(move || from_thread.emit("from-thread", &json_arg(json!(1))))
        .join()
        .expect("thread")
        .expect("emitted");

    // From tokio tasks: an emit to the even room, then the odd sockets join "joined".
    let operator = handle.of("/");
    let joined = runtime
        .block_on(runtime.spawn(async move {
            operator
                .clone()
                .to("even")
                .emit("from-tokio", &Args::new())
                .expect("emitted");
            operator.to("odd").sockets_join(["joined"]).await
        }))
        .expect("task");
    assert_eq!(joined, Ok(odds.len()));
    // One operator for the emit and the leave after it: its calls run in order on one shard,
    // so every shard sees the emit before the leave (two operators may use two shards).
    let ops = handle.of("/");
    ops.clone()
        .to("joined")
        .emit("to-joined", &Args::new())
        .expect("emitted");
    // One odd socket leaves "joined" again.
    let left = runtime.block_on(ops.to(&odds[0]).sockets_leave(["joined"]));
    assert_eq!(left, Ok(1));
    handle
        .of("/")
        .to("joined")
        .emit("to-left", &Args::new())
        .expect("emitted");

    let rooms = runtime
        .block_on(handle.of("/").all_rooms())
        .expect("all rooms");
    for room in ["even", "odd", "joined"] {
        assert!(rooms.iter().any(|r| r == room), "{room} in {rooms:?}");
    }
    for id in &ids {
        assert!(rooms.contains(id), "the room of {id}");
    }
    assert_eq!(rooms.len(), ids.len() + 3);

    // Broadcast acks gathered across shards, awaited from outside.
    let acks = runtime
        .block_on(
            handle
                .of("/")
                .to("even")
                .timeout(Duration::from_secs(5))
                .emit_with_ack("ask", &Args::new()),
        )
        .expect("sent")
        .expect("every ack");
    let mut acked: Vec<String> = acks
        .iter()
        .filter_map(|message| message.str(0).map(|id| id.into_owned()))
        .collect();
    acked.sort();
    let mut expected_evens = evens.clone();
    expected_evens.sort();
    assert_eq!(acked, expected_evens);

    // Disconnect the even sockets but the first (which hears the end of the steps).
    let disconnected = runtime.block_on(
        handle
            .of("/")
            .to("even")
            .except(&ids[0])
            .disconnect_sockets(false),
    );
    assert_eq!(disconnected, Ok(evens.len() - 1));
    handle
        .of("/")
        .to(&ids[0])
        .emit("steps-done", &Args::new())
        .expect("emitted");

    let report = last_json_line("operations.mjs", &script.join().expect("script"));
    let got = |event: &str| -> Vec<String> {
        serde_json::from_value(report["got"][event].clone()).expect("ids")
    };
    let mut all = ids.clone();
    all.sort();
    assert_eq!(got("from-thread"), all);
    assert_eq!(got("from-tokio"), expected_evens);
    let mut expected_odds = odds.clone();
    expected_odds.sort();
    assert_eq!(got("to-joined"), expected_odds);
    expected_odds.retain(|id| *id != odds[0]);
    assert_eq!(got("to-left"), expected_odds);
    let gone: BTreeMap<String, String> =
        serde_json::from_value(report["disconnected"].clone()).expect("reasons");
    let expected_gone: BTreeMap<String, String> = evens[1..]
        .iter()
        .map(|id| (id.clone(), "io server disconnect".to_owned()))
        .collect();
    assert_eq!(gone, expected_gone);

    // After the server stops, the handle's operators say so instead of waiting.
    let operator = handle.of("/");
    drop(server);
    assert_eq!(
        runtime.block_on(operator.fetch_sockets()),
        Err(OpError::ServerStopped)
    );
    assert_eq!(
        operator.emit("late", &Args::new()),
        Err(OpError::ServerStopped)
    );
}

#[test]
fn an_operation_waiting_for_a_busy_shard_times_out() {
    let ns = Namespace::new()
        .on("block", |_socket, message, _ack| {
            // A handler that hogs its shard (as a handler must never do).
            let millis: u64 = message.get(0).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(millis));
        })
        .on("count", |socket, message, ack| {
            let Some(ack) = ack else { return };
            let millis: u64 = message.get(0).unwrap_or(1000);
            let count = socket
                .namespace()
                .timeout(Duration::from_millis(millis))
                .fetch_sockets();
            socket.spawn(async move {
                let answer = match count.await {
                    Ok(sockets) => json!({ "count": sockets.len() }),
                    Err(error) => json!({ "error": error.to_string() }),
                };
                let _ = ack.send(&json_arg(answer));
            });
        })
        .on("count-later", |socket, _message, ack| {
            let Some(ack) = ack else { return };
            let later = socket.clone();
            socket.spawn(async move {
                // The shard sits idle meanwhile: the operation's deadline must count from when
                // the task starts it, not from the shard's last turn.
                monoio::time::sleep(Duration::from_millis(1200)).await;
                let count = later
                    .namespace()
                    .timeout(Duration::from_secs(1))
                    .fetch_sockets()
                    .await;
                let answer = match count {
                    Ok(sockets) => json!({ "count": sockets.len() }),
                    Err(error) => json!({ "error": error.to_string() }),
                };
                let _ = ack.send(&json_arg(answer));
            });
        });
    let server = TestServer::start_with_shards(Server::builder().namespace("/", ns), 4);
    let report = server.run_script_json("blocked_shard.mjs");
    assert!(report["clients"].as_u64().is_some_and(|n| n >= 2));
}

/// Records what the observer hears, as (socket id, what).
struct Recorder {
    log: Arc<Mutex<Vec<(String, String)>>>,
}

impl Recorder {
    fn record(&self, socket: &Socket, what: String) {
        let entry = (socket.id().to_owned(), what);
        self.log.lock().expect("log").push(entry);
    }
}

impl Observer for Recorder {
    fn connected(&self, socket: &Socket) {
        self.record(socket, "connected".into());
    }

    fn joined(&self, socket: &Socket, room: &str) {
        self.record(socket, format!("joined {room}"));
    }

    fn left(&self, socket: &Socket, room: &str) {
        self.record(socket, format!("left {room}"));
    }

    fn event_received(&self, socket: &Socket, event: &str, message: &Message) {
        self.record(socket, format!("in {event} {}", message.len()));
    }

    fn event_sent(&self, socket: &Socket, event: &str, args: &Args) {
        self.record(socket, format!("out {event} {}", args.len()));
    }

    fn upgraded(&self, socket: &Socket, transport: &str) {
        self.record(socket, format!("upgraded {transport}"));
    }

    fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        self.record(socket, format!("disconnected {}", reason.as_str()));
    }
}

#[test]
fn the_observer_hears_each_socket_in_order() {
    let log: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = log.clone();
    let builder = Server::builder()
        .namespace("/", ringcast::apps::builtin_namespace())
        .observer(move |_shard| Box::new(Recorder { log: sink.clone() }));
    let server = TestServer::start_with_shards(builder, 4);
    let report = server.run_script_json("observed.mjs");
    let (a, b) = (
        report["a"].as_str().expect("a").to_owned(),
        report["b"].as_str().expect("b").to_owned(),
    );
    // The last disconnect may still be on its way when the script exits.
    let deadline = std::time::Instant::now() + REPORT_WAIT;
    let of = |id: &str| -> Vec<String> {
        let log = log.lock().expect("log");
        log.iter()
            .filter(|(socket, _)| socket == id)
            .map(|(_, what)| what.clone())
            .collect()
    };
    while of(&b)
        .last()
        .is_none_or(|last| !last.starts_with("disconnected"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let tail = [
        "in leave 1",
        "left r",
        "disconnected client namespace disconnect",
    ];
    let mut expected_a = vec![
        "connected",
        "upgraded websocket",
        "in join 1",
        "joined r",
        "in publish 2",
        "out message 1",
        "out message 1",
    ];
    expected_a.extend(tail);
    let mut expected_b = vec![
        "connected",
        "in join 1",
        "joined r",
        "out message 1",
        "in publish 2",
        "out message 1",
    ];
    expected_b.extend(tail);
    assert_eq!(of(&a), expected_a);
    assert_eq!(of(&b), expected_b);
}
