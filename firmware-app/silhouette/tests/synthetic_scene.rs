//! The silhouette stage on the synthetic door scene, scored against its ground truth.

use std::collections::HashMap;

use rand::SeedableRng;
use silhouette::evaluation::MaskScore;
use silhouette::extract::{contact_sheet, extract_walks};
use silhouette::tracking::TrackId;
use silhouette::windows::WindowQuality;
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use synthetic_scene::{SceneConfig, SyntheticScene};
use synthetic_scene::{Walk, WalkerIdentity};

const WARM_UP_FRAMES: u64 = 10;
const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;

fn score(config: SceneConfig) -> MaskScore {
    let mut scene = SyntheticScene::new(config);
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let mut score = MaskScore::default();
    while let Some((frame, truth)) = scene.next_with_truth() {
        let report = pipeline.process(&frame);
        if frame.index >= WARM_UP_FRAMES {
            score.add(&report.foreground(WIDTH, HEIGHT), &truth.mask());
        }
    }
    score
}

#[test]
fn plain_scene_f_measure_is_at_least_095() {
    let mut total = MaskScore::default();
    for seed in [1, 2, 3] {
        let s = score(SceneConfig::single_walker(seed, WIDTH, HEIGHT));
        total.true_positives += s.true_positives;
        total.false_positives += s.false_positives;
        total.false_negatives += s.false_negatives;
    }
    eprintln!(
        "plain: F {:.4} P {:.4} R {:.4}",
        total.f_measure(),
        total.precision(),
        total.recall()
    );
    assert!(total.f_measure() >= 0.95, "F {:.4}", total.f_measure());
}

#[test]
fn light_drift_and_exposure_steps_cost_almost_nothing() {
    let mut config = SceneConfig::single_walker(1, WIDTH, HEIGHT);
    config.light_drift = true;
    config.exposure_steps = true;
    let s = score(config);
    eprintln!("drift+exposure: F {:.4}", s.f_measure());
    assert!(s.f_measure() >= 0.94, "F {:.4}", s.f_measure());
}

#[test]
fn with_shadows_the_person_is_still_found() {
    let s = score(SceneConfig::single_walker(1, WIDTH, HEIGHT).with_all_conditions());
    eprintln!(
        "all conditions: F {:.4} P {:.4} R {:.4}",
        s.f_measure(),
        s.precision(),
        s.recall()
    );
    assert!(s.recall() >= 0.9, "R {:.4}", s.recall());
    assert!(s.f_measure() >= 0.8, "F {:.4}", s.f_measure());
}

fn walk(seed: u64, start_s: f32, from_left: bool, depth_m: f32) -> Walk {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Walk {
        identity: WalkerIdentity::random(&mut rng),
        start_s,
        angle_deg: 0.0,
        from_left,
        depth_m,
        pause: None,
    }
}

/// Plays the scene and checks that every long track follows one walker, and that each walker has one.
fn assert_one_walker_per_track(config: SceneConfig) {
    let walkers = config.walks.len() as u8;
    let mut scene = SyntheticScene::new(config);
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    // For every track, how many of its valid frames came from each ground-truth walker.
    let mut sources: HashMap<TrackId, HashMap<u8, usize>> = HashMap::new();
    while let Some((frame, truth)) = scene.next_with_truth() {
        let report = pipeline.process(&frame);
        for track_frame in report.tracks.iter().filter(|t| t.silhouette.is_ok()) {
            let blob = &report.blobs[track_frame.blob];
            // The walker who owns most of the blob's pixels.
            let mut owners: HashMap<u8, usize> = HashMap::new();
            for (x, y, v) in blob.mask.enumerate_pixels() {
                let label = truth.labels.get_pixel(blob.bbox.x0 + x, blob.bbox.y0 + y).0[0];
                if v.0[0] != 0 && label != 0 {
                    *owners.entry(label).or_default() += 1;
                }
            }
            let Some((&label, _)) = owners.iter().max_by_key(|(_, &n)| n) else {
                continue;
            };
            *sources
                .entry(track_frame.track)
                .or_default()
                .entry(label)
                .or_default() += 1;
        }
    }
    let mut walkers_with_long_tracks: Vec<u8> = Vec::new();
    for (track, counts) in &sources {
        let total: usize = counts.values().sum();
        if total < 15 {
            continue;
        }
        let (&walker, &most) = counts.iter().max_by_key(|(_, &n)| n).unwrap();
        assert!(
            most * 10 >= total * 9,
            "track {track} mixes walkers: {counts:?}"
        );
        walkers_with_long_tracks.push(walker);
    }
    walkers_with_long_tracks.sort();
    walkers_with_long_tracks.dedup();
    assert_eq!(
        walkers_with_long_tracks,
        (1..=walkers).collect::<Vec<_>>(),
        "{sources:?}"
    );
}

