//! The `ringcast` binary: the configuration file and environment (`apps::Standalone`), then
//! the flags given on the command line over them, then the built-in app under each namespace's
//! policy (or the conformance app) on every shard.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use ringcast::apps::{self, Standalone};
use ringcast::{
    AdminMode, Config, Parser as PacketParser, RedisMode, SlowConsumerPolicy, SubscriptionMode,
};

/// Every flag's default is the library's (`Config::default()`), read here so that none is
/// written twice; clap shows them in `--help`.
static DEFAULTS: LazyLock<Config> = LazyLock::new(Config::default);

/// The library's recovery defaults, for the recovery flags' (it is off by default).
static DEFAULTS_RECOVERY: LazyLock<ringcast::RecoveryConfig> =
    LazyLock::new(ringcast::RecoveryConfig::default);

/// Shutdown grace: the binary's own setting (the library takes it as an argument).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(10_000);

/// A duration as the flags give it, in whole milliseconds.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A thread-per-core io_uring Socket.IO server.
///
/// Settings come from the built-in defaults, then the --config file, then RINGCAST_<SECTION>__<KEY>
/// environment variables, then the flags given here. SIGHUP re-reads key material only (token
/// keys and secrets); every other setting needs a restart.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Read settings from this TOML file (every flag is a key; see the README).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Check the configuration, print it as TOML with every secret as ***, and exit (0 when
    /// valid, 2 when not).
    #[arg(long)]
    check_config: bool,
    /// Serve the HTTP server API on HOST:PORT (api.listen; keys come from the config file).
    #[arg(long)]
    api_listen: Option<std::net::SocketAddr>,
    /// Number of shards, one thread per core [default: every core].
    #[arg(long)]
    cores: Option<usize>,
    /// Address to listen on.
    #[arg(long, default_value_t = DEFAULTS.host)]
    host: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = DEFAULTS.port)]
    port: u16,
    /// HTTP path of the Socket.IO endpoint.
    #[arg(long, default_value_t = DEFAULTS.path.clone())]
    path: String,
    /// A namespace to serve with the built-in events (repeatable) [default: /].
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Server ping interval in milliseconds.
    #[arg(long, default_value_t = millis(DEFAULTS.engine.ping_interval))]
    ping_interval: u64,
    /// Ping timeout in milliseconds.
    #[arg(long, default_value_t = millis(DEFAULTS.engine.ping_timeout))]
    ping_timeout: u64,
    /// Largest message or polling body in bytes (Node's maxHttpBufferSize).
    #[arg(long, default_value_t = DEFAULTS.engine.max_payload)]
    max_payload: usize,
    /// Close sessions that join no namespace within this many milliseconds.
    #[arg(long, default_value_t = millis(DEFAULTS.socketio.connect_timeout))]
    connect_timeout: u64,
    /// Bytes queued for one client before it is disconnected as a slow consumer (volatile
    /// packets are dropped before that, whenever the client can't take them at once).
    #[arg(long, default_value_t = DEFAULTS.engine.max_outbound_bytes)]
    max_outbound: usize,
    /// Accept permessage-deflate (RFC 7692) from WebSocket clients that offer it.
    #[arg(long)]
    per_message_deflate: bool,
    /// With --per-message-deflate: compress messages of at least this many bytes.
    #[arg(long, default_value_t = DEFAULTS.engine.deflate_threshold)]
    deflate_threshold: usize,
    /// With --per-message-deflate: the DEFLATE level, 0 (fastest) to 9 (smallest).
    #[arg(long, default_value_t = DEFAULTS.engine.deflate_level,
          value_parser = clap::value_parser!(u32).range(0..=9))]
    deflate_level: u32,
    /// Connection state recovery: a client that lost its connection and comes back within
    /// this many milliseconds gets its id, rooms, data and missed events back (0: off).
    #[arg(long, default_value_t = 0)]
    recovery_window: u64,
    /// With --recovery-window: a recovered socket skips the connect middleware.
    #[arg(long, default_value_t = DEFAULTS_RECOVERY.skip_middleware, action = clap::ArgAction::Set)]
    recovery_skip_middleware: bool,
    /// Sessions open on the whole server (0: no limit); past it handshakes get 503.
    #[arg(long, default_value_t = DEFAULTS.engine.max_sessions)]
    max_connections: usize,
    /// Sessions open from one client address (0: no limit); past it handshakes get 503.
    #[arg(long, default_value_t = DEFAULTS.engine.max_sessions_per_ip)]
    max_connections_per_ip: usize,
    /// Handshakes one client address may make per second (0: no limit); past it, 429.
    #[arg(long, default_value_t = DEFAULTS.engine.handshakes_per_ip_per_second)]
    handshakes_per_ip: usize,
    /// Rooms one socket may join (its own room not counted).
    #[arg(long, default_value_t = DEFAULTS.socketio.max_rooms_per_socket)]
    max_rooms_per_socket: usize,
    /// Namespaces one client may join; past it the CONNECT gets CONNECT_ERROR.
    #[arg(long, default_value_t = DEFAULTS.socketio.max_namespaces_per_client)]
    max_namespaces_per_client: usize,
    /// Serve the server's counts (sessions, sockets, rooms, timers; JSON) at this path.
    #[arg(long)]
    stats_path: Option<String>,
    /// Serve Prometheus metrics at this path on the main listener.
    #[arg(long)]
    metrics_path: Option<String>,
    /// Serve Prometheus metrics on a listener of their own, HOST:PORT (at --metrics-path, or
    /// /metrics).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Log lines as text, or as JSON objects one per line (timestamp, level, thread =
    /// ringcast-shard-N, target, fields); levels from RUST_LOG.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Join a cluster through Redis: redis://[user:password@]host[:port][/db] (broadcasts
    /// reach and come from every ringcast and Node socket.io server and emitter on it).
    #[arg(long)]
    redis: Option<String>,
    /// Join a Redis Cluster through these seed nodes instead: host:port,host:port (or whole
    /// redis:// or rediss:// URLs; the others take the first one's scheme and password).
    #[arg(long)]
    redis_cluster: Option<String>,
    /// Trust the certificate authorities in this PEM file for rediss:// (besides the
    /// system's).
    #[arg(long)]
    redis_ca: Option<std::path::PathBuf>,
    /// Which of Node's Redis adapters to speak: classic (createAdapter, any Redis) or sharded
    /// (createShardedAdapter, Redis 7 sharded Pub/Sub).
    #[arg(long, value_enum, default_value_t = DEFAULTS.cluster.mode.into())]
    redis_mode: RedisModeFlag,
    /// The sharded adapter's room channels: static (none), dynamic (every room but socket
    /// ids), dynamic-private (every room).
    #[arg(long, value_enum, default_value_t = DEFAULTS.cluster.subscription_mode.into())]
    redis_subscription_mode: SubscriptionModeFlag,
    /// The Redis channel prefix (Node's `key` option).
    #[arg(long, default_value_t = DEFAULTS.cluster.prefix.clone())]
    redis_prefix: String,
    /// How long a question to the other nodes waits, in milliseconds, when the application set
    /// no timeout (fetch sockets, all rooms, server-side emits, broadcast acks).
    #[arg(long, default_value_t = millis(DEFAULTS.cluster.requests_timeout))]
    redis_requests_timeout: u64,
    /// Kernel send buffer per client connection in bytes (SO_SNDBUF); the kernel's own sizing
    /// when not given.
    #[arg(long)]
    send_buffer: Option<usize>,
    /// The Socket.IO parser every client must use: default (JSON text packets) or msgpack
    /// (npm socket.io-msgpack-parser 3.x).
    #[arg(long, value_enum, default_value_t = DEFAULTS.socketio.parser.into())]
    parser: ParserFlag,
    /// What to do with a client whose queue is full: disconnect it, or drop the packet.
    #[arg(long, value_enum, default_value_t = DEFAULTS.engine.slow_consumer.into())]
    slow_consumer: SlowConsumer,
    /// Largest HTTP request head in bytes.
    #[arg(long, default_value_t = DEFAULTS.http.max_head_bytes)]
    max_head: usize,
    /// A WebSocket probing to take over a polling session must finish the upgrade within this
    /// many milliseconds.
    #[arg(long, default_value_t = millis(DEFAULTS.engine.upgrade_timeout))]
    upgrade_timeout: u64,
    /// Close an HTTP connection that sends no complete request head within this many
    /// milliseconds of opening or of its last answer.
    #[arg(long, default_value_t = millis(DEFAULTS.http.head_timeout))]
    head_timeout: u64,
    /// On SIGTERM or SIGINT, give clients this many milliseconds to receive what is queued
    /// for them before exiting (a second signal exits at once).
    #[arg(long, default_value_t = millis(SHUTDOWN_GRACE))]
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
    /// Serve the Socket.IO Admin UI's namespace (no auth unless --admin-username is given).
    #[arg(long)]
    admin: bool,
    /// Admin UI basic auth: the username (turns --admin on; needs --admin-password-hash).
    #[arg(long)]
    admin_username: Option<String>,
    /// Admin UI basic auth: the bcrypt hash ($2a$, $2b$ or $2y$) of the password.
    #[arg(long)]
    admin_password_hash: Option<String>,
    /// What the admin namespace reports: every socket, room and event (development) or only
    /// server stats (production).
    #[arg(long, value_enum, default_value_t = DEFAULTS.admin.mode.into())]
    admin_mode: AdminModeFlag,
    /// Offer the Admin UI no commands (join, leave, disconnect, emit).
    #[arg(long)]
    admin_read_only: bool,
    /// How this server names itself to the Admin UI [default: the hostname].
    #[arg(long)]
    admin_server_id: Option<String>,
    /// The admin namespace.
    #[arg(long, default_value_t = DEFAULTS.admin.namespace.clone())]
    admin_namespace: String,
    /// Serve the Admin UI's static files (@socket.io/admin-ui's ui/dist) from this folder at
    /// --admin-ui-path.
    #[arg(long)]
    admin_ui_dir: Option<std::path::PathBuf>,
    /// The HTTP path the Admin UI's files are served under.
    #[arg(long, default_value_t = DEFAULTS.admin.ui_path.clone())]
    admin_ui_path: String,
    /// Serve the conformance app of the official test suites (port 3000 on 127.0.0.1 unless
    /// --port / --host say otherwise).
    #[arg(long)]
    conformance: bool,
}

