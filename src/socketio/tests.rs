//! Socket.IO over hand-driven engines: two shards in one thread, WebSocket sessions whose
//! frames are read straight from the engine, peer messages delivered by the test.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::noop_waker_ref;

use super::*;
use crate::codec::eio::Version;
use crate::codec::ws;
use crate::config::{EngineConfig, Parser};
use crate::engine::LinkKey;
use crate::gather::RequestId;
use crate::key::ShardId;

type Mailbox = Rc<RefCell<VecDeque<(ShardId, SocketIoMsg)>>>;

/// Two shards whose peer messages wait in a shared mailbox until [`Cluster::deliver`], and
/// whose spawned tasks wait in a list until [`Cluster::run_tasks`].
struct Cluster {
    shards: Vec<Rc<SocketIo>>,
    mailbox: Mailbox,
    tasks: Rc<RefCell<Vec<LocalTask>>>,
    now: Instant,
    /// Broadcasts sent to each shard by the other so far.
    broadcasts_to: Rc<RefCell<[usize; 2]>>,
}

/// A WebSocket client session on one shard.
struct Client {
    shard: usize,
    link: LinkKey,
}

impl Cluster {
    fn new(namespaces: Namespaces) -> Cluster {
        Cluster::with_nodes(namespaces, |_| None)
    }

    /// Two shards whose other nodes are what `nodes` makes for each shard.
    fn with_nodes(namespaces: Namespaces, nodes: impl Fn(ShardId) -> Option<NodeHooks>) -> Cluster {
        Cluster::build(namespaces, nodes, Parser::Default, None)
    }

    /// Two shards speaking socket.io-msgpack-parser's packets.
    fn msgpack(namespaces: Namespaces) -> Cluster {
        Cluster::build(namespaces, |_| None, Parser::Msgpack, None)
    }

    /// Two shards with connection state recovery on.
    fn recovering(namespaces: Namespaces) -> Cluster {
        let recovery = crate::config::RecoveryConfig::default();
        Cluster::build(namespaces, |_| None, Parser::Default, Some(recovery))
    }

    fn build(
        namespaces: Namespaces,
        nodes: impl Fn(ShardId) -> Option<NodeHooks>,
        parser: Parser,
        recovery: Option<crate::config::RecoveryConfig>,
    ) -> Cluster {
        let mailbox: Mailbox = Rc::default();
        let tasks: Rc<RefCell<Vec<LocalTask>>> = Rc::default();
        let broadcasts_to: Rc<RefCell<[usize; 2]>> = Rc::default();
        let namespaces = Arc::new(namespaces);
        // As the server does: a room directory unless recovery is on.
        let directory = recovery
            .is_none()
            .then(|| Arc::new(crate::directory::RoomDirectory::new()));
        let now = Instant::now();
        let shards = (0..2u16)
            .map(|id| {
                let id = ShardId::new(id);
                let engine = Rc::new(RefCell::new(Engine::new(id, EngineConfig::default())));
                let mailbox = mailbox.clone();
                let spawned = tasks.clone();
                let counted = broadcasts_to.clone();
                SocketIo::new(
                    id,
                    2,
                    engine,
                    SocketIoConfig {
                        connect_timeout: Duration::from_secs(1),
                        max_attachments: 8,
                        max_rooms_per_socket: 10_000,
                        max_namespaces_per_client: 100,
                        parser,
                        recovery: recovery.clone(),
                    },
                    namespaces.clone(),
                    ShardHooks {
                        peers: Box::new(move |to, msg| {
                            if let SocketIoMsg::Broadcast(_) = msg {
                                counted.borrow_mut()[to.index()] += 1;
                            }
                            mailbox.borrow_mut().push_back((to, msg))
                        }),
                        spawn: Box::new(move |task| spawned.borrow_mut().push(task)),
                        nodes: nodes(id),
                        directory: directory.clone(),
                    },
                    now,
                )
            })
            .collect();
        Cluster {
            shards,
            mailbox,
            tasks,
            now,
            broadcasts_to,
        }
    }

    /// Runs every queued engine event through Socket.IO, on every shard, then ends the turn:
    /// sends the broadcasts the engine held for it, as the shard's task does.
    fn pump(&self) {
        for io in &self.shards {
            crate::engine::pump_and_end_turn(&io.engine, |event| io.handle_event(event));
        }
    }

    /// Polls every spawned task once (finished ones are dropped), then pumps.
    fn run_tasks(&self) {
        let mut cx = Context::from_waker(noop_waker_ref());
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        for mut task in tasks {
            if task.as_mut().poll(&mut cx).is_pending() {
                self.tasks.borrow_mut().push(task);
            }
        }
        self.pump();
        self.deliver();
    }

    /// Delivers peer messages until none are left.
    fn deliver(&self) {
        loop {
            let next = self.mailbox.borrow_mut().pop_front();
            let Some((to, msg)) = next else {
                break;
            };
            self.shards[to.index()].handle_peer_message(msg);
            self.pump();
        }
    }

    /// A WebSocket session that joins `/` with a MessagePack CONNECT.
    fn connect_msgpack(&self, shard: usize) -> Client {
        let client = self.connect_with(shard, |cluster, client| {
            cluster.send_binary(client, &msgpack_packet(0, None, None));
        });
        let frames = self.read_frames(&client);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(!frames[0].0, "a MessagePack CONNECT reply is binary");
        client
    }

