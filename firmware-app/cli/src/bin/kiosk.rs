//! The door kiosk. `kiosk --config kiosk.toml` runs a door; `kiosk verify-log` checks its audit log.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use access::audit::{verify, AuditLog, ChainKey};
use access::decision::{accept_distance, DecisionPolicy};
use access::events::{EventDispatcher, EventKind};
use access::gallery::{Gallery, TemplateKey};
use access::matcher::MatchIndex;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firmware_app::config::KioskConfig;
use firmware_app::door::{open_line, DoorRelay};
use firmware_app::framebuffer::Framebuffer;
use firmware_app::kiosk::{run, DoorEngine, LoopConfig, Outputs};
use firmware_app::mqtt::open_sink;
use hstl::{model_id, open_embedder, OperatingPoint};
use silhouette::source::{open_camera, open_path};
use silhouette::SilhouetteConfig;

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
        (Some(Command::VerifyLog { config }), _) => verify_log(config),
        (None, Some(config)) => kiosk(config),
        (None, None) => bail!("give --config kiosk.toml (the synthetic site is `kiosk-demo`)"),
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

/// Checks the audit log against its key and against every chain head the kiosk stored in its gallery.
fn verify_log(config: PathBuf) -> anyhow::Result<()> {
    let config = KioskConfig::load(&config)?;
    let key = template_key(&config)?;
    let gallery = Gallery::open_existing(&config.gallery.path, key.as_ref())?;
    let anchors = gallery.audit_heads()?;
    let report = verify(
        &config.audit,
        key.as_ref().map(ChainKey::from_template_key).as_ref(),
        &anchors,
    )?;
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

fn kiosk(config_path: PathBuf) -> anyhow::Result<()> {
    let config = KioskConfig::load(&config_path)?;
    let key = template_key(&config)?;
    let embedder = open_embedder(
        &config.model.path,
        config.model.backend,
        config.model.threads,
    )?;
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
    let audit = AuditLog::open(
        config.audit.clone(),
        key.as_ref().map(ChainKey::from_template_key),
    )?;
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
    let loop_config = LoopConfig {
        live,
        silhouettes: SilhouetteConfig::default(),
        max_windows_in_flight: config.max_windows_in_flight,
    };
    let stats = run(
        source,
        &loop_config,
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
        stats.median_latency().as_secs_f64() * 1e3,
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
