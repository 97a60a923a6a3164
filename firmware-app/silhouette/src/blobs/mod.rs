//! From the background model's labels to person blobs: morphology, connected components, merging of
//! fragments, person-sized blobs only, and hole filling.

use image::GrayImage;

mod bits;

use crate::background::SHADOW;
use bits::{connected_components, BitMask};

// The clean-up reads the foreground as the labels' top bit (guaranteed in `background`).

/// How labels become person blobs.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobConfig {
    /// Radius of the square opening that removes speckle.
    pub open_radius_px: u32,
    /// Radius of the square closing that joins a person's parts, per 100 rows of image height.
    pub close_radius_per_100_rows: f32,
    /// Smallest person, as a fraction of the image height.
    pub min_height_fraction: f32,
    /// Smallest person area, as a fraction of the image area.
    pub min_area_fraction: f32,
    /// Largest width over height of a person blob.
    pub max_width_over_height: f32,
    /// Fragments whose box overlaps a person's box grown by this fraction of its height join it.
    pub merge_margin_fraction: f32,
    /// Smallest fragment that joins a person, as a fraction of the person's area (smaller ones are
    /// noise near the body).
    pub min_fragment_fraction: f32,
    /// Shadow-labelled pixels touching a person are theirs unless they lie in the bottom part of the
    /// person's box, this fraction of its height, where cast shadows fall on the floor.
    pub foot_zone_fraction: f32,
}

impl BlobConfig {
    /// Radius of the closing in a frame `image_height` rows high. The closing's erosion counts
    /// outside the image as background, so it also shaves this many pixels off a shape the frame's
    /// edge cuts: the quality gates allow for it ([`crate::quality::check_frame`]).
    pub fn close_radius_px(&self, image_height: u32) -> usize {
        (self.close_radius_per_100_rows * image_height as f32 / 100.0)
            .round()
            .max(1.0) as usize
    }
}

impl Default for BlobConfig {
    fn default() -> Self {
        Self {
            open_radius_px: 1,
            close_radius_per_100_rows: 0.6,
            min_height_fraction: 0.2,
            min_area_fraction: 0.003,
            max_width_over_height: 1.3,
            merge_margin_fraction: 0.05,
            min_fragment_fraction: 0.03,
            foot_zone_fraction: 0.3,
        }
    }
}

/// Axis-aligned box, inclusive minimum and exclusive maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundingBox {
    /// Left column.
    pub x0: u32,
    /// Top row.
    pub y0: u32,
    /// One past the right column.
    pub x1: u32,
    /// One past the bottom row.
    pub y1: u32,
}

impl BoundingBox {
    /// Columns covered.
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    /// Rows covered.
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    /// Pixels covered.
    pub fn area(&self) -> u64 {
        self.width() as u64 * self.height() as u64
    }

    /// The smallest box holding both.
    pub fn union(&self, other: &BoundingBox) -> BoundingBox {
        BoundingBox {
            x0: self.x0.min(other.x0),
            y0: self.y0.min(other.y0),
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
        }
    }

    fn grown(&self, margin: u32) -> BoundingBox {
        BoundingBox {
            x0: self.x0.saturating_sub(margin),
            y0: self.y0.saturating_sub(margin),
            x1: self.x1 + margin,
            y1: self.y1 + margin,
        }
    }

    fn overlaps(&self, other: &BoundingBox) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }
}

/// One person candidate: its pixels (a crop at `bbox`, 255 = person) and summary geometry.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Where the blob is in the frame.
    pub bbox: BoundingBox,
    /// Its pixels.
    pub area: u64,
    /// Its centre of mass, `(x, y)` in frame pixels.
    pub centroid: (f32, f32),
    /// The blob's pixels within `bbox`, holes filled.
    pub mask: GrayImage,
}

impl Blob {
    /// Writes the blob's pixels into a frame-sized mask.
    pub fn paint(&self, canvas: &mut GrayImage) {
        for (x, y, p) in self.mask.enumerate_pixels() {
            if p.0[0] != 0 {
                canvas.put_pixel(self.bbox.x0 + x, self.bbox.y0 + y, *p);
            }
        }
    }
}

