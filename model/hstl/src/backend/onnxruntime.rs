//! ONNX Runtime backend (feature `ort`): the library is loaded at run time, so a build needs no
//! ONNX Runtime, CUDA or TensorRT; on a Jetson the same binary uses the TensorRT execution provider
//! when the installed ONNX Runtime has it, then CUDA, then the CPU.
//!
//! The library comes from `ORT_DYLIB_PATH`, else `libonnxruntime.so` on the loader path. The API
//! level is 20, so ONNX Runtime 1.20 and newer load (Jetson builds lag the PyPI releases).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::value::Tensor;
use prost::Message;

use super::tract::NamedOutputs;
use super::Embedder;
use crate::embedding::Embedding;
use crate::error::{HstlError, Result};
use crate::input::Silhouettes;
use crate::variant::{INPUT_HEIGHT, INPUT_WIDTH};

/// Where ONNX Runtime's library is looked for first (then `libonnxruntime.so` on the library
/// path).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";
const DEFAULT_LIBRARY: &str = "libonnxruntime.so";
/// Clip length of the run that checks a model when it is loaded.
const PROBE_FRAMES: usize = 3;

/// HSTL on ONNX Runtime, loaded at run time: TensorRT (engines cached beside the model), then CUDA,
/// then the CPU.
pub struct OrtEmbedder {
    session: Mutex<Session>,
    input_name: String,
    output_names: Vec<String>,
    embedding_shape: (usize, usize),
    threads: usize,
    provider: &'static str,
    orientation: crate::input::Orientation,
}

fn ort_error(e: impl std::fmt::Display) -> HstlError {
    HstlError::OnnxRuntime(e.to_string())
}

/// Loads the ONNX Runtime library once per process.
fn runtime() -> Result<&'static Environment> {
    static LOADED: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let library = std::env::var_os(LIBRARY_ENV)
                .map_or_else(|| PathBuf::from(DEFAULT_LIBRARY), PathBuf::from);
            ort::init_from(&library)
                .map_err(|e| format!("cannot load {} (set {LIBRARY_ENV}): {e}", library.display()))?
                .with_name("hstl")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HstlError::OnnxRuntime(e.clone()))
}

/// A clip as a model's input, `[1, T, 64, 44]`.
fn model_input(clip: &Silhouettes) -> Result<Tensor<f32>> {
    Tensor::from_array((
        [1, clip.frames(), INPUT_HEIGHT, INPUT_WIDTH],
        clip.as_slice().to_vec(),
    ))
    .map_err(ort_error)
}

/// Whether `proto` is a QDQ model (`calibrate quantize`). TensorRT builds int8 layers only with its
/// INT8 flag set; their scales are the file's own (explicit quantization), so it needs no calibration
/// table.
fn is_quantized(proto: &tract_onnx::pb::ModelProto) -> bool {
    proto.graph.as_ref().is_some_and(|graph| {
        graph
            .node
            .iter()
            .any(|node| node.op_type == "QuantizeLinear")
    })
}

/// A session on TensorRT (engines cached in `cache`, int8 layers when `int8`), CUDA or the CPU,
/// whichever the installed ONNX Runtime offers first, with `threads` CPU threads.
fn session_builder(
    environment: &Environment,
    threads: usize,
    cache: &Path,
    int8: bool,
) -> Result<ort::session::builder::SessionBuilder> {
    let providers = [
        ep::TensorRT::default()
            .with_engine_cache(true)
            .with_engine_cache_path(cache.display())
            .with_int8(int8)
            .build(),
        ep::CUDA::default().build(),
        ep::CPU::default().build(),
    ];
    Session::builder(environment)
        .map_err(ort_error)?
        .with_intra_threads(threads.max(1))
        .map_err(ort_error)?
        .with_execution_providers(providers)
        .map_err(ort_error)
}

/// A graph cut from an HSTL model (a stage of [`crate::streaming`]) on ONNX Runtime.
pub struct OrtGraph {
    session: Mutex<Session>,
    label: String,
}

