//! The configuration file (spec `control-plane.md` §2.1): TOML, every flag a key, the
//! `RINGCAST_<SECTION>__<KEY>` environment variables over it, strict (an unknown key or a wrong
//! type is an error naming the key and line), and the effective configuration printed back
//! with its secrets as `***` (`--check-config`).
//!
//! Precedence, lowest first: the library's defaults < the file < the environment < the flags
//! given on the command line (the binary applies those last). Plain data in and out: this file
//! must not depend on anything but `config`, the control plane's value forms and serde.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::units;
use crate::config::{
    AdminMode, Config, Parser, RecoveryConfig, RedisMode, SlowConsumerPolicy, SubscriptionMode,
};

/// The prefix of the environment variables that set keys.
pub(crate) const ENV_PREFIX: &str = "RINGCAST_";

/// Keys whose values are secrets wherever they appear: printed as `***`.
const SECRET_KEYS: &[&str] = &["secret", "previous_secret", "key", "password_hash"];

/// The whole file. Every section is optional; a key not given keeps the layer below.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub(crate) server: ServerSection,
    #[serde(default)]
    pub(crate) engine: EngineSection,
    #[serde(default)]
    pub(crate) limits: LimitsSection,
    #[serde(default)]
    pub(crate) cors: CorsSection,
    #[serde(default)]
    pub(crate) redis: RedisSection,
    #[serde(default)]
    pub(crate) metrics: MetricsSection,
    #[serde(default)]
    pub(crate) admin: AdminSection,
    #[serde(default)]
    pub(crate) auth: AuthSection,
    #[serde(default)]
    pub(crate) users: UsersSection,
    #[serde(default)]
    pub(crate) recovery: RecoverySection,
    /// The HTTP server API (§2.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) api: Option<toml::Table>,
    /// Backend endpoints (§2.4), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoints: Option<toml::Table>,
    /// The connect and refresh hooks (§2.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hooks: Option<toml::Table>,
    /// Lifecycle events (§2.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lifecycle: Option<toml::Table>,
    /// Per-namespace policy, by namespace name (file only: `/` can't be in a variable's name).
    #[serde(default)]
    pub(crate) namespaces: BTreeMap<String, NamespaceSection>,
}

/// `[server]`: the process, its address and paths.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    pub(crate) host: Option<IpAddr>,
    pub(crate) port: Option<u16>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) path: Option<String>,
    pub(crate) cores: Option<usize>,
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) shutdown_grace: Option<Duration>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) stats_path: Option<String>,
    pub(crate) pin: Option<bool>,
    pub(crate) epoll: Option<bool>,
    /// How this node names itself (`/v1/info`, events); default `hostname:port`.
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) node_name: Option<String>,
    pub(crate) log_format: Option<LogFormat>,
    /// The Socket.IO parser every client of this server speaks.
    pub(crate) parser: Option<ParserName>,
}

/// `server.parser`: `default` (JSON) or `msgpack` (socket.io-msgpack-parser); anything else is
/// refused with the file's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ParserName {
    Default,
    Msgpack,
}

/// Log lines as text or as JSON objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// `[engine]`: Engine.IO sessions and their HTTP connections.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EngineSection {
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) ping_interval: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) ping_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "units::size_opt")]
    pub(crate) max_payload: Option<usize>,
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) connect_timeout: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) upgrade_timeout: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) head_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "units::size_opt")]
    pub(crate) max_head: Option<usize>,
    #[serde(default, deserialize_with = "units::size_opt")]
    pub(crate) max_outbound: Option<usize>,
    pub(crate) slow_consumer: Option<SlowConsumer>,
    #[serde(default, deserialize_with = "units::size_opt")]
    pub(crate) send_buffer: Option<usize>,
    pub(crate) eio3: Option<bool>,
    pub(crate) per_message_deflate: Option<bool>,
    #[serde(default, deserialize_with = "units::size_opt")]
    pub(crate) deflate_threshold: Option<usize>,
    pub(crate) deflate_level: Option<u32>,
}

