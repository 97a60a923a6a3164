//! A power cut in the middle of an enrolment leaves a valid gallery: a child process enrols people in
//! a loop and is killed (SIGKILL) at varying moments; every person found afterwards has all of their
//! templates, and the database passes SQLite's integrity check.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use access::gallery::{Gallery, NewTemplate, TemplateKey};
use hstl::Embedding;

const CHILD_GALLERY: &str = "GALLERY_CRASH_CHILD_DB";
const CHILD_KEY: &str = "GALLERY_CRASH_CHILD_KEY";
const CHILD_FIRST_PERSON: &str = "GALLERY_CRASH_CHILD_FIRST";
const TEMPLATES_PER_PERSON: usize = 6;

fn templates(seed: usize) -> Vec<NewTemplate> {
    (0..TEMPLATES_PER_PERSON)
        .map(|t| NewTemplate {
            embedding: Embedding::new(73, 128, vec![(seed * 10 + t) as f32; 73 * 128]).unwrap(),
            frames: 30,
            source: format!("walk {t}"),
        })
        .collect()
}

/// The child: enrols until killed.
#[test]
fn enrolment_writer_until_killed() {
    let (Ok(path), Ok(key)) = (std::env::var(CHILD_GALLERY), std::env::var(CHILD_KEY)) else {
        return;
    };
    let key = TemplateKey::from_hex(&key).unwrap();
    let first: usize = std::env::var(CHILD_FIRST_PERSON).unwrap().parse().unwrap();
    let mut gallery = Gallery::open(Path::new(&path), Some(&key)).unwrap();
    for person in first.. {
        gallery
            .enrol(&format!("person {person}"), "model", &templates(person))
            .unwrap();
    }
}

#[test]
fn a_killed_enrolment_leaves_whole_people_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gallery.db");
    let key = TemplateKey::generate();
    let mut total_people = 0;
    for (round, delay_ms) in [150u64, 400, 900].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "enrolment_writer_until_killed", "--nocapture"])
            .env(CHILD_GALLERY, &path)
            .env(CHILD_KEY, key.to_hex())
            .env(CHILD_FIRST_PERSON, total_people.to_string())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();

        let gallery = Gallery::open(&path, Some(&key)).unwrap();
        let people = gallery.people().unwrap();
        assert!(
            people.iter().all(|p| p.templates == TEMPLATES_PER_PERSON),
            "round {round}: a person with a partial enrolment survived: {people:?}"
        );
        let templates = gallery.templates().unwrap();
        assert_eq!(templates.len(), people.len() * TEMPLATES_PER_PERSON);
        assert!(
            people.len() >= total_people,
            "round {round}: people enrolled before were lost"
        );
        total_people = people.len();
    }
    assert!(
        total_people > 0,
        "the writer enrolled nobody before it was killed"
    );
}
