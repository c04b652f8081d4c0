//! Backend hooks (spec `control-plane.md` §2.3, §2.4): the server asks a backend (may this
//! client connect, may it join, what does this event return) and tells it (lifecycle events,
//! notifications), over HTTP/1.1 with signed CloudEvents.
//!
//! [`Hooks`] is the node's part, shared by every shard: the endpoints (URL, secrets, limits,
//! the circuit breaker), the connect and refresh hook settings, the lifecycle settings and the
//! boot's identity. Each shard keeps its own connection pool per endpoint and its own delivery
//! lanes (thread-locals here and in [`lifecycle`]), so a socket's hooks run on the shard that
//! owns it and its order comes for free. Nothing here runs unless a hook is configured.
//!
//! Built on the library's public seams and `net::client`: must not depend on the engine, the
//! shard, the bus or the runtime.

pub(crate) mod config;
pub(crate) mod connect;
pub(crate) mod envelope;
pub(crate) mod forward;
pub(crate) mod lifecycle;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Deserialize as _;

use self::config::{
    EndpointConfig, EventRule, HooksConfig, LifecycleConfig, LifecycleKind, StartupCheck,
    MAX_CALL_TIMEOUT, MAX_HOOK_TIMEOUT, MAX_WAITING,
};
use self::envelope::{CloudEvent, Origin};
use super::counters::Counters;
use super::secret::{Secret, SecretSource};
use crate::net::client::{Answer, CallError, Pool, Target};
use crate::net::redis::{TlsCa, TlsError};

/// The media types of one event and of a batch.
const SINGLE: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// One `[endpoints.<name>]`, ready: where, how signed, how bounded, and its breaker.
pub(crate) struct Endpoint {
    pub(crate) name: String,
    target: Target,
    sources: Vec<SecretSource>,
    /// The current secret, then the previous one while rotating; swapped on SIGHUP.
    secrets: ArcSwap<Vec<Secret>>,
    pub(crate) timeout: Duration,
    /// Connections each shard may open.
    per_shard: usize,
    pub(crate) max_response: usize,
    /// The static headers as header lines.
    header_lines: String,
    startup_check: StartupCheck,
    breaker: Breaker,
    /// A key for this endpoint in the shards' pool tables.
    id: usize,
    /// Where its requests' durations are counted.
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Consecutive failures open it; while open, calls fail at once. After the cooldown one call
/// goes through: a success closes it, a failure opens it again.
struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    fn is_open(&self) -> bool {
        envelope::unix_millis() < self.open_until_ms.load(Ordering::Relaxed)
    }

    fn record(&self, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.threshold > 0 && failures >= self.threshold {
            let until = envelope::unix_millis()
                + u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX / 2);
            self.open_until_ms.store(until, Ordering::Relaxed);
            tracing::warn!(failures, "a backend endpoint's breaker is open");
        }
    }
}

/// Why a call got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nothing reached the backend, or the connection broke, or the breaker is open.
    Unavailable,
    Timeout,
    /// A non-2xx status, a body that is not the JSON expected, or an oversized one.
    Error,
    /// Too many calls wait already.
    Overloaded,
}

impl Failure {
    /// The error code clients see.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Failure::Unavailable => "backend_unavailable",
            Failure::Timeout => "backend_timeout",
            Failure::Error => "backend_error",
            Failure::Overloaded => "overloaded",
        }
    }

    /// The outcome label the counters use.
    pub(crate) fn outcome(self) -> &'static str {
        match self {
            Failure::Unavailable => "unavailable",
            Failure::Timeout => "timeout",
            Failure::Error => "error",
            Failure::Overloaded => "overloaded",
        }
    }

    fn of(error: CallError) -> Failure {
        match error {
            CallError::Refused | CallError::Broken => Failure::Unavailable,
            CallError::Timeout => Failure::Timeout,
            CallError::TooLarge | CallError::Malformed => Failure::Error,
            CallError::Overloaded => Failure::Overloaded,
        }
    }
}

thread_local! {
    /// This shard's connection pool per endpoint (by [`Endpoint::id`]).
    static POOLS: RefCell<HashMap<usize, Rc<Pool>>> = RefCell::new(HashMap::new());
    /// This shard's event counter, for ids.
    static EVENTS: Cell<u64> = const { Cell::new(0) };
}

