//! The kiosk as an OSDP peripheral device (PD) on the panel's RS-485 bus (IEC 60839-11-5), through
//! libosdp.
//!
//! - A grant goes to the panel as a card read: the person's credential in the panel's Wiegand format
//!   ([`WiegandFrame`]), in the next reply to the panel's poll. A denial sends nothing.
//! - The link runs in the Secure Channel only (AES-128, the secure channel base key from a key file):
//!   the install-mode default key is never accepted, so a panel that does not know the key gets no
//!   reads.
//! - The panel's LED and buzzer commands become [`Indication`]s the kiosk shows on its screen.
//! - The kiosk's tamper input goes to the panel as local status.
//! - A panel that stops polling is reported once ([`LinkNotice::Offline`]), and again when it is
//!   back; reads are not held for it: a read older than the kiosk's maximum read age when the link
//!   would carry it is dropped, so that nobody is let in late.
//!
//! libosdp is driven from one thread of ours, refreshed every [`REFRESH`].

use std::time::Duration;

use serde::Deserialize;

use crate::indication::Indication;
use crate::DoorIoError;

#[cfg(feature = "osdp")]
mod peripheral;

#[cfg(feature = "osdp")]
pub use peripheral::{OsdpPeripheral, SerialChannel};

/// How often libosdp is given the CPU: well inside the panel's 200 ms reply time.
pub const REFRESH: Duration = Duration::from_millis(5);

/// Serial speeds OSDP devices use.
pub const BAUD_RATES: [u32; 6] = [9_600, 19_200, 38_400, 57_600, 115_200, 230_400];

/// `[panel.osdp]` in kiosk.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsdpConfig {
    /// The serial device of the RS-485 adapter, e.g. `/dev/ttyUSB0`.
    pub device: String,
    /// Its speed, as set on the panel.
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    /// The kiosk's address on the bus, 0–126, as set on the panel.
    pub address: u8,
    /// The secure channel base key (SCBK): 32 hex digits, readable by the kiosk's user only.
    pub key_file: std::path::PathBuf,
}

fn default_baud_rate() -> u32 {
    9_600
}

impl OsdpConfig {
    /// The address and speed as OSDP allows them.
    pub fn check(&self) -> Result<(), DoorIoError> {
        DoorIoError::check_range("OSDP address", self.address.into(), (0, 126), "")?;
        if !BAUD_RATES.contains(&self.baud_rate) {
            return Err(DoorIoError::Osdp {
                device: self.device.clone(),
                detail: format!("baud rate {} is not one of {BAUD_RATES:?}", self.baud_rate),
            });
        }
        Ok(())
    }
}

/// The link to the panel as the kiosk last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkState {
    /// The panel polls us.
    pub online: bool,
    /// In the Secure Channel.
    pub secure: bool,
    /// The panel's last LED and buzzer commands.
    pub indication: Indication,
    /// Card reads queued for the panel's next polls.
    pub reads_queued: u64,
    /// Card reads dropped because the link could not carry them in time.
    pub reads_dropped: u64,
}

/// A change on the link the kiosk reports as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkNotice {
    /// The panel polls us in the Secure Channel.
    Online,
    /// The panel stopped polling (wiring cut, panel down, wrong key).
    Offline,
    /// The panel changed the LED or buzzer.
    Indication(Indication),
    /// A read was not sent: the link could not carry it in time.
    ReadDropped {
        /// How old the grant was.
        age: Duration,
    },
}
