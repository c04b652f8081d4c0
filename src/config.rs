//! Server configuration: one plain value, built by the library builder or the CLI, passed by
//! value to every shard. No globals. Defaults are Node's (`socket.io` 4.x), written here only:
//! the binary's flags take theirs from [`Config::default`].
//!
//! One struct per layer that reads it: [`EngineConfig`] (Engine.IO sessions), [`HttpConfig`]
//! (the HTTP connections `net` serves), [`SocketIoConfig`] (namespaces, sockets, rooms); the
//! rest is the server's own (address, shards, paths, CORS, the bus). Plain data: it must not
//! depend on any other module of the crate but the codec's CORS type.

use std::net::IpAddr;
use std::time::Duration;

use crate::codec::http::{AllowedOrigins, Cors};

/// Everything a server needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Number of shards (threads, one per core). Default: every available core.
    pub cores: usize,
    /// Address to listen on.
    pub host: IpAddr,
    /// TCP port to listen on (0 picks a free one).
    pub port: u16,
    /// Pin shard i to core i.
    pub pin_cores: bool,
    /// Use the epoll driver even where io_uring is available (io_uring is the default, with
    /// epoll as the automatic fallback).
    pub force_epoll: bool,
    /// Engine.IO options.
    pub engine: EngineConfig,
    /// HTTP connection options.
    pub http: HttpConfig,
    /// Socket.IO options.
    pub socketio: SocketIoConfig,
    /// The HTTP path the Socket.IO endpoint is served at, with trailing slash.
    pub path: String,
    /// Cross-origin resource sharing for the polling transport.
    pub cors: CorsConfig,
    /// Capacity of each shard-to-shard ring, in messages.
    pub bus_capacity: usize,
    /// Where a GET answers with the server's counts as JSON (sessions, WebSockets, sockets,
    /// rooms, timers, requests in flight; per shard and in total). Not served when `None`.
    pub stats_path: Option<String>,
    /// Where a GET on the main listener answers with the server's metrics in the Prometheus
    /// text format. Not served there when `None`.
    pub metrics_path: Option<String>,
    /// A listener of its own for the metrics (served by shard 0), at `metrics_path` or else
    /// `/metrics`; it answers nothing else. None when `None`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Clustering through Redis (off unless a URL is given).
    pub cluster: ClusterConfig,
    /// The Socket.IO Admin UI's server side (off by default).
    pub admin: AdminConfig,
}

/// Clustering through Redis, wire-compatible with Node's `@socket.io/redis-adapter` (classic
/// mode) and `@socket.io/redis-emitter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS); no clustering when
    /// neither this nor `redis_cluster` is set.
    pub redis: Option<String>,
    /// A Redis Cluster's seed nodes, `host:port,host:port` (or whole URLs; a seed without a
    /// scheme takes the first one's scheme and credentials). Takes the place of `redis`.
    pub redis_cluster: Option<String>,
    /// A PEM file of the certificate authorities to trust for `rediss://` besides the system's
    /// (a private CA, say).
    pub redis_ca: Option<std::path::PathBuf>,
    /// Which of Node's Redis adapters to speak.
    pub mode: RedisMode,
    /// The sharded adapter's subscription mode.
    pub subscription_mode: SubscriptionMode,
    /// The channel prefix (Node's `key` option).
    pub prefix: String,
    /// How long a question to the other nodes (fetch sockets, all rooms, server-side emits
    /// with ack, broadcasts with acks) waits when the application set no timeout (Node's
    /// `requestsTimeout`).
    pub requests_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            redis_cluster: None,
            redis_ca: None,
            mode: RedisMode::Classic,
            subscription_mode: SubscriptionMode::Dynamic,
            prefix: "socket.io".to_owned(),
            requests_timeout: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
    /// Whether this process joins a cluster at all.
    pub fn is_clustered(&self) -> bool {
        self.redis.is_some() || self.redis_cluster.is_some()
    }
}

/// Which of Node's Redis adapters a cluster speaks (they can't be mixed in one cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// Node's `createAdapter`: classic Pub/Sub (`PUBLISH`, `PSUBSCRIBE`), any Redis.
    #[default]
    Classic,
    /// Node's `createShardedAdapter`: sharded Pub/Sub (`SPUBLISH`, `SSUBSCRIBE`), Redis 7.
    Sharded,
}