static NEXT_ENDPOINT: AtomicUsize = AtomicUsize::new(0);

impl Endpoint {
    fn new(
        name: &str,
        config: &EndpointConfig,
        shards: usize,
        hooks: &HooksConfig,
        counters: Arc<Counters>,
    ) -> Result<Endpoint, String> {
        let key = format!("endpoints.{name}");
        // The TLS client is built once, here: the system's roots are read once per endpoint.
        let tls = if Target::is_https(&config.url) {
            let ca = match &config.ca_file {
                Some(path) => TlsCa::from_file(path).map_err(|error| match error {
                    // Names the file already.
                    TlsError::Read { .. } => format!("{key}.ca_file: {error}"),
                    _ => format!("{key}.ca_file: {}: {error}", path.display()),
                })?,
                None => TlsCa::default(),
            };
            let client = ca
                .client_config(&format!("hooks {key}"))
                .map_err(|error| format!("{key}: {error}"))?;
            Some(Arc::new(client))
        } else if config.ca_file.is_some() {
            return Err(format!("{key}.ca_file: only for an https:// url"));
        } else {
            None
        };
        let target =
            Target::parse(&config.url, tls).map_err(|error| format!("{key}.url: {error}"))?;
        let mut sources = Vec::new();
        let current =
            SecretSource::from_pair("secret", config.secret.clone(), config.secret_file.clone())
                .map_err(|error| format!("{key}: {error}"))?
                .ok_or_else(|| {
                    format!("{key}: set `secret` or `secret_file` (requests are signed)")
                })?;
        sources.push(current);
        if let Some(previous) = SecretSource::from_pair(
            "previous_secret",
            config.previous_secret.clone(),
            config.previous_secret_file.clone(),
        )
        .map_err(|error| format!("{key}: {error}"))?
        {
            sources.push(previous);
        }
        let secrets = load_all(&sources).map_err(|error| format!("{key}: {error}"))?;
        if config.timeout.is_zero() || config.timeout > MAX_CALL_TIMEOUT {
            return Err(format!("{key}.timeout: between 1 ms and 60 s"));
        }
        if config.max_connections == 0 {
            return Err(format!("{key}.max_connections: at least 1"));
        }
        let mut header_lines = String::new();
        for (header, value) in &config.headers {
            let clean = |text: &str| {
                !text.is_empty() && !text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
            };
            if !clean(header) || header.contains(':') || !clean(value) {
                return Err(format!("{key}.headers.{header}: not a valid header"));
            }
            header_lines.push_str(&format!("{header}: {value}\r\n"));
        }
        Ok(Endpoint {
            name: name.to_owned(),
            target,
            sources,
            secrets: ArcSwap::from_pointee(secrets),
            timeout: config.timeout,
            per_shard: (config.max_connections / shards.max(1)).max(1),
            max_response: config.max_response,
            header_lines,
            startup_check: config.startup_check,
            breaker: Breaker {
                failures: AtomicU32::new(0),
                open_until_ms: AtomicU64::new(0),
                threshold: hooks.breaker_failures,
                cooldown: hooks.breaker_cooldown,
            },
            id: NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed),
            counters,
        })
    }

    /// Re-reads the secrets (SIGHUP); on failure the old ones stay.
    fn reload(&self) -> Result<(), String> {
        let secrets =
            load_all(&self.sources).map_err(|error| format!("endpoints.{}: {error}", self.name))?;
        self.secrets.store(Arc::new(secrets));
        Ok(())
    }

    /// This shard's pool for the endpoint.
    fn pool(&self) -> Rc<Pool> {
        POOLS.with(|pools| {
            pools
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(|| {
                    Rc::new(Pool::new(self.target.clone(), self.per_shard, MAX_WAITING))
                })
                .clone()
        })
    }

    /// POSTs `body` (one event, or a batch), signed, by `deadline`. Refused connections are
    /// tried once more (nothing reached the backend); the breaker fails it at once while open.
    /// The caller tells the breaker how the answer counts ([`Endpoint::record`]).
    pub(crate) async fn post(
        &self,
        kind: &'static str,
        body: &[u8],
        batch: bool,
        delivery: &str,
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        if self.breaker.is_open() {
            return Err(Failure::Unavailable);
        }
        let started = Instant::now();
        let answer = self.exchange(body, batch, delivery, deadline).await;
        self.counters.hook_time(&self.name, kind, started.elapsed());
        answer
    }

    /// [`Endpoint::post`]'s exchange: signed, sent, answered (a refused connect tried again).
    async fn exchange(
        &self,
        body: &[u8],
        batch: bool,
        delivery: &str,
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        let pool = self.pool();
        let mut tries = 0;
        loop {
            tries += 1;
            let t = envelope::unix_millis() / 1000;
            let signature = envelope::signature(&self.secrets.load(), t, body);
            let extra = format!(
                "Content-Type: {}\r\nRingcast-Delivery: {delivery}\r\nRingcast-Signature: {signature}\r\n{}",
                if batch { BATCH } else { SINGLE },
                self.header_lines
            );
            match pool.post(&extra, body, deadline, self.max_response).await {
                Err(CallError::Refused) if tries < 2 && Instant::now() < deadline => continue,
                Err(error) => {
                    let failure = Failure::of(error);
                    if failure != Failure::Overloaded {
                        self.breaker.record(false);
                    }
                    return Err(failure);
                }
                Ok(answer) => return Ok(answer),
            }
        }
    }

    /// Tells the breaker whether an answer was a success.
    pub(crate) fn record(&self, ok: bool) {
        self.breaker.record(ok);
    }
}

