//! An embedded-graphics draw target over an RGB image: the one canvas the kiosk's status screen
//! and the DET plot both draw on. Pixels outside it are clipped.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::path::Path;

use embedded_graphics::pixelcolor::{Rgb888, RgbColor};
use embedded_graphics::prelude::{DrawTarget, OriginDimensions, Pixel, Size};
use image::{Rgb, RgbImage};

/// An RGB image that embedded-graphics draws on.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbCanvas(RgbImage);

impl RgbCanvas {
    /// A canvas of `width` × `height` filled with `background`.
    pub fn new(width: u32, height: u32, background: Rgb888) -> Self {
        RgbCanvas(RgbImage::from_pixel(width, height, rgb(background)))
    }

    /// `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        self.0.dimensions()
    }

    /// The colour at one pixel.
    pub fn pixel(&self, x: u32, y: u32) -> Rgb888 {
        let Rgb([r, g, b]) = *self.0.get_pixel(x, y);
        Rgb888::new(r, g, b)
    }

    /// The picture drawn so far.
    pub fn image(&self) -> &RgbImage {
        &self.0
    }

    /// The picture, as an image of its own.
    pub fn into_image(self) -> RgbImage {
        self.0
    }

    /// Writes the picture as a PNG file.
    pub fn save_png(&self, path: &Path) -> image::ImageResult<()> {
        self.0.save(path)
    }
}

fn rgb(colour: Rgb888) -> Rgb<u8> {
    Rgb([colour.r(), colour.g(), colour.b()])
}

impl OriginDimensions for RgbCanvas {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for RgbCanvas {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        for Pixel(point, colour) in pixels {
            if let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y)) {
                if x < self.0.width() && y < self.0.height() {
                    self.0.put_pixel(x, y, rgb(colour));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::prelude::{Point, Primitive};
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
    use embedded_graphics::Drawable;

    #[test]
    fn what_is_drawn_inside_is_kept_and_what_falls_outside_is_clipped() {
        let mut canvas = RgbCanvas::new(4, 3, Rgb888::BLACK);
        Rectangle::new(Point::new(2, -1), Size::new(5, 3))
            .into_styled(PrimitiveStyle::with_fill(Rgb888::RED))
            .draw(&mut canvas)
            .unwrap();
        assert_eq!(canvas.pixel(2, 0), Rgb888::RED);
        assert_eq!(canvas.pixel(3, 1), Rgb888::RED);
        assert_eq!(canvas.pixel(1, 1), Rgb888::BLACK);
        assert_eq!(canvas.pixel(2, 2), Rgb888::BLACK);
        assert_eq!(canvas.dimensions(), (4, 3));
        assert_eq!(canvas.image().get_pixel(3, 0), &Rgb([255, 0, 0]));
    }
}
