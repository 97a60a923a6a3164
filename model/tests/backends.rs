//! The one backend choice (`auto`, `tract`, `ort`) that the command line, the kiosk's configuration
//! and enrolment name: each choice reproduces the reference vectors in `../shared/parity`.

use hstl::onnx_graph::{write_model, ExportOptions};
use hstl::{open_embedder, Backend, Embedding, Silhouettes, Weights};
use test_support::{parity_dir, Vectors};

#[test]
fn every_backend_choice_reproduces_the_reference_embedding() {
    let Some(dir) = parity_dir() else { return };
    let weights = Weights::from_checkpoint(&dir.join("hstl_casiab_dev.pt"), None).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let model = scratch.path().join("reference.onnx");
    write_model(&weights, &ExportOptions::default(), &model).unwrap();
    let mut vectors = Vectors::open(&dir);
    let sils = vectors.f32("sil_33");
    let clip = Silhouettes::from_f32(sils.shape(), sils.as_slice().unwrap()).unwrap();
    let reference =
        Embedding::new(73, 128, vectors.f32("emb_33").into_raw_vec_and_offset().0).unwrap();

    let mut choices = vec![Backend::Auto, Backend::Tract];
    if cfg!(feature = "ort") {
        choices.push(Backend::Ort);
    }
    for backend in choices {
        let embedder = open_embedder(&model, backend, 2).unwrap();
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

#[cfg(not(feature = "ort"))]
#[test]
fn asking_for_onnxruntime_without_it_is_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let model = scratch.path().join("seeded.onnx");
    write_model(
        &Weights::seeded(hstl::Variant::CasiaB, 0),
        &ExportOptions::default(),
        &model,
    )
    .unwrap();
    let refused = open_embedder(&model, Backend::Ort, 1).err().unwrap();
    assert!(matches!(refused, hstl::HstlError::OnnxRuntimeNotBuilt));
    assert!(refused.to_string().contains("--features ort"), "{refused}");
    let auto = open_embedder(&model, Backend::Auto, 1).unwrap();
    assert!(auto.describe().contains("tract"));
}

#[test]
fn the_choice_is_read_by_name_and_a_wrong_name_is_refused() {
    for name in Backend::NAMES {
        let parsed: Backend = name.parse().unwrap();
        let deserialised: Backend = serde_json::from_str(&format!("\"{name}\"")).unwrap();
        assert_eq!(parsed, deserialised, "{name}");
    }
    assert_eq!("ort".parse::<Backend>().unwrap(), Backend::Ort);
    let wrong = "gpu".parse::<Backend>().unwrap_err();
    assert!(wrong.to_string().contains("`gpu`"), "{wrong}");
    assert!(serde_json::from_str::<Backend>("\"gpu\"").is_err());
}
