//! The library's front door: [`Server::builder`] collects the config, namespaces and
//! observer, then [`ServerBuilder::start`] binds the listeners and starts one shard thread per
//! core. The [`ServerHandle`] it returns stops the server and, through [`ServerHandle::of`],
//! reaches its sockets from any thread.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bus;
use crate::config::{normalize_path, Config};
use crate::engine::{Admission, AdmissionLimits};
use crate::key::ShardId;
use crate::net::redis::{CommandError, RedisLink};
/// What the HTTP API's router factory gets on each shard (the control module names it here).
pub(crate) use crate::shard::ApiShard;
use crate::shard::{self, ApiPlan, ApiRouterFactory, App, Cluster, Control, Plan, ShardMsg};
use crate::socketio::{
    selecting_methods, Args, BroadcastAcks, BroadcastOperator, Command, Message, Namespace,
    Namespaces, Observer, OpError, OpFuture, Selection, SocketInfo, DEFAULT_TIMEOUT,
};

/// A Socket.IO server: build it, start it, keep the handle.
///
/// ```no_run
/// use ringcast::{Args, Namespace, Server};
///
/// let chat = Namespace::new().on("chat", |socket, message, _ack| {
///     socket.namespace().emit("chat", &message.to_args());
/// });
/// let server = Server::builder().namespace("/", chat).start().unwrap();
/// server.wait();
/// ```
pub struct Server;

impl Server {
    /// A builder with Node's defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: Config::default(),
            namespaces: Namespaces::default(),
            echo_paths: Vec::new(),
            on_shared_keys: Vec::new(),
            api: None,
            counters: None,
        }
    }
}

/// Collects configuration and namespaces.
pub struct ServerBuilder {
    config: Config,
    namespaces: Namespaces,
    echo_paths: Vec<String>,
    /// Given the cluster's shared keys when the server starts as a cluster node.
    on_shared_keys: Vec<Box<dyn FnOnce(SharedKeys) + Send>>,
    /// The HTTP API's address and per-shard router factory, when it is served.
    api: Option<(SocketAddr, Arc<ApiRouterFactory>)>,
    /// Counters of the layers above the shards, for the metrics route.
    counters: Option<Arc<crate::metrics::FamilySource>>,
}

