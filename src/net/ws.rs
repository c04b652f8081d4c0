//! The WebSocket driver: completes the upgrade (on the owner shard, after a hand-off if the
//! connection landed elsewhere), then runs the connection as one small task that reads
//! (frames -> engine) and writes (engine queue -> one vectored write per batch) concurrently.
//!
//! Idle connections are the common case (tens of thousands per shard), so what a connection
//! holds between messages is kept small: no read buffer (it waits for readability, then
//! reads), no write buffers (the engine's queue is handed over whole and dropped once
//! written), and no timer (boxed, in the rare waits that need one).

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoVecBuf;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::{Forward, Host, Upgrade};
use crate::codec::deflate::Inflater;
use crate::codec::http;
use crate::codec::ws::{self, Decoder};
use crate::engine::{EngineError, LinkKey, PollReply, WriteBatch};

/// Read buffer of a WebSocket connection, allocated when the peer has sent something and
/// freed once every complete message is taken off it; it doubles while a message needs more.
const READ_CHUNK: usize = 1024;

/// Most frames handed to one `writev` (the kernel's IOV_MAX is 1024).
const MAX_IOVECS: usize = 1024;

thread_local! {
    /// The shard's one inflater for compressed messages, made on first use. permessage-deflate
    /// is agreed without client context takeover, so no message depends on an earlier one and
    /// every connection of the shard can share it (a connection holds no inflate window).
    static INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
}

