//! Inference backends behind one [`Embedder`] trait: tract (pure Rust, CPU, always built) and
//! ONNX Runtime (feature `ort`: TensorRT, CUDA or CPU execution providers, loaded at run time).

use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::embedding::Embedding;
use crate::error::{HstlError, Result};
use crate::input::Silhouettes;

mod executor;
mod int8_convolution;
pub mod negligible;
#[cfg(feature = "ort")]
pub mod onnxruntime;
mod plan_rewrite;
mod separable_max_pool;
mod strided_max;
mod threaded_pow;
pub mod tract;
pub mod tract_graph;

/// The most threads the network runs on, for a command or a door: beyond the cores of any board the
/// kiosk runs on, and far below what would exhaust the system's threads.
pub const MAX_THREADS: usize = 64;

/// Turns a silhouette clip into an embedding. Implementations are shareable between threads.
///
/// ```no_run
/// use hstl::{open_embedder, shipped_model_path, Backend, Precision, Silhouettes};
///
/// let model = shipped_model_path();
/// let embedder = open_embedder(&model, Backend::Auto, 2, Precision::F32)?;
/// // 30 frames of 64 × 64 silhouettes, as the silhouette stage normalises them.
/// let clip = Silhouettes::from_u8(&[30, 64, 64], &vec![0u8; 30 * 64 * 64])?;
/// let embedding = embedder.embed(&clip)?;
/// assert_eq!((embedding.parts(), embedding.channels()), embedder.embedding_shape());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Embedder: Send + Sync {
    /// The embedding of one clip of silhouettes.
    fn embed(&self, clip: &Silhouettes) -> Result<Embedding>;

    /// `(parts, channels)` of the embeddings this model produces.
    fn embedding_shape(&self) -> (usize, usize);

    /// Which runtime and device run the model, for logs and benchmark reports.
    fn describe(&self) -> String;

    /// How the model wants walks oriented.
    fn orientation(&self) -> crate::input::Orientation;
}

/// Which runtime runs the model: the one choice the command line, the kiosk's configuration and
/// enrolment all name (`auto`, `tract`, `ort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// ONNX Runtime when it is built in and loads, tract on the CPU otherwise (with a warning when
    /// ONNX Runtime was built in but failed): a door always comes up.
    #[default]
    Auto,
    /// tract, pure Rust on the CPU.
    Tract,
    /// ONNX Runtime (TensorRT, CUDA, then CPU); an error when it is not built in or does not load.
    Ort,
}

impl Backend {
    /// The names a configuration or command line may use.
    pub const NAMES: [&'static str; 3] = ["auto", "tract", "ort"];
}

impl FromStr for Backend {
    type Err = HstlError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(Backend::Auto),
            "tract" => Ok(Backend::Tract),
            "ort" => Ok(Backend::Ort),
            other => Err(HstlError::UnknownBackend(other.to_owned())),
        }
    }
}

/// The arithmetic the network's float layers run in on tract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Half precision up to the pooling: GeM (whose `x^p`, p about 6.5, overflows f16) and the
    /// head stay in f32, as does the embedding. Fast on ARM cores with FP16 arithmetic (Cortex-A55,
    /// A76, A78AE of Jetson Orin); emulated, and slow, elsewhere.
    F16,
}

impl Precision {
    /// The names a configuration or command line may use.
    pub const NAMES: [&'static str; 2] = ["f32", "f16"];
}

impl FromStr for Precision {
    type Err = HstlError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(HstlError::UnknownPrecision(other.to_owned())),
        }
    }
}

/// Opens `model` on `backend` with `threads` CPU threads (tract, or ONNX Runtime's CPU provider),
/// in `precision`. f16 is tract's: `auto` then means tract, and `ort` is refused.
pub fn open_embedder(
    model: &Path,
    backend: Backend,
    threads: usize,
    precision: Precision,
) -> Result<Box<dyn Embedder>> {
    let tract = || -> Result<Box<dyn Embedder>> {
        if precision == Precision::F16 && !native_half_precision() {
            return Err(HstlError::HalfPrecisionEmulated);
        }
        Ok(Box::new(
            tract::TractEmbedder::load(model, threads)?.with_precision(precision),
        ))
    };
    match (backend, precision) {
        (Backend::Tract, _) | (Backend::Auto, Precision::F16) => tract(),
        (Backend::Ort, Precision::F16) => Err(HstlError::HalfPrecisionNeedsTract),
        (Backend::Ort, Precision::F32) => open_onnxruntime(model, threads),
        (Backend::Auto, Precision::F32) => match open_onnxruntime(model, threads) {
            Ok(embedder) => Ok(embedder),
            Err(e) => {
                if !matches!(e, HstlError::OnnxRuntimeNotBuilt) {
                    log::warn!("ONNX Runtime unavailable ({e}); using tract on the CPU");
                }
                tract()
            }
        },
    }
}

/// Whether this CPU does f16 arithmetic itself (ARMv8.2 FP16, as the cores of a Jetson Orin);
/// elsewhere tract emulates it, at about 100 times the cost of f32 and minutes per window.
pub fn native_half_precision() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

#[cfg(feature = "ort")]
fn open_onnxruntime(model: &Path, threads: usize) -> Result<Box<dyn Embedder>> {
    Ok(Box::new(onnxruntime::OrtEmbedder::load(model, threads)?))
}

#[cfg(not(feature = "ort"))]
fn open_onnxruntime(_: &Path, _: usize) -> Result<Box<dyn Embedder>> {
    Err(HstlError::OnnxRuntimeNotBuilt)
}

/// The embedding in a model's first output, which must be `[1, parts, channels]`.
pub(crate) fn embedding_from_output(shape: &[usize], values: Vec<f32>) -> Result<Embedding> {
    match shape {
        [1, parts, channels] => Embedding::new(*parts, *channels, values),
        other => Err(HstlError::Inference(format!(
            "model returned {other:?}, expected [1, parts, channels]"
        ))),
    }
}