/// Person blobs of one labelled frame, largest first.
pub fn extract_blobs(labels: &GrayImage, config: &BlobConfig) -> Vec<Blob> {
    let (w, h) = labels.dimensions();
    let foreground = BitMask::from_top_bits(labels.as_raw(), w as usize, h as usize);
    let open_radius = config.open_radius_px as usize;
    let close_radius = config.close_radius_px(h);
    let cleaned = foreground
        .erode(open_radius)
        .dilate(open_radius)
        .dilate(close_radius)
        .erode(close_radius);
    let runs = cleaned.runs();
    let (component_of_run, components) = connected_components(&runs);
    let min_height = (config.min_height_fraction * h as f32) as u32;
    let min_area = (config.min_area_fraction * (w * h) as f32) as u64;
    let is_person = |b: &BoundingBox, area: u64| {
        b.height() >= min_height
            && area >= min_area
            && (b.width() as f32) <= config.max_width_over_height * b.height() as f32
    };

    // Each component joins the largest person-sized component whose grown box it touches.
    let mut order: Vec<usize> = (0..components.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(components[c].1));
    let mut owner: Vec<Option<usize>> = vec![None; components.len()];
    let mut people: Vec<(BoundingBox, u64)> = Vec::new();
    for &c in &order {
        let (bbox, area) = components[c];
        let joined = people.iter().position(|(person, person_area)| {
            let margin = (config.merge_margin_fraction * person.height() as f32) as u32;
            area as f32 >= config.min_fragment_fraction * *person_area as f32
                && person.grown(margin).overlaps(&bbox)
        });
        match joined {
            Some(p) => {
                people[p].0 = people[p].0.union(&bbox);
                people[p].1 += area;
                owner[c] = Some(p);
            }
            None if is_person(&bbox, area) => {
                owner[c] = Some(people.len());
                people.push((bbox, area));
            }
            None => {}
        }
    }

    people
        .into_iter()
        .enumerate()
        .filter(|(_, (bbox, area))| is_person(bbox, *area))
        .map(|(p, (core, _))| {
            // Room around the foreground core for reclaimed shadow labels (a head, mid-grey legs).
            let margin = (config.merge_margin_fraction * 2.0 * core.height() as f32) as u32;
            let grown = BoundingBox {
                x0: core.x0.saturating_sub(margin),
                y0: core.y0.saturating_sub(margin),
                x1: (core.x1 + margin).min(w),
                y1: (core.y1 + core.height() / 2).min(h),
            };
            let mut mask = GrayImage::new(grown.width(), grown.height());
            let stride = grown.width() as usize;
            for (run, &c) in runs.iter().zip(&component_of_run) {
                if owner[c as usize] == Some(p) {
                    let row = (run.y - grown.y0) as usize * stride;
                    let (x0, x1) = ((run.x0 - grown.x0) as usize, (run.x1 - grown.x0) as usize);
                    mask.as_mut()[row + x0..row + x1].fill(255);
                }
            }
            reclaim_shadow_labels(
                labels,
                &mut mask,
                grown.x0,
                grown.y0,
                config.foot_zone_fraction,
            );
            close_vertical_gaps(&mut mask, close_radius);
            let (mask, bbox) = trim(mask, grown);
            let mut mask = mask;
            fill_holes(&mut mask);
            let (mut sx, mut sy, mut area) = (0u64, 0u64, 0u64);
            for (x, y, v) in mask.enumerate_pixels() {
                if v.0[0] != 0 {
                    sx += x as u64;
                    sy += y as u64;
                    area += 1;
                }
            }
            Blob {
                bbox,
                area,
                centroid: (
                    bbox.x0 as f32 + sx as f32 / area.max(1) as f32,
                    bbox.y0 as f32 + sy as f32 / area.max(1) as f32,
                ),
                mask,
            }
        })
        .collect()
}

