//! The open-set decision policy (`ARCHITECTURE.md`, "Where each rule lives"), per track:
//!
//! - a window *votes* for an identity only when its distance is under the accept threshold **and** the
//!   second identity is farther by at least `relative_margin` of the accept distance; otherwise it votes
//!   unknown or ambiguous — there is no
//!   dead zone between "match" and "unknown";
//! - the track is granted when its last `consensus_windows` votes name the same identity, and denied
//!   when they are all unknown; an undecided track is denied when it ends, with the reason its votes
//!   point to (or poor quality when no window was usable);
//! - one identity per track at a time: an identity granted to a track still in view is not granted to
//!   another;
//! - more than one person in the decision zone when a grant is due is tailgating, and denied.
//!
//! A track gets exactly one decision.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use hstl::OperatingPoint;

use serde::{Deserialize, Serialize};

use crate::matcher::Ranking;
use silhouette::tracking::TrackId;
use silhouette::windows::{Window, WindowQuality};

/// How a door decides, beyond the model's accept distance (`[decision]` of `kiosk.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionConfig {
    /// Tightens the model's calibrated accept distance (its operating point); it can never loosen it.
    pub accept_distance: Option<f32>,
    /// ... and the second identity is farther by at least this fraction of the accept distance. A
    /// fraction, not a distance, so that one value means the same on every model: distances of an
    /// untrained network are thousandths, a trained one's several units.
    pub relative_margin: f32,
    /// Consecutive agreeing windows needed to decide.
    pub consensus_windows: usize,
    /// People allowed in the decision zone at a grant.
    pub max_people_in_zone: usize,
    /// After a grant, more people than allowed appearing within this time (the door is released)
    /// raises a tailgate alarm.
    pub tailgate_watch_ms: u64,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            accept_distance: None,
            relative_margin: 0.05,
            consensus_windows: 2,
            max_people_in_zone: 1,
            tailgate_watch_ms: 3_000,
        }
    }
}

impl DecisionConfig {
    /// Every field within the range a door can use, or the first one that is not, named.
    pub fn check(&self) -> Result<(), String> {
        if let Some(distance) = self.accept_distance {
            if !(distance.is_finite() && distance > 0.0) {
                return Err(format!(
                    "accept_distance = {distance}: must be a positive distance"
                ));
            }
        }
        if !(self.relative_margin.is_finite()
            && (0.0..=MAX_RELATIVE_MARGIN).contains(&self.relative_margin))
        {
            return Err(format!(
                "relative_margin = {}: must be from 0 to {MAX_RELATIVE_MARGIN} (a fraction of the accept distance)",
                self.relative_margin
            ));
        }
        if !(1..=MAX_CONSENSUS_WINDOWS).contains(&self.consensus_windows) {
            return Err(format!(
                "consensus_windows = {}: must be from 1 to {MAX_CONSENSUS_WINDOWS}",
                self.consensus_windows
            ));
        }
        if !(1..=MAX_PEOPLE_IN_ZONE).contains(&self.max_people_in_zone) {
            return Err(format!(
                "max_people_in_zone = {}: must be from 1 to {MAX_PEOPLE_IN_ZONE}",
                self.max_people_in_zone
            ));
        }
        if self.tailgate_watch_ms > MAX_TAILGATE_WATCH_MS {
            return Err(format!(
                "tailgate_watch_ms = {}: must be at most {MAX_TAILGATE_WATCH_MS}",
                self.tailgate_watch_ms
            ));
        }
        Ok(())
    }
}

/// Past half the accept distance, two enrolled people who both match would almost never be told
/// apart: every grant would be ambiguous.
pub const MAX_RELATIVE_MARGIN: f32 = 0.5;
/// Windows overlap by half, so ten agreeing windows already span several seconds of walking.
pub const MAX_CONSENSUS_WINDOWS: usize = 10;
/// The most `max_people_in_zone` may be.
pub const MAX_PEOPLE_IN_ZONE: usize = 20;
/// The longest `tailgate_watch_ms` may be.
pub const MAX_TAILGATE_WATCH_MS: u64 = 60_000;

