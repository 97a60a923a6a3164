//! The silhouette stage on real recordings (feature `video`): CASIA-B's own walks against CASIA's
//! reference silhouettes, and the UCB indoor walking clips.

#![cfg(feature = "video")]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use ndarray::Array3;
use ndarray_npy::NpzReader;
use silhouette::evaluation::silhouette_iou;
use silhouette::extract::{extract_walks, replay, Extraction};
use silhouette::quality::FrameRejection;
use silhouette::source::VideoFile;
use silhouette::windows::{cut_walk, Window, WindowConfig, WindowQuality};
use silhouette::{SilhouetteConfig, SilhouettePipeline, TrackId};

const MIN_MEAN_IOU: f64 = 0.85;
/// Binarisation level for comparing grey-edged silhouettes.
const IOU_THRESHOLD: u8 = 128;
const FRAME_PIXELS: usize = 64 * 64;

fn extract(video: &Path, background: Option<&Path>) -> Extraction {
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let mut source = VideoFile::open(video).unwrap();
    let mut empty = background.map(|b| VideoFile::open(b).unwrap());
    extract_walks(
        &mut pipeline,
        empty
            .as_mut()
            .map(|e| e as &mut dyn silhouette::source::FrameSource),
        &mut source,
    )
    .unwrap()
}

/// Every window the stage cuts from a recording, exactly as at the door.
fn door_windows(video: &Path) -> Vec<Window> {
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let mut source = VideoFile::open(video).unwrap();
    let mut windows = Vec::new();
    let replayed = replay(&mut pipeline, None, &mut source, |_, report| {
        windows.extend(report.windows)
    })
    .unwrap();
    windows.extend(replayed.closing_windows);
    windows
}

/// Best order-preserving one-to-one matching of reference frames to ours (dynamic programming over
/// IoU), since CASIA's reference skips frames where the body is not fully in view.
fn aligned_ious(reference: &[&[u8]], ours: &[&[u8]]) -> Vec<f64> {
    let (r, o) = (reference.len(), ours.len());
    let iou: Vec<Vec<f64>> = reference
        .iter()
        .map(|a| {
            ours.iter()
                .map(|b| silhouette_iou(a, b, IOU_THRESHOLD))
                .collect()
        })
        .collect();
    // best[i][j]: best total for the first i reference frames using the first j of ours.
    let mut best = vec![vec![f64::NEG_INFINITY; o + 1]; r + 1];
    best[0].iter_mut().for_each(|v| *v = 0.0);
    for i in 1..=r {
        for j in i..=o {
            best[i][j] = best[i][j - 1].max(best[i - 1][j - 1] + iou[i - 1][j - 1]);
        }
    }
    let (mut i, mut j, mut matched) = (r, o, Vec::new());
    while i > 0 && j > 0 {
        if best[i][j] == best[i][j - 1] && j > i {
            j -= 1;
        } else {
            matched.push(iou[i - 1][j - 1]);
            i -= 1;
            j -= 1;
        }
    }
    matched
}

/// Mean IoU of the main walk in `video` against CASIA's own silhouettes of `walk` (subject 001, 90°),
/// with the background learnt from the empty-scene clip; and the frames decoded.
fn mean_iou_against_casia(dir: &Path, walk: &str, video: &Path) -> (f64, u64) {
    let mut npz =
        NpzReader::new(File::open(dir.join("reference-silhouettes.npz")).unwrap()).unwrap();
    let reference: Array3<u8> = npz.by_name(&format!("001_{walk}_090")).unwrap();
    let reference = reference.as_standard_layout().into_owned();
    let extraction = extract(video, Some(&dir.join("001-bkgrd-090.avi")));
    let ours = extraction.main_walk().expect("a walker");
    let ours_stacked = ours.stacked();
    let ours_frames: Vec<&[u8]> = ours_stacked.chunks_exact(FRAME_PIXELS).collect();
    let reference_frames: Vec<&[u8]> = reference
        .as_slice()
        .unwrap()
        .chunks_exact(FRAME_PIXELS)
        .collect();
    assert!(
        ours_frames.len() >= reference_frames.len() * 3 / 4,
        "{}: {} of our frames for {} reference frames ({:?})",
        video.display(),
        ours_frames.len(),
        reference_frames.len(),
        ours.rejections
    );
    let ious = if ours_frames.len() >= reference_frames.len() {
        aligned_ious(&reference_frames, &ours_frames)
    } else {
        aligned_ious(&ours_frames, &reference_frames)
    };
    let mean = ious.iter().sum::<f64>() / ious.len() as f64;
    let worst = ious.iter().copied().fold(1.0, f64::min);
    eprintln!(
        "{}: {} reference frames, {} of ours, {} matched, mean IoU {mean:.4}, worst {worst:.4}, rejected {:?}",
        video.file_name().unwrap().to_string_lossy(),
        reference_frames.len(),
        ours_frames.len(),
        ious.len(),
        ours.rejections
    );
    (mean, extraction.frames_read)
}

