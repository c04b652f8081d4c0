//! The process's one link to Redis: two connections (a subscriber, and one for PUBLISH and
//! commands) driven by `fred` on one OS thread of their own, with a tokio current-thread
//! runtime. Shards reach it only through [`RedisLink`]'s non-blocking calls and never wait on
//! Redis: a publish is a `try_send` into a bounded queue, a `PUBSUB NUMSUB` answer comes back
//! through a oneshot, incoming messages are handed to a callback on the link thread.
//!
//! It is a pipe: it never interprets what it carries (what to publish and what an incoming
//! message means is the cluster adapter's), and it must not depend on the rest of the crate
//! nor on the shards' runtime. It is the only file in `src/` that names `fred` or `tokio`
//! (`tests/layering.rs` checks both).
//!
//! **Outages.** Both connections reconnect forever with capped exponential backoff
//! ([`Backoff`], 50 ms doubling to 5 s by default); every subscription and pattern asked for is
//! remembered and issued again on every new subscriber connection. One warning is logged per
//! outage (Redis down at start, or lost while running), one info line when the link is back.
//!
//! **Publishes are bounded, drop-newest.** A publish is queued if the queue holds fewer than
//! [`RedisLinkConfig::max_queued`] messages and [`RedisLinkConfig::max_queued_bytes`] bytes
//! (queued or in flight); otherwise it is refused at once ([`PublishError::Full`]) and counted
//! in `publish_dropped`. While the link is down nothing leaves the queue, so an outage fills it
//! and every publish past the bound is dropped; what is queued goes out once Redis is back.
//! At most [`RedisLinkConfig::max_in_flight`] publishes are handed to the client at once, so its
//! own retry buffer stays bounded too. A publish Redis did not acknowledge within
//! [`RedisLinkConfig::command_timeout`] is counted in `publish_failed`.
//!
//! **Incoming messages** whose payload is not a byte string, or is longer than
//! [`RedisLinkConfig::max_incoming_bytes`], or that the link thread could not keep up with,
//! are dropped and counted (`received_dropped`), never a panic; a callback that panics is
//! contained and logged.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::{
    Builder, Client, ClientLike, Config, EventInterface, PubsubInterface, ReconnectPolicy,
    ServerConfig, Value,
};
use fred::types::{Message, MessageKind};
use futures_channel::oneshot;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, Notify};

/// How long a stopping link keeps publishing what is queued, and waits for its connections to
/// close.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// `PUBSUB NUMSUB` requests waiting for the link thread, past which `server_count` answers
/// [`CommandError::Overloaded`].
const MAX_QUEUED_REQUESTS: usize = 1024;
/// `PUBSUB NUMSUB` requests in flight at once on the command connection.
const MAX_REQUESTS_IN_FLIGHT: usize = 256;
/// Events (messages, errors, connects) the client buffers for the link thread before it counts
/// a lag.
const EVENT_CAPACITY: usize = 1024;

// ---------------------------------------------------------------------------------------------
// The URL

/// A Redis server's address: `redis://[user:password@]host[:port][/db]`.
///
/// The password is kept but never shown: [`fmt::Display`] and [`fmt::Debug`] write `***` in
/// its place, so a URL can be logged as it is.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    database: Option<u8>,
}

/// Why a Redis URL was refused. Its message never contains the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid Redis URL: {} (expected redis://[user:password@]host[:port][/db])",
            self.0
        )
    }
}

impl std::error::Error for UrlError {}

impl RedisUrl {
    /// The port when the URL names none.
    pub const DEFAULT_PORT: u16 = 6379;

    /// Parses `redis://[user:password@]host[:port][/db]`: a host name, an IPv4 address or an
    /// IPv6 address in brackets; the port defaults to 6379; `db` is 0 to 255; user and
    /// password may be percent-encoded. Anything else is refused: other schemes (`rediss://`
    /// for TLS, `redis-cluster://`, `unix://`), query strings, fragments.
    pub fn parse(url: &str) -> Result<RedisUrl, UrlError> {
        let fail = |why: &str| Err(UrlError(why.to_owned()));
        let Some(rest) = url.strip_prefix("redis://") else {
            let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
            return match scheme {
                "" => fail("no scheme"),
                "rediss" => fail("TLS (rediss://) is not supported"),
                _ => Err(UrlError(format!(
                    "scheme {scheme}:// is not supported, only redis://"
                ))),
            };
        };
        if rest.contains(['?', '#']) {
            return fail("query strings and fragments are not supported");
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(credentials) => {
                let (user, password) = match credentials.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (credentials, None),
                };
                let user = percent_decode(user).ok_or_else(|| UrlError("bad user name".into()))?;
                let password = match password {
                    Some(password) => Some(
                        percent_decode(password)
                            .ok_or_else(|| UrlError("bad percent-encoding in password".into()))?,
                    ),
                    None => None,
                };
                ((!user.is_empty()).then_some(user), password)
            }
        };
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return fail("unclosed '[' in the host");
            };
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return fail("garbage after the IPv6 address"),
                },
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return fail("not an IPv6 address in brackets");
            }
            (host, port)
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return fail("no host");
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return fail("bad character in the host");
        }
        let port = match port {
            None => Self::DEFAULT_PORT,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return fail("the port is not a number from 1 to 65535"),
            },
        };
        let database = match path {
            "" => None,
            db => match db.parse::<u8>() {
                Ok(db) if db.to_string() == path => Some(db),
                _ => return fail("the database is not a number from 0 to 255"),
            },
        };
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            username,
            password,
            database,
        })
    }

    /// The host name or address (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database selected after connecting, if the URL names one.
    pub fn database(&self) -> Option<u8> {
        self.database
    }

    /// The ACL user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Whether the URL carries a password (which is never shown).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    fn fred_config(&self) -> Config {
        Config {
            // The reconnect policy applies to the first connection too: Redis down at start is
            // an outage like any other.
            fail_fast: false,
            server: ServerConfig::new_centralized(self.host.as_str(), self.port),
            username: self.username.clone(),
            password: self.password.clone(),
            database: self.database,
            ..Config::default()
        }
    }
}

