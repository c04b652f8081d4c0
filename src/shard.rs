//! The composition root of one shard: a thread pinned to a core, its monoio runtime, its
//! listener, engine, Socket.IO state, timer task and bus endpoint. Also starts and stops the
//! set of shards.
//!
//! Only this module wires layers together; each layer stays ignorant of the others' internals.

use std::cell::{Cell, OnceCell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bus;
use crate::cluster::{
    self, Answer, AnswerReply, Asker, LocalBroadcast, Node, Question, RemoteAckBroadcast,
    RemoteAction, RemoteQuery, RemoteServerEvent,
};
use crate::codec::adapter::RemoteSocket;
use crate::codec::frame::Frame;
use crate::codec::http::{Cors, Method};
use crate::codec::notepack;
use crate::config::{ClusterConfig, Config, EngineConfig, HttpConfig};
use crate::engine::{self, Admission, Engine, Event};
use crate::gather::{Collector, Finished, Gather, RequestId};
use crate::key::ShardId;
use crate::net::redis::{self, RedisLink, RedisLinkConfig, RedisUrl};
use crate::net::{self, Forward, Host};
use crate::socketio::{
    Args, Ask, Broadcast, BroadcastOperator, Command, EventArgs, HandshakeInfo, LocalTask, Message,
    Namespaces, NodeHooks, Op, OpFuture, Operation, Reply, ServerAck, ServerCountFuture,
    ShardHooks, SocketInfo, SocketIo, SocketIoMsg,
};
use crate::stats::{ClusterCounts, Report, ShardCounts};

/// How long the stats endpoint waits for every shard; a shard that has not answered by then
/// (stopped, or stuck in a handler) is counted as empty.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything that travels between shards.
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// A request for a session this shard owns.
    Net(Forward),
    /// Socket.IO broadcasts, operations and their answers, from another shard or (decoded once
    /// for every shard) from another node of the cluster.
    SocketIo(SocketIoMsg),
    /// Work from outside the shards (`ServerHandle::of`).
    Command(Command),
    /// Report this shard's counts to shard `from` (for the stats endpoint).
    Stats { from: ShardId, request: RequestId },
    /// One shard's counts, the answer to a `Stats` request.
    Counts {
        request: RequestId,
        shard: ShardId,
        counts: ShardCounts,
    },
    /// Stop the shard now (connections are dropped).
    Stop,
    /// Shut down gracefully: stop accepting, send everything queued and close every session,
    /// then stop once every shard is idle (`idle[shard]`: no session, no WebSocket, no HTTP
    /// request unanswered) or at `deadline`, whichever comes first. A shard waits for the
    /// others because the HTTP connections it holds may carry their polling sessions.
    Shutdown {
        deadline: Instant,
        idle: Arc<[AtomicBool]>,
    },
}

/// What an engine endpoint (an HTTP path) serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum App {
    /// Socket.IO with the server's namespaces.
    SocketIo,
    /// A bare Engine.IO server that echoes every message (the conformance suites' `/engine.io/`).
    EngineEcho,
}

/// The bus end the server handle sends through, and which shards still take work from it.
/// One lock for both: a sender checks `running` and pushes under it, and a stopping shard clears
/// its flag under it before it drops what waits in its inbox, so nothing is left unanswered.
pub(crate) struct Control {
    pub(crate) endpoint: bus::Endpoint<ShardMsg>,
    pub(crate) running: Vec<bool>,
}

/// The shared, immutable description of what every shard serves.
pub(crate) struct Plan {
    pub(crate) config: Config,
    pub(crate) endpoints: Vec<(String, App)>,
    pub(crate) namespaces: Arc<Namespaces>,
    /// The session limits every shard's engine shares, when any is set.
    pub(crate) admission: Option<Arc<Admission>>,
    /// The server handle's end of the bus.
    pub(crate) control: Arc<std::sync::Mutex<Control>>,
    /// This process as a node of a Redis cluster, when it is one.
    pub(crate) cluster: Option<Cluster>,
}

/// This process's part in a Redis cluster: the adapter state every shard shares (read-mostly:
/// a namespace's uid) and the one link to Redis.
pub(crate) struct Cluster {
    node: Arc<RwLock<Node>>,
    link: RedisLink,
    /// Messages from Redis this node dropped (malformed, unknown, for no namespace it serves).
    dropped: Arc<AtomicU64>,
}

