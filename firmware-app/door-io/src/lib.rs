//! The door kiosk's wires to its door and to the access-control panel beside it.
//!
//! - [`line`]: one GPIO line in or out, behind a trait so that tests record or script it.
//! - [`wiegand`]: 26- and 34-bit Wiegand frames and their transmission on two data lines.
//! - [`door_inputs`]: the door-position switch and request-to-exit button of a stand-alone door:
//!   debouncing, masking after a release, forced-door and held-open alarms.
//! - `osdp` (feature `osdp`): the kiosk as an OSDP peripheral device on a panel's RS-485 bus.
//!
//! Nothing here knows about the network, the gallery or events: the kiosk turns what these report
//! into its own events.

mod error;

pub mod door_inputs;
pub mod line;
#[cfg(feature = "osdp")]
pub mod osdp;
pub mod wiegand;

pub use error::DoorIoError;
