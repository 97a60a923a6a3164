//! Properties of the network that hold for any weights: clip-length handling, all three
//! variants, checkpoint round trips, and clear errors for bad files.

use std::sync::Arc;

use hstl::checkpoint::{read_state_dict, write_state_dict, TensorData};
use hstl::onnx_graph::{build_model, write_model, ExportOptions};
use hstl::{Embedder, HstlError, Silhouettes, TractEmbedder, Variant, Weights};
use prost::Message;

fn embedder(variant: Variant, seed: u64) -> TractEmbedder {
    let bytes = build_model(&Weights::seeded(variant, seed), &ExportOptions::default())
        .unwrap()
        .encode_to_vec();
    TractEmbedder::from_bytes(&bytes, "seeded.onnx", 1).unwrap()
}

/// Deterministic binary frames with some structure (a moving bar and a blob).
fn frames(count: usize, offset: usize) -> Vec<u8> {
    let mut data = vec![0u8; count * 64 * 44];
    for t in 0..count {
        for y in 8..60 {
            for x in 0..44 {
                let bar = (x + t + offset) % 11 < 4;
                let blob = (x as i32 - 22).pow(2) + (y as i32 - 30).pow(2)
                    < 90 + 10 * ((t + offset) % 3) as i32;
                data[(t * 64 + y) * 44 + x] = if bar || blob { 255 } else { 0 };
            }
        }
    }
    data
}

fn clip(data: &[u8]) -> Silhouettes {
    Silhouettes::from_u8(&[data.len() / (64 * 44), 64, 44], data).unwrap()
}

/// A folder of the test's own, removed when the test ends.
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hstl-test-")
        .tempdir()
        .unwrap()
}

#[test]
fn one_and_two_frame_clips_are_tiled_like_the_reference() {
    let e = embedder(Variant::CasiaB, 11);
    let f0 = frames(1, 0);
    let f1 = frames(1, 5);
    let single = e.embed(&clip(&f0)).unwrap();
    let tripled = e
        .embed(&clip(&[f0.clone(), f0.clone(), f0.clone()].concat()))
        .unwrap();
    assert!(single.distance(&tripled).unwrap() < 1e-6);

    let pair = e.embed(&clip(&[f0.clone(), f1.clone()].concat())).unwrap();
    let doubled = e
        .embed(&clip(
            &[f0.clone(), f1.clone(), f0.clone(), f1.clone()].concat(),
        ))
        .unwrap();
    let interleaved = e
        .embed(&clip(&[f0.clone(), f0.clone(), f1.clone(), f1].concat()))
        .unwrap();
    assert!(pair.distance(&doubled).unwrap() < 1e-6);
    assert!(
        pair.distance(&interleaved).unwrap() > 1e-4,
        "tiling must repeat the clip, not each frame"
    );
}

#[test]
fn any_clip_length_runs_and_plans_are_cached_per_length() {
    let e = embedder(Variant::CasiaB, 3);
    for t in [3, 4, 5, 7] {
        let emb = e.embed(&clip(&frames(t, 0))).unwrap();
        assert_eq!((emb.parts(), emb.channels()), (73, 128));
        assert!(emb.as_slice().iter().all(|v| v.is_finite()));
    }
    let first = e.plan(5).unwrap();
    assert!(Arc::ptr_eq(&first, &e.plan(5).unwrap()));
    let ops: Vec<String> = first
        .model()
        .nodes()
        .iter()
        .map(|n| n.op().name().to_string())
        .collect();
    assert!(
        !ops.iter().any(|op| op == "Reduce<Max>"),
        "temporal maxima should use StridedMax: {ops:?}"
    );
    assert_eq!(ops.iter().filter(|op| *op == "StridedMax").count(), 6);
}

