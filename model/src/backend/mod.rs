//! Inference backends behind one [`Embedder`] trait: tract (pure Rust, CPU, always built) and
//! ONNX Runtime (feature `ort`: TensorRT, CUDA or CPU execution providers, loaded at run time).

use crate::embedding::Embedding;
use crate::error::{HstlError, Result};
use crate::input::Silhouettes;

#[cfg(feature = "ort")]
pub mod onnxruntime;
mod strided_max;
pub mod tract;

/// Turns a silhouette clip into an embedding. Implementations are shareable between threads.
pub trait Embedder: Send + Sync {
    fn embed(&self, clip: &Silhouettes) -> Result<Embedding>;

    /// `(parts, channels)` of the embeddings this model produces.
    fn embedding_shape(&self) -> (usize, usize);

    /// Which runtime and device run the model, for logs and benchmark reports.
    fn describe(&self) -> String;
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
