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
use hstl::{model_id, Embedder, OperatingPoint, Silhouettes, TractEmbedder};

const CELLS: usize = 64 * 44;

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
        /// The kiosk's window: frames per window and frames between window starts.
        #[arg(long, default_value_t = 30)]
        window: usize,
        #[arg(long, default_value_t = 15)]
        hop: usize,
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
    if window == 0 || hop == 0 {
        bail!("--window and --hop must be at least 1");
    }
    if let Some(plot) = &plot {
        let mut inputs = vec![model.as_path()];
        inputs.extend(walks.as_deref());
        hstl::files::check_output(plot, &inputs)?;
    }
    let embedder = TractEmbedder::load(&model, threads)?;
    let windows = Windows {
        frames: window,
        hop,
    };
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
    let measured_on = format!(
        "{data}; {gallery_walks} enrolled walk(s) per person; windows of {window} frames every {hop}; per window"
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

struct Windows {
    frames: usize,
    hop: usize,
}

impl Windows {
    /// Window starts as the kiosk cuts a walk: every `hop` frames, and a last window ending with the
    /// walk. A walk shorter than one window gives none, as a short track gets no decision.
    fn starts(&self, walk_frames: usize) -> Vec<usize> {
        if walk_frames < self.frames {
            return Vec::new();
        }
        let last = walk_frames - self.frames;
        let mut starts: Vec<usize> = (0..=last).step_by(self.hop).collect();
        if starts.last() != Some(&last) {
            starts.push(last);
        }
        starts
    }

    fn embed(&self, embedder: &TractEmbedder, walk: &Silhouettes) -> Result<Vec<hstl::Embedding>> {
        self.starts(walk.frames())
            .into_iter()
            .map(|start| {
                let frames = &walk.as_slice()[start * CELLS..(start + self.frames) * CELLS];
                let clip = Silhouettes::from_f32(&[self.frames, 64, 44], frames)?;
                Ok(embedder.embed(&clip)?)
            })
            .collect()
    }
}

fn site_walks(
    dir: &Path,
    embedder: &TractEmbedder,
    windows: &Windows,
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
            let walk = Silhouettes::read_npy(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let embedded = windows.embed(embedder, &walk)?;
            if embedded.is_empty() {
                log::warn!(
                    "{}: {} frames, shorter than one window; skipped",
                    file.display(),
                    walk.frames()
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
    windows: &Windows,
) -> Result<Vec<LabelledWalk>> {
    let mut labelled = Vec::new();
    for subject in hstl::casia_b::parse_subjects(subjects)? {
        for walk in hstl::casia_b::read_subject(root, &subject, views)? {
            let embedded = windows.embed(embedder, &walk.silhouettes()?)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_walk_like_the_kiosk() {
        let w = Windows {
            frames: 30,
            hop: 15,
        };
        assert_eq!(w.starts(29), Vec::<usize>::new());
        assert_eq!(w.starts(30), [0]);
        assert_eq!(w.starts(60), [0, 15, 30]);
        assert_eq!(w.starts(70), [0, 15, 30, 40]);
    }
}
