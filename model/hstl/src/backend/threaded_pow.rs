//! `x^p` of an f32 tensor for a constant `p`, on the executor's threads, swapped into tract plans in
//! place of tract's `PowConst`.
//!
//! GeM raises whole feature maps to its learned power (p ≈ 6.5) twenty times a window: about 3 ms,
//! a tenth of an int8 window, and tract runs element-wise operators on one thread whatever its
//! executor has. Each value goes through the same `powf` as tract's, so the result is identical.

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
            for (power, &x) in out.iter_mut().zip(values) {
                *power = x.powf(self.exponent);
            }
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

    #[test]
    fn equals_tracts_power_on_one_thread_and_on_two() {
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
        assert_eq!(run()[0], tracts[0]);
        let shared = multithread_tract_scope(Executor::multithread(2), run);
        assert_eq!(shared[0], tracts[0]);
    }
}
