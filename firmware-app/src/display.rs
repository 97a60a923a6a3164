//! The kiosk's status screen, drawn with embedded-graphics on any `DrawTarget`: the Linux framebuffer
//! on a device, [`rgb_canvas::RgbCanvas`] (saved as PNG) in tests and the demo.

use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_6X10, FONT_9X15};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, PrimitiveStyle, Rectangle};
use embedded_graphics::text::Text;
use image::GrayImage;

use access::events::EventKind;
use access::vocabulary::DenialReason;
use door_io::indication::{Indication, LedColor};

/// Width of the status screen, pixels.
pub const SCREEN_WIDTH: u32 = 480;
/// Height of the status screen, pixels.
pub const SCREEN_HEIGHT: u32 = 320;
/// Each silhouette pixel becomes a square this many screen pixels wide.
const SILHOUETTE_SCALE: u32 = 3;
const BANNER_HEIGHT: u32 = 72;

const BACKGROUND: Rgb888 = Rgb888::new(18, 20, 24);
const GRANTED: Rgb888 = Rgb888::new(30, 140, 60);
const DENIED: Rgb888 = Rgb888::new(170, 40, 40);
const WATCHING: Rgb888 = Rgb888::new(60, 66, 80);
const TEXT: Rgb888 = Rgb888::new(235, 235, 235);
const DIM_TEXT: Rgb888 = Rgb888::new(150, 155, 165);
const ALARM: Rgb888 = Rgb888::new(255, 90, 60);
const LED_DIAMETER: u32 = 28;

/// What the door is doing, as the screen says it.
#[derive(Debug, Clone, PartialEq)]
pub enum DoorState {
    /// Nobody decided on.
    Watching,
    /// Released for someone.
    Granted {
        /// Who, by their gallery name.
        name: String,
    },
    /// Not released.
    Denied {
        /// Why.
        reason: DenialReason,
    },
}

/// Conditions the screen shows until they end: the door's alarm, the enclosure, the panel link and
/// the door inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alarms {
    /// The door's alarm (forced, held open, its warning), until it is secured.
    pub door: Option<&'static str>,
    /// The enclosure is open.
    pub tamper: bool,
    /// The panel stopped polling.
    pub panel_offline: bool,
    /// A door input cannot be read.
    pub input_fault: bool,
    /// The site database cannot be reached (the door decides from its replica).
    pub site_offline: bool,
    /// The site's people allowed here whose templates the door cannot open.
    pub quarantined: usize,
    /// The audit log cannot be written: the door grants nobody.
    pub audit_failing: bool,
}

impl Alarms {
    /// Takes in what `kind` starts or ends.
    pub fn apply(&mut self, kind: &EventKind) {
        match kind {
            EventKind::DoorForced => self.door = Some("DOOR FORCED"),
            EventKind::DoorHeldOpenWarning { .. } => self.door = Some("CLOSE THE DOOR"),
            EventKind::DoorHeldOpen { .. } => self.door = Some("DOOR HELD OPEN"),
            EventKind::DoorSecured { .. } => self.door = None,
            EventKind::Tamper { active } => self.tamper = *active,
            EventKind::PanelOffline => self.panel_offline = true,
            EventKind::PanelOnline => self.panel_offline = false,
            EventKind::DoorInputFault { .. } => self.input_fault = true,
            EventKind::DoorInputRestored => self.input_fault = false,
            EventKind::SiteOffline { .. } => self.site_offline = true,
            EventKind::SiteOnline { .. } => self.site_offline = false,
            _ => {}
        }
    }

    /// One line per condition, most urgent first.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.door.into_iter().map(str::to_string).collect();
        if self.tamper {
            lines.push("TAMPER".into());
        }
        if self.panel_offline {
            lines.push("PANEL OFFLINE".into());
        }
        if self.input_fault {
            lines.push("DOOR INPUT FAULT".into());
        }
        if self.site_offline {
            lines.push("SITE OFFLINE".into());
        }
        if self.audit_failing {
            lines.push("AUDIT LOG FAILING".into());
        }
        if self.quarantined > 0 {
            lines.push(format!("{} NOT LOADED", self.quarantined));
        }
        lines
    }
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct StatusView {
    /// The door's name.
    pub door: String,
    /// What the door is doing.
    pub state: DoorState,
    /// Distance of the deciding match and the accept threshold it was held against.
    pub distance: Option<(f32, f32)>,
    /// Distance from the deciding match to the second identity.
    pub margin: Option<f32>,
    /// The newest normalised silhouette (64×64).
    pub silhouette: Option<GrayImage>,
    /// Frames per second through the silhouette stage.
    pub frames_per_second: f32,
    /// People tracked in view.
    pub people_in_view: usize,
    /// Alarms and faults in force.
    pub alarms: Alarms,
    /// The panel's last LED and buzzer command (OSDP).
    pub indication: Option<Indication>,
}

