//! One scatter-gather table: a request sent to several responders (shards today, nodes
//! later), the answers merged as they come, the request finished once every responder has
//! answered or its deadline has passed, whichever comes first.
//!
//! Broadcast acks, the server-wide socket operations and the stats endpoint all use it, each
//! with its own reply type. Pure bookkeeping: no I/O, no clock (time comes in as `now`), no
//! runtime. It never runs a caller's completion itself: finished requests are handed back, so
//! the caller runs them with no borrow of its own state held.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// A request's id, unique within the table that issued it (and so, with the issuer's
/// address, across shards and nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What a request does with its answers.
pub trait Collector<R> {
    /// Merges one answer; returns how many more answers this one announced (a shard that
    /// reports "3 recipients" announces 3 acks to come).
    fn add(&mut self, reply: R) -> usize;
    /// Ends the request: `complete` is false when the deadline passed first.
    fn finish(self: Box<Self>, complete: bool);
}

/// A finished request, for the caller to complete once it holds no borrow.
pub struct Finished<R> {
    collector: Box<dyn Collector<R>>,
    complete: bool,
}

impl<R> Finished<R> {
    /// Runs the request's completion.
    pub fn run(self) {
        self.collector.finish(self.complete);
    }
}

struct Pending<R> {
    /// Answers still expected.
    awaiting: usize,
    deadline: Instant,
    collector: Box<dyn Collector<R>>,
}

/// Requests in flight, by id, with their deadlines.
pub struct Gather<R> {
    next: u64,
    pending: HashMap<RequestId, Pending<R>>,
    /// Deadlines of the requests in `pending`, removed with them (no stale entries).
    deadlines: BTreeSet<(Instant, RequestId)>,
}

impl<R> Default for Gather<R> {
    fn default() -> Self {
        Gather {
            next: 0,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
        }
    }
}

impl<R> Gather<R> {
    /// Registers a request that waits for `awaiting` answers until `deadline`. A request that
    /// waits for none is finished at once (returned with its id).
    pub fn start(
        &mut self,
        awaiting: usize,
        deadline: Instant,
        collector: Box<dyn Collector<R>>,
    ) -> (RequestId, Option<Finished<R>>) {
        let id = RequestId(self.next);
        // Ids stay below 2^53 so that they survive a trip through JSON.
        self.next = (self.next + 1) % (1 << 53);
        if awaiting == 0 {
            let finished = Finished {
                collector,
                complete: true,
            };
            return (id, Some(finished));
        }
        self.pending.insert(
            id,
            Pending {
                awaiting,
                deadline,
                collector,
            },
        );
        self.deadlines.insert((deadline, id));
        (id, None)
    }

    /// Merges one answer; returns the request if that was the last one it waited for. An
    /// answer for a request that is gone (finished, timed out) is dropped.
    pub fn answer(&mut self, id: RequestId, reply: R) -> Option<Finished<R>> {
        let pending = self.pending.get_mut(&id)?;
        let announced = pending.collector.add(reply);
        pending.awaiting = (pending.awaiting - 1).saturating_add(announced);
        if pending.awaiting > 0 {
            return None;
        }
        self.remove(id, true)
    }

    /// The earliest deadline of a request in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// Takes every request whose deadline is at or before `now`, incomplete.
    pub fn expire(&mut self, now: Instant) -> Vec<Finished<R>> {
        let mut expired = Vec::new();
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            expired.extend(self.remove(id, false));
        }
        expired
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    fn remove(&mut self, id: RequestId, complete: bool) -> Option<Finished<R>> {
        let pending = self.pending.remove(&id)?;
        self.deadlines.remove(&(pending.deadline, id));
        Some(Finished {
            collector: pending.collector,
            complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;

    impl<R> Gather<R> {
        fn is_empty(&self) -> bool {
            self.pending.is_empty()
        }
    }

    /// Where a test's request reports (total, complete).
    type Outcome = Rc<RefCell<Option<(i64, bool)>>>;

    /// Sums numbers; a negative one announces that many more answers.
    struct Sum {
        total: i64,
        done: Outcome,
    }

    impl Collector<i64> for Sum {
        fn add(&mut self, reply: i64) -> usize {
            if reply < 0 {
                return reply.unsigned_abs() as usize;
            }
            self.total += reply;
            0
        }

        fn finish(self: Box<Self>, complete: bool) {
            *self.done.borrow_mut() = Some((self.total, complete));
        }
    }

    fn sum() -> (Box<Sum>, Outcome) {
        let done = Rc::new(RefCell::new(None));
        let collector = Box::new(Sum {
            total: 0,
            done: done.clone(),
        });
        (collector, done)
    }

    #[test]
    fn finishes_when_every_answer_is_in() {
        let now = Instant::now();
        let mut gather = Gather::default();
        let (collector, done) = sum();
        let (id, finished) = gather.start(2, now + Duration::from_secs(1), collector);
        assert!(finished.is_none());
        assert!(gather.answer(id, 3).is_none());
        gather.answer(id, 4).expect("last answer").run();
        assert_eq!(*done.borrow(), Some((7, true)));
        assert!(gather.is_empty());
        assert_eq!(gather.next_deadline(), None);
        // A late answer is dropped.
        assert!(gather.answer(id, 1).is_none());
    }

    #[test]
    fn answers_can_announce_more_answers() {
        let now = Instant::now();
        let mut gather = Gather::default();
        let (collector, done) = sum();
        let (id, _) = gather.start(1, now + Duration::from_secs(1), collector);
        // The one responder announces two more answers, as a shard reporting its recipients.
        assert!(gather.answer(id, -2).is_none());
        assert!(gather.answer(id, 1).is_none());
        gather.answer(id, 1).expect("complete").run();
        assert_eq!(*done.borrow(), Some((2, true)));
    }

    #[test]
    fn an_announcement_of_none_completes_at_once() {
        let now = Instant::now();
        let mut gather = Gather::default();
        let (collector, done) = sum();
        let (id, _) = gather.start(1, now + Duration::from_secs(1), collector);
        gather.answer(id, 0).expect("complete").run();
        assert_eq!(*done.borrow(), Some((0, true)));
    }

    #[test]
    fn a_request_waiting_for_nobody_finishes_at_start() {
        let mut gather = Gather::<i64>::default();
        let (collector, done) = sum();
        let (_, finished) = gather.start(0, Instant::now(), collector);
        finished.expect("finished").run();
        assert_eq!(*done.borrow(), Some((0, true)));
        assert!(gather.is_empty());
    }

    #[test]
    fn the_deadline_finishes_with_what_came() {
        let now = Instant::now();
        let mut gather = Gather::default();
        let (early, early_done) = sum();
        let (late, late_done) = sum();
        let (first, _) = gather.start(3, now + Duration::from_millis(10), early);
        let (_, _) = gather.start(3, now + Duration::from_millis(20), late);
        assert!(gather.answer(first, 5).is_none());
        assert_eq!(
            gather.next_deadline(),
            Some(now + Duration::from_millis(10))
        );
        assert!(gather.expire(now).is_empty());
        let expired = gather.expire(now + Duration::from_millis(15));
        assert_eq!(expired.len(), 1);
        expired.into_iter().for_each(Finished::run);
        assert_eq!(*early_done.borrow(), Some((5, false)));
        assert!(late_done.borrow().is_none());
        assert_eq!(gather.len(), 1);
        gather
            .expire(now + Duration::from_secs(1))
            .into_iter()
            .for_each(Finished::run);
        assert_eq!(*late_done.borrow(), Some((0, false)));
    }
}
