//! Synthetic video → events, through the real enrolment path, gallery, network (the shipped trained
//! model in the demo, a seeded HSTL elsewhere, on tract), matcher, policy and sinks.

mod common;

use access::audit::{verify, Anchors, AuditConfig, ChainKey};
use access::decision::{DecisionConfig, Verdict};
use access::event_store::EventStore;
use access::events::{Event, EventKind};
use access::gallery::{Gallery, TemplateKey};
use access::vocabulary::{ChainHead, DenialReason};
use firmware_app::enrolment::{templates_from_windows, walk_windows};
use firmware_app::framebuffer::{Framebuffer, PixelLayout};
use firmware_app::kiosk_loop::DecisionRecord;
use kiosk_demo::{run_demo, DemoConfig, DemoReport, Expected};
use silhouette::frame::Frame;
use silhouette::source::{FrameSource, SourceError};
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use synthetic_scene::{SceneConfig, SyntheticScene};

#[test]
fn the_demo_site_decides_every_walk_up_and_logs_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DemoConfig::new(dir.path().to_path_buf());
    config.people = 2;
    config.enrolment_walks = 2;
    config.strangers = 1;
    let report = run_demo(&config).unwrap();

    assert_eq!(report.enrolled.len(), 2);
    assert!(report.enrolled.iter().all(|(_, templates)| *templates >= 2));
    // The synthetic people differ as people do (proportions, posture, clothing, gait), and the
    // trained network tells them apart at its calibrated operating point.
    assert_every_walk_up_decided_right(&report);
    let decisions: usize = report.walk_ups.iter().map(|w| w.decisions.len()).sum();
    let audit = AuditConfig {
        path: report.audit_log.clone(),
        max_file_bytes: u64::MAX,
        keep_files: 5,
        key_file: None,
    };
    let alarms: u64 = report
        .walk_ups
        .iter()
        .map(|w| w.stats.tailgate_alarms)
        .sum();
    // Decisions, tailgate alarms, the started and stopped events, and the chain heads published
    // after each walk-up, each checked against the log.
    let key = TemplateKey::read_file(&report.key_file).unwrap();
    let stored = EventStore::open_existing(&report.gallery, Some(&key)).unwrap();
    let heads: Vec<ChainHead> = stored
        .event_bodies("audit_head")
        .unwrap()
        .iter()
        .map(
            |body| match serde_json::from_str::<Event>(body).unwrap().kind {
                EventKind::AuditHead { seq, mac } => ChainHead { seq, mac },
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(heads.len(), report.walk_ups.len());
    let anchors = [Anchors {
        source: "gallery".into(),
        heads: heads.clone(),
    }];
    let verified = verify(&audit, Some(&ChainKey::read(&audit).unwrap()), &anchors).unwrap();
    assert_eq!(verified.anchors_total(), heads.len());
    assert!(
        verify(&audit, Some(&ChainKey::new(key.derive("audit chain"))), &[]).is_err(),
        "the site-wide template key, or a key derived from it, does not seal a door's log"
    );
    assert_eq!(
        verified.events,
        decisions as u64 + alarms + 2 + heads.len() as u64
    );
    let slipping_in = report
        .walk_ups
        .iter()
        .find(|w| matches!(w.expected, Expected::GrantedThenTailgateAlarm(_)))
        .unwrap();
    if slipping_in
        .verdict()
        .is_some_and(|r| matches!(r.decision.verdict, Verdict::Granted { .. }))
    {
        assert_eq!(
            slipping_in.stats.tailgate_alarms, 1,
            "a stranger entering while the door is released raises the alarm"
        );
    }
    let screens = std::fs::read_dir(&report.screens).unwrap().count();
    assert_eq!(screens, decisions);
    let log = std::fs::read_to_string(&report.audit_log).unwrap();
    for (name, _) in &report.enrolled {
        assert!(
            !log.contains(name.as_str()),
            "the audit log names people by pseudonym only"
        );
    }
}

#[test]
fn the_shipped_int8_model_runs_the_door_at_its_own_operating_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DemoConfig::new(dir.path().to_path_buf());
    let float = hstl::shipped_model_path();
    config.model = float.with_extension("int8.onnx");
    config.people = 2;
    config.enrolment_walks = 2;
    config.strangers = 1;
    let report = run_demo(&config).unwrap();

    let float_point = hstl::OperatingPoint::load_for(&float, &hstl::model_id(&float).unwrap())
        .unwrap()
        .unwrap();
    assert_ne!(report.accept_distance, float_point.accept_distance);
    assert_every_walk_up_decided_right(&report);
}

fn assert_every_walk_up_decided_right(report: &DemoReport) {
    for walk_up in &report.walk_ups {
        assert!(
            walk_up.correct(),
            "{}: expected {:?}, got {:?}",
            walk_up.label,
            walk_up.expected,
            walk_up.verdict().map(|r| &r.decision.verdict)
        );
    }
}

