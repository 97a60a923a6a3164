//! OpenGait/HSTL checkpoints: the zip container of `torch.save` (PyTorch ≥ 1.6), read and written
//! without Python.
//!
//! Layout of the archive: `<name>/data.pkl` (the pickled object), `<name>/data/<key>` (one raw
//! little-endian record per storage), `<name>/byteorder`, `<name>/version`. A checkpoint is
//! `{'model': state_dict, 'optimizer': …, 'scheduler': …, 'iteration': n}`; a bare state dict is
//! accepted too.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{HstlError, Result};
use crate::pickle::{self, StorageDtype, TensorRef, Value};

/// A tensor of the state dict, converted to f32 (integers to i64).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Floating-point values (any float dtype, converted).
    F32(Vec<f32>),
    /// Integer values (BatchNorm's `num_batches_tracked`).
    I64(Vec<i64>),
}

/// One tensor of a state dict.
#[derive(Debug, Clone, PartialEq)]
pub struct StateTensor {
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: TensorData,
}

/// The `model` state dict of a checkpoint, in file order, plus what else the checkpoint says.
#[derive(Debug, Clone)]
pub struct StateDict {
    /// Every key with its tensor.
    pub entries: Vec<(String, StateTensor)>,
    /// Training iteration recorded in the checkpoint, when there is one.
    pub iteration: Option<i64>,
}

const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";
/// Prefix of the pickle of a legacy (pre-1.6) `torch.save` file: the pickled magic number.
const LEGACY_MAGIC: &[u8; 2] = b"\x80\x02";
/// DDP-wrapped models saved without unwrapping carry this prefix on every key.
const DATA_PARALLEL_PREFIX: &str = "module.";

/// Reads the model state dict of an OpenGait/HSTL or our own `.pt` checkpoint, executing nothing.
pub fn read_state_dict(path: &Path) -> Result<StateDict> {
    let mut file = File::open(path).map_err(|e| HstlError::io(path, e))?;
    let mut magic = [0u8; 4];
    let got = file.read(&mut magic).map_err(|e| HstlError::io(path, e))?;
    if got < 4 || &magic != ZIP_MAGIC {
        let reason = if magic.starts_with(LEGACY_MAGIC) {
            "legacy pre-1.6 serialization; re-save it with a current torch.save".to_string()
        } else {
            format!("file starts with {:02x?}, not a zip archive", &magic[..got])
        };
        return Err(HstlError::NotACheckpoint {
            path: path.to_path_buf(),
            reason,
        });
    }
    file.rewind().map_err(|e| HstlError::io(path, e))?;
    read_archive(file)
}

fn read_archive<R: Read + Seek>(reader: R) -> Result<StateDict> {
    read_archive_within(reader, MAX_STATE_DICT_BYTES)
}

