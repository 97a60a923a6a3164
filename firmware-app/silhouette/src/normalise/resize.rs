//! Bicubic resize of 8-bit images matching OpenCV's `INTER_CUBIC`.
//!
//! OpenGait's pretreatment resizes every silhouette with `cv2.resize(..., INTER_CUBIC)`, and the network
//! learnt the grey edges this produces. The reference vectors are reproduced by the Keys kernel
//! (a = -0.75) with OpenCV's source-coordinate mapping and replicated borders, evaluated separably in
//! `f32` and rounded once at the end; OpenCV's 11-bit fixed-point variant misses about one pixel in
//! 800 (see `PARITY.md`).

use image::GrayImage;

/// The Keys kernel parameter OpenCV uses for `INTER_CUBIC`.
const CUBIC_A: f32 = -0.75;
const TAPS: usize = 4;

/// Source index of the first tap and the four weights for each destination coordinate.
struct Taps {
    first: Vec<isize>,
    weights: Vec<[f32; TAPS]>,
}

fn cubic_weights(x: f32) -> [f32; TAPS] {
    let w0 = ((CUBIC_A * (x + 1.0) - 5.0 * CUBIC_A) * (x + 1.0) + 8.0 * CUBIC_A) * (x + 1.0)
        - 4.0 * CUBIC_A;
    let w1 = ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0;
    let w2 = ((CUBIC_A + 2.0) * (1.0 - x) - (CUBIC_A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    let w3 = 1.0 - w0 - w1 - w2;
    [w0, w1, w2, w3]
}

fn taps(source_len: usize, dest_len: usize) -> Taps {
    // OpenCV derives the scale as the reciprocal of dest/source in f64, then maps centres in f32.
    let scale = 1.0 / (dest_len as f64 / source_len as f64);
    let mut first = Vec::with_capacity(dest_len);
    let mut weights = Vec::with_capacity(dest_len);
    for d in 0..dest_len {
        let position = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let floor = position.floor();
        first.push(floor as isize - 1);
        weights.push(cubic_weights(position - floor));
    }
    Taps { first, weights }
}

fn clamp_index(i: isize, len: usize) -> usize {
    i.clamp(0, len as isize - 1) as usize
}

/// Resizes `source` to `width`×`height` as `cv2.resize(src, (width, height),
/// interpolation=cv2.INTER_CUBIC)` does for a single-channel `uint8` image.
pub fn resize_cubic(source: &GrayImage, width: u32, height: u32) -> GrayImage {
    resize_cubic_placed(source, 0, source.width(), width, height)
}

/// [`resize_cubic`] of an image `full_width` wide that is zero but for `source` at column
/// `x_offset` (a person's crop in an otherwise empty mask), without building that image: output
/// columns whose taps all fall on the zeros are zero.
pub fn resize_cubic_placed(
    source: &GrayImage,
    x_offset: u32,
    full_width: u32,
    width: u32,
    height: u32,
) -> GrayImage {
    let (cw, sh) = (source.width() as usize, source.height() as usize);
    let (x0, sw) = (x_offset as usize, full_width as usize);
    assert!(x0 + cw <= sw, "the crop lies inside the image");
    let (dw, dh) = (width as usize, height as usize);
    let pixels = source.as_raw();
    let value = |row: &[u8], x: usize| {
        if (x0..x0 + cw).contains(&x) {
            row[x - x0]
        } else {
            0
        }
    };
    if (sw, sh) == (dw, dh) || dw == 0 || dh == 0 {
        return GrayImage::from_fn(width, height, |x, y| {
            image::Luma([value(&pixels[y as usize * cw..], x as usize)])
        });
    }
    let columns = taps(sw, dw);
    let rows = taps(sh, dh);
    // Destination columns whose four (clamped) taps can reach the crop.
    let reaches_crop = |d: usize| {
        let lowest = clamp_index(columns.first[d], sw);
        let highest = clamp_index(columns.first[d] + TAPS as isize - 1, sw);
        highest >= x0 && lowest < x0 + cw
    };
    let live: Vec<usize> = (0..dw).filter(|&d| reaches_crop(d)).collect();

    let mut horizontal = vec![0.0f32; sh * dw];
    for (row, out) in pixels.chunks_exact(cw).zip(horizontal.chunks_exact_mut(dw)) {
        for &d in &live {
            let w = &columns.weights[d];
            out[d] = (0..TAPS).fold(0.0f32, |sum, k| {
                sum + value(row, clamp_index(columns.first[d] + k as isize, sw)) as f32 * w[k]
            });
        }
    }

    let mut out = GrayImage::new(width, height);
    for (d, out_row) in out.chunks_exact_mut(dw).enumerate() {
        let w = &rows.weights[d];
        let sources: [&[f32]; TAPS] = std::array::from_fn(|k| {
            let y = clamp_index(rows.first[d] + k as isize, sh);
            &horizontal[y * dw..(y + 1) * dw]
        });
        for (x, value) in out_row.iter_mut().enumerate() {
            let sum = (0..TAPS).fold(0.0f32, |sum, k| sum + sources[k][x] * w[k]);
            *value = sum.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_interpolate_at_integer_positions() {
        for x in [0.0f32, 0.25, 0.5, 0.75] {
            let w = cubic_weights(x);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn constant_image_stays_constant() {
        let source = GrayImage::from_pixel(17, 31, image::Luma([200]));
        let out = resize_cubic(&source, 9, 64);
        assert!(out.pixels().all(|p| p.0[0] == 200));
    }

    #[test]
    fn upscaled_step_overshoots_and_saturates() {
        let mut source = GrayImage::new(4, 4);
        for y in 0..4 {
            for x in 2..4 {
                source.put_pixel(x, y, image::Luma([255]));
            }
        }
        let out = resize_cubic(&source, 16, 4);
        let row: Vec<u8> = (0..16).map(|x| out.get_pixel(x, 0).0[0]).collect();
        assert_eq!(row[0], 0);
        assert_eq!(row[15], 255);
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
        assert!(row.iter().any(|&v| v > 0 && v < 255));
    }
}