/// Draws the status screen onto any embedded-graphics target.
pub fn draw_status<D: DrawTarget<Color = Rgb888>>(
    view: &StatusView,
    target: &mut D,
) -> Result<(), D::Error> {
    target.clear(BACKGROUND)?;
    let width = target.bounding_box().size.width;
    let (banner_colour, title, subtitle) = match &view.state {
        DoorState::Watching => (WATCHING, "WALK UP".to_string(), String::new()),
        DoorState::Granted { name } => (GRANTED, "GRANTED".to_string(), name.clone()),
        DoorState::Denied { reason } => (
            DENIED,
            "DENIED".to_string(),
            match reason {
                DenialReason::Unknown => "unknown".to_string(),
                other => other.describe().to_string(),
            },
        ),
    };
    Rectangle::new(Point::zero(), Size::new(width, BANNER_HEIGHT))
        .into_styled(PrimitiveStyle::with_fill(banner_colour))
        .draw(target)?;
    let large = MonoTextStyle::new(&FONT_10X20, TEXT);
    let medium = MonoTextStyle::new(&FONT_9X15, TEXT);
    let small = MonoTextStyle::new(&FONT_6X10, DIM_TEXT);
    Text::new(&title, Point::new(16, 30), large).draw(target)?;
    Text::new(&subtitle, Point::new(16, 56), medium).draw(target)?;
    if let Some(indication) = &view.indication {
        let centre = Point::new(width as i32 - 44, BANNER_HEIGHT as i32 / 2 - 6);
        Circle::with_center(centre, LED_DIAMETER)
            .into_styled(PrimitiveStyle::with_fill(led_colour(indication.led)))
            .draw(target)?;
        if indication.buzzer {
            Text::new("BUZZER", centre + Point::new(-18, 30), small).draw(target)?;
        }
    }

    let panel_x = 16 + (64 * SILHOUETTE_SCALE) as i32 + 24;
    let mut y = BANNER_HEIGHT as i32 + 28;
    let mut line = |text: String, target: &mut D| -> Result<(), D::Error> {
        Text::new(&text, Point::new(panel_x, y), medium).draw(target)?;
        y += 24;
        Ok(())
    };
    line(format!("door: {}", view.door), target)?;
    match view.distance {
        Some((distance, threshold)) => {
            line(format!("distance {distance:.3}"), target)?;
            line(format!("threshold {threshold:.3}"), target)?;
        }
        None => line("distance -".to_string(), target)?,
    }
    line(
        match view.margin {
            Some(margin) => format!("margin {margin:.3}"),
            None => "margin -".to_string(),
        },
        target,
    )?;
    line(format!("in view: {}", view.people_in_view), target)?;
    line(format!("{:.1} frames/s", view.frames_per_second), target)?;
    let alarm_style = MonoTextStyle::new(&FONT_9X15, ALARM);
    for alarm in view.alarms.lines() {
        Text::new(&alarm, Point::new(panel_x, y), alarm_style).draw(target)?;
        y += 22;
    }

    let origin = Point::new(16, BANNER_HEIGHT as i32 + 16);
    Rectangle::new(
        origin,
        Size::new(64 * SILHOUETTE_SCALE, 64 * SILHOUETTE_SCALE),
    )
    .into_styled(PrimitiveStyle::with_fill(Rgb888::BLACK))
    .draw(target)?;
    if let Some(silhouette) = &view.silhouette {
        let scale = SILHOUETTE_SCALE as i32;
        let pixels = silhouette.enumerate_pixels().flat_map(|(x, y, value)| {
            let grey = value.0[0];
            let top_left = origin + Point::new(x as i32 * scale, y as i32 * scale);
            (0..scale * scale).map(move |i| {
                Pixel(
                    top_left + Point::new(i % scale, i / scale),
                    Rgb888::new(grey, grey, grey),
                )
            })
        });
        target.draw_iter(pixels)?;
    }
    Text::new(
        "live silhouette",
        origin + Point::new(0, (64 * SILHOUETTE_SCALE) as i32 + 14),
        small,
    )
    .draw(target)?;
    Ok(())
}

