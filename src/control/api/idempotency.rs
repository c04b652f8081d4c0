//! `Idempotency-Key`: the first answer to a POST is kept for `idempotency_ttl`, keyed by
//! (key, API key name), and replayed to a retry; the same key with another body is a
//! conflict, and a retry while the first is still running is told so.
//!
//! Storage, on a cluster node: Redis (spec 2.5), so that a retry reaching another node is
//! answered the same. `<prefix>-ringcast#idem#<API key name>#<sha256 of the key, hex>` is
//! claimed with `SET … NX PX ttl` holding `running <body hash>`; the winner runs the request
//! and overwrites it with `done <body hash> <status> <base64 body>` (`SET … PX ttl`, not
//! awaited, so Redis never delays the answer: another node may read `running` for a moment
//! after it), or deletes it when the answer is not kept. A loser reads the value (`GET`) and
//! answers from it. Redis down or too slow for the claim: the request is not run
//! ([`Claim::Unavailable`]). The awaits are the link's futures, on the caller's task.
//!
//! Otherwise: one process-wide table behind a short `Mutex` (looked up and updated, never held
//! across an await), bounded in entries and in the bytes of kept answers, with expired entries
//! swept as it grows (amortised: each sweep waits for the table to double). API requests
//! are not the fan-out hot path (a broadcast to a thousand sockets is one entry here), so a
//! lock shared by the shards costs nothing that matters. Must not depend on the engine, the
//! shard or the bus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::server::SharedKeys;

/// The longest `Idempotency-Key` accepted.
pub(crate) const MAX_KEY_LEN: usize = 128;
/// How many keys are kept at most; past it new keys are refused until entries expire.
pub(crate) const MAX_ENTRIES: usize = 100_000;
/// How many bytes of answers are kept at most; an answer that does not fit is not kept (a
/// retry runs again: only large read answers come near this, and reading twice is harmless).
pub(crate) const MAX_KEPT_BYTES: usize = 64 << 20;
/// The table is swept of expired entries when it reaches this size at least.
const FIRST_SWEEP: usize = 1024;
/// The largest answer kept in Redis (its body's bytes, before base64): every node reads it
/// back whole, so a large one is not kept (a retry runs again, as for the table's bound).
pub(crate) const MAX_SHARED_BYTES: usize = 1 << 20;
/// How many times a claim in Redis tries again when the key vanished between its `SET NX`
/// and its `GET` (expired, or freed by a request that did not keep its answer).
const SHARED_CLAIM_TRIES: usize = 3;

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
    /// The keys are kept in Redis, which did not answer (down, too slow): the request must
    /// not run, since another node could run it too.
    Unavailable,
}

/// The process's idempotency keys: its own table, or Redis once the server runs as a node of
/// a cluster.
#[derive(Clone, Default)]
pub(crate) struct Idempotency {
    table: Arc<Mutex<Table>>,
    /// Set (once) when the server starts as a cluster node, before any request.
    shared: Arc<OnceLock<SharedKeys>>,
}

impl Idempotency {
    /// Keeps the keys in Redis from now on (the server started as a cluster node).
    pub(crate) fn share(&self, keys: SharedKeys) {
        let _ = self.shared.set(keys);
    }

    /// Claims `key` for the caller `owner`'s request with `fingerprint`: in Redis on a
    /// cluster node, in the process's table otherwise.
    pub(crate) async fn claim(
        &self,
        key: &str,
        owner: &Arc<str>,
        fingerprint: [u8; 32],
        ttl: Duration,
    ) -> Claim {
        match self.shared.get() {
            Some(keys) => claim_shared(keys, key, owner, fingerprint, ttl).await,
            None => self.claim_local(key, owner, fingerprint, ttl, Instant::now()),
        }
    }

    /// Claims `key` in the process's table.
    fn claim_local(
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
        Claim::Run(Guard::Local(LocalGuard {
            table: self.clone(),
            slot: Some(slot),
            ttl,
        }))
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
pub(crate) enum Guard {
    Local(LocalGuard),
    Shared(SharedGuard),
}

impl Guard {
    /// Keeps `kept` for the TTL from now (`now` is the table's clock; Redis counts its own).
    pub(crate) fn finish(self, kept: Kept, now: Instant) {
        match self {
            Guard::Local(guard) => guard.finish(kept, now),
            Guard::Shared(guard) => guard.finish(kept),
        }
    }
}

/// A claim in the process's table.
#[derive(Debug)]
pub(crate) struct LocalGuard {
    table: Idempotency,
    slot: Option<Slot>,
    ttl: Duration,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Idempotency")
    }
}

impl LocalGuard {
    /// Keeps `kept` for the TTL from now (unless the kept answers are at their byte bound
    /// even after a sweep: the key is freed then).
    fn finish(mut self, kept: Kept, now: Instant) {
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

impl Drop for LocalGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.table.lock().remove(&slot);
        }
    }
}