/// Routes an upgrade to the owner shard, or completes it here.
pub(super) async fn start<H: Host>(host: Rc<H>, stream: TcpStream, upgrade: Upgrade) {
    if let Some(sid) = upgrade.sid {
        let owner = sid.shard();
        if owner != host.shard() && owner.index() < usize::from(host.shards()) {
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
        deflate,
        sid,
        peer,
        leftover,
    } = upgrade;
    // Copied out so that the HTTP read buffer it points into is freed now, not at the end of
    // the connection; most upgrades carry no leftover bytes at all.
    let buf = BytesMut::from(&leftover[..]);
    drop(leftover);
    let now = Instant::now();
    let link = {
        let mut engine = host.engine().borrow_mut();
        match sid {
            None => engine
                .admit(peer.address, now)
                .map(|()| engine.open_websocket(now, peer).1),
            Some(_) if !engine.accepts_sessions() => Err(EngineError::ShuttingDown),
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
            http::write_switching_protocols(&mut out, &accept, None);
            out.extend_from_slice(&ws::close_frame(ws::CLOSE_NORMAL, ""));
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
    // The client's offer is taken only when the server turned the extension on.
    let deflate = deflate.filter(|_| host.engine_config().per_message_deflate);
    if deflate.is_some() {
        host.engine().borrow_mut().deflate_link(link);
    }
    let mut head = Vec::with_capacity(240);
    http::write_switching_protocols(&mut head, &accept, deflate.as_ref());
    let (result, _) = stream.write_all(head).await;
    if result.is_err() {
        host.engine().borrow_mut().ws_reader_done(link);
        host.engine().borrow_mut().ws_writer_done(link);
        host.pump();
        return;
    }
    host.pump();
    // The task that ran the handshake (for a connection accepted here, the whole HTTP
    // connection's) ends now; the connection lives on in a task sized for it alone.
    monoio::spawn(run(host, stream, link, buf, deflate.is_some()));
}

/// Runs an open link until both directions are done. Reading and writing are two futures of
/// one task: whichever woke it (the peer sent something, the engine queued frames) makes
/// progress, and a write blocked on a peer that does not read never holds up reading.
///
/// A plain function returning the joined futures, not an `async fn`: the task then holds just
/// the two loops, without a second copy of the arguments they were made from.
fn run<H: Host>(
    host: Rc<H>,
    stream: TcpStream,
    link: LinkKey,
    buf: BytesMut,
    deflate: bool,
) -> impl Future<Output = ((), ())> {
    let fd = stream.as_raw_fd();
    let (reader, writer) = stream.into_split();
    let max_payload = host.engine_config().max_payload;
    let decoder = if deflate {
        Decoder::with_deflate(max_payload)
    } else {
        Decoder::new(max_payload)
    };
    futures_util::future::join(
        read_loop(host.clone(), reader, fd, link, buf, decoder),
        write_loop(host, writer, fd, link),
    )
}

/// The next message in `buf`; a compressed one is inflated with the shard's inflater.
fn decode(decoder: &mut Decoder, buf: &mut BytesMut) -> Result<Option<ws::Message>, ws::WsError> {
    if !decoder.inflates() {
        return decoder.decode(buf);
    }
    INFLATER.with(|cell| {
        let mut inflater = cell.borrow_mut();
        let inflater = inflater.get_or_insert_with(Inflater::new);
        decoder.decode_with(buf, Some(inflater))
    })
}

/// Feeds every message the peer sends to the engine until the peer stops (or breaks the
/// protocol). `buf` holds what was read and not yet decoded.
///
/// It waits for readability with no buffer, then reads what is there without blocking, so an
/// idle connection holds no read buffer and no read in flight.
async fn read_loop<H: Host>(
    host: Rc<H>,
    reader: OwnedReadHalf<TcpStream>,
    fd: RawFd,
    link: LinkKey,
    mut buf: BytesMut,
    mut decoder: Decoder,
) {
    loop {
        loop {
            match decode(&mut decoder, &mut buf) {
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
                    return;
                }
            }
        }
        if buf.is_empty() {
            // No partial frame: let the buffer go (messages split off it keep their bytes on
            // their own) before waiting.
            buf = BytesMut::new();
        }
        // Every read waits for readiness first, even when more may be buffered: on io_uring the
        // wait is a turn of the runtime, so a peer that floods can't hold the shard up.
        if !readable(&reader).await {
            break;
        }
        match read_now(fd, &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::debug!(%error, "a WebSocket read failed; the peer is gone");
                break;
            }
        }
    }
    host.engine().borrow_mut().ws_reader_done(link);
    host.pump();
}

/// Waits until a read would not block: bytes, EOF or an error. False if waiting failed.
async fn readable(reader: &OwnedReadHalf<TcpStream>) -> bool {
    // SAFETY: the two halves share the stream through an `UnsafeCell`, and monoio's `Split`
    // contract lets the read side run concurrently with the write side. `readable` reads the
    // stream only when first polled, to clone the shared fd into the poll it submits; the
    // write half borrows the stream only inside its synchronous calls that submit a write, on
    // this same thread, so the two accesses never overlap.
    let stream = unsafe { &*reader.0.get() };
    // Not relaxed: on the epoll driver a relaxed wait may report a stale readiness (the reads
    // below bypass the driver, which never sees them drain the socket); a strict one checks.
    stream.readable(false).await.is_ok()
}

/// Reads what the socket holds into the spare capacity of `buf` without blocking, growing
/// `buf` as `read_into` does. `Ok(0)` is EOF; `WouldBlock`, nothing to read yet.
fn read_now(fd: RawFd, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK.max(buf.capacity()));
    }
    let spare = buf.spare_capacity_mut();
    // SAFETY: `fd` is this connection's socket, open while its read half lives (the caller
    // holds it); `recv` writes at most `spare.len()` bytes into `spare`, memory `buf` owns.
    let read = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    let Ok(read) = usize::try_from(read) else {
        return Err(std::io::Error::last_os_error());
    };
    // SAFETY: `recv` initialised the first `read` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + read) };
    Ok(read)
}

/// Drains the link's queue into vectored writes until the link ends.
async fn write_loop<H: Host>(
    host: Rc<H>,
    mut writer: OwnedWriteHalf<TcpStream>,
    fd: RawFd,
    link: LinkKey,
) {
    // While this task waits idle, the shard writes the link's frames itself (`write_direct`),
    // with no wake-up of this task per message.
    host.engine().borrow_mut().ws_write_directly(link, fd);
    let hold = host.engine().borrow().ws_hold_until(link);
    if let Some(until) = hold {
        // Boxed, like every timer here: a timer is hundreds of bytes, and it would otherwise
        // take that much room in every connection's task for the whole connection.
        Box::pin(monoio::time::sleep_until(until.into())).await;
    }
    loop {
        // A fresh vector each time: the engine hands its queue over whole, so neither the
        // link nor this task keeps a buffer while the connection is idle.
        let mut frames = Vec::new();
        let step = poll_fn(|cx| {
            host.engine()
                .borrow_mut()
                .poll_ws_write(link, Instant::now(), cx, &mut frames)
        })
        .await;
        // Boxed: the writes exist only while bytes move; inline, their room would be taken in
        // every connection's task for the connection's whole life.
        if !frames.is_empty() && !Box::pin(write_frames(&*host, &mut writer, link, frames)).await {
            finish(&*host, fd, link);
            return;
        }
        if step == WriteBatch::Close {
            finish(&*host, fd, link);
            return;
        }
    }
}