/// `slow_consumer`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SlowConsumer {
    Disconnect,
    Drop,
}

/// `[limits]`: admission and per-socket limits.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsSection {
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_ip: Option<usize>,
    pub(crate) handshakes_per_ip: Option<usize>,
    pub(crate) max_rooms_per_socket: Option<usize>,
    pub(crate) max_namespaces_per_client: Option<usize>,
}

/// `[cors]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorsSection {
    #[serde(default, deserialize_with = "units::string_list_opt")]
    pub(crate) origins: Option<Vec<String>>,
    pub(crate) credentials: Option<bool>,
}

/// `[redis]`: the cluster.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisSection {
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) url: Option<String>,
    /// Redis Cluster seed nodes (`--redis-cluster`).
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) cluster: Option<String>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) mode: Option<Mode>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) prefix: Option<String>,
    pub(crate) subscription_mode: Option<Subscription>,
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) requests_timeout: Option<Duration>,
}

/// `redis.mode`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    Classic,
    Sharded,
}

/// `redis.subscription_mode`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Subscription {
    Static,
    Dynamic,
    DynamicPrivate,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) path: Option<String>,
    pub(crate) addr: Option<SocketAddr>,
}

/// `[admin]`: the Admin UI's namespace.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminSection {
    pub(crate) enabled: Option<bool>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) username: Option<String>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) password_hash: Option<String>,
    pub(crate) password_hash_file: Option<PathBuf>,
    pub(crate) mode: Option<Admin>,
    pub(crate) read_only: Option<bool>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) server_id: Option<String>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) namespace: Option<String>,
    pub(crate) ui_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) ui_path: Option<String>,
}

/// `admin.mode`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Admin {
    Development,
    Production,
}

/// `[auth]`: how namespaces authenticate clients.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthSection {
    /// The mode of namespaces without their own `auth`.
    pub(crate) default: Option<AuthMode>,
    /// `[auth.jwt]`: token verification (§2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jwt: Option<toml::Table>,
    /// `[auth.claims]`: where the grants are in a token's claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) claims: Option<toml::Table>,
}

/// A namespace's auth mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AuthMode {
    /// Anyone connects (today's behaviour).
    #[default]
    None,
    /// A JWT in the CONNECT payload.
    Jwt,
    /// The connect hook decides.
    Hook,
    /// A JWT, then the connect hook (which may deny or add rooms, join patterns and data).
    #[serde(rename = "jwt+hook")]
    JwtHook,
}

impl AuthMode {
    /// Whether a token is checked at CONNECT.
    pub(crate) fn takes_tokens(self) -> bool {
        matches!(self, AuthMode::Jwt | AuthMode::JwtHook)
    }

    /// Whether the connect hook is asked.
    pub(crate) fn asks_hook(self) -> bool {
        matches!(self, AuthMode::Hook | AuthMode::JwtHook)
    }
}

/// `[recovery]`: connection state recovery (`--recovery-window`, `--recovery-skip-middleware`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecoverySection {
    /// How long a lost socket may come back (0: off).
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) window: Option<Duration>,
    pub(crate) skip_middleware: Option<bool>,
    /// Stored packets a shard keeps per namespace at most.
    pub(crate) max_packets: Option<usize>,
}

/// `[users]`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsersSection {
    /// How long a revocation is remembered (at least the longest token lifetime).
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) revocation_ttl: Option<Duration>,
}

