//! Users (spec §2.6): revocations (a user's tokens issued before a time are refused until the
//! entry expires) and the per-node count of each user's sockets. Shared by every shard of the
//! process behind short locks, taken on CONNECT, refresh and revoke only, never per packet.
//! Plain data: must not depend on sockets, the runtime or the network (the cluster's copy of a
//! revocation is carried by the caller).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The server-side emit that carries a revocation to the other ringcast nodes
/// (`{user, revoked_before, ttl_ms}`); a Node peer has no handler for it and ignores it.
pub(crate) const REVOKE_EVENT: &str = "ringcast:revoke";

/// The Redis key of `user`'s revocation, under the cluster's prefix: its value is
/// `"<revoked_before> <until>"` (unix seconds) and it expires with the revocation, so a node
/// that starts later loads it ([`parse_stored`]).
pub(crate) fn stored_key(prefix: &str, user: &str) -> String {
    format!("{prefix}-ringcast#revoked#{user}")
}

/// The pattern of every stored revocation under `prefix`.
pub(crate) fn stored_pattern(prefix: &str) -> String {
    // The prefix is the operator's (`redis.prefix`); glob characters in it are escaped.
    let mut pattern = String::with_capacity(prefix.len() + 20);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("-ringcast#revoked#*");
    pattern
}

/// A stored revocation: (user, revoked_before, until), or `None` for a key or value that is
/// not one.
pub(crate) fn parse_stored(prefix: &str, key: &str, value: &str) -> Option<(String, u64, u64)> {
    let user = key.strip_prefix(&format!("{prefix}-ringcast#revoked#"))?;
    let (before, until) = value.split_once(' ')?;
    Some((user.to_owned(), before.parse().ok()?, until.parse().ok()?))
}

/// The server-side emit that lifts a revocation on the other ringcast nodes (`{user}`).
pub(crate) const LIFT_EVENT: &str = "ringcast:unrevoke";

/// Seconds since the epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Revocations by user: tokens issued before `revoked_before` are refused until `until`.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    entries: Mutex<HashMap<String, Revocation>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Revocation {
    revoked_before: u64,
    until: u64,
}

/// Entries at most: past it the ones expiring first are forgotten (a revocation outlives the
/// tokens it refuses, so the oldest matter least).
const MAX_ENTRIES: usize = 1_000_000;