impl Cli {
    /// Writes the flags given on the command line into `config`; a flag left at its default
    /// keeps what the file and the environment said (`given` tells which were given).
    fn apply(&self, config: &mut Config, given: &dyn Fn(&str) -> bool) {
        if let Some(cores) = self.cores {
            config.cores = cores.max(1);
        }
        macro_rules! flag {
            ($id:literal, $field:expr, $value:expr) => {
                if given($id) {
                    $field = $value;
                }
            };
        }
        flag!("host", config.host, self.host);
        flag!("port", config.port, self.port);
        flag!("path", config.path, self.path.clone());
        config.pin_cores &= !self.no_pin;
        config.force_epoll |= self.epoll;
        if !self.cors_origins.is_empty() {
            config.cors.origins.clone_from(&self.cors_origins);
        }
        config.cors.credentials |= self.cors_credentials;
        if self.stats_path.is_some() {
            config.stats_path.clone_from(&self.stats_path);
        }
        if self.metrics_path.is_some() {
            config.metrics_path.clone_from(&self.metrics_path);
        }
        if self.metrics_addr.is_some() {
            config.metrics_addr = self.metrics_addr;
        }
        if self.redis.is_some() {
            config.cluster.redis.clone_from(&self.redis);
        }
        if self.redis_cluster.is_some() {
            config.cluster.redis_cluster.clone_from(&self.redis_cluster);
        }
        if self.redis_ca.is_some() {
            config.cluster.redis_ca.clone_from(&self.redis_ca);
        }
        flag!("redis_mode", config.cluster.mode, self.redis_mode.into());
        flag!(
            "redis_subscription_mode",
            config.cluster.subscription_mode,
            self.redis_subscription_mode.into()
        );
        flag!(
            "redis_prefix",
            config.cluster.prefix,
            self.redis_prefix.clone()
        );
        flag!(
            "redis_requests_timeout",
            config.cluster.requests_timeout,
            Duration::from_millis(self.redis_requests_timeout)
        );

        let admin = &mut config.admin;
        admin.enabled |= self.admin || self.admin_username.is_some();
        if self.admin_username.is_some() {
            admin.username.clone_from(&self.admin_username);
        }
        if self.admin_password_hash.is_some() {
            admin.password_hash.clone_from(&self.admin_password_hash);
        }
        flag!("admin_mode", admin.mode, self.admin_mode.into());
        admin.read_only |= self.admin_read_only;
        if self.admin_server_id.is_some() {
            admin.server_id.clone_from(&self.admin_server_id);
        }
        flag!(
            "admin_namespace",
            admin.namespace,
            normalize_namespace(&self.admin_namespace)
        );
        if self.admin_ui_dir.is_some() {
            admin.ui_dir.clone_from(&self.admin_ui_dir);
        }
        flag!("admin_ui_path", admin.ui_path, slashed(&self.admin_ui_path));

        let engine = &mut config.engine;
        let ms = Duration::from_millis;
        flag!(
            "ping_interval",
            engine.ping_interval,
            ms(self.ping_interval)
        );
        flag!("ping_timeout", engine.ping_timeout, ms(self.ping_timeout));
        flag!("max_payload", engine.max_payload, self.max_payload);
        flag!("max_outbound", engine.max_outbound_bytes, self.max_outbound);
        flag!(
            "slow_consumer",
            engine.slow_consumer,
            self.slow_consumer.into()
        );
        flag!("max_connections", engine.max_sessions, self.max_connections);
        flag!(
            "max_connections_per_ip",
            engine.max_sessions_per_ip,
            self.max_connections_per_ip
        );
        flag!(
            "handshakes_per_ip",
            engine.handshakes_per_ip_per_second,
            self.handshakes_per_ip
        );
        flag!(
            "upgrade_timeout",
            engine.upgrade_timeout,
            ms(self.upgrade_timeout)
        );
        engine.allow_eio3 &= !self.no_eio3;
        engine.per_message_deflate |= self.per_message_deflate;
        flag!(
            "deflate_threshold",
            engine.deflate_threshold,
            self.deflate_threshold
        );
        flag!("deflate_level", engine.deflate_level, self.deflate_level);

        let http = &mut config.http;
        flag!("max_head", http.max_head_bytes, self.max_head);
        flag!("head_timeout", http.head_timeout, ms(self.head_timeout));
        if self.send_buffer.is_some() {
            http.socket_send_buffer = self.send_buffer;
        }

        let socketio = &mut config.socketio;
        flag!(
            "connect_timeout",
            socketio.connect_timeout,
            ms(self.connect_timeout)
        );
        flag!(
            "max_rooms_per_socket",
            socketio.max_rooms_per_socket,
            self.max_rooms_per_socket
        );
        flag!(
            "max_namespaces_per_client",
            socketio.max_namespaces_per_client,
            self.max_namespaces_per_client
        );
        flag!("parser", socketio.parser, self.parser.into());
        if given("recovery_window") {
            socketio.recovery = (self.recovery_window > 0).then(|| ringcast::RecoveryConfig {
                window: ms(self.recovery_window),
                ..socketio.recovery.clone().unwrap_or_default()
            });
        }
        if let (true, Some(recovery)) = (given("recovery_skip_middleware"), &mut socketio.recovery)
        {
            recovery.skip_middleware = self.recovery_skip_middleware;
        }
    }