/// `[namespaces."<name>"]`: one namespace's policy (§2.1); keys not given take the defaults
/// of [`super::policy::NamespacePolicy`].
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamespaceSection {
    pub(crate) auth: Option<AuthMode>,
    pub(crate) allow_anonymous: Option<bool>,
    #[serde(default, deserialize_with = "units::string_list_opt")]
    pub(crate) builtins: Option<Vec<String>>,
    #[serde(default, deserialize_with = "units::string_list_opt")]
    pub(crate) join: Option<Vec<String>>,
    #[serde(default, deserialize_with = "units::string_list_opt")]
    pub(crate) publish: Option<Vec<String>>,
    pub(crate) publish_requires_membership: Option<bool>,
    pub(crate) unknown_events: Option<UnknownEvents>,
    pub(crate) max_rooms_per_socket: Option<usize>,
    pub(crate) max_room_length: Option<usize>,
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) event_rate: Option<String>,
    pub(crate) event_burst: Option<u32>,
    pub(crate) max_sockets_per_user: Option<usize>,
    pub(crate) single_session: Option<bool>,
    /// An endpoint asked about every client `join` that passes the patterns.
    #[serde(default, deserialize_with = "units::text_opt")]
    pub(crate) join_hook: Option<String>,
    /// Which lifecycle events this namespace emits (default: `lifecycle.events`).
    pub(crate) lifecycle: Option<Vec<super::hooks::config::LifecycleKind>>,
    /// Client events forwarded to backends.
    pub(crate) events: Option<Vec<super::hooks::config::EventRule>>,
}

/// What a client event with no handler gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum UnknownEvents {
    /// Ignored, as today.
    #[default]
    Drop,
    /// An error ack (`unknown_event`) when the client asked for one.
    Error,
    /// The socket is disconnected.
    Disconnect,
}

/// A configuration that can't be used: the message names the key (and the line, for the
/// file) or the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(pub(crate) String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The file (if any) with the environment's `RINGCAST_<SECTION>__<KEY>` variables over it.
pub(crate) fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<FileConfig, ConfigError> {
    let (mut table, origin) = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| ConfigError(format!("{}: {error}", path.display())))?;
            // The file alone first, so an error points at its line.
            toml::from_str::<FileConfig>(&text)
                .map_err(|error| ConfigError(format!("{}: {error}", path.display())))?;
            let table = toml::from_str::<toml::Table>(&text)
                .map_err(|error| ConfigError(format!("{}: {error}", path.display())))?;
            (table, path.display().to_string())
        }
        None => (toml::Table::new(), String::from("the defaults")),
    };
    let set = overlay_env(&mut table, env)?;
    FileConfig::deserialize(table).map_err(|error| {
        let variables = if set.is_empty() {
            String::new()
        } else {
            format!(" (with {} over {origin})", set.join(", "))
        };
        ConfigError(format!("configuration{variables}: {}", error.message()))
    })
}

/// Sets each `RINGCAST_<SECTION>__<KEY>` variable's value in `table`; returns the names of
/// the variables used. A variable without `__` is not a key (`RINGCAST_BIN`, say); an empty
/// one counts as unset.
fn overlay_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let template = template();
    let mut set = Vec::new();
    let mut variables: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, value)| {
            name.starts_with(ENV_PREFIX) && name.contains("__") && !value.is_empty()
        })
        .collect();
    variables.sort();
    for (name, value) in variables {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError(format!("{name}: not a key path")));
        }
        if path[0] == "namespaces" {
            return Err(ConfigError(format!(
                "{name}: namespaces are set in the file only"
            )));
        }
        let kind = template_kind(&template, &path);
        let value =
            env_value(&value, kind).map_err(|error| ConfigError(format!("{name}: {error}")))?;
        let (leaf, parents) = path.split_last().unwrap_or_else(|| unreachable!("split"));
        let mut at = &mut *table;
        for part in parents {
            let entry = at
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match entry {
                toml::Value::Table(inner) => inner,
                _ => return Err(ConfigError(format!("{name}: `{part}` is not a table"))),
            };
        }
        at.insert(leaf.clone(), value);
        set.push(name);
    }
    Ok(set)
}

/// What an environment variable's text becomes, given the kind of value its key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Bool,
    List,
    /// A key this file does not describe (`[auth.jwt]`, `[api]`): numbers and booleans are
    /// taken as such, except for secrets.
    Unknown,
}

/// Every key with a value, to learn each key's kind from.
fn template() -> toml::Table {
    let mut full = effective(&Config::default(), &Extras::default());
    full.namespaces
        .insert("/".to_owned(), NamespaceSection::default());
    toml::Table::try_from(&full).unwrap_or_default()
}

