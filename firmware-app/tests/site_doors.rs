//! Three doors of one site on a real PostgreSQL server and a real mosquitto started by the test,
//! both requiring the doors' client certificates over TLS. Each door decides on synthetic walk-ups
//! through the kiosk loop from its replica: a person enrolled once at the site is let through the
//! doors of their group only; erased at the site, they are refused everywhere within seconds, and a
//! door that was stopped meanwhile applies the erasure before its first decision; with the server
//! crashed and restarted mid-run the doors keep deciding and every event arrives at the site exactly
//! once (and on the broker); a kiosk put at a door later bootstraps to the same state.
//!
//! `cargo test --workspace --features firmware-app/mqtt --test site_doors`

mod common;

use site::tls::TlsSettings;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use access::decision::Verdict;
use access::event_store::EventStore;
use access::gallery::{new_pseudonym, Gallery, SealedTemplate, TemplateKey};
use common::broker::{mosquitto_binary, subscribe, tls_broker};
use firmware_app::enrolment::{templates_from_windows, walk_windows};
use firmware_app::kiosk_loop::{DecisionRecord, DoorEngine, Outputs};
use firmware_app::mqtt::{MqttConfig, MqttSink};
use firmware_app::site_sync::SiteOutbox;
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use site::{migrate, SiteAdmin, SiteConfig, SiteEnrolment};
use synthetic_scene::{SceneConfig, SyntheticScene};
use test_support::certificates::Authority;
use test_support::postgres_server::{free_port, PostgresServer, ServerTls};

const PATIENCE: Duration = Duration::from_secs(20);

fn scene(seed: u64) -> SyntheticScene {
    SyntheticScene::new(SceneConfig::single_walker(seed, 320, 240))
}

/// The site's authority, the servers' certificates made with it, and where each server listens.
struct Site {
    authority: Authority,
    postgres_port: u16,
    broker_port: u16,
}

impl Site {
    /// A door's site settings: TLS, the server verified, the door's client certificate.
    fn door_config(&self, role: &str) -> SiteConfig {
        let certificate = self.authority.client(role);
        let mut config = SiteConfig::from_url(&format!(
            "postgresql://{role}@localhost:{}/postgres?sslrootcert={}&sslcert={}&sslkey={}",
            self.postgres_port,
            self.authority.cert.display(),
            certificate.cert.display(),
            certificate.key.display()
        ))
        .unwrap();
        config.poll_interval_s = 1.0;
        config.connect_timeout_s = 1.0;
        config
    }

    /// A door's MQTT settings: TLS, the broker verified, the kiosk's client certificate.
    /// The broker settings of the kiosk in `folder`: a client of its own, even for a kiosk that
    /// replaces another at the same door while the other still runs.
    fn mqtt_config(&self, door_dir: &Path, folder: &str) -> MqttConfig {
        let certificate = self.authority.client(&format!("kiosk-{folder}"));
        MqttConfig {
            host: "localhost".into(),
            port: self.broker_port,
            client_id: Some(format!("kiosk-{folder}")),
            topic_prefix: None,
            username: None,
            password_file: None,
            tls: TlsSettings {
                ca_file: Some(self.authority.cert.clone()),
                cert_file: Some(certificate.cert),
                key_file: Some(certificate.key),
                ..TlsSettings::default()
            },
            queue_path: door_dir.join("mqtt-queue.jsonl"),
            max_queued: 1_000,
        }
    }
}

struct Door {
    engine: DoorEngine,
    outputs: Outputs,
    audit: std::path::PathBuf,
    replica: Gallery,
    replica_events: EventStore,
}

