//! `calibrate thresholds`: the kiosk's accept distance from labelled walks.
//!
//! Each walk is cut into the kiosk's windows and embedded; the searches of `open_set` give the DET
//! curve, the equal error rate and the accept distance for a target FPIR, which `--save` keeps
//! beside the model as its operating point (`MODEL.onnx.operating-point.json`): the distance every
//! door running that model starts from, and may only tighten.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use calibration::det_plot::write_det_png;
use calibration::open_set::{LabelledWalk, OpenSetRates};
use clap::{Parser, Subcommand};
use firmware_app::kiosk::window_input;
use hstl::{model_id, Embedder, OperatingPoint, TractEmbedder};
use image::GrayImage;
use ndarray::Array3;
use silhouette::normalise::PRETREATED_SIZE;
use silhouette::windows::{cut_walk, WindowConfig, WindowQuality};

#[derive(Parser)]
#[command(name = "calibrate", version, about = "Calibrate the kiosk's decisions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Accept distance for a target false-positive identification rate, from labelled walks.
    Thresholds {
        #[arg(long)]
        model: PathBuf,
        /// One folder per person holding their walks as silhouette files (`enrol extract` output,
        /// uint8 [T,64,64] .npy). Walks are taken in file-name order.
        #[arg(long, conflicts_with = "casia_b", required_unless_present = "casia_b")]
        walks: Option<PathBuf>,
        /// Or CASIA-B silhouettes (bit-packed archive or OpenGait pickles), one person per subject.
        #[arg(long = "casia-b")]
        casia_b: Option<PathBuf>,
        #[arg(long, default_value = "075-124")]
        subjects: String,
        /// CASIA-B views to use, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        views: Option<Vec<String>>,
        /// Walks per person enrolled; the others are searched.
        #[arg(long, default_value_t = 1)]
        gallery_walks: usize,
        /// Frames per window instead of the kiosk's (`silhouette::windows`), for quick experiments:
        /// the rates then describe no door, and the operating point says so.
        #[arg(long)]
        window: Option<usize>,
        /// Frames between window starts instead of the kiosk's, likewise.
        #[arg(long)]
        hop: Option<usize>,
        /// The false-positive identification rate to stay under (NIST's access-control point).
        #[arg(long, default_value_t = 0.003)]
        target_fpir: f64,
        /// Write the DET curve here (PNG).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Keep the accept distance beside the model as its operating point, for every door that
        /// runs it. Refused when no distance meets the target.
        #[arg(long)]
        save: bool,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let Command::Thresholds {
        model,
        walks,
        casia_b,
        subjects,
        views,
        gallery_walks,
        window,
        hop,
        target_fpir,
        plot,
        save,
        threads,
    } = Cli::parse().command;
    let defaults = WindowConfig::default();
    let windows = WindowConfig {
        frames: window.unwrap_or(defaults.frames),
        hop: hop.unwrap_or(defaults.hop),
        ..defaults
    };
    if windows.frames == 0 || windows.hop == 0 {
        bail!("--window and --hop must be at least 1");
    }
    if let Some(plot) = &plot {
        let mut inputs = vec![model.as_path()];
        inputs.extend(walks.as_deref());
        hstl::files::check_output(plot, &inputs)?;
    }
    let embedder = TractEmbedder::load(&model, threads)?;
    let started = Instant::now();
    let (labelled, data) = match (walks, casia_b) {
        (Some(dir), _) => (
            site_walks(&dir, &embedder, &windows)?,
            format!("site walks in {}", dir.display()),
        ),
        (None, Some(root)) => (
            casia_b_walks(&root, &subjects, views.as_deref(), &embedder, &windows)?,
            format!(
                "CASIA-B subjects {subjects}, views {}",
                views.as_ref().map_or("all".into(), |v| v.join(","))
            ),
        ),
        (None, None) => unreachable!("clap requires --walks or --casia-b"),
    };
    let kiosk_windows = windows == defaults;
    let measured_on = format!(
        "{data}; {gallery_walks} enrolled walk(s) per person; {}windows of {} frames every {}{}; rates per window search",
        if kiosk_windows { "the kiosk's " } else { "" },
        windows.frames,
        windows.hop,
        if kiosk_windows { "" } else { " (not the kiosk's)" }
    );
    let embedded: usize = labelled.iter().map(|w| w.windows.len()).sum();
    log::info!(
        "{} walks, {embedded} windows embedded in {:.0} s",
        labelled.len(),
        started.elapsed().as_secs_f64()
    );

    let rates = OpenSetRates::leave_one_out(&labelled, gallery_walks)?;
    let equal_error = rates.equal_error_rate();
    let operating = rates.threshold_for_fpir(target_fpir)?;
    println!("measured on:     {measured_on}");
    println!(
        "searches:        {} mated ({} nearest someone else), {} non-mated",
        rates.mated_searches(),
        rates.rank1_misses(),
        rates.non_mated_searches()
    );
    println!(
        "equal error:     {:.2} % at distance {:.6}",
        100.0 * equal_error.fpir,
        equal_error.threshold
    );
    println!(
        "FPIR <= {target_fpir}:  FNIR {:.2} % (FPIR {:.4}) at distance {}",
        100.0 * operating.fnir,
        operating.fpir,
        operating.threshold
    );
    if rates.fpir_resolution() > target_fpir {
        println!(
            "warning:         {} non-mated searches resolve FPIR only in steps of {:.4}: the target needs at least {} for a measured rate",
            rates.non_mated_searches(),
            rates.fpir_resolution(),
            (1.0 / target_fpir).ceil()
        );
    }
    if let Some(path) = plot {
        write_det_png(&path, &rates, equal_error, operating, target_fpir)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("DET curve:       {}", path.display());
    }
    if save {
        if operating.fnir >= 1.0 {
            bail!(
                "no accept distance keeps FPIR at or under {target_fpir} and accepts anyone enrolled (FNIR 100 %): the model cannot tell these people apart at that rate; nothing was saved"
            );
        }
        let point = OperatingPoint {
            model_id: model_id(&model)?,
            accept_distance: operating.threshold,
            target_fpir,
            fpir: operating.fpir,
            fnir: operating.fnir,
            mated_searches: rates.mated_searches(),
            non_mated_searches: rates.non_mated_searches(),
            measured_on,
        };
        let path = point.save_for(&model)?;
        println!("operating point: {}", path.display());
    }
    Ok(())
}