fn template_kind(template: &toml::Table, path: &[String]) -> Kind {
    let mut at = template;
    for (n, part) in path.iter().enumerate() {
        match at.get(part) {
            Some(toml::Value::Table(inner)) if n + 1 < path.len() => at = inner,
            Some(toml::Value::String(_)) => return Kind::Text,
            Some(toml::Value::Integer(_)) => return Kind::Integer,
            Some(toml::Value::Boolean(_)) => return Kind::Bool,
            Some(toml::Value::Array(_)) => return Kind::List,
            _ => break,
        }
    }
    match path.last().map(String::as_str) {
        Some(leaf) if SECRET_KEYS.contains(&leaf) => Kind::Text,
        _ => Kind::Unknown,
    }
}

fn env_value(text: &str, kind: Kind) -> Result<toml::Value, String> {
    let text = text.trim();
    if text.starts_with('[') {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|error| format!("not a JSON list: {error}"))?;
        return toml::Value::try_from(json).map_err(|error| error.to_string());
    }
    Ok(match kind {
        Kind::Text | Kind::List => toml::Value::String(text.to_owned()),
        Kind::Integer | Kind::Bool | Kind::Unknown => {
            if let Ok(number) = text.parse::<i64>() {
                toml::Value::Integer(number)
            } else if let Ok(flag) = text.parse::<bool>() {
                toml::Value::Boolean(flag)
            } else {
                toml::Value::String(text.to_owned())
            }
        }
    })
}

impl FileConfig {
    /// Writes every key given into `config` (the library's settings).
    pub(crate) fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        let server = &self.server;
        set(&mut config.host, server.host);
        set(&mut config.port, server.port);
        set(&mut config.path, server.path.clone());
        if let Some(cores) = server.cores {
            config.cores = cores.max(1);
        }
        if server.stats_path.is_some() {
            config.stats_path.clone_from(&server.stats_path);
        }
        set(&mut config.pin_cores, server.pin);
        set(&mut config.force_epoll, server.epoll);
        set(
            &mut config.socketio.parser,
            server.parser.map(|parser| match parser {
                ParserName::Default => Parser::Default,
                ParserName::Msgpack => Parser::Msgpack,
            }),
        );

        let engine = &self.engine;
        set(&mut config.engine.ping_interval, engine.ping_interval);
        set(&mut config.engine.ping_timeout, engine.ping_timeout);
        set(&mut config.engine.max_payload, engine.max_payload);
        set(&mut config.socketio.connect_timeout, engine.connect_timeout);
        set(&mut config.engine.upgrade_timeout, engine.upgrade_timeout);
        set(&mut config.http.head_timeout, engine.head_timeout);
        set(&mut config.http.max_head_bytes, engine.max_head);
        set(&mut config.engine.max_outbound_bytes, engine.max_outbound);
        set(
            &mut config.engine.slow_consumer,
            engine.slow_consumer.map(|policy| match policy {
                SlowConsumer::Disconnect => SlowConsumerPolicy::Disconnect,
                SlowConsumer::Drop => SlowConsumerPolicy::Drop,
            }),
        );
        if engine.send_buffer.is_some() {
            config.http.socket_send_buffer = engine.send_buffer;
        }
        set(&mut config.engine.allow_eio3, engine.eio3);
        set(
            &mut config.engine.per_message_deflate,
            engine.per_message_deflate,
        );
        set(
            &mut config.engine.deflate_threshold,
            engine.deflate_threshold,
        );
        set(&mut config.engine.deflate_level, engine.deflate_level);

        let limits = &self.limits;
        set(&mut config.engine.max_sessions, limits.max_connections);
        set(
            &mut config.engine.max_sessions_per_ip,
            limits.max_connections_per_ip,
        );
        set(
            &mut config.engine.handshakes_per_ip_per_second,
            limits.handshakes_per_ip,
        );
        set(
            &mut config.socketio.max_rooms_per_socket,
            limits.max_rooms_per_socket,
        );
        set(
            &mut config.socketio.max_namespaces_per_client,
            limits.max_namespaces_per_client,
        );

