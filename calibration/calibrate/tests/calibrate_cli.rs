//! `calibrate thresholds` end to end on real CASIA-B walks (read in place from ../shared), from the
//! dataset directly and from a site folder of `.npy` walks, with a seeded network.

use std::path::{Path, PathBuf};
use std::process::Command;

use hstl::OperatingPoint;

fn casia_b() -> Option<PathBuf> {
    test_support::shared_path("data/casia-b/silhouettes")
}

/// The first `walks` normal walks of a CASIA-B subject at 90°, as a site folder holds them:
/// `folder/CONDITION.npy`, uint8 [T, 64, 64].
fn write_walks(data: &Path, subject: &str, walks: usize, folder: &Path) {
    std::fs::create_dir_all(folder).unwrap();
    let all = hstl::casia_b::read_subject(data, subject, Some(&["090".to_owned()])).unwrap();
    for walk in all
        .iter()
        .filter(|w| w.condition.starts_with("nm"))
        .take(walks)
    {
        let array =
            ndarray::Array3::from_shape_vec((walk.frames(), 64, 64), walk.pixels().to_vec())
                .unwrap();
        ndarray_npy::write_npy(folder.join(format!("{}.npy", walk.condition)), &array).unwrap();
    }
}

fn run_calibrate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_calibrate"))
        .args(args)
        .output()
        .unwrap()
}

fn calibrate(args: &[&str]) -> String {
    let output = run_calibrate(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "calibrate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `calibrate thresholds` on a site folder of walks, in short windows (quick, and said to be no
/// door's), with `extra` arguments after.
fn site_thresholds<'a>(model: &'a Path, site: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "thresholds",
        "--model",
        model.to_str().unwrap(),
        "--walks",
        site.to_str().unwrap(),
        "--window",
        "10",
        "--hop",
        "40",
    ];
    args.extend_from_slice(extra);
    args
}

/// CASIA-B subjects whose walks at two views give the 300 strangers' walk-ups FPIR 0.01 needs.
const SUBJECTS_ENOUGH_FOR_ONE_PERCENT: &str = "075-090";

/// `calibrate thresholds --save` for FPIR 0.01 on CASIA-B `subjects` at views 090 and 108, in
/// 10-frame windows every 30 (quick: a third of each walk goes through the network), with `extra`
/// arguments after.
fn casia_b_thresholds<'a>(
    model: &'a Path,
    data: &'a Path,
    subjects: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "thresholds",
        "--model",
        model.to_str().unwrap(),
        "--casia-b",
        data.to_str().unwrap(),
        "--subjects",
        subjects,
        "--views",
        "090,108",
        "--window",
        "10",
        "--hop",
        "30",
        "--target-fpir",
        "0.01",
        "--save",
    ];
    args.extend_from_slice(extra);
    args
}

/// The non-mated walk-ups a `thresholds` report counts.
fn non_mated_walk_ups(report: &str) -> usize {
    report
        .lines()
        .find(|l| l.starts_with("walk-ups:"))
        .and_then(|l| l.split(", ").last())
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of non-mated walk-ups in\n{report}"))
}

fn field<'a>(report: &'a str, after: &str) -> &'a str {
    let line = report
        .lines()
        .find(|l| l.contains(after))
        .unwrap_or_else(|| panic!("no `{after}` in\n{report}"));
    line.rsplit(' ').next().unwrap()
}

