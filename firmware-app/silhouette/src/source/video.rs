//! Video files through FFmpeg's libraries (feature `video`): whatever container and codec the system's
//! FFmpeg reads (MPEG-4 Part 2, H.264, MJPEG in AVI or MP4, ...). Frames are converted to 8-bit luma;
//! for YUV formats that is the Y plane, copied without arithmetic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use image::GrayImage;

use super::{FrameSource, SourceError};
use crate::frame::Frame;

/// Frame rate assumed when the container does not state a usable one.
const FALLBACK_FRAME_RATE: f64 = 25.0;

/// A video file decoded by FFmpeg's libraries, frame by frame, as luma (the Y plane of YUV frames,
/// without arithmetic).
pub struct VideoFile {
    path: PathBuf,
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream_index: usize,
    scaler: Option<scaling::Context>,
    frame_rate: f64,
    index: u64,
    flushed: bool,
    finished: bool,
    /// Frames the container says the stream holds (0: it does not say).
    declared_frames: u64,
    /// Packets or pictures lost to damage.
    damaged: u64,
    /// Why reading stopped before the end of the file, when it did.
    stopped: Option<String>,
}

// SAFETY: the demuxer, decoder and scaler contexts are plain heap objects that FFmpeg lets any
// thread use, one at a time; nothing here is tied to the thread that made it (no thread-local state,
// no callbacks registered elsewhere). `VideoFile` owns them alone and is not `Sync`, so moving it
// whole to another thread can never make two threads use them at once.
unsafe impl Send for VideoFile {}

impl VideoFile {
    /// Opens `path` and its first video stream.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let fail = |reason: String| SourceError::Video {
            path: path.to_path_buf(),
            reason,
        };
        ffmpeg::init().map_err(|e| fail(format!("FFmpeg failed to initialise: {e}")))?;
        if !path.is_file() {
            return Err(SourceError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let input = ffmpeg::format::input(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| fail("no video stream".into()))?;
        let stream_index = stream.index();
        let declared_frames = u64::try_from(stream.frames()).unwrap_or(0);
        let rate = stream.avg_frame_rate();
        let frame_rate = if rate.numerator() > 0 && rate.denominator() > 0 {
            rate.numerator() as f64 / rate.denominator() as f64
        } else {
            FALLBACK_FRAME_RATE
        };
        let frame_rate = if (1.0..=240.0).contains(&frame_rate) {
            frame_rate
        } else {
            FALLBACK_FRAME_RATE
        };
        let context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .map_err(|e| fail(format!("unsupported codec parameters: {e}")))?;
        let decoder = context
            .decoder()
            .video()
            .map_err(|e| fail(format!("no decoder for this codec: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            input,
            decoder,
            stream_index,
            scaler: None,
            frame_rate,
            index: 0,
            flushed: false,
            finished: false,
            declared_frames,
            damaged: 0,
            stopped: None,
        })
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Video {
            path: self.path.clone(),
            reason,
        }
    }

    /// The next decoded picture, feeding packets (then the end-of-stream flush) as needed.
    fn decode_next(&mut self) -> Result<Option<ffmpeg::frame::Video>, SourceError> {
        let mut decoded = ffmpeg::frame::Video::empty();
        loop {
            match self.decoder.receive_frame(&mut decoded) {
                Ok(()) => return Ok(Some(decoded)),
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => {
                    log::warn!("{}: undecodable frame skipped ({e})", self.path.display());
                    self.damaged += 1;
                    continue;
                }
            }
            if self.flushed {
                return Ok(None);
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {
                    if packet.stream() != self.stream_index {
                        continue;
                    }
                    if let Err(e) = self.decoder.send_packet(&packet) {
                        // A damaged packet loses its frame, not the file.
                        log::warn!("{}: damaged packet skipped ({e})", self.path.display());
                        self.damaged += 1;
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    self.flushed = true;
                    self.decoder
                        .send_eof()
                        .map_err(|e| self.fail(format!("cannot flush the decoder: {e}")))?;
                }
                Err(e) => {
                    // A truncated or corrupt file ends where it can no longer be read.
                    log::warn!("{}: reading stopped ({e})", self.path.display());
                    self.stopped = Some(e.to_string());
                    self.flushed = true;
                    let _ = self.decoder.send_eof();
                }
            }
        }
    }

    fn luma_of(&mut self, decoded: &ffmpeg::frame::Video) -> Result<GrayImage, SourceError> {
        let (width, height) = (decoded.width(), decoded.height());
        let planar_luma = matches!(
            decoded.format(),
            Pixel::GRAY8
                | Pixel::YUV420P
                | Pixel::YUVJ420P
                | Pixel::YUV422P
                | Pixel::YUVJ422P
                | Pixel::YUV444P
                | Pixel::YUVJ444P
                | Pixel::NV12
        );
        let converted;
        let source = if planar_luma {
            decoded
        } else {
            if self.scaler.is_none() {
                self.scaler = Some(
                    scaling::Context::get(
                        decoded.format(),
                        width,
                        height,
                        Pixel::GRAY8,
                        width,
                        height,
                        scaling::Flags::POINT,
                    )
                    .map_err(|e| {
                        self.fail(format!(
                            "cannot convert {:?} to grey: {e}",
                            decoded.format()
                        ))
                    })?,
                );
            }
            let mut grey = ffmpeg::frame::Video::empty();
            self.scaler
                .as_mut()
                .map(|s| s.run(decoded, &mut grey))
                .transpose()
                .map_err(|e| self.fail(format!("pixel conversion failed: {e}")))?;
            converted = grey;
            &converted
        };
        let stride = source.stride(0);
        let plane = source.data(0);
        let mut luma = Vec::with_capacity((width * height) as usize);
        for y in 0..height as usize {
            luma.extend_from_slice(&plane[y * stride..y * stride + width as usize]);
        }
        GrayImage::from_raw(width, height, luma).ok_or_else(|| self.fail("empty picture".into()))
    }
}

impl FrameSource for VideoFile {
    fn damage(&self) -> Option<String> {
        let mut lost = Vec::new();
        if let Some(reason) = &self.stopped {
            lost.push(format!(
                "reading stopped after frame {} ({reason})",
                self.index
            ));
        }
        if self.finished && self.declared_frames > self.index + self.damaged {
            lost.push(format!(
                "{} of the {} frames the file declares were never decoded (truncated?)",
                self.declared_frames - self.index,
                self.declared_frames
            ));
        }
        if self.damaged > 0 {
            lost.push(format!(
                "{} damaged packets or pictures skipped",
                self.damaged
            ));
        }
        (!lost.is_empty()).then(|| lost.join("; "))
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.finished {
            return Ok(None);
        }
        let Some(decoded) = self.decode_next()? else {
            self.finished = true;
            if self.index == 0 {
                return Err(SourceError::Empty(self.path.clone()));
            }
            return Ok(None);
        };
        let image = self.luma_of(&decoded)?;
        let frame = Frame {
            index: self.index,
            timestamp: Duration::from_secs_f64(self.index as f64 / self.frame_rate),
            image,
        };
        self.index += 1;
        Ok(Some(frame))
    }

    fn frame_rate(&self) -> f64 {
        self.frame_rate
    }

    fn describe(&self) -> String {
        format!(
            "video {} ({}×{}, {:.2} fps)",
            self.path.display(),
            self.decoder.width(),
            self.decoder.height(),
            self.frame_rate
        )
    }
}
