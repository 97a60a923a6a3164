//! The open-set decision policy (product-notes §4.1–4.2), per track:
//!
//! - a window *votes* for an identity only when its distance is under the accept threshold **and** the
//!   second identity is at least `margin` farther; otherwise it votes unknown or ambiguous — there is no
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

use serde::{Deserialize, Serialize};

use crate::events::{DenialReason, MatchFigures};
use crate::matcher::Ranking;
use crate::tracking::TrackId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionConfig {
    /// Accept only when the closest identity is nearer than this (reference distance units).
    pub accept_distance: f32,
    /// ... and the second identity is at least this much farther.
    pub margin: f32,
    /// Consecutive agreeing windows needed to decide.
    pub consensus_windows: usize,
    /// People allowed in the decision zone at a grant.
    pub max_people_in_zone: usize,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            accept_distance: 1.0,
            margin: 0.05,
            consensus_windows: 2,
            max_people_in_zone: 1,
        }
    }
}

/// What one window of a track said.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowOutcome {
    Matched {
        ranking: Ranking,
        frames: usize,
    },
    /// Too few valid silhouettes for the network.
    PoorQuality,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    Identity(usize),
    Unknown,
    Ambiguous,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Granted {
        identity: usize,
    },
    Denied {
        reason: DenialReason,
        identity: Option<usize>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub track: TrackId,
    pub verdict: Verdict,
    /// Absent when no window was usable.
    pub figures: Option<MatchFigures>,
}

#[derive(Debug, Default)]
struct TrackState {
    votes: Vec<(Vote, f32, Option<f32>, usize)>,
    poor_windows: usize,
    decided: bool,
}

pub struct DecisionPolicy {
    config: DecisionConfig,
    tracks: HashMap<TrackId, TrackState>,
    /// Identity → the track in view that was granted it.
    holders: HashMap<usize, TrackId>,
}

impl DecisionPolicy {
    pub fn new(config: DecisionConfig) -> Self {
        DecisionPolicy {
            config,
            tracks: HashMap::new(),
            holders: HashMap::new(),
        }
    }

    pub fn config(&self) -> &DecisionConfig {
        &self.config
    }

    fn vote(&self, ranking: &Ranking) -> Option<(Vote, f32, Option<f32>)> {
        let best = ranking.best.as_ref()?;
        let margin = ranking.second.as_ref().map(|s| s.distance - best.distance);
        let vote = if best.distance >= self.config.accept_distance {
            Vote::Unknown
        } else if margin.is_some_and(|m| m < self.config.margin) {
            Vote::Ambiguous
        } else {
            Vote::Identity(best.identity)
        };
        Some((vote, best.distance, margin))
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
            WindowOutcome::PoorQuality => None,
        };
        let state = self.tracks.entry(track).or_default();
        if state.decided {
            return None;
        }
        let Some(vote) = vote else {
            state.poor_windows += 1;
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
            return Some(Decision {
                track,
                verdict: Verdict::Denied {
                    reason: DenialReason::PoorQuality,
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
        DecisionPolicy::new(DecisionConfig {
            accept_distance: 1.0,
            margin: 0.2,
            consensus_windows: 2,
            max_people_in_zone: 1,
        })
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
}
