//! Nearest-centroid tracking of person blobs across frames, so that each walker gets their own
//! silhouette sequence.
//!
//! When people cross in the image their blobs merge into one. A blob that holds the predicted
//! positions of two or more tracks is given to none of them: its silhouette is of no one person. The
//! tracks coast at their smoothed velocities, and when the blob splits, each is matched again by its
//! predicted position, so that walkers who cross keep their identities.

use crate::blobs::{Blob, BoundingBox};

/// A track seen fewer times may be a fragment of someone else's blob, and is not taken as a second
/// person when the pieces join.
const MERGE_MIN_OBSERVATIONS: u32 = 3;

/// How blobs are followed from frame to frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Largest centroid jump between frames, as a fraction of the track's blob height.
    pub max_jump_fraction: f32,
    /// Frames a track may go unseen before it ends.
    pub max_missed_frames: u32,
    /// Frames a track may stay hidden in a merged blob before it ends.
    pub max_occluded_frames: u32,
    /// Weight of the newest displacement in the smoothed velocity.
    pub velocity_smoothing: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            max_jump_fraction: 0.5,
            max_missed_frames: 5,
            max_occluded_frames: 75,
            velocity_smoothing: 0.3,
        }
    }
}

/// A track's number, unique while the stage runs.
pub type TrackId = u64;

/// A person followed across frames.
#[derive(Debug, Clone)]
pub struct Track {
    /// Its number.
    pub id: TrackId,
    /// Its blob's box when last seen.
    pub bbox: BoundingBox,
    /// Where the track was last seen, or where it has coasted to while hidden.
    pub centroid: (f32, f32),
    /// Smoothed per-frame centroid motion, pixels.
    pub velocity: (f32, f32),
    /// Frame it was first seen at.
    pub first_frame: u64,
    /// Frame it was last seen at.
    pub last_seen_frame: u64,
    /// Frames in a row without a blob.
    pub missed_frames: u32,
    /// Frames in a row hidden in a blob shared with other tracks.
    pub occluded_frames: u32,
    observations: u32,
    /// The frame `centroid` refers to.
    centroid_frame: u64,
}

impl Track {
    fn predicted(&self, frame_index: u64) -> (f32, f32) {
        let frames = (frame_index - self.centroid_frame) as f32;
        (
            self.centroid.0 + self.velocity.0 * frames,
            self.centroid.1 + self.velocity.1 * frames,
        )
    }

    fn observe(&mut self, frame_index: u64, blob: &Blob, smoothing: f32) {
        let frames = (frame_index - self.centroid_frame).max(1) as f32;
        let displacement = (
            (blob.centroid.0 - self.centroid.0) / frames,
            (blob.centroid.1 - self.centroid.1) / frames,
        );
        let weight = if self.observations == 1 {
            1.0
        } else {
            smoothing
        };
        self.velocity = (
            self.velocity.0 + weight * (displacement.0 - self.velocity.0),
            self.velocity.1 + weight * (displacement.1 - self.velocity.1),
        );
        self.centroid = blob.centroid;
        self.centroid_frame = frame_index;
        self.bbox = blob.bbox;
        self.last_seen_frame = frame_index;
        self.missed_frames = 0;
        self.occluded_frames = 0;
        self.observations += 1;
    }

    fn coast(&mut self, frame_index: u64) {
        self.centroid = self.predicted(frame_index);
        self.centroid_frame = frame_index;
        self.occluded_frames += 1;
    }
}

/// What the tracker made of one frame's blobs.
#[derive(Debug, Default)]
pub struct TrackUpdate {
    /// (track, index of its blob in the frame's blob list).
    pub observed: Vec<(TrackId, usize)>,
    /// Tracks hidden in a blob they share with others: still in view, but with no silhouette of their
    /// own this frame.
    pub occluded: Vec<TrackId>,
    /// Tracks that ended this frame (lost for too long).
    pub ended: Vec<Track>,
}

/// Nearest-centroid tracking with smoothed velocity prediction.
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: TrackId,
}

