//! The enrolment tool. `enrol extract` turns a recording of one walk into the normalised silhouettes
//! the network takes, and a contact sheet to check them by eye.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firmware_app::extract::{contact_sheet, extract_walks};
use firmware_app::normalise::PRETREATED_SIZE;
use firmware_app::silhouette::{SilhouetteConfig, SilhouettePipeline};
use firmware_app::source::{open_path, FrameSource};
use ndarray::Array3;
use ndarray_npy::WriteNpyExt;

const CONTACT_SHEET_COLUMNS: u32 = 12;

#[derive(Parser)]
#[command(about = "Enrol people into a door kiosk's gallery")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Extract the normalised uint8 [T,64,64] silhouettes of the main walker of a recording.
    Extract {
        /// A video file (needs the `video` feature) or a directory of images.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the silhouettes (.npy).
        #[arg(long)]
        output: PathBuf,
        /// Also write the silhouettes side by side as a PNG.
        #[arg(long)]
        contact_sheet: Option<PathBuf>,
        /// A recording of the empty scene to learn the background from first.
        #[arg(long)]
        background: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Extract {
            input,
            output,
            contact_sheet: sheet,
            background,
        } => extract(input, output, sheet, background),
    }
}

fn extract(
    input: PathBuf,
    output: PathBuf,
    sheet: Option<PathBuf>,
    background: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut source = open_path(&input).with_context(|| format!("opening {}", input.display()))?;
    let mut empty = background
        .as_ref()
        .map(|b| open_path(b).with_context(|| format!("opening {}", b.display())))
        .transpose()?;
    log::info!("reading {}", source.describe());
    let mut pipeline = SilhouettePipeline::new(SilhouetteConfig::default());
    let empty_scene = empty.as_mut().map(|e| e.as_mut() as &mut dyn FrameSource);
    let extraction = extract_walks(&mut pipeline, empty_scene, source.as_mut())
        .with_context(|| format!("reading {}", input.display()))?;
    for walk in &extraction.walks {
        log::info!(
            "walk {}: frames {}..={}, {} silhouettes, rejected {:?}",
            walk.track,
            walk.first_frame,
            walk.last_frame,
            walk.silhouettes.len(),
            walk.rejections
        );
    }
    let Some(walk) = extraction.main_walk().filter(|w| !w.silhouettes.is_empty()) else {
        bail!(
            "{}: no walker found in {} frames",
            input.display(),
            extraction.frames_read
        );
    };
    let size = PRETREATED_SIZE as usize;
    let array = Array3::from_shape_vec((walk.silhouettes.len(), size, size), walk.stacked())
        .context("stacking silhouettes")?;
    let file =
        std::fs::File::create(&output).with_context(|| format!("creating {}", output.display()))?;
    array
        .write_npy(std::io::BufWriter::new(file))
        .with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{}: {} silhouettes of walk {} (frames {}..={}) from {} frames",
        output.display(),
        walk.silhouettes.len(),
        walk.track,
        walk.first_frame,
        walk.last_frame,
        extraction.frames_read
    );
    if let Some(sheet) = sheet {
        contact_sheet(&walk.silhouettes, CONTACT_SHEET_COLUMNS)
            .save(&sheet)
            .with_context(|| format!("writing {}", sheet.display()))?;
        println!("{}: contact sheet", sheet.display());
    }
    Ok(())
}
