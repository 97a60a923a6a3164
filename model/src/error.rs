use std::path::PathBuf;

/// Everything that can go wrong between a file on disk and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum HstlError {
    #[error("backend `{0}` is not one of auto, tract, ort")]
    UnknownBackend(String),
    #[error("the ONNX Runtime backend was asked for but this build has no `ort` feature: rebuild with `--features ort`")]
    OnnxRuntimeNotBuilt,
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{path} is not a PyTorch checkpoint in the zip format of torch.save (>= 1.6): {reason}"
    )]
    NotACheckpoint { path: PathBuf, reason: String },

    #[error("checkpoint archive is damaged or truncated: {0}")]
    Archive(String),

    #[error("checkpoint pickle is malformed at byte {offset}: {message}")]
    Pickle { offset: usize, message: String },

    #[error("checkpoint holds no state dict: {0}")]
    NoStateDict(String),

    #[error("tensor `{key}`: {message}")]
    BadTensor { key: String, message: String },

    #[error(
        "checkpoint is missing `{key}` (expected shape {expected:?} for the {variant} variant)"
    )]
    MissingKey {
        key: String,
        expected: Vec<usize>,
        variant: String,
    },

    #[error("checkpoint has unexpected key `{key}` for the {variant} variant")]
    UnexpectedKey { key: String, variant: String },

    #[error("`{key}` has shape {found:?}, the {variant} variant needs {expected:?}")]
    ShapeMismatch {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        variant: String,
    },

    #[error(
        "this is the superseded 17-part CASIA-B HSTL (July 2023 code drop, Head0.fc_bin {shape:?}); \
         it never ran as published and is not supported: use a checkpoint of the 73-part model"
    )]
    Superseded17Part { shape: Vec<usize> },

    #[error("cannot tell the HSTL variant from Head0.fc_bin {0:?} (known: 73x128x128 CASIA-B, 50x256x256 OU-MVLP/GREW, 46x256x256 Gait3D)")]
    UnknownVariant(Vec<usize>),

    #[error("unknown variant `{0}` (expected casia-b, ou-mvlp, grew or gait3d)")]
    UnknownVariantName(String),

    #[error("silhouettes: {0}")]
    BadInput(String),

    #[error("model {path}: {message}")]
    BadModel { path: PathBuf, message: String },

    #[error("inference failed: {0}")]
    Inference(String),

    #[error("the embedding holds {value} at part {part}, channel {channel}: the model's weights or input are broken (a negative BatchNorm variance, say)")]
    NotFinite {
        part: usize,
        channel: usize,
        value: f32,
    },

    #[error("embeddings are not comparable: {0}")]
    Incomparable(String),

    #[error("dataset {path}: {message}")]
    Dataset { path: PathBuf, message: String },

    #[error("{path} is also an input: writing it would destroy what is being read; choose another output")]
    OutputIsInput { path: PathBuf },

    #[error("ONNX Runtime: {0}")]
    OnnxRuntime(String),
}

pub type Result<T, E = HstlError> = std::result::Result<T, E>;

impl HstlError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HstlError::Io {
            path: path.into(),
            source,
        }
    }
}
