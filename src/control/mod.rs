//! The standalone control plane of the `ringcast` binary (spec `control-plane.md`): the
//! configuration file, per-namespace policy, JWT auth with live expiry, users and revocation,
//! and the HTTP server API. An application built on the library's seams (namespaces, the authorizer, sockets,
//! operators, routes), as `apps` builds the built-in events; the library gains no behaviour from it.
//! Must not depend on the engine, the shard or the bus.
//!
//! [`Standalone`] is what the binary drives: load (file, then environment), let the flags
//! change the result, `prepare` (policies, key material), then `builder`.

pub(crate) mod api;
mod app;
mod auth;
pub(crate) mod config;
pub(crate) mod counters;
pub(crate) mod hooks;
pub(crate) mod jwt;
pub(crate) mod policy;
pub(crate) mod secret;
pub(crate) mod units;
pub(crate) mod users;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize as _;

use self::config::{AuthMode, Extras, FileConfig, LogFormat, NamespaceSection};
use self::jwt::{ClaimsConfig, JwtConfig, Verifier};
use self::policy::NamespacePolicy;
use crate::config::Config;
use crate::server::{Server, ServerBuilder};

pub(crate) use self::app::open as open_namespace;

/// Revocations kept in Redis for the cluster (§2.6): written on revoke, deleted on lift, and
/// loaded when this process starts as a node, so a node started after a revocation refuses the
/// revoked tokens too. Empty until the server has started with a cluster.
#[derive(Default)]
pub(crate) struct RevocationStore {
    keys: std::sync::OnceLock<(crate::server::SharedKeys, String)>,
}

/// Stored revocations read at start, at most (each is one user).
const MAX_STORED_REVOCATIONS: usize = 1_000_000;

impl RevocationStore {
    /// Keeps `user`'s revocation (as `revocations` holds it) in Redis until it ends.
    pub(crate) fn save(&self, revocations: &users::Revocations, user: &str, before: u64) {
        let (Some((keys, prefix)), Some(until)) = (self.keys.get(), revocations.until(user)) else {
            return;
        };
        let ttl = Duration::from_secs(until.saturating_sub(users::unix_now()));
        if !keys.set_ex(
            &users::stored_key(prefix, user),
            &format!("{before} {until}"),
            ttl,
        ) {
            tracing::warn!(
                user,
                "revocation not stored in Redis (unreachable); other nodes still hear it"
            );
        }
    }

    /// Deletes `user`'s stored revocation.
    pub(crate) fn remove(&self, user: &str) {
        if let Some((keys, prefix)) = self.keys.get() {
            keys.delete(&users::stored_key(prefix, user));
        }
    }

    /// Called once the server starts as a cluster node: remembers the keys, and loads every
    /// stored revocation into `revocations` on a thread of its own (the start does not wait;
    /// until it is done, only this node's own revocations are known).
    fn start(
        &self,
        keys: crate::server::SharedKeys,
        prefix: String,
        revocations: Arc<users::Revocations>,
    ) {
        let _ = self.keys.set((keys.clone(), prefix.clone()));
        let spawned = std::thread::Builder::new()
            .name("ringcast-revocations".to_owned())
            .spawn(move || load_revocations(&keys, &prefix, &revocations));
        if let Err(error) = spawned {
            tracing::error!(%error, "revocations not loaded");
        }
    }
}