impl FromStr for RedisUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<RedisUrl, UrlError> {
        RedisUrl::parse(url)
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        match (&self.username, &self.password) {
            (None, None) => {}
            (Some(user), None) => write!(f, "{user}@")?,
            (user, Some(_)) => write!(f, "{}:***@", user.as_deref().unwrap_or(""))?,
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if let Some(db) = self.database {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// The configuration

/// How the link waits between attempts to reach Redis: `min`, doubling each failed attempt up
/// to `max`, forever, with up to `min` of random jitter (so many processes do not all come
/// back at once). A successful connection starts again from `min`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    fn policy(&self) -> ReconnectPolicy {
        let min = millis(self.min).max(1);
        let max = millis(self.max).max(min);
        let mut policy = ReconnectPolicy::new_exponential(0, min, max, 2);
        policy.set_jitter(min);
        policy
    }
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// What [`RedisLink::start`] needs. Its `Debug` never shows the password.
#[derive(Clone, Debug)]
pub struct RedisLinkConfig {
    /// The server.
    pub url: RedisUrl,
    /// The wait between attempts to reconnect.
    pub backoff: Backoff,
    /// Publishes waiting for the link thread, at most (default 10,000).
    pub max_queued: usize,
    /// Bytes of channel names and payloads queued or in flight, at most (default 64 MiB).
    pub max_queued_bytes: usize,
    /// Publishes handed to the client and not yet acknowledged, at most (default 1024).
    pub max_in_flight: usize,
    /// The longest payload received that is handed on; longer ones are dropped and counted
    /// (default 16 MiB).
    pub max_incoming_bytes: usize,
    /// How long a command (a publish, a `PUBSUB NUMSUB`) may wait for its answer, and a
    /// connection attempt for its connection (default 5 s).
    pub command_timeout: Duration,
}

impl RedisLinkConfig {
    /// The defaults, for `url`.
    pub fn new(url: RedisUrl) -> RedisLinkConfig {
        RedisLinkConfig {
            url,
            backoff: Backoff::default(),
            max_queued: 10_000,
            max_queued_bytes: 64 << 20,
            max_in_flight: 1024,
            max_incoming_bytes: 16 << 20,
            command_timeout: Duration::from_secs(5),
        }
    }

    fn builder(&self) -> Builder {
        let mut builder = Builder::from_config(self.url.fred_config());
        builder.set_policy(self.backoff.policy());
        let timeout = self.command_timeout;
        builder.with_connection_config(|connection| {
            connection.connection_timeout = timeout;
            connection.internal_command_timeout = timeout;
            connection.tcp.nodelay = Some(true);
            connection.tcp.keepalive = Some(
                socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(30))
                    .with_interval(Duration::from_secs(10)),
            );
            // A command unanswered this long means a dead connection (a partition, a frozen
            // server): close it and reconnect.
            connection.unresponsive.max_timeout = Some(timeout * 2);
            connection.unresponsive.interval = Duration::from_secs(1);
        });
        builder.with_performance_config(|performance| {
            performance.default_command_timeout = timeout;
            performance.broadcast_channel_capacity = EVENT_CAPACITY;
        });
        builder
    }
}

// ---------------------------------------------------------------------------------------------
// The public handle

/// A message from Redis, as the subscriber connection received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The channel it was published on.
    pub channel: String,
    /// For a message received through a pattern subscription, the pattern. The client does
    /// not say which pattern a `pmessage` came through, so the link names the first of its
    /// patterns (in byte order) that matches the channel; when several match, Redis sends one
    /// copy per pattern and each copy names that first one.
    pub pattern: Option<String>,
    /// The payload, as published.
    pub payload: Bytes,
}

/// Why a publish was not queued. The message is dropped and counted in `publish_dropped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The queue is at its bound (messages or bytes): drop-newest.
    Full,
    /// The link was stopped.
    Stopped,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishError::Full => "the Redis publish queue is full; the message was dropped",
            PublishError::Stopped => "the Redis link is stopped; the message was dropped",
        })
    }
}

impl std::error::Error for PublishError {}

/// Why a command to Redis has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The link is not connected now (it answers at once rather than wait for an outage).
    Disconnected,
    /// Too many requests wait for the link thread.
    Overloaded,
    /// Redis did not answer within the command timeout.
    Timeout,
    /// The link was stopped.
    Stopped,
    /// Redis answered with an error, or with something that is not the expected answer.
    Redis(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Disconnected => f.write_str("the Redis link is not connected"),
            CommandError::Overloaded => f.write_str("too many Redis requests are waiting"),
            CommandError::Timeout => f.write_str("Redis did not answer in time"),
            CommandError::Stopped => f.write_str("the Redis link is stopped"),
            CommandError::Redis(error) => write!(f, "Redis: {error}"),
        }
    }
}

