//! The three published HSTL networks as data: channel widths, band splits and the state-dict
//! layout that follows from them (the published checkpoints' shapes; `model/README.md`).

use std::fmt;
use std::str::FromStr;

use crate::error::HstlError;

/// Silhouette height and width at the network input, after the 10-column cut.
pub const INPUT_HEIGHT: usize = 64;
/// Width of the network's input silhouette (the 64 × 64 frame with 10 columns cut each side).
pub const INPUT_WIDTH: usize = 44;
/// Width of an OpenGait-pretreated silhouette, before the cut.
pub const PRETREATED_WIDTH: usize = 64;
/// Weights of one 3 × 3 × 3 convolution kernel per input and output channel.
pub const CONV_KERNEL_VOLUME: usize = 27;
/// Frames pooled into one by the frame-level temporal aggregation (FTA stride).
pub const FTA_STRIDE: usize = 3;

/// An HSTL network: the three published and our compact one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// CASIA-B: 73 parts × 128 channels.
    CasiaB,
    /// OU-MVLP (and GREW, which uses the same network): 50 parts × 256 channels.
    OuMvlp,
    /// Gait3D: 46 parts × 256 channels.
    Gait3d,
    /// Ours, for the edge: the CASIA-B hierarchy at half the channels on a 2 × 2 area average of the
    /// same silhouette (32 × 22), 41 parts × 64 channels (`model/COMPACT.md`).
    Compact,
}

/// Every variant, published ones first.
pub const ALL_VARIANTS: [Variant; 4] = [
    Variant::CasiaB,
    Variant::OuMvlp,
    Variant::Gait3d,
    Variant::Compact,
];

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::CasiaB => "casia-b",
            Variant::OuMvlp => "ou-mvlp",
            Variant::Gait3d => "gait3d",
            Variant::Compact => "compact",
        })
    }
}

impl FromStr for Variant {
    type Err = HstlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "casia-b" | "casiab" => Ok(Variant::CasiaB),
            "ou-mvlp" | "oumvlp" | "grew" => Ok(Variant::OuMvlp),
            "gait3d" => Ok(Variant::Gait3d),
            "compact" => Ok(Variant::Compact),
            _ => Err(HstlError::UnknownVariantName(s.to_string())),
        }
    }
}

/// A stage of convolutions that share one band split: `(in, out)` channels per layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvStage {
    /// State-dict prefix of the stage's layers.
    pub prefix: &'static str,
    /// `(in, out)` channels of each layer.
    pub layers: Vec<(usize, usize)>,
    /// Band heights, top first; a single band is the whole frame.
    pub bands: Vec<usize>,
    /// Whether this stage runs on the FTA-reduced time axis.
    pub after_fta: bool,
}

/// The full description of one variant's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Architecture {
    /// Which variant this describes.
    pub variant: Variant,
    /// Side of the area average taken of the 64 × 44 input before the stem (1: none).
    pub input_downsample: usize,
    /// `arme1`: whole-frame convolutions; their layers sit at Sequential indices 0, 2, … .
    pub stem: ConvStage,
    /// 2×2 spatial max-pool after the stem (OU-MVLP and Gait3D).
    pub pool_after_stem: bool,
    /// `arme2`, then `arme3`, then (256-channel variants) `arme4`.
    pub stages: Vec<ConvStage>,
    /// Whether `astp3` projects its channels (the 256-channel variants do).
    pub astp3_projects: bool,
    /// Horizontal strips of the final GeM (one strip per row).
    pub strips: usize,
    /// Channels of every part feature and of the embedding.
    pub embedding_channels: usize,
    /// Identities of the published training-only classifier (`Head1`).
    pub published_classes: usize,
}