impl Door {
    /// The kiosk of the site's door `name`, in the folder `folder`, logging in as `role`.
    fn start(
        dir: &Path,
        folder: &str,
        name: &str,
        role: &str,
        site: &Site,
        key: &TemplateKey,
    ) -> Door {
        let (_, model_id, embedder) = common::seeded_model(dir);
        let door_dir = dir.join(folder);
        std::fs::create_dir_all(&door_dir).unwrap();
        let replica_path = door_dir.join("gallery.db");
        let (news, inbox) = mpsc::channel();
        let outbox = SiteOutbox::start(
            &site.door_config(role),
            name,
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
        outputs.dispatcher.add(Box::new(
            MqttSink::start(&site.mqtt_config(&door_dir, folder), name).unwrap(),
        ));
        outputs.news = Some(inbox);
        Door {
            engine,
            outputs,
            audit: audit.path,
            replica_events: EventStore::of(&replica).unwrap(),
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

    /// Events in the audit log (not its segment headers), and of those the ones not naming
    /// `pseudonym`.
    fn logged_events(&self, pseudonym: &str) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(&self.audit).unwrap();
        let events: Vec<&str> = text.lines().filter(|l| l.contains("\"event\":")).collect();
        let without = events
            .iter()
            .filter(|line| !line.contains(pseudonym))
            .map(|line| line.to_string())
            .collect();
        (events.len(), without)
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
    let Some(mosquitto) = mosquitto_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path(), "site-ca");
    let database = authority.server("db");
    let Some(mut server) = PostgresServer::start(
        &dir.path().join("server"),
        "hostssl all front_door,lab_door,side_door 127.0.0.1/32 cert\n\
         hostnossl all all 127.0.0.1/32 reject",
        Some(ServerTls {
            cert: database.cert,
            key: database.key,
            client_ca: authority.cert.clone(),
        }),
    ) else {
        return;
    };
    let (broker_port, subscriber_port) = (free_port(), free_port());
    let _broker = tls_broker(
        &mosquitto,
        dir.path(),
        &authority,
        (broker_port, subscriber_port),
    );
    let on_the_broker = subscribe(subscriber_port, "kiosk/#");
    let site = Site {
        authority,
        postgres_port: server.port(),
        broker_port,
    };
    let mut owner = SiteConfig::from_url(&server.superuser_url())
        .unwrap()
        .connect()
        .unwrap();
    migrate(&mut owner).unwrap();
    owner
        .batch_execute("CREATE ROLE front_door LOGIN; CREATE ROLE lab_door LOGIN; CREATE ROLE side_door LOGIN;")
        .unwrap();
    let station_config = SiteConfig::from_url(&server.superuser_url()).unwrap();
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
    let mut front = Door::start(dir.path(), "front", "front", "front_door", &site, &key);
    let mut lab = Door::start(dir.path(), "lab", "lab", "lab_door", &site, &key);
    let mut side = Door::start(dir.path(), "side", "side", "side_door", &site, &key);

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
            key_check: key.site_check(),
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
            .all(|door| door.replica_events.site_outbox_len().unwrap() == 0)
    });

    // Erased at the site while the lab door's kiosk is stopped: refused at the running doors within
    // seconds, and at the lab door from its first decision once it starts again.
    drop(lab);
    let erased_at = Instant::now();
    station.erase("ada").unwrap();
    let erasure_reached = wait_until("the erasure reaches the running door", || {
        front.names().is_empty()
    });
    println!(
        "erasure at the site to a running door's replica: {erasure_reached:?} ({:?} since the call)",
        erased_at.elapsed()
    );
    assert!(!granted(&front.walk(11)));
    let mut lab = Door::start(dir.path(), "lab", "lab", "lab_door", &site, &key);
    assert!(
        lab.names().is_empty(),
        "the pending erasure is applied before the first decision"
    );
    assert!(!granted(&lab.walk(11)));

    // Every event each door logged is at the site once (those naming ada went with her).
    wait_until("the last events reach the site", || {
        [&front, &lab, &side]
            .iter()
            .all(|door| door.replica_events.site_outbox_len().unwrap() == 0)
    });
    let mut admin = SiteAdmin::connect(&station_config).unwrap();
    for (name, door) in [("front", &front), ("lab", &lab), ("side", &side)] {
        let stored = admin.events(Some(name)).unwrap();
        let (all, logged) = door.logged_events(&pseudonym);
        assert_eq!(
            stored.len(),
            logged.len(),
            "{name}: site {stored:?}, log {logged:?}"
        );
        let topic = format!("kiosk/{name}/events/");
        wait_until("every event on the broker", || {
            let received = on_the_broker.lock().unwrap();
            let mut distinct: Vec<&String> = received
                .iter()
                .filter(|(t, _)| t.starts_with(&topic))
                .map(|(_, payload)| payload)
                .collect();
            distinct.sort();
            distinct.dedup();
            distinct.len() == all
        });
        assert!(stored.iter().all(|e| !e.body.contains(&pseudonym)));
        let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
        assert!(kinds.contains(&"site_online"), "{name}: {kinds:?}");
        // The doors that had events to send while the server was down noticed the outage (the lab
        // door, idle then, found the server back when it next looked).
        if name != "lab" {
            assert!(kinds.contains(&"site_offline"), "{name}: {kinds:?}");
        }
    }

