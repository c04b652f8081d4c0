//! JWT auth on a namespace (spec §2.2, §2.6): the token in the CONNECT `auth` payload (or, for
//! socket.io-client 2.x, a handshake query parameter) checked by [`Verifier`]; the socket's
//! user room, token rooms and data; live expiry (`ringcast:expiring`, then
//! `ringcast:disconnect` and a namespace disconnect), `ringcast:refresh`, revocation, the
//! per-node socket limit per user and single sessions.
//!
//! Per-socket state is a [`SocketGrant`] kept with the socket; deadlines sit in one table per
//! shard, walked by one task per shard while it holds any (no timer per socket). Built on the
//! library's public seams: must not depend on the engine, the shard, the bus or `net`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use super::app::server_disconnect;
use super::counters::Counters;
use super::jwt::{AuthError, Grant, Invalid, JwtConfig, Verifier};
use super::policy::{allowed, user_room, NamespacePolicy, RoomPattern, RESERVED_PREFIX};
use super::users::{unix_now, Revocations, SingleSessions, SocketCounts, REPLACE_EVENT};
use crate::socketio::{
    AckSender, Admission, BroadcastOperator, ConnectError, Handshake, Message, Socket,
};

/// Milliseconds since the epoch, now.
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Refreshes one socket may ask for in a minute.
const MAX_REFRESHES_PER_MINUTE: u32 = 6;

/// How often a shard looks at its deadlines while it holds any.
const TICK: Duration = Duration::from_millis(100);

/// What checks tokens and keeps users for every JWT namespace of the process.
pub(crate) struct Authority {
    /// None when no namespace takes tokens (hook-granted sockets only).
    verifier: Option<Verifier>,
    token_field: String,
    query_param: Option<String>,
    refresh_before: Duration,
    leeway: Duration,
    reload_interval: Duration,
    pub(crate) revocations: Arc<Revocations>,
    counters: Arc<Counters>,
    counts: SocketCounts,
    single_sessions: SingleSessions,
}

/// An admitted CONNECT: what the library keeps, and the grant (none for an anonymous socket).
pub(crate) type Admitted = (Admission, Option<Rc<SocketGrant>>);

/// A CONNECT_ERROR with `{code, retryable}` as `err.data`, with its code.
fn refusal(message: &str, code: &'static str, retryable: bool) -> (&'static str, ConnectError) {
    let error =
        ConnectError::new(message).with_data(&json!({ "code": code, "retryable": retryable }));
    (code, error)
}

fn auth_refusal(error: &AuthError) -> (&'static str, ConnectError) {
    tracing::debug!(code = error.code(), why = error.detail(), "token refused");
    refusal(error.message(), error.code(), false)
}

/// The answer to a refused `ringcast:refresh`: `[{"ok": false, "error": {"code", "message"}}]`.
pub(crate) fn refusal_ack(ack: Option<AckSender>, code: &str, message: &str) {
    if let Some(ack) = ack {
        let answer = json!({ "ok": false, "error": { "code": code, "message": message } });
        if let Ok(args) = crate::socketio::Args::json(&answer) {
            let _ = ack.send(&args);
        }
    }
}

/// Whether `nsp` is one the token's `namespaces` claim names (absent: any).
fn namespace_granted(grant_namespaces: &Option<Vec<String>>, nsp: &str) -> bool {
    grant_namespaces.as_ref().is_none_or(|patterns| {
        patterns
            .iter()
            .any(|pattern| RoomPattern::parse(pattern).matches(nsp, None))
    })
}

impl Authority {
    pub(crate) fn new(
        verifier: Verifier,
        jwt: &JwtConfig,
        revocations: Arc<Revocations>,
        counters: Arc<Counters>,
    ) -> Authority {
        Authority {
            verifier: Some(verifier),
            token_field: jwt.token_field.clone(),
            query_param: jwt.query_param.clone(),
            refresh_before: jwt.refresh_before,
            leeway: jwt.leeway,
            reload_interval: jwt.reload_interval,
            revocations,
            counters,
            counts: SocketCounts::default(),
            single_sessions: SingleSessions::default(),
        }
    }