impl Variant {
    /// Its architecture: every layer, band split and pooling level.
    pub fn architecture(self) -> Architecture {
        let stage = |prefix, layers: &[(usize, usize)], bands: &[usize], after_fta| ConvStage {
            prefix,
            layers: layers.to_vec(),
            bands: bands.to_vec(),
            after_fta,
        };
        match self {
            Variant::CasiaB => Architecture {
                variant: self,
                input_downsample: 1,
                stem: stage("arme1", &[(1, 32)], &[64], false),
                pool_after_stem: false,
                stages: vec![
                    stage("arme2", &[(32, 32), (32, 64)], &[40, 24], false),
                    stage("arme3", &[(64, 128), (128, 128)], &[8, 32, 16, 8], true),
                ],
                astp3_projects: false,
                strips: 64,
                embedding_channels: 128,
                published_classes: 74,
            },
            Variant::Compact => Architecture {
                variant: self,
                input_downsample: 2,
                stem: stage("arme1", &[(1, 16)], &[32], false),
                pool_after_stem: false,
                stages: vec![
                    stage("arme2", &[(16, 16), (16, 32)], &[20, 12], false),
                    stage("arme3", &[(32, 64), (64, 64)], &[4, 16, 8, 4], true),
                ],
                astp3_projects: false,
                strips: 32,
                embedding_channels: 64,
                published_classes: 74,
            },
            Variant::OuMvlp | Variant::Gait3d => {
                let (b2, b3, b4): (&[usize], &[usize], &[usize]) = if self == Variant::OuMvlp {
                    (&[4, 24, 4], &[4, 4, 12, 8, 4], &[4, 4, 12, 4, 4, 4])
                } else {
                    (&[20, 12], &[4, 16, 8, 4], &[4, 4, 12, 8, 4])
                };
                Architecture {
                    variant: self,
                    input_downsample: 1,
                    stem: stage("arme1", &[(1, 32), (32, 32)], &[64], false),
                    pool_after_stem: true,
                    stages: vec![
                        stage("arme2", &[(32, 64), (64, 64)], b2, false),
                        stage("arme3", &[(64, 128), (128, 128)], b3, true),
                        stage("arme4", &[(128, 256), (256, 256)], b4, true),
                    ],
                    astp3_projects: true,
                    strips: 32,
                    embedding_channels: 256,
                    published_classes: if self == Variant::OuMvlp { 5153 } else { 3000 },
                }
            }
        }
    }
}

/// One ASTP: temporal max, optional 1×1 projection to the embedding width, GeM per band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolingLevel {
    /// State-dict name of the level.
    pub name: String,
    /// Channels coming in.
    pub in_channels: usize,
    /// Band heights of its GeM, top first.
    pub bands: Vec<usize>,
    /// Whether a 1 × 1 projection maps it to the embedding width.
    pub projects: bool,
}

/// One entry of the reference state dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// The state-dict key.
    pub key: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Learnable (counted in the published parameter totals) rather than a buffer.
    pub learnable: bool,
}

impl Architecture {
    /// Parts of the embedding: 1 + 2 × level-2 bands + level-3 bands (+ level-4 bands) + strips.
    pub fn parts(&self) -> usize {
        1 + self.stages[0].bands.len() * 2
            + self.stages[1..]
                .iter()
                .map(|s| s.bands.len())
                .sum::<usize>()
            + self.strips
    }

    /// Height and width the stem runs at: the input after its area average.
    pub fn stem_size(&self) -> (usize, usize) {
        (
            INPUT_HEIGHT / self.input_downsample,
            INPUT_WIDTH / self.input_downsample,
        )
    }

    /// Height of the feature maps after the stem.
    pub fn feature_height(&self) -> usize {
        let pool = if self.pool_after_stem { 2 } else { 1 };
        self.stem_size().0 / pool
    }

    /// Width of the feature maps after the stem (and its pooling, when there is one).
    pub fn feature_width(&self) -> usize {
        let pool = if self.pool_after_stem { 2 } else { 1 };
        self.stem_size().1 / pool
    }

    /// The ASTP pooling levels in part order (astp1, astp2, astp2_fta, astp3[, astp4]).
    pub fn pooling_levels(&self) -> Vec<PoolingLevel> {
        let level = |name: String, stage: &ConvStage, projects| PoolingLevel {
            name,
            in_channels: stage.layers.last().map_or(0, |l| l.1),
            bands: stage.bands.clone(),
            projects,
        };
        let level2 = &self.stages[0];
        let mut levels = vec![
            level("astp1".into(), &self.stem, true),
            level("astp2".into(), level2, true),
            level("astp2_fta".into(), level2, true),
        ];
        for (i, stage) in self.stages[1..].iter().enumerate() {
            let index = i + 3;
            levels.push(level(
                format!("astp{index}"),
                stage,
                index == 3 && self.astp3_projects,
            ));
        }
        levels
    }

    /// Channels of the last stage, fed to the strip GeM.
    pub fn last_stage_channels(&self) -> usize {
        self.stages
            .last()
            .and_then(|s| s.layers.last())
            .map_or(0, |l| l.1)
    }

