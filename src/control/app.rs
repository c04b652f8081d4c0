//! The binary's namespaces under their policy (spec §2.1): the built-in events (`join`,
//! `leave`, `publish`, `echo`) with the room patterns, the reserved prefix and the limits;
//! the per-socket event rate; reserved `ringcast:` events; what an unknown event gets; and,
//! for `auth = "jwt"`, the token check at CONNECT with live expiry ([`super::auth`]).
//!
//! Built on the library's public seams only (namespace, socket, operators): must not depend
//! on the engine, the shard, the bus or `net`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::auth::{refusal_ack, Authority, SocketGrant};
use super::config::{AuthMode, UnknownEvents};
use super::hooks::config::LifecycleKind;
use super::hooks::connect::{self as connect_hook, Decision};
use super::hooks::forward::{self, Forwarding};
use super::hooks::lifecycle::{joined_by, JoinCause, SocketHooks};
use super::hooks::{Endpoint, Hooks};
use super::policy::{allowed, Bucket, NamespacePolicy, Verdict, RESERVED_PREFIX};
use super::users::{Revocations, LIFT_EVENT, REPLACE_EVENT, REVOKE_EVENT};
use crate::socketio::{
    AckSender, Admission, Args, ConnectError, Handshake, Message, Namespace, Socket,
};

/// A socket's state under its namespace's policy: its grant (user, token) and its event
/// bucket. Attached at CONNECT only when the policy needs one of them, so an open namespace
/// keeps nothing per socket.
pub(crate) struct SocketState {
    pub(crate) grant: Option<Rc<SocketGrant>>,
    bucket: Cell<Option<Bucket>>,
    /// Its sequence, lifecycle and forwarded calls, when its namespace has hooks.
    pub(crate) hooks: Option<Rc<SocketHooks>>,
}

impl SocketState {
    fn user(&self) -> Option<&str> {
        self.grant.as_ref().and_then(|grant| grant.user.as_deref())
    }
}

/// Sends `[{"error": {"code", "message"}}]` as the ack, the one shape of every error ack.
pub(crate) fn ack_error(ack: Option<AckSender>, code: &str, message: &str) {
    if let Some(ack) = ack {
        if let Ok(args) = Args::json(&json!({ "error": { "code": code, "message": message } })) {
            let _ = ack.send(&args);
        }
    }
}

/// Sends an empty ack (what every built-in answers on success).
fn ack_ok(ack: Option<AckSender>) {
    if let Some(ack) = ack {
        let _ = ack.send(&Args::new());
    }
}

/// Tells the client why (`ringcast:disconnect`, since Socket.IO's DISCONNECT carries no
/// reason), then disconnects it from the namespace.
pub(crate) fn server_disconnect(socket: &Socket, reason: &str, code: &str) {
    // `api_disconnect`'s reason is the caller's text; the others' are their code's.
    if let Ok(args) = Args::json(&json!({ "reason": reason, "code": code })) {
        let _ = socket.emit("ringcast:disconnect", &args);
    }
    socket.disconnect();
}

/// A namespace's hooks: the node's [`Hooks`], its forwarding rules, its join hook and which
/// lifecycle events it emits.
pub(crate) struct NamespaceHooks {
    pub(crate) hooks: Arc<Hooks>,
    pub(crate) rules: Vec<Arc<forward::Rule>>,
    pub(crate) join_hook: Option<Arc<Endpoint>>,
    pub(crate) lifecycle: Vec<LifecycleKind>,
}