fn load_all(sources: &[SecretSource]) -> Result<Vec<Secret>, String> {
    sources.iter().map(SecretSource::load).collect()
}

/// The lifecycle settings with their endpoint.
pub(crate) struct Lifecycle {
    pub(crate) config: LifecycleConfig,
    pub(crate) endpoint: Arc<Endpoint>,
}

/// The node's hooks: endpoints, settings and identity, shared by every shard.
pub(crate) struct Hooks {
    pub(crate) origin: Origin,
    pub(crate) shards: usize,
    pub(crate) endpoints: BTreeMap<String, Arc<Endpoint>>,
    pub(crate) settings: HooksConfig,
    pub(crate) connect: Option<Arc<Endpoint>>,
    pub(crate) refresh: Option<Arc<Endpoint>>,
    pub(crate) lifecycle: Option<Lifecycle>,
    /// Batching settings for notify-mode events when there is no `[lifecycle]`.
    pub(crate) batching: LifecycleConfig,
    /// Connect and refresh calls in flight on this node.
    pub(crate) in_flight: AtomicUsize,
    pub(crate) counters: Arc<Counters>,
}

/// The hook tables of the file, as written.
#[derive(Debug, Default, Clone)]
pub(crate) struct HookTables {
    pub(crate) endpoints: Option<toml::Table>,
    pub(crate) hooks: Option<toml::Table>,
    pub(crate) lifecycle: Option<toml::Table>,
}

impl HookTables {
    pub(crate) fn is_empty(&self) -> bool {
        self.endpoints.is_none() && self.hooks.is_none() && self.lifecycle.is_none()
    }
}

