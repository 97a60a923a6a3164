//! The embedding of a walk so far, kept up to date one silhouette at a time.
//!
//! Every temporal operation of HSTL before its pooling is local (3-frame convolutions, the FTA's
//! windows of 5 frames at stride 3) and every branch ends in a maximum over time. So a stream runs
//! each stage of the network (see `cut`) once per position as soon as the positions it reads are
//! known for good, keeps a running maximum of each pooled stage, and holds only the few last
//! positions of each stage that later positions still read. Asked for the embedding, it completes
//! the walk's end as the whole network would for exactly these frames (zeros after the last frame
//! for the convolutions, nothing for the FTA's pooling), computing only the positions that read the
//! end; the result is the embedding of the clip so far, as `Embedder::embed` gives it.
//!
//! The network sees every frame once: each stage computes each of its positions once for good;
//! what a query adds is the walk's end, a few positions per stage (`model/PARITY.md`).

mod cut;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_onnx::prelude::tract_ndarray::{concatenate, ArrayD, Axis, IxDyn};
use tract_onnx::prelude::*;

use crate::backend::tract_graph::TractGraph;
use crate::embedding::Embedding;
use crate::error::{HstlError, Result};
use crate::input::Orientation;
use crate::variant::{INPUT_HEIGHT, INPUT_WIDTH};
use cut::{Cut, StageKind};

/// The fewest frames whose embedding is defined: the FTA makes one position of three frames.
pub const MIN_FRAMES: usize = 3;
/// Final positions a convolution's input keeps: the three its newest output reads.
const CONVOLUTION_CONTEXT: usize = 3;
/// Final positions the FTA's input keeps: the seven its newest output's window reads.
const AGGREGATION_CONTEXT: usize = 7;

/// One stage graph on a runtime: float arrays in and out, in the graph's order.
pub trait StageRunner: Send + Sync {
    /// Runs the stage.
    fn run(&self, inputs: Vec<ArrayD<f32>>) -> Result<Vec<ArrayD<f32>>>;
}

impl StageRunner for TractGraph {
    fn run(&self, inputs: Vec<ArrayD<f32>>) -> Result<Vec<ArrayD<f32>>> {
        let outputs = TractGraph::run(self, inputs.into_iter().map(Tensor::from).collect())?;
        outputs
            .into_iter()
            .map(|tensor| {
                tensor
                    .into_plain_array::<f32>()
                    .map_err(|e| HstlError::Inference(format!("{e:#}")))
            })
            .collect()
    }
}

#[cfg(feature = "ort")]
impl StageRunner for crate::backend::onnxruntime::OrtGraph {
    fn run(&self, inputs: Vec<ArrayD<f32>>) -> Result<Vec<ArrayD<f32>>> {
        let inputs = inputs
            .into_iter()
            .map(|array| (array.shape().to_vec(), array.iter().copied().collect()))
            .collect();
        crate::backend::onnxruntime::OrtGraph::run(self, inputs)?
            .into_iter()
            .map(|(shape, values)| {
                ArrayD::from_shape_vec(IxDyn(&shape), values)
                    .map_err(|e| HstlError::Inference(e.to_string()))
            })
            .collect()
    }
}

/// The stages of a cut model on a runtime, shared by every walk streamed from it.
struct Stages {
    stages: Vec<(StageKind, Box<dyn StageRunner>)>,
    /// The stage behind each input of the head.
    maxima: Vec<usize>,
    /// Per stage: whether the head reads its maximum over time.
    pooled: Vec<bool>,
    head: Box<dyn StageRunner>,
}

/// A model cut into stages, from which walks are streamed.
pub struct StreamingEmbedder {
    stages: Arc<Stages>,
    orientation: Orientation,
    /// `[parts, channels]` of its embeddings.
    embedding_shape: (usize, usize),
    description: String,
}

