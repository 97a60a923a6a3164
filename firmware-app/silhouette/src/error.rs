//! What can go wrong reading frames.

use std::path::PathBuf;

/// A frame source that cannot deliver: the path or device it concerns and why.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or device could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An image file that does not decode.
    #[error("{path}: not a readable image ({reason})")]
    BadImage {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// A frame of another size than the source's first.
    #[error(
        "{path}: frame {index} is {got_width}×{got_height}, the source started at {width}×{height}"
    )]
    SizeChanged {
        /// The source.
        path: PathBuf,
        /// Index of the frame.
        index: u64,
        /// Width of the source's frames.
        width: u32,
        /// Height of the source's frames.
        height: u32,
        /// Width of this frame.
        got_width: u32,
        /// Height of this frame.
        got_height: u32,
    },
    /// A source without a single frame.
    #[error("{0}: no frames")]
    Empty(PathBuf),
    /// A video that cannot be opened or decoded.
    #[error("video {path}: {reason}")]
    Video {
        /// The file.
        path: PathBuf,
        /// What FFmpeg said.
        reason: String,
    },
    /// A camera that cannot be opened or read.
    #[error("camera {device}: {reason}")]
    Camera {
        /// The device.
        device: String,
        /// What it said.
        reason: String,
    },
    /// Support not compiled in.
    #[error("{0} support is not built in (rebuild with `--features {0}`)")]
    FeatureMissing(&'static str),
}