impl ServerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Changes the configuration in place.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// Serves a namespace (`/` is the main one).
    pub fn namespace(mut self, name: &str, namespace: Namespace) -> Self {
        self.namespaces
            .declared
            .insert(name.into(), Arc::new(namespace));
        self
    }

    /// Serves every namespace whose name `admits` accepts, each created on first use.
    pub fn dynamic_namespace(
        mut self,
        admits: impl Fn(&str) -> bool + Send + Sync + 'static,
        namespace: Namespace,
    ) -> Self {
        self.namespaces
            .dynamic
            .push((Arc::new(admits), Arc::new(namespace)));
        self
    }

    /// Watches every socket's lifecycle: `make(shard)` builds one observer per shard, used on
    /// that shard's thread only (see [`Observer`]). Called again, it adds another observer:
    /// each hears every call, in the order they were added.
    pub fn observer(
        mut self,
        make: impl Fn(ShardId) -> Box<dyn Observer> + Send + Sync + 'static,
    ) -> Self {
        self.namespaces.observers.push(Arc::new(make));
        self
    }

    /// Also serves a bare Engine.IO endpoint at `path` that echoes every message (what the
    /// official Engine.IO test suites drive).
    pub fn engine_echo(mut self, path: &str) -> Self {
        self.echo_paths.push(normalize_path(path));
        self
    }

    /// Has `give` called with the keys the cluster's nodes share (in Redis) when the server
    /// starts as a cluster node, before any shard runs; never called without a cluster.
    pub(crate) fn on_shared_keys(mut self, give: impl FnOnce(SharedKeys) + Send + 'static) -> Self {
        self.on_shared_keys.push(Box::new(give));
        self
    }

    /// Has every metrics scrape also report the counter families `count` answers (the
    /// control plane's, counted above the shards).
    pub(crate) fn counters(
        mut self,
        count: impl Fn() -> Vec<crate::metrics::Family> + Send + Sync + 'static,
    ) -> Self {
        self.counters = Some(Arc::new(count));
        self
    }

    /// Serves an HTTP API on `addr` from every shard (one SO_REUSEPORT listener each, bound
    /// by [`ServerBuilder::start`] so that a taken address fails the start); `factory`
    /// builds each shard's router (`control::api` supplies it).
    pub(crate) fn api(
        mut self,
        addr: SocketAddr,
        factory: impl Fn(ApiShard) -> crate::net::Router + Send + Sync + 'static,
    ) -> Self {
        self.api = Some((addr, Arc::new(factory)));
        self
    }

    /// Binds the listeners and starts the shards.
    pub fn start(self) -> io::Result<ServerHandle> {
        let mut config = self.config;
        config.cores = config.cores.max(1);
        config.path = normalize_path(&config.path);
        let shards = config.cores;
        if shards > u16::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many cores",
            ));
        }
        let addr = SocketAddr::new(config.host, config.port);
        if config.port != 0 {
            shard::ensure_port_free(addr)?;
        }
        let mut listeners = shard::bind_listeners(addr, 1)?;
        // With port 0 the first bind picks the port; the others join it.
        let addr = listeners[0].local_addr()?;
        listeners.extend(shard::bind_listeners(addr, shards - 1)?);
        // Bound here, as the main listeners are, so that a taken address fails the start.
        let metrics_listener = config.metrics_addr.map(bind_metrics_listener).transpose()?;
        if let Some(listener) = &metrics_listener {
            tracing::info!(addr = %listener.local_addr()?, "metrics listening");
        }
        let (api, api_addr) = match self.api {
            Some((addr, factory)) => {
                let (listeners, addr) = bind_api_listeners(addr, shards)?;
                tracing::info!(%addr, "HTTP API listening");
                (Some(ApiPlan::new(listeners, factory)), Some(addr))
            }
            None => (None, None),
        };
        if config.force_epoll {
            tracing::info!("using the epoll driver (--epoll)");
        } else if !monoio::utils::detect_uring() {
            tracing::warn!("io_uring is not available; using the epoll driver");
        }
        let mut endpoints = vec![(config.path.clone(), App::SocketIo)];
        endpoints.extend(self.echo_paths.into_iter().map(|p| (p, App::EngineEcho)));
        let bus_capacity = config.bus_capacity;
        let pin = config.pin_cores;
        let limits = AdmissionLimits {
            max_sessions: config.engine.max_sessions,
            max_sessions_per_ip: config.engine.max_sessions_per_ip,
            handshakes_per_ip_per_second: config.engine.handshakes_per_ip_per_second,
        };
        let clustered = config.cluster.is_clustered();
        let default_timeout = if clustered {
            config.cluster.requests_timeout
        } else {
            DEFAULT_TIMEOUT
        };
        // The shards, the handle's control end, and with a cluster the Redis link's end.
        let mut ends = bus::mesh::<ShardMsg>(shards + 1 + usize::from(clustered), bus_capacity);
        let cluster = match ends.pop() {
            Some(to_shards) if clustered => {
                let namespaces = self.namespaces.declared.keys().map(|n| n.to_string());
                Some(Cluster::start(
                    &config.cluster,
                    namespaces,
                    to_shards,
                    shards as u16,
                    config.socketio.parser,
                    config
                        .engine
                        .per_message_deflate
                        .then_some(config.engine.deflate_threshold),
                    config.socketio.recovery.as_ref(),
                )?)
            }
            Some(control) => {
                ends.push(control);
                None
            }
            None => None,
        };
        if let Some(cluster) = &cluster {
            for give in self.on_shared_keys {
                give(SharedKeys {
                    link: cluster.link().clone(),
                    prefix: config.cluster.prefix.as_str().into(),
                });
            }
        }
        let control = ends
            .pop()
            .unwrap_or_else(|| unreachable!("mesh has shards + 1 ends"));
        let control = Arc::new(Mutex::new(Control {
            endpoint: control,
            running: vec![true; shards],
        }));
        // With recovery on, every shard must see every stored broadcast to log it (a session
        // it kept may be in the room), so broadcasts go everywhere.
        let directory = (shards > 1
            && shards <= crate::directory::MAX_SHARDS
            && config.socketio.recovery.is_none())
        .then(|| Arc::new(crate::directory::RoomDirectory::new()));
        let plan = Arc::new(Plan {
            config,
            endpoints,
            namespaces: Arc::new(self.namespaces),
            admission: limits.any().then(|| Arc::new(Admission::new(limits))),
            control: control.clone(),
            cluster,
            metrics_listener: Mutex::new(metrics_listener),
            api,
            counters: self.counters,
            directory,
        });
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut threads = Vec::with_capacity(shards);
        for (index, (listener, end)) in listeners.into_iter().zip(ends).enumerate() {
            let plan = plan.clone();
            let core = cores.get(index % cores.len().max(1)).copied();
            let thread = std::thread::Builder::new()
                .name(format!("ringcast-shard-{index}"))
                .spawn(move || {
                    if let (true, Some(core)) = (pin, core) {
                        core_affinity::set_for_current(core);
                    }
                    if let Err(error) = shard::run(ShardId::new(index as u16), plan, listener, end)
                    {
                        tracing::error!(shard = index, %error, "shard failed");
                    }
                })?;
            threads.push(thread);
        }
        tracing::info!(%addr, shards, "ringcast listening");
        Ok(ServerHandle {
            addr,
            api_addr,
            threads,
            control,
            next_shard: Arc::new(AtomicUsize::new(0)),
            default_timeout,
        })
    }
}

