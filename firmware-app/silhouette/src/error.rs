//! What can go wrong reading frames.

use std::path::PathBuf;

/// A frame source that cannot deliver: the path or device it concerns and why.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable image ({reason})")]
    BadImage { path: PathBuf, reason: String },
    #[error(
        "{path}: frame {index} is {got_width}×{got_height}, the source started at {width}×{height}"
    )]
    SizeChanged {
        path: PathBuf,
        index: u64,
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("{0}: no frames")]
    Empty(PathBuf),
    #[error("video {path}: {reason}")]
    Video { path: PathBuf, reason: String },
    #[error("camera {device}: {reason}")]
    Camera { device: String, reason: String },
    #[error("{0} support is not built in (rebuild with `--features {0}`)")]
    FeatureMissing(&'static str),
}
