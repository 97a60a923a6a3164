//! The door kiosk's wires to its door and to the access-control panel beside it.
//!
//! - [`line`]: one GPIO line in or out, behind a trait so that tests record or script it.
//! - [`wiegand`]: 26- and 34-bit Wiegand frames and their transmission on two data lines.
//! - [`door_inputs`]: the door-position switch and request-to-exit button of a stand-alone door:
//!   debouncing, masking after a release, forced-door and held-open alarms.
//! - [`osdp`]: the kiosk as an OSDP peripheral device on a panel's RS-485 bus (the device itself
//!   needs the `osdp` feature).
//!
//! Nothing here knows about the network, the gallery or events: the kiosk turns what these report
//! into its own events.

#![forbid(unsafe_code)]

mod error;

pub mod door_inputs;
pub mod indication;
pub mod line;
pub mod osdp;
pub mod wiegand;

pub use error::DoorIoError;
