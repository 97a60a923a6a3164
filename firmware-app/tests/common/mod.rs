//! What the kiosk's tests share: a seeded model with its embedder, audited outputs, a door engine
//! and a replay of a source through the kiosk loop.

#![allow(dead_code)]

#[cfg(feature = "mqtt")]
pub mod broker;

use std::path::PathBuf;

/// The compact HSTL with OpenGait's initialisation (seed 7) written as ONNX into `dir`: its path, its model id and
/// its walks streamed on tract on 2 threads.
pub fn seeded_model(
    dir: &std::path::Path,
) -> (PathBuf, String, hstl::streaming::StreamingEmbedder) {
    let model = test_support::seeded_model(dir);
    let id = hstl::model_id(&model).unwrap();
    let embedder = hstl::streaming::StreamingEmbedder::load_tract(&model, 2).unwrap();
    (model, id, embedder)
}

/// The shipped trained model (`model/weights/`): its path, its model id, its walks streamed on tract
/// on 2 threads and its calibrated accept distance.
pub fn shipped_model() -> (PathBuf, String, hstl::streaming::StreamingEmbedder, f32) {
    let model = hstl::shipped::source_tree_model();
    let id = hstl::model_id(&model).unwrap();
    let point = hstl::OperatingPoint::load_for(&model, &id)
        .unwrap()
        .expect("the shipped model carries its operating point");
    let embedder = hstl::streaming::StreamingEmbedder::load_tract(&model, 2).unwrap();
    (model, id, embedder, point.accept_distance)
}

/// Kiosk outputs with one sink, a hash-chained audit log in `dir`.
pub fn audited_outputs(
    dir: &std::path::Path,
) -> (
    firmware_app::kiosk_loop::Outputs,
    access::audit::AuditConfig,
) {
    let audit = access::audit::AuditConfig {
        path: dir.join("events.jsonl"),
        max_file_bytes: 1 << 20,
        keep_files: 2,
        key_file: None,
    };
    let mut dispatcher = access::events::EventDispatcher::new(100);
    dispatcher.add(Box::new(
        access::audit::AuditLog::open(audit.clone(), None).unwrap(),
    ));
    let outputs = firmware_app::kiosk_loop::Outputs {
        dispatcher,
        screen_dir: None,
        framebuffer: None,
        audit_head: None,
        news: None,
        on_status: None,
    };
    (outputs, audit)
}

/// Plays `source` through the kiosk loop: its decisions and the loop's figures.
pub fn play(
    source: Box<dyn silhouette::source::FrameSource>,
    live: bool,
    engine: &mut firmware_app::kiosk_loop::DoorEngine,
    outputs: &mut firmware_app::kiosk_loop::Outputs,
) -> (
    Vec<firmware_app::kiosk_loop::DecisionRecord>,
    firmware_app::kiosk_loop::KioskStats,
) {
    let mut decisions = Vec::new();
    let config = firmware_app::kiosk_loop::LoopConfig {
        live,
        silhouettes: silhouette::SilhouetteConfig::default(),
        max_windows_in_flight: 2,
        status_every: firmware_app::kiosk_loop::STATUS_EVERY,
    };
    let stats = firmware_app::kiosk_loop::run(
        source,
        &config,
        engine,
        outputs,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        &mut |r| decisions.push(r.clone()),
    )
    .unwrap();
    (decisions, stats)
}

/// The kiosk's engine for `gallery` with `embedder` and the decision settings of the test.
pub fn door_engine(
    door: &str,
    gallery: &access::gallery::Gallery,
    model_id: String,
    embedder: hstl::streaming::StreamingEmbedder,
    decision: access::decision::DecisionConfig,
    accept_distance: f32,
) -> firmware_app::kiosk_loop::DoorEngine {
    let index =
        access::matcher::MatchIndex::from_gallery(gallery, embedder.embedding_shape(), 2).unwrap();
    firmware_app::kiosk_loop::DoorEngine::new(
        door.into(),
        model_id,
        embedder,
        index,
        access::decision::DecisionPolicy::new(decision, accept_distance),
    )
}

/// The kiosk's engine for `gallery` without a margin rule, accepting within `accept_distance`: a
/// replay of an enrolled walk (distance under 1e-4), or a trained model's operating point.
pub fn door_engine_without_margin(
    door: &str,
    gallery: &access::gallery::Gallery,
    model_id: String,
    embedder: hstl::streaming::StreamingEmbedder,
    accept_distance: f32,
) -> firmware_app::kiosk_loop::DoorEngine {
    door_engine(
        door,
        gallery,
        model_id,
        embedder,
        access::decision::DecisionConfig {
            relative_margin: 0.0,
            ..access::decision::DecisionConfig::default()
        },
        accept_distance,
    )
}
