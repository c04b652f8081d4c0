//! The classic adapter's publishing and receiving rules against captures from live Node
//! servers and the emitter (`shared/spec/ecosystem-protocols.md` A.3, B.1).

use super::*;
use crate::codec::adapter::{RemoteSocket, SubscriptionMode};

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `io.to("room1").emit("to-room1", "x")` on a Node server whose `/` adapter had uid `S8xJQv`.
const TO_ROOM1: &str = "93a65338784a517683a47479706502a46461746192a8746f2d726f6f6d31a178a36e7370a12f83a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380";

/// The emitter's `emit("from-emitter", "a", 1, {b: true})`, opts in its own key order.
const FROM_EMITTER: &str = "93a7656d697474657283a47479706502a46461746194ac66726f6d2d656d6974746572a1610181a162c3a36e7370a12f83a5726f6f6d7390a5666c61677380a665786365707490";

fn node() -> Node {
    let mut node = Node::new("socket.io");
    node.add_namespace("/").expect("new namespace");
    node
}

fn delivered(incoming: Incoming) -> RemoteBroadcast {
    match incoming {
        Incoming::Broadcast(broadcast) => broadcast,
        other => panic!("not delivered: {other:?}"),
    }
}

#[test]
fn a_namespace_gets_a_node_uid_and_the_adapters_subscriptions() {
    let mut node = Node::new("socket.io");
    let subscriptions = node.add_namespace("/chat").expect("new");
    let uid = node.uid("/chat").expect("uid").to_owned();
    assert_eq!(uid.len(), 6);
    assert!(uid.bytes().all(|b| UID_ALPHABET.contains(&b)));
    assert_eq!(subscriptions.patterns, ["socket.io#/chat#*"]);
    assert_eq!(
        subscriptions.channels,
        [
            "socket.io-request#/chat#".to_owned(),
            "socket.io-response#/chat#".to_owned(),
            format!("socket.io-response#/chat#{uid}#"),
        ]
    );
    assert_eq!(node.add_namespace("/chat"), None);
    let other = node.add_namespace("/").expect("new");
    assert_ne!(node.uid("/"), Some(uid.as_str()), "{other:?}");
}

