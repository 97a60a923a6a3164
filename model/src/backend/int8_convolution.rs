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
use std::sync::{Arc, Mutex};

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
use crate::precision::quantize_linear;

/// The ONNX operator name the loader gives a fused convolution (never written to a file).
const OP_TYPE: &str = "HstlInt8Convolution3d";
const KERNEL: usize = 3;
const KERNEL_VOLUME: usize = KERNEL * KERNEL * KERNEL;
/// The part of the im2col matrix made at a time: a few hundred kilobytes, to stay in the cache.
const IM2COL_BLOCK_BYTES: usize = 256 * 1024;

/// tract's ONNX front end, able to read the fused convolutions [`fuse_qdq_convolutions`] writes.
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert(OP_TYPE, parse_fused_convolution);
    onnx
}

/// Replaces each QDQ convolution of `model` by one fused int8 convolution; returns how many.
/// A model without QDQ convolutions is left as it is.
pub fn fuse_qdq_convolutions(model: &mut pb::ModelProto) -> TractResult<usize> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(0);
    };
    let initializers: HashMap<String, TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let producers: HashMap<String, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(ix, node)| node.output.iter().map(move |o| (o.clone(), ix)))
        .collect();
    let mut fused = Vec::new();
    for (ix, node) in graph.node.iter().enumerate() {
        if node.op_type != "Conv" {
            continue;
        }
        let producer = |input: Option<&String>| {
            input
                .and_then(|name| producers.get(name))
                .map(|&p| &graph.node[p])
                .filter(|p| p.op_type == "DequantizeLinear")
        };
        let (input, weights) = (producer(node.input.first()), producer(node.input.get(1)));
        if input.is_none() && weights.is_none() {
            continue;
        }
        let name = &node.name;
        let (Some(input), Some(weights)) = (input, weights) else {
            bail!(
                "convolution {name}: only its {} is quantized; int8 convolutions need both the \
                 input and the weights in QDQ form",
                if input.is_some() { "input" } else { "weights" }
            );
        };
        check_geometry(node)?;
        let x_scale = activation_scale(name, input, &graph.node, &producers, &initializers)?;
        let quantize = &graph.node[producers[&input.input[0]]];
        let weight_inputs = weight_inputs(name, weights, &initializers)?;
        let mut inputs = vec![quantize.input[0].clone()];
        inputs.extend(weight_inputs);
        inputs.push(x_scale);
        inputs.extend(node.input.get(2).cloned());
        fused.push((ix, inputs));
    }
    let count = fused.len();
    for (ix, inputs) in fused {
        let node = &mut graph.node[ix];
        node.op_type = OP_TYPE.to_string();
        node.domain.clear();
        node.attribute.clear();
        node.input = inputs;
    }
    remove_unread_qdq_nodes(graph);
    Ok(count)
}

/// The layout [`Int8Convolution`] computes: 3 × 3 × 3, padding 1, stride 1, dilation 1, one group.
fn check_geometry(node: &NodeProto) -> TractResult<()> {
    let name = &node.name;
    for attribute in &node.attribute {
        let ints = &attribute.ints;
        let fits = match attribute.name.as_str() {
            "kernel_shape" => ints.iter().all(|&k| k == KERNEL as i64) && ints.len() == 3,
            "pads" => ints.iter().all(|&p| p == 1) && ints.len() == 6,
            "strides" | "dilations" => ints.iter().all(|&s| s == 1),
            "group" => attribute.i == 1,
            "auto_pad" => attribute.s.is_empty() || attribute.s == b"NOTSET",
            _ => false,
        };
        ensure!(
            fits,
            "convolution {name}: int8 runs 3 x 3 x 3 convolutions with padding 1, stride 1 and one \
             group; its {} is {:?}",
            attribute.name,
            if attribute.ints.is_empty() {
                vec![attribute.i]
            } else {
                attribute.ints.clone()
            }
        );
    }
    ensure!(
        node.attribute.iter().any(|a| a.name == "pads"),
        "convolution {name}: int8 runs convolutions padded by 1; it has no padding"
    );
    Ok(())
}