impl Cluster {
    /// Connects to Redis (in the background: a server down now is retried), serves
    /// `namespaces`, and hands every broadcast other nodes publish to the shards through
    /// `to_shards`, decoded once.
    pub(crate) fn start(
        config: &ClusterConfig,
        namespaces: impl IntoIterator<Item = String>,
        to_shards: bus::Endpoint<ShardMsg>,
        shards: u16,
    ) -> std::io::Result<Cluster> {
        let url = config.redis.as_deref().unwrap_or_default();
        let url = RedisUrl::parse(url)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        let node = Arc::new(RwLock::new(Node::new(config.prefix.clone())));
        let receiving = node.clone();
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        // Answers go out through the link, which exists only once started: the callback finds
        // it here.
        let answering: Arc<OnceLock<RedisLink>> = Arc::default();
        let answer_link = answering.clone();
        let next_shard = AtomicUsize::new(0);
        let deliver = move |incoming: redis::Incoming| {
            // Questions are spread over the shards; each gathers from all of them.
            let to_a_shard = |command| {
                let shard = next_shard.fetch_add(1, Ordering::Relaxed) % usize::from(shards);
                to_shards.send(shard, ShardMsg::Command(command));
            };
            // Retry what waited for a full ring before adding more.
            to_shards.flush_backlog();
            let decided = read(&receiving).receive(&incoming.channel, &incoming.payload, |_, _| {
                // Every shard filters by its own rooms; this thread knows none of them.
                true
            });
            match decided {
                cluster::Incoming::Broadcast(remote) => {
                    let event = remote.event;
                    let args = EventArgs::from_parts(event.args, event.count, event.attachments);
                    let broadcast = Arc::new(Broadcast::remote(
                        &remote.nsp,
                        remote.rooms,
                        remote.except,
                        remote.volatile,
                        &event.name,
                        args,
                    ));
                    for shard in 0..usize::from(shards) {
                        let msg = SocketIoMsg::Broadcast(broadcast.clone());
                        to_shards.send(shard, ShardMsg::SocketIo(msg));
                    }
                }
                cluster::Incoming::Operation(remote) => {
                    let (nsp, rooms, except) = (&remote.nsp, remote.rooms, remote.except);
                    let operation = Arc::new(match remote.action {
                        RemoteAction::Join(join) => Operation::join(nsp, rooms, except, join),
                        RemoteAction::Leave(leave) => Operation::leave(nsp, rooms, except, leave),
                        RemoteAction::Disconnect { close } => {
                            Operation::disconnect(nsp, rooms, except, close)
                        }
                    });
                    for shard in 0..usize::from(shards) {
                        let msg = SocketIoMsg::Apply(operation.clone());
                        to_shards.send(shard, ShardMsg::SocketIo(msg));
                    }
                }
                cluster::Incoming::Fetch(query) => {
                    let Some(link) = answer_link.get() else {
                        return;
                    };
                    let command = answer_command(
                        query,
                        (receiving.clone(), link.clone()),
                        BroadcastOperator::fetch_sockets,
                        |node, query, sockets: Vec<SocketInfo>| {
                            let sockets = sockets.into_iter().map(remote_socket).collect();
                            node.fetch_response(query, sockets)
                        },
                    );
                    to_a_shard(command);
                }
                cluster::Incoming::AllRooms(query) => {
                    let Some(link) = answer_link.get() else {
                        return;
                    };
                    let command = answer_command(
                        query,
                        (receiving.clone(), link.clone()),
                        BroadcastOperator::all_rooms,
                        |node, query, rooms| node.rooms_response(query, rooms),
                    );
                    to_a_shard(command);
                }
                cluster::Incoming::AckBroadcast(broadcast) => {
                    let Some(link) = answer_link.get() else {
                        return;
                    };
                    to_a_shard(ack_command(broadcast, (receiving.clone(), link.clone())));
                }
                cluster::Incoming::SocketIds(query) => {
                    let Some(link) = answer_link.get() else {
                        return;
                    };
                    let command = answer_command(
                        query,
                        (receiving.clone(), link.clone()),
                        BroadcastOperator::fetch_sockets,
                        |node, query, sockets: Vec<SocketInfo>| {
                            let ids = sockets.into_iter().map(|socket| socket.id).collect();
                            node.socket_ids_response(query, ids)
                        },
                    );
                    to_a_shard(command);
                }
                cluster::Incoming::ServerEvent(event) => {
                    let Some(link) = answer_link.get() else {
                        return;
                    };
                    to_a_shard(server_event_command(
                        event,
                        (receiving.clone(), link.clone()),
                    ));
                }
                cluster::Incoming::Answer(answer) => {
                    let shard = usize::from(answer.asker.shard);
                    match reply_of(answer) {
                        Some((request, reply)) if shard < usize::from(shards) => {
                            let msg = SocketIoMsg::Reply { request, reply };
                            to_shards.send(shard, ShardMsg::SocketIo(msg));
                        }
                        _ => {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                cluster::Incoming::Ignored => {}
                cluster::Incoming::Dropped(why) => {
                    counted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(channel = %incoming.channel, ?why, "a message from Redis was dropped");
                }
            }
        };
        let link = RedisLink::start(RedisLinkConfig::new(url), deliver)?;
        let _ = answering.set(link.clone());
        for nsp in namespaces {
            if let Some(subscriptions) = write(&node).add_namespace(&nsp) {
                link.psubscribe(subscriptions.patterns);
                link.subscribe(subscriptions.channels);
            }
        }
        Ok(Cluster {
            node,
            link,
            dropped,
        })
    }

    /// The adapter's state for the stats endpoint.
    fn counts(&self) -> ClusterCounts {
        let link = self.link.counts();
        ClusterCounts {
            connected: link.connected,
            reconnects: link.reconnects,
            published: link.published,
            publish_dropped: link.publish_dropped,
            publish_failed: link.publish_failed,
            received: link.received,
            dropped: link.received_dropped + self.dropped.load(Ordering::Relaxed),
            queued: link.queued,
        }
    }

    /// How a shard reaches the other nodes: it publishes its broadcasts (encoded on the shard,
    /// handed to the link's bounded queue, never waiting for Redis), and serves the
    /// namespaces it creates (subscribing to their channels once, for the whole process).
    fn hooks(&self, shard: ShardId, timeout: Duration) -> NodeHooks {
        let (node, link) = (self.node.clone(), self.link.clone());
        let serve = move |nsp: &str| {
            if read(&node).uid(nsp).is_some() {
                return;
            }
            if let Some(subscriptions) = write(&node).add_namespace(nsp) {
                link.psubscribe(subscriptions.patterns);
                link.subscribe(subscriptions.channels);
            }
        };
        let (node, link) = (self.node.clone(), self.link.clone());
        let request = move |operation: &Operation| {
            let (nsp, rooms, except) = operation.target();
            let names = |rooms: &[Box<str>]| rooms.iter().map(|r| r.to_string()).collect();
            let action = match operation.op() {
                Op::Join(join) => RemoteAction::Join(names(join)),
                Op::Leave(leave) => RemoteAction::Leave(names(leave)),
                Op::Disconnect { close } => RemoteAction::Disconnect { close: *close },
                // Questions go through `ask`.
                Op::FetchSockets | Op::AllRooms => return,
            };
            if let Some(publish) = read(&node).operation_request(nsp, rooms, except, action) {
                let _ = link.publish(publish.channel, Bytes::from(publish.payload));
            }
        };
        let (node, link) = (self.node.clone(), self.link.clone());
        let count = move |nsp: &str| -> ServerCountFuture {
            // Node counts the subscribers of the namespace's request channel.
            let channel = read(&node).request_channel(nsp);
            let asked = channel.map(|channel| link.server_count(channel));
            Box::pin(async move {
                let count = asked?.await.ok()?;
                Some(usize::try_from(count).unwrap_or(usize::MAX).max(1))
            })
        };
        let (node, link) = (self.node.clone(), self.link.clone());
        let ask = move |question: &Ask<'_>, request: RequestId| -> ServerCountFuture {
            let asker = Asker {
                shard: shard.index() as u16,
                request: request.0,
            };
            ask_nodes(&node, &link, question, asker)
        };
        let (node, link) = (self.node.clone(), self.link.clone());
        let server_event = move |nsp: &str, event: &str, args: &Args| {
            let published =
                read(&node).server_event(nsp, event, args.json_bytes(), args.attachments());
            match published {
                Some(Ok(publish)) => {
                    let _ = link.publish(publish.channel, Bytes::from(publish.payload));
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "a server-side event could not be sent")
                }
                None => {}
            }
        };
        NodeHooks {
            publish: self.publisher(),
            serve: Box::new(serve),
            request: Box::new(request),
            count: Box::new(count),
            ask: Box::new(ask),
            server_event: Box::new(server_event),
            timeout,
        }
    }

    fn publisher(&self) -> Box<dyn Fn(&Broadcast)> {
        let (node, link) = (self.node.clone(), self.link.clone());
        Box::new(move |broadcast: &Broadcast| {
            let Some((event, args)) = broadcast.event() else {
                return;
            };
            let local = LocalBroadcast {
                nsp: broadcast.nsp(),
                rooms: broadcast.rooms(),
                except: broadcast.except(),
                volatile: broadcast.is_volatile(),
                event,
                args: args.json_bytes(),
                attachments: args.attachments(),
            };
            match read(&node).publish(&local) {
                // A full queue is counted by the link (its drop policy).
                Some(Ok(publish)) => {
                    let _ = link.publish(publish.channel, Bytes::from(publish.payload));
                }
                Some(Err(error)) => tracing::debug!(%error, "a broadcast could not be published"),
                // A namespace this node does not serve: none, every shard serves the namespaces
                // it creates first.
                None => {}
            }
        })
    }
}

/// Asks the other nodes `question` for `asker`: counts them first (Node's `PUBSUB NUMSUB` of
/// the request channel, this process among them), then publishes the request if any other
/// node is there to answer. Resolves to how many were asked; `None` when Redis can't be
/// asked or the request not queued (then no answer would come).
fn ask_nodes(
    node: &RwLock<Node>,
    link: &RedisLink,
    question: &Ask<'_>,
    asker: Asker,
) -> ServerCountFuture {
    let nobody = || -> ServerCountFuture { Box::pin(std::future::ready(Some(0))) };
    let (nsp, question) = match *question {
        Ask::Operation(operation) => {
            let (nsp, rooms, except) = operation.target();
            let question = match operation.op() {
                Op::FetchSockets => Question::Fetch { rooms, except },
                Op::AllRooms => Question::AllRooms,
                _ => return nobody(),
            };
            (nsp, question)
        }
        Ask::Broadcast(broadcast, timeout) => {
            let Some((event, args)) = broadcast.event() else {
                return nobody();
            };
            let nsp = broadcast.nsp();
            let question = Question::Broadcast {
                broadcast: LocalBroadcast {
                    nsp,
                    rooms: broadcast.rooms(),
                    except: broadcast.except(),
                    volatile: broadcast.is_volatile(),
                    event,
                    args: args.json_bytes(),
                    attachments: args.attachments(),
                },
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            };
            (nsp, question)
        }
        Ask::ServerEvent { nsp, event, args } => {
            let question = Question::ServerEvent {
                event,
                args: args.json_bytes(),
                attachments: args.attachments(),
            };
            (nsp, question)
        }
    };
    let (publish, channel) = {
        let node = read(node);
        match (node.ask(nsp, asker, &question), node.request_channel(nsp)) {
            (Some(Ok(publish)), Some(channel)) => (publish, channel),
            (Some(Err(error)), _) => {
                tracing::debug!(%error, "a question for the other nodes could not be encoded");
                return nobody();
            }
            // A namespace this node does not serve (yet): no node can be asked about it.
            _ => return nobody(),
        }
    };
    let counted = link.server_count(channel);
    let link = link.clone();
    Box::pin(async move {
        let subscribers = counted.await.ok()?;
        let others = usize::try_from(subscribers)
            .unwrap_or(usize::MAX)
            .saturating_sub(1);
        if others > 0 {
            link.publish(publish.channel, Bytes::from(publish.payload))
                .ok()?;
        }
        Some(others)
    })
}

/// Another node's answer as the asking shard's gather takes it, with the request it answers;
/// `None` if it can't be read (an ack that is not JSON).
fn reply_of(answer: Answer) -> Option<(RequestId, Reply)> {
    let message =
        |value: notepack::DecodedValue| Message::from_args_json(&value.json, value.attachments);
    let reply = match answer.reply {
        AnswerReply::Sockets(sockets) => {
            let nsp = &answer.nsp;
            let sockets = sockets.into_iter().filter_map(|s| socket_info(nsp, s));
            Reply::Sockets(sockets.collect())
        }
        AnswerReply::Rooms(rooms) => Reply::Rooms(rooms),
        AnswerReply::Recipients(count) => {
            Reply::Recipients(usize::try_from(count).unwrap_or(usize::MAX))
        }
        AnswerReply::Ack(value) | AnswerReply::ServerAck(value) => Reply::Ack(message(value)?),
    };
    Some((RequestId(answer.asker.request), reply))
}

/// A socket of another node as `fetch_sockets` describes it: what Node's `RemoteSocket`
/// carries (the handshake's headers and times are not kept); `None` if its fields are not
/// what a Socket.IO node sends.
fn socket_info(nsp: &str, socket: RemoteSocket) -> Option<SocketInfo> {
    let json = |value| {
        let decoded = notepack::decode_value(value).ok()?;
        serde_json::from_slice::<serde_json::Value>(&decoded.json).ok()
    };
    let handshake = json(socket.handshake)?;
    let query = match handshake.get("query") {
        Some(serde_json::Value::Object(pairs)) => pairs
            .iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect::<Vec<_>>()
            .join("&"),
        _ => String::new(),
    };
    let address = handshake
        .get("address")
        .and_then(serde_json::Value::as_str)
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 0));
    // socket.io-client 2.x speaks Engine.IO 3 and Socket.IO protocol 4.
    let old_client = handshake.pointer("/query/EIO").and_then(|v| v.as_str()) == Some("3");
    Some(SocketInfo {
        id: socket.id,
        nsp: nsp.to_owned(),
        rooms: socket.rooms,
        handshake: HandshakeInfo {
            query,
            address,
            auth: handshake
                .get("auth")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({})),
            protocol: if old_client { 4 } else { 5 },
        },
        data: json(socket.data).unwrap_or(serde_json::Value::Null),
        shard: None,
    })
}

