//! `calibrate thresholds`: the kiosk's accept distance from labelled walks; `calibrate quantize`:
//! an int8 model from a float one and representative walks.
//!
//! Each walk is cut into the kiosk's windows and embedded; the searches of `open_set` give the DET
//! curve, the equal error rate and the accept distance for a target FPIR, which `--save` keeps
//! beside the model as its operating point (`MODEL.onnx.operating-point.json`): the distance every
//! door running that model starts from, and may only tighten.

#![forbid(unsafe_code)]

mod embedded_walks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use access::decision::DecisionConfig;
use anyhow::{bail, Context, Result};
use calibration::cohort::CohortNormalisation;
use calibration::det_plot::{write_det_png, DetCurve};
use calibration::open_set::{
    equal_error_point, GalleryTemplates, LabelledWalk, OpenSetPoint, OpenSetRates, Prefix,
};
use calibration::quantize::{
    mean_pairwise_distance, ActivationObserver, Drift, ObserverKind, Reservoir,
};
use calibration::walk_level::{WalkLevelPoint, WalkLevelRates};
use clap::{Args, Parser, Subcommand};
use hstl::network_args::NetworkArgs;
use hstl::onnx_graph::{encode_model, write_model, ExportOptions, CONVOLUTION_INPUT_SUFFIX};
use hstl::streaming::StreamingEmbedder;
use hstl::{
    model_id, Embedder, Embedding, OperatingPoint, Orientation, Silhouettes, TractEmbedder, Weights,
};
use image::GrayImage;
use ndarray::Array3;
use silhouette::normalise::PRETREATED_SIZE;
use silhouette::windows::{cut_walk, Window, WindowConfig, WindowQuality};
use walk_embedding::{network_input, WalkSoFar};

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
        #[command(flatten)]
        network: NetworkArgs,
        #[command(flatten)]
        walks: Walks,
        /// CASIA-B subjects searched (the test subjects by default).
        #[arg(long, default_value = "075-124")]
        subjects: String,
        /// Walks per person enrolled; the others are searched.
        #[arg(long, default_value_t = 1)]
        gallery_walks: usize,
        /// What each enrolled walk leaves in the gallery: `every-prefix` (the walk so far after each
        /// window: what `enrol add` keeps), `whole-walks`, `mean-of-walks` or
        /// `whole-walks-and-mean`; the others are for measuring what enrolment should keep. Several,
        /// comma-separated, are each measured on the same walks (the point, the plot and `--save`
        /// then follow the last).
        #[arg(long, default_value = "every-prefix", value_parser = parse_templates, value_delimiter = ',')]
        templates: Vec<GalleryTemplates>,
        /// The door's policy replayed over each walk: consecutive searches that must agree to grant
        /// (the kiosk's default unless given; the point then describes doors set so).
        #[arg(long)]
        consensus_windows: Option<usize>,
        /// ... and consecutive unknown searches that deny before a walk ends.
        #[arg(long)]
        unknown_windows: Option<usize>,
        /// Keep the walks' embeddings in this file, and read them from it when it was written for
        /// this model and these walks: measuring the same walks again needs no network.
        #[arg(long)]
        embedded_walks: Option<PathBuf>,
        /// Score every search by adaptive S-norm against this cohort (a file of `--embedded-walks`
        /// made by the same model from people never enrolled, e.g. training subjects) before the
        /// policy sees it: for measuring whether normalisation pays; the door does not normalise,
        /// so such a point cannot be saved.
        #[arg(long, conflicts_with = "save")]
        cohort: Option<PathBuf>,
        /// With `--cohort`: cohort walks each side of a comparison is measured against.
        #[arg(long, default_value_t = 100, requires = "cohort")]
        cohort_nearest: usize,
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
        /// With `--save`, for a shipped model's copy: allow a point looser than the shipped one.
        /// The point records it, and every door that runs it says so at each start.
        #[arg(long, requires = "save")]
        looser_than_shipped: bool,
        /// With `--save`: the template key file of the doors that will run the point. The point
        /// is sealed with it; a door holding a key runs no point that is not sealed with its key.
        #[arg(long, requires = "save")]
        key_file: Option<PathBuf>,
    },
    /// An int8 QDQ model from a float one: per-channel int8 weights and, for every 3-D convolution,
    /// an input scale observed on representative walks.
    Quantize {
        /// The float model (written by `hstl export`) and the threads it runs on.
        #[command(flatten)]
        network: NetworkArgs,
        /// Representative walks.
        #[command(flatten)]
        walks: Walks,
        /// CASIA-B subjects to observe: training subjects, never the test subjects 075-124.
        #[arg(long, default_value = "001-004")]
        subjects: String,
        /// How an activation's range becomes its scale: `minmax`, `mse` or `percentile:P`.
        #[arg(long, default_value = "mse", value_parser = parse_observer)]
        observer: ObserverKind,
        /// Convolutions left in float, by node name, comma-separated (those `--sensitivity` shows
        /// cost the most).
        #[arg(long, value_delimiter = ',')]
        keep_float: Vec<String>,
        /// Also measure, on this many of the windows (a fixed random sample; 64 is plenty), how far
        /// each convolution alone in int8 moves the embedding from the float one, and how far the
        /// model written does.
        #[arg(long, value_name = "WINDOWS")]
        sensitivity: Option<usize>,
        /// Where the int8 model goes.
        #[arg(long)]
        out: PathBuf,
    },
    /// Seals a model's operating point as it stands with the doors' template key: for a point saved
    /// before points were sealed (a door that holds a key runs no other). The point is checked as
    /// a door checks it first; nothing else of it changes.
    Seal {
        /// The model whose operating point is sealed.
        #[arg(long)]
        model: PathBuf,
        /// The doors' template key file.
        #[arg(long)]
        key_file: PathBuf,
    },
}

