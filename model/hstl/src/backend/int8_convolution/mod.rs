//! int8 3-D convolutions on tract-linalg's integer kernels, recognised in a standard QDQ model.
//!
//! tract 0.23 runs a QDQ convolution (`QuantizeLinear → DequantizeLinear` on the input, int8
//! weights through `DequantizeLinear`) in float with the quantize and dequantize work on top, so an
//! int8 model is slower than the float one. tract-linalg does have int8 × int8 → int32 matrix
//! kernels (AVX2/AVX-512 VNNI on x86, NEON and SDOT on arm64). When a model is loaded, each QDQ
//! convolution of the layout HSTL uses (3 × 3 × 3, padding 1, stride 1, one group) becomes one
//! [`Int8Convolution`]: the input quantized once, an int8 im2col, the integer matrix product, and
//! the int32 sums scaled back to float with one factor per output channel. The products are exact
//! in int32, so the result is the QDQ graph's up to float rounding in its sums.
//!
//! A QDQ convolution of another layout, or one whose input is not quantized symmetrically, is
//! refused with its name rather than run in float behind the integrator's back.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use tract_linalg::mmm::{
    AsInputValue, EagerPackedInput, FusedSpec, MMMInputFormat, MMMInputValue, MatMatMul,
    PackedExoticFact, Query,
};
use tract_linalg::multithread::{current_tract_executor, multithread_tract_scope, Executor};
use tract_linalg::pack::{PackedFormat, PackedI8K4};
use tract_linalg::{MmmDispatch, WeightType};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{self, tensor_proto::DataType, NodeProto, TensorProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_hir::internal::*;

use super::executor::{executor_threads, on_executor_chunks, share_per_thread};

mod fusion;
mod packing;
mod wide;

pub use fusion::{fuse_qdq_convolutions, onnx};
use packing::*;

/// The ONNX operator name the loader gives a fused convolution (never written to a file).
const OP_TYPE: &str = "HstlInt8Convolution3d";
const KERNEL: usize = 3;
const KERNEL_VOLUME: usize = KERNEL * KERNEL * KERNEL;
/// The part of the im2col matrix made at a time: a few hundred kilobytes, to stay in the cache.
const IM2COL_BLOCK_BYTES: usize = 256 * 1024;

/// A 3 × 3 × 3 convolution (padding 1, stride 1) of a float input `[N, C, T, H, W]` with int8
/// weights: the input quantized at one scale, the sums in int32, the output in float.
#[derive(Debug, Clone)]
pub struct Int8Convolution {
    /// `[out_channels, in_channels · 27]`, int8.
    weights: Arc<Tensor>,
    input_scale: f32,
    /// Per output channel: the input scale times the channel's weight scale.
    output_scales: Arc<Vec<f32>>,
    bias: Option<Arc<Vec<f32>>>,
    /// The weights packed for each kernel that ran them, and its packing.
    packed_weights: Arc<Mutex<Vec<PackedWeights>>>,
    /// Zero padding of one frame at each end of the clip (the network's); without it the output
    /// has two frames fewer, as a stream's window of a walk needs.
    time_padding: bool,
}

/// Weights packed for a kernel (its name) and packing (its index among the kernel's).
type PackedWeights = ((String, usize), Arc<Box<dyn MMMInputValue>>);

impl PartialEq for Int8Convolution {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.weights == other.weights
            && self.input_scale.to_bits() == other.input_scale.to_bits()
            && bits(&self.output_scales) == bits(&other.output_scales)
            && self.bias.as_deref().map(|b| bits(b)) == other.bias.as_deref().map(|b| bits(b))
            && self.time_padding == other.time_padding
    }
}

impl Eq for Int8Convolution {}

