//! Operands for tract-linalg's int8 kernels: im2col of the quantized input, packed into the
//! kernel's panel layout block by block.

use super::*;

/// How a kernel takes its im2col columns (`[C · 27, T · H · W]` of an input `[C, T, H, W]`: the 27
/// shifted copies, zero outside, the int8 image of the float zero padding).
///
/// The two int8 layouts tract-linalg's kernels use are packed here: panels of `r` columns, k-major
/// (NEON, AVX2) or by groups of four k (VNNI, AMX, dot product). tract's generic packer took 5 to
/// 10 times as long as the int8 product itself on AMX. Any other layout goes through the format's
/// own packer.
pub(super) enum ColumnPacking<'a> {
    Panels {
        format: Box<dyn MMMInputFormat>,
        r: usize,
        k4: bool,
        panel_bytes: usize,
        alignment: usize,
    },
    Other(&'a dyn MMMInputFormat),
}

impl<'a> ColumnPacking<'a> {
    pub(super) fn of(format: &'a dyn MMMInputFormat, k: usize) -> Self {
        let r = format.r();
        let k4 = format.k_alignment() == 4;
        if let Some(panels) = format.downcast_ref::<PackedI8K4>() {
            ColumnPacking::Panels {
                format: Box::new(panels.clone()),
                r,
                k4,
                panel_bytes: panels.single_panel_len(k),
                alignment: panels.alignment(),
            }
        } else if let Some(panels) = format
            .downcast_ref::<PackedFormat>()
            .filter(|f| f.dt == i8::datum_type())
        {
            ColumnPacking::Panels {
                format: Box::new(panels.clone()),
                r,
                k4,
                panel_bytes: panels.single_panel_len(k),
                alignment: panels.alignment(),
            }
        } else {
            ColumnPacking::Other(format)
        }
    }

    /// Columns made and packed at a time, of `n`: a panel reads its few columns from every row of
    /// the im2col matrix, and in a matrix of the whole clip rows lie pages apart and every read
    /// misses; a block small enough for the cache is made, then packed. Short clips (late layers,
    /// after the FTA's pooling over time) are cut finer, four blocks for each of the executor's
    /// threads, so that the threads finish together.
    pub(super) fn block_columns(&self, k: usize, n: usize) -> usize {
        let r = match self {
            ColumnPacking::Panels { r, .. } => *r,
            ColumnPacking::Other(format) => format.r(),
        };
        let fits_the_cache = IM2COL_BLOCK_BYTES / k;
        let balanced = n.div_ceil(4 * executor_threads());
        fits_the_cache.min(balanced).max(r).div_ceil(r) * r
    }

    /// The columns `columns` of the im2col matrix of `input` (int8 values as their bytes),
    /// packed; `block` is room for them unpacked.
    pub(super) fn pack(
        &self,
        input: &[u8],
        volume: [usize; 3],
        columns: Range<usize>,
        k: usize,
        block: &mut [u8],
    ) -> TractResult<Box<dyn MMMInputValue>> {
        let width = columns.len();
        let block = &mut block[..k * width];
        im2col(input, volume, columns, block);
        let ColumnPacking::Panels {
            format,
            r,
            k4,
            panel_bytes,
            alignment,
        } = self
        else {
            let ColumnPacking::Other(format) = self else {
                unreachable!("two kinds of packing")
            };
            let values: Vec<i8> = block.iter().map(|&v| v as i8).collect();
            return format.prepare_one(&Tensor::from_shape(&[k, width], &values)?, 0, 1);
        };
        let bytes = width.div_ceil(*r) * panel_bytes;
        // SAFETY: every byte is written by `pack_panels` before anything reads it.
        let mut blob = unsafe { Blob::new_for_size_and_align(bytes, *alignment) };
        pack_panels(block, width, k, *r, *k4, *panel_bytes, blob.as_bytes_mut());
        Ok(Box::new(EagerPackedInput {
            fact: PackedExoticFact {
                format: format.clone(),
                mn: width.to_dim(),
                k,
            },
            packed: Arc::new(blob),
            panel_bytes: *panel_bytes,
            mn: width,
        }))
    }
}

