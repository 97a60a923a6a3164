//! tract backend: one optimised plan per clip length, kept in a small cache.
//!
//! tract optimises a graph with a concrete T about 9× better than one with T symbolic
//! (im2col layout, fused kernels), so each new clip length gets its own plan. Kiosk windows have a
//! few lengths (the window size and the shorter end-of-walk windows), so a handful of plans
//! covers them; the least recently built is dropped beyond [`MAX_CACHED_PLANS`].

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::ops::cast::Cast;
use tract_onnx::tract_core::transform::ModelTransform;
use tract_onnx::tract_hir::infer::Factoid;

use super::int8_convolution;
use super::separable_max_pool::replace_max_pools;
use super::strided_max::replace_max_reductions;
use super::threaded_pow::replace_constant_powers;
use super::{Embedder, Precision};
use crate::embedding::Embedding;
use crate::error::{HstlError, Result};
use crate::input::{Orientation, Silhouettes};
use crate::variant::{INPUT_HEIGHT, INPUT_WIDTH};

/// Each plan holds its own packed weights (tens of MB for the 256-channel variants).
pub const MAX_CACHED_PLANS: usize = 4;
/// Clip length used to check a model's interface when it is loaded.
const PROBE_FRAMES: usize = 3;

type Plan = Arc<TypedRunnableModel>;

/// HSTL on tract, pure Rust on the CPU: one optimised plan per clip length (a few cached) on its own thread pool.
pub struct TractEmbedder {
    model: InferenceModel,
    source: PathBuf,
    threads: usize,
    executor: Executor,
    embedding_shape: (usize, usize),
    /// Output names as the ONNX file declares them; optimisation may relabel outlets.
    output_names: Vec<String>,
    /// How many QDQ convolutions run on int8 kernels.
    int8_convolutions: usize,
    orientation: Orientation,
    precision: Precision,
    plans: Mutex<VecDeque<(usize, Plan)>>,
}

/// All outputs of one run, by graph output name.
pub type NamedOutputs = Vec<(String, Vec<usize>, Vec<f32>)>;

