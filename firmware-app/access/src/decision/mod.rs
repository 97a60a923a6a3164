//! The open-set decision policy (`ARCHITECTURE.md`, "Where each rule lives"), per track. The kiosk
//! streams each track's walk through the network and, after each window the silhouette stage cuts
//! (30 frames every 15), searches the embedding of the *walk so far*: every frame of the track taken
//! so far, not the window alone. So each vote is about a longer walk than the one before.
//!
//! - the walk so far *votes* for an identity only when its distance is under the accept threshold
//!   **and** the second identity is farther by at least `relative_margin` of the accept distance;
//!   otherwise it votes unknown or ambiguous — there is no dead zone between "match" and "unknown";
//! - the track is granted when its last `consensus_windows` votes name the same identity: with the
//!   default of 2, the walk must match at its first full window (30 frames) and still match 15
//!   frames later (45 frames, 1.8 s at 25 fps), so that one lucky stride never opens the door and a
//!   walker is decided before reaching it;
//! - it is denied as unknown when its last `unknown_windows` votes (3 by default: 60 frames, 2.4 s)
//!   are all unknown. A walk matches better as it grows, so denying on fewer refused people whose
//!   first strides were unlike their enrolment: replayed over CASIA-B validation walk-ups by
//!   `calibrate thresholds`, 3 instead of 2 lowered walk-level FNIR at both FPIR 0.003 and 0.001
//!   without delaying grants (`calibration/README.md`);
//! - an undecided track is denied when it ends, with the reason its votes point to (or poor quality
//!   when no window was usable);
//! - one identity per track at a time: an identity granted to a track still in view is not granted to
//!   another;
//! - more than one person in the decision zone when a grant is due is tailgating, and denied.
//!
//! A track gets exactly one decision.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

mod accept_distance;
mod steady;
mod tailgating;

pub use accept_distance::{accept_distance, AcceptDistanceError};
pub use steady::{SteadyArrivals, SteadyCount};
pub use tailgating::{TailgateAlarm, TailgateWatch};

use crate::matcher::Ranking;
use crate::vocabulary::{DenialReason, MatchFigures};
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
    /// Consecutive searches of the walk so far that must name the same identity to grant.
    pub consensus_windows: usize,
    /// Consecutive searches of the walk so far that must find no one within the accept distance to
    /// deny before the track ends (a walk matches better as it grows: denying early refuses people
    /// whose first strides were unlike their enrolment).
    pub unknown_windows: usize,
    /// People allowed in the decision zone at a grant.
    pub max_people_in_zone: usize,
    /// After a grant, more people than allowed appearing within this time (the door is released)
    /// raises a tailgate alarm.
    pub tailgate_watch_ms: u64,
    /// The checks a value above switches off, named on purpose (`"relative_margin"`,
    /// `"max_people_in_zone"`, `"tailgate_watch_ms"`): without its name here such a value is
    /// refused, and with it every start says so.
    pub unsafe_allow: Vec<String>,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            accept_distance: None,
            relative_margin: 0.05,
            consensus_windows: 2,
            unknown_windows: 3,
            max_people_in_zone: 1,
            tailgate_watch_ms: 3_000,
            unsafe_allow: Vec::new(),
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
        for (name, windows) in [
            ("consensus_windows", self.consensus_windows),
            ("unknown_windows", self.unknown_windows),
        ] {
            if !(1..=MAX_CONSENSUS_WINDOWS).contains(&windows) {
                return Err(format!(
                    "{name} = {windows}: must be from 1 to {MAX_CONSENSUS_WINDOWS}"
                ));
            }
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
        for name in &self.unsafe_allow {
            if !UNSAFE_SETTINGS.contains(&name.as_str()) {
                return Err(format!(
                    "unsafe_allow names {name:?}, which is none of {UNSAFE_SETTINGS:?}"
                ));
            }
        }
        for (name, why) in self.checks_switched_off() {
            if !self.unsafe_allow.iter().any(|allowed| allowed == name) {
                return Err(format!(
                    "{why}: if that is meant, add \"{name}\" to unsafe_allow (every start will say so)"
                ));
            }
        }
        Ok(())
    }

    /// The settings that switch a check off, each with what it switches off: refused unless named
    /// in `unsafe_allow`, and logged at every start when they are.
    pub fn checks_switched_off(&self) -> Vec<(&'static str, String)> {
        let mut off = Vec::new();
        if self.relative_margin < MIN_SAFE_RELATIVE_MARGIN {
            off.push((
                "relative_margin",
                format!(
                    "relative_margin = {} lets a walk that matches two enrolled people equally well open the door for the nearer",
                    self.relative_margin
                ),
            ));
        }
        if self.max_people_in_zone > MAX_SAFE_PEOPLE_IN_ZONE {
            off.push((
                "max_people_in_zone",
                format!(
                    "max_people_in_zone = {} lets {} people through on one grant without a tailgating denial",
                    self.max_people_in_zone, self.max_people_in_zone
                ),
            ));
        }
        if self.tailgate_watch_ms < MIN_SAFE_TAILGATE_WATCH_MS {
            off.push((
                "tailgate_watch_ms",
                format!(
                    "tailgate_watch_ms = {} watches for a second person for less than {MIN_SAFE_TAILGATE_WATCH_MS} ms after a grant",
                    self.tailgate_watch_ms
                ),
            ));
        }
        off
    }
}

