//! A binary image packed 64 pixels to a word, and what the clean-up does with it: square
//! morphology as shifts and bitwise AND/OR of whole words, and 8-connected components over runs of
//! set pixels. A 640×480 mask is 4,800 words, so a pass over it costs microseconds.

use super::BoundingBox;

const WORD: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BitMask {
    width: usize,
    height: usize,
    words_per_row: usize,
    /// Row-major; bit `x % 64` of word `x / 64` is pixel `x`. Bits past the width stay clear.
    words: Vec<u64>,
}

/// A horizontal run of set pixels `x0..x1` in row `y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub y: u32,
    pub x0: u32,
    pub x1: u32,
}

impl BitMask {
    pub fn new(width: usize, height: usize) -> Self {
        let words_per_row = width.div_ceil(WORD);
        Self {
            width,
            height,
            words_per_row,
            words: vec![0; words_per_row * height],
        }
    }

    /// Pixels of `bytes` (row-major, `width` per row) whose top bit is set. The labels 0 / 127 /
    /// 255 give exactly the foreground, eight pixels per multiply.
    pub fn from_top_bits(bytes: &[u8], width: usize, height: usize) -> Self {
        assert_eq!(bytes.len(), width * height, "mask size");
        let mut mask = Self::new(width, height);
        for (row, line) in mask
            .words
            .chunks_mut(mask.words_per_row)
            .zip(bytes.chunks(width))
        {
            let whole_words = line.chunks_exact(WORD);
            let rest = whole_words.remainder();
            for (word, pixels) in row.iter_mut().zip(whole_words) {
                *word = pack_word(pixels);
            }
            // The row's last, partial word: its missing pixels read as clear.
            if !rest.is_empty() {
                let mut padded = [0u8; WORD];
                padded[..rest.len()].copy_from_slice(rest);
                *row.last_mut().unwrap() = pack_word(&padded);
            }
        }
        mask
    }

    pub fn get(&self, x: usize, y: usize) -> bool {
        self.words[y * self.words_per_row + x / WORD] >> (x % WORD) & 1 != 0
    }

    /// Square-window maximum of radius `r`.
    pub fn dilate(&self, r: usize) -> Self {
        self.rows(r, false).columns(r, false)
    }

    /// Square-window minimum of radius `r`; outside the image counts as clear.
    pub fn erode(&self, r: usize) -> Self {
        self.rows(r, true).columns(r, true)
    }

    /// Closes gaps of up to `2r` pixels within each column.
    pub fn close_columns(&self, r: usize) -> Self {
        self.columns(r, false).columns(r, true)
    }

    fn rows(&self, r: usize, erode: bool) -> Self {
        let mut out = self.clone();
        // A radius-r window is r steps of radius one: each step looks one pixel either side.
        for _ in 0..r {
            let source = out.clone();
            for (row, line) in out
                .words
                .chunks_mut(self.words_per_row)
                .zip(source.words.chunks(self.words_per_row))
            {
                for k in 0..line.len() {
                    let from_left = line[k] << 1 | k.checked_sub(1).map_or(0, |j| line[j] >> 63);
                    let from_right = line[k] >> 1 | line.get(k + 1).map_or(0, |&n| n << 63);
                    row[k] = if erode {
                        line[k] & from_left & from_right
                    } else {
                        line[k] | from_left | from_right
                    };
                }
            }
            out.clear_padding();
        }
        out
    }

    fn columns(&self, r: usize, erode: bool) -> Self {
        let n = self.words_per_row;
        let mut out = self.clone();
        for y in 0..self.height {
            let row = &mut out.words[y * n..(y + 1) * n];
            for d in 1..=r {
                for neighbour in [y.checked_sub(d), (y + d < self.height).then_some(y + d)] {
                    match neighbour {
                        Some(m) => {
                            let other = &self.words[m * n..(m + 1) * n];
                            for (a, &b) in row.iter_mut().zip(other) {
                                *a = if erode { *a & b } else { *a | b };
                            }
                        }
                        None if erode => row.fill(0),
                        None => {}
                    }
                }
            }
        }
        out
    }

    fn clear_padding(&mut self) {
        let used = self.width % WORD;
        if used == 0 {
            return;
        }
        let keep = (1u64 << used) - 1;
        for row in self.words.chunks_mut(self.words_per_row) {
            if let Some(last) = row.last_mut() {
                *last &= keep;
            }
        }
    }

