//! Quality gates: which frames of a track are usable silhouettes, and which windows have enough of
//! them. Every rejection has a name that ends up in a "poor quality" decision.

use std::fmt;

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

/// Checks one blob of a track; `previous_height` is the track's blob height in its previous frame.
pub fn check_frame(
    bbox: &BoundingBox,
    image_size: (u32, u32),
    previous_height: Option<u32>,
    config: &QualityConfig,
) -> Result<(), FrameRejection> {
    let (w, h) = image_size;
    let m = config.border_margin_px;
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
            check_frame(&bbox(100, 20, 140, 200), size, None, &c),
            Ok(())
        );
        assert_eq!(
            check_frame(&bbox(100, 0, 140, 200), size, None, &c),
            Err(FrameRejection::TouchesTopOrBottom)
        );
        assert_eq!(
            check_frame(&bbox(100, 20, 140, 240), size, None, &c),
            Err(FrameRejection::TouchesTopOrBottom)
        );
        assert_eq!(
            check_frame(&bbox(0, 20, 40, 200), size, None, &c),
            Err(FrameRejection::TouchesSide)
        );
        assert_eq!(
            check_frame(&bbox(100, 20, 110, 50), size, None, &c),
            Err(FrameRejection::TooShort)
        );
        assert_eq!(
            check_frame(&bbox(50, 20, 250, 200), size, None, &c),
            Err(FrameRejection::ImplausibleAspect)
        );
        assert_eq!(
            check_frame(&bbox(100, 20, 140, 200), size, Some(120), &c),
            Err(FrameRejection::HeightJump)
        );
        assert_eq!(
            check_frame(&bbox(100, 20, 140, 200), size, Some(170), &c),
            Ok(())
        );
    }
}
