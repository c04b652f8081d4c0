//! `Idempotency-Key`: the first answer to a POST is kept for `idempotency_ttl`, keyed by
//! (key, API key name), and replayed to a retry; the same key with another body is a
//! conflict, and a retry while the first is still running is told so.
//!
//! Storage: one process-wide table behind a short `Mutex` (looked up and updated, never held
//! across an await), bounded in entries, with expired entries swept as it fills. API requests
//! are not the fan-out hot path (a broadcast to a thousand sockets is one entry here), so a
//! lock shared by the shards costs nothing that matters; a cluster-wide store (Redis `SET NX
//! PX`, spec 2.5) can replace it behind the same calls. Must not depend on the engine, the
//! shard or the bus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest `Idempotency-Key` accepted.
pub(crate) const MAX_KEY_LEN: usize = 128;
/// How many keys are kept at most; past it new keys are refused until entries expire.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// A kept answer: what is replayed (the request id is new on each answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kept {
    pub(crate) status: u16,
    pub(crate) body: bytes::Bytes,
}

enum State {
    Running,
    Done(Kept),
}

struct Entry {
    /// SHA-256 of the method, path and body of the first request.
    fingerprint: [u8; 32],
    state: State,
    /// Running entries expire too, so a request that never finished can't block its key
    /// forever (the guard removes them first in every ordinary case).
    expires: Instant,
}

type Slot = (String, Arc<str>);

/// What the table says about a request with a key.
#[derive(Debug)]
pub(crate) enum Claim {
    /// The first with this key: run it, then [`Guard::finish`] with the answer.
    Run(Guard),
    /// Answered before: replay this.
    Replay(Kept),
    /// The same key with another request.
    Conflict,
    /// The first with this key is still running.
    InProgress,
    /// The table is full of live entries.
    Full,
}

/// The process's table of idempotency keys.
#[derive(Clone, Default)]
pub(crate) struct Idempotency {
    table: Arc<Mutex<HashMap<Slot, Entry>>>,
}

impl Idempotency {
    /// Claims `key` for the caller `owner`'s request with `fingerprint`.
    pub(crate) fn claim(
        &self,
        key: &str,
        owner: &Arc<str>,
        fingerprint: [u8; 32],
        ttl: Duration,
        now: Instant,
    ) -> Claim {
        let slot = (key.to_owned(), owner.clone());
        let mut table = self.lock();
        if let Some(entry) = table.get(&slot) {
            if entry.expires > now {
                if entry.fingerprint != fingerprint {
                    return Claim::Conflict;
                }
                return match &entry.state {
                    State::Running => Claim::InProgress,
                    State::Done(kept) => Claim::Replay(kept.clone()),
                };
            }
        }
        if table.len() >= MAX_ENTRIES {
            table.retain(|_, entry| entry.expires > now);
            if table.len() >= MAX_ENTRIES {
                return Claim::Full;
            }
        }
        table.insert(
            slot.clone(),
            Entry {
                fingerprint,
                state: State::Running,
                expires: now + ttl,
            },
        );
        Claim::Run(Guard {
            table: self.clone(),
            slot: Some(slot),
            ttl,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Slot, Entry>> {
        // Every update is a single insert or remove: a panic elsewhere left nothing half-done.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The running claim on a key: [`Guard::finish`] keeps the answer; dropped unfinished (the
/// client went away mid-request, or the answer is not to be kept), the key is freed.
#[derive(Debug)]
pub(crate) struct Guard {
    table: Idempotency,
    slot: Option<Slot>,
    ttl: Duration,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Idempotency")
    }
}

impl Guard {
    /// Keeps `kept` for the TTL from now.
    pub(crate) fn finish(mut self, kept: Kept, now: Instant) {
        if let Some(slot) = self.slot.take() {
            let mut table = self.table.lock();
            if let Some(entry) = table.get_mut(&slot) {
                entry.state = State::Done(kept);
                entry.expires = now + self.ttl;
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.table.lock().remove(&slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    #[test]
    fn first_runs_retry_replays_other_body_conflicts() {
        let table = Idempotency::default();
        let (owner, other): (Arc<str>, Arc<str>) = ("backend".into(), "other".into());
        let now = Instant::now();
        let Claim::Run(guard) = table.claim("k1", &owner, [1; 32], TTL, now) else {
            panic!("first claim runs");
        };
        assert!(matches!(
            table.claim("k1", &owner, [1; 32], TTL, now),
            Claim::InProgress
        ));
        assert!(matches!(
            table.claim("k1", &owner, [2; 32], TTL, now),
            Claim::Conflict
        ));
        // Another API key's namespace of idempotency keys is its own.
        assert!(matches!(
            table.claim("k1", &other, [2; 32], TTL, now),
            Claim::Run(_)
        ));
        let kept = Kept {
            status: 200,
            body: bytes::Bytes::from_static(b"{}"),
        };
        guard.finish(kept.clone(), now);
        match table.claim("k1", &owner, [1; 32], TTL, now) {
            Claim::Replay(replayed) => assert_eq!(replayed, kept),
            other => panic!("expected a replay, got {other:?}"),
        }
        // Expired: the key runs again.
        let later = now + TTL + Duration::from_secs(1);
        assert!(matches!(
            table.claim("k1", &owner, [1; 32], TTL, later),
            Claim::Run(_)
        ));
    }

    #[test]
    fn an_unfinished_claim_frees_its_key() {
        let table = Idempotency::default();
        let owner: Arc<str> = "backend".into();
        let now = Instant::now();
        let claim = table.claim("k", &owner, [1; 32], TTL, now);
        drop(claim);
        assert_eq!(table.len(), 0);
        assert!(matches!(
            table.claim("k", &owner, [9; 32], TTL, now),
            Claim::Run(_)
        ));
    }
}
