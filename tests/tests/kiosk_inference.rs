//! The kiosk's path to the network: configuration → backend selection → embedding, checked
//! against the reference vectors in `../shared/parity`.

use std::fs::File;
use std::path::PathBuf;

use firmware_app::inference::{open_embedder, BackendChoice, InferenceConfig, InferenceError};
use hstl::onnx_graph::{write_model, ExportOptions};
use hstl::{Embedding, Silhouettes, Weights};
use ndarray::ArrayD;
use ndarray_npy::NpzReader;

fn parity_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HSTL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("parity");
    if dir.join("hstl_casiab_dev.pt").is_file() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("REQUIRE_SHARED").as_deref(),
        Ok("1"),
        "REQUIRE_SHARED=1 but {} is missing",
        dir.display()
    );
    eprintln!("SKIPPED: {} not found", dir.display());
    None
}

fn array(reader: &mut NpzReader<File>, name: &str) -> ArrayD<f32> {
    let a: ArrayD<f32> = reader.by_name(name).unwrap();
    a.as_standard_layout().into_owned()
}

#[test]
fn every_backend_choice_reproduces_the_reference_embedding() {
    let Some(dir) = parity_dir() else { return };
    let weights = Weights::from_checkpoint(&dir.join("hstl_casiab_dev.pt"), None).unwrap();
    let model = std::env::temp_dir().join(format!("kiosk-inference-{}.onnx", std::process::id()));
    write_model(&weights, &ExportOptions::default(), &model).unwrap();
    let mut vectors =
        NpzReader::new(File::open(dir.join("hstl_casiab_dev_parity.npz")).unwrap()).unwrap();
    let sils = array(&mut vectors, "sil_33");
    let clip = Silhouettes::from_f32(sils.shape(), sils.as_slice().unwrap()).unwrap();
    let reference = Embedding::new(
        73,
        128,
        array(&mut vectors, "emb_33").into_raw_vec_and_offset().0,
    )
    .unwrap();

    let mut choices = vec![BackendChoice::Auto, BackendChoice::Tract];
    if cfg!(feature = "ort") {
        choices.push(BackendChoice::OnnxRuntime);
    }
    for backend in choices {
        let embedder = open_embedder(&InferenceConfig {
            model: model.clone(),
            backend,
            threads: 2,
        })
        .unwrap();
        let embedding = embedder.embed(&clip).unwrap();
        let worst = embedding
            .as_slice()
            .iter()
            .zip(reference.as_slice())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{backend:?} ({}): max |diff| {worst}",
            embedder.describe()
        );
    }
}

#[test]
fn asking_for_onnxruntime_without_it_is_a_clear_error() {
    if cfg!(feature = "ort") {
        return;
    }
    let model = std::env::temp_dir().join(format!("kiosk-no-ort-{}.onnx", std::process::id()));
    write_model(
        &Weights::seeded(hstl::Variant::CasiaB, 0),
        &ExportOptions::default(),
        &model,
    )
    .unwrap();
    let config = InferenceConfig {
        model,
        backend: BackendChoice::OnnxRuntime,
        threads: 1,
    };
    assert!(matches!(
        open_embedder(&config).err(),
        Some(InferenceError::OnnxRuntimeNotBuilt)
    ));
    let auto = open_embedder(&InferenceConfig {
        backend: BackendChoice::Auto,
        ..config
    })
    .unwrap();
    assert!(auto.describe().contains("tract"));
}
