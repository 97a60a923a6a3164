//! Every file of every fuzz target's seed corpus and regressions, run through the target as the
//! fuzzer runs it: what fuzzing found stays fixed, and every target is exercised in each test run.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_its_cargo_fuzz_file_and_a_seed_corpus() {
    for target in fuzzing::TARGETS {
        let source = fuzz_dir()
            .join("fuzz_targets")
            .join(format!("{}.rs", target.name));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("fuzzing::{}", target.name)),
            "{} does not call fuzzing::{}",
            source.display(),
            target.name
        );
        assert!(
            !inputs(&fuzz_dir().join("corpus").join(target.name)).is_empty(),
            "{}: no seed corpus",
            target.name
        );
    }
}

#[test]
fn every_seed_and_regression_runs_without_a_panic() {
    let mut ran = 0;
    for target in fuzzing::TARGETS {
        for folder in ["corpus", "regressions"] {
            for input in inputs(&fuzz_dir().join(folder).join(target.name)) {
                let bytes = std::fs::read(&input).unwrap();
                let outcome = std::panic::catch_unwind(|| (target.run)(&bytes));
                assert!(
                    outcome.is_ok(),
                    "{}: {} panicked",
                    target.name,
                    input.display()
                );
                ran += 1;
            }
        }
    }
    assert!(ran >= fuzzing::TARGETS.len());
}

/// SplitMix64: a fixed sequence, so every run tries the same mutants and a failure reproduces.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// `seed` changed as libFuzzer's simplest mutators change an input: bits flipped, bytes set, a
/// run cut out, copied elsewhere or truncated, bytes inserted, or the tail taken from `other`.
fn mutant(seed: &[u8], other: &[u8], sequence: &mut Sequence) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + sequence.below(4) {
        let at = sequence.below(bytes.len());
        match sequence.below(6) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << sequence.below(8),
            1 if !bytes.is_empty() => bytes[at] = sequence.next() as u8,
            2 => {
                let end = (at + 1 + sequence.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => {
                let end = (at + 1 + sequence.below(16)).min(bytes.len());
                let run = bytes[at..end].to_vec();
                let to = sequence.below(bytes.len());
                bytes.splice(to..to, run);
            }
            4 => bytes.truncate(at),
            _ => {
                let from = sequence.below(other.len());
                bytes.truncate(at);
                bytes.extend_from_slice(&other[from..]);
            }
        }
    }
    bytes
}

/// Mutants of the seeds each target runs in every test run: a few seconds of what the fuzzer does
/// for hours, without the instrumented build CI has no time for.
const MUTANTS_PER_TARGET: usize = 1_000;

#[test]
fn every_target_survives_mutants_of_its_seeds() {
    for target in fuzzing::TARGETS {
        let seeds: Vec<Vec<u8>> = inputs(&fuzz_dir().join("corpus").join(target.name))
            .iter()
            .map(|path| std::fs::read(path).unwrap())
            .collect();
        let mut sequence = Sequence(
            target
                .name
                .bytes()
                .fold(0u64, |hash, byte| hash.wrapping_mul(31) ^ u64::from(byte)),
        );
        for index in 0..MUTANTS_PER_TARGET {
            let seed = &seeds[sequence.below(seeds.len())];
            let other = &seeds[sequence.below(seeds.len())];
            let bytes = mutant(seed, other, &mut sequence);
            let outcome = std::panic::catch_unwind(|| (target.run)(&bytes));
            if outcome.is_err() {
                let dir = tempfile::Builder::new()
                    .prefix("fuzz-mutant")
                    .tempdir()
                    .unwrap()
                    .keep();
                let path = dir.join(format!("{}-{index}", target.name));
                std::fs::write(&path, &bytes).unwrap();
                panic!(
                    "{}: mutant {index} panicked; kept in {}",
                    target.name,
                    path.display()
                );
            }
        }
    }
}