#[test]
fn thresholds_from_casia_b_write_the_plot_and_the_operating_point() {
    let Some(data) = casia_b() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = test_support::seeded_model(dir.path());
    let plot = dir.path().join("det.png");
    let key_file = dir.path().join("site.key");
    let key = access::gallery::TemplateKey::create_file(&key_file).unwrap();
    let args = casia_b_thresholds(
        &model,
        &data,
        SUBJECTS_ENOUGH_FOR_ONE_PERCENT,
        &[
            "--plot",
            plot.to_str().unwrap(),
            "--threads",
            "2",
            "--key-file",
            key_file.to_str().unwrap(),
        ],
    );
    let report = calibrate(&args);
    assert!(report.contains("sealed with the doors' key"), "{report}");

    assert!(report.contains("non-mated"), "{report}");
    // The first walk of each subject at each view is enrolled; every walk is also a non-mated
    // walk-up, against the others.
    let non_mated = non_mated_walk_ups(&report);
    assert!(
        non_mated >= OperatingPoint::searches_needed(0.01),
        "{report}"
    );

    let threshold: f32 = field(&report, "accept distance:").parse().unwrap();
    let point = OperatingPoint::load_for(&model, &hstl::model_id(&model).unwrap())
        .unwrap()
        .expect("the operating point is saved beside the model");
    assert_eq!(point.accept_distance, threshold);
    assert_eq!(point.target_fpir, 0.01);
    assert_eq!(point.non_mated_searches, non_mated);
    assert!(
        point.measured_on.contains(SUBJECTS_ENOUGH_FOR_ONE_PERCENT),
        "{point:?}"
    );
    let point_path = OperatingPoint::path_for(&model);
    point
        .check_seal(&key.operating_point_key(), &point_path)
        .unwrap();
    assert!(point
        .check_seal(
            &access::gallery::TemplateKey::generate().operating_point_key(),
            &point_path
        )
        .is_err());

    let picture = image::open(&plot).unwrap().to_rgb8();
    assert_eq!(picture.dimensions(), (640, 480));
    let curve_pixels = picture.pixels().filter(|p| p.0 == [20, 90, 200]).count();
    assert!(
        curve_pixels > 100,
        "the DET curve is drawn ({curve_pixels} pixels)"
    );
}

#[test]
fn a_point_its_walk_ups_cannot_support_is_refused_and_nothing_is_saved() {
    // The hostile probe's case: too few strangers' walk-ups for the target, saved with a warning.
    let Some(data) = casia_b() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = test_support::seeded_model(dir.path());
    let output = run_calibrate(&casia_b_thresholds(&model, &data, "075-077", &[]));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "{stdout}");
    let non_mated = non_mated_walk_ups(&stdout);
    assert!(non_mated < 300, "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{non_mated} non-mated walk-ups cannot show FPIR 0.01: a point for it needs at least 300"
        )) && stderr.contains("nothing was saved"),
        "{stderr}"
    );
    assert!(!OperatingPoint::path_for(&model).exists());
}

#[test]
fn thresholds_from_a_site_folder_of_walks() {
    let Some(data) = casia_b() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = test_support::seeded_model(dir.path());
    let site = dir.path().join("site");
    for subject in ["075", "076"] {
        write_walks(&data, subject, 3, &site.join(format!("person-{subject}")));
    }
    std::fs::write(site.join("person-075").join("notes.txt"), "not a walk").unwrap();
    let report = calibrate(&site_thresholds(&model, &site, &[]));
    let mated: usize = report
        .lines()
        .find(|l| l.starts_with("walk-ups:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    // Two probe walks per person, each one walk-up.
    assert_eq!(mated, 4, "{report}");
    assert!(
        report.contains(
            "windows of 10 frames every 40 (not the kiosk's); walk-level: rates per walk-up"
        ),
        "{report}"
    );
    assert!(report.contains("equal error:"), "{report}");
}

#[test]
fn a_target_no_distance_can_meet_is_refused_and_nothing_is_saved() {
    let Some(data) = casia_b() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = test_support::seeded_model(dir.path());
    let site = dir.path().join("site");
    // Two "people" with the very same walks: every stranger is as close as the person themself.
    for person in ["twin-a", "twin-b"] {
        write_walks(&data, "075", 2, &site.join(person));
    }
    let output = run_calibrate(&site_thresholds(
        &model,
        &site,
        &["--target-fpir", "0.01", "--save"],
    ));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("nothing was saved"), "{stderr}");
    assert!(!OperatingPoint::path_for(&model).exists());
}

#[test]
fn quantize_writes_an_int8_model_that_embeds_like_the_float_one() {
    let Some(data) = casia_b() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = test_support::seeded_model(dir.path());
    let int8 = dir.path().join("model.int8.onnx");
    let (model_arg, int8_arg) = (model.to_str().unwrap(), int8.to_str().unwrap());
    let casia_b_quantize = |out: &str, options: &[&str]| {
        let mut args = vec![
            "quantize",
            "--model",
            model_arg,
            "--casia-b",
            data.to_str().unwrap(),
            "--subjects",
            "001",
            "--views",
            "090",
            "--out",
            out,
        ];
        args.extend(options);
        run_calibrate(&args)
    };
    let output = casia_b_quantize(int8_arg, &[]);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("13 convolutions in int8"), "{report}");
    let error = hstl::Weights::from_onnx(&int8).unwrap_err().to_string();
    assert!(error.contains("already quantized"), "{error}");

    let walk = hstl::casia_b::read_subject(&data, "002", Some(&["090".to_owned()]))
        .unwrap()
        .remove(0);
    let clip = hstl::Silhouettes::from_u8(&[30, 64, 64], &walk.pixels()[..30 * 64 * 64]).unwrap();
    let embed = |path: &Path| {
        let embedder = hstl::TractEmbedder::load(path, 1).unwrap();
        hstl::Embedder::embed(&embedder, &clip).unwrap()
    };
    let (float, quantized) = (embed(&model), embed(&int8));
    let relative = test_support::relative_difference(float.as_slice(), quantized.as_slice());
    assert!(
        relative < 0.05,
        "int8 embedding off by {relative} of its norm"
    );

    let refused = casia_b_quantize(model_arg, &[]);
    assert!(!refused.status.success());

    let partly = dir.path().join("model.partly-int8.onnx");
    let partly_arg = partly.to_str().unwrap();
    let quantize_keeping =
        |kept: &str| casia_b_quantize(partly_arg, &["--keep-float", kept, "--sensitivity", "2"]);
    let unknown = quantize_keeping("arme9.0.conv");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success());
    assert!(
        stderr.contains("--keep-float arme9.0.conv: the model has no such 3-D convolution"),
        "{stderr}"
    );
    assert!(!partly.exists());

    let first = report
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().next())
        .expect("a convolution's clipping line");
    let output = quantize_keeping(first);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("12 convolutions in int8"), "{report}");
    assert!(report.contains(", kept in float"), "{report}");
    assert!(report.contains("sensitivity over 2 windows"), "{report}");
    let alone: Vec<f32> = report
        .lines()
        .filter_map(|line| line.split("alone in int8").nth(1))
        .map(|figures| figures.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(alone.len(), 13, "{report}");
    assert!(alone.iter().all(|&d| d > 0.0 && d.is_finite()), "{report}");
    assert_eq!(
        hstl::TractEmbedder::load(&partly, 1)
            .unwrap()
            .int8_convolutions(),
        12
    );
}

