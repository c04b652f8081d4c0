//! The engine driven by hand with simulated time: no sockets, no runtime.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::task::noop_waker_ref;

use super::*;
use crate::codec::frame::Frame;
use crate::codec::ws;
use crate::config::SlowConsumerPolicy;
use crate::key::ShardId;

const INTERVAL: Duration = Duration::from_millis(300);
const TIMEOUT: Duration = Duration::from_millis(200);

fn engine() -> Engine {
    Engine::new(
        ShardId::new(0),
        EngineConfig {
            ping_interval: INTERVAL,
            ping_timeout: TIMEOUT,
            max_outbound_bytes: 1000,
            ..EngineConfig::default()
        },
    )
}

fn peer(version: Version) -> Peer {
    Peer {
        endpoint: 0,
        version,
        query: "EIO=4&transport=polling&token=abc".into(),
        address: None,
        headers: Box::default(),
    }
}

fn open(engine: &mut Engine, now: Instant, version: Version) -> SessionKey {
    let (key, reply) = engine.open_polling(now, peer(version), true);
    assert_eq!(reply.status, 200);
    assert_eq!(engine.next_event(), Some(Event::Open(key)));
    key
}

/// Issues a GET and returns what it was answered with, if answered yet.
fn get(engine: &mut Engine, key: SessionKey) -> oneshot::Receiver<PollReply> {
    let (sender, receiver) = oneshot::channel();
    engine.polling_get(key, sender);
    engine.flush();
    receiver
}

fn body(receiver: &mut oneshot::Receiver<PollReply>) -> Option<(u16, String)> {
    let reply = receiver.try_recv().ok().flatten()?;
    Some((
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    ))
}

fn post(engine: &mut Engine, key: SessionKey, now: Instant, payload: &str) -> u16 {
    engine
        .polling_post(key, now, Bytes::copy_from_slice(payload.as_bytes()), false)
        .status
}

fn written(engine: &mut Engine, link: LinkKey, now: Instant) -> (Vec<Bytes>, Poll<WriteBatch>) {
    let mut out = Vec::new();
    let mut cx = Context::from_waker(noop_waker_ref());
    let step = engine.poll_ws_write(link, now, &mut cx, &mut out);
    (out, step)
}

fn ws_text(text: &str) -> ws::Message {
    ws::Message::Text(Bytes::copy_from_slice(text.as_bytes()))
}

#[test]
fn handshake_carries_the_open_packet() {
    let mut engine = engine();
    let (key, reply) = engine.open_polling(Instant::now(), peer(Version::V4), true);
    let text = std::str::from_utf8(&reply.body).unwrap();
    let id = engine.id(key).unwrap();
    assert!(text.starts_with(&format!("0{{\"sid\":\"{id}\",\"upgrades\":[\"websocket\"]")));
    assert_eq!(engine.find(id.as_str()), Ok(key));
    assert_eq!(
        engine.find("AAAAAAAAAAAAAAAAAAAAAAAA"),
        Err(EngineError::UnknownSid)
    );
}

#[test]
fn v4_heartbeat_pings_then_times_out() {
    let mut engine = engine();
    let start = Instant::now();
    let key = open(&mut engine, start, Version::V4);
    assert_eq!(engine.next_deadline(), Some(start + INTERVAL));
    engine.handle_timeouts(start + INTERVAL);
    let mut poll = get(&mut engine, key);
    assert_eq!(body(&mut poll), Some((200, "2".into())));
    // A pong moves the next ping a full interval after it.
    let pong_at = start + INTERVAL + Duration::from_millis(50);
    assert_eq!(post(&mut engine, key, pong_at, "3"), 200);
    assert_eq!(engine.next_deadline(), Some(pong_at + INTERVAL));
    engine.handle_timeouts(pong_at + INTERVAL);
    // No pong this time: the session dies `TIMEOUT` after the ping was queued.
    engine.handle_timeouts(pong_at + INTERVAL + TIMEOUT);
    assert_eq!(
        engine.next_event(),
        Some(Event::Close(key, CloseReason::PingTimeout))
    );
    assert_eq!(engine.session_count(), 0);
}

#[test]
fn v3_client_pings_are_answered_and_required() {
    let mut engine = engine();
    let start = Instant::now();
    let key = open(&mut engine, start, Version::V3);
    assert_eq!(post(&mut engine, key, start, "1:2"), 200);
    let mut poll = get(&mut engine, key);
    assert_eq!(body(&mut poll), Some((200, "1:3".into())));
    engine.handle_timeouts(start + INTERVAL + TIMEOUT);
    assert_eq!(
        engine.next_event(),
        Some(Event::Close(key, CloseReason::PingTimeout))
    );
}

