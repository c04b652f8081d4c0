//! Broadcasts: encoding one event once into its ready-to-send WebSocket frame(s) (per
//! broadcast), and the per-recipient cost of handing that shared frame out: bare `Bytes` clones
//! into queues, `Engine::send` onto WebSocket links (sessions in slab order and scattered),
//! and a whole `to(room).emit(...)` on one shard (room resolution, engine queues) with 1k and
//! 10k recipients.
//!
//! The shard is built by hand (no sockets, no runtime, as in `src/socketio/tests.rs`): one
//! Engine with WebSocket sessions, one Socket.IO layer whose sockets joined `lobby` on connect.
//! Only the emit is timed; the link queues are emptied after each one, untimed, as the shard's
//! writer tasks would.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::internals::codec::eio::Version;
use ringcast::internals::codec::ws;
use ringcast::internals::engine::{Engine, LinkKey, Peer, SessionKey};
use ringcast::internals::socketio::{
    encode_event, LocalTask, Namespaces, ShardHooks, SocketIo, SocketIoMsg,
};
use ringcast::ShardId;
use ringcast::{Args, EngineConfig, Namespace, SocketIoConfig};

/// Recipient counts.
const RECIPIENTS: [usize; 2] = [1_000, 10_000];

/// The JSON of the one argument of a ~100-byte `42["message",{...}]` packet.
fn chat_arg(packet_len: usize) -> Vec<u8> {
    let head = br#"42["message","#;
    let filler = b"lorem ipsum dolor sit amet ";
    let fixed = head.len() + br#"{"n":1,"text":""}]"#.len();
    let mut out = br#"{"n":1,"text":""#.to_vec();
    out.extend(filler.iter().cycle().take(packet_len - fixed));
    out.extend_from_slice(br#""}"#);
    out
}

fn args(packet_len: usize) -> Args {
    Args::new()
        .with_raw(&chat_arg(packet_len))
        .expect("valid JSON")
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .without_plots()
}

fn encode(c: &mut Criterion) {
    let small = args(100);
    let frames = encode_event("/", "message", &small, None);
    assert_eq!(frames[0].payload_slice().len(), 100);
    let big = args(16 << 10);
    let binary = args(100).with_binary(Bytes::from(vec![0xa5u8; 1 << 10]));

    let mut group = c.benchmark_group("broadcast_encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("event_100B", |b| {
        b.iter(|| encode_event("/", "message", black_box(&small), None))
    });
    group.bench_function("event_nsp_ack_100B", |b| {
        b.iter(|| encode_event("/chat", "message", black_box(&small), Some(12)))
    });
    group.bench_function("binary_event_1KiB_attachment", |b| {
        b.iter(|| encode_event("/", "message", black_box(&binary), None))
    });
    group.throughput(Throughput::Bytes(16 << 10));
    group.bench_function("event_16KiB", |b| {
        b.iter(|| encode_event("/", "message", black_box(&big), None))
    });
    group.finish();
}

fn peer() -> Peer {
    Peer {
        endpoint: 0,
        version: Version::V4,
        query: "EIO=4&transport=websocket".into(),
        address: None,
        headers: Box::default(),
    }
}

/// Empties every link's queue, as the writer tasks would.
fn drain(engine: &mut Engine, links: &[LinkKey], now: Instant, out: &mut Vec<Bytes>) {
    let mut cx = Context::from_waker(Waker::noop());
    for &link in links {
        let _ = engine.poll_ws_write(link, now, &mut cx, out);
        out.clear();
    }
}

/// Times `send` once per iteration and runs `reset` after each, untimed.
fn timed(iters: u64, mut send: impl FnMut(), mut reset: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        send();
        total += start.elapsed();
        reset();
    }
    total
}

/// A fixed permutation (Fisher-Yates driven by xorshift64), the same on every run.
fn shuffle<T>(items: &mut [T]) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