#[test]
fn a_node_broadcast_to_a_room_is_delivered_only_where_the_room_has_members() {
    let node = node();
    let channel = "socket.io#/#room1#";
    let broadcast = delivered(node.receive(channel, &hex(TO_ROOM1), |nsp, room| {
        nsp == "/" && room == "room1"
    }));
    assert_eq!(broadcast.nsp, "/");
    assert_eq!(broadcast.rooms, ["room1"]);
    assert!(broadcast.except.is_empty());
    assert!(!broadcast.volatile);
    assert_eq!(broadcast.event.name, "to-room1");
    assert_eq!(broadcast.event.args, br#""x""#);
    // No local member: ignored before decoding (garbage after the channel check is not read).
    assert_eq!(
        node.receive(channel, b"not even msgpack", |_, _| false),
        Incoming::Ignored
    );
}

#[test]
fn the_emitters_broadcast_is_delivered_whatever_its_key_order() {
    let node = node();
    let broadcast = delivered(node.receive("socket.io#/#", &hex(FROM_EMITTER), |_, _| false));
    assert_eq!(broadcast.event.name, "from-emitter");
    assert_eq!(broadcast.event.args, br#""a",1,{"b":true}"#);
    assert_eq!(broadcast.event.count, 3);
    assert!(broadcast.rooms.is_empty());
}

#[test]
fn what_this_node_publishes_is_what_a_node_server_publishes() {
    let node = node();
    let uid = node.uid("/").expect("uid").to_owned();
    let rooms: Vec<Box<str>> = vec!["room1".into()];
    let publish = node
        .publish(&LocalBroadcast {
            nsp: "/",
            rooms: &rooms,
            except: &[],
            volatile: false,
            event: "to-room1",
            args: br#""x""#,
            attachments: &[],
            offset: None,
        })
        .expect("served")
        .expect("encoded");
    assert_eq!(publish.channel, "socket.io#/#room1#");
    // Node's bytes with our uid in place of its own.
    let mut expected = hex(TO_ROOM1);
    expected[2..8].copy_from_slice(uid.as_bytes());
    assert_eq!(publish.payload, expected);
    // Coming back through Redis, its own broadcast is ignored.
    assert_eq!(
        node.receive(&publish.channel, &publish.payload, |_, _| true),
        Incoming::Ignored
    );
    // Another node delivers it.
    let other = node_with_uid_not(&uid);
    let broadcast = delivered(other.receive(&publish.channel, &publish.payload, |_, _| true));
    assert_eq!(broadcast.event.name, "to-room1");
}

#[test]
fn a_recovery_offset_crosses_in_opts_and_the_log_reads_back() {
    let rooms: Vec<Box<str>> = vec!["red".into()];
    let except: Vec<Box<str>> = vec!["sid1".into()];
    let attachment = Bytes::from_static(&[1, 2, 3]);
    let broadcast = LocalBroadcast {
        nsp: "/chat",
        rooms: &rooms,
        except: &except,
        volatile: false,
        event: "bin",
        args: br#"{"_placeholder":true,"num":0},"y""#,
        attachments: std::slice::from_ref(&attachment),
        offset: Some("1f.0.abcdefgh"),
    };
    // Classic and sharded: another node reads the offset back; Node ignores the key.
    for mut node in [node(), sharded_node(SubscriptionMode::Static)] {
        node.add_namespace("/chat");
        let uid = node.uid("/chat").expect("uid").to_owned();
        let publish = node.publish(&broadcast).expect("served").expect("encoded");
        let mut other = match node.mode() {
            Mode::Classic => node_with_uid_not(&uid),
            mode => Node::with_mode("socket.io", mode),
        };
        other.add_namespace("/chat");
        let got = delivered(other.receive(&publish.channel, &publish.payload, |_, _| true));
        assert_eq!(got.offset.as_deref(), Some("1f.0.abcdefgh"));
        assert_eq!(got.event.attachments, vec![attachment.clone()]);
    }
    // The log's entry: the same meaning back, offset included.
    let entry = crate::cluster::log_entry(&broadcast).expect("encoded");
    let read = crate::cluster::read_log_entry(&entry).expect("read");
    assert_eq!(read.nsp, "/chat");
    assert_eq!(read.rooms, ["red"]);
    assert_eq!(read.except, ["sid1"]);
    assert_eq!(read.offset.as_deref(), Some("1f.0.abcdefgh"));
    assert_eq!(read.event.name, "bin");
    assert_eq!(read.event.attachments, vec![attachment]);
    // Garbage from Redis is an error, never a panic.
    for garbage in [&b""[..], b"\x93\xa1x", b"\xc1", &entry[..entry.len() - 1]] {
        assert!(crate::cluster::read_log_entry(garbage).is_err());
    }
}

#[test]
fn binary_volatile_and_several_rooms_cross_as_node_sends_them() {
    let node = node();
    let rooms: Vec<Box<str>> = vec!["a".into(), "b".into()];
    let except: Vec<Box<str>> = vec!["c".into()];
    let attachment = Bytes::from_static(&[1, 2, 3]);
    let publish = node
        .publish(&LocalBroadcast {
            nsp: "/",
            rooms: &rooms,
            except: &except,
            volatile: true,
            event: "bin",
            args: br#"{"_placeholder":true,"num":0},"y""#,
            attachments: std::slice::from_ref(&attachment),
            offset: None,
        })
        .expect("served")
        .expect("encoded");
    // Two rooms: the namespace channel.
    assert_eq!(publish.channel, "socket.io#/#");
    let other = node_with_uid_not(node.uid("/").expect("uid"));
    let broadcast = delivered(other.receive(&publish.channel, &publish.payload, |_, _| false));
    assert_eq!(broadcast.rooms, ["a", "b"]);
    assert_eq!(broadcast.except, ["c"]);
    assert!(broadcast.volatile);
    assert_eq!(
        broadcast.event.args,
        br#"{"_placeholder":true,"num":0},"y""#
    );
    assert_eq!(broadcast.event.attachments, [attachment]);
}

#[test]
fn bad_and_foreign_messages_are_dropped_or_ignored() {
    let node = node();
    assert!(matches!(
        node.receive("socket.io#/#", b"\x93\xa1", |_, _| true),
        Incoming::Dropped(Dropped::Malformed(_))
    ));
    assert!(matches!(
        node.receive("socket.io#/#", &vec![0x90; MAX_MESSAGE + 1], |_, _| true),
        Incoming::Dropped(Dropped::Malformed(AdapterError::TooLarge))
    ));
    // A namespace this node does not serve: nothing to deliver. A request with no type: bad.
    assert_eq!(
        node.receive("socket.io#/other#", &hex(TO_ROOM1), |_, _| true),
        Incoming::Ignored
    );
    assert_eq!(
        node.receive("socket.io-request#/#", b"{}", |_, _| true),
        Incoming::Dropped(Dropped::Malformed(AdapterError::Missing("type")))
    );
    // A message whose packet names another namespace than its channel's.
    let mut chat = Node::new("socket.io");
    chat.add_namespace("/chat").expect("new");
    assert_eq!(
        chat.receive("socket.io#/chat#", &hex(TO_ROOM1), |_, _| true),
        Incoming::Dropped(Dropped::Unexpected)
    );
}

/// A node serving `/` whose uid is not `uid` (uids are random: retry until they differ).
fn node_with_uid_not(uid: &str) -> Node {
    loop {
        let other = node();
        if other.uid("/") != Some(uid) {
            return other;
        }
    }
}

#[test]
fn the_emitters_and_node_servers_join_leave_and_disconnect_are_applied() {
    let mut node = node();
    node.add_namespace("/chat").expect("new");
    // The emitter's socketsJoin: no uid, no request id.
    let join =
        br#"{"type":2,"opts":{"rooms":["3UeenbSRiQGHh2XrAAAA"],"except":[]},"rooms":["r7","r8"]}"#;
    assert_eq!(
        node.receive("socket.io-request#/#", join, |_, _| false),
        Incoming::Operation(RemoteOperation {
            nsp: "/".into(),
            rooms: vec!["3UeenbSRiQGHh2XrAAAA".into()],
            except: vec![],
            action: RemoteAction::Join(vec!["r7".into(), "r8".into()]),
        })
    );
    // A Node server's socketsLeave (with its uid), and the emitter's disconnectSockets(true).
    let leave = br#"{"uid":"S8xJQv","type":3,"opts":{"rooms":["room1"],"except":["room5"]},"rooms":["room9"]}"#;
    assert_eq!(
        node.receive("socket.io-request#/#", leave, |_, _| false),
        Incoming::Operation(RemoteOperation {
            nsp: "/".into(),
            rooms: vec!["room1".into()],
            except: vec!["room5".into()],
            action: RemoteAction::Leave(vec!["room9".into()]),
        })
    );
    let disconnect = br#"{"type":4,"opts":{"rooms":[],"except":[]},"close":true}"#;
    assert_eq!(
        node.receive("socket.io-request#/chat#", disconnect, |_, _| false),
        Incoming::Operation(RemoteOperation {
            nsp: "/chat".into(),
            rooms: vec![],
            except: vec![],
            action: RemoteAction::Disconnect { close: true },
        })
    );
    // Garbage is dropped.
    assert!(matches!(
        node.receive("socket.io-request#/#", b"{\"type\":", |_, _| false),
        Incoming::Dropped(Dropped::Malformed(_))
    ));
}

#[test]
fn fetch_and_all_rooms_questions_are_answered_on_the_shared_response_channel() {
    let node = node();
    let fetch =
        br#"{"uid":"S8xJQv","requestId":"_YEWBq","type":5,"opts":{"rooms":["r"],"except":["x"]}}"#;
    let Incoming::Fetch(query) = node.receive("socket.io-request#/#", fetch, |_, _| false) else {
        panic!("a fetch question");
    };
    assert_eq!(
        query,
        RemoteQuery {
            nsp: "/".into(),
            request_id: "_YEWBq".into(),
            rooms: vec!["r".into()],
            except: vec!["x".into()],
            reply_to: None,
        }
    );
    let socket = RemoteSocket {
        id: "pHL8NGQqrfPTeE33AAAB".into(),
        handshake: rmpv::Value::Map(Vec::new()),
        rooms: vec!["pHL8NGQqrfPTeE33AAAB".into(), "r".into()],
        data: rmpv::Value::Nil,
    };
    let answer = node.fetch_response(&query, vec![socket]);
    assert_eq!(answer.channel, "socket.io-response#/#");
    let json: serde_json::Value = serde_json::from_slice(&answer.payload).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"requestId": "_YEWBq", "sockets": [{
            "id": "pHL8NGQqrfPTeE33AAAB", "handshake": {},
            "rooms": ["pHL8NGQqrfPTeE33AAAB", "r"], "data": null,
        }]})
    );
    let rooms = br#"{"uid":"S8xJQv","requestId":"AZ5nHk","type":1}"#;
    let Incoming::AllRooms(query) = node.receive("socket.io-request#/#", rooms, |_, _| false)
    else {
        panic!("an all-rooms question");
    };
    let answer = node.rooms_response(&query, vec!["room1".into()]);
    assert_eq!(
        answer.payload,
        br#"{"requestId":"AZ5nHk","rooms":["room1"]}"#.to_vec()
    );
    // This node's own question coming back is not answered.
    let own = format!(
        r#"{{"uid":"{}","requestId":"AZ5nHk","type":1}}"#,
        node.uid("/").expect("uid")
    );
    assert_eq!(
        node.receive("socket.io-request#/#", own.as_bytes(), |_, _| false),
        Incoming::Ignored
    );
}