/// Claims `key` in Redis (see the module's notes).
async fn claim_shared(
    keys: &SharedKeys,
    key: &str,
    owner: &str,
    fingerprint: [u8; 32],
    ttl: Duration,
) -> Claim {
    let stored = shared_key(keys.prefix(), owner, key);
    let running = encode_running(&fingerprint);
    for _ in 0..SHARED_CLAIM_TRIES {
        match keys.set_nx_px(&stored, &running, ttl).await {
            Ok(true) => {
                return Claim::Run(Guard::Shared(SharedGuard {
                    keys: keys.clone(),
                    key: stored,
                    fingerprint,
                    ttl,
                    finished: false,
                }))
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "idempotency key not claimed: Redis did not answer");
                return Claim::Unavailable;
            }
        }
        let value = match keys.get(&stored).await {
            Ok(Some(value)) => value,
            // Gone since the SET NX: claim it again.
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, "idempotency key not read: Redis did not answer");
                return Claim::Unavailable;
            }
        };
        return match decode(&value) {
            Some(found) if found.fingerprint != fingerprint => Claim::Conflict,
            Some(Stored {
                state: StoredState::Running,
                ..
            }) => Claim::InProgress,
            Some(Stored {
                state: StoredState::Done(kept),
                ..
            }) => Claim::Replay(kept),
            // Not written by us: not ours to overwrite or to run over.
            None => {
                tracing::warn!(key = %stored, "idempotency key holds an unknown value");
                Claim::Conflict
            }
        };
    }
    // The key keeps coming and going: another request with it is running now.
    Claim::InProgress
}

/// A claim in Redis: `finish` overwrites it with the answer, a drop unfinished deletes it.
pub(crate) struct SharedGuard {
    keys: SharedKeys,
    /// The Redis key.
    key: String,
    fingerprint: [u8; 32],
    ttl: Duration,
    /// The answer was written (or could not even be queued): nothing to delete.
    finished: bool,
}

impl std::fmt::Debug for SharedGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedGuard")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl SharedGuard {
    /// Stores `kept` for the TTL (not awaited); one too large to share frees the key instead.
    fn finish(mut self, kept: Kept) {
        if kept.body.len() > MAX_SHARED_BYTES {
            return;
        }
        self.finished = true;
        let value = encode_done(&self.fingerprint, &kept);
        if !self.keys.set_px(&self.key, &value, self.ttl) {
            // The claim stays `running` until it expires: retries are told in_progress.
            tracing::warn!(
                key = %self.key,
                "idempotent answer not stored: Redis unreachable"
            );
        }
    }
}

impl Drop for SharedGuard {
    fn drop(&mut self) {
        if !self.finished && !self.keys.delete(&self.key) {
            tracing::warn!(
                key = %self.key,
                "idempotency key not freed: Redis unreachable (it expires with its TTL)"
            );
        }
    }
}

/// The Redis key of (`key`, `owner`): the Idempotency-Key as a hash (bounded, no client text
/// in Redis's keyspace or the logs), last, so an owner's name with `#` can't collide.
fn shared_key(prefix: &str, owner: &str, key: &str) -> String {
    let hash = super::auth::hex(&Sha256::digest(key.as_bytes()));
    format!("{prefix}-ringcast#idem#{owner}#{hash}")
}

/// What Redis holds for a claimed key.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    fingerprint: [u8; 32],
    state: StoredState,
}

#[derive(Debug, PartialEq, Eq)]
enum StoredState {
    Running,
    Done(Kept),
}

/// `running <fingerprint hex>`.
fn encode_running(fingerprint: &[u8; 32]) -> String {
    format!("running {}", super::auth::hex(fingerprint))
}

/// `done <fingerprint hex> <status> <base64 body>`.
fn encode_done(fingerprint: &[u8; 32], kept: &Kept) -> String {
    format!(
        "done {} {} {}",
        super::auth::hex(fingerprint),
        kept.status,
        base64::engine::general_purpose::STANDARD.encode(&kept.body)
    )
}

/// A stored value; `None` when it is not one of ours (or is damaged).
fn decode(value: &str) -> Option<Stored> {
    let mut parts = value.splitn(4, ' ');
    let state = parts.next()?;
    let fingerprint = unhex32(parts.next()?)?;
    let state = match state {
        "running" if parts.next().is_none() => StoredState::Running,
        "done" => {
            let status: u16 = parts.next()?.parse().ok()?;
            if !(100..=599).contains(&status) {
                return None;
            }
            let body = base64::engine::general_purpose::STANDARD
                .decode(parts.next()?)
                .ok()?;
            StoredState::Done(Kept {
                status,
                body: body.into(),
            })
        }
        _ => return None,
    };
    Some(Stored { fingerprint, state })
}

