//! The hook tables of the configuration file (spec `control-plane.md` §2.3, §2.4):
//! `[endpoints.<name>]`, `[hooks]`, `[lifecycle]` and a namespace's `[[events]]` rules, as
//! written (strict: an unknown key is an error) with their defaults and bounds.
//!
//! Plain data and checks: must not depend on sockets, the runtime or `net`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::units;

/// The longest timeout a connect, refresh or join hook may have.
pub(crate) const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout an endpoint or an event rule may have.
pub(crate) const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Callers a shard lets wait for one endpoint's connection, past which `overloaded`.
pub(crate) const MAX_WAITING: usize = 10_000;
/// Actions one answer may carry.
pub(crate) const MAX_ACTIONS: usize = 32;
/// The largest `error.message` + `error.data` a connect-hook deny passes on.
pub(crate) const MAX_DENY_BYTES: usize = 1024;

/// `[endpoints.<name>]`: a backend URL and how requests to it are made.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointConfig {
    pub(crate) url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous_secret_file: Option<PathBuf>,
    #[serde(
        default = "endpoint_timeout",
        deserialize_with = "units::duration",
        serialize_with = "units::serialize_duration_value"
    )]
    pub(crate) timeout: Duration,
    #[serde(default = "max_connections")]
    pub(crate) max_connections: usize,
    #[serde(default = "max_response", deserialize_with = "units::size")]
    pub(crate) max_response: usize,
    /// Static headers sent with every request (a tenant id, say).
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) startup_check: StartupCheck,
    /// A PEM with the private CA(s) to trust, besides the system's roots, for an `https://`
    /// url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What the signed `io.ringcast.ping` at startup does when the endpoint does not answer 2xx.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StartupCheck {
    /// Logs a warning and starts anyway.
    #[default]
    Warn,
    /// Refuses to start.
    Fail,
    /// Sends no ping.
    Off,
}

fn endpoint_timeout() -> Duration {
    Duration::from_secs(5)
}

fn max_connections() -> usize {
    64
}

fn max_response() -> usize {
    1 << 20
}

/// `[hooks]`: the connect and refresh hooks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HooksConfig {
    /// The endpoint asked at CONNECT by namespaces with `auth = "hook"` or `"jwt+hook"`.
    #[serde(default)]
    pub(crate) connect: Option<String>,
    /// The endpoint asked before a hook-granted socket expires.
    #[serde(default)]
    pub(crate) refresh: Option<String>,
    #[serde(
        default = "hook_timeout",
        deserialize_with = "units::duration",
        serialize_with = "units::serialize_duration_value"
    )]
    pub(crate) timeout: Duration,
    #[serde(default)]
    pub(crate) on_failure: OnFailure,
    /// Connect and refresh calls in flight on this node, past which `overloaded`.
    #[serde(default = "max_concurrency")]
    pub(crate) max_concurrency: usize,
    /// Handshake query parameters sent with the connect hook (and `connected`).
    #[serde(default, deserialize_with = "units::string_list")]
    pub(crate) forward_query: Vec<String>,
    /// Handshake request headers sent with the connect hook (and `connected`): the sessions
    /// keep these, and no other.
    #[serde(default, deserialize_with = "units::string_list")]
    pub(crate) forward_headers: Vec<String>,
    #[serde(
        default = "refresh_retry",
        deserialize_with = "units::duration",
        serialize_with = "units::serialize_duration_value"
    )]
    pub(crate) refresh_retry: Duration,
    #[serde(
        default = "refresh_max_extension",
        deserialize_with = "units::duration",
        serialize_with = "units::serialize_duration_value"
    )]
    pub(crate) refresh_max_extension: Duration,
    /// Consecutive failures that open an endpoint's breaker.
    #[serde(default = "breaker_failures")]
    pub(crate) breaker_failures: u32,
    /// How long an open breaker fails calls at once.
    #[serde(
        default = "breaker_cooldown",
        deserialize_with = "units::duration",
        serialize_with = "units::serialize_duration_value"
    )]
    pub(crate) breaker_cooldown: Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            connect: None,
            refresh: None,
            timeout: hook_timeout(),
            on_failure: OnFailure::default(),
            max_concurrency: max_concurrency(),
            forward_query: Vec::new(),
            forward_headers: Vec::new(),
            refresh_retry: refresh_retry(),
            refresh_max_extension: refresh_max_extension(),
            breaker_failures: breaker_failures(),
            breaker_cooldown: breaker_cooldown(),
        }
    }
}

/// What a CONNECT gets when the connect hook fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnFailure {
    /// CONNECT_ERROR `backend_unavailable` / `backend_timeout` (retryable).
    #[default]
    Deny,
    /// Admitted with no user.
    Anonymous,
}

fn hook_timeout() -> Duration {
    Duration::from_secs(3)
}

fn max_concurrency() -> usize {
    512
}

fn refresh_retry() -> Duration {
    Duration::from_secs(10)
}

fn refresh_max_extension() -> Duration {
    Duration::from_secs(300)
}

fn breaker_failures() -> u32 {
    20
}

fn breaker_cooldown() -> Duration {
    Duration::from_secs(5)
}

