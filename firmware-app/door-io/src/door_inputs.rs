//! The door-position switch and the request-to-exit button of a stand-alone door, as a door
//! controller reads them (and the kiosk's tamper switch, debounced the same way).
//!
//! - Both inputs are debounced: a level counts once it has held for `debounce_ms`.
//! - The door may open while it is released (a grant, or a request to exit, for the relay's pulse):
//!   the door-position switch is masked. Opened while locked, the door is **forced**.
//! - A door opened while released may stay open for `held_open_ms`; a warning (pre-alarm) comes
//!   `pre_alarm_ms` before that, then the **held-open** alarm.
//! - Closing a door that raised an alarm reports it **secured**.
//! - A press of the request-to-exit button asks for the door to be released.
//!
//! [`DoorMonitor`] is the logic alone, on a time the caller gives, so that tests script it; the kiosk
//! polls the lines and feeds it.

use std::time::Duration;

use serde::Deserialize;

use crate::line::LineConfig;
use crate::DoorIoError;

/// `[door_inputs]` in kiosk.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorInputsConfig {
    /// The door-position switch: active while the door is open.
    pub door_position: Option<LineConfig>,
    /// The request-to-exit button or sensor: active while pressed.
    pub request_to_exit: Option<LineConfig>,
    /// The kiosk's enclosure tamper switch: active while the enclosure is open.
    pub tamper: Option<LineConfig>,
    /// How long a level must hold to count.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// How long a door opened while released may stay open.
    #[serde(default = "default_held_open_ms")]
    pub held_open_ms: u64,
    /// How long before the held-open alarm the warning comes.
    #[serde(default = "default_pre_alarm_ms")]
    pub pre_alarm_ms: u64,
}

fn default_debounce_ms() -> u64 {
    50
}

fn default_held_open_ms() -> u64 {
    30_000
}

fn default_pre_alarm_ms() -> u64 {
    10_000
}

impl DoorInputsConfig {
    /// Debounce settings a switch can use (contacts bounce for a few ms).
    pub const DEBOUNCE_MS: (u64, u64) = (5, 1_000);
    /// Held-open limits from a few seconds to an hour.
    pub const HELD_OPEN_MS: (u64, u64) = (3_000, 3_600_000);

    /// The timings within their ranges, the warning before the alarm.
    pub fn check(&self) -> Result<DoorTimings, DoorIoError> {
        let debounce =
            DoorIoError::check_range("debounce_ms", self.debounce_ms, Self::DEBOUNCE_MS, "ms")?;
        let held_open =
            DoorIoError::check_range("held_open_ms", self.held_open_ms, Self::HELD_OPEN_MS, "ms")?;
        let pre_alarm =
            DoorIoError::check_range("pre_alarm_ms", self.pre_alarm_ms, (0, held_open - 1), "ms")?;
        Ok(DoorTimings {
            debounce: Duration::from_millis(debounce),
            held_open: Duration::from_millis(held_open),
            pre_alarm: Duration::from_millis(pre_alarm),
        })
    }
}

/// The checked timings of [`DoorInputsConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorTimings {
    /// How long a level must hold.
    pub debounce: Duration,
    /// How long a door released may stay open.
    pub held_open: Duration,
    /// How long before `held_open` the warning comes.
    pub pre_alarm: Duration,
}

/// What the door did that the kiosk must act on or report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorSignal {
    /// The request-to-exit button was pressed: release the door.
    ExitRequested,
    /// The door opened while locked.
    Forced,
    /// A released door has been open this long; the alarm follows in `pre_alarm`.
    HeldOpenWarning {
        /// How long it has been open.
        open_for: Duration,
    },
    /// A released door has been open longer than allowed.
    HeldOpen {
        /// How long it has been open.
        open_for: Duration,
    },
    /// A door that raised an alarm closed.
    Secured {
        /// How long it was open.
        open_for: Duration,
    },
}

/// One input's level once it has held for the debounce time.
#[derive(Debug, Clone, Copy)]
pub struct Debounced {
    level: bool,
    changing_since: Option<Duration>,
}

impl Debounced {
    /// An input whose level is `level` now.
    pub fn new(level: bool) -> Self {
        Debounced {
            level,
            changing_since: None,
        }
    }

    /// The level as debounced.
    pub fn level(&self) -> bool {
        self.level
    }

    /// The new level when `raw` has differed from the current one for `period`.
    pub fn update(&mut self, now: Duration, raw: bool, period: Duration) -> Option<bool> {
        if raw == self.level {
            self.changing_since = None;
            return None;
        }
        let since = *self.changing_since.get_or_insert(now);
        if now.saturating_sub(since) < period {
            return None;
        }
        self.level = raw;
        self.changing_since = None;
        Some(raw)
    }
}

#[derive(Debug, Clone, Copy)]
struct OpenDoor {
    since: Duration,
    forced: bool,
    warned: bool,
    held: bool,
}

impl OpenDoor {
    fn alarmed(&self) -> bool {
        self.forced || self.warned || self.held
    }
}