/// Closes gaps of up to `2r` rows in each column of a person mask: where the background matches a
/// band of someone's clothes (a belt against the skirting board), the band cuts the person in two.
fn close_vertical_gaps(mask: &mut GrayImage, r: usize) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    // The closing only adds pixels to the mask, so what it loses at the crop's edges does not matter.
    let closed = BitMask::from_top_bits(mask.as_raw(), w, h).close_columns(r);
    for (y, row) in mask.as_mut().chunks_exact_mut(w).enumerate() {
        for (x, v) in row.iter_mut().enumerate() {
            if closed.get(x, y) {
                *v = 255;
            }
        }
    }
}

/// Crops `mask` (placed at `at`) to its set pixels.
fn trim(mask: GrayImage, at: BoundingBox) -> (GrayImage, BoundingBox) {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, v) in mask.enumerate_pixels() {
        if v.0[0] != 0 {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    if x0 == u32::MAX {
        return (mask, at);
    }
    let cropped = image::imageops::crop_imm(&mask, x0, y0, x1 - x0, y1 - y0).to_image();
    let bbox = BoundingBox {
        x0: at.x0 + x0,
        y0: at.y0 + y0,
        x1: at.x0 + x1,
        y1: at.y0 + y1,
    };
    (cropped, bbox)
}

/// Adds to `mask` (a crop at `(x0, y0)`) the shadow-labelled pixels connected to it, except in its
/// bottom `foot_zone_fraction`: a pale head or mid-grey trousers in front of a lighter background are
/// "darker background" to the model, but only the floor around the feet takes cast shadows.
fn reclaim_shadow_labels(
    labels: &GrayImage,
    mask: &mut GrayImage,
    x0: u32,
    y0: u32,
    foot_zone_fraction: f32,
) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let label_stride = labels.width() as usize;
    let mut grid = FloodGrid::new(w, h, 1, WALL);
    let mut seeds = Vec::new();
    for (y, mask_row) in mask.as_raw().chunks_exact(w).enumerate() {
        let start = (y0 as usize + y) * label_stride + x0 as usize;
        let label_row = &labels.as_raw()[start..start + w];
        let first = grid.index(0, y);
        for (x, (&m, &label)) in mask_row.iter().zip(label_row).enumerate() {
            grid.cells[first + x] = if m != 0 {
                seeds.push(first + x);
                PERSON
            } else if label == SHADOW {
                OPEN
            } else {
                WALL
            };
        }
    }
    grid.flood(seeds);
    let occupied = |y: usize| grid.row(y, w).iter().any(|&c| c == PERSON || c == REACHED);
    let (Some(top), Some(bottom)) = (
        (0..h).find(|&y| occupied(y)),
        (0..h).rfind(|&y| occupied(y)),
    ) else {
        return;
    };
    let foot_zone_top = bottom - (foot_zone_fraction * (bottom - top) as f32) as usize;
    for (y, mask_row) in mask
        .as_mut()
        .chunks_exact_mut(w)
        .enumerate()
        .take(foot_zone_top)
    {
        for (v, &cell) in mask_row.iter_mut().zip(grid.row(y, w)) {
            if cell == REACHED {
                *v = 255;
            }
        }
    }
}

/// Cells of a [`FloodGrid`].
const WALL: u8 = 0;
const OPEN: u8 = 1;
const PERSON: u8 = 2;
const REACHED: u8 = 3;

/// A crop with a frame of cells around it, the outermost ring walls, so that a 4-connected flood
/// fill needs neither bounds checks nor a division per pixel.
struct FloodGrid {
    stride: usize,
    padding: usize,
    cells: Vec<u8>,
}

impl FloodGrid {
    /// A `w`×`h` crop inside a frame `padding` cells wide, every cell `fill` but the outer walls.
    fn new(w: usize, h: usize, padding: usize, fill: u8) -> Self {
        let stride = w + 2 * padding;
        let rows = h + 2 * padding;
        let mut cells = vec![fill; stride * rows];
        cells[..stride].fill(WALL);
        cells[(rows - 1) * stride..].fill(WALL);
        for row in cells.chunks_exact_mut(stride) {
            row[0] = WALL;
            row[stride - 1] = WALL;
        }
        Self {
            stride,
            padding,
            cells,
        }
    }

