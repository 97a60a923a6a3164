//! Wiegand frames on recorded data lines, read back the way a panel reads them: pulses on D0 and D1
//! in time order become bits, the bits become a credential with both parities checked, and the
//! pulses' widths and spacing are measured.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use door_io::line::OutputLine;
use door_io::wiegand::{Credential, WiegandFormat, WiegandFrame, WiegandOutput, WiegandTiming};
use door_io::DoorIoError;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Transition {
    at: Instant,
    data_line: u8,
    active: bool,
}

/// Both data lines' transitions, in the order they were driven; a line can be told to fail.
#[derive(Clone, Default)]
struct Wire {
    transitions: Arc<Mutex<Vec<Transition>>>,
    fail_after: Arc<Mutex<Option<usize>>>,
}

struct RecordingLine {
    wire: Wire,
    data_line: u8,
}

impl OutputLine for RecordingLine {
    fn set_active(&mut self, active: bool) -> Result<(), DoorIoError> {
        let mut transitions = self.wire.transitions.lock().unwrap();
        if active && *self.wire.fail_after.lock().unwrap() == Some(transitions.len()) {
            return Err(DoorIoError::Line {
                chip: "recording".into(),
                line: u32::from(self.data_line),
                detail: "EIO".into(),
            });
        }
        transitions.push(Transition {
            at: Instant::now(),
            data_line: self.data_line,
            active,
        });
        Ok(())
    }
}

impl Wire {
    fn output(&self, timing: WiegandTiming) -> WiegandOutput {
        let line = |data_line| {
            Box::new(RecordingLine {
                wire: self.clone(),
                data_line,
            }) as Box<dyn OutputLine>
        };
        WiegandOutput::new(line(0), line(1), timing).unwrap()
    }

    /// The pulses after the two idle levels `WiegandOutput::new` drives: (start, width, bit).
    fn pulses(&self) -> Vec<(Instant, Duration, bool)> {
        let transitions = self.transitions.lock().unwrap();
        let mut pulses = Vec::new();
        let mut pulled: Option<Transition> = None;
        for t in transitions.iter().skip(2) {
            match (pulled, t.active) {
                (None, true) => pulled = Some(*t),
                (Some(start), false) => {
                    assert_eq!(start.data_line, t.data_line, "a pulse ends on its own line");
                    pulses.push((start.at, t.at - start.at, start.data_line == 1));
                    pulled = None;
                }
                _ => panic!("both data lines pulled at once: {t:?} while {pulled:?}"),
            }
        }
        assert!(pulled.is_none(), "a data line was left pulled");
        pulses
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[test]
fn frames_of_both_formats_decode_to_the_credential_with_pulses_in_the_convention() {
    let timing = WiegandTiming::default();
    for (format, credential) in [
        (
            WiegandFormat::Bits26,
            Credential {
                facility: 42,
                number: 51_234,
            },
        ),
        (
            WiegandFormat::Bits34,
            Credential {
                facility: 4_321,
                number: 65_535,
            },
        ),
    ] {
        let wire = Wire::default();
        let mut output = wire.output(timing);
        let sent = output.send(&format.encode(credential).unwrap()).unwrap();
        let pulses = wire.pulses();
        let bits: Vec<bool> = pulses.iter().map(|p| p.2).collect();
        assert_eq!(bits.len(), format.bits());
        assert_eq!(WiegandFrame::decode(&bits).unwrap(), credential);

        let widths: Vec<Duration> = pulses.iter().map(|p| p.1).collect();
        let intervals: Vec<Duration> = pulses.windows(2).map(|p| p[1].0 - p[0].0).collect();
        // A busy machine can only stretch a pulse or a gap, never shorten it.
        assert!(widths
            .iter()
            .all(|w| *w >= Duration::from_micros(timing.pulse_us)));
        assert!(intervals
            .iter()
            .all(|i| *i >= Duration::from_micros(timing.interval_us)));
        let (width, interval) = (median(widths.clone()), median(intervals.clone()));
        assert!(
            (Duration::from_micros(50)..=Duration::from_micros(100)).contains(&width),
            "median pulse {width:?}"
        );
        assert!(
            (Duration::from_millis(1)..=Duration::from_millis(2)).contains(&interval),
            "median interval {interval:?}"
        );
        assert!(sent.longest_pulse >= *widths.iter().max().unwrap() / 2);
        assert!(sent.longest_interval >= *intervals.iter().max().unwrap() / 2);
    }
}

#[test]
fn consecutive_frames_are_separated_by_a_quiet_gap() {
    let timing = WiegandTiming::default();
    let wire = Wire::default();
    let mut output = wire.output(timing);
    let frame = WiegandFormat::Bits26
        .encode(Credential {
            facility: 1,
            number: 2,
        })
        .unwrap();
    output.send(&frame).unwrap();
    output.send(&frame).unwrap();
    let pulses = wire.pulses();
    assert_eq!(pulses.len(), 52);
    let gap = pulses[26].0 - (pulses[25].0 + pulses[25].1);
    assert!(gap >= timing.frame_gap(), "gap {gap:?}");
}

#[test]
fn a_line_failing_mid_frame_leaves_both_lines_released() {
    let wire = Wire::default();
    let mut output = wire.output(WiegandTiming::default());
    *wire.fail_after.lock().unwrap() = Some(2 + 2 * 10);
    let frame = WiegandFormat::Bits26
        .encode(Credential {
            facility: 7,
            number: 7,
        })
        .unwrap();
    let error = output.send(&frame).unwrap_err();
    assert!(error.to_string().contains("EIO"));
    let transitions = wire.transitions.lock().unwrap();
    for data_line in [0, 1] {
        let last = transitions
            .iter()
            .rev()
            .find(|t| t.data_line == data_line)
            .unwrap();
        assert!(!last.active, "D{data_line} left pulled");
    }
}
