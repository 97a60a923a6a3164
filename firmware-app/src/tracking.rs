//! Nearest-centroid tracking of person blobs across frames, so that each walker gets their own
//! silhouette sequence.

use crate::blobs::{Blob, BoundingBox};

#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// Largest centroid jump between frames, as a fraction of the track's blob height.
    pub max_jump_fraction: f32,
    /// Frames a track may go unseen before it ends.
    pub max_missed_frames: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            max_jump_fraction: 0.5,
            max_missed_frames: 5,
        }
    }
}

pub type TrackId = u64;

#[derive(Debug, Clone)]
pub struct Track {
    pub id: TrackId,
    pub bbox: BoundingBox,
    pub centroid: (f32, f32),
    /// Per-frame centroid motion, pixels.
    pub velocity: (f32, f32),
    pub first_frame: u64,
    pub last_seen_frame: u64,
    pub missed_frames: u32,
}

/// What the tracker made of one frame's blobs.
#[derive(Debug, Default)]
pub struct TrackUpdate {
    /// (track, index of its blob in the frame's blob list).
    pub observed: Vec<(TrackId, usize)>,
    /// Tracks that ended this frame (lost for too long).
    pub ended: Vec<Track>,
}

#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: TrackId,
}

impl Tracker {
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Matches `blobs` to tracks (greedy by predicted-centroid distance), starts tracks for unmatched
    /// blobs and ends tracks unseen for too long.
    pub fn update(&mut self, frame_index: u64, blobs: &[Blob]) -> TrackUpdate {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            let frames_since = (frame_index - track.last_seen_frame) as f32;
            let predicted = (
                track.centroid.0 + track.velocity.0 * frames_since,
                track.centroid.1 + track.velocity.1 * frames_since,
            );
            let gate =
                self.config.max_jump_fraction * track.bbox.height() as f32 * frames_since.max(1.0);
            for (b, blob) in blobs.iter().enumerate() {
                let d = ((blob.centroid.0 - predicted.0).powi(2)
                    + (blob.centroid.1 - predicted.1).powi(2))
                .sqrt();
                if d <= gate {
                    pairs.push((d, t, b));
                }
            }
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut track_taken = vec![false; self.tracks.len()];
        let mut blob_taken = vec![false; blobs.len()];
        let mut update = TrackUpdate::default();
        for (_, t, b) in pairs {
            if track_taken[t] || blob_taken[b] {
                continue;
            }
            track_taken[t] = true;
            blob_taken[b] = true;
            let track = &mut self.tracks[t];
            let frames_since = (frame_index - track.last_seen_frame).max(1) as f32;
            let blob = &blobs[b];
            track.velocity = (
                (blob.centroid.0 - track.centroid.0) / frames_since,
                (blob.centroid.1 - track.centroid.1) / frames_since,
            );
            track.centroid = blob.centroid;
            track.bbox = blob.bbox;
            track.last_seen_frame = frame_index;
            track.missed_frames = 0;
            update.observed.push((track.id, b));
        }
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if !track_taken[t] {
                track.missed_frames += 1;
            }
        }
        let max_missed = self.config.max_missed_frames;
        let (ended, kept): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.tracks)
            .into_iter()
            .partition(|t| t.missed_frames > max_missed);
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
    fn two_walkers_crossing_keep_their_ids() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut ids_of_left_walker = Vec::new();
        for frame in 0..40u64 {
            let left = 20.0 + 5.0 * frame as f32;
            let right = 300.0 - 4.0 * frame as f32;
            let update = tracker.update(frame, &[blob_at(left), blob_at(right)]);
            let id = update.observed.iter().find(|(_, b)| *b == 0).unwrap().0;
            ids_of_left_walker.push(id);
        }
        assert!(ids_of_left_walker
            .iter()
            .all(|&id| id == ids_of_left_walker[0]));
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
