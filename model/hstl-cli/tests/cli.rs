//! The `hstl` command line, end to end: the subcommands other tools and scripts rely on.

use std::path::Path;
use std::process::Command;

use ndarray::{Array2, Array3};
use ndarray_npy::{read_npy, write_npy};
use test_support::{parity_dir, Vectors};

fn hstl(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hstl"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A folder of the test's own, removed when the test ends (each run writes checkpoints of 30 MB).
fn workdir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hstl-cli-{test}-"))
        .tempdir()
        .unwrap()
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `hstl init` of `variant` from `seed`, written to `out` (a model, or a checkpoint for `.pt`).
fn seeded(variant: &str, seed: u64, out: &Path) -> (bool, String) {
    hstl(&[
        "init",
        "--variant",
        variant,
        "--seed",
        &seed.to_string(),
        "--out",
        arg(out),
    ])
}

/// `hstl export` of `checkpoint` to the model `out`.
fn exported(checkpoint: &Path, out: &Path) -> (bool, String) {
    hstl(&["export", "--checkpoint", arg(checkpoint), "--out", arg(out)])
}

/// `hstl embed` on an `.npy` clip; fails the test unless it succeeds, and returns the embedding.
fn embed(model: &Path, input: &Path, output: &Path) -> Array2<f32> {
    let (ok, text) = hstl(&[
        "embed",
        "--model",
        arg(model),
        "--input",
        arg(input),
        "--output",
        arg(output),
    ]);
    assert!(ok, "{text}");
    read_npy(output).unwrap()
}

#[test]
fn init_inspect_embed_and_bench_a_seeded_model() {
    let work = workdir("seeded");
    let dir = work.path();
    let model = dir.join("m.onnx");
    let (ok, text) = seeded("casia-b", 3, &model);
    assert!(ok, "{text}");

    let (ok, text) = hstl(&["inspect", arg(&model), "--frames", "30"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("casia-b")
            && text.contains("73 parts x 128 channels")
            && text.contains("25.82 G"),
        "{text}"
    );

    // OpenGait-pretreated uint8 [T, 64, 64]: the CLI cuts it to 64x44.
    let sils =
        Array3::<u8>::from_shape_fn(
            (4, 64, 64),
            |(t, y, x)| if (x + t) % 9 < 4 && y > 5 { 255 } else { 0 },
        );
    let input = dir.join("walk.npy");
    write_npy(&input, &sils).unwrap();
    let output = dir.join("emb.npy");
    let emb = embed(&model, &input, &output);
    assert_eq!(emb.shape(), &[73, 128]);

    let (ok, text) = hstl(&[
        "bench",
        "--model",
        arg(&model),
        "--frames",
        "3",
        "--runs",
        "1",
        "--json",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("\"median_ms\":") && text.contains("\"peak_rss_mib\":"),
        "{text}"
    );

    // The door's way: a walk streamed a few silhouettes at a time, queried after each push.
    let (ok, text) = hstl(&[
        "bench",
        "--model",
        arg(&model),
        "--frames",
        "3",
        "--runs",
        "1",
        "--stream",
        "12",
        "--query-every",
        "4",
        "--push-block",
        "4",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("stream:        12 frames pushed 4 at a time, a query every 4")
            && text.contains("queries included"),
        "{text}"
    );
}

/// With no `--model`, the shipped trained model runs, or the one `HSTL_MODEL` names; a missing
/// `HSTL_MODEL` file is named in the error rather than replaced by the shipped one.
#[test]
fn embed_without_a_model_runs_the_shipped_one_or_hstl_model() {
    let work = workdir("shipped");
    let dir = work.path();
    let sils =
        Array3::<u8>::from_shape_fn(
            (30, 64, 64),
            |(t, y, x)| {
                if (x + t) % 9 < 4 && y > 5 {
                    255
                } else {
                    0
                }
            },
        );
    let input = dir.join("walk.npy");
    write_npy(&input, &sils).unwrap();
    let output = dir.join("emb.npy");
    let run = |model_env: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hstl"));
        command
            .args(["embed", "--input", arg(&input), "--output", arg(&output)])
            .env("RUST_LOG", "warn")
            .env_remove(hstl::shipped::MODEL_ENV);
        if let Some(model) = model_env {
            command.env(hstl::shipped::MODEL_ENV, model);
        }
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(None);
    assert!(ok, "{text}");
    assert!(text.contains("41x64 embedding"), "{text}");

    let seeded = dir.join("seeded-casia-b.onnx");
    let (ok, text) = hstl(&["init", "--variant", "casia-b", "--out", arg(&seeded)]);
    assert!(ok, "{text}");
    let (ok, text) = run(Some(&seeded));
    assert!(ok && text.contains("73x128 embedding"), "{text}");

    let missing = dir.join("no-such-model.onnx");
    let (ok, text) = run(Some(&missing));
    assert!(!ok && text.contains("no-such-model.onnx"), "{text}");
}

#[test]
fn seeded_checkpoints_export_like_published_ones() {
    let work = workdir("pt");
    let dir = work.path();
    let checkpoint = dir.join("seeded.pt");
    let (ok, text) = seeded("gait3d", 1, &checkpoint);
    assert!(ok, "{text}");
    let model = dir.join("seeded.onnx");
    let (ok, text) = exported(&checkpoint, &model);
    assert!(ok && text.contains("gait3d"), "{text}");
    let (ok, text) = hstl(&["inspect", arg(&checkpoint)]);
    assert!(ok && text.contains("46 parts x 256 channels"), "{text}");
}

#[test]
fn bad_arguments_fail_with_a_message_naming_the_problem() {
    let work = workdir("bad");
    let dir = work.path();
    let (ok, text) = hstl(&[
        "export",
        "--checkpoint",
        arg(&dir.join("none.pt")),
        "--out",
        arg(&dir.join("x.onnx")),
    ]);
    assert!(!ok && text.contains("none.pt"), "{text}");
    let (ok, text) = hstl(&[
        "init",
        "--variant",
        "casia-c",
        "--out",
        arg(&dir.join("x.onnx")),
    ]);
    assert!(!ok && text.contains("casia-c"), "{text}");

    let model = dir.join("m.onnx");
    assert!(hstl(&["init", "--out", arg(&model)]).0);
    let wrong = dir.join("wrong.npy");
    write_npy(&wrong, &Array3::<u8>::zeros((3, 32, 32))).unwrap();
    let (ok, text) = hstl(&[
        "embed",
        "--model",
        arg(&model),
        "--input",
        arg(&wrong),
        "--output",
        arg(&dir.join("e.npy")),
    ]);
    assert!(!ok && text.contains("64x44"), "{text}");
}

#[test]
fn export_then_embed_reproduces_the_reference_embedding() {
    let Some(parity) = parity_dir() else { return };
    let work = workdir("parity");
    let dir = work.path();
    let model = dir.join("casiab.onnx");
    let checkpoint = parity.join("hstl_casiab_dev.pt");
    let (ok, text) = exported(&checkpoint, &model);
    assert!(ok && text.contains("casia-b"), "{text}");

    let mut vectors = Vectors::open(&parity);
    let input = dir.join("sil_8.npy");
    write_npy(&input, &vectors.f32("sil_8")).unwrap();
    let output = dir.join("emb_8.npy");
    let emb = embed(&model, &input, &output);
    let reference = vectors.f32("emb_8");
    test_support::assert_close(
        "emb_8 through the CLI",
        emb.as_slice().unwrap(),
        reference.as_slice().unwrap(),
        1e-4,
        0.0,
    );
}
