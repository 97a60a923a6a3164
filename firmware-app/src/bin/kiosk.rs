//! The door kiosk. `kiosk --config kiosk.toml` runs a door; `kiosk demo` runs the synthetic site.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firmware_app::audit::{verify, AuditLog};
use firmware_app::config::KioskConfig;
use firmware_app::decision::{DecisionPolicy, Verdict};
use firmware_app::demo::{run_demo, DemoConfig};
use firmware_app::door::{open_line, DoorRelay};
use firmware_app::events::{EventDispatcher, EventKind};
use firmware_app::framebuffer::Framebuffer;
use firmware_app::gallery::{Gallery, TemplateKey};
use firmware_app::inference::{open_embedder, BackendChoice, InferenceConfig};
use firmware_app::kiosk::{model_id, run, DoorEngine, Outputs};
use firmware_app::matcher::MatchIndex;
use firmware_app::mqtt::open_sink;
use firmware_app::silhouette::SilhouetteConfig;
use firmware_app::source::{open_camera, open_path};

/// Events a sink may owe before the oldest are dropped (and counted).
const MAX_QUEUED_EVENTS: usize = 100_000;

#[derive(Parser)]
#[command(about = "Gait-recognition door kiosk")]
struct Cli {
    /// The kiosk configuration (see cross/kiosk.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Enrol synthetic people, play walk-ups through the whole kiosk and check every decision.
    Demo {
        /// Where the gallery, audit log and screens go.
        #[arg(long, default_value = "kiosk-demo")]
        out: PathBuf,
        #[arg(long, default_value_t = 4)]
        people: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Check the hash chain of an audit log.
    VerifyLog {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (
            Some(Command::Demo {
                out,
                people,
                threads,
            }),
            _,
        ) => demo(out, people, threads),
        (Some(Command::VerifyLog { config }), _) => {
            let config = KioskConfig::load(&config)?;
            let lines = verify(&config.audit)?;
            println!(
                "{}: {lines} lines, chain intact",
                config.audit.path.display()
            );
            Ok(())
        }
        (None, Some(config)) => kiosk(config),
        (None, None) => bail!("give --config kiosk.toml, or run `kiosk demo`"),
    }
}

fn kiosk(config_path: PathBuf) -> anyhow::Result<()> {
    let config = KioskConfig::load(&config_path)?;
    let key = config
        .gallery
        .key_file
        .as_ref()
        .map(|path| {
            TemplateKey::read_file(path).with_context(|| format!("key file {}", path.display()))
        })
        .transpose()?;
    let backend = match config.model.backend.as_str() {
        "tract" => BackendChoice::Tract,
        "ort" => BackendChoice::OnnxRuntime,
        _ => BackendChoice::Auto,
    };
    let embedder = open_embedder(&InferenceConfig {
        model: config.model.path.clone(),
        backend,
        threads: config.model.threads,
    })?;
    log::info!("{}", embedder.describe());
    let model_id = model_id(&config.model.path)?;
    let gallery = Gallery::open(&config.gallery.path, key.as_ref())?;
    gallery.check_model(&model_id)?;
    let index =
        MatchIndex::from_gallery(&gallery, embedder.embedding_shape(), config.model.threads)?;
    log::info!(
        "gallery {}: {} people, {} templates",
        config.gallery.path.display(),
        index.identities().len(),
        index.template_count()
    );
    let mut dispatcher = EventDispatcher::new(MAX_QUEUED_EVENTS);
    dispatcher.add(Box::new(AuditLog::open(config.audit.clone())?));
    dispatcher.add(Box::new(gallery));
    if let Some(relay) = &config.relay {
        let line = open_line(relay)?;
        dispatcher.add(Box::new(DoorRelay::start(line, relay)?));
        log::info!(
            "door relay on {} line {} ({} ms pulse), locked",
            relay.chip,
            relay.line,
            relay.pulse_ms
        );
    }
    if let Some(mqtt) = &config.mqtt {
        dispatcher.add(open_sink(mqtt, &config.door)?);
        log::info!(
            "events to mqtt://{}:{} under {}/events/",
            mqtt.host,
            mqtt.port,
            mqtt.prefix(&config.door)
        );
    }
    let mut outputs = Outputs {
        dispatcher,
        screen_dir: config.display.screen_dir.clone(),
        framebuffer: config
            .display
            .framebuffer
            .as_deref()
            .map(Framebuffer::open)
            .transpose()?,
    };
    if let Some(dir) = &outputs.screen_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut engine = DoorEngine::new(
        config.door.clone(),
        model_id,
        embedder,
        index,
        DecisionPolicy::new(config.decision.clone()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let (source, live) = match (&config.source.camera, &config.source.path) {
        (Some(index), _) => (open_camera(*index)?, true),
        (None, Some(path)) => (open_path(path)?, false),
        (None, None) => bail!("no source configured"),
    };
    log::info!("door {}: reading {}", config.door, source.describe());
    outputs
        .dispatcher
        .publish(&engine.event(EventKind::Started));
    let stats = run(
        source,
        live,
        SilhouetteConfig::default(),
        config.max_windows_in_flight,
        &mut engine,
        &mut outputs,
        stop.clone(),
        &mut |record| {
            log::info!(
                "track {}: {} ({}) in {:.0} ms",
                record.decision.track,
                record.event.kind.label(),
                record.name.as_deref().unwrap_or("-"),
                record.latency.as_secs_f64() * 1e3
            )
        },
    )?;
    outputs
        .dispatcher
        .publish(&engine.event(EventKind::Stopped));
    log::info!(
        "{} frames at {:.1} frames/s, {} windows embedded, {} dropped, {} decisions, {} tailgate alarms, median decision latency {:.0} ms{}",
        stats.frames,
        stats.frames_per_second(),
        stats.windows_embedded,
        stats.windows_dropped,
        stats.decisions,
        stats.tailgate_alarms,
        median(&stats.latencies).as_secs_f64() * 1e3,
        if stop.load(Ordering::SeqCst) { " (stopped by signal)" } else { "" }
    );
    for (sink, pending) in outputs.dispatcher.pending() {
        if pending > 0 {
            log::error!("{sink}: {pending} event(s) could not be delivered");
        }
    }
    Ok(())
}

fn demo(out: PathBuf, people: usize, threads: usize) -> anyhow::Result<()> {
    let mut config = DemoConfig::new(out);
    config.people = people;
    config.threads = threads;
    let report = run_demo(&config)?;
    println!("enrolled (synthetic people, each from their own walks):");
    for (name, templates) in &report.enrolled {
        println!("  {name:<10} {templates} templates");
    }
    println!(
        "calibrated on the enrolment walks: genuine distances {:.4}..{:.4}, impostor {:.4}..{:.4}",
        min(&report.genuine),
        max(&report.genuine),
        min(&report.impostor),
        max(&report.impostor)
    );
    println!(
        "  accept under {:.4}, margin {:.4}, {} agreeing windows",
        report.decision.accept_distance, report.decision.margin, report.decision.consensus_windows
    );
    println!();
    println!(
        "{:<42} {:<24} {:<36} {:>9}",
        "walk-up", "expected", "decision", "latency"
    );
    let mut right = 0;
    let mut latencies = Vec::new();
    for walk_up in &report.walk_ups {
        let expected = match &walk_up.expected {
            firmware_app::demo::Expected::Granted(name) => format!("granted {name}"),
            firmware_app::demo::Expected::GrantedThenTailgateAlarm(name) => {
                format!("granted {name}, alarm")
            }
            firmware_app::demo::Expected::Denied(reason) => {
                format!("denied: {}", reason.describe())
            }
        };
        let (decision, latency) = match walk_up.verdict() {
            Some(record) => {
                latencies.push(record.latency);
                let figures = record
                    .decision
                    .figures
                    .as_ref()
                    .map(|f| format!(" d={:.4}", f.distance))
                    .unwrap_or_default();
                let text = match &record.decision.verdict {
                    Verdict::Granted { .. } => {
                        format!("granted {}{figures}", record.name.as_deref().unwrap_or("?"))
                    }
                    Verdict::Denied { reason, .. } => {
                        format!("denied: {}{figures}", reason.describe())
                    }
                };
                (
                    text,
                    format!("{:.0} ms", record.latency.as_secs_f64() * 1e3),
                )
            }
            None => ("no decision".to_string(), "-".to_string()),
        };
        let mark = if walk_up.correct() {
            right += 1;
            "ok"
        } else {
            "WRONG"
        };
        println!(
            "{:<42} {expected:<24} {decision:<36} {latency:>9}  {mark}  [{} frames, {} windows]",
            walk_up.label, walk_up.stats.frames, walk_up.stats.windows_embedded
        );
        if walk_up.stats.tailgate_alarms > 0 {
            println!("{:<42} {:<24} tailgate alarm", "", "");
        }
        for other in &walk_up.decisions {
            if Some(other.decision.track) != walk_up.verdict().map(|v| v.decision.track) {
                println!(
                    "{:<42} {:<24} track {}: {}",
                    "",
                    "",
                    other.decision.track,
                    other.event.kind.label()
                );
            }
        }
    }
    let frames: u64 = report.walk_ups.iter().map(|w| w.stats.frames).sum();
    println!();
    println!(
        "{right}/{} decisions right; median decision latency {:.0} ms (last frame of the deciding window to the event)",
        report.walk_ups.len(),
        median(&latencies).as_secs_f64() * 1e3
    );
    println!(
        "enrolment {:.1} s; kiosk {:.1} s for {frames} frames ({:.1} frames/s end to end, network included)",
        report.enrolment_time.as_secs_f64(),
        report.kiosk_time.as_secs_f64(),
        frames as f64 / report.kiosk_time.as_secs_f64()
    );
    let lines = verify(&firmware_app::audit::AuditConfig {
        path: report.audit_log.clone(),
        max_file_bytes: u64::MAX,
        keep_files: 5,
    })?;
    println!(
        "audit log {} ({lines} events, chain intact)",
        report.audit_log.display()
    );
    println!("gallery {} (templates encrypted)", report.gallery.display());
    println!("status screens {}", report.screens.display());
    println!(
        "(the network has OpenGait's initial weights, not trained ones: wrong decisions here measure an untrained model)"
    );
    Ok(())
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn min(values: &[f32]) -> f32 {
    values.iter().copied().fold(f32::INFINITY, f32::min)
}

fn max(values: &[f32]) -> f32 {
    values.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}