/// What `unsafe_allow` may name.
pub const UNSAFE_SETTINGS: [&str; 3] =
    ["relative_margin", "max_people_in_zone", "tailgate_watch_ms"];
/// Below this margin two enrolled people who both match are no longer told apart.
pub const MIN_SAFE_RELATIVE_MARGIN: f32 = 0.01;
/// A person and one companion; more is a crowd the door cannot count through.
pub const MAX_SAFE_PEOPLE_IN_ZONE: usize = 2;
/// A door takes about a second to open: a shorter watch sees nobody follow.
pub const MIN_SAFE_TAILGATE_WATCH_MS: u64 = 1_000;

/// Past half the accept distance, two enrolled people who both match would almost never be told
/// apart: every grant would be ambiguous.
pub const MAX_RELATIVE_MARGIN: f32 = 0.5;
/// Each window adds 15 frames to the walk: ten agreeing ones span 165 frames (6.6 s at 25 fps),
/// longer than a walk-up to a door.
pub const MAX_CONSENSUS_WINDOWS: usize = 10;
/// The most `max_people_in_zone` may be.
pub const MAX_PEOPLE_IN_ZONE: usize = 20;
/// The longest `tailgate_watch_ms` may be.
pub const MAX_TAILGATE_WATCH_MS: u64 = 60_000;

/// What a track's walk said after one of its windows.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowOutcome {
    /// The walk so far was searched.
    Matched {
        /// Its two nearest identities.
        ranking: Ranking,
        /// Silhouettes in the walk so far.
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
///
/// ```
/// use access::decision::{DecisionConfig, DecisionPolicy, Verdict, WindowOutcome};
/// use access::matcher::{Candidate, Ranking};
///
/// let mut policy = DecisionPolicy::new(DecisionConfig::default(), 6.0);
/// let window = WindowOutcome::Matched {
///     ranking: Ranking {
///         best: Some(Candidate { identity: 3, distance: 4.1 }),
///         second: Some(Candidate { identity: 7, distance: 9.0 }),
///     },
///     frames: 30,
/// };
/// // Two agreeing windows (the default consensus) with one person in the zone: a grant.
/// assert_eq!(policy.observe(1, &window, 1), None);
/// let decision = policy.observe(1, &window, 1).unwrap();
/// assert_eq!(decision.verdict, Verdict::Granted { identity: 3 });
/// // A track gets one decision.
/// assert_eq!(policy.track_ended(1), None);
/// ```
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
        let first = vote.0;
        let needed = match first {
            Vote::Identity(_) => self.config.consensus_windows,
            Vote::Unknown => self.config.unknown_windows,
            Vote::Ambiguous => return None,
        }
        .max(1);
        if state.votes.len() < needed {
            return None;
        }
        let recent = &state.votes[state.votes.len() - needed..];
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
        for _ in 1..DecisionConfig::default().unknown_windows {
            assert_eq!(
                policy.observe(1, &ranked((4, 1.5), Some((2, 2.0))), 1),
                None
            );
        }
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
    fn a_walk_unlike_its_enrolment_at_first_is_still_granted_once_it_matches() {
        // Two unknown searches deny nothing yet (three are needed); the longer walk then matches
        // twice and is granted.
        let mut policy = policy();
        assert_eq!(policy.config().unknown_windows, 3);
        for _ in 0..2 {
            assert_eq!(policy.observe(1, &ranked((4, 1.5), None), 1), None);
        }
        assert_eq!(policy.observe(1, &ranked((4, 0.5), None), 1), None);
        let decision = policy.observe(1, &ranked((4, 0.4), None), 1).unwrap();
        assert_eq!(decision.verdict, Verdict::Granted { identity: 4 });
        let figures = decision.figures.unwrap();
        assert_eq!((figures.distance, figures.windows), (0.4, 2));
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
    fn a_setting_that_switches_a_check_off_needs_its_name_in_unsafe_allow() {
        // The hostile probe: margin 0, 20 people in the zone, a tailgate watch of 0 were taken
        // without a word.
        for (config, name) in [
            (
                DecisionConfig {
                    relative_margin: 0.0,
                    ..Default::default()
                },
                "relative_margin",
            ),
            (
                DecisionConfig {
                    max_people_in_zone: 20,
                    ..Default::default()
                },
                "max_people_in_zone",
            ),
            (
                DecisionConfig {
                    tailgate_watch_ms: 0,
                    ..Default::default()
                },
                "tailgate_watch_ms",
            ),
        ] {
            let error = config.check().unwrap_err();
            assert!(
                error.contains(&format!("add \"{name}\" to unsafe_allow")),
                "{error}"
            );
            let allowed = DecisionConfig {
                unsafe_allow: vec![name.to_string()],
                ..config
            };
            assert_eq!(allowed.check(), Ok(()));
            assert_eq!(allowed.checks_switched_off()[0].0, name);
        }
        let unknown = DecisionConfig {
            unsafe_allow: vec!["everything".into()],
            ..Default::default()
        };
        assert!(unknown.check().unwrap_err().contains("\"everything\""));
        assert!(DecisionConfig::default().checks_switched_off().is_empty());
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
}
