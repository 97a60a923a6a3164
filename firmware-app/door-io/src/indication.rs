//! What the access-control panel asks a reader to show: its LED's colour and its buzzer. The kiosk
//! has neither; its screen shows them.

/// A colour the panel asked the reader's LED to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedColor {
    /// Off.
    Off,
    /// Red: usually a denial or a locked door.
    Red,
    /// Green: usually a grant.
    Green,
    /// Amber.
    Amber,
    /// Blue.
    Blue,
    /// Another colour code.
    Other(u8),
}

/// What the panel asked the reader to show, as the screen shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Indication {
    /// The LED's colour, once the panel has set one.
    pub led: Option<LedColor>,
    /// The buzzer sounds.
    pub buzzer: bool,
}