/// Why a door has no accept distance to run on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AcceptDistanceError {
    /// The model has no calibrated operating point.
    #[error("model {model} has no calibrated operating point ({point} is missing), and a door never runs on a threshold nobody measured for its model: run `calibrate thresholds --model {model} ... --save`")]
    Uncalibrated {
        /// The model.
        model: PathBuf,
        /// Where its operating point should be.
        point: PathBuf,
    },
    /// The configuration tries to loosen the calibrated distance.
    #[error("[decision] accept_distance = {configured} is looser than the model's calibrated {calibrated} (FPIR {target_fpir}): the configuration may only tighten it")]
    Looser {
        /// `[decision] accept_distance`.
        configured: f32,
        /// The model's calibrated distance.
        calibrated: f32,
        /// The rate it was calibrated for.
        target_fpir: f64,
    },
}

/// The distance a door accepts: the model's calibrated operating point, or the configured distance
/// where it is tighter. A model without an operating point is refused, whatever is configured.
pub fn accept_distance(
    configured: Option<f32>,
    point: Option<&OperatingPoint>,
    model: &Path,
) -> Result<f32, AcceptDistanceError> {
    let point = point.ok_or_else(|| AcceptDistanceError::Uncalibrated {
        model: model.to_path_buf(),
        point: OperatingPoint::path_for(model),
    })?;
    match configured {
        Some(configured) if configured > point.accept_distance => {
            Err(AcceptDistanceError::Looser {
                configured,
                calibrated: point.accept_distance,
                target_fpir: point.target_fpir,
            })
        }
        Some(configured) => Ok(configured),
        None => Ok(point.accept_distance),
    }
}

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

/// Why a walk-up was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialReason {
    /// The closest identity is farther than the accept threshold.
    Unknown,
    /// The closest identity is under the threshold but too close to the second.
    Ambiguous,
    /// Windows pointed at different identities.
    NoConsensus,
    /// Too few usable silhouettes to decide.
    PoorQuality,
    /// What was seen was not a walking person (a vehicle, something standing still).
    NotAWalkingPerson,
    /// More than one person in the decision zone.
    Tailgating,
    /// The identity is already held by another person in view.
    IdentityInUse,
}

impl DenialReason {
    /// The reason in words, for screens and logs.
    pub fn describe(self) -> &'static str {
        match self {
            DenialReason::Unknown => "unknown person",
            DenialReason::Ambiguous => "ambiguous match",
            DenialReason::NoConsensus => "no consensus over windows",
            DenialReason::PoorQuality => "poor silhouette quality",
            DenialReason::NotAWalkingPerson => "no walking person",
            DenialReason::Tailgating => "more than one person at the door",
            DenialReason::IdentityInUse => "identity already in view",
        }
    }
}

/// The match behind a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchFigures {
    /// Distance to the closest identity.
    pub distance: f32,
    /// Second-closest minus closest; absent with a single enrolled identity.
    pub margin: Option<f32>,
    /// Windows that agreed on the decision.
    pub windows: usize,
    /// Silhouettes in those windows.
    pub frames_used: usize,
}

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

/// What one window of a track said.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowOutcome {
    /// The window was searched.
    Matched {
        /// Its two nearest identities.
        ranking: Ranking,
        /// Valid silhouettes in the window.
        frames: usize,
    },
    /// Too few valid silhouettes for the network.
    PoorQuality,
    /// Silhouettes enough, but not of a walking person: never sent to the network.
    NotAWalker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    Identity(usize),
    Unknown,
    Ambiguous,
}

/// What the door does for a track.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Open for this identity.
    Granted {
        /// Index into the match index's identities.
        identity: usize,
    },
    /// Stay shut.
    Denied {
        /// Why.
        reason: DenialReason,
        /// The identity it was about, when there was one (tailgating, identity in use).
        identity: Option<usize>,
    },
}