impl Int8Convolution {
    /// From int8 weights `[out, in, 3, 3, 3]`, their scales (one, or one per output channel), the
    /// input's scale and an optional float bias per output channel.
    pub fn new(
        weights: &Tensor,
        weight_scales: &[f32],
        input_scale: f32,
        bias: Option<Vec<f32>>,
    ) -> TractResult<Self> {
        let shape = weights.shape();
        ensure!(
            weights.datum_type() == i8::datum_type()
                && shape.len() == 5
                && shape[2..].iter().all(|&d| d == KERNEL),
            "int8 convolution weights must be int8 [out, in, 3, 3, 3], got {:?} {shape:?}",
            weights.datum_type()
        );
        let out_channels = shape[0];
        ensure!(
            weight_scales.len() == 1 || weight_scales.len() == out_channels,
            "{} weight scales for {out_channels} output channels",
            weight_scales.len()
        );
        ensure!(
            input_scale.is_finite() && input_scale > 0.0,
            "input scale {input_scale} is not a positive number"
        );
        ensure!(
            bias.as_ref().is_none_or(|b| b.len() == out_channels),
            "bias does not have one value per output channel"
        );
        let output_scales = (0..out_channels)
            .map(|m| input_scale * weight_scales[m.min(weight_scales.len() - 1)])
            .collect();
        let weights = weights
            .clone()
            .into_shape(&[out_channels, shape[1] * KERNEL_VOLUME])?;
        Ok(Int8Convolution {
            weights: Arc::new(weights),
            input_scale,
            output_scales: Arc::new(output_scales),
            bias: bias.map(Arc::new),
            packed_weights: Arc::default(),
            time_padding: true,
        })
    }

    /// The same convolution without padding in time: `T` frames in, `T - 2` out, each the padded
    /// convolution's frame of the same place.
    pub fn unpadded_in_time(mut self) -> Self {
        self.time_padding = false;
        self
    }

    /// Frames out for `frames` in.
    fn output_frames(&self, frames: usize) -> TractResult<usize> {
        if self.time_padding {
            return Ok(frames);
        }
        frames
            .checked_sub(2)
            .filter(|&out| out > 0)
            .with_context(|| format!("a convolution unpadded in time needs 3 frames, got {frames}"))
    }

    fn out_channels(&self) -> usize {
        self.weights.shape()[0]
    }

    fn in_channels(&self) -> usize {
        self.weights.shape()[1] / KERNEL_VOLUME
    }

    /// One item of the batch: `input` `[C, T, H, W]` into `output` `[M, T, H, W]` (`T - 2` frames
    /// unpadded in time), on the int8 kernel tract-linalg picks for this CPU.
    fn convolve(&self, input: &[f32], volume: [usize; 3], output: &mut [f32]) -> TractResult<()> {
        let (m, k) = (self.out_channels(), self.weights.shape()[1]);
        let n = self.output_frames(volume[0])? * volume[1] * volume[2];
        let (mmm, packing) = match fastest_kernel() {
            Some(fastest) => fastest.clone(),
            None => {
                let (mmm, packing, _) = MmmDispatch::native()
                    .pick(&int8_query(m, k, n))
                    .context("tract-linalg has no int8 matrix kernel for this CPU")?;
                (mmm, packing)
            }
        };
        self.convolve_on(&*mmm, packing, input, volume, output)
    }

