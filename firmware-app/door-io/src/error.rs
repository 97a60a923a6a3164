use std::path::PathBuf;

use crate::wiegand::WiegandFormat;

/// Why a line, a frame or the panel link cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DoorIoError {
    /// The kernel refused a GPIO line.
    #[error("GPIO line {line} of {chip}: {detail}")]
    Line {
        /// The GPIO chip.
        chip: String,
        /// The line offset.
        line: u32,
        /// What the kernel said.
        detail: String,
    },
    /// GPIO not built in.
    #[error("this build has no GPIO support: rebuild with `--features gpio`")]
    NoGpioSupport,
    /// OSDP not built in.
    #[error("this build has no OSDP support: rebuild with `--features osdp`")]
    NoOsdpSupport,
    /// A credential with more bits than the format carries.
    #[error("{field} {value} does not fit {format}: at most {max}")]
    CredentialTooLarge {
        /// The Wiegand format.
        format: WiegandFormat,
        /// `facility code` or `credential number`.
        field: &'static str,
        /// The value asked for.
        value: u32,
        /// The largest the format carries.
        max: u32,
    },
    /// Bits that are not a frame of a supported format.
    #[error("a Wiegand frame of {bits} bits: {detail}")]
    BadFrame {
        /// How many bits arrived.
        bits: usize,
        /// What is wrong with them.
        detail: String,
    },
    /// A configured time outside its range.
    #[error("{name} of {value} {unit} is outside {min}..={max} {unit}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// The configured value.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
        /// `µs` or `ms`.
        unit: &'static str,
    },
    /// The secure channel key file is missing, unsafe or malformed.
    #[error("OSDP secure channel key {path}: {detail}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The OSDP link could not be set up.
    #[error("OSDP on {device}: {detail}")]
    Osdp {
        /// The serial device (or the test channel's name).
        device: String,
        /// What went wrong.
        detail: String,
    },
}

impl DoorIoError {
    /// `value` when it lies in `min..=max`, else the error naming `name`.
    pub(crate) fn check_range(
        name: &'static str,
        value: u64,
        (min, max): (u64, u64),
        unit: &'static str,
    ) -> Result<u64, DoorIoError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(DoorIoError::OutOfRange {
                name,
                value,
                min,
                max,
                unit,
            })
        }
    }
}
