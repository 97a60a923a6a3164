//! A directory of still images played in file-name order, e.g. frames dumped from a device camera.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{FrameSource, SourceError};
use crate::frame::Frame;

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// PNG and JPEG files of a folder, in name order, as frames.
pub struct ImageDirectory {
    directory: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    frame_rate: f64,
    size: Option<(u32, u32)>,
}

impl ImageDirectory {
    /// Lists the PNG and JPEG files of `directory`; `frame_rate` dates the frames.
    pub fn open(directory: &Path, frame_rate: f64) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: directory.to_path_buf(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(directory).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
            if is_image {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(SourceError::Empty(directory.to_path_buf()));
        }
        files.sort();
        Ok(Self {
            directory: directory.to_path_buf(),
            files,
            next: 0,
            frame_rate,
            size: None,
        })
    }
}

impl FrameSource for ImageDirectory {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(None);
        };
        let index = self.next as u64;
        self.next += 1;
        let image = image::open(path)
            .map_err(|e| SourceError::BadImage {
                path: path.clone(),
                reason: e.to_string(),
            })?
            .into_luma8();
        let (width, height) = *self.size.get_or_insert(image.dimensions());
        if image.dimensions() != (width, height) {
            return Err(SourceError::SizeChanged {
                path: path.clone(),
                index,
                width,
                height,
                got_width: image.width(),
                got_height: image.height(),
            });
        }
        Ok(Some(Frame {
            index,
            timestamp: Duration::from_secs_f64(index as f64 / self.frame_rate),
            image,
        }))
    }

    fn frame_rate(&self) -> f64 {
        self.frame_rate
    }

    fn describe(&self) -> String {
        format!(
            "{} images in {}",
            self.files.len(),
            self.directory.display()
        )
    }
}
