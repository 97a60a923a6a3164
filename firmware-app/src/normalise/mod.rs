//! OpenGait's silhouette pretreatment: a binary person mask of any size becomes the 64×64 uint8 frame
//! the network was trained on (`hstl-spec.md` §1). The 10-column cut to 64×44 happens at model input
//! (`hstl::Silhouettes::from_u8`), as in the reference.

mod resize;

pub use resize::resize_cubic;

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
    let total: u64 = mask.as_raw().iter().map(|&v| v as u64).sum();
    if total <= MIN_PIXEL_SUM {
        return Err(PretreatmentDrop::NearlyEmpty);
    }
    let width = mask.width() as usize;
    let occupied_rows: Vec<usize> = mask
        .as_raw()
        .chunks_exact(width)
        .enumerate()
        .filter(|(_, row)| row.iter().any(|&v| v != 0))
        .map(|(y, _)| y)
        .collect();
    let (top, bottom) = match (occupied_rows.first(), occupied_rows.last()) {
        (Some(&t), Some(&b)) => (t, b),
        _ => return Err(PretreatmentDrop::NearlyEmpty),
    };
    let crop_height = bottom - top + 1;
    let cropped = GrayImage::from_raw(
        mask.width(),
        crop_height as u32,
        mask.as_raw()[top * width..(bottom + 1) * width].to_vec(),
    )
    .unwrap_or_else(|| unreachable!("the crop is whole rows of the mask"));

    // The reference computes the aspect ratio first, then scales it, then truncates.
    let ratio = width as f64 / crop_height as f64;
    let resized_width = (PRETREATED_SIZE as f64 * ratio) as u32;
    if resized_width == 0 {
        return Err(PretreatmentDrop::NearlyEmpty);
    }
    let resized = resize_cubic(&cropped, resized_width, PRETREATED_SIZE);

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
