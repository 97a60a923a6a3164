//! Error rates of a distance threshold, from the distances of genuine pairs (same person) and
//! impostor pairs (different people): a pair is accepted when its distance is at most the
//! threshold.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThresholdError {
    #[error("need at least one genuine and one impostor distance (got {genuine} and {impostor})")]
    TooFewPairs { genuine: usize, impostor: usize },
    #[error("distance {0} is not a finite number")]
    NotFinite(f32),
    #[error("target false-accept rate {0} is outside [0, 1)")]
    BadTarget(f64),
    #[error("embeddings are not comparable: {0}")]
    Incomparable(String),
}

/// One operating point of the ROC/DET curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPoint {
    pub threshold: f32,
    /// Impostor pairs accepted.
    pub false_accept_rate: f64,
    /// Genuine pairs rejected.
    pub false_reject_rate: f64,
}

#[derive(Debug, Clone)]
pub struct DistanceSets {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
}

impl DistanceSets {
    pub fn new(mut genuine: Vec<f32>, mut impostor: Vec<f32>) -> Result<Self, ThresholdError> {
        if genuine.is_empty() || impostor.is_empty() {
            return Err(ThresholdError::TooFewPairs {
                genuine: genuine.len(),
                impostor: impostor.len(),
            });
        }
        if let Some(bad) = genuine.iter().chain(&impostor).find(|d| !d.is_finite()) {
            return Err(ThresholdError::NotFinite(*bad));
        }
        genuine.sort_by(f32::total_cmp);
        impostor.sort_by(f32::total_cmp);
        Ok(DistanceSets { genuine, impostor })
    }

    pub fn at(&self, threshold: f32) -> OperatingPoint {
        let accepted = |sorted: &[f32]| sorted.partition_point(|&d| d <= threshold);
        OperatingPoint {
            threshold,
            false_accept_rate: accepted(&self.impostor) as f64 / self.impostor.len() as f64,
            false_reject_rate: (self.genuine.len() - accepted(&self.genuine)) as f64
                / self.genuine.len() as f64,
        }
    }

    /// Every distinct operating point, one per observed distance, by increasing threshold.
    pub fn curve(&self) -> Vec<OperatingPoint> {
        let mut thresholds: Vec<f32> = self.genuine.iter().chain(&self.impostor).copied().collect();
        thresholds.sort_by(f32::total_cmp);
        thresholds.dedup();
        thresholds.into_iter().map(|t| self.at(t)).collect()
    }

    /// The equal error rate: the point of the curve where FAR and FRR are closest, their mean.
    pub fn equal_error_rate(&self) -> OperatingPoint {
        let curve = self.curve();
        let best = curve
            .iter()
            .min_by(|a, b| {
                let gap = |p: &OperatingPoint| (p.false_accept_rate - p.false_reject_rate).abs();
                gap(a).total_cmp(&gap(b))
            })
            .copied()
            .unwrap_or_else(|| self.at(0.0));
        let mean = (best.false_accept_rate + best.false_reject_rate) / 2.0;
        OperatingPoint {
            false_accept_rate: mean,
            false_reject_rate: mean,
            ..best
        }
    }

    /// The largest threshold whose false-accept rate does not exceed `target`: the most
    /// permissive setting that keeps impostors at or below that rate.
    pub fn threshold_for_false_accept_rate(
        &self,
        target: f64,
    ) -> Result<OperatingPoint, ThresholdError> {
        let threshold =
            most_permissive_threshold(&self.impostor, self.genuine.iter().copied(), target)?;
        Ok(self.at(threshold))
    }
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

    fn sets() -> DistanceSets {
        DistanceSets::new(
            vec![0.1, 0.2, 0.3, 0.4, 0.9],
            vec![0.35, 0.6, 0.7, 0.8, 1.0],
        )
        .unwrap()
    }

    #[test]
    fn rates_at_a_threshold() {
        let p = sets().at(0.5);
        assert_eq!(p.false_accept_rate, 0.2);
        assert_eq!(p.false_reject_rate, 0.2);
        let p = sets().at(0.05);
        assert_eq!((p.false_accept_rate, p.false_reject_rate), (0.0, 1.0));
    }

    #[test]
    fn equal_error_rate_is_where_the_curves_cross() {
        let eer = sets().equal_error_rate();
        assert!((eer.false_accept_rate - 0.2).abs() < 1e-12, "{eer:?}");
    }

    #[test]
    fn threshold_for_a_target_false_accept_rate() {
        let zero = sets().threshold_for_false_accept_rate(0.0).unwrap();
        assert_eq!(zero.false_accept_rate, 0.0);
        assert_eq!(zero.threshold, 0.3);
        assert_eq!(zero.false_reject_rate, 0.4);
        let fifth = sets().threshold_for_false_accept_rate(0.2).unwrap();
        assert_eq!(fifth.false_accept_rate, 0.2);
        assert_eq!(fifth.threshold, 0.4);
    }

    #[test]
    fn the_threshold_can_sit_below_every_distance() {
        let s = DistanceSets::new(vec![0.5], vec![0.1, 0.6]).unwrap();
        let p = s.threshold_for_false_accept_rate(0.0).unwrap();
        assert!(p.threshold < 0.1);
        assert_eq!((p.false_accept_rate, p.false_reject_rate), (0.0, 1.0));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(matches!(
            DistanceSets::new(vec![], vec![1.0]),
            Err(ThresholdError::TooFewPairs { .. })
        ));
        assert!(matches!(
            DistanceSets::new(vec![f32::NAN], vec![1.0]),
            Err(ThresholdError::NotFinite(_))
        ));
        assert_eq!(
            sets().threshold_for_false_accept_rate(1.0).unwrap_err(),
            ThresholdError::BadTarget(1.0)
        );
    }
}
