//! The HTTP API's errors: a status, a stable `code` and a message, answered as
//! `{"error": {"code", "message"}}` (spec 2.5). Messages never carry a secret or a header
//! value. Must not depend on the engine, the shard or the bus.

use std::borrow::Cow;

use serde_json::json;

use super::auth::AuthError;
use super::config::Scope;
use crate::net::Response;
use crate::socketio::OpError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: Cow<'static, str>,
}

impl ApiError {
    pub(crate) fn new(
        status: u16,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(400, "invalid_request", message)
    }

    pub(crate) fn unauthorized(error: AuthError) -> Self {
        ApiError::new(401, "unauthorized", error.message())
    }

    pub(crate) fn forbidden(scope: Scope) -> Self {
        ApiError::new(
            403,
            "forbidden",
            format!("this API key lacks the `{}` scope", scope.as_str()),
        )
    }

    pub(crate) fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(404, "not_found", message)
    }

    pub(crate) fn namespace_not_served(nsp: &str) -> Self {
        ApiError::not_found(format!("namespace {} is not served", quoted(nsp)))
    }

    pub(crate) fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            413,
            "payload_too_large",
            format!("the body is over api.max_body ({limit} bytes)"),
        )
    }

    pub(crate) fn unsupported_media_type() -> Self {
        ApiError::new(
            415,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        )
    }

    pub(crate) fn reserved_event(event: &str) -> Self {
        ApiError::new(
            422,
            "reserved_event",
            format!("event {} is reserved", quoted(event)),
        )
    }

    pub(crate) fn invalid_room(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(422, "invalid_room", message)
    }

    pub(crate) fn cluster_unavailable() -> Self {
        ApiError::new(
            503,
            "cluster_unavailable",
            "the cluster's Redis link is down: nothing was delivered (retry, or send local: true)",
        )
    }

    /// An operation's failure.
    pub(crate) fn from_op(error: OpError) -> Self {
        match error {
            OpError::ClusterUnavailable => ApiError::cluster_unavailable(),
            OpError::Overloaded => ApiError::new(429, "rate_limited", "the server is overloaded"),
            OpError::ServerStopped => ApiError::new(503, "draining", "the server is stopping"),
            OpError::Timeout => ApiError::internal("a shard did not answer in time"),
        }
    }

    pub(crate) fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(500, "internal", message)
    }

    /// The JSON error body.
    pub(crate) fn body(&self) -> serde_json::Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }

    /// The answer, with the headers its status calls for.
    pub(crate) fn response(&self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let response = Response::new(self.status, "application/json", body);
        match self.status {
            401 => response.with_header("WWW-Authenticate", "Bearer realm=\"ringcast\""),
            429 => response.with_header("Retry-After", "1"),
            _ => response,
        }
    }
}

/// A peer's string in a message: JSON-quoted (escapes control characters) and cut short.
pub(crate) fn quoted(text: &str) -> String {
    let short: String = text.chars().take(64).collect();
    serde_json::to_string(&short).unwrap_or_default()
}
