//! Wiegand: a card number as a train of pulses on two data lines, the way every panel takes it.
//!
//! A frame is a leading even-parity bit, the facility code and the credential number (most
//! significant bit first), and a trailing odd-parity bit; the leading parity covers the first half of
//! the data bits, the trailing one the second half. A 0 is a pulse on D0, a 1 a pulse on D1; both
//! lines idle high, and a pulse pulls one low for 50–100 µs, one bit every 1–2 ms. A frame ends when
//! the lines stay quiet.
//!
//! | format | facility code | credential number | parity halves |
//! |---|---|---|---|
//! | 26-bit (H10301) | 8 bits, 0–255 | 16 bits, 0–65,535 | 12 + 12 |
//! | 34-bit | 16 bits, 0–65,535 | 16 bits, 0–65,535 | 16 + 16 |
//!
//! OSDP card reads carry the same bits ([`WiegandFrame::to_bytes`]), so a panel decodes the person
//! the same way on either wire.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::line::{LineConfig, OutputLine};
use crate::DoorIoError;

/// The frame formats a panel is set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum WiegandFormat {
    /// 26 bits: 8-bit facility code, 16-bit number (HID H10301, the most common).
    #[default]
    Bits26,
    /// 34 bits: 16-bit facility code, 16-bit number.
    Bits34,
}

impl WiegandFormat {
    /// Bits on the wire, parity included.
    pub fn bits(self) -> usize {
        match self {
            WiegandFormat::Bits26 => 26,
            WiegandFormat::Bits34 => 34,
        }
    }

    fn facility_bits(self) -> usize {
        match self {
            WiegandFormat::Bits26 => 8,
            WiegandFormat::Bits34 => 16,
        }
    }

    const NUMBER_BITS: usize = 16;

    /// The largest facility code the format carries.
    pub fn max_facility(self) -> u32 {
        (1 << self.facility_bits()) - 1
    }

    /// The largest credential number the format carries.
    pub fn max_number(self) -> u32 {
        (1 << Self::NUMBER_BITS) - 1
    }

    /// The frame of `credential`, or why it does not fit.
    pub fn encode(self, credential: Credential) -> Result<WiegandFrame, DoorIoError> {
        self.check(credential)?;
        let mut bits = Vec::with_capacity(self.bits());
        push_bits(&mut bits, credential.facility, self.facility_bits());
        push_bits(&mut bits, credential.number, Self::NUMBER_BITS);
        let half = bits.len() / 2;
        let leading_even = !ones(&bits[..half]).is_multiple_of(2);
        let trailing_odd = ones(&bits[half..]).is_multiple_of(2);
        bits.insert(0, leading_even);
        bits.push(trailing_odd);
        Ok(WiegandFrame { format: self, bits })
    }

    /// `credential` when the format carries it.
    pub fn check(self, credential: Credential) -> Result<Credential, DoorIoError> {
        let fits = |field, value: u32, max| {
            if value <= max {
                Ok(())
            } else {
                Err(DoorIoError::CredentialTooLarge {
                    format: self,
                    field,
                    value,
                    max,
                })
            }
        };
        fits("facility code", credential.facility, self.max_facility())?;
        fits("credential number", credential.number, self.max_number())?;
        Ok(credential)
    }
}

impl TryFrom<u32> for WiegandFormat {
    type Error = String;

    fn try_from(bits: u32) -> Result<Self, String> {
        match bits {
            26 => Ok(WiegandFormat::Bits26),
            34 => Ok(WiegandFormat::Bits34),
            other => Err(format!(
                "a {other}-bit Wiegand format: 26 and 34 are supported"
            )),
        }
    }
}

impl From<WiegandFormat> for u32 {
    fn from(format: WiegandFormat) -> u32 {
        format.bits() as u32
    }
}

impl fmt::Display for WiegandFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit Wiegand", self.bits())
    }
}

/// What a panel knows a person by: the site's facility code and the person's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credential {
    /// The site's facility (site) code.
    pub facility: u32,
    /// The person's credential (card) number.
    pub number: u32,
}

/// One frame: the bits on the wire, parity included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiegandFrame {
    format: WiegandFormat,
    bits: Vec<bool>,
}

impl WiegandFrame {
    /// The frame's format.
    pub fn format(&self) -> WiegandFormat {
        self.format
    }

    /// The bits in the order they are sent.
    pub fn bits(&self) -> &[bool] {
        &self.bits
    }

    /// The bits packed most significant first, the last byte padded with zeros (OSDP's card data).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.bits.len().div_ceil(8)];
        for (i, _) in self.bits.iter().enumerate().filter(|(_, bit)| **bit) {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
        bytes
    }

