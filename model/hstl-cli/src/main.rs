//! `hstl`: export, initialise, inspect, run and benchmark HSTL gait models.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hstl::evaluation::{LabelledEmbedding, Rank1Table};
use hstl::files::check_output;
use hstl::model_info::ModelInfo;
use hstl::network_args::NetworkArgs;
use hstl::onnx_graph::{self, ExportOptions};
use hstl::{
    open_embedder, Backend, Embedder, Precision, Silhouettes, TractEmbedder, Variant, Weights,
};

#[derive(Parser)]
#[command(
    name = "hstl",
    version,
    about = "HSTL gait-recognition network: checkpoints, ONNX export, inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert an OpenGait/HSTL checkpoint (.pt) into an ONNX model.
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Force the variant instead of inferring it from the head's shape.
        #[arg(long)]
        variant: Option<Variant>,
        /// Also expose the intermediate tensors (for parity checks against the reference).
        #[arg(long)]
        intermediates: bool,
        /// Record in the model that it sees every walk crossing rightwards (a walk that crossed
        /// leftwards mirrored whole), for weights trained and calibrated that way.
        #[arg(long)]
        rightwards: bool,
    },
    /// Write a model with OpenGait's initialisation from a seed (.onnx, or a .pt checkpoint).
    Init {
        #[arg(long, default_value = "casia-b")]
        variant: Variant,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Embed a silhouette clip (.npy, uint8 or float32, [T,64,44], [1,T,64,44] or [T,64,64]).
    Embed {
        #[command(flatten)]
        network: NetworkArgs,
        #[arg(long)]
        input: PathBuf,
        /// Where to write the float32 [parts, channels] embedding (.npy).
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        runtime: Runtime,
    },
    /// Rank-1 on the CASIA-B protocol (gallery nm-01..04; probes NM, BG, CL; identical views
    /// excluded) through this runtime.
    Eval {
        #[command(flatten)]
        network: NetworkArgs,
        /// Directory of `casia-b_SSS.npz` bit-packed files or of OpenGait's `SSS/COND/VVV/*.pkl`.
        #[arg(long = "casia-b")]
        casia_b: PathBuf,
        #[arg(long, default_value = "075-124")]
        subjects: String,
        /// Only these views, comma-separated (default: all eleven).
        #[arg(long, value_delimiter = ',')]
        views: Option<Vec<String>>,
        /// Use at most this many frames of each walk (quick checks; the protocol uses all).
        #[arg(long)]
        max_frames: Option<usize>,
        #[command(flatten)]
        runtime: Runtime,
        /// Print the table as one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Describe a model or checkpoint: variant, parts, parameters, cost.
    Inspect {
        path: PathBuf,
        /// Clip length for the multiply–accumulate count.
        #[arg(long, default_value_t = 30)]
        frames: usize,
    },
    /// Time the network on one window of silhouettes and report peak memory.
    Bench {
        #[command(flatten)]
        network: NetworkArgs,
        #[arg(long, default_value_t = 30)]
        frames: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[command(flatten)]
        runtime: Runtime,
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
        /// Also time every operator of the tract plan and print where the time goes.
        #[arg(long)]
        profile: bool,
        /// Also stream a walk of this many frames (the door's way): the time per push of
        /// silhouettes, and per query of the walk so far.
        #[arg(long)]
        stream: Option<usize>,
        /// With `--stream`: frames between two queries of the walk so far.
        #[arg(long, default_value_t = 15, requires = "stream")]
        query_every: usize,
        /// With `--stream`: silhouettes pushed at once (the door pushes a window's new frames, 15;
        /// 1 is a frame at a time).
        #[arg(long, default_value_t = 15, requires = "stream")]
        push_block: usize,
    },
    /// Run the network on a synthetic walk with a seeded model: the quick end-to-end check.
    Demo {
        #[arg(long, default_value_t = 30)]
        frames: usize,
        #[arg(long, default_value_t = 2, value_parser = hstl::network_args::parse_threads)]
        threads: usize,
    },
}

/// Which runtime runs the network, and in what arithmetic.
#[derive(Debug, clap::Args)]
struct Runtime {
    /// `tract` (pure Rust, CPU), `ort` (ONNX Runtime: TensorRT, CUDA, then CPU; feature `ort`) or
    /// `auto` (ONNX Runtime when it loads, tract otherwise).
    #[arg(long, default_value = "tract")]
    backend: Backend,
    /// `f32`, or `f16` up to the pooling (tract only; fast on ARM cores with FP16 arithmetic,
    /// emulated elsewhere).
    #[arg(long, default_value = "f32")]
    precision: Precision,
}

impl Runtime {
    fn open(&self, model: &Path, threads: usize) -> Result<Box<dyn Embedder>> {
        Ok(open_embedder(model, self.backend, threads, self.precision)?)
    }
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Export {
            checkpoint,
            out,
            variant,
            intermediates,
            rightwards,
        } => {
            check_output(&out, &[&checkpoint])?;
            let weights = Weights::from_checkpoint(&checkpoint, variant)
                .with_context(|| format!("reading checkpoint {}", checkpoint.display()))?;
            onnx_graph::write_model(
                &weights,
                &ExportOptions {
                    intermediate_outputs: intermediates,
                    orientation: if rightwards {
                        hstl::Orientation::Rightwards
                    } else {
                        hstl::Orientation::AsFilmed
                    },
                    ..ExportOptions::default()
                },
                &out,
            )?;
            println!(
                "{}: {} model written to {}",
                checkpoint.display(),
                weights.variant(),
                out.display()
            );
        }
        Command::Init { variant, seed, out } => {
            let weights = Weights::seeded(variant, seed);
            if out.extension().is_some_and(|e| e == "pt") {
                let stem = out
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("archive");
                hstl::checkpoint::write_state_dict(&out, stem, &weights.to_state_dict(Some(0)))?;
            } else {
                onnx_graph::write_model(&weights, &ExportOptions::default(), &out)?;
            }
            println!(
                "seeded {variant} model (seed {seed}) written to {}",
                out.display()
            );
        }
        Command::Embed {
            network: NetworkArgs { model, threads },
            input,
            output,
            runtime,
        } => {
            let model = hstl::model_or_shipped(model.as_deref());
            check_output(&output, &[&model, &input])?;
            let embedder = runtime.open(&model, threads)?;
            let clip = Silhouettes::read_npy(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let started = Instant::now();
            let embedding = embedder.embed(&clip)?;
            let elapsed = started.elapsed();
            let array = ndarray::Array2::from_shape_vec(
                (embedding.parts(), embedding.channels()),
                embedding.as_slice().to_vec(),
            )?;
            ndarray_npy::write_npy(&output, &array)
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "{} frames -> {}x{} embedding in {:.0} ms ({}), written to {}",
                clip.frames(),
                embedding.parts(),
                embedding.channels(),
                elapsed.as_secs_f64() * 1e3,
                embedder.describe(),
                output.display()
            );
        }
        Command::Eval {
            network: NetworkArgs { model, threads },
            casia_b,
            subjects,
            views,
            max_frames,
            runtime,
            json,
        } => {
            let model = hstl::model_or_shipped(model.as_deref());
            let embedder = runtime.open(&model, threads)?;
            let subjects = hstl::casia_b::parse_subjects(&subjects)?;
            let table = evaluate(
                embedder.as_ref(),
                &casia_b,
                &subjects,
                views.as_deref(),
                max_frames,
            )?;
            if json {
                println!("{}", table_json(&table));
            } else {
                print!("{table}");
            }
        }
        Command::Inspect { path, frames } => {
            let info = ModelInfo::of_path(&path)?;
            println!("{}: \n{info}", path.display());
            if let Some(macs) = info.macs(frames) {
                println!(
                    "MACs:        {:.2} G for {frames} frames",
                    macs as f64 / 1e9
                );
            }
        }
        Command::Bench {
            network: NetworkArgs { model, threads },
            frames,
            runs,
            runtime,
            json,
            profile,
            stream,
            query_every,
            push_block,
        } => {
            let model = hstl::model_or_shipped(model.as_deref());
            bench(&model, frames, threads, runs, &runtime, json)?;
            if let Some(walk) = stream {
                let plan = StreamPlan {
                    frames: walk,
                    query_every,
                    push_block,
                };
                bench_stream(&model, &plan, threads, &runtime)?;
            }
            if profile {
                print_profile(&model, frames, threads, runtime.precision)?;
            }
        }
        Command::Demo { frames, threads } => demo(frames, threads)?,
    }
    Ok(())
}