/// Which rooms get a channel of their own in the sharded adapter (Node's `subscriptionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// None: every broadcast goes to the namespace's main channel.
    Static,
    /// Every room but socket ids (Node's default).
    #[default]
    Dynamic,
    /// Every room, socket ids included.
    DynamicPrivate,
}

/// Engine.IO transport and heartbeat options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// How often the server pings (EIO=4) or expects a client ping (EIO=3).
    pub ping_interval: Duration,
    /// How long a ping may go unanswered.
    pub ping_timeout: Duration,
    /// Largest message or polling body accepted, in bytes (Node's `maxHttpBufferSize`).
    pub max_payload: usize,
    /// Accept Engine.IO protocol 3 (socket.io-client 1.x/2.x).
    pub allow_eio3: bool,
    /// Bytes queued for one connection before the slow-consumer policy applies.
    pub max_outbound_bytes: usize,
    /// What happens to a client whose queue is full (volatile packets are dropped before
    /// that, whenever the client can't take them at once).
    pub slow_consumer: SlowConsumerPolicy,
    /// A probe WebSocket must complete the upgrade within this long.
    pub upgrade_timeout: Duration,
    /// Sessions open on the whole server (0: no limit but the open-files limit). A handshake
    /// past it is refused with 503.
    pub max_sessions: usize,
    /// Sessions open from one client address (0: no limit). Off by default: many clients can
    /// share an address behind a NAT or a proxy. A handshake past it is refused with 503.
    pub max_sessions_per_ip: usize,
    /// Handshakes one client address may make per second (0: no limit); past it, 429.
    pub handshakes_per_ip_per_second: usize,
    /// Conformance-suite quirk (conformance.md §6): delay the first frame of an EIO=3
    /// WebSocket session so that it never shares a TCP read with the 101 response.
    pub eio3_ws_open_delay: Option<Duration>,
    /// Accept RFC 7692 permessage-deflate when a WebSocket client offers it (off by default,
    /// as on Node's server). Always without context takeover either way: one compressed frame
    /// fits every recipient, and a connection keeps no compression window.
    pub per_message_deflate: bool,
    /// Messages of at least this many bytes are compressed on links that negotiated it
    /// (Node's `threshold`); smaller ones go as they are.
    pub deflate_threshold: usize,
    /// DEFLATE level, 0 (store) to 9 (smallest); Node's zlib default is 6.
    pub deflate_level: u32,
    /// Request headers a handshake keeps with its session (lower-case names), for the
    /// application (`Handshake::header`, `Socket::handshake_header`). None by default: a
    /// session keeps no header.
    pub handshake_headers: Vec<String>,
}

/// HTTP/1.1 connection options (`net`): request heads and client sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Largest HTTP request head accepted.
    pub max_head_bytes: usize,
    /// A connection must send a complete request head within this long of opening or of its
    /// last answer (Node's `headersTimeout` and `keepAliveTimeout` in one), or it is closed: a
    /// partial head gets 408, an idle keep-alive connection is closed silently.
    pub head_timeout: Duration,
    /// The kernel send buffer of each client connection (SO_SNDBUF), when set. The kernel
    /// otherwise grows it to `net.ipv4.tcp_wmem`'s maximum (often 4 MiB) for a client that
    /// stops reading, on top of `max_outbound_bytes`; a small one makes a slow consumer
    /// reach its queue bound sooner and caps kernel memory per connection.
    pub socket_send_buffer: Option<usize>,
}

/// Socket.IO limits and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketIoConfig {
    /// Close an Engine.IO session that has joined no namespace after this long.
    pub connect_timeout: Duration,
    /// Most binary attachments one Socket.IO packet may declare.
    pub max_attachments: usize,
    /// Rooms one socket may join (its own id room not counted); `Socket::join` past it is
    /// refused.
    pub max_rooms_per_socket: usize,
    /// Namespaces one client (Engine.IO session) may join; a CONNECT past it gets
    /// CONNECT_ERROR "Too many namespaces".
    pub max_namespaces_per_client: usize,
    /// How Socket.IO packets are written on the wire; every client of the server must use the
    /// same (Node's `parser` option).
    pub parser: Parser,
    /// Connection state recovery (Node's `connectionStateRecovery`); off when `None`.
    pub recovery: Option<RecoveryConfig>,
}

