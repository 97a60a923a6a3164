//! Opening the network on whatever the kiosk has: ONNX Runtime (TensorRT or CUDA on a Jetson)
//! when it was built in and its library loads, tract on the CPU otherwise.

use std::path::PathBuf;

use hstl::{Embedder, HstlError, TractEmbedder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// ONNX Runtime if available, falling back to tract with a warning.
    #[default]
    Auto,
    Tract,
    OnnxRuntime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceConfig {
    pub model: PathBuf,
    pub backend: BackendChoice,
    /// CPU threads for inference (tract, or ONNX Runtime's CPU provider).
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("the ONNX Runtime backend was requested but this build has no `ort` feature")]
    OnnxRuntimeNotBuilt,
    #[error(transparent)]
    Model(#[from] HstlError),
}

/// Opens the configured backend. With [`BackendChoice::Auto`] a failure of ONNX Runtime (library
/// missing, unsupported model) is logged and tract is used, so a kiosk always comes up.
pub fn open_embedder(config: &InferenceConfig) -> Result<Box<dyn Embedder>, InferenceError> {
    match config.backend {
        BackendChoice::Tract => Ok(Box::new(TractEmbedder::load(
            &config.model,
            config.threads,
        )?)),
        BackendChoice::OnnxRuntime => open_onnxruntime(config),
        BackendChoice::Auto => match open_onnxruntime(config) {
            Ok(embedder) => Ok(embedder),
            Err(e) => {
                if !matches!(e, InferenceError::OnnxRuntimeNotBuilt) {
                    log::warn!("ONNX Runtime unavailable ({e}); using tract on the CPU");
                }
                Ok(Box::new(TractEmbedder::load(
                    &config.model,
                    config.threads,
                )?))
            }
        },
    }
}

#[cfg(feature = "ort")]
fn open_onnxruntime(config: &InferenceConfig) -> Result<Box<dyn Embedder>, InferenceError> {
    Ok(Box::new(hstl::backend::onnxruntime::OrtEmbedder::load(
        &config.model,
        config.threads,
    )?))
}

#[cfg(not(feature = "ort"))]
fn open_onnxruntime(_: &InferenceConfig) -> Result<Box<dyn Embedder>, InferenceError> {
    Err(InferenceError::OnnxRuntimeNotBuilt)
}