    /// An authority for hook-granted sockets only: no token is ever accepted.
    pub(crate) fn without_tokens(
        revocations: Arc<Revocations>,
        counters: Arc<Counters>,
    ) -> Authority {
        Authority {
            verifier: None,
            token_field: "token".to_owned(),
            query_param: None,
            refresh_before: Duration::from_secs(60),
            leeway: Duration::ZERO,
            reload_interval: Duration::from_secs(60),
            revocations,
            counters,
            counts: SocketCounts::default(),
            single_sessions: SingleSessions::default(),
        }
    }

    /// Counts a refused CONNECT by its code (a connect hook's refusals too).
    pub(crate) fn count_failure(&self, code: &'static str) {
        self.counters.auth_failure(code);
    }

    /// How often the key files are looked at for changes.
    pub(crate) fn reload_interval(&self) -> Duration {
        self.reload_interval
    }

    /// The verifier, to reload its keys.
    pub(crate) fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// Checks a CONNECT: the admission (auth without the token, data, rooms) and the grant
    /// to keep with the socket, or the CONNECT_ERROR.
    pub(crate) fn admit(
        &self,
        handshake: &Handshake,
        policy: &NamespacePolicy,
    ) -> Result<Admitted, ConnectError> {
        let verdict = self.check(handshake, policy);
        if let Err((code, _)) = &verdict {
            self.counters.auth_failure(code);
        }
        verdict.map_err(|(_, refusal)| refusal)
    }

    /// [`Authority::admit`]'s work; a refusal comes with its code, to be counted.
    fn check(
        &self,
        handshake: &Handshake,
        policy: &NamespacePolicy,
    ) -> Result<Admitted, (&'static str, ConnectError)> {
        let mut auth: serde_json::Map<String, serde_json::Value> =
            handshake.auth().unwrap_or_default();
        // socket.io-client 2.x (protocol 4) has no CONNECT payload: what reaches `auth` is
        // the namespace's query, which its `query` option fills, and "/" gets none at all. Its
        // token is read only when `query_param` says where: that namespace query, else the
        // handshake URL. Otherwise a 2.x client is refused with `token_missing`.
        let token = match (handshake.protocol(), &self.query_param) {
            (4, Some(name)) => match auth.remove(name) {
                Some(serde_json::Value::String(token)) => Some(token),
                _ => handshake.query_param(name),
            },
            (4, None) => None,
            _ => match auth.remove(&self.token_field) {
                Some(serde_json::Value::String(token)) => Some(token),
                Some(_) => return Err(auth_refusal(&AuthError::Invalid(Invalid::Malformed))),
                None => None,
            },
        };
        if handshake.protocol() == 4 {
            // Whatever the option, a token in the namespace query is not kept as auth.
            auth.remove(self.query_param.as_deref().unwrap_or(&self.token_field));
        }
        let stored = Bytes::from(serde_json::to_vec(&auth).unwrap_or_else(|_| b"{}".to_vec()));
        let Some(token) = token else {
            if policy.allow_anonymous {
                return Ok((Admission::new().auth(stored), None));
            }
            return Err(auth_refusal(&AuthError::Missing));
        };
        let verifier = self
            .verifier
            .as_ref()
            .ok_or_else(|| auth_refusal(&AuthError::Missing))?;
        let grant = verifier
            .verify(&token, unix_now())
            .map_err(|error| auth_refusal(&error))?;
        if !namespace_granted(&grant.namespaces, handshake.nsp()) {
            return Err(refusal(
                "namespace not allowed",
                "namespace_forbidden",
                false,
            ));
        }
        if let Some(user) = &grant.user {
            if self.revocations.refuses(user, grant.iat) {
                return Err(refusal("token revoked", "revoked", false));
            }
            if policy.max_sockets_per_user > 0
                && self.counts.get(handshake.nsp(), user) >= policy.max_sockets_per_user
            {
                return Err(refusal("too many sockets", "too_many_sockets", false));
            }
        }
        let mut admission = Admission::new().auth(stored);
        if let Some(user) = &grant.user {
            admission = admission.join(user_room(user));
        }
        let claimed: Vec<String> = grant
            .rooms
            .iter()
            // Token rooms bypass the patterns, never the reserved prefix or the name rules.
            .filter(|room| policy.room_error(room).is_none())
            .cloned()
            .collect();
        for room in &claimed {
            admission = admission.join(room.clone());
        }
        if let Some(data) = grant.data.clone() {
            admission = admission.data(data);
        }
        let claimed = claimed.iter().map(|room| room_hash(room)).collect();
        let socket_grant = Rc::new(SocketGrant::new(&grant, claimed));
        Ok((admission, Some(socket_grant)))
    }

