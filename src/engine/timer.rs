//! Time: each session has one live deadline (its heartbeat step or its upgrade probe's end,
//! whichever is first); [`Engine::handle_timeouts`] fires the due ones and
//! [`Engine::next_deadline`] tells the shard when to call it.
//!
//! Never reads the clock: `now` comes in.

use std::cmp::Reverse;
use std::time::Instant;

use super::session::{Heartbeat, Transport};
use super::{CloseReason, Engine, SessionKey};
use crate::codec::frame::Frame;
use crate::codec::ws;

impl Engine {
    /// When [`Engine::handle_timeouts`] must run next.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key, generation))) = self.deadlines.peek().copied() {
            match self.sessions.get(key as usize) {
                Some(session) if session.timer_generation == generation => return Some(at),
                _ => {
                    self.deadlines.pop();
                }
            }
        }
        None
    }

    /// Sends due pings, closes sessions whose peer went silent, ends stale upgrade probes.
    pub fn handle_timeouts(&mut self, now: Instant) {
        while let Some(Reverse((at, key, generation))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(session) = self.sessions.get_mut(key as usize) else {
                continue;
            };
            if session.timer_generation != generation {
                continue;
            }
            if let Some(deadline) = session.upgrade_deadline {
                if deadline <= now {
                    session.upgrade_deadline = None;
                    if let Transport::Upgrading { link, .. } = session.transport {
                        self.end_link(
                            link,
                            Some(ws::close_frame(1000, "")),
                            CloseReason::TransportClose,
                        );
                    }
                }
            }
            let Some(session) = self.sessions.get_mut(key as usize) else {
                continue;
            };
            match session.heartbeat {
                Heartbeat::SendPingAt(due) if due <= now => {
                    // The timeout clock starts when the ping is queued (conformance.md §6).
                    session.heartbeat = Heartbeat::PongBy(now + self.config.ping_timeout);
                    self.send(key, &Frame::text(b"2"), false);
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
        let Some(session) = self.sessions.get_mut(key as usize) else {
            return;
        };
        let mut at = session.heartbeat.due();
        if let Some(upgrade) = session.upgrade_deadline {
            at = at.min(upgrade);
        }
        session.timer_generation = session.timer_generation.wrapping_add(1);
        self.deadlines
            .push(Reverse((at, key, session.timer_generation)));
        // Replaced deadlines stay in the heap until they come due; under churn they could
        // outnumber the live ones many times over, so past a bound they are swept out.
        if self.deadlines.len() > 2 * self.sessions.len() + 1024 {
            let mut deadlines = std::mem::take(&mut self.deadlines);
            deadlines
                .retain(|Reverse((_, key, generation))| self.is_live_deadline(*key, *generation));
            self.deadlines = deadlines;
        }
    }

    pub(super) fn is_live_deadline(&self, key: SessionKey, generation: u32) -> bool {
        self.sessions
            .get(key as usize)
            .is_some_and(|s| s.timer_generation == generation)
    }
}
