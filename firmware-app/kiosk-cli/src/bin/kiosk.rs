//! The door kiosk. `kiosk --config kiosk.toml` runs a door; `kiosk verify-log` checks its audit log.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use access::gallery::TemplateKey;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use firmware_app::audit_anchors::verify_door_log;
use firmware_app::config::{KioskConfig, Source};
use firmware_app::Kiosk;
use silhouette::source::{open_camera, open_path};

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
    /// Check the audit log: every seal under the door's chain key, and every head it published
    /// to its gallery, site and MQTT broker.
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

/// Checks the audit log against the door's chain key and every chain head it published (its
/// gallery, its site, its MQTT broker), saying which it checked.
fn verify_log(config: PathBuf) -> anyhow::Result<()> {
    let config = KioskConfig::load(&config)?;
    let key = template_key(&config)?;
    let checked = verify_door_log(&config, key.as_ref())?;
    let report = &checked.verification;
    println!(
        "{}: {} lines ({} events) in {} file(s), chain intact, every line sealed with this door's chain key ({})",
        config.audit.path.display(),
        report.lines,
        report.events,
        report.files,
        config.audit.key_path().display()
    );
    for (source, found) in &report.anchors_checked {
        println!("  {found} published head(s) found in the log as published: {source}");
    }
    for source in &checked.unreachable {
        println!("  not checked (unreachable): {source}");
    }
    Ok(())
}

fn kiosk(config_path: PathBuf) -> anyhow::Result<()> {
    let config = KioskConfig::load(&config_path)?;
    let (source, live) = match config.source.chosen().map_err(anyhow::Error::msg)? {
        Source::Camera(index) => (open_camera(index)?, true),
        Source::Recording(path) => (open_path(path)?, false),
    };
    let mut kiosk = Kiosk::open(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    log::info!("door {}: reading {}", config.door, source.describe());
    let stats = kiosk.run(source, live, stop.clone(), &mut |record| {
        // The log names people by pseudonym, as events do: an erasure cannot reach old log files.
        log::info!(
            "track {}: {} ({}) in {:.0} ms",
            record.decision.track,
            record.event.kind.label(),
            record.event.person.as_deref().unwrap_or("-"),
            record.latency.as_secs_f64() * 1e3
        )
    })?;
    log::info!(
        "{} frames at {:.1} frames/s, {} windows embedded, {} dropped, {} decisions, {} tailgate alarms, decision latency {:.0} ms median of the last {}, {:.0} ms at most{}",
        stats.frames,
        stats.frames_per_second(),
        stats.windows_embedded,
        stats.windows_dropped,
        stats.decisions,
        stats.tailgate_alarms,
        stats.median_latency().as_secs_f64() * 1e3,
        stats.recent_latencies.len(),
        stats.slowest.as_secs_f64() * 1e3,
        if stop.load(Ordering::SeqCst) { " (stopped by signal)" } else { "" }
    );
    let undelivered: Vec<String> = kiosk
        .stop()
        .into_iter()
        .map(|(sink, pending)| format!("{sink}: {pending}"))
        .collect();
    if !undelivered.is_empty() {
        bail!("events could not be delivered ({})", undelivered.join(", "));
    }
    Ok(())
}
