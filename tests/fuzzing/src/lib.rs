//! What each fuzz target does with its bytes. The cargo-fuzz crate (`fuzz/`) calls these from its
//! targets, and `tests/replay.rs` runs every file of every target's corpus and regressions through
//! them in the ordinary test run, so a finding, once pinned, stays fixed without a fuzzer.
//!
//! Every input reaches the product the way a file from outside does: written to disk and opened
//! through the same call the kiosk, `enrol`, `hstl` or `calibrate` makes. A target may get an error;
//! it must never panic, abort, overflow its stack or allocate without bound.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use access::audit::{repair_torn_end, verify, AuditConfig, AuditLog, ChainKey};
use access::events::{Event, EventKind};
use access::gallery::{Gallery, TemplateKey};
use access::matcher::{Identity, MatchIndex};
use access::vocabulary::DenialReason;
use firmware_app::config::KioskConfig;
use firmware_app::mqtt::DiskQueue;
use hstl::Embedding;
use silhouette::{Frame, SilhouetteConfig, SilhouettePipeline};

/// A fuzz target: its name (the file `fuzz/fuzz_targets/NAME.rs`, the folders
/// `fuzz/corpus/NAME/` and `fuzz/regressions/NAME/`) and what it does with one input.
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
}

/// Every target, in the order the README lists them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "checkpoint",
        run: checkpoint,
    },
    Target {
        name: "pickle",
        run: pickle,
    },
    Target {
        name: "opengait_pickle",
        run: opengait_pickle,
    },
    Target {
        name: "npy",
        run: npy,
    },
    Target {
        name: "casia_b_archive",
        run: casia_b_archive,
    },
    Target {
        name: "onnx_model",
        run: onnx_model,
    },
    Target {
        name: "kiosk_config",
        run: kiosk_config,
    },
    Target {
        name: "gallery",
        run: gallery,
    },
    Target {
        name: "audit_log",
        run: audit_log,
    },
    Target {
        name: "mqtt_queue",
        run: mqtt_queue,
    },
    Target {
        name: "silhouette_frames",
        run: silhouette_frames,
    },
    Target {
        name: "matcher",
        run: matcher,
    },
];

/// The template key of the seed gallery: fixed, so that its sealed templates open under fuzzing.
pub const SEED_TEMPLATE_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The door the seed files name.
pub const SEED_DOOR: &str = "front";

/// A file holding `data` in a folder of its own, removed when dropped.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn with(name: &str, data: &[u8]) -> (Self, PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join(name);
        std::fs::write(&path, data).expect("the input is written");
        (Scratch { dir }, path)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A PyTorch checkpoint (a zip holding a pickle and its tensors), read as `hstl export` reads one.
pub fn checkpoint(data: &[u8]) {
    let (_scratch, path) = Scratch::with("model.pt", data);
    if let Ok(state) = hstl::checkpoint::read_state_dict(&path) {
        let _ = hstl::Weights::from_state_dict(state, None);
    }
}

/// The pickle machine alone, on the bytes of a checkpoint's `data.pkl` or any pickle.
pub fn pickle(data: &[u8]) {
    let _ = hstl::pickle::parse(data);
}

/// One walk as OpenGait's pretreatment pickles it (`SSS/COND/VVV/VVV.pkl`).
pub fn opengait_pickle(data: &[u8]) {
    let (_scratch, path) = Scratch::with("090.pkl", data);
    let _ = hstl::casia_b::read_pickled_frames(&path);
}

/// A clip of silhouettes as `.npy`, as `hstl embed --input` and the site walks read it.
pub fn npy(data: &[u8]) {
    let (_scratch, path) = Scratch::with("walk.npy", data);
    let _ = hstl::Silhouettes::read_npy(&path);
}

/// One subject's packed CASIA-B archive (`casia-b_SSS.npz`), as `hstl eval` and `calibrate` read it.
pub fn casia_b_archive(data: &[u8]) {
    let (scratch, _) = Scratch::with("casia-b_001.npz", data);
    if let Ok(walks) = hstl::casia_b::read_subject(scratch.path(), "001", None) {
        for walk in walks {
            let _ = walk.silhouettes();
        }
    }
}

