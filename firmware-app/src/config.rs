//! `kiosk.toml`: everything an installer sets, with units in the names. Unknown keys are errors, so a
//! misspelt setting is reported instead of silently ignored.

use hstl::MAX_THREADS;
use std::path::{Path, PathBuf};

use hstl::{Backend, Precision};
use serde::Deserialize;

use crate::mqtt::MqttConfig;
use crate::panel::PanelConfig;
use crate::relay::RelayConfig;
use access::audit::AuditConfig;
use access::decision::DecisionConfig;
use door_io::door_inputs::DoorInputsConfig;
use site::SiteConfig;

/// `kiosk.toml`: one door (`cross/package/kiosk.toml` is a complete, commented example).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskConfig {
    /// The door's name in events and on the screen.
    pub door: String,
    /// `[model]`: the network (default: the shipped model on the automatic backend).
    #[serde(default)]
    pub model: ModelConfig,
    /// `[source]`: the camera or recording.
    pub source: SourceConfig,
    /// `[gallery]`: who is enrolled.
    pub gallery: GalleryConfig,
    /// `[decision]`: how the door decides.
    #[serde(default)]
    pub decision: DecisionConfig,
    /// `[audit]`: the audit log.
    pub audit: AuditConfig,
    /// `[display]`: the status screen.
    #[serde(default)]
    pub display: DisplayConfig,
    /// The door relay of a stand-alone door; without it (and without a panel) the kiosk only
    /// reports decisions.
    pub relay: Option<RelayConfig>,
    /// The access-control panel that owns the door's lock; the kiosk is its reader.
    pub panel: Option<PanelConfig>,
    /// The door-position switch and request-to-exit button (stand-alone doors), the tamper switch.
    pub door_inputs: Option<DoorInputsConfig>,
    /// Events to an MQTT broker.
    pub mqtt: Option<MqttConfig>,
    /// The site this door belongs to: its gallery becomes the site's replica, its events go to the
    /// site database.
    pub site: Option<SiteConfig>,
    /// Windows waiting for the network before a live camera starts dropping them.
    #[serde(default = "default_windows_in_flight")]
    pub max_windows_in_flight: usize,
}

fn default_windows_in_flight() -> usize {
    2
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The ONNX model; its operating point must sit beside it. Default: the shipped trained model
    /// ([`hstl::shipped_model_path`]).
    #[serde(default = "hstl::shipped_model_path")]
    pub path: PathBuf,
    /// `auto` (the default), `tract` or `ort`.
    #[serde(default)]
    pub backend: Backend,
    /// CPU threads for inference.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// `f32` (the default) or `f16`: tract's arithmetic up to the pooling, for ARM boards with FP16
    /// arithmetic. Same model, same gallery and operating point.
    #[serde(default)]
    pub precision: Precision,
}

fn default_threads() -> usize {
    2
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: hstl::shipped_model_path(),
            backend: Backend::default(),
            threads: default_threads(),
            precision: Precision::default(),
        }
    }
}

/// Exactly one of `camera` (a V4L2 index) and `path` (a video file or image directory).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `/dev/video{camera}`.
    pub camera: Option<u32>,
    /// A video file or a folder of images, replayed.
    pub path: Option<PathBuf>,
}

/// The one source a `[source]` section names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A live camera, `/dev/video{index}`: frames are dropped rather than waited for.
    Camera(u32),
    /// A video file or a folder of images, replayed frame by frame.
    Recording(&'a Path),
}

impl SourceConfig {
    /// The source named, or why there is not exactly one.
    pub fn chosen(&self) -> Result<Source<'_>, String> {
        match (self.camera, &self.path) {
            (Some(index), None) => Ok(Source::Camera(index)),
            (None, Some(path)) => Ok(Source::Recording(path)),
            _ => Err("[source] needs exactly one of `camera` and `path`".into()),
        }
    }
}

/// `[gallery]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GalleryConfig {
    /// The SQLite gallery `enrol` made.
    pub path: PathBuf,
    /// A file holding the 64-hex-digit template key; templates are stored in clear without one.
    pub key_file: Option<PathBuf>,
}

/// `[display]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayConfig {
    /// Status screens are written here as PNG, one per decision.
    pub screen_dir: Option<PathBuf>,
    /// The status screen is shown live on this framebuffer device (feature `fb`).
    pub framebuffer: Option<PathBuf>,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A value that is missing, misspelt or out of its range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field and what is wrong with it.
        message: String,
    },
}