/// The screen's colour for the reader LED's.
fn led_colour(led: Option<LedColor>) -> Rgb888 {
    match led {
        Some(LedColor::Red) => Rgb888::new(230, 40, 40),
        Some(LedColor::Green) => Rgb888::new(40, 210, 80),
        Some(LedColor::Amber) => Rgb888::new(245, 170, 30),
        Some(LedColor::Blue) => Rgb888::new(50, 110, 240),
        Some(LedColor::Other(_)) => Rgb888::new(200, 200, 200),
        Some(LedColor::Off) | None => Rgb888::new(40, 40, 44),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rgb_canvas::RgbCanvas;

    fn view(state: DoorState) -> StatusView {
        let mut silhouette = GrayImage::new(64, 64);
        for y in 10..60 {
            for x in 25..40 {
                silhouette.put_pixel(x, y, image::Luma([255]));
            }
        }
        StatusView {
            door: "front".into(),
            state,
            distance: Some((0.61, 1.0)),
            margin: Some(0.3),
            silhouette: Some(silhouette),
            frames_per_second: 25.0,
            people_in_view: 1,
            alarms: Alarms::default(),
            indication: None,
        }
    }

    #[test]
    fn the_banner_colour_follows_the_decision_and_the_silhouette_is_drawn() {
        let mut display = RgbCanvas::new(SCREEN_WIDTH, SCREEN_HEIGHT, Rgb888::BLACK);
        draw_status(
            &view(DoorState::Granted { name: "Ada".into() }),
            &mut display,
        )
        .unwrap();
        assert_eq!(display.pixel(SCREEN_WIDTH - 2, 2), GRANTED);
        let inside = (
            16 + 30 * SILHOUETTE_SCALE,
            BANNER_HEIGHT + 16 + 30 * SILHOUETTE_SCALE,
        );
        assert_eq!(display.pixel(inside.0, inside.1), Rgb888::WHITE);
        let outside = (
            16 + 5 * SILHOUETTE_SCALE,
            BANNER_HEIGHT + 16 + 30 * SILHOUETTE_SCALE,
        );
        assert_eq!(display.pixel(outside.0, outside.1), Rgb888::BLACK);

        draw_status(
            &view(DoorState::Denied {
                reason: DenialReason::Tailgating,
            }),
            &mut display,
        )
        .unwrap();
        assert_eq!(display.pixel(SCREEN_WIDTH - 2, 2), DENIED);
        let text_pixels = (0..SCREEN_WIDTH / 2)
            .flat_map(|x| (0..BANNER_HEIGHT).map(move |y| (x, y)))
            .filter(|&(x, y)| display.pixel(x, y) == TEXT)
            .count();
        assert!(
            text_pixels > 200,
            "banner text drawn ({text_pixels} pixels)"
        );
    }

    fn count(display: &RgbCanvas, colour: Rgb888) -> usize {
        let (width, height) = display.dimensions();
        (0..width)
            .flat_map(|x| (0..height).map(move |y| (x, y)))
            .filter(|&(x, y)| display.pixel(x, y) == colour)
            .count()
    }

    #[test]
    fn alarms_are_shown_until_they_end_and_the_panel_led_in_its_colour() {
        let mut state = view(DoorState::Watching);
        let mut display = RgbCanvas::new(SCREEN_WIDTH, SCREEN_HEIGHT, Rgb888::BLACK);
        draw_status(&state, &mut display).unwrap();
        assert_eq!(count(&display, ALARM), 0);

        state.alarms.apply(&EventKind::DoorForced);
        state.alarms.apply(&EventKind::PanelOffline);
        assert_eq!(state.alarms.lines(), ["DOOR FORCED", "PANEL OFFLINE"]);
        draw_status(&state, &mut display).unwrap();
        assert!(count(&display, ALARM) > 100);

        state.alarms.apply(&EventKind::DoorSecured { open_ms: 900 });
        state.alarms.apply(&EventKind::PanelOnline);
        assert!(state.alarms.lines().is_empty());
        state.alarms.quarantined = 2;
        state.alarms.audit_failing = true;
        assert_eq!(state.alarms.lines(), ["AUDIT LOG FAILING", "2 NOT LOADED"]);
        state.alarms.quarantined = 0;
        state.alarms.audit_failing = false;

        state.indication = Some(Indication {
            led: Some(LedColor::Green),
            buzzer: false,
        });
        draw_status(&state, &mut display).unwrap();
        let green = led_colour(Some(LedColor::Green));
        let led = count(&display, green);
        assert!(led > 400, "the LED drawn ({led} pixels)");
        state.indication = Some(Indication {
            led: Some(LedColor::Red),
            buzzer: true,
        });
        draw_status(&state, &mut display).unwrap();
        assert_eq!(count(&display, green), 0);
        assert_eq!(count(&display, led_colour(Some(LedColor::Red))), led);
    }
}
