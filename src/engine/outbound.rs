//! The application's side of the engine: frames queued for one session ([`Engine::send`],
//! [`Engine::send_frames`]) and broadcasts held until the end of the runtime's turn
//! ([`Engine::send_many`], [`Engine::send_deferred`]), joined into one buffer per recipient,
//! with the outbound bound and the slow-consumer policy applied on the way.
//!
//! Knows the transports only through the session's state and the link's queue; no I/O.

use std::fmt;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use super::session::Transport;
use super::{CloseReason, Engine, SessionKey};
use crate::codec::deflate::Deflater;
use crate::codec::eio::{self, Version};
use crate::codec::frame::{self, Frame, FrameKind};
use crate::codec::ws;
use crate::config::SlowConsumerPolicy;

/// The most bytes of frames joined for one run of broadcasts; a longer run starts another.
const MAX_JOINED_BYTES: usize = 64 * 1024;

/// Why [`Engine::send`] or [`Engine::send_frames`] did not queue a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session is gone: closed, or never there.
    Closed,
    /// The session's outbound queue would have passed `max_outbound_bytes`, so the
    /// slow-consumer policy applied: the session was closed (`Disconnect`), or this packet was
    /// dropped and the session kept (`Drop`).
    Overflowed,
    /// A volatile packet was dropped: the transport could not take it right away.
    VolatileDropped,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the session is closed",
            SendError::Overflowed => "the session's outbound queue overflowed",
            SendError::VolatileDropped => "a volatile packet was dropped: the transport was busy",
        })
    }
}

impl std::error::Error for SendError {}

/// A run of broadcasts to the same recipients, held until the end of the turn.
#[derive(Debug)]
pub(super) struct Deferred {
    /// Each session at most once; every live one has `Session::deferred` set.
    recipients: Vec<SessionKey>,
    /// How many of `recipients` were live when the run began (none can end without first
    /// flushing the run, see [`Engine::close`]).
    live: usize,
    frames: Vec<Frame>,
    bytes: usize,
}

impl Engine {
    /// Queues a frame for a session on its active transport: [`Engine::send_frames`] with one
    /// frame.
    pub fn send(
        &mut self,
        key: SessionKey,
        frame: &Frame,
        volatile: bool,
    ) -> Result<(), SendError> {
        self.send_frames(key, std::slice::from_ref(frame), volatile)
    }

    /// Queues frames that go together (a packet and its attachments) for a session, after
    /// everything sent to it before, broadcasts held for the end of the turn included.
    ///
    /// Fails with [`SendError::Closed`] when the session is gone, with
    /// [`SendError::VolatileDropped`] when `volatile` is set and the transport cannot take the
    /// packet right away, and with [`SendError::Overflowed`] when the packet does not fit the
    /// session's outbound queue (the slow-consumer policy then closed the session, or dropped
    /// the packet).
    pub fn send_frames(
        &mut self,
        key: SessionKey,
        frames: &[Frame],
        volatile: bool,
    ) -> Result<(), SendError> {
        if self.sessions.get(key.0).is_some_and(|s| s.deferred) {
            self.send_deferred();
        }
        self.queue(key, &mut Joined::new(frames), volatile)
    }

    /// Queues `frames` for every session in `recipients` (each at most once), behind what each
    /// was sent before, but only at the end of the runtime's turn ([`Engine::send_deferred`]).
    /// Consecutive calls for the same recipients are joined, so each recipient gets one buffer,
    /// one write, for the whole run instead of one per broadcast: at high fan-out the per-
    /// recipient work, not the bytes, is the cost. Returns how many recipients are live.
    pub fn send_many(&mut self, recipients: Vec<SessionKey>, frames: &[Frame]) -> usize {
        let bytes: usize = frames.iter().map(|f| f.ws_bytes().len()).sum();
        if let Some(last) = self.deferred.last_mut() {
            if last.recipients == recipients && last.bytes + bytes <= MAX_JOINED_BYTES {
                last.frames.extend_from_slice(frames);
                last.bytes += bytes;
                return last.live;
            }
        }
        let mut live = 0;
        for &key in &recipients {
            if let Some(session) = self.sessions.get_mut(key.0) {
                session.deferred = true;
                live += 1;
            }
        }
        if live == 0 {
            return 0;
        }
        if self.deferred.is_empty() {
            if let Some(waker) = self.deferred_waker.take() {
                waker.wake();
            }
        }
        self.deferred.push(Deferred {
            recipients,
            live,
            frames: frames.to_vec(),
            bytes,
        });
        live
    }