    fn connect(&self, shard: usize, packet: &str) -> Client {
        self.connect_with(shard, |cluster, client| cluster.send(client, packet))
    }

    fn connect_with(&self, shard: usize, first: impl FnOnce(&Cluster, &Client)) -> Client {
        let io = &self.shards[shard];
        let (_, link) = io.engine.borrow_mut().open_websocket(
            self.now,
            crate::engine::Peer {
                endpoint: 0,
                version: Version::V4,
                query: "EIO=4&transport=websocket&room=lobby".into(),
                address: Some(([127, 0, 0, 1], 5000).into()),
                headers: Box::default(),
            },
        );
        self.pump();
        let client = Client { shard, link };
        let open = self.read(&client);
        assert!(open[0].starts_with("0{"), "{open:?}");
        first(self, &client);
        client
    }

    fn send(&self, client: &Client, text: &str) {
        let message = ws::Message::Text(Bytes::copy_from_slice(text.as_bytes()));
        self.send_message(client, message);
    }

    fn send_binary(&self, client: &Client, bytes: &[u8]) {
        self.send_message(client, ws::Message::Binary(Bytes::copy_from_slice(bytes)));
    }

    fn send_message(&self, client: &Client, message: ws::Message) {
        self.shards[client.shard]
            .engine
            .borrow_mut()
            .ws_message(client.link, self.now, message);
        self.pump();
        self.deliver();
    }

    /// Whether the client's connection is being closed (its writer is told to end).
    fn is_closed(&self, client: &Client) -> bool {
        let mut cx = Context::from_waker(noop_waker_ref());
        let step = self.shards[client.shard].engine.borrow_mut().poll_ws_write(
            client.link,
            self.now,
            &mut cx,
            &mut Vec::new(),
        );
        step == std::task::Poll::Ready(crate::engine::WriteBatch::Close)
    }

    /// Every frame written to the client so far, as text (binary frames as `<n bytes>`).
    fn read(&self, client: &Client) -> Vec<String> {
        self.read_frames(client)
            .into_iter()
            .map(|(text, payload)| match text {
                true => String::from_utf8_lossy(&payload).into_owned(),
                false => format!("<{} bytes>", payload.len()),
            })
            .collect()
    }

    /// Every frame written to the client so far: whether it is text, and its payload.
    fn read_frames(&self, client: &Client) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut cx = Context::from_waker(noop_waker_ref());
        let _ = self.shards[client.shard].engine.borrow_mut().poll_ws_write(
            client.link,
            self.now,
            &mut cx,
            &mut out,
        );
        let mut frames = Vec::new();
        for mut bytes in out.iter().map(|b| &b[..]) {
            // A buffer may hold several frames (a packet and its attachments, a run of
            // broadcasts): split it at the frame boundaries.
            while !bytes.is_empty() {
                let (header, len) = match bytes[1] & 0x7f {
                    126 => (4, usize::from(u16::from_be_bytes([bytes[2], bytes[3]]))),
                    127 => (
                        10,
                        u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                    ),
                    len => (2, usize::from(len)),
                };
                let payload = &bytes[header..header + len];
                frames.push((bytes[0] & 0x0f == 1, payload.to_vec()));
                bytes = &bytes[header + len..];
            }
        }
        frames
    }
}

/// The socket id in a `40{"sid":"..."}` reply.
fn socket_id(connect_reply: &str) -> String {
    let start = connect_reply.find("\"sid\":\"").expect("sid") + 7;
    connect_reply[start..start + crate::id::ID_LEN].to_owned()
}

/// The binary's built-ins: `join` + ack, `publish` [room, payload] to the room.
fn builtins() -> Namespace {
    crate::apps::builtin_namespace()
}

fn namespaces(ns: Namespace) -> Namespaces {
    let mut namespaces = Namespaces::default();
    namespaces.declared.insert("/".into(), Arc::new(ns));
    namespaces
}

#[test]
fn connect_reply_carries_only_the_sid() {
    let cluster = Cluster::new(namespaces(Namespace::new()));
    let client = cluster.connect(1, "40");
    let frames = cluster.read(&client);
    assert_eq!(frames.len(), 1);
    let id = socket_id(&frames[0]);
    assert_eq!(frames[0], format!("40{{\"sid\":\"{id}\"}}"));
    assert_eq!(
        crate::id::Id::parse(&id).map(|id| id.shard()),
        Some(ShardId::new(1))
    );
}

#[test]
fn unknown_namespace_gets_connect_error() {
    let cluster = Cluster::new(namespaces(Namespace::new()));
    let client = cluster.connect(0, "40/nope,");
    assert_eq!(
        cluster.read(&client),
        ["44/nope,{\"message\":\"Invalid namespace\"}"]
    );
}

