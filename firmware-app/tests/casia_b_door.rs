//! A real walk at the door (feature `video`): CASIA-B subject 001 is enrolled from the recording of one
//! walk and recognised by the kiosk from the recording of another; the empty scene decides nothing.
//!
//! Ten other people share the gallery: CASIA-B subjects 002–011 at the same view, enrolled from the
//! dataset's own silhouettes of a normal walk (there are no recordings of them). The network is the
//! shipped trained model at its calibrated operating point, with the kiosk's default margin. Subjects
//! 001–011 are among its training subjects, so this proves the real-video chain (decoding,
//! background, silhouettes, windows, network, 1:N matching, decision, events) with trained weights,
//! not accuracy (that is `hstl eval` on the test subjects 075–124). Subject 001's templates come
//! through the same silhouette stage as the probe and the others' do not, which favours 001.

#![cfg(feature = "video")]

mod common;

use std::path::Path;

use access::audit::verify;
use access::decision::Verdict;
use access::gallery::{Gallery, NewTemplate};
use firmware_app::enrolment::{templates_from_windows, walk_windows};
use hstl::streaming::StreamingEmbedder;
use silhouette::frame::Frame;
use silhouette::source::{FrameSource, SourceError, VideoFile};
use silhouette::{SilhouetteConfig, SilhouettePipeline};

const WINDOW: usize = 30;
const CELLS: usize = 64 * 44;

/// The empty scene, then the walk: what the camera at the door sees.
struct Chained(Vec<VideoFile>);

impl FrameSource for Chained {
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        while let Some(first) = self.0.first_mut() {
            if let Some(frame) = first.next_frame()? {
                return Ok(Some(frame));
            }
            self.0.remove(0);
        }
        Ok(None)
    }

    fn frame_rate(&self) -> f64 {
        25.0
    }

    fn describe(&self) -> String {
        "CASIA-B recordings".into()
    }
}

fn video(path: &Path) -> VideoFile {
    VideoFile::open(path).unwrap()
}

/// A template from the dataset: the subject's first long enough normal walk so far after its first
/// window, as enrolment keeps it.
fn dataset_template(embedder: &StreamingEmbedder, root: &Path, subject: &str) -> NewTemplate {
    let walk = hstl::casia_b::read_subject(root, subject, Some(&["090".to_owned()]))
        .unwrap()
        .into_iter()
        .find(|w| w.condition.starts_with("nm-") && w.frames() >= WINDOW)
        .unwrap();
    let all = walk.silhouettes().unwrap();
    let mut stream = embedder.stream();
    for frame in all.as_slice()[..WINDOW * CELLS].chunks_exact(CELLS) {
        stream.push(frame).unwrap();
    }
    NewTemplate {
        embedding: stream.embedding().unwrap(),
        frames: WINDOW,
        source: format!("CASIA-B {subject} {} 090", walk.condition),
    }
}

#[test]
fn subject_001_enrolled_from_one_walk_is_recognised_from_the_other() {
    let (Some(raw), Some(packed)) = (
        test_support::shared_path("data/casia-b/raw-video"),
        test_support::shared_path("data/casia-b/silhouettes"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, model_id, embedder, accept_distance) = common::shipped_model();
    let silhouettes = SilhouetteConfig::default();
    let background = raw.join("001-bkgrd-090.avi");

    let gallery_path = dir.path().join("gallery.db");
    let mut gallery = Gallery::open(&gallery_path, None).unwrap();
    let mut pipeline = SilhouettePipeline::new(silhouettes.clone());
    let mut empty = video(&background);
    let walk = walk_windows(
        &mut pipeline,
        Some(&mut empty),
        &mut video(&raw.join("001-nm-01-090.avi")),
    )
    .unwrap();
    let own = templates_from_windows(&embedder, &walk, "001-nm-01", |_, _| {}).unwrap();
    assert!(
        own.len() >= 2,
        "{} windows from the enrolment walk",
        own.len()
    );
    gallery.enrol("001", &model_id, &own).unwrap();
    let others: Vec<NewTemplate> = (2..=11)
        .map(|n| {
            let subject = format!("{n:03}");
            let template = dataset_template(&embedder, &packed, &subject);
            gallery
                .enrol(&subject, &model_id, std::slice::from_ref(&template))
                .unwrap();
            template
        })
        .collect();

    let mut engine = common::door_engine(
        "casia-b",
        &gallery,
        model_id,
        embedder,
        access::decision::DecisionConfig::default(),
        accept_distance,
    );
    let (mut outputs, audit) = common::audited_outputs(dir.path());
    let mut play = |recordings: Vec<VideoFile>| {
        common::play(
            Box::new(Chained(recordings)),
            false,
            &mut engine,
            &mut outputs,
        )
        .0
    };

    let empty_scene = play(vec![video(&background)]);
    assert!(
        empty_scene.is_empty(),
        "the empty scene decided: {empty_scene:?}"
    );
    assert_eq!(verify(&audit, None, &[]).unwrap().events, 0);

    let door = play(vec![
        video(&background),
        video(&raw.join("001-nm-02-090.avi")),
    ]);
    assert_eq!(door.len(), 1, "one walker, one decision: {door:?}");
    assert!(
        matches!(door[0].decision.verdict, Verdict::Granted { .. }),
        "{:?} (accept distance {accept_distance})",
        door[0].decision
    );
    assert_eq!(door[0].name.as_deref(), Some("001"));
    assert_eq!(verify(&audit, None, &[]).unwrap().events, 1);
    let granted_at = door[0].decision.figures.as_ref().unwrap().distance;
    let nearest_other = others
        .iter()
        .flat_map(|o| {
            own.iter()
                .map(move |a| a.embedding.distance(&o.embedding).unwrap())
        })
        .fold(f32::INFINITY, f32::min);
    eprintln!(
        "001-nm-02-090 granted as 001 at {granted_at:.4} (accept distance {accept_distance:.4}); nearest template of another person to 001's: {nearest_other:.4}"
    );
    assert!(
        granted_at < nearest_other,
        "the probe ({granted_at}) is nearer to 001 than any other person's walk is ({nearest_other})"
    );
}

/// The careless enrolment: highway footage instead of a person's walk is refused, and the error says
/// why (before, its longest vehicle track was enrolled as a person).
#[test]
fn traffic_footage_is_refused_for_enrolment_as_no_walking_person() {
    let Some(traffic) = test_support::shared_path("data/bgslibrary-dataset") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, _, embedder) = common::seeded_model(dir.path());
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let walk = walk_windows(
        &mut pipeline,
        None,
        &mut video(&traffic.join("video03.avi")),
    )
    .unwrap();
    assert!(walk.windows.is_empty());
    assert!(!walk.not_walker_windows.is_empty());
    let error = templates_from_windows(&embedder, &walk, "video03.avi", |_, _| {}).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("no usable window of a walking person")
            && message.contains("not of a walking person")
            && message.contains("too wide for a person"),
        "{message}"
    );
}
