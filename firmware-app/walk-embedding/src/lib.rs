//! Where the silhouette stage meets the network. `silhouette` cuts a walker into windows of
//! normalised silhouettes and `hstl` embeds a tensor of frames; neither knows the other, so the rules
//! that turn the first into the second live here: [`network_input`] for one window (quantization's
//! calibration), [`WalkSoFar`] for a track's windows streamed into one walk (the kiosk, enrolment and
//! `calibrate thresholds`, so that what is enrolled, calibrated and searched at the door are the same
//! embeddings).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use hstl::streaming::{StreamingEmbedder, WalkStream};
use hstl::{Embedding, HstlError, Orientation, Silhouettes};
use image::GrayImage;
use silhouette::normalise::PRETREATED_SIZE;
use silhouette::windows::{Heading, Window};

/// The network's input for a window, frames in order, oriented as the model wants
/// (`Embedder::orientation`): for a model that sees every walk crossing rightwards, a window whose
/// walker crossed leftwards is mirrored whole.
pub fn network_input(window: &Window, orientation: Orientation) -> Result<Silhouettes, HstlError> {
    oriented(&window.silhouettes, window.heading, orientation)
}

/// `silhouettes` of a walker heading `heading`, as the network's input for a model that wants walks
/// oriented as `orientation` says.
fn oriented(
    silhouettes: &[GrayImage],
    heading: Heading,
    orientation: Orientation,
) -> Result<Silhouettes, HstlError> {
    let side = PRETREATED_SIZE as usize;
    let mirrored: Vec<GrayImage>;
    let silhouettes = match (orientation, heading) {
        (Orientation::Rightwards, Heading::Leftwards) => {
            mirrored = silhouettes
                .iter()
                .map(image::imageops::flip_horizontal)
                .collect();
            &mirrored
        }
        _ => silhouettes,
    };
    Silhouettes::from_u8(
        &[silhouettes.len(), side, side],
        &silhouette::windows::stack(silhouettes),
    )
}

/// One walk through the network as the door sees it: the silhouettes of its windows, each frame
/// once, streamed (`hstl::streaming`), and after each window the embedding of the walk so far. The
/// kiosk keeps one per track in view; enrolment makes its templates with one, so that an enrolment
/// walk replayed at the door asks exactly what was enrolled.
pub struct WalkSoFar {
    stream: WalkStream,
    orientation: Orientation,
    /// The walk's heading, from its first window: one walk is shown to the network one way.
    heading: Option<Heading>,
    /// The last frame taken.
    last_frame: Option<u64>,
}

impl WalkSoFar {
    /// A walk not yet seen, on `embedder`.
    pub fn new(embedder: &StreamingEmbedder) -> Self {
        WalkSoFar {
            stream: embedder.stream(),
            orientation: embedder.orientation(),
            heading: None,
            last_frame: None,
        }
    }

    /// Takes the silhouettes of `window` the walk has not taken yet (consecutive windows overlap),
    /// through the network once each (in one call of each stage), and gives the embedding of every silhouette taken so far.
    /// When frames between the last one taken and this window were never taken (windows dropped
    /// while the network was behind), the walk starts again from this window: the network was
    /// never shown a walk with a hole in it.
    pub fn take(&mut self, window: &Window) -> Result<Embedding, HstlError> {
        if self
            .last_frame
            .is_some_and(|last| window.first_frame > last + 1)
        {
            self.stream.restart();
            self.last_frame = None;
        }
        let heading = *self.heading.get_or_insert(window.heading);
        let fresh: Vec<GrayImage> = window
            .frames
            .iter()
            .zip(&window.silhouettes)
            .filter(|(frame, _)| self.last_frame.is_none_or(|last| **frame > last))
            .map(|(_, silhouette)| silhouette.clone())
            .collect();
        if !fresh.is_empty() {
            let input = oriented(&fresh, heading, self.orientation)?;
            self.stream.push_frames(input.as_slice())?;
        }
        if let Some(&last) = window.frames.last() {
            self.last_frame = Some(self.last_frame.map_or(last, |taken| taken.max(last)));
        }
        self.stream.embedding()
    }

    /// Silhouettes taken so far.
    pub fn frames(&self) -> usize {
        self.stream.frames()
    }
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
            frames: (0..frames.len() as u64).collect(),
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

    /// A walker of `frames` frames whose frame `i` is a bar at column `10 + i % 20`: one leg.
    fn walker(frames: u64) -> Vec<GrayImage> {
        let side = PRETREATED_SIZE;
        (0..frames)
            .map(|i| {
                GrayImage::from_fn(side, side, |x, y| {
                    let bar = x == 12 + (i % 20) as u32 || (x == 30 && y > 20);
                    image::Luma([if bar { 255 } else { 0 }])
                })
            })
            .collect()
    }