/// Writes `frames`, at most `MAX_IOVECS` to a `writev`. False if the connection broke, or if
/// the link is closing and a write stayed blocked for a ping timeout since then: a client that
/// never reads can't hold a closed session's connection. The emptied vectors go back to the
/// shard for reuse.
async fn write_frames<H: Host>(
    host: &H,
    writer: &mut OwnedWriteHalf<TcpStream>,
    link: LinkKey,
    mut frames: Vec<Bytes>,
) -> bool {
    while !frames.is_empty() {
        let rest = if frames.len() > MAX_IOVECS {
            frames.split_off(MAX_IOVECS)
        } else {
            Vec::new()
        };
        let mut write = pin!(write_all(writer, FrameBatch::new(frames)));
        let (result, batch) = monoio::select! {
            done = &mut write => done,
            () = poll_fn(|cx| host.engine().borrow_mut().poll_ws_closing(link, cx)) => {
                let give_up = Box::pin(monoio::time::sleep(host.engine_config().ping_timeout));
                monoio::select! {
                    done = write => done,
                    () = give_up => return false,
                }
            }
        };
        if result.is_err() {
            return false;
        }
        let (written, iovecs) = batch.into_parts();
        host.engine().borrow_mut().recycle_queue(written);
        SPARE_IOVECS.with(|spare| spare.borrow_mut().give(iovecs));
        frames = rest;
    }
    true
}

/// Writes all of `batch`, in as many `writev`s as the socket takes, and gives the batch back.
/// (monoio's `write_vectored_all` would first copy the iovec array; this advances the batch's
/// own.)
async fn write_all(
    writer: &mut OwnedWriteHalf<TcpStream>,
    mut batch: FrameBatch,
) -> (std::io::Result<()>, FrameBatch) {
    while !batch.is_written() {
        let (result, rest) = writer.writev(batch).await;
        batch = rest;
        match result {
            Ok(0) => return (Err(std::io::ErrorKind::WriteZero.into()), batch),
            Ok(written) => batch.advance(written),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return (Err(error), batch),
        }
    }
    (Ok(()), batch)
}

/// Writes every link listed for a direct write ([`Engine::take_direct`]): the frames queued
/// this turn for links whose writer waits idle, each link's in as few `sendmsg`s as the socket
/// takes without blocking (at most `MAX_IOVECS` frames each). What a socket does not take, or
/// a failed write, goes back to the link's writer task ([`Engine::ws_unwritten`]), which writes
/// it (or meets the error) through the runtime. The shard calls this once per turn, after the
/// turn's broadcasts are queued, so each link gets one write for all of them.
///
/// [`Engine::take_direct`]: crate::engine::Engine::take_direct
/// [`Engine::ws_unwritten`]: crate::engine::Engine::ws_unwritten
pub(crate) fn write_direct<H: Host>(host: &H) {
    let engine = host.engine();
    let mut engine = engine.borrow_mut();
    while let Some((link, fd, frames)) = engine.take_direct() {
        match send_now(fd, &frames) {
            Ok(Sent::All) => engine.recycle_queue(frames),
            Ok(Sent::Part(written)) => engine.ws_unwritten(link, rest_after(frames, written)),
            Err(_) => engine.ws_unwritten(link, frames),
        }
    }
}

/// How much of a direct write the socket took.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    All,
    /// These many bytes.
    Part(usize),
}

/// Frames per `sendmsg` from an iovec array on the stack (a link's turn is most often one
/// or a few frames); more go in chunks of `MAX_IOVECS` from the shard's spare arrays.
const STACK_IOVECS: usize = 16;

