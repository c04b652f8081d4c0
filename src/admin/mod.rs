//! The Socket.IO Admin UI's server side, as `@socket.io/admin-ui` 0.5's `instrument()` speaks
//! it (spec C): an admin namespace (basic auth against a bcrypt hash, sessions, `config`,
//! `all_sockets`, the UI's `join` / `leave` / `_disconnect` / `emit` commands) and one
//! [`Observer`] per shard that reports each socket's life to it (`socket_connected`,
//! `room_joined`, `event_received`, …), plus `server_stats` every 2 s.
//!
//! Built only on the library's public seams: a [`Namespace`], an observer per shard, the
//! broadcast operators (which reach every shard and every node of a cluster), and a
//! [`ServerHandle`] for the stats. It must not depend on the engine, the shard, the bus or
//! `net`: what it learns of connections comes through [`Socket`].
//!
//! **Sessions.** A password login gets a session id (16 hex characters, sent as `session`
//! after CONNECT), remembered here for [`SESSION_DURATION`]; a later login by `{sessionId}`
//! alone is accepted while it is. On a cluster node (`--redis`, `--redis-cluster`) the server
//! wiring also gives the admin side a [`SessionStore`] over Redis, as Node's admin-ui
//! `RedisStore` keeps them: a new session is written as `SET socket.io-admin#<id> true EX
//! 86400`, and an id this process does not know is looked up with `EXISTS` (from the
//! namespace's async middleware, so no shard waits on Redis). A login made on any node is then
//! good on every node, a Node one included. While Redis does not answer, this process's own
//! sessions are the answer.
//!
//! Cost while nobody watches: every per-message hook first reads one relaxed atomic (a plain
//! load, written only when an admin socket connects or leaves) and returns. Connects,
//! upgrades and disconnects are always tallied (a short uncontended lock per shard) so that
//! the client counts are right when an admin socket arrives later.

pub(crate) mod ui;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use crate::config::{AdminConfig, AdminMode};
use crate::datetime;
use crate::server::{ServerBuilder, ServerHandle, SharedKeys};
use crate::socketio::{
    Args, ConnectError, DisconnectReason, Handshake, Message, Namespace, Observer, OpError, Socket,
    SocketInfo,
};

/// How often the server reports its stats (Node's 2 s).
const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// Sessions remembered; past it the oldest is forgotten (the UI then asks for the password).
const MAX_SESSIONS: usize = 1024;
/// How long a session is good for (Node's `sessionDuration` default, 86400 s): here, and as
/// the expiry of its key in Redis.
const SESSION_DURATION: Duration = Duration::from_secs(86_400);
/// Where Node's `RedisStore` keeps a session: `<prefix>#<sessionId>` (its default prefix).
const SESSION_KEY_PREFIX: &str = "socket.io-admin#";
/// Longer session ids are not looked up in Redis (ours and Node's are 16 characters): a
/// stranger's auth object should not become an arbitrarily long key.
const MAX_SESSION_ID_LEN: usize = 64;
/// Session lookups in the shared store at once; more meanwhile are refused (asked for the
/// password), so a flood of made-up ids cannot fill the Redis link's request queue, which the
/// cluster's own questions use too.
const MAX_LOOKING_UP: usize = 32;
/// bcrypt checks running at once (each takes a thread for tens of milliseconds); more login
/// attempts meanwhile are refused, so a flood of them cannot pile up threads.
const MAX_VERIFYING: usize = 4;
/// The error a refused login gets (Node's message, which the UI shows).
const INVALID_CREDENTIALS: &str = "invalid credentials";

/// The admin side of one server: install it on the builder, then start its stats on the
/// handle.
///
/// ```no_run
/// use ringcast::{Admin, AdminConfig, Server};
///
/// let config = AdminConfig { enabled: true, ..AdminConfig::default() };
/// let admin = Admin::new(config, &["/".to_owned()], "/socket.io/", false);
/// let server = admin.install(Server::builder()).start()?;
/// admin.start(&server);
/// server.wait();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Admin {
    shared: Arc<Shared>,
}

struct Shared {
    config: AdminConfig,
    /// The namespaces `all_sockets` covers (the admin one added).
    namespaces: Vec<String>,
    /// The Socket.IO path, for the handshake `url` the UI shows.
    path: String,
    server_id: String,
    hostname: String,
    started: Instant,
    /// Admin sockets connected to this process; with a cluster, one more forever (an admin
    /// socket on another node must hear this one's sockets, and cannot be counted from here).
    watching: AtomicUsize,
    sessions: Mutex<Sessions>,
    /// Sessions shared with the other nodes, given by the server wiring when the server
    /// starts as a cluster node.
    store: OnceLock<Box<dyn SessionStore>>,
    /// Lookups in `store` under way.
    looking_up: AtomicUsize,
    verifying: AtomicUsize,
    /// Each shard's tally and traffic, registered when its observer is made.
    tallies: Mutex<Vec<ShardStats>>,
}

/// The sessions this process made, each with when it stops being good.
#[derive(Default)]
struct Sessions {
    known: HashMap<String, Instant>,
    order: VecDeque<String>,
}

