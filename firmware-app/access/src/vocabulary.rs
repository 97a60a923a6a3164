//! The words the kiosk's records are written in: why a walk-up was denied, the figures of a match,
//! and an audit chain's head. They sit below everything else in the crate (the decision policy
//! produces them, events carry them, the audit log and the gallery's anchors store them), so that
//! none of those has to reach into another to name what it records.

use serde::{Deserialize, Serialize};

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
    /// A grant the audit log could not record is not acted on.
    AuditUnavailable,
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
            DenialReason::AuditUnavailable => "the audit log cannot be written",
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

/// The newest line of the chain: what an anchor records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number of the line.
    pub seq: u64,
    /// Its seal, hex.
    pub mac: String,
}
