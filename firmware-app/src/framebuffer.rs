//! The status screen on a Linux framebuffer (`/dev/fb0`).
//!
//! The screen is drawn into an [`RgbCanvas`] and copied row by row into the device in its own
//! pixel layout (16-bit RGB565, 24- or 32-bit with any channel order), top-left aligned. The layout
//! comes from the kernel (feature `fb`, two ioctls); [`Framebuffer::with_layout`] writes to any file,
//! which is how the conversion is tested.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::RgbColor;

use rgb_canvas::RgbCanvas;

/// Why the framebuffer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FramebufferError {
    /// The device cannot be opened, asked or written.
    #[error("framebuffer {path}: {source}")]
    Io {
        /// The device.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A pixel depth we do not write.
    #[error("framebuffer {path}: {bits} bits per pixel is not supported (16, 24 or 32)")]
    UnsupportedDepth {
        /// The device.
        path: PathBuf,
        /// Its bits per pixel.
        bits: u32,
    },
    /// Framebuffer support not built in.
    #[error("this build has no framebuffer support: rebuild with `--features fb`")]
    NoFramebufferSupport,
}

/// Where each colour channel sits in a pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    /// Bit offset of the channel in the pixel.
    pub offset: u32,
    /// Bits of the channel.
    pub length: u32,
}

/// The visible area and pixel format of a framebuffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    /// Visible pixels per row.
    pub width: u32,
    /// Visible rows.
    pub height: u32,
    /// 16, 24 or 32.
    pub bits_per_pixel: u32,
    /// Bytes from one row to the next.
    pub line_length: u32,
    /// The red channel.
    pub red: Channel,
    /// The green channel.
    pub green: Channel,
    /// The blue channel.
    pub blue: Channel,
}

impl PixelLayout {
    /// 32-bit XRGB8888, the usual layout of desktop and Jetson framebuffers.
    pub fn xrgb8888(width: u32, height: u32) -> Self {
        PixelLayout {
            width,
            height,
            bits_per_pixel: 32,
            line_length: width * 4,
            red: Channel {
                offset: 16,
                length: 8,
            },
            green: Channel {
                offset: 8,
                length: 8,
            },
            blue: Channel {
                offset: 0,
                length: 8,
            },
        }
    }

    /// 16-bit RGB565, common on small SPI panels.
    pub fn rgb565(width: u32, height: u32) -> Self {
        PixelLayout {
            width,
            height,
            bits_per_pixel: 16,
            line_length: width * 2,
            red: Channel {
                offset: 11,
                length: 5,
            },
            green: Channel {
                offset: 5,
                length: 6,
            },
            blue: Channel {
                offset: 0,
                length: 5,
            },
        }
    }

    fn encode(&self, colour: Rgb888) -> u32 {
        let place = |value: u8, channel: Channel| {
            let bits = channel.length.min(8);
            (u32::from(value) >> (8 - bits)) << channel.offset
        };
        place(colour.r(), self.red) | place(colour.g(), self.green) | place(colour.b(), self.blue)
    }
}

/// A Linux framebuffer device the status screen is copied to.
pub struct Framebuffer {
    file: File,
    path: PathBuf,
    layout: PixelLayout,
}