impl OrtGraph {
    /// `proto` on ONNX Runtime with `threads` CPU threads; TensorRT engines, when it runs them,
    /// are cached in `cache`. `label` names it in errors.
    pub fn from_proto(
        proto: &tract_onnx::pb::ModelProto,
        label: &str,
        cache: &Path,
        threads: usize,
    ) -> Result<Self> {
        let session = session_builder(runtime()?, threads, cache, is_quantized(proto))?
            .commit_from_memory(&proto.encode_to_vec())
            .map_err(|e| {
                HstlError::Inference(format!("{label}: ONNX Runtime cannot open it: {e}"))
            })?;
        Ok(OrtGraph {
            session: Mutex::new(session),
            label: label.to_string(),
        })
    }

    /// Runs the graph on `inputs` `(shape, values)` in its input order; its outputs in its output
    /// order.
    pub fn run(&self, inputs: Vec<(Vec<usize>, Vec<f32>)>) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let fail = |e: ort::Error| HstlError::Inference(format!("{}: {e}", self.label));
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let names: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        let values = names
            .into_iter()
            .zip(inputs)
            .map(|(name, (shape, data))| {
                Ok((
                    name,
                    Tensor::from_array((shape, data)).map_err(fail)?.into_dyn(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let outputs = session.run(values).map_err(fail)?;
        outputs
            .values()
            .map(|value| {
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(fail)?;
                Ok((
                    shape.iter().map(|&d| d.max(0) as usize).collect(),
                    data.to_vec(),
                ))
            })
            .collect()
    }
}

impl OrtEmbedder {
    /// Opens `path` with TensorRT (engines cached in `<model>.trt-cache/`), CUDA or the CPU,
    /// whichever the installed ONNX Runtime offers first; `threads` sizes the CPU thread pool.
    pub fn load(path: &Path, threads: usize) -> Result<Self> {
        let environment = runtime()?;
        let threads = threads.max(1);
        let provider = if ep::TensorRT::is_available().unwrap_or(false) {
            "TensorRT"
        } else if ep::CUDA::is_available().unwrap_or(false) {
            "CUDA"
        } else {
            "CPU"
        };
        let bad = |message: String| HstlError::BadModel {
            path: path.to_path_buf(),
            message,
        };
        let proto = super::tract::read_proto(path)?;
        let session = session_builder(
            environment,
            threads,
            &path.with_extension("trt-cache"),
            is_quantized(&proto),
        )?
        .commit_from_memory(&proto.encode_to_vec())
        .map_err(|e| bad(format!("ONNX Runtime cannot open it: {e}")))?;
        let input_name = match session.inputs() {
            [only] => only.name().to_string(),
            inputs => {
                return Err(bad(format!(
                    "expected one input (silhouettes [1, T, 64, 44]), found {}",
                    inputs.len()
                )))
            }
        };
        if let ort::value::ValueType::Tensor { shape, .. } = session.inputs()[0].dtype() {
            if shape.len() != 4 {
                return Err(bad(format!(
                    "input has rank {}; an HSTL model takes silhouettes [1, T, 64, 44]",
                    shape.len()
                )));
            }
        }
        let output_names = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let mut embedder = OrtEmbedder {
            session: Mutex::new(session),
            input_name,
            output_names,
            embedding_shape: (0, 0),
            threads,
            provider,
            orientation: super::tract::orientation_of(&proto)?,
        };
        let probe = Silhouettes::from_f32(
            &[PROBE_FRAMES, INPUT_HEIGHT, INPUT_WIDTH],
            &vec![0.0; PROBE_FRAMES * INPUT_HEIGHT * INPUT_WIDTH],
        )?;
        let (_, shape, _) = embedder
            .run_all_outputs(&probe)
            .map_err(|e| bad(e.to_string()))?
            .swap_remove(0);
        embedder.embedding_shape = match shape.as_slice() {
            [1, parts, channels] => (*parts, *channels),
            other => {
                return Err(bad(format!(
                    "output is {other:?}, expected embeddings [1, parts, channels]"
                )))
            }
        };
        Ok(embedder)
    }

    /// Runs the model and returns every graph output (the embedding first).
    pub fn run_all_outputs(&self, clip: &Silhouettes) -> Result<NamedOutputs> {
        let input = model_input(clip)?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(|e| HstlError::Inference(e.to_string()))?;
        self.output_names
            .iter()
            .map(|name| {
                let value = outputs
                    .get(name)
                    .ok_or_else(|| HstlError::Inference(format!("no output {name}")))?;
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(ort_error)?;
                let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
                Ok((name.clone(), shape, data.to_vec()))
            })
            .collect()
    }
}

/// What one run of a model on ONNX Runtime computed in float, node output by node output.
#[derive(Debug, Default)]
pub struct FloatOutputs {
    /// Float node outputs looked at.
    pub checked: usize,
    /// Those holding subnormals: `(operator, output, subnormal values, values)`, in the graph's order.
    pub subnormal: Vec<(String, String, usize, usize)>,
}

/// The float outputs of every node of `path`'s graph in one run on `clip` on ONNX Runtime, and
/// those holding subnormals. Every node output is made a graph output, so each is computed and
/// handed back (a fused kernel keeps some of them in registers: the hot path holds no more values
/// than these).
pub fn subnormal_outputs(path: &Path, clip: &Silhouettes) -> Result<FloatOutputs> {
    let mut proto = super::tract::read_proto(path)?;
    let int8 = is_quantized(&proto);
    let graph = proto.graph.as_mut().ok_or_else(|| HstlError::BadModel {
        path: path.to_path_buf(),
        message: "no graph".to_string(),
    })?;
    let declared: std::collections::HashSet<String> =
        graph.output.iter().map(|o| o.name.clone()).collect();
    let observed: Vec<(String, String)> = graph
        .node
        .iter()
        .flat_map(|node| {
            node.output
                .iter()
                .filter(|name| !name.is_empty() && !declared.contains(*name))
                .map(|name| (node.op_type.clone(), name.clone()))
        })
        .collect();
    graph.output.extend(
        observed
            .iter()
            .map(|(_, name)| tract_onnx::pb::ValueInfoProto {
                name: name.clone(),
                ..Default::default()
            }),
    );
    let mut session = session_builder(runtime()?, 1, &path.with_extension("trt-cache"), int8)?
        .commit_from_memory(&proto.encode_to_vec())
        .map_err(|e| HstlError::BadModel {
            path: path.to_path_buf(),
            message: format!("ONNX Runtime cannot open it with every node an output: {e}"),
        })?;
    let input_name = session.inputs()[0].name().to_string();
    let input = model_input(clip)?;
    let outputs = session
        .run(ort::inputs![input_name.as_str() => input])
        .map_err(|e| HstlError::Inference(e.to_string()))?;
    let mut survey = FloatOutputs::default();
    for (op, name) in observed {
        let value = outputs
            .get(name.as_str())
            .ok_or_else(|| HstlError::Inference(format!("no output {name}")))?;
        // Integer tensors (the quantized activations, shapes) cannot be subnormal.
        let Ok((_, values)) = value.try_extract_tensor::<f32>() else {
            continue;
        };
        survey.checked += 1;
        let subnormal = super::negligible::subnormal_count(values);
        if subnormal > 0 {
            survey.subnormal.push((op, name, subnormal, values.len()));
        }
    }
    Ok(survey)
}

impl Embedder for OrtEmbedder {
    fn embed(&self, clip: &Silhouettes) -> Result<Embedding> {
        let (_, shape, values) = self.run_all_outputs(clip)?.swap_remove(0);
        super::embedding_from_output(&shape, values)
    }

    fn embedding_shape(&self) -> (usize, usize) {
        self.embedding_shape
    }

    fn describe(&self) -> String {
        format!(
            "ONNX Runtime, {} execution provider first, {} CPU thread(s)",
            self.provider, self.threads
        )
    }

    fn orientation(&self) -> crate::input::Orientation {
        self.orientation
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::onnx_graph::{write_model, ExportOptions};
    use crate::variant::Variant;
    use crate::weights::Weights;

    #[test]
    fn tensorrt_is_asked_for_int8_exactly_for_a_qdq_model() {
        let dir = tempfile::tempdir().unwrap();
        let weights = Weights::seeded(Variant::Compact, 3);
        let float = dir.path().join("float.onnx");
        write_model(&weights, &ExportOptions::default(), &float).unwrap();
        let int8 = dir.path().join("int8.onnx");
        let options = ExportOptions {
            int8_convolutions: BTreeMap::from([("arme1.0".to_string(), 0.01)]),
            ..ExportOptions::default()
        };
        write_model(&weights, &options, &int8).unwrap();
        let read = |path| super::super::tract::read_proto(path).unwrap();
        assert!(!is_quantized(&read(&float)));
        assert!(is_quantized(&read(&int8)));
    }
}