        set(&mut config.cors.origins, self.cors.origins.clone());
        set(&mut config.cors.credentials, self.cors.credentials);

        let redis = &self.redis;
        if redis.url.is_some() {
            config.cluster.redis.clone_from(&redis.url);
        }
        if redis.cluster.is_some() {
            config.cluster.redis_cluster.clone_from(&redis.cluster);
        }
        if redis.ca.is_some() {
            config.cluster.redis_ca.clone_from(&redis.ca);
        }
        set(
            &mut config.cluster.mode,
            redis.mode.map(|mode| match mode {
                Mode::Classic => RedisMode::Classic,
                Mode::Sharded => RedisMode::Sharded,
            }),
        );
        set(
            &mut config.cluster.subscription_mode,
            redis.subscription_mode.map(|mode| match mode {
                Subscription::Static => SubscriptionMode::Static,
                Subscription::Dynamic => SubscriptionMode::Dynamic,
                Subscription::DynamicPrivate => SubscriptionMode::DynamicPrivate,
            }),
        );
        set(&mut config.cluster.prefix, redis.prefix.clone());
        set(&mut config.cluster.requests_timeout, redis.requests_timeout);

        let recovery = &self.recovery;
        if let Some(window) = recovery.window {
            config.socketio.recovery = (!window.is_zero()).then(|| RecoveryConfig {
                window,
                ..config.socketio.recovery.clone().unwrap_or_default()
            });
        }
        if let Some(settings) = &mut config.socketio.recovery {
            set(&mut settings.skip_middleware, recovery.skip_middleware);
            set(&mut settings.max_packets, recovery.max_packets);
        }

        if self.metrics.path.is_some() {
            config.metrics_path.clone_from(&self.metrics.path);
        }
        if self.metrics.addr.is_some() {
            config.metrics_addr = self.metrics.addr;
        }

        let admin = &self.admin;
        let password_hash = super::secret::SecretSource::from_pair(
            "admin.password_hash",
            admin.password_hash.clone(),
            admin.password_hash_file.clone(),
        )
        .map_err(ConfigError)?;
        if let Some(source) = password_hash {
            let hash = source
                .load()
                .map_err(|error| ConfigError(format!("admin.password_hash_file: {error}")))?;
            config.admin.password_hash = Some(String::from_utf8_lossy(hash.expose()).into_owned());
        }
        set(&mut config.admin.enabled, admin.enabled);
        if admin.username.is_some() {
            config.admin.username.clone_from(&admin.username);
            config.admin.enabled = true;
        }
        set(
            &mut config.admin.mode,
            admin.mode.map(|mode| match mode {
                Admin::Development => AdminMode::Development,
                Admin::Production => AdminMode::Production,
            }),
        );
        set(&mut config.admin.read_only, admin.read_only);
        if admin.server_id.is_some() {
            config.admin.server_id.clone_from(&admin.server_id);
        }
        set(&mut config.admin.namespace, admin.namespace.clone());
        if admin.ui_dir.is_some() {
            config.admin.ui_dir.clone_from(&admin.ui_dir);
        }
        set(&mut config.admin.ui_path, admin.ui_path.clone());
        Ok(())
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// The binary's own settings that are not the library's `Config`, for the effective
/// configuration.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    pub(crate) shutdown_grace: Duration,
    pub(crate) node_name: Option<String>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) auth: Option<AuthMode>,
    pub(crate) jwt: Option<toml::Table>,
    pub(crate) claims: Option<toml::Table>,
    pub(crate) api: Option<toml::Table>,
    pub(crate) endpoints: Option<toml::Table>,
    pub(crate) hooks: Option<toml::Table>,
    pub(crate) lifecycle: Option<toml::Table>,
    pub(crate) revocation_ttl: Duration,
    pub(crate) namespaces: BTreeMap<String, NamespaceSection>,
}

