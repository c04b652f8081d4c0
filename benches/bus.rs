//! The cross-shard bus (`ringcast::internals::bus`): single-thread push/pop through one ring
//! (send then drain, in batches and one at a time, and through the overflow backlog when the
//! ring is full), and send/receive throughput between two threads, the receiver either
//! spinning on `drain` or parked in `recv_batch` and woken by the sender (as an idle shard is).
//!
//! Messages are `Arc<Frame>`, a pointer whose clone and drop touch a shared reference count, as
//! the shard's `SocketIoMsg::Broadcast(Arc<Broadcast>)` does. Ring capacity is the server's default
//! `bus_capacity` (8192) except where the overflow path is measured.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::internals::bus::{self, Endpoint};
use ringcast::internals::codec::frame::Frame;

/// The server's default ring capacity (`Config::bus_capacity`).
const CAPACITY: usize = 8192;
/// Messages per batch in the single-thread benches.
const BATCH: usize = 256;
/// Messages per iteration in the two-thread benches.
const STREAM: u64 = 10_000;

type Msg = Arc<Frame>;

fn message() -> Msg {
    Arc::new(Frame::text(br#"42["message",{"n":1,"text":"hello"}]"#))
}

fn pair(capacity: usize) -> (Endpoint<Msg>, Endpoint<Msg>) {
    let mut ends = bus::mesh::<Msg>(2, capacity);
    let b = ends.pop().expect("two endpoints");
    let a = ends.pop().expect("two endpoints");
    (a, b)
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .without_plots()
}

fn single_thread(c: &mut Criterion) {
    let msg = message();
    let mut group = c.benchmark_group("bus_single_thread");

    let (a, b) = pair(CAPACITY);
    let mut out = Vec::with_capacity(BATCH);
    group.throughput(Throughput::Elements(1));
    group.bench_function("send_then_drain_1", |bench| {
        bench.iter(|| {
            a.send(1, msg.clone());
            b.drain(&mut out);
            out.clear();
        })
    });
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("send_{BATCH}_then_drain"), |bench| {
        bench.iter(|| {
            for _ in 0..BATCH {
                a.send(1, msg.clone());
            }
            b.drain(&mut out);
            assert_eq!(out.len(), BATCH);
            out.clear();
        })
    });

    // A ring of 64 takes a quarter of the batch; the rest waits in the ordered backlog and is
    // flushed as the receiver drains.
    let (a, b) = pair(BATCH / 4);
    group.bench_function(format!("send_{BATCH}_through_overflow"), |bench| {
        bench.iter(|| {
            for _ in 0..BATCH {
                a.send(1, msg.clone());
            }
            while out.len() < BATCH {
                b.drain(&mut out);
                a.flush_backlog();
            }
            out.clear();
        })
    });
    group.finish();
}

/// Wakes a parked thread (the receiving "shard" of the two-thread bench).
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` on this thread, parking while it is pending; `waker` unparks this thread.
fn block_on<F: Future>(waker: &Waker, future: F) -> F::Output {
    let mut cx = Context::from_waker(waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

#[derive(Clone, Copy)]
enum Receive {
    /// Busy-polls `drain`.
    Spin,
    /// Awaits `recv_batch`, parked until the sender's wake-up.
    Park,
}

/// Streams `count` messages from this thread to a receiver thread; returns the time from the
/// first send until the receiver has taken the last message.
fn stream(count: u64, receive: Receive, msg: &Msg) -> Duration {
    let (a, b) = pair(CAPACITY);
    let receiver = thread::spawn(move || {
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut out = Vec::with_capacity(CAPACITY);
        let mut got = 0u64;
        while got < count {
            match receive {
                Receive::Spin => {
                    if !b.drain(&mut out) {
                        std::hint::spin_loop();
                    }
                }
                Receive::Park => block_on(&waker, b.recv_batch(&mut out)),
            }
            got += out.len() as u64;
            out.clear();
        }
        Instant::now()
    });
    let start = Instant::now();
    for _ in 0..count {
        a.send(1, msg.clone());
    }
    while a.has_backlog() {
        a.flush_backlog();
        thread::yield_now();
    }
    let end = receiver.join().expect("receiver thread");
    end.duration_since(start)
}

fn two_threads(c: &mut Criterion) {
    let msg = message();
    let mut group = c.benchmark_group("bus_two_threads");
    group.throughput(Throughput::Elements(STREAM));
    for (name, receive) in [
        ("spin_drain", Receive::Spin),
        ("recv_batch_parked", Receive::Park),
    ] {
        group.bench_with_input(
            BenchmarkId::new(name, STREAM),
            &receive,
            |bench, &receive| {
                bench.iter_custom(|iters| (0..iters).map(|_| stream(STREAM, receive, &msg)).sum())
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = single_thread, two_threads
}
criterion_main!(benches);