    // A kiosk put at the lab door now bootstraps to the site as it stands.
    station.add_group("visitors").unwrap();
    let mut late = Door::start(dir.path(), "lab-replaced", "lab", "lab_door", &site, &key);
    assert!(late.names().is_empty());
    assert_eq!(
        late.replica.site_revision().unwrap(),
        lab.replica.site_revision().unwrap()
    );
    assert!(!granted(&late.walk(11)));
}

#[test]
fn a_template_the_door_cannot_open_is_quarantined_reported_once_and_the_door_still_starts() {
    use firmware_app::kiosk_loop::DoorNews;
    use hstl::Embedding;
    use test_support::postgres_server::TRUST_LOOPBACK;

    let dir = tempfile::tempdir().unwrap();
    let Some(server) = PostgresServer::start(&dir.path().join("server"), TRUST_LOOPBACK, None)
    else {
        return;
    };
    let mut owner = SiteConfig::from_url(&server.superuser_url())
        .unwrap()
        .connect()
        .unwrap();
    migrate(&mut owner).unwrap();
    owner
        .batch_execute("CREATE ROLE front_door LOGIN;")
        .unwrap();
    let mut station =
        SiteAdmin::connect(&SiteConfig::from_url(&server.superuser_url()).unwrap()).unwrap();
    station.add_group("staff").unwrap();
    station.add_door("front", "front_door").unwrap();
    station.allow("front", "staff").unwrap();
    let key = TemplateKey::generate();
    const MODEL: &str = "model-a";
    for (name, seed) in [("ada", 1.0), ("bob", 5.0)] {
        let pseudonym = new_pseudonym();
        let embedding = Embedding::new(3, 4, (0..12).map(|i| seed + i as f32).collect()).unwrap();
        station
            .enrol(&SiteEnrolment {
                name: name.into(),
                pseudonym: pseudonym.clone(),
                credential: None,
                groups: vec!["staff".into()],
                model_id: MODEL.into(),
                templates: vec![SealedTemplate {
                    parts: 3,
                    channels: 4,
                    frames: 30,
                    source: "walk".into(),
                    sealed: key.seal_template(&pseudonym, MODEL, &embedding).unwrap(),
                }],
                key_check: key.site_check(),
            })
            .unwrap();
    }
    let bob = station.person("bob").unwrap().pseudonym;
    owner
        .execute(
            "UPDATE gait_site.templates t SET sealed = set_byte(sealed, 20, get_byte(sealed, 20) # 1)
             FROM gait_site.people p WHERE p.id = t.person_id AND p.name = 'bob'",
            &[],
        )
        .unwrap();

    let mut config = SiteConfig::from_url(&server.role_url("front_door")).unwrap();
    config.poll_interval_s = 1.0;
    let replica_path = dir.path().join("front.db");
    let quarantine_news = |inbox: &mpsc::Receiver<DoorNews>| {
        inbox
            .try_iter()
            .filter_map(|news| match news {
                DoorNews::Quarantine { newly, total } => Some((
                    newly.into_iter().map(|q| q.pseudonym).collect::<Vec<_>>(),
                    total,
                )),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    for (start, expected) in [(1, (vec![bob.clone()], 1)), (2, (vec![], 1))] {
        let (news, inbox) = mpsc::channel();
        let outbox = SiteOutbox::start(&config, "front", &replica_path, Some(&key), MODEL, news)
            .unwrap_or_else(|e| panic!("start {start}: {e}"));
        drop(outbox);
        assert_eq!(quarantine_news(&inbox), [expected], "start {start}");
        let replica = Gallery::open_existing(&replica_path, Some(&key)).unwrap();
        let names: Vec<_> = replica
            .people()
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["ada"]);
    }
}
