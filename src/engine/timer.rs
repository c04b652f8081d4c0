//! Time: each session has one live deadline (its heartbeat step or its upgrade probe's end,
//! whichever is first) in the shared [`DeadlineHeap`](crate::deadline::DeadlineHeap), the
//! entry whose generation is the session's `timer_generation`; [`Engine::handle_timeouts`]
//! fires the due ones and [`Engine::next_deadline`] tells the shard when to call it.
//!
//! Never reads the clock: `now` comes in.

use std::time::Instant;

use super::session::{Heartbeat, Session, Transport};
use super::{CloseReason, Engine, SessionKey};
use crate::codec::frame::Frame;
use crate::codec::ws;
use crate::key::Slots;

impl Engine {
    /// When [`Engine::handle_timeouts`] must run next.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let sessions = &self.sessions;
        self.deadlines
            .next_deadline(|_, (key, generation)| is_live(sessions, key, generation))
    }

    /// Sends due pings, closes sessions whose peer went silent, ends stale upgrade probes.
    pub fn handle_timeouts(&mut self, now: Instant) {
        loop {
            let sessions = &self.sessions;
            let due = self.deadlines.pop_due(now, |_, (key, generation)| {
                is_live(sessions, key, generation)
            });
            let Some((_, (key, _))) = due else {
                break;
            };
            let Some(session) = self.sessions.get_mut(key.0) else {
                continue;
            };
            if let Some(deadline) = session.upgrade_deadline {
                if deadline <= now {
                    session.upgrade_deadline = None;
                    if let Transport::Upgrading { link, .. } = session.transport {
                        self.end_link(
                            link,
                            Some(ws::close_frame(ws::CLOSE_NORMAL, "")),
                            CloseReason::TransportClose,
                        );
                    }
                }
            }
            let Some(session) = self.sessions.get_mut(key.0) else {
                continue;
            };
            match session.heartbeat {
                Heartbeat::SendPingAt(due) if due <= now => {
                    // The timeout clock starts when the ping is queued (conformance.md §6).
                    session.heartbeat = Heartbeat::PongBy(now + self.config.ping_timeout);
                    let _ = self.send(key, &Frame::text(b"2"), false);
                }
                Heartbeat::PongBy(due) | Heartbeat::ClientPingBy(due) if due <= now => {
                    self.close(key, CloseReason::PingTimeout);
                    continue;
                }
                _ => {}
            }
            self.reschedule(key);
        }
        self.flush();
    }

    pub(super) fn reschedule(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key.0) else {
            return;
        };
        let mut at = session.heartbeat.due();
        if let Some(upgrade) = session.upgrade_deadline {
            at = at.min(upgrade);
        }
        session.timer_generation = session.timer_generation.wrapping_add(1);
        self.deadlines.push(at, (key, session.timer_generation));
        // The replaced entry stays in the heap until it comes due, or until churn grows the
        // heap enough to sweep it out.
        let sessions = &self.sessions;
        self.deadlines
            .sweep_if_grown(sessions.len(), |_, (key, generation)| {
                is_live(sessions, key, generation)
            });
    }
}

/// Whether a deadline entry is its session's current one.
pub(super) fn is_live(sessions: &Slots<Session>, key: SessionKey, generation: u32) -> bool {
    sessions
        .get(key.0)
        .is_some_and(|s| s.timer_generation == generation)
}
