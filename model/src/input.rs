//! Silhouette clips as the network takes them: `[T, 64, 44]` float32 in [0, 1].
//!
//! Accepts what users have: uint8 0..255 or float 0..1, OpenGait's pretreated `[T, 64, 64]`
//! (cut by 10 columns each side, as the reference `BaseSilCuttingTransform` does) or model-ready
//! `[T, 64, 44]`, with or without a leading batch axis of 1.

use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;

use crate::error::{HstlError, Result};
use crate::variant::{INPUT_HEIGHT, INPUT_WIDTH, PRETREATED_WIDTH};

/// Columns the reference transform cuts from each side of a 64-wide silhouette.
pub const CUT_COLUMNS: usize = (PRETREATED_WIDTH - INPUT_WIDTH) / 2;
/// Slack above 1.0 for float silhouettes that went through a resize.
const FLOAT_RANGE_TOLERANCE: f32 = 1e-3;

#[derive(Debug, Clone, PartialEq)]
pub struct Silhouettes {
    frames: usize,
    data: Vec<f32>,
}

impl Silhouettes {
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Row-major `[T, 64, 44]` values in [0, 1].
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    pub fn from_u8(shape: &[usize], data: &[u8]) -> Result<Self> {
        let values: Vec<f32> = data.iter().map(|&v| v as f32 / 255.0).collect();
        Self::from_unit_range(shape, values)
    }

    pub fn from_f32(shape: &[usize], data: &[f32]) -> Result<Self> {
        if let Some(bad) = data
            .iter()
            .find(|v| !(-FLOAT_RANGE_TOLERANCE..=1.0 + FLOAT_RANGE_TOLERANCE).contains(*v))
        {
            return Err(HstlError::BadInput(format!(
                "float silhouettes must lie in [0, 1], found {bad} (uint8 0..255 data must be stored as uint8)"
            )));
        }
        Self::from_unit_range(shape, data.to_vec())
    }

    /// Reads a `.npy` file of uint8 or float32 silhouettes.
    pub fn read_npy(path: &Path) -> Result<Self> {
        let open = || std::fs::File::open(path).map_err(|e| HstlError::io(path, e));
        if let Ok(a) = ArrayD::<u8>::read_npy(open()?) {
            return Self::from_u8(
                a.shape(),
                &a.as_standard_layout().iter().copied().collect::<Vec<_>>(),
            );
        }
        match ArrayD::<f32>::read_npy(open()?) {
            Ok(a) => Self::from_f32(
                a.shape(),
                &a.as_standard_layout().iter().copied().collect::<Vec<_>>(),
            ),
            Err(e) => Err(HstlError::BadInput(format!(
                "{}: not a uint8 or float32 .npy array ({e})",
                path.display()
            ))),
        }
    }

    fn from_unit_range(shape: &[usize], values: Vec<f32>) -> Result<Self> {
        let shape = match shape {
            [1, rest @ ..] if rest.len() == 3 => rest,
            s => s,
        };
        let [frames, height, width] = *shape else {
            return Err(HstlError::BadInput(format!(
                "expected shape [T, 64, 44], [1, T, 64, 44] or [T, 64, 64], got {shape:?}"
            )));
        };
        if frames == 0 {
            return Err(HstlError::BadInput("the clip has no frames".into()));
        }
        if height != INPUT_HEIGHT || (width != INPUT_WIDTH && width != PRETREATED_WIDTH) {
            return Err(HstlError::BadInput(format!(
                "frames must be 64x44 or 64x64 (OpenGait-pretreated), got {height}x{width}"
            )));
        }
        if values.len() != frames * height * width {
            return Err(HstlError::BadInput(format!(
                "{} values do not fill shape {shape:?}",
                values.len()
            )));
        }
        let data = if width == PRETREATED_WIDTH {
            values
                .chunks_exact(PRETREATED_WIDTH)
                .flat_map(|row| row[CUT_COLUMNS..CUT_COLUMNS + INPUT_WIDTH].iter().copied())
                .collect()
        } else {
            values
        };
        Ok(Silhouettes { frames, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretreated_frames_lose_ten_columns_each_side() {
        let data: Vec<u8> = (0..64 * 64).map(|i| (i % 64) as u8).collect();
        let s = Silhouettes::from_u8(&[1, 64, 64], &data).unwrap();
        assert_eq!(s.frames(), 1);
        assert_eq!(s.as_slice().len(), 64 * 44);
        assert_eq!(s.as_slice()[0], 10.0 / 255.0);
        assert_eq!(s.as_slice()[43], 53.0 / 255.0);
    }

    #[test]
    fn batch_axis_is_accepted_and_floats_pass_through() {
        let s = Silhouettes::from_f32(&[1, 2, 64, 44], &vec![0.5; 2 * 64 * 44]).unwrap();
        assert_eq!(s.frames(), 2);
        assert!(s.as_slice().iter().all(|&v| v == 0.5));
    }

    #[test]
    fn bad_shapes_and_ranges_are_refused() {
        assert!(Silhouettes::from_u8(&[3, 64, 50], &vec![0; 3 * 64 * 50]).is_err());
        assert!(Silhouettes::from_u8(&[64, 44], &vec![0; 64 * 44]).is_err());
        assert!(Silhouettes::from_u8(&[0, 64, 44], &[]).is_err());
        let err = Silhouettes::from_f32(&[1, 64, 44], &vec![255.0; 64 * 44]).unwrap_err();
        assert!(err.to_string().contains("[0, 1]"), "{err}");
        assert!(Silhouettes::from_f32(&[1, 64, 44], &vec![f32::NAN; 64 * 44]).is_err());
    }
}
