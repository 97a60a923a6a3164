//! The enrolment tool.
//! - `enrol add`: a person from one or more recorded walks, each cut into the kiosk's windows and
//!   embedded; refused when a walk is unusable, with a warning when the person is close to someone
//!   already enrolled.
//! - `enrol list`, `enrol remove` (erasure: templates and stored events in one transaction).
//! - `enrol extract`: a walk's normalised silhouettes, and a contact sheet to check them by eye.

use std::path::{Path, PathBuf};

use access::gallery::{Gallery, TemplateKey};
use access::matcher::MatchIndex;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firmware_app::enrolment::{nearest_enrolled, templates_from_windows, walk_windows};
use hstl::files::check_output;
use hstl::{accepts, model_id, open_embedder, Backend, OperatingPoint, Precision};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array3;
use ndarray_npy::WriteNpyExt;
use silhouette::extract::{contact_sheet, extract_walks};
use silhouette::normalise::PRETREATED_SIZE;
use silhouette::source::{open_path, FrameSource};
use silhouette::{SilhouetteConfig, SilhouettePipeline};

const CONTACT_SHEET_COLUMNS: u32 = 12;

#[derive(Parser)]
#[command(about = "Enrol people into a door kiosk's gallery")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the gallery is and how to open it.
#[derive(clap::Args)]
struct GalleryArgs {
    #[arg(long)]
    gallery: PathBuf,
    /// A file holding the 64-hex-digit template key of an encrypted gallery.
    #[arg(long)]
    key_file: Option<PathBuf>,
}

impl GalleryArgs {
    /// Opens the gallery, creating it only when `create` (an enrolment); reading and erasing never
    /// create one, so a mistyped path is an error.
    fn open(&self, create: bool) -> anyhow::Result<Gallery> {
        let key = self
            .key_file
            .as_ref()
            .map(|path| {
                TemplateKey::read_file(path).with_context(|| format!("key file {}", path.display()))
            })
            .transpose()?;
        let opened = if create {
            Gallery::open(&self.gallery, key.as_ref())
        } else {
            Gallery::open_existing(&self.gallery, key.as_ref())
        };
        opened.with_context(|| format!("opening the gallery {}", self.gallery.display()))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Enrol a person from recordings of their walks (one walk per recording).
    Add {
        #[command(flatten)]
        gallery: GalleryArgs,
        #[arg(long)]
        name: String,
        /// A video file or image directory; repeat for several walks (three or more recommended).
        #[arg(long = "input", required = true)]
        inputs: Vec<PathBuf>,
        /// The ONNX model the kiosk runs.
        #[arg(long)]
        model: PathBuf,
        /// A recording of the empty scene to learn the background from first.
        #[arg(long)]
        background: Option<PathBuf>,
        /// Warn when the new person comes within this distance of someone enrolled (default: the
        /// model's calibrated accept distance).
        #[arg(long)]
        warn_distance: Option<f32>,
        /// Add the walks to someone already enrolled.
        #[arg(long)]
        append: bool,
        /// The number the door's access-control panel knows them by (their card number), sent to
        /// the panel when they are granted.
        #[arg(long)]
        credential: Option<u32>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Give someone enrolled the number the access-control panel knows them by, or take it away.
    Credential {
        #[command(flatten)]
        gallery: GalleryArgs,
        #[arg(long)]
        name: String,
        /// Their credential (card) number.
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        number: Option<u32>,
        /// Remove their credential number: the panel is no longer told about them.
        #[arg(long)]
        clear: bool,
    },
    /// List the people enrolled.
    List {
        #[command(flatten)]
        gallery: GalleryArgs,
    },
    /// Erase a person: every template and every stored event that names them.
    Remove {
        #[command(flatten)]
        gallery: GalleryArgs,
        #[arg(long)]
        name: String,
    },
    /// Write a new random template key (64 hex digits), readable by its owner only.
    Key {
        #[arg(long)]
        out: PathBuf,
    },
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

fn write_key(out: &Path) -> anyhow::Result<()> {
    TemplateKey::create_file(out).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            out.display()
        )
    })?;
    println!(
        "template key written to {} (mode 600); keep a copy somewhere safe",
        out.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Add {
            gallery,
            name,
            inputs,
            model,
            background,
            warn_distance,
            append,
            credential,
            threads,
        } => add(
            &gallery,
            &name,
            &inputs,
            &model,
            background,
            warn_distance,
            append,
            credential,
            threads,
        ),
        Command::Credential {
            gallery,
            name,
            number,
            clear: _,
        } => {
            let person = gallery.open(false)?.set_credential(&name, number)?;
            match person.credential {
                Some(number) => println!("{name} has credential number {number}"),
                None => println!("{name} has no credential number"),
            }
            Ok(())
        }
        Command::List { gallery } => list(&gallery),
        Command::Key { out } => write_key(&out),
        Command::Remove { gallery, name } => {
            let erased = gallery.open(false)?.erase(&name)?;
            println!(
                "erased {name}: {} templates and {} stored events; the audit log refers to them as {}",
                erased.templates, erased.events, erased.pseudonym
            );
            Ok(())
        }
        Command::Extract {
            input,
            output,
            contact_sheet: sheet,
            background,
        } => extract(input, output, sheet, background),
    }
}

