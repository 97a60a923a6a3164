//! A compact copy of the gallery that bounds a probe's distance to every template at a quarter of the
//! memory traffic of the exact search, so that only the templates that could still belong to the two
//! closest identities are measured exactly.
//!
//! Each template is kept as 8-bit codes of its offset from the gallery mean, with one scale per part
//! shared by every template, so that differences of codes are integers and the inner loop is integer
//! arithmetic. What the codes lose is kept as one number per part: the exact norm of the rounding
//! residual, plus an allowance for the rounding of the exact search itself. By the triangle inequality
//! the true part distance is within the sum of the probe's and the template's allowances of the
//! distance between codes.

/// The largest code magnitude; symmetric so that negating an offset never clips.
const CODE_MAX: f32 = 127.0;

/// Four units in the last place of a part's norm: more than the exact search can lose in rounding.
const FLOAT_ALLOWANCE: f32 = 4.0 * f32::EPSILON;

/// Relative slack on a whole bound, for the rounding of the bound itself.
const BOUND_SLACK: f32 = 1e-5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bounds {
    pub lower: f32,
    pub upper: f32,
}

pub(super) struct Prefilter {
    parts: usize,
    channels: usize,
    centre: Vec<f32>,
    scales: Vec<f32>,
    codes: Vec<i8>,
    allowances: Vec<f32>,
}

impl Prefilter {
    /// Codes for `values`, templates of `parts × channels` laid end to end.
    pub fn build(values: &[f32], parts: usize, channels: usize) -> Self {
        let stride = parts * channels;
        let count = values.len() / stride;
        let mut centre = vec![0.0f64; stride];
        for template in values.chunks_exact(stride) {
            for (sum, &value) in centre.iter_mut().zip(template) {
                *sum += f64::from(value);
            }
        }
        let centre: Vec<f32> = centre
            .iter()
            .map(|sum| (sum / count.max(1) as f64) as f32)
            .collect();
        let mut largest_offset = vec![0.0f32; parts];
        for template in values.chunks_exact(stride) {
            for (part, (values, centre)) in template
                .chunks_exact(channels)
                .zip(centre.chunks_exact(channels))
                .enumerate()
            {
                for (value, mean) in values.iter().zip(centre) {
                    largest_offset[part] = largest_offset[part].max((value - mean).abs());
                }
            }
        }
        let scales = largest_offset
            .iter()
            .map(|&offset| {
                if offset > 0.0 && offset.is_finite() {
                    offset / CODE_MAX
                } else {
                    1.0
                }
            })
            .collect();
        let encoder = Prefilter {
            parts,
            channels,
            centre,
            scales,
            codes: Vec::new(),
            allowances: Vec::new(),
        };
        let mut codes = vec![0; values.len()];
        let mut allowances = vec![0.0; count * parts];
        for ((template, codes), allowances) in values
            .chunks_exact(stride)
            .zip(codes.chunks_exact_mut(stride))
            .zip(allowances.chunks_exact_mut(parts))
        {
            encoder.encode(template, codes, allowances);
        }
        Prefilter {
            codes,
            allowances,
            ..encoder
        }
    }

    /// Codes of one embedding and, per part, how far its true values may lie from what the codes say.
    fn encode(&self, embedding: &[f32], codes: &mut [i8], allowances: &mut [f32]) {
        for (part, allowance) in allowances.iter_mut().enumerate() {
            let span = part * self.channels..(part + 1) * self.channels;
            let scale = f64::from(self.scales[part]);
            let mut residual = 0.0f64;
            let mut norm = 0.0f64;
            for ((&value, &mean), code) in embedding[span.clone()]
                .iter()
                .zip(&self.centre[span.clone()])
                .zip(&mut codes[span.clone()])
            {
                let offset = f64::from(value) - f64::from(mean);
                let rounded = (offset / scale).round().clamp(-127.0, 127.0);
                *code = rounded as i8;
                residual += (offset - rounded * scale).powi(2);
                norm += f64::from(value).powi(2);
            }
            *allowance = (residual.sqrt() + f64::from(FLOAT_ALLOWANCE) * norm.sqrt()) as f32;
        }
    }

