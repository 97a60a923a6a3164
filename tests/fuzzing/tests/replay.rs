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
