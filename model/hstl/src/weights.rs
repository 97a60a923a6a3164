//! The parameters of one HSTL network, checked against the reference layout of its variant.

use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use prost::Message;
use tract_onnx::pb;

use crate::checkpoint::{self, StateDict, StateTensor, TensorData};
use crate::error::{HstlError, Result};
use crate::onnx_graph::METADATA_VARIANT;
use crate::variant::{variant_from_head_shape, Variant, CLASSIFIER_KEY, NUM_BATCHES_TRACKED};

/// Initial value of every GeM exponent in the reference (`GeMHPP(p=6.5)`).
pub const GEM_INITIAL_P: f32 = 6.5;
/// Standard deviation of OpenGait's BatchNorm weight initialisation, N(1, 0.02).
const BN_WEIGHT_INIT_STD: f32 = 0.02;

/// One parameter tensor, f32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Its values.
    pub data: Vec<f32>,
}

/// Inference weights of one variant (everything but the training-only classifier).
#[derive(Debug, Clone)]
pub struct Weights {
    variant: Variant,
    tensors: BTreeMap<String, Tensor>,
    /// Identities of the classifier the checkpoint was trained with, when it carried one.
    training_classes: Option<usize>,
}

impl Weights {
    /// The variant these weights are for.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Identities of the classifier the checkpoint was trained with, when it carried one.
    pub fn training_classes(&self) -> Option<usize> {
        self.training_classes
    }

    /// A tensor by its reference state-dict key. Every key of the layout exists once validated.
    pub fn get(&self, key: &str) -> Result<&Tensor> {
        self.tensors.get(key).ok_or_else(|| HstlError::MissingKey {
            key: key.to_string(),
            expected: vec![],
            variant: self.variant.to_string(),
        })
    }

    /// Every tensor by state-dict key, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    /// Elements of all inference tensors (learnable parameters and BatchNorm statistics).
    pub fn element_count(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }

    /// Reads an OpenGait/HSTL `.pt` checkpoint. The variant comes from the shape of
    /// `Head0.fc_bin` unless `force` names one.
    pub fn from_checkpoint(path: &Path, force: Option<Variant>) -> Result<Self> {
        Self::from_state_dict(checkpoint::read_state_dict(path)?, force)
    }

