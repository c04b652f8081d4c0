//! This process as one node of a Redis cluster, wired: the `cluster::Node` every shard shares,
//! the one `RedisLink`, what the link's thread does with each message from Redis (decoded once,
//! handed to the shards over the bus), and the hooks through which a shard publishes, asks and
//! answers. Nothing here blocks a shard: publishes go to the link's bounded queue, answers come
//! back as bus messages.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;

use crate::bus;
use crate::cluster::{
    self, Answer, AnswerReply, Asker, LocalBroadcast, Mode, Node, Question, RemoteAckBroadcast,
    RemoteAction, RemoteQuery, RemoteServerEvent,
};
use crate::codec::adapter::RemoteSocket;
use crate::codec::adapter::SubscriptionMode;
use crate::codec::frame;
use crate::codec::notepack;
use crate::config::{self, ClusterConfig, RecoveryConfig, RedisMode};
use crate::gather::RequestId;
use crate::key::ShardId;
use crate::net::redis::{self, ClusterSeeds, RedisLink, RedisLinkConfig, RedisUrl};
use crate::socketio::{
    recovery_offset, Args, Ask, Broadcast, BroadcastOperator, Command, EventArgs, HandshakeInfo,
    Message, NodeHooks, Op, OpFuture, Operation, Reply, ServerAck, ServerCountFuture,
    SharedRecovery, SocketInfo, SocketIo, SocketIoMsg,
};
use crate::stats::ClusterCounts;

use super::recovery::{self, RedisRecovery};
use super::ShardMsg;

/// This process's part in a Redis cluster: the adapter state every shard shares (read-mostly:
/// a namespace's uid) and the one link to Redis.
pub(crate) struct Cluster {
    node: Arc<RwLock<Node>>,
    link: RedisLink,
    /// Connection state recovery in Redis, when recovery is on.
    recovery: Option<RedisRecovery>,
    /// Messages from Redis this node dropped (malformed, unknown, for no namespace it serves).
    dropped: Arc<AtomicU64>,
    /// Questions to the other nodes not fully answered in time (every shard counts here).
    request_timeouts: Arc<AtomicU64>,
}

