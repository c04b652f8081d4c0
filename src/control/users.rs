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

    /// Lifts `user`'s revocation; whether there was one.
    pub(crate) fn lift(&self, user: &str) -> bool {
        self.lock().remove(user).is_some()
    }

    /// Whether a token of `user` issued at `iat` is refused now. A token without `iat` is
    /// refused whenever the user is revoked; `None` (`iat` unknown, a hook's connect) is too.
    pub(crate) fn refuses(&self, user: &str, iat: Option<u64>) -> bool {
        let now = unix_now();
        let mut entries = self.lock();
        match entries.get(user).copied() {
            Some(entry) if entry.until <= now => {
                entries.remove(user);
                false
            }
            Some(entry) => iat.is_none_or(|iat| iat < entry.revoked_before),
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
        assert!(!revocations.refuses("42", Some(now + 1)));
        assert!(!revocations.refuses("13", Some(now - 10)));
        assert!(revocations.lift("42"));
        assert!(!revocations.refuses("42", Some(now - 10)));
        revocations.revoke("7", now, Duration::ZERO);
        assert!(!revocations.refuses("7", Some(now - 10)), "expired at once");
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