/// Work for a shard that runs another node's server-side event (one shard of this process,
/// which is one server): the namespace's handler, and with a request id its ack published
/// to the asker.
fn server_event_command(
    remote: RemoteServerEvent,
    (node, link): (Arc<RwLock<Node>>, RedisLink),
) -> Command {
    Command::new(move |io| {
        let RemoteServerEvent {
            nsp,
            request_id,
            event,
        } = remote;
        let Some(message) = Message::from_args_json(&event.args, event.attachments) else {
            return;
        };
        let ack = request_id.map(|request_id| {
            let nsp = nsp.clone();
            ServerAck::new(move |args: &Args| {
                let attachments = args.attachments().to_vec();
                let sent = Message::from_args_json(args.json_bytes(), attachments);
                let first = sent.as_ref().and_then(|m| m.raw(0)).unwrap_or(b"null");
                let attachments = args.attachments();
                match read(&node).server_event_response(&nsp, &request_id, first, attachments) {
                    Ok(answer) => {
                        let _ = link.publish(answer.channel, Bytes::from(answer.payload));
                    }
                    Err(error) => tracing::debug!(%error, "a server-side ack could not be sent"),
                }
            })
        });
        io.server_event(&nsp, &event.name, message, ack);
    })
}

/// How long this process gathers its own shards' part of another node's question: less than
/// the asker's own timeout (Node's default, 5 s), so a late answer is not wasted.
const ANSWER_WITHIN: Duration = Duration::from_secs(4);