/// Runs `task` on the calling shard's runtime, beside its sockets (the control plane's
/// delivery lanes). Only on a shard's thread.
pub(crate) fn shard_spawn(task: impl std::future::Future<Output = ()> + 'static) {
    drop(monoio::spawn(task));
}

/// While kept, a graceful shutdown of the calling shard waits (within its grace) as it waits for
/// sessions: work the shard should finish before it stops (events still to be delivered). Only
/// on a shard's thread.
pub(crate) fn shard_hold() -> crate::shard::Hold {
    crate::shard::Hold::new()
}

/// Sleeps on the calling shard's runtime: the timer for the layers above the shards that may
/// not name the runtime (the control plane's token deadlines). Only on a shard's thread.
pub(crate) fn shard_sleep(duration: Duration) -> impl std::future::Future<Output = ()> {
    monoio::time::sleep(duration)
}

/// Keys every node of the cluster sees (the process's Redis link: `SET … EX`, `SET … NX PX`,
/// `SET … PX`, `GET`, `EXISTS`, `DEL` and scans by pattern, on a Redis Cluster at the master
/// owning the key's slot). Nothing here blocks: a write is
/// queued and forgotten, a lookup is a future the caller's runtime awaits (a shard's too).
#[derive(Clone)]
pub(crate) struct SharedKeys {
    link: RedisLink,
    /// The cluster's key prefix (`cluster.prefix`), which every key of ours starts with.
    prefix: Arc<str>,
}

impl SharedKeys {
    /// The cluster's key prefix (`cluster.prefix`, Node's `key` option).
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Writes `key = value` expiring after `ttl` (whole seconds, at least one), without
    /// waiting; false when it could not even be queued (Redis unreachable now, too busy).
    pub(crate) fn set_ex(&self, key: &str, value: &str, ttl: Duration) -> bool {
        self.link.set_ex(key, value, ttl.as_secs()).is_ok()
    }

    /// Whether `key` exists; an error (as text) when Redis did not say (down, too slow).
    pub(crate) fn exists(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send + 'static {
        let answer = self.link.exists(key);
        async move {
            answer
                .await
                .map_err(|error: CommandError| error.to_string())
        }
    }

    /// Deletes `key`, without waiting; false when it could not even be queued (Redis
    /// unreachable now, too busy).
    pub(crate) fn delete(&self, key: &str) -> bool {
        self.link.delete(key).is_ok()
    }

    /// Sets `key = value` expiring after `ttl` (milliseconds, at least one) unless `key` is
    /// there: true when this call set it (one caller in the whole cluster wins); an error (as
    /// text) when Redis did not say (down, too slow).
    pub(crate) fn set_nx_px(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> impl std::future::Future<Output = Result<bool, String>> + Send + 'static {
        let answer = self.link.set_nx_px(key, value, millis(ttl));
        async move {
            answer
                .await
                .map_err(|error: CommandError| error.to_string())
        }
    }

    /// Writes `key = value` expiring after `ttl` (milliseconds, at least one), without
    /// waiting; false when it could not even be queued (Redis unreachable now, too busy).
    pub(crate) fn set_px(&self, key: &str, value: &str, ttl: Duration) -> bool {
        self.link.set_px(key, value, millis(ttl)).is_ok()
    }

    /// The value of `key`, `None` when it is not there; an error (as text) when Redis did not
    /// say (down, too slow) or `key` holds no text.
    pub(crate) fn get(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = Result<Option<String>, String>> + Send + 'static {
        let answer = self.link.get(key);
        async move {
            answer
                .await
                .map_err(|error: CommandError| error.to_string())
        }
    }