impl std::error::Error for CommandError {}

/// The link's counts, read without locking (each is an atomic; they are not a snapshot of
/// one instant).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkCounts {
    /// Both connections are up.
    pub connected: bool,
    /// Times the link came back after an outage (connections made after the first).
    pub reconnects: u64,
    /// Publishes Redis acknowledged.
    pub published: u64,
    /// Publishes refused: the queue was full, or the link stopped.
    pub publish_dropped: u64,
    /// Publishes handed to Redis that failed or were not acknowledged in time.
    pub publish_failed: u64,
    /// Messages received and handed to the callback.
    pub received: u64,
    /// Messages received and dropped: not a byte string, too long, stale, or missed because
    /// the link thread fell behind.
    pub received_dropped: u64,
    /// Publishes queued now, not yet handed to Redis.
    pub queued: u64,
    /// Bytes of channel names and payloads queued or in flight now.
    pub queued_bytes: u64,
}

/// The answer to [`RedisLink::server_count`]: a future any runtime can await (a shard's
/// included); it resolves on the link thread's answer.
#[must_use = "a future does nothing unless awaited"]
#[derive(Debug)]
pub struct ServerCount(oneshot::Receiver<Result<u64, CommandError>>);

impl Future for ServerCount {
    type Output = Result<u64, CommandError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(CommandError::Stopped)))
    }
}

/// The process's link to Redis. Cheap to clone (clones share one link), `Send + Sync`; every
/// call returns at once, from any thread. The link thread stops on [`RedisLink::stop`] or when
/// the last clone is dropped (a clone held by the `on_message` callback itself counts: such a
/// link ends only on `stop`).
#[derive(Clone)]
pub struct RedisLink {
    handle: Arc<Handle>,
}

/// What the callers share; dropping the last one stops the link thread.
struct Handle {
    shared: Arc<Shared>,
    publishes: mpsc::Sender<Publish>,
    requests: mpsc::Sender<NumSub>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
    url: RedisUrl,
}

/// What the callers and the link thread share.
struct Shared {
    config: RedisLinkConfig,
    counts: Counts,
    /// Bytes of publishes queued or in flight.
    queued_bytes: AtomicUsize,
    stopped: AtomicBool,
    stop: Notify,
    wanted: Mutex<Wanted>,
    /// Bumped on every change of `wanted`.
    wanted_generation: AtomicU64,
    wanted_changed: Notify,
}

#[derive(Default)]
struct Counts {
    connected: AtomicBool,
    reconnects: AtomicU64,
    published: AtomicU64,
    publish_dropped: AtomicU64,
    publish_failed: AtomicU64,
    received: AtomicU64,
    received_dropped: AtomicU64,
}

/// The subscriptions asked for: what every new subscriber connection issues.
#[derive(Clone, Default, PartialEq, Eq)]
struct Wanted {
    channels: BTreeSet<String>,
    patterns: BTreeSet<String>,
}

struct Publish {
    channel: String,
    payload: Bytes,
    size: usize,
}

struct NumSub {
    channel: String,
    answer: oneshot::Sender<Result<u64, CommandError>>,
}

impl RedisLink {
    /// Starts the link thread and returns at once, whether Redis is up or not; the thread
    /// connects (and keeps retrying) on its own. `on_message` runs on the link thread for every
    /// message received; it should hand the message on (to the shards) and return.
    ///
    /// Fails only if the thread or its runtime can't be created.
    pub fn start(
        config: RedisLinkConfig,
        on_message: impl Fn(Incoming) + Send + 'static,
    ) -> std::io::Result<RedisLink> {
        let publisher = config.builder().build().map_err(std::io::Error::other)?;
        let subscriber = config.builder().build().map_err(std::io::Error::other)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (publishes, publish_rx) = mpsc::channel(config.max_queued.max(1));
        let (requests, request_rx) = mpsc::channel(MAX_QUEUED_REQUESTS);
        let url = config.url.clone();
        let shared = Arc::new(Shared {
            config,
            counts: Counts::default(),
            queued_bytes: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
            wanted: Mutex::new(Wanted::default()),
            wanted_generation: AtomicU64::new(0),
            wanted_changed: Notify::new(),
        });
        let worker = Worker {
            shared: shared.clone(),
            publisher,
            subscriber,
            on_message: Box::new(on_message),
            state: LinkState::default(),
            patterns: (u64::MAX, Vec::new()),
        };
        let thread = std::thread::Builder::new()
            .name("ringcast-redis".into())
            .spawn(move || runtime.block_on(worker.run(publish_rx, request_rx)))?;
        let thread_id = thread.thread().id();
        Ok(RedisLink {
            handle: Arc::new(Handle {
                shared,
                publishes,
                requests,
                thread: Mutex::new(Some(thread)),
                thread_id,
                url,
            }),
        })
    }

    /// Queues `PUBLISH channel payload`; never blocks. A publish the queue can't take now is
    /// dropped (drop-newest), counted in `publish_dropped`, and returned as an error; queued
    /// ones go out in the order they were queued, once the link is connected.
    pub fn publish(&self, channel: impl Into<String>, payload: Bytes) -> Result<(), PublishError> {
        let shared = &self.handle.shared;
        let refuse = |error| {
            shared
                .counts
                .publish_dropped
                .fetch_add(1, Ordering::Relaxed);
            Err(error)
        };
        if shared.stopped.load(Ordering::Acquire) {
            return refuse(PublishError::Stopped);
        }
        let channel = channel.into();
        let size = channel.len() + payload.len();
        let before = shared.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before.saturating_add(size) > shared.config.max_queued_bytes {
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return refuse(PublishError::Full);
        }
        let publish = Publish {
            channel,
            payload,
            size,
        };
        match self.handle.publishes.try_send(publish) {
            Ok(()) => Ok(()),
            Err(error) => {
                shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                match error {
                    mpsc::error::TrySendError::Full(_) => refuse(PublishError::Full),
                    mpsc::error::TrySendError::Closed(_) => refuse(PublishError::Stopped),
                }
            }
        }
    }

