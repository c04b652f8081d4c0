//! The composition root of one shard: a thread pinned to a core, its monoio runtime, its
//! listener, engine, Socket.IO state, timer task and bus endpoint. Also starts and stops the
//! set of shards.
//!
//! Only this module wires layers together; each layer stays ignorant of the others' internals.

use std::cell::{Cell, OnceCell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::bus;
use crate::codec::frame::Frame;
use crate::codec::http::{Cors, Method};
use crate::config::{Config, EngineConfig, HttpConfig};
use crate::engine::{self, Admission, Engine, Event};
use crate::gather::{Collector, Finished, Gather, RequestId};
use crate::histogram::Histogram;
use crate::key::ShardId;
use crate::metrics::{Exposition, ShardMetrics};
use crate::net::{self, Forward, Host};
use crate::socketio::{Command, LocalTask, Namespaces, ShardHooks, SocketIo, SocketIoMsg};
use crate::stats::{Report, ShardCounts};

mod api;
mod node;
mod recovery;
pub(crate) use api::{ApiPlan, ApiRouterFactory, ApiShard};
pub(crate) use node::Cluster;

/// How long the stats and metrics endpoints wait for every shard; a shard that has not
/// answered by then (stopped, or stuck in a handler) is counted as empty.
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
    /// Report this shard's counts to shard `from` (for the stats and metrics endpoints).
    Stats { from: ShardId, request: RequestId },
    /// One shard's counts and counters, the answer to a `Stats` request (boxed: a scrape is
    /// rare, and the bus's messages stay small).
    Counts {
        request: RequestId,
        shard: ShardId,
        counts: Box<ShardMetrics>,
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
    /// The metrics listener (`Config::metrics_addr`), taken by shard 0, which serves it.
    pub(crate) metrics_listener: std::sync::Mutex<Option<std::net::TcpListener>>,
    /// The HTTP API's listeners (one per shard) and router factory, when it is served.
    pub(crate) api: Option<ApiPlan>,
    /// Counters of the layers above the shards, asked at each scrape.
    pub(crate) counters: Option<Arc<crate::metrics::FamilySource>>,
    /// Which shards have members of which rooms (with more than one shard and recovery off).
    pub(crate) directory: Option<Arc<crate::directory::RoomDirectory>>,
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
    /// Requests this shard sent to every shard (the stats and metrics endpoints'), waiting
    /// for answers.
    requests: RefCell<Gather<(ShardId, Box<ShardMetrics>)>>,
    /// How late the timer task woke after the deadline it slept until (the event loop's lag).
    loop_lag: RefCell<Histogram>,
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
                let counts = Box::new(self.snapshot());
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

    /// This shard's counts and counters, for a scrape (taken here, summed by the asker).
    fn snapshot(&self) -> ShardMetrics {
        let (counts, traffic) = {
            let engine = self.engine.borrow();
            (engine.counts(), engine.traffic())
        };
        ShardMetrics {
            counts: ShardCounts::new(counts, self.io.counts(), self.requests_in_flight.get()),
            engine: traffic,
            io: self.io.traffic(),
            loop_lag: *self.loop_lag.borrow(),
        }
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
        if let Some(path) = &self.plan.config.metrics_path {
            let shard = self.clone();
            router.route(Method::Get, path, move |request: net::Request| {
                shard.metrics(&request)
            });
        }
        self.admin_ui_routes(&mut router);
        router
    }

    /// What the metrics listener (`Config::metrics_addr`) answers: the metrics route only, at
    /// `metrics_path` when set, else at `/metrics`.
    fn metrics_router(self: &Rc<Self>) -> net::Router {
        let mut router = net::Router::routes_only();
        let path = self
            .plan
            .config
            .metrics_path
            .as_deref()
            .unwrap_or("/metrics");
        let shard = self.clone();
        router.route(Method::Get, path, move |request: net::Request| {
            shard.metrics(&request)
        });
        router
    }

    /// The Admin UI's static files (`--admin-ui-dir`), one exact route per file found at
    /// startup (`admin::ui` says why that is safe), and the prefix without its slash
    /// redirected to it (the UI's asset paths are relative).
    fn admin_ui_routes(&self, router: &mut net::Router) {
        let admin = &self.plan.config.admin;
        let Some(dir) = &admin.ui_dir else {
            return;
        };
        let files = match crate::admin::ui::load(dir, &admin.ui_path) {
            Ok(files) => files,
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "admin UI not served");
                return;
            }
        };
        for file in files.iter() {
            let (content_type, body) = (file.content_type, file.body.clone());
            router.route(Method::Get, &file.path, move |_: net::Request| {
                std::future::ready(net::Response::new(200, content_type, body.clone()))
            });
        }
        let bare = admin.ui_path.trim_end_matches('/');
        if !bare.is_empty() {
            let location = admin.ui_path.clone();
            router.route(Method::Get, bare, move |_: net::Request| {
                std::future::ready(
                    net::Response::empty(301).with_header("Location", location.clone()),
                )
            });
        }
    }

    /// The stats route: every shard's counts (asked over the bus, this one included) and
    /// their sum, as JSON.
    fn stats(&self) -> impl std::future::Future<Output = net::Response> + 'static {
        let shards = self.gather_snapshots();
        let cluster = self.plan.cluster.as_ref().map(Cluster::counts);
        async move {
            let shards = shards.await;
            let report = Report::new(shards.into_iter().map(|shard| shard.counts).collect());
            let report = match cluster {
                Some(counts) => report.with_cluster(counts),
                None => report,
            };
            net::Response::json(report.to_json())
        }
    }

    /// The metrics route: every shard's snapshot (asked over the bus, as for the stats) and
    /// the Redis adapter's state, as Prometheus text.
    fn metrics(
        &self,
        request: &net::Request,
    ) -> impl std::future::Future<Output = net::Response> + 'static {
        let shards = self.gather_snapshots();
        let cluster = self.plan.cluster.as_ref().map(Cluster::counts);
        let families = self
            .plan
            .counters
            .as_ref()
            .map(|count| count())
            .unwrap_or_default();
        let accept = request.header("accept").map(str::to_owned);
        async move {
            let shards = shards.await;
            let exposition = Exposition {
                shards,
                cluster,
                families,
            };
            let (content_type, text) = exposition.encode_for(accept.as_deref());
            net::Response::new(200, content_type, text)
        }
    }

    /// Asks every shard (this one included) for its snapshot; completes with them in shard
    /// order once all answered or at the deadline (a shard that did not answer counts as
    /// empty).
    fn gather_snapshots(&self) -> impl std::future::Future<Output = Vec<ShardMetrics>> + 'static {
        let (sender, receiver) = futures_channel::oneshot::channel();
        let collector = Box::new(StatsCollector {
            shards: vec![ShardMetrics::default(); self.shards as usize],
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
        // The request always finishes (answered, or at its deadline): a dropped sender means
        // the shard itself stopped.
        async move { receiver.await.unwrap_or_default() }
    }
}