/// The door's state from its two inputs; see the module's description.
#[derive(Debug, Clone)]
pub struct DoorMonitor {
    timings: DoorTimings,
    release: Duration,
    door: Option<Debounced>,
    exit: Option<Debounced>,
    released_until: Option<Duration>,
    open: Option<OpenDoor>,
}

impl DoorMonitor {
    /// A monitor whose releases (grants, requests to exit) last `release` (the relay's pulse).
    pub fn new(timings: DoorTimings, release: Duration) -> Self {
        DoorMonitor {
            timings,
            release,
            door: None,
            exit: None,
            released_until: None,
            open: None,
        }
    }

    /// The door is released from `now` (a grant): it may open without a forced alarm, and a door
    /// already open starts its held-open time again unless it has alarmed.
    pub fn released(&mut self, now: Duration) {
        let until = now + self.release;
        self.released_until = Some(self.released_until.map_or(until, |u| u.max(until)));
        if let Some(open) = self.open.as_mut().filter(|open| !open.alarmed()) {
            open.since = now;
        }
    }

    /// Whether the door is open, as debounced; `None` before the first reading.
    pub fn is_open(&self) -> Option<bool> {
        self.door.map(|door| door.level)
    }

    /// Takes the lines' raw levels at `now` (`None` for an input that is not wired or could not be
    /// read) and says what happened. The first reading of each input is its starting level: a door
    /// open at start is timed as held open, not reported forced.
    pub fn update(
        &mut self,
        now: Duration,
        door_open: Option<bool>,
        exit_pressed: Option<bool>,
    ) -> Vec<DoorSignal> {
        let mut signals = Vec::new();
        if let Some(raw) = exit_pressed {
            if self.exit_edge(now, raw) == Some(true) {
                signals.push(DoorSignal::ExitRequested);
                self.released(now);
            }
        }
        if let Some(raw) = door_open {
            match self.door_edge(now, raw) {
                Some(true) => signals.extend(self.opened(now)),
                Some(false) => signals.extend(self.closed(now)),
                None => {}
            }
        }
        signals.extend(self.held_open_timers(now));
        signals
    }

    fn exit_edge(&mut self, now: Duration, raw: bool) -> Option<bool> {
        match &mut self.exit {
            Some(exit) => exit.update(now, raw, self.timings.debounce),
            None => {
                self.exit = Some(Debounced::new(raw));
                None
            }
        }
    }

    fn door_edge(&mut self, now: Duration, raw: bool) -> Option<bool> {
        match &mut self.door {
            Some(door) => door.update(now, raw, self.timings.debounce),
            None => {
                self.door = Some(Debounced::new(raw));
                if raw {
                    self.open = Some(OpenDoor {
                        since: now,
                        forced: false,
                        warned: false,
                        held: false,
                    });
                }
                None
            }
        }
    }

    fn opened(&mut self, now: Duration) -> Option<DoorSignal> {
        let released = self.released_until.is_some_and(|until| now <= until);
        self.open = Some(OpenDoor {
            since: now,
            forced: !released,
            warned: false,
            held: false,
        });
        (!released).then_some(DoorSignal::Forced)
    }

    fn closed(&mut self, now: Duration) -> Option<DoorSignal> {
        let open = self.open.take()?;
        open.alarmed().then(|| DoorSignal::Secured {
            open_for: now.saturating_sub(open.since),
        })
    }

    fn held_open_timers(&mut self, now: Duration) -> Vec<DoorSignal> {
        let mut signals = Vec::new();
        let Some(open) = self.open.as_mut().filter(|open| !open.forced) else {
            return signals;
        };
        let open_for = now.saturating_sub(open.since);
        if !open.warned && open_for + self.timings.pre_alarm >= self.timings.held_open {
            open.warned = true;
            signals.push(DoorSignal::HeldOpenWarning { open_for });
        }
        if !open.held && open_for >= self.timings.held_open {
            open.held = true;
            signals.push(DoorSignal::HeldOpen { open_for });
        }
        signals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMINGS: DoorTimings = DoorTimings {
        debounce: Duration::from_millis(50),
        held_open: Duration::from_millis(30_000),
        pre_alarm: Duration::from_millis(10_000),
    };
    const RELEASE: Duration = Duration::from_millis(3_000);

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    /// Plays `(time ms, door open, exit pressed)` readings and collects `(time ms, signal)`.
    fn play(
        monitor: &mut DoorMonitor,
        readings: &[(u64, Option<bool>, Option<bool>)],
    ) -> Vec<(u64, DoorSignal)> {
        readings
            .iter()
            .flat_map(|&(at, door, exit)| {
                monitor
                    .update(ms(at), door, exit)
                    .into_iter()
                    .map(move |signal| (at, signal))
            })
            .collect()
    }

    /// Readings every 10 ms from `from` to `to` with fixed levels.
    fn hold(from: u64, to: u64, door: bool, exit: bool) -> Vec<(u64, Option<bool>, Option<bool>)> {
        (from..to)
            .step_by(10)
            .map(|at| (at, Some(door), Some(exit)))
            .collect()
    }

    #[test]
    fn a_door_opened_while_locked_is_forced_and_secured_when_closed() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        let mut readings = hold(0, 1_000, false, false);
        readings.extend(hold(1_000, 2_000, true, false));
        readings.extend(hold(2_000, 2_200, false, false));
        assert_eq!(
            play(&mut monitor, &readings),
            vec![
                (1_050, DoorSignal::Forced),
                (
                    2_050,
                    DoorSignal::Secured {
                        open_for: ms(1_000)
                    }
                )
            ]
        );
    }

