//! Reduced precision: symmetric int8 scales for weights (one per output channel) and for activations
//! (one per tensor, from an observer fed with representative walks).
//!
//! Everything is symmetric with zero point 0: TensorRT's explicit quantization accepts nothing else,
//! and one QDQ file has to run on tract, ONNX Runtime and TensorRT alike.

pub use crate::error::QuantizeError;

/// Largest magnitude a symmetric int8 scale maps its threshold to.
pub const INT8_LIMIT: f32 = 127.0;
/// Bins of an observer's histogram of magnitudes.
const HISTOGRAM_BINS: usize = 2048;

/// ONNX `QuantizeLinear` with zero point 0: `x / scale` rounded half to even, saturated to int8.
pub fn quantize_linear(x: f32, scale: f32) -> i8 {
    (x / scale).round_ties_even().clamp(-128.0, 127.0) as i8
}

/// Weights as int8 with one scale per output channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelQuantized {
    /// The int8 weights, in the layout they came in.
    pub values: Vec<i8>,
    /// One scale per output channel: the channel's largest magnitude over 127 (1 for a channel of
    /// zeros, since ONNX wants a positive scale).
    pub scales: Vec<f32>,
}

/// Quantizes `weights`, laid out `[channels, …]` (a convolution's or a linear layer's output channel
/// first), with a symmetric scale per output channel.
pub fn quantize_per_channel(
    weights: &[f32],
    channels: usize,
) -> Result<ChannelQuantized, QuantizeError> {
    if channels == 0 || !weights.len().is_multiple_of(channels) {
        return Err(QuantizeError::ChannelMismatch {
            len: weights.len(),
            channels,
        });
    }
    if let Some(&value) = weights.iter().find(|w| !w.is_finite()) {
        return Err(QuantizeError::NonFinite {
            what: "weights",
            value,
        });
    }
    let per_channel = weights.len() / channels;
    let mut quantized = ChannelQuantized {
        values: Vec::with_capacity(weights.len()),
        scales: Vec::with_capacity(channels),
    };
    for channel in weights.chunks(per_channel) {
        let largest = channel.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if largest > 0.0 {
            largest / INT8_LIMIT
        } else {
            1.0
        };
        quantized.scales.push(scale);
        quantized
            .values
            .extend(channel.iter().map(|&w| quantize_linear(w, scale)));
    }
    Ok(quantized)
}

/// How an activation's clipping threshold is chosen from what was observed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ObserverKind {
    /// The largest magnitude seen: nothing clipped, coarse steps when a few values are far out.
    MinMax,
    /// The magnitude under which this percentage of the values lie.
    Percentile(f32),
    /// The threshold with the least expected squared error, rounding and clipping together.
    Mse,
}

/// A running histogram of activation magnitudes that gives a symmetric int8 scale.
#[derive(Debug, Clone)]
pub struct ActivationObserver {
    kind: ObserverKind,
    largest: f32,
    range: f32,
    bins: Vec<u64>,
    count: u64,
}

impl ActivationObserver {
    /// An observer that has seen nothing.
    pub fn new(kind: ObserverKind) -> Result<Self, QuantizeError> {
        if let ObserverKind::Percentile(p) = kind {
            if !(p > 0.0 && p <= 100.0) {
                return Err(QuantizeError::Percentile(p));
            }
        }
        Ok(Self {
            kind,
            largest: 0.0,
            range: 0.0,
            bins: vec![0; HISTOGRAM_BINS],
            count: 0,
        })
    }

    /// Adds values (one batch of an activation tensor).
    pub fn observe(&mut self, values: &[f32]) -> Result<(), QuantizeError> {
        if let Some(&value) = values.iter().find(|v| !v.is_finite()) {
            return Err(QuantizeError::NonFinite {
                what: "activations",
                value,
            });
        }
        let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        self.largest = self.largest.max(largest);
        if self.largest > 0.0 && self.range == 0.0 {
            self.range = self.largest;
        }
        while self.largest > self.range {
            self.halve_resolution();
        }
        for value in values {
            let bin = (value.abs() / self.range * HISTOGRAM_BINS as f32) as usize;
            self.bins[bin.min(HISTOGRAM_BINS - 1)] += 1;
        }
        self.count += values.len() as u64;
        Ok(())
    }

    /// The range doubles and each new bin is the sum of two old ones, so no count moves bins.
    fn halve_resolution(&mut self) {
        for i in 0..HISTOGRAM_BINS / 2 {
            self.bins[i] = self.bins[2 * i] + self.bins[2 * i + 1];
        }
        self.bins[HISTOGRAM_BINS / 2..].fill(0);
        self.range *= 2.0;
    }

    /// The clipping threshold the observer's kind chooses.
    pub fn threshold(&self) -> Result<f32, QuantizeError> {
        if self.count == 0 {
            return Err(QuantizeError::NothingObserved);
        }
        if self.largest == 0.0 {
            return Err(QuantizeError::AllZero);
        }
        let width = self.range / HISTOGRAM_BINS as f32;
        let threshold = match self.kind {
            ObserverKind::MinMax => self.largest,
            ObserverKind::Percentile(p) => {
                let wanted = (p as f64 / 100.0 * self.count as f64).ceil() as u64;
                let mut seen = 0;
                let bin = self
                    .bins
                    .iter()
                    .position(|&c| {
                        seen += c;
                        seen >= wanted
                    })
                    .unwrap_or(HISTOGRAM_BINS - 1);
                (bin + 1) as f32 * width
            }
            ObserverKind::Mse => {
                let last = ((self.largest / width).ceil() as usize).clamp(1, HISTOGRAM_BINS);
                (1..=last)
                    .map(|edge| (edge as f32 * width, self.expected_error(edge, width)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map_or(self.largest, |(t, _)| t)
            }
        };
        Ok(threshold.min(self.largest))
    }

    /// Expected squared error of clipping at bin edge `edge`: values under it are rounded (uniform
    /// error over a step), values over it are clipped to the threshold (from their bin's centre).
    fn expected_error(&self, edge: usize, width: f32) -> f64 {
        let threshold = edge as f64 * width as f64;
        let step = threshold / INT8_LIMIT as f64;
        let (inside, clipped) = self.bins.split_at(edge);
        let rounding = inside.iter().sum::<u64>() as f64 * step * step / 12.0;
        let clipping: f64 = clipped
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let centre = (edge + i) as f64 * width as f64 + width as f64 / 2.0;
                c as f64 * (centre - threshold).powi(2)
            })
            .sum();
        rounding + clipping
    }

