//! CASIA-B walks as OpenGait's pretreatment leaves them (uint8 `[T, 64, 64]`), from either layout a
//! user may have:
//!
//! - the bit-packed archive, one `casia-b_SSS.npz` per subject, key `SSS_COND_VVV` holding
//!   `numpy.packbits(silhouette >= 128, axis=-1)` as uint8 `[T, 64, 8]` (most significant bit first);
//! - OpenGait's tree of pickles, `SSS/COND/VVV/*.pkl`, each a pickled uint8 array `[T, 64, 64]`.
//!
//! Walks are read one subject at a time: the whole test set unpacked would take about 2 GB.

use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::Array3;
use ndarray_npy::NpzReader;

use crate::error::{HstlError, Result};
use crate::input::Silhouettes;
use crate::pickle::{self, Value};

const FRAME: usize = 64;
const PACKED_WIDTH: usize = FRAME / 8;

/// One walk: a subject, a condition (`nm-01` … `cl-02`), a view (`000` … `180`) and its frames.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// Subject id, `001` … `124`.
    pub subject: String,
    /// Condition, `nm-01` … `cl-02`.
    pub condition: String,
    /// Camera view in degrees, `000` … `180`.
    pub view: String,
    frames: usize,
    /// Row-major `[frames, 64, 64]`, 0..255.
    pixels: Vec<u8>,
}

impl Walk {
    /// Frames in the walk.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Row-major `[frames, 64, 64]` pixels, 0..255: the stored form of OpenGait's pretreatment.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Keeps at most the first `max_frames` frames.
    pub fn truncate(&mut self, max_frames: usize) {
        self.frames = self.frames.min(max_frames);
        self.pixels.truncate(self.frames * FRAME * FRAME);
    }

    /// The network input: the reference cut to 64×44, scaled to [0, 1].
    pub fn silhouettes(&self) -> Result<Silhouettes> {
        Silhouettes::from_u8(&[self.frames, FRAME, FRAME], &self.pixels)
    }
}

/// Subject ids from `075-124` or `001,005,010-012`.
pub fn parse_subjects(spec: &str) -> Result<Vec<String>> {
    let bad = || {
        HstlError::BadInput(format!(
            "subjects `{spec}`: expected e.g. 075-124 or 001,005"
        ))
    };
    let mut subjects = Vec::new();
    for part in spec.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let last: u32 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last || last > 999 {
            return Err(bad());
        }
        subjects.extend((first..=last).map(|n| format!("{n:03}")));
    }
    Ok(subjects)
}

/// Every walk of `subject` under `root`, sorted by condition then view; with `views`, only those.
pub fn read_subject(root: &Path, subject: &str, views: Option<&[String]>) -> Result<Vec<Walk>> {
    let packed = root.join(format!("casia-b_{subject}.npz"));
    let tree = root.join(subject);
    let mut walks = if packed.is_file() {
        read_packed(&packed, subject)?
    } else if tree.is_dir() {
        read_tree(&tree, subject)?
    } else {
        return Err(dataset(
            root,
            format!(
                "subject {subject}: neither {} nor {}/ exists",
                packed.display(),
                tree.display()
            ),
        ));
    };
    walks.retain(|w| w.frames > 0 && views.is_none_or(|v| v.contains(&w.view)));
    walks.sort_by(|a, b| (&a.condition, &a.view).cmp(&(&b.condition, &b.view)));
    Ok(walks)
}