    /// Subscribes to `channels` (`SUBSCRIBE`), now if connected and again on every new
    /// subscriber connection.
    pub fn subscribe<S: Into<String>>(&self, channels: impl IntoIterator<Item = S>) {
        self.change(|wanted| wanted.channels.extend(channels.into_iter().map(Into::into)));
    }

    /// Subscribes to `patterns` (`PSUBSCRIBE`, Redis glob patterns), now if connected and
    /// again on every new subscriber connection.
    pub fn psubscribe<S: Into<String>>(&self, patterns: impl IntoIterator<Item = S>) {
        self.change(|wanted| wanted.patterns.extend(patterns.into_iter().map(Into::into)));
    }

    /// Forgets `channels` (`UNSUBSCRIBE`).
    pub fn unsubscribe<S: Into<String>>(&self, channels: impl IntoIterator<Item = S>) {
        self.change(|wanted| {
            for channel in channels {
                wanted.channels.remove(&channel.into());
            }
        });
    }

    /// Forgets `patterns` (`PUNSUBSCRIBE`).
    pub fn punsubscribe<S: Into<String>>(&self, patterns: impl IntoIterator<Item = S>) {
        self.change(|wanted| {
            for pattern in patterns {
                wanted.patterns.remove(&pattern.into());
            }
        });
    }

    fn change(&self, edit: impl FnOnce(&mut Wanted)) {
        let shared = &self.handle.shared;
        let mut wanted = lock(&shared.wanted);
        let before = wanted.clone();
        edit(&mut wanted);
        if *wanted != before {
            shared.wanted_generation.fetch_add(1, Ordering::AcqRel);
            drop(wanted);
            shared.wanted_changed.notify_one();
        }
    }

    /// `PUBSUB NUMSUB channel` on the command connection: how many connections are subscribed
    /// to `channel` (on the classic adapter's request channel, the number of servers). Answers
    /// [`CommandError::Disconnected`] at once while the link is down, and never waits longer
    /// than the command timeout.
    pub fn server_count(&self, channel: impl Into<String>) -> ServerCount {
        let (answer, receiver) = oneshot::channel();
        let request = NumSub {
            channel: channel.into(),
            answer,
        };
        if let Err(error) = self.handle.requests.try_send(request) {
            let (request, why) = match error {
                mpsc::error::TrySendError::Full(request) => (request, CommandError::Overloaded),
                mpsc::error::TrySendError::Closed(request) => (request, CommandError::Stopped),
            };
            let _ = request.answer.send(Err(why));
        }
        ServerCount(receiver)
    }

    /// The link's counts, without locking.
    pub fn counts(&self) -> LinkCounts {
        let shared = &self.handle.shared;
        let counts = &shared.counts;
        let publishes = &self.handle.publishes;
        LinkCounts {
            connected: counts.connected.load(Ordering::Relaxed),
            reconnects: counts.reconnects.load(Ordering::Relaxed),
            published: counts.published.load(Ordering::Relaxed),
            publish_dropped: counts.publish_dropped.load(Ordering::Relaxed),
            publish_failed: counts.publish_failed.load(Ordering::Relaxed),
            received: counts.received.load(Ordering::Relaxed),
            received_dropped: counts.received_dropped.load(Ordering::Relaxed),
            queued: (publishes.max_capacity() - publishes.capacity()) as u64,
            queued_bytes: shared.queued_bytes.load(Ordering::Relaxed) as u64,
        }
    }

    /// The server, as it may be logged (the password is never shown).
    pub fn url(&self) -> &RedisUrl {
        &self.handle.url
    }

    /// Stops the link: later publishes are refused, what is queued is published for up to a
    /// second if connected (the rest is dropped and counted), both connections are closed and
    /// the thread ends; returns once it has (at most about two seconds). Called on the link
    /// thread (from the callback) it only asks. Idempotent; every clone is stopped.
    pub fn stop(&self) {
        self.handle.stop();
    }
}