/// An ONNX model: `hstl inspect`'s reading, then tract's loading with the interface checks.
pub fn onnx_model(data: &[u8]) {
    // libFuzzer's harness aborts in the panic hook, before a panic unwinds; the model loader turns
    // a panic inside tract into an error (a broken file is refused, not a crash), which needs the
    // unwinding. A panic that escapes the loader still aborts, at the harness's boundary.
    static PRINTING_HOOK: std::sync::Once = std::sync::Once::new();
    PRINTING_HOOK.call_once(|| std::panic::set_hook(Box::new(|panic| eprintln!("{panic}"))));
    let (_scratch, path) = Scratch::with("model.onnx", data);
    let _ = hstl::model_info::ModelInfo::of_path(&path);
    let _ = hstl::TractEmbedder::from_bytes(data, "fuzzed model", 1);
}

/// `kiosk.toml`, read and checked as the kiosk starts.
pub fn kiosk_config(data: &[u8]) {
    let (_scratch, path) = Scratch::with("kiosk.toml", data);
    let _ = KioskConfig::load(&path);
}

/// The gallery file: opened as the kiosk opens an existing one, everything read, the match index
/// built.
pub fn gallery(data: &[u8]) {
    let (_scratch, path) = Scratch::with("gallery.db", data);
    let key = TemplateKey::from_hex(SEED_TEMPLATE_KEY).expect("the seed key is valid hex");
    let Ok(gallery) = Gallery::open_existing(&path, Some(&key)) else {
        return;
    };
    let _ = gallery.people();
    if let Ok(templates) = gallery.templates() {
        if let Some(first) = templates.first() {
            let shape = (first.embedding.parts(), first.embedding.channels());
            let _ = MatchIndex::from_gallery(&gallery, shape, 1);
        }
    }
}

/// The audit log's live file: verified, its torn end repaired, reopened by the kiosk and appended to.
pub fn audit_log(data: &[u8]) {
    let (_scratch, path) = Scratch::with("events.jsonl", data);
    let config = AuditConfig {
        path,
        max_file_bytes: 1 << 20,
        keep_files: 2,
        key_file: None,
    };
    let key = seed_chain_key();
    let _ = verify(&config, Some(&key), &[]);
    let _ = repair_torn_end(&config.path);
    if let Ok(mut log) = AuditLog::open(config, Some(key)) {
        let _ = log.append(&probe_event());
    }
}

/// The MQTT queue on disk: reopened after a power loss, then used.
pub fn mqtt_queue(data: &[u8]) {
    let (_scratch, path) = Scratch::with("mqtt-queue.jsonl", data);
    if let Ok(mut queue) = DiskQueue::open(&path, 16) {
        let _ = queue.push(&probe_event());
        let _ = queue.acknowledge_front();
        let _ = DiskQueue::open(&path, 16);
    }
}

/// Frames of any size, sizes changing between frames, into the silhouette stage.
///
/// The input is a sequence of frames, each: width (1 byte, 0–96), height (1 byte, 0–96), the time
/// since the last frame in milliseconds (1 byte), then `width × height` luma bytes (short input is
/// padded with black). The first frames also teach the background.
pub fn silhouette_frames(data: &[u8]) {
    const MAX_SIDE: u8 = 96;
    const MAX_FRAMES: u64 = 64;
    const BACKGROUND_FRAMES: u64 = 2;
    let mut stage = SilhouettePipeline::new(SilhouetteConfig::default());
    let mut rest = data;
    let mut timestamp = Duration::ZERO;
    let mut index = 0;
    while let [width, height, step_ms, pixels @ ..] = rest {
        let (width, height) = (
            u32::from(width % (MAX_SIDE + 1)),
            u32::from(height % (MAX_SIDE + 1)),
        );
        let area = (width * height) as usize;
        let taken = area.min(pixels.len());
        let mut luma = pixels[..taken].to_vec();
        luma.resize(area, 0);
        rest = &pixels[taken..];
        timestamp += Duration::from_millis(u64::from(*step_ms));
        let frame = Frame {
            index,
            timestamp,
            image: image::GrayImage::from_raw(width, height, luma)
                .expect("the buffer holds width × height bytes"),
        };
        if index < BACKGROUND_FRAMES {
            stage.learn_background(&frame);
        } else {
            stage.process(&frame);
        }
        index += 1;
        if index == MAX_FRAMES {
            break;
        }
    }
    stage.finish();
}

