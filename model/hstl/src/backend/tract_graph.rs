//! A graph cut from an HSTL model (a stage of [`crate::streaming`]) on tract: float tensors in and
//! out by position, one optimised plan per set of input shapes, a few kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::int8_convolution;
use super::separable_max_pool::replace_max_pools;
use super::strided_max::replace_max_reductions;
use super::threaded_pow::replace_constant_powers;
use super::tract::{contained, tract_panicked};
use crate::error::{HstlError, Result};

/// Plans kept per graph: a stream's stages see a handful of window lengths.
const MAX_CACHED_PLANS: usize = 6;

type Plan = Arc<TypedRunnableModel>;

/// One cut graph on tract.
pub struct TractGraph {
    model: InferenceModel,
    label: String,
    executor: Executor,
    plans: Mutex<VecDeque<(Vec<Vec<usize>>, Plan)>>,
}

impl TractGraph {
    /// Reads `proto` (its QDQ convolutions fused into int8 ones) to run on `executor`; `label` names
    /// it in errors.
    pub fn from_proto(mut proto: pb::ModelProto, label: &str, executor: Executor) -> Result<Self> {
        let bad = |message: String| HstlError::Inference(format!("{label}: {message}"));
        int8_convolution::fuse_qdq_convolutions(&mut proto).map_err(|e| bad(format!("{e:#}")))?;
        let onnx = int8_convolution::onnx();
        let parsed = contained(|| onnx.parse(&proto, None), tract_panicked)
            .map_err(|e| bad(format!("{e:#}")))?;
        Ok(TractGraph {
            model: parsed.model,
            label: label.to_string(),
            executor,
            plans: Mutex::new(VecDeque::new()),
        })
    }

    /// Runs the graph on `inputs` (in the graph's input order); its outputs in its output order.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let plan = self.plan(&shapes)?;
        let values = inputs.into_iter().map(Tensor::into_tvalue).collect();
        let outputs = multithread_tract_scope(self.executor.clone(), || plan.run(values))
            .map_err(|e| HstlError::Inference(format!("{}: {e:#}", self.label)))?;
        Ok(outputs.into_iter().map(TValue::into_tensor).collect())
    }

    fn plan(&self, shapes: &[Vec<usize>]) -> Result<Plan> {
        let mut plans = self
            .plans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, plan)) = plans.iter().find(|(s, _)| s == shapes) {
            return Ok(plan.clone());
        }
        let plan = contained(
            || {
                let mut model = self.model.clone();
                for (index, shape) in shapes.iter().enumerate() {
                    model = model.with_input_fact(index, f32::fact(shape).into())?;
                }
                let mut typed = model.into_typed()?.into_decluttered()?;
                replace_max_reductions(&mut typed)?;
                replace_max_pools(&mut typed)?;
                replace_constant_powers(&mut typed)?;
                typed.into_optimized()?.into_runnable()
            },
            tract_panicked,
        )
        .map_err(|e| {
            HstlError::Inference(format!(
                "{}: no plan for inputs {shapes:?}: {e:#}",
                self.label
            ))
        })?;
        if plans.len() >= MAX_CACHED_PLANS {
            plans.pop_front();
        }
        plans.push_back((shapes.to_vec(), plan.clone()));
        Ok(plan)
    }
}