/// Writes as much of `frames` as the socket takes now, never blocking. An error only when
/// nothing was written.
fn send_now(fd: RawFd, frames: &[Bytes]) -> std::io::Result<Sent> {
    let mut written = 0;
    let chunk_len = if frames.len() <= STACK_IOVECS {
        STACK_IOVECS
    } else {
        MAX_IOVECS
    };
    for chunk in frames.chunks(chunk_len) {
        let iovec = |frame: &Bytes| libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        };
        let size: usize = chunk.iter().map(Bytes::len).sum();
        let sent = if chunk.len() <= STACK_IOVECS {
            let mut iovecs = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; STACK_IOVECS];
            for (slot, frame) in iovecs.iter_mut().zip(chunk) {
                *slot = iovec(frame);
            }
            send_iovecs(fd, &mut iovecs[..chunk.len()])
        } else {
            let mut iovecs = SPARE_IOVECS.with(|spare| spare.borrow_mut().take());
            iovecs.extend(chunk.iter().map(iovec));
            let sent = send_iovecs(fd, &mut iovecs);
            SPARE_IOVECS.with(|spare| spare.borrow_mut().give(iovecs));
            sent
        };
        match usize::try_from(sent) {
            Ok(sent) if sent == size => written += sent,
            Ok(sent) => return Ok(Sent::Part(written + sent)),
            Err(_) if written > 0 => return Ok(Sent::Part(written)),
            Err(_) => return Err(std::io::Error::last_os_error()),
        }
    }
    Ok(Sent::All)
}

/// One `sendmsg` of `iovecs` that never blocks: what it returned.
fn send_iovecs(fd: RawFd, iovecs: &mut [libc::iovec]) -> isize {
    // SAFETY: an all-zero `msghdr` is valid (no address, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iovecs.as_mut_ptr();
    message.msg_iovlen = iovecs.len() as _;
    // SAFETY: `fd` is the link's socket, open while its writer task holds the write half (the
    // engine forgets the link before that task ends); the iovecs point into frames the caller
    // keeps alive and unchanged for the call, which is synchronous. `MSG_DONTWAIT`: never
    // blocks, whatever the socket's mode; `MSG_NOSIGNAL`: a closed peer is an error, not
    // SIGPIPE.
    unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) }
}

/// The part of `frames` after their first `written` bytes.
fn rest_after(mut frames: Vec<Bytes>, mut written: usize) -> Vec<Bytes> {
    let whole = frames
        .iter()
        .take_while(|frame| {
            let done = frame.len() <= written;
            if done {
                written -= frame.len();
            }
            done
        })
        .count();
    frames.drain(..whole);
    if let Some(first) = frames.first_mut() {
        *first = first.slice(written..);
    }
    frames
}

/// Emptied iovec arrays of this shard's thread, reused by the next batches.
#[derive(Default)]
struct SpareIovecs(Vec<Vec<libc::iovec>>);

impl SpareIovecs {
    const MAX: usize = 1024;

    fn take(&mut self) -> Vec<libc::iovec> {
        self.0.pop().unwrap_or_default()
    }

    fn give(&mut self, mut iovecs: Vec<libc::iovec>) {
        iovecs.clear();
        if self.0.len() < Self::MAX && iovecs.capacity() <= MAX_IOVECS {
            self.0.push(iovecs);
        }
    }
}

thread_local! {
    static SPARE_IOVECS: std::cell::RefCell<SpareIovecs> = std::cell::RefCell::default();
}

fn finish<H: Host>(host: &H, fd: RawFd, link: LinkKey) {
    // Wakes the reader (its pending wait or read returns) so both halves end.
    // SAFETY: `fd` belongs to the stream whose write half this task still owns, so it is open.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
    host.engine().borrow_mut().ws_writer_done(link);
    host.pump();
}

/// Frames plus the iovec array pointing into them, for `writev`s until all is written.
struct FrameBatch {
    /// Owned only to keep the bytes alive while writes are in flight.
    frames: Vec<Bytes>,
    /// INVARIANT: `iovecs[i]` points into `frames[i]` (past the bytes already written), and
    /// the vector is not resized after `new`.
    iovecs: Vec<libc::iovec>,
    /// Iovecs before this one are written.
    first: usize,
}