impl Sessions {
    fn contains(&self, id: &str, now: Instant) -> bool {
        self.known.get(id).is_some_and(|until| now < *until)
    }

    fn insert(&mut self, id: String, until: Instant) {
        if self.order.len() >= MAX_SESSIONS {
            if let Some(old) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
        self.known.insert(id.clone(), until);
        self.order.push_back(id);
    }
}

/// What a lookup in a [`SessionStore`] answers: whether the session is there, or why the
/// store could not say. Awaited on the shard's thread; it must not block it.
type StoreAnswer = Pin<Box<dyn Future<Output = Result<bool, String>> + Send>>;

/// Sessions kept beyond this process, shared by every node of a cluster (Node's admin-ui
/// stores' role). The admin side only names this seam; the server wiring supplies it.
trait SessionStore: Send + Sync {
    /// Keeps session `id` for `ttl`, without waiting (a lost write only means that the other
    /// nodes ask for the password).
    fn save(&self, id: &str, ttl: Duration);
    /// Whether session `id` is kept.
    fn contains(&self, id: &str) -> StoreAnswer;
}

/// Node's `RedisStore`: `SET socket.io-admin#<id> true EX <secs>`, looked up with `EXISTS`.
impl SessionStore for SharedKeys {
    fn save(&self, id: &str, ttl: Duration) {
        if !self.set_ex(&format!("{SESSION_KEY_PREFIX}{id}"), "true", ttl) {
            tracing::debug!("admin session not shared: Redis is unreachable now");
        }
    }

    fn contains(&self, id: &str) -> StoreAnswer {
        Box::pin(self.exists(&format!("{SESSION_KEY_PREFIX}{id}")))
    }
}

/// What the stats thread reads of one shard.
struct ShardStats {
    tally: Arc<Mutex<Tally>>,
    traffic: Arc<Traffic>,
    /// `traffic` as last read, to take the differences (the shard only ever adds).
    seen: [u64; 4],
}

/// One shard's traffic while someone watches, in totals that only its own thread writes:
/// a relaxed load and store each (plain moves, no locked instruction), read by the stats
/// thread, which takes differences.
#[derive(Default)]
struct Traffic {
    /// Packets in, packets out, bytes in, bytes out.
    counts: [AtomicU64; 4],
}

impl Traffic {
    fn add(&self, which: usize, count: u64) {
        let counter = &self.counts[which];
        // Single writer (the shard's thread): no read-modify-write needed.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(count),
            Ordering::Relaxed,
        );
    }
}

const PACKETS_IN: usize = 0;
const PACKETS_OUT: usize = 1;
const BYTES_IN: usize = 2;
const BYTES_OUT: usize = 3;

/// One socket as the tally keeps it.
struct Entry {
    /// Its Engine.IO session id.
    session: String,
    nsp: Arc<str>,
    /// When it connected (epoch milliseconds).
    issued: u64,
}

/// One shard's counts of clients and sockets, kept always (on connect, upgrade and
/// disconnect), and the connections and disconnections since the last bucket.
#[derive(Default)]
struct Tally {
    /// Socket id -> what the tally knows of it.
    sockets: HashMap<String, Entry>,
    /// Engine.IO session id -> (sockets on it, still on polling).
    clients: HashMap<String, (u32, bool)>,
    namespaces: HashMap<Arc<str>, usize>,
    raw_connections: u64,
    raw_disconnections: BTreeMap<&'static str, u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these leaves plain counts behind: still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Admin {
    /// The admin side for `config`, reporting the sockets of `namespaces`, with `path` the
    /// Socket.IO endpoint's and `cluster` whether other nodes may watch through Redis.
    pub fn new(config: AdminConfig, namespaces: &[String], path: &str, cluster: bool) -> Admin {
        let hostname = hostname();
        let server_id = config.server_id.clone().unwrap_or_else(|| hostname.clone());
        let mut all: Vec<String> = namespaces.to_vec();
        if !all.contains(&config.namespace) {
            all.push(config.namespace.clone());
        }
        Admin {
            shared: Arc::new(Shared {
                namespaces: all,
                path: path.to_owned(),
                server_id,
                hostname,
                started: Instant::now(),
                watching: AtomicUsize::new(usize::from(cluster)),
                sessions: Mutex::default(),
                store: OnceLock::new(),
                looking_up: AtomicUsize::new(0),
                verifying: AtomicUsize::new(0),
                tallies: Mutex::default(),
                config,
            }),
        }
    }

    /// Checks the settings: a username needs a valid bcrypt hash of the password, and a UI
    /// folder must hold the UI (it is read now, once for the process).
    pub fn validate(config: &AdminConfig) -> Result<(), String> {
        match (&config.username, &config.password_hash) {
            (None, None) => {}
            (Some(_), Some(hash)) => {
                if let Err(error) = hash.parse::<bcrypt::HashParts>() {
                    return Err(format!("admin password hash: {error}"));
                }
            }
            _ => return Err("the admin username and password hash go together".to_owned()),
        }
        if let Some(dir) = &config.ui_dir {
            if let Err(error) = ui::load(dir, &config.ui_path) {
                return Err(format!("admin UI folder {}: {error}", dir.display()));
            }
        }
        Ok(())
    }