impl Hooks {
    /// Checks the tables (every endpoint a hook, rule or lifecycle names must exist) and
    /// reads every secret. `rules` are the namespaces' event rules, by namespace key.
    pub(crate) fn new(
        tables: &HookTables,
        rules: &[(String, &EventRule)],
        join_hooks: &[(String, &str)],
        node: &str,
        shards: usize,
        counters: Arc<Counters>,
    ) -> Result<Hooks, String> {
        let mut settings = match &tables.hooks {
            Some(table) => HooksConfig::deserialize(toml::Value::Table(table.clone()))
                .map_err(|error| format!("hooks: {}", error.message()))?,
            None => HooksConfig::default(),
        };
        // Header names in one case, as the sessions keep them.
        for name in &mut settings.forward_headers {
            name.make_ascii_lowercase();
        }
        if settings.timeout.is_zero() || settings.timeout > MAX_HOOK_TIMEOUT {
            return Err("hooks.timeout: between 1 ms and 10 s".into());
        }
        let mut endpoints = BTreeMap::new();
        if let Some(table) = &tables.endpoints {
            for (name, value) in table {
                let config = EndpointConfig::deserialize(value.clone())
                    .map_err(|error| format!("endpoints.{name}: {}", error.message()))?;
                let endpoint = Endpoint::new(name, &config, shards, &settings, counters.clone())?;
                endpoints.insert(name.clone(), Arc::new(endpoint));
            }
        }
        let find = |key: &str, name: &str| -> Result<Arc<Endpoint>, String> {
            endpoints
                .get(name)
                .cloned()
                .ok_or_else(|| format!("{key}: no endpoint named `{name}` in [endpoints]"))
        };
        let connect = settings
            .connect
            .as_deref()
            .map(|name| find("hooks.connect", name))
            .transpose()?;
        let refresh = settings
            .refresh
            .as_deref()
            .map(|name| find("hooks.refresh", name))
            .transpose()?;
        let lifecycle = match &tables.lifecycle {
            Some(table) => {
                let config = LifecycleConfig::deserialize(toml::Value::Table(table.clone()))
                    .map_err(|error| format!("lifecycle: {}", error.message()))?;
                check_batching(&config)?;
                let endpoint = find("lifecycle.endpoint", &config.endpoint)?;
                Some(Lifecycle { config, endpoint })
            }
            None => None,
        };
        for (key, rule) in rules {
            find(&format!("{key}.endpoint"), &rule.endpoint)?;
            if rule.max_in_flight == 0 || rule.max_pending == 0 {
                return Err(format!(
                    "{key}: max_in_flight and max_pending are at least 1"
                ));
            }
            if rule
                .timeout
                .is_some_and(|t| t.is_zero() || t > MAX_CALL_TIMEOUT)
            {
                return Err(format!("{key}.timeout: between 1 ms and 60 s"));
            }
        }
        for (key, name) in join_hooks {
            find(key, name)?;
        }
        let batching = match &lifecycle {
            Some(lifecycle) => lifecycle.config.clone(),
            None => LifecycleConfig::for_notifications(),
        };
        Ok(Hooks {
            origin: Origin::new(node),
            shards: shards.max(1),
            endpoints,
            settings,
            connect,
            refresh,
            lifecycle,
            batching,
            in_flight: AtomicUsize::new(0),
            counters,
        })
    }

    /// The endpoint named `name` (checked by [`Hooks::new`]).
    pub(crate) fn endpoint(&self, name: &str) -> Option<&Arc<Endpoint>> {
        self.endpoints.get(name)
    }

    /// Whether a namespace with these lifecycle kinds emits `kind`.
    pub(crate) fn lifecycle_kinds(&self) -> Vec<LifecycleKind> {
        self.lifecycle
            .as_ref()
            .map(|lifecycle| lifecycle.config.events.clone())
            .unwrap_or_default()
    }

