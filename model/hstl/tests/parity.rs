//! The published HSTL, as captured in `../shared/parity`, reproduced through our checkpoint
//! reader, our ONNX graph and the tract backend (and ONNX Runtime with feature `ort`).
//! Each stage this checks is listed in `model/PARITY.md`.

use std::sync::OnceLock;

use hstl::backend::tract::NamedOutputs;
use hstl::onnx_graph::{build_model, ExportOptions};
use hstl::{Embedding, Silhouettes, TractEmbedder, Variant, Weights};
use prost::Message;
use test_support::parity_dir;
use test_support::{assert_close, Vectors};

/// Comfortable for float32 against the float32 reference (spec: they differ by ~2e-6 from float64).
const EMBEDDING_ATOL: f32 = 1e-4;
const INTERMEDIATE_RTOL: f32 = 1e-3;
const INTERMEDIATE_ATOL: f32 = 1e-6;

/// The parity checkpoint exported with its intermediate tensors as extra outputs.
fn model_bytes() -> Option<&'static [u8]> {
    static BYTES: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let dir = parity_dir()?;
            let weights = Weights::from_checkpoint(&dir.join("hstl_casiab_dev.pt"), None).unwrap();
            Some(
                build_model(
                    &weights,
                    &ExportOptions {
                        intermediate_outputs: true,
                        ..ExportOptions::default()
                    },
                )
                .unwrap()
                .encode_to_vec(),
            )
        })
        .as_deref()
}

fn tract() -> Option<&'static TractEmbedder> {
    static EMBEDDER: OnceLock<Option<TractEmbedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| Some(TractEmbedder::from_bytes(model_bytes()?, "parity.onnx", 2).unwrap()))
        .as_ref()
}

fn output<'a>(outputs: &'a NamedOutputs, name: &str) -> &'a (String, Vec<usize>, Vec<f32>) {
    outputs
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| {
            let names: Vec<&String> = outputs.iter().map(|o| &o.0).collect();
            panic!("no output {name} among {names:?}")
        })
}

fn clip(vectors: &mut Vectors, frames: usize) -> Silhouettes {
    let sils = vectors.f32(&format!("sil_{frames}"));
    Silhouettes::from_f32(sils.shape(), sils.as_slice().unwrap()).unwrap()
}

/// Every stage of the network against the reference, for one clip length.
pub fn check_all_stages(outputs: &NamedOutputs, vectors: &mut Vectors, frames: usize) {
    let (_, shape, emb) = &outputs[0];
    assert_eq!(shape, &[1, 73, 128]);
    assert_close(
        &format!("emb_{frames}"),
        emb,
        vectors.f32(&format!("emb_{frames}")).as_slice().unwrap(),
        EMBEDDING_ATOL,
        0.0,
    );

    // The reference keeps the pre-BatchNorm head output as [N, P, C]; ours is [N, C, P] there.
    let (_, shape, gait) = output(outputs, "gait");
    let (c, p) = (shape[1], shape[2]);
    let gait_parts_first: Vec<f32> = (0..p)
        .flat_map(|part| (0..c).map(move |ch| gait[ch * p + part]))
        .collect();
    let want = vectors.f32(&format!("gait_{frames}"));
    assert_close(
        "gait",
        &gait_parts_first,
        want.as_slice().unwrap(),
        INTERMEDIATE_ATOL,
        INTERMEDIATE_RTOL,
    );

    for (ours, reference) in [
        ("feat", "feat"),
        ("astp1", "astp1"),
        ("astp2", "astp2"),
        ("astp2_fta", "astp2_fta"),
        ("astp3", "astp3"),
        ("hpp", "astp4"),
        ("tmax_arme1", "tmax_arme1"),
        ("tmax_arme2", "tmax_arme2"),
        ("tmax_fta", "tmax_fta"),
        ("tmax_arme3", "tmax_arme3"),
    ] {
        let want = vectors.f32(&format!("{reference}_{frames}"));
        let (_, shape, got) = output(outputs, ours);
        assert_eq!(shape.as_slice(), want.shape(), "{ours} shape");
        assert_close(
            &format!("{ours} vs {reference}_{frames}"),
            got,
            want.as_slice().unwrap(),
            INTERMEDIATE_ATOL,
            INTERMEDIATE_RTOL,
        );
    }

    // First three frames of the first stage: the zero padding in time at the clip start.
    let (_, shape, arme1) = output(outputs, "arme1");
    let (c, t, hw) = (shape[1], shape[2], shape[3] * shape[4]);
    let first_three: Vec<f32> = (0..c)
        .flat_map(|ch| arme1[(ch * t) * hw..(ch * t + 3) * hw].iter().copied())
        .collect();
    let want = vectors.f32(&format!("arme1_t0to2_{frames}"));
    assert_close(
        "arme1 frames 0-2",
        &first_three,
        want.as_slice().unwrap(),
        INTERMEDIATE_ATOL,
        INTERMEDIATE_RTOL,
    );

    // Channels 0-3 of the temporal aggregation: FTA's T/3 frames and its branch weighting.
    let (_, shape, fta) = output(outputs, "fta");
    assert_eq!(shape[2], frames / 3, "FTA keeps floor(T/3) frames");
    let per_channel = shape[2] * shape[3] * shape[4];
    let want = vectors.f32(&format!("fta_c0to3_{frames}"));
    assert_close(
        "fta channels 0-3",
        &fta[..4 * per_channel],
        want.as_slice().unwrap(),
        INTERMEDIATE_ATOL,
        INTERMEDIATE_RTOL,
    );
}