    /// [`Self::convolve`] on kernel `mmm` with its packing `packing`.
    ///
    /// The clip is quantized once; then each block of output columns is made whole on one thread:
    /// its im2col columns packed, multiplied by the weights, scaled back to float. A block's
    /// packed columns and sums stay in that core's cache from the moment they are made to the
    /// moment they are used; made for the whole clip first, they went out to memory and back,
    /// which is what kept two threads from halving the time.
    fn convolve_on(
        &self,
        mmm: &dyn MatMatMul,
        packing: usize,
        input: &[f32],
        volume: [usize; 3],
        output: &mut [f32],
    ) -> TractResult<()> {
        let (m, k) = (self.out_channels(), self.weights.shape()[1]);
        let frame = volume[1] * volume[2];
        let n = self.output_frames(volume[0])? * frame;
        // Unpadded in time, output column j is the padded convolution's column j of the next frame.
        let skipped = if self.time_padding { 0 } else { frame };
        let mut quantized = vec![0u8; input.len()];
        let share = share_per_thread(input.len(), MIN_TASK);
        on_executor_chunks(&mut quantized, share, input, share, |_, out, values| {
            wide::quantize_into(out, values, self.input_scale)
        });
        let weights = self.packed_weights(mmm, packing)?;
        let columns = ColumnPacking::of(&*mmm.packings()[packing].1, k);
        let block_columns = columns.block_columns(k, n);
        // Each block's part of every output channel: the channels' rows cut at the block edges.
        let mut blocks: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(block_columns))
            .map(|_| Vec::with_capacity(m))
            .collect();
        for row in output.chunks_mut(n) {
            for (block, part) in blocks.iter_mut().zip(row.chunks_mut(block_columns)) {
                block.push(part);
            }
        }
        let run_block = |scratch: &mut Vec<u8>, (index, rows): (usize, Vec<&mut [f32]>)| {
            let first = skipped + index * block_columns;
            let width = rows.first().map_or(0, |row| row.len());
            let packed = columns.pack(&quantized, volume, first..first + width, k, scratch)?;
            let sums = int8_sums(mmm, packing, &**weights, &*packed, m, width)?;
            let sums = sums.try_as_plain_ram()?.as_slice::<i32>()?;
            for (channel, (row, acc)) in rows.into_iter().zip(sums.chunks(width)).enumerate() {
                let scale = self.output_scales[channel];
                let bias = self.bias.as_ref().map_or(0.0, |b| b[channel]);
                wide::rescale_into(row, acc, scale, bias);
            }
            TractResult::Ok(())
        };
        // Each thread makes its blocks' columns in one buffer of its own: a fresh one per block
        // would be mapped and faulted in anew every time.
        let scratch = || vec![0u8; k * block_columns];
        match current_tract_executor() {
            Executor::MultiThread(pool) if blocks.len() > 1 => pool.install(|| {
                blocks
                    .into_par_iter()
                    .enumerate()
                    .try_for_each_init(scratch, run_block)
            }),
            _ => {
                let mut block = scratch();
                blocks
                    .into_iter()
                    .enumerate()
                    .try_for_each(|item| run_block(&mut block, item))
            }
        }
    }

    /// The weights packed for kernel `mmm` and its packing `packing`: packed on first use, then
    /// kept, since the weights never change and the kernel changes only with the clip's length.
    fn packed_weights(
        &self,
        mmm: &dyn MatMatMul,
        packing: usize,
    ) -> TractResult<Arc<Box<dyn MMMInputValue>>> {
        let mut packed = self
            .packed_weights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (mmm.name().to_string(), packing);
        if let Some((_, weights)) = packed.iter().find(|(k, _)| *k == key) {
            return Ok(weights.clone());
        }
        let weights = Arc::new(mmm.packings()[packing].0.prepare_one(&self.weights, 1, 0)?);
        packed.push((key, weights.clone()));
        Ok(weights)
    }
}

/// An int8 kernel and the index of its packing.
type Kernel = (Box<dyn MatMatMul>, usize);

/// The int8 kernel that runs HSTL's convolutions fastest on this CPU, measured once per process:
/// `None` when no kernel of this CPU's instruction set is suitable (tract's own pick is used).
///
/// tract-linalg ranks its kernels by rules about CPUs: on AVX-512 VNNI it takes the 8 × 8 ymm tile
/// unless it probes two 512-bit FMA ports. The project's AMD EPYC VM probes one, yet the 16 × 16
/// zmm tile runs a window 16 % faster there; an Intel core may rank them the other way, and an ARM
/// board has kernels of its own. Every kernel gives the same int32 sums, so the choice is speed
/// alone, and a few milliseconds of measurement at the first window settle it on the CPU at hand.
pub(crate) fn fastest_kernel() -> Option<&'static Kernel> {
    static FASTEST: OnceLock<Option<Kernel>> = OnceLock::new();
    FASTEST
        .get_or_init(|| {
            let measured = measure_kernels().unwrap_or_else(|e| {
                log::warn!("int8 kernels not measured ({e:#}); tract-linalg's pick is used");
                Vec::new()
            });
            let report: Vec<String> = measured
                .iter()
                .map(|((mmm, _), time)| format!("{} {time:.2?}", mmm.name()))
                .collect();
            let fastest = measured.into_iter().next().map(|(kernel, _)| kernel);
            if let Some((mmm, _)) = &fastest {
                log::info!(
                    "int8 kernel {} (a probe convolution: {})",
                    mmm.name(),
                    report.join(", ")
                );
            }
            fastest
        })
        .as_ref()
}