    /// The configuration the flags alone describe (every flag counted as given).
    #[cfg(test)]
    fn config(&self) -> Config {
        let mut config = Config::default();
        self.apply(&mut config, &|_| true);
        config
    }
}

/// `--log-format`: the binary's own setting (the library only emits `tracing` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let mut standalone =
        match Standalone::load(cli.config.as_deref(), std::env::vars(), SHUTDOWN_GRACE) {
            Ok(standalone) => standalone,
            Err(error) => return config_error(&error),
        };
    cli.apply(standalone.config_mut(), &given);
    if given("shutdown_grace") {
        standalone.set_shutdown_grace(Duration::from_millis(cli.shutdown_grace));
    }
    if given("log_format") {
        standalone.set_json_logs(cli.log_format == LogFormat::Json);
    }
    for name in &cli.namespaces {
        standalone.add_namespace(name);
    }
    if let Some(addr) = cli.api_listen {
        standalone.set_api_listen(addr);
    }
    if let Err(error) = standalone.prepare() {
        return config_error(&error);
    }
    if cli.check_config {
        print!("{}", standalone.effective_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(if standalone.json_logs() {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    if let Err(error) = standalone.check_endpoints() {
        return config_error(&error);
    }
    run(&cli, standalone)
}

/// A configuration that can't be used: said on stderr, exit status 2.
fn config_error(error: &str) -> ExitCode {
    eprintln!("ringcast: configuration: {error}");
    ExitCode::from(2)
}

/// Installs the log subscriber: levels from `RUST_LOG` (info by default), text or JSON lines.
/// JSON lines carry the thread's name, so each shard's lines say which shard
/// (`ringcast-shard-N`), and their fields flattened beside the message.
fn init_logging(format: LogFormat) {
    // The Redis client logs each connection it loses on its own; the link logs one line per
    // outage, so the client's records show only when RUST_LOG names them.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|filter| !filter.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    let filter = if filter.contains("fred") {
        filter
    } else {
        format!("{filter},fred=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,fred=error"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_thread_names(true)
            .with_current_span(false)
            .init(),
    }
}

fn run(cli: &Cli, standalone: Standalone) -> ExitCode {
    let mut config = standalone.config().clone();
    let config_admin = config.admin.clone();
    let config_path = config.path.clone();
    let clustered = config.cluster.redis.is_some() || config.cluster.redis_cluster.is_some();
    let mut admin_stats = None;
    let builder = if cli.conformance {
        if config.host == DEFAULTS.host {
            config.host = IpAddr::from([127, 0, 0, 1]);
        }
        apps::conformance(config)
    } else {
        let namespaces = standalone.namespace_names();
        let builder = standalone.builder();
        if config_admin.enabled || config_admin.ui_dir.is_some() {
            if let Err(error) = ringcast::Admin::validate(&config_admin) {
                eprintln!("ringcast: {error}");
                return ExitCode::FAILURE;
            }
        }
        if config_admin.enabled {
            let admin =
                ringcast::Admin::new(config_admin.clone(), &namespaces, &config_path, clustered);
            let builder = admin.install(builder);
            admin_stats = Some(admin);
            builder
        } else {
            builder
        }
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
    if let Some(admin) = &admin_stats {
        // The thread ends on its own once the server has stopped.
        let _stats = admin.start(&server);
    }
    let grace = standalone.shutdown_grace();
    let standalone = std::sync::Arc::new(standalone);
    if let Some(interval) = standalone.reload_interval() {
        let watched = standalone.clone();
        // Key files written by rotation jobs (JWKS) are looked at every interval; the thread
        // lives as long as the process.
        std::thread::spawn(move || loop {
            std::thread::sleep(interval);
            watched.reload_changed();
        });
    }
    let (signalled, signal) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = loop {
            let number = signals.wait();
            if number != libc::SIGHUP {
                break number;
            }
            match standalone.reload() {
                Ok(()) => tracing::info!("SIGHUP: key material reloaded"),
                Err(error) => tracing::error!(%error, "SIGHUP: reload failed; old keys kept"),
            }
        };
        let _ = signalled.send(first);
        let second = loop {
            let number = signals.wait();
            if number != libc::SIGHUP {
                break number;
            }
        };
        tracing::warn!(signal = second, "second signal: exiting now");
        std::process::exit(128 + second);
    });
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

/// A flag's values, mirroring a library enum variant for variant (the library does not depend
/// on clap), converted both ways.
macro_rules! flag_values {
    ($(#[$doc:meta])* $flag:ident => $library:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, clap::ValueEnum)]
        enum $flag {
            $($variant),+
        }

        impl From<$flag> for $library {
            fn from(flag: $flag) -> $library {
                match flag {
                    $($flag::$variant => $library::$variant),+
                }
            }
        }

        impl From<$library> for $flag {
            fn from(value: $library) -> $flag {
                match value {
                    $($library::$variant => $flag::$variant),+
                }
            }
        }
    };
}

flag_values!(
    /// `--slow-consumer`.
    SlowConsumer => SlowConsumerPolicy { Disconnect, Drop }
);

flag_values!(
    /// `--parser`.
    ParserFlag => PacketParser { Default, Msgpack }
);

flag_values!(
    /// `--redis-mode`.
    RedisModeFlag => RedisMode { Classic, Sharded }
);

flag_values!(
    /// `--redis-subscription-mode`.
    SubscriptionModeFlag => SubscriptionMode { Static, Dynamic, DynamicPrivate }
);

flag_values!(
    /// `--admin-mode`.
    AdminModeFlag => AdminMode { Development, Production }
);

/// A namespace as Socket.IO names it, with its leading slash.
fn normalize_namespace(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

/// An HTTP path prefix as `/name/` (a bare `/` stays).
fn slashed(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

/// SIGTERM, SIGINT and SIGHUP, blocked in the calling thread (and so in every thread it
/// starts).
struct TerminationSignals(libc::sigset_t);

fn termination_signals() -> TerminationSignals {
    // SAFETY: `set` is a plain C struct that sigemptyset initialises before any other use;
    // the calls only read and write it and the calling thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_is_the_librarys_config() {
        assert_eq!(Cli::parse_from(["ringcast"]).config(), Config::default());
    }

    #[test]
    fn each_flag_lands_in_its_field() {
        let cli = Cli::parse_from([
            "ringcast",
            "--cores=3",
            "--host=127.0.0.1",
            "--port=4000",
            "--path=/io/",
            "--ping-interval=1",
            "--ping-timeout=2",
            "--max-payload=3",
            "--connect-timeout=4",
            "--max-outbound=5",
            "--per-message-deflate",
            "--deflate-threshold=16",
            "--deflate-level=1",
            "--max-connections=6",
            "--max-connections-per-ip=7",
            "--handshakes-per-ip=8",
            "--max-rooms-per-socket=9",
            "--max-namespaces-per-client=10",
            "--parser=msgpack",
            "--recovery-window=17",
            "--recovery-skip-middleware=false",
            "--stats-path=/stats",
            "--metrics-path=/metrics",
            "--metrics-addr=127.0.0.1:9100",
            "--send-buffer=11",
            "--slow-consumer=drop",
            "--max-head=12",
            "--upgrade-timeout=13",
            "--head-timeout=14",
            "--cors-origin=http://a",
            "--cors-credentials",
            "--no-eio3",
            "--no-pin",
            "--epoll",
            "--redis=redis://127.0.0.1:7000",
            "--redis-prefix=rc",
            "--redis-requests-timeout=15",
            "--redis-cluster=127.0.0.1:7001,127.0.0.1:7002",
            "--redis-mode=sharded",
            "--redis-ca=certs/ca.pem",
            "--redis-subscription-mode=dynamic-private",
            "--admin-username=ops",
            "--admin-password-hash=$2b$10$heqvAkYMez.Va6Et2uXInOnkCT6/uQj1brkrbyG3LpopDklcq7ZOS",
            "--admin-mode=production",
            "--admin-read-only",
            "--admin-server-id=node-a",
            "--admin-namespace=ops",
            "--admin-ui-dir=ui/dist",
            "--admin-ui-path=/ui",
        ]);
        let mut expected = Config {
            cores: 3,
            host: IpAddr::from([127, 0, 0, 1]),
            port: 4000,
            path: "/io/".to_owned(),
            pin_cores: false,
            force_epoll: true,
            stats_path: Some("/stats".to_owned()),
            metrics_path: Some("/metrics".to_owned()),
            metrics_addr: Some(([127, 0, 0, 1], 9100).into()),
            ..Config::default()
        };
        expected.cors.origins = vec!["http://a".to_owned()];
        expected.cors.credentials = true;
        expected.cluster.redis = Some("redis://127.0.0.1:7000".to_owned());
        expected.cluster.prefix = "rc".to_owned();
        expected.cluster.requests_timeout = Duration::from_millis(15);
        expected.cluster.redis_cluster = Some("127.0.0.1:7001,127.0.0.1:7002".to_owned());
        expected.cluster.mode = RedisMode::Sharded;
        expected.cluster.redis_ca = Some("certs/ca.pem".into());
        expected.cluster.subscription_mode = SubscriptionMode::DynamicPrivate;
        let ms = Duration::from_millis;
        let engine = &mut expected.engine;
        engine.ping_interval = ms(1);
        engine.ping_timeout = ms(2);
        engine.max_payload = 3;
        engine.max_outbound_bytes = 5;
        engine.max_sessions = 6;
        engine.max_sessions_per_ip = 7;
        engine.handshakes_per_ip_per_second = 8;
        engine.slow_consumer = SlowConsumerPolicy::Drop;
        engine.upgrade_timeout = ms(13);
        engine.allow_eio3 = false;
        engine.per_message_deflate = true;
        engine.deflate_threshold = 16;
        engine.deflate_level = 1;
        expected.socketio.connect_timeout = ms(4);
        expected.socketio.max_rooms_per_socket = 9;
        expected.socketio.max_namespaces_per_client = 10;
        expected.socketio.parser = PacketParser::Msgpack;
        expected.socketio.recovery = Some(ringcast::RecoveryConfig {
            window: ms(17),
            skip_middleware: false,
            ..ringcast::RecoveryConfig::default()
        });
        expected.http.socket_send_buffer = Some(11);
        expected.http.max_head_bytes = 12;
        expected.http.head_timeout = ms(14);
        let admin = &mut expected.admin;
        admin.enabled = true;
        admin.username = Some("ops".to_owned());
        admin.password_hash =
            Some("$2b$10$heqvAkYMez.Va6Et2uXInOnkCT6/uQj1brkrbyG3LpopDklcq7ZOS".to_owned());
        admin.mode = AdminMode::Production;
        admin.read_only = true;
        admin.server_id = Some("node-a".to_owned());
        admin.namespace = "/ops".to_owned();
        admin.ui_dir = Some("ui/dist".into());
        admin.ui_path = "/ui/".to_owned();
        assert_eq!(cli.config(), expected);
    }
}
