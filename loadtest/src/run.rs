//! What the worker threads and the coordinating main thread share during a run: the phase
//! the run is in, the time base, one block of counters per worker (written only by its
//! worker, so no cache line is fought over), the progress marks clients of different workers
//! pass each other, and the first error.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Clients connect (and join their rooms).
    Setup = 0,
    /// Load runs; nothing is recorded yet.
    Warmup = 1,
    /// Load runs and is recorded.
    Measure = 2,
    /// No new load; waiting for what is in flight.
    Drain = 3,
    /// Workers stop.
    Done = 4,
}

/// Counters of one worker thread.
#[derive(Default)]
#[repr(align(128))]
pub struct Counters {
    /// Clients connected (and, in fanout, joined to their room).
    pub ready: AtomicU64,
    /// Messages (publishes, echoes) sent.
    pub sent: AtomicU64,
    /// Deliveries the messages sent so far must produce (fanout: publishes x room size).
    pub expected: AtomicU64,
    /// Units of work done: deliveries, acks, connects.
    pub done: AtomicU64,
    /// Of `done`, those whose send time fell in the measured window.
    pub measured: AtomicU64,
    /// Messages that came back out of order or twice.
    pub reordered: AtomicU64,
    /// Messages whose payload was damaged or not one the loadtest sent.
    pub corrupt: AtomicU64,
    /// Clients that failed (connect errors, dropped connections).
    pub errors: AtomicU64,
    /// Client tasks still running, for scenarios whose clients end by themselves (churn):
    /// the run waits for them before it checks what the server holds.
    pub active: AtomicU64,
    /// Of `active`, those still coming and going (churn), which may still publish.
    pub churning: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// State shared by every thread of one run.
pub struct Run {
    pub epoch: Instant,
    phase: AtomicU8,
    /// Nanoseconds since `epoch`: the measured window.
    measure_start: AtomicU64,
    measure_end: AtomicU64,
    pub workers: Vec<Counters>,
    /// Progress one client publishes for another, which may run on another worker (fanout
    /// across servers: the highest sequence number of a publisher that its witness on another
    /// server has received). Each has one writer.
    pub marks: Box<[AtomicU64]>,
    first_error: Mutex<Option<String>>,
}

impl Run {
    pub fn new(workers: usize, marks: usize) -> Self {
        Run {
            marks: (0..marks).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Setup as u8),
            measure_start: AtomicU64::new(u64::MAX),
            measure_end: AtomicU64::new(u64::MAX),
            workers: (0..workers).map(|_| Counters::default()).collect(),
            first_error: Mutex::new(None),
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Setup,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            _ => Phase::Done,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        let now = self.now_ns();
        match phase {
            Phase::Measure => self.measure_start.store(now, Ordering::Release),
            Phase::Drain => self.measure_end.store(now, Ordering::Release),
            _ => {}
        }
        self.phase.store(phase as u8, Ordering::Release);
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant `ns` after the epoch.
    pub fn at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Whether a message meant to leave at `sent_ns` falls in the measured window.
    pub fn in_window(&self, sent_ns: u64) -> bool {
        sent_ns >= self.measure_start.load(Ordering::Relaxed)
            && sent_ns < self.measure_end.load(Ordering::Relaxed)
    }

    /// The measured window's length so far (or in full once it ended).
    pub fn window(&self) -> Duration {
        let start = self.measure_start.load(Ordering::Acquire);
        if start == u64::MAX {
            return Duration::ZERO;
        }
        let end = self.measure_end.load(Ordering::Acquire).min(self.now_ns());
        Duration::from_nanos(end.saturating_sub(start))
    }

    /// Records a client failure; the first message is kept for the report.
    pub fn fail(&self, worker: usize, message: String) {
        Counters::add(&self.workers[worker].errors, 1);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(message);
        }
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    /// The sum of one counter over all workers.
    pub fn total(&self, field: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.workers
            .iter()
            .map(|w| field(w).load(Ordering::Relaxed))
            .sum()
    }
}

/// A latency histogram in nanoseconds, 1 µs to 100 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3).expect("valid fixed bounds")
}

/// Records one latency, clamping what the histogram can't hold.
pub fn record(histogram: &mut Histogram<u64>, nanos: u64) {
    let _ = histogram.record(nanos.clamp(1_000, 100_000_000_000));
}
