//! One shard's room index for one namespace: room -> members. (Member -> rooms is kept on
//! the socket itself, so leaving everything on disconnect is proportional to its own rooms.)
//!
//! Pure data: no I/O, no Socket.IO types; generic over the member key (the Socket.IO layer's
//! socket key).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;

/// Room membership for one namespace on one shard, by member key `M`.
#[derive(Debug)]
pub struct Rooms<M = u32> {
    /// Names are shared (`Arc`), so that the sockets' own lists of their rooms and the room
    /// named by a socket's id cost no copy of the name.
    rooms: HashMap<Arc<str>, Members<M>>,
    /// Scratch set reused to de-duplicate members across several rooms.
    seen: HashSet<M>,
}

impl<M> Default for Rooms<M> {
    fn default() -> Self {
        Rooms {
            rooms: HashMap::new(),
            seen: HashSet::new(),
        }
    }
}

/// The members of one room. Every socket is alone in the room named by its id, so one member
/// is the common case and needs no set of its own.
#[derive(Debug)]
enum Members<M> {
    One(M),
    /// Boxed so that every entry of the index is two words, not a whole set's worth: most
    /// entries are `One`. Never empty.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<M>>),
}

impl<M: Copy + Eq + Hash> Members<M> {
    /// Adds `member`; true if it was not there yet.
    fn insert(&mut self, member: M) -> bool {
        match self {
            Members::One(one) if *one == member => false,
            Members::One(one) => {
                *self = Members::Many(Box::new(HashSet::from([*one, member])));
                true
            }
            Members::Many(set) => set.insert(member),
        }
    }

    /// Removes `member`: (whether it was there, whether the room is now empty).
    fn remove(&mut self, member: M) -> (bool, bool) {
        match self {
            Members::One(one) => (*one == member, *one == member),
            Members::Many(set) => (set.remove(&member), set.is_empty()),
        }
    }

    fn contains(&self, member: M) -> bool {
        match self {
            Members::One(one) => *one == member,
            Members::Many(set) => set.contains(&member),
        }
    }

    fn iter(&self) -> impl Iterator<Item = M> + '_ {
        let (one, many) = match self {
            Members::One(one) => (Some(*one), None),
            Members::Many(set) => (None, Some(set.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Calls `visit` for every member (no iterator adapters on the broadcast path).
    fn for_each(&self, mut visit: impl FnMut(M)) {
        match self {
            Members::One(one) => visit(*one),
            Members::Many(set) => set.iter().for_each(|&member| visit(member)),
        }
    }
}

impl<M: Copy + Eq + Hash> Rooms<M> {
    /// The names of the rooms that have members.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.rooms.keys().map(|name| &**name)
    }

    /// Adds `member` to `room`; true if it was not there yet.
    pub fn join(&mut self, room: &str, member: M) -> bool {
        match self.rooms.get_mut(room) {
            Some(members) => members.insert(member),
            None => {
                self.rooms.insert(room.into(), Members::One(member));
                true
            }
        }
    }

    /// Adds `member` to `room`, for a caller that keeps the room's name as well: returns the
    /// name as the index holds it, to share rather than copy, or `None` if `member` was there
    /// already. A new room takes `room` itself as its name, so an `Arc<str>` the caller holds
    /// already (a socket's id) is not copied either.
    pub fn join_shared(
        &mut self,
        room: impl AsRef<str> + Into<Arc<str>>,
        member: M,
    ) -> Option<Arc<str>> {
        if let Some(members) = self.rooms.get_mut(room.as_ref()) {
            if !members.insert(member) {
                return None;
            }
            return self
                .rooms
                .get_key_value(room.as_ref())
                .map(|(name, _)| name.clone());
        }
        let name: Arc<str> = room.into();
        self.rooms.insert(name.clone(), Members::One(member));
        Some(name)
    }

    /// Removes `member` from `room`; an emptied room is dropped. True if it was there.
    pub fn leave(&mut self, room: &str, member: M) -> bool {
        let Some(members) = self.rooms.get_mut(room) else {
            return false;
        };
        let (removed, empty) = members.remove(member);
        if empty {
            self.rooms.remove(room);
        }
        removed
    }

    /// Members of one room.
    pub fn members(&self, room: &str) -> impl Iterator<Item = M> + '_ {
        self.rooms.get(room).into_iter().flat_map(Members::iter)
    }

    /// Whether `member` is in `room`.
    pub fn contains(&self, room: &str, member: M) -> bool {
        self.rooms.get(room).is_some_and(|m| m.contains(member))
    }

    /// Number of non-empty rooms.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Whether no room has members.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Gives back the capacity of the index when it is empty (it keeps its peak otherwise).
    pub fn shrink_if_empty(&mut self) {
        if self.rooms.is_empty() {
            self.rooms = HashMap::new();
            self.seen = HashSet::new();
        }
    }

    /// Calls `visit` once for every member of any of `rooms` (or of `all` when `rooms` is
    /// empty) that is in none of `except`.
    pub fn for_each_target(
        &mut self,
        rooms: &[impl AsRef<str>],
        except: &[impl AsRef<str>],
        all: impl Iterator<Item = M>,
        mut visit: impl FnMut(M),
    ) {
        let excluded = |index: &HashMap<Arc<str>, Members<M>>, member: M| -> bool {
            except
                .iter()
                .any(|r| index.get(r.as_ref()).is_some_and(|m| m.contains(member)))
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
            if let Some(members) = self.rooms.get(room.as_ref()) {
                members.for_each(|member| {
                    if !excluded(&self.rooms, member) {
                        visit(member);
                    }
                });
            }
            return;
        }
        self.seen.clear();
        for room in rooms {
            if let Some(members) = self.rooms.get(room.as_ref()) {
                members.for_each(|member| {
                    if self.seen.insert(member) && !excluded(&self.rooms, member) {
                        visit(member);
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(rooms: &mut Rooms, to: &[&str], except: &[&str], all: &[u32]) -> Vec<u32> {
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
    fn a_room_grows_from_one_member_and_back() {
        let mut rooms = Rooms::default();
        let id: Arc<str> = Arc::from("socket-id");
        let name = rooms.join_shared(id.clone(), 7).expect("new room");
        assert!(
            Arc::ptr_eq(&name, &id),
            "the caller's name is the index's key"
        );
        assert_eq!(rooms.join_shared("socket-id", 7), None, "already a member");
        assert!(rooms.contains("socket-id", 7));
        assert!(!rooms.contains("socket-id", 8));
        let again = rooms.join_shared("socket-id", 8).expect("second member");
        assert!(
            Arc::ptr_eq(&again, &id),
            "an existing room's name is shared"
        );
        assert_eq!(targets(&mut rooms, &["socket-id"], &[], &[]), [7, 8]);
        let mut members: Vec<_> = rooms.members("socket-id").collect();
        members.sort();
        assert_eq!(members, [7, 8]);
        assert!(!rooms.leave("socket-id", 9));
        assert!(rooms.leave("socket-id", 7));
        assert_eq!(rooms.members("socket-id").collect::<Vec<_>>(), [8]);
        assert!(rooms.leave("socket-id", 8));
        assert!(rooms.is_empty());
        assert!(!rooms.leave("socket-id", 8));
        // A lone member leaving drops the room; another member is not removed by mistake.
        rooms.join("solo", 1);
        assert!(!rooms.leave("solo", 2));
        assert!(rooms.contains("solo", 1));
        assert!(rooms.leave("solo", 1));
        assert!(rooms.is_empty());
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