    /// Adds the admin namespace and the observer to `builder` (beside any other observer), and
    /// asks for the cluster's shared keys, where sessions are shared when the server starts as
    /// a cluster node.
    pub fn install(&self, builder: ServerBuilder) -> ServerBuilder {
        let shared = self.shared.clone();
        let stored = self.shared.clone();
        builder
            .on_shared_keys(move |keys| {
                // Set once, before any shard runs: the middleware only reads it.
                let _ = stored.store.set(Box::new(keys));
            })
            .namespace(&self.shared.config.namespace, self.namespace())
            .observer(move |_shard| {
                let tally = Arc::new(Mutex::new(Tally::default()));
                let traffic = Arc::new(Traffic::default());
                lock(&shared.tallies).push(ShardStats {
                    tally: tally.clone(),
                    traffic: traffic.clone(),
                    seen: [0; 4],
                });
                Box::new(ShardObserver {
                    shared: shared.clone(),
                    tally,
                    traffic,
                    writing: Cell::new(false),
                })
            })
    }

    /// Reports `server_stats` every 2 s (and once now) from a thread of its own, until the
    /// server stops.
    pub fn start(&self, server: &ServerHandle) -> std::thread::JoinHandle<()> {
        let shared = self.shared.clone();
        let admin = server.of(&shared.config.namespace);
        std::thread::spawn(move || {
            let mut buckets: Vec<Value> = Vec::new();
            let mut next_report = Instant::now();
            loop {
                let second = datetime::epoch_millis(SystemTime::now()) / 1000 * 1000;
                shared.drain_bucket(second, &mut buckets);
                if Instant::now() >= next_report {
                    next_report += STATS_INTERVAL;
                    let stats = shared.server_stats(std::mem::take(&mut buckets));
                    // Sent whether or not anyone watches (as Node does): one bus message
                    // every 2 s, and how this thread learns that the server stopped.
                    if let Ok(args) = Args::json(&stats) {
                        if let Err(OpError::ServerStopped) = admin.emit("server_stats", &args) {
                            return;
                        }
                    }
                }
                // Wakes once a second for the 1-second buckets.
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    }

    fn namespace(&self) -> Namespace {
        let shared = &self.shared;
        let mut namespace = Namespace::new();
        if let Some(hash) = shared.config.password_hash.clone() {
            let username = shared.config.username.clone().unwrap_or_default();
            let auth = self.shared.clone();
            namespace = namespace.async_middleware(move |handshake: Handshake| {
                authenticate(auth.clone(), username.clone(), hash.clone(), handshake)
            });
        }
        let on_connect = self.shared.clone();
        let on_disconnect = self.shared.clone();
        namespace = namespace
            .on_connect(move |socket| on_connect.admin_connected(socket))
            .on_disconnect(move |_socket, _reason| {
                on_disconnect.watching.fetch_sub(1, Ordering::Relaxed);
            });
        if !shared.config.read_only {
            namespace = namespace
                .on("join", |socket, message, _ack| {
                    command_rooms(socket, &message, true)
                })
                .on("leave", |socket, message, _ack| {
                    command_rooms(socket, &message, false)
                })
                .on("_disconnect", |socket, message, _ack| {
                    command_disconnect(socket, &message)
                })
                .on("emit", |socket, message, _ack| {
                    command_emit(socket, &message)
                });
        }
        namespace
    }
}

async fn authenticate(
    shared: Arc<Shared>,
    username: String,
    hash: String,
    handshake: Handshake,
) -> Result<(), ConnectError> {
    let auth: Value = handshake.auth().unwrap_or(Value::Null);
    if let Some(session) = auth.get("sessionId").and_then(Value::as_str) {
        if lock(&shared.sessions).contains(session, Instant::now()) {
            return Ok(());
        }
        // Made on another node (or by this one before a restart): the shared store knows.
        // Its answer is awaited here, on the shard, as any async middleware's is; an error
        // (Redis down or slow) leaves only the password.
        if let Some(store) = shared.store.get() {
            if session.len() <= MAX_SESSION_ID_LEN {
                if let Some(_slot) = Slot::take(&shared.looking_up, MAX_LOOKING_UP) {
                    if store.contains(session).await == Ok(true) {
                        return Ok(());
                    }
                }
            }
        }
    }
    let given_user = auth.get("username").and_then(Value::as_str);
    let Some(password) = auth.get("password").and_then(Value::as_str) else {
        return Err(ConnectError::new(INVALID_CREDENTIALS));
    };
    if given_user != Some(username.as_str()) {
        return Err(ConnectError::new(INVALID_CREDENTIALS));
    }
    if shared.verifying.fetch_add(1, Ordering::Relaxed) >= MAX_VERIFYING {
        shared.verifying.fetch_sub(1, Ordering::Relaxed);
        return Err(ConnectError::new(INVALID_CREDENTIALS));
    }
    // bcrypt takes tens of milliseconds on purpose: never on the shard's thread.
    let (done, verdict) = futures_channel::oneshot::channel();
    let password = password.to_owned();
    let counter = shared.clone();
    std::thread::spawn(move || {
        let ok = bcrypt::verify(password, &hash).unwrap_or(false);
        counter.verifying.fetch_sub(1, Ordering::Relaxed);
        let _ = done.send(ok);
    });
    match verdict.await {
        Ok(true) => Ok(()),
        _ => Err(ConnectError::new(INVALID_CREDENTIALS)),
    }
}

/// One of a bounded number of places, given back when dropped (the client may leave while
/// its lookup is under way, dropping the middleware's future).
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(taken: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        if taken.fetch_add(1, Ordering::Relaxed) >= max {
            taken.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(taken))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn dev(&self) -> bool {
        self.config.mode == AdminMode::Development
    }

    fn watched(&self) -> bool {
        self.watching.load(Ordering::Relaxed) > 0
    }

    fn admin_connected(&self, socket: &Socket) {
        self.watching.fetch_add(1, Ordering::Relaxed);
        if self.config.password_hash.is_some() {
            // A login with a password gets a new session; one that gave a known session id
            // keeps it. Sent after the CONNECT packet, where the real UI listens (spec C.2).
            let auth: Value = serde_json::from_slice(&socket.auth_raw()).unwrap_or(Value::Null);
            // Past the middleware, a session id with no password was accepted as a session
            // (here or through the shared store); with a password, it is kept if known here.
            let known = auth
                .get("sessionId")
                .and_then(Value::as_str)
                .is_some_and(|id| {
                    auth.get("password").is_none()
                        || lock(&self.sessions).contains(id, Instant::now())
                });
            if !known {
                let id = new_session_id();
                let now = Instant::now();
                lock(&self.sessions).insert(id.clone(), now + SESSION_DURATION);
                if let Some(store) = self.store.get() {
                    store.save(&id, SESSION_DURATION);
                }
                let _ = socket.emit("session", &Args::new().with_str(&id));
            }
        }
        if let Ok(args) = Args::json(&json!({ "supportedFeatures": self.features() })) {
            let _ = socket.emit("config", &args);
        }
        if self.dev() {
            let namespaces = self.namespaces.clone();
            let path = self.path.clone();
            let handle = socket.clone();
            socket.spawn(async move {
                let mut all = Vec::new();
                for nsp in &namespaces {
                    if let Ok(sockets) = handle.of(nsp).fetch_sockets().await {
                        all.extend(sockets.iter().map(|info| serialize_info(info, &path)));
                    }
                }
                if let Ok(args) = Args::json(&Value::Array(all)) {
                    let _ = handle.emit("all_sockets", &args);
                }
            });
        }
    }

    fn features(&self) -> Vec<&'static str> {
        let mut features = Vec::new();
        if !self.config.read_only {
            features.extend(["EMIT", "JOIN", "LEAVE", "DISCONNECT"]);
            features.extend(["MJOIN", "MLEAVE", "MDISCONNECT"]);
        }
        features.push("AGGREGATED_EVENTS");
        if self.dev() {
            features.push("ALL_EVENTS");
        }
        features
    }

    /// Moves every shard's traffic since the last call into `buckets`, stamped `second`.
    fn drain_bucket(&self, second: u64, buckets: &mut Vec<Value>) {
        let mut sum = Tally::default();
        let mut traffic = [0u64; 4];
        for shard in lock(&self.tallies).iter_mut() {
            let mut tally = lock(&shard.tally);
            sum.raw_connections += std::mem::take(&mut tally.raw_connections);
            for (reason, count) in std::mem::take(&mut tally.raw_disconnections) {
                *sum.raw_disconnections.entry(reason).or_default() += count;
            }
            drop(tally);
            for (which, total) in traffic.iter_mut().enumerate() {
                let now = shard.traffic.counts[which].load(Ordering::Relaxed);
                *total += now.wrapping_sub(shard.seen[which]);
                shard.seen[which] = now;
            }
        }
        let counts = [
            ("rawConnection", sum.raw_connections),
            ("packetsIn", traffic[PACKETS_IN]),
            ("packetsOut", traffic[PACKETS_OUT]),
            ("bytesIn", traffic[BYTES_IN]),
            ("bytesOut", traffic[BYTES_OUT]),
        ];
        for (kind, count) in counts {
            if count > 0 {
                buckets.push(json!({ "timestamp": second, "type": kind, "count": count }));
            }
        }
        for (reason, count) in sum.raw_disconnections {
            buckets.push(json!({
                "timestamp": second, "type": "rawDisconnection", "subType": reason, "count": count
            }));
        }
    }

    fn server_stats(&self, aggregated: Vec<Value>) -> Value {
        let mut clients = 0;
        let mut polling = 0;
        let mut namespaces: BTreeMap<String, usize> = self
            .namespaces
            .iter()
            .map(|name| (name.clone(), 0))
            .collect();
        for shard in lock(&self.tallies).iter() {
            let tally = lock(&shard.tally);
            clients += tally.clients.len();
            polling += tally.clients.values().filter(|(_, p)| *p).count();
            for (name, count) in &tally.namespaces {
                *namespaces.entry(name.to_string()).or_default() += count;
            }
        }
        let namespaces: Vec<Value> = namespaces
            .into_iter()
            .map(|(name, count)| json!({ "name": name, "socketsCount": count }))
            .collect();
        json!({
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": clients,
            "pollingClientsCount": polling,
            "aggregatedEvents": aggregated,
            "namespaces": namespaces,
        })
    }
}

/// `join` / `leave` `(nsp, room, filter?)`: every matching socket, cluster-wide.
fn command_rooms(socket: &Socket, message: &Message, join: bool) {
    let (Some(nsp), Some(room)) = (message.str(0), message.str(1)) else {
        return;
    };
    let mut target = socket.of(&nsp);
    if let Some(filter) = message.str(2) {
        target = target.to(&filter);
    }
    let done = if join {
        target.sockets_join([room.as_ref()])
    } else {
        target.sockets_leave([room.as_ref()])
    };
    // Not acknowledged: the UI learns the outcome from room_joined / room_left.
    socket.spawn(async move {
        let _ = done.await;
    });
}

/// `_disconnect` `(nsp, close, filter?)`.
fn command_disconnect(socket: &Socket, message: &Message) {
    let Some(nsp) = message.str(0) else {
        return;
    };
    let close = message.get::<bool>(1).unwrap_or(false);
    let mut target = socket.of(&nsp);
    if let Some(filter) = message.str(2) {
        target = target.to(&filter);
    }
    let done = target.disconnect_sockets(close);
    socket.spawn(async move {
        let _ = done.await;
    });
}

/// `emit` `(nsp, filter?, event, ...args)`.
fn command_emit(socket: &Socket, message: &Message) {
    let (Some(nsp), Some(event)) = (message.str(0), message.str(2)) else {
        return;
    };
    let mut target = socket.of(&nsp);
    if let Some(filter) = message.str(1) {
        target = target.to(&filter);
    }
    target.emit(&event, &message.args_from(3));
}

/// Hears one shard's sockets and reports them to the admin namespace.
struct ShardObserver {
    shared: Arc<Shared>,
    tally: Arc<Mutex<Tally>>,
    traffic: Arc<Traffic>,
    /// Set while this observer writes `data._admin` itself, so that the write is not
    /// reported as the application's.
    writing: Cell<bool>,
}

impl ShardObserver {
    /// Broadcasts an event to every admin socket (every shard, every node).
    fn report(&self, socket: &Socket, event: &str, args: Args) {
        socket.of(&self.shared.config.namespace).emit(event, &args);
    }

    /// Whether per-socket events are reported now.
    fn tracking(&self) -> bool {
        self.shared.dev() && self.shared.watched()
    }

    fn is_admin(&self, socket: &Socket) -> bool {
        *socket.nsp() == *self.shared.config.namespace
    }
}

impl Observer for ShardObserver {
    fn connected(&self, socket: &Socket) {
        let session = socket.session_id().unwrap_or_default();
        let transport = socket.transport().unwrap_or("polling");
        let nsp = socket.nsp();
        let issued = datetime::epoch_millis(SystemTime::now());
        {
            let mut tally = lock(&self.tally);
            let client = tally.clients.entry(session.clone()).or_insert((0, false));
            if client.0 == 0 {
                client.1 = transport == "polling";
                tally.raw_connections += 1;
            }
            if let Some(client) = tally.clients.get_mut(&session) {
                client.0 += 1;
            }
            *tally.namespaces.entry(nsp.clone()).or_default() += 1;
            let entry = Entry {
                session: session.clone(),
                nsp: nsp.clone(),
                issued,
            };
            tally.sockets.insert(socket.id().to_owned(), entry);
        }
        if !self.shared.dev() {
            return;
        }
        let data = self.store_admin_data(socket, socket.data_json(), &session, transport, issued);
        if !self.shared.watched() {
            return;
        }
        let now = datetime::iso(SystemTime::now());
        self.report(
            socket,
            "room_joined",
            Args::new()
                .with_str(&nsp)
                .with_str(socket.id())
                .with_str(socket.id())
                .with_str(&now),
        );
        let info = SocketInfo {
            id: socket.id().to_owned(),
            nsp: nsp.to_string(),
            rooms: socket.rooms(),
            handshake: crate::socketio::HandshakeInfo {
                query: socket.handshake_query().unwrap_or_default(),
                address: socket.address(),
                auth: Value::Null,
                protocol: 5,
            },
            data,
            shard: Some(socket.shard()),
        };
        let serialized = serialize_info(&info, &self.shared.path);
        if let Ok(args) = Args::json(&serialized) {
            self.report(socket, "socket_connected", args.with_str(&now));
        }
    }

    fn joined(&self, socket: &Socket, room: &str) {
        self.report_room(socket, "room_joined", room);
    }

    fn left(&self, socket: &Socket, room: &str) {
        self.report_room(socket, "room_left", room);
    }

    fn event_received(&self, socket: &Socket, event: &str, message: &Message) {
        if !self.shared.watched() {
            return;
        }
        let args = (0..message.len()).map(|index| message.raw(index).unwrap_or(b"null"));
        let len = packet_len(event, args.clone());
        self.traffic.add(PACKETS_IN, 1);
        self.traffic.add(BYTES_IN, len as u64);
        if self.shared.dev() && !self.is_admin(socket) {
            self.report_event(socket, "event_received", &packet(event, args));
        }
    }

    fn event_sent(&self, socket: &Socket, event: &str, args: &Args) {
        if !self.shared.watched() {
            return;
        }
        let json = (!args.is_empty()).then(|| args.json_bytes());
        self.traffic.add(PACKETS_OUT, 1);
        self.traffic.add(BYTES_OUT, packet_len(event, json) as u64);
        // The admin namespace's own traffic is not reported (it would report itself).
        if self.shared.dev() && !self.is_admin(socket) {
            self.report_event(socket, "event_sent", &packet(event, json));
        }
    }

    fn watches_recipients(&self, _event: &str) -> bool {
        // Only development mode reports each recipient; production mode counts them.
        self.shared.watched() && self.shared.dev()
    }

    fn broadcast_sent(&self, event: &str, args: &Args, recipients: usize) {
        if !self.shared.watched() {
            return;
        }
        let json = (!args.is_empty()).then(|| args.json_bytes());
        let len = packet_len(event, json) as u64;
        self.traffic.add(PACKETS_OUT, recipients as u64);
        self.traffic.add(BYTES_OUT, len * recipients as u64);
    }

    fn upgraded(&self, socket: &Socket, transport: &str) {
        if let Some(session) = socket.session_id() {
            if let Some(client) = lock(&self.tally).clients.get_mut(&session) {
                client.1 = transport == "polling";
            }
        }
        if !self.shared.dev() {
            return;
        }
        let entry = lock(&self.tally)
            .sockets
            .get(socket.id())
            .map(|entry| (entry.session.clone(), entry.issued));
        if let Some((session, issued)) = entry {
            self.store_admin_data(socket, socket.data_json(), &session, transport, issued);
        }
        if self.shared.watched() {
            let update =
                json!({ "id": socket.id(), "nsp": &*socket.nsp(), "transport": transport });
            if let Ok(args) = Args::json(&update) {
                self.report(socket, "socket_updated", args);
            }
        }
    }

    fn data_changed(&self, socket: &Socket) {
        if self.writing.get() || !self.shared.dev() {
            return;
        }
        let mut data = socket.data_json();
        // The application replaced the data: `_admin` goes back in (as Node's proxy keeps it).
        if data.get("_admin").is_none() {
            let entry = lock(&self.tally)
                .sockets
                .get(socket.id())
                .map(|entry| (entry.session.clone(), entry.issued));
            if let Some((session, issued)) = entry {
                let transport = socket.transport().unwrap_or("polling");
                data = self.store_admin_data(socket, data, &session, transport, issued);
            }
        }
        if self.shared.watched() {
            if let Value::Object(map) = &mut data {
                map.remove("_admin");
            }
            let update = json!({ "id": socket.id(), "nsp": &*socket.nsp(), "data": data });
            if let Ok(args) = Args::json(&update) {
                self.report(socket, "socket_updated", args);
            }
        }
    }

    fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        {
            let mut tally = lock(&self.tally);
            if let Some(Entry { session, nsp, .. }) = tally.sockets.remove(socket.id()) {
                if let Some(count) = tally.namespaces.get_mut(&nsp) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        tally.namespaces.remove(&nsp);
                    }
                }
                let gone = match tally.clients.get_mut(&session) {
                    Some(client) => {
                        client.0 = client.0.saturating_sub(1);
                        client.0 == 0
                    }
                    None => false,
                };
                if gone {
                    tally.clients.remove(&session);
                    if self.shared.watched() {
                        *tally.raw_disconnections.entry(reason.as_str()).or_default() += 1;
                    }
                }
            }
        }
        if self.tracking() {
            let args = Args::new()
                .with_str(&socket.nsp())
                .with_str(socket.id())
                .with_str(reason.as_str())
                .with_str(&datetime::iso(SystemTime::now()));
            self.report(socket, "socket_disconnected", args);
            // The library reports no leave of the socket's own id room; Node's adapter does.
            let args = Args::new()
                .with_str(&socket.nsp())
                .with_str(socket.id())
                .with_str(socket.id())
                .with_str(&datetime::iso(SystemTime::now()));
            self.report(socket, "room_left", args);
        }
    }
}