#[test]
fn a_broadcast_with_acks_is_delivered_and_answered_as_a_node_node_does() {
    let node = node();
    // `io.timeout(2000).emit("ask", 1, cb)` on a Node server (its uid `S8xJQv`).
    let request = hex("85a3756964a65338784a5176a9726571756573744964a64b3535443761a47479706507a67061636b657483a47479706502a46461746192a361736b01a36e7370a12fa46f70747383a5726f6f6d7390a665786365707490a5666c61677381a774696d656f7574cd07d0");
    let Incoming::AckBroadcast(broadcast) =
        node.receive("socket.io-request#/#", &request, |_, _| false)
    else {
        panic!("a broadcast with acks");
    };
    assert_eq!(broadcast.query.request_id, "K55D7a");
    assert_eq!(broadcast.event.name, "ask");
    assert_eq!(broadcast.event.args, b"1");
    assert_eq!(broadcast.timeout_ms, Some(2000));
    let count = node.client_count_response(&broadcast.query, 0);
    assert_eq!(count.channel, "socket.io-response#/#");
    assert_eq!(
        count.payload,
        br#"{"type":8,"requestId":"K55D7a","clientCount":0}"#.to_vec()
    );
    // The captured BROADCAST_ACK, byte for byte.
    let ack = node
        .ack_response(&broadcast.query, br#""ack-from-c2@B""#, &[])
        .expect("encoded");
    assert_eq!(
        ack.payload,
        hex("83a47479706509a9726571756573744964a64b3535443761a67061636b6574ad61636b2d66726f6d2d63324042")
    );
}

#[test]
fn this_nodes_operations_are_published_as_node_servers_publish_them() {
    let node = node();
    let uid = node.uid("/").expect("uid").to_owned();
    let rooms: Vec<Box<str>> = Vec::new();
    let join = node
        .operation_request("/", &rooms, &[], RemoteAction::Join(vec!["room9".into()]))
        .expect("served");
    assert_eq!(join.channel, "socket.io-request#/#");
    // The captured REMOTE_JOIN with this node's uid.
    assert_eq!(
        String::from_utf8(join.payload.clone()).expect("JSON"),
        format!(
            r#"{{"uid":"{uid}","type":2,"opts":{{"rooms":[],"except":[]}},"rooms":["room9"]}}"#
        )
    );
    // Its own request coming back is ignored; another node applies it.
    assert_eq!(
        node.receive(&join.channel, &join.payload, |_, _| true),
        Incoming::Ignored
    );
    let other = node_with_uid_not(&uid);
    assert!(matches!(
        other.receive(&join.channel, &join.payload, |_, _| true),
        Incoming::Operation(_)
    ));
    let disconnect = node
        .operation_request(
            "/",
            &["r".into()],
            &[],
            RemoteAction::Disconnect { close: true },
        )
        .expect("served");
    assert_eq!(
        String::from_utf8(disconnect.payload).expect("JSON"),
        format!(r#"{{"uid":"{uid}","type":4,"opts":{{"rooms":["r"],"except":[]}},"close":true}}"#)
    );
    assert_eq!(
        node.operation_request("/other", &rooms, &[], RemoteAction::Leave(vec![])),
        None
    );
}

#[test]
fn server_side_emits_from_node_servers_and_the_emitter_reach_the_handlers() {
    let node = node();
    // Node's `io.serverSideEmit("sse", 1, "two", {three: 3})`, captured.
    let emit = br#"{"uid":"S8xJQv","type":6,"data":["sse",1,"two",{"three":3}]}"#;
    let Incoming::ServerEvent(event) = node.receive("socket.io-request#/#", emit, |_, _| false)
    else {
        panic!("a server-side event");
    };
    assert_eq!((event.nsp.as_str(), event.ack), ("/", None));
    assert_eq!(event.event.name, "sse");
    assert_eq!(event.event.args, br#"1,"two",{"three":3}"#);
    // With an ack: answered once, on the shared response channel, as Node does.
    let asked = br#"{"uid":"S8xJQv","requestId":"Vwe2Vy","type":6,"data":["sse-ack","ping"]}"#;
    let Incoming::ServerEvent(event) = node.receive("socket.io-request#/#", asked, |_, _| false)
    else {
        panic!("a server-side event with ack");
    };
    let asker = event.ack.expect("an ack is asked");
    let answer = node
        .server_event_response(&asker, br#""pong-from-B""#, &[])
        .expect("encoded");
    assert_eq!(answer.channel, "socket.io-response#/#");
    assert_eq!(
        answer.payload,
        br#"{"type":6,"requestId":"Vwe2Vy","data":"pong-from-B"}"#.to_vec()
    );
    // The emitter's serverSideEmit has no uid at all.
    let emitted = br#"{"type":6,"data":["from-emitter"]}"#;
    assert!(matches!(
        node.receive("socket.io-request#/#", emitted, |_, _| false),
        Incoming::ServerEvent(RemoteServerEvent { ack: None, .. })
    ));
    // This node's own event coming back is not run again.
    let own = node
        .server_event("/", "sse", b"1", &[])
        .expect("served")
        .expect("encoded");
    assert_eq!(
        node.receive(&own.channel, &own.payload, |_, _| false),
        Incoming::Ignored
    );
    // The legacy SOCKETS question (adapter 6.x/7.x) is still answered, with socket ids.
    let sockets = br#"{"uid":"S8xJQv","requestId":"abc123","type":0,"rooms":["r"]}"#;
    let Incoming::SocketIds(query) = node.receive("socket.io-request#/#", sockets, |_, _| false)
    else {
        panic!("a sockets question");
    };
    assert_eq!(query.rooms, ["r"]);
    let answer = node.socket_ids_response(&query, vec!["pHL8NGQqrfPTeE33AAAB".into()]);
    assert_eq!(
        answer.payload,
        br#"{"requestId":"abc123","sockets":["pHL8NGQqrfPTeE33AAAB"]}"#.to_vec()
    );
}

#[test]
fn this_nodes_questions_are_asked_as_node_asks_them_and_only_their_answers_are_taken() {
    let node = node();
    let uid = node.uid("/").expect("uid").to_owned();
    let asker = Asker {
        shard: 1,
        request: 42,
    };
    let rooms: Vec<Box<str>> = vec!["r".into()];
    let fetch = node
        .ask(
            "/",
            asker,
            &Question::Fetch {
                rooms: &rooms,
                except: &[],
            },
        )
        .expect("served")
        .expect("encoded");
    assert_eq!(fetch.channel, "socket.io-request#/#");
    let request_id = format!("{uid}.5.1.42");
    assert_eq!(
        String::from_utf8(fetch.payload.clone()).expect("JSON"),
        format!(
            r#"{{"uid":"{uid}","requestId":"{request_id}","type":5,"opts":{{"rooms":["r"],"except":[]}}}}"#
        )
    );
    // Another node answers it; this one ignores its own question coming back.
    assert_eq!(
        node.receive(&fetch.channel, &fetch.payload, |_, _| false),
        Incoming::Ignored
    );
    let other = node_with_uid_not(&uid);
    let Incoming::Fetch(query) = other.receive(&fetch.channel, &fetch.payload, |_, _| false) else {
        panic!("a fetch question");
    };
    let socket = RemoteSocket {
        id: "pHL8NGQqrfPTeE33AAAB".into(),
        handshake: rmpv::Value::Map(Vec::new()),
        rooms: vec!["pHL8NGQqrfPTeE33AAAB".into(), "r".into()],
        data: rmpv::Value::Nil,
    };
    let answer = other.fetch_response(&query, vec![socket.clone()]);
    // The answer goes back to the shard and request that asked; other nodes ignore it.
    assert_eq!(
        node.receive(&answer.channel, &answer.payload, |_, _| false),
        Incoming::Answer(Answer {
            nsp: "/".into(),
            asker,
            reply: AnswerReply::Sockets(vec![socket]),
        })
    );
    assert_eq!(
        other.receive(&answer.channel, &answer.payload, |_, _| false),
        Incoming::Ignored
    );
    // Node's answers on this node's own response channel count too.
    let own_channel = format!("socket.io-response#/#{uid}#");
    let rooms_answer = format!(r#"{{"requestId":"{uid}.1.0.7","rooms":["a","b"]}}"#);
    assert_eq!(
        node.receive(&own_channel, rooms_answer.as_bytes(), |_, _| false),
        Incoming::Answer(Answer {
            nsp: "/".into(),
            asker: Asker {
                shard: 0,
                request: 7
            },
            reply: AnswerReply::Rooms(vec!["a".into(), "b".into()]),
        })
    );
    // Node's answers to a broadcast with acks: the count, then each ack (MessagePack).
    let all_rooms = node
        .ask("/", asker, &Question::AllRooms)
        .expect("served")
        .expect("encoded");
    assert_eq!(
        String::from_utf8(all_rooms.payload).expect("JSON"),
        format!(r#"{{"uid":"{uid}","requestId":"{uid}.1.1.42","type":1}}"#)
    );
    let broadcast = LocalBroadcast {
        nsp: "/",
        rooms: &[],
        except: &[],
        volatile: false,
        event: "ask",
        args: b"1",
        attachments: &[],
        offset: None,
    };
    let ask = node
        .ask(
            "/",
            asker,
            &Question::Broadcast {
                broadcast,
                timeout_ms: 2000,
            },
        )
        .expect("served")
        .expect("encoded");
    let Incoming::AckBroadcast(remote) = other.receive(&ask.channel, &ask.payload, |_, _| false)
    else {
        panic!("a broadcast with acks");
    };
    assert_eq!(remote.timeout_ms, Some(2000));
    assert_eq!(
        (remote.event.name.as_str(), remote.event.args.as_slice()),
        ("ask", &b"1"[..])
    );
    let count = other.client_count_response(&remote.query, 2);
    assert_eq!(
        node.receive(&count.channel, &count.payload, |_, _| false),
        Incoming::Answer(Answer {
            nsp: "/".into(),
            asker,
            reply: AnswerReply::Recipients(2),
        })
    );
    let ack = other
        .ack_response(&remote.query, br#"{"from":"c2"}"#, &[])
        .expect("encoded");
    let Incoming::Answer(Answer {
        reply: AnswerReply::Ack(value),
        ..
    }) = node.receive(&ack.channel, &ack.payload, |_, _| false)
    else {
        panic!("an ack");
    };
    assert_eq!(value.json, br#"{"from":"c2"}"#);
    // A server-side emit with ack, answered by the other node's handler.
    let question = Question::ServerEvent {
        event: "sse-ack",
        args: br#""ping""#,
        attachments: &[],
    };
    let emit = node
        .ask("/", asker, &question)
        .expect("served")
        .expect("encoded");
    let Incoming::ServerEvent(event) = other.receive(&emit.channel, &emit.payload, |_, _| false)
    else {
        panic!("a server-side event");
    };
    let answer = other
        .server_event_response(&event.ack.expect("asked"), b"7", &[])
        .expect("encoded");
    assert!(matches!(
        node.receive(&answer.channel, &answer.payload, |_, _| false),
        Incoming::Answer(Answer {
            reply: AnswerReply::ServerAck(DecodedValue { .. }),
            ..
        })
    ));
    // Answers naming another node's uid, a bad request id, or garbage are not taken.
    let stranger = br#"{"requestId":"Xyz123","rooms":["a"]}"#;
    assert_eq!(
        node.receive("socket.io-response#/#", stranger, |_, _| false),
        Incoming::Ignored
    );
    let bad = format!(r#"{{"requestId":"{uid}.1.x.7","rooms":["a"]}}"#);
    assert_eq!(
        node.receive("socket.io-response#/#", bad.as_bytes(), |_, _| false),
        Incoming::Ignored
    );
    assert!(matches!(
        node.receive("socket.io-response#/#", b"\xc1", |_, _| false),
        Incoming::Dropped(_)
    ));
}

/// `io.to(rooms).emit("to-room1", "x")`.
fn to_room1(rooms: &[Box<str>]) -> LocalBroadcast<'_> {
    LocalBroadcast {
        nsp: "/",
        rooms,
        except: &[],
        volatile: false,
        event: "to-room1",
        args: br#""x""#,
        attachments: &[],
        offset: None,
    }
}

fn sharded_node(mode: SubscriptionMode) -> Node {
    let mut node = Node::with_mode("socket.io", Mode::Sharded(mode));
    let subscriptions = node.add_namespace("/").expect("new namespace");
    let uid = node.uid("/").expect("uid").to_owned();
    assert_eq!(uid.len(), 16, "Node's randomId(): 8 bytes in hex");
    assert_eq!(
        subscriptions,
        Subscriptions {
            patterns: vec![],
            channels: vec![],
            sharded: vec!["socket.io#/#".into(), format!("socket.io#/#{uid}#")],
        }
    );
    node
}

#[test]
fn the_sharded_adapters_broadcasts_cross_as_node_sends_them() {
    let node = sharded_node(SubscriptionMode::Dynamic);
    // Captured from a Node sharded server (uid 73db1dad0d7b158c).
    let captured = br#"{"type":3,"data":{"packet":{"type":2,"data":["to-room1","x"]},"opts":{"rooms":["room1"],"except":[],"flags":{}}},"uid":"73db1dad0d7b158c","nsp":"/"}"#;
    let broadcast = delivered(node.receive("socket.io#/#room1#", captured, |_, _| false));
    assert_eq!(broadcast.rooms, ["room1"]);
    assert_eq!(broadcast.event.name, "to-room1");
    assert_eq!(broadcast.event.args, br#""x""#);
    // Binary, as MessagePack.
    let binary = hex("84a47479706503a46461746182a67061636b657482a47479706502a46461746193a362696ec40301020381a66e6573746564c4020405a46f70747383a5726f6f6d7390a665786365707490a5666c61677380a3756964b037336462316461643064376231353863a36e7370a12f");
    let broadcast = delivered(node.receive("socket.io#/#", &binary, |_, _| false));
    assert_eq!(broadcast.event.attachments.len(), 2);
    // What this node publishes: the same shape, on the room's channel (a socket id's goes to
    // the main channel), with SPUBLISH.
    let uid = node.uid("/").expect("uid").to_owned();
    let room1: Vec<Box<str>> = vec!["room1".into()];
    let published = node
        .publish(&to_room1(&room1))
        .expect("served")
        .expect("encoded");
    assert!(published.sharded);
    assert_eq!(published.channel, "socket.io#/#room1#");
    assert_eq!(
        String::from_utf8(published.payload.clone()).expect("JSON"),
        format!(
            r#"{{"type":3,"data":{{"packet":{{"type":2,"data":["to-room1","x"]}},"opts":{{"rooms":["room1"],"except":[],"flags":{{}}}}}},"uid":"{uid}","nsp":"/"}}"#
        )
    );
    // Its own message coming back is ignored; another sharded node delivers it.
    assert_eq!(
        node.receive(&published.channel, &published.payload, |_, _| false),
        Incoming::Ignored
    );
    let socket_room: Vec<Box<str>> = vec!["AAEAAAAAoWx1bm9tYXIA".into()];
    let socket_id = node
        .publish(&to_room1(&socket_room))
        .expect("served")
        .expect("encoded");
    assert_eq!(socket_id.channel, "socket.io#/#");
    // Another namespace's message on this one's channel is dropped.
    let foreign = br#"{"type":3,"data":{"packet":{"type":2,"data":["x"]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"73db1dad0d7b158c","nsp":"/other"}"#;
    assert!(matches!(
        node.receive("socket.io#/#", foreign, |_, _| false),
        Incoming::Dropped(Dropped::Unexpected)
    ));
}

#[test]
fn sharded_questions_are_answered_on_the_askers_own_channel() {
    let node = sharded_node(SubscriptionMode::Static);
    let fetch = br#"{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"d517e04a5950486d"},"uid":"73db1dad0d7b158c","nsp":"/"}"#;
    let Incoming::Fetch(query) = node.receive("socket.io#/#", fetch, |_, _| false) else {
        panic!("a fetch question");
    };
    assert_eq!(query.reply_to.as_deref(), Some("73db1dad0d7b158c"));
    let answer = node.fetch_response(&query, Vec::new());
    assert!(answer.sharded);
    assert_eq!(answer.channel, "socket.io#/#73db1dad0d7b158c#");
    let uid = node.uid("/").expect("uid").to_owned();
    assert_eq!(
        String::from_utf8(answer.payload).expect("JSON"),
        format!(
            r#"{{"type":8,"data":{{"requestId":"d517e04a5950486d","sockets":[]}},"uid":"{uid}","nsp":"/"}}"#
        )
    );
    // A broadcast with acks: the count and each ack to the asker.
    let ask = br#"{"type":3,"data":{"packet":{"type":2,"data":["ask",1]},"requestId":"26e3d4432e234d27","opts":{"rooms":[],"except":[],"flags":{"timeout":2000}}},"uid":"73db1dad0d7b158c","nsp":"/"}"#;
    let Incoming::AckBroadcast(broadcast) = node.receive("socket.io#/#", ask, |_, _| false) else {
        panic!("a broadcast with acks");
    };
    assert_eq!(broadcast.timeout_ms, Some(2000));
    let count = node.client_count_response(&broadcast.query, 1);
    assert_eq!(
        String::from_utf8(count.payload).expect("JSON"),
        format!(
            r#"{{"type":11,"data":{{"requestId":"26e3d4432e234d27","clientCount":1}},"uid":"{uid}","nsp":"/"}}"#
        )
    );
    // A server-side emit with ack.
    let emit = br#"{"type":9,"data":{"requestId":"ae35f04afe742eaf","packet":["sse-ack","ping"]},"uid":"73db1dad0d7b158c","nsp":"/"}"#;
    let Incoming::ServerEvent(event) = node.receive("socket.io#/#", emit, |_, _| false) else {
        panic!("a server-side event");
    };
    let answer = node
        .server_event_response(&event.ack.expect("asked"), br#""pong-from-B""#, &[])
        .expect("encoded");
    assert_eq!(answer.channel, "socket.io#/#73db1dad0d7b158c#");
    assert_eq!(
        String::from_utf8(answer.payload).expect("JSON"),
        format!(
            r#"{{"type":10,"data":{{"requestId":"ae35f04afe742eaf","packet":"pong-from-B"}},"uid":"{uid}","nsp":"/"}}"#
        )
    );
    // Joins and leaves apply; heartbeats are ignored.
    let join = br#"{"type":4,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["room9"]},"uid":"73db1dad0d7b158c","nsp":"/"}"#;
    assert!(matches!(
        node.receive("socket.io#/#", join, |_, _| false),
        Incoming::Operation(RemoteOperation {
            action: RemoteAction::Join(_),
            ..
        })
    ));
    let heartbeat = br#"{"type":2,"uid":"73db1dad0d7b158c","nsp":"/"}"#;
    assert_eq!(
        node.receive("socket.io#/#", heartbeat, |_, _| false),
        Incoming::Ignored
    );
}

#[test]
fn this_sharded_nodes_questions_and_their_answers_round_trip() {
    let node = sharded_node(SubscriptionMode::Dynamic);
    let other = sharded_node(SubscriptionMode::Dynamic);
    let uid = node.uid("/").expect("uid").to_owned();
    let asker = Asker {
        shard: 0,
        request: 3,
    };
    let fetch = node
        .ask(
            "/",
            asker,
            &Question::Fetch {
                rooms: &[],
                except: &[],
            },
        )
        .expect("served")
        .expect("encoded");
    assert!(fetch.sharded);
    assert_eq!(fetch.channel, "socket.io#/#");
    let Incoming::Fetch(query) = other.receive(&fetch.channel, &fetch.payload, |_, _| false) else {
        panic!("a fetch question");
    };
    let answer = other.fetch_response(&query, Vec::new());
    assert_eq!(answer.channel, format!("socket.io#/#{uid}#"));
    assert_eq!(
        node.receive(&answer.channel, &answer.payload, |_, _| false),
        Incoming::Answer(Answer {
            nsp: "/".into(),
            asker,
            reply: AnswerReply::Sockets(vec![]),
        })
    );
    // The sharded adapter has no all-rooms question: nobody is asked.
    assert!(node.ask("/", asker, &Question::AllRooms).is_none());
    // Server count: SHARDNUMSUB of the main channel.
    assert_eq!(
        node.count_channel("/"),
        Some(Channel {
            name: "socket.io#/#".into(),
            sharded: true
        })
    );
    // This node's join is published on the main channel and ignored when it comes back.
    let join = node
        .operation_request("/", &[], &[], RemoteAction::Join(vec!["room9".into()]))
        .expect("served");
    assert_eq!(
        String::from_utf8(join.payload.clone()).expect("JSON"),
        format!(
            r#"{{"type":4,"data":{{"opts":{{"rooms":[],"except":[],"flags":{{}}}},"rooms":["room9"]}},"uid":"{uid}","nsp":"/"}}"#
        )
    );
    assert_eq!(
        node.receive(&join.channel, &join.payload, |_, _| false),
        Incoming::Ignored
    );
}

#[test]
fn room_channels_follow_the_rooms_every_shard_has_members_of() {
    let mut node = sharded_node(SubscriptionMode::Dynamic);
    assert!(node.watches_rooms());
    // Two shards with members of room1: one subscription, dropped with the last member.
    assert_eq!(
        node.room_joined("/", "room1").as_deref(),
        Some("socket.io#/#room1#")
    );
    assert_eq!(node.room_joined("/", "room1"), None);
    assert_eq!(node.room_left("/", "room1"), None);
    assert_eq!(
        node.room_left("/", "room1").as_deref(),
        Some("socket.io#/#room1#")
    );
    assert_eq!(node.room_left("/", "room1"), None);
    // A socket id (20 characters) has no channel in dynamic mode; it has in dynamic-private.
    assert_eq!(node.room_joined("/", "AAEAAAAAoWx1bm9tYXIA"), None);
    let mut private = sharded_node(SubscriptionMode::DynamicPrivate);
    assert_eq!(
        private.room_joined("/", "AAEAAAAAoWx1bm9tYXIA").as_deref(),
        Some("socket.io#/#AAEAAAAAoWx1bm9tYXIA#")
    );
    // Static mode and the classic adapter have no room channels.
    assert!(!sharded_node(SubscriptionMode::Static).watches_rooms());
    assert!(!node_with_uid_not("x").watches_rooms());
    assert_eq!(node.room_joined("/unserved", "room1"), None);
}

#[test]
fn this_nodes_own_broadcast_coming_back_is_not_decoded() {
    let node = node();
    let published = node
        .publish(&to_room1(&[]))
        .expect("served")
        .expect("encoded");
    assert_eq!(
        node.receive(&published.channel, &published.payload, |_, _| true),
        Incoming::Ignored
    );
    // Told apart by its first bytes alone: trailing garbage is never read.
    let mut garbled = published.payload.clone();
    garbled.extend_from_slice(b"\xc1\xc1");
    assert_eq!(
        node.receive(&published.channel, &garbled, |_, _| true),
        Incoming::Ignored
    );
    // Another node reads the same bytes, and finds the garbage.
    let other = node_with_uid_not(node.uid("/").expect("uid"));
    assert!(matches!(
        other.receive(&published.channel, &garbled, |_, _| true),
        Incoming::Dropped(Dropped::Malformed(_))
    ));
    assert!(matches!(
        other.receive(&published.channel, &published.payload, |_, _| true),
        Incoming::Broadcast(_)
    ));
}