#[test]
fn a_poll_is_answered_with_everything_queued() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V4);
    let mut poll = get(&mut engine, key);
    assert_eq!(body(&mut poll), None, "nothing queued yet: the GET waits");
    engine.send(key, &Frame::text(b"4a"), false).unwrap();
    engine
        .send(key, &Frame::binary(&[1, 2, 3, 4]), false)
        .unwrap();
    engine.flush();
    assert_eq!(body(&mut poll), Some((200, "4a\x1ebAQIDBA==".into())));
}

#[test]
fn posted_packets_become_events_and_garbage_closes() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V4);
    assert_eq!(post(&mut engine, key, now, "4hello\x1ebAQID"), 200);
    assert_eq!(
        engine.next_event(),
        Some(Event::Message(key, Bytes::from_static(b"hello")))
    );
    assert_eq!(
        engine.next_event(),
        Some(Event::Binary(key, Bytes::from_static(&[1, 2, 3])))
    );
    assert_eq!(post(&mut engine, key, now, "abc"), 400);
    assert_eq!(
        engine.next_event(),
        Some(Event::Close(key, CloseReason::ParseError))
    );
}

#[test]
fn duplicate_poll_closes_the_session() {
    let mut engine = engine();
    let key = open(&mut engine, Instant::now(), Version::V4);
    let mut first = get(&mut engine, key);
    let mut second = get(&mut engine, key);
    assert_eq!(body(&mut second).map(|(status, _)| status), Some(400));
    assert_eq!(body(&mut first), Some((200, "1".into())));
    assert_eq!(engine.session_count(), 0);
}

#[test]
fn client_close_answers_the_pending_poll_with_noop() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V4);
    let mut poll = get(&mut engine, key);
    assert_eq!(post(&mut engine, key, now, "1"), 200);
    assert_eq!(body(&mut poll), Some((200, "6".into())));
    assert_eq!(
        engine.next_event(),
        Some(Event::Close(key, CloseReason::ClientClose))
    );
}

#[test]
fn upgrade_probe_then_switch() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V4);
    let mut poll = get(&mut engine, key);
    let link = engine.ws_upgrade(key, now).unwrap();
    assert_eq!(engine.ws_upgrade(key, now), Err(EngineError::BadRequest));
    engine.ws_message(link, now, ws_text("2probe"));
    let (frames, _) = written(&mut engine, link, now);
    assert_eq!(&frames[0][2..], b"3probe");
    assert_eq!(
        body(&mut poll),
        Some((200, "6".into())),
        "the poll is released at once"
    );
    engine.send(key, &Frame::text(b"4queued"), false).unwrap();
    engine.ws_message(link, now, ws_text("5"));
    assert_eq!(engine.next_event(), Some(Event::Upgraded(key)));
    let (frames, _) = written(&mut engine, link, now);
    assert_eq!(
        &frames[0][2..],
        b"4queued",
        "frames queued during the upgrade move over"
    );
    let mut late = get(&mut engine, key);
    assert_eq!(body(&mut late).map(|(status, _)| status), Some(400));
    engine.ws_message(link, now, ws_text("4hi"));
    assert_eq!(
        engine.next_event(),
        Some(Event::Message(key, Bytes::from_static(b"hi")))
    );
}

#[test]
fn the_upgrade_is_an_event_and_the_transport_name_follows_it() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V4);
    assert_eq!(engine.transport_name(key), Some("polling"));
    let link = engine.ws_upgrade(key, now).unwrap();
    engine.ws_message(link, now, ws_text("2probe"));
    assert_eq!(engine.transport_name(key), Some("polling"), "while probing");
    assert_eq!(engine.next_event(), None);
    engine.ws_message(link, now, ws_text("5"));
    assert_eq!(engine.next_event(), Some(Event::Upgraded(key)));
    assert_eq!(engine.transport_name(key), Some("websocket"));
    let (direct, _) = engine.open_websocket(now, peer(Version::V4));
    assert_eq!(
        engine.next_event(),
        Some(Event::Open(direct)),
        "no upgrade event"
    );
    assert_eq!(engine.transport_name(direct), Some("websocket"));
    engine.close(key, CloseReason::ServerClose);
    assert_eq!(engine.transport_name(key), None);
}