/// The panels of one block of the im2col matrix (`k` rows of `width` columns) into `out`, `r`
/// columns a panel: k-major, or by groups of four k when `k4`.
pub(super) fn pack_panels(
    block: &[u8],
    width: usize,
    k: usize,
    r: usize,
    k4: bool,
    panel_bytes: usize,
    out: &mut [u8],
) {
    let panels = width.div_ceil(r);
    // What the rows below do not reach is zero: a panel's end padding, and the columns a last,
    // narrower panel lacks.
    let rows_bytes = if k4 { k.div_ceil(4) * 4 * r } else { k * r };
    if rows_bytes < panel_bytes {
        for panel in out.chunks_exact_mut(panel_bytes).take(panels) {
            panel[rows_bytes..].fill(0);
        }
    }
    if !width.is_multiple_of(r) {
        out[(panels - 1) * panel_bytes..][..panel_bytes].fill(0);
    }
    if !k4 {
        for (panel, out) in out.chunks_exact_mut(panel_bytes).take(panels).enumerate() {
            let (start, columns) = (panel * r, r.min(width - panel * r));
            for (index, out) in out.chunks_exact_mut(r).take(k).enumerate() {
                copy_short(
                    &mut out[..columns],
                    &block[index * width + start..][..columns],
                );
            }
        }
        return;
    }
    match r {
        8 => pack_k4::<8>(block, width, k, panel_bytes, out),
        16 => pack_k4::<16>(block, width, k, panel_bytes, out),
        _ => pack_k4_any(block, width, k, r, panel_bytes, out),
    }
}

/// The k4 panels of a block at the panel width `R` of the common kernels (8 columns on AVX-512
/// VNNI and arm64 SDOT, 16 on AMX): each run of `4 R` bytes is four rows' `R` columns interleaved,
/// of sizes the compiler knows, so the shuffle is vectorised and the store is one move.
pub(super) fn pack_k4<const R: usize>(
    block: &[u8],
    width: usize,
    k: usize,
    panel_bytes: usize,
    out: &mut [u8],
) {
    let zeros = vec![0u8; width];
    let whole = width / R;
    for group in 0..k.div_ceil(4) {
        let row = |lane: usize| match 4 * group + lane {
            index if index < k => &block[index * width..][..width],
            _ => &zeros[..],
        };
        let (a, b, c, d) = (row(0), row(1), row(2), row(3));
        for panel in 0..whole {
            let first = panel * R;
            let (a, b, c, d) = (
                &a[first..][..R],
                &b[first..][..R],
                &c[first..][..R],
                &d[first..][..R],
            );
            let run = &mut out[panel * panel_bytes + group * 4 * R..][..4 * R];
            for sixteen in 0..R / 16 {
                let columns = 16 * sixteen..16 * sixteen + 16;
                interleave::<16>(
                    [
                        &a[columns.clone()],
                        &b[columns.clone()],
                        &c[columns.clone()],
                        &d[columns],
                    ],
                    &mut run[64 * sixteen..][..64],
                );
            }
            if R % 16 == 8 {
                let columns = R - 8..R;
                interleave::<8>(
                    [
                        &a[columns.clone()],
                        &b[columns.clone()],
                        &c[columns.clone()],
                        &d[columns],
                    ],
                    &mut run[4 * (R - 8)..][..32],
                );
            }
        }
        for column in whole * R..width {
            let at = whole * panel_bytes + group * 4 * R + 4 * (column - whole * R);
            out[at..at + 4].copy_from_slice(&[a[column], b[column], c[column], d[column]]);
        }
    }
}

