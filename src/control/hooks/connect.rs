//! The connect, refresh and join hooks (spec §2.3): a CONNECT, a hook-granted socket's
//! renewal and a client `join` asked of the backend as one CloudEvent each; the answer (only a
//! 200 with a JSON object counts) allows or denies; a failure follows `on_failure`; calls in
//! flight are capped per node and the endpoint's breaker fails them fast.
//!
//! Runs on the shard that owns the socket. Must not depend on the engine, the shard or the bus.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::config::{OnFailure, MAX_DENY_BYTES};
use super::{Endpoint, Failure, Hooks};
use crate::control::app::server_disconnect;
use crate::control::auth::SocketGrant;
use crate::control::users::unix_now;
use crate::socketio::{ConnectError, Handshake, Socket};

/// What an allowing answer grants.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Allowed {
    #[serde(default, deserialize_with = "user_id")]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) rooms: Vec<String>,
    #[serde(default)]
    pub(crate) allow_rooms: Vec<String>,
    #[serde(default)]
    pub(crate) data: Option<Value>,
    #[serde(default)]
    pub(crate) expires_at: Option<u64>,
}

/// A user id given as a string or a number.
fn user_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        Some(Value::String(text)) => Some(text),
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => None,
    })
}

/// The backend's decision.
#[derive(Debug)]
pub(crate) enum Decision {
    Allow(Allowed),
    /// A deny: the CONNECT_ERROR (or the join's error ack) carries the backend's message and
    /// data.
    Deny {
        message: String,
        data: Option<Value>,
    },
}

/// Reads a decision from an answer: a 200 whose body is a JSON object with `allow`.
fn decision(status: u16, body: &[u8]) -> Option<Decision> {
    if status != 200 {
        return None;
    }
    let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    match answer.get("allow") {
        Some(Value::Bool(true)) => Allowed::deserialize(Value::Object(answer))
            .ok()
            .map(Decision::Allow),
        Some(Value::Bool(false)) => {
            let error = answer.remove("error");
            let (message, data) = match error {
                Some(Value::Object(mut error)) => (
                    error
                        .remove("message")
                        .and_then(|m| m.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "forbidden".to_owned()),
                    error.remove("data"),
                ),
                _ => ("forbidden".to_owned(), None),
            };
            Some(Decision::Deny { message, data })
        }
        _ => None,
    }
}

/// Asks `endpoint` about `event` (a connect, refresh or join) within the hooks' timeout,
/// under the node's cap of calls in flight; counts it as `kind`.
pub(crate) async fn ask(
    hooks: &Hooks,
    endpoint: &Endpoint,
    kind: &'static str,
    event: super::envelope::CloudEvent,
) -> Result<Decision, Failure> {
    if hooks.in_flight.fetch_add(1, Ordering::Relaxed) >= hooks.settings.max_concurrency {
        hooks.in_flight.fetch_sub(1, Ordering::Relaxed);
        hooks.counters.hook_call(&endpoint.name, kind, "overloaded");
        return Err(Failure::Overloaded);
    }
    let deadline = Instant::now() + hooks.settings.timeout;
    let answer = hooks.call(endpoint, kind, &event, deadline).await;
    hooks.in_flight.fetch_sub(1, Ordering::Relaxed);
    // Failures of the exchange itself were told to the breaker by `post`; the answer's are
    // told here.
    let verdict = match answer {
        Ok(answer) => {
            let decided = decision(answer.status, &answer.body);
            endpoint.record(decided.is_some());
            decided.ok_or(Failure::Error)
        }
        Err(failure) => Err(failure),
    };
    let outcome = match &verdict {
        Ok(Decision::Allow(_)) => "ok",
        Ok(Decision::Deny { .. }) => "denied",
        Err(failure) => failure.outcome(),
    };
    hooks.counters.hook_call(&endpoint.name, kind, outcome);
    verdict
}

/// The `handshake` object of a connect event: address, transport, Engine.IO revision and the
/// allowlisted query parameters and headers.
pub(crate) fn handshake_json(hooks: &Hooks, handshake: &Handshake) -> Value {
    super::lifecycle::handshake_object(
        &hooks.settings,
        handshake.address(),
        handshake.query_param("transport").as_deref(),
        |name| handshake.query_param(name),
        |name| handshake.header(name).map(str::to_owned),
    )
}

/// The connect event for `handshake`: its namespace, the stored `auth` (without the token),
/// the token's claims with `jwt+hook`, and the handshake.
pub(crate) fn connect_event(
    hooks: &Hooks,
    shard: usize,
    handshake: &Handshake,
    auth: &[u8],
    claims: Option<Value>,
) -> super::envelope::CloudEvent {
    let mut data = Map::new();
    data.insert("namespace".into(), handshake.nsp().into());
    data.insert(
        "auth".into(),
        serde_json::from_slice(auth).unwrap_or_else(|_| json!({})),
    );
    if let Some(claims) = claims {
        data.insert("claims".into(), claims);
    }
    data.insert("handshake".into(), handshake_json(hooks, handshake));
    hooks.event(shard, "io.ringcast.connect", None, data)
}

