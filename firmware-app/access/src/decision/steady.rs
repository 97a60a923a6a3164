//! Counts that hold: people in view and arrivals, reported only once they have held for a few
//! frames, so that a blob that splits for a frame or two is not a second person.

use std::collections::HashMap;

use silhouette::tracking::TrackId;

/// A count of people must hold this many frames before it is reported: a blob that splits for a
/// frame or two is not a second person.
const STEADY_FRAMES: u64 = 6;

/// The number of people in view, reported when it changes and holds.
#[derive(Default)]
pub struct SteadyCount {
    reported: usize,
    candidate: Option<(usize, u64)>,
}

impl SteadyCount {
    /// Returns (count, first frame with it) once a new count has held for [`STEADY_FRAMES`].
    pub fn observe(&mut self, frame: u64, people: usize) -> Option<(usize, u64)> {
        if people == self.reported {
            self.candidate = None;
            return None;
        }
        let (count, since) = match self.candidate {
            Some((count, since)) if count == people => (count, since),
            _ => {
                self.candidate = Some((people, frame));
                (people, frame)
            }
        };
        if frame + 1 - since >= STEADY_FRAMES {
            self.reported = count;
            self.candidate = None;
            return Some((count, since));
        }
        None
    }
}

/// Tracks that came into view and stayed [`STEADY_FRAMES`] frames: people arriving, not a blob that
/// split for a frame or two.
#[derive(Debug, Default)]
pub struct SteadyArrivals {
    /// Per track in view: its first frame, frames seen, and whether it was reported.
    tracks: HashMap<TrackId, (u64, u64, bool)>,
}

impl SteadyArrivals {
    /// The tracks seen in `frame`; returns those that became steady with it, each with its first
    /// frame.
    pub fn observe(
        &mut self,
        frame: u64,
        tracks: impl IntoIterator<Item = TrackId>,
    ) -> Vec<(TrackId, u64)> {
        let mut steady = Vec::new();
        for track in tracks {
            let (first, seen, reported) = self.tracks.entry(track).or_insert((frame, 0, false));
            *seen += 1;
            if !*reported && *seen >= STEADY_FRAMES {
                *reported = true;
                steady.push((track, *first));
            }
        }
        steady
    }

    /// `track` left the view.
    pub fn ended(&mut self, track: TrackId) {
        self.tracks.remove(&track);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_tracks_that_stay() {
        let mut arrivals = SteadyArrivals::default();
        let mut steady = Vec::new();
        for frame in 0..20u64 {
            let mut tracks = vec![1];
            // Track 2 flickers for two frames; track 3 comes at frame 8 and stays.
            if frame == 4 || frame == 5 {
                tracks.push(2);
            }
            if frame >= 8 {
                tracks.push(3);
            }
            steady.extend(arrivals.observe(frame, tracks));
        }
        assert_eq!(steady, vec![(1, 0), (3, 8)]);
        arrivals.ended(3);
        let again: Vec<_> = (20..30u64).flat_map(|f| arrivals.observe(f, [3])).collect();
        assert_eq!(
            again,
            vec![(3, 20)],
            "a track that ended and is seen again arrives again"
        );
    }

    #[test]
    fn a_count_is_reported_once_it_holds() {
        let mut count = SteadyCount::default();
        assert_eq!(count.observe(10, 1), None);
        assert_eq!(count.observe(11, 2), None, "a blob split for one frame");
        for frame in 12..17 {
            assert_eq!(count.observe(frame, 1), None);
        }
        assert_eq!(count.observe(17, 1), Some((1, 12)));
        for frame in 18..23 {
            assert_eq!(count.observe(frame, 2), None);
        }
        assert_eq!(count.observe(23, 2), Some((2, 18)));
        assert_eq!(count.observe(24, 2), None, "reported once");
    }
}
