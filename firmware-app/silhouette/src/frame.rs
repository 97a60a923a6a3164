//! Frames as the silhouette stage sees them (8-bit luma), and the pixel conversions that produce them.

use std::time::Duration;

use image::GrayImage;

/// One greyscale frame and when it was captured, relative to the start of its source.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Position in its source, from 0.
    pub index: u64,
    /// Capture time since the source started.
    pub timestamp: Duration,
    /// 8-bit luma.
    pub image: GrayImage,
}

/// Luma (BT.601, integer) of packed 8-bit RGB.
pub fn rgb_to_luma(rgb: &[u8], width: u32, height: u32) -> Option<GrayImage> {
    let pixels = (width as usize) * (height as usize);
    if rgb.len() < pixels * 3 {
        return None;
    }
    let luma = rgb[..pixels * 3]
        .chunks_exact(3)
        .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32 + 128) >> 8) as u8)
        .collect();
    GrayImage::from_raw(width, height, luma)
}

/// The Y plane of packed YUYV 4:2:2 (Y0 U Y1 V): every other byte, no arithmetic.
pub fn yuyv_to_luma(yuyv: &[u8], width: u32, height: u32) -> Option<GrayImage> {
    let pixels = (width as usize) * (height as usize);
    if yuyv.len() < pixels * 2 {
        return None;
    }
    GrayImage::from_raw(
        width,
        height,
        yuyv[..pixels * 2].iter().step_by(2).copied().collect(),
    )
}

/// The Y plane of NV12 (a full-resolution luma plane followed by interleaved chroma).
pub fn nv12_to_luma(nv12: &[u8], width: u32, height: u32) -> Option<GrayImage> {
    let pixels = (width as usize) * (height as usize);
    GrayImage::from_raw(width, height, nv12.get(..pixels)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_keeps_every_luma_byte() {
        let yuyv = [10, 128, 20, 128, 30, 99, 40, 99];
        let y = yuyv_to_luma(&yuyv, 4, 1).unwrap();
        assert_eq!(y.as_raw(), &vec![10, 20, 30, 40]);
        assert!(yuyv_to_luma(&yuyv[..6], 4, 1).is_none());
    }

    #[test]
    fn rgb_luma_of_primaries_and_grey() {
        let rgb = [255, 0, 0, 0, 255, 0, 0, 0, 255, 200, 200, 200];
        let y = rgb_to_luma(&rgb, 4, 1).unwrap();
        assert_eq!(y.as_raw(), &vec![77, 149, 29, 200]);
    }

    #[test]
    fn nv12_takes_the_luma_plane() {
        let nv12 = [1, 2, 3, 4, 9, 9];
        assert_eq!(
            nv12_to_luma(&nv12, 2, 2).unwrap().as_raw(),
            &vec![1, 2, 3, 4]
        );
        assert!(nv12_to_luma(&nv12[..3], 2, 2).is_none());
    }
}
