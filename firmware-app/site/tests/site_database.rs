//! The site on a real PostgreSQL server started by the test: enrolment, each door's replica of its
//! own people, erasure, the doors' limited roles, idempotent events, announcements, and TLS.

use std::path::Path;
use std::time::{Duration, Instant};

use access::event_store::OutboxEvent;
use access::gallery::{new_pseudonym, Gallery, SealedTemplate, TemplateKey};
use hstl::Embedding;
use site::{migrate, DoorLink, SiteAdmin, SiteConfig, SiteEnrolment, SiteError};
use test_support::certificates::Authority;
use test_support::postgres_server::{PostgresServer, TRUST_LOOPBACK};

const MODEL: &str = "model-a";

fn superuser(server: &PostgresServer) -> postgres::Client {
    SiteConfig::from_url(&server.superuser_url())
        .unwrap()
        .connect()
        .unwrap()
}

fn plain(server: &PostgresServer, role: &str) -> SiteConfig {
    SiteConfig::from_url(&server.role_url(role)).unwrap()
}

/// A site with doors `front` (groups staff and lab) and `lab` (group lab), their login roles
/// `front_door` and `lab_door`.
fn site(server: &PostgresServer) -> SiteAdmin {
    let mut client = superuser(server);
    migrate(&mut client).unwrap();
    client
        .batch_execute(
            "CREATE ROLE front_door LOGIN; CREATE ROLE lab_door LOGIN; CREATE ROLE stranger LOGIN;",
        )
        .unwrap();
    let mut admin = SiteAdmin::connect(&plain(server, "postgres")).unwrap();
    for group in ["staff", "lab"] {
        admin.add_group(group).unwrap();
    }
    admin.add_door("front", "front_door").unwrap();
    admin.add_door("lab", "lab_door").unwrap();
    admin.allow("front", "staff").unwrap();
    admin.allow("front", "lab").unwrap();
    admin.allow("lab", "lab").unwrap();
    admin
}

fn embedding(seed: f32) -> Embedding {
    Embedding::new(3, 4, (0..12).map(|i| seed + i as f32).collect()).unwrap()
}

fn enrolment(key: &TemplateKey, name: &str, groups: &[&str], seed: f32) -> SiteEnrolment {
    let pseudonym = new_pseudonym();
    let templates = (0..2)
        .map(|i| SealedTemplate {
            parts: 3,
            channels: 4,
            frames: 30,
            source: format!("{name} walk {i}"),
            sealed: key
                .seal_template(&pseudonym, MODEL, &embedding(seed + i as f32))
                .unwrap(),
        })
        .collect();
    SiteEnrolment {
        name: name.into(),
        pseudonym,
        credential: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        model_id: MODEL.into(),
        templates,
        key_check: key.site_check(),
    }
}

/// Pulls everything new into `gallery`, batch by batch.
fn catch_up(link: &mut DoorLink, gallery: &mut Gallery) {
    while let Some(batch) = link.pull(gallery.site_revision().unwrap(), 2).unwrap() {
        gallery.apply_site_batch(MODEL, &batch).unwrap();
    }
}

fn names(gallery: &Gallery) -> Vec<String> {
    gallery
        .people()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect()
}

fn replica(dir: &Path, name: &str, key: &TemplateKey) -> Gallery {
    Gallery::open(&dir.join(name), Some(key)).unwrap()
}