impl Framebuffer {
    /// Opens a framebuffer device and asks the kernel for its layout.
    #[cfg(feature = "fb")]
    pub fn open(path: &Path) -> Result<Self, FramebufferError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| FramebufferError::Io {
                path: path.to_owned(),
                source,
            })?;
        let layout = kernel::layout(&file).map_err(|source| FramebufferError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::with_layout(file, path, layout)
    }

    /// Without the `fb` feature: an error saying so.
    #[cfg(not(feature = "fb"))]
    pub fn open(_path: &Path) -> Result<Self, FramebufferError> {
        Err(FramebufferError::NoFramebufferSupport)
    }

    /// A framebuffer on an open file with a known layout (tests use a plain file).
    pub fn with_layout(
        file: File,
        path: &Path,
        layout: PixelLayout,
    ) -> Result<Self, FramebufferError> {
        if ![16, 24, 32].contains(&layout.bits_per_pixel) {
            return Err(FramebufferError::UnsupportedDepth {
                path: path.to_owned(),
                bits: layout.bits_per_pixel,
            });
        }
        Ok(Framebuffer {
            file,
            path: path.to_owned(),
            layout,
        })
    }

    /// Its layout.
    pub fn layout(&self) -> PixelLayout {
        self.layout
    }

    /// Copies `screen` to the top-left corner; what does not fit is cut.
    pub fn show(&mut self, screen: &RgbCanvas) -> Result<(), FramebufferError> {
        let bytes_per_pixel = (self.layout.bits_per_pixel / 8) as usize;
        let (screen_width, screen_height) = screen.dimensions();
        let width = screen_width.min(self.layout.width);
        let mut row = vec![0u8; width as usize * bytes_per_pixel];
        for y in 0..screen_height.min(self.layout.height) {
            for x in 0..width {
                let value = self.layout.encode(screen.pixel(x, y)).to_le_bytes();
                let at = x as usize * bytes_per_pixel;
                row[at..at + bytes_per_pixel].copy_from_slice(&value[..bytes_per_pixel]);
            }
            let offset = u64::from(y) * u64::from(self.layout.line_length);
            self.file
                .write_all_at(&row, offset)
                .map_err(|source| FramebufferError::Io {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

#[cfg(feature = "fb")]
mod kernel {
    use std::fs::File;
    use std::os::fd::AsRawFd;

    use super::{Channel, PixelLayout};

    const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
    const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;

    #[repr(C)]
    #[derive(Default)]
    struct Bitfield {
        offset: u32,
        length: u32,
        msb_right: u32,
    }

    /// `struct fb_var_screeninfo` of <linux/fb.h>.
    #[repr(C)]
    #[derive(Default)]
    struct VarScreenInfo {
        xres: u32,
        yres: u32,
        xres_virtual: u32,
        yres_virtual: u32,
        xoffset: u32,
        yoffset: u32,
        bits_per_pixel: u32,
        grayscale: u32,
        red: Bitfield,
        green: Bitfield,
        blue: Bitfield,
        transp: Bitfield,
        rest: [u32; 20],
    }

    /// `struct fb_fix_screeninfo` of <linux/fb.h>.
    #[repr(C)]
    #[derive(Default)]
    struct FixScreenInfo {
        id: [u8; 16],
        smem_start: libc::c_ulong,
        smem_len: u32,
        kind: u32,
        type_aux: u32,
        visual: u32,
        xpanstep: u16,
        ypanstep: u16,
        ywrapstep: u16,
        line_length: u32,
        mmio_start: libc::c_ulong,
        mmio_len: u32,
        accel: u32,
        capabilities: u16,
        reserved: [u16; 2],
    }

    /// The device's visible size and pixel format, from `FBIOGET_VSCREENINFO` and
    /// `FBIOGET_FSCREENINFO`.
    pub fn layout(file: &File) -> std::io::Result<PixelLayout> {
        let mut var = VarScreenInfo::default();
        let mut fix = FixScreenInfo::default();
        // SAFETY: both requests fill exactly these kernel structures, which outlive the calls.
        unsafe {
            if libc::ioctl(file.as_raw_fd(), FBIOGET_VSCREENINFO as _, &mut var) != 0
                || libc::ioctl(file.as_raw_fd(), FBIOGET_FSCREENINFO as _, &mut fix) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        let channel = |b: &Bitfield| Channel {
            offset: b.offset,
            length: b.length,
        };
        Ok(PixelLayout {
            width: var.xres,
            height: var.yres,
            bits_per_pixel: var.bits_per_pixel,
            line_length: fix.line_length,
            red: channel(&var.red),
            green: channel(&var.green),
            blue: channel(&var.blue),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::mem::{offset_of, size_of};

        /// The kernel writes its own structures' sizes through the pointers `layout` passes: these
        /// are `fb_var_screeninfo` and `fb_fix_screeninfo` as <linux/fb.h> lays them out.
        #[test]
        fn the_structures_are_the_kernels_size_and_layout() {
            assert_eq!(size_of::<VarScreenInfo>(), 160);
            assert_eq!(offset_of!(VarScreenInfo, red), 32);
            let long = size_of::<libc::c_ulong>();
            assert_eq!(size_of::<FixScreenInfo>(), if long == 8 { 80 } else { 68 });
            assert_eq!(
                offset_of!(FixScreenInfo, line_length),
                if long == 8 { 48 } else { 44 }
            );
        }

        #[test]
        fn a_file_that_is_not_a_framebuffer_is_an_error() {
            let file = tempfile::tempfile().unwrap();
            let error = layout(&file).unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::ENOTTY), "{error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::prelude::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    fn screen() -> RgbCanvas {
        let mut screen = RgbCanvas::new(4, 2, Rgb888::BLACK);
        Rectangle::new(Point::new(0, 0), Size::new(1, 1))
            .into_styled(PrimitiveStyle::with_fill(Rgb888::new(255, 0, 0)))
            .draw(&mut screen)
            .unwrap();
        Rectangle::new(Point::new(3, 1), Size::new(1, 1))
            .into_styled(PrimitiveStyle::with_fill(Rgb888::new(0, 128, 255)))
            .draw(&mut screen)
            .unwrap();
        screen
    }

    fn device(layout: PixelLayout) -> (tempfile::TempDir, PathBuf, Framebuffer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb0");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(u64::from(layout.line_length * layout.height))
            .unwrap();
        let fb = Framebuffer::with_layout(file, &path, layout).unwrap();
        (dir, path, fb)
    }

    #[test]
    fn xrgb8888_rows_land_at_their_line_length() {
        let mut layout = PixelLayout::xrgb8888(6, 3);
        layout.line_length = 32;
        let (_dir, path, mut fb) = device(layout);
        fb.show(&screen()).unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[0..4], &[0, 0, 255, 0], "red, little-endian XRGB");
        assert_eq!(&bytes[32 + 12..32 + 16], &[255, 128, 0, 0]);
        assert!(
            bytes[16..32].iter().all(|&b| b == 0),
            "padding and columns beyond the screen untouched"
        );
        assert!(
            bytes[64..].iter().all(|&b| b == 0),
            "the third row is beyond the screen"
        );
    }

    #[test]
    fn rgb565_packs_the_top_bits() {
        let (_dir, path, mut fb) = device(PixelLayout::rgb565(4, 2));
        fb.show(&screen()).unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), 0xF800);
        let last = 8 + 6;
        assert_eq!(
            u16::from_le_bytes([bytes[last], bytes[last + 1]]),
            (32 << 5) | 31,
            "green 128 keeps its top 6 bits, blue 255 its top 5"
        );
    }

    #[test]
    fn a_smaller_device_gets_the_top_left_and_odd_depths_are_refused() {
        let (_dir, path, mut fb) = device(PixelLayout::xrgb8888(2, 1));
        fb.show(&screen()).unwrap();
        assert_eq!(std::fs::read(path).unwrap().len(), 8);
        let mut layout = PixelLayout::xrgb8888(2, 1);
        layout.bits_per_pixel = 8;
        let file = tempfile::tempfile().unwrap();
        assert!(matches!(
            Framebuffer::with_layout(file, Path::new("fb"), layout),
            Err(FramebufferError::UnsupportedDepth { bits: 8, .. })
        ));
    }
}
