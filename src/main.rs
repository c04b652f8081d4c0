//! The `ringcast` binary: flags into one `Config`, then the built-in app (or the conformance
//! app) on every shard.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringcast::apps;
use ringcast::config::SlowConsumerPolicy;
use ringcast::{Config, Server};

/// A thread-per-core io_uring Socket.IO server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Number of shards, one thread per core [default: every core].
    #[arg(long)]
    cores: Option<usize>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: IpAddr,
    /// Port to listen on [default: 3000].
    #[arg(long)]
    port: Option<u16>,
    /// HTTP path of the Socket.IO endpoint.
    #[arg(long, default_value = "/socket.io/")]
    path: String,
    /// A namespace to serve with the built-in events (repeatable) [default: /].
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Server ping interval in milliseconds.
    #[arg(long, default_value_t = 25_000)]
    ping_interval: u64,
    /// Ping timeout in milliseconds.
    #[arg(long, default_value_t = 20_000)]
    ping_timeout: u64,
    /// Largest message or polling body in bytes (Node's maxHttpBufferSize).
    #[arg(long, default_value_t = 1_000_000)]
    max_payload: usize,
    /// Close sessions that join no namespace within this many milliseconds.
    #[arg(long, default_value_t = 45_000)]
    connect_timeout: u64,
    /// Bytes queued for one client before it is disconnected as a slow consumer (volatile
    /// packets are dropped before that, whenever the client can't take them at once).
    #[arg(long, default_value_t = 4 << 20)]
    max_outbound: usize,
    /// Sessions open on the whole server (0: no limit); past it handshakes get 503.
    #[arg(long, default_value_t = 0)]
    max_connections: usize,
    /// Sessions open from one client address (0: no limit); past it handshakes get 503.
    #[arg(long, default_value_t = 0)]
    max_connections_per_ip: usize,
    /// Handshakes one client address may make per second (0: no limit); past it, 429.
    #[arg(long, default_value_t = 0)]
    handshakes_per_ip: usize,
    /// Rooms one socket may join (its own room not counted).
    #[arg(long, default_value_t = 10_000)]
    max_rooms_per_socket: usize,
    /// Namespaces one client may join; past it the CONNECT gets CONNECT_ERROR.
    #[arg(long, default_value_t = 100)]
    max_namespaces_per_client: usize,
    /// Serve the server's counts (sessions, sockets, rooms, timers; JSON) at this path.
    #[arg(long)]
    stats_path: Option<String>,
    /// Kernel send buffer per client connection in bytes (SO_SNDBUF); the kernel's own sizing
    /// when not given.
    #[arg(long)]
    send_buffer: Option<usize>,
    /// What to do with a client whose queue is full: disconnect it, or drop the packet.
    #[arg(long, value_enum, default_value_t = SlowConsumer::Disconnect)]
    slow_consumer: SlowConsumer,
    /// Largest HTTP request head in bytes.
    #[arg(long, default_value_t = 16 << 10)]
    max_head: usize,
    /// A WebSocket probing to take over a polling session must finish the upgrade within this
    /// many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    upgrade_timeout: u64,
    /// Close an HTTP connection that sends no complete request head within this many
    /// milliseconds of opening or of its last answer.
    #[arg(long, default_value_t = 30_000)]
    head_timeout: u64,
    /// On SIGTERM or SIGINT, give clients this many milliseconds to receive what is queued
    /// for them before exiting (a second signal exits at once).
    #[arg(long, default_value_t = 10_000)]
    shutdown_grace: u64,
    /// Allowed CORS origin (repeatable) [default: any].
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Allow credentials in CORS responses.
    #[arg(long)]
    cors_credentials: bool,
    /// Refuse Engine.IO protocol 3 (socket.io-client 2.x).
    #[arg(long)]
    no_eio3: bool,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Use the epoll driver even where io_uring is available.
    #[arg(long)]
    epoll: bool,
    /// Serve the conformance app of the official test suites (port 3000 on 127.0.0.1 unless
    /// --port / --host say otherwise).
    #[arg(long)]
    conformance: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut config = Config::default();
    if let Some(cores) = cli.cores {
        config.cores = cores.max(1);
    }
    config.host = cli.host;
    config.port = cli.port.unwrap_or(3000);
    config.path = cli.path;
    config.pin_cores = !cli.no_pin;
    config.force_epoll = cli.epoll;
    config.engine.ping_interval = Duration::from_millis(cli.ping_interval);
    config.engine.ping_timeout = Duration::from_millis(cli.ping_timeout);
    config.engine.max_payload = cli.max_payload;
    config.engine.head_timeout = Duration::from_millis(cli.head_timeout);
    config.engine.max_outbound_bytes = cli.max_outbound;
    config.engine.socket_send_buffer = cli.send_buffer;
    config.engine.slow_consumer = match cli.slow_consumer {
        SlowConsumer::Disconnect => SlowConsumerPolicy::Disconnect,
        SlowConsumer::Drop => SlowConsumerPolicy::Drop,
    };
    config.engine.max_head_bytes = cli.max_head;
    config.engine.max_sessions = cli.max_connections;
    config.engine.max_sessions_per_ip = cli.max_connections_per_ip;
    config.engine.handshakes_per_ip_per_second = cli.handshakes_per_ip;
    config.max_rooms_per_socket = cli.max_rooms_per_socket;
    config.max_namespaces_per_client = cli.max_namespaces_per_client;
    config.stats_path = cli.stats_path;
    config.engine.upgrade_timeout = Duration::from_millis(cli.upgrade_timeout);
    config.engine.allow_eio3 = !cli.no_eio3;
    config.connect_timeout = Duration::from_millis(cli.connect_timeout);
    config.cors.origins = cli.cors_origins;
    config.cors.credentials = cli.cors_credentials;
    let builder = if cli.conformance {
        if cli.host == IpAddr::from([0, 0, 0, 0]) {
            config.host = IpAddr::from([127, 0, 0, 1]);
        }
        apps::conformance(config)
    } else {
        let namespaces = if cli.namespaces.is_empty() {
            vec!["/".to_owned()]
        } else {
            cli.namespaces
        };
        namespaces
            .iter()
            .fold(Server::builder().config(config), |builder, name| {
                let name = if name.starts_with('/') {
                    name.clone()
                } else {
                    format!("/{name}")
                };
                builder.namespace(&name, apps::builtin_namespace())
            })
    };
    // Blocked before any thread starts, so every thread inherits the mask and only the
    // signal thread below (sigwait) ever takes them.
    let signals = termination_signals();
    let server = match builder.start() {
        Ok(server) => server,
        Err(error) => {
            eprintln!("ringcast: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (signalled, signal) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = signals.wait();
        let _ = signalled.send(first);
        let second = signals.wait();
        tracing::warn!(signal = second, "second signal: exiting now");
        std::process::exit(128 + second);
    });
    let grace = Duration::from_millis(cli.shutdown_grace);
    loop {
        match signal.recv_timeout(Duration::from_millis(200)) {
            Ok(number) => {
                tracing::info!(signal = number, ?grace, "shutting down");
                server.shutdown(grace);
                tracing::info!("shut down");
                return ExitCode::SUCCESS;
            }
            Err(_) if server.is_finished() => {
                server.wait();
                return ExitCode::FAILURE;
            }
            Err(_) => {}
        }
    }
}

/// `--slow-consumer`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SlowConsumer {
    Disconnect,
    Drop,
}

/// SIGTERM and SIGINT, blocked in the calling thread (and so in every thread it starts).
struct TerminationSignals(libc::sigset_t);

fn termination_signals() -> TerminationSignals {
    // SAFETY: `set` is a plain C struct that sigemptyset initialises before any other use;
    // the calls only read and write it and the calling thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        TerminationSignals(set)
    }
}

impl TerminationSignals {
    /// Blocks until one of the signals arrives; returns its number.
    fn wait(&self) -> i32 {
        loop {
            let mut number = 0;
            // SAFETY: `self.0` is an initialised signal set and `number` a valid out pointer.
            if unsafe { libc::sigwait(&self.0, &mut number) } == 0 {
                return number;
            }
        }
    }
}
