//! `kiosk.toml`: everything an installer sets, with units in the names. Unknown keys are errors, so a
//! misspelt setting is reported instead of silently ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audit::AuditConfig;
use crate::decision::DecisionConfig;
use crate::door::RelayConfig;
use crate::mqtt::MqttConfig;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskConfig {
    pub door: String,
    pub model: ModelConfig,
    pub source: SourceConfig,
    pub gallery: GalleryConfig,
    #[serde(default)]
    pub decision: DecisionConfig,
    pub audit: AuditConfig,
    #[serde(default)]
    pub display: DisplayConfig,
    /// The door relay; without it the kiosk only reports decisions.
    pub relay: Option<RelayConfig>,
    /// Events to an MQTT broker.
    pub mqtt: Option<MqttConfig>,
    /// Windows waiting for the network before a live camera starts dropping them.
    #[serde(default = "default_windows_in_flight")]
    pub max_windows_in_flight: usize,
}

fn default_windows_in_flight() -> usize {
    2
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub path: PathBuf,
    /// `auto`, `tract` or `ort`.
    #[serde(default = "default_backend")]
    pub backend: String,
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_backend() -> String {
    "auto".into()
}

fn default_threads() -> usize {
    2
}

/// Exactly one of `camera` (a V4L2 index) and `path` (a video file or image directory).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub camera: Option<u32>,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GalleryConfig {
    pub path: PathBuf,
    /// A file holding the 64-hex-digit template key; templates are stored in clear without one.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayConfig {
    /// Status screens are written here as PNG, one per decision.
    pub screen_dir: Option<PathBuf>,
    /// The status screen is shown live on this framebuffer device (feature `fb`).
    pub framebuffer: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl KioskConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut config: KioskConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if config.source.camera.is_some() == config.source.path.is_some() {
            return Err(invalid(
                "[source] needs exactly one of `camera` and `path`".into(),
            ));
        }
        if config.decision.accept_distance.is_nan()
            || config.decision.accept_distance <= 0.0
            || config.decision.margin < 0.0
        {
            return Err(invalid(
                "[decision] accept_distance must be positive and margin not negative".into(),
            ));
        }
        if let Some(relay) = &config.relay {
            relay.check().map_err(|e| invalid(format!("[relay] {e}")))?;
        }
        if !["auto", "tract", "ort"].contains(&config.model.backend.as_str()) {
            return Err(invalid(format!(
                "[model] backend `{}` is not one of auto, tract, ort",
                config.model.backend
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for relative in [
            Some(&mut config.model.path),
            config.source.path.as_mut(),
            Some(&mut config.gallery.path),
            config.gallery.key_file.as_mut(),
            Some(&mut config.audit.path),
            config.display.screen_dir.as_mut(),
            config.display.framebuffer.as_mut(),
            config.mqtt.as_mut().map(|m| &mut m.queue_path),
        ]
        .into_iter()
        .flatten()
        {
            if relative.is_relative() {
                *relative = base.join(&*relative);
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
door = "front"
[model]
path = "hstl.onnx"
[source]
camera = 0
[gallery]
path = "gallery.db"
[decision]
accept_distance = 0.8
margin = 0.05
consensus_windows = 2
max_people_in_zone = 1
[audit]
path = "/var/log/kiosk/events.jsonl"
max_file_bytes = 10000000
keep_files = 5
"#;

    fn load(text: &str) -> Result<KioskConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiosk.toml");
        std::fs::write(&path, text).unwrap();
        KioskConfig::load(&path)
    }

    #[test]
    fn a_complete_file_loads_with_paths_beside_it() {
        let config = load(GOOD).unwrap();
        assert_eq!(config.decision.accept_distance, 0.8);
        assert!(config.model.path.is_absolute());
        assert_eq!(
            config.audit.path,
            PathBuf::from("/var/log/kiosk/events.jsonl")
        );
        assert_eq!(config.model.backend, "auto");
    }

    #[test]
    fn mistakes_are_named() {
        let misspelt = GOOD.replace("margin = 0.05", "margn = 0.05");
        assert!(load(&misspelt).unwrap_err().to_string().contains("margn"));
        let both = GOOD.replace("camera = 0", "camera = 0\npath = \"x.mp4\"");
        assert!(load(&both).unwrap_err().to_string().contains("exactly one"));
        let negative = GOOD.replace("accept_distance = 0.8", "accept_distance = -1.0");
        assert!(load(&negative)
            .unwrap_err()
            .to_string()
            .contains("accept_distance"));
        assert!(load("door = ").is_err());
        let long_pulse =
            format!("{GOOD}[relay]\nchip = \"/dev/gpiochip0\"\nline = 17\npulse_ms = 60000\n");
        assert!(load(&long_pulse)
            .unwrap_err()
            .to_string()
            .contains("60000 ms"));
    }

    #[test]
    fn the_packaged_example_is_valid_and_complete() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cross/package/kiosk.toml");
        let config = KioskConfig::load(&example).unwrap();
        assert_eq!(config.source.camera, Some(0));
        assert_eq!(config.relay.unwrap().pulse_ms, 3_000);
        assert_eq!(config.mqtt.unwrap().prefix(&config.door), "kiosk/front");
        assert_eq!(
            config.gallery.key_file,
            Some(PathBuf::from("/etc/kiosk/template.key"))
        );
    }

    #[test]
    fn the_relay_section_is_optional_with_safe_defaults() {
        assert_eq!(load(GOOD).unwrap().relay, None);
        let relay = load(&format!(
            "{GOOD}[relay]\nchip = \"/dev/gpiochip0\"\nline = 17\n"
        ))
        .unwrap()
        .relay
        .unwrap();
        assert_eq!(
            (relay.line, relay.active_low, relay.pulse_ms),
            (17, false, 3_000)
        );
    }
}