    /// A socket admitted with `grant` is connected: count it, put its token's deadlines in
    /// the shard's table, and with `single_session`, replace the user's other sockets.
    pub(crate) fn connected(
        &self,
        socket: &Socket,
        grant: &Rc<SocketGrant>,
        policy: &NamespacePolicy,
    ) {
        if let Some(user) = &grant.user {
            if policy.max_sockets_per_user > 0 {
                self.counts.add(&socket.nsp(), user);
                grant.counted.set(true);
            }
            if policy.single_session {
                // This process's older sockets of the user now; the other nodes' when the
                // news reaches them, each replacing only what connected before this one.
                let at = unix_millis();
                self.single_sessions
                    .add(&socket.nsp(), user, socket.id(), at);
                grant.single_session.set(true);
                self.replace(socket.namespace(), &socket.nsp(), user, socket.id(), at);
                if let Ok(args) = crate::socketio::Args::json(
                    &json!({ "user": user, "socket": socket.id(), "at": at }),
                ) {
                    socket.namespace().server_side_emit(REPLACE_EVENT, &args);
                }
            }
        }
        self.schedule(socket, grant);
    }

    /// Tells and disconnects the sockets of `user` in `nsp` on this process that `newest`
    /// (connected at `at`, unix ms) replaces.
    pub(crate) fn replace(
        &self,
        namespace: BroadcastOperator,
        nsp: &str,
        user: &str,
        newest: &str,
        at: u64,
    ) {
        let older = self.single_sessions.replaced_by(nsp, user, newest, at);
        if older.is_empty() {
            return;
        }
        let Ok(notice) = crate::socketio::Args::json(
            &json!({ "reason": "session replaced", "code": "session_replaced" }),
        ) else {
            return;
        };
        let target = |operator: BroadcastOperator| {
            older
                .iter()
                .fold(operator.local(), |operator, id| operator.to(id))
        };
        target(namespace.clone()).emit("ringcast:disconnect", &notice);
        drop(target(namespace).disconnect_sockets(false));
    }

    /// A socket with `grant` is gone: uncount it and drop its deadlines.
    pub(crate) fn disconnected(&self, socket: &Socket, grant: &Rc<SocketGrant>) {
        if let (true, Some(user)) = (grant.counted.replace(false), &grant.user) {
            self.counts.remove(&socket.nsp(), user);
        }
        if let (true, Some(user)) = (grant.single_session.replace(false), &grant.user) {
            self.single_sessions
                .remove(&socket.nsp(), user, socket.id());
        }
        grant.unschedule();
    }