fn scene(seed: u64) -> SyntheticScene {
    SyntheticScene::new(SceneConfig::single_walker(seed, 320, 240))
}

/// A gallery at `path` with ada and bob enrolled from their synthetic walks (seeds 11 and 12), and the
/// kiosk's engine on it, accepting only a replay of an enrolled walk.
fn replay_door(
    dir: &std::path::Path,
    path: &std::path::Path,
) -> (Gallery, firmware_app::kiosk_loop::DoorEngine) {
    let (_, model_id, embedder) = common::seeded_model(dir);
    let mut gallery = Gallery::open(path, None).unwrap();
    for (name, seed) in [("ada", 11), ("bob", 12)] {
        let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
        let walk = walk_windows(&mut pipeline, None, &mut scene(seed)).unwrap();
        let templates = templates_from_windows(&embedder, &walk, name, |_, _| {}).unwrap();
        gallery.enrol(name, &model_id, &templates).unwrap();
    }
    let engine = common::door_engine_without_margin(
        "test door",
        &gallery,
        model_id,
        embedder,
        // Only a replay of the same silhouettes comes this close.
        1e-4,
    );
    (gallery, engine)
}

#[test]
fn an_enrolled_walk_replayed_is_granted_and_another_walker_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let gallery_path = dir.path().join("gallery.db");
    let (_gallery, mut engine) = replay_door(dir.path(), &gallery_path);
    let (mut outputs, audit) = common::audited_outputs(dir.path());
    outputs.dispatcher.add(Box::new(
        EventStore::open_existing(&gallery_path, None).unwrap(),
    ));
    // A plain file stands in for /dev/fb0, with a 32-bit layout wider than the screen.
    let fb_path = dir.path().join("fb0");
    let fb_layout = PixelLayout {
        line_length: 640 * 4,
        ..PixelLayout::xrgb8888(640, 480)
    };
    let fb_file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&fb_path)
        .unwrap();
    fb_file.set_len(640 * 4 * 480).unwrap();
    outputs.framebuffer = Some(Framebuffer::with_layout(fb_file, &fb_path, fb_layout).unwrap());

    let mut replay = |seed: u64| -> Vec<DecisionRecord> {
        common::play(Box::new(scene(seed)), false, &mut engine, &mut outputs).0
    };
    let ada = replay(11);
    assert_eq!(ada.len(), 1, "{ada:?}");
    assert!(
        matches!(ada[0].decision.verdict, Verdict::Granted { .. }),
        "{:?}",
        ada[0].decision
    );
    assert_eq!(ada[0].name.as_deref(), Some("ada"));
    let shown = std::fs::read(&fb_path).unwrap();
    let lit = shown.chunks(4).filter(|p| p[..3] != [0, 0, 0]).count();
    assert!(
        lit > 10_000,
        "the status screen reached the framebuffer ({lit} pixels lit)"
    );
    assert!(
        shown[480 * 4..640 * 4].iter().all(|&b| b == 0),
        "nothing drawn right of the 480-pixel screen"
    );
    assert!(ada[0].decision.figures.as_ref().unwrap().distance < 1e-4);

    let stranger = replay(13);
    assert_eq!(stranger.len(), 1);
    assert_eq!(
        stranger[0].decision.verdict,
        Verdict::Denied {
            reason: DenialReason::Unknown,
            identity: None
        }
    );
    let log = std::fs::read_to_string(&audit.path).unwrap();
    assert_eq!(verify(&audit, None, &[]).unwrap().events, 2, "{log}");
    assert_eq!(
        EventStore::open_existing(&gallery_path, None)
            .unwrap()
            .event_count()
            .unwrap(),
        2
    );
}

#[test]
fn a_person_erased_while_the_kiosk_runs_is_refused_at_the_next_walk_up_and_never_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let gallery_path = dir.path().join("gallery.db");
    let (gallery, mut engine) = replay_door(dir.path(), &gallery_path);
    let ada = gallery.person("ada").unwrap().pseudonym;
    engine.watch_gallery(Gallery::open_existing(&gallery_path, None).unwrap());
    let (mut outputs, audit) = common::audited_outputs(dir.path());
    outputs.dispatcher.add(Box::new(
        EventStore::open_existing(&gallery_path, None).unwrap(),
    ));

    let before = common::play(Box::new(scene(11)), false, &mut engine, &mut outputs).0;
    assert!(
        matches!(before[0].decision.verdict, Verdict::Granted { .. }),
        "{:?}",
        before[0].decision
    );
    // `enrol remove` in another process: its own connection to the same file.
    Gallery::open_existing(&gallery_path, None)
        .unwrap()
        .erase("ada")
        .unwrap();
    let after = common::play(Box::new(scene(11)), false, &mut engine, &mut outputs).0;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        after[0].decision.verdict,
        Verdict::Denied {
            reason: DenialReason::Unknown,
            identity: None
        },
        "the erased person's own walk is a stranger's now"
    );
    assert_eq!(after[0].event.person, None);
    let stored = EventStore::open_existing(&gallery_path, None).unwrap();
    assert_eq!(stored.event_count().unwrap(), 1, "the denial only");
    assert_eq!(stored.events_naming(&ada).unwrap(), 0);
    let log = std::fs::read_to_string(&audit.path).unwrap();
    assert_eq!(
        log.matches(ada.as_str()).count(),
        1,
        "only the grant before the erasure: {log}"
    );
}

