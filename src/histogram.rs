//! A histogram of durations in fixed buckets, as plain data: one shard records into its own
//! (no atomic, no lock), and the metrics route adds the shards' together when scraped.
//!
//! Pure data: it must not depend on the clock, I/O or the rest of the crate (durations come
//! in as arguments).

use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus's `le`), from 100 µs to 10 s: the
/// spans an ack round trip and an event loop's lag take, from loopback to a stuck handler.
pub const BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];

/// The bounds in nanoseconds, compared against without floating point when observing.
const BOUNDS_NANOS: [u64; 12] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// Observations per bucket (not cumulative; the exposition adds them up), their sum and count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    buckets: [u64; BOUNDS.len()],
    sum_nanos: u64,
    count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&mut self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        // Past the last bound the observation counts only in `+Inf` (that is, in `count`).
        if let Some(bucket) = BOUNDS_NANOS.iter().position(|&bound| nanos <= bound) {
            self.buckets[bucket] += 1;
        }
        self.sum_nanos = self.sum_nanos.saturating_add(nanos);
        self.count += 1;
    }

    /// Adds another histogram's observations (another shard's).
    pub fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
        self.count += other.count;
    }

    /// `(upper bound in seconds, observations in that bucket alone)`, ending with
    /// `(f64::MAX, observations past the last bound)`: `+Inf` as `prometheus-client` spells
    /// it, which adds the buckets up itself when it writes them.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let within: u64 = self.buckets.iter().sum();
        BOUNDS
            .iter()
            .copied()
            .zip(self.buckets)
            .chain(std::iter::once((f64::MAX, self.count - within)))
            .collect()
    }

    /// The sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut histogram = Histogram::default();
        histogram.observe(Duration::from_micros(100));
        histogram.observe(Duration::from_micros(101));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let buckets = histogram.buckets();
        assert_eq!(buckets[0], (0.0001, 1));
        assert_eq!(buckets[1], (0.00025, 1));
        assert_eq!(buckets[5], (0.005, 1));
        assert_eq!(buckets[BOUNDS.len() - 1], (10.0, 0));
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
        assert_eq!(histogram.count(), 4);
        let mut twice = histogram;
        twice.add(&histogram);
        assert_eq!(twice.count(), 8);
        assert!((twice.sum_seconds() - 2.0 * histogram.sum_seconds()).abs() < 1e-9);
    }
}
