//! Locating the third-party data in `../shared` that these tests read in place.

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared` beside the repository, or `HSTL_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("HSTL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// A file under `../shared`, or `None` (with a message) when absent and not required.
/// With `REQUIRE_SHARED=1` an absent file fails the test.
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    let path = shared_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!("REQUIRE_SHARED=1 but {} is missing", path.display());
    }
    eprintln!(
        "SKIPPED: {} not found (set HSTL_SHARED_DIR or REQUIRE_SHARED=1)",
        path.display()
    );
    None
}

/// HSTL with OpenGait's initialisation (seed 7) written as ONNX into `dir`: its path, its model id and
/// a tract embedder on 2 threads.
pub fn seeded_model(dir: &std::path::Path) -> (PathBuf, String, hstl::TractEmbedder) {
    let model = dir.join("model.onnx");
    hstl::onnx_graph::write_model(
        &hstl::Weights::seeded(hstl::Variant::CasiaB, 7),
        &hstl::onnx_graph::ExportOptions::default(),
        &model,
    )
    .unwrap();
    let id = hstl::model_id(&model).unwrap();
    let embedder = hstl::TractEmbedder::load(&model, 2).unwrap();
    (model, id, embedder)
}

/// Kiosk outputs with one sink, a hash-chained audit log in `dir`.
pub fn audited_outputs(
    dir: &std::path::Path,
) -> (
    firmware_app::kiosk::Outputs,
    firmware_app::audit::AuditConfig,
) {
    let audit = firmware_app::audit::AuditConfig {
        path: dir.join("events.jsonl"),
        max_file_bytes: 1 << 20,
        keep_files: 2,
    };
    let mut dispatcher = firmware_app::events::EventDispatcher::new(100);
    dispatcher.add(Box::new(
        firmware_app::audit::AuditLog::open(audit.clone(), None).unwrap(),
    ));
    let outputs = firmware_app::kiosk::Outputs {
        dispatcher,
        screen_dir: None,
        framebuffer: None,
        audit_head: None,
    };
    (outputs, audit)
}

/// Plays `source` through the kiosk loop: its decisions and the loop's figures.
pub fn play(
    source: Box<dyn firmware_app::source::FrameSource>,
    live: bool,
    engine: &mut firmware_app::kiosk::DoorEngine,
    outputs: &mut firmware_app::kiosk::Outputs,
) -> (
    Vec<firmware_app::kiosk::DecisionRecord>,
    firmware_app::kiosk::KioskStats,
) {
    let mut decisions = Vec::new();
    let stats = firmware_app::kiosk::run(
        source,
        live,
        firmware_app::silhouette::SilhouetteConfig::default(),
        2,
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
    gallery: &firmware_app::gallery::Gallery,
    model_id: String,
    embedder: hstl::TractEmbedder,
    decision: firmware_app::decision::DecisionConfig,
    accept_distance: f32,
) -> firmware_app::kiosk::DoorEngine {
    use hstl::Embedder;
    let index =
        firmware_app::matcher::MatchIndex::from_gallery(gallery, embedder.embedding_shape(), 2)
            .unwrap();
    firmware_app::kiosk::DoorEngine::new(
        door.into(),
        model_id,
        Box::new(embedder),
        index,
        firmware_app::decision::DecisionPolicy::new(decision, accept_distance),
    )
}