impl Handle {
    fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.stop.notify_one();
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLink")
            .field("url", &self.handle.url)
            .field("counts", &self.counts())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The link thread

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Whether each connection is up, as the client's events say, and what has been logged.
#[derive(Default)]
struct LinkState {
    publisher_up: bool,
    subscriber_up: bool,
    up: bool,
    ever_up: bool,
    /// The current outage has been logged.
    warned: bool,
    down_since: Option<Instant>,
}

#[derive(Clone, Copy)]
enum Side {
    Publisher,
    Subscriber,
}

/// Owned by the link thread.
struct Worker {
    shared: Arc<Shared>,
    publisher: Client,
    subscriber: Client,
    on_message: Box<dyn Fn(Incoming) + Send>,
    state: LinkState,
    /// The patterns subscribed, sorted, and the `wanted_generation` they were read at.
    patterns: (u64, Vec<String>),
}

impl Worker {
    async fn run(
        mut self,
        mut publishes: mpsc::Receiver<Publish>,
        mut requests: mpsc::Receiver<NumSub>,
    ) {
        let shared = self.shared.clone();
        // Every receiver is taken before connecting, so the first connection's events are seen.
        let mut publisher_errors = self.publisher.error_rx();
        let mut publisher_connects = self.publisher.reconnect_rx();
        let mut subscriber_errors = self.subscriber.error_rx();
        let mut subscriber_connects = self.subscriber.reconnect_rx();
        let mut messages = self.subscriber.message_rx();
        let subscriptions = tokio::spawn(keep_subscriptions(
            self.subscriber.clone(),
            shared.clone(),
            self.subscriber.reconnect_rx(),
        ));
        let mut publisher_task = self.publisher.connect();
        let mut subscriber_task = self.subscriber.connect();
        let mut restart: Option<(Side, tokio::time::Instant)> = None;
        let mut publishing: FuturesUnordered<Task> = FuturesUnordered::new();
        let mut asking: FuturesUnordered<Task> = FuturesUnordered::new();
        let (mut events_open, mut messages_open) = ([true; 4], true);
        let max_in_flight = shared.config.max_in_flight.max(1);

        loop {
            if shared.stopped.load(Ordering::Acquire) {
                break;
            }
            // Unbiased: a flood of incoming messages must not starve publishes, nor the reverse.
            tokio::select! {
                _ = shared.stop.notified() => break,
                event = publisher_errors.recv(), if events_open[0] => {
                    events_open[0] = self.on_error(Side::Publisher, event);
                }
                event = subscriber_errors.recv(), if events_open[1] => {
                    events_open[1] = self.on_error(Side::Subscriber, event);
                }
                event = publisher_connects.recv(), if events_open[2] => {
                    events_open[2] = self.on_connect(Side::Publisher, event);
                }
                event = subscriber_connects.recv(), if events_open[3] => {
                    events_open[3] = self.on_connect(Side::Subscriber, event);
                }
                message = messages.recv(), if messages_open => match message {
                    Ok(message) => self.deliver(message),
                    Err(RecvError::Lagged(missed)) => {
                        shared.counts.received_dropped.fetch_add(missed, Ordering::Relaxed);
                        tracing::warn!(
                            "redis link: {missed} incoming messages dropped, the link thread fell behind"
                        );
                    }
                    Err(RecvError::Closed) => messages_open = false,
                },
                Some(()) = publishing.next(), if !publishing.is_empty() => {}
                Some(()) = asking.next(), if !asking.is_empty() => {}
                publish = publishes.recv(),
                    if self.state.up && publishing.len() < max_in_flight =>
                {
                    match publish {
                        Some(publish) => publishing.push(self.publish(publish)),
                        None => break,
                    }
                }
                request = requests.recv(), if asking.len() < MAX_REQUESTS_IN_FLIGHT => {
                    match request {
                        Some(request) => {
                            if let Some(task) = self.num_sub(request) {
                                asking.push(task);
                            }
                        }
                        None => break,
                    }
                }
                ended = &mut publisher_task, if restart.is_none() => {
                    restart = Some((Side::Publisher, self.connection_ended(Side::Publisher, ended)));
                }
                ended = &mut subscriber_task, if restart.is_none() => {
                    restart = Some((Side::Subscriber, self.connection_ended(Side::Subscriber, ended)));
                }
                _ = tokio::time::sleep_until(restart.map_or_else(tokio::time::Instant::now, |r| r.1)),
                    if restart.is_some() =>
                {
                    match restart.take().map(|r| r.0) {
                        Some(Side::Publisher) => publisher_task = self.publisher.connect(),
                        Some(Side::Subscriber) => subscriber_task = self.subscriber.connect(),
                        None => {}
                    }
                }
            }
        }

        self.shut_down(publishes, publishing, subscriptions).await;
    }

    /// An error event: that connection is down until its next connect event.
    fn on_error(
        &mut self,
        side: Side,
        event: Result<(fred::error::Error, Option<fred::types::config::Server>), RecvError>,
    ) -> bool {
        let (open, error) = match event {
            Ok((error, _server)) => (true, Some(error.to_string())),
            Err(RecvError::Lagged(_)) => (true, None),
            Err(RecvError::Closed) => (false, None),
        };
        if open {
            match side {
                Side::Publisher => self.state.publisher_up = false,
                Side::Subscriber => self.state.subscriber_up = false,
            }
            self.refresh(error.as_deref());
        }
        open
    }

    /// A connect event (the first connection's included): that connection is up.
    fn on_connect<T>(&mut self, side: Side, event: Result<T, RecvError>) -> bool {
        if matches!(event, Err(RecvError::Closed)) {
            return false;
        }
        match side {
            Side::Publisher => self.state.publisher_up = true,
            Side::Subscriber => self.state.subscriber_up = true,
        }
        self.refresh(None);
        true
    }