/// Four rows of `COLUMNS` bytes (8 or 16) into groups of four, `out[4 i + lane] = rows[lane][i]`,
/// with SSE2's byte and word unpacking: the compiler leaves the plain loop at a byte a move on
/// baseline x86-64, where it was most of the packing.
#[cfg(target_arch = "x86_64")]
fn interleave<const COLUMNS: usize>(rows: [&[u8]; 4], out: &mut [u8]) {
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
    unsafe { interleave_sse2::<COLUMNS>(rows, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn interleave_sse2<const COLUMNS: usize>(rows: [&[u8]; 4], out: &mut [u8]) {
    use std::arch::x86_64::{
        _mm_cvtsi128_si64, _mm_set_epi64x, _mm_unpackhi_epi16, _mm_unpackhi_epi64,
        _mm_unpackhi_epi8, _mm_unpacklo_epi16, _mm_unpacklo_epi8,
    };
    let eight = |row: &[u8], at: usize| match at < COLUMNS {
        true => i64::from_le_bytes(row[at..at + 8].try_into().expect("eight bytes")),
        false => 0,
    };
    let [a, b, c, d] = rows.map(|row| _mm_set_epi64x(eight(row, 8), eight(row, 0)));
    let (ab, cd) = (_mm_unpacklo_epi8(a, b), _mm_unpacklo_epi8(c, d));
    let (ab_high, cd_high) = (_mm_unpackhi_epi8(a, b), _mm_unpackhi_epi8(c, d));
    let quads = [
        _mm_unpacklo_epi16(ab, cd),
        _mm_unpackhi_epi16(ab, cd),
        _mm_unpacklo_epi16(ab_high, cd_high),
        _mm_unpackhi_epi16(ab_high, cd_high),
    ];
    for (quarter, quads) in quads.into_iter().take(COLUMNS / 4).enumerate() {
        let high = _mm_unpackhi_epi64(quads, quads);
        out[16 * quarter..][..8].copy_from_slice(&_mm_cvtsi128_si64(quads).to_le_bytes());
        out[16 * quarter + 8..][..8].copy_from_slice(&_mm_cvtsi128_si64(high).to_le_bytes());
    }
}

/// Four rows of `COLUMNS` bytes into groups of four, `out[4 i + lane] = rows[lane][i]`: a loop the
/// compiler turns into interleaving stores where the target has them (arm64's `st4`).
#[cfg(not(target_arch = "x86_64"))]
fn interleave<const COLUMNS: usize>(rows: [&[u8]; 4], out: &mut [u8]) {
    let out = &mut out[..4 * COLUMNS];
    for column in 0..COLUMNS {
        for (lane, row) in rows.iter().enumerate() {
            out[4 * column + lane] = row[column];
        }
    }
}

/// The k4 panels of a block at any other panel width `r`, element by element; the rows past `k`
/// that complete the last group of four are zero.
pub(super) fn pack_k4_any(
    block: &[u8],
    width: usize,
    k: usize,
    r: usize,
    panel_bytes: usize,
    out: &mut [u8],
) {
    for row in 0..k.div_ceil(4) * 4 {
        let (group, lane) = (row / 4, row % 4);
        let values = (row < k).then(|| &block[row * width..][..width]);
        for column in 0..width {
            out[column / r * panel_bytes + group * 4 * r + 4 * (column % r) + lane] =
                values.map_or(0, |values| values[column]);
        }
    }
}

/// `to.copy_from_slice(from)` for the few bytes of a panel row: at the panel widths of the kernels
/// a copy of known length is one move, where an arbitrary length calls `memcpy`.
pub(super) fn copy_short(to: &mut [u8], from: &[u8]) {
    match from.len() {
        16 => to[..16].copy_from_slice(&from[..16]),
        8 => to[..8].copy_from_slice(&from[..8]),
        4 => to[..4].copy_from_slice(&from[..4]),
        _ => to.copy_from_slice(from),
    }
}

/// The columns `columns` of the im2col matrix `[C · 27, T · H · W]` of `input` `[C, T, H, W]`
/// (int8 values as their bytes) into `out` `[C · 27, columns.len()]`. Row `c · 27 + offset` is
/// channel `c` shifted by that kernel offset, zero outside. In raster order a shift is one offset of
/// the flat index, so a row is one copy followed by zeroing what crossed an edge: a first or last
/// frame, the first or last line of each frame, the first or last column of each line.
pub(super) fn im2col(input: &[u8], [t, h, w]: [usize; 3], columns: Range<usize>, out: &mut [u8]) {
    let (n, hw, width) = (t * h * w, h * w, columns.len());
    let shift = |k: usize| k as isize - 1;
    // Zeroes the positions `from..from + len` of the clip where they fall in `columns`.
    let zero = |out: &mut [u8], from: usize, len: usize| {
        let (start, end) = (from.max(columns.start), (from + len).min(columns.end));
        if start < end {
            out[start - columns.start..end - columns.start].fill(0);
        }
    };
    let edge = |d: isize, len: usize| (d != 0).then(|| if d < 0 { 0 } else { len - 1 });
    for (row, out) in out.chunks_exact_mut(width).enumerate() {
        let (channel, offset) = (row / KERNEL_VOLUME, row % KERNEL_VOLUME);
        let (dt, dh, dw) = (shift(offset / 9), shift(offset / 3 % 3), shift(offset % 3));
        let plane = &input[channel * n..][..n];
        let source = columns.start as isize + dt * hw as isize + dh * w as isize + dw;
        let valid_from = (-source).clamp(0, width as isize) as usize;
        let valid_to = (n as isize - source).clamp(valid_from as isize, width as isize) as usize;
        out[..valid_from].fill(0);
        out[valid_to..].fill(0);
        if valid_from < valid_to {
            let read_from = (source + valid_from as isize) as usize;
            out[valid_from..valid_to].copy_from_slice(&plane[read_from..][..valid_to - valid_from]);
        }
        if let Some(frame) = edge(dt, t) {
            zero(out, frame * hw, hw);
        }
        let frames = columns.start / hw..(columns.end - 1) / hw + 1;
        if let Some(line) = edge(dh, h) {
            for frame in frames.clone() {
                zero(out, frame * hw + line * w, w);
            }
        }
        if let Some(column) = edge(dw, w) {
            // One byte a line, every `w`-th from the first position of that column in `columns`.
            let first = columns.start.saturating_sub(column).div_ceil(w) * w + column;
            if first < columns.end {
                for byte in out[first - columns.start..].iter_mut().step_by(w) {
                    *byte = 0;
                }
            }
        }
    }
}
