//! Three doors of one site on a real PostgreSQL server started by the test, each deciding on
//! synthetic walk-ups through the kiosk loop from its replica: a person enrolled once at the site
//! is let through the doors of their group only; erased at the site, they are refused everywhere
//! within seconds; with the server crashed and restarted mid-run the doors keep deciding and every
//! event arrives at the site exactly once; a door started later bootstraps to the same state.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use access::decision::Verdict;
use access::gallery::{new_pseudonym, Gallery, SealedTemplate, TemplateKey};
use firmware_app::enrolment::{templates_from_windows, walk_windows};
use firmware_app::kiosk::{DecisionRecord, DoorEngine, Outputs};
use firmware_app::site_sync::SiteOutbox;
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use site::{migrate, SiteAdmin, SiteConfig, SiteEnrolment};
use synthetic_scene::{SceneConfig, SyntheticScene};
use test_support::postgres_server::PostgresServer;

const PATIENCE: Duration = Duration::from_secs(20);

fn scene(seed: u64) -> SyntheticScene {
    SyntheticScene::new(SceneConfig::single_walker(seed, 320, 240))
}

fn door_config(server: &PostgresServer, role: &str) -> SiteConfig {
    let mut config = SiteConfig::from_url(&format!(
        "postgresql://{role}@127.0.0.1:{}/postgres?sslmode=disable",
        server.port()
    ))
    .unwrap();
    config.poll_interval_s = 1.0;
    config.connect_timeout_s = 1.0;
    config
}

struct Door {
    engine: DoorEngine,
    outputs: Outputs,
    audit: std::path::PathBuf,
    replica: Gallery,
}

impl Door {
    /// A kiosk called `name` (its folder) that logs in as `role`.
    fn start(
        dir: &Path,
        name: &str,
        role: &str,
        server: &PostgresServer,
        key: &TemplateKey,
    ) -> Door {
        let (_, model_id, embedder) = common::seeded_model(dir);
        let door_dir = dir.join(name);
        std::fs::create_dir_all(&door_dir).unwrap();
        let replica_path = door_dir.join("gallery.db");
        let (news, inbox) = mpsc::channel();
        let outbox = SiteOutbox::start(
            &door_config(server, role),
            &replica_path,
            Some(key),
            &model_id,
            news,
        )
        .unwrap();
        let replica = Gallery::open_existing(&replica_path, Some(key)).unwrap();
        let mut engine =
            common::door_engine_without_margin(name, &replica, model_id, embedder, 1e-4);
        engine.watch_gallery(Gallery::open_existing(&replica_path, Some(key)).unwrap());
        let (mut outputs, audit) = common::audited_outputs(&door_dir);
        outputs.dispatcher.add(Box::new(outbox));
        outputs.news = Some(inbox);
        Door {
            engine,
            outputs,
            audit: audit.path,
            replica,
        }
    }

    fn walk(&mut self, seed: u64) -> DecisionRecord {
        let (decisions, _) = common::play(
            Box::new(scene(seed)),
            false,
            &mut self.engine,
            &mut self.outputs,
        );
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        decisions.into_iter().next().unwrap()
    }

    fn names(&self) -> Vec<String> {
        self.replica
            .people()
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect()
    }

    /// Events in the audit log (not its segment headers) not naming `pseudonym`.
    fn logged_events_without(&self, pseudonym: &str) -> Vec<String> {
        std::fs::read_to_string(&self.audit)
            .unwrap()
            .lines()
            .filter(|line| line.contains("\"event\":") && !line.contains(pseudonym))
            .map(str::to_string)
            .collect()
    }
}

