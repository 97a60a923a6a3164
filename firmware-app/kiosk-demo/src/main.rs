//! `kiosk-demo`: the synthetic site. Enrols synthetic people from their own walks with the shipped
//! trained model, plays walk-ups through the whole kiosk (silhouettes, network, gallery, decision, audit log,
//! status screens) and checks every decision against what should have happened.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use access::decision::Verdict;
use clap::Parser;
use firmware_app::kiosk_loop::median_latency;
use kiosk_demo::{run_demo, verify_site_log, DemoConfig, Expected};

#[derive(Parser)]
#[command(about = "The door kiosk on a synthetic site: enrol, walk-ups, decisions, audit log")]
struct Cli {
    /// Where the gallery, audit log and screens go.
    #[arg(long, default_value = "kiosk-demo")]
    out: PathBuf,
    /// The network (default: the shipped trained model); it must carry its operating point.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    people: usize,
    /// Strangers who walk up on their own.
    #[arg(long, default_value_t = 2)]
    strangers: usize,
    /// Another synthetic site: its people, strangers and walks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let mut config = DemoConfig::new(cli.out);
    config.model = hstl::model_or_shipped(cli.model.as_deref());
    config.people = cli.people;
    config.strangers = cli.strangers;
    config.seed = cli.seed;
    config.threads = cli.threads;
    demo(&config)
}

fn demo(config: &DemoConfig) -> anyhow::Result<()> {
    let report = run_demo(config)?;
    println!("enrolled (synthetic people, each from their own walks):");
    for (name, templates) in &report.enrolled {
        println!("  {name:<10} {templates} templates");
    }
    println!(
        "model {}: accept up to {:.4} (its calibrated operating point), second identity at least {:.4} farther ({:.0} %), {} agreeing windows",
        config.model.display(),
        report.accept_distance,
        report.decision.relative_margin * report.accept_distance,
        report.decision.relative_margin * 100.0,
        report.decision.consensus_windows
    );
    println!(
        "enrolment walks: genuine distances {} (templates of one person, different walks)",
        spread(&report.genuine, report.accept_distance)
    );
    println!(
        "                 impostor distances {} (templates of two people)",
        spread(&report.impostor, report.accept_distance)
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
            Expected::Granted(name) => format!("granted {name}"),
            Expected::GrantedThenTailgateAlarm(name) => {
                format!("granted {name}, alarm")
            }
            Expected::Denied(reason) => {
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
        median_latency(&latencies).as_secs_f64() * 1e3
    );
    println!(
        "enrolment {:.1} s; kiosk {:.1} s for {frames} frames ({:.1} frames/s end to end, network included)",
        report.enrolment_time.as_secs_f64(),
        report.kiosk_time.as_secs_f64(),
        frames as f64 / report.kiosk_time.as_secs_f64()
    );
    let verified = verify_site_log(&report.door)?;
    println!(
        "audit log {} ({} events, chain intact, sealed with the door's chain key {}; {} published heads match)",
        report.audit_log.display(),
        verified.events,
        report.door.audit.key_path().display(),
        verified.anchors_total()
    );
    println!("gallery {} (templates encrypted)", report.gallery.display());
    println!("status screens {}", report.screens.display());
    Ok(())
}

/// Minimum, median and maximum of `distances`, and how many are within `accept_distance`.
fn spread(distances: &[f32], accept_distance: f32) -> String {
    let mut sorted = distances.to_vec();
    sorted.sort_by(f32::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(first), Some(last)) => format!(
            "{first:.4} / {:.4} / {last:.4} (min / median / max), {} of {} within the accept distance",
            sorted[sorted.len() / 2],
            sorted.iter().filter(|d| hstl::accepts(**d, accept_distance)).count(),
            sorted.len()
        ),
        _ => "none".to_string(),
    }
}
