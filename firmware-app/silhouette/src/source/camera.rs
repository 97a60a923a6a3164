//! A live camera as a frame source that survives the camera going away: every failure drops the
//! device, is reported once as an error (so the kiosk can raise "camera lost"), and the device is
//! reopened with exponential back-off until it comes back.
//!
//! The device itself is behind [`CameraDevice`]; the V4L2 implementation (nokhwa) is behind the
//! `camera` feature, and tests drive the reconnection logic with a scripted device.

use std::time::{Duration, Instant};

use image::GrayImage;

use super::{FrameSource, SourceError};
use crate::frame::{nv12_to_luma, rgb_to_luma, yuyv_to_luma, Frame};

/// Pixel layouts cameras deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, luma first.
    Yuyv,
    /// Planar luma, then interleaved chroma at 4:2:0.
    Nv12,
    /// 8-bit luma only.
    Gray,
    /// Packed 8-bit RGB.
    Rgb,
    /// Motion JPEG, one JPEG per frame.
    Mjpeg,
}

/// One frame as the device delivers it.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// How `data` is laid out.
    pub format: PixelFormat,
    /// The frame's bytes.
    pub data: Vec<u8>,
}

impl RawFrame {
    /// 8-bit luma: the Y plane for YUV formats (no arithmetic), a JPEG decode for MJPEG.
    pub fn to_luma(&self) -> Result<GrayImage, String> {
        let (w, h) = (self.width, self.height);
        let short = || {
            format!(
                "{:?} frame of {} bytes is too short for {w}×{h}",
                self.format,
                self.data.len()
            )
        };
        match self.format {
            PixelFormat::Yuyv => yuyv_to_luma(&self.data, w, h).ok_or_else(short),
            PixelFormat::Nv12 => nv12_to_luma(&self.data, w, h).ok_or_else(short),
            PixelFormat::Rgb => rgb_to_luma(&self.data, w, h).ok_or_else(short),
            PixelFormat::Gray => GrayImage::from_raw(w, h, self.data.clone()).ok_or_else(short),
            PixelFormat::Mjpeg => {
                image::load_from_memory_with_format(&self.data, image::ImageFormat::Jpeg)
                    .map(|i| i.into_luma8())
                    .map_err(|e| format!("corrupt MJPEG frame: {e}"))
            }
        }
    }
}

/// A camera that can be opened and read; errors are human-readable reasons.
pub trait CameraDevice: Send {
    /// Opens the device.
    fn open(&mut self) -> Result<(), String>;
    /// Waits for and returns the next frame.
    fn capture(&mut self) -> Result<RawFrame, String>;
    /// Releases the device.
    fn close(&mut self);
    /// The device, for logs and events.
    fn name(&self) -> String;
    /// Frames per second it delivers.
    fn frame_rate(&self) -> f64;
}

/// Back-off between attempts to reopen a failed camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconnect {
    /// The first wait, doubled after each failed attempt...
    pub first_retry: Duration,
    /// ...up to this.
    pub max_retry: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(8),
        }
    }
}

/// A live camera as a frame source: a failure is reported once, then the device is reopened with
/// back-off while the kiosk keeps running.
pub struct CameraSource<D: CameraDevice> {
    device: D,
    reconnect: Reconnect,
    open: bool,
    retry_after: Duration,
    next_attempt: Option<Instant>,
    started: Instant,
    index: u64,
    reopened: u64,
}

impl<D: CameraDevice> CameraSource<D> {
    /// A source over `device`, opened on the first frame asked for.
    pub fn new(device: D, reconnect: Reconnect) -> Self {
        let retry_after = reconnect.first_retry;
        Self {
            device,
            reconnect,
            open: false,
            retry_after,
            next_attempt: None,
            started: Instant::now(),
            index: 0,
            reopened: 0,
        }
    }

    /// Times the device was opened again after a failure.
    pub fn reopen_count(&self) -> u64 {
        self.reopened
    }

    fn lost(&mut self, reason: String) -> SourceError {
        self.device.close();
        self.open = false;
        self.next_attempt = Some(Instant::now() + self.retry_after);
        log::warn!(
            "camera {}: {reason}; retrying in {:?}",
            self.device.name(),
            self.retry_after
        );
        self.retry_after = (self.retry_after * 2).min(self.reconnect.max_retry);
        SourceError::Camera {
            device: self.device.name(),
            reason,
        }
    }
}