    /// A new event of `kind` about `subject` from `shard`, with `data`.
    pub(crate) fn event(
        &self,
        shard: usize,
        kind: &'static str,
        subject: Option<&str>,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> CloudEvent {
        let counter = EVENTS.with(|events| {
            let next = events.get() + 1;
            events.set(next);
            next
        });
        CloudEvent {
            kind,
            id: self.origin.event_id(shard, counter),
            subject: subject.map(str::to_owned),
            data,
        }
    }

    /// Sends one event as a call to `endpoint` (by `deadline`) and reads the answer; counts
    /// the request as `kind`. Only the caller knows whether the answer is a success.
    pub(crate) async fn call(
        &self,
        endpoint: &Endpoint,
        kind: &'static str,
        event: &CloudEvent,
        deadline: Instant,
    ) -> Result<Answer, Failure> {
        let body = event.to_json(&self.origin);
        let delivery = envelope::delivery_id();
        endpoint.post(kind, &body, false, &delivery, deadline).await
    }

    /// Re-reads every endpoint's secrets (SIGHUP).
    pub(crate) fn reload(&self) -> Result<(), String> {
        let failed: Vec<String> = self
            .endpoints
            .values()
            .filter_map(|endpoint| endpoint.reload().err())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// Sends a signed `io.ringcast.ping` to each endpoint whose `startup_check` is on, from
    /// this (non-shard) thread. An endpoint with `fail` that does not answer 2xx is an error.
    pub(crate) fn startup_check(&self) -> Result<(), String> {
        for endpoint in self.endpoints.values() {
            if endpoint.startup_check == StartupCheck::Off {
                continue;
            }
            let mut data = serde_json::Map::new();
            data.insert("node".into(), self.origin.node.clone().into());
            data.insert("boot_id".into(), self.origin.boot_id.clone().into());
            let event = self.event(0, "io.ringcast.ping", None, data);
            let body = event.to_json(&self.origin);
            let t = envelope::unix_millis() / 1000;
            let signature = envelope::signature(&endpoint.secrets.load(), t, &body);
            let status = crate::net::client::post_blocking(
                &endpoint.target,
                &format!(
                    "Content-Type: {SINGLE}\r\nRingcast-Delivery: {}\r\nRingcast-Signature: {signature}\r\n{}",
                    envelope::delivery_id(),
                    endpoint.header_lines
                ),
                &body,
                endpoint.timeout,
            );
            let ok = matches!(status, Ok(200..=299));
            self.counters
                .hook_call(&endpoint.name, "ping", if ok { "ok" } else { "error" });
            if !ok {
                let why = match status {
                    Ok(status) => format!("answered {status}"),
                    Err(error) => error,
                };
                if endpoint.startup_check == StartupCheck::Fail {
                    return Err(format!(
                        "endpoints.{}: the startup ping {why}",
                        endpoint.name
                    ));
                }
                tracing::warn!(endpoint = %endpoint.name, why, "the startup ping failed");
            }
        }
        Ok(())
    }
}

/// The start of every socket event's `data`: its namespace, its id and its user (`null` for
/// an anonymous socket).
pub(crate) fn about(
    socket: &crate::socketio::Socket,
    user: Option<&str>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert("namespace".into(), socket.nsp().as_ref().into());
    data.insert("socket".into(), socket.id().into());
    data.insert(
        "user".into(),
        user.map_or(serde_json::Value::Null, Into::into),
    );
    data
}

fn check_batching(config: &LifecycleConfig) -> Result<(), String> {
    if config.lanes == 0 || config.batch_max == 0 || config.batch_bytes == 0 {
        return Err("lifecycle: lanes, batch_max and batch_bytes are at least 1".into());
    }
    if config.queue_max == 0 {
        return Err("lifecycle.queue_max: at least 1".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::config::{EndpointConfig, HooksConfig};
    use super::Endpoint;

    fn endpoint(text: &str) -> Result<Endpoint, String> {
        let config: EndpointConfig = toml::from_str(text).expect("endpoint");
        let hooks: HooksConfig = toml::from_str("").expect("hooks");
        Endpoint::new("b", &config, 1, &hooks, std::sync::Arc::default())
    }

    fn refused(text: &str) -> String {
        match endpoint(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(error) => error,
        }
    }

    #[test]
    fn an_https_endpoints_ca_file_is_checked_at_startup() {
        let secret = "secret = \"s\"\n";
        // The system's roots only.
        endpoint(&format!("url = \"https://127.0.0.1:9/x\"\n{secret}")).expect("https");
        let error = refused(&format!(
            "url = \"http://127.0.0.1:9/x\"\nca_file = \"/ca.pem\"\n{secret}"
        ));
        assert!(error.starts_with("endpoints.b.ca_file:"), "{error}");
        let error = refused(&format!(
            "url = \"https://127.0.0.1:9/x\"\nca_file = \"/nonexistent/ringcast-ca.pem\"\n\
             {secret}"
        ));
        assert!(
            error.starts_with("endpoints.b.ca_file:") && error.contains("ringcast-ca.pem"),
            "{error}"
        );
        let dir = std::env::temp_dir().join(format!("ringcast-hooks-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "not a certificate\n").expect("write");
        let error = refused(&format!(
            "url = \"https://127.0.0.1:9/x\"\nca_file = \"{}\"\n{secret}",
            not_pem.display()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            error.starts_with("endpoints.b.ca_file:") && error.contains("CERTIFICATE"),
            "{error}"
        );
    }
}