/// The namespace `policy` describes. `authority` checks tokens and keeps grants (given when
/// the policy's auth is `jwt`, `hook` or `jwt+hook`); `revocations`, when given, are kept up
/// to date with the other ringcast nodes' revocations (their `ringcast:revoke` /
/// `ringcast:unrevoke` server-side emits); `hooks`, when given, ask and tell the backends.
pub(crate) fn namespace(
    policy: NamespacePolicy,
    authority: Option<Arc<Authority>>,
    revocations: Option<Arc<Revocations>>,
    hooks: Option<NamespaceHooks>,
) -> Namespace {
    let policy = Arc::new(policy);
    let hooks = hooks.map(Arc::new);
    let stateful = policy.keeps_state() || hooks.is_some();
    let mut namespace = Namespace::new();
    if let Some(revocations) = revocations {
        namespace = follow_revocations(namespace, revocations);
    }
    if let (true, Some(authority)) = (policy.single_session, &authority) {
        namespace = follow_replacements(namespace, authority.clone());
    }
    if stateful && policy.auth.asks_hook() {
        let (check, checker, asker) = (policy.clone(), authority.clone(), hooks.clone());
        namespace = namespace.authorize_async(move |handshake| {
            let (check, checker, asker) = (check.clone(), checker.clone(), asker.clone());
            async move { admit_by_hook(&handshake, &check, checker, asker).await }
        });
    } else if stateful {
        let (check, checker, kinds) = (policy.clone(), authority.clone(), hooks.clone());
        namespace = namespace.authorize(move |handshake| {
            let (admission, grant) = match (&checker, check.auth) {
                (Some(authority), AuthMode::Jwt) => authority.admit(handshake, &check)?,
                _ => (Admission::new(), None),
            };
            let user = grant.as_ref().and_then(|grant| grant.user.clone());
            let state = socket_state(&check, grant, kinds.as_deref(), user);
            Ok(admission.extension(Rc::new(state)))
        });
    }
    if stateful {
        namespace = namespace
            .on_connect({
                let (policy, authority) = (policy.clone(), authority.clone());
                move |socket| {
                    if let (Some(authority), Some(grant)) = (&authority, grant_of(socket)) {
                        authority.connected(socket, &grant, &policy);
                    }
                }
            })
            .on_disconnect({
                let authority = authority.clone();
                move |socket, _reason| {
                    if let (Some(authority), Some(grant)) = (&authority, grant_of(socket)) {
                        authority.disconnected(socket, &grant);
                    }
                }
            });
    }
    let builtins = policy.builtins;
    if builtins.join {
        let (policy, join_hook) = (policy.clone(), hooks.clone());
        namespace = namespace.on("join", move |socket, message, mut ack| {
            if admitted(socket, &policy, &mut ack) {
                join(socket, &policy, join_hook.as_ref(), &message, ack);
            }
        });
    }
    if builtins.leave {
        let policy = policy.clone();
        namespace = namespace.on("leave", move |socket, message, mut ack| {
            if !admitted(socket, &policy, &mut ack) {
                return;
            }
            let Some(room) = message.str(0) else {
                return ack_error(ack, "invalid_room", "invalid room name");
            };
            if let Some(error) = policy.room_error(&room) {
                return ack_error(ack, error.code(), error.message());
            }
            socket.leave(&room);
            ack_ok(ack);
        });
    }
    if builtins.publish {
        let policy = policy.clone();
        namespace = namespace.on("publish", move |socket, message, mut ack| {
            if admitted(socket, &policy, &mut ack) {
                publish(socket, &policy, &message, ack);
            }
        });
    }
    if builtins.echo {
        let policy = policy.clone();
        namespace = namespace.on("echo", move |socket, message, mut ack| {
            if !admitted(socket, &policy, &mut ack) {
                return;
            }
            if let Some(ack) = ack {
                let _ = ack.send(&message.to_args());
            }
        });
    }
    let reserved_or_unknown = stateful
        || policy.unknown_events != UnknownEvents::Drop
        || !(builtins.join && builtins.leave && builtins.publish && builtins.echo);
    let forwarding = hooks.as_ref().filter(|h| !h.rules.is_empty()).map(|h| {
        Arc::new(Forwarding {
            hooks: h.hooks.clone(),
            rules: h.rules.clone(),
            policy: policy.clone(),
        })
    });
    if reserved_or_unknown {
        namespace = namespace.on_any(move |socket, event, message, mut ack| {
            if !admitted(socket, &policy, &mut ack) {
                return;
            }
            if let Some(forwarding) = &forwarding {
                let state = state_of(socket).and_then(|state| state.hooks.clone());
                let rule = forward::rule_for(&forwarding.rules, event);
                if let (Some(rule), Some(state), false) =
                    (rule, state, event.starts_with(RESERVED_PREFIX))
                {
                    return forward::forward(forwarding, socket, &state, rule, event, message, ack);
                }
            }
            if event == "ringcast:refresh" {
                return match &authority {
                    Some(authority) => authority.refresh(socket, &policy, &message, ack),
                    None => refusal_ack(ack, "not_supported", "this namespace takes no token"),
                };
            }
            if event.starts_with(RESERVED_PREFIX) {
                return ack_error(ack, "reserved_event", "ringcast: events are reserved");
            }
            match policy.unknown_events {
                UnknownEvents::Drop => {}
                UnknownEvents::Error => ack_error(ack, "unknown_event", "no such event"),
                UnknownEvents::Disconnect => socket.disconnect(),
            }
        });
    }
    namespace
}

