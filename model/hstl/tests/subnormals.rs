//! No subnormal float on the hot path: some cores (Intel's) take a microcode assist on each one they
//! read or write, and GeM's `clamp(x, 1e-6)^p` (p ≈ 6.5) makes one of every value it clamps. Checked
//! on tract's optimised plan and, with feature `ort`, on every node of ONNX Runtime's graph.

use hstl::backend::tract::TractEmbedder;
use hstl::casia_b::read_subject;
use hstl::Silhouettes;
use test_support::shared_path;

/// 30-frame windows of validation subjects' walks, as the door sends them: normal, with a bag and
/// in a coat, from the side, the front and the back.
fn real_windows() -> Option<Vec<Silhouettes>> {
    let root = shared_path("data/casia-b/silhouettes")?;
    let walks = [
        ("070", "nm-01", "090"),
        ("071", "bg-01", "000"),
        ("072", "cl-01", "180"),
    ];
    Some(
        walks
            .iter()
            .map(|(subject, condition, view)| {
                let mut walk = read_subject(&root, subject, Some(&[view.to_string()]))
                    .unwrap()
                    .into_iter()
                    .find(|w| w.condition == *condition)
                    .unwrap();
                walk.truncate(30);
                walk.silhouettes().unwrap()
            })
            .collect(),
    )
}

fn shipped(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../weights")
        .join(name)
}

#[test]
fn the_shipped_models_make_no_subnormal_on_real_windows() {
    let Some(windows) = real_windows() else {
        return;
    };
    let mut found = Vec::new();
    for model in [
        "hstl-compact-casia-b.onnx",
        "hstl-compact-casia-b.int8.onnx",
    ] {
        let embedder = TractEmbedder::load(&shipped(model), 1).unwrap();
        for window in &windows {
            for (op, node, subnormal, values) in embedder.subnormal_outputs(window).unwrap() {
                found.push(format!(
                    "{model} on tract: {op} {node}: {subnormal} of {values}"
                ));
            }
            #[cfg(feature = "ort")]
            {
                let survey =
                    hstl::backend::onnxruntime::subnormal_outputs(&shipped(model), window).unwrap();
                // The graph's convolutions, activations, poolings and the rest: a survey that
                // read no float output would prove nothing.
                assert!(
                    survey.checked > 50,
                    "{model}: {} float outputs",
                    survey.checked
                );
                for (op, output, subnormal, values) in survey.subnormal {
                    found.push(format!(
                        "{model} on ONNX Runtime: {op} {output}: {subnormal} of {values}"
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
