//! The WebSocket side of the engine: a link per connection ([`LinkKey`], generation-checked),
//! its outbound queue handed to the writer whole, the upgrade probe's start, messages and errors
//! read from it, and the pool of spare queues.
//!
//! Frames to write come from `outbound` (the application) and from the engine itself (pong,
//! close); this file does no I/O and never depends on `polling`.
//!
//! A link whose socket `net` may write without its writer task ([`Engine::ws_write_directly`])
//! is not woken for frames while its writer waits idle: it is listed, and `net` writes every
//! listed link's queue once per turn ([`Engine::take_direct`]), waking the writer only for
//! what the socket did not take.

use std::os::fd::RawFd;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::session::{Transport, Upgrade};
use super::{CloseReason, Engine, EngineError, SessionKey};
use crate::codec::eio::{self, Version};
use crate::codec::ws;
use crate::key::Key;

/// Spare link queues kept for reuse, and the largest capacity worth keeping (frames).
const MAX_SPARE_QUEUES: usize = 4096;
const MAX_SPARE_QUEUE_CAPACITY: usize = 1024;

/// A WebSocket connection on its shard: its slot and generation (see `key::Slots`), so a
/// finished task that still holds the key never reaches the connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkKey(Key);

/// What a WebSocket writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteBatch {
    /// Write the frames pushed into the output vector, then ask again.
    Frames,
    /// Write the frames pushed (ending with a close frame if any), then shut the socket.
    Close,
}

/// One WebSocket connection's outbound side.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) session: Option<SessionKey>,
    pub(super) version: Version,
    /// Frames for the writer; handed over whole (allocation included), so an idle link holds
    /// no buffer.
    pub(super) queue: Vec<Bytes>,
    pub(super) queued_bytes: usize,
    pub(super) waker: Option<Waker>,
    /// Set once the link must end: the close frame to send last (if any).
    pub(super) closing: Option<Option<Bytes>>,
    /// Not before this instant may the first frame go out (conformance quirk, see config).
    pub(super) hold_until: Option<Instant>,
    /// permessage-deflate was agreed: messages at or over the threshold go compressed.
    pub(super) deflate: bool,
    /// The writer waits for frames (it returned `Pending` with nothing queued): no write of
    /// its is in flight.
    pub(super) idle: bool,
    /// `net`'s handle to write the socket without the writer, when it has one.
    pub(super) direct: Option<RawFd>,
    /// In the engine's list of links to write directly this turn.
    pub(super) listed: bool,
}

impl Link {
    fn new(version: Version) -> Link {
        Link {
            session: None,
            version,
            queue: Vec::new(),
            queued_bytes: 0,
            waker: None,
            closing: None,
            hold_until: None,
            deflate: false,
            idle: false,
            direct: None,
            listed: false,
        }
    }
}

impl Engine {
    pub(super) fn insert_link(&mut self, version: Version) -> LinkKey {
        LinkKey(self.links.insert(Link::new(version)))
    }

    pub(super) fn link(&self, key: LinkKey) -> Option<&Link> {
        self.links.get(key.0)
    }

    pub(super) fn link_mut(&mut self, key: LinkKey) -> Option<&mut Link> {
        self.links.get_mut(key.0)
    }

    /// The link agreed permessage-deflate in its handshake (only asked when the config's
    /// `per_message_deflate` is on): messages of `deflate_threshold` bytes or more are sent to
    /// it compressed from now on.
    pub fn deflate_link(&mut self, link: LinkKey) {
        if let Some(entry) = self.link_mut(link) {
            entry.deflate = true;
        }
    }

    /// A WebSocket with a `sid`: starts an upgrade probe for a polling session.
    pub fn ws_upgrade(&mut self, key: SessionKey, now: Instant) -> Result<LinkKey, EngineError> {
        let Some(session) = self.sessions.get(key.0) else {
            return Err(EngineError::UnknownSid);
        };
        if !matches!(session.transport, Transport::Polling) {
            return Err(EngineError::BadRequest);
        }
        let version = session.version;
        let link = self.insert_link(version);
        if let Some(entry) = self.link_mut(link) {
            entry.session = Some(key);
        }
        let Some(session) = self.sessions.get_mut(key.0) else {
            return Err(EngineError::UnknownSid);
        };
        session.transport = Transport::Upgrading {
            link,
            stage: Upgrade::Probing,
        };
        session.upgrade_deadline = Some(now + self.config.upgrade_timeout);
        self.reschedule(key);
        Ok(link)
    }