/// A CONNECT_ERROR with `{code, retryable}`.
pub(crate) fn refusal(message: &str, code: &str, retryable: bool) -> ConnectError {
    ConnectError::new(message).with_data(&json!({ "code": code, "retryable": retryable }))
}

/// What a failed connect call becomes: a retryable CONNECT_ERROR, or (with
/// `on_failure = "anonymous"`) an admission with no user.
pub(crate) fn on_failure(hooks: &Hooks, failure: Failure) -> Result<Option<Allowed>, ConnectError> {
    match hooks.settings.on_failure {
        OnFailure::Anonymous if failure != Failure::Overloaded => Ok(None),
        _ => Err(refusal("backend unavailable", failure.code(), true)),
    }
}

/// The CONNECT_ERROR of a deny: the backend's message and data (at most 1 KiB), with
/// `retryable: false` added to an object without one.
pub(crate) fn denial(message: String, data: Option<Value>) -> ConnectError {
    let data = match data {
        Some(Value::Object(mut object)) => {
            object.entry("retryable").or_insert(Value::Bool(false));
            Value::Object(object)
        }
        Some(other) => other,
        None => json!({ "code": "forbidden", "retryable": false }),
    };
    let size = message.len() + serde_json::to_vec(&data).map_or(0, |bytes| bytes.len());
    if size > MAX_DENY_BYTES {
        return refusal("forbidden", "forbidden", false);
    }
    ConnectError::new(message).with_data(&data)
}

/// Asks the refresh hook to renew a hook-granted socket about to expire: an allow renews it
/// (and schedules the next ask), a deny ends it (`token expired`); a failure is tried again
/// every `refresh_retry` while the socket is within `refresh_max_extension` of its expiry,
/// then ends it.
pub(crate) fn refresh(socket: &Socket, grant: &Rc<SocketGrant>) {
    let Some((hooks, authority)) = grant.refresher.clone() else {
        return;
    };
    let Some(endpoint) = hooks.refresh.clone() else {
        return;
    };
    let (task_socket, grant) = (socket.clone(), grant.clone());
    socket.spawn(async move {
        let socket = task_socket;
        let expires_at = grant.expires_at().unwrap_or_else(unix_now);
        let give_up = expires_at + hooks.settings.refresh_max_extension.as_secs();
        loop {
            if !socket.connected() {
                return;
            }
            let mut data = super::about(&socket, grant.user.as_deref());
            data.insert("expires_at".into(), expires_at.into());
            data.insert("data".into(), socket.data_json());
            let event = hooks.event(
                socket.shard().index(),
                "io.ringcast.refresh",
                Some(socket.id()),
                data,
            );
            match ask(&hooks, &endpoint, "refresh", event).await {
                Ok(Decision::Allow(allowed)) => {
                    if !socket.connected() {
                        return;
                    }
                    let patterns =
                        (!allowed.allow_rooms.is_empty()).then_some(&allowed.allow_rooms[..]);
                    grant.renew_from_hook(allowed.expires_at, patterns);
                    if let Some(data) = &allowed.data {
                        let _ = socket.set_data(data);
                    }
                    authority.schedule(&socket, &grant);
                    return;
                }
                Ok(Decision::Deny { .. }) => {
                    server_disconnect(&socket, "token expired", "token_expired");
                    return;
                }
                Err(failure) => {
                    let now = unix_now();
                    if now >= give_up {
                        tracing::debug!(code = failure.code(), "refresh failed past the extension");
                        server_disconnect(&socket, "token expired", "token_expired");
                        return;
                    }
                    let wait = hooks
                        .settings
                        .refresh_retry
                        .min(Duration::from_secs(give_up - now));
                    crate::server::shard_sleep(wait.max(Duration::from_millis(100))).await;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_with_allow_decides() {
        assert!(decision(500, br#"{"allow":true}"#).is_none());
        assert!(decision(200, b"not json").is_none());
        assert!(decision(200, br#"{"ok":true}"#).is_none());
        assert!(decision(200, b"[1]").is_none());
        let Some(Decision::Allow(allowed)) = decision(
            200,
            br#"{"allow":true,"user":42,"rooms":["a"],"expires_at":5}"#,
        ) else {
            panic!("allowed");
        };
        assert_eq!(allowed.user.as_deref(), Some("42"));
        assert_eq!(allowed.rooms, ["a"]);
        assert_eq!(allowed.expires_at, Some(5));
        let Some(Decision::Deny { message, data }) = decision(
            200,
            br#"{"allow":false,"error":{"message":"banned","data":{"code":"banned"}}}"#,
        ) else {
            panic!("denied");
        };
        assert_eq!(message, "banned");
        assert_eq!(data, Some(json!({ "code": "banned" })));
    }

    #[test]
    fn a_denial_says_whether_to_retry_and_stays_small() {
        let error = denial("banned".into(), Some(json!({ "code": "banned" })));
        assert_eq!(error.message(), "banned");
        let big = denial("x".repeat(2000), None);
        assert_eq!(big.message(), "forbidden");
    }
}