impl<D: CameraDevice> FrameSource for CameraSource<D> {
    /// Never ends: a missing camera is an error for this call, and the next call waits for the
    /// back-off and tries again.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if !self.open {
            if let Some(at) = self.next_attempt {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
            }
            if let Err(reason) = self.device.open() {
                return Err(self.lost(format!("cannot open: {reason}")));
            }
            if self.next_attempt.is_some() {
                self.reopened += 1;
                log::info!("camera {} is back", self.device.name());
            }
            self.open = true;
            self.retry_after = self.reconnect.first_retry;
        }
        let raw = match self.device.capture() {
            Ok(raw) => raw,
            Err(reason) => return Err(self.lost(format!("capture failed: {reason}"))),
        };
        let image = match raw.to_luma() {
            Ok(image) => image,
            // A corrupt frame is dropped, the camera stays open.
            Err(reason) => {
                return Err(SourceError::Camera {
                    device: self.device.name(),
                    reason,
                })
            }
        };
        let frame = Frame {
            index: self.index,
            timestamp: self.started.elapsed(),
            image,
        };
        self.index += 1;
        Ok(Some(frame))
    }

    fn frame_rate(&self) -> f64 {
        self.device.frame_rate()
    }

    fn describe(&self) -> String {
        format!("camera {}", self.device.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Plays a script of open and capture outcomes.
    struct ScriptedDevice {
        opens: VecDeque<bool>,
        captures: VecDeque<Result<RawFrame, String>>,
        closed: usize,
    }

    impl CameraDevice for ScriptedDevice {
        fn open(&mut self) -> Result<(), String> {
            if self.opens.pop_front().unwrap_or(true) {
                Ok(())
            } else {
                Err("no such device".into())
            }
        }
        fn capture(&mut self) -> Result<RawFrame, String> {
            self.captures.pop_front().unwrap_or(Err("unplugged".into()))
        }
        fn close(&mut self) {
            self.closed += 1;
        }
        fn name(&self) -> String {
            "/dev/video9".into()
        }
        fn frame_rate(&self) -> f64 {
            25.0
        }
    }

    fn yuyv(value: u8) -> RawFrame {
        RawFrame {
            width: 2,
            height: 1,
            format: PixelFormat::Yuyv,
            data: vec![value, 128, value, 128],
        }
    }

    #[test]
    fn a_camera_that_goes_away_is_reported_and_reopened_with_back_off() {
        let device = ScriptedDevice {
            opens: VecDeque::from([true, false, false, true]),
            captures: VecDeque::from([Ok(yuyv(10)), Err("unplugged".into()), Ok(yuyv(20))]),
            closed: 0,
        };
        let reconnect = Reconnect {
            first_retry: Duration::from_millis(5),
            max_retry: Duration::from_millis(20),
        };
        let mut source = CameraSource::new(device, reconnect);
        assert_eq!(
            source.next_frame().unwrap().unwrap().image.as_raw(),
            &vec![10, 10]
        );
        let lost = source.next_frame().unwrap_err();
        assert!(
            lost.to_string()
                .contains("/dev/video9: capture failed: unplugged"),
            "{lost}"
        );
        let started = Instant::now();
        assert!(source
            .next_frame()
            .unwrap_err()
            .to_string()
            .contains("cannot open"));
        assert!(source
            .next_frame()
            .unwrap_err()
            .to_string()
            .contains("cannot open"));
        let back = source.next_frame().unwrap().unwrap();
        assert_eq!(back.image.as_raw(), &vec![20, 20]);
        assert_eq!(back.index, 1);
        // The attempts after the loss are 10 and 20 ms apart (part of the first 5 ms may have passed
        // before the clock started).
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(source.reopen_count(), 1);
        assert_eq!(source.device.closed, 3);
    }

    #[test]
    fn a_corrupt_frame_is_an_error_but_not_a_lost_camera() {
        let device = ScriptedDevice {
            opens: VecDeque::new(),
            captures: VecDeque::from([
                Ok(RawFrame {
                    width: 4,
                    height: 4,
                    format: PixelFormat::Mjpeg,
                    data: vec![0xFF, 0xD8, 0x00],
                }),
                Ok(yuyv(7)),
            ]),
            closed: 0,
        };
        let mut source = CameraSource::new(device, Reconnect::default());
        assert!(source
            .next_frame()
            .unwrap_err()
            .to_string()
            .contains("corrupt MJPEG"));
        assert_eq!(
            source.next_frame().unwrap().unwrap().image.as_raw(),
            &vec![7, 7]
        );
        assert_eq!(source.device.closed, 0);
    }

    #[test]
    fn mjpeg_frames_are_decoded_to_luma() {
        let grey = GrayImage::from_pixel(8, 8, image::Luma([90]));
        let mut jpeg = Vec::new();
        grey.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        let raw = RawFrame {
            width: 8,
            height: 8,
            format: PixelFormat::Mjpeg,
            data: jpeg,
        };
        let luma = raw.to_luma().unwrap();
        assert!(luma.pixels().all(|p| p.0[0].abs_diff(90) <= 2));
    }
}
