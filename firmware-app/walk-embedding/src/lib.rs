//! Where the silhouette stage meets the network. `silhouette` cuts a walker into windows of
//! normalised silhouettes and `hstl` embeds a tensor of frames; neither knows the other, so the one
//! rule that turns the first into the second lives here, and every tool that embeds windows (the
//! kiosk, enrolment, calibration) calls it.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use hstl::{HstlError, Orientation, Silhouettes};
use image::GrayImage;
use silhouette::normalise::PRETREATED_SIZE;
use silhouette::windows::{Heading, Window};

/// The network's input for a window, frames in order, oriented as the model wants
/// (`Embedder::orientation`): for a model that sees every walk crossing rightwards, a window whose
/// walker crossed leftwards is mirrored whole.
pub fn network_input(window: &Window, orientation: Orientation) -> Result<Silhouettes, HstlError> {
    let side = PRETREATED_SIZE as usize;
    let mirrored: Vec<GrayImage>;
    let silhouettes = match (orientation, window.heading) {
        (Orientation::Rightwards, Heading::Leftwards) => {
            mirrored = window
                .silhouettes
                .iter()
                .map(image::imageops::flip_horizontal)
                .collect();
            &mirrored
        }
        _ => &window.silhouettes,
    };
    Silhouettes::from_u8(
        &[silhouettes.len(), side, side],
        &silhouette::windows::stack(silhouettes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use silhouette::windows::WindowQuality;

    fn window(frames: Vec<GrayImage>, heading: Heading) -> Window {
        Window {
            track: 1,
            first_frame: 0,
            last_frame: frames.len() as u64,
            silhouettes: frames,
            rejections: Default::default(),
            quality: WindowQuality::Good,
            closes_walk: false,
            heading,
        }
    }

    /// Three frames, frame `i` filled with `i * 10` but for its diagonal and a mark at (20, 11).
    fn frames() -> Vec<GrayImage> {
        let side = PRETREATED_SIZE;
        (0..3u8)
            .map(|i| {
                GrayImage::from_fn(side, side, |x, y| {
                    image::Luma([if x == y || (x, y) == (20, 11) {
                        255
                    } else {
                        i * 10
                    }])
                })
            })
            .collect()
    }

    #[test]
    fn frames_keep_their_order_and_pixels() {
        let input =
            network_input(&window(frames(), Heading::Leftwards), Orientation::AsFilmed).unwrap();
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
    fn a_model_that_sees_walks_rightwards_gets_leftward_walks_mirrored_whole() {
        let value = |input: &Silhouettes, frame: usize, x: usize, y: usize| {
            input.as_slice()[frame * 64 * 44 + y * 44 + x - 10]
        };
        let leftwards = window(frames(), Heading::Leftwards);
        let turned = network_input(&leftwards, Orientation::Rightwards).unwrap();
        for frame in 0..3 {
            // (20, 11) lands on (63 - 20, 11).
            assert_eq!(value(&turned, frame, 43, 11), 1.0);
            assert_eq!(value(&turned, frame, 20, 11), frame as f32 * 10.0 / 255.0);
        }
        for heading in [Heading::Rightwards, Heading::Unknown] {
            let kept = network_input(&window(frames(), heading), Orientation::Rightwards).unwrap();
            assert_eq!(value(&kept, 1, 20, 11), 1.0, "{heading:?}");
        }
    }

    #[test]
    fn a_window_without_frames_is_refused() {
        assert!(network_input(&window(vec![], Heading::Unknown), Orientation::AsFilmed).is_err());
    }
}