fn evaluate(
    embedder: &dyn Embedder,
    root: &Path,
    subjects: &[String],
    views: Option<&[String]>,
    max_frames: Option<usize>,
) -> Result<Rank1Table> {
    let started = Instant::now();
    let mut labelled = Vec::new();
    let mut frames = 0usize;
    for subject in subjects {
        for mut walk in hstl::casia_b::read_subject(root, subject, views)? {
            if let Some(limit) = max_frames {
                walk.truncate(limit);
            }
            frames += walk.frames();
            let embedding = embedder
                .embed(&walk.silhouettes()?)
                .with_context(|| format!("{}_{}_{}", walk.subject, walk.condition, walk.view))?;
            labelled.push(LabelledEmbedding {
                subject: walk.subject,
                condition: walk.condition,
                view: walk.view,
                embedding,
            });
        }
        log::info!(
            "subject {subject}: {} walks, {frames} frames embedded in {:.0} s",
            labelled.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(hstl::evaluation::casia_b_rank1(&labelled)?)
}

fn table_json(table: &Rank1Table) -> String {
    let number = |v: Option<f64>| v.map_or("null".to_owned(), |a| format!("{a:.4}"));
    let sets: Vec<String> = table
        .sets
        .iter()
        .map(|(name, per_view)| {
            let values: Vec<String> = per_view.iter().map(|v| number(*v)).collect();
            format!(
                "\"{name}\":{{\"per_view\":[{}],\"mean\":{}}}",
                values.join(","),
                number(table.mean(name))
            )
        })
        .collect();
    let views: Vec<String> = table.views.iter().map(|v| format!("\"{v}\"")).collect();
    format!("{{\"views\":[{}],{}}}", views.join(","), sets.join(","))
}

fn bench(
    model: &Path,
    frames: usize,
    threads: usize,
    runs: usize,
    runtime: &Runtime,
    json: bool,
) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let clip = synthetic_walk(frames);
    let started = Instant::now();
    let embedder = runtime.open(model, threads)?;
    embedder.embed(&clip).context("warm-up run")?;
    let prepare_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            embedder
                .embed(&clip)
                .map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let peak_mib = hstl::process_memory::peak_resident_kib().map(|k| k as f64 / 1024.0);
    if json {
        println!(
            "{{\"backend\":\"{:?}\",\"precision\":\"{:?}\",\"threads\":{threads},\"frames\":{frames},\"runs\":{runs},\"median_ms\":{median:.1},\"min_ms\":{:.1},\"max_ms\":{:.1},\"load_and_first_run_ms\":{prepare_ms:.0},\"peak_rss_mib\":{}}}",
            runtime.backend,
            runtime.precision,
            times[0],
            times[times.len() - 1],
            peak_mib.map_or("null".into(), |m| format!("{m:.1}"))
        );
    } else {
        println!("{}", embedder.describe());
        println!("window:        {frames} frames, {runs} timed runs after one warm-up");
        println!(
            "median:        {median:.1} ms  (min {:.1}, max {:.1})",
            times[0],
            times[times.len() - 1]
        );
        println!("load + first:  {prepare_ms:.0} ms (plan optimisation included)");
        if let Some(m) = peak_mib {
            println!("peak RSS:      {m:.1} MiB");
        }
    }
    Ok(())
}

/// How `hstl bench --stream` feeds its walk.
struct StreamPlan {
    frames: usize,
    query_every: usize,
    push_block: usize,
}

/// Streams a synthetic walk, `push_block` silhouettes at a time, querying every `query_every`
/// frames: the time each push and each query take, and the network's time per frame of video with
/// those queries.
fn bench_stream(model: &Path, plan: &StreamPlan, threads: usize, runtime: &Runtime) -> Result<()> {
    let StreamPlan {
        frames,
        query_every,
        push_block,
    } = *plan;
    if query_every == 0 || push_block == 0 || frames < hstl::streaming::MIN_FRAMES {
        bail!(
            "--stream needs at least {} frames, and --query-every and --push-block at least 1",
            hstl::streaming::MIN_FRAMES
        );
    }
    let streaming = hstl::streaming::StreamingEmbedder::load(
        model,
        runtime.backend,
        threads,
        runtime.precision,
    )?;
    let walk = synthetic_walk(frames);
    let block_values = push_block * 64 * 44;
    // One walk to build the plans, then the timed one.
    for timed in [false, true] {
        let mut stream = streaming.stream();
        let (mut pushes, mut queries) = (Vec::new(), Vec::new());
        for block in walk.as_slice().chunks(block_values) {
            let before = stream.frames();
            let started = Instant::now();
            stream.push_frames(block)?;
            pushes.push(started.elapsed().as_secs_f64() * 1e3);
            let after = stream.frames();
            let queried = after / query_every > before / query_every;
            if queried && after >= hstl::streaming::MIN_FRAMES {
                let started = Instant::now();
                stream.embedding()?;
                queries.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        if !timed {
            continue;
        }
        let total: f64 = pushes.iter().chain(&queries).sum();
        pushes.sort_by(f64::total_cmp);
        queries.sort_by(f64::total_cmp);
        let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(0.0);
        println!(
            "stream:        {frames} frames pushed {push_block} at a time, a query every {query_every}"
        );
        println!(
            "per push:      {:.2} ms median (the stages it completes); per query {:.2} ms median",
            median(&pushes),
            median(&queries)
        );
        println!(
            "per frame of video, queries included: {:.2} ms (held {} values)",
            total / frames as f64,
            stream.held_values()
        );
    }
    Ok(())
}

fn print_profile(model: &Path, frames: usize, threads: usize, precision: Precision) -> Result<()> {
    let embedder = TractEmbedder::load(model, threads)?.with_precision(precision);
    let clip = synthetic_walk(frames);
    embedder.embed(&clip)?;
    let timings = embedder.profile(&clip)?;
    let total: f64 = timings.iter().map(|t| t.2).sum();
    let mut by_op: Vec<(String, f64, usize)> = Vec::new();
    for (op, _, seconds) in &timings {
        match by_op.iter_mut().find(|(o, _, _)| o == op) {
            Some(entry) => {
                entry.1 += seconds;
                entry.2 += 1;
            }
            None => by_op.push((op.clone(), *seconds, 1)),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!(
        "\nprofile of one tract run ({:.0} ms in {} nodes), by operator:",
        total * 1e3,
        timings.len()
    );
    for (op, seconds, count) in by_op.iter().take(12) {
        println!(
            "  {:>6.1} ms {:>5.1} %  {op} x{count}",
            seconds * 1e3,
            100.0 * seconds / total
        );
    }
    println!("slowest nodes:");
    for (op, name, seconds) in timings.iter().take(12) {
        println!(
            "  {:>6.1} ms {:>5.1} %  {name} ({op})",
            seconds * 1e3,
            100.0 * seconds / total
        );
    }
    Ok(())
}

/// A walking figure drawn as a trunk, a head and two swinging legs: plausible input for timing
/// and for the demo, deterministic so that runs compare.
fn synthetic_walk(frames: usize) -> Silhouettes {
    let (h, w) = (64usize, 44usize);
    let mut data = vec![0u8; frames * h * w];
    for t in 0..frames {
        let phase = (t as f32 / 15.0 * std::f32::consts::TAU).sin();
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 - 22.0, y as f32);
                let head = fx * fx / 16.0 + (fy - 6.0) * (fy - 6.0) / 25.0 <= 1.0;
                let trunk = (11.0..36.0).contains(&fy) && fx.abs() <= 6.0 - (fy - 11.0) / 12.0;
                let stride = (fy - 36.0).max(0.0) / 28.0 * 9.0 * phase;
                let leg = |offset: f32| (fx - offset).abs() <= 2.5;
                let legs = fy >= 36.0 && (leg(stride - 2.0) || leg(-stride + 2.0));
                if head || trunk || legs {
                    data[(t * h + y) * w + x] = 255;
                }
            }
        }
    }
    Silhouettes::from_u8(&[frames, h, w], &data).expect("synthetic walk has the model input shape")
}

fn demo(frames: usize, threads: usize) -> Result<()> {
    let weights = Weights::seeded(Variant::CasiaB, 7);
    let dir = tempfile::Builder::new().prefix("hstl-demo-").tempdir()?;
    let model = dir.path().join("hstl_casiab_seed7.onnx");
    onnx_graph::write_model(&weights, &ExportOptions::default(), &model)?;
    let (_, learnable) = Variant::CasiaB.architecture().parameter_counts();
    println!(
        "seeded CASIA-B HSTL (seed 7) exported to ONNX: {learnable} learnable parameters, {} weights with BatchNorm statistics",
        weights.element_count()
    );
    let embedder = TractEmbedder::load(&model, threads)?;
    let walk = synthetic_walk(frames);
    let started = Instant::now();
    let first = embedder.embed(&walk)?;
    let cold = started.elapsed();
    let started = Instant::now();
    let again = embedder.embed(&walk)?;
    let warm = started.elapsed();
    let short = embedder.embed(&synthetic_walk(frames / 2))?;
    let values = first.as_slice();
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
    let norm0: f32 = first.part(0).iter().map(|v| v * v).sum::<f32>().sqrt();
    println!("{}", embedder.describe());
    println!(
        "embedding:      {} parts x {} channels, mean {mean:.5}, |part 0| {norm0:.4}",
        first.parts(),
        first.channels()
    );
    println!(
        "window of {frames} frames: {:.0} ms first (plan build included), {:.0} ms warm",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3
    );
    println!(
        "repeat distance {:.2e} (deterministic), half-walk distance {:.4}",
        first.distance(&again)?,
        first.distance(&short)?
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
