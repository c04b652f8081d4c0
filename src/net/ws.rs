//! The WebSocket driver: completes the upgrade (on the owner shard, after a hand-off if the
//! connection landed elsewhere), then runs a reader task (frames -> engine) and a writer task
//! (engine queue -> one vectored write per batch).

use std::future::poll_fn;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoVecBuf;
use monoio::io::{AsyncWriteRentExt, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::{Forward, Host, Upgrade};
use crate::codec::http;
use crate::codec::ws::Decoder;
use crate::engine::{EngineError, LinkKey, PollReply, WriteBatch};

/// First read buffer of a WebSocket connection; it doubles while messages need more, so idle
/// connections stay small.
const READ_CHUNK: usize = 1024;

/// Most frames handed to one `writev` (the kernel's IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;

/// Routes an upgrade to the owner shard, or completes it here.
pub(super) async fn start<H: Host>(host: Rc<H>, stream: TcpStream, upgrade: Upgrade) {
    if let Some(sid) = upgrade.sid {
        let owner = sid.shard();
        if owner != host.shard() && owner < host.shards() {
            // Move the connection itself: nothing is in flight on it now.
            let fd = stream.into_raw_fd();
            // SAFETY: `into_raw_fd` gave up ownership of a valid, open socket descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            host.forward(owner, Forward::WebSocket { fd, upgrade });
            return;
        }
    }
    accept(host, stream, upgrade).await
}

/// Takes over a connection handed over by another shard.
pub(crate) fn adopt_websocket<H: Host>(host: Rc<H>, fd: OwnedFd, upgrade: Upgrade) {
    let std_stream = std::net::TcpStream::from(fd);
    let adopted = std_stream
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(std_stream));
    match adopted {
        Ok(stream) => {
            monoio::spawn(accept(host, stream, upgrade));
        }
        Err(error) => tracing::warn!(%error, "could not adopt a WebSocket connection"),
    }
}

/// Opens or upgrades the session, answers 101 and runs the connection.
async fn accept<H: Host>(host: Rc<H>, mut stream: TcpStream, upgrade: Upgrade) {
    let Upgrade {
        accept,
        sid,
        peer,
        leftover,
    } = upgrade;
    // Copied out so that the HTTP read buffer it points into is freed now, not at the end of
    // the connection; most upgrades carry no leftover bytes at all.
    let mut buf = BytesMut::from(&leftover[..]);
    drop(leftover);
    let now = Instant::now();
    let link = {
        let mut engine = host.engine().borrow_mut();
        match sid {
            None => Ok(engine.open_websocket(now, peer).1),
            Some(sid) => engine
                .find(sid.as_str())
                .and_then(|key| engine.ws_upgrade(key, now)),
        }
    };
    let link = match link {
        Ok(link) => link,
        Err(EngineError::BadRequest) => {
            // The session exists but already has (or is getting) a WebSocket: accept, then
            // close this extra one at once, as the reference does.
            let mut out = Vec::with_capacity(256);
            http::write_switching_protocols(&mut out, &accept);
            out.extend_from_slice(&crate::codec::ws::close_frame(1000, ""));
            let _ = stream.write_all(out).await;
            return;
        }
        Err(error) => {
            let reply = PollReply::error(error);
            let mut out = Vec::new();
            http::write_response_head(
                &mut out,
                reply.status,
                Some(reply.content_type),
                reply.body.len(),
                false,
                b"",
            );
            out.extend_from_slice(&reply.body);
            let _ = stream.write_all(out).await;
            return;
        }
    };
    let mut head = Vec::with_capacity(160);
    http::write_switching_protocols(&mut head, &accept);
    let (result, _) = stream.write_all(head).await;
    if result.is_err() {
        host.engine().borrow_mut().ws_reader_done(link);
        host.engine().borrow_mut().ws_writer_done(link);
        host.pump();
        return;
    }
    host.pump();
    let fd = stream.as_raw_fd();
    let (mut reader, writer) = stream.into_split();
    monoio::spawn(write_loop(host.clone(), writer, fd, link));
    let mut decoder = Decoder::new(host.engine_config().max_payload);
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    host.engine()
                        .borrow_mut()
                        .ws_message(link, Instant::now(), message);
                    host.pump();
                }
                Ok(None) => break,
                Err(error) => {
                    host.engine().borrow_mut().ws_error(link, error);
                    host.pump();
                    break 'read;
                }
            }
        }
        if !super::read_into(&mut reader, &mut buf, READ_CHUNK).await {
            host.engine().borrow_mut().ws_reader_done(link);
            host.pump();
            break;
        }
    }
}

/// Drains the link's queue into vectored writes until the link ends.
async fn write_loop<H: Host>(
    host: Rc<H>,
    mut writer: OwnedWriteHalf<TcpStream>,
    fd: RawFd,
    link: LinkKey,
) {
    let hold = host.engine().borrow().ws_hold_until(link);
    if let Some(until) = hold {
        monoio::time::sleep_until(until.into()).await;
    }
    let mut batch = FrameBatch::default();
    loop {
        let step = poll_fn(|cx| {
            host.engine()
                .borrow_mut()
                .ws_poll_write(link, Instant::now(), cx, &mut batch.frames)
        })
        .await;
        while !batch.frames.is_empty() {
            let rest = if batch.frames.len() > MAX_IOVECS {
                batch.frames.split_off(MAX_IOVECS)
            } else {
                Vec::new()
            };
            batch.prepare();
            let write = writer.write_vectored_all(batch);
            let (result, written) = monoio::select! {
                done = write => done,
                _ = stuck_after_close(&*host, link) => {
                    // The peer stopped reading and the link must end: give up on it.
                    finish(&*host, fd, link);
                    return;
                }
            };
            batch = written;
            batch.frames.clear();
            batch.frames.extend(rest);
            if result.is_err() {
                finish(&*host, fd, link);
                return;
            }
        }
        if step == WriteBatch::Close {
            finish(&*host, fd, link);
            return;
        }
    }
}

/// Completes once the link is closing and a write has stayed blocked for a ping timeout
/// since then, so a client that never reads can't hold a closed session's connection.
async fn stuck_after_close<H: Host>(host: &H, link: LinkKey) {
    poll_fn(|cx| host.engine().borrow_mut().ws_poll_closing(link, cx)).await;
    monoio::time::sleep(host.engine_config().ping_timeout).await;
}

fn finish<H: Host>(host: &H, fd: RawFd, link: LinkKey) {
    // Wakes the reader (its pending read returns) so both halves end.
    // SAFETY: `fd` belongs to the stream whose write half this task still owns, so it is open.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
    host.engine().borrow_mut().ws_writer_done(link);
    host.pump();
}

/// Frames plus the iovec array pointing into them, for one `writev`.
#[derive(Default)]
struct FrameBatch {
    frames: Vec<Bytes>,
    /// INVARIANT: after `prepare`, `iovecs[i]` points into `frames[i]`, which is not touched
    /// until the write completes.
    iovecs: Vec<libc::iovec>,
}

impl FrameBatch {
    fn prepare(&mut self) {
        self.iovecs.clear();
        self.iovecs
            .extend(self.frames.iter().map(|frame| libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            }));
    }
}

// SAFETY: the iovecs point into `frames`, whose heap buffers (shared `Bytes`) do not move or
// change while the runtime owns the batch; both vectors are only modified after the write.
unsafe impl IoVecBuf for FrameBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}