/// The effective configuration as a file would say it: every key with its value.
pub(crate) fn effective(config: &Config, extras: &Extras) -> FileConfig {
    let engine = &config.engine;
    FileConfig {
        server: ServerSection {
            host: Some(config.host),
            port: Some(config.port),
            path: Some(config.path.clone()),
            cores: Some(config.cores),
            shutdown_grace: Some(extras.shutdown_grace),
            stats_path: config.stats_path.clone(),
            pin: Some(config.pin_cores),
            epoll: Some(config.force_epoll),
            node_name: extras.node_name.clone(),
            log_format: Some(extras.log_format.unwrap_or(LogFormat::Text)),
            parser: Some(match config.socketio.parser {
                Parser::Default => ParserName::Default,
                Parser::Msgpack => ParserName::Msgpack,
            }),
        },
        engine: EngineSection {
            ping_interval: Some(engine.ping_interval),
            ping_timeout: Some(engine.ping_timeout),
            max_payload: Some(engine.max_payload),
            connect_timeout: Some(config.socketio.connect_timeout),
            upgrade_timeout: Some(engine.upgrade_timeout),
            head_timeout: Some(config.http.head_timeout),
            max_head: Some(config.http.max_head_bytes),
            max_outbound: Some(engine.max_outbound_bytes),
            slow_consumer: Some(match engine.slow_consumer {
                SlowConsumerPolicy::Disconnect => SlowConsumer::Disconnect,
                SlowConsumerPolicy::Drop => SlowConsumer::Drop,
            }),
            send_buffer: config.http.socket_send_buffer,
            eio3: Some(engine.allow_eio3),
            per_message_deflate: Some(engine.per_message_deflate),
            deflate_threshold: Some(engine.deflate_threshold),
            deflate_level: Some(engine.deflate_level),
        },
        limits: LimitsSection {
            max_connections: Some(engine.max_sessions),
            max_connections_per_ip: Some(engine.max_sessions_per_ip),
            handshakes_per_ip: Some(engine.handshakes_per_ip_per_second),
            max_rooms_per_socket: Some(config.socketio.max_rooms_per_socket),
            max_namespaces_per_client: Some(config.socketio.max_namespaces_per_client),
        },
        cors: CorsSection {
            origins: Some(config.cors.origins.clone()),
            credentials: Some(config.cors.credentials),
        },
        redis: RedisSection {
            url: config.cluster.redis.as_deref().map(redact_url),
            cluster: config.cluster.redis_cluster.as_deref().map(redact_url),
            ca: config.cluster.redis_ca.clone(),
            mode: Some(match config.cluster.mode {
                RedisMode::Classic => Mode::Classic,
                RedisMode::Sharded => Mode::Sharded,
            }),
            prefix: Some(config.cluster.prefix.clone()),
            subscription_mode: Some(match config.cluster.subscription_mode {
                SubscriptionMode::Static => Subscription::Static,
                SubscriptionMode::Dynamic => Subscription::Dynamic,
                SubscriptionMode::DynamicPrivate => Subscription::DynamicPrivate,
            }),
            requests_timeout: Some(config.cluster.requests_timeout),
        },
        metrics: MetricsSection {
            path: config.metrics_path.clone(),
            addr: config.metrics_addr,
        },
        admin: AdminSection {
            enabled: Some(config.admin.enabled),
            username: config.admin.username.clone(),
            password_hash: config
                .admin
                .password_hash
                .as_ref()
                .map(|_| "***".to_owned()),
            password_hash_file: None,
            mode: Some(match config.admin.mode {
                AdminMode::Development => Admin::Development,
                AdminMode::Production => Admin::Production,
            }),
            read_only: Some(config.admin.read_only),
            server_id: config.admin.server_id.clone(),
            namespace: Some(config.admin.namespace.clone()),
            ui_dir: config.admin.ui_dir.clone(),
            ui_path: Some(config.admin.ui_path.clone()),
        },
        auth: AuthSection {
            default: Some(extras.auth.unwrap_or_default()),
            jwt: extras.jwt.clone().map(redact_table),
            claims: extras.claims.clone(),
        },
        users: UsersSection {
            revocation_ttl: Some(extras.revocation_ttl),
        },
        recovery: {
            let recovery = config.socketio.recovery.clone();
            RecoverySection {
                window: Some(recovery.as_ref().map_or(Duration::ZERO, |r| r.window)),
                skip_middleware: recovery.as_ref().map(|r| r.skip_middleware),
                max_packets: recovery.as_ref().map(|r| r.max_packets),
            }
        },
        api: extras.api.clone().map(redact_table),
        endpoints: extras.endpoints.clone().map(redact_table),
        hooks: extras.hooks.clone(),
        lifecycle: extras.lifecycle.clone(),
        namespaces: extras.namespaces.clone(),
    }
}