/// One verdict for one track, with the match behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The track decided.
    pub track: TrackId,
    /// What the door does.
    pub verdict: Verdict,
    /// Absent when no window was usable.
    pub figures: Option<MatchFigures>,
}

#[derive(Debug, Default)]
struct TrackState {
    votes: Vec<(Vote, f32, Option<f32>, usize)>,
    poor_windows: usize,
    not_walker_windows: usize,
    decided: bool,
}

/// The open-set policy applied window by window to every track in view.
pub struct DecisionPolicy {
    config: DecisionConfig,
    accept_distance: f32,
    tracks: HashMap<TrackId, TrackState>,
    /// Identity → the track in view that was granted it.
    holders: HashMap<usize, TrackId>,
}

impl DecisionPolicy {
    /// The policy of `config`, accepting searches up to `accept_distance` (see [`accept_distance`]).
    pub fn new(config: DecisionConfig, accept_distance: f32) -> Self {
        DecisionPolicy {
            config,
            accept_distance,
            tracks: HashMap::new(),
            holders: HashMap::new(),
        }
    }

    /// The settings it decides with.
    pub fn config(&self) -> &DecisionConfig {
        &self.config
    }

    /// The distance searches are accepted up to.
    pub fn accept_distance(&self) -> f32 {
        self.accept_distance
    }

    /// Forgets every vote and every identity held by a track in view: identities are numbered by the
    /// match index, and a changed gallery renumbers them. Tracks already decided stay decided.
    pub fn forget_identities(&mut self) {
        self.holders.clear();
        for state in self.tracks.values_mut() {
            state.votes.clear();
        }
    }

    fn vote(&self, ranking: &Ranking) -> Option<(Vote, f32, Option<f32>)> {
        let best = ranking.best.as_ref()?;
        let margin = ranking.second.as_ref().map(|s| s.distance - best.distance);
        let vote = if !hstl::accepts(best.distance, self.accept_distance) {
            Vote::Unknown
        } else if margin.is_some_and(|m| m < self.config.relative_margin * self.accept_distance) {
            Vote::Ambiguous
        } else {
            Vote::Identity(best.identity)
        };
        Some((vote, best.distance, margin))
    }

    /// Whether `window` is worth embedding and observing: not once its track is decided, and not when
    /// it is poor only because its track lasted less than one window of `window_frames` frames. A
    /// fragment (someone glimpsed at the edge) is no walk-up: it gets no decision, rather than a "poor
    /// quality" denial nobody caused.
    pub fn wants(&self, window: &Window, window_frames: usize) -> bool {
        if self.tracks.get(&window.track).is_some_and(|s| s.decided) {
            return false;
        }
        let observed = window.silhouettes.len() + window.rejections.values().sum::<usize>();
        window.quality == WindowQuality::Good || observed >= window_frames
    }

