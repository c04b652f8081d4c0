//! Connection state recovery (socket.io 4.6+, spec `ecosystem-protocols.md` D) on one shard:
//! the offsets stored events carry, the log of recent stored packets per namespace, and the
//! sessions of sockets that lost their connection, by private id (`pid`).
//!
//! Every shard logs every stored packet it delivers (a broadcast reaches every shard), so the
//! shard that kept a session can tell what its socket missed; a reconnecting client asks
//! every shard of the process (`Op::Restore`), and the one holding its `pid` answers. Bounded
//! by the window (older packets and sessions are dropped) and by a packet count per
//! namespace. Plain data: no I/O, time handed in.
//!
//! On a cluster, [`SharedRecovery`] (lent by the shard, over Redis) keeps the same things
//! where every node sees them, and this node's tag in offsets and private ids keeps them
//! unique across nodes and restarts.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::message::Args;
use super::tables::{SocketRecovery, SocketState};
use crate::codec::frame::Frame;
use crate::config::RecoveryConfig;

/// A disconnect reason after which a session is kept (Node's list: the connection was lost,
/// not left).
pub(crate) fn keeps_session(reason: &str) -> bool {
    matches!(
        reason,
        "transport error"
            | "transport close"
            | "forced close"
            | "ping timeout"
            | "server shutting down"
            | "forced server close"
    )
}

/// One stored packet: its offset, whom it was for, its frames (the offset included) and when.
struct Stored {
    offset: Arc<str>,
    at: Instant,
    rooms: Box<[Box<str>]>,
    except: Box<[Box<str>]>,
    frames: Vec<Frame>,
}

impl Stored {
    /// Whether a socket in `rooms` (its own id room included) was sent this packet.
    fn reaches(&self, rooms: &[Box<str>]) -> bool {
        reaches(&self.rooms, &self.except, rooms)
    }
}

/// Whether a packet for `to` (all if none) minus `except` reached a socket in `rooms` (its
/// own id room included).
pub(crate) fn reaches<S: AsRef<str>>(to: &[S], except: &[S], rooms: &[Box<str>]) -> bool {
    let within = |room: &S| rooms.iter().any(|r| **r == *room.as_ref());
    (to.is_empty() || to.iter().any(within)) && !except.iter().any(within)
}

/// A socket whose connection was lost, as kept for its return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub(crate) nsp: Arc<str>,
    pub(crate) sid: Arc<str>,
    pub(crate) pid: Arc<str>,
    /// Its rooms, its own id room included.
    pub(crate) rooms: Vec<Box<str>>,
    pub(crate) data: Option<Box<str>>,
}

impl Session {
    /// The session of a socket as it is now.
    pub(crate) fn of(nsp: Arc<str>, socket: &SocketState, own: &SocketRecovery) -> Session {
        Session {
            nsp,
            sid: socket.id.clone(),
            pid: own.pid.clone(),
            rooms: socket.rooms.iter().map(|room| Box::from(&**room)).collect(),
            data: socket.data.clone(),
        }
    }
}

/// What a restore hands back: the session and every packet it missed, oldest first.
#[derive(Debug)]
pub struct Restored {
    pub(crate) session: Session,
    pub(crate) missed: Vec<Vec<Frame>>,
}

/// A stored packet a node sent, as the cluster's log keeps it.
pub struct Logged<'a> {
    /// The namespace.
    pub nsp: &'a str,
    /// Its offset.
    pub offset: &'a str,
    /// The target rooms (none: the whole namespace; a socket's own id: a direct emit).
    pub rooms: &'a [Box<str>],
    /// The rooms whose members were left out.
    pub except: &'a [Box<str>],
    /// Sent to this node's sockets only (`local()`).
    pub local: bool,
    /// The event name.
    pub event: &'a str,
    /// Its arguments, without the offset.
    pub args: &'a Args,
}

/// What a restore from the cluster resolves to.
pub type RestoreFuture = Pin<Box<dyn Future<Output = Option<Box<Restored>>>>>;

