//! The enrolment tool.
//! - `enrol add`: a person from one or more recorded walks, each cut into the kiosk's windows and
//!   embedded; refused when a walk is unusable, with a warning when the person is close to someone
//!   already enrolled.
//! - `enrol list`, `enrol remove` (erasure: templates and stored events in one transaction).
//! - With `--site URL` instead of `--gallery`, the same commands work on a site's database: people
//!   are enrolled once, with their access groups, and every door of those groups receives them;
//!   an erasure reaches every door. `enrol site ...` sets up the site: its schema, doors, groups.
//! - `enrol extract`: a walk's normalised silhouettes, and a contact sheet to check them by eye.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use access::gallery::{
    new_pseudonym, printable, Gallery, NewTemplate, SealedTemplate, TemplateKey,
};
use access::matcher::MatchIndex;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firmware_app::enrolment::{nearest_enrolled, templates_from_windows, walk_windows};
use hstl::files::check_output;
use hstl::network_args::NetworkArgs;
use hstl::streaming::StreamingEmbedder;
use hstl::{accepts, model_id, Backend, OperatingPoint, Precision};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array3;
use ndarray_npy::WriteNpyExt;
use silhouette::extract::{contact_sheet, extract_walks};
use silhouette::normalise::PRETREATED_SIZE;
use silhouette::source::{open_path, FrameSource};
use silhouette::{SilhouetteConfig, SilhouettePipeline};
use site::{SiteAdmin, SiteConfig, SiteEnrolment};

const CONTACT_SHEET_COLUMNS: u32 = 12;

#[derive(Parser)]
#[command(about = "Enrol people into a door kiosk's gallery")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the people are: a door's own gallery, or a site's database.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Where {
    /// A stand-alone door's gallery (SQLite).
    #[arg(long)]
    gallery: Option<PathBuf>,
    /// A site's database: `postgresql://ROLE@HOST/DB?sslrootcert=CA.pem&passfile=FILE` (libpq's
    /// settings; `sslcert=`/`sslkey=` for a client certificate, `sslmode=disable` on one host).
    #[arg(long)]
    site: Option<String>,
}

/// The people to work on, and the key of their templates.
#[derive(clap::Args)]
struct GalleryArgs {
    #[command(flatten)]
    place: Where,
    /// A file holding the 64-hex-digit template key (of an encrypted gallery; of the site, whose
    /// templates the station seals before they leave it).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

/// The people of a door or of a site.
enum People {
    Door(Gallery),
    Site(SiteAdmin),
}

impl GalleryArgs {
    /// The gallery or the site named.
    fn people(&self, create: bool) -> anyhow::Result<People> {
        match &self.place.site {
            Some(url) => Ok(People::Site(connect_site(url)?)),
            None => self.open(create).map(People::Door),
        }
    }

    fn key(&self) -> anyhow::Result<Option<TemplateKey>> {
        self.key_file
            .as_ref()
            .map(|path| {
                TemplateKey::read_file(path).with_context(|| format!("key file {}", path.display()))
            })
            .transpose()
    }