    /// Lower and upper bounds of the reference distance from `probe` to every template, in template
    /// order, computed on up to `threads` threads.
    pub fn bounds(
        &self,
        probe: &[f32],
        threads: usize,
        templates_per_thread_min: usize,
    ) -> Vec<Bounds> {
        let stride = self.parts * self.channels;
        let mut probe_codes = vec![0i8; stride];
        let mut probe_allowances = vec![0.0f32; self.parts];
        self.encode(probe, &mut probe_codes, &mut probe_allowances);
        let probe = EncodedProbe {
            codes: &probe_codes,
            allowances: &probe_allowances,
            scales: &self.scales,
            channels: self.channels,
        };
        let count = self.allowances.len() / self.parts.max(1);
        let mut bounds = vec![
            Bounds {
                lower: 0.0,
                upper: 0.0
            };
            count
        ];
        let threads = threads.min(count.div_ceil(templates_per_thread_min)).max(1);
        let per_thread = count.div_ceil(threads).max(1);
        // Joined one by one, not left to the scope: the scope returns when the closures end, while
        // a thread may still be running its thread-local destructors.
        std::thread::scope(|scope| {
            let workers: Vec<_> = self
                .codes
                .chunks(per_thread * stride)
                .zip(self.allowances.chunks(per_thread * self.parts))
                .zip(bounds.chunks_mut(per_thread))
                .map(|((codes, allowances), out)| {
                    let probe = &probe;
                    scope.spawn(move || probe.bound_all(codes, allowances, out))
                })
                .collect();
            for worker in workers {
                if let Err(panic) = worker.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
        bounds
    }
}

struct EncodedProbe<'a> {
    codes: &'a [i8],
    allowances: &'a [f32],
    scales: &'a [f32],
    channels: usize,
}

impl EncodedProbe<'_> {
    fn bound_all(&self, codes: &[i8], allowances: &[f32], out: &mut [Bounds]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just found to support AVX2.
            unsafe { self.bound_all_avx2(codes, allowances, out) };
            return;
        }
        self.bound_all_with(codes, allowances, out, |part, template| {
            let span = part * self.channels..(part + 1) * self.channels;
            squared_code_distance(&self.codes[span], template)
        });
    }

    /// [`EncodedProbe::bound_all`] compiled for AVX2, so that the kernel is inlined into the loop.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn bound_all_avx2(&self, codes: &[i8], allowances: &[f32], out: &mut [Bounds]) {
        let widened: Vec<i16> = self.codes.iter().map(|&code| i16::from(code)).collect();
        self.bound_all_with(codes, allowances, out, |part, template| {
            let span = part * self.channels..(part + 1) * self.channels;
            squared_code_distance_avx2(&widened[span], template)
        });
    }

    /// Bounds for each template of `codes`, from `squared(part, template_part)`: the squared distance
    /// between the probe's codes and the template's in that part.
    #[inline(always)]
    fn bound_all_with(
        &self,
        codes: &[i8],
        allowances: &[f32],
        out: &mut [Bounds],
        squared: impl Fn(usize, &[i8]) -> i32,
    ) {
        let parts = self.allowances.len();
        for ((template, allowances), bounds) in codes
            .chunks_exact(self.codes.len())
            .zip(allowances.chunks_exact(parts))
            .zip(out.iter_mut())
        {
            let mut lower = 0.0f32;
            let mut upper = 0.0f32;
            for (part, ((template_part, scale), allowance)) in template
                .chunks_exact(self.channels)
                .zip(self.scales)
                .zip(self.allowances.iter().zip(allowances).map(|(a, b)| a + b))
                .enumerate()
            {
                let distance = scale * (squared(part, template_part) as f32).sqrt();
                lower += (distance - allowance).max(0.0);
                upper += distance + allowance;
            }
            *bounds = Bounds {
                lower: lower / parts as f32 * (1.0 - BOUND_SLACK),
                upper: upper / parts as f32 * (1.0 + BOUND_SLACK),
            };
        }
    }
}