    /// Index of the crop's pixel `(x, y)`.
    fn index(&self, x: usize, y: usize) -> usize {
        (y + self.padding) * self.stride + x + self.padding
    }

    /// The crop's row `y`.
    fn row(&self, y: usize, w: usize) -> &[u8] {
        let first = self.index(0, y);
        &self.cells[first..first + w]
    }

    /// Marks [`REACHED`] every [`OPEN`] cell 4-connected to `seeds` (none of them in the walls).
    fn flood(&mut self, mut stack: Vec<usize>) {
        while let Some(i) = stack.pop() {
            for j in [i - 1, i + 1, i - self.stride, i + self.stride] {
                if self.cells[j] == OPEN {
                    self.cells[j] = REACHED;
                    stack.push(j);
                }
            }
        }
    }
}

/// Sets every background pixel that the border cannot reach through background.
fn fill_holes(mask: &mut GrayImage) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    // Background everywhere but the person, including a ring around the crop that joins all of
    // the outside into one region.
    let mut grid = FloodGrid::new(w, h, 2, OPEN);
    for (y, row) in mask.as_raw().chunks_exact(w).enumerate() {
        let first = grid.index(0, y);
        for (x, &v) in row.iter().enumerate() {
            if v != 0 {
                grid.cells[first + x] = PERSON;
            }
        }
    }
    let corner = grid.index(0, 0) - grid.stride - 1;
    grid.cells[corner] = REACHED;
    grid.flood(vec![corner]);
    for (y, row) in mask.as_mut().chunks_exact_mut(w).enumerate() {
        for (v, &cell) in row.iter_mut().zip(grid.row(y, w)) {
            if cell == OPEN {
                *v = 255;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::background::FOREGROUND;

    fn rect(labels: &mut GrayImage, x0: u32, y0: u32, x1: u32, y1: u32) {
        for y in y0..y1 {
            for x in x0..x1 {
                labels.put_pixel(x, y, image::Luma([FOREGROUND]));
            }
        }
    }

    #[test]
    fn speckle_goes_people_stay_holes_fill() {
        let mut labels = GrayImage::new(200, 150);
        rect(&mut labels, 40, 20, 70, 120);
        // A hole in the torso (clothing like the wall) and a detached head.
        for y in 50..60 {
            for x in 50..60 {
                labels.put_pixel(x, y, image::Luma([0]));
            }
        }
        rect(&mut labels, 48, 10, 62, 18);
        for (x, y) in [(150, 10), (170, 100), (10, 140)] {
            labels.put_pixel(x, y, image::Luma([FOREGROUND]));
        }
        rect(&mut labels, 150, 130, 190, 140);
        let blobs = extract_blobs(&labels, &BlobConfig::default());
        assert_eq!(
            blobs.len(),
            1,
            "{:?}",
            blobs.iter().map(|b| b.bbox).collect::<Vec<_>>()
        );
        let person = &blobs[0];
        assert_eq!(
            person.bbox,
            BoundingBox {
                x0: 40,
                y0: 10,
                x1: 70,
                y1: 120
            }
        );
        assert_eq!(
            person.mask.get_pixel(55 - 40, 55 - 10).0[0],
            255,
            "hole filled"
        );
    }

    #[test]
    fn two_people_apart_are_two_blobs() {
        let mut labels = GrayImage::new(200, 150);
        rect(&mut labels, 20, 20, 50, 130);
        rect(&mut labels, 120, 30, 150, 140);
        let blobs = extract_blobs(&labels, &BlobConfig::default());
        assert_eq!(blobs.len(), 2);
        assert!(blobs.iter().any(|b| (b.centroid.0 - 34.5).abs() < 1.0));
        assert!(blobs.iter().any(|b| (b.centroid.0 - 134.5).abs() < 1.0));
    }

    #[test]
    fn shadow_labels_are_not_foreground() {
        let mut labels = GrayImage::new(100, 100);
        for y in 10..90 {
            for x in 10..40 {
                labels.put_pixel(x, y, image::Luma([crate::background::SHADOW]));
            }
        }
        assert!(extract_blobs(&labels, &BlobConfig::default()).is_empty());
    }
}
