//! `Idempotency-Key`: the first answer to a POST is kept for `idempotency_ttl`, keyed by
//! (key, API key name), and replayed to a retry; the same key with another body is a
//! conflict, and a retry while the first is still running is told so.
//!
//! Storage: one process-wide table behind a short `Mutex` (looked up and updated, never held
//! across an await), bounded in entries and in the bytes of kept answers, with expired entries
//! swept as it grows (amortised: each sweep waits for the table to double). API requests
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
/// How many bytes of answers are kept at most; an answer that does not fit is not kept (a
/// retry runs again: only large read answers come near this, and reading twice is harmless).
pub(crate) const MAX_KEPT_BYTES: usize = 64 << 20;
/// The table is swept of expired entries when it reaches this size at least.
const FIRST_SWEEP: usize = 1024;

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

/// The entries and what they hold.
struct Table {
    entries: HashMap<Slot, Entry>,
    /// Bytes of the answers kept.
    kept_bytes: usize,
    /// The size at which the next sweep of expired entries runs.
    sweep_at: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            entries: HashMap::new(),
            kept_bytes: 0,
            sweep_at: FIRST_SWEEP,
        }
    }
}

impl Entry {
    fn kept_bytes(&self) -> usize {
        match &self.state {
            State::Running => 0,
            State::Done(kept) => kept.body.len(),
        }
    }
}

impl Table {
    /// Drops every expired entry.
    fn sweep(&mut self, now: Instant) {
        let mut freed = 0;
        self.entries.retain(|_, entry| {
            let live = entry.expires > now;
            if !live {
                freed += entry.kept_bytes();
            }
            live
        });
        self.kept_bytes = self.kept_bytes.saturating_sub(freed);
        self.sweep_at = (self.entries.len() * 2).max(FIRST_SWEEP);
    }

    fn remove(&mut self, slot: &Slot) {
        if let Some(entry) = self.entries.remove(slot) {
            self.kept_bytes = self.kept_bytes.saturating_sub(entry.kept_bytes());
        }
    }
}

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
    table: Arc<Mutex<Table>>,
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
        if let Some(entry) = table.entries.get(&slot) {
            if entry.expires > now {
                if entry.fingerprint != fingerprint {
                    return Claim::Conflict;
                }
                return match &entry.state {
                    State::Running => Claim::InProgress,
                    State::Done(kept) => Claim::Replay(kept.clone()),
                };
            }
            table.remove(&slot);
        }
        if table.entries.len() >= table.sweep_at {
            table.sweep(now);
        }
        if table.entries.len() >= MAX_ENTRIES {
            return Claim::Full;
        }
        table.entries.insert(
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every update is a single insert or remove: a panic elsewhere left nothing half-done.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
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
    /// Keeps `kept` for the TTL from now (unless the kept answers are at their byte bound
    /// even after a sweep: the key is freed then).
    pub(crate) fn finish(mut self, kept: Kept, now: Instant) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let mut table = self.table.lock();
        let size = kept.body.len();
        if table.kept_bytes + size > MAX_KEPT_BYTES {
            table.sweep(now);
        }
        if table.kept_bytes + size > MAX_KEPT_BYTES {
            table.remove(&slot);
            return;
        }
        if let Some(entry) = table.entries.get_mut(&slot) {
            entry.state = State::Done(kept);
            entry.expires = now + self.ttl;
            table.kept_bytes += size;
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
    fn kept_bytes_are_bounded_and_swept() {
        let table = Idempotency::default();
        let owner: Arc<str> = "backend".into();
        let now = Instant::now();
        let big = Kept {
            status: 200,
            body: bytes::Bytes::from(vec![b'x'; MAX_KEPT_BYTES / 2 + 1]),
        };
        let Claim::Run(first) = table.claim("a", &owner, [1; 32], TTL, now) else {
            panic!("runs");
        };
        first.finish(big.clone(), now);
        assert_eq!(table.lock().kept_bytes, big.body.len());
        // No room for a second: it is not kept, its key is free again.
        let Claim::Run(second) = table.claim("b", &owner, [1; 32], TTL, now) else {
            panic!("runs");
        };
        second.finish(big.clone(), now);
        assert_eq!(table.len(), 1);
        assert!(matches!(
            table.claim("b", &owner, [2; 32], TTL, now),
            Claim::Run(_)
        ));
        // Once the first expired, a sweep makes room.
        let later = now + TTL + Duration::from_secs(1);
        let Claim::Run(third) = table.claim("c", &owner, [1; 32], TTL, later) else {
            panic!("runs");
        };
        third.finish(big.clone(), later);
        assert_eq!(table.lock().kept_bytes, big.body.len());
        assert!(matches!(
            table.claim("c", &owner, [1; 32], TTL, later),
            Claim::Replay(_)
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
