//! Where the silhouette stage meets the network. `silhouette` cuts a walker into windows of
//! normalised silhouettes and `hstl` embeds a tensor of frames; neither knows the other, so the one
//! rule that turns the first into the second lives here, and every tool that embeds windows (the
//! kiosk, enrolment, calibration) calls it.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use hstl::{HstlError, Silhouettes};
use image::GrayImage;
use silhouette::normalise::PRETREATED_SIZE;

/// The network's input for a window of normalised silhouettes, frames in order.
pub fn network_input(silhouettes: &[GrayImage]) -> Result<Silhouettes, HstlError> {
    let side = PRETREATED_SIZE as usize;
    Silhouettes::from_u8(
        &[silhouettes.len(), side, side],
        &silhouette::windows::stack(silhouettes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_their_order_and_pixels() {
        let side = PRETREATED_SIZE;
        let frames: Vec<GrayImage> = (0..3u8)
            .map(|i| {
                GrayImage::from_fn(side, side, |x, y| {
                    image::Luma([if x == y { 255 } else { i * 10 }])
                })
            })
            .collect();
        let input = network_input(&frames).unwrap();
        assert_eq!(input.frames(), 3);
        // The network sees the middle 44 of the 64 columns.
        let (width, per_frame) = (44, 64 * 44);
        let values = input.as_slice();
        assert_eq!(values.len(), 3 * per_frame);
        assert_eq!(values[2 * per_frame + 1], 20.0 / 255.0);
        assert_eq!(
            values[per_frame + 11 * width + 1],
            1.0,
            "pixel (11, 11) of frame 1"
        );
    }

    #[test]
    fn a_window_without_frames_is_refused() {
        assert!(network_input(&[]).is_err());
    }
}