/// `[lifecycle]`: which socket events are delivered where, and how they are batched.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LifecycleConfig {
    pub(crate) endpoint: String,
    #[serde(default = "all_kinds")]
    pub(crate) events: Vec<LifecycleKind>,
    /// Queues per shard, by a hash of the socket id; each has one batch in flight.
    #[serde(default = "lanes")]
    pub(crate) lanes: usize,
    #[serde(default = "batch_max")]
    pub(crate) batch_max: usize,
    #[serde(default = "batch_bytes", deserialize_with = "units::size")]
    pub(crate) batch_bytes: usize,
    #[serde(
        default = "batch_interval",
        deserialize_with = "units::duration",
        serialize_with = "units::serialize_duration_value"
    )]
    pub(crate) batch_interval: Duration,
    #[serde(
        default = "retry_for",
        deserialize_with = "units::duration",
        serialize_with = "units::serialize_duration_value"
    )]
    pub(crate) retry_for: Duration,
    /// Events queued on this node at most (split across shards).
    #[serde(default = "queue_max")]
    pub(crate) queue_max: usize,
}

impl LifecycleConfig {
    /// The default batching, for notify-mode events when there is no `[lifecycle]`.
    pub(crate) fn for_notifications() -> LifecycleConfig {
        LifecycleConfig {
            endpoint: String::new(),
            events: Vec::new(),
            lanes: lanes(),
            batch_max: batch_max(),
            batch_bytes: batch_bytes(),
            batch_interval: batch_interval(),
            retry_for: retry_for(),
            queue_max: queue_max(),
        }
    }
}

/// A lifecycle event a namespace may emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LifecycleKind {
    Connected,
    Disconnected,
    Joined,
    Left,
}

fn all_kinds() -> Vec<LifecycleKind> {
    vec![
        LifecycleKind::Connected,
        LifecycleKind::Disconnected,
        LifecycleKind::Joined,
        LifecycleKind::Left,
    ]
}

fn lanes() -> usize {
    1
}

fn batch_max() -> usize {
    100
}

fn batch_bytes() -> usize {
    256 << 10
}

fn batch_interval() -> Duration {
    Duration::from_millis(50)
}

fn retry_for() -> Duration {
    Duration::from_secs(300)
}

fn queue_max() -> usize {
    100_000
}

/// One `[[namespaces."<name>".events]]` rule: which client events go to a backend, and how.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventRule {
    /// A glob over event names (`*` matches any run of characters).
    pub(crate) name: String,
    pub(crate) endpoint: String,
    #[serde(default)]
    pub(crate) mode: Mode,
    /// The call's timeout (default: the endpoint's).
    #[serde(
        default,
        deserialize_with = "units::duration_opt",
        serialize_with = "units::serialize_duration"
    )]
    pub(crate) timeout: Option<Duration>,
    #[serde(default)]
    pub(crate) on_error: OnError,
    #[serde(default = "max_in_flight")]
    pub(crate) max_in_flight: usize,
    #[serde(default = "max_pending")]
    pub(crate) max_pending: usize,
    #[serde(default)]
    pub(crate) retries: u32,
    /// The largest event (arguments and attachments) forwarded; larger ones get an error ack.
    #[serde(default, deserialize_with = "units::size_opt")]
    pub(crate) max_bytes: Option<usize>,
}

/// Whether a forwarded event is a call (its answer is the ack) or a notification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    #[default]
    Call,
    Notify,
}

/// What a failed call does besides its error ack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnError {
    #[default]
    AckError,
    /// Disconnects the socket (reason `backend`).
    Disconnect,
}

fn max_in_flight() -> usize {
    1
}

fn max_pending() -> usize {
    16
}

/// Whether `name` matches `glob` (`*` any run of characters, everything else literal).
pub(crate) fn glob_matches(glob: &str, name: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_matches("chat:*", "chat:send"));
        assert!(glob_matches("chat:*", "chat:"));
        assert!(!glob_matches("chat:*", "chatx"));
        assert!(glob_matches("echo", "echo"));
        assert!(!glob_matches("echo", "echo2"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(glob_matches("*:send", "chat:send"));
        assert!(!glob_matches("ab*ba", "aba"));
    }

    #[test]
    fn tables_take_their_defaults_and_refuse_unknown_keys() {
        let endpoint: EndpointConfig =
            toml::from_str("url = \"http://127.0.0.1:9/x\"\nsecret = \"s\"\n").expect("endpoint");
        assert_eq!(endpoint.timeout, Duration::from_secs(5));
        assert_eq!(endpoint.max_connections, 64);
        assert_eq!(endpoint.max_response, 1 << 20);
        assert!(toml::from_str::<EndpointConfig>("url = \"x\"\nsecrte = \"s\"\n").is_err());
        let hooks: HooksConfig = toml::from_str("connect = \"b\"\n").expect("hooks");
        assert_eq!(hooks.timeout, Duration::from_secs(3));
        assert_eq!(hooks.breaker_failures, 20);
        let lifecycle: LifecycleConfig =
            toml::from_str("endpoint = \"b\"\nbatch_interval = \"10ms\"\n").expect("lifecycle");
        assert_eq!(lifecycle.events.len(), 4);
        assert_eq!(lifecycle.batch_interval, Duration::from_millis(10));
        let rule: EventRule =
            toml::from_str("name = \"chat:*\"\nendpoint = \"b\"\nmode = \"notify\"\n")
                .expect("rule");
        assert_eq!(rule.mode, Mode::Notify);
        assert_eq!(rule.max_pending, 16);
    }
}