/// The shape of the probe convolution: a middle layer of the compact network (32 → 64 channels)
/// on 8 frames of 16 × 16.
const PROBE_CHANNELS: [usize; 2] = [32, 64];
const PROBE_VOLUME: [usize; 3] = [8, 16, 16];
/// Timed runs of each kernel that was within [`PROBE_CONTENDER`] of the fastest at its first run.
const PROBE_ROUNDS: usize = 3;
const PROBE_CONTENDER: f64 = 1.5;

/// This CPU's int8 kernels (those of its instruction set: the generic ones are always slower)
/// timed on one probe convolution on the calling thread, fastest first: one run each, then
/// [`PROBE_ROUNDS`] interleaved rounds of the contenders, the least time of each.
fn measure_kernels() -> TractResult<Vec<(Kernel, std::time::Duration)>> {
    let [in_channels, out_channels] = PROBE_CHANNELS;
    let (m, k) = (out_channels, in_channels * KERNEL_VOLUME);
    let n = PROBE_VOLUME.iter().product::<usize>();
    let weights: Vec<i8> = (0..m * k).map(|i| (i * 37 % 255) as u8 as i8).collect();
    let weights = Tensor::from_shape(&[out_channels, in_channels, 3, 3, 3], &weights)?;
    let probe = Int8Convolution::new(&weights, &[0.01], 0.02, None)?;
    let input: Vec<f32> = (0..in_channels * n)
        .map(|i| (i * 53 % 101) as f32 / 25.0 - 2.0)
        .collect();
    let mut output = vec![0f32; m * n];
    let mut time = |(mmm, packing): &Kernel| {
        let started = std::time::Instant::now();
        multithread_tract_scope(Executor::SingleThread, || {
            probe.convolve_on(&**mmm, *packing, &input, PROBE_VOLUME, &mut output)
        })
        .map(|()| started.elapsed())
    };
    let mut measured = Vec::new();
    for (mmm, packing, _) in MmmDispatch::native()
        .suitable(&int8_query(m, k, n))
        .into_iter()
        .filter(|(mmm, _, extractor)| extractor.is_none() && mmm.arch().is_some())
    {
        let kernel = (mmm, packing);
        let first = time(&kernel)?;
        measured.push((kernel, first));
    }
    let Some(best) = measured.iter().map(|(_, time)| *time).min() else {
        return Ok(measured);
    };
    measured.retain(|(_, time)| time.as_secs_f64() <= PROBE_CONTENDER * best.as_secs_f64());
    for _ in 0..PROBE_ROUNDS {
        for (kernel, least) in &mut measured {
            *least = (*least).min(time(kernel)?);
        }
    }
    measured.sort_by_key(|(_, time)| *time);
    Ok(measured)
}

/// Fewest values quantized or rescaled by one task: enough to outweigh handing the task to a thread.
const MIN_TASK: usize = 16 * 1024;

/// What the convolution asks of tract-linalg: `[m, k]` int8 weights times `[k, n]` int8 columns,
/// summed and stored in int32.
fn int8_query(m: usize, k: usize, n: usize) -> Query {
    Query {
        weight: WeightType::from(i8::datum_type()),
        activation: i8::datum_type(),
        accumulators: tvec!(i32::datum_type()),
        store: Some(i32::datum_type()),
        allow_extractor: false,
        m: Some(m),
        k: Some(k),
        n: Some(n),
    }
}

