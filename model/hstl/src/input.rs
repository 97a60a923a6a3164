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
/// The longest clip the network is given at once: 40 s at 25 frames per second, several walks past a
/// door. The network's activations grow with the clip (about 1 MB per frame for the published
/// variant), so a longer recording is cut into windows first, as the kiosk and `enrol` do.
pub const MAX_CLIP_FRAMES: usize = 1_000;
/// An `.npy` header longer than this is not one numpy wrote for an array of up to four axes.
const MAX_NPY_HEADER_BYTES: usize = 4_096;

/// How a model wants walks that cross the image: as they were filmed, or every one turned to cross
/// rightwards (a walk that crossed leftwards mirrored whole), the way it was trained. Recorded in
/// the model file (ONNX metadata [`Orientation::METADATA_KEY`]), so that a gallery, its door and its
/// calibration, all tied to the model's identity, always see walks the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orientation {
    /// Walks as filmed (every model without the record).
    #[default]
    AsFilmed,
    /// Walks that crossed leftwards mirrored to cross rightwards.
    Rightwards,
}

impl Orientation {
    /// The ONNX metadata key that records it.
    pub const METADATA_KEY: &'static str = "hstl.orientation";
    const RIGHTWARDS: &'static str = "rightwards";

    /// The orientation a model's metadata records (`AsFilmed` when it records none).
    pub fn of_metadata<'a>(mut entries: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        match entries.find(|(key, _)| *key == Self::METADATA_KEY) {
            None => Ok(Orientation::AsFilmed),
            Some((_, Self::RIGHTWARDS)) => Ok(Orientation::Rightwards),
            Some((_, other)) => Err(HstlError::Inference(format!(
                "the model records orientation {other:?}; this build knows {:?}",
                Self::RIGHTWARDS
            ))),
        }
    }

    /// How the ONNX model at `path` wants walks oriented.
    pub fn of_model(path: &Path) -> Result<Self> {
        crate::backend::tract::orientation_of(&crate::backend::tract::read_proto(path)?)
    }

    /// What the metadata holds for it, when anything.
    pub fn metadata_value(self) -> Option<&'static str> {
        match self {
            Orientation::AsFilmed => None,
            Orientation::Rightwards => Some(Self::RIGHTWARDS),
        }
    }
}

/// A clip of silhouettes as the network reads them: `[T, 64, 44]` floats in 0..1.
#[derive(Debug, Clone, PartialEq)]
pub struct Silhouettes {
    frames: usize,
    data: Vec<f32>,
}

impl Silhouettes {
    /// Frames in the clip.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Row-major `[T, 64, 44]` values in [0, 1].
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// From uint8 0..255 silhouettes shaped `[T, 64, 64]` (10 columns cut each side, as the reference does) or `[T, 64, 44]`, with or without a leading batch axis of 1.
    pub fn from_u8(shape: &[usize], data: &[u8]) -> Result<Self> {
        check_frame_count(shape)?;
        let values: Vec<f32> = data.iter().map(|&v| v as f32 / 255.0).collect();
        Self::from_unit_range(shape, values)
    }