#[allow(clippy::too_many_arguments)]
fn add(
    gallery_args: &GalleryArgs,
    name: &str,
    inputs: &[PathBuf],
    model: &Path,
    background: Option<PathBuf>,
    warn_distance: Option<f32>,
    append: bool,
    credential: Option<u32>,
    threads: usize,
) -> anyhow::Result<()> {
    let mut gallery = gallery_args.open(!append)?;
    let model_id = model_id(model)?;
    gallery.check_model(&model_id)?;
    let warn_distance = match warn_distance {
        Some(distance) => Some(distance),
        None => OperatingPoint::load_for(model, &model_id)?.map(|p| p.accept_distance),
    };
    if warn_distance.is_none() {
        log::warn!(
            "{} has no calibrated operating point: nobody can tell yet whether {name} is too close to someone enrolled",
            model.display()
        );
    }
    // Templates are made in f32 whatever arithmetic a door runs: they are what every probe is
    // measured against.
    let embedder = open_embedder(model, Backend::Auto, threads, Precision::F32)?;
    let config = SilhouetteConfig::default();
    let mut templates = Vec::new();
    for input in inputs {
        let mut source =
            open_path(input).with_context(|| format!("opening {}", input.display()))?;
        let mut empty = background
            .as_ref()
            .map(|b| open_path(b).with_context(|| format!("opening {}", b.display())))
            .transpose()?;
        let mut pipeline = SilhouettePipeline::new(config.clone());
        let empty_scene = empty.as_mut().map(|e| e.as_mut() as &mut dyn FrameSource);
        let walk = walk_windows(&mut pipeline, empty_scene, source.as_mut())
            .with_context(|| format!("reading {}", input.display()))?;
        let source_name = input.display().to_string();
        let progress = ProgressBar::new(walk.windows.len() as u64).with_style(
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} windows, {eta} left")
                .expect("a valid template"),
        );
        progress.set_message(source_name.clone());
        let made =
            templates_from_windows(embedder.as_ref(), &walk, &source_name, |done, total| {
                progress.set_length(total as u64);
                progress.set_position(done as u64);
            })?;
        progress.finish_and_clear();
        println!(
            "{source_name}: {} frames, {} usable windows (refused: {}), {} templates",
            walk.frames_read,
            walk.windows.len(),
            walk.refusals(),
            made.len()
        );
        templates.extend(made);
    }
    let index = MatchIndex::from_gallery(&gallery, embedder.embedding_shape(), threads)?;
    if let Some((identity, distance)) = nearest_enrolled(&index, &templates)? {
        let other = &index.identity(identity).name;
        if let Some(warn) = warn_distance.filter(|&w| other != name && accepts(distance, w)) {
            log::warn!(
                "{name} comes within {distance:.4} of {other} (accept distance {warn:.4}): the kiosk may confuse them"
            );
        }
    }
    let person = if append {
        gallery.add_templates(name, &model_id, &templates)?;
        match credential {
            Some(number) => gallery.set_credential(name, Some(number))?,
            None => gallery.person(name)?,
        }
    } else {
        gallery.enrol_with_credential(name, credential, &model_id, &templates)?
    };
    println!(
        "{} enrolled with {} templates (pseudonym {})",
        person.name, person.templates, person.pseudonym
    );
    Ok(())
}

fn list(gallery_args: &GalleryArgs) -> anyhow::Result<()> {
    let gallery = gallery_args.open(false)?;
    let people = gallery.people()?;
    println!(
        "{}: {} people, model {}{}",
        gallery.path().display(),
        people.len(),
        gallery.model_id()?.unwrap_or_else(|| "-".into()),
        if gallery.is_encrypted() {
            ", templates encrypted"
        } else {
            ""
        }
    );
    for person in people {
        println!(
            "  {:<24} {:>3} templates  {}  credential {}",
            person.name,
            person.templates,
            person.pseudonym,
            person
                .credential
                .map_or_else(|| "-".to_string(), |n| n.to_string())
        );
    }
    Ok(())
}

fn extract(
    input: PathBuf,
    output: PathBuf,
    sheet: Option<PathBuf>,
    background: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut inputs = vec![input.as_path()];
    inputs.extend(background.as_deref());
    check_output(&output, &inputs)?;
    if let Some(sheet) = &sheet {
        check_output(sheet, &inputs)?;
    }
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
            "walk {}: frames {}..={}, {} silhouettes, rejected {:?}, walking person: {}",
            walk.track,
            walk.first_frame,
            walk.last_frame,
            walk.silhouettes.len(),
            walk.rejections,
            walk.walking
                .map_or_else(|reason| format!("no, {reason}"), |()| "yes".into())
        );
    }
    let Some(walk) = extraction.main_walk().filter(|w| !w.silhouettes.is_empty()) else {
        bail!(
            "{}: no walker found in {} frames",
            input.display(),
            extraction.frames_read
        );
    };
    if let Err(reason) = walk.walking {
        bail!(
            "{}: no walking person in {} frames: the longest track (walk {}) is {reason}",
            input.display(),
            extraction.frames_read,
            walk.track
        );
    }
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