    /// A complete message read from a WebSocket.
    pub fn ws_message(&mut self, link: LinkKey, now: Instant, message: ws::Message) {
        let Some(entry) = self.link(link) else {
            return;
        };
        let version = entry.version;
        let session = entry.session;
        let packet = match message {
            ws::Message::Text(text) => eio::decode_ws_text(text, version),
            ws::Message::Binary(data) => eio::decode_ws_binary(data, version),
            ws::Message::Ping(payload) => {
                self.push_link(link, ws::pong_frame(&payload));
                return;
            }
            ws::Message::Pong(_) => return,
            ws::Message::Close { .. } => {
                self.end_link(
                    link,
                    Some(ws::close_frame(ws::CLOSE_NORMAL, "")),
                    CloseReason::TransportClose,
                );
                return;
            }
        };
        let Some(key) = session else {
            return;
        };
        match packet {
            Ok(packet) => {
                let _ = self.handle_packet(key, now, packet, Some(link));
            }
            Err(error) => {
                tracing::debug!(session = key.index(), %error, "closing a WebSocket session: bad packet");
                self.end_link(
                    link,
                    Some(ws::close_frame(ws::CLOSE_NORMAL, "")),
                    CloseReason::ParseError,
                );
            }
        }
    }

    /// The WebSocket broke the protocol (bad frame, oversized message, invalid UTF-8).
    pub fn ws_error(&mut self, link: LinkKey, error: ws::WsError) {
        tracing::debug!(%error, "closing a WebSocket: it broke the protocol");
        let close = ws::close_frame(error.close_code(), "");
        self.end_link(link, Some(close), CloseReason::TransportError);
    }

    /// The WebSocket's reader ended (EOF or I/O error): the peer is gone.
    pub fn ws_reader_done(&mut self, link: LinkKey) {
        self.end_link(link, None, CloseReason::TransportClose);
    }