    /// The weights inside an ONNX model this crate wrote (its initializers are named by state-dict
    /// key), so that a model file can be written again, as int8 say, without its checkpoint.
    pub fn from_onnx(path: &Path) -> Result<Self> {
        let bad = |message: String| HstlError::BadModel {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| HstlError::io(path, e))?;
        let model = pb::ModelProto::decode(bytes.as_slice())
            .map_err(|e| bad(format!("not an ONNX protobuf: {e}")))?;
        let variant = model
            .metadata_props
            .iter()
            .find(|p| p.key == METADATA_VARIANT)
            .ok_or_else(|| bad("not written by `hstl export`: no variant in its metadata".into()))?
            .value
            .parse::<Variant>()?;
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| bad("the model has no graph".into()))?;
        if graph.node.iter().any(|n| n.op_type == "QuantizeLinear") {
            return Err(bad(
                "already quantized: start from the float model (or its checkpoint)".into(),
            ));
        }
        let arch = variant.architecture();
        let keys: Vec<String> = arch
            .state_dict_layout(arch.published_classes)
            .into_iter()
            .map(|spec| spec.key)
            .collect();
        let float = pb::tensor_proto::DataType::Float as i32;
        let entries = graph
            .initializer
            .iter()
            .filter(|t| keys.contains(&t.name) && t.data_type == float)
            .map(|t| {
                let data = if t.raw_data.is_empty() {
                    t.float_data.clone()
                } else {
                    t.raw_data
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect()
                };
                let shape = t.dims.iter().map(|&d| d.max(0) as usize).collect();
                (
                    t.name.clone(),
                    StateTensor {
                        shape,
                        data: TensorData::F32(data),
                    },
                )
            })
            .collect();
        Self::from_state_dict(
            StateDict {
                entries,
                iteration: None,
            },
            Some(variant),
        )
        .map_err(|e| bad(e.to_string()))
    }

    /// Validates a state dict against the reference layout: every key present, none extra,
    /// every shape exact. `Head1` (the classifier) may have any class count or be absent.
    pub fn from_state_dict(state: StateDict, force: Option<Variant>) -> Result<Self> {
        let head = state
            .entries
            .iter()
            .find(|(k, _)| k == "Head0.fc_bin")
            .map(|(_, t)| t.shape.clone());
        let variant = match (force, head) {
            (Some(v), _) => v,
            (None, Some(shape)) => variant_from_head_shape(&shape)?,
            (None, None) => {
                return Err(HstlError::MissingKey {
                    key: "Head0.fc_bin".into(),
                    expected: vec![],
                    variant: "any".into(),
                })
            }
        };
        let arch = variant.architecture();
        let name = variant.to_string();
        let mut given: BTreeMap<String, StateTensor> = state.entries.into_iter().collect();
        let mut tensors = BTreeMap::new();
        let mut training_classes = None;
        for spec in arch.state_dict_layout(arch.published_classes) {
            let Some(tensor) = given.remove(&spec.key) else {
                if spec.key == CLASSIFIER_KEY || spec.key == NUM_BATCHES_TRACKED {
                    continue;
                }
                return Err(HstlError::MissingKey {
                    key: spec.key,
                    expected: spec.shape,
                    variant: name,
                });
            };
            let shape_ok = if spec.key == CLASSIFIER_KEY {
                tensor.shape.len() == 3 && tensor.shape[..2] == spec.shape[..2]
            } else {
                tensor.shape == spec.shape
            };
            if !shape_ok {
                return Err(HstlError::ShapeMismatch {
                    key: spec.key,
                    expected: spec.shape,
                    found: tensor.shape,
                    variant: name,
                });
            }
            match (spec.key.as_str(), tensor.data) {
                (CLASSIFIER_KEY, _) => training_classes = Some(tensor.shape[2]),
                (NUM_BATCHES_TRACKED, _) => {}
                (_, TensorData::F32(mut data)) => {
                    if let Some(bad) = data.iter().position(|x| !x.is_finite()) {
                        return Err(HstlError::BadTensor {
                            key: spec.key,
                            message: format!("element {bad} is {} (diverged training?)", data[bad]),
                        });
                    }
                    // Weight decay leaves weights below f32's smallest normal (6 % of the compact
                    // network's at one point of training). They are zero to the network, and x86
                    // float kernels take a slow path on every one of them.
                    for x in data.iter_mut().filter(|x| x.is_subnormal()) {
                        *x = 0.0;
                    }
                    tensors.insert(
                        spec.key,
                        Tensor {
                            shape: tensor.shape,
                            data,
                        },
                    );
                }
                (_, TensorData::I64(_)) => {
                    return Err(HstlError::BadTensor {
                        key: spec.key,
                        message: "is an integer tensor, expected float".into(),
                    })
                }
            }
        }
        if let Some(extra) = given.into_keys().next() {
            return Err(HstlError::UnexpectedKey {
                key: extra,
                variant: name,
            });
        }
        Ok(Weights {
            variant,
            tensors,
            training_classes,
        })
    }

    /// Fresh weights following OpenGait's initialisation rules, reproducible from `seed`:
    /// Xavier-uniform convolutions and heads, zero biases, BatchNorm weight N(1, 0.02) with zero
    /// bias and identity running statistics, GeM exponents 6.5.
    pub fn seeded(variant: Variant, seed: u64) -> Self {
        let arch = variant.architecture();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        for spec in arch.state_dict_layout(arch.published_classes) {
            if spec.key == CLASSIFIER_KEY || spec.key == NUM_BATCHES_TRACKED {
                continue;
            }
            let n: usize = spec.shape.iter().product();
            let data: Vec<f32> = match spec.key.as_str() {
                k if k.ends_with(".p") => vec![GEM_INITIAL_P; n],
                k if k.ends_with(".bias") => vec![0.0; n],
                "Bn.weight" => (0..n)
                    .map(|_| 1.0 + BN_WEIGHT_INIT_STD * standard_normal(&mut rng))
                    .collect(),
                "Bn.running_mean" => vec![0.0; n],
                "Bn.running_var" => vec![1.0; n],
                _ => {
                    let (fan_in, fan_out) = torch_fans(&spec.shape);
                    let bound = (6.0 / (fan_in + fan_out) as f32).sqrt();
                    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
                }
            };
            tensors.insert(
                spec.key,
                Tensor {
                    shape: spec.shape,
                    data,
                },
            );
        }
        Weights {
            variant,
            tensors,
            training_classes: None,
        }
    }

    /// The inference weights as a state dict in the reference order (without `Head1`).
    pub fn to_state_dict(&self, iteration: Option<i64>) -> StateDict {
        let arch = self.variant.architecture();
        let entries = arch
            .state_dict_layout(arch.published_classes)
            .into_iter()
            .filter_map(|spec| {
                if spec.key == NUM_BATCHES_TRACKED {
                    return Some((
                        spec.key,
                        StateTensor {
                            shape: vec![],
                            data: TensorData::I64(vec![0]),
                        },
                    ));
                }
                let t = self.tensors.get(&spec.key)?;
                Some((
                    spec.key,
                    StateTensor {
                        shape: t.shape.clone(),
                        data: TensorData::F32(t.data.clone()),
                    },
                ))
            })
            .collect();
        StateDict { entries, iteration }
    }
}

