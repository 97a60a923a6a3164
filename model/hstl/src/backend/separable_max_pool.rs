//! MaxPool of f32 tensors, channels before the spatial axes, swapped into tract plans in place of
//! tract's generic pooling.
//!
//! HSTL pools along time in its FTA blocks (windows of 3 and 5 frames, stride 3) and 2×2 over the
//! frame. tract's pooling visits the window of every output element through an offset table:
//! about 12 % of a single-threaded window of the compact variant, more than every other float
//! layer together. A maximum over a box is the maximum over each of its axes in turn, and along one
//! axis, the axes after it being contiguous, the pool is an elementwise maximum of whole slices,
//! which the compiler vectorises. Maxima are exact: the result equals tract's.

use std::borrow::Cow;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{MaxPool, PoolSpec};

use super::plan_rewrite::replace_each;

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct SeparableMaxPool {
    pool_spec: PoolSpec,
}

/// One spatial axis of a pool: window length, stride, padding before the first element (ignored
/// positions) and output length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AxisWindow {
    kernel: usize,
    stride: usize,
    pad_before: usize,
    output: usize,
}

impl AxisWindow {
    /// The input range under output position `index`, padding excluded.
    fn span(&self, index: usize, len: usize) -> std::ops::Range<usize> {
        let start = (index * self.stride) as isize - self.pad_before as isize;
        let from = start.clamp(0, len as isize) as usize;
        let to = (start + self.kernel as isize).clamp(from as isize, len as isize) as usize;
        from..to
    }

    fn is_identity(&self, len: usize) -> bool {
        self.kernel == 1 && self.stride == 1 && self.pad_before == 0 && self.output == len
    }
}

impl SeparableMaxPool {
    /// The first spatial axis of the tensor (after N, if there is one, and C).
    fn first_spatial_axis(&self) -> usize {
        usize::from(self.pool_spec.data_format.has_n()) + 1
    }

    /// The windows along each spatial axis of an input of `shape`, or `None` when some output
    /// position would see padding only.
    fn windows(&self, shape: &[usize]) -> Option<Vec<AxisWindow>> {
        let spatial = &shape[self.first_spatial_axis()..];
        let computed = self.pool_spec.computed_padding(spatial);
        let windows: Vec<AxisWindow> = computed
            .iter()
            .enumerate()
            .map(|(axis, dim)| AxisWindow {
                kernel: self.pool_spec.kernel_shape[axis],
                stride: self.pool_spec.stride(axis),
                pad_before: dim.pad_before,
                output: dim.convoluted,
            })
            .collect();
        let all_see_input = windows.iter().zip(spatial).all(|(window, &len)| {
            (0..window.output).all(|index| !window.span(index, len).is_empty())
        });
        all_see_input.then_some(windows)
    }
}

impl Op for SeparableMaxPool {
    fn name(&self) -> StaticName {
        "SeparableMaxPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self.pool_spec.info())
    }

    op_as_typed_op!();
}

impl EvalOp for SeparableMaxPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let mut shape: TVec<usize> = input.shape().into();
        let windows = self
            .windows(&shape)
            .context("a max-pool window lies wholly in the padding")?;
        let ram = input.try_as_plain_ram()?;
        let mut data = Cow::Borrowed(ram.as_slice::<f32>()?);
        for (index, window) in windows.iter().enumerate() {
            let axis = self.first_spatial_axis() + index;
            if window.is_identity(shape[axis]) {
                continue;
            }
            let outer = shape[..axis].iter().product();
            let inner = shape[axis + 1..].iter().product();
            data = Cow::Owned(pool_axis(&data, [outer, shape[axis], inner], window));
            shape[axis] = window.output;
        }
        Ok(tvec!(Tensor::from_shape(&shape, &data)?.into_tvalue()))
    }
}

/// The maximum over `window` along the middle axis of `input` seen as `[outer, len, inner]`.
fn pool_axis(input: &[f32], [outer, len, inner]: [usize; 3], window: &AxisWindow) -> Vec<f32> {
    let mut out = Vec::with_capacity(outer * window.output * inner);
    for block in input.chunks_exact(len * inner).take(outer) {
        for index in 0..window.output {
            let span = window.span(index, len);
            let start = out.len();
            out.extend_from_slice(&block[span.start * inner..][..inner]);
            let acc = &mut out[start..];
            for slice in block[(span.start + 1) * inner..span.end * inner].chunks_exact(inner) {
                for (a, &v) in acc.iter_mut().zip(slice) {
                    *a = a.max(v);
                }
            }
        }
    }
    out
}

