//! Per-pixel adaptive background model of the MOG2 class (Zivkovic 2004/2006), written for a door
//! camera:
//!
//! - a mixture of up to [`MODES`] Gaussians per pixel on 8-bit luma, with Zivkovic's recursive
//!   updates and complexity prior, so each pixel keeps as many modes as its history needs;
//! - global exposure compensation: the frame is divided by the median ratio of frame to background
//!   over pixels that were background last frame, so an auto-exposure step or slow light drift does
//!   not turn the whole image into foreground;
//! - shadow labelling: a pixel that matches no background mode but is a uniformly darker copy of it
//!   (brightness ratio in a band, the ratio locally smooth like a soft cast shadow, and the
//!   background's texture still showing through) is labelled [`SHADOW`], not foreground;
//! - held pixels: where the caller still sees a tracked person, the model learns
//!   [`BackgroundConfig::held_learning_factor`] times slower, so someone who waits at the door is not
//!   absorbed into the background within seconds.

use image::GrayImage;

/// Label of a background pixel.
pub const BACKGROUND: u8 = 0;
/// Label of a pixel explained as a cast shadow on the background.
pub const SHADOW: u8 = 127;
/// Label of a foreground pixel.
pub const FOREGROUND: u8 = 255;
// Only a foreground label has its top bit set, so eight labels at a time can be tested for
// foreground, here and in the clean-up.
const _: () = assert!(FOREGROUND & 0x80 != 0 && SHADOW & 0x80 == 0 && BACKGROUND & 0x80 == 0);
/// Gaussian modes per pixel.
pub const MODES: usize = 3;

/// Pixels sampled per axis step when estimating the exposure gain.
const GAIN_SAMPLE_STEP: usize = 4;
const GAIN_HISTOGRAM_MIN: f32 = 0.5;
const GAIN_HISTOGRAM_MAX: f32 = 2.0;
const GAIN_HISTOGRAM_BINS: usize = 600;
const GAIN_MIN_SAMPLES: usize = 100;
/// Background means darker than this say too little about exposure.
const GAIN_MIN_BACKGROUND_LEVEL: f32 = 16.0;
/// Half-size of the neighbourhood in which a shadow's brightness ratio must be smooth.
const SHADOW_NEIGHBOURHOOD_RADIUS: usize = 2;
/// In-band neighbours (of the 25) a shadow pixel needs: shadows are areas, not specks.
const SHADOW_MIN_NEIGHBOURS: usize = 9;
/// Half-size of the window in which a shadow must carry the background's texture: a floor's fine
/// texture varies over several pixels, so a 5×5 neighbourhood sees too little of it.
const TEXTURE_WINDOW_RADIUS: usize = 8;
/// Every fourth row and column of that window (25 samples) is enough to see the texture. The
/// samples of neighbouring pixels interleave, so the clean-up smooths out their errors.
const TEXTURE_WINDOW_STEP: usize = 4;

/// Settings of the background model; the defaults are tuned for an indoor door camera.
#[derive(Debug, Clone, PartialEq)]
pub struct BackgroundConfig {
    /// Frames of history; the learning rate is its reciprocal.
    pub history_frames: f32,
    /// Squared distance, in variances, within which a sample updates a mode (Zivkovic's Tg).
    pub match_threshold_sigma2: f32,
    /// Squared distance, in variances, within which a sample is background (Zivkovic's Tb).
    pub background_threshold_sigma2: f32,
    /// Share of the total weight the background modes explain.
    pub background_ratio: f32,
    /// Variance (grey levels squared) a new mode starts with.
    pub initial_variance: f32,
    /// Variances never fall below this (sensor noise)...
    pub min_variance: f32,
    /// ...nor rise above this.
    pub max_variance: f32,
    /// Zivkovic's complexity-reduction prior (c_T).
    pub complexity_prior: f32,
    /// Brightness ratio band (frame / background) of a shadow.
    pub shadow_ratio_min: f32,
    /// Upper end of that band.
    pub shadow_ratio_max: f32,
    /// Largest standard deviation of the brightness ratio around a shadow pixel.
    pub shadow_ratio_max_deviation: f32,
    /// Background variance (grey levels squared) around a shadow pixel from which its texture must
    /// show through the shadow; on flatter backgrounds the test cannot tell.
    pub shadow_texture_min_variance: f32,
    /// Slope of frame on background, as a fraction of the brightness ratio, a shadow needs where
    /// the background is textured (a true shadow: 1; flat clothes: 0).
    pub shadow_texture_min_slope: f32,
    /// Learning-rate factor where the caller holds a tracked person.
    pub held_learning_factor: f32,
    /// Divide out global exposure changes (the median frame/background ratio) before matching.
    pub compensate_exposure: bool,
    /// Threads that update the model (each takes a band of rows).
    pub threads: usize,
}