    /// `ringcast:refresh [{token}]`: a new token for the same user extends every socket of
    /// the client's connection that it is valid for.
    pub(crate) fn refresh(
        &self,
        socket: &Socket,
        policy: &NamespacePolicy,
        message: &Message,
        ack: Option<AckSender>,
    ) {
        let Some(state) = socket.extension::<super::app::SocketState>() else {
            return refusal_ack(ack, "not_supported", "this namespace takes no token");
        };
        let Some(grant) = state.grant.clone() else {
            return refusal_ack(ack, "not_supported", "this socket has no token");
        };
        if !grant.count_refresh() {
            return refusal_ack(ack, "rate_limited", "too many refreshes");
        }
        #[derive(serde::Deserialize)]
        struct Refresh {
            token: String,
        }
        let Ok(Refresh { token }) = message.get::<Refresh>(0) else {
            return refusal_ack(ack, "token_invalid", "invalid token");
        };
        let Some(verifier) = &self.verifier else {
            return refusal_ack(ack, "not_supported", "this namespace takes no token");
        };
        let new = match verifier.verify(&token, unix_now()) {
            Ok(new) => new,
            Err(error) => {
                self.counters.auth_failure(error.code());
                return refusal_ack(ack, error.code(), error.message());
            }
        };
        if new.user != grant.user {
            return refusal_ack(ack, "user_mismatch", "token is for another user");
        }
        if let Some(user) = &new.user {
            if self.revocations.refuses(user, new.iat) {
                return refusal_ack(ack, "revoked", "token revoked");
            }
        }
        if !namespace_granted(&new.namespaces, &socket.nsp()) {
            return refusal_ack(ack, "namespace_forbidden", "namespace not allowed");
        }
        // Every socket of this connection with the same user whose namespace the new token
        // allows (this one included), so a client with three namespaces refreshes once.
        let mut targets = vec![(socket.clone(), grant.clone())];
        for other in socket.siblings() {
            let other_grant = other
                .extension::<super::app::SocketState>()
                .and_then(|state| state.grant.clone());
            if let Some(other_grant) = other_grant {
                if other_grant.user == new.user && namespace_granted(&new.namespaces, &other.nsp())
                {
                    targets.push((other, other_grant));
                }
            }
        }
        for (target, target_grant) in &targets {
            target_grant.renew(&new);
            if let Some(data) = &new.data {
                let _ = target.set_data(data);
            }
            // Rooms the new grants no longer allow are left (never the reserved ones, its
            // own id room or the rooms the first token gave).
            for room in target.rooms() {
                let kept = room == target.id()
                    || room.starts_with(RESERVED_PREFIX)
                    || target_grant.claimed.contains(&room_hash(&room))
                    || allowed(&policy.join, &room, new.user.as_deref())
                    || target_grant.allows_room(&room);
                if !kept {
                    target.leave(&room);
                }
            }
            self.schedule(target, target_grant);
        }
        if let Some(ack) = ack {
            let answer = match new.exp {
                Some(exp) => json!({ "ok": true, "exp": exp }),
                None => json!({ "ok": true }),
            };
            if let Ok(args) = crate::socketio::Args::json(&answer) {
                let _ = ack.send(&args);
            }
        }
    }

    /// Puts the socket's token deadlines (warning, then expiry) in the shard's table.
    pub(crate) fn schedule(&self, socket: &Socket, grant: &Rc<SocketGrant>) {
        grant.unschedule();
        let Some(exp) = grant.state.borrow().exp else {
            return;
        };
        let now_unix = unix_now();
        let now = Instant::now();
        let at = |unix: u64| now + Duration::from_secs(unix.saturating_sub(now_unix));
        let issued = grant.state.borrow().issued;
        let life = exp.saturating_sub(issued);
        let before = self.refresh_before.as_secs();
        // Short tokens are warned half-way through their life.
        let warn = if life < 2 * before {
            issued + life / 2
        } else {
            exp - before
        };
        let expire = at(exp + self.leeway.as_secs());
        // One entry a socket: the warning, which puts the expiry in its place when it fires.
        let (when, deadline) = if warn < exp {
            (at(warn), Deadline::Expiring(expire))
        } else {
            (expire, Deadline::Expired)
        };
        let key = DEADLINES.with(|table| table.borrow_mut().insert(when, socket, grant, deadline));
        grant.deadline.set(Some(key));
        ensure_ticking(socket);
    }
}

