//! Weights too small to matter, set to zero as a model is read, so that no subnormal float reaches
//! the hot path.
//!
//! Weight decay drives the weights of dead channels towards zero without ever reaching it: the shipped
//! compact model holds 467 weights between 1.2e-38 and 1e-20 and its int8 export a per-channel scale of
//! 1e-40. Multiplied by activations of order one they give subnormal outputs (a LeakyReLU's slope
//! times a conv output of 1e-38, an int8 channel rescaled by 1e-40), and some cores (Intel's) take a
//! microcode assist on every subnormal they read or write. A weight under [`NEGLIGIBLE_MAGNITUDE`]
//! moves no output by more than about 1e-26 (the widest dot product of HSTL sums fewer than 10^5
//! products of activations under 10^3), far below any parity tolerance, so it is zero here. The file
//! is untouched: the model keeps its SHA-256, its operating point and its galleries.

use tract_onnx::pb;

/// Float weights of smaller magnitude are read as zero.
pub const NEGLIGIBLE_MAGNITUDE: f32 = 1e-30;

/// Sets every float weight of `proto`'s graph under [`NEGLIGIBLE_MAGNITUDE`] to zero; returns how
/// many it set. An int8 weight's channel whose scale is negligible becomes a channel of zeros at
/// scale 1 (ONNX wants positive scales), as `precision::quantize_per_channel` writes one.
pub fn zero_negligible_weights(proto: &mut pb::ModelProto) -> usize {
    let float = pb::tensor_proto::DataType::Float as i32;
    let Some(graph) = proto.graph.as_mut() else {
        return 0;
    };
    let mut zeroed = zero_negligible_int8_channels(graph);
    let scales = int8_weight_scales(graph);
    for tensor in graph
        .initializer
        .iter_mut()
        .filter(|t| t.data_type == float && !scales.contains(&t.name))
    {
        for value in tensor.float_data.iter_mut() {
            zeroed += zero_if_negligible(value);
        }
        for bytes in tensor.raw_data.chunks_exact_mut(4) {
            let mut value = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if zero_if_negligible(&mut value) == 1 {
                bytes.copy_from_slice(&value.to_le_bytes());
                zeroed += 1;
            }
        }
    }
    zeroed
}

/// The `(int8 weights, their per-channel scales)` initializer pairs dequantized along their first
/// axis, as the QDQ export writes convolution weights.
fn int8_weight_pairs(graph: &pb::GraphProto) -> Vec<(usize, usize)> {
    let int8 = pb::tensor_proto::DataType::Int8 as i32;
    let float = pb::tensor_proto::DataType::Float as i32;
    let find = |name: &str| graph.initializer.iter().position(|t| t.name == name);
    graph
        .node
        .iter()
        .filter(|node| node.op_type == "DequantizeLinear" && node.input.len() >= 2)
        .filter(|node| node.attribute.iter().all(|a| a.name != "axis" || a.i == 0))
        .filter_map(|node| {
            let values = find(&node.input[0])?;
            let scales = find(&node.input[1])?;
            let (v, s) = (&graph.initializer[values], &graph.initializer[scales]);
            let per_channel = s.dims.len() == 1 && v.dims.first() == s.dims.first();
            (v.data_type == int8 && s.data_type == float && per_channel && !s.raw_data.is_empty())
                .then_some((values, scales))
        })
        .collect()
}

fn int8_weight_scales(graph: &pb::GraphProto) -> Vec<String> {
    int8_weight_pairs(graph)
        .into_iter()
        .map(|(_, scales)| graph.initializer[scales].name.clone())
        .collect()
}

/// Channels of int8 weights whose scale is negligible: zeros at scale 1. Returns how many.
fn zero_negligible_int8_channels(graph: &mut pb::GraphProto) -> usize {
    let mut zeroed = 0;
    for (values, scales) in int8_weight_pairs(graph) {
        let channels = graph.initializer[scales].raw_data.len() / 4;
        if channels == 0
            || !graph.initializer[values]
                .raw_data
                .len()
                .is_multiple_of(channels)
        {
            continue;
        }
        let per_channel = graph.initializer[values].raw_data.len() / channels;
        for channel in 0..channels {
            let bytes = &mut graph.initializer[scales].raw_data[4 * channel..4 * channel + 4];
            let scale = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if scale == 0.0 || scale.abs() >= NEGLIGIBLE_MAGNITUDE {
                continue;
            }
            bytes.copy_from_slice(&1f32.to_le_bytes());
            graph.initializer[values].raw_data[per_channel * channel..per_channel * (channel + 1)]
                .fill(0);
            zeroed += 1;
        }
    }
    zeroed
}

fn zero_if_negligible(value: &mut f32) -> usize {
    if *value != 0.0 && value.abs() < NEGLIGIBLE_MAGNITUDE {
        *value = 0.0;
        1
    } else {
        0
    }
}

/// How many of `values` are subnormal (nonzero and smaller in magnitude than the least normal f32).
pub fn subnormal_count(values: &[f32]) -> usize {
    values.iter().filter(|v| v.is_subnormal()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initializer(name: &str, values: &[f32], raw: bool) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            dims: vec![values.len() as i64],
            float_data: if raw { vec![] } else { values.to_vec() },
            raw_data: if raw {
                values.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                vec![]
            },
            ..Default::default()
        }
    }

    #[test]
    fn weights_under_the_bound_are_zero_and_every_other_value_is_kept_to_the_bit() {
        let values = [1e-40, -2e-38, 5e-31, 1e-29, -0.25, 0.0, 3.0e38];
        let mut proto = pb::ModelProto {
            graph: Some(pb::GraphProto {
                initializer: vec![
                    initializer("raw", &values, true),
                    initializer("listed", &values, false),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(zero_negligible_weights(&mut proto), 6);
        let graph = proto.graph.unwrap();
        let kept = [0.0, 0.0, 0.0, 1e-29, -0.25, 0.0, 3.0e38];
        assert_eq!(graph.initializer[1].float_data, kept);
        let raw: Vec<f32> = graph.initializer[0]
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(raw, kept);
        assert!(kept.iter().all(|v| v.to_bits() != (-0.0f32).to_bits()));
    }

    #[test]
    fn an_int8_channel_of_negligible_scale_is_zeros_at_scale_one() {
        let mut weights = initializer("w", &[], true);
        weights.data_type = pb::tensor_proto::DataType::Int8 as i32;
        weights.dims = vec![3, 2];
        weights.raw_data = vec![1, 2, 3, 4, 5, 6];
        let scales = initializer("w.scale", &[0.5, 1e-40, 0.25], true);
        let mut proto = pb::ModelProto {
            graph: Some(pb::GraphProto {
                initializer: vec![weights, scales],
                node: vec![pb::NodeProto {
                    op_type: "DequantizeLinear".into(),
                    input: vec!["w".into(), "w.scale".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(zero_negligible_weights(&mut proto), 1);
        let graph = proto.graph.unwrap();
        assert_eq!(graph.initializer[0].raw_data, vec![1, 2, 0, 0, 5, 6]);
        let scales: Vec<f32> = graph.initializer[1]
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(scales, vec![0.5, 1.0, 0.25]);
    }

    #[test]
    fn subnormals_are_counted_and_zero_is_not_one() {
        assert_eq!(subnormal_count(&[1e-40, -1e-39, 0.0, 1.2e-38, 1.0]), 2);
    }
}
