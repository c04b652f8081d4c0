//! A short fuzz smoke run inside the ordinary test suite: every fuzz target's body over its
//! committed corpus (`fuzz/corpus/<target>/`), then over a few thousand deterministic mutations
//! of it. The fuzzing itself is `cargo fuzz` in `fuzz/` (see `fuzz/README.md`); this keeps the
//! targets compiling and the corpus passing on stable, in seconds.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use std::path::Path;

/// Mutations tried per corpus file.
const MUTATIONS: usize = 2000;

#[test]
fn every_fuzz_target_passes_its_corpus_and_mutations_of_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for &(name, target) in fuzz::TARGETS {
        let dir = root.join(name);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| std::fs::read(entry.expect("corpus entry").path()).expect("corpus file"))
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "{name}: empty corpus");
        let mut random = XorShift(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for seed in &seeds {
            run(name, target, seed);
            for _ in 0..MUTATIONS {
                let other = &seeds[random.below(seeds.len())];
                run(name, target, &mutate(seed, other, &mut random));
            }
        }
    }
}

/// Runs one input; on a failure, names the target and shows the input (to add to the corpus
/// once fixed).
fn run(name: &str, target: fuzz::Target, input: &[u8]) {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        panic!(
            "fuzz target {name} failed on {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

/// A libFuzzer-like mutation: flip, insert, delete, duplicate or splice bytes.
fn mutate(seed: &[u8], other: &[u8], random: &mut XorShift) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=random.below(4) {
        let at = random.below(data.len() + 1);
        match random.below(5) {
            0 if at < data.len() => data[at] ^= 1 << random.below(8),
            1 => data.insert(at, random.next() as u8),
            2 if at < data.len() => {
                data.remove(at);
            }
            3 if at < data.len() => {
                let end = (at + random.below(8) + 1).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            _ => {
                let from = random.below(other.len() + 1);
                let tail = &other[from..];
                data.truncate(at);
                data.extend_from_slice(tail);
            }
        }
    }
    data
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
