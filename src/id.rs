//! Session and socket ids: unguessable, and naming the shard (and slab slot) that owns them.
//!
//! An id is 15 bytes written as 20 characters of unpadded base64url, the length of Node's ids
//! (Node's sharded Redis adapter tells a socket id from a room name by that length alone):
//! bytes 0-1 the owning shard (u16 big-endian), bytes 2-4 the slot on that shard (24 bits,
//! big-endian), bytes 5-14 random from the OS CSPRNG (80 bits). Any shard can route a request
//! by decoding the first bytes; the owner then compares the whole id, so a stale or forged id
//! never reaches another session. Pure: no I/O besides the CSPRNG.

use std::fmt;

use crate::key::ShardId;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Length of an id in characters.
pub const ID_LEN: usize = 20;
const RAW_LEN: usize = 15;
const RANDOM_LEN: usize = 10;
/// Slots an id can name: a shard refuses sessions beyond them (a socket id only carries the
/// slot for show, so its slot is cut to fit).
pub const MAX_SLOTS: usize = 1 << 24;

/// An Engine.IO session id or a Socket.IO socket id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id([u8; ID_LEN]);

impl Id {
    /// A fresh id owned by `shard` at slot `key` (its low 24 bits), with 80 random bits.
    pub fn generate(shard: ShardId, key: u32, random: &mut RandomPool) -> Id {
        let mut raw = [0u8; RAW_LEN];
        raw[..2].copy_from_slice(&shard.get().to_be_bytes());
        raw[2..5].copy_from_slice(&key.to_be_bytes()[1..]);
        random.fill(&mut raw[5..]);
        let mut text = [0u8; ID_LEN];
        // Infallible: 15 bytes always encode to exactly 20 characters.
        let written = URL_SAFE_NO_PAD
            .encode_slice(raw, &mut text)
            .unwrap_or_default();
        debug_assert_eq!(written, ID_LEN);
        Id(text)
    }

    /// Parses a peer-supplied id; `None` unless it has the exact shape of an id.
    pub fn parse(text: &str) -> Option<Id> {
        let bytes: [u8; ID_LEN] = text.as_bytes().try_into().ok()?;
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(bytes, &mut raw) {
            Ok(RAW_LEN) => Some(Id(bytes)),
            _ => None,
        }
    }

    /// The shard that owns this id.
    pub fn shard(&self) -> ShardId {
        let raw = self.prefix();
        ShardId::new(u16::from_be_bytes([raw[0], raw[1]]))
    }

    /// The slot on the owning shard.
    pub fn key(&self) -> u32 {
        let raw = self.prefix();
        u32::from_be_bytes([0, raw[2], raw[3], raw[4]])
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // The bytes are base64url characters (checked in `parse`, produced in `generate`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn prefix(&self) -> [u8; 6] {
        let mut raw = [0u8; 6];
        // 8 characters decode to exactly 6 bytes; the alphabet was checked on creation.
        let _ = URL_SAFE_NO_PAD.decode_slice(&self.0[..8], &mut raw);
        raw
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.as_str())
    }
}

/// Random bytes from the OS CSPRNG, fetched in blocks so each id costs no syscall.
pub struct RandomPool {
    block: [u8; 256],
    used: usize,
}

impl RandomPool {
    /// An empty pool; the first use fills it.
    pub fn new() -> RandomPool {
        RandomPool {
            block: [0; 256],
            used: 256,
        }
    }

    /// Fills `out` (at most 256 bytes) with fresh random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        debug_assert!(out.len() <= self.block.len());
        if self.used + out.len() > self.block.len() {
            // The OS CSPRNG does not fail on Linux once booted; if it ever did, ids would not
            // be unguessable, so refuse to continue.
            if let Err(error) = getrandom::getrandom(&mut self.block) {
                panic!("the OS random number generator failed: {error}");
            }
            self.used = 0;
        }
        out.copy_from_slice(&self.block[self.used..self.used + out.len()]);
        // Never hand out the same bytes twice.
        self.block[self.used..self.used + out.len()].fill(0);
        self.used += out.len();
    }

    /// A random u64 (for nonces and masks).
    pub fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }
}

impl Default for RandomPool {
    fn default() -> Self {
        RandomPool::new()
    }
}

const _: () = assert!(RANDOM_LEN == RAW_LEN - 5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_as_long_as_nodes_and_cut_the_slot_to_24_bits() {
        let mut pool = RandomPool::new();
        let id = Id::generate(ShardId::new(3), MAX_SLOTS as u32 + 5, &mut pool);
        assert_eq!(id.as_str().len(), 20);
        assert_eq!((id.shard(), id.key()), (ShardId::new(3), 5));
    }

    #[test]
    fn ids_round_trip_shard_and_key() {
        let mut pool = RandomPool::new();
        let last = MAX_SLOTS as u32 - 1;
        for (shard, key) in [(0, 0), (1, 7), (15, 123_456), (u16::MAX, last)] {
            let id = Id::generate(ShardId::new(shard), key, &mut pool);
            assert_eq!(id.as_str().len(), ID_LEN);
            let parsed = Id::parse(id.as_str()).unwrap();
            assert_eq!(parsed, id);
            assert_eq!((parsed.shard().get(), parsed.key()), (shard, key));
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut pool = RandomPool::new();
        let a = Id::generate(ShardId::new(0), 0, &mut pool);
        let b = Id::generate(ShardId::new(0), 0, &mut pool);
        assert_ne!(a, b);
    }

    #[test]
    fn garbage_is_refused() {
        for text in [
            "",
            "abc",
            "!!!!!!!!!!!!!!!!!!!!!!!!",
            "AAAAAAAAAAAAAAAAAAAAAAAAA",
            "é",
        ] {
            assert!(Id::parse(text).is_none(), "{text}");
        }
    }
}
