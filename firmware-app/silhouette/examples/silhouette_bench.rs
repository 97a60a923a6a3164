//! Scores and times the silhouette stage on the synthetic scene, and optionally OpenCV's MOG2 on the
//! very same frames with the very same clean-up (see `bench/compare_mog2.sh`).
//!
//! ```text
//! silhouette_bench score  WIDTH HEIGHT [--export DIR] [--mog2 DIR]
//! ```
//! For each condition (plain, shadow, drift, exposure, all) and each seed it renders the scene, runs
//! the whole stage (background model, clean-up, blobs, tracking, normalisation, windows) and reports
//! the F-measure of the person masks against the ground truth and the time per frame. `--export`
//! writes each scene's frames as `CONDITION-SEED.npy` ([N,H,W] uint8) for another program;
//! `--mog2` reads that program's raw labels (0 / 127 / 255) as `CONDITION-SEED.mog2.npy` and scores
//! them after the same clean-up.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use image::GrayImage;
use ndarray::Array3;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use silhouette::blobs::extract_blobs;
use silhouette::evaluation::MaskScore;
use silhouette::frame::Frame;
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use synthetic_scene::{SceneConfig, SyntheticScene};

const SEEDS: [u64; 3] = [1, 2, 3];
/// Frames at the start of each scene left out of the score: the model's first look at the room.
const WARM_UP_FRAMES: u64 = 10;

fn condition(name: &str, seed: u64, width: u32, height: u32) -> SceneConfig {
    let mut config = SceneConfig::single_walker(seed, width, height);
    match name {
        "plain" => {}
        "shadow" => config.shadows = true,
        "drift" => config.light_drift = true,
        "exposure" => config.exposure_steps = true,
        _ => config = config.with_all_conditions(),
    }
    config
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("score") || args.len() < 3 {
        bail!("usage: silhouette_bench score WIDTH HEIGHT [--export DIR] [--mog2 DIR]");
    }
    let width: u32 = args[1].parse().context("WIDTH")?;
    let height: u32 = args[2].parse().context("HEIGHT")?;
    let option = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let export = option("--export");
    let mog2 = option("--mog2");
    if let Some(dir) = &export {
        std::fs::create_dir_all(dir)?;
    }

    println!(
        "condition  frames  ours_F  ours_P  ours_R  ours_ms/frame{}",
        if mog2.is_some() {
            "  mog2_F  mog2_P  mog2_R"
        } else {
            ""
        }
    );
    for name in ["plain", "shadow", "drift", "exposure", "all"] {
        let (mut ours, mut theirs) = (MaskScore::default(), MaskScore::default());
        let (mut frames_scored, mut seconds) = (0u64, 0.0f64);
        for seed in SEEDS {
            let mut scene = SyntheticScene::new(condition(name, seed, width, height));
            let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
            let mut rendered: Vec<(Frame, GrayImage)> = Vec::new();
            while let Some((frame, truth)) = scene.next_with_truth() {
                rendered.push((frame, truth.mask()));
            }
            for (frame, truth) in &rendered {
                let started = Instant::now();
                let report = pipeline.process(frame);
                seconds += started.elapsed().as_secs_f64();
                if frame.index >= WARM_UP_FRAMES {
                    ours.add(&report.foreground(width, height), truth);
                    frames_scored += 1;
                }
            }
            pipeline.finish();
            let stem = format!("{name}-{seed}");
            if let Some(dir) = &export {
                let mut stack =
                    Array3::<u8>::zeros((rendered.len(), height as usize, width as usize));
                for (i, (frame, _)) in rendered.iter().enumerate() {
                    stack
                        .index_axis_mut(ndarray::Axis(0), i)
                        .as_slice_mut()
                        .context("contiguous")?
                        .copy_from_slice(frame.image.as_raw());
                }
                stack.write_npy(std::fs::File::create(dir.join(format!("{stem}.npy")))?)?;
            }
            if let Some(dir) = &mog2 {
                let path = dir.join(format!("{stem}.mog2.npy"));
                let labels = Array3::<u8>::read_npy(
                    std::fs::File::open(&path).with_context(|| path.display().to_string())?,
                )?;
                let config = SilhouetteConfig::default();
                for (i, (frame, truth)) in rendered.iter().enumerate() {
                    if frame.index < WARM_UP_FRAMES {
                        continue;
                    }
                    let raw = labels.index_axis(ndarray::Axis(0), i);
                    let raw = GrayImage::from_raw(width, height, raw.iter().copied().collect())
                        .context("mask size")?;
                    let mut cleaned = GrayImage::new(width, height);
                    for blob in extract_blobs(&raw, &config.blobs) {
                        blob.paint(&mut cleaned);
                    }
                    theirs.add(&cleaned, truth);
                }
            }
        }
        print!(
            "{name:<9}  {frames_scored:>6}  {:.4}  {:.4}  {:.4}  {:>13.2}",
            ours.f_measure(),
            ours.precision(),
            ours.recall(),
            1000.0 * seconds / frames_scored.max(1) as f64
        );
        if mog2.is_some() {
            print!(
                "  {:.4}  {:.4}  {:.4}",
                theirs.f_measure(),
                theirs.precision(),
                theirs.recall()
            );
        }
        println!();
    }
    Ok(())
}
