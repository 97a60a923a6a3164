//! Writes the seed inputs of the targets whose files the kiosk itself makes (gallery, audit log, MQTT
//! queue, configuration, camera frames) into `fuzz/corpus/NAME/`, through the same code that makes
//! them in the field. The seeds of files that PyTorch and numpy make come from `fuzz/seeds.py`.
//!
//! `cargo run --workspace --bin fuzz-seeds -- fuzz/corpus` (from the repository root).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use access::audit::{AuditConfig, AuditLog};
use access::gallery::{Gallery, NewTemplate, TemplateKey};
use firmware_app::mqtt::DiskQueue;
use fuzzing::{probe_event, seed_chain_key, SEED_TEMPLATE_KEY};
use hstl::Embedding;

const PACKAGED_CONFIG: &str = include_str!("../../../../cross/package/kiosk.toml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let corpus = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: fuzz-seeds CORPUS_DIR")?,
    );
    configs(&corpus.join("kiosk_config"))?;
    gallery(&corpus.join("gallery"))?;
    audit_log(&corpus.join("audit_log"))?;
    mqtt_queue(&corpus.join("mqtt_queue"))?;
    frames(&corpus.join("silhouette_frames"))?;
    galleries_to_search(&corpus.join("matcher"))?;
    Ok(())
}

fn folder(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn configs(dir: &Path) -> std::io::Result<()> {
    folder(dir)?;
    std::fs::write(dir.join("packaged.toml"), PACKAGED_CONFIG)?;
    std::fs::write(
        dir.join("minimal.toml"),
        "door = \"front\"\n[model]\npath = \"model.onnx\"\n[source]\npath = \"walk.mp4\"\n\
         [gallery]\npath = \"gallery.db\"\n[audit]\npath = \"events.jsonl\"\n",
    )
}

fn gallery(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    folder(dir)?;
    let scratch = tempfile::tempdir()?;
    let path = scratch.path().join("gallery.db");
    let key = TemplateKey::from_hex(SEED_TEMPLATE_KEY)?;
    let mut gallery = Gallery::open(&path, Some(&key))?;
    let (parts, channels) = (4, 8);
    for (person, offset) in [("Ada", 0.0), ("Grace", 1.0)] {
        let templates: Vec<NewTemplate> = (0..2)
            .map(|t| NewTemplate {
                embedding: Embedding::new(
                    parts,
                    channels,
                    (0..parts * channels)
                        .map(|i| offset + (i + t) as f32 / 32.0)
                        .collect(),
                )
                .expect("the values fill the shape"),
                frames: 30,
                source: format!("walk {t}"),
            })
            .collect();
        gallery.enrol(person, "sha256:fuzz", &templates)?;
    }
    drop(gallery);
    std::fs::copy(&path, dir.join("two-people.db"))?;
    Ok(())
}

fn audit_log(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    folder(dir)?;
    let scratch = tempfile::tempdir()?;
    let config = AuditConfig {
        path: scratch.path().join("events.jsonl"),
        max_file_bytes: 1 << 20,
        keep_files: 2,
        key_file: None,
    };
    let mut log = AuditLog::open(config.clone(), Some(seed_chain_key()))?;
    for _ in 0..3 {
        log.append(&probe_event())?;
    }
    drop(log);
    std::fs::copy(&config.path, dir.join("three-events.jsonl"))?;
    Ok(())
}

fn mqtt_queue(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    folder(dir)?;
    let scratch = tempfile::tempdir()?;
    let path = scratch.path().join("queue.jsonl");
    let mut queue = DiskQueue::open(&path, 16)?;
    for _ in 0..3 {
        queue.push(&probe_event())?;
    }
    queue.acknowledge_front()?;
    drop(queue);
    std::fs::copy(&path, dir.join("two-waiting.jsonl"))?;
    Ok(())
}

/// A grey background, then a dark upright block walking across it; then the camera switches
/// resolution, and delivers an empty frame. The byte layout is `fuzzing::silhouette_frames`'s.
fn frames(dir: &Path) -> std::io::Result<()> {
    folder(dir)?;
    let (width, height) = (48u8, 36u8);
    let mut bytes = Vec::new();
    for index in 0..24usize {
        bytes.extend([width, height, 40]);
        let left = 2 + index.saturating_sub(2) * 2;
        for y in 0..usize::from(height) {
            for x in 0..usize::from(width) {
                let person = index >= 2 && (left..left + 6).contains(&x) && (6..32).contains(&y);
                bytes.push(if person { 20 } else { 140 });
            }
        }
    }
    bytes.extend([24, 18, 40]);
    bytes.extend(std::iter::repeat_n(140, 24 * 18));
    bytes.extend([0, 0, 40]);
    std::fs::write(dir.join("walker-then-resize.bin"), bytes)
}

/// Galleries for the matcher target, in its byte layout: the CASIA-B embedding's 8 parts at the most
/// channels the target allows, and a small odd shape; values from a fixed linear congruential
/// sequence.
fn galleries_to_search(dir: &Path) -> std::io::Result<()> {
    folder(dir)?;
    let mut state: u32 = 12_345;
    let mut noise = move || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (state >> 16) as u8
    };
    for (name, header) in [
        ("wide.bin", [7u8, 39, 5, 15, 1, 8]),
        ("odd.bin", [2, 6, 3, 6, 2, 12]),
    ] {
        let mut bytes = header.to_vec();
        bytes.extend((0..6_000).map(|_| noise()));
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