    /// The state-dict keys and shapes of the reference model, in its registration order.
    /// `classes` sizes the training-only classifier `Head1`.
    pub fn state_dict_layout(&self, classes: usize) -> Vec<ParamSpec> {
        let e = self.embedding_channels;
        let levels = self.pooling_levels();
        let mut specs: Vec<ParamSpec> = self
            .stem
            .layers
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout))| {
                learnable(
                    format!("arme1.{}.conv3d.weight", 2 * i),
                    vec![cout, cin, 3, 3, 3],
                )
            })
            .collect();
        specs.extend(pooling_params(&levels[0], e));
        for (s, stage) in self.stages.iter().enumerate() {
            for (l, &(cin, cout)) in stage.layers.iter().enumerate() {
                for k in 0..stage.bands.len() {
                    let key = format!("{}.{l}.conv3d.{k}.conv3d.weight", stage.prefix);
                    specs.push(learnable(key, vec![cout, cin, 3, 3, 3]));
                }
            }
            if s == 0 {
                specs.extend(pooling_params(&levels[1], e));
                let c = stage.layers.last().map_or(0, |l| l.1);
                for k in 0..stage.bands.len() {
                    for branch in 0..2 {
                        specs.push(learnable(
                            format!("fta.mma.{k}.fcs.{branch}.weight"),
                            vec![c, c, 1],
                        ));
                        specs.push(learnable(format!("fta.mma.{k}.fcs.{branch}.bias"), vec![c]));
                    }
                }
                specs.extend(pooling_params(&levels[2], e));
            } else {
                specs.extend(pooling_params(&levels[s + 2], e));
            }
        }
        let p = self.parts();
        specs.push(learnable("HPP.p".into(), vec![1]));
        specs.push(learnable("Head0.fc_bin".into(), vec![p, e, e]));
        specs.push(learnable("Bn.weight".into(), vec![e]));
        specs.push(learnable("Bn.bias".into(), vec![e]));
        for buffer in ["Bn.running_mean", "Bn.running_var"] {
            specs.push(ParamSpec {
                key: buffer.into(),
                shape: vec![e],
                learnable: false,
            });
        }
        specs.push(ParamSpec {
            key: NUM_BATCHES_TRACKED.into(),
            shape: vec![],
            learnable: false,
        });
        specs.push(learnable(CLASSIFIER_KEY.into(), vec![p, e, classes]));
        specs
    }

    /// Learnable parameters: (all, inference path without `Head1`).
    pub fn parameter_counts(&self) -> (usize, usize) {
        let layout = self.state_dict_layout(self.published_classes);
        let count = |with_head1: bool| {
            layout
                .iter()
                .filter(|s| s.learnable && (with_head1 || s.key != CLASSIFIER_KEY))
                .map(|s| s.shape.iter().product::<usize>())
                .sum()
        };
        (count(true), count(false))
    }

    /// Multiply–accumulates of one forward pass (convolutions, projections, FTA and the head)
    /// for a clip of `frames` frames, after the tiling of very short clips.
    pub fn macs(&self, frames: usize) -> u64 {
        let t = tiled_length(frames) as u64;
        let t_fta = t / FTA_STRIDE as u64;
        let e = self.embedding_channels as u64;
        let conv = |stage: &ConvStage, frames: u64, h: u64, w: u64| -> u64 {
            stage
                .layers
                .iter()
                .map(|&(cin, cout)| (cin * cout * CONV_KERNEL_VOLUME) as u64 * frames * h * w)
                .sum()
        };
        let (h0, w0) = (self.stem_size().0 as u64, self.stem_size().1 as u64);
        let (h, w) = (self.feature_height() as u64, self.feature_width() as u64);
        let stem_channels = self.stem.layers.last().map_or(0, |l| l.1) as u64;
        let mut total = conv(&self.stem, t, h0, w0) + e * stem_channels * h0 * w0;
        let level2 = &self.stages[0];
        let c2 = level2.layers.last().map_or(0, |l| l.1) as u64;
        total += conv(level2, t, h, w);
        total += 2 * e * c2 * h * w;
        total += level2.bands.len() as u64 * 2 * c2 * c2 * t_fta;
        for (i, stage) in self.stages[1..].iter().enumerate() {
            total += conv(stage, t_fta, h, w);
            if i == 0 && self.astp3_projects {
                total += e * stage.layers.last().map_or(0, |l| l.1) as u64 * h * w;
            }
        }
        total + (self.parts() as u64) * e * e
    }
}

/// The training-only classifier; its class count depends on the training set.
pub const CLASSIFIER_KEY: &str = "Head1.fc_bin";
/// An int64 BatchNorm counter that inference never reads.
pub const NUM_BATCHES_TRACKED: &str = "Bn.num_batches_tracked";

fn learnable(key: String, shape: Vec<usize>) -> ParamSpec {
    ParamSpec {
        key,
        shape,
        learnable: true,
    }
}