#[test]
fn casia_b_walks_match_casias_own_silhouettes() {
    let Some(dir) = test_support::shared_path("data/casia-b/raw-video") else {
        return;
    };
    for walk in ["nm-01", "nm-02"] {
        let video = dir.join(format!("001-{walk}-090.avi"));
        let (mean, _) = mean_iou_against_casia(&dir, walk, &video);
        assert!(mean >= MIN_MEAN_IOU, "{walk}: mean IoU {mean:.4}");
    }
}

/// The same recording re-encoded the way cameras and phones store video: H.264 in MP4 and Motion JPEG
/// in AVI. The FFmpeg command-line tool makes the copies; under `CI` its absence fails.
#[test]
fn casia_b_walk_reencoded_as_h264_and_mjpeg_gives_the_same_silhouettes() {
    let Some(dir) = test_support::shared_path("data/casia-b/raw-video") else {
        return;
    };
    if std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var("REQUIRE_SHARED").as_deref() != Ok("1"),
            "the ffmpeg command-line tool is needed to re-encode the test clip"
        );
        eprintln!("SKIPPED: no ffmpeg command-line tool");
        return;
    }
    let original = dir.join("001-nm-01-090.avi");
    let (original_iou, original_frames) = mean_iou_against_casia(&dir, "nm-01", &original);
    let scratch = tempfile::tempdir().unwrap();
    for (name, codec) in [
        (
            "h264.mp4",
            ["-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p"],
        ),
        (
            "mjpeg.avi",
            ["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"],
        ),
    ] {
        let copy = scratch.path().join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-i"])
            .arg(&original)
            .args(codec)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg could not write {name}");
        let (iou, frames) = mean_iou_against_casia(&dir, "nm-01", &copy);
        assert_eq!(frames, original_frames, "{name}: every frame decoded");
        assert!(iou >= MIN_MEAN_IOU, "{name}: mean IoU {iou:.4}");
        assert!(
            (iou - original_iou).abs() < 0.02,
            "{name}: mean IoU {iou:.4} against {original_iou:.4} from the original"
        );
    }
}