impl ShardObserver {
    /// Keeps `{clientId, transport, issued}` in the socket's data as `_admin`, as Node does,
    /// so that fetch_sockets (here and on other nodes, a Node-hosted UI included) can tell
    /// the client and transport (spec A.4). Returns the data stored.
    fn store_admin_data(
        &self,
        socket: &Socket,
        data: Value,
        session: &str,
        transport: &str,
        issued: u64,
    ) -> Value {
        let client_id: String = session.chars().take(12).collect();
        let mut data = match data {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            // Node's socket.data is always an object; an application's value of another kind
            // is left as it is (the UI then shows no client id for it).
            other => return other,
        };
        data.insert(
            "_admin".to_owned(),
            json!({ "clientId": client_id, "transport": transport, "issued": issued }),
        );
        let data = Value::Object(data);
        self.writing.set(true);
        let _ = socket.set_data(&data);
        self.writing.set(false);
        data
    }

    /// `room_joined` or `room_left`: the namespace, the room, the socket and when.
    fn report_room(&self, socket: &Socket, event: &str, room: &str) {
        if self.tracking() {
            let args = Args::new()
                .with_str(&socket.nsp())
                .with_str(room)
                .with_str(socket.id())
                .with_str(&datetime::iso(SystemTime::now()));
            self.report(socket, event, args);
        }
    }