    /// The credential in `bits`, with both parities checked, as a panel reads a frame.
    pub fn decode(bits: &[bool]) -> Result<Credential, DoorIoError> {
        let bad = |detail: &str| DoorIoError::BadFrame {
            bits: bits.len(),
            detail: detail.into(),
        };
        let format = WiegandFormat::try_from(bits.len() as u32).map_err(|e| bad(&e))?;
        let data = &bits[1..bits.len() - 1];
        let half = data.len() / 2;
        if !(ones(&data[..half]) + usize::from(bits[0])).is_multiple_of(2) {
            return Err(bad("leading (even) parity fails"));
        }
        if (ones(&data[half..]) + usize::from(bits[bits.len() - 1])).is_multiple_of(2) {
            return Err(bad("trailing (odd) parity fails"));
        }
        let (facility, number) = data.split_at(format.facility_bits());
        Ok(Credential {
            facility: read_bits(facility),
            number: read_bits(number),
        })
    }
}

fn push_bits(bits: &mut Vec<bool>, value: u32, count: usize) {
    bits.extend((0..count).rev().map(|i| (value >> i) & 1 == 1));
}

fn read_bits(bits: &[bool]) -> u32 {
    bits.iter()
        .fold(0, |value, &bit| (value << 1) | u32::from(bit))
}

fn ones(bits: &[bool]) -> usize {
    bits.iter().filter(|bit| **bit).count()
}

/// `[panel.wiegand]` in kiosk.toml: the two data lines and their timing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WiegandConfig {
    /// Data 0 (green wire): pulsed for a 0.
    pub d0: LineConfig,
    /// Data 1 (white wire): pulsed for a 1.
    pub d1: LineConfig,
    /// How long a data line is pulled per bit.
    #[serde(default = "default_pulse_us")]
    pub pulse_us: u64,
    /// From the start of one bit's pulse to the start of the next.
    #[serde(default = "default_interval_us")]
    pub interval_us: u64,
}

impl WiegandConfig {
    /// The timing it sets.
    pub fn timing(&self) -> WiegandTiming {
        WiegandTiming {
            pulse_us: self.pulse_us,
            interval_us: self.interval_us,
        }
    }
}

/// How a frame's pulses are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WiegandTiming {
    /// How long a data line is pulled per bit.
    pub pulse_us: u64,
    /// From the start of one bit's pulse to the start of the next.
    pub interval_us: u64,
}

fn default_pulse_us() -> u64 {
    80
}

fn default_interval_us() -> u64 {
    1_500
}

impl Default for WiegandTiming {
    fn default() -> Self {
        WiegandTiming {
            pulse_us: default_pulse_us(),
            interval_us: default_interval_us(),
        }
    }
}

impl WiegandTiming {
    /// Pulse widths panels accept (the convention is 50–100 µs).
    pub const PULSE_US: (u64, u64) = (20, 200);
    /// Bit intervals panels accept (the convention is 1–2 ms).
    pub const INTERVAL_US: (u64, u64) = (500, 20_000);

    /// The timing within the ranges panels accept, with the pulse well inside its interval.
    pub fn check(&self) -> Result<(), DoorIoError> {
        DoorIoError::check_range("Wiegand pulse_us", self.pulse_us, Self::PULSE_US, "µs")?;
        let min_interval = Self::INTERVAL_US.0.max(4 * self.pulse_us);
        DoorIoError::check_range(
            "Wiegand interval_us",
            self.interval_us,
            (min_interval, Self::INTERVAL_US.1),
            "µs",
        )?;
        Ok(())
    }

    /// Quiet after a frame before the next one may start: panels end a frame on a gap of several
    /// bit intervals.
    pub fn frame_gap(&self) -> Duration {
        Duration::from_micros(self.interval_us * 20)
    }
}

/// How a frame went out: the widest pulse and the longest interval actually driven. A busy CPU
/// stretches them; the kiosk logs a frame that left the convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SentFrame {
    /// The longest pulse.
    pub longest_pulse: Duration,
    /// The longest time between two pulses' starts.
    pub longest_interval: Duration,
}

/// The two data lines of a Wiegand output.
pub struct WiegandOutput {
    d0: Box<dyn OutputLine>,
    d1: Box<dyn OutputLine>,
    pulse: Duration,
    interval: Duration,
    frame_gap: Duration,
    last_frame_end: Option<Instant>,
}

impl WiegandOutput {
    /// Both lines released (idle) and the timing checked.
    pub fn new(
        mut d0: Box<dyn OutputLine>,
        mut d1: Box<dyn OutputLine>,
        timing: WiegandTiming,
    ) -> Result<Self, DoorIoError> {
        timing.check()?;
        d0.set_active(false)?;
        d1.set_active(false)?;
        Ok(WiegandOutput {
            d0,
            d1,
            pulse: Duration::from_micros(timing.pulse_us),
            interval: Duration::from_micros(timing.interval_us),
            frame_gap: timing.frame_gap(),
            last_frame_end: None,
        })
    }

    /// Sends `frame`, after the quiet gap that ends the previous one. On a line error both lines
    /// are released before the error is returned, so that the panel sees a short (rejected) frame,
    /// never a stuck line.
    pub fn send(&mut self, frame: &WiegandFrame) -> Result<SentFrame, DoorIoError> {
        if let Some(end) = self.last_frame_end {
            wait_until(end + self.frame_gap);
        }
        let result = self.pulse_train(frame.bits());
        self.last_frame_end = Some(Instant::now());
        if result.is_err() {
            let _ = self.d0.set_active(false);
            let _ = self.d1.set_active(false);
        }
        result
    }