/// A camera that fails for a few reads in the middle of a walk, then works again.
struct Unplugged {
    scene: SyntheticScene,
    fail_after: u64,
    failures_left: usize,
    delivered: u64,
}

impl FrameSource for Unplugged {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.delivered == self.fail_after && self.failures_left > 0 {
            self.failures_left -= 1;
            return Err(SourceError::Io {
                path: "/dev/video0".into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "device unplugged"),
            });
        }
        self.delivered += 1;
        self.scene.next_frame()
    }

    fn frame_rate(&self) -> f64 {
        self.scene.frame_rate()
    }

    fn describe(&self) -> String {
        "a camera that comes and goes".into()
    }
}

/// A door with an empty gallery and an audited output in `dir`.
fn door_of_nobody(
    dir: &std::path::Path,
) -> (
    firmware_app::kiosk_loop::DoorEngine,
    firmware_app::kiosk_loop::Outputs,
    access::audit::AuditConfig,
) {
    let (_, model_id, embedder) = common::seeded_model(dir);
    let gallery = Gallery::open(&dir.join("gallery.db"), None).unwrap();
    let engine = common::door_engine(
        "test door",
        &gallery,
        model_id,
        embedder,
        DecisionConfig::default(),
        0.5,
    );
    let (outputs, audit) = common::audited_outputs(dir);
    (engine, outputs, audit)
}

#[test]
fn a_camera_lost_mid_walk_is_reported_once_and_its_return_too() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, mut outputs, audit) = door_of_nobody(dir.path());
    let frames = scene(21).total_frames();
    let source = Unplugged {
        scene: scene(21),
        fail_after: 40,
        failures_left: 5,
        delivered: 0,
    };
    let (_, stats) = common::play(Box::new(source), true, &mut engine, &mut outputs);

    assert_eq!(stats.source_errors, 1, "five failed reads are one loss");
    assert_eq!(
        stats.frames, frames,
        "every frame after the return was processed"
    );
    let log = std::fs::read_to_string(&audit.path).unwrap();
    let kinds: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("\"kind\":\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .filter(|k| k.starts_with("camera"))
        .collect();
    assert_eq!(kinds, ["camera_lost", "camera_restored"], "{log}");
    assert!(log.contains("device unplugged"));
}

#[test]
fn a_live_kiosk_reports_its_health_as_it_runs_and_every_dropped_window_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, mut outputs, audit) = door_of_nobody(dir.path());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = seen.clone();
    outputs.on_status = Some(Box::new(
        move |status: &firmware_app::kiosk_loop::KioskStatus| {
            sampler.lock().unwrap().push(status.clone())
        },
    ));
    let config = firmware_app::kiosk_loop::LoopConfig {
        live: true,
        silhouettes: silhouette::SilhouetteConfig::default(),
        max_windows_in_flight: 1,
        status_every: std::time::Duration::ZERO,
    };
    let stats = firmware_app::kiosk_loop::run(
        Box::new(scene(21)),
        &config,
        &mut engine,
        &mut outputs,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        &mut |_| {},
    )
    .unwrap();

    let seen = seen.lock().unwrap();
    assert!(seen.len() > 10, "{} reports", seen.len());
    for (before, after) in seen.iter().zip(seen.iter().skip(1)) {
        assert!(after.uptime >= before.uptime);
        assert!(after.frames >= before.frames);
        assert!(after.windows_embedded >= before.windows_embedded);
        assert!(after.windows_dropped >= before.windows_dropped);
        assert!(after.decisions >= before.decisions);
    }
    let last = seen.last().unwrap();
    assert!(last.frames <= stats.frames && last.windows_embedded <= stats.windows_embedded);
    assert_eq!(last.pending_events.len(), 1, "{:?}", last.pending_events);
    assert_eq!(last.sink_backlogs, [("audit log".to_string(), 0)]);
    assert!(last.resident_kib.is_some_and(|k| k > 0));
    assert!(stats.windows_embedded > 0);
    assert!(
        stats.windows_dropped > 0,
        "an unpaced scene outruns the network, one window in flight"
    );

    let log = std::fs::read_to_string(&audit.path).unwrap();
    let reported: u64 = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"windows_dropped\""))
        .map(|l| {
            let count = l.split("\"count\":").nth(1).unwrap();
            count[..count.find(|c: char| !c.is_ascii_digit()).unwrap()]
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        reported, stats.windows_dropped,
        "every dropped window reported once"
    );
}