/// Records the revocations other nodes announce, so a token revoked there is refused here.
fn follow_revocations(namespace: Namespace, revocations: Arc<Revocations>) -> Namespace {
    #[derive(serde::Deserialize)]
    struct Revoked {
        user: String,
        revoked_before: u64,
        ttl_ms: u64,
    }
    #[derive(serde::Deserialize)]
    struct Lifted {
        user: String,
    }
    let lifts = revocations.clone();
    namespace
        .on_server_side_emit(REVOKE_EVENT, move |_operator, message, _ack| {
            if let Ok(revoked) = message.get::<Revoked>(0) {
                let ttl = std::time::Duration::from_millis(revoked.ttl_ms);
                revocations.revoke(&revoked.user, revoked.revoked_before, ttl);
            }
        })
        .on_server_side_emit(LIFT_EVENT, move |_operator, message, _ack| {
            if let Ok(lifted) = message.get::<Lifted>(0) {
                lifts.lift(&lifted.user);
            }
        })
}

/// Replaces this node's older sockets of a user whose newest socket connected on another node.
fn follow_replacements(namespace: Namespace, authority: Arc<Authority>) -> Namespace {
    #[derive(serde::Deserialize)]
    struct Replaced {
        user: String,
        socket: String,
        at: u64,
    }
    namespace.on_server_side_emit(REPLACE_EVENT, move |operator, message, _ack| {
        if let Ok(news) = message.get::<Replaced>(0) {
            let nsp = operator.nsp().to_owned();
            authority.replace(operator, &nsp, &news.user, &news.socket, news.at);
        }
    })
}

/// The socket's state, when its namespace keeps one.
fn state_of(socket: &Socket) -> Option<Rc<SocketState>> {
    socket.extension::<SocketState>()
}

fn grant_of(socket: &Socket) -> Option<Rc<SocketGrant>> {
    state_of(socket).and_then(|state| state.grant.clone())
}

/// Whether the socket's event may run now: its bucket has a token. Over the rate, the event
/// gets a `rate_limited` ack; too often over it, the socket is disconnected.
fn admitted(socket: &Socket, policy: &NamespacePolicy, ack: &mut Option<AckSender>) -> bool {
    let (Some(rate), Some(state)) = (policy.rate, state_of(socket)) else {
        return true;
    };
    let Some(mut bucket) = state.bucket.get() else {
        return true;
    };
    let verdict = bucket.take(&rate, Instant::now());
    state.bucket.set(Some(bucket));
    match verdict {
        Verdict::Pass => true,
        Verdict::Limited => {
            ack_error(ack.take(), "rate_limited", "too many events");
            false
        }
        Verdict::Disconnect => {
            server_disconnect(socket, "rate limited", "rate_limited");
            false
        }
    }
}

