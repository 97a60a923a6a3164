//! USB/UVC cameras through nokhwa's V4L2 backend (feature `camera`). The camera is asked for its
//! highest frame rate; YUYV, NV12 and GRAY frames give luma without decoding, MJPEG is decoded.

use nokhwa::pixel_format::LumaFormat;
use nokhwa::utils::{CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
use nokhwa::Camera;

use super::camera::{CameraDevice, PixelFormat, RawFrame};

/// A V4L2 camera through nokhwa: YUYV, NV12 and GRAY give luma without decoding, MJPEG is decoded.
pub struct V4l2Camera {
    index: u32,
    camera: Option<Camera>,
    frame_rate: f64,
}

// SAFETY: with only nokhwa's V4L2 backend compiled in, the camera is a device file descriptor and
// the buffers the kernel maps for it; V4L2 lets any thread issue its ioctls and read those buffers.
// `V4l2Camera` owns the camera alone and is not `Sync`, so moving it whole to another thread can
// never make two threads drive it at once.
unsafe impl Send for V4l2Camera {}

impl V4l2Camera {
    /// `/dev/video{index}`.
    pub fn new(index: u32) -> Self {
        Self {
            index,
            camera: None,
            frame_rate: 0.0,
        }
    }
}

impl CameraDevice for V4l2Camera {
    fn open(&mut self) -> Result<(), String> {
        let requested =
            RequestedFormat::new::<LumaFormat>(RequestedFormatType::AbsoluteHighestFrameRate);
        let mut camera =
            Camera::new(CameraIndex::Index(self.index), requested).map_err(|e| e.to_string())?;
        camera.open_stream().map_err(|e| e.to_string())?;
        self.frame_rate = camera.frame_rate() as f64;
        self.camera = Some(camera);
        Ok(())
    }

    fn capture(&mut self) -> Result<RawFrame, String> {
        let camera = self.camera.as_mut().ok_or("not open")?;
        let buffer = camera.frame().map_err(|e| e.to_string())?;
        let format = match buffer.source_frame_format() {
            FrameFormat::YUYV => PixelFormat::Yuyv,
            FrameFormat::NV12 => PixelFormat::Nv12,
            FrameFormat::GRAY => PixelFormat::Gray,
            FrameFormat::RAWRGB => PixelFormat::Rgb,
            FrameFormat::MJPEG => PixelFormat::Mjpeg,
            other => return Err(format!("unsupported pixel format {other:?}")),
        };
        let resolution = buffer.resolution();
        Ok(RawFrame {
            width: resolution.width(),
            height: resolution.height(),
            format,
            data: buffer.buffer().to_vec(),
        })
    }

    fn close(&mut self) {
        if let Some(mut camera) = self.camera.take() {
            if let Err(e) = camera.stop_stream() {
                log::debug!("/dev/video{}: stopping the stream: {e}", self.index);
            }
        }
    }

    fn name(&self) -> String {
        format!("/dev/video{}", self.index)
    }

    fn frame_rate(&self) -> f64 {
        self.frame_rate
    }
}