    /// Windows of 30 frames every 15 over `walk`, as the silhouette stage cuts them.
    fn windows_of(walk: &[GrayImage], heading: Heading) -> Vec<Window> {
        silhouette::windows::cut_walk(walk, &Default::default())
            .into_iter()
            .map(|w| Window { heading, ..w })
            .collect()
    }

    fn embedders(orientation: Orientation) -> (hstl::TractEmbedder, StreamingEmbedder) {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.onnx");
        let options = hstl::onnx_graph::ExportOptions {
            orientation,
            ..Default::default()
        };
        hstl::onnx_graph::write_model(
            &hstl::Weights::seeded(hstl::Variant::Compact, 7),
            &options,
            &model,
        )
        .unwrap();
        (
            hstl::TractEmbedder::load(&model, 1).unwrap(),
            StreamingEmbedder::load_tract(&model, 1).unwrap(),
        )
    }

    #[test]
    fn a_walk_so_far_takes_each_frame_once_and_is_the_network_on_every_frame_taken() {
        use hstl::Embedder;
        let walk = walker(62);
        for (orientation, heading) in [
            (Orientation::AsFilmed, Heading::Leftwards),
            (Orientation::Rightwards, Heading::Leftwards),
        ] {
            let (whole, streaming) = embedders(orientation);
            let windows = windows_of(&walk, heading);
            assert_eq!(
                windows.len(),
                4,
                "0..=29, 15..=44, 30..=59 and the closing 32..=61"
            );
            let mut so_far = WalkSoFar::new(&streaming);
            for window in &windows {
                let embedding = so_far.take(window).unwrap();
                let taken = window.last_frame as usize + 1;
                assert_eq!(so_far.frames(), taken);
                let prefix = Window {
                    silhouettes: walk[..taken].to_vec(),
                    ..window.clone()
                };
                let expected = whole
                    .embed(&network_input(&prefix, orientation).unwrap())
                    .unwrap();
                let gap = embedding.distance(&expected).unwrap();
                assert!(gap < 1e-4, "{orientation:?}, {taken} frames: {gap}");
            }
        }
    }

    #[test]
    fn a_hole_in_the_walk_starts_it_again_and_one_dropped_window_leaves_none() {
        use hstl::Embedder;
        let walk = walker(62);
        let (whole, streaming) = embedders(Orientation::AsFilmed);
        let windows = windows_of(&walk, Heading::Rightwards);
        let embedding_of = |frames: std::ops::RangeInclusive<usize>| {
            let window = Window {
                silhouettes: walk[frames].to_vec(),
                ..windows[0].clone()
            };
            whole
                .embed(&network_input(&window, Orientation::AsFilmed).unwrap())
                .unwrap()
        };
        // Window 1 (15..=44) dropped: window 2 (30..=59) begins right after window 0 ended.
        let mut one_dropped = WalkSoFar::new(&streaming);
        one_dropped.take(&windows[0]).unwrap();
        let continued = one_dropped.take(&windows[2]).unwrap();
        assert_eq!(one_dropped.frames(), 60);
        assert!(continued.distance(&embedding_of(0..=59)).unwrap() < 1e-4);
        // Windows 1 and 2 dropped: frames 30 and 31 were never taken, so the walk is 32..=61 alone.
        let mut two_dropped = WalkSoFar::new(&streaming);
        two_dropped.take(&windows[0]).unwrap();
        let restarted = two_dropped.take(&windows[3]).unwrap();
        assert_eq!(two_dropped.frames(), 30);
        assert!(restarted.distance(&embedding_of(32..=61)).unwrap() < 1e-4);
    }

    #[test]
    fn a_walk_is_shown_the_way_its_first_window_headed() {
        let (_, streaming) = embedders(Orientation::Rightwards);
        let walk = walker(45);
        let mut windows = windows_of(&walk, Heading::Leftwards);
        windows[1].heading = Heading::Rightwards;
        let mut turned = WalkSoFar::new(&streaming);
        let mut kept = WalkSoFar::new(&streaming);
        let mut as_first = windows.clone();
        as_first[1].heading = Heading::Leftwards;
        turned.take(&windows[0]).unwrap();
        kept.take(&as_first[0]).unwrap();
        let (a, b) = (
            turned.take(&windows[1]).unwrap(),
            kept.take(&as_first[1]).unwrap(),
        );
        assert_eq!(a.distance(&b).unwrap(), 0.0);
    }

    #[test]
    fn a_window_without_frames_is_refused() {
        assert!(network_input(&window(vec![], Heading::Unknown), Orientation::AsFilmed).is_err());
    }
}