/// Gathers every shard's counts for the stats endpoint; a shard that does not answer in time
/// counts as empty.
struct StatsCollector {
    shards: Vec<ShardMetrics>,
    done: futures_channel::oneshot::Sender<Vec<ShardMetrics>>,
}

impl Collector<(ShardId, Box<ShardMetrics>)> for StatsCollector {
    fn add(&mut self, (shard, counts): (ShardId, Box<ShardMetrics>)) -> usize {
        if let Some(slot) = self.shards.get_mut(shard.index()) {
            *slot = *counts;
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
            directory: plan.directory.clone(),
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
        loop_lag: RefCell::default(),
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
    // Shard 0 serves the metrics listener, through the same route code as the main one.
    let metrics_listener = (id.index() == 0)
        .then(|| {
            plan.metrics_listener
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        })
        .flatten();
    if let Some(listener) = metrics_listener {
        let listener = monoio::net::TcpListener::from_std(listener)?;
        let stop = {
            let shard = shard.clone();
            async move { shard.shutdown_begun().await }
        };
        let router = Rc::new(shard.metrics_router());
        monoio::spawn(net::accept_loop(shard.clone(), router, listener, stop));
    }
    // Every shard serves the HTTP API on a listener of its own, with the router the control
    // module builds for it.
    if let Some(api) = &plan.api {
        if let Some(listener) = api.take(id) {
            let listener = monoio::net::TcpListener::from_std(listener)?;
            let stop = {
                let shard = shard.clone();
                async move { shard.shutdown_begun().await }
            };
            let router = Rc::new(api.router(&shard));
            monoio::spawn(net::accept_loop(shard.clone(), router, listener, stop));
        }
    }
    monoio::spawn(timer_loop(shard.clone()));
    monoio::spawn(deferred_loop(shard.clone()));
    // Shard 0 says the node lives, for connection state recovery across nodes.
    if let (0, Some(cluster)) = (id.index(), &plan.cluster) {
        if cluster.recovery().is_some() {
            monoio::spawn(heartbeat_loop(shard.clone()));
        }
    }
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
        cluster.stop();
    }
    batch.clear();
    bus.drain(&mut batch);
    drop(batch);
    Ok(())
}

/// Tells Redis this node lives, every heartbeat until the shard stops (connection state
/// recovery: a silent node's sessions become restorable elsewhere).
async fn heartbeat_loop(shard: Rc<Shard>) {
    while !shard.stopped.get() {
        let Some(recovery) = shard.plan.cluster.as_ref().and_then(|c| c.recovery()) else {
            return;
        };
        recovery.beat();
        let pause = recovery.heartbeat();
        monoio::time::sleep(pause).await;
    }
}

/// Sends the broadcasts the engine holds ([`Engine::send_many`]) once per turn of the
/// runtime, then writes every idle link that got frames ([`net::write_direct`]). Woken by the
/// first broadcast held or link listed, this task runs after the tasks already due in the turn
/// (the runtime runs woken tasks in order), so every publish read in the turn joins the run
/// before any recipient is written.
async fn deferred_loop(shard: Rc<Shard>) {
    loop {
        poll_fn(|cx| shard.engine.borrow_mut().poll_deferred(cx)).await;
        shard.engine.borrow_mut().send_deferred();
        shard.pump();
        // Then every link that got frames this turn while its writer waited is written here,
        // one write each, with no task woken for it.
        net::write_direct(&*shard);
    }
}

thread_local! {
    /// Holds taken on this shard's thread ([`Hold`]).
    static HOLDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Work above the shard that a graceful shutdown waits for (within its grace), as it waits
/// for sessions; released when dropped.
pub(crate) struct Hold(());

impl Hold {
    pub(crate) fn new() -> Hold {
        HOLDS.with(|holds| holds.set(holds.get() + 1));
        Hold(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        HOLDS.with(|holds| holds.set(holds.get().saturating_sub(1)));
    }
}

/// Stops the shard once every shard is idle (sessions and WebSockets finished, their queues
/// written and closes sent, no HTTP request unanswered, no [`Hold`] kept) or at `deadline`.
/// Checked every few milliseconds: shutdown is rare and not timed finely. A request that reaches a shard after
/// all were idle can only be for a session that no longer exists.
async fn stop_when_drained(shard: Rc<Shard>, deadline: Instant, idle: Arc<[AtomicBool]>) {
    loop {
        let now_idle = shard.engine.borrow().is_empty()
            && shard.requests_in_flight.get() == 0
            && HOLDS.with(std::cell::Cell::get) == 0;
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
        let slept = monoio::select! {
            _ = sleep => true,
            _ = woken => false,
        };
        shard.timer_waker.borrow_mut().take();
        let now = Instant::now();
        // The event loop's lag: how long after its deadline the task got to run (a busy turn,
        // a handler that blocks, the timer's 1 ms resolution).
        if let (true, Some(at)) = (slept, next) {
            let lag = now.saturating_duration_since(at);
            shard.loop_lag.borrow_mut().observe(lag);
        }
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
