//! The DET curve as a PNG: FNIR against FPIR on logarithmic axes, with the equal-error point and
//! the chosen operating point marked. Drawn with embedded-graphics (its built-in fonts need no font
//! files on the machine) into an RGB image.

use std::convert::Infallible;
use std::path::Path;

use embedded_graphics::mono_font::ascii::{FONT_6X10, FONT_7X13};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Text};
use rgb_canvas::RgbCanvas;

use crate::open_set::OpenSetPoint;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const LEFT: i32 = 70;
const RIGHT: i32 = 610;
const TOP: i32 = 50;
const BOTTOM: i32 = 410;

const BACKGROUND: Rgb888 = Rgb888::WHITE;
const INK: Rgb888 = Rgb888::new(30, 30, 30);
const GRID: Rgb888 = Rgb888::new(220, 220, 220);
const CURVE: Rgb888 = Rgb888::new(20, 90, 200);
const EQUAL_ERROR: Rgb888 = Rgb888::new(200, 120, 0);
const OPERATING: Rgb888 = Rgb888::new(200, 30, 30);

/// Log-scale axis from `10^min_exp` to 1; rates below the minimum sit on the axis.
struct LogAxis {
    min_exp: i32,
    from: i32,
    to: i32,
}

impl LogAxis {
    fn for_resolution(resolution: f64, from: i32, to: i32) -> Self {
        let min_exp = resolution.log10().floor().clamp(-6.0, -1.0) as i32;
        LogAxis { min_exp, from, to }
    }

    fn position(&self, rate: f64) -> i32 {
        let lowest = 10f64.powi(self.min_exp);
        let t = (rate.max(lowest).log10() - self.min_exp as f64) / (-self.min_exp as f64);
        self.from + ((self.to - self.from) as f64 * t).round() as i32
    }
}

/// A DET curve and what its rates count.
pub struct DetCurve<'a> {
    /// Its points, by increasing threshold.
    pub points: &'a [OpenSetPoint],
    /// Mated trials behind FNIR.
    pub mated: usize,
    /// Non-mated trials behind FPIR.
    pub non_mated: usize,
    /// What a trial is ("searches", "walk-ups").
    pub trials: &'a str,
}

/// Draws `curve`, marks `equal_error` and `operating`, and writes the PNG.
pub fn write_det_png(
    path: &Path,
    curve: &DetCurve,
    equal_error: OpenSetPoint,
    operating: OpenSetPoint,
    target_fpir: f64,
) -> Result<(), image::ImageError> {
    let mut canvas = RgbCanvas::new(WIDTH, HEIGHT, BACKGROUND);
    let _ = draw(&mut canvas, curve, equal_error, operating, target_fpir);
    canvas.save_png(path)
}

fn draw(
    canvas: &mut RgbCanvas,
    curve: &DetCurve,
    equal_error: OpenSetPoint,
    operating: OpenSetPoint,
    target_fpir: f64,
) -> Result<(), Infallible> {
    canvas.clear(BACKGROUND)?;
    let x_axis = LogAxis::for_resolution(
        (1.0 / curve.non_mated.max(1) as f64).min(target_fpir),
        LEFT,
        RIGHT,
    );
    let y_axis = LogAxis::for_resolution(1.0 / curve.mated.max(1) as f64, BOTTOM, TOP);
    let label = MonoTextStyle::new(&FONT_6X10, INK);
    let title = MonoTextStyle::new(&FONT_7X13, INK);
    let thin = |c| PrimitiveStyle::with_stroke(c, 1);

    for (axis, horizontal) in [(&x_axis, true), (&y_axis, false)] {
        for exp in axis.min_exp..=0 {
            let at = axis.position(10f64.powi(exp));
            let text = if exp == 0 {
                "1".to_owned()
            } else {
                format!("1e{exp}")
            };
            if horizontal {
                Line::new(Point::new(at, TOP), Point::new(at, BOTTOM))
                    .into_styled(thin(GRID))
                    .draw(canvas)?;
                Text::with_alignment(&text, Point::new(at, BOTTOM + 14), label, Alignment::Center)
                    .draw(canvas)?;
            } else {
                Line::new(Point::new(LEFT, at), Point::new(RIGHT, at))
                    .into_styled(thin(GRID))
                    .draw(canvas)?;
                Text::with_alignment(&text, Point::new(LEFT - 6, at + 3), label, Alignment::Right)
                    .draw(canvas)?;
            }
        }
    }
    Rectangle::with_corners(Point::new(LEFT, TOP), Point::new(RIGHT, BOTTOM))
        .into_styled(thin(INK))
        .draw(canvas)?;

    let target_x = x_axis.position(target_fpir);
    for y in (TOP..BOTTOM).step_by(8) {
        Line::new(
            Point::new(target_x, y),
            Point::new(target_x, (y + 4).min(BOTTOM)),
        )
        .into_styled(thin(OPERATING))
        .draw(canvas)?;
    }

    let points: Vec<Point> = curve
        .points
        .iter()
        .map(|p| Point::new(x_axis.position(p.fpir), y_axis.position(p.fnir)))
        .collect();
    for pair in points.windows(2) {
        Line::new(pair[0], pair[1])
            .into_styled(PrimitiveStyle::with_stroke(CURVE, 2))
            .draw(canvas)?;
    }

    let mark = |p: OpenSetPoint| Point::new(x_axis.position(p.fpir), y_axis.position(p.fnir));
    Circle::with_center(mark(equal_error), 11)
        .into_styled(PrimitiveStyle::with_stroke(EQUAL_ERROR, 2))
        .draw(canvas)?;
    Circle::with_center(mark(operating), 11)
        .into_styled(PrimitiveStyle::with_fill(OPERATING))
        .draw(canvas)?;

    Text::new(
        &format!(
            "DET: {} mated, {} non-mated {}",
            curve.mated, curve.non_mated, curve.trials
        ),
        Point::new(LEFT, 16),
        title,
    )
    .draw(canvas)?;
    Text::new(
        &format!(
            "EER {:.2}% at distance {:.4}",
            100.0 * equal_error.fpir,
            equal_error.threshold
        ),
        Point::new(LEFT, 30),
        MonoTextStyle::new(&FONT_6X10, EQUAL_ERROR),
    )
    .draw(canvas)?;
    Text::new(
        &format!(
            "FPIR <= {target_fpir}: FNIR {:.2}% at distance {:.4}",
            100.0 * operating.fnir,
            operating.threshold
        ),
        Point::new(LEFT + 260, 30),
        MonoTextStyle::new(&FONT_6X10, OPERATING),
    )
    .draw(canvas)?;
    Text::with_alignment(
        "FPIR (unknown people let in)",
        Point::new((LEFT + RIGHT) / 2, BOTTOM + 34),
        label,
        Alignment::Center,
    )
    .draw(canvas)?;
    Text::new(
        "FNIR (enrolled people refused)",
        Point::new(8, TOP - 6),
        label,
    )
    .draw(canvas)?;
    Ok(())
}
