//! HTTP long-polling: a GET waits for frames (answered at once, or by [`Engine::flush`] once
//! frames are queued), a POST carries packets in, an aborted GET closes its session, and a GET
//! racing a client's close still gets its noop.
//!
//! Answers go through the [`PollWaiter`] channel; nothing here touches a WebSocket link or the
//! network.

use std::time::Instant;

use bytes::Bytes;

use super::session::Transport;
use super::{CloseReason, Engine, EngineError, PollReply, PollWaiter, SessionKey};
use crate::codec::eio::{self, Version};
use crate::codec::frame::Frame;
use crate::id::Id;

impl Engine {
    /// A polling GET: answered now if frames wait, else when the next frame is sent.
    pub fn polling_get(&mut self, key: SessionKey, waiter: PollWaiter) {
        let Some(session) = self.sessions.get_mut(key.0) else {
            let _ = waiter.send(PollReply::error(EngineError::UnknownSid));
            return;
        };
        match session.transport {
            Transport::WebSocket(_) => {
                let _ = waiter.send(PollReply::error(EngineError::BadRequest));
                return;
            }
            Transport::Polling | Transport::Upgrading { .. } => {}
        }
        if session.poll.is_some() {
            let _ = waiter.send(PollReply::error(EngineError::DuplicatePoll));
            self.close(key, CloseReason::TransportError);
            return;
        }
        session.poll = Some(waiter);
        if self.draining {
            self.close(key, CloseReason::ServerShutdown);
            return;
        }
        self.release_probed_poll(key);
        self.answer_poll(key);
    }

    /// A GET for a session that a client closed a moment ago gets a noop, once.
    pub fn polling_get_closed(&mut self, id: &str) -> Option<PollReply> {
        let position = self
            .closed_by_client
            .iter()
            .position(|(closed, _)| closed.as_str() == id)?;
        let (_, version) = self.closed_by_client.remove(position)?;
        let mut body = Vec::new();
        let content_type = eio::encode_payload([&Frame::text(b"6")], version, false, &mut body);
        Some(PollReply::payload(content_type, body))
    }

    /// The connection holding this session's GET went away: the client is gone.
    pub fn polling_aborted(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key.0) else {
            return;
        };
        if session.poll.take().is_some() {
            self.close(key, CloseReason::TransportClose);
        }
    }

    /// A polling POST: every packet is handled, then `ok` (or an error, closing the session).
    pub fn polling_post(
        &mut self,
        key: SessionKey,
        now: Instant,
        body: Bytes,
        binary_body: bool,
    ) -> PollReply {
        let Some(session) = self.sessions.get(key.0) else {
            return PollReply::error(EngineError::UnknownSid);
        };
        if matches!(session.transport, Transport::WebSocket(_)) {
            return PollReply::error(EngineError::BadRequest);
        }
        if body.len() > self.config.max_payload {
            self.close(key, CloseReason::TransportError);
            return PollReply::error(EngineError::PayloadTooLarge);
        }
        let version = session.version;
        if binary_body && version == Version::V4 {
            self.close(key, CloseReason::ParseError);
            return PollReply::error(EngineError::BadRequest);
        }
        let packets = match eio::decode_payload(body, version, binary_body) {
            Ok(packets) => packets,
            Err(error) => {
                tracing::debug!(session = key.index(), %error, "closing a polling session: bad payload");
                self.close(key, CloseReason::ParseError);
                return PollReply::error(EngineError::BadRequest);
            }
        };
        for packet in packets {
            if self.handle_packet(key, now, packet, None).is_err() {
                return PollReply::error(EngineError::BadRequest);
            }
            if !self.sessions.contains(key.0) {
                break;
            }
        }
        PollReply::ok()
    }

    /// Answers the pending GET if frames are queued.
    pub(super) fn answer_poll(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key.0) else {
            return;
        };
        if session.outbox.is_empty() || session.poll.is_none() {
            return;
        }
        let Some(waiter) = session.poll.take() else {
            return;
        };
        let mut body = Vec::with_capacity(session.outbox_bytes + 4 * session.outbox.len());
        let content_type = eio::encode_payload(
            session.outbox.iter(),
            session.version,
            session.supports_binary,
            &mut body,
        );
        session.outbox.clear();
        session.outbox_bytes = 0;
        let _ = waiter.send(PollReply::payload(content_type, body));
    }

    /// Answers every pending poll that became answerable while handling input.
    pub fn flush(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            self.answer_poll(key);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    pub(super) fn remember_client_close(&mut self, closed: (Id, Version)) {
        if self.closed_by_client.len() >= 1024 {
            self.closed_by_client.pop_front();
        }
        self.closed_by_client.push_back(closed);
    }
}
