//! Tailgating after a grant: someone who follows a granted person in while the door is released.

use silhouette::tracking::TrackId;

use super::DecisionConfig;

/// Someone followed a granted person in while the door was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailgateAlarm {
    /// The track that was granted.
    pub granted_track: TrackId,
    /// Frames from the grant's last frame to the first frame with too many people.
    pub frames_after_grant: u64,
}

/// Watches who comes into view, in source frames, for the time after each grant.
///
/// Everyone who arrives while the door is released counts, also after the granted person has left
/// the view: someone who walks in through a door released for another is a tailgater whether or not
/// the two were seen together (a fast walker can leave the view before a follower enters it). The
/// alarm rings when the people in view at the grant (the granted person among them) and those who
/// arrived since are more than `max_people_in_zone`.
///
/// Grants are decided some frames after they are seen (the network runs behind the camera), so the
/// counts and arrivals of the frames in between are kept and checked when the grant arrives.
#[derive(Debug, Clone)]
pub struct TailgateWatch {
    max_people: usize,
    watch_frames: u64,
    /// (frame, people) at every change of the count, oldest first.
    changes: std::collections::VecDeque<(u64, usize)>,
    /// (first frame, track) of every steady arrival, oldest first.
    arrivals: std::collections::VecDeque<(u64, TrackId)>,
    open: Option<Release>,
}

/// A grant being watched.
#[derive(Debug, Clone, Copy)]
struct Release {
    granted_at: u64,
    track: TrackId,
    /// People the door may have let in so far: those in view at the grant and every arrival since.
    involved: usize,
}

impl TailgateWatch {
    /// A watch timed by the source's frame rate.
    pub fn new(config: &DecisionConfig, frames_per_second: f64) -> Self {
        TailgateWatch {
            max_people: config.max_people_in_zone,
            watch_frames: (config.tailgate_watch_ms as f64 / 1000.0 * frames_per_second).ceil()
                as u64,
            changes: Default::default(),
            arrivals: Default::default(),
            open: None,
        }
    }

    /// What is older than any grant still to be decided can be forgotten.
    fn forget_before(&mut self, frame: u64) {
        let horizon = frame.saturating_sub(4 * self.watch_frames.max(1));
        while self.changes.len() > 1 && self.changes.front().is_some_and(|&(f, _)| f < horizon) {
            self.changes.pop_front();
        }
        while self.arrivals.front().is_some_and(|&(f, _)| f < horizon) {
            self.arrivals.pop_front();
        }
    }

    /// The count of people in view changed at `frame`.
    pub fn people_in_view(&mut self, frame: u64, people: usize) {
        self.changes.push_back((frame, people));
        self.forget_before(frame);
    }

    /// `track` came into view at `frame` and stayed (see [`SteadyArrivals`]).
    pub fn arrived(&mut self, frame: u64, track: TrackId) -> Option<TailgateAlarm> {
        self.arrivals.push_back((frame, track));
        self.forget_before(frame);
        let release = self.open.as_mut()?;
        if frame > release.granted_at + self.watch_frames {
            self.open = None;
            return None;
        }
        if frame <= release.granted_at || track == release.track {
            return None;
        }
        release.involved += 1;
        self.alarm_if_too_many(frame)
    }

    fn alarm_if_too_many(&mut self, frame: u64) -> Option<TailgateAlarm> {
        let release = self.open?;
        (release.involved > self.max_people).then(|| {
            self.open = None;
            TailgateAlarm {
                granted_track: release.track,
                frames_after_grant: frame.saturating_sub(release.granted_at),
            }
        })
    }

    fn in_view_at(&self, frame: u64) -> usize {
        self.changes
            .iter()
            .take_while(|&&(f, _)| f <= frame)
            .last()
            .map_or(0, |&(_, people)| people)
    }

    /// The most people in view at any frame from `first` to `last`: the decision zone over the whole
    /// window a decision rests on, not only at its last frame (two walkers can merge into one blob
    /// just then).
    pub fn most_in_view(&self, first: u64, last: u64) -> usize {
        let at_start = self.in_view_at(first);
        self.changes
            .iter()
            .filter(|&&(f, _)| f > first && f <= last)
            .map(|&(_, people)| people)
            .fold(at_start, usize::max)
    }