#[test]
fn quantize_on_all_black_walks_says_so_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_support::seeded_model(dir.path());
    let person = dir.path().join("walks/someone");
    std::fs::create_dir_all(&person).unwrap();
    let black = ndarray::Array3::<u8>::zeros((40, 64, 64));
    ndarray_npy::write_npy(person.join("walk.npy"), &black).unwrap();
    let int8 = dir.path().join("int8.onnx");
    let output = run_calibrate(&[
        "quantize",
        "--model",
        model.to_str().unwrap(),
        "--walks",
        dir.path().join("walks").to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("no window of a walking person to observe"),
        "{stderr}"
    );
    assert!(!int8.exists());
}

#[test]
fn a_point_saved_before_points_were_sealed_is_sealed_as_it_stands() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_support::seeded_model(dir.path());
    let unsealed = OperatingPoint {
        model_id: hstl::model_id(&model).unwrap(),
        accept_distance: 0.5,
        target_fpir: 0.003,
        fpir: 0.002,
        fnir: 0.1,
        mated_searches: 400,
        non_mated_searches: 1000,
        measured_on: "a site, before seals".into(),
        looser_than_shipped: None,
        seal: None,
    };
    unsealed.save_for(&model).unwrap();
    let key_file = dir.path().join("site.key");
    let key = access::gallery::TemplateKey::create_file(&key_file).unwrap();
    let report = calibrate(&[
        "seal",
        "--model",
        model.to_str().unwrap(),
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert!(report.contains("sealed with the doors' key"), "{report}");
    assert!(
        report.contains("accept distance 0.5 for FPIR 0.003"),
        "{report}"
    );
    let point = OperatingPoint::load_for(&model, &hstl::model_id(&model).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        OperatingPoint {
            seal: None,
            ..point.clone()
        },
        unsealed
    );
    point
        .check_seal(
            &key.operating_point_key(),
            &OperatingPoint::path_for(&model),
        )
        .unwrap();
    let missing = run_calibrate(&[
        "seal",
        "--model",
        dir.path().join("other.onnx").to_str().unwrap(),
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
}
