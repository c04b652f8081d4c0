//! Deadlines in a min-heap with lazy deletion: the one timer structure of the engine and of
//! the Socket.IO layer.
//!
//! An entry is never looked up to be removed when it stops mattering (a session's deadline
//! moved, an ack answered): the owner keeps its own record of what is live and says so through
//! an `is_live(at, key)` closure whenever the heap needs to know. Dead entries are dropped when
//! they reach the top, and all at once when churn has grown the heap past twice the live ones
//! plus `SWEEP_SLACK`, so a heap stays bounded by what is live.
//!
//! Pure: instants come in as arguments (never the clock), no I/O, nothing from the rest of the
//! crate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// How many entries beyond twice the live ones a heap may hold before
/// [`DeadlineHeap::sweep_if_grown`] drops its dead ones.
pub const SWEEP_SLACK: usize = 1024;

/// Deadlines, each with a key that tells its owner what it is for; earliest first, and among
/// equal instants the smallest key first.
#[derive(Debug, Clone)]
pub struct DeadlineHeap<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Copy> Default for DeadlineHeap<K> {
    fn default() -> Self {
        DeadlineHeap::new()
    }
}

impl<K: Ord + Copy> DeadlineHeap<K> {
    /// An empty heap (no allocation until the first push).
    pub fn new() -> DeadlineHeap<K> {
        DeadlineHeap {
            heap: BinaryHeap::new(),
        }
    }

    /// Adds a deadline. An entry it replaces stays until it is dropped as dead, so follow a run
    /// of pushes with [`DeadlineHeap::sweep_if_grown`].
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The churn sweep: when the heap holds more than `2 × live + SWEEP_SLACK` entries, drops
    /// every entry `is_live` rejects. `live` is how many entries the owner may have live (its
    /// sessions, its pending acks...). Returns how many were dropped.
    pub fn sweep_if_grown(
        &mut self,
        live: usize,
        mut is_live: impl FnMut(Instant, K) -> bool,
    ) -> usize {
        if self.heap.len() <= live.saturating_mul(2).saturating_add(SWEEP_SLACK) {
            return 0;
        }
        let before = self.heap.len();
        self.heap.retain(|&Reverse((at, key))| is_live(at, key));
        before - self.heap.len()
    }

    /// The earliest live deadline; dead entries in front of it are dropped on the way.
    pub fn next_deadline(
        &mut self,
        mut is_live: impl FnMut(Instant, K) -> bool,
    ) -> Option<Instant> {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if is_live(at, key) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the earliest live entry due by `now` (at or before it), dropping the dead ones
    /// due before it. Call it until `None` to fire everything due; the heap is free between
    /// calls, so a caller may run code that pushes more.
    pub fn pop_due(
        &mut self,
        now: Instant,
        mut is_live: impl FnMut(Instant, K) -> bool,
    ) -> Option<(Instant, K)> {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if is_live(at, key) {
                return Some((at, key));
            }
        }
        None
    }

    /// Entries `is_live` accepts (a walk over the whole heap: for stats, not the hot path).
    pub fn live_count(&self, mut is_live: impl FnMut(Instant, K) -> bool) -> usize {
        self.heap
            .iter()
            .filter(|&&Reverse((at, key))| is_live(at, key))
            .count()
    }
}

/// For the tests of this heap and of its owners.
#[cfg(test)]
impl<K: Ord + Copy> DeadlineHeap<K> {
    /// Entries held, dead ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entry is held, live or dead.
    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(start: Instant, n: u64) -> Instant {
        start + Duration::from_millis(n)
    }

    #[test]
    fn due_entries_come_out_earliest_first_and_nothing_early() {
        let start = Instant::now();
        let mut heap = DeadlineHeap::new();
        for (at, key) in [(30, 'c'), (10, 'a'), (20, 'b'), (10, 'A')] {
            heap.push(ms(start, at), key);
        }
        assert_eq!(heap.next_deadline(|_, _| true), Some(ms(start, 10)));
        let mut fired = Vec::new();
        while let Some((_, key)) = heap.pop_due(ms(start, 20), |_, _| true) {
            fired.push(key);
        }
        assert_eq!(fired, ['A', 'a', 'b'], "equal instants: smallest key first");
        assert_eq!(heap.len(), 1);
        assert_eq!(heap.pop_due(ms(start, 29), |_, _| true), None);
        assert_eq!(
            heap.pop_due(ms(start, 30), |_, _| true),
            Some((ms(start, 30), 'c'))
        );
    }

    #[test]
    fn dead_entries_are_skipped_and_dropped_in_front_only() {
        let start = Instant::now();
        let mut heap = DeadlineHeap::new();
        // Key = (id, generation); only generation 1 of id 7 is live.
        heap.push(ms(start, 10), (7, 0));
        heap.push(ms(start, 20), (7, 1));
        heap.push(ms(start, 30), (8, 0));
        let live = |_: Instant, (id, generation): (u32, u32)| (id, generation) == (7, 1);
        assert_eq!(heap.next_deadline(live), Some(ms(start, 20)));
        assert_eq!(heap.len(), 2, "the dead entry in front is gone");
        assert_eq!(heap.live_count(live), 1);
        assert_eq!(
            heap.pop_due(ms(start, 40), live),
            Some((ms(start, 20), (7, 1)))
        );
        assert_eq!(
            heap.pop_due(ms(start, 40), live),
            None,
            "dead (8, 0) dropped"
        );
        assert!(heap.is_empty());
        assert_eq!(heap.next_deadline(live), None);
    }

    #[test]
    fn the_liveness_test_sees_the_instant() {
        let start = Instant::now();
        let mut heap = DeadlineHeap::new();
        heap.push(ms(start, 10), 1);
        heap.push(ms(start, 20), 1);
        // Live only if it is the owner's current deadline, as socketio's connect timers are.
        let current = ms(start, 20);
        assert_eq!(heap.next_deadline(|at, _| at == current), Some(current));
    }

    #[test]
    fn churn_is_swept_past_twice_the_live_entries_plus_slack() {
        let start = Instant::now();
        let mut heap = DeadlineHeap::new();
        // One live key whose deadline moves on every step, as a session's heartbeat does.
        let mut generation = 0u32;
        for n in 0..10_000u64 {
            generation += 1;
            heap.push(ms(start, n), generation);
            let current = generation;
            heap.sweep_if_grown(1, |_, g| g == current);
            assert!(heap.len() <= 2 + SWEEP_SLACK, "{} entries", heap.len());
        }
        assert_eq!(heap.live_count(|_, g| g == generation), 1);
        // Under the bound nothing is swept, dead or not.
        let mut small = DeadlineHeap::new();
        small.push(start, 1);
        assert_eq!(small.sweep_if_grown(0, |_, _| false), 0);
        assert_eq!(small.len(), 1);
    }
}