/// Connection state recovery across the nodes of a cluster and their restarts (Redis, lent
/// by the shard). Nothing here may block: writes are queued and forgotten, a restore is a
/// future.
pub trait SharedRecovery {
    /// This node's tag, unique to this run of this process: the last part of its offsets
    /// and private ids.
    fn node(&self) -> &str;
    /// Appends a stored packet this node sent to its namespace's log.
    fn log(&self, packet: &Logged<'_>);
    /// A connected socket's session as it is now (at connect, after each room change), for
    /// its return should this node die.
    fn live(&self, session: &Session);
    /// The socket `pid` left for good: nothing is kept.
    fn left(&self, pid: &str);
    /// The socket lost its connection: its session is kept for the window.
    fn keep(&self, session: &Session);
    /// Takes the session `pid` of `nsp` from the cluster (once, whichever node asks) with
    /// what it missed after `offset`. `local` is what this process kept itself, if
    /// anything: it stands when the cluster kept the same session (this node's log is the
    /// exact one) or can't be asked.
    fn restore(
        &self,
        nsp: &str,
        pid: &str,
        offset: &str,
        local: Option<Box<Restored>>,
    ) -> RestoreFuture;
}

/// An offset: unique on its shard (`counter`), in its process (`shard`), and across the
/// nodes of a cluster and their restarts (`node`, when there is one).
pub(crate) fn offset(counter: u64, shard: u16, node: Option<&str>) -> Arc<str> {
    match node {
        Some(node) => format!("{counter:x}.{shard:x}.{node}").into(),
        None => format!("{counter:x}.{shard:x}").into(),
    }
}

/// The node tag a private id (or offset) ends with, if any.
pub(crate) fn node_of(id: &str) -> Option<&str> {
    id.rsplit_once('.').map(|(_, node)| node)
}

/// One shard's recovery state.
pub(crate) struct Recovery {
    window: Duration,
    max_packets: usize,
    /// This shard's index, in its offsets: offsets are unique in the process.
    shard: u16,
    /// The cluster node's tag, in its offsets: unique across nodes and restarts.
    node: Option<Arc<str>>,
    next: u64,
    logs: HashMap<Arc<str>, VecDeque<Stored>>,
    sessions: HashMap<Arc<str>, (Session, Instant)>,
    /// Sessions by when they were kept, for pruning.
    kept: VecDeque<(Instant, Arc<str>)>,
}

impl Recovery {
    pub(crate) fn new(config: &RecoveryConfig, shard: u16, node: Option<Arc<str>>) -> Recovery {
        Recovery {
            window: config.window,
            max_packets: config.max_packets.max(1),
            shard,
            node,
            next: 0,
            logs: HashMap::new(),
            sessions: HashMap::new(),
            kept: VecDeque::new(),
        }
    }

    /// A new offset: unique in the process, ordered on this shard (clients treat it as an
    /// opaque string).
    pub(crate) fn next_offset(&mut self) -> Arc<str> {
        self.next += 1;
        offset(self.next, self.shard, self.node.as_deref())
    }

    /// Logs a stored packet delivered on this shard.
    pub(crate) fn store(
        &mut self,
        nsp: &Arc<str>,
        offset: Arc<str>,
        rooms: &[Box<str>],
        except: &[Box<str>],
        frames: &[Frame],
        now: Instant,
    ) {
        let log = self.logs.entry(nsp.clone()).or_default();
        log.push_back(Stored {
            offset,
            at: now,
            rooms: rooms.into(),
            except: except.into(),
            frames: frames.to_vec(),
        });
        while log.len() > self.max_packets
            || log
                .front()
                .is_some_and(|p| now.duration_since(p.at) > self.window)
        {
            log.pop_front();
        }
    }

    /// Keeps the session of a socket whose connection was lost.
    pub(crate) fn keep(&mut self, session: Session, now: Instant) {
        self.prune_sessions(now);
        self.kept.push_back((now, session.pid.clone()));
        self.sessions.insert(session.pid.clone(), (session, now));
    }

    fn prune_sessions(&mut self, now: Instant) {
        while let Some((at, pid)) = self.kept.front() {
            if now.duration_since(*at) <= self.window {
                break;
            }
            if self.sessions.get(pid).is_some_and(|(_, kept)| kept == at) {
                self.sessions.remove(pid);
            }
            self.kept.pop_front();
        }
    }