/// Connection state recovery (socket.io 4.6+): a client that lost its connection and comes
/// back within `window` gets its socket id, rooms and data back, and the events it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// How long a lost socket's session and the packets it may miss are kept (Node's
    /// `maxDisconnectionDuration`, 2 minutes).
    pub window: Duration,
    /// A recovered socket skips the connect middleware (Node's `skipMiddlewares`, on by
    /// default); the authorizer still runs.
    pub skip_middleware: bool,
    /// Stored packets a shard keeps per namespace at most, however recent.
    pub max_packets: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            window: Duration::from_secs(120),
            skip_middleware: true,
            max_packets: 100_000,
        }
    }
}

/// The Socket.IO packet encoding a server speaks (Node's `parser` server option).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parser {
    /// socket.io-parser: text packets with JSON, binary values as attachments.
    #[default]
    Default,
    /// socket.io-msgpack-parser 3.x: one binary MessagePack message per packet.
    Msgpack,
}

/// What the server does with a packet for a client whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close the session ("transport error" on the server; the client may reconnect).
    Disconnect,
    /// Drop the packet and keep the session (the client misses it).
    Drop,
}

/// CORS settings; translated to the codec's form once per shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins; empty means any (`*`).
    pub origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (the origin is then echoed, never `*`).
    pub credentials: bool,
}

impl CorsConfig {
    /// The codec form of these settings.
    pub(crate) fn to_cors(&self) -> Cors {
        Cors {
            origins: if self.origins.is_empty() {
                AllowedOrigins::Any
            } else {
                AllowedOrigins::List(self.origins.clone())
            },
            credentials: self.credentials,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            allow_eio3: true,
            max_outbound_bytes: 4 << 20,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            upgrade_timeout: Duration::from_millis(10_000),
            max_sessions: 0,
            max_sessions_per_ip: 0,
            handshakes_per_ip_per_second: 0,
            eio3_ws_open_delay: None,
            per_message_deflate: false,
            deflate_threshold: 1024,
            deflate_level: 6,
            handshake_headers: Vec::new(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head_bytes: 16 << 10,
            head_timeout: Duration::from_millis(30_000),
            socket_send_buffer: None,
        }
    }
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            connect_timeout: Duration::from_millis(45_000),
            max_attachments: 64,
            max_rooms_per_socket: 10_000,
            max_namespaces_per_client: 100,
            parser: Parser::Default,
            recovery: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            host: IpAddr::from([0, 0, 0, 0]),
            port: 3000,
            pin_cores: true,
            force_epoll: false,
            engine: EngineConfig::default(),
            http: HttpConfig::default(),
            socketio: SocketIoConfig::default(),
            path: "/socket.io/".to_owned(),
            // Any origin, no credentials.
            cors: CorsConfig::default(),
            bus_capacity: 8192,
            stats_path: None,
            metrics_path: None,
            metrics_addr: None,
            cluster: ClusterConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// Normalises an HTTP path to `/name/` form.
pub fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

/// The Socket.IO Admin UI's server side (`@socket.io/admin-ui`'s `instrument()`): an admin
/// namespace that reports every socket and takes the UI's commands. The binary acts on it
/// (`--admin…`); a library server gets it from `Admin::new(…).install(builder)` and
/// `Admin::start(&handle)` (`ui_dir` alone is served by any server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Instrument the server and serve the admin namespace.
    pub enabled: bool,
    /// Basic auth: the username the UI must give (no auth when `None`).
    pub username: Option<String>,
    /// Basic auth: the bcrypt hash (`$2a$`, `$2b$`, `$2y$`) of the password.
    pub password_hash: Option<String>,
    /// Development (every socket, room and event reported) or production (server stats only).
    pub mode: AdminMode,
    /// Offer no commands (join, leave, disconnect, emit) to the UI.
    pub read_only: bool,
    /// How this server names itself in `server_stats`; the hostname when `None`.
    pub server_id: Option<String>,
    /// The admin namespace.
    pub namespace: String,
    /// A folder of the UI's static files (`@socket.io/admin-ui`'s `ui/dist`) to serve at
    /// `ui_path`; not served when `None`.
    pub ui_dir: Option<std::path::PathBuf>,
    /// The HTTP path prefix the UI's files are served under, with trailing slash.
    pub ui_path: String,
}

/// What the admin namespace reports (Node's `mode` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminMode {
    /// Every socket, room and event, plus server stats.
    Development,
    /// Server stats only.
    Production,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: false,
            username: None,
            password_hash: None,
            mode: AdminMode::Development,
            read_only: false,
            server_id: None,
            namespace: "/admin".to_owned(),
            ui_dir: None,
            ui_path: "/admin-ui/".to_owned(),
        }
    }
}