impl FrameBatch {
    fn new(frames: Vec<Bytes>) -> FrameBatch {
        let mut iovecs = SPARE_IOVECS.with(|spare| spare.borrow_mut().take());
        iovecs.extend(frames.iter().map(|frame| libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        }));
        FrameBatch {
            frames,
            iovecs,
            first: 0,
        }
    }

    /// The frames (to drop or reuse) and the iovec array (to reuse).
    fn into_parts(self) -> (Vec<Bytes>, Vec<libc::iovec>) {
        (self.frames, self.iovecs)
    }

    fn is_written(&self) -> bool {
        self.first == self.iovecs.len()
    }

    /// Skips `written` bytes from the front.
    fn advance(&mut self, mut written: usize) {
        while let Some(iovec) = self.iovecs.get_mut(self.first) {
            if written < iovec.iov_len {
                iovec.iov_base = iovec.iov_base.cast::<u8>().wrapping_add(written).cast();
                iovec.iov_len -= written;
                return;
            }
            written -= iovec.iov_len;
            self.first += 1;
        }
    }
}

// SAFETY: the iovecs from `first` on point into `frames`, whose heap buffers (shared `Bytes`)
// do not move or change while the runtime owns the batch; the array is only adjusted between
// writes, never while one is in flight.
unsafe impl IoVecBuf for FrameBatch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs[self.first..].as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len() - self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_write_takes_what_the_socket_takes_and_leaves_the_rest() {
        let mut fds = [0; 2];
        // SAFETY: `socketpair` writes two descriptors into the array, which this test owns.
        let made =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(made, 0);
        let frames: Vec<Bytes> = (0u8..8).map(|n| Bytes::from(vec![n; 64 * 1024])).collect();
        let total: usize = frames.iter().map(Bytes::len).sum();
        // Nobody reads: the socket takes its buffer's worth, not 512 KiB, and never blocks.
        let Sent::Part(written) = send_now(fds[0], &frames).expect("a first write") else {
            panic!("all of it written");
        };
        assert!(written > 0 && written < total, "{written}");
        let rest = rest_after(frames.clone(), written);
        let all: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let left: Vec<u8> = rest.iter().flat_map(|f| f.iter().copied()).collect();
        assert_eq!(left, all[written..]);
        // Full now: nothing more goes, and that is an error (`WouldBlock`), not a hang.
        let again = send_now(fds[0], &rest).expect_err("full");
        assert_eq!(again.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(rest_after(frames.clone(), 0), frames);
        // A few small frames, from the stack's iovecs: all of them (the peer reads now).
        let mut drained = vec![0u8; 1 << 20];
        // SAFETY: reads into a buffer this test owns, at most its length.
        while unsafe {
            libc::recv(
                fds[1],
                drained.as_mut_ptr().cast(),
                drained.len(),
                libc::MSG_DONTWAIT,
            )
        } > 0
        {}
        let small: Vec<Bytes> = (0..20).map(|n| Bytes::from(vec![n; 10])).collect();
        assert_eq!(send_now(fds[0], &small).expect("small frames"), Sent::All);
        assert!(rest_after(frames, total).is_empty());
        // SAFETY: the two descriptors `socketpair` made, closed once.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    /// The bytes the batch's iovecs still point at, in order.
    fn unwritten(batch: &FrameBatch) -> Vec<u8> {
        batch.iovecs[batch.first..]
            .iter()
            // SAFETY: every iovec from `first` on points into a frame the batch owns.
            .flat_map(|v| unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) })
            .copied()
            .collect()
    }

    #[test]
    fn a_batch_advances_across_partial_writes() {
        let frames = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"fghij"),
        ];
        let all = b"abcdefghij";
        for first in 0..=all.len() {
            for second in 0..=all.len() - first {
                let mut batch = FrameBatch::new(frames.clone());
                batch.advance(first);
                assert_eq!(unwritten(&batch), &all[first..]);
                batch.advance(second);
                assert_eq!(unwritten(&batch), &all[first + second..]);
                assert_eq!(batch.is_written(), first + second == all.len());
                assert_eq!(
                    batch.read_iovec_len(),
                    batch.iovecs.len() - batch.first,
                    "the kernel sees only what is left"
                );
            }
        }
    }
}