    #[test]
    fn contact_bounce_shorter_than_the_debounce_time_is_not_an_opening() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        let mut readings = hold(0, 500, false, false);
        for start in (500..900).step_by(100) {
            readings.extend(hold(start, start + 40, true, false));
            readings.extend(hold(start + 40, start + 100, false, false));
        }
        assert_eq!(play(&mut monitor, &readings), vec![]);
        assert_eq!(monitor.is_open(), Some(false));
    }

    #[test]
    fn a_grant_masks_the_switch_for_the_release_and_the_held_open_alarm_follows_its_warning() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        let mut readings = hold(0, 100, false, false);
        play(&mut monitor, &readings);
        monitor.released(ms(100));
        readings = hold(2_000, 35_000, true, false);
        readings.extend(hold(35_000, 35_200, false, false));
        assert_eq!(
            play(&mut monitor, &readings),
            vec![
                (
                    22_050,
                    DoorSignal::HeldOpenWarning {
                        open_for: ms(20_000)
                    }
                ),
                (
                    32_050,
                    DoorSignal::HeldOpen {
                        open_for: ms(30_000)
                    }
                ),
                (
                    35_050,
                    DoorSignal::Secured {
                        open_for: ms(33_000)
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_door_opened_after_its_release_ended_is_forced() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        play(&mut monitor, &hold(0, 100, false, false));
        monitor.released(ms(100));
        let signals = play(&mut monitor, &hold(3_200, 3_400, true, false));
        assert_eq!(signals, vec![(3_250, DoorSignal::Forced)]);
    }

    #[test]
    fn a_request_to_exit_releases_the_door_and_masks_the_switch() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        let mut readings = hold(0, 500, false, false);
        readings.extend(hold(500, 700, false, true));
        readings.extend(hold(700, 1_500, true, false));
        readings.extend(hold(1_500, 1_700, false, false));
        assert_eq!(
            play(&mut monitor, &readings),
            vec![(550, DoorSignal::ExitRequested)]
        );
    }

    #[test]
    fn a_button_held_down_asks_once() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        let mut readings = hold(0, 100, false, false);
        readings.extend(hold(100, 10_000, false, true));
        let signals = play(&mut monitor, &readings);
        assert_eq!(signals, vec![(150, DoorSignal::ExitRequested)]);
    }

    #[test]
    fn a_door_open_at_start_is_timed_not_forced() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        let signals = play(&mut monitor, &hold(0, 31_000, true, false));
        assert_eq!(
            signals,
            vec![
                (
                    20_000,
                    DoorSignal::HeldOpenWarning {
                        open_for: ms(20_000)
                    }
                ),
                (
                    30_000,
                    DoorSignal::HeldOpen {
                        open_for: ms(30_000)
                    }
                )
            ]
        );
    }

    #[test]
    fn a_grant_while_open_restarts_the_held_open_time() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        play(&mut monitor, &hold(0, 100, false, false));
        monitor.released(ms(100));
        play(&mut monitor, &hold(1_000, 15_000, true, false));
        monitor.released(ms(15_000));
        let signals = play(&mut monitor, &hold(15_000, 36_000, true, false));
        assert_eq!(
            signals.first(),
            Some(&(
                35_000,
                DoorSignal::HeldOpenWarning {
                    open_for: ms(20_000)
                }
            ))
        );
    }

    #[test]
    fn an_input_not_wired_reports_nothing() {
        let mut monitor = DoorMonitor::new(TIMINGS, RELEASE);
        let readings: Vec<_> = (0..1_000).step_by(10).map(|at| (at, None, None)).collect();
        assert!(play(&mut monitor, &readings).is_empty());
        assert_eq!(monitor.is_open(), None);
    }

    #[test]
    fn timings_out_of_range_are_refused() {
        let config = |debounce_ms, held_open_ms, pre_alarm_ms| DoorInputsConfig {
            door_position: None,
            request_to_exit: None,
            tamper: None,
            debounce_ms,
            held_open_ms,
            pre_alarm_ms,
        };
        assert_eq!(config(50, 30_000, 10_000).check().unwrap(), TIMINGS);
        assert!(config(1, 30_000, 10_000).check().is_err());
        assert!(config(50, 1_000, 100).check().is_err());
        let error = config(50, 30_000, 30_000).check().unwrap_err();
        assert_eq!(
            error.to_string(),
            "pre_alarm_ms of 30000 ms is outside 0..=29999 ms"
        );
    }
}