#[test]
fn a_failed_probe_leaves_polling_in_place() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V4);
    let link = engine.ws_upgrade(key, now).unwrap();
    engine.ws_reader_done(link);
    engine.ws_writer_done(link);
    assert_eq!(engine.session_count(), 1);
    assert!(engine.ws_upgrade(key, now).is_ok(), "a new probe may start");
}

#[test]
fn websocket_session_writes_and_closes() {
    let mut engine = engine();
    let now = Instant::now();
    let (key, link) = engine.open_websocket(now, peer(Version::V4));
    let (frames, step) = written(&mut engine, link, now);
    assert_eq!(step, Poll::Ready(WriteBatch::Frames));
    assert_eq!(frames[0][2], b'0');
    engine.close(key, CloseReason::ServerClose);
    assert_eq!(
        engine.send(key, &Frame::text(b"4late"), false),
        Err(SendError::Closed)
    );
    let (frames, step) = written(&mut engine, link, now);
    assert_eq!(step, Poll::Ready(WriteBatch::Close));
    assert_eq!(frames[0][0], 0x88, "a close frame ends the connection");
}

/// Counts the wakes of the wakers made from it.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Wakes {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn an_idle_writer_is_not_woken_for_frames_net_writes_directly() {
    let mut engine = engine();
    let now = Instant::now();
    let (key, link) = engine.open_websocket(now, peer(Version::V4));
    engine.ws_write_directly(link, 7);
    let _ = written(&mut engine, link, now);
    // The writer waits idle, with a waker that counts.
    let wakes = std::sync::Arc::new(Wakes::default());
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut out = Vec::new();
    assert!(engine
        .poll_ws_write(link, now, &mut cx, &mut out)
        .is_pending());
    // Two packets: listed once, the writer not woken, the deferred task is.
    let deferred = std::sync::Arc::new(Wakes::default());
    let deferred_waker = std::task::Waker::from(deferred.clone());
    assert!(engine
        .poll_deferred(&mut Context::from_waker(&deferred_waker))
        .is_pending());
    engine.send(key, &Frame::text(b"4one"), false).unwrap();
    engine.send(key, &Frame::text(b"4two"), false).unwrap();
    assert_eq!(wakes.count(), 0);
    assert_eq!(deferred.count(), 1);
    assert!(engine
        .poll_deferred(&mut Context::from_waker(noop_waker_ref()))
        .is_ready());
    let (taken, fd, frames) = engine.take_direct().expect("listed");
    assert_eq!((taken, fd, frames.len()), (link, 7, 2));
    assert!(engine.take_direct().is_none(), "listed once");
    // What the socket did not take goes first, and wakes the writer.
    engine.send(key, &Frame::text(b"4three"), false).unwrap();
    engine.ws_unwritten(link, frames[1..].to_vec());
    assert_eq!(wakes.count(), 1);
    let (rest, step) = written(&mut engine, link, now);
    assert_eq!(step, Poll::Ready(WriteBatch::Frames));
    assert_eq!(rest.len(), 2);
    assert!(rest[0].ends_with(b"4two") && rest[1].ends_with(b"4three"));
    // A writer busy writing (not idle) is woken as before, never listed.
    engine.send(key, &Frame::text(b"4four"), false).unwrap();
    assert!(engine.take_direct().is_none());
    // A closing link is never written directly.
    let _ = written(&mut engine, link, now);
    assert!(engine
        .poll_ws_write(link, now, &mut cx, &mut out)
        .is_pending());
    engine.send(key, &Frame::text(b"4five"), false).unwrap();
    engine.close(key, CloseReason::ServerClose);
    assert!(engine.take_direct().is_none());
}

#[test]
fn v3_binary_frames_carry_the_type_byte() {
    let mut engine = engine();
    let now = Instant::now();
    let (key, link) = engine.open_websocket(now, peer(Version::V3));
    let _open = written(&mut engine, link, now);
    engine.send(key, &Frame::binary(&[9, 9]), false).unwrap();
    let (frames, _) = written(&mut engine, link, now);
    assert_eq!(&frames[0][..], &[0x82, 3, 4, 9, 9]);
}

#[test]
fn volatile_frames_are_dropped_when_not_writable() {
    let mut engine = engine();
    let key = open(&mut engine, Instant::now(), Version::V4);
    assert_eq!(
        engine.send(key, &Frame::text(b"4v"), true),
        Err(SendError::VolatileDropped),
        "no pending poll"
    );
    let mut poll = get(&mut engine, key);
    assert_eq!(engine.send(key, &Frame::text(b"4v"), true), Ok(()));
    engine.flush();
    assert_eq!(body(&mut poll), Some((200, "4v".into())));
}

