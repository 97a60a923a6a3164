//! Quality gates: which frames of a track are usable silhouettes, and whether a window's silhouettes
//! show a walking person at all. Every rejection has a name that ends up in a decision or an error.

use std::fmt;

use image::GrayImage;

use crate::blobs::BoundingBox;
use crate::normalise::PretreatmentDrop;

/// Why a track's frame gives no silhouette.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameRejection {
    /// The body is cut by the top or bottom of the image: the pretreatment would stretch the rest.
    TouchesTopOrBottom,
    /// The body is cut by the left or right edge (entering or leaving).
    TouchesSide,
    /// Too few pixels tall to resize to 64 rows without inventing detail.
    TooShort,
    /// Width over height outside what a walking person shows.
    ImplausibleAspect,
    /// Height changed abruptly since the track's last frame (a merge, a split, a bad mask).
    HeightJump,
    /// Nearly empty after the pretreatment's own test.
    NearlyEmpty,
    /// The pretreatment's centre fell on column 0.
    CentreAtColumnZero,
}

impl FrameRejection {
    /// Every reason, in report order.
    pub const ALL: [FrameRejection; 7] = [
        FrameRejection::TouchesTopOrBottom,
        FrameRejection::TouchesSide,
        FrameRejection::TooShort,
        FrameRejection::ImplausibleAspect,
        FrameRejection::HeightJump,
        FrameRejection::NearlyEmpty,
        FrameRejection::CentreAtColumnZero,
    ];

    /// A stable snake-case name, for reports and logs.
    pub fn name(self) -> &'static str {
        match self {
            FrameRejection::TouchesTopOrBottom => "touches_top_or_bottom",
            FrameRejection::TouchesSide => "touches_side",
            FrameRejection::TooShort => "too_short",
            FrameRejection::ImplausibleAspect => "implausible_aspect",
            FrameRejection::HeightJump => "height_jump",
            FrameRejection::NearlyEmpty => "nearly_empty",
            FrameRejection::CentreAtColumnZero => "centre_at_column_zero",
        }
    }
}

impl fmt::Display for FrameRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<PretreatmentDrop> for FrameRejection {
    fn from(drop: PretreatmentDrop) -> Self {
        match drop {
            PretreatmentDrop::NearlyEmpty => FrameRejection::NearlyEmpty,
            PretreatmentDrop::CentreAtColumnZero => FrameRejection::CentreAtColumnZero,
        }
    }
}

/// The quality gates' limits.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityConfig {
    /// A box this close to an image edge touches it.
    pub border_margin_px: u32,
    /// Fewest rows a body may cover.
    pub min_height_px: u32,
    /// Narrowest box a walking person makes, width over height...
    pub min_width_over_height: f32,
    /// ...and the widest.
    pub max_width_over_height: f32,
    /// Largest relative height change from one frame of a track to the next.
    pub max_height_change_fraction: f32,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            border_margin_px: 1,
            min_height_px: 48,
            min_width_over_height: 0.12,
            max_width_over_height: 1.0,
            max_height_change_fraction: 0.2,
        }
    }
}

/// Checks one blob of a track; `previous_height` is the track's blob height in its previous frame, and
/// `shaved_px` how far the blob stage's closing pulls a shape the frame cuts in from the edge
/// ([`crate::blobs::BlobConfig::close_radius_px`]): without it, a person too close to the camera, cut
/// at the top and bottom, would seem to end short of the edges and pass as whole.
pub fn check_frame(
    bbox: &BoundingBox,
    image_size: (u32, u32),
    previous_height: Option<u32>,
    shaved_px: u32,
    config: &QualityConfig,
) -> Result<(), FrameRejection> {
    let (w, h) = image_size;
    let m = config.border_margin_px + shaved_px;
    if bbox.y0 < m || bbox.y1 + m > h {
        return Err(FrameRejection::TouchesTopOrBottom);
    }
    if bbox.x0 < m || bbox.x1 + m > w {
        return Err(FrameRejection::TouchesSide);
    }
    if bbox.height() < config.min_height_px {
        return Err(FrameRejection::TooShort);
    }
    let aspect = bbox.width() as f32 / bbox.height() as f32;
    if !(config.min_width_over_height..=config.max_width_over_height).contains(&aspect) {
        return Err(FrameRejection::ImplausibleAspect);
    }
    if let Some(previous) = previous_height {
        let change = (bbox.height() as f32 - previous as f32).abs() / previous as f32;
        if change > config.max_height_change_fraction {
            return Err(FrameRejection::HeightJump);
        }
    }
    Ok(())
}