    /// Every run of set pixels, row by row, left to right.
    pub fn runs(&self) -> Vec<Run> {
        let mut runs = Vec::new();
        for (y, row) in self.words.chunks(self.words_per_row).enumerate() {
            let y = y as u32;
            let mut open: Option<u32> = None;
            for (k, &word) in row.iter().enumerate() {
                let base = (k * WORD) as u32;
                let mut at = 0u32;
                while at < WORD as u32 {
                    let rest = word >> at;
                    match open {
                        None if rest == 0 => break,
                        None => {
                            at += rest.trailing_zeros();
                            open = Some(base + at);
                        }
                        Some(x0) => {
                            at += (!rest).trailing_zeros();
                            if at < WORD as u32 {
                                runs.push(Run {
                                    y,
                                    x0,
                                    x1: base + at,
                                });
                                open = None;
                            }
                        }
                    }
                }
            }
            if let Some(x0) = open {
                runs.push(Run {
                    y,
                    x0,
                    x1: self.width as u32,
                });
            }
        }
        runs
    }
}

/// The top bits of 64 pixels as one word.
fn pack_word(pixels: &[u8]) -> u64 {
    pixels
        .chunks_exact(8)
        .enumerate()
        .fold(0, |bits, (k, eight)| {
            bits | top_bits(u64::from_le_bytes(eight.try_into().unwrap())) << (8 * k)
        })
}

/// Bit 7 of each of the eight bytes of `lanes`, gathered into the low eight bits.
fn top_bits(lanes: u64) -> u64 {
    ((lanes & 0x8080_8080_8080_8080).wrapping_mul(0x0002_0408_1020_4081)) >> 56
}