    /// `track` was granted on a window ending at `frame`.
    pub fn granted(&mut self, frame: u64, track: TrackId) -> Option<TailgateAlarm> {
        // The granted person is there even when the count, steadied over some frames, lags.
        self.open = Some(Release {
            granted_at: frame,
            track,
            involved: self.in_view_at(frame).max(1),
        });
        if let Some(alarm) = self.alarm_if_too_many(frame) {
            return Some(alarm);
        }
        let end = frame + self.watch_frames;
        let since: Vec<u64> = self
            .arrivals
            .iter()
            .filter(|&&(f, t)| f > frame && f <= end && t != track)
            .map(|&(f, _)| f)
            .collect();
        for f in since {
            if let Some(release) = self.open.as_mut() {
                release.involved += 1;
            }
            if let Some(alarm) = self.alarm_if_too_many(f) {
                return Some(alarm);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_within_the_watch_raises_one_alarm() {
        let config = DecisionConfig::default();
        let mut watch = TailgateWatch::new(&config, 25.0);
        watch.people_in_view(10, 1);
        assert_eq!(watch.arrived(10, 7), None);
        assert_eq!(watch.granted(100, 7), None);
        watch.people_in_view(120, 2);
        assert_eq!(
            watch.arrived(120, 8),
            Some(TailgateAlarm {
                granted_track: 7,
                frames_after_grant: 20
            })
        );
        assert_eq!(watch.arrived(121, 9), None, "one alarm per grant");
    }

    #[test]
    fn a_follower_seen_before_the_grant_was_decided_still_counts() {
        let mut watch = TailgateWatch::new(&DecisionConfig::default(), 25.0);
        watch.people_in_view(10, 1);
        watch.arrived(10, 7);
        // The camera is ahead of the network: frame 130 was seen before the grant of frame 100.
        watch.people_in_view(130, 2);
        watch.arrived(130, 8);
        assert_eq!(
            watch.granted(100, 7),
            Some(TailgateAlarm {
                granted_track: 7,
                frames_after_grant: 30
            })
        );
    }

    #[test]
    fn someone_walking_in_after_the_granted_person_left_the_view_is_a_tailgater() {
        let mut watch = TailgateWatch::new(&DecisionConfig::default(), 25.0);
        watch.people_in_view(10, 1);
        watch.arrived(10, 7);
        assert_eq!(watch.granted(100, 7), None);
        // The granted person leaves and the follower enters within a few frames: the steadied
        // count never changes.
        assert_eq!(
            watch.arrived(112, 8),
            Some(TailgateAlarm {
                granted_track: 7,
                frames_after_grant: 12
            })
        );
        let mut watch = TailgateWatch::new(&DecisionConfig::default(), 25.0);
        watch.people_in_view(10, 1);
        watch.arrived(112, 8);
        assert!(
            watch.granted(100, 7).is_some(),
            "also with the camera ahead of the network"
        );
    }

    #[test]
    fn a_door_for_two_lets_one_companion_in_and_not_a_third() {
        let config = DecisionConfig {
            max_people_in_zone: 2,
            ..DecisionConfig::default()
        };
        let mut watch = TailgateWatch::new(&config, 25.0);
        watch.people_in_view(10, 1);
        assert_eq!(watch.granted(100, 7), None);
        assert_eq!(watch.arrived(110, 8), None, "a companion");
        watch.people_in_view(120, 1);
        assert!(
            watch.arrived(130, 9).is_some(),
            "a third person, though never more than two in view"
        );
    }

    #[test]
    fn someone_arriving_after_the_door_closed_is_no_tailgater() {
        let mut watch = TailgateWatch::new(&DecisionConfig::default(), 25.0);
        watch.people_in_view(10, 1);
        watch.granted(100, 7);
        assert_eq!(watch.arrived(100 + 75 + 1, 8), None);
        assert_eq!(watch.arrived(200, 9), None);
    }

    #[test]
    fn the_crowd_of_a_window_is_its_busiest_frame() {
        let mut watch = TailgateWatch::new(&DecisionConfig::default(), 25.0);
        watch.people_in_view(40, 1);
        watch.people_in_view(70, 2);
        watch.people_in_view(129, 1);
        assert_eq!(watch.most_in_view(99, 128), 2);
        assert_eq!(watch.most_in_view(41, 69), 1);
        assert_eq!(watch.most_in_view(0, 39), 0);
        assert_eq!(watch.most_in_view(130, 160), 1);
    }
}