fn join(
    socket: &Socket,
    policy: &NamespacePolicy,
    hooks: Option<&Arc<NamespaceHooks>>,
    message: &Message,
    ack: Option<AckSender>,
) {
    let Some(room) = message.str(0) else {
        return ack_error(ack, "invalid_room", "invalid room name");
    };
    if let Some(error) = policy.room_error(&room) {
        return ack_error(ack, error.code(), error.message());
    }
    let state = policy.keeps_state().then(|| state_of(socket)).flatten();
    let user = state.as_deref().and_then(SocketState::user);
    let granted = state
        .as_deref()
        .and_then(|state| state.grant.as_ref())
        .is_some_and(|grant| grant.allows_room(&room));
    if !(allowed(&policy.join, &room, user) || granted) {
        return ack_error(ack, "forbidden", "room not allowed");
    }
    if let Some(max) = policy.max_rooms_per_socket {
        // Its own id room does not count.
        let held = socket.rooms().len().saturating_sub(1);
        if held >= max && !socket.rooms().iter().any(|r| *r == *room) {
            return ack_error(ack, "room_limit", "not joined");
        }
    }
    match hooks.and_then(|h| {
        h.join_hook
            .clone()
            .map(|endpoint| (h.hooks.clone(), endpoint))
    }) {
        Some((hooks, endpoint)) => {
            let (task_socket, user) = (socket.clone(), user.map(str::to_owned));
            let room = room.into_owned();
            socket.spawn(async move {
                let mut data = super::hooks::about(&task_socket, user.as_deref());
                data.insert("room".into(), room.clone().into());
                let event = hooks.event(
                    task_socket.shard().index(),
                    "io.ringcast.join",
                    Some(task_socket.id()),
                    data,
                );
                match connect_hook::ask(&hooks, &endpoint, "join", event).await {
                    Ok(Decision::Allow(_)) => join_now(&task_socket, &room, ack),
                    Ok(Decision::Deny { message, data }) => {
                        let code = data
                            .as_ref()
                            .and_then(|data| data.get("code"))
                            .and_then(|code| code.as_str().map(str::to_owned))
                            .unwrap_or_else(|| "forbidden".to_owned());
                        ack_error(ack, &code, &message);
                    }
                    Err(failure) => ack_error(ack, failure.code(), "the backend did not decide"),
                }
            });
        }
        None => join_now(socket, &room, ack),
    }
}

/// Joins a room the client asked for, now that it may.
fn join_now(socket: &Socket, room: &str, ack: Option<AckSender>) {
    if joined_by(JoinCause::Client, || socket.join(room)) {
        ack_ok(ack);
    } else {
        ack_error(ack, "room_limit", "not joined");
    }
}

/// The state a socket of `policy` keeps: its grant, its event bucket and, with hooks, its
/// sequence and forwarded calls.
fn socket_state(
    policy: &NamespacePolicy,
    grant: Option<Rc<SocketGrant>>,
    hooks: Option<&NamespaceHooks>,
    user: Option<String>,
) -> SocketState {
    let bucket = policy.rate.map(|rate| Bucket::full(&rate, Instant::now()));
    SocketState {
        grant,
        bucket: Cell::new(bucket),
        hooks: hooks.map(|hooks| Rc::new(SocketHooks::new(user, hooks.lifecycle.clone()))),
    }
}