fn read_packed(path: &Path, subject: &str) -> Result<Vec<Walk>> {
    let file = File::open(path).map_err(|e| HstlError::io(path, e))?;
    let mut archive = NpzReader::new(file).map_err(|e| dataset(path, e.to_string()))?;
    let names = archive.names().map_err(|e| dataset(path, e.to_string()))?;
    let mut walks = Vec::with_capacity(names.len());
    for name in names {
        let key = name.trim_end_matches(".npy");
        let (condition, view) = parse_key(key, subject)
            .ok_or_else(|| dataset(path, format!("key `{key}` is not {subject}_COND_VVV")))?;
        let packed: Array3<u8> = archive
            .by_name(&name)
            .map_err(|e| dataset(path, format!("{key}: {e}")))?;
        let (frames, rows, width) = packed.dim();
        if (rows, width) != (FRAME, PACKED_WIDTH) {
            return Err(dataset(
                path,
                format!("{key} is [{frames}, {rows}, {width}], expected bit-packed [T, 64, 8]"),
            ));
        }
        let pixels = packed
            .as_standard_layout()
            .iter()
            .flat_map(|&byte| (0..8).rev().map(move |bit| ((byte >> bit) & 1) * 255))
            .collect();
        walks.push(Walk {
            subject: subject.to_owned(),
            condition,
            view,
            frames,
            pixels,
        });
    }
    Ok(walks)
}

fn parse_key(key: &str, subject: &str) -> Option<(String, String)> {
    let mut fields = key.split('_');
    let (id, condition, view) = (fields.next()?, fields.next()?, fields.next()?);
    let known_condition = ["nm-", "bg-", "cl-"]
        .iter()
        .any(|c| condition.starts_with(c));
    (id == subject && known_condition && view.len() == 3 && fields.next().is_none())
        .then(|| (condition.to_owned(), view.to_owned()))
}

fn read_tree(directory: &Path, subject: &str) -> Result<Vec<Walk>> {
    let mut walks = Vec::new();
    for condition_dir in sorted_dirs(directory)? {
        for view_dir in sorted_dirs(&condition_dir)? {
            let Some(file) = first_pickle(&view_dir)? else {
                continue;
            };
            let (frames, pixels) = read_pickled_frames(&file)?;
            walks.push(Walk {
                subject: subject.to_owned(),
                condition: file_name(&condition_dir),
                view: file_name(&view_dir),
                frames,
                pixels,
            });
        }
    }
    Ok(walks)
}

/// A pickled numpy uint8 `[T, 64, 64]`, as OpenGait's pretreatment writes each walk.
pub fn read_pickled_frames(path: &Path) -> Result<(usize, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| HstlError::io(path, e))?;
    match pickle::parse(&bytes)? {
        Value::NumpyArray {
            dtype,
            shape,
            fortran_order: false,
            data,
        } if dtype == "u1" && shape.len() == 3 && shape[1..] == [FRAME, FRAME] => {
            if data.len() != shape.iter().product::<usize>() {
                return Err(dataset(path, "array data is shorter than its shape".into()));
            }
            Ok((shape[0], data))
        }
        Value::NumpyArray { dtype, shape, .. } => Err(dataset(
            path,
            format!("holds {dtype} {shape:?}, expected uint8 [T, 64, 64] in C order"),
        )),
        _ => Err(dataset(path, "does not hold a numpy array".into())),
    }
}

fn sorted_dirs(directory: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(directory).map_err(|e| HstlError::io(directory, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn first_pickle(directory: &Path) -> Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(directory).map_err(|e| HstlError::io(directory, e))?;
    Ok(entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pkl"))
        .min())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn dataset(path: &Path, message: String) -> HstlError {
    HstlError::Dataset {
        path: path.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_ranges_expand_and_reject_nonsense() {
        assert_eq!(parse_subjects("074-076").unwrap(), ["074", "075", "076"]);
        assert_eq!(parse_subjects("1,010-011").unwrap(), ["001", "010", "011"]);
        for bad in ["", "a-b", "076-074", "0", "1-1000"] {
            assert!(parse_subjects(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_name_subject_condition_and_view() {
        assert_eq!(
            parse_key("075_bg-02_162", "075"),
            Some(("bg-02".into(), "162".into()))
        );
        assert_eq!(parse_key("076_bg-02_162", "075"), None);
        assert_eq!(parse_key("075_xx-02_162", "075"), None);
        assert_eq!(parse_key("075_nm-01_090_extra", "075"), None);
    }
}