    /// Hands the writer everything queued for `link`, or registers its waker. When `out` is
    /// empty the queue moves into it whole, allocation included: an idle link holds no buffer.
    pub fn poll_ws_write(
        &mut self,
        link: LinkKey,
        now: Instant,
        cx: &mut Context<'_>,
        out: &mut Vec<Bytes>,
    ) -> Poll<WriteBatch> {
        let Some(entry) = self.link_mut(link) else {
            return Poll::Ready(WriteBatch::Close);
        };
        if let Some(until) = entry.hold_until {
            if now < until {
                entry.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            entry.hold_until = None;
        }
        if !entry.queue.is_empty() {
            let queue = std::mem::take(&mut entry.queue);
            if out.is_empty() {
                *out = queue;
            } else {
                out.extend(queue);
            }
            entry.queued_bytes = 0;
            entry.idle = false;
            entry.listed = false;
            return Poll::Ready(WriteBatch::Frames);
        }
        match entry.closing.take() {
            Some(close_frame) => {
                out.extend(close_frame);
                entry.closing = Some(None);
                entry.idle = false;
                Poll::Ready(WriteBatch::Close)
            }
            None => {
                entry.waker = Some(cx.waker().clone());
                entry.idle = true;
                Poll::Pending
            }
        }
    }

    /// `net` may write `link`'s socket itself through `fd` while the writer waits idle (not
    /// for a TLS stream): its frames are then listed for [`Engine::take_direct`] rather than
    /// waking the writer. The engine keeps `fd` for `net` and never uses it.
    pub fn ws_write_directly(&mut self, link: LinkKey, fd: RawFd) {
        if let Some(entry) = self.link_mut(link) {
            entry.direct = Some(fd);
        }
    }

    /// The next listed link whose idle writer's frames `net` should write now: the link, its
    /// handle and its queue, taken whole (give it back to [`Engine::recycle_queue`], or what the
    /// socket did not take to [`Engine::ws_unwritten`]). Links that closed or whose writer
    /// woke meanwhile are skipped.
    pub fn take_direct(&mut self) -> Option<(LinkKey, RawFd, Vec<Bytes>)> {
        while let Some(link) = self.ready_links.pop() {
            let Some(entry) = self.links.get_mut(link.0) else {
                continue;
            };
            if !std::mem::take(&mut entry.listed) {
                continue;
            }
            let (true, Some(fd), None) = (entry.idle, entry.direct, &entry.closing) else {
                continue;
            };
            if entry.queue.is_empty() {
                continue;
            }
            entry.queued_bytes = 0;
            return Some((link, fd, std::mem::take(&mut entry.queue)));
        }
        None
    }

    /// What a direct write left (the socket was full, or failed): it goes first in the queue,
    /// and the writer is woken to write it (and to meet the error, if any).
    pub fn ws_unwritten(&mut self, link: LinkKey, unwritten: Vec<Bytes>) {
        let Some(entry) = self.link_mut(link) else {
            return;
        };
        entry.queued_bytes += unwritten.iter().map(Bytes::len).sum::<usize>();
        let newer = std::mem::replace(&mut entry.queue, unwritten);
        entry.queue.extend(newer);
        entry.idle = false;
        if let Some(waker) = entry.waker.take() {
            waker.wake();
        }
    }

    /// Ready once the link must end (or is gone); otherwise registers the writer's waker.
    /// Only for a writer that is blocked in a write (it shares the waker slot).
    pub fn poll_ws_closing(&mut self, link: LinkKey, cx: &mut Context<'_>) -> Poll<()> {
        match self.link_mut(link) {
            Some(entry) if entry.closing.is_none() => {
                entry.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Takes back a queue the writer has written out, for the next link that gets frames.
    pub fn recycle_queue(&mut self, mut queue: Vec<Bytes>) {
        queue.clear();
        if queue.capacity() <= MAX_SPARE_QUEUE_CAPACITY
            && self.spare_queues.len() < MAX_SPARE_QUEUES
        {
            self.spare_queues.push(queue);
        }
    }

    /// When a held link may write (see
    /// [`EngineConfig::eio3_ws_open_delay`](crate::config::EngineConfig::eio3_ws_open_delay)).
    pub fn ws_hold_until(&self, link: LinkKey) -> Option<Instant> {
        self.link(link).and_then(|l| l.hold_until)
    }

    /// The writer is done: the link is forgotten.
    pub fn ws_writer_done(&mut self, link: LinkKey) {
        if self.link(link).is_some() {
            self.end_link(link, None, CloseReason::TransportClose);
            self.links.remove(link.0);
        }
    }

    /// Ends a link: its session closes if the link carried it; a probe only ends the probe.
    pub(super) fn end_link(
        &mut self,
        link: LinkKey,
        close_frame: Option<Bytes>,
        reason: CloseReason,
    ) {
        let Some(entry) = self.link_mut(link) else {
            return;
        };
        if entry.closing.is_none() {
            entry.closing = Some(close_frame);
        }
        if let Some(waker) = entry.waker.take() {
            waker.wake();
        }
        let Some(key) = entry.session.take() else {
            return;
        };
        let Some(session) = self.sessions.get_mut(key.0) else {
            return;
        };
        match session.transport {
            Transport::WebSocket(l) if l == link => self.close(key, reason),
            Transport::Upgrading { link: l, .. } if l == link => {
                session.transport = Transport::Polling;
                session.upgrade_deadline = None;
            }
            _ => {}
        }
    }

    pub(super) fn push_link(&mut self, link: LinkKey, frame: Bytes) {
        let spare_queues = &mut self.spare_queues;
        let Some(entry) = self.links.get_mut(link.0) else {
            return;
        };
        if entry.closing.is_some() {
            return;
        }
        if entry.queue.capacity() == 0 {
            // A link that was idle holds no queue; take a used one rather than growing a
            // new one frame by frame.
            entry.queue = spare_queues.pop().unwrap_or_default();
        }
        entry.queued_bytes += frame.len();
        entry.queue.push(frame);
        if entry.idle && entry.direct.is_some() {
            // Written by `net` at the end of the turn, with no task woken for it.
            if !entry.listed {
                entry.listed = true;
                if self.ready_links.is_empty() && self.deferred.is_empty() {
                    if let Some(waker) = self.deferred_waker.take() {
                        waker.wake();
                    }
                }
                self.ready_links.push(link);
            }
        } else if let Some(waker) = entry.waker.take() {
            entry.idle = false;
            waker.wake();
        }
    }
}