#[test]
fn a_slow_consumer_is_disconnected() {
    let mut engine = engine();
    let now = Instant::now();
    let (key, _link) = engine.open_websocket(now, peer(Version::V4));
    let big = Frame::text(&[b'4'; 600]);
    assert_eq!(engine.send(key, &big, false), Ok(()));
    assert_eq!(
        engine.send(key, &big, false),
        Err(SendError::Overflowed),
        "over max_outbound_bytes"
    );
    assert_eq!(engine.counts().slow_consumers.disconnected, 1, "counted");
    engine.next_event();
    assert_eq!(
        engine.next_event(),
        Some(Event::Close(key, CloseReason::SlowConsumer))
    );
}

#[test]
fn with_the_drop_policy_a_slow_consumer_loses_packets_not_its_session() {
    let mut engine = Engine::new(
        ShardId::new(0),
        EngineConfig {
            max_outbound_bytes: 1000,
            slow_consumer: SlowConsumerPolicy::Drop,
            ..EngineConfig::default()
        },
    );
    let now = Instant::now();
    let (key, link) = engine.open_websocket(now, peer(Version::V4));
    let _open = written(&mut engine, link, now);
    let big = Frame::text(&[b'4'; 600]);
    assert_eq!(engine.send(key, &big, false), Ok(()));
    assert_eq!(
        engine.send(key, &big, false),
        Err(SendError::Overflowed),
        "over max_outbound_bytes: dropped"
    );
    assert_eq!(engine.counts().slow_consumers.dropped, 1);
    assert_eq!(engine.counts().sessions, 1, "the session stays");
    assert_eq!(
        written(&mut engine, link, now).0.len(),
        1,
        "the first packet still goes out"
    );
    assert_eq!(
        engine.send(key, &big, false),
        Ok(()),
        "room again once written"
    );
}

#[test]
fn a_stale_link_key_cannot_touch_the_connection_that_reuses_its_slot() {
    let mut engine = engine();
    let now = Instant::now();
    let (old_session, old_link) = engine.open_websocket(now, peer(Version::V4));
    engine.close(old_session, CloseReason::ServerClose);
    engine.ws_writer_done(old_link);
    let (key, link) = engine.open_websocket(now, peer(Version::V4));
    while engine.next_event().is_some() {}
    // The old connection's reader finishing late must not end the new one.
    engine.ws_message(old_link, now, ws_text("4injected"));
    engine.ws_reader_done(old_link);
    assert_eq!(engine.next_event(), None);
    engine.ws_message(link, now, ws_text("4mine"));
    assert_eq!(
        engine.next_event(),
        Some(Event::Message(key, Bytes::from_static(b"mine")))
    );
}

#[test]
fn a_get_racing_the_client_close_still_gets_its_noop_once() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V3);
    let id = engine.id(key).unwrap();
    assert_eq!(post(&mut engine, key, now, "1:1"), 200);
    let late = engine.polling_get_closed(id.as_str()).unwrap();
    assert_eq!(&late.body[..], b"1:6");
    assert_eq!(engine.polling_get_closed(id.as_str()), None, "only once");
}

#[test]
fn a_get_racing_the_upgrade_packet_is_refused_not_released_twice() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V4);
    let link = engine.ws_upgrade(key, now).unwrap();
    engine.ws_message(link, now, ws_text("2probe"));
    let mut released = get(&mut engine, key);
    assert_eq!(body(&mut released), Some((200, "6".into())));
    // Sent after the client's `5`, but it reached the owner first: it waits for the switch.
    let mut racing = get(&mut engine, key);
    assert_eq!(body(&mut racing), None);
    engine.ws_message(link, now, ws_text("5"));
    assert_eq!(body(&mut racing).map(|(status, _)| status), Some(400));
}

/// Opens a WebSocket session and takes its open packet off the link.
fn open_ws(engine: &mut Engine, now: Instant, version: Version) -> (SessionKey, LinkKey) {
    let (key, link) = engine.open_websocket(now, peer(version));
    let _open = written(engine, link, now);
    (key, link)
}