#[test]
fn two_walkers_get_their_own_silhouette_sequences() {
    let mut config = SceneConfig::single_walker(5, WIDTH, HEIGHT);
    // One behind the other in the same direction.
    config.walks = vec![walk(10, 2.0, true, 3.1), walk(11, 3.6, true, 3.6)];
    assert_one_walker_per_track(config);
}

#[test]
fn walkers_crossing_each_other_keep_their_own_sequences() {
    for (seed, near_depth, far_depth) in [(6, 3.0, 3.8), (7, 3.2, 3.5)] {
        let mut config = SceneConfig::single_walker(seed, WIDTH, HEIGHT);
        // From opposite sides at the same moment: their blobs merge mid-scene.
        config.walks = vec![
            walk(seed + 20, 2.0, true, near_depth),
            walk(seed + 30, 2.0, false, far_depth),
        ];
        assert_one_walker_per_track(config);
    }
}

#[test]
fn someone_waiting_at_the_door_stays_foreground() {
    let mut config = SceneConfig::single_walker(8, WIDTH, HEIGHT);
    let mut waiting = walk(12, 2.0, true, 3.2);
    let halfway = 2.0 + 0.5 * (config.walk_end_s(&waiting) - 2.0);
    waiting.pause = Some((halfway, 5.0));
    config.walks = vec![waiting];
    let frame_rate = config.frame_rate as f32;
    let mut scene = SyntheticScene::new(config);
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let mut during_pause_end = MaskScore::default();
    while let Some((frame, truth)) = scene.next_with_truth() {
        let report = pipeline.process(&frame);
        let t = frame.index as f32 / frame_rate;
        // The last second of the five-second wait.
        if (halfway + 4.0..halfway + 5.0).contains(&t) {
            during_pause_end.add(&report.foreground(WIDTH, HEIGHT), &truth.mask());
        }
    }
    eprintln!(
        "after 4 s standing still: recall {:.4}",
        during_pause_end.recall()
    );
    assert!(
        during_pause_end.recall() >= 0.9,
        "recall {:.4}",
        during_pause_end.recall()
    );
}

#[test]
fn a_walk_becomes_windows_of_thirty_with_a_closing_one() {
    let mut scene = SyntheticScene::new(SceneConfig::single_walker(3, WIDTH, HEIGHT));
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let mut windows = Vec::new();
    while let Some((frame, _)) = scene.next_with_truth() {
        windows.extend(pipeline.process(&frame).windows);
    }
    windows.extend(pipeline.finish());
    let good: Vec<_> = windows
        .iter()
        .filter(|w| w.quality == WindowQuality::Good)
        .collect();
    assert!(!good.is_empty(), "{windows:?}");
    assert!(good
        .iter()
        .all(|w| w.silhouettes.len() >= 18 && w.silhouettes.len() <= 30));
    assert!(windows.iter().any(|w| w.closes_walk));
    let input =
        hstl::Silhouettes::from_u8(&[good[0].silhouettes.len(), 64, 64], &good[0].stacked())
            .unwrap();
    assert_eq!(input.frames(), good[0].silhouettes.len());
}

#[test]
fn the_synthetic_walker_is_extracted_as_one_walk() {
    let mut scene = SyntheticScene::new(SceneConfig::single_walker(21, 320, 240));
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let extraction = extract_walks(&mut pipeline, None, &mut scene).unwrap();
    assert_eq!(extraction.frames_read, scene.total_frames());
    let main = extraction.main_walk().unwrap();
    assert!(
        main.silhouettes.len() >= 30,
        "{} silhouettes",
        main.silhouettes.len()
    );
    let long_walks = extraction
        .walks
        .iter()
        .filter(|w| w.silhouettes.len() >= 10)
        .count();
    assert_eq!(long_walks, 1, "one walker, one walk");
    let sheet = contact_sheet(&main.silhouettes, 10);
    assert_eq!(sheet.width(), 10 * 66 + 2);
}
