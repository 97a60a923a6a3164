//! Builds the HSTL network as a standard ONNX model (opset 17) from [`Weights`].
//!
//! Interface: input `sils` float32 `[1, T, 64, 44]` (T symbolic, any T ≥ 1), output `embeddings`
//! float32 `[1, parts, channels]`. Each reference block maps to plain ONNX operators, so that any
//! ONNX runtime can execute it: band-split convolutions are `Split` → `Conv` per band → `Concat`,
//! GeM is `Clip` → `Pow` → `ReduceMean` → `Pow`, the FTA branch softmax is a `Softmax` over a stacked
//! axis, and `SeparateFCs` is one batched `MatMul`.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use tract_onnx::pb;

use crate::error::{HstlError, Result};
use crate::precision::quantize_per_channel;
use crate::variant::{ConvStage, PoolingLevel, INPUT_HEIGHT, INPUT_WIDTH};
use crate::weights::Weights;

/// The model's input: silhouettes `[1, T, 64, 44]`.
pub const INPUT_NAME: &str = "sils";
/// The model's output: the embedding `[1, parts, channels]`.
pub const OUTPUT_NAME: &str = "embeddings";
/// The symbolic length of the input clip.
pub const TIME_SYMBOL: &str = "T";
/// The ONNX opset the graph is written for.
pub const OPSET: i64 = 17;
/// ONNX IR version 8 is the one that goes with opset 17 and is read by every ONNX Runtime since 1.10.
const IR_VERSION: i64 = 8;
/// Metadata key naming the variant.
pub const METADATA_VARIANT: &str = "hstl.variant";
/// Metadata `producer_name` of the models we write.
pub const METADATA_PRODUCER: &str = "hstl";

/// Lower clamp of GeM (`GeMHPP.eps`).
pub const GEM_EPS: f32 = 1e-6;
/// Negative slope of every LeakyReLU, as in the reference.
pub const LEAKY_RELU_SLOPE: f32 = 0.01;
/// BatchNorm's epsilon, as in the reference.
pub const BATCH_NORM_EPS: f32 = 1e-5;
/// FTA branch A: temporal max-pool kernel 3, stride 3.
const FTA_SHORT_KERNEL: i64 = 3;
/// FTA branch B: temporal max-pool kernel 5, stride 3, padding 1.
const FTA_LONG_KERNEL: i64 = 5;
const FTA_STRIDE: i64 = 3;

/// Intermediate tensors that [`ExportOptions::intermediate_outputs`] adds as graph outputs, for
/// parity tests against the reference model.
pub const INTERMEDIATE_OUTPUTS: &[&str] = &[
    "arme1",
    "tmax_arme1",
    "tmax_arme2",
    "fta",
    "tmax_fta",
    "tmax_arme3",
    "astp1",
    "astp2",
    "astp2_fta",
    "astp3",
    "hpp",
    "feat",
    "gait",
];

/// How to write the graph.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Also output every stage's activations (for parity tests against the reference's intermediates).
    pub intermediate_outputs: bool,
    /// Also output the input of every 3-D convolution as `<convolution>.input` (what the int8
    /// calibration observes).
    pub convolution_inputs: bool,
    /// 3-D convolutions written as int8 QDQ, by node name (`arme2.0.conv1`, …), with the symmetric
    /// int8 scale of their input; their weights get one int8 scale per output channel.
    pub int8_convolutions: BTreeMap<String, f32>,
    /// How the model wants walks oriented (recorded in its metadata).
    pub orientation: crate::input::Orientation,
}

/// Suffix of the graph outputs [`ExportOptions::convolution_inputs`] adds.
pub const CONVOLUTION_INPUT_SUFFIX: &str = ".input";

