//! `kiosk-soak`: the kiosk live on an endless synthetic site for as long as asked, its health kept
//! every minute in `samples.csv` (draw it with `firmware-app/kiosk-demo/plot_soak.py`), every walk-up's
//! decision judged, and the audit log verified at the end.

#![forbid(unsafe_code)]

use firmware_app::mqtt::TlsSettings;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use firmware_app::mqtt::MqttConfig;
use kiosk_demo::soak::{run_soak, samples_csv, Outcome, SoakConfig};
use kiosk_demo::{verify_site_log, DemoConfig};

#[derive(Parser)]
#[command(
    about = "The kiosk live on an endless synthetic site: health every minute, every decision judged"
)]
struct Cli {
    /// Where the gallery, audit log, MQTT queue and samples go.
    #[arg(long, default_value = "kiosk-soak")]
    out: PathBuf,
    /// The network (default: the shipped trained model).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    #[arg(long, default_value_t = 4)]
    people: usize,
    /// Share of walk-ups made by strangers.
    #[arg(long, default_value_t = 0.3)]
    stranger_share: f64,
    /// Also send every event to the MQTT broker on this host's port (a build with `firmware-app/mqtt`).
    #[arg(long)]
    mqtt_port: Option<u16>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let mut demo = DemoConfig::new(cli.out.clone());
    demo.model = hstl::model_or_shipped(cli.model.as_deref());
    demo.people = cli.people;
    demo.threads = cli.threads;
    let queue_path = cli.out.join("mqtt-queue.jsonl");
    if queue_path.exists() {
        std::fs::remove_file(&queue_path)
            .with_context(|| format!("removing the last soak's {}", queue_path.display()))?;
    }
    let mqtt = cli.mqtt_port.map(|port| MqttConfig {
        host: "127.0.0.1".into(),
        port,
        client_id: Some("kiosk-soak".into()),
        topic_prefix: Some("kiosk/soak".into()),
        username: None,
        password_file: None,
        tls: TlsSettings {
            plaintext: true,
            ..TlsSettings::default()
        },
        queue_path,
        max_queued: 100_000,
    });
    let report = run_soak(&SoakConfig {
        demo,
        duration: Duration::from_secs(60 * cli.minutes),
        stranger_share: cli.stranger_share,
        mqtt,
    })?;
    let csv = cli.out.join("samples.csv");
    std::fs::write(&csv, samples_csv(&report.samples))
        .with_context(|| format!("writing {}", csv.display()))?;

    let stats = &report.stats;
    println!(
        "{:.1} min, {} frames ({:.1} frames/s), {} windows embedded, {} dropped, {} decisions, accept distance {:.4}",
        stats.elapsed.as_secs_f64() / 60.0,
        stats.frames,
        stats.frames_per_second(),
        stats.windows_embedded,
        stats.windows_dropped,
        report.decisions,
        report.accept_distance
    );
    println!(
        "decision latency: median of the last {} {:.0} ms, slowest {:.0} ms",
        stats.recent_latencies.len(),
        stats.median_latency().as_secs_f64() * 1e3,
        stats.slowest.as_secs_f64() * 1e3
    );
    println!("walk-ups by outcome:");
    for ((enrolled, outcome), count) in &report.outcomes {
        let who = if *enrolled { "enrolled" } else { "stranger" };
        let outcome = match outcome {
            Outcome::Right => "right",
            Outcome::WrongGrant => "GRANTED AS SOMEONE ELSE",
            Outcome::Rejected => "denied as unknown",
            Outcome::DeniedOther => "denied for another reason",
            Outcome::Undecided => "no decision",
        };
        println!("  {who:<9} {outcome:<26} {count}");
    }
    if let (Some(first), Some(last)) = (report.samples.first(), report.samples.last()) {
        println!(
            "resident memory {} KiB at the first sample, {} KiB at the last; {} samples in {}",
            first.resident_kib.unwrap_or(0),
            last.resident_kib.unwrap_or(0),
            report.samples.len(),
            csv.display()
        );
        println!(
            "at the last sample: {:?} events pending, {:?} in sink backlogs, {} dropped",
            last.pending_events, last.sink_backlogs, last.events_dropped
        );
    }
    if report.owed.is_empty() {
        println!("at stop: every sink took every event");
    } else {
        println!("at stop: still owed {:?}", report.owed);
    }
    let verified = verify_site_log(&report.site.door)?;
    println!(
        "audit log {}: {} events, chain intact, {} published heads match",
        report.site.door.audit.path.display(),
        verified.events,
        verified.anchors_total()
    );
    Ok(())
}
