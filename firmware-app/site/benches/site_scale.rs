//! A site at scale, on a PostgreSQL server started here: enrolment of `PEOPLE` people with
//! `TEMPLATES` templates each of the compact model's shape, a new door bootstrapping all of them
//! into its replica, and a door's event upload.
//!
//! `cargo bench -p site --bench site_scale` (`SITE_SCALE_PEOPLE=1000` for a quicker run).

use std::time::Instant;

use access::event_store::OutboxEvent;
use access::gallery::{new_pseudonym, Gallery, SealedTemplate, TemplateKey};
use hstl::Embedding;
use site::{migrate, DoorLink, SiteAdmin, SiteConfig, SiteEnrolment};
use test_support::postgres_server::{PostgresServer, TRUST_LOOPBACK};

const TEMPLATES: usize = 5;
/// The compact variant's embedding: 41 parts of 64 channels.
const PARTS: usize = 41;
const CHANNELS: usize = 64;
const MODEL: &str = "bench-model";
const EVENTS: usize = 20_000;

fn main() {
    let people: usize = std::env::var("SITE_SCALE_PEOPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = PostgresServer::start(&dir.path().join("server"), TRUST_LOOPBACK, None)
    else {
        return;
    };
    let url = |role: &str| SiteConfig::from_url(&server.role_url(role)).unwrap();
    let mut owner = url("postgres").connect().unwrap();
    migrate(&mut owner).unwrap();
    owner.batch_execute("CREATE ROLE bench_door LOGIN").unwrap();
    let mut admin = SiteAdmin::connect(&url("postgres")).unwrap();
    admin.add_group("everyone").unwrap();
    admin.add_door("bench", "bench_door").unwrap();
    admin.allow("bench", "everyone").unwrap();

    let key = TemplateKey::generate();
    let started = Instant::now();
    for person in 0..people {
        let pseudonym = new_pseudonym();
        let templates = (0..TEMPLATES)
            .map(|t| {
                let values = (0..PARTS * CHANNELS)
                    .map(|i| ((person * 31 + t * 7 + i) % 997) as f32 / 997.0)
                    .collect();
                let embedding = Embedding::new(PARTS, CHANNELS, values).unwrap();
                SealedTemplate {
                    parts: PARTS,
                    channels: CHANNELS,
                    frames: 30,
                    source: format!("walk {t}"),
                    sealed: key.seal_template(&pseudonym, MODEL, &embedding).unwrap(),
                }
            })
            .collect();
        admin
            .enrol(&SiteEnrolment {
                name: format!("person {person:05}"),
                pseudonym,
                credential: None,
                groups: vec!["everyone".into()],
                model_id: MODEL.into(),
                templates,
                key_check: key.site_check(),
            })
            .unwrap();
    }
    let enrolled = started.elapsed();
    println!(
        "enrolment: {people} people x {TEMPLATES} templates in {:.1} s ({:.1} people/s)",
        enrolled.as_secs_f64(),
        people as f64 / enrolled.as_secs_f64()
    );

    let mut door =
        DoorLink::connect(&url("bench_door"), "bench", MODEL, &key.site_check()).unwrap();
    let mut replica = Gallery::open(&dir.path().join("replica.db"), Some(&key)).unwrap();
    let started = Instant::now();
    let mut batches = 0;
    while let Some(batch) = door.pull(replica.site_revision().unwrap(), 500).unwrap() {
        replica.apply_site_batch(MODEL, &batch).unwrap();
        batches += 1;
    }
    let bootstrap = started.elapsed();
    let opened = Instant::now();
    let templates = replica.templates().unwrap().len();
    println!(
        "bootstrap of a new door: {} people, {templates} templates in {batches} batches, {:.1} s ({:.0} templates/s); reading them back decrypted {:.1} s; replica {:.0} MB",
        replica.people().unwrap().len(),
        bootstrap.as_secs_f64(),
        templates as f64 / bootstrap.as_secs_f64(),
        opened.elapsed().as_secs_f64(),
        std::fs::metadata(dir.path().join("replica.db")).unwrap().len() as f64 / 1e6
    );

    let events: Vec<OutboxEvent> = (0..EVENTS)
        .map(|i| OutboxEvent {
            position: i as i64,
            event_id: format!("{i:032x}"),
            pseudonym: None,
            body: format!(
                "{{\"at_ms\":{},\"door\":\"bench\",\"kind\":\"denied\",\"reason\":\"unknown\",\"track\":{i},\"model_id\":\"{MODEL}\"}}",
                1_700_000_000_000u64 + i as u64
            ),
        })
        .collect();
    let started = Instant::now();
    for chunk in events.chunks(500) {
        door.upload(chunk).unwrap();
    }
    let uploaded = started.elapsed();
    println!(
        "event upload: {EVENTS} events in batches of 500, {:.2} s ({:.0} events/s)",
        uploaded.as_secs_f64(),
        EVENTS as f64 / uploaded.as_secs_f64()
    );
}