/// The ONNX model of these weights.
pub fn build_model(weights: &Weights, options: &ExportOptions) -> Result<pb::ModelProto> {
    let arch = weights.variant().architecture();
    let mut g = GraphBuilder::new(weights, options);

    let channel_axis = g.const_i64("channel_axis", &[1]);
    let frames = g.node(
        "Unsqueeze",
        "input_5d",
        &[INPUT_NAME, &channel_axis],
        vec![],
    );
    let clip = g.tile_short_clips(&frames);

    let mut x = if arch.input_downsample > 1 {
        let side = arch.input_downsample as i64;
        g.node(
            "AveragePool",
            "input_area_average",
            &[&clip],
            vec![
                ints("kernel_shape", &[1, side, side]),
                ints("strides", &[1, side, side]),
            ],
        )
    } else {
        clip
    };
    for (i, _) in arch.stem.layers.iter().enumerate() {
        x = g.conv3d(
            &x,
            &format!("arme1.{}", 2 * i),
            &format!("arme1.{}.conv3d.weight", 2 * i),
        )?;
        x = g.leaky_relu(&x, &format!("arme1.{}", 2 * i + 1));
    }
    let stem = g.node("Identity", "arme1", &[&x], vec![]);
    let levels = arch.pooling_levels();
    let mut parts = vec![g.astp(&stem, &levels[0], "tmax_arme1")?];
    let mut x = if arch.pool_after_stem {
        g.node(
            "MaxPool",
            "pool0",
            &[&stem],
            vec![
                ints("kernel_shape", &[1, 2, 2]),
                ints("strides", &[1, 2, 2]),
            ],
        )
    } else {
        stem
    };

    x = g.arme_stage(&x, &arch.stages[0])?;
    parts.push(g.astp(&x, &levels[1], "tmax_arme2")?);
    let fta = g.fta(&x, &arch.stages[0].bands)?;
    parts.push(g.astp(&fta, &levels[2], "tmax_fta")?);
    x = fta;
    let mut last_tmax = String::new();
    for (i, stage) in arch.stages[1..].iter().enumerate() {
        x = g.arme_stage(&x, stage)?;
        last_tmax = format!("tmax_arme{}", i + 3);
        parts.push(g.astp(&x, &levels[i + 3], &last_tmax)?);
    }
    parts.push(g.strip_gem(&last_tmax, arch.strips)?);

    let part_refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let feat = g.node("Concat", "feat", &part_refs, vec![int("axis", 2)]);
    let embeddings = g.head(&feat, OUTPUT_NAME)?;
    debug_assert_eq!(embeddings, OUTPUT_NAME);

    let p = arch.parts() as i64;
    let e = arch.embedding_channels as i64;
    let mut outputs = vec![value_info(
        OUTPUT_NAME,
        Some(&[Dim::Fixed(1), Dim::Fixed(p), Dim::Fixed(e)]),
    )];
    if options.intermediate_outputs {
        outputs.extend(
            INTERMEDIATE_OUTPUTS
                .iter()
                .map(|name| value_info(name, None)),
        );
    }
    if options.convolution_inputs {
        outputs.extend(
            g.convolutions
                .iter()
                .map(|name| value_info(&format!("{name}{CONVOLUTION_INPUT_SUFFIX}"), None)),
        );
    }
    if let Some(unknown) = options
        .int8_convolutions
        .keys()
        .find(|name| !g.convolutions.contains(name))
    {
        return Err(HstlError::Int8Export(format!(
            "no 3-D convolution `{unknown}` in the {} graph (there are: {})",
            weights.variant(),
            g.convolutions.join(", ")
        )));
    }
    let input = value_info(
        INPUT_NAME,
        Some(&[
            Dim::Fixed(1),
            Dim::Symbol(TIME_SYMBOL),
            Dim::Fixed(INPUT_HEIGHT as i64),
            Dim::Fixed(INPUT_WIDTH as i64),
        ]),
    );
    let graph = pb::GraphProto {
        name: format!("hstl_{}", weights.variant()),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![input],
        output: outputs,
        ..Default::default()
    };
    Ok(pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: METADATA_PRODUCER.into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "HSTL gait embedding network (Wang et al., ICCV 2023)".into(),
        graph: Some(graph),
        metadata_props: std::iter::once(pb::StringStringEntryProto {
            key: METADATA_VARIANT.into(),
            value: weights.variant().to_string(),
        })
        .chain(
            options
                .orientation
                .metadata_value()
                .map(|value| pb::StringStringEntryProto {
                    key: crate::input::Orientation::METADATA_KEY.into(),
                    value: value.into(),
                }),
        )
        .collect(),
        ..Default::default()
    })
}

/// The model of these weights, serialised.
pub fn encode_model(weights: &Weights, options: &ExportOptions) -> Result<Vec<u8>> {
    Ok(build_model(weights, options)?.encode_to_vec())
}

/// Serialises the model of these weights into `path`.
pub fn write_model(weights: &Weights, options: &ExportOptions, path: &Path) -> Result<()> {
    let bytes = encode_model(weights, options)?;
    std::fs::write(path, bytes).map_err(|e| HstlError::io(path, e))
}