impl Cluster {
    /// Connects to Redis (in the background: a server down now is retried), serves
    /// `namespaces`, and hands every broadcast other nodes publish to the shards through
    /// `to_shards`, decoded once. With `deflate_threshold` (permessage-deflate on), the frames
    /// of such a broadcast that links compress get a shared cell, so it is compressed once too.
    pub(crate) fn start(
        config: &ClusterConfig,
        namespaces: impl IntoIterator<Item = String>,
        to_shards: bus::Endpoint<ShardMsg>,
        shards: u16,
        parser: config::Parser,
        deflate_threshold: Option<usize>,
        recovery: Option<&RecoveryConfig>,
    ) -> std::io::Result<Cluster> {
        let invalid = |error: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, error);
        let link_config = match (&config.redis_cluster, &config.redis) {
            (Some(seeds), _) => RedisLinkConfig::cluster(
                ClusterSeeds::parse(seeds).map_err(|error| invalid(error.to_string()))?,
            ),
            (None, url) => RedisLinkConfig::new(
                RedisUrl::parse(url.as_deref().unwrap_or_default())
                    .map_err(|error| invalid(error.to_string()))?,
            ),
        };
        let link_config = match &config.redis_ca {
            Some(path) => link_config
                .tls_ca_file(path)
                .map_err(|error| invalid(error.to_string()))?,
            None => link_config,
        };
        let mode = match config.mode {
            RedisMode::Classic => Mode::Classic,
            RedisMode::Sharded => Mode::Sharded(match config.subscription_mode {
                config::SubscriptionMode::Static => SubscriptionMode::Static,
                config::SubscriptionMode::Dynamic => SubscriptionMode::Dynamic,
                config::SubscriptionMode::DynamicPrivate => SubscriptionMode::DynamicPrivate,
            }),
        };
        let node = Arc::new(RwLock::new(Node::with_mode(config.prefix.clone(), mode)));
        let receiving = node.clone();
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = dropped.clone();
        // Answers go out through the link, which exists only once started: the callback finds
        // it here.
        let answering: Arc<OnceLock<RedisLink>> = Arc::default();
        let answer_link = answering.clone();
        let next_shard = AtomicUsize::new(0);
        // With recovery on, every stored broadcast carries an offset: a ringcast node's own
        // (every node delivers it with the same), or one of this node's for what Node
        // servers and emitters publish (the link thread counts as one more shard).
        let node_tag: Arc<str> = recovery::node_tag().into();
        let offsets = recovery.map(|_| (node_tag.clone(), AtomicU64::new(0)));
        // What this node delivers of theirs, it logs as its own deliveries (known once the
        // link is started).
        let logging: Arc<OnceLock<RedisRecovery>> = Arc::default();
        let logger = logging.clone();
        let deliver = move |incoming: redis::Incoming| {
            // Questions are spread over the shards; each gathers from all of them.
            let to_a_shard = |command| {
                let shard = next_shard.fetch_add(1, Ordering::Relaxed) % usize::from(shards);
                to_shards.send(shard, ShardMsg::Command(command));
            };
            // Answers go out through the link, known once it started: a question that came
            // before is not answered, and its asker times out.
            let reply_via = || {
                answer_link
                    .get()
                    .map(|link| (receiving.clone(), link.clone()))
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
                    let offset = match (&offsets, remote.volatile) {
                        (Some((node, counter)), false) => Some(
                            match remote.offset.filter(|o| o.len() <= recovery::MAX_OFFSET) {
                                Some(offset) => Arc::from(offset),
                                None => {
                                    let offset = recovery_offset(
                                        counter.fetch_add(1, Ordering::Relaxed) + 1,
                                        shards,
                                        Some(node),
                                    );
                                    if let Some(logger) = logger.get() {
                                        logger.log_delivered(
                                            &remote.nsp,
                                            &offset,
                                            &remote.rooms,
                                            &remote.except,
                                            &event.name,
                                            &args,
                                        );
                                    }
                                    offset
                                }
                            },
                        ),
                        _ => None,
                    };
                    // Encoded once, in the parser every shard's clients speak (and
                    // compressed once, when the extension is on).
                    let mut broadcast =
                        Broadcast::remote(parser, &remote.nsp, &event.name, args, offset)
                            .to(remote.rooms, remote.except);
                    if remote.volatile {
                        broadcast = broadcast.volatile();
                    }
                    if let Some(threshold) = deflate_threshold {
                        frame::share_deflate_over(&mut broadcast.frames, threshold);
                    }
                    let broadcast = Arc::new(broadcast);
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
                question => {
                    let Some(via) = reply_via() else {
                        return;
                    };
                    if let Some(command) = question_command(question, via) {
                        to_a_shard(command);
                    }
                }
            }
        };
        let link = RedisLink::start(link_config, deliver)?;
        let _ = answering.set(link.clone());
        for nsp in namespaces {
            if let Some(subscriptions) = write(&node).add_namespace(&nsp) {
                subscribe(&link, subscriptions);
            }
        }
        let recovery = recovery.map(|recovery| {
            RedisRecovery::new(link.clone(), &config.prefix, recovery, parser, node_tag)
        });
        if let Some(recovery) = &recovery {
            let _ = logging.set(recovery.clone());
        }
        Ok(Cluster {
            node,
            link,
            recovery,
            dropped,
            request_timeouts: Arc::default(),
        })
    }

    /// The link to Redis, for what the process keeps there besides the adapter's traffic
    /// (the Admin UI's sessions, through `server::SharedKeys`).
    pub(crate) fn link(&self) -> &RedisLink {
        &self.link
    }

    /// Connection state recovery in Redis, when recovery is on (shard 0 runs its heartbeat).
    pub(super) fn recovery(&self) -> Option<&RedisRecovery> {
        self.recovery.as_ref()
    }

    /// Stops the link to Redis (the last shard to stop calls it).
    pub(super) fn stop(&self) {
        self.link.stop();
    }

    /// The adapter's state for the stats endpoint.
    pub(super) fn counts(&self) -> ClusterCounts {
        let link = self.link.counts();
        ClusterCounts {
            connected: link.connected,
            reconnects: link.reconnects,
            published: link.published,
            publish_dropped: link.publish_dropped,
            publish_failed: link.publish_failed,
            received: link.received,
            dropped: link.received_dropped + self.dropped.load(Ordering::Relaxed),
            request_timeouts: self.request_timeouts.load(Ordering::Relaxed),
            queued: link.queued,
        }
    }

    /// How a shard reaches the other nodes: it publishes its broadcasts (encoded on the shard,
    /// handed to the link's bounded queue, never waiting for Redis), and serves the
    /// namespaces it creates (subscribing to their channels once, for the whole process).
    pub(super) fn hooks(&self, shard: ShardId, timeout: Duration) -> NodeHooks {
        let (node, link) = (self.node.clone(), self.link.clone());
        let serve = move |nsp: &str| {
            if read(&node).uid(nsp).is_some() {
                return;
            }
            if let Some(subscriptions) = write(&node).add_namespace(nsp) {
                subscribe(&link, subscriptions);
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
                // Questions go through `ask`; a count is this process's only.
                Op::FetchSockets | Op::AllRooms | Op::Count | Op::Restore { .. } => return,
            };
            if let Some(publish) = read(&node).operation_request(nsp, rooms, except, action) {
                let _ = send(&link, publish);
            }
        };
        let (node, link) = (self.node.clone(), self.link.clone());
        let count = move |nsp: &str| -> ServerCountFuture {
            // Node counts the subscribers of the namespace's request channel (sharded: of its
            // main channel).
            let channel = read(&node).count_channel(nsp);
            let asked = channel.map(|channel| count_servers(&link, channel));
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
                    let _ = send(&link, publish);
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "a server-side event could not be sent")
                }
                None => {}
            }
        };
        let watching = read(&self.node).watches_rooms();
        let (node, link) = (self.node.clone(), self.link.clone());
        let rooms = move |nsp: &str, room: &str, appeared: bool| {
            // One channel per room for the whole process: subscribed when the first shard
            // has a member, dropped when the last has none.
            let mut node = write(&node);
            if appeared {
                if let Some(channel) = node.room_joined(nsp, room) {
                    link.ssubscribe([channel]);
                }
            } else if let Some(channel) = node.room_left(nsp, room) {
                link.sunsubscribe([channel]);
            }
        };
        NodeHooks {
            recovery: self
                .recovery
                .clone()
                .map(|recovery| Box::new(recovery) as Box<dyn SharedRecovery>),
            rooms: watching.then(|| Box::new(rooms) as Box<_>),
            timeouts: self.request_timeouts.clone(),
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
                offset: broadcast.offset.as_deref(),
            };
            match read(&node).publish(&local) {
                // A full queue is counted by the link (its drop policy).
                Some(Ok(publish)) => {
                    let _ = send(&link, publish);
                }
                Some(Err(error)) => tracing::debug!(%error, "a broadcast could not be published"),
                // A namespace this node does not serve: none, every shard serves the namespaces
                // it creates first.
                None => {}
            }
        })
    }
}

