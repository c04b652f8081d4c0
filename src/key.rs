//! The one generational key scheme: a [`Key`] is a slab slot plus the generation of the entry
//! that held it when the key was made, and [`Slots`] is the slab that checks it. A key kept past
//! its entry's life (by a finished task, a socket handle, a stale deadline) never reaches the
//! entry that reuses the slot. Engine sessions and WebSocket links and Socket.IO sockets are
//! kept this way, each behind its own newtype so that one kind of key can't stand for another.
//!
//! Also the shard index ([`ShardId`]), so that it is never just one more `u16`.
//!
//! Pure data: nothing of the crate, no I/O.

use std::fmt;

use serde::Serialize;
use slab::Slab;

/// One shard of this process, by its index (`0..cores`): named in session and socket ids, the
/// bus's address of the shard, and where answers go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ShardId(u16);

impl ShardId {
    /// The shard with this index.
    pub const fn new(index: u16) -> ShardId {
        ShardId(index)
    }

    /// The index, as the bus and per-shard tables take it.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The index as the ids carry it.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A slot and the generation of the entry it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    index: u32,
    generation: u32,
}

impl Key {
    /// The slot (dense and reused: fit to index a side table).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// A slab whose entries are reached by [`Key`]s, checked against the entry's generation.
#[derive(Debug)]
pub struct Slots<T> {
    slab: Slab<(u32, T)>,
    /// The generation the next entry gets: a slot's next occupant never shares its
    /// predecessor's (until 2^32 entries later).
    next_generation: u32,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slab: Slab::new(),
            next_generation: 0,
        }
    }
}

impl<T> Slots<T> {
    /// The key the next [`Slots::insert`] returns.
    pub fn vacant_key(&self) -> Key {
        Key {
            index: self.slab.vacant_key() as u32,
            generation: self.next_generation,
        }
    }

    /// Stores `value`; its key.
    pub fn insert(&mut self, value: T) -> Key {
        let key = self.vacant_key();
        self.slab.insert((key.generation, value));
        self.next_generation = self.next_generation.wrapping_add(1);
        key
    }

    /// The entry `key` names, if it is still there.
    pub fn get(&self, key: Key) -> Option<&T> {
        match self.slab.get(key.index()) {
            Some((generation, value)) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The entry `key` names, if it is still there.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slab.get_mut(key.index()) {
            Some((generation, value)) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The entry in slot `index` and its key, whoever holds it (for ids that carry only the
    /// slot and check the entry themselves).
    pub fn get_by_index(&self, index: usize) -> Option<(Key, &T)> {
        let (generation, value) = self.slab.get(index)?;
        let key = Key {
            index: index as u32,
            generation: *generation,
        };
        Some((key, value))
    }

    /// Whether `key` names an entry still there.
    pub fn contains(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    /// Takes out the entry `key` names, if it is still there.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        self.get(key)?;
        self.slab.try_remove(key.index()).map(|(_, value)| value)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every entry with its key.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slab.iter().map(|(index, (generation, value))| {
            let key = Key {
                index: index as u32,
                generation: *generation,
            };
            (key, value)
        })
    }

    /// Gives back the slots' memory once empty (generations keep counting, so keys made before
    /// still name nothing).
    pub fn release_if_empty(&mut self) -> bool {
        if !self.slab.is_empty() {
            return false;
        }
        self.slab = Slab::new();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_does_not_answer_to_an_old_key() {
        let mut slots = Slots::default();
        let first = slots.insert("first");
        assert_eq!(slots.vacant_key().index(), 1);
        assert_eq!(slots.get(first), Some(&"first"));
        assert_eq!(slots.remove(first), Some("first"));
        assert_eq!(slots.remove(first), None);
        let second = slots.insert("second");
        assert_eq!(second.index(), first.index());
        assert_ne!(second, first);
        assert_eq!(slots.get(first), None);
        assert_eq!(slots.get_mut(first), None);
        assert!(!slots.contains(first));
        assert_eq!(slots.remove(first), None);
        assert_eq!(slots.get(second), Some(&"second"));
        assert_eq!(
            slots.get_by_index(second.index()),
            Some((second, &"second"))
        );
        assert_eq!(slots.iter().collect::<Vec<_>>(), [(second, &"second")]);
        assert_eq!(slots.len(), 1);
    }

    #[test]
    fn released_slots_still_refuse_old_keys() {
        let mut slots = Slots::default();
        let old = slots.insert(1);
        assert!(!slots.release_if_empty());
        slots.remove(old);
        assert!(slots.release_if_empty());
        let new = slots.insert(2);
        assert_eq!(new.index(), old.index());
        assert_eq!(slots.get(old), None);
        assert!(slots.is_empty() || slots.get(new) == Some(&2));
    }
}
