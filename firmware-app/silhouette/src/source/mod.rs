//! Where frames come from: cameras, video files and image directories.

pub mod camera;
mod image_dir;
#[cfg(feature = "camera")]
mod v4l2_camera;
#[cfg(feature = "video")]
mod video;

use std::path::Path;

pub use camera::{CameraDevice, CameraSource, Reconnect};
pub use image_dir::ImageDirectory;
#[cfg(feature = "camera")]
pub use v4l2_camera::V4l2Camera;
#[cfg(feature = "video")]
pub use video::VideoFile;

pub use crate::error::SourceError;
use crate::frame::Frame;

/// A stream of greyscale frames. `Ok(None)` is the end of a finite source.
pub trait FrameSource: Send {
    /// The next frame; an error for a frame that cannot be had.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;

    /// Frames per second the source delivers (nominal).
    fn frame_rate(&self) -> f64;

    /// A line for logs: what this source is.
    fn describe(&self) -> String;

    /// What of the source could not be read so far (a truncated file, damaged packets), in words;
    /// `None` when nothing was lost.
    fn damage(&self) -> Option<String> {
        None
    }
}

/// Frame rate given to image directories, whose files carry no timing.
pub const IMAGE_DIRECTORY_FRAME_RATE: f64 = 25.0;

/// Opens what a user names as input: a directory of images, or a video file (feature `video`).
pub fn open_path(path: &Path) -> Result<Box<dyn FrameSource>, SourceError> {
    if path.is_dir() {
        return Ok(Box::new(ImageDirectory::open(
            path,
            IMAGE_DIRECTORY_FRAME_RATE,
        )?));
    }
    open_video(path)
}

#[cfg(feature = "video")]
fn open_video(path: &Path) -> Result<Box<dyn FrameSource>, SourceError> {
    Ok(Box::new(VideoFile::open(path)?))
}

#[cfg(not(feature = "video"))]
fn open_video(path: &Path) -> Result<Box<dyn FrameSource>, SourceError> {
    if !path.exists() {
        return Err(SourceError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    Err(SourceError::FeatureMissing("video"))
}

/// The V4L2 camera `/dev/video{index}`, reopened with the default back-off whenever it fails
/// (feature `camera`).
#[cfg(feature = "camera")]
pub fn open_camera(index: u32) -> Result<Box<dyn FrameSource>, SourceError> {
    Ok(Box::new(CameraSource::new(
        V4l2Camera::new(index),
        Reconnect::default(),
    )))
}

/// Without the `camera` feature: an error saying so.
#[cfg(not(feature = "camera"))]
pub fn open_camera(_index: u32) -> Result<Box<dyn FrameSource>, SourceError> {
    Err(SourceError::FeatureMissing("camera"))
}