#[test]
fn each_door_holds_its_own_people_and_an_erasure_reaches_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = PostgresServer::start(dir.path(), TRUST_LOOPBACK, None) else {
        return;
    };
    let mut admin = site(&server);
    let key = TemplateKey::generate();
    admin
        .enrol(&enrolment(&key, "ada", &["staff"], 1.0))
        .unwrap();
    admin
        .enrol(&enrolment(&key, "grace", &["lab"], 5.0))
        .unwrap();
    admin
        .enrol(&enrolment(&key, "linus", &["lab"], 9.0))
        .unwrap();

    let mut front = DoorLink::connect(
        &plain(&server, "front_door"),
        "front",
        MODEL,
        &key.site_check(),
    )
    .unwrap();
    let mut lab =
        DoorLink::connect(&plain(&server, "lab_door"), "lab", MODEL, &key.site_check()).unwrap();
    let mut front_gallery = replica(dir.path(), "front.db", &key);
    let mut lab_gallery = replica(dir.path(), "lab.db", &key);
    catch_up(&mut front, &mut front_gallery);
    catch_up(&mut lab, &mut lab_gallery);
    assert_eq!(names(&front_gallery), ["ada", "grace", "linus"]);
    assert_eq!(names(&lab_gallery), ["grace", "linus"]);
    assert_eq!(front_gallery.templates().unwrap().len(), 6);
    assert_eq!(
        front_gallery.templates().unwrap()[1].embedding,
        embedding(2.0)
    );

    // An erasure is announced, and removes the person from every door that held them.
    let erased = admin.erase("grace").unwrap();
    assert_eq!(erased.templates, 2);
    assert!(front.wait_for_change(Duration::from_secs(5)).unwrap());
    catch_up(&mut front, &mut front_gallery);
    catch_up(&mut lab, &mut lab_gallery);
    assert_eq!(names(&front_gallery), ["ada", "linus"]);
    assert_eq!(names(&lab_gallery), ["linus"]);
    assert!(!front.wait_for_change(Duration::from_millis(200)).unwrap());

    // Leaving a group takes the person out of that door only.
    admin.leave("linus", "lab").unwrap();
    admin.join("linus", "staff").unwrap();
    catch_up(&mut front, &mut front_gallery);
    catch_up(&mut lab, &mut lab_gallery);
    assert_eq!(names(&front_gallery), ["ada", "linus"]);
    assert!(names(&lab_gallery).is_empty());
    // The lab door no longer held grace's templates: an erasure changes nothing more there.
    assert_eq!(lab_gallery.templates().unwrap().len(), 0);

    // A door that starts now bootstraps to the same state.
    let mut late = replica(dir.path(), "front-late.db", &key);
    catch_up(&mut front, &mut late);
    assert_eq!(names(&late), names(&front_gallery));
    assert_eq!(
        late.site_revision().unwrap(),
        front_gallery.site_revision().unwrap()
    );
}

#[test]
fn window_templates_of_a_site_before_walks_are_listed_and_never_sent_to_a_door() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = PostgresServer::start(dir.path(), TRUST_LOOPBACK, None) else {
        return;
    };
    let mut admin = site(&server);
    let key = TemplateKey::generate();
    admin
        .enrol(&enrolment(&key, "ada", &["staff"], 1.0))
        .unwrap();
    // The site as schema 3 left it, its templates windows; then migrated as an owner would.
    let mut owner = superuser(&server);
    owner
        .batch_execute(
            "ALTER TABLE gait_site.templates DROP COLUMN window_only;
             UPDATE gait_site.schema_version SET version = 3;",
        )
        .unwrap();
    // A door would take those windows for walks: it waits for the migration.
    let refused = DoorLink::connect(
        &plain(&server, "front_door"),
        "front",
        MODEL,
        &key.site_check(),
    )
    .err()
    .expect("a door refuses a site of schema 3");
    assert!(
        matches!(refused, SiteError::OlderSchema { found: 3, .. }),
        "{refused}"
    );
    migrate(&mut owner).unwrap();
    let mut admin = SiteAdmin::connect(&plain(&server, "postgres")).unwrap();
    admin
        .enrol(&enrolment(&key, "grace", &["staff"], 5.0))
        .unwrap();
    let ada = admin.person("ada").unwrap();
    assert_eq!((ada.templates, ada.window_templates), (0, 2));
    let grace = admin.person("grace").unwrap();
    assert_eq!((grace.templates, grace.window_templates), (2, 0));

    let mut front = DoorLink::connect(
        &plain(&server, "front_door"),
        "front",
        MODEL,
        &key.site_check(),
    )
    .unwrap();
    let mut gallery = replica(dir.path(), "front.db", &key);
    catch_up(&mut front, &mut gallery);
    assert_eq!(names(&gallery), ["grace"]);
}