impl Default for BackgroundConfig {
    fn default() -> Self {
        Self {
            history_frames: 500.0,
            match_threshold_sigma2: 9.0,
            background_threshold_sigma2: 16.0,
            background_ratio: 0.9,
            initial_variance: 15.0,
            min_variance: 4.0,
            max_variance: 75.0,
            complexity_prior: 0.05,
            shadow_ratio_min: 0.5,
            shadow_ratio_max: 0.95,
            shadow_ratio_max_deviation: 0.04,
            shadow_texture_min_variance: 9.0,
            shadow_texture_min_slope: 0.5,
            held_learning_factor: 0.02,
            compensate_exposure: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Mode {
    weight: f32,
    mean: f32,
    variance: f32,
}

/// A per-pixel mixture of up to [`MODES`] Gaussians on 8-bit luma, with shadow labels.
pub struct BackgroundModel {
    config: BackgroundConfig,
    width: u32,
    height: u32,
    modes: Vec<[Mode; MODES]>,
    counts: Vec<u8>,
    labels: GrayImage,
    last_gain: f32,
    frames_seen: u64,
    ratios: Vec<f32>,
    workers: usize,
}

impl BackgroundModel {
    /// An empty model for frames of `width` × `height`; the first frame seeds it.
    pub fn new(config: BackgroundConfig, width: u32, height: u32) -> Self {
        let workers = config.threads.max(1);
        let n = (width * height) as usize;
        Self {
            config,
            width,
            height,
            modes: vec![[Mode::default(); MODES]; n],
            counts: vec![0; n],
            labels: GrayImage::new(width, height),
            last_gain: 1.0,
            frames_seen: 0,
            ratios: Vec::new(),
            workers,
        }
    }

    /// `(width, height)` of the frames it takes.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Exposure gain applied to the last frame (1 = none).
    pub fn last_gain(&self) -> f32 {
        self.last_gain
    }

    /// Classifies `frame` into [`BACKGROUND`], [`SHADOW`] and [`FOREGROUND`] and learns from it.
    /// `held` marks pixels (non-zero) where a tracked person was last seen.
    pub fn apply(&mut self, frame: &GrayImage, held: Option<&GrayImage>) -> &GrayImage {
        assert_eq!(
            frame.dimensions(),
            (self.width, self.height),
            "frame size must match the background model"
        );
        let gain = if self.config.compensate_exposure {
            self.estimate_gain(frame)
        } else {
            1.0
        };
        self.last_gain = gain;
        // Learn quickly from the first frames, as OpenCV's MOG2 does, then at the configured rate.
        self.frames_seen += 1;
        let alpha = 1.0
            / self
                .config
                .history_frames
                .min(2.0 * self.frames_seen as f32);
        let rates = [
            Rate::new(&self.config, alpha),
            Rate::new(&self.config, alpha * self.config.held_learning_factor),
        ];
        let inverse_gain = 1.0 / gain;
        self.ratios.resize(frame.len(), 0.0);
        let config = &self.config;
        let pixels = frame.as_raw();
        let held = held.map(|h| h.as_raw().as_slice());
        // Pixels are independent: split the image into one contiguous band per worker (at least a
        // pixel a band: a frame with no pixels, from a camera gone wrong, has no bands at all).
        let band = frame.len().div_ceil(self.workers).max(1);
        let bands: Vec<_> = self
            .modes
            .chunks_mut(band)
            .zip(self.counts.chunks_mut(band))
            .zip(self.labels.chunks_mut(band))
            .zip(self.ratios.chunks_mut(band))
            .collect();
        run_bands(bands, |b, (((modes, counts), labels), ratios)| {
            let start = b * band;
            for (j, mode) in modes.iter_mut().enumerate() {
                let i = start + j;
                let held_here = held.is_some_and(|h| h[i] != 0);
                let x = pixels[i] as f32 * inverse_gain;
                let (is_background, background_mean) = Pixel {
                    modes: mode,
                    count: &mut counts[j],
                }
                .update(config, x, &rates[held_here as usize]);
                labels[j] = if is_background {
                    BACKGROUND
                } else {
                    FOREGROUND
                };
                // Only foreground pixels can be shadows; background reads as "unchanged".
                ratios[j] = if is_background {
                    1.0
                } else if background_mean > 1.0 {
                    x / background_mean
                } else {
                    0.0
                };
            }
        });
        self.label_shadows();
        &self.labels
    }

    /// Median brightness ratio of frame to background over last frame's background pixels.
    fn estimate_gain(&self, frame: &GrayImage) -> f32 {
        let (w, h) = (self.width as usize, self.height as usize);
        // Each worker counts the sampled rows of its band into a histogram of its own; bands are
        // whole multiples of the sampling step, so the rows sampled are those of a single pass.
        let rows_per_band = h
            .div_ceil(self.workers)
            .max(1)
            .next_multiple_of(GAIN_SAMPLE_STEP);
        let mut histograms = vec![GainHistogram::default(); h.div_ceil(rows_per_band)];
        run_bands(histograms.iter_mut().collect(), |b, histogram| {
            let rows = b * rows_per_band..((b + 1) * rows_per_band).min(h);
            for y in rows.step_by(GAIN_SAMPLE_STEP) {
                for x in (0..w).step_by(GAIN_SAMPLE_STEP) {
                    let i = y * w + x;
                    if self.counts[i] == 0 || self.labels.as_raw()[i] != BACKGROUND {
                        continue;
                    }
                    let mean = self.modes[i][0].mean;
                    if mean >= GAIN_MIN_BACKGROUND_LEVEL {
                        histogram.add(frame.as_raw()[i] as f32 / mean);
                    }
                }
            }
        });
        let mut total = GainHistogram::default();
        for histogram in &histograms {
            total.merge(histogram);
        }
        total.median().unwrap_or(1.0)
    }

    /// Relabels foreground pixels whose brightness ratio to the background lies in the shadow band,
    /// varies little across the in-band pixels around them, and keeps the background's texture (a
    /// cast shadow dims the background smoothly; a person replaces it with their own texture).
    fn label_shadows(&mut self) {
        let (w, h) = (self.width as usize, self.height as usize);
        let (config, ratios, modes) = (&self.config, &self.ratios, &self.modes);
        // Each worker relabels whole rows; the ratios, read across band edges, are final by now.
        let rows_per_band = h.div_ceil(self.workers).max(1);
        let bands: Vec<&mut [u8]> = self.labels.chunks_mut((rows_per_band * w).max(1)).collect();
        run_bands(bands, |b, labels| {
            label_shadow_rows(config, ratios, modes, (w, h), b * rows_per_band, labels);
        });
    }
}

/// Frame-to-background brightness ratios in [`GAIN_HISTOGRAM_MIN`, `GAIN_HISTOGRAM_MAX`).
#[derive(Clone)]
struct GainHistogram {
    counts: [u32; GAIN_HISTOGRAM_BINS],
    samples: usize,
}

impl Default for GainHistogram {
    fn default() -> Self {
        Self {
            counts: [0; GAIN_HISTOGRAM_BINS],
            samples: 0,
        }
    }
}

impl GainHistogram {
    const BINS_PER_UNIT: f32 =
        GAIN_HISTOGRAM_BINS as f32 / (GAIN_HISTOGRAM_MAX - GAIN_HISTOGRAM_MIN);

    fn add(&mut self, ratio: f32) {
        if (GAIN_HISTOGRAM_MIN..GAIN_HISTOGRAM_MAX).contains(&ratio) {
            self.counts[((ratio - GAIN_HISTOGRAM_MIN) * Self::BINS_PER_UNIT) as usize] += 1;
            self.samples += 1;
        }
    }

    fn merge(&mut self, other: &Self) {
        for (count, other) in self.counts.iter_mut().zip(&other.counts) {
            *count += other;
        }
        self.samples += other.samples;
    }

    /// The median ratio, at its bin's centre; `None` from too few samples.
    fn median(&self) -> Option<f32> {
        if self.samples < GAIN_MIN_SAMPLES {
            return None;
        }
        let mut seen = 0usize;
        let bin = self.counts.iter().position(|&count| {
            seen += count as usize;
            seen * 2 >= self.samples
        })?;
        Some(GAIN_HISTOGRAM_MIN + (bin as f32 + 0.5) / Self::BINS_PER_UNIT)
    }
}

/// Runs `work` on each band, all but the first on threads of their own and the first on the
/// calling thread.
fn run_bands<T: Send>(bands: Vec<T>, work: impl Fn(usize, T) + Sync) {
    let work = &work;
    // Joined one by one, not left to the scope: the scope returns when the closures end, while a
    // thread may still be running its thread-local destructors.
    std::thread::scope(|scope| {
        let mut bands = bands.into_iter().enumerate();
        let first = bands.next();
        let workers: Vec<_> = bands
            .map(|(b, band)| scope.spawn(move || work(b, band)))
            .collect();
        if let Some((b, band)) = first {
            work(b, band);
        }
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// [`BackgroundModel::label_shadows`] for the rows from `first_row` that `labels` holds.
fn label_shadow_rows(
    c: &BackgroundConfig,
    ratios: &[f32],
    modes: &[[Mode; MODES]],
    (w, h): (usize, usize),
    first_row: usize,
    labels: &mut [u8],
) {
    let in_band = |v: f32| (c.shadow_ratio_min..=c.shadow_ratio_max).contains(&v);
    let first = first_row * w;
    // Most of a frame is background: skip eight labels at a time where none is foreground.
    for (chunk_start, chunk) in (first..).step_by(8).zip(labels.chunks_mut(8)) {
        if chunk.len() == 8
            && u64::from_ne_bytes(chunk[..].try_into().unwrap()) & FOREGROUND_BITS == 0
        {
            continue;
        }
        for (i, label) in (chunk_start..).zip(chunk.iter_mut()) {
            if *label != FOREGROUND || !in_band(ratios[i]) {
                continue;
            }
            let at = (i % w, i / w);
            if ratio_is_smooth(c, ratios, (w, h), at, in_band)
                && follows_background_texture(c, ratios, modes, (w, h), at, in_band)
            {
                *label = SHADOW;
            }
        }
    }
}

/// The top bit of each of eight labels.
const FOREGROUND_BITS: u64 = 0x8080_8080_8080_8080;

/// Whether the in-band brightness ratios around `(x, y)` are many and nearly equal, as under a soft
/// cast shadow.
fn ratio_is_smooth(
    c: &BackgroundConfig,
    ratios: &[f32],
    (w, h): (usize, usize),
    (x, y): (usize, usize),
    in_band: impl Fn(f32) -> bool,
) -> bool {
    let r = SHADOW_NEIGHBOURHOOD_RADIUS;
    let (mut sum, mut sum2, mut n) = (0.0f32, 0.0f32, 0usize);
    for yy in y.saturating_sub(r)..=(y + r).min(h - 1) {
        for &v in &ratios[yy * w + x.saturating_sub(r)..=yy * w + (x + r).min(w - 1)] {
            if in_band(v) {
                sum += v;
                sum2 += v * v;
                n += 1;
            }
        }
    }
    if n < SHADOW_MIN_NEIGHBOURS {
        return false;
    }
    let mean = sum / n as f32;
    let deviation = (sum2 / n as f32 - mean * mean).max(0.0).sqrt();
    deviation <= c.shadow_ratio_max_deviation
}

/// Whether the background's own texture shows through the darkening around pixel `(x, y)`, as it
/// does under a cast shadow: over the in-band pixels of a window a few texture cells wide, the
/// frame regressed on the background has a slope near their brightness ratio. Grey clothes in
/// front of a textured floor are flat, so their slope is near zero. Where the background itself
/// is too flat to tell, the pixel stays a shadow.
fn follows_background_texture(
    c: &BackgroundConfig,
    ratios: &[f32],
    modes: &[[Mode; MODES]],
    (w, h): (usize, usize),
    (x, y): (usize, usize),
    in_band: impl Fn(f32) -> bool,
) -> bool {
    let r = TEXTURE_WINDOW_RADIUS;
    let (mut n, mut sum_b, mut sum_bb, mut sum_f, mut sum_fb, mut sum_ratio) =
        (0usize, 0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for yy in (y.saturating_sub(r)..=(y + r).min(h - 1)).step_by(TEXTURE_WINDOW_STEP) {
        for xx in (x.saturating_sub(r)..=(x + r).min(w - 1)).step_by(TEXTURE_WINDOW_STEP) {
            let i = yy * w + xx;
            let ratio = ratios[i];
            if !in_band(ratio) {
                continue;
            }
            // In the band, the ratio was taken against the first mode's mean.
            let background = modes[i][0].mean;
            let frame = ratio * background;
            n += 1;
            sum_b += background;
            sum_bb += background * background;
            sum_f += frame;
            sum_fb += frame * background;
            sum_ratio += ratio;
        }
    }
    if n < SHADOW_MIN_NEIGHBOURS {
        return true;
    }
    let n = n as f32;
    let mean_b = sum_b / n;
    let variance_b = sum_bb / n - mean_b * mean_b;
    if variance_b < c.shadow_texture_min_variance {
        return true;
    }
    let slope = (sum_fb / n - mean_b * sum_f / n) / variance_b;
    slope >= c.shadow_texture_min_slope * sum_ratio / n
}

/// A learning rate and the constants that follow from it.
struct Rate {
    alpha: f32,
    /// Weight every mode loses per frame to Zivkovic's complexity prior.
    prune: f32,
    /// Mean and variance step of a pixel's only mode when the sample matches it: its weight is one
    /// before the update and again after renormalisation.
    single_mode_step: f32,
}

impl Rate {
    fn new(c: &BackgroundConfig, alpha: f32) -> Self {
        let prune = alpha * c.complexity_prior;
        Self {
            alpha,
            prune,
            single_mode_step: alpha / (1.0 - prune).max(alpha),
        }
    }
}

/// One pixel's mixture: its modes, heaviest first, and how many are in use.
struct Pixel<'a> {
    modes: &'a mut [Mode; MODES],
    count: &'a mut u8,
}

impl Pixel<'_> {
    /// One step of Zivkovic's recursive mixture update with the sample `x`. Returns whether the
    /// sample is background and the mean of the pixel's dominant background mode.
    fn update(&mut self, c: &BackgroundConfig, x: f32, rate: &Rate) -> (bool, f32) {
        self.update_matching_first_mode(c, x, rate)
            .unwrap_or_else(|| self.update_any_mode(c, x, rate))
    }

    /// [`Pixel::update_any_mode`] for the common case, a sample that matches the pixel's first
    /// (heaviest) mode, with fewer divisions and no reordering; `None` for any other sample. The
    /// other modes only fade, and being lighter they fade out from the last one.
    fn update_matching_first_mode(
        &mut self,
        c: &BackgroundConfig,
        x: f32,
        rate: &Rate,
    ) -> Option<(bool, f32)> {
        let (modes, count) = (&mut *self.modes, &mut *self.count);
        let n = *count as usize;
        let (alpha, prune) = (rate.alpha, rate.prune);
        let first = modes.first_mut().filter(|_| n > 0)?;
        let d = x - first.mean;
        let d2 = d * d;
        if d2 >= c.match_threshold_sigma2 * first.variance {
            return None;
        }
        let is_background =
            c.background_ratio > 0.0 && d2 < c.background_threshold_sigma2 * first.variance;
        let step = if n == 1 {
            rate.single_mode_step
        } else {
            first.weight += alpha * (1.0 - first.weight) - prune;
            alpha / first.weight.max(alpha)
        };
        first.mean += step * d;
        first.variance =
            (first.variance + step * (d2 - first.variance)).clamp(c.min_variance, c.max_variance);
        if n == 1 {
            return Some((is_background, first.mean));
        }
        let mut total = first.weight;
        let mut kept = 1;
        for mode in modes[1..n].iter_mut() {
            mode.weight = mode.weight * (1.0 - alpha) - prune;
            if mode.weight <= 0.0 {
                break;
            }
            total += mode.weight;
            kept += 1;
        }
        for mode in modes[..kept].iter_mut() {
            mode.weight /= total;
        }
        *count = kept as u8;
        Some((is_background, modes[0].mean))
    }

    /// Zivkovic's update for any sample: the first mode it matches learns, the others fade, modes
    /// whose weight runs out are dropped, and a sample that matches none starts a mode of its own.
    fn update_any_mode(&mut self, c: &BackgroundConfig, x: f32, rate: &Rate) -> (bool, f32) {
        let (modes, count) = (&mut *self.modes, &mut *self.count);
        let n = *count as usize;
        let (alpha, prune) = (rate.alpha, rate.prune);
        let mut matched = None;
        let mut is_background = false;
        let mut cumulative = 0.0f32;
        for (k, mode) in modes.iter_mut().enumerate().take(n) {
            let d = x - mode.mean;
            let d2 = d * d;
            // As Zivkovic: a sample near a background mode (Tb) is background even when it is too far
            // to update that mode (Tg < Tb).
            if matched.is_none()
                && cumulative < c.background_ratio
                && d2 < c.background_threshold_sigma2 * mode.variance
            {
                is_background = true;
            }
            if matched.is_none() && d2 < c.match_threshold_sigma2 * mode.variance {
                mode.weight += alpha * (1.0 - mode.weight) - prune;
                let step = alpha / mode.weight.max(alpha);
                mode.mean += step * d;
                mode.variance = (mode.variance + step * (d2 - mode.variance))
                    .clamp(c.min_variance, c.max_variance);
                matched = Some(k);
            } else {
                cumulative += mode.weight;
                mode.weight = mode.weight * (1.0 - alpha) - prune;
            }
            if matched == Some(k) {
                cumulative += mode.weight;
            }
        }
        let mut kept = 0;
        for k in 0..n {
            if modes[k].weight > 0.0 {
                modes[kept] = modes[k];
                kept += 1;
            }
        }
        if matched.is_none() || kept == 0 {
            let slot = kept.min(MODES - 1);
            modes[slot] = Mode {
                weight: if kept == 0 { 1.0 } else { alpha },
                mean: x,
                variance: c.initial_variance,
            };
            kept = slot + 1;
        }
        let total: f32 = modes[..kept].iter().map(|m| m.weight).sum();
        for mode in modes[..kept].iter_mut() {
            mode.weight /= total;
        }
        // Keep modes ordered by weight (most probable background first); they are nearly sorted.
        for k in 1..kept {
            let mut j = k;
            while j > 0 && modes[j].weight > modes[j - 1].weight {
                modes.swap(j, j - 1);
                j -= 1;
            }
        }
        *count = kept as u8;
        (is_background, modes[0].mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(value: u8) -> GrayImage {
        GrayImage::from_pixel(64, 48, image::Luma([value]))
    }

    fn noisy(value: u8, seed: u32) -> GrayImage {
        GrayImage::from_fn(64, 48, |x, y| {
            let h =
                (x.wrapping_mul(73856093) ^ y.wrapping_mul(19349663) ^ seed.wrapping_mul(83492791))
                    % 7;
            image::Luma([value.saturating_add(h as u8).saturating_sub(3)])
        })
    }

    fn count(labels: &GrayImage, label: u8) -> usize {
        labels.iter().filter(|&&v| v == label).count()
    }

    #[test]
    fn frames_without_pixels_are_classified_without_a_panic() {
        // Found by the silhouette_frames fuzzer: a frame with no pixels made zero-sized bands.
        for (width, height) in [(0, 0), (0, 5), (5, 0)] {
            let mut model = BackgroundModel::new(BackgroundConfig::default(), width, height);
            let frame = GrayImage::new(width, height);
            assert!(model.apply(&frame, None).is_empty());
        }
    }

    #[test]
    fn the_first_mode_shortcut_is_the_general_update() {
        use rand::{Rng, SeedableRng};
        let config = BackgroundConfig::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut shortcuts = 0;
        for trial in 0..20_000 {
            let alpha = [1.0 / 500.0, 1.0 / 500.0 * 0.02, 0.5][trial % 3];
            let rate = Rate::new(&config, alpha);
            let n = rng.random_range(1..=MODES);
            let mut weights: Vec<f32> = (0..n).map(|_| rng.random_range(0.0001..1.0)).collect();
            // Weights are normalised and sorted, as the model keeps them; a lone mode weighs one.
            weights.sort_by(|a, b| b.total_cmp(a));
            let total: f32 = weights.iter().sum();
            let mut modes = [Mode::default(); MODES];
            for (mode, weight) in modes.iter_mut().zip(&weights) {
                *mode = Mode {
                    weight: if n == 1 { 1.0 } else { weight / total },
                    mean: rng.random_range(0.0..255.0),
                    variance: rng.random_range(config.min_variance..config.max_variance),
                };
            }
            let x = modes[0].mean + rng.random_range(-12.0..12.0);
            let (mut shortcut, mut general) = (modes, modes);
            let (mut shortcut_count, mut general_count) = (n as u8, n as u8);
            let Some(fast) = Pixel {
                modes: &mut shortcut,
                count: &mut shortcut_count,
            }
            .update_matching_first_mode(&config, x, &rate) else {
                continue;
            };
            shortcuts += 1;
            let slow = Pixel {
                modes: &mut general,
                count: &mut general_count,
            }
            .update_any_mode(&config, x, &rate);
            assert_eq!(fast, slow);
            assert_eq!(shortcut_count, general_count);
            for k in 0..general_count as usize {
                assert_eq!(shortcut[k].weight.to_bits(), general[k].weight.to_bits());
                assert_eq!(shortcut[k].mean.to_bits(), general[k].mean.to_bits());
                assert_eq!(
                    shortcut[k].variance.to_bits(),
                    general[k].variance.to_bits()
                );
            }
        }
        assert!(shortcuts > 5_000, "{shortcuts}");
    }

    #[test]
    fn learns_a_static_scene_then_sees_an_object() {
        let mut model = BackgroundModel::new(BackgroundConfig::default(), 64, 48);
        for s in 0..50 {
            model.apply(&noisy(120, s), None);
        }
        assert_eq!(count(model.apply(&noisy(120, 99), None), FOREGROUND), 0);
        let mut with_object = noisy(120, 100);
        for y in 10..30 {
            for x in 20..30 {
                with_object.put_pixel(x, y, image::Luma([230]));
            }
        }
        let labels = model.apply(&with_object, None).clone();
        assert_eq!(count(&labels, FOREGROUND), 200);
    }

    #[test]
    fn an_exposure_step_is_compensated() {
        let mut model = BackgroundModel::new(BackgroundConfig::default(), 64, 48);
        for s in 0..50 {
            model.apply(&noisy(120, s), None);
        }
        let brighter = GrayImage::from_fn(64, 48, |x, y| {
            image::Luma([(noisy(120, 7).get_pixel(x, y).0[0] as f32 * 1.15) as u8])
        });
        let labels = model.apply(&brighter, None).clone();
        assert!(
            (model.last_gain() - 1.15).abs() < 0.02,
            "gain {}",
            model.last_gain()
        );
        assert!(
            count(&labels, FOREGROUND) < 20,
            "{}",
            count(&labels, FOREGROUND)
        );

        let mut uncompensated = BackgroundModel::new(
            BackgroundConfig {
                compensate_exposure: false,
                ..BackgroundConfig::default()
            },
            64,
            48,
        );
        for s in 0..50 {
            uncompensated.apply(&noisy(120, s), None);
        }
        assert!(count(uncompensated.apply(&brighter, None), FOREGROUND) > 1000);
    }

    #[test]
    fn a_smooth_darkening_is_a_shadow() {
        let mut model = BackgroundModel::new(BackgroundConfig::default(), 64, 48);
        for _ in 0..50 {
            model.apply(&flat(160), None);
        }
        let mut shadowed = flat(160);
        for y in 0..48 {
            for x in 0..16 {
                shadowed.put_pixel(x, y, image::Luma([112]));
            }
        }
        let labels = model.apply(&shadowed, None).clone();
        assert!(count(&labels, SHADOW) > 600, "{}", count(&labels, SHADOW));
        assert!(count(&labels, FOREGROUND) < 100);
    }

    #[test]
    fn a_shadow_keeps_the_background_texture_and_flat_grey_clothes_do_not() {
        // A floor whose texture varies over several pixels, as tiles and their grain do.
        let floor = |x: u32, y: u32| {
            let (u, v) = (
                x as f32 * std::f32::consts::TAU,
                y as f32 * std::f32::consts::TAU,
            );
            150.0 + 10.0 * (u / 12.0).sin() * (v / 14.0).cos()
        };
        let mut model = BackgroundModel::new(BackgroundConfig::default(), 64, 48);
        let empty = GrayImage::from_fn(64, 48, |x, y| image::Luma([floor(x, y).round() as u8]));
        for _ in 0..50 {
            model.apply(&empty, None);
        }
        // Left: the floor at 60 % brightness. Right: trousers of that same mean grey, flat. Most of
        // the floor stays as it was, so the exposure gain stays one.
        let scene = GrayImage::from_fn(64, 48, |x, y| {
            image::Luma([match x {
                0..14 => (0.6 * floor(x, y)).round() as u8,
                50.. => 90,
                _ => floor(x, y).round() as u8,
            }])
        });
        let labels = model.apply(&scene, None).clone();
        let in_columns = |columns: std::ops::Range<u32>, label: u8| {
            labels
                .enumerate_pixels()
                .filter(|(x, _, v)| columns.contains(x) && v.0[0] == label)
                .count()
        };
        assert!(
            in_columns(0..14, SHADOW) > 500,
            "{}",
            in_columns(0..14, SHADOW)
        );
        assert!(
            in_columns(50..64, FOREGROUND) > 500,
            "{}",
            in_columns(50..64, FOREGROUND)
        );
        assert!(
            in_columns(50..64, SHADOW) < 30,
            "{}",
            in_columns(50..64, SHADOW)
        );
    }

    #[test]
    fn a_held_person_is_not_absorbed_while_an_unheld_one_is() {
        let standing = |value| {
            let mut f = flat(100);
            for y in 5..40 {
                for x in 30..40 {
                    f.put_pixel(x, y, image::Luma([value]));
                }
            }
            f
        };
        let person = standing(200);
        let mut held = GrayImage::new(64, 48);
        for y in 5..40 {
            for x in 30..40 {
                held.put_pixel(x, y, image::Luma([255]));
            }
        }
        let mut holding = BackgroundModel::new(BackgroundConfig::default(), 64, 48);
        let mut plain = BackgroundModel::new(BackgroundConfig::default(), 64, 48);
        for _ in 0..100 {
            holding.apply(&flat(100), None);
            plain.apply(&flat(100), None);
        }
        // Five seconds at 25 fps of someone standing still.
        for _ in 0..125 {
            holding.apply(&person, Some(&held));
            plain.apply(&person, None);
        }
        assert_eq!(count(holding.apply(&person, Some(&held)), FOREGROUND), 350);
        assert_eq!(count(plain.apply(&person, None), FOREGROUND), 0);
    }
}