#[test]
fn casia_b_empty_scene_has_no_walker() {
    let Some(dir) = test_support::shared_path("data/casia-b/raw-video") else {
        return;
    };
    let extraction = extract(&dir.join("001-bkgrd-090.avi"), None);
    let silhouettes: usize = extraction.walks.iter().map(|w| w.silhouettes.len()).sum();
    assert_eq!(
        silhouettes,
        0,
        "{:?}",
        extraction
            .walks
            .iter()
            .map(|w| w.rejections.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn ucb_clips_give_whole_walks() {
    let Some(dir) = test_support::shared_path("data/ucb-squirrels-oakd") else {
        return;
    };
    let mut clips: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "avi"))
        .collect();
    clips.sort();
    assert_eq!(clips.len(), 9);
    let mut whole_walks = 0;
    for clip in clips {
        let extraction = extract(&clip, None);
        let walk = extraction.main_walk().expect("a walker");
        let seen = walk.frames_seen();
        eprintln!(
            "{}: {} frames, main walk {}..={}: {} silhouettes of {} frames seen, rejected {:?}",
            clip.file_name().unwrap().to_string_lossy(),
            extraction.frames_read,
            walk.first_frame,
            walk.last_frame,
            walk.silhouettes.len(),
            seen,
            walk.rejections
        );
        assert!(
            (108..=138).contains(&extraction.frames_read),
            "{}: every frame decoded",
            clip.display()
        );
        // These clips carry the recorder's overlays burned in (a tracking box around the walker, a
        // frame-rate caption at the bottom left, an inset at the bottom right); where the walker
        // comes near the frame's edge they merge with it, and the 60° and 105° walks leave through
        // the edge. Those frames are of a person the frame cuts, and the edge gates refuse them.
        let cut: usize = [
            FrameRejection::TouchesTopOrBottom,
            FrameRejection::TouchesSide,
        ]
        .iter()
        .filter_map(|r| walk.rejections.get(r))
        .sum();
        assert!(
            walk.silhouettes.len() * 4 >= (seen - cut) * 3,
            "{}: most frames of the walk where it is whole in the frame pass the gates",
            clip.display()
        );
        if walk.silhouettes.len() < 30 {
            continue;
        }
        whole_walks += 1;
        assert_eq!(walk.walking, Ok(()), "{}", clip.display());
        let windows = cut_walk(&walk.silhouettes, &WindowConfig::default());
        assert!(
            windows.iter().all(|w| w.quality == WindowQuality::Good),
            "{}: the walker's windows refused: {:?}",
            clip.display(),
            windows.iter().map(|w| &w.quality).collect::<Vec<_>>()
        );
    }
    // 105_001_nm-01 is whole in the frame for 27 frames, less than a window.
    assert_eq!(whole_walks, 8, "clips whose walk gives at least one window");
}

/// The walker gate was tuned on CASIA-B's subjects 001–064 and the vehicles of `video03`; these are
/// the walks and the footage it was not tuned on.
#[test]
fn traffic_footage_shows_no_walking_person() {
    let Some(dir) = test_support::shared_path("data/bgslibrary-dataset") else {
        return;
    };
    for (clip, walkers) in [("video03.avi", 0), ("video02.avi", 0)] {
        let windows = door_windows(&dir.join(clip));
        let mut tracks: BTreeMap<TrackId, (usize, Vec<String>)> = BTreeMap::new();
        for window in &windows {
            let (good, refused) = tracks.entry(window.track).or_default();
            match window.quality {
                WindowQuality::Good => *good += 1,
                WindowQuality::NotAWalker(reason) => refused.push(reason.to_string()),
                WindowQuality::TooFewValidFrames { .. } => {}
            }
        }
        for (track, (good, refused)) in &tracks {
            if *good > 0 || !refused.is_empty() {
                eprintln!("{clip} track {track}: {good} windows of a walker, refused {refused:?}");
            }
        }
        let with_walker = tracks.values().filter(|(good, _)| *good > 0).count();
        assert_eq!(
            with_walker, walkers,
            "{clip}: tracks with a window of a walking person"
        );
        assert!(
            tracks.values().any(|(_, refused)| !refused.is_empty()),
            "{clip}: vehicles reach the walker gate and are refused there"
        );
    }
}

#[test]
fn casia_b_validation_walkers_pass_the_walker_gate() {
    let Some(root) = test_support::shared_path("data/casia-b/silhouettes") else {
        return;
    };
    let config = WindowConfig::default();
    let (mut windows, mut refused) = (0usize, Vec::new());
    for subject in hstl::casia_b::parse_subjects("065-074").unwrap() {
        for walk in hstl::casia_b::read_subject(&root, &subject, None).unwrap() {
            let silhouettes: Vec<image::GrayImage> = walk
                .pixels()
                .chunks(FRAME_PIXELS)
                .map(|frame| image::GrayImage::from_raw(64, 64, frame.to_vec()).unwrap())
                .collect();
            for window in cut_walk(&silhouettes, &config) {
                windows += 1;
                if let WindowQuality::NotAWalker(reason) = window.quality {
                    refused.push(format!(
                        "{}_{}_{}: {reason}",
                        walk.subject, walk.condition, walk.view
                    ));
                }
            }
        }
    }
    eprintln!(
        "CASIA-B 065-074: {} of {windows} windows refused: {refused:?}",
        refused.len()
    );
    assert!(windows > 5_000, "{windows} windows");
    assert!(
        refused.len() * 1000 <= windows,
        "more than 0.1 % of real walkers refused: {refused:?}"
    );
}

#[test]
fn a_truncated_recording_says_what_was_cut() {
    use silhouette::source::FrameSource;
    let Some(dir) = test_support::shared_path("data/ucb-squirrels-oakd") else {
        return;
    };
    let whole = dir.join("090_001_nm-01.avi");
    let read_all = |path: &Path| {
        let mut video = VideoFile::open(path).unwrap();
        let mut frames = 0;
        while video.next_frame().unwrap().is_some() {
            frames += 1;
        }
        (frames, video.damage())
    };
    let (frames, damage) = read_all(&whole);
    assert_eq!(damage, None, "the intact clip");
    let scratch = tempfile::tempdir().unwrap();
    let cut = scratch.path().join("cut.avi");
    let bytes = std::fs::read(&whole).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let (read, damage) = read_all(&cut);
    assert!(read < frames, "{read} of {frames}");
    let damage = damage.expect("the cut is reported");
    assert!(damage.contains("never decoded"), "{damage}");
    eprintln!("{read} of {frames} frames read from the cut clip: {damage}");
}
