//! The library's front door: [`Server::builder`] collects the config and namespaces, then
//! [`ServerBuilder::start`] binds the listeners and starts one shard thread per core.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bus;
use crate::config::{normalize_path, Config};
use crate::engine::{Admission, AdmissionLimits};
use crate::shard::{self, App, Plan, ShardMsg};
use crate::socketio::{Namespace, Namespaces};

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
        }
    }
}

/// Collects configuration and namespaces.
pub struct ServerBuilder {
    config: Config,
    namespaces: Namespaces,
    echo_paths: Vec<String>,
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

    /// Also serves a bare Engine.IO endpoint at `path` that echoes every message (what the
    /// official Engine.IO test suites drive).
    pub fn engine_echo(mut self, path: &str) -> Self {
        self.echo_paths.push(normalize_path(path));
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
        let plan = Arc::new(Plan {
            config,
            endpoints,
            namespaces: Arc::new(self.namespaces),
            admission: limits.any().then(|| Arc::new(Admission::new(limits))),
        });
        let mut ends = bus::mesh::<ShardMsg>(shards + 1, bus_capacity);
        let control = ends
            .pop()
            .unwrap_or_else(|| unreachable!("mesh has shards + 1 ends"));
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
                    if let Err(error) = shard::run(index as u16, plan, listener, end) {
                        tracing::error!(shard = index, %error, "shard failed");
                    }
                })?;
            threads.push(thread);
        }
        tracing::info!(%addr, shards, "ringcast listening");
        Ok(ServerHandle {
            addr,
            threads,
            control,
        })
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
    control: bus::Endpoint<ShardMsg>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until every shard has stopped.
    pub fn wait(self) {
        for thread in self.threads {
            let _ = thread.join();
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
            self.control
                .send(shard, ShardMsg::Shutdown { deadline, idle });
        }
        self.wait();
    }

    /// Stops every shard and waits for them (connections are dropped).
    pub fn stop(self) {
        for shard in 0..self.threads.len() {
            self.control.send(shard, ShardMsg::Stop);
        }
        self.wait();
    }
}
