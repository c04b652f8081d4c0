//! Engine.IO packets from the client, whichever transport brought them: messages become
//! [`Event`]s, heartbeats move the session's deadline, `1` closes, and on a probing WebSocket
//! `2probe` / `5` carry the upgrade through.
//!
//! No I/O; depends on the session table and the link queue only.

use std::time::Instant;

use super::outbound::link_bytes;
use super::session::{Heartbeat, Transport, Upgrade};
use super::{CloseReason, Engine, EngineError, Event, LinkKey, PollReply, SessionKey};
use crate::codec::eio::{Packet, Version};
use crate::codec::frame::Frame;
use crate::codec::ws;

impl Engine {
    /// Handles one packet; `via` is the link it came on (None for polling).
    pub(super) fn handle_packet(
        &mut self,
        key: SessionKey,
        now: Instant,
        packet: Packet,
        via: Option<LinkKey>,
    ) -> Result<(), CloseReason> {
        let Some(session) = self.sessions.get_mut(key.0) else {
            return Err(CloseReason::TransportClose);
        };
        let on_probe = matches!(
            (session.transport, via),
            (Transport::Upgrading { link, .. }, Some(v)) if link == v
        );
        if on_probe {
            return self.handle_probe_packet(key, now, packet);
        }
        if via.is_some() != matches!(session.transport, Transport::WebSocket(_)) {
            // A packet on a transport that is not (or no longer) the session's: ignore it.
            return Ok(());
        }
        match packet {
            Packet::Message(text) => {
                self.traffic.packets_in += 1;
                self.traffic.bytes_in += text.len() as u64;
                self.events.push_back(Event::Message(key, text));
            }
            Packet::Binary(data) => {
                self.traffic.packets_in += 1;
                self.traffic.bytes_in += data.len() as u64;
                self.events.push_back(Event::Binary(key, data));
            }
            Packet::Pong(_) if session.version == Version::V4 => {
                if matches!(session.heartbeat, Heartbeat::PongBy(_)) {
                    session.heartbeat = Heartbeat::SendPingAt(now + self.config.ping_interval);
                    self.reschedule(key);
                }
            }
            Packet::Ping(data) if session.version == Version::V3 => {
                let mut pong = Vec::with_capacity(1 + data.len());
                pong.push(b'3');
                pong.extend_from_slice(&data);
                session.heartbeat = Heartbeat::ClientPingBy(
                    now + self.config.ping_interval + self.config.ping_timeout,
                );
                self.reschedule(key);
                let _ = self.send(key, &Frame::text(&pong), false);
            }
            Packet::Close => {
                // A GET racing this POST (conformance.md §6) still gets its noop if it has
                // not arrived yet.
                if via.is_none() && session.poll.is_none() {
                    let closed = (session.id, session.version);
                    self.remember_client_close(closed);
                }
                self.close(key, CloseReason::ClientClose);
            }
            Packet::Noop => {}
            _ => {
                self.close(key, CloseReason::ParseError);
                return Err(CloseReason::ParseError);
            }
        }
        Ok(())
    }

    /// Packets on a probe WebSocket: `2probe`, then `5` completes the upgrade.
    fn handle_probe_packet(
        &mut self,
        key: SessionKey,
        now: Instant,
        packet: Packet,
    ) -> Result<(), CloseReason> {
        let Some(session) = self.sessions.get_mut(key.0) else {
            return Ok(());
        };
        let Transport::Upgrading { link, stage } = session.transport else {
            return Ok(());
        };
        match packet {
            Packet::Ping(data) if &data[..] == b"probe" && stage == Upgrade::Probing => {
                session.transport = Transport::Upgrading {
                    link,
                    stage: Upgrade::Probed,
                };
                self.push_link(link, Frame::text(b"3probe").ws_bytes().clone());
                self.release_probed_poll(key);
                self.answer_poll(key);
                Ok(())
            }
            Packet::Upgrade if stage != Upgrade::Probing => {
                session.transport = Transport::WebSocket(link);
                session.upgrade_deadline = None;
                if session.version == Version::V3 {
                    // The client keeps pinging; restart its deadline from now.
                    session.heartbeat = Heartbeat::ClientPingBy(
                        now + self.config.ping_interval + self.config.ping_timeout,
                    );
                }
                let pending: Vec<Frame> = session.outbox.drain(..).collect();
                session.outbox_bytes = 0;
                // A GET still waiting is one the client sent after its noop, racing this `5`.
                if let Some(waiter) = session.poll.take() {
                    let _ = waiter.send(PollReply::error(EngineError::BadRequest));
                }
                let version = session.version;
                for frame in pending {
                    self.push_link(link, link_bytes(&frame, version));
                }
                self.reschedule(key);
                self.events.push_back(Event::Upgraded(key));
                Ok(())
            }
            _ => {
                self.end_link(
                    link,
                    Some(ws::close_frame(ws::CLOSE_NORMAL, "")),
                    CloseReason::ParseError,
                );
                Ok(())
            }
        }
    }

    /// Once `3probe` is out, the client waits for its pending poll to end before it sends `5`:
    /// the first poll (pending or next) gets a noop at once (conformance.md §5.1 #23).
    pub(super) fn release_probed_poll(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(key.0) else {
            return;
        };
        let Transport::Upgrading {
            link,
            stage: Upgrade::Probed,
        } = session.transport
        else {
            return;
        };
        if session.poll.is_some() && session.outbox.is_empty() {
            session.push(Frame::text(b"6"));
            session.transport = Transport::Upgrading {
                link,
                stage: Upgrade::Released,
            };
        }
    }
}
