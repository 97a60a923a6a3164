//! Per-track ring buffers of normalised silhouettes and the windows cut from them: N consecutive
//! frames every H frames, and a last window when the walk ends. Memory per track is bounded by N.

use std::collections::{BTreeMap, VecDeque};

use image::GrayImage;

use crate::quality::{check_walker, FrameRejection, NotAWalker, WalkerGate};
use crate::tracking::TrackId;

/// How tracks are cut into windows for the network.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    /// Frames per window (HSTL trained on 30-frame clips).
    pub frames: usize,
    /// Frames between the starts of consecutive windows.
    pub hop: usize,
    /// A window needs at least this share of its frames to be valid silhouettes...
    pub min_valid_fraction: f32,
    /// ...and at least this many.
    pub min_valid_frames: usize,
    /// What a window of a walking person looks like.
    pub walker: WalkerGate,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            frames: 30,
            hop: 15,
            min_valid_fraction: 0.6,
            min_valid_frames: 10,
            walker: WalkerGate::default(),
        }
    }
}

/// Whether a window can go to the network.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowQuality {
    /// Enough valid silhouettes, of a walking person.
    Good,
    /// Too many frames refused by the quality gates.
    TooFewValidFrames {
        /// Valid silhouettes in the window.
        valid: usize,
        /// Valid silhouettes a window needs.
        required: usize,
    },
    /// Enough silhouettes, but not of a walking person (a vehicle, something that stands still).
    NotAWalker(NotAWalker),
}

/// One frame of a track: its normalised 64×64 silhouette or why there is none.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The frame.
    pub frame_index: u64,
    /// Its silhouette, or why there is none.
    pub silhouette: Result<GrayImage, FrameRejection>,
    /// Where the walker was across the camera's image: the blob's centre and height, in pixels
    /// (none for silhouettes that come without their frame, as a dataset's).
    pub placement: Option<Placement>,
}

/// Where a walker was in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Horizontal centre, pixels from the image's left edge.
    pub centre_x: f32,
    /// Height of the blob, pixels.
    pub height: f32,
}

/// Which way a window's walker crossed the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heading {
    /// Towards the image's right edge.
    Rightwards,
    /// Towards its left edge.
    Leftwards,
    /// Not across the image (towards or away from the camera, standing), or not known.
    Unknown,
}

/// A walker crossed the image when its centre moved at least this many of its heights over the
/// window (a walker covers about a height a second; 30 frames at 25 frames/s).
const CROSSING_HEIGHTS: f32 = 0.3;

impl Heading {
    /// The heading of the observations, first to last placed one.
    pub fn of(observations: &[Observation]) -> Heading {
        let mut placed = observations.iter().filter_map(|o| o.placement);
        let (Some(first), Some(last)) = (placed.next(), placed.next_back()) else {
            return Heading::Unknown;
        };
        let moved = last.centre_x - first.centre_x;
        let height = first.height.max(last.height);
        if moved >= CROSSING_HEIGHTS * height {
            Heading::Rightwards
        } else if moved <= -CROSSING_HEIGHTS * height {
            Heading::Leftwards
        } else {
            Heading::Unknown
        }
    }
}

/// Consecutive frames of one track, as the network will see them.
#[derive(Debug, Clone)]
pub struct Window {
    /// The track.
    pub track: TrackId,
    /// Index of its first frame.
    pub first_frame: u64,
    /// Index of its last frame.
    pub last_frame: u64,
    /// The valid silhouettes, in order, uint8 64×64.
    pub silhouettes: Vec<GrayImage>,
    /// The frame index of each valid silhouette: consecutive windows overlap, and a walk streamed
    /// through the network takes each frame once.
    pub frames: Vec<u64>,
    /// Frames refused by the quality gates, by reason.
    pub rejections: BTreeMap<FrameRejection, usize>,
    /// Whether it can go to the network.
    pub quality: WindowQuality,
    /// The walk ended with this window.
    pub closes_walk: bool,
    /// Which way the walker crossed the image in it.
    pub heading: Heading,
}

impl Window {
    /// `[T, 64, 64]` uint8, the layout `hstl::Silhouettes::from_u8` and `.npy` files use.
    pub fn stacked(&self) -> Vec<u8> {
        stack(&self.silhouettes)
    }
}

/// Silhouettes as one row-major `[T, H, W]` buffer.
pub fn stack(silhouettes: &[GrayImage]) -> Vec<u8> {
    silhouettes
        .iter()
        .flat_map(|s| s.as_raw().iter().copied())
        .collect()
}

