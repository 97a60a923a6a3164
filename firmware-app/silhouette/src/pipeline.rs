//! The whole silhouette stage for one camera: frame → background model → person blobs → tracks →
//! quality gates → OpenGait normalisation → per-track windows.

use std::collections::HashMap;

use image::GrayImage;

use crate::background::{BackgroundConfig, BackgroundModel};
use crate::blobs::{extract_blobs, Blob, BlobConfig};
use crate::frame::Frame;
use crate::normalise::pretreat_placed;
use crate::quality::{check_frame, FrameRejection, QualityConfig};
use crate::tracking::{Track, TrackId, Tracker, TrackerConfig};
use crate::windows::{Observation, Placement, TrackWindows, Window, WindowConfig};

/// A track is held in the background model (learnt much more slowly under it) once it has moved this
/// many of its own heights: a person who walked in and waits, not a ghost left by the first frame.
const HOLD_AFTER_TRAVEL_HEIGHTS: f32 = 0.25;

/// Settings of the whole stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SilhouetteConfig {
    /// The background model.
    pub background: BackgroundConfig,
    /// From labels to person blobs.
    pub blobs: BlobConfig,
    /// Tracking.
    pub tracker: TrackerConfig,
    /// The quality gates.
    pub quality: QualityConfig,
    /// Windows per track.
    pub windows: WindowConfig,
}

/// One track's frame in a [`FrameReport`].
#[derive(Debug, Clone)]
pub struct TrackFrame {
    /// The track.
    pub track: TrackId,
    /// Index into [`FrameReport::blobs`].
    pub blob: usize,
    /// Its normalised 64 × 64 silhouette, or why there is none.
    pub silhouette: Result<GrayImage, FrameRejection>,
}

/// What the stage made of one frame.
#[derive(Debug)]
pub struct FrameReport {
    /// The frame's index.
    pub frame_index: u64,
    /// Person blobs found.
    pub blobs: Vec<Blob>,
    /// Tracks seen in this frame.
    pub tracks: Vec<TrackFrame>,
    /// Windows that became due with this frame.
    pub windows: Vec<Window>,
    /// Tracks in view but hidden in a blob shared with others (people crossing).
    pub occluded: Vec<TrackId>,
    /// Tracks that ended with this frame.
    pub ended: Vec<TrackId>,
}

impl FrameReport {
    /// Every person blob painted into one frame-sized mask (255 = person).
    pub fn foreground(&self, width: u32, height: u32) -> GrayImage {
        let mut mask = GrayImage::new(width, height);
        for blob in &self.blobs {
            blob.paint(&mut mask);
        }
        mask
    }
}

#[derive(Debug, Default)]
struct TrackState {
    windows: TrackWindows,
    /// Blob height in the track's previous frame, accepted or not: a jump is a change between frames.
    last_height: Option<u32>,
    origin: Option<(f32, f32)>,
    travelled: bool,
}

/// The silhouette stage for one camera: background model, blobs, tracks, quality gates,
/// normalisation and windows, frame by frame.
pub struct SilhouettePipeline {
    config: SilhouetteConfig,
    model: Option<BackgroundModel>,
    tracker: Tracker,
    states: HashMap<TrackId, TrackState>,
    held: Option<GrayImage>,
}