/// The name of the input's scale, after checking that `dequantize` reads a symmetric int8
/// `QuantizeLinear` of the same scale.
fn activation_scale(
    name: &str,
    dequantize: &NodeProto,
    nodes: &[NodeProto],
    producers: &HashMap<String, usize>,
    initializers: &HashMap<String, TensorProto>,
) -> TractResult<String> {
    let quantize = dequantize
        .input
        .first()
        .and_then(|i| producers.get(i))
        .map(|&p| &nodes[p])
        .filter(|q| q.op_type == "QuantizeLinear")
        .with_context(|| {
            format!("convolution {name}: its input is dequantized but not quantized in the graph")
        })?;
    let scale_of = |node: &NodeProto| -> TractResult<f32> {
        let scale = constant(initializers, node.input.get(1))
            .with_context(|| format!("convolution {name}: the input scale is not a constant"))?;
        ensure!(
            scale.len() == 1,
            "convolution {name}: its input has {} scales; int8 needs one per tensor",
            scale.len()
        );
        scale.cast_to_scalar::<f32>()
    };
    let scale = scale_of(quantize)?;
    ensure!(
        scale_of(dequantize)? == scale && scale.is_finite() && scale > 0.0,
        "convolution {name}: its input is quantized at {scale} and dequantized at another scale"
    );
    for node in [quantize, dequantize] {
        symmetric_int8(name, "input", initializers, node.input.get(2))?;
    }
    Ok(quantize.input[1].clone())
}

/// `[int8 weights, per-channel scales]` of a `DequantizeLinear` over constant int8 weights.
fn weight_inputs(
    name: &str,
    dequantize: &NodeProto,
    initializers: &HashMap<String, TensorProto>,
) -> TractResult<[String; 2]> {
    let weights = initializers
        .get(&dequantize.input[0])
        .with_context(|| format!("convolution {name}: its int8 weights are not a constant"))?;
    ensure!(
        weights.data_type == DataType::Int8 as i32,
        "convolution {name}: its weights are stored as {:?}, not int8",
        DataType::try_from(weights.data_type).map_err(|_| weights.data_type)
    );
    ensure!(
        weights.dims.len() == 5 && weights.dims[2..].iter().all(|&d| d == KERNEL as i64),
        "convolution {name}: weights of shape {:?} are not a 3 x 3 x 3 kernel",
        weights.dims
    );
    let scales = constant(initializers, dequantize.input.get(1))
        .with_context(|| format!("convolution {name}: its weight scales are not a constant"))?;
    let axis = dequantize
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map_or(1, |a| a.i);
    ensure!(
        scales.len() == 1 || (scales.len() as i64 == weights.dims[0] && axis == 0),
        "convolution {name}: {} weight scales along axis {axis}; int8 needs one scale, or one per \
         output channel (axis 0)",
        scales.len()
    );
    symmetric_int8(name, "weights", initializers, dequantize.input.get(2))?;
    Ok([dequantize.input[0].clone(), dequantize.input[1].clone()])
}

/// Refuses a zero point that is not int8 zero (absent means uint8 zero in ONNX).
fn symmetric_int8(
    name: &str,
    what: &str,
    initializers: &HashMap<String, TensorProto>,
    zero_point: Option<&String>,
) -> TractResult<()> {
    let proto = zero_point
        .filter(|z| !z.is_empty())
        .and_then(|z| initializers.get(z))
        .with_context(|| {
            format!(
                "convolution {name}: its {what} have no int8 zero point (uint8 is not supported)"
            )
        })?;
    ensure!(
        proto.data_type == DataType::Int8 as i32,
        "convolution {name}: its {what} are quantized to {:?}; int8 convolutions need int8",
        DataType::try_from(proto.data_type).map_err(|_| proto.data_type)
    );
    let zeros =
        tract_onnx::tensor::load_tensor(&*tract_onnx::data_resolver::default(), proto, None)?;
    ensure!(
        zeros
            .try_as_plain_ram()?
            .as_slice::<i8>()?
            .iter()
            .all(|&z| z == 0),
        "convolution {name}: its {what} have a non-zero zero point; int8 needs symmetric \
         quantization"
    );
    Ok(())
}

fn constant(initializers: &HashMap<String, TensorProto>, name: Option<&String>) -> Option<Tensor> {
    let proto = initializers.get(name?)?;
    tract_onnx::tensor::load_tensor(&*tract_onnx::data_resolver::default(), proto, None).ok()
}