/// The ring buffer of one track.
#[derive(Debug, Default)]
pub struct TrackWindows {
    buffer: VecDeque<Observation>,
    since_last_window: usize,
    windows_cut: usize,
}

impl TrackWindows {
    /// Adds a frame; returns a window when one is due.
    pub fn push(
        &mut self,
        track: TrackId,
        observation: Observation,
        config: &WindowConfig,
    ) -> Option<Window> {
        if self.buffer.len() == config.frames {
            self.buffer.pop_front();
        }
        self.buffer.push_back(observation);
        self.since_last_window += 1;
        let due = self.buffer.len() == config.frames
            && (self.windows_cut == 0 || self.since_last_window >= config.hop);
        due.then(|| self.cut(track, config, false))
    }

    /// The walk is over: the last window, if frames arrived since the previous one.
    pub fn close(&mut self, track: TrackId, config: &WindowConfig) -> Option<Window> {
        let fresh = if self.windows_cut == 0 {
            !self.buffer.is_empty()
        } else {
            self.since_last_window > 0
        };
        fresh.then(|| self.cut(track, config, true))
    }

    fn cut(&mut self, track: TrackId, config: &WindowConfig, closes_walk: bool) -> Window {
        self.since_last_window = 0;
        self.windows_cut += 1;
        let mut rejections = BTreeMap::new();
        let mut silhouettes = Vec::new();
        let mut frames = Vec::new();
        for observation in &self.buffer {
            match &observation.silhouette {
                Ok(s) => {
                    silhouettes.push(s.clone());
                    frames.push(observation.frame_index);
                }
                Err(reason) => *rejections.entry(*reason).or_insert(0) += 1,
            }
        }
        let required = ((config.min_valid_fraction * config.frames as f32).ceil() as usize)
            .max(config.min_valid_frames);
        let quality = if silhouettes.len() < required {
            WindowQuality::TooFewValidFrames {
                valid: silhouettes.len(),
                required,
            }
        } else {
            match check_walker(&silhouettes, &config.walker) {
                Ok(()) => WindowQuality::Good,
                Err(reason) => WindowQuality::NotAWalker(reason),
            }
        };
        Window {
            track,
            first_frame: self.buffer.front().map_or(0, |o| o.frame_index),
            last_frame: self.buffer.back().map_or(0, |o| o.frame_index),
            silhouettes,
            frames,
            rejections,
            quality,
            closes_walk,
            heading: Heading::of(self.buffer.make_contiguous()),
        }
    }
}

