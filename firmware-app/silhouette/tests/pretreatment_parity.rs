//! The OpenGait pretreatment against `../shared/parity/pretreatment.npz` (OpenCV INTER_CUBIC inside the
//! reference algorithm): which frames are kept, and every output pixel.

use std::fs::File;

use image::GrayImage;
use ndarray::{Array1, Array2};
use ndarray_npy::NpzReader;
use silhouette::normalise::{pretreat, PretreatmentDrop};

const MIN_IDENTICAL_FRACTION: f64 = 0.999;
const MAX_GREY_LEVEL_DIFFERENCE: i16 = 1;

fn image_of(array: &Array2<u8>) -> GrayImage {
    let (h, w) = array.dim();
    GrayImage::from_raw(w as u32, h as u32, array.iter().copied().collect()).unwrap()
}

#[test]
fn pretreatment_matches_the_reference_pixel_for_pixel() {
    let Some(path) = test_support::shared_path("parity/pretreatment.npz") else {
        return;
    };
    let mut npz = NpzReader::new(File::open(path).unwrap()).unwrap();
    let kept: Array1<i32> = npz.by_name("kept").unwrap();
    let kept: Vec<usize> = kept.iter().map(|&i| i as usize).collect();
    let masks = npz
        .names()
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("mask_"))
        .count();

    let (mut identical, mut total, mut worst) = (0usize, 0usize, 0i16);
    for i in 0..masks {
        let mask: Array2<u8> = npz.by_name(&format!("mask_{i}")).unwrap();
        let ours = pretreat(&image_of(&mask));
        if !kept.contains(&i) {
            assert!(
                matches!(
                    ours,
                    Err(PretreatmentDrop::NearlyEmpty | PretreatmentDrop::CentreAtColumnZero)
                ),
                "mask {i}: the reference drops it, we kept it"
            );
            continue;
        }
        let ours = ours
            .unwrap_or_else(|e| panic!("mask {i}: the reference keeps it, we dropped it ({e:?})"));
        let reference: Array2<u8> = npz.by_name(&format!("out_{i}")).unwrap();
        assert_eq!(
            (ours.height() as usize, ours.width() as usize),
            reference.dim(),
            "mask {i}"
        );
        for (a, b) in ours.as_raw().iter().zip(reference.iter()) {
            let d = (*a as i16 - *b as i16).abs();
            worst = worst.max(d);
            identical += usize::from(d == 0);
            total += 1;
        }
    }
    let fraction = identical as f64 / total as f64;
    eprintln!("pretreatment: {identical}/{total} pixels identical ({fraction:.6}), worst difference {worst}");
    assert!(
        fraction >= MIN_IDENTICAL_FRACTION,
        "only {fraction:.6} identical"
    );
    assert!(
        worst <= MAX_GREY_LEVEL_DIFFERENCE,
        "a pixel is off by {worst}"
    );
}