/// [`read_archive`], refusing before anything is inflated when the state dict's records claim
/// more than `max_total` bytes in all.
fn read_archive_within<R: Read + Seek>(reader: R, max_total: u64) -> Result<StateDict> {
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| HstlError::Archive(e.to_string()))?;
    let pickle_name = archive
        .file_names()
        .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_owned)
        .ok_or_else(|| HstlError::Archive("no data.pkl record".into()))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    if let Ok(order) = read_entry(&mut archive, &format!("{prefix}byteorder")) {
        if order.as_slice() != b"little" {
            return Err(HstlError::Archive(format!(
                "byte order {:?} is not supported",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let root = pickle::parse(&read_entry(&mut archive, &pickle_name)?)?;
    let (model, iteration) = match root.get("model") {
        Some(model) => (
            model,
            root.get("iteration").and_then(|v| {
                if let Value::Int(i) = v {
                    Some(*i)
                } else {
                    None
                }
            }),
        ),
        None => (&root, None),
    };
    let items = model.dict_entries().ok_or_else(|| {
        HstlError::NoStateDict(
            "the pickled object is neither a checkpoint dict nor a state dict".into(),
        )
    })?;
    // What the records claim, from the archive's directory: a bomb is refused before it inflates.
    let mut claimed: HashMap<&str, u64> = HashMap::new();
    for (_, value) in items.iter() {
        if let Value::Tensor(tensor) = value {
            if !claimed.contains_key(tensor.storage_key.as_str()) {
                let name = format!("{prefix}data/{}", tensor.storage_key);
                let size = archive
                    .by_name(&name)
                    .map_err(|e| HstlError::Archive(format!("record {name}: {e}")))?
                    .size();
                claimed.insert(&tensor.storage_key, size);
            }
        }
    }
    let total: u64 = claimed.values().sum();
    if total > max_total {
        return Err(HstlError::Archive(format!(
            "the state dict's records claim {total} bytes in all, more than the {max_total} any HSTL variant's weights take"
        )));
    }
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut entries = Vec::with_capacity(items.len());
    for (key, value) in items {
        let Some(key) = key.as_str() else { continue };
        let Value::Tensor(tensor) = value else {
            continue;
        };
        if !storages.contains_key(&tensor.storage_key) {
            let bytes = read_entry(
                &mut archive,
                &format!("{prefix}data/{}", tensor.storage_key),
            )?;
            storages.insert(tensor.storage_key.clone(), bytes);
        }
        let key = key
            .strip_prefix(DATA_PARALLEL_PREFIX)
            .unwrap_or(key)
            .to_string();
        let data = materialise(&key, tensor, &storages[&tensor.storage_key])?;
        entries.push((
            key,
            StateTensor {
                shape: tensor.shape.clone(),
                data,
            },
        ));
    }
    if entries.is_empty() {
        return Err(HstlError::NoStateDict(
            "the state dict holds no tensors".into(),
        ));
    }
    Ok(StateDict { entries, iteration })
}

/// The largest record a checkpoint needs: the biggest published tensor (OU-MVLP's classifier,
/// 50 × 256 × 5,153 floats) is 264 MB.
pub const MAX_RECORD_BYTES: u64 = 1 << 30;
/// The most bytes a state dict's records may hold in all: the largest variant (OU-MVLP, 89 M
/// parameters with its classifier) takes 356 MB.
pub const MAX_STATE_DICT_BYTES: u64 = 512 << 20;
/// The most elements one tensor view may hold (1 GiB of f32), whatever its shape and strides claim.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 28;

fn read_entry<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str) -> Result<Vec<u8>> {
    let entry = archive
        .by_name(name)
        .map_err(|e| HstlError::Archive(format!("record {name}: {e}")))?;
    let claimed = entry.size();
    if claimed > MAX_RECORD_BYTES {
        return Err(HstlError::Archive(format!(
            "record {name} claims {claimed} bytes, more than any checkpoint holds"
        )));
    }
    // The size in the header is only a claim: read no more than it says, and refuse a record that
    // inflates past it.
    let mut bytes = Vec::with_capacity(claimed as usize);
    entry
        .take(claimed + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| HstlError::Archive(format!("record {name}: {e}")))?;
    if bytes.len() as u64 > claimed {
        return Err(HstlError::Archive(format!(
            "record {name} inflates past the {claimed} bytes its header claims"
        )));
    }
    Ok(bytes)
}

/// Gathers a (possibly strided) view out of its storage bytes.
fn materialise(key: &str, t: &TensorRef, storage: &[u8]) -> Result<TensorData> {
    let bad = |message: String| HstlError::BadTensor {
        key: key.to_string(),
        message,
    };
    let elem = t.dtype.size_bytes();
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| {
            bad(format!(
                "shape {:?} holds more than {MAX_TENSOR_ELEMENTS} elements",
                t.shape
            ))
        })?;
    if t.stride.len() != t.shape.len() {
        return Err(bad(format!(
            "stride {:?} does not match shape {:?}",
            t.stride, t.shape
        )));
    }
    let last_byte = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.storage_offset, |end, (&d, &s)| {
            d.saturating_sub(1)
                .checked_mul(s)
                .and_then(|x| end.checked_add(x))
        })
        .and_then(|max_index| max_index.checked_add(1))
        .and_then(|count| count.checked_mul(elem));
    match last_byte {
        Some(needed) if numel == 0 || needed <= storage.len() => {}
        Some(needed) => {
            return Err(bad(format!(
                "view needs {needed} bytes of storage {}, which holds {} (truncated?)",
                t.storage_key,
                storage.len()
            )))
        }
        None => {
            return Err(bad(format!(
                "view of shape {:?}, stride {:?}, offset {} overflows",
                t.shape, t.stride, t.storage_offset
            )))
        }
    }
    let mut offsets = Vec::with_capacity(numel);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        offsets.push(
            t.storage_offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>(),
        );
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    let at = |o: usize| &storage[o * elem..(o + 1) * elem];
    let float = |f: fn(&[u8]) -> f32| TensorData::F32(offsets.iter().map(|&o| f(at(o))).collect());
    let int = |f: fn(&[u8]) -> i64| TensorData::I64(offsets.iter().map(|&o| f(at(o))).collect());
    Ok(match t.dtype {
        StorageDtype::F32 => float(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        StorageDtype::F64 => {
            float(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
        }
        StorageDtype::F16 => float(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        StorageDtype::BF16 => {
            float(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
        }
        StorageDtype::I64 => {
            int(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        }
        StorageDtype::I32 => int(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64),
        StorageDtype::I16 => int(|b| i16::from_le_bytes([b[0], b[1]]) as i64),
        StorageDtype::I8 => int(|b| b[0] as i8 as i64),
        StorageDtype::U8 | StorageDtype::Bool => int(|b| b[0] as i64),
    })
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise the mantissa.
            let shift = m.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((m << shift) & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Writes `{'model': OrderedDict(state_dict), 'iteration': n}` as `torch.save` lays it out
/// (pickle protocol 2, one stored record per tensor), so this module and PyTorch both read it.
pub fn write_state_dict(path: &Path, archive_name: &str, state: &StateDict) -> Result<()> {
    let file = File::create(path).map_err(|e| HstlError::io(path, e))?;
    let mut zip = zip::ZipWriter::new(file);
    // torch aligns every record to 64 bytes so that storages can be memory-mapped.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    let archive_err = |e: zip::result::ZipError| HstlError::Archive(e.to_string());
    let put = |zip: &mut zip::ZipWriter<File>, name: String, bytes: &[u8]| -> Result<()> {
        zip.start_file(name, options).map_err(archive_err)?;
        zip.write_all(bytes).map_err(|e| HstlError::io(path, e))
    };
    put(
        &mut zip,
        format!("{archive_name}/data.pkl"),
        &pickle_state_dict(state),
    )?;
    put(&mut zip, format!("{archive_name}/byteorder"), b"little")?;
    for (index, (_, tensor)) in state.entries.iter().enumerate() {
        let bytes: Vec<u8> = match &tensor.data {
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        put(&mut zip, format!("{archive_name}/data/{index}"), &bytes)?;
    }
    put(&mut zip, format!("{archive_name}/version"), b"3\n")?;
    zip.finish().map_err(archive_err)?;
    Ok(())
}

fn pickle_state_dict(state: &StateDict) -> Vec<u8> {
    let mut p = PickleWriter::default();
    p.raw(&[0x80, 2, b'}', b'(']);
    p.string("model");
    p.global("collections", "OrderedDict");
    p.raw(b")R(");
    for (index, (key, tensor)) in state.entries.iter().enumerate() {
        p.string(key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.raw(b"(");
        let storage_class = match tensor.data {
            TensorData::F32(_) => "FloatStorage",
            TensorData::I64(_) => "LongStorage",
        };
        p.raw(b"(");
        p.string("storage");
        p.global("torch", storage_class);
        p.string(&index.to_string());
        p.string("cpu");
        p.int(tensor.shape.iter().product::<usize>() as i64);
        p.raw(b"tQ");
        p.int(0);
        p.int_tuple(&tensor.shape);
        let mut strides = vec![1usize; tensor.shape.len()];
        for d in (0..tensor.shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * tensor.shape[d + 1];
        }
        p.int_tuple(&strides);
        p.raw(&[0x89]);
        p.global("collections", "OrderedDict");
        p.raw(b")RtR");
    }
    p.raw(b"u");
    if let Some(iteration) = state.iteration {
        p.string("iteration");
        p.int(iteration);
    }
    p.raw(b"u.");
    p.bytes
}

#[derive(Default)]
struct PickleWriter {
    bytes: Vec<u8>,
}

impl PickleWriter {
    fn raw(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }

    fn string(&mut self, s: &str) {
        self.bytes.push(b'X');
        self.bytes
            .extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(s.as_bytes());
    }

    fn global(&mut self, module: &str, name: &str) {
        self.bytes.push(b'c');
        self.bytes
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn int(&mut self, v: i64) {
        if let Ok(small) = i32::try_from(v) {
            self.bytes.push(b'J');
            self.bytes.extend_from_slice(&small.to_le_bytes());
        } else {
            self.bytes.extend_from_slice(&[0x8a, 8]);
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn int_tuple(&mut self, values: &[usize]) {
        self.bytes.push(b'(');
        for &v in values {
            self.int(v as i64);
        }
        self.bytes.push(b't');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversion_covers_normals_subnormals_and_specials() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn strided_views_are_gathered_in_logical_order() {
        // A transposed 2×3 view of a contiguous 3×2 storage.
        let storage: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let view = TensorRef {
            storage_key: "0".into(),
            dtype: StorageDtype::F32,
            storage_offset: 0,
            shape: vec![2, 3],
            stride: vec![1, 2],
        };
        assert_eq!(
            materialise("t", &view, &storage).unwrap(),
            TensorData::F32(vec![0., 2., 4., 1., 3., 5.])
        );
    }

    #[test]
    fn a_view_past_its_storage_is_an_error() {
        let view = TensorRef {
            storage_key: "0".into(),
            dtype: StorageDtype::F32,
            storage_offset: 1,
            shape: vec![4],
            stride: vec![1],
        };
        let err = materialise("w", &view, &[0u8; 16]).unwrap_err();
        assert!(err.to_string().contains("`w`"), "{err}");
    }

    #[test]
    fn views_that_claim_more_than_any_checkpoint_holds_are_refused_before_allocating() {
        let view = |shape: Vec<usize>, stride: Vec<usize>, storage_offset: usize| TensorRef {
            storage_key: "0".into(),
            dtype: StorageDtype::F32,
            storage_offset,
            shape,
            stride,
        };
        let storage = [0u8; 16];
        for (bad, what) in [
            (view(vec![1 << 40], vec![0], 0), "elements"),
            (view(vec![usize::MAX, 2], vec![1, 1], 0), "elements"),
            (view(vec![2], vec![usize::MAX], 0), "overflows"),
            (view(vec![2], vec![1], usize::MAX), "overflows"),
            (view(vec![2, 2], vec![1], 0), "does not match"),
        ] {
            let error = materialise("w", &bad, &storage).unwrap_err().to_string();
            assert!(error.contains(what), "{error}");
        }
    }

    #[test]
    fn records_that_claim_more_in_all_than_any_variant_needs_are_refused_before_inflating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("three.pt");
        let tensor = |n: usize| StateTensor {
            shape: vec![n],
            data: TensorData::F32(vec![0.5; n]),
        };
        let state = StateDict {
            entries: (0..3).map(|i| (format!("w{i}"), tensor(1000))).collect(),
            iteration: None,
        };
        write_state_dict(&path, "archive", &state).unwrap();
        let read = |bound| read_archive_within(File::open(&path).unwrap(), bound);
        assert_eq!(read(12_000).unwrap().entries.len(), 3);
        let error = read(11_999).unwrap_err().to_string();
        assert!(
            error.contains("claim 12000 bytes in all, more than the 11999"),
            "{error}"
        );
    }
}