impl TractEmbedder {
    /// Loads an HSTL ONNX model (input `[1, T, 64, 44]`, output `[1, parts, channels]`), ours or
    /// one exported from the reference code, to run on `threads` CPU threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self> {
        let onnx = int8_convolution::onnx();
        let proto = read_proto(path)?;
        Self::from_proto(
            &onnx,
            proto,
            path,
            path.parent().and_then(Path::to_str),
            threads,
        )
    }

    /// Loads a model from its bytes; `label` names it in errors.
    pub fn from_bytes(bytes: &[u8], label: &str, threads: usize) -> Result<Self> {
        let onnx = int8_convolution::onnx();
        let source = Path::new(label);
        let proto = onnx
            .proto_model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(|e| bad_model(source, format!("not a loadable ONNX model: {e:#}")))?;
        Self::from_proto(&onnx, proto, source, None, threads)
    }

    /// Fuses the model's QDQ convolutions into int8 ones, then reads it (external data relative to
    /// `dir`).
    fn from_proto(
        onnx: &tract_onnx::Onnx,
        mut proto: tract_onnx::pb::ModelProto,
        source: &Path,
        dir: Option<&str>,
        threads: usize,
    ) -> Result<Self> {
        let int8_convolutions = int8_convolution::fuse_qdq_convolutions(&mut proto)
            .map_err(|e| bad_model(source, format!("{e:#}")))?;
        let orientation = orientation_of(&proto).map_err(|e| bad_model(source, e.to_string()))?;
        if let Some(graph) = &proto.graph {
            check_outputs_defined(graph).map_err(|message| bad_model(source, message))?;
        }
        let parsed = contained(|| onnx.parse(&proto, dir), tract_panicked)
            .map_err(|e| bad_model(source, format!("not a loadable ONNX model: {e:#}")))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(bad_model(
                source,
                format!("inputs {:?} are not defined", parsed.unresolved_inputs),
            ));
        }
        let mut embedder = contained(
            || Self::from_model(parsed.model, source.to_path_buf(), threads),
            |message| bad_model(source, tract_panicked(message).to_string()),
        )?;
        embedder.int8_convolutions = int8_convolutions;
        embedder.orientation = orientation;
        Ok(embedder)
    }

    fn from_model(model: InferenceModel, source: PathBuf, threads: usize) -> Result<Self> {
        let bad = |message: String| bad_model(&source, message);
        let inputs = model.input_outlets().map_err(|e| bad(e.to_string()))?.len();
        if inputs != 1 {
            return Err(bad(format!(
                "expected one input (silhouettes [1, T, 64, 44]), found {inputs}"
            )));
        }
        let declared = model.input_fact(0).map_err(|e| bad(e.to_string()))?;
        if let Some(rank) = declared.shape.rank().concretize() {
            if rank != 4 {
                return Err(bad(format!(
                    "input has rank {rank}; an HSTL model takes silhouettes [1, T, 64, 44]"
                )));
            }
        }
        let probe = with_clip_length(model.clone(), PROBE_FRAMES)
            .and_then(|m| m.into_typed())
            .map_err(|e| bad(format!("does not accept silhouettes [1, T, 64, 44]: {e:#}")))?;
        let outputs = probe
            .output_outlets()
            .map_err(|e| bad(e.to_string()))?
            .len();
        if outputs == 0 {
            return Err(bad(
                "has no output; an HSTL model gives embeddings [1, parts, channels]".into(),
            ));
        }
        let output = probe.output_fact(0).map_err(|e| bad(e.to_string()))?;
        let dims: Option<Vec<usize>> = output.shape.as_concrete().map(|d| d.to_vec());
        let embedding_shape = match dims.as_deref() {
            Some([1, parts, channels]) => (*parts, *channels),
            _ => {
                return Err(bad(format!(
                    "output is {:?}, expected embeddings [1, parts, channels]",
                    output.shape
                )))
            }
        };
        let output_names = model
            .output_outlets()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_owned)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let threads = threads.max(1);
        let executor = if threads == 1 {
            Executor::SingleThread
        } else {
            Executor::multithread(threads)
        };
        Ok(TractEmbedder {
            model,
            source,
            threads,
            executor,
            embedding_shape,
            output_names,
            int8_convolutions: 0,
            orientation: Orientation::AsFilmed,
            precision: Precision::F32,
            plans: Mutex::new(VecDeque::new()),
        })
    }

    /// The optimised plan for clips of `frames` frames, built on first use.
    pub fn plan(&self, frames: usize) -> Result<Plan> {
        if let Some(plan) = self.cached(frames) {
            return Ok(plan);
        }
        let started = std::time::Instant::now();
        let plan = contained(
            || {
                with_clip_length(self.model.clone(), frames)
                    .and_then(|m| m.into_typed())
                    .and_then(|m| m.into_decluttered())
                    .and_then(|mut m| {
                        if self.precision == Precision::F16 {
                            half_precision_up_to_the_pooling(&mut m)?;
                        }
                        replace_max_reductions(&mut m)?;
                        replace_max_pools(&mut m)?;
                        replace_constant_powers(&mut m)?;
                        m.into_optimized()
                    })
                    .and_then(|m| m.into_runnable())
            },
            tract_panicked,
        )
        .map_err(|e| {
            bad_model(
                &self.source,
                format!("cannot build a plan for {frames} frames: {e:#}"),
            )
        })?;
        log::debug!("tract plan for T={frames} built in {:?}", started.elapsed());
        let mut plans = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if plans.len() >= MAX_CACHED_PLANS {
            plans.pop_front();
        }
        plans.push_back((frames, plan.clone()));
        Ok(plan)
    }

    fn cached(&self, frames: usize) -> Option<Plan> {
        let plans = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        plans
            .iter()
            .find(|(t, _)| *t == frames)
            .map(|(_, p)| p.clone())
    }

    /// Runs the model and returns every graph output (the embedding first), for parity checks
    /// on models exported with intermediate outputs.
    pub fn run_all_outputs(&self, clip: &Silhouettes) -> Result<NamedOutputs> {
        let plan = self.plan(clip.frames())?;
        let input = plan_input(&plan, clip)?;
        let outputs = multithread_tract_scope(self.executor.clone(), || plan.run(tvec!(input)))
            .map_err(|e| HstlError::Inference(format!("{e:#}")))?;
        self.output_names
            .iter()
            .cloned()
            .zip(outputs)
            .map(|(name, value)| {
                let view = value
                    .to_plain_array_view::<f32>()
                    .map_err(|e| HstlError::Inference(e.to_string()))?;
                Ok((name, view.shape().to_vec(), view.iter().copied().collect()))
            })
            .collect()
    }

    /// Time spent in each node of the optimised plan for one run on `clip`, slowest first:
    /// `(operator, node name, seconds)`.
    pub fn profile(&self, clip: &Silhouettes) -> Result<Vec<(String, String, f64)>> {
        let mut timings = Vec::new();
        self.run_observed(clip, |node, _, seconds| {
            timings.push((node.op().name().to_string(), node.name.clone(), seconds));
        })?;
        timings.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(timings)
    }

    /// The nodes of the optimised plan whose outputs hold subnormal floats in one run on `clip`:
    /// `(operator, node name, subnormal values, values)`, in the plan's order. Some cores (Intel's)
    /// take a microcode assist on every subnormal they read or write, so none may reach the hot path.
    pub fn subnormal_outputs(
        &self,
        clip: &Silhouettes,
    ) -> Result<Vec<(String, String, usize, usize)>> {
        let mut found = Vec::new();
        self.run_observed(clip, |node, outputs, _| {
            let (subnormal, values) = outputs
                .iter()
                .filter_map(|value| value.try_as_plain_ram().ok()?.as_slice::<f32>().ok())
                .fold((0, 0), |(subnormal, values), slice| {
                    (
                        subnormal + super::negligible::subnormal_count(slice),
                        values + slice.len(),
                    )
                });
            if subnormal > 0 {
                found.push((
                    node.op().name().to_string(),
                    node.name.clone(),
                    subnormal,
                    values,
                ));
            }
        })?;
        Ok(found)
    }

    /// One run on `clip`, node by node; `observe` sees each node, its outputs and its seconds.
    fn run_observed(
        &self,
        clip: &Silhouettes,
        mut observe: impl FnMut(&TypedNode, &TVec<TValue>, f64),
    ) -> Result<()> {
        let plan = self.plan(clip.frames())?;
        let input = plan_input(&plan, clip)?;
        let mut state = plan
            .spawn()
            .map_err(|e| HstlError::Inference(e.to_string()))?;
        multithread_tract_scope(self.executor.clone(), || {
            state.run_plan_with_eval(tvec!(input), |ctx, op_state, node, inputs| {
                let started = std::time::Instant::now();
                let outputs = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                if let Ok(values) = &outputs {
                    observe(node, values, started.elapsed().as_secs_f64());
                }
                outputs
            })
        })
        .map_err(|e| HstlError::Inference(format!("{e:#}")))?;
        Ok(())
    }

    /// CPU threads the plans run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs the float layers in `precision` from the next plan on.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self.plans
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self
    }

    /// How many of the model's convolutions run on int8 kernels (its QDQ convolutions).
    pub fn int8_convolutions(&self) -> usize {
        self.int8_convolutions
    }
}

