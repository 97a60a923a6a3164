//! The synthetic site: the whole kiosk on a fresh machine, with no camera and no files of its own.
//! Synthetic people are enrolled from their own walks through the enrolment path, then walk-ups of
//! enrolled people, strangers, a tailgating pair and a walker too close to the camera go through the
//! kiosk, and each decision is checked against what should have happened.
//!
//! The network is the shipped trained model (`model/weights/`, trained on CASIA-B's real
//! silhouettes), and the door accepts up to the model's calibrated operating point, as a real door
//! does: the demo never tunes a threshold of its own on the people it then judges.

#![forbid(unsafe_code)]

pub mod soak;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use access::audit::{AuditConfig, Verification};
use access::decision::{DecisionConfig, Verdict};
use access::gallery::{Gallery, TemplateKey};
use access::vocabulary::DenialReason;
use firmware_app::audit_anchors::{verify_door_log, VerifyLogError};
use firmware_app::config::{DisplayConfig, GalleryConfig, KioskConfig, ModelConfig, SourceConfig};
use firmware_app::enrolment::{templates_from_windows, walk_windows};
use firmware_app::kiosk_loop::{DecisionRecord, KioskStats};
use firmware_app::Kiosk;
use hstl::streaming::StreamingEmbedder;
use hstl::{model_id, Backend, Precision};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use synthetic_scene::{SceneConfig, SyntheticScene};
use synthetic_scene::{Walk, WalkerIdentity};

const NAMES: [&str; 8] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Dennis",
];
const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const FRAME_RATE: f64 = 25.0;
const LEAD_IN_S: f32 = 1.5;
/// The follower of a tailgating pair enters this long after the leader.
const TAILGATE_GAP_S: f32 = 0.9;
/// A follower who slips in sets off when the leader has covered this share of their crossing: they
/// enter the view after the leader's grant, while the leader is still in view and the door released,
/// however fast either walks.
const FOLLOW_AFTER_GRANT_SHARE: f32 = 0.75;
/// A walker this close to the camera is cut by the top and bottom of the image.
const TOO_CLOSE_DEPTH_M: f32 = 1.3;
/// Everyone approaches the door from the same side, within this angle of the image plane.
const APPROACH_ANGLE_MAX_DEG: f32 = 10.0;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub out_dir: PathBuf,
    /// The network (default: the shipped model); it must carry its operating point.
    pub model: PathBuf,
    pub people: usize,
    pub enrolment_walks: usize,
    pub strangers: usize,
    pub seed: u64,
    pub threads: usize,
}