/// A CONNECT to a namespace with `auth = "hook"` or `"jwt+hook"`: the token first (with
/// `jwt+hook`), then the connect hook's decision.
async fn admit_by_hook(
    handshake: &Handshake,
    policy: &Arc<NamespacePolicy>,
    authority: Option<Arc<Authority>>,
    hooks: Option<Arc<NamespaceHooks>>,
) -> Result<Admission, ConnectError> {
    let (Some(authority), Some(namespace_hooks)) = (authority, hooks) else {
        return Err(ConnectError::new("server error"));
    };
    let hooks = &namespace_hooks.hooks;
    let Some(endpoint) = hooks.connect.clone() else {
        return Err(ConnectError::new("server error"));
    };
    let (admission, token_grant) = match policy.auth {
        AuthMode::JwtHook => authority.admit(handshake, policy)?,
        _ => (Admission::new(), None),
    };
    let claims = token_grant
        .as_ref()
        .map(|grant| json!({ "sub": grant.user, "exp": grant.expires_at() }));
    let auth = admission
        .auth
        .clone()
        .unwrap_or_else(|| handshake.auth_raw().to_vec().into());
    let shard = super::hooks::lifecycle::shard_index();
    let event = connect_hook::connect_event(hooks, shard, handshake, &auth, claims);
    let allowed = match connect_hook::ask(hooks, &endpoint, "connect", event).await {
        Ok(Decision::Allow(allowed)) => Some(allowed),
        Ok(Decision::Deny { message, data }) => {
            authority.count_failure("hook_denied");
            return Err(connect_hook::denial(message, data));
        }
        Err(failure) => {
            authority.count_failure(failure.code());
            connect_hook::on_failure(hooks, failure)?
        }
    };
    let token_user = token_grant.as_ref().and_then(|grant| grant.user.clone());
    let user = match (&token_user, allowed.as_ref().and_then(|a| a.user.clone())) {
        (Some(token), Some(hook)) if *token != hook => {
            return Err(connect_hook::refusal(
                "user mismatch",
                "user_mismatch",
                false,
            ));
        }
        (Some(token), _) => Some(token.clone()),
        (None, hook) if policy.auth == AuthMode::Hook => hook,
        (None, _) => None,
    };
    let mut admission = admission;
    if let (Some(user), AuthMode::Hook) = (&user, policy.auth) {
        if authority.revocations.refuses(user, None) {
            return Err(connect_hook::refusal("user revoked", "revoked", false));
        }
        admission = admission.join(super::policy::user_room(user));
    }
    let mut claimed = Vec::new();
    let grant = match allowed {
        Some(allowed) => {
            for room in allowed
                .rooms
                .iter()
                .filter(|room| policy.room_error(room).is_none())
            {
                admission = admission.join(room.clone());
                claimed.push(room.clone());
            }
            if let Some(data) = allowed.data {
                admission = admission.data(data);
            }
            match token_grant {
                Some(grant) => {
                    grant.allow_more_rooms(&allowed.allow_rooms);
                    Some(grant)
                }
                None => {
                    let refresher = hooks
                        .refresh
                        .is_some()
                        .then(|| (hooks.clone(), authority.clone()));
                    Some(Rc::new(SocketGrant::from_hook(
                        user.clone(),
                        allowed.expires_at,
                        &claimed,
                        allowed.allow_rooms,
                        refresher,
                    )))
                }
            }
        }
        // `on_failure = "anonymous"`: no user.
        None => None,
    };
    let user = grant.as_ref().and_then(|grant| grant.user.clone());
    let state = socket_state(policy, grant, Some(&namespace_hooks), user);
    Ok(admission.extension(Rc::new(state)))
}

fn publish(socket: &Socket, policy: &NamespacePolicy, message: &Message, ack: Option<AckSender>) {
    let Some(room) = message.str(0) else {
        return ack_error(ack, "invalid_room", "invalid room name");
    };
    if let Some(error) = policy.room_error(&room) {
        return ack_error(ack, error.code(), error.message());
    }
    let user = policy
        .keeps_state()
        .then(|| state_of(socket))
        .flatten()
        .and_then(|state| state.user().map(str::to_owned));
    if !allowed(&policy.publish, &room, user.as_deref()) {
        return ack_error(ack, "forbidden", "room not allowed");
    }
    if policy.publish_requires_membership && !socket.rooms().iter().any(|r| *r == *room) {
        return ack_error(ack, "forbidden", "not a member of the room");
    }
    socket
        .namespace()
        .to(&room)
        .emit("message", &message.args_from(1));
    ack_ok(ack);
}

/// The namespace of today's binary: every built-in open, no auth (`apps::builtin_namespace`).
pub(crate) fn open() -> Namespace {
    namespace(NamespacePolicy::open(), None, None, None)
}