/// Runs tract's reading or planning of a model, a panic inside tract turned into an error by
/// `panicked`. tract reads the models it was written for, but some malformed files (an axis past a
/// tensor's rank, a graph without outputs) make it index out of bounds: a broken model file must be
/// refused with a reason, not crash the door.
pub(super) fn contained<T, E>(
    work: impl FnOnce() -> std::result::Result<T, E>,
    panicked: impl FnOnce(String) -> E,
) -> std::result::Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|message| message.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(panicked(message))
    })
}

/// The ONNX model at `path`, as written (its QDQ convolutions not yet fused) but for its negligible
/// weights, read as zero (`negligible`).
pub(crate) fn read_proto(path: &Path) -> Result<tract_onnx::pb::ModelProto> {
    crate::files::check_regular(path, crate::files::MAX_MODEL_FILE_BYTES)
        .map_err(|e| bad_model(path, e.to_string()))?;
    let mut proto = int8_convolution::onnx()
        .proto_model_for_path(path)
        .map_err(|e| bad_model(path, format!("not a loadable ONNX model: {e:#}")))?;
    let zeroed = super::negligible::zero_negligible_weights(&mut proto);
    if zeroed > 0 {
        log::debug!(
            "{}: {zeroed} negligible weights read as zero",
            path.display()
        );
    }
    Ok(proto)
}