    fn pulse_train(&mut self, bits: &[bool]) -> Result<SentFrame, DoorIoError> {
        let mut sent = SentFrame {
            longest_pulse: Duration::ZERO,
            longest_interval: Duration::ZERO,
        };
        let mut previous_start: Option<Instant> = None;
        for &bit in bits {
            if let Some(previous) = previous_start {
                wait_until(previous + self.interval);
            }
            let line = if bit { &mut self.d1 } else { &mut self.d0 };
            line.set_active(true)?;
            let pulled = Instant::now();
            wait_until(pulled + self.pulse);
            line.set_active(false)?;
            sent.longest_pulse = sent.longest_pulse.max(pulled.elapsed());
            if let Some(previous) = previous_start {
                sent.longest_interval = sent.longest_interval.max(pulled - previous);
            }
            previous_start = Some(pulled);
        }
        Ok(sent)
    }
}

/// Sleeps until shortly before `deadline`, then spins: pulses of tens of microseconds are shorter
/// than a sleep's wake-up slack.
fn wait_until(deadline: Instant) {
    const SPIN: Duration = Duration::from_micros(300);
    let now = Instant::now();
    if deadline > now + SPIN {
        std::thread::sleep(deadline - now - SPIN);
    }
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(text: &str) -> Vec<bool> {
        text.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c == '1')
            .collect()
    }

    #[test]
    fn a_26_bit_frame_carries_facility_and_number_between_its_parities() {
        let frame = WiegandFormat::Bits26
            .encode(Credential {
                facility: 18,
                number: 31_721,
            })
            .unwrap();
        // 18 = 00010010, 31721 = 0111101111101001; the first 12 data bits hold five ones (even
        // parity 1), the last 12 hold eight (odd parity 1).
        assert_eq!(
            frame.bits(),
            bits("1 00010010 0111101111101001 1").as_slice()
        );
        assert_eq!(frame.to_bytes(), vec![0x89, 0x3D, 0xF4, 0xC0]);
    }

    #[test]
    fn a_34_bit_frame_carries_a_16_bit_facility_code() {
        let credential = Credential {
            facility: 40_000,
            number: 1,
        };
        let frame = WiegandFormat::Bits34.encode(credential).unwrap();
        assert_eq!(frame.bits().len(), 34);
        assert_eq!(
            frame.bits(),
            bits("1 1001110001000000 0000000000000001 0").as_slice()
        );
        assert_eq!(WiegandFrame::decode(frame.bits()).unwrap(), credential);
    }

    #[test]
    fn every_credential_of_a_sample_round_trips_through_both_formats() {
        for format in [WiegandFormat::Bits26, WiegandFormat::Bits34] {
            for facility in [0, 1, 77, format.max_facility()] {
                for number in [0, 1, 4_660, 65_535] {
                    let credential = Credential { facility, number };
                    let frame = format.encode(credential).unwrap();
                    assert_eq!(frame.bits().len(), format.bits());
                    assert_eq!(WiegandFrame::decode(frame.bits()).unwrap(), credential);
                }
            }
        }
    }

    #[test]
    fn a_flipped_bit_fails_a_parity() {
        let frame = WiegandFormat::Bits26
            .encode(Credential {
                facility: 5,
                number: 1234,
            })
            .unwrap();
        for i in 0..26 {
            let mut flipped = frame.bits().to_vec();
            flipped[i] = !flipped[i];
            assert!(
                matches!(
                    WiegandFrame::decode(&flipped),
                    Err(DoorIoError::BadFrame { .. })
                ),
                "bit {i}"
            );
        }
        assert!(WiegandFrame::decode(&frame.bits()[..25]).is_err());
    }

    #[test]
    fn a_credential_too_large_for_the_format_is_refused_by_name() {
        let error = WiegandFormat::Bits26
            .encode(Credential {
                facility: 256,
                number: 1,
            })
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "facility code 256 does not fit 26-bit Wiegand: at most 255"
        );
        let error = WiegandFormat::Bits34
            .encode(Credential {
                facility: 1,
                number: 70_000,
            })
            .unwrap_err();
        assert!(error.to_string().starts_with("credential number 70000"));
    }

    #[test]
    fn timing_outside_what_panels_take_is_refused() {
        assert!(WiegandTiming::default().check().is_ok());
        let fast = WiegandTiming {
            pulse_us: 10,
            ..WiegandTiming::default()
        };
        assert!(fast.check().is_err());
        let crowded = WiegandTiming {
            pulse_us: 200,
            interval_us: 600,
        };
        assert!(crowded
            .check()
            .unwrap_err()
            .to_string()
            .contains("interval_us of 600"));
    }

    #[test]
    fn the_format_reads_from_its_bit_count() {
        #[derive(Deserialize)]
        struct Panel {
            format: WiegandFormat,
        }
        let panel: Panel = toml::from_str("format = 34").unwrap();
        assert_eq!(panel.format, WiegandFormat::Bits34);
        let error = toml::from_str::<Panel>("format = 37").err().unwrap();
        assert!(error.to_string().contains("26 and 34 are supported"));
    }
}