impl Tracker {
    /// A tracker with no tracks.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// The tracks alive.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Sets merged blobs aside, matches the other blobs to tracks (greedy by predicted-centroid
    /// distance), starts tracks for unmatched blobs and ends tracks unseen for too long.
    pub fn update(&mut self, frame_index: u64, blobs: &[Blob]) -> TrackUpdate {
        let predictions: Vec<(f32, f32)> = self
            .tracks
            .iter()
            .map(|track| track.predicted(frame_index))
            .collect();
        let mut track_taken = vec![false; self.tracks.len()];
        let mut blob_taken = vec![false; blobs.len()];
        let mut update = TrackUpdate::default();

        for (b, blob) in blobs.iter().enumerate() {
            let inside: Vec<usize> = (0..self.tracks.len())
                .filter(|&t| {
                    let track = &self.tracks[t];
                    track.missed_frames == 0
                        && track.observations >= MERGE_MIN_OBSERVATIONS
                        && contains(&blob.bbox, predictions[t])
                })
                .collect();
            if inside.len() >= 2 {
                blob_taken[b] = true;
                for t in inside {
                    track_taken[t] = true;
                    self.tracks[t].coast(frame_index);
                    update.occluded.push(self.tracks[t].id);
                }
            }
        }

        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            if track_taken[t] {
                continue;
            }
            let frames_since = (frame_index - track.centroid_frame).max(1) as f32;
            let gate = self.config.max_jump_fraction * track.bbox.height() as f32 * frames_since;
            for (b, blob) in blobs.iter().enumerate() {
                if blob_taken[b] {
                    continue;
                }
                let predicted = predictions[t];
                let d = (blob.centroid.0 - predicted.0).hypot(blob.centroid.1 - predicted.1);
                if d <= gate {
                    pairs.push((d, t, b));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, t, b) in pairs {
            if track_taken[t] || blob_taken[b] {
                continue;
            }
            track_taken[t] = true;
            blob_taken[b] = true;
            let track = &mut self.tracks[t];
            track.observe(frame_index, &blobs[b], self.config.velocity_smoothing);
            update.observed.push((track.id, b));
        }
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if !track_taken[t] {
                track.missed_frames += 1;
            }
        }
        let config = &self.config;
        let (ended, kept): (Vec<Track>, Vec<Track>) =
            std::mem::take(&mut self.tracks).into_iter().partition(|t| {
                t.missed_frames > config.max_missed_frames
                    || t.occluded_frames > config.max_occluded_frames
            });
        self.tracks = kept;
        update.ended = ended;
        for (b, blob) in blobs.iter().enumerate() {
            if blob_taken[b] {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.tracks.push(Track {
                id,
                bbox: blob.bbox,
                centroid: blob.centroid,
                velocity: (0.0, 0.0),
                first_frame: frame_index,
                last_seen_frame: frame_index,
                missed_frames: 0,
                occluded_frames: 0,
                observations: 1,
                centroid_frame: frame_index,
            });
            update.observed.push((id, b));
        }
        update
    }

    /// Ends every track (the source has ended).
    pub fn finish(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }
}

fn contains(bbox: &BoundingBox, point: (f32, f32)) -> bool {
    (bbox.x0 as f32..bbox.x1 as f32).contains(&point.0)
        && (bbox.y0 as f32..bbox.y1 as f32).contains(&point.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    fn blob_at(x: f32) -> Blob {
        let bbox = BoundingBox {
            x0: x as u32 - 10,
            y0: 10,
            x1: x as u32 + 10,
            y1: 90,
        };
        Blob {
            bbox,
            area: 1600,
            centroid: (x, 50.0),
            mask: GrayImage::new(20, 80),
        }
    }

    #[test]
    fn walkers_whose_blobs_merge_while_crossing_keep_their_ids() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let (mut left_id, mut right_id) = (None, None);
        let mut merged_frames = 0;
        for frame in 0..60u64 {
            let left = 20.0 + 5.0 * frame as f32;
            let right = 320.0 - 5.0 * frame as f32;
            if (left - right).abs() < 24.0 {
                // One blob for both, centred between them, as the clean-up gives when people cross.
                let both = BoundingBox {
                    x0: left.min(right) as u32 - 10,
                    y0: 10,
                    x1: left.max(right) as u32 + 10,
                    y1: 90,
                };
                let blob = Blob {
                    bbox: both,
                    area: 3000,
                    centroid: ((left + right) / 2.0, 50.0),
                    mask: GrayImage::new(both.width(), both.height()),
                };
                let update = tracker.update(frame, &[blob]);
                assert!(update.observed.is_empty(), "frame {frame}: {update:?}");
                assert_eq!(update.occluded.len(), 2);
                merged_frames += 1;
                continue;
            }
            let update = tracker.update(frame, &[blob_at(left), blob_at(right)]);
            let id_of = |b: usize| {
                update
                    .observed
                    .iter()
                    .find(|(_, blob)| *blob == b)
                    .unwrap()
                    .0
            };
            assert_eq!(*left_id.get_or_insert(id_of(0)), id_of(0), "frame {frame}");
            assert_eq!(*right_id.get_or_insert(id_of(1)), id_of(1), "frame {frame}");
        }
        assert!(merged_frames >= 4);
        assert_eq!(tracker.tracks().len(), 2);
    }

    #[test]
    fn a_track_survives_short_gaps_and_ends_after_long_ones() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        tracker.update(0, &[blob_at(50.0)]);
        tracker.update(1, &[blob_at(54.0)]);
        for frame in 2..5 {
            assert!(tracker.update(frame, &[]).ended.is_empty());
        }
        let update = tracker.update(5, &[blob_at(70.0)]);
        assert_eq!(
            update.observed[0].0, 1,
            "the same walker after a 3-frame gap"
        );
        let mut ended = Vec::new();
        for frame in 6..20 {
            ended.extend(tracker.update(frame, &[]).ended);
        }
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].id, 1);
    }
}