/// Each window in flight holds 30 silhouettes; a few cover any stall worth riding out.
pub const MAX_WINDOWS_IN_FLIGHT: usize = 16;
/// An audit file smaller than this would rotate on nearly every event.
pub const MIN_AUDIT_FILE_BYTES: u64 = 4_096;
/// Rotated audit files: at least one, so that the line just written survives a rotation.
pub const MAX_AUDIT_KEEP_FILES: usize = 10_000;
/// The largest MQTT queue allowed: ten million events of a few hundred bytes is already gigabytes.
pub const MAX_MQTT_QUEUED: usize = 10_000_000;

impl KioskConfig {
    /// Every value in a range the kiosk can run with, or the first that is not, named by section.
    fn check(&self) -> Result<(), String> {
        // The name is in every event and audit line, and the site stores it (up to 200 characters).
        if let Some(fault) = access::gallery::name_fault(&self.door) {
            return Err(format!(
                "door = {:?} cannot name a door: {fault}",
                access::gallery::printable(&self.door.chars().take(60).collect::<String>())
            ));
        }
        self.source.chosen()?;
        if !(1..=MAX_THREADS).contains(&self.model.threads) {
            return Err(format!(
                "[model] threads = {}: must be from 1 to {MAX_THREADS}",
                self.model.threads
            ));
        }
        self.decision
            .check()
            .map_err(|e| format!("[decision] {e}"))?;
        if self.audit.max_file_bytes < MIN_AUDIT_FILE_BYTES {
            return Err(format!(
                "[audit] max_file_bytes = {}: must be at least {MIN_AUDIT_FILE_BYTES}",
                self.audit.max_file_bytes
            ));
        }
        if !(1..=MAX_AUDIT_KEEP_FILES).contains(&self.audit.keep_files) {
            return Err(format!(
                "[audit] keep_files = {}: must be from 1 to {MAX_AUDIT_KEEP_FILES}",
                self.audit.keep_files
            ));
        }
        if let Some(relay) = &self.relay {
            relay.check().map_err(|e| format!("[relay] {e}"))?;
        }
        if let Some(panel) = &self.panel {
            if self.relay.is_some() {
                return Err("[relay] and [panel] both open the door: a door has one lock owner, the kiosk's relay (stand-alone) or the panel".into());
            }
            panel.check().map_err(|e| format!("[panel] {e}"))?;
        }
        if let Some(inputs) = &self.door_inputs {
            inputs.check().map_err(|e| format!("[door_inputs] {e}"))?;
            let door_side = inputs.door_position.is_some() || inputs.request_to_exit.is_some();
            if door_side && self.relay.is_none() {
                return Err("[door_inputs] door_position and request_to_exit need the kiosk's [relay]: where a panel owns the lock, wire them to the panel".into());
            }
        }
        if let Some(mqtt) = &self.mqtt {
            if mqtt.host.trim().is_empty() {
                return Err("[mqtt] host is empty".into());
            }
            mqtt.check_transport().map_err(|e| format!("[mqtt] {e}"))?;
            if !(1..=MAX_MQTT_QUEUED).contains(&mqtt.max_queued) {
                return Err(format!(
                    "[mqtt] max_queued = {}: must be from 1 to {MAX_MQTT_QUEUED}",
                    mqtt.max_queued
                ));
            }
        }
        if let Some(site) = &self.site {
            site.check().map_err(|e| format!("[site] {e}"))?;
            if self.gallery.key_file.is_none() {
                return Err("[site] needs [gallery] key_file: the site's templates are sealed under the site's template key".into());
            }
        }
        if !(1..=MAX_WINDOWS_IN_FLIGHT).contains(&self.max_windows_in_flight) {
            return Err(format!(
                "max_windows_in_flight = {}: must be from 1 to {MAX_WINDOWS_IN_FLIGHT}",
                self.max_windows_in_flight
            ));
        }
        Ok(())
    }

    /// Reads, checks and resolves (relative paths against the file's folder) a configuration.
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
        config.check().map_err(invalid)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for relative in [
            Some(&mut config.model.path),
            config.source.path.as_mut(),
            Some(&mut config.gallery.path),
            config.gallery.key_file.as_mut(),
            Some(&mut config.audit.path),
            config.audit.key_file.as_mut(),
            config.display.screen_dir.as_mut(),
            config.display.framebuffer.as_mut(),
            config
                .panel
                .as_mut()
                .and_then(|p| p.osdp.as_mut())
                .map(|o| &mut o.key_file),
        ]
        .into_iter()
        .chain(config.mqtt.iter_mut().flat_map(|mqtt| mqtt.files_mut()))
        .chain(config.site.iter_mut().flat_map(|site| site.files_mut()))
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
relative_margin = 0.05
consensus_windows = 2
unknown_windows = 3
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
    fn a_door_that_names_no_model_runs_the_shipped_one() {
        let without_model = GOOD.replace("[model]\npath = \"hstl.onnx\"\n", "");
        let config = load(&without_model).unwrap();
        assert_eq!(config.model.path, hstl::shipped_model_path());
        assert_eq!(config.model.threads, 2);
        let without_path = GOOD.replace("path = \"hstl.onnx\"\n", "threads = 3\n");
        let config = load(&without_path).unwrap();
        assert_eq!(config.model.path, hstl::shipped_model_path());
        assert_eq!(config.model.threads, 3);
    }

