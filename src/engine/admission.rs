//! Admission of new sessions, shared by every shard: at most so many sessions on the server
//! and per client address, and at most so many handshakes per address each second.
//!
//! Touched once per handshake and once per session close, never per message, so a mutex over
//! the per-address table is cheap enough; the server-wide count is an atomic. Knows nothing of
//! Socket.IO.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::EngineError;

/// Limits on new sessions; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionLimits {
    /// Sessions open on the whole server.
    pub max_sessions: usize,
    /// Sessions open from one client address.
    pub max_sessions_per_ip: usize,
    /// Handshakes one client address may make in a second.
    pub handshakes_per_ip_per_second: usize,
}

impl AdmissionLimits {
    /// Whether any limit is on.
    pub fn any(&self) -> bool {
        self.max_sessions > 0 || self.per_ip()
    }

    fn per_ip(&self) -> bool {
        self.max_sessions_per_ip > 0 || self.handshakes_per_ip_per_second > 0
    }
}

/// The shared counts behind [`AdmissionLimits`].
#[derive(Debug, Default)]
pub struct Admission {
    limits: AdmissionLimits,
    sessions: AtomicUsize,
    by_ip: Mutex<ByIp>,
}

#[derive(Debug, Default)]
struct ByIp {
    entries: HashMap<IpAddr, PerIp>,
    /// Entries kept by the last pruning: the table is pruned again once it doubles, so
    /// addresses that only handshake (refused or gone) can't grow it without bound.
    kept: usize,
}

#[derive(Debug)]
struct PerIp {
    sessions: usize,
    /// Handshakes in the second that began at `window`.
    handshakes: usize,
    window: Instant,
}

impl Admission {
    /// Counts for `limits`, shared by every shard of one server.
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            ..Admission::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Takes a session slot for a handshake from `ip` (if known), or says why not: a full
    /// server or address ([`EngineError::TooManySessions`]), or an address that handshakes too
    /// often ([`EngineError::TooManyHandshakes`]). Every `Ok` must be matched by one
    /// [`Admission::release`].
    pub fn admit(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), EngineError> {
        let limits = self.limits;
        let taken = self.sessions.fetch_add(1, Ordering::AcqRel);
        if limits.max_sessions > 0 && taken >= limits.max_sessions {
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::TooManySessions);
        }
        let (Some(ip), true) = (ip, limits.per_ip()) else {
            return Ok(());
        };
        let mut by_ip = self
            .by_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if by_ip.entries.len() > 2 * by_ip.kept + 1024 {
            by_ip
                .entries
                .retain(|_, e| e.sessions > 0 || !e.window_over(now));
            by_ip.kept = by_ip.entries.len();
        }
        let entry = by_ip.entries.entry(ip).or_insert(PerIp {
            sessions: 0,
            handshakes: 0,
            window: now,
        });
        if entry.window_over(now) {
            entry.window = now;
            entry.handshakes = 0;
        }
        let refusal = if limits.handshakes_per_ip_per_second > 0
            && entry.handshakes >= limits.handshakes_per_ip_per_second
        {
            Some(EngineError::TooManyHandshakes)
        } else if limits.max_sessions_per_ip > 0 && entry.sessions >= limits.max_sessions_per_ip {
            Some(EngineError::TooManySessions)
        } else {
            None
        };
        // Refused handshakes count too: an address that hammers stays refused.
        entry.handshakes += 1;
        if let Some(error) = refusal {
            self.sessions.fetch_sub(1, Ordering::AcqRel);
            return Err(error);
        }
        entry.sessions += 1;
        Ok(())
    }

    /// Gives back the slot an [`Admission::admit`] of the same `ip` took. The address's entry
    /// stays until a later pruning, so closing sessions can't reset its handshake count.
    pub fn release(&self, ip: Option<IpAddr>) {
        self.sessions.fetch_sub(1, Ordering::AcqRel);
        let (Some(ip), true) = (ip, self.limits.per_ip()) else {
            return;
        };
        let mut by_ip = self
            .by_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = by_ip.entries.get_mut(&ip) {
            entry.sessions = entry.sessions.saturating_sub(1);
        }
    }
}

impl PerIp {
    fn window_over(&self, now: Instant) -> bool {
        now.duration_since(self.window) >= Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[test]
    fn the_server_wide_limit_counts_every_address() {
        let admission = Admission::new(AdmissionLimits {
            max_sessions: 2,
            ..AdmissionLimits::default()
        });
        let now = Instant::now();
        assert_eq!(admission.admit(A, now), Ok(()));
        assert_eq!(admission.admit(B, now), Ok(()));
        assert_eq!(
            admission.admit(None, now),
            Err(EngineError::TooManySessions)
        );
        admission.release(A);
        assert_eq!(admission.admit(B, now), Ok(()));
        assert_eq!(admission.sessions(), 2);
    }

    #[test]
    fn the_per_address_limit_leaves_other_addresses_alone() {
        let admission = Admission::new(AdmissionLimits {
            max_sessions_per_ip: 1,
            ..AdmissionLimits::default()
        });
        let now = Instant::now();
        assert_eq!(admission.admit(A, now), Ok(()));
        assert_eq!(admission.admit(A, now), Err(EngineError::TooManySessions));
        assert_eq!(admission.admit(B, now), Ok(()));
        admission.release(A);
        assert_eq!(admission.admit(A, now), Ok(()));
    }

    #[test]
    fn handshakes_per_second_are_limited_per_address_and_the_window_moves_on() {
        let admission = Admission::new(AdmissionLimits {
            handshakes_per_ip_per_second: 3,
            ..AdmissionLimits::default()
        });
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(admission.admit(A, now), Ok(()));
            admission.release(A);
        }
        assert_eq!(admission.admit(A, now), Err(EngineError::TooManyHandshakes));
        assert_eq!(admission.admit(B, now), Ok(()));
        let later = now + Duration::from_secs(1);
        assert_eq!(admission.admit(A, later), Ok(()));
        assert_eq!(admission.sessions(), 2);
    }
}
