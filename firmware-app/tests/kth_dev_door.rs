//! People the network never saw, at another camera on other days (feature `video`): the KTH walking
//! clips of persons 01–12 (`../shared/data/kth-walking-dev`, 160×120 at 25 frames/s; outdoors `d1`,
//! outdoors in other clothes `d3`, indoors `d4`; one person crosses the view about four times per
//! clip). Persons 01–08 are enrolled from one scenario with the shipped model, as `enrol add` does;
//! every clip of the other scenarios goes through the kiosk's door at the model's calibrated
//! operating point, and persons 09–12, never enrolled, walk up in every scenario as strangers. The
//! figures are reported (the issue "people at real doors" tracks them); what is asserted is that the
//! door fails secure: no stranger is let in.

#![cfg(feature = "video")]

mod common;

use std::path::Path;

use access::decision::{DecisionConfig, Verdict};
use access::gallery::Gallery;
use firmware_app::enrolment::{templates_from_windows, walk_windows};
use silhouette::source::VideoFile;
use silhouette::{SilhouetteConfig, SilhouettePipeline};

const ENROLLED: std::ops::RangeInclusive<u32> = 1..=8;
const STRANGERS: std::ops::RangeInclusive<u32> = 9..=12;
const SCENARIOS: [&str; 3] = ["d1", "d3", "d4"];

fn clip(dir: &Path, person: u32, scenario: &str) -> Option<std::path::PathBuf> {
    let path = dir.join(format!("person{person:02}_walking_{scenario}_uncomp.avi"));
    // person03 d3 is missing in the source.
    path.exists().then_some(path)
}

#[derive(Default, Debug)]
struct Outcomes {
    walk_ups: usize,
    granted_as_themselves: usize,
    granted_as_someone_else: usize,
}

/// Enrols persons 01–08 from `enrolled_from`, then plays every other scenario of theirs (genuine)
/// and every scenario of persons 09–12 (strangers) through one door: what the door did.
fn door_of_people_enrolled_from(dir: &Path, enrolled_from: &str) -> (Outcomes, Outcomes) {
    let scratch = tempfile::tempdir().unwrap();
    let (_, model_id, embedder, accept_distance) = common::shipped_model();
    let mut gallery = Gallery::open(&scratch.path().join("gallery.db"), None).unwrap();
    for person in ENROLLED {
        let path = clip(dir, person, enrolled_from).unwrap();
        let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
        let walk = walk_windows(&mut pipeline, None, &mut VideoFile::open(&path).unwrap());
        let templates = walk.map_err(|e| e.to_string()).and_then(|walk| {
            templates_from_windows(&embedder, &walk, "kth", |_, _| {}).map_err(|e| e.to_string())
        });
        match templates {
            Ok(templates) => {
                eprintln!(
                    "person{person:02} enrolled from {enrolled_from}: {} templates",
                    templates.len()
                );
                gallery
                    .enrol(&format!("person{person:02}"), &model_id, &templates)
                    .unwrap();
            }
            Err(error) => eprintln!("person{person:02} not enrolled from {enrolled_from}: {error}"),
        }
    }
    let mut engine = common::door_engine(
        "kth",
        &gallery,
        model_id,
        embedder,
        DecisionConfig::default(),
        accept_distance,
    );
    let (mut outputs, _) = common::audited_outputs(scratch.path());
    let (mut genuine, mut strangers) = (Outcomes::default(), Outcomes::default());
    for person in ENROLLED.chain(STRANGERS) {
        for scenario in SCENARIOS {
            let enrolled = ENROLLED.contains(&person);
            if enrolled && scenario == enrolled_from {
                continue;
            }
            let Some(path) = clip(dir, person, scenario) else {
                continue;
            };
            let decisions = common::play(
                Box::new(VideoFile::open(&path).unwrap()),
                false,
                &mut engine,
                &mut outputs,
            )
            .0;
            let outcomes = if enrolled {
                &mut genuine
            } else {
                &mut strangers
            };
            let mut described = Vec::new();
            for record in &decisions {
                outcomes.walk_ups += 1;
                let distance = record
                    .decision
                    .figures
                    .as_ref()
                    .map_or(String::from("-"), |f| format!("{:.2}", f.distance));
                match &record.decision.verdict {
                    Verdict::Granted { .. } => {
                        let name = record.name.clone().unwrap_or_default();
                        if name == format!("person{person:02}") {
                            outcomes.granted_as_themselves += 1;
                        } else {
                            outcomes.granted_as_someone_else += 1;
                        }
                        described.push(format!("granted as {name} at {distance}"));
                    }
                    Verdict::Denied { reason, .. } => {
                        described.push(format!("denied ({}) at {distance}", reason.describe()))
                    }
                }
            }
            eprintln!(
                "person{person:02} {scenario}{}: {}",
                if enrolled { "" } else { " (stranger)" },
                described.join("; ")
            );
        }
    }
    eprintln!(
        "enrolled from {enrolled_from}, accept distance {accept_distance:.2}: genuine {genuine:?}; strangers {strangers:?}"
    );
    (genuine, strangers)
}

#[test]
fn people_enrolled_outdoors_or_indoors_at_the_kth_doors_and_no_stranger_let_in() {
    let Some(dir) = test_support::shared_path("data/kth-walking-dev") else {
        return;
    };
    for enrolled_from in ["d1", "d4"] {
        let (genuine, strangers) = door_of_people_enrolled_from(&dir, enrolled_from);
        assert!(genuine.walk_ups > 0 && strangers.walk_ups > 0);
        assert_eq!(
            strangers.granted_as_themselves + strangers.granted_as_someone_else,
            0,
            "a stranger was let in ({enrolled_from})"
        );
    }
}