/// Labelled walks: a site's folders or CASIA-B.
#[derive(Args)]
struct Walks {
    /// One folder per person holding their walks as silhouette files (`enrol extract` output,
    /// uint8 [T,64,64] .npy). Walks are taken in file-name order.
    #[arg(long, conflicts_with = "casia_b", required_unless_present = "casia_b")]
    walks: Option<PathBuf>,
    /// Or CASIA-B silhouettes (bit-packed archive or OpenGait pickles), one person per subject.
    #[arg(long = "casia-b")]
    casia_b: Option<PathBuf>,
    /// CASIA-B views to use, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    views: Option<Vec<String>>,
}

impl Walks {
    fn source<'a>(&'a self, subjects: &'a str) -> WalkSource<'a> {
        match (&self.walks, &self.casia_b) {
            (Some(dir), _) => WalkSource::Site(dir),
            (None, Some(root)) => WalkSource::CasiaB {
                root,
                subjects,
                views: self.views.as_deref(),
            },
            (None, None) => unreachable!("clap requires --walks or --casia-b"),
        }
    }
}

fn parse_templates(text: &str) -> std::result::Result<GalleryTemplates, String> {
    GalleryTemplates::NAMED
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| {
            let names: Vec<&str> = GalleryTemplates::NAMED.iter().map(|(n, _)| *n).collect();
            format!("`{text}`: expected one of {}", names.join(", "))
        })
}

fn parse_observer(text: &str) -> std::result::Result<ObserverKind, String> {
    match text {
        "minmax" => Ok(ObserverKind::MinMax),
        "mse" => Ok(ObserverKind::Mse),
        _ => text
            .strip_prefix("percentile:")
            .and_then(|p| p.parse::<f32>().ok())
            .map(ObserverKind::Percentile)
            .ok_or_else(|| {
                format!("`{text}`: expected minmax, mse or percentile:P (say percentile:99.99)")
            }),
    }
}

/// What `calibrate quantize` was asked for.
struct QuantizeRequest<'a> {
    model: &'a Path,
    source: WalkSource<'a>,
    observer: ObserverKind,
    keep_float: &'a [String],
    sensitivity: Option<usize>,
    out: &'a Path,
    threads: usize,
}