/// Why a window's silhouettes are not those of a walking person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NotAWalker {
    /// The shapes are too wide for a person: the median width over height of the silhouettes.
    TooWide {
        /// The window's median width over height.
        width_over_height: f32,
    },
    /// The legs do not move: the mean share of the lower body that changes from frame to frame.
    Motionless {
        /// The window's mean leg motion.
        leg_motion: f32,
    },
}

impl NotAWalker {
    /// A stable snake-case name, for reports and logs.
    pub fn name(self) -> &'static str {
        match self {
            NotAWalker::TooWide { .. } => "too_wide_for_a_person",
            NotAWalker::Motionless { .. } => "legs_do_not_move",
        }
    }
}

impl fmt::Display for NotAWalker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotAWalker::TooWide { width_over_height } => write!(
                f,
                "too wide for a person (median width/height {width_over_height:.2})"
            ),
            NotAWalker::Motionless { leg_motion } => {
                write!(f, "legs do not move (leg motion {leg_motion:.3})")
            }
        }
    }
}

/// The limits of [`check_walker`]. The defaults come from CASIA-B's training subjects (every view,
/// with bags and coats) against vehicles of real traffic footage: see the silhouette README.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalkerGate {
    /// Widest median width over height a window of a walking person shows.
    pub max_width_over_height: f32,
    /// Least mean leg motion (share of the lower body's pixels that change between consecutive
    /// silhouettes) a window of a walking person shows.
    pub min_leg_motion: f32,
}

impl Default for WalkerGate {
    fn default() -> Self {
        Self {
            max_width_over_height: 0.6,
            min_leg_motion: 0.015,
        }
    }
}

/// Rows from here down are the lower body of a normalised silhouette (the lower 45 %).
const LOWER_BODY_FIRST_ROW: u32 = 35;
/// A normalised silhouette's pixel is body from this grey level up.
const BODY_LEVEL: u8 = 128;

/// Whether normalised silhouettes, in order, show a walking person: narrow enough for one, and with
/// legs that move. An empty slice passes (nothing to judge).
pub fn check_walker(silhouettes: &[GrayImage], gate: &WalkerGate) -> Result<(), NotAWalker> {
    if silhouettes.is_empty() {
        return Ok(());
    }
    let mut ratios: Vec<f32> = silhouettes.iter().map(width_over_height).collect();
    ratios.sort_by(f32::total_cmp);
    let width_over_height = ratios[ratios.len() / 2];
    if width_over_height > gate.max_width_over_height {
        return Err(NotAWalker::TooWide { width_over_height });
    }
    if silhouettes.len() > 1 {
        let pairs = silhouettes.windows(2);
        let leg_motion =
            pairs.map(|p| leg_change(&p[0], &p[1])).sum::<f32>() / (silhouettes.len() - 1) as f32;
        if leg_motion < gate.min_leg_motion {
            return Err(NotAWalker::Motionless { leg_motion });
        }
    }
    Ok(())
}