    /// From float 0..1 silhouettes of the shapes [`Silhouettes::from_u8`] takes.
    pub fn from_f32(shape: &[usize], data: &[f32]) -> Result<Self> {
        check_frame_count(shape)?;
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

    /// Reads a `.npy` file of uint8 or float32 silhouettes. Its header is checked against the file's
    /// size and the clip limit first, so a header that promises more than the file holds never
    /// reaches an allocation.
    pub fn read_npy(path: &Path) -> Result<Self> {
        check_npy_header(path)?;
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

/// The frame count of a clip shape (`[T, H, W]` or `[1, T, H, W]`) within [`MAX_CLIP_FRAMES`].
fn check_frame_count(shape: &[usize]) -> Result<()> {
    let frames = match shape {
        [1, t, _, _] | [t, _, _] => *t,
        _ => 0,
    };
    if frames > MAX_CLIP_FRAMES {
        return Err(HstlError::BadInput(format!(
            "a clip of {frames} frames is longer than the {MAX_CLIP_FRAMES} the network takes at once: cut the walk into windows"
        )));
    }
    Ok(())
}

/// Reads an `.npy` header (format 1.0–3.0) and checks that the array it describes is a clip of at
/// most [`MAX_CLIP_FRAMES`] frames whose bytes are exactly what follows the header.
fn check_npy_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let bad = |message: String| HstlError::BadInput(format!("{}: {message}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|e| HstlError::io(path, e))?;
    let size = file.metadata().map_err(|e| HstlError::io(path, e))?.len();
    let mut preamble = [0u8; 12];
    file.read_exact(&mut preamble[..10])
        .map_err(|_| bad("too short for an .npy file".into()))?;
    if &preamble[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file (no magic string)".into()));
    }
    let (header_length, preamble_length) = match preamble[6] {
        1 => (u16::from_le_bytes([preamble[8], preamble[9]]) as usize, 10),
        2 | 3 => {
            file.read_exact(&mut preamble[10..12])
                .map_err(|_| bad("truncated .npy header".into()))?;
            let length = u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]);
            (length as usize, 12)
        }
        version => return Err(bad(format!(".npy format version {version} is unknown"))),
    };
    if header_length > MAX_NPY_HEADER_BYTES {
        return Err(bad(format!("an .npy header of {header_length} bytes")));
    }
    let mut header = vec![0u8; header_length];
    file.read_exact(&mut header)
        .map_err(|_| bad("truncated .npy header".into()))?;
    let header = String::from_utf8_lossy(&header);
    let item_bytes: u64 = if header.contains("'|u1'") || header.contains("'u1'") {
        1
    } else if header.contains("'<f4'") {
        4
    } else {
        return Err(bad("not a uint8 or little-endian float32 .npy array".into()));
    };
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| bad("the .npy header has no shape".into()))?;
    let shape = shape_text
        .trim_start()
        .trim_start_matches('(')
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>())
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| {
            bad(format!(
                "the .npy shape ({shape_text}) is not a list of sizes"
            ))
        })?;
    check_frame_count(&shape)?;
    let data_bytes = shape
        .iter()
        .try_fold(item_bytes, |total, &d| total.checked_mul(d as u64))
        .ok_or_else(|| bad(format!("the .npy shape {shape:?} overflows")))?;
    let expected = (preamble_length + header_length) as u64 + data_bytes;
    if expected != size {
        return Err(bad(format!(
            "the header promises a {shape:?} array ({expected} bytes in all) but the file has {size} bytes"
        )));
    }
    Ok(())
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

    fn npy(dir: &Path, name: &str, header: &str, data: &[u8]) -> std::path::PathBuf {
        let mut dict = header.to_string();
        while !(10 + dict.len() + 1).is_multiple_of(64) {
            dict.push(' ');
        }
        dict.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes.extend_from_slice(data);
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn npy_headers_that_promise_more_than_the_file_holds_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let good = npy(
            dir.path(),
            "good.npy",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 64, 44), }",
            &vec![255; 2 * 64 * 44],
        );
        assert_eq!(Silhouettes::read_npy(&good).unwrap().frames(), 2);
        let huge = npy(
            dir.path(),
            "huge.npy",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (900, 640000, 64), }",
            &[0; 64],
        );
        let error = Silhouettes::read_npy(&huge).unwrap_err().to_string();
        assert!(error.contains("but the file has"), "{error}");
        let long = npy(
            dir.path(),
            "long.npy",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (5000, 64, 44), }",
            &[],
        );
        let error = Silhouettes::read_npy(&long).unwrap_err().to_string();
        assert!(error.contains("5000 frames"), "{error}");
        let overflow = npy(
            dir.path(),
            "overflow.npy",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 18446744073709551615, 44), }",
            &[],
        );
        assert!(Silhouettes::read_npy(&overflow).is_err());
        std::fs::write(dir.path().join("short.npy"), b"\x93NUM").unwrap();
        assert!(Silhouettes::read_npy(&dir.path().join("short.npy")).is_err());
    }

    #[test]
    fn clips_longer_than_the_limit_are_refused_before_conversion() {
        let frames = MAX_CLIP_FRAMES + 1;
        let error = Silhouettes::from_u8(&[frames, 64, 44], &[]).unwrap_err();
        assert!(
            error.to_string().contains("cut the walk into windows"),
            "{error}"
        );
    }
}
