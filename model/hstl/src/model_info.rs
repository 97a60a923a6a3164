//! What a model or checkpoint file is: variant, embedding shape, parameter count, cost.

use std::fmt;
use std::path::Path;

use prost::Message;
use tract_onnx::pb;

use crate::checkpoint;
use crate::error::{HstlError, Result};
use crate::onnx_graph::METADATA_VARIANT;
use crate::variant::{Variant, ALL_VARIANTS};
use crate::weights::Weights;

/// What a model file is.
#[derive(Debug, Clone, PartialEq)]
pub enum FileKind {
    /// A PyTorch checkpoint.
    Checkpoint {
        /// The training iteration it was saved at, when recorded.
        iteration: Option<i64>,
        /// Identities of its training classifier, when it has one.
        training_classes: Option<usize>,
    },
    /// An ONNX model.
    Onnx {
        /// Its ONNX opset.
        opset: i64,
        /// The tool that wrote it.
        producer: String,
        /// Convolutions that read their input through int8 (`QuantizeLinear` nodes); 0 for a
        /// float model.
        int8_convolutions: usize,
    },
}

/// What `hstl inspect` reports about a checkpoint or an ONNX model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Checkpoint or ONNX, with what each records.
    pub kind: FileKind,
    /// The variant, when it can be told.
    pub variant: Option<Variant>,
    /// `(parts, channels)` of the embedding.
    pub embedding_shape: (usize, usize),
    /// Elements of the inference weights (ONNX: of all float and int8 initializers but the int8
    /// zero points).
    pub parameters: usize,
}

impl ModelInfo {
    /// Inspects a `.pt` checkpoint or an `.onnx` model (decided by content, not by name).
    pub fn of_path(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| HstlError::io(path, e))?;
        if bytes.starts_with(b"PK") {
            let state = checkpoint::read_state_dict(path)?;
            let iteration = state.iteration;
            let weights = Weights::from_state_dict(state, None)?;
            let arch = weights.variant().architecture();
            return Ok(ModelInfo {
                kind: FileKind::Checkpoint {
                    iteration,
                    training_classes: weights.training_classes(),
                },
                variant: Some(weights.variant()),
                embedding_shape: (arch.parts(), arch.embedding_channels),
                parameters: weights.element_count(),
            });
        }
        let model = pb::ModelProto::decode(bytes.as_slice()).map_err(|e| HstlError::BadModel {
            path: path.to_path_buf(),
            message: format!("neither a zip checkpoint nor an ONNX protobuf: {e}"),
        })?;
        Self::of_onnx(&model).map_err(|message| HstlError::BadModel {
            path: path.to_path_buf(),
            message,
        })
    }

    fn of_onnx(model: &pb::ModelProto) -> std::result::Result<Self, String> {
        let graph = model.graph.as_ref().ok_or("the model has no graph")?;
        let output = graph.output.first().ok_or("the graph has no output")?;
        let dims: Vec<Option<i64>> = match output.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(t)) => t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => vec![],
        };
        let embedding_shape = match dims.as_slice() {
            [_, Some(p), Some(c)] => (*p as usize, *c as usize),
            _ => {
                return Err(format!(
                    "output `{}` is not declared as [1, parts, channels]",
                    output.name
                ))
            }
        };
        let declared = model
            .metadata_props
            .iter()
            .find(|p| p.key == METADATA_VARIANT);
        let variant = match declared {
            Some(prop) => Some(prop.value.parse::<Variant>().map_err(|e| e.to_string())?),
            None => ALL_VARIANTS.into_iter().find(|v| {
                let a = v.architecture();
                (a.parts(), a.embedding_channels) == embedding_shape
            }),
        };
        let (float, int8) = (
            pb::tensor_proto::DataType::Float as i32,
            pb::tensor_proto::DataType::Int8 as i32,
        );
        let parameters = graph
            .initializer
            .iter()
            .filter(|t| {
                t.data_type == float || (t.data_type == int8 && !t.name.ends_with("zero_point"))
            })
            .map(|t| t.dims.iter().product::<i64>().max(0) as usize)
            .sum();
        let int8_convolutions = int8_convolution_count(graph);
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(0, |o| o.version);
        Ok(ModelInfo {
            kind: FileKind::Onnx {
                opset,
                producer: model.producer_name.clone(),
                int8_convolutions,
            },
            variant,
            embedding_shape,
            parameters,
        })
    }

    /// Multiply–accumulates for a clip of `frames` frames, when the variant is known.
    pub fn macs(&self, frames: usize) -> Option<u64> {
        self.variant.map(|v| v.architecture().macs(frames))
    }
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FileKind::Checkpoint {
                iteration,
                training_classes,
            } => {
                writeln!(f, "format:      OpenGait/HSTL checkpoint (torch.save zip)")?;
                if let Some(i) = iteration {
                    writeln!(f, "iteration:   {i}")?;
                }
                if let Some(c) = training_classes {
                    writeln!(
                        f,
                        "classifier:  {c} training identities (Head1, not used at inference)"
                    )?;
                }
            }
            FileKind::Onnx {
                opset,
                producer,
                int8_convolutions,
            } => {
                writeln!(
                    f,
                    "format:      ONNX, opset {opset}, producer {:?}",
                    producer
                )?;
                match int8_convolutions {
                    0 => writeln!(f, "precision:   float32")?,
                    n => writeln!(
                        f,
                        "precision:   int8 QDQ in {n} convolutions (weights per output channel), float32 elsewhere"
                    )?,
                }
            }
        }
        match self.variant {
            Some(v) => writeln!(f, "variant:     {v}")?,
            None => writeln!(f, "variant:     unknown (not one of the published heads)")?,
        }
        let (p, c) = self.embedding_shape;
        writeln!(f, "embedding:   {p} parts x {c} channels")?;
        write!(f, "parameters:  {}", self.parameters)
    }
}

/// The QDQ convolutions of `graph` (`calibrate quantize` writes one `QuantizeLinear` per
/// convolution, on its input).
pub(crate) fn int8_convolution_count(graph: &pb::GraphProto) -> usize {
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear")
        .count()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::onnx_graph::{write_model, ExportOptions};

    #[test]
    fn an_int8_model_shows_its_precision_and_keeps_its_parameter_count() {
        let dir = tempfile::tempdir().unwrap();
        let weights = Weights::seeded(Variant::Compact, 1);
        let float = dir.path().join("float.onnx");
        write_model(&weights, &ExportOptions::default(), &float).unwrap();
        let int8 = dir.path().join("int8.onnx");
        let options = ExportOptions {
            int8_convolutions: BTreeMap::from([
                ("arme1.0".to_string(), 0.01),
                ("arme2.0.conv0".to_string(), 0.02),
            ]),
            ..ExportOptions::default()
        };
        write_model(&weights, &options, &int8).unwrap();
        let (float, int8) = (
            ModelInfo::of_path(&float).unwrap(),
            ModelInfo::of_path(&int8).unwrap(),
        );
        assert!(
            float.to_string().contains("precision:   float32"),
            "{float}"
        );
        assert!(
            int8.to_string().contains("int8 QDQ in 2 convolutions"),
            "{int8}"
        );
        let scales = 2 + 16 + 16;
        assert_eq!(int8.parameters, float.parameters + scales);
    }
}