#[test]
fn middleware_refusal_carries_message_and_data() {
    let ns = Namespace::new().middleware(|handshake| {
        match handshake
            .auth::<serde_json::Value>()
            .ok()
            .and_then(|a| a.get("token").cloned())
        {
            Some(token) if token == "ok" => Ok(()),
            _ => {
                Err(ConnectError::new("not authorized").with_data(&serde_json::json!({"code": 42})))
            }
        }
    });
    let cluster = Cluster::new(namespaces(ns));
    let refused = cluster.connect(0, r#"40{"token":"bad"}"#);
    assert_eq!(
        cluster.read(&refused),
        [r#"44{"message":"not authorized","data":{"code":42}}"#]
    );
    let accepted = cluster.connect(0, r#"40{"token":"ok"}"#);
    assert!(cluster.read(&accepted)[0].starts_with("40{\"sid\""));
}

#[test]
fn broadcast_reaches_room_members_on_both_shards_in_order() {
    let cluster = Cluster::new(namespaces(builtins()));
    let members: Vec<Client> = (0..4).map(|n| cluster.connect(n % 2, "40")).collect();
    let outsider = cluster.connect(1, "40");
    for member in &members {
        cluster.send(member, r#"421["join","r"]"#);
    }
    for member in &members {
        let frames = cluster.read(member);
        assert_eq!(frames.last().map(String::as_str), Some("431[]"));
    }
    cluster.read(&outsider);
    for n in 0..50 {
        cluster.send(&members[0], &format!(r#"42["publish","r",{n}]"#));
    }
    for member in &members {
        let expected: Vec<String> = (0..50).map(|n| format!(r#"42["message",{n}]"#)).collect();
        assert_eq!(cluster.read(member), expected);
    }
    assert!(cluster.read(&outsider).is_empty());
}

#[test]
fn a_broadcast_to_rooms_goes_only_to_shards_with_members() {
    let cluster = Cluster::new(namespaces(builtins()));
    let (here, _) = member(&cluster, 0, "here");
    let (there, there_id) = member(&cluster, 1, "both");
    let (_, _) = member(&cluster, 0, "both");
    let sent = |cluster: &Cluster| cluster.broadcasts_to.borrow()[1];
    let before = sent(&cluster);
    // Shard 1 has nobody in "here": it is not sent the broadcast.
    cluster.send(&here, r#"42["publish","here","local"]"#);
    assert_eq!(cluster.read(&here), [r#"42["message","local"]"#]);
    assert_eq!(sent(&cluster), before);
    // It has a member of "both": it is.
    cluster.send(&here, r#"42["publish","both","shared"]"#);
    assert_eq!(cluster.read(&there), [r#"42["message","shared"]"#]);
    assert_eq!(sent(&cluster), before + 1);
    // A socket id is no listed room: every shard is asked, and its socket gets it.
    cluster.send(&here, &format!(r#"42["publish","{there_id}","direct"]"#));
    assert_eq!(cluster.read(&there), [r#"42["message","direct"]"#]);
    assert_eq!(sent(&cluster), before + 2);
    // Its member left: shard 1 is no longer sent what goes to "both".
    cluster.send(&there, r#"421["leave","both"]"#);
    assert_eq!(cluster.read(&there), ["431[]"]);
    cluster.send(&here, r#"42["publish","both","after"]"#);
    assert_eq!(sent(&cluster), before + 2);
    // Nor once its last socket in a room is gone.
    cluster.send(&there, r#"421["join","gone"]"#);
    cluster.read(&there);
    let (_, _) = member(&cluster, 0, "gone");
    cluster.send(&there, "41");
    cluster.send(&here, r#"42["publish","gone","after"]"#);
    assert_eq!(sent(&cluster), before + 2);
}

#[test]
fn broadcast_acks_are_aggregated_across_shards() {
    let results: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = results.clone();
    let ns = builtins().on("ask-all", move |socket, _, _| {
        let sink = sink.clone();
        socket
            .namespace()
            .to("r")
            .timeout(Duration::from_secs(5))
            .emit_with_ack("question", &Args::new(), move |result| {
                let mut answers: Vec<String> = match result {
                    Ok(messages) => messages
                        .iter()
                        .map(|m| m.get::<String>(0).unwrap())
                        .collect(),
                    Err((error, _)) => vec![error.to_string()],
                };
                answers.sort();
                sink.lock().unwrap().extend(answers);
            });
    });
    let cluster = Cluster::new(namespaces(ns));
    let members: Vec<Client> = (0..4).map(|n| cluster.connect(n % 2, "40")).collect();
    for member in &members {
        cluster.send(member, r#"421["join","r"]"#);
        cluster.read(member);
    }
    cluster.send(&members[0], r#"42["ask-all"]"#);
    for (n, member) in members.iter().enumerate() {
        let question = cluster.read(member);
        assert_eq!(question.len(), 1, "{question:?}");
        // `42<ack id>["question"]`: answer with the same id.
        let ack_id: String = question[0][2..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        cluster.send(member, &format!(r#"43{ack_id}["answer-{n}"]"#));
    }
    assert_eq!(
        *results.lock().unwrap(),
        ["answer-0", "answer-1", "answer-2", "answer-3"]
    );
}

#[test]
fn server_ack_times_out_without_an_answer() {
    let results: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = results.clone();
    let ns = Namespace::new().on_connect(move |socket| {
        let sink = sink.clone();
        socket.emit_with_ack(
            "q",
            &Args::new(),
            Duration::from_millis(100),
            move |result| {
                sink.lock().unwrap().push(match result {
                    Ok(message) => message.str(0).unwrap_or_default().into_owned(),
                    Err(error) => error.to_string(),
                });
            },
        );
    });
    let cluster = Cluster::new(namespaces(ns));
    let answering = cluster.connect(0, "40");
    let silent = cluster.connect(0, "40");
    let frames = cluster.read(&answering);
    let ack_id: String = frames[1][2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    cluster.send(&answering, &format!(r#"43{ack_id}["yes"]"#));
    cluster.read(&silent);
    let io = &cluster.shards[0];
    io.handle_timeouts(cluster.now + Duration::from_millis(150));
    assert_eq!(*results.lock().unwrap(), ["yes", "operation has timed out"]);
}

#[test]
fn binary_events_are_reassembled_and_relayed() {
    let ns = Namespace::new().on("echo", |_, message, ack| {
        assert_eq!(message.attachments(), [Bytes::from_static(&[1, 2, 3])]);
        if let Some(ack) = ack {
            let _ = ack.send(&message.to_args());
        }
    });
    let cluster = Cluster::new(namespaces(ns));
    let client = cluster.connect(0, "40");
    cluster.read(&client);
    cluster.send(&client, r#"451-7["echo",{"_placeholder":true,"num":0}]"#);
    assert!(cluster.read(&client).is_empty(), "waits for the attachment");
    let attachment = ws::Message::Binary(Bytes::from_static(&[1, 2, 3]));
    cluster.shards[0]
        .engine
        .borrow_mut()
        .ws_message(client.link, cluster.now, attachment);
    cluster.pump();
    assert_eq!(
        cluster.read(&client),
        [r#"461-7[{"_placeholder":true,"num":0}]"#, "<3 bytes>"]
    );
}

#[test]
fn socket_data_lives_with_the_socket() {
    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Hits {
        count: u32,
    }
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let sink = seen.clone();
    let ns = Namespace::new()
        .on_connect(|socket| {
            assert!(socket.data::<Hits>().is_none());
            socket.set_data(&Hits::default()).unwrap();
        })
        .on("hit", move |socket, _, _| {
            assert!(socket.update_data(|hits: &mut Hits| hits.count += 1));
            let hits: Hits = socket.data().unwrap();
            assert_eq!(
                socket.data_json(),
                serde_json::json!({ "count": hits.count })
            );
            // A value of another shape does not decode as `Hits`.
            assert!(socket.data::<Vec<String>>().is_none());
            sink.lock().unwrap().push(hits.count);
        });
    let cluster = Cluster::new(namespaces(ns));
    let client = cluster.connect(0, "40");
    cluster.send(&client, r#"42["hit"]"#);
    cluster.send(&client, r#"42["hit"]"#);
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
}

#[test]
fn protocol_errors_close_the_session() {
    let cluster = Cluster::new(namespaces(Namespace::new()));
    for bad in ["4abc", r#"42{}"#, r#"42abc["x"]"#, r#"42/other,["x"]"#] {
        let client = cluster.connect(0, "40");
        cluster.read(&client);
        cluster.send(&client, bad);
        assert!(cluster.is_closed(&client), "{bad} must close");
    }
}

#[test]
fn a_panicking_handler_closes_only_its_client() {
    let ns = builtins().on("boom", |_, _, _| panic!("handler bug"));
    let cluster = Cluster::new(namespaces(ns));
    let faulty = cluster.connect(0, "40");
    let bystander = cluster.connect(0, "40");
    cluster.read(&faulty);
    cluster.read(&bystander);
    cluster.send(&faulty, r#"42["boom"]"#);
    assert!(cluster.is_closed(&faulty));
    cluster.send(&bystander, r#"421["join","r"]"#);
    assert_eq!(cluster.read(&bystander), ["431[]"]);
}

#[test]
fn handshake_query_and_address_reach_middleware_and_sockets() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (in_middleware, in_handler) = (seen.clone(), seen.clone());
    let ns = Namespace::new()
        .middleware(move |handshake| {
            let room = handshake.query_param("room").unwrap_or_default();
            in_middleware
                .lock()
                .unwrap()
                .push(format!("middleware:{room}"));
            Ok(())
        })
        .on_connect(move |socket| {
            let address = socket.address().map(|a| a.to_string()).unwrap_or_default();
            let room = socket.query_param("room").unwrap_or_default();
            in_handler
                .lock()
                .unwrap()
                .push(format!("socket:{room}@{address}"));
        });
    let cluster = Cluster::new(namespaces(ns));
    cluster.connect(0, "40");
    assert_eq!(
        *seen.lock().unwrap(),
        ["middleware:lobby", "socket:lobby@127.0.0.1:5000"]
    );
}

#[test]
fn async_middleware_holds_the_connect_until_it_decides() {
    type Verdicts = Arc<Mutex<Vec<futures_channel::oneshot::Sender<bool>>>>;
    let pending: Verdicts = Arc::default();
    let waiting = pending.clone();
    let ns = Namespace::new().async_middleware(move |_handshake| {
        let (decide, verdict) = futures_channel::oneshot::channel();
        waiting.lock().unwrap().push(decide);
        async move {
            match verdict.await {
                Ok(true) => Ok(()),
                _ => Err(ConnectError::new("denied")),
            }
        }
    });
    let cluster = Cluster::new(namespaces(ns));
    let admitted = cluster.connect(0, "40");
    let refused = cluster.connect(0, "40");
    let gone = cluster.connect(0, "40");
    cluster.run_tasks();
    assert!(
        cluster.read(&admitted).is_empty(),
        "no reply before the verdict"
    );
    let mut decisions = std::mem::take(&mut *pending.lock().unwrap()).into_iter();
    let _ = decisions.next().unwrap().send(true);
    let _ = decisions.next().unwrap().send(false);
    // The third client leaves while its verdict is pending; its answer must go nowhere.
    cluster.shards[0]
        .engine
        .borrow_mut()
        .ws_reader_done(gone.link);
    cluster.pump();
    let _ = decisions.next().unwrap().send(true);
    cluster.run_tasks();
    assert!(cluster.read(&admitted)[0].starts_with("40{\"sid\""));
    assert_eq!(cluster.read(&refused), [r#"44{"message":"denied"}"#]);
    assert_eq!(cluster.shards[0].socket_count(), 1);
}

/// The answer of an operation if it has come (polled once, no waker needed).
fn answer<T>(future: &mut OpFuture<T>) -> Option<Result<T, OpError>> {
    let mut cx = Context::from_waker(noop_waker_ref());
    match Pin::new(future).poll(&mut cx) {
        std::task::Poll::Ready(outcome) => Some(outcome),
        std::task::Poll::Pending => None,
    }
}

/// Connects a client on `shard` and joins it to `room` with the built-in `join`.
fn member(cluster: &Cluster, shard: usize, room: &str) -> (Client, String) {
    let client = cluster.connect(shard, "40");
    let id = socket_id(&cluster.read(&client)[0]);
    cluster.send(&client, &format!(r#"421["join","{room}"]"#));
    assert_eq!(cluster.read(&client), ["431[]"]);
    (client, id)
}

#[test]
fn operations_reach_sockets_on_every_shard() {
    let ns = builtins().on_connect(|socket| {
        socket
            .set_data(&serde_json::json!({ "shard": socket.shard() }))
            .unwrap();
    });
    let cluster = Cluster::new(namespaces(ns));
    let (a, a_id) = member(&cluster, 0, "red");
    let (b, b_id) = member(&cluster, 1, "red");
    let (c, c_id) = member(&cluster, 1, "blue");
    let origin = &cluster.shards[0];

    let mut fetch = origin.of("/").to("red").fetch_sockets();
    cluster.deliver();
    let mut sockets = answer(&mut fetch).expect("answered").expect("fetched");
    sockets.sort_by_key(|s| s.shard);
    assert_eq!(sockets.len(), 2);
    assert_eq!(
        (sockets[0].id.as_str(), sockets[0].shard),
        (a_id.as_str(), Some(ShardId::new(0)))
    );
    assert_eq!(
        (sockets[1].id.as_str(), sockets[1].shard),
        (b_id.as_str(), Some(ShardId::new(1)))
    );
    assert_eq!(sockets[1].data, serde_json::json!({ "shard": 1 }));
    assert_eq!(sockets[1].rooms, [b_id.clone(), "red".to_owned()]);
    assert_eq!(sockets[1].handshake.auth, serde_json::json!({}));
    assert_eq!(sockets[1].handshake.protocol, 5);
    assert!(sockets[1].handshake.query.contains("room=lobby"));

    // Join the red members (one per shard) to "green"; c stays out.
    let mut join = origin.of("/").to("red").sockets_join(["green"]);
    cluster.deliver();
    assert_eq!(answer(&mut join), Some(Ok(2)));
    let mut rooms = origin.of("/").all_rooms();
    cluster.deliver();
    let rooms = answer(&mut rooms).expect("answered").expect("rooms");
    let mut expected = vec![
        a_id.clone(),
        b_id.clone(),
        c_id.clone(),
        "blue".into(),
        "green".into(),
        "red".into(),
    ];
    expected.sort();
    assert_eq!(rooms, expected);
    origin.of("/").to("green").emit("hi", &Args::new());
    cluster.deliver();
    cluster.pump();
    assert_eq!(cluster.read(&a), [r#"42["hi"]"#]);
    assert_eq!(cluster.read(&b), [r#"42["hi"]"#]);
    assert!(cluster.read(&c).is_empty());

    let mut leave = cluster.shards[1].of("/").to(&a_id).sockets_leave(["green"]);
    cluster.deliver();
    assert_eq!(answer(&mut leave), Some(Ok(1)));
    let mut fetch = origin.of("/").to("green").fetch_sockets();
    cluster.deliver();
    let ids: Vec<_> = answer(&mut fetch)
        .expect("answered")
        .expect("fetched")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, std::slice::from_ref(&b_id));

    // Disconnect everyone in red except b: only a gets the DISCONNECT.
    let mut disconnect = origin
        .of("/")
        .to("red")
        .except(&b_id)
        .disconnect_sockets(false);
    cluster.deliver();
    assert_eq!(answer(&mut disconnect), Some(Ok(1)));
    assert_eq!(cluster.read(&a), ["41"]);
    assert!(cluster.read(&b).is_empty());
    // Closing the whole connection of blue's member.
    let mut close = origin.of("/").to("blue").disconnect_sockets(true);
    cluster.deliver();
    assert_eq!(answer(&mut close), Some(Ok(1)));
    assert!(cluster.is_closed(&c));
    let mut count = origin.of("/").fetch_sockets();
    cluster.deliver();
    assert_eq!(answer(&mut count).map(|s| s.map(|s| s.len())), Some(Ok(1)));
}

#[test]
fn an_operation_times_out_when_a_shard_does_not_answer() {
    let cluster = Cluster::new(namespaces(builtins()));
    let (_a, _) = member(&cluster, 0, "red");
    let origin = &cluster.shards[0];
    let mut fetch = origin
        .of("/")
        .timeout(Duration::from_millis(100))
        .fetch_sockets();
    // Shard 1 never gets to answer: its message stays in the mailbox.
    assert!(answer(&mut fetch).is_none());
    assert_eq!(origin.counts().timers, 1);
    let deadline = origin.next_deadline().expect("a deadline");
    assert_eq!(deadline, cluster.now + Duration::from_millis(100));
    origin.handle_timeouts(deadline);
    assert_eq!(answer(&mut fetch), Some(Err(OpError::Timeout)));
    assert_eq!(origin.counts().timers, 0);
    // The late answer finds nothing waiting.
    cluster.deliver();
}

/// Records what an observer hears, as `socket id: what`.
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
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

    fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        self.record(socket, format!("disconnected {}", reason.as_str()));
    }
}

impl Recorder {
    fn record(&self, socket: &Socket, what: String) {
        let line = format!("{}: {what}", socket.id());
        self.log.lock().unwrap().push(line);
    }
}

#[test]
fn the_observer_hears_every_socket_event_in_order() {
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.clone();
    let mut declared = namespaces(builtins().on("greet", |socket, _, _| {
        let _ = socket.emit("hello", &Args::new().with_str("you"));
    }));
    declared.observers.push(Arc::new(move |_shard| {
        Box::new(Recorder { log: sink.clone() }) as Box<dyn Observer>
    }));
    let cluster = Cluster::new(declared);
    let (a, a_id) = member(&cluster, 0, "red");
    let (b, b_id) = member(&cluster, 1, "red");
    cluster.send(&a, r#"42["greet"]"#);
    cluster.send(&a, r#"42["publish","red","x"]"#);
    cluster.send(&b, r#"42["leave","red"]"#);
    cluster.send(&b, "41");
    let mut disconnect = cluster.shards[1].of("/").disconnect_sockets(false);
    cluster.deliver();
    assert_eq!(answer(&mut disconnect), Some(Ok(1)));
    let log = log.lock().unwrap();
    let of = |id: &str| -> Vec<String> {
        let prefix = format!("{id}: ");
        log.iter()
            .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    };
    assert_eq!(
        of(&a_id),
        [
            "connected",
            "in join 1",
            "joined red",
            "in greet 0",
            "out hello 1",
            "in publish 2",
            "out message 1",
            "left red",
            "disconnected server namespace disconnect",
        ]
    );
    assert_eq!(
        of(&b_id),
        [
            "connected",
            "in join 1",
            "joined red",
            "out message 1",
            "in leave 1",
            "left red",
            "disconnected client namespace disconnect",
        ]
    );
}

/// Other nodes as a shard sees them: `asked` nodes answer every question (`None`: the cluster
/// can't be asked), and the last question's request is kept in `last`.
fn other_nodes(asked: Option<usize>, last: Rc<Cell<Option<RequestId>>>) -> NodeHooks {
    NodeHooks {
        publish: Box::new(|_| {}),
        serve: Box::new(|_| {}),
        request: Box::new(|_| {}),
        count: Box::new(move |_| Box::pin(std::future::ready(asked.map(|n| n + 1)))),
        ask: Box::new(move |_, request| {
            last.set(Some(request));
            Box::pin(std::future::ready(asked))
        }),
        server_event: Box::new(|_, _, _| {}),
        timeout: Duration::from_secs(3),
        rooms: None,
        timeouts: Arc::default(),
        recovery: None,
    }
}

#[test]
fn questions_wait_for_as_many_other_nodes_as_the_cluster_asked() {
    let last: Rc<Cell<Option<RequestId>>> = Rc::default();
    let asked = last.clone();
    let cluster = Cluster::with_nodes(namespaces(builtins()), move |id| {
        (id.index() == 0).then(|| other_nodes(Some(1), asked.clone()))
    });
    let (_a, a_id) = member(&cluster, 0, "red");
    let (_b, b_id) = member(&cluster, 1, "red");
    let origin = &cluster.shards[0];

    // Both shards answer; the one other node has not yet.
    let mut fetch = origin.of("/").to("red").fetch_sockets();
    cluster.run_tasks();
    assert!(answer(&mut fetch).is_none());
    let request = last.get().expect("the other nodes were asked");
    let remote = SocketInfo {
        id: "pHL8NGQqrfPTeE33AAAB".into(),
        nsp: "/".into(),
        rooms: vec!["pHL8NGQqrfPTeE33AAAB".into(), "red".into()],
        handshake: HandshakeInfo {
            query: String::new(),
            address: None,
            auth: serde_json::json!({}),
            protocol: 5,
        },
        data: serde_json::Value::Null,
        shard: None,
    };
    let reply = Reply::Sockets(vec![remote]);
    origin.handle_peer_message(SocketIoMsg::Reply { request, reply });
    let sockets = answer(&mut fetch).expect("answered").expect("fetched");
    let mut ids: Vec<_> = sockets.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![a_id.as_str(), b_id.as_str(), "pHL8NGQqrfPTeE33AAAB"];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    // The operator waits the cluster's requests timeout by default.
    assert_eq!(origin.adapter.default_timeout(), Duration::from_secs(3));

    // A server-side emit with ack waits for the other node only; its ack is the answer.
    let mut pongs = origin
        .of("/")
        .server_side_emit_with_ack("sse", &Args::new().with_str("ping"));
    cluster.run_tasks();
    assert!(answer(&mut pongs).is_none());
    let request = last.get().expect("asked");
    let pong = Message::from_args_json(br#""pong""#, Vec::new()).expect("JSON");
    let reply = Reply::Ack(pong);
    origin.handle_peer_message(SocketIoMsg::Reply { request, reply });
    let pongs = answer(&mut pongs).expect("answered").expect("every node");
    assert_eq!(pongs[0].str(0).as_deref(), Some("pong"));

    // A shard with no other node answers at once, with no ack.
    let mut none = cluster.shards[1]
        .of("/")
        .server_side_emit_with_ack("sse", &Args::new());
    assert_eq!(answer(&mut none).map(|r| r.map(|v| v.len())), Some(Ok(0)));
}

#[test]
fn with_the_cluster_out_of_reach_questions_fail_and_acks_keep_this_process() {
    let last: Rc<Cell<Option<RequestId>>> = Rc::default();
    let cluster = Cluster::with_nodes(namespaces(builtins()), move |_| {
        Some(other_nodes(None, last.clone()))
    });
    let (a, _) = member(&cluster, 0, "red");
    let origin = &cluster.shards[0];
    let mut fetch = origin.of("/").fetch_sockets();
    cluster.run_tasks();
    assert_eq!(answer(&mut fetch), Some(Err(OpError::ClusterUnavailable)));
    // This process's own part still answers when asked alone.
    let mut local = origin.of("/").local().fetch_sockets();
    cluster.deliver();
    assert_eq!(answer(&mut local).map(|r| r.map(|v| v.len())), Some(Ok(1)));

    // A broadcast's acks: this process's recipients still count.
    let acks: Rc<RefCell<Option<BroadcastAcks>>> = Rc::default();
    let got = acks.clone();
    origin
        .of("/")
        .emit_with_ack("ask", &Args::new(), move |outcome| {
            *got.borrow_mut() = Some(outcome)
        });
    cluster.run_tasks();
    let frames = cluster.read(&a);
    assert_eq!(frames.len(), 1);
    let ack_id = frames[0]
        .strip_prefix("42")
        .and_then(|rest| rest.split('[').next())
        .expect("an event with an ack id")
        .to_owned();
    cluster.send(&a, &format!(r#"43{ack_id}["yes"]"#));
    cluster.run_tasks();
    let outcome = acks.borrow_mut().take().expect("called back");
    let acks = outcome.expect("every recipient answered");
    assert_eq!(acks[0].str(0).as_deref(), Some("yes"));
}

/// A socket.io-msgpack-parser packet `{type, nsp: "/", data, id}`.
fn msgpack_packet(kind: u8, data: Option<rmpv::Value>, id: Option<u64>) -> Vec<u8> {
    let mut map = vec![
        (rmpv::Value::from("type"), rmpv::Value::from(kind)),
        (rmpv::Value::from("nsp"), rmpv::Value::from("/")),
    ];
    if let Some(data) = data {
        map.push((rmpv::Value::from("data"), data));
    }
    if let Some(id) = id {
        map.push((rmpv::Value::from("id"), rmpv::Value::from(id)));
    }
    crate::codec::notepack::write(&rmpv::Value::Map(map))
}

/// A binary frame's packet as a MessagePack value.
fn msgpack_value(frame: &(bool, Vec<u8>)) -> rmpv::Value {
    assert!(!frame.0, "a text frame to a MessagePack client");
    crate::codec::notepack::read(&frame.1).expect("MessagePack")
}

fn field<'a>(packet: &'a rmpv::Value, key: &str) -> Option<&'a rmpv::Value> {
    packet
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

#[test]
fn msgpack_packets_reach_the_handlers_and_every_answer_is_msgpack() {
    use rmpv::Value;
    let cluster = Cluster::msgpack(namespaces(builtins()));
    let a = cluster.connect_msgpack(0);
    let b = cluster.connect_msgpack(1);
    // An echo with a bin comes back as an ACK (type 3) with the same id and the same bin.
    let echo = Value::Array(vec![Value::from("echo"), Value::Binary(vec![1, 2, 3])]);
    cluster.send_binary(&a, &msgpack_packet(2, Some(echo), Some(5)));
    let frames = cluster.read_frames(&a);
    assert_eq!(frames.len(), 1, "one frame, no attachments");
    let ack = msgpack_value(&frames[0]);
    assert_eq!(field(&ack, "type"), Some(&Value::from(3)));
    assert_eq!(field(&ack, "id"), Some(&Value::from(5)));
    assert_eq!(
        field(&ack, "data"),
        Some(&Value::Array(vec![Value::Binary(vec![1, 2, 3])]))
    );
    // A broadcast from shard 0 reaches the member on shard 1 as one binary EVENT.
    for (client, id) in [(&a, 1), (&b, 2)] {
        let join = Value::Array(vec![Value::from("join"), Value::from("r")]);
        cluster.send_binary(client, &msgpack_packet(2, Some(join), Some(id)));
        cluster.read_frames(client);
    }
    let publish = Value::Array(vec![
        Value::from("publish"),
        Value::from("r"),
        Value::Map(vec![(Value::from("b"), Value::Binary(vec![9]))]),
    ]);
    cluster.send_binary(&a, &msgpack_packet(2, Some(publish), None));
    let frames = cluster.read_frames(&b);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let event = msgpack_value(&frames[0]);
    assert_eq!(field(&event, "type"), Some(&Value::from(2)));
    assert_eq!(field(&event, "id"), None);
    assert_eq!(
        field(&event, "data"),
        Some(&Value::Array(vec![
            Value::from("message"),
            Value::Map(vec![(Value::from("b"), Value::Binary(vec![9]))]),
        ]))
    );
}

#[test]
fn hostile_msgpack_closes_only_its_session() {
    let cluster = Cluster::msgpack(namespaces(builtins()));
    let bystander = cluster.connect_msgpack(0);
    let huge_str = [&[0x81, 0xa3][..], b"nsp", &[0xdb, 0xff, 0xff, 0xff, 0xff]].concat();
    let mut deep = vec![0x83, 0xa4];
    deep.extend_from_slice(b"type");
    deep.push(2);
    deep.push(0xa3);
    deep.extend_from_slice(b"nsp");
    deep.extend_from_slice(&[0xa1, b'/', 0xa4]);
    deep.extend_from_slice(b"data");
    deep.extend(std::iter::repeat_n(0x91, 10_000));
    deep.push(0xc0);
    let bad: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xc1],
        huge_str,
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        deep,
        msgpack_packet(7, None, None),
        msgpack_packet(2, Some(rmpv::Value::from("not an array")), None),
        msgpack_packet(3, Some(rmpv::Value::Array(vec![])), Some(u64::MAX)),
    ];
    for bytes in bad {
        let client = cluster.connect_msgpack(0);
        cluster.send_binary(&client, &bytes);
        assert!(cluster.is_closed(&client), "{bytes:02x?} must close");
    }
    // A JSON text packet is a client with the wrong parser.
    let client = cluster.connect_msgpack(1);
    cluster.send(&client, r#"42["echo",1]"#);
    assert!(cluster.is_closed(&client));
    assert!(!cluster.is_closed(&bystander));
}

/// The trailing offset of a stored event (`42["e",...,"<offset>"]`).
fn offset_of(frame: &str) -> String {
    let array: serde_json::Value = serde_json::from_str(&frame[2..]).expect("an event");
    array
        .as_array()
        .and_then(|items| items.last())
        .and_then(|last| last.as_str())
        .expect("an offset")
        .to_owned()
}

#[test]
fn a_lost_socket_comes_back_on_another_shard_with_its_id_rooms_and_missed_events() {
    let cluster = Cluster::recovering(namespaces(builtins()));
    let lost = cluster.connect(0, "40");
    let answer = cluster.read(&lost).remove(0);
    let connect: serde_json::Value = serde_json::from_str(&answer[2..]).expect("CONNECT");
    let (sid, pid) = (
        connect["sid"].as_str().unwrap(),
        connect["pid"].as_str().unwrap(),
    );
    assert_eq!(pid.len(), 20, "{answer}");
    cluster.send(&lost, r#"420["join","red"]"#);
    let other = cluster.connect(1, "40");
    let _ = cluster.read(&other);
    cluster.send(&other, r#"42["publish","red","seen"]"#);
    let frames = cluster.read(&lost);
    let seen = frames
        .iter()
        .find(|f| f.contains("seen"))
        .expect("the event");
    let offset = offset_of(seen);
    // The connection breaks (its reader ends): the session is kept.
    cluster.shards[0]
        .engine
        .borrow_mut()
        .ws_reader_done(lost.link);
    cluster.pump();
    // Meanwhile: to its room, to another room, to everyone but its room, volatile.
    cluster.send(&other, r#"42["publish","red","missed"]"#);
    cluster.send(&other, r#"42["publish","blue","not for it"]"#);
    cluster.shards[1]
        .of("/")
        .except("red")
        .emit("nope", &Args::new());
    cluster.shards[1]
        .of("/")
        .volatile()
        .emit("volatile", &Args::new());
    cluster.shards[1].of("/").emit("everyone", &Args::new());
    cluster.deliver();
    // It comes back on the other shard.
    let back = cluster.connect(1, &format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#));
    cluster.run_tasks();
    cluster.run_tasks();
    let frames = cluster.read(&back);
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(
        frames[0].starts_with(r#"42["message","missed","#),
        "{frames:?}"
    );
    assert!(frames[1].starts_with(r#"42["everyone","#), "{frames:?}");
    let reconnect: serde_json::Value = serde_json::from_str(&frames[2][2..]).expect("CONNECT");
    assert_eq!(reconnect["sid"], sid);
    assert_eq!(reconnect["pid"], pid);
    // Back in its room.
    cluster.send(&other, r#"42["publish","red","again"]"#);
    assert!(cluster.read(&back).iter().any(|f| f.contains("again")));
    // Restored once: the same pid again gets a new session.
    let twice = cluster.connect(0, &format!(r#"40{{"pid":"{pid}","offset":"{offset}"}}"#));
    cluster.run_tasks();
    cluster.run_tasks();
    let frames = cluster.read(&twice);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(!frames[0].contains(sid), "{frames:?}");
}

#[test]
fn a_bogus_pid_or_offset_or_a_clean_leave_gives_a_new_session() {
    let cluster = Cluster::recovering(namespaces(builtins()));
    let client = cluster.connect(0, r#"40{"pid":"nobody","offset":"1.0"}"#);
    cluster.run_tasks();
    cluster.run_tasks();
    let frames = cluster.read(&client);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let first: serde_json::Value = serde_json::from_str(&frames[0][2..]).expect("CONNECT");
    let pid = first["pid"].as_str().expect("a pid").to_owned();
    // It leaves on purpose: nothing is kept.
    cluster.send(&client, "41");
    let again = cluster.connect(1, &format!(r#"40{{"pid":"{pid}","offset":"1.0"}}"#));
    cluster.run_tasks();
    cluster.run_tasks();
    let frames = cluster.read(&again);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_ne!(frames[0], format!("40{}", first));
}