    /// Takes one window of `track`; `people_in_zone` counts the tracks in the decision zone now.
    pub fn observe(
        &mut self,
        track: TrackId,
        outcome: &WindowOutcome,
        people_in_zone: usize,
    ) -> Option<Decision> {
        let vote = match outcome {
            WindowOutcome::Matched { ranking, frames } => {
                self.vote(ranking).map(|(v, d, m)| (v, d, m, *frames))
            }
            WindowOutcome::PoorQuality | WindowOutcome::NotAWalker => None,
        };
        let state = self.tracks.entry(track).or_default();
        if state.decided {
            return None;
        }
        let Some(vote) = vote else {
            if *outcome == WindowOutcome::NotAWalker {
                state.not_walker_windows += 1;
            } else {
                state.poor_windows += 1;
            }
            return None;
        };
        state.votes.push(vote);
        let needed = self.config.consensus_windows.max(1);
        if state.votes.len() < needed {
            return None;
        }
        let recent = &state.votes[state.votes.len() - needed..];
        let first = recent[0].0;
        if !recent.iter().all(|v| v.0 == first) {
            return None;
        }
        let figures = figures_of(recent);
        let verdict = match first {
            Vote::Identity(identity) => {
                if people_in_zone > self.config.max_people_in_zone {
                    Verdict::Denied {
                        reason: DenialReason::Tailgating,
                        identity: Some(identity),
                    }
                } else if self.holders.get(&identity).is_some_and(|&t| t != track) {
                    Verdict::Denied {
                        reason: DenialReason::IdentityInUse,
                        identity: Some(identity),
                    }
                } else {
                    self.holders.insert(identity, track);
                    Verdict::Granted { identity }
                }
            }
            Vote::Unknown => Verdict::Denied {
                reason: DenialReason::Unknown,
                identity: None,
            },
            Vote::Ambiguous => return None,
        };
        state.decided = true;
        Some(Decision {
            track,
            verdict,
            figures: Some(figures),
        })
    }

    /// The track left: its identity is free again, and an undecided track is denied.
    pub fn track_ended(&mut self, track: TrackId) -> Option<Decision> {
        self.holders.retain(|_, holder| *holder != track);
        let state = self.tracks.remove(&track)?;
        if state.decided {
            return None;
        }
        if state.votes.is_empty() {
            let reason = if state.not_walker_windows > state.poor_windows {
                DenialReason::NotAWalkingPerson
            } else {
                DenialReason::PoorQuality
            };
            return Some(Decision {
                track,
                verdict: Verdict::Denied {
                    reason,
                    identity: None,
                },
                figures: None,
            });
        }
        let mut counts: BTreeMap<DenialReason, usize> = BTreeMap::new();
        for (vote, ..) in &state.votes {
            let reason = match vote {
                Vote::Unknown => DenialReason::Unknown,
                Vote::Ambiguous => DenialReason::Ambiguous,
                Vote::Identity(_) => DenialReason::NoConsensus,
            };
            *counts.entry(reason).or_default() += 1;
        }
        let reason = counts
            .iter()
            .max_by_key(|(reason, count)| (**count, std::cmp::Reverse(**reason)))
            .map(|(reason, _)| *reason)
            .unwrap_or(DenialReason::NoConsensus);
        Some(Decision {
            track,
            verdict: Verdict::Denied {
                reason,
                identity: None,
            },
            figures: Some(figures_of(&state.votes)),
        })
    }
}