#[test]
fn a_door_role_reads_only_through_its_functions_and_writes_only_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = PostgresServer::start(dir.path(), TRUST_LOOPBACK, None) else {
        return;
    };
    let mut admin = site(&server);
    let key = TemplateKey::generate();
    let ada = admin
        .enrol(&enrolment(&key, "ada", &["staff"], 1.0))
        .unwrap();
    assert!(matches!(
        admin.enrol(&enrolment(&key, "ada", &["staff"], 1.0)),
        Err(SiteError::AlreadyEnrolled(_))
    ));
    assert!(matches!(
        admin.enrol(&enrolment(&key, "bob", &["nobody"], 1.0)),
        Err(SiteError::UnknownGroup(_))
    ));
    assert!(
        admin.person("bob").is_err(),
        "a failed enrolment leaves nothing"
    );

    let mut door = plain(&server, "front_door").connect().unwrap();
    for table in ["people", "templates", "events", "erasures"] {
        let error = door
            .query(&format!("SELECT * FROM gait_site.{table}"), &[])
            .unwrap_err();
        let refused = error.as_db_error().map(|e| e.message().to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.contains("permission denied")),
            "{table}: {error:?}"
        );
    }
    assert!(matches!(
        DoorLink::connect(
            &plain(&server, "stranger"),
            "stranger",
            MODEL,
            &key.site_check()
        ),
        Err(SiteError::NotADoor { .. })
    ));

    let mut front = DoorLink::connect(
        &plain(&server, "front_door"),
        "front",
        MODEL,
        &key.site_check(),
    )
    .unwrap();
    let event = |id: u8, person: Option<&str>| OutboxEvent {
        position: id as i64,
        event_id: format!("{id:032x}"),
        pseudonym: person.map(str::to_string),
        body: serde_json::json!({
            "at_ms": 1_700_000_000_000u64 + id as u64, "door": "front", "kind": "granted",
            "person": person, "model_id": MODEL
        })
        .to_string(),
    };
    let batch = [event(1, Some(&ada.pseudonym)), event(2, None)];
    assert_eq!(front.upload(&batch).unwrap(), 2);
    assert_eq!(front.upload(&batch).unwrap(), 0, "sent twice, stored once");
    let stored = admin.events(None).unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|e| e.door == "front"));
    assert_eq!(stored[0].pseudonym.as_deref(), Some(ada.pseudonym.as_str()));

    // The hostile probe: 200,000 events of 1 KB in one call.
    let flood: Vec<OutboxEvent> = (0..1001u32)
        .map(|i| OutboxEvent {
            event_id: format!("{:032x}", 1000 + i),
            ..event(9, None)
        })
        .collect();
    let refused = front.upload(&flood).unwrap_err().to_string();
    assert!(refused.contains("at most 1000 events"), "{refused}");
    let huge = OutboxEvent {
        body: serde_json::json!({
            "at_ms": 1_700_000_000_000u64, "kind": "denied", "detail": "x".repeat(20_000)
        })
        .to_string(),
        ..event(10, None)
    };
    let refused = front.upload(&[huge]).unwrap_err().to_string();
    assert!(refused.contains("over 16384 bytes"), "{refused}");
    assert_eq!(
        admin.events(None).unwrap().len(),
        2,
        "nothing of either was stored"
    );

    // Bodies that are not the door's to send: one naming another door, a grant for someone the
    // sending door does not hold. They are kept aside with the reason; the rest of the call is
    // stored, so that the door's outbox goes on.
    let body = |door: &str, kind: &str, person: Option<&str>| {
        serde_json::json!({
            "at_ms": 1_700_000_000_000u64, "door": door, "kind": kind, "person": person,
            "model_id": MODEL
        })
        .to_string()
    };
    let claims_lab = OutboxEvent {
        body: body("lab", "denied", None),
        ..event(11, None)
    };
    assert_eq!(front.upload(&[claims_lab, event(12, None)]).unwrap(), 1);
    let mut lab =
        DoorLink::connect(&plain(&server, "lab_door"), "lab", MODEL, &key.site_check()).unwrap();
    let ada_at_lab = OutboxEvent {
        body: body("lab", "granted", Some(&ada.pseudonym)),
        ..event(13, None)
    };
    assert_eq!(
        lab.upload(&[ada_at_lab]).unwrap(),
        0,
        "ada is staff, not lab"
    );
    let refused = admin.refused_events().unwrap();
    let reasons: Vec<(&str, &str)> = refused
        .iter()
        .map(|r| (r.door.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("front", "it names door lab, not the sending door front"),
            ("lab", "a grant for someone door lab does not hold"),
        ]
    );
    assert_eq!(admin.events(None).unwrap().len(), 3);
    assert!(matches!(
        DoorLink::connect(
            &plain(&server, "front_door"),
            "Front door",
            MODEL,
            &key.site_check()
        ),
        Err(SiteError::DoorNameMismatch { .. })
    ));

    let erased = admin.erase("ada").unwrap();
    assert_eq!(erased.events, 1);
    assert_eq!(
        admin.refused_events().unwrap().len(),
        1,
        "the refused grant named ada: erased with her"
    );
    assert_eq!(front.upload(&[event(3, Some(&ada.pseudonym))]).unwrap(), 1);
    let after = admin.events(Some("front")).unwrap();
    assert_eq!(after.len(), 3);
    assert!(after
        .iter()
        .all(|e| !e.body.contains(&ada.pseudonym) && e.pseudonym.is_none()));
}