/// The packed `[m, k]` weights `weights` times the packed `[k, n]` columns `columns`, in int32
/// `[m, n]`, on the kernel `mmm` with its packing `packing`, on the calling thread: the blocks are
/// what the executor's threads share.
fn int8_sums(
    mmm: &dyn MatMatMul,
    packing: usize,
    weights: &dyn MMMInputValue,
    columns: &dyn MMMInputValue,
    m: usize,
    n: usize,
) -> TractResult<Tensor> {
    // SAFETY: the product below stores every element of `[m, n]`.
    let mut sums = unsafe { Tensor::uninitialized::<i32>(&[m, n])? };
    // SAFETY: `weights` is [m, k] and `columns` is [k, n], packed in the kernel's own packing
    // `packing`, and `sums` is a contiguous [m, n] int32 tensor viewed with m on axis 0 and n on
    // axis 1, as the kernel's `c_view` describes; all three outlive the call.
    multithread_tract_scope(Executor::SingleThread, || unsafe {
        mmm.run(
            m,
            n,
            &[
                FusedSpec::AddMatMul {
                    a: AsInputValue::Borrowed(weights),
                    b: AsInputValue::Borrowed(columns),
                    packing,
                },
                FusedSpec::Store(mmm.c_view(Some(0), Some(1)).wrap(&sums.view_mut())),
            ],
        )
    })?;
    Ok(sums)
}