impl TypedOp for SeparableMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.pool_spec.output_facts(inputs)
    }

    as_op!();
}

/// Replaces every f32 `MaxPool` of `model` that has channels before its spatial axes, no
/// dilation, no index output, a known input shape and no window wholly in the padding by
/// [`SeparableMaxPool`]; returns how many.
pub fn replace_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    replace_each(model, |model, node| {
        let pool = node.op_as::<MaxPool>()?;
        let fact = model.outlet_fact(node.inputs[0]).ok()?;
        let shape: Vec<usize> = fact
            .shape
            .iter()
            .map(|d| d.to_usize().ok())
            .collect::<Option<_>>()?;
        let spec = &pool.pool_spec;
        let supported = fact.datum_type == f32::datum_type()
            && pool.with_index_outputs.is_none()
            && !spec.data_format.c_is_last()
            && spec.dilations().iter().all(|&d| d == 1);
        let op = SeparableMaxPool {
            pool_spec: spec.clone(),
        };
        (supported && op.windows(&shape).is_some()).then_some(op)
    })
}

#[cfg(test)]
mod tests {
    use tract_onnx::tract_core::ops::cnn::PaddingSpec;
    use tract_onnx::tract_core::ops::nn::DataFormat;

    use super::*;

    fn spec(kernel: [usize; 3], strides: [usize; 3], padding: PaddingSpec) -> PoolSpec {
        PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: kernel.iter().copied().collect(),
            padding,
            dilations: None,
            strides: Some(strides.iter().copied().collect()),
            input_channels: 3,
            output_channels: 3,
        }
    }

    fn eval(op: &dyn EvalOp, input: &Tensor) -> Tensor {
        op.eval(
            &EvalContext::out_of_plan(),
            tvec!(input.clone().into_tvalue()),
        )
        .unwrap()
        .remove(0)
        .into_tensor()
    }

    #[test]
    fn equals_tracts_pooling_on_hstls_windows_and_odd_clip_lengths() {
        let specs = [
            spec([3, 1, 1], [3, 1, 1], PaddingSpec::Valid),
            spec(
                [5, 1, 1],
                [3, 1, 1],
                PaddingSpec::ExplicitOnnxPool(tvec!(1, 0, 0), tvec!(1, 0, 0), false),
            ),
            spec([1, 2, 2], [1, 2, 2], PaddingSpec::Valid),
            spec(
                [3, 3, 3],
                [2, 1, 2],
                PaddingSpec::Explicit(tvec!(1, 1, 0), tvec!(1, 1, 2)),
            ),
        ];
        for frames in [3, 7, 8, 30] {
            let shape = [2, 3, frames, 5, 4];
            let values: Vec<f32> = (0..shape.iter().product::<usize>())
                .map(|i| ((i * 7919) % 1009) as f32 - 500.0)
                .collect();
            let input = Tensor::from_shape(&shape, &values).unwrap();
            for pool_spec in &specs {
                let tracts = MaxPool::new(pool_spec.clone(), None);
                let ours = SeparableMaxPool {
                    pool_spec: pool_spec.clone(),
                };
                assert_eq!(
                    eval(&ours, &input),
                    eval(&tracts, &input),
                    "{pool_spec:?} on {frames} frames"
                );
            }
        }
    }

    #[test]
    fn a_window_wholly_in_the_padding_is_left_to_tract() {
        let op = SeparableMaxPool {
            pool_spec: spec(
                [1, 1, 1],
                [1, 1, 1],
                PaddingSpec::Explicit(tvec!(1, 0, 0), tvec!(0, 0, 0)),
            ),
        };
        assert!(op.windows(&[1, 3, 4, 2, 2]).is_none());
        let reaching = SeparableMaxPool {
            pool_spec: spec(
                [2, 1, 1],
                [1, 1, 1],
                PaddingSpec::Explicit(tvec!(1, 0, 0), tvec!(0, 0, 0)),
            ),
        };
        assert!(reaching.windows(&[1, 3, 4, 2, 2]).is_some());
    }
}
