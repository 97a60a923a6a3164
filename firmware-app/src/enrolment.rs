//! Templates from recorded walks, made exactly the way the kiosk sees probes: the windows the
//! silhouette stage cuts for the recording's main walker (same length, hop and quality gate), streamed
//! into one walk, and the walk so far after each window as the door searches it, so that replaying an
//! enrolment recording at the door reproduces its templates.

use std::collections::BTreeMap;

use hstl::streaming::StreamingEmbedder;

use access::gallery::NewTemplate;
use access::matcher::{MatchError, MatchIndex};
use silhouette::extract::replay;
use silhouette::quality::NotAWalker;
use silhouette::source::{FrameSource, SourceError};
use silhouette::tracking::TrackId;
use silhouette::windows::{Window, WindowQuality};
use silhouette::SilhouettePipeline;
use walk_embedding::WalkSoFar;

/// Why a recording gives no templates.
#[derive(Debug, thiserror::Error)]
pub enum EnrolmentError {
    /// The walker gave no window good enough for the network.
    #[error("{source_name}: no usable window of a walking person in {frames} frames (refused: {refused})")]
    NoUsableWindow {
        /// The recording.
        source_name: String,
        /// Frames read.
        frames: u64,
        /// The refused windows and why, in words.
        refused: String,
    },
    /// The network failed on a window.
    #[error("embedding {source_name}: {error}")]
    Embed {
        /// The recording.
        source_name: String,
        /// What the network said.
        error: hstl::HstlError,
    },
}

/// What the silhouette stage made of a recording: the usable windows of its main walker.
#[derive(Debug, Clone, Default)]
pub struct WalkWindows {
    /// Frames read from the recording.
    pub frames_read: u64,
    /// The main walker's track, when there was one.
    pub track: Option<TrackId>,
    /// Their usable windows, in order.
    pub windows: Vec<Window>,
    /// Windows of the main walker refused for too few valid silhouettes.
    pub poor_windows: usize,
    /// Windows of the main walker refused as not showing a walking person, and why.
    pub not_walker_windows: Vec<NotAWalker>,
    /// What of the recording could not be read (a truncated or damaged file), when anything.
    pub damage: Option<String>,
}

impl WalkWindows {
    /// The refused windows in words, for reports and errors.
    pub fn refusals(&self) -> String {
        let mut words = format!("{} with too few valid silhouettes", self.poor_windows);
        if let Some(first) = self.not_walker_windows.first() {
            words += &format!(
                ", {} not of a walking person (the first: {first})",
                self.not_walker_windows.len()
            );
        }
        words
    }
}

/// Learns the background from `empty_scene` (if given), runs `source` to its end, and keeps the good
/// windows of the track with the most of them.
pub fn walk_windows(
    pipeline: &mut SilhouettePipeline,
    empty_scene: Option<&mut dyn FrameSource>,
    source: &mut dyn FrameSource,
) -> Result<WalkWindows, SourceError> {
    let mut per_track: BTreeMap<TrackId, Vec<Window>> = BTreeMap::new();
    let mut keep = |window: Window| per_track.entry(window.track).or_default().push(window);
    let replayed = replay(pipeline, empty_scene, source, |_, report| {
        report.windows.into_iter().for_each(&mut keep)
    })?;
    replayed.closing_windows.into_iter().for_each(keep);
    let frames_read = replayed.frames_read;
    let good = |windows: &Vec<Window>| {
        windows
            .iter()
            .filter(|w| w.quality == WindowQuality::Good)
            .count()
    };
    let main = per_track
        .iter()
        .max_by_key(|(track, windows)| (good(windows), windows.len(), std::cmp::Reverse(**track)))
        .map(|(track, _)| *track);
    let mut result = WalkWindows {
        frames_read,
        track: main,
        damage: source.damage(),
        ..WalkWindows::default()
    };
    if let Some(windows) = main.and_then(|t| per_track.remove(&t)) {
        for window in windows {
            match window.quality {
                WindowQuality::Good => result.windows.push(window),
                WindowQuality::TooFewValidFrames { .. } => result.poor_windows += 1,
                WindowQuality::NotAWalker(reason) => result.not_walker_windows.push(reason),
            }
        }
    }
    Ok(result)
}

/// One template per usable window: the walk so far once that window is taken, the last one the
/// whole walk.
pub fn templates_from_windows(
    embedder: &StreamingEmbedder,
    walk: &WalkWindows,
    source_name: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<NewTemplate>, EnrolmentError> {
    if walk.windows.is_empty() {
        return Err(EnrolmentError::NoUsableWindow {
            source_name: source_name.to_string(),
            frames: walk.frames_read,
            refused: walk.refusals(),
        });
    }
    let mut templates = Vec::with_capacity(walk.windows.len());
    let mut walk_so_far = WalkSoFar::new(embedder);
    let first_frame = walk.windows[0].first_frame;
    for (i, window) in walk.windows.iter().enumerate() {
        let embedding = walk_so_far
            .take(window)
            .map_err(|error| EnrolmentError::Embed {
                source_name: source_name.to_string(),
                error,
            })?;
        templates.push(NewTemplate {
            embedding,
            frames: walk_so_far.frames(),
            source: format!("{source_name} frames {first_frame}..={}", window.last_frame),
        });
        progress(i + 1, walk.windows.len());
    }
    Ok(templates)
}

/// The enrolled identity nearest to any of `templates`, and its distance: a new person this close to
/// someone already enrolled will be confused with them.
pub fn nearest_enrolled(
    index: &MatchIndex,
    templates: &[NewTemplate],
) -> Result<Option<(usize, f32)>, MatchError> {
    let mut nearest: Option<(usize, f32)> = None;
    for template in templates {
        if let Some(best) = index.search(&template.embedding)?.best {
            if nearest.is_none_or(|(_, d)| best.distance < d) {
                nearest = Some((best.identity, best.distance));
            }
        }
    }
    Ok(nearest)
}