    #[test]
    fn a_complete_file_loads_with_paths_beside_it() {
        let config = load(GOOD).unwrap();
        assert_eq!(config.decision.accept_distance, Some(0.8));
        assert!(config.model.path.is_absolute());
        assert_eq!(
            config.audit.path,
            PathBuf::from("/var/log/kiosk/events.jsonl")
        );
        assert_eq!(config.model.backend, Backend::Auto);
    }

    #[test]
    fn a_mistyped_setting_beside_the_tls_settings_is_named() {
        for section in [
            "[mqtt]\nhost = \"broker\"\nqueue_path = \"q.jsonl\"\nplaintext = true\n",
            "[site]\nurl = \"postgresql://front@site/gait\"\nplaintext = true\n",
        ] {
            for typo in ["ca_flie = \"ca.pem\"", "plaintxt = true"] {
                let error = load(&format!("{GOOD}\n{section}{typo}\n"))
                    .unwrap_err()
                    .to_string();
                let key = typo.split(" =").next().unwrap();
                assert!(error.contains(key), "{section}{typo}: {error}");
            }
        }
    }

    #[test]
    fn mistakes_are_named() {
        let misspelt = GOOD.replace("relative_margin = 0.05", "relative_margn = 0.05");
        assert!(load(&misspelt).unwrap_err().to_string().contains("margn"));
        let both = GOOD.replace("camera = 0", "camera = 0\npath = \"x.mp4\"");
        assert!(load(&both).unwrap_err().to_string().contains("exactly one"));
        let negative = GOOD.replace("accept_distance = 0.8", "accept_distance = -1.0");
        assert!(load(&negative)
            .unwrap_err()
            .to_string()
            .contains("accept_distance"));
        assert!(load("door = ").is_err());
        for (field, bad) in [
            ("accept_distance", "accept_distance = nan"),
            ("accept_distance", "accept_distance = inf"),
            ("accept_distance", "accept_distance = 0.0"),
            ("relative_margin", "relative_margin = nan"),
            ("relative_margin", "relative_margin = 0.9"),
            ("consensus_windows", "consensus_windows = 0"),
            ("unknown_windows", "unknown_windows = 11"),
            ("max_people_in_zone", "max_people_in_zone = 0"),
            ("keep_files", "keep_files = 0"),
            ("max_file_bytes", "max_file_bytes = 10"),
        ] {
            let key = bad.split(" =").next().unwrap();
            let line = GOOD
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("{key} in GOOD"));
            let error = load(&GOOD.replace(line, bad)).unwrap_err().to_string();
            assert!(error.contains(field), "{bad}: {error}");
        }
        let threads = GOOD.replace(
            "path = \"hstl.onnx\"",
            "path = \"hstl.onnx\"\nthreads = 40000",
        );
        assert!(load(&threads)
            .unwrap_err()
            .to_string()
            .contains("threads = 40000"));
        let threads = GOOD.replace("path = \"hstl.onnx\"", "path = \"hstl.onnx\"\nthreads = 0");
        assert!(load(&threads)
            .unwrap_err()
            .to_string()
            .contains("threads = 0"));
        let in_flight = format!("max_windows_in_flight = 0\n{GOOD}");
        assert!(load(&in_flight)
            .unwrap_err()
            .to_string()
            .contains("max_windows_in_flight"));
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
        assert_eq!(
            config.decision.accept_distance, None,
            "the packaged file leaves the accept distance to the model's operating point"
        );
        assert_eq!(config.relay.unwrap().pulse_ms, 3_000);
        assert_eq!(config.mqtt.unwrap().prefix(&config.door), "kiosk/front");
        assert_eq!(
            config.gallery.key_file,
            Some(PathBuf::from("/etc/kiosk/template.key"))
        );
    }

    /// The packaged example with the commented settings of the sections `on` switched on and the
    /// sections `dropped` removed.
    fn example_with(on: &[&str], dropped: &[&str]) -> String {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cross/package/kiosk.toml");
        let text = std::fs::read_to_string(example).unwrap();
        let mut section = String::new();
        let mut lines = Vec::new();
        for line in text.lines() {
            let commented = line.strip_prefix("# ").filter(|rest| {
                rest.starts_with('[')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(key, _)| !key.contains(' '))
            });
            let (line, header) = match commented {
                Some(rest) if rest.starts_with('[') => (rest, Some(rest)),
                Some(rest) if on.contains(&section.as_str()) => (rest, None),
                _ => (line, line.starts_with('[').then_some(line)),
            };
            if let Some(header) = header {
                section = header.trim_matches(['[', ']']).to_string();
                if commented.is_some() && !on.contains(&section.as_str()) {
                    continue;
                }
            }
            if !dropped.contains(&section.as_str()) {
                lines.push(line);
            }
        }
        lines.join("\n")
    }

    #[test]
    fn the_packaged_examples_of_door_inputs_and_panels_are_valid() {
        let inputs = load(&example_with(&["door_inputs"], &[])).unwrap();
        assert_eq!(inputs.door_inputs.unwrap().held_open_ms, 30_000);
        let osdp = load(&example_with(
            &["panel", "panel.osdp"],
            &["relay", "door_inputs"],
        ))
        .unwrap();
        assert_eq!(osdp.panel.unwrap().osdp.unwrap().address, 1);
        let wiegand = example_with(&["panel", "panel.wiegand"], &["relay", "door_inputs"])
            .replace("mode = \"osdp\"", "mode = \"wiegand\"");
        assert_eq!(
            load(&wiegand)
                .unwrap()
                .panel
                .unwrap()
                .wiegand
                .unwrap()
                .pulse_us,
            80
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

    #[test]
    fn a_panel_and_the_door_inputs_read_with_their_defaults() {
        let config = load(&format!(
            "{GOOD}[panel]\nmode = \"osdp\"\nfacility_code = 101\n[panel.osdp]\ndevice = \"/dev/ttyUSB0\"\naddress = 3\nkey_file = \"osdp.key\"\n[door_inputs]\ntamper = {{ chip = \"/dev/gpiochip0\", line = 5 }}\n"
        ))
        .unwrap();
        let panel = config.panel.unwrap();
        assert_eq!(
            (
                panel.format.bits(),
                panel.max_read_age_ms,
                panel.osdp.unwrap().baud_rate
            ),
            (26, 2_000, 9_600)
        );
        let inputs = config.door_inputs.unwrap();
        assert_eq!(
            (inputs.debounce_ms, inputs.held_open_ms, inputs.pre_alarm_ms),
            (50, 30_000, 10_000)
        );
    }

    #[test]
    fn a_door_name_no_log_or_site_can_hold_is_refused() {
        // The hostile probe: a 64 KB name made the log unverifiable and the next start moved the
        // whole log aside.
        for (name, because) in [
            ("x".repeat(64 * 1024), "longer than 200 characters"),
            ("front\\u001b[2K".into(), "control characters"),
            ("  ".into(), "empty"),
        ] {
            let text = GOOD.replace("door = \"front\"", &format!("door = \"{name}\""));
            let error = load(&text).unwrap_err().to_string();
            assert!(error.contains(because), "{error}");
            assert!(
                error.len() < 400,
                "the name is not repeated whole: {}",
                error.len()
            );
        }
    }

    #[test]
    fn a_door_with_two_lock_owners_or_inputs_without_a_relay_is_refused() {
        let relay = "[relay]\nchip = \"/dev/gpiochip0\"\nline = 17\n";
        let wiegand = "[panel]\nmode = \"wiegand\"\nfacility_code = 7\n[panel.wiegand]\nd0 = { chip = \"/dev/gpiochip0\", line = 20 }\nd1 = { chip = \"/dev/gpiochip0\", line = 21 }\n";
        assert!(load(&format!("{GOOD}{wiegand}")).is_ok());
        let error = load(&format!("{GOOD}{relay}{wiegand}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("one lock owner"), "{error}");
        let exit = "[door_inputs]\nrequest_to_exit = { chip = \"/dev/gpiochip0\", line = 4 }\n";
        let error = load(&format!("{GOOD}{wiegand}{exit}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("need the kiosk's [relay]"), "{error}");
        assert!(load(&format!("{GOOD}{relay}{exit}")).is_ok());
    }

    #[test]
    fn a_panel_without_its_mode_section_or_with_a_facility_code_too_large_is_refused() {
        let error = load(&format!(
            "{GOOD}[panel]\nmode = \"osdp\"\nfacility_code = 1\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("needs [panel.osdp]"), "{error}");
        let error = load(&format!(
            "{GOOD}[panel]\nmode = \"wiegand\"\nfacility_code = 300\n[panel.wiegand]\nd0 = {{ chip = \"c\", line = 1 }}\nd1 = {{ chip = \"c\", line = 2 }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("facility code 300 does not fit 26-bit Wiegand"),
            "{error}"
        );
    }
}