    /// The int8 scale: the threshold over 127.
    pub fn scale(&self) -> Result<f32, QuantizeError> {
        Ok(self.threshold()? / INT8_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values quantized at `scale` and back: mean squared error.
    fn round_trip_error(values: &[f32], scale: f32) -> f64 {
        values
            .iter()
            .map(|&v| (v as f64 - quantize_linear(v, scale) as f64 * scale as f64).powi(2))
            .sum::<f64>()
            / values.len() as f64
    }

    /// Deterministic bell-shaped values (sum of four uniforms), with `outliers` far-out values.
    fn activations(n: usize, outliers: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut values: Vec<f32> = (0..n)
            .map(|_| (0..4).map(|_| uniform()).sum::<f32>())
            .collect();
        values.extend((0..outliers).map(|i| if i % 2 == 0 { 40.0 } else { -35.0 }));
        values
    }

    #[test]
    fn quantize_linear_rounds_half_to_even_and_saturates() {
        let q = |x| quantize_linear(x, 0.5);
        assert_eq!([q(0.25), q(0.75), q(1.25), q(-0.25)], [0, 2, 2, 0]);
        assert_eq!([q(1000.0), q(-1000.0)], [127, -128]);
    }

    #[test]
    fn each_channel_gets_its_own_scale_and_its_extreme_maps_to_127() {
        let weights = [0.5, -1.0, 0.25, 0.0, 0.0, 0.0, 8.0, 2.0, -4.0];
        let q = quantize_per_channel(&weights, 3).unwrap();
        assert_eq!(q.scales, vec![1.0 / 127.0, 1.0, 8.0 / 127.0]);
        assert_eq!(&q.values[..3], &[64, -127, 32]);
        assert_eq!(&q.values[3..6], &[0, 0, 0]);
        assert_eq!(q.values[6], 127);
        for (channel, scale) in weights.chunks(3).zip(&q.scales) {
            assert!(round_trip_error(channel, *scale).sqrt() <= *scale as f64 / 2.0);
        }
    }

    #[test]
    fn weights_that_cannot_be_quantized_are_named() {
        assert_eq!(
            quantize_per_channel(&[1.0, 2.0, 3.0], 2),
            Err(QuantizeError::ChannelMismatch {
                len: 3,
                channels: 2
            })
        );
        assert!(matches!(
            quantize_per_channel(&[1.0, f32::NAN], 1),
            Err(QuantizeError::NonFinite {
                what: "weights",
                ..
            })
        ));
    }

    #[test]
    fn an_empty_or_all_black_calibration_set_is_an_error() {
        let mut observer = ActivationObserver::new(ObserverKind::Mse).unwrap();
        assert_eq!(observer.scale(), Err(QuantizeError::NothingObserved));
        observer.observe(&[0.0; 100]).unwrap();
        assert_eq!(observer.scale(), Err(QuantizeError::AllZero));
        assert!(observer.observe(&[f32::INFINITY]).is_err());
        assert_eq!(
            ActivationObserver::new(ObserverKind::Percentile(0.0)).unwrap_err(),
            QuantizeError::Percentile(0.0)
        );
    }

    #[test]
    fn batches_of_growing_range_give_what_one_batch_gives() {
        let values = activations(20_000, 10);
        for kind in [
            ObserverKind::MinMax,
            ObserverKind::Percentile(99.9),
            ObserverKind::Mse,
        ] {
            let mut whole = ActivationObserver::new(kind).unwrap();
            whole.observe(&values).unwrap();
            let mut sorted = values.clone();
            sorted.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
            let mut batched = ActivationObserver::new(kind).unwrap();
            for batch in sorted.chunks(1000) {
                batched.observe(batch).unwrap();
            }
            let (a, b) = (whole.threshold().unwrap(), batched.threshold().unwrap());
            let bin = whole.range.max(batched.range) / HISTOGRAM_BINS as f32;
            assert!((a - b).abs() <= 2.0 * bin, "{kind:?}: {a} against {b}");
        }
    }

    #[test]
    fn outliers_stretch_min_max_while_percentile_and_mse_keep_fine_steps() {
        let values = activations(50_000, 20);
        let scale = |kind| {
            let mut observer = ActivationObserver::new(kind).unwrap();
            observer.observe(&values).unwrap();
            observer.scale().unwrap()
        };
        let (min_max, percentile, mse) = (
            scale(ObserverKind::MinMax),
            scale(ObserverKind::Percentile(99.9)),
            scale(ObserverKind::Mse),
        );
        assert_eq!(min_max, 40.0 / 127.0);
        assert!(
            percentile < min_max / 10.0,
            "{percentile} against {min_max}"
        );
        let error = |s| round_trip_error(&values, s);
        assert!(
            error(mse) < error(min_max) && error(mse) <= error(percentile) * 1.05,
            "MSE observer's error {} against min-max {} and percentile {}",
            error(mse),
            error(min_max),
            error(percentile)
        );
    }
}