/// The chain key that seals the seed audit log.
pub fn seed_chain_key() -> ChainKey {
    ChainKey::new([0x5e; 32])
}

/// The event the targets append to the files they open.
pub fn probe_event() -> Event {
    Event {
        at_ms: 1_764_000_000_000,
        track: Some(1),
        decided: None,
        ..Event::new(
            SEED_DOOR,
            "sha256:fuzz",
            EventKind::Denied {
                reason: DenialReason::Unknown,
            },
        )
    }
}

/// The matcher (its AVX2 prefilter included) against measuring every template, on galleries of any
/// shape: the two nearest identities must be the same distances away. Under the fuzzer's
/// AddressSanitizer build this is also where the prefilter's `unsafe` loads and stores are checked.
///
/// The input: parts (1–8), channels (1–40), people (1–6), templates (1–16), threads (1–3) and a
/// scale (2^-8–2^7), one byte each; then for each template its owner and its values, then the
/// probe's values, one byte each (a signed byte times the scale; missing bytes are zero).
pub fn matcher(data: &[u8]) {
    let mut bytes = data.iter().copied().chain(std::iter::repeat(0));
    let mut next = move || bytes.next().expect("an endless stream");
    let parts = 1 + usize::from(next() % 8);
    let channels = 1 + usize::from(next() % 40);
    let people = 1 + usize::from(next() % 6);
    let template_count = 1 + usize::from(next() % 16);
    let threads = 1 + usize::from(next() % 3);
    let scale = 2f32.powi(i32::from(next() % 16) - 8);
    let embedding = |next: &mut dyn FnMut() -> u8| {
        let values = (0..parts * channels)
            .map(|_| f32::from(next() as i8) * scale)
            .collect();
        Embedding::new(parts, channels, values).expect("finite values of the shape")
    };
    let mut index = MatchIndex::new(parts, channels, threads);
    for person in 0..people {
        index.add_identity(Identity {
            person_id: person as i64,
            pseudonym: format!("p{person}"),
            name: format!("person {person}"),
            credential: None,
        });
    }
    let mut templates = Vec::new();
    for _ in 0..template_count {
        let owner = usize::from(next()) % people;
        let template = embedding(&mut next);
        index.push(owner, &template).expect("the index's shape");
        templates.push((owner, template));
    }
    let probe = embedding(&mut next);
    let ranking = index.search(&probe).expect("the index's shape");

    let mut nearest = vec![f32::INFINITY; people];
    for (owner, template) in &templates {
        let distance = probe.distance(template).expect("the same shape");
        nearest[*owner] = nearest[*owner].min(distance);
    }
    let mut expected: Vec<f32> = nearest.into_iter().filter(|d| d.is_finite()).collect();
    expected.sort_by(f32::total_cmp);
    let found: Vec<f32> = [ranking.best.clone(), ranking.second.clone()]
        .into_iter()
        .flatten()
        .map(|candidate| candidate.distance)
        .collect();
    assert_eq!(
        found.len(),
        expected.len().min(2),
        "{ranking:?} of {expected:?}"
    );
    for (found, expected) in found.iter().zip(&expected) {
        assert!(
            (found - expected).abs() <= 1e-4 * expected.max(1.0),
            "the matcher found {found}, measuring every template {expected}"
        );
    }
}