impl FileConfig {
    /// As TOML, for `--check-config`.
    pub(crate) fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# unprintable: {error}\n"))
    }
}

/// `redis://user:password@host` with the password as `***`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Every secret key's value in `table` (at any depth) as `***`.
fn redact_table(mut table: toml::Table) -> toml::Table {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(inner) => *inner = redact_table(std::mem::take(inner)),
            _ if SECRET_KEYS.contains(&key.as_str()) => {
                *value = toml::Value::String("***".to_owned());
            }
            _ => {}
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "ringcast-config-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_file_sets_the_librarys_config() {
        let path = write(
            "sets",
            "[server]\nport = 4000\ncores = 2\n[engine]\nping_interval = \"5s\"\n\
             max_payload = \"64KiB\"\nper_message_deflate = true\ndeflate_threshold = \"2KiB\"\n\
             deflate_level = 1\n[limits]\nmax_rooms_per_socket = 7\n\
             [cors]\norigins = [\"http://a\"]\n",
        );
        let file = load(Some(&path), vars(&[])).expect("load");
        let mut config = Config::default();
        file.apply(&mut config).expect("apply");
        assert_eq!(config.port, 4000);
        assert_eq!(config.cores, 2);
        assert_eq!(config.engine.ping_interval, Duration::from_secs(5));
        assert_eq!(config.engine.max_payload, 65_536);
        assert!(config.engine.per_message_deflate);
        assert_eq!(config.engine.deflate_threshold, 2048);
        assert_eq!(config.engine.deflate_level, 1);
        assert_eq!(config.socketio.max_rooms_per_socket, 7);
        assert_eq!(config.cors.origins, ["http://a"]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn recovery_is_a_section_and_a_zero_window_turns_it_off() {
        let path = write(
            "recovery",
            "[recovery]\nwindow = \"30s\"\nskip_middleware = false\nmax_packets = 50\n",
        );
        let file = load(Some(&path), vars(&[])).expect("load");
        let mut config = Config::default();
        file.apply(&mut config).expect("apply");
        let recovery = config.socketio.recovery.clone().expect("on");
        assert_eq!(recovery.window, Duration::from_secs(30));
        assert!(!recovery.skip_middleware);
        assert_eq!(recovery.max_packets, 50);
        assert!(effective(&config, &Extras::default())
            .to_toml()
            .contains("window = \"30s\""));
        let file = load(None, vars(&[("RINGCAST_RECOVERY__WINDOW", "0")])).expect("load");
        file.apply(&mut config).expect("apply");
        assert_eq!(config.socketio.recovery, None);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let path = write("env", "[server]\nport = 4000\nnode_name = \"a\"\n");
        let file = load(
            Some(&path),
            vars(&[
                ("RINGCAST_SERVER__PORT", "4001"),
                ("RINGCAST_SERVER__NODE_NAME", "1234"),
                ("RINGCAST_ENGINE__PING_INTERVAL", "2500"),
                ("RINGCAST_CORS__ORIGINS", "http://a,http://b"),
                ("RINGCAST_ENGINE__EIO3", "false"),
                ("RINGCAST_BIN", "not a key"),
                ("RINGCAST_LIMITS__MAX_CONNECTIONS", ""),
            ]),
        )
        .expect("load");
        assert_eq!(file.server.port, Some(4001));
        assert_eq!(file.server.node_name.as_deref(), Some("1234"));
        assert_eq!(file.engine.ping_interval, Some(Duration::from_millis(2500)));
        assert_eq!(
            file.cors.origins,
            Some(vec!["http://a".to_owned(), "http://b".to_owned()])
        );
        assert_eq!(file.engine.eio3, Some(false));
        assert_eq!(file.limits.max_connections, None);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn an_unknown_key_or_a_wrong_type_names_the_key_and_line() {
        let path = write("unknown", "[server]\nport = 4000\nprot = 1\n");
        let error = load(Some(&path), vars(&[])).expect_err("unknown key").0;
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("prot"), "{error}");
        let path = write("type", "[engine]\nping_interval = true\n");
        let error = load(Some(&path), vars(&[])).expect_err("wrong type").0;
        assert!(error.contains("line 2"), "{error}");
        let error = load(None, vars(&[("RINGCAST_SERVER__PROT", "1")]))
            .expect_err("unknown variable")
            .0;
        assert!(error.contains("RINGCAST_SERVER__PROT"), "{error}");
        assert!(error.contains("prot"), "{error}");
        let error = load(None, vars(&[("RINGCAST_NAMESPACES__CHAT__AUTH", "jwt")]))
            .expect_err("namespaces from the environment")
            .0;
        assert!(error.contains("file only"), "{error}");
    }

    #[test]
    fn the_parser_is_a_server_key_and_other_values_are_refused() {
        let path = write("parser", "[server]\nparser = \"msgpack\"\n");
        let file = load(Some(&path), vars(&[])).expect("load");
        let mut config = Config::default();
        file.apply(&mut config).expect("apply");
        assert_eq!(config.socketio.parser, Parser::Msgpack);
        assert!(effective(&config, &Extras::default())
            .to_toml()
            .contains("parser = \"msgpack\""));
        let file = load(None, vars(&[("RINGCAST_SERVER__PARSER", "default")])).expect("load");
        file.apply(&mut config).expect("apply");
        assert_eq!(config.socketio.parser, Parser::Default);
        let path = write("bad-parser", "[server]\nport = 1\nparser = \"json\"\n");
        let error = load(Some(&path), vars(&[])).expect_err("unknown parser").0;
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("json"), "{error}");
        let error = load(None, vars(&[("RINGCAST_SERVER__PARSER", "notepack")]))
            .expect_err("unknown parser from the environment")
            .0;
        assert!(error.contains("notepack"), "{error}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_effective_configuration_hides_secrets() {
        let mut config = Config::default();
        config.cluster.redis = Some("redis://ops:hunter2@127.0.0.1:6379".to_owned());
        config.admin.password_hash = Some("$2b$10$abc".to_owned());
        let api: toml::Table = toml::from_str(
            "listen = \"127.0.0.1:3001\"\n[keys.backend]\nkey = \"s3cret-key\"\nscopes = [\"*\"]\n",
        )
        .expect("api table");
        let endpoints: toml::Table = toml::from_str(
            "[backend]\nurl = \"http://127.0.0.1:8000/\"\nsecret = \"hook-s3cret\"\nprevious_secret = \"old-s3cret\"\n",
        )
        .expect("endpoints table");
        let extras = Extras {
            api: Some(api),
            endpoints: Some(endpoints),
            ..Extras::default()
        };
        let text = effective(&config, &extras).to_toml();
        assert!(!text.contains("hook-s3cret"), "{text}");
        assert!(!text.contains("old-s3cret"), "{text}");
        assert!(text.contains("http://127.0.0.1:8000/"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("s3cret-key"), "{text}");
        assert!(!text.contains("$2b$10$abc"), "{text}");
        assert!(text.contains("ops:***@127.0.0.1"), "{text}");
        // And it reads back as a valid file.
        toml::from_str::<FileConfig>(&text).expect("the printout is a valid file");
    }
}