    /// Ready when broadcasts are held ([`Engine::send_many`]) or links are listed for a
    /// direct write ([`Engine::take_direct`]); otherwise registers the waker of the task that
    /// will call [`Engine::send_deferred`] and write them once they are.
    pub fn poll_deferred(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.deferred.is_empty() && self.ready_links.is_empty() {
            self.deferred_waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Queues every held broadcast for its recipients, oldest first. Polls they make
    /// answerable are answered by the next [`Engine::flush`].
    pub fn send_deferred(&mut self) {
        let mut runs = std::mem::take(&mut self.deferred);
        for run in runs.drain(..) {
            let mut joined = Joined::new(&run.frames);
            for &key in &run.recipients {
                let Some(session) = self.sessions.get_mut(key.0) else {
                    continue;
                };
                session.deferred = false;
                let _ = self.queue(key, &mut joined, false);
            }
        }
        // Keep the allocation unless queueing held new broadcasts meanwhile (a slow consumer's
        // close can't: it finds nothing held).
        if self.deferred.is_empty() {
            self.deferred = runs;
        }
    }

    /// Gives a broadcast's frames that will be compressed a shared cell for their compressed
    /// form before they travel to the other shards, so the first shard that needs it compresses
    /// once for all; nothing when permessage-deflate is off.
    pub fn share_deflate(&self, frames: &mut [Frame]) {
        if self.config.per_message_deflate {
            frame::share_deflate_over(frames, self.config.deflate_threshold);
        }
    }

    /// A packet for `key` did not fit its outbound queue: the slow-consumer policy applies.
    fn overflowed(&mut self, key: SessionKey) {
        match self.config.slow_consumer {
            SlowConsumerPolicy::Disconnect => {
                self.slow_consumers.disconnected += 1;
                // One line per client disconnected, never per packet: the session is gone
                // after it.
                let client = self
                    .sessions
                    .get(key.0)
                    .and_then(|session| session.address)
                    .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
                tracing::info!(
                    %client,
                    limit = self.config.max_outbound_bytes,
                    "slow consumer disconnected: its outbound queue is full"
                );
                self.close(key, CloseReason::SlowConsumer);
            }
            SlowConsumerPolicy::Drop => self.slow_consumers.dropped += 1,
        }
    }

    /// Queues a packet's frames on the session's active transport.
    fn queue(
        &mut self,
        key: SessionKey,
        frames: &mut Joined<'_>,
        volatile: bool,
    ) -> Result<(), SendError> {
        let Some(session) = self.sessions.get_mut(key.0) else {
            return Err(SendError::Closed);
        };
        match session.transport {
            Transport::WebSocket(link) => {
                let version = session.version;
                let Some(entry) = self.link(link) else {
                    return Err(SendError::Closed);
                };
                if volatile && !entry.queue.is_empty() {
                    return Err(SendError::VolatileDropped);
                }
                let (queued_bytes, deflate) = (entry.queued_bytes, entry.deflate);
                let bytes = if deflate {
                    let level = self.config.deflate_level;
                    let deflater = self.deflater.get_or_insert_with(|| Deflater::new(level));
                    frames.ws_bytes(version, Some((deflater, self.config.deflate_threshold)))
                } else {
                    frames.ws_bytes(version, None)
                };
                if queued_bytes + bytes.len() > self.config.max_outbound_bytes {
                    self.overflowed(key);
                    return Err(SendError::Overflowed);
                }
                let (bytes, compressed) = (bytes.clone(), frames.compressed(version, deflate));
                self.traffic.compressed_out += compressed;
                self.traffic.packets_out += frames.frames.len() as u64;
                self.traffic.bytes_out += bytes.len() as u64;
                self.push_link(link, bytes);
            }
            Transport::Polling | Transport::Upgrading { .. } => {
                if volatile && (session.poll.is_none() || !session.outbox.is_empty()) {
                    return Err(SendError::VolatileDropped);
                }
                let size: usize = frames.frames.iter().map(|f| f.payload_slice().len()).sum();
                if session.outbox_bytes + size > self.config.max_outbound_bytes {
                    self.overflowed(key);
                    return Err(SendError::Overflowed);
                }
                for frame in frames.frames {
                    session.push(frame.clone());
                }
                self.traffic.packets_out += frames.frames.len() as u64;
                self.traffic.bytes_out += size as u64;
                if session.poll.is_some() {
                    self.dirty.push(key);
                }
            }
        }
        Ok(())
    }
}

/// The frames of a packet (or of a run of broadcasts) and their WebSocket bytes, joined into
/// one buffer per Engine.IO version, plain or compressed, on first use and shared by every
/// recipient.
struct Joined<'a> {
    frames: &'a [Frame],
    /// `[plain, deflated][V4, V3]`.
    slots: [[Option<Bytes>; 2]; 2],
    /// How many frames of the deflated forms went compressed, `[V4, V3]` (for the metrics).
    compressed: [u64; 2],
}

impl<'a> Joined<'a> {
    fn new(frames: &'a [Frame]) -> Joined<'a> {
        Joined {
            frames,
            slots: Default::default(),
            compressed: [0; 2],
        }
    }

    /// How many of the frames [`Joined::ws_bytes`] gave for `version` are compressed.
    fn compressed(&self, version: Version, deflate: bool) -> u64 {
        if !deflate {
            return 0;
        }
        self.compressed[version_index(version)]
    }

    /// The bytes for a recipient of `version`; with `deflate` (the shard's compressor and the
    /// threshold), for a link that agreed permessage-deflate.
    fn ws_bytes(&mut self, version: Version, deflate: Option<(&mut Deflater, usize)>) -> &Bytes {
        let frames = self.frames;
        let index = version_index(version);
        let slot = &mut self.slots[usize::from(deflate.is_some())][index];
        let compressed = &mut self.compressed[index];
        slot.get_or_insert_with(|| match (frames, deflate) {
            ([frame], None) => link_bytes(frame, version),
            ([frame], Some((deflater, threshold))) => {
                let (bytes, packed) = deflated_link_bytes(frame, version, deflater, threshold);
                *compressed = u64::from(packed);
                bytes
            }
            (_, None) => {
                let len = frames.iter().map(|f| f.ws_bytes().len() + 1).sum();
                let mut joined = BytesMut::with_capacity(len);
                for frame in frames {
                    put_link_bytes(&mut joined, frame, version);
                }
                joined.freeze()
            }
            (_, Some((deflater, threshold))) => {
                let parts: Vec<(Bytes, bool)> = frames
                    .iter()
                    .map(|frame| deflated_link_bytes(frame, version, deflater, threshold))
                    .collect();
                let mut joined =
                    BytesMut::with_capacity(parts.iter().map(|(part, _)| part.len()).sum());
                for (part, packed) in &parts {
                    joined.extend_from_slice(part);
                    *compressed += u64::from(*packed);
                }
                joined.freeze()
            }
        })
    }
}

fn version_index(version: Version) -> usize {
    match version {
        Version::V4 => 0,
        Version::V3 => 1,
    }
}

/// [`link_bytes`] for a link that agreed permessage-deflate: compressed (RSV1, and `true`)
/// when the message is at least `threshold` bytes and compressing shrinks it, else as is. Each
/// message is compressed on its own (no context takeover), so a frame's compressed form is the
/// same for every recipient and is shared through the frame.
fn deflated_link_bytes(
    frame: &Frame,
    version: Version,
    deflater: &mut Deflater,
    threshold: usize,
) -> (Bytes, bool) {
    let v3_binary = needs_v3_type_byte(frame, version);
    let payload = frame.payload_slice();
    if payload.len() + usize::from(v3_binary) < threshold {
        return (link_bytes(frame, version), false);
    }
    let compressed = if v3_binary {
        // The type byte is part of the message: compressed with it, for this version only.
        let mut message = Vec::with_capacity(payload.len() + 1);
        message.push(eio::PacketType::Message as u8);
        message.extend_from_slice(payload);
        deflater.frame(ws::OPCODE_BINARY, &message)
    } else {
        frame.deflated(deflater)
    };
    match compressed {
        Some(bytes) => (bytes, true),
        None => (link_bytes(frame, version), false),
    }
}

/// The WebSocket bytes of a frame for a recipient: shared as is, except binary frames for
/// Engine.IO v3, which carry a leading message-type byte.
pub(super) fn link_bytes(frame: &Frame, version: Version) -> Bytes {
    if needs_v3_type_byte(frame, version) {
        let mut bytes = BytesMut::with_capacity(frame.ws_bytes().len() + 1);
        put_link_bytes(&mut bytes, frame, version);
        return bytes.freeze();
    }
    frame.ws_bytes().clone()
}

fn needs_v3_type_byte(frame: &Frame, version: Version) -> bool {
    frame.kind() == FrameKind::Binary && version == Version::V3
}

/// Appends what [`link_bytes`] returns, without building it on its own.
fn put_link_bytes(out: &mut BytesMut, frame: &Frame, version: Version) {
    if needs_v3_type_byte(frame, version) {
        let data = frame.payload_slice();
        let (header, header_len) = ws::encode_header(ws::OPCODE_BINARY, data.len() + 1);
        out.extend_from_slice(&header[..header_len]);
        out.extend_from_slice(&[eio::PacketType::Message as u8]);
        out.extend_from_slice(data);
    } else {
        out.extend_from_slice(frame.ws_bytes());
    }
}
