//! Renders the synthetic door scene to PNG files, each frame beside its ground-truth mask.
//!
//! `cargo run --release -p synthetic-scene --example synthetic_scene -- OUT_DIR [SEED] [all]`
//! writes every tenth frame; `all` turns on shadows, light drift and exposure steps.

use std::path::PathBuf;

use image::GrayImage;
use synthetic_scene::{SceneConfig, SyntheticScene};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "synthetic-scene".into()));
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let mut config = SceneConfig::single_walker(seed, 640, 480);
    if args.next().as_deref() == Some("all") {
        config = config.with_all_conditions();
    }
    std::fs::create_dir_all(&out)?;
    let mut scene = SyntheticScene::new(config);
    while let Some((frame, truth)) = scene.next_with_truth() {
        if frame.index % 10 != 0 {
            continue;
        }
        let (w, h) = frame.image.dimensions();
        let mask = truth.mask();
        let side_by_side = GrayImage::from_fn(2 * w, h, |x, y| {
            if x < w {
                *frame.image.get_pixel(x, y)
            } else {
                *mask.get_pixel(x - w, y)
            }
        });
        side_by_side.save(out.join(format!("frame-{:04}.png", frame.index)))?;
    }
    Ok(())
}