/// Reads every stored revocation into `revocations`. The link connects after the start, so a
/// failed read is tried again, backing off from 200 ms to 5 s, for about a minute.
fn load_revocations(
    keys: &crate::server::SharedKeys,
    prefix: &str,
    revocations: &users::Revocations,
) {
    let pattern = users::stored_pattern(prefix);
    let mut wait = Duration::from_millis(200);
    let mut last_error = String::new();
    for _ in 0..20 {
        match block_on(keys.scan_values(&pattern, MAX_STORED_REVOCATIONS)) {
            Ok(stored) => {
                let mut loaded = 0;
                for (key, value) in stored {
                    if let Some((user, before, until)) = users::parse_stored(prefix, &key, &value) {
                        revocations.restore(&user, before, until);
                        loaded += 1;
                    }
                }
                return tracing::info!(loaded, "revocations loaded from Redis");
            }
            Err(error) => last_error = error,
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    tracing::warn!(error = %last_error, "revocations not loaded from Redis");
}

/// Runs `future` to its end on this thread, parked between wake-ups: the link's answers are
/// runtime-free channels, and this thread has nothing else to do meanwhile.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// How long a revocation is remembered by default (§2.6).
const REVOCATION_TTL: Duration = Duration::from_secs(24 * 3600);

/// The binary's whole configuration: the library's [`Config`] and the control plane's
/// settings, from defaults, the file, the environment and the flags, in that order.
pub struct Standalone {
    config: Config,
    file: FileConfig,
    shutdown_grace: Duration,
    json_logs: bool,
    namespaces: BTreeMap<String, NamespaceSection>,
    api_listen: Option<std::net::SocketAddr>,
    prepared: Option<Prepared>,
}

/// What `prepare` made of the settings.
struct Prepared {
    policies: Vec<(String, NamespacePolicy)>,
    authority: Option<Arc<auth::Authority>>,
    revocations: Arc<users::Revocations>,
    store: Arc<RevocationStore>,
    api: Option<api::Api>,
    counters: Arc<counters::Counters>,
    hooks: Option<Arc<hooks::Hooks>>,
}

impl Standalone {
    /// The defaults with the file at `path` (if any) and then the `RINGCAST_<SECTION>__<KEY>`
    /// variables of `env` over them. The error names the key and line, or the variable.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        default_shutdown_grace: Duration,
    ) -> Result<Standalone, String> {
        let file = config::load(path, env).map_err(|error| error.0)?;
        let mut config = Config::default();
        file.apply(&mut config).map_err(|error| error.0)?;
        let namespaces = file
            .namespaces
            .iter()
            .map(|(name, section)| (normalize_namespace(name), section.clone()))
            .collect();
        Ok(Standalone {
            config,
            shutdown_grace: file.server.shutdown_grace.unwrap_or(default_shutdown_grace),
            json_logs: file.server.log_format == Some(LogFormat::Json),
            namespaces,
            file,
            api_listen: None,
            prepared: None,
        })
    }

    /// The library's configuration, for the flags to change.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The library's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How long a shutdown lets clients receive what is queued.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// Sets the shutdown grace (the flag).
    pub fn set_shutdown_grace(&mut self, grace: Duration) {
        self.shutdown_grace = grace;
    }

    /// Whether log lines are JSON objects.
    pub fn json_logs(&self) -> bool {
        self.json_logs
    }

    /// Sets the log format (the flag).
    pub fn set_json_logs(&mut self, json: bool) {
        self.json_logs = json;
    }

    /// Serves the HTTP API on `addr` (the `--api-listen` flag: `api.listen`).
    pub fn set_api_listen(&mut self, addr: std::net::SocketAddr) {
        self.api_listen = Some(addr);
    }

    /// Serves `name` too, with the default policy unless the file gives it one (the
    /// `--namespace` flag).
    pub fn add_namespace(&mut self, name: &str) {
        self.namespaces
            .entry(normalize_namespace(name))
            .or_default();
    }

    /// The served namespaces' names (`/` when none is named).
    pub fn namespace_names(&self) -> Vec<String> {
        if self.namespaces.is_empty() {
            vec!["/".to_owned()]
        } else {
            self.namespaces.keys().cloned().collect()
        }
    }

    /// Checks what can only be checked whole (policies, token keys: their files are read
    /// here) and builds what the server needs. The error names the key.
    pub fn prepare(&mut self) -> Result<(), String> {
        let default_auth = self.file.auth.default.unwrap_or_default();
        let mut policies = Vec::new();
        for name in self.namespace_names() {
            let section = self.namespaces.get(&name).cloned().unwrap_or_default();
            let key = format!("namespaces.\"{name}\"");
            let policy = NamespacePolicy::from_section(&section, default_auth, &key)
                .map_err(|error| error.0)?;
            policies.push((name, policy));
        }
        let wants_jwt = policies.iter().any(|(_, p)| p.auth.takes_tokens());
        let wants_hook = policies.iter().any(|(_, p)| p.auth.asks_hook());
        let revocations = Arc::new(users::Revocations::default());
        let counters = Arc::new(counters::Counters::default());
        let store = Arc::new(RevocationStore::default());
        let authority = match (&self.file.auth.jwt, wants_jwt) {
            (None, true) => return Err(
                "auth: a namespace has auth = \"jwt\" (or \"jwt+hook\") but [auth.jwt] is missing"
                    .into(),
            ),
            (Some(table), _) => {
                let jwt = JwtConfig::deserialize(toml::Value::Table(table.clone()))
                    .map_err(|error| format!("auth.jwt: {}", error.message()))?;
                let claims = match &self.file.auth.claims {
                    Some(table) => ClaimsConfig::deserialize(toml::Value::Table(table.clone()))
                        .map_err(|error| format!("auth.claims: {}", error.message()))?,
                    None => ClaimsConfig::default(),
                };
                let verifier = Verifier::new(&jwt, &claims)?;
                Some(Arc::new(auth::Authority::new(
                    verifier,
                    &jwt,
                    revocations.clone(),
                    counters.clone(),
                )))
            }
            (None, false) if wants_hook => Some(Arc::new(auth::Authority::without_tokens(
                revocations.clone(),
                counters.clone(),
            ))),
            (None, false) => None,
        };
        let hooks = self.hooks(&counters)?;
        if let Some(hooks) = &hooks {
            // The sessions keep the headers the hooks forward, and no other.
            self.config.engine.handshake_headers = hooks.settings.forward_headers.clone();
        }
        if wants_hook && hooks.as_ref().and_then(|h| h.connect.as_ref()).is_none() {
            return Err(
                "hooks.connect: a namespace has auth = \"hook\" (or \"jwt+hook\") but no connect hook is set"
                    .into(),
            );
        }
        if self.file.auth.claims.is_some() && self.file.auth.jwt.is_none() {
            return Err("auth.claims: needs [auth.jwt]".into());
        }
        let api = self.api_config()?;
        let api = match api {
            Some(config) => Some(
                api::Api::new(
                    &config,
                    Some(self.node_name()),
                    api::Users {
                        revocations: revocations.clone(),
                        revocation_ttl: self.revocation_ttl(),
                        store: store.clone(),
                    },
                    counters.clone(),
                )
                .map_err(|error| error.to_string())?,
            ),
            None => None,
        };
        self.prepared = Some(Prepared {
            policies,
            authority,
            revocations,
            store,
            api,
            counters,
            hooks,
        });
        Ok(())
    }

    /// The hooks the file configures (endpoints, `[hooks]`, `[lifecycle]`, the namespaces'
    /// rules and join hooks), checked; `None` when it configures none.
    fn hooks(
        &self,
        counters: &Arc<counters::Counters>,
    ) -> Result<Option<Arc<hooks::Hooks>>, String> {
        let tables = hooks::HookTables {
            endpoints: self.file.endpoints.clone(),
            hooks: self.file.hooks.clone(),
            lifecycle: self.file.lifecycle.clone(),
        };
        let mut rules = Vec::new();
        let mut join_hooks = Vec::new();
        for (name, section) in &self.namespaces {
            for (n, rule) in section.events.iter().flatten().enumerate() {
                rules.push((format!("namespaces.\"{name}\".events[{n}]"), rule));
            }
            if let Some(endpoint) = &section.join_hook {
                join_hooks.push((
                    format!("namespaces.\"{name}\".join_hook"),
                    endpoint.as_str(),
                ));
            }
        }
        if tables.is_empty() && rules.is_empty() && join_hooks.is_empty() {
            return Ok(None);
        }
        let hooks = hooks::Hooks::new(
            &tables,
            &rules,
            &join_hooks,
            &self.node_name(),
            self.config.cores,
            counters.clone(),
        )?;
        Ok(Some(Arc::new(hooks)))
    }

    /// Sends each endpoint's startup ping (`startup_check`); an error when one with `fail`
    /// does not answer. Call after `prepare`, before starting the server.
    pub fn check_endpoints(&self) -> Result<(), String> {
        match self.prepared.as_ref().and_then(|p| p.hooks.as_ref()) {
            Some(hooks) => hooks.startup_check(),
            None => Ok(()),
        }
    }

    /// The `[api]` table with `--api-listen` over it; `None` when neither says anything.
    fn api_config(&self) -> Result<Option<api::ApiConfig>, String> {
        let mut config = match &self.file.api {
            Some(table) => api::ApiConfig::deserialize(toml::Value::Table(table.clone()))
                .map_err(|error| format!("api: {}", error.message()))?,
            None if self.api_listen.is_some() => api::ApiConfig::default(),
            None => return Ok(None),
        };
        if self.api_listen.is_some() {
            config.listen = self.api_listen;
        }
        Ok(Some(config))
    }

    /// How this node names itself (`server.node_name`; by default `hostname:port`).
    fn node_name(&self) -> String {
        self.file
            .server
            .node_name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", api::host_name(), self.config.port))
    }

    fn revocation_ttl(&self) -> Duration {
        self.file.users.revocation_ttl.unwrap_or(REVOCATION_TTL)
    }

    /// The effective configuration as TOML, every secret as `***` (`--check-config`).
    pub fn effective_toml(&self) -> String {
        let mut namespaces = self.namespaces.clone();
        if namespaces.is_empty() {
            namespaces.insert("/".to_owned(), NamespaceSection::default());
        }
        let extras = Extras {
            shutdown_grace: self.shutdown_grace,
            node_name: Some(self.node_name()),
            log_format: Some(if self.json_logs {
                LogFormat::Json
            } else {
                LogFormat::Text
            }),
            auth: self.file.auth.default,
            jwt: self.file.auth.jwt.as_ref().map(with_defaults::<JwtConfig>),
            claims: self
                .file
                .auth
                .claims
                .as_ref()
                .map(with_defaults::<ClaimsConfig>),
            api: self.file.api.clone(),
            endpoints: self.file.endpoints.clone(),
            hooks: self
                .file
                .hooks
                .as_ref()
                .map(with_defaults::<hooks::config::HooksConfig>),
            lifecycle: self
                .file
                .lifecycle
                .as_ref()
                .map(with_defaults::<hooks::config::LifecycleConfig>),
            revocation_ttl: self.revocation_ttl(),
            namespaces,
        };
        config::effective(&self.config, &extras).to_toml()
    }

    /// A server builder with the configuration and every namespace under its policy. Call
    /// [`Standalone::prepare`] first (without it, every namespace is open).
    pub fn builder(&self) -> ServerBuilder {
        let builder = Server::builder().config(self.config.clone());
        let Some(prepared) = &self.prepared else {
            return self
                .namespace_names()
                .iter()
                .fold(builder, |builder, name| {
                    builder.namespace(name, app::open())
                });
        };
        let counters = prepared.counters.clone();
        let builder = builder.counters(move || counters.families());
        let (store, revocations) = (prepared.store.clone(), prepared.revocations.clone());
        let prefix = self.config.cluster.prefix.clone();
        let builder = builder.on_shared_keys(move |keys| store.start(keys, prefix, revocations));
        let builder = match &prepared.hooks {
            Some(hooks) => {
                let hooks = hooks.clone();
                builder.observer(move |shard| {
                    Box::new(hooks::lifecycle::LifecycleObserver::new(
                        hooks.clone(),
                        shard.index(),
                    ))
                })
            }
            None => builder,
        };
        let builder = prepared
            .policies
            .iter()
            .fold(builder, |builder, (name, policy)| {
                let authority = (policy.auth != AuthMode::None)
                    .then(|| prepared.authority.clone())
                    .flatten();
                let revocations = Some(prepared.revocations.clone());
                let section = self.namespaces.get(name);
                let namespace_hooks = prepared.hooks.as_ref().map(|hooks| app::NamespaceHooks {
                    hooks: hooks.clone(),
                    rules: section
                        .and_then(|section| section.events.as_ref())
                        .into_iter()
                        .flatten()
                        .filter_map(|rule| hooks::forward::Rule::new(rule, hooks).map(Arc::new))
                        .collect(),
                    join_hook: section
                        .and_then(|section| section.join_hook.as_deref())
                        .and_then(|name| hooks.endpoint(name).cloned()),
                    lifecycle: section
                        .and_then(|section| section.lifecycle.clone())
                        .unwrap_or_else(|| hooks.lifecycle_kinds()),
                });
                builder.namespace(
                    name,
                    app::namespace(policy.clone(), authority, revocations, namespace_hooks),
                )
            });
        match &prepared.api {
            Some(api) => api.clone().install(builder),
            None => builder,
        }
    }

    /// Re-reads key material (SIGHUP): token keys and secrets, API keys. What fails to load keeps its
    /// old material; the error says which key.
    pub fn reload(&self) -> Result<(), String> {
        let Some(prepared) = &self.prepared else {
            return Ok(());
        };
        let mut failed = Vec::new();
        if let Some(authority) = &prepared.authority {
            if let Some(Err(error)) = authority.verifier().map(|verifier| verifier.reload()) {
                failed.push(error);
            }
        }
        if let Some(api) = &prepared.api {
            if let Err(error) = api.reload() {
                failed.push(error.to_string());
            }
        }
        if let Some(Err(error)) = prepared.hooks.as_ref().map(|hooks| hooks.reload()) {
            failed.push(error);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// Re-reads the key files that changed since they were read (JWKS), and how often to
    /// call this; `None` when nothing is watched.
    pub fn reload_interval(&self) -> Option<Duration> {
        self.prepared
            .as_ref()
            .and_then(|p| p.authority.as_ref())
            .map(|authority| authority.reload_interval())
    }

    /// Re-reads the watched key files that changed.
    pub fn reload_changed(&self) {
        if let Some(authority) = self.prepared.as_ref().and_then(|p| p.authority.as_ref()) {
            if let Some(verifier) = authority.verifier() {
                verifier.reload_changed();
            }
        }
    }
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone")
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A table as its typed form reads it, every default filled in (for the effective
/// configuration); the table as written when it does not read (`prepare` reports why).
fn with_defaults<T: serde::de::DeserializeOwned + serde::Serialize>(
    table: &toml::Table,
) -> toml::Table {
    T::deserialize(toml::Value::Table(table.clone()))
        .ok()
        .and_then(|typed| toml::Table::try_from(&typed).ok())
        .unwrap_or_else(|| table.clone())
}

/// A namespace as Socket.IO names it, with its leading slash.
pub(crate) fn normalize_namespace(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}
