//! What the workspace's tests share: the third-party data in `../shared`, read in place, and a
//! network with seeded weights for tests that need a model but not a trained one, a PostgreSQL server
//! (`postgres_server`) and TLS certificates (`certificates`) for the tests of a site.
//!
//! A test that needs `../shared` asks [`shared_path`]. Without the data it skips with a message,
//! except under `REQUIRE_SHARED=1` (as CI runs), where it fails: a parity test never passes by not
//! running.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod certificates;
#[cfg(feature = "osdp")]
pub mod osdp_panel;
pub mod postgres_server;

use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use ndarray_npy::NpzReader;

/// `../shared` beside the repository, or `HSTL_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("HSTL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// `relative` under `../shared`, or `None` (with a message) when it is absent and not required.
///
/// # Panics
/// When it is absent and `REQUIRE_SHARED=1`.
pub fn shared_path(relative: &str) -> Option<PathBuf> {
    let path = shared_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("REQUIRE_SHARED").as_deref() != Ok("1"),
        "REQUIRE_SHARED=1 but {} is missing",
        path.display()
    );
    eprintln!(
        "SKIPPED: {} not found (set HSTL_SHARED_DIR, or REQUIRE_SHARED=1 to fail instead)",
        path.display()
    );
    None
}

/// The reference vectors' directory (`../shared/parity`, holding the published model's checkpoint),
/// or `None` as [`shared_path`] decides.
pub fn parity_dir() -> Option<PathBuf> {
    shared_path("parity/hstl_casiab_dev.pt")
        .and_then(|checkpoint| checkpoint.parent().map(Path::to_path_buf))
}

/// The kiosk's network (HSTL's compact variant, `model/COMPACT.md`) with OpenGait's initialisation,
/// seed 7, written as ONNX to `dir/model.onnx`: for tests of what surrounds the network, which the
/// published CASIA-B variant (16 times the arithmetic) would only slow down.
pub fn seeded_model(dir: &Path) -> PathBuf {
    let model = dir.join("model.onnx");
    hstl::onnx_graph::write_model(
        &hstl::Weights::seeded(hstl::Variant::Compact, 7),
        &hstl::onnx_graph::ExportOptions::default(),
        &model,
    )
    .expect("the seeded model is written");
    model
}

/// Saves beside `model` an operating point at `accept_distance`, sealed under `seal_key` (the
/// door's `TemplateKey::operating_point_key`) as `calibrate thresholds --save --key-file` would
/// (the other figures are plausible placeholders): for tests of a door that must run on a
/// calibrated model.
pub fn save_operating_point(model: &Path, accept_distance: f32, seal_key: &[u8; 32]) {
    hstl::OperatingPoint {
        model_id: hstl::model_id(model).expect("the model is readable"),
        accept_distance,
        target_fpir: 0.003,
        fpir: 0.002,
        fnir: 0.1,
        mated_searches: 400,
        non_mated_searches: 1000,
        measured_on: "test".into(),
        looser_than_shipped: None,
        seal: None,
    }
    .sealed(seal_key)
    .save_for(model)
    .expect("the operating point is written");
}

/// A body-like blob that sways from frame to frame, as `frames` silhouettes: a clip whose
/// activations look like a walk's without reading `../shared`.
pub fn swaying_blob(frames: usize) -> hstl::Silhouettes {
    let pixels: Vec<u8> = (0..frames)
        .flat_map(|t| {
            (0..64 * 64).map(move |i| {
                let (y, x) = (i / 64, i % 64);
                let centre = 32 + (t % 4) as i64 - 2;
                let half = if y < 40 { 6 } else { 3 + (y as i64 - 40) / 4 };
                if y >= 4 && (x as i64 - centre).abs() <= half {
                    255
                } else {
                    0
                }
            })
        })
        .collect();
    hstl::Silhouettes::from_u8(&[frames, 64, 64], &pixels).expect("a 64 x 64 clip")
}

/// `weights` exported with every 3-D convolution in int8 QDQ form, each input scaled to the
/// largest magnitude it takes on `clip` (the calibration crate's min-max observer in miniature,
/// for tests below it).
pub fn int8_model(weights: &hstl::Weights, clip: &hstl::Silhouettes) -> Vec<u8> {
    use hstl::onnx_graph::{encode_model, ExportOptions, CONVOLUTION_INPUT_SUFFIX};
    let probe = ExportOptions {
        convolution_inputs: true,
        ..ExportOptions::default()
    };
    let bytes = encode_model(weights, &probe).expect("the probe model is written");
    let outputs = hstl::TractEmbedder::from_bytes(&bytes, "probe.onnx", 1)
        .and_then(|e| e.run_all_outputs(clip))
        .expect("the probe model runs");
    let int8_convolutions = outputs
        .iter()
        .filter_map(|(name, _, values)| {
            let convolution = name.strip_suffix(CONVOLUTION_INPUT_SUFFIX)?;
            let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            Some((
                convolution.to_string(),
                largest / hstl::precision::INT8_LIMIT,
            ))
        })
        .collect();
    let int8 = ExportOptions {
        int8_convolutions,
        ..ExportOptions::default()
    };
    encode_model(weights, &int8).expect("the int8 model is written")
}

/// The reference vectors of the published model (`hstl_casiab_dev_parity.npz` in [`parity_dir`]).
pub struct Vectors(NpzReader<File>);

impl Vectors {
    /// Opens the archive in `dir` (the parity directory).
    pub fn open(dir: &Path) -> Self {
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

    /// The named float64 array.
    pub fn f64(&mut self, name: &str) -> ArrayD<f64> {
        self.0
            .by_name(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

/// `|a - b| / |a|` in the Euclidean norm: how far `b` (say a reduced-precision model's embedding)
/// lies from `a`, relative to `a`.
pub fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
    norm(&mut a.iter().zip(b).map(|(x, y)| x - y)) / norm(&mut a.iter().copied())
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

/// The largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