pub(crate) enum Dim<'a> {
    Fixed(i64),
    Symbol(&'a str),
}

pub(crate) fn value_info(name: &str, shape: Option<&[Dim]>) -> pb::ValueInfoProto {
    let shape = shape.map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| pb::tensor_shape_proto::Dimension {
                value: Some(match d {
                    Dim::Fixed(v) => pb::tensor_shape_proto::dimension::Value::DimValue(*v),
                    Dim::Symbol(s) => {
                        pb::tensor_shape_proto::dimension::Value::DimParam(s.to_string())
                    }
                }),
                ..Default::default()
            })
            .collect(),
    });
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f: value,
        ..Default::default()
    }
}

struct GraphBuilder<'w> {
    weights: &'w Weights,
    options: &'w ExportOptions,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    convolutions: Vec<String>,
}

impl<'w> GraphBuilder<'w> {
    fn new(weights: &'w Weights, options: &'w ExportOptions) -> Self {
        GraphBuilder {
            weights,
            options,
            nodes: Vec::new(),
            initializers: Vec::new(),
            convolutions: Vec::new(),
        }
    }

    /// Adds a node whose single output is named `name`, and returns that name.
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<pb::AttributeProto>,
    ) -> String {
        self.nodes.push(pb::NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.into()],
            attribute,
            ..Default::default()
        });
        name.to_string()
    }

    fn split(&mut self, x: &str, name: &str, axis: i64, sizes: &[usize]) -> Vec<String> {
        let sizes: Vec<i64> = sizes.iter().map(|&s| s as i64).collect();
        let split = self.const_i64(&format!("{name}.sizes"), &sizes);
        let outputs: Vec<String> = (0..sizes.len()).map(|k| format!("{name}.{k}")).collect();
        self.nodes.push(pb::NodeProto {
            op_type: "Split".into(),
            name: name.into(),
            input: vec![x.into(), split],
            output: outputs.clone(),
            attribute: vec![int("axis", axis)],
            ..Default::default()
        });
        outputs
    }

    fn initializer_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    fn initializer_i8(&mut self, name: &str, shape: &[usize], data: &[i8]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Int8 as i32,
            raw_data: data.iter().map(|&v| v as u8).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    fn const_i64(&mut self, name: &str, values: &[i64]) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: pb::tensor_proto::DataType::Int64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    /// A checkpoint tensor as an initializer named after its state-dict key.
    fn weight(&mut self, key: &str) -> Result<String> {
        let t = self.weights.get(key)?;
        let (shape, data) = (t.shape.clone(), t.data.clone());
        Ok(self.initializer_f32(key, &shape, &data))
    }

    /// The reference repeats a 1-frame clip 3× and a 2-frame clip 2× along time: the repeat
    /// count is ceil(3 / T) = (T + 2) div T, which is 1 for every T ≥ 3.
    fn tile_short_clips(&mut self, frames: &str) -> String {
        let shape = self.node("Shape", "input_shape", &[INPUT_NAME], vec![]);
        let index = self.const_i64("time_axis_index", &[1]);
        let t = self.node(
            "Gather",
            "frame_count",
            &[&shape, &index],
            vec![int("axis", 0)],
        );
        let two = self.const_i64("two", &[2]);
        let t_plus_two = self.node("Add", "frame_count_plus_two", &[&t, &two], vec![]);
        let repeat = self.node("Div", "time_repeats", &[&t_plus_two, &t], vec![]);
        let ones = self.const_i64("ones_2", &[1, 1]);
        let repeats = self.node(
            "Concat",
            "tile_repeats",
            &[&ones, &repeat, &ones],
            vec![int("axis", 0)],
        );
        self.node("Tile", "clip", &[frames, &repeats], vec![])
    }

    fn conv3d(&mut self, x: &str, name: &str, key: &str) -> Result<String> {
        self.convolutions.push(name.to_string());
        if self.options.convolution_inputs {
            let exposed = format!("{name}{CONVOLUTION_INPUT_SUFFIX}");
            self.node("Identity", &exposed, &[x], vec![]);
        }
        let (x, w) = match self.options.int8_convolutions.get(name) {
            Some(&scale) => (self.int8_activation(x, name, scale), self.int8_weight(key)?),
            None => (x.to_string(), self.weight(key)?),
        };
        Ok(self.node(
            "Conv",
            name,
            &[&x, &w],
            vec![
                ints("kernel_shape", &[3, 3, 3]),
                ints("pads", &[1, 1, 1, 1, 1, 1]),
                ints("strides", &[1, 1, 1]),
            ],
        ))
    }

    /// `x` through int8 and back at `scale`: where the runtime may run the convolution in int8.
    fn int8_activation(&mut self, x: &str, name: &str, scale: f32) -> String {
        let scale = self.initializer_f32(&format!("{name}.input_scale"), &[], &[scale]);
        let zero = self.initializer_i8(&format!("{name}.input_zero_point"), &[], &[0]);
        let quantized = self.node(
            "QuantizeLinear",
            &format!("{name}.input_quantized"),
            &[x, &scale, &zero],
            vec![],
        );
        self.node(
            "DequantizeLinear",
            &format!("{name}.input_dequantized"),
            &[&quantized, &scale, &zero],
            vec![],
        )
    }

    /// A weight stored as int8 with one scale per output channel, dequantized in the graph.
    fn int8_weight(&mut self, key: &str) -> Result<String> {
        let t = self.weights.get(key)?;
        let channels = t.shape[0];
        let quantized = quantize_per_channel(&t.data, channels);
        let shape = t.shape.clone();
        let values = self.initializer_i8(&format!("{key}.int8"), &shape, &quantized.values);
        let scales = self.initializer_f32(&format!("{key}.scale"), &[channels], &quantized.scales);
        let zeros = self.initializer_i8(
            &format!("{key}.zero_point"),
            &[channels],
            &vec![0; channels],
        );
        Ok(self.node(
            "DequantizeLinear",
            &format!("{key}.dequantized"),
            &[&values, &scales, &zeros],
            vec![int("axis", 0)],
        ))
    }

    fn leaky_relu(&mut self, x: &str, name: &str) -> String {
        self.node(
            "LeakyRelu",
            name,
            &[x],
            vec![float("alpha", LEAKY_RELU_SLOPE)],
        )
    }

    /// ARME convolutions: each band convolved on its own (zero padding at the band edges),
    /// concatenated back along H, then LeakyReLU.
    fn arme_stage(&mut self, x: &str, stage: &ConvStage) -> Result<String> {
        let mut x = x.to_string();
        for layer in 0..stage.layers.len() {
            let name = format!("{}.{layer}", stage.prefix);
            let bands = self.split(&x, &format!("{name}.split"), 3, &stage.bands);
            let mut outs = Vec::new();
            for (k, band) in bands.iter().enumerate() {
                outs.push(self.conv3d(
                    band,
                    &format!("{name}.conv{k}"),
                    &format!("{name}.conv3d.{k}.conv3d.weight"),
                )?);
            }
            let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
            let joined = self.node(
                "Concat",
                &format!("{name}.concat"),
                &refs,
                vec![int("axis", 3)],
            );
            x = self.leaky_relu(&joined, &name);
        }
        Ok(x)
    }

    /// GeM over each band of a `[1, C, H, W]` map: `[1, C, bands]`.
    fn gem_bands(
        &mut self,
        x: &str,
        name: &str,
        bands: &[usize],
        p_keys: &[String],
    ) -> Result<String> {
        let pieces = if bands.len() > 1 {
            self.split(x, &format!("{name}.split"), 2, bands)
        } else {
            vec![x.to_string()]
        };
        let mut pooled = Vec::new();
        for (k, (piece, p_key)) in pieces.iter().zip(p_keys).enumerate() {
            let band_name = format!("{name}.gem{k}");
            pooled.push(self.gem(piece, &band_name, p_key, &[2, 3], true)?);
        }
        let refs: Vec<&str> = pooled.iter().map(String::as_str).collect();
        let joined = self.node(
            "Concat",
            &format!("{name}.concat"),
            &refs,
            vec![int("axis", 2)],
        );
        let axis = self.const_i64(&format!("{name}.squeeze_axis"), &[3]);
        Ok(self.node("Squeeze", name, &[&joined, &axis], vec![]))
    }

    /// `mean(clamp(x, eps)^p)^(1/p)` over `axes`.
    fn gem(
        &mut self,
        x: &str,
        name: &str,
        p_key: &str,
        axes: &[i64],
        keep_dims: bool,
    ) -> Result<String> {
        let p = self.weights.get(p_key)?.data[0];
        let p_name = self.weight(p_key)?;
        let inv_p = self.initializer_f32(&format!("{p_key}.inverse"), &[1], &[1.0 / p]);
        let eps = self.initializer_f32(&format!("{name}.eps"), &[], &[GEM_EPS]);
        let clamped = self.node("Clip", &format!("{name}.clamp"), &[x, &eps], vec![]);
        let powered = self.node("Pow", &format!("{name}.pow"), &[&clamped, &p_name], vec![]);
        let mean = self.node(
            "ReduceMean",
            &format!("{name}.mean"),
            &[&powered],
            vec![ints("axes", axes), int("keepdims", keep_dims as i64)],
        );
        Ok(self.node("Pow", name, &[&mean, &inv_p], vec![]))
    }

    /// ASTP: temporal max (exposed as `tmax_name`), optional 1×1 projection, GeM per band.
    fn astp(&mut self, x: &str, level: &PoolingLevel, tmax_name: &str) -> Result<String> {
        let tmax = self.node(
            "ReduceMax",
            tmax_name,
            &[x],
            vec![ints("axes", &[2]), int("keepdims", 0)],
        );
        let projected = if level.projects {
            let w = self.weight(&format!("{}.proj.conv.weight", level.name))?;
            self.node(
                "Conv",
                &format!("{}.proj", level.name),
                &[&tmax, &w],
                vec![ints("kernel_shape", &[1, 1])],
            )
        } else {
            tmax
        };
        let p_keys: Vec<String> = (0..level.bands.len())
            .map(|k| format!("{}.hpp.{k}.p", level.name))
            .collect();
        self.gem_bands(&projected, &level.name, &level.bands, &p_keys)
    }

    /// Horizontal-strip GeM with one shared exponent on the last stage's temporal max.
    fn strip_gem(&mut self, tmax: &str, strips: usize) -> Result<String> {
        let channels = self.weights.variant().architecture().last_stage_channels() as i64;
        let shape = self.const_i64("hpp.strip_shape", &[1, channels, strips as i64, -1]);
        let by_strip = self.node("Reshape", "hpp.strips", &[tmax, &shape], vec![]);
        self.gem(&by_strip, "hpp", "HPP.p", &[3], false)
    }

    /// Frame-level temporal aggregation, one FTA per band.
    fn fta(&mut self, x: &str, bands: &[usize]) -> Result<String> {
        let pieces = self.split(x, "fta.split", 3, bands);
        let channels = self.weights.get("fta.mma.0.fcs.0.bias")?.data.len() as i64;
        let mut outs = Vec::new();
        for (k, piece) in pieces.iter().enumerate() {
            let n = format!("fta.mma.{k}");
            let short = self.node(
                "MaxPool",
                &format!("{n}.max3"),
                &[piece],
                vec![
                    ints("kernel_shape", &[FTA_SHORT_KERNEL, 1, 1]),
                    ints("strides", &[FTA_STRIDE, 1, 1]),
                ],
            );
            let long = self.node(
                "MaxPool",
                &format!("{n}.max5"),
                &[piece],
                vec![
                    ints("kernel_shape", &[FTA_LONG_KERNEL, 1, 1]),
                    ints("strides", &[FTA_STRIDE, 1, 1]),
                    ints("pads", &[1, 0, 0, 1, 0, 0]),
                ],
            );
            let sum = self.node("Add", &format!("{n}.sum"), &[&short, &long], vec![]);
            let squeeze = self.node(
                "ReduceMean",
                &format!("{n}.gap"),
                &[&sum],
                vec![ints("axes", &[3, 4]), int("keepdims", 0)],
            );
            let mut logits = Vec::new();
            for branch in 0..2 {
                let w = self.weight(&format!("{n}.fcs.{branch}.weight"))?;
                let b = self.weight(&format!("{n}.fcs.{branch}.bias"))?;
                let z = self.node(
                    "Conv",
                    &format!("{n}.fcs.{branch}"),
                    &[&squeeze, &w, &b],
                    vec![ints("kernel_shape", &[1])],
                );
                let axis = self.const_i64(&format!("{n}.fcs.{branch}.stack_axis"), &[0]);
                logits.push(self.node(
                    "Unsqueeze",
                    &format!("{n}.fcs.{branch}.stacked"),
                    &[&z, &axis],
                    vec![],
                ));
            }
            let stacked = self.node(
                "Concat",
                &format!("{n}.logits"),
                &[&logits[0], &logits[1]],
                vec![int("axis", 0)],
            );
            let attention = self.node(
                "Softmax",
                &format!("{n}.softmax"),
                &[&stacked],
                vec![int("axis", 0)],
            );
            let weights = self.split(&attention, &format!("{n}.attention"), 0, &[1, 1]);
            let shape = self.const_i64(&format!("{n}.attention_shape"), &[1, channels, -1, 1, 1]);
            let mut weighted = Vec::new();
            for (branch, (w, pooled)) in weights.iter().zip([&short, &long]).enumerate() {
                let w = self.node(
                    "Reshape",
                    &format!("{n}.attention{branch}"),
                    &[w, &shape],
                    vec![],
                );
                weighted.push(self.node(
                    "Mul",
                    &format!("{n}.weighted{branch}"),
                    &[&w, pooled],
                    vec![],
                ));
            }
            outs.push(self.node(
                "Add",
                &format!("{n}.out"),
                &[&weighted[0], &weighted[1]],
                vec![],
            ));
        }
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        Ok(self.node("Concat", "fta", &refs, vec![int("axis", 3)]))
    }

    /// `SeparateFCs` (one `[C_in, C_out]` matrix per part), then BatchNorm1d, then `[N, P, C]`.
    fn head(&mut self, feat: &str, output: &str) -> Result<String> {
        let parts_first = self.node(
            "Transpose",
            "head.parts_first",
            &[feat],
            vec![ints("perm", &[2, 0, 1])],
        );
        let fc = self.weight("Head0.fc_bin")?;
        let projected = self.node("MatMul", "head.fc", &[&parts_first, &fc], vec![]);
        let gait = self.node(
            "Transpose",
            "gait",
            &[&projected],
            vec![ints("perm", &[1, 2, 0])],
        );
        let scale = self.weight("Bn.weight")?;
        let bias = self.weight("Bn.bias")?;
        let mean = self.weight("Bn.running_mean")?;
        let var = self.weight("Bn.running_var")?;
        let bn = self.node(
            "BatchNormalization",
            "bn",
            &[&gait, &scale, &bias, &mean, &var],
            vec![float("epsilon", BATCH_NORM_EPS)],
        );
        Ok(self.node("Transpose", output, &[&bn], vec![ints("perm", &[0, 2, 1])]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Variant;

    #[test]
    fn int8_convolutions_are_written_as_qdq_with_int8_weights() {
        let weights = Weights::seeded(Variant::Compact, 7);
        let names = build_model(&weights, &ExportOptions::default())
            .unwrap()
            .graph
            .unwrap()
            .node
            .into_iter()
            .filter(|n| n.attribute.iter().any(|a| a.ints == [3, 3, 3]))
            .map(|n| (n.name, 0.1))
            .collect::<BTreeMap<String, f32>>();
        // The stem, stage 2's two layers of two bands, stage 3's two layers of four bands.
        assert_eq!(names.len(), 1 + 2 * 2 + 2 * 4, "{:?}", names.keys());
        let int8 = ExportOptions {
            int8_convolutions: names,
            ..ExportOptions::default()
        };
        let graph = build_model(&weights, &int8).unwrap().graph.unwrap();
        let count = |op: &str| graph.node.iter().filter(|n| n.op_type == op).count();
        assert_eq!(count("QuantizeLinear"), 13);
        assert_eq!(count("DequantizeLinear"), 2 * 13);
        let int8_weights = graph
            .initializer
            .iter()
            .filter(|t| t.data_type == pb::tensor_proto::DataType::Int8 as i32 && t.dims.len() == 5)
            .count();
        assert_eq!(int8_weights, 13);
    }

    #[test]
    fn an_int8_convolution_the_graph_does_not_have_is_named() {
        let weights = Weights::seeded(Variant::Compact, 7);
        let options = ExportOptions {
            int8_convolutions: BTreeMap::from([("arme9.0.conv0".to_string(), 0.1)]),
            ..ExportOptions::default()
        };
        let error = build_model(&weights, &options).unwrap_err().to_string();
        assert!(
            error.contains("no 3-D convolution `arme9.0.conv0`"),
            "{error}"
        );
        assert!(error.contains("arme2.0.conv0"), "{error}");
    }
}