#[test]
fn checkpoint_is_read_as_the_73_part_casia_b_model() {
    let Some(dir) = parity_dir() else { return };
    let weights = Weights::from_checkpoint(&dir.join("hstl_casiab_dev.pt"), None).unwrap();
    assert_eq!(weights.variant(), Variant::CasiaB);
    assert_eq!(weights.training_classes(), Some(74));
    // GeM exponents differ per region in this checkpoint, so a swapped band would show.
    let p0 = weights.get("astp3.hpp.0.p").unwrap().data[0];
    let p3 = weights.get("astp3.hpp.3.p").unwrap().data[0];
    assert_ne!(p0, p3);
}

#[test]
fn tract_reproduces_the_reference_on_8_frames() {
    let Some(dir) = parity_dir() else { return };
    let mut vectors = Vectors::open(&dir);
    let outputs = tract()
        .unwrap()
        .run_all_outputs(&clip(&mut vectors, 8))
        .unwrap();
    check_all_stages(&outputs, &mut vectors, 8);
}

#[test]
fn tract_reproduces_the_reference_on_33_frames() {
    let Some(dir) = parity_dir() else { return };
    let mut vectors = Vectors::open(&dir);
    let outputs = tract()
        .unwrap()
        .run_all_outputs(&clip(&mut vectors, 33))
        .unwrap();
    check_all_stages(&outputs, &mut vectors, 33);
}

#[test]
fn reference_distance_between_the_two_walks() {
    let Some(dir) = parity_dir() else { return };
    let mut vectors = Vectors::open(&dir);
    let embed = |v: &mut Vectors, frames| {
        let (_, _, values) = tract()
            .unwrap()
            .run_all_outputs(&clip(v, frames))
            .unwrap()
            .swap_remove(0);
        Embedding::new(73, 128, values).unwrap()
    };
    let (a, b) = (embed(&mut vectors, 33), embed(&mut vectors, 8));
    let d = a.distance(&b).unwrap();
    let reference = |v: &mut Vectors, frames| {
        let e = v.f64(&format!("emb64_{frames}"));
        Embedding::new(73, 128, e.iter().map(|&x| x as f32).collect()).unwrap()
    };
    let d_ref = reference(&mut vectors, 33)
        .distance(&reference(&mut vectors, 8))
        .unwrap();
    assert!((d_ref - 3.7604).abs() < 1e-4, "reference distance {d_ref}");
    assert!((d - d_ref).abs() < 1e-4, "ours {d}, reference {d_ref}");
}

#[cfg(feature = "ort")]
mod onnxruntime {
    use super::*;
    use hstl::backend::onnxruntime::OrtEmbedder;

    fn ort() -> Option<&'static OrtEmbedder> {
        static EMBEDDER: OnceLock<Option<OrtEmbedder>> = OnceLock::new();
        EMBEDDER
            .get_or_init(|| {
                let dir = tempfile::Builder::new()
                    .prefix("hstl-parity-")
                    .tempdir()
                    .unwrap();
                let path = dir.path().join("parity.onnx");
                std::fs::write(&path, model_bytes()?).unwrap();
                Some(OrtEmbedder::load(&path, 2).unwrap())
            })
            .as_ref()
    }

    #[test]
    fn onnxruntime_reproduces_the_reference_on_8_frames() {
        let Some(dir) = parity_dir() else { return };
        let mut vectors = Vectors::open(&dir);
        let outputs = ort()
            .unwrap()
            .run_all_outputs(&clip(&mut vectors, 8))
            .unwrap();
        check_all_stages(&outputs, &mut vectors, 8);
    }

    #[test]
    fn onnxruntime_reproduces_the_reference_on_33_frames() {
        let Some(dir) = parity_dir() else { return };
        let mut vectors = Vectors::open(&dir);
        let outputs = ort()
            .unwrap()
            .run_all_outputs(&clip(&mut vectors, 33))
            .unwrap();
        check_all_stages(&outputs, &mut vectors, 33);
    }

    #[test]
    fn onnxruntime_tiles_one_frame_clips_like_tract() {
        let Some(dir) = parity_dir() else { return };
        let mut vectors = Vectors::open(&dir);
        let eight = clip(&mut vectors, 8);
        let first = Silhouettes::from_f32(&[1, 64, 44], &eight.as_slice()[..64 * 44]).unwrap();
        let a = hstl::Embedder::embed(ort().unwrap(), &first).unwrap();
        let b = hstl::Embedder::embed(tract().unwrap(), &first).unwrap();
        assert!(a.distance(&b).unwrap() < 1e-4);
    }
}