fn granted(record: &DecisionRecord) -> bool {
    matches!(record.decision.verdict, Verdict::Granted { .. })
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn a_site_of_three_doors_enrols_once_erases_everywhere_and_survives_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = PostgresServer::start(
        &dir.path().join("server"),
        "host all all 127.0.0.1/32 trust",
        None,
    ) else {
        return;
    };
    let mut owner = SiteConfig::from_url(&server.superuser_url())
        .unwrap()
        .connect()
        .unwrap();
    migrate(&mut owner).unwrap();
    owner
        .batch_execute("CREATE ROLE front_door LOGIN; CREATE ROLE lab_door LOGIN; CREATE ROLE side_door LOGIN;")
        .unwrap();
    let station_config = door_config(&server, "postgres");
    let mut station = SiteAdmin::connect(&station_config).unwrap();
    for group in ["staff", "lab"] {
        station.add_group(group).unwrap();
    }
    for (door, groups) in [
        ("front", &["staff", "lab"][..]),
        ("lab", &["lab"]),
        ("side", &["staff"]),
    ] {
        station.add_door(door, &format!("{door}_door")).unwrap();
        for group in groups {
            station.allow(door, group).unwrap();
        }
    }
    let key = TemplateKey::generate();
    let mut front = Door::start(dir.path(), "front", "front_door", &server, &key);
    let mut lab = Door::start(dir.path(), "lab", "lab_door", &server, &key);
    let mut side = Door::start(dir.path(), "side", "side_door", &server, &key);

    // The enrolment station: ada's walk embedded, sealed under the site key, enrolled in `lab`.
    let station_dir = dir.path().join("station");
    std::fs::create_dir_all(&station_dir).unwrap();
    let (_, model_id, embedder) = common::seeded_model(&station_dir);
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let walk = walk_windows(&mut pipeline, None, &mut scene(11)).unwrap();
    let templates = templates_from_windows(&embedder, &walk, "ada", |_, _| {}).unwrap();
    let pseudonym = new_pseudonym();
    let enrolled_at = Instant::now();
    station
        .enrol(&SiteEnrolment {
            name: "ada".into(),
            pseudonym: pseudonym.clone(),
            credential: None,
            groups: vec!["lab".into()],
            model_id: model_id.clone(),
            templates: templates
                .iter()
                .map(|t| SealedTemplate {
                    parts: t.embedding.parts(),
                    channels: t.embedding.channels(),
                    frames: t.frames,
                    source: t.source.clone(),
                    sealed: key
                        .seal_template(&pseudonym, &model_id, &t.embedding)
                        .unwrap(),
                })
                .collect(),
        })
        .unwrap();
    let enrolment_reached = wait_until("ada reaches front and lab", || {
        front.names() == ["ada"] && lab.names() == ["ada"]
    });
    println!("enrolment at the site to both doors' replicas: {enrolment_reached:?} ({:?} since the call)", enrolled_at.elapsed());
    assert!(side.names().is_empty());
    assert!(granted(&front.walk(11)));
    assert!(granted(&lab.walk(11)));
    assert!(
        !granted(&side.walk(11)),
        "ada's group does not pass the side door"
    );

    // The server crashes; the doors keep deciding from their replicas and keep their events.
    server.crash();
    assert!(
        granted(&front.walk(11)),
        "offline, the replica still decides"
    );
    assert!(!granted(&side.walk(13)));
    server.restart();
    station = SiteAdmin::connect(&station_config).unwrap();
    wait_until("the outboxes drain after the restart", || {
        [&front, &lab, &side]
            .iter()
            .all(|door| door.replica.site_outbox_len().unwrap() == 0)
    });

    // Erased at the site: refused everywhere within seconds.
    let erased_at = Instant::now();
    station.erase("ada").unwrap();
    let erasure_reached = wait_until("the erasure reaches every door", || {
        front.names().is_empty() && lab.names().is_empty()
    });
    println!(
        "erasure at the site to every replica: {erasure_reached:?} ({:?} since the call)",
        erased_at.elapsed()
    );
    assert!(!granted(&front.walk(11)));
    assert!(!granted(&lab.walk(11)));

    // Every event each door logged is at the site once (those naming ada went with her).
    wait_until("the last events reach the site", || {
        [&front, &lab, &side]
            .iter()
            .all(|door| door.replica.site_outbox_len().unwrap() == 0)
    });
    let mut admin = SiteAdmin::connect(&station_config).unwrap();
    for (name, door) in [("front", &front), ("lab", &lab), ("side", &side)] {
        let stored = admin.events(Some(name)).unwrap();
        let logged = door.logged_events_without(&pseudonym);
        assert_eq!(
            stored.len(),
            logged.len(),
            "{name}: site {stored:?}, log {logged:?}"
        );
        assert!(stored.iter().all(|e| !e.body.contains(&pseudonym)));
        let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
        assert!(
            kinds.contains(&"site_offline") && kinds.contains(&"site_online"),
            "{name}: {kinds:?}"
        );
    }

    // A kiosk put at the lab door now bootstraps to the site as it stands.
    station.add_group("visitors").unwrap();
    let mut late = Door::start(dir.path(), "lab-replaced", "lab_door", &server, &key);
    assert!(late.names().is_empty());
    assert_eq!(
        late.replica.site_revision().unwrap(),
        lab.replica.site_revision().unwrap()
    );
    assert!(!granted(&late.walk(11)));
}
