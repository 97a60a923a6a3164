//! The one error type of the crate: every failure names the file, key or value at fault.

use std::path::PathBuf;

/// Everything that can go wrong between a file on disk and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum HstlError {
    /// A backend name that is not `auto`, `tract` or `ort`.
    #[error("backend `{0}` is not one of auto, tract, ort")]
    UnknownBackend(String),
    /// A precision name that is not `f32` or `f16`.
    #[error("precision `{0}` is not one of f32, f16")]
    UnknownPrecision(String),
    /// Half precision asked of a backend that does not run it.
    #[error("f16 runs on the tract backend only; ONNX Runtime runs the model in f32 (or TensorRT builds its own FP16 engine)")]
    HalfPrecisionNeedsTract,
    /// f16 asked for on a CPU without f16 arithmetic.
    #[error("precision f16 is emulated on this CPU (no f16 arithmetic; tract would take about 100 times as long as f32): use f32, or int8 (`calibrate quantize`); f16 pays on ARM cores with FP16, such as a Jetson Orin's")]
    HalfPrecisionEmulated,
    /// f16 asked for where walks are streamed (the door).
    #[error("precision f16 is not streamed: a door streams each walk through the network in f32 or in an int8 model's own arithmetic (`calibrate quantize`)")]
    HalfPrecisionNotStreamed,
    /// ONNX Runtime asked for in a build without it.
    #[error("the ONNX Runtime backend was asked for but this build has no `ort` feature: rebuild with `--features ort`")]
    OnnxRuntimeNotBuilt,
    /// A file could not be read or written.
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// Not a `torch.save` zip archive.
    #[error(
        "{path} is not a PyTorch checkpoint in the zip format of torch.save (>= 1.6): {reason}"
    )]
    NotACheckpoint {
        /// The file concerned.
        path: PathBuf,
        /// Why it is not one.
        reason: String,
    },

    /// The zip container is damaged or cut short.
    #[error("checkpoint archive is damaged or truncated: {0}")]
    Archive(String),

    /// The pickle inside the checkpoint is malformed or asks for more than a checkpoint can need.
    #[error("checkpoint pickle is malformed at byte {offset}: {message}")]
    Pickle {
        /// Byte offset in the pickle stream.
        offset: usize,
        /// What is wrong.
        message: String,
    },

    /// The checkpoint holds no state dict where OpenGait or our training put one.
    #[error("checkpoint holds no state dict: {0}")]
    NoStateDict(String),

    /// A tensor whose storage, shape or strides do not fit.
    #[error("tensor `{key}`: {message}")]
    BadTensor {
        /// The state-dict key.
        key: String,
        /// What is wrong.
        message: String,
    },

    /// A parameter the variant needs is absent.
    #[error(
        "checkpoint is missing `{key}` (expected shape {expected:?} for the {variant} variant)"
    )]
    MissingKey {
        /// The state-dict key.
        key: String,
        /// The shape the variant needs.
        expected: Vec<usize>,
        /// The variant the checkpoint was read as.
        variant: String,
    },

    /// A parameter the variant does not have.
    #[error("checkpoint has unexpected key `{key}` for the {variant} variant")]
    UnexpectedKey {
        /// The state-dict key.
        key: String,
        /// The variant the checkpoint was read as.
        variant: String,
    },

    /// A parameter of the wrong shape for the variant.
    #[error("`{key}` has shape {found:?}, the {variant} variant needs {expected:?}")]
    ShapeMismatch {
        /// The state-dict key.
        key: String,
        /// The shape the variant needs.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
        /// The variant the checkpoint was read as.
        variant: String,
    },

    /// The superseded 17-part CASIA-B head, which never ran as published.
    #[error(
        "this is the superseded 17-part CASIA-B HSTL (July 2023 code drop, Head0.fc_bin {shape:?}); \
         it never ran as published and is not supported: use a checkpoint of the 73-part model"
    )]
    Superseded17Part {
        /// The shape of `Head0.fc_bin` found.
        shape: Vec<usize>,
    },

    /// `Head0.fc_bin` has a shape no variant has.
    #[error("cannot tell the HSTL variant from Head0.fc_bin {0:?} (known: 73x128x128 CASIA-B, 50x256x256 OU-MVLP/GREW, 46x256x256 Gait3D)")]
    UnknownVariant(Vec<usize>),

    /// A variant name we do not know.
    #[error("unknown variant `{0}` (expected casia-b, ou-mvlp, grew, gait3d or compact)")]
    UnknownVariantName(String),

    /// Silhouettes of the wrong shape, range or length.
    #[error("silhouettes: {0}")]
    BadInput(String),

    /// An ONNX model that cannot be loaded or does not have HSTL's interface.
    #[error("model {path}: {message}")]
    BadModel {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A reduced-precision export that cannot be written as asked.
    #[error("int8 export: {0}")]
    Int8Export(String),

    /// The runtime failed while running the model.
    #[error("inference failed: {0}")]
    Inference(String),

    /// The model produced NaN or infinity.
    #[error("the embedding holds {value} at part {part}, channel {channel}: the model's weights or input are broken (a negative BatchNorm variance, say)")]
    NotFinite {
        /// The body part.
        part: usize,
        /// The channel within the part.
        channel: usize,
        /// The value found.
        value: f32,
    },

    /// Two embeddings of different shapes (different models).
    #[error("embeddings are not comparable: {0}")]
    Incomparable(String),

    /// A dataset folder or file that is not what it should be.
    #[error("dataset {path}: {message}")]
    Dataset {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// An output path that is also one of the inputs.
    #[error("{path} is also an input: writing it would destroy what is being read; choose another output")]
    OutputIsInput {
        /// The file concerned.
        path: PathBuf,
    },

    /// ONNX Runtime refused the model or failed to load.
    #[error("ONNX Runtime: {0}")]
    OnnxRuntime(String),
}

/// The result of everything in this crate.
pub type Result<T, E = HstlError> = std::result::Result<T, E>;

impl HstlError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HstlError::Io {
            path: path.into(),
            source,
        }
    }
}