fn handout(c: &mut Criterion) {
    let frame = encode_event("/", "message", &args(100), None).remove(0);
    let now = Instant::now();
    let mut group = c.benchmark_group("broadcast_handout");
    for n in RECIPIENTS {
        group.throughput(Throughput::Elements(n as u64));

        // The floor: one reference-count increment and a queue push per recipient.
        let queues: RefCell<Vec<VecDeque<Bytes>>> =
            RefCell::new((0..n).map(|_| VecDeque::new()).collect());
        group.bench_with_input(
            BenchmarkId::new("bytes_clone_into_queues", n),
            &n,
            |b, _| {
                b.iter_custom(|iters| {
                    timed(
                        iters,
                        || {
                            for queue in queues.borrow_mut().iter_mut() {
                                queue.push_back(frame.ws_bytes().clone());
                            }
                        },
                        || queues.borrow_mut().iter_mut().for_each(VecDeque::clear),
                    )
                })
            },
        );

        // What the Socket.IO layer calls for each recipient: `Engine::send` on a WebSocket link.
        let mut engine = Engine::new(ShardId::new(0), EngineConfig::default());
        let (keys, links): (Vec<SessionKey>, Vec<LinkKey>) =
            (0..n).map(|_| engine.open_websocket(now, peer())).unzip();
        while engine.next_event().is_some() {}
        let mut out = Vec::new();
        drain(&mut engine, &links, now, &mut out);
        let engine = RefCell::new(engine);
        // In slab order, then in a scattered order (a room's hash set hands out members in
        // one), which is what a broadcast really does to the session slab.
        let mut shuffled = keys.clone();
        shuffle(&mut shuffled);
        for (name, order) in [
            ("engine_send_ws", &keys),
            ("engine_send_ws_scattered", &shuffled),
        ] {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_custom(|iters| {
                    timed(
                        iters,
                        || {
                            let mut engine = engine.borrow_mut();
                            for &key in order {
                                let _ = black_box(engine.send(key, &frame, false));
                            }
                        },
                        || drain(&mut engine.borrow_mut(), &links, now, &mut out),
                    )
                })
            });
        }
    }
    group.finish();
}

/// One shard's Engine.IO and Socket.IO layers with `n` WebSocket clients connected to `/`,
/// each in room `lobby`.
struct Shard {
    io: Rc<SocketIo>,
    engine: Rc<RefCell<Engine>>,
    links: Vec<LinkKey>,
    now: Instant,
}

impl Shard {
    fn new(n: usize) -> Shard {
        let now = Instant::now();
        let engine = Rc::new(RefCell::new(Engine::new(
            ShardId::new(0),
            EngineConfig::default(),
        )));
        let mut namespaces = Namespaces::default();
        namespaces.declare(
            "/",
            Namespace::new().on_connect(|socket| {
                socket.join("lobby");
            }),
        );
        let io = SocketIo::new(
            ShardId::new(0),
            1,
            engine.clone(),
            SocketIoConfig::default(),
            Arc::new(namespaces),
            ShardHooks {
                peers: Box::new(|_: ShardId, _: SocketIoMsg| {}),
                spawn: Box::new(|_: LocalTask| {}),
                nodes: None,
                directory: None,
            },
            now,
        );
        let mut shard = Shard {
            io,
            engine,
            links: Vec::with_capacity(n),
            now,
        };
        for _ in 0..n {
            let (_, link) = shard.engine.borrow_mut().open_websocket(now, peer());
            shard.links.push(link);
            shard.pump();
            let connect = ws::Message::Text(Bytes::from_static(b"40"));
            shard.engine.borrow_mut().ws_message(link, now, connect);
            shard.pump();
        }
        assert_eq!(shard.io.socket_count(), n);
        shard.drain();
        shard
    }

    /// Runs queued engine events through Socket.IO (as the shard's `pump` does).
    fn pump(&self) {
        ringcast::internals::engine::pump(&self.engine, |event| self.io.handle_event(event));
    }

    fn drain(&self) {
        drain(
            &mut self.engine.borrow_mut(),
            &self.links,
            self.now,
            &mut Vec::new(),
        );
    }
}

fn emit(c: &mut Criterion) {
    let args = args(100);
    let mut group = c.benchmark_group("broadcast_emit");
    // Fixed cost of a broadcast that reaches nobody: encode, wrap, resolve the room.
    let empty = Shard::new(1);
    group.throughput(Throughput::Elements(1));
    group.bench_function("to_empty_room", |b| {
        b.iter(|| {
            empty
                .io
                .of("/")
                .to("nobody")
                .emit("message", black_box(&args))
        })
    });
    drop(empty);
    for n in RECIPIENTS {
        let shard = Shard::new(n);
        assert_eq!(shard.io.of("/").to("lobby").emit("message", &args), n);
        shard.drain();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("to_room_100B", n), &n, |b, _| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || {
                        black_box(shard.io.of("/").to("lobby").emit("message", &args));
                    },
                    || shard.drain(),
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("whole_namespace_100B", n), &n, |b, _| {
            b.iter_custom(|iters| {
                timed(
                    iters,
                    || {
                        black_box(shard.io.of("/").emit("message", &args));
                    },
                    || shard.drain(),
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = encode, handout, emit
}
criterion_main!(benches);
