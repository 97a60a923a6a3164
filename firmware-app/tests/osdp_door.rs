//! A door whose access-control panel owns the lock: the kiosk decides on synthetic walk-ups and
//! reports a grant to libosdp's control panel as the enrolled person's credential, over the Secure
//! Channel on a pseudo-terminal; a stranger's denial sends the panel nothing.
//!
//! `cargo test --workspace --features firmware-app/osdp,test-support/osdp --test osdp_door`

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use access::decision::Verdict;
use access::gallery::Gallery;
use door_io::osdp::OsdpConfig;
use door_io::wiegand::{Credential, WiegandFormat};
use firmware_app::enrolment::{templates_from_windows, walk_windows};
use firmware_app::panel::{PanelConfig, PanelMode, PanelReader};
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use synthetic_scene::{SceneConfig, SyntheticScene};
use test_support::osdp_panel::{terminal, Panel};

const KEY: [u8; 16] = [
    0x5c, 0x19, 0xa4, 0x70, 0x0e, 0x8b, 0x33, 0xd2, 0x61, 0xf7, 0x2a, 0x95, 0x4e, 0x08, 0xc1, 0xb6,
];
const ADDRESS: u8 = 5;
const PATIENCE: Duration = Duration::from_secs(20);

fn scene(seed: u64) -> SyntheticScene {
    SyntheticScene::new(SceneConfig::single_walker(seed, 320, 240))
}

#[test]
fn a_grant_reaches_the_panel_as_the_persons_credential_and_a_denial_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, model_id, embedder) = common::seeded_model(dir.path());
    let mut gallery = Gallery::open(&dir.path().join("gallery.db"), None).unwrap();
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let walk = walk_windows(&mut pipeline, None, &mut scene(11)).unwrap();
    let templates = templates_from_windows(&embedder, &walk, "ada", |_, _| {}).unwrap();
    gallery
        .enrol_with_credential("ada", Some(4_711), &model_id, &templates)
        .unwrap();
    let mut engine = common::door_engine_without_margin(
        "lab door", &gallery, model_id, embedder,
        // Only a replay of the same silhouettes comes this close.
        1e-4,
    );

    let key_file = dir.path().join("osdp.key");
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&key_file, hex + "\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (device, master, _slave) = terminal();
    let panel = Panel::start(master, ADDRESS, KEY);
    let config = PanelConfig {
        mode: PanelMode::Osdp,
        format: WiegandFormat::Bits26,
        facility_code: 101,
        max_read_age_ms: 2_000,
        osdp: Some(OsdpConfig {
            device,
            baud_rate: 9_600,
            address: ADDRESS,
            key_file,
        }),
        wiegand: None,
    };
    let (news, inbox) = mpsc::channel();
    let reader = PanelReader::open(&config, news).unwrap();
    let (mut outputs, audit) = common::audited_outputs(dir.path());
    outputs.dispatcher.add(Box::new(reader));
    outputs.news = Some(inbox);
    assert!(
        panel.wait_online(PATIENCE),
        "the panel and the kiosk in the Secure Channel"
    );

    let (ada, _) = common::play(Box::new(scene(11)), false, &mut engine, &mut outputs);
    assert_eq!(ada.len(), 1, "{ada:?}");
    assert!(matches!(ada[0].decision.verdict, Verdict::Granted { .. }));
    let (stranger, _) = common::play(Box::new(scene(13)), false, &mut engine, &mut outputs);
    assert!(matches!(
        stranger[0].decision.verdict,
        Verdict::Denied { .. }
    ));

    let deadline = Instant::now() + PATIENCE;
    while panel.card_reads().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let reads = panel.card_reads();
    assert_eq!(reads.len(), 1, "one read, for the grant only: {reads:?}");
    assert_eq!(
        (reads[0].bits, reads[0].credential),
        (
            26,
            Credential {
                facility: 101,
                number: 4_711
            }
        )
    );
    let decided = ada[0].event.decided.unwrap();
    println!(
        "kiosk decision to the panel's receipt of the read: {:.1} ms",
        (reads[0].at - decided).as_secs_f64() * 1e3
    );
    let log = std::fs::read_to_string(&audit.path).unwrap();
    assert!(log.contains("\"kind\":\"panel_online\""), "{log}");
    assert!(
        !log.contains("4711"),
        "the credential number is never logged"
    );
}