    fn report_event(&self, socket: &Socket, event: &str, raw: &[u8]) {
        if let Ok(args) = Args::new()
            .with_str(&socket.nsp())
            .with_str(socket.id())
            .with_raw(raw)
        {
            self.report(
                socket,
                event,
                args.with_str(&datetime::iso(SystemTime::now())),
            );
        }
    }
}

/// An event's data array as JSON, `[event, ...args]` (each argument already JSON).
fn packet<'a>(event: &str, args: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut raw = Vec::new();
    raw.push(b'[');
    raw.extend_from_slice(serde_json::to_string(event).unwrap_or_default().as_bytes());
    for arg in args {
        raw.push(b',');
        raw.extend_from_slice(arg);
    }
    raw.push(b']');
    raw
}

/// The length of [`packet`]'s JSON, counted without writing it (the traffic counts of every
/// message sent and received while an admin socket watches).
fn packet_len<'a>(event: &str, args: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let escapes: usize = event
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    let args: usize = args.into_iter().map(|arg| arg.len() + 1).sum();
    2 + event.len() + 2 + escapes + args
}

/// A socket as the UI shows it (Node's `SerializedSocket`): client id and transport from
/// `data._admin`, `data` without it.
fn serialize_info(info: &SocketInfo, path: &str) -> Value {
    let mut data = match &info.data {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let admin = data.remove("_admin").unwrap_or(Value::Null);
    let issued = admin
        .get("issued")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| datetime::epoch_millis(SystemTime::now()));
    let query: Map<String, Value> = info
        .handshake
        .query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), Value::from(percent_decode(value)))
        })
        .collect();
    let query_string = &info.handshake.query;
    json!({
        "id": info.id,
        "clientId": admin.get("clientId").cloned().unwrap_or(Value::Null),
        "transport": admin.get("transport").cloned().unwrap_or(Value::Null),
        "nsp": info.nsp,
        "data": data,
        "handshake": {
            "address": info.handshake.address.map(|a| a.ip().to_string()),
            "headers": {},
            "query": query,
            "issued": issued,
            "secure": false,
            "time": datetime::js_date_string(issued),
            "url": format!("{path}?{query_string}"),
            "xdomain": false,
        },
        "rooms": info.rooms,
    })
}