impl StreamingEmbedder {
    /// `model` on `backend` with `threads` CPU threads, chosen as [`crate::open_embedder`] chooses.
    /// Streams run in f32 or in the model's own int8: `precision` f16 is refused.
    pub fn load(
        model: &Path,
        backend: crate::Backend,
        threads: usize,
        precision: crate::Precision,
    ) -> Result<Self> {
        use crate::Backend;
        if precision == crate::Precision::F16 {
            return Err(HstlError::HalfPrecisionNotStreamed);
        }
        match backend {
            Backend::Tract => Self::load_tract(model, threads),
            Backend::Ort => Self::load_ort_or_refuse(model, threads),
            Backend::Auto => Self::load_ort_or_refuse(model, threads).or_else(|e| {
                if !matches!(e, HstlError::OnnxRuntimeNotBuilt) {
                    log::warn!("ONNX Runtime unavailable ({e}); streaming on tract");
                }
                Self::load_tract(model, threads)
            }),
        }
    }

    #[cfg(feature = "ort")]
    fn load_ort_or_refuse(model: &Path, threads: usize) -> Result<Self> {
        Self::load_onnxruntime(model, threads)
    }

    #[cfg(not(feature = "ort"))]
    fn load_ort_or_refuse(_: &Path, _: usize) -> Result<Self> {
        Err(HstlError::OnnxRuntimeNotBuilt)
    }

    /// `model` (written by `hstl export` or `calibrate quantize`) on tract, on `threads` threads.
    pub fn load_tract(model: &Path, threads: usize) -> Result<Self> {
        let proto = crate::backend::tract::read_proto(model)?;
        let executor = if threads <= 1 {
            Executor::SingleThread
        } else {
            Executor::multithread(threads)
        };
        let description = describe("tract", &proto, threads);
        Self::from_cut(&proto, description, |graph, label| {
            Ok(Box::new(TractGraph::from_proto(
                graph,
                label,
                executor.clone(),
            )?))
        })
    }

    /// `model` on ONNX Runtime (TensorRT, CUDA or the CPU, as [`crate::Backend::Ort`]), on
    /// `threads` CPU threads.
    #[cfg(feature = "ort")]
    pub fn load_onnxruntime(model: &Path, threads: usize) -> Result<Self> {
        use crate::backend::onnxruntime::OrtGraph;
        let proto = crate::backend::tract::read_proto(model)?;
        let cache = model.with_extension("stream-trt-cache");
        let description = describe("ONNX Runtime", &proto, threads);
        Self::from_cut(&proto, description, |graph, label| {
            Ok(Box::new(OrtGraph::from_proto(
                &graph, label, &cache, threads,
            )?))
        })
    }

    fn from_cut(
        proto: &tract_onnx::pb::ModelProto,
        description: String,
        mut runner: impl FnMut(tract_onnx::pb::ModelProto, &str) -> Result<Box<dyn StageRunner>>,
    ) -> Result<Self> {
        let cut: Cut = cut::cut(proto)?;
        let stages = cut
            .stages
            .iter()
            .cloned()
            .map(|stage| Ok((stage.kind, runner(stage.graph, &stage.output)?)))
            .collect::<Result<_>>()?;
        let pooled = (0..cut.stages.len())
            .map(|stage| cut.maxima.contains(&stage))
            .collect();
        let mut embedder = StreamingEmbedder {
            stages: Arc::new(Stages {
                stages,
                pooled,
                maxima: cut.maxima,
                head: runner(cut.head, "head")?,
            }),
            orientation: crate::backend::tract::orientation_of(proto)?,
            embedding_shape: (0, 0),
            description,
        };
        let mut probe = embedder.stream();
        for _ in 0..MIN_FRAMES {
            probe.push(&[0.0; INPUT_HEIGHT * INPUT_WIDTH])?;
        }
        let embedding = probe.embedding()?;
        embedder.embedding_shape = (embedding.parts(), embedding.channels());
        Ok(embedder)
    }

    /// How the model wants walks oriented (its metadata).
    pub fn orientation(&self) -> Orientation {
        self.orientation
    }

