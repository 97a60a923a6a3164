//! Recognising QDQ convolutions in an ONNX model and fusing each into one [`Int8Convolution`] node
//! that tract's loader turns into the operator.

use super::*;

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
        let time_padding = check_geometry(node)?;
        let x_scale = activation_scale(name, input, &graph.node, &producers, &initializers)?;
        let quantize = &graph.node[producers[&input.input[0]]];
        let weight_inputs = weight_inputs(name, weights, &initializers)?;
        let mut inputs = vec![quantize.input[0].clone()];
        inputs.extend(weight_inputs);
        inputs.push(x_scale);
        inputs.extend(node.input.get(2).cloned());
        fused.push((ix, inputs, time_padding));
    }
    let count = fused.len();
    for (ix, inputs, time_padding) in fused {
        let node = &mut graph.node[ix];
        node.op_type = OP_TYPE.to_string();
        node.domain.clear();
        node.attribute = vec![pb::AttributeProto {
            name: TIME_PADDING.into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: time_padding as i64,
            ..Default::default()
        }];
        node.input = inputs;
    }
    remove_unread_qdq_nodes(graph);
    Ok(count)
}

/// The layout [`Int8Convolution`] computes: 3 × 3 × 3, padding 1, stride 1, dilation 1, one group.
fn check_geometry(node: &NodeProto) -> TractResult<bool> {
    let name = &node.name;
    let mut time_padding = true;
    for attribute in &node.attribute {
        let ints = &attribute.ints;
        let fits = match attribute.name.as_str() {
            "kernel_shape" => ints.iter().all(|&k| k == KERNEL as i64) && ints.len() == 3,
            // Padded by 1 everywhere, or (a stream's window) everywhere but in time.
            "pads" => {
                time_padding = ints.first() == Some(&1);
                ints.len() == 6
                    && ints[0] == ints[3]
                    && (0..=1).contains(&ints[0])
                    && [1, 2, 4, 5].iter().all(|&i| ints[i] == 1)
            }
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
    Ok(time_padding)
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
    let time_padding = node
        .attribute
        .iter()
        .find(|a| a.name == TIME_PADDING)
        .is_none_or(|a| a.i != 0);
    Ok((
        expand(FusedConvolution {
            has_bias: node.input.len() == 5,
            time_padding,
        }),
        vec![],
    ))
}

/// The fused node's one attribute: 1 when padded in time (the network), 0 when not (a stream's
/// window).
const TIME_PADDING: &str = "time_padding";

/// The fused node as tract's ONNX front end sees it: inputs `[x, int8 weights, weight scales,
/// input scale, bias?]`, all but `x` constant.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct FusedConvolution {
    has_bias: bool,
    time_padding: bool,
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
        for axis in 3..5 {
            s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
        }
        if self.time_padding {
            s.equals(&outputs[0].shape[2], &inputs[0].shape[2])?;
        } else {
            s.equals(&outputs[0].shape[2], inputs[0].shape[2].bex() - 2.to_dim())?;
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
        let op = if self.time_padding {
            op
        } else {
            op.unpadded_in_time()
        };
        model.wire_node(prefix, op, &inputs[..1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
