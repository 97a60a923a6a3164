//! Offline extraction of every walk in a recording: the normalised silhouettes of each track, their
//! quality-gate statistics, and a contact sheet a person can check at a glance.

use std::collections::BTreeMap;

use image::GrayImage;

use crate::frame::Frame;
use crate::normalise::PRETREATED_SIZE;
use crate::quality::FrameRejection;
use crate::source::{FrameSource, SourceError};
use crate::stage::SilhouettePipeline;
use crate::tracking::TrackId;

/// Grey level of the gaps between contact-sheet cells.
const SHEET_GAP_GREY: u8 = 96;
const SHEET_GAP_PX: u32 = 2;

/// All silhouettes of one walker.
#[derive(Debug, Clone)]
pub struct Walk {
    pub track: TrackId,
    pub first_frame: u64,
    pub last_frame: u64,
    /// Valid normalised 64×64 silhouettes, in order.
    pub silhouettes: Vec<GrayImage>,
    pub rejections: BTreeMap<FrameRejection, usize>,
}

impl Walk {
    pub fn frames_seen(&self) -> usize {
        self.silhouettes.len() + self.rejections.values().sum::<usize>()
    }

    /// `[T, 64, 64]` uint8, row-major.
    pub fn stacked(&self) -> Vec<u8> {
        crate::windows::stack(&self.silhouettes)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Extraction {
    pub frames_read: u64,
    /// Walks in order of their first frame.
    pub walks: Vec<Walk>,
}

impl Extraction {
    /// The walk with the most valid silhouettes.
    pub fn main_walk(&self) -> Option<&Walk> {
        self.walks.iter().max_by_key(|w| w.silhouettes.len())
    }
}

/// Learns the background from `empty_scene` (if given), then runs `source` to its end.
pub fn extract_walks(
    pipeline: &mut SilhouettePipeline,
    empty_scene: Option<&mut dyn FrameSource>,
    source: &mut dyn FrameSource,
) -> Result<Extraction, SourceError> {
    learn_empty_scene(pipeline, empty_scene)?;
    let mut walks: BTreeMap<TrackId, Walk> = BTreeMap::new();
    let mut extraction = Extraction::default();
    while let Some(frame) = source.next_frame()? {
        record(pipeline, &frame, &mut walks);
        extraction.frames_read += 1;
    }
    pipeline.finish();
    extraction.walks = walks.into_values().collect();
    extraction.walks.sort_by_key(|w| w.first_frame);
    Ok(extraction)
}

/// Learns the background from a recording of the empty scene, when there is one.
pub fn learn_empty_scene(
    pipeline: &mut SilhouettePipeline,
    empty_scene: Option<&mut dyn FrameSource>,
) -> Result<(), SourceError> {
    if let Some(empty) = empty_scene {
        while let Some(frame) = empty.next_frame()? {
            pipeline.learn_background(&frame);
        }
    }
    Ok(())
}

fn record(pipeline: &mut SilhouettePipeline, frame: &Frame, walks: &mut BTreeMap<TrackId, Walk>) {
    let report = pipeline.process(frame);
    for track_frame in report.tracks {
        let walk = walks.entry(track_frame.track).or_insert_with(|| Walk {
            track: track_frame.track,
            first_frame: frame.index,
            last_frame: frame.index,
            silhouettes: Vec::new(),
            rejections: BTreeMap::new(),
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
