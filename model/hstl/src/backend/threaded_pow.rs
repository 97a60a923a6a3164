//! `x^p` of an f32 tensor for a constant `p`, on the executor's threads, swapped into tract plans in
//! place of tract's `PowConst`.
//!
//! GeM raises whole feature maps to its learned power (p from 2 to 7) twenty times a window, and
//! tract runs element-wise operators on one thread whatever its executor has, each value through
//! libm's scalar `powf`: 3 ms of a 22 ms int8 window, the largest part after the convolutions.
//! Here the power of a positive normal float is `2^(p · log2 x)` in arithmetic the compiler
//! vectorises (built for AVX2 as well, chosen at run time), within 6e-7 of the exact power
//! (`powf` is within 1e-7); any other value (zero, negative, subnormal, infinite, NaN, or a power
//! outside the normal range) goes through `powf`.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_core::ops::math::PowConst;

use super::executor::{on_executor_chunks, share_per_thread};
use super::plan_rewrite::replace_each;

/// Fewest values raised by one task: enough to outweigh handing the task to a thread.
const MIN_TASK: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct ThreadedPow {
    exponent: f32,
}

impl Eq for ThreadedPow {}

impl std::hash::Hash for ThreadedPow {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.exponent.to_bits().hash(state);
    }
}

impl Op for ThreadedPow {
    fn name(&self) -> StaticName {
        "ThreadedPow".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("exponent: {}", self.exponent)])
    }

    op_as_typed_op!();
}

impl EvalOp for ThreadedPow {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let ram = input.try_as_plain_ram()?;
        let values = ram.as_slice::<f32>()?;
        let mut powers = vec![0f32; values.len()];
        let share = share_per_thread(values.len(), MIN_TASK);
        on_executor_chunks(&mut powers, share, values, share, |_, out, values| {
            powers_into(out, values, self.exponent)
        });
        Ok(tvec!(
            Tensor::from_shape(input.shape(), &powers)?.into_tvalue()
        ))
    }
}

impl TypedOp for ThreadedPow {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `out[i] = values[i]^exponent`.
fn powers_into(out: &mut [f32], values: &[f32], exponent: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked above.
        return unsafe { powers_avx2(out, values, exponent) };
    }
    powers(out, values, exponent)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn powers_avx2(out: &mut [f32], values: &[f32], exponent: f32) {
    powers(out, values, exponent)
}

/// The powers of the values [`normal_power`] takes, vectorised, then `powf` for the others.
#[inline(always)]
fn powers(out: &mut [f32], values: &[f32], exponent: f32) {
    let split = SplitExponent::of(exponent);
    for (power, &x) in out.iter_mut().zip(values) {
        *power = normal_power(x, split);
    }
    if out.iter().any(|power| power.is_nan()) {
        for (power, &x) in out
            .iter_mut()
            .zip(values)
            .filter(|(power, _)| power.is_nan())
        {
            *power = x.powf(exponent);
        }
    }
}

/// The exponent `p` and its two halves, `p = high + low`, each with at most 12 significant bits:
/// times a float's binary exponent (at most 8 bits) each product is exact.
#[derive(Clone, Copy)]
struct SplitExponent {
    whole: f32,
    high: f32,
    low: f32,
}

impl SplitExponent {
    fn of(exponent: f32) -> Self {
        let high = f32::from_bits(exponent.to_bits() & 0xffff_f000);
        SplitExponent {
            whole: exponent,
            high,
            low: exponent - high,
        }
    }
}

/// `x^p` for a positive normal `x` whose power is a normal float; NaN for any other.
///
/// `x = m · 2^e` with `m` in [√½, √2); `log2 m` from the series of `atanh((m − 1)/(m + 1))` (its
/// error under 1e-9); `p · log2 x = e · high + (e · low + p · log2 m)`, whose first product is exact,
/// rounded to the integer `k`, and `2^f` of the rest (|f| ≤ ½, so the error of `p · e`, up to 900,
/// never reaches the result) from its Taylor polynomial of degree 7 (error under 1e-8); `2^k` put
/// into the float's exponent bits. Written without branches, so that it vectorises.
#[inline(always)]
fn normal_power(x: f32, p: SplitExponent) -> f32 {
    use std::f32::consts::{LN_2, LOG2_E, SQRT_2};
    // Adding 1.5 · 2²³ rounds a float of magnitude under 2²² to an integer, left in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let bits = x.to_bits();
    let biased_exponent = (bits >> 23) as i32;
    let mantissa = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let above = mantissa > SQRT_2;
    let m = if above { mantissa * 0.5 } else { mantissa };
    let e = (biased_exponent - 127 + above as i32) as f32;
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let series = 1.0 + z * (1.0 / 3.0 + z * (1.0 / 5.0 + z * (1.0 / 7.0 + z * (1.0 / 9.0))));
    let log2_m = s * (2.0 * LOG2_E) * series;
    let high = e * p.high;
    let low = e * p.low + p.whole * log2_m;
    let shifted = (high + low) + ROUND;
    let k = shifted - ROUND;
    let k_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let f = ((high - k) + low) * LN_2;
    let two_to_f = 1.0
        + f * (1.0
            + f * (1.0 / 2.0
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f / 5040.0))))));
    let power = f32::from_bits((two_to_f.to_bits() as i32).wrapping_add(k_bits << 23) as u32);
    // Sign bit clear and a normal exponent; 2^f in [0.7, 1.42] keeps 2^k · 2^f normal for these k.
    let normal = (1..=254).contains(&biased_exponent) & (-125..=127).contains(&k_bits);
    if normal {
        power
    } else {
        f32::NAN
    }
}

