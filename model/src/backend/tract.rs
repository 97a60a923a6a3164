//! tract backend: one optimised plan per clip length, kept in a small cache.
//!
//! tract optimises a graph with a concrete T about 9× better than one with T symbolic
//! (im2col layout, fused kernels), so each new clip length gets its own plan. Kiosk windows have a
//! few lengths (the window size and the shorter end-of-walk windows), so a handful of plans
//! covers them; the least recently built is dropped beyond [`MAX_CACHED_PLANS`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::int8_convolution;
use super::strided_max::replace_max_reductions;
use super::Embedder;
use crate::embedding::Embedding;
use crate::error::{HstlError, Result};
use crate::input::Silhouettes;
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
    plans: Mutex<VecDeque<(usize, Plan)>>,
}

/// All outputs of one run, by graph output name.
pub type NamedOutputs = Vec<(String, Vec<usize>, Vec<f32>)>;

impl TractEmbedder {
    /// Loads an HSTL ONNX model (input `[1, T, 64, 44]`, output `[1, parts, channels]`), ours or
    /// one exported from the reference code, to run on `threads` CPU threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self> {
        let onnx = int8_convolution::onnx();
        let proto = onnx
            .proto_model_for_path(path)
            .map_err(|e| bad_model(path, format!("not a loadable ONNX model: {e:#}")))?;
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
        let parsed = onnx
            .parse(&proto, dir)
            .map_err(|e| bad_model(source, format!("not a loadable ONNX model: {e:#}")))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(bad_model(
                source,
                format!("inputs {:?} are not defined", parsed.unresolved_inputs),
            ));
        }
        let mut embedder = Self::from_model(parsed.model, source.to_path_buf(), threads)?;
        embedder.int8_convolutions = int8_convolutions;
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
            plans: Mutex::new(VecDeque::new()),
        })
    }

    /// The optimised plan for clips of `frames` frames, built on first use.
    pub fn plan(&self, frames: usize) -> Result<Plan> {
        if let Some(plan) = self.cached(frames) {
            return Ok(plan);
        }
        let started = std::time::Instant::now();
        let plan = with_clip_length(self.model.clone(), frames)
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .and_then(|mut m| {
                replace_max_reductions(&mut m)?;
                m.into_optimized()
            })
            .and_then(|m| m.into_runnable())
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
        let input = Tensor::from_shape(
            &[1, clip.frames(), INPUT_HEIGHT, INPUT_WIDTH],
            clip.as_slice(),
        )
        .map_err(|e| HstlError::Inference(e.to_string()))?;
        let outputs = multithread_tract_scope(self.executor.clone(), || {
            plan.run(tvec!(input.into_tvalue()))
        })
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
        let plan = self.plan(clip.frames())?;
        let input = Tensor::from_shape(
            &[1, clip.frames(), INPUT_HEIGHT, INPUT_WIDTH],
            clip.as_slice(),
        )
        .map_err(|e| HstlError::Inference(e.to_string()))?;
        let mut state = plan
            .spawn()
            .map_err(|e| HstlError::Inference(e.to_string()))?;
        let mut timings = Vec::new();
        multithread_tract_scope(self.executor.clone(), || {
            state.run_plan_with_eval(tvec!(input.into_tvalue()), |ctx, op_state, node, inputs| {
                let started = std::time::Instant::now();
                let outputs = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                timings.push((
                    node.op().name().to_string(),
                    node.name.clone(),
                    started.elapsed().as_secs_f64(),
                ));
                outputs
            })
        })
        .map_err(|e| HstlError::Inference(format!("{e:#}")))?;
        timings.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(timings)
    }

    /// CPU threads the plans run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How many of the model's convolutions run on int8 kernels (its QDQ convolutions).
    pub fn int8_convolutions(&self) -> usize {
        self.int8_convolutions
    }
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
        match self.int8_convolutions {
            0 => format!("tract on CPU, {} thread(s)", self.threads),
            n => format!(
                "tract on CPU, {} thread(s), {n} int8 convolutions",
                self.threads
            ),
        }
    }
}