    /// `(parts, channels)` of its embeddings.
    pub fn embedding_shape(&self) -> (usize, usize) {
        self.embedding_shape
    }

    /// The runtime, its threads and the arithmetic, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// A new walk.
    pub fn stream(&self) -> WalkStream {
        let levels = (0..=self.stages.stages.len())
            .map(|level| Level {
                kept: VecDeque::new(),
                finals: 0,
                keep: match self.stages.stages.get(level) {
                    Some((StageKind::Convolution, _)) => CONVOLUTION_CONTEXT,
                    Some((StageKind::FrameAggregation, _)) => AGGREGATION_CONTEXT,
                    None => 0,
                },
            })
            .collect();
        WalkStream {
            embedder: Arc::clone(&self.stages),
            levels,
            maxima: vec![None; self.stages.stages.len()],
        }
    }
}

/// The positions of one level (the frames, or a stage's output) known for good: how many, and the
/// last few, `[1, C, 1, H, W]` each.
struct Level {
    kept: VecDeque<ArrayD<f32>>,
    finals: usize,
    keep: usize,
}

impl Level {
    fn push(&mut self, position: ArrayD<f32>) {
        self.finals += 1;
        self.kept.push_back(position);
        while self.kept.len() > self.keep {
            self.kept.pop_front();
        }
    }

    /// Final position `index`, which must still be kept.
    fn get(&self, index: usize) -> &ArrayD<f32> {
        let first = self.finals - self.kept.len();
        &self.kept[index - first]
    }
}

/// One walk through a [`StreamingEmbedder`]: silhouettes in one at a time, the embedding of every
/// frame so far whenever asked. Its memory does not grow with the walk.
pub struct WalkStream {
    embedder: Arc<Stages>,
    /// Level 0: the frames; level `s + 1`: the output of stage `s`.
    levels: Vec<Level>,
    /// Per stage: the maximum over time of its final positions, `[1, C, H, W]`.
    maxima: Vec<Option<ArrayD<f32>>>,
}

impl WalkStream {
    /// Frames seen so far.
    pub fn frames(&self) -> usize {
        self.levels[0].finals
    }

    /// Float values the stream holds (the positions later ones read, and the running maxima):
    /// bounded, whatever the walk's length.
    pub fn held_values(&self) -> usize {
        let kept: usize = self
            .levels
            .iter()
            .flat_map(|level| &level.kept)
            .map(ArrayD::len)
            .sum();
        kept + self.maxima.iter().flatten().map(ArrayD::len).sum::<usize>()
    }

    /// Forgets every frame taken: the stream starts a new walk on the same network.
    pub fn restart(&mut self) {
        for level in &mut self.levels {
            level.kept.clear();
            level.finals = 0;
        }
        self.maxima.iter_mut().for_each(|maximum| *maximum = None);
    }

    /// Takes the next silhouette, `64 × 44` values in `[0, 1]` as the network reads them (row by
    /// row), and runs every stage position it completes.
    pub fn push(&mut self, silhouette: &[f32]) -> Result<()> {
        self.push_frames(silhouette)
    }

    /// Takes the next silhouettes, consecutive frames of `64 × 44` values each, and runs every
    /// stage position they complete: each stage once for all of them, which costs less than a call
    /// per frame (each call of a stage has a fixed cost) and gives the same positions.
    pub fn push_frames(&mut self, silhouettes: &[f32]) -> Result<()> {
        let per_frame = INPUT_HEIGHT * INPUT_WIDTH;
        if silhouettes.is_empty() || !silhouettes.len().is_multiple_of(per_frame) {
            return Err(HstlError::Inference(format!(
                "{} values are not whole silhouettes of {INPUT_HEIGHT} x {INPUT_WIDTH}",
                silhouettes.len()
            )));
        }
        let frames = silhouettes
            .chunks_exact(per_frame)
            .map(|frame| {
                ArrayD::from_shape_vec(IxDyn(&[1, 1, 1, INPUT_HEIGHT, INPUT_WIDTH]), frame.to_vec())
                    .expect("the length was checked")
            })
            .collect();
        self.settle(0, frames)
    }

