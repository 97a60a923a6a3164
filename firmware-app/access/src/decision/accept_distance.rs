//! The distance a door accepts: reconciling the model's calibrated operating point with the
//! configuration, which may only tighten it.

use std::path::{Path, PathBuf};

use hstl::OperatingPoint;

/// Why a door has no accept distance to run on.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AcceptDistanceError {
    /// The model has no calibrated operating point.
    #[error("model {model} has no calibrated operating point ({point} is missing), and a door never runs on a threshold nobody measured for its model: run `calibrate thresholds --model {model} ... --save`")]
    Uncalibrated {
        /// The model.
        model: PathBuf,
        /// Where its operating point should be.
        point: PathBuf,
    },
    /// The configuration tries to loosen the calibrated distance.
    #[error("[decision] accept_distance = {configured} is looser than the model's calibrated {calibrated} (FPIR {target_fpir}): the configuration may only tighten it")]
    Looser {
        /// `[decision] accept_distance`.
        configured: f32,
        /// The model's calibrated distance.
        calibrated: f32,
        /// The rate it was calibrated for.
        target_fpir: f64,
    },
}

/// The distance a door accepts: the model's calibrated operating point, or the configured distance
/// where it is tighter. A model without an operating point is refused, whatever is configured.
pub fn accept_distance(
    configured: Option<f32>,
    point: Option<&OperatingPoint>,
    model: &Path,
) -> Result<f32, AcceptDistanceError> {
    let point = point.ok_or_else(|| AcceptDistanceError::Uncalibrated {
        model: model.to_path_buf(),
        point: OperatingPoint::path_for(model),
    })?;
    match configured {
        Some(configured) if configured > point.accept_distance => {
            Err(AcceptDistanceError::Looser {
                configured,
                calibrated: point.accept_distance,
                target_fpir: point.target_fpir,
            })
        }
        Some(configured) => Ok(configured),
        None => Ok(point.accept_distance),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operating_point(accept_distance: f32) -> OperatingPoint {
        OperatingPoint {
            model_id: "sha256:00".into(),
            accept_distance,
            target_fpir: 0.003,
            fpir: 0.0025,
            fnir: 0.1,
            mated_searches: 100,
            non_mated_searches: 2000,
            measured_on: "test".into(),
            looser_than_shipped: None,
            seal: None,
        }
    }

    #[test]
    fn a_door_runs_only_on_its_models_calibrated_distance_or_a_tighter_one() {
        let model = Path::new("/models/hstl.onnx");
        let point = operating_point(0.8);
        assert_eq!(accept_distance(None, Some(&point), model), Ok(0.8));
        assert_eq!(accept_distance(Some(0.6), Some(&point), model), Ok(0.6));
        assert_eq!(accept_distance(Some(0.8), Some(&point), model), Ok(0.8));
        let looser = accept_distance(Some(1.0), Some(&point), model).unwrap_err();
        assert!(looser.to_string().contains("only tighten"), "{looser}");
        for configured in [None, Some(0.5)] {
            let error = accept_distance(configured, None, model).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("/models/hstl.onnx.operating-point.json"),
                "{error}"
            );
        }
    }
}
