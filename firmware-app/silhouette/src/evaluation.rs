//! Scoring masks against ground truth: precision, recall and F-measure accumulated over frames
//! (CDnet's definition), and intersection over union of silhouettes.

use image::GrayImage;

/// Pixel counts accumulated over any number of frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskScore {
    /// Person pixels labelled person.
    pub true_positives: u64,
    /// Background pixels labelled person.
    pub false_positives: u64,
    /// Person pixels labelled background.
    pub false_negatives: u64,
}

impl MaskScore {
    /// Adds one frame: non-zero pixels are foreground in both masks.
    pub fn add(&mut self, predicted: &GrayImage, truth: &GrayImage) {
        for (&p, &t) in predicted.as_raw().iter().zip(truth.as_raw()) {
            match (p != 0, t != 0) {
                (true, true) => self.true_positives += 1,
                (true, false) => self.false_positives += 1,
                (false, true) => self.false_negatives += 1,
                (false, false) => {}
            }
        }
    }

    /// Share of the pixels labelled person that are.
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// Share of the person pixels labelled person.
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// Harmonic mean of precision and recall (CDnet's F).
    pub fn f_measure(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Intersection over union of two grey silhouettes binarised at `threshold` (1.0 when both are empty).
pub fn silhouette_iou(a: &[u8], b: &[u8], threshold: u8) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x >= threshold, y >= threshold);
        inter += u64::from(x && y);
        union += u64::from(x || y);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_measure_of_a_half_overlap() {
        let truth = GrayImage::from_fn(4, 1, |x, _| image::Luma([if x < 2 { 255 } else { 0 }]));
        let predicted = GrayImage::from_fn(4, 1, |x, _| {
            image::Luma([if (1..3).contains(&x) { 255 } else { 0 }])
        });
        let mut score = MaskScore::default();
        score.add(&predicted, &truth);
        assert_eq!(
            (
                score.true_positives,
                score.false_positives,
                score.false_negatives
            ),
            (1, 1, 1)
        );
        assert!((score.f_measure() - 0.5).abs() < 1e-12);
        assert!(
            (silhouette_iou(predicted.as_raw(), truth.as_raw(), 128) - 1.0 / 3.0).abs() < 1e-12
        );
    }
}