/// Work for a shard that answers another node's question: gathers this process's part with
/// `gather` (every shard, within [`ANSWER_WITHIN`]), then publishes what `answer` makes of it.
/// Not gathered in time, it answers nothing, and the asker times out, as it does when a Node
/// node fails to answer.
fn answer_command<T: Send + 'static>(
    query: RemoteQuery,
    (node, link): (Arc<RwLock<Node>>, RedisLink),
    gather: fn(BroadcastOperator) -> OpFuture<T>,
    answer: impl FnOnce(&Node, &RemoteQuery, T) -> cluster::Publish + Send + 'static,
) -> Command {
    Command::new(move |io| {
        let gathered = gather(local_selection(io, &query));
        io.spawn(Box::pin(async move {
            let Ok(part) = gathered.await else {
                return;
            };
            let answer = answer(&read(&node), &query, part);
            let _ = link.publish(answer.channel, Bytes::from(answer.payload));
        }));
    })
}

/// Work for a shard that delivers another node's broadcast-with-acks to this process's sockets
/// and reports to the asker: first how many got it, then each ack's first argument (as a Node
/// node does). Reported once every recipient here answered; one that did not by the asker's
/// timeout makes the asker time out anyway, so nothing is sent then.
fn ack_command(
    broadcast: RemoteAckBroadcast,
    (node, link): (Arc<RwLock<Node>>, RedisLink),
) -> Command {
    Command::new(move |io| {
        let RemoteAckBroadcast {
            query,
            volatile,
            event,
            timeout_ms,
        } = broadcast;
        let timeout = timeout_ms.map_or(ANSWER_WITHIN, Duration::from_millis);
        let mut operator = local_selection(io, &query).timeout(timeout);
        if volatile {
            operator = operator.volatile();
        }
        let args = EventArgs::from_parts(event.args, event.count, event.attachments);
        operator.emit_with_ack(&event.name, &args, move |acks| {
            let Ok(acks) = acks else {
                return;
            };
            let node = read(&node);
            let count = node.client_count_response(&query, acks.len());
            let _ = link.publish(count.channel, Bytes::from(count.payload));
            for ack in acks {
                let first = ack.raw(0).unwrap_or(b"null");
                match node.ack_response(&query, first, ack.attachments()) {
                    Ok(answer) => {
                        let _ = link.publish(answer.channel, Bytes::from(answer.payload));
                    }
                    Err(error) => tracing::debug!(%error, "an ack could not be published"),
                }
            }
        });
    })
}