fn figures_of(votes: &[(Vote, f32, Option<f32>, usize)]) -> MatchFigures {
    let best = votes
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("figures of at least one vote");
    MatchFigures {
        distance: best.1,
        margin: best.2,
        windows: votes.len(),
        frames_used: votes.iter().map(|v| v.3).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::Candidate;

    fn ranked(best: (usize, f32), second: Option<(usize, f32)>) -> WindowOutcome {
        WindowOutcome::Matched {
            ranking: Ranking {
                best: Some(Candidate {
                    identity: best.0,
                    distance: best.1,
                }),
                second: second.map(|(identity, distance)| Candidate { identity, distance }),
            },
            frames: 30,
        }
    }

    fn policy() -> DecisionPolicy {
        DecisionPolicy::new(
            DecisionConfig {
                relative_margin: 0.2,
                consensus_windows: 2,
                max_people_in_zone: 1,
                ..DecisionConfig::default()
            },
            1.0,
        )
    }

    #[test]
    fn two_agreeing_windows_grant_once() {
        let mut policy = policy();
        assert_eq!(
            policy.observe(1, &ranked((4, 0.5), Some((2, 0.9))), 1),
            None
        );
        let decision = policy
            .observe(1, &ranked((4, 0.6), Some((2, 1.2))), 1)
            .unwrap();
        assert_eq!(decision.verdict, Verdict::Granted { identity: 4 });
        let figures = decision.figures.unwrap();
        assert_eq!(
            (figures.distance, figures.windows, figures.frames_used),
            (0.5, 2, 60)
        );
        assert_eq!(policy.observe(1, &ranked((4, 0.5), None), 1), None);
        assert_eq!(policy.track_ended(1), None);
    }

    #[test]
    fn a_close_second_identity_is_never_a_grant() {
        let mut policy = policy();
        for _ in 0..4 {
            assert_eq!(
                policy.observe(1, &ranked((4, 0.5), Some((2, 0.6))), 1),
                None
            );
        }
        let decision = policy.track_ended(1).unwrap();
        assert_eq!(
            decision.verdict,
            Verdict::Denied {
                reason: DenialReason::Ambiguous,
                identity: None
            }
        );
    }

    #[test]
    fn far_matches_are_denied_as_unknown_without_waiting_for_the_walk_to_end() {
        let mut policy = policy();
        assert_eq!(
            policy.observe(1, &ranked((4, 1.5), Some((2, 2.0))), 1),
            None
        );
        let decision = policy.observe(1, &ranked((4, 1.1), None), 1).unwrap();
        assert_eq!(
            decision.verdict,
            Verdict::Denied {
                reason: DenialReason::Unknown,
                identity: None
            }
        );
    }

    #[test]
    fn disagreeing_windows_end_in_no_consensus() {
        let mut policy = policy();
        policy.observe(1, &ranked((4, 0.5), None), 1);
        policy.observe(1, &ranked((5, 0.5), None), 1);
        policy.observe(1, &ranked((4, 0.5), None), 1);
        let decision = policy.track_ended(1).unwrap();
        assert_eq!(
            decision.verdict,
            Verdict::Denied {
                reason: DenialReason::NoConsensus,
                identity: None
            }
        );
    }

    #[test]
    fn a_second_person_in_the_zone_turns_a_grant_into_tailgating() {
        let mut policy = policy();
        policy.observe(1, &ranked((4, 0.5), None), 2);
        let decision = policy.observe(1, &ranked((4, 0.5), None), 2).unwrap();
        assert_eq!(
            decision.verdict,
            Verdict::Denied {
                reason: DenialReason::Tailgating,
                identity: Some(4)
            }
        );
    }

    #[test]
    fn one_identity_is_held_by_one_track_until_it_leaves() {
        let mut policy = policy();
        policy.observe(1, &ranked((4, 0.5), None), 1);
        assert!(matches!(
            policy
                .observe(1, &ranked((4, 0.5), None), 1)
                .unwrap()
                .verdict,
            Verdict::Granted { .. }
        ));
        policy.observe(2, &ranked((4, 0.5), None), 1);
        let second = policy.observe(2, &ranked((4, 0.5), None), 1).unwrap();
        assert_eq!(
            second.verdict,
            Verdict::Denied {
                reason: DenialReason::IdentityInUse,
                identity: Some(4)
            }
        );
        policy.track_ended(1);
        policy.observe(3, &ranked((4, 0.5), None), 1);
        assert!(matches!(
            policy
                .observe(3, &ranked((4, 0.5), None), 1)
                .unwrap()
                .verdict,
            Verdict::Granted { .. }
        ));
    }

    #[test]
    fn a_track_with_no_usable_window_is_denied_for_quality() {
        let mut policy = policy();
        policy.observe(1, &WindowOutcome::PoorQuality, 1);
        policy.observe(1, &WindowOutcome::PoorQuality, 1);
        let decision = policy.track_ended(1).unwrap();
        assert_eq!(
            decision.verdict,
            Verdict::Denied {
                reason: DenialReason::PoorQuality,
                identity: None
            }
        );
        assert_eq!(decision.figures, None);
    }

    #[test]
    fn a_track_that_never_showed_a_walking_person_is_denied_for_that() {
        let mut policy = policy();
        policy.observe(1, &WindowOutcome::NotAWalker, 1);
        policy.observe(1, &WindowOutcome::NotAWalker, 1);
        policy.observe(1, &WindowOutcome::PoorQuality, 1);
        let decision = policy.track_ended(1).unwrap();
        assert_eq!(
            decision.verdict,
            Verdict::Denied {
                reason: DenialReason::NotAWalkingPerson,
                identity: None
            }
        );
        policy.observe(2, &WindowOutcome::NotAWalker, 1);
        policy.observe(2, &ranked((4, 0.5), None), 1);
        assert!(matches!(
            policy
                .observe(2, &ranked((4, 0.5), None), 1)
                .unwrap()
                .verdict,
            Verdict::Granted { .. }
        ));
    }

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

    fn operating_point(accept_distance: f32) -> OperatingPoint {
        OperatingPoint {
            model_id: "sha256:00".into(),
            accept_distance,
            target_fpir: 0.003,
            fpir: 0.0025,
            fnir: 0.1,
            mated_searches: 100,
            non_mated_searches: 2000,
            measured_on: "test".into(),
        }
    }

    #[test]
    fn a_door_runs_only_on_its_models_calibrated_distance_or_a_tighter_one() {
        let model = Path::new("/models/hstl.onnx");
        let point = operating_point(0.8);
        assert_eq!(accept_distance(None, Some(&point), model), Ok(0.8));
        assert_eq!(accept_distance(Some(0.6), Some(&point), model), Ok(0.6));
        assert_eq!(accept_distance(Some(0.8), Some(&point), model), Ok(0.8));
        let looser = accept_distance(Some(1.0), Some(&point), model).unwrap_err();
        assert!(looser.to_string().contains("only tighten"), "{looser}");
        for configured in [None, Some(0.5)] {
            let error = accept_distance(configured, None, model).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("/models/hstl.onnx.operating-point.json"),
                "{error}"
            );
        }
    }

    #[test]
    fn every_decision_field_has_a_range() {
        assert_eq!(DecisionConfig::default().check(), Ok(()));
        let cases = [
            (
                DecisionConfig {
                    accept_distance: Some(f32::NAN),
                    ..Default::default()
                },
                "accept_distance",
            ),
            (
                DecisionConfig {
                    accept_distance: Some(0.0),
                    ..Default::default()
                },
                "accept_distance",
            ),
            (
                DecisionConfig {
                    relative_margin: f32::NAN,
                    ..Default::default()
                },
                "relative_margin",
            ),
            (
                DecisionConfig {
                    relative_margin: f32::INFINITY,
                    ..Default::default()
                },
                "relative_margin",
            ),
            (
                DecisionConfig {
                    consensus_windows: 0,
                    ..Default::default()
                },
                "consensus_windows",
            ),
            (
                DecisionConfig {
                    max_people_in_zone: 0,
                    ..Default::default()
                },
                "max_people_in_zone",
            ),
            (
                DecisionConfig {
                    tailgate_watch_ms: u64::MAX,
                    ..Default::default()
                },
                "tailgate_watch_ms",
            ),
        ];
        for (config, field) in cases {
            let error = config.check().unwrap_err();
            assert!(error.starts_with(field), "{error}");
        }
    }

    #[test]
    fn forgetting_identities_keeps_decided_tracks_decided() {
        let mut policy = policy();
        policy.observe(1, &ranked((4, 0.5), None), 1);
        policy.observe(1, &ranked((4, 0.5), None), 1).unwrap();
        policy.observe(2, &ranked((3, 0.5), None), 1);
        policy.forget_identities();
        assert_eq!(policy.observe(1, &ranked((4, 0.5), None), 1), None);
        assert_eq!(
            policy.observe(2, &ranked((3, 0.5), None), 1),
            None,
            "the vote before the change no longer counts"
        );
        assert!(policy.observe(2, &ranked((3, 0.5), None), 1).is_some());
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
