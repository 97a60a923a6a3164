//! Choosing a threshold on observed distances: the most permissive one that keeps the share of
//! distances that must be refused under a target, with the accept rule `hstl::accepts` (a distance
//! is accepted when it is at most the threshold).

/// Why no threshold can be chosen.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThresholdError {
    /// Pair rates need pairs of both kinds.
    #[error("need at least one genuine and one impostor pair (got {genuine} and {impostor})")]
    TooFewPairs {
        /// Pairs of one person.
        genuine: usize,
        /// Pairs of two people.
        impostor: usize,
    },
    /// Rates need searches of both kinds.
    #[error("need at least one mated and one non-mated search (got {mated} and {non_mated})")]
    TooFewSearches {
        /// Searches whose person is enrolled.
        mated: usize,
        /// Searches whose person is not.
        non_mated: usize,
    },
    /// A distance is NaN or infinite (a broken model).
    #[error("distance {0} is not a finite number")]
    NotFinite(f32),
    /// The target rate is not a rate below 1.
    #[error("target rate {0} is outside [0, 1)")]
    BadTarget(f64),
    /// Two embeddings of different shapes: the walks were embedded by different models.
    #[error("embeddings are not comparable: {0}")]
    Incomparable(String),
    /// A normalisation cohort that cannot give each side its nearest walks of other people.
    #[error("a cohort of {walks} walks of {people} people cannot give {nearest} nearest walks of other people (it needs more walks than that, of at least two people)")]
    CohortTooSmall {
        /// Walks in the cohort.
        walks: usize,
        /// People they are of.
        people: usize,
        /// Nearest cohort walks asked for.
        nearest: usize,
    },
}

/// The largest threshold that accepts at most `target` of the sorted `negatives` (distances that
/// must be refused), chosen among the observed distances (`negatives` and `others`) so that it sits on
/// the curve; just below every distance when even the smallest must be refused.
pub(crate) fn most_permissive_threshold(
    negatives: &[f32],
    others: impl Iterator<Item = f32>,
    target: f64,
) -> Result<f32, ThresholdError> {
    if !(0.0..1.0).contains(&target) {
        return Err(ThresholdError::BadTarget(target));
    }
    let allowed = (target * negatives.len() as f64).floor() as usize;
    // Accepting `allowed` negatives at most: stay strictly below the next one.
    let limit = negatives[allowed];
    let below = others
        .chain(negatives.iter().copied())
        .filter(|&d| d < limit)
        .fold(f32::NEG_INFINITY, f32::max);
    Ok(if below.is_finite() {
        below
    } else {
        limit.next_down()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSE: [f32; 5] = [0.35, 0.6, 0.7, 0.8, 1.0];
    const OTHERS: [f32; 5] = [0.1, 0.2, 0.3, 0.4, 0.9];

    fn accepted(threshold: f32) -> usize {
        REFUSE
            .iter()
            .filter(|&&d| hstl::accepts(d, threshold))
            .count()
    }

    #[test]
    fn the_most_permissive_threshold_meets_the_target_on_an_observed_distance() {
        let zero = most_permissive_threshold(&REFUSE, OTHERS.into_iter(), 0.0).unwrap();
        assert_eq!((zero, accepted(zero)), (0.3, 0));
        let fifth = most_permissive_threshold(&REFUSE, OTHERS.into_iter(), 0.2).unwrap();
        assert_eq!((fifth, accepted(fifth)), (0.4, 1));
    }

    #[test]
    fn the_threshold_can_sit_below_every_distance() {
        let t = most_permissive_threshold(&[0.1, 0.6], [0.5].into_iter(), 0.0).unwrap();
        assert!(t < 0.1 && !hstl::accepts(0.1, t), "{t}");
    }

    #[test]
    fn a_target_outside_zero_to_one_is_refused() {
        for target in [1.0, -0.1, f64::NAN] {
            assert!(matches!(
                most_permissive_threshold(&REFUSE, OTHERS.into_iter(), target),
                Err(ThresholdError::BadTarget(_))
            ));
        }
    }
}
