//! One shard's room index for one namespace: room -> members. (Member -> rooms is kept on
//! the socket itself, so leaving everything on disconnect is proportional to its own rooms.)
//!
//! Pure data: no I/O, no Socket.IO types beyond an opaque member key.

use std::collections::{HashMap, HashSet};

/// A member of rooms: a socket's slab key on this shard.
pub type MemberKey = u32;

/// Room membership for one namespace on one shard.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<Box<str>, HashSet<MemberKey>>,
    /// Scratch set reused to de-duplicate members across several rooms.
    seen: HashSet<MemberKey>,
}

impl Rooms {
    /// Adds `member` to `room`; true if it was not there yet.
    pub fn join(&mut self, room: &str, member: MemberKey) -> bool {
        match self.rooms.get_mut(room) {
            Some(members) => members.insert(member),
            None => {
                self.rooms.insert(room.into(), HashSet::from([member]));
                true
            }
        }
    }

    /// Removes `member` from `room`; an emptied room is dropped. True if it was there.
    pub fn leave(&mut self, room: &str, member: MemberKey) -> bool {
        let Some(members) = self.rooms.get_mut(room) else {
            return false;
        };
        let removed = members.remove(&member);
        if members.is_empty() {
            self.rooms.remove(room);
        }
        removed
    }

    /// Members of one room.
    pub fn members(&self, room: &str) -> impl Iterator<Item = MemberKey> + '_ {
        self.rooms.get(room).into_iter().flatten().copied()
    }

    /// Whether `member` is in `room`.
    pub fn contains(&self, room: &str, member: MemberKey) -> bool {
        self.rooms.get(room).is_some_and(|m| m.contains(&member))
    }

    /// Number of non-empty rooms.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether no room has members.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Calls `visit` once for every member of any of `rooms` (or of `all` when `rooms` is
    /// empty) that is in none of `except`.
    pub fn for_each_target(
        &mut self,
        rooms: &[impl AsRef<str>],
        except: &[impl AsRef<str>],
        all: impl Iterator<Item = MemberKey>,
        mut visit: impl FnMut(MemberKey),
    ) {
        let excluded = |index: &HashMap<Box<str>, HashSet<MemberKey>>, member: MemberKey| -> bool {
            except
                .iter()
                .any(|r| index.get(r.as_ref()).is_some_and(|m| m.contains(&member)))
        };
        if rooms.is_empty() {
            for member in all {
                if !excluded(&self.rooms, member) {
                    visit(member);
                }
            }
            return;
        }
        if let [room] = rooms {
            for &member in self.rooms.get(room.as_ref()).into_iter().flatten() {
                if !excluded(&self.rooms, member) {
                    visit(member);
                }
            }
            return;
        }
        self.seen.clear();
        for room in rooms {
            for &member in self.rooms.get(room.as_ref()).into_iter().flatten() {
                if self.seen.insert(member) && !excluded(&self.rooms, member) {
                    visit(member);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(rooms: &mut Rooms, to: &[&str], except: &[&str], all: &[MemberKey]) -> Vec<u32> {
        let mut out = Vec::new();
        rooms.for_each_target(to, except, all.iter().copied(), |m| out.push(m));
        out.sort();
        out
    }

    #[test]
    fn join_leave_and_targets() {
        let mut rooms = Rooms::default();
        assert!(rooms.join("a", 1));
        assert!(!rooms.join("a", 1));
        rooms.join("a", 2);
        rooms.join("b", 2);
        rooms.join("b", 3);
        rooms.join("x", 3);
        assert_eq!(targets(&mut rooms, &["a"], &[], &[]), [1, 2]);
        assert_eq!(targets(&mut rooms, &["a", "b"], &[], &[]), [1, 2, 3]);
        assert_eq!(targets(&mut rooms, &["a", "b"], &["x"], &[]), [1, 2]);
        assert_eq!(
            targets(&mut rooms, &[] as &[&str], &["b"], &[1, 2, 3, 4]),
            [1, 4]
        );
        assert!(rooms.leave("a", 1));
        assert!(rooms.leave("a", 2));
        assert!(!rooms.contains("a", 2));
        assert_eq!(rooms.len(), 2);
    }

    #[test]
    fn ten_thousand_members() {
        let mut rooms = Rooms::default();
        for m in 0..10_000 {
            rooms.join("big", m);
        }
        assert_eq!(targets(&mut rooms, &["big"], &[], &[]).len(), 10_000);
        for m in 0..10_000 {
            rooms.leave("big", m);
        }
        assert!(rooms.is_empty());
    }
}