/// How `proto` wants walks oriented, from its metadata.
pub(crate) fn orientation_of(proto: &tract_onnx::pb::ModelProto) -> Result<Orientation> {
    Orientation::of_metadata(
        proto
            .metadata_props
            .iter()
            .map(|entry| (entry.key.as_str(), entry.value.as_str())),
    )
}

/// What a panic inside tract becomes.
pub(super) fn tract_panicked(message: String) -> TractError {
    TractError::msg(format!("tract failed on it: {message}"))
}

/// Every output of `graph`, and of the graphs its nodes carry as attributes, is one of its inputs,
/// initializers or node outputs: tract's reader panics on an output that names nothing.
fn check_outputs_defined(graph: &tract_onnx::pb::GraphProto) -> std::result::Result<(), String> {
    let defined: HashSet<&str> = graph
        .input
        .iter()
        .map(|input| input.name.as_str())
        .chain(graph.initializer.iter().map(|tensor| tensor.name.as_str()))
        .chain(
            graph
                .node
                .iter()
                .flat_map(|node| node.output.iter().map(String::as_str)),
        )
        .collect();
    let undefined: Vec<&str> = graph
        .output
        .iter()
        .map(|output| output.name.as_str())
        .filter(|name| !defined.contains(name))
        .collect();
    if !undefined.is_empty() {
        return Err(format!(
            "graph {:?}: outputs {undefined:?} are produced by no node, input or initializer",
            graph.name
        ));
    }
    graph
        .node
        .iter()
        .flat_map(|node| &node.attribute)
        .flat_map(|attribute| attribute.g.iter().chain(&attribute.graphs))
        .try_for_each(check_outputs_defined)
}

/// The clip as the plan's input: f32, or f16 for a half-precision plan.
fn plan_input(plan: &Plan, clip: &Silhouettes) -> Result<TValue> {
    let fail = |e: TractError| HstlError::Inference(format!("{e:#}"));
    let input = Tensor::from_shape(
        &[1, clip.frames(), INPUT_HEIGHT, INPUT_WIDTH],
        clip.as_slice(),
    )
    .map_err(fail)?;
    let wanted = plan.model().input_fact(0).map_err(fail)?.datum_type;
    Ok(input
        .cast_to_dt(wanted)
        .map_err(fail)?
        .into_owned()
        .into_tvalue())
}

/// Converts `model` to f16 except GeM and what follows it (the head): everything downstream of
/// a `Pow`, since GeM's `x^p` overflows f16. The outputs stay f32.
fn half_precision_up_to_the_pooling(model: &mut TypedModel) -> TractResult<()> {
    let mut in_f32 = HashSet::new();
    for id in model.eval_order()? {
        let node = model.node(id);
        if node.op().name().contains("Pow") || node.inputs.iter().any(|i| in_f32.contains(&i.node))
        {
            in_f32.insert(id);
        }
    }
    if in_f32.is_empty() {
        return Err(TractError::msg(
            "no GeM pooling (Pow) in the model to keep in f32",
        ));
    }
    let kept: HashSet<String> = in_f32
        .iter()
        .map(|&id| model.node(id).name.clone())
        .collect();
    FloatPrecisionTranslator::with_filter(f32::datum_type(), f16::datum_type(), move |node| {
        !kept.contains(&node.name)
    })
    .transform(model)?;
    // The translator casts every output of the model to f16: read them before that cast.
    let mut outputs = model.output_outlets()?.to_vec();
    for output in &mut outputs {
        let node = model.node(output.node);
        if node.op_is::<Cast>()
            && model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type()
        {
            *output = node.inputs[0];
        }
    }
    model.select_output_outlets(&outputs)
}

