//! The one backend choice (`auto`, `tract`, `ort`) that the command line, the kiosk's configuration
//! and enrolment name: each choice reproduces the reference vectors in `../shared/parity`, and runs
//! an int8 QDQ model as the graph says (tract on its int8 kernels); f16 is tract's alone.

use hstl::onnx_graph::{write_model, ExportOptions};
use hstl::{
    open_embedder, Backend, Embedder, Embedding, HstlError, Precision, Silhouettes, TractEmbedder,
    Variant, Weights,
};
use test_support::{parity_dir, relative_difference, Vectors};

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
        let embedder = open_embedder(&model, backend, 2, Precision::F32).unwrap();
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
    let refused = open_embedder(&model, Backend::Ort, 1, Precision::F32)
        .err()
        .unwrap();
    assert!(matches!(refused, hstl::HstlError::OnnxRuntimeNotBuilt));
    assert!(refused.to_string().contains("--features ort"), "{refused}");
    let auto = open_embedder(&model, Backend::Auto, 1, Precision::F32).unwrap();
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

/// The QDQ graph exactly as written, run by tract's own operators (which compute it in float).
fn qdq_in_float(bytes: &[u8], clip: &Silhouettes) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let shape = [1, clip.frames(), 64, 44];
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap();
    let input = Tensor::from_shape(&shape, clip.as_slice()).unwrap();
    let output = plan.run(tvec!(input.into_tvalue())).unwrap();
    let view = output[0].to_plain_array_view::<f32>().unwrap();
    view.iter().copied().collect()
}

#[test]
fn an_int8_model_runs_its_convolutions_on_int8_kernels_as_the_qdq_graph_says() {
    let weights = Weights::seeded(Variant::Compact, 7);
    let clip = test_support::swaying_blob(12);
    let scratch = tempfile::tempdir().unwrap();
    let (float_model, int8_model) = (
        scratch.path().join("compact.onnx"),
        scratch.path().join("compact.int8.onnx"),
    );
    write_model(&weights, &ExportOptions::default(), &float_model).unwrap();
    let int8_bytes = test_support::int8_model(&weights, &clip);
    std::fs::write(&int8_model, &int8_bytes).unwrap();

    let fused = TractEmbedder::load(&int8_model, 2).unwrap();
    assert_eq!(fused.int8_convolutions(), 13);
    assert!(
        fused.describe().contains("13 int8 convolutions"),
        "{}",
        fused.describe()
    );
    let int8 = fused.embed(&clip).unwrap();
    let as_written = qdq_in_float(&int8_bytes, &clip);
    let exactness = relative_difference(&as_written, int8.as_slice());
    assert!(
        exactness < 1e-5,
        "the int8 kernels are off the QDQ graph by {exactness} of its norm"
    );
    let float = TractEmbedder::load(&float_model, 2)
        .unwrap()
        .embed(&clip)
        .unwrap();
    assert_eq!(float.as_slice().len(), int8.as_slice().len());
    let cost = relative_difference(float.as_slice(), int8.as_slice());
    assert!(cost > 0.0, "the int8 model computed exactly the float one");
    assert!(cost < 0.05, "int8 embedding off by {cost} of its norm");

    if cfg!(feature = "ort") {
        let ort = open_embedder(&int8_model, Backend::Ort, 2, Precision::F32).unwrap();
        let theirs = ort.embed(&clip).unwrap();
        let difference = relative_difference(&as_written, theirs.as_slice());
        assert!(
            difference < 1e-3,
            "ONNX Runtime ({}) is off the QDQ graph by {difference} of its norm",
            ort.describe()
        );
    }
}

#[test]
fn half_precision_is_tract_s_and_the_names_are_read() {
    let scratch = tempfile::tempdir().unwrap();
    let model = test_support::seeded_model(scratch.path());
    let refused = open_embedder(&model, Backend::Ort, 1, Precision::F16)
        .err()
        .unwrap();
    assert!(
        matches!(refused, HstlError::HalfPrecisionNeedsTract),
        "{refused}"
    );
    // Where f16 is emulated it would take minutes per window: refused by name.
    match open_embedder(&model, Backend::Auto, 1, Precision::F16) {
        Ok(auto) => {
            assert!(hstl::backend::native_half_precision());
            assert!(auto.describe().contains("f16"), "{}", auto.describe());
        }
        Err(error) => {
            assert!(!hstl::backend::native_half_precision());
            assert!(matches!(error, HstlError::HalfPrecisionEmulated), "{error}");
        }
    }
    #[cfg(target_arch = "x86_64")]
    assert!(!hstl::backend::native_half_precision());
    assert_eq!("f16".parse::<Precision>().unwrap(), Precision::F16);
    for name in Precision::NAMES {
        let deserialised: Precision = serde_json::from_str(&format!("\"{name}\"")).unwrap();
        assert_eq!(name.parse::<Precision>().unwrap(), deserialised);
    }
    assert!("bf16"
        .parse::<Precision>()
        .unwrap_err()
        .to_string()
        .contains("`bf16`"));
}
