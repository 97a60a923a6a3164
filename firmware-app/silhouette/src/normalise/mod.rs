//! OpenGait's silhouette pretreatment: a binary person mask of any size becomes the 64×64 uint8 frame
//! the network was trained on (OpenGait's `datasets/pretreatment.py`; `PARITY.md`). The 10-column cut to 64×44 happens at model input
//! (`hstl::Silhouettes::from_u8`), as in the reference.

mod resize;

pub use resize::{resize_cubic, resize_cubic_placed};

use image::GrayImage;

/// Height and width of a pretreated silhouette.
pub const PRETREATED_SIZE: u32 = 64;
const HALF_WINDOW: u32 = PRETREATED_SIZE / 2;
/// Frames whose pixel sum (0..255 units) is at most this are dropped, as the reference does.
pub const MIN_PIXEL_SUM: u64 = 10_000;

/// Why the pretreatment keeps no frame, in the reference's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PretreatmentDrop {
    /// Pixel sum at most [`MIN_PIXEL_SUM`].
    NearlyEmpty,
    /// The median column of mass is column 0 (the reference tests the centre for truthiness).
    CentreAtColumnZero,
}

/// Pretreats one mask (0 = background, non-zero = person) exactly as OpenGait's `pretreatment.py`.
pub fn pretreat(mask: &GrayImage) -> Result<GrayImage, PretreatmentDrop> {
    pretreat_placed(mask, 0, mask.width())
}

/// [`pretreat`] of a frame-sized mask, `frame_width` wide, that is empty but for `crop` at column
/// `x0` (any row): a person's blob, without building the frame-sized mask. The rows do not matter,
/// since the pretreatment crops to the occupied ones; the width does, since it sets the resize.
pub fn pretreat_placed(
    crop: &GrayImage,
    x0: u32,
    frame_width: u32,
) -> Result<GrayImage, PretreatmentDrop> {
    let total: u64 = crop.as_raw().iter().map(|&v| v as u64).sum();
    if total <= MIN_PIXEL_SUM {
        return Err(PretreatmentDrop::NearlyEmpty);
    }
    let width = crop.width() as usize;
    let occupied = |row: &&[u8]| row.iter().any(|&v| v != 0);
    let mut rows = crop.as_raw().chunks_exact(width);
    let top = rows.clone().position(|row| occupied(&row));
    let bottom = rows.rposition(|row| occupied(&row));
    let (top, bottom) = match (top, bottom) {
        (Some(t), Some(b)) => (t, b),
        _ => return Err(PretreatmentDrop::NearlyEmpty),
    };
    let crop_height = bottom - top + 1;
    let cropped = GrayImage::from_raw(
        crop.width(),
        crop_height as u32,
        crop.as_raw()[top * width..(bottom + 1) * width].to_vec(),
    )
    .unwrap_or_else(|| unreachable!("the crop is whole rows of the mask"));

    // The reference computes the aspect ratio first, then scales it, then truncates.
    let ratio = frame_width as f64 / crop_height as f64;
    let resized_width = (PRETREATED_SIZE as f64 * ratio) as u32;
    if resized_width == 0 {
        return Err(PretreatmentDrop::NearlyEmpty);
    }
    let resized = resize_cubic_placed(&cropped, x0, frame_width, resized_width, PRETREATED_SIZE);

    let centre = median_column(&resized).ok_or(PretreatmentDrop::NearlyEmpty)?;
    if centre == 0 {
        return Err(PretreatmentDrop::CentreAtColumnZero);
    }
    Ok(window_around(&resized, centre))
}

/// First column at which the running column sum exceeds half of the total.
fn median_column(image: &GrayImage) -> Option<u32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let raw = image.as_raw();
    let column_sums: Vec<u64> = (0..w)
        .map(|x| (0..h).map(|y| raw[y * w + x] as u64).sum())
        .collect();
    let half = column_sums.iter().sum::<u64>() as f64 / 2.0;
    let mut running = 0u64;
    column_sums
        .iter()
        .position(|&s| {
            running += s;
            running as f64 > half
        })
        .map(|x| x as u32)
}

/// Columns `[centre - 32, centre + 32)`. The reference pads 32 zero columns on each side and shifts the
/// window by 32 when it would touch or leave an edge; that is the same as reading zeros outside.
fn window_around(image: &GrayImage, centre: u32) -> GrayImage {
    let width = image.width() as i64;
    let left = centre as i64 - HALF_WINDOW as i64;
    GrayImage::from_fn(PRETREATED_SIZE, PRETREATED_SIZE, |x, y| {
        let source_x = left + x as i64;
        if (0..width).contains(&source_x) {
            *image.get_pixel(source_x as u32, y)
        } else {
            image::Luma([0])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A person-like blob: a filled ellipse with ragged edges.
    fn blob(width: u32, height: u32, rng: &mut impl Rng) -> GrayImage {
        let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
        GrayImage::from_fn(width, height, |x, y| {
            let d = ((x as f32 - cx) / cx).powi(2) + ((y as f32 - cy) / cy).powi(2);
            let inside = d < rng.random_range(0.8..1.0);
            image::Luma([if inside { 255 } else { 0 }])
        })
    }

    #[test]
    fn a_placed_crop_pretreats_exactly_as_the_whole_frame() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (frame_width, frame_height) in [(640u32, 480u32), (320, 240), (90, 200)] {
            for _ in 0..12 {
                let (w, h) = (
                    rng.random_range(20..60).min(frame_width),
                    rng.random_range(60..180).min(frame_height),
                );
                let crop = blob(w, h, &mut rng);
                // Anywhere, and flush with either side (where the resize replicates the border).
                for x0 in [0, rng.random_range(0..=frame_width - w), frame_width - w] {
                    let y0 = rng.random_range(0..=frame_height - h);
                    let mut frame = GrayImage::new(frame_width, frame_height);
                    image::imageops::replace(&mut frame, &crop, x0.into(), y0.into());
                    let placed = pretreat_placed(&crop, x0, frame_width);
                    assert!(placed.is_ok(), "a whole person is kept");
                    assert_eq!(
                        placed,
                        pretreat(&frame),
                        "{w}x{h} at ({x0}, {y0}) in {frame_width}x{frame_height}"
                    );
                }
            }
        }
    }
}