/// 64 lowercase hex digits as 32 bytes.
fn unhex32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
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
        let Claim::Run(guard) = table.claim_local("k1", &owner, [1; 32], TTL, now) else {
            panic!("first claim runs");
        };
        assert!(matches!(
            table.claim_local("k1", &owner, [1; 32], TTL, now),
            Claim::InProgress
        ));
        assert!(matches!(
            table.claim_local("k1", &owner, [2; 32], TTL, now),
            Claim::Conflict
        ));
        // Another API key's namespace of idempotency keys is its own.
        assert!(matches!(
            table.claim_local("k1", &other, [2; 32], TTL, now),
            Claim::Run(_)
        ));
        let kept = Kept {
            status: 200,
            body: bytes::Bytes::from_static(b"{}"),
        };
        guard.finish(kept.clone(), now);
        match table.claim_local("k1", &owner, [1; 32], TTL, now) {
            Claim::Replay(replayed) => assert_eq!(replayed, kept),
            other => panic!("expected a replay, got {other:?}"),
        }
        // Expired: the key runs again.
        let later = now + TTL + Duration::from_secs(1);
        assert!(matches!(
            table.claim_local("k1", &owner, [1; 32], TTL, later),
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
        let Claim::Run(first) = table.claim_local("a", &owner, [1; 32], TTL, now) else {
            panic!("runs");
        };
        first.finish(big.clone(), now);
        assert_eq!(table.lock().kept_bytes, big.body.len());
        // No room for a second: it is not kept, its key is free again.
        let Claim::Run(second) = table.claim_local("b", &owner, [1; 32], TTL, now) else {
            panic!("runs");
        };
        second.finish(big.clone(), now);
        assert_eq!(table.len(), 1);
        assert!(matches!(
            table.claim_local("b", &owner, [2; 32], TTL, now),
            Claim::Run(_)
        ));
        // Once the first expired, a sweep makes room.
        let later = now + TTL + Duration::from_secs(1);
        let Claim::Run(third) = table.claim_local("c", &owner, [1; 32], TTL, later) else {
            panic!("runs");
        };
        third.finish(big.clone(), later);
        assert_eq!(table.lock().kept_bytes, big.body.len());
        assert!(matches!(
            table.claim_local("c", &owner, [1; 32], TTL, later),
            Claim::Replay(_)
        ));
    }

    #[test]
    fn an_unfinished_claim_frees_its_key() {
        let table = Idempotency::default();
        let owner: Arc<str> = "backend".into();
        let now = Instant::now();
        let claim = table.claim_local("k", &owner, [1; 32], TTL, now);
        drop(claim);
        assert_eq!(table.len(), 0);
        assert!(matches!(
            table.claim_local("k", &owner, [9; 32], TTL, now),
            Claim::Run(_)
        ));
    }

    #[test]
    fn stored_values_round_trip() {
        let fingerprint = [0xa5; 32];
        let running = encode_running(&fingerprint);
        assert_eq!(running, format!("running {}", "a5".repeat(32)));
        assert_eq!(
            decode(&running),
            Some(Stored {
                fingerprint,
                state: StoredState::Running
            })
        );
        let kept = Kept {
            status: 202,
            body: bytes::Bytes::from_static(b"{\"local_recipients\":1} \xff"),
        };
        let done = encode_done(&fingerprint, &kept);
        assert!(done.starts_with(&format!("done {} 202 ", "a5".repeat(32))));
        assert_eq!(
            decode(&done),
            Some(Stored {
                fingerprint,
                state: StoredState::Done(kept)
            })
        );
        let empty = Kept {
            status: 200,
            body: bytes::Bytes::new(),
        };
        let done = encode_done(&[0; 32], &empty);
        assert_eq!(
            decode(&done).map(|stored| stored.state),
            Some(StoredState::Done(empty))
        );
    }

    #[test]
    fn other_values_are_not_ours() {
        let hex = "0f".repeat(32);
        for value in [
            String::new(),
            "running".to_owned(),
            format!("running {hex} extra"),
            format!("running {}", "0F".repeat(32)),
            format!("running {}", "0f".repeat(31)),
            format!("done {hex}"),
            format!("done {hex} 200"),
            format!("done {hex} 99 e30="),
            format!("done {hex} 600 e30="),
            format!("done {hex} ok e30="),
            format!("done {hex} 200 not*base64"),
            format!("queued {hex}"),
            "true".to_owned(),
        ] {
            assert_eq!(decode(&value), None, "{value:?}");
        }
    }

    #[test]
    fn shared_keys_hash_the_key_last() {
        let key = shared_key("socket.io", "back#end", "order-17");
        let hash = super::super::auth::hex(&Sha256::digest(b"order-17"));
        assert_eq!(key, format!("socket.io-ringcast#idem#back#end#{hash}"));
        assert!(!key.contains("order-17"));
        assert_ne!(key, shared_key("socket.io", "back#end", "order-18"));
        assert_ne!(key, shared_key("socket.io", "other", "order-17"));
    }
}