#[test]
fn a_station_or_a_door_with_another_key_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = PostgresServer::start(dir.path(), TRUST_LOOPBACK, None) else {
        return;
    };
    let mut admin = site(&server);
    let key = TemplateKey::generate();
    let other = TemplateKey::generate();
    admin
        .enrol(&enrolment(&key, "ada", &["staff"], 1.0))
        .unwrap();
    assert!(matches!(
        admin.enrol(&enrolment(&other, "eve", &["staff"], 2.0)),
        Err(SiteError::WrongTemplateKey)
    ));
    // Templates sealed under the right key but claimed for another key's check are refused too.
    let mut mislabelled = enrolment(&key, "mallory", &["staff"], 3.0);
    mislabelled.key_check = other.site_check();
    assert!(matches!(
        admin.enrol(&mislabelled),
        Err(SiteError::WrongTemplateKey)
    ));
    let names: Vec<_> = admin
        .people()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["ada"], "a refused enrolment leaves nothing");
    let error = DoorLink::connect(
        &plain(&server, "front_door"),
        "front",
        MODEL,
        &other.site_check(),
    )
    .err()
    .unwrap();
    assert!(matches!(error, SiteError::WrongTemplateKey), "{error}");
    assert!(error.to_string().contains("not this site's key"), "{error}");
    DoorLink::connect(
        &plain(&server, "front_door"),
        "front",
        MODEL,
        &key.site_check(),
    )
    .unwrap();
}

#[test]
fn a_tampered_template_row_quarantines_its_person_and_replication_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = PostgresServer::start(dir.path(), TRUST_LOOPBACK, None) else {
        return;
    };
    let mut admin = site(&server);
    let key = TemplateKey::generate();
    for (name, seed) in [("ada", 1.0), ("bob", 5.0), ("cy", 9.0)] {
        admin
            .enrol(&enrolment(&key, name, &["staff"], seed))
            .unwrap();
    }
    let bob = admin.person("bob").unwrap();
    superuser(&server)
        .execute(
            "UPDATE gait_site.templates t SET sealed = set_byte(sealed, 20, get_byte(sealed, 20) # 1)
             FROM gait_site.people p WHERE p.id = t.person_id AND p.name = 'bob'",
            &[],
        )
        .unwrap();
    let mut front = DoorLink::connect(
        &plain(&server, "front_door"),
        "front",
        MODEL,
        &key.site_check(),
    )
    .unwrap();
    let mut gallery = replica(dir.path(), "front.db", &key);
    let mut quarantined = Vec::new();
    while let Some(batch) = front.pull(gallery.site_revision().unwrap(), 2).unwrap() {
        quarantined.extend(gallery.apply_site_batch(MODEL, &batch).unwrap().quarantined);
    }
    assert_eq!(names(&gallery), ["ada", "cy"]);
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].pseudonym, bob.pseudonym);

    // Erasures and later changes still reach the door.
    admin.erase("ada").unwrap();
    admin
        .enrol(&enrolment(&key, "dee", &["lab"], 13.0))
        .unwrap();
    catch_up(&mut front, &mut gallery);
    assert_eq!(names(&gallery), ["cy", "dee"]);
    assert_eq!(gallery.quarantined().unwrap().len(), 1);

    // Erased at the site, the quarantined person leaves the quarantine too.
    admin.erase("bob").unwrap();
    catch_up(&mut front, &mut gallery);
    assert!(gallery.quarantined().unwrap().is_empty());
}

