//! A model's calibrated operating point: the distance under which two of its embeddings are taken to
//! be the same person, with the error rates measured there.
//!
//! It is kept beside the model file (`MODEL.onnx.operating-point.json`) rather than inside it, so that
//! calibrating a model never changes its identity ([`model_id`]) and never invalidates a gallery
//! enrolled with it. The file names the model it was measured for; a door refuses a point measured
//! for another model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The one accept rule: a search is accepted when its distance is at most the accept distance.
/// Calibration measures its rates with it and the door decides with it.
pub fn accepts(distance: f32, accept_distance: f32) -> bool {
    distance <= accept_distance
}

/// The identity of a model: the SHA-256 of its file. Templates, operating points and galleries name
/// the model they belong to by it.
pub fn model_id(path: &Path) -> Result<String, OperatingPointError> {
    let bytes =
        crate::files::read_regular(path, crate::files::MAX_MODEL_FILE_BYTES).map_err(|source| {
            OperatingPointError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
    let digest = Sha256::digest(&bytes);
    Ok(format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// The most permissive false-positive identification rate an operating point may be calibrated for:
/// one stranger in a hundred searches is already far beyond any access-control use.
pub const MAX_TARGET_FPIR: f64 = 0.01;

/// Why an operating point cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OperatingPointError {
    /// The file could not be read or written.
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// The operating-point file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Not the JSON of an operating point.
    #[error("{path} is not an operating point: {message}")]
    Malformed {
        /// The operating-point file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Calibrated for another model (its SHA-256 differs).
    #[error("{path} was calibrated for model {found}, not for {expected}: calibrate this model (`calibrate thresholds --model ... --save`)")]
    OtherModel {
        /// The operating-point file.
        path: PathBuf,
        /// The model the kiosk runs.
        expected: String,
        /// The model the point was measured for.
        found: String,
    },
    /// Looser than the model's shipped point without saying so.
    #[error("accept distance {distance} is looser than the model's shipped {shipped}: a site point may be looser only when it was saved so on purpose (`calibrate thresholds --looser-than-shipped`), which every start then reports")]
    LooserThanShipped {
        /// The point's accept distance.
        distance: f32,
        /// The shipped point's.
        shipped: f32,
    },
    /// A door that holds a key runs only points sealed with it (or the shipped point itself).
    #[error("{path} is not sealed with this door's key: whoever can write the model's folder could have set its accept distance; save it with `calibrate thresholds --save --key-file SITE_KEY` (the door's template key)")]
    Unsealed {
        /// The operating-point file.
        path: PathBuf,
    },
    /// Sealed, but not with this key or not as it stands.
    #[error("{path} was changed after it was sealed, or sealed with another key: refused (calibrate again with `--save --key-file` and this door's template key)")]
    SealBroken {
        /// The operating-point file.
        path: PathBuf,
    },
    /// Values no calibration produces (a negative or non-finite distance, a target above the limit).
    #[error("{path}: implausible operating point: {message}")]
    Implausible {
        /// The operating-point file.
        path: PathBuf,
        /// What is implausible.
        message: String,
    },
}

/// A model's calibrated accept distance and what it was measured on, kept beside the model as `MODEL.onnx.operating-point.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatingPoint {
    /// The model it was measured for ([`model_id`]).
    pub model_id: String,
    /// Searches at most this far from their nearest identity are accepted ([`accepts`]).
    pub accept_distance: f32,
    /// The false-positive identification rate the distance was chosen for.
    pub target_fpir: f64,
    /// Measured at the accept distance: strangers accepted, per walk-up the door decided (per search
    /// in points saved before `calibrate` replayed the door's policy; `measured_on` says which).
    pub fpir: f64,
    /// Measured at the accept distance: enrolled people not accepted as themselves, likewise.
    pub fnir: f64,
    /// Walk-ups (or searches) by enrolled people behind the rates.
    pub mated_searches: usize,
    /// Walk-ups (or searches) by people not enrolled behind the rates: at least
    /// [`OperatingPoint::searches_needed`] for the target.
    pub non_mated_searches: usize,
    /// What the searches were cut from and how (data, subjects, windows).
    pub measured_on: String,
    /// Set only when the point was saved looser than the model's shipped one on purpose
    /// (`calibrate thresholds --looser-than-shipped`): the shipped accept distance it exceeds. Every
    /// door that runs it says so at start; a looser point without it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub looser_than_shipped: Option<f32>,
    /// HMAC-SHA256 (hex) of the point without this field, under the key of the doors that run it
    /// ([`OperatingPoint::sealed`]): a door holding that key refuses a point that does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl OperatingPoint {
    /// Where the operating point of `model` is kept.
    pub fn path_for(model: &Path) -> PathBuf {
        let mut name = model.as_os_str().to_owned();
        name.push(".operating-point.json");
        PathBuf::from(name)
    }

    /// The point kept beside `model`, checked to belong to it (`model_id`) and to be plausible;
    /// `None` when the model was never calibrated.
    pub fn load_for(model: &Path, model_id: &str) -> Result<Option<Self>, OperatingPointError> {
        let path = Self::path_for(model);
        let text = match crate::files::read_regular(&path, crate::files::MAX_TEXT_FILE_BYTES)
            .and_then(|bytes| {
                String::from_utf8(bytes).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })
            }) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(OperatingPointError::Io { path, source }),
        };
        let point: OperatingPoint =
            serde_json::from_str(&text).map_err(|e| OperatingPointError::Malformed {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if point.model_id != model_id {
            return Err(OperatingPointError::OtherModel {
                path,
                expected: model_id.to_string(),
                found: point.model_id,
            });
        }
        point
            .check()
            .map_err(|message| OperatingPointError::Implausible {
                path: path.clone(),
                message,
            })?;
        point.check_against_shipped_model()?;
        Ok(Some(point))
    }

    /// Writes the point beside `model`, replacing any earlier one whole (written aside, then renamed).
    pub fn save_for(&self, model: &Path) -> Result<PathBuf, OperatingPointError> {
        let path = Self::path_for(model);
        self.check()
            .map_err(|message| OperatingPointError::Implausible {
                path: path.clone(),
                message,
            })?;
        self.check_against_shipped_model()?;
        let text = serde_json::to_string_pretty(self).expect("an operating point serialises");
        crate::files::replace_durably(&path, (text + "\n").as_bytes()).map_err(|source| {
            OperatingPointError::Io {
                path: path.clone(),
                source,
            }
        })?;
        Ok(path)
    }

    /// The point sealed under `key` (32 bytes the doors that run it hold).
    pub fn sealed(mut self, key: &[u8; 32]) -> Self {
        self.seal = Some(self.mac(key));
        self
    }

    /// Refuses, naming `path`, a point not sealed under `key` as it stands. The shipped model's
    /// own point, exactly as shipped, needs no seal: it is compiled into every build.
    pub fn check_seal(&self, key: &[u8; 32], path: &Path) -> Result<(), OperatingPointError> {
        let unsealed = OperatingPoint {
            seal: None,
            ..self.clone()
        };
        if crate::shipped::shipped_point(&self.model_id).as_ref() == Some(&unsealed) {
            return Ok(());
        }
        match &self.seal {
            None => Err(OperatingPointError::Unsealed {
                path: path.to_path_buf(),
            }),
            Some(seal) if *seal == self.mac(key) => Ok(()),
            Some(_) => Err(OperatingPointError::SealBroken {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Over the point's JSON without the seal: what a door reads back parses to the same values
    /// (serde_json's `float_roundtrip`), so it serialises to the same bytes.
    fn mac(&self, key: &[u8; 32]) -> String {
        use hmac::Mac;
        let unsealed = OperatingPoint {
            seal: None,
            ..self.clone()
        };
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(&serde_json::to_vec(&unsealed).expect("an operating point serialises"));
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The non-mated searches a point for `target_fpir` must rest on: the rule of three (with no
    /// stranger accepted in n searches, FPIR is below 3/n with 95 % confidence), so that the data
    /// can at least show the target is met. More is better: the rate itself is then measured.
    pub fn searches_needed(target_fpir: f64) -> usize {
        (3.0 / target_fpir).ceil() as usize
    }

    /// For a shipped model (or a copy of one): refuses a point looser than the one shipped with it
    /// unless it says so ([`crate::shipped::shipped_point`]).
    fn check_against_shipped_model(&self) -> Result<(), OperatingPointError> {
        match crate::shipped::shipped_point(&self.model_id) {
            Some(shipped) => self.check_against_shipped(&shipped),
            None => Ok(()),
        }
    }

    /// Refuses a point looser than `shipped` (the model's own, shipped with it) unless it says so.
    pub fn check_against_shipped(
        &self,
        shipped: &OperatingPoint,
    ) -> Result<(), OperatingPointError> {
        if self.accept_distance <= shipped.accept_distance {
            return Ok(());
        }
        match self.looser_than_shipped {
            Some(recorded) if recorded == shipped.accept_distance => Ok(()),
            _ => Err(OperatingPointError::LooserThanShipped {
                distance: self.accept_distance,
                shipped: shipped.accept_distance,
            }),
        }
    }

    fn check(&self) -> Result<(), String> {
        if !(self.accept_distance.is_finite() && self.accept_distance > 0.0) {
            return Err(format!(
                "accept distance {} is not a positive finite distance",
                self.accept_distance
            ));
        }
        if !(self.target_fpir > 0.0 && self.target_fpir <= MAX_TARGET_FPIR) {
            return Err(format!(
                "target FPIR {} is outside (0, {MAX_TARGET_FPIR}]: not an access-control operating point",
                self.target_fpir
            ));
        }
        for (name, rate) in [("FPIR", self.fpir), ("FNIR", self.fnir)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} {rate} is not a rate"));
            }
        }
        if self.fnir >= 1.0 {
            return Err("it accepts no enrolled person (FNIR 100 %)".into());
        }
        if self.mated_searches == 0 || self.non_mated_searches == 0 {
            return Err("it was measured on no mated or no non-mated search".into());
        }
        let needed = Self::searches_needed(self.target_fpir);
        if self.non_mated_searches < needed {
            return Err(format!(
                "{} non-mated searches cannot show FPIR {} (at least {needed} are needed: walks of people not enrolled, recorded at the door)",
                self.non_mated_searches, self.target_fpir
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(model_id: &str) -> OperatingPoint {
        OperatingPoint {
            model_id: model_id.into(),
            accept_distance: 0.7,
            target_fpir: 0.003,
            fpir: 0.002,
            fnir: 0.05,
            mated_searches: 500,
            non_mated_searches: 1000,
            measured_on: "test".into(),
            looser_than_shipped: None,
            seal: None,
        }
    }

    #[test]
    fn the_accept_rule_includes_the_distance_itself() {
        assert!(accepts(0.5, 0.5));
        assert!(accepts(0.49, 0.5));
        assert!(!accepts(0.5f32.next_up(), 0.5));
        assert!(!accepts(f32::NAN, 0.5));
    }

    #[test]
    fn a_saved_point_loads_for_its_own_model_only() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"model bytes").unwrap();
        let id = model_id(&model).unwrap();
        assert_eq!(OperatingPoint::load_for(&model, &id).unwrap(), None);
        let saved = point(&id).save_for(&model).unwrap();
        assert_eq!(saved, dir.path().join("m.onnx.operating-point.json"));
        assert_eq!(
            OperatingPoint::load_for(&model, &id).unwrap(),
            Some(point(&id))
        );
        std::fs::write(&model, b"another model").unwrap();
        let other = model_id(&model).unwrap();
        let error = OperatingPoint::load_for(&model, &other).unwrap_err();
        assert!(
            matches!(error, OperatingPointError::OtherModel { .. }),
            "{error}"
        );
    }

    #[test]
    fn implausible_points_are_refused_on_save_and_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        for (bad, what) in [
            (
                OperatingPoint {
                    accept_distance: -0.1,
                    ..point("x")
                },
                "accept distance",
            ),
            (
                OperatingPoint {
                    accept_distance: f32::NAN,
                    ..point("x")
                },
                "accept distance",
            ),
            (
                OperatingPoint {
                    target_fpir: 0.5,
                    ..point("x")
                },
                "target FPIR",
            ),
            (
                OperatingPoint {
                    fnir: 1.0,
                    ..point("x")
                },
                "accepts no enrolled person",
            ),
        ] {
            let error = bad.save_for(&model).unwrap_err().to_string();
            assert!(error.contains(what), "{error}");
            let path = OperatingPoint::path_for(&model);
            std::fs::write(
                &path,
                serde_json::to_string(&bad).unwrap().replace("NaN", "null"),
            )
            .unwrap();
            assert!(OperatingPoint::load_for(&model, "x").is_err());
        }
        std::fs::write(OperatingPoint::path_for(&model), "{\"model_id\": 3").unwrap();
        let error = OperatingPoint::load_for(&model, "x").unwrap_err();
        assert!(matches!(error, OperatingPointError::Malformed { .. }));
    }

    #[test]
    fn a_point_its_searches_cannot_support_is_refused_on_save_and_on_load() {
        assert_eq!(OperatingPoint::searches_needed(0.003), 1000);
        assert_eq!(OperatingPoint::searches_needed(0.01), 300);
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        // The probe's case: 218 strangers' searches for FPIR 0.003.
        let few = OperatingPoint {
            non_mated_searches: 218,
            ..point("x")
        };
        let error = few.save_for(&model).unwrap_err().to_string();
        assert!(
            error.contains("218 non-mated searches cannot show FPIR 0.003"),
            "{error}"
        );
        assert!(!OperatingPoint::path_for(&model).exists(), "nothing saved");
        std::fs::write(
            OperatingPoint::path_for(&model),
            serde_json::to_string(&few).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            OperatingPoint::load_for(&model, "x"),
            Err(OperatingPointError::Implausible { .. })
        ));
        let enough = OperatingPoint {
            non_mated_searches: 1000,
            ..point("x")
        };
        enough.save_for(&model).unwrap();
        assert_eq!(OperatingPoint::load_for(&model, "x").unwrap(), Some(enough));
    }

    #[test]
    fn a_point_looser_than_the_shipped_one_must_say_so() {
        let shipped = point("x");
        let tighter = OperatingPoint {
            accept_distance: shipped.accept_distance - 0.1,
            ..point("x")
        };
        assert!(tighter.check_against_shipped(&shipped).is_ok());
        let looser = OperatingPoint {
            accept_distance: shipped.accept_distance + 0.1,
            ..point("x")
        };
        let error = looser
            .check_against_shipped(&shipped)
            .unwrap_err()
            .to_string();
        assert!(error.contains("looser-than-shipped"), "{error}");
        let flagged = OperatingPoint {
            looser_than_shipped: Some(shipped.accept_distance),
            ..looser.clone()
        };
        assert!(flagged.check_against_shipped(&shipped).is_ok());
        // A flag recorded against another shipped point (an edited file, a newer release) is no
        // permission.
        let stale = OperatingPoint {
            looser_than_shipped: Some(shipped.accept_distance + 1.0),
            ..looser
        };
        assert!(stale.check_against_shipped(&shipped).is_err());
        let text = serde_json::to_string(&tighter).unwrap();
        assert!(!text.contains("looser"), "absent unless set: {text}");
    }

    #[test]
    fn a_sealed_point_passes_only_as_sealed_and_only_under_its_key() {
        let key = [7u8; 32];
        let path = Path::new("model.onnx.operating-point.json");
        let sealed = point("m").sealed(&key);
        sealed.check_seal(&key, path).unwrap();
        // What the door reads back from the file is what was sealed.
        let reread: OperatingPoint =
            serde_json::from_str(&serde_json::to_string_pretty(&sealed).unwrap()).unwrap();
        reread.check_seal(&key, path).unwrap();

        let loosened = OperatingPoint {
            accept_distance: 1e30,
            ..sealed.clone()
        };
        let unsealed = OperatingPoint {
            seal: None,
            ..sealed.clone()
        };
        for (changed, expected) in [
            (
                loosened.check_seal(&key, path),
                "changed after it was sealed",
            ),
            (
                sealed.check_seal(&[8u8; 32], path),
                "changed after it was sealed",
            ),
            (
                unsealed.check_seal(&key, path),
                "not sealed with this door's key",
            ),
        ] {
            let error = changed.unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn the_shipped_point_as_shipped_needs_no_seal_and_edited_it_does() {
        let model = crate::shipped::source_tree_model();
        let id = model_id(&model).unwrap();
        let shipped = crate::shipped::shipped_point(&id).unwrap();
        let path = OperatingPoint::path_for(&model);
        shipped.check_seal(&[1u8; 32], &path).unwrap();
        let tightened = OperatingPoint {
            accept_distance: shipped.accept_distance - 0.5,
            ..shipped
        };
        assert!(tightened.check_seal(&[1u8; 32], &path).is_err());
    }
}