/// Replaces every f32 `PowConst` of `model` by [`ThreadedPow`]; returns how many.
pub fn replace_constant_powers(model: &mut TypedModel) -> TractResult<usize> {
    replace_each(model, |model, node| {
        let element_wise = node.op_as::<ElementWiseOp>()?;
        let power = element_wise.0.downcast_ref::<PowConst>()?;
        let is_f32 = model.outlet_fact(node.inputs[0]).ok()?.datum_type == f32::datum_type();
        let keeps_f32 = element_wise.1.is_none_or(|dt| dt == f32::datum_type());
        (is_f32 && keeps_f32).then_some(ThreadedPow {
            exponent: power.exponent,
        })
    })
}

#[cfg(test)]
mod tests {
    use tract_linalg::multithread::{multithread_tract_scope, Executor};
    use tract_onnx::tract_core::ops::math::pow_const;

    use super::*;

    /// The relative error of our powers of `values` against the powers in f64, over the powers that
    /// are normal floats (the others are `powf`'s, below), and how many those were.
    fn worst_relative_error(values: &[f32], exponent: f32) -> (f64, usize) {
        let mut out = vec![0f32; values.len()];
        powers_into(&mut out, values, exponent);
        let normal = f64::from(f32::MIN_POSITIVE)..=f64::from(f32::MAX);
        values
            .iter()
            .zip(&out)
            .map(|(&x, &ours)| (f64::from(x).powf(f64::from(exponent)), ours))
            .filter(|(exact, _)| normal.contains(exact))
            .fold((0.0, 0), |(worst, count), (exact, ours)| {
                (
                    worst.max(((f64::from(ours) - exact) / exact).abs()),
                    count + 1,
                )
            })
    }

    #[test]
    fn powers_are_within_6e_7_of_exact_over_gems_range() {
        // GeM's clamped inputs (from 1e-6) to large activations, at GeM's powers and their inverses.
        let values: Vec<f32> = (0..200_000)
            .map(|i| 1e-6 * 1.00015f32.powi(i))
            .take_while(|&x| x <= 1e6)
            .collect();
        assert!(values.len() > 150_000 && values[values.len() - 1] > 0.99e6);
        for exponent in [1.0, 2.0, 2.3, 3.1, 4.4, 6.48, 0.5, 1.0 / 4.4, 1.0 / 6.48] {
            let (worst, compared) = worst_relative_error(&values, exponent);
            assert!(
                compared > 150_000,
                "p {exponent}: {compared} powers compared"
            );
            assert!(worst < 6e-7, "p {exponent}: {worst:e}");
        }
    }

    #[test]
    fn other_values_get_powf_s_answer() {
        let exponent = 6.5;
        let values = [
            0.0,
            -0.0,
            -2.0,
            1e-40,
            1e-30,
            1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let mut out = vec![0f32; values.len()];
        powers_into(&mut out, &values, exponent);
        for (&x, &ours) in values.iter().zip(&out) {
            let want = x.powf(exponent);
            assert!(
                ours.to_bits() == want.to_bits() || (ours.is_nan() && want.is_nan()),
                "{x}: {ours} against {want}"
            );
        }
    }

    #[test]
    fn the_avx2_build_gives_the_plain_build_s_bits() {
        let values: Vec<f32> = (0..1003).map(|i| (i as f32 + 0.5) * 0.731).collect();
        let (mut plain, mut dispatched) = (vec![0f32; values.len()], vec![0f32; values.len()]);
        powers(&mut plain, &values, 4.37);
        powers_into(&mut dispatched, &values, 4.37);
        assert_eq!(plain, dispatched);
    }

    #[test]
    fn agrees_with_tracts_power_and_two_threads_with_one() {
        // Several tasks' worth, shared unevenly.
        let values: Vec<f32> = (0..3 * (MIN_TASK + 6))
            .map(|i| (i % 997) as f32 / 97.0 + 1e-6)
            .collect();
        let tensor = Tensor::from_shape(&[3, MIN_TASK + 6], &values).unwrap();
        let exponent = 6.4813;
        let tracts = pow_const(exponent)
            .eval(
                &EvalContext::out_of_plan(),
                tvec!(tensor.clone().into_tvalue()),
            )
            .unwrap();
        let ours = ThreadedPow { exponent };
        let run = || {
            ours.eval(
                &EvalContext::out_of_plan(),
                tvec!(tensor.clone().into_tvalue()),
            )
            .unwrap()
        };
        let alone = run();
        let values = |tensor: &TValue| {
            tensor
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec()
        };
        for (ours, tracts) in values(&alone[0]).iter().zip(values(&tracts[0])) {
            assert!(
                (ours - tracts).abs() <= 6e-7 * tracts,
                "{ours} against {tracts}"
            );
        }
        let shared = multithread_tract_scope(Executor::multithread(2), run);
        assert_eq!(shared[0], alone[0]);
    }
}