#[test]
fn the_256_channel_variants_build_and_run() {
    for (variant, parts) in [(Variant::OuMvlp, 50), (Variant::Gait3d, 46)] {
        let e = embedder(variant, 1);
        assert_eq!(e.embedding_shape(), (parts, 256));
        let emb = e.embed(&clip(&frames(3, 0))).unwrap();
        assert_eq!((emb.parts(), emb.channels()), (parts, 256));
        assert!(emb.as_slice().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn the_compact_variant_reads_the_same_silhouettes_at_half_resolution() {
    let e = embedder(Variant::Compact, 1);
    assert_eq!(e.embedding_shape(), (41, 64));
    let walk = frames(12, 0);
    let emb = e.embed(&clip(&walk)).unwrap();
    assert_eq!((emb.parts(), emb.channels()), (41, 64));
    // The network sees each 2 × 2 cell's mean: moving ink within a cell changes nothing.
    let mut moved = walk.clone();
    for frame in moved.chunks_mut(64 * 44) {
        for row in (0..64).step_by(2) {
            for column in (0..44).step_by(2) {
                let (a, b) = (row * 44 + column, (row + 1) * 44 + column + 1);
                frame.swap(a, b);
            }
        }
    }
    let same = e.embed(&clip(&moved)).unwrap();
    assert!(emb.distance(&same).unwrap() < 1e-5);
    // Moving it across cells does.
    let shifted: Vec<u8> = walk
        .chunks(64 * 44)
        .flat_map(|frame| {
            let mut out = vec![0u8; 64 * 44];
            out[2 * 44..].copy_from_slice(&frame[..62 * 44]);
            out
        })
        .collect();
    let other = e.embed(&clip(&shifted)).unwrap();
    assert!(emb.distance(&other).unwrap() > 1e-3);
}

#[test]
fn checkpoint_files_round_trip() {
    let dir = temp_dir();
    let path = dir.path().join("roundtrip.pt");
    let weights = Weights::seeded(Variant::OuMvlp, 5);
    write_state_dict(&path, "roundtrip", &weights.to_state_dict(Some(1234))).unwrap();
    let state = read_state_dict(&path).unwrap();
    assert_eq!(state.iteration, Some(1234));
    let back = Weights::from_state_dict(state, None).unwrap();
    assert_eq!(back.variant(), Variant::OuMvlp);
    for (key, tensor) in weights.iter() {
        assert_eq!(back.get(key).unwrap(), tensor, "{key}");
    }
}

#[test]
fn truncated_and_foreign_files_are_refused_with_a_reason() {
    let dir = temp_dir();
    let path = dir.path().join("truncated.pt");
    write_state_dict(
        &path,
        "t",
        &Weights::seeded(Variant::CasiaB, 0).to_state_dict(None),
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Weights::from_checkpoint(&path, None).unwrap_err();
    assert!(matches!(err, HstlError::Archive(_)), "{err}");

    let foreign = dir.path().join("foreign.pt");
    std::fs::write(&foreign, b"this is a text file, not weights").unwrap();
    let err = Weights::from_checkpoint(&foreign, None).unwrap_err();
    assert!(matches!(err, HstlError::NotACheckpoint { .. }), "{err}");

    let legacy = dir.path().join("legacy.pt");
    std::fs::write(&legacy, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let err = Weights::from_checkpoint(&legacy, None).unwrap_err();
    assert!(err.to_string().contains("legacy"), "{err}");

    let err = Weights::from_checkpoint(&dir.path().join("does-not-exist.pt"), None).unwrap_err();
    assert!(matches!(err, HstlError::Io { .. }), "{err}");
}

#[test]
fn superseded_17_part_checkpoint_is_named_as_such() {
    let mut state = Weights::seeded(Variant::CasiaB, 0).to_state_dict(None);
    let head = state
        .entries
        .iter_mut()
        .find(|(k, _)| k == "Head0.fc_bin")
        .unwrap();
    head.1.shape = vec![17, 128, 128];
    head.1.data = TensorData::F32(vec![0.0; 17 * 128 * 128]);
    let dir = temp_dir();
    let path = dir.path().join("seventeen.pt");
    write_state_dict(&path, "seventeen", &state).unwrap();
    let err = Weights::from_checkpoint(&path, None).unwrap_err();
    assert!(matches!(err, HstlError::Superseded17Part { .. }), "{err}");
}

#[test]
fn models_with_the_wrong_interface_or_bytes_are_refused() {
    let mut model = build_model(
        &Weights::seeded(Variant::CasiaB, 0),
        &ExportOptions::default(),
    )
    .unwrap();
    let input = &mut model.graph.as_mut().unwrap().input[0];
    if let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) =
        input.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        let shape = t.shape.as_mut().unwrap();
        shape.dim.insert(1, shape.dim[0].clone());
    }
    let err = TractEmbedder::from_bytes(&model.encode_to_vec(), "five-d.onnx", 1)
        .err()
        .unwrap();
    assert!(err.to_string().contains("rank 5"), "{err}");

    let mut dangling = build_model(
        &Weights::seeded(Variant::Compact, 0),
        &ExportOptions::default(),
    )
    .unwrap();
    dangling.graph.as_mut().unwrap().output[0].name = "nowhere".into();
    let err = TractEmbedder::from_bytes(&dangling.encode_to_vec(), "dangling.onnx", 1)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("outputs [\"nowhere\"] are produced by no node"),
        "{err}"
    );

    let mut outputless = build_model(
        &Weights::seeded(Variant::Compact, 0),
        &ExportOptions::default(),
    )
    .unwrap();
    outputless.graph.as_mut().unwrap().output.clear();
    let err = TractEmbedder::from_bytes(&outputless.encode_to_vec(), "outputless.onnx", 1)
        .err()
        .unwrap();
    assert!(err.to_string().contains("has no output"), "{err}");

    // Found by the onnx_model fuzzer: a Flatten whose axis lies past its input's rank makes
    // tract's shape inference index out of bounds.
    let flatten = include_bytes!("../../../fuzz/regressions/onnx_model/flatten-axis-past-the-rank");
    let err = TractEmbedder::from_bytes(flatten, "flatten.onnx", 1)
        .err()
        .unwrap();
    assert!(err.to_string().contains("tract failed on it"), "{err}");

    let dir = temp_dir();
    let path = dir.path().join("garbage.onnx");
    std::fs::write(&path, [0x08u8, 0x07, 0xff, 0xff, 0x01]).unwrap();
    let err = TractEmbedder::load(&path, 1).err().unwrap();
    assert!(matches!(err, HstlError::BadModel { .. }), "{err}");
}

#[test]
fn written_models_load_from_disk() {
    let dir = temp_dir();
    let path = dir.path().join("seeded.onnx");
    write_model(
        &Weights::seeded(Variant::CasiaB, 9),
        &ExportOptions::default(),
        &path,
    )
    .unwrap();
    let info = hstl::model_info::ModelInfo::of_path(&path).unwrap();
    assert_eq!(info.variant, Some(Variant::CasiaB));
    assert_eq!(info.embedding_shape, (73, 128));
    assert_eq!(info.macs(30), Some(25_824_755_712));
    assert_eq!(
        TractEmbedder::load(&path, 1).unwrap().embedding_shape(),
        (73, 128)
    );
}

#[test]
fn a_model_records_how_it_wants_walks_oriented_and_every_backend_reads_it() {
    let weights = Weights::seeded(Variant::Compact, 2);
    let dir = temp_dir();
    let path = dir.path().join("rightwards.onnx");
    let options = ExportOptions {
        orientation: hstl::Orientation::Rightwards,
        ..ExportOptions::default()
    };
    write_model(&weights, &options, &path).unwrap();
    assert_eq!(
        TractEmbedder::load(&path, 1).unwrap().orientation(),
        hstl::Orientation::Rightwards
    );
    assert_eq!(
        hstl::Orientation::of_model(&path).unwrap(),
        hstl::Orientation::Rightwards
    );
    assert_eq!(
        embedder(Variant::Compact, 2).orientation(),
        hstl::Orientation::AsFilmed
    );
}