    /// Opens the gallery, creating it only when `create` (an enrolment); reading and erasing never
    /// create one, so a mistyped path is an error.
    fn open(&self, create: bool) -> anyhow::Result<Gallery> {
        let key = self.key()?;
        let path = self.place.gallery.as_deref().context("no --gallery")?;
        let opened = if create {
            Gallery::open(path, key.as_ref())
        } else {
            Gallery::open_existing(path, key.as_ref())
        };
        opened.with_context(|| format!("opening the gallery {}", path.display()))
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
        /// The model the kiosk runs, and the threads it runs on here.
        #[command(flatten)]
        network: NetworkArgs,
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
        /// With `--site`: an access group the person joins (repeat for several); they are let
        /// through every door of their groups.
        #[arg(long = "group", requires = "site")]
        groups: Vec<String>,
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
    /// Set up a site: its schema, its doors and access groups, who belongs to which group.
    Site {
        /// The site's database (as `--site` above), with the site owner's role.
        #[arg(long)]
        site: String,
        #[command(subcommand)]
        command: SiteCommand,
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

#[derive(Subcommand)]
enum SiteCommand {
    /// Create the site's schema, or migrate it to this build's.
    Migrate,
    /// Create an access group.
    Group {
        #[arg(long)]
        name: String,
    },
    /// Register a door whose kiosk logs in as the database role `role` (create the role first).
    Door {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        /// An access group let through this door (repeat for several).
        #[arg(long = "allow")]
        allow: Vec<String>,
    },
    /// Let an access group through a door.
    Allow {
        #[arg(long)]
        door: String,
        #[arg(long)]
        group: String,
    },
    /// Stop letting an access group through a door.
    Disallow {
        #[arg(long)]
        door: String,
        #[arg(long)]
        group: String,
    },
    /// Add someone enrolled to an access group.
    Join {
        #[arg(long)]
        name: String,
        #[arg(long)]
        group: String,
    },
    /// Take someone out of an access group.
    Leave {
        #[arg(long)]
        name: String,
        #[arg(long)]
        group: String,
    },
}

fn connect_site(url: &str) -> anyhow::Result<SiteAdmin> {
    let config = SiteConfig::from_url(url)?;
    SiteAdmin::connect(&config).with_context(|| format!("site {}", config.server()))
}

fn site_command(url: &str, command: SiteCommand) -> anyhow::Result<()> {
    if let SiteCommand::Migrate = command {
        let config = SiteConfig::from_url(url)?;
        let mut client = config.connect()?;
        let version = site::migrate(&mut client)?;
        println!("site {} at schema {version}", config.server());
        return Ok(());
    }
    let mut site = connect_site(url)?;
    match command {
        SiteCommand::Migrate => unreachable!("handled above"),
        SiteCommand::Group { name } => site.add_group(&name)?,
        SiteCommand::Door { name, role, allow } => {
            site.add_door(&name, &role)?;
            for group in allow {
                site.allow(&name, &group)?;
            }
        }
        SiteCommand::Allow { door, group } => site.allow(&door, &group)?,
        SiteCommand::Disallow { door, group } => site.disallow(&door, &group)?,
        SiteCommand::Join { name, group } => site.join(&name, &group)?,
        SiteCommand::Leave { name, group } => site.leave(&name, &group)?,
    }
    println!("done");
    Ok(())
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
            network: NetworkArgs { model, threads },
            background,
            warn_distance,
            append,
            credential,
            groups,
        } => add(
            &gallery,
            &name,
            &inputs,
            &hstl::model_or_shipped(model.as_deref()),
            background,
            warn_distance,
            append,
            credential,
            &groups,
            threads,
        ),
        Command::Credential {
            gallery,
            name,
            number,
            clear: _,
        } => {
            let credential = match gallery.people(false)? {
                People::Door(mut door) => door.set_credential(&name, number)?.credential,
                People::Site(mut site) => site.set_credential(&name, number)?.credential,
            };
            match credential {
                Some(number) => println!("{name} has credential number {number}"),
                None => println!("{name} has no credential number"),
            }
            Ok(())
        }
        Command::List { gallery } => list(&gallery),
        Command::Key { out } => write_key(&out),
        Command::Remove { gallery, name } => {
            match gallery.people(false)? {
                People::Door(mut door) => {
                    let erased = door.erase(&name)?;
                    println!(
                        "erased {name}: {} templates and {} stored events; the audit log refers to them as {}",
                        erased.templates, erased.events, erased.pseudonym
                    );
                }
                People::Site(mut site) => {
                    let erased = site.erase(&name)?;
                    println!(
                        "erased {name} at the site: {} templates and {} stored events; every door removes them at its next pull (seconds when online); audit logs refer to them as {}",
                        erased.templates, erased.events, erased.pseudonym
                    );
                }
            }
            Ok(())
        }
        Command::Site { site, command } => site_command(&site, command),
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
    groups: &[String],
    threads: usize,
) -> anyhow::Result<()> {
    let model_id = model_id(model)?;
    let mut people = gallery_args.people(!append)?;
    if let People::Door(gallery) = &people {
        gallery.check_model(&model_id)?;
    }
    if append && matches!(people, People::Site(_)) {
        bail!("--append works on a door's gallery only: at a site, erase and enrol again with every walk");
    }
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
    let embedder = StreamingEmbedder::load(model, Backend::Auto, threads, Precision::F32)?;
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
        let made = templates_from_windows(&embedder, &walk, &source_name, |done, total| {
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
        if let Some(damage) = &walk.damage {
            println!(
                "warning: {source_name}: {damage}: enrolled from the {} frames that could be read",
                walk.frames_read
            );
        }
        templates.extend(made);
    }
    let mut gallery = match people {
        People::Door(gallery) => gallery,
        People::Site(ref mut site) => {
            let key = gallery_args
                .key()?
                .context("--site needs --key-file: the site's template key, to seal the templates before they leave this station")?;
            return enrol_at_site(site, &key, name, credential, groups, &model_id, &templates);
        }
    };
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

/// Seals `templates` under the site's key for a new pseudonym and enrols them at the site.
fn enrol_at_site(
    site: &mut SiteAdmin,
    key: &TemplateKey,
    name: &str,
    credential: Option<u32>,
    groups: &[String],
    model_id: &str,
    templates: &[NewTemplate],
) -> anyhow::Result<()> {
    let pseudonym = new_pseudonym();
    let sealed = templates
        .iter()
        .map(|template| {
            Ok(SealedTemplate {
                parts: template.embedding.parts(),
                channels: template.embedding.channels(),
                frames: template.frames,
                source: template.source.clone(),
                sealed: key.seal_template(&pseudonym, model_id, &template.embedding)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let person = site.enrol(&SiteEnrolment {
        name: name.to_string(),
        pseudonym,
        credential,
        groups: groups.to_vec(),
        model_id: model_id.to_string(),
        templates: sealed,
        key_check: key.site_check(),
    })?;
    if person.groups.is_empty() {
        log::warn!(
            "{name} belongs to no access group: no door lets them through (`enrol site join`)"
        );
    }
    println!(
        "{} enrolled at the site with {} templates (pseudonym {}), groups: {}",
        person.name,
        person.templates,
        person.pseudonym,
        person.groups.join(", ")
    );
    Ok(())
}

fn list(gallery_args: &GalleryArgs) -> anyhow::Result<()> {
    let mut site = match gallery_args.people(false)? {
        People::Site(site) => site,
        People::Door(gallery) => return list_door(&gallery),
    };
    let people = site.people()?;
    println!("site: {} people", people.len());
    for person in people {
        println!(
            "{}  groups {}{}",
            person_line(
                &person.name,
                person.templates,
                &person.pseudonym,
                person.credential
            ),
            person.groups.join(","),
            window_note(person.window_templates, "erase and enrol again")
        );
    }
    Ok(())
}

/// What `enrol list` adds for someone holding templates of single windows, with what to do.
fn window_note(window_templates: usize, remedy: &str) -> String {
    if window_templates == 0 {
        return String::new();
    }
    format!(
        "  ({window_templates} window templates from before doors searched walks: not searched; {remedy})"
    )
}

/// One person as `enrol list` shows them, their name escaped for the terminal.
fn person_line(name: &str, templates: usize, pseudonym: &str, credential: Option<u32>) -> String {
    format!(
        "  {:<24} {templates:>3} templates  {pseudonym}  credential {}",
        printable(name),
        credential.map_or_else(|| "-".to_string(), |n| n.to_string())
    )
}

fn list_door(gallery: &Gallery) -> anyhow::Result<()> {
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
            "{}{}",
            person_line(
                &person.name,
                person.templates,
                &person.pseudonym,
                person.credential
            ),
            window_note(person.window_templates, "enrol again")
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