#[test]
fn a_run_of_broadcasts_reaches_each_recipient_as_one_buffer_at_the_end_of_the_turn() {
    let mut engine = engine();
    let now = Instant::now();
    let (a, link_a) = open_ws(&mut engine, now, Version::V4);
    let (b, link_b) = open_ws(&mut engine, now, Version::V3);
    assert_eq!(engine.send_many(vec![a, b], &[Frame::text(b"4x")]), 2);
    assert_eq!(
        engine.send_many(vec![a, b], &[Frame::binary(&[7])]),
        2,
        "joins the run"
    );
    assert!(
        written(&mut engine, link_a, now).0.is_empty(),
        "held until the end of the turn"
    );
    let mut cx = Context::from_waker(noop_waker_ref());
    assert_eq!(engine.poll_deferred(&mut cx), Poll::Ready(()));
    engine.send_deferred();
    assert_eq!(engine.poll_deferred(&mut cx), Poll::Pending);
    let (frames, _) = written(&mut engine, link_a, now);
    assert_eq!(
        frames,
        [Bytes::from_static(&[0x81, 2, b'4', b'x', 0x82, 1, 7])]
    );
    let (frames, _) = written(&mut engine, link_b, now);
    assert_eq!(
        frames,
        [Bytes::from_static(&[0x81, 2, b'4', b'x', 0x82, 2, 4, 7])],
        "EIO=3 binary frames get their type byte"
    );
}

#[test]
fn a_direct_send_or_close_goes_out_after_what_was_broadcast_before_it() {
    let mut engine = engine();
    let now = Instant::now();
    let (a, link_a) = open_ws(&mut engine, now, Version::V4);
    let (b, link_b) = open_ws(&mut engine, now, Version::V4);
    engine.send_many(vec![a, b], &[Frame::text(b"41")]);
    engine.send(a, &Frame::text(b"42"), false).unwrap();
    let (frames, _) = written(&mut engine, link_a, now);
    assert_eq!(frames, [&b"\x81\x0241"[..], &b"\x81\x0242"[..]]);
    assert_eq!(written(&mut engine, link_b, now).0, [&b"\x81\x0241"[..]]);

    engine.send_many(vec![b], &[Frame::text(b"43")]);
    engine.close(b, CloseReason::ServerClose);
    let (frames, step) = written(&mut engine, link_b, now);
    assert_eq!(frames, [&b"\x81\x0243"[..]]);
    assert_eq!(step, Poll::Ready(WriteBatch::Frames));
    let (frames, step) = written(&mut engine, link_b, now);
    assert_eq!(frames[0][0], 0x88, "then the close frame");
    assert_eq!(step, Poll::Ready(WriteBatch::Close));
}

#[test]
fn different_recipients_start_a_new_run_and_order_is_kept() {
    let mut engine = engine();
    let now = Instant::now();
    let (a, link_a) = open_ws(&mut engine, now, Version::V4);
    let (b, _) = open_ws(&mut engine, now, Version::V4);
    engine.send_many(vec![a], &[Frame::text(b"41")]);
    engine.send_many(vec![a, b], &[Frame::text(b"42")]);
    engine.send_many(vec![a], &[Frame::text(b"43")]);
    engine.send_deferred();
    let (frames, _) = written(&mut engine, link_a, now);
    assert_eq!(
        frames,
        [&b"\x81\x0241"[..], &b"\x81\x0242"[..], &b"\x81\x0243"[..]]
    );
}

#[test]
fn a_broadcast_to_a_polling_session_is_answered_packet_by_packet() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V4);
    let mut poll = get(&mut engine, key);
    engine.send_many(vec![key], &[Frame::text(b"4a")]);
    engine.send_many(vec![key], &[Frame::text(b"4b")]);
    engine.flush();
    assert_eq!(body(&mut poll), None, "held until the end of the turn");
    engine.send_deferred();
    engine.flush();
    assert_eq!(body(&mut poll), Some((200, "4a\x1e4b".into())));
}

#[test]
fn a_slow_consumer_among_broadcast_recipients_is_the_only_one_dropped() {
    let mut engine = engine();
    let now = Instant::now();
    let (slow, _) = open_ws(&mut engine, now, Version::V4);
    let (fast, link_fast) = open_ws(&mut engine, now, Version::V4);
    let big = Frame::text(&[b'4'; 600]);
    engine.send(slow, &big, false).unwrap();
    engine.send_many(vec![slow, fast], std::slice::from_ref(&big));
    engine.send_deferred();
    assert_eq!(written(&mut engine, link_fast, now).0.len(), 1);
    while let Some(event) = engine.next_event() {
        if let Event::Close(key, reason) = event {
            assert_eq!((key, reason), (slow, CloseReason::SlowConsumer));
            return;
        }
    }
    panic!("the slow consumer was not closed");
}