/// This process's sockets (every shard, not other nodes) that another node's question selects.
fn local_selection(io: &Rc<SocketIo>, query: &RemoteQuery) -> BroadcastOperator {
    let mut operator = io.of(&query.nsp).local().timeout(ANSWER_WITHIN);
    for room in &query.rooms {
        operator = operator.to(room);
    }
    for room in &query.except {
        operator = operator.except(room);
    }
    operator
}

/// A socket as a Node server's `fetchSockets()` describes it (`RemoteSocket`): id, rooms,
/// data, and the handshake fields ringcast knows (the headers and times it does not keep are
/// empty).
fn remote_socket(socket: SocketInfo) -> RemoteSocket {
    let query: serde_json::Map<String, serde_json::Value> = socket
        .handshake
        .query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_owned(), serde_json::Value::from(value))
        })
        .collect();
    let handshake = serde_json::json!({
        "headers": {},
        "time": "",
        "address": socket.handshake.address.map(|a| a.ip().to_string()).unwrap_or_default(),
        "xdomain": false,
        "secure": false,
        "issued": 0,
        "url": "",
        "query": query,
        "auth": socket.handshake.auth,
    });
    RemoteSocket {
        id: socket.id,
        handshake: to_msgpack_value(&handshake),
        rooms: socket.rooms,
        data: to_msgpack_value(&socket.data),
    }
}

/// A JSON value as the adapter's messages carry it (nil if it can't be converted).
fn to_msgpack_value(value: &serde_json::Value) -> rmpv::Value {
    let json = serde_json::to_vec(value).unwrap_or_default();
    notepack::json_to_value(&json, &[]).unwrap_or(rmpv::Value::Nil)
}

fn read(node: &RwLock<Node>) -> std::sync::RwLockReadGuard<'_, Node> {
    // Nothing half-written can be left by a panic: each write is one insertion.
    node.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(node: &RwLock<Node>) -> std::sync::RwLockWriteGuard<'_, Node> {
    node.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One shard's state, shared by its tasks through `Rc`.
pub(crate) struct Shard {
    id: ShardId,
    shards: u16,
    plan: Arc<Plan>,
    engine: Rc<RefCell<Engine>>,
    io: Rc<SocketIo>,
    bus: Rc<bus::Endpoint<ShardMsg>>,
    cors: Cors,
    pumping: Cell<bool>,
    stopped: Cell<bool>,
    /// Set when a graceful shutdown began: its deadline. The accept loop waits on it.
    draining: Cell<Option<Instant>>,
    /// HTTP requests read and not yet answered (see `Host::requests_in_flight`).
    requests_in_flight: Cell<usize>,
    /// Requests this shard sent to every shard (the stats endpoint's), waiting for answers.
    requests: RefCell<Gather<(ShardId, ShardCounts)>>,
    /// Whether the memory grown for the last crowd was given back since the shard went idle.
    idle_memory_released: Cell<bool>,
    /// The accept loop's waker while it waits for a shutdown to begin.
    drain_waker: RefCell<Option<Waker>>,
    /// The instant the timer task sleeps until, and how to wake it sooner.
    timer_at: Cell<Option<Instant>>,
    timer_kick: Cell<bool>,
    timer_waker: RefCell<Option<Waker>>,
}

impl Shard {
    fn next_deadline(&self) -> Option<Instant> {
        let engine = self.engine.borrow_mut().next_deadline();
        let io = self.io.next_deadline();
        let requests = self.requests.borrow().next_deadline();
        let backlog = self
            .bus
            .has_backlog()
            .then(|| Instant::now() + Duration::from_millis(1));
        [engine, io, requests, backlog].into_iter().flatten().min()
    }

