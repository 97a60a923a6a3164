//! Error rates of a distance threshold over pairs of embeddings: genuine pairs (the same person) and
//! impostor pairs (two people). A pair is accepted when `hstl::accepts` its distance. This is how a
//! site calibrates from enrolment walks alone, before there are searches to count (the demo does).

use crate::thresholds::ThresholdError;

/// One point of the ROC/DET curve of pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairPoint {
    /// The accept distance of this point.
    pub threshold: f32,
    /// Share of impostor pairs accepted.
    pub false_accept_rate: f64,
    /// Share of genuine pairs refused.
    pub false_reject_rate: f64,
}

/// The distances of a set of genuine and impostor pairs, from which every threshold's rates follow.
#[derive(Debug, Clone)]
pub struct PairRates {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
}

impl PairRates {
    /// From the distances of genuine and impostor pairs; both must be present and finite.
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
        Ok(PairRates { genuine, impostor })
    }

    /// The rates at `threshold`.
    pub fn at(&self, threshold: f32) -> PairPoint {
        let accepted = |sorted: &[f32]| sorted.partition_point(|&d| hstl::accepts(d, threshold));
        PairPoint {
            threshold,
            false_accept_rate: accepted(&self.impostor) as f64 / self.impostor.len() as f64,
            false_reject_rate: (self.genuine.len() - accepted(&self.genuine)) as f64
                / self.genuine.len() as f64,
        }
    }

    /// Where the false-accept and false-reject rates are closest (the smallest such distance); both
    /// reported as their mean.
    pub fn equal_error_rate(&self) -> PairPoint {
        let mut thresholds: Vec<f32> = self.genuine.iter().chain(&self.impostor).copied().collect();
        thresholds.sort_by(f32::total_cmp);
        thresholds.dedup();
        let gap = |p: &PairPoint| (p.false_accept_rate - p.false_reject_rate).abs();
        let best = thresholds
            .into_iter()
            .map(|t| self.at(t))
            .min_by(|a, b| gap(a).total_cmp(&gap(b)))
            .expect("at least one distance");
        let mean = (best.false_accept_rate + best.false_reject_rate) / 2.0;
        PairPoint {
            false_accept_rate: mean,
            false_reject_rate: mean,
            ..best
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> PairRates {
        PairRates::new(
            vec![0.1, 0.2, 0.3, 0.4, 0.9],
            vec![0.35, 0.6, 0.7, 0.8, 1.0],
        )
        .unwrap()
    }

    #[test]
    fn rates_at_a_threshold_count_a_pair_at_it_as_accepted() {
        let p = rates().at(0.5);
        assert_eq!((p.false_accept_rate, p.false_reject_rate), (0.2, 0.2));
        let p = rates().at(0.35);
        assert_eq!((p.false_accept_rate, p.false_reject_rate), (0.2, 0.4));
        let p = rates().at(0.05);
        assert_eq!((p.false_accept_rate, p.false_reject_rate), (0.0, 1.0));
    }

    #[test]
    fn the_equal_error_rate_is_where_the_curves_cross_at_the_smallest_distance() {
        let eer = rates().equal_error_rate();
        assert_eq!(eer.threshold, 0.4);
        assert!((eer.false_accept_rate - 0.2).abs() < 1e-12, "{eer:?}");
    }

    #[test]
    fn bad_pairs_are_refused() {
        assert!(matches!(
            PairRates::new(vec![], vec![1.0]),
            Err(ThresholdError::TooFewPairs { .. })
        ));
        assert!(matches!(
            PairRates::new(vec![f32::NAN], vec![1.0]),
            Err(ThresholdError::NotFinite(_))
        ));
    }
}
