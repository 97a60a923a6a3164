//! The model cut at its temporal seams into the graphs a stream runs: each temporal layer (a 3-frame
//! convolution and what follows it up to its activation), the FTA, and the head that turns the
//! temporal maxima into the embedding.
//!
//! Every operator between two seams works frame by frame except the layer's own convolutions (3
//! frames) and the FTA's pooling (stride 3), so each stage graph is exactly the model's nodes between
//! its seams. The convolutions of a layer lose their padding in time: a stream gives each one the
//! frames on both sides itself (real ones, or the zeros of the walk's ends).

use std::collections::{HashMap, HashSet};

use tract_onnx::pb;

use crate::error::{HstlError, Result};
use crate::onnx_graph::{value_info, OUTPUT_NAME};

/// The tensor the first layer reads: the silhouettes `[1, 1, T, 64, 44]` (after the short-clip
/// tiling, which a stream does not need).
const CLIP: &str = "clip";
/// The FTA's output.
const FTA: &str = "fta";

/// What a stage does along time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageKind {
    /// Output frame `t` from input frames `t - 1 ..= t + 1` (zeros beyond the walk).
    Convolution,
    /// Output frame `i` from input frames `3i - 1 ..= 3i + 3` (none beyond the walk), `T / 3` of them.
    FrameAggregation,
}

/// One stage graph: input `[1, C, T, H, W]`, output `[1, C', T', H', W']`.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    pub(crate) kind: StageKind,
    /// The tensor it ends at, as the model names it.
    pub(crate) output: String,
    pub(crate) graph: pb::ModelProto,
}

/// The stages in order, and the head.
#[derive(Debug, Clone)]
pub(crate) struct Cut {
    pub(crate) stages: Vec<Stage>,
    /// For each input of the head in order: the stage whose outputs it is the temporal maximum of.
    pub(crate) maxima: Vec<usize>,
    /// From the temporal maxima to the embedding.
    pub(crate) head: pb::ModelProto,
}

/// Cuts `model`, a graph this project writes (`onnx_graph`), float or int8 QDQ.
pub(crate) fn cut(model: &pb::ModelProto) -> Result<Cut> {
    let not_ours = |what: String| {
        HstlError::Inference(format!(
            "the model cannot be streamed: {what} (streaming needs a model written by `hstl export` or `calibrate quantize`)"
        ))
    };
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| not_ours("it has no graph".into()))?;
    // The seams: every layer's activation, and the FTA.
    let seams: Vec<&str> = graph
        .node
        .iter()
        .filter(|node| node.op_type == "LeakyRelu" || node.name == FTA)
        .filter_map(|node| node.output.first().map(String::as_str))
        .collect();
    if seams.iter().filter(|&&seam| seam == FTA).count() != 1 {
        return Err(not_ours(
            "no frame-level temporal aggregation (`fta`)".into(),
        ));
    }
    let mut stages = Vec::with_capacity(seams.len());
    let mut input = CLIP;
    for &output in &seams {
        let kind = if output == FTA {
            StageKind::FrameAggregation
        } else {
            StageKind::Convolution
        };
        let mut stage = subgraph(model, &[input], &[output]).map_err(not_ours)?;
        if kind == StageKind::Convolution && unpad_in_time(&mut stage) == 0 {
            return Err(not_ours(format!(
                "no 3-frame convolution before `{output}`"
            )));
        }
        stages.push(Stage {
            kind,
            output: output.to_string(),
            graph: stage,
        });
        input = output;
    }
    // The head reads each temporal maximum (a `ReduceMax` over time) of a seam, through identities.
    let identities: HashMap<&str, &str> = graph
        .node
        .iter()
        .filter(|node| node.op_type == "Identity")
        .filter_map(|node| Some((node.output.first()?.as_str(), node.input.first()?.as_str())))
        .collect();
    let mut maxima = Vec::new();
    let mut head_inputs = Vec::new();
    for node in graph.node.iter().filter(|node| node.op_type == "ReduceMax") {
        let (Some(maxed), Some(max)) = (node.input.first(), node.output.first()) else {
            return Err(not_ours(format!("`{}` has no input or output", node.name)));
        };
        let mut source = maxed.as_str();
        while let Some(&earlier) = identities.get(source) {
            source = earlier;
        }
        let stage = seams
            .iter()
            .position(|&seam| seam == source)
            .ok_or_else(|| not_ours(format!("`{}` is not the maximum of a layer", node.name)))?;
        maxima.push(stage);
        head_inputs.push(max.as_str());
    }
    let head = subgraph(model, &head_inputs, &[OUTPUT_NAME]).map_err(not_ours)?;
    Ok(Cut {
        stages,
        maxima,
        head,
    })
}

/// The nodes of `model` that compute `outputs` from `inputs` (and initializers), as a model of its
/// own with those inputs and outputs.
fn subgraph(
    model: &pb::ModelProto,
    inputs: &[&str],
    outputs: &[&str],
) -> std::result::Result<pb::ModelProto, String> {
    let graph = model.graph.as_ref().ok_or("no graph")?;
    let producers: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(index, node)| node.output.iter().map(move |o| (o.as_str(), index)))
        .collect();
    let initializers: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|tensor| (tensor.name.as_str(), tensor))
        .collect();
    let mut kept_nodes = HashSet::new();
    let mut kept_initializers = HashSet::new();
    let mut wanted: Vec<&str> = outputs.to_vec();
    let mut seen = HashSet::new();
    while let Some(tensor) = wanted.pop() {
        if tensor.is_empty() || !seen.insert(tensor) || inputs.contains(&tensor) {
            continue;
        }
        if initializers.contains_key(tensor) {
            kept_initializers.insert(tensor);
            continue;
        }
        let &node = producers
            .get(tensor)
            .ok_or_else(|| format!("`{tensor}` is computed before `{}`", inputs.join("`, `")))?;
        kept_nodes.insert(node);
        wanted.extend(graph.node[node].input.iter().map(String::as_str));
    }
    let node = graph
        .node
        .iter()
        .enumerate()
        .filter(|(index, _)| kept_nodes.contains(index))
        .map(|(_, node)| node.clone())
        .collect();
    let initializer = graph
        .initializer
        .iter()
        .filter(|tensor| kept_initializers.contains(tensor.name.as_str()))
        .cloned()
        .collect();
    Ok(pb::ModelProto {
        ir_version: model.ir_version,
        opset_import: model.opset_import.clone(),
        producer_name: model.producer_name.clone(),
        graph: Some(pb::GraphProto {
            name: format!("{}_{}", graph.name, outputs.join("_")),
            node,
            initializer,
            input: inputs.iter().map(|name| value_info(name, None)).collect(),
            output: outputs.iter().map(|name| value_info(name, None)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Removes the padding in time of every 3-frame convolution of `model`; how many there were.
fn unpad_in_time(model: &mut pb::ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let mut changed = 0;
    for node in graph.node.iter_mut().filter(|node| node.op_type == "Conv") {
        let temporal = node
            .attribute
            .iter()
            .any(|a| a.name == "kernel_shape" && a.ints.len() == 3 && a.ints[0] == 3);
        if !temporal {
            continue;
        }
        if let Some(pads) = node.attribute.iter_mut().find(|a| a.name == "pads") {
            pads.ints[0] = 0;
            pads.ints[3] = 0;
            changed += 1;
        }
    }
    changed
}