    /// Every key matching the Redis glob `pattern` that holds a string, with its value, sorted
    /// by key, at most `limit` of them (on a Redis Cluster, from every master); an error (as
    /// text) when Redis did not answer all of it (down, too slow).
    pub(crate) fn scan_values(
        &self,
        pattern: &str,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<(String, String)>, String>> + Send + 'static
    {
        let answer = self.link.scan_values(pattern, limit);
        async move {
            answer
                .await
                .map_err(|error: CommandError| error.to_string())
        }
    }
}

/// `ttl` in whole milliseconds for `PX`, at least one (`PX 0` is an error in Redis).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    /// Where the HTTP API listens, when it is served.
    api_addr: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    control: Arc<Mutex<Control>>,
    /// The shard the next [`ServerHandle::of`] hands its work to (spread round-robin).
    next_shard: Arc<AtomicUsize>,
    /// How long operations wait when the application set no timeout.
    default_timeout: Duration,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the HTTP API listens on, when it is served.
    pub(crate) fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// Blocks until every shard has stopped.
    pub fn wait(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }

    /// Emits and runs server-wide operations on namespace `nsp` from outside a handler: from
    /// any thread, a tokio task of the embedding application, a timer, a CLI command. The
    /// operator is `Send` and `Clone`; it hands each call to one shard (the same one for this
    /// operator and its clones, so its emits keep their order), which runs it as a handler's
    /// operator would, on every shard.
    pub fn of(&self, nsp: &str) -> ServerOperator {
        let shards = self.threads.len().max(1);
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % shards;
        ServerOperator {
            control: self.control.clone(),
            // Below the shard count, which `start` checked fits a shard id.
            shard: ShardId::new(shard as u16),
            selection: Selection::new(nsp.into(), None, self.default_timeout),
        }
    }

    /// Whether every shard has stopped.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Shuts down gracefully and waits: every shard stops accepting, sends what is queued for
    /// each client, closes every session ("server shutting down"; a client may reconnect
    /// elsewhere), and stops once its connections are done or `grace` has passed.
    pub fn shutdown(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let idle: Arc<[AtomicBool]> = (0..self.threads.len())
            .map(|_| AtomicBool::new(false))
            .collect();
        for shard in 0..self.threads.len() {
            let idle = idle.clone();
            lock(&self.control)
                .endpoint
                .send(shard, ShardMsg::Shutdown { deadline, idle });
        }
        self.wait();
    }

    /// Stops every shard and waits for them (connections are dropped).
    pub fn stop(self) {
        for shard in 0..self.threads.len() {
            lock(&self.control).endpoint.send(shard, ShardMsg::Stop);
        }
        self.wait();
    }
}

/// The control end of the bus, shared by the handle's users on any thread.
fn lock(control: &Mutex<Control>) -> MutexGuard<'_, Control> {
    // A panic while holding it left nothing half-written: sends are single pushes.
    control.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A [`BroadcastOperator`] for any thread: selects sockets of one namespace on every shard and
/// emits to them or runs an operation on them. Made by [`ServerHandle::of`].
#[derive(Clone)]
pub struct ServerOperator {
    control: Arc<Mutex<Control>>,
    shard: ShardId,
    selection: Selection,
}

impl std::fmt::Debug for ServerOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ServerOperator")
            .field(&self.selection)
            .finish()
    }
}

impl ServerOperator {
    selecting_methods!();

    /// Emits to every matching socket. Fails only if the shard cannot take the work now.
    pub fn emit(&self, event: &str, args: &Args) -> Result<(), OpError> {
        let (event, args) = (event.to_owned(), args.clone());
        self.submit(move |operator| {
            operator.emit(&event, &args);
        })
    }

    /// Emits and gathers every recipient's ack, until all have answered or the timeout.
    pub fn emit_with_ack(&self, event: &str, args: &Args) -> OpFuture<BroadcastAcks> {
        let (event, args) = (event.to_owned(), args.clone());
        self.call(move |operator| {
            let (answer, complete) = OpFuture::channel();
            operator.emit_with_ack(&event, &args, move |acks| complete(Ok(acks)));
            answer
        })
    }

    /// Describes every matching socket (see [`BroadcastOperator::fetch_sockets`]).
    pub fn fetch_sockets(&self) -> OpFuture<Vec<SocketInfo>> {
        self.call(BroadcastOperator::fetch_sockets)
    }