fn bad_model(path: &Path, message: String) -> HstlError {
    HstlError::BadModel {
        path: path.to_path_buf(),
        message,
    }
}

fn with_clip_length(model: InferenceModel, frames: usize) -> TractResult<InferenceModel> {
    model.with_input_fact(0, f32::fact([1, frames, INPUT_HEIGHT, INPUT_WIDTH]).into())
}

impl Embedder for TractEmbedder {
    fn embed(&self, clip: &Silhouettes) -> Result<Embedding> {
        let mut outputs = self.run_all_outputs(clip)?;
        let (_, shape, values) = outputs.swap_remove(0);
        super::embedding_from_output(&shape, values)
    }

    fn embedding_shape(&self) -> (usize, usize) {
        self.embedding_shape
    }

    fn describe(&self) -> String {
        let mut description = format!("tract on CPU, {} thread(s)", self.threads);
        if self.int8_convolutions > 0 {
            description += &format!(", {} int8 convolutions", self.int8_convolutions);
            if let Some((kernel, _)) = super::int8_convolution::fastest_kernel() {
                description += &format!(" on {}", kernel.name());
            }
        }
        if self.precision == Precision::F16 {
            description += ", f16 up to the pooling";
        }
        description
    }

    fn orientation(&self) -> Orientation {
        self.orientation
    }
}

/// On the ARM half-precision kernels (under qemu in the aarch64 tests). x86 has none: tract
/// emulates f16 there, at about 100 times the cost of f32.
#[cfg(all(test, target_arch = "aarch64"))]
mod tests {
    use super::*;
    use crate::onnx_graph::{encode_model, ExportOptions};
    use crate::{Variant, Weights};

    #[test]
    fn half_precision_up_to_the_pooling_stays_close_to_f32() {
        let bytes = encode_model(
            &Weights::seeded(Variant::Compact, 7),
            &ExportOptions::default(),
        )
        .unwrap();
        let clip = Silhouettes::from_u8(
            &[4, 64, 44],
            &(0..4 * 64 * 44)
                .map(|i| {
                    if (i % 44) / 11 == (i / 2816) % 4 {
                        255
                    } else {
                        0
                    }
                })
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        let single = TractEmbedder::from_bytes(&bytes, "compact.onnx", 1).unwrap();
        let half = TractEmbedder::from_bytes(&bytes, "compact.onnx", 1)
            .unwrap()
            .with_precision(Precision::F16);
        assert!(half.describe().contains("f16"));
        let plan = half.plan(4).unwrap();
        let types: Vec<DatumType> = plan
            .model()
            .nodes()
            .iter()
            .flat_map(|n| n.outputs.iter().map(|o| o.fact.datum_type))
            .collect();
        assert!(types.contains(&f16::datum_type()), "nothing ran in f16");
        let (a, b) = (single.embed(&clip).unwrap(), half.embed(&clip).unwrap());
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let difference: Vec<f32> = a
            .as_slice()
            .iter()
            .zip(b.as_slice())
            .map(|(x, y)| x - y)
            .collect();
        let relative = norm(&difference) / norm(a.as_slice());
        assert!(
            relative > 0.0 && relative < 1e-2,
            "f16 off f32 by {relative} of its norm"
        );
        assert!(b.as_slice().iter().all(|v| v.is_finite()));
    }
}
