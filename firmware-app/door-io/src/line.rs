//! One GPIO line, in or out.
//!
//! A line is *active* when its function is on: a relay energised, a data line pulled, a door open, a
//! button pressed. Which electrical level that is, is the line's `active_low` setting, applied by the
//! kernel, so that nothing above this module deals in voltages.

use serde::Deserialize;

use crate::DoorIoError;

/// A GPIO line in `kiosk.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// The GPIO character device, e.g. `/dev/gpiochip0`.
    pub chip: String,
    /// Line offset on that chip (`gpioinfo` lists them).
    pub line: u32,
    /// The function is on at the low level.
    #[serde(default)]
    pub active_low: bool,
}

/// A line the kiosk drives.
pub trait OutputLine: Send {
    /// Drives the line active (`true`) or inactive.
    fn set_active(&mut self, active: bool) -> Result<(), DoorIoError>;
}

/// A line the kiosk reads.
pub trait InputLine: Send {
    /// Whether the line is active now.
    fn is_active(&mut self) -> Result<bool, DoorIoError>;
}

/// The output `config` names, inactive from the first instant; `consumer` is the name the kernel
/// shows for it.
pub fn open_output(
    config: &LineConfig,
    consumer: &str,
) -> Result<Box<dyn OutputLine>, DoorIoError> {
    #[cfg(feature = "gpio")]
    {
        Ok(Box::new(gpio::GpioLine::request(config, consumer, true)?))
    }
    #[cfg(not(feature = "gpio"))]
    {
        let _ = (config, consumer);
        Err(DoorIoError::NoGpioSupport)
    }
}

/// The input `config` names.
pub fn open_input(config: &LineConfig, consumer: &str) -> Result<Box<dyn InputLine>, DoorIoError> {
    #[cfg(feature = "gpio")]
    {
        Ok(Box::new(gpio::GpioLine::request(config, consumer, false)?))
    }
    #[cfg(not(feature = "gpio"))]
    {
        let _ = (config, consumer);
        Err(DoorIoError::NoGpioSupport)
    }
}

#[cfg(feature = "gpio")]
mod gpio {
    use gpiocdev::line::Value;

    use super::{InputLine, LineConfig, OutputLine};
    use crate::DoorIoError;

    /// A line of a GPIO chip through the kernel's character device (uAPI v2).
    pub(super) struct GpioLine {
        request: gpiocdev::Request,
        chip: String,
        line: u32,
    }

    impl GpioLine {
        pub(super) fn request(
            config: &LineConfig,
            consumer: &str,
            output: bool,
        ) -> Result<Self, DoorIoError> {
            let mut builder = gpiocdev::Request::builder();
            builder
                .on_chip(&config.chip)
                .with_consumer(consumer)
                .with_line(config.line);
            if output {
                builder.as_output(Value::Inactive);
            } else {
                builder.as_input();
            }
            if config.active_low {
                builder.as_active_low();
            }
            let request = builder
                .request()
                .map_err(|e| Self::error(config.chip.clone(), config.line, e))?;
            Ok(GpioLine {
                request,
                chip: config.chip.clone(),
                line: config.line,
            })
        }

        fn error(chip: String, line: u32, e: gpiocdev::Error) -> DoorIoError {
            DoorIoError::Line {
                chip,
                line,
                detail: e.to_string(),
            }
        }
    }

    impl OutputLine for GpioLine {
        fn set_active(&mut self, active: bool) -> Result<(), DoorIoError> {
            let value = if active {
                Value::Active
            } else {
                Value::Inactive
            };
            self.request
                .set_lone_value(value)
                .map_err(|e| Self::error(self.chip.clone(), self.line, e))
        }
    }

    impl InputLine for GpioLine {
        fn is_active(&mut self) -> Result<bool, DoorIoError> {
            self.request
                .lone_value()
                .map(|value| value == Value::Active)
                .map_err(|e| Self::error(self.chip.clone(), self.line, e))
        }
    }
}
