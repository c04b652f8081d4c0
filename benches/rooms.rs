//! The room index of one namespace on one shard (`ringcast::internals::rooms::Rooms`): join,
//! leave, membership lookup and iterating the members a broadcast reaches, for one room of 10k
//! and 100k members, and for many rooms (100k one-member rooms, as every socket's own id room;
//! 10k rooms of 10).
//!
//! Members are slab keys `0..n`, as on a shard. Throughput is in memberships (join, leave),
//! lookups, or members visited.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringcast::internals::rooms::Rooms;

/// Members of the one big room.
const SIZES: [u32; 2] = [10_000, 100_000];
/// Lookups per iteration.
const LOOKUPS: u32 = 1_000;
/// Rooms in the "many small rooms" case.
const MANY_ROOMS: u32 = 10_000;
/// Members per room in that case.
const PER_ROOM: u32 = 10;
/// One-member rooms (a socket's own room).
const OWN_ROOMS: u32 = 100_000;

const NONE: &[&str] = &[];

/// A small deterministic generator (xorshift64*), so lookups hit scattered keys.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u32) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32 % bound
    }
}

fn room_of(n: u32) -> Rooms {
    let mut rooms = Rooms::default();
    for member in 0..n {
        rooms.join("lobby", member);
    }
    rooms
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(20)
        .without_plots()
}

fn one_room(c: &mut Criterion) {
    let mut group = c.benchmark_group("rooms_one_room");
    for n in SIZES {
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_with_input(BenchmarkId::new("join", n), &n, |b, &n| {
            b.iter_batched(
                Rooms::default,
                |mut rooms| {
                    for member in 0..n {
                        rooms.join("lobby", member);
                    }
                    rooms
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_with_input(BenchmarkId::new("leave", n), &n, |b, &n| {
            b.iter_batched(
                || room_of(n),
                |mut rooms| {
                    for member in 0..n {
                        rooms.leave("lobby", member);
                    }
                    rooms
                },
                BatchSize::PerIteration,
            )
        });

        let mut rooms = room_of(n);
        // A tenth of the members also sit in `muted`, which broadcasts exclude.
        for member in (0..n).step_by(10) {
            rooms.join("muted", member);
        }
        group.bench_with_input(BenchmarkId::new("iterate_members", n), &n, |b, _| {
            b.iter(|| {
                rooms
                    .members("lobby")
                    .map(|m| black_box(m) as u64)
                    .sum::<u64>()
            })
        });
        group.bench_with_input(BenchmarkId::new("targets_one_room", n), &n, |b, _| {
            b.iter(|| {
                let mut visited = 0u32;
                rooms.for_each_target(&["lobby"], NONE, std::iter::empty(), |m| {
                    visited += u32::from(black_box(m) < n)
                });
                visited
            })
        });
        group.bench_with_input(BenchmarkId::new("targets_except", n), &n, |b, _| {
            b.iter(|| {
                let mut visited = 0u32;
                rooms.for_each_target(&["lobby"], &["muted"], std::iter::empty(), |m| {
                    visited += u32::from(black_box(m) < n)
                });
                visited
            })
        });
        // Two rooms overlapping by half: the de-duplicating path.
        let mut overlapping = room_of(n);
        for member in n / 2..n + n / 2 {
            overlapping.join("other", member);
        }
        let reached = u64::from(n + n / 2);
        group.throughput(Throughput::Elements(reached));
        group.bench_with_input(BenchmarkId::new("targets_two_rooms", n), &n, |b, _| {
            b.iter(|| {
                let mut visited = 0u64;
                overlapping.for_each_target(&["lobby", "other"], NONE, std::iter::empty(), |m| {
                    visited += u64::from(black_box(m) != u32::MAX)
                });
                visited
            })
        });

        group.throughput(Throughput::Elements(u64::from(LOOKUPS)));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Half the probes miss (keys up to 2n).
        let probes: Vec<u32> = (0..LOOKUPS).map(|_| rng.below(2 * n)).collect();
        group.bench_with_input(BenchmarkId::new("contains", n), &n, |b, _| {
            b.iter(|| {
                probes
                    .iter()
                    .filter(|&&m| rooms.contains("lobby", black_box(m)))
                    .count()
            })
        });
    }
    group.finish();
}

fn many_rooms(c: &mut Criterion) {
    let own_names: Vec<String> = (0..OWN_ROOMS).map(|i| format!("sock-{i:020}")).collect();
    let small_names: Vec<String> = (0..MANY_ROOMS).map(|i| format!("room-{i}")).collect();
    let own = || {
        let mut rooms = Rooms::default();
        for (member, name) in (0..).zip(&own_names) {
            rooms.join(name, member);
        }
        rooms
    };
    let small = || {
        let mut rooms = Rooms::default();
        for (room, name) in (0..).zip(&small_names) {
            for i in 0..PER_ROOM {
                rooms.join(name, room * PER_ROOM + i);
            }
        }
        rooms
    };

    let mut group = c.benchmark_group("rooms_many");
    group.throughput(Throughput::Elements(u64::from(OWN_ROOMS)));
    group.bench_function("join_100k_own_rooms", |b| {
        b.iter_batched(|| (), |()| own(), BatchSize::PerIteration)
    });
    group.bench_function("leave_100k_own_rooms", |b| {
        b.iter_batched(
            own,
            |mut rooms| {
                for (member, name) in (0..).zip(&own_names) {
                    rooms.leave(name, member);
                }
                rooms
            },
            BatchSize::PerIteration,
        )
    });
    group.throughput(Throughput::Elements(u64::from(MANY_ROOMS * PER_ROOM)));
    group.bench_function("join_10k_rooms_x10", |b| {
        b.iter_batched(|| (), |()| small(), BatchSize::PerIteration)
    });

    let mut rooms = small();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let probes: Vec<(&str, u32)> = (0..LOOKUPS)
        .map(|_| {
            let room = rng.below(MANY_ROOMS);
            // Right room for half the probes.
            let member = room * PER_ROOM + rng.below(2 * PER_ROOM);
            (small_names[room as usize].as_str(), member)
        })
        .collect();
    group.throughput(Throughput::Elements(u64::from(LOOKUPS)));
    group.bench_function("contains_10k_rooms", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|&&(room, m)| rooms.contains(black_box(room), m))
                .count()
        })
    });
    let targets: Vec<&str> = small_names[..3].iter().map(String::as_str).collect();
    group.throughput(Throughput::Elements(u64::from(3 * PER_ROOM)));
    group.bench_function("targets_3_of_10k_rooms", |b| {
        b.iter(|| {
            let mut visited = 0u32;
            rooms.for_each_target(&targets, NONE, std::iter::empty(), |m| {
                visited += u32::from(black_box(m) != u32::MAX)
            });
            visited
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = one_room, many_rooms
}
criterion_main!(benches);
