//! The HTTP server API (spec 2.5): a JSON API on its own listener, served by every shard,
//! that turns each call into the same Socket.IO operation a handler would run (emit, join,
//! leave, disconnect, fetch, all rooms), cluster-wide through the adapter.
//!
//! Files: `config` (the `[api]` table, keys, reload), `auth` (bearer and HMAC, the one
//! constant-time comparison), `idempotency` (the kept answers: in the process, or in Redis
//! on a cluster node), `routes` (the one route table the router and the OpenAPI document are
//! both built from), `handlers` (what each route does), `error`. The request pipeline is here: request id, authentication, scope, media
//! type, idempotency, the handler run as a shard-local task, the answer.
//!
//! Built on the seams only: `net`'s route types, the public Socket.IO types and the shard's
//! `ApiShard` (re-exported by `server`). Must not depend on the engine, the shard or the bus.

mod auth;
mod config;
mod error;
pub(crate) mod handlers;
mod idempotency;
mod routes;

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub(crate) use config::{ApiConfig, ApiConfigError, ApiKeys, ApiSettings};

use crate::codec::http::Method;
use crate::net::{Request, Response, Router};
use crate::server::{ApiShard, ServerBuilder, ServerHandle};
use auth::{Caller, Presented};
use error::ApiError;
use idempotency::{Claim, Idempotency, Kept};
use routes::{Access, RouteSpec};

/// The HTTP API of one process: its settings, the keys in force, the idempotency table and
/// the node's identity, shared by every shard's router.
#[derive(Clone)]
pub(crate) struct Api {
    settings: Arc<ApiSettings>,
    keys: ApiKeys,
    idempotency: Idempotency,
    node: Arc<NodeInfo>,
    users: Arc<Users>,
    counters: Arc<crate::control::counters::Counters>,
}

/// The users the API revokes: the process's revocations (shared with the token checks) and
/// how long an entry lives by default.
pub(crate) struct Users {
    pub(crate) revocations: Arc<crate::control::users::Revocations>,
    pub(crate) revocation_ttl: std::time::Duration,
    /// Where revocations are kept for the cluster (Redis), once the server has started as a
    /// node of one; with the key prefix.
    pub(crate) store: Arc<crate::control::RevocationStore>,
}

/// Who this node is, for `/v1/info` and socket objects.
#[derive(Debug)]
pub(crate) struct NodeInfo {
    /// The host's name (what `node` says in a socket object).
    pub(crate) name: String,
    /// New on every start: tells a restart apart.
    pub(crate) boot_id: String,
    /// Unix milliseconds of the start.
    pub(crate) started_at: u64,
}

impl Api {
    /// Validates the `[api]` table and reads its keys. `node_name` names this node (the
    /// host's name when `None`); `users` are the revocations it shares with the token checks.
    pub(crate) fn new(
        config: &ApiConfig,
        node_name: Option<String>,
        users: Users,
        counters: Arc<crate::control::counters::Counters>,
    ) -> Result<Api, ApiConfigError> {
        let (settings, keys) = config.validate()?;
        Ok(Api {
            settings: Arc::new(settings),
            keys,
            idempotency: Idempotency::default(),
            users: Arc::new(users),
            counters,
            node: Arc::new(NodeInfo {
                name: node_name.unwrap_or_else(host_name),
                boot_id: random_hex(8),
                started_at: unix_millis(),
            }),
        })
    }

    /// Re-reads the keys' `*_file` secrets (SIGHUP); the keys in force stay on failure.
    pub(crate) fn reload(&self) -> Result<(), ApiConfigError> {
        self.keys.reload(&self.settings)
    }

    /// Has `builder` serve the API on `api.listen` from every shard; unchanged when unset.
    pub(crate) fn install(self, builder: ServerBuilder) -> ServerBuilder {
        match self.settings.listen {
            Some(addr) => {
                // On a cluster node the keys are kept in Redis, for every node to see.
                let idempotency = self.idempotency.clone();
                let builder = builder.on_shared_keys(move |keys| idempotency.share(keys));
                if self.keys.is_empty() {
                    // Only a loopback address may be keyless (`ApiConfig::validate`).
                    tracing::warn!(%addr, "the HTTP API has no keys: any process on this host may call it");
                }
                builder.api(addr, move |shard| self.router(shard))
            }
            None => builder,
        }
    }