    /// Sets `connected` and logs the transitions: one warning per outage, one line when back.
    fn refresh(&mut self, error: Option<&str>) {
        let shared = &self.shared;
        let url = &shared.config.url;
        let state = &mut self.state;
        let up = state.publisher_up && state.subscriber_up;
        if up && !state.up {
            if state.ever_up {
                shared.counts.reconnects.fetch_add(1, Ordering::Relaxed);
                let outage = state
                    .down_since
                    .map(|since| since.elapsed())
                    .unwrap_or_default();
                tracing::info!(
                    "redis link to {url} is back after {} ms; subscriptions issued again",
                    outage.as_millis()
                );
            } else {
                tracing::info!("redis link connected to {url}");
            }
            state.ever_up = true;
            state.warned = false;
            state.down_since = None;
        } else if !up && state.up {
            state.down_since = Some(Instant::now());
        }
        if !up && !state.warned && (state.up || error.is_some()) {
            state.warned = true;
            let why = error.unwrap_or("connection closed");
            let config = &shared.config;
            let backoff = &config.backoff;
            if state.ever_up {
                tracing::warn!(
                    "redis link to {url} lost ({why}); local delivery goes on; publishes queue \
                     up to {} messages / {} bytes, then are dropped and counted; reconnecting \
                     every {} ms doubling to {} ms",
                    config.max_queued,
                    config.max_queued_bytes,
                    backoff.min.as_millis(),
                    backoff.max.as_millis()
                );
            } else {
                tracing::warn!(
                    "cannot connect to redis at {url} ({why}); serving local clients only; publishes \
                     queue up to {} messages / {} bytes, then are dropped and counted; retrying \
                     every {} ms doubling to {} ms",
                    config.max_queued,
                    config.max_queued_bytes,
                    backoff.min.as_millis(),
                    backoff.max.as_millis()
                );
            }
        }
        state.up = up;
        shared.counts.connected.store(up, Ordering::Relaxed);
    }