/// Drops the quantize and dequantize nodes the fused convolutions no longer read.
fn remove_unread_qdq_nodes(graph: &mut pb::GraphProto) {
    loop {
        let read: HashSet<&String> = graph
            .node
            .iter()
            .flat_map(|n| &n.input)
            .chain(graph.output.iter().map(|o| &o.name))
            .collect();
        let unread: Vec<usize> = graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear"))
            .filter(|(_, n)| n.output.iter().all(|o| !read.contains(o)))
            .map(|(ix, _)| ix)
            .collect();
        if unread.is_empty() {
            return;
        }
        for ix in unread.into_iter().rev() {
            graph.node.remove(ix);
        }
    }
}

fn parse_fused_convolution(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((
        expand(FusedConvolution {
            has_bias: node.input.len() == 5,
        }),
        vec![],
    ))
}

/// The fused node as tract's ONNX front end sees it: inputs `[x, int8 weights, weight scales,
/// input scale, bias?]`, all but `x` constant.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct FusedConvolution {
    has_bias: bool,
}

impl Expansion for FusedConvolution {
    fn name(&self) -> StaticName {
        OP_TYPE.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 4 + self.has_bias as usize)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[0].rank, 5)?;
        s.equals(&outputs[0].rank, 5)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], &inputs[1].shape[0])?;
        for axis in 2..5 {
            s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let konst = |ix: usize| -> TractResult<Arc<Tensor>> {
            model
                .outlet_fact(inputs[ix])?
                .konst
                .clone()
                .with_context(|| format!("{prefix}: input {ix} is not a constant"))
        };
        let weights = konst(1)?;
        let weight_scales = konst(2)?.cast_to::<f32>()?.into_owned();
        let input_scale = konst(3)?.cast_to_scalar::<f32>()?;
        let bias = if self.has_bias {
            Some(konst(4)?.cast_to::<f32>()?.into_owned())
        } else {
            None
        };
        let op = Int8Convolution::new(
            &weights,
            weight_scales.try_as_plain_ram()?.as_slice::<f32>()?,
            input_scale,
            bias.as_ref()
                .map(|b| {
                    b.try_as_plain_ram()
                        .and_then(|r| r.as_slice::<f32>().map(<[f32]>::to_vec))
                })
                .transpose()?,
        )?;
        model.wire_node(prefix, op, &inputs[..1])
    }
}

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
        })
    }

    fn out_channels(&self) -> usize {
        self.weights.shape()[0]
    }

    fn in_channels(&self) -> usize {
        self.weights.shape()[1] / KERNEL_VOLUME
    }

    /// One item of the batch: `input` `[C, T, H, W]` into `output` `[M, T, H, W]`, on the int8
    /// kernel tract-linalg picks for this CPU.
    fn convolve(&self, input: &[f32], volume: [usize; 3], output: &mut [f32]) -> TractResult<()> {
        let (m, k) = (self.out_channels(), self.weights.shape()[1]);
        let n: usize = volume.iter().product();
        let (mmm, packing, _) = MmmDispatch::native()
            .pick(&int8_query(m, k, n))
            .context("tract-linalg has no int8 matrix kernel for this CPU")?;
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
        let n: usize = volume.iter().product();
        let mut quantized = vec![0u8; input.len()];
        let share = share_per_thread(input.len(), MIN_TASK);
        on_executor_chunks(&mut quantized, share, input, share, |_, out, values| {
            for (q, &x) in out.iter_mut().zip(values) {
                *q = quantize_linear(x, self.input_scale) as u8;
            }
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
            let first = index * block_columns;
            let width = rows.first().map_or(0, |row| row.len());
            let packed = columns.pack(&quantized, volume, first..first + width, k, scratch)?;
            let sums = int8_sums(mmm, packing, &**weights, &*packed, m, width)?;
            let sums = sums.try_as_plain_ram()?.as_slice::<i32>()?;
            for (channel, (row, acc)) in rows.into_iter().zip(sums.chunks(width)).enumerate() {
                let scale = self.output_scales[channel];
                let bias = self.bias.as_ref().map_or(0.0, |b| b[channel]);
                for (o, &s) in row.iter_mut().zip(acc) {
                    *o = s as f32 * scale + bias;
                }
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

/// How a kernel takes its im2col columns (`[C · 27, T · H · W]` of an input `[C, T, H, W]`: the 27
/// shifted copies, zero outside, the int8 image of the float zero padding).
///
/// The two int8 layouts tract-linalg's kernels use are packed here: panels of `r` columns, k-major
/// (NEON, AVX2) or by groups of four k (VNNI, AMX, dot product). tract's generic packer took 5 to
/// 10 times as long as the int8 product itself on AMX. Any other layout goes through the format's
/// own packer.
enum ColumnPacking<'a> {
    Panels {
        format: Box<dyn MMMInputFormat>,
        r: usize,
        k4: bool,
        panel_bytes: usize,
        alignment: usize,
    },
    Other(&'a dyn MMMInputFormat),
}

impl<'a> ColumnPacking<'a> {
    fn of(format: &'a dyn MMMInputFormat, k: usize) -> Self {
        let r = format.r();
        let k4 = format.k_alignment() == 4;
        if let Some(panels) = format.downcast_ref::<PackedI8K4>() {
            ColumnPacking::Panels {
                format: Box::new(panels.clone()),
                r,
                k4,
                panel_bytes: panels.single_panel_len(k),
                alignment: panels.alignment(),
            }
        } else if let Some(panels) = format
            .downcast_ref::<PackedFormat>()
            .filter(|f| f.dt == i8::datum_type())
        {
            ColumnPacking::Panels {
                format: Box::new(panels.clone()),
                r,
                k4,
                panel_bytes: panels.single_panel_len(k),
                alignment: panels.alignment(),
            }
        } else {
            ColumnPacking::Other(format)
        }
    }

    /// Columns made and packed at a time, of `n`: a panel reads its few columns from every row of
    /// the im2col matrix, and in a matrix of the whole clip rows lie pages apart and every read
    /// misses; a block small enough for the cache is made, then packed. Short clips (late layers,
    /// after the FTA's pooling over time) are cut finer, four blocks for each of the executor's
    /// threads, so that the threads finish together.
    fn block_columns(&self, k: usize, n: usize) -> usize {
        let r = match self {
            ColumnPacking::Panels { r, .. } => *r,
            ColumnPacking::Other(format) => format.r(),
        };
        let fits_the_cache = IM2COL_BLOCK_BYTES / k;
        let balanced = n.div_ceil(4 * executor_threads());
        fits_the_cache.min(balanced).max(r).div_ceil(r) * r
    }

    /// The columns `columns` of the im2col matrix of `input` (int8 values as their bytes),
    /// packed; `block` is room for them unpacked.
    fn pack(
        &self,
        input: &[u8],
        volume: [usize; 3],
        columns: Range<usize>,
        k: usize,
        block: &mut [u8],
    ) -> TractResult<Box<dyn MMMInputValue>> {
        let width = columns.len();
        let block = &mut block[..k * width];
        im2col(input, volume, columns, block);
        let ColumnPacking::Panels {
            format,
            r,
            k4,
            panel_bytes,
            alignment,
        } = self
        else {
            let ColumnPacking::Other(format) = self else {
                unreachable!("two kinds of packing")
            };
            let values: Vec<i8> = block.iter().map(|&v| v as i8).collect();
            return format.prepare_one(&Tensor::from_shape(&[k, width], &values)?, 0, 1);
        };
        let bytes = width.div_ceil(*r) * panel_bytes;
        // SAFETY: every byte is written by `pack_panels` before anything reads it.
        let mut blob = unsafe { Blob::new_for_size_and_align(bytes, *alignment) };
        pack_panels(block, width, k, *r, *k4, *panel_bytes, blob.as_bytes_mut());
        Ok(Box::new(EagerPackedInput {
            fact: PackedExoticFact {
                format: format.clone(),
                mn: width.to_dim(),
                k,
            },
            packed: Arc::new(blob),
            panel_bytes: *panel_bytes,
            mn: width,
        }))
    }
}

/// The panels of one block of the im2col matrix (`k` rows of `width` columns) into `out`, `r`
/// columns a panel: k-major, or by groups of four k when `k4`.
fn pack_panels(
    block: &[u8],
    width: usize,
    k: usize,
    r: usize,
    k4: bool,
    panel_bytes: usize,
    out: &mut [u8],
) {
    let panels = width.div_ceil(r);
    // What the rows below do not reach is zero: a panel's end padding, and the columns a last,
    // narrower panel lacks.
    let rows_bytes = if k4 { k.div_ceil(4) * 4 * r } else { k * r };
    if rows_bytes < panel_bytes {
        for panel in out.chunks_exact_mut(panel_bytes).take(panels) {
            panel[rows_bytes..].fill(0);
        }
    }
    if !width.is_multiple_of(r) {
        out[(panels - 1) * panel_bytes..][..panel_bytes].fill(0);
    }
    if !k4 {
        for (panel, out) in out.chunks_exact_mut(panel_bytes).take(panels).enumerate() {
            let (start, columns) = (panel * r, r.min(width - panel * r));
            for (index, out) in out.chunks_exact_mut(r).take(k).enumerate() {
                copy_short(
                    &mut out[..columns],
                    &block[index * width + start..][..columns],
                );
            }
        }
        return;
    }
    match r {
        8 => pack_k4::<8>(block, width, k, panel_bytes, out),
        16 => pack_k4::<16>(block, width, k, panel_bytes, out),
        _ => pack_k4_any(block, width, k, r, panel_bytes, out),
    }
}

/// The k4 panels of a block at the panel width `R` of the common kernels (8 columns on AVX-512
/// VNNI and arm64 SDOT, 16 on AMX): each run of `4 R` bytes is four rows' `R` columns interleaved,
/// of sizes the compiler knows, so the shuffle is vectorised and the store is one move.
fn pack_k4<const R: usize>(
    block: &[u8],
    width: usize,
    k: usize,
    panel_bytes: usize,
    out: &mut [u8],
) {
    let zeros = vec![0u8; width];
    let whole = width / R;
    for group in 0..k.div_ceil(4) {
        let row = |lane: usize| match 4 * group + lane {
            index if index < k => &block[index * width..][..width],
            _ => &zeros[..],
        };
        let (a, b, c, d) = (row(0), row(1), row(2), row(3));
        for panel in 0..whole {
            let first = panel * R;
            let (a, b, c, d) = (
                &a[first..][..R],
                &b[first..][..R],
                &c[first..][..R],
                &d[first..][..R],
            );
            let run = &mut out[panel * panel_bytes + group * 4 * R..][..4 * R];
            for eight in 0..R / 8 {
                let columns = 8 * eight..8 * eight + 8;
                interleave_eight(
                    [
                        &a[columns.clone()],
                        &b[columns.clone()],
                        &c[columns.clone()],
                        &d[columns],
                    ],
                    &mut run[32 * eight..][..32],
                );
            }
        }
        for column in whole * R..width {
            let at = whole * panel_bytes + group * 4 * R + 4 * (column - whole * R);
            out[at..at + 4].copy_from_slice(&[a[column], b[column], c[column], d[column]]);
        }
    }
}

/// Four rows of eight bytes into groups of four, `out[4 i + lane] = rows[lane][i]`, with SSE2's
/// byte and word unpacking: the compiler leaves the plain loop at a byte a move on baseline x86-64,
/// where it was most of the packing.
#[cfg(target_arch = "x86_64")]
fn interleave_eight(rows: [&[u8]; 4], out: &mut [u8]) {
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
    unsafe { interleave_eight_sse2(rows, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn interleave_eight_sse2(rows: [&[u8]; 4], out: &mut [u8]) {
    use std::arch::x86_64::{
        _mm_cvtsi128_si64, _mm_cvtsi64_si128, _mm_unpackhi_epi16, _mm_unpackhi_epi64,
        _mm_unpacklo_epi16, _mm_unpacklo_epi8,
    };
    let [a, b, c, d] = rows.map(|row| {
        _mm_cvtsi64_si128(i64::from_le_bytes(
            row[..8].try_into().expect("eight bytes"),
        ))
    });
    let (ab, cd) = (_mm_unpacklo_epi8(a, b), _mm_unpacklo_epi8(c, d));
    for (half, quads) in [_mm_unpacklo_epi16(ab, cd), _mm_unpackhi_epi16(ab, cd)]
        .into_iter()
        .enumerate()
    {
        let high = _mm_unpackhi_epi64(quads, quads);
        out[16 * half..][..8].copy_from_slice(&_mm_cvtsi128_si64(quads).to_le_bytes());
        out[16 * half + 8..][..8].copy_from_slice(&_mm_cvtsi128_si64(high).to_le_bytes());
    }
}

/// Four rows of eight bytes into groups of four, `out[4 i + lane] = rows[lane][i]`: a loop the
/// compiler turns into interleaving stores where the target has them (arm64's `st4`).
#[cfg(not(target_arch = "x86_64"))]
fn interleave_eight(rows: [&[u8]; 4], out: &mut [u8]) {
    let out = &mut out[..32];
    for column in 0..8 {
        for (lane, row) in rows.iter().enumerate() {
            out[4 * column + lane] = row[column];
        }
    }
}

/// The k4 panels of a block at any other panel width `r`, element by element; the rows past `k`
/// that complete the last group of four are zero.
fn pack_k4_any(block: &[u8], width: usize, k: usize, r: usize, panel_bytes: usize, out: &mut [u8]) {
    for row in 0..k.div_ceil(4) * 4 {
        let (group, lane) = (row / 4, row % 4);
        let values = (row < k).then(|| &block[row * width..][..width]);
        for column in 0..width {
            out[column / r * panel_bytes + group * 4 * r + 4 * (column % r) + lane] =
                values.map_or(0, |values| values[column]);
        }
    }
}

/// `to.copy_from_slice(from)` for the few bytes of a panel row: at the panel widths of the kernels
/// a copy of known length is one move, where an arbitrary length calls `memcpy`.
fn copy_short(to: &mut [u8], from: &[u8]) {
    match from.len() {
        16 => to[..16].copy_from_slice(&from[..16]),
        8 => to[..8].copy_from_slice(&from[..8]),
        4 => to[..4].copy_from_slice(&from[..4]),
        _ => to.copy_from_slice(from),
    }
}

/// The columns `columns` of the im2col matrix `[C · 27, T · H · W]` of `input` `[C, T, H, W]`
/// (int8 values as their bytes) into `out` `[C · 27, columns.len()]`. Row `c · 27 + offset` is
/// channel `c` shifted by that kernel offset, zero outside. In raster order a shift is one offset of
/// the flat index, so a row is one copy followed by zeroing what crossed an edge: a first or last
/// frame, the first or last line of each frame, the first or last column of each line.
fn im2col(input: &[u8], [t, h, w]: [usize; 3], columns: Range<usize>, out: &mut [u8]) {
    let (n, hw, width) = (t * h * w, h * w, columns.len());
    let shift = |k: usize| k as isize - 1;
    // Zeroes the positions `from..from + len` of the clip where they fall in `columns`.
    let zero = |out: &mut [u8], from: usize, len: usize| {
        let (start, end) = (from.max(columns.start), (from + len).min(columns.end));
        if start < end {
            out[start - columns.start..end - columns.start].fill(0);
        }
    };
    let edge = |d: isize, len: usize| (d != 0).then(|| if d < 0 { 0 } else { len - 1 });
    for (row, out) in out.chunks_exact_mut(width).enumerate() {
        let (channel, offset) = (row / KERNEL_VOLUME, row % KERNEL_VOLUME);
        let (dt, dh, dw) = (shift(offset / 9), shift(offset / 3 % 3), shift(offset % 3));
        let plane = &input[channel * n..][..n];
        let source = columns.start as isize + dt * hw as isize + dh * w as isize + dw;
        let valid_from = (-source).clamp(0, width as isize) as usize;
        let valid_to = (n as isize - source).clamp(valid_from as isize, width as isize) as usize;
        out[..valid_from].fill(0);
        out[valid_to..].fill(0);
        if valid_from < valid_to {
            let read_from = (source + valid_from as isize) as usize;
            out[valid_from..valid_to].copy_from_slice(&plane[read_from..][..valid_to - valid_from]);
        }
        if let Some(frame) = edge(dt, t) {
            zero(out, frame * hw, hw);
        }
        let frames = columns.start / hw..(columns.end - 1) / hw + 1;
        if let Some(line) = edge(dh, h) {
            for frame in frames.clone() {
                zero(out, frame * hw + line * w, w);
            }
        }
        if let Some(column) = edge(dw, w) {
            // One byte a line: a store, where a fill of unknown length calls `memset`.
            for line in columns.start / w..(columns.end - 1) / w + 1 {
                if columns.contains(&(line * w + column)) {
                    out[line * w + column - columns.start] = 0;
                }
            }
        }
    }
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
        let n: usize = volume.iter().product();
        let ram = input.try_as_plain_ram()?;
        let data = ram.as_slice::<f32>()?;
        let output_shape = [batch, self.out_channels(), shape[2], shape[3], shape[4]];
        // SAFETY: `convolve` writes every output value of every item.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&output_shape)? };
        let mut ram = output.try_as_plain_ram_mut()?;
        for (item, out) in ram
            .as_slice_mut::<f32>()?
            .chunks_mut(self.out_channels() * n)
            .enumerate()
        {
            let per_item = self.in_channels() * n;
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
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The compact network with its stem convolution in int8 QDQ form.
    fn stem_in_int8() -> pb::ModelProto {
        use crate::onnx_graph::{build_model, ExportOptions};
        let options = ExportOptions {
            int8_convolutions: [("arme1.0".to_string(), 0.02)].into(),
            ..ExportOptions::default()
        };
        build_model(
            &crate::Weights::seeded(crate::Variant::Compact, 1),
            &options,
        )
        .unwrap()
    }

    fn nodes(model: &pb::ModelProto) -> &[NodeProto] {
        &model.graph.as_ref().unwrap().node
    }

    #[test]
    fn a_qdq_convolution_becomes_one_node_and_a_float_model_is_left_alone() {
        let mut model = stem_in_int8();
        assert_eq!(fuse_qdq_convolutions(&mut model).unwrap(), 1);
        let fused: Vec<&str> = nodes(&model)
            .iter()
            .filter(|n| n.op_type == OP_TYPE)
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(fused, ["arme1.0"]);
        assert!(nodes(&model)
            .iter()
            .all(|n| !n.op_type.ends_with("QuantizeLinear")));

        let mut float = crate::onnx_graph::build_model(
            &crate::Weights::seeded(crate::Variant::Compact, 1),
            &Default::default(),
        )
        .unwrap();
        let before = float.clone();
        assert_eq!(fuse_qdq_convolutions(&mut float).unwrap(), 0);
        assert_eq!(float, before);
    }

    #[test]
    fn qdq_convolutions_it_cannot_run_are_refused_by_name() {
        let refusal = |edit: &dyn Fn(&mut pb::GraphProto)| {
            let mut model = stem_in_int8();
            edit(model.graph.as_mut().unwrap());
            fuse_qdq_convolutions(&mut model).unwrap_err().to_string()
        };
        let stem = |graph: &mut pb::GraphProto| -> usize {
            graph.node.iter().position(|n| n.name == "arme1.0").unwrap()
        };
        let zero_point = |graph: &mut pb::GraphProto| -> usize {
            graph
                .initializer
                .iter()
                .position(|t| t.name == "arme1.0.input_zero_point")
                .unwrap()
        };

        let asymmetric = refusal(&|graph| {
            let z = zero_point(graph);
            graph.initializer[z].raw_data = vec![5];
        });
        assert!(
            asymmetric.contains("arme1.0") && asymmetric.contains("non-zero zero point"),
            "{asymmetric}"
        );

        let unsigned = refusal(&|graph| {
            let z = zero_point(graph);
            graph.initializer[z].data_type = DataType::Uint8 as i32;
        });
        assert!(unsigned.contains("Uint8"), "{unsigned}");

        let weights_only = refusal(&|graph| {
            let conv = stem(graph);
            graph.node[conv].input[0] = "clip".to_string();
        });
        assert!(weights_only.contains("only its weights"), "{weights_only}");

        let strided = refusal(&|graph| {
            let conv = stem(graph);
            graph.node[conv].attribute.push(pb::AttributeProto {
                name: "strides".into(),
                ints: vec![2, 2, 2],
                ..Default::default()
            });
        });
        assert!(
            strided.contains("arme1.0") && strided.contains("strides"),
            "{strided}"
        );
    }
}