/// Width over height of the body's bounding box; 0 for an empty silhouette.
fn width_over_height(silhouette: &GrayImage) -> f32 {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, pixel) in silhouette.enumerate_pixels() {
        if pixel[0] >= BODY_LEVEL {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if x0 > x1 {
        return 0.0;
    }
    (x1 - x0 + 1) as f32 / (y1 - y0 + 1) as f32
}

/// Share of the lower body's pixels (body in either silhouette) that differ between the two.
fn leg_change(a: &GrayImage, b: &GrayImage) -> f32 {
    let (mut changed, mut body) = (0u32, 0u32);
    let first = (LOWER_BODY_FIRST_ROW * a.width()) as usize;
    for (pa, pb) in a.as_raw()[first..].iter().zip(&b.as_raw()[first..]) {
        let (in_a, in_b) = (*pa >= BODY_LEVEL, *pb >= BODY_LEVEL);
        changed += u32::from(in_a != in_b);
        body += u32::from(in_a || in_b);
    }
    changed as f32 / body.max(1) as f32
}

/// A normalised 64 × 64 silhouette of a schematic walker for tests: a trunk `width` columns wide and
/// two legs whose feet are apart by what frame `t` of a four-frame stride gives.
#[cfg(test)]
pub(crate) fn figure(width: u32, t: usize) -> GrayImage {
    let stride = [4, 10, 16, 10][t % 4];
    let centre = 32i64;
    GrayImage::from_fn(64, 64, |x, y| {
        let (x, y) = (i64::from(x), i64::from(y));
        let half = i64::from(width) / 2;
        let trunk = y < 40 && (centre - half..centre + half).contains(&x);
        let spread = (y - 40) * stride / 48;
        let legs =
            y >= 40 && ((x - centre + spread).abs() <= 2 || (x - centre - spread).abs() <= 2);
        image::Luma([if trunk || legs { 255 } else { 0 }])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbox(x0: u32, y0: u32, x1: u32, y1: u32) -> BoundingBox {
        BoundingBox { x0, y0, x1, y1 }
    }

    #[test]
    fn each_gate_names_its_reason() {
        let c = QualityConfig::default();
        let size = (320, 240);
        assert_eq!(
            check_frame(&bbox(100, 20, 140, 200), size, None, 0, &c),
            Ok(())
        );
        assert_eq!(
            check_frame(&bbox(100, 0, 140, 200), size, None, 0, &c),
            Err(FrameRejection::TouchesTopOrBottom)
        );
        assert_eq!(
            check_frame(&bbox(100, 20, 140, 240), size, None, 0, &c),
            Err(FrameRejection::TouchesTopOrBottom)
        );
        assert_eq!(
            check_frame(&bbox(0, 20, 40, 200), size, None, 0, &c),
            Err(FrameRejection::TouchesSide)
        );
        assert_eq!(
            check_frame(&bbox(100, 20, 110, 50), size, None, 0, &c),
            Err(FrameRejection::TooShort)
        );
        assert_eq!(
            check_frame(&bbox(50, 20, 250, 200), size, None, 0, &c),
            Err(FrameRejection::ImplausibleAspect)
        );
        assert_eq!(
            check_frame(&bbox(100, 20, 140, 200), size, Some(120), 0, &c),
            Err(FrameRejection::HeightJump)
        );
        assert_eq!(
            check_frame(&bbox(100, 20, 140, 200), size, Some(170), 0, &c),
            Ok(())
        );
    }

    #[test]
    fn a_person_the_frame_cuts_is_refused_though_the_closing_shaves_the_cut() {
        use crate::background::FOREGROUND;
        use crate::blobs::{extract_blobs, BlobConfig};
        let (w, h) = (320, 240);
        let blobs_config = BlobConfig::default();
        // Cut by the top and bottom of the frame, as someone too close to the camera is.
        let labels = GrayImage::from_fn(w, h, |x, _| {
            image::Luma([if (100..160).contains(&x) {
                FOREGROUND
            } else {
                0
            }])
        });
        let blobs = extract_blobs(&labels, &blobs_config);
        assert_eq!(blobs.len(), 1);
        let shaved = blobs_config.close_radius_px(h) as u32;
        assert!(blobs[0].bbox.y0 > 0, "the closing pulls the cut edge in");
        assert_eq!(
            check_frame(
                &blobs[0].bbox,
                (w, h),
                None,
                shaved,
                &QualityConfig::default()
            ),
            Err(FrameRejection::TouchesTopOrBottom)
        );
    }

    fn walking(width: u32) -> Vec<GrayImage> {
        (0..30).map(|t| figure(width, t)).collect()
    }

    #[test]
    fn a_walker_passes_and_each_implausibility_names_its_measure() {
        let gate = WalkerGate::default();
        assert_eq!(check_walker(&walking(20), &gate), Ok(()));
        assert!(matches!(
            check_walker(&walking(48), &gate),
            Err(NotAWalker::TooWide { width_over_height }) if width_over_height > 0.7
        ));
        let standing = vec![figure(20, 1); 30];
        assert_eq!(
            check_walker(&standing, &gate),
            Err(NotAWalker::Motionless { leg_motion: 0.0 })
        );
        assert_eq!(check_walker(&[], &gate), Ok(()));
        assert_eq!(check_walker(&standing[..1], &gate), Ok(()));
    }
}