/// What the server keeps of a socket's token.
pub(crate) struct SocketGrant {
    pub(crate) user: Option<String>,
    state: RefCell<GrantState>,
    /// Rooms the connect token's `rooms` claim joined.
    /// (as hashes: a socket keeps no copy of the names; a collision only keeps a room)
    claimed: Box<[u64]>,
    /// Its two entries in the shard's deadline table.
    deadline: Cell<Option<DeadlineKey>>,
    /// Refreshes in the current minute and when it started.
    refreshes: Cell<(u32, Option<Instant>)>,
    counted: Cell<bool>,
    /// Whether it is listed in the single sessions.
    single_session: Cell<bool>,
    /// For a hook-granted socket with a refresh hook: asked before it expires.
    pub(crate) refresher: Option<(Arc<crate::control::hooks::Hooks>, Arc<Authority>)>,
}

struct GrantState {
    exp: Option<u64>,
    /// When the token's life began: its `iat`, or the connect.
    issued: u64,
    allow_rooms: Vec<RoomPattern>,
}

impl SocketGrant {
    fn new(grant: &Grant, claimed: Box<[u64]>) -> SocketGrant {
        SocketGrant {
            user: grant.user.clone(),
            state: RefCell::new(GrantState::of(grant)),
            claimed,
            deadline: Cell::new(None),
            refreshes: Cell::new((0, None)),
            counted: Cell::new(false),
            single_session: Cell::new(false),
            refresher: None,
        }
    }

    /// The grant of a connect hook's answer: its user, expiry and join patterns, and the
    /// rooms it joined (`claimed`, kept through renewals).
    pub(crate) fn from_hook(
        user: Option<String>,
        expires_at: Option<u64>,
        claimed: &[String],
        allow_rooms: Vec<String>,
        refresher: Option<(Arc<crate::control::hooks::Hooks>, Arc<Authority>)>,
    ) -> SocketGrant {
        let grant = Grant {
            user,
            exp: expires_at,
            iat: None,
            rooms: Vec::new(),
            allow_rooms,
            namespaces: None,
            data: None,
        };
        let mut socket_grant =
            SocketGrant::new(&grant, claimed.iter().map(|room| room_hash(room)).collect());
        socket_grant.refresher = refresher;
        socket_grant
    }

    /// Adds join patterns (a connect hook's `allow_rooms` over a token's).
    pub(crate) fn allow_more_rooms(&self, patterns: &[String]) {
        self.state
            .borrow_mut()
            .allow_rooms
            .extend(patterns.iter().map(|pattern| RoomPattern::parse(pattern)));
    }

    /// A refresh hook's renewal: the new expiry and join patterns.
    pub(crate) fn renew_from_hook(&self, expires_at: Option<u64>, allow_rooms: Option<&[String]>) {
        let mut state = self.state.borrow_mut();
        state.exp = expires_at;
        state.issued = unix_now();
        if let Some(patterns) = allow_rooms {
            state.allow_rooms = patterns.iter().map(|p| RoomPattern::parse(p)).collect();
        }
    }

    /// When it expires (unix seconds), if ever.
    pub(crate) fn expires_at(&self) -> Option<u64> {
        self.state.borrow().exp
    }

    /// Whether the token's `allow_rooms` let the socket join `room`.
    pub(crate) fn allows_room(&self, room: &str) -> bool {
        allowed(&self.state.borrow().allow_rooms, room, self.user.as_deref())
    }

    fn renew(&self, grant: &Grant) {
        *self.state.borrow_mut() = GrantState::of(grant);
    }

    /// Counts a refresh; false past the minute's allowance.
    fn count_refresh(&self) -> bool {
        let now = Instant::now();
        let (count, since) = self.refreshes.get();
        let (count, since) = match since {
            Some(since) if now.duration_since(since) < Duration::from_secs(60) => (count, since),
            _ => (0, now),
        };
        self.refreshes.set((count + 1, Some(since)));
        count < MAX_REFRESHES_PER_MINUTE
    }

