//! Adaptive symmetric score normalisation (S-norm) against a cohort: walks of people who are never
//! enrolled. A probe and a template are each compared with their `nearest` cohort walks; a
//! distance is then scored by how far it lies below what each of them finds among strangers:
//!
//! `z = ½ ((d − μ_probe) / σ_probe + (d − μ_template) / σ_template)`
//!
//! with μ and σ the mean and standard deviation of that side's `nearest` cohort distances. A
//! walker who is near everyone (a common gait, a poor silhouette) no longer looks near the enrolled
//! for that reason alone. The score is put back on the model's distance scale, `M + S · z` (M and S
//! the cohort's own typical μ and σ, each cohort walk against the other people's), so that the
//! door's policy, whose margin is a share of the accept distance, reads it as it reads a distance.

use hstl::Embedding;

use crate::open_set::LabelledWalk;
use crate::thresholds::ThresholdError;

/// The smallest standard deviation a side is given: a cohort whose nearest distances are all equal
/// would otherwise divide by zero.
const MIN_DEVIATION: f32 = 1e-6;

/// Where one embedding stands among the cohort.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CohortStanding {
    /// Mean of its `nearest` smallest cohort distances.
    pub mean: f32,
    /// Their standard deviation.
    pub deviation: f32,
}

/// A cohort of walks and how many of each side's nearest cohort walks are counted.
pub struct CohortNormalisation {
    cohort: Vec<Embedding>,
    nearest: usize,
    /// The cohort's typical standing: the scale normalised scores are put back on.
    typical: CohortStanding,
}

impl CohortNormalisation {
    /// The whole walk of each of `walks` (people never enrolled where it is used) as the cohort,
    /// each side scored against its `nearest` cohort walks.
    pub fn new(walks: &[LabelledWalk], nearest: usize) -> Result<Self, ThresholdError> {
        let members: Vec<(&str, Embedding)> = walks
            .iter()
            .filter_map(|walk| {
                walk.prefixes
                    .last()
                    .map(|whole| (walk.person.as_str(), whole.embedding.clone()))
            })
            .collect();
        let people = {
            let mut people: Vec<&str> = members.iter().map(|(p, _)| *p).collect();
            people.sort_unstable();
            people.dedup();
            people.len()
        };
        if nearest == 0 || people < 2 || members.len() <= nearest {
            return Err(ThresholdError::CohortTooSmall {
                walks: members.len(),
                people,
                nearest,
            });
        }
        let mut typical = (0f64, 0f64);
        for (person, member) in &members {
            let others = members
                .iter()
                .filter(|(other, _)| other != person)
                .map(|(_, e)| e);
            let standing = standing_among(member, others, nearest)?;
            typical.0 += f64::from(standing.mean);
            typical.1 += f64::from(standing.deviation);
        }
        let count = members.len() as f64;
        Ok(CohortNormalisation {
            cohort: members.into_iter().map(|(_, e)| e).collect(),
            nearest,
            typical: CohortStanding {
                mean: (typical.0 / count) as f32,
                deviation: (typical.1 / count) as f32,
            },
        })
    }

    /// Walks in the cohort.
    pub fn len(&self) -> usize {
        self.cohort.len()
    }

    /// Whether the cohort is empty (never, once made).
    pub fn is_empty(&self) -> bool {
        self.cohort.is_empty()
    }

    /// Cohort walks each side is compared with.
    pub fn nearest(&self) -> usize {
        self.nearest
    }

    /// Where `embedding` stands among the cohort.
    pub fn standing(&self, embedding: &Embedding) -> Result<CohortStanding, ThresholdError> {
        standing_among(embedding, self.cohort.iter(), self.nearest)
    }

    /// `distance` between a probe and a template, each standing as given, as a normalised score on
    /// the model's distance scale (never below zero).
    pub fn normalised(
        &self,
        distance: f32,
        probe: CohortStanding,
        template: CohortStanding,
    ) -> f32 {
        let z = 0.5
            * ((distance - probe.mean) / probe.deviation
                + (distance - template.mean) / template.deviation);
        (self.typical.mean + self.typical.deviation * z).max(0.0)
    }
}

