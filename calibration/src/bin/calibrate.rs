//! `calibrate thresholds`: the kiosk's accept distance from labelled walks.
//!
//! Each walk is cut into the kiosk's windows and embedded; the searches of `open_set` give the DET
//! curve, the equal error rate and the threshold for a target FPIR, which can be written into
//! `kiosk.toml` (`[decision] accept_distance`) with the rest of the file left as it was.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use calibration::det_plot::write_det_png;
use calibration::open_set::{LabelledWalk, OpenSetRates};
use clap::{Parser, Subcommand};
use hstl::{Embedder, Silhouettes, TractEmbedder};

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
        /// Write the threshold into this kiosk configuration.
        #[arg(long)]
        config: Option<PathBuf>,
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
        config,
        threads,
    } = Cli::parse().command;
    if window == 0 || hop == 0 {
        bail!("--window and --hop must be at least 1");
    }
    let embedder = TractEmbedder::load(&model, threads)?;
    let windows = Windows {
        frames: window,
        hop,
    };
    let started = Instant::now();
    let labelled = match (walks, casia_b) {
        (Some(dir), _) => site_walks(&dir, &embedder, &windows)?,
        (None, Some(root)) => {
            casia_b_walks(&root, &subjects, views.as_deref(), &embedder, &windows)?
        }
        (None, None) => unreachable!("clap requires --walks or --casia-b"),
    };
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
    if let Some(path) = config {
        write_accept_distance(&path, operating.threshold)?;
        println!(
            "configuration:   {} [decision] accept_distance = {}",
            path.display(),
            operating.threshold
        );
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

/// Sets `[decision] accept_distance`, keeping every other line and comment of the file.
fn write_accept_distance(path: &Path, threshold: f32) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let decision = document
        .entry("decision")
        .or_insert_with(toml_edit::table)
        .as_table_mut()
        .with_context(|| format!("{}: `decision` is not a table", path.display()))?;
    // The shortest decimal that reads back as the same f32, not its widened binary value.
    let shortest: f64 = threshold
        .to_string()
        .parse()
        .expect("a float prints as a float");
    decision["accept_distance"] = toml_edit::value(shortest);
    let partial = path.with_extension("toml.partial");
    std::fs::write(&partial, document.to_string())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
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

    #[test]
    fn the_threshold_replaces_one_key_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiosk.toml");
        std::fs::write(
            &path,
            "# front door\ndoor = \"front\"\n\n[decision]\n# set on site\naccept_distance = 0.5\nmargin = 0.1\n",
        )
        .unwrap();
        write_accept_distance(&path, 0.25).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# front door\ndoor = \"front\"\n\n[decision]\n# set on site\naccept_distance = 0.25\nmargin = 0.1\n"
        );
        std::fs::write(&path, "door = [").unwrap();
        assert!(write_accept_distance(&path, 0.25).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "door = [");
    }
}