impl Op for Int8Convolution {
    fn name(&self) -> StaticName {
        "Int8Convolution3d".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels, input scale {}",
            self.in_channels(),
            self.out_channels(),
            self.input_scale
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Int8Convolution {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let shape = input.shape();
        ensure!(
            shape.len() == 5 && shape[1] == self.in_channels(),
            "int8 convolution expects [N, {}, T, H, W], got {shape:?}",
            self.in_channels()
        );
        let (batch, volume) = (shape[0], [shape[2], shape[3], shape[4]]);
        let frames_out = self.output_frames(shape[2])?;
        let n = frames_out * shape[3] * shape[4];
        let ram = input.try_as_plain_ram()?;
        let data = ram.as_slice::<f32>()?;
        let output_shape = [batch, self.out_channels(), frames_out, shape[3], shape[4]];
        // SAFETY: `convolve` writes every output value of every item.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&output_shape)? };
        let mut ram = output.try_as_plain_ram_mut()?;
        for (item, out) in ram
            .as_slice_mut::<f32>()?
            .chunks_mut(self.out_channels() * n)
            .enumerate()
        {
            let per_item = self.in_channels() * volume.iter().product::<usize>();
            self.convolve(&data[item * per_item..][..per_item], volume, out)?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Int8Convolution {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.to_tvec();
        ensure!(
            shape.len() == 5,
            "int8 convolution input must be [N, C, T, H, W]"
        );
        shape[1] = self.out_channels().to_dim();
        if !self.time_padding {
            shape[2] = shape[2].clone() - 2;
        }
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::quantize_linear;

    /// The int32 sums of the convolution of int8 `input` `[C, T, H, W]` with int8 `weights`
    /// `[M, C, 3, 3, 3]` (padding 1), in plain loops.
    fn reference_sums(input: &[i8], [c, t, h, w]: [usize; 4], weights: &[i8]) -> Vec<i32> {
        let m = weights.len() / (c * KERNEL_VOLUME);
        let mut sums = vec![0i32; m * t * h * w];
        for o in 0..m {
            for (ot, oh, ow) in positions(t, h, w) {
                let mut sum = 0i32;
                for ci in 0..c {
                    for offset in 0..KERNEL_VOLUME {
                        let (it, ih, iw) = (ot + offset / 9, oh + offset / 3 % 3, ow + offset % 3);
                        if it == 0 || ih == 0 || iw == 0 || it > t || ih > h || iw > w {
                            continue;
                        }
                        let x = input[((ci * t + it - 1) * h + ih - 1) * w + iw - 1] as i32;
                        sum += x * weights[(o * c + ci) * KERNEL_VOLUME + offset] as i32;
                    }
                }
                sums[((o * t + ot) * h + oh) * w + ow] = sum;
            }
        }
        sums
    }

    /// The op's output on `input`, out of any plan.
    fn run(op: &Int8Convolution, input: Tensor) -> Vec<f32> {
        let output = op
            .eval(&EvalContext::out_of_plan(), tvec!(input.into_tvalue()))
            .unwrap();
        output[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    fn positions(t: usize, h: usize, w: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        (0..t).flat_map(move |a| (0..h).flat_map(move |b| (0..w).map(move |c| (a, b, c))))
    }

    #[test]
    fn matches_the_dequantized_convolution_with_padding_at_every_edge() {
        let (c, t, h, w, m) = (3, 4, 5, 6, 7);
        let input: Vec<f32> = (0..c * t * h * w)
            .map(|i| ((i * 53) % 97) as f32 / 97.0 * 2.0 - 1.0)
            .collect();
        let weights: Vec<i8> = (0..m * c * KERNEL_VOLUME)
            .map(|i| ((i * 31) % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect();
        let scales: Vec<f32> = (0..m).map(|o| 0.01 * (o + 1) as f32).collect();
        let input_scale = 1.0 / 127.0;
        let op = Int8Convolution::new(
            &Tensor::from_shape(&[m, c, 3, 3, 3], &weights).unwrap(),
            &scales,
            input_scale,
            None,
        )
        .unwrap();
        let got = run(&op, Tensor::from_shape(&[1, c, t, h, w], &input).unwrap());
        // What the QDQ graph computes: the dequantized input times the dequantized weights.
        let quantized: Vec<i8> = input
            .iter()
            .map(|&v| quantize_linear(v, input_scale))
            .collect();
        let n = t * h * w;
        let want: Vec<f32> = reference_sums(&quantized, [c, t, h, w], &weights)
            .iter()
            .enumerate()
            .map(|(i, &sum)| (sum as f64 * input_scale as f64 * scales[i / n] as f64) as f32)
            .collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn unpadded_in_time_it_gives_the_padded_convolutions_inner_frames() {
        // Several blocks of columns, so that the skipped first frame shifts every block.
        let (c, t, h, w, m) = (4, 7, 24, 30, 5);
        let input: Vec<f32> = (0..c * t * h * w)
            .map(|i| ((i * 29) % 101) as f32 / 101.0 * 2.0 - 1.0)
            .collect();
        let weights: Vec<i8> = (0..m * c * KERNEL_VOLUME)
            .map(|i| ((i * 13) % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect();
        let padded = Int8Convolution::new(
            &Tensor::from_shape(&[m, c, 3, 3, 3], &weights).unwrap(),
            &[0.01],
            1.0 / 127.0,
            None,
        )
        .unwrap();
        let input = Tensor::from_shape(&[1, c, t, h, w], &input).unwrap();
        let whole = run(&padded, input.clone());
        let inner = run(&padded.clone().unpadded_in_time(), input);
        let frame = h * w;
        let want: Vec<f32> = whole
            .chunks(t * frame)
            .flat_map(|channel| channel[frame..(t - 1) * frame].to_vec())
            .collect();
        assert_eq!(inner, want);
    }

    #[test]
    fn every_int8_kernel_of_this_cpu_sums_the_packed_columns_exactly() {
        // Blocks of columns that end mid-frame and mid-line, and a clip of several blocks. Input
        // and weight scales of 1 make every output value its int32 sum, exactly.
        let (c, t, h, w, m) = (2, 20, 20, 30, 9);
        assert!(c * KERNEL_VOLUME * t * h * w > 2 * IM2COL_BLOCK_BYTES);
        let input: Vec<i8> = (0..c * t * h * w)
            .map(|i| ((i * 37) % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect();
        let values: Vec<f32> = input.iter().map(|&v| f32::from(v)).collect();
        let weights: Vec<i8> = (0..m * c * KERNEL_VOLUME)
            .map(|i| ((i * 11) % 255) as i32 - 127)
            .map(|v| v as i8)
            .collect();
        let (k, n) = (c * KERNEL_VOLUME, t * h * w);
        let want: Vec<f32> = reference_sums(&input, [c, t, h, w], &weights)
            .iter()
            .map(|&sum| sum as f32)
            .collect();
        let op = Int8Convolution::new(
            &Tensor::from_shape(&[m, c, 3, 3, 3], &weights).unwrap(),
            &[1.0],
            1.0,
            None,
        )
        .unwrap();
        let suitable = MmmDispatch::native().suitable(&int8_query(m, k, n));
        assert!(!suitable.is_empty());
        for (mmm, packing, _) in suitable {
            let mut got = vec![f32::NAN; m * n];
            op.convolve_on(&*mmm, packing, &values, [t, h, w], &mut got)
                .unwrap();
            assert_eq!(got, want, "{} packing {packing}", mmm.name());
        }
    }

    #[test]
    fn this_cpus_kernels_are_measured_fastest_first() {
        let measured = measure_kernels().unwrap();
        assert!(
            !measured.is_empty(),
            "no int8 kernel of this CPU's instruction set"
        );
        assert!(measured.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        let (fastest, _) = fastest_kernel().unwrap();
        assert!(fastest.arch().is_some(), "{}", fastest.name());
    }

    #[test]
    fn the_executors_threads_pack_the_same_columns() {
        use tract_linalg::multithread::multithread_tract_scope;
        // Four input channels make a 108-row im2col matrix: a clip of 3,200 columns spans two
        // blocks, and two threads pack one each.
        let (c, t, h, w, m) = (4, 8, 20, 20, 5);
        let input: Vec<f32> = (0..c * t * h * w)
            .map(|i| ((i * 29) % 89) as f32 / 89.0 * 2.0 - 1.0)
            .collect();
        let weights: Vec<i8> = (0..m * c * KERNEL_VOLUME)
            .map(|i| (((i * 17) % 251) as i32 - 125) as i8)
            .collect();
        let op = Int8Convolution::new(
            &Tensor::from_shape(&[m, c, 3, 3, 3], &weights).unwrap(),
            &[0.02],
            1.0 / 127.0,
            None,
        )
        .unwrap();
        assert!(t * h * w > IM2COL_BLOCK_BYTES / (c * KERNEL_VOLUME));
        let clip = || Tensor::from_shape(&[1, c, t, h, w], &input).unwrap();
        let alone = run(&op, clip());
        let shared = multithread_tract_scope(Executor::multithread(2), || run(&op, clip()));
        assert_eq!(alone, shared);
    }

    #[test]
    fn the_panel_widths_of_the_common_kernels_pack_as_element_by_element() {
        // Rows that do not fill the last group of four, and a last panel short of columns.
        let (k, width): (usize, usize) = (27, 45);
        let block: Vec<u8> = (0..k * width).map(|i| (i * 7 % 251) as u8).collect();
        for r in [8, 16] {
            let panel_bytes = k.div_ceil(4) * 4 * r + 64;
            let panels = width.div_ceil(r);
            let mut fast = vec![0xa5; panels * panel_bytes];
            pack_panels(&block, width, k, r, true, panel_bytes, &mut fast);
            let mut plain = vec![0; panels * panel_bytes];
            pack_k4_any(&block, width, k, r, panel_bytes, &mut plain);
            assert_eq!(fast, plain, "{r} columns a panel");
        }
    }

    #[test]
    fn bias_is_added_per_output_channel() {
        let weights = Tensor::zero::<i8>(&[2, 1, 3, 3, 3]).unwrap();
        let op = Int8Convolution::new(&weights, &[1.0], 0.5, Some(vec![1.5, -2.0])).unwrap();
        let out = run(&op, Tensor::zero::<f32>(&[1, 1, 2, 2, 2]).unwrap());
        assert_eq!(out, [[1.5; 8], [-2.0; 8]].concat());
    }
}