    /// Joins every matching socket to each of `rooms`; answers how many matched.
    pub fn sockets_join<R: AsRef<str>>(
        &self,
        rooms: impl IntoIterator<Item = R>,
    ) -> OpFuture<usize> {
        let rooms: Vec<String> = rooms.into_iter().map(|r| r.as_ref().to_owned()).collect();
        self.call(move |operator| operator.sockets_join(rooms))
    }

    /// Takes every matching socket out of each of `rooms`; answers how many matched.
    pub fn sockets_leave<R: AsRef<str>>(
        &self,
        rooms: impl IntoIterator<Item = R>,
    ) -> OpFuture<usize> {
        let rooms: Vec<String> = rooms.into_iter().map(|r| r.as_ref().to_owned()).collect();
        self.call(move |operator| operator.sockets_leave(rooms))
    }

    /// Disconnects every matching socket (or, with `close`, closes its connection).
    pub fn disconnect_sockets(&self, close: bool) -> OpFuture<usize> {
        self.call(move |operator| operator.disconnect_sockets(close))
    }

    /// Every room of the namespace that has a member anywhere.
    pub fn all_rooms(&self) -> OpFuture<Vec<String>> {
        self.call(BroadcastOperator::all_rooms)
    }

    /// Sends an event to the other servers' handlers of it (see
    /// [`BroadcastOperator::server_side_emit`]). Fails only if the shard cannot take the work
    /// now.
    pub fn server_side_emit(&self, event: &str, args: &Args) -> Result<(), OpError> {
        let (event, args) = (event.to_owned(), args.clone());
        self.submit(move |operator| operator.server_side_emit(&event, &args))
    }

    /// Sends an event to the other servers' handlers and gathers their acks (see
    /// [`BroadcastOperator::server_side_emit_with_ack`]).
    pub fn server_side_emit_with_ack(&self, event: &str, args: &Args) -> OpFuture<Vec<Message>> {
        let (event, args) = (event.to_owned(), args.clone());
        self.call(move |operator| operator.server_side_emit_with_ack(&event, &args))
    }

    /// How many servers serve the namespace (see [`BroadcastOperator::server_count`]).
    pub fn server_count(&self) -> OpFuture<usize> {
        self.call(BroadcastOperator::server_count)
    }

    /// Runs an operation on the shard and hands its answer back across threads.
    fn call<T: Send + 'static>(
        &self,
        operate: impl FnOnce(BroadcastOperator) -> OpFuture<T> + Send + 'static,
    ) -> OpFuture<T> {
        let (answer, complete) = OpFuture::channel();
        let submitted = self.submit(move |operator| {
            let io = operator.io().clone();
            let local = operate(operator);
            io.spawn(Box::pin(async move { complete(local.await) }));
        });
        match submitted {
            Ok(()) => answer,
            Err(error) => OpFuture::ready(Err(error)),
        }
    }

    /// Hands `run` to this operator's shard, with a local operator built like this one.
    fn submit(&self, run: impl FnOnce(BroadcastOperator) + Send + 'static) -> Result<(), OpError> {
        // The deadline is fixed now, on the caller's clock, not when the shard gets to it.
        let deadline = Instant::now() + self.selection.timeout();
        // Not `self`: a command that held the control end would keep it alive from its ring.
        let selection = self.selection.clone();
        let command = Command::new(move |io| {
            run(BroadcastOperator::from_selection(
                io.clone(),
                selection,
                Some(deadline),
            ));
        });
        let control = lock(&self.control);
        if !control
            .running
            .get(self.shard.index())
            .copied()
            .unwrap_or(false)
        {
            return Err(OpError::ServerStopped);
        }
        control
            .endpoint
            .try_send(self.shard.index(), ShardMsg::Command(command))
            .map_err(|_| OpError::Overloaded)
    }
}

/// The metrics listener: one socket, served by shard 0 (no SO_REUSEPORT, so a second process
/// can't share the address).
fn bind_metrics_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    // The epoll driver needs a non-blocking socket (io_uring does not mind).
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The HTTP API's listeners: one SO_REUSEPORT socket per shard, as the main ones (a taken
/// address fails the start; with port 0 the first bind picks the port and the others join it).
fn bind_api_listeners(
    addr: SocketAddr,
    shards: usize,
) -> io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    if addr.port() != 0 {
        shard::ensure_port_free(addr)?;
    }
    let mut listeners = shard::bind_listeners(addr, 1)?;
    let addr = listeners[0].local_addr()?;
    listeners.extend(shard::bind_listeners(addr, shards - 1)?);
    Ok((listeners, addr))
}