/// `torch.nn.init._calculate_fan_in_and_fan_out`: dims 0 and 1 times the receptive field.
fn torch_fans(shape: &[usize]) -> (usize, usize) {
    let receptive: usize = shape.iter().skip(2).product();
    (shape[1] * receptive, shape[0] * receptive)
}

fn standard_normal(rng: &mut impl Rng) -> f32 {
    // Box–Muller; one of the pair is enough here.
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published CASIA-B variant, seeded once for every test that needs its full key set.
    fn casia_b() -> &'static Weights {
        static WEIGHTS: std::sync::OnceLock<Weights> = std::sync::OnceLock::new();
        WEIGHTS.get_or_init(|| Weights::seeded(Variant::CasiaB, 0))
    }

    #[test]
    fn seeded_weights_are_reproducible_and_complete() {
        assert_eq!(casia_b().element_count(), 4_054_378 + 2 * 128);
        let a = Weights::seeded(Variant::Compact, 7);
        let b = Weights::seeded(Variant::Compact, 7);
        let c = Weights::seeded(Variant::Compact, 8);
        assert_eq!(a.tensors, b.tensors);
        assert_ne!(
            a.get("Head0.fc_bin").unwrap(),
            c.get("Head0.fc_bin").unwrap()
        );
    }

    #[test]
    fn xavier_bounds_follow_torch_fans() {
        // Conv3d 64→128, k=3: fan_in 1728, fan_out 3456.
        let bound = (6.0f32 / (1728.0 + 3456.0)).sqrt();
        let conv = &casia_b()
            .get("arme3.0.conv3d.0.conv3d.weight")
            .unwrap()
            .data;
        let max = conv.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            max <= bound && max > 0.99 * bound,
            "max {max}, bound {bound}"
        );
    }

    #[test]
    fn state_dict_round_trip_keeps_every_tensor() {
        let w = Weights::seeded(Variant::Compact, 3);
        let back = Weights::from_state_dict(w.to_state_dict(None), None).unwrap();
        assert_eq!(back.variant(), Variant::Compact);
        assert_eq!(back.tensors, w.tensors);
    }

    #[test]
    fn an_exported_model_gives_back_its_weights_and_an_int8_one_is_refused() {
        use crate::onnx_graph::{write_model, ExportOptions};
        let dir = tempfile::tempdir().unwrap();
        let w = Weights::seeded(Variant::Compact, 5);
        let float = dir.path().join("float.onnx");
        write_model(&w, &ExportOptions::default(), &float).unwrap();
        let back = Weights::from_onnx(&float).unwrap();
        assert_eq!(back.variant(), Variant::Compact);
        assert_eq!(back.tensors, w.tensors);

        let int8 = dir.path().join("int8.onnx");
        let options = ExportOptions {
            int8_convolutions: BTreeMap::from([("arme1.0".to_string(), 0.01)]),
            ..ExportOptions::default()
        };
        write_model(&w, &options, &int8).unwrap();
        let error = Weights::from_onnx(&int8).unwrap_err().to_string();
        assert!(error.contains("already quantized"), "{error}");
        std::fs::write(&float, b"not a model").unwrap();
        assert!(Weights::from_onnx(&float).is_err());
    }

    #[test]
    fn missing_extra_and_misshaped_keys_are_named() {
        let full = casia_b().to_state_dict(None);

        let mut missing = full.clone();
        missing.entries.retain(|(k, _)| k != "astp2_fta.hpp.1.p");
        let err = Weights::from_state_dict(missing, None).unwrap_err();
        assert!(
            matches!(&err, HstlError::MissingKey { key, .. } if key == "astp2_fta.hpp.1.p"),
            "{err}"
        );

        let mut extra = full.clone();
        extra
            .entries
            .push(("astp3.proj.conv.weight".into(), extra.entries[0].1.clone()));
        let err = Weights::from_state_dict(extra, None).unwrap_err();
        assert!(err.to_string().contains("astp3.proj.conv.weight"), "{err}");

        let mut misshaped = full;
        let conv = misshaped
            .entries
            .iter_mut()
            .find(|(k, _)| k == "arme2.1.conv3d.0.conv3d.weight")
            .unwrap();
        conv.1.shape = vec![64, 32, 3, 3, 1];
        let err = Weights::from_state_dict(misshaped, None).unwrap_err();
        assert!(
            matches!(&err, HstlError::ShapeMismatch { key, .. } if key == "arme2.1.conv3d.0.conv3d.weight"),
            "{err}"
        );
    }

    #[test]
    fn a_compact_checkpoint_with_a_misshaped_key_is_named_as_compact() {
        let mut state = Weights::seeded(Variant::Compact, 0).to_state_dict(None);
        let fc = state
            .entries
            .iter_mut()
            .find(|(k, _)| k == "Head0.fc_bin")
            .unwrap();
        fc.1.shape = vec![41, 64, 32];
        let err = Weights::from_state_dict(state, Some(Variant::Compact)).unwrap_err();
        assert!(
            matches!(&err, HstlError::ShapeMismatch { key, .. } if key == "Head0.fc_bin")
                && err.to_string().contains("compact"),
            "{err}"
        );
    }

    #[test]
    fn a_compact_onnx_with_a_misshaped_weight_is_named_as_compact() {
        use crate::onnx_graph::{build_model, ExportOptions};
        let dir = tempfile::tempdir().unwrap();
        let mut model = build_model(
            &Weights::seeded(Variant::Compact, 1),
            &ExportOptions::default(),
        )
        .unwrap();
        let fc = model
            .graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| t.name == "Head0.fc_bin")
            .unwrap();
        fc.dims = vec![41, 32, 64];
        let path = dir.path().join("misshaped.onnx");
        std::fs::write(&path, model.encode_to_vec()).unwrap();
        let err = Weights::from_onnx(&path).unwrap_err().to_string();
        assert!(
            err.contains("Head0.fc_bin") && err.contains("compact"),
            "{err}"
        );
    }

    #[test]
    fn forcing_the_wrong_variant_fails_on_the_first_differing_key() {
        let casia = casia_b().to_state_dict(None);
        let err = Weights::from_state_dict(casia, Some(Variant::OuMvlp)).unwrap_err();
        assert!(err.to_string().contains("ou-mvlp"), "{err}");
    }

    #[test]
    fn subnormal_weights_are_read_as_zero() {
        let mut state = Weights::seeded(Variant::Compact, 0).to_state_dict(None);
        let normal = f32::MIN_POSITIVE;
        if let TensorData::F32(v) = &mut state.entries[0].1.data {
            v[..3].copy_from_slice(&[normal / 8.0, -normal / 2.0, normal]);
        }
        let weights = Weights::from_state_dict(state, None).unwrap();
        let first = &weights.get("arme1.0.conv3d.weight").unwrap().data;
        assert_eq!(first[..3], [0.0, 0.0, normal]);
    }

    #[test]
    fn non_finite_weights_are_rejected() {
        let mut state = casia_b().to_state_dict(None);
        if let TensorData::F32(v) = &mut state.entries[0].1.data {
            v[5] = f32::NAN;
        }
        let err = Weights::from_state_dict(state, None).unwrap_err();
        assert!(err.to_string().contains("arme1.0.conv3d.weight"), "{err}");
    }
}
