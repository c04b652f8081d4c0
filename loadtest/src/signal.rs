//! A one-slot wake-up between tasks of one worker thread (no atomics: tasks of a monoio
//! runtime never run in parallel).

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Set by one task, awaited by another.
#[derive(Default)]
pub struct Signal {
    raised: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Signal {
    /// Raises the signal and wakes the waiting task, if any.
    pub fn raise(&self) {
        self.raised.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Completes once the signal is raised, and lowers it.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.raised.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}