    /// One shard's router: every route of the table, the API's body limit and 413 answer.
    fn router(&self, shard: ApiShard) -> Router {
        let shared = Rc::new(ShardApi {
            api: self.clone(),
            shard,
            requests: Cell::new(0),
        });
        let mut router = Router::routes_only();
        for spec in routes::TABLE {
            let shared = shared.clone();
            let handler = move |request: Request| serve(shared.clone(), spec, request);
            if spec.path.contains('{') {
                router.route_pattern(spec.method, spec.path, handler);
            } else {
                router.route(spec.method, spec.path, handler);
            }
        }
        // Unknown paths and methods get the API's error body and request id too.
        let unknown = shared.clone();
        router.fallback(move |request: Request| {
            let id = unknown.next_request_id();
            unknown.api.counters.api_request("unknown", 404);
            let message = format!(
                "no route {} {}",
                method_name(request.method),
                error::quoted(&request.path)
            );
            std::future::ready(
                ApiError::not_found(message)
                    .response()
                    .with_header("Ringcast-Request-Id", id),
            )
        });
        let limit = self.settings.max_body;
        let refused = shared;
        router.limit_body(limit, move || {
            let id = refused.next_request_id();
            refused.api.counters.api_request("too large", 413);
            ApiError::payload_too_large(limit)
                .response()
                .with_header("Ringcast-Request-Id", id)
        });
        router
    }
}

/// The API as one shard serves it.
pub(crate) struct ShardApi {
    api: Api,
    shard: ApiShard,
    /// Requests this shard answered (the request ids' counter).
    requests: Cell<u64>,
}

impl ShardApi {
    fn next_request_id(&self) -> String {
        let n = self.requests.get() + 1;
        self.requests.set(n);
        format!("{}-{}-{n}", self.api.node.boot_id, self.shard.id())
    }
}

/// A handler's input.
pub(crate) struct Call {
    pub(crate) caller: Caller,
    /// The JSON body (`{}` when empty; `Null` for a GET).
    pub(crate) body: Value,
    pub(crate) request: Request,
}

/// A handler's answer: a status (200 unless said) and a JSON body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn ok(body: Value) -> Answer {
        Answer { status: 200, body }
    }
}

/// What a route handler returns.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Answer, ApiError>>>>;

/// Answers one request: every answer carries a `Ringcast-Request-Id`.
async fn serve(api: Rc<ShardApi>, spec: &'static RouteSpec, request: Request) -> Response {
    let id = api.next_request_id();
    let route = spec.path;
    let (response, caller) = answer(&api, spec, request).await;
    api.api.counters.api_request(route, response.status);
    tracing::debug!(
        route,
        status = response.status,
        key = caller.as_deref().unwrap_or("-"),
        request_id = %id,
        "API request"
    );
    response.with_header("Ringcast-Request-Id", id)
}

/// Runs the pipeline; also says which key (by name) the request came with, for the log.
async fn answer(
    api: &Rc<ShardApi>,
    spec: &'static RouteSpec,
    request: Request,
) -> (Response, Option<Arc<str>>) {
    let caller = match authorize(api, spec, &request) {
        Ok(caller) => caller,
        Err(error) => return (error.response(), None),
    };
    let name = Some(caller.name.clone());
    if request.method == Method::Post && !json_body(&request) {
        return (ApiError::unsupported_media_type().response(), name);
    }
    let guard = match idempotency(api, &request, &caller).await {
        Ok(Some(Claimed::Replay(kept))) => {
            let response = Response::new(kept.status, "application/json", kept.body)
                .with_header("Idempotent-Replayed", "true");
            return (response, name);
        }
        Ok(Some(Claimed::Run(guard))) => Some(guard),
        Ok(None) => None,
        Err(error) => return (error.response(), name),
    };
    let body = match parse_body(&request) {
        Ok(body) => body,
        Err(error) => return (error.response(), name),
    };
    let call = Call {
        caller,
        body,
        request,
    };
    let outcome = on_shard(&api.shard, (spec.handler)(api.clone(), call)).await;
    let (status, body) = match outcome {
        Some(Ok(answer)) => (answer.status, answer.body),
        Some(Err(error)) => {
            let response = error.response();
            // Transient refusals (the cluster down, a shard stuck or overloaded) are not
            // kept: a retry with the same key runs again, as the 503's message promises.
            if let (Some(guard), true) = (guard, keeps(error.status)) {
                let body = Bytes::from(serde_json::to_vec(&error.body()).unwrap_or_default());
                guard.finish(
                    Kept {
                        status: error.status,
                        body,
                    },
                    Instant::now(),
                );
            }
            return (response, name);
        }
        None => {
            return (
                ApiError::new(503, "draining", "the server is stopping").response(),
                name,
            )
        }
    };
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    if let (Some(guard), true) = (guard, keeps(status)) {
        guard.finish(
            Kept {
                status,
                body: body.clone(),
            },
            Instant::now(),
        );
    }
    (Response::new(status, "application/json", body), name)
}

/// Whether an answer with `status` is kept for its `Idempotency-Key`: all but the transient
/// ones (5xx, 429), which a retry should run again.
fn keeps(status: u16) -> bool {
    status < 500 && status != 429
}