impl Revocations {
    /// Refuses `user`'s tokens issued before `revoked_before` for `ttl` from now.
    pub(crate) fn revoke(&self, user: &str, revoked_before: u64, ttl: Duration) {
        let now = unix_now();
        let until = now.saturating_add(ttl.as_secs());
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.until > now);
        }
        if entries.len() >= MAX_ENTRIES {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.until)
                .map(|(user, _)| user.clone())
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(user.to_owned()).or_insert(Revocation {
            revoked_before,
            until,
        });
        // Two revocations of one user: the later cut-off and the longer life win.
        entry.revoked_before = entry.revoked_before.max(revoked_before);
        entry.until = entry.until.max(until);
    }

    /// Restores a revocation read back from Redis: tokens issued by `revoked_before` refused
    /// until `until` (unix seconds).
    pub(crate) fn restore(&self, user: &str, revoked_before: u64, until: u64) {
        let now = unix_now();
        if until > now {
            self.revoke(user, revoked_before, Duration::from_secs(until - now));
        }
    }

    /// When `user`'s revocation ends (unix seconds), if there is one.
    pub(crate) fn until(&self, user: &str) -> Option<u64> {
        self.lock().get(user).map(|entry| entry.until)
    }

    /// Lifts `user`'s revocation; whether there was one.
    pub(crate) fn lift(&self, user: &str) -> bool {
        self.lock().remove(user).is_some()
    }

    /// Whether a token of `user` issued at `iat` is refused now: issued at or before the
    /// cut-off (`iat` has whole seconds, so a token of the revoking second is refused too: the
    /// safe side). A token without `iat` is refused whenever the user is revoked.
    pub(crate) fn refuses(&self, user: &str, iat: Option<u64>) -> bool {
        let now = unix_now();
        let mut entries = self.lock();
        match entries.get(user).copied() {
            Some(entry) if entry.until <= now => {
                entries.remove(user);
                false
            }
            Some(entry) => iat.is_none_or(|iat| iat <= entry.revoked_before),
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Revocation>> {
        // A panic while holding it leaves a map that is still whole.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sockets of single-session namespaces on this node, with when each connected (unix
/// ms), so that a newer socket replaces the older ones and never the other way round, however
/// late the news of a connect reaches a node.
#[derive(Debug, Default)]
pub(crate) struct SingleSessions {
    sockets: Mutex<UserSockets>,
}

/// (namespace, user) -> [(socket id, connected at, unix ms)].
type UserSockets = HashMap<(String, String), Vec<(String, u64)>>;

impl SingleSessions {
    pub(crate) fn add(&self, nsp: &str, user: &str, socket: &str, at: u64) {
        self.lock()
            .entry((nsp.to_owned(), user.to_owned()))
            .or_default()
            .push((socket.to_owned(), at));
    }

    pub(crate) fn remove(&self, nsp: &str, user: &str, socket: &str) {
        let mut sockets = self.lock();
        let key = (nsp.to_owned(), user.to_owned());
        if let Some(list) = sockets.get_mut(&key) {
            list.retain(|(id, _)| id != socket);
            if list.is_empty() {
                sockets.remove(&key);
            }
        }
    }

    /// The user's sockets here that `newest` (connected at `at`) replaces: every other one
    /// that connected before it (ties broken by id, so two nodes agree).
    pub(crate) fn replaced_by(&self, nsp: &str, user: &str, newest: &str, at: u64) -> Vec<String> {
        self.lock()
            .get(&(nsp.to_owned(), user.to_owned()))
            .into_iter()
            .flatten()
            .filter(|(id, when)| id != newest && (*when, id.as_str()) < (at, newest))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UserSockets> {
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The server-side emit that tells the other ringcast nodes a user's newest socket of a
/// single-session namespace (`{user, socket, at}`): each replaces the older ones it holds.
pub(crate) const REPLACE_EVENT: &str = "ringcast:replace";

/// Each (namespace, user)'s sockets on this node, for `max_sockets_per_user`.
#[derive(Debug, Default)]
pub(crate) struct SocketCounts {
    counts: Mutex<HashMap<(String, String), usize>>,
}

impl SocketCounts {
    pub(crate) fn get(&self, nsp: &str, user: &str) -> usize {
        self.lock()
            .get(&(nsp.to_owned(), user.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn add(&self, nsp: &str, user: &str) {
        *self
            .lock()
            .entry((nsp.to_owned(), user.to_owned()))
            .or_insert(0) += 1;
    }

    pub(crate) fn remove(&self, nsp: &str, user: &str) {
        let mut counts = self.lock();
        let key = (nsp.to_owned(), user.to_owned());
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), usize>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_refuses_older_tokens_until_it_expires() {
        let revocations = Revocations::default();
        let now = unix_now();
        revocations.revoke("42", now, Duration::from_secs(60));
        assert!(revocations.refuses("42", Some(now - 10)));
        assert!(revocations.refuses("42", None));
        assert!(revocations.refuses("42", Some(now)));
        assert!(!revocations.refuses("42", Some(now + 1)));
        assert!(!revocations.refuses("13", Some(now - 10)));
        assert!(revocations.lift("42"));
        assert!(!revocations.refuses("42", Some(now - 10)));
        revocations.revoke("7", now, Duration::ZERO);
        assert!(!revocations.refuses("7", Some(now - 10)), "expired at once");
    }

    #[test]
    fn stored_revocations_read_back() {
        let key = stored_key("socket.io", "42");
        assert_eq!(key, "socket.io-ringcast#revoked#42");
        assert_eq!(
            parse_stored("socket.io", &key, "100 200"),
            Some(("42".to_owned(), 100, 200))
        );
        assert_eq!(parse_stored("socket.io", &key, "garbage"), None);
        assert_eq!(parse_stored("other", &key, "100 200"), None);
        assert_eq!(stored_pattern("a*b"), "a\\*b-ringcast#revoked#*");
    }

    #[test]
    fn only_older_sockets_are_replaced() {
        let sessions = SingleSessions::default();
        sessions.add("/", "7", "old", 100);
        sessions.add("/", "7", "new", 200);
        assert_eq!(sessions.replaced_by("/", "7", "new", 200), ["old"]);
        // News of the old connect arriving late replaces nothing newer.
        assert!(sessions.replaced_by("/", "7", "old", 100).is_empty());
        sessions.remove("/", "7", "old");
        assert!(sessions.replaced_by("/", "7", "new", 200).is_empty());
    }

    #[test]
    fn counts_go_up_and_down() {
        let counts = SocketCounts::default();
        counts.add("/", "42");
        counts.add("/", "42");
        counts.add("/chat", "42");
        assert_eq!(counts.get("/", "42"), 2);
        counts.remove("/", "42");
        counts.remove("/", "42");
        assert_eq!(counts.get("/", "42"), 0);
        assert_eq!(counts.get("/chat", "42"), 1);
    }
}