#[test]
fn tls_with_the_site_authority_connects_and_anything_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path(), "site-ca");
    let server_cert = authority.server("db");
    let door_cert = authority.client("front_door");
    let stranger_authority = Authority::new(dir.path(), "other-ca");
    let forged = stranger_authority.client("front_door");
    let Some(server) = PostgresServer::start(
        dir.path(),
        "hostssl all front_door 127.0.0.1/32 cert\n\
         hostssl all enrol 127.0.0.1/32 scram-sha-256\n\
         hostnossl all all 127.0.0.1/32 reject",
        Some(test_support::postgres_server::ServerTls {
            cert: server_cert.cert.clone(),
            key: server_cert.key.clone(),
            client_ca: authority.cert.clone(),
        }),
    ) else {
        return;
    };
    let key = TemplateKey::generate();
    let mut client = superuser(&server);
    migrate(&mut client).unwrap();
    client
        .batch_execute(
            "CREATE ROLE front_door LOGIN;
             CREATE ROLE enrol LOGIN PASSWORD 'correct horse';
             GRANT gait_site_enrolment TO enrol;",
        )
        .unwrap();
    SiteAdmin::connect(&plain(&server, "postgres"))
        .unwrap()
        .add_door("front", "front_door")
        .unwrap();

    let base = format!("postgresql://{{role}}@127.0.0.1:{}/postgres", server.port());
    let url = |role: &str, query: String| format!("{}?{query}", base.replace("{role}", role));
    let password = dir.path().join("enrol.password");
    std::fs::write(&password, "correct horse\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ca = authority.cert.display().to_string();

    // The enrolment station: password from its file, over TLS with the server verified.
    let station = SiteConfig::from_url(&url(
        "enrol",
        format!("sslrootcert={ca}&passfile={}", password.display()),
    ))
    .unwrap();
    let mut admin = SiteAdmin::connect(&station).unwrap();
    assert!(admin.people().unwrap().is_empty());

    // The door: its client certificate.
    let door = |cert: &test_support::certificates::Issued, ca: &str| {
        SiteConfig::from_url(&url(
            "front_door",
            format!(
                "sslrootcert={ca}&sslcert={}&sslkey={}",
                cert.cert.display(),
                cert.key.display()
            ),
        ))
        .unwrap()
    };
    DoorLink::connect(&door(&door_cert, &ca), "front", MODEL, &key.site_check()).unwrap();

    let refused = |config: SiteConfig| {
        let started = Instant::now();
        let error = DoorLink::connect(&config, "front", MODEL, &key.site_check())
            .err()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        error.to_string()
    };
    let wrong_ca = refused(door(
        &door_cert,
        &stranger_authority.cert.display().to_string(),
    ));
    assert!(
        wrong_ca.to_lowercase().contains("certificate"),
        "{wrong_ca}"
    );
    let forged_client = refused(door(&forged, &ca));
    assert!(
        forged_client.contains("front_door@127.0.0.1"),
        "{forged_client}"
    );
    let plaintext = refused(plain(&server, "front_door"));
    assert!(
        plaintext.contains("no encryption") || plaintext.contains("pg_hba"),
        "{plaintext}"
    );

    // A password file others can read is refused before anything is sent.
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = SiteAdmin::connect(&station).err().unwrap().to_string();
    assert!(exposed.contains("enrol.password"), "{exposed}");
    assert!(!exposed.contains("correct horse"));
}

#[test]
fn a_site_without_schema_and_a_dead_server_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = PostgresServer::start(dir.path(), TRUST_LOOPBACK, None) else {
        return;
    };
    assert!(matches!(
        SiteAdmin::connect(&plain(&server, "postgres")),
        Err(SiteError::NoSchema)
    ));
    server.crash();
    let error = SiteAdmin::connect(&plain(&server, "postgres"))
        .err()
        .unwrap();
    assert!(error.is_outage(), "{error}");
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
}