    fn handle_event(&self, event: Event) {
        let key = match &event {
            Event::Open(key)
            | Event::Message(key, _)
            | Event::Binary(key, _)
            | Event::Upgraded(key) => Some(*key),
            Event::Close(..) => None,
        };
        let endpoint = key.and_then(|key| self.engine.borrow().endpoint(key));
        let app = endpoint
            .and_then(|e| self.plan.endpoints.get(e as usize))
            .map(|(_, app)| app);
        match (app, event) {
            (Some(App::EngineEcho), Event::Message(key, text)) => {
                let mut packet = Vec::with_capacity(text.len() + 1);
                packet.push(b'4');
                packet.extend_from_slice(&text);
                let _ = self
                    .engine
                    .borrow_mut()
                    .send(key, &Frame::text(&packet), false);
            }
            (Some(App::EngineEcho), Event::Binary(key, data)) => {
                let _ = self
                    .engine
                    .borrow_mut()
                    .send(key, &Frame::binary(&data), false);
            }
            (Some(App::EngineEcho), Event::Open(_)) => {}
            (_, event) => self.io.handle_event(event),
        }
    }

    fn wake_timer_if_needed(&self) {
        let Some(next) = self.next_deadline() else {
            return;
        };
        if self.timer_at.get().is_none_or(|at| next < at) {
            self.timer_kick.set(true);
            if let Some(waker) = self.timer_waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    fn handle_message(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Net(Forward::Poll {
                sid,
                request,
                reply,
            }) => net::handle_poll(&**self, sid, request, reply),
            ShardMsg::Net(Forward::WebSocket { fd, upgrade }) => {
                net::adopt_websocket(self.clone(), fd, upgrade)
            }
            ShardMsg::SocketIo(msg) => {
                let io = &self.io;
                io.set_now(Instant::now());
                io.handle_peer_message(msg);
                self.pump();
            }
            ShardMsg::Command(command) => {
                let io = &self.io;
                io.set_now(Instant::now());
                io.run_command(command);
                self.pump();
            }
            ShardMsg::Stats { from, request } => {
                let counts = self.counts();
                let shard = self.id;
                let answer = ShardMsg::Counts {
                    request,
                    shard,
                    counts,
                };
                self.bus.send(from.index(), answer);
            }
            ShardMsg::Counts {
                request,
                shard,
                counts,
            } => {
                let done = self.requests.borrow_mut().answer(request, (shard, counts));
                done.into_iter().for_each(Finished::run);
            }
            ShardMsg::Stop => self.stopped.set(true),
            ShardMsg::Shutdown { deadline, idle } => self.begin_shutdown(deadline, idle),
        }
    }

    /// Once the last session is gone, gives back what the crowd grew (tables, pools, the
    /// allocator's free pages). Checked after every pump; does the work once per idle spell.
    fn release_memory_when_idle(&self) {
        let idle = self.engine.borrow().is_empty();
        if !idle {
            self.idle_memory_released.set(false);
            return;
        }
        if self.idle_memory_released.get() {
            return;
        }
        let released =
            self.engine.borrow_mut().release_idle_memory() && self.io.release_idle_memory();
        if released {
            net::return_free_memory();
            self.idle_memory_released.set(true);
        }
    }

    fn counts(&self) -> ShardCounts {
        let engine = self.engine.borrow().counts();
        ShardCounts::new(engine, self.io.counts(), self.requests_in_flight.get())
    }

    fn begin_shutdown(self: &Rc<Self>, deadline: Instant, idle: Arc<[AtomicBool]>) {
        if self.draining.replace(Some(deadline)).is_some() {
            return;
        }
        if let Some(waker) = self.drain_waker.borrow_mut().take() {
            waker.wake();
        }
        self.engine.borrow_mut().drain();
        self.pump();
        monoio::spawn(stop_when_drained(self.clone(), deadline, idle));
    }

    /// Completes once a graceful shutdown has begun.
    async fn shutdown_begun(&self) {
        poll_fn(|cx| {
            if self.draining.get().is_some() {
                return Poll::Ready(());
            }
            *self.drain_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl Host for Shard {
    fn engine(&self) -> &RefCell<Engine> {
        &self.engine
    }

    fn engine_config(&self) -> &EngineConfig {
        &self.plan.config.engine
    }

    fn http_config(&self) -> &HttpConfig {
        &self.plan.config.http
    }

    fn cors(&self) -> &Cors {
        &self.cors
    }

    fn shard(&self) -> ShardId {
        self.id
    }

    fn shards(&self) -> u16 {
        self.shards
    }

    fn endpoint(&self, path: &str) -> Option<u8> {
        self.plan
            .endpoints
            .iter()
            .position(|(p, _)| p == path || p.strip_suffix('/') == Some(path))
            .map(|i| i as u8)
    }

    fn pump(&self) {
        // Handlers may close sessions, which queues more events: one loop drains them all.
        if self.pumping.replace(true) {
            return;
        }
        let now = Instant::now();
        self.io.set_now(now);
        engine::pump(&self.engine, |event| self.handle_event(event));
        self.pumping.set(false);
        self.wake_timer_if_needed();
        self.release_memory_when_idle();
    }

    fn requests_in_flight(&self) -> &Cell<usize> {
        &self.requests_in_flight
    }

    fn forward(&self, to: ShardId, forward: Forward) {
        self.bus.send(to.index(), ShardMsg::Net(forward));
    }
}

impl Shard {
    /// What the main listener answers besides Engine.IO: the routes this shard registers.
    fn router(self: &Rc<Self>) -> net::Router {
        let mut router = net::Router::with_engine_io();
        if let Some(path) = &self.plan.config.stats_path {
            let shard = self.clone();
            router.route(Method::Get, path, move |_: net::Request| shard.stats());
        }
        router
    }

    /// The stats route: every shard's counts (asked over the bus, this one included) and
    /// their sum, as JSON.
    fn stats(&self) -> impl std::future::Future<Output = net::Response> + 'static {
        let (sender, receiver) = futures_channel::oneshot::channel();
        let collector = Box::new(StatsCollector {
            shards: vec![ShardCounts::default(); self.shards as usize],
            done: sender,
        });
        let deadline = Instant::now() + STATS_TIMEOUT;
        let (request, _) =
            self.requests
                .borrow_mut()
                .start(self.shards as usize, deadline, collector);
        for shard in 0..self.shards as usize {
            let from = self.id;
            self.bus.send(shard, ShardMsg::Stats { from, request });
        }
        self.wake_timer_if_needed();
        let cluster = self.plan.cluster.as_ref().map(Cluster::counts);
        async move {
            // The request always finishes (answered, or at its deadline): a dropped sender
            // means the shard itself stopped.
            let shards = receiver.await.unwrap_or_default();
            let report = Report::new(shards);
            let report = match cluster {
                Some(counts) => report.with_cluster(counts),
                None => report,
            };
            net::Response::json(report.to_json())
        }
    }
}

/// Gathers every shard's counts for the stats endpoint; a shard that does not answer in time
/// counts as empty.
struct StatsCollector {
    shards: Vec<ShardCounts>,
    done: futures_channel::oneshot::Sender<Vec<ShardCounts>>,
}

impl Collector<(ShardId, ShardCounts)> for StatsCollector {
    fn add(&mut self, (shard, counts): (ShardId, ShardCounts)) -> usize {
        if let Some(slot) = self.shards.get_mut(shard.index()) {
            *slot = counts;
        }
        0
    }

    fn finish(self: Box<Self>, _complete: bool) {
        // The route may have gone with its connection: nobody to answer.
        let _ = self.done.send(self.shards);
    }
}

/// Runs shard `id` on the current thread until stopped.
pub(crate) fn run(
    id: ShardId,
    plan: Arc<Plan>,
    listener: std::net::TcpListener,
    bus: bus::Endpoint<ShardMsg>,
) -> std::io::Result<()> {
    let epoll = plan.config.force_epoll;
    let shard = serve(id, plan, listener, bus);
    if epoll {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()?;
        runtime.block_on(shard)
    } else {
        // io_uring where the kernel allows it, epoll otherwise.
        let cooperative = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .uring_builder(cooperative_uring())
            .enable_timer()
            .build();
        let mut runtime = match cooperative {
            Ok(runtime) => runtime,
            // Kernels before 6.0 lack these flags: take the defaults.
            Err(_) => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()?,
        };
        runtime.block_on(shard)
    }
}

/// io_uring settings for a shard's ring: only the shard's thread submits, and completions
/// are handed over when that thread next enters the kernel instead of by an interrupt that
/// preempts it. A busy shard enters the kernel every turn anyway; without this, each
/// completion a peer's traffic triggers may cost an IPI (on a VM, an exit).
fn cooperative_uring() -> io_uring::Builder {
    let mut builder = io_uring::IoUring::builder();
    builder.setup_coop_taskrun().setup_single_issuer();
    builder
}

/// Everything one shard runs, until it is told to stop.
async fn serve(
    id: ShardId,
    plan: Arc<Plan>,
    listener: std::net::TcpListener,
    bus: bus::Endpoint<ShardMsg>,
) -> std::io::Result<()> {
    let shards = plan.config.cores as u16;
    let bus = Rc::new(bus);
    let mut engine = Engine::new(id, plan.config.engine.clone());
    if let Some(admission) = &plan.admission {
        engine = engine.with_admission(admission.clone());
    }
    let engine = Rc::new(RefCell::new(engine));
    let peers_bus = bus.clone();
    // Tasks Socket.IO hands over (asynchronous middleware, tasks of handlers) run here, and
    // the shard pumps whatever each step produced; the shard is known only once built, hence
    // the cell.
    let spawner_shard: Rc<OnceCell<Weak<Shard>>> = Rc::default();
    let spawner = {
        let cell = spawner_shard.clone();
        Box::new(move |mut task: LocalTask| {
            let cell = cell.clone();
            // The shard pumps after every step of the task, not only its last: what a step
            // sent must go out (polling answers are flushed by the pump), and a deadline it
            // set (an operation it started) must reach the timer, while it waits.
            monoio::spawn(poll_fn(move |cx| {
                let shard = cell.get().and_then(Weak::upgrade);
                if let Some(shard) = &shard {
                    // A step may start an operation: its deadline counts from now.
                    shard.io.set_now(Instant::now());
                }
                let step = task.as_mut().poll(cx);
                if let Some(shard) = shard {
                    shard.pump();
                }
                step
            }));
        })
    };
    let io = SocketIo::new(
        id,
        shards,
        engine.clone(),
        plan.config.socketio.clone(),
        plan.namespaces.clone(),
        ShardHooks {
            peers: Box::new(move |to, msg| peers_bus.send(to.index(), ShardMsg::SocketIo(msg))),
            spawn: spawner,
            nodes: plan
                .cluster
                .as_ref()
                .map(|cluster| cluster.hooks(id, plan.config.cluster.requests_timeout)),
        },
        Instant::now(),
    );
    let shard = Rc::new(Shard {
        id,
        shards,
        cors: plan.config.cors.to_cors(),
        engine,
        io,
        bus: bus.clone(),
        plan: plan.clone(),
        pumping: Cell::new(false),
        stopped: Cell::new(false),
        draining: Cell::new(None),
        requests_in_flight: Cell::new(0),
        requests: RefCell::default(),
        idle_memory_released: Cell::new(true),
        drain_waker: RefCell::new(None),
        timer_at: Cell::new(None),
        timer_kick: Cell::new(false),
        timer_waker: RefCell::new(None),
    });
    let _ = spawner_shard.set(Rc::downgrade(&shard));
    let listener = monoio::net::TcpListener::from_std(listener)?;
    let stop_accepting = {
        let shard = shard.clone();
        async move { shard.shutdown_begun().await }
    };
    let router = Rc::new(shard.router());
    monoio::spawn(net::accept_loop(
        shard.clone(),
        router,
        listener,
        stop_accepting,
    ));
    monoio::spawn(timer_loop(shard.clone()));
    monoio::spawn(deferred_loop(shard.clone()));
    let mut batch = Vec::new();
    while !shard.stopped.get() {
        bus.recv_batch(&mut batch).await;
        for msg in batch.drain(..) {
            shard.handle_message(msg);
        }
    }
    // No more work from the handle; what waits is dropped, so its callers learn the server
    // stopped instead of waiting forever.
    let last = {
        let mut control = plan
            .control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(running) = control.running.get_mut(id.index()) {
            *running = false;
        }
        control.running.iter().all(|running| !running)
    };
    // The last shard to stop stops the process's link to Redis (its thread would go on).
    if let (true, Some(cluster)) = (last, &plan.cluster) {
        cluster.link.stop();
    }
    batch.clear();
    bus.drain(&mut batch);
    drop(batch);
    Ok(())
}

/// Sends the broadcasts the engine holds ([`Engine::send_many`]) once per turn of the
/// runtime. Woken by the first one held, this task runs after the tasks already due in the
/// turn (the runtime runs woken tasks in order), so every publish read in the turn joins the
/// run before any recipient's writer runs.
async fn deferred_loop(shard: Rc<Shard>) {
    loop {
        poll_fn(|cx| shard.engine.borrow_mut().poll_deferred(cx)).await;
        shard.engine.borrow_mut().send_deferred();
        shard.pump();
    }
}

/// Stops the shard once every shard is idle (sessions and WebSockets finished, their queues
/// written and closes sent, no HTTP request unanswered) or at `deadline`. Checked every few
/// milliseconds: shutdown is rare and not timed finely. A request that reaches a shard after
/// all were idle can only be for a session that no longer exists.
async fn stop_when_drained(shard: Rc<Shard>, deadline: Instant, idle: Arc<[AtomicBool]>) {
    loop {
        let now_idle = shard.engine.borrow().is_empty() && shard.requests_in_flight.get() == 0;
        idle[shard.id.index()].store(now_idle, Ordering::Release);
        let all_idle = idle.iter().all(|shard| shard.load(Ordering::Acquire));
        if all_idle || Instant::now() >= deadline {
            shard.bus.send(shard.id.index(), ShardMsg::Stop);
            return;
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Fires the engine's and Socket.IO's deadlines, sleeping until the earliest one.
async fn timer_loop(shard: Rc<Shard>) {
    loop {
        let next = shard.next_deadline();
        shard.timer_at.set(next);
        let sleep = async {
            match next {
                Some(at) => monoio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        // Returns when a nearer deadline appears.
        let woken = poll_fn(|cx| {
            if shard.timer_kick.replace(false) {
                return Poll::Ready(());
            }
            *shard.timer_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        monoio::select! {
            _ = sleep => {},
            _ = woken => {},
        }
        shard.timer_waker.borrow_mut().take();
        let now = Instant::now();
        shard.bus.flush_backlog();
        shard.engine.borrow_mut().handle_timeouts(now);
        let expired = shard.requests.borrow_mut().expire(now);
        expired.into_iter().for_each(Finished::run);
        let io = &shard.io;
        io.set_now(now);
        io.handle_timeouts(now);
        shard.pump();
    }
}

/// Fails with `AddrInUse` if anything already listens on `addr`. SO_REUSEPORT would let a
/// second server process share the port and silently take half of its connections; a plain
/// bind (no SO_REUSEPORT) refuses to share with it, as Node's `listen` would.
pub(crate) fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    // Connections of an earlier run in TIME_WAIT must not count as "in use".
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Binds one SO_REUSEPORT listener per shard on the same address; the kernel spreads new
/// connections across them.
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    (0..count)
        .map(|_| {
            let domain = socket2::Domain::for_address(addr);
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&addr.into())?;
            socket.listen(4096)?;
            // The epoll driver needs non-blocking sockets (io_uring does not mind).
            socket.set_nonblocking(true)?;
            Ok(socket.into())
        })
        .collect()
}
