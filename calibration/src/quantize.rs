//! Reduced precision: the int8 scales of activations (one per tensor, from an observer fed with
//! representative walks). The int8 arithmetic itself, weights' per-channel scales included, is
//! `hstl::precision`, where the graph that stores them is written.

pub use crate::error::QuantizeError;
use hstl::precision::INT8_LIMIT;
use hstl::{Embedding, HstlError};

/// Bins of an observer's histogram of magnitudes.
const HISTOGRAM_BINS: usize = 2048;

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
            return Err(QuantizeError::NonFinite(value));
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

/// How far reduced precision moves embeddings: over windows, the reference distance (the one the
/// kiosk compares with its accept distance) between a window's embedding in reduced precision and
/// in float.
#[derive(Debug, Clone, Default)]
pub struct Drift {
    total: f64,
    largest: f32,
    windows: usize,
}

impl Drift {
    /// Adds one window's pair of embeddings.
    pub fn add(&mut self, float: &Embedding, reduced: &Embedding) -> Result<(), HstlError> {
        let distance = float.distance(reduced)?;
        self.total += distance as f64;
        self.largest = self.largest.max(distance);
        self.windows += 1;
        Ok(())
    }

    /// The mean distance (zero before any window).
    pub fn mean(&self) -> f32 {
        if self.windows == 0 {
            0.0
        } else {
            (self.total / self.windows as f64) as f32
        }
    }

    /// The largest distance seen.
    pub fn largest(&self) -> f32 {
        self.largest
    }

    /// Windows measured.
    pub fn windows(&self) -> usize {
        self.windows
    }
}

/// The mean reference distance between two different embeddings of `embeddings`: the scale a drift
/// is read against (zero for fewer than two).
pub fn mean_pairwise_distance(embeddings: &[Embedding]) -> Result<f32, HstlError> {
    let mut total = 0f64;
    let mut pairs = 0u64;
    for (i, a) in embeddings.iter().enumerate() {
        for b in &embeddings[i + 1..] {
            total += a.distance(b)? as f64;
            pairs += 1;
        }
    }
    Ok(if pairs == 0 {
        0.0
    } else {
        (total / pairs as f64) as f32
    })
}

/// A uniform sample of at most `capacity` items from a stream of unknown length (reservoir
/// sampling), drawn with a fixed seed so that the same walks always give the same sample.
#[derive(Debug, Clone)]
pub struct Reservoir<T> {
    capacity: usize,
    seen: u64,
    items: Vec<T>,
    state: u64,
}

impl<T> Reservoir<T> {
    /// An empty sample that will keep at most `capacity` items.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: 0,
            items: Vec::with_capacity(capacity),
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Offers one item of the stream; `make` is called only when the item is kept.
    pub fn offer(&mut self, make: impl FnOnce() -> T) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(make());
            return;
        }
        let slot = self.next_random() % self.seen;
        if let Some(item) = self.items.get_mut(slot as usize) {
            *item = make();
        }
    }

    /// Items offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The sample.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }

    fn next_random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hstl::precision::quantize_linear;

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

    #[test]
    fn drift_is_the_reference_distance_from_the_float_embedding() {
        let float = Embedding::new(2, 2, vec![0.0, 0.0, 1.0, 1.0]).unwrap();
        let near = Embedding::new(2, 2, vec![0.0, 0.5, 1.0, 1.0]).unwrap();
        let far = Embedding::new(2, 2, vec![3.0, 4.0, 1.0, 1.0]).unwrap();
        let mut drift = Drift::default();
        assert_eq!(drift.mean(), 0.0);
        drift.add(&float, &near).unwrap();
        drift.add(&float, &far).unwrap();
        assert_eq!(drift.windows(), 2);
        assert_eq!(drift.mean(), (0.25 + 2.5) / 2.0);
        assert_eq!(drift.largest(), 2.5);
        let other_variant = Embedding::new(1, 4, vec![0.0; 4]).unwrap();
        assert!(drift.add(&float, &other_variant).is_err());
        assert_eq!(drift.windows(), 2);
    }

    #[test]
    fn the_pairwise_scale_averages_every_pair_once() {
        let at = |x: f32| Embedding::new(1, 1, vec![x]).unwrap();
        assert_eq!(mean_pairwise_distance(&[at(0.0)]).unwrap(), 0.0);
        let scale = mean_pairwise_distance(&[at(0.0), at(1.0), at(3.0)]).unwrap();
        assert_eq!(scale, (1.0 + 3.0 + 2.0) / 3.0);
    }

    #[test]
    fn a_reservoir_keeps_a_uniform_repeatable_sample() {
        let sample = |n: u32| {
            let mut reservoir = Reservoir::new(100);
            for i in 0..n {
                reservoir.offer(|| i);
            }
            assert_eq!(reservoir.seen(), n as u64);
            reservoir.into_items()
        };
        assert_eq!(sample(10), (0..10).collect::<Vec<_>>());
        let kept = sample(10_000);
        assert_eq!(kept, sample(10_000));
        assert_eq!(kept.len(), 100);
        let mut distinct = kept.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 100);
        let late = kept.iter().filter(|&&i| i >= 5_000).count();
        assert!(
            (30..=70).contains(&late),
            "{late} of 100 from the second half"
        );
    }
}