/// Observes every 3-D convolution's input over the walks' windows and writes the int8 model.
fn quantize(request: QuantizeRequest) -> Result<()> {
    let QuantizeRequest {
        model,
        ref source,
        observer,
        keep_float,
        sensitivity,
        out,
        threads,
    } = request;
    let mut inputs = vec![model];
    if let WalkSource::Site(dir) = source {
        inputs.push(dir);
    }
    hstl::files::check_output(out, &inputs)?;
    ActivationObserver::new(observer)?;
    let weights = Weights::from_onnx(model)?;
    // The int8 model sees walks as the float one does.
    let orientation = Orientation::of_model(model)?;
    let probe_options = ExportOptions {
        convolution_inputs: true,
        orientation,
        ..ExportOptions::default()
    };
    let probe = encode_model(&weights, &probe_options)?;
    let probe = TractEmbedder::from_bytes(&probe, "convolution inputs", threads)?;
    let mut observers: BTreeMap<String, ActivationObserver> = BTreeMap::new();
    let mut observed = 0usize;
    let mut sample = Reservoir::new(sensitivity.unwrap_or(0));
    source.visit(&WindowConfig::default(), |_, _, _, windows| {
        for window in &windows {
            let input = network_input(window, probe.orientation())?;
            let input = &input;
            sample.offer(|| input.clone());
            for (name, _, values) in probe.run_all_outputs(input)? {
                if let Some(convolution) = name.strip_suffix(CONVOLUTION_INPUT_SUFFIX) {
                    observers
                        .entry(convolution.to_string())
                        .or_insert_with(|| {
                            ActivationObserver::new(observer).expect("checked above")
                        })
                        .observe(&values)
                        .with_context(|| format!("observing the input of {convolution}"))?;
                }
            }
            observed += 1;
        }
        Ok(())
    })?;
    if observed == 0 {
        bail!(
            "{}: no window of a walking person to observe (an empty or all-black calibration set?)",
            source.describe()
        );
    }
    if let Some(unknown) = keep_float.iter().find(|c| !observers.contains_key(*c)) {
        bail!(
            "--keep-float {unknown}: the model has no such 3-D convolution (it has {})",
            observers.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let mut scales = BTreeMap::new();
    for (convolution, o) in &observers {
        let scale = o
            .scale()
            .with_context(|| format!("the input of {convolution}"))?;
        println!(
            "{convolution:<16} clip at {:.5} (scale {scale:.3e}){}",
            o.threshold()?,
            if keep_float.contains(convolution) {
                ", kept in float"
            } else {
                ""
            }
        );
        scales.insert(convolution.clone(), scale);
    }
    let int8_convolutions: BTreeMap<String, f32> = scales
        .iter()
        .filter(|(c, _)| !keep_float.contains(c))
        .map(|(c, s)| (c.clone(), *s))
        .collect();
    if sensitivity.is_some() {
        report_sensitivity(
            model,
            &weights,
            &scales,
            &int8_convolutions,
            &sample.into_items(),
            threads,
        )?;
    }
    let int8_count = int8_convolutions.len();
    let options = ExportOptions {
        int8_convolutions,
        orientation,
        ..ExportOptions::default()
    };
    write_model(&weights, &options, out)?;
    println!(
        "{}: {int8_count} convolutions in int8 ({observer:?} over {observed} windows of {}), {} bytes",
        out.display(),
        source.describe(),
        std::fs::metadata(out).map(|m| m.len()).unwrap_or(0)
    );
    Ok(())
}

/// Prints how far the embedding moves from the float model's, over `sample`, with each convolution
/// alone in int8 and with the model about to be written: the measurement `--keep-float` is chosen
/// from, in the reference distance and, where the float model has an operating point, as a share
/// of its accept distance.
fn report_sensitivity(
    model: &Path,
    weights: &Weights,
    scales: &BTreeMap<String, f32>,
    written: &BTreeMap<String, f32>,
    sample: &[Silhouettes],
    threads: usize,
) -> Result<()> {
    let float = TractEmbedder::load(model, threads)?;
    let reference = sample
        .iter()
        .map(|window| Ok(float.embed(window)?))
        .collect::<Result<Vec<Embedding>>>()?;
    let accept_distance =
        OperatingPoint::load_for(model, &model_id(model)?)?.map(|point| point.accept_distance);
    let drift_of = |int8_convolutions: BTreeMap<String, f32>| -> Result<Drift> {
        let options = ExportOptions {
            int8_convolutions,
            ..ExportOptions::default()
        };
        let trial = encode_model(weights, &options)?;
        let trial = TractEmbedder::from_bytes(&trial, "sensitivity trial", threads)?;
        let mut drift = Drift::default();
        for (window, float) in sample.iter().zip(&reference) {
            drift.add(float, &trial.embed(window)?)?;
        }
        Ok(drift)
    };
    let share = |distance: f32| {
        accept_distance.map_or(String::new(), |accept| {
            format!("  {:>6.2} %", 100.0 * distance / accept)
        })
    };
    println!(
        "sensitivity over {} windows, whose float embeddings lie {:.5} apart on average: distance of the embedding from the float one{}",
        sample.len(),
        mean_pairwise_distance(&reference)?,
        if accept_distance.is_some() {
            " (mean, largest, mean as a share of the accept distance)"
        } else {
            " (mean, largest; no operating point beside the model for a share of the accept distance)"
        }
    );
    for (convolution, scale) in scales {
        let drift = drift_of(BTreeMap::from([(convolution.clone(), *scale)]))?;
        println!(
            "  {convolution:<16} alone in int8  {:.5}  {:.5}{}",
            drift.mean(),
            drift.largest(),
            share(drift.mean())
        );
    }
    let drift = drift_of(written.clone())?;
    println!(
        "  the model written ({} in int8)  {:.5}  {:.5}{}",
        written.len(),
        drift.mean(),
        drift.largest(),
        share(drift.mean())
    );
    Ok(())
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        thresholds @ Command::Thresholds { .. } => calibrate_thresholds(thresholds),
        Command::Quantize {
            network: NetworkArgs { model, threads },
            walks,
            subjects,
            observer,
            keep_float,
            sensitivity,
            out,
        } => quantize(QuantizeRequest {
            model: &hstl::model_or_shipped(model.as_deref()),
            source: walks.source(&subjects),
            observer,
            keep_float: &keep_float,
            sensitivity,
            out: &out,
            threads,
        }),
        Command::Seal { model, key_file } => seal(&model, &key_file),
    }
}

fn seal(model: &Path, key_file: &Path) -> Result<()> {
    let key = access::gallery::TemplateKey::read_file(key_file)
        .with_context(|| format!("key file {}", key_file.display()))?;
    let point = OperatingPoint::load_for(model, &model_id(model)?)?.with_context(|| {
        format!(
            "{} has no operating point to seal: calibrate it (`calibrate thresholds --save --key-file`)",
            model.display()
        )
    })?;
    // What is sealed is vouched for from now on: the installer sees it.
    println!(
        "accept distance {} for FPIR {} (measured FPIR {}, FNIR {}; {} non-mated searches), measured on {}",
        point.accept_distance,
        point.target_fpir,
        point.fpir,
        point.fnir,
        point.non_mated_searches,
        point.measured_on
    );
    let path = point.sealed(&key.operating_point_key()).save_for(model)?;
    println!(
        "operating point: {} (sealed with the doors' key)",
        path.display()
    );
    Ok(())
}

fn calibrate_thresholds(command: Command) -> Result<()> {
    let Command::Thresholds {
        network: NetworkArgs { model, threads },
        walks,
        subjects,
        gallery_walks,
        templates,
        consensus_windows,
        unknown_windows,
        embedded_walks,
        cohort,
        cohort_nearest,
        window,
        hop,
        target_fpir,
        plot,
        save,
        looser_than_shipped,
        key_file,
    } = command
    else {
        unreachable!("called for `thresholds`")
    };
    let seal_key = key_file
        .as_deref()
        .map(|path| {
            access::gallery::TemplateKey::read_file(path)
                .with_context(|| format!("key file {}", path.display()))
        })
        .transpose()?
        .map(|key| key.operating_point_key());
    if save && model.is_none() {
        bail!(
            "--save needs --model: the shipped model's operating point is the project's; calibrate a copy of the model for a site (and run the kiosk on that copy)"
        );
    }
    let model = hstl::model_or_shipped(model.as_deref());
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
        inputs.extend(walks.walks.as_deref());
        hstl::files::check_output(plot, &inputs)?;
    }
    let defaults_policy = DecisionConfig::default();
    let policy = DecisionConfig {
        consensus_windows: consensus_windows.unwrap_or(defaults_policy.consensus_windows),
        unknown_windows: unknown_windows.unwrap_or(defaults_policy.unknown_windows),
        ..defaults_policy
    };
    policy
        .check()
        .map_err(|e| anyhow::anyhow!("the policy replayed: {e}"))?;
    let started = Instant::now();
    let source = walks.source(&subjects);
    let data = source.describe();
    let made_from = format!(
        "model {}; {data}; windows of {} frames every {}",
        model_id(&model)?,
        windows.frames,
        windows.hop
    );
    let labelled = match &embedded_walks {
        Some(path) if path.exists() => embedded_walks::read(path, &made_from)?,
        _ => {
            let embedder = StreamingEmbedder::load_tract(&model, threads)?;
            let labelled = labelled_walks(&source, &embedder, &windows)?;
            if let Some(path) = &embedded_walks {
                embedded_walks::write(path, &made_from, &labelled)?;
            }
            labelled
        }
    };
    let kiosk_windows = windows == defaults;
    let embedded: usize = labelled.iter().map(|w| w.prefixes.len()).sum();
    log::info!(
        "{} walks, {embedded} windows embedded in {:.0} s",
        labelled.len(),
        started.elapsed().as_secs_f64()
    );
    let cohort = cohort
        .map(|path| -> Result<CohortNormalisation> {
            let walks = embedded_walks::read_cohort(&path, &model_id(&model)?)?;
            let cohort = CohortNormalisation::new(&walks, cohort_nearest)
                .with_context(|| format!("the cohort of {}", path.display()))?;
            println!(
                "normalised:      adaptive S-norm against the {} nearest of {} cohort walks ({})",
                cohort.nearest(),
                cohort.len(),
                path.display()
            );
            Ok(cohort)
        })
        .transpose()?;
    let Some((&last, others)) = templates.split_last() else {
        bail!("--templates names nothing to measure");
    };
    let measure = |templates| {
        measure_templates(
            &labelled,
            gallery_walks,
            templates,
            &policy,
            cohort.as_ref(),
            target_fpir,
        )
    };
    for &templates in others {
        measure(templates)?;
    }
    let templates = last;
    let (walk_ups, curve, equal_error, operating) = measure(templates)?;
    let measured_on = format!(
        "{data}; {gallery_walks} enrolled walk(s) per person (templates: {}); {}windows of {} frames every {}{}; walk-level: rates per walk-up, the door's policy (relative margin {}, {} consecutive searches to grant, {} to deny) replayed over the searches of the walk so far after each window",
        templates.name(),
        if kiosk_windows { "the kiosk's " } else { "" },
        windows.frames,
        windows.hop,
        if kiosk_windows { "" } else { " (not the kiosk's)" },
        policy.relative_margin,
        policy.consensus_windows,
        policy.unknown_windows,
    );
    println!("measured on:     {measured_on}");
    println!("accept distance: {}", operating.rates.threshold);
    if walk_ups.fpir_resolution() > target_fpir {
        println!(
            "warning:         {} non-mated walk-ups resolve FPIR only in steps of {:.4}: the target needs at least {} for a measured rate",
            walk_ups.non_mated_walks(),
            walk_ups.fpir_resolution(),
            (1.0 / target_fpir).ceil()
        );
    }
    if let Some(path) = plot {
        let det = DetCurve {
            points: &curve,
            mated: walk_ups.mated_walks(),
            non_mated: walk_ups.non_mated_walks(),
            trials: "walk-ups",
        };
        write_det_png(&path, &det, equal_error, operating.rates, target_fpir)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("DET curve:       {}", path.display());
    }
    if save {
        let operating = operating.rates;
        if operating.fnir >= 1.0 {
            bail!(
                "no accept distance keeps FPIR at or under {target_fpir} and grants anyone enrolled (FNIR 100 %): the model cannot tell these people apart at that rate; nothing was saved"
            );
        }
        let needed = OperatingPoint::searches_needed(target_fpir);
        if walk_ups.non_mated_walks() < needed {
            bail!(
                "{} non-mated walk-ups cannot show FPIR {target_fpir}: a point for it needs at least {needed} (record more walks of people who are not enrolled); nothing was saved",
                walk_ups.non_mated_walks()
            );
        }
        let model_id = model_id(&model)?;
        let shipped = hstl::shipped::shipped_point(&model_id)
            .map(|point| point.accept_distance)
            .filter(|&shipped| operating.threshold > shipped);
        if let (Some(shipped), false) = (shipped, looser_than_shipped) {
            bail!(
                "accept distance {} is looser than the {shipped} this model was shipped with: give --looser-than-shipped to save it anyway (every door that runs it will say so at each start); nothing was saved",
                operating.threshold
            );
        }
        let point = OperatingPoint {
            model_id,
            accept_distance: operating.threshold,
            target_fpir,
            fpir: operating.fpir,
            fnir: operating.fnir,
            mated_searches: walk_ups.mated_walks(),
            non_mated_searches: walk_ups.non_mated_walks(),
            measured_on,
            looser_than_shipped: shipped,
            seal: None,
        };
        let point = match &seal_key {
            Some(key) => point.sealed(key),
            None => {
                println!(
                    "warning:         the point is not sealed (no --key-file): doors that hold a template key will refuse it"
                );
                point
            }
        };
        let path = point.save_for(&model)?;
        println!(
            "operating point: {}{}",
            path.display(),
            if seal_key.is_some() {
                " (sealed with the doors' key)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// The walk-ups' rates with `templates` in the gallery, printed beside the per-search ones: the
/// walk-level rates, their curve, equal error and the point for `target_fpir`.
fn measure_templates(
    labelled: &[LabelledWalk],
    gallery_walks: usize,
    templates: GalleryTemplates,
    policy: &DecisionConfig,
    cohort: Option<&CohortNormalisation>,
    target_fpir: f64,
) -> Result<(
    WalkLevelRates,
    Vec<OpenSetPoint>,
    OpenSetPoint,
    WalkLevelPoint,
)> {
    println!("templates:       {}", templates.name());
    let searches = OpenSetRates::leave_one_out(labelled, gallery_walks, templates)?;
    let search_equal_error = searches.equal_error_rate();
    let search_operating = searches.threshold_for_fpir(target_fpir)?;
    let walk_ups = match cohort {
        None => WalkLevelRates::leave_one_out(labelled, gallery_walks, templates, policy.clone())?,
        Some(cohort) => WalkLevelRates::leave_one_out_normalised(
            labelled,
            gallery_walks,
            templates,
            policy.clone(),
            cohort,
        )?,
    };
    let curve = walk_ups.curve();
    let equal_error = equal_error_point(&curve).expect("walk-level rates have a curve");
    let operating = walk_ups.threshold_for_fpir(target_fpir)?;
    println!(
        "{:<16} {} mated ({} nearest someone else), {} non-mated; equal error {:.2} % at {:.6}; FPIR <= {target_fpir}: FNIR {:.2} % (FPIR {:.4}) at {}",
        if cohort.is_some() {
            "per search, raw:"
        } else {
            "per search:"
        },
        searches.mated_searches(),
        searches.rank1_misses(),
        searches.non_mated_searches(),
        100.0 * search_equal_error.fpir,
        search_equal_error.threshold,
        100.0 * search_operating.fnir,
        search_operating.fpir,
        search_operating.threshold
    );
    println!(
        "walk-ups:        {} mated, {} non-mated",
        walk_ups.mated_walks(),
        walk_ups.non_mated_walks()
    );
    println!(
        "equal error:     {:.2} % at distance {:.6}",
        100.0 * equal_error.fpir,
        equal_error.threshold
    );
    let report = |label: &str, point: &WalkLevelPoint| {
        let frames = |quantile| {
            point
                .frames_to_grant_quantile(quantile)
                .map_or("-".to_string(), |f| f.to_string())
        };
        println!(
            "{label:<16} FNIR {:.2} % (FPIR {:.4}: {} strangers and {} enrolled people granted as someone else) at distance {}; frames to a grant: median {}, 95th percentile {}",
            100.0 * point.rates.fnir,
            point.rates.fpir,
            point.strangers_granted,
            point.granted_as_someone_else,
            point.rates.threshold,
            frames(0.5),
            frames(0.95),
        )
    };
    report(&format!("FPIR <= {target_fpir}:"), &operating);
    for reported in REPORTED_FPIR.into_iter().filter(|&f| f != target_fpir) {
        report(
            &format!("FPIR <= {reported}:"),
            &walk_ups.threshold_for_fpir(reported)?,
        );
    }
    Ok((walk_ups, curve, equal_error, operating))
}

/// Walk-level FPIRs reported beside the target: NIST's access-control point and a stricter one.
const REPORTED_FPIR: [f64; 2] = [0.003, 0.001];

/// The windows the kiosk would decide on for one walk of `[T, 64, 64]` uint8 silhouettes: cut by
/// the kiosk's own windowing; windows the kiosk would call poor quality are left out, as it leaves
/// them out of its votes and its walks.
fn walk_windows(windows: &WindowConfig, frames: usize, pixels: &[u8]) -> Vec<Window> {
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
        .collect()
}

/// Where labelled walks come from.
enum WalkSource<'a> {
    /// One folder per person of `.npy` walks (`enrol extract` output).
    Site(&'a Path),
    /// CASIA-B subjects, one person each.
    CasiaB {
        root: &'a Path,
        subjects: &'a str,
        views: Option<&'a [String]>,
    },
}

impl WalkSource<'_> {
    fn describe(&self) -> String {
        match self {
            WalkSource::Site(dir) => format!("site walks in {}", dir.display()),
            WalkSource::CasiaB {
                subjects, views, ..
            } => format!(
                "CASIA-B subjects {subjects}, views {} (each view a door of its own: enrolled from normal walks, searched within the view)",
                views.map_or("all".into(), |v| v.join(","))
            ),
        }
    }

    /// Calls `visit(person, camera, walk, windows)` for every walk, with the kiosk's windows of it.
    /// A site's walks are all its door camera's; each CASIA-B view is a camera of its own.
    /// (Silhouettes without their frames say nothing of the way their walker went, so no window of
    /// them is mirrored.)
    fn visit(
        &self,
        windows: &WindowConfig,
        mut visit: impl FnMut(&str, &str, &str, Vec<Window>) -> Result<()>,
    ) -> Result<()> {
        match *self {
            WalkSource::Site(dir) => {
                let people = sorted_entries(dir, |p| p.is_dir())?;
                if people.is_empty() {
                    bail!(
                        "{}: no walks found (expected PERSON/WALK.npy)",
                        dir.display()
                    );
                }
                for person_dir in people {
                    let person = person_dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let files =
                        sorted_entries(&person_dir, |p| p.extension().is_some_and(|x| x == "npy"))?;
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
                        let cut = walk_windows(windows, frames, pixels);
                        visit(&person, SITE_CAMERA, &file.display().to_string(), cut)?;
                    }
                }
            }
            WalkSource::CasiaB {
                root,
                subjects,
                views,
            } => {
                for subject in hstl::casia_b::parse_subjects(subjects)? {
                    let mut walks = hstl::casia_b::read_subject(root, &subject, views)?;
                    // People are enrolled from normal walks, as at a door: nm-01.. come first.
                    walks.sort_by_key(|walk| !walk.condition.starts_with("nm-"));
                    for walk in walks {
                        let cut = walk_windows(windows, walk.frames(), walk.pixels());
                        let name = format!("{subject} {} {}", walk.condition, walk.view);
                        visit(&subject, &walk.view, &name, cut)?;
                    }
                    log::info!("subject {subject} read");
                }
            }
        }
        Ok(())
    }
}

/// The one camera of a site's own recordings: its door's.
const SITE_CAMERA: &str = "door";

/// The entries of `dir` that `keep` keeps, in name order.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| keep(p))
        .collect();
    entries.sort();
    Ok(entries)
}

/// Every walk streamed as the door streams it, labelled by person: the walk so far after each of
/// its windows (what the door searches, and what enrolment keeps as templates); walks with no window
/// to decide on are skipped.
fn labelled_walks(
    source: &WalkSource,
    embedder: &StreamingEmbedder,
    windows: &WindowConfig,
) -> Result<Vec<LabelledWalk>> {
    let mut labelled = Vec::new();
    source.visit(windows, |person, camera, walk, cut| {
        if cut.is_empty() {
            log::warn!("{walk}: gives the kiosk no window good enough to decide on; skipped");
            return Ok(());
        }
        let mut so_far = WalkSoFar::new(embedder);
        let prefixes = cut
            .iter()
            .map(|window| {
                Ok(Prefix {
                    embedding: so_far.take(window)?,
                    frames: so_far.frames(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        labelled.push(LabelledWalk {
            person: person.to_string(),
            camera: camera.to_string(),
            prefixes,
        });
        Ok(())
    })?;
    if labelled.is_empty() {
        bail!("{}: no walk gives a window to decide on", source.describe());
    }
    Ok(labelled)
}