    /// `positions` are the next final positions of level `level`: store them, fold them into
    /// their stage's maximum, and run, in one call of the next stage, every position they complete.
    fn settle(&mut self, level: usize, positions: Vec<ArrayD<f32>>) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        if level > 0 && self.embedder.pooled[level - 1] {
            for position in &positions {
                fold_maximum(&mut self.maxima[level - 1], position);
            }
        }
        let completed = match self.embedder.stages.get(level) {
            Some((kind, runner)) => completed_by(
                *kind,
                runner.as_ref(),
                &self.levels[level],
                &self.levels[level + 1],
                &positions,
            )?,
            None => Vec::new(),
        };
        for position in positions {
            self.levels[level].push(position);
        }
        self.settle(level + 1, completed)
    }

    /// The embedding of every frame so far, as the whole network gives it for these frames.
    pub fn embedding(&self) -> Result<Embedding> {
        let frames = self.frames();
        if frames < MIN_FRAMES {
            return Err(HstlError::Inference(format!(
                "a walk of {frames} frames has no embedding yet (it needs {MIN_FRAMES})"
            )));
        }
        let mut maxima = self.maxima.clone();
        // The positions of the current level that are not final, `[1, C, T, H, W]` (none for the
        // frames), and the level's length.
        let mut open: Option<ArrayD<f32>> = None;
        let mut length = frames;
        for (stage, (kind, runner)) in self.embedder.stages.iter().enumerate() {
            let input = &self.levels[stage];
            let settled = self.levels[stage + 1].finals;
            let position = |j: usize| match &open {
                Some(open) if j >= input.finals => frame_of(open, j - input.finals),
                _ => input.get(j).clone(),
            };
            let (output_length, completed) = match kind {
                StageKind::Convolution => {
                    let completed = (settled < length).then(|| {
                        let zeros = ArrayD::zeros(position(settled).raw_dim());
                        let mut window = vec![match settled {
                            0 => zeros.clone(),
                            _ => position(settled - 1),
                        }];
                        window.extend((settled..length).map(position));
                        window.push(zeros);
                        let views: Vec<_> = window.iter().map(|p| p.view()).collect();
                        runner.run(vec![join(&views)])
                    });
                    (length, completed)
                }
                StageKind::FrameAggregation => {
                    let output_length = length / 3;
                    let completed = (settled < output_length).then(|| {
                        let start = (3 * settled).saturating_sub(3);
                        let window: Vec<_> = (start..length).map(position).collect();
                        let views: Vec<_> = window.iter().map(|p| p.view()).collect();
                        runner.run(vec![join(&views)]).map(|outputs| {
                            let skip = (3 * settled - start) / 3;
                            outputs
                                .into_iter()
                                .map(|o| o.slice_axis(Axis(2), (skip..).into()).to_owned())
                                .collect()
                        })
                    });
                    (output_length, completed)
                }
            };
            open = match completed {
                Some(outputs) => {
                    let output = only(outputs?)?;
                    if self.embedder.pooled[stage] {
                        for t in 0..output.shape()[2] {
                            fold_maximum(&mut maxima[stage], &frame_of(&output, t));
                        }
                    }
                    Some(output)
                }
                None => None,
            };
            length = output_length;
        }
        let head_inputs = self
            .embedder
            .maxima
            .iter()
            .map(|&stage| {
                maxima[stage].clone().ok_or_else(|| {
                    HstlError::Inference(format!("stage {stage} has no position yet"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embedding = only(self.embedder.head.run(head_inputs)?)?;
        match embedding.shape() {
            &[1, parts, channels] => {
                Embedding::new(parts, channels, embedding.iter().copied().collect())
            }
            other => Err(HstlError::Inference(format!(
                "the head gave {other:?}, expected [1, parts, channels]"
            ))),
        }
    }
}

/// The positions of a stage's output that `fresh` (the next final positions of its input, which
/// holds the final positions before them) completes, computed in one run of the stage.
fn completed_by(
    kind: StageKind,
    runner: &dyn StageRunner,
    input: &Level,
    output: &Level,
    fresh: &[ArrayD<f32>],
) -> Result<Vec<ArrayD<f32>>> {
    let known = input.finals;
    let finals = known + fresh.len();
    let position = |j: usize| match j.checked_sub(known) {
        Some(new) => fresh[new].view(),
        None => input.get(j).view(),
    };
    let settled = output.finals;
    match kind {
        // Output t reads t - 1 ..= t + 1: final once input t + 1 is.
        StageKind::Convolution => {
            let Some(last) = finals.checked_sub(2).filter(|&last| last >= settled) else {
                return Ok(Vec::new());
            };
            let zeros;
            let before = match settled {
                0 => {
                    zeros = ArrayD::zeros(position(0).raw_dim());
                    zeros.view()
                }
                _ => position(settled - 1),
            };
            let mut views = vec![before];
            views.extend((settled..=last + 1).map(position));
            let run = only(runner.run(vec![join(&views)])?)?;
            Ok((0..=last - settled).map(|t| frame_of(&run, t)).collect())
        }
        // Output i reads 3i - 1 ..= 3i + 3: final once input 3i + 3 is.
        StageKind::FrameAggregation => {
            let Some(last) = (finals.saturating_sub(1) / 3)
                .checked_sub(1)
                .filter(|&last| last >= settled)
            else {
                return Ok(Vec::new());
            };
            let start = (3 * settled).saturating_sub(3);
            let views: Vec<_> = (start..=3 * last + 3).map(position).collect();
            let run = only(runner.run(vec![join(&views)])?)?;
            Ok((settled..=last)
                .map(|i| frame_of(&run, (3 * i - start) / 3))
                .collect())
        }
    }
}

/// "HSTL streamed on RUNTIME, N thread(s), f32" (or "K int8 convolutions" for a QDQ model).
fn describe(runtime: &str, proto: &tract_onnx::pb::ModelProto, threads: usize) -> String {
    let arithmetic = match proto
        .graph
        .as_ref()
        .map_or(0, crate::model_info::int8_convolution_count)
    {
        0 => "f32".to_string(),
        count => format!("{count} int8 convolutions"),
    };
    format!("HSTL streamed on {runtime}, {threads} thread(s), {arithmetic}")
}

/// Positions `[1, C, 1, H, W]` (or runs of them) joined along time.
fn join(positions: &[tract_ndarray::ArrayViewD<f32>]) -> ArrayD<f32> {
    concatenate(Axis(2), positions).expect("positions of one level have one shape")
}

/// Position `t` of `[1, C, T, H, W]`, as `[1, C, 1, H, W]`.
fn frame_of(sequence: &ArrayD<f32>, t: usize) -> ArrayD<f32> {
    sequence.slice_axis(Axis(2), (t..=t).into()).to_owned()
}

/// `maximum` (`[1, C, H, W]`) raised to position `[1, C, 1, H, W]`.
fn fold_maximum(maximum: &mut Option<ArrayD<f32>>, position: &ArrayD<f32>) {
    let position = position.index_axis(Axis(2), 0);
    match maximum {
        Some(maximum) => maximum.zip_mut_with(&position, |m, &p| *m = m.max(p)),
        None => *maximum = Some(position.to_owned()),
    }
}

/// The one output of a stage.
fn only(outputs: Vec<ArrayD<f32>>) -> Result<ArrayD<f32>> {
    let count = outputs.len();
    let mut outputs = outputs.into_iter();
    match (outputs.next(), outputs.next()) {
        (Some(output), None) => Ok(output),
        _ => Err(HstlError::Inference(format!(
            "a stage gave {count} outputs, expected one"
        ))),
    }
}