/// GeM exponents (one per band) and the optional 1×1 projection of one ASTP level.
fn pooling_params(level: &PoolingLevel, e: usize) -> Vec<ParamSpec> {
    let name = &level.name;
    let mut specs: Vec<ParamSpec> = (0..level.bands.len())
        .map(|k| learnable(format!("{name}.hpp.{k}.p"), vec![1]))
        .collect();
    if level.projects {
        specs.push(learnable(
            format!("{name}.proj.conv.weight"),
            vec![e, level.in_channels, 1, 1],
        ));
    }
    specs
}

/// Clip length after the reference's tiling of very short clips: 1 frame → ×3, 2 frames → ×2.
pub fn tiled_length(frames: usize) -> usize {
    match frames {
        1 => 3,
        2 => 4,
        t => t,
    }
}

/// The variant whose head has this `Head0.fc_bin` shape.
pub fn variant_from_head_shape(shape: &[usize]) -> Result<Variant, HstlError> {
    if shape.len() == 3 && shape[0] == 17 {
        return Err(HstlError::Superseded17Part {
            shape: shape.to_vec(),
        });
    }
    ALL_VARIANTS
        .into_iter()
        .find(|v| {
            let a = v.architecture();
            shape == [a.parts(), a.embedding_channels, a.embedding_channels]
        })
        .ok_or_else(|| HstlError::UnknownVariant(shape.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_match_the_published_heads() {
        assert_eq!(Variant::CasiaB.architecture().parts(), 73);
        assert_eq!(Variant::OuMvlp.architecture().parts(), 50);
        assert_eq!(Variant::Gait3d.architecture().parts(), 46);
        assert_eq!(Variant::Compact.architecture().parts(), 41);
    }

    #[test]
    fn parameter_counts_match_the_instantiated_reference_models() {
        assert_eq!(
            Variant::CasiaB.architecture().parameter_counts(),
            (4_745_834, 4_054_378)
        );
        assert_eq!(
            Variant::OuMvlp.architecture().parameter_counts(),
            (89_103_603, 23_145_203)
        );
        assert_eq!(
            Variant::Gait3d.architecture().parameter_counts(),
            (54_719_087, 19_391_087)
        );
        // model/training/hstl_net.py, HSTL(74, COMPACT)
        assert_eq!(
            Variant::Compact.architecture().parameter_counts(),
            (1_077_050, 882_874)
        );
    }

    #[test]
    fn casia_b_layout_is_the_reference_key_list() {
        let layout = Variant::CasiaB.architecture().state_dict_layout(74);
        assert_eq!(layout.len(), 41);
        assert_eq!(layout[0].key, "arme1.0.conv3d.weight");
        assert_eq!(layout[9].key, "astp2.proj.conv.weight");
        assert_eq!(layout[10].key, "fta.mma.0.fcs.0.weight");
        assert_eq!(layout[21].key, "arme3.0.conv3d.0.conv3d.weight");
        assert_eq!(layout[33].key, "HPP.p");
        assert_eq!(layout[40].shape, vec![73, 128, 74]);
    }

    #[test]
    fn macs_match_the_spec() {
        let casia = Variant::CasiaB.architecture();
        assert_eq!(casia.macs(30), 25_824_755_712);
        assert_eq!(casia.macs(45), 38_707_699_712);
        // model/COMPACT.md: 16 times less than the published CASIA-B network.
        assert_eq!(Variant::Compact.architecture().macs(30), 1_618_733_056);
        for v in [Variant::OuMvlp, Variant::Gait3d] {
            let g = v.architecture().macs(30) as f64 / 1e9;
            assert!((g - 29.34).abs() < 0.01, "{v}: {g} GMAC");
        }
    }

    #[test]
    fn variant_detection_from_head_shape() {
        assert_eq!(
            variant_from_head_shape(&[73, 128, 128]).unwrap(),
            Variant::CasiaB
        );
        assert_eq!(
            variant_from_head_shape(&[50, 256, 256]).unwrap(),
            Variant::OuMvlp
        );
        assert_eq!(
            variant_from_head_shape(&[46, 256, 256]).unwrap(),
            Variant::Gait3d
        );
        assert_eq!(
            variant_from_head_shape(&[41, 64, 64]).unwrap(),
            Variant::Compact
        );
        assert!(matches!(
            variant_from_head_shape(&[17, 128, 128]),
            Err(HstlError::Superseded17Part { .. })
        ));
        assert!(matches!(
            variant_from_head_shape(&[10, 128, 128]),
            Err(HstlError::UnknownVariant(_))
        ));
    }

    #[test]
    fn short_clips_are_tiled_like_the_reference() {
        assert_eq!(tiled_length(1), 3);
        assert_eq!(tiled_length(2), 4);
        assert_eq!(tiled_length(3), 3);
        assert_eq!(tiled_length(31), 31);
    }
}