/// The windows the kiosk cuts from one whole walk of valid silhouettes: each frame through a track's
/// [`TrackWindows`], then the track's end, exactly as at the door. Offline tools (calibration) cut
/// walks with it so that they measure the windows the kiosk decides on.
pub fn cut_walk(silhouettes: &[GrayImage], config: &WindowConfig) -> Vec<Window> {
    const WALK: TrackId = 0;
    let mut track = TrackWindows::default();
    let mut windows: Vec<Window> = silhouettes
        .iter()
        .enumerate()
        .filter_map(|(index, silhouette)| {
            let observation = Observation {
                frame_index: index as u64,
                silhouette: Ok(silhouette.clone()),
                placement: None,
            };
            track.push(WALK, observation, config)
        })
        .collect();
    windows.extend(track.close(WALK, config));
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame `i` of a walker, with `i` written (below the body level) in its top-left pixel.
    fn valid(i: u64) -> Observation {
        let mut silhouette = crate::quality::figure(20, i as usize);
        silhouette.put_pixel(0, 0, image::Luma([i as u8]));
        Observation {
            frame_index: i,
            silhouette: Ok(silhouette),
            placement: Some(Placement {
                centre_x: 10.0 + i as f32,
                height: 60.0,
            }),
        }
    }

    #[test]
    fn a_window_knows_which_way_its_walker_crossed_the_image() {
        let config = WindowConfig::default();
        let walk = |step: f32| {
            let mut track = TrackWindows::default();
            (0..30)
                .filter_map(|i| {
                    let mut observation = valid(i);
                    observation.placement = Some(Placement {
                        centre_x: 80.0 + step * i as f32,
                        height: 60.0,
                    });
                    track.push(1, observation, &config)
                })
                .next()
                .unwrap()
                .heading
        };
        assert_eq!(walk(1.5), Heading::Rightwards);
        assert_eq!(walk(-1.5), Heading::Leftwards);
        // Towards the camera, or shuffling: 0.2 of a height over the window.
        assert_eq!(walk(0.4), Heading::Unknown);
        // Silhouettes without their frames (a dataset's).
        let windows = cut_walk(&vec![crate::quality::figure(20, 0); 30], &config);
        assert_eq!(windows[0].heading, Heading::Unknown);
    }

    #[test]
    fn windows_every_hop_after_the_first_full_one_and_a_closing_one() {
        let config = WindowConfig::default();
        let mut track = TrackWindows::default();
        let mut windows = Vec::new();
        for i in 0..80 {
            windows.extend(track.push(7, valid(i), &config));
        }
        windows.extend(track.close(7, &config));
        let spans: Vec<(u64, u64, bool)> = windows
            .iter()
            .map(|w| (w.first_frame, w.last_frame, w.closes_walk))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, 29, false),
                (15, 44, false),
                (30, 59, false),
                (45, 74, false),
                (50, 79, true)
            ]
        );
        assert!(windows
            .iter()
            .all(|w| w.silhouettes.len() == 30 && w.quality == WindowQuality::Good));
        assert_eq!(windows[1].silhouettes[0].get_pixel(0, 0).0[0], 15);
        assert_eq!(windows[1].frames, (15..45).collect::<Vec<u64>>());
    }

    #[test]
    fn a_short_walk_gives_one_window_and_rejections_are_counted() {
        let config = WindowConfig::default();
        let mut track = TrackWindows::default();
        for i in 0..12 {
            let observation = if i % 3 == 0 {
                Observation {
                    frame_index: i,
                    silhouette: Err(FrameRejection::TouchesSide),
                    placement: None,
                }
            } else {
                valid(i)
            };
            assert!(track.push(1, observation, &config).is_none());
        }
        let window = track.close(1, &config).unwrap();
        assert_eq!(window.silhouettes.len(), 8);
        assert_eq!(window.frames, vec![1, 2, 4, 5, 7, 8, 10, 11]);
        assert_eq!(window.rejections[&FrameRejection::TouchesSide], 4);
        assert_eq!(
            window.quality,
            WindowQuality::TooFewValidFrames {
                valid: 8,
                required: 18
            }
        );
        assert!(track.close(1, &config).is_none(), "nothing new to close");
    }

    #[test]
    fn a_window_of_something_that_does_not_walk_says_why() {
        let config = WindowConfig::default();
        let standing = vec![crate::quality::figure(20, 1); 30];
        let windows = cut_walk(&standing, &config);
        assert!(matches!(
            windows[0].quality,
            WindowQuality::NotAWalker(NotAWalker::Motionless { .. })
        ));
        let wide: Vec<GrayImage> = (0..30).map(|t| crate::quality::figure(50, t)).collect();
        assert!(matches!(
            cut_walk(&wide, &config)[0].quality,
            WindowQuality::NotAWalker(NotAWalker::TooWide { .. })
        ));
    }

    #[test]
    fn a_whole_walk_is_cut_as_the_kiosk_cuts_a_track() {
        let config = WindowConfig::default();
        let frames = |n: u64| {
            (0..n)
                .map(|i| valid(i).silhouette.unwrap())
                .collect::<Vec<_>>()
        };
        let spans = |n: u64| -> Vec<(u64, u64, bool)> {
            cut_walk(&frames(n), &config)
                .iter()
                .map(|w| {
                    (
                        w.first_frame,
                        w.last_frame,
                        w.quality == WindowQuality::Good,
                    )
                })
                .collect()
        };
        assert_eq!(spans(30), [(0, 29, true)]);
        assert_eq!(spans(60), [(0, 29, true), (15, 44, true), (30, 59, true)]);
        assert_eq!(
            spans(70),
            [
                (0, 29, true),
                (15, 44, true),
                (30, 59, true),
                (40, 69, true)
            ]
        );
        assert_eq!(
            spans(20),
            [(0, 19, true)],
            "a short walk still gives the kiosk one window"
        );
        assert_eq!(spans(12), [(0, 11, false)], "too short to decide on");
        assert!(cut_walk(&[], &config).is_empty());
    }

    #[test]
    fn the_buffer_never_grows_past_the_window() {
        let config = WindowConfig::default();
        let mut track = TrackWindows::default();
        for i in 0..10_000 {
            track.push(1, valid(i), &config);
        }
        assert_eq!(track.buffer.len(), config.frames);
    }
}
