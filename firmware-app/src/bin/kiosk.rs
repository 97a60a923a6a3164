//! The door kiosk. `kiosk --config kiosk.toml` runs a door; `kiosk demo` runs the synthetic site.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firmware_app::audit::{verify, AuditLog, ChainHead, ChainKey, CHAIN_KEY_PURPOSE};
use firmware_app::config::KioskConfig;
use firmware_app::decision::{accept_distance, DecisionPolicy, Verdict};
use firmware_app::demo::{run_demo, DemoConfig};
use firmware_app::door::{open_line, DoorRelay};
use firmware_app::events::{EventDispatcher, EventKind};
use firmware_app::framebuffer::Framebuffer;
use firmware_app::gallery::{Gallery, TemplateKey};
use firmware_app::inference::{open_embedder, BackendChoice, InferenceConfig};
use firmware_app::kiosk::{run, DoorEngine, Outputs};
use firmware_app::matcher::MatchIndex;
use firmware_app::mqtt::open_sink;
use firmware_app::silhouette::SilhouetteConfig;
use firmware_app::source::{open_camera, open_path};
use hstl::{model_id, OperatingPoint};

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
        (Some(Command::VerifyLog { config }), _) => verify_log(config),
        (None, Some(config)) => kiosk(config),
        (None, None) => bail!("give --config kiosk.toml, or run `kiosk demo`"),
    }
}

fn template_key(config: &KioskConfig) -> anyhow::Result<Option<TemplateKey>> {
    config
        .gallery
        .key_file
        .as_ref()
        .map(|path| {
            TemplateKey::read_file(path).with_context(|| format!("key file {}", path.display()))
        })
        .transpose()
}

fn chain_key(key: Option<&TemplateKey>) -> Option<ChainKey> {
    key.map(|k| ChainKey::new(k.derive(CHAIN_KEY_PURPOSE)))
}

/// Checks the audit log against its key and against every chain head the kiosk stored in its gallery.
fn verify_log(config: PathBuf) -> anyhow::Result<()> {
    let config = KioskConfig::load(&config)?;
    let key = template_key(&config)?;
    let gallery = Gallery::open_existing(&config.gallery.path, key.as_ref())?;
    let anchors = audit_heads(&gallery)?;
    let report = verify(&config.audit, chain_key(key.as_ref()).as_ref(), &anchors)?;
    println!(
        "{}: {} lines ({} events) in {} file(s), chain intact{}; {} published head(s) found in it",
        config.audit.path.display(),
        report.lines,
        report.events,
        report.files,
        if report.keyed {
            ", every line sealed with the kiosk's key"
        } else {
            " (NOT keyed: anyone could rewrite it and every hash)"
        },
        report.anchors_checked
    );
    Ok(())
}

fn audit_heads(gallery: &Gallery) -> anyhow::Result<Vec<ChainHead>> {
    gallery
        .event_bodies(
            EventKind::AuditHead {
                seq: 0,
                mac: String::new(),
            }
            .label(),
        )?
        .into_iter()
        .map(|body| {
            let event: firmware_app::events::Event = serde_json::from_str(&body)
                .with_context(|| format!("a stored audit head is damaged: {body}"))?;
            match event.kind {
                EventKind::AuditHead { seq, mac } => Ok(ChainHead { seq, mac }),
                other => bail!("stored as an audit head but is {}", other.label()),
            }
        })
        .collect()
}

fn kiosk(config_path: PathBuf) -> anyhow::Result<()> {
    let config = KioskConfig::load(&config_path)?;
    let key = template_key(&config)?;
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
    let operating_point = OperatingPoint::load_for(&config.model.path, &model_id)?;
    let accept_distance = accept_distance(
        config.decision.accept_distance,
        operating_point.as_ref(),
        &config.model.path,
    )?;
    if let Some(point) = &operating_point {
        log::info!(
            "accept distance {accept_distance} (model calibrated at {} for FPIR {}: FNIR {:.2} %, measured on {})",
            point.accept_distance,
            point.target_fpir,
            100.0 * point.fnir,
            point.measured_on
        );
        if !point.resolves_target() {
            log::warn!(
                "the model's operating point rests on {} non-mated searches, too few to measure FPIR {}: recalibrate with more walks",
                point.non_mated_searches,
                point.target_fpir
            );
        }
    }
    let gallery = Gallery::open_existing(&config.gallery.path, key.as_ref())?;
    gallery.check_model(&model_id)?;
    let index =
        MatchIndex::from_gallery(&gallery, embedder.embedding_shape(), config.model.threads)?;
    log::info!(
        "gallery {}: {} people, {} templates",
        config.gallery.path.display(),
        index.identities().len(),
        index.template_count()
    );
    let watched = Gallery::open_existing(&config.gallery.path, key.as_ref())?;
    let mut dispatcher = EventDispatcher::new(MAX_QUEUED_EVENTS);
    if key.is_none() {
        log::warn!(
            "no [gallery] key_file: templates are stored in clear and the audit log is not sealed (anyone could rewrite it)"
        );
    }
    let audit = AuditLog::open(config.audit.clone(), chain_key(key.as_ref()))?;
    let audit_head = audit.head_handle();
    dispatcher.add(Box::new(audit));
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
        audit_head: Some(audit_head),
    };
    if let Some(dir) = &outputs.screen_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut engine = DoorEngine::new(
        config.door.clone(),
        model_id,
        embedder,
        index,
        DecisionPolicy::new(config.decision.clone(), accept_distance),
    );
    engine.watch_gallery(watched);
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
    if let Some((sink, _)) = outputs
        .dispatcher
        .pending()
        .into_iter()
        .find(|(_, n)| *n > 0)
    {
        bail!(
            "the {sink} cannot store events (see the error above): a door must not run unrecorded"
        );
    }
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
    let undelivered: Vec<String> = outputs
        .dispatcher
        .pending()
        .into_iter()
        .filter(|(_, pending)| *pending > 0)
        .map(|(sink, pending)| format!("{sink}: {pending}"))
        .collect();
    if !undelivered.is_empty() {
        bail!("events could not be delivered ({})", undelivered.join(", "));
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
        "  accept up to {:.4}, margin {:.4}, {} agreeing windows",
        report.accept_distance, report.decision.margin, report.decision.consensus_windows
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
    let key = TemplateKey::read_file(&report.key_file)?;
    let verified = verify(
        &firmware_app::audit::AuditConfig {
            path: report.audit_log.clone(),
            max_file_bytes: u64::MAX,
            keep_files: 5,
        },
        chain_key(Some(&key)).as_ref(),
        &audit_heads(&Gallery::open_existing(&report.gallery, Some(&key))?)?,
    )?;
    println!(
        "audit log {} ({} events, chain intact, sealed with a key derived from {}; {} published heads match)",
        report.audit_log.display(),
        verified.events,
        report.key_file.display(),
        verified.anchors_checked
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