    fn unschedule(&self) {
        if let Some(key) = self.deadline.take() {
            DEADLINES.with(|table| table.borrow_mut().entries.remove(&key));
        }
    }
}

impl GrantState {
    fn of(grant: &Grant) -> GrantState {
        GrantState {
            exp: grant.exp,
            issued: grant.iat.unwrap_or_else(unix_now),
            allow_rooms: grant
                .allow_rooms
                .iter()
                .map(|pattern| RoomPattern::parse(pattern))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    /// The warning; the expiry comes at this instant.
    Expiring(Instant),
    Expired,
}

/// A room name as a grant remembers it.
fn room_hash(room: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same name hashes alike at connect and at every refresh.
    let mut hasher = std::hash::DefaultHasher::new();
    room.hash(&mut hasher);
    hasher.finish()
}

type DeadlineKey = (Instant, u64);

/// One shard's token deadlines, earliest first.
#[derive(Default)]
struct Deadlines {
    entries: BTreeMap<DeadlineKey, (Socket, Weak<SocketGrant>, Deadline)>,
    next: u64,
    ticking: bool,
}

impl Deadlines {
    fn insert(
        &mut self,
        when: Instant,
        socket: &Socket,
        grant: &Rc<SocketGrant>,
        deadline: Deadline,
    ) -> DeadlineKey {
        self.next += 1;
        let key = (when, self.next);
        self.entries
            .insert(key, (socket.clone(), Rc::downgrade(grant), deadline));
        key
    }
}

thread_local! {
    /// This shard's token deadlines.
    static DEADLINES: RefCell<Deadlines> = RefCell::new(Deadlines::default());
}

/// Starts the shard's deadline task unless it runs: it wakes every [`TICK`] while the table
/// holds anything and ends when it is empty.
fn ensure_ticking(socket: &Socket) {
    let start = DEADLINES.with(|table| !std::mem::replace(&mut table.borrow_mut().ticking, true));
    if !start {
        return;
    }
    socket.spawn(async {
        loop {
            crate::server::shard_sleep(TICK).await;
            let due = DEADLINES.with(|table| {
                let mut table = table.borrow_mut();
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some(entry) = table.entries.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    due.push(entry.remove());
                }
                if table.entries.is_empty() && due.is_empty() {
                    table.ticking = false;
                }
                due
            });
            if due.is_empty() && !DEADLINES.with(|table| table.borrow().ticking) {
                return;
            }
            for (socket, grant, deadline) in due {
                let Some(grant) = grant.upgrade() else {
                    continue;
                };
                if !socket.connected() {
                    continue;
                }
                match deadline {
                    Deadline::Expiring(_) if grant.refresher.is_some() => {
                        // The refresh hook renews it, or ends it.
                        grant.deadline.set(None);
                        crate::control::hooks::connect::refresh(&socket, &grant);
                    }
                    Deadline::Expiring(expire) => {
                        warn_expiring(&socket, &grant);
                        let key = DEADLINES.with(|table| {
                            table
                                .borrow_mut()
                                .insert(expire, &socket, &grant, Deadline::Expired)
                        });
                        grant.deadline.set(Some(key));
                    }
                    Deadline::Expired => {
                        grant.unschedule();
                        server_disconnect(&socket, "token expired", "token_expired");
                    }
                }
            }
        }
    });
}

/// `ringcast:expiring [{exp, expires_in_ms}]`.
fn warn_expiring(socket: &Socket, grant: &SocketGrant) {
    let Some(exp) = grant.state.borrow().exp else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let expires_in_ms = (u128::from(exp) * 1000).saturating_sub(now);
    if let Ok(args) =
        crate::socketio::Args::json(&json!({ "exp": exp, "expires_in_ms": expires_in_ms as u64 }))
    {
        let _ = socket.emit("ringcast:expiring", &args);
    }
}