    /// The session `pid` of `nsp` (taken: it is restored once) and every packet after
    /// `offset` it was sent; `None` when there is no such session here, it expired, or the
    /// offset is not in the log (away too long, or bogus).
    pub(crate) fn restore(
        &mut self,
        nsp: &str,
        pid: &str,
        offset: &str,
        now: Instant,
    ) -> Option<Restored> {
        self.prune_sessions(now);
        let (session, _) = self.sessions.get(pid)?;
        if &*session.nsp != nsp {
            return None;
        }
        let log = self.logs.get(nsp)?;
        let start = log.iter().position(|p| &*p.offset == offset)?;
        let (session, _) = self.sessions.remove(pid)?;
        let missed = log
            .iter()
            .skip(start + 1)
            .filter(|p| now.duration_since(p.at) <= self.window && p.reaches(&session.rooms))
            .map(|p| p.frames.clone())
            .collect();
        Some(Restored { session, missed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RecoveryConfig {
        RecoveryConfig {
            window: Duration::from_secs(60),
            skip_middleware: true,
            max_packets: 100,
        }
    }

    fn frame(text: &str) -> Vec<Frame> {
        vec![Frame::text(text.as_bytes())]
    }

    fn rooms(names: &[&str]) -> Vec<Box<str>> {
        names.iter().map(|n| (*n).into()).collect()
    }

    fn session(pid: &str) -> Session {
        Session {
            nsp: "/".into(),
            sid: "sid1".into(),
            pid: pid.into(),
            rooms: rooms(&["sid1", "red"]),
            data: None,
        }
    }

    #[test]
    fn a_session_gets_what_its_rooms_were_sent_after_its_offset() {
        let mut recovery = Recovery::new(&config(), 0, None);
        let now = Instant::now();
        let nsp: Arc<str> = "/".into();
        let offsets: Vec<Arc<str>> = (0..5).map(|_| recovery.next_offset()).collect();
        recovery.store(&nsp, offsets[0].clone(), &[], &[], &frame("seen"), now);
        recovery.keep(session("p1"), now);
        recovery.store(&nsp, offsets[1].clone(), &[], &[], &frame("all"), now);
        recovery.store(
            &nsp,
            offsets[2].clone(),
            &rooms(&["red"]),
            &[],
            &frame("red"),
            now,
        );
        recovery.store(
            &nsp,
            offsets[3].clone(),
            &rooms(&["blue"]),
            &[],
            &frame("blue"),
            now,
        );
        recovery.store(
            &nsp,
            offsets[4].clone(),
            &[],
            &rooms(&["red"]),
            &frame("not red"),
            now,
        );
        let restored = recovery
            .restore("/", "p1", &offsets[0], now)
            .expect("restored");
        assert_eq!(&*restored.session.sid, "sid1");
        assert_eq!(restored.missed, vec![frame("all"), frame("red")]);
        // Taken: a second restore finds nothing.
        assert!(recovery.restore("/", "p1", &offsets[0], now).is_none());
    }

    #[test]
    fn an_unknown_offset_pid_or_namespace_or_an_old_session_restores_nothing() {
        let mut recovery = Recovery::new(&config(), 3, Some("n1".into()));
        let now = Instant::now();
        let nsp: Arc<str> = "/".into();
        let offset = recovery.next_offset();
        recovery.store(&nsp, offset.clone(), &[], &[], &frame("a"), now);
        recovery.keep(session("p1"), now);
        assert!(recovery.restore("/", "p1", "bogus", now).is_none());
        assert!(recovery.restore("/", "nobody", &offset, now).is_none());
        assert!(recovery.restore("/chat", "p1", &offset, now).is_none());
        let later = now + Duration::from_secs(61);
        assert!(recovery.restore("/", "p1", &offset, later).is_none());
    }

    #[test]
    fn offsets_and_pids_name_their_node_and_packets_reach_by_rooms() {
        assert_eq!(&*offset(31, 2, None), "1f.2");
        assert_eq!(&*offset(31, 2, Some("n0dE-_x1")), "1f.2.n0dE-_x1");
        assert_eq!(node_of("1f.2.n0dE-_x1"), Some("n0dE-_x1"));
        assert_eq!(node_of("Ft_GaezX2-25hQnAAAAB.n0dE-_x1"), Some("n0dE-_x1"));
        assert_eq!(node_of("Ft_GaezX2-25hQnAAAAB"), None);
        let mine = rooms(&["sid1", "red"]);
        assert!(reaches::<&str>(&[], &[], &mine));
        assert!(reaches(&["blue", "red"], &[], &mine));
        assert!(reaches(&["sid1"], &[], &mine));
        assert!(!reaches(&["blue"], &[], &mine));
        assert!(!reaches(&[], &["red"], &mine));
        assert!(!reaches(&["red"], &["sid1"], &mine));
    }

    #[test]
    fn the_log_keeps_at_most_its_count_and_its_window() {
        let mut recovery = Recovery::new(
            &RecoveryConfig {
                max_packets: 2,
                ..config()
            },
            0,
            None,
        );
        let now = Instant::now();
        let nsp: Arc<str> = "/".into();
        let first = recovery.next_offset();
        recovery.store(&nsp, first.clone(), &[], &[], &frame("1"), now);
        for text in ["2", "3"] {
            let offset = recovery.next_offset();
            recovery.store(&nsp, offset, &[], &[], &frame(text), now);
        }
        recovery.keep(session("p1"), now);
        // The first packet fell out: its offset is no longer known.
        assert!(recovery.restore("/", "p1", &first, now).is_none());
        assert!(keeps_session("transport close"));
        assert!(!keeps_session("client namespace disconnect"));
    }
}