/// Exact in `i32`: at most 254² per channel, far below overflow for any embedding width in use.
#[inline(always)]
fn squared_code_distance(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| squared_difference(x.into(), y))
        .sum()
}

#[inline(always)]
fn squared_difference(x: i16, y: i8) -> i32 {
    let difference = i32::from(x - i16::from(y));
    difference * difference
}

/// [`squared_code_distance`] with the probe's codes already widened to 16 bits: sixteen codes per
/// widening load and one multiply-add, which the compiler does not find on its own for a width only
/// known at run time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn squared_code_distance_avx2(probe: &[i16], template: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    const LANES: usize = 16;
    let mut sums = _mm256_setzero_si256();
    let mut probe_blocks = probe.chunks_exact(LANES);
    let mut template_blocks = template.chunks_exact(LANES);
    for (p, t) in (&mut probe_blocks).zip(&mut template_blocks) {
        // SAFETY: both blocks hold exactly LANES elements: 32 bytes of `p`, 16 of `t`.
        let (p, t) = unsafe {
            (
                _mm256_loadu_si256(p.as_ptr().cast()),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(t.as_ptr().cast())),
            )
        };
        let difference = _mm256_sub_epi16(p, t);
        sums = _mm256_add_epi32(sums, _mm256_madd_epi16(difference, difference));
    }
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 bytes, the width of the store.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sums) };
    let remainder: i32 = probe_blocks
        .remainder()
        .iter()
        .zip(template_blocks.remainder())
        .map(|(&x, &y)| squared_difference(x, y))
        .sum();
    lanes.iter().sum::<i32>() + remainder
}

#[cfg(test)]
mod tests {
    use super::super::part_mean_distance;
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn bounds_enclose_the_exact_distance_for_probes_inside_and_far_outside_the_gallery() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (parts, channels) = (5, 24);
        let stride = parts * channels;
        // A large common offset with small differences, as untrained networks give.
        let offset = |i: usize| 3.0 + (i % stride % 7) as f32;
        // Miri interprets every instruction: a smaller gallery still covers whole and partial blocks.
        let templates = if cfg!(miri) { 37 } else { 300 };
        let values: Vec<f32> = (0..templates * stride)
            .map(|i| offset(i) + rng.random_range(-0.01..0.01))
            .collect();
        let prefilter = Prefilter::build(&values, parts, channels);
        for spread in [0.005f32, 0.5, 50.0] {
            let probe: Vec<f32> = (0..stride)
                .map(|i| offset(i) + rng.random_range(-spread..spread))
                .collect();
            let bounds = prefilter.bounds(&probe, 2, 16);
            for (template, bound) in values.chunks_exact(stride).zip(&bounds) {
                let exact = part_mean_distance(&probe, template, channels);
                assert!(
                    bound.lower <= exact && exact <= bound.upper,
                    "{} <= {exact} <= {} (probe spread {spread})",
                    bound.lower,
                    bound.upper
                );
            }
            if spread < 0.1 {
                let widest = bounds
                    .iter()
                    .map(|b| (b.upper - b.lower) / b.upper)
                    .fold(0.0f32, f32::max);
                assert!(widest < 0.1, "bounds {widest} wide relative to distance");
            }
        }
    }

    #[test]
    fn identical_templates_give_zero_width_codes_and_still_valid_bounds() {
        let values = vec![0.25f32; 4 * 16];
        let prefilter = Prefilter::build(&values, 2, 8);
        let probe: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let exact = part_mean_distance(&probe, &values[..16], 8);
        for bound in prefilter.bounds(&probe, 1, 1) {
            assert!(bound.lower <= exact && exact <= bound.upper);
        }
    }
}