/// The embeddings of the windows the kiosk would decide on for one walk of `[T, 64, 64]` uint8
/// silhouettes: cut by the kiosk's own windowing, fed to the network as the kiosk feeds it; windows
/// the kiosk would call poor quality are left out, as it leaves them out of its votes.
fn embed_walk(
    embedder: &TractEmbedder,
    windows: &WindowConfig,
    frames: usize,
    pixels: &[u8],
) -> Result<Vec<hstl::Embedding>> {
    let side = PRETREATED_SIZE as usize;
    let silhouettes: Vec<GrayImage> = pixels
        .chunks_exact(side * side)
        .take(frames)
        .map(|frame| {
            GrayImage::from_raw(side as u32, side as u32, frame.to_vec()).expect("a whole frame")
        })
        .collect();
    cut_walk(&silhouettes, windows)
        .into_iter()
        .filter(|w| w.quality == WindowQuality::Good)
        .map(|w| Ok(embedder.embed(&window_input(&w.silhouettes)?)?))
        .collect()
}

fn site_walks(
    dir: &Path,
    embedder: &TractEmbedder,
    windows: &WindowConfig,
) -> Result<Vec<LabelledWalk>> {
    let mut people: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    people.sort();
    let mut labelled = Vec::new();
    for person_dir in people {
        let person = person_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&person_dir)
            .with_context(|| format!("reading {}", person_dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "npy"))
            .collect();
        files.sort();
        for file in files {
            let walk: Array3<u8> = ndarray_npy::read_npy(&file).with_context(|| {
                format!(
                    "reading {} (uint8 [T, 64, 64] silhouettes, as `enrol extract` writes)",
                    file.display()
                )
            })?;
            if walk.shape()[1..] != [PRETREATED_SIZE as usize; 2] {
                bail!(
                    "{}: {:?} frames, expected [T, 64, 64] silhouettes as `enrol extract` writes",
                    file.display(),
                    walk.shape()
                );
            }
            let frames = walk.shape()[0];
            let pixels = walk.as_standard_layout();
            let pixels = pixels.as_slice().expect("a standard layout is contiguous");
            let embedded = embed_walk(embedder, windows, frames, pixels)?;
            if embedded.is_empty() {
                log::warn!(
                    "{}: {frames} frames give the kiosk no window good enough to decide on; skipped",
                    file.display()
                );
                continue;
            }
            labelled.push(LabelledWalk {
                person: person.clone(),
                windows: embedded,
            });
        }
    }
    if labelled.is_empty() {
        bail!(
            "{}: no walks found (expected PERSON/WALK.npy)",
            dir.display()
        );
    }
    Ok(labelled)
}

fn casia_b_walks(
    root: &Path,
    subjects: &str,
    views: Option<&[String]>,
    embedder: &TractEmbedder,
    windows: &WindowConfig,
) -> Result<Vec<LabelledWalk>> {
    let mut labelled = Vec::new();
    for subject in hstl::casia_b::parse_subjects(subjects)? {
        for walk in hstl::casia_b::read_subject(root, &subject, views)? {
            let embedded = embed_walk(embedder, windows, walk.frames(), walk.pixels())?;
            if !embedded.is_empty() {
                labelled.push(LabelledWalk {
                    person: subject.clone(),
                    windows: embedded,
                });
            }
        }
        log::info!("subject {subject}: {} walks so far", labelled.len());
    }
    Ok(labelled)
}