#[test]
fn replaced_deadlines_are_swept_so_the_heap_stays_bounded() {
    let mut engine = engine();
    let now = Instant::now();
    let key = open(&mut engine, now, Version::V3);
    // Every client ping replaces the session's deadline; the old entries must not pile up.
    for _ in 0..10_000 {
        assert_eq!(post(&mut engine, key, now, "1:2"), 200);
        drop(get(&mut engine, key));
    }
    assert!(engine.deadlines.len() <= 2 * engine.sessions.len() + 1025);
    assert_eq!(
        engine.counts(),
        EngineCounts {
            sessions: 1,
            websockets: 0,
            timers: 1,
            slow_consumers: SlowConsumerCounts::default(),
        }
    );
}

#[test]
fn traffic_counts_packets_bytes_sessions_and_refusals() {
    let mut engine = engine();
    let now = Instant::now();
    let v4 = open(&mut engine, now, Version::V4);
    open(&mut engine, now, Version::V3);
    assert_eq!(post(&mut engine, v4, now, "4hello"), 200);
    assert_eq!(
        engine.send(v4, &Frame::text(b"4hi"), false),
        Ok(()),
        "queued on polling"
    );
    let traffic = engine.traffic();
    assert_eq!((traffic.packets_in, traffic.bytes_in), (1, 5));
    assert_eq!((traffic.packets_out, traffic.bytes_out), (1, 3));
    assert_eq!(traffic.sessions_by_transport, [[1, 1], [0, 0]]);
    engine.drain();
    assert_eq!(engine.admit(None, now), Err(EngineError::ShuttingDown));
    assert_eq!(engine.admit(None, now), Err(EngineError::ShuttingDown));
    assert_eq!(engine.traffic().refused.shutting_down, 2);
}

#[test]
fn deflate_links_get_large_messages_compressed_once_and_others_plain() {
    let mut engine = Engine::new(
        ShardId::new(0),
        EngineConfig {
            per_message_deflate: true,
            deflate_threshold: 100,
            ..EngineConfig::default()
        },
    );
    let now = Instant::now();
    let (a, link_a) = open_ws(&mut engine, now, Version::V4);
    let (b, link_b) = open_ws(&mut engine, now, Version::V4);
    let (c, link_c) = open_ws(&mut engine, now, Version::V3);
    engine.deflate_link(link_a);
    engine.deflate_link(link_c);
    let big = format!("4{}", "hello world ".repeat(50));
    let mut frames = [Frame::text(big.as_bytes()), Frame::text(b"4small")];
    engine.share_deflate(&mut frames);
    // Another shard's copy of the broadcast compresses first: this shard reuses its bytes.
    let elsewhere = frames[0].clone();
    let made = elsewhere
        .deflated(&mut crate::codec::deflate::Deflater::new(6))
        .expect("shrinks");
    engine.send_many(vec![a, b, c], &frames);
    engine.send_deferred();
    let mut inflater = crate::codec::deflate::Inflater::new();
    for link in [link_a, link_c] {
        let (written_frames, _) = written(&mut engine, link, now);
        let bytes = &written_frames[0];
        assert_eq!(
            &bytes[..made.len()],
            &made[..],
            "the shared compressed frame"
        );
        assert_eq!(bytes[0], 0xc1, "FIN, RSV1, text");
        let header = if made[1] == 126 { 4 } else { 2 };
        let payload = &bytes[header..made.len()];
        assert_eq!(
            inflater.inflate(payload, 10_000).as_deref(),
            Ok(big.as_bytes())
        );
        assert_eq!(
            &bytes[made.len()..],
            b"\x81\x064small",
            "under the threshold: plain"
        );
    }
    let (plain, _) = written(&mut engine, link_b, now);
    assert_eq!(plain[0][0], 0x81, "no extension: plain");
    assert_eq!(plain[0].len(), 4 + big.len() + 8);
    // A direct send to a deflate link is compressed too.
    engine.send(a, &Frame::text(big.as_bytes()), false).unwrap();
    assert_eq!(written(&mut engine, link_a, now).0[0][0], 0xc1);
    // Counted once per recipient: a and c for the broadcast, a for the direct send.
    assert_eq!(engine.traffic().compressed_out, 3);
}
