//! Shared helpers for tests that read the reference vectors in `../shared/parity`.

#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;

use ndarray::ArrayD;
use ndarray_npy::NpzReader;

/// `../shared` beside the repository, or `HSTL_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("HSTL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// The parity directory, or `None` (with a message) when it is absent and not required.
/// With `REQUIRE_SHARED=1` an absent directory fails the test.
pub fn parity_dir() -> Option<PathBuf> {
    let dir = shared_dir().join("parity");
    if dir.join("hstl_casiab_dev.pt").is_file() {
        return Some(dir);
    }
    if std::env::var("REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!(
            "REQUIRE_SHARED=1 but {} has no hstl_casiab_dev.pt",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: {} not found (set HSTL_SHARED_DIR or REQUIRE_SHARED=1)",
        dir.display()
    );
    None
}

pub struct Vectors(NpzReader<File>);

impl Vectors {
    pub fn open(dir: &std::path::Path) -> Self {
        Vectors(
            NpzReader::new(File::open(dir.join("hstl_casiab_dev_parity.npz")).unwrap()).unwrap(),
        )
    }

    /// The named array in row-major order (some are stored in Fortran order).
    pub fn f32(&mut self, name: &str) -> ArrayD<f32> {
        let a: ArrayD<f32> = self
            .0
            .by_name(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        a.as_standard_layout().into_owned()
    }

    pub fn f64(&mut self, name: &str) -> ArrayD<f64> {
        self.0
            .by_name(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

/// Fails with the worst element when `|got - want| > atol + rtol * |want|` anywhere.
pub fn assert_close(name: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: {} values, reference has {}",
        got.len(),
        want.len()
    );
    // NaN counts as infinitely wrong.
    let excess = |(g, w): (&f32, &f32)| {
        let e = (g - w).abs() - (atol + rtol * w.abs());
        if e.is_nan() {
            f32::INFINITY
        } else {
            e
        }
    };
    let worst = got.iter().zip(want).map(excess).enumerate().fold(
        (0, f32::NEG_INFINITY),
        |best, (i, e)| if e > best.1 { (i, e) } else { best },
    );
    eprintln!("{name}: max |diff| {:.3e}", max_abs_diff(got, want));
    let (i, excess) = worst;
    assert!(
        excess <= 0.0,
        "{name}: element {i} is {} but the reference is {} (tolerance {atol} + {rtol}*|ref|)",
        got[i],
        want[i]
    );
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
