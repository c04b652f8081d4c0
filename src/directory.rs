//! Which shards of this process have members of which rooms: a map every shard of one server
//! shares, set and cleared by the shard whose room gains its first member or loses its last,
//! so a broadcast to rooms goes only to the shards that have members of them (issue 15: no
//! bus hop, no wake-up and no lookup on a shard with nobody to deliver to).
//!
//! Rooms are spread over buckets by name, each behind its own lock (held for one lookup or
//! one change, never across anything else), so shards that broadcast to different rooms do
//! not contend. A socket's own id room is never listed: a room the directory does not know
//! may be a socket id, and goes to every shard. Pure data: no I/O, nothing of the crate.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{PoisonError, RwLock};

/// Buckets of the map: enough that shards rarely meet on one.
const BUCKETS: usize = 64;

/// The most shards a directory tracks (one bit each).
pub(crate) const MAX_SHARDS: usize = 64;

/// Rooms by namespace, each with its shards' bits.
type Namespaces = HashMap<Box<str>, HashMap<Box<str>, u64>>;

/// One bucket on a cache line of its own: shards writing different buckets do not share one.
#[repr(align(64))]
#[derive(Default)]
struct Bucket(RwLock<Namespaces>);

/// Rooms with members, by namespace, and the shards that have them (a bit per shard).
pub struct RoomDirectory {
    buckets: Box<[Bucket]>,
}

impl RoomDirectory {
    /// A directory for up to [`MAX_SHARDS`] shards.
    pub(crate) fn new() -> RoomDirectory {
        RoomDirectory {
            buckets: (0..BUCKETS).map(|_| Bucket::default()).collect(),
        }
    }

    fn bucket(&self, room: &str) -> &RwLock<Namespaces> {
        let mut hasher = DefaultHasher::new();
        room.hash(&mut hasher);
        &self.buckets[(hasher.finish() as usize) % BUCKETS].0
    }

    /// Shard `shard` now has members of `room` in `nsp` (`present`), or no longer any.
    pub(crate) fn set(&self, nsp: &str, room: &str, shard: usize, present: bool) {
        debug_assert!(shard < MAX_SHARDS);
        let bit = 1u64 << shard;
        let mut map = self
            .bucket(room)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if present {
            let rooms = match map.get_mut(nsp) {
                Some(rooms) => rooms,
                None => map.entry(nsp.into()).or_default(),
            };
            match rooms.get_mut(room) {
                Some(mask) => *mask |= bit,
                None => {
                    rooms.insert(room.into(), bit);
                }
            }
            return;
        }
        let Some(rooms) = map.get_mut(nsp) else {
            return;
        };
        if let Some(mask) = rooms.get_mut(room) {
            *mask &= !bit;
            if *mask == 0 {
                rooms.remove(room);
                if rooms.is_empty() {
                    map.remove(nsp);
                }
            }
        }
    }

    /// The shards with members of any of `rooms` in `nsp`, a bit each; `None` when one of
    /// them is not listed (it may be a socket's id): then every shard must be asked.
    pub(crate) fn shards_of(&self, nsp: &str, rooms: &[Box<str>]) -> Option<u64> {
        let mut shards = 0;
        for room in rooms {
            let map = self
                .bucket(room)
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            shards |= *map.get(nsp)?.get(&**room)?;
        }
        Some(shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms(names: &[&str]) -> Vec<Box<str>> {
        names.iter().map(|n| (*n).into()).collect()
    }

    #[test]
    fn a_room_names_the_shards_with_members_until_they_leave() {
        let directory = RoomDirectory::new();
        directory.set("/", "red", 1, true);
        directory.set("/", "red", 3, true);
        directory.set("/", "blue", 0, true);
        directory.set("/chat", "red", 2, true);
        assert_eq!(directory.shards_of("/", &rooms(&["red"])), Some(0b1010));
        assert_eq!(
            directory.shards_of("/", &rooms(&["red", "blue"])),
            Some(0b1011)
        );
        assert_eq!(directory.shards_of("/chat", &rooms(&["red"])), Some(0b100));
        // A room nobody listed may be a socket id: every shard.
        assert_eq!(
            directory.shards_of("/", &rooms(&["red", "Ft_GaezX2"])),
            None
        );
        directory.set("/", "red", 1, false);
        assert_eq!(directory.shards_of("/", &rooms(&["red"])), Some(0b1000));
        directory.set("/", "red", 3, false);
        assert_eq!(directory.shards_of("/", &rooms(&["red"])), None);
        // Clearing what is not there changes nothing.
        directory.set("/", "red", 3, false);
        directory.set("/none", "red", 3, false);
        assert_eq!(directory.shards_of("/", &rooms(&["blue"])), Some(0b1));
        assert_eq!(directory.shards_of("/", &[]), Some(0));
    }
}
