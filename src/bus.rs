//! The only thing shards share: a full mesh of bounded lock-free rings, one per (sender,
//! receiver) pair, with a wake-up for the receiving runtime.
//!
//! Generic over the message type and ignorant of Socket.IO. One ring per pair keeps each
//! sender's messages in order at every receiver (FIFO per pair), which is what makes a sender's
//! broadcasts arrive in order on every shard. A full ring never blocks the sender's event loop:
//! the message waits in a local overflow queue, in order, and is retried on the next send or
//! drain. Only the wake-up touches the runtime (through a `Waker`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use crossbeam_queue::ArrayQueue;
use futures_util::task::AtomicWaker;

/// Builds the mesh and hands out one [`Endpoint`] per shard.
pub fn mesh<T: Send>(shards: usize, capacity: usize) -> Vec<Endpoint<T>> {
    let inboxes: Vec<Inbox<T>> = (0..shards)
        .map(|_| Inbox {
            rings: (0..shards)
                .map(|_| ArrayQueue::new(capacity.max(1)))
                .collect(),
            waker: AtomicWaker::new(),
            notified: AtomicBool::new(false),
        })
        .collect();
    let inboxes = Arc::new(inboxes);
    (0..shards)
        .map(|me| Endpoint {
            me,
            inboxes: inboxes.clone(),
            overflow: RefCell::new((0..shards).map(|_| VecDeque::new()).collect()),
        })
        .collect()
}

/// Everything addressed to one shard: a ring per sender and the receiver's waker.
struct Inbox<T> {
    /// INVARIANT: `rings[s]` is only pushed by shard `s` and only popped by the owner.
    rings: Vec<ArrayQueue<T>>,
    waker: AtomicWaker,
    notified: AtomicBool,
}

/// One shard's end of the mesh. `Send` so it can move into the shard's thread; used from that
/// thread only.
pub struct Endpoint<T> {
    me: usize,
    inboxes: Arc<Vec<Inbox<T>>>,
    overflow: RefCell<Vec<VecDeque<T>>>,
}

impl<T: Send> Endpoint<T> {
    /// This endpoint's shard index.
    pub fn shard(&self) -> usize {
        self.me
    }

    /// Number of shards in the mesh.
    pub fn shards(&self) -> usize {
        self.inboxes.len()
    }

    /// Queues `msg` for shard `to` (never blocks; order per destination is kept).
    pub fn send(&self, to: usize, msg: T) {
        let Some(inbox) = self.inboxes.get(to) else {
            return;
        };
        let mut overflow = self.overflow.borrow_mut();
        let backlog = &mut overflow[to];
        if backlog.is_empty() {
            if let Err(msg) = inbox.rings[self.me].push(msg) {
                backlog.push_back(msg);
            }
        } else {
            backlog.push_back(msg);
            Self::flush_one(inbox, self.me, backlog);
        }
        drop(overflow);
        Self::wake(inbox);
    }

    /// Queues `msg` for shard `to` only if its ring has room and nothing of this sender waits
    /// before it; otherwise gives it back (for senders that must not hold messages: a
    /// producer outside the shards, which never drains a backlog).
    pub fn try_send(&self, to: usize, msg: T) -> Result<(), T> {
        let Some(inbox) = self.inboxes.get(to) else {
            return Err(msg);
        };
        if !self.overflow.borrow()[to].is_empty() {
            return Err(msg);
        }
        inbox.rings[self.me].push(msg)?;
        Self::wake(inbox);
        Ok(())
    }

    /// Whether messages wait in a local overflow queue for a full ring.
    pub fn has_backlog(&self) -> bool {
        self.overflow.borrow().iter().any(|q| !q.is_empty())
    }

    /// Retries the overflow queues (call periodically while [`Endpoint::has_backlog`]).
    pub fn flush_backlog(&self) {
        let mut overflow = self.overflow.borrow_mut();
        for (to, backlog) in overflow.iter_mut().enumerate() {
            if !backlog.is_empty() {
                let inbox = &self.inboxes[to];
                Self::flush_one(inbox, self.me, backlog);
                Self::wake(inbox);
            }
        }
    }

    /// Waits until at least one message has arrived, then moves every waiting message into
    /// `out`, sender by sender (each sender's messages stay in order).
    pub async fn recv_batch(&self, out: &mut Vec<T>) {
        let inbox = &self.inboxes[self.me];
        poll_fn(|cx| {
            inbox.notified.store(false, Ordering::SeqCst);
            if self.drain(out) {
                return Poll::Ready(());
            }
            inbox.waker.register(cx.waker());
            // A sender may have pushed between the drain and the registration.
            if inbox.notified.load(Ordering::SeqCst) && self.drain(out) {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }

    /// Moves every waiting message into `out` without waiting; true if any was taken.
    pub fn drain(&self, out: &mut Vec<T>) -> bool {
        let before = out.len();
        for ring in &self.inboxes[self.me].rings {
            while let Some(msg) = ring.pop() {
                out.push(msg);
            }
        }
        out.len() > before
    }

    fn flush_one(inbox: &Inbox<T>, me: usize, backlog: &mut VecDeque<T>) {
        while let Some(msg) = backlog.pop_front() {
            if let Err(msg) = inbox.rings[me].push(msg) {
                backlog.push_front(msg);
                break;
            }
        }
    }

    fn wake(inbox: &Inbox<T>) {
        // Only the first sender after the receiver went idle pays for the wake-up.
        if !inbox.notified.swap(true, Ordering::SeqCst) {
            inbox.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_send_gives_back_what_a_full_ring_cannot_take() {
        let mut ends = mesh::<u32>(2, 2);
        let b = ends.pop().unwrap();
        let a = ends.pop().unwrap();
        assert_eq!(a.try_send(1, 1), Ok(()));
        assert_eq!(a.try_send(1, 2), Ok(()));
        assert_eq!(a.try_send(1, 3), Err(3));
        assert_eq!(a.try_send(7, 4), Err(4));
        let mut out = Vec::new();
        b.drain(&mut out);
        assert_eq!(out, [1, 2]);
        assert_eq!(a.try_send(1, 5), Ok(()));
    }

    #[test]
    fn messages_keep_order_per_sender_through_overflow() {
        let mut ends = mesh::<u32>(2, 4);
        let b = ends.pop().unwrap();
        let a = ends.pop().unwrap();
        for n in 0..100 {
            a.send(1, n);
        }
        assert!(a.has_backlog());
        let mut got = Vec::new();
        while got.len() < 100 {
            b.drain(&mut got);
            a.flush_backlog();
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert!(!a.has_backlog());
    }

    #[test]
    fn receiver_on_another_thread_is_woken() {
        let mut ends = mesh::<u64>(2, 1024);
        let b = ends.pop().unwrap();
        let a = ends.pop().unwrap();
        let receiver = std::thread::spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut got = Vec::new();
                while got.len() < 10_000 {
                    b.recv_batch(&mut got).await;
                }
                got
            })
        });
        for n in 0..10_000 {
            a.send(1, n);
            if n % 1000 == 0 {
                a.flush_backlog();
            }
        }
        while a.has_backlog() {
            a.flush_backlog();
            std::thread::yield_now();
        }
        let got = receiver.join().unwrap();
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
    }
}