/// 8-connected components of a run list (as [`BitMask::runs`] gives it): the component of each run
/// and each component's box and area, in order of first appearance.
pub(crate) fn connected_components(runs: &[Run]) -> (Vec<u32>, Vec<(BoundingBox, u64)>) {
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    fn find(parent: &mut [u32], mut a: u32) -> u32 {
        while parent[a as usize] != a {
            parent[a as usize] = parent[parent[a as usize] as usize];
            a = parent[a as usize];
        }
        a
    }
    // Runs are in row order and, within a row, left to right: each run meets the runs of the row
    // above that overlap it grown by one pixel, found with a pointer that only moves right.
    let mut above = 0..0;
    let mut row_start = 0;
    while row_start < runs.len() {
        let y = runs[row_start].y;
        let row_end = row_start + runs[row_start..].iter().take_while(|r| r.y == y).count();
        if !(row_start > 0 && runs[row_start - 1].y + 1 == y) {
            above = row_start..row_start;
        }
        let mut first_above = above.start;
        for i in row_start..row_end {
            let run = runs[i];
            while first_above < above.end && runs[first_above].x1 < run.x0 {
                first_above += 1;
            }
            for (j, touching) in runs[first_above..above.end].iter().enumerate() {
                if touching.x0 > run.x1 {
                    break;
                }
                let j = first_above + j;
                let (a, b) = (find(&mut parent, i as u32), find(&mut parent, j as u32));
                if a != b {
                    parent[a.max(b) as usize] = a.min(b);
                }
            }
        }
        above = row_start..row_end;
        row_start = row_end;
    }
    let mut index_of_root = vec![u32::MAX; runs.len()];
    let mut component_of = Vec::with_capacity(runs.len());
    let mut components: Vec<(BoundingBox, u64)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let root = find(&mut parent, i as u32) as usize;
        if index_of_root[root] == u32::MAX {
            index_of_root[root] = components.len() as u32;
            components.push((
                BoundingBox {
                    x0: run.x0,
                    y0: run.y,
                    x1: run.x1,
                    y1: run.y + 1,
                },
                0,
            ));
        }
        let c = index_of_root[root];
        component_of.push(c);
        let (bbox, area) = &mut components[c as usize];
        bbox.x0 = bbox.x0.min(run.x0);
        bbox.x1 = bbox.x1.max(run.x1);
        bbox.y1 = bbox.y1.max(run.y + 1);
        *area += u64::from(run.x1 - run.x0);
    }
    (component_of, components)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_pixels(width: usize, height: usize, density: f64, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..width * height)
            .map(|_| match rng.random_range(0.0..1.0) {
                p if p < density => 255,
                p if p < density + 0.2 => 127,
                _ => 0,
            })
            .collect()
    }

    /// Pixel by pixel: the window minimum or maximum, outside the image clear.
    fn window(pixels: &[bool], w: usize, h: usize, r: usize, erode: bool) -> Vec<bool> {
        let at = |x: isize, y: isize| {
            x >= 0
                && y >= 0
                && (x as usize) < w
                && (y as usize) < h
                && pixels[y as usize * w + x as usize]
        };
        let r = r as isize;
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as isize, (i / w) as isize);
                let mut values = (-r..=r).flat_map(|dy| (-r..=r).map(move |dx| (dx, dy)));
                if erode {
                    values.all(|(dx, dy)| at(x + dx, y + dy))
                } else {
                    values.any(|(dx, dy)| at(x + dx, y + dy))
                }
            })
            .collect()
    }

    fn pixels_of(mask: &BitMask) -> Vec<bool> {
        (0..mask.width * mask.height)
            .map(|i| mask.get(i % mask.width, i / mask.width))
            .collect()
    }

    #[test]
    fn packing_keeps_exactly_the_foreground_label() {
        for (w, h) in [(70, 5), (64, 3), (130, 4), (7, 2)] {
            let bytes = random_pixels(w, h, 0.4, w as u64);
            let mask = BitMask::from_top_bits(&bytes, w, h);
            let expected: Vec<bool> = bytes.iter().map(|&v| v == 255).collect();
            assert_eq!(pixels_of(&mask), expected, "{w}x{h}");
        }
    }

    #[test]
    fn morphology_equals_the_window_minimum_and_maximum() {
        for (w, h, seed) in [(70, 40, 1), (128, 30, 2), (200, 17, 3)] {
            for density in [0.3, 0.7] {
                let bytes = random_pixels(w, h, density, seed);
                let mask = BitMask::from_top_bits(&bytes, w, h);
                let pixels = pixels_of(&mask);
                for r in [1, 2, 3, 5] {
                    assert_eq!(pixels_of(&mask.dilate(r)), window(&pixels, w, h, r, false));
                    assert_eq!(pixels_of(&mask.erode(r)), window(&pixels, w, h, r, true));
                }
            }
        }
    }

    #[test]
    fn column_closing_fills_gaps_of_up_to_twice_the_radius() {
        let (w, h) = (3, 12);
        let mut bytes = vec![0u8; w * h];
        for y in [1, 4, 5, 9] {
            bytes[y * w] = 255;
        }
        let mask = BitMask::from_top_bits(&bytes, w, h);
        let closed = mask.close_columns(1);
        assert!(
            closed.get(0, 2) && closed.get(0, 3),
            "a two-row gap closes at radius 1"
        );
        assert!(
            (6..9).all(|y| !closed.get(0, y)),
            "a three-row gap stays open"
        );
        let closed = mask.close_columns(2);
        assert!((6..9).all(|y| closed.get(0, y)), "and closes at radius 2");
        assert!(
            (0..h).all(|y| !closed.get(1, y)),
            "an empty column stays empty"
        );
    }

    /// Flood fill, pixel by pixel: each component's box and area, sorted.
    fn flood_components(pixels: &[bool], w: usize, h: usize) -> Vec<(BoundingBox, u64)> {
        let mut seen = vec![false; w * h];
        let mut found = Vec::new();
        for start in 0..w * h {
            if !pixels[start] || seen[start] {
                continue;
            }
            seen[start] = true;
            let mut stack = vec![start];
            let (mut bbox, mut area) = (
                BoundingBox {
                    x0: u32::MAX,
                    y0: u32::MAX,
                    x1: 0,
                    y1: 0,
                },
                0u64,
            );
            while let Some(i) = stack.pop() {
                let (x, y) = ((i % w) as u32, (i / w) as u32);
                bbox = BoundingBox {
                    x0: bbox.x0.min(x),
                    y0: bbox.y0.min(y),
                    x1: bbox.x1.max(x + 1),
                    y1: bbox.y1.max(y + 1),
                };
                area += 1;
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                        if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                            continue;
                        }
                        let j = ny as usize * w + nx as usize;
                        if pixels[j] && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            found.push((bbox, area));
        }
        found.sort_by_key(|(b, a)| (b.y0, b.x0, *a));
        found
    }

    #[test]
    fn run_components_equal_an_eight_connected_flood_fill() {
        for (w, h, seed) in [(70, 40, 4), (130, 50, 5), (64, 64, 6)] {
            for density in [0.2, 0.45, 0.6] {
                let bytes = random_pixels(w, h, density, seed);
                let mask = BitMask::from_top_bits(&bytes, w, h);
                let runs = mask.runs();
                let covered: u64 = runs.iter().map(|r| u64::from(r.x1 - r.x0)).sum();
                assert_eq!(covered, bytes.iter().filter(|&&v| v == 255).count() as u64);
                let (component_of, mut components) = connected_components(&runs);
                assert_eq!(component_of.len(), runs.len());
                components.sort_by_key(|(b, a)| (b.y0, b.x0, *a));
                assert_eq!(components, flood_components(&pixels_of(&mask), w, h));
            }
        }
    }

    #[test]
    fn diagonals_and_u_shapes_are_one_component() {
        #[rustfmt::skip]
        let bytes: Vec<u8> = [
            1, 0, 0, 0, 0, 1,
            0, 1, 0, 1, 0, 1,
            0, 1, 0, 1, 0, 0,
            0, 1, 1, 1, 0, 1,
        ].iter().map(|&v| v * 255).collect();
        let runs = BitMask::from_top_bits(&bytes, 6, 4).runs();
        let (_, components) = connected_components(&runs);
        let mut areas: Vec<u64> = components.iter().map(|c| c.1).collect();
        areas.sort();
        assert_eq!(areas, vec![1, 2, 8]);
    }
}
