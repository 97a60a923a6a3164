//! Where frames come from: cameras, video files, image directories and the synthetic scene.

mod image_dir;
pub mod synthetic;

use std::path::PathBuf;

pub use image_dir::ImageDirectory;
pub use synthetic::{SceneConfig, SyntheticScene};

use crate::frame::Frame;

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

/// A stream of greyscale frames. `Ok(None)` is the end of a finite source.
pub trait FrameSource: Send {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;

    /// Frames per second the source delivers (nominal).
    fn frame_rate(&self) -> f64;

    /// A line for logs: what this source is.
    fn describe(&self) -> String;
}