impl DemoConfig {
    pub fn new(out_dir: PathBuf) -> Self {
        DemoConfig {
            out_dir,
            model: hstl::shipped_model_path(),
            people: 4,
            enrolment_walks: 3,
            strangers: 2,
            seed: 1,
            threads: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo output {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] hstl::HstlError),
    #[error(transparent)]
    ModelFile(#[from] hstl::operating_point::OperatingPointError),
    #[error(transparent)]
    Gallery(#[from] access::gallery::GalleryError),
    #[error(transparent)]
    Enrolment(#[from] firmware_app::enrolment::EnrolmentError),
    #[error(transparent)]
    Setup(#[from] firmware_app::SetupError),
    #[error(transparent)]
    Kiosk(#[from] firmware_app::kiosk_loop::KioskError),
    #[error(transparent)]
    Audit(#[from] access::audit::AuditError),
    /// The audit log did not verify against its published heads.
    #[error(transparent)]
    VerifyLog(#[from] VerifyLogError),
    #[error("synthetic walk of {0} gave no walker")]
    NoWalk(String),
}

/// What a walk-up should end in.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Granted(String),
    Denied(DenialReason),
    /// Granted, then someone follows in while the door is released.
    GrantedThenTailgateAlarm(String),
}

#[derive(Debug, Clone)]
pub struct WalkUpResult {
    pub label: String,
    pub expected: Expected,
    /// Every decision of the walk-up, first track first.
    pub decisions: Vec<DecisionRecord>,
    pub stats: KioskStats,
}

impl WalkUpResult {
    /// The decision on the first track to be decided is the one the walk-up is judged by.
    pub fn verdict(&self) -> Option<&DecisionRecord> {
        self.decisions.iter().min_by_key(|r| r.decision.track)
    }

    /// Right when the first decision is the expected one (and, for a follower, the alarm was raised).
    pub fn correct(&self) -> bool {
        let granted = |r: &DecisionRecord, name: &str| {
            matches!(r.decision.verdict, Verdict::Granted { .. }) && r.name.as_deref() == Some(name)
        };
        match (self.verdict(), &self.expected) {
            (Some(r), Expected::Granted(name)) => granted(r, name),
            (Some(r), Expected::GrantedThenTailgateAlarm(name)) => {
                granted(r, name) && self.stats.tailgate_alarms > 0
            }
            (Some(r), Expected::Denied(reason)) => {
                matches!(&r.decision.verdict, Verdict::Denied { reason: got, .. } if got == reason)
            }
            (None, _) => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DemoReport {
    pub enrolled: Vec<(String, usize)>,
    /// Distances between templates of one person from different enrolment walks.
    pub genuine: Vec<f32>,
    /// Distances between templates of two people.
    pub impostor: Vec<f32>,
    pub decision: DecisionConfig,
    /// The model's calibrated accept distance, which the door ran on.
    pub accept_distance: f32,
    pub walk_ups: Vec<WalkUpResult>,
    pub enrolment_time: Duration,
    pub kiosk_time: Duration,
    pub gallery: PathBuf,
    /// The demo's template key; the audit chain is sealed with a key derived from it.
    pub key_file: PathBuf,
    pub audit_log: PathBuf,
    pub screens: PathBuf,
    /// The door the walk-ups went through.
    pub door: KioskConfig,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn scene(seed: u64, walks: Vec<Walk>) -> SyntheticScene {
    SyntheticScene::new(scene_config(seed, walks))
}

fn scene_config(seed: u64, walks: Vec<Walk>) -> SceneConfig {
    SceneConfig {
        width: WIDTH,
        height: HEIGHT,
        frame_rate: FRAME_RATE,
        seed,
        frames: None,
        walks,
        noise_sigma: 2.5,
        shadows: false,
        light_drift: false,
        exposure_steps: false,
        empty_lead_in_s: LEAD_IN_S,
    }
}

fn walk(identity: &WalkerIdentity, rng: &mut impl Rng, start_s: f32) -> Walk {
    Walk {
        identity: identity.clone(),
        start_s,
        angle_deg: rng.random_range(0.0..APPROACH_ANGLE_MAX_DEG),
        from_left: true,
        depth_m: rng.random_range(3.0..3.6),
        pause: None,
    }
}

/// The synthetic site before its kiosk opens: people enrolled from their own walks into the gallery,
/// and the door's configuration (which a caller may change: the soak adds MQTT).
#[derive(Debug, Clone)]
pub struct EnrolledSite {
    pub door: KioskConfig,
    pub people: Vec<(String, WalkerIdentity)>,
    /// Draws every later walk, so a run is reproducible from [`DemoConfig::seed`].
    pub rng: ChaCha8Rng,
    pub enrolled: Vec<(String, usize)>,
    pub genuine: Vec<f32>,
    pub impostor: Vec<f32>,
    pub enrolment_time: Duration,
    pub key_file: PathBuf,
}

/// Enrols `config.people` synthetic people, each from `config.enrolment_walks` walks of their own,
/// with the enrolment path's windows and `config.model`, into a fresh gallery under `config.out_dir`.
pub fn enrol_site(config: &DemoConfig) -> Result<EnrolledSite, DemoError> {
    let out = &config.out_dir;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let screens = out.join("screens");
    if screens.exists() {
        std::fs::remove_dir_all(&screens).map_err(io(&screens))?;
    }
    std::fs::create_dir_all(&screens).map_err(io(&screens))?;
    let model_id = model_id(&config.model)?;
    let embedder = StreamingEmbedder::load_tract(&config.model, config.threads)?;
    log::info!("model {} ({model_id})", config.model.display());

    let gallery_path = out.join("gallery.db");
    for stale in ["gallery.db", "gallery.db-wal", "gallery.db-shm"] {
        let path = out.join(stale);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let key_file = out.join("template.key");
    if key_file.exists() {
        std::fs::remove_file(&key_file).map_err(io(&key_file))?;
    }
    let key = TemplateKey::create_file(&key_file)?;
    let mut gallery = Gallery::open(&gallery_path, Some(&key))?;

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let people: Vec<(String, WalkerIdentity)> = (0..config.people)
        .map(|i| {
            let name = NAMES[i % NAMES.len()].to_string();
            (name, WalkerIdentity::random(&mut rng))
        })
        .collect();
    let silhouettes = SilhouetteConfig::default();
    let enrolment_started = Instant::now();
    let mut enrolled = Vec::new();
    let mut walk_templates: Vec<(usize, usize, hstl::Embedding)> = Vec::new();
    for (person, (name, identity)) in people.iter().enumerate() {
        let mut templates = Vec::new();
        for pass in 0..config.enrolment_walks {
            let mut source = scene(rng.random(), vec![walk(identity, &mut rng, LEAD_IN_S)]);
            let mut pipeline = SilhouettePipeline::new(silhouettes.clone());
            let windows = walk_windows(&mut pipeline, None, &mut source)
                .map_err(|_| DemoError::NoWalk(name.clone()))?;
            let made = templates_from_windows(
                &embedder,
                &windows,
                &format!("{name} pass {}", pass + 1),
                |_, _| {},
            )?;
            walk_templates.extend(made.iter().map(|t| (person, pass, t.embedding.clone())));
            templates.extend(made);
        }
        gallery.enrol(name, &model_id, &templates)?;
        log::info!("enrolled {name} with {} templates", templates.len());
        enrolled.push((name.clone(), templates.len()));
    }
    let enrolment_time = enrolment_started.elapsed();
    let (genuine, impostor) = score_pairs(&walk_templates)?;

    // Each run seals its log with its own new key: the last run's files would not verify.
    let audit_dir = out.join("audit");
    if audit_dir.exists() {
        std::fs::remove_dir_all(&audit_dir).map_err(io(&audit_dir))?;
    }
    let door = KioskConfig {
        door: "demo door".into(),
        model: ModelConfig {
            path: config.model.clone(),
            backend: Backend::Tract,
            threads: config.threads,
            precision: Precision::F32,
        },
        source: SourceConfig {
            camera: None,
            path: None,
        },
        gallery: GalleryConfig {
            path: gallery_path,
            key_file: Some(key_file.clone()),
        },
        // The model's calibrated operating point decides, as at a real door.
        decision: DecisionConfig::default(),
        audit: AuditConfig {
            path: audit_dir.join("events.jsonl"),
            max_file_bytes: 10 << 20,
            keep_files: 5,
            key_file: None,
        },
        display: DisplayConfig {
            screen_dir: Some(screens),
            framebuffer: None,
        },
        relay: None,
        panel: None,
        door_inputs: None,
        mqtt: None,
        site: None,
        max_windows_in_flight: 2,
    };
    Ok(EnrolledSite {
        door,
        people,
        rng,
        enrolled,
        genuine,
        impostor,
        enrolment_time,
        key_file,
    })
}

pub fn run_demo(config: &DemoConfig) -> Result<DemoReport, DemoError> {
    let EnrolledSite {
        door,
        people,
        mut rng,
        enrolled,
        genuine,
        impostor,
        enrolment_time,
        key_file,
    } = enrol_site(config)?;
    let mut kiosk = Kiosk::open(&door)?;
    let accept_distance = kiosk.accept_distance();
    log::info!("accept up to {accept_distance:.4}, the model's calibrated operating point");

    let mut walk_ups: Vec<(String, Expected, Vec<Walk>)> = Vec::new();
    for (name, identity) in &people {
        walk_ups.push((
            format!("{name} walks up"),
            Expected::Granted(name.clone()),
            vec![walk(identity, &mut rng, LEAD_IN_S)],
        ));
    }
    for i in 0..config.strangers {
        let stranger = WalkerIdentity::random(&mut rng);
        walk_ups.push((
            format!("stranger {} walks up", i + 1),
            Expected::Denied(DenialReason::Unknown),
            vec![walk(&stranger, &mut rng, LEAD_IN_S)],
        ));
    }
    if let Some((name, identity)) = people.first() {
        let leader = walk(identity, &mut rng, LEAD_IN_S);
        let follower = Walk {
            identity: WalkerIdentity::random(&mut rng),
            start_s: LEAD_IN_S + TAILGATE_GAP_S,
            depth_m: leader.depth_m + 0.8,
            ..leader.clone()
        };
        walk_ups.push((
            format!("{name} with a stranger close behind"),
            Expected::Denied(DenialReason::Tailgating),
            vec![leader.clone(), follower],
        ));
        let close = Walk {
            depth_m: TOO_CLOSE_DEPTH_M,
            ..walk(identity, &mut rng, LEAD_IN_S)
        };
        walk_ups.push((
            format!("{name} too close to the camera"),
            Expected::Denied(DenialReason::PoorQuality),
            vec![close],
        ));
        let crossing_s = scene_config(0, Vec::new()).walk_end_s(&leader) - leader.start_s;
        let slipping_in = Walk {
            identity: WalkerIdentity::random(&mut rng),
            start_s: LEAD_IN_S + FOLLOW_AFTER_GRANT_SHARE * crossing_s,
            ..leader.clone()
        };
        walk_ups.push((
            format!("{name}, then a stranger slipping in"),
            Expected::GrantedThenTailgateAlarm(name.clone()),
            vec![leader, slipping_in],
        ));
    }

    let kiosk_started = Instant::now();
    let mut results = Vec::new();
    for (label, expected, walks) in walk_ups {
        let source = Box::new(scene(rng.random(), walks));
        let mut decisions = Vec::new();
        let stats = kiosk.run(
            source,
            false,
            Arc::new(AtomicBool::new(false)),
            &mut |record| decisions.push(record.clone()),
        )?;
        results.push(WalkUpResult {
            label,
            expected,
            decisions,
            stats,
        });
    }
    for (sink, pending) in kiosk.stop() {
        log::warn!("{sink}: {pending} events undelivered");
    }
    Ok(DemoReport {
        enrolled,
        genuine,
        impostor,
        decision: door.decision.clone(),
        accept_distance,
        walk_ups: results,
        enrolment_time,
        kiosk_time: kiosk_started.elapsed(),
        gallery: door.gallery.path.clone(),
        key_file,
        audit_log: door.audit.path.clone(),
        screens: door
            .display
            .screen_dir
            .clone()
            .expect("the demo's door keeps its screens"),
        door,
    })
}

/// Genuine pairs: templates of one person from different passes. Impostor pairs: templates of
/// different people.
fn score_pairs(
    templates: &[(usize, usize, hstl::Embedding)],
) -> Result<(Vec<f32>, Vec<f32>), hstl::HstlError> {
    let mut genuine = Vec::new();
    let mut impostor = Vec::new();
    for (i, (person_a, pass_a, a)) in templates.iter().enumerate() {
        for (person_b, pass_b, b) in &templates[i + 1..] {
            if person_a == person_b {
                if pass_a != pass_b {
                    genuine.push(a.distance(b)?);
                }
            } else {
                impostor.push(a.distance(b)?);
            }
        }
    }
    Ok((genuine, impostor))
}

/// Verifies the site's audit log: its chain under the door's chain key, and every chain head the
/// kiosk published.
pub fn verify_site_log(door: &KioskConfig) -> Result<Verification, DemoError> {
    let key_file = door
        .gallery
        .key_file
        .as_deref()
        .expect("the synthetic site always has a template key");
    let key = TemplateKey::read_file(key_file)?;
    let whole_log = KioskConfig {
        audit: AuditConfig {
            max_file_bytes: u64::MAX,
            ..door.audit.clone()
        },
        ..door.clone()
    };
    Ok(verify_door_log(&whole_log, Some(&key))?.verification)
}