/// Publishes what the node made, with `SPUBLISH` for the sharded adapter; never waits (the
/// link's queue is bounded, and counts what it drops).
fn send(link: &RedisLink, publish: cluster::Publish) -> Result<(), redis::PublishError> {
    let payload = Bytes::from(publish.payload);
    if publish.sharded {
        link.spublish(publish.channel, payload)
    } else {
        link.publish(publish.channel, payload)
    }
}

/// Subscribes to a namespace's channels, patterns and sharded channels.
fn subscribe(link: &RedisLink, subscriptions: cluster::Subscriptions) {
    link.psubscribe(subscriptions.patterns);
    link.subscribe(subscriptions.channels);
    link.ssubscribe(subscriptions.sharded);
}

/// Node's server count: the subscribers of `channel` (`PUBSUB NUMSUB`, or `SHARDNUMSUB`).
fn count_servers(link: &RedisLink, channel: cluster::Channel) -> redis::ServerCount {
    if channel.sharded {
        link.shard_server_count(channel.name)
    } else {
        link.server_count(channel.name)
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
                    offset: None,
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
        match (node.ask(nsp, asker, &question), node.count_channel(nsp)) {
            (Some(Ok(publish)), Some(channel)) => (publish, channel),
            (Some(Err(error)), _) => {
                tracing::debug!(%error, "a question for the other nodes could not be encoded");
                return nobody();
            }
            // A namespace this node does not serve (yet): no node can be asked about it.
            _ => return nobody(),
        }
    };
    let counted = count_servers(link, channel);
    let link = link.clone();
    Box::pin(async move {
        let subscribers = counted.await.ok()?;
        let others = usize::try_from(subscribers)
            .unwrap_or(usize::MAX)
            .saturating_sub(1);
        if others > 0 {
            send(&link, publish).ok()?;
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
        let RemoteServerEvent { nsp, ack, event } = remote;
        let Some(message) = Message::from_args_json(&event.args, event.attachments) else {
            return;
        };
        let ack = ack.map(|query| {
            ServerAck::new(move |args: &Args| {
                let attachments = args.attachments().to_vec();
                let sent = Message::from_args_json(args.json_bytes(), attachments);
                let first = sent.as_ref().and_then(|m| m.raw(0)).unwrap_or(b"null");
                let attachments = args.attachments();
                match read(&node).server_event_response(&query, first, attachments) {
                    Ok(answer) => {
                        let _ = send(&link, answer);
                    }
                    Err(error) => tracing::debug!(%error, "a server-side ack could not be sent"),
                }
            })
        });
        io.server_event(&nsp, &event.name, message, ack);
    })
}

/// Work for a shard that answers another node's question, published through `via`; `None`
/// for what is not a question.
fn question_command(
    incoming: cluster::Incoming,
    via: (Arc<RwLock<Node>>, RedisLink),
) -> Option<Command> {
    Some(match incoming {
        cluster::Incoming::Fetch(query) => answer_command(
            query,
            via,
            BroadcastOperator::fetch_sockets,
            |node, query, sockets: Vec<SocketInfo>| {
                let sockets = sockets.into_iter().map(remote_socket).collect();
                node.fetch_response(query, sockets)
            },
        ),
        cluster::Incoming::AllRooms(query) => answer_command(
            query,
            via,
            BroadcastOperator::all_rooms,
            |node, query, rooms| node.rooms_response(query, rooms),
        ),
        cluster::Incoming::AckBroadcast(broadcast) => ack_command(broadcast, via),
        cluster::Incoming::SocketIds(query) => answer_command(
            query,
            via,
            BroadcastOperator::fetch_sockets,
            |node, query, sockets: Vec<SocketInfo>| {
                let ids = sockets.into_iter().map(|socket| socket.id).collect();
                node.socket_ids_response(query, ids)
            },
        ),
        cluster::Incoming::ServerEvent(event) => server_event_command(event, via),
        _ => return None,
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
            let _ = send(&link, answer);
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
            let _ = send(&link, count);
            for ack in acks {
                let first = ack.raw(0).unwrap_or(b"null");
                match node.ack_response(&query, first, ack.attachments()) {
                    Ok(answer) => {
                        let _ = send(&link, answer);
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