/// `%XX` and `+` decoded; anything malformed is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' && index + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[index + 1]), hex(bytes[index + 2])) {
                out.push(high << 4 | low);
                index += 3;
                continue;
            }
        }
        out.push(if byte == b'+' { b' ' } else { byte });
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// 8 random bytes as 16 hex characters (Node's session ids).
fn new_session_id() -> String {
    let mut bytes = [0u8; 8];
    // The OS CSPRNG; failing it, the time (a session id is a bearer secret, but an OS without
    // getrandom has bigger problems, and the login still needed the password).
    if getrandom::getrandom(&mut bytes).is_err() {
        bytes = datetime::epoch_millis(SystemTime::now()).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "localhost".to_owned();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_lengths_are_counted_without_writing_the_packet() {
        let cases: [(&str, &[&[u8]]); 4] = [
            ("message", &[br#""hello""#, b"1"]),
            ("no-args", &[]),
            ("quote\"and\\back\nslash", &[b"null"]),
            ("bell\u{7}", &[br#"{"a":[1,2]}"#]),
        ];
        for (event, args) in cases {
            let written = packet(event, args.iter().copied());
            assert_eq!(
                packet_len(event, args.iter().copied()),
                written.len(),
                "{event}"
            );
        }
    }

    #[test]
    fn features_follow_the_mode() {
        let make = |mode, read_only| {
            let config = AdminConfig {
                enabled: true,
                mode,
                read_only,
                ..AdminConfig::default()
            };
            Admin::new(config, &["/".to_owned()], "/socket.io/", false)
                .shared
                .features()
        };
        assert_eq!(
            make(AdminMode::Development, false),
            [
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
                "AGGREGATED_EVENTS",
                "ALL_EVENTS"
            ]
        );
        assert_eq!(
            make(AdminMode::Production, false),
            [
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
                "AGGREGATED_EVENTS"
            ]
        );
        assert_eq!(
            make(AdminMode::Development, true),
            ["AGGREGATED_EVENTS", "ALL_EVENTS"]
        );
    }

    #[test]
    fn hashes_are_checked() {
        let mut config = AdminConfig {
            username: Some("admin".to_owned()),
            password_hash: Some(
                "$2b$10$heqvAkYMez.Va6Et2uXInOnkCT6/uQj1brkrbyG3LpopDklcq7ZOS".to_owned(),
            ),
            ..AdminConfig::default()
        };
        assert!(Admin::validate(&config).is_ok());
        config.password_hash = Some("not a hash".to_owned());
        assert!(Admin::validate(&config).is_err());
        config.password_hash = None;
        assert!(Admin::validate(&config).is_err());
    }

    #[test]
    fn every_bcrypt_prefix_node_accepts_verifies() {
        let parts = bcrypt::hash_with_result("changeit", 4).expect("hash");
        for version in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoY,
        ] {
            let hash = parts.format_for_version(version);
            let config = AdminConfig {
                username: Some("admin".to_owned()),
                password_hash: Some(hash.clone()),
                ..AdminConfig::default()
            };
            assert!(Admin::validate(&config).is_ok(), "{hash}");
            assert_eq!(bcrypt::verify("changeit", &hash).ok(), Some(true), "{hash}");
            assert_eq!(bcrypt::verify("wrong", &hash).ok(), Some(false), "{hash}");
        }
    }

    /// A store answering from a fixed list, or failing as Redis down does.
    struct FakeStore {
        known: Vec<&'static str>,
        down: bool,
    }

    impl SessionStore for FakeStore {
        fn save(&self, _id: &str, _ttl: Duration) {}

        fn contains(&self, id: &str) -> StoreAnswer {
            let answer = if self.down {
                Err("down".to_owned())
            } else {
                Ok(self.known.contains(&id))
            };
            Box::pin(std::future::ready(answer))
        }
    }

    #[test]
    fn sessions_are_looked_up_here_then_in_the_store() {
        use futures_util::FutureExt;
        let hash = bcrypt::hash_with_result("changeit", 4)
            .expect("hash")
            .to_string();
        let config = AdminConfig {
            enabled: true,
            username: Some("admin".to_owned()),
            password_hash: Some(hash.clone()),
            ..AdminConfig::default()
        };
        let admin = Admin::new(config, &["/".to_owned()], "/socket.io/", true);
        let shared = admin.shared.clone();
        let now = Instant::now();
        lock(&shared.sessions).insert("local".to_owned(), now + SESSION_DURATION);
        lock(&shared.sessions).insert("stale".to_owned(), now);
        let login = |auth: &str| {
            let handshake = Handshake {
                nsp: "/admin".into(),
                auth: bytes::Bytes::from(auth.to_owned()),
                protocol: 5,
                query: "".into(),
                address: None,
                headers: Box::default(),
            };
            let verdict = authenticate(shared.clone(), "admin".to_owned(), hash.clone(), handshake);
            verdict
                .now_or_never()
                .expect("no password: answered at once")
                .is_ok()
        };
        // No store yet (Redis off): this process's sessions are the answer.
        assert!(login(r#"{"sessionId":"local"}"#));
        assert!(!login(r#"{"sessionId":"stale"}"#));
        assert!(!login(r#"{"sessionId":"remote"}"#));
        let store = FakeStore {
            known: vec!["remote"],
            down: false,
        };
        assert!(shared.store.set(Box::new(store)).is_ok());
        assert!(login(r#"{"sessionId":"remote"}"#));
        // Too many lookups under way: refused without asking; a lookup's slot comes back.
        shared.looking_up.store(MAX_LOOKING_UP, Ordering::Relaxed);
        assert!(!login(r#"{"sessionId":"remote"}"#));
        shared
            .looking_up
            .store(MAX_LOOKING_UP - 1, Ordering::Relaxed);
        assert!(login(r#"{"sessionId":"remote"}"#));
        assert_eq!(
            shared.looking_up.load(Ordering::Relaxed),
            MAX_LOOKING_UP - 1
        );
        shared.looking_up.store(0, Ordering::Relaxed);
        assert!(login(r#"{"sessionId":"local"}"#));
        assert!(!login(r#"{"sessionId":"unknown"}"#));
        assert!(!login(&format!(r#"{{"sessionId":"{}"}}"#, "r".repeat(65))));
        assert!(!login(r#"{"sessionId":5}"#));
        let down = Admin::new(AdminConfig::default(), &[], "/socket.io/", true);
        let store = FakeStore {
            known: vec!["remote"],
            down: true,
        };
        assert!(down.shared.store.set(Box::new(store)).is_ok());
        let handshake = Handshake {
            nsp: "/admin".into(),
            auth: bytes::Bytes::from_static(br#"{"sessionId":"remote"}"#),
            protocol: 5,
            query: "".into(),
            address: None,
            headers: Box::default(),
        };
        let verdict = authenticate(down.shared.clone(), "admin".to_owned(), hash, handshake);
        assert!(verdict.now_or_never().is_some_and(|v| v.is_err()));
    }

    #[test]
    fn queries_decode() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