/// The caller, with the route's scope checked.
fn authorize(api: &ShardApi, spec: &RouteSpec, request: &Request) -> Result<Caller, ApiError> {
    let Access::Key(scope) = spec.access else {
        return Ok(Caller {
            name: "public".into(),
            scopes: config::Scopes::everything(),
        });
    };
    let method = method_name(request.method);
    let path_and_query = if request.query.is_empty() {
        request.path.to_string()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let keys = api.api.keys.current();
    let presented = Presented {
        authorization: request.header("authorization"),
        key_name: request.header("ringcast-key"),
        signature: request.header("ringcast-signature"),
        method,
        path_and_query: &path_and_query,
        query: &request.query,
        body: &request.body,
        now: unix_millis() / 1000,
    };
    let caller = auth::authenticate(&keys, &presented).map_err(ApiError::unauthorized)?;
    match scope {
        Some(scope) if !caller.scopes.allows(scope) => Err(ApiError::forbidden(scope)),
        _ => Ok(caller),
    }
}

/// A method as it is signed (`Other` never matches a signature).
fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Other => "OTHER",
    }
}

/// Whether a POST's body is JSON: `application/json` (parameters allowed); an empty body
/// with no type is taken as `{}`.
fn json_body(request: &Request) -> bool {
    match request.header("content-type") {
        Some(value) => value
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")),
        None => request.body.is_empty(),
    }
}

fn parse_body(request: &Request) -> Result<Value, ApiError> {
    if request.method != Method::Post {
        return Ok(Value::Null);
    }
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|error| ApiError::invalid(format!("malformed JSON: {error}")))?;
    if !body.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    Ok(body)
}

enum Claimed {
    Run(idempotency::Guard),
    Replay(Kept),
}

/// The request's idempotency claim, when it is a POST with an `Idempotency-Key` (on a
/// cluster node, a Redis round trip or two, awaited on this request's task).
async fn idempotency(
    api: &ShardApi,
    request: &Request,
    caller: &Caller,
) -> Result<Option<Claimed>, ApiError> {
    if request.method != Method::Post {
        return Ok(None);
    }
    let Some(key) = request.header("idempotency-key") else {
        return Ok(None);
    };
    if key.is_empty() || key.len() > idempotency::MAX_KEY_LEN {
        return Err(ApiError::invalid(format!(
            "Idempotency-Key must be 1 to {} characters",
            idempotency::MAX_KEY_LEN
        )));
    }
    let mut hash = Sha256::new();
    hash.update(request.path.as_bytes());
    hash.update(b"?");
    hash.update(request.query.as_bytes());
    hash.update(b"\n");
    hash.update(&request.body);
    let fingerprint: [u8; 32] = hash.finalize().into();
    let ttl = api.api.settings.idempotency_ttl;
    match api
        .api
        .idempotency
        .claim(key, &caller.name, fingerprint, ttl)
        .await
    {
        Claim::Run(guard) => Ok(Some(Claimed::Run(guard))),
        Claim::Replay(kept) => Ok(Some(Claimed::Replay(kept))),
        Claim::Conflict => Err(ApiError::new(
            409,
            "idempotency_conflict",
            "this Idempotency-Key was used with another request",
        )),
        Claim::InProgress => Err(ApiError::new(
            409,
            "in_progress",
            "the first request with this Idempotency-Key is still running",
        )),
        Claim::Full => Err(ApiError::new(
            429,
            "rate_limited",
            "too many idempotency keys are kept; retry later",
        )),
        Claim::Unavailable => Err(ApiError::new(
            503,
            "cluster_unavailable",
            "the cluster's Redis did not answer for this Idempotency-Key: nothing was run (retry)",
        )),
    }
}

/// Runs `work` as a task of the shard (which sets the tick's time before each step and
/// flushes after it, as for a handler's task) and hands its output back; `None` if the shard
/// dropped it (it stopped).
fn on_shard<T: 'static>(
    shard: &ApiShard,
    work: impl Future<Output = T> + 'static,
) -> impl Future<Output = Option<T>> {
    let (sender, receiver) = futures_channel::oneshot::channel();
    shard.spawn(Box::pin(async move {
        // The request may have gone with its connection: nobody to answer.
        let _ = sender.send(work.await);
    }));
    async move { receiver.await.ok() }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "ringcast".to_owned())
}

/// `bytes` random bytes from the OS, as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::getrandom(&mut buf).is_err() {
        // Only a boot id: unique enough from the clock when the OS has no randomness to give.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        return format!("{nanos:x}");
    }
    auth::hex(&buf)
}

/// Not public API (through `ringcast::internals`, for tests): starts `builder` serving the
/// HTTP API configured by `api_toml` (an `[api]` table's body). Answers the server and the
/// API's address.
pub fn start_with_api(
    builder: ServerBuilder,
    api_toml: &str,
) -> Result<(ServerHandle, SocketAddr), String> {
    let config: ApiConfig = toml::from_str(api_toml).map_err(|error| error.to_string())?;
    let users = Users {
        revocations: Arc::default(),
        revocation_ttl: std::time::Duration::from_secs(24 * 3600),
        store: Arc::default(),
    };
    let api = Api::new(&config, None, users, Arc::default()).map_err(|error| error.to_string())?;
    let handle = api
        .install(builder)
        .start()
        .map_err(|error| error.to_string())?;
    match handle.api_addr() {
        Some(addr) => Ok((handle, addr)),
        None => {
            handle.stop();
            Err("api.listen is not set".to_owned())
        }
    }
}