    /// A connection task ended (the client gives up only on a configuration error): counts as
    /// down, and is started again after the longest backoff.
    fn connection_ended(
        &mut self,
        side: Side,
        ended: Result<Result<(), fred::error::Error>, tokio::task::JoinError>,
    ) -> tokio::time::Instant {
        let why = match ended {
            Ok(Ok(())) => "closed".to_owned(),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::error!(
            "redis link to {}: a connection gave up ({why}); starting it again",
            self.shared.config.url
        );
        match side {
            Side::Publisher => self.state.publisher_up = false,
            Side::Subscriber => self.state.subscriber_up = false,
        }
        self.refresh(Some(&why));
        tokio::time::Instant::now() + self.shared.config.backoff.max
    }

    fn publish(&self, publish: Publish) -> Task {
        let client = self.publisher.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let Publish {
                channel,
                payload,
                size,
            } = publish;
            let result: Result<Value, _> = client.publish(channel, payload).await;
            shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            match result {
                Ok(_) => shared.counts.published.fetch_add(1, Ordering::Relaxed),
                Err(error) => {
                    tracing::debug!("redis link: a publish failed: {error}");
                    shared.counts.publish_failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        })
    }

    fn num_sub(&self, request: NumSub) -> Option<Task> {
        if !self.state.publisher_up {
            let _ = request.answer.send(Err(CommandError::Disconnected));
            return None;
        }
        let client = self.publisher.clone();
        let timeout = self.shared.config.command_timeout;
        Some(Box::pin(async move {
            let NumSub { channel, answer } = request;
            let result =
                tokio::time::timeout(timeout, client.pubsub_numsub::<Value, _>(channel)).await;
            let count = match result {
                Err(_elapsed) => Err(CommandError::Timeout),
                Ok(Err(error)) if *error.kind() == fred::error::ErrorKind::Timeout => {
                    Err(CommandError::Timeout)
                }
                Ok(Err(error)) => Err(CommandError::Redis(error.to_string())),
                Ok(Ok(value)) => num_sub_count(value),
            };
            let _ = answer.send(count);
        }))
    }

    fn deliver(&mut self, message: Message) {
        let counts = &self.shared.counts;
        let payload = match message.value {
            Value::Bytes(bytes) => bytes,
            Value::String(text) => text.into_inner(),
            _ => {
                counts.received_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if payload.len() > self.shared.config.max_incoming_bytes {
            counts.received_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let channel = message.channel.to_string();
        let pattern = if message.kind == MessageKind::PMessage {
            match self.pattern_for(&channel) {
                Some(pattern) => Some(pattern),
                // Matches no pattern still wanted: one just unsubscribed.
                None => {
                    let counts = &self.shared.counts;
                    counts.received_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        } else {
            None
        };
        self.shared.counts.received.fetch_add(1, Ordering::Relaxed);
        let incoming = Incoming {
            channel,
            pattern,
            payload,
        };
        if catch_unwind(AssertUnwindSafe(|| (self.on_message)(incoming))).is_err() {
            tracing::error!("redis link: the message callback panicked; the message is lost");
        }
    }

    /// The first pattern subscribed (in byte order) that matches `channel`.
    fn pattern_for(&mut self, channel: &str) -> Option<String> {
        let generation = self.shared.wanted_generation.load(Ordering::Acquire);
        if self.patterns.0 != generation {
            let wanted = lock(&self.shared.wanted);
            self.patterns = (generation, wanted.patterns.iter().cloned().collect());
        }
        self.patterns
            .1
            .iter()
            .find(|pattern| glob_match(pattern.as_bytes(), channel.as_bytes()))
            .cloned()
    }

    /// Publishes what is queued (if connected) for up to [`STOP_GRACE`], drops the rest, and
    /// closes both connections.
    async fn shut_down(
        self,
        mut publishes: mpsc::Receiver<Publish>,
        mut publishing: FuturesUnordered<Task>,
        subscriptions: tokio::task::JoinHandle<()>,
    ) {
        let shared = self.shared.clone();
        publishes.close();
        let max_in_flight = shared.config.max_in_flight.max(1);
        let up = self.state.up;
        let mut open = true;
        let drain = async {
            loop {
                tokio::select! {
                    Some(()) = publishing.next(), if !publishing.is_empty() => {}
                    publish = publishes.recv(), if open && up && publishing.len() < max_in_flight => {
                        match publish {
                            Some(publish) => publishing.push(self.publish(publish)),
                            None => open = false,
                        }
                    }
                    else => break,
                }
            }
        };
        let _ = tokio::time::timeout(STOP_GRACE, drain).await;
        let mut left = 0;
        while let Ok(publish) = publishes.try_recv() {
            shared
                .queued_bytes
                .fetch_sub(publish.size, Ordering::AcqRel);
            left += 1;
        }
        shared
            .counts
            .publish_dropped
            .fetch_add(left, Ordering::Relaxed);
        subscriptions.abort();
        // A connection that is down has nothing to say goodbye to (and QUIT would wait for it);
        // the runtime, dropped with the thread, ends its tasks.
        let (publisher_up, subscriber_up) = (self.state.publisher_up, self.state.subscriber_up);
        let quit = futures_util::future::join(
            async { publisher_up.then_some(self.publisher.quit().await) },
            async { subscriber_up.then_some(self.subscriber.quit().await) },
        );
        let _ = tokio::time::timeout(STOP_GRACE, quit).await;
        shared.counts.connected.store(false, Ordering::Relaxed);
        tracing::info!(
            "redis link to {} stopped ({left} queued publishes dropped)",
            shared.config.url
        );
    }
}

/// `PUBSUB NUMSUB channel` answers `[channel, count]`.
fn num_sub_count(value: Value) -> Result<u64, CommandError> {
    let unexpected = || CommandError::Redis("unexpected answer to PUBSUB NUMSUB".to_owned());
    let Value::Array(items) = value else {
        return Err(unexpected());
    };
    match items.get(1) {
        Some(Value::Integer(count)) => u64::try_from(*count).map_err(|_| unexpected()),
        _ => Err(unexpected()),
    }
}

/// Keeps the subscriber connection's subscriptions equal to what is wanted: issues the
/// difference whenever it changes, and everything again after every (re)connect.
async fn keep_subscriptions(
    subscriber: Client,
    shared: Arc<Shared>,
    mut connects: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
) {
    // What the current connection has been told.
    let mut issued = Wanted::default();
    let mut retry: Option<tokio::time::Instant> = None;
    let mut retry_delay = shared.config.backoff.min;
    loop {
        tokio::select! {
            event = connects.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    issued = Wanted::default();
                    retry_delay = shared.config.backoff.min;
                }
                Err(RecvError::Closed) => return,
            },
            _ = shared.wanted_changed.notified() => {}
            _ = tokio::time::sleep_until(retry.unwrap_or_else(tokio::time::Instant::now)), if retry.is_some() => {}
        }
        retry = None;
        let wanted = lock(&shared.wanted).clone();
        if let Err(error) = sync_subscriptions(&subscriber, &wanted, &mut issued).await {
            tracing::debug!("redis link: subscribing failed ({error}); trying again");
            retry = Some(tokio::time::Instant::now() + retry_delay);
            retry_delay = (retry_delay * 2).min(shared.config.backoff.max);
        }
    }
}

async fn sync_subscriptions(
    subscriber: &Client,
    wanted: &Wanted,
    issued: &mut Wanted,
) -> Result<(), fred::error::Error> {
    let add: Vec<String> = wanted
        .channels
        .difference(&issued.channels)
        .cloned()
        .collect();
    if !add.is_empty() {
        subscriber.subscribe(add.clone()).await?;
        issued.channels.extend(add);
    }
    let remove: Vec<String> = issued
        .channels
        .difference(&wanted.channels)
        .cloned()
        .collect();
    if !remove.is_empty() {
        subscriber.unsubscribe(remove.clone()).await?;
        for channel in remove {
            issued.channels.remove(&channel);
        }
    }
    let add: Vec<String> = wanted
        .patterns
        .difference(&issued.patterns)
        .cloned()
        .collect();
    if !add.is_empty() {
        subscriber.psubscribe(add.clone()).await?;
        issued.patterns.extend(add);
    }
    let remove: Vec<String> = issued
        .patterns
        .difference(&wanted.patterns)
        .cloned()
        .collect();
    if !remove.is_empty() {
        subscriber.punsubscribe(remove.clone()).await?;
        for pattern in remove {
            issued.patterns.remove(&pattern);
        }
    }
    Ok(())
}

/// Redis's glob matching (`stringmatchlen`, case-sensitive): `*`, `?`, `[abc]`, `[^abc]`,
/// `[a-z]`, and `\` quoting the next character.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and how much of the text it has taken.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => {
                let (matched, next) = class_match(pattern, p + 1, text[t]);
                matched.then_some(next)
            }
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&c) => (c == text[t]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((star_p, star_t))) => {
                star = Some((star_p, star_t + 1));
                p = star_p + 1;
                t = star_t + 1;
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[start]` (just after `[`); whether it
/// matched and where the pattern goes on. An unterminated class ends with the pattern.
fn class_match(pattern: &[u8], start: usize, c: u8) -> (bool, usize) {
    let mut i = start;
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    loop {
        match pattern.get(i) {
            None => break,
            Some(b']') => {
                i += 1;
                break;
            }
            Some(b'\\') if i + 1 < pattern.len() => {
                matched |= pattern[i + 1] == c;
                i += 2;
            }
            Some(&low) if i + 2 < pattern.len() && pattern[i + 1] == b'-' => {
                let high = pattern[i + 2];
                let (low, high) = if low <= high {
                    (low, high)
                } else {
                    (high, low)
                };
                matched |= (low..=high).contains(&c);
                i += 3;
            }
            Some(&other) => {
                matched |= other == c;
                i += 1;
            }
        }
    }
    (matched != negated, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = RedisUrl::parse("redis://127.0.0.1:6380").unwrap();
        assert_eq!(
            (url.host(), url.port(), url.database()),
            ("127.0.0.1", 6380, None)
        );
        assert_eq!((url.username(), url.has_password()), (None, false));

        let url = RedisUrl::parse("redis://localhost").unwrap();
        assert_eq!((url.host(), url.port()), ("localhost", 6379));

        let url = RedisUrl::parse("redis://user:p%40ss@redis.internal:7000/3").unwrap();
        assert_eq!(url.host(), "redis.internal");
        assert_eq!((url.port(), url.database()), (7000, Some(3)));
        assert_eq!(url.username(), Some("user"));
        assert_eq!(url.password.as_deref(), Some("p@ss"));

        let url = RedisUrl::parse("redis://:secret@[::1]:6390/0").unwrap();
        assert_eq!(
            (url.host(), url.port(), url.database()),
            ("::1", 6390, Some(0))
        );
        assert_eq!(
            (url.username(), url.password.as_deref()),
            (None, Some("secret"))
        );

        let url: RedisUrl = "redis://alice@h:1".parse().unwrap();
        assert_eq!((url.username(), url.has_password()), (Some("alice"), false));
    }

    #[test]
    fn urls_refused_say_why() {
        for (url, why) in [
            ("rediss://h:1", "TLS"),
            ("redis-cluster://h:1", "redis-cluster:// is not supported"),
            ("unix:///tmp/redis.sock", "unix:// is not supported"),
            ("http://h:1", "http:// is not supported"),
            ("h:6379", "no scheme"),
            ("redis://", "no host"),
            ("redis://:pw@:6379", "no host"),
            ("redis://h:0", "port"),
            ("redis://h:65536", "port"),
            ("redis://h:+80", "port"),
            ("redis://h:x", "port"),
            ("redis://h:1/256", "database"),
            ("redis://h:1/01", "database"),
            ("redis://h:1/a", "database"),
            ("redis://h:1/0/1", "database"),
            ("redis://h:1?db=2", "query"),
            ("redis://h:1#x", "fragment"),
            ("redis://[::1:6379", "unclosed"),
            ("redis://[nothex]:1", "IPv6"),
            ("redis://h h:1", "bad character"),
            ("redis://u:%zz@h:1", "percent"),
        ] {
            let error = RedisUrl::parse(url).expect_err(url).to_string();
            assert!(error.contains(why), "{url}: {error}");
            assert!(error.contains("expected redis://"), "{url}: {error}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let url = RedisUrl::parse("redis://bob:hunter2-secret@h:1/2").unwrap();
        assert_eq!(url.to_string(), "redis://bob:***@h:1/2");
        let config = RedisLinkConfig::new(url.clone());
        for shown in [format!("{url:?}"), format!("{config:?}"), url.to_string()] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let url = RedisUrl::parse("redis://:hunter2-secret@[::1]:1").unwrap();
        assert_eq!(url.to_string(), "redis://:***@[::1]:1");
        // A refused URL's message does not repeat it either.
        let error = RedisUrl::parse("redis://u:hunter2-secret@h:1?x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let mut policy = Backoff::default().policy();
        if let ReconnectPolicy::Exponential { ref mut jitter, .. } = policy {
            *jitter = 0;
        }
        let delays: Vec<u64> = (0..9).map(|_| policy.next_delay().unwrap()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        // Forever.
        for _ in 0..10_000 {
            assert_eq!(policy.next_delay(), Some(5000));
        }
    }

    #[test]
    fn glob_matches_as_redis_does() {
        let cases: &[(&str, &str, bool)] = &[
            ("socket.io#/#*", "socket.io#/#", true),
            ("socket.io#/#*", "socket.io#/#room#", true),
            ("socket.io#/#*", "socket.io#/chat#", false),
            ("socket.io#/chat#*", "socket.io#/chat#", true),
            ("*", "", true),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("h[ae]llo", "hello", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("a[\\]]b", "a]b", true),
            ("abc\\", "abc\\", true),
            ("[abc", "b", true),
            ("", "", true),
            ("", "a", false),
            ("**a", "ba", true),
            ("*a*", "bbb", false),
        ];
        for &(pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                expected,
                "{pattern:?} ~ {text:?}"
            );
        }
    }

    #[test]
    fn num_sub_answers_are_read_or_refused() {
        let answer = Value::Array(vec![Value::from("ch"), Value::Integer(2)]);
        assert_eq!(num_sub_count(answer), Ok(2));
        for bad in [
            Value::Null,
            Value::Array(vec![Value::from("ch")]),
            Value::Array(vec![Value::from("ch"), Value::Integer(-1)]),
            Value::Array(vec![Value::from("ch"), Value::from("2")]),
        ] {
            assert!(matches!(num_sub_count(bad), Err(CommandError::Redis(_))));
        }
    }

    #[test]
    fn a_link_is_shared_across_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<RedisLink>();
        fn send<T: Send>() {}
        send::<ServerCount>();
    }
}