impl SilhouettePipeline {
    /// A stage that learns its background from the first frames it sees.
    pub fn new(config: SilhouetteConfig) -> Self {
        let tracker = Tracker::new(config.tracker.clone());
        Self {
            config,
            model: None,
            tracker,
            states: HashMap::new(),
            held: None,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &SilhouetteConfig {
        &self.config
    }

    /// Learns `frame` as background only (an empty-scene clip), without looking for people.
    pub fn learn_background(&mut self, frame: &Frame) {
        self.model_for(&frame.image).apply(&frame.image, None);
    }

    /// One frame through the whole stage.
    pub fn process(&mut self, frame: &Frame) -> FrameReport {
        let image = &frame.image;
        if image.width() == 0 || image.height() == 0 {
            // A camera that delivers an empty frame has shown nothing: the frame is dropped.
            log::warn!(
                "frame {}: empty ({:?}); dropped",
                frame.index,
                image.dimensions()
            );
            return FrameReport {
                frame_index: frame.index,
                blobs: Vec::new(),
                tracks: Vec::new(),
                windows: Vec::new(),
                occluded: Vec::new(),
                ended: Vec::new(),
            };
        }
        // Last frame's hold only applies to a frame of its size (a camera can change resolution).
        let held = self
            .held
            .take()
            .filter(|h| h.dimensions() == image.dimensions());
        let blob_config = self.config.blobs.clone();
        let labels = self.model_for(image).apply(image, held.as_ref());
        let blobs = extract_blobs(labels, &blob_config);
        let update = self.tracker.update(frame.index, &blobs);

        let mut report = FrameReport {
            frame_index: frame.index,
            blobs: Vec::new(),
            tracks: Vec::new(),
            windows: Vec::new(),
            occluded: update.occluded,
            ended: Vec::new(),
        };
        let size = image.dimensions();
        // Last frame's hold has been read: its buffer takes this frame's.
        let mut hold = held
            .filter(|h| h.dimensions() == size)
            .unwrap_or_else(|| GrayImage::new(size.0, size.1));
        hold.fill(0);
        for &(track, b) in &update.observed {
            let blob = &blobs[b];
            let state = self.states.entry(track).or_default();
            let origin = *state.origin.get_or_insert(blob.centroid);
            let moved = (blob.centroid.0 - origin.0).hypot(blob.centroid.1 - origin.1);
            state.travelled |= moved > HOLD_AFTER_TRAVEL_HEIGHTS * blob.bbox.height() as f32;
            if state.travelled {
                let (x0, x1) = (blob.bbox.x0 as usize, blob.bbox.x1 as usize);
                for row in hold
                    .chunks_exact_mut(size.0 as usize)
                    .take(blob.bbox.y1 as usize)
                    .skip(blob.bbox.y0 as usize)
                {
                    row[x0..x1].fill(255);
                }
            }
            let silhouette = check_frame(
                &blob.bbox,
                size,
                state.last_height,
                self.config.blobs.close_radius_px(size.1) as u32,
                &self.config.quality,
            )
            .and_then(|()| {
                pretreat_placed(&blob.mask, blob.bbox.x0, size.0).map_err(FrameRejection::from)
            });
            state.last_height = Some(blob.bbox.height());
            let observation = Observation {
                frame_index: frame.index,
                silhouette: silhouette.clone(),
                placement: Some(Placement {
                    centre_x: blob.centroid.0,
                    height: blob.bbox.height() as f32,
                }),
            };
            report
                .windows
                .extend(state.windows.push(track, observation, &self.config.windows));
            report.tracks.push(TrackFrame {
                track,
                blob: b,
                silhouette,
            });
        }
        self.held = Some(hold);
        for track in update.ended {
            report.windows.extend(self.close(&track));
            report.ended.push(track.id);
        }
        report.blobs = blobs;
        report
    }

    /// The source has ended: closes every walk still in progress.
    pub fn finish(&mut self) -> Vec<Window> {
        let tracks = self.tracker.finish();
        tracks.iter().filter_map(|t| self.close(t)).collect()
    }

    fn close(&mut self, track: &Track) -> Option<Window> {
        let mut state = self.states.remove(&track.id)?;
        state.windows.close(track.id, &self.config.windows)
    }

    fn model_for(&mut self, image: &GrayImage) -> &mut BackgroundModel {
        let (w, h) = image.dimensions();
        let config = &self.config.background;
        let model = self
            .model
            .get_or_insert_with(|| BackgroundModel::new(config.clone(), w, h));
        if model.dimensions() != (w, h) {
            log::warn!(
                "frame size changed from {:?} to {:?}: relearning the background",
                model.dimensions(),
                (w, h)
            );
            *model = BackgroundModel::new(config.clone(), w, h);
        }
        model
    }
}
