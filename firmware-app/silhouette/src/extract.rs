//! Offline extraction of every walk in a recording: the normalised silhouettes of each track, their
//! quality-gate statistics, and a contact sheet a person can check at a glance.

use std::collections::BTreeMap;

use image::GrayImage;

use crate::frame::Frame;
use crate::normalise::PRETREATED_SIZE;
use crate::pipeline::{FrameReport, SilhouettePipeline};
use crate::quality::{check_walker, FrameRejection, NotAWalker};
use crate::source::{FrameSource, SourceError};
use crate::tracking::TrackId;
use crate::windows::Window;

/// Grey level of the gaps between contact-sheet cells.
const SHEET_GAP_GREY: u8 = 96;
const SHEET_GAP_PX: u32 = 2;

/// All silhouettes of one walker.
#[derive(Debug, Clone)]
pub struct Walk {
    /// The track the walk is.
    pub track: TrackId,
    /// Frame index it was first seen at.
    pub first_frame: u64,
    /// Frame index it was last seen at.
    pub last_frame: u64,
    /// Valid normalised 64×64 silhouettes, in order.
    pub silhouettes: Vec<GrayImage>,
    /// Frames refused by the quality gates, by reason.
    pub rejections: BTreeMap<FrameRejection, usize>,
    /// Whether the silhouettes, all together, show a walking person (the windows' walker gate).
    pub walking: Result<(), NotAWalker>,
}

impl Walk {
    /// Frames of the track, valid or refused.
    pub fn frames_seen(&self) -> usize {
        self.silhouettes.len() + self.rejections.values().sum::<usize>()
    }

    /// `[T, 64, 64]` uint8, row-major.
    pub fn stacked(&self) -> Vec<u8> {
        crate::windows::stack(&self.silhouettes)
    }
}

/// Every walk of a recording.
#[derive(Debug, Clone, Default)]
pub struct Extraction {
    /// Frames read from the recording.
    pub frames_read: u64,
    /// Walks in order of their first frame.
    pub walks: Vec<Walk>,
}

impl Extraction {
    /// The walk with the most valid silhouettes, among those of a walking person if there are any
    /// (a background ghost or a parked car can outlast the walker).
    pub fn main_walk(&self) -> Option<&Walk> {
        self.walks
            .iter()
            .max_by_key(|w| (w.walking.is_ok(), w.silhouettes.len()))
    }
}

/// A recording run through the stage to its end.
#[derive(Debug, Default)]
pub struct Replay {
    /// Frames read from the recording (the empty scene not counted).
    pub frames_read: u64,
    /// The windows the stage closed when the recording ended (tracks still in view).
    pub closing_windows: Vec<Window>,
}

/// Runs a recording through the stage: the background learnt from `empty_scene` first when there is
/// one, then every frame of `source`, whose reports go to `visit`. The one offline driver of the stage
/// (extraction, enrolment); the kiosk's capture thread drives it live.
pub fn replay(
    pipeline: &mut SilhouettePipeline,
    empty_scene: Option<&mut dyn FrameSource>,
    source: &mut dyn FrameSource,
    mut visit: impl FnMut(&Frame, FrameReport),
) -> Result<Replay, SourceError> {
    if let Some(empty) = empty_scene {
        while let Some(frame) = empty.next_frame()? {
            pipeline.learn_background(&frame);
        }
    }
    let mut frames_read = 0;
    while let Some(frame) = source.next_frame()? {
        visit(&frame, pipeline.process(&frame));
        frames_read += 1;
    }
    Ok(Replay {
        frames_read,
        closing_windows: pipeline.finish(),
    })
}

/// Every walk of a recording, after learning the background from `empty_scene` when given.
pub fn extract_walks(
    pipeline: &mut SilhouettePipeline,
    empty_scene: Option<&mut dyn FrameSource>,
    source: &mut dyn FrameSource,
) -> Result<Extraction, SourceError> {
    let mut walks: BTreeMap<TrackId, Walk> = BTreeMap::new();
    let replayed = replay(pipeline, empty_scene, source, |frame, report| {
        record(frame, report, &mut walks)
    })?;
    let mut walks: Vec<Walk> = walks.into_values().collect();
    walks.sort_by_key(|w| w.first_frame);
    let gate = pipeline.config().windows.walker;
    for walk in &mut walks {
        walk.walking = check_walker(&walk.silhouettes, &gate);
    }
    Ok(Extraction {
        frames_read: replayed.frames_read,
        walks,
    })
}

fn record(frame: &Frame, report: FrameReport, walks: &mut BTreeMap<TrackId, Walk>) {
    for track_frame in report.tracks {
        let walk = walks.entry(track_frame.track).or_insert_with(|| Walk {
            track: track_frame.track,
            first_frame: frame.index,
            last_frame: frame.index,
            silhouettes: Vec::new(),
            rejections: BTreeMap::new(),
            walking: Ok(()),
        });
        walk.last_frame = frame.index;
        match track_frame.silhouette {
            Ok(s) => walk.silhouettes.push(s),
            Err(reason) => *walk.rejections.entry(reason).or_insert(0) += 1,
        }
    }
}

/// The silhouettes side by side, `columns` per row, on a grey grid.
pub fn contact_sheet(silhouettes: &[GrayImage], columns: u32) -> GrayImage {
    let columns = columns.max(1);
    let rows = (silhouettes.len() as u32).div_ceil(columns).max(1);
    let cell = PRETREATED_SIZE + SHEET_GAP_PX;
    let mut sheet = GrayImage::from_pixel(
        columns.min(silhouettes.len().max(1) as u32) * cell + SHEET_GAP_PX,
        rows * cell + SHEET_GAP_PX,
        image::Luma([SHEET_GAP_GREY]),
    );
    for (i, silhouette) in silhouettes.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        image::imageops::replace(
            &mut sheet,
            silhouette,
            (SHEET_GAP_PX + col * cell) as i64,
            (SHEET_GAP_PX + row * cell) as i64,
        );
    }
    sheet
}