/// The mean and deviation of the `nearest` smallest distances from `embedding` to `others`.
fn standing_among<'a>(
    embedding: &Embedding,
    others: impl Iterator<Item = &'a Embedding>,
    nearest: usize,
) -> Result<CohortStanding, ThresholdError> {
    let mut distances = others
        .map(|other| embedding.distance(other))
        .collect::<Result<Vec<f32>, _>>()
        .map_err(|e| ThresholdError::Incomparable(e.to_string()))?;
    let nearest = nearest.min(distances.len());
    if nearest == 0 {
        return Err(ThresholdError::CohortTooSmall {
            walks: 0,
            people: 0,
            nearest,
        });
    }
    distances.select_nth_unstable_by(nearest - 1, f32::total_cmp);
    let chosen = &distances[..nearest];
    let mean = chosen.iter().map(|&d| f64::from(d)).sum::<f64>() / nearest as f64;
    let variance = chosen
        .iter()
        .map(|&d| (f64::from(d) - mean).powi(2))
        .sum::<f64>()
        / nearest as f64;
    Ok(CohortStanding {
        mean: mean as f32,
        deviation: (variance.sqrt() as f32).max(MIN_DEVIATION),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open_set::Prefix;

    fn walk(person: &str, values: [f32; 2]) -> LabelledWalk {
        LabelledWalk {
            person: person.into(),
            camera: "door".into(),
            prefixes: vec![Prefix {
                embedding: Embedding::new(1, 2, values.to_vec()).unwrap(),
                frames: 30,
            }],
        }
    }

    fn cohort() -> Vec<LabelledWalk> {
        vec![
            walk("c1", [10.0, 0.0]),
            walk("c2", [-10.0, 1.0]),
            walk("c3", [1.0, 10.0]),
            walk("c4", [0.0, -12.0]),
        ]
    }

    #[test]
    fn a_walker_near_every_stranger_scores_farther_than_one_near_none() {
        let norm = CohortNormalisation::new(&cohort(), 2).unwrap();
        let template = norm
            .standing(&Embedding::new(1, 2, vec![30.0, 20.0]).unwrap())
            .unwrap();
        // Two probes at the same distance from the template: one amid the cohort (near every
        // stranger), one far from it. The first's distance means less.
        let amid = norm
            .standing(&Embedding::new(1, 2, vec![2.0, 1.0]).unwrap())
            .unwrap();
        let apart = norm
            .standing(&Embedding::new(1, 2, vec![50.0, 20.0]).unwrap())
            .unwrap();
        assert!(amid.mean < apart.mean);
        assert!(norm.typical.deviation > 0.5, "{:?}", norm.typical);
        assert!(norm.normalised(5.0, amid, template) > norm.normalised(5.0, apart, template));
    }

    #[test]
    fn a_walker_as_typical_as_the_cohort_keeps_the_distance() {
        let norm = CohortNormalisation::new(&cohort(), 3).unwrap();
        let typical = norm.typical;
        let score = norm.normalised(typical.mean, typical, typical);
        assert!((score - typical.mean).abs() < 1e-5, "{score} {typical:?}");
        // Nearer than typical scores nearer, never below zero.
        assert!(norm.normalised(typical.mean - 1.0, typical, typical) < typical.mean);
        let sharp = CohortStanding {
            mean: typical.mean,
            deviation: 0.01,
        };
        assert_eq!(norm.normalised(0.0, sharp, sharp), 0.0);
    }

    #[test]
    fn a_cohort_too_small_for_its_nearest_count_is_refused() {
        assert!(matches!(
            CohortNormalisation::new(&cohort(), 4),
            Err(ThresholdError::CohortTooSmall {
                walks: 4,
                people: 4,
                nearest: 4
            })
        ));
        assert!(matches!(
            CohortNormalisation::new(&cohort()[..1], 1),
            Err(ThresholdError::CohortTooSmall { people: 1, .. })
        ));
    }
}
